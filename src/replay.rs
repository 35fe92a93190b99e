//! `bulkhead replay`: what would this policy do to this traffic?
//!
//! Every frame of a capture goes through the real packet path (parse, flow table,
//! policy snapshot, worker) on the in-memory backend, with the capture's own
//! timestamps as the clock. The flow events the worker emits are tallied into a
//! verdict table, per-rule hit counts and, on request, the list of denied flows.

use crate::capture;
use anyhow::Context;
use control::records::{Clock, Recorder, RecordsConfig, RecordsWriter};
use control::{Compiled, Model, RuleMap};
use dataplane::event::{Event, FlowRecord};
use dataplane::io::mem::MemIo;
use dataplane::io::Port;
use dataplane::policy::{Action, Reason, SnapshotCell};
use dataplane::worker::{DropReason, Worker, WorkerConfig};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The capture to replay (pcap or pcapng, Ethernet link type).
    pub capture: PathBuf,
    /// The policy model file (YAML or TOML), as `bulkhead policy check` reads it.
    #[arg(long, short)]
    pub policy: PathBuf,
    /// Also list every denied flow (and every audit would-deny).
    #[arg(long)]
    pub denied: bool,
    /// Flow-table capacity.
    #[arg(long, default_value_t = 1 << 20)]
    pub flows: usize,
    /// Also write the flow records into this records store (created if
    /// absent), with the capture's timestamps as the clock, for `bulkhead
    /// records` to query like live traffic.
    #[arg(long)]
    pub records: Option<PathBuf>,
    /// Also export the flow records over IPFIX to this collector
    /// (`udp://HOST[:PORT]`, `tcp://HOST[:PORT]`; repeatable), with the
    /// capture's timestamps.
    #[arg(long = "ipfix", value_name = "COLLECTOR")]
    pub ipfix: Vec<control::ipfix::Collector>,
    /// With `--ipfix`: also send workload names, groups, the rule id, the
    /// verdict's reason and mode under this enterprise number.
    #[arg(long, value_name = "PEN", requires = "ipfix")]
    pub ipfix_enterprise: Option<u32>,
}

/// Packets, bytes and flows.
#[derive(Default, Clone, Copy)]
struct Tally {
    flows: u64,
    packets: u64,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, r: &FlowRecord) {
        self.flows += 1;
        self.packets += r.packets[0] + r.packets[1];
        self.bytes += r.bytes[0] + r.bytes[1];
    }
}

#[derive(Default)]
struct Report {
    by_verdict: BTreeMap<&'static str, Tally>,
    by_reason: BTreeMap<String, Tally>,
    rules: BTreeMap<u32, Tally>,
    denied: Vec<FlowRecord>,
    dns: u64,
    first_ns: Option<u64>,
    last_ns: u64,
    snapped: u64,
}

fn verdict_label(r: &FlowRecord) -> &'static str {
    match (r.verdict.action, r.verdict.would_deny) {
        (Action::Allow, false) => "allow",
        (Action::Allow, true) => "allow, would deny (audit/learn)",
        (Action::Deny, _) => "deny",
    }
}

/// `rule N` names the user rule a compiled rule came from.
fn reason_label(reason: Reason, rules: &RuleMap) -> String {
    match reason {
        Reason::Rule(id) => format!("rule {}", rules.user_rule(id).unwrap_or(id)),
        Reason::Quarantine => "quarantine".into(),
        Reason::Management => "management exception".into(),
        Reason::Blocklist => "blocklist".into(),
        Reason::Intel(id) => format!("intel entry {id}"),
        Reason::Default => "default".into(),
    }
}

impl Report {
    fn take(&mut self, event: Event, rules: &RuleMap) {
        match event {
            Event::FlowEnd(r, _) => {
                self.by_verdict
                    .entry(verdict_label(&r))
                    .or_default()
                    .add(&r);
                let key = format!(
                    "{} ({:?})",
                    reason_label(r.verdict.reason, rules),
                    r.verdict.mode
                )
                .to_lowercase();
                self.by_reason.entry(key).or_default().add(&r);
                if let Reason::Rule(id) = r.verdict.reason {
                    let id = rules.user_rule(id).unwrap_or(id);
                    self.rules.entry(id).or_default().add(&r);
                }
                if r.verdict.action == Action::Deny || r.verdict.would_deny {
                    self.denied.push(r);
                }
            }
            Event::Dns(_) => self.dns += 1,
            _ => {}
        }
    }
}

