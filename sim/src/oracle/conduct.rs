//! Conduct: what an agent promises its operator when its NATS connection misbehaves.
//!
//! * a frozen connection (nothing arrives, nothing fails) is noticed: the agent reports
//!   `Disconnected` within three ping intervals of its client
//!   (`MembershipCfg::ping_interval`, a quarter of the lease) and a beat, the time its driver
//!   may spend on one step's publishes;
//! * a stop is served whatever the connection does: an agent asked to stop has stopped within
//!   [`STOP_BOUND`] (its release gets a second, the driver never blocks on a publish);
//! * a disconnected agent does not campaign: from its `Disconnected` report until it reports
//!   the connection back, it asks for no promises under a token it does not hold (a holder's
//!   renewals, under its own token, go on). Judged in program order (the simulator sees each
//!   publish as the agent asks for it), so no clock is involved; simulated runs only (a real
//!   agent's publishes are not watched);
//! * a holder's lease never lapses silently: before its lease ends on its own clock, a running
//!   holder asks to renew it (a lease request under its token) or gives it up (its claim
//!   ends, and it releases). A holder that steps aside for a better-ranked agent releases at
//!   the renewal it does not ask for, so the better agent need not wait for the lease and the
//!   promises given for it. Judged on the holder's clock against its own claim, in program
//!   order with its publishes; simulated runs only.
//!
//! A node that stops running meanwhile (paused, suspended, frozen, killed) is excused: no
//! process can act before it runs again. An agent whose own loop a fault site stalls (a
//! late timer, a long pause before a message, a slow save) gets as much longer to report:
//! the report waits in its queue meanwhile.

use super::{secs, Violation, ViolationKind};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long a stopping agent may take: the release's second (`STOP_FLUSH` in the driver) and
/// as long again for the rest.
pub const STOP_BOUND: Duration = Duration::from_secs(2);

/// What is being watched on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    /// Its connection froze at `since`; it must report `Disconnected` by `by`.
    Freeze { since: u128, by: u128 },
}

/// A lease a process holds, as its latest claim said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lease {
    /// Its fencing token.
    token: u64,
    /// When it ends on the holder's clock (ns).
    until: u128,
    /// Whether the holder has asked to renew it since it claimed it.
    asked: bool,
}

/// The conduct oracle's state.
#[derive(Debug, Clone, Default)]
pub struct Conduct {
    watches: BTreeMap<usize, Watch>,
    /// Processes (node, incarnation) that reported their connection down and not back
    /// since, with when. By process, not node: a clone shares its node's connection.
    cut_off: BTreeMap<(usize, u64), u128>,
    /// Per process, the token of its latest claim.
    held: BTreeMap<(usize, u64), u64>,
    /// Per process, the lease it holds, until it asks to renew it or gives it up.
    leases: BTreeMap<(usize, u64), Lease>,
    /// Nodes whose process is not running now (paused, suspended, frozen).
    stalled: BTreeSet<usize>,
    /// Per node, until when a fault site stalls its agent's loop.
    busy: BTreeMap<usize, u128>,
    /// How long each frozen connection took to be reported, in ns.
    pub noticed: Vec<u128>,
    /// The violations found (the first few).
    pub first: Vec<Violation>,
    /// How many violations.
    pub violations: u64,
}

/// Violations kept in full.
const KEPT: usize = 4;

impl Conduct {
    /// Node `node`'s connection froze at `at`; it must be reported by `by`. A
    /// node whose process is not running is excused, as if it had stalled after the freeze.
    pub fn froze(&mut self, node: usize, at: u128, by: u128) {
        if !self.stalled.contains(&node) {
            let busy = self.busy.get(&node).map_or(0, |u| u.saturating_sub(at));
            self.watches.entry(node).or_insert(Watch::Freeze {
                since: at,
                by: by.saturating_add(busy),
            });
        }
    }

