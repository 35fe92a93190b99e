//! The `bulkhead` binary run as a user runs it, from the repository's root
//! (where `examples/` is): shared by the test crates that drive the CLI.

use std::process::{Command, Output};

pub fn bulkhead(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the bulkhead binary runs")
}

/// A command left running (`--follow`), its stdout read a line at a time;
/// killed when dropped.
#[allow(dead_code, reason = "only the crates that test --follow use it")]
pub struct Tail {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

#[allow(dead_code, reason = "only the crates that test --follow use it")]
impl Tail {
    pub fn spawn(cmd: &mut Command) -> Tail {
        use std::io::{BufRead, BufReader};
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the command starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Tail { child, lines }
    }

    /// Nothing printed for `d`.
    pub fn quiet_for(&self, d: std::time::Duration) -> bool {
        std::thread::sleep(d);
        self.lines.try_recv().is_err()
    }

    /// The next `n` lines, or fewer if 20 s pass with none.
    pub fn take(&self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            match self.lines.recv_timeout(std::time::Duration::from_secs(20)) {
                Ok(l) => out.push(l),
                Err(_) => break,
            }
        }
        out
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
