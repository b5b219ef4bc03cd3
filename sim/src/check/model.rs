//! The model the checker explores: a few processes, each running the production
//! [`LeaseElection`] (cloned at every branch, never re-implemented), their state files with
//! earlier saves, their monotonic clocks as exact functions of true time, their drivers' timers,
//! and the messages in flight. Messages move on the grid of [`Quantum`]: one sent at any moment
//! arrives just before the next boundary, unless a fault drops, delays or duplicates it. A
//! timer fires when its process's clock reaches it, as the simulator's driver sleeps. Faults
//! strike just after a boundary. Claims are judged as they are made, in true time.

use super::body::Body;
use super::machine::{Machine, ALLREPLY};
use super::Violation;
use crate::quantum::Quantum;
use crate::scenario::{MessageAt, MessageKind, RollbackAt, Step as ScenarioStep};
use leasehold::election::{Notice, Output, Publish};
use leasehold::{ClusterState, Durable, MembershipCfg};
use std::fmt;
use std::hash::Hasher;
use std::time::Duration;

/// Saves kept per process, for rollbacks (the latest and the ones before it).
const SAVES_KEPT: usize = 3;

/// The forger's kinds of message: `Step::Forge(k)` publishes forged message number `k`.
pub(crate) const FORGED_KINDS: u64 = 12;

/// The sender of a forged message: a stranger, no process.
const STRANGER: usize = usize::MAX;

/// The shortest sleep (madsim's, as tokio's).
const MIN_SLEEP_NS: u128 = 1_000_000;

/// Every monotonic clock's reading at true time zero (a host up for a while: nothing the
/// machine computes runs into zero).
const ORIGIN_NS: i128 = 1_000_000_000_000;

/// What stays fixed while the checker explores.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    /// Each node's configuration (IDs `n0`, `n1`, …; rank = index).
    pub(crate) cfgs: Vec<MembershipCfg>,
    /// True time per tick (ns).
    pub(crate) tick_ns: u64,
    /// The run's seed, from which each agent's draws come as in the simulator.
    pub(crate) seed: u64,
}

impl Setup {
    /// The boundary of `tick` (true ns).
    fn now(&self, tick: u64) -> u128 {
        u128::from(tick) * u128::from(self.tick_ns)
    }

    fn quantum(&self) -> Quantum {
        Quantum::new(u128::from(self.tick_ns))
    }

    /// When the `k`-th message due at `tick` arrives (just before its boundary, as in the
    /// simulator's quantised time).
    fn arrival(&self, tick: u64, k: usize) -> u128 {
        self.quantum().arrival(self.now(tick), k as u64)
    }

    /// The tick at whose boundary a message sent at `now` arrives.
    fn due_after(&self, now: u128) -> u64 {
        (self.quantum().boundary_after(now) / u128::from(self.tick_ns)) as u64
    }

    /// When a fault between `tick` and the next strikes (just after the boundary).
    fn fault_time(&self, tick: u64) -> u128 {
        self.quantum().step(self.now(tick))
    }
}

/// A claim in true time (ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Claim {
    inc: u64,
    token: Option<u64>,
    from: u128,
    until: u128,
}

/// One process: a node's agent, or a second process started with its identity (a clone).
#[derive(Debug, Clone)]
pub(crate) struct Proc {
    /// Whose identity and configuration it runs.
    pub(crate) node: usize,
    machine: Option<Machine>,
    saves: Vec<Durable>,
    /// The number of each save kept (0: its first ever), as the simulator's disk counts them;
    /// not part of the fingerprint (it changes nothing the process does).
    save_nos: Vec<u64>,
    /// Saves made so far.
    saved: u64,
    starts: u64,
    /// When its timer fires (true ns): when its clock reaches the machine's next wake-up, but
    /// no sooner than 1 ms after the driver armed it (madsim's, as tokio's, shortest sleep).
    fire: u128,
    /// Its clock's rate error (ppm): its monotonic clock reads `true × (1 + ppm/10⁶)`.
    pub(crate) ppm: i64,
    claim: Option<Claim>,
}

