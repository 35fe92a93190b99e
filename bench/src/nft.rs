//! A compiled policy rendered as an nftables ruleset for a Linux bridge
//! (`bulkhead-bench nft`), so that a bridge + nftables can carry the
//! same policy as bulkhead in a side-by-side benchmark.
//!
//! Two forms, both in one `table bridge bulkhead` hooked at `forward`:
//!
//! - [`Form::Linear`]: the naive translation. One set per group (`ether_addr`,
//!   `ipv4_addr`, `ipv6_addr`), then one nftables rule per compiled rule, in
//!   order (a rule whose source or destination groups mix MAC and IP sets needs
//!   one nftables rule per combination). Cost grows with the rule count.
//! - [`Form::Best`]: what nftables does best. Each endpoint's membership (the
//!   set of its groups) is a *class*; the source class is looked up once
//!   (`meta mark set ether saddr map ...`, refined by `ip saddr . meta mark`
//!   maps when IP-set groups exist), the destination class picks a chain
//!   (`ether daddr vmap`), and that chain holds one concatenated, interval
//!   verdict map `meta mark . meta l4proto . th dport` with first-match order
//!   resolved ahead of time (overlapping rules cut into elementary port ranges,
//!   each with the verdict of the first rule that covers it). Lookups stay near
//!   flat as rules grow. The packet mark is used as scratch (set to 0 first).
//!   Where every endpoint is a MAC, every mode enforce and the expansion small,
//!   one flat hash map keyed by `ether saddr . ether daddr . l4proto . dport`
//!   replaces all that (one lookup a packet; see `nft/flat.rs`).
//!
//! Semantics, and what nftables cannot express:
//! - Precedence as in the dataplane: ARP and IPv6 control ICMPv6 pass;
//!   quarantine (by MAC, both directions, except the management exceptions);
//!   other non-IP frames pass; blocklist; ordered rules; the default of the
//!   effective mode. The effective mode (the strictest of both ends) is
//!   rendered exactly: linear form through per-endpoint mode sets, best form
//!   per class pair. Enforce drops; audit and learn accept.
//! - **Audit would-deny events** are not rendered: the packet is accepted
//!   silently (an nftables `log` per packet would have no workload identity
//!   and would cost every packet; bulkhead records them per flow).
//! - **Statefulness**: bulkhead decides a flow on its first packet and lets the
//!   replies of an allowed flow through. This kernel's bridge family has no
//!   conntrack (`ct state` is refused in a bridge table), so the ruleset is
//!   stateless: every packet is classified in its own direction, and replies
//!   pass only if a rule allows the reverse direction. Stateful filtering of a
//!   bridge needs br_netfilter and an inet table, which is not rendered.
//! - IP fragments after the first carry no ports: they match only rules
//!   without ports. VLAN-tagged frames are not looked into (`ether type` is
//!   802.1Q): they are matched as non-IP frames (quarantine by MAC, then pass).
//! - Membership is the compiled one: selector groups are resolved to the MACs
//!   of the workloads known when the file was rendered; MACs first seen later
//!   belong to no group until the ruleset is rendered again.

mod best;
mod flat;
mod prep;
#[cfg(test)]
mod tests;

use control::compile::Compiled;
use dataplane::policy::{Action, Mode, PortRange, Proto};
use dataplane::wire::MacAddr;
use prep::{Prepared, Side};
use std::fmt::Write as _;

/// The table the ruleset defines (and replaces when loaded again).
pub const TABLE: &str = "bulkhead";

/// Which translation to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Sets, class maps and concatenated interval verdict maps.
    Best,
    /// One nftables rule per compiled rule, in order.
    Linear,
}

/// Why a compiled policy could not be rendered (a bug upstream: compile
/// produced something it should have rejected).
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("group index {0} is out of range in the compiled policy")]
    Group(usize),
    #[error("too many distinct group combinations ({0}) for the 32-bit packet mark")]
    TooManyClasses(usize),
}

/// Where the ruleset hooks, and whether it keeps state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `table bridge`: every frame the bridge forwards, stateless (this
    /// kernel's bridge family has no conntrack).
    Bridge,
    /// `table inet` at the IP forward hook of a bridge with br_netfilter
    /// (`net.bridge.bridge-nf-call-iptables=1`), stateful: packets of a
    /// connection conntrack knows pass before the rules (`ct state
    /// established,related accept`; after the quarantine and the blocklist,
    /// which cut them), the first packet of each new one is classified.
    /// What a Linux firewall in a bridge usually is.
    InetConntrack,
}

