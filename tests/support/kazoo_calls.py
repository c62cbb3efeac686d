"""Requests kazoo has no method for, sent over kazoo's own connection.

kazoo's connection sends any object with a `type` (the op code), `serialize()` (the request
body) and `deserialize(buffer, offset)` (the reply body), so whoAmI, createTTL, addWatch and
the rest go through an unmodified client (its session, its auth, its reconnects).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kazoo.client import KazooClient  # type: ignore[import-untyped]

from corral.proto import jute
from corral.proto.codes import OpCode
from corral.proto.records import WhoAmIResponse


class KazooCall:
    """One request in the shape kazoo's connection sends: op code, jute body, and a
    decoder for the reply body."""

    def __init__(self, op: int, body: bytes, decode: Callable[[bytes], Any]) -> None:
        self.type = int(op)
        self.body = body
        self.decode = decode

    def serialize(self) -> bytes:
        return self.body

    def deserialize(self, buffer: bytes, offset: int) -> Any:
        return self.decode(bytes(buffer[offset:]))

    def __repr__(self) -> str:
        return f"KazooCall(op={self.type})"


def send(zk: KazooClient, call: KazooCall, timeout_s: float) -> Any:
    """The decoded reply of `call` (kazoo raises the reply's error as its exception)."""
    result = zk.handler.async_result()
    zk._call(call, result)
    return result.get(timeout=timeout_s)


def call(
    zk: KazooClient, op: int, request: object, reply: type | None = None, *, timeout_s: float = 30.0
) -> Any:
    """Send `request` (a jute record); the decoded `reply` record, True for an empty one."""

    def decode(data: bytes) -> Any:
        return True if reply is None else jute.decode_exact(reply, data)

    return send(zk, KazooCall(op, jute.encode(request), decode), timeout_s)


def who_am_i(zk: KazooClient, timeout_s: float) -> frozenset[tuple[str, str]]:
    """The connection's ids as whoAmI lists them: (scheme, user) pairs."""

    def decode(data: bytes) -> frozenset[tuple[str, str]]:
        ids = jute.decode_exact(WhoAmIResponse, data).client_info
        return frozenset((info.auth_scheme, info.user) for info in ids)

    return send(zk, KazooCall(OpCode.WHO_AM_I, b"", decode), timeout_s)  # type: ignore[no-any-return]
