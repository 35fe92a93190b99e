//! `bulkhead-bench gen`: a packet generator for the end-to-end benchmark.
//!
//! Engine: an XDP program (`bench/bpf/gen.c`) run by `BPF_PROG_RUN` in
//! live-frames mode on the generator's interface: each run rewrites the
//! frame's headers from the next flow's template and sends it with `XDP_TX`
//! (out of the interface, to its veth peer). The kernel recycles the frames
//! from a page pool, so no copy from userspace per packet.
//!
//! The generator trap (DESIGN.md): every `BPF_PROG_RUN` call ends in an RCU
//! grace period (about 25 ms here), so a call must carry millions of frames or
//! the generator, not the device under test, sets the rate. Here one call
//! carries the whole run (a billion frames asked for) and a `SIGALRM` at the
//! deadline ends it (the kernel checks for signals between batches of 64
//! frames), so the run is bounded in time even when a slow DUT, running
//! synchronously in the generator's softirq, makes every frame expensive. The
//! report gives the calls and the generator's own CPU time.
//!
//! A fixed rate is kept by the program itself: frames whose time has not come
//! are dropped instead of sent (no catch-up burst after a pause).
//!
//! Where the kernel refuses live frames outright, the frames are sent from
//! userspace on an `AF_PACKET` socket instead ([`packet`]), and the report's
//! `engine` says so.

mod frame;
mod packet;
mod sys;

use crate::model;
use anyhow::{anyhow, bail, Context};
use aya::maps::{Array, PerCpuArray};
use aya::programs::Xdp;
use aya::EbpfLoader;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The kernel's own "operation not supported" (524), which BPF calls can
/// return to userspace; libc has no name for it.
const ENOTSUPP: i32 = 524;

static GEN_OBJECT: &[u8] = aya::include_bytes_aligned!("../../../../bpf/gen.o");

#[derive(clap::Args, Debug)]
pub struct GenArgs {
    /// The interface to send from (its veth peer receives the frames).
    #[arg(long)]
    pub dev: String,
    /// Frame size on the wire, FCS included: 64..=1518.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(64..=1518))]
    pub size: u16,
    /// Distinct flows (5-tuples), sent round robin.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=2_097_152))]
    pub flows: u32,
    /// Aim the flows at the rules of the benchmark policy with this many rules
    /// (`bulkhead-bench policy --rules N`); 0: every flow between group 0s.
    #[arg(long, default_value_t = 1000)]
    pub rules: u32,
    /// udp or syn (TCP SYN).
    #[arg(long, default_value = "udp", value_parser = ["udp", "syn"])]
    pub proto: String,
    /// Frames per second; 0: as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Seconds to send for (fractions allowed).
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,
    /// Aim every flow 5000 ports above its rule's port, where no rule allows:
    /// an enforcing DUT must drop all of it (the harness's policy check).
    #[arg(long)]
    pub off_policy: bool,
    /// Stamp the send time into each UDP frame (for the sink's latency histogram).
    #[arg(long)]
    pub stamp: bool,
    /// A flood of new flows: every N rounds over the flows, each flow's
    /// source port moves up by one, so that every flow is a new 5-tuple of
    /// N frames (0: the same flows throughout). At most 65,536 flows, so
    /// that no moved flow is another's (their source addresses differ).
    #[arg(long, default_value_t = 0)]
    pub new_every: u32,
}

/// What a generator run did (printed as one JSON line).
#[derive(Debug, serde::Serialize)]
pub struct GenReport {
    pub engine: &'static str,
    pub sent: u64,
    pub secs: f64,
    pub pps: f64,
    pub calls: u32,
    /// The generator process's CPU time over the run (user + system), seconds.
    pub cpu_secs: f64,
    pub size: u16,
    pub flows: u32,
    /// With `--new-every N`: the 5-tuples sent (frames / N), else absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_flows: Option<u64>,
}

/// The 5-tuples a run of `sent` frames made with `--new-every`.
fn new_flows(args: &GenArgs, sent: u64) -> Option<u64> {
    (args.new_every > 0).then(|| sent / u64::from(args.new_every))
}

pub fn run(args: &GenArgs) -> anyhow::Result<()> {
    let report = generate(args)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// The process's user + system CPU seconds (from /proc/self/stat).
pub fn self_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) end with ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 (1-based); here 0 is field 3.
    (ticks(11) + ticks(12)) / 100.0
}

/// The index of `dev` in this network namespace.
pub fn ifindex(dev: &str) -> anyhow::Result<u32> {
    sys::ifindex(dev).with_context(|| format!("no interface {dev} in this network namespace"))
}

