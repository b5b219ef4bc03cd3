//! `Membership`: the thin async driver that runs an election state machine over a
//! [`Clock`], a [`Network`] and a [`Storage`]. One loop serves both algorithms: it sleeps
//! until the machine's next timer or the next message, feeds it, and carries out what it
//! returns, in order.

use crate::auth::ClusterKeys;
use crate::clock::{BoxFuture, Clock};
use crate::config::{Algorithm, Bug, ClusterState, ConfigError, MembershipCfg};
use crate::election::{AllcallElection, LeaseElection, Notice, Output, Publish};
use crate::handle::{Command, MembershipHandle, Shared};
use crate::inbox::Inbox;
use crate::network::{Connection, Message, NetError, Network};
use crate::storage::{Durable, Storage, StorageError};
use crate::subjects::{Subjects, Topic};
use crate::wire::{
    decode, decode_shared, encode, AgentLoc, Heartbeat, LeaseRecover, LeaseRecovered, LeaseRelease, LeaseReply,
    LeaseRequest, WireError, MAX_COUNTER,
};
use futures::channel::{mpsc, oneshot};
use futures::future::{select, Either};
use futures::{Stream, StreamExt};
use std::sync::Arc;
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

/// One membership agent (hnatsd's `Membership`): health checks, member reports and leader
/// election over the injected clock, network and storage.
///
/// Three agents on the in-process hub, the first of which leads:
///
/// ```
/// # #[cfg(feature = "tokio")] {
/// use leasehold::{ClusterState, Hub, Membership, MembershipCfg, MemoryStorage, TokioClock};
/// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
/// let hub = Hub::new();
/// let handles: Vec<_> = (0..3)
///     .map(|i| {
///         let mut cfg = MembershipCfg::default();
///         cfg.id = format!("n{i}");
///         cfg.my_rank = i;
///         cfg.cluster_size = 3;
///         cfg.initial_cluster_state = ClusterState::New; // the first start of a new cluster
///         Membership::new(cfg, TokioClock::new(), hub.client(), MemoryStorage::new())
///             .unwrap()
///             .start()
///     })
///     .collect();
/// let lease = handles[0].leadership().await.expect("n0 leads");
/// assert!(lease.token() > 0 && handles[0].is_leader_now());
/// # });
/// # }
/// ```
pub struct Membership<C, N, S> {
    cfg: MembershipCfg,
    clock: Arc<C>,
    net: N,
    storage: S,
    seed: u64,
    shared: Arc<Shared>,
    stop_rx: Option<oneshot::Receiver<()>>,
    commands: Option<mpsc::UnboundedReceiver<Command>>,
    observer: Option<Observer>,
    keys: Option<ClusterKeys>,
    /// The last heartbeat published and its bytes: most beats repeat the one before.
    last_beat: std::sync::Mutex<Option<(Heartbeat, bytes::Bytes)>>,
    /// The simulator's fault sites and coverage probe.
    #[cfg(feature = "fault-sites")]
    sites: Option<Arc<crate::fault_sites::FaultSites>>,
}

/// A function that sees every notice, synchronously and in order, with the agent's monotonic
/// time (see [`Membership::with_observer`]).
pub type Observer = Arc<dyn Fn(Duration, &Notice) + Send + Sync>;

