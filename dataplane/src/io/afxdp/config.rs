//! The AF_XDP backend's settings and errors.

use super::socket::BindPreference;
use super::xdp::{FailMode, OnShutdown, XdpModePreference};
use crate::io::Port;
use std::path::PathBuf;

/// The headroom the kernel keeps in front of a received frame in its chunk
/// (`XDP_PACKET_HEADROOM`).
pub const XDP_PACKET_HEADROOM: u32 = 256;

/// Where bulkhead pins its XDP links by default.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/bulkhead";

/// Settings of the AF_XDP backend.
#[derive(Debug, Clone)]
pub struct AfXdpConfig {
    /// Interface of segment A.
    pub port_a: String,
    /// Interface of segment B.
    pub port_b: String,
    /// Frames in the UMEM (shared by both ports).
    pub frames: u32,
    /// Bytes per frame: 2048 or 4096 (a power of two, at most a page).
    pub chunk_size: u32,
    /// Entries of each port's fill ring (a power of two).
    pub fill_ring: u32,
    /// Entries of each port's completion ring (a power of two).
    pub completion_ring: u32,
    /// Entries of each socket's rx ring (a power of two).
    pub rx_ring: u32,
    /// Entries of each socket's tx ring (a power of two).
    pub tx_ring: u32,
    pub bind: BindPreference,
    pub xdp_mode: XdpModePreference,
    pub fail_mode: FailMode,
    pub on_shutdown: OnShutdown,
    /// Where the XDP links are pinned (on bpffs; `/sys/fs/bpf` is mounted if
    /// needed). `None`: not pinned, so the program ends with the process.
    pub pin_dir: Option<PathBuf>,
    /// VLAN tags a frame may carry on top of the MTU (4 bytes each).
    pub max_vlan_tags: u8,
    /// Bind attempts after EBUSY, 50 ms apart.
    pub bind_retries: u32,
    /// Busy polling: 0 (the default) sleeps in `poll` until a frame arrives
    /// (need-wakeup); N > 0 sets preferred busy polling on every socket, with
    /// N microseconds of device polling per syscall, and [`AfXdpIo::poll_wait`]
    /// never sleeps: lowest latency, one core kept busy.
    pub busy_poll_us: u32,
    /// Frames per busy poll of the device queue.
    pub busy_poll_budget: u32,
    /// Workers the queues are for. With 1, every receive queue of each port
    /// gets a socket and the one [`AfXdpIo`] reads them all. With N > 1, each
    /// port must use exactly N queues (`ethtool -L`), and [`AfXdpIo::split`]
    /// gives queue i of both ports to worker i. (A queue without a socket would
    /// follow the fail mode: unfiltered or dropped.)
    pub queues: u32,
    /// Prepare the kernel tier (flow offload): both port programs share one flow
    /// map of `offload_entries` entries, and [`AfXdpIo::take_offload_all`] hands it
    /// out. Without it the programs hand every frame to the sockets.
    pub offload: bool,
    pub offload_entries: u32,
}

impl AfXdpConfig {
    /// The defaults for a port pair: 4096 frames of 2048 bytes (8 MiB), rings of
    /// 2048, zero-copy if possible, native XDP if possible, fail-closed, detach
    /// on shutdown, pinned under [`DEFAULT_PIN_DIR`].
    pub fn new(port_a: impl Into<String>, port_b: impl Into<String>) -> Self {
        AfXdpConfig {
            port_a: port_a.into(),
            port_b: port_b.into(),
            frames: 4096,
            chunk_size: 2048,
            fill_ring: 2048,
            completion_ring: 2048,
            rx_ring: 2048,
            tx_ring: 2048,
            bind: BindPreference::default(),
            xdp_mode: XdpModePreference::default(),
            fail_mode: FailMode::default(),
            on_shutdown: OnShutdown::default(),
            pin_dir: Some(PathBuf::from(DEFAULT_PIN_DIR)),
            max_vlan_tags: 1,
            bind_retries: 40,
            busy_poll_us: 0,
            busy_poll_budget: 64,
            queues: 1,
            offload: true,
            offload_entries: 1 << 16,
        }
    }

    pub(crate) fn name(&self, port: Port) -> &str {
        match port {
            Port::A => &self.port_a,
            Port::B => &self.port_b,
        }
    }

    /// Bytes of a chunk a received frame may fill.
    pub fn frame_room(&self) -> u32 {
        self.chunk_size.saturating_sub(XDP_PACKET_HEADROOM)
    }

    pub(crate) fn validate(&self) -> Result<(), AfXdpError> {
        let bad = |reason: String| Err(AfXdpError::Config(reason));
        if !(2048..=4096).contains(&self.chunk_size) || !self.chunk_size.is_power_of_two() {
            return bad(format!(
                "chunk_size {} must be 2048 or 4096",
                self.chunk_size
            ));
        }
        for (name, v) in [
            ("fill_ring", self.fill_ring),
            ("completion_ring", self.completion_ring),
            ("rx_ring", self.rx_ring),
            ("tx_ring", self.tx_ring),
        ] {
            if !v.is_power_of_two() {
                return bad(format!("{name} {v} must be a power of two"));
            }
        }
        if self.busy_poll_us > 0 && self.busy_poll_budget == 0 {
            return bad("busy_poll_budget must be at least 1 with busy polling on".to_string());
        }
        if self.queues == 0 || self.queues > 64 {
            return bad(format!("queues {} must be 1..=64", self.queues));
        }
        if u64::from(self.frames) < 256 * u64::from(self.queues) {
            return bad(format!(
                "frames {} must be at least 256 per queue ({} queues)",
                self.frames, self.queues
            ));
        }
        if self.frames < 2 * 64 {
            return bad(format!("frames {} must be at least 128", self.frames));
        }
        if self.port_a == self.port_b {
            return bad(format!("port A and port B are both {}", self.port_a));
        }
        Ok(())
    }
}

