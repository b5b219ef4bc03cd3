//! `Membership`: the thin async driver that runs an election state machine over a
//! [`Clock`], a [`Network`] and a [`Storage`], and the application-facing watch API.

use crate::clock::Clock;
use crate::config::{Algorithm, ConfigError, MembershipCfg};
use crate::election::allcall::{AllcallElection, AllcallOutput};
use crate::election::lease::{LeaseElection, LeaseOutput};
use crate::election::Notice;
use crate::network::{Message, NetError, Network, Subscription};
use crate::storage::{Storage, StorageError};
use crate::wire::{decode, encode, AgentLoc, Heartbeat, LeaseRelease, LeaseReply, LeaseRequest};
use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::future::{select, Either};
use futures::StreamExt;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;
use tracing::{debug, info, info_span, warn, Instrument};

/// Why an agent could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Subscribing at start-up failed.
    #[error("network: {0}")]
    Network(#[from] NetError),
    /// Durable state could not be loaded or the new incarnation could not be saved.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// `run` was called on an agent that already ran.
    #[error("this agent has already run")]
    AlreadyRan,
}

/// The leader as one agent sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderStatus {
    /// The leader's ID, if one is known.
    pub leader: Option<String>,
    /// Whether this agent holds the lease (check [`LeaderStatus::lease_deadline`] against the
    /// clock before acting: the lease may have run out since).
    pub is_leader: bool,
    /// The fencing token of the leader's lease (`lease` only): pass it downstream so stale
    /// leaders can be rejected.
    pub fencing_token: Option<u64>,
    /// When this agent's lease ends, on its own monotonic clock ([`Clock::now`]).
    pub lease_deadline: Option<Duration>,
}

impl LeaderStatus {
    /// Whether this agent may act as leader at monotonic time `now`.
    pub fn is_leader_at(&self, now: Duration) -> bool {
        self.is_leader && self.lease_deadline.is_some_and(|d| now < d)
    }
}

/// One entry of the leadership history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadershipRecord {
    /// The leader elected.
    pub leader: AgentLoc,
    /// Its fencing token (`lease` only).
    pub token: Option<u64>,
    /// When this agent learned of it (local monotonic).
    pub at: Duration,
}

/// Counters of things that went wrong and were survived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages dropped because they were malformed or too large.
    pub malformed: u64,
    /// Publishes that failed (the network was down or refused them).
    pub publish_errors: u64,
    /// Saves to storage that failed (the promise they guarded was not made).
    pub storage_errors: u64,
    /// Notices dropped because a watcher did not keep up.
    pub notices_dropped: u64,
}

#[derive(Debug, Default)]
struct SharedInner {
    status: LeaderStatus,
    members: BTreeMap<String, AgentLoc>,
    history: VecDeque<LeadershipRecord>,
    watchers: Vec<mpsc::Sender<(Duration, Notice)>>,
    stop: Option<oneshot::Sender<()>>,
    done: bool,
    done_waiters: Vec<oneshot::Sender<()>>,
    stats: Stats,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<SharedInner>,
    history_size: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SharedInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An application's view of a running agent: leader, membership, history, notices, stop.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct MembershipHandle {
    shared: Arc<Shared>,
}

/// A stream of `(local monotonic time, notice)` pairs from one agent.
#[derive(Debug)]
pub struct Notices {
    rx: mpsc::Receiver<(Duration, Notice)>,
}

impl Notices {
    /// The next notice; `None` once the agent has stopped and all were read.
    pub async fn next(&mut self) -> Option<(Duration, Notice)> {
        self.rx.next().await
    }

    /// A notice if one is queued now.
    pub fn try_next(&mut self) -> Option<(Duration, Notice)> {
        self.rx.try_recv().ok()
    }
}

impl MembershipHandle {
    /// The leader as this agent sees it now.
    pub fn status(&self) -> LeaderStatus {
        self.shared.lock().status.clone()
    }

    /// The live members this agent knows (itself excluded), by ID.
    pub fn members(&self) -> Vec<AgentLoc> {
        self.shared.lock().members.values().cloned().collect()
    }

    /// The leadership history, oldest first (at most `history_size` entries, the newest).
    pub fn history(&self) -> Vec<LeadershipRecord> {
        self.shared.lock().history.iter().cloned().collect()
    }