impl Proc {
    fn local(&self, true_ns: u128) -> Duration {
        let ns = ORIGIN_NS + true_ns as i128 * (1_000_000 + i128::from(self.ppm)) / 1_000_000;
        Duration::from_nanos(u64::try_from(ns.max(0)).unwrap_or(u64::MAX))
    }

    /// The earliest true time at which the clock reads `local`.
    fn true_at(&self, local: Duration) -> u128 {
        let rate = 1_000_000 + i128::from(self.ppm);
        let l = local.as_nanos() as i128 - ORIGIN_NS;
        ((l * 1_000_000 + rate - 1).div_euclid(rate)).max(0) as u128
    }

    /// The driver sleeps until the machine's next wake-up, from `now`: at once if it is due,
    /// else when the clock reaches it but no sooner than the shortest sleep.
    fn arm(&mut self, now: u128) {
        if let Some(m) = &self.machine {
            let at = self.true_at(m.next_wakeup());
            self.fire = if at <= now { now } else { at.max(now + MIN_SLEEP_NS) };
        }
    }

    /// The simulator's number of its kept save `j` (0: the oldest kept).
    pub(crate) fn save_number(&self, j: usize) -> u64 {
        self.save_nos.get(j).copied().unwrap_or(0)
    }

    /// Whether it runs.
    pub(crate) fn up(&self) -> bool {
        self.machine.is_some()
    }

    /// How many saves it has kept.
    pub(crate) fn saves(&self) -> usize {
        self.saves.len()
    }
}

/// A message in flight from one process to another, due at a tick.
#[derive(Debug, Clone, Hash)]
pub(crate) struct Msg {
    pub(crate) from: usize,
    pub(crate) to: usize,
    due: u64,
    pub(crate) body: Body,
}

impl Msg {
    /// Whether it is a heartbeat (lost only with its sender's or receiver's partition: one
    /// lost beat is within what the member timeout of three beats tolerates).
    pub(crate) fn is_heartbeat(&self) -> bool {
        matches!(self.body, Body::Heartbeat(_))
    }

    /// Whether a stranger forged it (no scenario step names it on a route).
    pub(crate) fn is_forged(&self) -> bool {
        self.from == STRANGER
    }
}

impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} p{}->p{}", self.body.kind().name(), self.from, self.to)
    }
}

/// How a process restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Restart {
    /// With its last save.
    Keep,
    /// With its state file gone.
    Wipe,
    /// With its file rolled back to an earlier save (index into the saves kept).
    Rollback(usize),
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// True time moves one tick: messages due are delivered, timers due fire.
    Advance,
    /// Message `k` in flight is lost.
    Drop(usize),
    /// Message `k` in flight arrives one tick later (after those sent after it).
    Delay(usize),
    /// Message `k` in flight arrives twice.
    Duplicate(usize),
    /// Process `p` crashes.
    Crash(usize),
    /// Process `p` starts again.
    Restart(usize, Restart),
    /// A second process with node `p`'s identity and a copy of its state file starts.
    Clone(usize),
    /// The processes of this set (a bit per process) are cut off from the others: what
    /// crosses the cut is lost until the heal. One process alone is isolated; a larger set is
    /// a minority (or, with an even count, a half) cut from the rest.
    Cut(u64),
    /// The cut ends.
    Heal,
    /// A stranger publishes the forger's message number `k` through a node's server.
    Forge(u64),
}

/// The processes in the set `side` (a bit per process), lowest first.
pub(crate) fn members(side: u64) -> impl Iterator<Item = usize> {
    (0..64).filter(move |p| (side >> p) & 1 == 1)
}