/// Renders `compiled` as an nftables script for `nft -f`, a bridge table.
/// `source` names the policy in the header comment.
pub fn render(compiled: &Compiled, form: Form, source: &str) -> Result<String, NftError> {
    render_at(compiled, form, Hook::Bridge, source)
}

/// [`render`] hooked as `hook` says.
pub fn render_at(
    compiled: &Compiled,
    form: Form,
    hook: Hook,
    source: &str,
) -> Result<String, NftError> {
    let p = Prepared::new(&compiled.spec)?;
    let mut out = String::new();
    let name = match form {
        Form::Best => "best form: class maps and verdict maps",
        Form::Linear => "linear form: one rule per compiled rule",
    };
    let (family, state) = match hook {
        Hook::Bridge => ("bridge", "stateless (no bridge-family conntrack)"),
        Hook::InetConntrack => ("inet", "stateful (br_netfilter + conntrack)"),
    };
    let _ = writeln!(
        out,
        "#!/usr/sbin/nft -f\n# bulkhead-bench nft ({name})\n# source: {}\n\
         # {} groups, {} compiled rules; {state}.",
        comment_text(source),
        p.groups.len(),
        p.rules.len()
    );
    let _ = writeln!(
        out,
        "table {family} {TABLE}\ndelete table {family} {TABLE}\n\ntable {family} {TABLE} {{"
    );
    common_sets(&p, &mut out);
    let mut forward = Vec::new();
    let mut chains = String::new();
    common_head(&p, hook, &mut forward, &mut chains);
    if hook == Hook::InetConntrack {
        // Known connections pass after the quarantine and the blocklist
        // (which cut them, as bulkhead does) and before the rules.
        forward.push("ct state established,related accept".to_string());
        forward.push("ct state invalid drop".to_string());
    }
    match form {
        Form::Linear => linear(&p, &mut out, &mut forward, &mut chains),
        Form::Best => best::render(&p, &mut out, &mut forward, &mut chains)?,
    }
    out.push_str(
        "\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n",
    );
    for line in &forward {
        let _ = writeln!(out, "\t\t{line}");
    }
    out.push_str("\t}\n");
    out.push_str(&chains);
    out.push_str("}\n");
    Ok(out)
}

/// Text safe inside a `#` comment (one line).
fn comment_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn mac_text(m: MacAddr) -> String {
    m.to_string()
}

/// `set NAME { type T; [flags interval; auto-merge;] elements = { ... } }`.
fn write_set(out: &mut String, name: &str, ty: &str, interval: bool, elems: &[String], note: &str) {
    if !note.is_empty() {
        let _ = writeln!(out, "\t# {}", comment_text(note));
    }
    let _ = write!(out, "\tset {name} {{\n\t\ttype {ty};\n");
    if interval {
        out.push_str("\t\tflags interval;\n\t\tauto-merge;\n");
    }
    write_elements(out, elems);
    out.push_str("\t}\n");
}

/// `elements = { ... }`, a few per line (nothing when empty).
fn write_elements(out: &mut String, elems: &[String]) {
    if elems.is_empty() {
        return;
    }
    out.push_str("\t\telements = {\n");
    for chunk in elems.chunks(8) {
        let _ = writeln!(out, "\t\t\t{},", chunk.join(", "));
    }
    out.push_str("\t\t}\n");
}

/// The layer-4 match of a protocol and its destination ports ("" = everything).
fn l4_match(proto: Proto, ports: &[PortRange]) -> String {
    let name = match proto {
        Proto::Any => return String::new(),
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
        Proto::Icmp => "icmp",
        Proto::Icmpv6 => "ipv6-icmp",
        Proto::Number(n) => return format!("meta l4proto {n}"),
    };
    if ports.is_empty() || !proto.has_ports() {
        return format!("meta l4proto {name}");
    }
    let list: Vec<String> = ports.iter().map(|&r| port_text(r)).collect();
    if list.len() == 1 {
        format!("{name} dport {}", list.join(""))
    } else {
        format!("{name} dport {{ {} }}", list.join(", "))
    }
}