    /// A fault site stalls node `node`'s agent loop from `at` to `until`: what it must report
    /// meanwhile may come as much later.
    pub fn busy(&mut self, node: usize, at: u128, until: u128) {
        // Stalled, the loop may renew after the lease's end (judge `lapses` first).
        self.drop_leases(node);
        let was = self.busy.get(&node).copied().unwrap_or(0);
        let extra = until.saturating_sub(was.max(at));
        if let Some(Watch::Freeze { by, .. }) = self.watches.get_mut(&node) {
            *by = by.saturating_add(extra);
        }
        self.busy.insert(node, was.max(until));
    }

    /// Node `node`'s agent (`id`) reported `Disconnected` at `at`: past its bound, late.
    pub fn disconnected(&mut self, node: usize, id: &str, at: u128) {
        if let Some(w @ Watch::Freeze { since, .. }) = self.watches.remove(&node) {
            self.noticed.push(at.saturating_sub(since));
            self.judge(id, w, at);
        }
    }

    /// Incarnation `inc` of node `node` reported its connection down at `at` (`true`) or
    /// back (`false`): while it is down, the process must not campaign.
    pub fn link(&mut self, node: usize, inc: u64, down: bool, at: u128) {
        if down {
            self.cut_off.entry((node, inc)).or_insert(at);
        } else {
            self.cut_off.remove(&(node, inc));
        }
    }

    /// Incarnation `inc` of node `node` claimed the lease under `token` until `until` on its
    /// clock: its requests under that token are renewals, and before `until` it must ask for
    /// one or give the lease up.
    pub fn claimed(&mut self, node: usize, inc: u64, token: u64, until: u128) {
        self.held.insert((node, inc), token);
        self.leases.insert(
            (node, inc),
            Lease {
                token,
                until,
                asked: false,
            },
        );
    }

    /// Incarnation `inc` of node `node` ended its claim (it gave the lease up and releases
    /// it): nothing more is asked of that lease.
    pub fn claim_ended(&mut self, node: usize, inc: u64) {
        self.leases.remove(&(node, inc));
    }

    /// Node `node`'s clock reads `local` now (`id` names the node, `true_at` places one of its
    /// readings in true time): a lease of one of its processes that has run out with neither
    /// a renewal asked for nor a release is a violation. Called before anything excuses the
    /// node, and whenever one of its processes is heard from.
    pub fn lapses(&mut self, node: usize, local: u128, id: &str, true_at: impl Fn(u128) -> u128) {
        let over: Vec<((usize, u64), Lease)> = self
            .leases
            .range((node, 0)..=(node, u64::MAX))
            .filter(|(_, l)| local >= l.until)
            .map(|(k, l)| (*k, *l))
            .collect();
        for (key, lease) in over {
            self.leases.remove(&key);
            if !lease.asked {
                self.found(Violation {
                    kind: ViolationKind::SilentLapse,
                    at: true_at(lease.until),
                    claims: Vec::new(),
                    detail: format!(
                        "{id} (incarnation {}) let its lease under token {} run out at {} on its clock, neither renewing nor releasing it",
                        key.1,
                        lease.token,
                        secs(lease.until)
                    ),
                });
            }
        }
    }

    /// Incarnation `inc` of node `node` (`id`) asked at `at` for promises under `token` (a
    /// lease request, as it called publish): while it has reported its connection down, only
    /// a renewal of the lease it holds may be asked for.
    pub fn requested(&mut self, node: usize, inc: u64, id: &str, at: u128, token: u64) {
        if let Some(l) = self.leases.get_mut(&(node, inc)).filter(|l| l.token == token) {
            l.asked = true;
        }
        let Some(&since) = self.cut_off.get(&(node, inc)) else {
            return;
        };
        if self.held.get(&(node, inc)) == Some(&token) {
            return;
        }
        self.found(Violation {
            kind: ViolationKind::CampaignDisconnected,
            at,
            claims: Vec::new(),
            detail: format!(
                "{id} asked for promises under token {token} at {}, its connection reported down since {}",
                secs(at),
                secs(since)
            ),
        });
    }

