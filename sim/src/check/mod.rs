//! Exhaustive model checking of the production lease machine (`leasehold-sim check`).
//!
//! Every path of a small cluster is explored to a bounded depth: true time advances in ticks,
//! and between two ticks any fault of the chosen classes may strike, within a budget. The
//! machine is `leasehold`'s own [`LeaseElection`](leasehold::election::LeaseElection) (or
//! [`AllcallElection`](leasehold::election::AllcallElection)), cloned at every branch: nothing
//! is re-implemented (see `model.rs` for what is abstracted). States are
//! hashed, not stored, and explored depth first; a state reached again is not explored again
//! (its depth follows from its time and its faults, both part of it). Invariants are judged at
//! every claim (no two holders in true time; every new lease's token above every token before),
//! and at every leaf, once the faults stop and every crashed process is started again, a lease
//! must be held within a bounded time (liveness). A counterexample is written as a scenario
//! that the simulator replays step for step ([`Counterexample::scenario`]).

mod body;
mod export;
mod machine;
mod model;

use leasehold::{Algorithm, Bug, BugKnobs, MembershipCfg};
use model::{Restart, Setup, State, Step};
use std::collections::HashSet;
use std::hash::BuildHasherDefault;
use std::time::{Duration, Instant};

/// The classes of faults the checker can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultClass {
    /// A message is lost.
    Drop,
    /// A message arrives a tick late (so after later ones).
    Delay,
    /// A message arrives twice.
    Duplicate,
    /// A process crashes (and may be restarted with its last save).
    Crash,
    /// A crashed process restarts with its state file gone.
    Wipe,
    /// A crashed process restarts with its state file rolled back to an earlier save.
    Rollback,
    /// A second process starts with a node's identity and a copy of its state file.
    Clone,
    /// A process is cut off from the rest until a heal (one fault for the whole cut).
    Partition,
    /// A stranger publishes one of the forger's hostile messages (one of each kind), as the
    /// simulator's `forge` step does.
    Forge,
}

impl FaultClass {
    /// Every class (`forge` last: [`FaultClass::DEFAULT`] is the rest).
    pub const ALL: [FaultClass; 9] = [
        FaultClass::Drop,
        FaultClass::Delay,
        FaultClass::Duplicate,
        FaultClass::Crash,
        FaultClass::Wipe,
        FaultClass::Rollback,
        FaultClass::Clone,
        FaultClass::Partition,
        FaultClass::Forge,
    ];

    /// The classes a check injects unless told otherwise: all but `forge`, whose hostile
    /// values the range checks stop at once (the `hostile` proptest covers them widely).
    pub const DEFAULT: &'static [FaultClass] = FaultClass::ALL.split_at(FaultClass::ALL.len() - 1).0;

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultClass::Drop => "drop",
            FaultClass::Delay => "delay",
            FaultClass::Duplicate => "duplicate",
            FaultClass::Crash => "crash",
            FaultClass::Wipe => "wipe",
            FaultClass::Rollback => "rollback",
            FaultClass::Clone => "clone",
            FaultClass::Partition => "partition",
            FaultClass::Forge => "forge",
        }
    }

    /// The class named `s`.
    pub fn parse(s: &str) -> Result<FaultClass, String> {
        FaultClass::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| {
            let names: Vec<&str> = FaultClass::ALL.iter().map(|c| c.name()).collect();
            format!("unknown fault class {s:?} (one of {})", names.join(", "))
        })
    }
}

