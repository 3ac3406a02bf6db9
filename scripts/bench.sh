#!/usr/bin/env bash
# Whole-gateway benchmarks (release build): gateway versus the same REST endpoint called directly,
# in the same run. Extra arguments go to the harness (--requests N --concurrency C --out FILE).
# With --contextforge, only the comparison with ContextForge runs (installed on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
# The edge is measured too (under wrangler dev): its toolchain is installed and the Worker built.
bash scripts/edge.sh install
bash scripts/edge.sh build
# nginx is the CPU baseline of the federated-call phase (a plain reverse proxy): installed
# without starting its service (policy-rc.d says no), so nothing listens beyond what the bench
# starts on 127.0.0.1.
if [ ! -x /usr/sbin/nginx ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx-light >/dev/null \
    || { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx-light >/dev/null; }
  $SUDO rm -f /usr/sbin/policy-rc.d
fi
cargo build --release --locked -p mcpgw-native -p mcpgw-bench
# --contextforge: mcpgw beside IBM's ContextForge, installed from the Python package index into a
# virtualenv of its own (cached between runs; MCPGW_CONTEXTFORGE_VERSION pins a version).
if [[ " $* " == *" --contextforge "* ]]; then
  venv="${XDG_CACHE_HOME:-$HOME/.cache}/mcpgw-bench/contextforge"
  if [ ! -x "$venv/bin/mcpgateway" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q "mcp-contextforge-gateway${MCPGW_CONTEXTFORGE_VERSION:+==$MCPGW_CONTEXTFORGE_VERSION}"
  fi
  MCPGW_BIN="$PWD/target/release/mcpgw" MCPGW_CONTEXTFORGE="$venv/bin/mcpgateway" \
    exec target/release/mcpgw-bench "$@"
fi
MCPGW_BIN="$PWD/target/release/mcpgw" exec target/release/mcpgw-bench --edge "$@"
