//! A MAC flood against the live appliance (`bulkhead run` in a network
//! namespace, real frames on veths, the API through `bulkhead ctl`): the
//! learned-workload cap fills, and a legitimate workload that appears after
//! the flood is still learned, labelled and let through, before and after a
//! restart; `GET /workloads` shows what the store holds (issue 15, item 8).
//!
//! Needs root; outside CI a non-root run says why it skips, with `CI=true` a
//! missing privilege is a failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

mod live_bed;

use live_bed::{connects, in_ns, listen, Bed, MAC_A, MAC_B};
/// The learned-workload cap of the test's appliance.
const CAP: usize = 100;
/// MACs in the flood.
const FLOOD: usize = 1000;

/// `count` UDP frames from host-a, each from a MAC and address of its own
/// (02:fd:..., 10.98.x.y: outside every assignment rule), to host-b.
fn flood(ns: &str, count: usize) {
    in_ns(ns, move || {
        // SAFETY: plain socket(2); the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                (libc::ETH_P_ALL as u16).to_be() as i32,
            )
        };
        assert!(fd >= 0, "packet socket");
        let name = std::ffi::CString::new("host-a").expect("name");
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
        // SAFETY: sockaddr_ll is plain data; zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: binds to a live sockaddr_ll of the stated size.
        let rc = unsafe {
            libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind");
        let dst = mac_bytes(MAC_B);
        for i in 0..count {
            let src_mac = [0x02, 0xfd, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8];
            let src_ip = [10, 98, (i / 250) as u8, (i % 250 + 1) as u8];
            let frame = udp_frame(src_mac, dst, src_ip, [10, 99, 0, 2], 40000, 9999);
            // SAFETY: the buffer is valid for its length; the socket is bound.
            let n = unsafe { libc::send(fd, frame.as_ptr().cast(), frame.len(), 0) };
            assert_eq!(n, frame.len() as isize, "send");
            if i % 100 == 99 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // SAFETY: closes the socket this closure opened.
        unsafe { libc::close(fd) };
    });
}

fn mac_bytes(mac: &str) -> [u8; 6] {
    let mut out = [0; 6];
    for (o, part) in out.iter_mut().zip(mac.split(':')) {
        *o = u8::from_str_radix(part, 16).expect("hex");
    }
    out
}

fn udp_frame(src: [u8; 6], dst: [u8; 6], sip: [u8; 4], dip: [u8; 4], sp: u16, dp: u16) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2(src, dst)
        .ipv4(sip, dip, 64)
        .udp(sp, dp);
    let payload = b"flood";
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, payload).expect("frame");
    frame
}

/// The learned workloads the store holds, by MAC.
fn stored(store: &Path) -> BTreeSet<String> {
    let db = control::store::Store::open(store).expect("the store opens beside the appliance");
    db.workloads()
        .expect("read the workloads")
        .into_iter()
        .filter(|w| w.origin == control::model::Origin::Observed)
        .map(|w| w.mac)
        .collect()
}

#[test]
fn a_mac_flood_fills_the_cap_but_a_new_workload_is_still_learned_and_let_through() {
    if !dataplane::hostenv::root_with("the MAC flood test", &["ip", "ethtool", "nsenter"]) {
        return;
    }
    let policy = format!(
        r#"
default_mode: enforce
workloads:
  - {{ mac: "{MAC_B}", name: server, labels: {{ app: web }}, ips: [10.99.0.2] }}
groups:
  - {{ name: web, match: {{ app: web }} }}
rules:
  - {{ id: 10, src: [web], dst: [web], services: [{{ proto: tcp, ports: [9000] }}], action: allow }}
assignment:
  rules:
    - {{ cidr: 10.99.0.0/24, labels: {{ app: web }} }}
"#
    );
    let control = format!("max_learned_workloads = {CAP}\nevict_idle_secs = 2");
    let mut bed = Bed::new("lf", &policy, &control);
    let [a, b, _] = bed.ns.clone();
    listen(&b);
    bed.start();

    flood(&a, FLOOD);
    // Learning is debounced; the flood's MACs fill the cap.
    let until = Instant::now() + Duration::from_secs(10);
    while bed.observed().len() < CAP && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    let stats = bed.ctl(&["stats"]);
    assert_eq!(
        bed.observed().len(),
        CAP,
        "the cap holds: {stats}\n{}",
        bed.log()
    );
    assert!(
        stats["control"]["observed_refused"].as_u64().unwrap_or(0) > 0,
        "MACs past the cap were refused: {stats}"
    );

    // host-a appears after the flood: once the flood's MACs have been idle
    // for evict_idle_secs (2 s), it takes a place, gets the assignment's
    // labels (web) and rule 10 lets it through.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        connects(&a, Duration::from_secs(15)),
        "host-a is learned and reaches host-b:9000 after the flood:\n{}",
        bed.log()
    );
    let observed = bed.observed();
    assert!(observed.contains(&MAC_A.to_string()), "{observed:?}");
    assert!(observed.len() <= CAP, "{}", observed.len());

    // The store and `GET /workloads` agree, once the store has caught up
    // (it is written every persist interval).
    let until = Instant::now() + Duration::from_secs(15);
    let api: BTreeSet<String> = bed.observed().into_iter().collect();
    while stored(&bed.store()) != api && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        stored(&bed.store()),
        api,
        "the store holds what the API shows"
    );

    // After a restart host-a is still known and let through.
    bed.stop();
    bed.start();
    assert!(
        connects(&a, Duration::from_secs(15)),
        "host-a reaches host-b:9000 after a restart:\n{}",
        bed.log()
    );
    assert!(bed.observed().contains(&MAC_A.to_string()));
}
