//! The simulated NATS: one server per node, routes between every pair of servers (their
//! shape is [`crate::topology`]).
//!
//! A publish is decided at the sender's server at publish time: for each other server with
//! interest in the subject, the route may be cut (partition), may lose the message, or
//! delivers it after a latency drawn from the scenario's range. Routes keep each publisher's
//! order (a message never overtakes an earlier one on the same route) unless the scenario
//! asks for reordering. Each server delivers from one queue ordered by (delivery time,
//! sequence): a madsim timer armed when a copy is queued rings at its delivery time and the
//! server hands over everything then due, in order. A paused node's server holds its backlog
//! and delivers it in order on resume; a killed node's server loses its queue and
//! subscriptions.
//!
//! Routes between servers follow nats-server's ([`crate::routes`]): a cut or a stopped server
//! holds a route's bytes until it clears or the route goes stale and closes; a closed route is
//! dialled again on nats-server's schedule. A client that lost its server reconnects on the
//! NATS adapter's schedule ([`leasehold::transport::reconnect_delay`]). A subscriber that
//! stops reading (a slow consumer) has what comes for it kept up to its pending limits, the
//! rest dropped. Latencies may be anything down to zero: each delivery is armed for its exact
//! instant.
//!
//! The server is not a task: a task would be polled once per delivery, and madsim charges
//! every poll a random draw and 50-100 ns of simulated time, which is neither NATS's cost nor
//! anything the agents can tell apart from a slightly different latency.
//!
//! madsim's own `Endpoint` network is not used for routes: it lets messages of one pair
//! overtake each other, and the per-publisher order is part of the contract here.

use crate::clock::TrueClock;
use crate::quantum::Quantum;
use crate::routes::{RouteTiming, Routes};
use crate::scenario::DurRange;
use crate::scenario::{MessageFault, MessageKind};
use crate::topology::{Hop, Topology};
use bytes::Bytes;
use leasehold::transport::{check_publish, SubjectTable, DEFAULT_SUBSCRIPTION_CAPACITY};
use leasehold::{BoxFuture, Connection, Message, NetError, Network, Subscription};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Context;
use std::time::Duration;

/// Largest payload a simulated server accepts (NATS' default `max_payload`).
pub(crate) const MAX_PAYLOAD: usize = 1 << 20;

/// Counters of what the fabric did with messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FabricStats {
    /// Publishes accepted.
    pub published: u64,
    /// Copies handed to subscribers.
    pub delivered: u64,
    /// Copies lost to random loss.
    pub lost: u64,
    /// Copies dropped at a cut route.
    pub cut: u64,
    /// Copies delivered a second time (`[network] duplicate`).
    pub duplicated: u64,
    /// Messages published again by a replay fault.
    pub replayed: u64,
    /// Copies a slow consumer's server dropped.
    pub slow_dropped: u64,
    /// Messages the forger published.
    pub forged: u64,
    /// Messages a client buffered while its server was down and sent on reconnecting.
    pub flushed: u64,
    /// Messages a client wrote into a frozen connection, routed when it thawed.
    pub held: u64,
    /// Copies a stopped route held and delivered late, when it cleared before going stale.
    pub route_late: u64,
    /// Copies lost to a route that was closed (stale, or an end down), or held by one that
    /// closed.
    pub route_closed: u64,
    /// Reconnects of clients to their servers.
    pub reconnects: u64,
}

/// Each node's recent publishes, for replay faults: (true time, message), oldest first.
struct Log {
    window: u128,
    by_node: Vec<VecDeque<(u128, Arc<Message>)>>,
}

/// A copy due at a server at `(time, sequence)`; the queue pops the earliest first.
struct Queued {
    due: (u128, u64),
    /// The node whose server it came from (for a fault that names it).
    from: usize,
    msg: Arc<Message>,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    // Reversed: `BinaryHeap` is a max-heap. Sequences are unique, so the order is total.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.due.cmp(&self.due)
    }
}

#[derive(Default)]
struct Server {
    up: bool,
    subs: SubjectTable,
    /// Copies due, by (time, sequence); one message is shared by all its copies.
    queue: BinaryHeap<Queued>,
    /// Its node is paused: copies wait in the queue until it resumes.
    paused: bool,
    /// Its node's client has stopped reading (a slow consumer): copies wait in `pending`, up to
    /// the limits, the rest are dropped.
    slow: bool,
    pending: VecDeque<Arc<Message>>,
    pending_bytes: usize,
    /// The server process is down while its node's agent runs (`server_down`): it routes and
    /// delivers nothing; its subscriptions stay, as its client makes them again on reconnect.
    halted: bool,
    /// Its connection to its node's client is frozen: copies wait in the queue.
    frozen: bool,
    /// Its node's client has dropped its frozen connection: copies for it are lost until the
    /// client reconnects (its subscriptions are made again then).
    detached: bool,
}

/// How many publishes a client keeps while its server is down (async-nats's command channel).
pub(crate) const CLIENT_BUFFER: usize = 2048;

/// A node's client: its connection while its server is down or its connection frozen, and
/// its congestion.
#[derive(Default)]
struct Client {
    /// Disconnected (its server is down, or it dropped a frozen connection): publishes are
    /// buffered (then block), and sent on reconnecting.
    down: bool,
    /// Its connection is frozen (number of the freeze): what it publishes is held in the
    /// connection, and nothing reaches it, until the thaw; it notices at its third
    /// unanswered ping and disconnects.
    frozen: Option<u64>,
    /// Publishes held in a frozen connection, in order.
    held: Vec<Arc<Message>>,
    /// Its ping interval (ns) and when it connected: it pings at every multiple of the
    /// interval since then.
    ping: u128,
    since: u128,
    buffer: VecDeque<Arc<Message>>,
    /// Who follows its connection's changes.
    listeners: Vec<futures::channel::mpsc::UnboundedSender<Connection>>,
    /// Congested: each publish is handed over this long (ns) after the one before it.
    delay: Option<u128>,
    /// When the last publish waiting is handed over (true ns).
    handover: u128,
    /// When it lost its connection (true ns): its reconnect attempts are timed from then.
    lost_at: u128,
    /// The reconnect it has scheduled, if any (a later change of plan voids it).
    reconnect_at: Option<u128>,
}

/// What becomes of a publish a client makes now.
enum Admit {
    /// It goes out at once.
    Now,
    /// It is handed over at this true time (ns), its publisher waiting.
    At(u128),
    /// Its server is down and the buffer is full: the publisher waits for good.
    Full,
}

struct Inner {
    servers: Vec<Server>,
    clients: Vec<Client>,
    topology: Topology,
    /// When the last copy on each route is due, to keep each publisher's order.
    last: Vec<Vec<u128>>,
    reorder: bool,
    rng: ChaCha8Rng,
    seq: u64,
    inboxes: u64,
    stats: FabricStats,
    duplicate: f64,
    log: Option<Log>,
    /// Freezes so far (each freeze's detection names its number).
    freezes: u64,
    /// Quantised time (`[network] tick`), and the arrivals booked at each boundary to come.
    quantum: Option<Quantum>,
    slots: BTreeMap<u128, u64>,
    /// nats-server's routes between hosts (`None`: ideal routes, a cut drops at once and a heal
    /// carries at once, as in quantised time).
    routes: Option<Routes>,
    /// Copies a stopped route holds, per (from server, to server), in order.
    held: BTreeMap<(usize, usize), Vec<Arc<Message>>>,
    /// A subscriber's pending limits: messages, bytes.
    pending_limit: (usize, usize),
}

/// The whole simulated NATS cluster. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Fabric {
    inner: Arc<Mutex<Inner>>,
    truth: TrueClock,
}

