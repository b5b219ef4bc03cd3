//! The simulated NATS: one server per node, routes between every pair of servers (their
//! shape is [`crate::topology`]).
//!
//! A publish is decided at the sender's server at publish time: for each other server with
//! interest in the subject, the route may be cut (partition), may lose the message, or
//! delivers it after a latency drawn from the scenario's range. Routes keep each publisher's
//! order (a message never overtakes an earlier one on the same route) unless the scenario
//! asks for reordering. Each server delivers from one queue ordered by (delivery time,
//! sequence), in one task on its node, so a paused node receives its backlog in order on
//! resume, and a killed node's server loses its queue and subscriptions.
//!
//! madsim's own `Endpoint` network is not used for routes: it lets messages of one pair
//! overtake each other, and the per-publisher order is part of the contract here.

use crate::clock::{true_now, Alarm};
use crate::scenario::DurRange;
use crate::topology::{Hop, Topology};
use bytes::Bytes;
use futures::channel::mpsc;
use futures::StreamExt;
use leasehold::transport::{check_publish, SubjectTable, DEFAULT_SUBSCRIPTION_CAPACITY};
use leasehold::{BoxFuture, Message, NetError, Network, Subscription};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

/// Largest payload a simulated server accepts (NATS' default `max_payload`).
pub const MAX_PAYLOAD: usize = 1 << 20;

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
}

/// Each node's recent publishes, for replay faults: (true time, message), oldest first.
struct Log {
    window: u128,
    by_node: Vec<VecDeque<(u128, Arc<Message>)>>,
}

#[derive(Default)]
struct Server {
    up: bool,
    subs: SubjectTable,
    /// Copies due, by (time, sequence); one message is shared by all its copies.
    queue: BTreeMap<(u128, u64), Arc<Message>>,
    bell: Option<mpsc::UnboundedSender<()>>,
    /// Drops every message to this node's subscribers (a slow consumer).
    slow: bool,
}

struct Inner {
    servers: Vec<Server>,
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
}

/// The whole simulated NATS cluster. Cheap to clone.
#[derive(Clone)]
pub struct Fabric {
    inner: Arc<Mutex<Inner>>,
    start: madsim::time::Instant,
}

impl Fabric {
    /// A fabric for `n` nodes; its random choices come from `seed`.
    pub fn new(n: usize, latency: DurRange, loss: f64, reorder: bool, seed: u64, start: madsim::time::Instant) -> Self {
        Fabric {
            inner: Arc::new(Mutex::new(Inner {
                servers: (0..n).map(|_| Server::default()).collect(),
                topology: Topology::new(n, latency, loss),
                last: vec![vec![0; n]; n],
                reorder,
                rng: ChaCha8Rng::seed_from_u64(seed),
                seq: 0,
                inboxes: 0,
                stats: FabricStats::default(),
                duplicate: 0.0,
                log: None,
            })),
            start,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings node `i`'s server up (at node start) and runs its delivery loop; call from a task
    /// on node `i`, so the loop dies with the node.
    pub fn serve(&self, i: usize) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (tx, rx) = mpsc::unbounded();
        {
            let mut g = self.lock();
            let s = &mut g.servers[i];
            s.up = true;
            s.subs.clear();
            s.queue.clear();
            s.bell = Some(tx);
        }
        let this = self.clone();
        this.deliver_loop(i, rx)
    }

    async fn deliver_loop(self, i: usize, mut bell: mpsc::UnboundedReceiver<()>) {
        // One alarm for the whole loop: it costs madsim a timer per new head of the queue,
        // not one per message queued behind it.
        let mut alarm = Alarm::default();
        loop {
            // Everything due now, in order.
            let next = loop {
                match self.lock().servers[i].queue.keys().next().copied() {
                    Some((t, _)) if t <= true_now(self.start) => {}
                    other => break other,
                }
                self.deliver_one(i);
            };
            // Then sleep until the head is due or a message goes in front of it.
            let closed = futures::future::poll_fn(|cx| {
                let mut rang = false;
                loop {
                    match bell.poll_next_unpin(cx) {
                        Poll::Ready(Some(())) => rang = true,
                        // The server went down (its queue with it).
                        Poll::Ready(None) => return Poll::Ready(true),
                        Poll::Pending => break,
                    }
                }
                if rang {
                    return Poll::Ready(false);
                }
                match next {
                    Some((t, _)) => alarm
                        .poll_at(self.start + Duration::from_nanos(t as u64), cx)
                        .map(|()| false),
                    None => Poll::Pending,
                }
            })
            .await;
            if closed {
                return;
            }
        }
    }

    fn deliver_one(&self, i: usize) {
        let mut g = self.lock();
        let Some((_, msg)) = g.servers[i].queue.pop_first() else {
            return;
        };
        if g.servers[i].slow {
            g.stats.slow_dropped += 1;
            return;
        }
        let n = g.servers[i].subs.deliver(&msg);
        g.stats.delivered += n;
    }

    /// Node `i` was killed: its server loses its subscriptions and queued messages.
    pub fn down(&self, i: usize) {
        let mut g = self.lock();
        let s = &mut g.servers[i];
        s.up = false;
        s.subs.clear();
        s.queue.clear();
        s.bell = None;
    }

    /// Changes the network's shape (cuts, datacenters, loss, latency).
    pub fn topology<T>(&self, change: impl FnOnce(&mut Topology) -> T) -> T {
        change(&mut self.lock().topology)
    }

    /// Delivers each copy a second time, later, with probability `p`.
    pub fn set_duplicate(&self, p: f64) {
        self.lock().duplicate = p;
    }

    /// Keeps every node's publishes of the last `window`, so they can be replayed.
    pub fn keep_log(&self, window: Duration) {
        let mut g = self.lock();
        let n = g.servers.len();
        g.log = Some(Log {
            window: window.as_nanos(),
            by_node: (0..n).map(|_| VecDeque::new()).collect(),
        });
    }

    /// Node `i`'s server starts (`true`) or stops dropping every message to it.
    pub fn set_slow(&self, i: usize, slow: bool) {
        self.lock().servers[i].slow = slow;
    }

    /// Publishes again, now and in order, what node `i` published in the last `window` (a
    /// client flushing its reconnect buffer); returns how many. Nothing if its server is down.
    pub fn replay(&self, i: usize, window: Duration) -> usize {
        let now = true_now(self.start);
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
            route(&mut g, i, m, now);
        }
        again.len()
    }

