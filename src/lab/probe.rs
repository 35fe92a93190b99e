//! `bulkhead lab-probe`: the lab's traffic, run inside a workload's namespace by
//! `ip netns exec` (hidden from `--help`: it is the lab's tool, not the user's).
//!
//! - `listen PORT...`: TCP echo servers, until killed.
//! - `connect IP:PORT`: connect, send a line, wait for its echo; exit 0 if the
//!   echo came back in time, 1 otherwise, with the outcome on stdout.
//! - `stream IP:PORT`: connect, then send a numbered line every interval and
//!   print `echo MS` (milliseconds since the stream started) for every echo, so
//!   the lab sees a stream stall and resume.

use anyhow::Context;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct ProbeArgs {
    #[command(subcommand)]
    pub what: Probe,
}

#[derive(clap::Subcommand)]
pub enum Probe {
    /// TCP echo servers on these ports.
    Listen { ports: Vec<u16> },
    /// One connection and one echo.
    Connect {
        to: SocketAddr,
        #[arg(long, default_value_t = 1500)]
        timeout_ms: u64,
    },
    /// A long-lived connection with a line every interval.
    Stream {
        to: SocketAddr,
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
}

pub fn run(args: &ProbeArgs) -> anyhow::Result<()> {
    match &args.what {
        Probe::Listen { ports } => listen(ports),
        Probe::Connect { to, timeout_ms } => {
            let ok = connect(*to, Duration::from_millis(*timeout_ms));
            match ok {
                Ok(()) => {
                    println!("ok");
                    Ok(())
                }
                Err(e) => {
                    println!("blocked: {e:#}");
                    std::process::exit(1);
                }
            }
        }
        Probe::Stream {
            to,
            interval_ms,
            seconds,
        } => stream(
            *to,
            Duration::from_millis(*interval_ms),
            Duration::from_secs(*seconds),
        ),
    }
}

fn echo(conn: TcpStream) {
    let Ok(mut w) = conn.try_clone() else { return };
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
        if w.write_all(line.as_bytes()).is_err() {
            return;
        }
        line.clear();
    }
}

fn listen(ports: &[u16]) -> anyhow::Result<()> {
    let mut handles = Vec::new();
    for &port in ports {
        let l =
            TcpListener::bind(("0.0.0.0", port)).with_context(|| format!("listen on {port}"))?;
        handles.push(std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                std::thread::spawn(move || echo(conn));
            }
        }));
    }
    println!("listening");
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

fn connect(to: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    let conn = TcpStream::connect_timeout(&to, timeout).context("no connection")?;
    let left = timeout
        .saturating_sub(start.elapsed())
        .max(Duration::from_millis(100));
    conn.set_read_timeout(Some(left))?;
    let mut w = conn.try_clone()?;
    w.write_all(b"hello from the lab\n")?;
    let mut line = String::new();
    BufReader::new(conn)
        .read_line(&mut line)
        .context("no echo")?;
    anyhow::ensure!(line == "hello from the lab\n", "echo was {line:?}");
    Ok(())
}

fn stream(to: SocketAddr, interval: Duration, duration: Duration) -> anyhow::Result<()> {
    let conn = TcpStream::connect_timeout(&to, Duration::from_secs(2)).context("no connection")?;
    let start = Instant::now();
    let reader = conn.try_clone()?;
    std::thread::spawn(move || {
        let mut r = BufReader::new(reader);
        let mut line = String::new();
        let out = std::io::stdout();
        while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
            let mut o = out.lock();
            let _ = writeln!(o, "echo {}", start.elapsed().as_millis());
            let _ = o.flush();
            line.clear();
        }
    });
    let mut w = conn;
    let mut seq = 0u64;
    while start.elapsed() < duration {
        seq += 1;
        // A write into a stalled connection only fills the socket buffer; the
        // stall shows as missing echoes.
        w.write_all(format!("line {seq}\n").as_bytes())?;
        std::thread::sleep(interval);
    }
    Ok(())
}
