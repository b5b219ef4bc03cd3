//! The oracle: every lease claim mapped to true time, and one checker per invariant.
//!
//! * [`lease`]: claims by different nodes or incarnations never overlap by any positive amount;
//! * [`tokens`]: the fencing token strictly increases from one holder to the next;
//! * [`liveness`]: in every calm stretch ([`calm`]) and after the last fault, a lease is held
//!   within `leader_within` and then continuously, but for gaps up to the failover bound;
//! * [`guards`]: what applications see (the guard, the callbacks) stays inside their own
//!   agent's claims;
//! * [`conduct`]: an agent notices a frozen connection and stops when told, whatever the
//!   connection does;
//! * [`routing`]: router clients find reachable servers, spread evenly, in distance order.

pub mod calm;
pub mod clocks;
pub mod conduct;
pub mod effects;
pub mod guards;
pub mod lease;
pub mod liveness;
pub mod routing;
pub mod stream;
pub mod tokens;

pub use liveness::check_liveness;

use std::fmt;

/// One claim in true time (ns since the start of the run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrueClaim {
    /// Node index.
    pub node: usize,
    /// Node ID.
    pub id: String,
    /// Which run of the node.
    pub inc: u64,
    /// Fencing token (`lease` only).
    pub token: Option<u64>,
    /// Start of the belief.
    pub from: u128,
    /// End of the belief.
    pub until: u128,
}

impl fmt::Display for TrueClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (incarnation {}", self.id, self.inc)?;
        if let Some(t) = self.token {
            write!(f, ", token {t}")?;
        }
        write!(f, ") held [{}, {})", secs(self.from), secs(self.until))
    }
}

/// When a run is judged for liveness, all in true ns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Live {
    /// The end of the last fault.
    pub last_fault: u128,
    /// How soon after it (and after the start of a calm stretch) a lease must be held
    /// (`leader_within`).
    pub bound: u128,
    /// The longest a calm cluster may be without a holder once it had `bound` to elect one
    /// (`max_gap`, the failover bound).
    pub max_gap: u128,
    /// The calm stretches before the last fault that are longer than `bound`, in order
    /// ([`calm::Calm`]); the calm tail after the last fault is judged besides them.
    pub calm: Vec<(u128, u128)>,
    /// The run's length.
    pub end: u128,
    /// `[expect] no_leader_after`: from then on no lease may be held, and liveness is not
    /// judged.
    pub wait_from: Option<u128>,
    /// `[expect] beliefs_may_overlap`: overlapping claims and tokens out of order are not
    /// failures (the run is judged by its effects).
    pub beliefs_may_overlap: bool,
    /// Whether a majority of the nodes is healthy after the last fault (up, without a clone,
    /// nothing in force on it, the settings most nodes share): only then is the tail judged.
    pub tail_healthy: bool,
}

impl Live {
    /// The stretches liveness judges, in order: the calm stretches longer than `bound`,
    /// and the calm tail `[last_fault, end)` when the run lasted at least `bound` past the
    /// last fault and a majority of the nodes is healthy in it. None when the cluster must
    /// wait for good.
    pub fn judged(&self) -> Vec<(u128, u128)> {
        if self.wait_from.is_some() {
            return Vec::new();
        }
        let mut v: Vec<(u128, u128)> = self
            .calm
            .iter()
            .copied()
            .filter(|(a, b)| *b <= self.last_fault && b - a > self.bound)
            .collect();
        if self.tail_healthy && self.last_fault + self.bound <= self.end {
            v.push((self.last_fault, self.end));
        }
        v
    }
}

/// The oracle's verdict on a run's claims, in time order: safety always; liveness in the
/// stretches [`Live::judged`] names, unless the cluster must wait for good, in which case no
/// claim may reach past `wait_from`.
pub fn verdict(claims: &[TrueClaim], live: &Live) -> Vec<Violation> {
    let mut v = check_safety(claims);
    if live.beliefs_may_overlap {
        v.retain(|v| !matches!(v.kind, ViolationKind::Overlap | ViolationKind::TokenOrder));
    }
    match live.wait_from {
        Some(from) => v.extend(liveness::check_waiting(claims, from)),
        None => v.extend(check_liveness(claims, &live.judged(), live.bound, live.max_gap)),
    }
    v.sort_by_key(|v| v.at);
    v
}

