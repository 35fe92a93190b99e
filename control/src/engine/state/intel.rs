//! Threat intel on the control thread: what a feed reading puts in force.

use super::super::IntelView;
use super::State;
use crate::intel::feeds::Loaded;
use std::sync::Arc;

impl State {
    /// Puts `loaded` in force: its block feeds' addresses are published
    /// in the overlay as the next generation (the rule tables are shared),
    /// so flows decided before, offloaded ones too, are decided again.
    pub(super) fn set_intel(&mut self, loaded: Loaded) -> u64 {
        let Loaded {
            intel,
            feeds,
            took_ms,
        } = loaded;
        let old = std::mem::replace(&mut self.intel, intel);
        self.garbage.push(Box::new(old));
        let generation = self.generation + 1;
        let snapshot =
            self.cell
                .load()
                .with_intel(self.intel.block_set(), self.resolved.clone(), generation);
        let generation = self.install(snapshot);
        let old = self.shared.intel.swap(Arc::new(IntelView {
            intel: self.intel.clone(),
            feeds,
            generation,
            published_ms: crate::time::Timestamp::now().millis(),
            took_ms,
        }));
        self.garbage.push(Box::new(old));
        generation
    }
}
