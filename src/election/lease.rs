//! The `lease` algorithm: quorum leases with fencing tokens.
//!
//! A candidate asks every agent for a *promise*; a granter promises, on its own monotonic
//! clock, not to promise anyone else for `lease_time`. The candidate holds the lease once a
//! majority promised, counting it from *before* it asked and for a shorter time (`hold`), so
//! that under a drift bound ε its lease ends in true time before any granter's promise does:
//! `hold < lease_time · (1−ε)/(1+ε)`. Two majorities share a granter, so two holders never
//! overlap. A restarted agent has forgotten its promises and grants nothing for one promise
//! period (quarantine). Tokens only grow: a granter promises a token only if it is above the
//! highest it has promised (or equal, to the same candidate, for renewals), and keeps that
//! highest token in [`Durable`](crate::Durable) storage, so tokens keep growing across restarts.
//!
//! Rank preference is a liveness matter only: agents campaign when they know no live holder
//! and believe themselves the best-ranked live member; granters refuse candidates ranked
//! worse than a live member they know; a holder that sees a better-ranked live member stops
//! renewing and lets its lease run out.

use crate::config::{Bug, BugKnobs, ClusterState, MembershipCfg};
use crate::election::{Notice, Output, Publish, Report};
use crate::storage::{Durable, SizeEvidence};
use crate::wire::{
    agent_loc_cmp, id_in_range, AgentLoc, Heartbeat, Incarnation, LeaseRecover, LeaseRecovered, LeaseRelease,
    LeaseReply, LeaseRequest, LeaseView, MemberList, MAX_COUNTER,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
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
        }
    }
}

#[derive(Debug, Clone)]
struct Promise {
    to: Incarnation,
    token: u64,
    until: Duration,
}

#[derive(Debug, Clone)]
struct Held {
    token: u64,
    until: Duration,
    renew_at: Duration,
}

#[derive(Debug, Clone)]
struct Attempt {
    id: u64,
    token: u64,
    t0: Duration,
    grants: BTreeSet<String>,
    refusals: BTreeSet<String>,
    deadline: Duration,
    resend_at: Duration,
    /// Granted replies received, duplicates included (only the planted
    /// `CountDuplicateGrants` bug looks at it).
    granted_msgs: usize,
}

/// A start that has not yet learned the highest token in use from enough peers.
#[derive(Debug, Clone)]
struct Recovery {
    nonce: u64,
    answers: BTreeSet<String>,
    need: usize,
    max: u64,
    resend_at: Duration,
    /// When to say again what the wait is for.
    report_at: Duration,
}

/// This agent's campaigns could not gather a majority's answers within half a hold: the round
/// trip to the others is too long for a lease it won to be renewed in time. It says it is
/// waiting, so the others neither defer to its rank nor step aside for it, and once per
/// promise period it asks its peers a question (a [`LeaseRecover`]) to measure the round trip
/// again.
#[derive(Debug, Clone)]
struct Slow {
    nonce: u64,
    sent: Duration,
    answers: BTreeSet<String>,
    probe_at: Duration,
}

/// How often a start that waits to recover says what it waits for.
pub(crate) const WAIT_REPORT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Member {
    loc: AgentLoc,
    inc: u64,
    run: u64,
    /// The `cluster_size` its heartbeats say (0: not said).
    cluster_size: u64,
    last_seen: Duration,
    lease: Option<(u64, Duration)>,
    config: u64,
    /// It resigned and does not campaign: its rank does not hold others back.
    passive: bool,
    /// It cannot campaign yet: a holder does not step aside for it.
    waiting: bool,
    /// It promises nothing yet: a candidate does not count on its promise.
    quarantined: bool,
}

/// Whether two locations are equal but for `lease_expires` (every field is named, so a new
/// one cannot be forgotten here).
fn same_but_lease(a: &AgentLoc, b: &AgentLoc) -> bool {
    let AgentLoc {
        id,
        nats_host,
        nats_client_port,
        grpc,
        lease_expires: _,
        rank,
        pid,
    } = b;
    a.id == *id
        && a.nats_host == *nats_host
        && a.nats_client_port == *nats_client_port
        && a.grpc == *grpc
        && a.rank == *rank
        && a.pid == *pid
}

/// How far above the highest token it knows an agent accepts a token from the network.
pub const MAX_TOKEN_JUMP: u64 = 1 << 32;

/// One agent's `lease` election state.
#[derive(Debug)]
pub struct LeaseElection {
    t: LeaseTiming,
    knobs: BugKnobs,
    me: Incarnation,
    loc: AgentLoc,
    rng: ChaCha8Rng,
    quarantine_until: Duration,
    durable: Durable,
    promise: Option<Promise>,
    held: Option<Held>,
    attempt: Option<Attempt>,
    members: BTreeMap<String, Member>,
    max_token_seen: u64,
    next_beat: Duration,
    next_campaign: Duration,
    reported_leader: Option<(Option<String>, Option<u64>)>,
    /// The token of the newest lease this agent has held or heard a peer (same settings)
    /// hold. A lease with a lower token has ended (the newer one was granted after it), so a
    /// heartbeat that still carries it is stale: delayed, replayed, flushed from a reconnect
    /// buffer, or sent by a holder that was frozen. It is not believed, so what this agent
    /// reports never goes back to an older leader.
    newest_lease: u64,
    /// The connection to the server is down: requests would not go out, and replies would
    /// not come back, so campaigns would only burn tokens.
    disconnected: bool,
    /// After a reconnect, no campaign before this: the current holder's heartbeats are heard
    /// first, so a returning agent does not start an election while one is held.
    hear_first_until: Duration,
    stopped: bool,
    /// Resigned: follows, grants and beats, but does not campaign.
    passive: bool,
    config: u64,
    /// [`MembershipCfg::settings_digest`]: what evidence of a larger cluster is kept under.
    settings: u64,
    /// Peers reported as configured for another cluster size, with that size.
    size_mismatches: BTreeSet<(String, u64)>,
    recovery: Option<Recovery>,
    /// How many distinct peers must report a token far above anything known before it is
    /// believed (`cluster_size - quorum + 1`, see `learn`).
    recovery_need: usize,
    /// Whether this agent's knowledge is whole: it loaded its state, started a brand-new
    /// cluster, or has recovered. Only then do its recovery answers count.
    whole: bool,
    /// Whether this start found no usable state (missing, unreadable or written while
    /// waiting).
    lost_state: bool,
    /// Another process with this agent's ID was heard: until when it counts as live.
    duplicate_until: Option<Duration>,
    /// Tokens far above anything known, by the peer that claimed them (see `learn`).
    high_claims: BTreeMap<String, u64>,
    mismatches: BTreeSet<(String, u64)>,
    rejected: u64,
    /// A better-ranked member has been heard (only the planted `DeferForever` looks at it).
    heard_better: bool,
    /// This agent has held a lease (only the planted `DropRenewals` looks at it).
    has_held: bool,
    /// How long the next campaign waits for a majority: `attempt_timeout`, doubled after each
    /// attempt that heard too few answers in time, up to half a hold; after a win, twice the
    /// round trip it measured (within the same bounds).
    attempt_wait: Duration,
    /// Set while this agent's campaigns cannot gather a majority's answers in time.
    slow: Option<Slow>,
}

impl LeaseElection {
    /// Starts a new incarnation at local time `now` from what storage kept (`None`: no state
    /// was found). The first output persists the new incarnation number; run it before
    /// anything else.
    ///
    /// Unless the operator declared a brand-new cluster and there is no state, the agent
    /// cannot prove that its earlier incarnations' promises have run out, nor that its state
    /// file is current (it may have been lost or rolled back): it grants nothing for one
    /// promise period, and promises or campaigns only once peers beyond any majority that
    /// excludes it have told it the highest token they know.
    pub fn new(cfg: &MembershipCfg, stored: Option<Durable>, now: Duration, seed: u64) -> (Self, Vec<Output>) {
        let t = LeaseTiming::new(cfg);
        let knobs = cfg.bug_knobs;
        // A state written while its start was still waiting knows nothing: it counts as lost
        // (only its incarnation number is kept, so incarnations still grow).
        let missing = stored
            .as_ref()
            .is_none_or(|d| d.recovering && !knobs.has(Bug::WholeWhileWaiting));
        let mut durable = match stored {
            Some(d) if !missing => d,
            Some(d) => Durable {
                incarnation: d.incarnation,
                ..Durable::default()
            },
            None => Durable::default(),
        };
        durable.incarnation = durable.incarnation.saturating_add(1).min(MAX_COUNTER);
        let fresh = missing && (cfg.initial_cluster_state == ClusterState::New || knobs.has(Bug::TrustMissingState));
        let quarantine_until = if fresh { now } else { now + t.quarantine };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let me = Incarnation {
            id: cfg.id.clone(),
            inc: durable.incarnation,
            // From a stream of its own, so the jitter and attempt IDs a seed gives do not
            // depend on it; never 0, which stands for "not said".
            run: if knobs.has(Bug::IgnoreDuplicateId) {
                0
            } else {
                ChaCha8Rng::seed_from_u64(seed ^ 0x7275_6e5f_6964_0000)
                    .gen::<u64>()
                    .max(1)
            },
        };
        let need = recovery_need(&t, missing);
        let recovery = (!fresh && need > 0).then(|| Recovery {
            nonce: rng.gen(),
            answers: BTreeSet::new(),
            need,
            max: 0,
            resend_at: now,
            report_at: now,
        });
        // Listen for a couple of beats before the first campaign, so the agent knows who is live.
        let first = now + t.beat * 2 + jitter(&mut rng, t.beat);
        let e = LeaseElection {
            knobs,
            loc: cfg.my_loc(),
            me,
            rng,
            quarantine_until,
            max_token_seen: durable.max_token,
            durable,
            promise: None,
            held: None,
            attempt: None,
            members: BTreeMap::new(),
            next_beat: now,
            next_campaign: first,
            // Nothing to report until a leader is known.
            reported_leader: Some((None, None)),
            newest_lease: 0,
            disconnected: false,
            hear_first_until: Duration::ZERO,
            stopped: false,
            passive: false,
            config: cfg.safety_digest(),
            settings: cfg.settings_digest(),
            size_mismatches: BTreeSet::new(),
            recovery,
            recovery_need: t.cluster_size - t.quorum + 1,
            whole: !missing || fresh,
            lost_state: missing && !fresh,
            duplicate_until: None,
            high_claims: BTreeMap::new(),
            mismatches: BTreeSet::new(),
            rejected: 0,
            heard_better: false,
            has_held: false,
            attempt_wait: t.attempt_timeout,
            slow: None,
            t,
        };
        // A start that has not recovered marks what it writes, so that the next start does
        // not take it as whole (the wait would end at the first restart).
        let mut e = e;
        e.durable.recovering = !e.whole && !knobs.has(Bug::WholeWhileWaiting);
        if e.durable.larger_cluster.is_some_and(|l| l.digest != e.settings) {
            e.durable.larger_cluster = None; // the settings changed: the evidence was about the old
        }
        let out = vec![Output::Persist(e.durable.clone())];
        (e, out)
    }

    /// Messages dropped so far because a value was out of its documented range.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Whether this agent still waits to learn the highest token in use from its peers.
    pub fn recovering(&self) -> bool {
        self.recovery.is_some()
    }

    /// This incarnation's identity.
    pub fn me(&self) -> &Incarnation {
        &self.me
    }

