//! The flat variant of the best form, for policies where every endpoint is a
//! MAC: one verdict map keyed by the whole `ether saddr . ether daddr .
//! l4proto . dport` concatenation (a hash, no intervals), so a packet costs one
//! lookup. Measured here it forwards about a third more than the class maps,
//! so it is used whenever it applies:
//!
//! - every group and the default mode are enforce (the default is a plain drop);
//! - no IP-set groups, and no rule side is `any` (every endpoint is enumerable);
//! - accepted port ranges are short (at most [`MAX_RANGE`] ports, expanded);
//! - at most [`MAX_ELEMENTS`] elements (MAC pairs x accepted ports).
//!
//! Otherwise the class form (`best.rs`) is rendered.

use super::best::{resolve, RuleIndex};
use super::prep::{Prepared, Side};
use super::{mac_text, write_elements};
use dataplane::policy::Mode;
use dataplane::wire::MacAddr;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The longest accepted port range expanded into single ports.
pub const MAX_RANGE: u32 = 64;
/// The most elements the flat map may have.
pub const MAX_ELEMENTS: usize = 2_000_000;

/// Renders the flat form if the policy allows it; `false` (nothing written) if not.
pub(super) fn render(p: &Prepared, out: &mut String, fwd: &mut Vec<String>) -> bool {
    let all_enforce = p.default_mode == Mode::Enforce
        && p.groups
            .iter()
            .all(|g| g.mode == Mode::Enforce && g.nets.is_empty());
    let no_any = p
        .rules
        .iter()
        .all(|r| !matches!(r.src, Side::Any) && !matches!(r.dst, Side::Any));
    if !all_enforce || !no_any {
        return false;
    }
    let mut classes: BTreeMap<&[usize], Vec<MacAddr>> = BTreeMap::new();
    for (mac, groups) in &p.mac_groups {
        if !groups.is_empty() {
            classes.entry(groups.as_slice()).or_default().push(*mac);
        }
    }
    let index = RuleIndex::new(&p.rules);
    let mut ported = Vec::new();
    let mut other = Vec::new();
    for (s, smacs) in &classes {
        for (d, dmacs) in &classes {
            let rules = index.candidates(p, s, d);
            if rules.is_empty() {
                continue;
            }
            let acc = resolve(&rules);
            let mut keys = Vec::new();
            for (name, lo, hi) in acc.ported {
                if hi - lo >= MAX_RANGE {
                    return false;
                }
                keys.extend((lo..=hi).map(|port| (format!(". {name} . {port}"), true)));
            }
            for (lo, hi) in acc.other {
                keys.extend((lo..=hi).map(|proto| (format!(". {proto}"), false)));
            }
            if keys.is_empty() {
                continue;
            }
            if ported.len() + other.len() + smacs.len() * dmacs.len() * keys.len() > MAX_ELEMENTS {
                return false;
            }
            for sm in smacs {
                for dm in dmacs {
                    let pair = format!("{} . {}", mac_text(*sm), mac_text(*dm));
                    for (k, has_port) in &keys {
                        let e = format!("{pair} {k} : accept");
                        if *has_port {
                            ported.push(e);
                        } else {
                            other.push(e);
                        }
                    }
                }
            }
        }
    }
    out.push_str(
        "\t# (source MAC, destination MAC, protocol, port) -> verdict, first match resolved\n",
    );
    let mut map = |name: &str, ty: &str, elems: &[String]| {
        let _ = write!(out, "\tmap {name} {{\n\t\ttype {ty} : verdict;\n");
        write_elements(out, elems);
        out.push_str("\t}\n");
    };
    if !ported.is_empty() {
        map(
            "flat_ports",
            "ether_addr . ether_addr . inet_proto . inet_service",
            &ported,
        );
        fwd.push("ether saddr . ether daddr . meta l4proto . th dport vmap @flat_ports".into());
    }
    if !other.is_empty() {
        map("flat_other", "ether_addr . ether_addr . inet_proto", &other);
        fwd.push("ether saddr . ether daddr . meta l4proto vmap @flat_other".into());
    }
    fwd.push("drop".into());
    true
}
