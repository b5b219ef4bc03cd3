//! Real mode: one scenario file run against real processes (one nats-server and one unchanged
//! `leasehold-agent` per node, on loopback), its fault plan drawn from the same seed as in the
//! simulator and turned into real actions at the same true times, and the result judged by
//! the simulator's own oracle.
//!
//! True time is the host's `CLOCK_MONOTONIC`, which the runner and every agent read. Agents
//! print each claim on their own monotonic clock, and `clock` lines that map that clock to
//! true time exactly (see the agent's `--test-clock`), so claims become true intervals just as
//! the simulator's clock model makes them.

pub mod cluster;
pub mod procs;
pub mod proxy;
pub mod record;
pub mod store;
pub mod support;

use crate::faults::{Action, FaultEvent};
use crate::nemesis::plan;
use crate::oracle::conduct::Conduct;
use crate::oracle::guards::REAL_SLACK;
use crate::oracle::verdict;
use crate::report::{Figures, RunReport};
use crate::scenario::Scenario;
use crate::timeline::FaultState;
use crate::topology::Topology;
use crate::trace::{Trace, TraceEvent};
use cluster::Cluster;
use procs::{true_ns, Line};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use support::unsupported;

/// Options of a real run.
#[derive(Debug, Clone, Default)]
pub struct RealOpts {
    /// The agent binary (default: `leasehold-agent` beside this program).
    pub agent: Option<PathBuf>,
}

/// One seed run for real.
pub struct RealRun {
    /// The oracle's report, in the simulator's form.
    pub report: RunReport,
    /// Every line the agents printed (events and logs), in arrival order, with arrival times
    /// relative to the start of the run.
    pub lines: Vec<Line>,
}

impl RealRun {
    /// The agents' log lines within two seconds before and one after true time `at`.
    pub fn logs_around(&self, at: u128) -> Vec<String> {
        let (from, to) = (at.saturating_sub(2_000_000_000), at + 1_000_000_000);
        self.lines
            .iter()
            .filter(|l| !l.event && l.at >= from && l.at <= to)
            .map(|l| {
                format!(
                    "{} {}#{}: {}",
                    crate::oracle::secs(l.at),
                    self_id(&self.report, l.node),
                    l.inc,
                    l.text
                )
            })
            .collect()
    }
}

fn self_id(r: &RunReport, node: usize) -> &str {
    r.nodes.get(node).map_or("?", String::as_str)
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Makes Ctrl-C (and SIGTERM) end a real run cleanly: processes killed, files removed.
pub fn handle_interrupts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
    });
}

/// Runs seed `seed` of `scn` for real. `Err` is a run that could not be made (no
/// nats-server, no agent binary, a port taken, an interruption); everything started has
/// been stopped and removed by then.
pub fn run_real(scn: &Scenario, seed: u64, source: &str, opts: &RealOpts) -> Result<RealRun, String> {
    if let Some(why) = unsupported(scn) {
        return Err(format!("cannot run for real: {why}"));
    }
    let wall = std::time::Instant::now();
    let nats = procs::nats_server_bin()?;
    let agent = procs::agent_bin(opts.agent.as_deref())?;
    let p = plan(scn, seed);
    let ids: Vec<String> = scn.sim_nodes().into_iter().map(|n| n.id).collect();
    let n = ids.len();
    let mut c = Cluster::new(scn, seed, nats, agent)?;
    for i in 0..n {
        c.set_clock(i, p.drift_ppm[i], p.wall_offset_ns[i]);
    }
    c.start_servers()?;
    let t0 = true_ns();
    // The fenced store listens on the first node's server: on the first side of every
    // partition, as the simulator's store is.
    let store = scn.workload.fenced_store.then(|| {
        let prefix = scn.membership_cfg().election_prefix();
        store::Store::start(
            c.client_port(0),
            crate::workload::store::subject(&prefix),
            scn.workload.store_checks_tokens,
            t0,
        )
    });
    for i in 0..n {
        c.start_agent(i, true)?;
    }
    let mut player = Player {
        faults: FaultState::new(n),
        topo: Topology::new(n, scn.network.latency, scn.network.loss),
        rng: ChaCha8Rng::seed_from_u64(crate::seeds::mix(seed, 0xd15c, 0)),
        applied: Vec::new(),
        trace: Vec::new(),
        ids: ids.clone(),
        t0,
        prefix: scn.membership_cfg().sys_member_prefix,
        authenticate: scn.membership.authenticate,
        hung: Vec::new(),
    };
    for ev in &p.events {
        wait_until(&mut c, t0 + ev.at.as_nanos())?;
        player.play(&mut c, &ev.action, ev.scripted)?;
    }
    wait_until(&mut c, t0 + scn.duration.0.as_nanos())?;
    let lines = std::mem::take(&mut *c.lines.lock().unwrap_or_else(|e| e.into_inner()));
    drop(c);
    let effects = store.map(|s| s.effects()).unwrap_or_default();
    // When a paused agent could not run: its application is not blamed for acting late.
    let stalls: Vec<(u128, usize, bool)> = player
        .applied
        .iter()
        .filter_map(|e| match e.action {
            Action::Pause(i) => Some((e.at.as_nanos(), i, true)),
            // A restart is a new process: it runs.
            Action::Resume(i) | Action::Restart(i) => Some((e.at.as_nanos(), i, false)),
            _ => None,
        })
        .collect();
    let rec = record::parse(&lines, &ids, t0, &stalls);
    let mut events = rec.trace;
    events.extend(player.trace);
    events.sort_by(|a, b| (a.at, &a.node, a.seq).cmp(&(b.at, &b.node, b.seq)));
    let live = crate::oracle::calm::live(scn, &p.events);
    let mut violations = verdict(&rec.claims, &live);
    violations.extend(effects.first.clone());
    violations.extend(rec.guards.first.clone());
    let mut conduct = conduct(scn, &ids, &player.applied, &lines, t0);
    for (at, i) in &player.hung {
        conduct.stop_hung(&ids[*i], *at);
    }
    violations.extend(conduct.first.clone());
    let mut figures = Figures::of_claims(&rec.claims, scn.duration.0, live.last_fault + live.bound);
    figures.guard_reports = rec.guards.reports;
    figures.freeze_noticed_max = crate::run::noticed_max(&conduct);
    figures.wall_time = wall.elapsed();
    (figures.writes_accepted, figures.stale_writes_accepted) = (effects.accepted, effects.stale);
    let lines = lines
        .into_iter()
        .map(|l| Line {
            at: l.at.saturating_sub(t0),
            ..l
        })
        .collect();
    Ok(RealRun {
        report: RunReport {
            scenario: scn.name.clone(),
            seed,
            replay: format!("cargo run --release -p leasehold-sim -- real {source} --seed {seed}"),
            nodes: ids,
            plan: p,
            applied: player.applied,
            trace: Trace::new(events),
            claims: rec.claims,
            violations,
            figures,
            router: None,
            swarm: None,
        },
        lines,
    })
}

