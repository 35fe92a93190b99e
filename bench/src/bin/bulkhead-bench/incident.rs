//! The incident timings of the end-to-end report: the result lines of
//! `bulkhead-bench quarantine` as a table.

use super::report::label;
use serde::Deserialize;
use std::fmt::Write as _;

#[derive(Debug, Deserialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// One `bulkhead-bench quarantine` run.
#[derive(Debug, Deserialize)]
pub struct Quarantine {
    pub dut: String,
    pub rules: u32,
    pub rate: u64,
    pub tries: u32,
    pub after_answer_us: Quantiles,
    pub cut_before_answer: u32,
    pub call_us: Quantiles,
    pub resume_us: Quantiles,
}

/// The markdown table (empty without runs).
pub fn table(runs: &[Quarantine]) -> String {
    let mut out = String::new();
    let Some(first) = runs.first() else {
        return out;
    };
    let _ = writeln!(
        out,
        "\n**Quarantine through the HTTPS API while the flow streams** ({} frames/s of 64-byte UDP \
         from one workload, {} tries per DUT and rule count; `bulkhead-bench quarantine`): how long \
         frames still reached the sink after the API's answer (the sink's XDP program stamps each \
         arrival on the same clock; at or below 0, the flow was cut before the answer, shown as \
         0), how long the call took, and how long after the release's answer the first frame \
         reached the sink again (stamped by the sink, re-armed just before the call; 0: back \
         before the answer). Goal: at most 1 ms p99 after the answer.\n",
        first.rate, first.tries
    );
    out.push_str(
        "| DUT | rules | after the answer p50 / p99 / max µs | cut before the answer | API call p50 / p99 ms | back after release p50 / p99 ms |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for r in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} / {:.1} / {:.1} | {} of {} | {:.1} / {:.1} | {:.2} / {:.2} |",
            label(&r.dut),
            r.rules,
            r.after_answer_us.p50,
            r.after_answer_us.p99,
            r.after_answer_us.max,
            r.cut_before_answer,
            r.tries,
            r.call_us.p50 / 1000.0,
            r.call_us.p99 / 1000.0,
            r.resume_us.p50 / 1000.0,
            r.resume_us.p99 / 1000.0,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_become_one_row_each_in_milliseconds_where_the_header_says() {
        let line = r#"{"after_answer_us":{"max":0.0,"p50":0.0,"p99":0.0},"call_us":{"max":8212.5,"p50":4849.7,"p99":8212.5},"cut_before_answer":5,"dut":"bulkhead-offload-on","kind":"quarantine","rate":100000,"resume_us":{"max":330.8,"p50":292.1,"p99":330.8},"rules":1000,"tries":5}"#;
        let dir = std::env::temp_dir().join(format!("bh-incident-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("incident");
        std::fs::write(&path, format!("{line}\n\n")).unwrap();
        let runs: Vec<Quarantine> = super::super::report::load(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let t = table(&runs);
        assert!(t.contains("100000 frames/s"), "{t}");
        assert!(
            t.contains(
                "| bulkhead, offload on | 1000 | 0.0 / 0.0 / 0.0 | 5 of 5 | 4.8 / 8.2 | 0.29 / 0.33 |"
            ),
            "{t}"
        );
        assert!(table(&[]).is_empty());
    }
}
