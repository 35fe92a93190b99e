//! A real management API without ports, for conformance runs
//! (`mgmt-api/tests/schemathesis.sh`): the control thread on a store in DIR,
//! one worker's stats published every second, the server on 127.0.0.1 with
//! its generated certificate, and an admin token.
//!
//! ```text
//! cargo run -p bulkhead-mgmt-api --example api-server -- DIR [--port N] [--auth-failures N]
//! ```
//!
//! `--auth-failures N`: failed attempts an address may make per minute before
//! its further failures get 429 (default: the appliance's, 10). schemathesis's
//! `ignored_auth` check sends hundreds of invalid tokens and takes only 401
//! or 403 for an answer, so the conformance run raises it; the 429 past the
//! budget is in the document and tested over HTTPS in `tests/api/auth.rs`.
//!
//! Writes `DIR/admin.token` and `DIR/api.url` once it listens (the
//! certificate is `DIR/api-cert.pem`), then serves until killed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use control::engine::{Bootstrap, Engine, EngineConfig};
use control::store::Store;
use control::Model;
use dataplane::policy::SnapshotCell;
use dataplane::worker::{StatsBoard, StatsReport};
use mgmt_api::limit::Limits;
use mgmt_api::{ApiConfig, Role};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The sample policy the example server and the API tests share.
const POLICY: &str = include_str!("policy.yaml");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: api-server DIR [--port N] [--auth-failures N]";
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or(usage)?);
    let mut port: u16 = 0;
    let mut limits = Limits::default();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(usage)?;
        match flag.as_str() {
            "--port" => port = value.parse()?,
            "--auth-failures" => limits.max_failures = value.parse()?,
            _ => return Err(usage.into()),
        }
    }
    std::fs::create_dir_all(&dir)?;
    let store_path = dir.join("bulkhead.db");
    let mut store = Store::open(&store_path)?;
    let admin = mgmt_api::token::create(&mut store, "conformance", Role::Admin, "api-server")?;
    let engine = Engine::start(
        store,
        Bootstrap {
            model: Model::from_yaml_str(POLICY)?,
            source: "api-server example policy".into(),
        },
        Arc::new(SnapshotCell::default()),
        None,
        None,
        EngineConfig::default(),
    )?;
    // The feed watcher, with no feed file: the API-managed feeds work.
    let loader = control::intel::feeds::Loader::new(Vec::new(), &dir, Vec::new())?;
    let _intel = control::engine::IntelWatch::start(
        loader,
        engine.handle.clone(),
        Duration::from_secs(3600),
        None,
    )?;
    let board = Arc::new(StatsBoard::new(1));
    // A records store with a little of everything (flows, DNS responses,
    // addresses), so that the queries answer from real rows.
    let records = dir.join("records.db");
    seed_records(&records)?;
    let mut cfg = ApiConfig::new(([127, 0, 0, 1], port).into(), store_path);
    cfg.records = Some(records);
    cfg.limits = limits;
    let server = mgmt_api::start(cfg, engine.handle.clone(), board.clone())?;
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    std::fs::write(dir.join("admin.token"), &admin)?;
    std::fs::write(dir.join("api.url"), &url)?;
    println!(
        "api-server: {url} (certificate {})",
        server.cert_path.display()
    );
    loop {
        board.publish(0, StatsReport::default());
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Flows among three workloads and the internet, DNS responses with a CNAME
/// chain and an NXDOMAIN, an ARP observation, over the last hour.
fn seed_records(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    use control::dns::{Answer, AnswerData, DnsResponse};
    use control::records::{
        AddressSeen, AddressSource, Batch, Identity, RecordKind, RecordsWriter, StoredDns,
        StoredFlow,
    };
    use dataplane::event::{EndReason, FlowRecord};
    use dataplane::flow::FlowState;
    use dataplane::policy::{Action, Mode, Reason, Verdict};
    use dataplane::wire::MacAddr;

    let now = i64::try_from(control::time::Timestamp::now().0 / 1_000_000)?;
    let who = |last: u8, name: &str| {
        Arc::new(Identity {
            mac: MacAddr([2, 0, 0, 0, 1, last]),
            name: name.into(),
            labels: [("app".to_string(), name.to_string())].into(),
            groups: vec![name.into()],
        })
    };
    let ends = [who(1, "web"), who(2, "db"), who(3, "jump")];
    let mut batch = Batch::default();
    for i in 0..60u16 {
        let (src, dst) = (&ends[usize::from(i % 3)], &ends[usize::from((i + 1) % 3)]);
        let external = i % 5 == 0;
        let allowed = i % 4 != 0;
        batch.flows.push(StoredFlow {
            flow: FlowRecord {
                src_mac: src.mac,
                dst_mac: dst.mac,
                src_ip: format!("10.0.0.{}", 10 + i % 3).parse()?,
                dst_ip: if external {
                    "203.0.113.66".parse()?
                } else {
                    format!("10.0.0.{}", 10 + (i + 1) % 3).parse()?
                },
                proto: 6,
                src_port: 40000 + i,
                dst_port: [443, 5432, 22, 445][usize::from(i % 4)],
                vlan: [0, 0],
                verdict: Verdict {
                    action: if allowed { Action::Allow } else { Action::Deny },
                    reason: if allowed {
                        Reason::Rule(10)
                    } else {
                        Reason::Default
                    },
                    mode: Mode::Enforce,
                    would_deny: false,
                },
                generation: 1,
                state: FlowState::Closed,
                first_seen: 0,
                last_seen: 0,
                packets: [3, 2],
                bytes: [300, 200],
                tcp_flags: 0,
                orig_port: dataplane::io::Port::A,
            },
            opens: true,
            first_ms: now - 3_600_000 + i64::from(i) * 60_000,
            last_ms: now - 3_600_000 + i64::from(i) * 60_000 + 500,
            src: src.clone(),
            dst: dst.clone(),
            kind: RecordKind::Ended(EndReason::Idle),
            intel: None,
        });
    }
    for (i, (qname, rcode)) in [
        ("c2.evil.test", 0u16),
        ("x9q.evil.test", 3),
        ("db.internal", 0),
    ]
    .into_iter()
    .enumerate()
    {
        let client = &ends[i % 3];
        let answers = if rcode != 0 {
            vec![]
        } else {
            vec![
                Answer {
                    name: qname.into(),
                    ttl: 60,
                    data: AnswerData::Cname("edge.cdn.test".into()),
                },
                Answer {
                    name: "edge.cdn.test".into(),
                    ttl: 30,
                    data: AnswerData::Addr("203.0.113.66".parse()?),
                },
            ]
        };
        batch.dns.push(StoredDns {
            response: DnsResponse {
                time: 0,
                client_mac: client.mac,
                client_ip: format!("10.0.0.{}", 10 + i).parse()?,
                server_ip: "10.0.0.53".parse()?,
                vlan: [0, 0],
                qname: qname.into(),
                qtype: 1,
                rcode,
                answers,
            },
            time_ms: now - 3_000_000 + i64::try_from(i)? * 1000,
            client: client.clone(),
        });
    }
    batch.addresses.push(AddressSeen {
        mac: ends[0].mac,
        ip: "10.0.0.10".parse()?,
        time_ms: now - 3_500_000,
        source: AddressSource::Arp,
    });
    let writer = RecordsWriter::start(path, Default::default())?;
    let counters = writer.counters();
    if writer.try_submit_batch(batch).is_err() {
        return Err("the records writer took no batch".into());
    }
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while counters
        .dns_written
        .load(std::sync::atomic::Ordering::Relaxed)
        < 3
        && std::time::Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    writer.finish();
    Ok(())
}
