//! The XDP program (`dataplane/bpf/bulkhead.c`): load, configure, attach, detach.
//!
//! One instance of the program is loaded per data port, each with its own maps
//! (`bulkhead_xsks`, `bulkhead_peer`, `bulkhead_config`, `bulkhead_tier`, see
//! `bpf/bulkhead.h`), except the offload maps (`bulkhead_flows`,
//! `bulkhead_generation`), which both share ([`super::offload`]).
//! Attachment tries native (driver) mode first, then generic (skb) mode.
//!
//! With a pin directory (on bpffs) the attachment is a pinned BPF link: it
//! outlives the process, so after a crash the kernel keeps applying the fail mode
//! (fail-open: forward to the peer port; fail-closed: drop). The next start finds
//! the pin and atomically swaps its own program into that link, so forwarding
//! never stops across a restart. Without a pin directory the link dies with the
//! process and the port falls back to the kernel stack.

use super::abi::{self, maps, programs};
use super::offload::{SharedPins, FLOWS_MAP, GENERATION_MAP, TIER_MAP};
pub(crate) use super::pins::ensure_pin_dir;
pub use super::pins::{current_netns_id, remove_pins};
use super::pins::{find_pin, pin_prefix};
use super::sys::error_chain;
use super::AfXdpError;
use aya::maps::{Array, DevMap, MapData, XskMap};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{Xdp, XdpMode as AyaXdpMode};
use aya::{Ebpf, EbpfLoader};
use std::os::unix::io::RawFd;
use std::path::Path;

/// The compiled XDP object, rebuilt by `dataplane/bpf/build.sh`.
static PROGRAM_OBJECT: &[u8] = aya::include_bytes_aligned!("../../../bpf/bulkhead.o");

const PROGRAM: &str = programs::BULKHEAD_XDP;
const XSKS_MAP: &str = maps::BULKHEAD_XSKS.name;
const PEER_MAP: &str = maps::BULKHEAD_PEER.name;
const CONFIG_MAP: &str = maps::BULKHEAD_CONFIG.name;

/// `struct bulkhead_cfg`: the one entry of `bulkhead_config`.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub(crate) struct BpfConfig {
    /// `BULKHEAD_FAIL_*`.
    pub fail_mode: u32,
    pub _pad: u32,
}

// SAFETY: plain `#[repr(C)]` integers, valid for every bit pattern, no
// pointers; the layout is checked against the object's BTF
// (`offload_btf.rs`).
#[allow(unsafe_code)]
unsafe impl aya::Pod for BpfConfig {}

// The maps as this module opens them against their definitions in the object
// (abi.rs, generated from it): a change on either side fails the build.
const _: () = {
    use aya::maps::MapType;
    use std::mem::size_of;
    let xsks = maps::BULKHEAD_XSKS;
    assert!(matches!(xsks.map_type, MapType::XskMap));
    assert!(xsks.key_size as usize == size_of::<u32>());
    assert!(xsks.max_entries == MAX_QUEUES);
    let peer = maps::BULKHEAD_PEER;
    assert!(matches!(peer.map_type, MapType::DevMap));
    assert!(peer.key_size as usize == size_of::<u32>());
    assert!(abi::BULKHEAD_PEER_KEY < peer.max_entries);
    let config = maps::BULKHEAD_CONFIG;
    assert!(matches!(config.map_type, MapType::Array));
    assert!(config.key_size as usize == size_of::<u32>());
    assert!(config.value_size as usize == size_of::<BpfConfig>());
    assert!(config.max_entries >= 1);
};

/// What the XDP program does with a frame when no AF_XDP socket is bound to its
/// rx queue: the dataplane is not running, was stopped without detaching, or
/// crashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Forward the frame to the peer port, unfiltered (availability first).
    Open,
    /// Drop the frame (isolation first). The default: a firewall that stops
    /// filtering should not start passing everything.
    #[default]
    Closed,
}

impl FailMode {
    /// Its value in `bulkhead_cfg.fail_mode`.
    fn raw(self) -> u32 {
        match self {
            FailMode::Open => abi::BULKHEAD_FAIL_OPEN,
            FailMode::Closed => abi::BULKHEAD_FAIL_CLOSED,
        }
    }
}

/// How the XDP program runs on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver, before an skb exists.
    Native,
    /// In the kernel stack, after the skb is built (works on any device, slower).
    Generic,
}

impl XdpMode {
    fn aya(self) -> AyaXdpMode {
        match self {
            XdpMode::Native => AyaXdpMode::Driver,
            XdpMode::Generic => AyaXdpMode::Skb,
        }
    }

    fn tag(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }

    fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "native" => Some(XdpMode::Native),
            "generic" => Some(XdpMode::Generic),
            _ => None,
        }
    }
}