    /// The derived timing.
    pub fn timing(&self) -> &LeaseTiming {
        &self.t
    }

    /// The lease this agent holds at `now`, as (token, until).
    pub fn held(&self, now: Duration) -> Option<(u64, Duration)> {
        self.held.as_ref().filter(|h| now < h.until).map(|h| (h.token, h.until))
    }

    /// The live members other than this agent, best-ranked first.
    pub fn live_members(&self, now: Duration) -> Vec<AgentLoc> {
        let mut v: Vec<AgentLoc> = self
            .members
            .values()
            .filter(|m| self.is_live(m, now))
            .map(|m| m.loc.clone())
            .collect();
        v.sort_by(agent_loc_cmp);
        v
    }

    /// When the driver should call [`LeaseElection::tick`] next, at the latest. After a tick at
    /// `now` this is always later than `now`, so a driver never spins.
    pub fn next_wakeup(&self) -> Duration {
        let mut t = self.next_beat;
        if let Some(a) = &self.attempt {
            t = t.min(a.resend_at).min(a.deadline);
        } else if let Some(h) = &self.held {
            t = t.min(h.renew_at);
        } else {
            t = t.min(self.next_campaign);
        }
        if let Some(h) = &self.held {
            t = t.min(h.until);
        }
        if let Some(r) = &self.recovery {
            t = t.min(r.resend_at);
        }
        if let Some(s) = &self.slow {
            t = t.min(s.probe_at);
        }
        t
    }

    /// Advances timers: heartbeats, expiry, member timeouts, renewals and campaigns.
    pub fn tick(&mut self, now: Duration) -> Vec<Output> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        if self.held.as_ref().is_some_and(|h| now >= h.until) {
            self.held = None;
        }
        // A holder steps aside for a better-ranked agent at a renewal, before this step
        // publishes anything: a publish may wait for the network, and the claim must have
        // ended by the time the notice of its end is seen.
        let renewal_due = self.attempt.is_none() && self.held.as_ref().is_some_and(|h| now >= h.renew_at);
        if renewal_due && self.better_ready_member(now) {
            if let Some(h) = &mut self.held {
                h.renew_at = now + self.t.beat;
            }
            if !self.knobs.has(Bug::StepAsideSilently) {
                // A handover: released here, the lease (and the promises given for it) need
                // not run out before the better agent can campaign.
                self.give_up(now, &mut out);
            }
        }
        let lost: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| !self.is_live(m, now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in lost {
            if let Some(m) = self.members.remove(&k) {
                out.push(Output::Notice(Notice::MemberLost(m.loc.clone())));
                out.push(report(Report::Lost, String::new(), vec![m.loc]));
            }
        }
        if now >= self.next_beat {
            out.push(Output::Publish(Publish::Heartbeat(self.heartbeat(now))));
            self.next_beat = now + self.t.beat;
        }
        if let Some(r) = &mut self.recovery {
            if now >= r.resend_at {
                r.resend_at = now + self.t.beat;
                out.push(Output::Publish(Publish::Recover(LeaseRecover {
                    who: self.me.clone(),
                    nonce: r.nonce,
                })));
            }
            if now >= r.report_at {
                r.report_at = now + WAIT_REPORT;
                out.push(Output::Notice(Notice::WaitingForRecovery {
                    answered: r.answers.iter().cloned().collect(),
                    need: r.need,
                    lost_state: self.lost_state,
                }));
            }
        }
        if let Some(a) = &mut self.attempt {
            if now >= a.deadline {
                let answered = a.grants.len() + a.refusals.len();
                let token = a.token;
                self.attempt = None;
                self.abandon(token, &mut out);
                self.next_campaign = now + jitter(&mut self.rng, self.t.beat * 2);
                if answered < self.quorum() {
                    self.too_few_answers(now);
                }
            } else if now >= a.resend_at {
                a.resend_at = now + self.t.beat;
                out.push(Output::Publish(Publish::Request(LeaseRequest {
                    candidate: self.me.clone(),
                    rank: self.loc.rank,
                    token: a.token,
                    attempt: a.id,
                    config: self.config,
                    cluster_size: self.t.cluster_size as u64,
                })));
            }
        }
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
        // The planted `DropRenewals`: timers run on, but once a lease was held nothing is
        // asked for again.
        let dropped = self.knobs.has(Bug::DropRenewals) && self.has_held;
        if self.attempt.is_none() {
            if let Some(h) = &mut self.held {
                if now >= h.renew_at {
                    // Due timers that cannot act now are looked at again next beat.
                    h.renew_at = now + self.t.beat;
                    if !dropped {
                        let token = self.held.as_ref().map_or(0, |h| h.token);
                        self.start_attempt(now, token, &mut out);
                    }
                }
            } else if now >= self.next_campaign {
                self.next_campaign = now + self.t.beat;
                if !self.passive && !dropped && self.may_campaign(now) {
                    let max = self.known_max();
                    let token = if self.knobs.has(Bug::UncheckedRanges) {
                        max.wrapping_add(1)
                    } else {
                        max.saturating_add(1)
                    };
                    self.start_attempt(now, token, &mut out);
                }
            }
        }
        self.report_leader(now, &mut out);
        out
    }

    /// Handles a heartbeat from another agent.
    pub fn on_heartbeat(&mut self, now: Duration, hb: &Heartbeat) -> Vec<Output> {
        let mut out = Vec::new();
        if self.stopped || hb.loc.id.is_empty() {
            return out;
        }
        let tokens_ok = hb.max_token <= MAX_COUNTER && hb.lease.as_ref().is_none_or(|l| l.token <= MAX_COUNTER);
        let size_ok = hb.cluster_size <= crate::wire::MAX_CLUSTER_SIZE as u64;
        if !self.in_range(id_in_range(&hb.loc.id) && hb.inc <= MAX_COUNTER && tokens_ok && size_ok) {
            return out;
        }
        if hb.loc.id == self.me.id {
            // Our own heartbeat, or another process's with our ID. An older incarnation's is a
            // late message from an earlier run of ours; the same or a later one with another
            // run ID is a process running now.
            if hb.run != self.me.run && hb.inc >= self.me.inc {
                self.heard_duplicate(now, hb.inc, hb.run, &mut out);
            }
            return out;
        }
        self.check_config(&hb.loc.id, hb.config, &mut out);
        if hb.config == self.config || self.knobs.has(Bug::SkipConfigCheck) || self.knobs.has(Bug::UncheckedRanges) {
            self.learn(now, &hb.loc.id, hb.max_token);
        }
        // A lease longer than a promise cannot be held, and an implausible token is not
        // believed: the heartbeat still counts as a sign of life.
        let lease = hb.lease.as_ref().filter(|l| {
            let ok = self.plausible(l.token) && u128::from(l.remaining_ms) <= self.t.promise.as_millis();
            self.in_range(ok)
        });
        let lease = lease.map(|l| (l.token, now + Duration::from_millis(l.remaining_ms)));
        // A lease older than the newest known has ended, whatever the heartbeat says: it is
        // not believed (the heartbeat still counts as a sign of life).
        let peer = hb.config == self.config || self.knobs.has(Bug::SkipConfigCheck);
        let lease = lease.filter(|(tok, _)| peer && !self.is_stale(*tok));
        if let Some((tok, _)) = lease {
            self.newest_lease = self.newest_lease.max(tok);
        }
        // Members are kept without a lease (the lease is tracked apart, on this clock).
        let without_lease = || AgentLoc {
            lease_expires: None,
            ..hb.loc.clone()
        };
        match self.members.get_mut(&hb.loc.id) {
            Some(m) if m.inc == hb.inc && m.run == hb.run => {
                m.last_seen = now;
                m.lease = lease;
                // Most heartbeats repeat the last one: copy the location only when it changed.
                if !same_but_lease(&m.loc, &hb.loc) {
                    m.loc = without_lease();
                }
                m.config = hb.config;
                m.cluster_size = hb.cluster_size;
                m.passive = hb.passive;
                m.waiting = hb.waiting;
                m.quarantined = hb.quarantined;
            }
            Some(m) if m.inc > hb.inc => {} // a late heartbeat from an older run
            _ => {
                let loc = without_lease();
                out.push(Output::Notice(Notice::MemberAdded(loc.clone())));
                out.push(report(Report::Added, String::new(), vec![loc.clone()]));
                self.members.insert(
                    loc.id.clone(),
                    Member {
                        loc,
                        inc: hb.inc,
                        run: hb.run,
                        cluster_size: hb.cluster_size,
                        last_seen: now,
                        lease,
                        config: hb.config,
                        passive: hb.passive,
                        waiting: hb.waiting,
                        quarantined: hb.quarantined,
                    },
                );
            }
        }
        if peer && agent_loc_cmp(&hb.loc, &self.loc) == Ordering::Less {
            self.heard_better = true;
        }
        if hb.cluster_size != 0 && hb.cluster_size != self.t.cluster_size as u64 {
            let size = hb.cluster_size;
            if self.size_mismatches.len() < 256 && self.size_mismatches.insert((hb.loc.id.clone(), size)) {
                out.push(Output::Notice(Notice::SizeMismatch {
                    peer: hb.loc.id.clone(),
                    ours: self.t.cluster_size,
                    theirs: size,
                }));
            }
        }
        if hb.cluster_size > self.t.cluster_size as u64 {
            self.check_size_evidence(now, hb.config, hb.cluster_size, &mut out);
        }
        self.check_evidence_outlived(now, &mut out);
        self.report_leader(now, &mut out);
        out
    }

    /// Another process with this agent's ID (incarnation `inc`, run `run`) was heard now:
    /// neither promise nor campaign while it is heard, and give up any lease held.
    fn heard_duplicate(&mut self, now: Duration, inc: u64, run: u64, out: &mut Vec<Output>) {
        if self.knobs.has(Bug::IgnoreDuplicateId) {
            return;
        }
        let new = self.duplicate_until.is_none_or(|until| now >= until);
        self.duplicate_until = Some(now + self.t.member_timeout);
        if new {
            out.push(Output::Notice(Notice::DuplicateId { inc, run }));
            self.give_up(now, out);
        }
    }

    /// Whether another process with this agent's ID is heard.
    fn duplicate_heard(&self, now: Duration) -> bool {
        self.duplicate_until.is_some_and(|until| now < until)
    }

    /// Looks at the live members with settings `config` that say their cluster has `size`
    /// agents, more than ours: a majority of that cluster (and at least two) agreeing shows
    /// that our size is too small. From then on this agent counts promises as that cluster
    /// would ([`LeaseElection::quorum`]); the evidence is saved, so it outlasts a cut and a
    /// restart. (A majority, not one member: strangers must agree in numbers to raise it.)
    fn check_size_evidence(&mut self, now: Duration, config: u64, size: u64, out: &mut Vec<Output>) {
        let planted = self.knobs.has(Bug::ForgetSizeEvidence) || self.knobs.has(Bug::SkipConfigCheck);
        if planted || self.evidenced_size() >= size {
            return;
        }
        let seen = self
            .members
            .values()
            .filter(|m| self.is_live(m, now) && m.config == config && m.cluster_size == size)
            .count();
        let majority = usize::try_from(size / 2 + 1).unwrap_or(usize::MAX);
        if seen >= majority.max(2) {
            self.durable.larger_cluster = Some(SizeEvidence {
                digest: self.settings,
                cluster_size: size,
            });
            out.push(Output::Persist(self.durable.clone()));
            out.push(Output::Notice(Notice::Undersized {
                cluster_size: self.t.cluster_size,
                seen: usize::try_from(size).unwrap_or(usize::MAX),
            }));
            if self.held.is_some() && self.quorum() > self.t.quorum {
                self.give_up(now, out);
            }
        }
    }

