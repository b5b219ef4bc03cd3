//! What one seed's run produced: the trace, the claims in true time, what the oracle found,
//! the figures, and the paragraph a person reads when something failed.

use crate::fabric::FabricStats;
use crate::faults::FaultEvent;
use crate::nemesis::Plan;
use crate::oracle::routing::RouterReport;
use crate::oracle::{secs, TrueClaim, Violation, ViolationKind};
use crate::scenario::{Expected, ExpectedKind};
use crate::trace::{Trace, TraceEvent};
use std::time::Duration;

/// The outcome of one seed.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Scenario name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// The exact command that replays this seed.
    pub replay: String,
    /// Node IDs, by index.
    pub nodes: Vec<String>,
    /// The fault plan (its events are left out by [`run_seed_lean`](crate::run::run_seed_lean)).
    pub plan: Plan,
    /// The faults as applied, with runtime choices resolved (a partition as the exact routes
    /// it cut; steps that did nothing left out): a fully scripted form of the run (empty from
    /// [`run_seed_lean`](crate::run::run_seed_lean), which counts them in the figures).
    pub applied: Vec<FaultEvent>,
    /// The full event trace (only its digest and length from
    /// [`run_seed_lean`](crate::run::run_seed_lean)).
    pub trace: Trace,
    /// Every lease claim, in true time (empty from [`run_seed_lean`](crate::run::run_seed_lean)).
    pub claims: Vec<TrueClaim>,
    /// What the oracle found (empty: clean).
    pub violations: Vec<Violation>,
    /// Times, holder changes and message counts.
    pub figures: Figures,
    /// Router figures, for scenarios with `[router]`.
    pub router: Option<RouterReport>,
    /// What `--swarm` drew for this seed (`None`: the scenario's faults as written).
    pub swarm: Option<Swarm>,
    /// The coverage features the run reached (see [`crate::coverage`]; empty unless the
    /// scenario asked for coverage, as `hunt` does).
    pub coverage: Vec<u64>,
}

/// The figures of one run.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Simulated time.
    pub sim_time: Duration,
    /// Wall time the run took.
    pub wall_time: Duration,
    /// How many times the holder changed.
    pub leader_changes: u64,
    /// Gaps with no holder between one holder and the next (ms).
    pub failovers_ms: Vec<f64>,
    /// Time in the run during which no node held a lease.
    pub no_leader: Duration,
    /// The longest stretch of the run in which no node held a lease (from the start, so a
    /// first election counts).
    pub longest_gap: Duration,
    /// The calm tail the liveness oracle judges, from the last fault plus `leader_within` to
    /// the end: how long some node held a lease in it, and its length (`None`: the run ends
    /// before it begins).
    pub calm_tail: Option<(Duration, Duration)>,
    /// Lease claims made (each renewal is one).
    pub claims: u64,
    /// Faults applied (steps that did something).
    pub faults_applied: u64,
    /// What the simulated network did.
    pub fabric: FabricStats,
    /// Claims that began while another holder's claim stood (beliefs that overlapped).
    pub overlaps: u64,
    /// Writes the fenced store accepted, and of them those under a stale token.
    pub writes_accepted: u64,
    /// Writes the fenced store accepted under a token lower than one it had accepted.
    pub stale_writes_accepted: u64,
    /// What applications' guards said, each judged by the guards oracle.
    pub guard_reports: u64,
    /// The longest an agent took to report a frozen connection (the conduct oracle).
    pub freeze_noticed_max: Duration,
}

