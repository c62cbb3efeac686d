"""The deterministic simulator that drives the pure cores under faults (used by tests).

One process, one seeded `random.Random`, one virtual clock: N servers (3 or 5 voters, an
observer in some runs), each running the project's own FastLeaderElection, Zab Leader or
Learner, a fake disk and a DataTree, exactly as a real runner drives them (every Ready in
the contract's order; every packet through the wire codecs). Client sessions create, set,
delete and multi through prep_write on the leader (forwarded by learners as REQUEST),
ping through their server, and are expired by the leader's tracker.

Faults: message delays and slow links, per-connection FIFO with connection breaks that
lose what was in flight, FIN-after-flush closes, one-way and two-way partitions that stall
TCP streams, crashes (random, of the leader, or inside a Ready at a chosen point) that lose
unsynced writes and may tear the log tail, restarts that replay the whole log (and may
snapshot the uncommitted tail, ZOOKEEPER-1549), pauses and clock jumps.

Invariants, checked as the state they concern changes (so after every step): at most one
leader established per epoch, and it holds every txn committed before (primary integrity);
one committed sequence G that every commit decision extends (prefix agreement); every
server applies exactly G's prefix once synced; every txn of G durable on a quorum of voter
disks; acknowledged writes in G, in real-time and per-session order; zxids strictly
increasing in G, logs and trees; acceptedEpoch >= currentEpoch, both monotonic; trees at
the same zxid identical; ephemerals owned by live sessions. Then a liveness phase heals a
majority and requires one leader, every live server synced, a fresh write committed, and
every tree equal to a replay of G.

With `--reconfig` (SimConfig.reconfig; some seeds of the default suite), configs are
versioned and change: 1 or 2 more servers start outside the config (a static config of the
ensemble plus themselves, as participants or observers), clients send incremental and bulk
reconfigs (adds, removals, role changes, with or without the version they read), and half
the reconfig proposals are hit while pending (the leader crashes or is cut off, a new voter
crashes, the network splits). Each server keeps its active and last proposed config across
crashes as the runner's dynamic config files do (written when the notice is handled, after
the Ready's acks), and its election adopts newer configs from notifications. Invariants
added: every committed prefix of G durable on a quorum of the config in force (both while
the reconfig itself commits); leaders commit their own txns only where they vote, and never
go on under a config where they do not; an established leader's config is no older than
the last committed one; one membership per config version, and only committed reconfigs'
configs (or the first leader's versioning) activated; after healing, with a quorum of the
configs in play up, everyone follows one leader with the last committed config active.

Modules: `world` (scheduler, virtual clock, the runner of each server's cores, the
leader's request handling), `server` (per-server state, recovery), `net`, `disk`,
`checker`, `faults` (the random mix, the sweep's script), `clients` and `workload` (client
sessions and their requests), `liveness`, `treecodec` (tree image and digest), `run` (seeds,
shapes, the crash sweep); `python -m corral.sim` is the command line.
"""
