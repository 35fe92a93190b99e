//! Bad input never yields a 5xx: garbage, huge, wrongly typed and unicode
//! bodies, bad MACs and numbers, wrong content types and methods.

use crate::common::{error, Bed, WEB};
use reqwest::Method;

fn send(
    bed: &Bed,
    method: Method,
    path: &str,
    ct: Option<&str>,
    body: Vec<u8>,
) -> reqwest::blocking::Response {
    let mut r = bed.req(method, path, &bed.admin).body(body);
    if let Some(ct) = ct {
        r = r.header("content-type", ct);
    }
    r.send().expect("request")
}

#[test]
fn garbage_bodies_are_4xx_in_the_error_shape() {
    let bed = Bed::start();
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"42".to_vec(),
        b"\"text\"".to_vec(),
        b"{\"mac\": 5}".to_vec(),
        b"{\"mac\": \"\xff\xfe\"}".to_vec(),
        vec![0u8; 100],
        "{\"mac\": \"０２:００:００:００:０１:０１\"}"
            .as_bytes()
            .to_vec(),
        "{\"mac\": \"💥\", \"reason\": \"💥\"}".as_bytes().to_vec(),
        "{\"rules\": [{\"id\": -1}]}".as_bytes().to_vec(),
        "[".repeat(10_000).into_bytes(),
        b"{\"workloads\": {\"a\": 1}}".to_vec(),
        b"{\"version\": 18446744073709551616}".to_vec(),
        b"{\"version\": \"1\"}".to_vec(),
        b"{\"comment\": 1, \"extra\": true}".to_vec(),
        b"{\"name\": \"\\u0000\", \"role\": \"admin\"}".to_vec(),
    ];
    let targets = [
        (Method::POST, "/api/v1/quarantine"),
        (Method::PUT, "/api/v1/policy/draft"),
        (Method::POST, "/api/v1/policy/commit"),
        (Method::POST, "/api/v1/policy/rollback"),
        (Method::POST, "/api/v1/tokens"),
    ];
    for (method, path) in &targets {
        for body in &bodies {
            let resp = send(
                &bed,
                method.clone(),
                path,
                Some("application/json"),
                body.clone(),
            );
            let status = resp.status().as_u16();
            assert!(
                (400..500).contains(&status),
                "{method} {path} with {:?}: {status}",
                String::from_utf8_lossy(&body[..body.len().min(40)])
            );
            error(resp, status);
        }
    }
}

#[test]
fn wrong_content_types_are_415_and_huge_bodies_413() {
    let bed = Bed::start();
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("ü/ü"),
    ] {
        let resp = send(
            &bed,
            Method::POST,
            "/api/v1/quarantine",
            ct,
            format!("{{\"mac\":\"{WEB}\"}}").into_bytes(),
        );
        assert_eq!(error(resp, 415)["code"], "unsupported_media_type");
    }
    // Declared too large: refused before the body is read. The client may
    // still be sending when the answer comes and the connection closes.
    let huge = vec![b' '; 2 << 20];
    let sent = bed
        .req(Method::PUT, "/api/v1/policy/draft", &bed.admin)
        .header("content-type", "application/json")
        .body(huge)
        .send();
    match sent {
        Ok(resp) => assert_eq!(error(resp, 413)["code"], "payload_too_large"),
        Err(e) => assert!(e.is_body() || e.is_request(), "{e}"),
    }
    // Without a length up front (chunked), the limit holds all the same.
    let chunks = std::iter::repeat_n(vec![b' '; 64 * 1024], 40).map(Ok::<_, std::io::Error>);
    let body = reqwest::blocking::Body::new(ChunkReader(Box::new(chunks), Vec::new()));
    let sent = bed
        .req(Method::PUT, "/api/v1/policy/draft", &bed.admin)
        .header("content-type", "application/json")
        .body(body)
        .send();
    match sent {
        Ok(resp) => {
            error(resp, 413);
        }
        // The server answered 413 and closed while the client still sent.
        Err(e) => assert!(e.is_body() || e.is_request(), "{e}"),
    }
    crate::common::json(bed.get("/api/v1/workloads", &bed.viewer), 200);
}

