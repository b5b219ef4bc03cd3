//! Running one seed of a scenario: build the world, create its madsim nodes, play the fault
//! plan at its true times, then let the oracle judge what was recorded.

use crate::clock::Alarm;
use crate::faults::FaultEvent;
use crate::nemesis::{lazy_plan, plan, Plan};
use crate::oracle::{verdict, Violation, ViolationKind};
use crate::record::Keep;
use crate::report::{Figures, RunReport};
use crate::scenario::Scenario;
use crate::trace::Trace;
use crate::world::World;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::task::Poll;
use std::time::Duration;

/// Runs one seed of `scn` on a fresh thread (madsim seeds per-thread state on first use) and
/// returns its whole report: trace, claims, faults applied. `source` is the scenario's path,
/// used in the replay command.
pub fn run_seed(scn: &Scenario, seed: u64, source: &str) -> RunReport {
    run_keeping(scn, seed, source, Keep::Everything, true).0
}

/// [`run_seed`] with every agent parsing every message it receives itself, as agents in
/// separate processes do: the run a test compares shared decoding against.
pub fn run_seed_parsing_each(scn: &Scenario, seed: u64, source: &str) -> RunReport {
    run_keeping(scn, seed, source, Keep::Everything, false).0
}

/// Runs one seed of `scn` as a sweep does, in memory that does not grow with the run's
/// length: the report has the verdict, the figures and the trace's digest and length, but no
/// events, claims or faults applied. A seed the oracle finds anything in (or whose record
/// could not be streamed) is run again with everything kept, so its report is whole and
/// exactly [`run_seed`]'s (its wall time counts both runs). Router scenarios, whose checks
/// need every request, always keep everything.
pub fn run_seed_lean(scn: &Scenario, seed: u64, source: &str) -> RunReport {
    if scn.router.is_some() {
        return run_seed(scn, seed, source);
    }
    let (lean, whole) = run_keeping(scn, seed, source, Keep::Verdict, true);
    if !whole {
        return lean;
    }
    let mut r = run_seed(scn, seed, source);
    r.figures.wall_time += lean.figures.wall_time;
    r
}

/// Runs one seed keeping what `keep` says; also says whether the run must be redone with
/// everything kept (the streaming oracle found something, or the record came late).
///
/// With `share`, the agents share decoded messages ([`leasehold::wire::share_decodes`]): each
/// heartbeat is parsed once rather than once per receiver, which changes nothing they see.
fn run_keeping(scn: &Scenario, seed: u64, source: &str, keep: Keep, share: bool) -> (RunReport, bool) {
    let replay = format!("cargo run --release -p leasehold-sim -- replay {source} --seed {seed}");
    let (scn2, replay2) = (scn.clone(), replay.clone());
    let wall = std::time::Instant::now();
    let joined = std::thread::Builder::new()
        .name(format!("sim-seed-{seed}"))
        .spawn(move || {
            leasehold::wire::share_decodes(share);
            let mut rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
            rt.set_time_limit(scn2.duration.0 + Duration::from_secs(600));
            rt.block_on(simulate(scn2, seed, replay2, keep))
        })
        .map_err(|e| e.to_string())
        .and_then(|h| {
            h.join().map_err(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into())
            })
        });
    let (mut report, whole) = joined.unwrap_or_else(|msg| (panicked(scn, seed, replay, msg), false));
    report.figures.wall_time = wall.elapsed();
    (report, whole)
}

/// The report of a run that panicked.
fn panicked(scn: &Scenario, seed: u64, replay: String, msg: String) -> RunReport {
    RunReport {
        scenario: scn.name.clone(),
        seed,
        replay,
        nodes: scn.sim_nodes().into_iter().map(|n| n.id).collect(),
        plan: plan(scn, seed),
        applied: Vec::new(),
        trace: Trace::default(),
        claims: Vec::new(),
        violations: vec![Violation {
            kind: ViolationKind::Panic,
            at: 0,
            claims: Vec::new(),
            detail: msg,
        }],
        figures: Figures {
            sim_time: scn.duration.0,
            ..Figures::default()
        },
        router: None,
        swarm: None,
        coverage: Vec::new(),
    }
}

async fn simulate(scn: Scenario, seed: u64, replay: String, keep: Keep) -> (RunReport, bool) {
    let start = madsim::time::Instant::now();
    // A whole run keeps its plan; a lean one draws its faults as it goes (and once before,
    // without keeping them, to know when the last one ends).
    let (p, events): (Plan, Box<dyn Iterator<Item = FaultEvent>>) = match keep {
        Keep::Everything => {
            let p = plan(&scn, seed);
            let events = p.events.clone();
            (p, Box::new(events.into_iter()))
        }
        Keep::Verdict => {
            let (p, events) = lazy_plan(&scn, seed);
            (p, Box::new(events))
        }
    };
    let live = match keep {
        Keep::Everything => crate::oracle::calm::live(&scn, &p.events),
        Keep::Verdict => crate::oracle::calm::live(&scn, lazy_plan(&scn, seed).1),
    };
    let (w, hosts) = World::build(&scn, seed, &p, start, keep, live);
    let ids = &hosts.agents;
    // Graceful stops in progress run here, beside the waits, and end with the run.
    let mut graces = FuturesUnordered::new();
    // Fault sites fire until the random faults stop (a run without them waits for nothing
    // more than its steps, so its schedule is what it always was).
    let quiet = start + scn.faults_end();
    let sites = scn.faults.sites.is_some();
    for ev in events {
        if sites && ev.at >= scn.faults_end() && quiet > madsim::time::Instant::now() {
            wait_until(quiet, &mut graces).await;
            w.disarm_sites();
        }
        // Steps due at the same instant are applied together: madsim's shortest sleep is 1 ms.
        if start + ev.at > madsim::time::Instant::now() {
            wait_until(start + ev.at, &mut graces).await;
        }
        w.apply(&ev.action, ids);
        graces.extend(w.take_graces());
    }
    if sites && quiet > madsim::time::Instant::now() {
        wait_until(quiet, &mut graces).await;
    }
    w.disarm_sites();
    wait_until(start + scn.duration.0, &mut graces).await;
    hosts.kill_all();
    match keep {
        Keep::Everything => (judge(&w, p, replay), false),
        Keep::Verdict => judge_streamed(&w, p, replay),
    }
}

