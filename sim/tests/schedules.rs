//! proptest strategies over fault schedules: random scripted timelines (kills, restarts,
//! pauses, cuts, heals, clock steps, drift changes within the bound) for `lease` clusters of
//! 3 to 5 nodes. Safety must hold for every one; a failure is shrunk by proptest to the
//! smallest schedule that still breaks it, printed as a scenario file.

use leasehold_sim::{run_seed, Scenario};
use proptest::prelude::*;
use std::fmt::Write as _;

#[derive(Debug, Clone)]
enum Step {
    Kill(usize, u64),
    Pause(usize, u64),
    Cut(Vec<(usize, usize)>, u64),
    Jump(usize, i64),
    Drift(usize, i64),
}

fn step(n: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..n, 100u64..5000).prop_map(|(i, d)| Step::Kill(i, d)),
        (0..n, 100u64..5000).prop_map(|(i, d)| Step::Pause(i, d)),
        (proptest::collection::vec((0..n, 0..n), 1..6), 100u64..5000).prop_map(|(l, d)| Step::Cut(l, d)),
        (0..n, -5000i64..5000).prop_map(|(i, ms)| Step::Jump(i, ms)),
        (0..n, -1000i64..=1000).prop_map(|(i, p)| Step::Drift(i, p)),
    ]
}

/// A schedule: node count, and steps each at a start time (ms) with its own length.
fn schedule() -> impl Strategy<Value = (usize, Vec<(u64, Step)>)> {
    (3usize..=5).prop_flat_map(|n| (Just(n), proptest::collection::vec((0u64..20_000, step(n)), 0..12)))
}

/// The schedule as a scenario file; overlapping episodes on one node are skipped.
fn to_toml(n: usize, steps: &[(u64, Step)]) -> String {
    let mut at: Vec<(u64, String)> = Vec::new();
    let mut busy_until = vec![0u64; n];
    let mut sorted = steps.to_vec();
    sorted.sort_by_key(|(t, _)| *t);
    let name = |i: usize| format!("n{i}");
    for (t, s) in sorted {
        match s {
            Step::Kill(i, d) | Step::Pause(i, d) if t >= busy_until[i] => {
                let (a, b) = if matches!(s, Step::Kill(..)) {
                    ("kill", "restart")
                } else {
                    ("pause", "resume")
                };
                at.push((t, format!("{a} = \"{}\"", name(i))));
                at.push((t + d, format!("{b} = \"{}\"", name(i))));
                busy_until[i] = t + d + 1;
            }
            Step::Cut(links, d) => {
                let l: Vec<String> = links
                    .iter()
                    .map(|(a, b)| format!("[\"{}\", \"{}\"]", name(*a), name(*b)))
                    .collect();
                at.push((t, format!("cut = [{}]", l.join(", "))));
                at.push((t + d, "heal = true".into()));
            }
            Step::Jump(i, ms) => at.push((
                t,
                format!(
                    "clock_step = {{ node = \"{}\", by = \"{}ms\", back = {} }}",
                    name(i),
                    ms.unsigned_abs(),
                    ms < 0
                ),
            )),
            Step::Drift(i, p) => at.push((t, format!("drift = {{ node = \"{}\", ppm = {p} }}", name(i)))),
            _ => {}
        }
    }
    at.sort_by_key(|(t, _)| *t);
    let mut s = format!("nodes = {n}\nduration = \"40s\"\n[membership]\nlease = \"2s\"\n[network]\nlatency = \"1ms..20ms\"\nloss = 0.02\n");
    for (t, a) in at {
        let _ = write!(s, "[[at]]\ntime = \"{t}ms\"\n{a}\n");
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn no_scripted_schedule_breaks_lease_safety((n, steps) in schedule(), seed in 0u64..1000) {
        let text = to_toml(n, &steps);
        let scn = Scenario::parse("schedule.toml", &text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let r = run_seed(&scn, seed, "schedule.toml");
        prop_assert!(r.safety_violation().is_none(), "{}\n--- schedule.toml ---\n{text}", r.describe());
    }
}

#[test]
fn with_a_planted_bug_proptest_finds_and_shrinks_a_failing_schedule() {
    use proptest::test_runner::{Config, TestError, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 64,
            ..Config::default()
        },
        proptest::test_runner::TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let result = runner.run(&(schedule(), 0u64..1000), |((n, steps), seed)| {
        let text = to_toml(n, &steps).replace("[membership]\n", "[membership]\nbug = \"grant_ignoring_promise\"\n");
        let scn = Scenario::parse("schedule.toml", &text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let r = run_seed(&scn, seed, "schedule.toml");
        prop_assert!(r.safety_violation().is_none());
        Ok(())
    });
    match result {
        Err(TestError::Fail(_, ((n, steps), _))) => {
            let faults = steps
                .iter()
                .filter(|(_, s)| matches!(s, Step::Kill(..) | Step::Pause(..) | Step::Cut(..)))
                .count();
            assert!(faults >= 1, "the minimal schedule cuts off or stops a node: {steps:?}");
            assert!(steps.len() <= 4, "shrunk to a few steps on {n} nodes: {steps:?}");
        }
        other => panic!("the planted bug was not found: {other:?}"),
    }
}
