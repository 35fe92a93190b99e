//! Keeping 802.1Q/802.1ad tags in the frame, where XDP can see them.
//!
//! A NIC that strips VLAN tags on receive ("rx-vlan-hw-parse",
//! "rx-vlan-stag-hw-parse") hands XDP the frame without its tag and the tag in
//! driver metadata that a generic XDP program cannot read: the worker would
//! classify the frame as untagged and forward it untagged onto the other
//! segment. A veth gets the same effect from its *peer*: a peer with tx VLAN
//! offload ("tx-vlan-hw-insert", "tx-vlan-stag-hw-insert") passes the tag
//! beside the bytes. Before attaching, bulkhead turns stripping off on each
//! port (and tag insertion on a veth peer it can reach) and refuses to start
//! on a port that cannot stop stripping.

use super::{ethtool, netlink, sys};

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

/// Turn off tag stripping on `ifname` and, for a veth whose peer is in this
/// namespace, tag insertion on the peer.
pub fn keep_tags(ifname: &str) -> Result<VlanSetup, StripsTags> {
    let mut setup = VlanSetup::default();
    let fail = |feature: &str, what: String| StripsTags {
        ifname: ifname.to_string(),
        feature: feature.to_string(),
        what,
    };
    turn_off(ifname, &RX_STRIP, &mut setup).map_err(|(f, what)| fail(&f, what))?;
    if ethtool::driver(ifname).ok().as_deref() == Some("veth") {
        match veth_peer(ifname) {
            Some(peer) => turn_off(&peer, &TX_INSERT, &mut setup).map_err(|(f, what)| {
                fail(
                    &f,
                    format!("its veth peer {peer} inserts tags in hardware and {what}"),
                )
            })?,
            None => {
                setup.unchecked_peer = Some(format!(
                    "{ifname} is a veth whose peer is in another network namespace, out of \
                     reach: if the peer inserts VLAN tags in \"hardware\" (txvlan, on by \
                     default), they reach XDP stripped; make sure \
                     `ethtool -K <peer> txvlan off tx-vlan-stag-hw-insert off` was run there"
                ))
            }
        }
    }
    Ok(setup)
}

/// Turn `names` off on `dev` where they are on. A feature the device does not
/// have is fine; one that is on and fixed, or that stays on, is an error
/// `(feature, why)`.
fn turn_off(dev: &str, names: &[&str], setup: &mut VlanSetup) -> Result<(), (String, String)> {
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
        setup.turned_off.push(format!("{dev}: {name}"));
    }
    Ok(())
}

/// The peer of veth `ifname` when it is in this network namespace (the kernel
/// names the peer's namespace only when it is another one).
fn veth_peer(ifname: &str) -> Option<String> {
    let link = netlink::link_of(sys::ifindex(ifname)?).ok()?;
    if link.netnsid.is_some() {
        return None;
    }
    ethtool::ifname(link.index?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_feature_that_is_on_is_refused_and_a_missing_one_is_fine() {
        let mut setup = VlanSetup::default();
        // lo's "loopback" is on and fixed: what a NIC that cannot stop
        // stripping tags looks like.
        let (feature, why) = turn_off("lo", &["loopback"], &mut setup).expect_err("fixed on");
        assert_eq!(
            (feature.as_str(), why.as_str()),
            ("loopback", "loopback is fixed on")
        );
        turn_off("lo", &["no-such-feature"], &mut setup).expect("nothing to turn off");
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
