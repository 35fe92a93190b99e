//! Tests of the state machine and timeouts (kept apart from `tcp.rs` to keep it short).

use super::*;
use crate::flow::tests::entry;
use crate::wire::ip_proto::{ICMP, TCP, UDP};

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const FIN: u8 = TcpFlags::FIN;
const RST: u8 = TcpFlags::RST;
const PSH: u8 = TcpFlags::PSH;
const S: u64 = 1_000_000_000;

fn step(e: &mut FlowEntry, dir: Dir, flags: u8) -> Update {
    e.update(dir, Some(TcpFlags(flags)), 60, e.last_seen + 1)
}

#[test]
fn handshake_data_fin_fin() {
    use FlowState::*;
    let (mut e, _) = entry(TCP, 40000, 443, 0);
    let u = step(&mut e, Dir::Orig, SYN);
    assert!(u.first && !u.restart);
    assert_eq!(u.state, SynSent);
    assert_eq!(step(&mut e, Dir::Orig, SYN).state, SynSent); // retransmit
    let u = step(&mut e, Dir::Reply, SYN | ACK);
    assert_eq!((u.prev, u.state), (SynSent, SynReceived));
    assert!(u.replied() && u.changed() && !u.closed());
    assert_eq!(step(&mut e, Dir::Orig, ACK).state, Established);
    assert_eq!(step(&mut e, Dir::Orig, PSH | ACK).state, Established);
    assert_eq!(step(&mut e, Dir::Reply, PSH | ACK).state, Established);
    assert_eq!(step(&mut e, Dir::Orig, FIN | ACK).state, FinWait);
    assert_eq!(step(&mut e, Dir::Orig, FIN | ACK).state, FinWait); // retransmit
    assert_eq!(step(&mut e, Dir::Reply, ACK).state, FinWait);
    assert_eq!(step(&mut e, Dir::Reply, PSH | ACK).state, FinWait); // half-close data
    let u = step(&mut e, Dir::Reply, FIN | ACK);
    assert_eq!(u.state, Closing);
    assert!(!u.closed());
    // The reply side's own ACKs do not acknowledge its FIN.
    assert_eq!(step(&mut e, Dir::Reply, ACK).state, Closing);
    let u = step(&mut e, Dir::Orig, ACK);
    assert_eq!(u.state, TimeWait);
    assert!(u.closed());
    assert!(!step(&mut e, Dir::Orig, ACK).closed());
    assert_eq!(e.packets, [8, 6]);
    assert_eq!(e.bytes, [8 * 60, 6 * 60]);
}

#[test]
fn reply_closes_first() {
    use FlowState::*;
    let (mut e, _) = entry(TCP, 40000, 443, 0);
    for (d, f) in [(Dir::Orig, SYN), (Dir::Reply, SYN | ACK), (Dir::Orig, ACK)] {
        step(&mut e, d, f);
    }
    assert_eq!(step(&mut e, Dir::Reply, FIN | ACK).state, FinWait);
    assert_eq!(step(&mut e, Dir::Orig, FIN | ACK).state, Closing);
    assert_eq!(step(&mut e, Dir::Orig, ACK).state, Closing);
    assert_eq!(step(&mut e, Dir::Reply, ACK).state, TimeWait);
}

#[test]
fn rst_closes() {
    use FlowState::*;
    let (mut e, _) = entry(TCP, 40000, 443, 0);
    step(&mut e, Dir::Orig, SYN);
    let u = step(&mut e, Dir::Reply, RST | ACK);
    assert_eq!(u.state, Closed);
    assert!(u.closed());
    let u = step(&mut e, Dir::Reply, RST);
    assert_eq!(u.state, Closed);
    assert!(!u.closed());
    // Established then RST.
    let (mut e, _) = entry(TCP, 40000, 443, 0);
    step(&mut e, Dir::Orig, ACK);
    assert!(step(&mut e, Dir::Orig, RST).closed());
}

#[test]
fn mid_stream_pickup() {
    use FlowState::*;
    let (mut e, _) = entry(TCP, 40000, 443, 0);
    let u = step(&mut e, Dir::Orig, PSH | ACK);
    assert!(u.first);
    assert_eq!(u.state, Established);
    assert_eq!(step(&mut e, Dir::Reply, ACK).state, Established);
    let (mut e, _) = entry(TCP, 40000, 443, 0);
    assert_eq!(step(&mut e, Dir::Orig, FIN | ACK).state, FinWait);
    assert_eq!(step(&mut e, Dir::Reply, FIN | ACK).state, Closing);
    let (mut e, _) = entry(TCP, 40000, 443, 0);
    assert!(step(&mut e, Dir::Orig, RST).closed());
    // No TCP header at all (e.g. a fragment): counted, picked up.
    let (mut e, _) = entry(TCP, 40000, 443, 0);
    assert_eq!(e.update(Dir::Orig, None, 10, 1).state, Established);
    assert_eq!(e.packets, [1, 0]);
}