impl Fabric {
    /// A fabric for `n` nodes; its random choices come from `seed`.
    pub(crate) fn new(
        n: usize,
        latency: DurRange,
        loss: f64,
        reorder: bool,
        seed: u64,
        start: madsim::time::Instant,
    ) -> Self {
        Fabric {
            inner: Arc::new(Mutex::new(Inner {
                servers: (0..n).map(|_| Server::default()).collect(),
                clients: (0..n).map(|_| Client::default()).collect(),
                topology: Topology::new(n, latency, loss),
                last: vec![vec![0; n]; n],
                reorder,
                rng: ChaCha8Rng::seed_from_u64(seed),
                seq: 0,
                inboxes: 0,
                stats: FabricStats::default(),
                duplicate: 0.0,
                log: None,
                freezes: 0,
                quantum: None,
                slots: BTreeMap::new(),
                routes: None,
                held: BTreeMap::new(),
                pending_limit: (usize::MAX, usize::MAX),
            })),
            truth: TrueClock::new(start),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings node `i`'s server up (at node start), with no subscriptions and nothing queued.
    pub(crate) fn serve(&self, i: usize) {
        let now = self.truth.now();
        let mut g = self.lock();
        let s = &mut g.servers[i];
        s.up = true;
        s.paused = false;
        s.halted = false;
        s.frozen = false;
        s.detached = false;
        s.subs.clear();
        s.queue.clear();
        s.pending.clear();
        s.pending_bytes = 0;
        // A new process: a new client, connected (a congestion of its host's link stays).
        let (delay, ping) = (g.clients[i].delay, g.clients[i].ping);
        g.clients[i] = Client {
            delay,
            ping,
            since: now,
            ..Client::default()
        };
        // It dials every route to a server that runs (a route never closed stays as it is).
        for j in hosts(&g) {
            if j != i && g.servers[j].up && !g.servers[j].halted && g.topology.host_of(i) == i {
                if let Some(r) = g.routes.as_mut() {
                    r.start(i, j, now);
                }
            }
        }
    }

    /// Routes between hosts follow nats-server's `timing`, their random delays drawn from
    /// `seed` (without this, routes are ideal).
    pub(crate) fn set_routes(&self, timing: RouteTiming, seed: u64) {
        let mut g = self.lock();
        let n = g.servers.len();
        g.routes = Some(Routes::new(n, timing, seed));
    }

    /// A subscriber's pending limits (messages, bytes), for slow consumers.
    pub(crate) fn set_pending_limits(&self, msgs: usize, bytes: usize) {
        self.lock().pending_limit = (msgs, bytes);
    }

    /// Node `i`'s client pings its server every `interval` (its agent's
    /// `MembershipCfg::ping_interval`).
    pub(crate) fn set_ping(&self, i: usize, interval: Duration) {
        self.lock().clients[i].ping = interval.as_nanos().max(1);
    }

    /// Node `i` is paused: its server holds what comes due until [`Fabric::resume`].
    pub(crate) fn pause(&self, i: usize) {
        let now = self.truth.now();
        let mut g = self.lock();
        g.servers[i].paused = true;
        reconcile(&mut g, &self.inner, &self.truth, now);
    }

    /// Node `i` resumes: its server delivers its backlog, in order, and goes on as before.
    pub(crate) fn resume(&self, i: usize) {
        let now = self.truth.now();
        let mut g = self.lock();
        g.servers[i].paused = false;
        deliver_due(&mut g, i, now);
        reconcile(&mut g, &self.inner, &self.truth, now);
    }

    /// Node `i` was killed: its server loses its subscriptions and queued messages.
    pub(crate) fn down(&self, i: usize) {
        let now = self.truth.now();
        let mut g = self.lock();
        let s = &mut g.servers[i];
        s.up = false;
        s.paused = false;
        s.frozen = false;
        s.detached = false;
        s.subs.clear();
        s.queue.clear();
        routes_end_down(&mut g, i, now);
        // No longer paused or frozen: its routes are no longer stopped at this end (killed
        // while paused or suspended, nothing would say so before another fault, and its
        // restart would dial routes still stopped, for good).
        reconcile(&mut g, &self.inner, &self.truth, now);
    }

    /// Node `i`'s client hands each publish to its server `delay` after the one before it,
    /// in order, and the publisher waits for it (a client whose outgoing buffer is full and
    /// drains slowly); `None`: at once again (what already waits keeps its turn).
    pub(crate) fn congest(&self, i: usize, delay: Option<Duration>) {
        self.lock().clients[i].delay = delay.map(|d| d.as_nanos());
    }

    /// What becomes of a publish node `i`'s client makes now (one look, on every publish).
    fn admit(&self, i: usize) -> Admit {
        let now = self.truth.now();
        let mut g = self.lock();
        let c = &mut g.clients[i];
        if c.down && c.buffer.len() >= CLIENT_BUFFER {
            return Admit::Full;
        }
        let at = match c.delay {
            Some(d) => c.handover.max(now) + d,
            None if c.handover > now => c.handover,
            None => return Admit::Now,
        };
        c.handover = at;
        Admit::At(at)
    }

    /// Node `i`'s server process goes down (`true`) while its agent runs, or comes back. Down,
    /// it routes and delivers nothing and loses what it had queued; its client hears
    /// `Disconnected` and buffers what it publishes (up to [`CLIENT_BUFFER`], then a publish
    /// waits). Back, the client hears `Reconnected` and sends its buffer at once, in order (the
    /// reconnect flush), and its subscriptions are as they were (made again); a client whose
    /// connection is frozen reconnects at the thaw.
    pub(crate) fn halt_server(&self, i: usize, down: bool) {
        let now = self.truth.now();
        let mut g = self.lock();
        if !g.servers[i].up || g.servers[i].halted == down {
            return;
        }
        g.servers[i].halted = down;
        if down {
            g.servers[i].queue.clear();
            if !g.clients[i].down {
                disconnect(&mut g, i, now);
            }
            routes_end_down(&mut g, i, now);
        } else {
            for j in hosts(&g) {
                if j != i && g.servers[j].up && !g.servers[j].halted {
                    if let Some(r) = g.routes.as_mut() {
                        r.start(i, j, now);
                    }
                }
            }
            if g.clients[i].frozen.is_none() {
                // Refused while the server was down, the client's next attempt finds it.
                let at = reconnect_time(g.clients[i].lost_at, now, false);
                drop(g);
                self.reconnect_at(i, at);
            }
        }
    }

    /// Node `i`'s client reconnects at `at` (true ns), unless its plan changes meanwhile.
    fn reconnect_at(&self, i: usize, at: u128) {
        let now = self.truth.now();
        let mut g = self.lock();
        if at <= now {
            g.clients[i].reconnect_at = None;
            reconnect(&mut g, &self.inner, &self.truth, i, now);
            return;
        }
        g.clients[i].reconnect_at = Some(at);
        drop(g);
        // Reconnecting routes the client's buffer, which arms timers: a task does it, not a
        // timer's wake-up.
        let (inner, truth) = (Arc::downgrade(&self.inner), self.truth.clone());
        madsim::task::spawn(async move {
            truth.timer_at(at).await;
            let Some(inner) = inner.upgrade() else { return };
            let mut g = inner.lock().unwrap_or_else(|e| e.into_inner());
            let ready = g.servers[i].up && !g.servers[i].halted && g.clients[i].frozen.is_none();
            if g.clients[i].reconnect_at == Some(at) && g.clients[i].down && ready {
                g.clients[i].reconnect_at = None;
                reconnect(&mut g, &inner, &truth, i, at.max(truth.now()));
            }
        });
    }

    /// Node `i`'s connection to its server freezes (`true`: a frozen server process, or a
    /// proxy that holds the bytes; nothing fails, nothing arrives) or thaws. Frozen, what the
    /// client publishes is held in the connection and what its server has for it waits. The
    /// client pings every ping interval since it connected and notices at the third ping
    /// left unanswered (async-nats allows two outstanding): it hears `Disconnected`, drops
    /// the connection (what waited for it is lost) and buffers as when its server is down. At
    /// the thaw, the held publishes reach the server, late, and a client that noticed
    /// reconnects and flushes its buffer. Returns whether a connected client's connection
    /// froze (one that is to be noticed).
    pub(crate) fn freeze_connection(&self, i: usize, frozen: bool) -> bool {
        let now = self.truth.now();
        let mut g = self.lock();
        if !g.servers[i].up || g.clients[i].frozen.is_some() == frozen {
            return false;
        }
        if !frozen {
            g.clients[i].frozen = None;
            g.servers[i].frozen = false;
            reconcile(&mut g, &self.inner, &self.truth, now);
            let held = std::mem::take(&mut g.clients[i].held);
            if !g.servers[i].halted {
                for m in &held {
                    g.stats.held += 1;
                    route(&mut g, &self.inner, &self.truth, i, m, now);
                }
                if g.clients[i].down {
                    // An attempt made while the server was stopped hangs until it answers.
                    let at = reconnect_time(g.clients[i].lost_at, now, true);
                    drop(g);
                    self.reconnect_at(i, at);
                } else {
                    deliver_due(&mut g, i, now);
                }
            }
            return false;
        }
        g.freezes += 1;
        let freeze = g.freezes;
        g.servers[i].frozen = true;
        // A stopped server answers no route's pings either.
        reconcile(&mut g, &self.inner, &self.truth, now);
        let c = &mut g.clients[i];
        c.frozen = Some(freeze);
        if c.down {
            // Already disconnected: nothing to notice.
            return false;
        }
        // Pings go out at every multiple of the interval since the client connected; the
        // first after the freeze is unanswered, so is the second, and the third finds two
        // outstanding.
        let p = c.ping.max(1);
        let first = now + p - now.saturating_sub(c.since) % p;
        let at = first + 2 * p;
        let notice = futures::task::waker(Arc::new(PingsUnanswered {
            fabric: Arc::downgrade(&self.inner),
            node: i,
            freeze,
            at,
        }));
        let mut timer = self.truth.timer_at(at);
        let _ = Pin::new(&mut timer).poll(&mut Context::from_waker(&notice));
        true
    }

    /// Changes the network's shape (cuts, datacenters, loss, latency).
    pub(crate) fn topology<T>(&self, change: impl FnOnce(&mut Topology) -> T) -> T {
        let now = self.truth.now();
        let mut g = self.lock();
        let out = change(&mut g.topology);
        reconcile(&mut g, &self.inner, &self.truth, now);
        out
    }

    /// Delivers each copy a second time, later, with probability `p`.
    pub(crate) fn set_quantum(&self, q: Option<Quantum>) {
        self.lock().quantum = q;
    }

    /// A targeted fault on the copy from `from` to `to` of `kind` due `nth` (0: first; quantised
    /// time only): lost, delivered a tick later after the copies sent after it, or delivered twice.
    /// Whether there was one.
    pub(crate) fn message_fault(
        &self,
        fault: MessageFault,
        from: usize,
        to: usize,
        kind: MessageKind,
        nth: usize,
    ) -> bool {
        let now = self.truth.now();
        let mut g = self.lock();
        let Some(q) = g.quantum else { return false };
        let mut copies = std::mem::take(&mut g.servers[to].queue).into_vec();
        copies.sort_by(|a, b| b.cmp(a));
        // Only copies its subscribers take count: in quantised time a server also queues what
        // is addressed to another agent's inbox, which reaches no one there.
        let subs = &g.servers[to].subs;
        let found = (0..copies.len())
            .filter(|k| {
                let c = &copies[*k];
                c.from == from
                    && MessageKind::of_subject(&c.msg.subject) == Some(kind)
                    && subs.has_interest(&c.msg.subject)
            })
            .nth(nth);
        let Some(k) = found else {
            g.servers[to].queue = copies.into();
            return false;
        };
        let boundary = q.boundary_of(copies[k].due.0);
        let msg = match fault {
            MessageFault::Drop | MessageFault::Delay => copies.remove(k).msg,
            MessageFault::Duplicate => copies[k].msg.clone(),
        };
        g.servers[to].queue = copies.into();
        match fault {
            MessageFault::Drop => g.stats.cut += 1,
            MessageFault::Delay => {
                let at = book(&mut g, q, q.next(boundary), now);
                enqueue(&mut g, &self.inner, &self.truth, from, to, at, &msg, now);
            }
            MessageFault::Duplicate => {
                g.stats.duplicated += 1;
                let at = book(&mut g, q, boundary, now);
                enqueue(&mut g, &self.inner, &self.truth, from, to, at, &msg, now);
            }
        }
        true
    }

    pub(crate) fn set_duplicate(&self, p: f64) {
        self.lock().duplicate = p;
    }

    /// Keeps every node's publishes of the last `window`, so they can be replayed.
    pub(crate) fn keep_log(&self, window: Duration) {
        let mut g = self.lock();
        let n = g.servers.len();
        g.log = Some(Log {
            window: window.as_nanos(),
            by_node: (0..n).map(|_| VecDeque::new()).collect(),
        });
    }

    /// Node `i`'s server starts (`true`) or stops dropping every message to it.
    pub(crate) fn set_slow(&self, i: usize, slow: bool) {
        let now = self.truth.now();
        let mut g = self.lock();
        g.servers[i].slow = slow;
        if !slow {
            // It reads again: what was kept for it comes first, in order.
            let Inner { servers, stats, .. } = &mut *g;
            let s = &mut servers[i];
            s.pending_bytes = 0;
            while let Some(m) = s.pending.pop_front() {
                stats.delivered += s.subs.deliver(&m);
            }
            deliver_due(&mut g, i, now);
        }
    }

    /// Publishes again, now and in order, what node `i` published in the last `window` (a
    /// client flushing its reconnect buffer); returns how many. Nothing if its server is down.
    pub(crate) fn replay(&self, i: usize, window: Duration) -> usize {
        let now = self.truth.now();
        let mut g = self.lock();
        if !g.servers[i].up {
            return 0;
        }
        let since = now.saturating_sub(window.as_nanos());
        let again: Vec<Arc<Message>> = g.log.as_ref().map_or_else(Vec::new, |l| {
            l.by_node[i]
                .iter()
                .filter(|(t, _)| *t >= since)
                .map(|(_, m)| m.clone())
                .collect()
        });
        for m in &again {
            g.stats.replayed += 1;
            route(&mut g, &self.inner, &self.truth, i, m, now);
        }
        again.len()
    }

    /// Publishes a message from a stranger connected to node `from`'s server (the forger);
    /// returns whether it went out (the server is up and the message is one it accepts).
    pub(crate) fn inject(&self, from: usize, subject: &str, reply: Option<&str>, payload: Bytes) -> bool {
        if check_publish(subject, reply, payload.len(), MAX_PAYLOAD).is_err() {
            return false;
        }
        let now = self.truth.now();
        let mut g = self.lock();
        if !g.servers[from].up || g.servers[from].halted {
            return false;
        }
        g.stats.forged += 1;
        let msg = Arc::new(Message {
            subject: subject.to_string(),
            reply: reply.map(str::to_string),
            payload,
        });
        route(&mut g, &self.inner, &self.truth, from, &msg, now);
        true
    }

    /// Drops every queued and logged message. Called when a run is over: a task that
    /// outlives its runtime must not keep a whole run's messages alive.
    pub(crate) fn clear(&self) {
        let mut g = self.lock();
        for s in g.servers.iter_mut() {
            s.queue.clear();
            s.pending.clear();
        }
        g.held.clear();
        g.log = None;
    }

    /// Counters so far.
    pub(crate) fn stats(&self) -> FabricStats {
        self.lock().stats
    }

    /// A connection to node `i`'s server.
    pub(crate) fn client(&self, i: usize) -> SimNet {
        SimNet {
            fabric: self.clone(),
            node: i,
            watch: None,
        }
    }

    /// A connection to node `i`'s server whose every publish `watch` sees first.
    pub(crate) fn watched_client(&self, i: usize, watch: PublishWatch) -> SimNet {
        SimNet {
            watch: Some(watch),
            ..self.client(i)
        }
    }

    fn publish(&self, from: usize, subject: &str, reply: Option<&str>, payload: Bytes) -> Result<(), NetError> {
        check_publish(subject, reply, payload.len(), MAX_PAYLOAD)?;
        let now = self.truth.now();
        let mut g = self.lock();
        if !g.servers[from].up {
            return Err(NetError::Disconnected("server down".into()));
        }
        if g.clients[from].frozen.is_some() && !g.clients[from].down {
            // Written into the frozen connection: it reaches the server at the thaw.
            g.clients[from].held.push(Arc::new(Message {
                subject: subject.to_string(),
                reply: reply.map(str::to_string),
                payload,
            }));
            return Ok(());
        }
        if g.clients[from].down {
            // Kept for the reconnect (the caller checked there is room).
            g.clients[from].buffer.push_back(Arc::new(Message {
                subject: subject.to_string(),
                reply: reply.map(str::to_string),
                payload,
            }));
            return Ok(());
        }
        g.stats.published += 1;
        let msg = Arc::new(Message {
            subject: subject.to_string(),
            reply: reply.map(str::to_string),
            payload,
        });
        if let Some(log) = &mut g.log {
            let q = &mut log.by_node[from];
            while q.front().is_some_and(|(t, _)| t + log.window < now) {
                q.pop_front();
            }
            q.push_back((now, msg.clone()));
        }
        route(&mut g, &self.inner, &self.truth, from, &msg, now);
        Ok(())
    }

    fn subscribe(&self, node: usize, subject: &str) -> Result<Subscription, NetError> {
        let mut g = self.lock();
        let s = &mut g.servers[node];
        if !s.up {
            leasehold::transport::validate_subject(subject, true)?;
            return Err(NetError::Disconnected("server down".into()));
        }
        s.subs.subscribe(subject, DEFAULT_SUBSCRIPTION_CAPACITY)
    }
}

/// Sends one copy of `msg` from `from`'s server to every server with interest, each decided
/// on its route at `now`: cut, lost, or queued after a latency (and perhaps again later).
fn route(g: &mut Inner, fabric: &Arc<Mutex<Inner>>, truth: &TrueClock, from: usize, msg: &Arc<Message>, now: u128) {
    for to in 0..g.servers.len() {
        let s = &g.servers[to];
        // Routes carry only what the far server has interest in, as NATS routes do. In
        // quantised time interest is judged on arrival: agents started in one instant all hear
        // each other's first messages, as in the checker.
        let interest = g.quantum.is_some() || s.subs.has_interest(&msg.subject);
        if !s.up || s.halted || s.detached || !interest {
            continue;
        }
        let mut at = now;
        if to != from {
            let (a, b) = (g.topology.host_of(from), g.topology.host_of(to));
            if a != b && g.routes.is_some() {
                if !route_up(g, a, b, now) {
                    g.stats.route_closed += 1;
                    continue;
                }
                if g.topology.is_cut(from, to) {
                    // TCP holds it until the route clears or closes.
                    g.held.entry((from, to)).or_default().push(msg.clone());
                    continue;
                }
            }
            let Inner { topology, rng, .. } = &mut *g;
            match topology.hop(from, to, rng) {
                Hop::Cut => {
                    g.stats.cut += 1;
                    continue;
                }
                Hop::Lost => {
                    g.stats.lost += 1;
                    continue;
                }
                Hop::After(delay) => at += delay,
            }
            if let Some(q) = g.quantum {
                at = book(g, q, q.boundary_after(now), now);
            }
        }
        // Never before the copy ahead of it on the route (at the same instant, the sequence
        // keeps them in order).
        if !g.reorder {
            at = at.max(g.last[from][to]);
        }
        g.last[from][to] = at;
        enqueue(g, fabric, truth, from, to, at, msg, now);
        // A duplicate arrives once more, as late again (it may overtake nothing it followed).
        if g.duplicate > 0.0 && g.rng.gen_bool(g.duplicate.min(1.0)) {
            g.stats.duplicated += 1;
            enqueue(g, fabric, truth, from, to, at + (at - now).max(1), msg, now);
        }
    }
}

/// The next arrival at `boundary` (quantised time): its true time.
fn book(g: &mut Inner, q: Quantum, boundary: u128, now: u128) -> u128 {
    g.slots.retain(|b, _| *b > now);
    let slot = g.slots.entry(boundary).or_insert(0);
    *slot += 1;
    q.arrival(boundary, *slot - 1)
}

/// Queues a copy from `from`'s server for server `to` at `at` and makes sure it is delivered
/// then.
#[allow(clippy::too_many_arguments)]
fn enqueue(
    g: &mut Inner,
    fabric: &Arc<Mutex<Inner>>,
    truth: &TrueClock,
    from: usize,
    to: usize,
    at: u128,
    msg: &Arc<Message>,
    now: u128,
) {
    g.seq += 1;
    let seq = g.seq;
    g.servers[to].queue.push(Queued {
        due: (at, seq),
        from,
        msg: msg.clone(),
    });
    // (`route` queues only for servers that are up.)
    if at <= now && !g.servers[to].paused {
        // Due now (the publisher's own server, a zero latency): it goes now, after anything
        // due before it. (A paused server's copy, from a replay or a stranger, waits for a
        // timer like any other: a resume in this very instant would find it not yet due.)
        deliver_due(g, to, at);
        return;
    }
    let due = futures::task::waker(Arc::new(Due {
        fabric: Arc::downgrade(fabric),
        server: to,
        at,
    }));
    // Polled once while not yet elapsed, a madsim sleep arms a timer that wakes `due` at
    // `at` exactly (not floored to madsim's 1 ms) whether or not the sleep is kept.
    let mut timer = truth.timer_at(at.max(now + 1));
    let _ = Pin::new(&mut timer).poll(&mut Context::from_waker(&due));
}

/// Hands server `i`'s subscribers every copy due by `by`, in order, unless its node is paused.
fn deliver_due(g: &mut Inner, i: usize, by: u128) {
    let Inner {
        servers,
        stats,
        pending_limit: (max_msgs, max_bytes),
        ..
    } = g;
    let s = &mut servers[i];
    if !s.up || s.paused || s.halted || s.frozen {
        return;
    }
    while s.queue.peek().is_some_and(|c| c.due.0 <= by) {
        let Some(Queued { msg, .. }) = s.queue.pop() else { break };
        if !s.slow {
            stats.delivered += s.subs.deliver(&msg);
        } else if !s.subs.has_interest(&msg.subject) {
            // Nobody waits for it: nothing is pending.
        } else if s.pending.len() < *max_msgs && s.pending_bytes + msg.payload.len() <= *max_bytes {
            s.pending_bytes += msg.payload.len();
            s.pending.push_back(msg);
        } else {
            // Over the pending limits: dropped, as NATS drops a slow consumer's messages.
            stats.slow_dropped += 1;
        }
    }
}

/// The hosts (servers with routes of their own), in order.
fn hosts(g: &Inner) -> Vec<usize> {
    (0..g.servers.len()).filter(|i| g.topology.host_of(*i) == *i).collect()
}

/// Whether the route between hosts `a` and `b` carries now; what it held is lost if it closed.
fn route_up(g: &mut Inner, a: usize, b: usize, now: u128) -> bool {
    let Some(r) = g.routes.as_mut() else { return true };
    let v = r.at(a, b, now);
    if v.closed {
        drop_held(g, a, b);
    }
    v.up
}

/// What the route between hosts `a` and `b` held is lost.
fn drop_held(g: &mut Inner, a: usize, b: usize) {
    let Inner {
        held, topology, stats, ..
    } = g;
    held.retain(|(from, to), copies| {
        let (x, y) = (topology.host_of(*from), topology.host_of(*to));
        let on = (x, y) == (a, b) || (x, y) == (b, a);
        if on {
            stats.route_closed += copies.len() as u64;
        }
        !on
    });
}

/// Tells every route whether it is clear now (no cut either way, no end stopped); a route that
/// cleared before going stale delivers what it held, late and in order.
fn reconcile(g: &mut Inner, fabric: &Arc<Mutex<Inner>>, truth: &TrueClock, now: u128) {
    if g.routes.is_none() {
        return;
    }
    let hosts = hosts(g);
    for (k, &a) in hosts.iter().enumerate() {
        for &b in &hosts[k + 1..] {
            let stopped = |i: usize| g.servers[i].paused || g.servers[i].frozen;
            let clear = !g.topology.is_cut(a, b) && !g.topology.is_cut(b, a) && !stopped(a) && !stopped(b);
            let Some(r) = g.routes.as_mut() else { return };
            let v = r.set_clear(a, b, now, clear);
            if v.closed {
                drop_held(g, a, b);
            }
            if v.up && clear {
                release_held(g, fabric, truth, a, b, now);
            }
        }
    }
}

/// The copies held between hosts `a` and `b` go on now, each after its route's latency, in
/// the order they were sent.
fn release_held(g: &mut Inner, fabric: &Arc<Mutex<Inner>>, truth: &TrueClock, a: usize, b: usize, now: u128) {
    let keys: Vec<(usize, usize)> = g
        .held
        .keys()
        .copied()
        .filter(|(from, to)| {
            let (x, y) = (g.topology.host_of(*from), g.topology.host_of(*to));
            (x, y) == (a, b) || (x, y) == (b, a)
        })
        .collect();
    for (from, to) in keys {
        let copies = g.held.remove(&(from, to)).unwrap_or_default();
        for msg in copies {
            if !g.servers[to].up || g.servers[to].halted || g.servers[to].detached {
                continue;
            }
            let Inner { topology, rng, .. } = &mut *g;
            let mut at = now + topology.latency(from, to, rng);
            if !g.reorder {
                at = at.max(g.last[from][to]);
            }
            g.last[from][to] = at;
            g.stats.route_late += 1;
            enqueue(g, fabric, truth, from, to, at, &msg, now);
        }
    }
}

/// Every route of host `i` closes (its server died); nobody dials them until it starts.
fn routes_end_down(g: &mut Inner, i: usize, now: u128) {
    if g.routes.is_none() || g.topology.host_of(i) != i {
        return;
    }
    for j in hosts(g) {
        if j == i {
            continue;
        }
        if let Some(r) = g.routes.as_mut() {
            r.end_down(i, j, now);
        }
        drop_held(g, i, j);
    }
}

/// When a client that lost its connection at `lost` reconnects to a server that answers again
/// at `back`: at its first attempt after that, on the NATS adapter's schedule. `hangs`: the
/// server was stopped rather than down, so an attempt made in the handshake time-out before
/// `back` was left hanging and completes at `back`.
fn reconnect_time(lost: u128, back: u128, hangs: bool) -> u128 {
    let grace = if hangs {
        leasehold::transport::HANDSHAKE_TIMEOUT.as_nanos()
    } else {
        0
    };
    let mut at = lost;
    for attempt in 1.. {
        at += leasehold::transport::reconnect_delay(attempt).as_nanos();
        if at + grace >= back {
            return at.max(back);
        }
    }
    back
}

/// Node `i`'s client loses its connection: it hears `Disconnected`, and what its server had
/// for it is lost.
fn disconnect(g: &mut Inner, i: usize, now: u128) {
    g.servers[i].queue.clear();
    g.servers[i].detached = true;
    let c = &mut g.clients[i];
    c.down = true;
    c.lost_at = now;
    c.reconnect_at = None;
    c.listeners
        .retain(|l| l.unbounded_send(Connection::Disconnected).is_ok());
}

/// Node `i`'s client connects again: it hears `Reconnected`, subscribes again and sends what
/// it buffered, at once and in order (the reconnect flush).
fn reconnect(g: &mut Inner, fabric: &Arc<Mutex<Inner>>, truth: &TrueClock, i: usize, now: u128) {
    g.servers[i].detached = false;
    g.stats.reconnects += 1;
    let c = &mut g.clients[i];
    c.down = false;
    c.listeners
        .retain(|l| l.unbounded_send(Connection::Reconnected).is_ok());
    let flush: Vec<Arc<Message>> = g.clients[i].buffer.drain(..).collect();
    for m in &flush {
        g.stats.flushed += 1;
        route(g, fabric, truth, i, m, now);
    }
}

/// The third unanswered ping of a frozen connection: its client drops it, unless the freeze
/// it was armed for is over. Runs inside madsim's timer wheel, like [`Due`]: it arms nothing.
struct PingsUnanswered {
    fabric: Weak<Mutex<Inner>>,
    node: usize,
    freeze: u64,
    /// When it rings (true ns).
    at: u128,
}

impl futures::task::ArcWake for PingsUnanswered {
    fn wake_by_ref(p: &Arc<Self>) {
        if let Some(inner) = p.fabric.upgrade() {
            let mut g = inner.lock().unwrap_or_else(|e| e.into_inner());
            let c = &g.clients[p.node];
            if c.frozen == Some(p.freeze) && !c.down && g.servers[p.node].up {
                disconnect(&mut g, p.node, p.at);
            }
        }
    }
}

/// The wake-up of a timer armed for server `server`'s copies due at `at`. It runs inside
/// madsim's timer wheel, whose clock may still read a little earlier than `at`; it only
/// delivers (arming a timer here would deadlock the wheel).
struct Due {
    fabric: Weak<Mutex<Inner>>,
    server: usize,
    at: u128,
}

impl futures::task::ArcWake for Due {
    fn wake_by_ref(due: &Arc<Self>) {
        // A run that is over has dropped its fabric; nothing is left to deliver.
        if let Some(inner) = due.fabric.upgrade() {
            let mut g = inner.lock().unwrap_or_else(|e| e.into_inner());
            deliver_due(&mut g, due.server, due.at);
        }
    }
}

/// A congested publish's turn in its client's buffer: given back if the publisher stops
/// waiting before it comes (the message never entered the buffer).
struct Turn {
    fabric: Fabric,
    node: usize,
    at: u128,
    taken: bool,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        let mut g = self.fabric.lock();
        let c = &mut g.clients[self.node];
        // Only the last turn can be given back without moving the others.
        if c.handover == self.at {
            c.handover = self.at.saturating_sub(c.delay.unwrap_or(0));
        }
    }
}

/// What sees every publish a client is asked for (subject and payload), at the call, in
/// program order with everything else its agent does.
pub(crate) type PublishWatch = Arc<dyn Fn(&str, &[u8]) + Send + Sync>;

/// A node's connection to its own simulated NATS server.
#[derive(Clone)]
pub(crate) struct SimNet {
    fabric: Fabric,
    node: usize,
    watch: Option<PublishWatch>,
}

impl Network for SimNet {
    fn publish(&self, subject: &str, reply: Option<&str>, payload: Bytes) -> BoxFuture<'_, Result<(), NetError>> {
        if let Some(w) = &self.watch {
            w(subject, &payload);
        }
        let at = match self.fabric.admit(self.node) {
            Admit::Now => {
                let r = self.fabric.publish(self.node, subject, reply, payload);
                return Box::pin(async move { r });
            }
            // async-nats's publish waits for room in its full buffer, which nothing drains
            // while the server is down.
            Admit::Full => return Box::pin(futures::future::pending()),
            Admit::At(at) => at,
        };
        let (subject, reply) = (subject.to_string(), reply.map(str::to_string));
        // A publisher that gives up waiting (drops the future) gives its turn back.
        let turn = Turn {
            fabric: self.fabric.clone(),
            node: self.node,
            at,
            taken: false,
        };
        Box::pin(async move {
            let mut turn = turn;
            madsim::time::sleep_until(self.fabric.truth.at(at)).await;
            turn.taken = true;
            self.fabric.publish(self.node, &subject, reply.as_deref(), payload)
        })
    }

