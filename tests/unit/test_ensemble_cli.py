"""`corral ensemble`'s generated member configurations parse as a ZooKeeper ensemble."""

from __future__ import annotations

from pathlib import Path

from corral.cli.ensemble import SECRET_FILE, ensemble_configs
from corral.config import load_config
from corral.net.peer_runner import ensemble_verifier


def test_generated_configs_describe_one_ensemble(tmp_path: Path) -> None:
    paths = ensemble_configs(tmp_path, 3, 24000)
    assert (tmp_path / SECRET_FILE).stat().st_mode & 0o777 == 0o600
    for sid, path in enumerate(paths, start=1):
        config = load_config(str(path), {})
        assert config.ensemble.distributed and config.ensemble.server_id == sid
        assert config.client_port == 24000 + 10 * sid
        v = ensemble_verifier(config)
        assert sorted(v.voters) == [1, 2, 3]
        me = v.server(sid)
        assert me is not None and (me.quorum_port, me.election_port) == (
            24000 + 10 * sid + 1,
            24000 + 10 * sid + 2,
        )
    # Running it again keeps the secret (sessions keep working across dev restarts).
    secret = (tmp_path / SECRET_FILE).read_bytes()
    ensemble_configs(tmp_path, 3, 24000)
    assert (tmp_path / SECRET_FILE).read_bytes() == secret
