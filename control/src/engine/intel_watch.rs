//! The feed watcher: a thread of its own (at nice 10, like the records
//! writer) that reads the threat-intel feeds and hands each new reading to
//! the control thread. Reading a million-line feed takes about a second:
//! never on the control thread, which must answer a quarantine meanwhile.

use super::handle::{ControlError, ControlHandle};
use crate::intel::feeds::Loader;
use crossbeam_channel::RecvTimeoutError;
use std::thread::JoinHandle;
use std::time::Duration;

/// The running watcher. It stops when the control thread does.
pub struct IntelWatch {
    pub thread: JoinHandle<()>,
}

impl IntelWatch {
    /// Reads the feeds once and puts them in force before it returns (the
    /// first packets already meet them), then watches them: every `every`,
    /// a feed file that changed makes a new reading, and so does
    /// [`ControlHandle::reload_intel`].
    pub fn start(
        mut loader: Loader,
        control: ControlHandle,
        every: Duration,
    ) -> Result<IntelWatch, ControlError> {
        control.set_intel(loader.load())?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        // A second watcher would find the trigger taken: it still polls.
        let _ = control.shared.intel_reload.set(tx);
        let thread = std::thread::Builder::new()
            .name("bulkhead-intel".into())
            .spawn(move || {
                crate::records::below_the_packet_path();
                loop {
                    let always = match rx.recv_timeout(every) {
                        Ok(()) => true,
                        Err(RecvTimeoutError::Timeout) => false,
                        Err(RecvTimeoutError::Disconnected) => return,
                    };
                    if !control
                        .shared
                        .running
                        .load(std::sync::atomic::Ordering::Acquire)
                    {
                        return;
                    }
                    if let Some(loaded) = loader.poll(always) {
                        if let Err(ControlError::Stopped(_)) = control.set_intel(loaded) {
                            return;
                        }
                    }
                }
            })
            .map_err(|e| ControlError::Internal(format!("cannot start the feed watcher: {e}")))?;
        Ok(IntelWatch { thread })
    }
}