/// What to check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Agents in the cluster.
    pub nodes: usize,
    /// The election algorithm the agents run (`allcall` keeps no state file: no wipe or
    /// rollback strikes it).
    pub algorithm: Algorithm,
    /// Steps per path (ticks and faults).
    pub depth: u32,
    /// Faults per path at most.
    pub budget: u32,
    /// The fault classes that may strike.
    pub faults: Vec<FaultClass>,
    /// A planted bug, in every agent.
    pub bug: Option<Bug>,
    /// The lease time.
    pub lease: Duration,
    /// The heartbeat period.
    pub beat: Duration,
    /// True time per tick: a message arrives at the next tick boundary (`None`: the beat).
    /// A finer tick shows errors smaller than a beat's latency, at the price of depth.
    pub tick: Option<Duration>,
    /// The drift bound (ppm); each node's clock runs at −bound or +bound (every assignment).
    pub drift_ppm: u32,
    /// Also let clocks run exactly (each node at −bound, 0 or +bound: 3ⁿ assignments, not 2ⁿ).
    pub exact_clocks: bool,
    /// Explore only this assignment of clock rates (ppm, one per node), not every one.
    pub clocks: Option<Vec<i64>>,
    /// Run seeds explored, each a space of its own (0..seeds): an agent's jitter and run ID
    /// come from its run's seed, as in the simulator, so each seed gives other timings.
    pub seeds: u64,
    /// Assignments of clock rates explored at once, each on its own thread.
    pub jobs: usize,
    /// Node 0's `cluster_size`, if not the cluster's (a misconfigured node).
    pub misconfigured_size: Option<usize>,
    /// Node 0's lease time, if not the cluster's (a misconfigured node).
    pub misconfigured_lease: Option<Duration>,
    /// Check liveness at every leaf.
    pub liveness: bool,
    /// Stop after this many distinct states per assignment of clock rates (the result then
    /// says it is not exhaustive).
    pub max_states: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            nodes: 3,
            algorithm: Algorithm::Lease,
            depth: 16,
            budget: 2,
            faults: FaultClass::DEFAULT.to_vec(),
            bug: None,
            lease: Duration::from_millis(600),
            beat: Duration::from_millis(100),
            tick: None,
            drift_ppm: 50_000,
            exact_clocks: false,
            clocks: None,
            seeds: 1,
            jobs: 1,
            misconfigured_size: None,
            misconfigured_lease: None,
            liveness: true,
            max_states: 20_000_000,
        }
    }
}

/// One step of a counterexample, at a true time.
#[derive(Debug, Clone)]
pub struct PathStep {
    /// True time (ns): the tick boundary it follows.
    pub at: u128,
    /// What happened.
    pub what: String,
    /// The same as scenario steps (none for time passing), or why it has no scenario form.
    pub scenario: Result<Vec<crate::scenario::Step>, String>,
    /// The model's step (none for the settling time a liveness check gives).
    step: Option<Step>,
}

/// The kinds of broken invariant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// Two processes' claims overlap in true time.
    Overlap,
    /// A new lease's token is not above every token claimed before.
    TokenOrder,
    /// No lease is held within the settling time after the faults stopped.
    NoLeader,
}

/// A path that breaks an invariant.
#[derive(Debug, Clone)]
pub struct Counterexample {
    /// What kind of invariant broke.
    pub kind: Violation,
    /// What broke, in words.
    pub violation: String,
    /// Each node's clock rate error (ppm).
    pub drift_ppm: Vec<i64>,
    /// The run's seed (its agents' jitter and run IDs): the simulator's seed that replays it.
    pub seed: u64,
    /// The steps from the start, each with its true time.
    pub steps: Vec<PathStep>,
}

impl Counterexample {
    /// The safety violation the same path shows under `opts` (another bug, or none), followed
    /// by the settling time a leaf gets; `None` if it breaks nothing. How a fix is checked
    /// against the path that broke the code before it.
    pub fn recheck(&self, opts: &CheckOptions) -> Option<String> {
        let setup = Setup {
            seed: self.seed,
            ..setup(opts)
        };
        let mut s = State::start(&setup, &self.drift_ppm);
        let settle = settle_ticks(opts, &setup);
        let steps = self.steps.iter().filter_map(|p| p.step.clone());
        for step in steps.chain((0..settle).map(|_| Step::Advance)) {
            s.apply(&setup, &step);
            if let Some((_, v)) = &s.violation {
                return Some(v.clone());
            }
        }
        None
    }

    /// The path as text, one step a line.
    pub fn render(&self) -> String {
        let mut s = format!(
            "violation: {}\nclocks (ppm): {:?}, seed {}\n",
            self.violation, self.drift_ppm, self.seed
        );
        for st in &self.steps {
            s.push_str(&format!("{} {}\n", crate::oracle::secs(st.at), st.what));
        }
        s
    }
}

