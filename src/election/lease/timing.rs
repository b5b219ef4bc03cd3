//! Timing: the durations derived from the configuration, jitter, and the adaptive wait of a
//! campaign with the slow state it leads to (a round trip too long to renew in time).

use super::LeaseElection;
use crate::config::{Bug, MembershipCfg};
use crate::election::{Output, Publish};
use crate::wire::{LeaseRecover, LeaseRecovered};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::time::Duration;

/// The timing of the `lease` algorithm, derived from [`MembershipCfg`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long a granter's promise lasts, on the granter's clock (`lease_time`).
    pub promise: Duration,
    /// How long a holder holds, on its clock, counted from before its request.
    pub hold: Duration,
    /// How long a restarted agent grants nothing.
    pub quarantine: Duration,
    /// How long a campaign waits for a majority before giving up.
    pub attempt_timeout: Duration,
    /// The heartbeat period; also the request resend period.
    pub beat: Duration,
    /// Silence after which a member counts as gone.
    pub member_timeout: Duration,
    /// Agents in the cluster.
    pub cluster_size: usize,
    /// Promises needed to hold a lease (a majority of `cluster_size`).
    pub quorum: usize,
    /// State files that may be lost or rolled back at once (see
    /// [`MembershipCfg::state_loss_tolerance`]).
    pub loss_tolerance: usize,
    /// The planted `trust_own_file` bug: a start that read its file trusts it.
    pub trust_own_file: bool,
}

impl LeaseTiming {
    /// Derives the timing from a configuration (bug knobs included).
    pub fn new(cfg: &MembershipCfg) -> Self {
        let promise = cfg.lease_time;
        let ppm = u128::from(cfg.max_drift_ppm);
        let hold = if cfg.bug_knobs.has(Bug::IgnoreDrift) {
            promise
        } else {
            // hold/(1−ε) < promise/(1+ε), less 1 ms so rounding can never reach equality.
            let ns = promise.as_nanos() * (1_000_000 - ppm) / (1_000_000 + ppm);
            Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX)).saturating_sub(Duration::from_millis(1))
        };
        LeaseTiming {
            promise,
            hold,
            quarantine: promise,
            attempt_timeout: (cfg.beat * 3).max(promise / 10).min(hold / 2),
            beat: cfg.beat,
            member_timeout: cfg.member_timeout,
            cluster_size: cfg.cluster_size,
            quorum: cfg.quorum(),
            loss_tolerance: cfg.loss_tolerance(),
            trust_own_file: cfg.bug_knobs.has(Bug::TrustOwnFile),
        }
    }
}

/// This agent's campaigns could not gather a majority's answers within half a hold: the round
/// trip to the others is too long for a lease it won to be renewed in time. It says it is
/// waiting, so the others neither defer to its rank nor step aside for it, and once per
/// promise period it asks its peers a question (a [`LeaseRecover`]) to measure the round trip
/// again.
#[derive(Debug, Clone, Hash)]
pub(super) struct Slow {
    pub(super) nonce: u64,
    pub(super) sent: Duration,
    pub(super) answers: BTreeSet<String>,
    pub(super) probe_at: Duration,
}

/// A random duration from zero to `max`, both included.
pub(super) fn jitter(rng: &mut ChaCha8Rng, max: Duration) -> Duration {
    let max = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(if max == 0 { 0 } else { rng.gen_range(0..=max) })
}

impl LeaseElection {
    /// A slow agent's probe: once a promise period, a question to its peers that measures the
    /// round trip again.
    pub(super) fn probe_if_slow(&mut self, now: Duration, out: &mut Vec<Output>) {
        if let Some(s) = &mut self.slow {
            if now >= s.probe_at {
                s.probe_at = now + self.t.promise;
                s.sent = now;
                s.nonce = self.rng.gen();
                s.answers.clear();
                out.push(Output::Publish(Publish::Recover(LeaseRecover {
                    who: self.me.clone(),
                    nonce: s.nonce,
                })));
            }
        }
    }

    /// An attempt ran out of time before a majority had answered at all (granted or refused):
    /// the next waits twice as long, and once an attempt that waited half a hold still heard
    /// too few, this agent is slow (see [`Slow`]).
    pub(super) fn too_few_answers(&mut self, now: Duration) {
        // (`CampaignWhileDisconnected` keeps the agent before issue 31 whole: it predates this.)
        if self.knobs.has(Bug::DeferToSlow) || self.knobs.has(Bug::CampaignWhileDisconnected) {
            return;
        }
        let cap = self.t.hold / 2;
        if self.attempt_wait < cap {
            self.attempt_wait = (self.attempt_wait * 2).min(cap);
        } else if self.slow.is_none() {
            self.slow = Some(Slow {
                nonce: 0,
                sent: now,
                answers: BTreeSet::new(),
                probe_at: now + self.t.promise,
            });
        }
    }

    /// An answer to a slow agent's probe: once its own and its peers' answers make a majority
    /// within half a hold, it is no longer slow.
    pub(super) fn probe_answered(&mut self, now: Duration, ans: LeaseRecovered) {
        let Some(s) = &mut self.slow else { return };
        if ans.nonce != s.nonce || s.nonce == 0 {
            return;
        }
        s.answers.insert(ans.peer.id);
        let round_trip = now.saturating_sub(s.sent);
        if s.answers.len() + 1 >= self.quorum() && round_trip < self.t.hold / 2 {
            self.slow = None;
            self.attempt_wait = (round_trip * 2).clamp(self.t.attempt_timeout, self.t.hold / 2);
        }
    }
}
