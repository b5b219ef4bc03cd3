//! Shrinking: turn a failing seed into a minimal scenario that still fails the same way.
//!
//! The run's faults, as applied (runtime choices resolved), become a fully scripted
//! scenario. Then, keeping each change only if the scenario, written as TOML, parsed back
//! and run with the same seed, still fails with the same kind of violation:
//! 1. the run is cut a second after a safety violation;
//! 2. fault episodes (a kill with its restart, a pause with its resume, ...) are removed by
//!    delta debugging: halves, quarters, ... single episodes;
//! 3. single steps are removed, one at a time;
//! 4. nodes that no step names are dropped;
//! 5. the network and the clocks are made plainer: no loss, duplication or reordering, one
//!    fixed latency, no per-node drift or offset, no per-datacenter links, no fault sites;
//! 6. every step is moved earlier by the same amount, and the run is cut to the shortest
//!    length that still fails.
//!
//! Steps 2 to 6 repeat until a whole round changes nothing, so the result is 1-minimal:
//! removing any one remaining step, episode or unnamed node makes the failure go away (or
//! the timeline impossible). After every removal, steps that no longer do anything (a
//! restart of a node that is up, a resume of one that is not paused) are dropped too, so a
//! candidate is always a timeline that can happen.

use crate::faults::FaultState;
use crate::faults::{Action, FaultEvent};
use crate::oracle::{secs, ViolationKind};
use crate::report::RunReport;
use crate::run::run_seed;
use crate::scenario::duration::text;
use crate::scenario::{DurRange, NetworkSpec, Scenario};
use crate::schedule::Schedule as Candidate;
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
    /// What was made plainer in the network and the clocks.
    pub plainer: Vec<String>,
    /// The seed the minimal scenario fails with (the original or one shortly after).
    pub seed: u64,
    /// Simulations run while shrinking.
    pub trials: usize,
    /// Whether the search stopped at `max_trials` before the result was 1-minimal.
    pub budget_exhausted: bool,
    /// The minimal scenario's failing run.
    pub report: RunReport,
}

impl Shrunk {
    /// One line: what shrank, by how much, in how many simulations.
    pub fn summary_line(&self) -> String {
        let mut s = format!(
            "shrunk in {} simulations: fault steps {} -> {}, nodes {} -> {}, duration {} -> {}, seed {}",
            self.trials,
            self.events.0,
            self.events.1,
            self.nodes.0,
            self.nodes.1,
            text(self.duration.0),
            text(self.duration.1),
            self.seed
        );
        if !self.plainer.is_empty() {
            s.push_str(&format!("; plainer: {}", self.plainer.join(", ")));
        }
        if self.budget_exhausted {
            s.push_str(" (stopped at --max-trials: may not be minimal)");
        }
        s
    }
}

/// Time left before the first fault when steps are moved earlier: enough for a first
/// election.
const SETTLE: Duration = Duration::from_secs(3);

/// How many seeds after the current one a candidate may fail with instead.
const OTHER_SEEDS: u64 = 3;

/// Violations that count as "failing the same way".
fn class(k: ViolationKind) -> u8 {
    match k {
        ViolationKind::Overlap | ViolationKind::TokenOrder | ViolationKind::LeaderWhileWaiting => 0,
        ViolationKind::StaleWrite => 4,
        ViolationKind::Guard => 5,
        ViolationKind::ViewBackwards => 6,
        ViolationKind::NoLeader => 1,
        ViolationKind::Panic => 2,
        ViolationKind::Routing => 3,
        ViolationKind::Unnoticed => 7,
        ViolationKind::StopHung => 8,
        ViolationKind::CampaignDisconnected => 9,
        ViolationKind::SilentLapse => 10,
        ViolationKind::ClockAhead => 11,
    }
}

