//! A real HTTPS webhook receiver for tests (feature `test-support`): a TLS
//! server on 127.0.0.1 with a fresh self-signed certificate, HTTP/1.1 read
//! by hand, every request kept; it answers as a script says (a status, no
//! answer at all, bytes that are not HTTP), then 200.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// Reads the request and never answers (until the receiver is dropped).
    Hang,
    /// Answers bytes that are not HTTP.
    Garbage,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Receiver {
    /// `https://127.0.0.1:PORT/alerts`.
    pub url: String,
    /// Its certificate, to trust (`Webhook::ca`).
    pub ca: PathBuf,
    got: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    ip: std::net::IpAddr,
    port: u16,
}

impl Receiver {
    /// Listens on `addr` (`127.0.0.1:0`: a free port); the certificate
    /// (for 127.0.0.1 and localhost) is written into `dir` as
    /// `webhook-PORT.pem`.
    pub fn start(dir: &Path, addr: SocketAddr, script: Vec<Answer>) -> io::Result<Receiver> {
        let key = rcgen::KeyPair::generate().map_err(io::Error::other)?;
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .map_err(io::Error::other)?;
        let cert = params.self_signed(&key).map_err(io::Error::other)?;
        let provider = crate::tls::provider();
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .map_err(io::Error::other)?;
        let tls = Arc::new(tls);
        let listener = TcpListener::bind(addr)?;
        let port = listener.local_addr()?.port();
        std::fs::create_dir_all(dir)?;
        let ca = dir.join(format!("webhook-{port}.pem"));
        std::fs::write(&ca, cert.pem())?;
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(script);
        let (g, s) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(tcp) = tcp else { continue };
                let (tls, g, s, next, script) = (
                    tls.clone(),
                    g.clone(),
                    s.clone(),
                    next.clone(),
                    script.clone(),
                );
                std::thread::spawn(move || {
                    let _ = serve(tcp, tls, &g, &s, &next, &script);
                });
            }
        });
        Ok(Receiver {
            url: format!("https://{}:{port}/alerts", addr.ip()),
            ca,
            got,
            stop,
            ip: addr.ip(),
            port,
        })
    }

    pub fn requests(&self) -> Vec<Request> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// The requests once there are `n`, or all there are after `within`.
    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<Request> {
        let until = Instant::now() + within;
        loop {
            let got = self.requests();
            if got.len() >= n || Instant::now() >= until {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop.
        let _ = TcpStream::connect((self.ip, self.port));
        let _ = std::fs::remove_file(&self.ca);
    }
}

fn serve(
    tcp: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    got: &Mutex<Vec<Request>>,
    stop: &AtomicBool,
    next: &AtomicUsize,
    script: &[Answer],
) -> io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn = rustls::ServerConnection::new(tls).map_err(io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    loop {
        let Some(req) = read_request(&mut s)? else {
            return Ok(());
        };
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if let Ok(mut g) = got.lock() {
            g.push(req);
        }
        let answer = script
            .get(next.fetch_add(1, Ordering::Relaxed))
            .copied()
            .unwrap_or(Answer::Status(200));
        match answer {
            Answer::Status(code) => {
                write!(s, "HTTP/1.1 {code} Answer\r\nContent-Length: 0\r\n\r\n")?;
                s.flush()?;
            }
            Answer::Hang => {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                return Ok(());
            }
            Answer::Garbage => {
                s.write_all(b"\x16\x03garbage, not HTTP\r\n\r\n")?;
                s.flush()?;
                return Ok(());
            }
        }
        if close {
            return Ok(());
        }
    }
}

/// One HTTP/1.1 request (headers, then `Content-Length` bytes); `None` when
/// the client closed the connection.
fn read_request(s: &mut impl Read) -> io::Result<Option<Request>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return Err(io::Error::other("headers too long"));
        }
        let n = match s.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(Request {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    }))
}
