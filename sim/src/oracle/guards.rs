//! Guards: what applications act on. The claims the lease checkers judge are the agent's
//! beliefs as its observer hears them; an application sees them through the public API
//! instead: a [`Leadership`](leasehold::Leadership) guard (`is_valid()`, `token()`, `lost()`)
//! or the callbacks' leading future. Every node runs the applications of `leasehold::probe`,
//! which report what their guards say, and each report is judged on the node's own clock
//! against the claims its agent made:
//!
//! * a guard is valid only inside a claim of its agent under the guard's own token: not
//!   before, not after the claim ended (given up, or run out on the agent's clock);
//! * the guard's end (`lost()` resolving, the leading future dropped) comes no later than
//!   the claim's end, give or take the time a woken task takes to run ([`SIM_SLACK`] in the
//!   simulator, [`REAL_SLACK`] for real processes), unless the node was not running then
//!   (paused, suspended, frozen: no application can act before it runs again). `is_valid()`
//!   itself has no slack: it is false from the claim's end on.
//!
//! Since claims by different holders never overlap (the lease checker), neither can guards
//! inside them: no two guards are valid at once.
//!
//! It also judges the leader every agent reports to its application (`Notice::Leader`): within
//! one incarnation, the token never goes backwards (a stale heartbeat must not make a follower
//! report an old leader).

use super::{secs, Violation, ViolationKind};
use std::collections::BTreeMap;

/// How late a guard's end may come after its claim's end in the simulator (ns): a timer's
/// wake-up latency in the simulated scheduler (tens of µs).
pub const SIM_SLACK: u128 = 1_000_000;

/// The same for real processes (ns): a woken task's scheduling latency on a loaded machine
/// (1 ms has been seen on two cores running three agents and three servers).
pub const REAL_SLACK: u128 = 20_000_000;

/// Claims kept per node (the latest), to judge a guard that ends after a newer claim began.
const KEPT: usize = 8;

pub use leasehold::probe::Via;

fn name(via: Via) -> &'static str {
    match via {
        Via::Guard => "guard",
        Via::Callbacks => "callbacks' leading future",
    }
}

/// What an application saw, on its node's clock (ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardEvent {
    /// At `at`, the guard said it is valid until `until`, under `token`.
    Valid {
        /// Which API.
        via: Via,
        /// The guard's token.
        token: Option<u64>,
        /// When it was asked.
        at: u128,
        /// The end it gave (`at` + `remaining()`).
        until: u128,
    },
    /// At `at`, the guard ended (`lost()` resolved; the leading future was dropped).
    Ended {
        /// Which API.
        via: Via,
        /// The guard's token.
        token: Option<u64>,
        /// When.
        at: u128,
    },
}

/// The guards oracle's state: every node's recent claims, when each node last stopped
/// running, and what was found.
#[derive(Debug, Clone, Default)]
pub struct Guards {
    /// Per node: the incarnation whose claims are kept, and its claims' ends by token.
    claims: Vec<(u64, BTreeMap<Option<u64>, u128>)>,
    /// Per node: the incarnation whose reports are kept, and the highest token it reported.
    views: Vec<(u64, u64)>,
    /// Per node: the true time its last stall ended (`u128::MAX` while it lasts).
    stall_end: Vec<u128>,
    /// How late a guard's end may be (ns).
    slack: u128,
    /// Reports judged.
    pub reports: u64,
    /// Reports that broke a rule.
    pub violations: u64,
    /// The first, as a violation.
    pub first: Option<Violation>,
}

impl Guards {
    /// No claims yet, for `n` nodes; a guard's end may be `slack` ns late.
    pub fn new(n: usize, slack: u128) -> Self {
        Guards {
            claims: vec![(0, BTreeMap::new()); n],
            views: vec![(0, 0); n],
            stall_end: vec![0; n],
            slack,
            ..Default::default()
        }
    }

    fn of(&mut self, node: usize, inc: u64) -> &mut BTreeMap<Option<u64>, u128> {
        let slot = &mut self.claims[node];
        if slot.0 != inc {
            *slot = (inc, BTreeMap::new());
        }
        &mut slot.1
    }

    /// Incarnation `inc` of `node` claims the lease under `token` until `until` (its clock).
    pub fn claim(&mut self, node: usize, inc: u64, token: Option<u64>, until: u128) {
        if node >= self.claims.len() {
            return;
        }
        let claims = self.of(node, inc);
        claims.insert(token, until);
        while claims.len() > KEPT {
            claims.pop_first();
        }
    }

    /// Incarnation `inc` of `node` says its claims ended at `at` (its clock).
    pub fn claim_ended(&mut self, node: usize, inc: u64, at: u128) {
        if node >= self.claims.len() {
            return;
        }
        self.of(node, inc).values_mut().for_each(|end| *end = (*end).min(at));
    }

    /// Incarnation `inc` of `node` reported `leader` under `token` to its application at true
    /// time `at`: a token lower than one it reported before is a violation.
    pub fn reported(&mut self, node: usize, inc: u64, leader: &str, token: u64, at: u128) {
        let Some(view) = self.views.get_mut(node) else {
            return;
        };
        if view.0 != inc {
            *view = (inc, 0);
        }
        if token < view.1 {
            self.violations += 1;
            let detail = format!(
                "node {node} (incarnation {inc}) reported {leader} under token {token} after token {}",
                view.1
            );
            self.first.get_or_insert(Violation {
                kind: ViolationKind::ViewBackwards,
                at,
                claims: Vec::new(),
                detail,
            });
        }
        view.1 = view.1.max(token);
    }