impl std::fmt::Display for XdpMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.tag())
    }
}

/// Which XDP modes to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpModePreference {
    /// Native, then generic.
    #[default]
    Auto,
    Native,
    Generic,
}

impl XdpModePreference {
    fn candidates(self) -> &'static [XdpMode] {
        match self {
            XdpModePreference::Auto => &[XdpMode::Native, XdpMode::Generic],
            XdpModePreference::Native => &[XdpMode::Native],
            XdpModePreference::Generic => &[XdpMode::Generic],
        }
    }
}

/// What a clean shutdown (drop, [`super::AfXdpIo::shutdown`]) does with the XDP
/// program. A crash always leaves a pinned program attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnShutdown {
    /// Remove the program: the ports become plain interfaces of this host
    /// (frames reach its stack; nothing is forwarded between them).
    #[default]
    Detach,
    /// Keep the program attached, so the fail mode applies from the moment the
    /// sockets close (fail-open keeps forwarding during an upgrade or restart).
    /// Needs a pin directory; without one the link ends with the process.
    LeaveAttached,
}

/// How the program is held on the port.
enum Attachment {
    /// A BPF link pinned on bpffs: survives the process.
    Pinned(PinnedLink),
    /// A link owned by this process (no pin directory, or a netlink attachment on
    /// a kernel without XDP links).
    Owned(XdpLink),
}

/// The offload maps of one port's program (see [`super::offload`]).
pub(crate) struct OffloadMaps {
    pub flows: aya::maps::Map,
    pub generation: aya::maps::Map,
    pub tier: aya::maps::Map,
}

/// The program loaded and attached on one port.
pub(crate) struct XdpPort {
    ifname: String,
    mode: XdpMode,
    xsks: XskMap<MapData>,
    offload: Option<OffloadMaps>,
    attachment: Option<Attachment>,
    /// Holds the program and its other maps; dropped last.
    _ebpf: Ebpf,
}

/// Queues a port's XSKMAP holds.
pub(crate) const MAX_QUEUES: u32 = abi::BULKHEAD_MAX_QUEUES;

/// Settings for loading the program on one port.
pub(crate) struct AttachSpec<'a> {
    pub ifname: &'a str,
    pub ifindex: u32,
    pub peer_ifindex: u32,
    pub fail_mode: FailMode,
    pub modes: XdpModePreference,
    pub pin_dir: Option<&'a Path>,
    /// With offload: the entries of the flow map, and where the maps both ports
    /// share are pinned while loading. Without: a one-entry flow map, never used.
    pub offload: Option<(u32, &'a SharedPins)>,
}

impl XdpPort {
    /// Load the program for a port, configure its fail mode and peer, and attach
    /// it (taking over a pinned link left by a previous run).
    pub(crate) fn attach(spec: &AttachSpec<'_>) -> Result<XdpPort, AfXdpError> {
        let ifname = spec.ifname;
        let (mut ebpf, offload) = load(spec)?;
        let xsks = configure(&mut ebpf, spec)?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| prog_err(ifname, "find program", &PROGRAM))?
            .try_into()
            .map_err(|e| prog_err(ifname, PROGRAM, &e))?;
        program
            .load()
            .map_err(|e| prog_err(ifname, "load the XDP program", &e))?;
        let pin = pin_place(spec)?;
        let (mode, attachment) = match taken_over(program, pin.as_ref()) {
            Some(found) => found,
            None => attach_afresh(program, spec, pin.as_ref())?,
        };
        Ok(XdpPort {
            ifname: ifname.to_string(),
            mode,
            xsks,
            offload,
            attachment: Some(attachment),
            _ebpf: ebpf,
        })
    }

    pub(crate) fn mode(&self) -> XdpMode {
        self.mode
    }

    /// The offload maps, once (for the kernel tier's handle).
    pub(crate) fn take_offload_maps(&mut self) -> Option<OffloadMaps> {
        self.offload.take()
    }

    /// Steer the port's rx queue `queue` to the AF_XDP socket `fd`.
    pub(crate) fn register_socket(&mut self, queue: u32, fd: RawFd) -> Result<(), AfXdpError> {
        self.xsks
            .set(queue, fd, 0)
            .map_err(|e| AfXdpError::Program {
                ifname: self.ifname.clone(),
                reason: format!("{XSKS_MAP}[{queue}]: {}", error_chain(&e)),
            })
    }

    /// Remove the program from the port (unpinning its link).
    pub(crate) fn detach(mut self) -> Result<(), AfXdpError> {
        match self.attachment.take() {
            Some(Attachment::Pinned(pinned)) => {
                let link = pinned.unpin().map_err(|e| AfXdpError::Program {
                    ifname: self.ifname.clone(),
                    reason: format!("unpin the XDP link: {e}"),
                })?;
                drop(link); // the last reference: the kernel detaches the program
            }
            Some(Attachment::Owned(link)) => drop(link), // detaches on drop
            None => {}
        }
        Ok(())
    }

    /// Leave the program attached: a pinned link stays on bpffs; an owned link
    /// is leaked, so it lasts until the process exits.
    pub(crate) fn leave_attached(mut self) {
        match self.attachment.take() {
            Some(Attachment::Pinned(pinned)) => drop(pinned), // the pin keeps it
            Some(Attachment::Owned(link)) => std::mem::forget(link),
            None => {}
        }
    }
}

