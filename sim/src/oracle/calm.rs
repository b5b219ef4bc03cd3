//! Which stretches of a run are calm: where the liveness oracle demands a lease held
//! continuously (see [`super::liveness`]).
//!
//! A fault *event* (any step of the plan, random or scripted, an undoing included) ends a
//! calm stretch; a stretch begins at an event after which no fault is *in force* on the
//! network (a cut of any shape until `heal`, loss or latency other than the scenario's own)
//! and a majority of the nodes is healthy. A node that is down (killed, stopped, its state
//! lost), has a clone beside it (two processes with one ID both step aside), or is paused,
//! suspended, frozen, congested, a slow consumer, without its server, with its connection
//! frozen or its link slow (`lag`) is a *standing condition*, not a fault in force, as long as a majority of the
//! cluster is none of these: that majority must keep a holder beside it (a deaf or returning
//! best-ranked agent must not hold it back). The stretch after the last event, the calm tail, is judged whatever is in force
//! then (the rule since the first oracle: the scenario's final state is its own business, and
//! a node left down at the end is the commonest one).

use crate::faults::{Action, FaultEvent};
use crate::scenario::{DurRange, Scenario};
use std::borrow::Borrow;

/// What is in force at one moment of a run, as the events so far left it.
#[derive(Debug, Clone)]
pub struct CalmTracker {
    quorum: usize,
    base_loss: f64,
    base_latency: DurRange,
    cut: bool,
    loss: bool,
    latency: bool,
    /// Per node: down, cloned, and the faults in force on it (pause, suspend or freeze,
    /// congestion, slow consumer, server down, connection frozen, slow link).
    down: Vec<bool>,
    cloned: Vec<bool>,
    stalled: Vec<[bool; 7]>,
    /// Per node: its settings differ from those most nodes share (its own `cluster_size`,
    /// lease or drift bound): the others do not promise it, nor it them, for the whole run.
    skewed: Vec<bool>,
    /// Per node: its application resigned and has not campaigned again (nor has the node
    /// started anew): it grants, but will not hold.
    resigned: Vec<bool>,
}

/// A run's calm stretches and its last fault, all in true ns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calm {
    /// When the last fault event happened (0: none).
    pub last_fault: u128,
    /// Whether a majority of the nodes is healthy after it.
    pub tail_healthy: bool,
    /// Calm stretches `[from, to)` between events, in order (the tail after the last event
    /// is not among them).
    pub stretches: Vec<(u128, u128)>,
}

impl CalmTracker {
    /// A run of `nodes` nodes, `quorum` of which make a majority, on a network whose own
    /// loss and latency are `base_loss` and `base_latency`.
    pub fn new(nodes: usize, quorum: usize, base_loss: f64, base_latency: DurRange) -> Self {
        CalmTracker {
            quorum,
            base_loss,
            base_latency,
            cut: false,
            loss: false,
            latency: false,
            down: vec![false; nodes],
            cloned: vec![false; nodes],
            stalled: vec![[false; 7]; nodes],
            skewed: vec![false; nodes],
            resigned: vec![false; nodes],
        }
    }

    /// Takes one event's action.
    pub fn apply(&mut self, a: &Action) {
        let set = |v: &mut Vec<bool>, i: usize, on: bool| {
            if let Some(x) = v.get_mut(i) {
                *x = on;
            }
        };
        let mut stall = |i: usize, k: usize, on: bool| {
            if let Some(x) = self.stalled.get_mut(i) {
                x[k] = on;
            }
        };
        match a {
            Action::Partition { .. } | Action::IsolateLeader { .. } | Action::Bridge { .. } | Action::OneWay { .. } => {
                self.cut = true
            }
            Action::Cut(links) => self.cut = !links.is_empty(),
            Action::Heal => self.cut = false,
            Action::Kill(i) | Action::Stop(i) | Action::StateLoss { node: i, .. } => set(&mut self.down, *i, true),
            Action::Restart(i) => {
                set(&mut self.down, *i, false);
                set(&mut self.resigned, *i, false);
            }
            Action::Resign(i) => set(&mut self.resigned, *i, true),
            Action::Campaign(i) => set(&mut self.resigned, *i, false),
            Action::Clone(i) => set(&mut self.cloned, *i, true),
            Action::Pause(i) => stall(*i, 0, true),
            Action::Resume(i) => stall(*i, 0, false),
            Action::Suspend(i) | Action::Freeze(i) => stall(*i, 1, true),
            Action::Wake(i) => stall(*i, 1, false),
            Action::Congest(i, d) => stall(*i, 2, d.is_some()),
            Action::SlowConsumer(i, on) => stall(*i, 3, *on),
            Action::ServerDown(i, on) => stall(*i, 4, *on),
            Action::FreezeConnection(i, on) => stall(*i, 5, *on),
            Action::Lag(i, l) => stall(*i, 6, l.is_some()),
            Action::Loss(l) => self.loss = *l != self.base_loss,
            Action::Latency(r) => self.latency = *r != self.base_latency,
            // Instants: they end a stretch and leave nothing in force.
            Action::ClockStep(..)
            | Action::Drift(..)
            | Action::WipeState(_)
            | Action::RollbackState(..)
            | Action::CorruptState(_)
            | Action::Replay(..)
            | Action::Forge(_)
            | Action::Preempt(..)
            | Action::Resize(..)
            | Action::Message { .. } => {}
        }
    }

