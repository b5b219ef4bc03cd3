//! The model checker (`leasehold-sim check`): the lease machine as it ships passes a bounded
//! exhaustive check of three agents under every fault class, and each planted bug the checker
//! can reach is found, with the fault classes that reach it; the same search without the bug
//! is clean, so what is found is the bug.

use leasehold::Bug;
use leasehold_sim::check::{check, CheckOptions, CheckReport, Counterexample, FaultClass};
use leasehold_sim::{run_seed, Scenario};
use std::time::Duration;

fn with(depth: u32, budget: u32, faults: &[FaultClass]) -> CheckOptions {
    CheckOptions {
        depth,
        budget,
        faults: faults.to_vec(),
        jobs: 2,
        ..CheckOptions::default()
    }
}

fn shown(r: &CheckReport) -> String {
    r.counterexample.as_ref().map_or_else(String::new, |c| c.render())
}

/// The counterexample, written as a scenario, fails the simulator the same way (the same
/// kind of violation, at the tick the checker found it), and only because of the bug: the
/// same schedule without it is clean.
fn replays(c: &Counterexample, opts: &CheckOptions) {
    let scn = fails_the_simulator(c, opts);
    let mut clean = scn.clone();
    clean.membership.bug = None;
    let r = run_seed(&clean, c.seed, "counterexample.toml");
    assert!(
        r.violations.is_empty(),
        "the same schedule without the bug is clean: {:?}",
        r.violations
    );
}

/// The counterexample, written as a scenario, fails the simulator the same way: the same
/// kind of violation, within a tick of where the checker found it. Returns the scenario.
fn fails_the_simulator(c: &Counterexample, opts: &CheckOptions) -> Scenario {
    let text = c
        .scenario(opts)
        .unwrap_or_else(|e| panic!("no scenario: {e}\n{}", c.render()));
    let scn = Scenario::parse("counterexample.toml", &text).expect("reads back");
    assert_eq!(scn.first_seed, c.seed, "the scenario runs the checker's seed");
    let r = run_seed(&scn, c.seed, "counterexample.toml");
    assert!(
        r.shows(scn.expect.violation),
        "the simulator does not show {:?}:\n{text}\n{:?}",
        scn.expect.violation,
        r.violations
    );
    let at = r.violations[0].at;
    let found = c.steps.last().map_or(0, |s| s.at);
    assert!(
        at.abs_diff(found) <= 100_000_000,
        "found by the checker at {found} ns, by the simulator at {at} ns"
    );
    scn
}

#[test]
fn three_agents_pass_an_exhaustive_check_under_every_fault_class() {
    let r = check(&with(12, 1, &FaultClass::ALL));
    assert!(r.counterexample.is_none(), "{}", shown(&r));
    assert!(r.exhaustive, "the bounds were explored whole");
    assert!(r.distinct > 10_000 && r.leaves > 1_000, "{r:?}");
}

