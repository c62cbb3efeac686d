"""ZooKeeper's dynamic config files: where an ensemble's membership lives once reconfig runs.

As QuorumPeer.setQuorumVerifier/setLastSeenQuorumVerifier and QuorumPeerConfig write them:

- `<zoo.cfg>.dynamic.<version hex>`: the active config's `server.N=...` lines, sorted as
  strings, no `version=` line (the version is in the name; QuorumPeerConfig reads it back
  from there). Files of older versions are kept, as ZooKeeper keeps them.
- zoo.cfg itself is rewritten without its `server.`/`group`/`weight`/`peerType`/old
  `dynamicConfigFile` keys (and without `clientPort`/`clientPortAddress` once this server's
  own line carries its client address), with `dynamicConfigFile=<absolute path>` last. The
  first time a single-file zoo.cfg is split, it is copied to `<zoo.cfg>.bak` first.
- `<zoo.cfg>.dynamic.next`: a proposed, not yet active config (with its `version=` line),
  read back at start as the last seen config, removed once that config is active.

Every file is written as AtomicFileWritingIdiom does: a temporary file, fsync, rename.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from corral.javaprops import PropertiesSyntaxError, parse_properties
from corral.quorum.verifier import ConfigTextError, QuorumVerifier, dynamic_file_text
from corral.store.layout import fsync_path, remove_file

__all__ = [
    "NEXT_SUFFIX",
    "dynamic_file_path",
    "read_next_config",
    "remove_next_config",
    "write_active_config",
    "write_next_config",
]

log = logging.getLogger(__name__)

NEXT_SUFFIX = ".dynamic.next"  # QuorumPeerConfig.nextDynamicConfigFileSuffix
_TMP_SUFFIX = ".tmp"
# Keys that belong to the dynamic file (or are replaced by it) and leave zoo.cfg.
_DYNAMIC_PREFIXES = ("server.", "group", "weight", "dynamicConfigFile", "peerType")
_CLIENT_PREFIXES = ("clientPort", "clientPortAddress")


def dynamic_file_path(config_file: Path, version: int) -> Path:
    """QuorumPeer.makeDynamicConfigFilename."""
    return config_file.with_name(f"{config_file.name}.dynamic.{version:x}")


def write_active_config(config_file: Path, verifier: QuorumVerifier, my_sid: int) -> Path:
    """Write the active config's dynamic file and point zoo.cfg at it; returns its path."""
    path = dynamic_file_path(config_file, verifier.version)
    _atomic_write(path, dynamic_file_text(verifier))
    me = verifier.server(my_sid)
    _edit_static_config(config_file, path, erase_client=me is not None and me.client is not None)
    return path


def write_next_config(config_file: Path, verifier: QuorumVerifier) -> None:
    """The proposed config, for a restart while its reconfig is in flight."""
    path = config_file.with_name(config_file.name + NEXT_SUFFIX)
    _atomic_write(path, dynamic_file_text(verifier, keep_version=True))


def read_next_config(config_file: Path) -> QuorumVerifier | None:
    """The `.dynamic.next` file's config, or None when there is none (or it is unreadable,
    which ZooKeeper also shrugs off)."""
    path = config_file.with_name(config_file.name + NEXT_SUFFIX)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None
    try:
        return QuorumVerifier.from_config_string(text)
    except ConfigTextError as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None


def remove_next_config(config_file: Path) -> None:
    remove_file(config_file.with_name(config_file.name + NEXT_SUFFIX))


def _edit_static_config(config_file: Path, dynamic_file: Path, *, erase_client: bool) -> None:
    """QuorumPeerConfig.editStaticConfig (plus backupOldConfig on the first split)."""
    raw = config_file.read_bytes()
    try:
        props = parse_properties(raw.decode("utf-8-sig", errors="replace"))
    except PropertiesSyntaxError as exc:
        log.warning("not rewriting %s: %s", config_file, exc)
        return
    backup = config_file.with_name(config_file.name + ".bak")
    if "dynamicConfigFile" not in props and not backup.exists():
        _atomic_write(backup, raw)
    lines = []
    for key, value in props.items():
        key = key.strip()
        if key.startswith(_DYNAMIC_PREFIXES) or (erase_client and key.startswith(_CLIENT_PREFIXES)):
            continue
        lines.append(f"{key}={value.strip()}\n")
    lines.append(f"dynamicConfigFile={dynamic_file.resolve()}\n")
    _atomic_write(config_file, "".join(lines))


def _atomic_write(path: Path, content: str | bytes) -> None:
    data = content.encode("utf-8") if isinstance(content, str) else content
    tmp = path.with_name(path.name + _TMP_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        remove_file(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_path(path.parent)
