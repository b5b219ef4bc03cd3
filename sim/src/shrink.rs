//! Shrinking: turn a failing seed into a minimal scenario that still fails the same way.
//!
//! The run's faults, as applied (runtime choices resolved), become a fully scripted
//! scenario; then fault episodes are removed (delta debugging: halves, quarters, … single
//! episodes), the run is cut shortly after the violation, and nodes no fault names are
//! dropped, keeping each step only if the scenario, parsed from its own TOML text and run
//! with the same seed, still fails with the same kind of violation.

use crate::nemesis::{Action, FaultEvent};
use crate::oracle::ViolationKind;
use crate::run::{run_seed, RunReport};
use crate::scenario::{Bug, Scenario};
use std::fmt::Write as _;
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

fn class(k: ViolationKind) -> u8 {
    match k {
        ViolationKind::Overlap | ViolationKind::TokenOrder => 0,
        ViolationKind::NoLeader => 1,
        ViolationKind::Panic => 2,
        ViolationKind::Routing => 3,
    }
}

/// A duration as text the scenario parser reads back exactly ("1s 250ms 3ns").
fn ns(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn bug_name(b: Bug) -> &'static str {
    match b {
        Bug::SkipRestartQuarantine => "skip_restart_quarantine",
        Bug::IgnoreDrift => "ignore_drift",
        Bug::LeaseFromGrant => "lease_from_grant",
        Bug::GrantIgnoringPromise => "grant_ignoring_promise",
    }
}

/// Nodes an action names (cut links excluded: they are filtered instead).
fn named(a: &Action) -> Vec<usize> {
    match a {
        Action::Kill(i)
        | Action::Restart(i)
        | Action::Pause(i)
        | Action::Resume(i)
        | Action::ClockStep(i, _)
        | Action::Drift(i, _) => vec![*i],
        _ => Vec::new(),
    }
}

/// The scripted scenario text for a candidate (`None` if it names a dropped node).
fn to_toml(base: &Scenario, r0: &RunReport, c: &Candidate, seed: u64, header: &str) -> Option<String> {
    let nodes = base.sim_nodes();
    let cfg = base.membership_cfg();
    let id = |i: usize| nodes[i].id.clone();
    let mut t = String::new();
    let _ = writeln!(t, "{header}");
    let _ = writeln!(t, "name = {:?}", format!("{} (shrunk, seed {seed})", base.name));
    let _ = writeln!(t, "algorithm = \"{}\"", base.algorithm);
    let _ = writeln!(t, "seeds = 1\nfirst_seed = {seed}\nduration = \"{}\"\n", ns(c.duration));
    let _ = writeln!(
        t,
        "[membership]\nbeat = \"{}\"\nlease = \"{}\"",
        ns(cfg.beat),
        ns(cfg.lease_time)
    );
    let _ = writeln!(
        t,
        "max_clock_skew = \"{}\"\nmax_drift_ppm = {}",
        ns(cfg.max_clock_skew),
        cfg.max_drift_ppm
    );
    if let Some(b) = base.membership.bug {
        let _ = writeln!(t, "bug = \"{}\"", bug_name(b));
    }
    let net = &base.network;
    let _ = writeln!(
        t,
        "\n[network]\nlatency = \"{}..{}\"\nloss = {:?}\nreorder = {}",
        ns(net.latency.lo),
        ns(net.latency.hi),
        net.loss,
        net.reorder
    );
    for (i, n) in nodes.iter().enumerate().filter(|(i, _)| c.keep_nodes[*i]) {
        let off_ms = (r0.plan.wall_offset_ns[i] / 1_000_000) as i64;
        let _ = writeln!(
            t,
            "\n[[node]]\nid = {:?}\nrank = {}\ndatacenter = {:?}",
            n.id, n.rank, n.datacenter
        );
        let _ = writeln!(t, "drift_ppm = {}\nwall_offset_ms = {off_ms}", r0.plan.drift_ppm[i]);
    }
    for e in &c.events {
        if named(&e.action).iter().any(|i| !c.keep_nodes[*i]) {
            return None;
        }
        let step = match &e.action {
            Action::Cut(links) => {
                let kept: Vec<String> = links
                    .iter()
                    .filter(|(a, b)| c.keep_nodes[*a] && c.keep_nodes[*b])
                    .map(|(a, b)| format!("[{:?}, {:?}]", id(*a), id(*b)))
                    .collect();
                if kept.is_empty() {
                    "heal = true".to_string()
                } else {
                    format!("cut = [{}]", kept.join(", "))
                }
            }
            Action::Heal => "heal = true".into(),
            Action::Kill(i) => format!("kill = {:?}", id(*i)),
            Action::Restart(i) => format!("restart = {:?}", id(*i)),
            Action::Pause(i) => format!("pause = {:?}", id(*i)),
            Action::Resume(i) => format!("resume = {:?}", id(*i)),
            Action::ClockStep(i, by) => format!(
                "clock_step = {{ node = {:?}, by = \"{}\", back = {} }}",
                id(*i),
                ns(Duration::from_nanos(by.unsigned_abs() as u64)),
                *by < 0
            ),
            Action::Drift(i, ppm) => format!("drift = {{ node = {:?}, ppm = {ppm} }}", id(*i)),
            Action::Loss(l) => format!("loss = {l:?}"),
            Action::Latency(r) => format!("latency = \"{}..{}\"", ns(r.lo), ns(r.hi)),
            // Applied runs hold only resolved actions; these never appear.
            Action::Partition { .. } | Action::IsolateLeader { .. } | Action::Bridge { .. } | Action::OneWay { .. } => {
                return None
            }
        };
        let _ = writeln!(t, "\n[[at]]\ntime = \"{}\"\n{step}", ns(e.at));
    }
    let _ = writeln!(
        t,
        "\n[expect]\nviolation = {}\nleader_within = \"{}\"",
        base.expect.violation,
        ns(base.leader_within())
    );
    Some(t)
}

