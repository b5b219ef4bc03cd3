//! Liveness: once the faults stop, the cluster elects again. Some claim must be held at some
//! time within the scenario's bound after the last fault ended.

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
