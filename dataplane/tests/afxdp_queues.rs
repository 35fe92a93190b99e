//! Several workers on one port pair: veths with two queues, one worker per
//! queue pair, each with its own flow table. Frames arrive on whichever queue
//! the sender picked, so a worker hands every frame whose flow another worker
//! owns to that worker; an enforcing policy that allows only host-a -> host-b
//! tcp/8080 then works only if both directions of each connection meet one
//! flow table. Root and `ip netns` needed; skipped outside CI without them.
#![cfg(target_os = "linux")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod afxdp_bed;

use afxdp_bed::*;
use dataplane::io::afxdp::QueueStats;

const ONLY_8080: &str = r#"
default_mode: enforce
rules:
  - { id: 1, src: [any], dst: [any], proto: tcp, ports: [8080], action: allow }
  - { id: 2, src: [any], dst: [any], proto: icmp, action: allow }
"#;

/// What the DUT thread ends with: (entered the namespace (ran without errors (stats))).
type Outcome = Result<Result<Vec<QueueStats>, String>, String>;

/// Workers on every queue of the DUT's ports, on threads in its namespace.
struct Crew {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Outcome>>,
}

impl Crew {
    fn start(t: &Topology, queues: u32, policy: &str) -> Result<Crew, String> {
        let cell = Arc::new(SnapshotCell::new(snapshot(policy, 1)));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let stop2 = stop.clone();
        let handle = in_netns(&t.dut, move || -> Result<Vec<QueueStats>, String> {
            let mut cfg = dut_config(FailMode::Closed);
            cfg.queues = queues;
            cfg.frames = 2048;
            let started = AfXdpIo::open(&cfg)
                .map_err(|e| e.to_string())
                .and_then(|io| {
                    let (sink, _events) = event::channel(4096);
                    let workers =
                        pipeline::workers(queues as usize, &WorkerConfig::default(), &cell, sink);
                    Pipeline::assemble(io, workers, &cell, false, |_, _| {})
                        .map_err(|e| e.to_string())
                });
            let p = match started {
                Ok(p) => p,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.clone()));
                    return Err(e);
                }
            };
            let _ = ready_tx.send(Ok(p.lanes.len()));
            let threads: Vec<_> = p
                .lanes
                .into_iter()
                .map(|mut lane| {
                    let stop = stop2.clone();
                    std::thread::spawn(move || -> Result<QueueStats, String> {
                        let every = Duration::from_secs(1);
                        let idle = Duration::from_millis(5);
                        lane.run(&stop, Instant::now(), idle, every, |_, _| {})
                            .map_err(|e| e.to_string())?;
                        Ok(lane.io.stats())
                    })
                })
                .collect();
            let mut stats = Vec::new();
            for t in threads {
                stats.push(t.join().map_err(|_| "worker panicked".to_string())??);
            }
            p.ports.detach().map_err(|e| e.to_string())?;
            Ok(stats)
        });
        let workers = ready_rx
            .recv_timeout(Duration::from_secs(20))
            .map_err(|e| format!("DUT did not start: {e}"))??;
        assert_eq!(workers, queues as usize);
        Ok(Crew {
            stop,
            handle: Some(handle),
        })
    }

    fn stop(&mut self) -> Vec<QueueStats> {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.handle.take().expect("stopped once");
        handle
            .join()
            .expect("DUT thread panicked")
            .expect("DUT entered its namespace")
            .expect("DUT ran without I/O errors")
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        if self.handle.is_some() {
            self.stop.store(true, Ordering::Relaxed);
            let _ = self.handle.take().map(|h| h.join());
        }
    }
}

#[test]
fn two_workers_keep_each_connection_in_one_flow_table() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::with_queues(2).expect("topology with 2 queues");
    let mut crew = Crew::start(&t, 2, ONLY_8080).expect("two workers start");
    assert!(t.ping_eventually(), "ping through two workers");
    let _listeners = listen(&t, &[8080]);
    let mut ok = 0;
    for _ in 0..40 {
        ok += usize::from(connects(&t, 8080));
    }
    assert_eq!(ok, 40, "every connection allowed by the stateful policy");
    // Far more frames than a worker's share (1024): frames must go home.
    let got = t.flood(3000);
    assert!(got > 0.95, "flood ping: {:.1}% answered", got * 100.0);
    let stats = crew.stop();
    eprintln!("per worker: {stats:?}");
    let handed: u64 = stats.iter().map(|s| s.handed_out).sum();
    let received: u64 = stats.iter().map(|s| s.handed_in).sum();
    assert!(
        handed > 0,
        "the senders used both queues, so frames were handed over"
    );
    assert_eq!(
        handed,
        received + stats.iter().map(|s| s.handoff_full).sum::<u64>()
    );
}

#[test]
fn denied_traffic_stays_denied_with_two_workers() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::with_queues(2).expect("topology with 2 queues");
    let mut crew = Crew::start(&t, 2, ONLY_8080).expect("two workers start");
    assert!(t.ping_eventually());
    let _listeners = listen(&t, &[8080, 9090]);
    for _ in 0..10 {
        assert!(!connects(&t, 9090), "9090 is not allowed");
    }
    crew.stop();
}

#[test]
fn one_worker_reads_every_queue_so_none_falls_to_the_fail_mode() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::with_queues(2).expect("topology with 2 queues");
    // The single-worker DUT (queues = 1), fail-closed: a frame on a queue
    // without a socket would be dropped.
    let mut dut = Dut::start(&t, dut_config(FailMode::Closed), ONLY_8080).expect("DUT starts");
    assert!(t.ping_eventually());
    let _listeners = listen(&t, &[8080]);
    let ok = (0..40).filter(|_| connects(&t, 8080)).count();
    assert_eq!(ok, 40, "every connection passes, whichever queue it used");
    dut.stop(Stop::Detach);
}

#[test]
fn more_workers_than_queues_is_refused_with_the_fix() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::new().expect("topology with 1 queue");
    let dut = t.dut.clone();
    let err = in_netns(&dut, || {
        let mut cfg = dut_config(FailMode::Closed);
        cfg.queues = 2;
        cfg.frames = 2048;
        AfXdpIo::open(&cfg).map(|_| ()).map_err(|e| e.to_string())
    })
    .join()
    .expect("thread")
    .expect("namespace")
    .expect_err("refused");
    assert!(
        err.contains("dut-a has 1 receive queue(s) but 2 workers need 2"),
        "{err}"
    );
    assert!(err.contains("ethtool -L dut-a"), "{err}");
}