impl<C: Clock, N: Network, S: Storage> Membership<C, N, S> {
    /// An agent with `cfg` (defaults filled in, then validated).
    pub fn new(mut cfg: MembershipCfg, clock: C, net: N, storage: S) -> Result<Self, MembershipError> {
        cfg.set_defaults();
        cfg.validate()?;
        let (tx, rx) = oneshot::channel();
        let (cmd_tx, cmd_rx) = mpsc::unbounded();
        let clock = Arc::new(clock);
        let shared = Shared::new(cfg.history_size, tx, cmd_tx, clock.clone(), cfg.bug_knobs);
        // Jitter and attempt IDs must differ between agents and between runs of one agent
        // (in a container every run is pid 1): the ID and the wall clock at start do that
        // without OS randomness. The simulator sets its own seed (`with_seed`).
        let started = clock
            .wall()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = crate::hash::fnv1a(cfg.id.as_bytes()) ^ (cfg.hnatsd.pid as u64) ^ started;
        Ok(Membership {
            cfg,
            clock,
            net,
            storage,
            seed,
            shared,
            stop_rx: Some(rx),
            commands: Some(cmd_rx),
            observer: None,
            keys: None,
            last_beat: std::sync::Mutex::new(None),
            #[cfg(feature = "fault-sites")]
            sites: None,
        })
    }

    /// Sets the seed of the agent's random jitter (the simulator derives it from its seed).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Calls `observe` with every notice as the agent makes it, before any watcher sees it.
    /// Unlike [`MembershipHandle::notices`], which drops notices for a reader that falls
    /// behind, nothing can be lost on this path: the simulator's oracle reads claims here.
    /// `observe` runs inside the agent's loop, so it must be quick and must not block.
    pub fn with_observer(mut self, observe: Observer) -> Self {
        self.observer = Some(observe);
        self
    }

    /// Authenticates every election message with `keys` (see [`ClusterKeys`]): what this
    /// agent publishes is sealed with the first key, and what it receives must be sealed
    /// with one of them, or it is counted ([`Stats::unauthenticated`](crate::Stats)) and
    /// dropped. Every agent of a cluster needs the keys; an agent without them hears nothing
    /// from one with them.
    pub fn with_cluster_keys(mut self, keys: ClusterKeys) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Runs the driver with the simulator's fault sites (and coverage probe): see
    /// [`fault_sites`](crate::fault_sites).
    #[cfg(feature = "fault-sites")]
    pub fn with_fault_sites(mut self, sites: crate::fault_sites::FaultSites) -> Self {
        self.sites = Some(Arc::new(sites));
        self
    }

    /// The configuration in force.
    pub fn cfg(&self) -> &MembershipCfg {
        &self.cfg
    }

    /// A handle to watch, steer and stop the agent. When the last handle (and every clone of
    /// it) is dropped, the agent releases its lease and stops: an agent nobody can see must
    /// not hold a lease. An agent that never had a handle runs until stopped otherwise.
    pub fn handle(&self) -> MembershipHandle {
        MembershipHandle::new(self.shared.clone())
    }

