//! `hunt`: coverage-guided search over fault schedules.
//!
//! A uniform nemesis draws every run afresh, so a bug that needs two rare things in a row
//! (a rolled-back file and then a cut, a node with its own cluster size and then a partition
//! on its side) waits for luck. The hunt keeps what worked instead (as AFL keeps inputs, and
//! Mallory and Antithesis keep fault schedules):
//! 1. it runs the file as written, fresh seeds, collecting each run's coverage (abstract
//!    election states, see [`crate::coverage`]); one fresh run in five also has one of
//!    production's faults that the file's nemesis never draws (a node with settings of its
//!    own, a clone, a lost state file, a server down, or an operation: a resign, a congested
//!    or frozen connection, preempted clock reads, a client that falls behind, a slow link; see
//!    `hunt/mutate.rs` for their bounds),
//!    and one in five the library's fault sites on at random (`enable = 0.25, fire = 0.25`,
//!    BUGGIFY's numbers);
//! 2. a run that reached a feature no earlier run reached joins the corpus twice over: as it
//!    ran (the file's nemesis and the seed, with the steps the hunt added on top), and
//!    written out whole as its schedule (its faults as applied, its clocks as drawn);
//! 3. from then on, every other run takes a corpus entry (the ones that reach rare features
//!    more often: an entry weighs the sum over its features of one over the number of runs
//!    that reached each, as AFLFast and Entropic spend their energy on rare paths) and mutates
//!    one of its two forms (`hunt/mutate.rs`):
//!    the nemesis kept (steps added, moved or dropped on top of it, a node's settings, the
//!    fault sites, another seed), which stays as good as uniform seeds at what the nemesis
//!    finds; or the whole schedule, which can move and drop the nemesis's own faults, and
//!    quiet a stretch of it but for one standing fault (where a liveness bug shows); the
//!    others are fresh (so a bug the file's own nemesis finds is found at most about twice
//!    as late);
//! 4. the first run that breaks the file's expectation is shrunk and written as a scenario.
//!
//! Everything is drawn from `--seed` (and the shard's index), so a hunt with a budget of
//! simulations is deterministic; with a time budget it is the same sequence, cut where the
//! time ran out.

pub(crate) mod mutate;

use crate::oracle::ViolationKind;
use crate::report::RunReport;
use crate::run::run_seed;
use crate::scenario::{Expected, ExpectedKind, Scenario, SitesFault};
use crate::schedule::Schedule;
use crate::seeds::mix;
use mutate::{mutate, Input, Vocabulary};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a hunt goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Wall time.
    Time(Duration),
    /// Simulations (deterministic whatever the machine).
    Runs(u64),
}

impl std::str::FromStr for Budget {
    type Err = String;
    /// `10m`, `90s` (wall time) or `500` (simulations).
    fn from_str(s: &str) -> Result<Budget, String> {
        match s.parse::<u64>() {
            Ok(0) => Err("a budget must be positive".into()),
            Ok(n) => Ok(Budget::Runs(n)),
            Err(_) => match humantime::parse_duration(s) {
                Ok(d) if !d.is_zero() => Ok(Budget::Time(d)),
                _ => Err(format!(
                    "{s:?} is neither a duration (10m, 90s) nor a number of simulations"
                )),
            },
        }
    }
}

/// How to hunt.
#[derive(Debug, Clone)]
pub struct HuntOptions {
    /// When to stop.
    pub budget: Budget,
    /// The seed every choice is drawn from.
    pub seed: u64,
    /// This shard's index and the number of shards: each draws its own stream.
    pub shard: (u64, u64),
    /// At most this many simulations to shrink a failure.
    pub shrink_trials: usize,
}

/// One step of coverage growth: after `runs` simulations, `features` reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Growth {
    /// Simulations so far.
    pub runs: u64,
    /// Coverage features reached so far.
    pub features: usize,
}

/// A failure the hunt found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Found {
    /// Which simulation found it (1 = the first).
    pub run: u64,
    /// Wall time until it was found (s).
    pub wall_s: f64,
    /// What the oracle said first.
    pub violation: String,
    /// The shrunk scenario, as TOML, with its header.
    pub toml: String,
    /// The seed it fails with.
    pub seed: u64,
    /// What shrinking did.
    pub shrunk: String,
}

