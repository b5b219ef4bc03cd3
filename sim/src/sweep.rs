//! Sweeping a scenario over seeds and judging it against its `[expect]`.

use crate::record::Keep;
use crate::report::RunReport;
use crate::run::{run_seed, run_seed_lean};
use crate::scenario::{Scenario, ScenarioError};
use crate::swarm::run_swarm_seed;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How many failing seeds a summary lists (the count is always exact).
pub const FAILING_SEEDS_CAP: usize = 100;

/// How a sweep runs its seeds.
#[derive(Debug, Clone, Copy, Default)]
pub struct SweepOptions {
    /// Each seed runs a random subset of the fault classes ([`crate::swarm`]).
    pub swarm: bool,
    /// Run every seed even after a known-bad scenario is caught (to measure how often).
    pub keep_going: bool,
    /// This sweep is shard `(i, n)` of a larger one.
    pub shard: Option<(u64, u64)>,
    /// Keep every seed's whole report (trace, claims, faults applied), as pictures of every
    /// seed need; otherwise only failing seeds have one ([`run_seed_lean`]).
    pub whole: bool,
    /// How many seeds run at once, each on its own thread (0 or 1: one at a time). The
    /// summary is the same whatever the number: seeds are judged in order, and a sweep that
    /// stops at its first catch ignores the seeds run beside and after it.
    pub jobs: usize,
}

/// The result of one scenario over its seeds.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Scenario name.
    pub name: String,
    /// Its file.
    pub source: String,
    /// Algorithm.
    pub algorithm: String,
    /// How the seeds ran.
    pub options: SweepOptions,
    /// Seeds run.
    pub seeds: u64,
    /// Seeds with a violation (safety, liveness or panic).
    pub violations: u64,
    /// The failing seeds, in order, at most [`FAILING_SEEDS_CAP`].
    pub failing_seeds: Vec<u64>,
    /// The first seed with a violation.
    pub first_failing: Option<RunReport>,
    /// Simulated time, all seeds.
    pub sim_time: Duration,
    /// Wall time the sweep took (with `jobs` above 1, less than its seeds' run times added
    /// up).
    pub wall_time: Duration,
    /// Holder changes, all seeds.
    pub leader_changes: u64,
    /// Gaps between holders, all seeds (ms).
    pub failovers_ms: Vec<f64>,
    /// Time without a leader, all seeds.
    pub no_leader: Duration,
    /// Each seed's availability (the fraction of its run in which some node held a lease),
    /// longest gap without a holder (s) and calm-tail availability (seeds whose run ends
    /// before the calm tail begins have none), in seed order.
    pub availability: Vec<f64>,
    /// See [`Summary::availability`].
    pub longest_gap_s: Vec<f64>,
    /// See [`Summary::availability`].
    pub calm_tail_availability: Vec<f64>,
    /// Lease claims, all seeds.
    pub claims: u64,
    /// Claims that began while another holder's stood (beliefs), all seeds.
    pub overlaps: u64,
    /// Writes the fenced store accepted, all seeds.
    pub writes_accepted: u64,
    /// Writes the fenced store accepted under a stale token (effects), all seeds.
    pub stale_writes_accepted: u64,
    /// What applications' guards said, judged by the guards oracle, all seeds.
    pub guard_reports: u64,
    /// The longest an agent took to report a frozen connection, all seeds.
    pub freeze_noticed_max: Duration,
    /// Whether the scenario met its expectation.
    pub met: bool,
    /// Whether a violation was expected.
    pub expected_violation: bool,
}

