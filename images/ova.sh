#!/usr/bin/env bash
# images/ova.sh: the VMware OVA from the appliance's raw disk (docs/deploy.md).
#
#   images/ova.sh --raw OUT/bulkhead-VERSION.raw --out OUT --version VERSION
#
# Writes OUT/bulkhead-VERSION.ova: an OVF 1.0 descriptor (2 vCPUs, 2 GiB,
# a paravirtual SCSI disk, a CD-ROM for the day-0 seed ISO or the OVF
# environment, three vmxnet3 NICs on the networks "management", "segment-a"
# and "segment-b"; the day-0 keys as OVF properties, delivered by vSphere's
# com.vmware.guestInfo and iso transports), its
# manifest (SHA-1: what OVF 1.0 specifies and every vSphere release reads;
# it guards against a damaged download, it signs nothing), and the disk as a streamOptimized VMDK, in that order in
# a ustar archive, as vSphere reads it. The same raw disk and version give
# the same OVA: the VMDK's random content ID is replaced by one derived
# from the version and SOURCE_DATE_EPOCH, and the archive's times and
# owners are fixed. Needs qemu-img and python3.
set -euo pipefail

die() {
  printf 'images/ova.sh: %s\n' "$*" >&2
  exit 1
}

raw=""
out=""
version=""
while [ $# -gt 0 ]; do
  case "$1" in
    --raw) raw="${2:?--raw needs a path}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --version) version="${2:?--version needs a value}"; shift 2 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[ -f "$raw" ] || die "--raw: no disk at '$raw'"
if [ -z "$out" ] || [ -z "$version" ]; then die "--out and --version are needed (see --help)"; fi
command -v qemu-img >/dev/null || die "qemu-img is needed (apt-get install qemu-utils)"
command -v python3 >/dev/null || die "python3 is needed"
: "${SOURCE_DATE_EPOCH:=0}"

name="bulkhead-$version"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
vmdk="$name-disk1.vmdk"
ovf="$name.ovf"
mf="$name.mf"

qemu-img convert -f raw -O vmdk -o subformat=streamOptimized,adapter_type=lsilogic \
  "$raw" "$work/$vmdk"
# qemu-img writes a random content ID (CID) into the descriptor: a fixed one
# keeps the build reproducible. The descriptor is text in a fixed-size area
# the header points at; the new line is padded to the same size.
cid="$(printf '%s %s' "$version" "$SOURCE_DATE_EPOCH" | sha256sum | cut -c1-8)"
python3 - "$work/$vmdk" "$cid" <<'EOF'
import re, struct, sys
path, cid = sys.argv[1], sys.argv[2]
with open(path, "r+b") as f:
    head = f.read(512)
    if head[:4] != b"KDMV":
        sys.exit(f"{path}: not a sparse VMDK")
    # SparseExtentHeader: magic, version, flags (4 bytes each), capacity and
    # grain size (8 each), then the descriptor's offset and size in sectors.
    off, size = struct.unpack_from("<QQ", head, 28)
    f.seek(off * 512)
    desc = f.read(size * 512)
    text = desc.rstrip(b"\0")
    new, n = re.subn(rb"(?m)^CID=[0-9a-fA-F]+$", b"CID=" + cid.encode(), text)
    if n != 1 or len(new) > len(desc):
        sys.exit(f"{path}: not one CID line in the descriptor")
    f.seek(off * 512)
    f.write(new + b"\0" * (len(desc) - len(new)))
EOF
qemu-img check -q "$work/$vmdk" || die "qemu-img check: $vmdk is not sound"

capacity=$(stat -c %s "$raw")
vmdk_size=$(stat -c %s "$work/$vmdk")

nic() { # instance, network, what
  cat <<EOF
      <Item>
        <rasd:AddressOnParent>$(($1 - 7))</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>$2</rasd:Connection>
        <rasd:Description>vmxnet3 on "$2": $3</rasd:Description>
        <rasd:ElementName>Network adapter $(($1 - 6))</rasd:ElementName>
        <rasd:InstanceID>$1</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
EOF
}

prop() { # key, label, description, [default], [extra attributes]
  cat <<EOF
      <Property ovf:key="$1" ovf:type="string" ovf:userConfigurable="true" ovf:value="${4:-}"${5:+ $5}>
        <Label>$2</Label>
        <Description>$3</Description>
      </Property>
EOF
}

cat >"$work/$ovf" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
    xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
    xmlns:vmw="http://www.vmware.com/schema/ovf"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="$vmdk" ovf:id="file1" ovf:size="$vmdk_size"/>
  </References>
  <DiskSection>
    <Info>The appliance's disk</Info>
    <Disk ovf:capacity="$capacity" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>The appliance's networks</Info>
    <Network ovf:name="management">
      <Description>The management port: the HTTPS API and the console</Description>
    </Network>
    <Network ovf:name="segment-a">
      <Description>Data port A: a port group with promiscuous mode, forged transmits and MAC address changes accepted (or MAC learning)</Description>
    </Network>
    <Network ovf:name="segment-b">
      <Description>Data port B: as segment-a, on the other segment</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="$name">
    <Info>bulkhead, a virtual firewall for east-west micro-segmentation</Info>
    <Name>$name</Name>
    <AnnotationSection>
      <Info>How to configure it</Info>
      <Annotation>Day 0: set the properties (vApp options; the NICs in the order management, segment-a, segment-b need no MACs), or attach a NoCloud seed ISO (volume label cidata, with user-data and meta-data as in docs/deploy.md) to the CD-ROM before the first boot; a seed's bulkhead: key wins over the properties. The VM console shows the API's URL, its certificate fingerprint and health.</Annotation>
    </AnnotationSection>
    <ProductSection>
      <Info>The product</Info>
      <Product>bulkhead</Product>
      <Vendor>bulkhead</Vendor>
      <Version>$version</Version>
      <FullVersion>$version</FullVersion>
      <Category>Management port</Category>