impl Drop for XdpPort {
    fn drop(&mut self) {
        // Dropped without a decision (an error during open): a pinned link stays
        // (as after a crash), an owned link is detached by its own drop.
        let _ = self.attachment.take();
    }
}

/// An error about the program of port `ifname`.
fn prog_err(ifname: &str, what: &str, e: &dyn std::fmt::Display) -> AfXdpError {
    AfXdpError::Program {
        ifname: ifname.to_string(),
        reason: format!("{what}: {e}"),
    }
}

/// The object, loaded with the flow map sized (and the shared maps pinned)
/// for offload; the offload maps taken out when offload is on.
fn load(spec: &AttachSpec<'_>) -> Result<(Ebpf, Option<OffloadMaps>), AfXdpError> {
    let ifname = spec.ifname;
    let mut loader = EbpfLoader::new();
    match spec.offload {
        Some((entries, pins)) => {
            loader
                .map_max_entries(FLOWS_MAP, entries.max(1))
                .map_pin_path(FLOWS_MAP, pins.flows.as_path())
                .map_pin_path(GENERATION_MAP, pins.generation.as_path());
        }
        None => {
            loader.map_max_entries(FLOWS_MAP, 1);
        }
    }
    let mut ebpf = loader
        .load(PROGRAM_OBJECT)
        .map_err(|e| prog_err(ifname, "load the XDP object", &e))?;
    let offload = match spec.offload {
        Some(_) => {
            let mut take = |name: &'static str| {
                ebpf.take_map(name)
                    .ok_or_else(|| prog_err(ifname, "find map", &name))
            };
            Some(OffloadMaps {
                flows: take(FLOWS_MAP)?,
                generation: take(GENERATION_MAP)?,
                tier: take(TIER_MAP)?,
            })
        }
        None => None,
    };
    Ok((ebpf, offload))
}

/// The fail mode and the peer port written into the program's maps; its
/// socket map taken out.
fn configure(ebpf: &mut Ebpf, spec: &AttachSpec<'_>) -> Result<XskMap<MapData>, AfXdpError> {
    let ifname = spec.ifname;
    let cfg_map = ebpf
        .map_mut(CONFIG_MAP)
        .ok_or_else(|| prog_err(ifname, "find map", &CONFIG_MAP))?;
    let mut cfg: Array<&mut MapData, BpfConfig> =
        Array::try_from(cfg_map).map_err(|e| prog_err(ifname, CONFIG_MAP, &e))?;
    let value = BpfConfig {
        fail_mode: spec.fail_mode.raw(),
        _pad: 0,
    };
    cfg.set(0, value, 0)
        .map_err(|e| prog_err(ifname, CONFIG_MAP, &e))?;

    let peer_map = ebpf
        .map_mut(PEER_MAP)
        .ok_or_else(|| prog_err(ifname, "find map", &PEER_MAP))?;
    let mut peer: DevMap<&mut MapData> =
        DevMap::try_from(peer_map).map_err(|e| prog_err(ifname, PEER_MAP, &e))?;
    peer.set(abi::BULKHEAD_PEER_KEY, spec.peer_ifindex, None, 0)
        .map_err(|e| prog_err(ifname, PEER_MAP, &e))?;

    let xsks_map = ebpf
        .take_map(XSKS_MAP)
        .ok_or_else(|| prog_err(ifname, "find map", &XSKS_MAP))?;
    XskMap::try_from(xsks_map).map_err(|e| prog_err(ifname, XSKS_MAP, &e))
}

/// Where this port's link is pinned: the directory (made sure to be on
/// bpffs) and the name prefix, which holds the namespace and the port.
fn pin_place<'a>(spec: &AttachSpec<'a>) -> Result<Option<(&'a Path, String)>, AfXdpError> {
    let Some(dir) = spec.pin_dir else {
        return Ok(None);
    };
    ensure_pin_dir(spec.ifname, dir)?;
    let netns = current_netns_id().map_err(|e| AfXdpError::Pin {
        ifname: spec.ifname.to_string(),
        path: dir.to_path_buf(),
        reason: format!("read the network namespace: {e}"),
    })?;
    Ok(Some((dir, pin_prefix(netns, spec.ifname))))
}