/// One scenario's line of `run --json`, and what `merge` reads back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonSummary {
    /// The scenario file, as given on the command line.
    pub file: String,
    /// Scenario name.
    pub name: String,
    /// Algorithm.
    pub algorithm: String,
    /// Whether seeds ran under `--swarm`.
    #[serde(default)]
    pub swarm: bool,
    /// The shard, `I/N`, when this is one shard of a sweep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// Seeds run.
    pub seeds: u64,
    /// Seeds with a violation.
    pub violations: u64,
    /// The failing seeds, at most [`FAILING_SEEDS_CAP`] (`violations` counts them all).
    #[serde(default)]
    pub failing_seeds: Vec<u64>,
    /// First failing seed.
    pub first_failing_seed: Option<u64>,
    /// The command that replays the first failing seed.
    #[serde(default)]
    pub replay: Option<String>,
    /// The fault classes `--swarm` turned on for the first failing seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failing_faults: Option<Vec<String>>,
    /// Simulated seconds.
    pub sim_seconds: f64,
    /// Wall seconds.
    pub wall_seconds: f64,
    /// Holder changes.
    pub leader_changes: u64,
    /// Median failover gap.
    pub failover_p50_ms: Option<f64>,
    /// 99th percentile failover gap.
    pub failover_p99_ms: Option<f64>,
    /// Failover gaps to the millisecond: `[ms, count]` pairs, for merging percentiles.
    #[serde(default)]
    pub failover_histogram_ms: Vec<(u64, u64)>,
    /// Seconds without a leader.
    pub no_leader_seconds: f64,
    /// The lowest availability of a seed (the fraction of its run in which some node held
    /// a lease).
    #[serde(default)]
    pub availability_min: Option<f64>,
    /// The median availability of the seeds (from `availability_histogram`).
    #[serde(default)]
    pub availability_p50: Option<f64>,
    /// The seeds' availability in hundredths of a percent: `[bp, count]` pairs, for merging.
    #[serde(default)]
    pub availability_histogram: Vec<(u64, u64)>,
    /// The longest gap without a holder in any seed (s).
    #[serde(default)]
    pub longest_gap_max_s: Option<f64>,
    /// The median of the seeds' longest gaps (s, from `longest_gap_histogram_ms`).
    #[serde(default)]
    pub longest_gap_p50_s: Option<f64>,
    /// The seeds' longest gaps to the millisecond: `[ms, count]` pairs, for merging.
    #[serde(default)]
    pub longest_gap_histogram_ms: Vec<(u64, u64)>,
    /// The lowest calm-tail availability of a seed (the tail the liveness oracle judges:
    /// from the last fault plus `leader_within` to the end).
    #[serde(default)]
    pub calm_tail_availability_min: Option<f64>,
    /// The median calm-tail availability (from `calm_tail_availability_histogram`).
    #[serde(default)]
    pub calm_tail_availability_p50: Option<f64>,
    /// The seeds' calm-tail availability in hundredths of a percent: `[bp, count]` pairs.
    #[serde(default)]
    pub calm_tail_availability_histogram: Vec<(u64, u64)>,
    /// Lease claims (each renewal is one).
    pub claims: u64,
    /// Claims that began while another holder's claim stood: beliefs that overlapped (the
    /// lease oracle).
    #[serde(default)]
    pub overlaps: u64,
    /// Writes the fenced store accepted (`[workload] fenced_store`).
    #[serde(default)]
    pub writes_accepted: u64,
    /// Writes the fenced store accepted under a token lower than one it had accepted (the
    /// effects oracle).
    #[serde(default)]
    pub stale_writes_accepted: u64,
    /// What applications' guards said (valid until, ended), each judged by the guards oracle.
    #[serde(default)]
    pub guard_reports: u64,
    /// The longest an agent took to report a frozen connection (`[[at]] freeze_connection`),
    /// in ms; 0 if none was reported.
    #[serde(default)]
    pub freeze_noticed_max_ms: f64,
    /// Whether the scenario expects a violation (a known-bad scenario).
    #[serde(default)]
    pub expected_violation: bool,
    /// Whether the expectation was met.
    pub ok: bool,
}

impl JsonSummary {
    /// What the last column of a summary table says.
    pub fn verdict(&self) -> &'static str {
        match (self.ok, self.expected_violation) {
            (true, true) => "ok (violation caught, as expected)",
            (true, false) => "ok",
            (false, true) => "FAIL (expected violation not found)",
            (false, false) => "FAIL",
        }
    }
}

impl Summary {
    /// The `p`-th percentile (0..=100) of the failover gaps.
    pub fn failover_percentile(&self, p: f64) -> Option<f64> {
        percentile(&self.failovers_ms, p)
    }

