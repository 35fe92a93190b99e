//! The bare forwarders of the comparison, each running until SIGTERM/SIGINT:
//!
//! - `bulkhead-bench xdp-fwd`: an XDP program on both ports redirecting every
//!   frame to the other port through a devmap (`bench/bpf/fwd.c`): the kernel
//!   ceiling.
//! - `bulkhead-bench afxdp-fwd`: AF_XDP sockets on both ports over the
//!   dataplane's own backend (`AfXdpIo::open`, then the one `QueueIo` a single
//!   worker gets: the same XDP program, UMEM and queue code bulkhead runs),
//!   forwarding every frame to the other port with no parsing and no policy:
//!   the floor of any AF_XDP userspace path.

use anyhow::{anyhow, Context};
use aya::maps::DevMapHash;
use aya::programs::{Xdp, XdpMode};
use aya::EbpfLoader;
use dataplane::io::afxdp::{AfXdpConfig, AfXdpIo, FailMode, OnShutdown};
use dataplane::io::{Desc, PacketIo, Port};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

static FWD_OBJECT: &[u8] = aya::include_bytes_aligned!("../../../bpf/fwd.o");

#[derive(clap::Args, Debug)]
pub struct FwdArgs {
    /// Port A.
    #[arg(long)]
    pub a: String,
    /// Port B.
    #[arg(long)]
    pub b: String,
}

fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("signal handler")?;
    }
    Ok(stop)
}

pub fn xdp_fwd(args: &FwdArgs) -> anyhow::Result<()> {
    let stop = stop_flag()?;
    let (a, b) = (crate::gen::ifindex(&args.a)?, crate::gen::ifindex(&args.b)?);
    let mut ebpf = EbpfLoader::new()
        .load(FWD_OBJECT)
        .context("loading bench/bpf/fwd.o")?;
    {
        let map = ebpf
            .map_mut("bh_fwd_peer")
            .ok_or_else(|| anyhow!("bh_fwd_peer map missing"))?;
        let mut peers: DevMapHash<_> = DevMapHash::try_from(map)?;
        peers.insert(a, b, None, 0)?;
        peers.insert(b, a, None, 0)?;
    }
    let prog: &mut Xdp = ebpf
        .program_mut("bh_fwd")
        .ok_or_else(|| anyhow!("bh_fwd program missing"))?
        .try_into()?;
    prog.load()?;
    for dev in [&args.a, &args.b] {
        prog.attach(dev, XdpMode::Driver)
            .with_context(|| format!("attaching the forwarder to {dev}"))?;
    }
    println!("ready");
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

pub fn afxdp_fwd(args: &FwdArgs) -> anyhow::Result<()> {
    let stop = stop_flag()?;
    let mut cfg = AfXdpConfig::new(&args.a, &args.b);
    cfg.fail_mode = FailMode::Closed;
    cfg.on_shutdown = OnShutdown::Detach;
    cfg.pin_dir = None;
    let io = AfXdpIo::open(&cfg).context("opening the AF_XDP ports")?;
    let (xdp, bind) = io.mode();
    let (mut queues, ports) = io.split().context("taking the queues")?;
    let mut io = queues
        .pop()
        .ok_or_else(|| anyhow!("no queue to forward on"))?;
    println!("ready ({xdp:?} XDP, {bind:?} bind)");
    let mut batch = [Desc::default(); 64];
    let mut forwarded = 0u64;
    let mut dropped = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut moved = 0;
        for port in Port::BOTH {
            let n = io.rx(port, &mut batch)?;
            if n == 0 {
                continue;
            }
            moved += n;
            let got = &batch[..n];
            let sent = io.tx(port.peer(), got)?;
            forwarded += sent as u64;
            if let Some(rest) = got.get(sent..) {
                dropped += rest.len() as u64;
                io.free(rest);
            }
        }
        if moved == 0 {
            io.poll_wait(Duration::from_millis(20))?;
        }
    }
    drop(io);
    ports.shutdown().context("closing the ports")?;
    eprintln!("afxdp-fwd: forwarded {forwarded}, dropped {dropped} (tx ring full)");
    Ok(())
}
