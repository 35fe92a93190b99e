//! The prose of the RESULTS.md section around the tables.

use super::report::{label, median, ReportArgs, Row};
use std::fmt::Write as _;
use std::path::Path;

fn first_line(path: &str, key: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Is the generator far above every DUT? "xdp-fwd / best other" at 64 B.
fn ceiling_note(rows: &[Row]) -> String {
    let t: Vec<&Row> = rows
        .iter()
        .filter(|r| r.kind == "tput" && r.size == 64)
        .collect();
    let med = |dut: &str| {
        let v: Vec<f64> = t.iter().filter(|r| r.dut == dut).map(|r| r.pps()).collect();
        (!v.is_empty()).then(|| median(v))
    };
    let Some(x) = med("xdp-fwd") else {
        return String::new();
    };
    let mut others: Vec<(String, f64)> = t
        .iter()
        .map(|r| r.dut.clone())
        .filter(|d| d != "xdp-fwd")
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter_map(|d| med(&d).map(|v| (d, v)))
        .collect();
    others.sort_by(|a, b| b.1.total_cmp(&a.1));
    match others.first() {
        Some((d, v)) => format!(
            "The bare XDP redirect forwarded {:.2} Mpps, {:.1}x the best other DUT ({}, {:.2} Mpps), \
             so the generator was not what limited the others.",
            x / 1e6,
            x / v.max(1.0),
            label(d),
            v / 1e6
        ),
        None => String::new(),
    }
}

/// Median 64-byte pps of a DUT at a rule count (any rule count for the
/// rule-independent DUTs).
fn pps(rows: &[Row], dut: &str, rules: u32) -> Option<f64> {
    let v: Vec<f64> = rows
        .iter()
        .filter(|r| r.kind == "tput" && r.size == 64 && r.dut == dut)
        .filter(|r| r.rules == rules || !super::report::rule_dependent(dut))
        .map(|r| r.pps())
        .collect();
    (!v.is_empty()).then(|| median(v))
}

/// The issues' goals (benchmarks, not tests), against this run's medians.
fn goals(rows: &[Row]) -> String {
    let mut s = String::new();
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let met = |v: f64, goal: f64| if v >= goal { "met" } else { "missed" };
    let mut line = |what: &str, v: Option<f64>, goal: f64| {
        if let Some(v) = v {
            let _ = writeln!(s, "- {what}: {v:.2} (goal >= {goal}: {})", met(v, goal));
        }
    };
    for dut in ["bulkhead", "bulkhead-offload-off", "bulkhead-offload-on"] {
        let name = label(dut);
        let at1k = pps(rows, dut, 1000);
        line(
            &format!("{name} / bridge + best nftables, 1k rules, 64 B (issue 8)"),
            ratio(at1k, pps(rows, "nft-best", 1000)),
            1.5,
        );
        line(
            &format!("{name} at 100k rules / at 1k rules (issue 8: flat)"),
            ratio(pps(rows, dut, 100_000), at1k),
            0.9,
        );
        if dut == "bulkhead-offload-on" {
            line(
                &format!("{name} / bridge + best nftables (issue 11)"),
                ratio(at1k, pps(rows, "nft-best", 1000)),
                2.5,
            );
            line(
                &format!("{name} / bare XDP redirect (issue 11)"),
                ratio(at1k, pps(rows, "xdp-fwd", 1000)),
                0.6,
            );
        } else {
            line(
                &format!("{name} / bare AF_XDP forwarder (issue 11, offload off)"),
                ratio(at1k, pps(rows, "afxdp-fwd", 1000)),
                0.9,
            );
        }
    }
    if s.is_empty() {
        return s;
    }
    format!("\nGoals (benchmarks, not tests), from the medians above:\n\n{s}")
}

pub fn section(rows: &[Row], tables: &str, a: &ReportArgs, md: &Path) -> String {
    let png = "e2e-pps-vs-rules.png";
    let _ = md;
    let mut s = String::new();
    let _ = write!(
        s,
        "\n## End to end: generator -> DUT -> sink, every DUT in one run\n\n\
         Measured {}, kernel {}, {} CPUs ({}), in {} s. Reproduce: `sudo {}` \
         (`--smoke` is a seconds-long check that writes nothing; `--runs`, `--duration`, `--duts`). \
         The machine is shared with other engineers' builds and tests; the run held \
         `/tmp/bh-netns.lock`, so no other namespace test ran meanwhile, but builds may have.\n",
        a.date.clone().unwrap_or_else(now_utc),
        kernel(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        first_line("/proc/cpuinfo", "model name"),
        a.elapsed,
        a.command
    );
    s.push_str(
        "\nEvery figure is the median of the runs, pps counted at the sink by its XDP program \
         over the generator's sending time; the ratio column divides by bridge + best nftables \
         (`bulkhead-bench nft`) at the same rule count. Gbit/s counts frame bytes without FCS, \
         preamble and gap. Loss is 1 - received / sent. CPU0/CPU1 busy are from /proc/stat over \
         the measurement; DUT process CPU is the userspace DUT's own time as a share of one CPU.\n",
    );
    s.push_str(tables);
    let _ = writeln!(s, "\n{}\n", ceiling_note(rows));
    s.push_str(&goals(rows));
    s.push('\n');
    let _ = writeln!(s, "![pps vs rules]({png})\n");
    s.push_str(
        "How the two CPUs were shared: the generator thread is pinned to CPU 0. Its \
         BPF_PROG_RUN call transmits with XDP_TX into the DUT's veth, and the kernel work that \
         follows (the bridge and nftables, or the XDP redirect, and the sink's XDP program) runs \
         in softirq on CPU 0 too, synchronously; so for the kernel DUTs one CPU carries the whole \
         chain, and the figure is what the chain does on one core. Userspace DUTs (bare AF_XDP \
         forwarder, bulkhead) are pinned to CPU 1: CPU 0 still runs the generator and the \
         copy into the AF_XDP socket, CPU 1 the process and its transmit into the sink's veth \
         (and the sink's XDP program). The frames of all DUTs take the same path up to the \
         DUT's port.\n\n\
         Policy: `bulkhead-bench policy --rules N` (100 source and 100 destination groups of one \
         MAC each, rules between group pairs on UDP or TCP ports, every tenth denying; \
         default enforce). The 10k flows aim at rules spread over the whole set (flow i at rule \
         i * N / 10000), so a linear ruleset walks half of it on average. bulkhead runs that \
         policy from the same file; nftables runs its export in the DUT's bridge. \
         Latency: the generator stamps CLOCK_MONOTONIC into each frame at a fixed rate, the \
         sink's XDP program subtracts it from its own clock into buckets (100 ns to 1 ms, then \
         10 µs to 100 ms), and \
         `hdrhistogram` gives the percentiles; both ends are in the kernel on one machine, so no \
         clock sync and no scheduler wake-up at the sink is measured.\n\n\
         The quarantine timing is end to end: the appliance runs with its API on, \
         `bulkhead-bench quarantine` (in the DUT's namespace) quarantines the streaming \
         workload with an operator token over HTTPS, reads the sink's pinned counter map for \
         the last arrival, and releases. The policy swap under load (issue 8 item 5) and the \
         in-process publish timings are from `cargo bench -p bulkhead-bench --bench publish`; \
         1 against 2 workers is \
         `bench/workers.sh` (it needs veths with two queues; this \
         topology's have one).\n",
    );
    s
}
