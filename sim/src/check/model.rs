//! The model the checker explores: a few processes, each running the production
//! [`LeaseElection`] (cloned at every branch, never re-implemented), their state files with
//! earlier saves, their monotonic clocks as exact functions of true time, and the messages in
//! flight. True time moves in ticks; a message sent during a tick is delivered at the next one
//! unless a fault drops, delays or duplicates it, and a process's timer fires at the first tick
//! at which its clock has reached it. Claims are judged as they are made, in true time.

use leasehold::election::{LeaseElection, Notice, Output, Publish};
use leasehold::wire::{Heartbeat, LeaseRecover, LeaseRecovered, LeaseRelease, LeaseReply, LeaseRequest};
use leasehold::{ClusterState, Durable, MembershipCfg};
use std::fmt;
use std::hash::Hasher;
use std::time::Duration;

/// Saves kept per process, for rollbacks (the latest and the ones before it).
const SAVES_KEPT: usize = 3;

/// What stays fixed while the checker explores.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    /// Each node's configuration (IDs `n0`, `n1`, …; rank = index).
    pub(crate) cfgs: Vec<MembershipCfg>,
    /// True time per tick (ns).
    pub(crate) tick_ns: u64,
}

impl Setup {
    fn now(&self, tick: u64) -> u128 {
        u128::from(tick) * u128::from(self.tick_ns)
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
    machine: Option<LeaseElection>,
    saves: Vec<Durable>,
    starts: u64,
    /// Its clock's rate error (ppm): its monotonic clock reads `true × (1 + ppm/10⁶)`.
    pub(crate) ppm: i64,
    claim: Option<Claim>,
}

impl Proc {
    fn local(&self, true_ns: u128) -> Duration {
        let ns = true_ns as i128 * (1_000_000 + i128::from(self.ppm)) / 1_000_000;
        Duration::from_nanos(u64::try_from(ns.max(0)).unwrap_or(u64::MAX))
    }

