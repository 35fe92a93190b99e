#!/usr/bin/env python3
"""Write examples/sample.pcap: a few minutes of east-west traffic between the
workloads of examples/policy.yaml, built byte by byte with the standard library
only (no scapy), so the capture is reproducible: the same script always writes
the same file.

Workloads (segment A: web tier, segment B: data tier):
  web-1   02:00:00:00:01:01  10.0.1.11  app=web
  web-2   02:00:00:00:01:02  10.0.1.12  app=web      (quarantined in the policy)
  db-1    02:00:00:00:02:01  10.0.2.21  app=db
  admin   02:00:00:00:03:01  10.0.3.31  role=admin
  legacy  02:00:00:00:04:01  10.0.4.41  app=legacy   (audit mode)
  legacy-files 02:00:00:00:04:02 10.0.4.42 app=legacy (audit mode)
  dns     02:00:00:00:09:53  10.0.9.53  infra=dns

Usage: scripts/make-sample-capture.py [OUTPUT]   (default examples/sample.pcap)
"""
import struct
import sys

HOSTS = {
    "web-1": ("02:00:00:00:01:01", "10.0.1.11", "fd00::1:11"),
    "web-2": ("02:00:00:00:01:02", "10.0.1.12", "fd00::1:12"),
    "db-1": ("02:00:00:00:02:01", "10.0.2.21", "fd00::2:21"),
    "admin": ("02:00:00:00:03:01", "10.0.3.31", "fd00::3:31"),
    "legacy": ("02:00:00:00:04:01", "10.0.4.41", "fd00::4:41"),
    "legacy-files": ("02:00:00:00:04:02", "10.0.4.42", "fd00::4:42"),
    "dns": ("02:00:00:00:09:53", "10.0.9.53", "fd00::9:53"),
    "gw": ("02:00:00:00:00:01", "10.0.0.1", "fd00::1"),
}
BROADCAST = "ff:ff:ff:ff:ff:ff"


def mac(s):
    return bytes(int(x, 16) for x in s.split(":"))


def ip4(s):
    return bytes(int(x) for x in s.split("."))


def ip6(s):
    head, _, tail = s.partition("::")
    h = [int(x, 16) for x in head.split(":") if x]
    t = [int(x, 16) for x in tail.split(":") if x]
    words = h + [0] * (8 - len(h) - len(t)) + t
    return struct.pack("!8H", *words)


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ether(dst, src, ethertype, payload, vlan=None):
    hdr = mac(dst) + mac(src)
    if vlan is not None:
        hdr += struct.pack("!HH", 0x8100, vlan)
    frame = hdr + struct.pack("!H", ethertype) + payload
    return frame + b"\0" * max(0, 60 - len(frame))


def ipv4(src, dst, proto, payload, ident=1, frag=0, mf=False):
    flags_frag = (0x2000 if mf else 0) | (frag // 8)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, flags_frag, 64, proto, 0, ip4(src), ip4(dst))
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + payload


def ipv6(src, dst, nh, payload):
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nh, 64, ip6(src), ip6(dst)) + payload


def l4_csum(src, dst, proto, seg, v6=False):
    if v6:
        pseudo = ip6(src) + ip6(dst) + struct.pack("!IxxxB", len(seg), proto)
    else:
        pseudo = ip4(src) + ip4(dst) + struct.pack("!xBH", proto, len(seg))
    return csum(pseudo + seg)


def tcp(src, dst, sport, dport, flags, seq=1000, ack=0, data=b"", v6=False):
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + data
    c = l4_csum(src, dst, 6, seg, v6)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def udp(src, dst, sport, dport, data, v6=False):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    c = l4_csum(src, dst, 17, seg, v6) or 0xFFFF
    return seg[:6] + struct.pack("!H", c) + seg[8:]


def icmp_echo(ident, seq, request=True):
    msg = struct.pack("!BBHHH", 8 if request else 0, 0, 0, ident, seq) + b"bulkhead-ping..."
    return msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]


def dns_name(name):
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"


def dns_query(qid, name):
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + dns_name(name) + struct.pack("!HH", 1, 1)


def dns_response(qid, name, addr):
    q = dns_name(name) + struct.pack("!HH", 1, 1)
    a = struct.pack("!HHHIH", 0xC00C, 1, 1, 300, 4) + ip4(addr)
    return struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + q + a


