//! Small decisions of the worker: a verdict's fate, re-deciding a flow.

use super::{Decision, DropReason};
use crate::event::{Event, EventSink, FlowRecord};
use crate::flow::{FlowEntry, Side};
use crate::policy::{Action, FlowQuery, PolicySnapshot, Verdict};

pub(super) fn decide(verdict: Verdict) -> Decision {
    match verdict.action {
        Action::Allow => Ok(()),
        Action::Deny => Err(DropReason::from_verdict(verdict.reason)),
    }
}

pub(super) fn opposite(side: Side) -> Side {
    match side {
        Side::Lo => Side::Hi,
        Side::Hi => Side::Lo,
    }
}

/// Re-decide a flow under a newer policy generation, in its original direction.
pub(super) fn reclassify(entry: &mut FlowEntry, snap: &PolicySnapshot, events: &mut EventSink) {
    let r = FlowRecord::from_entry(entry);
    let verdict = snap.classify(&FlowQuery {
        src_mac: r.src_mac,
        dst_mac: r.dst_mac,
        src_ip: r.src_ip,
        dst_ip: r.dst_ip,
        proto: r.proto,
        dst_port: r.dst_port,
    });
    let old = entry.verdict;
    entry.verdict = verdict;
    entry.generation = snap.generation();
    if verdict != old {
        events.emit(Event::Reclassified(FlowRecord::from_entry(entry)));
    }
    if verdict.would_deny && !old.would_deny {
        events.emit(Event::WouldDeny(FlowRecord::from_entry(entry)));
    }
}
