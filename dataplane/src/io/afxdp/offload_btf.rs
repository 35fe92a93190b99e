//! The layouts userspace writes into the maps must be the C program's. The
//! committed object carries its types as BTF: read them and compare each
//! struct's size and field offsets with the Rust mirror's.

use super::super::xdp::BpfConfig;
use super::{BpfFlowValue, BpfTierCount};
use crate::flow::FlowKey;
use abi_gen::btf::Btf;
use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};

static OBJECT: &[u8] = include_bytes!("../../../bpf/bulkhead.o");

fn expect(name: &str, size: usize, fields: &[(&str, usize)]) {
    let structs = Btf::parse(OBJECT).unwrap().structs().unwrap();
    let (c_size, c_fields) = structs
        .get(name)
        .unwrap_or_else(|| panic!("struct {name} missing from bulkhead.o's BTF"));
    assert_eq!(*c_size as usize, size, "size of struct {name}");
    let rust: BTreeMap<String, u32> = fields
        .iter()
        .map(|(n, o)| (n.to_string(), *o as u32))
        .collect();
    assert_eq!(c_fields, &rust, "fields and offsets of struct {name}");
}

#[test]
fn layouts_match_the_programs_btf() {
    expect(
        "bulkhead_flow_key",
        size_of::<FlowKey>(),
        &[
            ("addr_lo", offset_of!(FlowKey, addr_lo)),
            ("addr_hi", offset_of!(FlowKey, addr_hi)),
            ("port_lo", offset_of!(FlowKey, port_lo)),
            ("port_hi", offset_of!(FlowKey, port_hi)),
            ("vlan", offset_of!(FlowKey, vlan)),
            ("proto", offset_of!(FlowKey, proto)),
            ("family", offset_of!(FlowKey, family)),
            ("_pad", offset_of!(FlowKey, _pad)),
        ],
    );
    expect(
        "bulkhead_flow_val",
        size_of::<BpfFlowValue>(),
        &[
            ("generation", offset_of!(BpfFlowValue, generation)),
            ("packets", offset_of!(BpfFlowValue, packets)),
            ("bytes", offset_of!(BpfFlowValue, bytes)),
            ("last_seen", offset_of!(BpfFlowValue, last_seen)),
            ("action", offset_of!(BpfFlowValue, action)),
            ("mac", offset_of!(BpfFlowValue, mac)),
        ],
    );
    expect(
        "bulkhead_cfg",
        size_of::<BpfConfig>(),
        &[
            ("fail_mode", offset_of!(BpfConfig, fail_mode)),
            ("_pad", offset_of!(BpfConfig, _pad)),
        ],
    );
    expect(
        "bulkhead_tier_count",
        size_of::<BpfTierCount>(),
        &[
            ("packets", offset_of!(BpfTierCount, packets)),
            ("bytes", offset_of!(BpfTierCount, bytes)),
        ],
    );
}