    /// The earliest true time at which the clock reads `local`.
    fn true_at(&self, local: Duration) -> u128 {
        let rate = 1_000_000 + i128::from(self.ppm);
        let l = local.as_nanos() as i128;
        ((l * 1_000_000 + rate - 1).div_euclid(rate)).max(0) as u128
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

/// A message's content.
#[derive(Debug, Clone, Hash)]
pub(crate) enum Body {
    Heartbeat(Heartbeat),
    Request(LeaseRequest),
    Reply(LeaseReply),
    Release(LeaseRelease),
    Recover(LeaseRecover),
    Recovered(LeaseRecovered),
}

impl Body {
    fn kind(&self) -> &'static str {
        match self {
            Body::Heartbeat(_) => "heartbeat",
            Body::Request(_) => "request",
            Body::Reply(_) => "reply",
            Body::Release(_) => "release",
            Body::Recover(_) => "recover",
            Body::Recovered(_) => "recovered",
        }
    }
}

/// A message in flight from one process to another, due at a tick.
#[derive(Debug, Clone, Hash)]
pub(crate) struct Msg {
    from: usize,
    to: usize,
    due: u64,
    body: Body,
}

impl Msg {
    /// Whether it is a heartbeat (lost only with its sender's or receiver's partition: one
    /// lost beat is within what the member timeout of three beats tolerates).
    pub(crate) fn is_heartbeat(&self) -> bool {
        matches!(self.body, Body::Heartbeat(_))
    }
}

impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} p{}->p{}", self.body.kind(), self.from, self.to)
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
    /// Process `p` is cut off: what it sends and what is sent to it is lost until the heal.
    Isolate(usize),
    /// The cut ends.
    Heal,
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
    /// The process cut off, if any.
    pub(crate) isolated: Option<usize>,
    /// The highest token claimed so far, and by which process and incarnation.
    top: Option<(u64, usize, u64)>,
    /// The first broken invariant.
    pub(crate) violation: Option<String>,
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
                    starts: 0,
                    ppm: *ppm,
                    claim: None,
                })
                .collect(),
            msgs: Vec::new(),
            faults: 0,
            losses: 0,
            isolated: None,
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
        (self.tick, self.faults, self.losses, self.isolated, self.top).hash(&mut h);
        for p in &self.procs {
            (p.node, p.ppm, p.starts, p.claim, &p.saves).hash(&mut h);
            match &p.machine {
                Some(m) => {
                    h.write_u8(1);
                    m.fingerprint(&mut h);
                }
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
                        self.losses += 1;
                        None
                    }
                    Restart::Rollback(j) => {
                        self.procs[p].saves.truncate(j + 1);
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
                self.boot(setup, q, stored, ClusterState::Existing);
                self.faults += 1;
            }
            Step::Isolate(p) => {
                self.isolated = Some(p);
                self.faults += 1;
            }
            Step::Heal => self.isolated = None,
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
            Step::Isolate(p) => format!("isolate p{p}"),
            Step::Heal => "heal".into(),
        }
    }

    /// The processes holding a lease now.
    pub(crate) fn holders(&self, setup: &Setup) -> Vec<usize> {
        let now = setup.now(self.tick);
        (0..self.procs.len())
            .filter(|p| {
                let p = &self.procs[*p];
                p.machine.as_ref().is_some_and(|m| m.held(p.local(now)).is_some())
            })
            .collect()
    }

    fn boot(&mut self, setup: &Setup, p: usize, stored: Option<Durable>, state: ClusterState) {
        let now = setup.now(self.tick);
        let proc = &mut self.procs[p];
        let mut cfg = setup.cfgs[proc.node].clone();
        cfg.initial_cluster_state = state;
        proc.starts += 1;
        let seed = (p as u64) << 32 | proc.starts;
        let (m, out) = LeaseElection::new(&cfg, stored, proc.local(now), seed);
        proc.machine = Some(m);
        self.carry_out(p, out);
    }

    fn crash(&mut self, setup: &Setup, p: usize) {
        let now = setup.now(self.tick);
        let proc = &mut self.procs[p];
        proc.machine = None;
        if let Some(c) = &mut proc.claim {
            c.until = c.until.min(now);
        }
        self.msgs.retain(|m| m.to != p);
    }

    fn advance(&mut self, setup: &Setup) {
        self.tick += 1;
        let due: Vec<Msg> = {
            let (due, later) = std::mem::take(&mut self.msgs)
                .into_iter()
                .partition(|m| m.due <= self.tick);
            self.msgs = later;
            due
        };
        for m in due {
            self.deliver(setup, m);
        }
        let now = setup.now(self.tick);
        for p in 0..self.procs.len() {
            let proc = &mut self.procs[p];
            let local = proc.local(now);
            let Some(machine) = proc.machine.as_mut() else { continue };
            if local >= machine.next_wakeup() {
                let out = machine.tick(local);
                self.carry_out(p, out);
            }
        }
    }

    fn deliver(&mut self, setup: &Setup, m: Msg) {
        if self.isolated.is_some_and(|p| p == m.from || p == m.to) {
            return;
        }
        let now = setup.now(self.tick);
        let proc = &mut self.procs[m.to];
        let local = proc.local(now);
        let Some(machine) = proc.machine.as_mut() else { return };
        let inbox = format!("p{}", m.from);
        let out = match m.body {
            Body::Heartbeat(hb) => machine.on_heartbeat(local, &hb),
            Body::Request(r) => machine.on_request(local, r, inbox),
            Body::Reply(r) => machine.on_reply(local, r),
            Body::Release(r) => machine.on_release(local, r),
            Body::Recover(r) => machine.on_recover(local, r, inbox),
            Body::Recovered(a) => machine.on_recovered(local, a),
        };
        self.carry_out(m.to, out);
    }

    /// Carries out process `p`'s outputs, in order.
    fn carry_out(&mut self, p: usize, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Persist(d) => {
                    let saves = &mut self.procs[p].saves;
                    saves.push(d);
                    if saves.len() > SAVES_KEPT {
                        saves.remove(0);
                    }
                }
                Output::Publish(pb) => self.publish(p, pb),
                Output::Notice(n) => self.notice(p, n),
            }
        }
    }

    fn publish(&mut self, p: usize, pb: Publish) {
        let due = self.tick + 1;
        let to_all = |body: Body, msgs: &mut Vec<Msg>, n: usize| {
            msgs.extend((0..n).filter(|q| *q != p).map(|to| Msg {
                from: p,
                to,
                due,
                body: body.clone(),
            }))
        };
        let n = self.procs.len();
        let to_one = |to: &str| to.strip_prefix('p').and_then(|i| i.parse::<usize>().ok());
        match pb {
            Publish::Heartbeat(hb) => to_all(Body::Heartbeat(hb), &mut self.msgs, n),
            Publish::Request(r) => to_all(Body::Request(r), &mut self.msgs, n),
            Publish::Release(r) => to_all(Body::Release(r), &mut self.msgs, n),
            Publish::Recover(r) => to_all(Body::Recover(r), &mut self.msgs, n),
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
            // Membership reports and allcall messages change nothing a lease agent decides.
            Publish::Report(..) | Publish::Allcall(_) | Publish::Pong { .. } => {}
        }
    }

    /// Judges a claim as it is made: no two processes' claims overlap in true time, and a
    /// new lease's token is above every token claimed before.
    fn notice(&mut self, p: usize, n: Notice) {
        let proc = &self.procs[p];
        let inc = proc.machine.as_ref().map_or(0, |m| m.me().inc);
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
                        self.violation.get_or_insert(format!(
                            "two holders: p{p} (token {:?}, {}..{}) and p{q} (token {:?}, {}..{}), true ns",
                            claim.token, claim.from, claim.until, c.token, c.from, c.until
                        ));
                    }
                }
                if let (None, Some(t)) = (renewal, token) {
                    match self.top {
                        Some((top, q, qinc)) if t < top || (t == top && (q, qinc) != (p, inc)) => {
                            self.violation.get_or_insert(format!(
                                "token {t} claimed by p{p} after token {top} was claimed by p{q}"
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
