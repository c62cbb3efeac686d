"""Sessions against Corral through kazoo (and the raw client where kazoo hides the detail):
timeout negotiation, expiry (ephemerals removed, watches fired), reconnect with session id
and password, a wrong password, the readOnly flag, and sessions surviving a restart.

Network breaks are made with a small TCP proxy between kazoo and the server, so kazoo's own
reconnect logic (same session id and password) is what is tested.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient  # type: ignore[import-untyped]
from kazoo.protocol.states import EventType as KazooEvent  # type: ignore[import-untyped]
from kazoo.protocol.states import KazooState, KeeperState  # type: ignore[import-untyped]
from kazoo.security import make_digest_acl  # type: ignore[import-untyped]

from conftest import ServerPool
from corral.proto.codes import Err, EventType
from support import kazoo_client
from support.procs import HOST, ServerProcess, ServerSettings
from support.rawclient import ConnectionClosed, RawClient

WAIT_S = 10.0

# tickTime 200: the default bounds are 400..4000 ms, so expiry takes well under a second.
SETTINGS = ServerSettings(tick_ms=200)
CONFIGURED = ServerSettings(
    tick_ms=200, cfg=(("minSessionTimeout", "1500"), ("maxSessionTimeout", "2500"))
)
# kazoo retries a broken connection quickly, without long backoff.
FAST_RETRY = {"max_tries": -1, "delay": 0.05, "backoff": 1.5, "max_delay": 0.3}


@pytest.fixture(scope="module")
def server(corral_pool: ServerPool) -> ServerProcess:
    return corral_pool.get(SETTINGS)


class Proxy:
    """A TCP relay to the server that a test can cut (drop every connection and refuse new
    ones) and heal."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(0.1)  # so the accept loop notices close() promptly
        self.port = int(self.listener.getsockname()[1])
        self.cut_off = threading.Event()
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.cut_off.is_set():
                conn.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=WAIT_S)
            except OSError:
                conn.close()
                continue
            for s in (conn, upstream):
                s.settimeout(None)
            with self.lock:
                self.sockets += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                t = threading.Thread(target=self._pump, args=(a, b), daemon=True)
                t.start()
                self.threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def cut(self) -> None:
        self.cut_off.set()
        with self.lock:
            for s in self.sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            self.sockets.clear()

    def heal(self) -> None:
        self.cut_off.clear()

    def close(self) -> None:
        self.stopping.set()
        self.cut()
        self.listener.close()
        for t in self.threads:
            t.join(WAIT_S)


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[Proxy]:
    relay = Proxy(server.address)
    yield relay
    relay.close()


def fast_client(port: int, timeout_s: float = 10.0, **kwargs: Any) -> KazooClient:
    """A client that retries its connection quickly (FAST_RETRY)."""
    return kazoo_client.start(
        (HOST, port), timeout=timeout_s, connection_retry=FAST_RETRY, **kwargs
    )


@contextlib.contextmanager
def started(client_factory: Callable[[], KazooClient]) -> Iterator[KazooClient]:
    client = client_factory()
    try:
        yield client
    finally:
        kazoo_client.stop(client)


class StateLog:
    """kazoo's state changes, as a queue the test waits on."""

    def __init__(self, client: KazooClient) -> None:
        self.states: queue.Queue[str] = queue.Queue()
        client.add_listener(self.states.put)

    def wait_for(self, state: str) -> list[str]:
        """The states seen up to and including `state` (bounded wait)."""
        seen = []
        while True:
            seen.append(self.states.get(timeout=WAIT_S))
            if seen[-1] == state:
                return seen


def test_timeout_negotiation_default_bounds(server: ServerProcess) -> None:
    for asked, negotiated in ((100, 400), (1000, 1000), (100_000, 4000)):
        with RawClient.connect(server.address, timeout_ms=asked) as raw:
            assert raw.connect_response is not None
            assert raw.connect_response.timeout == negotiated


def test_timeout_negotiation_configured_bounds(corral_pool: ServerPool) -> None:
    configured = corral_pool.get(CONFIGURED)
    for asked, negotiated in ((100, 1500), (2000, 2000), (100_000, 2500)):
        with RawClient.connect(configured.address, timeout_ms=asked) as raw:
            assert raw.connect_response is not None
            assert raw.connect_response.timeout == negotiated