    /// Spawns the agent on the current tokio runtime (hnatsd's `Start`) and returns its
    /// handle; [`MembershipHandle::stop`] is hnatsd's `Stop`.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
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
        #[cfg(feature = "fault-sites")]
        std::hint::black_box(crate::fault_sites::COMPILED_IN);
        let commands = self.commands.take().ok_or(MembershipError::AlreadyRan)?;
        let r = async {
            match self.cfg.algorithm {
                Algorithm::Lease => {
                    let (stored, unreadable) = self.load_state().await;
                    let mut cfg = self.cfg.clone();
                    if unreadable.is_some() {
                        // An unreadable file is not a missing one: never a brand-new cluster.
                        cfg.initial_cluster_state = ClusterState::Existing;
                    }
                    let (sm, mut first) = LeaseElection::new(&cfg, stored, self.clock.now(), self.seed);
                    if let Some(n) = unreadable {
                        first.insert(0, Output::Notice(n));
                    }
                    let subjects = Subjects::new(&self.cfg, Some(sm.me()));
                    self.drive(sm, first, &subjects, (stop, commands)).await
                }
                Algorithm::Allcall => {
                    let subjects = Subjects::new(&self.cfg, None);
                    let (sm, first) = AllcallElection::new(&self.cfg, self.clock.now());
                    self.drive(sm, first, &subjects, (stop, commands)).await
                }
            }
        }
        .instrument(span)
        .await;
        self.shared.finish();
        r
    }

    /// The durable state, or `None` when there is none or it cannot be read (or holds values
    /// out of range); when it could not be read, the notice that says so, after the state
    /// was moved aside (never overwritten). Either way this start cannot prove anything about
    /// earlier runs, and says so loudly.
    async fn load_state(&self) -> (Option<Durable>, Option<Notice>) {
        let advice = "this agent grants and campaigns only after one lease time and after learning the \
                      highest token from its peers; if this is the first start of a brand-new cluster, \
                      set initial_cluster_state = new";
        let loaded = self.storage.load().await.and_then(|d| match d {
            Some(d) if d.incarnation > MAX_COUNTER || d.max_token > MAX_COUNTER => {
                Err(StorageError(format!("values out of range in {d:?}")))
            }
            d => Ok(d),
        });
        match loaded {
            Ok(Some(d)) => (Some(d), None),
            Ok(None) => {
                if self.cfg.initial_cluster_state == ClusterState::Existing {
                    warn!("starting with no durable state: {advice}");
                }
                (None, None)
            }
            Err(e) => {
                self.shared.count(|s| s.storage_errors += 1);
                let moved_to = match self.storage.set_aside().await {
                    Ok(to) => to,
                    Err(e2) => {
                        // Kept where it is: the next save would replace it, so say so.
                        tracing::error!(error = %e2, "could not move the unreadable state aside");
                        None
                    }
                };
                tracing::error!(error = %e, moved_to = ?moved_to, "durable state is unreadable, moved aside and treated as lost: {advice}");
                (
                    None,
                    Some(Notice::StateUnreadable {
                        error: e.to_string(),
                        moved_to,
                    }),
                )
            }
        }
    }

    /// The driver loop, the same for every algorithm.
    async fn drive<M: Machine>(
        &self,
        mut sm: M,
        first: Vec<Output>,
        subjects: &Subjects,
        (mut stop, commands): (oneshot::Receiver<()>, mpsc::UnboundedReceiver<Command>),
    ) -> Result<(), MembershipError> {
        // Commands from handles and changes of the connection, as one stream of events.
        let connection = self
            .net
            .connection_events()
            .unwrap_or_else(|| futures::stream::pending().boxed());
        let mut control = futures::stream::select(commands.map(Event::Command), connection.map(Event::Connection));
        let mut subs = Inbox::default();
        for s in subjects.listen() {
            subs.push(self.net.subscribe(s).await?);
        }
        sm.started();
        let mut out = first;
        // The sleep for the machine's next wake-up, kept across events while that instant
        // stays the same (most messages do not move it): one timer per deadline, not per event.
        let mut sleep: Option<(Duration, BoxFuture<'static, ()>)> = None;
        loop {
            // A publish can wait long (a client whose outgoing buffer is full while it is
            // disconnected): a stop is served meanwhile, and what was left is not carried out.
            let carried = self
                .carry_out_or_stop(std::mem::take(&mut out), subjects, &mut stop)
                .await;
            match carried {
                None => break,
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    // Fail-stop: a promise or token that cannot be made durable must not be
                    // used, and a node that cannot persist must not keep granting.
                    tracing::error!(error = %e, "cannot save durable state; stopping");
                    let last = sm.stop(self.clock.now());
                    self.flush(last, subjects).await;
                    return Err(e.into());
                }
            }
            let wake = sm.next_wakeup();
            sleep.take_if(|(at, _)| *at != wake);
            let (_, timer) = sleep.get_or_insert_with(|| (wake, self.clock.sleep_until(wake)));
            let event = next_event(&mut stop, &mut subs, &mut control, timer).await;
            if matches!(event, Event::Timer) {
                // A finished future must not be polled again.
                sleep = None;
            }
            #[cfg(feature = "fault-sites")]
            self.stall(&event).await;
            let now = self.clock.now();
            out = match event {
                Event::Stop => break,
                Event::Closed => {
                    warn!("every subscription ended: the network is closed; stopping");
                    let last = sm.stop(self.clock.now());
                    self.flush(last, subjects).await;
                    return Err(NetError::Closed.into());
                }
                Event::Timer if now >= wake => sm.tick(now, self.clock.wall()),
                Event::Timer => continue,
                Event::Message(msg) => self.input(&mut sm, now, subjects, msg),
                Event::Command(Command::Resign) => sm.resign(now),
                Event::Command(Command::Campaign) => sm.campaign(now),
                Event::Connection(c) => {
                    let mut o = vec![Output::Notice(Notice::Connection(c))];
                    o.extend(sm.connection(now, c));
                    o
                }
            };
            #[cfg(feature = "fault-sites")]
            if let Some(sites) = &self.sites {
                sites.probe(now, sm.probe(now));
            }
        }
        let last = sm.stop(self.clock.now());
        self.flush(last, subjects).await;
        info!("{} agent stopped", self.cfg.algorithm);
        Ok(())
    }

    /// Carries out one step's outputs while serving a stop: `None` if the stop came first
    /// (what was left is not carried out). With the planted `BlockingDriver`, the stop waits.
    async fn carry_out_or_stop(
        &self,
        out: Vec<Output>,
        subjects: &Subjects,
        stop: &mut oneshot::Receiver<()>,
    ) -> Option<Result<(), StorageError>> {
        let carried = self.carry_out(out, subjects);
        if self.cfg.bug_knobs.has(Bug::BlockingDriver) {
            Some(carried.await)
        } else {
            match select(stop, std::pin::pin!(carried)).await {
                Either::Left(_) => None,
                Either::Right((r, _)) => Some(r),
            }
        }
    }

    /// Carries out a stopping machine's last outputs (its claim has ended: the notice comes
    /// first, and the release goes out if the connection takes it within [`STOP_FLUSH`]),
    /// so a stop never waits on the network for longer.
    async fn flush(&self, last: Vec<Output>, subjects: &Subjects) {
        if crate::clock::timeout(&*self.clock, STOP_FLUSH, self.carry_out(last, subjects))
            .await
            .is_none()
        {
            warn!("the release did not go out within {STOP_FLUSH:?}: peers wait for the lease to run out");
        }
    }

    /// Feeds one message to the machine; a malformed or out-of-range one is counted and
    /// dropped.
    fn input<M: Machine>(&self, sm: &mut M, now: Duration, subjects: &Subjects, mut msg: Message) -> Vec<Output> {
        let Some(topic) = subjects.topic(&msg.subject) else {
            return Vec::new();
        };
        if let Some(keys) = &self.keys {
            match keys.open(&msg.subject, &msg.payload) {
                Ok(body) => msg.payload = body,
                Err(e) => {
                    self.shared.count(|s| s.unauthenticated += 1);
                    debug!(?topic, error = %e, "dropped an unauthenticated message");
                    return Vec::new();
                }
            }
        }
        let rejected = sm.rejected();
        let out = sm
            .on_message(now, topic, msg, self.cfg.max_message)
            .unwrap_or_else(|e| {
                self.shared.count(|s| s.malformed += 1);
                debug!(?topic, error = %e, "dropped a malformed message");
                Vec::new()
            });
        let more = sm.rejected().saturating_sub(rejected);
        if more > 0 {
            self.shared.count(|s| s.out_of_range += more);
            debug!(?topic, "dropped a message with a value out of range");
        }
        out
    }

    /// Carries out the machine's outputs in order; stops at the first save that fails.
    async fn carry_out(&self, out: Vec<Output>, subjects: &Subjects) -> Result<(), StorageError> {
        // The publishes of one step wait for the network one beat at the most, together (a
        // client whose outgoing buffer is full takes each only as it drains); what is still
        // waiting then is dropped and counted, as the protocol tolerates lost messages. So
        // timers and incoming messages are served at least every beat whatever the network does.
        let mut budget: Option<Duration> = None;
        let mut out = std::collections::VecDeque::from(out);
        // The copy of a reply the `double_reply` fault site sends goes first, then the reply.
        #[cfg(feature = "fault-sites")]
        let mut copied = false;
        while let Some(o) = out.pop_front() {
            #[cfg(feature = "fault-sites")]
            if let Output::Publish(p) = &o {
                let blocking = self.cfg.bug_knobs.has(Bug::BlockingDriver);
                if !std::mem::take(&mut copied) && !blocking && self.double_reply(p) {
                    out.push_front(o.clone());
                    copied = true;
                }
            }
            match o {
                Output::Publish(p) if self.cfg.bug_knobs.has(Bug::BlockingDriver) => self.publish(subjects, p).await,
                Output::Publish(p) => {
                    let mut publish = std::pin::pin!(self.publish(subjects, p));
                    if futures::poll!(publish.as_mut()).is_ready() {
                        continue;
                    }
                    let now = self.clock.now();
                    let left = budget.get_or_insert(now + self.cfg.beat).saturating_sub(now);
                    if left.is_zero() || crate::clock::timeout(&*self.clock, left, publish).await.is_none() {
                        self.shared.count(|s| s.publishes_dropped += 1);
                    }
                }
                Output::Persist(d) => {
                    #[cfg(feature = "fault-sites")]
                    self.site_delay(crate::fault_sites::Site::SlowSave).await;
                    if let Err(e) = self.storage.save(&d).await {
                        self.shared.count(|s| s.storage_errors += 1);
                        warn!(error = %e, "could not save durable state; dropping what depended on it");
                        return Err(e);
                    }
                }
                Output::Notice(n) => {
                    let now = self.clock.now();
                    if let Some(observe) = &self.observer {
                        observe(now, &n);
                    }
                    self.shared.notice(now, n);
                }
            }
        }
        Ok(())
    }

    /// A fault site's delay, if it fires now.
    #[cfg(feature = "fault-sites")]
    async fn site_delay(&self, site: crate::fault_sites::Site) {
        let delay = self.sites.as_ref().and_then(|s| s.delay(self.clock.now(), site));
        if let Some(d) = delay {
            self.clock.sleep(d).await;
        }
    }

    /// A late timer or a stall before a message, if its fault site fires.
    #[cfg(feature = "fault-sites")]
    async fn stall(&self, event: &Event) {
        use crate::fault_sites::Site;
        match event {
            Event::Timer => self.site_delay(Site::LateTimer).await,
            Event::Message(_) => self.site_delay(Site::LongPause).await,
            _ => {}
        }
    }

    /// Whether `p` is a reply that the `double_reply` fault site publishes twice now.
    #[cfg(feature = "fault-sites")]
    fn double_reply(&self, p: &Publish) -> bool {
        matches!(p, Publish::Reply { .. } | Publish::Recovered { .. })
            && self
                .sites
                .as_ref()
                .is_some_and(|s| s.fired(self.clock.now(), crate::fault_sites::Site::DoubleReply))
    }

    async fn publish(&self, subjects: &Subjects, mut p: Publish) {
        if let Publish::Heartbeat(h) = &mut p {
            // The informational wall-clock expiry, as hnatsd reports it.
            if let Some(l) = &h.lease {
                h.loc.lease_expires = Some(wall_plus(self.clock.wall(), Duration::from_millis(l.remaining_ms)));
            }
        }
        let payload = match &p {
            Publish::Heartbeat(h) => {
                let mut last = self.last_beat.lock().unwrap_or_else(|e| e.into_inner());
                match &*last {
                    Some((beat, bytes)) if beat == h => bytes.clone(),
                    _ => last.insert((h.clone(), encode(h))).1.clone(),
                }
            }
            Publish::Request(r) => encode(r),
            Publish::Reply { reply, .. } => encode(reply),
            Publish::Release(r) => encode(r),
            Publish::Recover(r) => encode(r),
            Publish::Recovered { answer, .. } => encode(answer),
            Publish::Allcall(loc) | Publish::Pong { loc, .. } => encode(loc),
            Publish::Report(_, list) => encode(list),
        };
        let (subject, reply) = subjects.route(&p);
        let payload = match &self.keys {
            Some(keys) => keys.seal(subject, &payload),
            None => payload,
        };
        if let Err(e) = self.net.publish(subject, reply, payload).await {
            self.shared.count(|s| s.publish_errors += 1);
            debug!(subject, error = %e, "publish failed");
        }
    }
}

