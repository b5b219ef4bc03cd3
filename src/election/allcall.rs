//! The `allcall` algorithm: a faithful port of hnatsd's ALLCALL election.
//!
//! Every beat each agent publishes an *allcall* on `<prefix>allcall` (payload: the leader it
//! currently records, reply subject `<prefix>allreply`). Every agent answers each allcall on
//! the reply subject with its own location, carrying its `leaseExpires` if it is the leader
//! it records. Each agent collects all answers of the beat (leases zeroed), and when its
//! recorded leader's lease (plus `max_clock_skew`) has run out on its **wall clock**, it
//! elects the best member of that set (by [`agent_loc_less_than`]) for `lease_time`. The
//! agent adds its own location to the next beat's set, so a node cut off from everyone still
//! elects itself. Member sets are diffed from beat to beat and reported on `<prefix>lost` and
//! `<prefix>added`; every election is reported on `<prefix>list` with `LeadID`.
//!
//! It favours availability: both sides of a partition elect a leader, and nodes that start
//! together may each lead for a lease term. The simulator uses it as the known-bad baseline.

use crate::config::MembershipCfg;
use crate::election::{Notice, Output, Publish, Report};
use crate::wire::{agent_loc_cmp, agent_loc_less_than, id_in_range, AgentLoc, MemberList};
use std::cmp::Ordering;
use std::time::Duration;
use time::OffsetDateTime;

/// One agent's `allcall` election state.
#[derive(Debug, Clone)]
pub struct AllcallElection {
    my_loc: AgentLoc,
    lease_time: Duration,
    max_clock_skew: Duration,
    beat: Duration,
    leader: AgentLoc,
    collected: Vec<AgentLoc>,
    prev_members: Vec<AgentLoc>,
    next_beat: Duration,
    claimed: bool,
    stopped: bool,
    rejected: u64,
}

impl AllcallElection {
    /// Starts at local time `now`; the first output is the first allcall.
    pub fn new(cfg: &MembershipCfg, now: Duration) -> (Self, Vec<Output>) {
        let e = AllcallElection {
            my_loc: cfg.my_loc(),
            lease_time: cfg.lease_time,
            max_clock_skew: cfg.max_clock_skew,
            beat: cfg.beat,
            leader: AgentLoc::default(),
            collected: Vec::new(),
            prev_members: Vec::new(),
            next_beat: now + cfg.beat,
            claimed: false,
            stopped: false,
            rejected: 0,
        };
        let out = vec![Output::Publish(Publish::Allcall(e.leader.clone()))];
        (e, out)
    }

    /// The leader this agent records (the zero location if none yet).
    pub fn leader(&self) -> &AgentLoc {
        &self.leader
    }

    /// Whether this agent records itself as leader.
    pub fn is_leader(&self) -> bool {
        same_ignoring_lease(&self.leader, &self.my_loc)
    }

    /// The members seen in the last completed beat, best first.
    pub fn members(&self) -> &[AgentLoc] {
        &self.prev_members
    }

    /// When the driver should call [`AllcallElection::tick`] next.
    pub fn next_wakeup(&self) -> Duration {
        self.next_beat
    }

    /// Handles an allcall: answers on its reply subject (if it has one).
    pub fn on_allcall(&mut self, reply_to: Option<String>) -> Vec<Output> {
        match reply_to {
            Some(to) if !self.stopped => vec![Output::Publish(Publish::Pong {
                to,
                loc: self.my_loc_with_any_lease(),
            })],
            _ => Vec::new(),
        }
    }

    /// Handles an answer to anyone's allcall. An answer whose ID is empty or longer than
    /// [`MAX_ID_LEN`](crate::wire::MAX_ID_LEN) is out of range: counted and dropped.
    pub fn on_pong(&mut self, loc: AgentLoc) {
        if !id_in_range(&loc.id) {
            self.rejected += 1;
            return;
        }
        if !self.stopped {
            insert_sorted(&mut self.collected, loc.without_lease());
        }
    }

