//! Coverage for `hunt`: the abstract states a run reached.
//!
//! Each agent reports its election machine's abstract state after every step that changed it
//! ([`Probe`], through the library's fault-site hooks). Joined with what the simulator knows
//! of the node (up or down, its settings agreeing with the file's or not, its clock even,
//! fast, slow or stepped), a node's state is a small tuple. A run's coverage is the set of
//! features it reached:
//! - `node`: one node's tuple;
//! - `cluster`: every node at once, coarsely: how many lead, campaign, follow, wait, sit out
//!   or are down, and how many have promised (combinations across nodes);
//! - `change`: a leadership change, twice over: its new holder's tuple with the cluster then,
//!   and the kinds of the two faults applied before it (the order of fault kinds around each
//!   change). Not their product: that made nearly every run reach something new, and a
//!   corpus that keeps every run guides nothing (measured: 264 of 300 runs kept, against 255
//!   of 1,000 with the two apart).
//!
//! Features are hashed to `u64`s (FNV-1a of their text): a set of numbers is cheap to keep
//! and to merge over thousands of runs.

use leasehold::fault_sites::{Probe, Role};
use std::collections::{BTreeSet, VecDeque};

/// A node's clock, abstracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ClockClass {
    Even,
    Fast,
    Slow,
    Stepped,
}

/// One node as coverage sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct NodeView {
    /// The machine's state (`None`: down, or not started yet).
    probe: Option<Probe>,
    /// Its settings differ from the file's `[membership]` (config skew, another size).
    skewed: bool,
    clock: ClockClass,
}

impl NodeView {
    fn text(&self) -> String {
        let clock = match self.clock {
            ClockClass::Even => "",
            ClockClass::Fast => "+fast",
            ClockClass::Slow => "+slow",
            ClockClass::Stepped => "+stepped",
        };
        let skew = if self.skewed { "+skew" } else { "" };
        let Some(p) = self.probe else {
            return format!("down{skew}{clock}");
        };
        let role = match p.role {
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
            Role::Waiting => "waiting",
            Role::Passive => "passive",
        };
        let flag = |on: bool, s: &'static str| if on { s } else { "" };
        format!(
            "{role}{}{}{}{}{skew}{clock}",
            flag(p.promised, "+promised"),
            flag(p.disconnected, "+disconnected"),
            flag(p.duplicate, "+duplicate"),
            flag(p.mismatched, "+mismatched"),
        )
    }
}

/// The coverage of one run, as it goes.
#[derive(Debug, Clone)]
pub struct Coverage {
    nodes: Vec<NodeView>,
    /// The kinds of the last two faults applied, newest last.
    recent: VecDeque<&'static str>,
    features: BTreeSet<u64>,
}

impl Coverage {
    /// Coverage of a run with these nodes: which have settings of their own, and their
    /// clocks' drift (ppm).
    pub fn new(skewed: &[bool], drift_ppm: &[i64]) -> Coverage {
        let clock = |d: i64| match d {
            0 => ClockClass::Even,
            d if d > 0 => ClockClass::Fast,
            _ => ClockClass::Slow,
        };
        Coverage {
            nodes: skewed
                .iter()
                .zip(drift_ppm)
                .map(|(s, d)| NodeView {
                    probe: None,
                    skewed: *s,
                    clock: clock(*d),
                })
                .collect(),
            recent: VecDeque::new(),
            features: BTreeSet::new(),
        }
    }

    fn add(&mut self, text: &str) {
        self.features.insert(leasehold::fnv1a(text.as_bytes()));
    }

    /// Node `i`'s machine reported `p`.
    pub fn probe(&mut self, i: usize, p: Probe) {
        let Some(view) = self.nodes.get_mut(i) else {
            return;
        };
        let was_leader = view.probe.is_some_and(|q| q.role == Role::Leader);
        view.probe = Some(p);
        let view = *view;
        self.add(&format!("node {}", view.text()));
        if p.role == Role::Leader && !was_leader {
            // Two features, not their product: the new holder in the cluster then, and the
            // order of the two fault kinds before it. Their product (hundreds of holder and
            // cluster states times hundreds of fault pairs) made nearly every run new, and a
            // corpus of every run guides nothing.
            let faults: Vec<&str> = self.recent.iter().copied().collect();
            let others = self.cluster();
            self.add(&format!("change {} in {others}", view.text()));
            self.add(&format!("change after {}", faults.join(",")));
        }
        let cluster = self.cluster();
        self.add(&cluster);
    }