struct ChunkReader(
    Box<dyn Iterator<Item = std::io::Result<Vec<u8>>> + Send>,
    Vec<u8>,
);

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.1.is_empty() {
            match self.0.next() {
                Some(chunk) => self.1 = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.1.len());
        buf[..n].copy_from_slice(&self.1[..n]);
        self.1.drain(..n);
        Ok(n)
    }
}

#[test]
fn bad_paths_methods_and_parameters_are_4xx() {
    let bed = Bed::start();
    let cases: Vec<(Method, String)> = vec![
        (Method::GET, "/api/v1/nope".into()),
        (Method::GET, "/api/v1/workloads/%ff%fe".into()),
        (Method::GET, "/api/v1/workloads/ünï".into()),
        (
            Method::GET,
            format!("/api/v1/workloads/{}", "a".repeat(5000)),
        ),
        (Method::GET, "/api/v1/policy/versions/-1".into()),
        (
            Method::GET,
            "/api/v1/policy/versions/99999999999999999999999".into(),
        ),
        (Method::GET, "/api/v1/audit?limit=abc".into()),
        (Method::GET, "/api/v1/audit?limit=-5".into()),
        (Method::GET, "/api/v1/tokens?revoked=maybe".into()),
        (Method::GET, "/api/v1/quarantine/history?mac=%00".into()),
        (Method::PATCH, "/api/v1/workloads".into()),
        (Method::DELETE, "/api/v1/workloads".into()),
        (Method::POST, "/api/v1/stats".into()),
        (Method::DELETE, "/api/v1/quarantine/".into()),
        (Method::DELETE, "/api/v1/tokens/%E2%9C%93".into()),
    ];
    for (method, path) in cases {
        let resp = bed
            .req(method.clone(), &path, &bed.admin)
            .send()
            .expect("request");
        let status = resp.status().as_u16();
        assert!((400..500).contains(&status), "{method} {path}: {status}");
        error(resp, status);
    }
}

#[test]
fn plain_http_on_the_tls_port_gets_nothing_and_the_server_lives_on() {
    use std::io::{Read, Write};
    let bed = Bed::start();
    let addr = bed.server.as_ref().expect("server").addr;
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    let _ = s.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("HTTP/1.1 200"));
    crate::common::json(bed.get("/api/v1/workloads", &bed.viewer), 200);
}

#[test]
fn tls_1_2_and_1_3_are_both_served() {
    let bed = Bed::start();
    let pem = std::fs::read(&bed.server.as_ref().expect("server").cert_path).expect("cert");
    for (min, max) in [
        (
            reqwest::tls::Version::TLS_1_2,
            reqwest::tls::Version::TLS_1_2,
        ),
        (
            reqwest::tls::Version::TLS_1_3,
            reqwest::tls::Version::TLS_1_3,
        ),
    ] {
        let client = reqwest::blocking::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
            .tls_built_in_root_certs(false)
            .min_tls_version(min)
            .max_tls_version(max)
            .build()
            .expect("client");
        let resp = client
            .get(bed.url("/api/v1/workloads"))
            .bearer_auth(&bed.viewer)
            .send()
            .expect("request");
        assert_eq!(resp.status().as_u16(), 200);
    }
}

/// The same limit without a socket in between, so the 413 is certain.
#[test]
fn the_body_limit_answers_413_in_the_error_shape() {
    use tower::ServiceExt;
    let bed = Bed::start();
    let engine = bed.engine.as_ref().expect("engine");
    let mut cfg =
        mgmt_api::ApiConfig::new("127.0.0.1:0".parse().expect("addr"), bed.store_path.clone());
    cfg.max_body = 1000;
    let state = mgmt_api::app_state(&cfg, engine.handle.clone(), bed.board.clone()).expect("state");
    let (app, _) = mgmt_api::build(state);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    for declared in [true, false] {
        let body = vec![b' '; 5000];
        let mut req = axum::http::Request::builder()
            .method("PUT")
            .uri("/api/v1/policy/draft")
            .header("authorization", format!("Bearer {}", bed.admin))
            .header("content-type", "application/json");
        if declared {
            req = req.header("content-length", "5000");
        }
        let req = req.body(axum::body::Body::from(body)).expect("request");
        let resp = rt.block_on(app.clone().oneshot(req)).expect("response");
        assert_eq!(resp.status().as_u16(), 413);
        let bytes = rt
            .block_on(axum::body::to_bytes(resp.into_body(), 10_000))
            .expect("body");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["code"], "payload_too_large");
    }
}