/// How long a stopping agent waits for its last publishes (a leader's release) to go out.
const STOP_FLUSH: Duration = Duration::from_secs(1);

/// Waits for the driver's next event: a stop, a message, a command or a change of the
/// connection, or the machine's timer (`timer`), polled in that order.
async fn next_event(
    stop: &mut oneshot::Receiver<()>,
    subs: &mut Inbox,
    control: &mut (impl Stream<Item = Event> + Unpin),
    timer: &mut BoxFuture<'static, ()>,
) -> Event {
    // A due timer goes before waiting messages: a step may hold the loop a beat (its
    // publishes on a congested connection), and with messages first a steady stream of them
    // would keep the timers (heartbeats, a holder's renewal) from ever running.
    match select(stop, select(timer, select(subs.next(), control.next()))).await {
        Either::Left(_) => Event::Stop,
        Either::Right((Either::Left(((), _)), _)) => Event::Timer,
        Either::Right((Either::Right((Either::Left((Some(msg), _)), _)), _)) => Event::Message(msg),
        // Every subscription ended: the network is gone for good.
        Either::Right((Either::Right((Either::Left((None, _)), _)), _)) => Event::Closed,
        Either::Right((Either::Right((Either::Right((Some(c), _)), _)), _)) => c,
        // The command channel lives as long as the shared state; should it close, stop.
        Either::Right((Either::Right((Either::Right((None, _)), _)), _)) => Event::Stop,
    }
}