    /// Feeds the state that changes to `h`: two machines of one configuration that feed the
    /// same values behave the same from here on. For the model checker, which hashes states
    /// rather than storing them. Every field is named, so a new one cannot be forgotten here.
    #[doc(hidden)]
    pub fn fingerprint(&self, h: &mut impl std::hash::Hasher) {
        use std::hash::Hash;
        let AllcallElection {
            // Fixed by the configuration.
            my_loc: _,
            lease_time: _,
            max_clock_skew: _,
            beat: _,
            leader,
            collected,
            prev_members,
            next_beat,
            claimed,
            stopped,
            rejected,
        } = self;
        (leader, collected, prev_members, next_beat, claimed, stopped, rejected).hash(h);
    }

    /// Answers dropped so far because a value was out of range.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// The end of a beat: elect if the recorded lease ran out, report member changes, and
    /// send the next allcall. `wall` is the wall clock now.
    pub fn tick(&mut self, now: Duration, wall: OffsetDateTime) -> Vec<Output> {
        let mut out = Vec::new();
        if self.stopped || now < self.next_beat {
            return out;
        }
        let cur = std::mem::take(&mut self.collected);
        // hnatsd adds itself to the *next* beat's set, after taking this one.
        insert_sorted(&mut self.collected, self.my_loc.without_lease());

        let last_seen = self.leader.clone();
        let honoured = last_seen.lease_expires.is_some_and(|t| t + self.max_clock_skew > wall);
        let mut expired = false;
        let mut cur_lead = last_seen.clone();
        if !honoured && !cur.is_empty() {
            expired = true;
            cur_lead = cur[0].clone();
            cur_lead.lease_expires = Some(wall + self.lease_time);
            if let Some(alt) = self.set_leader(cur_lead.clone(), wall) {
                cur_lead = alt;
            } else {
                out.push(Output::Notice(Notice::Elected {
                    leader: cur_lead.clone(),
                    token: None,
                }));
            }
        }

        let lost = set_diff(&self.prev_members, &cur);
        let gained = set_diff(&cur, &self.prev_members);
        if !lost.is_empty() {
            for m in &lost {
                out.push(Output::Notice(Notice::MemberLost(m.clone())));
            }
            out.push(Output::Publish(Publish::Report(
                Report::Lost,
                MemberList {
                    lead_id: String::new(),
                    members: lost,
                },
            )));
        }
        if !gained.is_empty() {
            for m in &gained {
                if m.id != self.my_loc.id {
                    out.push(Output::Notice(Notice::MemberAdded(m.clone())));
                }
            }
            out.push(Output::Publish(Publish::Report(
                Report::Added,
                MemberList {
                    lead_id: String::new(),
                    members: gained,
                },
            )));
        }
        if expired {
            out.push(Output::Publish(Publish::Report(
                Report::List,
                MemberList {
                    lead_id: cur_lead.id.clone(),
                    members: cur.clone(),
                },
            )));
        }
        self.prev_members = cur;

        if last_seen.id != self.leader.id {
            out.push(Output::Notice(self.leader_notice(now, wall)));
        }
        self.claim(now, &mut out);
        out.push(Output::Publish(Publish::Allcall(self.leader.clone())));
        self.next_beat = now + self.beat;
        out
    }

    /// Stops answering and electing; ends this agent's claim.
    pub fn stop(&mut self, now: Duration) -> Vec<Output> {
        let mut out = Vec::new();
        if !self.stopped {
            self.stopped = true;
            if self.claimed {
                self.claimed = false;
                out.push(Output::Notice(Notice::ClaimEnded { at: now }));
            }
        }
        out
    }

    /// While this agent records itself as leader it claims the lease until the next beat's
    /// decision could take it away (hnatsd keeps a leader until a new one is recorded).
    fn claim(&mut self, now: Duration, out: &mut Vec<Output>) {
        if self.is_leader() {
            self.claimed = true;
            out.push(Output::Notice(Notice::Claim {
                token: None,
                from: now,
                until: now + self.beat * 2,
            }));
        } else if self.claimed {
            self.claimed = false;
            out.push(Output::Notice(Notice::ClaimEnded { at: now }));
        }
    }

    fn leader_notice(&self, now: Duration, wall: OffsetDateTime) -> Notice {
        let is_me = self.is_leader();
        let until = self.leader.lease_expires.filter(|_| is_me).map(|t| {
            let left = t - wall;
            now + Duration::try_from(left).unwrap_or(Duration::ZERO)
        });
        Notice::Leader {
            leader: Some(self.leader.id.clone()).filter(|s| !s.is_empty()),
            is_me,
            token: None,
            until,
        }
    }

