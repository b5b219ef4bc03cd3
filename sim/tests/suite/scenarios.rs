//! Runs every scenario file under `scenarios/` (adding a file needs no Rust change) over its
//! seeds and checks its `[expect]`. `LEASEHOLD_SEED=S` runs only seed S of each.

use leasehold_sim::sweep::{scenario_files, sweep, Summary};
use leasehold_sim::Scenario;
use std::path::Path;
use std::sync::Mutex;

#[test]
fn every_scenario_meets_its_expectation() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let files = scenario_files(&root).expect("scenarios/ is readable");
    assert!(files.len() >= 12, "the scenario library has {} files", files.len());
    let only: Option<u64> = std::env::var("LEASEHOLD_SEED").ok().and_then(|s| s.parse().ok());
    let queue = Mutex::new(files);
    let results: Mutex<Vec<Summary>> = Mutex::new(Vec::new());
    // Two workers: the machines this runs on have two cores.
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let Some(f) = queue.lock().unwrap().pop() else { break };
                let rel = format!("scenarios/{}", f.strip_prefix(&root).unwrap().display());
                let scn = Scenario::load(&f).unwrap_or_else(|e| panic!("{e}"));
                let seeds: Vec<u64> = match only {
                    Some(s) => vec![s],
                    None => scn.seed_list(),
                };
                let sum = sweep(&scn, &rel, &seeds, |_| {});
                results.lock().unwrap().push(sum);
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by(|a, b| a.source.cmp(&b.source));
    let mut failures = Vec::new();
    for s in &results {
        eprintln!(
            "{:<48} seeds {:>4} violations {:>3} {}",
            s.source,
            s.seeds,
            s.violations,
            if s.met { "ok" } else { "FAIL" }
        );
        // Replaying one seed: a known-bad scenario need not fail on that particular seed.
        let excused = only.is_some() && s.expected_violation;
        if !s.met && !excused {
            failures.push(match &s.first_failing {
                Some(r) if !s.expected_violation => r.describe(),
                _ => format!("{}: expected a violation, none in {} seeds", s.source, s.seeds),
            });
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