/// What woke the driver.
enum Event {
    Stop,
    Closed,
    Timer,
    Message(Message),
    Command(Command),
    Connection(Connection),
}

/// What the driver needs of an election state machine.
trait Machine {
    /// Logs the start of the run.
    fn started(&self);
    /// When the next timer is due.
    fn next_wakeup(&self) -> Duration;
    /// Timers due at `now` (`wall` is the wall clock then).
    fn tick(&mut self, now: Duration, wall: SystemTime) -> Vec<Output>;
    /// One message on one of the agent's subjects.
    fn on_message(&mut self, now: Duration, topic: Topic, msg: Message, max: usize) -> Result<Vec<Output>, WireError>;
    /// The end of the run.
    fn stop(&mut self, now: Duration) -> Vec<Output>;
    /// Give up the lease and stop campaigning.
    fn resign(&mut self, now: Duration) -> Vec<Output>;
    /// Campaign again.
    fn campaign(&mut self, now: Duration) -> Vec<Output>;
    /// The connection to the server changed.
    fn connection(&mut self, now: Duration, c: Connection) -> Vec<Output>;
    /// Messages dropped so far for values out of range.
    fn rejected(&self) -> u64;
    /// The abstract state at `now`, for the simulator's coverage.
    #[cfg(feature = "fault-sites")]
    fn probe(&self, now: Duration) -> crate::fault_sites::Probe;
}

