//! What the appliance writes to its log: flow lines (rate-limited) and the
//! stats line.

use control::engine::ControlHandle;
use dataplane::event::{Event, FlowRecord};
use dataplane::io::Port;
use dataplane::policy::{Action, Reason};
use dataplane::worker::{DropReason, SocketDrops, StatsBoard, WorkerStats};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// One line for a flow: what, who, why (an intel entry by its feed and
/// what it lists, from the intel in force if the verdict came from it).
fn describe(r: &FlowRecord, control: Option<&ControlHandle>) -> String {
    let reason = match r.verdict.reason {
        Reason::Rule(id) => format!("rule {}", control::compile::user_rule_id(id)),
        Reason::Quarantine => "quarantine".into(),
        Reason::Management => "management exception".into(),
        Reason::Blocklist => "blocklist".into(),
        Reason::Intel(id) => {
            // Ids are positions in a reading: named only by the reading
            // the verdict came from (or one published before it).
            let view = control.map(|c| c.intel());
            let named = view
                .filter(|v| v.generation <= r.generation)
                .and_then(|v| v.intel.describe(id, &[r.dst_ip, r.src_ip]));
            match named {
                Some(entry) => format!("intel {entry}"),
                None => "intel (an entry of an earlier reading)".into(),
            }
        }
        Reason::Default => "default".into(),
    };
    format!(
        "proto {} {}:{} -> {}:{} src-mac {} by {} ({:?})",
        r.proto, r.src_ip, r.src_port, r.dst_ip, r.dst_port, r.src_mac, reason, r.verdict.mode
    )
    .to_lowercase()
}

/// Flow lines in the log, at most `PER_SECOND` a second: a scan or a flood must
/// not turn the log into the bottleneck. What is held back is counted and said.
pub(super) struct FlowLog {
    pub(super) second: u64,
    pub(super) written: u32,
    pub(super) held_back: u64,
    /// The control thread's handle once it runs: the intel in force, to
    /// name an entry.
    pub(super) control: Arc<OnceLock<ControlHandle>>,
}

impl FlowLog {
    const PER_SECOND: u32 = 50;

    pub(super) fn event(&mut self, e: &Event, now: Duration) {
        let control = self.control.get();
        let describe = |r: &FlowRecord| describe(r, control);
        let line = match e {
            Event::FlowStart(r) if r.verdict.action == Action::Deny => {
                format!("deny {}", describe(r))
            }
            Event::WouldDeny(r) => format!("would-deny {}", describe(r)),
            Event::Spoof(sp) => format!(
                "spoof ({}): src-mac {} used {}, held by {}",
                sp.kind.name(),
                sp.mac,
                sp.ip,
                sp.owner
            ),
            Event::Reclassified(r) => {
                let v = if r.verdict.action == Action::Deny {
                    "deny"
                } else {
                    "allow"
                };
                format!("reclassified {v} {}", describe(r))
            }
            _ => return,
        };
        let second = now.as_secs();
        if second != self.second {
            if self.held_back > 0 {
                println!(
                    "({} more flow lines held back in the last second)",
                    self.held_back
                );
            }
            (self.second, self.written, self.held_back) = (second, 0, 0);
        }
        if self.written < Self::PER_SECOND {
            self.written += 1;
            println!("{line}");
        } else {
            self.held_back += 1;
        }
    }
}

fn stats_line(s: &WorkerStats, flows: usize) -> String {
    let drops: Vec<String> = DropReason::ALL
        .iter()
        .filter(|r| s.drops(**r) > 0)
        .map(|r| format!("{} {}", r.name(), s.drops(*r)))
        .collect();
    let (a, b, o) = (s.port(Port::A), s.port(Port::B), &s.offload);
    format!(
        "stats: A rx {} tx {}, B rx {} tx {}, flows {} live {} created, drops [{}], events lost {}, \
         spoofed {}, syns refused {}, \
         tiers: kernel forwarded {} pkts {} B dropped {} pkts {} B, userspace {} pkts {} B, \
         offload entries live {} installed {} removed {} evicted {} full {} invalidated {}",
        a.rx_packets,
        a.tx_packets,
        b.rx_packets,
        b.tx_packets,
        flows,
        s.flows_created,
        drops.join(", "),
        s.events_lost,
        s.spoofed,
        s.syn_refused,
        o.tier.forwarded_packets,
        o.tier.forwarded_bytes,
        o.tier.dropped_packets,
        o.tier.dropped_bytes,
        a.rx_packets + b.rx_packets,
        a.rx_bytes + b.rx_bytes,
        o.live,
        o.installed,
        o.removed,
        o.evicted,
        o.full,
        o.invalidated,
    )
}

/// The stats line over every worker's last report: totals, then the frames
/// each worker holds and hands over (with several workers).
pub(super) fn board_line(board: &StatsBoard) -> String {
    let reports = board.reports();
    let mut total = WorkerStats::default();
    let mut flows = 0;
    for r in &reports {
        total.merge(&r.worker);
        flows += r.live_flows;
    }
    let mut line = stats_line(&total, flows);
    let mut socket = SocketDrops::default();
    for r in &reports {
        socket.merge(&r.io.socket);
    }
    let socket: Vec<String> = socket
        .by_name()
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    line += &format!(", kernel socket drops [{}]", socket.join(", "));
    let io: Vec<String> = reports
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let q = &r.io;
            if reports.len() > 1 {
                format!(
                    "w{i} free frames {} handed out {} in {} ring-full drops {}",
                    q.free_frames, q.handed_out, q.handed_in, q.handoff_full
                )
            } else {
                format!("free frames {}", q.free_frames)
            }
        })
        .collect();
    line += &format!(", {}", io.join("; "));
    line
}
