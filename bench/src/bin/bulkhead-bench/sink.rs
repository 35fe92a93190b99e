//! `bulkhead-bench sink`: the sink's XDP counter (`bench/bpf/sink.c`) on one
//! interface, driven over stdin by the harness, one command a line:
//!
//! - `reset`: zero the counters and the latency histogram;
//! - `read`: print `{"frames":N,"bytes":N,"stamped":N,"last_ns":N}` (`last_ns`:
//!   when the last frame arrived, CLOCK_MONOTONIC);
//! - `lat`: print the latency percentiles of the stamped frames (µs), through
//!   an `hdrhistogram` fed from the program's buckets (100 ns to 1 ms, then
//!   10 µs to 100 ms);
//! - end of input: detach and exit.
//!
//! `--pin PATH` also pins the counter map there, so that another process
//! (`bulkhead-bench quarantine`) can read the last arrival time itself.

use anyhow::{anyhow, Context};
use aya::maps::{MapData, PerCpuArray, PerCpuValues};
use aya::programs::{Xdp, XdpMode};
use aya::EbpfLoader;
use hdrhistogram::Histogram;
use std::io::{BufRead, Write};

static SINK_OBJECT: &[u8] = aya::include_bytes_aligned!("../../../bpf/sink.o");

/// Must match bench/bpf/harness.h: 100 ns buckets up to 1 ms, then 10 µs
/// buckets up to 100 ms, then one overflow bucket.
const LAT_FINE_NS: u64 = 100;
const LAT_FINE_BUCKETS: u32 = 10_000;
const LAT_COARSE_NS: u64 = 10_000;
const LAT_BUCKETS: u32 = LAT_FINE_BUCKETS + 9900 + 1;

/// The middle of latency bucket `b`, in ns.
fn bucket_mid_ns(b: u32) -> u64 {
    if b < LAT_FINE_BUCKETS {
        u64::from(b) * LAT_FINE_NS + LAT_FINE_NS / 2
    } else {
        u64::from(LAT_FINE_BUCKETS) * LAT_FINE_NS
            + u64::from(b - LAT_FINE_BUCKETS) * LAT_COARSE_NS
            + LAT_COARSE_NS / 2
    }
}

#[derive(clap::Args, Debug)]
pub struct SinkArgs {
    /// The interface to count on.
    #[arg(long)]
    pub dev: String,
    /// Pin the counter map here (bpffs) while the sink runs.
    #[arg(long)]
    pub pin: Option<std::path::PathBuf>,
}

/// Keys of the counter map (bench/bpf/sink.c).
pub const COUNT_KEYS: u32 = 5;
pub const KEY_LAST_NS: u32 = 3;
pub const KEY_FIRST_NS: u32 = 4;

/// When the last frame arrived (CLOCK_MONOTONIC ns; 0: none since a reset):
/// the latest of the per-CPU values.
pub fn last_ns(m: &PerCpuArray<impl std::borrow::Borrow<MapData>, u64>) -> anyhow::Result<u64> {
    Ok(m.get(&KEY_LAST_NS, 0)?.iter().copied().max().unwrap_or(0))
}

/// When the first frame arrived since [`rearm_first`] (0: none yet): the
/// earliest of the per-CPU values.
pub fn first_ns(m: &PerCpuArray<impl std::borrow::Borrow<MapData>, u64>) -> anyhow::Result<u64> {
    Ok(m.get(&KEY_FIRST_NS, 0)?
        .iter()
        .copied()
        .filter(|&t| t > 0)
        .min()
        .unwrap_or(0))
}

/// Start looking for the next first arrival.
pub fn rearm_first(
    m: &mut PerCpuArray<impl std::borrow::BorrowMut<MapData>, u64>,
    cpus: usize,
) -> anyhow::Result<()> {
    m.set(KEY_FIRST_NS, PerCpuValues::try_from(vec![0u64; cpus])?, 0)?;
    Ok(())
}