    /// Node `node`'s connection thawed at `at` (`id` names it): unreported past its bound is a
    /// violation.
    pub fn thawed(&mut self, node: usize, id: &str, at: u128) {
        if let Some(w) = self.watches.remove(&node) {
            self.judge(id, w, at);
        }
    }

    /// Node `node` stopped running (paused, suspended, frozen, killed) or began anew: what
    /// was watched on it is excused.
    pub fn excuse(&mut self, node: usize) {
        self.watches.remove(&node);
        self.drop_leases(node);
    }

    /// What node `node`'s processes must still do for their leases is excused (judge
    /// [`Conduct::lapses`] first: what ran out before is not).
    pub fn drop_leases(&mut self, node: usize) {
        self.leases.retain(|(n, _), _| *n != node);
    }

    /// Node `node`'s process stops running (`true`: paused, suspended, frozen; what was
    /// watched on it is excused) or runs again.
    pub fn stalled(&mut self, node: usize, stalled: bool) {
        if stalled {
            self.excuse(node);
            self.stalled.insert(node);
        } else {
            self.stalled.remove(&node);
        }
    }

    /// A stop asked of node `id` at `at` was not done within [`STOP_BOUND`], while the node ran.
    pub fn stop_hung(&mut self, id: &str, at: u128) {
        self.found(Violation {
            kind: ViolationKind::StopHung,
            at: at + STOP_BOUND.as_nanos(),
            claims: Vec::new(),
            detail: format!(
                "{id} was asked to stop at {} and had not stopped {:?} later",
                secs(at),
                STOP_BOUND
            ),
        });
    }

    /// The run ended at `end` (`ids` names the nodes): what is still watched is judged then.
    pub fn finish(&mut self, end: u128, ids: &[String]) {
        for (node, w) in std::mem::take(&mut self.watches) {
            self.judge(ids.get(node).map_or("?", String::as_str), w, end);
        }
    }

    fn judge(&mut self, id: &str, w: Watch, now: u128) {
        let Watch::Freeze { since, by } = w;
        if now > by {
            self.found(Violation {
                kind: ViolationKind::Unnoticed,
                at: by,
                claims: Vec::new(),
                detail: format!(
                    "{id}'s connection froze at {} and its agent had not reported it by {} ({} later)",
                    secs(since),
                    secs(by),
                    secs(by - since)
                ),
            });
        }
    }

