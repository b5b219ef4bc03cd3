//! Liveness: once the faults stop, the cluster elects again. Some claim must be held at some
//! time within the scenario's bound after the last fault ended. Its converse for a cluster
//! that cannot know the highest token in use (every state file lost): it must wait for good.

use super::{secs, TrueClaim, Violation, ViolationKind};

/// Checks that some claim is held at some time in `[from, from + bound]`.
pub fn check_liveness(claims: &[TrueClaim], from: u128, bound: u128) -> Option<Violation> {
    let held = claims
        .iter()
        .any(|c| c.until > from && c.from <= from + bound && c.until > c.from);
    (!held).then(|| Violation {
        kind: ViolationKind::NoLeader,
        at: from + bound,
        claims: Vec::new(),
        detail: format!(
            "no lease held between {} (last fault) and {}",
            secs(from),
            secs(from + bound)
        ),
    })
}

/// Checks that no claim is held after `from` (a cluster that must wait for good).
pub fn check_waiting(claims: &[TrueClaim], from: u128) -> Option<Violation> {
    let c = claims
        .iter()
        .filter(|c| c.until > from && c.until > c.from)
        .min_by_key(|c| (c.from.max(from), c.node, c.inc))?;
    Some(Violation {
        kind: ViolationKind::LeaderWhileWaiting,
        at: c.from.max(from),
        claims: vec![c.clone()],
        detail: format!("{c} after {}, when the cluster had to wait for good", secs(from)),
    })
}