#[test]
fn syn_after_close_restarts() {
    for close in [
        &[(Dir::Orig, RST)][..],
        &[(Dir::Orig, FIN), (Dir::Reply, FIN), (Dir::Orig, ACK)],
    ] {
        let (mut e, _) = entry(TCP, 40000, 443, 0);
        for (d, f) in [(Dir::Orig, SYN), (Dir::Reply, SYN | ACK), (Dir::Orig, ACK)] {
            step(&mut e, d, f);
        }
        for &(d, f) in close {
            step(&mut e, d, f);
        }
        assert!(e.state.is_closed());
        let before = e;
        // Either side may open the new connection.
        for d in [Dir::Orig, Dir::Reply] {
            let u = step(&mut e, d, SYN);
            assert!(u.restart && !u.closed() && !u.changed());
            assert_eq!(e, before, "a restart leaves the entry untouched");
        }
        // A SYN-ACK is not a new connection.
        assert!(!step(&mut e, Dir::Reply, SYN | ACK).restart);
    }
    // A SYN on a live connection is not a restart.
    let (mut e, _) = entry(TCP, 40000, 443, 0);
    step(&mut e, Dir::Orig, ACK);
    assert!(!step(&mut e, Dir::Orig, SYN).restart);
}

#[test]
fn udp_and_other_states() {
    let (mut e, _) = entry(UDP, 5353, 53, 0);
    let u = e.update(Dir::Orig, None, 80, 1);
    assert!(u.first);
    assert_eq!(u.state, FlowState::Unreplied);
    assert_eq!(e.update(Dir::Orig, None, 80, 2).state, FlowState::Unreplied);
    let u = e.update(Dir::Reply, None, 200, 3);
    assert!(u.replied());
    assert_eq!(u.state, FlowState::Replied);
    assert_eq!(e.update(Dir::Orig, None, 80, 4).state, FlowState::Replied);
    assert_eq!(e.packets, [3, 1]);
    assert_eq!(e.bytes, [240, 200]);
    assert_eq!((e.first_seen, e.last_seen), (0, 4));
    // Flags on a non-TCP entry are ignored.
    let (mut e, _) = entry(ICMP, 0, 0, 0);
    assert_eq!(
        e.update(Dir::Orig, Some(TcpFlags(RST)), 1, 1).state,
        FlowState::Unreplied
    );
    // The clock never runs backwards for last_seen.
    e.update(Dir::Orig, None, 1, 0);
    assert_eq!(e.last_seen, 1);
}

#[test]
fn default_timeouts() {
    use FlowState::*;
    let t = Timeouts::default();
    assert_eq!(t.timeout(TCP, SynSent), 120 * S);
    assert_eq!(t.timeout(TCP, SynReceived), 60 * S);
    assert_eq!(t.timeout(TCP, Established), 432_000 * S);
    assert_eq!(t.timeout(TCP, FinWait), 120 * S);
    assert_eq!(t.timeout(TCP, Closing), 30 * S);
    assert_eq!(t.timeout(TCP, TimeWait), 120 * S);
    assert_eq!(t.timeout(TCP, Closed), 10 * S);
    assert_eq!(t.timeout(UDP, Unreplied), 30 * S);
    assert_eq!(t.timeout(UDP, Replied), 120 * S);
    assert_eq!(t.timeout(ICMP, Replied), 30 * S);
    assert_eq!(t.timeout(ip_proto::ICMPV6, Unreplied), 30 * S);
    assert_eq!(t.timeout(47, Unreplied), 600 * S);
    let ns = TimeoutsNs::new(&t);
    for proto in [TCP, UDP, ICMP, 47] {
        for st in [
            SynSent,
            SynReceived,
            Established,
            FinWait,
            Closing,
            TimeWait,
            Closed,
            Unreplied,
            Replied,
        ] {
            assert_eq!(ns.get(proto, st), t.timeout(proto, st));
        }
    }
    let huge = Timeouts {
        other: Duration::MAX,
        ..t
    };
    assert_eq!(huge.timeout(47, Replied), u64::MAX);
}
