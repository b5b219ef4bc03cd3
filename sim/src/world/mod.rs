//! The simulated world of one run: madsim nodes, each running an agent beside its own NATS
//! server, router clients, every node's clock model and disk, and what the oracle needs
//! recorded (trace events, claims and the faults applied: see [`crate::record`]).

mod build;
mod sites;
mod target;

use crate::agents::Agents;
use crate::clock::{true_now, ClockModel, SimClock};
use crate::disk::Disks;
use crate::fabric::Fabric;
use crate::faults::{Action, FaultEvent, FaultState, Resolver};
use crate::oracle::conduct::Conduct;
use crate::oracle::guards::{GuardWord, Guards};
use crate::oracle::stream::Streaming;
use crate::oracle::TrueClaim;
use crate::record::Book;
use crate::scenario::{Scenario, SimNode};
use crate::seeds::mix;
use crate::trace::TraceEvent;
use crate::workload::router::{home_of, router_bugs, Client, PingForger, Record, Servers};
use leasehold::{Membership, Notice};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use target::SimTarget;

struct State {
    incarnations: Vec<u64>,
    book: Book,
    /// Order of recording, for events (from 1) and notices (from `u64::MAX / 2`: a notice
    /// sorts after the events of its instant and node).
    seq: u64,
    notice_seq: u64,
    /// The faults applied (kept with [`Keep::Everything`]) and how many.
    applied: Vec<FaultEvent>,
    applied_count: u64,
    /// Graceful stops so far, per node (a stop's deferred kill checks no later one began).
    stops: Vec<u64>,
    /// The handles of the clones started (`[[at]] clone`), kept so they run until their
    /// host goes down.
    clones: Vec<leasehold::MembershipHandle>,
    /// What the applications' guards said, judged as they say it.
    guards: Guards,
    /// How the agents behaved under connection trouble.
    conduct: Conduct,
    /// Per node, the `cluster_size` a `resize` step set for its next starts.
    sizes: Vec<Option<usize>>,
    /// The run's coverage, when it collects it.
    coverage: Option<crate::coverage::Coverage>,
}

/// The incarnation numbers under which the oracle records clones of a node (clone `k` is
/// `CLONE_INC + k`): another incarnation, so a clone's claims and its original's are two
/// holders.
pub(crate) const CLONE_INC: u64 = 1 << 40;

/// How long a stopped agent has to shut down (release its lease) before its node goes down:
/// what the agent promises; taking longer is a violation.
const STOP_GRACE: Duration = crate::oracle::conduct::STOP_BOUND;

/// Everything one run shares between its nodes, the nemesis and the oracle.
pub(crate) struct World {
    /// The scenario.
    pub scn: Scenario,
    /// Its nodes, resolved.
    pub nodes: Vec<SimNode>,
    /// The run's seed.
    pub seed: u64,
    /// True time zero.
    pub start: madsim::time::Instant,
    /// The simulated NATS.
    pub fabric: Fabric,
    /// Every node's durable state.
    pub disks: Disks,
    /// Every node's (and router client's) clock.
    pub clocks: Vec<Arc<Mutex<ClockModel>>>,
    /// The router servers, for scenarios with `[router]`.
    pub servers: Servers,
    /// What router clients did.
    pub routes: Arc<Mutex<Record>>,
    /// The stranger who answers router pings, armed by `forge` (router scenarios only).
    pub ping_forger: PingForger,
    /// The running agents.
    pub agents: Agents,
    /// What the fenced store accepted, judged as it goes (`[workload] fenced_store`).
    pub effects: Arc<Mutex<crate::oracle::effects::Effects>>,
    /// Graceful stops begun and not yet handed to the run's main task (see [`World::stop`]).
    graces: Mutex<Vec<leasehold::BoxFuture<'static, ()>>>,
    /// What the faults have done, and the draws made when one is applied.
    resolver: Mutex<Resolver>,
    /// The library's fault sites this run turns on.
    sites: Option<sites::SitePlan>,
    state: Mutex<State>,
}

