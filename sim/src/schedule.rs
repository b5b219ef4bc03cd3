//! A run written out: which nodes, how long, every fault step in order, the network and the
//! clocks. `shrink` makes one smaller, `hunt` mutates one; either way it becomes a fully
//! scripted scenario here, and nowhere else.

use crate::faults::{Action, FaultEvent};
use crate::report::RunReport;
use crate::scenario::{At, Dur, FaultSpec, MembershipSpec, NetworkSpec, NodeSpec, Scenario, SitesFault};
use std::time::Duration;

/// A fully scripted run of a base scenario.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    /// Which of the base's nodes take part.
    pub keep_nodes: Vec<bool>,
    /// How long the run lasts.
    pub duration: Duration,
    /// Every fault step, in order of time.
    pub events: Vec<FaultEvent>,
    /// The network.
    pub network: NetworkSpec,
    /// Each node's clock drift (ppm).
    pub drift_ppm: Vec<i64>,
    /// Each node's wall-clock offset (ms).
    pub offset_ms: Vec<i64>,
    /// The library's fault sites.
    pub sites: Option<SitesFault>,
}

impl Schedule {
    /// The run `r` of `base` as it happened: its faults as applied, its clocks as drawn.
    pub(crate) fn of_run(base: &Scenario, r: &RunReport) -> Schedule {
        Schedule {
            keep_nodes: vec![true; base.sim_nodes().len()],
            duration: base.duration.0,
            events: r.applied.clone(),
            network: base.network.clone(),
            drift_ppm: r.plan.drift_ppm.clone(),
            offset_ms: r.plan.wall_offset_ns.iter().map(|o| (o / 1_000_000) as i64).collect(),
            sites: base.faults.sites.clone(),
        }
    }

    /// The scripted scenario of this schedule over `base` (its nodes' settings kept), first
    /// seed `seed` (`None` if a step names a dropped node).
    pub(crate) fn scenario(&self, base: &Scenario, seed: u64) -> Option<Scenario> {
        let nodes = base.sim_nodes();
        let cfg = base.membership_cfg();
        let id = |i: usize| nodes[i].id.clone();
        let mut at = Vec::new();
        // Indices past the nodes are strangers (the impostor's server): never in a scenario.
        let kept = |i: usize| self.keep_nodes.get(i).copied().unwrap_or(false);
        for e in &self.events {
            if e.action.node().is_some_and(|i| !kept(i)) {
                return None;
            }
            // Routes to dropped nodes (and to strangers) are gone with them.
            let action = match &e.action {
                Action::Cut(links) => {
                    Action::Cut(links.iter().copied().filter(|(a, b)| kept(*a) && kept(*b)).collect())
                }
                a => a.clone(),
            };
            at.push(At {
                time: Dur(e.at),
                step: action.to_step(id)?,
            });
        }
        let mut s = base.clone();
        s.seeds = 1;
        s.first_seed = seed;
        s.duration = Dur(self.duration);
        s.network = self.network.clone();
        s.membership = MembershipSpec {
            beat: Some(Dur(cfg.beat)),
            lease: Some(Dur(cfg.lease_time)),
            max_clock_skew: Some(Dur(cfg.max_clock_skew)),
            max_drift_ppm: Some(cfg.max_drift_ppm),
            bug: base.membership.bug,
            authenticate: base.membership.authenticate,
            state_loss_tolerance: base.membership.state_loss_tolerance,
        };
        s.nodes = None;
        s.node = nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| kept(*i))
            .map(|(i, n)| NodeSpec {
                id: Some(n.id.clone()),
                rank: Some(n.rank),
                datacenter: Some(n.datacenter.clone()),
                drift_ppm: Some(self.drift_ppm[i]),
                wall_offset_ms: Some(self.offset_ms[i]),
                // Config skew stays: it is part of the failure.
                ..base.node.get(i).cloned().unwrap_or_default()
            })
            .collect();
        // Every fault is a scripted step now, but for the impostor, who runs all along, and
        // the library's fault sites, which fire until the quiet tail.
        s.faults = FaultSpec {
            impostor: base.faults.impostor.clone(),
            sites: self.sites.clone(),
            quiet: match (&base.faults.impostor, &self.sites) {
                (Some(_), None) => Some(Dur(Duration::ZERO)),
                // The base's quiet tail, so the sites stop as long before the end as they did.
                (_, Some(_)) => Some(Dur(base.duration.0.saturating_sub(base.faults_end()))),
                (None, None) => None,
            },
            ..FaultSpec::default()
        };
        s.at = at;
        s.expect.leader_within = Some(Dur(base.leader_within()));
        s.router = None;
        Some(s)
    }
}
