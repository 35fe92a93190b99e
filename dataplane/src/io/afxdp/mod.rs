//! AF_XDP packet I/O on two real ports (Linux).
//!
//! [`AfXdpIo::open`] loads the XDP program (`dataplane/bpf/bulkhead.c`) on both
//! ports ([`xdp`]), registers one UMEM, binds one AF_XDP socket per queue of
//! each port over it ([`socket`]) and steers each queue to its socket.
//! [`AfXdpIo::split`] then gives each worker its [`QueueIo`], the one
//! [`PacketIo`](super::PacketIo) of this backend (one worker takes every
//! queue): it moves frames as UMEM offsets, so a frame received on A is
//! transmitted on B from the same buffer, with no copy in userspace.
//!
//! Buffer life cycle: free list -> fill ring of a port -> rx ring -> the worker
//! -> tx ring of the peer port -> completion ring -> free list (or the worker
//! frees it straight back to the free list).
//!
//! Fail mode and shutdown: when no socket is bound (before `open` finishes, after
//! the sockets close, after a crash) the XDP program applies the [`FailMode`];
//! a clean shutdown follows [`OnShutdown`]. See `docs/decisions.md`.

pub mod abi;
mod config;
mod ethtool;
mod netlink;
mod offload;
mod open;
mod pins;
mod queues;
mod socket;
mod sys;
mod vlan;
pub mod xdp;

pub use config::{AfXdpConfig, AfXdpError, DEFAULT_PIN_DIR, XDP_PACKET_HEADROOM};
pub use offload::{XdpGenerationFence, XdpOffloadMap};
pub use queues::{AfXdpPorts, QueueIo, QueueStats};
pub use socket::{BindMode, BindPreference};
/// CLOCK_MONOTONIC in nanoseconds, the clock of `bpf_ktime_get_ns` (what the
/// offload map's last-seen times are in).
pub use sys::monotonic_ns;
pub use vlan::{keep_tags as keep_vlan_tags, StripsTags, VlanSetup};
pub use xdp::{current_netns_id, remove_pins, FailMode, OnShutdown, XdpMode, XdpModePreference};

use super::Port;
use open::{bind_first, check_mtu, offload_handles, queue_count, shared_pins};
use socket::{QueueSocket, RingSizes, UmemArea, UmemHandle};
use std::path::PathBuf;
use std::sync::Arc;
use xdp::{AttachSpec, XdpPort};
use xdpilone::Umem;

/// The UMEM every socket of both ports shares, and its memory (in drop order),
/// held by the [`AfXdpIo`] or, after [`AfXdpIo::split`], by every worker's queues.
pub(crate) struct SharedUmem {
    _umem: UmemHandle,
    pub(crate) area: UmemArea,
}

/// One data port: its name, index, sockets (one per queue) and XDP program.
struct PortIo {
    ifname: String,
    /// Sockets by queue.
    queues: Vec<QueueSocket>,
    /// Fill-ring occupancy each queue is topped up to.
    fill_target: u32,
    xdp: Option<XdpPort>,
}

/// AF_XDP on two ports with one shared UMEM, opened: [`AfXdpIo::split`] hands
/// the queues to the workers.
pub struct AfXdpIo {
    // Field order is drop order: sockets and programs, then the UMEM, then its
    // memory.
    ports: [PortIo; 2],
    umem: Arc<SharedUmem>,
    free: Vec<u64>,
    chunk_mask: u64,
    chunk: u32,
    completion_ring: u32,
    modes: (XdpMode, BindMode),
    on_shutdown: OnShutdown,
    busy_poll: bool,
    /// Workers the queues were bound for ([`AfXdpConfig::queues`]).
    workers: usize,
    /// The kernel tier's map handles, one per queue.
    offload: Option<Vec<XdpOffloadMap>>,
    /// What was done to keep VLAN tags in the frames, per port.
    vlan: [VlanSetup; 2],
}

impl std::fmt::Debug for AfXdpIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfXdpIo")
            .field("port_a", &self.ports[0].ifname)
            .field("port_b", &self.ports[1].ifname)
            .field("modes", &self.modes)
            .field("free", &self.free.len())
            .finish()
    }
}

