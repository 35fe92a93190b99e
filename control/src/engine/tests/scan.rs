//! Scan detection on the control thread: failed attempts from flow events
//! (denied at their start, unanswered or refused at their end) become one
//! `scan` alert about the source; answered traffic to many hosts does not.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a cfg(test) module: unwrap/expect fail a test on a fixture the test wrote; none touches a packet, a file or a request of the running appliance"
)]

use super::intel::alerts;
use super::*;
use dataplane::event::EndReason;

/// web-1 to db-1 (10.0.0.21) on `port`: `verdict`, and how it went.
fn flow(port: u16, verdict: Verdict, packets: [u64; 2], flags: u8, end: bool) -> Event {
    ended(
        port,
        verdict,
        packets,
        flags,
        end.then_some(EndReason::Idle),
    )
}

fn ended(
    port: u16,
    verdict: Verdict,
    packets: [u64; 2],
    flags: u8,
    end: Option<EndReason>,
) -> Event {
    let Event::FlowStart(mut r) = flow_start(WEB, "10.0.0.11", DB, "10.0.0.21", verdict) else {
        unreachable!("flow_start makes a start")
    };
    r.dst_port = port;
    r.packets = packets;
    r.tcp_flags = flags;
    match end {
        Some(why) => Event::FlowEnd(r, why),
        None => Event::FlowStart(r),
    }
}

fn verdict(action: Action) -> Verdict {
    Verdict {
        action,
        reason: Reason::Default,
        mode: Mode::Enforce,
        would_deny: false,
    }
}

#[test]
fn a_port_scan_raises_one_alert_and_answered_traffic_none() {
    let bed = start("scan");
    let h = &bed.engine.handle;
    // Answered connections to many ports (data pushed, closed): nothing.
    let (allow, deny) = (verdict(Action::Allow), verdict(Action::Deny));
    for port in 1000..1100 {
        bed.events
            .send(flow(port, allow, [6, 5], 0x1b, true))
            .unwrap();
    }
    // Unanswered so far, but pushed out of a full table or flushed at a
    // stop: not failed attempts.
    for port in 2000..2100 {
        let why = [EndReason::Evicted, EndReason::Flushed][usize::from(port % 2)];
        bed.events
            .send(ended(port, allow, [1, 0], 0x02, Some(why)))
            .unwrap();
    }
    // Then nmap: denied ports at their start, refused ones (SYN, RST-ACK)
    // and unanswered ones at their end, a thousand in all.
    for port in 1..=1000u16 {
        let e = match port % 3 {
            0 => flow(port, deny, [1, 0], 0x02, false),
            1 => flow(port, allow, [1, 1], 0x16, true),
            _ => flow(port, allow, [2, 0], 0x02, true),
        };
        bed.events.send(e).unwrap();
    }
    eventually("every event is seen", || h.status().events == 1200);
    let scans = || -> Vec<crate::alerts::Alert> {
        alerts(&bed)
            .into_iter()
            .filter(|a| a.kind == crate::alerts::Kind::Scan)
            .collect()
    };
    eventually("the alert is stored", || !scans().is_empty());
    let all = scans();
    assert_eq!(all.len(), 1, "one alert, not thousands: {all:?}");
    let a = &all[0];
    assert_eq!(a.kind, crate::alerts::Kind::Scan);
    assert_eq!(a.mac, WEB);
    assert_eq!(a.workload.as_deref(), Some("web-1"));
    assert_eq!(a.indicator, "port-scan");
    assert!(
        a.summary
            .starts_with("web-1 (10.0.0.11) probed 15 ports of 10.0.0.21 within 60 s"),
        "{}",
        a.summary
    );
    assert_eq!(a.evidence["seen"].as_array().unwrap().len(), 15);
    assert_eq!(a.evidence["seen"][0], "tcp/1");
}