/// Sleeps until true time `until` (host ns), keeping track of state files and interruptions.
fn wait_until(c: &mut Cluster, until: u128) -> Result<(), String> {
    loop {
        c.watch_state();
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        let now = true_ns();
        if now >= until {
            return Ok(());
        }
        let left = Duration::from_nanos((until - now).min(10_000_000) as u64);
        std::thread::sleep(left);
    }
}

/// Plays fault actions on a real cluster, as the simulator's world does on its nodes.
struct Player {
    faults: FaultState,
    topo: Topology,
    rng: ChaCha8Rng,
    applied: Vec<FaultEvent>,
    trace: Vec<TraceEvent>,
    ids: Vec<String>,
    t0: u128,
    prefix: String,
    authenticate: bool,
    /// Stops the agent did not serve in time: (true ns since t0 when asked, node).
    hung: Vec<(u128, usize)>,
}

impl Player {
    fn now(&self) -> u128 {
        true_ns().saturating_sub(self.t0)
    }

    fn note(&mut self, what: String) {
        self.trace.push(TraceEvent {
            at: self.now(),
            seq: u64::MAX / 4 + self.trace.len() as u64,
            node: None,
            local: None,
            what,
        });
    }

    /// Applies `a` now and records what it resolved to.
    fn play(&mut self, c: &mut Cluster, a: &Action, scripted: bool) -> Result<(), String> {
        let leader = match a {
            Action::IsolateLeader { .. } => {
                let lines = c.lines.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let now = self.now();
                record::parse(&lines, &self.ids, self.t0, &[])
                    .claims
                    .into_iter()
                    .find(|cl| cl.from <= now && now < cl.until)
                    .map(|cl| cl.node)
            }
            _ => None,
        };
        self.note(a.describe(&self.ids, leader));
        let at = Duration::from_nanos(self.now() as u64);
        for resolved in self.resolve(c, a, leader)? {
            self.faults.apply(&resolved);
            self.applied.push(FaultEvent {
                at,
                action: resolved,
                scripted,
            });
        }
        Ok(())
    }

