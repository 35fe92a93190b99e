//! Frames for the flow key test (`xdp_flow_key.rs`): a [`Spec`] says what a
//! frame is (tags, addresses, transport, flags, fragmenting), builds its
//! bytes, and says from that alone whether the XDP program must carry it and
//! under which key. Checksums are left zero: neither side reads them.

use dataplane::flow::{FlowKey, Side};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;

/// One VLAN tag.
#[derive(Debug, Clone, Copy)]
pub struct Tag {
    pub tpid: u16,
    /// Priority, DEI and VLAN ID.
    pub tci: u16,
}

impl Tag {
    pub fn dot1q(vid: u16) -> Tag {
        Tag {
            tpid: TPID_8021Q,
            tci: vid,
        }
    }
    pub fn qinq(vid: u16) -> Tag {
        Tag {
            tpid: TPID_8021AD,
            tci: vid,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Ip {
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        /// Bytes of options (NOPs), a multiple of 4.
        options: u8,
        dont_fragment: bool,
        more_fragments: bool,
        /// In 8-byte units.
        frag_offset: u16,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        /// An extension header of this type (0 hop-by-hop, 43 routing, 44
        /// fragment, 60 destination options) before the transport.
        extension: Option<u8>,
    },
}

#[derive(Debug, Clone)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        /// Bytes of options (NOPs), a multiple of 4.
        options: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP (IPv4) or ICMPv6 (IPv6), by the IP version.
    Icmp {
        kind: u8,
        code: u8,
        id: u16,
    },
    /// The other IP version's ICMP (ICMPv6's number in IPv4, ICMP's in
    /// IPv6) with an echo header: not ICMP there.
    ForeignIcmp {
        kind: u8,
        id: u16,
    },
    /// Any protocol number but TCP's, UDP's and ICMP's (its payload is the
    /// random bytes).
    Other {
        proto: u8,
    },
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub tags: Vec<Tag>,
    pub ip: Ip,
    /// TTL or hop limit.
    pub ttl: u8,
    pub l4: L4,
    pub payload: Vec<u8>,
    /// Ethernet padding after the IP packet.
    pub padding: u8,
}

impl Spec {
    pub fn udp_v4() -> Spec {
        Spec {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            tags: Vec::new(),
            ip: Ip::V4 {
                src: Ipv4Addr::new(10, 0, 0, 1),
                dst: Ipv4Addr::new(10, 0, 0, 2),
                options: 0,
                dont_fragment: true,
                more_fragments: false,
                frag_offset: 0,
            },
            ttl: 64,
            l4: L4::Udp {
                sport: 40000,
                dport: 5001,
            },
            payload: b"payload".to_vec(),
            padding: 0,
        }
    }

    pub fn udp_v6() -> Spec {
        Spec {
            ip: Ip::V6 {
                src: "fd00::1".parse().unwrap(),
                dst: "fd00::2".parse().unwrap(),
                extension: None,
            },
            ..Spec::udp_v4()
        }
    }

    pub fn ports(mut self, sport: u16, dport: u16) -> Spec {
        self.l4 = L4::Udp { sport, dport };
        self
    }
    pub fn ttl(mut self, ttl: u8) -> Spec {
        self.ttl = ttl;
        self
    }
    pub fn tcp(mut self, flags: u8) -> Spec {
        self.l4 = L4::Tcp {
            sport: 40000,
            dport: 5001,
            flags,
            options: 0,
        };
        self
    }
    pub fn icmp(mut self, kind: u8) -> Spec {
        self.l4 = L4::Icmp {
            kind,
            code: 0,
            id: 77,
        };
        self
    }
    pub fn tags(mut self, tags: Vec<Tag>) -> Spec {
        self.tags = tags;
        self
    }
    pub fn fragment(mut self, more: bool, offset: u16) -> Spec {
        if let Ip::V4 {
            more_fragments,
            frag_offset,
            dont_fragment,
            ..
        } = &mut self.ip
        {
            (*more_fragments, *frag_offset, *dont_fragment) = (more, offset, false);
        }
        self
    }
    pub fn ipv4_options(mut self, bytes: u8) -> Spec {
        if let Ip::V4 { options, .. } = &mut self.ip {
            *options = bytes;
        }
        self
    }
    pub fn ipv6_extension(mut self, kind: u8) -> Spec {
        if let Ip::V6 { extension, .. } = &mut self.ip {
            *extension = Some(kind);
        }
        self
    }

    fn is_v6(&self) -> bool {
        matches!(self.ip, Ip::V6 { .. })
    }

    fn proto(&self) -> u8 {
        match (&self.l4, self.is_v6()) {
            (L4::Tcp { .. }, _) => 6,
            (L4::Udp { .. }, _) => 17,
            (L4::Icmp { .. }, false) => 1,
            (L4::Icmp { .. }, true) => 58,
            (L4::ForeignIcmp { .. }, false) => 58,
            (L4::ForeignIcmp { .. }, true) => 1,
            (L4::Other { proto }, _) => *proto,
        }
    }

