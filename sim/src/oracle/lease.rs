//! Lease safety: no two holders at once. Claims by different nodes, or by different
//! incarnations of one node, must not overlap in true time by any positive amount.

use super::{secs, TrueClaim, Violation, ViolationKind};

/// The earliest overlap among `sorted` (claims in start order), if any.
pub fn check_overlap(sorted: &[&TrueClaim]) -> Option<Violation> {
    // Sweep in start order, keeping the claims still running.
    let mut active: Vec<&TrueClaim> = Vec::new();
    for c in sorted {
        active.retain(|a| a.until > c.from);
        if let Some(a) = active.iter().find(|a| (a.node, a.inc) != (c.node, c.inc)) {
            return Some(Violation {
                kind: ViolationKind::Overlap,
                at: c.from,
                claims: vec![(*a).clone(), (*c).clone()],
                detail: format!("overlap of {}", secs(a.until.min(c.until) - c.from)),
            });
        }
        active.push(c);
    }
    None
}
