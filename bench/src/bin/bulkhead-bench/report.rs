//! `bulkhead-bench report`: the harness's JSON result lines -> medians, ratios
//! to bridge + best nftables, a markdown section (appended to
//! `bench/RESULTS.md`) and the pps-vs-rules plot.

use anyhow::{bail, Context};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The result lines written by bench/e2e.sh.
    #[arg(long)]
    pub results: PathBuf,
    /// Append the section to this markdown file.
    #[arg(long)]
    pub append: Option<PathBuf>,
    /// Write the pps-vs-rules plot here (PNG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// The command that produced the results (for the report).
    #[arg(long, default_value = "bench/e2e.sh")]
    pub command: String,
    /// When the measurements were made (default: now), for the report.
    #[arg(long)]
    pub date: Option<String>,
    /// Seconds the measurements took.
    #[arg(long, default_value_t = 0)]
    pub elapsed: u64,
    /// Print the tables and fail unless every DUT forwarded traffic.
    #[arg(long)]
    pub check: bool,
    /// The quarantine timings (`bulkhead-bench quarantine` lines), if measured.
    #[arg(long)]
    pub incident: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
pub struct Gen {
    pub engine: String,
    pub sent: u64,
    pub secs: f64,
    pub calls: u32,
    pub cpu_secs: f64,
}

#[derive(Debug, Deserialize)]
pub struct Sink {
    pub frames: u64,
    pub bytes: u64,
}

#[derive(Debug, Deserialize)]
pub struct Lat {
    pub samples: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

/// One measurement.
#[derive(Debug, Deserialize)]
pub struct Row {
    pub kind: String,
    pub dut: String,
    pub rules: u32,
    pub size: u32,
    pub flows: u32,
    pub run: u32,
    pub rate: u64,
    pub gen: Gen,
    pub sink: Sink,
    pub lat: Option<Lat>,
    pub cpu: Vec<f64>,
    pub dut_ticks: u64,
}

impl Row {
    pub fn pps(&self) -> f64 {
        self.sink.frames as f64 / self.gen.secs.max(1e-9)
    }
    /// Frame bits (without FCS, preamble and gap) per second at the sink.
    pub fn gbps(&self) -> f64 {
        self.sink.bytes as f64 * 8.0 / self.gen.secs.max(1e-9) / 1e9
    }
    pub fn loss(&self) -> f64 {
        if self.gen.sent == 0 {
            return 0.0;
        }
        100.0 * (self.gen.sent.saturating_sub(self.sink.frames)) as f64 / self.gen.sent as f64
    }
    /// The DUT process's CPU (userspace DUTs), as a share of one CPU.
    pub fn dut_cpu(&self) -> f64 {
        self.dut_ticks as f64 / 100.0 / self.gen.secs.max(1e-9)
    }
    pub fn gen_cpu(&self) -> f64 {
        self.gen.cpu_secs / self.gen.secs.max(1e-9)
    }
}

/// One JSON value a line (blank lines skipped), as the harness writes them.
pub fn load<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> anyhow::Result<Vec<T>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1))
        })
        .collect()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The DUTs in the order the harness names them.
const ORDER: [&str; 8] = [
    "bridge",
    "nft-linear",
    "nft-best",
    "xdp-fwd",
    "afxdp-fwd",
    "bulkhead",
    "bulkhead-offload-off",
    "bulkhead-offload-on",
];

pub fn label(dut: &str) -> &str {
    match dut {
        "bridge" => "Linux bridge",
        "nft-linear" => "bridge + nftables linear",
        "nft-best" => "bridge + nftables best (maps)",
        "xdp-fwd" => "bare XDP devmap redirect",
        "afxdp-fwd" => "bare AF_XDP forwarder",
        "bulkhead" => "bulkhead",
        "bulkhead-offload-off" => "bulkhead, offload off",
        "bulkhead-offload-on" => "bulkhead, offload on",
        other => other,
    }
}

pub fn rank(dut: &str) -> usize {
    ORDER.iter().position(|d| *d == dut).unwrap_or(ORDER.len())
}

fn duts(rows: &[&Row]) -> Vec<String> {
    let mut d: Vec<String> = rows.iter().map(|r| r.dut.clone()).collect();
    d.sort_by_key(|x| (rank(x), x.clone()));
    d.dedup();
    d
}

/// Throughput rows of one (size, flows), grouped by (dut, rules).
type Groups<'a> = BTreeMap<(String, u32), Vec<&'a Row>>;

fn groups<'a>(rows: &'a [Row], kind: &str, size: u32) -> Groups<'a> {
    let mut g: Groups<'a> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.kind == kind && r.size == size) {
        g.entry((r.dut.clone(), r.rules)).or_default().push(r);
    }
    g
}

/// Median pps of a DUT at a rule count; rule-independent DUTs (measured at one
/// rule count only) answer for every rule count.
pub fn pps_at(g: &Groups<'_>, dut: &str, rules: u32) -> Option<f64> {
    let rows = g.get(&(dut.to_string(), rules)).or_else(|| {
        g.iter()
            .find(|((d, _), _)| d == dut)
            .filter(|_| !rule_dependent(dut))
            .map(|(_, v)| v)
    })?;
    Some(median(rows.iter().map(|r| r.pps()).collect()))
}

