//! Tests of [`FlowTable`] (kept apart from `table.rs` to keep both files short).

use super::*;
use crate::flow::tests::{allow, entry};
use crate::flow::{Dir, FlowState, Side};
use crate::wire::ip_proto::{TCP, UDP};
use crate::wire::{MacAddr, TcpFlags};
use proptest::prelude::*;
use std::collections::HashMap;

const S: u64 = 1_000_000_000;

/// A fresh entry for `proto` with this source port, its first packet counted.
fn first(proto: u8, sport: u16, flags: Option<u8>, now: u64) -> FlowEntry {
    let (mut e, _) = entry(proto, sport, 80, now);
    e.update(Dir::Orig, flags.map(TcpFlags), 100, now);
    e
}

fn hit(t: &mut FlowTable, key: &FlowKey, now: u64) -> bool {
    matches!(t.lookup(key, now), Lookup::Hit(_))
}

#[test]
fn both_directions_hit_one_entry() {
    let mut t = FlowTable::new(64, Timeouts::default());
    let (e, side) = entry(TCP, 40000, 443, 0);
    let (_, ev) = t.insert(e, 0);
    assert!(ev.is_none());
    let (a, b) = crate::flow::tests::v4(1, 2);
    let (k_rev, side_rev) = FlowKey::new(b, a, TCP, 443, 40000, [0, 0]);
    assert_ne!(side, side_rev);
    match t.lookup(&k_rev, 1) {
        Lookup::Hit(e) => {
            let d = e.dir(side_rev);
            assert_eq!(d, Dir::Reply);
            e.update(d, Some(TcpFlags(TcpFlags::ACK)), 40, 1);
        }
        other => panic!("{other:?}"),
    }
    match t.lookup(&e.key, 2) {
        Lookup::Hit(e) => {
            let d = e.dir(side);
            e.update(d, Some(TcpFlags(TcpFlags::ACK)), 1500, 2);
            e.update(d, Some(TcpFlags(TcpFlags::ACK)), 1500, 3);
            assert_eq!(e.packets, [2, 1]);
            assert_eq!(e.bytes, [3000, 40]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.len(), 1);
    let (k_udp, _) = FlowKey::new(a, b, UDP, 40000, 443, [0, 0]);
    assert!(matches!(t.lookup(&k_udp, 3), Lookup::Miss));
}

#[test]
fn per_state_timeouts() {
    let mut t = FlowTable::new(64, Timeouts::default());
    // Established TCP survives an hour idle.
    let est = first(TCP, 1, Some(TcpFlags::ACK), 0);
    assert_eq!(est.state, FlowState::Established);
    // SYN_SENT expires after 120 s.
    let syn = first(TCP, 2, Some(TcpFlags::SYN), 0);
    // UDP: 30 s unreplied, 120 s replied.
    let udp_un = first(UDP, 3, None, 0);
    let mut udp_re = first(UDP, 4, None, 0);
    udp_re.update(Dir::Reply, None, 10, 0);
    for e in [est, syn, udp_un, udp_re] {
        t.insert(e, 0);
    }
    assert!(hit(&mut t, &udp_un.key, 30 * S));
    assert!(hit(&mut t, &syn.key, 120 * S));
    match t.lookup(&udp_un.key, 30 * S + 1) {
        Lookup::Expired(old) => assert_eq!(old.key, udp_un.key),
        other => panic!("{other:?}"),
    }
    assert!(matches!(t.lookup(&udp_un.key, 30 * S + 1), Lookup::Miss));
    assert!(hit(&mut t, &udp_re.key, 119 * S));
    assert!(matches!(t.lookup(&udp_re.key, 121 * S), Lookup::Expired(_)));
    assert!(matches!(t.lookup(&syn.key, 121 * S), Lookup::Expired(_)));
    assert!(hit(&mut t, &est.key, 3600 * S));
    assert_eq!(t.stats().expirations, 3);
    assert_eq!(t.len(), 1);
    t.check_invariants();
}

#[test]
fn expire_sweeps_incrementally() {
    let mut t = FlowTable::new(100, Timeouts::default());
    for p in 0..100 {
        let proto = if p % 2 == 0 { UDP } else { TCP };
        let flags = (proto == TCP).then_some(TcpFlags::ACK);
        t.insert(first(proto, p, flags, 0), 0);
    }
    let now = 3600 * S;
    let mut ended = Vec::new();
    let mut rounds = 0;
    while t.len() > 50 {
        let n = t.expire(now, 10, |e| ended.push(e.key));
        assert!(n <= 10);
        rounds += 1;
        assert!(rounds < 100);
    }
    assert!(rounds >= 5, "bounded work per call");
    assert_eq!(ended.len(), 50);
    assert!(ended.iter().all(|k| k.proto == UDP));
    assert!(t.iter().all(|e| e.key.proto == TCP));
    // Nothing more to do.
    assert_eq!(t.expire(now, 1000, |_| panic!("live entry expired")), 0);
    assert_eq!(t.stats().expirations, 50);
    t.check_invariants();
}

#[test]
fn evicts_closed_before_older_established() {
    let mut t = FlowTable::new(8, Timeouts::default());
    let mut closed = None;
    for p in 0..8u16 {
        let now = u64::from(p) * S;
        let mut e = first(TCP, p, Some(TcpFlags::ACK), now);
        if p == 5 {
            e.update(Dir::Orig, Some(TcpFlags(TcpFlags::RST)), 40, now);
            closed = Some(e.key);
        }
        t.insert(e, now);
    }
    let (_, ev) = t.insert(first(TCP, 100, Some(TcpFlags::SYN), 9 * S), 9 * S);
    assert_eq!(ev.map(|e| e.key), closed, "the closed entry goes first");
    // Then the oldest established (port 0, last_seen 0).
    let (_, ev) = t.insert(first(TCP, 101, Some(TcpFlags::SYN), 9 * S), 9 * S);
    let ev = ev.expect("evicted");
    assert_eq!(ev.key.port_lo.min(ev.key.port_hi), 0);
    assert_eq!(ev.last_seen, 0);
    // Then port 1.
    let (_, ev) = t.insert(first(TCP, 102, Some(TcpFlags::SYN), 9 * S), 9 * S);
    assert_eq!(ev.map(|e| e.last_seen), Some(S));
    assert_eq!(t.len(), 8);
    assert_eq!(t.stats().evictions, 3);
    assert_eq!(t.stats().inserts, 11);
    t.check_invariants();
}

#[test]
fn evicts_a_denied_flow_before_an_older_allowed_one() {
    let mut t = FlowTable::new(4, Timeouts::default());
    let mut denied = None;
    for p in 0..4u16 {
        let now = u64::from(p) * S;
        let mut e = first(TCP, p, Some(TcpFlags::ACK), now);
        if p == 3 {
            e.verdict.action = crate::policy::Action::Deny;
            denied = Some(e.key);
        }
        t.insert(e, now);
    }
    let (_, ev) = t.insert(first(TCP, 100, Some(TcpFlags::SYN), 5 * S), 5 * S);
    assert_eq!(
        ev.map(|e| e.key),
        denied,
        "the newest entry, but denied, goes first"
    );
}

#[test]
fn evicts_expired_first() {
    let mut t = FlowTable::new(4, Timeouts::default());
    for p in 0..3 {
        t.insert(first(TCP, p, Some(TcpFlags::ACK), 0), 0);
    }
    let stale = first(UDP, 9, None, 10 * S); // expires at 40 s, yet younger
    t.insert(stale, 10 * S);
    let (_, ev) = t.insert(first(UDP, 10, None, 50 * S), 50 * S);
    assert_eq!(ev.map(|e| e.key), Some(stale.key));
    assert_eq!(t.stats().evictions, 0);
    assert_eq!(t.stats().expirations, 1);
}

#[test]
fn never_grows() {
    let cap = 1000;
    let mut t = FlowTable::new(cap, Timeouts::default());
    let slots = t.slot_count();
    assert!(slots >= 2 * cap && slots.is_power_of_two());
    let mut evicted = 0;
    for i in 0..10 * cap as u32 {
        let (s, d) = (i.to_be_bytes(), (!i).to_be_bytes());
        let (key, side) = FlowKey::new(
            std::net::Ipv4Addr::from(s).into(),
            std::net::Ipv4Addr::from(d).into(),
            UDP,
            1,
            2,
            [0, 0],
        );
        let e = FlowEntry::new(
            key,
            side,
            MacAddr::default(),
            MacAddr::default(),
            allow(),
            0,
            u64::from(i),
        );
        let (stored, ev) = t.insert(e, u64::from(i));
        stored.update(Dir::Orig, None, 1, u64::from(i));
        evicted += usize::from(ev.is_some());
        assert!(t.len() <= cap);
    }
    assert_eq!(t.len(), cap);
    assert_eq!(t.slot_count(), slots);
    assert_eq!(evicted, 9 * cap);
    assert_eq!(t.stats().evictions, 9 * cap as u64);
    t.check_invariants();
    let mut n = 0;
    t.drain(|_| n += 1);
    assert_eq!(n, cap);
    assert!(t.is_empty());
    assert_eq!(t.stats().drained, cap as u64);
    t.check_invariants();
}

#[test]
fn replace_and_remove() {
    let mut t = FlowTable::new(4, Timeouts::default());
    let e = first(UDP, 1, None, 0);
    t.insert(e, 0);
    let mut e2 = e;
    e2.generation = 7;
    let (stored, old) = t.insert(e2, 1);
    assert_eq!(stored.generation, 7);
    assert_eq!(old.map(|o| o.generation), Some(1));
    assert_eq!(t.len(), 1);
    assert_eq!(t.stats().replaced, 1);
    assert_eq!(t.get(&e.key).map(|e| e.generation), Some(7));
    assert_eq!(t.remove(&e.key).map(|e| e.generation), Some(7));
    assert!(t.remove(&e.key).is_none());
    assert!(t.is_empty());
    assert_eq!(t.stats().removals, 1);
    // Capacity 0 is clamped to 1.
    let mut t = FlowTable::new(0, Timeouts::default());
    assert_eq!(t.capacity(), 1);
    t.insert(first(UDP, 1, None, 0), 0);
    assert!(t.insert(first(UDP, 2, None, 0), 0).1.is_some());
}

#[test]
fn hashed_variants_agree() {
    let mut t = FlowTable::with_seeds(16, Timeouts::default(), [1, 2, 3, 4]);
    let e = first(TCP, 5, Some(TcpFlags::SYN), 0);
    let h = t.hash(&e.key);
    t.insert_hashed(e, h, 0);
    assert!(matches!(t.lookup_hashed(&e.key, h, 1), Lookup::Hit(_)));
    assert!(hit(&mut t, &e.key, 1));
    let t2 = FlowTable::with_seeds(16, Timeouts::default(), [1, 2, 3, 4]);
    assert_eq!(t2.hash(&e.key), h);
    assert_eq!(t.timeout_of(&e), 120 * S);
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u16),
    Remove(u16),
    Lookup(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u16..96).prop_map(Op::Insert),
        2 => (0u16..96).prop_map(Op::Remove),
        2 => (0u16..96).prop_map(Op::Lookup),
    ]
}

