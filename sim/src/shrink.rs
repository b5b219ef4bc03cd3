//! Shrinking: turn a failing seed into a minimal scenario that still fails the same way.
//!
//! The run's faults, as applied (runtime choices resolved), become a fully scripted
//! scenario; then fault episodes are removed (delta debugging: halves, quarters, … single
//! episodes), the run is cut shortly after the violation, and nodes no fault names are
//! dropped, keeping each step only if the scenario, written as TOML, parsed back and run
//! with the same seed, still fails with the same kind of violation.

use crate::faults::{Action, FaultEvent};
use crate::oracle::{secs, ViolationKind};
use crate::report::RunReport;
use crate::run::run_seed;
use crate::scenario::{At, Dur, FaultSpec, MembershipSpec, NodeSpec, Scenario};
use std::time::Duration;

/// What shrinking produced.
#[derive(Debug, Clone)]
pub struct Shrunk {
    /// The minimal scenario, as TOML.
    pub toml: String,
    /// Fault steps before and after.
    pub events: (usize, usize),
    /// Nodes before and after.
    pub nodes: (usize, usize),
    /// Duration before and after.
    pub duration: (Duration, Duration),
    /// Simulations run while shrinking.
    pub trials: usize,
    /// The minimal scenario's failing run.
    pub report: RunReport,
}

#[derive(Clone)]
struct Candidate {
    keep_nodes: Vec<bool>,
    duration: Duration,
    events: Vec<FaultEvent>,
}

/// Violations that count as "failing the same way".
fn class(k: ViolationKind) -> u8 {
    match k {
        ViolationKind::Overlap | ViolationKind::TokenOrder => 0,
        ViolationKind::NoLeader => 1,
        ViolationKind::Panic => 2,
        ViolationKind::Routing => 3,
    }
}

/// Fault episodes: a kill with its restart, a pause with its resume, a spike with its end;
/// every other step alone. Each is a list of indices into `events`.
fn episodes(events: &[FaultEvent], base: &Scenario) -> Vec<Vec<usize>> {
    let closes = |a: &Action, b: &Action| match (a, b) {
        (Action::Kill(x), Action::Restart(y)) | (Action::Pause(x), Action::Resume(y)) => x == y,
        (Action::Loss(l), Action::Loss(m)) => *l != base.network.loss && *m == base.network.loss,
        (Action::Latency(l), Action::Latency(m)) => *l != base.network.latency && *m == base.network.latency,
        _ => false,
    };
    let mut taken = vec![false; events.len()];
    let mut out = Vec::new();
    for i in 0..events.len() {
        if taken[i] {
            continue;
        }
        taken[i] = true;
        let mut ep = vec![i];
        if let Some(j) = (i + 1..events.len()).find(|j| !taken[*j] && closes(&events[i].action, &events[*j].action)) {
            taken[j] = true;
            ep.push(j);
        }
        out.push(ep);
    }
    out
}

/// The state of one shrink: the failing run it started from, and the trials so far.
struct Shrinker<'a> {
    base: &'a Scenario,
    first: RunReport,
    want: u8,
    seed: u64,
    header: String,
    trials: usize,
    max_trials: usize,
    best: Option<RunReport>,
}

