"""A pure harness for StandaloneCore: fake clients speaking raw protocol bytes.

`Harness` plays the runner: it feeds bytes, collects each connection's sends, and
"fsyncs" by calling `persisted` (automatically unless `auto_persist` is off).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from corral.proto import jute
from corral.proto.records import (
    ConnectResponse,
    MultiHeader,
    ReplyHeader,
    RequestHeader,
    TxnHeader,
    WatcherEvent,
)
from corral.server.core import CoreConfig, Output, StandaloneCore
from corral.tree.datatree import DataTree

SECRET = b"test-secret"


def frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def connect_body(
    session_id: int = 0,
    passwd: bytes = b"\0" * 16,
    timeout: int = 30_000,
    last_zxid: int = 0,
    read_only: bool | None = False,
) -> bytes:
    body = struct.pack(">iqiqi", 0, last_zxid, timeout, session_id, len(passwd)) + passwd
    if read_only is not None:
        body += b"\x01" if read_only else b"\x00"
    return body


def request(xid: int, op: int, rec: object | None = None) -> bytes:
    body = jute.encode(RequestHeader(xid, int(op)))
    if rec is not None:
        body += jute.encode(rec)
    return frame(body)


def multi_body(ops: list[tuple[int, object]]) -> bytes:
    out = b""
    for op, rec in ops:
        out += jute.encode(MultiHeader(int(op), False, -1)) + jute.encode(rec)
    return out + jute.encode(MultiHeader(-1, True, -1))


def split_frames(data: bytes) -> list[bytes]:
    out = []
    pos = 0
    while pos < len(data):
        (n,) = struct.unpack_from(">i", data, pos)
        out.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    assert pos == len(data)
    return out


@dataclass
class Reply:
    xid: int
    zxid: int
    err: int
    body: bytes

    def decode(self, cls: type) -> Any:
        return jute.decode_exact(cls, self.body)

    def event(self) -> WatcherEvent:
        assert self.xid == -1
        return jute.decode_exact(WatcherEvent, self.body)


@dataclass
class Harness:
    config: CoreConfig = field(default_factory=CoreConfig)
    now: int = 1_000_000
    wall: int = 1_764_000_000_000
    auto_persist: bool = True
    tree: DataTree = field(default_factory=DataTree)
    core: StandaloneCore = field(init=False)
    inbox: dict[int, bytearray] = field(default_factory=dict)
    closed: set[int] = field(default_factory=set)
    log: list[tuple[TxnHeader, bytes]] = field(default_factory=list)
    four_letter: list[tuple[int, str]] = field(default_factory=list)
    durable: int = 0

    def __post_init__(self) -> None:
        self.core = StandaloneCore(self.config, self.tree, self.now, self.wall, SECRET)

    def _take(self, out: Output) -> None:
        for cid, data in out.sends:
            assert cid not in self.closed, f"send to closed connection {cid}"
            self.inbox.setdefault(cid, bytearray()).extend(data)
        for cid in out.closes:
            self.closed.add(cid)
        self.four_letter.extend(out.four_letter)
        persist = list(out.persist)
        self.log.extend(persist)
        if persist and self.auto_persist:
            self.persist()

    def persist(self, upto: int | None = None) -> None:
        """Report the log durable (up to `upto`, default everything)."""
        zxid = self.log[-1][0].zxid if upto is None else upto
        self.durable = max(self.durable, zxid)
        self._take(self.core.persisted(zxid, self.now, self.wall))

    def open(self, cid: int, ip: str = "127.0.0.1") -> None:
        self._take(self.core.open(cid, ip))

    def send(self, cid: int, data: bytes) -> None:
        self._take(self.core.receive(cid, data, self.now, self.wall))

    def close(self, cid: int) -> None:
        self.closed.add(cid)
        self._take(self.core.closed(cid))

    def tick(self, advance_ms: int) -> None:
        self.now += advance_ms
        self.wall += advance_ms
        self._take(self.core.tick(self.now, self.wall))

    def raw(self, cid: int) -> bytes:
        data = bytes(self.inbox.get(cid, b""))
        self.inbox[cid] = bytearray()
        return data

    def replies(self, cid: int) -> list[Reply]:
        out = []
        for f in split_frames(self.raw(cid)):
            h, pos = jute.decode(ReplyHeader, f)
            out.append(Reply(h.xid, h.zxid, h.err, f[pos:]))
        return out

    def connect(self, cid: int, **kw: Any) -> ConnectResponse:
        self.open(cid)
        self.send(cid, frame(connect_body(**kw)))
        frames = split_frames(self.raw(cid))
        assert len(frames) == 1
        return jute.decode_exact(ConnectResponse, frames[0])

    def call(self, cid: int, xid: int, op: int, rec: object | None = None) -> list[Reply]:
        self.send(cid, request(xid, op, rec))
        return self.replies(cid)