/// Percent-encodes everything but letters and digits.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn a_malformed_mac_is_a_400_naming_the_field_wherever_it_is() {
    let bed = Bed::start();
    let bad = [
        " 02:00:00:00:01:01",
        "02:00:00:00:01:01 ",
        "02:00:00:00:01:01\n",
        "+2:00:00:00:01:01",
        "02:00-00:00:01:01",
        "02:00:00:00:01",
        "02:00:00:00:01:01:00",
        "0g:00:00:00:01:01",
        "zz",
        "０２:００:００:００:０１:０１",
    ];
    for mac in bad {
        let e = encode(mac);
        for (method, path) in [
            (Method::GET, format!("/api/v1/workloads/{e}")),
            (Method::DELETE, format!("/api/v1/quarantine/{e}")),
            (Method::GET, format!("/api/v1/quarantine/history?mac={e}")),
        ] {
            let resp = bed
                .req(method.clone(), &path, &bed.admin)
                .send()
                .expect("request");
            let v = error(resp, 400);
            assert_eq!(v["code"], "bad_request", "{method} {mac:?}");
            assert_eq!(v["field"], "mac", "{method} {mac:?}");
        }
        let resp = bed.send_json(
            Method::POST,
            "/api/v1/quarantine",
            &bed.operator,
            &serde_json::json!({ "mac": mac }),
        );
        assert_eq!(error(resp, 400)["field"], "mac", "{mac:?}");
    }
    // Not UTF-8 once decoded: the same answer.
    for (method, path) in [
        (Method::GET, "/api/v1/workloads/%C0%AF"),
        (Method::DELETE, "/api/v1/quarantine/%FF%FE"),
    ] {
        let resp = bed
            .req(method.clone(), path, &bed.admin)
            .send()
            .expect("request");
        assert_eq!(error(resp, 400)["field"], "mac", "{method} {path}");
    }
    // Nothing was quarantined by any of them.
    let list = crate::common::json(bed.get("/api/v1/quarantine", &bed.viewer), 200);
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
    // Both separators, either case, are MACs.
    for mac in [
        "02:00:00:00:01:01",
        "02-00-00-00-01-01",
        "02:00:00:00:01:0A",
    ] {
        let status = bed
            .get(&format!("/api/v1/workloads/{}", encode(mac)), &bed.viewer)
            .status()
            .as_u16();
        assert!(status == 200 || status == 404, "{mac}: {status}");
    }
    crate::common::json(
        bed.get(&format!("/api/v1/workloads/{}", encode(WEB)), &bed.viewer),
        200,
    );
}

#[test]
fn numbers_in_paths_and_queries_are_digits_only() {
    let bed = Bed::start();
    for v in ["+1", " 1", "1 ", "0x1", "1.0"] {
        let resp = bed.get(
            &format!("/api/v1/policy/versions/{}", encode(v)),
            &bed.viewer,
        );
        assert_eq!(error(resp, 400)["field"], "version", "{v:?}");
    }
    crate::common::json(bed.get("/api/v1/policy/versions/1", &bed.viewer), 200);
    for limit in ["+1", "1.5", "", "-0"] {
        let resp = bed.get(
            &format!("/api/v1/audit?limit={}", encode(limit)),
            &bed.admin,
        );
        assert_eq!(error(resp, 400)["field"], "limit", "{limit:?}");
    }
    // Any count of entries may be asked for; at most 1000 come.
    for limit in ["0", "5", "1000", "99999999999999999999999999"] {
        crate::common::json(
            bed.get(&format!("/api/v1/audit?limit={limit}"), &bed.admin),
            200,
        );
    }
}