/// Why the AF_XDP backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    #[error("interface {ifname} does not exist (in this network namespace)")]
    NoInterface { ifname: String },
    #[error("AF_XDP on {ifname} needs root, or CAP_NET_ADMIN and CAP_BPF (CAP_SYS_ADMIN before Linux 5.8)")]
    NotPermitted { ifname: String },
    #[error("{ifname}: MTU {mtu} needs {need}-byte frames (with {vlan_tags} VLAN tag(s)), but a {chunk}-byte chunk holds {room}; lower the MTU or raise chunk_size")]
    MtuTooLarge {
        ifname: String,
        mtu: u32,
        vlan_tags: u8,
        need: u32,
        chunk: u32,
        room: u32,
    },
    #[error("{ifname}: cannot set promiscuous mode (a data port must receive frames for every MAC of its segment): {reason}")]
    Promiscuous { ifname: String, reason: String },
    #[error("XDP attach on {ifname} refused (tried {tried})")]
    Attach { ifname: String, tried: String },
    #[error("XDP program for {ifname}: {reason}")]
    Program { ifname: String, reason: String },
    #[error("pinning the XDP link of {ifname} under {path}: {reason}")]
    Pin {
        ifname: String,
        path: PathBuf,
        reason: String,
    },
    #[error("AF_XDP socket on {ifname} queue {queue} busy after {tries} bind attempts (another socket holds the queue)")]
    Busy {
        ifname: String,
        queue: u32,
        tries: u32,
    },
    #[error("AF_XDP socket on {ifname} queue {queue}: {op}: {reason}")]
    Socket {
        ifname: String,
        queue: u32,
        op: &'static str,
        errno: i32,
        reason: String,
    },
    #[error("AF_XDP on {ifname}: no bind mode worked (tried {tried})")]
    Bind { ifname: String, tried: String },
    #[error("AF_XDP UMEM: {0}")]
    Umem(String),
    #[error("invalid AF_XDP configuration: {0}")]
    Config(String),
    #[error("{ifname} has {found} receive queue(s) but {workers} workers need {workers}: set dataplane.workers = {found}, or `ethtool -L {ifname} combined {workers}` (or rx {workers})")]
    Queues {
        ifname: String,
        found: u32,
        workers: u32,
    },
    #[error(transparent)]
    StripsVlanTags(#[from] super::vlan::StripsTags),
}

impl AfXdpError {
    pub(crate) fn socket(ifname: &str, queue: u32, op: &'static str, errno: i32) -> Self {
        let errno = errno.abs();
        if errno == libc::EPERM || errno == libc::EACCES {
            return AfXdpError::NotPermitted {
                ifname: ifname.to_string(),
            };
        }
        AfXdpError::Socket {
            ifname: ifname.to_string(),
            queue,
            op,
            errno,
            reason: std::io::Error::from_raw_os_error(errno).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_fits_a_1500_mtu_with_a_vlan_tag() {
        let cfg = AfXdpConfig::new("a", "b");
        cfg.validate().unwrap();
        assert_eq!(cfg.frame_room(), 2048 - 256);
        assert!(1500 + 14 + 4 <= cfg.frame_room());
    }

    #[test]
    fn config_errors_name_the_setting() {
        let mut cfg = AfXdpConfig::new("a", "b");
        cfg.chunk_size = 3000;
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "invalid AF_XDP configuration: chunk_size 3000 must be 2048 or 4096"
        );
        let mut cfg = AfXdpConfig::new("a", "b");
        cfg.tx_ring = 1000;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("tx_ring 1000"));
        let cfg = AfXdpConfig::new("eth1", "eth1");
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("both eth1"));
    }

    #[test]
    fn errors_are_one_line_and_name_the_interface() {
        let errors = [
            AfXdpError::NoInterface {
                ifname: "eth9".into(),
            },
            AfXdpError::NotPermitted {
                ifname: "eth9".into(),
            },
            AfXdpError::MtuTooLarge {
                ifname: "eth9".into(),
                mtu: 9000,
                vlan_tags: 1,
                need: 9018,
                chunk: 2048,
                room: 1792,
            },
            AfXdpError::Attach {
                ifname: "eth9".into(),
                tried: "native: refused; generic: refused".into(),
            },
            AfXdpError::Busy {
                ifname: "eth9".into(),
                queue: 0,
                tries: 41,
            },
        ];
        for e in errors {
            let s = e.to_string();
            assert!(s.contains("eth9") && !s.contains('\n'), "{s}");
        }
    }
}
