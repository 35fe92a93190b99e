#!/usr/bin/env bash
# images/boot-test.sh: boot the appliance image under qemu (software
# emulation, no KVM) with a NoCloud seed and check it comes up configured
# and forwards.
#
#   images/boot-test.sh [--uefi] [--bad-config | --run-fails | --ovf-env | --no-traffic]
#                       [--ctl PATH] [--timeout SECONDS] [--keep-disk PATH]
#                       [--upgraded FINGERPRINT] [IMAGE.qcow2]
#
# The VM gets three virtio NICs, in an order that differs from the roles so
# that only matching by MAC gets them right: data B, management, data A. The
# management NIC is qemu user-mode networking with the API port forwarded to
# a free port on 127.0.0.1. The data NICs are tap devices, each moved into a
# network namespace of its own (bh-btPID-wa, bh-btPID-wb) where it is a
# workload's NIC: two workloads on one IPv4 subnet (10.254.19.0/24), one on
# each side of the appliance. The seed (a FAT image labelled cidata, made
# with mkfs.vfat + mcopy) carries a `bulkhead:` day-0 config with the NICs by
# MAC, an admin token's SHA-256 and a policy that knows neither workload.
#
# Passes when, within the timeout (default 420 s a boot): GET /api/v1/health
# answers 200 over HTTPS; the day-0 admin token is accepted (GET
# /api/v1/tokens) and a wrong one refused; the serial console shows the
# status line with the fingerprint the API presents and the dataplane line;
# then, with `bulkhead ctl` (--ctl PATH, env BULKHEAD_CTL, default
# target/debug/bulkhead) pinned to that fingerprint: TCP 5432 between the
# workloads is denied under the day-0 policy; a pushed policy (workload A
# `web`, B `db`, web -> db postgresql allowed, enforce) lets it across and
# still denies 5433 (a listener there too); a long-lived connection sending a
# line a second stops within seconds of `ctl quarantine add` of workload A's
# MAC and resumes after `ctl quarantine release`. Then, after an ACPI
# power-off and a second boot, the API presents the same certificate, the
# day-0 token still works, the policy versions are unchanged and TCP 5432
# crosses again (the pushed policy is the store's live version). On failure
# it prints the serial log (and the dataplane counters, once the API is up)
# and exits non-zero. The image is not modified (the VM writes to a qcow2
# overlay); the namespaces and taps are removed on exit. The traffic test
# needs root; --no-traffic keeps the data NICs on isolated user-mode
# segments and checks the rest.
#
# --bad-config: the day-0 data has an unknown key, a data port MAC no NIC
# has and a policy that does not compile; passes when the serial console
# lists all three problems, says bulkhead is not running, and shows the
# management NIC with its DHCP address (it comes up regardless), and the
# API's port answers GET /api/v1/health with 503 "misconfigured" listing
# the three problems (maintenance mode), every other path with 503.
#
# --run-fails: good day-0 data, but a bootcmd leaves a records store that is
# not a database, so `bulkhead run` fails at start; passes when, once
# systemd has given up on it, the health answers 503 "misconfigured" with
# bulkhead's error (bulkhead-maintenance@run-failed) and the console's
# status line says NOT HEALTHY. (Both checks: boot-test-maintenance.sh.)
#
# --ovf-env: no cidata seed; a CD-ROM with an OVF environment (ovf-env.xml
# on an ISO 9660 labelled "OVF ENV", as vSphere's ISO transport attaches it)
# whose properties give the NICs' MACs and the admin token's hash; passes
# when the API answers with that token and the console shows the OVF source.
#
# --keep-disk PATH: at the end, power the VM off and keep its disk as a
# standalone qcow2 at PATH (the old disk of an upgrade test). --upgraded FP:
# IMAGE is such a disk upgraded by images/upgrade-disk.sh; passes when the
# API presents the certificate FP, the pushed policy is still the live
# version and TCP 5432 crosses with no push (then the traffic test goes on).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=images/boot-test-maintenance.sh
. "$here/boot-test-maintenance.sh"
# shellcheck source=images/boot-test-net.sh
. "$here/boot-test-net.sh"
die() {
  printf 'images/boot-test.sh: %s\n' "$*" >&2
  exit 1
}