impl World {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn clock(&self, i: usize) -> MutexGuard<'_, ClockModel> {
        self.clocks[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a trace event now (for `node`, with its local time).
    pub(crate) fn trace(&self, node: Option<usize>, what: String) {
        let at = true_now(self.start);
        let local = node.map(|i| self.clock(i).local_at(at));
        let mut st = self.lock();
        st.seq += 1;
        let seq = st.seq;
        st.book.event(
            TraceEvent {
                at,
                seq,
                node: node.map(|i| self.nodes[i].id.clone()),
                local,
                what,
            },
            at,
        );
    }

    /// Records a notice of node `i`'s incarnation `inc`, made at its local time `local`.
    /// Called from the agent's loop (its observer), so nothing is ever lost on the way.
    fn record(&self, node: usize, inc: u64, local: Duration, notice: &Notice) {
        let now = true_now(self.start);
        let local = local.as_nanos();
        let at = self.clock(node).true_at(local);
        let mut st = self.lock();
        self.lapses(&mut st, node, now);
        match notice {
            Notice::Claim { token, from, until } => {
                if let Some(t) = token {
                    st.conduct.claimed(node, inc, *t, until.as_nanos());
                }
                st.guards.claim(node, inc, *token, until.as_nanos());
                st.book
                    .claim(node, inc, *token, (from.as_nanos(), until.as_nanos()), now)
            }
            Notice::Leader {
                leader: Some(l),
                token: Some(t),
                ..
            } => st.guards.reported(node, inc, l, *t, at),
            Notice::ClaimEnded { at } => {
                st.conduct.claim_ended(node, inc);
                st.guards.claim_ended(node, inc, at.as_nanos());
                st.book.claim_ended(node, inc, at.as_nanos(), now)
            }
            Notice::Connection(c) => {
                let down = *c == leasehold::Connection::Disconnected;
                if down {
                    st.conduct.disconnected(node, &self.nodes[node].id, at);
                }
                st.conduct.link(node, inc, down, at);
            }
            _ => {}
        }
        if let Some(what) = leasehold::events::AgentEvent::of_notice(notice, "", "", None)
            .as_ref()
            .and_then(crate::trace::event_words)
        {
            st.notice_seq += 1;
            let seq = st.notice_seq;
            st.book.event(
                TraceEvent {
                    at,
                    seq,
                    node: Some(self.nodes[node].id.clone()),
                    local: Some(local),
                    what,
                },
                now,
            );
        }
    }

    /// Incarnation `inc` of node `i` asks to publish `payload` on `subject`: a lease request
    /// goes to the conduct oracle (a disconnected agent does not campaign).
    fn published(&self, i: usize, inc: u64, subject: &str, payload: &[u8]) {
        if crate::scenario::MessageKind::of_subject(subject) != Some(crate::scenario::MessageKind::Request) {
            return;
        }
        let Ok(req) = leasehold::wire::decode::<leasehold::wire::LeaseRequest>(crate::impostor::body(payload), 1 << 20)
        else {
            return;
        };
        let now = true_now(self.start);
        let mut st = self.lock();
        self.lapses(&mut st, i, now);
        st.conduct.requested(i, inc, &self.nodes[i].id, now, req.token);
    }

    /// Judges the leases node `i`'s processes hold against its clock at `now` (a lease run out
    /// unrenewed and unreleased is a violation); `st` is the world's state, locked.
    fn lapses(&self, st: &mut State, i: usize, now: u128) {
        let local = self.clock(i).local_at(now);
        let clock = self.clocks[i].clone();
        let true_at = move |l| clock.lock().unwrap_or_else(|e| e.into_inner()).true_at(l);
        st.conduct.lapses(i, local, &self.nodes[i].id, true_at);
    }

    /// Node `i`'s process stops running (`true`: paused, suspended, frozen) or runs again;
    /// what it could not do meanwhile is excused.
    fn stalled(&self, i: usize, stalled: bool) {
        let mut st = self.lock();
        if stalled {
            self.lapses(&mut st, i, true_now(self.start));
        }
        st.guards.stalled(i, stalled, true_now(self.start));
        st.conduct.stalled(i, stalled);
    }

    /// What the conduct oracle found, judged at the run's end.
    pub(crate) fn conduct(&self) -> Conduct {
        let end = self.scn.duration.0.as_nanos();
        let ids: Vec<String> = self.nodes.iter().map(|n| n.id.clone()).collect();
        let mut c = {
            let mut st = self.lock();
            for i in 0..self.nodes.len() {
                self.lapses(&mut st, i, end);
            }
            st.conduct.clone()
        };
        c.finish(end, &ids);
        c
    }

    /// What the clocks oracle found: per node, its agent's clock's reads that jumped ahead past
    /// the tolerance (by node; judged at the run's end).
    pub(crate) fn clock_reads(&self) -> Vec<crate::oracle::Violation> {
        (0..self.nodes.len())
            .filter_map(|i| {
                let (count, first) = self.clock(i).reads_ahead();
                crate::oracle::clocks::check_reads(&self.nodes[i].id, count, first)
            })
            .collect()
    }

    /// Judges what node `i`'s application (beside incarnation `inc`) said of its guard.
    fn guard_report(&self, i: usize, inc: u64, word: GuardWord) {
        let clock = self.clocks[i].clone();
        let true_at = move |local| clock.lock().unwrap_or_else(|e| e.into_inner()).true_at(local);
        self.lock().guards.take(i, &self.nodes[i].id, inc, word, true_at);
    }

    /// What the guards oracle found so far.
    pub(crate) fn guards(&self) -> Guards {
        self.lock().guards.clone()
    }

    /// The claims so far, in true time, in recording order (with [`Keep::Everything`]).
    pub(crate) fn claims(&self) -> Vec<TrueClaim> {
        self.lock().book.claims()
    }

    /// The node holding a lease now, if any.
    pub(crate) fn leader_now(&self) -> Option<usize> {
        self.lock().book.holder(true_now(self.start))
    }

    /// The trace: recorded events and every notice, in true-time order (with
    /// [`Keep::Verdict`], only its digest and length).
    pub(crate) fn take_trace(&self) -> crate::trace::Trace {
        self.lock().book.take_trace()
    }

    /// Whether the record cannot be trusted as streamed (see [`Book::late`]).
    pub(crate) fn late(&self) -> bool {
        self.lock().book.late()
    }

    /// Runs `f` on the streaming oracle once every claim has been judged.
    pub(crate) fn finish_stream<T>(&self, f: impl FnOnce(&Streaming) -> T) -> T {
        let now = true_now(self.start);
        let mut st = self.lock();
        f(st.book.finish_stream(now))
    }

    /// How many claims were made, and how many faults were applied.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let st = self.lock();
        (st.book.claims_seen(), st.applied_count)
    }

