//! A real appliance minus the ports: the control thread on a store in a
//! temporary directory, a stats board, the server on 127.0.0.1:0 with its
//! generated certificate, and a token per role. Clients trust exactly that
//! certificate.

use control::engine::{Bootstrap, Engine, EngineConfig};
use control::records::{Identity, RecordKind, RecordsConfig, RecordsWriter, StoredFlow};
use control::store::Store;
use control::Model;
use dataplane::event::{EndReason, FlowRecord};
use dataplane::flow::FlowState;
use dataplane::policy::{SnapshotCell, Verdict};
use dataplane::worker::{StatsBoard, StatsReport};
use mgmt_api::limit::Limits;
use mgmt_api::{ApiConfig, Role, ServerHandle};
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const WEB: &str = "02:00:00:00:01:01";
pub const DB: &str = "02:00:00:00:02:01";

/// The sample policy the example server and the API tests share.
pub const POLICY: &str = include_str!("../../examples/policy.yaml");

pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Bed {
    pub server: Option<ServerHandle>,
    pub engine: Option<Engine>,
    pub board: Arc<StatsBoard>,
    pub client: Client,
    pub base: String,
    pub viewer: String,
    pub operator: String,
    pub admin: String,
    pub store_path: PathBuf,
    pub _dir: TempDir,
}

static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

pub fn temp_dir(tag: &str) -> TempDir {
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("bulkhead-api-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    TempDir(dir)
}

pub fn client_for(cert: &std::path::Path) -> Client {
    let pem = std::fs::read(cert).expect("cert");
    Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

impl Bed {
    pub fn start() -> Bed {
        Bed::with(|_| {})
    }

    pub fn with(adjust: impl FnOnce(&mut ApiConfig)) -> Bed {
        let dir = temp_dir("bed");
        let store_path = dir.0.join("bulkhead.db");
        let mut store = Store::open(&store_path).expect("store");
        let token = |store: &mut Store, name: &str, role: Role| {
            mgmt_api::token::create(store, name, role, "test").expect("token")
        };
        let viewer = token(&mut store, "vera", Role::Viewer);
        let operator = token(&mut store, "otto", Role::Operator);
        let admin = token(&mut store, "ada", Role::Admin);
        let model = Model::from_yaml_str(POLICY).expect("policy");
        let engine = Engine::start(
            store,
            Bootstrap {
                model,
                source: "test policy".into(),
            },
            Arc::new(SnapshotCell::default()),
            None,
            None,
            EngineConfig::default(),
        )
        .expect("engine");
        let board = Arc::new(StatsBoard::new(1));
        let mut cfg = ApiConfig::new("127.0.0.1:0".parse().expect("addr"), store_path.clone());
        cfg.limits = Limits::default();
        cfg.max_body = 1 << 20;
        adjust(&mut cfg);
        let server =
            mgmt_api::start(cfg, engine.handle.clone(), board.clone()).expect("server starts");
        let client = client_for(&server.cert_path);
        let base = format!("https://localhost:{}", server.addr.port());
        Bed {
            server: Some(server),
            engine: Some(engine),
            board,
            client,
            base,
            viewer,
            operator,
            admin,
            store_path,
            _dir: dir,
        }
    }

    /// A worker's report, as `run` publishes it.
    pub fn publish_stats(&self, report: StatsReport) {
        self.board.publish(0, report);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .expect("request")
    }

    pub fn req(&self, method: reqwest::Method, path: &str, token: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    pub fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: &Value,
    ) -> Response {
        self.req(method, path, token)
            .json(body)
            .send()
            .expect("request")
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
        if let Some(e) = self.engine.take() {
            e.handle.stop();
            let _ = e.thread.join();
        }
    }
}

/// The JSON body, with the status checked.
pub fn json(resp: Response, status: u16) -> Value {
    let got = resp.status().as_u16();
    let text = resp.text().expect("body");
    assert_eq!(got, status, "status {got}, body {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// An error body: the one shape, with the status checked.
pub fn error(resp: Response, status: u16) -> Value {
    let v = json(resp, status);
    let obj = v.as_object().expect("object");
    assert!(obj.get("code").is_some_and(Value::is_string), "{v}");
    assert!(obj.get("message").is_some_and(Value::is_string), "{v}");
    assert!(obj.contains_key("field"), "{v}");
    assert_eq!(obj.len(), 3, "only code, message and field: {v}");
    v
}

/// An end of a recorded flow: who, at which address.
pub type End = (Identity, &'static str);

/// One ended flow from `src` to `dst` on `(proto, port)`, recorded with
/// `verdict`, from source port `40000 + n`, last seen at `last_ms` (a
/// closed TCP exchange's packets and bytes).
pub fn ended_flow(
    src: &End,
    dst: &End,
    (proto, port): (u8, u16),
    verdict: Verdict,
    n: u16,
    last_ms: i64,
) -> StoredFlow {
    StoredFlow {
        flow: FlowRecord {
            src_mac: src.0.mac,
            dst_mac: dst.0.mac,
            src_ip: src.1.parse().unwrap(),
            dst_ip: dst.1.parse().unwrap(),
            proto,
            src_port: 40000 + n,
            dst_port: port,
            vlan: [0, 0],
            verdict,
            generation: 1,
            state: FlowState::Closed,
            first_seen: 0,
            last_seen: 0,
            packets: [3, 2],
            bytes: [180, 120],
            tcp_flags: 0,
            orig_port: dataplane::io::Port::A,
        },
        first_ms: last_ms - 500,
        last_ms,
        src: src.0.clone().into(),
        dst: dst.0.clone().into(),
        kind: RecordKind::Ended(EndReason::Idle),
        opens: true,
        intel: None,
    }
}

/// Writes `batch` into the records store at `path` (created if absent)
/// with the records writer, and waits until every flow is written.
pub fn write_records(path: &std::path::Path, batch: Vec<StoredFlow>) {
    let n = batch.len() as u64;
    let w = RecordsWriter::start(path, RecordsConfig::default()).unwrap();
    let c = w.counters();
    assert!(w.submit(batch));
    let until = Instant::now() + Duration::from_secs(10);
    while c.written.load(std::sync::atomic::Ordering::Relaxed) < n {
        assert!(Instant::now() < until, "records written");
        std::thread::sleep(Duration::from_millis(10));
    }
    w.finish();
}

/// A sample's value in the metrics text: `name` is the metric with its
/// labels as printed (`bulkhead_x_total{kind="scan"}`).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in the metrics:\n{text}"))
}