$(prop bulkhead.management.mac "Management NIC MAC" "The management NIC's MAC address (aa:bb:cc:dd:ee:ff). Empty: the first NIC (Network adapter 1)." "" 'ovf:qualifiers="MaxLen(17)"')
$(prop bulkhead.management.address "Management address" "dhcp, or a static IPv4 address with its prefix length (10.0.0.5/24). With a static address the API listens on it only." dhcp)
$(prop bulkhead.management.gateway "Management gateway" "The default gateway (static address only). Empty: none.")
$(prop bulkhead.management.dns "Management DNS servers" "DNS servers, separated by commas. Empty: none (or DHCP's).")
$(prop bulkhead.management.api_port "API port" "The HTTPS API's TCP port." 8443)
      <Category>Data ports</Category>
$(prop bulkhead.ports.a "Data port A MAC" "Data port A's MAC (segment A). Empty: the next NIC after the management NIC (Network adapter 2)." "" 'ovf:qualifiers="MaxLen(17)"')
$(prop bulkhead.ports.b "Data port B MAC" "Data port B's MAC (segment B). Empty: the NIC after port A (Network adapter 3)." "" 'ovf:qualifiers="MaxLen(17)"')
$(prop bulkhead.ports.fail_mode "Fail mode" "What the wire does while bulkhead is down: closed (drop) or open (forward unfiltered)." closed 'ovf:qualifiers="ValueMap{&quot;closed&quot;,&quot;open&quot;}"')
      <Category>API access</Category>
$(prop bulkhead.admin_token_sha256 "First admin token (SHA-256)" "The SHA-256 of the first admin token, 64 hex digits (printf %s TOKEN | sha256sum). Empty: the first boot makes a token and shows it once on the console." "" 'ovf:qualifiers="MaxLen(64)"')
$(prop bulkhead.api_cert_base64 "API certificate (base64 of PEM)" "The API's certificate chain, PEM, base64-encoded on one line (base64 -w0 cert.pem). Empty: a self-signed certificate. Needs the key too.")
$(prop bulkhead.api_key_base64 "API private key (base64 of PEM)" "The certificate's private key, PEM, base64-encoded on one line. Readable by whoever can read this VM's vApp options." "" 'ovf:password="true"')
      <Category>Policy</Category>
$(prop bulkhead.policy_base64 "Bootstrap policy (base64 of YAML)" "The policy committed as version 1 on the first boot (docs/operator-guide.md), base64-encoded on one line (base64 -w0 policy.yaml). Empty: learn mode (everything passes and is recorded).")
    </ProductSection>
    <OperatingSystemSection ovf:id="96" vmw:osType="debian12_64Guest">
      <Info>Debian GNU/Linux (64-bit)</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection ovf:transport="com.vmware.guestInfo iso">
      <Info>2 vCPUs, 2 GiB, one disk, a CD-ROM, three vmxnet3 NICs</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>$name</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-14</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of virtual CPUs</rasd:Description>
        <rasd:ElementName>2 virtual CPUs</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>2</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory size</rasd:Description>
        <rasd:ElementName>2048 MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>2048</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI controller</rasd:Description>
        <rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>IDE controller</rasd:Description>
        <rasd:ElementName>IDE controller 0</rasd:ElementName>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:ResourceType>5</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item ovf:required="false">
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>false</rasd:AutomaticAllocation>
        <rasd:Description>The day-0 seed ISO (cidata), or the OVF environment (iso transport)</rasd:Description>
        <rasd:ElementName>CD-ROM 1</rasd:ElementName>
        <rasd:InstanceID>6</rasd:InstanceID>
        <rasd:Parent>4</rasd:Parent>
        <rasd:ResourceType>15</rasd:ResourceType>
      </Item>
$(nic 7 management "the HTTPS API")
$(nic 8 segment-a "data port A")
$(nic 9 segment-b "data port B")
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
EOF

(
  cd "$work"
  for f in "$ovf" "$vmdk"; do
    printf 'SHA1(%s)= %s\n' "$f" "$(sha1sum "$f" | cut -d' ' -f1)"
  done >"$mf"
)
mkdir -p "$out"
# vSphere reads the descriptor first, then the manifest, then the disk.
tar --format=ustar --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
  --mode=0644 -C "$work" -cf "$out/$name.ova" "$ovf" "$mf" "$vmdk"
echo "$out/$name.ova: $(($(stat -c %s "$out/$name.ova") / 1048576)) MiB (disk: streamOptimized VMDK, $((vmdk_size / 1048576)) MiB)"