impl AfXdpIo {
    /// Attach the XDP program to both ports, bind the sockets and start
    /// receiving. Run it in the network namespace of the ports.
    pub fn open(cfg: &AfXdpConfig) -> Result<Self, AfXdpError> {
        cfg.validate()?;
        let ifindex = |p: Port| {
            sys::ifindex(cfg.name(p)).ok_or_else(|| AfXdpError::NoInterface {
                ifname: cfg.name(p).to_string(),
            })
        };
        let (idx_a, idx_b) = (ifindex(Port::A)?, ifindex(Port::B)?);
        if !sys::has_privileges() {
            return Err(AfXdpError::NotPermitted {
                ifname: cfg.port_a.clone(),
            });
        }
        for p in Port::BOTH {
            check_mtu(cfg, cfg.name(p))?;
            sys::set_promiscuous(cfg.name(p)).map_err(|e| AfXdpError::Promiscuous {
                ifname: cfg.name(p).to_string(),
                reason: e.to_string(),
            })?;
        }
        // Before attaching: a port that strips tags would have the worker
        // forward tagged frames untagged.
        let vlan = [vlan::keep_tags(&cfg.port_a)?, vlan::keep_tags(&cfg.port_b)?];
        let queue_counts = [queue_count(cfg, Port::A)?, queue_count(cfg, Port::B)?];

        // The offload maps both programs share are pinned while they load.
        let pins = shared_pins(cfg)?;

        // Programs first: until the sockets are registered, the fail mode holds.
        let attach = |p: Port, me: u32, peer: u32| {
            XdpPort::attach(&AttachSpec {
                ifname: cfg.name(p),
                ifindex: me,
                peer_ifindex: peer,
                fail_mode: cfg.fail_mode,
                modes: cfg.xdp_mode,
                pin_dir: cfg.pin_dir.as_deref(),
                offload: pins.as_ref().map(|p| (cfg.offload_entries, p)),
            })
        };
        let mut xdp_a = attach(Port::A, idx_a, idx_b)?;
        let mut xdp_b = attach(Port::B, idx_b, idx_a)?;
        // Both programs hold the shared maps now: the pins can go.
        drop(pins);
        let offload = offload_handles(cfg, &mut xdp_a, &mut xdp_b)?;
        let xdp_mode = match (xdp_a.mode(), xdp_b.mode()) {
            (XdpMode::Native, XdpMode::Native) => XdpMode::Native,
            _ => XdpMode::Generic,
        };

        let rings = RingSizes {
            fill: cfg.fill_ring,
            completion: cfg.completion_ring,
            rx: cfg.rx_ring,
            tx: cfg.tx_ring,
        };
        let (bind_mode, ([qa, qb], umem, area)) =
            bind_first(cfg, [idx_a, idx_b], queue_counts, rings)?;

        // A quarter of the frames in each port's fill rings (shared among its
        // queues): the other half stays free for frames on their way through the
        // worker and the tx rings, so a busy port can never starve the other.
        let fill_target =
            (cfg.frames / 4 / queue_counts[0].max(queue_counts[1]).max(1)).min(cfg.fill_ring);
        let mut io = AfXdpIo {
            ports: [
                PortIo {
                    ifname: cfg.port_a.clone(),
                    queues: qa,
                    fill_target,
                    xdp: Some(xdp_a),
                },
                PortIo {
                    ifname: cfg.port_b.clone(),
                    queues: qb,
                    fill_target,
                    xdp: Some(xdp_b),
                },
            ],
            umem: Arc::new(SharedUmem {
                _umem: UmemHandle(umem),
                area,
            }),
            free: (0..u64::from(cfg.frames))
                .rev()
                .map(|i| i * u64::from(cfg.chunk_size))
                .collect(),
            chunk_mask: !(u64::from(cfg.chunk_size) - 1),
            chunk: cfg.chunk_size,
            completion_ring: cfg.completion_ring,
            modes: (xdp_mode, bind_mode),
            on_shutdown: cfg.on_shutdown,
            busy_poll: cfg.busy_poll_us > 0,
            workers: cfg.queues.max(1) as usize,
            offload,
            vlan,
        };
        io.arm(cfg)?;
        Ok(io)
    }

    /// The XDP mode (generic if either port runs generic) and the bind mode.
    pub fn mode(&self) -> (XdpMode, BindMode) {
        self.modes
    }

    /// The interface name of a port.
    pub fn ifname(&self, port: Port) -> &str {
        &self.ports[port.index()].ifname
    }

    /// What the ports' VLAN tag offloads were set to at open, per port.
    pub fn vlan_setup(&self) -> &[VlanSetup; 2] {
        &self.vlan
    }

    /// The kernel tier's maps (once; `None` without [`AfXdpConfig::offload`]):
    /// one handle on the same maps per bound queue, in queue order (the first
    /// also reads the tier counters), for the workers' offloaders
    /// ([`crate::pipeline::Pipeline::assemble`]). Until one writes a
    /// generation the programs hand every frame to the sockets.
    pub fn take_offload_all(&mut self) -> Option<Vec<XdpOffloadMap>> {
        self.offload.take()
    }

    /// Remove the XDP programs (whatever `on_shutdown` says) and close the
    /// sockets: the ports become plain interfaces of this host.
    pub fn detach(mut self) -> Result<(), AfXdpError> {
        self.finish(OnShutdown::Detach)
    }

    /// Close the sockets but leave the programs attached (pinned): the fail mode
    /// applies from now on, also after this process exits.
    pub fn leave_attached(mut self) {
        let _ = self.finish(OnShutdown::LeaveAttached);
    }

    /// Shut down as configured by `on_shutdown` (what dropping does, with the
    /// error reported).
    pub fn shutdown(mut self) -> Result<(), AfXdpError> {
        let action = self.on_shutdown;
        self.finish(action)
    }

    fn finish(&mut self, action: OnShutdown) -> Result<(), AfXdpError> {
        let mut result = Ok(());
        for p in &mut self.ports {
            if let Some(xdp) = p.xdp.take() {
                match action {
                    OnShutdown::Detach => {
                        if let Err(e) = xdp.detach() {
                            result = result.and(Err(e));
                        }
                    }
                    OnShutdown::LeaveAttached => xdp.leave_attached(),
                }
            }
            // Closing a socket removes it from the XSKMAP (kernel side).
            p.queues.clear();
        }
        result
    }
}

impl Drop for AfXdpIo {
    fn drop(&mut self) {
        let action = self.on_shutdown;
        let _ = self.finish(action);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_without_the_interface_says_so() {
        let cfg = AfXdpConfig::new("bh-no-such-a", "bh-no-such-b");
        let err = AfXdpIo::open(&cfg).unwrap_err();
        assert!(matches!(err, AfXdpError::NoInterface { ref ifname } if ifname == "bh-no-such-a"));
    }
}