/// What one hunt over one file did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HuntReport {
    /// Always `"hunt"` (tells `merge` these lines apart from `run --json`'s).
    pub kind: String,
    /// The scenario file.
    pub file: String,
    /// The hunt's seed and shard.
    pub seed: u64,
    /// `I/N`.
    pub shard: String,
    /// Simulations run.
    pub runs: u64,
    /// Wall time (s).
    pub wall_s: f64,
    /// Coverage features reached.
    pub features: usize,
    /// Corpus entries kept.
    pub corpus: usize,
    /// Coverage growth, at every run that added features.
    pub growth: Vec<Growth>,
    /// Mutants that were not valid scenarios (skipped, not run).
    pub invalid: u64,
    /// The failure found, if any.
    pub found: Option<Found>,
}

/// Keeps the hunt's stream apart from the runs' own streams of the same seed.
const STREAM: u64 = 0x4855_4e54_0000_0001;

/// How many runs are fresh once the corpus has entries: a bug the file's own nemesis finds
/// is then found at most about twice as late as by uniform seeds (measured: mutants of kept
/// runs alone found some of those far later than fresh seeds do).
const FRESH: f64 = 0.5;

/// A corpus entry: its run as the file's nemesis drew it (with the scripted steps added on
/// top), if it was run that way, and written out whole; and the features it reached.
struct Entry {
    nemesis: Option<Input>,
    scripted: Input,
    /// Its features, as indices into [`Hunter::hits`].
    features: Vec<u32>,
}

/// How much an entry with `features` is worth mutating, given how many runs reached each
/// feature (`hits`): the sum over its features of one over that number. A feature every run
/// reaches adds next to nothing; one only this entry reached adds 1, until its mutants reach
/// it too (so an entry that keeps leading somewhere new keeps its weight, and one whose
/// mutants go where it went loses it).
fn rarity(features: &[u32], hits: &[u32]) -> f64 {
    features
        .iter()
        .map(|&f| 1.0 / f64::from(hits.get(f as usize).copied().unwrap_or(1).max(1)))
        .sum()
}

/// The expectation a regression of a failure of `kind` keeps: a planted bug's failure is
/// expected (the file shows it is caught); any other stays a failure until it is fixed.
fn expectation(kind: ViolationKind, planted: bool) -> Expected {
    if !planted {
        return Expected::Any(false);
    }
    match kind {
        ViolationKind::Overlap | ViolationKind::TokenOrder => Expected::Any(true),
        ViolationKind::NoLeader => Expected::Kind(ExpectedKind::NoLeader),
        ViolationKind::LeaderWhileWaiting => Expected::Kind(ExpectedKind::LeaderWhileWaiting),
        ViolationKind::StaleWrite => Expected::Kind(ExpectedKind::StaleWrite),
        ViolationKind::Guard => Expected::Kind(ExpectedKind::Guard),
        ViolationKind::ViewBackwards => Expected::Kind(ExpectedKind::ViewBackwards),
        ViolationKind::Routing => Expected::Kind(ExpectedKind::Routing),
        ViolationKind::Unnoticed => Expected::Kind(ExpectedKind::Unnoticed),
        ViolationKind::StopHung => Expected::Kind(ExpectedKind::StopHung),
        ViolationKind::CampaignDisconnected => Expected::Kind(ExpectedKind::CampaignDisconnected),
        ViolationKind::SilentLapse => Expected::Kind(ExpectedKind::SilentLapse),
        ViolationKind::ClockAhead => Expected::Kind(ExpectedKind::ClockAhead),
        ViolationKind::Panic => Expected::Any(false),
    }
}

/// The state of one hunt.
struct Hunter<'a> {
    file: &'a Scenario,
    source: &'a str,
    voc: Vocabulary,
    rng: ChaCha8Rng,
    /// Every feature reached so far, numbered in the order first reached.
    seen: BTreeMap<u64, u32>,
    /// How many runs reached each feature, by number.
    hits: Vec<u32>,
    corpus: Vec<Entry>,
    runs: u64,
    invalid: u64,
    growth: Vec<Growth>,
}