/// A link pinned by an earlier run, with our program swapped into it
/// atomically; a defunct pin (its device went away) or one not ours is
/// removed.
fn taken_over(program: &mut Xdp, pin: Option<&(&Path, String)>) -> Option<(XdpMode, Attachment)> {
    let (dir, prefix) = pin?;
    let (path, mode) = find_pin(dir, prefix, XdpMode::from_tag)?;
    match take_over(program, &path) {
        Some(attachment) => Some((mode, attachment)),
        None => {
            let _ = std::fs::remove_file(&path);
            None
        }
    }
}

/// Attach in the first mode the port accepts, pinning the link if asked.
fn attach_afresh(
    program: &mut Xdp,
    spec: &AttachSpec<'_>,
    pin: Option<&(&Path, String)>,
) -> Result<(XdpMode, Attachment), AfXdpError> {
    let ifname = spec.ifname;
    let mut refusals = Vec::new();
    let mut attached = None;
    for &mode in spec.modes.candidates() {
        match program.attach_to_if_index(spec.ifindex, mode.aya()) {
            Ok(id) => {
                attached = Some((mode, id));
                break;
            }
            Err(e) => refusals.push(format!("{mode}: {}", error_chain(&e))),
        }
    }
    let Some((mode, id)) = attached else {
        return Err(AfXdpError::Attach {
            ifname: ifname.to_string(),
            tried: refusals.join("; "),
        });
    };
    let link = program
        .take_link(id)
        .map_err(|e| prog_err(ifname, "take the XDP link", &e))?;
    let Some((dir, prefix)) = pin else {
        return Ok((mode, Attachment::Owned(link)));
    };
    // A netlink attachment (no XDP links on this kernel) cannot be pinned.
    let fd_link = FdLink::try_from(link).map_err(|e| prog_err(ifname, "pin the XDP link", &e))?;
    let path = dir.join(format!("{prefix}{}", mode.tag()));
    let pinned = fd_link.pin(&path).map_err(|e| AfXdpError::Pin {
        ifname: ifname.to_string(),
        path: path.clone(),
        reason: error_chain(&e),
    })?;
    Ok((mode, Attachment::Pinned(pinned)))
}

/// Swap `program` into the pinned link at `path`; `None` if the link is defunct
/// or not an XDP link.
fn take_over(program: &mut Xdp, path: &Path) -> Option<Attachment> {
    let pinned = PinnedLink::from_pin(path).ok()?;
    let link = XdpLink::try_from(FdLink::from(pinned)).ok()?;
    let id = program.attach_to_link(link).ok()?;
    // The link object now runs our program; hold it through its pin again.
    drop(program.take_link(id).ok()?);
    PinnedLink::from_pin(path).ok().map(Attachment::Pinned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_names_avoid_the_dots_bpffs_reserves() {
        assert_eq!(pin_prefix(7, "eth0.100"), "7-eth0%100-");
        assert_eq!(pin_prefix(7, "dut-a"), "7-dut-a-");
    }

    #[test]
    fn a_pin_is_found_by_namespace_and_interface_with_its_mode() {
        let dir = std::env::temp_dir().join(format!("bh-pin-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("5-dut-a-generic"), b"").unwrap();
        std::fs::write(dir.join("5-dut-a-b-native"), b"").unwrap();
        let found = find_pin(&dir, &pin_prefix(5, "dut-a"), XdpMode::from_tag);
        assert_eq!(found.map(|(_, m)| m), Some(XdpMode::Generic));
        assert_eq!(
            find_pin(&dir, &pin_prefix(5, "dut-a-b"), XdpMode::from_tag).map(|(_, m)| m),
            Some(XdpMode::Native)
        );
        assert!(find_pin(&dir, &pin_prefix(6, "dut-a"), XdpMode::from_tag).is_none());
        assert_eq!(remove_pins(&dir, 5), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_committed_object_has_the_program_and_maps_the_loader_uses() {
        for name in [
            PROGRAM,
            XSKS_MAP,
            PEER_MAP,
            CONFIG_MAP,
            FLOWS_MAP,
            GENERATION_MAP,
            TIER_MAP,
        ] {
            assert!(
                PROGRAM_OBJECT
                    .windows(name.len())
                    .any(|w| w == name.as_bytes()),
                "{name} missing from bulkhead.o"
            );
        }
    }

    #[test]
    fn modes_are_tried_native_first() {
        assert_eq!(
            XdpModePreference::Auto.candidates(),
            &[XdpMode::Native, XdpMode::Generic]
        );
    }
}