def test_pings_keep_an_idle_session_alive(server: ServerProcess) -> None:
    # 1.2 s: kazoo pings every ~0.4 s; a shorter timeout would test this loaded machine's
    # scheduler more than the server.
    with started(lambda: fast_client(server.port, timeout_s=1.2)) as zk:
        states = StateLog(zk)
        session = zk.client_id
        zk.create("/idle", ephemeral=True)
        # Idle for three session timeouts: not a synchronisation, the point of the test.
        threading.Event().wait(3.6)
        assert states.states.empty()  # never suspended or lost
        assert zk.client_id == session
        assert zk.exists("/idle").ephemeralOwner == session[0]


def test_kazoo_reconnects_to_its_session_after_a_break(proxy: Proxy) -> None:
    only_me = [make_digest_acl("ivy", "pw", all=True)]
    with started(lambda: fast_client(proxy.port, auth_data=[("digest", "ivy:pw")])) as zk:
        states = StateLog(zk)
        session = zk.client_id
        zk.create("/survivor", ephemeral=True, acl=only_me)
        proxy.cut()
        assert states.wait_for(KazooState.SUSPENDED)[-1] == KazooState.SUSPENDED
        proxy.heal()
        # Reconnected with the same id and password: the session and its ephemeral live on.
        assert states.wait_for(KazooState.CONNECTED) == [KazooState.CONNECTED]
        assert zk.client_id == session
        # kazoo sent its digest auth again on the new connection.
        assert zk.exists("/survivor").ephemeralOwner == session[0]


def test_expiry_removes_ephemerals_fires_watches_and_kazoo_sees_lost(
    server: ServerProcess, proxy: Proxy
) -> None:
    with (
        started(lambda: fast_client(server.port)) as watcher,
        started(lambda: fast_client(proxy.port, timeout_s=1.0)) as doomed,
    ):
        states = StateLog(doomed)
        old_session = doomed.client_id
        doomed.ensure_path("/exp")
        doomed.create("/exp/eph", b"x", ephemeral=True)
        doomed.create("/exp/eph-seq-", ephemeral=True, sequence=True)
        deleted: queue.Queue[Any] = queue.Queue()
        assert watcher.exists("/exp/eph", watch=deleted.put) is not None
        children: queue.Queue[Any] = queue.Queue()
        assert len(watcher.get_children("/exp", watch=children.put)) == 2

        proxy.cut()  # the doomed client can no longer reach the server
        event = deleted.get(timeout=WAIT_S)
        assert (event.type, event.path) == (KazooEvent.DELETED, "/exp/eph")
        event = children.get(timeout=WAIT_S)
        assert (event.type, event.path) == (KazooEvent.CHILD, "/exp")
        assert watcher.get_children("/exp") == []

        proxy.heal()
        # kazoo reconnects with the old id and password, learns it expired, starts afresh.
        seen = states.wait_for(KazooState.CONNECTED)
        assert KazooState.LOST in seen
        assert doomed.client_id[0] != old_session[0]
        assert doomed.exists("/exp/eph") is None


def test_close_removes_ephemerals_in_one_transaction(server: ServerProcess) -> None:
    with (
        started(lambda: fast_client(server.port)) as watcher,
        RawClient.connect(server.address) as raw_watcher,
    ):
        owner = fast_client(server.port)
        owner.ensure_path("/closing")
        for name in ("a", "b", "c"):
            owner.create(f"/closing/{name}", ephemeral=True)
            assert raw_watcher.exists(f"/closing/{name}", watch=True).err == 0
        assert len(watcher.get_children("/closing")) == 3
        kazoo_client.stop(owner)
        # One closeSession txn deleted all three: their events carry one zxid (3.9), the
        # parent's pzxid.
        events = [raw_watcher.wait_event() for _ in range(3)]
        assert {(e.type, e.path) for e in events} == {
            (EventType.NODE_DELETED, f"/closing/{name}") for name in ("a", "b", "c")
        }
        _, stat = watcher.get_children("/closing", include_data=True)
        assert stat.numChildren == 0
        assert stat.cversion == 6
        assert {e.zxid for e in events} == {stat.pzxid}