    /// Counters of survived failures.
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats
    }

    /// Notices from now on (leader changes, members, claims), queued up to `capacity`; a
    /// watcher that falls further behind loses notices (counted in [`Stats`]).
    pub fn notices(&self, capacity: usize) -> Notices {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let mut g = self.shared.lock();
        if !g.done {
            g.watchers.push(tx);
        }
        Notices { rx }
    }

    /// Asks the agent to stop, without waiting.
    pub fn request_stop(&self) {
        if let Some(tx) = self.shared.lock().stop.take() {
            let _ = tx.send(());
        }
    }

    /// Stops the agent and waits until it has shut down (a leader releases its lease first).
    pub async fn stop(&self) {
        self.request_stop();
        let rx = {
            let mut g = self.shared.lock();
            if g.done {
                return;
            }
            let (tx, rx) = oneshot::channel();
            g.done_waiters.push(tx);
            rx
        };
        let _ = rx.await;
    }

    /// Whether the agent has shut down.
    pub fn is_stopped(&self) -> bool {
        self.shared.lock().done
    }
}

/// One membership agent (the seed's `Membership`): health checks, member reports and leader
/// election over the injected clock, network and storage.
pub struct Membership<C, N, S> {
    cfg: MembershipCfg,
    clock: C,
    net: N,
    storage: S,
    seed: u64,
    shared: Arc<Shared>,
    stop_rx: Option<oneshot::Receiver<()>>,
}