    /// Whether the XDP program must carry such a frame (bulkhead.c's list):
    /// at most two VLAN tags, IPv4 unfragmented or IPv6 without extension
    /// headers, a TTL / hop limit above 0 (the worker drops the rest), TCP
    /// without SYN/FIN/RST, UDP, or an ICMP/ICMPv6 echo, and not DNS.
    pub fn offloadable(&self) -> bool {
        let ip = match &self.ip {
            Ip::V4 {
                more_fragments,
                frag_offset,
                ..
            } => !more_fragments && *frag_offset == 0,
            Ip::V6 { extension, .. } => extension.is_none(),
        };
        let l4 = match self.l4 {
            L4::Tcp {
                sport,
                dport,
                flags,
                ..
            } => flags & 0x07 == 0 && sport != 53 && dport != 53,
            L4::Udp { sport, dport } => sport != 53 && dport != 53,
            L4::Icmp { kind, .. } => {
                matches!((self.is_v6(), kind), (false, 0 | 8) | (true, 128 | 129))
            }
            L4::ForeignIcmp { .. } | L4::Other { .. } => false,
        };
        self.tags.len() <= 2 && self.ttl != 0 && ip && l4
    }

    /// The key and sending side the frame must be carried under, where it is
    /// carried.
    pub fn key(&self) -> Option<(FlowKey, Side)> {
        if !self.offloadable() {
            return None;
        }
        let (src, dst): (IpAddr, IpAddr) = match &self.ip {
            Ip::V4 { src, dst, .. } => ((*src).into(), (*dst).into()),
            Ip::V6 { src, dst, .. } => ((*src).into(), (*dst).into()),
        };
        let (sport, dport) = match self.l4 {
            L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => (sport, dport),
            L4::Icmp { id, .. } => (id, id),
            L4::ForeignIcmp { .. } | L4::Other { .. } => (0, 0),
        };
        let mut vlan = [0u16; 2];
        for (slot, tag) in vlan.iter_mut().zip(&self.tags) {
            *slot = tag.tci & 0x0fff;
        }
        Some(FlowKey::new(src, dst, self.proto(), sport, dport, vlan))
    }

    /// The same flow's frame the other way (an echo request becomes a reply).
    pub fn reversed(&self) -> Spec {
        let mut r = self.clone();
        (r.src_mac, r.dst_mac) = (self.dst_mac, self.src_mac);
        match &mut r.ip {
            Ip::V4 { src, dst, .. } => std::mem::swap(src, dst),
            Ip::V6 { src, dst, .. } => std::mem::swap(src, dst),
        }
        match &mut r.l4 {
            L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => std::mem::swap(sport, dport),
            L4::Icmp { kind, .. } => {
                *kind = match *kind {
                    8 => 0,
                    0 => 8,
                    128 => 129,
                    129 => 128,
                    k => k,
                }
            }
            L4::ForeignIcmp { .. } | L4::Other { .. } => {}
        }
        r
    }

    fn transport(&self) -> Vec<u8> {
        let mut t = Vec::new();
        match self.l4 {
            L4::Tcp {
                sport,
                dport,
                flags,
                options,
            } => {
                t.extend(sport.to_be_bytes());
                t.extend(dport.to_be_bytes());
                t.extend([0, 0, 0, 1, 0, 0, 0, 1]); // seq, ack
                t.push((5 + options / 4) << 4);
                t.push(flags);
                t.extend([0xff, 0xff, 0, 0, 0, 0]); // window, checksum, urgent
                t.extend(std::iter::repeat_n(1u8, usize::from(options)));
            }
            L4::Udp { sport, dport } => {
                let len = 8 + self.payload.len() as u16;
                t.extend(sport.to_be_bytes());
                t.extend(dport.to_be_bytes());
                t.extend(len.to_be_bytes());
                t.extend([0, 0]);
            }
            L4::Icmp { kind, code, id } => {
                t.extend([kind, code, 0, 0]);
                t.extend(id.to_be_bytes());
                t.extend([0, 1]); // sequence
            }
            L4::ForeignIcmp { kind, id } => {
                t.extend([kind, 0, 0, 0]);
                t.extend(id.to_be_bytes());
                t.extend([0, 1]); // sequence
            }
            L4::Other { .. } => {}
        }
        t.extend(&self.payload);
        t
    }

