//! Keeping 802.1Q/802.1ad tags in the frame, where XDP can see them.
//!
//! A NIC that strips VLAN tags on receive ("rx-vlan-hw-parse",
//! "rx-vlan-stag-hw-parse") hands XDP the frame without its tag and the tag in
//! driver metadata that a generic XDP program cannot read: the worker would
//! classify the frame as untagged and forward it untagged onto the other
//! segment. A veth gets the same effect from its *peer*: a peer with tx VLAN
//! offload ("tx-vlan-hw-insert", "tx-vlan-stag-hw-insert") passes the tag
//! beside the bytes. Before attaching, bulkhead turns stripping off on each
//! port and tag insertion on a veth's peer (entering the peer's network
//! namespace if need be), and refuses to start on a port that cannot stop
//! stripping.

use super::{ethtool, netlink, sys};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};

/// Receive features that move a tag out of the frame.
const RX_STRIP: [&str; 2] = ["rx-vlan-hw-parse", "rx-vlan-stag-hw-parse"];
/// Transmit features that hand a veth's peer the tag beside the frame.
const TX_INSERT: [&str; 2] = ["tx-vlan-hw-insert", "tx-vlan-stag-hw-insert"];

/// A port that strips VLAN tags and cannot be told not to.
#[derive(Debug, thiserror::Error)]
#[error("{ifname} strips VLAN tags before XDP sees them and {what}: tagged traffic would be forwarded untagged. Use a NIC (or driver) that can turn {feature} off (`ethtool -K {ifname} {feature} off`)")]
pub struct StripsTags {
    pub ifname: String,
    pub feature: String,
    pub what: String,
}

/// What [`keep_tags`] changed or could not check, for the start-up log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VlanSetup {
    /// `device: feature` pairs turned off.
    pub turned_off: Vec<String>,
    /// Why a veth peer's tx offload could not be checked (it lives in another
    /// network namespace): tags it offloads arrive stripped.
    pub unchecked_peer: Option<String>,
}

/// Turn off tag stripping on `ifname` and, for a veth, tag insertion on its
/// peer (found in its own network namespace when that is another one).
pub fn keep_tags(ifname: &str) -> Result<VlanSetup, StripsTags> {
    let mut setup = VlanSetup::default();
    let fail = |feature: &str, what: String| StripsTags {
        ifname: ifname.to_string(),
        feature: feature.to_string(),
        what,
    };
    turn_off(ifname, ifname, &RX_STRIP, &mut setup).map_err(|(f, what)| fail(&f, what))?;
    if ethtool::driver(ifname).ok().as_deref() != Some("veth") {
        return Ok(setup);
    }
    let peer_fails = |(f, what): (String, String), peer: &str| {
        fail(
            &f,
            format!("its veth peer {peer} inserts tags in \"hardware\" and {what}"),
        )
    };
    match veth_peer(ifname) {
        Peer::Here(peer) => {
            turn_off(&peer, &peer, &TX_INSERT, &mut setup).map_err(|e| peer_fails(e, &peer))?
        }
        Peer::There { index, netns } => {
            let label = format!("peer of {ifname}");
            let done = in_netns(&netns, |setup| {
                let peer = ethtool::ifname(index).unwrap_or_else(|| format!("#{index}"));
                let label = format!("{peer} ({label})");
                turn_off(&peer, &label, &TX_INSERT, setup).map_err(|e| peer_fails(e, &label))
            });
            match done {
                Some((result, found)) => {
                    setup.turned_off.extend(found.turned_off);
                    result?;
                }
                None => setup.unchecked_peer = Some(out_of_reach(ifname)),
            }
        }
        Peer::OutOfReach => setup.unchecked_peer = Some(out_of_reach(ifname)),
    }
    Ok(setup)
}

fn out_of_reach(ifname: &str) -> String {
    format!(
        "{ifname} is a veth whose peer is in a network namespace bulkhead cannot enter: \
         if the peer inserts VLAN tags in \"hardware\" (txvlan, on by default), they \
         reach XDP stripped; make sure `ethtool -K <peer> txvlan off \
         tx-vlan-stag-hw-insert off` was run there"
    )
}