/// Fault episodes: a kill, stop or state loss with its restart, a pause with its resume, a
/// suspension with its wake, a slow consumer with its recovery, a cut with its heal, a spike
/// with its end; every other step alone. Each is a list of indices into `events`.
pub(crate) fn episodes(events: &[FaultEvent], base: &NetworkSpec) -> Vec<Vec<usize>> {
    let closes = |a: &Action, b: &Action| a.closed_by(b, base.loss, base.latency);
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

/// The steps that still do something, in order, once others are gone.
pub(crate) fn normalize(events: Vec<FaultEvent>, n: usize) -> Vec<FaultEvent> {
    let mut st = FaultState::new(n);
    events
        .into_iter()
        .filter(|e| {
            let keep = st.takes_effect(&e.action);
            if keep {
                st.apply(&e.action);
            }
            keep
        })
        .collect()
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
    fn out_of_budget(&self) -> bool {
        self.trials >= self.max_trials
    }

    /// The scripted scenario of a candidate (`None` if a step names a dropped node).
    fn scenario(&self, c: &Candidate) -> Option<Scenario> {
        let mut s = c.scenario(self.base, self.seed)?;
        s.name = format!("{} (shrunk)", self.base.name);
        Some(s)
    }

    /// The candidate as a scenario file: a header, then the TOML.
    fn text(&self, c: &Candidate) -> Option<String> {
        let toml = self.scenario(c)?.to_toml().ok()?;
        Some(format!(
            "{}\n{toml}",
            self.header.replace("{seed}", &self.seed.to_string())
        ))
    }

    /// Whether the candidate, written and read back, fails the same way (within the budget)
    /// with the current seed or, failing that, with one of the next [`OTHER_SEEDS`]: a step
    /// whose only part in the failure was to steer the seed's random choices is not needed
    /// to show the bug. A candidate that fails with another seed carries that seed on.
    fn fails(&mut self, c: &Candidate) -> bool {
        let Some(s) = self.text(c).and_then(|t| Scenario::parse("shrink.toml", &t).ok()) else {
            return false;
        };
        for seed in (0..=OTHER_SEEDS).map(|k| self.seed.wrapping_add(k)) {
            if self.out_of_budget() {
                return false;
            }
            self.trials += 1;
            let r = run_seed(&s, seed, "shrink.toml");
            // The same class, and what the file expects (a kind, if it names one), so the
            // regression file passes its own `[expect]`.
            let expected = self.base.expect.violation;
            if r.violations.first().is_some_and(|v| class(v.kind) == self.want)
                && (!expected.any() || r.shows(expected))
            {
                self.seed = seed;
                self.best = Some(r);
                return true;
            }
        }
        false
    }

    /// `cur` without the steps `drop` (indices), normalized.
    fn without(&self, cur: &Candidate, drop: &[usize]) -> Candidate {
        let events = cur
            .events
            .iter()
            .enumerate()
            .filter(|(k, _)| !drop.contains(k))
            .map(|(_, e)| e.clone())
            .collect();
        Candidate {
            events: normalize(events, cur.keep_nodes.len()),
            ..cur.clone()
        }
    }

    /// When the last failing run's first violation happened.
    fn violation_at(&self) -> Option<Duration> {
        let r = self.best.as_ref().unwrap_or(&self.first);
        r.violations.first().map(|v| Duration::from_nanos(v.at as u64))
    }

    /// A safety violation needs nothing after it: cut the run a second after.
    fn cut_after_violation(&mut self, cur: Candidate) -> Candidate {
        let Some(at) = self.violation_at() else {
            return cur;
        };
        if self.want != 0 {
            return cur;
        }
        let cut = Duration::from_millis(at.as_millis() as u64 + 1000);
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
        let mut chunk = (episodes(&cur.events, &cur.network).len() / 2).max(1);
        loop {
            let mut progress = false;
            let mut i = 0;
            while i < episodes(&cur.events, &cur.network).len() && !self.out_of_budget() {
                let eps = episodes(&cur.events, &cur.network);
                let drop: Vec<usize> = eps[i..(i + chunk).min(eps.len())].iter().flatten().copied().collect();
                let c = self.without(&cur, &drop);
                if self.fails(&c) {
                    cur = c;
                    progress = true;
                } else {
                    i += chunk;
                }
            }
            if (chunk == 1 && !progress) || self.out_of_budget() || cur.events.is_empty() {
                break;
            }
            if !progress {
                chunk = (chunk / 2).max(1);
            }
        }
        cur
    }

    /// Each remaining step alone.
    fn drop_steps(&mut self, mut cur: Candidate) -> Candidate {
        let mut i = 0;
        while i < cur.events.len() && !self.out_of_budget() {
            let c = self.without(&cur, &[i]);
            if self.fails(&c) {
                cur = c;
            } else {
                i += 1;
            }
        }
        cur
    }

    /// Drops every node no remaining step names, last first, while it still fails.
    fn drop_nodes(&mut self, mut cur: Candidate) -> Candidate {
        for k in (0..cur.keep_nodes.len()).rev() {
            if !cur.keep_nodes[k]
                || cur.keep_nodes.iter().filter(|x| **x).count() <= 1
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

    /// A plainer network and plainer clocks, one setting at a time.
    fn plainer(&mut self, mut cur: Candidate, notes: &mut Vec<String>) -> Candidate {
        let mut changes = vec![
            Plainer::Loss,
            Plainer::Duplicate,
            Plainer::Reorder,
            Plainer::DcLinks,
            Plainer::Latency,
            Plainer::Sites,
        ];
        changes.extend((0..cur.events.len()).map(Plainer::LatencyStep));
        for i in 0..cur.keep_nodes.len() {
            changes.extend([Plainer::Drift(i), Plainer::Offset(i)]);
        }
        let ids: Vec<String> = self.base.sim_nodes().into_iter().map(|n| n.id).collect();
        for ch in changes {
            if self.out_of_budget() {
                break;
            }
            if let Some((note, c)) = ch.apply(&cur, &ids) {
                if self.fails(&c) {
                    cur = c;
                    notes.push(note);
                }
            }
        }
        cur
    }

    /// Every step earlier by the same amount, so the run can end sooner: by all of the time
    /// before the first step but [`SETTLE`], else by half or a quarter of that.
    fn earlier(&mut self, cur: Candidate) -> Candidate {
        let Some(first) = cur.events.first().map(|e| e.at) else {
            return cur;
        };
        let room = first.saturating_sub(SETTLE);
        for by in [room, room / 2, room / 4] {
            let by = Duration::from_millis(by.as_millis() as u64 / 100 * 100);
            if by.is_zero() || self.out_of_budget() {
                break;
            }
            let mut c = cur.clone();
            for e in &mut c.events {
                e.at -= by;
            }
            if self.fails(&c) {
                return c;
            }
        }
        cur
    }

    /// The shortest run that still fails: a binary search, to 100 ms, between just after the
    /// violation and the current length.
    fn shortest(&mut self, mut cur: Candidate) -> Candidate {
        let step = Duration::from_millis(100);
        let round = |d: Duration| Duration::from_millis(d.as_millis() as u64 / 100 * 100);
        let Some(at) = self.violation_at() else {
            return cur;
        };
        // Fails at `hi` (the current length); at `lo` and below, unknown.
        let mut lo = round(at) + step;
        while lo < cur.duration && !self.out_of_budget() {
            let mid = round(lo + (cur.duration - lo) / 2).max(lo);
            let c = Candidate {
                duration: mid,
                events: cur.events.iter().filter(|e| e.at < mid).cloned().collect(),
                ..cur.clone()
            };
            if self.fails(&c) {
                cur = c;
                // The violation may have moved earlier with the shorter run.
                if let Some(at) = self.violation_at() {
                    lo = lo.min(round(at) + step);
                }
            } else {
                lo = mid + step;
            }
        }
        cur
    }
}

/// One way to make a candidate's network or clocks plainer.
#[derive(Clone, Copy)]
enum Plainer {
    Loss,
    Duplicate,
    Reorder,
    DcLinks,
    /// One fixed latency, the range's lowest.
    Latency,
    /// A scripted latency step at one fixed value, its range's highest.
    LatencyStep(usize),
    /// A node's drift to 0 (unless steps change drift: they would fight it).
    Drift(usize),
    /// A node's wall-clock offset to 0.
    Offset(usize),
    /// The library's fault sites off.
    Sites,
}

impl Plainer {
    /// The candidate with this change, and a note of it; `None` if there is nothing to do.
    fn apply(self, cur: &Candidate, ids: &[String]) -> Option<(String, Candidate)> {
        let mut c = cur.clone();
        let n = &mut c.network;
        let note = match self {
            Plainer::Loss if n.loss > 0.0 => {
                let old = std::mem::take(&mut n.loss);
                // A loss spike's end restores the base loss: it restores the new one now.
                for e in &mut c.events {
                    if matches!(e.action, Action::Loss(l) if l == old) {
                        e.action = Action::Loss(0.0);
                    }
                }
                format!("loss {old} -> 0")
            }
            Plainer::Duplicate if n.duplicate > 0.0 => {
                format!("duplicate {} -> 0", std::mem::take(&mut n.duplicate))
            }
            Plainer::Reorder if n.reorder => {
                n.reorder = false;
                "reorder -> off".into()
            }
            Plainer::DcLinks if !n.dc_link.is_empty() => {
                n.dc_link.clear();
                "per-datacenter links -> none".into()
            }
            Plainer::Latency if n.latency.lo != n.latency.hi => {
                let (old, fixed) = (n.latency, DurRange::new(n.latency.lo, n.latency.lo));
                n.latency = fixed;
                // A latency spike's end restores the base latency: it restores the new one now.
                for e in &mut c.events {
                    if matches!(e.action, Action::Latency(r) if r == old) {
                        e.action = Action::Latency(fixed);
                    }
                }
                format!("latency {}..{} -> {}", text(old.lo), text(old.hi), text(fixed.lo))
            }
            Plainer::LatencyStep(i) => match c.events.get(i).map(|e| (e.at, &e.action)) {
                Some((at, Action::Latency(r))) if r.lo != r.hi => {
                    let hi = r.hi;
                    c.events[i].action = Action::Latency(DurRange::new(hi, hi));
                    format!("latency step at {} -> {}", secs(at.as_nanos()), text(hi))
                }
                _ => return None,
            },
            Plainer::Drift(i)
                if c.keep_nodes[i]
                    && c.drift_ppm[i] != 0
                    && !c.events.iter().any(|e| matches!(e.action, Action::Drift(..))) =>
            {
                c.drift_ppm[i] = 0;
                format!("drift of {} -> 0", ids[i])
            }
            Plainer::Offset(i) if c.keep_nodes[i] && c.offset_ms[i] != 0 => {
                c.offset_ms[i] = 0;
                format!("wall offset of {} -> 0", ids[i])
            }
            Plainer::Sites if c.sites.is_some() => {
                c.sites = None;
                "fault sites -> off".into()
            }
            _ => return None,
        };
        Some((note, c))
    }
}

/// Shrinks seed `seed` of `base` (read from `source`; as `run --swarm` ran it if `swarm`).
/// Fails if that seed does not fail.
pub fn shrink(base: &Scenario, source: &str, seed: u64, swarm: bool, max_trials: usize) -> Result<Shrunk, String> {
    let drawn;
    let base = if swarm {
        drawn = crate::swarm::draw(base, seed).0;
        &drawn
    } else {
        base
    };
    let first = run_seed(base, seed, source);
    let Some(v0) = first.violations.first() else {
        return Err(format!("{source} seed {seed} shows no violation: nothing to shrink"));
    };
    let n = base.sim_nodes().len();
    let swarm_flag = if swarm { " --swarm" } else { "" };
    let mut sh = Shrinker {
        base,
        want: class(v0.kind),
        seed,
        // `{seed}` is filled in when written: shrinking may move to a nearby seed.
        header: format!(
            "# Shrunk by `leasehold-sim shrink {source} --seed {seed}{swarm_flag}` from a {} at {}.\n\
             # Fails with seed {{seed}}: `leasehold-sim replay THIS_FILE --seed {{seed}}`.",
            v0.kind,
            secs(v0.at)
        ),
        trials: 0,
        max_trials,
        best: None,
        first,
    };
    let start = Candidate::of_run(base, &sh.first);
    if !sh.fails(&start) {
        return Err(format!(
            "the scripted form of {source} seed {seed} does not fail the same way; cannot shrink"
        ));
    }
    let mut notes = Vec::new();
    let mut cur = sh.cut_after_violation(start);
    loop {
        let before = sh.text(&cur);
        cur = sh.drop_episodes(cur);
        cur = sh.drop_steps(cur);
        cur = sh.drop_nodes(cur);
        cur = sh.plainer(cur, &mut notes);
        cur = sh.earlier(cur);
        cur = sh.shortest(cur);
        if sh.text(&cur) == before || sh.out_of_budget() {
            break;
        }
    }
    let toml = sh.text(&cur).ok_or("internal: the shrunk candidate has no text")?;
    let budget_exhausted = sh.out_of_budget();
    let report = sh.best.take().ok_or("internal: no failing run recorded")?;
    Ok(Shrunk {
        toml,
        events: (sh.first.applied.len(), cur.events.len()),
        nodes: (n, cur.keep_nodes.iter().filter(|x| **x).count()),
        duration: (base.duration.0, cur.duration),
        plainer: notes,
        seed: sh.seed,
        trials: sh.trials,
        budget_exhausted,
        report,
    })
}