impl<C: Clock, N: Network, S: Storage> Membership<C, N, S> {
    /// An agent with `cfg` (defaults filled in, then validated).
    pub fn new(mut cfg: MembershipCfg, clock: C, net: N, storage: S) -> Result<Self, MembershipError> {
        cfg.set_defaults();
        cfg.validate()?;
        let (tx, rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            inner: Mutex::new(SharedInner {
                stop: Some(tx),
                ..Default::default()
            }),
            history_size: cfg.history_size,
        });
        // Jitter must differ between agents; the ID does that without OS randomness.
        let seed = fnv1a(cfg.id.as_bytes()) ^ (cfg.pid as u64);
        Ok(Membership {
            cfg,
            clock,
            net,
            storage,
            seed,
            shared,
            stop_rx: Some(rx),
        })
    }

    /// Sets the seed of the agent's random jitter (the simulator derives it from its seed).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The configuration in force.
    pub fn cfg(&self) -> &MembershipCfg {
        &self.cfg
    }

    /// A handle to watch and stop the agent.
    pub fn handle(&self) -> MembershipHandle {
        MembershipHandle {
            shared: self.shared.clone(),
        }
    }

    /// Spawns the agent on the current tokio runtime (the seed's `Start`) and returns its
    /// handle; [`MembershipHandle::stop`] is the seed's `Stop`.
    #[cfg(feature = "tokio")]
    pub fn start(self) -> MembershipHandle {
        let h = self.handle();
        tokio::spawn(async move {
            if let Err(e) = self.run().await {
                tracing::error!(error = %e, "membership agent failed");
            }
        });
        h
    }

    /// Runs the agent until [`MembershipHandle::stop`] is called (or it fails to start).
    pub async fn run(mut self) -> Result<(), MembershipError> {
        let span = info_span!("membership", id = %self.cfg.id, algorithm = %self.cfg.algorithm);
        let stop = self.stop_rx.take().ok_or(MembershipError::AlreadyRan)?;
        let r = async {
            match self.cfg.algorithm {
                Algorithm::Lease => self.run_lease(stop).await,
                Algorithm::Allcall => self.run_allcall(stop).await,
            }
        }
        .instrument(span)
        .await;
        let waiters = {
            let mut g = self.shared.lock();
            g.done = true;
            g.watchers.clear();
            std::mem::take(&mut g.done_waiters)
        };
        for w in waiters {
            let _ = w.send(());
        }
        r
    }

    async fn subscribe_all(&self, subjects: &[String]) -> Result<futures::stream::SelectAll<Subscription>, NetError> {
        let mut all = futures::stream::SelectAll::new();
        for s in subjects {
            all.push(self.net.subscribe(s).await?);
        }
        Ok(all)
    }

    async fn run_lease(&mut self, mut stop: oneshot::Receiver<()>) -> Result<(), MembershipError> {
        let stored = self.storage.load().await?;
        let (mut sm, first) = LeaseElection::new(&self.cfg, stored, self.clock.now(), self.seed);
        if let Some(LeaseOutput::Persist(d)) = first.first() {
            self.storage.save(d).await?;
        }
        let inbox = format!(
            "{}lease.reply.{}.{}",
            self.cfg.sys_member_prefix,
            sm.me().id,
            sm.me().inc
        );
        let (hb, req, rel) = (
            self.cfg.subject("hb"),
            self.cfg.subject("lease.request"),
            self.cfg.subject("lease.release"),
        );
        let mut subs = self
            .subscribe_all(&[hb.clone(), req.clone(), rel.clone(), inbox.clone()])
            .await?;
        info!(incarnation = sm.me().inc, quorum = sm.timing().quorum, hold = ?sm.timing().hold, "lease agent started");
        loop {
            let wake = sm.next_wakeup();
            let event = {
                let sleep = self.clock.sleep_until(wake);
                match select(&mut stop, select(subs.next(), sleep)).await {
                    Either::Left(_) => None,
                    Either::Right((Either::Left((msg, _)), _)) => Some(msg),
                    Either::Right((Either::Right(((), _)), _)) => Some(None),
                }
            };
            let now = self.clock.now();
            let out = match event {
                None => break,
                Some(None) if now >= wake => sm.tick(now),
                Some(None) => continue,
                Some(Some(msg)) => self.lease_input(&mut sm, now, msg, &hb, &req, &rel, &inbox),
            };
            if let Err(e) = self.run_lease_outputs(out, &req, &rel, &hb, &inbox).await {
                // Fail-stop: a promise or token that cannot be made durable must not be used,
                // and a node that cannot persist must not keep granting.
                tracing::error!(error = %e, "cannot save durable state; stopping");
                let out = sm.stop(self.clock.now());
                let _ = self.run_lease_outputs(out, &req, &rel, &hb, &inbox).await;
                return Err(e.into());
            }
        }
        let out = sm.stop(self.clock.now());
        let _ = self.run_lease_outputs(out, &req, &rel, &hb, &inbox).await;
        info!("lease agent stopped");
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn lease_input(
        &self,
        sm: &mut LeaseElection,
        now: Duration,
        msg: Message,
        hb: &str,
        req: &str,
        rel: &str,
        inbox: &str,
    ) -> Vec<LeaseOutput> {
        let max = self.cfg.max_message;
        let subject = msg.subject.as_str();
        let r = if subject == hb {
            decode::<Heartbeat>(&msg.payload, max).map(|m| sm.on_heartbeat(now, m))
        } else if subject == req {
            match msg.reply {
                Some(to) => decode::<LeaseRequest>(&msg.payload, max).map(|m| sm.on_request(now, m, to)),
                None => Ok(Vec::new()),
            }
        } else if subject == rel {
            decode::<LeaseRelease>(&msg.payload, max).map(|m| sm.on_release(now, m))
        } else if subject == inbox {
            decode::<LeaseReply>(&msg.payload, max).map(|m| sm.on_reply(now, m))
        } else {
            Ok(Vec::new())
        };
        r.unwrap_or_else(|e| {
            self.shared.lock().stats.malformed += 1;
            debug!(subject, error = %e, "dropped a malformed message");
            Vec::new()
        })
    }

    async fn run_lease_outputs(
        &self,
        out: Vec<LeaseOutput>,
        req: &str,
        rel: &str,
        hb: &str,
        inbox: &str,
    ) -> Result<(), StorageError> {
        for o in out {
            match o {
                LeaseOutput::Persist(d) => {
                    if let Err(e) = self.storage.save(&d).await {
                        self.shared.lock().stats.storage_errors += 1;
                        warn!(error = %e, "could not save durable state; dropping what depended on it");
                        return Err(e);
                    }
                }
                LeaseOutput::Heartbeat(mut h) => {
                    if let Some(l) = &h.lease {
                        h.loc.lease_expires = Some(wall_plus(self.clock.wall(), Duration::from_millis(l.remaining_ms)));
                    }
                    self.publish(hb, None, encode(&h)).await;
                }
                LeaseOutput::Request(r) => self.publish(req, Some(inbox), encode(&r)).await,
                LeaseOutput::Reply { to, reply } => self.publish(&to, None, encode(&reply)).await,
                LeaseOutput::Release(r) => self.publish(rel, None, encode(&r)).await,
                LeaseOutput::Notice(n) => {
                    // The seed's reports, in lease mode too: lost/added per change, list per election.
                    let report = match &n {
                        Notice::MemberAdded(l) => Some(("added", String::new(), vec![l.clone()])),
                        Notice::MemberLost(l) => Some(("lost", String::new(), vec![l.clone()])),
                        Notice::Elected { leader, .. } => {
                            let mut members = self.handle().members();
                            members.push(self.cfg.my_loc());
                            members.sort_by(crate::wire::agent_loc_cmp);
                            Some(("list", leader.id.clone(), members))
                        }
                        _ => None,
                    };
                    self.notice(n);
                    if let Some((subject, lead_id, members)) = report {
                        let list = crate::wire::MemberList { lead_id, members };
                        self.publish(&self.cfg.subject(subject), None, encode(&list)).await;
                    }
                }
            }
        }
        Ok(())
    }

    async fn run_allcall(&mut self, mut stop: oneshot::Receiver<()>) -> Result<(), MembershipError> {
        let (call, reply) = (self.cfg.subject("allcall"), self.cfg.subject("allreply"));
        let mut subs = self.subscribe_all(&[call.clone(), reply.clone()]).await?;
        let (mut sm, first) = AllcallElection::new(&self.cfg, self.clock.now());
        info!("allcall agent started");
        self.run_allcall_outputs(first, &call, &reply).await;
        loop {
            let wake = sm.next_wakeup();
            let event = {
                let sleep = self.clock.sleep_until(wake);
                match select(&mut stop, select(subs.next(), sleep)).await {
                    Either::Left(_) => None,
                    Either::Right((Either::Left((msg, _)), _)) => Some(msg),
                    Either::Right((Either::Right(((), _)), _)) => Some(None),
                }
            };
            let now = self.clock.now();
            let out = match event {
                None => break,
                Some(None) if now >= wake => sm.tick(now, OffsetDateTime::from(self.clock.wall())),
                Some(None) => continue,
                Some(Some(msg)) if msg.subject == call => sm.on_allcall(msg.reply),
                Some(Some(msg)) => {
                    match decode::<AgentLoc>(&msg.payload, self.cfg.max_message) {
                        Ok(loc) => sm.on_pong(loc),
                        Err(e) => {
                            self.shared.lock().stats.malformed += 1;
                            debug!(error = %e, "dropped a malformed allreply");
                        }
                    }
                    Vec::new()
                }
            };
            self.run_allcall_outputs(out, &call, &reply).await;
        }
        let out = sm.stop(self.clock.now());
        self.run_allcall_outputs(out, &call, &reply).await;
        info!("allcall agent stopped");
        Ok(())
    }

    async fn run_allcall_outputs(&self, out: Vec<AllcallOutput>, call: &str, reply: &str) {
        for o in out {
            match o {
                AllcallOutput::Allcall(lead) => self.publish(call, Some(reply), encode(&lead)).await,
                AllcallOutput::Pong { to, loc } => self.publish(&to, None, encode(&loc)).await,
                AllcallOutput::Lost(l) => self.publish(&self.cfg.subject("lost"), None, encode(&l)).await,
                AllcallOutput::Added(l) => self.publish(&self.cfg.subject("added"), None, encode(&l)).await,
                AllcallOutput::List(l) => self.publish(&self.cfg.subject("list"), None, encode(&l)).await,
                AllcallOutput::Notice(n) => self.notice(n),
            }
        }
    }

    async fn publish(&self, subject: &str, reply: Option<&str>, payload: Bytes) {
        if let Err(e) = self.net.publish(subject, reply, payload).await {
            self.shared.lock().stats.publish_errors += 1;
            debug!(subject, error = %e, "publish failed");
        }
    }

    fn notice(&self, n: Notice) {
        let now = self.clock.now();
        let mut g = self.shared.lock();
        match &n {
            Notice::Leader {
                leader,
                is_me,
                token,
                until,
            } => {
                info!(leader = ?leader, is_me, token = ?token, "leader changed");
                g.status = LeaderStatus {
                    leader: leader.clone(),
                    is_leader: *is_me,
                    fencing_token: *token,
                    lease_deadline: *until,
                };
            }
            Notice::Claim { until, .. } if g.status.is_leader => g.status.lease_deadline = Some(*until),
            Notice::Elected { leader, token } => {
                if g.history.len() >= self.shared.history_size {
                    g.history.pop_front();
                }
                g.history.push_back(LeadershipRecord {
                    leader: leader.clone(),
                    token: *token,
                    at: now,
                });
            }
            Notice::MemberAdded(loc) => {
                info!(member = %loc.id, "member added");
                g.members.insert(loc.id.clone(), loc.clone());
            }
            Notice::MemberLost(loc) => {
                info!(member = %loc.id, "member lost");
                g.members.remove(&loc.id);
            }
            _ => {}
        }
        let mut dropped = 0;
        g.watchers.retain_mut(|w| match w.try_send((now, n.clone())) {
            Ok(()) => true,
            Err(e) if e.is_disconnected() => false,
            Err(_) => {
                dropped += 1;
                true
            }
        });
        g.stats.notices_dropped += dropped;
    }
}

fn wall_plus(wall: SystemTime, d: Duration) -> OffsetDateTime {
    OffsetDateTime::from(wall + d)
}

/// FNV-1a, for a stable per-agent default seed.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
