//! Learning from the wire: events in, workloads and their addresses
//! learned, refused (a bound address, a full cap), aged out and written to
//! the store.

use super::*;

impl State {
    pub(in crate::engine) fn event(&mut self, e: &Event) {
        self.shared.events.fetch_add(1, Ordering::Relaxed);
        match e {
            Event::FlowStart(r) => {
                self.count_hit(r);
                self.intel_flow(r);
                self.scan(crate::detect::Probe::at_start(r));
                self.detect_flow(r);
                self.observe(r.src_mac, Some(r.src_ip), outer_vlan(r.vlan), false);
            }
            Event::Arp(a) => {
                self.observe(a.mac, Some(IpAddr::V4(a.ip)), outer_vlan(a.vlan), false);
                self.record(e);
            }
            Event::DhcpLease(l) => {
                self.observe(l.mac, Some(IpAddr::V4(l.ip)), outer_vlan(l.vlan), true);
                self.record(e);
            }
            Event::FlowEnd(r, why) => {
                self.scan(crate::detect::Probe::at_end(r, *why));
                self.record(e);
            }
            Event::FlowActive(..) | Event::Dns(_) => self.record(e),
            // Would-deny repeats, reclassifications and spoofs: not records.
            _ => {}
        }
    }

    fn count_hit(&mut self, r: &FlowRecord) {
        let Reason::Rule(id) = r.verdict.reason else {
            return;
        };
        let hits = self.hits.entry(user_rule_id(id)).or_default();
        if r.verdict.would_deny {
            hits.would_deny += 1;
        } else {
            hits.flows += 1;
        }
        hits.last_hit = Timestamp::now().0;
    }

    /// Learns a MAC (and its address and VLAN) seen on the wire.
    /// `lease`: a DHCP server leased `ip` to `mac`.
    fn observe(&mut self, mac: MacAddr, ip: Option<IpAddr>, vlan: Option<u16>, lease: bool) {
        if !is_workload_mac(mac) {
            return;
        }
        // An address another workload holds is not learned for this MAC (so
        // no assignment by CIDR gives it the holder's labels); a lease moves
        // a learned one.
        let ip = match ip.map(|ip| (ip, self.addresses.claim(mac, ip, lease))) {
            Some((ip, Claim::Learn)) => Some(ip),
            Some((ip, Claim::Move { from })) => {
                self.forget_address(from, ip);
                Some(ip)
            }
            Some((_, Claim::Refused { .. })) => {
                self.shared.claims_refused.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => None,
        };
        let now = Timestamp::now();
        match self.effective.workloads.by_mac(mac) {
            Some(w) if !crate::membership::would_learn(w, ip, vlan) => {
                if w.origin == Origin::Observed {
                    self.ages.touch(mac, now.0);
                }
                self.seen.insert(mac, now);
                return;
            }
            Some(_) => {}
            None if self.learned >= self.cfg.max_observed => {
                // Full: the learned workload seen least recently makes room,
                // if it has been idle a while (a flood's MACs go quiet).
                let idle = now.0.saturating_sub(nanos(self.cfg.evict_idle));
                match self.ages.oldest_before(idle) {
                    Some(victim) => self.forget_learned(victim),
                    None => {
                        self.shared.refused.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
            None => {}
        }
        let obs = Arc::make_mut(&mut self.effective).observe(mac, ip, vlan, now);
        if obs.new {
            self.learned += 1;
            self.shared.learned.fetch_add(1, Ordering::Relaxed);
            self.view_dirty_since.get_or_insert_with(Instant::now);
        }
        if self
            .effective
            .workloads
            .by_mac(mac)
            .is_some_and(|w| w.origin == Origin::Observed)
        {
            self.ages.touch(mac, now.0);
        }
        if let Some(ip) = ip {
            let holds = self
                .effective
                .workloads
                .by_mac(mac)
                .is_some_and(|w| w.ips.iter().any(|t| t.trim().parse::<IpAddr>() == Ok(ip)));
            if holds {
                self.addresses.bind(mac, ip, Instant::now());
            }
        }
        self.seen.insert(mac, now);
        if obs.policy_may_change() && self.dirty_since.is_none() {
            self.dirty_since = Some(Instant::now());
        }
    }

    /// Forgets a learned workload (idle, or making room under the cap): out
    /// of the model, the store, the address bindings.
    pub(super) fn forget_learned(&mut self, mac: MacAddr) {
        self.ages.forget(mac);
        self.seen.remove(&mac);
        let Some(w) = Arc::make_mut(&mut self.effective)
            .workloads
            .swap_remove(mac)
        else {
            return;
        };
        self.learned = self.learned.saturating_sub(1);
        self.shared.forgotten.fetch_add(1, Ordering::Relaxed);
        self.addresses.release(mac, Instant::now());
        if !w.labels.is_empty() && self.dirty_since.is_none() {
            // It may have been in groups: the compiled policy changes.
            self.dirty_since = Some(Instant::now());
        }
        self.view_dirty_since.get_or_insert_with(Instant::now);
        if let Err(e) = self.store.remove_workload(&w.mac) {
            set_text(
                &self.shared.last_error,
                Some(format!("forgetting learned workload {}: {e}", w.mac)),
            );
        }
        self.garbage.push(Box::new(w));
    }

    /// Forgets learned workloads idle longer than `learned_idle`, a bounded
    /// number per call.
    pub(super) fn age_out(&mut self) {
        let idle = Timestamp::now()
            .0
            .saturating_sub(nanos(self.cfg.learned_idle));
        for _ in 0..1024 {
            match self.ages.oldest_before(idle) {
                Some(mac) => self.forget_learned(mac),
                None => break,
            }
        }
    }

    /// A learned workload loses an address a DHCP lease gave another MAC.
    fn forget_address(&mut self, from: MacAddr, ip: IpAddr) {
        if let Some(w) = Arc::make_mut(&mut self.effective)
            .workloads
            .by_mac_mut(from)
        {
            w.ips.retain(|t| t.trim().parse::<IpAddr>() != Ok(ip));
        }
    }

    /// Writes the workloads seen since the last call, in one transaction.
    pub(in crate::engine) fn persist_learned(&mut self) {
        if self.seen.is_empty() {
            return;
        }
        let seen = std::mem::take(&mut self.seen);
        let records: Vec<WorkloadRecord> = seen
            .iter()
            .filter_map(|(mac, at)| {
                let w = self.effective.workloads.by_mac(*mac)?;
                Some(WorkloadRecord {
                    mac: mac.to_string(),
                    name: w.name.clone(),
                    labels: w.labels.clone(),
                    origin: w.origin,
                    first_seen: w.first_seen.unwrap_or(*at),
                    last_seen: *at,
                })
            })
            .collect();
        if let Err(e) = self.store.upsert_workloads(&records) {
            set_text(
                &self.shared.last_error,
                Some(format!("storing learned workloads: {e}")),
            );
        }
    }
}