    fn found(&mut self, v: Violation) {
        self.violations += 1;
        if self.first.len() < KEPT {
            self.first.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u128 = 1_000_000;

    #[test]
    fn a_campaign_while_cut_off_is_a_violation_and_a_renewal_or_a_campaign_once_back_is_not() {
        let mut c = Conduct::default();
        c.requested(0, 1, "n0", MS, 1);
        c.claimed(0, 1, 1, 5000 * MS);
        c.link(0, 1, true, 10 * MS);
        c.requested(0, 1, "n0", 20 * MS, 1);
        assert_eq!(c.violations, 0, "a holder's renewal under its own token");
        c.requested(0, 1, "n0", 30 * MS, 2);
        assert_eq!(c.violations, 1, "a new token while cut off");
        assert_eq!(c.first[0].kind, ViolationKind::CampaignDisconnected);
        assert!(
            c.first[0].detail.contains("down since 0.010000000s"),
            "{}",
            c.first[0].detail
        );
        c.requested(1, 1, "n1", 30 * MS, 2);
        assert_eq!(c.violations, 1, "another node, connected");
        c.link(0, 1, false, 35 * MS);
        c.requested(0, 1, "n0", 40 * MS, 3);
        assert_eq!(c.violations, 1, "back");
        // Another process of the node (a restart, a clone) has its own connection state and
        // holds nothing of the first's.
        c.link(0, 1, true, 50 * MS);
        c.requested(0, 2, "n0", 60 * MS, 3);
        assert_eq!(c.violations, 1, "the other process has not reported a cut");
        c.link(0, 2, true, 70 * MS);
        c.requested(0, 2, "n0", 80 * MS, 1);
        assert_eq!(
            c.violations, 2,
            "token 1 was claimed by the first process, not this one"
        );
    }

    #[test]
    fn a_lease_run_out_unrenewed_and_unreleased_is_a_violation_and_a_renewal_or_a_release_is_not() {
        // The holder's clock reads true time plus 1 s.
        let true_at = |l: u128| l - 1000 * MS;
        let mut c = Conduct::default();
        c.claimed(0, 1, 7, 3000 * MS);
        c.lapses(0, 2999 * MS, "n0", true_at);
        assert_eq!(c.violations, 0, "not run out yet");
        c.requested(0, 1, "n0", 1500 * MS, 7);
        c.lapses(0, 3000 * MS, "n0", true_at);
        assert_eq!(c.violations, 0, "a renewal was asked for (it may still fail)");
        c.claimed(0, 1, 7, 5000 * MS);
        c.requested(0, 1, "n0", 3200 * MS, 8);
        c.requested(1, 1, "n1", 3200 * MS, 7);
        c.lapses(0, 6000 * MS, "n0", true_at);
        assert_eq!(
            c.violations, 1,
            "another token, or another node's request, renews nothing"
        );
        let v = &c.first[0];
        assert_eq!((v.kind, v.at), (ViolationKind::SilentLapse, 4000 * MS));
        assert!(v.detail.contains("token 7 run out at 5.000000000s"), "{}", v.detail);
        c.lapses(0, 9000 * MS, "n0", true_at);
        assert_eq!(c.violations, 1, "judged once");
        // Released (the claim ended): nothing is asked of it.
        c.claimed(0, 2, 9, 10_000 * MS);
        c.claim_ended(0, 2);
        c.lapses(0, 11_000 * MS, "n0", true_at);
        assert_eq!(c.violations, 1);
        // Processes are apart: a clone's lease and the original's.
        c.claimed(0, 3, 10, 12_000 * MS);
        c.claimed(0, 4, 10, 12_000 * MS);
        c.requested(0, 3, "n0", 11_500 * MS, 10);
        c.lapses(0, 12_000 * MS, "n0", true_at);
        assert_eq!(c.violations, 2, "incarnation 4 asked for nothing");
        assert!(c.first[1].detail.contains("incarnation 4"), "{}", c.first[1].detail);
    }

    #[test]
    fn the_lease_of_a_node_held_up_is_excused_and_its_next_one_is_judged() {
        let true_at = |l: u128| l;
        let mut c = Conduct::default();
        c.claimed(0, 1, 1, 2000 * MS);
        c.claimed(1, 1, 2, 2000 * MS);
        c.claimed(2, 1, 3, 2000 * MS);
        c.claimed(3, 1, 4, 2000 * MS);
        c.stalled(0, true);
        c.busy(1, 1000 * MS, 1500 * MS);
        c.excuse(2);
        for n in 0..4 {
            c.lapses(n, 3000 * MS, "n", true_at);
        }
        assert_eq!(c.violations, 1, "paused, stalled by a fault site, killed: excused");
        assert_eq!(c.first[0].at, 2000 * MS);
        c.stalled(0, false);
        c.claimed(0, 1, 5, 4000 * MS);
        c.lapses(0, 4000 * MS, "n0", true_at);
        assert_eq!(c.violations, 2, "running again, its next lease is judged");
    }

    #[test]
    fn a_fault_site_stall_gives_the_report_as_much_longer() {
        // Frozen at 0, due by 1 s; the agent's loop stalls 0.5–1.3 s (two stalls, 0.3 s
        // overlapping): due by 1.8 s.
        let mut c = Conduct::default();
        c.froze(0, 0, 1000 * MS);
        c.busy(0, 500 * MS, 1000 * MS);
        c.busy(0, 700 * MS, 1300 * MS);
        c.disconnected(0, "n0", 1700 * MS);
        assert_eq!(c.violations, 0, "within 1 s and the 0.8 s stalled");
        c.froze(0, 2000 * MS, 3000 * MS);
        c.disconnected(0, "n0", 3100 * MS);
        assert_eq!(c.violations, 1, "a stall before the freeze gives nothing");
        // A freeze during a stall: due that much later.
        c.busy(1, 4000 * MS, 4600 * MS);
        c.froze(1, 4200 * MS, 5200 * MS);
        c.disconnected(1, "n1", 5500 * MS);
        assert_eq!(c.violations, 1, "0.4 s of the stall came after the freeze");
        c.froze(1, 6000 * MS, 7000 * MS);
        c.thawed(1, "n1", 7100 * MS);
        assert_eq!(c.violations, 2);
    }

    #[test]
    fn a_freeze_reported_in_time_passes_and_is_measured() {
        let mut c = Conduct::default();
        c.froze(0, 100 * MS, 900 * MS);
        c.disconnected(0, "n0", 850 * MS);
        c.thawed(0, "n0", 2_000 * MS);
        c.finish(3_000 * MS, &["n0".into()]);
        assert!(c.first.is_empty());
        assert_eq!(c.noticed, vec![750 * MS]);
    }

    #[test]
    fn a_freeze_unreported_past_its_bound_is_a_violation_at_the_thaw_or_the_end() {
        let mut c = Conduct::default();
        c.froze(0, 100 * MS, 900 * MS);
        c.thawed(0, "n0", 901 * MS);
        c.froze(1, 100 * MS, 900 * MS);
        c.finish(1_000 * MS, &["n0".into(), "n1".into()]);
        assert_eq!(c.violations, 2);
        assert!(c
            .first
            .iter()
            .all(|v| v.kind == ViolationKind::Unnoticed && v.at == 900 * MS));
        assert!(c.first[1].detail.starts_with("n1's connection froze at 0.100000000s"));
    }

    #[test]
    fn a_report_after_the_bound_is_late_even_before_the_thaw() {
        let mut c = Conduct::default();
        c.froze(0, 100 * MS, 900 * MS);
        c.disconnected(0, "n0", 950 * MS);
        c.thawed(0, "n0", 2_000 * MS);
        assert_eq!(c.violations, 1);
        assert_eq!(c.noticed, vec![850 * MS], "measured all the same");
    }

    #[test]
    fn a_short_freeze_or_a_stalled_node_is_not_judged() {
        let mut c = Conduct::default();
        c.froze(0, 100 * MS, 900 * MS);
        c.thawed(0, "n0", 500 * MS);
        c.froze(1, 100 * MS, 900 * MS);
        c.excuse(1);
        c.finish(5_000 * MS, &["n0".into(), "n1".into()]);
        assert_eq!(c.violations, 0);
    }

    #[test]
    fn a_freeze_that_begins_while_the_node_is_stalled_is_excused_and_one_after_is_not() {
        let mut c = Conduct::default();
        c.stalled(0, true);
        c.froze(0, 100 * MS, 900 * MS);
        c.thawed(0, "n0", 2_000 * MS);
        assert_eq!(
            c.violations, 0,
            "suspended when its connection froze: it could notice nothing"
        );
        c.stalled(0, false);
        c.froze(0, 3_000 * MS, 3_800 * MS);
        c.thawed(0, "n0", 4_000 * MS);
        assert_eq!(c.violations, 1, "running again, a freeze must be noticed");
    }

    #[test]
    fn a_hung_stop_is_a_violation() {
        let mut c = Conduct::default();
        c.stop_hung("n2", 10_000 * MS);
        assert_eq!(c.first[0].kind, ViolationKind::StopHung);
        assert_eq!(c.first[0].at, 12_000 * MS);
    }
}
