//! Real IPFIX collectors and decoders from Debian, driven the way a network
//! team runs them: `nfcapd` receives, `nfdump` reads its file, `tshark` and
//! `ipfixDump` (libfixbuf) decode every message and say what they could not.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tools these tests drive.
pub const TOOLS: [&str; 4] = ["nfcapd", "nfdump", "tshark", "ipfixDump"];

/// `cmd`, run in namespace `ns` if given.
fn in_netns(ns: Option<&str>, cmd: &[&str]) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).args(cmd);
            c
        }
        None => {
            let mut c = Command::new(cmd[0]);
            c.args(&cmd[1..]);
            c
        }
    }
}

/// A free UDP port on loopback (of this namespace).
pub fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

/// `nfcapd` listening on 127.0.0.1:`port` (in `ns`), writing into `dir`.
pub struct Nfcapd {
    child: Child,
    dir: PathBuf,
}

impl Nfcapd {
    pub fn start(ns: Option<&str>, dir: &Path, port: u16) -> Nfcapd {
        std::fs::create_dir_all(dir).expect("nfcapd dir");
        let log = std::fs::File::create(dir.join("nfcapd.log")).expect("log");
        let child = in_netns(
            ns,
            &[
                "nfcapd",
                "-w",
                dir.to_str().expect("utf-8 path"),
                "-b",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ],
        )
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("nfcapd starts");
        let n = Nfcapd {
            child,
            dir: dir.to_path_buf(),
        };
        n.wait_log("Startup");
        n
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nfcapd.log")).unwrap_or_default()
    }

    fn wait_log(&self, what: &str) {
        let t = Instant::now();
        while !self.log().contains(what) {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "nfcapd did not say {what:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it (TERM: it writes its file) and returns the file and its log.
    pub fn finish(mut self) -> (PathBuf, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .output();
        let _ = self.child.wait();
        let log = self.log();
        let file = std::fs::read_dir(&self.dir)
            .expect("nfcapd dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("nfcapd.2"))
            })
            .unwrap_or_else(|| panic!("nfcapd wrote no file:\n{log}"));
        (file, log)
    }
}

/// The flows `nfdump -r FILE -o json` prints.
pub fn nfdump_flows(file: &Path) -> Vec<serde_json::Value> {
    let out = Command::new("nfdump")
        .args(["-r", file.to_str().expect("utf-8 path"), "-o", "json"])
        .output()
        .expect("nfdump runs");
    assert!(out.status.success(), "nfdump: {:?}", out);
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("nfdump JSON ({e}):\n{text}"))
}

/// A TCP collector in `ns` (loopback): accepts connections and appends the
/// stream to `file` (an IPFIX file is the messages one after another).
pub fn tcp_to_file(ns: Option<&str>, file: &Path) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = ns.map(str::to_string);
    let file = file.to_path_buf();
    std::thread::spawn(move || {
        if let Some(ns) = ns {
            enter(&ns);
        }
        let l = TcpListener::bind("127.0.0.1:0").expect("listen");
        tx.send(l.local_addr().expect("addr").port()).expect("port");
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut bytes = Vec::new();
            let _ = s.read_to_end(&mut bytes);
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)
                .expect("stream file");
            std::io::Write::write_all(&mut out, &bytes).expect("write");
        }
    });
    rx.recv().expect("the collector is up")
}

fn enter(ns: &str) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("namespace file");
    // SAFETY: setns on this thread only, with a namespace file we opened.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns");
}

/// `ipfixDump --rfc5610 --in FILE` (the elements the RFC 5610 records
/// describe are named): its output; fails on any error or warning it
/// prints, and returns the number of flow records (templates 256 to 259)
/// it decoded.
pub fn ipfix_dump(file: &Path) -> (String, usize) {
    let out = Command::new("ipfixDump")
        .args(["--rfc5610", "--in", file.to_str().expect("utf-8 path")])
        .output()
        .expect("ipfixDump runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "ipfixDump failed: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "ipfixDump complained: {stderr}\n{stdout}"
    );
    let records = stdout
        .lines()
        .filter(|l| {
            l.contains("count:")
                && !l.contains("field count")
                && (256..=259).any(|t| l.contains(&format!("tid:   {t} ")))
        })
        .count();
    (stdout, records)
}

/// `tshark` capturing UDP to `port` on loopback (in `ns`) into `file`.
pub struct Tshark {
    child: Child,
    file: PathBuf,
    port: u16,
}

impl Tshark {
    pub fn start(ns: Option<&str>, file: &Path, port: u16) -> Tshark {
        let log = file.with_extension("log");
        let child = in_netns(
            ns,
            &[
                "tshark",
                "-i",
                "lo",
                "-f",
                &format!("udp port {port}"),
                "-w",
                file.to_str().expect("utf-8 path"),
            ],
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("tshark starts");
        let t = Instant::now();
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Capturing on")
        {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "tshark did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Tshark {
            child,
            file: file.to_path_buf(),
            port,
        }
    }

    /// Stops the capture and decodes it as IPFIX: one line per data record
    /// with `fields`, tab-separated. Fails on a malformed packet or any
    /// expert warning.
    pub fn finish(mut self, fields: &[&str]) -> Vec<Vec<String>> {
        // Let the last datagrams reach the capture file.
        std::thread::sleep(Duration::from_millis(500));
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .output();
        let _ = self.child.wait();
        let decode = format!("udp.port=={},cflow", self.port);
        let file = self.file.to_str().expect("utf-8 path");
        let bad = Command::new("tshark")
            .args(["-r", file, "-d", &decode, "-Y"])
            .arg("_ws.malformed || _ws.expert.severity >= warning")
            .output()
            .expect("tshark reads");
        let bad_text = String::from_utf8_lossy(&bad.stdout);
        assert!(
            bad_text.trim().is_empty(),
            "tshark found malformed or suspicious IPFIX:\n{bad_text}"
        );
        let mut cmd = Command::new("tshark");
        cmd.args([
            "-r",
            file,
            "-d",
            &decode,
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=;",
        ]);
        for f in fields {
            cmd.args(["-e", f]);
        }
        let out = cmd.output().expect("tshark reads");
        assert!(out.status.success(), "tshark: {:?}", out);
        // One line per message; a field holds one value per record (";").
        let mut records = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let cols: Vec<Vec<&str>> = line
                .split('\t')
                .map(|c| c.split(';').filter(|v| !v.is_empty()).collect())
                .collect();
            let n = cols.first().map_or(0, Vec::len);
            for i in 0..n {
                records.push(
                    cols.iter()
                        .map(|c| c.get(i).copied().unwrap_or("").to_string())
                        .collect(),
                );
            }
        }
        records
    }
}
