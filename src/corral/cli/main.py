"""The `corral` command line: `corral server [zoo.cfg] [-Dk=v ...]`, `corral ensemble`, `--version`.

Argument parsing, logging setup and exit codes only; the server itself is `net.runner`
(standalone) or `net.peer_runner` (a zoo.cfg naming an ensemble).
Java system properties come, as with zkServer.sh, from SERVER_JVMFLAGS then JVMFLAGS (the
script runs `java $SERVER_JVMFLAGS $JVMFLAGS ...`, so a later flag wins), then from `-D`
arguments, which win over both.

Exit codes follow ZooKeeper's ExitCode: 0 finished, 1 unexpected error, 2 invalid invocation
or configuration, 3 data directory not accessible.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from corral import ZOOKEEPER_COMPAT_VERSION, __version__, limits
from corral.config import ConfigError, ServerConfig, embedded_config, load_config
from corral.javaprops import jvm_flag_properties

__all__ = ["EXIT_CONFIG", "EXIT_DATADIR", "EXIT_ERROR", "EXIT_OK", "main", "system_properties"]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_DATADIR = 3

_LOG_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"

# Modules that copy limits.jute_maxbuffer_bytes into their own constants when imported.
_MAXBUFFER_READERS = (
    "corral.proto.jute",
    "corral.server.prep_ops",
    "corral.store.snapstream",
    "corral.quorum.zab_packets",
)


def system_properties(defines: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    """Java system properties: SERVER_JVMFLAGS, then JVMFLAGS, then `-D` arguments."""
    props = jvm_flag_properties(environ.get("SERVER_JVMFLAGS", ""))
    props.update(jvm_flag_properties(environ.get("JVMFLAGS", "")))
    for define in defines:
        key, _, value = define.partition("=")
        if key:
            props[key] = value
    return props


def _apply_jute_maxbuffer(config: ServerConfig) -> None:
    """Make jute.maxbuffer (and its extrasize) the bounds of this process's codec, as they
    are the JVM's.

    ZooKeeper reads jute.maxbuffer once, into a static of BinaryInputArchive, and every
    reader in the process (requests, txn log, snapshots, quorum packets) checks lengths
    against it. Corral's readers copy the bound from `limits` when their module is imported,
    so it is set here, before the server modules are imported; without this a raised
    jute.maxbuffer let big frames in but their data was refused by the decoder.
    """
    wanted = config.jute_maxbuffer_bytes
    extra = config.jute_maxbuffer_extrasize_bytes
    extra = max(wanted, 1024) if extra is None else extra
    if (wanted, extra) == (limits.jute_maxbuffer_bytes, limits.jute_maxbuffer_extrasize_bytes):
        return
    loaded = [name for name in _MAXBUFFER_READERS if name in sys.modules]
    if loaded:
        # Only reachable in-process (tests); `corral server` imports none of them before this.
        raise ConfigError(
            "jute.maxbuffer",
            f"cannot change to {wanted} (+{extra}) after {', '.join(loaded)} was imported",
        )
    limits.jute_maxbuffer_bytes = wanted
    limits.jute_maxbuffer_extrasize_bytes = extra


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corral", description="A ZooKeeper-compatible coordination service."
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"corral {__version__} (ZooKeeper {ZOOKEEPER_COMPAT_VERSION} compatible)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    server = commands.add_parser(
        "server",
        help="run a server",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run a server. Without a config file: standalone on 127.0.0.1:2181 with data in\n"
            "./corral-data, tickTime 2000 and the four-letter words ruok, srvr, stat, conf,\n"
            "envi, isro, mntr. With a ZooKeeper zoo.cfg: the server it describes (four-letter\n"
            "words: ZooKeeper's default, srvr only, unless 4lw.commands.whitelist says more)."
        ),
        epilog=(
            "System properties also come from SERVER_JVMFLAGS and JVMFLAGS (-Dkey=value words),\n"
            "as zkServer.sh passes them; -D arguments win. Corral's own properties:\n"
            "  corral.sessionSecretFile     the secret session passwords derive from (default\n"
            "                               <dataDir>/corral-session-secret, created 0600)\n"
            "  corral.sessionPasswordScheme hmac (default) or zookeeper\n"
            "Exit codes: 0 stopped cleanly, 1 error, 2 bad usage or configuration,\n"
            "3 data directory unusable."
        ),
    )
    commands.add_parser(
        "ensemble",
        add_help=False,
        help="run a local ensemble of servers (corral ensemble --help for its options)",
    )
    server.add_argument("config", nargs="?", help="a ZooKeeper zoo.cfg")
    server.add_argument(
        "-D",
        dest="defines",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a Java-style system property (e.g. -Dzookeeper.4lw.commands.whitelist=*)",
    )
    server.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging threshold (default INFO)",
    )
    return parser


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format=_LOG_FORMAT, stream=sys.stderr, force=True)


def _server(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    sysprops = system_properties(args.defines, os.environ)
    try:
        config: ServerConfig = (
            load_config(args.config, sysprops) if args.config else embedded_config(sysprops)
        )
        _apply_jute_maxbuffer(config)
    except ConfigError as exc:
        log.error("invalid configuration: %s", exc)
        return EXIT_CONFIG
    # Imported here so `corral --version` and config errors need none of the server modules,
    # and after _apply_jute_maxbuffer, which must run before they are imported.
    from corral.cli.wiring import four_letter_factory, not_serving_four_letter
    from corral.net.runner import DataDirError, FatalError, run_server

    try:
        if config.ensemble.distributed:
            from corral.net.peer_runner import run_peer

            run_peer(config, four_letter_factory, not_serving_four_letter(config))
        else:
            run_server(config, four_letter_factory)
    except ConfigError as exc:
        log.error("invalid configuration: %s", exc)
        return EXIT_CONFIG
    except DataDirError as exc:
        log.error("%s", exc)
        return EXIT_DATADIR
    except FatalError as exc:
        log.critical("%s", exc)
        return EXIT_ERROR
    except OSError as exc:
        log.error("cannot serve: %s", exc)
        return EXIT_ERROR
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `corral` script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["ensemble"]:
        # cli/ensemble.py parses its own arguments.
        from corral.cli.ensemble import main as ensemble_main

        return ensemble_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "server":
        return _server(args)
    _parser().print_help(sys.stderr)
    return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
