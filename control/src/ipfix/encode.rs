//! IPFIX messages (RFC 7011) of bulkhead's flow records: the templates and the
//! data records, written by hand (see docs/decisions.md "IPFIX export": the
//! Rust crates decode IPFIX, none encodes biflows with enterprise elements).
//!
//! One record is one biflow (RFC 5103) in the direction of its initiator:
//! the forward counters are the initiator's, the reverse ones (the reverse
//! information element PEN 29305) the responder's.

use crate::records::{Identity, RecordKind, StoredFlow};
use dataplane::event::EndReason;
use dataplane::flow::FlowState;
use dataplane::io::Port;
use dataplane::policy::{Action, Mode, Reason};
use dataplane::wire::ip_proto;
use std::net::IpAddr;

/// IPFIX's version number in the message header.
pub const VERSION: u16 = 10;
/// Bytes of the message header.
pub const MESSAGE_HEADER: usize = 16;
/// Bytes of a set header.
pub const SET_HEADER: usize = 4;
/// The set id of a template set.
const TEMPLATE_SET: u16 = 2;
/// The reverse information element private enterprise number (RFC 5103).
pub const REVERSE_PEN: u32 = 29305;
/// Length of a variable-length element in a template.
const VARIABLE: u16 = 0xffff;

/// IANA information elements used here.
pub mod ie {
    pub const OCTET_DELTA_COUNT: u16 = 1;
    pub const PACKET_DELTA_COUNT: u16 = 2;
    pub const PROTOCOL_IDENTIFIER: u16 = 4;
    pub const TCP_CONTROL_BITS: u16 = 6;
    pub const SOURCE_TRANSPORT_PORT: u16 = 7;
    pub const SOURCE_IPV4_ADDRESS: u16 = 8;
    pub const INGRESS_INTERFACE: u16 = 10;
    pub const DESTINATION_TRANSPORT_PORT: u16 = 11;
    pub const DESTINATION_IPV4_ADDRESS: u16 = 12;
    pub const EGRESS_INTERFACE: u16 = 14;
    pub const SOURCE_IPV6_ADDRESS: u16 = 27;
    pub const DESTINATION_IPV6_ADDRESS: u16 = 28;
    pub const SOURCE_MAC_ADDRESS: u16 = 56;
    pub const VLAN_ID: u16 = 58;
    pub const DESTINATION_MAC_ADDRESS: u16 = 80;
    pub const FORWARDING_STATUS: u16 = 89;
    pub const FLOW_END_REASON: u16 = 136;
    pub const FLOW_START_MILLISECONDS: u16 = 152;
    pub const FLOW_END_MILLISECONDS: u16 = 153;
    pub const FIREWALL_EVENT: u16 = 233;
    pub const BIFLOW_DIRECTION: u16 = 239;
    pub const DOT1Q_CUSTOMER_VLAN_ID: u16 = 245;
    pub const INFORMATION_ELEMENT_ID: u16 = 303;
    pub const INFORMATION_ELEMENT_DATA_TYPE: u16 = 339;
    pub const INFORMATION_ELEMENT_DESCRIPTION: u16 = 340;
    pub const INFORMATION_ELEMENT_NAME: u16 = 341;
    pub const INFORMATION_ELEMENT_RANGE_BEGIN: u16 = 342;
    pub const INFORMATION_ELEMENT_RANGE_END: u16 = 343;
    pub const INFORMATION_ELEMENT_SEMANTICS: u16 = 344;
    pub const INFORMATION_ELEMENT_UNITS: u16 = 345;
    pub const PRIVATE_ENTERPRISE_NUMBER: u16 = 346;
}

