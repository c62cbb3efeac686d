"""`electionAlg` and `standaloneEnabled` parsed as ZooKeeper's QuorumPeerConfig parses them.

- electionAlg: only 3 (FastLeaderElection) exists since ZooKeeper 3.6; any other number stops
  the server with QuorumPeerConfig's message, "Invalid electionAlg value. Only 3 is
  supported." (checked against Debian's ZooKeeper 3.8.0).
- standaloneEnabled (true/false, any case): with one participant, true runs standalone (and
  ZooKeeper logs "Invalid configuration, only one server specified (ignoring)"); false runs a
  one-member ensemble (`corral server` then starts the ensemble runner). With no participant
  at all, false is an error, as are observers without participants, or beside a single
  participant that runs standalone (parseDynamicConfig's checks, in its words).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from corral.cli import main as cli
from corral.config import ConfigError, ServerConfig, load_config

ZK_ELECTION_ALG = "Invalid electionAlg value. Only 3 is supported."


def cfg(tmp_path: Path, text: str, myid: int | None = 1) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    if myid is not None:
        (data / "myid").write_text(f"{myid}\n")
    path = tmp_path / "zoo.cfg"
    path.write_text(f"dataDir={data}\nclientPort=2181\ninitLimit=10\nsyncLimit=5\n{text}")
    return path


def load(tmp_path: Path, text: str) -> ServerConfig:
    return load_config(cfg(tmp_path, text))


ONE = "server.1=127.0.0.1:2888:3888\n"
THREE = ONE + "server.2=127.0.0.1:2889:3889\nserver.3=127.0.0.1:2890:3890\n"


# -- electionAlg -----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["0", "1", "2", "4", "-1"])
def test_election_algorithms_other_than_3_are_refused(tmp_path: Path, alg: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, f"electionAlg={alg}\n" + THREE)
    assert err.value.key == "electionAlg"
    assert str(err.value) == f"electionAlg: {ZK_ELECTION_ALG}"


def test_election_algorithm_3_and_the_default(tmp_path: Path) -> None:
    assert load(tmp_path, "electionAlg=3\n" + THREE).ensemble.election_alg == 3
    assert load(tmp_path, THREE).ensemble.election_alg == 3


def test_election_algorithm_must_be_a_number(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "electionAlg=fast\n" + THREE)
    assert err.value.key == "electionAlg"


def test_election_algorithm_refused_in_standalone_too(tmp_path: Path) -> None:
    # QuorumPeerConfig checks it while reading the keys, whatever the mode.
    with pytest.raises(ConfigError, match="Only 3 is supported"):
        load(tmp_path, "electionAlg=0\n")


def test_bad_election_algorithm_stops_corral_server(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # main() would configure the root logger of this test process; caplog reads it instead.
    monkeypatch.setattr(cli, "_setup_logging", lambda level: None)
    path = cfg(tmp_path, "electionAlg=1\n" + THREE)
    with caplog.at_level(logging.ERROR):
        assert cli.main(["server", str(path)]) == cli.EXIT_CONFIG
    assert ZK_ELECTION_ALG in caplog.text


# -- standaloneEnabled -----------------------------------------------------------------------


def test_one_server_line_runs_standalone_by_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        e = load(tmp_path, ONE).ensemble
    assert e.standalone_enabled and not e.distributed
    assert "only one server specified (ignoring)" in caplog.text


@pytest.mark.parametrize("value", ["false", "FALSE", "False"])
def test_standalone_disabled_with_one_server_line_is_an_ensemble(
    tmp_path: Path, value: str
) -> None:
    e = load(tmp_path, f"standaloneEnabled={value}\n" + ONE).ensemble
    assert not e.standalone_enabled and e.distributed
    assert e.server_id == 1 and [s.sid for s in e.voting_members] == [1]


@pytest.mark.parametrize("value", ["true", "TRUE", "True"])
def test_standalone_enabled_any_case(tmp_path: Path, value: str) -> None:
    e = load(tmp_path, f"standaloneEnabled={value}\n" + ONE).ensemble
    assert e.standalone_enabled and not e.distributed


@pytest.mark.parametrize("value", ["yes", "no", "1", ""])
def test_standalone_enabled_takes_only_true_or_false(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, f"standaloneEnabled={value}\n" + ONE)
    assert err.value.key == "standaloneEnabled"


def test_standalone_enabled_does_not_matter_with_a_quorum(tmp_path: Path) -> None:
    for value in ("true", "false"):
        assert load(tmp_path, f"standaloneEnabled={value}\n" + THREE).ensemble.distributed


def test_standalone_disabled_without_participants_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "standaloneEnabled=false\n")
    assert err.value.key == "standaloneEnabled"
    assert "number of participants should be >0" in str(err.value)


def test_no_server_lines_runs_standalone(tmp_path: Path) -> None:
    e = load(tmp_path, "").ensemble
    assert e.servers == () and not e.distributed


def test_observers_without_participants_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "server.2=127.0.0.1:2889:3889:observer\n")
    assert err.value.key == "server.2"
    assert "Observers w/o participants is an invalid configuration" in str(err.value)


def test_observer_beside_a_standalone_participant_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, ONE + "server.2=127.0.0.1:2889:3889:observer\n")
    assert err.value.key == "server.2"
    assert "Observers w/o quorum is an invalid configuration" in str(err.value)


def test_observer_beside_a_one_member_ensemble(tmp_path: Path) -> None:
    text = "standaloneEnabled=false\n" + ONE + "server.2=127.0.0.1:2889:3889:observer\n"
    e = load(tmp_path, text).ensemble
    assert e.distributed and [s.sid for s in e.voting_members] == [1]


# -- `corral server` picks the runner from it ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "runner"),
    [
        (ONE, "standalone"),
        ("standaloneEnabled=false\n" + ONE, "ensemble"),
        (THREE, "ensemble"),
        ("", "standalone"),
    ],
)
def test_corral_server_runs_the_ensemble_runner_when_distributed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, runner: str
) -> None:
    import corral.net.peer_runner as peer_runner
    import corral.net.runner as standalone_runner

    ran: list[str] = []
    monkeypatch.setattr(cli, "_setup_logging", lambda level: None)
    monkeypatch.setattr(standalone_runner, "run_server", lambda *a, **k: ran.append("standalone"))
    monkeypatch.setattr(peer_runner, "run_peer", lambda *a, **k: ran.append("ensemble"))
    assert cli.main(["server", str(cfg(tmp_path, text))]) == cli.EXIT_OK
    assert ran == [runner]
