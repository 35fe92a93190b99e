//! `bulkhead lab`: the demo a new user runs first.
//!
//! It builds two network segments of workloads in network namespaces, starts the
//! appliance (`bulkhead run`) inline between them with a sample policy, drives
//! real traffic (ping, TCP connections to allowed and denied ports, an audited
//! flow), quarantines a workload in the middle of a live TCP stream and releases
//! it with `bulkhead ctl` over the appliance's HTTPS API, and prints what
//! happened. Leftovers of a crashed run are removed on the
//! next start; `--keep` leaves the topology up for exploring.

mod ctl;
mod probe;
mod topology;

pub use probe::{run as probe, ProbeArgs};

use anyhow::{bail, Context};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use topology::{workload, Workload, DUT, WORKLOADS};

#[derive(clap::Args)]
pub struct LabArgs {
    /// Leave the namespaces up after the run (remove them with `bulkhead lab --clean`).
    #[arg(long)]
    pub keep: bool,
    /// Only remove what an earlier run left behind, then exit.
    #[arg(long)]
    pub clean: bool,
    /// What the wire does while the appliance is not running.
    #[arg(long, value_parser = ["open", "closed"], default_value = "closed")]
    pub fail_mode: String,
}

/// The lab's policy: the groups of [`WORKLOADS`], web -> db PostgreSQL, admin SSH,
/// SMB and RDP denied, the legacy group in audit mode.
const POLICY: &str = include_str!("lab-policy.yaml");

struct Lab {
    dir: PathBuf,
    appliance: Option<Child>,
    /// The echo servers in the workloads' namespaces.
    listeners: Vec<Child>,
    keep: bool,
    stop: Arc<AtomicBool>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for mut l in self.listeners.drain(..) {
            let _ = l.kill();
            let _ = l.wait();
        }
        if let Some(mut child) = self.appliance.take() {
            signal(&child, "TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.keep {
            println!("\nThe lab is still up (--keep): `ip netns list | grep bh-lab-`, e.g.");
            println!("  ip netns exec bh-lab-web-1 ping 10.77.0.21");
            println!("Remove it with `bulkhead lab --clean`.");
        } else {
            topology::destroy();
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status();
}

/// Run a command inside a workload's namespace.
fn in_ns(w: &Workload, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &w.netns()]).args(args);
    c.stdin(Stdio::null());
    c
}

fn self_exe() -> anyhow::Result<String> {
    Ok(std::env::current_exe()
        .context("cannot find the bulkhead binary")?
        .to_string_lossy()
        .into_owned())
}

/// One row of the result table.
struct Step {
    what: String,
    expected: &'static str,
    observed: String,
    ok: bool,
}