/// What a check found and what it cost.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Successor states computed.
    pub explored: u64,
    /// Distinct states reached.
    pub distinct: u64,
    /// The deepest path explored.
    pub depth: u32,
    /// Leaves whose liveness was checked.
    pub leaves: u64,
    /// Whether every path within the bounds was explored (no state cap reached).
    pub exhaustive: bool,
    /// The first path found that breaks an invariant.
    pub counterexample: Option<Counterexample>,
    /// Wall time.
    pub wall: Duration,
}

type Seen = HashSet<u64, BuildHasherDefault<std::collections::hash_map::DefaultHasher>>;

struct Explorer<'a> {
    setup: Setup,
    opts: &'a CheckOptions,
    seen: Seen,
    path: Vec<PathStep>,
    /// The nodes' IDs, as a scenario names them.
    ids: Vec<String>,
    report: CheckReport,
    /// Ticks a leaf is given to elect, once the faults stop.
    settle_ticks: u64,
}

/// Explores every path of `opts`; stops at the first violation. Each assignment of clock
/// rates is a space of its own (the rates are part of every state); `opts.jobs` threads take
/// them in turn, and the counterexample reported is the one of the first assignment that has
/// one, so the result does not depend on the number of threads.
pub fn check(opts: &CheckOptions) -> CheckReport {
    let started = Instant::now();
    let e = i64::from(opts.drift_ppm);
    let rates: &[i64] = if opts.exact_clocks { &[-e, 0, e] } else { &[-e, e] };
    let clocks = match &opts.clocks {
        Some(c) => vec![c.clone()],
        None => drifts(opts.nodes, rates),
    };
    // Seed by seed, each with every assignment of clock rates.
    let assignments: Vec<(u64, Vec<i64>)> = (0..opts.seeds.max(1))
        .flat_map(|seed| clocks.iter().map(move |c| (seed, c.clone())))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<CheckReport>>> =
        assignments.iter().map(|_| std::sync::Mutex::new(None)).collect();
    // Assignments after one with a counterexample need not be explored.
    let first_found = std::sync::atomic::AtomicUsize::new(usize::MAX);
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1) {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if k >= assignments.len() || k > first_found.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let (seed, ppm) = &assignments[k];
                let r = explore(opts, *seed, ppm);
                if r.counterexample.is_some() || !r.exhaustive {
                    first_found.fetch_min(k, std::sync::atomic::Ordering::SeqCst);
                }
                *results[k].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    let mut total = CheckReport {
        exhaustive: true,
        ..CheckReport::default()
    };
    let stop = first_found.load(std::sync::atomic::Ordering::SeqCst);
    for (k, r) in results.into_iter().enumerate() {
        let Some(r) = r.into_inner().unwrap_or_else(|e| e.into_inner()) else {
            continue;
        };
        if k > stop {
            continue;
        }
        total.explored += r.explored;
        total.distinct += r.distinct;
        total.leaves += r.leaves;
        total.depth = total.depth.max(r.depth);
        total.exhaustive &= r.exhaustive;
        if total.counterexample.is_none() {
            total.counterexample = r.counterexample;
        }
    }
    total.wall = started.elapsed();
    total
}

/// Explores every path from the start of the run of `seed` with clock rates `ppm`.
fn explore(opts: &CheckOptions, seed: u64, ppm: &[i64]) -> CheckReport {
    let setup = Setup { seed, ..setup(opts) };
    let settle_ticks = settle_ticks(opts, &setup);
    let mut ex = Explorer {
        setup,
        opts,
        seen: Seen::default(),
        path: Vec::new(),
        ids: (0..opts.nodes).map(|i| format!("n{i}")).collect(),
        report: CheckReport {
            exhaustive: true,
            ..CheckReport::default()
        },
        settle_ticks,
    };
    let s = State::start(&ex.setup, ppm);
    ex.dfs(s, 0, ppm);
    ex.report.distinct = ex.seen.len() as u64;
    ex.report
}

