//! Sweeps run lean (`run_seed_lean`): the trace digested as it is made, claims judged as they
//! become final, the plan drawn as it goes. A lean run must say exactly what the whole run
//! says, and a failing seed must come back with its whole report. Sweeps also run seeds side
//! by side (`jobs`), which must not change what they find, and share decoded messages among
//! agents, which must not change what any agent sees.

use leasehold_sim::sweep::{sweep_opts, SweepOptions};
use leasehold_sim::{run_seed, run_seed_lean, run_seed_parsing_each, RunReport, Scenario};
use std::path::Path;
use std::time::Duration;

fn load(rel: &str) -> Scenario {
    Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)).unwrap_or_else(|e| panic!("{e}"))
}

/// Everything a sweep reads from a report.
fn verdict(r: &RunReport) -> impl PartialEq + std::fmt::Debug {
    let f = &r.figures;
    (
        (r.trace.digest, r.trace.len),
        (
            f.leader_changes,
            f.failovers_ms.clone(),
            f.no_leader,
            f.claims,
            f.faults_applied,
            f.fabric,
        ),
        r.violations.clone(),
    )
}

#[test]
fn a_lean_run_says_what_the_whole_run_says() {
    // Five minutes: long enough for the window to slide, the clocks' history to be
    // forgotten and the disks to drop old states; every fault class.
    let mut long = load("scenarios/lease-all-faults.toml");
    long.with_duration(Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{e}"));
    for (scn, seeds) in [
        (long, 0..3),
        (load("scenarios/lease-clock-chaos.toml"), 0..2),
        (load("scenarios/lease-stop-suspend.toml"), 0..2),
        (load("scenarios/allcall-calm.toml"), 0..1),
    ] {
        for seed in seeds {
            let (lean, whole) = (run_seed_lean(&scn, seed, "x"), run_seed(&scn, seed, "x"));
            assert!(whole.violations.is_empty(), "{}", whole.describe());
            assert_eq!(verdict(&lean), verdict(&whole), "{} seed {seed}", scn.name);
            assert!(lean.trace.events.is_empty() && lean.claims.is_empty() && lean.applied.is_empty());
            assert_eq!(whole.trace.len, whole.trace.events.len() as u64);
        }
    }
}

#[test]
fn a_failing_seed_comes_back_with_its_whole_report() {
    let rel = "scenarios/known-bad/bug-suspend-blind-clock.toml";
    let scn = load(rel);
    let (lean, whole) = (run_seed_lean(&scn, 0, rel), run_seed(&scn, 0, rel));
    assert!(whole.safety_violation().is_some(), "seed 0 catches the planted bug");
    assert_eq!(verdict(&lean), verdict(&whole));
    assert_eq!(lean.trace.render(), whole.trace.render());
    assert_eq!(lean.describe(), whole.describe());
}

#[test]
fn seeds_run_side_by_side_give_the_same_summary_as_one_at_a_time() {
    for (rel, seeds) in [
        ("scenarios/lease-partitions.toml", (0..5).collect::<Vec<u64>>()),
        // Stops at its first catch: seeds run beside and after it must not count.
        ("scenarios/known-bad/allcall-partition.toml", (0..12).collect()),
    ] {
        let scn = load(rel);
        let summary = |jobs: usize| {
            let mut order = Vec::new();
            let options = SweepOptions {
                jobs,
                ..SweepOptions::default()
            };
            let mut s = sweep_opts(&scn, rel, &seeds, options, |r| order.push(r.seed)).json();
            s.wall_seconds = 0.0;
            (serde_json::to_string(&s).unwrap_or_default(), order)
        };
        let (one, order) = summary(1);
        assert_eq!(summary(3), (one.clone(), order.clone()), "{rel}");
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "progress in seed order: {order:?}"
        );
        if rel.contains("known-bad") {
            assert!(order.len() < seeds.len(), "stopped at its first catch: {order:?}");
        }
    }
}

#[test]
fn sharing_decoded_messages_changes_nothing_any_agent_sees() {
    // Every fault class; peers of different settings; forged and replayed messages; signed
    // messages (each agent checks the signature, then decodes the body); `allcall`'s replies.
    for (rel, seed) in [
        ("scenarios/lease-all-faults.toml", 0),
        ("scenarios/lease-config-skew.toml", 1),
        ("scenarios/lease-forger.toml", 2),
        ("scenarios/lease-impostor-auth.toml", 0),
        ("scenarios/allcall-calm.toml", 0),
    ] {
        let scn = load(rel);
        let (shared, each) = (run_seed(&scn, seed, rel), run_seed_parsing_each(&scn, seed, rel));
        assert_eq!(verdict(&shared), verdict(&each), "{rel} seed {seed}");
        assert_eq!(shared.trace.render(), each.trace.render(), "{rel} seed {seed}");
    }
}