/// bulkhead's enterprise-specific elements (under the configured enterprise
/// number; docs/operator-guide.md lists them).
pub mod bulkhead_ie {
    /// unsigned32: the user rule that decided the flow (0: none).
    pub const RULE_ID: u16 = 1;
    /// unsigned8: why ([`super::reason_code`]).
    pub const VERDICT_REASON: u16 = 2;
    /// unsigned8: the effective mode, 1 learn, 2 audit, 3 enforce.
    pub const POLICY_MODE: u16 = 3;
    /// string: the initiator's workload name.
    pub const SOURCE_WORKLOAD: u16 = 4;
    /// string: the responder's workload name.
    pub const DESTINATION_WORKLOAD: u16 = 5;
    /// string: the initiator's groups, comma-separated.
    pub const SOURCE_GROUPS: u16 = 6;
    /// string: the responder's groups, comma-separated.
    pub const DESTINATION_GROUPS: u16 = 7;
}

/// The options template of RFC 5610 type records.
pub const TYPE_TEMPLATE: u16 = 260;
/// The set id of an options template set.
const OPTIONS_TEMPLATE_SET: u16 = 3;

/// bulkhead's elements as RFC 5610 describes them: id, name, data type
/// (IANA informationElementDataType), semantics, description.
const ELEMENT_TYPES: [(u16, &str, u8, u8, &str); 7] = [
    (
        bulkhead_ie::RULE_ID,
        "bulkheadRuleId",
        3,
        4,
        "the user rule that decided the flow, 0 for none",
    ),
    (
        bulkhead_ie::VERDICT_REASON,
        "bulkheadVerdictReason",
        1,
        4,
        "1 rule, 2 quarantine, 3 management exception, 4 blocklist, 5 the mode's default",
    ),
    (
        bulkhead_ie::POLICY_MODE,
        "bulkheadPolicyMode",
        1,
        4,
        "1 learn, 2 audit, 3 enforce",
    ),
    (
        bulkhead_ie::SOURCE_WORKLOAD,
        "bulkheadSourceWorkload",
        13,
        0,
        "the initiator's workload name",
    ),
    (
        bulkhead_ie::DESTINATION_WORKLOAD,
        "bulkheadDestinationWorkload",
        13,
        0,
        "the responder's workload name",
    ),
    (
        bulkhead_ie::SOURCE_GROUPS,
        "bulkheadSourceGroups",
        13,
        0,
        "the initiator's groups, comma-separated",
    ),
    (
        bulkhead_ie::DESTINATION_GROUPS,
        "bulkheadDestinationGroups",
        13,
        0,
        "the responder's groups, comma-separated",
    ),
];

/// Data records [`type_records`] writes (they count in the sequence number).
pub const TYPE_RECORDS: u32 = ELEMENT_TYPES.len() as u32;

/// RFC 5610 type records for bulkhead's enterprise elements under `pen`
/// (an options template set, then its data set), so that a collector can
/// name and decode them.
pub fn type_records(pen: u32, out: &mut Vec<u8>) {
    let start = out.len();
    put_u16(out, OPTIONS_TEMPLATE_SET);
    put_u16(out, 0);
    // The fields RFC 5610 lists, in the order libfixbuf (ipfixDump) and
    // YAF use: units and range are sent as none (0).
    let fields = [
        (ie::PRIVATE_ENTERPRISE_NUMBER, 4),
        (ie::INFORMATION_ELEMENT_ID, 2),
        (ie::INFORMATION_ELEMENT_DATA_TYPE, 1),
        (ie::INFORMATION_ELEMENT_SEMANTICS, 1),
        (ie::INFORMATION_ELEMENT_UNITS, 2),
        (ie::INFORMATION_ELEMENT_RANGE_BEGIN, 8),
        (ie::INFORMATION_ELEMENT_RANGE_END, 8),
        (ie::INFORMATION_ELEMENT_NAME, VARIABLE),
        (ie::INFORMATION_ELEMENT_DESCRIPTION, VARIABLE),
    ];
    put_u16(out, TYPE_TEMPLATE);
    put_u16(out, fields.len() as u16);
    put_u16(out, 2);
    for (id, len) in fields {
        put_u16(out, id);
        put_u16(out, len);
    }
    close_set(out, start);
    let start = out.len();
    put_u16(out, TYPE_TEMPLATE);
    put_u16(out, 0);
    for (id, name, data_type, semantics, description) in ELEMENT_TYPES {
        out.extend_from_slice(&pen.to_be_bytes());
        put_u16(out, id);
        out.push(data_type);
        out.push(semantics);
        put_u16(out, 0);
        out.extend_from_slice(&[0; 16]);
        put_string(out, name);
        put_string(out, description);
    }
    close_set(out, start);
}

