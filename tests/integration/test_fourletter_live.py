"""The basic four-letter words of a live Corral against a live Debian ZooKeeper 3.8.

Both servers get the same zoo.cfg and the same client activity (a kazoo session with a
persistent node, an ephemeral and a data watch, kept open while the words are asked), then
ruok, srvr, stat, envi, conf, isro and mntr are compared key by key: the same keys in the
same order, and the same values wherever the value is not about the process itself (paths,
ports, versions, times, sizes on disk). Corral's ``zookeeper.version`` is the ZooKeeper
release it is compatible with, which kazoo's ``server_version()`` reads.

The differences that are by design are spelled out here and in the audit:
- ``envi`` reports Python instead of the JVM: ZooKeeper's java.* keys are replaced by
  corral.version, python.* and process.id; the os.memory.* (JVM heap) keys have no
  counterpart.
- ``mntr`` prints ZooKeeper's version, state and its 24 gauges (the lines monitoring tools
  read), but not yet the several hundred counters and summaries of ZooKeeper's metrics
  registry: Corral's keys are a prefix of ZooKeeper's.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Iterator

import pytest

from conftest import ServerPool
from corral import ZOOKEEPER_COMPAT_VERSION
from support import kazoo_client
from support.procs import ServerProcess, ServerSettings

WAIT_S = 15.0
KINDS = ("zookeeper", "corral")
# A stat/cons client line: " /127.0.0.1:port[interest](queued=..,recved=..,sent=..)".
_CLIENT_LINE = re.compile(r"^ /127\.0\.0\.1:\d+\[[01]\]\(queued=\d+,recved=\d+,sent=\d+\)$")
# envi: ZooKeeper's JVM keys, and what Corral prints about its Python runtime instead.
_JVM_ONLY = {
    "java.version",
    "java.vendor",
    "java.home",
    "java.class.path",
    "java.library.path",
    "java.io.tmpdir",
    "java.compiler",
    "os.memory.free",
    "os.memory.max",
    "os.memory.total",
}
_CORRAL_ONLY = {
    "corral.version",
    "python.version",
    "python.implementation",
    "python.executable",
    "process.id",
}
# conf values that are about this process (its ports, its directories and their sizes).
_CONF_OWN = {"clientPort", "dataDir", "dataDirSize", "dataLogDir", "dataLogSize"}
# mntr gauges whose values depend on the process, the JVM or timing, not on the tree.
_MNTR_OWN = {
    "version",
    "avg_latency",
    "max_latency",
    "min_latency",
    "packets_received",
    "packets_sent",
    "uptime",
    "open_file_descriptor_count",
    "max_file_descriptor_count",
    "last_client_response_size",
    "max_client_response_size",
    "min_client_response_size",
}


def ask(server: ServerProcess, word: str) -> str:
    with socket.create_connection(server.address, timeout=WAIT_S) as sock:
        sock.sendall(word.encode())
        return b"".join(iter(lambda: sock.recv(65536), b"")).decode()


def _colon_pairs(text: str) -> list[tuple[str, str]]:
    return [
        (key, value)
        for key, sep, value in (line.partition(": ") for line in text.splitlines())
        if sep
    ]


def _eq_pairs(lines: list[str]) -> list[tuple[str, str]]:
    return [(key, value) for key, _, value in (line.partition("=") for line in lines)]


@pytest.fixture(scope="module")
def servers(zookeeper_pool: ServerPool, corral_pool: ServerPool) -> dict[str, ServerProcess]:
    settings = ServerSettings()  # 4lw.commands.whitelist=*
    return {"zookeeper": zookeeper_pool.get(settings), "corral": corral_pool.get(settings)}


@pytest.fixture(scope="module")
def answers(servers: dict[str, ServerProcess]) -> Iterator[dict[str, dict[str, str]]]:
    """Each server's answer to each word, asked while the same kazoo session is open."""
    out: dict[str, dict[str, str]] = {}
    with contextlib.ExitStack() as clients:
        for kind, server in servers.items():
            zk = clients.enter_context(
                kazoo_client.session(server.address, timeout=30.0, start_timeout=WAIT_S)
            )
            zk.create("/live", b"twelve bytes")
            zk.create("/live/eph", b"e", ephemeral=True)
            zk.get("/live", watch=lambda event: None)
            out[kind] = {
                word: ask(server, word)
                for word in ("ruok", "isro", "srvr", "stat", "conf", "envi", "mntr")
            }
        yield out