    /// `node` stops running (paused, suspended, frozen) or runs again, at true time `now`.
    pub fn stalled(&mut self, node: usize, stalled: bool, now: u128) {
        let Some(end) = self.stall_end.get_mut(node) else {
            return;
        };
        *end = if stalled { u128::MAX } else { now };
    }

    /// Judges what incarnation `inc` of `node` reported; `true_at` maps its clock to true
    /// time.
    pub fn take(&mut self, node: usize, id: &str, inc: u64, ev: GuardEvent, true_at: impl Fn(u128) -> u128) {
        if node >= self.claims.len() {
            // The run is over and judged (a leading future dropped with its node).
            return;
        }
        self.reports += 1;
        let stall_end = self.stall_end[node];
        let (token, at) = match ev {
            GuardEvent::Valid { token, at, .. } | GuardEvent::Ended { token, at, .. } => (token, at),
        };
        let end = self.of(node, inc).get(&token).copied();
        let under = match token {
            Some(t) => format!("token {t}"),
            None => "no token".into(),
        };
        let found = match (ev, end) {
            (GuardEvent::Valid { via, .. }, None) => Some(format!(
                "{id}'s {} is valid under {under}, which its agent never claimed",
                name(via)
            )),
            (GuardEvent::Valid { via, until, .. }, Some(end)) if at >= end || until > end => Some(format!(
                "{id}'s {} (under {under}) said at {} it is valid until {}, but its claim ends at {}",
                name(via),
                secs(true_at(at)),
                secs(true_at(until)),
                secs(true_at(end))
            )),
            (GuardEvent::Ended { via, .. }, Some(end)) if at > end + self.slack && stall_end < true_at(end) => {
                Some(format!(
                    "{id}'s {} (under {under}) ended at {}, {} after its claim ended at {}",
                    name(via),
                    secs(true_at(at)),
                    secs(true_at(at) - true_at(end)),
                    secs(true_at(end))
                ))
            }
            _ => None,
        };
        if let Some(detail) = found {
            self.violations += 1;
            self.first.get_or_insert(Violation {
                kind: ViolationKind::Guard,
                at: true_at(at),
                claims: Vec::new(),
                detail,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(token: u64, at: u128, until: u128) -> GuardEvent {
        GuardEvent::Valid {
            via: Via::Guard,
            token: Some(token),
            at,
            until,
        }
    }

    fn ended(token: u64, at: u128) -> GuardEvent {
        GuardEvent::Ended {
            via: Via::Callbacks,
            token: Some(token),
            at,
        }
    }

    /// A node whose clock runs 10 ns ahead of true time.
    fn judge(g: &mut Guards, ev: GuardEvent) -> Option<String> {
        let before = g.violations;
        g.take(0, "n0", 1, ev, |local| local - 10);
        (g.violations > before).then(|| g.first.as_ref().map(|v| v.detail.clone()).unwrap_or_default())
    }

    #[test]
    fn a_guard_inside_its_claim_passes_and_one_past_its_end_or_under_another_token_is_caught() {
        let mut g = Guards::new(1, SIM_SLACK);
        g.claim(0, 1, Some(3), 1_000);
        assert_eq!(judge(&mut g, valid(3, 100, 1_000)), None);
        g.claim(0, 1, Some(3), 2_000);
        assert_eq!(judge(&mut g, valid(3, 1_500, 2_000)), None, "renewed");
        assert!(judge(&mut g, valid(4, 1_500, 2_000)).unwrap().contains("never claimed"));
        let mut g = Guards::new(1, SIM_SLACK);
        g.claim(0, 1, Some(3), 2_000);
        g.claim_ended(0, 1, 1_200);
        let v = judge(&mut g, valid(3, 1_300, 2_000)).unwrap();
        assert!(
            v.contains("valid until") && v.contains("claim ends at 0.000001190s"),
            "{v}"
        );
        assert_eq!(g.first.as_ref().map(|v| v.at), Some(1_290), "in true time");
    }

    #[test]
    fn a_guard_must_end_with_its_claim_unless_its_node_was_not_running() {
        let mut g = Guards::new(1, SIM_SLACK);
        g.claim(0, 1, Some(3), 5_000_000);
        g.claim_ended(0, 1, 2_000_000);
        assert_eq!(judge(&mut g, ended(3, 2_000_000 + SIM_SLACK)), None, "within the slack");
        let v = judge(&mut g, ended(3, 4_000_000)).unwrap();
        assert!(
            v.contains("callbacks' leading future") && v.contains("0.002000000s after"),
            "{v}"
        );
        // A pause that ended after the claim did excuses a late end; one that ended before
        // does not.
        let mut g = Guards::new(1, SIM_SLACK);
        g.claim(0, 1, Some(3), 2_000_000);
        g.stalled(0, true, 500_000);
        g.stalled(0, false, 3_500_000);
        assert_eq!(judge(&mut g, ended(3, 3_500_000)), None);
        let mut g = Guards::new(1, SIM_SLACK);
        g.claim(0, 1, Some(3), 2_000_000);
        g.stalled(0, true, 500_000);
        g.stalled(0, false, 1_000_000);
        assert!(judge(&mut g, ended(3, 3_500_000)).is_some());
    }

    #[test]
    fn a_new_incarnation_starts_with_no_claims() {
        let mut g = Guards::new(1, SIM_SLACK);
        g.claim(0, 1, Some(3), 2_000);
        g.take(0, "n0", 2, valid(3, 100, 200), |l| l);
        assert_eq!(g.violations, 1, "incarnation 2 never claimed token 3");
    }
}
