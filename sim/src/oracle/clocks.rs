//! Clocks: an agent's clock counts suspended time within
//! [`leasehold::SUSPENDED_TIME_TOLERANCE`] (100 µs) of the truth, whatever preemptions do to
//! the two kernel reads it is composed from. The world composes every agent's clock with the
//! production code over a simulated kernel, and the clock model records each composed read
//! that came out ahead of it; a jump larger than the tolerance is a violation (a preemption
//! between the two kernel reads counted as suspended time: the clock would run ahead for good,
//! and a granter's promise would end early). Judged in every simulated run, at its end.

use super::{secs, Violation, ViolationKind};

/// The violation, if node `id`'s clock made `count` jumps ahead past the tolerance, the first
/// at true time `first.0` by `first.1` (ns).
pub fn check_reads(id: &str, count: u64, first: Option<(u128, u128)>) -> Option<Violation> {
    let (at, by) = first?;
    Some(Violation {
        kind: ViolationKind::ClockAhead,
        at,
        claims: Vec::new(),
        detail: format!(
            "{id}'s clock jumped {} ahead at one read ({count} such reads), more than the {:?} a composed read may be off",
            secs(by),
            leasehold::SUSPENDED_TIME_TOLERANCE
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jump_past_the_tolerance_is_a_violation_at_its_read() {
        assert_eq!(check_reads("n0", 0, None), None);
        let v = check_reads("n1", 3, Some((5_000_000_000, 300_000_000))).expect("a violation");
        assert_eq!((v.kind, v.at), (ViolationKind::ClockAhead, 5_000_000_000));
        assert!(
            v.detail.starts_with("n1's clock jumped 0.300000000s ahead"),
            "{}",
            v.detail
        );
        assert!(v.detail.contains("(3 such reads)"), "{}", v.detail);
    }
}
