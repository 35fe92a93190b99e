//! The fallback engine, when the kernel refuses `BPF_PROG_RUN` in
//! live-frames mode (`EPERM` has been seen on a VM whose root lacks
//! `CAP_SYS_RESOURCE`): the same frames, built in userspace and sent one
//! `send` each on an `AF_PACKET` socket bound to the interface, past the
//! qdisc. Far fewer frames a second than live frames (a system call each):
//! the report names the engine, so a figure made with it says so.

use super::{flow, frame, sys, GenArgs, GenReport};
use std::time::{Duration, Instant};

/// Frames built once and sent round robin; more flows are built as sent.
const CACHED: u32 = 65_536;

/// The stamp's place in a UDP frame and its magic (`bench/bpf/harness.h`).
const TS_OFF: usize = 44;
const MAGIC_OFF: usize = 52;
const MAGIC: u32 = 0x6268_6c74;

pub fn generate(args: &GenArgs, ifindex: u32, tcp: bool) -> anyhow::Result<GenReport> {
    let sock = sys::packet_socket(ifindex)?;
    let size = usize::from(args.size);
    // New flows are built as sent: their ports move every few rounds.
    let cached: Vec<Vec<u8>> = if args.new_every > 0 {
        Vec::new()
    } else {
        (0..args.flows.min(CACHED))
            .map(|i| frame::build(&flow(args, i, 0, tcp), size))
            .collect()
    };
    let interval = (args.rate > 0).then(|| Duration::from_nanos(1_000_000_000 / args.rate.max(1)));
    let cpu0 = super::self_cpu_secs();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let mut next = start;
    let (mut sent, mut i, mut round) = (0u64, 0u32, 0u64);
    let mut built;
    let mut now = start;
    while now < deadline {
        if let Some(every) = interval {
            if now < next {
                std::thread::sleep((next - now).min(Duration::from_millis(1)));
                now = Instant::now();
                continue;
            }
            // No catch-up burst after a pause.
            next = next.max(now - Duration::from_millis(1)) + every;
        }
        let f: &[u8] = match cached.get(i as usize) {
            Some(f) => f,
            None => {
                built = frame::build(&flow(args, i, round, tcp), size);
                &built
            }
        };
        let stamped;
        let f = if args.stamp && f.len() >= MAGIC_OFF + 4 {
            let mut s = f.to_vec();
            s[TS_OFF..TS_OFF + 8].copy_from_slice(&sys::monotonic_ns().to_ne_bytes());
            s[MAGIC_OFF..MAGIC_OFF + 4].copy_from_slice(&MAGIC.to_ne_bytes());
            stamped = s;
            &stamped[..]
        } else {
            f
        };
        match sys::send(&sock, f) {
            Ok(()) => sent += 1,
            Err(e)
                if e.raw_os_error() == Some(libc::ENOBUFS)
                    || e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(anyhow::Error::new(e).context("sending on the packet socket")),
        }
        if i + 1 >= args.flows {
            i = 0;
            round += 1;
        } else {
            i += 1;
        }
        if sent % 64 == 0 || interval.is_some() {
            now = Instant::now();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(GenReport {
        engine: "af-packet",
        sent,
        secs,
        pps: sent as f64 / secs,
        calls: 0,
        cpu_secs: super::self_cpu_secs() - cpu0,
        size: args.size,
        flows: args.flows,
        new_flows: super::new_flows(args, sent),
    })
}
