//! Carrying out a fault action, once for both worlds. The [`Resolver`] decides what an action
//! does (whether it takes effect, how a state loss splits into a kill and a state change, which
//! save a rollback restores, what the stranger forges, which routes a partition cuts) and asks a
//! [`FaultTarget`] to do each part: the simulated world (`crate::world`) or the real cluster
//! (`crate::real`). What a target cannot do, it says once, in [`FaultTarget::cannot`].

use super::{Action, FaultState};
use crate::scenario::{DurRange, MessageFault, MessageKind};
use crate::seeds::mix;
use crate::topology::Topology;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// What fault actions are carried out on: one method per kind of change, by node index.
/// The [`Resolver`] calls them only for actions that take effect, and never for an action
/// that [`FaultTarget::cannot`] refuses.
pub trait FaultTarget {
    /// Why this target cannot carry out `a` (`None`: it can). The simulated world can do
    /// everything; real mode says here what it cannot, and a scenario that needs it is skipped
    /// with this reason.
    fn cannot(a: &Action) -> Option<&'static str>
    where
        Self: Sized,
    {
        let _ = a;
        None
    }
    /// Records a line in the run's trace (`node`: the node it is about).
    fn note(&mut self, node: Option<usize>, what: String);
    /// Kills node `i` (its process dies, its memory is lost).
    fn kill(&mut self, i: usize);
    /// Starts killed node `i` again.
    fn restart(&mut self, i: usize) -> Result<(), String>;
    /// Pauses (`true`) or resumes node `i`'s process; its clocks run on.
    fn pause(&mut self, i: usize, paused: bool);
    /// Stops node `i`'s agent gracefully, then takes the node down.
    fn stop(&mut self, i: usize);
    /// Suspends node `i`'s host (its process and `CLOCK_MONOTONIC` stop).
    fn suspend(&mut self, i: usize);
    /// Freezes node `i` (its process and every clock stop).
    fn freeze(&mut self, i: usize);
    /// Wakes a suspended or frozen node `i`.
    fn wake(&mut self, i: usize);
    /// Steps node `i`'s wall clock by `by` ns.
    fn step_wall(&mut self, i: usize, by: i128);
    /// Sets node `i`'s clock rate error.
    fn drift(&mut self, i: usize, ppm: i64);
    /// Sets every route's loss.
    fn set_loss(&mut self, loss: f64);
    /// Sets every route's latency.
    fn set_latency(&mut self, latency: DurRange);
    /// Changes the routes (`change` cuts or heals them on the target's topology) and returns
    /// every directed route cut afterwards.
    fn routes(&mut self, change: &mut dyn FnMut(&mut Topology)) -> Vec<(usize, usize)>;
    /// How many times node `i` has saved its state.
    fn saves(&self, i: usize) -> usize;
    /// Deletes down node `i`'s state.
    fn wipe(&mut self, i: usize);
    /// Makes down node `i`'s state unreadable.
    fn corrupt(&mut self, i: usize);
    /// Restores down node `i`'s state to save number `to`.
    fn rollback(&mut self, i: usize, to: usize);
    /// Starts a second agent with node `i`'s identity and a copy of its state.
    fn clone_agent(&mut self, i: usize);
    /// Delivers again what node `i` published in the last `window`.
    fn replay(&mut self, i: usize, window: Duration);
    /// Starts (`true`) or stops dropping every message to node `i`.
    fn slow_consumer(&mut self, i: usize, slow: bool);
    /// Stalls node `i`'s next clock read.
    fn preempt(&mut self, i: usize, by: Duration);
    /// Hands node `i`'s publishes over this late (`None`: at once).
    fn congest(&mut self, i: usize, delay: Option<Duration>);
    /// Every message to and from node `i`'s host takes this much longer (`None`: no longer).
    fn lag(&mut self, i: usize, latency: Option<Duration>);
    /// Node `i`'s application resigns (`true`) or campaigns again.
    fn steer(&mut self, i: usize, resign: bool);
    /// Node `i` is configured for a cluster of `size` from its next start.
    fn resize(&mut self, i: usize, size: usize);
    /// Node `i`'s NATS server goes down (`true`) or comes back, while its agent runs.
    fn server_down(&mut self, i: usize, down: bool) -> Result<(), String>;
    /// Node `i`'s connection to its server freezes (`true`) or thaws.
    fn freeze_connection(&mut self, i: usize, frozen: bool);
    /// A targeted fault on the `nth` election message of `kind` in flight from `from` to `to`
    /// (0: the first due); whether there was one.
    fn message(&mut self, fault: MessageFault, from: usize, to: usize, kind: MessageKind, nth: usize) -> bool;
    /// Publishes `payload` on `subject` through node `from`'s server, as a stranger; whether
    /// it was sent.
    fn inject(&mut self, from: usize, subject: &str, reply: Option<&str>, payload: bytes::Bytes) -> bool;
    /// Arms the stranger who answers router pings with forgery `pick`; what it will forge, if
    /// router clients run.
    fn forge_pings(&mut self, pick: u64) -> Option<String> {
        let _ = pick;
        None
    }
}