fn flow(args: &GenArgs, i: u32, tcp: bool) -> model::Flow {
    let mut f = model::flow(i, args.flows, args.rules, tcp);
    if args.off_policy {
        f.dport = f.dport.wrapping_add(5000);
    }
    f
}

pub fn generate(args: &GenArgs) -> anyhow::Result<GenReport> {
    let tcp = args.proto == "syn";
    if args.stamp && tcp {
        bail!("--stamp needs UDP frames (the stamp would overwrite the TCP header)");
    }
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        bail!("--duration must be in (0, 3600] seconds");
    }
    if args.new_every > 0 && args.flows > 65_536 {
        bail!("--new-every needs at most 65536 flows (a moved flow would be another's)");
    }
    let ifindex = ifindex(&args.dev)?;
    let mut ebpf = EbpfLoader::new()
        .load(GEN_OBJECT)
        .context("loading bench/bpf/gen.o")?;

    // Flow templates: the first 56 bytes of each flow's frame.
    let size = usize::from(args.size);
    {
        let map = ebpf
            .map_mut("bh_flows")
            .ok_or_else(|| anyhow!("bh_flows map missing"))?;
        let mut flows: Array<_, [u64; 7]> = Array::try_from(map)?;
        for i in 0..args.flows {
            let f = frame::build(&flow(args, i, tcp), size);
            let mut t = [0u64; 7];
            for (w, chunk) in t.iter_mut().zip(f.chunks_exact(8)) {
                let mut b = [0u8; 8];
                b.copy_from_slice(chunk);
                *w = u64::from_ne_bytes(b);
            }
            flows.set(i, t, 0).context("filling bh_flows")?;
        }
    }
    let interval = if args.rate > 0 {
        1_000_000_000 / args.rate.max(1)
    } else {
        0
    };
    {
        let map = ebpf
            .map_mut("bh_gen_cfg")
            .ok_or_else(|| anyhow!("bh_gen_cfg map missing"))?;
        let mut cfg: Array<_, [u64; 3]> = Array::try_from(map)?;
        let w0 = u64::from(args.flows) | (u64::from(args.stamp) << 32);
        cfg.set(0, [w0, interval, u64::from(args.new_every)], 0)?;
    }
    let prog: &mut Xdp = ebpf
        .program_mut("bh_gen")
        .ok_or_else(|| anyhow!("bh_gen program missing"))?
        .try_into()?;
    prog.load().context("loading the generator program")?;
    let fd = prog.fd()?.as_fd().as_raw_fd();
    let first = frame::build(&flow(args, 0, tcp), size);

    // One call for the whole run, ended by SIGALRM at the deadline: the
    // kernel checks for a pending signal after every batch of 64 frames, so
    // the run is bounded in time whatever the DUT's speed, and there is one
    // RCU grace period per run, not one per million frames.
    let alarm = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGALRM, alarm.clone())
        .context("SIGALRM handler")?;
    let cpu0 = self_cpu_secs();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    sys::alarm_after(deadline - Instant::now()).context("setitimer")?;
    let mut calls = 0u32;
    while !alarm.load(Ordering::Relaxed) && Instant::now() < deadline {
        calls += 1;
        match sys::run_live_frames(fd, &first, ifindex, u32::MAX / 2, 64) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            // Refused outright (not a failure midway): the AF_PACKET engine.
            Err(e)
                if calls == 1
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::EPERM | libc::EOPNOTSUPP | ENOTSUPP)
                    ) =>
            {
                eprintln!(
                    "bulkhead-bench: BPF_PROG_RUN live frames refused on {} ({e}): sending with AF_PACKET instead",
                    args.dev
                );
                return packet::generate(args, ifindex, tcp);
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("BPF_PROG_RUN (live frames) on {}", args.dev))
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu_secs = self_cpu_secs() - cpu0;

    let map = ebpf
        .map("bh_gen_state")
        .ok_or_else(|| anyhow!("bh_gen_state map missing"))?;
    let state: PerCpuArray<_, [u64; 5]> = PerCpuArray::try_from(map)?;
    let sent: u64 = state.get(&0, 0)?.iter().map(|s| s[2]).sum();
    Ok(GenReport {
        engine: "bpf-live-frames",
        sent,
        secs,
        pps: sent as f64 / secs,
        calls,
        cpu_secs,
        size: args.size,
        flows: args.flows,
        new_flows: new_flows(args, sent),
    })
}