/// Each planted bug the checker reaches, with the fault classes, depth and budget that reach
/// it, searched in one assignment of clock rates (all slow but the last, for `lease_from_grant`):
/// a whole search per bug takes minutes, and `leasehold-sim check` without `--clocks` does it.
/// The shorter lease (450 ms) reaches the rest at smaller depths; `lease_from_grant` and
/// `accept_stale_replies` need the default 600 ms, whose drift margin is wider.
#[test]
fn each_planted_bug_the_checker_reaches_is_found_replays_and_is_clean_without_it() {
    use FaultClass::*;
    let slow = -50_000;
    let case = |depth, budget, faults: &[FaultClass], lease_ms, last: i64| CheckOptions {
        lease: Duration::from_millis(lease_ms),
        clocks: Some(vec![slow, slow, last]),
        ..with(depth, budget, faults)
    };
    let cases = [
        (Bug::GrantIgnoringPromise, case(12, 2, &[Partition], 450, slow)),
        (Bug::SkipRestartQuarantine, case(14, 2, &[Crash, Partition], 450, slow)),
        (
            Bug::TrustMissingState,
            case(14, 2, &[Crash, Wipe, Partition], 450, slow),
        ),
        (
            Bug::SkipConfigCheck,
            CheckOptions {
                misconfigured_lease: Some(Duration::from_millis(900)),
                ..case(12, 2, &[Partition], 450, slow)
            },
        ),
        (Bug::LeaseFromGrant, case(20, 3, &[Delay, Partition], 600, 50_000)),
        (Bug::AcceptStaleReplies, case(20, 3, &[Delay, Partition], 600, slow)),
        (Bug::UncheckedRanges, case(10, 1, &[Forge], 600, slow)),
        // Its fake majority counts one granter's answers to the resent request: two agents cut
        // from three need no duplicated message.
        (
            Bug::CountDuplicateGrants,
            CheckOptions {
                nodes: 5,
                clocks: Some(vec![slow; 5]),
                ..case(12, 1, &[Partition], 600, slow)
            },
        ),
        // Its error, the drift margin, is smaller than a beat's latency: a finer tick shows it.
        (
            Bug::IgnoreDrift,
            CheckOptions {
                tick: Some(Duration::from_millis(20)),
                clocks: Some(vec![slow, 50_000, 50_000]),
                ..case(200, 1, &[Partition], 2000, slow)
            },
        ),
    ];
    for (bug, opts) in cases {
        let clean = check(&opts);
        assert!(
            clean.counterexample.is_none() && clean.exhaustive,
            "{bug:?}'s search is clean without it: {}",
            shown(&clean)
        );
        let opts = CheckOptions { bug: Some(bug), ..opts };
        let r = check(&opts);
        let c = r
            .counterexample
            .unwrap_or_else(|| panic!("{bug:?} not found in {} states", r.distinct));
        let liveness = bug == Bug::UncheckedRanges;
        assert!(
            c.violation.starts_with("two holders") || c.violation.starts_with("token") || liveness,
            "{bug:?}: {}",
            c.violation
        );
        assert!(!c.steps.is_empty(), "a counterexample is a path");
        replays(&c, &opts);
    }
}

/// A clone shares its node's ID, so no scenario step names it apart: its counterexamples stay
/// the checker's, and asking for their scenario says why.
#[test]
fn a_duplicate_id_is_found_and_its_clone_has_no_scenario_form() {
    let opts = CheckOptions {
        bug: Some(Bug::IgnoreDuplicateId),
        ..with(14, 2, &[FaultClass::Clone])
    };
    let c = check(&opts).counterexample.expect("found");
    let why = c.scenario(&opts).expect_err("a clone has no scenario form");
    assert!(why.contains("clone"), "{why}");
}

/// The recovery rule before `state_loss_tolerance` (a start that read its file trusted it) is
/// found on its own: a rolled-back file makes its agent promise a token already claimed. The
/// same search without it is clean, and the counterexample replays in the simulator.
#[test]
fn the_old_recovery_rule_is_found_with_a_rolled_back_file() {
    use FaultClass::*;
    let opts = CheckOptions {
        lease: Duration::from_millis(450),
        clocks: Some(vec![-50_000; 3]),
        ..with(14, 3, &[Crash, Rollback, Partition])
    };
    let clean = check(&opts);
    assert!(clean.counterexample.is_none() && clean.exhaustive, "{}", shown(&clean));
    let opts = CheckOptions {
        bug: Some(Bug::TrustOwnFile),
        ..opts
    };
    let c = check(&opts).counterexample.expect("found");
    assert!(c.violation.starts_with("token"), "{}", c.violation);
    assert!(c.steps.iter().any(|s| s.what.contains("rolled back")), "{}", c.render());
    replays(&c, &opts);
}

