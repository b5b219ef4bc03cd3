//! The simulated NATS: one server per node, routes between every pair of servers.
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

use crate::clock::true_now;
use crate::scenario::DurRange;
use bytes::Bytes;
use futures::channel::mpsc;
use futures::StreamExt;
use leasehold::election::lease::Durable;
use leasehold::network::{subject_matches, validate_subject, Delivery, DEFAULT_SUBSCRIPTION_CAPACITY};
use leasehold::{BoxFuture, Message, NetError, Network, Storage, StorageError, Subscription};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
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
}

#[derive(Default)]
struct Server {
    up: bool,
    subs: Vec<(String, Delivery)>,
    queue: BTreeMap<(u128, u64), Message>,
    bell: Option<mpsc::UnboundedSender<()>>,
}

struct Inner {
    servers: Vec<Server>,
    /// Datacenter index of each node, and one-way latency between datacenter pairs.
    dc_of: Vec<usize>,
    dc_latency: BTreeMap<(usize, usize), DurRange>,
    cut: Vec<Vec<bool>>,
    last: Vec<Vec<u128>>,
    loss: f64,
    latency: DurRange,
    reorder: bool,
    rng: ChaCha8Rng,
    seq: u64,
    inboxes: u64,
    stats: FabricStats,
    durable: Vec<Durable>,
}

