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
/// wake-up latency in the simulated scheduler (tens of µs), after madsim's shortest sleep
/// (1 ms: a guard that re-arms its timer less than 1 ms before the deadline, because the
/// lease changed then, wakes up to 1 ms late; seen in `lease-preemptions`, seed 127).
pub const SIM_SLACK: u128 = 2_000_000;

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

pub use leasehold::probe::GuardWord;

/// Incarnations kept per node (the newest): a clone runs beside its original, whose reports
/// keep coming (clones' incarnation numbers are far above any restart's).
const INCARNATIONS: usize = 4;

/// The guards oracle's state: recent claims and reported tokens of every node's recent
/// incarnations, when each node last stopped running, and what was found.
#[derive(Debug, Clone, Default)]
pub struct Guards {
    /// How many nodes (none once the run is over).
    nodes: usize,
    /// By (node, incarnation): its claims' ends by token, on the node's clock (ns).
    claims: BTreeMap<(usize, u64), BTreeMap<Option<u64>, u128>>,
    /// By (node, incarnation): the highest token it reported to its application.
    views: BTreeMap<(usize, u64), u64>,
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

/// The entry of incarnation `inc` of `node` in `map`, made if new; a node's oldest
/// incarnations are forgotten beyond [`INCARNATIONS`].
fn entry<T: Default>(map: &mut BTreeMap<(usize, u64), T>, node: usize, inc: u64) -> &mut T {
    if !map.contains_key(&(node, inc)) {
        let kept: Vec<u64> = map.range((node, 0)..=(node, u64::MAX)).map(|(k, _)| k.1).collect();
        for old in kept.iter().take((kept.len() + 1).saturating_sub(INCARNATIONS)) {
            map.remove(&(node, *old));
        }
    }
    map.entry((node, inc)).or_default()
}

impl Guards {
    /// No claims yet, for `n` nodes; a guard's end may be `slack` ns late.
    pub fn new(n: usize, slack: u128) -> Self {
        Guards {
            nodes: n,
            stall_end: vec![0; n],
            slack,
            ..Default::default()
        }
    }

    /// Incarnation `inc` of `node` claims the lease under `token` until `until` (its clock).
    pub fn claim(&mut self, node: usize, inc: u64, token: Option<u64>, until: u128) {
        if node >= self.nodes {
            return;
        }
        let claims = entry(&mut self.claims, node, inc);
        claims.insert(token, until);
        while claims.len() > KEPT {
            claims.pop_first();
        }
    }

    /// Incarnation `inc` of `node` says its claims ended at `at` (its clock).
    pub fn claim_ended(&mut self, node: usize, inc: u64, at: u128) {
        if node >= self.nodes {
            return;
        }
        entry(&mut self.claims, node, inc)
            .values_mut()
            .for_each(|end| *end = (*end).min(at));
    }

    /// Incarnation `inc` of `node` reported `leader` under `token` to its application at true
    /// time `at`: a token lower than one it reported before is a violation.
    pub fn reported(&mut self, node: usize, inc: u64, leader: &str, token: u64, at: u128) {
        if node >= self.nodes {
            return;
        }
        let view = entry(&mut self.views, node, inc);
        let before = *view;
        *view = before.max(token);
        if token < before {
            self.violations += 1;
            let detail =
                format!("node {node} (incarnation {inc}) reported {leader} under token {token} after token {before}");
            self.first.get_or_insert(Violation {
                kind: ViolationKind::ViewBackwards,
                at,
                claims: Vec::new(),
                detail,
            });
        }
    }

    /// `node` stops running (paused, suspended, frozen) or runs again (resumed, woken, or a
    /// new process started), at true time `now`.
    pub fn stalled(&mut self, node: usize, stalled: bool, now: u128) {
        let Some(end) = self.stall_end.get_mut(node) else {
            return;
        };
        *end = if stalled { u128::MAX } else { now };
    }

    /// Whether `node` has not been running at some time since `since` (stalled, or begun
    /// anew).
    pub fn was_stalled(&self, node: usize, since: u128) -> bool {
        self.stall_end.get(node).is_some_and(|end| *end >= since)
    }