/// The checker's first find in the shipped code: a second process started from a copy of an
/// agent's state file (one incarnation above the original) took the original's beats for late
/// messages of an earlier run of its own; cut off, then healed, it reused a token. With the old
/// rule planted it is found again (depth 28), and the path it takes breaks nothing in the
/// code as it ships; the search is clean to depth 20 (depth 28 takes half a minute, release).
#[test]
fn a_clone_cut_off_and_healed_never_reuses_a_token() {
    use FaultClass::*;
    let r = check(&with(20, 2, &[Clone, Partition]));
    assert!(r.counterexample.is_none(), "{}", shown(&r));
    assert!(r.exhaustive);
    let opts = CheckOptions {
        bug: Some(Bug::OlderTwinIsLate),
        clocks: Some(vec![-50_000, 50_000, -50_000]),
        ..with(28, 2, &[Clone, Partition])
    };
    let c = check(&opts).counterexample.expect("the old rule is found");
    assert!(c.violation.starts_with("token"), "{}", c.render());
    assert!(c.steps.iter().any(|s| s.what.starts_with("clone")), "{}", c.render());
    assert_eq!(
        c.recheck(&opts).as_deref(),
        Some(c.violation.as_str()),
        "the path is the same"
    );
    let fixed = CheckOptions { bug: None, ..opts };
    assert_eq!(c.recheck(&fixed), None, "the path breaks nothing without the bug");
}

/// The result does not depend on the number of threads: the same figures and the same
/// counterexample (the first assignment of clock rates that has one).
#[test]
fn the_result_does_not_depend_on_the_number_of_threads() {
    let clean = with(10, 1, &FaultClass::ALL);
    let found = CheckOptions {
        bug: Some(Bug::GrantIgnoringPromise),
        ..with(14, 2, &[FaultClass::Partition])
    };
    for opts in [clean, found] {
        let one = check(&CheckOptions {
            jobs: 1,
            ..opts.clone()
        });
        let two = check(&CheckOptions { jobs: 2, ..opts });
        assert_eq!(
            (one.explored, one.distinct, one.leaves),
            (two.explored, two.distinct, two.leaves)
        );
        assert_eq!(shown(&one), shown(&two));
    }
}

/// `allcall`, hnatsd's algorithm, allows two leaders by design, and the checker shows each way
/// its design allows them, each replayed by the simulator: clocks that drift apart at the
/// start (the fast agent's first beat ends before the others' answers arrive, and it elects
/// itself), a crash and restart, and, with exact clocks, a cut longer than a lease. With exact
/// clocks and no fault it keeps one leader.
#[test]
fn allcall_shows_two_leaders_where_its_design_allows_them_and_one_in_a_calm_cluster() {
    use leasehold::Algorithm;
    use FaultClass::*;
    let allcall = |depth, budget, faults: &[FaultClass], drift_ppm| CheckOptions {
        algorithm: Algorithm::Allcall,
        drift_ppm,
        ..with(depth, budget, faults)
    };
    let calm = check(&allcall(24, 0, &[], 0));
    assert!(calm.counterexample.is_none() && calm.exhaustive, "{}", shown(&calm));
    for (what, opts) in [
        ("drifting clocks", allcall(14, 0, &[], 50_000)),
        ("a crash", allcall(14, 1, &[Crash], 0)),
        ("a cut", allcall(30, 1, &[Partition], 0)),
    ] {
        let c = check(&opts)
            .counterexample
            .unwrap_or_else(|| panic!("{what}: no two leaders found"));
        assert!(c.violation.starts_with("two holders"), "{what}: {}", c.render());
        let scn = fails_the_simulator(&c, &opts);
        assert_eq!(scn.algorithm, Algorithm::Allcall);
    }
}

/// The drift bound is where the guarantee ends, and the checker reaches both sides of it:
/// clocks at the bound (5 %) hold through a cut, clocks at 1.6 times the bound give two holders,
/// and that counterexample replays in the simulator. (A lease of 2 s and a 20 ms tick, as for
/// `ignore_drift`: the error is the drift margin, smaller than a beat's latency.)
#[test]
fn a_drift_at_the_bound_holds_and_one_beyond_it_breaks_the_lease() {
    let opts = |ppm: i64| CheckOptions {
        lease: Duration::from_millis(2000),
        tick: Some(Duration::from_millis(20)),
        clocks: Some(vec![-ppm, ppm, ppm]),
        ..with(200, 1, &[FaultClass::Partition])
    };
    let at = check(&opts(50_000));
    assert!(at.counterexample.is_none() && at.exhaustive, "{}", shown(&at));
    let beyond = CheckOptions {
        liveness: false,
        ..opts(80_000)
    };
    let c = check(&beyond).counterexample.expect("two holders beyond the bound");
    assert!(c.violation.starts_with("two holders"), "{}", c.render());
    fails_the_simulator(&c, &beyond);
}