/// The state of the whole model.
#[derive(Debug, Clone)]
pub(crate) struct State {
    /// Ticks of true time so far.
    pub(crate) tick: u64,
    /// The processes.
    pub(crate) procs: Vec<Proc>,
    /// Messages in flight, in the order sent.
    pub(crate) msgs: Vec<Msg>,
    /// Faults injected so far.
    pub(crate) faults: u32,
    /// State files lost or rolled back so far.
    pub(crate) losses: u32,
    /// The processes cut off from the others (a bit per process), if any.
    pub(crate) cut: Option<u64>,
    /// The highest token claimed so far, and by which process and incarnation.
    top: Option<(u64, usize, u64)>,
    /// The first broken invariant.
    pub(crate) violation: Option<(Violation, String)>,
}

impl State {
    /// Every node started at true time zero as a brand-new cluster, node `i`'s clock running
    /// `ppm[i]` fast.
    pub(crate) fn start(setup: &Setup, ppm: &[i64]) -> State {
        let mut s = State {
            tick: 0,
            procs: ppm
                .iter()
                .enumerate()
                .map(|(node, ppm)| Proc {
                    node,
                    machine: None,
                    saves: Vec::new(),
                    save_nos: Vec::new(),
                    saved: 0,
                    starts: 0,
                    fire: 0,
                    ppm: *ppm,
                    claim: None,
                })
                .collect(),
            msgs: Vec::new(),
            faults: 0,
            losses: 0,
            cut: None,
            top: None,
            violation: None,
        };
        for p in 0..s.procs.len() {
            s.boot(setup, p, None, ClusterState::New);
        }
        s
    }

