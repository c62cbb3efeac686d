"""The replicated ensemble's pure cores: leader election now, Zab's learner protocol next.

Everything here is a state machine in the style of etcd's raft: inputs are messages and the
time as a number, outputs are small frozen records the runner performs (send these bytes to
that peer, take this role). No sockets, clocks, threads or randomness.

- `verifier`: the ensemble's membership (`server.N` lines) and ZooKeeper's majority rule.
- `election_wire`: the election port's bytes exactly as ZooKeeper 3.8 writes and reads them
  (QuorumCnxManager's connection initiation message and framing, FastLeaderElection's
  notification).
- `election`: FastLeaderElection as a pure state machine (`start`, `receive`, `tick` ->
  `Ready`).
"""
