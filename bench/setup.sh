#!/usr/bin/env bash
# Installs what the benchmark needs and nothing by hand: ZooKeeper's C client library (the load
# generator is a small C program on its async single-threaded API), the reference server
# (Debian's Apache ZooKeeper 3.8), gcc, and the `bench` extra (matplotlib) into the venv.
# Needs root for apt-get, as CI and the dev machines run. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
ls /usr/lib/*/libzookeeper_st.so >/dev/null 2>&1 && [ -f /usr/include/zookeeper/zookeeper.h ] \
  || need+=(libzookeeper-st-dev)
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${need[@]}"
fi
bash scripts/install-zookeeper.sh
PY=.venv/bin/python
if ! "$PY" -c 'import matplotlib' 2>/dev/null; then
  "$PY" -m pip install -q -e '.[bench]'
fi
