#!/usr/bin/env bash
# OpenAPI conformance: runs schemathesis (every check, every phase) against a
# real management API server started from the `api-server` example (control
# thread, store and certificate in a temporary directory, an admin token),
# fetching the document the server serves. Bounded: a few examples per
# operation and a wall-clock timeout. Fails on any schemathesis failure.
# One operation is left out: GET /api/v1/flows/follow is a stream that lasts
# up to an hour, which a request-and-response checker cannot judge; its
# parameters are those of GET /api/v1/flows (checked here) and its own are
# tested in mgmt-api/tests/api/follow.rs.
#
#   mgmt-api/tests/schemathesis.sh
#
# Environment: CARGO_TARGET_DIR (where the example is built, and the venv and
# the report go), BULKHEAD_ST_VENV (a venv to use instead), ST_MAX_EXAMPLES
# (default 60), ST_SEED (default 1; `random` for a new seed each run),
# ST_TIMEOUT (seconds, default 170).
set -euo pipefail
cd "$(dirname "$0")/../.."

# Pinned: the CLI's flags changed between 3.x and 4.x.
ST_VERSION=4.32.5
target="${CARGO_TARGET_DIR:-$PWD/target}"
venv="${BULKHEAD_ST_VENV:-$target/schemathesis-venv}"
max_examples="${ST_MAX_EXAMPLES:-60}"
seed="${ST_SEED:-1}"
limit="${ST_TIMEOUT:-170}"

if [ "$("$venv/bin/st" --version 2>/dev/null || true)" != "st, version $ST_VERSION" ]; then
  echo "schemathesis: installing $ST_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

cargo build --quiet --locked -p bulkhead-mgmt-api --example api-server

work="$(mktemp -d "${TMPDIR:-/tmp}/bulkhead-st.XXXXXX")"
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The failure budget is raised for schemathesis's `ignored_auth` probes (see
# the example's docs); everything else is the appliance's default.
"$target/debug/examples/api-server" "$work/appliance" --auth-failures 1000000 >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 150); do
  [ -s "$work/appliance/api.url" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.2
done
[ -s "$work/appliance/api.url" ] || { echo "schemathesis: the server did not start"; cat "$work/server.log"; exit 1; }
url="$(cat "$work/appliance/api.url")"
token="$(cat "$work/appliance/admin.token")"

seed_args=(--seed "$seed")
[ "$seed" = random ] && seed_args=()
report="$target/schemathesis-report"
rm -rf "$report"
config="$PWD/mgmt-api/tests/schemathesis.toml"
# schemathesis keeps a cache (for `st replay`) in its working directory: the
# target dir's, not the checkout.
rundir="$target/schemathesis-run"
mkdir -p "$rundir"
echo "schemathesis $ST_VERSION against $url/api/v1/openapi.json (max ${max_examples} examples per operation, ${limit} s at most)"
status=0
(cd "$rundir" && timeout --kill-after=10 "$limit" "$venv/bin/st" --config-file "$config" \
  run "$url/api/v1/openapi.json" \
  --tls-verify "$work/appliance/api-cert.pem" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --exclude-path /api/v1/flows/follow \
  --max-examples "$max_examples" \
  "${seed_args[@]}" \
  --generation-database none \
  --request-timeout 20 \
  --no-color \
  --report junit --report-dir "$report") || status=$?
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
  echo "schemathesis: no result within ${limit} s"
fi
if [ "$status" != 0 ]; then
  echo "schemathesis: failed (exit $status); the server's log:"
  tail -n 40 "$work/server.log"
fi
exit "$status"