impl Machine for LeaseElection {
    fn started(&self) {
        info!(incarnation = self.me().inc, quorum = self.timing().quorum, hold = ?self.timing().hold, "lease agent started");
    }
    fn next_wakeup(&self) -> Duration {
        LeaseElection::next_wakeup(self)
    }
    fn tick(&mut self, now: Duration, _wall: SystemTime) -> Vec<Output> {
        LeaseElection::tick(self, now)
    }
    fn on_message(&mut self, now: Duration, topic: Topic, msg: Message, max: usize) -> Result<Vec<Output>, WireError> {
        Ok(match topic {
            Topic::Heartbeat => self.on_heartbeat(now, &*decode_shared::<Heartbeat>(&msg.payload, max)?),
            Topic::Request => match msg.reply {
                Some(to) => self.on_request(
                    now,
                    Arc::unwrap_or_clone(decode_shared::<LeaseRequest>(&msg.payload, max)?),
                    to,
                ),
                None => Vec::new(),
            },
            Topic::Release => self.on_release(
                now,
                Arc::unwrap_or_clone(decode_shared::<LeaseRelease>(&msg.payload, max)?),
            ),
            Topic::Inbox => self.on_reply(now, decode::<LeaseReply>(&msg.payload, max)?),
            Topic::Recover => match msg.reply {
                Some(to) => self.on_recover(
                    now,
                    Arc::unwrap_or_clone(decode_shared::<LeaseRecover>(&msg.payload, max)?),
                    to,
                ),
                None => Vec::new(),
            },
            Topic::RecoveryInbox => self.on_recovered(now, decode::<LeaseRecovered>(&msg.payload, max)?),
            Topic::Allcall | Topic::Allreply => Vec::new(),
        })
    }
    fn stop(&mut self, now: Duration) -> Vec<Output> {
        LeaseElection::stop(self, now)
    }
    fn resign(&mut self, now: Duration) -> Vec<Output> {
        LeaseElection::resign(self, now)
    }
    fn campaign(&mut self, now: Duration) -> Vec<Output> {
        LeaseElection::campaign(self, now)
    }
    fn connection(&mut self, now: Duration, c: Connection) -> Vec<Output> {
        LeaseElection::connection(self, now, c)
    }
    fn rejected(&self) -> u64 {
        LeaseElection::rejected(self)
    }
    #[cfg(feature = "fault-sites")]
    fn probe(&self, now: Duration) -> crate::fault_sites::Probe {
        LeaseElection::probe(self, now)
    }
}