    /// hnatsd's `leadHolder.setLeader`: records `sloc` unless the current record wins.
    /// Returns the winner if it is not `sloc`.
    fn set_leader(&mut self, sloc: AgentLoc, wall: OffsetDateTime) -> Option<AgentLoc> {
        if sloc.id.is_empty() {
            return Some(self.leader.clone());
        }
        let cur_expired = self.leader.lease_expires.is_none_or(|t| t <= wall);
        let new_expired = sloc.lease_expires.is_none_or(|t| t <= wall);
        let (new_won, old_won) = match (cur_expired, new_expired) {
            (_, true) => return Some(self.leader.clone()),
            (true, false) => (true, false),
            (false, false) => (
                agent_loc_less_than(&sloc, &self.leader),
                agent_loc_less_than(&self.leader, &sloc),
            ),
        };
        let won = if !new_won && !old_won {
            // Equal: take the longer lease, so renewal works.
            sloc.lease_expires > self.leader.lease_expires
        } else {
            new_won
        };
        if won {
            self.leader = sloc;
            None
        } else {
            Some(self.leader.clone())
        }
    }

    fn my_loc_with_any_lease(&self) -> AgentLoc {
        let mut loc = self.my_loc.clone();
        if self.is_leader() {
            loc.lease_expires = self.leader.lease_expires;
        }
        loc
    }
}

fn same_ignoring_lease(a: &AgentLoc, b: &AgentLoc) -> bool {
    agent_loc_cmp(&a.without_lease(), &b.without_lease()) == Ordering::Equal
}

/// Inserts into a set kept sorted and deduplicated by [`agent_loc_cmp`] (hnatsd's btree).
fn insert_sorted(set: &mut Vec<AgentLoc>, loc: AgentLoc) {
    if let Err(pos) = set.binary_search_by(|x| agent_loc_cmp(x, &loc)) {
        set.insert(pos, loc);
    }
}