pub fn rule_dependent(dut: &str) -> bool {
    dut.starts_with("nft-") || dut.starts_with("bulkhead")
}

fn tput_table(out: &mut String, rows: &[Row], size: u32, rules: u32) -> bool {
    let g = groups(rows, "tput", size);
    let all: Vec<&Row> = g.values().flatten().copied().collect();
    if !all
        .iter()
        .any(|r| r.rules == rules || !rule_dependent(&r.dut))
    {
        return false;
    }
    let base = pps_at(&g, "nft-best", rules);
    let runs = all.iter().map(|r| r.run).max().unwrap_or(1);
    let _ = writeln!(
        out,
        "\n**{size}-byte UDP, 10k flows, {rules} rules** (median of {runs} run{}):\n",
        if runs == 1 { "" } else { "s" }
    );
    out.push_str("| DUT | pps at the sink | Gbit/s | loss % | / bridge + best nft | CPU0 busy | CPU1 busy | DUT process CPU |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for dut in duts(&all) {
        let key = if rule_dependent(&dut) {
            (dut.clone(), rules)
        } else {
            match g.keys().find(|(d, _)| *d == dut) {
                Some(k) => k.clone(),
                None => continue,
            }
        };
        let Some(v) = g.get(&key) else { continue };
        let m = |f: &dyn Fn(&Row) -> f64| median(v.iter().map(|r| f(r)).collect());
        let pps = m(&|r| r.pps());
        let ratio = base.map_or("-".to_string(), |b| format!("{:.2}", pps / b));
        let proc_cpu = if dut.starts_with("afxdp") || dut.starts_with("bulkhead") {
            format!("{:.0} %", 100.0 * m(&|r| r.dut_cpu()))
        } else {
            "- (softirq)".into()
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.3} | {:.1} | {ratio} | {:.0} % | {:.0} % | {proc_cpu} |",
            label(&dut),
            pps,
            m(&|r| r.gbps()),
            m(&|r| r.loss()),
            100.0 * m(&|r| r.cpu.first().copied().unwrap_or(0.0)),
            100.0 * m(&|r| r.cpu.get(1).copied().unwrap_or(0.0)),
        );
    }
    true
}

fn lat_table(out: &mut String, rows: &[Row]) {
    let lat: Vec<&Row> = rows.iter().filter(|r| r.kind == "lat").collect();
    if lat.is_empty() {
        return;
    }
    let rate = lat.first().map_or(0, |r| r.rate);
    let _ = writeln!(
        out,
        "\n**Latency**, generator to sink, 64-byte UDP at {rate} frames/s (1k rules, 10k flows):\n"
    );
    out.push_str("| DUT | p50 µs | p99 µs | p99.9 µs | samples | received / sent |\n|---|---:|---:|---:|---:|---:|\n");
    for dut in duts(&lat) {
        for r in lat.iter().filter(|r| r.dut == dut) {
            let Some(l) = &r.lat else { continue };
            let _ = writeln!(
                out,
                "| {} | {:.1} | {:.1} | {:.1} | {} | {:.3} |",
                label(&dut),
                l.p50_us,
                l.p99_us,
                l.p999_us,
                l.samples,
                r.sink.frames as f64 / r.gen.sent.max(1) as f64
            );
        }
    }
}

fn scale_table(out: &mut String, rows: &[Row]) {
    let sc: Vec<&Row> = rows.iter().filter(|r| r.kind == "scale").collect();
    if sc.is_empty() {
        return;
    }
    let mut flows: Vec<u32> = sc.iter().map(|r| r.flows).collect();
    flows.sort_unstable();
    flows.dedup();
    let runs = sc.iter().map(|r| r.run).max().unwrap_or(1);
    let _ = write!(
        out,
        "\n**Concurrent flows** (64-byte UDP, 1k rules, median of {runs} run{}), pps at the sink:\n\n| DUT |",
        if runs == 1 { "" } else { "s" }
    );
    for f in &flows {
        let _ = write!(out, " {f} flows |");
    }
    out.push_str("\n|---|");
    for _ in &flows {
        out.push_str("---:|");
    }
    out.push('\n');
    for dut in duts(&sc) {
        let _ = write!(out, "| {} |", label(&dut));
        for f in &flows {
            let v: Vec<f64> = sc
                .iter()
                .filter(|r| r.dut == dut && r.flows == *f)
                .map(|r| r.pps())
                .collect();
            if v.is_empty() {
                out.push_str(" - |");
            } else {
                let _ = write!(out, " {:.0} |", median(v));
            }
        }
        out.push('\n');
    }
}

