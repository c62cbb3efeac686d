"""Assembly of layers that may not import each other: the four-letter words for net/.

net/ runs the server but sits below admin/, so the renderer is built here, at the top, and
handed to `net.runner.run_server` as a factory of the running `ServerState`.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path

from corral.admin.core_snapshot import server_snapshot
from corral.admin.fourletter import ServerConf, answer, collect_environment
from corral.config import ServerConfig
from corral.net.runner import ServerState

__all__ = ["four_letter_factory", "not_serving_four_letter"]

# Words whose answer includes directory sizes (a directory walk per request).
_SIZED = frozenset({"conf", "dirs", "mntr"})
# Words that act rather than report, with ZooKeeper's replies.
_RESETS = {"srst": b"Server stats reset.\n", "crst": b"Connection stats reset.\n"}


def _quorum_conf(state: ServerState) -> tuple[tuple[tuple[str, str], ...], str] | None:
    """conf's quorum lines on an ensemble member (QuorumZooKeeperServer.dumpConf): limits,
    election algorithm, this member's ports (all of them, `|`-joined, with multiAddress),
    its peer type (0 participant, 1 observer) and the membership: the quorum verifier's text,
    which is what /zookeeper/config holds (it follows reconfigs)."""
    ens = state.config.ensemble
    me = next((s for s in ens.servers if s.sid == ens.server_id), None)
    mode = state.core.mode
    if me is None or mode not in ("leader", "follower", "observer"):
        return None
    node = state.core.tree.get("/zookeeper/config")
    quorum = (
        ("initLimit", str(ens.init_limit)),
        ("syncLimit", str(ens.sync_limit)),
        ("electionAlg", str(ens.election_alg)),
        ("electionPort", "|".join(str(a.election_port) for a in me.addresses)),
        ("quorumPort", "|".join(str(a.quorum_port) for a in me.addresses)),
        ("peerType", "1" if mode == "observer" else "0"),
    )
    data = node.data if node is not None and node.data else b""
    return quorum, data.decode("utf-8", "replace")


def four_letter_factory(state: ServerState) -> Callable[[int, str], bytes]:
    """The renderer net/ calls with (connection id, word); returns the bytes to send."""
    config = state.config
    started = time.monotonic()
    environment = collect_environment()

    def render(conn_id: int, word: str) -> bytes:
        if word in _RESETS and word in config.four_letter_words:
            # As ZooKeeper: srst zeroes the server's counters, crst the connections'.
            state.core.reset_stats(server=word == "srst", connections=word == "crst")
            state.core.packets_sent += 1  # the answer, counted after the reset
            return _RESETS[word]
        sized = word in _SIZED
        conf = ServerConf(
            client_port=state.clients.bound_ports.get(False, config.client_port or -1),
            data_dir=str(state.database.snap_dir),
            data_log_dir=str(state.database.log_dir),
            tick_time=config.tick_time_ms,
            max_client_cnxns=config.max_client_cnxns,
            min_session_timeout=config.min_session_timeout_ms,
            max_session_timeout=config.max_session_timeout_ms,
            secure_client_port=state.clients.bound_ports.get(True, -1),
            data_dir_size=_dir_size(state.database.snap_dir) if sized else 0,
            data_log_size=_dir_size(state.database.log_dir) if sized else 0,
            client_port_listen_backlog=config.client_port_listen_backlog,
            server_id=config.ensemble.server_id or 0,
        )
        quorum = _quorum_conf(state)
        if quorum is not None:
            conf = dataclasses.replace(conf, quorum=quorum[0], membership=quorum[1])
        open_fds, max_fds = _file_descriptors()
        snapshot = server_snapshot(
            state.core.snapshot_for_4lw(conn_id),
            conf,
            mode=state.core.mode,
            uptime_ms=int((time.monotonic() - started) * 1000),
            environment=environment,
            open_file_descriptor_count=open_fds,
            max_file_descriptor_count=max_fds,
        )
        reply = answer(word, snapshot, config.four_letter_words) or b""
        if reply:
            # ZooKeeper counts a word's answer (a refusal too) as a packet sent, after
            # rendering: srvr's "Sent:" never includes its own answer.
            state.core.packets_sent += 1
        return reply

    return render


def not_serving_four_letter(config: ServerConfig) -> Callable[[int, str], bytes]:
    """The renderer of an ensemble member that serves no clients (electing or syncing):
    ZooKeeper's "not currently serving requests" for the words that need a running server,
    imok for ruok, null for isro; a word outside the whitelist gets its refusal line."""

    def render(_conn_id: int, word: str) -> bytes:
        return answer(word, None, config.four_letter_words) or b""

    return render


def _dir_size(directory: Path) -> int:
    total = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    except OSError:
        pass
    return total


def _file_descriptors() -> tuple[int, int]:
    try:
        open_fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_fds = -1
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return open_fds, soft if soft != resource.RLIM_INFINITY else -1
