//! proptest strategies over fault schedules: random scripted timelines (kills, graceful stops,
//! restarts, pauses, host suspensions, cuts, heals, clock steps, drift changes within the
//! bound, state files wiped, made unreadable or rolled back within `state_loss_tolerance`,
//! and clones with a node's identity) for `lease` clusters of
//! 3 to 5 nodes. Safety must hold for every one; a failure is shrunk by proptest to the
//! smallest schedule that still breaks it, printed as a scenario file.

use leasehold_sim::run_seed;
use leasehold_sim::scenario::{At, Bug, ClockStepAt, DriftAt, Dur, RollbackAt, Scenario, Step as S, SuspendAt};
use proptest::prelude::*;
use std::time::Duration;

#[derive(Debug, Clone)]
enum Step {
    Kill(usize, u64),
    Stop(usize, u64),
    Pause(usize, u64),
    Suspend(usize, u64),
    Cut(Vec<(usize, usize)>, u64),
    Jump(usize, i64),
    Drift(usize, i64),
    /// Kill, lose the state file (0: wiped, 1: unreadable, 2: rolled back), restart.
    Lose(usize, u64, u8),
    Clone(usize),
}

fn step(n: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..n, 100u64..5000).prop_map(|(i, d)| Step::Kill(i, d)),
        (0..n, 100u64..5000).prop_map(|(i, d)| Step::Pause(i, d)),
        (0..n, 100u64..5000).prop_map(|(i, d)| Step::Stop(i, d)),
        (0..n, 100u64..10000).prop_map(|(i, d)| Step::Suspend(i, d)),
        (proptest::collection::vec((0..n, 0..n), 1..6), 100u64..5000).prop_map(|(l, d)| Step::Cut(l, d)),
        (0..n, -5000i64..5000).prop_map(|(i, ms)| Step::Jump(i, ms)),
        (0..n, -1000i64..=1000).prop_map(|(i, p)| Step::Drift(i, p)),
        (0..n, 100u64..5000, 0u8..3).prop_map(|(i, d, k)| Step::Lose(i, d, k)),
        (0..n).prop_map(Step::Clone),
    ]
}

/// A schedule: node count, and steps each at a start time (ms) with its own length.
fn schedule() -> impl Strategy<Value = (usize, Vec<(u64, Step)>)> {
    (3usize..=5).prop_flat_map(|n| (Just(n), proptest::collection::vec((0u64..20_000, step(n)), 0..12)))
}

/// The schedule as a scenario (built through the simulator's scenario model, so it can be
/// printed as a file); overlapping episodes on one node are skipped.
fn scenario(n: usize, steps: &[(u64, Step)], bug: Option<Bug>) -> Scenario {
    let mut at: Vec<At> = Vec::new();
    let mut busy_until = vec![0u64; n];
    let mut sorted = steps.to_vec();
    sorted.sort_by_key(|(t, _)| *t);
    let name = |i: usize| format!("n{i}");
    let ms = |t: u64| Dur(Duration::from_millis(t));
    let mut push = |t: u64, step: S| at.push(At { time: ms(t), step });
    // Within the tolerance F = n / 2: a restart is safe while it and the rolled-back files not
    // yet recovered number at most F (lost and unreadable files of others do not count). So
    // any number of files may be wiped or made unreadable; once one is rolled back, at most F
    // files are lost in the whole schedule, of any kind (a bound on damage at once that
    // needs no knowledge of when each recovery ends).
    let f = n / 2;
    let rolls_back = sorted.iter().any(|(_, s)| matches!(s, Step::Lose(_, _, 2)));
    let mut losses = 0;
    for (t, s) in sorted {
        match s {
            Step::Kill(i, d) if t >= busy_until[i] => {
                push(t, S::Kill(name(i)));
                push(t + d, S::Restart(name(i)));
                busy_until[i] = t + d + 1;
            }
            Step::Stop(i, d) if t >= busy_until[i] => {
                push(t, S::Stop(name(i)));
                push(t + d, S::Restart(name(i)));
                busy_until[i] = t + d + 1;
            }
            Step::Suspend(i, d) if t >= busy_until[i] => {
                push(
                    t,
                    S::Suspend(SuspendAt {
                        node: name(i),
                        lasts: Some(ms(d)),
                    }),
                );
                busy_until[i] = t + d + 1;
            }
            Step::Pause(i, d) if t >= busy_until[i] => {
                push(t, S::Pause(name(i)));
                push(t + d, S::Resume(name(i)));
                busy_until[i] = t + d + 1;
            }
            Step::Cut(links, d) => {
                push(t, S::Cut(links.iter().map(|(a, b)| (name(*a), name(*b))).collect()));
                push(t + d, S::Heal);
            }
            Step::Jump(i, by) => push(
                t,
                S::ClockStep(ClockStepAt {
                    node: name(i),
                    by: ms(by.unsigned_abs()),
                    back: by < 0,
                }),
            ),
            Step::Drift(i, ppm) => push(t, S::Drift(DriftAt { node: name(i), ppm })),
            Step::Lose(i, d, kind) if t >= busy_until[i] && (!rolls_back || losses < f) => {
                losses += 1;
                push(t, S::Kill(name(i)));
                push(
                    t,
                    match kind {
                        0 => S::WipeState(name(i)),
                        1 => S::CorruptState(name(i)),
                        _ => S::RollbackState(RollbackAt {
                            node: name(i),
                            to: None,
                        }),
                    },
                );
                push(t + d, S::Restart(name(i)));
                busy_until[i] = t + d + 1;
            }
            Step::Clone(i) if t >= busy_until[i] => push(t, S::Clone(name(i))),
            _ => {}
        }
    }
    at.sort_by_key(|a| a.time);
    let mut scn = Scenario::parse(
        "schedule.toml",
        &format!(
            "nodes = {n}\nduration = \"40s\"\n[membership]\nlease = \"2s\"\nstate_loss_tolerance = {}\n[network]\nlatency = \"1ms..20ms\"\nloss = 0.02\n",
            n / 2
        ),
    )
    .expect("the base schedule parses");
    scn.membership.bug = bug;
    scn.at = at;
    scn
}

/// The scenario as a file, for failure messages.
fn text(scn: &Scenario) -> String {
    scn.to_toml().unwrap_or_else(|e| e)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn no_scripted_schedule_breaks_lease_safety((n, steps) in schedule(), seed in 0u64..1000) {
        let scn = scenario(n, &steps, None);
        let r = run_seed(&scn, seed, "schedule.toml");
        let panicked = r.violations.iter().any(|v| v.kind == leasehold_sim::ViolationKind::Panic);
        prop_assert!(r.safety_violation().is_none() && !panicked, "{}\n--- schedule.toml ---\n{}", r.describe(), text(&scn));
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
        let scn = scenario(n, &steps, Some(Bug::GrantIgnoringPromise));
        let r = run_seed(&scn, seed, "schedule.toml");
        prop_assert!(r.safety_violation().is_none());
        Ok(())
    });
    match result {
        Err(TestError::Fail(_, ((n, steps), _))) => {
            let faults = steps
                .iter()
                .filter(|(_, s)| {
                    matches!(
                        s,
                        Step::Kill(..) | Step::Stop(..) | Step::Pause(..) | Step::Suspend(..) | Step::Cut(..)
                    )
                })
                .count();
            assert!(faults >= 1, "the minimal schedule cuts off or stops a node: {steps:?}");
            assert!(steps.len() <= 4, "shrunk to a few steps on {n} nodes: {steps:?}");
        }
        other => panic!("the planted bug was not found: {other:?}"),
    }
}
