#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets (docs/fuzzing.md) into fuzz/corpus/.

frame/  every distinct frame of examples/sample.pcap, plus frames aimed at the
        flows the harness primes (dataplane/src/fuzzing.rs: client web-1
        10.0.1.11 / fd00::1:11, server db-1 10.0.2.21 / fd00::2:21): ICMP errors
        quoting them, later fragments of the primed first fragments, FIN/RST,
        QinQ, IPv6 extension headers, DHCP ACK, ARP.
dns/    one selector byte (see dataplane::fuzzing::dns) + a real DNS message.
policy/ the repository's policy files, and the same policies in TOML.

Reproducible: the same script always writes the same files.
Usage: fuzz/make-corpus.py   (from anywhere)
"""
import importlib.util
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("cap", os.path.join(ROOT, "scripts/make-sample-capture.py"))
cap = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cap)

CLIENT, SERVER = cap.HOSTS["web-1"], cap.HOSTS["db-1"]
PG_PORT, DNS_UDP_PORT, DNS_TCP_PORT, ECHO_ID, FRAG_ID4, FRAG_ID6 = 40000, 40001, 40004, 0x4242, 0x1234, 0x5555


def out(target, name, data):
    d = os.path.join(ROOT, "fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def pcap_frames(path):
    with open(path, "rb") as f:
        data = f.read()
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack("<IIII", data[off:off + 16])
        yield data[off + 16:off + 16 + incl]
        off += 16 + incl


def eth4(src, dst, proto, payload, **kw):
    return cap.ether(dst[0], src[0], 0x0800, cap.ipv4(src[1], dst[1], proto, payload, **kw))


def eth6(src, dst, nh, payload):
    return cap.ether(dst[0], src[0], 0x86DD, cap.ipv6(src[2], dst[2], nh, payload))


def icmp_error(kind, code, quoted):
    return struct.pack("!BBHI", kind, code, 0, 0) + quoted


def frames():
    c, s = CLIENT, SERVER
    # The primed TCP flow, quoted by an ICMP port unreachable and an ICMPv6 one.
    syn4 = cap.ipv4(c[1], s[1], 6, cap.tcp(c[1], s[1], PG_PORT, 5432, 0x02))
    yield "icmp4-unreach-primed", eth4(s, c, 1, icmp_error(3, 3, syn4[:28]))
    yield "icmp4-ttl-exceeded", eth4(s, c, 1, icmp_error(11, 0, syn4))
    syn6 = cap.ipv6(c[2], s[2], 6, cap.tcp(c[2], s[2], PG_PORT, 5432, 0x02, v6=True))
    yield "icmp6-unreach-primed", eth6(s, c, 58, icmp_error(1, 4, syn6[:48]))
    yield "icmp6-too-big", eth6(s, c, 58, icmp_error(2, 0, syn6))
    yield "icmp4-echo-reply-primed", eth4(s, c, 1, cap.icmp_echo(ECHO_ID, 1, False))
    # Later fragments of the primed first fragments (IPv4 and IPv6).
    yield "frag4-later-primed", eth4(c, s, 17, b"\0" * 16, ident=FRAG_ID4, frag=24)
    frag6 = struct.pack("!BBHI", 17, 0, 24 << 0, FRAG_ID6) + b"\0" * 16
    yield "frag6-later-primed", eth6(c, s, 44, frag6)
    # The primed connections closing and resetting.
    yield "tcp4-fin-primed", eth4(s, c, 6, cap.tcp(s[1], c[1], 5432, PG_PORT, 0x11))
    yield "tcp4-rst-primed", eth4(c, s, 6, cap.tcp(c[1], s[1], PG_PORT, 5432, 0x04))
    yield "tcp4-syn-reuse", eth4(c, s, 6, cap.tcp(c[1], s[1], PG_PORT, 5432, 0x02, seq=9999))
    # IPv6 with hop-by-hop and destination options before UDP.
    udp6 = cap.udp(c[2], s[2], DNS_UDP_PORT, 53, cap.dns_query(7, "db.internal"), v6=True)
    yield "udp6-ext-headers", eth6(c, s, 0, bytes([60, 0, 1, 4, 0, 0, 0, 0]) + bytes([17, 0, 1, 4, 0, 0, 0, 0]) + udp6)
    # QinQ: an 802.1ad tag, then an 802.1Q tag.
    inner = cap.ipv4(c[1], s[1], 17, cap.udp(c[1], s[1], DNS_UDP_PORT, 53, cap.dns_query(8, "a.b")))
    yield "qinq-udp4", cap.mac(s[0]) + cap.mac(c[0]) + struct.pack("!HHHHH", 0x88A8, 100, 0x8100, 200, 0x0800) + inner
    # A DHCP ACK from the server to the client (ports 67 -> 68).
    bootp = struct.pack("!BBBBIHH4s4s4s4s", 2, 1, 6, 0, 0x1234, 0, 0, b"\0" * 4, cap.ip4("10.0.1.99"), b"\0" * 4, b"\0" * 4)
    bootp += cap.mac(c[0]) + b"\0" * 10 + b"\0" * 192 + bytes([99, 130, 83, 99, 53, 1, 5, 255])
    yield "dhcp-ack", eth4(s, c, 17, cap.udp(s[1], c[1], 67, 68, bootp))
    # GRE from an address in the legacy CIDR (a protocol with no parsed header).
    yield "gre-legacy", cap.ether(s[0], cap.HOSTS["legacy"][0], 0x0800, cap.ipv4("10.0.4.41", s[1], 47, b"\0\0\x08\0" + b"\0" * 20))
    # IPv4 with options (IHL 6).
    opt = bytearray(cap.ipv4(c[1], s[1], 6, cap.tcp(c[1], s[1], 40010, 22, 0x02)))
    opt = bytes([0x46]) + bytes(opt[1:2]) + struct.pack("!H", len(opt) + 4) + bytes(opt[4:20]) + b"\x01\x01\x01\x00" + bytes(opt[20:])
    yield "ipv4-options", cap.ether(s[0], c[0], 0x0800, opt)
    # ICMPv6 neighbour solicitation (passed like ARP).
    yield "icmp6-ns", eth6(c, s, 58, struct.pack("!BBHI16s", 135, 0, 0, 0, cap.ip6(s[2])))


def dns_messages():
    name, q = "db.internal", cap.dns_query
    yield "a-response", cap.dns_response(0x1111, name, "10.0.2.21")
    yield "query", q(0x2222, "c2.bad.example")
    head = struct.pack("!HHHHHH", 0x3333, 0x8180, 1, 2, 0, 0) + cap.dns_name("www.example") + struct.pack("!HH", 1, 1)
    cname = struct.pack("!HHHIH", 0xC00C, 5, 1, 60, 6) + b"\x03cdn\xc0\x10"
    a = struct.pack("!HHHIH", 0xC029, 1, 1, 60, 4) + cap.ip4("192.0.2.7")
    yield "cname-chain", head + cname + a
    head = struct.pack("!HHHHHH", 0x4444, 0x8180, 1, 1, 0, 0) + cap.dns_name("db.internal") + struct.pack("!HH", 28, 1)
    yield "aaaa-response", head + struct.pack("!HHHIH", 0xC00C, 28, 1, 300, 16) + cap.ip6("fd00::2:21")
    yield "nxdomain", struct.pack("!HHHHHH", 0x5555, 0x8183, 1, 0, 0, 0) + cap.dns_name("nope.internal") + struct.pack("!HH", 1, 1)
    txt = b"\x0ev=spf1 -all.."
    head = struct.pack("!HHHHHH", 0x6666, 0x8580, 1, 1, 0, 1) + cap.dns_name("example") + struct.pack("!HH", 16, 1)
    opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0, 0)
    yield "txt-edns", head + struct.pack("!HHHIH", 0xC00C, 16, 1, 60, len(txt)) + txt + opt
    yield "pointer-loop", struct.pack("!HHHHHH", 0x7777, 0x8180, 1, 1, 0, 0) + b"\xc0\x0c" + struct.pack("!HH", 1, 1)
    yield "big-truncated", cap.dns_response(0x8888, name, "10.0.2.21") + b"\0" * 600


def toml_policy():
    return b'''# examples/policy.yaml's shape, in TOML.
default_mode = "enforce"

[[workloads]]
mac = "02:00:00:00:01:01"
name = "web-1"
labels = { app = "web" }

[[workloads]]
mac = "02:00:00:00:02:01"
name = "db-1"
labels = { app = "db" }

[[services]]
name = "app-api"
proto = "tcp"
ports = [8443, "9000-9010"]

[[groups]]
name = "web"
mode = "enforce"
match = { app = "web" }

[[groups]]
name = "db"
mode = "audit"
match = { app = "db" }

[[groups]]
name = "internet"
ips = ["198.51.100.0/24", "2001:db8::/32"]

[[rules]]
id = 10
src = ["web"]
dst = ["db"]
services = ["postgresql", "app-api", { proto = "udp", ports = [8080] }]
action = "allow"

[[rules]]
id = 20
src = ["any"]
dst = ["internet"]
services = ["https"]
action = "deny"

[[quarantine]]
mac = "02:00:00:00:01:01"
reason = "seed"

[[management]]
cidr = "10.0.3.0/24"
macs = ["02:00:00:00:03:01"]
services = ["ssh"]
'''


def main():
    seen = set()
    for i, f in enumerate(pcap_frames(os.path.join(ROOT, "examples/sample.pcap"))):
        if f in seen:
            continue
        seen.add(f)
        out("frame", "pcap-%02d" % i, f)
    for name, f in frames():
        out("frame", name, f)
    sel = {"udp4": 0, "udp6": 1, "tcp4": 2, "tcp4-len": 3, "udp4-query": 4, "vlan": 6, "frag": 7}
    for name, msg in dns_messages():
        out("dns", "udp4-" + name, bytes([sel["udp4"]]) + msg)
    for name in ("udp6", "tcp4", "tcp4-len", "vlan", "frag"):
        out("dns", name + "-a-response", bytes([sel[name]]) + cap.dns_response(0x1111, "db.internal", "10.0.2.21"))
    out("dns", "udp4-query-query", bytes([sel["udp4-query"]]) + cap.dns_query(0x2222, "c2.bad.example"))
    for src in ("examples/policy.yaml", "src/lab/lab-policy.yaml"):
        with open(os.path.join(ROOT, src), "rb") as f:
            out("policy", src.replace("/", "-"), f.read())
    out("policy", "model.toml", toml_policy())
    # The dataplane's own policy form (dataplane/src/policy/spec.rs).
    with open(os.path.join(ROOT, "dataplane/src/policy/spec.rs")) as f:
        lines = [l[4:] for l in f.read().split("```yaml\n", 1)[1].split("//! ```", 1)[0].splitlines(True)]
    out("policy", "dataplane-spec.yaml", "".join(lines).encode())


if __name__ == "__main__":
    main()