fn port_text(r: PortRange) -> String {
    if r.lo == r.hi {
        r.lo.to_string()
    } else {
        format!("{}-{}", r.lo, r.hi)
    }
}

/// Sets both forms use: quarantine and blocklist.
fn common_sets(p: &Prepared, out: &mut String) {
    if !p.quarantine.is_empty() {
        let elems: Vec<String> = p.quarantine.iter().map(|&m| mac_text(m)).collect();
        write_set(
            out,
            "quarantine",
            "ether_addr",
            false,
            &elems,
            "quarantined MACs",
        );
    }
    if !p.block4.is_empty() {
        write_set(
            out,
            "blocklist_ip4",
            "ipv4_addr",
            true,
            &p.block4,
            "blocklist",
        );
    }
    if !p.block6.is_empty() {
        write_set(
            out,
            "blocklist_ip6",
            "ipv6_addr",
            true,
            &p.block6,
            "blocklist",
        );
    }
}

/// What comes before the rules in both forms: stateless passes, quarantine,
/// non-IP, blocklist.
fn common_head(p: &Prepared, hook: Hook, fwd: &mut Vec<String>, chains: &mut String) {
    // Only IP reaches an inet hook: ARP and other frames are bridged
    // without it.
    let bridge = hook == Hook::Bridge;
    if bridge {
        fwd.push("ether type arp accept".into());
    }
    fwd.push("icmpv6 type { 130-137, 143 } accept".into());
    if !p.quarantine.is_empty() {
        fwd.push("ether saddr @quarantine jump quarantined_src".into());
        fwd.push("ether daddr @quarantine jump quarantined_dst".into());
        fwd.push("ether saddr @quarantine accept comment \"management exception\"".into());
        fwd.push("ether daddr @quarantine accept comment \"management exception\"".into());
        for (chain, peer) in [("quarantined_src", "daddr"), ("quarantined_dst", "saddr")] {
            let _ = writeln!(chains, "\n\tchain {chain} {{");
            for m in &p.management {
                let fam = if matches!(m.net, ipnet::IpNet::V4(_)) {
                    "ip"
                } else {
                    "ip6"
                };
                let l4 = l4_match(m.proto, &m.ports);
                let macs: Vec<String> = m.macs.iter().map(|mac| mac.to_string()).collect();
                let _ = writeln!(
                    chains,
                    "\t\tether {peer} {{ {} }} {fam} {peer} {} {l4} return",
                    macs.join(", "),
                    m.net
                );
            }
            chains.push_str("\t\tdrop\n\t}\n");
        }
    }
    if bridge {
        fwd.push("ether type != { ip, ip6 } accept".into());
    }
    for (fam, set, empty) in [
        ("ip", "blocklist_ip4", p.block4.is_empty()),
        ("ip6", "blocklist_ip6", p.block6.is_empty()),
    ] {
        if !empty {
            fwd.push(format!("{fam} saddr @{set} drop"));
            fwd.push(format!("{fam} daddr @{set} drop"));
        }
    }
}

/// The naive form: group sets, one rule per compiled rule, then the default.
fn linear(p: &Prepared, out: &mut String, fwd: &mut Vec<String>, chains: &mut String) {
    for (i, g) in p.groups.iter().enumerate() {
        let note = format!("group {} ({:?})", g.name, g.mode);
        if !g.macs.is_empty() {
            let elems: Vec<String> = g.macs.iter().map(|&m| mac_text(m)).collect();
            write_set(
                out,
                &format!("g{i}_mac"),
                "ether_addr",
                false,
                &elems,
                &note,
            );
        }
        if !g.v4.is_empty() {
            write_set(out, &format!("g{i}_ip4"), "ipv4_addr", true, &g.v4, &note);
        }
        if !g.v6.is_empty() {
            write_set(out, &format!("g{i}_ip6"), "ipv6_addr", true, &g.v6, &note);
        }
    }
    let deny = mode_verdict(p, out, chains);
    for r in &p.rules {
        let verdict = match r.action {
            Action::Allow => "accept",
            Action::Deny => deny.as_str(),
        };
        let srcs = side_terms(p, &r.src, "saddr");
        let dsts = side_terms(p, &r.dst, "daddr");
        if srcs.is_empty() || dsts.is_empty() {
            fwd.push(format!(
                "# rule {}: a side has no members, never matches",
                r.id
            ));
            continue;
        }
        let l4 = l4_match(r.proto, &r.ports);
        for s in &srcs {
            for d in &dsts {
                // An IPv4 source and an IPv6 destination never meet.
                if (s.starts_with("ip ") && d.starts_with("ip6 "))
                    || (s.starts_with("ip6 ") && d.starts_with("ip "))
                {
                    continue;
                }
                let m: Vec<&str> = [s.as_str(), d.as_str(), l4.as_str()]
                    .into_iter()
                    .filter(|t| !t.is_empty())
                    .collect();
                fwd.push(format!(
                    "{} {verdict} comment \"rule {}\"",
                    m.join(" "),
                    r.id
                ));
            }
        }
    }
    fwd.push(deny);
}

