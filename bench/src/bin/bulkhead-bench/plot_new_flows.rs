//! `bulkhead-bench plot-new-flows`: the new-flow flood's figure (PNG) from
//! `bench/e2e.sh --new-flows` result lines: new flows passed per second, the
//! median of the runs, one bar per DUT for each flood (UDP, TCP SYN); the
//! same medians printed, a line a flood.

use super::plot::{canvas, text, BLACK, COLORS, GREY};
use super::report::label;
use anyhow::{anyhow, Context};
use plotters::prelude::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

// The help text is the subcommand's, in main.rs.
#[derive(clap::Args, Debug)]
pub struct PlotNewFlowsArgs {
    /// The result lines (`/tmp/bh-e2e-newflows.jsonl` by default of the harness).
    #[arg(long)]
    pub results: PathBuf,
    /// The PNG to write.
    #[arg(long)]
    pub png: PathBuf,
}

#[derive(Debug, Deserialize)]
struct Line {
    kind: String,
    dut: String,
    proto: String,
    packets_per_flow: u32,
    gen: Gen,
    sink: Sink,
}

#[derive(Debug, Deserialize)]
struct Gen {
    secs: f64,
}

#[derive(Debug, Deserialize)]
struct Sink {
    frames: u64,
    /// The established flows' frames (stamped), not the flood's.
    #[serde(default)]
    stamped: u64,
}

/// New flows passed per second, the median of each (proto, dut)'s runs.
fn medians(text: &str) -> anyhow::Result<BTreeMap<(String, String), f64>> {
    let mut runs: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for (n, l) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let l: Line = serde_json::from_str(l).with_context(|| format!("line {}", n + 1))?;
        if l.kind != "newflows" || l.gen.secs <= 0.0 || l.packets_per_flow == 0 {
            continue;
        }
        let flood = l.sink.frames.saturating_sub(l.sink.stamped);
        let rate = flood as f64 / f64::from(l.packets_per_flow) / l.gen.secs;
        runs.entry((l.proto, l.dut)).or_default().push(rate);
    }
    Ok(runs
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by(f64::total_cmp);
            (k, v[(v.len() - 1) / 2])
        })
        .collect())
}

pub fn run(a: &PlotNewFlowsArgs) -> anyhow::Result<()> {
    let text_in = std::fs::read_to_string(&a.results)
        .with_context(|| format!("reading {}", a.results.display()))?;
    let m = medians(&text_in)?;
    if m.is_empty() {
        return Err(anyhow!("no newflows lines in {}", a.results.display()));
    }
    print!("{}", summary(&m));
    draw(&m, &a.png)
}

/// One line a flood: each DUT's median, and bulkhead (offload on) over
/// conntrack.
fn summary(m: &BTreeMap<(String, String), f64>) -> String {
    let mut protos: Vec<&str> = m.keys().map(|(p, _)| p.as_str()).collect();
    protos.dedup();
    let mut out = String::new();
    for proto in protos {
        let at = |dut: &str| m.get(&(proto.to_string(), dut.to_string())).copied();
        let mut line = format!("  {proto:<3}");
        for ((p, dut), v) in m {
            if p == proto {
                line.push_str(&format!(" {dut} {v:.0},"));
            }
        }
        if let (Some(b), Some(n)) = (at("bulkhead-offload-on"), at("nft-ct")) {
            line.push_str(&format!(" bulkhead (offload on) / conntrack {:.2}", b / n));
        }
        out.push_str(line.trim_end_matches(','));
        out.push('\n');
    }
    out
}

const W: u32 = 880;
const H: u32 = 480;
const LEFT: i32 = 90;
const TOP: i32 = 50;
const PLOT_W: i32 = 480;
const PLOT_H: i32 = 360;