/// Fault episodes: a kill with its restart, a pause with its resume, a spike with its end;
/// every other step alone. Each is a list of indices into `events`.
fn episodes(events: &[FaultEvent], base: &Scenario) -> Vec<Vec<usize>> {
    let mut taken = vec![false; events.len()];
    let mut out = Vec::new();
    for i in 0..events.len() {
        if taken[i] {
            continue;
        }
        taken[i] = true;
        let mut ep = vec![i];
        let closes = |a: &Action, b: &Action| match (a, b) {
            (Action::Kill(x), Action::Restart(y)) | (Action::Pause(x), Action::Resume(y)) => x == y,
            (Action::Loss(l), Action::Loss(m)) => *l != base.network.loss && *m == base.network.loss,
            (Action::Latency(l), Action::Latency(m)) => *l != base.network.latency && *m == base.network.latency,
            _ => false,
        };
        if let Some(j) = (i + 1..events.len()).find(|j| !taken[*j] && closes(&events[i].action, &events[*j].action)) {
            taken[j] = true;
            ep.push(j);
        }
        out.push(ep);
    }
    out
}

/// Shrinks seed `seed` of `base` (read from `source`). Fails if that seed does not fail.
pub fn shrink(base: &Scenario, source: &str, seed: u64, max_trials: usize) -> Result<Shrunk, String> {
    let r0 = run_seed(base, seed, source);
    let Some(v0) = r0.violations.first() else {
        return Err(format!("{source} seed {seed} shows no violation: nothing to shrink"));
    };
    let want = class(v0.kind);
    let header = format!(
        "# Shrunk by `leasehold-sim shrink {source} --seed {seed}` from a {} at {}.",
        v0.kind,
        crate::oracle::secs(v0.at)
    );
    let n = base.sim_nodes().len();
    let mut trials = 0usize;
    let mut best: Option<RunReport> = None;
    let mut fails = |c: &Candidate, trials: &mut usize| -> bool {
        if *trials >= max_trials {
            return false;
        }
        let Some(text) = to_toml(base, &r0, c, seed, &header) else {
            return false;
        };
        let Ok(s) = Scenario::parse("shrink.toml", &text) else {
            return false;
        };
        *trials += 1;
        let r = run_seed(&s, seed, "shrink.toml");
        let ok = r.violations.first().is_some_and(|v| class(v.kind) == want);
        if ok {
            best = Some(r);
        }
        ok
    };

    let mut cur = Candidate {
        keep_nodes: vec![true; n],
        duration: base.duration.0,
        events: r0.applied.clone(),
    };
    if !fails(&cur, &mut trials) {
        return Err(format!(
            "the scripted form of {source} seed {seed} does not fail the same way; cannot shrink"
        ));
    }
    // A safety violation needs nothing after it.
    if want == 0 {
        let cut = Duration::from_millis((v0.at / 1_000_000) as u64 + 1000);
        let c = Candidate {
            duration: cut.min(cur.duration),
            events: cur.events.iter().filter(|e| e.at <= cut).cloned().collect(),
            ..cur.clone()
        };
        if fails(&c, &mut trials) {
            cur = c;
        }
    }
    // Delta debugging over episodes.
    let mut chunk = (episodes(&cur.events, base).len() / 2).max(1);
    loop {
        let eps = episodes(&cur.events, base);
        if eps.is_empty() {
            break;
        }
        let mut progress = false;
        let mut i = 0;
        while i < episodes(&cur.events, base).len() {
            let eps = episodes(&cur.events, base);
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
            if fails(&c, &mut trials) {
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
        if trials >= max_trials {
            break;
        }
    }
    // Fewer nodes: drop any node no remaining step names, last first.
    for k in (0..n).rev() {
        if cur.keep_nodes.iter().filter(|x| **x).count() <= 1
            || cur.events.iter().any(|e| named(&e.action).contains(&k))
        {
            continue;
        }
        let mut c = cur.clone();
        c.keep_nodes[k] = false;
        if fails(&c, &mut trials) {
            cur = c;
        }
    }
    let toml = to_toml(base, &r0, &cur, seed, &header).ok_or("internal: the shrunk candidate has no text")?;
    let report = best.ok_or("internal: no failing run recorded")?;
    Ok(Shrunk {
        toml,
        events: (r0.applied.len(), cur.events.len()),
        nodes: (n, cur.keep_nodes.iter().filter(|x| **x).count()),
        duration: (base.duration.0, cur.duration),
        trials,
        report,
    })
}