pub fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    let model = control::load_model(&args.policy)?;
    let (snapshot, compiled) = control::compile_snapshot(&model, 1)
        .with_context(|| format!("{}: policy does not compile", args.policy.display()))?;
    let cell = Arc::new(SnapshotCell::new(snapshot));
    let exporter = if args.ipfix.is_empty() {
        None
    } else {
        Some(control::ipfix::Exporter::start(
            control::ipfix::IpfixConfig {
                collectors: args.ipfix.clone(),
                enterprise: args.ipfix_enterprise,
                ..control::ipfix::IpfixConfig::default()
            },
        )?)
    };
    let mut recorder = match (&args.records, exporter) {
        (Some(path), exporter) => {
            let writer = RecordsWriter::start(path, RecordsConfig::for_import())?;
            let mut r = Recorder::lossless(writer, Clock::Unix);
            if let Some(x) = exporter {
                r.export_to(x);
            }
            Some(r)
        }
        (None, Some(x)) => Some(Recorder::lossless_export_only(x, Clock::Unix)),
        (None, None) => None,
    };
    let shared_model = Arc::new(model.clone());
    let mut take = |report: &mut Report, e: Event| {
        if let Some(r) = recorder.as_mut() {
            r.record(&e, &shared_model, &cell.load());
        }
        report.take(e, &compiled.rules);
    };
    let (sink, events) = dataplane::event::channel(1 << 16);
    let cfg = WorkerConfig {
        flow_capacity: args.flows,
        batch_size: 1,
        ..WorkerConfig::default()
    };
    let mut worker = Worker::new(cfg, cell.clone(), sink);
    // One frame at a time, so every frame is handled at its own capture time.
    let mut io = MemIo::new(2, 1 << 16);
    let mut report = Report::default();
    let mut padded = Vec::with_capacity(1 << 16);

    let frames = capture::for_each_frame(&args.capture, |frame| {
        report.first_ns.get_or_insert(frame.time_ns);
        report.last_ns = report.last_ns.max(frame.time_ns);
        // A capture with a snap length keeps only the start of each frame; pad it
        // back to its wire length so headers that state lengths still parse and
        // byte counts are the wire's.
        let wire_len = (frame.orig_len as usize).min(1 << 16);
        let data = if frame.data.len() < wire_len {
            report.snapped += 1;
            padded.clear();
            padded.extend_from_slice(frame.data);
            padded.resize(wire_len, 0);
            &padded[..]
        } else {
            frame.data
        };
        io.inject(Port::A, data)?;
        worker.poll(&mut io, frame.time_ns)?;
        io.drain_tx(Port::B, |_| {});
        for e in events.try_iter() {
            take(&mut report, e);
        }
        Ok(())
    })?;
    worker.flush();
    for e in events.try_iter() {
        take(&mut report, e);
    }
    if let Some(r) = recorder {
        let counters = r.counters();
        let exported = r.export_counters();
        r.finish();
        if let Some(x) = exported {
            for c in &x.collectors {
                eprintln!(
                    "ipfix: {} flow records in {} messages sent to {}, {} lost",
                    c.records.load(std::sync::atomic::Ordering::Relaxed),
                    c.messages.load(std::sync::atomic::Ordering::Relaxed),
                    c.name,
                    c.lost_records.load(std::sync::atomic::Ordering::Relaxed)
                );
            }
        }
        if let (Some(path), Some(counters)) = (&args.records, counters) {
            eprintln!(
                "records: {} flow records and {} DNS responses written to {}",
                counters.written.load(std::sync::atomic::Ordering::Relaxed),
                counters
                    .dns_written
                    .load(std::sync::atomic::Ordering::Relaxed),
                path.display()
            );
        }
    }
    print!(
        "{}",
        render(args, &model, &compiled, &worker, &report, frames)
    );
    Ok(())
}