fn draw(m: &BTreeMap<(String, String), f64>, png: &Path) -> anyhow::Result<()> {
    let mut protos: Vec<&str> = m.keys().map(|(p, _)| p.as_str()).collect();
    protos.dedup();
    let mut duts: Vec<&str> = m.keys().map(|(_, d)| d.as_str()).collect();
    duts.sort_unstable();
    duts.dedup();
    let max = m.values().copied().fold(1.0, f64::max) * 1.15;
    let root = canvas(
        png,
        (W, H),
        LEFT,
        "new flows passed per second (flood of new flows, 4 frames each)",
    )?;
    let fail = |e: DrawingAreaErrorKind<_>| anyhow!("plot: {e}");
    let (black, grey) = (BLACK, GREY);
    let ypix = |v: f64| TOP + PLOT_H - (v / max * f64::from(PLOT_H)) as i32;
    let step = if max > 200_000.0 { 50_000.0 } else { 20_000.0 };
    let mut v = 0.0;
    while v <= max {
        let y = ypix(v);
        root.draw(&PathElement::new(vec![(LEFT, y), (LEFT + PLOT_W, y)], grey))
            .map_err(fail)?;
        let t = format!("{}k", v / 1000.0);
        text(&root, LEFT - 8 - 8 * t.len() as i32, y - 4, &t, &black);
        v += step;
    }
    root.draw(&Rectangle::new(
        [(LEFT, TOP), (LEFT + PLOT_W, TOP + PLOT_H)],
        black,
    ))
    .map_err(fail)?;
    let group_w = PLOT_W / protos.len().max(1) as i32;
    let bar_w = (group_w - 40) / duts.len().max(1) as i32;
    for (g, proto) in protos.iter().enumerate() {
        let x0 = LEFT + g as i32 * group_w + 20;
        for (k, dut) in duts.iter().enumerate() {
            let Some(v) = m.get(&(proto.to_string(), dut.to_string())) else {
                continue;
            };
            let x = x0 + k as i32 * bar_w;
            root.draw(&Rectangle::new(
                [(x + 2, ypix(*v)), (x + bar_w - 2, TOP + PLOT_H)],
                COLORS[k % COLORS.len()].filled(),
            ))
            .map_err(fail)?;
            let t = format!("{:.0}k", v / 1000.0);
            text(
                &root,
                x + bar_w / 2 - 4 * t.len() as i32,
                ypix(*v) - 12,
                &t,
                &black,
            );
        }
        let t = if *proto == "syn" { "TCP SYN" } else { "UDP" };
        text(
            &root,
            x0 + (group_w - 40) / 2 - 4 * t.len() as i32,
            TOP + PLOT_H + 10,
            t,
            &black,
        );
    }
    for (k, dut) in duts.iter().enumerate() {
        let (lx, ly) = (LEFT + PLOT_W + 20, TOP + 10 + k as i32 * 22);
        root.draw(&Rectangle::new(
            [(lx, ly), (lx + 16, ly + 8)],
            COLORS[k % COLORS.len()].filled(),
        ))
        .map_err(fail)?;
        let name = if *dut == "nft-ct" {
            "bridge + conntrack + nftables"
        } else {
            label(dut)
        };
        text(&root, lx + 24, ly, name, &black);
    }
    root.present().map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn medians_are_new_flows_a_second_per_flood_and_dut() {
        let line = |dut: &str, proto: &str, frames: u64| {
            format!(
                r#"{{"kind":"newflows","dut":"{dut}","proto":"{proto}","run":1,"packets_per_flow":4,"gen":{{"engine":"af-packet","sent":1,"secs":2.0}},"sink":{{"frames":{frames},"bytes":0}},"cpu1":0.9}}"#
            )
        };
        let text = [
            line("nft-ct", "udp", 800),
            line("nft-ct", "udp", 400),
            line("nft-ct", "udp", 1200),
            line("bulkhead-offload-on", "syn", 80),
            line("nft-ct", "syn", 100).replace(r#""bytes":0"#, r#""bytes":0,"stamped":20"#),
        ]
        .join("\n");
        let m = super::medians(&text).expect("parses");
        assert_eq!(
            super::summary(&m),
            "  syn bulkhead-offload-on 10, nft-ct 10, bulkhead (offload on) / conntrack 1.00\n  udp nft-ct 100\n"
        );
        assert_eq!(m[&("udp".into(), "nft-ct".into())], 100.0);
        assert_eq!(m[&("syn".into(), "bulkhead-offload-on".into())], 10.0);
        assert_eq!(
            m[&("syn".into(), "nft-ct".into())],
            10.0,
            "less the stamped"
        );
        assert!(super::medians("{not json").is_err());
    }
}
