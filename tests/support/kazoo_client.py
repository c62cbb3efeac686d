"""Started kazoo clients of a test's server: one place for the connect string, the session
and start timeouts, and the stop-and-close that every client needs when a test is done.

Clients with their own retry policy (the workload's, support.kazoo_workload) or options a
test is about (SASL, TLS, read-only, chroot) pass those through as kazoo's own keywords.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from kazoo.client import KazooClient  # type: ignore[import-untyped]

SESSION_TIMEOUT_S = 10.0
# Bound of the first connection: servers of the suite share a loaded 2-core machine.
START_TIMEOUT_S = 15.0


def hosts_of(address: tuple[str, int], chroot: str = "") -> str:
    """kazoo's connect string for one server address (a ServerProcess's `address`)."""
    host, port = address
    return f"{host}:{port}{chroot}"


def start(
    hosts: str | tuple[str, int],
    *,
    timeout: float = SESSION_TIMEOUT_S,
    start_timeout: float = START_TIMEOUT_S,
    **options: Any,
) -> KazooClient:
    """A kazoo client connected to `hosts` (a connect string or one address)."""
    if isinstance(hosts, tuple):
        hosts = hosts_of(hosts)
    client = KazooClient(hosts=hosts, timeout=timeout, **options)
    client.start(timeout=start_timeout)
    return client


def stop(client: KazooClient) -> None:
    """Close the session and release the client's thread and socket."""
    client.stop()
    client.close()


@contextlib.contextmanager
def session(hosts: str | tuple[str, int], **options: Any) -> Iterator[KazooClient]:
    """start() for the length of a `with` block, stopped on the way out."""
    client = start(hosts, **options)
    try:
        yield client
    finally:
        stop(client)