/// The ticks a leaf is given to elect once the faults stop: long enough for a quarantine, a
/// promise to run out, a campaign and its answers.
/// The cuts possible from `s`: one process that runs, isolated; or a minority of the
/// processes (with an even count, a half: the half with p0, so that no cut is counted twice),
/// some running on either side, cut from the rest (the split that keeps a majority apart from
/// a minority that still talks among itself). A larger cut never parts a clone from its
/// twin: the identity guarantee holds for twins that can hear each other, and twins on two
/// sides, each with other agents, count one identity on both (with three agents each side
/// then has a majority as its members count it: the checker finds that at once).
fn cuts(s: &State) -> impl Iterator<Item = Step> + '_ {
    let n = s.procs.len();
    let up = |side: u64| model::members(side).any(|p| s.procs[p].up());
    let twins_apart = move |side: u64| {
        (0..n).any(|p| (p + 1..n).any(|q| s.procs[p].node == s.procs[q].node && (side >> p) & 1 != (side >> q) & 1))
    };
    (1u64..(1 << n))
        .filter(move |&side| {
            let size = side.count_ones() as usize;
            let rest = ((1u64 << n) - 1) & !side;
            if size > 1 && twins_apart(side) {
                return false;
            }
            match size {
                1 => up(side),
                _ if 2 * size < n => up(side) && up(rest),
                _ if 2 * size == n => side & 1 == 1 && (up(side) || up(rest)),
                _ => false,
            }
        })
        .map(Step::Cut)
}

fn settle_ticks(opts: &CheckOptions, setup: &Setup) -> u64 {
    ((3 * opts.lease.as_nanos() + 10 * opts.beat.as_nanos()) / u128::from(setup.tick_ns)) as u64
}

/// Every assignment of `rates` to `n` nodes, in a fixed order.
fn drifts(n: usize, rates: &[i64]) -> Vec<Vec<i64>> {
    (0..rates.len().pow(n as u32))
        .map(|mut k| {
            (0..n)
                .map(|_| {
                    let r = rates[k % rates.len()];
                    k /= rates.len();
                    r
                })
                .collect()
        })
        .collect()
}

fn setup(opts: &CheckOptions) -> Setup {
    let cfgs = (0..opts.nodes)
        .map(|i| {
            let mut c = MembershipCfg::default();
            c.id = format!("n{i}");
            c.my_rank = i as i64;
            c.cluster_size = opts.nodes;
            c.algorithm = opts.algorithm;
            c.lease_time = opts.lease;
            c.beat = opts.beat;
            // The simulator's rule (`[membership] beat`), so a counterexample replays there.
            c.member_timeout = opts.beat * 5;
            c.max_drift_ppm = opts.drift_ppm;
            if i == 0 {
                if let Some(size) = opts.misconfigured_size {
                    c.cluster_size = size;
                }
                if let Some(lease) = opts.misconfigured_lease {
                    c.lease_time = lease;
                }
            }
            c.bug_knobs = opts.bug.map(|b| BugKnobs::from(vec![b])).unwrap_or_default();
            c
        })
        .collect();
    Setup {
        seed: 0,
        cfgs,
        tick_ns: u64::try_from(opts.tick.unwrap_or(opts.beat).as_nanos()).unwrap_or(u64::MAX),
    }
}

