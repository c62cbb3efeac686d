"""`corral ensemble`: a local ensemble on loopback for development and demos.

    python -m corral.cli.ensemble --size 3 [--dir DIR] [--base-port 22000]
        writes DIR/serverN/{zoo.cfg,data/myid} for N = 1..size (server.N lines with the
        quorum, election and client ports on 127.0.0.1), one shared session secret (so a
        session moves between servers), starts one member process per server, prints the
        connect string, and stops them all on Ctrl-C / SIGTERM.
Each member is `corral server <its zoo.cfg>`, as a deployed member would be.

Ports: server N uses base+10N (client), base+10N+1 (quorum) and base+10N+2 (election).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from corral.cli.main import EXIT_CONFIG, EXIT_ERROR, EXIT_OK

__all__ = ["ensemble_configs", "main"]

log = logging.getLogger(__name__)

_LOG_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"
SECRET_FILE = "session-secret"


def ensemble_configs(directory: Path, size: int, base_port: int, tick_ms: int = 2000) -> list[Path]:
    """Write the members' zoo.cfg files and myid files; returns the config paths."""
    directory.mkdir(parents=True, exist_ok=True)
    secret = directory / SECRET_FILE
    if not secret.exists():
        # The same secret everywhere: session passwords must verify on every server.
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    lines = [
        f"server.{n}=127.0.0.1:{base_port + 10 * n + 1}:{base_port + 10 * n + 2}"
        f";127.0.0.1:{base_port + 10 * n}"
        for n in range(1, size + 1)
    ]
    paths = []
    for n in range(1, size + 1):
        home = directory / f"server{n}"
        data = home / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / "myid").write_text(f"{n}\n", encoding="ascii")
        cfg = home / "zoo.cfg"
        cfg.write_text(
            "\n".join(
                [
                    f"tickTime={tick_ms}",
                    "initLimit=10",
                    "syncLimit=5",
                    f"dataDir={data}",
                    "4lw.commands.whitelist=*",
                    *lines,
                    "",
                ]
            ),
            encoding="utf-8",
        )
        paths.append(cfg)
    return paths


def member_command(cfg: Path, secret: Path) -> list[str]:
    """One member is `corral server zoo.cfg`, which runs an ensemble member for a zoo.cfg
    with server.N lines."""
    return [
        sys.executable,
        "-m",
        "corral.cli.main",
        "server",
        str(cfg),
        f"-Dcorral.sessionSecretFile={secret}",
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corral ensemble", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=3, help="number of servers (default 3)")
    parser.add_argument("--dir", default="corral-ensemble", help="where the servers live")
    parser.add_argument("--base-port", type=int, default=22000)
    parser.add_argument("--log-level", default="INFO")
    return parser


def _local_ensemble(args: argparse.Namespace) -> int:
    if args.size < 1:
        print("--size must be at least 1", file=sys.stderr)
        return EXIT_CONFIG
    directory = Path(args.dir).resolve()
    configs = ensemble_configs(directory, args.size, args.base_port)
    secret = directory / SECRET_FILE
    procs = []
    for n, cfg in enumerate(configs, start=1):
        log_file = open(cfg.parent / "server.log", "ab")  # noqa: SIM115 - lives with the child
        procs.append(
            subprocess.Popen(
                [*member_command(cfg, secret), "--log-level", args.log_level],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        )
        print(f"server {n}: pid {procs[-1].pid}, log {cfg.parent / 'server.log'}")
    hosts = ",".join(f"127.0.0.1:{args.base_port + 10 * n}" for n in range(1, args.size + 1))
    print(f"connect string: {hosts}  (Ctrl-C stops the ensemble)")
    stopping = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping and all(p.poll() is None for p in procs):
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    code = EXIT_OK
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.returncode not in (0, -signal.SIGTERM):
            code = EXIT_ERROR
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format=_LOG_FORMAT, stream=sys.stderr)
    return _local_ensemble(args)


if __name__ == "__main__":
    sys.exit(main())
