//! A reader of the BTF in a compiled XDP object: the types, with the names,
//! sizes, members, enum values and section variables the ABI is read from.
//! Every read is bounds-checked: a malformed object is an [`AbiError`].

use crate::AbiError;
use object::{Object, ObjectSection};
use std::collections::BTreeMap;

pub const KIND_PTR: u32 = 2;
pub const KIND_STRUCT: u32 = 4;
pub const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_DATASEC: u32 = 15;
const KIND_TYPE_TAG: u32 = 18;

/// One BTF type, with what the ABI is read from.
#[derive(Debug, Clone)]
pub struct Type {
    pub kind: u32,
    pub name: String,
    /// Size in bytes (INT, STRUCT, UNION, ENUM, DATASEC) or the referenced
    /// type id (PTR, TYPEDEF, qualifiers, VAR, FUNC).
    pub size_or_type: u32,
    /// STRUCT / UNION members: name, type id, offset in bits; DATASEC
    /// variables: "", the VAR's type id, offset in bits.
    pub members: Vec<(String, u32, u32)>,
    /// ENUM / ENUM64 values, in declaration order.
    pub values: Vec<(String, i64)>,
}

/// A struct's size and its members' offsets (bytes), by name.
pub type StructLayout = (u32, BTreeMap<String, u32>);

/// The types of one object's `.BTF` section. Type ids start at 1.
#[derive(Debug)]
pub struct Btf {
    types: Vec<Type>,
}

fn bad(what: &str) -> AbiError {
    AbiError::Btf(what.to_string())
}

/// Little-endian reads from the section, each checked.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u16(&self, at: usize) -> Result<u16, AbiError> {
        let b = self.0.get(at..at + 2).ok_or_else(|| bad("truncated"))?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&self, at: usize) -> Result<u32, AbiError> {
        let b = self.0.get(at..at + 4).ok_or_else(|| bad("truncated"))?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// The NUL-terminated string at `at`.
    fn str(&self, at: usize) -> Result<String, AbiError> {
        let rest = self.0.get(at..).ok_or_else(|| bad("string offset"))?;
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| bad("unterminated string"))?;
        String::from_utf8(rest[..len].to_vec()).map_err(|_| bad("string not UTF-8"))
    }
}

impl Btf {
    /// The BTF of ELF object `object` (a little-endian BPF object built with -g).
    pub fn parse(object: &[u8]) -> Result<Btf, AbiError> {
        let elf = object::File::parse(object).map_err(|e| AbiError::Elf(e.to_string()))?;
        let data = elf
            .section_by_name(".BTF")
            .ok_or(AbiError::NoBtf)?
            .data()
            .map_err(|e| AbiError::Elf(e.to_string()))?;
        let r = Reader(data);
        if r.u16(0)? != 0xeb9f {
            return Err(bad("not little-endian BTF (magic)"));
        }
        let hdr_len = r.u32(4)? as usize;
        let (type_off, type_len) = (r.u32(8)? as usize, r.u32(12)? as usize);
        let strings = hdr_len + r.u32(16)? as usize;
        let name = |off: u32| r.str(strings + off as usize);

        let mut types = Vec::new();
        let mut at = hdr_len + type_off;
        let end = at + type_len;
        while at < end {
            let (name_off, info, size_or_type) = (r.u32(at)?, r.u32(at + 4)?, r.u32(at + 8)?);
            at += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            let mut t = Type {
                kind,
                name: name(name_off)?,
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
                other => return Err(AbiError::Btf(format!("unknown kind {other}"))),
            };
            for m in 0..vlen {
                match kind {
                    4 | 5 => {
                        let base = at + 12 * m;
                        let bits = r.u32(base + 8)?;
                        let bit_offset = if kind_flag { bits & 0xff_ffff } else { bits };
                        let member = (name(r.u32(base)?)?, r.u32(base + 4)?, bit_offset);
                        t.members.push(member);
                    }
                    15 => {
                        let base = at + 12 * m;
                        let var = (String::new(), r.u32(base)?, r.u32(base + 4)? * 8);
                        t.members.push(var);
                    }
                    6 => {
                        let base = at + 8 * m;
                        let raw = r.u32(base + 4)?;
                        // kind_flag: signed values.
                        let value = if kind_flag {
                            i64::from(raw as i32)
                        } else {
                            i64::from(raw)
                        };
                        t.values.push((name(r.u32(base)?)?, value));
                    }
                    19 => {
                        let base = at + 12 * m;
                        let raw = u64::from(r.u32(base + 4)?) | u64::from(r.u32(base + 8)?) << 32;
                        t.values.push((name(r.u32(base)?)?, raw as i64));
                    }
                    _ => {}
                }
            }
            types.push(t);
            at += extra;
        }
        Ok(Btf { types })
    }

    /// The type with id `id` (1-based; 0 is void).
    pub fn get(&self, id: u32) -> Result<&Type, AbiError> {
        (id as usize)
            .checked_sub(1)
            .and_then(|i| self.types.get(i))
            .ok_or_else(|| AbiError::Btf(format!("no type {id}")))
    }

    /// `id` with typedefs and qualifiers looked through.
    pub fn resolve(&self, mut id: u32) -> Result<&Type, AbiError> {
        // A chain longer than the table is a loop.
        for _ in 0..=self.types.len() {
            let t = self.get(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type;
                }
                _ => return Ok(t),
            }
        }
        Err(bad("a loop of typedefs"))
    }

    /// The named struct `name`, if there is one.
    pub fn struct_named(&self, name: &str) -> Option<&Type> {
        self.types
            .iter()
            .find(|t| t.kind == KIND_STRUCT && t.name == name)
    }

    /// The variables of section `name` (e.g. `.maps`): name and type id.
    pub fn section_vars(&self, name: &str) -> Result<Vec<(String, u32)>, AbiError> {
        let Some(sec) = self
            .types
            .iter()
            .find(|t| t.kind == KIND_DATASEC && t.name == name)
        else {
            return Ok(Vec::new());
        };
        sec.members
            .iter()
            .map(|(_, var, _)| {
                let v = self.get(*var)?;
                Ok((v.name.clone(), v.size_or_type))
            })
            .collect()
    }

    /// How C names type `id` (`struct x`, `enum y`, `__u32`).
    pub fn c_name(&self, id: u32) -> Result<String, AbiError> {
        let t = self.get(id)?;
        Ok(match t.kind {
            KIND_STRUCT => format!("struct {}", t.name),
            KIND_ENUM => format!("enum {}", t.name),
            _ => t.name.clone(),
        })
    }

    /// Size and member offsets (bytes) of every named struct, by name. A
    /// bitfield member is an error: shared structs have none.
    pub fn structs(&self) -> Result<BTreeMap<String, StructLayout>, AbiError> {
        let mut out = BTreeMap::new();
        for t in self
            .types
            .iter()
            .filter(|t| t.kind == KIND_STRUCT && !t.name.is_empty())
        {
            let mut fields = BTreeMap::new();
            for (name, _, bits) in &t.members {
                if bits % 8 != 0 {
                    return Err(AbiError::Btf(format!("{}.{name} is a bitfield", t.name)));
                }
                fields.insert(name.clone(), bits / 8);
            }
            out.insert(t.name.clone(), (t.size_or_type, fields));
        }
        Ok(out)
    }
}