pub use crate::scenario::secs;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    /// Two holders at once.
    Overlap,
    /// A later holder's token is not higher.
    TokenOrder,
    /// No lease held within `leader_within` of a calm stretch's start (or of the last
    /// fault), or a gap longer than `max_gap` after that.
    NoLeader,
    /// A lease held where the cluster had to wait (`[expect] no_leader_after`).
    LeaderWhileWaiting,
    /// The fenced store accepted a stale write (the effects oracle).
    StaleWrite,
    /// An application's guard was valid outside its agent's claim (the guards oracle).
    Guard,
    /// An agent reported an older leader's token after a newer one (the guards oracle).
    ViewBackwards,
    /// The simulation itself panicked.
    Panic,
    /// A router check failed (see the detail).
    Routing,
    /// A frozen connection was not reported in time (the conduct oracle).
    Unnoticed,
    /// An agent asked to stop had not stopped in time (the conduct oracle).
    StopHung,
    /// An agent campaigned while it had reported its connection down (the conduct oracle).
    CampaignDisconnected,
    /// A holder let its lease run out without asking to renew it or releasing it (the
    /// conduct oracle).
    SilentLapse,
    /// An agent's clock jumped ahead at one read by more than a composed read may be off (the
    /// clocks oracle).
    ClockAhead,
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ViolationKind::Overlap => "two leaders at once",
            ViolationKind::TokenOrder => "fencing token did not increase",
            ViolationKind::NoLeader => "no leader in a calm stretch",
            ViolationKind::LeaderWhileWaiting => "a leader where the cluster had to wait",
            ViolationKind::StaleWrite => "the fenced store accepted a stale write",
            ViolationKind::Guard => "an application's guard outlived its lease",
            ViolationKind::ViewBackwards => "an agent reported an older leader after a newer one",
            ViolationKind::Panic => "simulation panicked",
            ViolationKind::Routing => "routing check failed",
            ViolationKind::Unnoticed => "a frozen connection went unnoticed",
            ViolationKind::StopHung => "an agent did not stop when told",
            ViolationKind::CampaignDisconnected => "an agent campaigned while disconnected",
            ViolationKind::SilentLapse => "a holder let its lease run out unrenewed and unreleased",
            ViolationKind::ClockAhead => "an agent's clock jumped ahead",
        })
    }
}

impl ViolationKind {
    /// The kind as a key, the way `[expect] violation` writes it (`overlap`, `token_order`).
    pub fn key(self) -> &'static str {
        match self {
            ViolationKind::Overlap => "overlap",
            ViolationKind::TokenOrder => "token_order",
            ViolationKind::NoLeader => "no_leader",
            ViolationKind::LeaderWhileWaiting => "leader_while_waiting",
            ViolationKind::StaleWrite => "stale_write",
            ViolationKind::Guard => "guard",
            ViolationKind::ViewBackwards => "view_backwards",
            ViolationKind::Panic => "panic",
            ViolationKind::Routing => "routing",
            ViolationKind::Unnoticed => "unnoticed",
            ViolationKind::StopHung => "stop_hung",
            ViolationKind::CampaignDisconnected => "campaign_disconnected",
            ViolationKind::SilentLapse => "silent_lapse",
            ViolationKind::ClockAhead => "clock_ahead",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Its kind.
    pub kind: ViolationKind,
    /// True time it happened (ns).
    pub at: u128,
    /// The claims involved.
    pub claims: Vec<TrueClaim>,
    /// Extra words.
    pub detail: String,
}

impl Violation {
    /// Whether this is a safety violation (not liveness).
    pub fn is_safety(&self) -> bool {
        matches!(
            self.kind,
            ViolationKind::Overlap
                | ViolationKind::TokenOrder
                | ViolationKind::LeaderWhileWaiting
                | ViolationKind::StaleWrite
                | ViolationKind::Guard
                | ViolationKind::ViewBackwards
        )
    }
}

/// Checks safety: the earliest overlap ([`lease`]) and the earliest token out of order
/// ([`tokens`]), in that order.
pub fn check_safety(claims: &[TrueClaim]) -> Vec<Violation> {
    let sorted = by_start(claims);
    let mut found: Vec<Violation> = lease::check_overlap(&sorted).into_iter().collect();
    found.extend(tokens::check_tokens(&sorted));
    found
}

/// Claims of positive length in start order (ties by node, then incarnation).
fn by_start(claims: &[TrueClaim]) -> Vec<&TrueClaim> {
    let mut sorted: Vec<&TrueClaim> = claims.iter().filter(|c| c.until > c.from).collect();
    sorted.sort_by_key(|c| (c.from, c.node, c.inc));
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(node: usize, inc: u64, token: u64, from: u128, until: u128) -> TrueClaim {
        TrueClaim {
            node,
            id: format!("n{node}"),
            inc,
            token: Some(token),
            from,
            until,
        }
    }

    #[test]
    fn disjoint_successive_holders_pass() {
        let claims = [
            c(0, 1, 1, 0, 10),
            c(0, 1, 1, 5, 15),
            c(1, 1, 2, 15, 30),
            c(0, 2, 3, 30, 40),
        ];
        assert!(check_safety(&claims).is_empty());
    }

    #[test]
    fn any_positive_overlap_is_caught_and_named() {
        let v = check_safety(&[c(0, 1, 1, 0, 10), c(1, 1, 2, 9, 20)]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].kind, ViolationKind::Overlap);
        assert_eq!(v[0].at, 9);
        assert_eq!((v[0].claims[0].node, v[0].claims[1].node), (0, 1));
    }

    #[test]
    fn two_incarnations_of_one_node_are_different_holders() {
        let v = check_safety(&[c(0, 1, 1, 0, 10), c(0, 2, 2, 5, 20)]);
        assert_eq!(v[0].kind, ViolationKind::Overlap);
    }

    #[test]
    fn a_token_that_does_not_grow_is_caught_even_without_overlap() {
        let v = check_safety(&[c(0, 1, 5, 0, 10), c(1, 1, 5, 10, 20)]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].kind, ViolationKind::TokenOrder);
        let v = check_safety(&[c(0, 1, 5, 0, 10), c(1, 1, 6, 10, 20), c(0, 1, 5, 20, 30)]);
        assert_eq!(
            v[0].kind,
            ViolationKind::TokenOrder,
            "a holder coming back with an old token"
        );
    }
}
