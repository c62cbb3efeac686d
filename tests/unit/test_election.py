"""FastLeaderElection's rules, one at a time, with hand-fed notifications and times."""

from __future__ import annotations

import pytest

from corral.quorum.election import (
    Decision,
    FastLeaderElection,
    Ready,
    Vote,
    same_vote,
    vote_beats,
)
from corral.quorum.election_wire import LONG_MIN, Notification, ServerState
from corral.quorum.verifier import QuorumVerifier

QV3 = QuorumVerifier.of_ids([1, 2, 3])
LOOKING, FOLLOWING, LEADING, OBSERVING = (
    ServerState.LOOKING,
    ServerState.FOLLOWING,
    ServerState.LEADING,
    ServerState.OBSERVING,
)


def note(
    state: ServerState, leader: int, zxid: int = 0, round_: int = 1, epoch: int = 0
) -> Notification:
    return Notification(state, leader, zxid, round_, epoch, config=b"")


def votes(ready: Ready) -> dict[int, tuple[int, int, int, int]]:
    """What was sent to whom: (leader, zxid, round, peer epoch) per recipient (last wins)."""
    return {sid: (n.leader, n.zxid, n.election_epoch, n.peer_epoch) for sid, n in ready.sends}


def started(
    sid: int = 1, zxid: int = 0, epoch: int = 0, qv: QuorumVerifier = QV3
) -> FastLeaderElection:
    fle = FastLeaderElection(sid, qv)
    fle.start(0, zxid, epoch)
    return fle


# -- ordering -------------------------------------------------------------------------------


def test_votes_order_by_epoch_then_zxid_then_id() -> None:
    assert vote_beats((1, 0, 2), (9, 0xFF, 1))  # a higher epoch wins over all else
    assert vote_beats((1, 6, 1), (9, 5, 1))  # then the zxid
    assert vote_beats((3, 5, 1), (2, 5, 1))  # then the id
    assert not vote_beats((2, 5, 1), (2, 5, 1))  # equal is not better


def test_vote_equality_follows_zookeeper() -> None:
    a = Vote(3, 10, 1, 2)
    assert same_vote(a, Vote(3, 10, 1, 2))
    assert not same_vote(a, Vote(3, 11, 1, 2))  # LOOKING: everything must match
    # Out of election: leader and peer epoch only; the zxid moved on after the election.
    f1 = Vote(3, 10, 1, 2, FOLLOWING, 2)
    assert same_vote(f1, Vote(3, 99, 7, 2, LEADING, 2))
    assert not same_vote(f1, Vote(3, 10, 1, 3, LEADING, 2))
    assert same_vote(f1, Vote(3, 10, 1, 5, LEADING, 0))  # a pre-3.5 peer: leader only


# -- one election ---------------------------------------------------------------------------


def test_start_sends_our_vote_to_every_other_voter() -> None:
    fle = FastLeaderElection(2, QV3)
    ready = fle.start(1000, 0x500000007, 5)
    assert votes(ready) == {1: (2, 0x500000007, 1, 5), 3: (2, 0x500000007, 1, 5)}
    assert all(
        n.state == LOOKING and n.config == QV3.config_string().encode() for _, n in ready.sends
    )
    assert fle.logical_clock == 1 and fle.next_deadline() == 1200


def test_a_better_vote_is_adopted_and_a_quorum_decides_after_the_finalize_wait() -> None:
    fle = started(1, zxid=5)
    ready = fle.receive(3, note(LOOKING, 3, zxid=9), 10)
    assert votes(ready) == {2: (3, 9, 1, 0), 3: (3, 9, 1, 0)}  # we now propose 3
    assert ready.decision is None
    # 3 and we (loopback) hold the same vote: a majority. Wait 200 ms for a better one.
    assert fle.next_deadline() == 210
    assert fle.tick(209).decision is None
    decided = fle.tick(210).decision
    assert decided == Decision(FOLLOWING, 3, Vote(3, 9, 1, 0))
    assert fle.state == FOLLOWING and fle.next_deadline() is None