uefi=0
mode=traffic
timeout_s=420
image=""
ctl="${BULKHEAD_CTL:-$repo/target/debug/bulkhead}"
keep_disk=""
upgraded=""
while [ $# -gt 0 ]; do
  case "$1" in
    --uefi) uefi=1; shift ;;
    --bad-config) mode=bad; shift ;;
    --ovf-env) mode=ovf; shift ;;
    --no-traffic) mode=plain; shift ;;
    --run-fails) mode=runfail; shift ;;
    --ctl) ctl="${2:?--ctl needs the path of a bulkhead binary}"; shift 2 ;;
    --keep-disk) keep_disk="${2:?--keep-disk needs a path}"; shift 2 ;;
    --upgraded) upgraded="${2:?--upgraded needs the old certificate fingerprint}"; shift 2 ;;
    --timeout) timeout_s="${2:?--timeout needs seconds}"; shift 2 ;;
    -h | --help) awk 'NR > 1 && /^set -euo/ { exit } NR > 1' "$0"; exit 0 ;;
    -*) die "unknown option: $1 (see --help)" ;;
    *) image="$1"; shift ;;
  esac
done
if [ -z "$image" ]; then
  image="$(find "$here/out" -maxdepth 1 -name 'bulkhead-*.qcow2' 2>/dev/null | sort -V | tail -1)"
  [ -n "$image" ] || die "no image: run images/build.sh first, or pass IMAGE.qcow2"
fi
[ -f "$image" ] || die "$image: no such file"
[ -z "$upgraded" ] || [ "$mode" = traffic ] || die "--upgraded goes with the traffic test"
if [ "$mode" = traffic ]; then
  [ "$(id -u)" = 0 ] || die "the traffic test needs root (network namespaces and tap devices): run it as root, or pass --no-traffic"
  [ -x "$ctl" ] || die "no bulkhead binary for \`bulkhead ctl\` at $ctl: build it (cargo build -p bulkhead) or pass --ctl PATH (or --no-traffic)"
  [ -e /dev/net/tun ] || die "no /dev/net/tun: the traffic test needs tap devices (or pass --no-traffic)"
fi

need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)
command -v mkfs.vfat >/dev/null 2>&1 || need+=(dosfstools)
command -v mcopy >/dev/null 2>&1 || need+=(mtools)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ "$mode" = traffic ]; then command -v ip >/dev/null 2>&1 || need+=(iproute2); fi
if [ "$mode" = ovf ]; then command -v xorriso >/dev/null 2>&1 || need+=(xorriso); fi
if [ "$uefi" = 1 ] && [ ! -f /usr/share/OVMF/OVMF_CODE_4M.fd ]; then need+=(ovmf); fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "missing ${need[*]}: install them (apt-get install ${need[*]}; qemu-system-x86 and qemu-utils from one suite)"
  fi
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The two workloads (traffic test): a namespace each, whose NIC is a tap
# device qemu holds the other end of. Names carry this script's PID so that
# neither concurrent runs nor the namespace tests (bh-lab-*, bh-live-*, ...)
# clash; what a killed run left behind is removed at the next start.
id="$$"
ns_a="bh-bt$id-wa"
ns_b="bh-bt$id-wb"
tap_a="bhbt${id}a"
tap_b="bhbt${id}b"
wl_mac_a=02:b4:19:00:00:0a
wl_mac_b=02:b4:19:00:00:0b
wl_ip_a=10.254.19.1
wl_ip_b=10.254.19.2
probe="$here/boot-test-probe.py"
if [ "$mode" = traffic ]; then reap_stale_workloads; fi

