//! Fault actions: what the nemesis and the scripted timeline do to a running cluster, by
//! node index. A scenario's [`Step`] (by node ID) becomes an [`Action`] here, and an applied
//! action becomes a step again when a run is written back as a scenario (shrinking).
//!
//! The vocabulary of faults, in one folder: the actions and their steps (here), their trace
//! text (`words.rs`), what they have done to the cluster ([`state`]), and how one is carried out
//! ([`target`]): resolved once, by [`Resolver`], against a [`FaultTarget`], the simulated world
//! or the real cluster.

pub mod state;
pub mod target;
mod words;

pub use state::FaultState;
pub use target::{FaultTarget, Resolver};

use crate::scenario::{
    ClockStepAt, CongestAt, DriftAt, Dur, DurRange, LagAt, MessageAt, MessageFault, MessageKind, PreemptAt, ReplayAt,
    ResizeAt, RollbackAt, Step, SuspendAt,
};
use std::time::Duration;

/// One fault action.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Cut routes between groups of node indices.
    Partition {
        /// The groups.
        groups: Vec<Vec<usize>>,
        /// What shape it is, for the trace.
        label: &'static str,
    },
    /// Cut the current leader off from everyone (resolved when applied; `fallback` if none).
    IsolateLeader {
        /// Node isolated when no node holds a lease.
        fallback: usize,
    },
    /// Two halves joined only through `bridge`.
    Bridge {
        /// One side.
        a: Vec<usize>,
        /// The other side.
        b: Vec<usize>,
        /// The node that hears both.
        bridge: usize,
    },
    /// Cut exactly these directed routes (replacing the cuts in force).
    Cut(Vec<(usize, usize)>),
    /// Cut routes from `from` to `to` only.
    OneWay {
        /// Senders whose messages are lost.
        from: Vec<usize>,
        /// Receivers that do not get them.
        to: Vec<usize>,
    },
    /// Restore every route.
    Heal,
    /// Kill a node (memory lost).
    Kill(usize),
    /// Start a killed node again.
    Restart(usize),
    /// Pause a node's process (its clocks keep running).
    Pause(usize),
    /// Resume a paused node.
    Resume(usize),
    /// Stop a node's agent gracefully (a leader releases its lease), then take the node down;
    /// [`Action::Restart`] starts it again.
    Stop(usize),
    /// Suspend a node's host: its process stops, and so does its `CLOCK_MONOTONIC`; true
    /// time, its wall clock and its `CLOCK_BOOTTIME` run on.
    Suspend(usize),
    /// Wake a suspended node.
    Wake(usize),
    /// Step a node's wall clock by this many ns (negative: back).
    ClockStep(usize, i128),
    /// Set a node's drift rate (ppm).
    Drift(usize, i64),
    /// Set route loss.
    Loss(f64),
    /// Set route latency.
    Latency(DurRange),
    /// Delete a down node's durable state.
    WipeState(usize),
    /// Restore a down node's durable state to save number `to` (`None`: drawn when applied).
    RollbackState(usize, Option<usize>),
    /// Make a down node's durable state unreadable.
    CorruptState(usize),
    /// Start a second agent with a node's identity and a copy of its state, on its host.
    Clone(usize),
    /// Freeze a node: its process and every clock stop (true time runs on) until
    /// [`Action::Wake`].
    Freeze(usize),
    /// Kill a node (if up) and lose its state: wiped if `wipe`, else rolled back to an
    /// earlier save chosen by `pick`. Resolved when applied into its kill and its state change.
    StateLoss {
        /// Which node.
        node: usize,
        /// Wipe rather than roll back.
        wipe: bool,
        /// Chooses the save to roll back to.
        pick: u64,
    },
    /// Deliver again what a node published in the last `window` (a reconnect flush).
    Replay(usize, Duration),
    /// Start (`true`) or stop dropping every message to a node (a slow consumer).
    SlowConsumer(usize, bool),
    /// A stranger publishes hostile message number `pick`.
    Forge(u64),
    /// Stall a node's next composed clock read for this long between two of its kernel clock
    /// reads (a preemption or a GC pause in the middle of the read).
    Preempt(usize, Duration),
    /// Hand a node's publishes over this late, in order (a full client buffer draining);
    /// `None`: at once again.
    Congest(usize, Option<Duration>),
    /// Every message to and from a node's host takes this much longer, each way, in order (a
    /// slow link); `None`: as fast as the others' again.
    Lag(usize, Option<Duration>),
    /// A node's application resigns the lease.
    Resign(usize),
    /// A node's configured `cluster_size` becomes this, from its next start.
    Resize(usize, usize),
    /// A node's application campaigns again.
    Campaign(usize),
    /// A node's NATS server goes down (`true`) while its agent runs, or comes back.
    ServerDown(usize, bool),
    /// A node's connection to its server freezes (`true`) or thaws.
    FreezeConnection(usize, bool),
    /// One election message in flight is lost, delayed a tick or duplicated (quantised time).
    Message {
        /// What happens to it.
        fault: MessageFault,
        /// Its sender.
        from: usize,
        /// Its receiver.
        to: usize,
        /// What it is.
        kind: MessageKind,
        /// Which of those copies, in the order they are due.
        nth: usize,
    },
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultEvent {
    /// True simulated time.
    pub at: Duration,
    /// What happens.
    pub action: Action,
    /// From `[[at]]` rather than the random nemesis.
    pub scripted: bool,
}

