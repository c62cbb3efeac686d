"""The leader's half of a reconfig request: the next configuration, or ZooKeeper's error.

PrepRequestProcessor's reconfig case, after its RECONFIGDISABLED, session and standalone
checks (server/prep_reconfig.py does those and the ACL check that comes last), in its order:

1. a reconfig is still in progress (the last proposed config is not the active one):
   RECONFIGINPROGRESS;
2. `curConfigId` is not -1 and not the last proposed config's version: BADVERSION;
3. the new membership: bulk (`newMembers`, a whole dynamic config, lines or commas) or
   incremental (`leavingServers` ids, then `joiningServers` statements, each
   `server.N=spec;client` or `N=spec;client`, on top of the last proposed config). A bad
   statement is BADARGUMENTS; a malformed number is MARSHALLINGERROR, because ZooKeeper lets
   that NumberFormatException escape to its catch-all;
4. too few voters (2 with standaloneEnabled, else 1): BADARGUMENTS;
5. no quorum of the new config is connected and synced to the leader: NEWCONFIGNOQUORUM.

The new config's version is the reconfig txn's zxid. Hierarchical quorums (group./weight.)
are not modelled: a bulk config with them is answered BADARGUMENTS (ZooKeeper would accept
it); incremental reconfig of a hierarchical config is BADARGUMENTS in ZooKeeper too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from corral.javaprops import PropertiesSyntaxError, parse_properties
from corral.proto.codes import Err
from corral.quorum.verifier import (
    ConfigTextError,
    QuorumServer,
    QuorumVerifier,
    parse_server_spec,
)

__all__ = ["ReconfigAsk", "ReconfigPlan", "plan_reconfig"]


@dataclass(frozen=True, slots=True)
class ReconfigAsk:
    """The ReconfigRequest's fields ("" stands for null: the jute codec decodes -1 as "")."""

    joining: str = ""
    leaving: str = ""
    new_members: str = ""
    cur_config_id: int = -1


@dataclass(frozen=True, slots=True)
class ReconfigPlan:
    """`err` is OK with the next config in `verifier`, else ZooKeeper's error for the request."""

    err: Err
    verifier: QuorumVerifier | None = None
    reason: str = ""


class _Refused(Exception):
    def __init__(self, err: Err, reason: str) -> None:
        super().__init__(reason)
        self.err = err
        self.reason = reason


def plan_reconfig(
    ask: ReconfigAsk,
    zxid: int,
    *,
    active: QuorumVerifier,
    last_seen: QuorumVerifier,
    standalone_enabled: bool,
    quorum_synced: Callable[[QuorumVerifier], bool],
) -> ReconfigPlan:
    """Check a reconfig request against the leader's configs; see the module docstring."""
    try:
        if last_seen.version != active.version:
            raise _Refused(Err.RECONFIGINPROGRESS, "another reconfig is in progress")
        if ask.cur_config_id != -1 and ask.cur_config_id != last_seen.version:
            raise _Refused(
                Err.BADVERSION,
                f"reconfiguration from version {ask.cur_config_id:x} failed -- last seen "
                f"version is {last_seen.version:x}",
            )
        if ask.new_members:
            servers = _bulk(ask.new_members, standalone_enabled)
        else:
            servers = _incremental(ask, last_seen)
        try:
            new = QuorumVerifier(tuple(servers.values()), zxid)
        except ValueError as exc:
            raise _Refused(Err.BADARGUMENTS, str(exc)) from None
        voters = len(new.voters)
        if standalone_enabled and voters < 2:
            raise _Refused(Err.BADARGUMENTS, "new configuration must include at least 2 followers")
        if voters < 1:
            raise _Refused(Err.BADARGUMENTS, "new configuration must include at least 1 follower")
        if not quorum_synced(new):
            raise _Refused(
                Err.NEWCONFIGNOQUORUM,
                "there must be a connected and synced quorum in new configuration",
            )
    except _Refused as refused:
        return ReconfigPlan(refused.err, None, refused.reason)
    return ReconfigPlan(Err.OK, new)