    fn subscribe(&self, subject: &str) -> BoxFuture<'_, Result<Subscription, NetError>> {
        let r = self.fabric.subscribe(self.node, subject);
        Box::pin(async move { r })
    }

    /// The client's connection changes. Unlike a NATS client's, a connected start says
    /// nothing (every trace would carry a line that tells nothing new); a start while the
    /// server is down says `Disconnected` first.
    fn connection_events(&self) -> Option<futures::stream::BoxStream<'static, Connection>> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let mut g = self.fabric.lock();
        let c = &mut g.clients[self.node];
        if c.down {
            let _ = tx.unbounded_send(Connection::Disconnected);
        }
        c.listeners.push(tx);
        Some(Box::pin(rx))
    }

    fn new_inbox(&self) -> String {
        let mut g = self.fabric.lock();
        g.inboxes += 1;
        format!("_INBOX.sim{}.{}", self.node, g.inboxes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a fresh madsim runtime with a two-server fabric whose routes take 5 ms.
    fn with_fabric(f: impl FnOnce(Fabric) -> BoxFuture<'static, ()> + Send + 'static) {
        let rt = madsim::runtime::Runtime::with_seed_and_config(1, madsim::Config::default());
        rt.block_on(async move {
            let ms5 = Duration::from_millis(5);
            let fabric = Fabric::new(
                2,
                DurRange { lo: ms5, hi: ms5 },
                0.0,
                false,
                7,
                madsim::time::Instant::now(),
            );
            fabric.serve(0);
            fabric.serve(1);
            f(fabric).await
        });
    }

    /// Runs `f` with a three-server fabric of `latency`, its routes as nats-server's (stale
    /// after 4 s, dialled again 1 s after a close, 30 ms after a start).
    fn with_routes(latency: Duration, f: impl FnOnce(Fabric) -> BoxFuture<'static, ()> + Send + 'static) {
        let rt = madsim::runtime::Runtime::with_seed_and_config(1, madsim::Config::default());
        rt.block_on(async move {
            let fabric = Fabric::new(
                3,
                DurRange {
                    lo: latency,
                    hi: latency,
                },
                0.0,
                false,
                7,
                madsim::time::Instant::now(),
            );
            let fixed = |ms| DurRange {
                lo: Duration::from_millis(ms),
                hi: Duration::from_millis(ms),
            };
            fabric.set_routes(
                RouteTiming {
                    stale: fixed(4000),
                    redial: fixed(1000),
                    startup: fixed(30),
                    collide: 1.0,
                },
                3,
            );
            for i in 0..3 {
                fabric.serve(i);
            }
            f(fabric).await
        });
    }

    fn payloads(sub: &mut Subscription) -> Vec<u8> {
        std::iter::from_fn(|| sub.try_next()).map(|m| m.payload[0]).collect()
    }

    async fn publish(f: &Fabric, from: usize, byte: u8) {
        f.client(from)
            .publish("s", None, Bytes::from(vec![byte]))
            .await
            .unwrap();
    }

    #[test]
    fn copies_arrive_at_their_due_time_in_order_and_the_publishers_own_at_once() {
        with_fabric(|f| {
            Box::pin(async move {
                let mut own = f.client(0).subscribe("s").await.unwrap();
                let mut far = f.client(1).subscribe("s").await.unwrap();
                publish(&f, 0, 1).await;
                publish(&f, 0, 2).await;
                assert_eq!(
                    payloads(&mut own),
                    vec![1, 2],
                    "the publisher's own server delivers at once"
                );
                madsim::time::sleep(Duration::from_millis(4)).await;
                assert_eq!(payloads(&mut far), Vec::<u8>::new(), "not due before the route's 5 ms");
                madsim::time::sleep(Duration::from_millis(2)).await;
                assert_eq!(payloads(&mut far), vec![1, 2]);
                assert_eq!(f.stats().delivered, 4);
            })
        });
    }

    /// A slow link delays every copy to and from its node's server by the lag, each way; the
    /// publisher's own server still delivers at once, and a copy sent after the link is fast
    /// again never overtakes one sent before.
    #[test]
    fn a_lagging_link_delays_both_ways_and_keeps_each_routes_order() {
        with_fabric(|f| {
            Box::pin(async move {
                let mut own = f.client(0).subscribe("s").await.unwrap();
                let mut far = f.client(1).subscribe("s").await.unwrap();
                let mut back = f.client(0).subscribe("b").await.unwrap();
                f.topology(|t| t.set_lag(0, Some(Duration::from_millis(100))));
                publish(&f, 0, 1).await;
                assert_eq!(payloads(&mut own), vec![1], "its own server at once");
                f.client(1).publish("b", None, Bytes::from(vec![9])).await.unwrap();
                f.topology(|t| t.set_lag(0, None));
                publish(&f, 0, 2).await;
                madsim::time::sleep(Duration::from_millis(104)).await;
                assert_eq!(
                    payloads(&mut far),
                    Vec::<u8>::new(),
                    "5 ms and 100 ms of lag not yet gone"
                );
                assert_eq!(payloads(&mut back), Vec::<u8>::new(), "the way to it lags too");
                madsim::time::sleep(Duration::from_millis(2)).await;
                assert_eq!(
                    payloads(&mut far),
                    vec![1, 2],
                    "the copy sent fast waited for the one before"
                );
                assert_eq!(payloads(&mut back), vec![9]);
            })
        });
    }

    /// In quantised time a copy arrives just before the next 100 ms boundary, whatever the
    /// route's latency; a targeted fault finds one copy by sender, receiver and kind: a drop
    /// loses it, a delay moves it a tick on, after what was sent after it, a duplicate
    /// delivers it twice; a fault that finds nothing says so.
    #[test]
    fn quantised_copies_arrive_on_the_grid_and_a_targeted_fault_acts_on_one_copy() {
        with_fabric(|f| {
            Box::pin(async move {
                f.set_quantum(Some(Quantum::new(100_000_000)));
                let mut far = f.client(1).subscribe("p.lease.request").await.unwrap();
                let req = |b: u8| {
                    let net = f.client(0);
                    async move {
                        net.publish("p.lease.request", None, Bytes::from(vec![b]))
                            .await
                            .unwrap();
                    }
                };
                madsim::time::sleep(Duration::from_millis(10)).await;
                req(1).await;
                req(2).await;
                req(3).await;
                // An answer for another agent's inbox: queued on server 1 too (interest is
                // judged on arrival in quantised time), but nobody there takes it.
                f.client(0)
                    .publish("p.lease.reply.n2.1.a", None, Bytes::from(vec![9]))
                    .await
                    .unwrap();
                madsim::time::sleep(Duration::from_millis(80)).await;
                assert_eq!(payloads(&mut far), Vec::<u8>::new(), "not before the boundary");
                let (request, reply) = (MessageKind::Request, MessageKind::Reply);
                assert!(f.message_fault(MessageFault::Drop, 0, 1, request, 0), "copy 1 found");
                assert!(f.message_fault(MessageFault::Delay, 0, 1, request, 0), "copy 2 found");
                assert!(
                    f.message_fault(MessageFault::Duplicate, 0, 1, request, 0),
                    "copy 3 found"
                );
                assert!(
                    !f.message_fault(MessageFault::Drop, 0, 1, reply, 0),
                    "no reply in flight"
                );
                assert!(
                    !f.message_fault(MessageFault::Drop, 1, 0, request, 0),
                    "none the other way"
                );
                madsim::time::sleep(Duration::from_millis(10)).await;
                assert_eq!(payloads(&mut far), vec![3, 3], "at 100 ms: the third, twice");
                req(4).await;
                madsim::time::sleep(Duration::from_millis(100)).await;
                assert_eq!(payloads(&mut far), vec![2, 4], "at 200 ms: the delayed one first");
            })
        });
    }

    #[test]
    fn a_paused_server_holds_its_backlog_until_resume_and_a_killed_one_loses_it() {
        with_fabric(|f| {
            Box::pin(async move {
                let mut far = f.client(1).subscribe("s").await.unwrap();
                f.pause(1);
                publish(&f, 0, 1).await;
                publish(&f, 0, 2).await;
                madsim::time::sleep(Duration::from_millis(20)).await;
                assert_eq!(payloads(&mut far), Vec::<u8>::new(), "held while paused");
                publish(&f, 0, 3).await;
                f.resume(1);
                assert_eq!(payloads(&mut far), vec![1, 2], "the backlog due by now, in order");
                madsim::time::sleep(Duration::from_millis(6)).await;
                assert_eq!(payloads(&mut far), vec![3], "and then the rest when due");

                publish(&f, 0, 4).await;
                f.down(1);
                f.serve(1);
                let mut again = f.client(1).subscribe("s").await.unwrap();
                madsim::time::sleep(Duration::from_millis(20)).await;
                assert_eq!(
                    payloads(&mut again),
                    Vec::<u8>::new(),
                    "a killed server's queue is gone"
                );
                assert_eq!(payloads(&mut far), Vec::<u8>::new());
            })
        });
    }

    #[test]
    fn a_paused_servers_own_copies_of_one_instant_arrive_in_order_at_the_resume() {
        with_fabric(|f| {
            Box::pin(async move {
                let mut own = f.client(0).subscribe("s").await.unwrap();
                madsim::time::sleep(Duration::from_millis(1)).await;
                f.pause(0);
                // Two in the same nanosecond: both due now, kept in the order sent.
                assert!(f.inject(0, "s", None, Bytes::from_static(&[1])));
                assert!(f.inject(0, "s", None, Bytes::from_static(&[2])));
                assert_eq!(payloads(&mut own), Vec::<u8>::new(), "held while paused");
                f.resume(0);
                assert_eq!(payloads(&mut own), vec![1, 2]);
                madsim::time::sleep(Duration::from_millis(2)).await;
                assert_eq!(payloads(&mut own), Vec::<u8>::new(), "each once");
            })
        });
    }

    #[test]
    fn a_congested_client_hands_each_publish_over_late_in_order_and_its_publisher_waits() {
        with_fabric(|f| {
            Box::pin(async move {
                let mut own = f.client(0).subscribe("s").await.unwrap();
                let ms = Duration::from_millis;
                let t0 = madsim::time::Instant::now();
                f.congest(0, Some(ms(100)));
                publish(&f, 0, 1).await;
                let waited = t0.elapsed();
                assert!(
                    waited >= ms(100) && waited < ms(101),
                    "the publisher waited for its turn: {waited:?}"
                );
                assert_eq!(payloads(&mut own), vec![1], "handed over then");
                // Two publishers at once (in either order) queue behind each other.
                let (a, b) = (f.clone(), f.clone());
                let first = madsim::task::spawn(async move { publish(&a, 0, 2).await });
                let second = madsim::task::spawn(async move { publish(&b, 0, 3).await });
                madsim::time::sleep(ms(150)).await;
                let one = payloads(&mut own);
                assert_eq!(one.len(), 1, "one at 200 ms: {one:?}");
                // The congestion ends: what waits keeps its turn, the next goes out at once.
                f.congest(0, None);
                madsim::time::sleep(ms(60)).await;
                let other = payloads(&mut own);
                assert_eq!(other.len(), 1, "the other at 300 ms: {other:?}");
                assert_eq!(one[0] + other[0], 5);
                let _ = (first.await, second.await);
                publish(&f, 0, 4).await;
                assert_eq!(payloads(&mut own), vec![4], "no wait once drained");
                assert!(t0.elapsed() < ms(312), "{:?}", t0.elapsed());
            })
        });
    }

    #[test]
    fn a_publisher_that_stops_waiting_gives_its_turn_back() {
        with_fabric(|f| {
            Box::pin(async move {
                let mut own = f.client(0).subscribe("s").await.unwrap();
                let ms = Duration::from_millis;
                let t0 = madsim::time::Instant::now();
                f.congest(0, Some(ms(100)));
                let client = f.client(0);
                let gave_up = madsim::time::timeout(ms(30), client.publish("s", None, Bytes::from_static(&[1]))).await;
                assert!(gave_up.is_err(), "not handed over within 30 ms");
                publish(&f, 0, 2).await;
                let waited = t0.elapsed();
                assert!(waited < ms(131), "the next one took the turn given back: {waited:?}");
                assert_eq!(payloads(&mut own), vec![2], "the first never went out");
            })
        });
    }

    #[test]
    fn a_server_down_under_its_client_buffers_then_flushes_in_order_and_a_full_buffer_waits() {
        with_fabric(|f| {
            Box::pin(async move {
                let ms = Duration::from_millis;
                let mut far = f.client(1).subscribe("s").await.unwrap();
                let mut near = f.client(0).subscribe("s").await.unwrap();
                use futures::StreamExt;
                let mut events = f.client(0).connection_events().expect("the simulated client reports");
                f.halt_server(0, true);
                assert_eq!(events.next().await, Some(Connection::Disconnected));
                publish(&f, 0, 1).await;
                publish(&f, 0, 2).await;
                publish(&f, 1, 9).await;
                madsim::time::sleep(ms(20)).await;
                assert_eq!(payloads(&mut far), vec![9], "nothing of n0's went out");
                assert_eq!(payloads(&mut near), Vec::<u8>::new(), "and its server delivers nothing");
                for k in 2..CLIENT_BUFFER {
                    publish(&f, 0, (k % 200) as u8).await;
                }
                let full = madsim::time::timeout(ms(50), publish(&f, 0, 3)).await;
                assert!(full.is_err(), "a full buffer makes the publisher wait");
                f.halt_server(0, false);
                assert_eq!(events.next().await, Some(Connection::Reconnected));
                madsim::time::sleep(ms(6)).await;
                let flushed = payloads(&mut far);
                assert_eq!(flushed.len(), CLIENT_BUFFER, "the buffer, at once");
                assert_eq!(&flushed[..3], &[1, 2, 2], "in order");
                assert_eq!(f.stats().flushed, CLIENT_BUFFER as u64);
                assert_eq!(payloads(&mut near).len(), CLIENT_BUFFER, "its own server gets them too");
                publish(&f, 0, 4).await;
                assert_eq!(payloads(&mut near), vec![4], "subscriptions kept across the outage");
            })
        });
    }

    #[test]
    fn a_frozen_connection_holds_both_ways_is_noticed_at_the_third_ping_and_flushes_at_the_thaw() {
        with_fabric(|f| {
            Box::pin(async move {
                use futures::StreamExt;
                let ms = Duration::from_millis;
                let t0 = madsim::time::Instant::now();
                f.set_ping(0, ms(100));
                f.serve(0);
                let mut far = f.client(1).subscribe("s").await.unwrap();
                let mut near = f.client(0).subscribe("s").await.unwrap();
                let mut events = f.client(0).connection_events().expect("the simulated client reports");
                madsim::time::sleep(ms(30)).await;
                f.freeze_connection(0, true);
                publish(&f, 0, 1).await;
                publish(&f, 1, 2).await;
                madsim::time::sleep(ms(20)).await;
                assert_eq!(payloads(&mut far), vec![2], "n0's publish is held in its connection");
                assert_eq!(payloads(&mut near), Vec::<u8>::new(), "and nothing reaches n0");
                // Pings at 100, 200 and 300 ms since it connected: the third finds two
                // outstanding.
                assert_eq!(events.next().await, Some(Connection::Disconnected));
                let noticed = t0.elapsed();
                assert!(
                    noticed >= ms(300) && noticed < ms(301),
                    "noticed at the third ping after the freeze: {noticed:?}"
                );
                publish(&f, 0, 3).await;
                publish(&f, 1, 4).await;
                madsim::time::sleep(ms(20)).await;
                f.freeze_connection(0, false);
                assert_eq!(events.next().await, Some(Connection::Reconnected));
                madsim::time::sleep(ms(6)).await;
                assert_eq!(
                    payloads(&mut far),
                    vec![4, 1, 3],
                    "n1's own at once; n0's held, then buffered, in order, at the thaw"
                );
                assert_eq!(
                    payloads(&mut near),
                    vec![3],
                    "what was for n0 while frozen or dropped was lost, its own held copy too"
                );
                assert_eq!((f.stats().held, f.stats().flushed), (1, 1));
            })
        });
    }

    #[test]
    fn a_freeze_shorter_than_three_pings_goes_unnoticed_and_delivers_late() {
        with_fabric(|f| {
            Box::pin(async move {
                use futures::StreamExt;
                let ms = Duration::from_millis;
                f.set_ping(0, ms(100));
                f.serve(0);
                let mut near = f.client(0).subscribe("s").await.unwrap();
                let mut events = f.client(0).connection_events().expect("the simulated client reports");
                f.freeze_connection(0, true);
                publish(&f, 1, 7).await;
                madsim::time::sleep(ms(250)).await;
                assert_eq!(payloads(&mut near), Vec::<u8>::new(), "held while frozen");
                f.freeze_connection(0, false);
                madsim::time::sleep(ms(1)).await;
                assert_eq!(payloads(&mut near), vec![7], "delivered at the thaw");
                madsim::time::sleep(ms(500)).await;
                assert!(
                    futures::FutureExt::now_or_never(events.next()).is_none(),
                    "no disconnection: the third ping came after the thaw"
                );
            })
        });
    }

    #[test]
    fn a_cut_shorter_than_the_stale_time_holds_the_bytes_and_delivers_them_late_in_order() {
        with_routes(Duration::from_millis(5), |f| {
            Box::pin(async move {
                let ms = Duration::from_millis;
                let mut far = f.client(1).subscribe("s").await.unwrap();
                f.topology(|t| t.partition(&[vec![0], vec![1, 2]]));
                for b in 1..=3 {
                    publish(&f, 0, b).await;
                    madsim::time::sleep(ms(100)).await;
                }
                madsim::time::sleep(ms(2000)).await;
                assert_eq!(payloads(&mut far), Vec::<u8>::new(), "held while cut");
                f.topology(|t| t.heal());
                madsim::time::sleep(ms(4)).await;
                assert_eq!(payloads(&mut far), Vec::<u8>::new(), "a route's latency after the heal");
                madsim::time::sleep(ms(2)).await;
                assert_eq!(payloads(&mut far), vec![1, 2, 3], "late, in order");
                assert_eq!((f.stats().route_late, f.stats().route_closed), (3, 0));
                publish(&f, 0, 4).await;
                madsim::time::sleep(ms(6)).await;
                assert_eq!(payloads(&mut far), vec![4], "the route never closed");
            })
        });
    }

    #[test]
    fn a_longer_cut_closes_the_route_loses_what_it_held_and_the_heal_waits_for_a_dial() {
        with_routes(Duration::from_millis(5), |f| {
            Box::pin(async move {
                let ms = Duration::from_millis;
                let mut far = f.client(1).subscribe("s").await.unwrap();
                let mut third = f.client(2).subscribe("s").await.unwrap();
                f.topology(|t| t.partition(&[vec![0], vec![1, 2]]));
                publish(&f, 0, 1).await;
                // Stale at 4 s; dialled at 5 s, the dial hangs; healed at 5.5 s, the colliding
                // dials are closed and the route is dialled again at 6.5 s.
                madsim::time::sleep(ms(5500)).await;
                f.topology(|t| t.heal());
                publish(&f, 0, 2).await;
                madsim::time::sleep(ms(900)).await;
                publish(&f, 0, 3).await;
                madsim::time::sleep(ms(200)).await;
                publish(&f, 0, 4).await;
                madsim::time::sleep(ms(10)).await;
                assert_eq!(
                    payloads(&mut far),
                    vec![4],
                    "1 lost with the route, 2 and 3 sent before the dial"
                );
                assert_eq!(payloads(&mut third), vec![4]);
                assert_eq!(f.stats().route_closed, 6, "three copies for each of two servers");
            })
        });
    }

    /// The worst order for held bytes: a short cut holds a copy for n1, n1's server dies and
    /// starts again before the heal; the copy belonged to a connection that is gone.
    #[test]
    fn what_a_cut_held_for_a_server_that_died_is_lost_and_never_reaches_its_next_incarnation() {
        with_routes(Duration::from_millis(5), |f| {
            Box::pin(async move {
                let ms = Duration::from_millis;
                let _first = f.client(1).subscribe("s").await.unwrap();
                f.topology(|t| t.partition(&[vec![0], vec![1, 2]]));
                publish(&f, 0, 1).await;
                madsim::time::sleep(ms(500)).await;
                assert_eq!(f.stats().route_closed, 0, "held, not lost, while the route lives");
                f.down(1);
                madsim::time::sleep(ms(500)).await;
                f.serve(1);
                let mut back = f.client(1).subscribe("s").await.unwrap();
                madsim::time::sleep(ms(100)).await;
                f.topology(|t| t.heal());
                madsim::time::sleep(ms(2000)).await;
                assert_eq!(
                    payloads(&mut back),
                    Vec::<u8>::new(),
                    "the held copy died with the route"
                );
                assert_eq!((f.stats().route_closed, f.stats().route_late), (1, 0));
                publish(&f, 0, 2).await;
                madsim::time::sleep(ms(10)).await;
                assert_eq!(payloads(&mut back), vec![2], "the route formed again after the heal");
            })
        });
    }

    #[test]
    fn a_restarted_server_hears_nothing_routed_until_its_routes_form() {
        with_routes(Duration::from_millis(1), |f| {
            Box::pin(async move {
                let ms = Duration::from_millis;
                f.down(2);
                madsim::time::sleep(ms(500)).await;
                f.serve(2);
                let mut back = f.client(2).subscribe("s").await.unwrap();
                publish(&f, 0, 1).await;
                madsim::time::sleep(ms(31)).await;
                publish(&f, 0, 2).await;
                madsim::time::sleep(ms(5)).await;
                assert_eq!(
                    payloads(&mut back),
                    vec![2],
                    "routed once its route formed, 30 ms after its start"
                );
            })
        });
    }

    #[test]
    fn a_server_killed_while_paused_forms_its_routes_again_at_its_restart() {
        // A suspended host killed, then started again: no fault after the kill says its
        // routes are no longer stopped at its end, and they must form all the same.
        with_routes(Duration::from_millis(1), |f| {
            Box::pin(async move {
                let ms = Duration::from_millis;
                f.pause(2);
                madsim::time::sleep(ms(300)).await;
                f.down(2);
                madsim::time::sleep(ms(500)).await;
                f.serve(2);
                let mut back = f.client(2).subscribe("s").await.unwrap();
                madsim::time::sleep(ms(31)).await;
                publish(&f, 0, 1).await;
                madsim::time::sleep(ms(5)).await;
                assert_eq!(payloads(&mut back), vec![1], "routed once its route formed");
            })
        });
    }

    #[test]
    fn latencies_of_zero_and_below_a_millisecond_are_kept_exactly() {
        for (latency, label) in [(Duration::ZERO, "0"), (Duration::from_micros(250), "250us")] {
            with_routes(latency, move |f| {
                Box::pin(async move {
                    let mut far = f.client(1).subscribe("s").await.unwrap();
                    let truth = f.truth.clone();
                    let sent = truth.now();
                    publish(&f, 0, 1).await;
                    if latency.is_zero() {
                        assert_eq!(payloads(&mut far), vec![1], "{label}: delivered in the instant sent");
                        return;
                    }
                    let _ = far.next().await;
                    let took = truth.now() - sent;
                    // madsim's clock reads 50 ns past a timer's instant when it rings.
                    assert!((250_000..=250_050).contains(&took), "{label}: arrived after {took} ns");
                })
            });
        }
    }

    #[test]
    fn a_slow_consumer_keeps_up_to_its_pending_limit_then_drops_and_catches_up_in_order() {
        with_fabric(|f| {
            Box::pin(async move {
                let ms = Duration::from_millis;
                f.set_pending_limits(3, usize::MAX);
                let mut far = f.client(1).subscribe("s").await.unwrap();
                f.set_slow(1, true);
                for b in 1..=5 {
                    publish(&f, 0, b).await;
                }
                madsim::time::sleep(ms(10)).await;
                assert_eq!(payloads(&mut far), Vec::<u8>::new(), "not read while slow");
                assert_eq!(f.stats().slow_dropped, 2, "over the pending limit of 3");
                f.set_slow(1, false);
                assert_eq!(payloads(&mut far), vec![1, 2, 3], "what was kept, in order");
                f.set_pending_limits(usize::MAX, 2);
                f.set_slow(1, true);
                publish(&f, 0, 6).await;
                publish(&f, 0, 7).await;
                publish(&f, 0, 8).await;
                madsim::time::sleep(ms(10)).await;
                f.set_slow(1, false);
                assert_eq!(payloads(&mut far), vec![6, 7], "a byte limit of 2: one byte each");
            })
        });
    }

    #[test]
    fn a_client_reconnects_on_the_adapters_schedule_after_its_server_returns() {
        // Down at 0: attempts at 100, 300, 600, 1000, 1500 ms; the server is back at 700 ms.
        assert_eq!(reconnect_time(0, 700_000_000, false), 1_000_000_000);
        assert_eq!(reconnect_time(0, 50_000_000, false), 100_000_000);
        // Stopped instead: the attempt made at 600 ms hangs and completes at 700 ms.
        assert_eq!(reconnect_time(0, 700_000_000, true), 700_000_000);
        with_fabric(|f| {
            Box::pin(async move {
                use futures::StreamExt;
                let mut events = f.client(0).connection_events().expect("reported");
                let truth = f.truth.clone();
                let start = truth.now();
                f.halt_server(0, true);
                assert_eq!(events.next().await, Some(Connection::Disconnected));
                madsim::time::sleep(Duration::from_millis(700)).await;
                f.halt_server(0, false);
                assert_eq!(events.next().await, Some(Connection::Reconnected));
                let at = truth.now() - start;
                assert!((1_000_000_000..1_000_001_000).contains(&at), "reconnected at {at} ns");
            })
        });
    }
}
