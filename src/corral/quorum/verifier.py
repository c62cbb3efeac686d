"""Ensemble membership and ZooKeeper's majority quorum (QuorumMaj).

A `QuorumVerifier` is the set of `server.N` entries plus the config version. Participants
vote; observers do not (they learn the leader but never count towards a quorum). A set of
server ids "contains a quorum" when more than half of the voting members are in it; ids
that are not voting members are ignored, as ZooKeeper's SyncedLearnerTracker ignores them.

`config_string()` renders the membership exactly as ZooKeeper's QuorumMaj.toString does,
because that text travels inside every election notification and a ZooKeeper peer parses
it (and acts on a higher version while it is looking). Hierarchical quorums (group./weight.)
and the 2-node oracle are not modelled.

`parse_server_spec` reads one server statement as ZooKeeper's QuorumServer(sid, String) does
(what a reconfig's joining or bulk members give); `dynamic_file_text` is the dynamic config
file ZooKeeper writes (QuorumPeerConfig.writeDynamicConfig).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from corral.proto.jute import ProtocolError


class ConfigTextError(ProtocolError):
    """A config text received from a peer is not in the form ZooKeeper writes."""


@dataclass(frozen=True, slots=True)
class QuorumServer:
    """One `server.N=host:quorumPort:electionPort[:participant|observer][;host:clientPort]`."""

    sid: int
    host: str
    quorum_port: int
    election_port: int
    observer: bool = False
    # The client address as written after ';' in a dynamic config; None when the client port
    # comes from the static `clientPort` key (ZooKeeper then leaves it out of the text).
    client: tuple[str, int] | None = None

    def config_value(self) -> str:
        """The value part of this server's line, as QuorumServer.toString writes it."""
        host = _bracketed(self.host)
        role = "observer" if self.observer else "participant"
        text = f"{host}:{self.quorum_port}:{self.election_port}:{role}"
        if self.client is not None:
            text += f";{_bracketed(self.client[0])}:{self.client[1]}"
        return text

    def election_address(self) -> str:
        """`host:port` of the election port, as sent in the connection initiation message."""
        return f"{_bracketed(self.host)}:{self.election_port}"


def _bracketed(host: str) -> str:
    # An IPv6 literal is written in brackets so the ':' separators stay unambiguous.
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True, slots=True)
class QuorumVerifier:
    """The membership and the majority rule; `version` is the dynamic config version."""

    servers: tuple[QuorumServer, ...]
    version: int = 0
    voters: frozenset[int] = field(init=False)
    observers: frozenset[int] = field(init=False)

    def __post_init__(self) -> None:
        ids = [s.sid for s in self.servers]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate server ids in {ids}")
        ordered = tuple(sorted(self.servers, key=lambda s: s.sid))
        object.__setattr__(self, "servers", ordered)
        object.__setattr__(self, "voters", frozenset(s.sid for s in ordered if not s.observer))
        object.__setattr__(self, "observers", frozenset(s.sid for s in ordered if s.observer))

    @classmethod
    def of_ids(cls, voters: Iterable[int], observers: Iterable[int] = ()) -> QuorumVerifier:
        """A membership on loopback with made-up ports (for tests and simulations)."""
        servers = [QuorumServer(sid, "127.0.0.1", 2000 + sid, 3000 + sid) for sid in voters]
        servers += [
            QuorumServer(sid, "127.0.0.1", 2000 + sid, 3000 + sid, observer=True)
            for sid in observers
        ]
        return cls(tuple(servers))

    def server(self, sid: int) -> QuorumServer | None:
        for s in self.servers:
            if s.sid == sid:
                return s
        return None

    def is_voter(self, sid: int) -> bool:
        return sid in self.voters

    def contains_quorum(self, acks: Iterable[int]) -> bool:
        """More than half of the voting members are in `acks` (others do not count)."""
        return len(self.voters.intersection(acks)) > len(self.voters) // 2

    def with_version(self, version: int) -> QuorumVerifier:
        return QuorumVerifier(self.servers, version)

    def same_members(self, other: QuorumVerifier) -> bool:
        """The same servers with the same addresses and roles (versions aside)."""
        return self.servers == other.servers

    def config_string(self) -> str:
        """QuorumMaj.toString: one `server.N=...` line per member, then `version=<hex>`."""
        lines = [f"server.{s.sid}={s.config_value()}\n" for s in self.servers]
        return "".join(lines) + f"version={self.version:x}"

    @classmethod
    def from_config_string(cls, text: str) -> QuorumVerifier:
        """Parse the text `config_string` writes (what a peer sends in a notification).

        Only ZooKeeper's own rendering is accepted: `server.N=host:q:e:role[;host:port]`
        lines and `version=<hex>`; other keys (group., weight.) are ignored.
        """
        servers: list[QuorumServer] = []
        version = 0
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise ConfigTextError(f"no '=' in config line {line!r}")
            if key == "version":
                version = _parse_int(value, 16, line)
            elif key.startswith("server."):
                servers.append(_parse_server(_parse_int(key[7:], 10, line), value, line))
        try:
            return cls(tuple(servers), version)
        except ValueError as exc:
            raise ConfigTextError(str(exc)) from None