class Capture:
    def __init__(self):
        self.t = 1_764_000_000.0  # a fixed start time keeps the file reproducible
        self.frames = []

    def add(self, frame, gap=0.001):
        self.t += gap
        self.frames.append((self.t, frame))

    def v4(self, a, b, proto, payload, **kw):
        (ma, ia, _), (mb, ib, _) = HOSTS[a], HOSTS[b]
        vlan = kw.pop("vlan", None)
        self.add(ether(mb, ma, 0x0800, ipv4(ia, ib, proto, payload, **kw), vlan))

    def tcp_session(self, a, b, sport, dport, data=b"", v6=False, vlan=None):
        (ma, ia4, ia6), (mb, ib4, ib6) = HOSTS[a], HOSTS[b]
        ia, ib = (ia6, ib6) if v6 else (ia4, ib4)

        def send(src_mac, dst_mac, s, d, sp, dp, flags, seq, ack, payload=b""):
            seg = tcp(s, d, sp, dp, flags, seq, ack, payload, v6)
            pkt = ipv6(s, d, 6, seg) if v6 else ipv4(s, d, 6, seg)
            self.add(ether(dst_mac, src_mac, 0x86DD if v6 else 0x0800, pkt, vlan))

        send(ma, mb, ia, ib, sport, dport, 0x02, 100, 0)
        send(mb, ma, ib, ia, dport, sport, 0x12, 500, 101)
        send(ma, mb, ia, ib, sport, dport, 0x10, 101, 501)
        if data:
            send(ma, mb, ia, ib, sport, dport, 0x18, 101, 501, data)
            send(mb, ma, ib, ia, dport, sport, 0x18, 501, 101 + len(data), b"OK " + data[:20])
        send(ma, mb, ia, ib, sport, dport, 0x11, 101 + len(data), 504 + min(len(data), 20))
        send(mb, ma, ib, ia, dport, sport, 0x11, 504 + min(len(data), 20), 102 + len(data))
        send(ma, mb, ia, ib, sport, dport, 0x10, 102 + len(data), 505 + min(len(data), 20))

    def syn_attempts(self, a, b, sport, dport, tries=3):
        (_, ia, _), (_, ib, _) = HOSTS[a], HOSTS[b]
        for i in range(tries):
            self.v4(a, b, 6, tcp(ia, ib, sport, dport, 0x02, 7000), ident=100 + i)
            self.t += 1.0 * (i + 1)

    def write(self, path):
        with open(path, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
            for t, frame in self.frames:
                sec = int(t)
                usec = int(round((t - sec) * 1e6))
                f.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "examples/sample.pcap"
    c = Capture()
    # ARP: web-1 resolves db-1, db-1 answers.
    arp_req = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac(HOSTS["web-1"][0]), ip4(HOSTS["web-1"][1]), b"\0" * 6, ip4(HOSTS["db-1"][1]))
    arp_rep = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, mac(HOSTS["db-1"][0]), ip4(HOSTS["db-1"][1]), mac(HOSTS["web-1"][0]), ip4(HOSTS["web-1"][1]))
    c.add(ether(BROADCAST, HOSTS["web-1"][0], 0x0806, arp_req))
    c.add(ether(HOSTS["web-1"][0], HOSTS["db-1"][0], 0x0806, arp_rep))
    # DNS: web-1 asks for db.internal and a known-bad domain.
    w, d = HOSTS["web-1"][1], HOSTS["dns"][1]
    c.v4("web-1", "dns", 17, udp(w, d, 40001, 53, dns_query(0x1111, "db.internal")))
    c.v4("dns", "web-1", 17, udp(d, w, 53, 40001, dns_response(0x1111, "db.internal", HOSTS["db-1"][1])))
    c.v4("web-1", "dns", 17, udp(w, d, 40002, 53, dns_query(0x2222, "c2.bad.example")))
    c.v4("dns", "web-1", 17, udp(d, w, 53, 40002, dns_response(0x2222, "c2.bad.example", "203.0.113.66")))
    # Allowed: web -> db PostgreSQL, over IPv4, over IPv6, and tagged with VLAN 20.
    c.tcp_session("web-1", "db-1", 41000, 5432, b"SELECT 1;")
    c.tcp_session("web-1", "db-1", 41001, 5432, b"SELECT 2;", v6=True)
    c.tcp_session("web-1", "db-1", 41002, 5432, b"SELECT 3;", vlan=20)
    # Allowed: admin -> web SSH; ping web-1 -> db-1 and its reply.
    c.tcp_session("admin", "web-1", 50022, 22, b"SSH-2.0-OpenSSH_9.2")
    c.v4("web-1", "db-1", 1, icmp_echo(0x77, 1, True))
    c.v4("db-1", "web-1", 1, icmp_echo(0x77, 1, False))
    # Denied: SMB and RDP, retried like a real client does.
    c.syn_attempts("web-1", "db-1", 42000, 445)
    c.syn_attempts("admin", "web-1", 42001, 3389)
    # Audit: SMB inside the legacy group passes but is reported as a would-deny;
    # legacy -> db SMB is denied, as db enforces (the strictest mode applies).
    c.tcp_session("legacy", "legacy-files", 43000, 445, b"\xffSMB")
    c.syn_attempts("legacy", "db-1", 43001, 445, tries=1)
    # Blocklist: web-1 tries the address the bad domain resolved to.
    w1, bad = HOSTS["web-1"][1], "203.0.113.66"
    c.add(ether(HOSTS["gw"][0], HOSTS["web-1"][0], 0x0800, ipv4(w1, bad, 6, tcp(w1, bad, 44000, 443, 0x02))))
    # Quarantine: web-2 is quarantined; its PostgreSQL is cut, admin SSH to it still works.
    c.syn_attempts("web-2", "db-1", 45000, 5432, tries=2)
    c.tcp_session("admin", "web-2", 50023, 22, b"SSH-2.0-OpenSSH_9.2")
    # A fragmented DNS response (first fragment carries the ports) and a lone later fragment.
    c.v4("web-1", "dns", 17, udp(w, d, 40003, 53, dns_query(0x3333, "db.internal")))
    big = dns_response(0x3333, "db.internal", HOSTS["db-1"][1]) + b"\0" * 64
    seg = udp(d, w, 53, 40003, big)
    c.v4("dns", "web-1", 17, seg[:48], ident=900, frag=0, mf=True)
    c.v4("dns", "web-1", 17, seg[48:], ident=900, frag=48)
    c.v4("dns", "web-1", 17, b"\0" * 24, ident=901, frag=64)
    # A runt: an IPv4 header claiming more bytes than the frame holds.
    runt = ether(HOSTS["db-1"][0], HOSTS["web-1"][0], 0x0800, ipv4(w, HOSTS["db-1"][1], 6, b"\0" * 20))[:30]
    c.add(runt)
    c.write(out)
    print(f"wrote {len(c.frames)} frames to {out}")


if __name__ == "__main__":
    main()