    /// These nodes' settings differ from those most nodes share.
    pub fn with_skewed(mut self, skewed: Vec<bool>) -> Self {
        self.skewed = skewed;
        self.skewed.resize(self.down.len(), false);
        self
    }

    /// Whether a majority of nodes is up and untouched: a fault on a minority of nodes
    /// (paused, deaf, without its server, its connection frozen or congested, its link slow, cloned, its
    /// settings its own) is a standing condition like a node down, since the healthy majority
    /// must keep a holder beside it. One of them must be willing to hold it: a resigned node
    /// still grants, but when every healthy node has resigned no one may hold the lease.
    pub fn majority_healthy(&self) -> bool {
        let healthy: Vec<usize> = (0..self.down.len())
            .filter(|i| !self.down[*i] && !self.cloned[*i] && !self.skewed[*i] && self.stalled[*i].iter().all(|x| !x))
            .collect();
        healthy.len() >= self.quorum && healthy.iter().any(|i| !self.resigned[*i])
    }

    /// Whether nothing is in force on the network and a majority of nodes is healthy.
    pub fn calm(&self) -> bool {
        !self.cut && !self.loss && !self.latency && self.majority_healthy()
    }
}

impl Calm {
    /// The calm stretches of a run whose events (in time order) are `events`, judged by
    /// `tracker`. The run is calm from its start (every node up, nothing in force) until its
    /// first event; events at one instant are taken together.
    pub fn of<E: Borrow<FaultEvent>>(mut tracker: CalmTracker, events: impl IntoIterator<Item = E>) -> Calm {
        let mut stretches = Vec::new();
        // Calm since when (`None`: not calm), and the instant whose events are being taken.
        let (mut since, mut instant): (Option<u128>, Option<u128>) = (Some(0), None);
        for e in events {
            let e = e.borrow();
            let t = e.at.as_nanos();
            if instant != Some(t) {
                if let Some(prev) = instant {
                    since = tracker.calm().then_some(prev);
                }
                if let Some(from) = since.filter(|f| t > *f) {
                    stretches.push((from, t));
                }
                instant = Some(t);
            }
            tracker.apply(&e.action);
        }
        Calm {
            last_fault: instant.unwrap_or(0),
            tail_healthy: tracker.majority_healthy(),
            stretches,
        }
    }
}

/// How a run of `scn` whose fault events (in time order) are `events` is judged for
/// liveness: its calm stretches and its last fault.
pub fn live<E: Borrow<FaultEvent>>(scn: &Scenario, events: impl IntoIterator<Item = E>) -> super::Live {
    let nodes = scn.sim_nodes().len();
    let base = scn.membership_cfg();
    let tracker =
        CalmTracker::new(nodes, base.quorum(), scn.network.loss, scn.network.latency).with_skewed(skewed(scn, nodes));
    let calm = Calm::of(tracker, events);
    let bound = scn.leader_within().as_nanos();
    // Fault sites fire until the random faults stop: nothing before that is calm.
    let sites_until = match scn.faults.sites {
        Some(_) => scn.faults_end().as_nanos(),
        None => 0,
    };
    super::Live {
        tail_healthy: calm.tail_healthy,
        last_fault: calm.last_fault.max(sites_until),
        bound,
        max_gap: scn.max_gap().as_nanos(),
        // Only the stretches liveness judges are kept (a long run has many short ones).
        calm: calm
            .stretches
            .into_iter()
            .filter(|(_, b)| *b > sites_until)
            .map(|(a, b)| (a.max(sites_until), b))
            .filter(|(a, b)| b - a > bound)
            .collect(),
        end: scn.duration.0.as_nanos(),
        wait_from: scn.expect.no_leader_after.map(|d| d.0.as_nanos()),
        beliefs_may_overlap: scn.expect.beliefs_may_overlap,
    }
}

