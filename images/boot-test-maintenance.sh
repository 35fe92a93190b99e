# shellcheck shell=bash disable=SC2154
# Sourced by images/boot-test.sh: the checks of the boots where bulkhead
# cannot run and maintenance mode answers the API's health instead
# (--bad-config, --run-fails). Uses boot-test.sh's url, work, serial, token,
# started, boot_mode, fail, wait_console and console_has.

# maintenance_health SECONDS WANT...: waits for GET /api/v1/health = 503 with
# status "misconfigured" and problems containing every WANT; then checks
# that another path answers 503 too, token or not.
maintenance_health() {
  local wait_s="$1" code="" deadline
  shift
  deadline=$((SECONDS + wait_s))
  until code="$(curl -ks --max-time 5 -o "$work/health.json" -w '%{http_code}' "$url/api/v1/health")" && [ "$code" = 503 ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "no 503 from $url/api/v1/health within $wait_s s (last HTTP status: ${code:-none})"
    sleep 2
  done
  python3 - "$work/health.json" "$@" <<'PY' || fail "the health does not report the problems: $(cat "$work/health.json")"
import json, sys
h = json.load(open(sys.argv[1]))
assert h["status"] == "misconfigured", h
said = "\n".join(h["problems"])
for want in sys.argv[2:]:
    assert want in said, (want, said)
PY
  code="$(curl -ks --max-time 5 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$url/api/v1/workloads")"
  [ "$code" = 503 ] || fail "GET /api/v1/workloads in maintenance mode answered ${code:-nothing}, not 503"
  echo "the health over HTTPS: $(cat "$work/health.json")"
}

# The day-0 data has an unknown key, a data port MAC no NIC has and a policy
# that does not compile: the console lists all three and the management
# NIC's DHCP address, the health lists all three.
check_bad_config() {
  local log want
  wait_console '^bulkhead: management enp0s3: ' "$timeout_s" "configuration error status"
  log="$(tr -d '\r' <"$serial")"
  for want in 'NOT RUNNING, configuration error' \
    'bulkhead.bogus: unknown key' \
    'bulkhead.ports.b: no NIC has MAC 52:54:00:b4:00:99' \
    'bulkhead.policy: .*smbb' \
    'bulkhead: management enp0s3: 10\.0\.2\.15$'; do
    grep -q -- "$want" <<<"$log" || fail "the serial console does not show: $want"
  done
  maintenance_health 120 "bulkhead.bogus: unknown key" \
    "bulkhead.ports.b: no NIC has MAC 52:54:00:b4:00:99" "smbb"
  echo "the configuration error on the serial console:"
  grep -A8 'NOT RUNNING, configuration error' <<<"$log" | sed 's/^/  /'
  echo "PASS: bad day-0 configuration reported on the console and by GET /api/v1/health (503 misconfigured) after $((SECONDS - started)) s ($boot_mode), management NIC up, bulkhead not started"
}

# The day-0 data is good but the records store is not a database (written
# by a bootcmd before bulkhead-config runs): bulkhead run fails at start,
# systemd gives up after 5 starts, OnFailure= starts maintenance mode with
# bulkhead's last error; the console's status line says NOT HEALTHY.
check_run_failed() {
  maintenance_health "$timeout_s" "bulkhead run failed repeatedly" "file is not a database"
  local failed_at=$((SECONDS - started))
  wait_console 'NOT HEALTHY' 240 "NOT HEALTHY status line"
  echo "the status line on the serial console:"
  tr -d '\r' <"$serial" | grep -A3 'NOT HEALTHY' | head -n 4 | sed 's/^/  /'
  echo "PASS: bulkhead run failing at start reported by GET /api/v1/health (503 misconfigured, its last error) after $failed_at s ($boot_mode), and on the console"
}
