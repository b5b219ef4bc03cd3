//! What this agent says and believes about who leads: its own heartbeat, the leases its
//! peers' heartbeats claim (the stale-lease rule), the known holder, and the leader report.

use super::LeaseElection;
use crate::config::Bug;
use crate::election::{Notice, Output, Publish, Report};
use crate::wire::{agent_loc_cmp, AgentLoc, Heartbeat, LeaseView, MemberList};
use std::time::Duration;

/// A member list report of `kind`.
pub(super) fn report(kind: Report, lead_id: String, members: Vec<AgentLoc>) -> Output {
    Output::Publish(Publish::Report(kind, MemberList { lead_id, members }))
}

impl LeaseElection {
    /// This agent's heartbeat at `now`.
    pub(super) fn heartbeat(&self, now: Duration) -> Heartbeat {
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

    /// The lease a peer's heartbeat says it holds, as (token, until) on this clock, if it is
    /// believed (`peer`: the sender has our settings); the newest lease known follows it.
    pub(super) fn believed_lease(&mut self, now: Duration, hb: &Heartbeat, peer: bool) -> Option<(u64, Duration)> {
        // A lease longer than a promise cannot be held, and an implausible token is not
        // believed: the heartbeat still counts as a sign of life.
        let lease = hb.lease.as_ref().filter(|l| {
            let ok = self.plausible(l.token) && u128::from(l.remaining_ms) <= self.t.promise.as_millis();
            self.in_range(ok)
        });
        let lease = lease.map(|l| (l.token, now + Duration::from_millis(l.remaining_ms)));
        // A lease older than the newest known has ended, whatever the heartbeat says: it is
        // not believed (the heartbeat still counts as a sign of life).
        let lease = lease.filter(|(tok, _)| peer && !self.is_stale(*tok));
        if let Some((tok, _)) = lease {
            self.newest_lease = self.newest_lease.max(tok);
        }
        lease
    }

    /// Whether a lease under `token` is stale: older than the newest lease known.
    pub(super) fn is_stale(&self, token: u64) -> bool {
        token < self.newest_lease && !self.knobs.has(Bug::TrustStaleHeartbeats)
    }

    /// A live member that holds a lease, as far as its heartbeats tell: the newest lease (two
    /// are believed at once only until the older one's last heartbeat runs out).
    pub(super) fn known_holder(&self, now: Duration) -> Option<(&str, u64)> {
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

    /// Says who leads, when that changed since it was last said.
    pub(super) fn report_leader(&mut self, now: Duration, out: &mut Vec<Output>) {
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