    /// Publishes a message from a stranger connected to node `from`'s server (the forger);
    /// returns whether it went out (the server is up and the message is one it accepts).
    pub fn inject(&self, from: usize, subject: &str, reply: Option<&str>, payload: Bytes) -> bool {
        if check_publish(subject, reply, payload.len(), MAX_PAYLOAD).is_err() {
            return false;
        }
        let now = true_now(self.start);
        let mut g = self.lock();
        if !g.servers[from].up {
            return false;
        }
        g.stats.forged += 1;
        let msg = Arc::new(Message {
            subject: subject.to_string(),
            reply: reply.map(str::to_string),
            payload,
        });
        route(&mut g, from, &msg, now);
        true
    }

    /// Drops every queued and logged message. Called when a run is over: a task that
    /// outlives its runtime must not keep a whole run's messages alive.
    pub fn clear(&self) {
        let mut g = self.lock();
        for s in g.servers.iter_mut() {
            s.queue.clear();
        }
        g.log = None;
    }

    /// Counters so far.
    pub fn stats(&self) -> FabricStats {
        self.lock().stats
    }

    /// A connection to node `i`'s server.
    pub fn client(&self, i: usize) -> SimNet {
        SimNet {
            fabric: self.clone(),
            node: i,
        }
    }

    fn publish(&self, from: usize, subject: &str, reply: Option<&str>, payload: Bytes) -> Result<(), NetError> {
        check_publish(subject, reply, payload.len(), MAX_PAYLOAD)?;
        let now = true_now(self.start);
        let mut g = self.lock();
        if !g.servers[from].up {
            return Err(NetError::Disconnected("server down".into()));
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
        route(&mut g, from, &msg, now);
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
fn route(g: &mut Inner, from: usize, msg: &Arc<Message>, now: u128) {
    for to in 0..g.servers.len() {
        let s = &g.servers[to];
        // Routes carry only what the far server has interest in, as NATS routes do.
        if !s.up || !s.subs.has_interest(&msg.subject) {
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
        }
        if !g.reorder {
            at = at.max(g.last[from][to] + 1);
        }
        g.last[from][to] = at;
        enqueue(g, to, at, msg);
        // A duplicate arrives once more, as late again (it may overtake nothing it followed).
        if g.duplicate > 0.0 && g.rng.gen_bool(g.duplicate.min(1.0)) {
            g.stats.duplicated += 1;
            enqueue(g, to, at + (at - now).max(1), msg);
        }
    }
}

fn enqueue(g: &mut Inner, to: usize, at: u128, msg: &Arc<Message>) {
    g.seq += 1;
    let seq = g.seq;
    let s = &mut g.servers[to];
    // The delivery loop sleeps until its head is due: wake it only for a new head.
    let head = s.queue.keys().next().is_none_or(|(t, _)| at < *t);
    s.queue.insert((at, seq), msg.clone());
    if head {
        if let Some(b) = &s.bell {
            let _ = b.unbounded_send(());
        }
    }
}

/// A node's connection to its own simulated NATS server.
#[derive(Clone)]
pub struct SimNet {
    fabric: Fabric,
    node: usize,
}

impl Network for SimNet {
    fn publish(&self, subject: &str, reply: Option<&str>, payload: Bytes) -> BoxFuture<'_, Result<(), NetError>> {
        let r = self.fabric.publish(self.node, subject, reply, payload);
        Box::pin(async move { r })
    }

    fn subscribe(&self, subject: &str) -> BoxFuture<'_, Result<Subscription, NetError>> {
        let r = self.fabric.subscribe(self.node, subject);
        Box::pin(async move { r })
    }

    fn new_inbox(&self) -> String {
        let mut g = self.fabric.lock();
        g.inboxes += 1;
        format!("_INBOX.sim{}.{}", self.node, g.inboxes)
    }
}
