#!/usr/bin/env bash
# Whole-gateway benchmarks (release build): gateway versus the same REST endpoint called directly,
# in the same run. Extra arguments go to the harness (--requests N --concurrency C --out FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
# The edge is measured too (under wrangler dev): its toolchain is installed and the Worker built.
bash scripts/edge.sh install
bash scripts/edge.sh build
cargo build --release --locked -p mcpgw-native -p mcpgw-bench
MCPGW_BIN="$PWD/target/release/mcpgw" exec target/release/mcpgw-bench --edge "$@"