/// One field of a template: element id, length, enterprise number (0: IANA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub id: u16,
    pub len: u16,
    pub pen: u32,
}

const fn iana(id: u16, len: u16) -> Field {
    Field { id, len, pen: 0 }
}

const fn reverse(id: u16, len: u16) -> Field {
    Field {
        id,
        len,
        pen: REVERSE_PEN,
    }
}

/// Which of the four templates a record uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub v6: bool,
    pub enterprise: bool,
}

impl Shape {
    /// The template id: 256 + shape.
    pub fn template_id(self) -> u16 {
        256 + u16::from(self.v6) + 2 * u16::from(self.enterprise)
    }

    /// The template's fields, in record order.
    pub fn fields(self, pen: u32) -> Vec<Field> {
        let addr = if self.v6 { 16 } else { 4 };
        let (src, dst) = if self.v6 {
            (ie::SOURCE_IPV6_ADDRESS, ie::DESTINATION_IPV6_ADDRESS)
        } else {
            (ie::SOURCE_IPV4_ADDRESS, ie::DESTINATION_IPV4_ADDRESS)
        };
        let mut f = vec![
            iana(ie::FLOW_START_MILLISECONDS, 8),
            iana(ie::FLOW_END_MILLISECONDS, 8),
            iana(ie::SOURCE_MAC_ADDRESS, 6),
            iana(ie::DESTINATION_MAC_ADDRESS, 6),
            iana(src, addr),
            iana(dst, addr),
            iana(ie::SOURCE_TRANSPORT_PORT, 2),
            iana(ie::DESTINATION_TRANSPORT_PORT, 2),
            iana(ie::PROTOCOL_IDENTIFIER, 1),
            iana(ie::VLAN_ID, 2),
            iana(ie::DOT1Q_CUSTOMER_VLAN_ID, 2),
            iana(ie::OCTET_DELTA_COUNT, 8),
            iana(ie::PACKET_DELTA_COUNT, 8),
            reverse(ie::OCTET_DELTA_COUNT, 8),
            reverse(ie::PACKET_DELTA_COUNT, 8),
            iana(ie::TCP_CONTROL_BITS, 2),
            iana(ie::FLOW_END_REASON, 1),
            iana(ie::FORWARDING_STATUS, 1),
            iana(ie::FIREWALL_EVENT, 1),
            iana(ie::INGRESS_INTERFACE, 4),
            iana(ie::EGRESS_INTERFACE, 4),
            iana(ie::BIFLOW_DIRECTION, 1),
        ];
        if self.enterprise {
            let e = |id, len| Field { id, len, pen };
            f.extend([
                e(bulkhead_ie::RULE_ID, 4),
                e(bulkhead_ie::VERDICT_REASON, 1),
                e(bulkhead_ie::POLICY_MODE, 1),
                e(bulkhead_ie::SOURCE_WORKLOAD, VARIABLE),
                e(bulkhead_ie::DESTINATION_WORKLOAD, VARIABLE),
                e(bulkhead_ie::SOURCE_GROUPS, VARIABLE),
                e(bulkhead_ie::DESTINATION_GROUPS, VARIABLE),
            ]);
        }
        f
    }

    /// The shape of a record.
    pub fn of(flow: &StoredFlow, enterprise: bool) -> Shape {
        Shape {
            v6: flow.flow.src_ip.is_ipv6() || flow.flow.dst_ip.is_ipv6(),
            enterprise,
        }
    }
}