/// The nodes whose safety settings (`cluster_size`, lease, drift bound) differ from those most
/// nodes share; none when no setting is shared by more nodes than any other (a rolling
/// change half done).
fn skewed(scn: &Scenario, nodes: usize) -> Vec<bool> {
    let base = scn.membership_cfg();
    let key = |i: usize| {
        let s = scn.node.get(i);
        (
            s.and_then(|s| s.cluster_size).unwrap_or(nodes),
            s.and_then(|s| s.lease.map(|l| l.0)).unwrap_or(base.lease_time),
            s.and_then(|s| s.max_drift_ppm).unwrap_or(base.max_drift_ppm),
        )
    };
    let mut count: std::collections::BTreeMap<_, usize> = std::collections::BTreeMap::new();
    for i in 0..nodes {
        *count.entry(key(i)).or_default() += 1;
    }
    let top = count.values().copied().max().unwrap_or(0);
    let mut most = count.iter().filter(|(_, c)| **c == top).map(|(k, _)| *k);
    match (most.next(), most.next()) {
        (Some(mode), None) => (0..nodes).map(|i| key(i) != mode).collect(),
        _ => vec![false; nodes],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ev(s: u64, action: Action) -> FaultEvent {
        FaultEvent {
            at: Duration::from_secs(s),
            action,
            scripted: true,
        }
    }

    fn calm(events: &[FaultEvent]) -> Calm {
        let base = DurRange {
            lo: Duration::from_millis(1),
            hi: Duration::from_millis(10),
        };
        Calm::of(CalmTracker::new(3, 2, 0.0, base), events)
    }

    const S: u128 = 1_000_000_000;

    #[test]
    fn a_run_without_faults_is_all_tail() {
        let c = calm(&[]);
        assert_eq!((c.last_fault, c.stretches.len(), c.tail_healthy), (0, 0, true));
    }

    #[test]
    fn skewed_nodes_are_those_apart_from_the_settings_most_share() {
        let scn = |nodes: &str| Scenario::parse("s.toml", &format!("{nodes}\n")).unwrap();
        let one = scn("[[node]]\n[[node]]\n[[node]]\nmax_drift_ppm = 2000");
        assert_eq!(skewed(&one, 3), vec![false, false, true]);
        // Growing 3 to 5: three nodes say 3, two say 5; the two are apart.
        let grow = scn("[[node]]\ncluster_size = 3\n[[node]]\ncluster_size = 3\n[[node]]\ncluster_size = 3\n[[node]]\ncluster_size = 5\n[[node]]\ncluster_size = 5");
        assert_eq!(skewed(&grow, 5), vec![false, false, false, true, true]);
        // No setting shared by more nodes than another: none is set apart.
        let half = scn("[[node]]\n[[node]]\nlease = \"4s\"");
        assert_eq!(skewed(&half, 2), vec![false, false]);
    }

    #[test]
    fn a_tail_without_a_healthy_majority_is_not_judged() {
        let base = DurRange {
            lo: Duration::from_millis(1),
            hi: Duration::from_millis(10),
        };
        let tracker = || CalmTracker::new(3, 2, 0.0, base);
        // One node cloned: two of three healthy, the tail is judged.
        let one = Calm::of(tracker(), &[ev(10, Action::Clone(1))]);
        assert!(one.tail_healthy);
        // And one node with settings of its own besides: one of three.
        let two = Calm::of(
            tracker().with_skewed(vec![false, false, true]),
            &[ev(10, Action::Clone(1))],
        );
        assert!(!two.tail_healthy);
        // A cut in force at the end does not stop the tail being judged.
        let cut = Calm::of(tracker(), &[ev(10, Action::Cut(vec![(0, 1)]))]);
        assert!(cut.tail_healthy);
    }

    #[test]
    fn a_partition_is_in_force_until_healed_and_an_instant_splits_a_stretch() {
        let c = calm(&[
            ev(10, Action::Heal),
            ev(20, Action::Cut(vec![(0, 1)])),
            ev(30, Action::Heal),
            ev(40, Action::ClockStep(1, 5)),
            ev(50, Action::Pause(2)),
            ev(55, Action::Resume(2)),
            ev(60, Action::Kill(0)),
        ]);
        assert_eq!(
            c.stretches,
            vec![
                (0, 10 * S),
                (10 * S, 20 * S),
                (30 * S, 40 * S),
                (40 * S, 50 * S),
                // One node paused is a standing condition, like one down.
                (50 * S, 55 * S),
                (55 * S, 60 * S)
            ]
        );
        assert_eq!(c.last_fault, 60 * S);
    }

    #[test]
    fn faults_on_a_majority_of_nodes_are_in_force() {
        let c = calm(&[
            ev(10, Action::SlowConsumer(0, true)),
            ev(20, Action::Pause(1)),
            ev(30, Action::SlowConsumer(0, false)),
            ev(40, Action::FreezeConnection(2, true)),
            ev(50, Action::Resume(1)),
            ev(60, Action::FreezeConnection(2, false)),
        ]);
        // A deaf node alone (10–20 s) and a paused one alone (30–40 s) are standing; two
        // nodes touched at once (20–30 s, 40–50 s) leave no healthy majority.
        assert_eq!(
            c.stretches,
            vec![(0, 10 * S), (10 * S, 20 * S), (30 * S, 40 * S), (50 * S, 60 * S)]
        );
    }

    #[test]
    fn a_slow_link_is_standing_on_its_node_and_two_leave_no_healthy_majority() {
        let c = calm(&[
            ev(10, Action::Lag(0, Some(Duration::from_millis(300)))),
            ev(20, Action::Lag(1, Some(Duration::from_millis(100)))),
            ev(30, Action::Lag(0, None)),
            ev(40, Action::Lag(1, None)),
        ]);
        // One slow link (10–20 s, 30–40 s) is standing; two at once (20–30 s) are in force.
        assert_eq!(c.stretches, vec![(0, 10 * S), (10 * S, 20 * S), (30 * S, 40 * S)]);
    }

    #[test]
    fn a_node_down_is_standing_while_a_majority_is_up() {
        let c = calm(&[
            ev(10, Action::Kill(0)),
            ev(20, Action::Stop(1)),
            ev(30, Action::Restart(1)),
            ev(40, Action::Clone(1)),
            ev(50, Action::Restart(0)),
            ev(60, Action::Heal),
        ]);
        // Two of three down from 20 s to 30 s, and again (one down, one cloned) until 50 s.
        assert_eq!(
            c.stretches,
            vec![(0, 10 * S), (10 * S, 20 * S), (30 * S, 40 * S), (50 * S, 60 * S)]
        );
    }

    #[test]
    fn a_lease_is_owed_while_one_healthy_node_has_not_resigned() {
        let c = calm(&[
            ev(10, Action::Resign(0)),
            ev(20, Action::Resign(1)),
            ev(30, Action::Resign(2)),
            ev(40, Action::Campaign(1)),
            ev(50, Action::Kill(1)),
            ev(60, Action::Restart(1)),
        ]);
        // All three resigned (30–40 s): no one may hold. Two resigned and the third down
        // (50–60 s): the healthy majority has no one willing either. A restart campaigns.
        assert_eq!(
            c.stretches,
            vec![(0, 10 * S), (10 * S, 20 * S), (20 * S, 30 * S), (40 * S, 50 * S)]
        );
        assert!(c.tail_healthy);
    }

    #[test]
    fn events_at_one_instant_are_taken_together() {
        let c = calm(&[
            ev(10, Action::Loss(0.5)),
            ev(20, Action::Loss(0.0)),
            ev(
                20,
                Action::Latency(DurRange {
                    lo: Duration::from_secs(1),
                    hi: Duration::from_secs(1),
                }),
            ),
            ev(
                30,
                Action::Latency(DurRange {
                    lo: Duration::from_millis(1),
                    hi: Duration::from_millis(10),
                }),
            ),
            ev(40, Action::Forge(3)),
        ]);
        assert_eq!(c.stretches, vec![(0, 10 * S), (30 * S, 40 * S)]);
        assert_eq!(c.last_fault, 40 * S);
    }
}
