//! The model checker (`leasehold-sim check`): the lease machine as it ships passes a bounded
//! exhaustive check of three agents under every fault class, and each planted bug the checker
//! can reach is found, with the fault classes that reach it; the same search without the bug
//! is clean, so what is found is the bug.

use leasehold::Bug;
use leasehold_sim::check::{check, CheckOptions, CheckReport, FaultClass};
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

#[test]
fn three_agents_pass_an_exhaustive_check_under_every_fault_class() {
    let r = check(&with(12, 1, &FaultClass::ALL));
    assert!(r.counterexample.is_none(), "{}", shown(&r));
    assert!(r.exhaustive, "the bounds were explored whole");
    assert!(r.distinct > 10_000 && r.leaves > 1_000, "{r:?}");
}

#[test]
fn each_planted_bug_the_checker_reaches_is_found_and_is_clean_without_it() {
    use FaultClass::*;
    let misconfigured = CheckOptions {
        misconfigured_lease: Some(Duration::from_millis(800)),
        ..with(14, 2, &[Partition])
    };
    let cases = [
        (Bug::LeaseFromGrant, with(14, 2, &[Delay, Partition])),
        (Bug::GrantIgnoringPromise, with(14, 2, &[Partition])),
        (Bug::TrustMissingState, with(14, 2, &[Crash, Wipe])),
        (Bug::IgnoreDuplicateId, with(14, 2, &[Clone])),
        (Bug::SkipConfigCheck, misconfigured),
    ];
    for (bug, opts) in cases {
        let clean = check(&opts);
        assert!(
            clean.counterexample.is_none(),
            "{bug:?}'s search is clean without it: {}",
            shown(&clean)
        );
        let r = check(&CheckOptions { bug: Some(bug), ..opts });
        let c = r
            .counterexample
            .unwrap_or_else(|| panic!("{bug:?} not found in {} states", r.distinct));
        assert!(
            c.violation.starts_with("two holders") || c.violation.starts_with("token"),
            "{bug:?}: {}",
            c.violation
        );
        assert!(!c.steps.is_empty(), "a counterexample is a path");
    }
}

/// The recovery rule before `state_loss_tolerance` (a start that read its file trusted it) is
/// found on its own: a rolled-back file makes its agent promise a token already claimed.
#[test]
fn the_old_recovery_rule_is_found_with_a_rolled_back_file() {
    use FaultClass::*;
    let opts = CheckOptions {
        bug: Some(Bug::TrustOwnFile),
        ..with(20, 3, &[Crash, Rollback, Partition])
    };
    let r = check(&opts);
    let c = r.counterexample.expect("found");
    assert!(c.violation.starts_with("token"), "{}", c.violation);
    assert!(c.steps.iter().any(|s| s.what.contains("rolled back")), "{}", c.render());
}

/// The checker's first find in the shipped code: a second process started from a copy of an
/// agent's state file (one incarnation above the original) took the original's beats for late
/// messages of an earlier run of its own; cut off, then healed, it reused a token.
/// Clean now; with the old rule planted, found again.
#[test]
fn a_clone_cut_off_and_healed_never_reuses_a_token() {
    use FaultClass::*;
    let opts = with(20, 2, &[Clone, Partition]);
    let r = check(&opts);
    assert!(r.counterexample.is_none(), "{}", shown(&r));
    assert!(r.exhaustive);
    let r = check(&CheckOptions {
        bug: Some(Bug::OlderTwinIsLate),
        ..opts
    });
    let c = r.counterexample.expect("the old rule is found");
    assert!(c.violation.starts_with("token"), "{}", c.render());
    assert!(c.steps.iter().any(|s| s.what.starts_with("clone")), "{}", c.render());
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