/// A template set holding the templates of `shapes`.
pub fn template_set(shapes: &[Shape], pen: u32, out: &mut Vec<u8>) {
    let start = out.len();
    put_u16(out, TEMPLATE_SET);
    put_u16(out, 0);
    for s in shapes {
        let fields = s.fields(pen);
        put_u16(out, s.template_id());
        put_u16(out, fields.len() as u16);
        for f in fields {
            if f.pen == 0 {
                put_u16(out, f.id);
                put_u16(out, f.len);
            } else {
                put_u16(out, f.id | 0x8000);
                put_u16(out, f.len);
                out.extend_from_slice(&f.pen.to_be_bytes());
            }
        }
    }
    close_set(out, start);
}

/// Opens a data set of `shape`'s template; close it with [`close_set`].
pub fn open_data_set(shape: Shape, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    put_u16(out, shape.template_id());
    put_u16(out, 0);
    start
}

/// Writes the length of the set that starts at `start`.
pub fn close_set(out: &mut [u8], start: usize) {
    let len = (out.len() - start) as u16;
    out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// The message header, with the length of the `total` bytes of the message.
pub fn message_header(total: usize, export_secs: u32, sequence: u32, domain: u32) -> [u8; 16] {
    let mut h = [0u8; MESSAGE_HEADER];
    h[0..2].copy_from_slice(&VERSION.to_be_bytes());
    h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    h[4..8].copy_from_slice(&export_secs.to_be_bytes());
    h[8..12].copy_from_slice(&sequence.to_be_bytes());
    h[12..16].copy_from_slice(&domain.to_be_bytes());
    h
}

/// Writes `flow` as a data record of `shape` (the caller opened a data set
/// of that shape); `idle`: an interim record made because the flow's packets
/// stopped (its end reason is then the idle timeout).
pub fn record(flow: &StoredFlow, shape: Shape, idle: bool, out: &mut Vec<u8>) {
    let f = &flow.flow;
    out.extend_from_slice(&u64::try_from(flow.first_ms).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&u64::try_from(flow.last_ms).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&f.src_mac.0);
    out.extend_from_slice(&f.dst_mac.0);
    put_addr(out, f.src_ip, shape.v6);
    put_addr(out, f.dst_ip, shape.v6);
    // ICMP echo flows carry the echo id as both ports: not transport ports.
    let ports = matches!(f.proto, ip_proto::TCP | ip_proto::UDP);
    put_u16(out, if ports { f.src_port } else { 0 });
    put_u16(out, if ports { f.dst_port } else { 0 });
    out.push(f.proto);
    put_u16(out, f.vlan[0]);
    put_u16(out, f.vlan[1]);
    out.extend_from_slice(&f.bytes[0].to_be_bytes());
    out.extend_from_slice(&f.packets[0].to_be_bytes());
    out.extend_from_slice(&f.bytes[1].to_be_bytes());
    out.extend_from_slice(&f.packets[1].to_be_bytes());
    put_u16(out, u16::from(f.tcp_flags));
    out.push(end_reason(flow, idle));
    out.push(forwarding_status(f.verdict.action));
    out.push(firewall_event(flow));
    let (ingress, egress) = interfaces(f.orig_port);
    out.extend_from_slice(&ingress.to_be_bytes());
    out.extend_from_slice(&egress.to_be_bytes());
    // biflowDirection 1: the source is the initiator.
    out.push(1);
    if shape.enterprise {
        let rule = match f.verdict.reason {
            Reason::Rule(id) => id,
            _ => 0,
        };
        out.extend_from_slice(&rule.to_be_bytes());
        out.push(reason_code(f.verdict.reason));
        out.push(match f.verdict.mode {
            Mode::Learn => 1,
            Mode::Audit => 2,
            Mode::Enforce => 3,
        });
        put_string(out, &flow.src.name);
        put_string(out, &flow.dst.name);
        put_groups(out, &flow.src);
        put_groups(out, &flow.dst);
    }
}

/// The interface numbers of a flow: its initiator's segment, then the
/// other (segment A is 1, B is 2).
pub fn interfaces(orig: Port) -> (u32, u32) {
    match orig {
        Port::A => (1, 2),
        Port::B => (2, 1),
    }
}

/// flowEndReason (RFC 7011's registry): 1 idle timeout (an interim record
/// made because the flow's packets stopped, or an end by the table's idle
/// timeout), 2 active timeout (an interim record of a running flow), 3 end
/// of flow detected (TCP
/// closed by FIN or RST, or the 5-tuple reused by a new connection), 4
/// forced end (the appliance stopped, or a replay ended, with the flow
/// open), 5 lack of resources (pushed out of a full table).
pub fn end_reason(flow: &StoredFlow, idle: bool) -> u8 {
    let closed = matches!(
        flow.flow.state,
        FlowState::Closing | FlowState::TimeWait | FlowState::Closed
    );
    match flow.kind {
        RecordKind::Interim if idle => 1,
        RecordKind::Interim => 2,
        RecordKind::Ended(EndReason::Evicted) => 5,
        RecordKind::Ended(EndReason::Reused) => 3,
        RecordKind::Ended(_) if closed => 3,
        RecordKind::Ended(EndReason::Idle) => 1,
        RecordKind::Ended(EndReason::Flushed) => 4,
    }
}

/// forwardingStatus (RFC 7270): 64 forwarded, 129 dropped by an ACL deny
/// (every policy deny: a rule, a quarantine, the blocklist, the default).
pub fn forwarding_status(action: Action) -> u8 {
    match action {
        Action::Allow => 64,
        Action::Deny => 129,
    }
}

/// firewallEvent (IANA 233): 2 flow deleted (an allowed flow's end), 3 flow
/// denied, 4 flow alert (audit or learn let through what policy denies),
/// 5 flow update (an interim record of an allowed flow).
pub fn firewall_event(flow: &StoredFlow) -> u8 {
    let v = &flow.flow.verdict;
    match (v.action, v.would_deny, flow.kind) {
        (Action::Deny, _, _) => 3,
        (Action::Allow, true, _) => 4,
        (Action::Allow, false, RecordKind::Interim) => 5,
        (Action::Allow, false, RecordKind::Ended(_)) => 2,
    }
}

/// bulkhead's verdict reason code: 1 rule, 2 quarantine, 3 management
/// exception, 4 blocklist, 5 the mode's default, 6 threat intel.
pub fn reason_code(r: Reason) -> u8 {
    match r {
        Reason::Rule(_) => 1,
        Reason::Quarantine => 2,
        Reason::Management => 3,
        Reason::Blocklist => 4,
        Reason::Default => 5,
        Reason::Intel(_) => 6,
    }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_addr(out: &mut Vec<u8>, ip: IpAddr, v6: bool) {
    match (ip, v6) {
        (IpAddr::V4(a), false) => out.extend_from_slice(&a.octets()),
        (IpAddr::V4(a), true) => out.extend_from_slice(&a.to_ipv6_mapped().octets()),
        (IpAddr::V6(a), _) => out.extend_from_slice(&a.octets()),
    }
}

/// Longest string element written (longer names are cut at a character
/// boundary).
pub const MAX_STRING: usize = 250;

/// A variable-length string (RFC 7011 7.): one length byte below 255, else
/// 255 and two length bytes.
fn put_string(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(MAX_STRING);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let bytes = &s.as_bytes()[..end];
    if bytes.len() < 255 {
        out.push(bytes.len() as u8);
    } else {
        out.push(255);
        put_u16(out, bytes.len() as u16);
    }
    out.extend_from_slice(bytes);
}

fn put_groups(out: &mut Vec<u8>, id: &Identity) {
    put_string(out, &id.groups.join(","));
}
