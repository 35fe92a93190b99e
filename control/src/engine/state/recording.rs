//! Flow records on the control thread: every flow end goes to the recorder
//! with the identities the effective model and the published snapshot give.

use super::State;
use crate::records::Recorder;
use dataplane::event::Event;

impl State {
    pub(in crate::engine) fn set_recorder(&mut self, recorder: Option<Recorder>) {
        self.recorder = recorder;
    }

    /// Records a flow end (other events are not records).
    pub(super) fn record(&mut self, e: &Event) {
        if let Some(r) = self.recorder.as_mut() {
            r.record(e, &self.effective, &self.cell.load());
        }
    }

    /// Hands a waiting batch of records to the writer.
    pub(super) fn tick_records(&mut self) {
        if let Some(r) = self.recorder.as_mut() {
            r.tick();
        }
    }
}