/// The match terms of one side of a rule: one per (group, address family) with
/// members; `[""]` for `any`; empty when no group has members.
fn side_terms(p: &Prepared, side: &Side, dir: &str) -> Vec<String> {
    let Side::Groups(gs) = side else {
        return vec![String::new()];
    };
    let mut out = Vec::new();
    for &g in gs {
        let Some(grp) = p.groups.get(g) else { continue };
        if !grp.macs.is_empty() {
            out.push(format!("ether {dir} @g{g}_mac"));
        }
        if !grp.v4.is_empty() {
            out.push(format!("ip {dir} @g{g}_ip4"));
        }
        if !grp.v6.is_empty() {
            out.push(format!("ip6 {dir} @g{g}_ip6"));
        }
    }
    out
}

/// The verdict of a deny rule and of the default in the linear form: drop when
/// the effective mode (the strictest of both ends) is enforce, else accept.
/// Returns the verdict text (`drop`, `accept` or `goto mode_verdict`).
fn mode_verdict(p: &Prepared, out: &mut String, chains: &mut String) -> String {
    let modes = p.groups.iter().map(|g| g.mode).chain([p.default_mode]);
    let enforce = modes.clone().filter(|&m| m == Mode::Enforce).count();
    if enforce == 0 {
        return "accept".into();
    }
    if modes.clone().all(|m| m == Mode::Enforce) {
        return "drop".into();
    }
    // Endpoint modes: an endpoint is enforce if one of its groups is, or if it
    // is in no group and the default mode is enforce.
    let mut enf_mac = Vec::new();
    let mut member_mac = Vec::new();
    for (mac, groups) in &p.mac_groups {
        member_mac.push(mac_text(*mac));
        if groups
            .iter()
            .any(|&g| p.groups.get(g).is_some_and(|g| g.mode == Mode::Enforce))
        {
            enf_mac.push(mac_text(*mac));
        }
    }
    let ips = |v6: bool, only_enforce: bool| -> Vec<String> {
        p.groups
            .iter()
            .filter(|g| !only_enforce || g.mode == Mode::Enforce)
            .flat_map(|g| if v6 { g.v6.clone() } else { g.v4.clone() })
            .collect()
    };
    let note = "endpoint modes";
    write_set(out, "enforce_mac", "ether_addr", false, &enf_mac, note);
    write_set(out, "enforce_ip4", "ipv4_addr", true, &ips(false, true), "");
    write_set(out, "enforce_ip6", "ipv6_addr", true, &ips(true, true), "");
    write_set(out, "member_mac", "ether_addr", false, &member_mac, "");
    write_set(out, "member_ip4", "ipv4_addr", true, &ips(false, false), "");
    write_set(out, "member_ip6", "ipv6_addr", true, &ips(true, false), "");
    chains.push_str("\n\tchain mode_verdict {\n");
    for dir in ["saddr", "daddr"] {
        let _ = writeln!(chains, "\t\tether {dir} @enforce_mac drop");
        let _ = writeln!(chains, "\t\tip {dir} @enforce_ip4 drop");
        let _ = writeln!(chains, "\t\tip6 {dir} @enforce_ip6 drop");
        if p.default_mode == Mode::Enforce {
            let _ = writeln!(
                chains,
                "\t\tether {dir} != @member_mac ip {dir} != @member_ip4 drop"
            );
            let _ = writeln!(
                chains,
                "\t\tether {dir} != @member_mac ip6 {dir} != @member_ip6 drop"
            );
        }
    }
    chains.push_str("\t\taccept\n\t}\n");
    "goto mode_verdict".into()
}