work="$(mktemp -d "${TMPDIR:-/tmp}/bulkhead-boot-test.XXXXXX")"
qemu_pid=""
helpers=()
cleanup() {
  local p
  for p in "${helpers[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
  fi
  if [ "$mode" = traffic ]; then remove_workloads; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

serial="$work/serial.log"
api_up=0
fail() {
  printf '\nimages/boot-test.sh: FAILED: %s\n' "$*" >&2
  if [ -s "$serial" ]; then
    printf '\n---- serial console (%s) ----\n' "$serial" >&2
    tr -d '\r' <"$serial" >&2
    printf -- '---- end of serial console ----\n' >&2
  else
    printf '(the serial console printed nothing)\n' >&2
  fi
  if [ "$api_up" = 1 ]; then
    printf '\n---- bulkhead ctl stats ----\n' >&2
    ctlc stats >&2 2>&1 || true
    printf -- '---- bulkhead ctl quarantine list ----\n' >&2
    ctlc quarantine list >&2 2>&1 || true
    printf -- '----\n' >&2
  fi
  exit 1
}

mac_mgmt=52:54:00:b4:00:01
mac_a=52:54:00:b4:00:0a
mac_b=52:54:00:b4:00:0b
token="bh_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
[ ${#token} = 46 ] || die "made a token of ${#token} characters, expected 46"
token_sha="$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)"

# The day-0 data. Its policy knows neither workload of the traffic test, so
# that what crosses later is the pushed policy's doing.
cat >"$work/meta-data" <<EOT
instance-id: bulkhead-boot-test-$$
local-hostname: bulkhead-test
EOT
cat >"$work/user-data" <<EOT
#cloud-config
bulkhead:
  management:
    mac: "$mac_mgmt"
    address: dhcp
    api_port: 8443
  ports:
    a: "$mac_a"
    b: "$mac_b"
    fail_mode: closed
  admin_token_sha256: "$token_sha"
  policy: |
    default_mode: enforce
    workloads:
      - { mac: "02:00:00:00:01:01", name: web-1, labels: { app: web } }
      - { mac: "02:00:00:00:02:01", name: db-1, labels: { app: db } }
    groups:
      - { name: web, mode: enforce, match: { app: web } }
      - { name: db, mode: enforce, match: { app: db } }
    rules:
      - { id: 10, src: [web], dst: [db], services: [postgresql], action: allow }
EOT
if [ "$mode" = runfail ]; then
  # Before bulkhead-config (cloud-init's network stage runs bootcmd): a
  # records store that is not a database, so bulkhead run fails at start.
  cat >>"$work/user-data" <<'EOT'
bootcmd:
  - [sh, -c, "mkdir -p /var/lib/bulkhead && head -c 4096 /dev/urandom > /var/lib/bulkhead/records.db"]
EOT
fi
if [ "$mode" = bad ]; then
  cat >"$work/user-data" <<EOT
#cloud-config
bulkhead:
  management:
    mac: "$mac_mgmt"
  ports:
    a: "$mac_a"
    b: "52:54:00:b4:00:99"
  bogus: 1
  policy: |
    default_mode: enforce
    rules:
      - { id: 10, src: [any], dst: [any], services: [smbb], action: allow }
EOT
fi
seed_drive=()
if [ "$mode" = ovf ]; then
  # vSphere's ISO transport: an ISO 9660 labelled "OVF ENV" holding
  # ovf-env.xml, on the VM's CD-ROM. The properties are those of
  # images/ova.sh's ProductSection; the NICs are given by MAC.
  mkdir -p "$work/ovfenv"
  python3 "$here/ovfenv.py" \
    --adapter "$mac_mgmt=mgmt-pg" --adapter "$mac_a=seg-a-pg" --adapter "$mac_b=seg-b-pg" \
    bulkhead.management.mac="$mac_mgmt" bulkhead.management.address=dhcp \
    bulkhead.management.gateway= bulkhead.management.dns= bulkhead.management.api_port=8443 \
    bulkhead.ports.a="$mac_a" bulkhead.ports.b="$mac_b" bulkhead.ports.fail_mode=open \
    bulkhead.admin_token_sha256="$token_sha" \
    bulkhead.policy_base64="$(printf 'default_mode: learn\n' | base64 -w0)" \
    bulkhead.api_cert_base64= bulkhead.api_key_base64= >"$work/ovfenv/ovf-env.xml"
  xorriso -as mkisofs -quiet -V "OVF ENV" -J -r -o "$work/ovf-env.iso" "$work/ovfenv/ovf-env.xml" >/dev/null 2>&1 ||
    die "xorriso could not make the OVF environment ISO"
  seed_drive=(-drive "file=$work/ovf-env.iso,if=ide,media=cdrom,readonly=on")
else
  # The NoCloud seed: meta-data + user-data on a FAT image labelled cidata.
  mkfs.vfat -C -n CIDATA "$work/seed.img" 2048 >/dev/null
  MTOOLS_SKIP_CHECK=1 mcopy -i "$work/seed.img" "$work/meta-data" "$work/user-data" ::/
  seed_drive=(-drive "file=$work/seed.img,if=virtio,format=raw,readonly=on")
fi

disk="$work/disk.qcow2"
qemu-img create -q -f qcow2 -b "$(readlink -f "$image")" -F qcow2 "$disk" 4G

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
firmware=()
if [ "$uefi" = 1 ]; then
  cp /usr/share/OVMF/OVMF_VARS_4M.fd "$work/vars.fd"
  firmware=(
    -drive "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"
    -drive "if=pflash,format=raw,unit=1,file=$work/vars.fd"
  )
fi

if [ "$mode" = traffic ]; then
  make_namespaces
  net_b=(-netdev "tap,id=datab,ifname=$tap_b,script=no,downscript=no")
  net_a=(-netdev "tap,id=dataa,ifname=$tap_a,script=no,downscript=no")
else
  net_b=(-netdev "user,id=datab,restrict=on")
  net_a=(-netdev "user,id=dataa,restrict=on")
fi


boot_mode="$([ "$uefi" = 1 ] && echo UEFI || echo BIOS)"
start_vm() { # start_vm SERIAL_LOG: boots the overlay in the background
  serial="$1"
  rm -f "$work/qmp.sock"
  [ "$mode" != traffic ] || make_taps
  # -cpu max,-cx16: under qemu 7.2's TCG, kernel 6.12's SLUB fast path
  # (cmpxchg16b on a per-CPU address) double-faults while unpacking the
  # initramfs; without CX16 the kernel takes its other path. -smp 1: with two
  # vCPUs (multi-threaded TCG) the kernel's live code patching sometimes hits
  # its own int3 (an oops in sched_clock_cpu, 1 of 6 boots here). KVM is
  # unaffected by either.
  nice -n 19 qemu-system-x86_64 \
    -machine q35 -accel tcg -cpu max,-cx16 -smp 1 -m 1024 \
    "${firmware[@]}" \
    -drive "file=$disk,if=virtio,format=qcow2" \
    "${seed_drive[@]}" \
    "${net_b[@]}" -device "virtio-net-pci,netdev=datab,mac=$mac_b" \
    -netdev "user,id=mgmt,hostfwd=tcp:127.0.0.1:$port-:8443" -device "virtio-net-pci,netdev=mgmt,mac=$mac_mgmt" \
    "${net_a[@]}" -device "virtio-net-pci,netdev=dataa,mac=$mac_a" \
    -display none -monitor none -serial "file:$serial" -no-reboot \
    -qmp "unix:$work/qmp.sock,server=on,wait=off" \
    >"$work/qemu.log" 2>&1 &
  qemu_pid=$!
  started=$SECONDS
  [ "$mode" != traffic ] || attach_taps
}

stop_vm() { # ACPI power button through QMP; the guest shuts down, qemu exits (-no-reboot)
  python3 - "$work/qmp.sock" <<'EOT' || fail "could not send system_powerdown to qemu"
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
for cmd in ("qmp_capabilities", "system_powerdown"):
    f.write(json.dumps({"execute": cmd}) + "\n")
    f.flush()
    while "return" not in json.loads(f.readline()):
        pass
EOT
  local deadline=$((SECONDS + 120))
  while kill -0 "$qemu_pid" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the appliance did not power off within 120 s of the ACPI power button"
    sleep 1
  done
  wait "$qemu_pid" 2>/dev/null || true
  qemu_pid=""
  api_up=0
  [ "$mode" != traffic ] || drop_taps
}

url="https://127.0.0.1:$port"
# Not `grep -q`: it exits at the first match, tr then dies of SIGPIPE and,
# under pipefail, a console that has the line would be reported without it.
console_has() { [ -f "$serial" ] && tr -d '\r' <"$serial" | grep -- "$1" >/dev/null; }

wait_health() { # sets healthy to the seconds from start to GET /api/v1/health = 200
  healthy=""
  local code=""
  while [ $((SECONDS - started)) -lt "$timeout_s" ]; do
    if ! kill -0 "$qemu_pid" 2>/dev/null; then
      cat "$work/qemu.log" >&2 || true
      qemu_pid=""
      fail "qemu exited after $((SECONDS - started)) s"
    fi
    if code="$(curl -ks -o "$work/health.json" -w '%{http_code}' --max-time 5 "$url/api/v1/health")" && [ "$code" = 200 ]; then
      healthy=$((SECONDS - started))
      return 0
    fi
    ! console_has 'NOT RUNNING' || { sleep 5; fail "the console says bulkhead is not running"; }
    sleep 2
  done
  fail "no healthy answer from $url/api/v1/health within $timeout_s s (last HTTP status: ${code:-none})"
}

api() { # api PATH OUTFILE: GET with the day-0 token, prints the HTTP status
  curl -ks -o "$2" -w '%{http_code}' --max-time 10 -H "Authorization: Bearer $token" "$url$1" || true
}

cert_fp() { # the SHA-256 fingerprint of the certificate the API presents
  openssl s_client -connect "127.0.0.1:$port" </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256 | sed 's/.*=//'
}

ctlc() { # bulkhead ctl against the appliance, pinned to its certificate
  "$ctl" ctl --ctl-config "$work/ctl.toml" "$@"
}

wait_across() { # wait_across SECONDS WHAT: until tcp/5432 gets from workload A to B, else fail with WHAT
  local deadline=$((SECONDS + $1)) got=""
  until got="$(connect 5432 5)" && [ "$got" = ok ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$2 (last: $got)"
    sleep 1
  done
}

wait_console() { # wait_console REGEX SECONDS WHAT
  local deadline=$((SECONDS + $2))
  until [ -f "$serial" ] && console_has "$1"; do
    kill -0 "$qemu_pid" 2>/dev/null || { qemu_pid=""; fail "qemu exited after $((SECONDS - started)) s"; }
    [ "$SECONDS" -lt "$deadline" ] || fail "the serial console shows no $3 within $2 s"
    sleep 2
  done
}

echo "booting $image ($boot_mode, TCG) with API on $url"
start_vm "$work/serial.log"

if [ "$mode" = bad ]; then
  check_bad_config
  exit 0
fi
if [ "$mode" = runfail ]; then
  check_run_failed
  exit 0
fi

wait_health
first_boot=$healthy
echo "health 200 after $healthy s: $(cat "$work/health.json")"

code="$(api /api/v1/tokens "$work/tokens.json")"
[ "$code" = 200 ] || fail "the day-0 admin token was not accepted: GET /api/v1/tokens answered ${code:-nothing}: $(cat "$work/tokens.json" 2>/dev/null)"
grep -q '"day0-admin"' "$work/tokens.json" || fail "GET /api/v1/tokens does not list day0-admin: $(cat "$work/tokens.json")"
wrong="bh_$(printf 'x%.0s' $(seq 43))"
code="$(curl -ks -o /dev/null -w '%{http_code}' --max-time 10 -H "Authorization: Bearer $wrong" "$url/api/v1/tokens")" || true
[ "$code" = 401 ] || fail "a wrong token got HTTP ${code:-nothing}, expected 401"
echo "day-0 admin token accepted (day0-admin listed), a wrong one refused (401)"

# The status line: written once the health answers; give it a bounded while.
fp="$(cert_fp)"
[ -n "$fp" ] || fail "could not read the API's certificate"
printf 'url = "%s"\ntoken = "%s"\nfingerprint = "%s"\n' "$url" "$token" "$fp" >"$work/ctl.toml"
api_up=1
wait_console '^bulkhead: health ' 60 "status line (bulkhead: health ...)"
console_has "^bulkhead: certificate SHA-256 $fp\$" ||
  fail "the status line does not show the certificate's fingerprint $fp"
console_has "^bulkhead: health ok " || fail "the status line does not say health ok"
wait_console '^bulkhead: \(forwarding\|NOT FORWARDING\)' 90 "dataplane line (bulkhead: forwarding ...)"
console_has '^bulkhead: forwarding ' || fail "the status line says bulkhead is not forwarding"
echo "serial console status line:"
tr -d '\r' <"$serial" | grep -E '^bulkhead( [0-9][^:]*)?: (API|certificate|health|forwarding)' | tail -4 | sed 's/^/  /'
console_has 'bulkhead-config: management' || fail "the serial console shows no bulkhead-config line"
tr -d '\r' <"$serial" | grep -E 'bulkhead-config: (management|day-0 data)' | tail -2 | sed 's/^/  /'

if [ "$mode" = ovf ]; then
  console_has 'bulkhead-config: day-0 data from the OVF environment (ISO' ||
    fail "the console does not say the day-0 data came from the OVF environment's ISO"
  console_has "bulkhead-config: management enp0s3 ($mac_mgmt, dhcp), data A enp0s4 ($mac_a), data B enp0s2 ($mac_b), fail-open" ||
    fail "the NICs or the fail mode are not those of the OVF properties"
  code="$(api /api/v1/policy/versions/1 "$work/v1.json")"
  [ "$code" = 200 ] || fail "GET /api/v1/policy/versions/1 answered ${code:-nothing}"
  python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1])).get("default_mode") != "learn")' "$work/v1.json" ||
    fail "policy version 1 is not the OVF property's (default_mode: learn): $(cat "$work/v1.json")"
  echo "PASS: OVF environment (ISO transport): health $first_boot s, the NICs by the properties' MACs, fail-open, the admin token hash and the base64 policy from the properties ($boot_mode, TCG)"
  exit 0
