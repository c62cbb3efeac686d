"""FastLeaderElection (ZooKeeper's only election algorithm since 3.6) as a pure state machine.

Inputs: `start(now_ms, last_zxid, current_epoch)` (become LOOKING with a new round),
`receive(from_sid, notification, now_ms)` and `tick(now_ms)`. Each returns a `Ready`: the
notifications to send (to which sid) and at most one `Decision` (LEADING, FOLLOWING or
OBSERVING, with the final vote). The runner owns the connections; this module owns the
rules, which follow FastLeaderElection.lookForLeader and its WorkerReceiver:

- Votes are ordered by peer epoch, then zxid, then server id (`vote_beats`).
- A LOOKING peer adopts any better vote of its round, moves to a higher round when it sees
  one (resetting its tally), ignores older rounds (but answers them with its own vote, so a
  peer that restarted catches up), and tallies the latest vote of every voter. When a
  majority of voters holds exactly its proposal, it waits `finalize_wait_ms` (200) for a
  better vote; each worse one that arrives restarts that wait and is dropped, a better one
  resumes the election. Then it decides.
- With nothing to read for the notification interval, it sends its vote again and doubles
  the interval, from 200 ms up to 60 s.
- Votes from peers that are already FOLLOWING or LEADING ("out of election") let a late or
  restarted peer join an established leader: it follows a leader that a majority follows
  and that itself says it is LEADING, even when its own zxid is higher. Such votes compare
  by leader id (and peer epoch), not zxid: the leader's zxid moves on after the election
  (ZOOKEEPER-1732).
- Observers do not vote (they propose Long.MIN_VALUE as leader, zxid and epoch); peers
  answer any non-voter with their current vote, and observers decide OBSERVING from those.
- Once decided, a peer keeps answering LOOKING peers with its state and final vote.

Messages to ourselves go round an internal loopback queue, as QuorumCnxManager loops them
back, so our own vote is tallied like any other. Time comes only from the arguments.

Reconfig (`reconfig_enabled`): every notification carries our active config; a LOOKING peer
that receives a config with a higher version adopts it (Ready.adopt, for the runner to
activate) and starts a new round under it, as WorkerReceiver does. A peer outside its config
(a joiner that adopted the ensemble's config, or a removed server) proposes nobody and, as
a participant, decides FOLLOWING; `set_verifier` switches the membership when a config is
activated elsewhere. Not modelled: the vote tracker counting the last proposed config too,
hierarchical quorums (weights), the 2-node oracle, and the leader's `reportLookingSid`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from dataclasses import dataclass

from corral.quorum.election_wire import LONG_MIN, Notification, ServerState
from corral.quorum.verifier import ConfigTextError, QuorumVerifier

__all__ = [
    "Decision",
    "FastLeaderElection",
    "Notification",
    "Ready",
    "ServerState",
    "Vote",
    "vote_beats",
]

log = logging.getLogger(__name__)

FINALIZE_WAIT_MS = 200  # FastLeaderElection.finalizeWait
MIN_NOTIFICATION_INTERVAL_MS = 200  # zookeeper.fastleader.minNotificationInterval
MAX_NOTIFICATION_INTERVAL_MS = 60_000  # zookeeper.fastleader.maxNotificationInterval
EARLY_NOTIFICATIONS_MAX = 256  # kept from before the first start (the oldest go first)


@dataclass(frozen=True, slots=True)
class Vote:
    """ZooKeeper's Vote: a proposed leader with its zxid and epoch, in an election round.

    `state` and `version` are the sender's, kept for votes from peers out of election.
    """

    leader: int
    zxid: int
    election_epoch: int
    peer_epoch: int
    state: ServerState = ServerState.LOOKING
    version: int = 0


def same_vote(a: Vote, b: Vote) -> bool:
    """Vote.equals: LOOKING votes must match in full; between peers out of election only
    the leader and its (updated) peer epoch count, and only the leader when one side is
    a pre-3.5 peer that does not send a version."""
    if a.state == ServerState.LOOKING or b.state == ServerState.LOOKING:
        return (a.leader, a.zxid, a.election_epoch, a.peer_epoch) == (
            b.leader,
            b.zxid,
            b.election_epoch,
            b.peer_epoch,
        )
    if (a.version > 0) != (b.version > 0):
        return a.leader == b.leader
    return a.leader == b.leader and a.peer_epoch == b.peer_epoch


def vote_beats(new: tuple[int, int, int], cur: tuple[int, int, int]) -> bool:
    """totalOrderPredicate on (leader, zxid, peer epoch): the new vote is strictly better
    by peer epoch, then zxid, then leader id."""
    new_id, new_zxid, new_epoch = new
    cur_id, cur_zxid, cur_epoch = cur
    return (new_epoch, new_zxid, new_id) > (cur_epoch, cur_zxid, cur_id)


@dataclass(frozen=True, slots=True)
class Decision:
    """The end of an election: our role and the vote it rests on."""

    state: ServerState  # LEADING, FOLLOWING or OBSERVING
    leader: int
    vote: Vote


@dataclass(frozen=True, slots=True)
class Ready:
    """What the runner does after an input: send these notifications, then take the role."""

    sends: tuple[tuple[int, Notification], ...] = ()
    decision: Decision | None = None
    # A newer config learned from a peer's notification (the runner activates it).
    adopt: QuorumVerifier | None = None


class FastLeaderElection:
    """One peer's election. `start` begins a round; the peer answers others even after it
    has decided, until `start` is called again (Zab lost its leader or quorum)."""

    def __init__(
        self,
        my_id: int,
        verifier: QuorumVerifier,
        *,
        finalize_wait_ms: int = FINALIZE_WAIT_MS,
        min_notification_interval_ms: int = MIN_NOTIFICATION_INTERVAL_MS,
        max_notification_interval_ms: int = MAX_NOTIFICATION_INTERVAL_MS,
        observer: bool | None = None,
        reconfig_enabled: bool = False,
    ) -> None:
        me = verifier.server(my_id)
        if me is None and observer is None:
            raise ValueError(f"server {my_id} is not a member of the ensemble")
        self.my_id = my_id
        self.verifier = verifier
        self.finalize_wait_ms = finalize_wait_ms
        self.min_interval_ms = min_notification_interval_ms
        self.max_interval_ms = max_notification_interval_ms
        self.reconfig_enabled = reconfig_enabled
        # Our learner type: an observer observes; a participant follows (votes if a member).
        self.observer = observer if observer is not None else bool(me and me.observer)
        self._config = verifier.config_string().encode()
        self._voter = verifier.is_voter(my_id)
        self._adopt: QuorumVerifier | None = None
        self._last_start = (0, 0)
        self.started = False
        self.state = ServerState.LOOKING
        self.logical_clock = 0
        # Our initial vote of this round, and the vote we currently propose.
        self._init = (my_id, 0, 0)
        self._proposal = (my_id, 0, 0)
        # QuorumPeer.currentVote: the vote we answer with outside LOOKING (and to non-voters).
        self.current_vote = Vote(my_id, 0, 0, 0)
        self._recvset: dict[int, Vote] = {}
        self._out_of_election: dict[int, Vote] = {}
        self._interval_ms = min_notification_interval_ms
        self._idle_deadline = 0
        self._finalize_deadline: int | None = None
        self._loopback: deque[Notification] = deque()
        # Notifications that arrive before the first `start`: ZooKeeper's receiver queues
        # them (a new peer is LOOKING from the outset) and the first election reads them.
        self._early: deque[tuple[int, Notification]] = deque(maxlen=EARLY_NOTIFICATIONS_MAX)
        self._sends: list[tuple[int, Notification]] = []
        self._decision: Decision | None = None

    # -- inputs ------------------------------------------------------------------------------

    def start(self, now_ms: int, last_zxid: int, current_epoch: int) -> Ready:
        """Become LOOKING in a new round, proposing ourselves with our last logged zxid and
        current epoch (an observer proposes nobody), and tell every voter. Notifications
        received before the first start are read now, as the first election would."""
        self._start(now_ms, last_zxid, current_epoch)
        return self._ready()

    def _start(self, now_ms: int, last_zxid: int, current_epoch: int) -> None:
        if not self.started:
            # QuorumPeer.startLeaderElection: the vote answered before any election ends.
            self.current_vote = Vote(self.my_id, last_zxid, 0, current_epoch)
            self.started = True
        self._last_start = (last_zxid, current_epoch)
        self.state = ServerState.LOOKING
        self.logical_clock += 1
        if self._voter:
            self._init = (self.my_id, last_zxid, current_epoch)
        else:
            self._init = (LONG_MIN, LONG_MIN, LONG_MIN)
        self._proposal = self._init
        self._recvset.clear()
        self._out_of_election.clear()
        self._loopback.clear()
        self._finalize_deadline = None
        self._interval_ms = self.min_interval_ms
        self._idle_deadline = now_ms + self._interval_ms
        log.info("server %d: new election, round %#x", self.my_id, self.logical_clock)
        self._send_notifications()
        while self._early and self.state == ServerState.LOOKING:
            self._on_message(*self._early.popleft(), now_ms)
        self._drain_loopback(now_ms)

    def receive(self, from_sid: int, n: Notification, now_ms: int) -> Ready:
        """A notification from a peer (WorkerReceiver, then the lookForLeader loop)."""
        if not self.started:
            self._early.append((from_sid, n))
            return Ready()
        self._on_message(from_sid, n, now_ms)
        return self._ready()

    def tick(self, now_ms: int) -> Ready:
        """Time passes: end a finished finalize wait, or resend our vote when nothing came."""
        if not self.started or self.state != ServerState.LOOKING:
            return self._ready()
        if self._finalize_deadline is not None:
            if now_ms >= self._finalize_deadline:
                self._decide(self._proposal[0], self._proposal_vote())
        elif now_ms >= self._idle_deadline:
            self._send_notifications()
            self._interval_ms = min(self._interval_ms * 2, self.max_interval_ms)
            self._idle_deadline = now_ms + self._interval_ms
            log.debug("server %d: notification timeout, next %d ms", self.my_id, self._interval_ms)
            self._drain_loopback(now_ms)
        return self._ready()

    def set_verifier(self, verifier: QuorumVerifier, observer: bool | None = None) -> None:
        """A config became active (the runner's processReconfig): use its membership. The
        caller restarts a LOOKING election (`start`) if it wants a new round under it."""
        self.verifier = verifier
        self._config = verifier.config_string().encode()
        self._voter = verifier.is_voter(self.my_id)
        if observer is not None:
            self.observer = observer

    def update_peer_epoch(self, new_epoch: int) -> None:
        """QuorumPeer.updateElectionVote: once Zab has established the new epoch, answer
        looking peers with it (ZOOKEEPER-1732)."""
        self.current_vote = dataclasses.replace(self.current_vote, peer_epoch=new_epoch)

    def next_deadline(self) -> int | None:
        """The time at which `tick` has something to do, or None."""
        if not self.started or self.state != ServerState.LOOKING:
            return None
        if self._finalize_deadline is not None:
            return self._finalize_deadline
        return self._idle_deadline

    @property
    def proposal(self) -> Vote:
        """The vote we currently propose (meaningful while LOOKING)."""
        return self._proposal_vote()

    # -- the lookForLeader loop --------------------------------------------------------------

    def _on_message(self, from_sid: int, n: Notification, now_ms: int) -> None:
        """WorkerReceiver's answers, then (while LOOKING) one turn of lookForLeader."""
        if self._maybe_adopt(n, now_ms):
            return
        if not self.verifier.is_voter(from_sid):
            # A non-voter (an observer) learns from our current vote whatever our state.
            self._reply(from_sid, self.current_vote, self.logical_clock)
        elif self.state == ServerState.LOOKING:
            if n.state == ServerState.LOOKING and n.election_epoch < self.logical_clock:
                # Pull a peer from an older round into ours.
                self._reply(from_sid, self._proposal_vote(), self.logical_clock)
            self._handle_looking(from_sid, n, now_ms)
            self._drain_loopback(now_ms)
        elif n.state == ServerState.LOOKING:
            # Decided already: tell a looking peer whom we follow or that we lead.
            self._reply(from_sid, self.current_vote, self.current_vote.election_epoch)

    def _maybe_adopt(self, n: Notification, now_ms: int) -> bool:
        """WorkerReceiver: a LOOKING peer takes a newer config from a notification and
        restarts its election under it (True: this notification was consumed so)."""
        if not self.reconfig_enabled or not n.config or self.state != ServerState.LOOKING:
            return False
        try:
            theirs = QuorumVerifier.from_config_string(n.config.decode())
        except (ConfigTextError, UnicodeDecodeError):
            return False
        if theirs.version <= self.verifier.version or not theirs.voters:
            return False
        log.info(
            "server %d: adopting config version %#x from a notification",
            self.my_id,
            theirs.version,
        )
        me = theirs.server(self.my_id)
        self.set_verifier(theirs, me.observer if me is not None else None)
        self._adopt = theirs
        self._start(now_ms, *self._last_start)
        return True

    def _handle_looking(self, sid: int, n: Notification, now_ms: int) -> None:
        if self._finalize_deadline is not None:
            # Finalize wait: only a better vote stops it; anything else is dropped.
            if not vote_beats((n.leader, n.zxid, n.peer_epoch), self._proposal):
                self._finalize_deadline = now_ms + self.finalize_wait_ms
                return
            self._finalize_deadline = None
        self._idle_deadline = now_ms + self._interval_ms
        if not (self.verifier.is_voter(sid) and self.verifier.is_voter(n.leader)):
            log.warning("server %d: ignoring vote for %d from %d", self.my_id, n.leader, sid)
            return
        if n.state == ServerState.LOOKING:
            self._looking_vote(sid, n, now_ms)
        elif n.state in (ServerState.FOLLOWING, ServerState.LEADING):
            self._established_vote(sid, n)

    def _looking_vote(self, sid: int, n: Notification, now_ms: int) -> None:
        if self._init[1] == -1 or n.zxid == -1:
            return  # ZooKeeper ignores votes while either zxid is unknown (-1)
        theirs = (n.leader, n.zxid, n.peer_epoch)
        if n.election_epoch > self.logical_clock:
            self.logical_clock = n.election_epoch
            self._recvset.clear()
            self._proposal = theirs if vote_beats(theirs, self._init) else self._init
            self._send_notifications()
        elif n.election_epoch < self.logical_clock:
            return
        elif vote_beats(theirs, self._proposal):
            self._proposal = theirs
            self._send_notifications()
        self._recvset[sid] = Vote(n.leader, n.zxid, n.election_epoch, n.peer_epoch)
        if self._has_quorum(self._recvset, self._proposal_vote()):
            self._finalize_deadline = now_ms + self.finalize_wait_ms

    def _established_vote(self, sid: int, n: Notification) -> None:
        """receivedFollowingNotification (LEADING is the same without the oracle)."""
        vote = Vote(n.leader, n.zxid, n.election_epoch, n.peer_epoch, n.state, n.version)
        final = Vote(n.leader, n.zxid, n.election_epoch, n.peer_epoch)
        if n.election_epoch == self.logical_clock:
            self._recvset[sid] = dataclasses.replace(vote, version=0)
            if self._has_quorum(self._recvset, vote) and self._check_leader(
                self._recvset, n.leader, n.election_epoch
            ):
                self._decide(n.leader, final)
                return
        # Peers that finished an election, whatever its round: enough of them following
        # one leader that says it leads means that leader is established; join it.
        self._out_of_election[sid] = vote
        if self._has_quorum(self._out_of_election, vote) and self._check_leader(
            self._out_of_election, n.leader, n.election_epoch
        ):
            self.logical_clock = n.election_epoch
            self._decide(n.leader, final)

    def _check_leader(self, votes: dict[int, Vote], leader: int, election_epoch: int) -> bool:
        """checkLeader: another leader must itself have said it is LEADING; if we are the
        leader, the votes must be of our own round."""
        if leader == self.my_id:
            return self.logical_clock == election_epoch
        theirs = votes.get(leader)
        return theirs is not None and theirs.state == ServerState.LEADING

    def _has_quorum(self, votes: dict[int, Vote], vote: Vote) -> bool:
        acks = [sid for sid, v in votes.items() if same_vote(vote, v)]
        return self.verifier.contains_quorum(acks)

    def _decide(self, leader: int, vote: Vote) -> None:
        if leader == self.my_id:
            state = ServerState.LEADING
        elif not self.observer:
            state = ServerState.FOLLOWING
        else:
            state = ServerState.OBSERVING
        self.state = state
        self.current_vote = vote
        self._finalize_deadline = None
        self._loopback.clear()
        self._decision = Decision(state, leader, vote)
        log.info("server %d: %s, leader %d, vote %s", self.my_id, state.name, leader, vote)

    # -- sending -----------------------------------------------------------------------------

    def _proposal_vote(self) -> Vote:
        leader, zxid, epoch = self._proposal
        return Vote(leader, zxid, self.logical_clock, epoch)

    def _send_notifications(self) -> None:
        leader, zxid, epoch = self._proposal
        n = Notification(
            ServerState.LOOKING, leader, zxid, self.logical_clock, epoch, config=self._config
        )
        for sid in sorted(self.verifier.voters):
            if sid == self.my_id:
                self._loopback.append(n)
            else:
                self._sends.append((sid, n))

    def _reply(self, to_sid: int, vote: Vote, election_epoch: int) -> None:
        n = Notification(
            self.state,
            vote.leader,
            vote.zxid,
            election_epoch,
            vote.peer_epoch,
            config=self._config,
        )
        self._sends.append((to_sid, n))

    def _drain_loopback(self, now_ms: int) -> None:
        while self._loopback and self.state == ServerState.LOOKING:
            self._handle_looking(self.my_id, self._loopback.popleft(), now_ms)

    def _ready(self) -> Ready:
        ready = Ready(tuple(self._sends), self._decision, self._adopt)
        self._sends.clear()
        self._decision = None
        self._adopt = None
        return ready