impl Explorer<'_> {
    fn dfs(&mut self, s: State, depth: u32, ppm: &[i64]) {
        if self.report.counterexample.is_some() || !self.report.exhaustive {
            return;
        }
        if !self.seen.insert(s.fingerprint()) {
            return;
        }
        if self.seen.len() as u64 >= self.opts.max_states {
            self.report.exhaustive = false;
            return;
        }
        self.report.depth = self.report.depth.max(depth);
        if let Some((kind, v)) = &s.violation {
            self.found(*kind, v.clone(), ppm);
            return;
        }
        if depth >= self.opts.depth {
            self.leaf(&s, ppm);
            return;
        }
        for step in self.steps_in_order(&s) {
            let mut next = s.clone();
            self.path.push(self.path_step(&s, &step));
            next.apply(&self.setup, &step);
            self.report.explored += 1;
            self.dfs(next, depth + 1, ppm);
            self.path.pop();
        }
    }

    /// The faults possible from `s`: every one the budget allows (time comes last, so the search
    /// meets faults early in a path first: counterexamples come sooner, and the whole search
    /// is the same).
    fn steps(&self, s: &State) -> Vec<Step> {
        let mut v = Vec::new();
        // Faults strike from the first boundary on: the simulator's timeline, like any sleep,
        // wakes no sooner than 1 ms after the start, when the agents' first timers have fired.
        if s.tick == 0 {
            return v;
        }
        let has = |c: FaultClass| self.opts.faults.contains(&c);
        // A crashed process may start again at any moment: that is a recovery, not a fault.
        for (p, proc) in s.procs.iter().enumerate().filter(|(_, p)| !p.up()) {
            v.push(Step::Restart(p, Restart::Keep));
            let tolerance = self.setup.cfgs[proc.node].loss_tolerance() as u32;
            if s.losses < tolerance && self.opts.algorithm == Algorithm::Lease {
                if has(FaultClass::Wipe) {
                    v.push(Step::Restart(p, Restart::Wipe));
                }
                if has(FaultClass::Rollback) {
                    v.extend((0..proc.saves().saturating_sub(1)).map(|j| Step::Restart(p, Restart::Rollback(j))));
                }
            }
        }
        // A cut may heal at any moment.
        if s.cut.is_some() {
            v.push(Step::Heal);
        }
        if s.faults >= self.opts.budget {
            return v;
        }
        if has(FaultClass::Partition) && s.cut.is_none() {
            v.extend(cuts(s));
        }
        if has(FaultClass::Forge) {
            v.extend((0..model::FORGED_KINDS).map(Step::Forge));
        }
        for k in (0..s.msgs.len()).filter(|k| !s.msgs[*k].is_heartbeat() && !s.msgs[*k].is_forged()) {
            for (c, step) in [
                (FaultClass::Drop, Step::Drop(k)),
                (FaultClass::Delay, Step::Delay(k)),
                (FaultClass::Duplicate, Step::Duplicate(k)),
            ] {
                if has(c) {
                    v.push(step);
                }
            }
        }
        for (p, proc) in s.procs.iter().enumerate().filter(|(_, p)| p.up()) {
            if has(FaultClass::Crash) {
                v.push(Step::Crash(p));
            }
            if has(FaultClass::Clone) && p < self.opts.nodes && s.procs.len() == self.opts.nodes && proc.saves() > 0 {
                v.push(Step::Clone(p));
            }
        }
        v
    }

    /// The faults possible from `s` ([`Explorer::steps`]), then time.
    fn steps_in_order(&self, s: &State) -> Vec<Step> {
        let mut v = self.steps(s);
        v.push(Step::Advance);
        v
    }

    /// Liveness at a leaf: with the faults over and every crashed node started again with its
    /// file, a lease is held within the settling time. Not judged where the guarantees allow
    /// a wait (a clone runs, or a node is misconfigured).
    fn leaf(&mut self, s: &State, ppm: &[i64]) {
        let misconfigured = self.opts.misconfigured_size.is_some() || self.opts.misconfigured_lease.is_some();
        if !self.opts.liveness || s.procs.len() > self.opts.nodes || misconfigured {
            return;
        }
        self.report.leaves += 1;
        let mut s = s.clone();
        let mut tail = Vec::new();
        let mut ends = Vec::new();
        if s.cut.is_some() {
            ends.push(Step::Heal);
        }
        ends.extend(
            (0..s.procs.len())
                .filter(|p| !s.procs[*p].up())
                .map(|p| Step::Restart(p, Restart::Keep)),
        );
        for step in ends {
            tail.push(self.path_step(&s, &step));
            s.apply(&self.setup, &step);
        }
        for k in 1..=self.settle_ticks {
            s.apply(&self.setup, &Step::Advance);
            if let Some((kind, v)) = &s.violation {
                let (kind, v) = (*kind, v.clone());
                self.path.extend(tail);
                self.path.push(PathStep {
                    at: u128::from(s.tick) * u128::from(self.setup.tick_ns),
                    what: format!("{k} ticks without faults"),
                    scenario: Ok(Vec::new()),
                    step: None,
                });
                self.found(kind, v, ppm);
                return;
            }
            if !s.holders(&self.setup).is_empty() {
                return;
            }
        }
        self.path.extend(tail);
        self.path.push(PathStep {
            at: u128::from(s.tick) * u128::from(self.setup.tick_ns),
            what: format!("{} ticks without faults", self.settle_ticks),
            scenario: Ok(Vec::new()),
            step: None,
        });
        self.found(
            Violation::NoLeader,
            format!(
                "no leader within {:?} after the faults stopped",
                Duration::from_nanos(self.settle_ticks * self.setup.tick_ns)
            ),
            ppm,
        );
    }

    /// `step` from `s`, as a counterexample shows it: a fault at the boundary it follows,
    /// time at the boundary it reaches.
    fn path_step(&self, s: &State, step: &Step) -> PathStep {
        PathStep {
            at: u128::from(s.tick + u64::from(*step == Step::Advance)) * u128::from(self.setup.tick_ns),
            what: s.describe(step),
            scenario: s.scenario_steps(&self.ids, step),
            step: Some(step.clone()),
        }
    }

    fn found(&mut self, kind: Violation, violation: String, ppm: &[i64]) {
        self.report.counterexample = Some(Counterexample {
            kind,
            violation,
            drift_ppm: ppm.to_vec(),
            seed: self.setup.seed,
            steps: self.path.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The depth the README names for three agents (16) covers an election, the leader's crash
    /// and restart, its quarantine, and a lease held again (the path with no fault but those).
    #[test]
    fn depth_16_covers_an_election_a_failover_and_a_restart() {
        let opts = CheckOptions::default();
        let setup = setup(&opts);
        let mut s = State::start(&setup, &[50_000, -50_000, 50_000]);
        let advance_until = |s: &mut State, done: &dyn Fn(&State) -> bool| {
            while !done(s) {
                assert!(s.tick < 60, "nothing happened by tick {}", s.tick);
                s.apply(&setup, &Step::Advance);
            }
            s.tick
        };
        let elected = advance_until(&mut s, &|s| !s.holders(&setup).is_empty());
        let leader = s.holders(&setup)[0];
        s.apply(&setup, &Step::Crash(leader));
        s.apply(&setup, &Step::Restart(leader, Restart::Keep));
        let again = advance_until(&mut s, &|s| !s.holders(&setup).is_empty());
        let quarantine = (opts.lease.as_nanos() / opts.beat.as_nanos()) as u64;
        eprintln!("elected at tick {elected}, held again at tick {again}, quarantine {quarantine} ticks");
        assert!(
            elected + quarantine <= again,
            "the restart's quarantine is over by then"
        );
        assert!(again + 2 <= 16, "two fault steps and {again} ticks fit in depth 16");
    }

    /// Each run seed is a space of its own with other jitter: two seeds are not the same
    /// search twice.
    #[test]
    fn another_seed_gives_the_agents_other_timings() {
        let one = CheckOptions {
            depth: 10,
            budget: 1,
            clocks: Some(vec![50_000, -50_000, 50_000]),
            ..CheckOptions::default()
        };
        let a = check(&one);
        let b = check(&CheckOptions { seeds: 2, ..one });
        assert!(a.exhaustive && b.exhaustive);
        assert_ne!(b.explored, 2 * a.explored, "seed 1 explores another space");
    }

    #[test]
    fn every_drift_assignment_is_listed_once() {
        let d = drifts(3, &[-1, 0, 1]);
        assert_eq!(d.len(), 27);
        let set: std::collections::BTreeSet<_> = d.iter().collect();
        assert_eq!(set.len(), 27);
    }

    #[test]
    fn fault_classes_parse_by_name_and_an_unknown_one_is_named() {
        for c in FaultClass::ALL {
            assert_eq!(FaultClass::parse(c.name()), Ok(c));
        }
        let e = FaultClass::parse("flood").unwrap_err();
        assert!(e.contains("flood") && e.contains("partition"), "{e}");
    }
}