/// Removes the pin when the sink ends, however it ends.
struct Pin(std::path::PathBuf);
impl Drop for Pin {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn sum(m: &PerCpuArray<&mut MapData, u64>, k: u32) -> anyhow::Result<u64> {
    Ok(m.get(&k, 0)?.iter().sum())
}

fn zero(m: &mut PerCpuArray<&mut MapData, u64>, keys: u32, cpus: usize) -> anyhow::Result<()> {
    for k in 0..keys {
        let z = PerCpuValues::try_from(vec![0u64; cpus])?;
        m.set(k, z, 0)?;
    }
    Ok(())
}

pub fn run(args: &SinkArgs) -> anyhow::Result<()> {
    let mut ebpf = EbpfLoader::new()
        .load(SINK_OBJECT)
        .context("loading bench/bpf/sink.o")?;
    let prog: &mut Xdp = ebpf
        .program_mut("bh_sink")
        .ok_or_else(|| anyhow!("bh_sink program missing"))?
        .try_into()?;
    prog.load()?;
    prog.attach(&args.dev, XdpMode::Driver)
        .with_context(|| format!("attaching the sink (native XDP) to {}", args.dev))?;
    let cpus = aya::util::nr_cpus().map_err(|(m, e)| anyhow!("{m}: {e}"))?;
    let _pin = match &args.pin {
        Some(path) => {
            let _ = std::fs::remove_file(path);
            let map = ebpf
                .map("bh_sink_count")
                .ok_or_else(|| anyhow!("bh_sink_count map missing"))?;
            map.pin(path)
                .with_context(|| format!("pinning the sink's counters at {}", path.display()))?;
            Some(Pin(path.clone()))
        }
        None => None,
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        match line.trim() {
            "reset" => {
                let (count, lat) = maps(&mut ebpf)?;
                let (mut count, mut lat) = (count, lat);
                zero(&mut count, COUNT_KEYS, cpus)?;
                zero(&mut lat, LAT_BUCKETS, cpus)?;
                writeln!(out, "ok")?;
            }
            "read" => {
                let (count, _) = maps(&mut ebpf)?;
                writeln!(
                    out,
                    "{{\"frames\":{},\"bytes\":{},\"stamped\":{},\"last_ns\":{}}}",
                    sum(&count, 0)?,
                    sum(&count, 1)?,
                    sum(&count, 2)?,
                    last_ns(&count)?
                )?;
            }
            "lat" => {
                let (_, lat) = maps(&mut ebpf)?;
                let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)?;
                for b in 0..LAT_BUCKETS {
                    let n = sum(&lat, b)?;
                    if n > 0 {
                        h.record_n(bucket_mid_ns(b), n)?;
                    }
                }
                let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
                writeln!(
                    out,
                    "{{\"samples\":{},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},\"overflow\":{}}}",
                    h.len(),
                    us(0.5),
                    us(0.99),
                    us(0.999),
                    h.max() as f64 / 1000.0,
                    sum(&lat, LAT_BUCKETS - 1)?
                )?;
            }
            "" => continue,
            other => writeln!(out, "{{\"error\":\"unknown command {other:?}\"}}")?,
        }
        out.flush()?;
    }
    Ok(())
}

type Maps<'a> = (
    PerCpuArray<&'a mut MapData, u64>,
    PerCpuArray<&'a mut MapData, u64>,
);

fn maps(ebpf: &mut aya::Ebpf) -> anyhow::Result<Maps<'_>> {
    let mut count = None;
    let mut lat = None;
    for (name, map) in ebpf.maps_mut() {
        match name {
            "bh_sink_count" => count = Some(PerCpuArray::try_from(map)?),
            "bh_sink_lat" => lat = Some(PerCpuArray::try_from(map)?),
            _ => {}
        }
    }
    Ok((
        count.ok_or_else(|| anyhow!("bh_sink_count map missing"))?,
        lat.ok_or_else(|| anyhow!("bh_sink_lat map missing"))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_middles_follow_the_programs_two_ranges() {
        assert_eq!(bucket_mid_ns(0), 50);
        assert_eq!(bucket_mid_ns(46), 4650);
        assert_eq!(bucket_mid_ns(LAT_FINE_BUCKETS), 1_005_000);
        assert_eq!(bucket_mid_ns(LAT_BUCKETS - 1), 100_005_000);
    }
}