/// Waits until `at`, running the graceful stops in progress meanwhile.
async fn wait_until(at: madsim::time::Instant, graces: &mut FuturesUnordered<leasehold::BoxFuture<'static, ()>>) {
    let mut alarm = Alarm::default();
    futures::future::poll_fn(|cx| {
        while let Poll::Ready(Some(())) = graces.poll_next_unpin(cx) {}
        alarm.poll_at(at, madsim::time::Instant::now(), cx)
    })
    .await
}

/// The oracle's verdict on what the world recorded, and the run's figures.
fn judge(w: &World, p: Plan, replay: String) -> RunReport {
    let scn = &w.scn;
    let claims = w.claims();
    let live = crate::oracle::calm::live(scn, &p.events);
    let mut violations = verdict(&claims, &live);
    let effects = w.effects.lock().unwrap_or_else(|e| e.into_inner()).clone();
    violations.extend(effects.first.clone());
    violations.extend(w.guards().first);
    violations.extend(w.conduct().first);
    violations.extend(w.clock_reads());
    let trace = w.take_trace();
    let applied = w.take_applied();
    let router = scn.router.as_ref().map(|_| {
        let rec = w.routes.lock().unwrap_or_else(|e| e.into_inner());
        let (rep, found) = crate::oracle::routing::check(scn, &rec, &applied);
        violations.extend(found);
        rep
    });
    let mut figures = Figures::of_claims(&claims, scn.duration.0, live.last_fault + live.bound);
    figures.fabric = w.fabric.stats();
    figures.faults_applied = applied.len() as u64;
    (figures.writes_accepted, figures.stale_writes_accepted) = (effects.accepted, effects.stale);
    figures.guard_reports = w.guards().reports;
    figures.freeze_noticed_max = noticed_max(&w.conduct());
    w.release();
    RunReport {
        scenario: scn.name.clone(),
        seed: w.seed,
        replay,
        nodes: w.nodes.iter().map(|n| n.id.clone()).collect(),
        plan: p,
        applied,
        trace,
        claims,
        violations,
        figures,
        router,
        swarm: None,
        coverage: w.take_coverage(),
    }
}

/// The figures of a lean run from the streaming oracle, and whether it must be redone whole.
fn judge_streamed(w: &World, p: Plan, replay: String) -> (RunReport, bool) {
    let scn = &w.scn;
    let trace = w.take_trace();
    let sim_time = scn.duration.0;
    let (flagged, mut figures) = w.finish_stream(|s| {
        let (claims, leader_changes, failovers, held) = s.figures_so_far();
        let (longest_gap, tail) = s.availability_so_far();
        let ns = |x: u128| Duration::from_nanos(u64::try_from(x).unwrap_or(u64::MAX));
        let figures = Figures {
            sim_time,
            leader_changes,
            failovers_ms: failovers.to_vec(),
            no_leader: sim_time.saturating_sub(ns(held)),
            longest_gap: ns(longest_gap),
            calm_tail: tail.map(|(h, l)| (ns(h), ns(l))),
            claims,
            ..Figures::default()
        };
        (s.flagged(), figures)
    });
    figures.fabric = w.fabric.stats();
    figures.faults_applied = w.counts().1;
    let effects = w.effects.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (figures.writes_accepted, figures.stale_writes_accepted) = (effects.accepted, effects.stale);
    let guards = w.guards();
    figures.guard_reports = guards.reports;
    let conduct = w.conduct();
    figures.freeze_noticed_max = noticed_max(&conduct);
    let whole = flagged
        || w.late()
        || effects.stale > 0
        || guards.violations > 0
        || conduct.violations > 0
        || !w.clock_reads().is_empty();
    w.release();
    let report = RunReport {
        scenario: scn.name.clone(),
        seed: w.seed,
        replay,
        nodes: w.nodes.iter().map(|n| n.id.clone()).collect(),
        plan: p,
        applied: Vec::new(),
        trace,
        claims: Vec::new(),
        violations: Vec::new(),
        figures,
        router: None,
        swarm: None,
        coverage: w.take_coverage(),
    };
    (report, whole)
}

/// The longest a frozen connection took to be reported.
pub(crate) fn noticed_max(c: &crate::oracle::conduct::Conduct) -> Duration {
    Duration::from_nanos(c.noticed.iter().copied().max().unwrap_or(0) as u64)
}
