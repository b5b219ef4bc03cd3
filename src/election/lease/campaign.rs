//! Campaigns and quorum counting: an attempt for a lease and the lease it wins, how many
//! promises win one, whether this agent may act and campaign now, and rank deference.

use super::{jitter, LeaseElection};
use crate::config::Bug;
use crate::election::{Notice, Output, Publish};
use crate::wire::{agent_loc_cmp, LeaseReply, LeaseRequest};
use rand::Rng;
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::time::Duration;

/// The lease this agent holds (on its clock), and when to renew it.
#[derive(Debug, Clone, Hash)]
pub(super) struct Held {
    pub(super) token: u64,
    pub(super) until: Duration,
    pub(super) renew_at: Duration,
}

/// A campaign under way: its request, and the answers counted so far.
#[derive(Debug, Clone, Hash)]
pub(super) struct Attempt {
    pub(super) id: u64,
    pub(super) token: u64,
    pub(super) t0: Duration,
    pub(super) grants: BTreeSet<String>,
    pub(super) refusals: BTreeSet<String>,
    pub(super) deadline: Duration,
    pub(super) resend_at: Duration,
    /// Granted replies received, duplicates included (only the planted
    /// `CountDuplicateGrants` bug looks at it).
    pub(super) granted_msgs: usize,
}

/// Whether the majority `quorum` of an agent configured for a cluster of `mine` could miss
/// another holder's among agents configured for `sizes` (every agent, this one included): for
/// some size `b ≥ mine` among them, a holder configured for `b` gathers `b / 2 + 1` promises
/// from the agents configured for at most `b` (the others refuse it), and the two majorities
/// need not share one of those agents.
pub(super) fn too_small(quorum: usize, mine: u64, sizes: &[u64]) -> bool {
    sizes.iter().filter(|b| **b >= mine).any(|&b| {
        let granters = sizes.iter().filter(|s| **s <= b).count();
        let theirs = usize::try_from(b / 2 + 1).unwrap_or(usize::MAX);
        quorum.saturating_add(theirs) <= granters
    })
}

impl LeaseElection {
    /// Promises needed to hold a lease: a majority of `cluster_size`, or of a larger cluster
    /// this agent has evidence of.
    pub(super) fn quorum(&self) -> usize {
        let larger = usize::try_from(self.evidenced_size() / 2 + 1).unwrap_or(usize::MAX);
        self.t.quorum.max(larger)
    }

    /// Whether this start has waited out its quarantine and learned the highest token.
    pub(super) fn settled(&self, now: Duration) -> bool {
        (self.knobs.has(Bug::SkipRestartQuarantine) || (now >= self.quarantine_until && self.recovery.is_none()))
            && !self.undersized(now)
            && !self.duplicate_heard(now)
    }