/// Resolves fault actions into what they do, for one run: what the faults have done so far,
/// the draws made when an action is applied, and the cluster's names and settings.
pub struct Resolver {
    /// What the faults have done to the cluster so far.
    pub state: FaultState,
    rng: ChaCha8Rng,
    ids: Vec<String>,
    prefix: String,
    authenticate: bool,
}

impl Resolver {
    /// A resolver for the nodes named `ids` of a run with `seed`; `prefix` is the members'
    /// subject prefix, and `authenticate` whether the cluster seals its messages (forgeries
    /// are then counterfeit seals).
    pub fn new(ids: Vec<String>, seed: u64, prefix: String, authenticate: bool) -> Self {
        Resolver {
            state: FaultState::new(ids.len()),
            rng: ChaCha8Rng::seed_from_u64(mix(seed, 0xd15c, 0)),
            ids,
            prefix,
            authenticate,
        }
    }

    /// Carries out `a` on `t` now; `leader` is the node holding a lease (for
    /// [`Action::IsolateLeader`]). Returns its resolved form (a state loss is a kill and a
    /// state change; route changes are the exact cuts after it), or nothing if it did nothing.
    /// `Err`: the target could not do it.
    pub fn play<T: FaultTarget>(
        &mut self,
        t: &mut T,
        a: &Action,
        leader: Option<usize>,
    ) -> Result<Vec<Action>, String> {
        t.note(None, a.describe(&self.ids, leader));
        if let Some(why) = T::cannot(a) {
            return Err(format!(
                "cannot be done for real: {} ({why})",
                a.describe(&self.ids, leader)
            ));
        }
        let resolved = self.resolve(t, a, leader)?;
        for r in &resolved {
            self.state.apply(r);
        }
        Ok(resolved)
    }

    fn resolve<T: FaultTarget>(&mut self, t: &mut T, a: &Action, leader: Option<usize>) -> Result<Vec<Action>, String> {
        if let Action::StateLoss { node, wipe, pick } = a {
            return self.lose_state(t, *node, *wipe, *pick);
        }
        if !self.state.takes_effect(a) {
            return Ok(Vec::new());
        }
        let resolved = match a {
            Action::RollbackState(i, to) => {
                let saves = t.saves(*i).max(1) as u64;
                // An earlier save than the last; with none, the state is simply gone.
                let to = to.unwrap_or_else(|| (self.rng.gen::<u64>() % saves.saturating_sub(1).max(1)) as usize);
                t.rollback(*i, to);
                Action::RollbackState(*i, Some(to))
            }
            Action::Forge(pick) => {
                self.forge(t, *pick);
                a.clone()
            }
            Action::Partition { .. }
            | Action::IsolateLeader { .. }
            | Action::Bridge { .. }
            | Action::OneWay { .. }
            | Action::Cut(_) => {
                // Route changes are recorded as the exact set of routes cut afterwards.
                let n = self.ids.len();
                Action::Cut(t.routes(&mut |topo| cut_routes(topo, a, leader, n)))
            }
            Action::Heal => {
                t.routes(&mut Topology::heal);
                a.clone()
            }
            other => {
                dispatch(t, other)?;
                a.clone()
            }
        };
        Ok(vec![resolved])
    }

    /// A state loss: kill node `i` if it is up, then wipe its state or roll it back to an
    /// earlier save chosen by `pick`; returns the resolved kill and state change.
    fn lose_state<T: FaultTarget>(
        &mut self,
        t: &mut T,
        i: usize,
        wipe: bool,
        pick: u64,
    ) -> Result<Vec<Action>, String> {
        let mut done = Vec::new();
        if self.state.takes_effect(&Action::Kill(i)) {
            t.kill(i);
            // Down now: the state change below takes effect on a node that was up.
            self.state.apply(&Action::Kill(i));
            done.push(Action::Kill(i));
        }
        let saves = t.saves(i);
        let change = if wipe || saves < 2 {
            Action::WipeState(i)
        } else {
            Action::RollbackState(i, Some((pick % (saves as u64 - 1)) as usize))
        };
        t.note(None, change.describe(&self.ids, None));
        done.extend(self.resolve(t, &change, None)?);
        Ok(done)
    }

