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

// The state machine is one struct, [`LeaseElection`]; its public handlers below check their
// input and hand each concern to the submodule that holds it.

/// Campaigns: attempts, quorum counting, when an agent may act and campaign, rank deference.
mod campaign;
/// What this agent says and believes about who leads: its heartbeat, the known holder.
mod leader;
/// The member table: heartbeat bookkeeping, duplicates, settings and size evidence.
mod members;
/// Granting: promises, giving a lease up, releasing a failed campaign's promises.
mod promises;
/// Recovery: learning the highest token in use after a start, and believing tokens.
mod recovery;
#[cfg(test)]
mod tests;
/// The derived timing, jitter, and the adaptive attempt wait with the slow state.
mod timing;

pub use recovery::MAX_TOKEN_JUMP;
pub use timing::LeaseTiming;

use crate::config::{Bug, BugKnobs, ClusterState, MembershipCfg};
use crate::election::{Output, Publish};
use crate::storage::Durable;
use crate::wire::{
    agent_loc_cmp, id_in_range, AgentLoc, Heartbeat, Incarnation, LeaseRecover, LeaseRecovered, LeaseRelease,
    LeaseReply, LeaseRequest, MAX_COUNTER,
};
use campaign::{Attempt, Held};
use members::Member;
use promises::Promise;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recovery::Recovery;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use timing::{jitter, Slow};

/// One agent's `lease` election state. Cloned by the model checker (`leasehold-sim check`),
/// which explores this very machine.
#[derive(Debug, Clone)]
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
    /// When this run started (on its clock).
    started: Duration,
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
        let (durable, missing) = recovery::starting_state(stored, knobs);
        let fresh = missing && (cfg.initial_cluster_state == ClusterState::New || knobs.has(Bug::TrustMissingState));
        let quarantine_until = if fresh { now } else { now + t.quarantine };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let me = Incarnation {
            id: cfg.id.clone(),
            inc: durable.incarnation,
            run: members::run_id(knobs, seed),
        };
        let need = recovery::recovery_need(&t, missing);
        let recovery = (!fresh && need > 0).then(|| Recovery::start(rng.gen(), need, now));
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
            started: now,
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

    /// Feeds the state that changes to `h`, the random stream's position included: two
    /// machines of one configuration that feed the same values behave the same from here on.
    /// For the model checker, which hashes states rather than storing them. Every field is
    /// named, so a new one cannot be forgotten here.
    #[doc(hidden)]
    pub fn fingerprint(&self, h: &mut impl std::hash::Hasher) {
        use std::hash::Hash;
        let LeaseElection {
            // Fixed by the configuration.
            t: _,
            knobs: _,
            config: _,
            settings: _,
            recovery_need: _,
            me,
            loc,
            rng,
            quarantine_until,
            durable,
            promise,
            held,
            attempt,
            members,
            max_token_seen,
            next_beat,
            next_campaign,
            reported_leader,
            newest_lease,
            disconnected,
            hear_first_until,
            stopped,
            started,
            passive,
            size_mismatches,
            recovery,
            whole,
            lost_state,
            duplicate_until,
            high_claims,
            mismatches,
            rejected,
            heard_better,
            has_held,
            attempt_wait,
            slow,
        } = self;
        (me, loc, quarantine_until, durable, promise, held, attempt, members).hash(h);
        (max_token_seen, next_beat, next_campaign, reported_leader, newest_lease).hash(h);
        (
            disconnected,
            hear_first_until,
            stopped,
            started,
            passive,
            size_mismatches,
            recovery,
        )
            .hash(h);
        (whole, lost_state, duplicate_until, high_claims, mismatches, rejected).hash(h);
        (heard_better, has_held, attempt_wait, slow).hash(h);
        h.write_u128(rng.get_word_pos());
    }

    /// The abstract state at `now`, for the simulator's coverage.
    #[cfg(feature = "fault-sites")]
    pub fn probe(&self, now: Duration) -> crate::fault_sites::Probe {
        use crate::fault_sites::{Probe, Role};
        let role = if self.held(now).is_some() {
            Role::Leader
        } else if self.attempt.is_some() {
            Role::Candidate
        } else if self.passive {
            Role::Passive
        } else if self.recovery.is_some() || now < self.quarantine_until {
            Role::Waiting
        } else {
            Role::Follower
        };
        Probe {
            role,
            promised: self.promise.as_ref().is_some_and(|p| p.to != self.me && now < p.until),
            disconnected: self.disconnected,
            duplicate: self.duplicate_until.is_some_and(|t| now < t),
            mismatched: !self.mismatches.is_empty() || !self.size_mismatches.is_empty(),
        }
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
        self.step_aside_if_due(now, &mut out);
        self.drop_lost_members(now, &mut out);
        if now >= self.next_beat {
            out.push(Output::Publish(Publish::Heartbeat(self.heartbeat(now))));
            self.next_beat = now + self.t.beat;
        }
        self.recovery_timers(now, &mut out);
        self.attempt_timers(now, &mut out);
        self.probe_if_slow(now, &mut out);
        self.renew_or_campaign(now, &mut out);
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
            // Our own heartbeat, or another process's with our ID.
            if self.is_twin(now, hb.inc, hb.run) {
                self.heard_duplicate(now, hb.inc, hb.run, &mut out);
            }
            return out;
        }
        self.check_config(&hb.loc.id, hb.config, &mut out);
        if hb.config == self.config || self.knobs.has(Bug::SkipConfigCheck) || self.knobs.has(Bug::UncheckedRanges) {
            self.learn(now, &hb.loc.id, hb.max_token);
        }
        let peer = hb.config == self.config || self.knobs.has(Bug::SkipConfigCheck);
        let lease = self.believed_lease(now, hb, peer);
        self.note_member(now, hb, lease, &mut out);
        if peer && agent_loc_cmp(&hb.loc, &self.loc) == Ordering::Less {
            self.heard_better = true;
        }
        self.check_size(now, hb, &mut out);
        self.check_evidence_outlived(now, &mut out);
        self.report_leader(now, &mut out);
        out
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
            let (inc, run) = (c.inc, c.run);
            if self.is_twin(now, inc, run) {
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
        self.count_answer(now, reply, &mut out);
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
        if self.recovery.is_none() {
            self.probe_answered(now, ans);
            return out;
        }
        self.recovery_answered(now, ans, &mut out);
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

    /// Counts an out-of-range message (unless the range checks are planted away); returns
    /// whether to go on with it.
    fn in_range(&mut self, ok: bool) -> bool {
        if ok || self.knobs.has(Bug::UncheckedRanges) {
            return true;
        }
        self.rejected += 1;
        false
    }
}
