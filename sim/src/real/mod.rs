//! Real mode: one scenario file run against real processes (one nats-server and one unchanged
//! `leasehold-agent` per node, on loopback), its fault plan drawn from the same seed as in the
//! simulator and turned into real actions at the same true times, and the result judged by
//! the simulator's own oracle.
//!
//! True time is the host's `CLOCK_MONOTONIC`, which the runner and every agent read. Agents
//! print each claim on their own monotonic clock, and `clock` lines that map that clock to
//! true time exactly (see the agent's `--test-clock`), so claims become true intervals just as
//! the simulator's clock model makes them.

pub mod calibrate;
pub mod cluster;
pub mod procs;
pub mod proxy;
pub mod record;
pub mod store;
pub mod support;

use crate::faults::{Action, FaultEvent, FaultTarget, Resolver};
use crate::nemesis::{plan, Plan};
use crate::oracle::conduct::Conduct;
use crate::oracle::effects::Effects;
use crate::oracle::guards::REAL_SLACK;
use crate::oracle::verdict;
use crate::report::{Figures, RunReport};
use crate::scenario::Scenario;
use crate::topology::Topology;
use crate::trace::{Trace, TraceEvent};
use cluster::Cluster;
use procs::{true_ns, Line};
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
    for i in 0..n {
        c.start_agent(i, true)?;
    }
    // The simulator's agents all start at time zero, and a lease agent saves its state in
    // that instant; real ones take about 100 ms to start and connect, and save a few ms
    // after: time zero is when every agent has said it is connected and, for lease agents,
    // made its first save, so that a step scripted at 10 ms finds agents that have started
    // and saved, as in the simulator.
    wait_for_agents(&mut c, n, scn.algorithm == leasehold::Algorithm::Lease)?;
    let t0 = true_ns();
    if let Some(q) = scn.quantum() {
        c.net.with(|net| net.grid = Some((t0, q)));
    }
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
    let mut resolver = Resolver::new(
        ids.clone(),
        seed,
        scn.membership_cfg().sys_member_prefix,
        scn.membership.authenticate,
    );
    let mut player = Player {
        topo: Topology::new(n, scn.network.latency, scn.network.loss),
        applied: Vec::new(),
        trace: Vec::new(),
        ids: ids.clone(),
        t0,
        paused: vec![false; n],
        hung: Vec::new(),
    };
    for ev in &p.events {
        wait_until(&mut c, t0 + ev.at.as_nanos())?;
        player.play(&mut c, &mut resolver, &ev.action, ev.scripted)?;
    }
    wait_until(&mut c, t0 + scn.duration.0.as_nanos())?;
    let lines = std::mem::take(&mut *c.lines.lock().unwrap_or_else(|e| e.into_inner()));
    drop(c);
    let effects = store.map(|s| s.effects()).unwrap_or_default();
    let mut run = judge(scn, p, player, lines, effects);
    run.report.seed = seed;
    run.report.replay = format!("cargo run --release -p leasehold-sim -- real {source} --seed {seed}");
    run.report.figures.wall_time = wall.elapsed();
    Ok(run)
}

