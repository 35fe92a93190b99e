//! The live appliance in namespaces, shared by the tests that run it as a
//! user does: host-a (ns a, 10.99.0.1, MAC_A) <-> dut-a [`bulkhead run` in ns
//! dut] dut-b <-> host-b (ns b, 10.99.0.2, MAC_B), the API on 127.0.0.1:18443
//! in the appliance's namespace, driven with `bulkhead ctl`.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const EXE: &str = env!("CARGO_BIN_EXE_bulkhead");
pub const MAC_A: &str = "02:5e:00:00:00:0a";
pub const MAC_B: &str = "02:5e:00:00:00:0b";

/// Enforce: host-a (`client`, group web) may open TCP 9000 on host-b
/// (`server`, group db), rule 10; everything else is denied.
pub fn web_db_policy() -> String {
    format!(
        r#"
default_mode: enforce
workloads:
  - {{ mac: "{MAC_A}", name: client, labels: {{ app: web }}, ips: [10.99.0.1] }}
  - {{ mac: "{MAC_B}", name: server, labels: {{ app: db }}, ips: [10.99.0.2] }}
groups:
  - {{ name: web, match: {{ app: web }} }}
  - {{ name: db, match: {{ app: db }} }}
rules:
  - {{ id: 10, src: [web], dst: [db], services: [{{ proto: tcp, ports: [9000] }}], action: allow }}
"#
    )
}

pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// host-a (ns a, 10.99.0.1) <-> dut-a [appliance, ns dut] dut-b <-> host-b
/// (ns b, 10.99.0.2).
pub struct Bed {
    pub ns: [String; 3],
    pub dir: PathBuf,
    appliance: Option<Child>,
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.stop();
        for ns in &self.ns {
            let _ = Command::new("ip").args(["netns", "delete", ns]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Bed {
    /// The topology in namespaces `bh-<name>-{a,b,dut}-<pid>`, the appliance's
    /// files for `policy` with `control` added to its `[control]` section.
    pub fn new(name: &str, policy: &str, control: &str) -> Bed {
        let tag = std::process::id();
        let ns = [
            format!("bh-{name}-a-{tag}"),
            format!("bh-{name}-b-{tag}"),
            format!("bh-{name}-dut-{tag}"),
        ];
        let dir = std::env::temp_dir().join(format!("bulkhead-live-{name}-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let bed = Bed {
            ns,
            dir,
            appliance: None,
        };
        let [a, b, dut] = &bed.ns;
        for n in &bed.ns {
            sh(&["ip", "netns", "add", n]);
            sh(&["ip", "-n", n, "link", "set", "lo", "up"]);
        }
        for (host, port, n, mac, ip) in [
            ("host-a", "dut-a", a, MAC_A, "10.99.0.1/24"),
            ("host-b", "dut-b", b, MAC_B, "10.99.0.2/24"),
        ] {
            sh(&[
                "ip", "link", "add", host, "netns", n, "type", "veth", "peer", "name", port,
                "netns", dut,
            ]);
            sh(&["ip", "-n", n, "link", "set", host, "address", mac]);
            sh(&["ip", "-n", n, "addr", "add", ip, "dev", host]);
            sh(&["ip", "-n", n, "link", "set", host, "up"]);
            sh(&["ip", "-n", dut, "link", "set", port, "up"]);
            // AF_XDP forwards the bytes as they are: real checksums, and NAPI
            // on the hosts' ends.
            sh(&[
                "ip", "netns", "exec", n, "ethtool", "-K", host, "tx", "off", "gro", "on",
            ]);
        }
        bed.write_files(policy, control);
        bed
    }

    fn write_files(&self, policy: &str, control: &str) {
        std::fs::write(self.dir.join("policy.yaml"), policy).expect("policy");
        let config = format!(
            "[ports]\na = \"dut-a\"\nb = \"dut-b\"\n\n[policy]\nfile = \"{}\"\n\n\
             [control]\nstore = \"{}\"\n{control}\n\n\
             [api]\nlisten = \"127.0.0.1:18443\"\n",
            self.dir.join("policy.yaml").display(),
            self.store().display(),
        );
        std::fs::write(self.dir.join("bulkhead.toml"), config).expect("config");
    }

    pub fn store(&self) -> PathBuf {
        self.dir.join("bulkhead.db")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("appliance.log")).unwrap_or_default()
    }

    /// Start `bulkhead run` in the appliance's namespace and wait until it
    /// forwards and serves its API.
    pub fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("appliance.log")).expect("log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns[2]))
            .args([EXE, "run", "--config"])
            .arg(self.dir.join("bulkhead.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the appliance");
        self.appliance = Some(child);
        let started = Instant::now();
        let (url, fingerprint) = loop {
            let log = self.log();
            let forwarding = log.lines().any(|l| l.starts_with("forwarding "));
            let api = log.lines().find(|l| l.starts_with("api: https://"));
            if let Some(line) = api.filter(|_| forwarding) {
                let url = line["api: ".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("");
                let fp = line
                    .rsplit("SHA-256 fingerprint ")
                    .next()
                    .unwrap_or("")
                    .trim();
                break (url.to_string(), fp.to_string());
            }
            if let Some(Ok(Some(status))) = self.appliance.as_mut().map(|c| c.try_wait()) {
                panic!("the appliance exited ({status}):\n{log}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no API after 30 s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let token = sh(&[
            EXE,
            "token",
            "create",
            "--role",
            "admin",
            "--name",
            &format!("t-{}", started.elapsed().as_nanos()),
            "--store",
            self.store().to_str().expect("utf-8 path"),
        ]);
        std::fs::write(
            self.dir.join("ctl.toml"),
            format!(
                "url = \"{url}\"\ntoken = \"{}\"\nfingerprint = \"{fingerprint}\"\n",
                token.trim()
            ),
        )
        .expect("ctl config");
    }

    /// Send `sig` (`HUP`, `TERM` ...) to the appliance.
    pub fn signal(&self, sig: &str) {
        if let Some(child) = &self.appliance {
            sh(&["kill", &format!("-{sig}"), &child.id().to_string()]);
        }
    }

    /// Stop the appliance (SIGTERM, as systemd does).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.appliance.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .output();
            let _ = child.wait();
        }
    }

    /// `bulkhead ctl --json ARGS` in the appliance's namespace.
    pub fn ctl(&self, args: &[&str]) -> serde_json::Value {
        let ns = format!("--net=/run/netns/{}", self.ns[2]);
        let config = self.dir.join("ctl.toml");
        let mut cmd = vec!["nsenter", &ns, EXE, "ctl", "--json", "--ctl-config"];
        cmd.push(config.to_str().expect("utf-8 path"));
        cmd.extend_from_slice(args);
        serde_json::from_str(&sh(&cmd)).expect("ctl answers JSON")
    }

    /// `bulkhead ctl metrics` in the appliance's namespace: the text.
    pub fn metrics(&self) -> String {
        let ns = format!("--net=/run/netns/{}", self.ns[2]);
        let config = self.dir.join("ctl.toml");
        let config = config.to_str().expect("utf-8 path");
        sh(&[
            "nsenter",
            &ns,
            EXE,
            "ctl",
            "--ctl-config",
            config,
            "metrics",
        ])
    }

    pub fn observed(&self) -> Vec<String> {
        let all = self.ctl(&["workloads"]);
        all.as_array()
            .expect("a list")
            .iter()
            .filter(|w| w["origin"] == "observed")
            .filter_map(|w| w["mac"].as_str().map(str::to_string))
            .collect()
    }
}

/// Run `f` on a thread inside namespace `ns`.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    on_ns_thread(ns, f).join().expect("thread")
}

/// A thread inside namespace `ns` running `f` (not joined: a server).
pub fn on_ns_thread<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("namespace file");
        // SAFETY: setns on an open namespace file moves only this thread,
        // which was spawned for this closure.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}");
        f()
    })
}