impl Action {
    /// The action of a scripted step; `index` maps a node ID to its index.
    pub fn from_step(step: &Step, index: impl Fn(&str) -> usize) -> Action {
        match step {
            Step::Partition(groups) => Action::Partition {
                groups: groups.iter().map(|g| g.iter().map(|id| index(id)).collect()).collect(),
                label: "scripted",
            },
            Step::OneWay(a, b) => Action::OneWay {
                from: vec![index(a)],
                to: vec![index(b)],
            },
            Step::IsolateLeader(id) => Action::IsolateLeader { fallback: index(id) },
            Step::Cut(links) => Action::Cut(links.iter().map(|(a, b)| (index(a), index(b))).collect()),
            Step::Loss(l) => Action::Loss(*l),
            Step::Latency(r) => Action::Latency(*r),
            Step::Heal => Action::Heal,
            Step::Kill(id) => Action::Kill(index(id)),
            Step::Restart(id) => Action::Restart(index(id)),
            Step::Pause(id) => Action::Pause(index(id)),
            Step::Resume(id) => Action::Resume(index(id)),
            Step::Stop(id) => Action::Stop(index(id)),
            Step::Suspend(s) => Action::Suspend(index(&s.node)),
            Step::Wake(id) => Action::Wake(index(id)),
            Step::ClockStep(c) => {
                let by = c.by.0.as_nanos() as i128;
                Action::ClockStep(index(&c.node), if c.back { -by } else { by })
            }
            Step::Drift(d) => Action::Drift(index(&d.node), d.ppm),
            Step::WipeState(id) => Action::WipeState(index(id)),
            Step::RollbackState(r) => Action::RollbackState(index(&r.node), r.to),
            Step::CorruptState(id) => Action::CorruptState(index(id)),
            Step::Clone(id) => Action::Clone(index(id)),
            Step::Freeze(f) => Action::Freeze(index(&f.node)),
            Step::Replay(r) => Action::Replay(index(&r.node), r.window.0),
            Step::SlowConsumer(id) => Action::SlowConsumer(index(id), true),
            Step::FastConsumer(id) => Action::SlowConsumer(index(id), false),
            Step::Forge(p) => Action::Forge(*p),
            Step::Preempt(p) => Action::Preempt(index(&p.node), p.by.0),
            Step::Congest(c) => Action::Congest(index(&c.node), Some(c.delay.0)),
            Step::Uncongest(id) => Action::Congest(index(id), None),
            Step::Lag(l) => Action::Lag(index(&l.node), Some(l.latency.0)),
            Step::Unlag(id) => Action::Lag(index(id), None),
            Step::Resign(id) => Action::Resign(index(id)),
            Step::Campaign(id) => Action::Campaign(index(id)),
            Step::ServerDown(id) => Action::ServerDown(index(id), true),
            Step::ServerUp(id) => Action::ServerDown(index(id), false),
            Step::FreezeConnection(f) => Action::FreezeConnection(index(&f.node), true),
            Step::ThawConnection(id) => Action::FreezeConnection(index(id), false),
            Step::Resize(r) => Action::Resize(index(&r.node), r.cluster_size),
            Step::DropMessage(m) => message(MessageFault::Drop, m, &index),
            Step::DelayMessage(m) => message(MessageFault::Delay, m, &index),
            Step::DuplicateMessage(m) => message(MessageFault::Duplicate, m, &index),
        }
    }