/// The oracle's verdict on what the agents printed (`lines`), what the player did, and what
/// the fenced store saw, in the simulator's report form.
fn judge(scn: &Scenario, p: Plan, player: Player, lines: Vec<Line>, effects: Effects) -> RealRun {
    let (ids, t0) = (&player.ids, player.t0);
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
    let rec = record::parse(&lines, ids, t0, &stalls);
    let mut events = rec.trace;
    events.extend(player.trace);
    events.sort_by(|a, b| (a.at, &a.node, a.seq).cmp(&(b.at, &b.node, b.seq)));
    let live = crate::oracle::calm::live(scn, &p.events);
    let mut violations = verdict(&rec.claims, &live);
    violations.extend(effects.first.clone());
    violations.extend(rec.guards.first.clone());
    let mut conduct = conduct(scn, ids, &player.applied, &lines, t0);
    for (at, i) in &player.hung {
        conduct.stop_hung(&ids[*i], *at);
    }
    violations.extend(conduct.first.clone());
    let mut figures = Figures::of_claims(&rec.claims, scn.duration.0, live.last_fault + live.bound);
    figures.guard_reports = rec.guards.reports;
    figures.freeze_noticed_max = crate::run::noticed_max(&conduct);
    (figures.writes_accepted, figures.stale_writes_accepted) = (effects.accepted, effects.stale);
    let lines = lines
        .into_iter()
        .map(|l| Line {
            at: l.at.saturating_sub(t0),
            ..l
        })
        .collect();
    RealRun {
        report: RunReport {
            scenario: scn.name.clone(),
            seed: 0,
            replay: String::new(),
            nodes: player.ids,
            plan: p,
            applied: player.applied,
            trace: Trace::new(events),
            claims: rec.claims,
            violations,
            figures,
            router: None,
            swarm: None,
            coverage: Vec::new(),
        },
        lines,
    }
}