    /// Judges what incarnation `inc` of `node` said of its guard (times on its clock);
    /// `true_at` maps its clock to true time (ns).
    pub fn take(&mut self, node: usize, id: &str, inc: u64, word: GuardWord, true_at: impl Fn(u128) -> u128) {
        if node >= self.nodes {
            // The run is over and judged (a leading future dropped with its node).
            return;
        }
        self.reports += 1;
        let stall_end = self.stall_end[node];
        let (GuardWord::Valid { via, token, at, .. } | GuardWord::Ended { via, token, at }) = word;
        let at = at.as_nanos();
        let end = entry(&mut self.claims, node, inc).get(&token).copied();
        let under = match token {
            Some(t) => format!("token {t}"),
            None => "no token".into(),
        };
        let found = match (word, end) {
            (GuardWord::Valid { .. }, None) => Some(format!(
                "{id}'s {} is valid under {under}, which its agent never claimed",
                name(via)
            )),
            (GuardWord::Valid { until, .. }, Some(end)) if at >= end || until.as_nanos() > end => Some(format!(
                "{id}'s {} (under {under}) said at {} it is valid until {}, but its claim ends at {}",
                name(via),
                secs(true_at(at)),
                secs(true_at(until.as_nanos())),
                secs(true_at(end))
            )),
            (GuardWord::Ended { .. }, Some(end)) if at > end + self.slack && stall_end < true_at(end) => Some(format!(
                "{id}'s {} (under {under}) ended at {}, {} after its claim ended at {}",
                name(via),
                secs(true_at(at)),
                secs(true_at(at) - true_at(end)),
                secs(true_at(end))
            )),
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

    use std::time::Duration;

    fn valid(token: u64, at: u64, until: u64) -> GuardWord {
        GuardWord::Valid {
            via: Via::Guard,
            token: Some(token),
            at: Duration::from_nanos(at),
            until: Duration::from_nanos(until),
        }
    }

    fn ended(token: u64, at: u64) -> GuardWord {
        GuardWord::Ended {
            via: Via::Callbacks,
            token: Some(token),
            at: Duration::from_nanos(at),
        }
    }

    /// A node whose clock runs 10 ns ahead of true time.
    fn judge(g: &mut Guards, ev: GuardWord) -> Option<String> {
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
        assert_eq!(
            judge(&mut g, ended(3, 2_000_000 + SIM_SLACK as u64)),
            None,
            "within the slack"
        );
        let v = judge(&mut g, ended(3, 5_000_000)).unwrap();
        assert!(
            v.contains("callbacks' leading future") && v.contains("0.003000000s after"),
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
        assert!(judge(&mut g, ended(3, 4_500_000)).is_some());
    }

    #[test]
    fn a_new_incarnation_starts_with_no_claims_and_a_clone_beside_its_original_loses_nothing() {
        let mut g = Guards::new(1, SIM_SLACK);
        g.claim(0, 1, Some(3), 2_000);
        g.take(0, "n0", 2, valid(3, 100, 200), |l| l);
        assert_eq!(g.violations, 1, "incarnation 2 never claimed token 3");
        // A clone (another incarnation on the same node) claims and reports between the
        // original's claim and its guard's words: neither forgets the other.
        let mut g = Guards::new(1, SIM_SLACK);
        let clone = 1 << 40;
        g.claim(0, 1, Some(3), 2_000);
        g.reported(0, 1, "n0", 3, 0);
        g.claim(0, clone, Some(4), 3_000);
        g.reported(0, clone, "n0", 4, 0);
        g.take(0, "n0", 1, valid(3, 100, 2_000), |l| l);
        g.take(0, "n0", clone, valid(4, 100, 3_000), |l| l);
        g.reported(0, 1, "n0", 3, 0);
        assert_eq!(g.violations, 0, "{:?}", g.first);
        g.reported(0, clone, "n1", 2, 0);
        assert_eq!(g.violations, 1, "the clone's own view went back");
    }
}