    /// Whether this agent could campaign now, rank and holders aside: settled, connected, and
    /// hearing at least one peer (an agent that hears no one, a deaf one whose server drops
    /// what is sent to it, could win no majority).
    pub(super) fn ready(&self, now: Duration) -> bool {
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
    pub(super) fn viable(&self, now: Duration) -> bool {
        let mine = self.t.cluster_size as u64;
        let may_promise = self
            .members
            .values()
            .filter(|m| self.is_peer(m, now) && m.cluster_size <= mine && !m.quarantined)
            .count();
        self.t.cluster_size <= 1 || 1 + may_promise >= self.quorum() || self.knobs.has(Bug::SkipConfigCheck)
    }

    /// Whether a live peer is heard, or there is no one to hear.
    pub(super) fn hears_peers(&self, now: Duration) -> bool {
        self.t.cluster_size <= 1 || self.members.values().any(|m| self.is_peer(m, now))
    }

    /// Whether a better-ranked live member holds this agent back from campaigning. One that
    /// says it is waiting (it cannot campaign yet, or hears no one) holds it back only while
    /// no majority could be formed without it: then an attempt could not win without its
    /// promise, and would only burn a token.
    pub(super) fn held_back(&self, now: Duration) -> bool {
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

    /// Whether a live member that ranks better than this agent could take over now: a holder
    /// steps aside only for one that is not waiting out a quarantine or a reconnect.
    pub(super) fn better_ready_member(&self, now: Duration) -> bool {
        self.members.values().any(|m| {
            self.is_peer(m, now)
                && !m.passive
                && self.may_promise(m)
                && (!m.waiting || self.knobs.has(Bug::DeferToUnready))
                && agent_loc_cmp(&m.loc, &self.loc) == Ordering::Less
        })
    }

    /// Whether this agent's majority is too small for the agents live: then it may not
    /// intersect another holder's, and the agent must not act. For each cluster size `b` at
    /// least its own among the live agents, a holder configured for `b` gathers promises from
    /// the agents configured for at most `b` (the others refuse it); this agent's majority
    /// and that holder's must together exceed those agents. With one size: fewer agents live than
    /// twice its majority (an odd size: no more than the size). While the size changes one
    /// agent at a time in the documented order it never holds (see docs/ARCHITECTURE.md,
    /// "Changing the size").
    pub(super) fn undersized(&self, now: Duration) -> bool {
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

    /// A holder steps aside for a better-ranked agent at a renewal that is due: it stops
    /// renewing, and (unless the planted `StepAsideSilently`) gives its lease up at once.
    pub(super) fn step_aside_if_due(&mut self, now: Duration, out: &mut Vec<Output>) {
        let renewal_due = self.attempt.is_none() && self.held.as_ref().is_some_and(|h| now >= h.renew_at);
        if renewal_due && self.better_ready_member(now) {
            if let Some(h) = &mut self.held {
                h.renew_at = now + self.t.beat;
            }
            if !self.knobs.has(Bug::StepAsideSilently) {
                // A handover: released here, the lease (and the promises given for it) need
                // not run out before the better agent can campaign.
                self.give_up(now, out);
            }
        }
    }

    /// The timers of the attempt under way: it is dropped at its deadline, its request
    /// resent until then.
    pub(super) fn attempt_timers(&mut self, now: Duration, out: &mut Vec<Output>) {
        if let Some(a) = &mut self.attempt {
            if now >= a.deadline {
                let answered = a.grants.len() + a.refusals.len();
                let token = a.token;
                self.attempt = None;
                self.abandon(token, out);
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
    }

    /// With no attempt under way: a holder renews when due, any other agent campaigns when
    /// due and allowed to.
    pub(super) fn renew_or_campaign(&mut self, now: Duration, out: &mut Vec<Output>) {
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
                        self.start_attempt(now, token, out);
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
                    self.start_attempt(now, token, out);
                }
            }
        }
    }

    /// Whether this agent may start a campaign now (rank, holders and promises considered).
    pub(super) fn may_campaign(&self, now: Duration) -> bool {
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

    /// Starts a campaign (or a renewal) for `token`: promises itself, then asks the others.
    pub(super) fn start_attempt(&mut self, now: Duration, token: u64, out: &mut Vec<Output>) {
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

    /// Ends the attempt under way once a majority granted (a lease is held) or can no longer
    /// grant (its promises are released).
    pub(super) fn check_attempt(&mut self, now: Duration, out: &mut Vec<Output>) {
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

    /// Counts an answer to this agent's own request (its ranges checked), if it is about the
    /// attempt under way.
    pub(super) fn count_answer(&mut self, now: Duration, reply: LeaseReply, out: &mut Vec<Output>) {
        let stale_ok = self.knobs.has(Bug::AcceptStaleReplies);
        let Some(a) = &self.attempt else { return };
        if (reply.attempt != a.id && !stale_ok) || reply.token != a.token {
            return;
        }
        // Only an answer to our own attempt tells what its granter knows.
        let granter = reply.granter.id.clone();
        self.learn(now, &granter, reply.max_token);
        // A refusal from an agent configured for a larger cluster says nothing about this
        // campaign's chances: it refuses every candidate configured for a smaller one.
        let mine = self.t.cluster_size as u64;
        let larger = self
            .members
            .get(&reply.granter.id)
            .is_some_and(|m| m.cluster_size > mine);
        let Some(a) = &mut self.attempt else { return };
        if reply.granted {
            a.granted_msgs += 1;
            a.grants.insert(reply.granter.id);
        } else if !larger {
            a.refusals.insert(reply.granter.id);
        }
        self.check_attempt(now, out);
    }
}