def _bulk(text: str, standalone_enabled: bool) -> dict[int, QuorumServer]:
    """QuorumPeerConfig.parseDynamicConfig over the members (commas become newlines)."""
    try:
        props = parse_properties(text.replace(",", "\n"))
    except PropertiesSyntaxError as exc:
        raise _Refused(Err.BADARGUMENTS, str(exc)) from None
    servers: dict[int, QuorumServer] = {}
    for raw_key, value in props.items():
        key = raw_key.strip()
        if key.startswith(("group", "weight")):
            raise _Refused(Err.BADARGUMENTS, "hierarchical quorums are not supported")
        if key == "version":
            continue  # replaced by the txn's zxid
        if not key.startswith("server."):
            raise _Refused(Err.BADARGUMENTS, f"unrecognised parameter: {key}")
        sid = _sid(key[key.index(".") + 1 :])
        servers[sid] = _server(sid, value.strip())
    participants = sum(1 for s in servers.values() if not s.observer)
    observers = len(servers) - participants
    # ZooKeeper throws IllegalArgumentException here, which its catch-all answers with
    # MARSHALLINGERROR (only ConfigException becomes BADARGUMENTS).
    if participants == 0 and (not standalone_enabled or observers > 0):
        raise _Refused(Err.MARSHALLINGERROR, "observers without participants")
    if participants == 1 and standalone_enabled and observers > 0:
        raise _Refused(Err.MARSHALLINGERROR, "observers without a quorum")
    return servers


def _incremental(ask: ReconfigAsk, last_seen: QuorumVerifier) -> dict[int, QuorumServer]:
    servers = {s.sid: s for s in last_seen.servers}
    for leaving in _split(ask.leaving):
        servers.pop(_sid(leaving), None)
    for joiner in _split(ask.joining):
        parts = [p.strip() for p in joiner.split("=") if p.strip()]
        if len(parts) != 2:
            raise _Refused(Err.BADARGUMENTS, "wrong format of server string")
        sid = _sid(parts[0][parts[0].rfind(".") + 1 :])
        server = _server(sid, parts[1])
        if server.client is None:
            raise _Refused(
                Err.BADARGUMENTS,
                "wrong format of server string - each server should have at least 3 ports",
            )
        for other in servers.values():
            if other.sid != sid and _addresses(server) & _addresses(other):
                raise _Refused(Err.BADARGUMENTS, f"server {sid} reuses an address of {other.sid}")
        servers[sid] = server
    return servers


def _split(text: str) -> list[str]:
    """ZooKeeper's StringUtils.split: trimmed, empty pieces dropped."""
    return [p.strip() for p in text.split(",") if p.strip()]


def _sid(text: str) -> int:
    try:
        sid = int(text.strip())
    except ValueError:
        raise _Refused(Err.MARSHALLINGERROR, f"bad server id {text!r}") from None
    if not -(1 << 63) <= sid < (1 << 63):
        raise _Refused(Err.MARSHALLINGERROR, f"bad server id {text!r}")
    return sid


def _server(sid: int, spec: str) -> QuorumServer:
    try:
        return parse_server_spec(sid, spec)
    except ConfigTextError as exc:
        raise _Refused(Err.BADARGUMENTS, str(exc)) from None


_WILDCARDS = frozenset({"0.0.0.0", "::", "0:0:0:0:0:0:0:0"})


def _addresses(s: QuorumServer) -> set[tuple[str, int]]:
    """QuorumServer.myAddrs without the wildcard ones (excludedSpecialAddresses)."""
    found = {(s.host, s.quorum_port), (s.host, s.election_port)}
    if s.client is not None:
        found.add(s.client)
    return {a for a in found if a[0] not in _WILDCARDS}