    pub fn build(&self) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend(self.dst_mac);
        f.extend(self.src_mac);
        for tag in &self.tags {
            f.extend(tag.tpid.to_be_bytes());
            f.extend(tag.tci.to_be_bytes());
        }
        let l4 = self.transport();
        match &self.ip {
            Ip::V4 {
                src,
                dst,
                options,
                dont_fragment,
                more_fragments,
                frag_offset,
            } => {
                f.extend(0x0800u16.to_be_bytes());
                let header = 20 + usize::from(*options);
                let total = (header + l4.len()) as u16;
                let frag = u16::from(*dont_fragment) << 14
                    | u16::from(*more_fragments) << 13
                    | (frag_offset & 0x1fff);
                f.push(0x40 | (header / 4) as u8);
                f.push(0);
                f.extend(total.to_be_bytes());
                f.extend([0x12, 0x34]); // identification
                f.extend(frag.to_be_bytes());
                f.extend([self.ttl, self.proto(), 0, 0]);
                f.extend(src.octets());
                f.extend(dst.octets());
                f.extend(std::iter::repeat_n(1u8, usize::from(*options)));
            }
            Ip::V6 {
                src,
                dst,
                extension,
            } => {
                f.extend(0x86ddu16.to_be_bytes());
                let ext_len = if extension.is_some() { 8 } else { 0 };
                let next = extension.unwrap_or(self.proto());
                f.extend([0x60, 0, 0, 0]);
                f.extend(((ext_len + l4.len()) as u16).to_be_bytes());
                f.extend([next, self.ttl]);
                f.extend(src.octets());
                f.extend(dst.octets());
                if extension.is_some() {
                    // 8 bytes, whatever the type: next header, then zeros (a
                    // fragment header at offset 0 without more fragments).
                    f.extend([self.proto(), 0, 0, 0, 0, 0, 0, 0]);
                }
            }
        }
        f.extend(l4);
        f.extend(std::iter::repeat_n(0u8, usize::from(self.padding)));
        f
    }
}

fn v4_addr() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        3 => any::<[u8; 4]>().prop_map(Ipv4Addr::from),
        1 => prop::sample::select(vec![[10, 0, 0, 1], [10, 0, 0, 2], [0, 0, 0, 0], [255; 4]])
            .prop_map(Ipv4Addr::from),
    ]
}

fn v6_addr() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        3 => any::<[u8; 16]>().prop_map(Ipv6Addr::from),
        1 => prop::sample::select(vec!["fd00::1", "fd00::2", "::ffff:10.0.0.1", "::", "ff02::1"])
            .prop_map(|a| a.parse().unwrap()),
    ]
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![
        4 => any::<u16>(),
        1 => prop::sample::select(vec![53u16, 0, 5001, 40000, 65535]),
    ]
}

fn ip() -> impl Strategy<Value = Ip> {
    let v4 = (
        v4_addr(),
        v4_addr(),
        (0u8..=10).prop_map(|w| w * 4),
        any::<bool>(),
        prop_oneof![4 => Just((false, 0u16)), 1 => (any::<bool>(), 0u16..3)],
    )
        .prop_map(|(src, dst, options, df, (mf, off))| Ip::V4 {
            src,
            dst,
            options,
            dont_fragment: df,
            more_fragments: mf,
            frag_offset: off,
        });
    let v6 = (
        v6_addr(),
        v6_addr(),
        prop_oneof![4 => Just(None), 1 => prop::sample::select(vec![0u8, 43, 44, 60]).prop_map(Some)],
    )
        .prop_map(|(src, dst, extension)| Ip::V6 {
            src,
            dst,
            extension,
        });
    prop_oneof![v4, v6]
}

fn l4() -> impl Strategy<Value = L4> {
    prop_oneof![
        3 => (port(), port(), any::<u8>(), (0u8..=10).prop_map(|w| w * 4)).prop_map(
            |(sport, dport, flags, options)| L4::Tcp { sport, dport, flags, options }
        ),
        3 => (port(), port()).prop_map(|(sport, dport)| L4::Udp { sport, dport }),
        2 => (
            prop_oneof![3 => prop::sample::select(vec![0u8, 8, 128, 129]), 1 => any::<u8>()],
            any::<u8>(),
            any::<u16>()
        )
            .prop_map(|(kind, code, id)| L4::Icmp { kind, code, id }),
        1 => (prop::sample::select(vec![0u8, 8, 128, 129]), any::<u16>())
            .prop_map(|(kind, id)| L4::ForeignIcmp { kind, id }),
        1 => prop::sample::select(vec![0u8, 2, 47, 50, 132, 255])
            .prop_map(|proto| L4::Other { proto }),
    ]
}

fn tag() -> impl Strategy<Value = Tag> {
    (
        prop::sample::select(vec![TPID_8021Q, TPID_8021AD]),
        any::<u16>(),
    )
        .prop_map(|(tpid, tci)| Tag { tpid, tci })
}

/// Any frame a [`Spec`] describes.
pub fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<[u8; 6]>(),
        any::<[u8; 6]>(),
        prop_oneof![3 => prop::collection::vec(tag(), 0..=2), 1 => prop::collection::vec(tag(), 3)],
        ip(),
        prop_oneof![6 => 1u8..=255, 1 => Just(0u8)],
        l4(),
        prop::collection::vec(any::<u8>(), 0..40),
        prop_oneof![3 => Just(0u8), 1 => 1u8..20],
    )
        .prop_map(
            |(src_mac, dst_mac, tags, ip, ttl, l4, payload, padding)| Spec {
                src_mac,
                dst_mac,
                tags,
                ip,
                ttl,
                l4,
                payload,
                padding,
            },
        )
}
