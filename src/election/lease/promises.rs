//! Granting: the promise this agent gave, deciding a promise, and handing promises back
//! (giving a lease up, abandoning a failed campaign).

use super::{LeaseElection, Member};
use crate::config::Bug;
use crate::election::{Notice, Output, Publish};
use crate::wire::{agent_loc_cmp, AgentLoc, Incarnation, LeaseRelease, LeaseRequest};
use std::cmp::Ordering;
use std::time::Duration;

/// The promise this agent gave: to whom, under which token, until when (on its clock).
#[derive(Debug, Clone, Hash)]
pub(super) struct Promise {
    pub(super) to: Incarnation,
    pub(super) token: u64,
    pub(super) until: Duration,
}

impl LeaseElection {
    /// Decides a promise (to another agent or to itself), recording it if made.
    pub(super) fn grant(&mut self, now: Duration, req: &LeaseRequest, out: &mut Vec<Output>) -> bool {
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

    /// Whether this agent may promise member `m` (configured for a cluster at least as large
    /// as its own), so its rank counts here: one it would refuse is not deferred to.
    pub(super) fn may_promise(&self, m: &Member) -> bool {
        m.cluster_size >= self.t.cluster_size as u64 || self.knobs.has(Bug::SkipConfigCheck)
    }

    /// Abandons any attempt and gives the lease up at `now`: the claim ends first, then the
    /// others are told, so no granter forgets its promise while the claim still stands.
    pub(super) fn give_up(&mut self, now: Duration, out: &mut Vec<Output>) {
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

    /// Frees the promises a campaign that failed was given (a renewal's are what its lease
    /// stands on, and are kept). Nothing can be claimed from an abandoned attempt (a late
    /// grant names its attempt, which no longer runs), so granters may forget them at once:
    /// kept, they would refuse every other candidate for a lease, and two candidates whose
    /// campaigns split the granters after a partition would keep each other from winning.
    pub(super) fn abandon(&mut self, token: u64, out: &mut Vec<Output>) {
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
}