fi

forwarded=""
if [ "$mode" = traffic ]; then
  connect() { # connect PORT TIMEOUT: the probe's answer (ok, blocked: ..., refused)
    ip netns exec "$ns_a" python3 "$probe" connect "$wl_ip_b" "$1" --timeout "$2" || true
  }
  # Straight from `ip netns exec`, which execs the probe: $! is its PID.
  ip netns exec "$ns_b" python3 "$probe" listen 5432 5433 >"$work/listen.log" 2>&1 &
  helpers+=("$!")
fi
if [ "$mode" = traffic ] && [ -n "$upgraded" ]; then
  # An upgraded disk: the old appliance's certificate, and its pushed policy
  # still live (the day-0 policy is not committed over a store's versions).
  [ "$fp" = "$upgraded" ] || fail "the upgraded appliance presents certificate $fp, not the old one ($upgraded)"
  code="$(api /api/v1/policy/versions "$work/versions0.json")"
  [ "$code" = 200 ] || fail "GET /api/v1/policy/versions answered ${code:-nothing}"
  python3 - "$work/versions0.json" <<'EOT' || fail "the old appliance's pushed policy is not the live version: $(cat "$work/versions0.json")"
import json, sys
v = json.load(open(sys.argv[1]))
v = v.get("versions", v) if isinstance(v, dict) else v
live = [x for x in v if x.get("live")] or v[-1:]
sys.exit(not (len(v) >= 2 and "boot test" in json.dumps(live)))
EOT
  echo "upgraded disk: the old certificate, $(python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); print(len(v.get("versions", v) if isinstance(v, dict) else v))' "$work/versions0.json") policy versions, the pushed one live"