impl Machine for AllcallElection {
    fn started(&self) {
        info!("allcall agent started");
    }
    fn next_wakeup(&self) -> Duration {
        AllcallElection::next_wakeup(self)
    }
    fn tick(&mut self, now: Duration, wall: SystemTime) -> Vec<Output> {
        AllcallElection::tick(self, now, OffsetDateTime::from(wall))
    }
    fn on_message(&mut self, _now: Duration, topic: Topic, msg: Message, max: usize) -> Result<Vec<Output>, WireError> {
        Ok(match topic {
            Topic::Allcall => self.on_allcall(msg.reply),
            Topic::Allreply => {
                self.on_pong(Arc::unwrap_or_clone(decode_shared::<AgentLoc>(&msg.payload, max)?));
                Vec::new()
            }
            _ => Vec::new(),
        })
    }
    fn stop(&mut self, now: Duration) -> Vec<Output> {
        AllcallElection::stop(self, now)
    }
    fn resign(&mut self, _now: Duration) -> Vec<Output> {
        // ALLCALL elects whoever ranks best each beat; there is no lease to give up.
        warn!("resign is not supported by the allcall algorithm; ignored");
        Vec::new()
    }
    fn campaign(&mut self, _now: Duration) -> Vec<Output> {
        Vec::new()
    }
    fn connection(&mut self, _now: Duration, _c: Connection) -> Vec<Output> {
        Vec::new()
    }
    fn rejected(&self) -> u64 {
        AllcallElection::rejected(self)
    }
    #[cfg(feature = "fault-sites")]
    fn probe(&self, _now: Duration) -> crate::fault_sites::Probe {
        use crate::fault_sites::{Probe, Role};
        let role = if self.is_leader() { Role::Leader } else { Role::Follower };
        Probe {
            role,
            ..Probe::default()
        }
    }
}

fn wall_plus(wall: SystemTime, d: Duration) -> OffsetDateTime {
    OffsetDateTime::from(wall + d)
}
