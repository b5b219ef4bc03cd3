//! The simulated world as a target of fault actions: what each kind of fault does to madsim's
//! nodes, the fabric, the clocks and the disks (the [`Resolver`](crate::faults::Resolver)
//! decides which are done).

use super::World;
use crate::clock::true_now;
use crate::faults::FaultTarget;
use crate::oracle::guards::SIM_SLACK;
use std::sync::Arc;
use std::time::Duration;

/// The simulated world as a target of fault actions: madsim's nodes, the fabric, the clocks and
/// the disks.
pub(super) struct SimTarget<'a> {
    pub(super) world: &'a Arc<World>,
    pub(super) ids: &'a [madsim::task::NodeId],
}

impl SimTarget<'_> {
    fn host(&self) -> madsim::runtime::Handle {
        madsim::runtime::Handle::current()
    }

    fn now(&self) -> u128 {
        true_now(self.world.start)
    }

    /// Node `i`'s process stops (its server holds what is sent to it) or runs again.
    fn hold(&self, i: usize, stopped: bool) {
        if stopped {
            self.host().pause(self.ids[i]);
            self.world.fabric.pause(i);
        } else {
            self.host().resume(self.ids[i]);
            self.world.fabric.resume(i);
        }
    }
}

impl FaultTarget for SimTarget<'_> {
    fn note(&mut self, node: Option<usize>, what: String) {
        self.world.trace(node, what);
    }

    fn kill(&mut self, i: usize) {
        self.world.kill_node(i, self.ids[i]);
    }

    fn restart(&mut self, i: usize) -> Result<(), String> {
        self.host().restart(self.ids[i]);
        Ok(())
    }

    fn pause(&mut self, i: usize, paused: bool) {
        self.hold(i, paused);
        self.world.stalled(i, paused);
    }

    fn stop(&mut self, i: usize) {
        self.world.stop(i, self.ids[i]);
    }

    fn suspend(&mut self, i: usize) {
        self.hold(i, true);
        self.world.clock(i).suspend(self.now());
        self.world.stalled(i, true);
    }

    fn freeze(&mut self, i: usize) {
        self.hold(i, true);
        self.world.clock(i).freeze(self.now());
        self.world.stalled(i, true);
    }

    fn wake(&mut self, i: usize) {
        self.world.clock(i).wake(self.now());
        self.hold(i, false);
        self.world.stalled(i, false);
    }

    fn step_wall(&mut self, i: usize, by: i128) {
        self.world.clock(i).step_wall(by);
    }

    fn drift(&mut self, i: usize, ppm: i64) {
        self.world.clock(i).set_ppm(self.now(), ppm);
    }

    fn set_loss(&mut self, loss: f64) {
        self.world.fabric.topology(|t| t.set_loss(loss));
    }

    fn set_latency(&mut self, latency: crate::scenario::DurRange) {
        self.world.fabric.topology(|t| t.set_latency(latency));
    }

    fn routes(&mut self, change: &mut dyn FnMut(&mut crate::topology::Topology)) -> Vec<(usize, usize)> {
        self.world.fabric.topology(|t| {
            change(t);
            t.cuts()
        })
    }

    fn saves(&self, i: usize) -> usize {
        self.world.disks.saves(i)
    }

    fn wipe(&mut self, i: usize) {
        self.world.disks.wipe(i);
    }

    fn corrupt(&mut self, i: usize) {
        self.world.disks.corrupt(i);
    }

    fn rollback(&mut self, i: usize, to: usize) {
        self.world.disks.rollback(i, to);
    }

    fn clone_agent(&mut self, i: usize) {
        self.world.start_clone(i, self.ids[i]);
    }

    fn replay(&mut self, i: usize, window: Duration) {
        let n = self.world.fabric.replay(i, window);
        self.world.trace(Some(i), format!("replayed {n} messages"));
    }

    fn slow_consumer(&mut self, i: usize, slow: bool) {
        self.world.fabric.set_slow(i, slow);
    }

    fn preempt(&mut self, i: usize, by: Duration) {
        self.world.clock(i).preempt_next_read(by);
    }

    fn congest(&mut self, i: usize, delay: Option<Duration>) {
        self.world.fabric.congest(i, delay);
    }

    fn lag(&mut self, i: usize, latency: Option<Duration>) {
        self.world.fabric.topology(|t| t.set_lag(i, latency));
    }

    fn steer(&mut self, i: usize, resign: bool) {
        if let Some((_, h)) = self.world.agents.get(i) {
            if resign {
                h.resign();
            } else {
                h.campaign();
            }
        }
    }

    fn resize(&mut self, i: usize, size: usize) {
        self.world.lock().sizes[i] = Some(size);
    }

    fn server_down(&mut self, i: usize, down: bool) -> Result<(), String> {
        self.world.fabric.halt_server(i, down);
        Ok(())
    }

    fn message(
        &mut self,
        fault: crate::scenario::MessageFault,
        from: usize,
        to: usize,
        kind: crate::scenario::MessageKind,
        nth: usize,
    ) -> bool {
        self.world.fabric.message_fault(fault, from, to, kind, nth)
    }

    fn freeze_connection(&mut self, i: usize, frozen: bool) {
        let w = self.world;
        let to_notice = w.fabric.freeze_connection(i, frozen);
        let now = self.now();
        let mut st = w.lock();
        if frozen && to_notice {
            // Noticed at the third unanswered ping, reported within a beat: the promise is
            // judged, whatever bug is planted in how the client pings.
            let mut cfg = w.scn.node_cfg(i);
            cfg.bug_knobs = leasehold::BugKnobs::default();
            let by = now + 3 * cfg.ping_interval().as_nanos() + cfg.beat.as_nanos() + SIM_SLACK;
            st.conduct.froze(i, now, by);
        } else if !frozen {
            st.conduct.thawed(i, &w.nodes[i].id, now);
        }
    }

    fn inject(&mut self, from: usize, subject: &str, reply: Option<&str>, payload: bytes::Bytes) -> bool {
        self.world.fabric.inject(from, subject, reply, payload)
    }

    fn forge_pings(&mut self, pick: u64) -> Option<String> {
        self.world
            .scn
            .router
            .is_some()
            .then(|| self.world.ping_forger.arm(pick).to_string())
    }
}