elif [ "$mode" = traffic ]; then
  got="$(connect 5432 5)"
  [[ "$got" == blocked:* ]] || fail "before the policy push, TCP 5432 between the workloads (neither in the day-0 policy) was not blocked: $got"
  echo "day-0 policy: $wl_ip_a -> $wl_ip_b tcp/5432 blocked ($got)"

  cat >"$work/policy.yaml" <<EOT
# The boot test's policy: workload A web, B db, web -> db PostgreSQL.
default_mode: enforce
workloads:
  - { mac: "$wl_mac_a", name: wl-a, labels: { app: web } }
  - { mac: "$wl_mac_b", name: wl-b, labels: { app: db } }
groups:
  - { name: web, mode: enforce, match: { app: web } }
  - { name: db, mode: enforce, match: { app: db } }
rules:
  - { id: 10, src: [web], dst: [db], services: [postgresql], action: allow }
EOT
  pushed=$SECONDS
  ctlc policy put "$work/policy.yaml" >"$work/put.out" 2>&1 || fail "ctl policy put failed: $(cat "$work/put.out")"
  ctlc policy commit -m "boot test: web -> db postgresql" >"$work/commit.out" 2>&1 ||
    fail "ctl policy commit failed: $(cat "$work/commit.out")"
  echo "policy pushed with bulkhead ctl (put + commit, $((SECONDS - pushed)) s): $(tr '\n' ' ' <"$work/commit.out")"