    /// Forgets the evidence of a larger cluster once the whole cluster this agent is
    /// configured for is live with its settings, and no live agent says a larger size: the
    /// cluster was made smaller (one agent at a time, so each saw the larger one for a while).
    /// Never for a cluster of one or two: a deployment mistake of that size would then lead
    /// beside the real cluster once cut off from it. (Agents that are three or more and
    /// misconfigured alike can promise each other a majority whatever the evidence says.)
    fn check_evidence_outlived(&mut self, now: Duration, out: &mut Vec<Output>) {
        let planted = self.knobs.has(Bug::ForgetSizeEvidence) || self.knobs.has(Bug::SkipConfigCheck);
        if planted || self.evidenced_size() == 0 || self.t.cluster_size < 3 {
            return;
        }
        let mine = self.t.cluster_size as u64;
        let live = self.members.values().filter(|m| self.is_live(m, now));
        let (mut same, mut larger) = (1, false);
        for m in live {
            same += usize::from(m.config == self.config && m.cluster_size == mine);
            larger |= m.cluster_size > mine;
        }
        if same >= self.t.cluster_size && !larger {
            self.durable.larger_cluster = None;
            out.push(Output::Persist(self.durable.clone()));
        }
    }

    /// The largest cluster size this agent has evidence of (0: none).
    fn evidenced_size(&self) -> u64 {
        self.durable
            .larger_cluster
            .filter(|l| l.digest == self.settings)
            .map_or(0, |l| l.cluster_size)
    }

    /// Promises needed to hold a lease: a majority of `cluster_size`, or of a larger cluster
    /// this agent has evidence of.
    fn quorum(&self) -> usize {
        let larger = usize::try_from(self.evidenced_size() / 2 + 1).unwrap_or(usize::MAX);
        self.t.quorum.max(larger)
    }

    /// Handles another agent's request for a promise; `reply_to` is where the answer goes.
    pub fn on_request(&mut self, now: Duration, req: LeaseRequest, reply_to: String) -> Vec<Output> {
        let mut out = Vec::new();
        if self.stopped || req.candidate == self.me {
            return out;
        }
        let c = &req.candidate;
        let size_ok = req.cluster_size <= crate::wire::MAX_CLUSTER_SIZE as u64;
        if !self.in_range(id_in_range(&c.id) && c.inc <= MAX_COUNTER && req.token <= MAX_COUNTER && size_ok) {
            return out;
        }
        if c.id == self.me.id {
            // A candidate with our ID that is not us.
            if c.inc >= self.me.inc {
                let (inc, run) = (c.inc, c.run);
                self.heard_duplicate(now, inc, run, &mut out);
            }
            return out;
        }
        if !self.plausible(req.token) {
            // Far above anything known: believed only once enough peers say so.
            if req.config == self.config {
                let id = c.id.clone();
                self.learn(now, &id, req.token);
            }
            self.rejected += 1;
            return out;
        }
        let granted = self.grant(now, &req, &mut out);
        out.push(Output::Publish(Publish::Reply {
            to: reply_to,
            reply: LeaseReply {
                granter: self.me.clone(),
                attempt: req.attempt,
                token: req.token,
                granted,
                max_token: self.durable.max_token,
            },
        }));
        out
    }

