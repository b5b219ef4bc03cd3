//! The member table: the live agents heard, kept from their heartbeats; another process
//! with this agent's ID; peers with other settings; evidence of a larger cluster.

use super::leader::report;
use super::LeaseElection;
use crate::config::{Bug, BugKnobs};
use crate::election::{Notice, Output, Report};
use crate::storage::SizeEvidence;
use crate::wire::{AgentLoc, Heartbeat};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// A member heard, as its heartbeats describe it.
#[derive(Debug, Clone, Hash)]
pub(super) struct Member {
    pub(super) loc: AgentLoc,
    pub(super) inc: u64,
    pub(super) run: u64,
    /// The `cluster_size` its heartbeats say (0: not said).
    pub(super) cluster_size: u64,
    pub(super) last_seen: Duration,
    pub(super) lease: Option<(u64, Duration)>,
    pub(super) config: u64,
    /// It resigned and does not campaign: its rank does not hold others back.
    pub(super) passive: bool,
    /// It cannot campaign yet: a holder does not step aside for it.
    pub(super) waiting: bool,
    /// It promises nothing yet: a candidate does not count on its promise.
    pub(super) quarantined: bool,
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

/// A run ID for a process started with `seed`: from a stream of its own, so the jitter and
/// attempt IDs a seed gives do not depend on it; never 0, which stands for "not said".
pub(super) fn run_id(knobs: BugKnobs, seed: u64) -> u64 {
    if knobs.has(Bug::IgnoreDuplicateId) {
        0
    } else {
        ChaCha8Rng::seed_from_u64(seed ^ 0x7275_6e5f_6964_0000)
            .gen::<u64>()
            .max(1)
    }
}

impl LeaseElection {
    /// Whether member `m` was heard within the member timeout.
    pub(super) fn is_live(&self, m: &Member, now: Duration) -> bool {
        now < m.last_seen + self.t.member_timeout
    }

    /// A live member with our safety-relevant settings.
    pub(super) fn is_peer(&self, m: &Member, now: Duration) -> bool {
        self.is_live(m, now) && (m.config == self.config || self.knobs.has(Bug::SkipConfigCheck))
    }

    /// Forgets the members gone silent, and says so.
    pub(super) fn drop_lost_members(&mut self, now: Duration, out: &mut Vec<Output>) {
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
    }

    /// Records a peer's heartbeat (with the lease believed from it) in the member table: a
    /// new member, or a new incarnation or run, is announced.
    pub(super) fn note_member(
        &mut self,
        now: Duration,
        hb: &Heartbeat,
        lease: Option<(u64, Duration)>,
        out: &mut Vec<Output>,
    ) {
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
    }

    /// Reports a peer configured for another cluster size (once per peer and size), and looks
    /// at the evidence when it says a larger one.
    pub(super) fn check_size(&mut self, now: Duration, hb: &Heartbeat, out: &mut Vec<Output>) {
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
            self.check_size_evidence(now, hb.config, hb.cluster_size, out);
        }
    }

    /// Another process with this agent's ID (incarnation `inc`, run `run`) was heard now:
    /// neither promise nor campaign while it is heard, and give up any lease held.
    pub(super) fn heard_duplicate(&mut self, now: Duration, inc: u64, run: u64, out: &mut Vec<Output>) {
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

    /// Whether a message from incarnation `inc`, run `run`, of this agent's ID comes from
    /// another process running now. The same or a later incarnation with another run ID
    /// does. So does an older one heard a member timeout after this run started: a late
    /// message of an earlier run of ours arrives sooner, but the process whose state file we
    /// were started from (a copy of it: we are one incarnation above it) keeps beating, and
    /// counting it and us as two granters would let each win a majority with the same token.
    pub(super) fn is_twin(&self, now: Duration, inc: u64, run: u64) -> bool {
        let older_heard_late = now >= self.started + self.t.member_timeout && !self.knobs.has(Bug::OlderTwinIsLate);
        run != self.me.run && (inc >= self.me.inc || older_heard_late)
    }

    /// Whether another process with this agent's ID is heard.
    pub(super) fn duplicate_heard(&self, now: Duration) -> bool {
        self.duplicate_until.is_some_and(|until| now < until)
    }

    /// Reports a peer whose safety-relevant settings differ, once per peer and digest.
    pub(super) fn check_config(&mut self, peer: &str, theirs: u64, out: &mut Vec<Output>) {
        if theirs != self.config && self.mismatches.insert((peer.to_string(), theirs)) {
            out.push(Output::Notice(Notice::ConfigMismatch {
                peer: peer.to_string(),
                ours: self.config,
                theirs,
            }));
        }
    }

    /// Looks at the live members with settings `config` that say their cluster has `size`
    /// agents, more than ours: a majority of that cluster (and at least two) agreeing shows
    /// that our size is too small. From then on this agent counts promises as that cluster
    /// would ([`LeaseElection::quorum`]); the evidence is saved, so it outlasts a cut and a
    /// restart. (A majority, not one member: strangers must agree in numbers to raise it.)
    pub(super) fn check_size_evidence(&mut self, now: Duration, config: u64, size: u64, out: &mut Vec<Output>) {
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
    pub(super) fn check_evidence_outlived(&mut self, now: Duration, out: &mut Vec<Output>) {
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
    pub(super) fn evidenced_size(&self) -> u64 {
        self.durable
            .larger_cluster
            .filter(|l| l.digest == self.settings)
            .map_or(0, |l| l.cluster_size)
    }
}