    /// The JSON form.
    pub fn json(&self) -> JsonSummary {
        let hist = histogram(&self.failovers_ms, 1.0);
        let avail = histogram(&self.availability, 10_000.0);
        let gaps = histogram(&self.longest_gap_s, 1_000.0);
        let tail = histogram(&self.calm_tail_availability, 10_000.0);
        JsonSummary {
            file: self.source.clone(),
            name: self.name.clone(),
            algorithm: self.algorithm.clone(),
            swarm: self.options.swarm,
            shard: self.options.shard.map(|(i, n)| format!("{i}/{n}")),
            seeds: self.seeds,
            violations: self.violations,
            failing_seeds: self.failing_seeds.clone(),
            first_failing_seed: self.first_failing.as_ref().map(|r| r.seed),
            replay: self.first_failing.as_ref().map(|r| r.replay.clone()),
            first_failing_faults: self
                .first_failing
                .as_ref()
                .and_then(|r| r.swarm.as_ref())
                .map(|w| w.on.clone()),
            sim_seconds: self.sim_time.as_secs_f64(),
            wall_seconds: self.wall_time.as_secs_f64(),
            leader_changes: self.leader_changes,
            failover_p50_ms: self.failover_percentile(50.0),
            failover_p99_ms: self.failover_percentile(99.0),
            failover_histogram_ms: hist,
            no_leader_seconds: self.no_leader.as_secs_f64(),
            availability_min: min(&self.availability),
            availability_p50: histogram_percentile(&avail, 50.0).map(|b| b / 10_000.0),
            availability_histogram: avail,
            longest_gap_max_s: self.longest_gap_s.iter().copied().reduce(f64::max),
            longest_gap_p50_s: histogram_percentile(&gaps, 50.0).map(|ms| ms / 1_000.0),
            longest_gap_histogram_ms: gaps,
            calm_tail_availability_min: min(&self.calm_tail_availability),
            calm_tail_availability_p50: histogram_percentile(&tail, 50.0).map(|b| b / 10_000.0),
            calm_tail_availability_histogram: tail,
            claims: self.claims,
            overlaps: self.overlaps,
            writes_accepted: self.writes_accepted,
            stale_writes_accepted: self.stale_writes_accepted,
            guard_reports: self.guard_reports,
            freeze_noticed_max_ms: self.freeze_noticed_max.as_secs_f64() * 1000.0,
            expected_violation: self.expected_violation,
            ok: self.met,
        }
    }
}

/// The smallest of `xs`.
fn min(xs: &[f64]) -> Option<f64> {
    xs.iter().copied().reduce(f64::min)
}

/// `xs` scaled by `unit` and rounded down, counted: `[value, count]` pairs in order.
fn histogram(xs: &[f64], unit: f64) -> Vec<(u64, u64)> {
    let mut hist = std::collections::BTreeMap::new();
    for x in xs {
        *hist.entry((x * unit).max(0.0) as u64).or_insert(0u64) += 1;
    }
    hist.into_iter().collect()
}

