"""FastLeaderElection under a seeded scheduler: delays, lost connections, partitions, crashes.

A small deterministic harness for the election alone (corral.sim runs whole ensembles): N peers'
pure election cores, a virtual clock, a network of per-pair FIFO connections whose faults
are random delays, connection breaks that lose what is in flight, and partitions, and a
stub of Zab's role after an election (a leader needs a quorum of followers within the init
limit and keeps it, else everyone concerned goes back to LOOKING; an established leader
starts epoch max+1, and followers sync to its zxid, so elections after the first compare
real, diverging histories).

Checked: no two established leaders share an epoch; every decided vote names a voter with
a (zxid, peer epoch) it really had; without faults the leader is the best (epoch, zxid, id)
of all voters; and after the faults stop (all healed, or a minority kept down) every live
member of the connected majority follows one established leader within a bound. A failing
seed is printed with a short trace; `replay(seed, ...)` reruns it exactly.
"""

from __future__ import annotations

import functools
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from corral.quorum.election import FastLeaderElection, Ready, ServerState
from corral.quorum.election_wire import Notification, decode_notification, encode_notification
from corral.quorum.verifier import QuorumVerifier

INIT_LIMIT_MS = 4_000  # a leader needs its quorum of followers this soon (initLimit * tick)
SYNC_CHECK_MS = 2_000  # how often leader and followers check each other (syncLimit)
LIVENESS_MS = 240_000  # after healing, everyone must settle within this (> 60 s backoff)


@dataclass
class Peer:
    sid: int
    observer: bool
    zxid: int
    epoch: int
    fle: FastLeaderElection
    up: bool = True
    role: ServerState = ServerState.LOOKING
    leader: int | None = None
    established: bool = False  # leader: has its quorum; learner: synced with its leader
    generation: int = 0  # bumped on every role change; stale timers check it
    credentials_seen: set[tuple[int, int]] = field(default_factory=set)  # (zxid, epoch)

    def credentials(self) -> tuple[int, int, int]:
        return (self.epoch, self.zxid, self.sid)


class Failure(AssertionError):
    pass


