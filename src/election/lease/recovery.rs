//! Recovery: a start that cannot trust its state learns the highest token in use from its
//! peers before it promises or campaigns; and which tokens from the network are believed.

use super::{LeaseElection, LeaseTiming};
use crate::config::{Bug, BugKnobs};
use crate::election::{Notice, Output, Publish};
use crate::storage::Durable;
use crate::wire::{LeaseRecover, LeaseRecovered, MAX_COUNTER};
use std::collections::BTreeSet;
use std::time::Duration;

/// A start that has not yet learned the highest token in use from enough peers.
#[derive(Debug, Clone, Hash)]
pub(super) struct Recovery {
    pub(super) nonce: u64,
    pub(super) answers: BTreeSet<String>,
    pub(super) need: usize,
    pub(super) max: u64,
    pub(super) resend_at: Duration,
    /// When to say again what the wait is for.
    pub(super) report_at: Duration,
}

impl Recovery {
    /// A wait for `need` answers to the question `nonce`, asked first at `now`.
    pub(super) fn start(nonce: u64, need: usize, now: Duration) -> Self {
        Recovery {
            nonce,
            answers: BTreeSet::new(),
            need,
            max: 0,
            resend_at: now,
            report_at: now,
        }
    }
}

/// How often a start that waits to recover says what it waits for.
pub(crate) const WAIT_REPORT: Duration = Duration::from_secs(5);

/// How far above the highest token it knows an agent accepts a token from the network.
pub const MAX_TOKEN_JUMP: u64 = 1 << 32;

/// How many other agents' authoritative answers a start needs before it may promise or
/// campaign: `cluster_size − quorum + F`, F the state-loss tolerance, at least 1 when this
/// start lost its own state (its loss is one of the F); none when F is 0 (no loss tolerated:
/// every file is trusted). Why: a token T was granted by a majority M. With at most F
/// states damaged (lost, or rolled back, and not yet recovered), this one among them, at
/// least `quorum − F` members of M other than this agent still know T; the other agents
/// number `cluster_size − 1`, so any `cluster_size − quorum + F` of them include one who
/// knows T (see docs/ARCHITECTURE.md, "Rollback tolerance").
pub(super) fn recovery_need(t: &LeaseTiming, lost: bool) -> usize {
    let f = if lost {
        t.loss_tolerance.max(1)
    } else if t.trust_own_file {
        0
    } else {
        t.loss_tolerance
    };
    if f == 0 {
        0
    } else {
        t.cluster_size - t.quorum + f
    }
}

/// The state a start goes on from, with its incarnation number already raised, and whether
/// it counts as missing. A state written while its start was still waiting knows nothing: it
/// counts as lost (only its incarnation number is kept, so incarnations still grow).
pub(super) fn starting_state(stored: Option<Durable>, knobs: BugKnobs) -> (Durable, bool) {
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
    (durable, missing)
}

impl LeaseElection {
    /// The timers of a start that waits to recover: it asks again every beat, and says what
    /// it waits for every [`WAIT_REPORT`].
    pub(super) fn recovery_timers(&mut self, now: Duration, out: &mut Vec<Output>) {
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
    }

    /// Takes an answer to the recovery question: once enough have come, the start is whole.
    pub(super) fn recovery_answered(&mut self, now: Duration, ans: LeaseRecovered, out: &mut Vec<Output>) {
        let Some(r) = &mut self.recovery else { return };
        if ans.nonce != r.nonce {
            return;
        }
        r.max = r.max.max(ans.max_token);
        if ans.authoritative {
            r.answers.insert(ans.peer.id);
        }
        if r.answers.len() < r.need {
            return;
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
        self.report_leader(now, out);
    }

    /// Whether a token from the network can be real: at most [`MAX_COUNTER`], and at most
    /// [`MAX_TOKEN_JUMP`] above the highest this agent knows (tokens grow by one per election;
    /// no real cluster skips 2^32 of them). A forged token near the limit would otherwise use
    /// the token space up in one message.
    pub(super) fn plausible(&self, token: u64) -> bool {
        token <= MAX_COUNTER && token <= self.known_max().saturating_add(MAX_TOKEN_JUMP)
    }

    /// The highest token this agent has promised or seen.
    pub(super) fn known_max(&self) -> u64 {
        self.durable.max_token.max(self.max_token_seen)
    }

    /// Learns that `peer` knows of token `max`. A plausible value is learned at once; one far
    /// above anything known is counted and remembered, and believed once `recovery_need`
    /// distinct peers report at least that much (honest tokens grow by one per election, so
    /// only a stranger's message jumps; a jump that honest agents carry spreads this way).
    /// Only live members with our settings count as peers here: a stranger's requests under
    /// made-up names, or under a member's name with other settings, would otherwise make
    /// agents believe a token near the limit, gossip it, and stop electing for good.
    pub(super) fn learn(&mut self, now: Duration, peer: &str, max: u64) {
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
}