impl Hunter<'_> {
    /// A fresh input: the file as written, a new seed; one time in five one of production's
    /// faults on top ([`mutate::production`]), and one in five the fault sites on.
    fn fresh(&mut self) -> (Scenario, u64) {
        let mut s = if self.rng.gen_bool(0.2) {
            mutate::production(self.file, &self.voc, &mut self.rng)
        } else {
            self.file.clone()
        };
        if s.faults.sites.is_none() && self.rng.gen_bool(0.2) {
            s.faults.sites = Some(SitesFault {
                enable: Some(0.25),
                on: None,
                fire: 0.25,
            });
        }
        (s, self.rng.gen_range(0..1_000_000_007))
    }

    /// A corpus entry, more often one that reached rarer features.
    fn pick(&mut self) -> usize {
        let weights: Vec<f64> = self.corpus.iter().map(|e| rarity(&e.features, &self.hits)).collect();
        let total: f64 = weights.iter().sum();
        let mut x = self.rng.gen_range(0.0..total.max(f64::MIN_POSITIVE));
        for (k, w) in weights.iter().enumerate() {
            x -= w;
            if x <= 0.0 {
                return k;
            }
        }
        self.corpus.len() - 1
    }

    /// The next scenario to run, its seed, and the input it was made from (`None`: fresh).
    fn next(&mut self) -> Option<(Scenario, u64, Option<Input>)> {
        if self.corpus.is_empty() || self.rng.gen_bool(FRESH) {
            let (s, seed) = self.fresh();
            return Some((s, seed, None));
        }
        let k = self.pick();
        let e = &self.corpus[k];
        // Half the time the nemesis stays (steps are added, moved or dropped on top of it, a
        // node's settings change, the seed is drawn again), half the time the whole run is
        // the schedule mutated.
        let parent = match &e.nemesis {
            Some(n) if self.rng.gen_bool(0.5) => n,
            _ => &e.scripted,
        };
        let m = mutate(parent, &self.voc, &mut self.rng);
        // Written and read back, as a regression file would be: a mutant that is not a valid
        // scenario (a lease too short for its beat) is skipped.
        let text = m.scenario()?.to_toml().ok()?;
        let s = Scenario::parse("hunt.toml", &text).ok()?;
        Some((s, m.seed, Some(m)))
    }

    /// Runs `s` with `seed`; keeps it if it reached anything new.
    fn run(&mut self, mut s: Scenario, seed: u64, input: Option<Input>) -> RunReport {
        s.coverage = true;
        let r = run_seed(&s, seed, self.source);
        self.runs += 1;
        let mut new = false;
        let mut features = Vec::with_capacity(r.coverage.len());
        for f in &r.coverage {
            let next = self.hits.len() as u32;
            let k = *self.seen.entry(*f).or_insert_with(|| {
                new = true;
                next
            });
            if k == next {
                self.hits.push(0);
            }
            self.hits[k as usize] += 1;
            features.push(k);
        }
        if new {
            self.growth.push(Growth {
                runs: self.runs,
                features: self.seen.len(),
            });
            // Kept as it ran (a fresh run or a mutant that kept the nemesis) and written out
            // whole, over the scenario that ran (its sites and settings included).
            let nemesis = match input {
                None => Some(Input::nemesis(s.clone(), seed)),
                Some(m) if m.nemesis => Some(m),
                Some(_) => None,
            };
            let scripted = Input {
                schedule: Schedule::of_run(&s, &r),
                base: s,
                seed,
                nemesis: false,
            };
            self.corpus.push(Entry {
                nemesis,
                scripted,
                features,
            });
        }
        r
    }
}