    /// The scripted step of a resolved action (as applied: partitions are exact cuts);
    /// `id` maps a node index to its ID. `None` for the unresolved shapes only the random
    /// nemesis draws (a bridge, a one-way cut between groups, a state loss).
    pub fn to_step(&self, id: impl Fn(usize) -> String) -> Option<Step> {
        Some(match self {
            Action::Cut(links) if links.is_empty() => Step::Heal,
            Action::Cut(links) => Step::Cut(links.iter().map(|(a, b)| (id(*a), id(*b))).collect()),
            Action::Heal => Step::Heal,
            Action::Kill(i) => Step::Kill(id(*i)),
            Action::Restart(i) => Step::Restart(id(*i)),
            Action::Pause(i) => Step::Pause(id(*i)),
            Action::Resume(i) => Step::Resume(id(*i)),
            Action::Stop(i) => Step::Stop(id(*i)),
            Action::Suspend(i) => Step::Suspend(SuspendAt {
                node: id(*i),
                lasts: None,
            }),
            Action::Wake(i) => Step::Wake(id(*i)),
            Action::ClockStep(i, by) => Step::ClockStep(ClockStepAt {
                node: id(*i),
                by: Dur(Duration::from_nanos(by.unsigned_abs() as u64)),
                back: *by < 0,
            }),
            Action::Drift(i, ppm) => Step::Drift(DriftAt {
                node: id(*i),
                ppm: *ppm,
            }),
            Action::Loss(l) => Step::Loss(*l),
            Action::Latency(r) => Step::Latency(*r),
            Action::WipeState(i) => Step::WipeState(id(*i)),
            Action::RollbackState(i, to) => Step::RollbackState(RollbackAt { node: id(*i), to: *to }),
            Action::CorruptState(i) => Step::CorruptState(id(*i)),
            Action::Clone(i) => Step::Clone(id(*i)),
            // A freeze's length is its wake-up, a step of its own.
            Action::Freeze(i) => Step::Freeze(SuspendAt {
                node: id(*i),
                lasts: None,
            }),
            Action::Replay(i, w) => Step::Replay(ReplayAt {
                node: id(*i),
                window: Dur(*w),
            }),
            Action::SlowConsumer(i, true) => Step::SlowConsumer(id(*i)),
            Action::SlowConsumer(i, false) => Step::FastConsumer(id(*i)),
            Action::Forge(p) => Step::Forge(*p),
            Action::Preempt(i, by) => Step::Preempt(PreemptAt {
                node: id(*i),
                by: Dur(*by),
            }),
            // A congestion's length is its end, a step of its own.
            Action::Congest(i, Some(d)) => Step::Congest(CongestAt {
                node: id(*i),
                delay: Dur(*d),
                lasts: None,
            }),
            Action::Congest(i, None) => Step::Uncongest(id(*i)),
            // So is a slow link's.
            Action::Lag(i, Some(d)) => Step::Lag(LagAt {
                node: id(*i),
                latency: Dur(*d),
                lasts: None,
            }),
            Action::Lag(i, None) => Step::Unlag(id(*i)),
            Action::Resign(i) => Step::Resign(id(*i)),
            Action::Campaign(i) => Step::Campaign(id(*i)),
            Action::ServerDown(i, true) => Step::ServerDown(id(*i)),
            Action::ServerDown(i, false) => Step::ServerUp(id(*i)),
            // A freeze's length is its thaw, a step of its own.
            Action::FreezeConnection(i, true) => Step::FreezeConnection(SuspendAt {
                node: id(*i),
                lasts: None,
            }),
            Action::FreezeConnection(i, false) => Step::ThawConnection(id(*i)),
            Action::Resize(i, size) => Step::Resize(ResizeAt {
                node: id(*i),
                cluster_size: *size,
            }),
            Action::Message { .. } => return self.message_step(&id),
            Action::Partition { groups, .. } => {
                Step::Partition(groups.iter().map(|g| g.iter().map(|i| id(*i)).collect()).collect())
            }
            Action::OneWay { from, to } if from.len() == 1 && to.len() == 1 => Step::OneWay(id(from[0]), id(to[0])),
            Action::IsolateLeader { fallback } => Step::IsolateLeader(id(*fallback)),
            Action::Bridge { .. } | Action::OneWay { .. } | Action::StateLoss { .. } => return None,
        })
    }

