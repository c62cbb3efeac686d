"""Self-tests of the test harness: server lifecycle and leak checks, the raw client, and the
comparator's ability to see a divergence (a comparator that always agrees would make every
differential test pass)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from corral.proto.codes import Err, EventType, OpCode
from corral.proto.records import GetChildrenRequest, GetDataRequest
from support import procs
from support.diffgen import generate
from support.difftest import Entry, Recorder, compare
from support.procs import ServerProcess, ServerSettings
from support.rawclient import RawClient
from support.zookeeper import ZooKeeperServer

pytestmark = pytest.mark.zookeeper


def test_server_stops_by_pid_and_frees_its_port(
    zookeeper_factory: Callable[..., ServerProcess],
) -> None:
    server = zookeeper_factory(ServerSettings())
    pid = server.pid
    assert pid is not None and pid in procs.LIVE
    assert procs.pid_alive(pid)
    assert procs.port_is_open(server.port)
    server.stop()
    assert pid not in procs.LIVE
    assert not procs.pid_alive(pid)
    assert not procs.port_is_open(server.port)


def test_leak_check_kills_and_reports_unstopped_servers(tmp_path: Path) -> None:
    before = set(procs.LIVE)
    server = ZooKeeperServer(ServerSettings(), tmp_path)
    server.start()
    pid = server.pid
    assert pid is not None
    leaked = procs.reap_new(before, shared=set())
    assert len(leaked) == 1 and f"pid {pid}" in leaked[0]
    assert pid not in procs.LIVE
    assert not procs.pid_alive(pid)


def test_settings_reach_the_server(zookeeper_pool: Any) -> None:
    settings = ServerSettings(extended_types=True, four_letter_words="ruok")
    server: ServerProcess = zookeeper_pool.get(settings)
    with RawClient.connect(server.address) as client:
        reply = client.create_ttl("/settings-ttl", 60_000)
        assert reply.err == Err.OK, "extendedTypesEnabled did not reach the server"


@pytest.mark.parametrize("which", ["zookeeper", "corral"])
def test_raw_client_speaks_every_handshake_and_newer_opcodes(
    which: str, request: pytest.FixtureRequest
) -> None:
    server: ServerProcess = request.getfixturevalue(which)
    with RawClient.connect(server.address, legacy=True) as legacy:
        assert legacy.session_id != 0
        assert legacy.ping().err == Err.OK
    with RawClient.connect(server.address) as client, RawClient.connect(server.address) as other:
        assert client.create("/raw", b"d").err == Err.OK
        assert client.create("/raw/e", b"", flags=1).err == Err.OK
        assert client.get_ephemerals("/raw").result.ephemerals == ("/raw/e",)
        assert client.get_all_children_number("/raw").result.total_number == 1
        assert ("ip", "127.0.0.1") in {
            (i.auth_scheme, i.user) for i in client.who_am_i().result.client_info
        }
        reply = client.multi_read(
            [
                (OpCode.GET_DATA, GetDataRequest("/raw", False)),
                (OpCode.GET_CHILDREN, GetChildrenRequest("/missing", False)),
            ]
        )
        assert [(r.type, r.err) for r in reply.result] == [(OpCode.GET_DATA, 0), (-1, Err.NONODE)]
        assert client.get_data("/raw", True).err == Err.OK
        assert client.check_watches("/raw", 2).err == Err.OK
        assert client.remove_watches("/raw", 2).err == Err.OK
        assert client.check_watches("/raw", 2).err == Err.NOWATCHER
        assert client.add_watch("/raw", 1).err == Err.OK
        assert other.set_data("/raw", b"x").err == Err.OK
        client.ping()
        assert [(e.type, e.path) for e in client.take_events()] == [
            (EventType.NODE_DATA_CHANGED, "/raw")
        ]
        assert other.delete("/raw/e").err == Err.OK
        assert other.delete("/raw").err == Err.OK


def test_comparator_sees_every_kind_of_divergence(zookeeper: ServerProcess) -> None:
    for seed in range(20):
        transcript = Recorder(zookeeper.address, "cmp").run(seed, generate(seed))
        with_events = [e for e in transcript if e.events]
        with_stat = [e for e in transcript if e.outcome[0] == "OK" and e.outcome[1] is not None]
        if with_events and with_stat:
            break
    else:
        pytest.fail("no seed in 0..19 gives a transcript with notifications and Stats")
    assert compare(seed, transcript, copy.deepcopy(transcript), [], (3, 8), (3, 8)) is None

    def diverged(mutate: Callable[[list[Entry]], object]) -> bool:
        other = copy.deepcopy(transcript)
        mutate(other)
        return compare(seed, transcript, other, [], (3, 8), (3, 8)) is not None

    i, j = with_events[0].index, with_stat[0].index
    assert diverged(lambda t: t[i].events.clear())
    assert diverged(lambda t: t[i].events.update({"s9": [(1, 3, "/", "+1")]}))
    assert diverged(lambda t: setattr(t[j], "outcome", ("OK", None)))
    assert diverged(lambda t: setattr(t[j], "reply_zxid", "+999"))
    assert diverged(lambda t: t.pop())