fn render(
    args: &ReplayArgs,
    model: &Model,
    compiled: &Compiled,
    worker: &Worker,
    r: &Report,
    frames: u64,
) -> String {
    let stats = worker.stats();
    let mut out = String::new();
    let span = r.last_ns.saturating_sub(r.first_ns.unwrap_or(0)) as f64 / 1e9;
    let _ = writeln!(
        out,
        "replayed {} frames ({:.1} s of traffic) from {} against {} ({} rules, {} compiled)\n",
        frames,
        span,
        args.capture.display(),
        args.policy.display(),
        model.rules.len(),
        compiled.rules.compiled_len()
    );
    let _ = writeln!(
        out,
        "{:<34} {:>8} {:>10} {:>12}",
        "VERDICT", "FLOWS", "PACKETS", "BYTES"
    );
    for (label, t) in &r.by_verdict {
        let _ = writeln!(
            out,
            "{:<34} {:>8} {:>10} {:>12}",
            label, t.flows, t.packets, t.bytes
        );
    }
    let _ = writeln!(
        out,
        "{:<34} {:>8} {:>10}",
        "passed without a flow (ARP, ND)", "-", stats.passed_stateless
    );
    for reason in [
        DropReason::Malformed,
        DropReason::Fragment,
        DropReason::NonIp,
    ] {
        let n = stats.drops(reason);
        if n > 0 {
            let _ = writeln!(
                out,
                "{:<34} {:>8} {:>10}",
                format!("dropped: {}", reason.name()),
                "-",
                n
            );
        }
    }

    let _ = writeln!(
        out,
        "\n{:<34} {:>8} {:>10} {:>12}",
        "DECIDED BY", "FLOWS", "PACKETS", "BYTES"
    );
    for (label, t) in &r.by_reason {
        let _ = writeln!(
            out,
            "{:<34} {:>8} {:>10} {:>12}",
            label, t.flows, t.packets, t.bytes
        );
    }

    let _ = writeln!(
        out,
        "\n{:>6} {:<6} {:>8} {:>10} {:>12}  COMMENT",
        "RULE", "ACTION", "FLOWS", "PACKETS", "BYTES"
    );
    for rule in &model.rules {
        let t = r.rules.get(&rule.id).copied().unwrap_or_default();
        let action = match rule.action {
            Action::Allow => "allow",
            Action::Deny => "deny",
        };
        let comment = rule.comment.as_deref().unwrap_or("");
        let never = match (rule.enabled, t.flows) {
            (false, _) => " (disabled)",
            (true, 0) => " (never hit)",
            _ => "",
        };
        let _ = writeln!(
            out,
            "{:>6} {:<6} {:>8} {:>10} {:>12}  {}{}",
            rule.id, action, t.flows, t.packets, t.bytes, comment, never
        );
    }

    if args.denied {
        let _ = writeln!(out, "\nDENIED AND WOULD-DENY FLOWS ({})", r.denied.len());
        let _ = writeln!(
            out,
            "{:>12}  {:<5} {:<45} {:<45} {:<17} {:>7}  VERDICT",
            "T+SECONDS", "PROTO", "SOURCE", "DESTINATION", "SOURCE MAC", "PACKETS"
        );
        let t0 = r.first_ns.unwrap_or(0);
        let mut denied = r.denied.clone();
        denied.sort_by_key(|f| f.first_seen);
        for f in &denied {
            let verdict = match f.verdict.action {
                Action::Deny => {
                    format!("deny: {}", reason_label(f.verdict.reason, &compiled.rules))
                }
                Action::Allow => format!(
                    "would deny: {}",
                    reason_label(f.verdict.reason, &compiled.rules)
                ),
            };
            let _ = writeln!(
                out,
                "{:>12.6}  {:<5} {:<45} {:<45} {:<17} {:>7}  {}",
                f.first_seen.saturating_sub(t0) as f64 / 1e9,
                control::services::proto_name(f.proto),
                endpoint(f.src_ip, f.src_port, f.proto),
                endpoint(f.dst_ip, f.dst_port, f.proto),
                mac(f.src_mac.0),
                f.packets[0] + f.packets[1],
                verdict
            );
        }
    }

    let _ = writeln!(
        out,
        "\nflows created {}, DNS responses seen {}, events lost {}",
        stats.flows_created, r.dns, stats.events_lost
    );
    if r.snapped > 0 {
        let _ = writeln!(
            out,
            "{} frames were cut by the capture's snap length and padded back to their wire length",
            r.snapped
        );
    }
    out
}

fn endpoint(ip: std::net::IpAddr, port: u16, proto: u8) -> String {
    match (proto, ip) {
        (6 | 17, std::net::IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        (6 | 17, std::net::IpAddr::V4(v4)) => format!("{v4}:{port}"),
        _ => ip.to_string(),
    }
}

fn mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}
