#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need (the wasm32 target,
# the Python MCP SDK, node 22 + the TypeScript SDK + the conformance suite from npm), then runs
# formatting, clippy (host and wasm32), the wasm32 build check and every test.
# Installed tools of the right version are reused, so a second run only builds and tests.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }
# A bound on each step, so a hang fails the run with its name instead of eating CI's limit.
bounded() { local minutes=$1; shift; timeout --kill-after=30 "${minutes}m" "$@"; }
export CARGO_TERM_COLOR=never

step "toolchain: wasm32 target"
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

step "python: the MCP SDK"
bounded 10 python3 -m pip install --disable-pip-version-check -q -r tests/requirements.txt

step "node: node 22, TypeScript SDK, conformance suite"
if ! cmp -s package-lock.json node_modules/.mcpgw-lock 2>/dev/null || [ ! -x node_modules/.bin/node ]; then
  bounded 10 npm ci --no-audit --no-fund --loglevel=error
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

# Debian packages whose services must not start on their own: the tests start their own servers
# on 127.0.0.1 (policy-rc.d says no to the package's service while it is installed).
apt_quiet() {
  local SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  local rc=0
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o Dpkg::Options::=--force-confold "$@" >/dev/null \
    || { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o Dpkg::Options::=--force-confold "$@" >/dev/null; } \
    || rc=$?
  $SUDO rm -f /usr/sbin/policy-rc.d
  return $rc
}

step "nginx (the shared-session tests balance two instances with it on 127.0.0.1)"
[ -x /usr/sbin/nginx ] || apt_quiet nginx-light
/usr/sbin/nginx -v

step "Chromium (the admin UI test drives Debian's with playwright-core, on 127.0.0.1)"
[ -x /usr/bin/chromium ] || apt_quiet chromium
/usr/bin/chromium --version 2>/dev/null | head -1 || true

step "Prometheus and promtool (the metrics test scrapes the gateway with a private one on 127.0.0.1)"
command -v promtool >/dev/null 2>&1 || apt_quiet prometheus
promtool --version 2>&1 | head -1

step "PostgreSQL server binaries (the shared-registry tests start a private cluster on 127.0.0.1)"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  # No cluster of the package's own: the tests make theirs.
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
  apt_quiet postgresql
fi
ls /usr/lib/postgresql/*/bin/initdb

step "format"
cargo fmt --all --check

step "the shape of core (scripts/layers.py: no module cycle, no file over 800 lines, each type's methods in one file)"
python3 scripts/layers.py | grep -v ' -> '

step "the OpenAPI document is what scripts/openapi.py writes, and valid"
python3 scripts/openapi.py --check
openapi-spec-validator core/assets/openapi.json

step "packaging: hadolint on the Dockerfile, kubernetes-validate on deploy/k8s, the compose file parses"
hadolint Dockerfile
kubernetes-validate --strict --quiet deploy/k8s/*.yaml
python3 -c 'import sys, yaml; d = yaml.safe_load(open("deploy/compose/compose.yaml")); assert {"gateway-a", "gateway-b", "postgres", "redis"} <= set(d["services"]), d["services"].keys()'

step "clippy (host)"
bounded 20 cargo clippy --workspace --all-targets --locked -- -D warnings

step "check and clippy (wasm32: core, edge)"
bounded 10 cargo check -p mcpgw-core -p mcpgw-edge --target wasm32-unknown-unknown --locked
bounded 10 cargo clippy -p mcpgw-core -p mcpgw-edge --target wasm32-unknown-unknown --locked -- -D warnings

step "edge: toolchain (worker-build, wasm-bindgen-cli, wrangler), Worker build and bundle size"
bounded 25 bash scripts/edge.sh bundle

step "build the gateway binary the e2e suite runs"
bounded 15 cargo build -p mcpgw-native --locked

# Every test step runs to the end (--no-fail-fast) and the edge step runs even if the native one
# failed, so one run reports every failure; the script fails at the end if any step did.
log=$(mktemp)
skips=$(mktemp)
export MCPGW_SKIP_LOG="$skips"
status=0
tests() {  # tests <minutes> <cargo test args...>: one bounded test step
  local minutes=$1; shift
  set +e
  timeout --kill-after=30 "${minutes}m" cargo test --locked --no-fail-fast "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" -ne 0 ]; then
    echo "!! step failed (exit $rc; 124 means it ran over ${minutes} minutes)"
    status=1
  fi
}

step "tests (native; the edge restart test runs wrangler dev too)"
tests 30 --workspace

step "e2e against the edge: the same cases under wrangler dev (workerd)"
# The modules that are not edge cases are filtered out and reported as skipped.
not_edge='^(lifecycle|fixture_upstream|shared_registry|shared_sessions|scale_faults|soak|edge_restart)::'
filtered=$(mktemp)
cargo test --locked -q -p mcpgw-e2e --test e2e -- --list 2>/dev/null | sed -n 's/: test$//p' | grep -E "$not_edge" \
  | sed 's/^/SKIPPED /; s/$/ on Edge: native-only, or the edge restart case the native step runs/' > "$filtered" || true
MCPGW_TARGET=edge tests 30 -p mcpgw-e2e --test e2e -- \
  --skip lifecycle:: --skip fixture_upstream:: --skip shared_registry:: --skip shared_sessions:: --skip scale_faults:: --skip soak:: --skip edge_restart::
# One closing line for the whole run (cargo ends on a per-crate line, often a 0-test doc-test one).
# libtest has no skipped outcome: a case that does not apply to a target passes after writing
# a SKIPPED line to $MCPGW_SKIP_LOG (moved here from passed to skipped); the filtered modules
# never ran and are added to skipped.
if [ -s "$skips" ] || [ -s "$filtered" ]; then printf '\n'; cat "$skips" "$filtered"; fi
awk -v inside="$(wc -l < "$skips")" -v outside="$(wc -l < "$filtered")" \
  '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
   END { printf "\n%d passed, %d failed, %d skipped\n", p - inside, f, inside + outside }' "$log"
rm -f "$log" "$skips" "$filtered"
exit "$status"