    /// A stranger publishes hostile message number `pick` (and, with router clients, answers
    /// the next pings).
    fn forge<T: FaultTarget>(&mut self, t: &mut T, pick: u64) {
        let f = crate::forger::forge(pick, &self.prefix, &self.ids);
        let (payload, dress) = if self.authenticate {
            crate::forger::counterfeit(pick, &f.subject, f.payload)
        } else {
            (f.payload, "")
        };
        let sent = t.inject(f.from % self.ids.len(), &f.subject, f.reply.as_deref(), payload);
        t.note(
            None,
            format!(
                "forged {}{}{} on {} ({})",
                f.what,
                if dress.is_empty() { "" } else { ", " },
                dress,
                f.subject,
                if sent { "sent" } else { "not sent" }
            ),
        );
        if let Some(what) = t.forge_pings(pick) {
            t.note(None, format!("forging {what} to the next pings"));
        }
    }
}

/// Hands an action about one node (or the network's loss and latency) to its method.
fn dispatch<T: FaultTarget>(t: &mut T, a: &Action) -> Result<(), String> {
    match *a {
        Action::Kill(i) => t.kill(i),
        Action::Restart(i) => t.restart(i)?,
        Action::Pause(i) => t.pause(i, true),
        Action::Resume(i) => t.pause(i, false),
        Action::Stop(i) => t.stop(i),
        Action::Suspend(i) => t.suspend(i),
        Action::Freeze(i) => t.freeze(i),
        Action::Wake(i) => t.wake(i),
        Action::ClockStep(i, by) => t.step_wall(i, by),
        Action::Drift(i, ppm) => t.drift(i, ppm),
        Action::Loss(l) => t.set_loss(l),
        Action::Latency(r) => t.set_latency(r),
        Action::WipeState(i) => t.wipe(i),
        Action::CorruptState(i) => t.corrupt(i),
        Action::Clone(i) => t.clone_agent(i),
        Action::Replay(i, window) => t.replay(i, window),
        Action::SlowConsumer(i, on) => t.slow_consumer(i, on),
        Action::Preempt(i, by) => t.preempt(i, by),
        Action::Congest(i, delay) => t.congest(i, delay),
        Action::Lag(i, latency) => t.lag(i, latency),
        Action::Resign(i) => t.steer(i, true),
        Action::Campaign(i) => t.steer(i, false),
        Action::Resize(i, size) => t.resize(i, size),
        Action::ServerDown(i, down) => t.server_down(i, down)?,
        Action::FreezeConnection(i, frozen) => t.freeze_connection(i, frozen),
        Action::Message {
            fault,
            from,
            to,
            kind,
            nth,
        } => {
            if !t.message(fault, from, to, kind, nth) {
                t.note(Some(to), format!("no {} from {from} in flight to it", kind.name()));
            }
        }
        // Resolved by the resolver itself.
        Action::Partition { .. }
        | Action::IsolateLeader { .. }
        | Action::Bridge { .. }
        | Action::Cut(_)
        | Action::OneWay { .. }
        | Action::Heal
        | Action::RollbackState(..)
        | Action::StateLoss { .. }
        | Action::Forge(_) => {}
    }
    Ok(())
}

/// Cuts the routes a partition-shaped action asks for.
fn cut_routes(t: &mut Topology, a: &Action, leader: Option<usize>, n: usize) {
    match a {
        Action::Partition { groups, .. } => t.partition(groups),
        Action::IsolateLeader { fallback } => {
            let x = leader.unwrap_or(*fallback);
            t.partition(&[(0..n).filter(|j| *j != x).collect(), vec![x]]);
        }
        Action::Bridge { a, b, bridge } => {
            let mut side_a = a.clone();
            side_a.push(*bridge);
            t.partition(&[side_a, b.clone()]);
            for j in b {
                t.set_cut(*bridge, *j, false);
                t.set_cut(*j, *bridge, false);
            }
        }
        Action::OneWay { from, to } => {
            for f in from {
                for to in to {
                    t.set_cut(*f, *to, true);
                }
            }
        }
        Action::Cut(links) => t.set_cuts(links),
        _ => {}
    }
}