impl Figures {
    /// The holder changes, failover gaps and availability of `claims`, whose calm tail
    /// begins at `tail_from` (true ns); the rest zero until filled in.
    pub fn of_claims(claims: &[TrueClaim], sim_time: Duration, tail_from: u128) -> Self {
        let mut sorted: Vec<&TrueClaim> = claims.iter().collect();
        sorted.sort_by_key(|c| c.from);
        let end = sim_time.as_nanos();
        let held = held_time(&sorted, end, tail_from);
        let ns = |x: u128| Duration::from_nanos(u64::try_from(x).unwrap_or(u64::MAX));
        let mut f = Figures {
            sim_time,
            claims: claims.len() as u64,
            no_leader: sim_time.saturating_sub(ns(held.total)),
            longest_gap: ns(held.longest_gap),
            calm_tail: (tail_from < end).then(|| (ns(held.tail), ns(end - tail_from))),
            ..Figures::default()
        };
        f.overlaps = overlapping_starts(&sorted);
        let mut prev: Option<&TrueClaim> = None;
        for c in sorted {
            match prev {
                // A renewal by the same holder extends its claim.
                Some(p) if (p.node, p.inc) == (c.node, c.inc) => {
                    if c.until > p.until {
                        prev = Some(c);
                    }
                }
                _ => {
                    if let Some(p) = prev.filter(|p| c.from > p.until) {
                        f.failovers_ms.push((c.from - p.until) as f64 / 1e6);
                    }
                    f.leader_changes += 1;
                    prev = Some(c);
                }
            }
        }
        f
    }
}

/// How many of `claims` (sorted by start) began while another holder's claim stood.
fn overlapping_starts(claims: &[&TrueClaim]) -> u64 {
    let mut active: Vec<&TrueClaim> = Vec::new();
    let mut n = 0;
    for c in claims.iter().filter(|c| c.until > c.from) {
        active.retain(|a| a.until > c.from);
        if active.iter().any(|a| (a.node, a.inc) != (c.node, c.inc)) {
            n += 1;
        }
        active.push(c);
    }
    n
}

impl Figures {
    /// The fraction of the run in which some node held a lease.
    pub fn availability(&self) -> f64 {
        if self.sim_time.is_zero() {
            return 1.0;
        }
        1.0 - self.no_leader.as_secs_f64() / self.sim_time.as_secs_f64()
    }

    /// The fraction of the calm tail (see [`Figures::calm_tail`]) in which some node held a
    /// lease.
    pub fn calm_tail_availability(&self) -> Option<f64> {
        let (held, len) = self.calm_tail?;
        Some(held.as_secs_f64() / len.as_secs_f64())
    }
}

/// How long claims were held, in ns.
struct Held {
    /// Within `[0, end)`.
    total: u128,
    /// Within `[tail_from, end)`.
    tail: u128,
    /// The longest stretch of `[0, end)` without a claim.
    longest_gap: u128,
}

/// How long at least one of `claims` (sorted by start) was held.
fn held_time(claims: &[&TrueClaim], end: u128, tail_from: u128) -> Held {
    let mut h = Held {
        total: 0,
        tail: 0,
        longest_gap: 0,
    };
    let mut reach = 0u128;
    for c in claims {
        let (from, until) = (c.from.max(reach), c.until.min(end));
        if until > from {
            h.total += until - from;
            h.tail += until.saturating_sub(from.max(tail_from));
            h.longest_gap = h.longest_gap.max(from - reach);
            reach = until;
        }
    }
    h.longest_gap = h.longest_gap.max(end.saturating_sub(reach));
    h
}

impl RunReport {
    /// The first safety violation (overlap or token order), if any. A panic is not one: a
    /// known-bad scenario is caught only by the violation its planted bug causes.
    pub fn safety_violation(&self) -> Option<&Violation> {
        self.violations.iter().find(|v| v.is_safety())
    }

