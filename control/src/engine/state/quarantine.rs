//! Quarantines on the control thread: the store's set in force, published
//! as the snapshot's overlay (never a recompile), reconciled with the live
//! policy's own list.

use super::*;

impl State {
    /// Brings the quarantines in force in line with a new live policy: what it
    /// lists is in force (source `policy`), what an earlier policy listed and
    /// this one does not is released. Command quarantines are left alone.
    pub(super) fn reconcile_quarantines(
        &mut self,
        model: &Model,
        version: Version,
        actor: &str,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now();
        for q in &model.quarantine {
            let Some(mac) = parse_mac(&q.mac) else {
                continue;
            };
            self.store.quarantine(&ActiveQuarantine {
                mac: mac.to_string(),
                reason: q.reason.clone(),
                actor: q.actor.clone().unwrap_or_else(|| actor.to_string()),
                at: q.at.unwrap_or(now),
                source: QuarantineSource::Policy,
            })?;
        }
        let listed = listed_macs(model);
        for a in self.store.active_quarantines()? {
            if a.source == QuarantineSource::Policy && !listed.contains(&a.mac) {
                let why = format!("no longer in the live policy (version {version})");
                self.store.release(&a.mac, Some(&why), actor, now)?;
            }
        }
        Ok(())
    }

    /// Reads the quarantines in force from the store.
    pub(super) fn refresh_quarantines(&mut self) -> Result<(), StoreError> {
        let active = self.store.active_quarantines()?;
        let old = std::mem::replace(
            &mut self.quarantines,
            Arc::new(active.into_iter().map(quarantine_entry).collect()),
        );
        self.garbage.push(Box::new(old));
        Ok(())
    }

    /// The quarantined MACs, as the snapshot's overlay holds them.
    pub(super) fn quarantined_macs(&self) -> Vec<MacAddr> {
        self.quarantines
            .iter()
            .filter_map(|q| parse_mac(&q.mac))
            .collect()
    }

    /// Publishes the live rule tables with the quarantines in force as the
    /// next generation: O(quarantined MACs), the rules are shared.
    pub(super) fn publish_overlay(&mut self) -> u64 {
        let generation = self.generation + 1;
        let snapshot = self
            .cell
            .load()
            .with_quarantine(self.quarantined_macs(), generation);
        self.install(snapshot)
    }

    /// The quarantines in force changed: out to the workers, in the overlay.
    pub(super) fn republish_quarantines(&mut self) -> Result<(), ControlError> {
        self.refresh_quarantines().map_err(store_err)?;
        self.publish_overlay();
        Ok(())
    }

    pub(super) fn quarantine(
        &mut self,
        mac: MacAddr,
        reason: Option<String>,
        actor: &str,
    ) -> Result<QuarantineOutcome, ControlError> {
        let canonical = mac.to_string();
        let changed = self
            .store
            .quarantine(&ActiveQuarantine {
                mac: canonical.clone(),
                reason,
                actor: actor.to_string(),
                at: Timestamp::now(),
                source: QuarantineSource::Command,
            })
            .map_err(store_err)?;
        if changed {
            self.republish_quarantines()?;
        }
        Ok(QuarantineOutcome {
            mac: canonical,
            already: !changed,
            unknown_workload: self.effective.workloads.by_mac(mac).is_none(),
            generation: self.generation,
        })
    }

    pub(super) fn release(
        &mut self,
        mac: MacAddr,
        reason: Option<String>,
        actor: &str,
    ) -> Result<ReleaseOutcome, ControlError> {
        let canonical = mac.to_string();
        let released = self
            .store
            .release(&canonical, reason.as_deref(), actor, Timestamp::now())
            .map_err(store_err)?;
        if released {
            self.republish_quarantines()?;
        }
        Ok(ReleaseOutcome {
            mac: canonical,
            released,
            generation: self.generation,
        })
    }
}