/// Nearest-rank percentile.
pub fn percentile(xs: &[f64], p: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

/// Runs `seeds` of `scn`. A scenario expecting a violation stops at the first seed with a
/// safety violation; otherwise every seed runs. `progress` is called after each seed.
pub fn sweep(scn: &Scenario, source: &str, seeds: &[u64], progress: impl FnMut(&RunReport)) -> Summary {
    sweep_opts(scn, source, seeds, SweepOptions::default(), progress)
}

/// [`sweep`], run as `options` say.
pub fn sweep_opts(
    scn: &Scenario,
    source: &str,
    seeds: &[u64],
    options: SweepOptions,
    progress: impl FnMut(&RunReport),
) -> Summary {
    let keep = if options.whole { Keep::Everything } else { Keep::Verdict };
    let one = |seed| match (options.swarm, keep) {
        (true, _) => run_swarm_seed(scn, seed, source, keep),
        (false, Keep::Everything) => run_seed(scn, seed, source),
        (false, Keep::Verdict) => run_seed_lean(scn, seed, source),
    };
    // Seeds are asked for in order; the next `jobs` of them are run together, and their
    // reports handed out one by one.
    let jobs = options.jobs.max(1);
    let (mut ahead, mut next) = (std::collections::VecDeque::new(), 0);
    let run = |seed: u64| {
        if ahead.is_empty() {
            let batch = &seeds[next.min(seeds.len())..next.saturating_add(jobs).min(seeds.len())];
            next = next.saturating_add(jobs);
            ahead = run_together(batch, &one);
        }
        match ahead.pop_front() {
            Some(r) if r.seed == seed => r,
            // Not asked in order (never, from `sweep_with`): run it alone.
            _ => one(seed),
        }
    };
    sweep_with(scn, source, seeds, options, run, progress)
}

/// Runs `seeds` at once, one thread each; the reports in the seeds' order.
fn run_together(seeds: &[u64], one: &(impl Fn(u64) -> RunReport + Sync)) -> std::collections::VecDeque<RunReport> {
    if seeds.len() <= 1 {
        return seeds.iter().map(|s| one(*s)).collect();
    }
    std::thread::scope(|scope| {
        let running: Vec<_> = seeds.iter().map(|&s| (s, scope.spawn(move || one(s)))).collect();
        // `run_seed` catches a simulation's panic itself; should the thread still fail,
        // the seed runs again here.
        running
            .into_iter()
            .map(|(s, h)| h.join().unwrap_or_else(|_| one(s)))
            .collect()
    })
}

/// [`sweep_opts`] with another way of running a seed (real processes, for `real`).
pub fn sweep_with(
    scn: &Scenario,
    source: &str,
    seeds: &[u64],
    options: SweepOptions,
    mut run: impl FnMut(u64) -> RunReport,
    mut progress: impl FnMut(&RunReport),
) -> Summary {
    let mut s = Summary {
        name: scn.name.clone(),
        source: source.to_string(),
        algorithm: scn.algorithm.to_string(),
        options,
        seeds: 0,
        violations: 0,
        failing_seeds: Vec::new(),
        first_failing: None,
        sim_time: Duration::ZERO,
        wall_time: Duration::ZERO,
        leader_changes: 0,
        failovers_ms: Vec::new(),
        no_leader: Duration::ZERO,
        availability: Vec::new(),
        longest_gap_s: Vec::new(),
        calm_tail_availability: Vec::new(),
        claims: 0,
        overlaps: 0,
        writes_accepted: 0,
        stale_writes_accepted: 0,
        guard_reports: 0,
        freeze_noticed_max: Duration::ZERO,
        met: false,
        expected_violation: scn.expect.violation.any(),
    };
    let mut caught = false;
    let started = std::time::Instant::now();
    for &seed in seeds {
        let r = run(seed);
        progress(&r);
        s.seeds += 1;
        s.sim_time += r.figures.sim_time;
        s.leader_changes += r.figures.leader_changes;
        s.failovers_ms.extend(&r.figures.failovers_ms);
        s.no_leader += r.figures.no_leader;
        s.availability.push(r.figures.availability());
        s.longest_gap_s.push(r.figures.longest_gap.as_secs_f64());
        s.calm_tail_availability.extend(r.figures.calm_tail_availability());
        s.claims += r.figures.claims;
        s.overlaps += r.figures.overlaps;
        s.writes_accepted += r.figures.writes_accepted;
        s.stale_writes_accepted += r.figures.stale_writes_accepted;
        s.guard_reports += r.figures.guard_reports;
        s.freeze_noticed_max = s.freeze_noticed_max.max(r.figures.freeze_noticed_max);
        let expected = scn.expect.violation.any() && r.shows(scn.expect.violation);
        if !r.violations.is_empty() {
            s.violations += 1;
            if s.failing_seeds.len() < FAILING_SEEDS_CAP {
                s.failing_seeds.push(seed);
            }
            if s.first_failing.is_none() {
                s.first_failing = Some(r);
            }
        }
        if expected {
            caught = true;
            if !options.keep_going {
                break;
            }
        }
    }
    s.wall_time = started.elapsed();
    s.met = if scn.expect.violation.any() {
        caught
    } else {
        s.violations == 0
    };
    s
}

/// Every scenario file under `path` (a file, or a directory searched recursively), sorted.
pub fn scenario_files(path: &Path) -> Result<Vec<PathBuf>, ScenarioError> {
    let err = |m: String| ScenarioError {
        file: path.display().to_string(),
        line: None,
        key: None,
        message: m,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| err(e.to_string()))? {
            let p = e.map_err(|e| err(e.to_string()))?.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "toml") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Nearest-rank percentile of `[ms, count]` buckets.
pub fn histogram_percentile(hist: &[(u64, u64)], p: f64) -> Option<f64> {
    let total: u64 = hist.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (ms, n) in hist {
        seen += n;
        if seen >= rank {
            return Some(*ms as f64);
        }
    }
    hist.last().map(|(ms, _)| *ms as f64)
}
