#!/usr/bin/env bash
# images/build.sh: the bulkhead appliance image (docs/deploy.md).
#
#   sudo images/build.sh [--binary PATH] [--out DIR] [--version V] [--keep-work]
#
# From the release binary (built here unless --binary is given) and a clean
# checkout: a minimal Debian trixie system made by mmdebstrap in a
# directory, an ext4 root made by `mkfs.ext4 -d`, a FAT boot/EFI partition
# made by mkfs.vfat + mtools (syslinux for BIOS, a unified kernel image for
# UEFI), assembled into a GPT disk with sfdisk and dd: no loop devices, no
# mounts of the image. Writes
#
#   OUT/bulkhead-VERSION.raw     bare metal (dd to a disk), any hypervisor
#   OUT/bulkhead-VERSION.qcow2   OpenStack (cloud-init NoCloud / ConfigDrive)
#   OUT/bulkhead-VERSION.ova     VMware (images/ova.sh: OVF, vmxnet3, streamOptimized VMDK)
#   OUT/bulkhead-VERSION.packages, .sha256
#
# and prints the sizes and the build time. Runs as root; installs the Debian
# packages it needs with apt-get when they are missing.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"

die() {
  printf 'images/build.sh: %s\n' "$*" >&2
  exit 1
}
step() { printf '\n==> %s\n' "$*"; }

binary=""
out="$here/out"
version=""
keep_work=0
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --version) version="${2:?--version needs a value}"; shift 2 ;;
    --keep-work) keep_work=1; shift ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

[ "$(id -u)" = 0 ] || die "runs as root (mmdebstrap, file ownership in the image): sudo $0"
[ "$(uname -m)" = x86_64 ] || die "builds x86_64 images on x86_64 only (found $(uname -m))"

# The pinned inputs: the suite and its mirrors. SOURCE_DATE_EPOCH (default:
# the commit time of HEAD) fixes every timestamp, UUID and serial that the
# image carries, so the same binary, the same checkout and the same archive
# state give the same image.
suite=trixie
mirrors=(
  "deb http://deb.debian.org/debian $suite main"
  "deb http://deb.debian.org/debian $suite-updates main"
  "deb http://deb.debian.org/debian-security $suite-security main"
  "deb http://deb.debian.org/debian $suite-backports main"
)
# The kernel comes from backports: the verifiers of 6.1 (bookworm) and 6.12
# (bookworm-backports, trixie) refuse bulkhead's XDP program ("math between
# pkt pointer and register with unbounded min value", flow_key.h); the
# development machine's 6.18 and trixie-backports' 7.x load it.
kernel_pkg="linux-image-cloud-amd64/$suite-backports"
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH="$(git -C "$repo" log -1 --format=%ct 2>/dev/null)" ||
    die "SOURCE_DATE_EPOCH is not set and $repo is not a git checkout"
fi
export SOURCE_DATE_EPOCH

started=$SECONDS

step "build tools"
need=()
for pair in mmdebstrap:mmdebstrap mkfs.ext4:e2fsprogs sfdisk:fdisk mkfs.vfat:dosfstools \
  mcopy:mtools syslinux:syslinux qemu-img:qemu-utils objcopy:binutils python3:python3; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
[ -f /usr/lib/SYSLINUX/gptmbr.bin ] || need+=(syslinux)
[ -f /usr/lib/syslinux/modules/bios/ldlinux.c32 ] || need+=(syslinux-common)
[ -f /usr/lib/systemd/boot/efi/linuxx64.efi.stub ] || need+=(systemd-boot-efi)
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "missing ${need[*]} and no apt-get to install them"
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "mmdebstrap $(mmdebstrap --version | awk '{print $2}'), $(qemu-img --version | head -1), $(mkfs.ext4 -V 2>&1 | head -1)"