    /// Every node at once, coarsely (how many lead, campaign, follow, wait, sit out or are
    /// down, and how many have promised): fine enough to tell a split cluster from a calm
    /// one, coarse enough that a five-node cluster has hundreds of combinations, not millions.
    fn cluster(&self) -> String {
        let mut count = [0u8; 7];
        for v in &self.nodes {
            let k = match v.probe.map(|p| p.role) {
                None => 0,
                Some(Role::Leader) => 1,
                Some(Role::Candidate) => 2,
                Some(Role::Follower) => 3,
                Some(Role::Waiting) => 4,
                Some(Role::Passive) => 5,
            };
            count[k] += 1;
            count[6] += u8::from(v.probe.is_some_and(|p| p.promised));
        }
        format!("cluster {count:?}")
    }

    /// A fault of `kind` was applied (to `node`, if it names one): `down` if it took the node
    /// down, `clock` if it moved the node's clock (`Some(ppm)` for a new drift).
    pub fn fault(&mut self, kind: &'static str, node: Option<usize>, down: bool, clock: Option<Option<i64>>) {
        if self.recent.len() == 2 {
            self.recent.pop_front();
        }
        self.recent.push_back(kind);
        let Some(view) = node.and_then(|i| self.nodes.get_mut(i)) else {
            return;
        };
        if down {
            view.probe = None;
        }
        match clock {
            Some(Some(0)) => view.clock = ClockClass::Even,
            Some(Some(d)) if d > 0 => view.clock = ClockClass::Fast,
            Some(Some(_)) => view.clock = ClockClass::Slow,
            Some(None) => view.clock = ClockClass::Stepped,
            None => {}
        }
    }

    /// The features reached so far.
    pub fn features(&self) -> &BTreeSet<u64> {
        &self.features
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader() -> Probe {
        Probe {
            role: Role::Leader,
            ..Probe::default()
        }
    }

    #[test]
    fn a_new_state_is_a_new_feature_and_a_repeated_one_is_not() {
        let mut c = Coverage::new(&[false, false], &[0, 0]);
        c.probe(0, Probe::default());
        let one = c.features().len();
        assert_eq!(one, 2, "a node feature and a cluster feature");
        c.probe(0, Probe::default());
        assert_eq!(c.features().len(), one);
        c.probe(1, Probe::default());
        assert_eq!(c.features().len(), one + 1, "the same node state, a new combination");
    }

    #[test]
    fn a_leadership_change_is_told_apart_by_the_faults_before_it() {
        let run = |faults: &[&'static str]| {
            let mut c = Coverage::new(&[false], &[0]);
            for f in faults {
                c.fault(f, None, false, None);
            }
            c.probe(0, leader());
            c.features().clone()
        };
        assert_ne!(run(&["Kill", "Restart"]), run(&["Pause", "Resume"]));
        assert_eq!(
            run(&["Heal", "Kill", "Restart"]),
            run(&["Pause", "Kill", "Restart"]),
            "only the last two count"
        );
    }

    #[test]
    fn down_skewed_and_drifting_nodes_are_other_states() {
        let mut a = Coverage::new(&[false], &[0]);
        let mut b = Coverage::new(&[true], &[0]);
        let mut c = Coverage::new(&[false], &[200]);
        for x in [&mut a, &mut b, &mut c] {
            x.probe(0, Probe::default());
        }
        assert!(
            !b.features().is_subset(a.features()),
            "a skewed node is another node state"
        );
        assert!(
            !c.features().is_subset(a.features()),
            "a fast clock is another node state"
        );
        let before = a.features().len();
        a.fault("Kill", Some(0), true, None);
        a.probe(0, Probe::default());
        assert_eq!(a.features().len(), before, "back up in the same state");
        a.fault("ClockStep", Some(0), false, Some(None));
        a.probe(0, Probe::default());
        assert!(a.features().len() > before, "a stepped clock is a new state");
    }
}