class Sim:
    def __init__(
        self,
        seed: int,
        voters: int,
        observers: int,
        *,
        max_delay_ms: int,
        codec: bool = False,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0
        self.max_delay_ms = max_delay_ms
        self.codec = codec  # push every notification through the wire encoder and decoder
        self.events: list[tuple[int, int, Callable[[], None]]] = []
        self.seq = 0
        voter_ids = list(range(1, voters + 1))
        observer_ids = list(range(voters + 1, voters + observers + 1))
        self.verifier = QuorumVerifier.of_ids(voter_ids, observer_ids)
        self.peers: dict[int, Peer] = {}
        for sid in voter_ids + observer_ids:
            epoch = self.rng.randint(0, 2)
            zxid = (epoch << 32) | self.rng.randint(0, 4)
            self.peers[sid] = Peer(sid, sid in observer_ids, zxid, epoch, self._fle(sid))
        self.blocked: set[tuple[int, int]] = set()
        self.conn_gen: dict[tuple[int, int], int] = {}
        self.last_delivery: dict[tuple[int, int], int] = {}
        self.epoch_leaders: dict[int, int] = {}
        self.trace: list[str] = []
        self.messages = 0

    def _fle(self, sid: int) -> FastLeaderElection:
        return FastLeaderElection(sid, self.verifier)

    # -- scheduling ---------------------------------------------------------------------

    def at(self, t: int, action: Callable[[], None]) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, action))

    def run_until(self, t_end: int, stop: Callable[[], bool] | None = None) -> bool:
        while self.events and self.events[0][0] <= t_end:
            t, _, action = heapq.heappop(self.events)
            self.now = max(self.now, t)
            action()
            if stop is not None and stop():
                return True
        self.now = max(self.now, t_end)
        return stop() if stop is not None else False

    def note(self, text: str) -> None:
        self.trace.append(f"{self.now:>8} {text}")
        if len(self.trace) > 60:
            del self.trace[:20]

    # -- network --------------------------------------------------------------------------

    def connected(self, a: int, b: int) -> bool:
        pa, pb = self.peers[a], self.peers[b]
        return pa.up and pb.up and (a, b) not in self.blocked and (b, a) not in self.blocked

    def send(self, src: int, dst: int, n: Notification) -> None:
        if (src, dst) in self.blocked or not self.peers[dst].up:
            return  # the connection is down: ZooKeeper's queue to it is lost or stale
        self.messages += 1
        key = (src, dst)
        gen = self.conn_gen.get(key, 0)
        # FIFO per connection, as TCP: never deliver before an earlier message.
        t = max(self.now + self.rng.randint(0, self.max_delay_ms), self.last_delivery.get(key, 0))
        self.last_delivery[key] = t
        payload = encode_notification(n) if self.codec else None

        def deliver() -> None:
            if self.conn_gen.get(key, 0) != gen or key in self.blocked:
                return  # the connection broke while this was in flight
            peer = self.peers[dst]
            if not peer.up:
                return
            m = decode_notification(payload) if payload is not None else n
            self.perform(peer, peer.fle.receive(src, m, self.now))

        self.at(t, deliver)

    def break_connection(self, a: int, b: int) -> None:
        for key in ((a, b), (b, a)):
            self.conn_gen[key] = self.conn_gen.get(key, 0) + 1

    # -- peers ----------------------------------------------------------------------------

    def perform(self, peer: Peer, ready: Ready) -> None:
        for dst, n in ready.sends:
            self.send(peer.sid, dst, n)
        if ready.decision is not None:
            self.on_decision(peer, ready)
        self.schedule_tick(peer)

    def schedule_tick(self, peer: Peer) -> None:
        deadline = peer.fle.next_deadline()
        if deadline is None:
            return
        fle = peer.fle

        def tick() -> None:
            due = fle.next_deadline()
            if peer.up and peer.fle is fle and due is not None and self.now >= due:
                self.perform(peer, fle.tick(self.now))

        self.at(deadline, tick)

    def start_election(self, peer: Peer) -> None:
        peer.role = ServerState.LOOKING
        peer.leader = None
        peer.established = False
        peer.generation += 1
        peer.credentials_seen.add((peer.zxid, peer.epoch))
        self.note(f"{peer.sid} LOOKING zxid={peer.zxid:#x} epoch={peer.epoch}")
        self.perform(peer, peer.fle.start(self.now, peer.zxid, peer.epoch))

    def on_decision(self, peer: Peer, ready: Ready) -> None:
        d = ready.decision
        assert d is not None
        leader = self.peers.get(d.leader)
        if leader is None or leader.observer:
            raise Failure(f"{peer.sid} decided for {d.leader}, not a voter")
        if (d.vote.zxid, d.vote.leader) not in {
            (z, leader.sid) for z, _ in leader.credentials_seen
        }:
            raise Failure(f"{peer.sid} decided on {d.vote}, a zxid {d.leader} never had")
        expected = (
            ServerState.LEADING
            if d.leader == peer.sid
            else ServerState.OBSERVING
            if peer.observer
            else ServerState.FOLLOWING
        )
        if d.state != expected:
            raise Failure(f"{peer.sid} decided {d.state.name}, expected {expected.name}")
        peer.role = d.state
        peer.leader = d.leader
        peer.established = False
        peer.generation += 1
        self.note(f"{peer.sid} {d.state.name} {d.leader} round={d.vote.election_epoch:#x}")
        gen = peer.generation
        if d.state == ServerState.LEADING:
            self.at(self.now + INIT_LIMIT_MS, lambda: self.leader_init_check(peer, gen))
        else:
            self.at(self.now + INIT_LIMIT_MS * 3 // 2, lambda: self.learner_check(peer, gen))

    def followers_of(self, leader: Peer, *, synced: bool) -> list[Peer]:
        return [
            p
            for p in self.peers.values()
            if p.up
            and p.sid != leader.sid
            and p.leader == leader.sid
            and p.role in (ServerState.FOLLOWING, ServerState.OBSERVING)
            and (p.established or not synced)
            and self.connected(p.sid, leader.sid)
        ]

    def leader_init_check(self, leader: Peer, gen: int) -> None:
        if not leader.up or leader.generation != gen:
            return
        learners = self.followers_of(leader, synced=False)
        acks = [leader.sid] + [p.sid for p in learners if not p.observer]
        if not self.verifier.contains_quorum(acks):
            self.start_election(leader)
            return
        # Discovery: the new epoch is above every epoch the quorum has seen.
        voters = [leader] + [p for p in learners if not p.observer]
        new_epoch = max(p.epoch for p in voters) + 1
        if new_epoch in self.epoch_leaders:
            raise Failure(f"epoch {new_epoch} established twice")
        self.epoch_leaders[new_epoch] = leader.sid
        leader.epoch = new_epoch
        leader.zxid = new_epoch << 32
        leader.established = True
        leader.fle.update_peer_epoch(new_epoch)
        self.note(f"{leader.sid} established epoch {new_epoch} with {sorted(acks)}")
        for p in learners:
            self.sync(p, leader)
        self.at(self.now + SYNC_CHECK_MS, lambda: self.leader_health(leader, leader.generation))

    def sync(self, p: Peer, leader: Peer) -> None:
        p.epoch, p.zxid = leader.epoch, leader.zxid  # DIFF, TRUNC or SNAP, all the same here
        p.established = True
        p.fle.update_peer_epoch(leader.epoch)

    def leader_health(self, leader: Peer, gen: int) -> None:
        if not leader.up or leader.generation != gen:
            return
        synced = self.followers_of(leader, synced=True)
        if not self.verifier.contains_quorum([leader.sid] + [p.sid for p in synced]):
            self.note(f"{leader.sid} lost its quorum")
            self.start_election(leader)
            return
        # Some writes; a random subset of followers keeps up, so histories diverge.
        if self.rng.random() < 0.5:
            leader.zxid += self.rng.randint(1, 3)
            for p in synced:
                if self.rng.random() < 0.7:
                    p.zxid = leader.zxid
        self.at(self.now + SYNC_CHECK_MS, lambda: self.leader_health(leader, gen))

    def learner_check(self, peer: Peer, gen: int) -> None:
        if not peer.up or peer.generation != gen:
            return
        leader = self.peers[peer.leader] if peer.leader is not None else None
        ok = (
            leader is not None
            and leader.up
            and leader.role == ServerState.LEADING
            and leader.established
            and self.connected(peer.sid, leader.sid)
        )
        if not ok:
            self.start_election(peer)
            return
        assert leader is not None
        if not peer.established:
            self.sync(peer, leader)
        self.at(self.now + SYNC_CHECK_MS, lambda: self.learner_check(peer, gen))

    def crash(self, peer: Peer) -> None:
        self.note(f"{peer.sid} crashed")
        peer.up = False
        peer.role = ServerState.LOOKING
        peer.leader = None
        peer.established = False
        peer.generation += 1
        for other in self.peers:
            self.break_connection(peer.sid, other)

    def restart(self, peer: Peer) -> None:
        self.note(f"{peer.sid} restarted")
        peer.up = True
        peer.fle = self._fle(peer.sid)  # a new process: logical clock 0 again
        self.start_election(peer)

    # -- faults ---------------------------------------------------------------------------

    def chaos(self, until: int) -> None:
        """Random faults until `until`: delays are always on; breaks, partitions, crashes."""
        ids = sorted(self.peers)
        t = self.now
        while True:
            t += self.rng.randint(100, 3_000)
            if t >= until:
                break
            kind = self.rng.random()
            if kind < 0.35:
                a, b = self.rng.sample(ids, 2)
                self.at(t, functools.partial(self.break_connection, a, b))
            elif kind < 0.6:
                self.at(t, self.partition_randomly)
            elif kind < 0.75:
                self.at(t, self.heal)
            elif kind < 0.9:
                sid = self.rng.choice(ids)
                self.at(t, functools.partial(self.crash_if_up, sid))
            else:
                sid = self.rng.choice(ids)
                self.at(t, functools.partial(self.restart_if_down, sid))

    def partition_randomly(self) -> None:
        ids = sorted(self.peers)
        side = set(self.rng.sample(ids, self.rng.randint(1, len(ids) - 1)))
        one_way = self.rng.random() < 0.3
        self.blocked = set()
        for a in side:
            for b in ids:
                if b not in side:
                    self.blocked.add((a, b))
                    if not one_way:
                        self.blocked.add((b, a))
                    self.break_connection(a, b)
        self.note(f"partition {sorted(side)} {'one-way' if one_way else ''}")

    def heal(self) -> None:
        self.blocked = set()
        self.note("healed")

    def crash_if_up(self, sid: int) -> None:
        if self.peers[sid].up:
            self.crash(self.peers[sid])

    def restart_if_down(self, sid: int) -> None:
        if not self.peers[sid].up:
            self.restart(self.peers[sid])

    # -- checks ---------------------------------------------------------------------------

    def settled(self, members: list[int]) -> bool:
        """Every member follows one established leader among them, and is synced."""
        leaders = [s for s in members if self.peers[s].role == ServerState.LEADING]
        if len(leaders) != 1 or not self.peers[leaders[0]].established:
            return False
        lid = leaders[0]
        return all(
            self.peers[s].leader == lid and self.peers[s].established for s in members if s != lid
        )

    def describe(self) -> str:
        rows = [
            f"  {p.sid}: up={p.up} {p.role.name} leader={p.leader} est={p.established} "
            f"epoch={p.epoch} zxid={p.zxid:#x} round={p.fle.logical_clock:#x}"
            for p in self.peers.values()
        ]
        return "\n".join(rows + ["trace:"] + self.trace[-30:])


def run_faulty(sim: Sim) -> None:
    """Faults for a while, then heal (maybe leaving a minority down): the rest converge."""
    for peer in sim.peers.values():
        sim.at(sim.rng.randint(0, 500), functools.partial(sim.start_election, peer))
    chaos_end = sim.rng.randint(5_000, 40_000)
    sim.chaos(chaos_end)
    sim.run_until(chaos_end)
    # Heal: the network fully; every peer up, or a minority kept down (crashed for good).
    sim.heal()
    ids = sorted(sim.peers)
    down: set[int] = set()
    if sim.rng.random() < 0.5:
        voter_ids = sorted(sim.verifier.voters)
        down = set(sim.rng.sample(voter_ids, (len(voter_ids) - 1) // 2))
    for sid in ids:
        peer = sim.peers[sid]
        if sid in down and peer.up:
            sim.crash(peer)
        elif sid not in down and not peer.up:
            sim.restart(peer)
    # Only short delays from here on, so the liveness phase is about the protocol.
    sim.max_delay_ms = 100
    members = [s for s in ids if s not in down]
    healed_at = sim.now
    if not sim.run_until(healed_at + LIVENESS_MS, lambda: sim.settled(members)):
        raise Failure(f"no convergence {LIVENESS_MS} ms after healing; down={sorted(down)}")


def run_fault_free(sim: Sim) -> None:
    """All start together, delays below the finalize wait: the best voter must win."""
    for peer in sim.peers.values():
        sim.at(sim.rng.randint(0, 20), functools.partial(sim.start_election, peer))
    best = max(sim.peers[s].credentials() for s in sim.verifier.voters)
    members = sorted(sim.peers)
    if not sim.run_until(60_000, lambda: sim.settled(members)):
        raise Failure("no convergence without faults")
    leader = next(p for p in sim.peers.values() if p.role == ServerState.LEADING)
    if leader.sid != best[2]:
        raise Failure(f"leader {leader.sid}, but the best (epoch, zxid, id) is {best}")


def replay(seed: int, kind: str, voters: int, observers: int) -> Sim:
    """Run one seed exactly as the sweep did (for debugging a printed failure)."""
    faulty = kind == "faulty"
    # Every fourth seed also sends each notification through the wire codec.
    sim = Sim(seed, voters, observers, max_delay_ms=1_000 if faulty else 150, codec=seed % 4 == 0)
    try:
        run_faulty(sim) if faulty else run_fault_free(sim)
    except Failure as exc:
        raise Failure(f"{exc}\n{sim.describe()}") from None
    return sim


def _sweep(kind: str, seeds: range, voters: int, observers: int) -> None:
    print(f"{kind} seeds {seeds.start}..{seeds.stop - 1} ({voters} voters, {observers} observers)")
    for seed in seeds:
        try:
            replay(seed, kind, voters, observers)
        except Failure as exc:
            print(f"FAILED seed={seed}")
            raise AssertionError(
                f"seed {seed} ({kind}, {voters} voters, {observers} observers): {exc}\n"
                f"replay({seed}, {kind!r}, {voters}, {observers})"
            ) from exc


FAULT_FREE = [(3, 0, range(0, 300)), (5, 0, range(1000, 1200)), (3, 1, range(2000, 2100))]
FAULTY = [
    (3, 0, range(0, 300)),
    (5, 0, range(1000, 1300)),
    (3, 1, range(2000, 2100)),
    (4, 1, range(3000, 3100)),
]


@pytest.mark.parametrize(("voters", "observers", "seeds"), FAULT_FREE)
def test_fault_free_elections_pick_the_best_voter(
    voters: int, observers: int, seeds: range
) -> None:
    _sweep("fault-free", seeds, voters, observers)


@pytest.mark.parametrize(("voters", "observers", "seeds"), FAULTY)
def test_faulty_elections_converge_after_healing(voters: int, observers: int, seeds: range) -> None:
    _sweep("faulty", seeds, voters, observers)


@pytest.mark.slow
@pytest.mark.parametrize(("voters", "observers"), [(3, 0), (5, 0), (4, 1)])
def test_faulty_elections_many_seeds(voters: int, observers: int) -> None:
    _sweep("faulty", range(100_000, 105_000), voters, observers)


@pytest.mark.parametrize("seed", range(50))
def test_a_restarted_peer_with_a_higher_zxid_joins_without_a_new_epoch(seed: int) -> None:
    sim = Sim(seed, 3, 0, max_delay_ms=100)
    for peer in sim.peers.values():
        sim.at(0, functools.partial(sim.start_election, peer))
    members = sorted(sim.peers)
    assert sim.run_until(60_000, lambda: sim.settled(members)), sim.describe()
    epochs = dict(sim.epoch_leaders)
    leader = next(p for p in sim.peers.values() if p.role == ServerState.LEADING)
    follower = next(p for p in sim.peers.values() if p.role == ServerState.FOLLOWING)
    sim.crash(follower)
    # It had logged txns the others never saw (uncommitted, to be truncated on sync).
    follower.zxid = leader.zxid + 100
    sim.at(sim.now + 500, lambda: sim.restart(follower))
    ok = sim.run_until(sim.now + 60_000, lambda: follower.up and sim.settled(members))
    assert ok, f"seed {seed}: restarted peer did not rejoin\n{sim.describe()}"
    assert follower.leader == leader.sid
    assert sim.epoch_leaders == epochs, f"seed {seed}: a new epoch started\n{sim.describe()}"
