"""Debian's Apache ZooKeeper 3.8.0 as a test server (the reference of the differential tests).

The JVM runs `ZooKeeperServerMain` in the foreground as our direct child, with the
classpath Debian's zkEnv.sh uses (zookeeper.jar, whose manifest names its dependencies)
plus slf4j-simple so its log goes to the work directory instead of /var/log/zookeeper.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import ClassVar

from support.procs import ServerProcess, ServerSettings

ZOOKEEPER_HOME = Path("/usr/share/zookeeper")
ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
LOGGER_JAR = Path("/usr/share/java/slf4j-simple.jar")
MAIN_CLASS = "org.apache.zookeeper.server.ZooKeeperServerMain"

# The behaviour this server has: the Debian package is 3.8.0 with the CVE-2024-23944 fix
# (READ-filtered persistent watch events) backported.
VERSION = (3, 8, 0)

# Start the JVM fast: it serves a few thousand small requests and then exits.
JVM_FLAGS = (
    "-Xms64m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Xshare:auto",
    "-Djava.net.preferIPv4Stack=true",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
)


def available() -> str | None:
    """None when ZooKeeper can run here, else why not (for pytest.skip)."""
    if not ZOOKEEPER_JAR.is_file():
        return f"{ZOOKEEPER_JAR} missing (run scripts/install-zookeeper.sh)"
    if shutil.which("java") is None:
        return "java is not on PATH"
    return None


class ZooKeeperServer(ServerProcess):
    """Apache ZooKeeper standalone, started with `settings`."""

    kind: ClassVar[str] = "zookeeper"
    version = VERSION

    def command(self, cfg_path: Path) -> list[str]:
        java = shutil.which("java") or "java"
        classpath = [str(ZOOKEEPER_JAR)]
        if LOGGER_JAR.is_file():
            classpath.append(str(LOGGER_JAR))
        props = [f"-D{k}={v}" for k, v in self.settings.system_properties().items()]
        return [
            java,
            *JVM_FLAGS,
            *props,
            "-cp",
            os.pathsep.join(classpath),
            MAIN_CLASS,
            str(cfg_path),
        ]


def start_zookeeper(settings: ServerSettings, workdir: Path) -> ZooKeeperServer:
    """A started ZooKeeper; the caller stops it."""
    workdir.mkdir(parents=True, exist_ok=True)
    server = ZooKeeperServer(settings, workdir)
    server.start()
    return server
