//! Learning from the wire: address claims and bindings, the learned-workload
//! cap after a MAC flood, aging, and the policy file's reload.
//!
//! Compiled only with `cfg(test)`, like its parent: its `unwrap`/`expect`
//! fail a test on a fixture the test wrote itself.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a cfg(test) module: unwrap/expect fail a test on a fixture the test wrote; none touches a packet, a file or a request of the running appliance"
)]

use super::*;

fn arp(mac_text: &str, addr: [u8; 4]) -> Event {
    Event::Arp(ArpSeen {
        time: 0,
        mac: mac(mac_text),
        ip: Ipv4Addr::from(addr),
        vlan: [0, 0],
    })
}

#[test]
fn an_address_held_by_a_workload_is_not_learned_for_another_mac() {
    // Assignment by CIDR: any MAC seen at 10.0.0.0/24 would be a web workload.
    let policy = POLICY.replace(
        "    - { mac_prefix: \"02:00:00:00:01:*\", labels: { app: web } }",
        "    - { cidr: 10.0.0.0/24, labels: { app: web } }",
    );
    let bed = start_policy(
        TempDir::new("claims"),
        EngineConfig {
            debounce: Duration::from_millis(20),
            ..EngineConfig::default()
        },
        &policy,
    );
    let h = &bed.engine.handle;
    // web-1's declared address, and one learned first by another MAC.
    bed.events
        .send(arp("02:00:00:00:07:01", [10, 0, 0, 50]))
        .expect("send");
    eventually("the first-seen address is bound", || {
        bed.cell.load().owner_of(ip("10.0.0.50")) == Some(mac("02:00:00:00:07:01"))
    });
    assert_eq!(
        bed.cell.load().owner_of(ip("10.0.0.11")),
        Some(mac(WEB)),
        "declared addresses are bound from the start"
    );

    // A new MAC claims web-1's declared address, then the learned one.
    let claimant = "02:00:00:00:0e:01";
    bed.events
        .send(arp(claimant, [10, 0, 0, 11]))
        .expect("send");
    bed.events
        .send(arp(claimant, [10, 0, 0, 50]))
        .expect("send");
    eventually("both claims refused", || {
        h.status().address_claims_refused == 2
    });
    h.quarantine(mac("02:00:00:00:09:01"), None, "test")
        .expect("a publication for the view");
    let view = h.view();
    let w = view.model.workloads.by_mac(mac(claimant)).expect("seen");
    assert!(w.ips.is_empty(), "no address learned: {:?}", w.ips);
    assert!(w.labels.is_empty(), "not enrolled by CIDR: {:?}", w.labels);
    let load = bed.cell.load();
    assert_eq!(load.owner_of(ip("10.0.0.11")), Some(mac(WEB)));
    assert_eq!(
        load.owner_of(ip("10.0.0.50")),
        Some(mac("02:00:00:00:07:01"))
    );

    // A DHCP lease moves the learned address, never the declared one.
    for addr in [[10, 0, 0, 50], [10, 0, 0, 11]] {
        bed.events
            .send(Event::DhcpLease(LeaseSeen {
                time: 0,
                mac: mac(claimant),
                ip: Ipv4Addr::from(addr),
                vlan: [0, 0],
            }))
            .expect("send");
    }
    eventually("the lease moved the learned address", || {
        bed.cell.load().owner_of(ip("10.0.0.50")) == Some(mac(claimant))
    });
    assert_eq!(bed.cell.load().owner_of(ip("10.0.0.11")), Some(mac(WEB)));
    assert_eq!(h.status().address_claims_refused, 3);
}