fn key(p: u16) -> (FlowKey, Side) {
    let (s, d) = crate::flow::tests::v4(1, 2);
    FlowKey::new(s, d, UDP, p, 53, [0, 0])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Random inserts, removals and lookups agree with a `HashMap` model, and every
    /// remaining key stays findable after each backward-shift deletion.
    #[test]
    fn matches_hashmap_model(
        ops in proptest::collection::vec(op(), 1..300),
        seed in any::<u64>(),
        cap in prop_oneof![Just(1usize), Just(7), Just(8), Just(32)],
    ) {
        let mut t = FlowTable::with_seeds(cap, Timeouts::default(), [seed, 1, 2, 3]);
        let mut model: HashMap<FlowKey, u64> = HashMap::new();
        for (n, op) in ops.into_iter().enumerate() {
            let gen = n as u64;
            match op {
                Op::Insert(p) => {
                    let (k, side) = key(p);
                    let e = FlowEntry::new(k, side, MacAddr::default(), MacAddr::default(), allow(), gen, 0);
                    let (stored, old) = t.insert(e, 0);
                    prop_assert_eq!(stored.generation, gen);
                    if let Some(prev) = model.get(&k).copied() {
                        prop_assert_eq!(old.map(|o| (o.key, o.generation)), Some((k, prev)));
                    } else if model.len() == cap {
                        let ev = old.expect("full table evicts");
                        prop_assert_eq!(model.remove(&ev.key), Some(ev.generation));
                    } else {
                        prop_assert!(old.is_none());
                    }
                    model.insert(k, gen);
                }
                Op::Remove(p) => {
                    let (k, _) = key(p);
                    prop_assert_eq!(t.remove(&k).map(|e| e.generation), model.remove(&k));
                }
                Op::Lookup(p) => {
                    let (k, _) = key(p);
                    let got = match t.lookup(&k, 0) {
                        Lookup::Hit(e) => Some(e.generation),
                        Lookup::Miss => None,
                        Lookup::Expired(_) => panic!("nothing expires at t=0"),
                    };
                    prop_assert_eq!(got, model.get(&k).copied());
                }
            }
            prop_assert_eq!(t.len(), model.len());
            t.check_invariants();
            for (k, g) in &model {
                prop_assert_eq!(t.get(k).map(|e| e.generation), Some(*g));
            }
        }
    }
}