/// A server in namespace `ns`: `bind` runs there and its answer goes to
/// `serve` on the same thread; returns once `bind` has returned.
pub fn server<S: Send + 'static>(
    ns: &str,
    bind: impl FnOnce() -> S + Send + 'static,
    serve: impl FnOnce(S) + Send + 'static,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    on_ns_thread(ns, move || {
        let bound = bind();
        tx.send(()).expect("ready");
        serve(bound);
    });
    rx.recv().expect("the server is up");
}

/// Whether host-a reaches host-b:9000 within `within` (new connections, a
/// fresh source port each).
pub fn connects(a: &str, within: Duration) -> bool {
    in_ns(a, move || {
        let until = Instant::now() + within;
        while Instant::now() < until {
            let addr = "10.99.0.2:9000".parse().expect("addr");
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    })
}

/// Whether two pings from namespace `a` to host-b (10.99.0.2) are answered.
pub fn pings(a: &str) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            a,
            "ping",
            "-c",
            "2",
            "-W",
            "1",
            "10.99.0.2",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A TCP server on host-b:9000 that accepts and closes.
pub fn listen(b: &str) {
    serve(b, "10.99.0.2:9000");
}

/// dnsmasq in namespace `ns`, listening on `listen`, answering every name
/// under `domain` with `answer`, and `ns_client`'s resolv.conf pointing at
/// it; both undone on drop.
pub struct Dnsmasq {
    child: Option<Child>,
    netns_etc: PathBuf,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        if let Some(mut d) = self.child.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = std::fs::remove_dir_all(&self.netns_etc);
    }
}

impl Dnsmasq {
    pub fn start(ns: &str, listen: &str, domain: &str, answer: &str, ns_client: &str) -> Dnsmasq {
        let netns_etc = PathBuf::from(format!("/etc/netns/{ns_client}"));
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "dnsmasq", "--keep-in-foreground"])
            .args([
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--user=root",
                "--log-facility=-",
            ])
            .arg(format!("--pid-file=/tmp/bulkhead-dnsmasq-{ns}.pid"))
            .arg(format!("--listen-address={listen}"))
            .arg(format!("--address=/{domain}/{answer}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        std::fs::create_dir_all(&netns_etc).expect("/etc/netns");
        std::fs::write(
            netns_etc.join("resolv.conf"),
            format!("nameserver {listen}\noptions timeout:1 attempts:3\n"),
        )
        .expect("resolv.conf");
        Dnsmasq {
            child: Some(child),
            netns_etc,
        }
    }
}

/// `getent ahostsv4 NAME` in `ns` (its resolv.conf points at dnsmasq),
/// tried for up to 10 s.
pub fn resolve(ns: &str, name: &str) -> String {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "getent", "ahostsv4", name])
            .output()
            .expect("getent");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() || Instant::now() > until {
            return text;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A TCP server on `addr` in `ns` that accepts and closes.
pub fn serve(ns: &str, addr: &'static str) {
    server(
        ns,
        move || TcpListener::bind(addr).expect("listen"),
        |l| {
            for s in l.incoming() {
                drop(s);
            }
        },
    );
}

/// Whether a TCP connection from `ns` to `to` is made within `within`.
pub fn connects_to(ns: &str, to: &'static str, within: Duration) -> bool {
    in_ns(ns, move || {
        let until = Instant::now() + within;
        while Instant::now() < until {
            let addr = to.parse().expect("addr");
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    })
}

/// A sample's value in the metrics text (`name` with its labels as printed).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in the metrics:\n{text}"))
}
