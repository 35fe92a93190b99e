//! The best form: membership classes in the packet mark, a chain per
//! destination class, and per chain one concatenated interval verdict map with
//! first-match order resolved ahead of time.

use super::prep::{Prepared, Rule};
use super::{mac_text, write_elements, NftError};
use dataplane::policy::{Action, Mode};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

/// Group combinations -> class ids (0 = in no group).
struct Classes {
    ids: BTreeMap<Vec<usize>, u32>,
}

impl Classes {
    fn new() -> Self {
        let mut ids = BTreeMap::new();
        ids.insert(Vec::new(), 0);
        Classes { ids }
    }

    fn id(&mut self, groups: &[usize]) -> u32 {
        let n = self.ids.len() as u32;
        *self.ids.entry(groups.to_vec()).or_insert(n)
    }

    fn union(&mut self, a: &[usize], b: &[usize]) -> (Vec<usize>, u32) {
        let mut u: Vec<usize> = a.iter().chain(b).copied().collect();
        u.sort_unstable();
        u.dedup();
        let id = self.id(&u);
        (u, id)
    }
}

/// An address range (as integers) and the IP-set groups covering all of it.
struct Segment {
    lo: u128,
    hi: u128,
    groups: Vec<usize>,
}

/// Cuts the IP-set groups' prefixes of one family into elementary ranges.
fn segments(p: &Prepared, v6: bool) -> Vec<Segment> {
    let mut nets: Vec<(u128, u128, usize)> = Vec::new();
    for (g, grp) in p.groups.iter().enumerate() {
        for n in &grp.nets {
            match (n, v6) {
                (IpNet::V4(n), false) => nets.push((
                    u32::from(n.network()).into(),
                    u32::from(n.broadcast()).into(),
                    g,
                )),
                (IpNet::V6(n), true) => {
                    nets.push((n.network().into(), n.broadcast().into(), g));
                }
                _ => {}
            }
        }
    }
    let mut cuts: BTreeSet<u128> = BTreeSet::new();
    for &(lo, hi, _) in &nets {
        cuts.insert(lo);
        if let Some(h) = hi.checked_add(1) {
            cuts.insert(h);
        }
    }
    let cuts: Vec<u128> = cuts.into_iter().collect();
    let top = if v6 { u128::MAX } else { u32::MAX.into() };
    let mut out: Vec<Segment> = Vec::new();
    for (i, &lo) in cuts.iter().enumerate() {
        let hi = cuts.get(i + 1).map_or(top, |&n| n - 1);
        let mut groups: Vec<usize> = nets
            .iter()
            .filter(|&&(a, b, _)| a <= lo && hi <= b)
            .map(|&(_, _, g)| g)
            .collect();
        groups.sort_unstable();
        groups.dedup();
        if groups.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.groups == groups && last.hi.checked_add(1) == Some(lo) => {
                last.hi = hi
            }
            _ => out.push(Segment { lo, hi, groups }),
        }
    }
    out
}

fn addr_text(v: u128, v6: bool) -> String {
    if v6 {
        std::net::Ipv6Addr::from(v).to_string()
    } else {
        std::net::Ipv4Addr::from(v as u32).to_string()
    }
}

fn range_text(lo: u128, hi: u128, v6: bool) -> String {
    if lo == hi {
        addr_text(lo, v6)
    } else {
        format!("{}-{}", addr_text(lo, v6), addr_text(hi, v6))
    }
}

fn write_map(out: &mut String, name: &str, ty: &str, interval: bool, elems: &[String]) {
    let _ = write!(out, "\tmap {name} {{\n\t\ttype {ty};\n");
    if interval {
        out.push_str("\t\tflags interval;\n");
    }
    write_elements(out, elems);
    out.push_str("\t}\n");
}