def test_the_leader_decides_leading() -> None:
    fle = started(3, zxid=9)
    fle.receive(1, note(LOOKING, 3, zxid=9), 0)
    assert fle.tick(200).decision == Decision(LEADING, 3, Vote(3, 9, 1, 0))


def test_a_worse_vote_in_the_finalize_wait_is_dropped_and_restarts_the_wait() -> None:
    fle = started(1, zxid=5)
    fle.receive(3, note(LOOKING, 3, zxid=9), 0)
    ready = fle.receive(2, note(LOOKING, 2, zxid=1), 150)
    assert ready.sends == () and fle.next_deadline() == 350
    assert fle.tick(349).decision is None
    assert fle.tick(350).decision is not None


def test_a_better_vote_in_the_finalize_wait_resumes_the_election() -> None:
    fle = started(1, zxid=5)
    fle.receive(3, note(LOOKING, 3, zxid=9), 0)
    ready = fle.receive(2, note(LOOKING, 2, zxid=20), 150)
    assert votes(ready) == {2: (2, 20, 1, 0), 3: (2, 20, 1, 0)}
    # 2 and we agree on 2 now: a new finalize wait from here.
    assert fle.next_deadline() == 350
    assert fle.tick(350).decision == Decision(FOLLOWING, 2, Vote(2, 20, 1, 0))


def test_a_single_voter_elects_itself() -> None:
    fle = FastLeaderElection(1, QuorumVerifier.of_ids([1]))
    ready = fle.start(0, 7, 1)
    assert ready.sends == () and fle.next_deadline() == 200
    assert fle.tick(200).decision == Decision(LEADING, 1, Vote(1, 7, 1, 1))


# -- rounds ---------------------------------------------------------------------------------


def test_a_higher_round_resets_the_tally_and_keeps_the_better_vote() -> None:
    fle = started(2, zxid=8, qv=QuorumVerifier.of_ids([1, 2, 3, 4, 5]))
    fle.receive(3, note(LOOKING, 3, zxid=9), 0)  # round 1: we propose 3 (no majority yet)
    ready = fle.receive(1, note(LOOKING, 1, zxid=2, round_=4), 50)
    # Round 4: the tally restarts from our own vote (better than 1's), not from 3's.
    assert fle.logical_clock == 4
    assert votes(ready) == {s: (2, 8, 4, 0) for s in (1, 3, 4, 5)}
    assert fle.next_deadline() == 250  # no majority: waiting for notifications


def test_an_older_round_is_answered_with_our_vote_and_not_counted() -> None:
    fle = started(2, zxid=8)
    fle.receive(3, note(LOOKING, 2, zxid=8, round_=3), 0)  # round 3 now, votes for us
    ready = fle.receive(1, note(LOOKING, 1, zxid=99, round_=1), 50)
    assert votes(ready) == {1: (2, 8, 3, 0)}  # "we are in round 3, voting for 2"
    assert fle.proposal == Vote(2, 8, 3, 0)  # 1's better zxid from round 1 does not count


def test_notification_backoff_doubles_up_to_the_maximum() -> None:
    fle = FastLeaderElection(1, QV3, max_notification_interval_ms=1600)
    fle.start(0, 0, 0)
    now, gaps = 0, []
    for _ in range(6):
        deadline = fle.next_deadline()
        assert deadline is not None
        gaps.append(deadline - now)
        now = deadline
        assert len(fle.tick(now).sends) == 2  # our vote again, to 2 and 3
    assert gaps == [200, 400, 800, 1600, 1600, 1600]


def test_default_backoff_is_zookeepers() -> None:
    fle = started()
    assert (fle.finalize_wait_ms, fle.min_interval_ms, fle.max_interval_ms) == (200, 200, 60_000)


