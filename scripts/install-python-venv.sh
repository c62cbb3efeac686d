#!/usr/bin/env bash
# `python3 -m venv` needs ensurepip, which Debian ships apart from python3 (package
# python3-venv, not on a fresh machine). Installs it when missing and we are root (as
# scripts/install-zookeeper.sh does for the reference server); otherwise says what to install.
set -euo pipefail
PYTHON=${1:-python3}
if "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "$PYTHON cannot create a venv (no ensurepip): install python3-venv" \
       "(Debian: sudo apt-get install python3-venv)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q python3-venv
