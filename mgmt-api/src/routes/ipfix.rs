//! The IPFIX exporter's part of `/api/v1/stats` and `/metrics`.

use control::engine::IpfixStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What the IPFIX exporter did since the start.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct IpfixView {
    /// Records encoded for the collectors.
    pub exported: u64,
    /// Records dropped because the exporter was a queue behind.
    pub dropped: u64,
    pub collectors: Vec<CollectorView>,
}

/// What one collector got.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CollectorView {
    /// `udp://host:port` or `tcp://host:port`.
    pub collector: String,
    pub messages: u64,
    pub records: u64,
    pub bytes: u64,
    /// Records it did not get: it was down, refused them, or was slow.
    pub lost: u64,
    /// Failed sends and connects.
    pub errors: u64,
    /// TCP connections made.
    pub connects: u64,
    /// The last send (or connect) worked.
    pub up: bool,
}

pub(crate) fn view(x: IpfixStatus) -> IpfixView {
    IpfixView {
        exported: x.exported,
        dropped: x.dropped,
        collectors: x
            .collectors
            .into_iter()
            .map(|c| CollectorView {
                collector: c.collector,
                messages: c.messages,
                records: c.records,
                bytes: c.bytes,
                lost: c.lost,
                errors: c.errors,
                connects: c.connects,
                up: c.up,
            })
            .collect(),
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CollectorLabel {
    collector: String,
}

/// `bulkhead_ipfix_*` metrics.
pub(crate) fn register(reg: &mut Registry, x: &IpfixStatus) {
    let exported = Counter::<u64>::default();
    exported.inc_by(x.exported);
    reg.register(
        "ipfix_records_exported",
        "Flow records encoded for the IPFIX collectors",
        exported,
    );
    let dropped = Counter::<u64>::default();
    dropped.inc_by(x.dropped);
    reg.register(
        "ipfix_records_dropped",
        "Flow records not exported: the exporter was a queue behind",
        dropped,
    );
    let per = |name: &'static str,
               help: &'static str,
               f: fn(&control::engine::CollectorStatus) -> u64,
               reg: &mut Registry| {
        let fam = Family::<CollectorLabel, Counter>::default();
        for c in &x.collectors {
            fam.get_or_create(&CollectorLabel {
                collector: c.collector.clone(),
            })
            .inc_by(f(c));
        }
        reg.register(name, help, fam);
    };
    per(
        "ipfix_messages_sent",
        "IPFIX messages sent, by collector",
        |c| c.messages,
        reg,
    );
    per(
        "ipfix_records_sent",
        "Flow records sent, by collector",
        |c| c.records,
        reg,
    );
    per(
        "ipfix_bytes_sent",
        "Bytes of IPFIX messages sent, by collector",
        |c| c.bytes,
        reg,
    );
    per(
        "ipfix_records_lost",
        "Flow records a collector did not get (down, refused, slow), by collector",
        |c| c.lost,
        reg,
    );
    per(
        "ipfix_send_errors",
        "Failed sends and connects, by collector",
        |c| c.errors,
        reg,
    );
    let up = Family::<CollectorLabel, Gauge>::default();
    for c in &x.collectors {
        up.get_or_create(&CollectorLabel {
            collector: c.collector.clone(),
        })
        .set(i64::from(c.up));
    }
    reg.register(
        "ipfix_collector_up",
        "1 when the last send to the collector (or connect) worked",
        up,
    );
}