fi
if [ "$mode" = traffic ]; then
  wait_across 90 "TCP 5432 from workload A to B did not get across within 90 s of the policy push"
  forwarded=$((SECONDS - started))
  if [ -n "$upgraded" ]; then
    echo "allowed: $wl_ip_a -> $wl_ip_b tcp/5432 across the appliance under the old store's policy ($forwarded s after power-on)"
  else
    echo "allowed: $wl_ip_a -> $wl_ip_b tcp/5432 across the appliance ($((SECONDS - pushed)) s after the push, $forwarded s after power-on)"
  fi
  got="$(connect 5433 5)"
  [[ "$got" == blocked:* ]] || fail "TCP 5433 (not allowed, a listener there) got through: $got"
  echo "denied: $wl_ip_a -> $wl_ip_b tcp/5433 ($got)"

  # Quarantine workload A mid-stream: the stream stalls; release: it resumes.
  echoes() { grep -c '^[0-9]' "$work/stream.log" 2>/dev/null || true; }
  last_echo() { awk '$1 ~ /^[0-9]+$/ { t = $2 } END { printf "%.3f\n", t }' "$work/stream.log"; }
  : >"$work/stream.log"
  ip netns exec "$ns_a" python3 "$probe" stream "$wl_ip_b" 5432 --log "$work/stream.log" >"$work/stream.out" 2>&1 &
  helpers+=("$!")
  deadline=$((SECONDS + 30))
  until [ "$(echoes)" -ge 3 ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the long-lived stream did not get 3 echoes in 30 s: $(cat "$work/stream.out" "$work/stream.log")"
    sleep 0.5
  done
  t_cmd="$(date +%s.%N)"
  ctlc quarantine add "$wl_mac_a" --reason "boot test" >"$work/q.out" 2>&1 || fail "ctl quarantine add failed: $(cat "$work/q.out")"
  tq="$(date +%s.%N)"
  n_q="$(echoes)"
  sleep 8
  # The last echo relative to the command's return (negative: before it).
  stall="$(awk -v l="$(last_echo)" -v q="$tq" 'BEGIN { printf "%+.1f", l - q }')"
  awk -v s="$stall" 'BEGIN { exit !(s <= 3) }' ||
    fail "the stream did not stop within 3 s of the quarantine (last echo $stall s after it; $(echoes) echoes, $n_q at the quarantine)"
  silent="$(awk -v l="$(last_echo)" -v n="$(date +%s.%N)" 'BEGIN { printf "%.1f", n - l }')"
  took="$(awk -v a="$t_cmd" -v b="$tq" 'BEGIN { printf "%.1f", b - a }')"
  ctlc quarantine list >"$work/qlist.out" 2>&1 || true
  grep -q "$wl_mac_a" "$work/qlist.out" || fail "ctl quarantine list does not show $wl_mac_a: $(cat "$work/qlist.out")"
  echo "quarantine $wl_mac_a (ctl quarantine add, $took s): the stream's last echo ${stall} s from the command's return, then silent for ${silent} s"
  ctlc quarantine release "$wl_mac_a" >"$work/r.out" 2>&1 || fail "ctl quarantine release failed: $(cat "$work/r.out")"
  tr_="$(date +%s.%N)"
  n_r="$(echoes)"
  deadline=$((SECONDS + 60))
  until [ "$(echoes)" -gt "$n_r" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the stream did not resume within 60 s of the release: $(tail -3 "$work/stream.log")"
    sleep 0.5
  done
  resumed="$(awk -v l="$(last_echo)" -v r="$tr_" 'BEGIN { printf "%.1f", l - r }')"
  grep -q '^closed' "$work/stream.log" && fail "the stream's connection was closed"
  echo "release (ctl quarantine release): the same connection resumed ${resumed} s later"
  kill "${helpers[-1]}" 2>/dev/null || true
fi

# A reboot keeps the configuration and the stores: the same certificate,
# the token still valid, and the same policy versions (the day-0 policy is
# not committed again over the store's live version).
code="$(api /api/v1/policy/versions "$work/versions1.json")"
[ "$code" = 200 ] || fail "GET /api/v1/policy/versions answered ${code:-nothing}"
stop_vm
echo "powered off (ACPI); booting again"
start_vm "$work/serial2.log"
wait_health
echo "health 200 after $healthy s on the second boot"
api_up=1
fp2="$(cert_fp)"
[ "$fp2" = "$fp" ] || fail "the API's certificate changed across the reboot ($fp -> ${fp2:-none})"
code="$(api /api/v1/policy/versions "$work/versions2.json")"
[ "$code" = 200 ] || fail "the day-0 token is not accepted after the reboot (GET /api/v1/policy/versions: ${code:-nothing})"
cmp -s "$work/versions1.json" "$work/versions2.json" ||
  fail "the policy versions changed across the reboot: $(cat "$work/versions1.json") -> $(cat "$work/versions2.json")"
echo "after the reboot: the same certificate, the day-0 token accepted, the same policy versions"
forwarded2=""
if [ "$mode" = traffic ]; then
  wait_across 120 "after the reboot, TCP 5432 (allowed by the pushed policy) did not get across within 120 s"
  forwarded2=$((SECONDS - started))
  echo "after the reboot: tcp/5432 across again under the pushed policy ($forwarded2 s after power-on)"
  summary="PASS: boot to health $first_boot s, to forwarding $forwarded s$([ -n "$upgraded" ] || echo ' (after the policy push)'); reboot to health $healthy s, to forwarding $forwarded2 s ($boot_mode, TCG); allowed, denied, quarantine cut and release checked"
  [ -z "$upgraded" ] || summary="$summary; upgraded disk: the old certificate and policy"
else
  summary="PASS: boot to health $first_boot s, reboot to health $healthy s ($boot_mode, TCG; no traffic test)"
fi
if [ -n "$keep_disk" ]; then
  stop_vm
  qemu-img convert -O qcow2 "$disk" "$keep_disk"
  echo "the VM's disk kept at $keep_disk (certificate $fp)"
fi
echo "$summary"