fn generator_note(out: &mut String, rows: &[Row]) {
    let t: Vec<&Row> = rows
        .iter()
        .filter(|r| r.kind == "tput" && r.size == 64)
        .collect();
    let Some(first) = t.first() else { return };
    let calls = median(t.iter().map(|r| f64::from(r.gen.calls)).collect());
    let gen_cpu = median(t.iter().map(|r| r.gen_cpu()).collect());
    let per_call = median(
        t.iter()
            .map(|r| r.gen.sent as f64 / f64::from(r.gen.calls.max(1)))
            .collect(),
    );
    let pktgen = if std::path::Path::new("/proc/net/pktgen").exists() {
        "kernel pktgen is present but not driven (the flows must aim at the policy's rules)"
    } else {
        "kernel pktgen is not built into this kernel"
    };
    let _ = writeln!(
        out,
        "\nGenerator: `{}` (`bulkhead-bench gen`); {pktgen}. \
         Per 64-byte measurement: median {calls:.0} BPF_PROG_RUN calls of {:.1} M frames each, \
         generator process busy {:.0} % of its CPU.",
        first.gen.engine,
        per_call / 1e6,
        100.0 * gen_cpu
    );
}

/// The markdown section (without the heading's date line, which the caller adds).
pub fn tables(rows: &[Row]) -> String {
    let mut out = String::new();
    let mut rules: Vec<u32> = rows
        .iter()
        .filter(|r| r.kind == "tput")
        .map(|r| r.rules)
        .collect();
    rules.sort_unstable();
    rules.dedup();
    for &r in &rules {
        tput_table(&mut out, rows, 64, r);
    }
    for &r in &rules {
        if rows.iter().any(|x| x.size == 1518 && x.rules == r) {
            tput_table(&mut out, rows, 1518, r);
        }
    }
    lat_table(&mut out, rows);
    scale_table(&mut out, rows);
    generator_note(&mut out, rows);
    out
}

fn check(rows: &[Row]) -> anyhow::Result<()> {
    if rows.is_empty() {
        bail!("no results");
    }
    let mut dead = Vec::new();
    for r in rows {
        if r.sink.frames == 0 {
            dead.push(format!(
                "{} ({} rules, {} B, {})",
                r.dut, r.rules, r.size, r.kind
            ));
        }
    }
    if !dead.is_empty() {
        bail!("nothing reached the sink through: {}", dead.join(", "));
    }
    Ok(())
}

pub fn run(a: &ReportArgs) -> anyhow::Result<()> {
    let rows = load(&a.results)?;
    let mut t = tables(&rows);
    if let Some(path) = &a.incident {
        t.push_str(&super::incident::table(&load(path)?));
    }
    println!("{t}");
    if a.check {
        return check(&rows);
    }
    if let Some(png) = &a.plot {
        super::plot::pps_vs_rules(&rows, png)?;
    }
    if let Some(md) = &a.append {
        let section = super::notes::section(&rows, &t, a, md);
        let mut text = std::fs::read_to_string(md).unwrap_or_default();
        text.push_str(&section);
        std::fs::write(md, text).with_context(|| format!("writing {}", md.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, dut: &str, rules: u32, run: u32, frames: u64) -> Row {
        let line = format!(
            r#"{{"kind":"{kind}","dut":"{dut}","rules":{rules},"size":64,"flows":10000,"run":{run},"rate":0,
            "gen":{{"engine":"bpf-live-frames","sent":{},"secs":2.0,"pps":1.0,"calls":1,"cpu_secs":1.9,"size":64,"flows":10000}},
            "sink":{{"frames":{frames},"bytes":{}}},"lat":null,"cpu":[0.99,0.5],"dut_ticks":100}}"#,
            frames * 2,
            frames * 60
        );
        serde_json::from_str(&line.replace('\n', "")).expect("row parses")
    }

    #[test]
    fn medians_and_ratios_to_best_nftables() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let rows = vec![
            row("tput", "nft-best", 1000, 1, 1_000_000),
            row("tput", "nft-best", 1000, 2, 1_200_000),
            row("tput", "nft-best", 1000, 3, 1_100_000),
            row("tput", "xdp-fwd", 1000, 1, 8_800_000),
            row("tput", "bulkhead", 1000, 1, 1_650_000),
            row("tput", "bulkhead", 100000, 1, 1_650_000),
            row("tput", "nft-best", 100000, 1, 550_000),
        ];
        let t = tables(&rows);
        // nft-best median 1.1M frames over 2 s = 550k pps; bulkhead 825k = 1.50x.
        assert!(
            t.contains("| bridge + nftables best (maps) | 550000 |"),
            "{t}"
        );
        assert!(
            t.contains("| bulkhead | 825000 | 0.396 | 50.0 | 1.50 |"),
            "{t}"
        );
        // At 100k rules bulkhead is 3x nft-best; the XDP redirect (rule-independent)
        // is reported at both rule counts.
        assert!(
            t.contains("| bulkhead | 825000 | 0.396 | 50.0 | 3.00 |"),
            "{t}"
        );
        assert_eq!(
            t.matches("| bare XDP devmap redirect | 4400000 |").count(),
            2
        );
        assert!(check(&rows).is_ok());
        let mut dead = rows;
        dead.push(row("tput", "nft-linear", 1000, 1, 0));
        assert!(check(&dead).is_err());
    }
}