impl Shrinker<'_> {
    /// The scripted scenario of a candidate (`None` if a step names a dropped node).
    fn scenario(&self, c: &Candidate) -> Option<Scenario> {
        let base = self.base;
        let nodes = base.sim_nodes();
        let cfg = base.membership_cfg();
        let plan = &self.first.plan;
        let id = |i: usize| nodes[i].id.clone();
        let mut at = Vec::new();
        for e in &c.events {
            if e.action.node().is_some_and(|i| !c.keep_nodes[i]) {
                return None;
            }
            // Routes to dropped nodes are gone with them.
            let action = match &e.action {
                Action::Cut(links) => Action::Cut(
                    links
                        .iter()
                        .copied()
                        .filter(|(a, b)| c.keep_nodes[*a] && c.keep_nodes[*b])
                        .collect(),
                ),
                a => a.clone(),
            };
            at.push(At {
                time: Dur(e.at),
                step: action.to_step(id)?,
            });
        }
        let mut s = base.clone();
        s.name = format!("{} (shrunk, seed {})", base.name, self.seed);
        s.seeds = 1;
        s.first_seed = self.seed;
        s.duration = Dur(c.duration);
        s.membership = MembershipSpec {
            beat: Some(Dur(cfg.beat)),
            lease: Some(Dur(cfg.lease_time)),
            max_clock_skew: Some(Dur(cfg.max_clock_skew)),
            max_drift_ppm: Some(cfg.max_drift_ppm),
            bug: base.membership.bug,
            authenticate: base.membership.authenticate,
        };
        s.nodes = None;
        s.node = nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| c.keep_nodes[*i])
            .map(|(i, n)| NodeSpec {
                id: Some(n.id.clone()),
                rank: Some(n.rank),
                datacenter: Some(n.datacenter.clone()),
                drift_ppm: Some(plan.drift_ppm[i]),
                wall_offset_ms: Some((plan.wall_offset_ns[i] / 1_000_000) as i64),
                // Config skew stays: it is part of the failure.
                ..base.node.get(i).cloned().unwrap_or_default()
            })
            .collect();
        s.faults = FaultSpec::default();
        s.at = at;
        s.expect.leader_within = Some(Dur(base.leader_within()));
        s.router = None;
        Some(s)
    }

    /// The candidate as a scenario file: a header, then the TOML.
    fn text(&self, c: &Candidate) -> Option<String> {
        let toml = self.scenario(c)?.to_toml().ok()?;
        Some(format!("{}\n{toml}", self.header))
    }

    /// Whether the candidate, written and read back, fails the same way (within the budget).
    fn fails(&mut self, c: &Candidate) -> bool {
        if self.trials >= self.max_trials {
            return false;
        }
        let Some(s) = self.text(c).and_then(|t| Scenario::parse("shrink.toml", &t).ok()) else {
            return false;
        };
        self.trials += 1;
        let r = run_seed(&s, self.seed, "shrink.toml");
        let ok = r.violations.first().is_some_and(|v| class(v.kind) == self.want);
        if ok {
            self.best = Some(r);
        }
        ok
    }

    /// A safety violation needs nothing after it: cut the run a second after.
    fn cut_after_violation(&mut self, cur: Candidate) -> Candidate {
        let Some(v) = self.first.violations.first() else {
            return cur;
        };
        if self.want != 0 {
            return cur;
        }
        let cut = Duration::from_millis((v.at / 1_000_000) as u64 + 1000);
        let c = Candidate {
            duration: cut.min(cur.duration),
            events: cur.events.iter().filter(|e| e.at <= cut).cloned().collect(),
            ..cur.clone()
        };
        if self.fails(&c) {
            c
        } else {
            cur
        }
    }

    /// Delta debugging over fault episodes: drop chunks, halving the chunk until single
    /// episodes can no longer be dropped.
    fn drop_episodes(&mut self, mut cur: Candidate) -> Candidate {
        let mut chunk = (episodes(&cur.events, self.base).len() / 2).max(1);
        loop {
            if episodes(&cur.events, self.base).is_empty() {
                break;
            }
            let mut progress = false;
            let mut i = 0;
            while i < episodes(&cur.events, self.base).len() {
                let eps = episodes(&cur.events, self.base);
                let drop: Vec<usize> = eps[i..(i + chunk).min(eps.len())].iter().flatten().copied().collect();
                let c = Candidate {
                    events: cur
                        .events
                        .iter()
                        .enumerate()
                        .filter(|(k, _)| !drop.contains(k))
                        .map(|(_, e)| e.clone())
                        .collect(),
                    ..cur.clone()
                };
                if self.fails(&c) {
                    cur = c;
                    progress = true;
                } else {
                    i += chunk;
                }
            }
            if chunk == 1 && !progress {
                break;
            }
            if !progress {
                chunk = (chunk / 2).max(1);
            }
            if self.trials >= self.max_trials {
                break;
            }
        }
        cur
    }

    /// Drops every node no remaining step names, last first, while it still fails.
    fn drop_nodes(&mut self, mut cur: Candidate) -> Candidate {
        for k in (0..cur.keep_nodes.len()).rev() {
            if cur.keep_nodes.iter().filter(|x| **x).count() <= 1
                || cur.events.iter().any(|e| e.action.node() == Some(k))
            {
                continue;
            }
            let mut c = cur.clone();
            c.keep_nodes[k] = false;
            if self.fails(&c) {
                cur = c;
            }
        }
        cur
    }
}

/// Shrinks seed `seed` of `base` (read from `source`). Fails if that seed does not fail.
pub fn shrink(base: &Scenario, source: &str, seed: u64, max_trials: usize) -> Result<Shrunk, String> {
    let first = run_seed(base, seed, source);
    let Some(v0) = first.violations.first() else {
        return Err(format!("{source} seed {seed} shows no violation: nothing to shrink"));
    };
    let n = base.sim_nodes().len();
    let mut sh = Shrinker {
        base,
        want: class(v0.kind),
        seed,
        header: format!(
            "# Shrunk by `leasehold-sim shrink {source} --seed {seed}` from a {} at {}.",
            v0.kind,
            secs(v0.at)
        ),
        trials: 0,
        max_trials,
        best: None,
        first,
    };
    let start = Candidate {
        keep_nodes: vec![true; n],
        duration: base.duration.0,
        events: sh.first.applied.clone(),
    };
    if !sh.fails(&start) {
        return Err(format!(
            "the scripted form of {source} seed {seed} does not fail the same way; cannot shrink"
        ));
    }
    let cur = sh.cut_after_violation(start);
    let cur = sh.drop_episodes(cur);
    let cur = sh.drop_nodes(cur);
    let toml = sh.text(&cur).ok_or("internal: the shrunk candidate has no text")?;
    let report = sh.best.take().ok_or("internal: no failing run recorded")?;
    Ok(Shrunk {
        toml,
        events: (sh.first.applied.len(), cur.events.len()),
        nodes: (n, cur.keep_nodes.iter().filter(|x| **x).count()),
        duration: (base.duration.0, cur.duration),
        trials: sh.trials,
        report,
    })
}