def _parse_int(text: str, base: int, line: str) -> int:
    try:
        value = int(text.strip(), base)
    except ValueError:
        raise ConfigTextError(f"bad number in config line {line!r}") from None
    if not -(1 << 63) <= value < (1 << 63):
        raise ConfigTextError(f"number out of range in config line {line!r}")
    return value


def _parse_server(sid: int, value: str, line: str) -> QuorumServer:
    server_part, _, client_part = value.partition(";")
    # Only the first of several (multiAddress) addresses is kept: enough for elections.
    host, ports = _split_host(server_part.split("|")[0], line)
    if len(ports) not in (2, 3) or (len(ports) == 3 and ports[2] not in _ROLES):
        raise ConfigTextError(f"expected host:q:e[:role] in config line {line!r}")
    observer = len(ports) == 3 and ports[2] == "observer"
    client: tuple[str, int] | None = None
    if client_part:
        chost, cports = _split_host(client_part.split(";")[0], line)
        if len(cports) != 1:
            raise ConfigTextError(f"expected host:port after ';' in config line {line!r}")
        client = (chost, _port(cports[0], line))
    return QuorumServer(
        sid, host, _port(ports[0], line), _port(ports[1], line), observer=observer, client=client
    )


_ROLES = ("participant", "observer")


def _split_host(text: str, line: str) -> tuple[str, list[str]]:
    text = text.strip()
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise ConfigTextError(f"bad IPv6 address in config line {line!r}")
        return text[1:close], text[close + 2 :].split(":")
    host, sep, rest = text.partition(":")
    if not sep:
        raise ConfigTextError(f"no port in config line {line!r}")
    return host, rest.split(":")


def _port(text: str, line: str) -> int:
    port = _parse_int(text, 10, line)
    if not 0 <= port <= 65535:
        raise ConfigTextError(f"port out of range in config line {line!r}")
    return port


class ServerSpecError(ConfigTextError):
    """A server statement ZooKeeper's QuorumServer would refuse (a ConfigException)."""


def parse_server_spec(sid: int, text: str) -> QuorumServer:
    """`host:quorumPort:electionPort[:role][;[clientHost:]clientPort]` as QuorumServer(sid,
    String) reads it: a client port without a host listens on 0.0.0.0; several '|'-joined
    addresses are refused (multiAddress.enabled is off by default); a third ';' part (3.10's
    secure client port) is ignored, as a 3.8 server never renders it."""
    parts = text.split(";")
    server_part = parts[0].strip()
    if "|" in server_part:
        raise ServerSpecError(f"server.{sid}: several addresses but multiAddress is disabled")
    fields = _host_fields(server_part, text)
    if len(fields) not in (3, 4):
        raise ServerSpecError(f"server.{sid}={text} does not have the form host:port:port")
    host = fields[0]
    quorum_port = _spec_port(fields[1], text)
    election_port = _spec_port(fields[2], text)
    if quorum_port == election_port:
        raise ServerSpecError(f"server.{sid}: quorum and election port must be different")
    observer = False
    if len(fields) == 4:
        role = fields[3].strip().lower()
        if role not in _ROLES:
            raise ServerSpecError(f"server.{sid}: unrecognised peertype {fields[3]!r}")
        observer = role == "observer"
    client: tuple[str, int] | None = None
    if len(parts) >= 2 and parts[1].strip():
        cfields = _host_fields(parts[1].strip(), text)
        if len(cfields) > 2:
            raise ServerSpecError(f"server.{sid}={text}: bad client address")
        chost = cfields[0] if len(cfields) == 2 else "0.0.0.0"
        client = (chost, _spec_port(cfields[-1], text))
    return QuorumServer(sid, host, quorum_port, election_port, observer=observer, client=client)


def _host_fields(text: str, spec: str) -> list[str]:
    """ConfigUtils.getHostAndPort: `a:b:c`, or `[v6]:b:c`."""
    if not text.startswith("["):
        return text.split(":")
    close = text.find("]")
    if close < 0 or (close + 1 < len(text) and text[close + 1] != ":"):
        raise ServerSpecError(f"bad IPv6 address in {spec!r}")
    rest = text[close + 2 :]
    return [text[1:close], *(rest.split(":") if rest else [])]


def _spec_port(text: str, spec: str) -> int:
    text = text.strip()
    if not text.isascii() or not text.lstrip("-").isdigit():
        raise ServerSpecError(f"address unresolved in {spec!r}")
    port = int(text)
    if not 0 <= port <= 65535:
        raise ServerSpecError(f"port out of range in {spec!r}")
    return port


def dynamic_file_text(verifier: QuorumVerifier, keep_version: bool = False) -> str:
    """QuorumPeerConfig.writeDynamicConfig: the config's `key=value` lines sorted as
    strings, joined by newlines (no trailing one); `version=` only for the `.next` file."""
    lines = [f"server.{s.sid}={s.config_value()}" for s in verifier.servers]
    if keep_version:
        lines.append(f"version={verifier.version:x}")
    return "\n".join(sorted(lines))