def test_ruok_and_isro(answers: dict[str, dict[str, str]]) -> None:
    for word, expected in (("ruok", "imok"), ("isro", "rw")):
        assert answers["corral"][word] == answers["zookeeper"][word] == expected


@pytest.mark.parametrize("word", ["srvr", "stat"])
def test_srvr_and_stat(word: str, answers: dict[str, dict[str, str]]) -> None:
    pairs = {kind: _colon_pairs(answers[kind][word]) for kind in KINDS}
    assert [k for k, _ in pairs["corral"]] == [k for k, _ in pairs["zookeeper"]]
    values = {kind: dict(pairs[kind]) for kind in KINDS}
    for key in ("Connections", "Outstanding", "Zxid", "Mode", "Node count"):
        assert values["corral"][key] == values["zookeeper"][key], key
    assert values["corral"]["Mode"] == "standalone"
    for kind in KINDS:
        assert re.fullmatch(r"\d+/\d+\.\d+/\d+", values[kind]["Latency min/avg/max"])
    version = values["corral"]["Zookeeper version"]
    assert version.startswith(f"{ZOOKEEPER_COMPAT_VERSION}-")
    if word == "stat":
        # The "Clients:" block: one line per connection (kazoo's and the asking one), then
        # a blank line, in the same layout.
        blocks = {}
        for kind in KINDS:
            lines = answers[kind][word].splitlines()
            start = lines.index("Clients:") + 1
            end = lines.index("", start)
            blocks[kind] = lines[start:end]
            assert all(_CLIENT_LINE.match(line) for line in blocks[kind]), blocks[kind]
        assert len(blocks["corral"]) == len(blocks["zookeeper"]) == 2


def test_conf(answers: dict[str, dict[str, str]]) -> None:
    pairs = {kind: _eq_pairs(answers[kind]["conf"].splitlines()) for kind in KINDS}
    assert [k for k, _ in pairs["corral"]] == [k for k, _ in pairs["zookeeper"]]
    same = {kind: [(k, v) for k, v in pairs[kind] if k not in _CONF_OWN] for kind in KINDS}
    assert same["corral"] == same["zookeeper"]


def test_envi(answers: dict[str, dict[str, str]], servers: dict[str, ServerProcess]) -> None:
    texts = {kind: answers[kind]["envi"].splitlines() for kind in KINDS}
    for kind in KINDS:
        assert texts[kind][0] == "Environment:"
    keys = {kind: [k for k, _ in _eq_pairs(texts[kind][1:])] for kind in KINDS}
    assert keys["corral"][0] == keys["zookeeper"][0] == "zookeeper.version"
    # The keys both print, in the same order; the rest is the documented JVM/Python swap.
    assert [k for k in keys["corral"] if k not in _CORRAL_ONLY] == [
        k for k in keys["zookeeper"] if k not in _JVM_ONLY
    ]
    assert set(keys["corral"]) - set(keys["zookeeper"]) == _CORRAL_ONLY
    assert set(keys["zookeeper"]) - set(keys["corral"]) == _JVM_ONLY
    # kazoo reads the version from envi: Corral reports the ZooKeeper it is compatible with.
    expected = tuple(int(part) for part in ZOOKEEPER_COMPAT_VERSION.split("."))
    with kazoo_client.session(servers["corral"].address, start_timeout=WAIT_S) as zk:
        assert zk.server_version(retries=1) == expected


