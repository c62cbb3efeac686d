"""An ensemble member's mode in the four-letter words, and its answers while not serving."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from core_harness import Harness

from corral.admin.core_snapshot import server_snapshot
from corral.admin.fourletter import ZK_NOT_SERVING, ServerConf, render_mntr, render_stat
from corral.cli.wiring import not_serving_four_letter
from corral.config import ALL_FOUR_LETTER_WORDS, ServerConfig

CONF = ServerConf(2181, "/d/version-2", "/d/version-2", 2000, 60, 4000, 40000, server_id=2)


def test_the_core_mode_is_what_srvr_and_mntr_say() -> None:
    h = Harness()
    assert h.core.mode == "standalone"
    stats = h.core.snapshot_for_4lw()
    for mode in ("leader", "follower", "observer"):
        snap = server_snapshot(stats, CONF, mode=mode)
        assert f"Mode: {mode}\n" in render_stat(snap, with_clients=False)
        assert f"zk_server_state\t{mode}\n" in render_mntr(snap)
    assert server_snapshot(stats, CONF).mode == "standalone"


def test_not_serving_answers() -> None:
    base = ServerConfig(data_dir=Path("/d"), data_log_dir=Path("/d"))
    config = dataclasses.replace(base, four_letter_words=ALL_FOUR_LETTER_WORDS)
    render = not_serving_four_letter(config)
    for word in ("srvr", "stat", "mntr", "conf", "cons", "wchs", "dirs"):
        assert render(0, word) == (ZK_NOT_SERVING + "\n").encode(), word
    assert render(0, "ruok") == b"imok"
    assert render(0, "isro") == b"null"
    # The default whitelist (srvr only) refuses the rest, as ZooKeeper does.
    default = not_serving_four_letter(base)
    assert default(0, "srvr") == (ZK_NOT_SERVING + "\n").encode()
    assert default(0, "mntr") == b"mntr is not executed because it is not in the whitelist.\n"
