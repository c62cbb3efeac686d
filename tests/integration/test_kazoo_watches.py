"""Watches through unmodified kazoo against Corral: DataWatch/ChildrenWatch, one-shot
semantics, event-before-data ordering, and the events of ephemerals whose session expires.

kazoo runs watch callbacks on its own thread; the tests hand what they see to the test
thread through queues and events with bounded waits.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient  # type: ignore[import-untyped]
from kazoo.protocol.states import EventType as KazooEvent  # type: ignore[import-untyped]
from kazoo.protocol.states import WatchedEvent  # type: ignore[import-untyped]

from conftest import ServerPool
from corral.proto.codes import EventType
from support import kazoo_client
from support.procs import ServerProcess, ServerSettings
from support.rawclient import RawClient

WAIT_S = 10.0

# A short tick so a session with the minimum timeout (2 ticks) expires within a second.
SETTINGS = ServerSettings(tick_ms=200)


@pytest.fixture(scope="module")
def server(corral_pool: ServerPool) -> ServerProcess:
    return corral_pool.get(SETTINGS)


@pytest.fixture
def zk(server: ServerProcess) -> Iterator[KazooClient]:
    with kazoo_client.session(server.address) as client:
        yield client


@pytest.fixture
def writer(server: ServerProcess) -> Iterator[KazooClient]:
    with kazoo_client.session(server.address) as client:
        yield client


def take(q: queue.Queue[Any]) -> Any:
    return q.get(timeout=WAIT_S)


def test_data_watch_follows_the_node(zk: KazooClient, writer: KazooClient) -> None:
    seen: queue.Queue[tuple[bytes | None, int | None, str | None]] = queue.Queue()

    @zk.DataWatch("/dw")
    def _watch(data: bytes | None, stat: Any, event: WatchedEvent | None) -> None:
        seen.put((data, stat.version if stat else None, event.type if event else None))

    assert take(seen) == (None, None, None)  # the initial call: no node yet
    writer.create("/dw", b"one")
    assert take(seen) == (b"one", 0, KazooEvent.CREATED)
    writer.set("/dw", b"two")
    assert take(seen) == (b"two", 1, KazooEvent.CHANGED)
    writer.delete("/dw")
    assert take(seen) == (None, None, KazooEvent.DELETED)
    writer.create("/dw", b"again")
    assert take(seen) == (b"again", 0, KazooEvent.CREATED)


def test_children_watch_follows_the_children(zk: KazooClient, writer: KazooClient) -> None:
    writer.create("/cw")
    seen: queue.Queue[list[str]] = queue.Queue()

    @zk.ChildrenWatch("/cw")
    def _watch(children: list[str]) -> None:
        seen.put(sorted(children))

    assert take(seen) == []
    writer.create("/cw/a")
    assert take(seen) == ["a"]
    writer.create("/cw/b", ephemeral=True)
    assert take(seen) == ["a", "b"]
    writer.set("/cw/a", b"data changes are not child changes")
    writer.delete("/cw/a")
    assert take(seen) == ["b"]


def test_one_shot_watches_fire_once(zk: KazooClient, writer: KazooClient) -> None:
    writer.create("/once", b"0")
    writer.create("/once/kid")
    data_events: queue.Queue[WatchedEvent] = queue.Queue()
    child_events: queue.Queue[WatchedEvent] = queue.Queue()
    exist_events: queue.Queue[WatchedEvent] = queue.Queue()
    zk.get("/once", watch=data_events.put)
    zk.get("/once", watch=data_events.put)  # the same watcher twice: still one event
    zk.get_children("/once", watch=child_events.put)
    assert zk.exists("/once/new", watch=exist_events.put) is None
    writer.set("/once", b"1")
    writer.set("/once", b"2")
    writer.create("/once/new")
    writer.create("/once/new2")
    event = take(data_events)
    assert (event.type, event.path) == (KazooEvent.CHANGED, "/once")
    event = take(child_events)
    assert (event.type, event.path) == (KazooEvent.CHILD, "/once")
    event = take(exist_events)
    assert (event.type, event.path) == (KazooEvent.CREATED, "/once/new")
    # A barrier: a fresh watch fired after all the writes above. kazoo delivers events in
    # order on one thread, so any second firing of the old watches would be queued by now.
    barrier = threading.Event()
    zk.get("/once", watch=lambda _event: barrier.set())
    writer.set("/once", b"3")
    assert barrier.wait(WAIT_S)
    assert data_events.empty()
    assert child_events.empty()
    assert exist_events.empty()


def test_event_comes_before_the_data(server: ServerProcess, writer: KazooClient) -> None:
    """A client that reads the new data has already received the event for the change."""
    writer.create("/order", b"old")
    with RawClient.connect(server.address) as reader:
        for round_ in range(20):
            assert reader.get_data("/order", watch=True).result.data != b"%d" % round_
            writer.set("/order", b"%d" % round_)
            # Read until the new data shows; by then the notification must be in.
            while True:
                data = reader.get_data("/order").result.data
                if data == b"%d" % round_:
                    break
                assert not reader.events
            events = reader.take_events()
            assert [(e.type, e.path) for e in events] == [(EventType.NODE_DATA_CHANGED, "/order")]


def test_watches_on_ephemerals_fire_when_their_session_expires(
    server: ServerProcess, zk: KazooClient
) -> None:
    zk.create("/expiring")
    # The raw client never pings: its session must outlive the watch set-up below even on a
    # loaded machine, and still expire well within WAIT_S once abandoned.
    owner = RawClient.connect(server.address, timeout_ms=2000)
    assert owner.connect_response is not None
    assert owner.connect_response.timeout == 2000
    assert owner.create("/expiring/eph", b"e", flags=1).err == 0
    events: queue.Queue[tuple[str, Any]] = queue.Queue()

    @zk.DataWatch("/expiring/eph")
    def _data(data: bytes | None, stat: Any, event: WatchedEvent | None) -> None:
        events.put(("data", event.type if event else data))

    @zk.ChildrenWatch("/expiring")
    def _kids(kids: list[str]) -> None:
        events.put(("children", tuple(kids)))

    initial = {take(events), take(events)}
    assert initial == {("data", b"e"), ("children", ("eph",))}
    owner.abort()  # no closeSession: the session must expire
    fired = {take(events), take(events)}
    assert fired == {("data", KazooEvent.DELETED), ("children", ())}
    assert zk.exists("/expiring/eph") is None
