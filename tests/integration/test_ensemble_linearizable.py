"""A recorded history of kazoo clients on a 3-server ensemble whose leader is killed (-9)
mid-run, checked: writes (sets and conditional sets, with the versions the servers report)
are linearizable, and reads are sequentially consistent per session (ZooKeeper serves reads
locally, so they are not linearizable: a session's reads never go back, and see its writes).

The workload and the checks are support/kazoo_workload.py's (shared with the partition and
rolling-restart tests); this test adds the fault. The seed of the client workload is
printed; LIN_SEED=<n> replays the same choices.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from support import kazoo_client
from support.corral_ensemble import LocalEnsemble
from support.kazoo_workload import Workload, make_client, setup_keys, wait_for

WAIT_S = 30.0
KEYS = ["/lin/a", "/lin/b", "/lin/c"]
# Writes acknowledged before the kill, and after it (progress, not a rate).
WRITES_BEFORE_KILL = 100
WRITES_AFTER_KILL = 200


def test_history_through_a_leader_kill_is_linearizable(tmp_path: Path) -> None:
    seed = int(os.environ.get("LIN_SEED", random.randrange(2**32)))
    print(f"LIN_SEED={seed}")
    with LocalEnsemble(tmp_path / "lin", size=3, tick_ms=200) as ens:
        ens.start_all()
        sids = sorted(ens.members)
        old_leader = ens.leader()
        survivors = [s for s in sids if s != old_leader]
        setup = make_client(ens.connect_string())
        try:
            setup_keys(setup, KEYS, ["/lin"])
        finally:
            kazoo_client.stop(setup)

        # Four clients: one on each server (so one on the leader), plus a second one on a
        # follower; each can fail over to the others.
        homes = [*sids, survivors[0]]
        wl = Workload(
            [ens.connect_string([h, *(s for s in sids if s != h)]) for h in homes], seed, KEYS
        )
        wl.start()
        try:
            wl.wait_writes(WRITES_BEFORE_KILL, 0.0, WAIT_S, "before the kill")
            ens.kill(old_leader)
            killed_at = time.monotonic()
            wait_for(
                "a new leader among the survivors",
                lambda: [ens.members[s].serving_as() for s in survivors].count("leader") == 1,
                WAIT_S,
                ens.logs,
            )
            ens.wait_serving(survivors)
            # Clients moved off the dead leader and kept writing.
            wl.wait_writes(WRITES_AFTER_KILL, killed_at, WAIT_S, "after the leader kill")
        finally:
            wl.stop()
        writes_after_kill = wl.ok_writes_since(killed_at)

        # Final reads on each survivor, after sync and after every client has gone: each
        # follows every operation in real time, so lost acknowledged writes show up here.
        for sid in survivors:
            zk = make_client(ens.connect_string([sid]))
            try:
                wl.final_reads(f"final{sid}", zk)
            finally:
                kazoo_client.stop(zk)

    # Writes and final reads linearizable, each session's reads consistent.
    summary = wl.check()
    print(f"{summary}; {writes_after_kill} writes acknowledged after the kill")
    assert writes_after_kill > 10
    assert summary.outcomes.get("write:ok", 0) + summary.outcomes.get("cas:ok", 0) > 50
    assert summary.outcomes.get("read:ok", 0) > 50
    # The checker is not vacuous on this history: a final read that lost the last write
    # was rejected.
    assert summary.mutation_rejected
