//! The layouts userspace writes into the maps must be the C program's. The
//! committed object carries its types as BTF: read them and compare each
//! struct's size and field offsets with the Rust mirror's.

use super::{BpfFlowValue, BpfTierCount};
use crate::flow::FlowKey;
use object::{Object, ObjectSection};
use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};

static OBJECT: &[u8] = include_bytes!("../../../bpf/bulkhead.o");

const BTF_KIND_STRUCT: u32 = 4;

/// Size and field offsets (bytes) of every struct in the object's BTF, by name.
fn btf_structs() -> BTreeMap<String, (u32, BTreeMap<String, u32>)> {
    let elf = object::File::parse(OBJECT).expect("bulkhead.o is an ELF object");
    let btf = elf
        .section_by_name(".BTF")
        .expect("bulkhead.o has BTF (built with -g)")
        .data()
        .expect("BTF section readable");
    let u16_at = |at: usize| u16::from_le_bytes([btf[at], btf[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(btf[at..at + 4].try_into().unwrap());
    assert_eq!(u16_at(0), 0xeb9f, "BTF magic (little-endian object)");
    let hdr_len = u32_at(4) as usize;
    let (type_off, type_len) = (u32_at(8) as usize, u32_at(12) as usize);
    let str_off = u32_at(16) as usize;
    let strings = hdr_len + str_off;
    let name = |off: u32| -> String {
        let start = strings + off as usize;
        let end = start + btf[start..].iter().position(|&b| b == 0).unwrap();
        String::from_utf8(btf[start..end].to_vec()).unwrap()
    };

    let mut out = BTreeMap::new();
    let mut at = hdr_len + type_off;
    let end = at + type_len;
    while at < end {
        let (name_off, info, size) = (u32_at(at), u32_at(at + 4), u32_at(at + 8));
        at += 12;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let kind_flag = info >> 31 == 1;
        // Bytes that follow the common header, per kind (linux/btf.h).
        let extra = match kind {
            1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
            3 => 12,                      // ARRAY
            4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
            6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
            2 | 7..=12 | 16 | 18 => 0,    // PTR, FWD, TYPEDEF, qualifiers, FUNC, FLOAT, TYPE_TAG
            other => panic!("unknown BTF kind {other}"),
        };
        if kind == BTF_KIND_STRUCT && name_off != 0 {
            let mut fields = BTreeMap::new();
            for m in 0..vlen {
                let base = at + 12 * m;
                let bits = u32_at(base + 8);
                let bit_offset = if kind_flag { bits & 0xff_ffff } else { bits };
                assert_eq!(bit_offset % 8, 0, "no bitfields in shared structs");
                fields.insert(name(u32_at(base)), bit_offset / 8);
            }
            out.insert(name(name_off), (size, fields));
        }
        at += extra;
    }
    out
}

fn expect(name: &str, size: usize, fields: &[(&str, usize)]) {
    let structs = btf_structs();
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
        "bulkhead_tier_count",
        size_of::<BpfTierCount>(),
        &[
            ("packets", offset_of!(BpfTierCount, packets)),
            ("bytes", offset_of!(BpfTierCount, bytes)),
        ],
    );
}
