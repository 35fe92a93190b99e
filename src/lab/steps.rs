//! The lab's steps, in the order they run: the policy on fresh connections, a
//! quarantine in the middle of a live stream and its release, what the
//! appliance logged, and the wire's fail mode once it stops.

use super::ctl::LabCtl;
use super::{connect, in_ns, pass_word, ping, short, signal, wait_echo, Cast, Lab, Steps};
use anyhow::Context;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Ping and TCP to allowed and denied ports, an audited flow.
pub(super) fn policy(lab: &mut Lab, steps: &mut Steps, exe: &str, c: &Cast) -> anyhow::Result<()> {
    let p = ping(c.web1, c.db1);
    steps.expect(
        "ping web-1 -> db-1".into(),
        "passes",
        p,
        pass_word(p).into(),
    );
    for (from, to, port, label, allowed) in [
        (c.web1, c.db1, 5432, "postgresql, rule 10", true),
        (c.web1, c.db1, 445, "smb, denied by rule 50", false),
        (c.admin, c.web1, 3389, "rdp, denied by rule 50", false),
        (c.admin, c.web1, 22, "ssh, rule 20", true),
        (
            c.legacy1,
            c.files,
            445,
            "smb inside legacy: audit lets it pass",
            true,
        ),
        (
            c.legacy1,
            c.db1,
            445,
            "smb legacy -> db: db enforces",
            false,
        ),
    ] {
        lab.check_running()?;
        let (ok, detail) = connect(exe, from, to, port);
        let what = format!("{} -> {} tcp/{port} ({label})", from.name, to.name);
        let expected = if allowed { "passes" } else { "blocked" };
        steps.expect(what, expected, ok == allowed, short(&detail));
    }
    Ok(())
}

/// Quarantine web-2 in the middle of a live stream through the API, check the
/// management exception and a new connection, then release it.
pub(super) fn quarantine(
    lab: &mut Lab,
    steps: &mut Steps,
    exe: &str,
    ctl: &LabCtl,
    c: &Cast,
) -> anyhow::Result<()> {
    lab.check_running()?;
    let target = format!("{}:5432", c.db1.ip);
    let mut stream = in_ns(
        c.web2,
        &[exe, "lab-probe", "stream", &target, "--seconds", "20"],
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
    steps.expect(
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
        c.web2.mac,
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
    steps.expect(
        "quarantine web-2 (by MAC) mid-stream".into(),
        "stream stalls < 1 s",
        added && stalled,
        match (added, stalled_after) {
            (false, _) => short(&answer),
            (true, Some(d)) => format!("last echo {} ms after", d.as_millis()),
            (true, None) => "no echo after".into(),
        },
    );
    let (ok, detail) = connect(exe, c.admin, c.web2, 22);
    steps.expect(
        "admin -> web-2 tcp/22 while quarantined (management)".into(),
        "passes",
        ok,
        short(&detail),
    );
    let (ok, detail) = connect(exe, c.web2, c.db1, 5432);
    steps.expect(
        "web-2 -> db-1 tcp/5432 new, while quarantined".into(),
        "blocked",
        !ok,
        short(&detail),
    );

    ctl.run(&["quarantine", "list"]);
    println!("releasing web-2:");
    let released_at = Instant::now();
    let (released, answer) = ctl.run(&["quarantine", "release", c.web2.mac]);
    let resumed = wait_echo(&echoes, Duration::from_secs(8));
    steps.expect(
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
    Ok(())
}

/// What the appliance itself saw: the audited SMB flow as a would-deny.
pub(super) fn audit_logged(lab: &Lab, steps: &mut Steps, c: &Cast) {
    let would_deny = lab
        .log()
        .lines()
        .any(|l| l.contains("would-deny") && l.contains(c.legacy1.ip));
    steps.expect(
        "the appliance reported legacy SMB as a would-deny".into(),
        "in its log",
        would_deny,
        if would_deny {
            "would-deny logged".into()
        } else {
            "not logged".into()
        },
    );
}

/// Stop the appliance: its XDP program stays attached and the fail mode decides.
pub(super) fn fail_mode(
    lab: &mut Lab,
    steps: &mut Steps,
    mode: &str,
    c: &Cast,
) -> anyhow::Result<()> {
    lab.check_running()?;
    if let Some(mut child) = lab.appliance.take() {
        signal(&child, "TERM");
        let _ = child.wait();
    }
    let passes = ping(c.web1, c.db1);
    let fail_open = mode == "open";
    steps.expect(
        format!("appliance stopped (fail-{mode}): ping web-1 -> db-1"),
        if fail_open { "passes" } else { "blocked" },
        passes == fail_open,
        pass_word(passes).into(),
    );
    Ok(())
}