    /// Drops what the run recorded once it has been judged (see [`Fabric::clear`]).
    pub(crate) fn release(&self) {
        let mut st = self.lock();
        st.book.clear();
        st.applied = Vec::new();
        st.clones = Vec::new();
        st.guards = Guards::default();
        st.conduct = Conduct::default();
        drop(st);
        *self.effects.lock().unwrap_or_else(|e| e.into_inner()) = Default::default();
        self.fabric.clear();
        self.disks.clear();
        self.agents.clear();
        *self.routes.lock().unwrap_or_else(|e| e.into_inner()) = Record::default();
    }

    /// The faults as applied so far.
    pub(crate) fn take_applied(&self) -> Vec<FaultEvent> {
        std::mem::take(&mut self.lock().applied)
    }

    /// Node `i`'s life: start a new incarnation of its agent beside its NATS server (and its
    /// router server, if any). madsim calls this at creation and at every restart.
    pub(crate) async fn node_main(self: Arc<Self>, i: usize) {
        let inc = {
            let mut st = self.lock();
            st.incarnations[i] += 1;
            st.incarnations[i]
        };
        self.trace(Some(i), format!("start incarnation {inc}"));
        // A new process runs: a stall of the one before (paused, then killed) excuses nothing
        // of this one.
        self.stalled(i, false);
        // Its client pings as the agent's configuration says (`leasehold-agent` sets the same).
        self.fabric.set_ping(i, self.scn.node_cfg(i).ping_interval());
        // In quantised time every server is up before the first agents start (`World::build`),
        // so the first messages of the agents started in the first instant reach them all, as
        // in the checker.
        if inc > 1 || self.scn.quantum().is_none() {
            self.fabric.serve(i);
        }
        if let Some(spec) = self.scn.router.clone() {
            let clock = SimClock::new(self.clocks[i].clone(), self.start);
            madsim::task::spawn(crate::workload::router::server_main(
                self.fabric.clone(),
                clock,
                i,
                self.servers.clone(),
                spec,
                mix(self.seed, i as u64, 0x5e7),
                router_bugs(&self.scn),
            ));
        }
        // The nodes of a scenario are a brand-new cluster when the run starts (the operator's
        // switch); every later start is a restart that must not assume anything.
        let state = if inc == 1 {
            leasehold::ClusterState::New
        } else {
            leasehold::ClusterState::Existing
        };
        let Some(agent) = self.agent(
            i,
            inc,
            state,
            self.disks.storage(i),
            crate::seeds::agent_seed(self.seed, i, inc),
        ) else {
            return;
        };
        self.agents.started(i, inc, agent.handle());
        // The applications run beside the agent in this task, not tasks of their own (madsim
        // would keep a spawned task, and what it holds, past the end of the run).
        let apps = self.apps(i, inc, &agent.handle());
        let result = match futures::future::select(Box::pin(agent.run()), apps).await {
            futures::future::Either::Left((r, _)) => r,
            futures::future::Either::Right(((), run)) => run.await,
        };
        match result {
            Ok(()) => self.trace(Some(i), "agent stopped".into()),
            Err(e) => self.trace(Some(i), format!("agent failed: {e}")),
        }
    }