def test_mntr(answers: dict[str, dict[str, str]]) -> None:
    pairs = {
        kind: [tuple(line.split("\t", 1)) for line in answers[kind]["mntr"].splitlines()]
        for kind in KINDS
    }
    for kind in KINDS:
        assert all(len(p) == 2 and p[0].startswith("zk_") for p in pairs[kind]), kind
    keys = {kind: [p[0] for p in pairs[kind]] for kind in KINDS}
    ours, theirs = keys["corral"], keys["zookeeper"]
    # Version, state and the 24 gauges: ZooKeeper's first lines, key for key.
    assert len(ours) == 26
    assert ours == theirs[: len(ours)]
    values = {kind: dict(pairs[kind]) for kind in KINDS}
    for key in ours:
        if key[3:] not in _MNTR_OWN:
            assert values["corral"][key] == values["zookeeper"][key], key
    assert values["corral"]["zk_server_state"] == "standalone"
    assert values["corral"]["zk_ephemerals_count"] == "1"
    assert values["corral"]["zk_watch_count"] == "1"


def test_packet_counts_move_as_zookeepers(servers: dict[str, ServerProcess]) -> None:
    """Each word is one packet received and, once answered, one packet sent."""
    moves = {}
    for kind, server in servers.items():
        before = dict(_colon_pairs(ask(server, "srvr")))
        for word in ("ruok", "isro", "conf"):
            ask(server, word)
        after = dict(_colon_pairs(ask(server, "srvr")))
        moves[kind] = tuple(int(after[k]) - int(before[k]) for k in ("Received", "Sent"))
    assert moves["corral"] == moves["zookeeper"] == (4, 4)


def test_resets_as_zookeepers(servers: dict[str, ServerProcess]) -> None:
    """srst zeroes the server's counters (its own answer then counts as sent), crst only the
    connections': the server's packet counts go on."""
    seen = {}
    for kind, server in servers.items():
        ask(server, "srst")
        after_srst = dict(_colon_pairs(ask(server, "srvr")))
        ask(server, "crst")
        after_crst = dict(_colon_pairs(ask(server, "srvr")))
        seen[kind] = [
            (stats["Received"], stats["Sent"], stats["Latency min/avg/max"])
            for stats in (after_srst, after_crst)
        ]
    assert seen["corral"] == seen["zookeeper"] == [("1", "1", "0/0.0/0"), ("3", "3", "0/0.0/0")]


def test_whitelist(zookeeper_pool: ServerPool, corral_pool: ServerPool) -> None:
    """Words outside 4lw.commands.whitelist get ZooKeeper's refusal line; a word that is
    not a four-letter word gets nothing (the server reads it as a frame length)."""
    settings = ServerSettings(four_letter_words="ruok, conf")
    got = {
        kind: {
            word: ask(pool.get(settings), word)
            for word in ("ruok", "srvr", "stat", "envi", "isro", "mntr", "cons", "zzzz")
        }
        for kind, pool in (("zookeeper", zookeeper_pool), ("corral", corral_pool))
    }
    srvr = {kind: got[kind].pop("srvr") for kind in got}
    assert got["corral"] == got["zookeeper"]
    ours = got["corral"]
    assert ours["ruok"] == "imok"
    for word in ("stat", "envi", "isro", "mntr", "cons"):
        assert ours[word] == f"{word} is not executed because it is not in the whitelist.\n"
    # srvr is not in the list but always allowed (ZooKeeper adds it), "zzzz" is not a word.
    assert srvr["corral"].startswith("Zookeeper version: ")
    assert srvr["zookeeper"].startswith("Zookeeper version: ")
    assert ours["zzzz"] == ""


def test_default_whitelist(zookeeper_pool: ServerPool, corral_pool: ServerPool) -> None:
    """A zoo.cfg without 4lw.commands.whitelist: ZooKeeper's default, srvr only."""
    settings = ServerSettings(four_letter_words=None)
    got = {
        kind: {word: ask(pool.get(settings), word) for word in ("ruok", "stat", "isro", "srvr")}
        for kind, pool in (("zookeeper", zookeeper_pool), ("corral", corral_pool))
    }
    for kind in got:
        assert got[kind].pop("srvr").startswith("Zookeeper version: "), kind
    assert got["corral"] == got["zookeeper"]
    assert got["corral"]["ruok"] == "ruok is not executed because it is not in the whitelist.\n"