/// The whole simulated NATS cluster plus each node's durable store. Cheap to clone.
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
                dc_of: vec![0; n],
                dc_latency: BTreeMap::new(),
                cut: vec![vec![false; n]; n],
                last: vec![vec![0; n]; n],
                loss,
                latency,
                reorder,
                rng: ChaCha8Rng::seed_from_u64(seed),
                seq: 0,
                inboxes: 0,
                stats: FabricStats::default(),
                durable: vec![Durable::default(); n],
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
        loop {
            let next = self.lock().servers[i].queue.keys().next().copied();
            match next {
                None => {
                    if bell.next().await.is_none() {
                        return;
                    }
                }
                Some((t, _)) if t <= true_now(self.start) => self.deliver_one(i),
                Some((t, _)) => {
                    let sleep = madsim::time::sleep_until(self.start + Duration::from_nanos(t as u64));
                    futures::pin_mut!(sleep);
                    let _ = futures::future::select(sleep, bell.next()).await;
                }
            }
        }
    }

    fn deliver_one(&self, i: usize) {
        let mut g = self.lock();
        let Some((_, msg)) = g.servers[i].queue.pop_first() else {
            return;
        };
        let mut n = 0;
        let server = &mut g.servers[i];
        server.subs.retain(|(_, d)| !d.is_closed());
        for (pattern, d) in &server.subs {
            if subject_matches(pattern, &msg.subject) && d.deliver(msg.clone()) {
                n += 1;
            }
        }
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

    /// Places node `i` in datacenter `dc` (an index), for [`Fabric::set_dc_latency`].
    pub fn set_datacenter(&self, i: usize, dc: usize) {
        self.lock().dc_of[i] = dc;
    }

    /// Routes between datacenters `a` and `b` (both ways) take `latency` instead of the default.
    pub fn set_dc_latency(&self, a: usize, b: usize, latency: DurRange) {
        let mut g = self.lock();
        g.dc_latency.insert((a, b), latency);
        g.dc_latency.insert((b, a), latency);
    }

    /// Cuts (or restores) the route from `a` to `b` (one direction).
    pub fn set_cut(&self, a: usize, b: usize, cut: bool) {
        self.lock().cut[a][b] = cut;
    }

    /// Cuts every route between nodes of different groups; nodes in no group join the first.
    pub fn partition(&self, groups: &[Vec<usize>]) {
        let mut g = self.lock();
        let n = g.servers.len();
        let group_of = |x: usize| groups.iter().position(|grp| grp.contains(&x)).unwrap_or(0);
        for a in 0..n {
            for b in 0..n {
                g.cut[a][b] = group_of(a) != group_of(b);
            }
        }
    }

    /// The directed routes cut now.
    pub fn cuts(&self) -> Vec<(usize, usize)> {
        let g = self.lock();
        let n = g.cut.len();
        (0..n)
            .flat_map(|a| (0..n).map(move |b| (a, b)))
            .filter(|(a, b)| g.cut[*a][*b])
            .collect()
    }

    /// Cuts exactly `links` (directed), restoring every other route.
    pub fn set_cuts(&self, links: &[(usize, usize)]) {
        self.heal();
        for (a, b) in links {
            self.set_cut(*a, *b, true);
        }
    }

    /// Restores every route.
    pub fn heal(&self) {
        let mut g = self.lock();
        for row in g.cut.iter_mut() {
            row.iter_mut().for_each(|c| *c = false);
        }
    }

    /// Sets the loss probability of every route.
    pub fn set_loss(&self, loss: f64) {
        self.lock().loss = loss;
    }

    /// Sets the latency range of every route.
    pub fn set_latency(&self, latency: DurRange) {
        self.lock().latency = latency;
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

    /// Node `i`'s durable store.
    pub fn storage(&self, i: usize) -> SimStorage {
        SimStorage {
            fabric: self.clone(),
            node: i,
        }
    }

    fn publish(&self, from: usize, subject: &str, reply: Option<&str>, payload: Bytes) -> Result<(), NetError> {
        validate_subject(subject, false)?;
        if let Some(r) = reply {
            validate_subject(r, false)?;
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(NetError::PayloadTooLarge {
                size: payload.len(),
                max: MAX_PAYLOAD,
            });
        }
        let now = true_now(self.start);
        let mut g = self.lock();
        if !g.servers[from].up {
            return Err(NetError::Disconnected("server down".into()));
        }
        g.stats.published += 1;
        let msg = Message {
            subject: subject.to_string(),
            reply: reply.map(str::to_string),
            payload,
        };
        for to in 0..g.servers.len() {
            let s = &g.servers[to];
            // Routes carry only what the far server has interest in, as NATS routes do.
            if !s.up
                || !s
                    .subs
                    .iter()
                    .any(|(p, d)| !d.is_closed() && subject_matches(p, subject))
            {
                continue;
            }
            let mut at = now;
            if to != from {
                if g.cut[from][to] {
                    g.stats.cut += 1;
                    continue;
                }
                let loss = g.loss;
                if loss > 0.0 && g.rng.gen_bool(loss.min(1.0)) {
                    g.stats.lost += 1;
                    continue;
                }
                let range = g
                    .dc_latency
                    .get(&(g.dc_of[from], g.dc_of[to]))
                    .copied()
                    .unwrap_or(g.latency);
                let (lo, hi) = (range.lo.as_nanos(), range.hi.as_nanos());
                at += if hi > lo { g.rng.gen_range(lo..=hi) } else { lo };
            }
            if !g.reorder {
                at = at.max(g.last[from][to] + 1);
            }
            g.last[from][to] = at;
            g.seq += 1;
            let seq = g.seq;
            let s = &mut g.servers[to];
            s.queue.insert((at, seq), msg.clone());
            if let Some(b) = &s.bell {
                let _ = b.unbounded_send(());
            }
        }
        Ok(())
    }

    fn subscribe(&self, node: usize, subject: &str) -> Result<Subscription, NetError> {
        validate_subject(subject, true)?;
        let mut g = self.lock();
        let s = &mut g.servers[node];
        if !s.up {
            return Err(NetError::Disconnected("server down".into()));
        }
        let (d, sub) = Subscription::channel(DEFAULT_SUBSCRIPTION_CAPACITY);
        s.subs.push((subject.to_string(), d));
        Ok(sub)
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

/// A node's durable store. A save is atomic and synced when it returns, so a kill keeps
/// exactly what was saved before it.
#[derive(Clone)]
pub struct SimStorage {
    fabric: Fabric,
    node: usize,
}

impl Storage for SimStorage {
    fn load(&self) -> BoxFuture<'_, Result<Durable, StorageError>> {
        let d = self.fabric.lock().durable[self.node].clone();
        Box::pin(async move { Ok(d) })
    }

    fn save(&self, state: &Durable) -> BoxFuture<'_, Result<(), StorageError>> {
        self.fabric.lock().durable[self.node] = state.clone();
        Box::pin(async move { Ok(()) })
    }
}