    /// Handles an answer to this agent's own request.
    pub fn on_reply(&mut self, now: Duration, reply: LeaseReply) -> Vec<Output> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        let g = &reply.granter;
        if !self.in_range(id_in_range(&g.id) && g.inc <= MAX_COUNTER && reply.max_token <= MAX_COUNTER) {
            return out;
        }
        let stale_ok = self.knobs.has(Bug::AcceptStaleReplies);
        let Some(a) = &self.attempt else { return out };
        if (reply.attempt != a.id && !stale_ok) || reply.token != a.token {
            return out;
        }
        // Only an answer to our own attempt tells what its granter knows.
        let granter = g.id.clone();
        self.learn(now, &granter, reply.max_token);
        // A refusal from an agent configured for a larger cluster says nothing about this
        // campaign's chances: it refuses every candidate configured for a smaller one.
        let mine = self.t.cluster_size as u64;
        let larger = self
            .members
            .get(&reply.granter.id)
            .is_some_and(|m| m.cluster_size > mine);
        let Some(a) = &mut self.attempt else { return out };
        if reply.granted {
            a.granted_msgs += 1;
            a.grants.insert(reply.granter.id);
        } else if !larger {
            a.refusals.insert(reply.granter.id);
        }
        self.check_attempt(now, &mut out);
        out
    }

    /// Handles a holder's early release: its promise here can be forgotten.
    pub fn on_release(&mut self, now: Duration, rel: LeaseRelease) -> Vec<Output> {
        let mut out = Vec::new();
        let h = &rel.holder;
        if !self.in_range(id_in_range(&h.id) && h.inc <= MAX_COUNTER && rel.token <= MAX_COUNTER) {
            return out;
        }
        // Only the promise this release is about: same incarnation, same token (a release
        // replayed later cannot end a newer promise).
        if self
            .promise
            .as_ref()
            .is_some_and(|p| p.to == rel.holder && p.token == rel.token)
        {
            self.promise = None;
        }
        if let Some(m) = self.members.get_mut(&rel.holder.id) {
            if m.inc == rel.holder.inc && m.run == rel.holder.run {
                m.lease = None;
            }
        }
        self.report_leader(now, &mut out);
        out
    }

    /// Answers a starting agent's question for the highest token known; `reply_to` is where the
    /// answer goes.
    pub fn on_recover(&mut self, _now: Duration, req: LeaseRecover, reply_to: String) -> Vec<Output> {
        if self.stopped || req.who.id == self.me.id || !self.in_range(id_in_range(&req.who.id)) {
            return Vec::new();
        }
        vec![Output::Publish(Publish::Recovered {
            to: reply_to,
            answer: LeaseRecovered {
                peer: self.me.clone(),
                nonce: req.nonce,
                max_token: self.known_max(),
                authoritative: self.whole,
            },
        })]
    }

    /// Takes a peer's answer to this agent's own question; with enough of them the agent
    /// knows every token that can be in use and may promise and campaign (after quarantine).
    pub fn on_recovered(&mut self, now: Duration, ans: LeaseRecovered) -> Vec<Output> {
        let mut out = Vec::new();
        // An answer is a peer's durable memory: only the absolute range applies.
        if self.stopped || !self.in_range(id_in_range(&ans.peer.id) && ans.max_token <= MAX_COUNTER) {
            return out;
        }
        if ans.peer.id == self.me.id {
            return out;
        }
        let Some(r) = &mut self.recovery else {
            self.probe_answered(now, ans);
            return out;
        };
        if ans.nonce != r.nonce {
            return out;
        }
        r.max = r.max.max(ans.max_token);
        if ans.authoritative {
            r.answers.insert(ans.peer.id);
        }
        if r.answers.len() < r.need {
            return out;
        }
        let max = r.max;
        self.recovery = None;
        self.whole = true;
        self.max_token_seen = self.max_token_seen.max(max);
        if max > self.durable.max_token || self.durable.recovering {
            // Remember it durably: a granter's memory of the highest token is what makes
            // tokens grow, and this agent's own file did not have it (or was not whole).
            if max > self.durable.max_token {
                self.durable.max_token = max;
                self.durable.owner = None;
            }
            self.durable.recovering = false;
            out.push(Output::Persist(self.durable.clone()));
        }
        out.push(Output::Notice(Notice::Recovered {
            max_token: self.known_max(),
        }));
        self.report_leader(now, &mut out);
        out
    }

    /// The connection to the server changed at `now` (from the driver). While it is down this
    /// agent does not campaign, and drops an attempt under way; once it is back, it listens
    /// for one member timeout before it campaigns.
    pub fn connection(&mut self, now: Duration, c: crate::network::Connection) -> Vec<Output> {
        use crate::network::Connection;
        match c {
            Connection::Disconnected if !self.knobs.has(Bug::CampaignWhileDisconnected) => {
                self.disconnected = true;
                self.attempt = None;
            }
            Connection::Disconnected => {}
            Connection::Connected | Connection::Reconnected => {
                if self.disconnected {
                    self.hear_first_until = now + self.t.member_timeout;
                    self.next_campaign = self.next_campaign.max(self.hear_first_until);
                }
                self.disconnected = false;
            }
        }
        Vec::new()
    }

    /// Gives up the lease at `now` (the claim ends first, then the others are told, as in
    /// [`LeaseElection::stop`]) and stays a follower that does not campaign until
    /// [`LeaseElection::campaign`]; its heartbeats say so, so others do not defer to its rank.
    pub fn resign(&mut self, now: Duration) -> Vec<Output> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        self.passive = true;
        self.give_up(now, &mut out);
        out.push(Output::Publish(Publish::Heartbeat(self.heartbeat(now))));
        self.report_leader(now, &mut out);
        out
    }

    /// Campaigns again after [`LeaseElection::resign`] (from the next beat).
    pub fn campaign(&mut self, now: Duration) -> Vec<Output> {
        self.passive = false;
        self.next_campaign = now;
        Vec::new()
    }

    /// Whether this agent resigned and does not campaign.
    pub fn is_passive(&self) -> bool {
        self.passive
    }

    /// Abandons any attempt and gives the lease up at `now`: the claim ends first, then the
    /// others are told, so no granter forgets its promise while the claim still stands.
    fn give_up(&mut self, now: Duration, out: &mut Vec<Output>) {
        self.attempt = None;
        if let Some(h) = self.held.take() {
            if now < h.until {
                out.push(Output::Notice(Notice::ClaimEnded { at: now }));
                out.push(Output::Publish(Publish::Release(LeaseRelease {
                    holder: self.me.clone(),
                    token: h.token,
                })));
            }
        }
        // Its promise to itself guarded a claim that has ended (or an attempt now abandoned):
        // kept, it would refuse every other candidate for up to a lease, and in a cluster
        // with a member down its promise is one a majority needs.
        // (Its own release, coming back through the server, would clear it too, but only if the
        // server echoes and the release is not lost.)
        if self.promise.as_ref().is_some_and(|p| p.to == self.me) {
            self.promise = None;
        }
    }

    /// Stops for good: ends this agent's claim at `now`, then tells the others (in that order,
    /// so no granter forgets its promise while the claim still stands).
    pub fn stop(&mut self, now: Duration) -> Vec<Output> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        self.stopped = true;
        self.give_up(now, &mut out);
        // A last heartbeat says it no longer campaigns, so no one holds back for its rank
        // until its silence is noticed.
        self.passive = true;
        out.push(Output::Publish(Publish::Heartbeat(self.heartbeat(now))));
        self.report_leader(now, &mut out);
        out
    }

    /// Frees the promises a campaign that failed was given (a renewal's are what its lease
    /// stands on, and are kept). Nothing can be claimed from an abandoned attempt (a late
    /// grant names its attempt, which no longer runs), so granters may forget them at once:
    /// kept, they would refuse every other candidate for a lease, and two candidates whose
    /// campaigns split the granters after a partition would keep each other from winning.
    fn abandon(&mut self, token: u64, out: &mut Vec<Output>) {
        if self.held.is_some() || self.knobs.has(Bug::KeepFailedPromises) {
            return;
        }
        if self
            .promise
            .as_ref()
            .is_some_and(|p| p.to == self.me && p.token == token)
        {
            self.promise = None;
        }
        out.push(Output::Publish(Publish::Release(LeaseRelease {
            holder: self.me.clone(),
            token,
        })));
    }

    /// An attempt ran out of time before a majority had answered at all (granted or refused):
    /// the next waits twice as long, and once an attempt that waited half a hold still heard
    /// too few, this agent is slow (see [`Slow`]).
    fn too_few_answers(&mut self, now: Duration) {
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
    fn probe_answered(&mut self, now: Duration, ans: LeaseRecovered) {
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

    fn heartbeat(&self, now: Duration) -> Heartbeat {
        Heartbeat {
            loc: self.loc.clone(),
            inc: self.me.inc,
            run: self.me.run,
            cluster_size: self.t.cluster_size as u64,
            lease: self.held(now).map(|(token, until)| LeaseView {
                token,
                remaining_ms: u64::try_from((until - now).as_millis()).unwrap_or(u64::MAX),
            }),
            max_token: self.known_max(),
            config: self.config,
            // An agent that does not campaign says so, so others do not defer to its rank.
            passive: self.passive || self.duplicate_heard(now),
            // One that cannot campaign yet says so too: a holder that stepped aside for a
            // returning better-ranked agent still in quarantine would let its lease run out
            // with no one able to follow for the rest of that quarantine. (Others still wait
            // for it rather than campaign: their attempts could not win without its promise
            // in a small cluster, and would only burn tokens.)
            waiting: !self.ready(now),
            quarantined: !self.settled(now),
        }
    }

    /// Whether this agent could campaign now, rank and holders aside: settled, connected, and
    /// hearing at least one peer (an agent that hears no one, a deaf one whose server drops
    /// what is sent to it, could win no majority).
    fn ready(&self, now: Duration) -> bool {
        self.settled(now)
            && !self.disconnected
            && now >= self.hear_first_until
            && !self.stopped
            && self.hears_peers(now)
            && self.slow.is_none()
            && self.viable(now)
    }

    /// Whether enough live agents may promise this one for it to win: its majority, among
    /// those configured for a cluster no larger than its own (the others refuse it) and not
    /// in quarantine. Not so for an old agent once its peers were reconfigured for a larger
    /// cluster, nor for one whose majority needs an agent that has just restarted: it says it
    /// is waiting, so no one defers to its rank (a holder stepping aside for it would leave a
    /// gap until that restart settles).
    fn viable(&self, now: Duration) -> bool {
        let mine = self.t.cluster_size as u64;
        let may_promise = self
            .members
            .values()
            .filter(|m| self.is_peer(m, now) && m.cluster_size <= mine && !m.quarantined)
            .count();
        self.t.cluster_size <= 1 || 1 + may_promise >= self.quorum() || self.knobs.has(Bug::SkipConfigCheck)
    }

    /// Whether a live peer is heard, or there is no one to hear.
    fn hears_peers(&self, now: Duration) -> bool {
        self.t.cluster_size <= 1 || self.members.values().any(|m| self.is_peer(m, now))
    }

    /// Whether a better-ranked live member holds this agent back from campaigning. One that
    /// says it is waiting (it cannot campaign yet, or hears no one) holds it back only while
    /// no majority could be formed without it: then an attempt could not win without its
    /// promise, and would only burn a token.
    fn held_back(&self, now: Duration) -> bool {
        let mut better = self
            .members
            .values()
            .filter(|m| {
                self.is_peer(m, now)
                    && !m.passive
                    && self.may_promise(m)
                    && agent_loc_cmp(&m.loc, &self.loc) == Ordering::Less
            })
            .peekable();
        if self.heard_better && self.knobs.has(Bug::DeferForever) {
            return true;
        }
        if better.peek().is_none() {
            return false;
        }
        if self.knobs.has(Bug::DeferToUnready) || better.any(|m| !m.waiting) {
            return true;
        }
        let ready = 1 + self
            .members
            .values()
            .filter(|m| self.is_peer(m, now) && !m.waiting)
            .count();
        ready < self.quorum()
    }

    /// Whether a token from the network can be real: at most [`MAX_COUNTER`], and at most
    /// [`MAX_TOKEN_JUMP`] above the highest this agent knows (tokens grow by one per election;
    /// no real cluster skips 2^32 of them). A forged token near the limit would otherwise use
    /// the token space up in one message.
    fn plausible(&self, token: u64) -> bool {
        token <= MAX_COUNTER && token <= self.known_max().saturating_add(MAX_TOKEN_JUMP)
    }

    /// The highest token this agent has promised or seen.
    fn known_max(&self) -> u64 {
        self.durable.max_token.max(self.max_token_seen)
    }

    /// Learns that `peer` knows of token `max`. A plausible value is learned at once; one far
    /// above anything known is counted and remembered, and believed once `recovery_need`
    /// distinct peers report at least that much (honest tokens grow by one per election, so
    /// only a stranger's message jumps; a jump that honest agents carry spreads this way).
    /// Only live members with our settings count as peers here: a stranger's requests under
    /// made-up names, or under a member's name with other settings, would otherwise make
    /// agents believe a token near the limit, gossip it, and stop electing for good.
    fn learn(&mut self, now: Duration, peer: &str, max: u64) {
        if self.plausible(max) || self.knobs.has(Bug::UncheckedRanges) {
            self.max_token_seen = self.max_token_seen.max(max);
            return;
        }
        self.rejected += 1;
        if max > MAX_COUNTER || !self.members.get(peer).is_some_and(|m| self.is_peer(m, now)) {
            return;
        }
        if self.high_claims.len() < 256 || self.high_claims.contains_key(peer) {
            self.high_claims.insert(peer.to_string(), max);
        }
        let mut claims: Vec<u64> = self
            .high_claims
            .values()
            .copied()
            .filter(|v| !self.plausible(*v))
            .collect();
        claims.sort_unstable_by(|a, b| b.cmp(a));
        if let Some(&confirmed) = claims.get(self.recovery_need.max(1) - 1) {
            self.max_token_seen = self.max_token_seen.max(confirmed);
            let known = self.known_max();
            self.high_claims.retain(|_, v| *v > known);
        }
    }

    /// Whether this agent's majority is too small for the agents live: then it may not
    /// intersect another holder's, and the agent must not act. For each cluster size `b` at
    /// least its own among the live agents, a holder configured for `b` gathers promises from
    /// the agents configured for at most `b` (the others refuse it); this agent's majority
    /// and that holder's must together exceed those agents. With one size: fewer agents live than
    /// twice its majority (an odd size: no more than the size). While the size changes one
    /// agent at a time in the documented order it never holds (see docs/ARCHITECTURE.md,
    /// "Changing the size").
    fn undersized(&self, now: Duration) -> bool {
        if self.knobs.has(Bug::SkipConfigCheck) {
            return false;
        }
        let mine = self.t.cluster_size as u64;
        // Called every beat: one size (the common case) needs no list.
        let (mut live, mut one_size) = (1usize, true);
        for m in self.members.values().filter(|m| self.is_live(m, now)) {
            live += 1;
            one_size &= m.cluster_size == 0 || m.cluster_size == mine;
        }
        if one_size {
            return self.quorum().saturating_add(self.t.quorum) <= live;
        }
        let sizes: Vec<u64> = self
            .members
            .values()
            .filter(|m| self.is_live(m, now))
            .map(|m| if m.cluster_size == 0 { mine } else { m.cluster_size })
            .chain([mine])
            .collect();
        too_small(self.quorum(), mine, &sizes)
    }

    /// Counts an out-of-range message (unless the range checks are planted away); returns
    /// whether to go on with it.
    fn in_range(&mut self, ok: bool) -> bool {
        if ok || self.knobs.has(Bug::UncheckedRanges) {
            return true;
        }
        self.rejected += 1;
        false
    }

    /// Reports a peer whose safety-relevant settings differ, once per peer and digest.
    fn check_config(&mut self, peer: &str, theirs: u64, out: &mut Vec<Output>) {
        if theirs != self.config && self.mismatches.insert((peer.to_string(), theirs)) {
            out.push(Output::Notice(Notice::ConfigMismatch {
                peer: peer.to_string(),
                ours: self.config,
                theirs,
            }));
        }
    }

    /// Whether this start has waited out its quarantine and learned the highest token.
    fn settled(&self, now: Duration) -> bool {
        (self.knobs.has(Bug::SkipRestartQuarantine) || (now >= self.quarantine_until && self.recovery.is_none()))
            && !self.undersized(now)
            && !self.duplicate_heard(now)
    }

    fn is_live(&self, m: &Member, now: Duration) -> bool {
        now < m.last_seen + self.t.member_timeout
    }

    /// Whether a live member that ranks better than this agent could take over now: a holder
    /// steps aside only for one that is not waiting out a quarantine or a reconnect.
    fn better_ready_member(&self, now: Duration) -> bool {
        self.members.values().any(|m| {
            self.is_peer(m, now)
                && !m.passive
                && self.may_promise(m)
                && (!m.waiting || self.knobs.has(Bug::DeferToUnready))
                && agent_loc_cmp(&m.loc, &self.loc) == Ordering::Less
        })
    }

    /// Whether this agent may promise member `m` (configured for a cluster at least as large
    /// as its own), so its rank counts here: one it would refuse is not deferred to.
    fn may_promise(&self, m: &Member) -> bool {
        m.cluster_size >= self.t.cluster_size as u64 || self.knobs.has(Bug::SkipConfigCheck)
    }

    /// A live member with our safety-relevant settings.
    fn is_peer(&self, m: &Member, now: Duration) -> bool {
        self.is_live(m, now) && (m.config == self.config || self.knobs.has(Bug::SkipConfigCheck))
    }

    /// Whether a lease under `token` is stale: older than the newest lease known.
    fn is_stale(&self, token: u64) -> bool {
        token < self.newest_lease && !self.knobs.has(Bug::TrustStaleHeartbeats)
    }

    /// A live member that holds a lease, as far as its heartbeats tell: the newest lease (two
    /// are believed at once only until the older one's last heartbeat runs out).
    fn known_holder(&self, now: Duration) -> Option<(&str, u64)> {
        let stale_too = self.knobs.has(Bug::TrustStaleHeartbeats);
        let mut holders = self.members.values().filter(|m| self.is_live(m, now)).filter_map(|m| {
            m.lease
                .filter(|(tok, until)| now < *until && !self.is_stale(*tok))
                .map(|(tok, _)| (m.loc.id.as_str(), tok))
        });
        if stale_too {
            // The behaviour before: the first member in ID order.
            return holders.next();
        }
        holders.max_by_key(|(_, tok)| *tok)
    }

    fn may_campaign(&self, now: Duration) -> bool {
        // With evidence of a larger cluster, a majority of it may be out of reach of this
        // agent's own cluster: campaigns would only burn tokens.
        if !self.settled(now) || self.quorum() > self.t.cluster_size {
            return false;
        }
        // (The agent before issue 31 campaigned cut off, hearing no one: the planted bug keeps
        // that whole.)
        let deaf = !self.hears_peers(now) && !self.knobs.has(Bug::CampaignWhileDisconnected);
        // (`KeepFailedPromises` and `CampaignWhileDisconnected` keep the agents before issues
        // 24 and 31 whole: they campaigned without a majority that may promise them in sight.)
        let old = self.knobs.has(Bug::KeepFailedPromises) || self.knobs.has(Bug::CampaignWhileDisconnected);
        let unviable = !self.viable(now) && !old;
        if self.disconnected || now < self.hear_first_until || deaf || unviable {
            return false;
        }
        // A slow agent leaves the campaign to its peers while those that can campaign make a
        // majority without it (then one of them is not held back, see `held_back`); if they
        // do not, trying late is better than not trying.
        if self.slow.is_some() {
            let ready = self.members.values().filter(|m| self.is_peer(m, now) && !m.waiting);
            let (mut count, mut candidate) = (0, false);
            for m in ready {
                count += 1;
                candidate |= !m.passive;
            }
            if candidate && count >= self.quorum() {
                return false;
            }
        }
        let promised_elsewhere = self.promise.as_ref().is_some_and(|p| p.to != self.me && now < p.until);
        !promised_elsewhere && self.known_holder(now).is_none() && !self.held_back(now)
    }

    fn start_attempt(&mut self, now: Duration, token: u64, out: &mut Vec<Output>) {
        // Random, not a counter: a run that reused an earlier run's incarnation (its state file
        // was lost) must not accept that run's replayed answers.
        let id = self.rng.gen::<u64>();
        let req = LeaseRequest {
            candidate: self.me.clone(),
            rank: self.loc.rank,
            token,
            attempt: id,
            config: self.config,
            cluster_size: self.t.cluster_size as u64,
        };
        let mut a = Attempt {
            id,
            token,
            t0: now,
            grants: BTreeSet::new(),
            refusals: BTreeSet::new(),
            deadline: now + self.attempt_wait,
            resend_at: now + self.t.beat,
            granted_msgs: 0,
        };
        if self.grant(now, &req, out) {
            a.granted_msgs += 1;
            a.grants.insert(self.me.id.clone());
        }
        self.attempt = Some(a);
        out.push(Output::Publish(Publish::Request(req)));
        self.check_attempt(now, out);
    }

    /// Decides a promise (to another agent or to itself), recording it if made.
    fn grant(&mut self, now: Duration, req: &LeaseRequest, out: &mut Vec<Output>) -> bool {
        if !self.settled(now) {
            return false;
        }
        if req.config != self.config && !self.knobs.has(Bug::SkipConfigCheck) {
            let peer = req.candidate.id.clone();
            self.check_config(&peer, req.config, out);
            return false;
        }
        // A candidate configured for a smaller cluster counts a smaller majority: among the
        // agents that may promise it, it could win beside another holder. Those configured for
        // a cluster at least as large are safe to promise (see `defers_to`).
        if req.cluster_size < self.t.cluster_size as u64 && !self.knobs.has(Bug::SkipConfigCheck) {
            return false;
        }
        if !self.knobs.has(Bug::GrantIgnoringPromise) {
            if self
                .promise
                .as_ref()
                .is_some_and(|p| p.to != req.candidate && now < p.until)
            {
                return false;
            }
            // Liveness, not safety: do not help a candidate ranked below a live member that
            // could lead now (one waiting out a quarantine or a reconnect cannot).
            let cand = AgentLoc::new(req.candidate.id.clone(), req.rank);
            let me = (!self.passive && self.ready(now)).then_some(&self.loc);
            let unready_too = self.knobs.has(Bug::DeferToUnready);
            let better_known = me
                .into_iter()
                .chain(
                    self.members
                        .values()
                        .filter(|m| {
                            self.is_peer(m, now) && !m.passive && self.may_promise(m) && (!m.waiting || unready_too)
                        })
                        .map(|m| &m.loc),
                )
                .any(|l| l.id != cand.id && agent_loc_cmp(l, &cand) == Ordering::Less);
            if better_known && req.candidate != self.me {
                return false;
            }
        }
        let d = &self.durable;
        let token_ok =
            req.token > d.max_token || (req.token == d.max_token && d.owner.as_ref() == Some(&req.candidate));
        if !token_ok {
            return false;
        }
        self.promise = Some(Promise {
            to: req.candidate.clone(),
            token: req.token,
            until: now + self.t.promise,
        });
        if req.token != d.max_token || d.owner.as_ref() != Some(&req.candidate) {
            self.durable.max_token = req.token;
            self.durable.owner = Some(req.candidate.clone());
            out.push(Output::Persist(self.durable.clone()));
        }
        true
    }

    fn check_attempt(&mut self, now: Duration, out: &mut Vec<Output>) {
        let Some(a) = &self.attempt else { return };
        let granted = if self.knobs.has(Bug::CountDuplicateGrants) {
            a.granted_msgs
        } else {
            a.grants.len()
        };
        let quorum = self.quorum();
        if granted >= quorum {
            let start = if self.knobs.has(Bug::LeaseFromGrant) { now } else { a.t0 };
            let until = start + self.t.hold;
            let token = a.token;
            let round_trip = now.saturating_sub(a.t0);
            self.attempt = None;
            if !self.knobs.has(Bug::DeferToSlow) {
                self.attempt_wait = (round_trip * 2).clamp(self.t.attempt_timeout, self.t.hold / 2);
            }
            self.slow = None;
            if until > now {
                self.has_held = true;
                self.newest_lease = self.newest_lease.max(token);
                self.held = Some(Held {
                    token,
                    until,
                    renew_at: start + self.t.hold / 2,
                });
                out.push(Output::Notice(Notice::Claim {
                    token: Some(token),
                    from: now,
                    until,
                }));
                self.report_leader(now, out);
            }
        } else if a.refusals.len() > self.t.cluster_size.saturating_sub(quorum) {
            // A majority can no longer be reached: give up early and retry later.
            let token = a.token;
            self.attempt = None;
            self.abandon(token, out);
            self.next_campaign = now + self.t.beat + jitter(&mut self.rng, self.t.beat * 2);
        }
    }

    fn report_leader(&mut self, now: Duration, out: &mut Vec<Output>) {
        let (leader, token, until) = match self.held(now) {
            Some((tok, until)) => (Some(self.me.id.as_str()), Some(tok), Some(until)),
            None => match self.known_holder(now) {
                Some((id, tok)) => (Some(id), Some(tok), None),
                None => (None, None, None),
            },
        };
        // Called at every heartbeat: compare before allocating anything.
        let same = self
            .reported_leader
            .as_ref()
            .is_some_and(|(l, t)| l.as_deref() == leader && *t == token);
        if same {
            return;
        }
        let leader = leader.map(str::to_string);
        self.reported_leader = Some((leader.clone(), token));
        if let Some(id) = &leader {
            let loc = match self.members.get(id) {
                Some(m) if *id != self.me.id => m.loc.clone(),
                _ => self.loc.clone(),
            };
            let lead_id = loc.id.clone();
            out.push(Output::Notice(Notice::Elected { leader: loc, token }));
            // hnatsd's member list report, sent at every election in `lease` mode too.
            let mut members: Vec<AgentLoc> = self.members.values().map(|m| m.loc.clone()).collect();
            members.push(self.loc.clone());
            members.sort_by(agent_loc_cmp);
            out.push(report(Report::List, lead_id, members));
        }
        out.push(Output::Notice(Notice::Leader {
            is_me: until.is_some(),
            leader,
            token,
            until,
        }));
    }
}

fn report(kind: Report, lead_id: String, members: Vec<AgentLoc>) -> Output {
    Output::Publish(Publish::Report(kind, MemberList { lead_id, members }))
}

/// How many other agents' authoritative answers a start needs before it may promise or
/// campaign: `cluster_size − quorum + F`, F the state-loss tolerance, at least 1 when this
/// start lost its own state (its loss is one of the F); none when F is 0 (no loss tolerated:
/// every file is trusted). Why: a token T was granted by a majority M. With at most F
/// states damaged (lost, or rolled back, and not yet recovered), this one among them, at
/// least `quorum − F` members of M other than this agent still know T; the other agents
/// number `cluster_size − 1`, so any `cluster_size − quorum + F` of them include one who
/// knows T (see docs/ARCHITECTURE.md, "Rollback tolerance").
fn recovery_need(t: &LeaseTiming, lost: bool) -> usize {
    let f = if lost {
        t.loss_tolerance.max(1)
    } else {
        t.loss_tolerance
    };
    if f == 0 {
        0
    } else {
        t.cluster_size - t.quorum + f
    }
}

/// Whether the majority `quorum` of an agent configured for a cluster of `mine` could miss
/// another holder's among agents configured for `sizes` (every agent, this one included): for
/// some size `b ≥ mine` among them, a holder configured for `b` gathers `b / 2 + 1` promises
/// from the agents configured for at most `b` (the others refuse it), and the two majorities
/// need not share one of those agents.
fn too_small(quorum: usize, mine: u64, sizes: &[u64]) -> bool {
    sizes.iter().filter(|b| **b >= mine).any(|&b| {
        let granters = sizes.iter().filter(|s| **s <= b).count();
        let theirs = usize::try_from(b / 2 + 1).unwrap_or(usize::MAX);
        quorum.saturating_add(theirs) <= granters
    })
}

fn jitter(rng: &mut ChaCha8Rng, max: Duration) -> Duration {
    let max = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(if max == 0 { 0 } else { rng.gen_range(0..=max) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(n: usize, f: Option<usize>) -> MembershipCfg {
        let mut cfg = MembershipCfg::default();
        cfg.id = "me".into();
        cfg.cluster_size = n;
        cfg.state_loss_tolerance = f;
        cfg
    }

    /// `recovery_need`, exhaustively for clusters of up to 7 agents and every tolerance.
    /// Agent 0 restarts, its own state rolled back (it looks whole) or known lost. For every
    /// majority M that granted a token, every set of other agents whose files were rolled
    /// back (they answer, stale) that keeps the count, the restarting agent included, within
    /// F, every set of other agents that know they lost their files (they do not answer) and
    /// every set A of `need` answers from the rest: A includes a member of M whose file is
    /// intact (a witness), or no such A exists and the start waits. And with one answer fewer
    /// some choice misses every witness, so the rule asks for no more than it must.
    #[test]
    fn the_recovery_rule_is_exact_for_every_small_cluster() {
        let ones = |x: u32| x.count_ones() as usize;
        for n in 1..=7usize {
            let q = n / 2 + 1;
            let others = ((1u32 << n) - 1) & !1;
            let subsets = |of: u32| (0..1u32 << n).filter(move |s| s & !of == 0);
            for f in 0..=n / 2 {
                for lost in [false, true] {
                    let need = recovery_need(&LeaseTiming::new(&cfg(n, Some(f))), lost);
                    let f = if lost { f.max(1) } else { f };
                    if f == 0 {
                        assert_eq!(need, 0, "no loss tolerated: every file is trusted");
                        continue;
                    }
                    // Some majority, rolled-back and lost sets, and `k` answers that miss
                    // every witness.
                    let misses = |k: usize, any_lost: bool| {
                        (0..1u32 << n).filter(|m| ones(*m) == q).any(|m| {
                            subsets(others).filter(|u| ones(*u) < f).any(|rolled| {
                                let lost_sets: Vec<u32> = if any_lost {
                                    subsets(others & !rolled).collect()
                                } else {
                                    vec![0]
                                };
                                lost_sets.into_iter().any(|known| {
                                    let witnesses = m & others & !rolled & !known;
                                    subsets(others & !known)
                                        .filter(|a| ones(*a) == k)
                                        .any(|a| a & witnesses == 0)
                                })
                            })
                        })
                    };
                    assert!(
                        !misses(need, true),
                        "n={n} f={f}: {need} answers can miss every witness"
                    );
                    assert!(misses(need - 1, false), "n={n} f={f}: {} answers would do", need - 1);
                }
            }
        }
    }

    #[test]
    fn a_lone_agent_that_lost_its_file_waits_for_good_and_says_what_for() {
        let c = cfg(1, None);
        let (mut sm, _) = LeaseElection::new(&c, None, Duration::ZERO, 3);
        let mut now = Duration::ZERO;
        let mut waits = Vec::new();
        while now < Duration::from_secs(60) {
            for o in sm.tick(now) {
                if let Output::Notice(n @ Notice::WaitingForRecovery { .. }) = o {
                    waits.push(n);
                }
            }
            assert!(sm.held(now).is_none(), "no token 1 again at {now:?}");
            now = sm.next_wakeup().max(now + Duration::from_millis(1));
        }
        assert!(sm.recovering());
        assert_eq!(waits.len(), 12, "said every 5 s: {waits:?}");
        assert_eq!(
            waits[0],
            Notice::WaitingForRecovery {
                answered: Vec::new(),
                need: 1,
                lost_state: true
            }
        );
        // With its file it needs no answers (a lone agent tolerates no loss): it leads after
        // one lease of quarantine, above the token it kept.
        let kept = Durable {
            incarnation: 1,
            max_token: 4,
            ..Durable::default()
        };
        let (mut sm, _) = LeaseElection::new(&c, Some(kept), Duration::ZERO, 3);
        assert!(!sm.recovering());
        let mut now = Duration::ZERO;
        while sm.held(now).is_none() {
            now = sm.next_wakeup().max(now + Duration::from_millis(1));
            sm.tick(now);
            assert!(
                now < c.lease_time + Duration::from_secs(1),
                "it leads after its quarantine"
            );
        }
        assert_eq!(sm.held(now).map(|h| h.0), Some(5));
    }

    #[test]
    fn a_file_written_while_waiting_counts_as_lost_but_keeps_its_incarnation() {
        let stored = Durable {
            incarnation: 4,
            max_token: 0,
            recovering: true,
            ..Durable::default()
        };
        let (sm, out) = LeaseElection::new(&cfg(3, None), Some(stored), Duration::ZERO, 1);
        assert_eq!(sm.me().inc, 5, "incarnations still grow");
        assert!(
            sm.recovering() && sm.lost_state && !sm.whole,
            "not whole: it waits, and its answers do not count"
        );
        match &out[0] {
            Output::Persist(d) => assert!(d.recovering, "what it writes while waiting is marked too"),
            o => panic!("first output {o:?}"),
        }
        // The planted bug trusts it.
        let mut c = cfg(3, None);
        c.bug_knobs = BugKnobs::planted(Bug::WholeWhileWaiting);
        let stored = Durable {
            incarnation: 4,
            recovering: true,
            ..Durable::default()
        };
        let (sm, _) = LeaseElection::new(&c, Some(stored), Duration::ZERO, 1);
        assert!(sm.whole);
    }

    /// A lone agent of a brand-new cluster, holding its lease.
    fn holder(c: &MembershipCfg) -> (LeaseElection, Duration) {
        let mut c = c.clone();
        c.initial_cluster_state = ClusterState::New;
        let (mut sm, _) = LeaseElection::new(&c, None, Duration::ZERO, 7);
        let mut now = Duration::ZERO;
        while sm.held(now).is_none() {
            now = sm.next_wakeup().max(now + Duration::from_millis(1));
            sm.tick(now);
            assert!(now < Duration::from_secs(5), "a lone agent leads");
        }
        (sm, now)
    }

    #[test]
    fn another_process_with_our_id_makes_us_give_up_and_step_aside_while_it_is_heard() {
        let c = cfg(1, None);
        let (mut sm, now) = holder(&c);
        let mut hb = sm.heartbeat(now);
        // Our own heartbeat, echoed back, and an older run's: nothing.
        assert!(sm.on_heartbeat(now, &hb).is_empty());
        hb.run ^= 1;
        hb.inc -= 1;
        assert!(sm.on_heartbeat(now, &hb).is_empty(), "a late message from an older run");
        assert!(sm.held(now).is_some());
        // The same incarnation with another run ID: a second process.
        hb.inc += 1;
        let out = sm.on_heartbeat(now, &hb);
        assert!(out.contains(&Output::Notice(Notice::DuplicateId {
            inc: hb.inc,
            run: hb.run
        })));
        assert!(out.contains(&Output::Notice(Notice::ClaimEnded { at: now })));
        assert!(sm.held(now).is_none(), "it gave its lease up");
        assert!(sm.heartbeat(now).passive, "and says it does not campaign");
        assert!(sm.on_heartbeat(now, &hb).is_empty(), "said once while it is heard");
        let quiet = now + c.member_timeout;
        assert!(!sm.heartbeat(quiet).passive, "gone quiet: it may act again");
    }

    #[test]
    fn a_majority_of_a_larger_cluster_is_evidence_kept_in_the_state_until_the_settings_change() {
        let c = cfg(1, None);
        let (mut sm, now) = holder(&c);
        let peer = |id: &str| Heartbeat {
            loc: AgentLoc::new(id, 9),
            inc: 1,
            run: 3,
            cluster_size: 5,
            lease: None,
            max_token: 0,
            config: 42,
            passive: false,
            waiting: false,
            quarantined: false,
        };
        let out = sm.on_heartbeat(now, &peer("a"));
        assert!(
            !out.iter().any(|o| matches!(o, Output::Persist(_))),
            "one agent is not evidence"
        );
        let out = sm.on_heartbeat(now, &peer("b"));
        assert!(
            !out.iter().any(|o| matches!(o, Output::Persist(_))),
            "two is not a majority of five"
        );
        let out: Vec<Output> = sm.on_heartbeat(now, &peer("c"));
        let saved = out.iter().find_map(|o| match o {
            Output::Persist(d) => d.larger_cluster,
            _ => None,
        });
        assert_eq!(
            saved.map(|l| l.cluster_size),
            Some(5),
            "three of five: kept in the state"
        );
        assert!(out.contains(&Output::Notice(Notice::Undersized {
            cluster_size: 1,
            seen: 5
        })));
        assert!(sm.held(now).is_none(), "and the lease it held alone is given up");
        assert_eq!(sm.quorum(), 3);
        // A restart keeps it; other settings forget it.
        let state = sm.durable.clone();
        let (again, _) = LeaseElection::new(&c, Some(state.clone()), now, 8);
        assert_eq!(again.quorum(), 3, "kept across a restart");
        let mut other = c.clone();
        other.lease_time *= 2;
        let (fresh, _) = LeaseElection::new(&other, Some(state), now, 8);
        assert_eq!(
            fresh.quorum(),
            1,
            "the settings changed: the evidence was about the old ones"
        );
    }

    #[test]
    fn a_members_location_follows_its_heartbeats_without_their_lease_field() {
        let mut cfg = MembershipCfg::default();
        cfg.id = "me".into();
        cfg.cluster_size = 3;
        let now = Duration::from_secs(1);
        let (mut sm, _) = LeaseElection::new(&cfg, None, now, 1);
        let mut hb = Heartbeat {
            loc: AgentLoc::new("peer", 1),
            inc: 1,
            run: 1,
            cluster_size: 3,
            lease: None,
            max_token: 0,
            config: sm.config,
            passive: false,
            waiting: false,
            quarantined: false,
        };
        hb.loc.nats_host = "10.0.0.1".into();
        sm.on_heartbeat(now, &hb);
        assert_eq!(sm.live_members(now)[0].nats_host, "10.0.0.1");
        // The same incarnation moves; a heartbeat that says so updates the member.
        hb.loc.nats_host = "10.0.0.2".into();
        hb.loc.lease_expires = Some(time::OffsetDateTime::UNIX_EPOCH);
        sm.on_heartbeat(now, &hb);
        let peer = &sm.live_members(now)[0];
        assert_eq!(peer.nats_host, "10.0.0.2");
        assert_eq!(peer.lease_expires, None, "members are kept without a lease");
        // Only the lease field differs: nothing to copy, and still none kept.
        hb.loc.lease_expires = Some(time::OffsetDateTime::UNIX_EPOCH + time::Duration::SECOND);
        sm.on_heartbeat(now, &hb);
        assert_eq!(
            sm.live_members(now),
            vec![AgentLoc {
                lease_expires: None,
                ..hb.loc.clone()
            }]
        );
    }

    #[test]
    fn a_stale_heartbeat_never_moves_the_reported_leader_or_token_backwards() {
        let run = |bugs: BugKnobs| {
            let mut c = MembershipCfg::default();
            c.id = "n2".into();
            c.cluster_size = 3;
            c.bug_knobs = bugs;
            let now = Duration::from_secs(1);
            let (mut sm, _) = LeaseElection::new(&c, None, now, 1);
            let config = sm.config;
            let beat = |id: &str, token: u64| Heartbeat {
                loc: AgentLoc::new(id, 1),
                inc: 1,
                run: 1,
                cluster_size: 3,
                lease: Some(crate::wire::LeaseView {
                    token,
                    remaining_ms: 1_500,
                }),
                max_token: token,
                config,
                passive: false,
                waiting: false,
                quarantined: false,
            };
            let mut tokens = Vec::new();
            let mut seen = |out: Vec<Output>| {
                tokens.extend(out.into_iter().filter_map(|o| match o {
                    Output::Notice(Notice::Leader { token: Some(t), .. }) => Some(t),
                    _ => None,
                }))
            };
            seen(sm.on_heartbeat(now, &beat("n0", 1)));
            seen(sm.on_heartbeat(now + Duration::from_millis(500), &beat("n1", 2)));
            // n0's old heartbeat, flushed from its reconnect buffer.
            seen(sm.on_heartbeat(now + Duration::from_millis(600), &beat("n0", 1)));
            seen(sm.on_heartbeat(now + Duration::from_millis(700), &beat("n1", 2)));
            tokens
        };
        assert_eq!(run(BugKnobs::default()), vec![1, 2]);
        let old = run(BugKnobs::planted(Bug::TrustStaleHeartbeats));
        assert!(
            old.windows(2).any(|w| w[1] < w[0]),
            "the old behaviour goes back to token 1: {old:?}"
        );
    }

    #[test]
    fn a_disconnected_agent_burns_no_token_and_listens_before_it_campaigns_again() {
        use crate::network::Connection;
        let run = |bugs: BugKnobs| {
            let mut c = cfg(3, None);
            c.initial_cluster_state = ClusterState::New;
            c.bug_knobs = bugs;
            let (mut sm, _) = LeaseElection::new(&c, None, Duration::ZERO, 7);
            let t = |s: u64| Duration::from_millis(s);
            // A worse-ranked peer it hears (whether it could, cut off, is not the point here).
            let peer = Heartbeat {
                loc: AgentLoc::new("peer".to_string(), 9),
                inc: 1,
                run: 1,
                cluster_size: 3,
                lease: None,
                max_token: 0,
                config: sm.config,
                passive: false,
                waiting: false,
                quarantined: false,
            };
            let start = sm.known_max();
            sm.connection(t(0), Connection::Disconnected);
            // Ten seconds cut off: every request it makes is one token burned.
            let mut requests = 0;
            let mut now = Duration::ZERO;
            while now < t(10_000) {
                now = sm.next_wakeup().max(now + t(1));
                sm.on_heartbeat(now, &peer);
                requests += sm
                    .tick(now)
                    .iter()
                    .filter(|o| matches!(o, Output::Publish(Publish::Request(_))))
                    .count();
            }
            let burned = sm.known_max() - start;
            sm.connection(now, Connection::Reconnected);
            let back = now;
            let mut first = None;
            while first.is_none() && now < back + t(10_000) {
                now = sm.next_wakeup().max(now + t(1));
                sm.on_heartbeat(now, &peer);
                if sm
                    .tick(now)
                    .iter()
                    .any(|o| matches!(o, Output::Publish(Publish::Request(_))))
                {
                    first = Some(now - back);
                }
            }
            (requests, first, burned)
        };
        let (requests, first, max) = run(BugKnobs::default());
        assert_eq!((requests, max), (0, 0), "no campaign, no token burned while cut off");
        let member_timeout = MembershipCfg::default().member_timeout;
        assert!(
            first.is_some_and(|d| d >= member_timeout),
            "it campaigns again only after listening for a member timeout: {first:?}"
        );
        let (requests, _, max) = run(BugKnobs::planted(Bug::CampaignWhileDisconnected));
        assert!(
            requests > 10 && max >= 5,
            "the old behaviour: {requests} requests, {max} tokens burned"
        );
    }

    #[test]
    fn an_agent_that_cannot_campaign_yet_says_so_so_no_holder_steps_aside_for_it() {
        use crate::network::Connection;
        let c = cfg(1, None);
        let stored = Durable {
            incarnation: 3,
            max_token: 5,
            ..Durable::default()
        };
        let t = |ms: u64| Duration::from_millis(ms);
        // A restart: quarantined for a promise period, which its heartbeats say.
        let (sm, _) = LeaseElection::new(&c, Some(stored), t(0), 7);
        assert!(sm.heartbeat(t(1)).waiting, "quarantined: cannot campaign yet");
        assert!(!sm.heartbeat(t(1) + c.lease_time).waiting, "settled");
        // Disconnected, then listening for a member timeout after the reconnect.
        let (mut sm, now) = holder(&c);
        assert!(!sm.heartbeat(now).waiting);
        sm.connection(now, Connection::Disconnected);
        assert!(sm.heartbeat(now).waiting, "disconnected: cannot campaign");
        sm.connection(now, Connection::Reconnected);
        assert!(sm.heartbeat(now).waiting, "listening first after the reconnect");
        assert!(!sm.heartbeat(now + c.member_timeout).waiting, "then ready again");
        // A holder keeps renewing while a better-ranked member is waiting, and steps aside
        // once it is ready (or at once, with the old behaviour planted).
        let renews_beside = |bugs: BugKnobs, waiting: bool| {
            let mut c1 = cfg(1, None);
            c1.my_rank = 5;
            c1.bug_knobs = bugs;
            let (mut sm, mut now) = holder(&c1);
            let better = Heartbeat {
                loc: AgentLoc::new("better".to_string(), 0),
                inc: 1,
                run: 1,
                cluster_size: 1,
                lease: None,
                max_token: 0,
                config: sm.config,
                passive: false,
                waiting,
                quarantined: false,
            };
            let mut renewed = false;
            let end = now + c1.lease_time;
            while now < end {
                now = sm.next_wakeup().max(now + t(1));
                sm.on_heartbeat(now, &better);
                renewed |= sm
                    .tick(now)
                    .iter()
                    .any(|o| matches!(o, Output::Publish(Publish::Request(_))));
            }
            renewed
        };
        assert!(
            renews_beside(BugKnobs::default(), true),
            "renews beside a waiting better agent"
        );
        assert!(
            !renews_beside(BugKnobs::default(), false),
            "steps aside for a ready one"
        );
        assert!(
            !renews_beside(BugKnobs::planted(Bug::DeferToUnready), true),
            "the old behaviour steps aside for a waiting one too"
        );
    }

    /// `bug` planted if `on`, else none.
    fn planted_if(on: bool, bug: Bug) -> BugKnobs {
        if on {
            BugKnobs::planted(bug)
        } else {
            BugKnobs::default()
        }
    }

    /// A brand-new agent "me" of a cluster of three, ranked `rank`, with `bugs` planted.
    fn of_three(rank: i64, bugs: BugKnobs) -> LeaseElection {
        let mut c = cfg(3, Some(0));
        c.initial_cluster_state = ClusterState::New;
        c.my_rank = rank;
        c.bug_knobs = bugs;
        c.lease_time = Duration::from_secs(2);
        LeaseElection::new(&c, None, Duration::ZERO, 7).0
    }

    /// A heartbeat from peer `id` (incarnation 1, run 1) with `sm`'s settings.
    fn beat_of(sm: &LeaseElection, id: &str, rank: i64, waiting: bool) -> Heartbeat {
        Heartbeat {
            loc: AgentLoc::new(id.to_string(), rank),
            inc: 1,
            run: 1,
            cluster_size: 3,
            lease: None,
            max_token: 0,
            config: sm.config,
            passive: false,
            waiting,
            quarantined: false,
        }
    }

    /// Steps `sm` from `now` until `done` says so (or `until`), hearing `peers` at each step
    /// and, when `answer` is set, answering each request from each peer at once with it.
    /// Returns the time reached and every output, in order.
    fn drive(
        sm: &mut LeaseElection,
        mut now: Duration,
        until: Duration,
        peers: &[Heartbeat],
        answer: Option<bool>,
        done: impl Fn(&LeaseElection, Duration) -> bool,
    ) -> (Duration, Vec<Output>) {
        let mut all = Vec::new();
        while now < until && !done(sm, now) {
            now = sm.next_wakeup().max(now + Duration::from_millis(1));
            for p in peers {
                all.extend(sm.on_heartbeat(now, p));
            }
            let out = sm.tick(now);
            for o in &out {
                if let (Output::Publish(Publish::Request(r)), Some(granted)) = (o, answer) {
                    for p in peers {
                        let reply = LeaseReply {
                            granter: Incarnation {
                                id: p.loc.id.clone(),
                                inc: 1,
                                run: 1,
                            },
                            attempt: r.attempt,
                            token: r.token,
                            granted,
                            max_token: r.token,
                        };
                        all.extend(sm.on_reply(now, reply));
                    }
                }
            }
            all.extend(out);
        }
        (now, all)
    }

    /// A request from peer `id` for `token`.
    fn request_from(sm: &LeaseElection, id: &str, rank: i64, token: u64) -> LeaseRequest {
        LeaseRequest {
            candidate: Incarnation {
                id: id.to_string(),
                inc: 1,
                run: 1,
            },
            rank,
            token,
            attempt: 99,
            config: sm.config,
            cluster_size: 3,
        }
    }

    fn granted(out: &[Output]) -> bool {
        out.iter()
            .any(|o| matches!(o, Output::Publish(Publish::Reply { reply, .. }) if reply.granted))
    }

    #[test]
    fn a_resign_hands_back_the_promise_to_itself_so_another_can_win_at_once() {
        let ms = Duration::from_millis;
        let mut sm = of_three(0, BugKnobs::default());
        // Only "b" is up: any lease needs both its promise and this agent's.
        let peers = [beat_of(&sm, "b", 1, false)];
        let (now, _) = drive(&mut sm, ms(0), ms(5000), &peers, Some(true), |sm, now| {
            sm.held(now).is_some()
        });
        let (token, _) = sm.held(now).expect("leads with b's promise");
        let out = sm.resign(now);
        assert_eq!(out.first(), Some(&Output::Notice(Notice::ClaimEnded { at: now })));
        // Without its own release coming back (no echo, or lost), b is promised at once.
        let out = sm.on_request(now + ms(5), request_from(&sm, "b", 1, token + 1), "inbox".into());
        assert!(granted(&out), "b is promised at once: {out:?}");
    }

    #[test]
    fn a_holder_hands_over_to_a_ready_better_agent_at_a_renewal_by_releasing_its_lease_first() {
        let ms = Duration::from_millis;
        for silent in [false, true] {
            let bugs = planted_if(silent, Bug::StepAsideSilently);
            let mut sm = of_three(5, bugs);
            let b = beat_of(&sm, "b", 6, false);
            let (now, _) = drive(
                &mut sm,
                ms(0),
                ms(5000),
                std::slice::from_ref(&b),
                Some(true),
                |sm, now| sm.held(now).is_some(),
            );
            let (token, until) = sm.held(now).expect("leads with b's promise");
            // A better-ranked agent, ready: at the next renewal this agent steps aside.
            let better = [b, beat_of(&sm, "a", 0, false)];
            let mut at = now;
            let mut ended = None;
            while at < until + ms(1) && ended.is_none() {
                at = sm.next_wakeup().max(at + ms(1));
                for p in &better {
                    sm.on_heartbeat(at, p);
                }
                let out = sm.tick(at);
                if out.contains(&Output::Notice(Notice::ClaimEnded { at })) {
                    ended = Some(out);
                }
            }
            if silent {
                assert!(ended.is_none(), "the old way lets the lease run out");
                assert!(sm.held(at).is_none() && at >= until);
                continue;
            }
            let out = ended.expect("the claim ends at a renewal");
            assert!(at < until, "released before it ran out");
            // First in its step: a publish may wait for the network, and the claim must have
            // ended by the time its end is seen.
            assert_eq!(out.first(), Some(&Output::Notice(Notice::ClaimEnded { at })));
            assert!(
                matches!(out.get(1), Some(Output::Publish(Publish::Release(r))) if r.token == token),
                "the release follows the end of the claim: {out:?}"
            );
            let out = sm.on_request(at, request_from(&sm, "a", 0, token + 1), "inbox".into());
            assert!(granted(&out), "and its own promise is handed back");
        }
    }

    #[test]
    fn campaigns_that_hear_too_few_answers_in_time_wait_longer_then_say_so_until_a_probe_is_answered_in_time() {
        let ms = Duration::from_millis;
        for planted in [false, true] {
            let bugs = planted_if(planted, Bug::DeferToSlow);
            let mut sm = of_three(0, bugs);
            let t = sm.timing().clone();
            let peers = [beat_of(&sm, "b", 1, false), beat_of(&sm, "c", 2, false)];
            // No answer ever comes in time (the others are far away).
            let (now, out) = drive(&mut sm, ms(0), ms(20_000), &peers, None, |sm, now| {
                now > ms(0) && sm.heartbeat(now).waiting
            });
            let attempts = out
                .iter()
                .filter(|o| matches!(o, Output::Publish(Publish::Request(_))))
                .count();
            if planted {
                assert!(!sm.heartbeat(now).waiting, "the old agent never says it is slow");
                assert_eq!(sm.attempt_wait, t.attempt_timeout, "and always waits the same");
                continue;
            }
            assert!(now < ms(5_000), "said within a few attempts ({attempts} requests)");
            assert_eq!(sm.attempt_wait, t.hold / 2, "the last attempt waited half a hold");
            // A slow agent leaves the campaign to the others while one of them is ready.
            assert!(!sm.may_campaign(now));
            // It probes once a promise period; an answer from a majority in time ends it.
            let (now, out) = drive(&mut sm, now, now + t.promise * 2, &peers, None, |_, _| false);
            let nonce = out
                .iter()
                .rev()
                .find_map(|o| match o {
                    Output::Publish(Publish::Recover(r)) => Some(r.nonce),
                    _ => None,
                })
                .expect("a probe");
            let answer = |id: &str, nonce: u64| LeaseRecovered {
                peer: Incarnation {
                    id: id.into(),
                    inc: 1,
                    run: 1,
                },
                nonce,
                max_token: 0,
                authoritative: true,
            };
            sm.on_recovered(now, answer("b", nonce ^ 1));
            assert!(
                sm.heartbeat(now).waiting,
                "an answer to another question does not count"
            );
            sm.on_recovered(now + ms(20), answer("b", nonce));
            assert!(!sm.heartbeat(now + ms(20)).waiting, "measured again: no longer slow");
            assert_eq!(sm.attempt_wait, t.attempt_timeout, "and it waits as before");
        }
    }

    #[test]
    fn a_granter_promises_only_candidates_configured_for_a_cluster_at_least_as_large_as_its_own() {
        let ms = Duration::from_millis;
        // Ranked below both its peers, so rank refuses no one here.
        let mut sm = of_three(5, BugKnobs::default());
        let peers = [beat_of(&sm, "b", 1, false), beat_of(&sm, "c", 2, false)];
        // Settled and hearing its peers, promised to no one (it waits before campaigning).
        drive(&mut sm, ms(0), ms(100), &peers, None, |_, _| false);
        let ask = |sm: &mut LeaseElection, size: u64, token: u64| {
            let mut req = request_from(sm, "b", 1, token);
            req.cluster_size = size;
            let out = sm.on_request(ms(100), req, "inbox".into());
            granted(&out)
        };
        assert!(
            !ask(&mut sm, 2, 1),
            "configured for two: its majority could be too small"
        );
        assert!(ask(&mut sm, 5, 1), "configured for five: promised");
        assert!(ask(&mut sm, 3, 1), "the same size: promised (a renewal of the same)");
        let mut req = request_from(&sm, "b", 1, 2);
        req.cluster_size = 2048;
        let before = sm.rejected();
        assert!(!granted(&sm.on_request(ms(100), req, "inbox".into())));
        assert_eq!(sm.rejected(), before + 1, "a size out of range is counted and dropped");
    }

    #[test]
    fn an_agent_whose_peers_were_set_for_a_larger_cluster_waits_and_is_not_deferred_to() {
        let ms = Duration::from_millis;
        // The best-ranked agent, still configured for three, among two set for five (and one
        // more member): it cannot win (they refuse it), so it says it waits, and campaigns not.
        let mut sm = of_three(0, BugKnobs::default());
        let five = |id: &str, rank: i64| {
            let mut b = beat_of(&sm, id, rank, false);
            b.cluster_size = 5;
            b
        };
        let peers = [five("b", 1), five("c", 2), five("d", 3)];
        let (now, out) = drive(&mut sm, ms(0), ms(3000), &peers, None, |_, _| false);
        assert!(sm.heartbeat(now).waiting, "cannot win: says it is waiting");
        assert!(
            !out.iter().any(|o| matches!(o, Output::Publish(Publish::Request(_)))),
            "and burns no token"
        );
        assert!(out
            .iter()
            .any(|o| matches!(o, Output::Notice(Notice::SizeMismatch { theirs: 5, .. }))));
        // It still promises them, and a ready one ranked below it is not refused for its rank.
        let mut req = request_from(&sm, "b", 1, 1);
        req.cluster_size = 5;
        assert!(granted(&sm.on_request(now, req, "inbox".into())));
    }

    #[test]
    fn evidence_of_a_larger_cluster_is_forgotten_once_the_whole_smaller_cluster_is_live_and_no_one_says_more() {
        let ms = Duration::from_millis;
        for size in [3usize, 2] {
            let mut c = cfg(size, Some(0));
            c.initial_cluster_state = ClusterState::New;
            let (mut sm, _) = LeaseElection::new(&c, None, Duration::ZERO, 7);
            let beat = |sm: &LeaseElection, id: &str, n: u64| {
                let mut b = beat_of(sm, id, 9, false);
                b.cluster_size = n;
                b
            };
            // Three of five say five: evidence.
            let larger = [beat(&sm, "x", 5), beat(&sm, "y", 5), beat(&sm, "z", 5)];
            drive(&mut sm, ms(0), ms(100), &larger, None, |_, _| false);
            assert_eq!(sm.evidenced_size(), 5);
            // Those go quiet (made smaller, or cut off); the whole smaller cluster is heard.
            let later = ms(100) + c.member_timeout * 2;
            let own: Vec<Heartbeat> = (1..size).map(|k| beat(&sm, &format!("p{k}"), size as u64)).collect();
            sm.tick(later);
            let mut out = Vec::new();
            for b in &own {
                out.extend(sm.on_heartbeat(later, b));
            }
            if size == 2 {
                assert_eq!(sm.evidenced_size(), 5, "a cluster of two never forgets on its own");
                continue;
            }
            assert_eq!(sm.evidenced_size(), 0, "forgotten");
            assert!(out
                .iter()
                .any(|o| matches!(o, Output::Persist(d) if d.larger_cluster.is_none())));
            assert_eq!(sm.quorum(), 2);
            // One who still says five keeps it.
            let (mut again, _) = LeaseElection::new(&c, None, Duration::ZERO, 7);
            drive(&mut again, ms(0), ms(100), &larger, None, |_, _| false);
            let mut with_one = own.clone();
            with_one.push(beat(&again, "x", 5));
            for b in &with_one {
                again.on_heartbeat(ms(101), b);
            }
            assert_eq!(again.evidenced_size(), 5, "someone still says five");
        }
    }

    #[test]
    fn a_failed_campaign_releases_its_promises_but_a_failed_renewal_keeps_them() {
        let ms = Duration::from_millis;
        let mut sm = of_three(0, BugKnobs::default());
        let peers = [beat_of(&sm, "b", 1, false), beat_of(&sm, "c", 2, false)];
        // Refused by both peers: a majority can no longer be reached.
        let (now, out) = drive(&mut sm, ms(0), ms(3000), &peers, Some(false), |sm, _| {
            sm.attempt.is_none() && sm.promise.is_none() && sm.known_max() > 0
        });
        let token = out
            .iter()
            .find_map(|o| match o {
                Output::Publish(Publish::Request(r)) => Some(r.token),
                _ => None,
            })
            .expect("it campaigned");
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Publish(Publish::Release(r)) if r.token == token)),
            "the promises of a failed campaign are released"
        );
        assert!(sm.held(now).is_none());
        assert!(sm.promise.is_none(), "its promise to itself too");
        // A holder whose renewal is refused keeps them: its lease stands on them.
        let mut holder = of_three(0, BugKnobs::default());
        let (now, _) = drive(&mut holder, ms(0), ms(3000), &peers, Some(true), |sm, now| {
            sm.held(now).is_some()
        });
        let (_, until) = holder.held(now).expect("leads");
        let (_, out) = drive(&mut holder, now, until - ms(1), &peers, Some(false), |_, _| false);
        assert!(
            !out.iter().any(|o| matches!(o, Output::Publish(Publish::Release(_)))),
            "a refused renewal releases nothing"
        );
    }

    /// Agents numbered `0..sizes.len()`, configured for `sizes`, those in `acting` taking part:
    /// whether two distinct candidates could each gather their majority (themselves included,
    /// from acting agents configured for a cluster no larger than theirs) with no agent in both.
    fn two_holders_possible(sizes: &[u64], acting: u32) -> bool {
        let n = sizes.len();
        let q = |s: u64| (s / 2 + 1) as u32;
        let may_grant = |x: usize| {
            (0..n)
                .filter(|&g| acting & (1 << g) != 0 && sizes[g] <= sizes[x])
                .fold(0u32, |m, g| m | 1 << g)
        };
        let holds =
            |x: usize, set: u32| set & (1 << x) != 0 && set & !may_grant(x) == 0 && set.count_ones() >= q(sizes[x]);
        (0..n).filter(|&x| acting & (1 << x) != 0).any(|x| {
            (0..n)
                .filter(|&y| y != x && acting & (1 << y) != 0)
                .any(|y| (0..1u32 << n).any(|gx| holds(x, gx) && (0..1u32 << n).any(|gy| gx & gy == 0 && holds(y, gy))))
        })
    }

    /// Whether some agent in `up` could gather its majority from the agents in `up` configured
    /// for a cluster no larger than its own.
    fn holder_possible(sizes: &[u64], up: u32) -> bool {
        let n = sizes.len();
        (0..n).filter(|&x| up & (1 << x) != 0).any(|x| {
            let may = (0..n).filter(|&g| up & (1 << g) != 0 && sizes[g] <= sizes[x]).count();
            may as u64 > sizes[x] / 2
        })
    }

    /// The size rule, exhaustively for up to five agents configured for 1 to 6: where every
    /// agent sees every other, those that `too_small` lets act can never hold two leases at once
    /// (a failed check only ever stops agents). And the documented procedures: at every step,
    /// whatever each agent sees (a cut hides the check), two holders are impossible, and with
    /// any one agent down a holder is still possible; adding both new members first is not.
    #[test]
    fn the_size_rule_is_safe_for_every_small_mix_of_sizes_and_the_procedures_hold_at_every_step() {
        for n in 1..=5usize {
            let mut sizes = vec![1u64; n];
            loop {
                let acting = (0..n)
                    .filter(|&i| !too_small((sizes[i] / 2 + 1) as usize, sizes[i], &sizes))
                    .fold(0u32, |m, i| m | 1 << i);
                assert!(
                    !two_holders_possible(&sizes, acting),
                    "sizes {sizes:?}, acting {acting:b}"
                );
                // Next mix (an odometer over 1..=6).
                let Some(k) = (0..n).find(|&k| sizes[k] < 6) else { break };
                sizes[k] += 1;
                for s in &mut sizes[..k] {
                    *s = 1;
                }
            }
        }
        // The procedures of the README, as the sizes of the agents deployed after each step.
        let grow: [&[u64]; 6] = [
            &[3, 3, 3],
            &[3, 3, 3, 5],
            &[5, 3, 3, 5],
            &[5, 5, 3, 5],
            &[5, 5, 5, 5],
            &[5, 5, 5, 5, 5],
        ];
        let shrink: [&[u64]; 6] = [
            &[5, 5, 5, 5, 5],
            &[5, 5, 5, 5],
            &[3, 5, 5, 5],
            &[3, 3, 5, 5],
            &[3, 3, 3, 5],
            &[3, 3, 3],
        ];
        for step in grow.iter().chain(shrink.iter()) {
            let all = (1u32 << step.len()) - 1;
            assert!(
                !two_holders_possible(step, all),
                "a cut could give two holders at {step:?}"
            );
            for down in 0..step.len() {
                assert!(
                    holder_possible(step, all & !(1 << down)),
                    "no holder possible at {step:?} with agent {down} down"
                );
            }
        }
        assert!(
            two_holders_possible(&[3, 3, 3, 5, 5], 0b11111),
            "both new members first"
        );
        // Shrinking with the second member removed before the last agent is reconfigured is
        // safe, but one more agent down then leaves no holder possible.
        assert!(!two_holders_possible(&[3, 3, 5], 0b111));
        assert!(
            !holder_possible(&[3, 3, 5], 0b110),
            "agent 0 down: no majority anyone may gather"
        );
    }
}
