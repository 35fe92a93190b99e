//! Flow records on the control thread: every flow end is counted by verdict
//! and reason, and goes to the recorder with the identities the effective
//! model and the published snapshot give.

use super::State;
use crate::records::Recorder;
use dataplane::event::Event;
use dataplane::policy::{Action, Reason};
use std::sync::atomic::Ordering;

impl State {
    pub(in crate::engine) fn set_recorder(&mut self, mut recorder: Option<Recorder>) {
        if self.detect.wants_dns() {
            // DNS detection reads the answers, with or without records.
            recorder
                .get_or_insert_with(|| {
                    Recorder::dns_only(crate::records::Clock::Since(self.cfg.worker_epoch))
                })
                .decode_dns();
        }
        if let Some(r) = recorder.as_mut() {
            r.set_intel(self.intel.clone(), self.shared.intel.load().generation);
        }
        self.recorder = recorder;
    }

    pub(in crate::engine) fn set_deliverer(
        &mut self,
        deliverer: Option<crate::alerts::deliver::Deliverer>,
    ) {
        self.deliverer = deliverer;
    }

    /// Counts a flow end by verdict and reason, and records it.
    pub(super) fn record(&mut self, e: &Event) {
        if let Event::FlowEnd(f, _) = e {
            let v = match (f.verdict.action, f.verdict.would_deny) {
                (Action::Deny, _) => 1,
                (Action::Allow, true) => 2,
                (Action::Allow, false) => 0,
            };
            let r = match f.verdict.reason {
                Reason::Rule(_) => 0,
                Reason::Default => 1,
                Reason::Quarantine => 2,
                Reason::Blocklist => 3,
                Reason::Management => 4,
                Reason::Intel(_) => 5,
            };
            if let Some(c) = self.shared.flows_ended.get(v).and_then(|row| row.get(r)) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        let Some(r) = self.recorder.as_mut() else {
            return;
        };
        let snapshot = self.cell.load();
        let dns = r.record(e, &self.effective, &snapshot);
        if !dns.is_empty() && (!self.intel.is_empty() || self.detect.wants_dns()) {
            let dns = dns.to_vec();
            if !self.intel.is_empty() {
                self.intel_dns(&dns);
            }
            self.detect_dns(&dns);
        }
    }

    /// Hands a waiting batch of records to the writer.
    pub(super) fn tick_records(&mut self) {
        if let Some(r) = self.recorder.as_mut() {
            r.tick();
        }
    }
}