impl Lab {
    fn write_policy(&self) -> anyhow::Result<()> {
        std::fs::write(self.dir.join("policy.yaml"), POLICY)?;
        Ok(())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("appliance.log")).unwrap_or_default()
    }

    fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(child) = &mut self.appliance {
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "the appliance exited ({status}):\n{}",
                    tail(&self.log(), 20)
                );
            }
        }
        if self.stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        Ok(())
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn ping(from: &Workload, to: &Workload) -> bool {
    in_ns(
        from,
        &["ping", "-c", "2", "-i", "0.2", "-W", "1", "-q", to.ip],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .status()
    .is_ok_and(|s| s.success())
}

fn connect(exe: &str, from: &Workload, to: &Workload, port: u16) -> (bool, String) {
    let target = format!("{}:{port}", to.ip);
    match in_ns(from, &[exe, "lab-probe", "connect", &target]).output() {
        Ok(o) => (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        ),
        Err(e) => (false, format!("probe failed: {e}")),
    }
}

pub fn run(args: &LabArgs) -> anyhow::Result<()> {
    if !dataplane::hostenv::is_root() {
        bail!("the lab needs root (it creates network namespaces and attaches XDP programs): run it with sudo");
    }
    let stale = topology::destroy();
    if args.clean {
        println!("removed {stale} lab namespaces");
        return Ok(());
    }
    if stale > 0 {
        println!("removed {stale} namespaces left by an earlier run");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("install signal handler")?;
    }
    let dir = std::env::temp_dir().join("bulkhead-lab");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    // Every run starts from the lab policy: no store left by an earlier run.
    for f in ["bulkhead.db", "bulkhead.db-wal", "bulkhead.db-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let mut lab = Lab {
        dir: dir.clone(),
        appliance: None,
        listeners: Vec::new(),
        keep: args.keep,
        stop,
    };
    println!(
        "building the topology: 2 segments, {} workloads, the appliance between them",
        WORKLOADS.len()
    );
    topology::create()?;
    lab.write_policy()?;
    let config = dir.join("bulkhead.toml");
    std::fs::write(
        &config,
        format!(
            "[ports]\na = \"dut-a\"\nb = \"dut-b\"\nfail_mode = \"{}\"\n\n[policy]\nfile = \"{}\"\n\n[control]\nstore = \"{}\"\n",
            args.fail_mode,
            dir.join("policy.yaml").display(),
            dir.join("bulkhead.db").display()
        ),
    )?;
    let exe = self_exe()?;
    let log = std::fs::File::create(dir.join("appliance.log"))?;
    // nsenter, not `ip netns exec`: the latter gives the process a mount
    // namespace of its own, and the XDP link pinned on bpffs there would vanish
    // with the process, taking the fail mode with it.
    let child = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{DUT}"))
        .args([&exe, "run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("start the appliance")?;
    lab.appliance = Some(child);

    let (web1, web2, admin) = (workload("web-1")?, workload("web-2")?, workload("admin")?);
    let (db1, legacy1, files) = (
        workload("db-1")?,
        workload("legacy-1")?,
        workload("legacy-files")?,
    );
    println!(
        "starting the appliance in {DUT} (log: {})",
        dir.join("appliance.log").display()
    );
    let started = Instant::now();
    while !ping(web1, db1) {
        lab.check_running()?;
        if started.elapsed() > Duration::from_secs(15) {
            bail!(
                "no traffic through the appliance after 15 s:\n{}",
                tail(&lab.log(), 20)
            );
        }
    }
    for (w, ports) in [
        (db1, "5432 445"),
        (web1, "22 3389"),
        (web2, "22"),
        (files, "445"),
    ] {
        let mut args = vec![exe.as_str(), "lab-probe", "listen"];
        args.extend(ports.split(' '));
        let child = in_ns(w, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        lab.listeners.push(child);
    }
    std::thread::sleep(Duration::from_millis(300));
    let log_path = dir.join("appliance.log");
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let ctl = ctl::LabCtl::setup(
        &exe,
        &dir,
        &dir.join("bulkhead.db"),
        read_log,
        Duration::from_secs(10),
    )?;

    let mut steps = Vec::new();
    let mut expect = |what: String, expected: &'static str, ok: bool, observed: String| {
        steps.push(Step {
            what,
            expected,
            observed,
            ok,
        });
    };
    let p = ping(web1, db1);
    expect(
        "ping web-1 -> db-1".into(),
        "passes",
        p,
        pass_word(p).into(),
    );
    for (from, to, port, label, allowed) in [
        (web1, db1, 5432, "postgresql, rule 10", true),
        (web1, db1, 445, "smb, denied by rule 50", false),
        (admin, web1, 3389, "rdp, denied by rule 50", false),
        (admin, web1, 22, "ssh, rule 20", true),
        (
            legacy1,
            files,
            445,
            "smb inside legacy: audit lets it pass",
            true,
        ),
        (legacy1, db1, 445, "smb legacy -> db: db enforces", false),
    ] {
        lab.check_running()?;
        let (ok, detail) = connect(&exe, from, to, port);
        let what = format!("{} -> {} tcp/{port} ({label})", from.name, to.name);
        let expected = if allowed { "passes" } else { "blocked" };
        expect(what, expected, ok == allowed, short(&detail));
    }

    // Quarantine in the middle of a live stream, then release.
    lab.check_running()?;
    let target = format!("{}:5432", db1.ip);
    let mut stream = in_ns(
        web2,
        &[&exe, "lab-probe", "stream", &target, "--seconds", "20"],
    )
    .stdout(Stdio::piped())
    .spawn()
    .context("start the stream")?;
    let (tx, echoes) = mpsc::channel::<Instant>();
    if let Some(out) = stream.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.starts_with("echo ") && tx.send(Instant::now()).is_err() {
                    return;
                }
            }
        });
    }
    let flowing = wait_echo(&echoes, Duration::from_secs(3));
    expect(
        "web-2 -> db-1 tcp/5432 stream before quarantine".into(),
        "flows",
        flowing.is_some(),
        if flowing.is_some() {
            "echoes arrive".into()
        } else {
            "no echo".into()
        },
    );

    println!("web-2 streams to db-1; quarantining web-2 through the API:");
    let quarantined_at = Instant::now();
    let (added, answer) = ctl.run(&[
        "quarantine",
        "add",
        web2.mac,
        "--reason",
        "lab: compromised",
    ]);
    // Echoes already in flight may still arrive for a moment; after that, none.
    let mut last = None;
    while let Ok(t) = echoes.recv_timeout(Duration::from_millis(1500)) {
        last = Some(t);
        if t.duration_since(quarantined_at) > Duration::from_secs(3) {
            break;
        }
    }
    let stalled_after = last.map(|t| t.saturating_duration_since(quarantined_at));
    let stalled = stalled_after.is_none_or(|d| d < Duration::from_secs(1));
    expect(
        "quarantine web-2 (by MAC) mid-stream".into(),
        "stream stalls < 1 s",
        added && stalled,
        match (added, stalled_after) {
            (false, _) => short(&answer),
            (true, Some(d)) => format!("last echo {} ms after", d.as_millis()),
            (true, None) => "no echo after".into(),
        },
    );
    let (ok, detail) = connect(&exe, admin, web2, 22);
    expect(
        "admin -> web-2 tcp/22 while quarantined (management)".into(),
        "passes",
        ok,
        short(&detail),
    );
    let (ok, detail) = connect(&exe, web2, db1, 5432);
    expect(
        "web-2 -> db-1 tcp/5432 new, while quarantined".into(),
        "blocked",
        !ok,
        short(&detail),
    );

    ctl.run(&["quarantine", "list"]);
    println!("releasing web-2:");
    let released_at = Instant::now();
    let (released, answer) = ctl.run(&["quarantine", "release", web2.mac]);
    let resumed = wait_echo(&echoes, Duration::from_secs(8));
    expect(
        "release web-2".into(),
        "stream resumes",
        released && resumed.is_some(),
        match (released, resumed) {
            (false, _) => short(&answer),
            (true, Some(t)) => format!(
                "echo {} ms after",
                t.saturating_duration_since(released_at).as_millis()
            ),
            (true, None) => "no echo within 8 s".into(),
        },
    );
    let _ = stream.kill();
    let _ = stream.wait();

    // What the appliance itself saw.
    let log = lab.log();
    let would_deny = log
        .lines()
        .any(|l| l.contains("would-deny") && l.contains(legacy1.ip));
    expect(
        "the appliance reported legacy SMB as a would-deny".into(),
        "in its log",
        would_deny,
        if would_deny {
            "would-deny logged".into()
        } else {
            "not logged".into()
        },
    );

    // Stop the appliance: its XDP program stays attached and the fail mode decides.
    lab.check_running()?;
    if let Some(mut child) = lab.appliance.take() {
        signal(&child, "TERM");
        let _ = child.wait();
    }
    let passes = ping(web1, db1);
    let fail_open = args.fail_mode == "open";
    expect(
        format!(
            "appliance stopped (fail-{}): ping web-1 -> db-1",
            args.fail_mode
        ),
        if fail_open { "passes" } else { "blocked" },
        passes == fail_open,
        pass_word(passes).into(),
    );
    print_table(&steps);
    let log = lab.log();
    println!(
        "\nThe appliance's last words ({}):",
        dir.join("appliance.log").display()
    );
    println!("{}", tail(&log, 6));
    let failed = steps.iter().filter(|s| !s.ok).count();
    drop(lab);
    if failed > 0 {
        bail!(
            "{failed} of {} lab steps did not behave as expected",
            steps.len()
        );
    }
    Ok(())
}

