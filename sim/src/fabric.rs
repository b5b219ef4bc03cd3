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
//! The server is not a task: a task would be polled once per delivery, and madsim charges
//! every poll a random draw and 50-100 ns of simulated time, which is neither NATS's cost nor
//! anything the agents can tell apart from a slightly different latency.
//!
//! madsim's own `Endpoint` network is not used for routes: it lets messages of one pair
//! overtake each other, and the per-publisher order is part of the contract here.

use crate::clock::{TrueClock, TIMER_RESOLUTION};
use crate::quantum::Quantum;
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
    /// Drops every message to this node's subscribers (a slow consumer).
    slow: bool,
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
        // A new process: a new client, connected (a congestion of its host's link stays).
        let (delay, ping) = (g.clients[i].delay, g.clients[i].ping);
        g.clients[i] = Client {
            delay,
            ping,
            since: now,
            ..Client::default()
        };
    }

    /// Node `i`'s client pings its server every `interval` (its agent's
    /// `MembershipCfg::ping_interval`).
    pub(crate) fn set_ping(&self, i: usize, interval: Duration) {
        self.lock().clients[i].ping = interval.as_nanos().max(1);
    }

    /// Node `i` is paused: its server holds what comes due until [`Fabric::resume`].
    pub(crate) fn pause(&self, i: usize) {
        self.lock().servers[i].paused = true;
    }

    /// Node `i` resumes: its server delivers its backlog, in order, and goes on as before.
    pub(crate) fn resume(&self, i: usize) {
        let now = self.truth.now();
        let mut g = self.lock();
        g.servers[i].paused = false;
        deliver_due(&mut g, i, now);
    }

    /// Node `i` was killed: its server loses its subscriptions and queued messages.
    pub(crate) fn down(&self, i: usize) {
        let mut g = self.lock();
        let s = &mut g.servers[i];
        s.up = false;
        s.paused = false;
        s.frozen = false;
        s.detached = false;
        s.subs.clear();
        s.queue.clear();
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
                disconnect(&mut g, i);
            }
        } else if g.clients[i].frozen.is_none() {
            reconnect(&mut g, &self.inner, &self.truth, i, now);
        }
    }

    /// Node `i`'s connection to its server freezes (`true`: a frozen server process, or a
    /// proxy that holds the bytes; nothing fails, nothing arrives) or thaws. Frozen, what the
    /// client publishes is held in the connection and what its server has for it waits. The
    /// client pings every ping interval since it connected and notices at the third ping
    /// left unanswered (async-nats allows two outstanding): it hears `Disconnected`, drops
    /// the connection (what waited for it is lost) and buffers as when its server is down. At
    /// the thaw, the held publishes reach the server, late, and a client that noticed
    /// reconnects and flushes its buffer.
    pub(crate) fn freeze_connection(&self, i: usize, frozen: bool) {
        let now = self.truth.now();
        let mut g = self.lock();
        if !g.servers[i].up || g.clients[i].frozen.is_some() == frozen {
            return;
        }
        if !frozen {
            g.clients[i].frozen = None;
            g.servers[i].frozen = false;
            let held = std::mem::take(&mut g.clients[i].held);
            if !g.servers[i].halted {
                for m in &held {
                    g.stats.held += 1;
                    route(&mut g, &self.inner, &self.truth, i, m, now);
                }
                if g.clients[i].down {
                    reconnect(&mut g, &self.inner, &self.truth, i, now);
                } else {
                    deliver_due(&mut g, i, now);
                }
            }
            return;
        }
        g.freezes += 1;
        let freeze = g.freezes;
        g.servers[i].frozen = true;
        let c = &mut g.clients[i];
        c.frozen = Some(freeze);
        if c.down {
            // Already disconnected: nothing to notice.
            return;
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
        }));
        let mut timer = self.truth.sleep_until(at);
        let _ = Pin::new(&mut timer).poll(&mut Context::from_waker(&notice));
    }

    /// Changes the network's shape (cuts, datacenters, loss, latency).
    pub(crate) fn topology<T>(&self, change: impl FnOnce(&mut Topology) -> T) -> T {
        change(&mut self.lock().topology)
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
        self.lock().servers[i].slow = slow;
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
        }
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
        if !g.reorder {
            at = at.max(g.last[from][to] + 1);
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
    if at < now + TIMER_RESOLUTION.as_nanos() && !g.servers[to].paused {
        // A copy to the publisher's own server (scenarios' route latencies are at least
        // 1 ms): a timer would deliver it late, so it goes now, after anything due before it.
        // (A paused server's copy, from a replay or a stranger, waits for a timer like any
        // other: a resume in this very instant would find it not yet due.)
        deliver_due(g, to, at);
        return;
    }
    let due = futures::task::waker(Arc::new(Due {
        fabric: Arc::downgrade(fabric),
        server: to,
        at,
    }));
    // Polled once while not yet elapsed, a madsim sleep arms a timer that wakes `due` at
    // `at` whether or not the sleep is kept.
    let mut timer = truth.sleep_until(at);
    let _ = Pin::new(&mut timer).poll(&mut Context::from_waker(&due));
}

