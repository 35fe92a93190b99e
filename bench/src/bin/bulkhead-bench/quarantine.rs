//! `bulkhead-bench quarantine`: the incident timing of the end-to-end harness.
//! While the generator streams an existing flow through the appliance, it
//! quarantines the flow's source MAC over the HTTPS API, and measures how long
//! frames still reached the sink after the API answered (the sink's XDP
//! program stamps each arrival with `bpf_ktime_get_ns`, the same clock as
//! ours); then it releases the MAC and measures how long the flow takes to
//! come back. One JSON line on stdout per run of `--tries` tries.
//!
//! "After the answer" is the last arrival minus the moment the answer was in:
//! at or below zero, the flow was cut before the caller heard back (counted in
//! `cut_before_answer`, recorded as 0). Its resolution is the generator's
//! interval (10 µs at 100k frames/s).
//!
//! With `--intel-feed`, the same timing for threat intel: instead of the
//! quarantine, the flows' destination network is added to an API-managed
//! block feed (made if missing; the token must be an admin's), and removed
//! again instead of the release.

use crate::client::{Api, Settings};
use anyhow::{bail, Context};
use aya::maps::{Map, MapData, PerCpuArray};
use dataplane::io::afxdp::monotonic_ns;
use hdrhistogram::Histogram;
use reqwest::Method;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct QuarantineArgs {
    /// The appliance's API, e.g. https://127.0.0.1:8443.
    #[arg(long)]
    pub url: String,
    /// A file holding an operator token.
    #[arg(long)]
    pub token_file: PathBuf,
    /// The API certificate's SHA-256 fingerprint (from the appliance log).
    #[arg(long)]
    pub fingerprint: String,
    /// The MAC the generator sends from.
    #[arg(long)]
    pub mac: String,
    /// Where `bulkhead-bench sink --pin` pinned its counters.
    #[arg(long)]
    pub sink_pin: PathBuf,
    #[arg(long, default_value_t = 100)]
    pub tries: u32,
    /// How long to wait after the answer before reading the last arrival.
    #[arg(long, default_value_t = 50)]
    pub settle_ms: u64,
    /// Labels for the result line: the DUT, its rule count, the generator's rate.
    #[arg(long, default_value = "bulkhead")]
    pub dut: String,
    #[arg(long, default_value_t = 0)]
    pub rules: u32,
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Time an intel entry instead: the API-managed block feed to list it in.
    #[arg(long)]
    pub intel_feed: Option<String>,
    /// The entry: the generator's destinations (bulkhead-bench's model).
    #[arg(long, default_value = "10.64.0.0/16")]
    pub intel_entry: String,
}

/// The calls that cut the flow and let it back.
struct Calls {
    cut: (Method, String, serde_json::Value),
    back: (Method, String),
    kind: &'static str,
}

impl Calls {
    fn new(a: &QuarantineArgs, api: &Api) -> anyhow::Result<Calls> {
        let Some(feed) = &a.intel_feed else {
            return Ok(Calls {
                cut: (
                    Method::POST,
                    "/api/v1/quarantine".into(),
                    json!({ "mac": a.mac, "reason": "bench: quarantine timing" }),
                ),
                back: (Method::DELETE, format!("/api/v1/quarantine/{}", a.mac)),
                kind: "quarantine",
            });
        };
        let intel = api.call(Method::GET, "/api/v1/intel", None)?;
        let exists = intel["feeds"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["name"] == feed.as_str()));
        if !exists {
            api.call(
                Method::POST,
                "/api/v1/intel/feeds",
                Some(&json!({ "name": feed, "action": "block" })),
            )?;
        }
        let path = format!("/api/v1/intel/feeds/{feed}/entries");
        Ok(Calls {
            cut: (
                Method::POST,
                path.clone(),
                json!({ "entries": [{ "indicator": a.intel_entry, "category": "bench" }] }),
            ),
            back: (
                Method::DELETE,
                format!("{path}/{}", a.intel_entry.replace('/', "%2F")),
            ),
            kind: "intel",
        })
    }

    /// The cut happened (it was not in force already).
    fn took(&self, v: &serde_json::Value) -> bool {
        match self.kind {
            "quarantine" => v["already"] != true,
            _ => v["added"] == 1,
        }
    }
}

/// The sink's arrival stamps, read from its pinned counter map.
struct Sink {
    counts: PerCpuArray<MapData, u64>,
    /// The map's values are per CPU.
    cpus: usize,
}