fn pass_word(ok: bool) -> &'static str {
    if ok {
        "passed"
    } else {
        "blocked"
    }
}

fn short(detail: &str) -> String {
    let d = detail.lines().next().unwrap_or("");
    if d == "ok" {
        "passed".into()
    } else if d.starts_with("blocked") {
        "blocked".into()
    } else {
        d.chars().take(40).collect()
    }
}

fn wait_echo(echoes: &mpsc::Receiver<Instant>, within: Duration) -> Option<Instant> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match echoes.recv_timeout(left) {
            Ok(t) if t + Duration::from_millis(50) >= Instant::now() => return Some(t),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

fn print_table(steps: &[Step]) {
    let w = steps
        .iter()
        .map(|s| s.what.len())
        .max()
        .unwrap_or(10)
        .max(4);
    println!(
        "\n{:<w$}  {:<20} {:<28} RESULT",
        "STEP", "EXPECTED", "OBSERVED"
    );
    for s in steps {
        println!(
            "{:<w$}  {:<20} {:<28} {}",
            s.what,
            s.expected,
            s.observed,
            if s.ok { "ok" } else { "UNEXPECTED" }
        );
    }
    println!("\nWorkloads:");
    for wl in &WORKLOADS {
        println!(
            "  {:<13} {}  {:<11} segment {}  {}",
            wl.name,
            wl.mac,
            wl.ip,
            wl.segment.to_ascii_uppercase(),
            wl.labels
        );
    }
}