/// Waits until each of the `n` agents has printed that it is connected and, if `saves`, that it
/// saved its state, for at most 10 s; an agent that exits first is an error with the last
/// lines it said.
fn wait_for_agents(c: &mut Cluster, n: usize, saves: bool) -> Result<(), String> {
    let give_up = true_ns() + 10_000_000_000;
    loop {
        if let Some(i) = (0..n).find(|i| c.agent_exited(*i)) {
            // An agent that cannot start (a flag it does not know: an older binary) says why
            // on stderr; waiting for it to connect would only hide that. (Its last lines may
            // still be on their way from the pipe.)
            std::thread::sleep(Duration::from_millis(100));
            let lines = c.lines.lock().unwrap_or_else(|e| e.into_inner());
            let said: Vec<&str> = lines
                .iter()
                .filter(|l| l.node == i && !l.event)
                .map(|l| l.text.as_str())
                .collect();
            return Err(format!(
                "the agent of node {i} exited before connecting: {}",
                said[said.len().saturating_sub(3)..].join(" / ")
            ));
        }
        let up = {
            let lines = c.lines.lock().unwrap_or_else(|e| e.into_inner());
            let said = |i: usize, what: &str| lines.iter().any(|l| l.node == i && l.event && l.text.contains(what));
            (0..n).all(|i| said(i, "\"event\":\"connected\"") && (!saves || said(i, "{\"test_saved\"")))
        };
        if up {
            return Ok(());
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        if true_ns() > give_up {
            return Err("the agents did not all connect within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
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

/// Plays fault actions on a real cluster through the one [`Resolver`], as the simulator's
/// world does on its nodes, and keeps what they were.
struct Player {
    topo: Topology,
    applied: Vec<FaultEvent>,
    trace: Vec<TraceEvent>,
    ids: Vec<String>,
    t0: u128,
    /// Nodes paused (a paused agent cannot serve a stop).
    paused: Vec<bool>,
    /// Stops the agent did not serve in time: (true ns since t0 when asked, node).
    hung: Vec<(u128, usize)>,
}

impl Player {
    fn now(&self) -> u128 {
        true_ns().saturating_sub(self.t0)
    }

    /// Applies `a` now and records what it resolved to.
    fn play(&mut self, c: &mut Cluster, resolver: &mut Resolver, a: &Action, scripted: bool) -> Result<(), String> {
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
        let at = Duration::from_nanos(self.now() as u64);
        for resolved in resolver.play(&mut RealTarget { player: self, c }, a, leader)? {
            self.applied.push(FaultEvent {
                at,
                action: resolved,
                scripted,
            });
        }
        Ok(())
    }
}

/// The real cluster as a target of fault actions.
struct RealTarget<'a> {
    player: &'a mut Player,
    c: &'a mut Cluster,
}

impl FaultTarget for RealTarget<'_> {
    fn cannot(a: &Action) -> Option<&'static str> {
        support::cannot(a)
    }

    fn note(&mut self, node: Option<usize>, what: String) {
        let p = &mut *self.player;
        p.trace.push(TraceEvent {
            at: p.now(),
            seq: u64::MAX / 4 + p.trace.len() as u64,
            node: node.map(|i| p.ids[i].clone()),
            local: None,
            what,
        });
    }

    fn kill(&mut self, i: usize) {
        self.c.kill(i);
        self.player.paused[i] = false;
    }

    fn restart(&mut self, i: usize) -> Result<(), String> {
        self.c.restart(i)
    }

    fn pause(&mut self, i: usize, paused: bool) {
        self.c.pause(i, paused);
        self.player.paused[i] = paused;
    }

    fn stop(&mut self, i: usize) {
        let asked = self.player.now();
        // A paused agent cannot serve a SIGTERM; any other must, within the bound.
        if !self.c.stop(i) && !self.player.paused[i] {
            self.player.hung.push((asked, i));
        }
        self.player.paused[i] = false;
    }

    // Refused by `cannot`: never called.
    fn suspend(&mut self, _: usize) {}
    fn freeze(&mut self, _: usize) {}
    fn wake(&mut self, _: usize) {}

    fn corrupt(&mut self, i: usize) {
        self.c.corrupt(i);
    }

    fn clone_agent(&mut self, i: usize) {
        if let Err(e) = self.c.clone_agent(i) {
            self.note(Some(i), format!("clone failed: {e}"));
        }
    }
    fn replay(&mut self, _: usize, _: Duration) {}
    fn slow_consumer(&mut self, _: usize, _: bool) {}
    fn preempt(&mut self, _: usize, _: Duration) {}
    fn congest(&mut self, _: usize, _: Option<Duration>) {}

    fn lag(&mut self, i: usize, latency: Option<Duration>) {
        self.c.net.with(|net| net.set_lag(i, latency));
    }

    fn step_wall(&mut self, i: usize, by: i128) {
        self.c.step_wall(i, by);
    }

    fn drift(&mut self, i: usize, ppm: i64) {
        self.c.drift(i, ppm);
    }

    fn set_loss(&mut self, loss: f64) {
        self.c.net.with(|net| net.loss = loss);
    }

    fn set_latency(&mut self, latency: crate::scenario::DurRange) {
        self.c.net.with(|net| net.latency = latency);
    }

    fn routes(&mut self, change: &mut dyn FnMut(&mut Topology)) -> Vec<(usize, usize)> {
        change(&mut self.player.topo);
        let cuts = self.player.topo.cuts();
        self.c.net.with(|net| net.cuts = cuts.clone());
        cuts
    }

    fn saves(&self, i: usize) -> usize {
        self.c.saves(i)
    }

    fn wipe(&mut self, i: usize) {
        self.c.wipe(i);
    }

    fn rollback(&mut self, i: usize, to: usize) {
        self.c.rollback(i, to);
    }

    fn steer(&mut self, i: usize, resign: bool) {
        self.c.steer(i, resign);
    }

    fn resize(&mut self, i: usize, size: usize) {
        self.c.resize(i, size);
    }

    fn server_down(&mut self, i: usize, down: bool) -> Result<(), String> {
        self.c.server_down(i, down)
    }

    fn freeze_connection(&mut self, i: usize, frozen: bool) {
        // The node's nats-server stops (SIGSTOP): its agent's connection freezes.
        self.c.freeze_server(i, frozen);
    }

    fn inject(&mut self, from: usize, subject: &str, reply: Option<&str>, payload: bytes::Bytes) -> bool {
        self.c.inject(from, subject, reply, &payload)
    }

    fn message(
        &mut self,
        _: crate::scenario::MessageFault,
        _: usize,
        _: usize,
        _: crate::scenario::MessageKind,
        _: usize,
    ) -> bool {
        // Refused by `support::cannot` before it gets here.
        false
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
            None => c.disconnected(i, &ids[i], at),
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