#[test]
fn reloading_an_unchanged_file_writes_nothing_and_keeps_an_api_commit() {
    let bed = start("reload");
    let h = &bed.engine.handle;
    let file = model(POLICY);
    assert_eq!(
        h.reload_file(file.clone(), "reload").expect("reload"),
        crate::engine::Reload::Unchanged { version: 1 }
    );
    assert_eq!(
        h.versions().expect("versions").len(),
        1,
        "no identical version"
    );

    // An operator changes the policy through the API ...
    let mut edited = file.clone();
    edited.rules.retain(|r| r.id != 30);
    h.replace(edited, "alice", "drop rule 30").expect("commit");
    // ... and a SIGHUP with the file untouched does not undo it.
    assert_eq!(
        h.reload_file(file.clone(), "reload").expect("reload"),
        crate::engine::Reload::KeptLive {
            file_version: 1,
            live: 2,
            actor: "alice".into()
        }
    );
    assert_eq!(h.versions().expect("versions").len(), 2);

    // The file edited: it is committed.
    let mut changed = file;
    changed.rules.retain(|r| r.id != 20);
    match h.reload_file(changed, "reload").expect("reload") {
        crate::engine::Reload::Committed(c) => assert_eq!(c.version, 3),
        other => panic!("not committed: {other:?}"),
    }
}

#[test]
fn after_a_mac_flood_new_macs_get_in_once_the_flood_is_idle_and_idle_ones_age_out() {
    let dir = TempDir::new("flood-age");
    let cfg = EngineConfig {
        max_observed: 10,
        evict_idle: Duration::from_millis(500),
        learned_idle: Duration::from_secs(3600),
        debounce: Duration::from_millis(20),
        persist_interval: Duration::from_millis(50),
        ..EngineConfig::default()
    };
    let bed = start_with(dir, cfg.clone());
    let h = &bed.engine.handle;
    for i in 0..50u8 {
        bed.events
            .send(arp(&format!("02:aa:00:00:00:{i:02x}"), [10, 9, 0, i]))
            .expect("send");
    }
    eventually("the flood is handled", || h.status().events == 50);
    assert_eq!(
        h.status().observed_refused,
        40,
        "the cap holds during the flood"
    );
    // Once the flood's MACs are idle, a legitimate MAC gets in.
    std::thread::sleep(Duration::from_millis(1100));
    let legit = "02:00:00:00:01:55";
    bed.events.send(arp(legit, [10, 0, 0, 55])).expect("send");
    eventually("the legitimate MAC is learned and shown", || {
        h.view().model.workloads.by_mac(mac(legit)).is_some()
    });
    assert!(h.status().learned_forgotten >= 1);
    eventually("web policy for it", || {
        bed.verdict((legit, "10.0.0.55"), (DB, "10.0.0.21"), 5432)
            .action
            == Action::Allow
    });
    // The view and the store list the same learned workloads.
    let learned_in_view = |h: &crate::engine::ControlHandle| {
        let mut v: Vec<String> = h
            .view()
            .model
            .workloads
            .iter()
            .filter(|w| w.origin == crate::model::Origin::Observed)
            .map(|w| w.mac.clone())
            .collect();
        v.sort();
        v
    };
    std::thread::sleep(Duration::from_millis(200));
    let in_view = learned_in_view(h);
    assert_eq!(in_view.len(), 10);

    // After a restart the legitimate MAC is still there, and the store
    // holds what the view showed.
    let (dir, db) = bed.stop();
    let stored: Vec<String> = {
        let store = Store::open(&db).expect("reopen");
        let mut v: Vec<String> = store
            .workloads()
            .expect("workloads")
            .into_iter()
            .filter(|w| w.origin == crate::model::Origin::Observed)
            .map(|w| w.mac)
            .collect();
        v.sort();
        v
    };
    assert_eq!(stored, in_view, "the store matches GET /workloads");
    let bed = start_with(
        dir,
        EngineConfig {
            learned_idle: Duration::from_secs(1),
            ..cfg
        },
    );
    let h = &bed.engine.handle;
    assert!(h.view().model.workloads.by_mac(mac(legit)).is_some());
    // Idle longer than learned_idle: forgotten, in the view and the store.
    eventually("idle learned workloads age out", || {
        learned_in_view(h).is_empty()
    });
}
