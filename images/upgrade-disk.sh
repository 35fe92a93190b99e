#!/usr/bin/env bash
# images/upgrade-disk.sh: a new appliance image with an old appliance's
# state, for upgrading in place (docs/deploy.md, "Upgrading in place").
#
#   sudo images/upgrade-disk.sh --from OLD-DISK --image NEW-IMAGE --out OUT
#
# OLD-DISK is the disk of the appliance being upgraded, powered off (qcow2,
# raw or VMDK; an OpenStack snapshot of it, downloaded, will do); NEW-IMAGE
# is the new release's qcow2 or raw image. OUT (qcow2, or raw when it ends
# in .raw) is NEW-IMAGE grown to OLD-DISK's size, with OLD-DISK's
# /var/lib/bulkhead in it: the stores (policy versions, quarantines,
# learned workloads, tokens, audit, flow records) and the API's certificate
# and key. Neither input is changed. The configuration needs no copying: it
# is rendered on every boot from the day-0 data (user-data or OVF
# properties), which the VM keeps; boot OUT on the same VM (same NICs and
# MACs, same day-0 data) and bulkhead opens the old stores, migrating them
# if the new release's schema is newer.
#
# Runs as root: loop devices (losetup) and mounts of the two root file
# systems (the old one read-only). Needs qemu-img, sfdisk, e2fsprogs.
set -euo pipefail

die() {
  printf 'images/upgrade-disk.sh: %s\n' "$*" >&2
  exit 1
}

from=""
image=""
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --from) from="${2:?--from needs the disk of the old appliance}"; shift 2 ;;
    --image) image="${2:?--image needs the new image}"; shift 2 ;;
    --out) out="${2:?--out needs a path}"; shift 2 ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[ -f "$from" ] || die "--from: no disk at '$from'"
[ -f "$image" ] || die "--image: no image at '$image'"
[ -n "$out" ] || die "--out is needed (see --help)"
[ "$(id -u)" = 0 ] || die "runs as root (loop devices and mounts): sudo $0"
for tool in qemu-img sfdisk losetup e2fsck resize2fs; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (apt-get install qemu-utils fdisk mount e2fsprogs)"
done

work="$(mktemp -d "${TMPDIR:-/tmp}/bulkhead-upgrade.XXXXXX")"
loops=()
mounts=()
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[i]}" 2>/dev/null || true; done
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

root_loop() { # root_loop RAW WHAT [--read-only]: a loop device over RAW's partition named bulkhead-root
  local start size
  read -r start size < <(sfdisk -d "$1" 2>/dev/null |
    sed -n 's|.*start= *\([0-9]*\), size= *\([0-9]*\),.*name="bulkhead-root".*|\1 \2|p')
  [ -n "$start" ] || die "$2: no partition named bulkhead-root (not a bulkhead appliance disk?)"
  # An offset, not partition scanning: that needs the kernel's GPT support.
  losetup ${3:+"$3"} -f --show -o $((start * 512)) --sizelimit $((size * 512)) "$1"
}

echo "reading $from and $image"
qemu-img convert -O raw "$from" "$work/old.raw"
qemu-img convert -O raw "$image" "$work/new.raw"
old_size=$(stat -c %s "$work/old.raw")
new_size=$(stat -c %s "$work/new.raw")
if [ "$old_size" -gt "$new_size" ]; then
  # The new disk as large as the old one: the backup GPT to the new end, the
  # root partition (the last) over the rest.
  truncate -s "$old_size" "$work/new.raw"
  sfdisk --quiet --no-reread --no-tell-kernel --relocate gpt-bak-std "$work/new.raw" 2>/dev/null
  echo ', +' | sfdisk --quiet --no-reread --no-tell-kernel -N 2 "$work/new.raw" 2>/dev/null
  sfdisk --verify "$work/new.raw" >/dev/null || die "the grown partition table is not sound"
fi

old_root="$(root_loop "$work/old.raw" "$from" --read-only)"
loops+=("$old_root")
new_root="$(root_loop "$work/new.raw" "$image")"
loops+=("$new_root")
e2fsck -f -p "$new_root" >/dev/null || [ $? -le 1 ] || die "e2fsck of the new root file system failed"
resize2fs -p "$new_root" >/dev/null 2>&1 || die "resize2fs of the new root file system failed"

mkdir -p "$work/old" "$work/new"
mount -o ro,noload "$old_root" "$work/old"
mounts+=("$work/old")
mount "$new_root" "$work/new"
mounts+=("$work/new")
[ -d "$work/old/var/lib/bulkhead" ] || die "$from has no /var/lib/bulkhead (never booted?)"
old_release="$(sed -n 's/^BULKHEAD_VERSION=//p' "$work/old/etc/bulkhead-release" 2>/dev/null || echo unknown)"
new_release="$(sed -n 's/^BULKHEAD_VERSION=//p' "$work/new/etc/bulkhead-release" 2>/dev/null || echo unknown)"
rm -rf "$work/new/var/lib/bulkhead"
cp -a "$work/old/var/lib/bulkhead" "$work/new/var/lib/bulkhead"
echo "copied /var/lib/bulkhead ($(du -sh "$work/new/var/lib/bulkhead" | cut -f1)): $(find "$work/new/var/lib/bulkhead" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort | tr '\n' ' ')"
umount "$work/new"
umount "$work/old"
mounts=()

case "$out" in
  *.raw) mv "$work/new.raw" "$out" ;;
  *) qemu-img convert -c -O qcow2 -o compat=1.1 "$work/new.raw" "$out" ;;
esac
echo "$out: bulkhead $new_release with the state of $from (bulkhead $old_release), $((old_size > new_size ? old_size / 1048576 : new_size / 1048576)) MiB"