    /// Whether this run shows the violation a known-bad scenario expects (`Any(false)`: none
    /// is expected, so this is whether the run is clean).
    pub fn shows(&self, expected: Expected) -> bool {
        let kind = |k: ExpectedKind| match k {
            ExpectedKind::Overlap => ViolationKind::Overlap,
            ExpectedKind::TokenOrder => ViolationKind::TokenOrder,
            ExpectedKind::NoLeader => ViolationKind::NoLeader,
            ExpectedKind::LeaderWhileWaiting => ViolationKind::LeaderWhileWaiting,
            ExpectedKind::StaleWrite => ViolationKind::StaleWrite,
            ExpectedKind::Guard => ViolationKind::Guard,
            ExpectedKind::ViewBackwards => ViolationKind::ViewBackwards,
            ExpectedKind::Routing => ViolationKind::Routing,
            ExpectedKind::Unnoticed => ViolationKind::Unnoticed,
            ExpectedKind::StopHung => ViolationKind::StopHung,
            ExpectedKind::CampaignDisconnected => ViolationKind::CampaignDisconnected,
            ExpectedKind::SilentLapse => ViolationKind::SilentLapse,
            ExpectedKind::ClockAhead => ViolationKind::ClockAhead,
        };
        match expected {
            Expected::Any(false) => self.violations.is_empty(),
            Expected::Any(true) => self.safety_violation().is_some(),
            Expected::Kind(k) => self.violations.iter().any(|v| v.kind == kind(k)),
        }
    }

    /// The router figures as one paragraph (empty without `[router]`).
    pub fn router_summary(&self) -> String {
        let Some(r) = &self.router else { return String::new() };
        format!(
            "router: {} RPCs, {} found no server; attempts per successful RPC {:?}; first choices {:?} (chi-square p = {}); distance order right for {}/{} clients; clients knowing each server {:?}; {} found no server though a server was reachable and untried; {} of them to other datacenters ({} found no server, {} at the first try); {} routed as unhealthy; spread through the run: {} rebalances judged (chi-square p = {}); distance order right in {}/{} samples",
            r.rpcs,
            r.failed,
            r.attempts,
            r.first_choices,
            r.spread_p.map_or("-".into(), |p| format!("{p:.3}")),
            r.distance_agree.0,
            r.distance_agree.1,
            r.servers_known,
            r.failed_untried,
            r.remote_rpcs,
            r.remote_failed,
            r.remote_first_try,
            r.unhealthy,
            r.rebalances_judged,
            r.run_spread_p.map_or("-".into(), |p| format!("{p:.3}")),
            r.distance_samples.0,
            r.distance_samples.1,
        )
    }

    /// The run as one JSON object (`replay --json`): the seed, what `--swarm` drew, every
    /// violation with its claims, the figures, the trace's size and digest, and the command
    /// that replays it.
    pub fn json(&self, file: &str) -> serde_json::Value {
        let claim = |c: &crate::oracle::TrueClaim| {
            serde_json::json!({
                "node": c.id, "incarnation": c.inc, "token": c.token,
                "from_s": c.from as f64 / 1e9, "until_s": c.until as f64 / 1e9,
            })
        };
        let violations: Vec<serde_json::Value> = self
            .violations
            .iter()
            .map(|v| {
                serde_json::json!({
                    "kind": v.kind.key(), "what": v.kind.to_string(), "at_s": v.at as f64 / 1e9,
                    "detail": v.detail, "claims": v.claims.iter().map(claim).collect::<Vec<_>>(),
                })
            })
            .collect();
        let f = &self.figures;
        serde_json::json!({
            "file": file,
            "scenario": self.scenario,
            "seed": self.seed,
            "swarm": self.swarm.as_ref().map(|w| serde_json::json!({"on": w.on, "off": w.off, "faults": w.faults})),
            "violations": violations,
            "faults_applied": f.faults_applied,
            "sim_seconds": f.sim_time.as_secs_f64(),
            "wall_seconds": f.wall_time.as_secs_f64(),
            "leader_changes": f.leader_changes,
            "failovers_ms": f.failovers_ms,
            "no_leader_seconds": f.no_leader.as_secs_f64(),
            "availability": f.availability(),
            "longest_gap_s": f.longest_gap.as_secs_f64(),
            "calm_tail_availability": f.calm_tail_availability(),
            "claims": f.claims,
            "messages": {"published": f.fabric.published, "delivered": f.fabric.delivered, "lost": f.fabric.lost, "cut": f.fabric.cut},
            "trace_events": self.trace.len,
            "trace_digest": format!("{:016x}", self.trace.digest),
            "replay": self.replay,
        })
    }