def test_any_message_restarts_the_notification_timer() -> None:
    fle = started(1)
    fle.receive(2, note(LOOKING, 2, round_=1, zxid=0), 150)  # better (id 2): quorum {1,2}
    fle.receive(3, note(LOOKING, 3, round_=1, zxid=0), 300)  # better again
    assert fle.next_deadline() == 500


# -- votes that are ignored -----------------------------------------------------------------


def test_votes_for_non_members_and_unknown_zxids_are_ignored() -> None:
    fle = started(1, zxid=5)
    assert fle.receive(2, note(LOOKING, 9, zxid=99), 10).sends == ()
    assert fle.receive(2, note(LOOKING, 2, zxid=-1), 10).sends == ()
    assert fle.proposal == Vote(1, 5, 1, 0)


def test_observing_notifications_are_ignored_by_voters() -> None:
    fle = started(1)
    assert fle.receive(2, note(OBSERVING, 3, zxid=5), 10) == Ready()
    assert fle.proposal.leader == 1


def test_messages_before_start_are_read_by_the_first_election() -> None:
    fle = FastLeaderElection(1, QV3)
    assert fle.receive(3, note(LOOKING, 3, zxid=9), 0) == Ready()
    ready = fle.start(5, 0, 0)
    # Start sends our own vote, then reads 3's and adopts it (quorum with ourselves).
    assert [n.leader for _, n in ready.sends] == [1, 1, 3, 3]
    assert fle.tick(205).decision == Decision(FOLLOWING, 3, Vote(3, 9, 1, 0))


# -- out of election ------------------------------------------------------------------------


def test_a_restarted_peer_with_a_higher_zxid_joins_the_established_leader() -> None:
    fle = started(3, zxid=0x200000050, epoch=2)  # newest data, but the others moved on
    # Round 7 ensemble: 1 leads, 2 follows. Their zxid in the vote is from the election.
    assert (
        fle.receive(2, note(FOLLOWING, 1, zxid=0x200000010, round_=7, epoch=3), 5).decision is None
    )
    ready = fle.receive(1, note(LEADING, 1, zxid=0x200000010, round_=7, epoch=3), 6)
    assert ready.decision == Decision(FOLLOWING, 1, Vote(1, 0x200000010, 7, 3))
    assert fle.logical_clock == 7  # adopts the ensemble's round


def test_followers_alone_do_not_make_a_leader() -> None:
    qv = QuorumVerifier.of_ids([1, 2, 3, 4, 5])
    fle = started(5, qv=qv)
    for sid in (2, 3, 4):
        assert fle.receive(sid, note(FOLLOWING, 1, round_=3), 1).decision is None
    # Only when the leader itself says LEADING.
    assert fle.receive(1, note(LEADING, 1, round_=3), 2).decision is not None


def test_a_leader_still_looking_is_not_followed_yet() -> None:
    # 2 and 3 decided for 1 in our round; 1 itself is still in its finalize wait (LOOKING).
    qv = QuorumVerifier.of_ids([1, 2, 3, 4, 5])
    fle = started(5, qv=qv)
    fle.receive(1, note(LOOKING, 1, zxid=7), 1)
    fle.receive(2, note(FOLLOWING, 1, zxid=7), 2)
    assert fle.receive(3, note(FOLLOWING, 1, zxid=7), 3).decision is None
    assert fle.receive(1, note(LEADING, 1, zxid=7), 4).decision == Decision(
        FOLLOWING, 1, Vote(1, 7, 1, 0)
    )


def test_out_of_election_votes_must_agree_on_the_peer_epoch() -> None:
    fle = started(3)
    fle.receive(2, note(FOLLOWING, 1, round_=7, epoch=3), 5)
    # The leader has moved on to epoch 4 (updated its vote), the follower has not yet.
    assert fle.receive(1, note(LEADING, 1, round_=7, epoch=4), 6).decision is None
    assert fle.receive(2, note(FOLLOWING, 1, round_=7, epoch=4), 7).decision is not None