/// Hands server `i`'s subscribers every copy due by `by`, in order, unless its node is paused.
fn deliver_due(g: &mut Inner, i: usize, by: u128) {
    let Inner { servers, stats, .. } = g;
    let s = &mut servers[i];
    if !s.up || s.paused || s.halted || s.frozen {
        return;
    }
    while s.queue.peek().is_some_and(|c| c.due.0 <= by) {
        let Some(Queued { msg, .. }) = s.queue.pop() else { break };
        if s.slow {
            stats.slow_dropped += 1;
        } else {
            stats.delivered += s.subs.deliver(&msg);
        }
    }
}

/// Node `i`'s client loses its connection: it hears `Disconnected`, and what its server had
/// for it is lost.
fn disconnect(g: &mut Inner, i: usize) {
    g.servers[i].queue.clear();
    g.servers[i].detached = true;
    let c = &mut g.clients[i];
    c.down = true;
    c.listeners
        .retain(|l| l.unbounded_send(Connection::Disconnected).is_ok());
}

/// Node `i`'s client connects again: it hears `Reconnected`, subscribes again and sends what
/// it buffered, at once and in order (the reconnect flush).
fn reconnect(g: &mut Inner, fabric: &Arc<Mutex<Inner>>, truth: &TrueClock, i: usize, now: u128) {
    g.servers[i].detached = false;
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
}

impl futures::task::ArcWake for PingsUnanswered {
    fn wake_by_ref(p: &Arc<Self>) {
        if let Some(inner) = p.fabric.upgrade() {
            let mut g = inner.lock().unwrap_or_else(|e| e.into_inner());
            let c = &g.clients[p.node];
            if c.frozen == Some(p.freeze) && !c.down && g.servers[p.node].up {
                disconnect(&mut g, p.node);
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

/// A node's connection to its own simulated NATS server.
#[derive(Clone)]
pub(crate) struct SimNet {
    fabric: Fabric,
    node: usize,
}

impl Network for SimNet {
    fn publish(&self, subject: &str, reply: Option<&str>, payload: Bytes) -> BoxFuture<'_, Result<(), NetError>> {
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
    fn a_paused_servers_own_copy_due_after_a_resume_in_the_same_instant_still_arrives() {
        with_fabric(|f| {
            Box::pin(async move {
                let mut own = f.client(0).subscribe("s").await.unwrap();
                madsim::time::sleep(Duration::from_millis(1)).await;
                f.pause(0);
                // Two in the same nanosecond: the second is due 1 ns later, to keep the order.
                assert!(f.inject(0, "s", None, Bytes::from_static(&[1])));
                assert!(f.inject(0, "s", None, Bytes::from_static(&[2])));
                f.resume(0);
                assert_eq!(payloads(&mut own), vec![1], "only the first is due at the resume");
                madsim::time::sleep(Duration::from_millis(2)).await;
                assert_eq!(payloads(&mut own), vec![2], "the second has a timer of its own");
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
}