/// Members of `a` not in `b`.
fn set_diff(a: &[AgentLoc], b: &[AgentLoc]) -> Vec<AgentLoc> {
    a.iter()
        .filter(|x| b.binary_search_by(|y| agent_loc_cmp(y, x)).is_err())
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    //! hnatsd's own behaviours (hnatsd `health_test.go` 102, 103, 107), on the state machine
    //! with a bus that delivers every publish to every listening agent at once.
    use super::*;
    use time::macros::datetime;

    struct Node {
        sm: AllcallElection,
        deaf: bool,
        history: Vec<AgentLoc>,
    }

    struct Cluster {
        nodes: Vec<Node>,
        now: Duration,
        wall0: OffsetDateTime,
    }

    impl Cluster {
        fn new(specs: &[(&str, i64, bool)], beat: Duration, lease: Duration) -> Self {
            let mut nodes = Vec::new();
            let mut pending = Vec::new();
            for (i, (id, rank, deaf)) in specs.iter().enumerate() {
                let mut cfg = MembershipCfg::default();
                cfg.id = id.to_string();
                cfg.my_rank = *rank;
                cfg.hnatsd.nats_client_port = 4222 + i as i64;
                cfg.beat = beat;
                cfg.lease_time = lease;
                cfg.max_clock_skew = Duration::from_nanos(1);
                cfg.algorithm = crate::Algorithm::Allcall;
                let (sm, out) = AllcallElection::new(&cfg, Duration::ZERO);
                pending.push((i, out));
                nodes.push(Node {
                    sm,
                    deaf: *deaf,
                    history: Vec::new(),
                });
            }
            let mut c = Cluster {
                nodes,
                now: Duration::ZERO,
                wall0: datetime!(2024-01-01 00:00:00 UTC),
            };
            for (i, out) in pending {
                c.route(i, out);
            }
            c
        }

        /// Delivers outputs: allcalls are answered by every hearing agent, and the answers
        /// (on the shared allreply subject) reach every hearing agent.
        fn route(&mut self, from: usize, out: Vec<Output>) {
            for o in out {
                match o {
                    Output::Publish(Publish::Allcall(_)) => {
                        let mut pongs = Vec::new();
                        for n in self.nodes.iter_mut().filter(|n| !n.deaf) {
                            for p in n.sm.on_allcall(Some("allreply".into())) {
                                if let Output::Publish(Publish::Pong { loc, .. }) = p {
                                    pongs.push(loc);
                                }
                            }
                        }
                        let sender_deaf = self.nodes[from].deaf;
                        for (j, n) in self.nodes.iter_mut().enumerate() {
                            if !(n.deaf || sender_deaf && j == from) {
                                for p in &pongs {
                                    n.sm.on_pong(p.clone());
                                }
                            }
                        }
                    }
                    Output::Notice(Notice::Elected { leader, .. }) => self.nodes[from].history.push(leader),
                    _ => {}
                }
            }
        }

        fn run_for(&mut self, d: Duration, step: Duration) {
            let end = self.now + d;
            while self.now < end {
                self.now += step;
                let wall = self.wall0 + self.now;
                for i in 0..self.nodes.len() {
                    let out = self.nodes[i].sm.tick(self.now, wall);
                    self.route(i, out);
                }
            }
        }
    }

    #[test]
    fn tied_ranks_are_broken_by_id_and_leadership_does_not_alternate() {
        let (beat, lease) = (Duration::from_millis(100), Duration::from_millis(400));
        let mut c = Cluster::new(&[("b", 0, false), ("a", 0, false)], beat, lease);
        c.run_for((lease + Duration::from_nanos(1)) * 13, Duration::from_millis(10));
        for n in &c.nodes {
            assert!(n.history.len() > 10, "rounds: {}", n.history.len());
            assert!(
                n.history.iter().all(|l| l.id == "a"),
                "every election chose the lower ID: {:?}",
                n.history
            );
        }
    }

    #[test]
    fn a_lone_node_elects_itself_and_waits_a_full_lease_before_re_electing() {
        let (beat, lease) = (Duration::from_millis(1000), Duration::from_millis(3000));
        let mut c = Cluster::new(&[("solo", 0, false)], beat, lease);
        c.run_for(Duration::from_millis(1500), Duration::from_millis(10));
        assert_eq!(c.nodes[0].sm.leader().id, "solo", "elected itself after the first beat");
        assert!(c.nodes[0].sm.is_leader());
        c.run_for(Duration::from_millis(7500), Duration::from_millis(10));
        let h = &c.nodes[0].history;
        assert!(
            h.len() < 4 && h.len() >= 2,
            "at most 3 elections in 3 lease terms, got {}",
            h.len()
        );
        let gaps: Vec<_> = h
            .windows(2)
            .map(|w| w[1].lease_expires.unwrap() - w[0].lease_expires.unwrap())
            .collect();
        assert!(
            gaps.iter().all(|g| *g >= time::Duration::try_from(lease).unwrap()),
            "{gaps:?}"
        );
    }

    #[test]
    fn a_rank_0_node_keeps_leading_while_rank_1_arrivals_give_up_after_their_leases() {
        let (beat, lease) = (Duration::from_millis(200), Duration::from_millis(800));
        let skew = Duration::from_nanos(1);
        let specs = [("r0", 0, false), ("r1a", 1, true), ("r1b", 1, true), ("r1c", 1, true)];
        let mut c = Cluster::new(&specs, beat, lease);
        c.run_for((lease + skew) * 5, Duration::from_millis(10));
        for n in &c.nodes {
            assert!(n.sm.is_leader(), "while deaf, every node leads itself");
        }
        for i in 1..c.nodes.len() {
            c.nodes[i].deaf = false;
            c.run_for(Duration::from_millis(30 + 20 * i as u64), Duration::from_millis(10));
        }
        let heal = c.nodes.iter().map(|n| n.history.len()).collect::<Vec<_>>();
        c.run_for((lease + skew) * 20, Duration::from_millis(10));
        for (i, n) in c.nodes.iter().enumerate() {
            assert!(
                n.history.iter().all(|l| i != 0 || l.id == "r0"),
                "rank 0 only ever elected itself"
            );
            let after = &n.history[heal[i] + 1..];
            assert!(
                after.len() > 9,
                "{}: {} elections after the heal",
                n.sm.my_loc.id,
                after.len()
            );
            assert!(
                after.iter().all(|l| l.id == "r0" && l.rank == 0),
                "{}: {:?}",
                n.sm.my_loc.id,
                after
            );
            assert_eq!(n.sm.leader().id, "r0");
        }
    }
}