pub(super) fn render(
    p: &Prepared,
    out: &mut String,
    fwd: &mut Vec<String>,
    chains: &mut String,
) -> Result<(), NftError> {
    if super::flat::render(p, out, fwd) {
        return Ok(());
    }
    let mut classes = Classes::new();
    let segs = [segments(p, false), segments(p, true)];
    let has_ip = segs.iter().any(|s| !s.is_empty());

    // MAC classes.
    let mut mac_class: Vec<(String, Vec<usize>, u32)> = Vec::new();
    let mut base: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    base.insert(0, Vec::new());
    for (mac, groups) in &p.mac_groups {
        if groups.is_empty() {
            continue;
        }
        let id = classes.id(groups);
        base.insert(id, groups.clone());
        mac_class.push((mac_text(*mac), groups.clone(), id));
    }

    // Source: the mark holds the source class.
    let mut src: BTreeMap<u32, Vec<usize>> = base.clone();
    fwd.push("meta mark set 0".into());
    if !mac_class.is_empty() {
        let elems: Vec<String> = mac_class
            .iter()
            .map(|(m, _, id)| format!("{m} : {id}"))
            .collect();
        out.push_str("\t# source MAC -> class (its groups)\n");
        write_map(out, "src_mac", "ether_addr : mark", false, &elems);
        fwd.push("meta mark set ether saddr map @src_mac".into());
    }
    for (v6, segs) in [false, true].into_iter().zip(&segs) {
        if segs.is_empty() {
            continue;
        }
        let (fam, ty) = if v6 {
            ("ip6", "ipv6_addr")
        } else {
            ("ip", "ipv4_addr")
        };
        let mut elems = Vec::new();
        for (&c, groups) in &base {
            for s in segs {
                let (u, id) = classes.union(groups, &s.groups);
                src.insert(id, u);
                elems.push(format!("{} . {c} : {id}", range_text(s.lo, s.hi, v6)));
            }
        }
        let name = format!("src_{fam}");
        out.push_str("\t# source address . MAC class -> class\n");
        write_map(out, &name, &format!("{ty} . mark : mark"), true, &elems);
        fwd.push(format!("meta mark set {fam} saddr . meta mark map @{name}"));
    }

    // Destination: a chain per class.
    let mut dst: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    let target = |id: u32| {
        if has_ip {
            format!("goto dmac_{id}")
        } else {
            format!("goto pair_{id}")
        }
    };
    if !mac_class.is_empty() {
        let elems: Vec<String> = mac_class
            .iter()
            .map(|(m, _, id)| format!("{m} : {}", target(*id)))
            .collect();
        out.push_str("\t# destination MAC -> its class's chain\n");
        write_map(out, "dst_mac", "ether_addr : verdict", false, &elems);
        fwd.push("ether daddr vmap @dst_mac".into());
    }
    fwd.push(target(0));
    for (&k, groups) in &base {
        dst.insert(k, groups.clone());
        if !has_ip {
            continue;
        }
        let _ = writeln!(chains, "\n\tchain dmac_{k} {{");
        for (v6, segs) in [false, true].into_iter().zip(&segs) {
            if segs.is_empty() {
                continue;
            }
            let fam = if v6 { "ip6" } else { "ip" };
            let elems: Vec<String> = segs
                .iter()
                .map(|s| {
                    let (u, id) = classes.union(groups, &s.groups);
                    dst.insert(id, u);
                    format!("{} : goto pair_{id}", range_text(s.lo, s.hi, v6))
                })
                .collect();
            let _ = writeln!(chains, "\t\t{fam} daddr vmap {{ {} }}", elems.join(", "));
        }
        let _ = writeln!(chains, "\t\tgoto pair_{k}\n\t}}");
    }
    if classes.ids.len() > u32::MAX as usize {
        return Err(NftError::TooManyClasses(classes.ids.len()));
    }

    // Source classes whose mode is enforce (for the defaults).
    let enforce_src: Vec<String> = src
        .iter()
        .filter(|(_, g)| p.class_mode(g) == Mode::Enforce)
        .map(|(id, _)| id.to_string())
        .collect();
    if !enforce_src.is_empty() && enforce_src.len() < src.len() {
        out.push_str("\t# source classes in enforce mode\n");
        let _ = write!(out, "\tset enforce_src {{\n\t\ttype mark;\n");
        write_elements(out, &enforce_src);
        out.push_str("\t}\n");
    }

    let index = RuleIndex::new(&p.rules);
    for (&d, dgroups) in &dst {
        let mut ported = Vec::new();
        let mut other = Vec::new();
        for (&s, sgroups) in &src {
            let rules = index.candidates(p, sgroups, dgroups);
            if rules.is_empty() {
                continue;
            }
            // Outside enforce every verdict is accept (a deny is a would-deny),
            // as is the default: nothing to look up. In enforce the default is
            // drop, so only the accepted ranges need elements.
            if p.class_mode(sgroups).max(p.class_mode(dgroups)) != Mode::Enforce {
                continue;
            }
            let acc = resolve(&rules);
            for (name, lo, hi) in acc.ported {
                ported.push(format!("{s} . {name} . {} : accept", span(lo, hi)));
            }
            for (lo, hi) in acc.other {
                other.push(format!("{s} . {} : accept", span(lo, hi)));
            }
        }
        if !ported.is_empty() {
            write_map(
                out,
                &format!("pp_{d}"),
                "mark . inet_proto . inet_service : verdict",
                true,
                &ported,
            );
        }
        if !other.is_empty() {
            write_map(
                out,
                &format!("pn_{d}"),
                "mark . inet_proto : verdict",
                true,
                &other,
            );
        }
        let _ = writeln!(chains, "\n\tchain pair_{d} {{");
        if !ported.is_empty() {
            // Only TCP and UDP keys are in the map: no protocol guard needed.
            let _ = writeln!(
                chains,
                "\t\tmeta mark . meta l4proto . th dport vmap @pp_{d}"
            );
        }
        if !other.is_empty() {
            let _ = writeln!(chains, "\t\tmeta mark . meta l4proto vmap @pn_{d}");
        }
        // The default: drop if either end is in enforce mode.
        let tail = if p.class_mode(dgroups) == Mode::Enforce {
            "drop"
        } else if enforce_src.is_empty() {
            "accept"
        } else if enforce_src.len() == src.len() {
            "drop"
        } else {
            chains.push_str("\t\tmeta mark @enforce_src drop\n");
            "accept"
        };
        let _ = writeln!(chains, "\t\t{tail}\n\t}}");
    }
    Ok(())
}