/// Hunts `file` (read from `source`) for a run that breaks its expectation; `progress` sees
/// every run's report and the hunt so far.
pub fn hunt(
    file: &Scenario,
    source: &str,
    opts: &HuntOptions,
    mut progress: impl FnMut(&RunReport, u64, usize),
) -> Result<HuntReport, String> {
    if file.expect.violation.any() {
        return Err(format!(
            "{source} expects a violation: hunt looks for runs that break a file's expectation of none"
        ));
    }
    if file.router.is_some() {
        return Err(format!(
            "{source} is a router scenario: hunt searches lease and allcall elections"
        ));
    }
    let started = Instant::now();
    let mut h = Hunter {
        file,
        source,
        voc: Vocabulary::of(file),
        // From the seed and the shard alone: the same hunt whatever path names the file.
        rng: ChaCha8Rng::seed_from_u64(mix(opts.seed, opts.shard.0, STREAM)),
        seen: BTreeMap::new(),
        hits: Vec::new(),
        corpus: Vec::new(),
        runs: 0,
        invalid: 0,
        growth: Vec::new(),
    };
    let out_of_budget = |runs: u64| match opts.budget {
        Budget::Runs(n) => runs >= n,
        Budget::Time(d) => started.elapsed() >= d,
    };
    let mut found = None;
    while !out_of_budget(h.runs) {
        let Some((s, seed, base)) = h.next() else {
            h.invalid += 1;
            continue;
        };
        let r = h.run(s.clone(), seed, base);
        progress(&r, h.runs, h.seen.len());
        if let Some(v) = r.violations.first() {
            found = Some(found_from(&h, s, seed, v.kind, started, opts)?);
            break;
        }
    }
    Ok(HuntReport {
        kind: "hunt".into(),
        file: source.to_string(),
        seed: opts.seed,
        shard: format!("{}/{}", opts.shard.0, opts.shard.1),
        runs: h.runs,
        wall_s: started.elapsed().as_secs_f64(),
        features: h.seen.len(),
        corpus: h.corpus.len(),
        growth: h.growth,
        invalid: h.invalid,
        found,
    })
}

/// The failure of run `s` with `seed`, shrunk.
fn found_from(
    h: &Hunter<'_>,
    mut s: Scenario,
    seed: u64,
    kind: ViolationKind,
    started: Instant,
    opts: &HuntOptions,
) -> Result<Found, String> {
    let wall_s = started.elapsed().as_secs_f64();
    s.expect.violation = expectation(kind, s.membership.bug.is_some());
    s.coverage = false;
    let input = format!("{} (hunt input)", h.source);
    let header = format!(
        "# Found by `leasehold-sim hunt {} --seed {} --shard {}/{}` at simulation {}.\n",
        h.source, opts.seed, opts.shard.0, opts.shard.1, h.runs
    );
    let (toml, shrunk, seed) = match crate::shrink::shrink(&s, &input, seed, false, opts.shrink_trials) {
        Ok(sh) => (sh.toml.clone(), sh.summary_line(), sh.seed),
        // Not shrinkable (its scripted form does not fail the same way): the input as run.
        Err(e) => {
            let mut plain = s.clone();
            plain.seeds = 1;
            plain.first_seed = seed;
            (plain.to_toml()?, format!("not shrunk: {e}"), seed)
        }
    };
    Ok(Found {
        run: h.runs,
        wall_s,
        violation: kind.to_string(),
        toml: format!("{header}{toml}"),
        seed,
        shrunk,
    })
}

/// The shards of one file's hunt, added up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MergedHunt {
    /// The scenario file.
    pub file: String,
    /// The shards merged (`I/N`), in the order given.
    pub shards: Vec<String>,
    /// Simulations run, all shards together.
    pub runs: u64,
    /// The longest shard's wall time (s): shards run side by side.
    pub wall_s: f64,
    /// What each shard that found a failure found, by shard.
    pub found: Vec<(String, Found)>,
}

/// Merges hunt reports per file, in the order files first appear.
pub fn merge_hunts(reports: Vec<HuntReport>) -> Vec<MergedHunt> {
    let mut out: Vec<MergedHunt> = Vec::new();
    for r in reports {
        let k = match out.iter().position(|m| m.file == r.file) {
            Some(k) => k,
            None => {
                out.push(MergedHunt {
                    file: r.file.clone(),
                    shards: Vec::new(),
                    runs: 0,
                    wall_s: 0.0,
                    found: Vec::new(),
                });
                out.len() - 1
            }
        };
        let m = &mut out[k];
        m.shards.push(r.shard.clone());
        m.runs += r.runs;
        m.wall_s = m.wall_s.max(r.wall_s);
        if let Some(f) = r.found {
            m.found.push((r.shard, f));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::rarity;

    #[test]
    fn an_entry_that_reached_a_rare_feature_outweighs_one_of_many_common_features() {
        // Features 0..50 reached by 1,000 runs each, feature 50 by one run.
        let mut hits = vec![1000; 50];
        hits.push(1);
        let common: Vec<u32> = (0..50).collect();
        let rare: Vec<u32> = vec![0, 50];
        assert!(rarity(&rare, &hits) > 10.0 * rarity(&common, &hits));
        // Once its mutants reach the rare feature too, its weight falls.
        hits[50] = 1000;
        assert!(rarity(&rare, &hits) < rarity(&common, &hits));
    }
}
