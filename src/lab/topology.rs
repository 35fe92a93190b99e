//! The lab's network: two segments of workloads, each a network namespace on a
//! Linux bridge (the "vSwitch" of its segment, in a namespace of its own), and
//! the appliance's namespace between them with one port on each segment.
//!
//! ```text
//!  web-1  web-2  legacy-1               db-1  admin  legacy-files
//!     \     |     /                        \     |     /
//!      [ bh-lab-sw-a: br0 ]--(up-a)---(dut-a)[ bh-lab-dut ](dut-b)---(up-b)--[ bh-lab-sw-b: br0 ]
//! ```
//!
//! Every name starts with `bh-lab-`, so a crashed run's leftovers are found and
//! removed on the next start.

use anyhow::{bail, Context};
use std::process::{Command, Stdio};

/// The prefix of every namespace the lab creates.
pub const PREFIX: &str = "bh-lab-";
/// The appliance's namespace.
pub const DUT: &str = "bh-lab-dut";

/// A workload of the lab.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub name: &'static str,
    pub mac: &'static str,
    pub ip: &'static str,
    /// 'a' or 'b'.
    pub segment: char,
    /// Labels, as shown to the user.
    pub labels: &'static str,
}

impl Workload {
    pub fn netns(&self) -> String {
        format!("{PREFIX}{}", self.name)
    }
}

/// The lab's workloads: one subnet across both segments (the appliance is a bump
/// in the wire, not a router).
pub const WORKLOADS: [Workload; 6] = [
    Workload {
        name: "web-1",
        mac: "02:b4:00:00:01:01",
        ip: "10.77.0.11",
        segment: 'a',
        labels: "app=web",
    },
    Workload {
        name: "web-2",
        mac: "02:b4:00:00:01:02",
        ip: "10.77.0.12",
        segment: 'a',
        labels: "app=web",
    },
    Workload {
        name: "admin",
        mac: "02:b4:00:00:03:01",
        ip: "10.77.0.31",
        segment: 'b',
        labels: "role=admin",
    },
    Workload {
        name: "legacy-1",
        mac: "02:b4:00:00:04:01",
        ip: "10.77.0.41",
        segment: 'a',
        labels: "app=legacy (audit)",
    },
    Workload {
        name: "db-1",
        mac: "02:b4:00:00:02:01",
        ip: "10.77.0.21",
        segment: 'b',
        labels: "app=db",
    },
    Workload {
        name: "legacy-files",
        mac: "02:b4:00:00:04:02",
        ip: "10.77.0.42",
        segment: 'b',
        labels: "app=legacy (audit)",
    },
];

pub fn workload(name: &str) -> anyhow::Result<&'static Workload> {
    WORKLOADS
        .iter()
        .find(|w| w.name == name)
        .with_context(|| format!("no lab workload {name}"))
}

/// Run `ip` with these arguments; an error names the command.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run `ip` (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Run `ip` inside a namespace.
fn ip_in(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    ip(&full)
}

/// Namespaces whose name starts with [`PREFIX`].
pub fn existing() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(PREFIX))
        .map(str::to_owned)
        .collect()
}

/// Remove every lab namespace (and with them their veths and bridges).
/// Returns how many were removed.
pub fn destroy() -> usize {
    let names = existing();
    // The appliance's XDP links are pinned per network namespace: remove the
    // lab's pins with the namespace, or the defunct links stay on bpffs.
    if let Ok(meta) = std::fs::metadata(format!("/var/run/netns/{DUT}")) {
        use std::os::unix::fs::MetadataExt;
        let dir = std::path::Path::new(dataplane::io::afxdp::DEFAULT_PIN_DIR);
        dataplane::io::afxdp::remove_pins(dir, meta.ino());
    }
    for n in &names {
        let _ = Command::new("ip")
            .args(["netns", "del", n])
            .stderr(Stdio::null())
            .status();
    }
    names.len()
}

/// Build the topology. The appliance's ports are `dut-a` and `dut-b` in [`DUT`].
pub fn create() -> anyhow::Result<()> {
    let switches = [
        ("a", format!("{PREFIX}sw-a")),
        ("b", format!("{PREFIX}sw-b")),
    ];
    for ns in [DUT.to_owned(), switches[0].1.clone(), switches[1].1.clone()]
        .iter()
        .chain(
            WORKLOADS
                .iter()
                .map(|w| w.netns())
                .collect::<Vec<_>>()
                .iter(),
        )
    {
        ip(&["netns", "add", ns])?;
        ip_in(ns, &["link", "set", "lo", "up"])?;
    }
    for (seg, sw) in &switches {
        ip_in(sw, &["link", "add", "br0", "type", "bridge"])?;
        ip_in(sw, &["link", "set", "br0", "up"])?;
        // The uplink: up-X in the switch, dut-X in the appliance.
        let (up, port) = (format!("up-{seg}"), format!("dut-{seg}"));
        ip_in(
            sw,
            &[
                "link", "add", &up, "type", "veth", "peer", "name", &port, "netns", DUT,
            ],
        )?;
        ip_in(sw, &["link", "set", &up, "master", "br0", "up"])?;
        ip_in(DUT, &["link", "set", &port, "up"])?;
    }
    for w in &WORKLOADS {
        let sw = &switches[if w.segment == 'a' { 0 } else { 1 }].1;
        let ns = w.netns();
        let port = format!("p-{}", w.name);
        ip_in(
            sw,
            &[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
        ip_in(sw, &["link", "set", &port, "master", "br0", "up"])?;
        ip_in(&ns, &["link", "set", "eth0", "address", w.mac])?;
        ip_in(
            &ns,
            &["addr", "add", &format!("{}/24", w.ip), "dev", "eth0"],
        )?;
        ip_in(&ns, &["link", "set", "eth0", "up"])?;
        // veth leaves TCP/UDP checksums to offload; AF_XDP forwards the bytes as
        // they are, so the workloads must write real checksums.
        ethtool(&ns, &["-K", "eth0", "tx", "off"])?;
    }
    for (seg, sw) in &switches {
        // A veth that receives XDP-redirected frames (fail-open) needs NAPI.
        ethtool(sw, &["-K", &format!("up-{seg}"), "gro", "on"])?;
    }
    Ok(())
}

/// Run `ethtool` inside a namespace.
fn ethtool(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ethtool"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run `ethtool` (install the ethtool package)")?;
    if !out.status.success() {
        bail!(
            "`ethtool {}` in {ns} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