def test_same_round_following_votes_count_by_leader_id() -> None:
    # In our own round, FOLLOWING/LEADING votes tally with the LOOKING ones by leader id.
    fle = started(3)
    fle.receive(1, note(LEADING, 1, zxid=4, round_=1, epoch=1), 5)
    decided = fle.receive(2, note(FOLLOWING, 1, zxid=4, round_=1, epoch=1), 6).decision
    assert decided == Decision(FOLLOWING, 1, Vote(1, 4, 1, 1))


def test_we_are_the_leader_out_of_election_only_in_our_round() -> None:
    fle = started(1)
    fle.receive(2, note(FOLLOWING, 1, round_=5), 1)
    assert fle.receive(3, note(FOLLOWING, 1, round_=5), 2).decision is None  # round 5 != 1


# -- after the election ---------------------------------------------------------------------


def test_decided_peers_answer_looking_peers_with_their_final_vote() -> None:
    fle = started(3, zxid=9)
    fle.receive(1, note(LOOKING, 3, zxid=9), 0)
    fle.tick(200)
    assert fle.state == LEADING
    ready = fle.receive(2, note(LOOKING, 2, zxid=1, round_=4), 500)
    assert [(sid, n.state) for sid, n in ready.sends] == [(2, LEADING)]
    assert votes(ready) == {2: (3, 9, 1, 0)}  # the round of our election, not theirs
    assert fle.receive(2, note(FOLLOWING, 3), 600) == Ready()  # not looking: no answer
    fle.update_peer_epoch(1)  # Zab established epoch 1 (ZOOKEEPER-1732)
    assert votes(fle.receive(2, note(LOOKING, 2, round_=4), 700)) == {2: (3, 9, 1, 1)}


def test_a_new_start_begins_the_next_round() -> None:
    fle = started(3, zxid=9)
    fle.receive(1, note(LOOKING, 3, zxid=9), 0)
    fle.tick(200)
    ready = fle.start(5000, 0x100000003, 1)
    assert fle.state == LOOKING and fle.logical_clock == 2
    assert votes(ready) == {1: (3, 0x100000003, 2, 1), 2: (3, 0x100000003, 2, 1)}


# -- observers ------------------------------------------------------------------------------

QV_OBS = QuorumVerifier.of_ids([1, 2, 3], observers=[4])


def test_an_observer_proposes_nobody_and_writes_to_voters_only() -> None:
    fle = FastLeaderElection(4, QV_OBS)
    ready = fle.start(0, 0x100000001, 1)
    assert votes(ready) == {s: (LONG_MIN, LONG_MIN, 1, LONG_MIN) for s in (1, 2, 3)}


def test_voters_answer_an_observer_with_their_current_vote() -> None:
    fle = FastLeaderElection(2, QV_OBS)
    fle.start(0, 0x100000001, 1)
    ready = fle.receive(4, note(LOOKING, LONG_MIN, LONG_MIN, 1, LONG_MIN), 5)
    assert [(sid, n.state) for sid, n in ready.sends] == [(4, LOOKING)]
    assert votes(ready) == {4: (2, 0x100000001, 1, 1)}
    assert fle.proposal == Vote(2, 0x100000001, 1, 1)  # the observer did not vote


def test_an_observer_observes_the_established_leader() -> None:
    fle = FastLeaderElection(4, QV_OBS)
    fle.start(0, 0, 0)
    fle.receive(2, note(FOLLOWING, 3, zxid=5, round_=2, epoch=1), 10)
    decided = fle.receive(3, note(LEADING, 3, zxid=5, round_=2, epoch=1), 11).decision
    assert decided == Decision(OBSERVING, 3, Vote(3, 5, 2, 1))


def test_a_non_member_cannot_run() -> None:
    with pytest.raises(ValueError):
        FastLeaderElection(9, QV3)
