//! A reader of the BTF in the committed XDP objects, for the tests that check
//! the Rust side of the ABI against them: the struct layouts
//! (`offload_btf.rs`) and the generated constants (`abi_gen.rs`). Test code:
//! it panics on an object it cannot read.

use object::{Object, ObjectSection};
use std::collections::BTreeMap;

pub(super) const KIND_PTR: u32 = 2;
pub(super) const KIND_STRUCT: u32 = 4;
pub(super) const KIND_ENUM: u32 = 6;
const KIND_DATASEC: u32 = 15;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

/// One BTF type, with what the tests read of it.
#[derive(Debug, Clone)]
pub(super) struct Type {
    pub kind: u32,
    pub name: String,
    /// Size in bytes (INT, STRUCT, UNION, ENUM, DATASEC) or the referenced
    /// type id (PTR, TYPEDEF, qualifiers, VAR, FUNC).
    pub size_or_type: u32,
    /// STRUCT / UNION members: name, type id, offset in bits; DATASEC
    /// variables: "", the VAR's type id, offset in bits.
    pub members: Vec<(String, u32, u32)>,
    /// ENUM values, in declaration order (ENUM64 values too).
    pub values: Vec<(String, i64)>,
}

/// The types of one object's `.BTF` section. Type ids start at 1.
pub(super) struct Btf {
    types: Vec<Type>,
}

impl Btf {
    pub(super) fn parse(object: &[u8]) -> Btf {
        let elf = object::File::parse(object).expect("an ELF object");
        let btf = elf
            .section_by_name(".BTF")
            .expect("the object has BTF (built with -g)")
            .data()
            .expect("BTF section readable");
        let u16_at = |at: usize| u16::from_le_bytes([btf[at], btf[at + 1]]);
        let u32_at = |at: usize| u32::from_le_bytes(btf[at..at + 4].try_into().unwrap());
        assert_eq!(u16_at(0), 0xeb9f, "BTF magic (little-endian object)");
        let hdr_len = u32_at(4) as usize;
        let (type_off, type_len) = (u32_at(8) as usize, u32_at(12) as usize);
        let strings = hdr_len + u32_at(16) as usize;
        let name = |off: u32| -> String {
            let start = strings + off as usize;
            let end = start + btf[start..].iter().position(|&b| b == 0).unwrap();
            String::from_utf8(btf[start..end].to_vec()).unwrap()
        };

        let mut types = Vec::new();
        let mut at = hdr_len + type_off;
        let end = at + type_len;
        while at < end {
            let (name_off, info, size_or_type) = (u32_at(at), u32_at(at + 4), u32_at(at + 8));
            at += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            let mut t = Type {
                kind,
                name: name(name_off),
                size_or_type,
                members: Vec::new(),
                values: Vec::new(),
            };
            // Bytes that follow the common header, per kind (linux/btf.h).
            let extra = match kind {
                1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
                3 => 12,                      // ARRAY
                4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
                6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
                2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, qualifiers, FUNC, FLOAT, TYPE_TAG
                other => panic!("unknown BTF kind {other}"),
            };
            for m in 0..vlen {
                match kind {
                    4 | 5 => {
                        let base = at + 12 * m;
                        let bits = u32_at(base + 8);
                        let bit_offset = if kind_flag { bits & 0xff_ffff } else { bits };
                        t.members
                            .push((name(u32_at(base)), u32_at(base + 4), bit_offset));
                    }
                    6 => {
                        let base = at + 8 * m;
                        let raw = u32_at(base + 4);
                        // kind_flag: signed values.
                        let value = if kind_flag {
                            i64::from(raw as i32)
                        } else {
                            i64::from(raw)
                        };
                        t.values.push((name(u32_at(base)), value));
                    }
                    15 => {
                        // DATASEC: the variables it holds (type id, offset).
                        let base = at + 12 * m;
                        t.members
                            .push((String::new(), u32_at(base), u32_at(base + 4) * 8));
                    }
                    19 => {
                        let base = at + 12 * m;
                        let raw = u64::from(u32_at(base + 4)) | u64::from(u32_at(base + 8)) << 32;
                        t.values.push((name(u32_at(base)), raw as i64));
                    }
                    _ => {}
                }
            }
            types.push(t);
            at += extra;
        }
        Btf { types }
    }

    /// The type with id `id` (1-based; 0 is void).
    pub(super) fn get(&self, id: u32) -> &Type {
        &self.types[id as usize - 1]
    }

    /// `id` with typedefs and qualifiers looked through.
    pub(super) fn resolve(&self, mut id: u32) -> &Type {
        loop {
            let t = self.get(id);
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type;
                }
                _ => return t,
            }
        }
    }

    /// The named struct `name`, if the object has it.
    pub(super) fn struct_named(&self, name: &str) -> Option<&Type> {
        self.types
            .iter()
            .find(|t| t.kind == KIND_STRUCT && t.name == name)
    }

    /// The variables of section `name` (e.g. `.maps`): name and type id, in
    /// the order of the source.
    pub(super) fn section_vars(&self, name: &str) -> Vec<(String, u32)> {
        let Some(sec) = self
            .types
            .iter()
            .find(|t| t.kind == KIND_DATASEC && t.name == name)
        else {
            return Vec::new();
        };
        sec.members
            .iter()
            .map(|(_, var, _)| {
                let v = self.get(*var);
                (v.name.clone(), v.size_or_type)
            })
            .collect()
    }

    /// How C names type `id` (`struct x`, `enum y`, `__u32`).
    pub(super) fn c_name(&self, id: u32) -> String {
        let t = self.get(id);
        match t.kind {
            KIND_STRUCT => format!("struct {}", t.name),
            KIND_ENUM => format!("enum {}", t.name),
            _ => t.name.clone(),
        }
    }

    /// Size and field offsets (bytes) of every named struct, by name.
    pub(super) fn structs(&self) -> BTreeMap<String, (u32, BTreeMap<String, u32>)> {
        self.types
            .iter()
            .filter(|t| t.kind == KIND_STRUCT && !t.name.is_empty())
            .map(|t| {
                let fields = t
                    .members
                    .iter()
                    .map(|(name, _, bits)| {
                        assert_eq!(bits % 8, 0, "no bitfields in shared structs");
                        (name.clone(), bits / 8)
                    })
                    .collect();
                (t.name.clone(), (t.size_or_type, fields))
            })
            .collect()
    }
}
