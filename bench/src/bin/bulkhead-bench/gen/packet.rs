//! The fallback engine, when the kernel refuses `BPF_PROG_RUN` in
//! live-frames mode (`EPERM` has been seen on a VM whose root lacks
//! `CAP_SYS_RESOURCE`): the same frames, built in userspace and sent on an
//! `AF_PACKET` socket bound to the interface, past the qdisc, 64 a
//! `sendmmsg` (one a call when paced). Fewer frames a second than live
//! frames (the kernel makes an skb of each): the report names the engine,
//! so a figure made with it says so.

use super::{flow, frame, sys, GenArgs, GenReport};
use std::time::{Duration, Instant};

/// Frames built once and sent round robin; more flows are built as sent.
const CACHED: u32 = 65_536;

/// Frames a `sendmmsg` takes when the rate is not paced.
const BATCH: usize = 64;

/// The stamp's place in a UDP frame and its magic (`bench/bpf/harness.h`).
const TS_OFF: usize = 44;
const MAGIC_OFF: usize = 52;
const MAGIC: u32 = 0x6268_6c74;

/// The source port's, the protocol's and the TCP checksum's places in a
/// frame (Ethernet, IPv4 without options; `bench/bpf/harness.h`).
const SPORT_OFF: usize = 34;
const PROTO_OFF: usize = 23;
const TCP_CSUM_OFF: usize = 50;

pub fn generate(args: &GenArgs, ifindex: u32, tcp: bool) -> anyhow::Result<GenReport> {
    let sock = sys::packet_socket(ifindex)?;
    let size = usize::from(args.size);
    let cached: Vec<Vec<u8>> = (0..args.flows.min(CACHED))
        .map(|i| frame::build(&flow(args, i, tcp), size))
        .collect();
    let interval = (args.rate > 0).then(|| Duration::from_nanos(1_000_000_000 / args.rate.max(1)));
    let batch = if interval.is_some() { 1 } else { BATCH };
    let mut out: Vec<Vec<u8>> = vec![Vec::with_capacity(size); batch];
    let cpu0 = super::self_cpu_secs();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let mut next = start;
    let (mut sent, mut i, mut round) = (0u64, 0u32, 0u64);
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
        for buf in out.iter_mut() {
            buf.clear();
            match cached.get(i as usize) {
                Some(f) => buf.extend_from_slice(f),
                None => buf.extend_from_slice(&frame::build(&flow(args, i, tcp), size)),
            }
            if args.new_every > 0 {
                move_port(buf, (round / u64::from(args.new_every)) as u16);
            }
            if args.stamp && buf.len() >= MAGIC_OFF + 4 {
                buf[TS_OFF..TS_OFF + 8].copy_from_slice(&sys::monotonic_ns().to_ne_bytes());
                buf[MAGIC_OFF..MAGIC_OFF + 4].copy_from_slice(&MAGIC.to_ne_bytes());
            }
            if i + 1 >= args.flows {
                i = 0;
                round += 1;
            } else {
                i += 1;
            }
        }
        match sys::send_many(&sock, &out) {
            Ok(n) => sent += n as u64,
            Err(e)
                if e.raw_os_error() == Some(libc::ENOBUFS)
                    || e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(anyhow::Error::new(e).context("sending on the packet socket")),
        }
        now = Instant::now();
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

/// Move a frame's source port up by `by`, and a TCP segment's checksum with
/// it (RFC 1624), as the XDP generator does for `--new-every`.
fn move_port(f: &mut [u8], by: u16) {
    if by == 0 || f.len() < TCP_CSUM_OFF + 2 {
        return;
    }
    let old = u16::from_be_bytes([f[SPORT_OFF], f[SPORT_OFF + 1]]);
    let new = old.wrapping_add(by);
    f[SPORT_OFF..SPORT_OFF + 2].copy_from_slice(&new.to_be_bytes());
    if f[PROTO_OFF] == 6 {
        let csum = u16::from_be_bytes([f[TCP_CSUM_OFF], f[TCP_CSUM_OFF + 1]]);
        let mut sum = u32::from(!csum) + u32::from(!old) + u32::from(new);
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        f[TCP_CSUM_OFF..TCP_CSUM_OFF + 2].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model;

    #[test]
    fn a_moved_port_is_the_frame_of_that_port_checksum_included() {
        for (tcp, by) in [(true, 1), (true, 777), (true, 65_000), (false, 3)] {
            for i in [0, 5, 59_999] {
                let fl = model::flow(i, 65_536, 1000, tcp);
                let mut f = frame::build(&fl, 64);
                move_port(&mut f, by);
                let want = frame::build(
                    &model::Flow {
                        sport: fl.sport.wrapping_add(by),
                        ..fl
                    },
                    64,
                );
                assert_eq!(f, want, "tcp {tcp}, flow {i}, by {by}");
            }
        }
    }
}