    /// Whether `later` ends the episode this action began: a kill, stop or state loss by its
    /// restart, a pause by its resume, a suspension or freeze by its wake, a slow consumer,
    /// congestion, slow link, server outage or frozen connection by its end, a resign by the campaign
    /// after it, a cut by its heal, a loss or latency spike by the return to the scenario's
    /// `base_loss` / `base_latency`.
    pub fn closed_by(&self, later: &Action, base_loss: f64, base_latency: DurRange) -> bool {
        match (self, later) {
            (Action::Kill(x) | Action::Stop(x), Action::Restart(y))
            | (Action::Pause(x), Action::Resume(y))
            | (Action::Suspend(x) | Action::Freeze(x), Action::Wake(y)) => x == y,
            (Action::SlowConsumer(x, true), Action::SlowConsumer(y, false)) => x == y,
            (Action::Congest(x, Some(_)), Action::Congest(y, None)) => x == y,
            (Action::Lag(x, Some(_)), Action::Lag(y, None)) => x == y,
            (Action::ServerDown(x, true), Action::ServerDown(y, false)) => x == y,
            (Action::FreezeConnection(x, true), Action::FreezeConnection(y, false)) => x == y,
            (Action::Resign(x), Action::Campaign(y)) => x == y,
            (Action::Cut(l), Action::Heal | Action::Cut(_)) => !l.is_empty(),
            (Action::Loss(l), Action::Loss(m)) => *l != base_loss && *m == base_loss,
            (Action::Latency(l), Action::Latency(m)) => *l != base_latency && *m == base_latency,
            _ => false,
        }
    }

    /// The one node this action is about, if any (cuts are about links, not nodes).
    pub fn node(&self) -> Option<usize> {
        match self {
            Action::Kill(i)
            | Action::Restart(i)
            | Action::Pause(i)
            | Action::Resume(i)
            | Action::Stop(i)
            | Action::Suspend(i)
            | Action::Wake(i)
            | Action::ClockStep(i, _)
            | Action::Drift(i, _)
            | Action::WipeState(i)
            | Action::RollbackState(i, _)
            | Action::CorruptState(i)
            | Action::Clone(i)
            | Action::Freeze(i)
            | Action::Replay(i, _)
            | Action::SlowConsumer(i, _)
            | Action::Preempt(i, _)
            | Action::Congest(i, _)
            | Action::Lag(i, _)
            | Action::Resign(i)
            | Action::Resize(i, _)
            | Action::Campaign(i)
            | Action::ServerDown(i, _)
            | Action::FreezeConnection(i, _) => Some(*i),
            Action::StateLoss { node, .. } => Some(*node),
            _ => None,
        }
    }
}

fn message(fault: MessageFault, m: &MessageAt, index: &impl Fn(&str) -> usize) -> Action {
    Action::Message {
        fault,
        from: index(&m.from),
        to: index(&m.to),
        kind: m.kind,
        nth: m.nth,
    }
}

impl Action {
    /// The scripted step of a targeted message fault (`None` for any other action).
    fn message_step(&self, id: &dyn Fn(usize) -> String) -> Option<Step> {
        let Action::Message {
            fault,
            from,
            to,
            kind,
            nth,
        } = self
        else {
            return None;
        };
        let m = MessageAt {
            from: id(*from),
            to: id(*to),
            kind: *kind,
            nth: *nth,
        };
        Some(match fault {
            MessageFault::Drop => Step::DropMessage(m),
            MessageFault::Delay => Step::DelayMessage(m),
            MessageFault::Duplicate => Step::DuplicateMessage(m),
        })
    }
}
