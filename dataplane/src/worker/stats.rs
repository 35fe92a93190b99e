//! The worker's counters.

use crate::io::Port;
use crate::offload::OffloadStats;
use crate::policy::Reason;

/// Why the worker dropped a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// The frame did not parse (truncated, bad lengths, bad version ...).
    Malformed,
    /// A deny rule matched.
    RuleDeny,
    /// No rule matched and the effective mode is enforce.
    DefaultDeny,
    /// An endpoint is quarantined.
    Quarantine,
    /// An endpoint's IP is blocklisted.
    Blocklist,
    /// An endpoint's IP is blocked by threat intel.
    Intel,
    /// A later IP fragment whose first fragment was not seen.
    Fragment,
    /// A non-IP, non-ARP frame refused by the non-IP policy (by default: an
    /// end in enforce mode).
    NonIp,
    /// The peer port's transmit ring was full.
    TxFull,
    /// The frame claimed addresses another MAC holds (an ICMP error about a
    /// flow, not from that flow's hosts).
    Spoofed,
    /// An IP packet with TTL (hop limit) 0: no host sends one, and no router
    /// passes one on.
    ZeroTtl,
}

impl DropReason {
    pub const ALL: [DropReason; 11] = [
        DropReason::Malformed,
        DropReason::RuleDeny,
        DropReason::DefaultDeny,
        DropReason::Quarantine,
        DropReason::Blocklist,
        DropReason::Intel,
        DropReason::Fragment,
        DropReason::NonIp,
        DropReason::TxFull,
        DropReason::Spoofed,
        DropReason::ZeroTtl,
    ];

