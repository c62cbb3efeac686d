"""A rolling restart of a 3-server Corral ensemble under load loses no write.

Kazoo clients (one homed on each server, plus one more) keep writing: register operations
recorded for the linearizability checker and creates of unique znodes, whose acknowledged
paths are kept. Each server in turn is stopped with SIGTERM (a clean shutdown: exit code 0)
and started again; the next one goes only once it serves again and the ensemble has
acknowledged writes since. Then the leader of the moment is killed with SIGKILL and
restarted. Afterwards every acknowledged create is on every server (read directly, after a
sync), every server is at the same zxid, and the history is linearizable.

The seed is printed; ROLLING_SEED=<n> replays the same client choices.

Also here: `standaloneEnabled=false` with a single `server.N` line runs a one-member
ensemble (a leader, not standalone) that keeps its writes across a restart.
"""

from __future__ import annotations

import os
import random
import re
import time
from pathlib import Path

from support import kazoo_client
from support.corral_ensemble import LocalEnsemble
from support.kazoo_workload import Workload, make_client, setup_keys, wait_for

WAIT_S = 30.0
KEYS = ["/roll/a", "/roll/b", "/roll/c"]
NODES = "/roll/nodes"
# Writes acknowledged after each restart before the next one (progress, not a rate).
WRITES_BETWEEN = 30


def zxid(ens: LocalEnsemble, sid: int) -> str:
    found = re.search(r"Zxid: (0x[0-9a-f]+)", ens.four_letter(sid, "srvr"))
    return found.group(1) if found else "?"


def all_serving(ens: LocalEnsemble) -> bool:
    roles = sorted(m.serving_as() or "-" for m in ens.members.values())
    return roles == ["follower", "follower", "leader"]


def test_rolling_restart_under_load_loses_no_write(tmp_path: Path) -> None:
    seed = int(os.environ.get("ROLLING_SEED", random.randrange(2**32)))
    print(f"ROLLING_SEED={seed}")
    with LocalEnsemble(tmp_path / "ens", size=3, tick_ms=200) as ens:
        ens.start_all()
        sids = sorted(ens.members)
        setup = make_client(ens.connect_string())
        try:
            setup_keys(setup, KEYS, ["/roll", NODES])
        finally:
            kazoo_client.stop(setup)
        homes = [*sids, sids[0]]
        wl = Workload(
            [ens.connect_string([h, *(s for s in sids if s != h)]) for h in homes],
            seed,
            KEYS,
            create_prefix=NODES,
        )
        wl.start()
        restarts: list[str] = []
        try:
            wl.wait_writes(WRITES_BETWEEN, 0.0, WAIT_S, "before the first restart")
            # Every server in turn, SIGTERM; then the leader of the moment, SIGKILL.
            plan: list[tuple[int | None, str]] = [(sid, "SIGTERM") for sid in sids]
            plan.append((None, "SIGKILL"))  # None: the leader of the moment
            for target, how in plan:
                sid = target if target is not None else ens.leader()
                role = ens.members[sid].serving_as()
                if how == "SIGTERM":
                    code = ens.terminate(sid)
                    assert code == 0, f"server {sid} exited {code} on SIGTERM"
                else:
                    ens.kill(sid)
                restarts.append(f"{how} server {sid} ({role})")
                ens.start(sid)
                ens.wait_serving([sid], WAIT_S)
                wait_for("a leader and two followers", lambda: all_serving(ens), WAIT_S, ens.logs)
                wl.wait_writes(WRITES_BETWEEN, time.monotonic(), WAIT_S, f"after {restarts[-1]}")
        finally:
            wl.stop()
        print("restarts:", "; ".join(restarts))
        assert any("(leader)" in r for r in restarts[: len(sids)])  # the leader was rolled too

        created = set(wl.created())
        maybe = set(wl.maybe_created())
        for sid in sids:
            zk = make_client(ens.connect_string([sid]))
            try:
                wl.final_reads(f"final{sid}", zk)
                zk.sync(NODES)
                present = {f"{NODES}/{c}" for c in zk.get_children(NODES)}
            finally:
                kazoo_client.stop(zk)
            missing = created - present
            assert not missing, f"server {sid} lacks acknowledged creates {sorted(missing)[:10]}"
            assert not present - created - maybe, f"server {sid} has creates nobody made"

        # The last client's closeSession may still be on its way to a follower: the
        # servers converge on one last zxid, not necessarily at the same instant.
        def one_zxid() -> bool:
            return len({zxid(ens, sid) for sid in sids}) == 1

        wait_for("every server at the same last zxid", one_zxid, WAIT_S, ens.logs)

    summary = wl.check()
    print(summary)
    assert summary.created > 4 * WRITES_BETWEEN // 3


def test_standalone_disabled_single_server_runs_a_one_member_ensemble(tmp_path: Path) -> None:
    with LocalEnsemble(tmp_path / "one", size=1, cfg=("standaloneEnabled=false",)) as ens:
        ens.start_all()
        assert ens.leader() == 1
        assert "Mode: leader" in ens.four_letter(1, "srvr")
        zk = make_client(ens.connect_string())
        try:
            zk.create("/kept", b"v")
        finally:
            kazoo_client.stop(zk)
        assert ens.terminate(1) == 0
        ens.start(1)
        ens.wait_serving([1], WAIT_S)
        zk = make_client(ens.connect_string())
        try:
            assert zk.get("/kept")[0] == b"v"
        finally:
            kazoo_client.stop(zk)