impl Sink {
    fn open(pin: &PathBuf) -> anyhow::Result<Sink> {
        let data = MapData::from_pin(pin)
            .with_context(|| format!("opening the sink's counters at {}", pin.display()))?;
        let cpus = aya::util::nr_cpus().map_err(|(m, e)| anyhow::anyhow!("{m}: {e}"))?;
        Ok(Sink {
            counts: PerCpuArray::try_from(Map::from_map_data(data)?)?,
            cpus,
        })
    }
    fn last(&self) -> anyhow::Result<u64> {
        super::sink::last_ns(&self.counts)
    }
    /// Waits until a frame arrives after `since` (ns).
    fn arrival_after(&self, since: u64, within: Duration) -> anyhow::Result<bool> {
        let deadline = monotonic_ns() + within.as_nanos() as u64;
        loop {
            if self.last()? > since {
                return Ok(true);
            }
            if monotonic_ns() > deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    /// Start watching for the next frame.
    fn rearm(&mut self) -> anyhow::Result<()> {
        super::sink::rearm_first(&mut self.counts, self.cpus)
    }
    /// When the first frame since [`Sink::rearm`] arrived, waiting for it up
    /// to `within` (the sink stamps it: no polling error).
    fn first_arrival(&self, within: Duration) -> anyhow::Result<Option<u64>> {
        let deadline = monotonic_ns() + within.as_nanos() as u64;
        loop {
            let first = super::sink::first_ns(&self.counts)?;
            if first > 0 {
                return Ok(Some(first));
            }
            if monotonic_ns() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?)
}

fn quantiles_us(h: &Histogram<u64>) -> serde_json::Value {
    let us = |v: u64| (v as f64 / 100.0).round() / 10.0;
    json!({
        "p50": us(h.value_at_quantile(0.5)),
        "p99": us(h.value_at_quantile(0.99)),
        "max": us(h.max()),
    })
}

pub fn run(a: &QuarantineArgs) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(&a.token_file)
        .with_context(|| format!("reading {}", a.token_file.display()))?;
    let api = Api::new(
        &Settings {
            url: Some(a.url.clone()),
            token: Some(token.trim().to_string()),
            fingerprint: Some(a.fingerprint.clone()),
            ..Settings::default()
        },
        false,
    )?;
    let mut sink = Sink::open(&a.sink_pin)?;
    let calls = Calls::new(a, &api)?;
    let (mut after, mut call, mut resume) = (histogram()?, histogram()?, histogram()?);
    let mut cut_before_answer = 0u32;
    for i in 0..a.tries {
        // The flow is live: a frame arrives after we start looking.
        let now = monotonic_ns();
        if !sink.arrival_after(now, Duration::from_secs(3))? {
            bail!("try {i}: no traffic reaches the sink (is the generator running?)");
        }
        let asked = monotonic_ns();
        let (method, path, body) = &calls.cut;
        let v = api.call(method.clone(), path, Some(body))?;
        let answered = monotonic_ns();
        if !calls.took(&v) {
            bail!("try {i}: already cut ({} {path}: {v})", calls.kind);
        }
        std::thread::sleep(Duration::from_millis(a.settle_ms));
        let last = sink.last()?;
        // Cut means cut: nothing more arrives.
        std::thread::sleep(Duration::from_millis(20));
        if sink.last()? != last {
            bail!(
                "try {i}: frames still reach the sink {} ms after the {} answer",
                a.settle_ms + 20,
                calls.kind
            );
        }
        match last.checked_sub(answered) {
            Some(d) if d > 0 => after.record(d)?,
            _ => {
                cut_before_answer += 1;
                after.record(1)?;
            }
        }
        call.record((answered - asked).max(1))?;
        sink.rearm()?;
        api.call(calls.back.0.clone(), &calls.back.1, None)?;
        let released = monotonic_ns();
        match sink.first_arrival(Duration::from_secs(3))? {
            // At or before the answer: back before the caller heard of it.
            Some(t) => resume.record(t.saturating_sub(released).max(1))?,
            None => bail!("try {i}: the flow did not come back within 3 s of the release"),
        }
    }
    println!(
        "{}",
        json!({
            "kind": calls.kind,
            "dut": a.dut,
            "rules": a.rules,
            "rate": a.rate,
            "tries": a.tries,
            "after_answer_us": quantiles_us(&after),
            "cut_before_answer": cut_before_answer,
            "call_us": quantiles_us(&call),
            "resume_us": quantiles_us(&resume),
        })
    );
    Ok(())
}
