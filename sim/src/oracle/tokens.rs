//! Fencing tokens: every claim's token is above every token an earlier, other holder (node
//! or incarnation) held, so a store that refuses lower tokens never accepts a stale leader.

use super::{TrueClaim, Violation, ViolationKind};

/// The earliest token out of order among `sorted` (claims in start order), if any.
pub fn check_tokens(sorted: &[&TrueClaim]) -> Option<Violation> {
    let mut best: Vec<&TrueClaim> = Vec::new(); // highest-token claim per incarnation so far
    for c in sorted {
        let Some(tok) = c.token else { continue };
        if let Some(prev) = best
            .iter()
            .find(|p| (p.node, p.inc) != (c.node, c.inc) && p.token >= Some(tok))
        {
            return Some(Violation {
                kind: ViolationKind::TokenOrder,
                at: c.from,
                claims: vec![(*prev).clone(), (*c).clone()],
                detail: format!("token {tok} after token {}", prev.token.unwrap_or(0)),
            });
        }
        match best.iter_mut().find(|p| (p.node, p.inc) == (c.node, c.inc)) {
            Some(p) if p.token < c.token => *p = c,
            Some(_) => {}
            None => best.push(c),
        }
    }
    None
}
