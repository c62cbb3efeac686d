"""The clients' side of the simulation: sessions that connect to a server, send writes
(forwarded by learners), ping, move to another server (revalidating their session) when
theirs stops serving, close, or are abandoned so that the leader expires them. With
reconfig, a share of the writes are reconfigs (workload.random_reconfig) against the config
the client's server has active, conditional on its version or not."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from corral.proto.codes import OpCode
from corral.quorum.follower import LearnerPhase
from corral.quorum.zab_packets import ForwardedRequest
from corral.sim import workload
from corral.sim.workload import Client

if TYPE_CHECKING:
    from corral.sim.world import World

RECONFIG_SHARE = 0.03  # of the writes, when the run has reconfig on


def serving(world: World, sid: int) -> bool:
    srv = world.servers[sid]
    return srv.up and srv.serving and srv.paused_until <= world.now and srv.role is not None


def traffic_loop(world: World) -> None:
    if not world.traffic_on:
        return
    client_step(world)
    world.at(
        world.now + world.rng.randint(1, 2 * world.config.op_gap_ms),
        functools.partial(traffic_loop, world),
    )


def client_step(world: World) -> None:
    rng = world.rng
    for c in world.clients.values():
        if c.state == "creating" and world.now - c.created_at > 2_000:
            c.state = "dead"  # its createSession was lost with a leader
    live = [c for c in world.clients.values() if c.state == "live"]
    alive = [c for c in world.clients.values() if c.state != "dead"]
    r = rng.random()
    if len(alive) < world.config.clients_max and (r < 0.08 or not live):
        session_id = (rng.choice(sorted(world.servers)) << 56) | world.next_session
        world.next_session += 1
        client = Client(
            session_id, rng.choice(sorted(world.servers)), rng.choice((400, 1000, 2000, 4000))
        )
        client.created_at = world.now
        world.clients[session_id] = client
        world.stats["sessions"] += 1
        send_request(world, client, int(OpCode.CREATE_SESSION), client.timeout_ms)
        return
    if not live:
        return
    client = rng.choice(live)
    if r < 0.095:
        send_request(world, client, int(OpCode.CLOSE_SESSION), None)
        world.stats["closes"] += 1
    elif r < 0.105:
        if not client.abandoned:
            client.abandoned = True
            world.stats["abandoned"] += 1
    elif world.config.reconfig and rng.random() < RECONFIG_SHARE:
        send_reconfig(world, client)
    else:
        op, request = workload.random_write(rng)
        send_request(world, client, op, request)


def send_reconfig(world: World, client: Client) -> None:
    rng = world.rng
    view = world.servers[client.server].config()
    r = rng.random()
    # As zkCli's `reconfig -v`: the version the client read, or a stale one, or none.
    version = -1 if r < 0.4 else view.version if r < 0.9 else max(view.version - 1, 0)
    kind, request = workload.random_reconfig(rng, view, sorted(world.servers), version)
    world.stats[f"reconfig_asked_{kind}"] += 1
    send_request(world, client, int(OpCode.RECONFIG), request)


def send_request(world: World, client: Client, op: int, request: workload.Request) -> None:
    if not serving(world, client.server):
        move(world, client)
        world.stats["unavailable"] += 1
        if op == OpCode.CREATE_SESSION:
            client.state = "dead"  # connection refused; a new client will try again
        return
    srv = world.servers[client.server]
    cxid = client.next_cxid()
    world.stats["requests"] += 1
    world.checker.invoke(client.session_id, cxid)
    client.outstanding.add(cxid)
    if srv.leader() is not None:
        world.submit_at_leader(srv, client.session_id, cxid, op, request)
        return
    learner = srv.learner()
    if learner is None or learner.phase is not LearnerPhase.BROADCAST:
        return
    data = workload.encode_request(op, request)
    learner.forward(ForwardedRequest(client.session_id, cxid, op, data))
    world.stats["forwarded"] += 1
    world.pump(srv)


def move(world: World, client: Client) -> None:
    # The old connection is gone, and with it the answers to what was sent on it.
    for cxid in sorted(client.outstanding):
        world.checker.lost_reply(client.session_id, cxid)
    client.outstanding.clear()
    others = [s for s in sorted(world.servers) if s != client.server]
    client.server = world.rng.choice(others)
    srv = world.servers[client.server]
    learner = srv.learner()
    if client.state == "live" and learner is not None and learner.phase is LearnerPhase.BROADCAST:
        learner.revalidate(client.session_id, client.timeout_ms)
        world.stats["revalidations"] += 1
        world.pump(srv)


def schedule_ping(world: World, client: Client) -> None:
    def ping() -> None:
        if client.state != "live" or client.abandoned:
            return
        if not serving(world, client.server):
            move(world, client)
        else:
            srv = world.servers[client.server]
            if srv.leader() is not None:
                world.touch_session(srv, client.session_id, client.timeout_ms)
            else:
                learner = srv.learner()
                if learner is not None:
                    learner.touch(client.session_id, client.timeout_ms)
        world.at(world.now + client.timeout_ms // 3, ping)

    world.at(world.now + client.timeout_ms // 3, ping)