    fn resolve(&mut self, c: &mut Cluster, a: &Action, leader: Option<usize>) -> Result<Vec<Action>, String> {
        if let Action::StateLoss { node, wipe, pick } = a {
            let mut done = Vec::new();
            if self.faults.takes_effect(&Action::Kill(*node)) {
                c.kill(*node);
                done.push(Action::Kill(*node));
            }
            let saves = c.saves(*node);
            let change = if *wipe || saves < 2 {
                Action::WipeState(*node)
            } else {
                Action::RollbackState(*node, Some((pick % (saves as u64 - 1)) as usize))
            };
            done.extend(self.resolve(c, &change, None)?);
            return Ok(done);
        }
        if !self.faults.takes_effect(a) {
            return Ok(Vec::new());
        }
        let n = self.ids.len();
        Ok(vec![match a {
            Action::Kill(i) => {
                c.kill(*i);
                a.clone()
            }
            Action::Restart(i) => {
                c.restart(*i)?;
                a.clone()
            }
            Action::Pause(i) | Action::Resume(i) => {
                c.pause(*i, matches!(a, Action::Pause(_)));
                a.clone()
            }
            Action::Stop(i) => {
                let asked = self.now();
                // A paused agent cannot serve a SIGTERM; any other must, within the bound.
                if !c.stop(*i) && !self.faults.paused[*i] {
                    self.hung.push((asked, *i));
                }
                a.clone()
            }
            Action::ServerDown(i, down) => {
                c.server_down(*i, *down)?;
                a.clone()
            }
            Action::FreezeConnection(i, frozen) => {
                // The node's nats-server stopped (SIGSTOP): its agent's connection freezes.
                c.freeze_server(*i, *frozen);
                a.clone()
            }
            Action::Resign(i) | Action::Campaign(i) => {
                c.steer(*i, matches!(a, Action::Resign(_)));
                a.clone()
            }
            Action::ClockStep(i, by) => {
                c.step_wall(*i, *by);
                a.clone()
            }
            Action::Drift(i, ppm) => {
                c.drift(*i, *ppm);
                a.clone()
            }
            Action::Loss(l) => {
                c.net.with(|net| net.loss = *l);
                a.clone()
            }
            Action::Latency(r) => {
                c.net.with(|net| net.latency = *r);
                a.clone()
            }
            Action::WipeState(i) => {
                c.wipe(*i);
                a.clone()
            }
            Action::Resize(i, size) => {
                c.resize(*i, *size);
                a.clone()
            }
            Action::RollbackState(i, to) => {
                let saves = c.saves(*i).max(1) as u64;
                let to = to.unwrap_or_else(|| (self.rng.gen::<u64>() % saves.saturating_sub(1).max(1)) as usize);
                c.rollback(*i, to);
                Action::RollbackState(*i, Some(to))
            }
            Action::Forge(pick) => {
                let f = crate::forger::forge(*pick, &self.prefix, &self.ids);
                let payload = if self.authenticate {
                    crate::forger::counterfeit(*pick, &f.subject, f.payload).0
                } else {
                    f.payload
                };
                let sent = c.inject(f.from % n, &f.subject, f.reply.as_deref(), &payload);
                self.note(format!(
                    "forged {} on {} ({})",
                    f.what,
                    f.subject,
                    if sent { "sent" } else { "not sent" }
                ));
                a.clone()
            }
            Action::Heal => {
                self.topo.heal();
                c.net.with(|net| net.cuts.clear());
                a.clone()
            }
            Action::Suspend(_)
            | Action::Wake(_)
            | Action::Freeze(_)
            | Action::Clone(_)
            | Action::CorruptState(_)
            | Action::Replay(..)
            | Action::SlowConsumer(..)
            | Action::Preempt(..)
            | Action::Congest(..) => {
                return Err(format!("cannot be done for real: {}", a.describe(&self.ids, None)));
            }
            routes => {
                crate::world::cut_routes(&mut self.topo, routes, leader, n);
                let cuts = self.topo.cuts();
                c.net.with(|net| net.cuts = cuts.clone());
                Action::Cut(cuts)
            }
        }])
    }
}

/// The conduct oracle over a real run: when the runner froze a node's server (SIGSTOP), its
/// agent must print `disconnected` within three ping intervals and a beat (and the slack of a
/// real process); a paused, killed or restarted node is excused. (A stop for real is judged
/// as the runner plays it: `Cluster::stop` waits for the agent's exit.)
fn conduct(scn: &Scenario, ids: &[String], applied: &[FaultEvent], lines: &[Line], t0: u128) -> Conduct {
    // (true ns since t0, order at one instant, node, what): 0 = a fault, 1 = a line.
    let mut events: Vec<(u128, u8, usize, Option<&Action>)> = applied
        .iter()
        .filter_map(|e| e.action.node().map(|i| (e.at.as_nanos(), 0, i, Some(&e.action))))
        .collect();
    events.extend(
        lines
            .iter()
            .filter(|l| {
                l.event
                    && serde_json::from_str::<leasehold::events::EventLine>(&l.text)
                        .is_ok_and(|v| matches!(v.event, leasehold::events::AgentEvent::Disconnected { .. }))
            })
            .map(|l| (l.at.saturating_sub(t0), 1, l.node, None)),
    );
    events.sort_by_key(|e| (e.0, e.1, e.2));
    let mut c = Conduct::default();
    for (at, _, i, action) in events {
        match action {
            None => c.disconnected(i, at),
            Some(Action::FreezeConnection(_, true)) => {
                let mut cfg = scn.node_cfg(i);
                cfg.bug_knobs = leasehold::BugKnobs::default();
                let by = at + 3 * cfg.ping_interval().as_nanos() + cfg.beat.as_nanos() + REAL_SLACK;
                c.froze(i, at, by);
            }
            Some(Action::FreezeConnection(_, false)) => c.thawed(i, &ids[i], at),
            Some(Action::Pause(_) | Action::Kill(_) | Action::Stop(_) | Action::Restart(_)) => c.excuse(i),
            Some(_) => {}
        }
    }
    c.finish(scn.duration.0.as_nanos(), ids);
    c
}
