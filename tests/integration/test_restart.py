"""Restarts: sessions outlive a clean restart as in ZooKeeper; SIGTERM/SIGINT lose nothing.

ZooKeeper logs createSession and closeSession, so after a restart the session table is
recovered and every session gets its full timeout again from the restart: a client that
comes back in time (with its id and password) finds its session and ephemerals; one that
does not is expired, and its ephemerals go with it.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections.abc import Callable

import pytest

from corral.proto.codes import OpCode
from corral.proto.records import CreateRequest
from support import kazoo_client
from support.procs import ServerProcess, ServerSettings
from support.rawclient import OPEN_ACL_UNSAFE, ConnectionClosed, RawClient

EPHEMERAL = 1
IO_TIMEOUT_S = 10.0
EXPIRY_WAIT_S = 20.0  # bound on a session expiring after its timeout
EXIT_TIMEOUT_S = 15.0


def open_session(server: ServerProcess, timeout_ms: int, path: str) -> tuple[int, bytes]:
    """A session with an ephemeral at `path`, left without closing it (a client crash)."""
    client = RawClient.connect(server.address, timeout_ms=timeout_ms, io_timeout_s=IO_TIMEOUT_S)
    try:
        assert client.create(path, b"mine", flags=EPHEMERAL).err == 0
        return client.session_id, client.passwd
    finally:
        client.abort()


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_session_survives_restart(how: str, corral_factory: Callable[..., ServerProcess]) -> None:
    server = corral_factory(ServerSettings())
    sid, passwd = open_session(server, 30000, "/eph-survives")
    if how == "SIGKILL":
        server.kill()  # the createSession txn was logged before the handshake was answered
    server.restart()
    with RawClient.connect(server.address, timeout_ms=30000, session_id=sid, passwd=passwd) as back:
        assert back.session_id == sid
        stat = back.exists("/eph-survives").result.stat
        assert stat.ephemeral_owner == sid
        assert back.get_data("/eph-survives").result.data == b"mine"
        # Still a live session: it can make more ephemerals, and they go when it closes.
        assert back.create("/eph-survives-2", flags=EPHEMERAL).err == 0
    with kazoo_client.session(server.address) as client:
        assert client.exists("/eph-survives") is None
        assert client.exists("/eph-survives-2") is None


def test_session_wrong_password_after_restart_is_expired(
    corral_factory: Callable[..., ServerProcess],
) -> None:
    server = corral_factory(ServerSettings())
    sid, passwd = open_session(server, 30000, "/eph-pw")
    server.restart()
    wrong = bytes(b ^ 0xFF for b in passwd)
    with pytest.raises(ConnectionClosed):
        RawClient.connect(server.address, session_id=sid, passwd=wrong)
    # The wrong password did not end the real session.
    with RawClient.connect(server.address, session_id=sid, passwd=passwd) as back:
        assert back.exists("/eph-pw").result.stat.ephemeral_owner == sid


def test_session_expires_after_restart_when_not_back(
    corral_factory: Callable[..., ServerProcess],
) -> None:
    # tickTime 500: sessions of 4 s (within 2..20 ticks) expire quickly.
    server = corral_factory(ServerSettings(tick_ms=500))
    sid, passwd = open_session(server, 4000, "/eph-expires")
    server.restart()
    with kazoo_client.session(server.address) as client:
        gone = threading.Event()

        def watch(event: object) -> None:
            gone.set()

        # Recovered with its session: the ephemeral is there after the restart...
        assert client.exists("/eph-expires", watch=watch) is not None
        started = time.monotonic()
        # ... until the session's timeout passes without the client coming back.
        assert gone.wait(EXPIRY_WAIT_S), "the session never expired after the restart"
        waited = time.monotonic() - started
        assert client.exists("/eph-expires") is None
    print(f"expired {waited:.1f}s after the restart check (timeout 4 s)")
    with pytest.raises(ConnectionClosed):
        RawClient.connect(server.address, session_id=sid, passwd=passwd)


@dataclasses.dataclass
class Writer:
    """One raw client pipelining creates until told to stop or the connection ends."""

    address: tuple[str, int]
    root: str
    sent: list[str] = dataclasses.field(default_factory=list)
    acked: int = 0
    failure: BaseException | None = None

    def __post_init__(self) -> None:
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        try:
            client = RawClient.connect(self.address, io_timeout_s=IO_TIMEOUT_S)
        except OSError as exc:
            self.failure = exc
            return
        inflight: list[int] = []
        try:
            while True:
                while len(inflight) < 32:
                    path = f"{self.root}/n{len(self.sent):06d}"
                    self.sent.append(path)
                    req = CreateRequest(path, path.encode(), OPEN_ACL_UNSAFE, 0)
                    inflight.append(client.submit(OpCode.CREATE, req))
                reply = client.read_reply(inflight.pop(0))
                assert reply.err == 0, reply
                with self.cond:
                    self.acked += 1
                    self.cond.notify_all()
        except OSError:
            pass  # the server stopped
        except BaseException as exc:
            self.failure = exc
        finally:
            client.abort()
            with self.cond:
                self.cond.notify_all()

    def wait_acked(self, n: int) -> None:
        deadline = time.monotonic() + 30
        with self.cond:
            while self.acked < n and self.failure is None and self.thread.is_alive():
                left = deadline - time.monotonic()
                assert left > 0, f"only {self.acked} creates acknowledged"
                self.cond.wait(left)
        assert self.failure is None, self.failure


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_zero_and_loses_nothing(
    signo: signal.Signals, corral_factory: Callable[..., ServerProcess]
) -> None:
    server = corral_factory(ServerSettings(force_sync=True))
    with kazoo_client.session(server.address) as client:
        client.create("/sig")
        client.create("/sig/session", ephemeral=False)
    writer = Writer(server.address, "/sig")
    writer.thread.start()
    writer.wait_acked(200)
    assert server.proc is not None
    server.proc.send_signal(signo)  # while creates are in flight
    code = server.proc.wait(timeout=EXIT_TIMEOUT_S)
    writer.thread.join(IO_TIMEOUT_S + 5)
    assert not writer.thread.is_alive()
    assert code == 0, f"exit status {code} after {signo.name}\n{server.log_tail()}"
    server.restart()  # reaps the exited process, starts on the same dataDir
    with kazoo_client.session(server.address) as client:
        present = sorted(f"/sig/{n}" for n in client.get_children("/sig") if n != "session")
        # Exactly a prefix of what was sent, holding every acknowledged create.
        assert present == writer.sent[: len(present)]
        assert len(present) >= writer.acked
        for path in present[-5:]:
            assert client.get(path)[0] == path.encode()
    print(f"{signo.name}: acked {writer.acked}, recovered {len(present)}, sent {len(writer.sent)}")
