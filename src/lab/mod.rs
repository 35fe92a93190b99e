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
mod steps;
mod topology;

pub use probe::{run as probe, ProbeArgs};

use anyhow::{bail, Context};
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
    /// Held for the run (see [`lab_lock`]).
    _lock: std::fs::File,
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
    let Some(mut lab) = Lab::prepare(args)? else {
        return Ok(());
    };
    let cast = Cast::new()?;
    let exe = self_exe()?;
    lab.start_appliance(&exe, &args.fail_mode, &cast)?;
    lab.start_listeners(&exe, &cast)?;
    let ctl = ctl::LabCtl::setup(
        &exe,
        &lab.dir,
        &lab.dir.join("bulkhead.db"),
        || std::fs::read_to_string(lab.dir.join("appliance.log")).unwrap_or_default(),
        Duration::from_secs(10),
    )?;

    let mut steps = Steps::default();
    steps::policy(&mut lab, &mut steps, &exe, &cast)?;
    steps::quarantine(&mut lab, &mut steps, &exe, &ctl, &cast)?;
    steps::audit_logged(&lab, &mut steps, &cast);
    steps::fail_mode(&mut lab, &mut steps, &args.fail_mode, &cast)?;

    print_table(&steps.0);
    println!(
        "\nThe appliance's last words ({}):",
        lab.dir.join("appliance.log").display()
    );
    println!("{}", tail(&lab.log(), 6));
    print_records(&lab.dir.join("records.db"))?;
    let failed = steps.0.iter().filter(|s| !s.ok).count();
    drop(lab);
    if failed > 0 {
        bail!(
            "{failed} of {} lab steps did not behave as expected",
            steps.0.len()
        );
    }
    Ok(())
}

/// What the run left in the flow records (the appliance wrote them; it has
/// stopped, so they are read from its store, as `bulkhead records` does):
/// the access graph by group and the flows the policy denied or would deny.
fn print_records(store: &std::path::Path) -> anyhow::Result<()> {
    use control::records::{FlowFilter, GraphParams, RecordsReader, VerdictFilter};
    let reader = RecordsReader::open(store)?;
    let now = i64::try_from(control::time::Timestamp::now().0 / 1_000_000).unwrap_or(i64::MAX);
    let window = GraphParams {
        level: Some("group".into()),
        since: Some("1h".into()),
        until: None,
    }
    .query(now)
    .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.message))?;
    println!(
        "\nThe run's flow records ({}; `bulkhead records graph --store {0} --level group`):\n",
        store.display()
    );
    print!(
        "{}",
        crate::records_cmd::graph_table(&reader.graph(&window)?)
    );
    for (verdict, title) in [
        (VerdictFilter::Deny, "denied"),
        (
            VerdictFilter::WouldDeny,
            "allowed in audit mode, would be denied",
        ),
    ] {
        let page = reader.flows(&FlowFilter {
            verdict: Some(verdict),
            since_ms: Some(window.since_ms),
            ..FlowFilter::default()
        })?;
        println!("\nFlows {title}:");
        print!("{}", crate::records_cmd::flow_table(&page.flows));
    }
    Ok(())
}

/// An exclusive lock on `/run/bulkhead-lab.lock`, waited for if another lab
/// (or a lab test) holds it.
#[allow(unsafe_code)]
fn lab_lock() -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = "/run/bulkhead-lab.lock";
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("open {path}"))?;
    // SAFETY: flock on a descriptor this function owns; no memory is passed.
    let busy = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0;
    if busy {
        println!("another lab is running on this machine; waiting for it to finish");
        // SAFETY: as above, blocking this time.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!("lock {path}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(file)
}

/// The lab's workloads the steps use.
struct Cast {
    web1: &'static Workload,
    web2: &'static Workload,
    admin: &'static Workload,
    db1: &'static Workload,
    legacy1: &'static Workload,
    files: &'static Workload,
}

impl Cast {
    fn new() -> anyhow::Result<Cast> {
        Ok(Cast {
            web1: workload("web-1")?,
            web2: workload("web-2")?,
            admin: workload("admin")?,
            db1: workload("db-1")?,
            legacy1: workload("legacy-1")?,
            files: workload("legacy-files")?,
        })
    }
}

/// The steps so far, for the table.
#[derive(Default)]
struct Steps(Vec<Step>);

impl Steps {
    fn expect(&mut self, what: String, expected: &'static str, ok: bool, observed: String) {
        self.0.push(Step {
            what,
            expected,
            observed,
            ok,
        });
    }
}

impl Lab {
    /// Root, no leftovers of an earlier run, signal handlers, a fresh state
    /// directory; None after `--clean`.
    fn prepare(args: &LabArgs) -> anyhow::Result<Option<Lab>> {
        if !dataplane::hostenv::is_root() {
            bail!("the lab needs root (it creates network namespaces and attaches XDP programs): run it with sudo");
        }
        // The namespaces have fixed names: one lab at a time on a machine,
        // or a second run would tear down the first one's topology.
        let lock = lab_lock()?;
        let stale = topology::destroy();
        if args.clean {
            println!("removed {stale} lab namespaces");
            return Ok(None);
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
        for f in [
            "bulkhead.db",
            "bulkhead.db-wal",
            "bulkhead.db-shm",
            "records.db",
            "records.db-wal",
            "records.db-shm",
        ] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        Ok(Some(Lab {
            _lock: lock,
            dir,
            appliance: None,
            listeners: Vec::new(),
            keep: args.keep,
            stop,
        }))
    }

    /// The topology, the policy and config files, `bulkhead run` in the
    /// appliance's namespace; returns once traffic crosses it.
    fn start_appliance(&mut self, exe: &str, fail_mode: &str, cast: &Cast) -> anyhow::Result<()> {
        println!(
            "building the topology: 2 segments, {} workloads, the appliance between them",
            WORKLOADS.len()
        );
        topology::create()?;
        self.write_policy()?;
        let config = self.dir.join("bulkhead.toml");
        std::fs::write(
            &config,
            format!(
                "[ports]\na = \"dut-a\"\nb = \"dut-b\"\nfail_mode = \"{}\"\n\n[policy]\nfile = \"{}\"\n\n[control]\nstore = \"{}\"\n",
                fail_mode,
                self.dir.join("policy.yaml").display(),
                self.dir.join("bulkhead.db").display()
            ),
        )?;
        let log = std::fs::File::create(self.dir.join("appliance.log"))?;
        // nsenter, not `ip netns exec`: the latter gives the process a mount
        // namespace of its own, and the XDP link pinned on bpffs there would
        // vanish with the process, taking the fail mode with it.
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{DUT}"))
            .args([exe, "run", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start the appliance")?;
        self.appliance = Some(child);
        println!(
            "starting the appliance in {DUT} (log: {})",
            self.dir.join("appliance.log").display()
        );
        let started = Instant::now();
        while !ping(cast.web1, cast.db1) {
            self.check_running()?;
            if started.elapsed() > Duration::from_secs(15) {
                bail!(
                    "no traffic through the appliance after 15 s:\n{}",
                    tail(&self.log(), 20)
                );
            }
        }
        Ok(())
    }

    /// The servers the steps connect to.
    fn start_listeners(&mut self, exe: &str, cast: &Cast) -> anyhow::Result<()> {
        for (w, ports) in [
            (cast.db1, "5432 445"),
            (cast.web1, "22 3389"),
            (cast.web2, "22"),
            (cast.files, "445"),
        ] {
            let mut args = vec![exe, "lab-probe", "listen"];
            args.extend(ports.split(' '));
            let child = in_ns(w, &args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            self.listeners.push(child);
        }
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }
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
