#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need (the wasm32 target,
# the Python MCP SDK, node 22 + the TypeScript SDK + the conformance suite from npm), then runs
# formatting, clippy (host and wasm32), the wasm32 build check and every test.
# Installed tools of the right version are reused, so a second run only builds and tests.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }
export CARGO_TERM_COLOR=never

step "toolchain: wasm32 target"
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

step "python: the MCP SDK"
python3 -m pip install --disable-pip-version-check -q -r tests/requirements.txt

step "node: node 22, TypeScript SDK, conformance suite"
if ! cmp -s package-lock.json node_modules/.mcpgw-lock 2>/dev/null || [ ! -x node_modules/.bin/node ]; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.mcpgw-lock
fi
node_modules/.bin/node --version

step "redis-server (the rate-limit tests start their own on 127.0.0.1)"
if ! command -v redis-server >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq redis-server >/dev/null \
    || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server >/dev/null; }
fi
redis-server --version

step "format"
cargo fmt --all --check

step "clippy (host)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "check and clippy (wasm32: core, edge)"
cargo check -p mcpgw-core -p mcpgw-edge --target wasm32-unknown-unknown --locked
cargo clippy -p mcpgw-core -p mcpgw-edge --target wasm32-unknown-unknown --locked -- -D warnings

step "edge: toolchain (worker-build, wasm-bindgen-cli, wrangler), Worker build and bundle size"
bash scripts/edge.sh bundle

step "build the gateway binary the e2e suite runs"
cargo build -p mcpgw-native --locked

step "tests (native; the edge restart test runs wrangler dev too)"
log=$(mktemp)
cargo test --workspace --locked 2>&1 | tee "$log"

step "e2e against the edge: the same cases under wrangler dev (workerd)"
MCPGW_TARGET=edge cargo test -p mcpgw-e2e --locked \
  --test sdk_clients --test conformance --test protocol --test bad_input \
  --test federation --test federation_faults --test auth --test ratelimit --test ssrf --test oauth --test credentials 2>&1 | tee -a "$log"
# One closing line for the whole run (cargo ends on a per-crate line, often a 0-test doc-test one).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "\n%d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
