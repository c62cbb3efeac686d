#!/usr/bin/env bash
# Installs Debian's Apache ZooKeeper (the reference server our differential tests compare
# Corral with) when it is missing. Needs root, as CI and the dev machines run.
set -euo pipefail
if [ -x /usr/share/zookeeper/bin/zkServer.sh ] && command -v java >/dev/null; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q zookeeper
