"""Corral as a test server: `.venv/bin/corral server zoo.cfg -Dkey=value ...` as a subprocess.

The same `ServerSettings` as for ZooKeeper become the same zoo.cfg and -D arguments, so a
differential test gives both servers identical configuration.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import ClassVar

from support.procs import ServerProcess, ServerSettings

REPO = Path(__file__).resolve().parents[2]

# The behaviour Corral implements.
VERSION = (3, 9, 5)


def corral_command() -> list[str]:
    """How to run the `corral` console script (CORRAL_BIN overrides it)."""
    override = os.environ.get("CORRAL_BIN")
    if override:
        return [override]
    for candidate in (REPO / ".venv" / "bin" / "corral", Path(sys.executable).with_name("corral")):
        if candidate.is_file():
            return [str(candidate)]
    return [sys.executable, "-m", "corral.cli.main"]


def available() -> str | None:
    """None when Corral's server entry point exists, else why not (for pytest.skip)."""
    try:
        spec = importlib.util.find_spec("corral.cli.main")
    except ModuleNotFoundError:
        spec = None
    if spec is None:
        return "corral.cli.main does not exist yet (the server is not built)"
    return None


class CorralServer(ServerProcess):
    """Corral standalone, started with `settings`."""

    kind: ClassVar[str] = "corral"
    version = VERSION

    def command(self, cfg_path: Path) -> list[str]:
        props = [f"-D{k}={v}" for k, v in self.settings.system_properties().items()]
        return [*corral_command(), "server", str(cfg_path), *props]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # Tracebacks and logs unbuffered, so a crash shows up in server.log.
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("PYTHONFAULTHANDLER", "1")
        return env


def start_corral(settings: ServerSettings, workdir: Path) -> CorralServer:
    """A started Corral; the caller stops it."""
    workdir.mkdir(parents=True, exist_ok=True)
    server = CorralServer(settings, workdir)
    server.start()
    return server
