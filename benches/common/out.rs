//! Shared by the plain (non-criterion) benchmark programs: run mode and JSON
//! output. Each program writes `$LQ_BENCH_OUT/<name>.json` (when that variable
//! is set), an object with `meta` (strings) and `records`, which
//! `benches/report.py` merges into `benches/results/latest.json`.

#![allow(dead_code)]

use std::fmt::Write as _;

/// One measured value.
pub struct Record {
    pub scenario: String,
    pub peer: String,
    pub metric: &'static str,
    pub value: f64,
    pub unit: &'static str,
    /// "higher" or "lower": which way is better.
    pub better: &'static str,
}

impl Record {
    pub fn new(scenario: &str, peer: &str, metric: &'static str, value: f64) -> Self {
        Record {
            scenario: scenario.into(),
            peer: peer.into(),
            metric,
            value,
            unit: "",
            better: "lower",
        }
    }
    pub fn unit(mut self, unit: &'static str) -> Self {
        self.unit = unit;
        self
    }
    pub fn higher_is_better(mut self) -> Self {
        self.better = "higher";
        self
    }
}

/// Run with `--bench` (`cargo bench`), not as a smoke test (`cargo test --all-targets`).
pub fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// `LQ_BENCH_QUICK=1`: smaller sizes, shorter runs.
pub fn quick() -> bool {
    std::env::var_os("LQ_BENCH_QUICK").is_some_and(|v| v != "0")
}

/// Picks a size: the full one, the quick one, or the tiny one of a smoke test.
pub fn size<T>(full: T, quick_: T, test: T) -> T {
    if !bench_mode() {
        test
    } else if quick() {
        quick_
    } else {
        full
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Writes `$LQ_BENCH_OUT/<name>.json` if `LQ_BENCH_OUT` is set (and in bench mode).
pub fn write(name: &str, meta: &[(&str, String)], records: &[Record]) {
    let Some(dir) = std::env::var_os("LQ_BENCH_OUT") else {
        return;
    };
    if !bench_mode() {
        return;
    }
    let mut o = String::from("{\n \"meta\": {");
    for (i, (k, v)) in meta.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(o, "{sep}{}: {}", json_str(k), json_str(v));
    }
    o.push_str("},\n \"records\": [\n");
    for (i, r) in records.iter().enumerate() {
        let sep = if i + 1 == records.len() { "" } else { "," };
        let value = if r.value.is_finite() {
            format!("{}", r.value)
        } else {
            "null".into()
        };
        let _ = writeln!(
            o,
            "  {{\"scenario\": {}, \"peer\": {}, \"metric\": {}, \"value\": {value}, \"unit\": {}, \"better\": {}}}{sep}",
            json_str(&r.scenario),
            json_str(&r.peer),
            json_str(r.metric),
            json_str(r.unit),
            json_str(r.better)
        );
    }
    o.push_str(" ]\n}\n");
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("create LQ_BENCH_OUT");
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, o).expect("write results");
    println!("wrote {}", path.display());
}