    /// A report of the first violation: the claims, the faults around it, the last events
    /// before it, the seed, and the command that replays it.
    pub fn describe(&self) -> String {
        let Some(v) = self.violations.first() else {
            return format!("{} seed {}: no violation", self.scenario, self.seed);
        };
        let mut s = format!(
            "VIOLATION in {} (seed {}): {} at {}\n",
            self.scenario,
            self.seed,
            v.kind,
            secs(v.at)
        );
        for c in &v.claims {
            s.push_str(&format!("  claim: {c}\n"));
        }
        if !v.detail.is_empty() {
            s.push_str(&format!("  {}\n", v.detail));
        }
        if let Some(w) = &self.swarm {
            s.push_str(&format!("  {w}\n"));
        }
        let events = &self.trace.events;
        let faults: Vec<String> = events
            .iter()
            .filter(|e| e.what.starts_with("fault") && e.at <= v.at && e.at + 30_000_000_000 >= v.at)
            .map(|e| format!("    {}", e.line()))
            .collect();
        if !faults.is_empty() {
            s.push_str("  faults in the 30s before:\n");
            s.push_str(&faults.join("\n"));
            s.push('\n');
        }
        let before: Vec<&TraceEvent> = events.iter().filter(|e| e.at <= v.at).collect();
        s.push_str("  last events before it:\n");
        for e in &before[before.len().saturating_sub(12)..] {
            s.push_str(&format!("    {}\n", e.line()));
        }
        s.push_str(&format!("  replay: {}\n", self.replay));
        s
    }
}

/// What a seed's swarm draw turned on.
#[derive(Debug, Clone, PartialEq)]
pub struct Swarm {
    /// The fault classes on, in the file's order.
    pub on: Vec<String>,
    /// The classes of the file left off.
    pub off: Vec<String>,
    /// The body of the `[faults]` table that ran, as TOML.
    pub faults: String,
}

impl std::fmt::Display for Swarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.on.is_empty() {
            return write!(f, "swarm: the scenario has no random faults");
        }
        write!(f, "swarm: {} on", self.on.join(", "))?;
        if !self.off.is_empty() {
            write!(f, "; {} off", self.off.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nemesis::Plan;

    fn report(kind: ViolationKind) -> RunReport {
        RunReport {
            scenario: "s".into(),
            seed: 7,
            replay: "replay".into(),
            nodes: Vec::new(),
            plan: Plan {
                drift_ppm: Vec::new(),
                wall_offset_ns: Vec::new(),
                origin: Vec::new(),
                events: Vec::new(),
            },
            applied: Vec::new(),
            trace: Trace::default(),
            claims: Vec::new(),
            violations: vec![Violation {
                kind,
                at: 0,
                claims: Vec::new(),
                detail: "boom".into(),
            }],
            figures: Figures::default(),
            router: None,
            swarm: None,
            coverage: Vec::new(),
        }
    }

    #[test]
    fn a_panic_is_reported_as_a_panic_and_catches_no_known_bad_scenario() {
        let r = report(ViolationKind::Panic);
        assert!(r.safety_violation().is_none());
        assert!(!r.shows(Expected::Any(true)));
        assert!(!r.shows(Expected::Any(false)), "a panic is not a clean run either");
        assert!(r.describe().contains("simulation panicked"), "{}", r.describe());
        let o = report(ViolationKind::Overlap);
        assert!(o.shows(Expected::Any(true)) && o.shows(Expected::Kind(ExpectedKind::Overlap)));
        assert!(!o.shows(Expected::Kind(ExpectedKind::NoLeader)));
    }
}