step "the bulkhead binary"
if [ -z "$binary" ]; then
  command -v cargo >/dev/null 2>&1 || die "no cargo to build bulkhead (or pass --binary PATH)"
  target_dir="${CARGO_TARGET_DIR:-$repo/target}"
  (cd "$repo" && nice -n 19 cargo build --release --locked -p bulkhead)
  binary="$target_dir/release/bulkhead"
fi
[ -x "$binary" ] || die "$binary: not an executable"
bin_version="$("$binary" --version)" || die "$binary --version failed"
[ -n "$version" ] || version="${bin_version#bulkhead }"
[[ "$version" =~ ^[A-Za-z0-9.+~-]+$ ]] || die "version $version: letters, digits and .+~- only"
echo "$binary: $bin_version (image version $version)"

work="$(mktemp -d "${TMPDIR:-/tmp}/bulkhead-image.XXXXXX")"
cleanup() {
  if [ "$keep_work" = 1 ]; then
    echo "work directory kept: $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
rootfs="$work/rootfs"

# Fixed identities (from SOURCE_DATE_EPOCH and the version): the same inputs
# give the same disk GUIDs, file system UUIDs and FAT serial.
ident() { # ident NAME -> a UUID derived from the inputs
  local h
  h="$(printf 'bulkhead-image %s %s %s' "$version" "$SOURCE_DATE_EPOCH" "$1" | sha256sum | cut -c1-32)"
  printf '%s-%s-4%s-a%s-%s\n' "${h:0:8}" "${h:8:4}" "${h:13:3}" "${h:17:3}" "${h:20:12}"
}
disk_guid="$(ident disk)"
boot_partuuid="$(ident boot-part)"
root_partuuid="$(ident root-part)"
root_uuid="$(ident root-fs)"
root_hash_seed="$(ident root-hash-seed)"
fat_serial="$(printf '%s' "$(ident fat)" | cut -c1-8)"

step "root file system (mmdebstrap, $suite)"
# open-vm-tools: vSphere's guestinfo transport of the OVF environment
# (vmware-rpctool), the guest's heartbeat, addresses and clean shutdown in
# vCenter; its services start on VMware only (ConditionVirtualization=vmware).
packages=(
  "$kernel_pkg" initramfs-tools systemd systemd-sysv udev dbus
  cloud-init cloud-guest-utils fdisk python3-yaml
  iproute2 ethtool kmod procps less ca-certificates zstd
  open-vm-tools
)
t0=$SECONDS
# The hooks are run by mmdebstrap with the root file system as $1.
# shellcheck disable=SC2016
nice -n 19 mmdebstrap \
  --variant=apt \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && printf "MODULES=most\nCOMPRESS=zstd\n" > "$1/etc/initramfs-tools/conf.d/bulkhead.conf"' \
  --customize-hook='chroot "$1" dpkg-query -W -f "\${Package} \${Version}\n" > "$1/.packages"' \
  "$suite" "$rootfs" "${mirrors[@]}" ||
  die "mmdebstrap failed (network to deb.debian.org? see above)"
debootstrap_s=$((SECONDS - t0))
echo "mmdebstrap: $debootstrap_s s"

step "appliance files"
install -D -m 0755 "$binary" "$rootfs/usr/bin/bulkhead"
objcopy --strip-debug "$rootfs/usr/bin/bulkhead"
cp -a --no-preserve=ownership "$here/rootfs/." "$rootfs/"
find "$rootfs/usr/lib/bulkhead" -name __pycache__ -prune -exec rm -rf {} + # a host's test run
install -D -m 0644 "$repo/docs/deploy.md" "$rootfs/usr/share/doc/bulkhead/deploy.md"
mkdir -p "$rootfs/etc/issue.d"
ln -sf /run/bulkhead/issue "$rootfs/etc/issue.d/bulkhead.issue"
printf 'bulkhead\n' >"$rootfs/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tbulkhead\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"
printf 'UUID=%s\t/\text4\tdefaults,errors=remount-ro\t0\t1\n' "$root_uuid" >"$rootfs/etc/fstab"
printf 'BULKHEAD_VERSION=%s\nBULKHEAD_BUILD_EPOCH=%s\n' "$version" "$SOURCE_DATE_EPOCH" >"$rootfs/etc/bulkhead-release"
# journald: persistent, bounded.
mkdir -p "$rootfs/etc/systemd/journald.conf.d" "$rootfs/var/log/journal"
printf '[Journal]\nStorage=persistent\nSystemMaxUse=256M\n' >"$rootfs/etc/systemd/journald.conf.d/bulkhead.conf"
systemctl --root="$rootfs" enable \
  systemd-networkd.service bulkhead-config.service bulkhead.service bulkhead-status.service \
  bulkhead-maintenance@config.service \
  serial-getty@ttyS0.service >/dev/null 2>&1 || die "systemctl enable failed in the image"
# Nothing waits for "network online": the management NIC is configured by
# bulkhead-config after cloud-init, and the status line waits for its address.
systemctl --root="$rootfs" mask systemd-networkd-wait-online.service >/dev/null 2>&1 ||
  die "systemctl mask failed in the image"
# A new machine-id on first boot (each appliance its own; the image none).
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
# Not in the image: apt's lists and caches, logs, the package list (moved out).
mv "$rootfs/.packages" "$work/packages"
rm -rf "$rootfs/var/lib/apt/lists/"* "$rootfs/var/cache/apt/"* "$rootfs/var/cache/debconf/"*-old \
  "$rootfs/var/log/"*.log "$rootfs/var/log/apt" "$rootfs/tmp/"* "$rootfs/root/.bash_history"
kernel="$(find "$rootfs/boot" -name "vmlinuz-*" | sort -V | tail -1)"
[ -n "$kernel" ] || die "no kernel in the root file system"
initrd="$rootfs/boot/initrd.img-${kernel##*/vmlinuz-}"
[ -f "$initrd" ] || die "no initramfs for $kernel"
# Every file at SOURCE_DATE_EPOCH at the latest.
find "$rootfs" -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch -h -d "@$SOURCE_DATE_EPOCH"

step "boot partition (FAT: syslinux for BIOS, a unified kernel image for UEFI)"
cmdline="root=PARTUUID=$root_partuuid rw console=tty0 console=ttyS0,115200n8 net.ifnames=1"
boot="$work/boot"
mkdir -p "$boot"
cp "$kernel" "$boot/vmlinuz"
cp "$initrd" "$boot/initrd.img"
cat >"$boot/syslinux.cfg" <<EOF
SERIAL 0 115200
DEFAULT bulkhead
PROMPT 0
TIMEOUT 0
LABEL bulkhead
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND $cmdline
EOF
# UEFI: the systemd stub with the kernel, initramfs and command line in one
# PE file, EFI/BOOT/BOOTX64.EFI (the removable-media path every firmware tries).
printf '%s' "$cmdline" >"$boot/cmdline.txt"
objcopy \
  --add-section .osrel="$rootfs/etc/os-release" --change-section-vma .osrel=0x20000 \
  --add-section .cmdline="$boot/cmdline.txt" --change-section-vma .cmdline=0x30000 \
  --add-section .linux="$boot/vmlinuz" --change-section-vma .linux=0x2000000 \
  --add-section .initrd="$boot/initrd.img" --change-section-vma .initrd=0x3000000 \
  /usr/lib/systemd/boot/efi/linuxx64.efi.stub "$boot/BOOTX64.EFI"
touch -d "@$SOURCE_DATE_EPOCH" "$boot"/*
boot_mb=$(( ( $(du -bc "$boot/vmlinuz" "$boot/initrd.img" "$boot/BOOTX64.EFI" | tail -1 | cut -f1) / 1048576 ) + 24 ))
fat="$work/boot.fat"
mkfs.vfat -C -n BULKHEAD -i "$fat_serial" "$fat" $((boot_mb * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
mmd -i "$fat" ::/syslinux ::/EFI ::/EFI/BOOT
mcopy -m -i "$fat" "$boot/vmlinuz" "$boot/initrd.img" ::/
mcopy -m -i "$fat" "$boot/syslinux.cfg" ::/syslinux/
mcopy -m -i "$fat" "$boot/BOOTX64.EFI" ::/EFI/BOOT/
syslinux --install --directory /syslinux "$fat"

step "root partition (mkfs.ext4 -d)"
root_mb=$(( $(du -sm "$rootfs" | cut -f1) * 13 / 10 + 128 ))
root_img="$work/root.ext4"
E2FSPROGS_FAKE_TIME="$SOURCE_DATE_EPOCH" mkfs.ext4 -q -F -L bulkhead-root -U "$root_uuid" \
  -E "hash_seed=$root_hash_seed,root_owner=0:0" -m 1 -d "$rootfs" "$root_img" "${root_mb}M"

step "GPT disk (sfdisk, dd)"
mkdir -p "$out"
raw="$out/bulkhead-$version.raw"
qcow2="$out/bulkhead-$version.qcow2"
rm -f "$raw" "$qcow2"
# 1 MiB before the first partition, 1 MiB after the last for the backup GPT.
boot_start=2048
boot_sectors=$((boot_mb * 2048))
root_start=$((boot_start + boot_sectors))
root_sectors=$((root_mb * 2048))
total_mb=$((1 + boot_mb + root_mb + 1))
truncate -s "${total_mb}M" "$raw"
sfdisk --quiet --no-reread --no-tell-kernel "$raw" <<EOF
label: gpt
label-id: $disk_guid
first-lba: 2048
start=$boot_start, size=$boot_sectors, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$boot_partuuid, name="bulkhead-boot", attrs="LegacyBIOSBootable"
start=$root_start, size=$root_sectors, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=$root_partuuid, name="bulkhead-root"
EOF
dd if="$fat" of="$raw" bs=512 seek=$boot_start conv=notrunc,sparse status=none
dd if="$root_img" of="$raw" bs=512 seek=$root_start conv=notrunc,sparse status=none
# BIOS: syslinux's GPT MBR boots the partition marked LegacyBIOSBootable.
dd if=/usr/lib/SYSLINUX/gptmbr.bin of="$raw" bs=440 count=1 conv=notrunc status=none
sfdisk --verify "$raw" >/dev/null || die "sfdisk --verify: the partition table of $raw is not sound"

step "qcow2 (qemu-img convert)"
qemu-img convert -c -f raw -O qcow2 -o compat=1.1 "$raw" "$qcow2"
qemu-img check -q "$qcow2" || die "qemu-img check: $qcow2 is not sound"

step "OVA (images/ova.sh)"
SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" "$here/ova.sh" --raw "$raw" --out "$out" --version "$version"
cp "$work/packages" "$out/bulkhead-$version.packages"
(cd "$out" && sha256sum "bulkhead-$version.raw" "bulkhead-$version.qcow2" "bulkhead-$version.ova" >"bulkhead-$version.sha256")

step "done"
mib() { echo "$(($1 / 1048576)) MiB"; }
raw_size=$(stat -c %s "$raw")
raw_used=$(($(stat -c %b "$raw") * 512))
qcow2_size=$(stat -c %s "$qcow2")
echo "$raw: $(mib "$raw_size") (virtual; $(mib "$raw_used") allocated)"
echo "$qcow2: $(mib "$qcow2_size")"
echo "$out/bulkhead-$version.ova: $(mib "$(stat -c %s "$out/bulkhead-$version.ova")")"
echo "root file system: $(du -sm "$rootfs" | cut -f1) MiB of files, $(wc -l <"$work/packages") packages ($out/bulkhead-$version.packages)"
echo "boot: BIOS (syslinux, GPT MBR) and UEFI (EFI/BOOT/BOOTX64.EFI, unified kernel image); $(basename "$kernel")"
echo "build time: $((SECONDS - started)) s (mmdebstrap $debootstrap_s s)"