    /// The applications of node `i`'s incarnation `inc` over `agent`'s handle (`leasehold::probe`,
    /// on the public API only), as the scenario says (`[workload] application`), reporting to the
    /// guards oracle; the guard application is the fenced store's writer.
    fn apps(
        self: &Arc<Self>,
        i: usize,
        inc: u64,
        agent: &leasehold::MembershipHandle,
    ) -> leasehold::BoxFuture<'static, ()> {
        use leasehold::probe::{callbacks_app, guard_app, Report, Write};
        let w = self.clone();
        let report: Report = Arc::new(move |word| w.guard_report(i, inc, word));
        let clock = || SimClock::new(self.clocks[i].clone(), self.start);
        let which = self.scn.workload.application;
        let cfg = self.scn.node_cfg(i);
        let write = self.scn.workload.fenced_store.then(|| -> Write {
            let (net, id) = (self.fabric.client(i), self.nodes[i].id.clone());
            let subject = crate::workload::store::subject(&cfg.election_prefix());
            Arc::new(move |token| {
                let (net, subject, id) = (net.clone(), subject.clone(), id.clone());
                Box::pin(async move { crate::workload::store::write(&net, &subject, &id, token).await })
            })
        });
        let guard = which
            .guard()
            .then(|| guard_app(agent.clone(), clock(), cfg.beat, report.clone(), write));
        let callbacks = which
            .callbacks()
            .then(|| callbacks_app(agent.clone(), clock(), report.clone()));
        Box::pin(async move {
            futures::future::join(
                async move {
                    if let Some(g) = guard {
                        g.await
                    }
                },
                async move {
                    if let Some(c) = callbacks {
                        c.await
                    }
                },
            )
            .await;
        })
    }

    /// An agent for node `i` (its identity, its host's clock and NATS server) over
    /// `storage`, whose notices are recorded as incarnation `inc` of node `i`.
    fn agent(
        self: &Arc<Self>,
        i: usize,
        inc: u64,
        state: leasehold::ClusterState,
        storage: crate::disk::SimStorage,
        seed: u64,
    ) -> Option<Membership<SimClock, crate::fabric::SimNet, crate::disk::SimStorage>> {
        let node = &self.nodes[i];
        let mut cfg = self.scn.node_cfg(i);
        if let Some(size) = self.lock().sizes[i] {
            cfg.cluster_size = size;
        }
        cfg.initial_cluster_state = state;
        cfg.id = node.id.clone();
        cfg.my_rank = node.rank;
        cfg.hnatsd.pid = i as i64 + 1;
        cfg.hnatsd.nats_host = format!("10.0.0.{}", i + 1);
        cfg.hnatsd.nats_client_port = 4222;
        let clock = SimClock::new(self.clocks[i].clone(), self.start);
        let w = self.clone();
        let observe: leasehold::Observer = Arc::new(move |local, n| w.record(i, inc, local, n));
        let sites = self.fault_sites(i, seed);
        // The conduct oracle sees each lease request as the agent asks for it.
        let w = self.clone();
        let watch: crate::fabric::PublishWatch =
            Arc::new(move |subject, payload| w.published(i, inc, subject, payload));
        match Membership::new(cfg, clock, self.fabric.watched_client(i, watch), storage) {
            Ok(a) => {
                let mut a = a.with_seed(seed).with_observer(observe);
                if self.scn.membership.authenticate {
                    a = a.with_cluster_keys(crate::forger::sim_keys(self.seed));
                }
                if let Some(s) = sites {
                    a = a.with_fault_sites(s);
                }
                Some(a)
            }
            Err(e) => {
                self.trace(Some(i), format!("agent failed to configure: {e}"));
                None
            }
        }
    }

    /// Starts a clone of node `i` on its host: a second agent with its identity and a copy
    /// of its state file, recorded as incarnation [`CLONE_INC`] + k. It dies with the host.
    fn start_clone(self: &Arc<Self>, i: usize, id: madsim::task::NodeId) {
        let k = self.lock().clones.len() as u64;
        let inc = CLONE_INC + k;
        let storage = self.disks.storage(self.disks.copy_of(i));
        let seed = mix(self.seed, i as u64, inc);
        let Some(agent) = self.agent(i, inc, leasehold::ClusterState::Existing, storage, seed) else {
            return;
        };
        let Some(host) = madsim::runtime::Handle::current().get_node(id) else {
            return;
        };
        self.lock().clones.push(agent.handle());
        let w = self.clone();
        host.spawn(async move {
            match agent.run().await {
                Ok(()) => w.trace(Some(i), format!("clone {k} stopped")),
                Err(e) => w.trace(Some(i), format!("clone {k} failed: {e}")),
            }
        });
    }

    /// Router client `k` (fabric index `n + k`) in datacenter `dc`.
    pub(crate) async fn client_main(self: Arc<Self>, k: usize, dc: String) {
        let node = self.nodes.len() + k;
        let Some(spec) = self.scn.router.clone() else { return };
        self.fabric.serve(node);
        Client {
            fabric: self.fabric.clone(),
            clock: SimClock::new(self.clocks[node].clone(), self.start),
            start: self.start,
            node,
            index: k,
            home: home_of(&self.nodes, k, &dc),
            dc,
            servers: self.servers.clone(),
            agents: self.agents.clone(),
            spec,
            end: self.scn.duration.0,
            seed: mix(self.seed, 1000 + k as u64, 0),
            bugs: router_bugs(&self.scn),
            record: self.routes.clone(),
        }
        .run()
        .await;
    }

    /// Applies `a` now and records its resolved form (if it did anything).
    pub(crate) fn apply(self: &Arc<Self>, a: &Action, ids: &[madsim::task::NodeId]) {
        let at = Duration::from_nanos(true_now(self.start) as u64);
        let leader = matches!(a, Action::IsolateLeader { .. })
            .then(|| self.leader_now())
            .flatten();
        let played = self.resolver.lock().unwrap_or_else(|e| e.into_inner()).play(
            &mut SimTarget { world: self, ids },
            a,
            leader,
        );
        let resolved = played.unwrap_or_else(|e| {
            self.trace(None, format!("fault failed: {e}"));
            Vec::new()
        });
        for resolved in resolved {
            self.cover_fault(&resolved);
            let mut st = self.lock();
            st.applied_count += 1;
            if st.book.keeps_everything() {
                st.applied.push(FaultEvent {
                    at,
                    action: resolved,
                    scripted: true,
                });
            }
        }
    }

    /// What the faults have done so far.
    fn fault_state(&self) -> FaultState {
        self.resolver.lock().unwrap_or_else(|e| e.into_inner()).state.clone()
    }

    /// Node `i` goes down: its process dies (a suspended one too: its clocks run again when
    /// it boots), its server drops its clients, and its agent's handle is gone.
    fn kill_node(&self, i: usize, id: madsim::task::NodeId) {
        madsim::runtime::Handle::current().kill(id);
        {
            let mut st = self.lock();
            self.lapses(&mut st, i, true_now(self.start));
            st.conduct.excuse(i);
        }
        self.clock(i).wake(true_now(self.start));
        self.clock(i).processes_died();
        self.fabric.down(i);
        self.agents.down(i);
    }

    /// A graceful stop: the agent is asked to stop (a leader releases its lease) and given
    /// [`STOP_GRACE`] to do it, then its node goes down, unless it was restarted meanwhile.
    fn stop(self: &Arc<Self>, i: usize, id: madsim::task::NodeId) {
        let stop = {
            let mut st = self.lock();
            st.stops[i] += 1;
            st.stops[i]
        };
        let Some((_, agent)) = self.agents.get(i) else {
            self.kill_node(i, id);
            return;
        };
        agent.request_stop();
        let w = self.clone();
        let asked = true_now(self.start);
        let grace: leasehold::BoxFuture<'static, ()> = Box::pin(async move {
            let hung = madsim::time::timeout(STOP_GRACE, agent.stop()).await.is_err();
            let faults = w.fault_state();
            let (latest, down) = {
                let mut st = w.lock();
                // A stop that a running process did not serve in time (a paused one cannot).
                if hung && !faults.paused[i] && !st.guards.was_stalled(i, asked) {
                    st.conduct.stop_hung(&w.nodes[i].id, asked);
                }
                (st.stops[i] == stop, faults.down[i])
            };
            if latest && down {
                w.kill_node(i, id);
            }
        });
        self.graces.lock().unwrap_or_else(|e| e.into_inner()).push(grace);
    }

    /// The graceful stops begun since the last call. The run's main task runs them beside its
    /// waits (a task each would stay in madsim's books until the run ends, and one task for
    /// all of them would outlive the run).
    pub(crate) fn take_graces(&self) -> Vec<leasehold::BoxFuture<'static, ()>> {
        std::mem::take(&mut *self.graces.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