/// Turn `names` off on `dev` where they are on. A feature the device does not
/// have is fine; one that is on and fixed, or that stays on, is an error
/// `(feature, why)`.
fn turn_off(
    dev: &str,
    label: &str,
    names: &[&str],
    setup: &mut VlanSetup,
) -> Result<(), (String, String)> {
    let features = match ethtool::Features::read(dev) {
        Ok(f) => f,
        // A device without the ethtool feature calls (some virtual ones) does
        // no offload either.
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(()),
        Err(e) => {
            return Err((
                names.join(", "),
                format!("its features cannot be read: {e}"),
            ))
        }
    };
    let mut want = Vec::new();
    for &name in names {
        let Some(bit) = features.bit(name) else {
            continue;
        };
        if !features.active(bit) {
            continue;
        }
        if !features.changeable(bit) {
            return Err((name.to_string(), format!("{name} is fixed on")));
        }
        want.push((name, bit));
    }
    if want.is_empty() {
        return Ok(());
    }
    let bits: Vec<usize> = want.iter().map(|&(_, b)| b).collect();
    features
        .clear(dev, &bits)
        .map_err(|e| (names.join(", "), format!("turning it off failed: {e}")))?;
    let after = ethtool::Features::read(dev).map_err(|e| {
        (
            names.join(", "),
            format!("its features cannot be read: {e}"),
        )
    })?;
    for (name, bit) in want {
        if after.active(bit) {
            return Err((name.to_string(), format!("{name} stays on when turned off")));
        }
        setup.turned_off.push(format!("{label}: {name}"));
    }
    Ok(())
}

/// Where a veth's peer is.
enum Peer {
    /// In this network namespace, by name.
    Here(String),
    /// Interface `index` of another namespace, opened.
    There {
        index: u32,
        netns: File,
    },
    OutOfReach,
}

/// The peer of veth `ifname` (the kernel names the peer's namespace only when
/// it is another one, by an id local to this namespace).
fn veth_peer(ifname: &str) -> Peer {
    let Some(link) = sys::ifindex(ifname).and_then(|i| netlink::link_of(i).ok()) else {
        return Peer::OutOfReach;
    };
    match (link.index, link.netnsid) {
        (Some(index), None) => ethtool::ifname(index).map_or(Peer::OutOfReach, Peer::Here),
        (Some(index), Some(id)) => {
            find_netns(id).map_or(Peer::OutOfReach, |netns| Peer::There { index, netns })
        }
        (None, _) => Peer::OutOfReach,
    }
}

/// The namespace this one calls `id`: among the named namespaces and those of
/// running processes, each asked once.
fn find_netns(id: i32) -> Option<File> {
    use std::os::unix::fs::MetadataExt;
    let own = std::fs::metadata("/proc/thread-self/ns/net").ok()?.ino();
    let named = std::fs::read_dir("/run/netns").into_iter().flatten();
    let procs = std::fs::read_dir("/proc").into_iter().flatten();
    let candidates = named
        .filter_map(|e| e.ok().map(|e| e.path()))
        .chain(procs.filter_map(|e| {
            let e = e.ok()?;
            e.file_name().to_str()?.parse::<u32>().ok()?;
            Some(e.path().join("ns/net"))
        }));
    let mut asked = std::collections::HashSet::from([own]);
    for path in candidates {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !asked.insert(meta.ino()) {
            continue;
        }
        let Ok(file) = File::open(&path) else {
            continue;
        };
        if netlink::nsid_of(file.as_fd()).ok().flatten() == Some(id) {
            return Some(file);
        }
    }
    None
}

/// Run `f` on a thread inside network namespace `netns`; None if the thread
/// cannot enter it (no CAP_SYS_ADMIN).
fn in_netns<T: Send>(
    netns: &File,
    f: impl FnOnce(&mut VlanSetup) -> T + Send,
) -> Option<(T, VlanSetup)> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(netns).ok()?;
            let mut setup = VlanSetup::default();
            let out = f(&mut setup);
            Some((out, setup))
        })
        .join()
        .ok()
        .flatten()
    })
}

/// Move the calling thread into network namespace `netns`.
#[allow(unsafe_code)]
fn enter(netns: &File) -> std::io::Result<()> {
    // SAFETY: setns on an open namespace file changes only the calling
    // thread's network namespace; the thread was spawned for this and ends
    // after its one task.
    let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_feature_that_is_on_is_refused_and_a_missing_one_is_fine() {
        let mut setup = VlanSetup::default();
        // lo's "loopback" is on and fixed: what a NIC that cannot stop
        // stripping tags looks like.
        let (feature, why) = turn_off("lo", "lo", &["loopback"], &mut setup).expect_err("fixed on");
        assert_eq!(
            (feature.as_str(), why.as_str()),
            ("loopback", "loopback is fixed on")
        );
        turn_off("lo", "lo", &["no-such-feature"], &mut setup).expect("nothing to turn off");
        assert_eq!(setup, VlanSetup::default());
        let e = StripsTags {
            ifname: "eth1".into(),
            feature: feature.clone(),
            what: why,
        };
        assert!(
            e.to_string().contains("ethtool -K eth1 loopback off"),
            "{e}"
        );
    }
}