/// Rules by (source group | any, destination group | any).
pub(super) struct RuleIndex {
    buckets: HashMap<(usize, usize), Vec<usize>>,
}

const ANY: usize = usize::MAX;

impl RuleIndex {
    pub fn new(rules: &[Rule]) -> Self {
        let mut buckets: HashMap<(usize, usize), Vec<usize>> = HashMap::new();
        let ids = |s: &super::prep::Side| match s {
            super::prep::Side::Any => vec![ANY],
            super::prep::Side::Groups(g) => g.clone(),
        };
        for (i, r) in rules.iter().enumerate() {
            for s in ids(&r.src) {
                for d in ids(&r.dst) {
                    buckets.entry((s, d)).or_default().push(i);
                }
            }
        }
        RuleIndex { buckets }
    }

    /// The rules that apply between two classes, in order.
    pub fn candidates<'a>(&self, p: &'a Prepared, s: &[usize], d: &[usize]) -> Vec<&'a Rule> {
        let mut idx: Vec<usize> = Vec::new();
        for &sg in s.iter().chain([&ANY]) {
            for &dg in d.iter().chain([&ANY]) {
                if let Some(b) = self.buckets.get(&(sg, dg)) {
                    idx.extend(b);
                }
            }
        }
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter().filter_map(|i| p.rules.get(i)).collect()
    }
}

/// What a class pair accepts: TCP/UDP port ranges, and other protocol ranges.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Accepted {
    pub ported: Vec<(&'static str, u32, u32)>,
    pub other: Vec<(u32, u32)>,
}

/// `lo` or `lo-hi`.
pub(super) fn span(lo: u32, hi: u32) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