def test_reconnect_with_id_and_password_and_a_wrong_password(server: ServerProcess) -> None:
    first = RawClient.connect(server.address, timeout_ms=4000)
    session, passwd = first.session_id, first.passwd
    assert len(passwd) == 16
    first.create("/mine", flags=1)
    first.abort()
    with pytest.raises(ConnectionClosed):
        RawClient.connect(server.address, session_id=session, passwd=bytes(16))
    again = RawClient.connect(server.address, session_id=session, passwd=passwd)
    try:
        assert again.session_id == session
        assert again.exists("/mine").result.stat.ephemeral_owner == session
    finally:
        again.close()
    # Closed now: even the right password finds the session expired.
    with pytest.raises(ConnectionClosed):
        RawClient.connect(server.address, session_id=session, passwd=passwd)


def test_a_client_from_the_future_is_refused(server: ServerProcess) -> None:
    """A lastZxidSeen beyond the server's own: ZooKeeper closes the connection, so the
    client looks for a server that has seen what it has."""
    with RawClient.connect(server.address) as raw:
        raw.create("/future")
        seen = raw.last_zxid
        with pytest.raises(ConnectionClosed):
            RawClient.connect(server.address, last_zxid_seen=seen + 1000)
        with pytest.raises(ConnectionClosed):
            RawClient.connect(
                server.address, session_id=raw.session_id, passwd=raw.passwd,
                last_zxid_seen=seen + 1000,
            )  # fmt: skip
        assert raw.exists("/future").err == 0


def test_session_moves_to_a_new_connection(server: ServerProcess) -> None:
    first = RawClient.connect(server.address)
    try:
        first.create("/moved", flags=1)
        second = RawClient.connect(
            server.address, session_id=first.session_id, passwd=first.passwd,
            last_zxid_seen=first.last_zxid,
        )  # fmt: skip
        try:
            # The old connection is closed; the session lives on the new one.
            assert first.connection_closed(WAIT_S)
            assert second.exists("/moved").result.stat.ephemeral_owner == first.session_id
        finally:
            second.close()
    finally:
        first.abort()


def test_kazoo_with_a_wrong_password_gets_expired(
    server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    with started(lambda: fast_client(server.port)) as owner:
        session_id = owner.client_id[0]
        owner.create("/owned", ephemeral=True)
        caplog.set_level("WARNING", logger="kazoo.client")
        impostor = KazooClient(
            hosts=f"{HOST}:{server.port}",
            timeout=10.0,
            client_id=(session_id, b"\x01" * 16),
            connection_retry=FAST_RETRY,
        )
        # The server answers the handshake as for an expired session; kazoo then starts a
        # new one (it was never connected, so no LOST transition is reported).
        with started(lambda: (impostor.start(timeout=15.0), impostor)[1]):
            assert "Session has expired" in caplog.text
            assert impostor.client_id[0] != session_id
            assert impostor.exists("/owned").ephemeralOwner == session_id
        # The rightful owner's session was not disturbed.
        assert owner.exists("/owned").ephemeralOwner == session_id
        assert owner.client_id[0] == session_id


def test_read_only_flag(server: ServerProcess) -> None:
    with RawClient.connect(server.address, read_only=True) as raw:
        assert raw.connect_response is not None
        assert raw.connect_response.read_only is False  # a read-write server says so
        assert raw.create("/ro-flag").err == 0
    with RawClient.connect(server.address, legacy=True) as raw:  # no readOnly byte at all
        assert raw.create("/ro-legacy").err == 0
    with started(lambda: fast_client(server.port, read_only=True)) as zk:
        assert zk.client_state == KeeperState.CONNECTED
        zk.create("/ro-kazoo")
        assert zk.exists("/ro-kazoo") is not None


def test_sessions_survive_a_restart(corral_factory: Callable[..., ServerProcess]) -> None:
    server = corral_factory(SETTINGS)
    first = RawClient.connect(server.address, timeout_ms=4000)
    first.create("/kept", flags=1)
    # A session whose client never comes back: after the restart it still expires.
    gone = RawClient.connect(server.address, timeout_ms=400)
    gone.create("/abandoned", flags=1)
    session, passwd, seen = first.session_id, first.passwd, gone.last_zxid
    first.abort()
    gone.abort()
    server.restart()
    again = RawClient.connect(
        server.address, session_id=session, passwd=passwd, last_zxid_seen=seen
    )
    try:
        assert again.exists("/kept").result.stat.ephemeral_owner == session
        if again.exists("/abandoned", watch=True).err == 0:
            event = again.wait_event()
            assert (event.type, event.path) == (EventType.NODE_DELETED, "/abandoned")
        assert again.exists("/abandoned").err == Err.NONODE
        assert again.exists("/kept").err == 0
    finally:
        again.close()