    /// The state's fingerprint: equal for states that behave the same from here on.
    pub(crate) fn fingerprint(&self) -> u64 {
        use std::hash::Hash;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.tick, self.faults, self.losses, self.cut, self.top).hash(&mut h);
        for p in &self.procs {
            (p.node, p.ppm, p.starts, p.fire, p.claim, &p.saves).hash(&mut h);
            match &p.machine {
                Some(m) => m.fingerprint(&mut h),
                None => h.write_u8(0),
            }
        }
        self.msgs.hash(&mut h);
        h.finish()
    }

    /// Carries out `step`.
    pub(crate) fn apply(&mut self, setup: &Setup, step: &Step) {
        match *step {
            Step::Advance => self.advance(setup),
            Step::Drop(k) => {
                self.msgs.remove(k);
                self.faults += 1;
            }
            Step::Delay(k) => {
                let mut m = self.msgs.remove(k);
                m.due += 1;
                self.msgs.push(m);
                self.faults += 1;
            }
            Step::Duplicate(k) => {
                let m = self.msgs[k].clone();
                self.msgs.push(m);
                self.faults += 1;
            }
            Step::Crash(p) => {
                self.crash(setup, p);
                self.faults += 1;
            }
            Step::Restart(p, how) => {
                let stored = match how {
                    Restart::Keep => self.procs[p].saves.last().cloned(),
                    Restart::Wipe => {
                        self.procs[p].saves.clear();
                        self.procs[p].save_nos.clear();
                        self.losses += 1;
                        None
                    }
                    Restart::Rollback(j) => {
                        self.procs[p].saves.truncate(j + 1);
                        self.procs[p].save_nos.truncate(j + 1);
                        self.losses += 1;
                        self.procs[p].saves.last().cloned()
                    }
                };
                self.boot(setup, p, stored, ClusterState::Existing);
            }
            Step::Clone(p) => {
                let mut c = self.procs[p].clone();
                c.machine = None;
                c.claim = None;
                self.procs.push(c);
                let q = self.procs.len() - 1;
                let stored = self.procs[q].saves.last().cloned();
                self.procs[q].starts = 0;
                self.boot(setup, q, stored, ClusterState::Existing);
                self.faults += 1;
            }
            Step::Cut(side) => {
                self.cut = Some(side);
                self.faults += 1;
            }
            Step::Heal => self.cut = None,
            Step::Forge(k) => {
                self.forge(setup, k);
                self.faults += 1;
            }
        }
    }

    /// A step's description, in the words of the state it is taken from.
    pub(crate) fn describe(&self, step: &Step) -> String {
        match *step {
            Step::Advance => "advance".into(),
            Step::Drop(k) => format!("drop {}", self.msgs[k]),
            Step::Delay(k) => format!("delay {}", self.msgs[k]),
            Step::Duplicate(k) => format!("duplicate {}", self.msgs[k]),
            Step::Crash(p) => format!("crash p{p}"),
            Step::Restart(p, Restart::Keep) => format!("restart p{p}"),
            Step::Restart(p, Restart::Wipe) => format!("restart p{p} with its file wiped"),
            Step::Restart(p, Restart::Rollback(j)) => format!("restart p{p} with its file rolled back to save {j}"),
            Step::Clone(p) => format!("clone p{p} (a second process with its id and a copy of its file)"),
            Step::Cut(side) if side.count_ones() == 1 => format!("isolate p{}", side.trailing_zeros()),
            Step::Cut(side) => {
                let ps: Vec<String> = members(side).map(|p| format!("p{p}")).collect();
                format!("cut {} from the rest", ps.join(" "))
            }
            Step::Heal => "heal".into(),
            Step::Forge(k) => format!("forge #{k}"),
        }
    }

    /// The scenario steps that do what `step` does from this state, naming nodes `ids`
    /// (none for time, which the scenario's clock carries); why not, for a step no scenario
    /// can name (a clone's: it shares its node's ID).
    pub(crate) fn scenario_steps(&self, ids: &[String], step: &Step) -> Result<Vec<ScenarioStep>, String> {
        let node = |p: usize| {
            ids.get(p)
                .cloned()
                .ok_or_else(|| format!("p{p} is a clone, which shares its node's ID: no scenario step names it"))
        };
        let message = |k: usize| -> Result<MessageAt, String> {
            let m = &self.msgs[k];
            let kind = m.body.kind();
            // Of the copies of this kind on this route, the how-manieth due (the simulator names
            // them in that order).
            let mut same: Vec<(u64, usize)> = (0..self.msgs.len())
                .filter(|j| {
                    let o = &self.msgs[*j];
                    (o.from, o.to, o.body.kind()) == (m.from, m.to, kind)
                })
                .map(|j| (self.msgs[j].due, j))
                .collect();
            same.sort();
            Ok(MessageAt {
                from: node(m.from)?,
                to: node(m.to)?,
                kind,
                nth: same.iter().position(|(_, j)| *j == k).unwrap_or(0),
            })
        };
        Ok(match *step {
            Step::Advance => Vec::new(),
            Step::Drop(k) => vec![ScenarioStep::DropMessage(message(k)?)],
            Step::Delay(k) => vec![ScenarioStep::DelayMessage(message(k)?)],
            Step::Duplicate(k) => vec![ScenarioStep::DuplicateMessage(message(k)?)],
            Step::Crash(p) => vec![ScenarioStep::Kill(node(p)?)],
            Step::Restart(p, Restart::Keep) => vec![ScenarioStep::Restart(node(p)?)],
            Step::Restart(p, Restart::Wipe) => vec![ScenarioStep::WipeState(node(p)?), ScenarioStep::Restart(node(p)?)],
            Step::Restart(p, Restart::Rollback(j)) => vec![
                ScenarioStep::RollbackState(RollbackAt {
                    node: node(p)?,
                    to: Some(self.procs[p].save_number(j) as usize),
                }),
                ScenarioStep::Restart(node(p)?),
            ],
            Step::Clone(p) => {
                return Err(format!(
                    "the clone of p{p} shares its ID: no scenario step names it apart"
                ))
            }
            Step::Cut(side) => {
                let cut = members(side).map(node).collect::<Result<Vec<_>, _>>()?;
                let rest: Vec<String> = ids.iter().filter(|id| !cut.contains(id)).cloned().collect();
                vec![ScenarioStep::Partition(vec![cut, rest])]
            }
            Step::Heal => vec![ScenarioStep::Heal],
            Step::Forge(k) => vec![ScenarioStep::Forge(k)],
        })
    }

    /// The forger's message `k`, as the simulator's stranger publishes it through a node's
    /// server: that node's agent has it at once, the others at the next boundary (not across a
    /// cut). What is not an election message every agent hears, or does not decode, reaches
    /// no one (a forged answer goes to an inbox no agent has).
    fn forge(&mut self, setup: &Setup, k: u64) {
        let ids: Vec<String> = (0..setup.cfgs.len()).map(|i| setup.cfgs[i].id.clone()).collect();
        let f = crate::forger::forge(k, &setup.cfgs[0].sys_member_prefix, &ids);
        let from = f.from % ids.len().max(1);
        let max = match setup.cfgs[0].max_message {
            0 => leasehold::wire::DEFAULT_MAX_MESSAGE,
            m => m,
        };
        let body = match MessageKind::of_subject(&f.subject) {
            Some(MessageKind::Heartbeat) => leasehold::wire::decode(&f.payload, max).ok().map(Body::Heartbeat),
            Some(MessageKind::Request) => leasehold::wire::decode(&f.payload, max).ok().map(Body::Request),
            Some(MessageKind::Release) => leasehold::wire::decode(&f.payload, max).ok().map(Body::Release),
            Some(MessageKind::Recover) => leasehold::wire::decode(&f.payload, max).ok().map(Body::Recover),
            _ => None,
        };
        let Some(body) = body else { return };
        let now = setup.fault_time(self.tick);
        let due = setup.due_after(now);
        for q in 0..self.procs.len() {
            let proc = &self.procs[q];
            if !proc.up() {
                continue;
            }
            let m = Msg {
                from: STRANGER,
                to: q,
                due,
                body: body.clone(),
            };
            if proc.node == from {
                self.deliver(setup, m, now);
            } else if !self.apart(q, from) {
                self.msgs.push(m);
            }
        }
    }

    /// Whether the cut separates processes `p` and `q`.
    pub(crate) fn apart(&self, p: usize, q: usize) -> bool {
        self.cut.is_some_and(|side| (side >> p) & 1 != (side >> q) & 1)
    }

    /// The processes holding a lease now.
    pub(crate) fn holders(&self, setup: &Setup) -> Vec<usize> {
        let now = setup.now(self.tick);
        (0..self.procs.len())
            .filter(|p| {
                let p = &self.procs[*p];
                p.machine.as_ref().is_some_and(|m| m.holds(p.local(now)))
            })
            .collect()
    }

    fn boot(&mut self, setup: &Setup, p: usize, stored: Option<Durable>, state: ClusterState) {
        // The cluster starts at true time zero; every later start is a fault's.
        let now = if state == ClusterState::New {
            0
        } else {
            setup.fault_time(self.tick)
        };
        let proc = &mut self.procs[p];
        let mut cfg = setup.cfgs[proc.node].clone();
        cfg.initial_cluster_state = state;
        proc.starts += 1;
        // As the simulator seeds node `i`'s incarnation `inc` in the run's seed (a clone, which
        // no scenario replays, by its process number).
        let seed = crate::seeds::agent_seed(
            setup.seed,
            if p < setup.cfgs.len() { proc.node } else { p + 1000 },
            proc.starts,
        );
        let (m, out) = Machine::start(&cfg, stored, proc.local(now), seed);
        proc.machine = Some(m);
        proc.arm(now);
        self.carry_out(setup, p, out, now);
    }

    fn crash(&mut self, setup: &Setup, p: usize) {
        let now = setup.fault_time(self.tick);
        let proc = &mut self.procs[p];
        proc.machine = None;
        if let Some(c) = &mut proc.claim {
            c.until = c.until.min(now);
        }
        self.msgs.retain(|m| m.to != p);
    }

    /// True time runs from just after this tick's faults to just after the next boundary:
    /// the messages due there arrive (just before it, in the order sent), and every timer due
    /// meanwhile fires, each when its process's clock reaches it, in true-time order.
    fn advance(&mut self, setup: &Setup) {
        self.tick += 1;
        let end = setup.fault_time(self.tick);
        // The messages due at this boundary arrive in the order sent, the k-th at its slot;
        // timers firing before them may still send some (the list is read afresh each time).
        let mut k = 0;
        loop {
            let timer = (0..self.procs.len())
                .filter(|p| self.procs[*p].up())
                .map(|p| (self.procs[p].fire, p))
                .filter(|(t, _)| *t < end)
                .min();
            let next = self.msgs.iter().position(|m| m.due <= self.tick);
            let arrival = next.map(|_| setup.arrival(self.tick, k));
            match (timer, next) {
                (Some((t, p)), _) if arrival.is_none_or(|a| t < a) => self.fire(setup, p, t),
                (_, Some(j)) => {
                    let m = self.msgs.remove(j);
                    self.deliver(setup, m, setup.arrival(self.tick, k));
                    k += 1;
                }
                _ => break,
            }
        }
    }

    /// Process `p`'s timer fires at true time `now`.
    fn fire(&mut self, setup: &Setup, p: usize, now: u128) {
        let proc = &mut self.procs[p];
        let (local, origin) = (proc.local(now), proc.local(0));
        let Some(machine) = proc.machine.as_mut() else { return };
        let out = if local >= machine.next_wakeup() {
            machine.tick(local, origin)
        } else {
            Vec::new()
        };
        // The driver sleeps anew after every wake-up.
        proc.arm(now);
        self.carry_out(setup, p, out, now);
    }

    fn deliver(&mut self, setup: &Setup, m: Msg, now: u128) {
        let proc = &mut self.procs[m.to];
        let local = proc.local(now);
        let Some(machine) = proc.machine.as_mut() else { return };
        let before = machine.next_wakeup();
        let inbox = format!("p{}", m.from);
        let out = machine.on(local, m.body, inbox);
        // The driver keeps its sleep while the wake-up stays where it was.
        if machine.next_wakeup() != before {
            proc.arm(now);
        }
        self.carry_out(setup, m.to, out, now);
    }

    /// Carries out process `p`'s outputs at true time `now`, in order: what it sends arrives
    /// at the next boundary (a copy it hears itself, at once).
    fn carry_out(&mut self, setup: &Setup, p: usize, out: Vec<Output>, now: u128) {
        let due = setup.due_after(now);
        for o in out {
            match o {
                Output::Persist(d) => {
                    let proc = &mut self.procs[p];
                    proc.saves.push(d);
                    proc.save_nos.push(proc.saved);
                    proc.saved += 1;
                    if proc.saves.len() > SAVES_KEPT {
                        proc.saves.remove(0);
                        proc.save_nos.remove(0);
                    }
                }
                Output::Publish(pb) => {
                    if let Some(own) = self.publish(p, pb, due) {
                        self.deliver(setup, own, now);
                    }
                }
                Output::Notice(n) => self.notice(p, n),
            }
        }
    }

    /// Sends what `p` publishes to every process it reaches: not across a cut (decided as it
    /// is sent, as NATS routes do), not to a process that is down (its server has no interest).
    /// Returns the copy `p` hears itself, if it listens on that subject (an `allcall` agent
    /// hears every allcall and answer, its own through its own server at once, as in the
    /// simulator; a `lease` agent ignores its own, which the model does not send).
    fn publish(&mut self, p: usize, pb: Publish, due: u64) -> Option<Msg> {
        let reach: Vec<bool> = (0..self.procs.len())
            // (A process not started yet starts in this same first instant.)
            .map(|q| {
                let proc = &self.procs[q];
                q != p && (proc.up() || proc.starts == 0) && !self.apart(p, q)
            })
            .collect();
        let to_all = |body: Body, msgs: &mut Vec<Msg>| {
            msgs.extend((0..reach.len()).filter(|q| reach[*q]).map(|to| Msg {
                from: p,
                to,
                due,
                body: body.clone(),
            }))
        };
        let to_one = |to: &str| {
            to.strip_prefix('p')
                .and_then(|i| i.parse::<usize>().ok())
                .filter(|q| reach.get(*q).copied().unwrap_or(false))
        };
        match pb {
            Publish::Heartbeat(hb) => to_all(Body::Heartbeat(hb), &mut self.msgs),
            Publish::Request(r) => to_all(Body::Request(r), &mut self.msgs),
            Publish::Release(r) => to_all(Body::Release(r), &mut self.msgs),
            Publish::Recover(r) => to_all(Body::Recover(r), &mut self.msgs),
            Publish::Reply { to, reply } => {
                if let Some(to) = to_one(&to) {
                    self.msgs.push(Msg {
                        from: p,
                        to,
                        due,
                        body: Body::Reply(reply),
                    });
                }
            }
            Publish::Recovered { to, answer } => {
                if let Some(to) = to_one(&to) {
                    self.msgs.push(Msg {
                        from: p,
                        to,
                        due,
                        body: Body::Recovered(answer),
                    });
                }
            }
            // Every agent hears these, the sender too.
            Publish::Allcall(loc) => {
                let body = Body::Allcall(loc);
                to_all(body.clone(), &mut self.msgs);
                return Some(Msg {
                    from: p,
                    to: p,
                    due,
                    body,
                });
            }
            Publish::Pong { to, loc } if to == ALLREPLY => {
                let body = Body::Allreply(loc);
                to_all(body.clone(), &mut self.msgs);
                return Some(Msg {
                    from: p,
                    to: p,
                    due,
                    body,
                });
            }
            // Membership reports change nothing an agent decides.
            Publish::Report(..) | Publish::Pong { .. } => {}
        }
        None
    }

    /// Judges a claim as it is made: no two processes' claims overlap in true time, and a
    /// new lease's token is above every token claimed before.
    fn notice(&mut self, p: usize, n: Notice) {
        let proc = &self.procs[p];
        let inc = proc.machine.as_ref().map_or(0, |m| m.inc(proc.starts));
        match n {
            Notice::Claim { token, from, until } => {
                let (from, until) = (proc.true_at(from), proc.true_at(until));
                let renewal = proc
                    .claim
                    .filter(|c| c.inc == inc && c.token == token && c.until >= from);
                let claim = match renewal {
                    Some(c) => Claim { until, ..c },
                    None => Claim {
                        inc,
                        token,
                        from,
                        until,
                    },
                };
                for (q, other) in self.procs.iter().enumerate().filter(|(q, _)| *q != p) {
                    if let Some(c) = other.claim.filter(|c| c.from < claim.until && claim.from < c.until) {
                        self.violation.get_or_insert((
                            Violation::Overlap,
                            format!(
                                "two holders: p{p} (token {:?}, {}..{}) and p{q} (token {:?}, {}..{}), true ns",
                                claim.token, claim.from, claim.until, c.token, c.from, c.until
                            ),
                        ));
                    }
                }
                if let (None, Some(t)) = (renewal, token) {
                    match self.top {
                        Some((top, q, qinc)) if t < top || (t == top && (q, qinc) != (p, inc)) => {
                            self.violation.get_or_insert((
                                Violation::TokenOrder,
                                format!("token {t} claimed by p{p} after token {top} was claimed by p{q}"),
                            ));
                        }
                        _ => self.top = Some((t, p, inc)),
                    }
                }
                self.procs[p].claim = Some(claim);
            }
            Notice::ClaimEnded { at } => {
                let end = proc.true_at(at);
                if let Some(c) = &mut self.procs[p].claim {
                    c.until = c.until.min(end);
                }
            }
            _ => {}
        }
    }
}
