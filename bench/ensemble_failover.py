"""Leader failover and follower catch-up times of a 3-server Corral ensemble (issue 3).

    .venv/bin/python bench/ensemble_failover.py                 # 20 kills, 100,000 txns
    .venv/bin/python bench/ensemble_failover.py --kills 10 --txns 10000

Real `corral server zoo.cfg` processes on loopback (tests/support/corral_ensemble.py's
LocalEnsemble), with ZooKeeper's defaults tickTime=2000, initLimit=10, syncLimit=5.

1. Failover: a kazoo client is connected to the two members that will survive; the leader
   is killed with SIGKILL and the time is taken from the kill to the first create that
   succeeds through that client (a new leader has committed a write). The killed member is
   then restarted and the next round waits until it serves clients again.
2. Catch-up: one follower is stopped (SIGKILL), `--txns` small creates are pipelined into
   the leader (many in flight, tests/support/rawclient.py), the follower is restarted and
   the time is taken from its restart until its `srvr` Zxid equals the leader's; a sync and
   a read of the last znode on it confirm. The sync kind (DIFF/TRUNC/SNAP) is the leader's
   log line "leader L: sync F by KIND"; failing that, the follower's (it logs DIFF and TRUNC;
   a sync with neither is a SNAP).

Only the catch-up figure includes process start-up (a restarted member is a fresh Python
interpreter): it is reported from the restart and from the moment the follower's client port
opened.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NodeExistsError

from corral.proto.codes import OpCode
from corral.proto.records import CreateRequest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.corral_ensemble import LocalEnsemble
from support.procs import HOST, port_is_open
from support.rawclient import OPEN_ACL_UNSAFE, RawClient

TICK_MS = 2000
WINDOW = 500  # requests in flight while loading the txns
ZXID_RE = re.compile(r"Zxid: (0x[0-9a-fA-F]+)")


def srvr(port: int) -> str:
    with socket.create_connection((HOST, port), timeout=2.0) as s:
        s.sendall(b"srvr")
        chunks = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def zxid_of(port: int) -> int | None:
    try:
        m = ZXID_RE.search(srvr(port))
    except OSError:
        return None
    return int(m.group(1), 16) if m else None


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def failover(ens: LocalEnsemble, kills: int, deadline: float) -> list[float]:
    times: list[float] = []
    for i in range(1, kills + 1):
        if time.monotonic() > deadline:
            print(f"time box reached: stopping after {len(times)} kills", flush=True)
            break
        leader = ens.leader()
        survivors = [s for s in sorted(ens.members) if s != leader]
        zk = KazooClient(
            hosts=ens.connect_string(survivors),
            timeout=10.0,
            connection_retry={"max_tries": -1, "delay": 0.02, "backoff": 1, "max_delay": 0.02},
        )
        zk.start(timeout=30)
        zk.ensure_path("/failover")
        t0 = time.monotonic()
        ens.kill(leader)
        attempt = 0
        while True:
            attempt += 1
            try:
                zk.create(f"/failover/k{i}-{attempt}", b"x")
                break
            except NodeExistsError:
                break  # an earlier attempt was committed after all
            except KazooException:
                time.sleep(0.01)
        dt = time.monotonic() - t0
        times.append(dt)
        zk.stop()
        zk.close()
        new_leader = ens.leader(survivors)
        print(
            f"kill {i:2d}: leader {leader} killed, server {new_leader} leads;"
            f" write served after {dt * 1000:7.0f} ms  (load {loadavg()})",
            flush=True,
        )
        ens.start(leader)
        ens.wait_serving([leader], timeout_s=90.0)
    return times


def catch_up(ens: LocalEnsemble, txns: int) -> None:
    leader = ens.leader()
    follower = max(s for s in ens.members if s != leader)
    ens.kill(follower)
    print(f"catch-up: follower {follower} stopped; leader is {leader}", flush=True)
    lport = ens.members[leader].client_port
    c = RawClient.connect((HOST, lport), io_timeout_s=60.0)
    c.create("/catchup", b"")
    t0 = time.monotonic()
    inflight: list[int] = []
    for n in range(txns):
        body = CreateRequest(f"/catchup/n{n:06d}", b"x", tuple(OPEN_ACL_UNSAFE), 0)
        inflight.append(c.submit(OpCode.CREATE, body))
        if len(inflight) >= WINDOW:
            r = c.read_reply(inflight.pop(0))
            assert r.err == 0, r
    for xid in inflight:
        r = c.read_reply(xid)
        assert r.err == 0, r
    load_s = time.monotonic() - t0
    last = f"/catchup/n{txns - 1:06d}"
    target = zxid_of(lport)
    assert target is not None
    print(
        f"catch-up: wrote {txns} creates to the leader in {load_s:.1f} s"
        f" ({txns / load_s:.0f}/s, {WINDOW} in flight); leader zxid {target:#x}",
        flush=True,
    )
    c.close()

    m = ens.members[follower]
    leader_log_start = len(ens.members[leader].log_text())
    t1 = time.monotonic()
    ens.start(follower)
    port_open_at = None
    while True:
        if not m.running:
            raise AssertionError(f"follower exited:\n{m.log_text()[-4000:]}")
        if time.monotonic() - t1 > 600:
            raise AssertionError(f"follower not caught up:\n{m.log_text()[-4000:]}")
        if port_open_at is None and port_is_open(m.client_port):
            port_open_at = time.monotonic()
        z = zxid_of(m.client_port)
        if z is not None and z >= target:
            break
        time.sleep(0.02)
    caught = time.monotonic()
    # sync + read on the follower sees the last write.
    f = RawClient.connect((HOST, m.client_port), io_timeout_s=30.0)
    assert f.sync(last).err == 0
    assert f.exists(last).err == 0, "last write not visible on the follower after sync"
    f.close()
    # The leader logs "leader L: sync F by DIFF|TRUNC|SNAP (...)"; the learner logs DIFF/TRUNC.
    said = re.findall(
        rf"leader {leader}: sync {follower} by (\w+.*)",
        ens.members[leader].log_text()[leader_log_start:],
    )
    log = m.log_text()[m.log_start :]
    if said:
        kind = said[-1]
    elif f"learner {follower}: DIFF" in log:
        kind = "DIFF"
    elif f"learner {follower}: TRUNC" in log:
        kind = "TRUNC"
    else:
        kind = "SNAP (no DIFF/TRUNC logged)"
    print(
        f"catch-up: follower {follower}, {txns} txns behind, caught up"
        f" {caught - t1:.2f} s after restart"
        + (f" ({caught - port_open_at:.2f} s after its client port opened)" if port_open_at else "")
        + f"; synced by {kind}; sync+read of {last} on it OK  (load {loadavg()})",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--txns", type=int, default=100_000)
    ap.add_argument("--failover-budget-s", type=float, default=900.0)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    logging.getLogger("kazoo").setLevel(logging.CRITICAL)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="corral-failover-"))
    print(
        f"3 servers, tickTime={TICK_MS} initLimit=10 syncLimit=5, workdir {workdir};"
        f" {os.cpu_count()} CPUs, load {loadavg()}",
        flush=True,
    )
    with LocalEnsemble(workdir, size=3, tick_ms=TICK_MS) as ens:
        ens.start_all()
        deadline = time.monotonic() + args.failover_budget_s
        times = failover(ens, args.kills, deadline)
        if times:
            ms = [t * 1000 for t in times]
            print(
                f"failover over {len(ms)} kills: median {statistics.median(ms):.0f} ms,"
                f" min {min(ms):.0f} ms, max {max(ms):.0f} ms",
                flush=True,
            )
        if args.txns:
            catch_up(ens, args.txns)


if __name__ == "__main__":
    main()