    /// The drop reason for a deny verdict's reason.
    pub fn from_verdict(reason: Reason) -> DropReason {
        match reason {
            Reason::Rule(_) => DropReason::RuleDeny,
            Reason::Default => DropReason::DefaultDeny,
            Reason::Quarantine | Reason::Management => DropReason::Quarantine,
            Reason::Blocklist => DropReason::Blocklist,
            Reason::Intel(_) => DropReason::Intel,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::RuleDeny => "rule-deny",
            DropReason::DefaultDeny => "default-deny",
            DropReason::Quarantine => "quarantine",
            DropReason::Blocklist => "blocklist",
            DropReason::Intel => "intel",
            DropReason::Fragment => "fragment",
            DropReason::NonIp => "non-ip",
            DropReason::TxFull => "tx-full",
            DropReason::Spoofed => "spoofed",
            DropReason::ZeroTtl => "ttl-zero",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Per-port packet and byte counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// Everything a worker counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStats {
    pub ports: [PortCounters; 2],
    drops: [u64; DropReason::ALL.len()],
    /// New flows classified and inserted.
    pub flows_created: u64,
    /// Flows re-decided because the policy generation changed.
    pub reclassified: u64,
    /// Frames passed without a flow: ARP, IPv6 neighbour discovery, non-IP by policy.
    pub passed_stateless: u64,
    /// Events dropped because the channel was full.
    pub events_lost: u64,
    /// Frames with a live flow's addresses from other MACs than the flow's
    /// (decided on their own, never carried by the flow).
    pub spoofed: u64,
    /// DNS answers held back for threat intel (counted as `intel` drops
    /// too): they named a blocked domain whose addresses were not blocked yet.
    pub dns_held: u64,
    /// SYNs refused on an entry they did not open (a crafted entry, or an
    /// established flow the policy allows only the other way).
    pub syn_refused: u64,
    /// The kernel tier (zero without one): what it carried, its entries.
    pub offload: OffloadStats,
}

impl WorkerStats {
    pub fn port(&self, port: Port) -> &PortCounters {
        &self.ports[port.index()]
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Adds another worker's counters to these (for a total over workers).
    pub fn merge(&mut self, o: &WorkerStats) {
        for (a, b) in self.ports.iter_mut().zip(&o.ports) {
            a.rx_packets += b.rx_packets;
            a.rx_bytes += b.rx_bytes;
            a.tx_packets += b.tx_packets;
            a.tx_bytes += b.tx_bytes;
        }
        for (a, b) in self.drops.iter_mut().zip(&o.drops) {
            *a += b;
        }
        self.flows_created += o.flows_created;
        self.reclassified += o.reclassified;
        self.passed_stateless += o.passed_stateless;
        self.events_lost += o.events_lost;
        self.spoofed += o.spoofed;
        self.syn_refused += o.syn_refused;
        self.dns_held += o.dns_held;
        self.offload.merge(&o.offload);
    }

    pub(crate) fn count_drop(&mut self, reason: DropReason, n: u64) {
        self.drops[reason.index()] += n;
    }
}

/// What a worker last reported: its counters and its flow table's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsReport {
    pub worker: WorkerStats,
    pub flows: crate::flow::FlowStats,
    pub live_flows: usize,
    pub flow_capacity: usize,
    /// The worker's packet I/O (filled in by whoever runs the worker).
    pub io: IoCounters,
}

/// A worker's packet I/O, where several workers share a port pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Frame buffers on the worker's free list.
    pub free_frames: usize,
    /// Frames received here and handed to the worker owning their flow.
    pub handed_out: u64,
    /// Frames other workers handed to this one.
    pub handed_in: u64,
    /// Frames dropped because the owning worker's ring was full.
    pub handoff_full: u64,
    /// What the kernel dropped at this worker's AF_XDP sockets.
    pub socket: SocketDrops,
}

pub use crate::io::SocketDrops;

/// Where workers publish their counters for readers off the packet path (the
/// management API, metrics): one slot per worker, replaced whole (arc-swap), so
/// neither side ever waits on the other.
#[derive(Debug)]
pub struct StatsBoard {
    slots: Vec<arc_swap::ArcSwap<StatsReport>>,
    /// When each slot was last published: nanoseconds since `epoch`, plus one
    /// (0: never).
    stamps: Vec<std::sync::atomic::AtomicU64>,
    epoch: std::time::Instant,
}

impl StatsBoard {
    pub fn new(workers: usize) -> Self {
        let n = workers.max(1);
        StatsBoard {
            slots: (0..n)
                .map(|_| arc_swap::ArcSwap::from_pointee(StatsReport::default()))
                .collect(),
            stamps: (0..n)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
            epoch: std::time::Instant::now(),
        }
    }

    /// Replaces worker `i`'s report (ignored for an `i` out of range).
    pub fn publish(&self, i: usize, report: StatsReport) {
        if let Some(slot) = self.slots.get(i) {
            slot.store(std::sync::Arc::new(report));
            let ns = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
            if let Some(stamp) = self.stamps.get(i) {
                stamp.store(ns + 1, std::sync::atomic::Ordering::Release);
            }
        }
    }

    /// Every worker's last report.
    pub fn reports(&self) -> Vec<std::sync::Arc<StatsReport>> {
        self.slots.iter().map(|s| s.load_full()).collect()
    }

    /// How long ago each worker last published (`None`: never), for liveness.
    pub fn ages(&self) -> Vec<Option<std::time::Duration>> {
        let now = self.epoch.elapsed();
        self.stamps
            .iter()
            .map(|s| match s.load(std::sync::atomic::Ordering::Acquire) {
                0 => None,
                ns => Some(now.saturating_sub(std::time::Duration::from_nanos(ns - 1))),
            })
            .collect()
    }
}

#[cfg(test)]
mod board_tests {
    use super::*;

    #[test]
    fn the_board_tells_how_old_each_report_is() {
        let b = StatsBoard::new(2);
        assert_eq!(b.ages(), vec![None, None]);
        b.publish(1, StatsReport::default());
        let ages = b.ages();
        assert_eq!(ages[0], None);
        assert!(ages[1].is_some_and(|a| a < std::time::Duration::from_secs(5)));
        b.publish(7, StatsReport::default());
        assert_eq!(b.ages().len(), 2);
    }
}