/// First-match resolution of `rules` (in order, all applying to one enforce
/// class pair): the ranges they accept. Dropped ranges are left out: they are
/// the chain's default.
pub(super) fn resolve(rules: &[&Rule]) -> Accepted {
    let verdict = |r: &Rule| match r.action {
        Action::Allow => "accept",
        Action::Deny => "drop",
    };
    let mut acc = Accepted::default();
    for (num, name) in [(6u8, "tcp"), (17u8, "udp")] {
        let ranges: Vec<(u32, u32, &str)> = rules
            .iter()
            .filter(|r| r.proto.matches(num))
            .flat_map(|r| {
                let v = verdict(r);
                let full = [(0u32, 65535u32, v)];
                if r.ports.is_empty() {
                    full.to_vec()
                } else {
                    r.ports
                        .iter()
                        .map(|pr| (u32::from(pr.lo), u32::from(pr.hi), v))
                        .collect()
                }
            })
            .collect();
        for (lo, hi, v) in first_match(&ranges) {
            if v == "accept" {
                acc.ported.push((name, lo, hi));
            }
        }
    }
    // Other protocols: each one a rule names, and the ranges between (any-protocol rules).
    let named: BTreeSet<u8> = rules
        .iter()
        .filter_map(|r| r.proto.number())
        .filter(|&n| n != 6 && n != 17)
        .collect();
    let any = rules.iter().find(|r| r.proto.number().is_none());
    let mut ranges: Vec<(u32, u32, &str)> = Vec::new();
    for &n in &named {
        if let Some(r) = rules.iter().find(|r| r.proto.matches(n)) {
            ranges.push((n.into(), n.into(), verdict(r)));
        }
    }
    if let Some(r) = any {
        // Every protocol neither named nor TCP/UDP, as runs.
        let v = verdict(r);
        let mut run: Option<u32> = None;
        for n in 0u32..=256 {
            let free = n < 256 && n != 6 && n != 17 && !named.contains(&(n as u8));
            match (free, run) {
                (true, None) => run = Some(n),
                (false, Some(lo)) => {
                    ranges.push((lo, n - 1, v));
                    run = None;
                }
                _ => {}
            }
        }
    }
    ranges.sort_unstable();
    acc.other = ranges
        .into_iter()
        .filter(|r| r.2 == "accept")
        .map(|(lo, hi, _)| (lo, hi))
        .collect();
    acc
}

/// Elementary ranges of `ranges` (in rule order), each with the verdict of the
/// first range covering it; adjacent ranges with one verdict merged.
fn first_match<'v>(ranges: &[(u32, u32, &'v str)]) -> Vec<(u32, u32, &'v str)> {
    let mut cuts: Vec<u32> = ranges
        .iter()
        .flat_map(|&(lo, hi, _)| [lo, hi + 1])
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let n = cuts.len().saturating_sub(1);
    let mut paint: Vec<Option<&str>> = vec![None; n];
    // next[i]: the first unpainted segment at or after i (path-halving).
    let mut next: Vec<usize> = (0..=n).collect();
    fn find(next: &mut [usize], mut i: usize) -> usize {
        while next[i] != i {
            next[i] = next[next[i]];
            i = next[i];
        }
        i
    }
    for &(lo, hi, v) in ranges {
        let (Ok(a), Ok(b)) = (cuts.binary_search(&lo), cuts.binary_search(&(hi + 1))) else {
            continue;
        };
        let mut j = find(&mut next, a);
        while j < b {
            paint[j] = Some(v);
            next[j] = j + 1;
            j = find(&mut next, j + 1);
        }
    }
    let mut out: Vec<(u32, u32, &str)> = Vec::new();
    for (i, v) in paint.into_iter().enumerate() {
        let (Some(v), Some(&lo), Some(&end)) = (v, cuts.get(i), cuts.get(i + 1)) else {
            continue;
        };
        match out.last_mut() {
            Some(last) if last.2 == v && last.1 + 1 == lo => last.1 = end - 1,
            _ => out.push((lo, end - 1, v)),
        }
    }
    out
}

#[cfg(test)]
pub(super) fn first_match_for_tests<'v>(r: &[(u32, u32, &'v str)]) -> Vec<(u32, u32, &'v str)> {
    first_match(r)
}
