//! `Manager`: the list of servers one client talks to (Consul's `servers.Manager`).

use super::{Pinger, Server};
use crate::config::{Bug, BugKnobs};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How big the cluster is (Consul's `ManagerSerfCluster`): scales the rebalance timer.
pub trait ClusterInfo: Send + Sync + 'static {
    /// Number of nodes (clients and servers) in the cluster.
    fn num_nodes(&self) -> usize;
}

impl<F: Fn() -> usize + Send + Sync + 'static> ClusterInfo for F {
    fn num_nodes(&self) -> usize {
        self()
    }
}

/// Minimum time a client keeps a server before rebalancing.
pub const MIN_REUSE: Duration = Duration::from_secs(120);
/// New connections per second each server should see from rebalancing, at most.
pub const CONNS_PER_SEC_PER_SERVER: f64 = 64.0;

/// The rebalance interval before jitter: at least `min_reuse`, and long enough that `nodes`
/// clients rebalancing over `servers` servers make at most 64 new connections per second per
/// server. Jitter of up to half of it is added on top.
pub fn rebalance_interval(min_reuse: Duration, servers: usize, nodes: usize) -> Duration {
    let rate = CONNS_PER_SEC_PER_SERVER * servers.max(1) as f64;
    min_reuse.max(Duration::try_from_secs_f64(nodes as f64 / rate).unwrap_or(Duration::MAX))
}

#[derive(Debug, Default)]
struct State {
    servers: Vec<Server>,
    // Servers that failed an RPC or a ping, or that membership lost, since they last answered
    // or were added again: passed over while another is not suspect, tried last in failover.
    suspect: BTreeSet<String>,
    // When each server last answered (an RPC or a rebalance's ping), as a count of answers
    // (the manager has no clock): among suspect servers, the one that answered last is
    // tried first.
    answered: BTreeMap<String, u64>,
    answers: u64,
    offline: bool,
    // Bumped by every add/remove, so a rebalance racing with them does not clobber them.
    version: u64,
}

impl State {
    fn is_suspect(&self, s: &Server) -> bool {
        self.suspect.contains(&s.name)
    }

    fn answered(&mut self, name: &str) {
        self.answers += 1;
        self.suspect.remove(name);
        self.answered.insert(name.to_string(), self.answers);
    }

    /// The servers not suspect, front first, then the suspect ones, the one that answered
    /// last first (those that never answered last, front first).
    fn order(&self) -> Vec<&Server> {
        let (ok, mut suspect): (Vec<&Server>, Vec<&Server>) = self.servers.iter().partition(|s| !self.is_suspect(s));
        // A stable sort: ties keep the list's order.
        suspect.sort_by_key(|s| std::cmp::Reverse(self.answered.get(&s.name).copied().unwrap_or(0)));
        ok.into_iter().chain(suspect).collect()
    }

    fn rotate_if_front(&mut self, s: &Server) {
        if self.servers.len() > 1 && self.servers.first().is_some_and(|f| f.name == s.name) {
            self.servers.rotate_left(1);
        }
    }
}

/// The list of servers a client uses, and its failover policy (Consul's `servers.Manager`,
/// with failover that reaches every server).
///
/// * The front server takes RPCs ([`find_server`](Manager::find_server)), unless it is
///   *suspect* and another is not: a server is suspect once it fails an RPC or a ping, or
///   membership loses it ([`fail_server`](Manager::fail_server)), until it answers again or
///   is added again. When every server is suspect, the one that answered last is used.
/// * A failed front server moves to the back ([`notify_failed_server`](Manager::notify_failed_server));
///   a membership loss only marks a server suspect and reorders nothing.
/// * [`try_each`](Manager::try_each) makes one RPC: it tries every server once, in the order
///   of [`failover_order`](Manager::failover_order) taken when the RPC starts (servers not
///   suspect first, then the suspect ones, each group front first), so whatever membership
///   reports while the RPC is in flight, each reachable server is tried before it gives up.
/// * A periodic rebalance shuffles the list (so clients spread evenly over servers and do
///   not fixate on old ones), keeping only an order whose front server answers a ping; if
///   none answers, the manager is offline until a rebalance finds one or a server is added.
///
/// ```
/// use leasehold::router::{ClusterInfo, Manager, Pinger, Server};
/// use std::sync::Arc;
///
/// struct AlwaysUp;
/// impl Pinger for AlwaysUp {
///     fn ping(&self, _: &Server) -> leasehold::BoxFuture<'_, bool> {
///         Box::pin(async { true })
///     }
/// }
/// let cluster: Arc<dyn ClusterInfo> = Arc::new(|| 10usize); // nodes in the cluster
/// let m = Manager::new(Arc::new(AlwaysUp), cluster, 7);
/// for name in ["s1", "s2", "s3"] {
///     m.add_server(Server::new(name, "dc1", "rpc."));
/// }
/// let first = m.find_server().expect("a server");
/// m.notify_failed_server(&first); // the next RPC goes elsewhere
/// assert_ne!(m.find_server(), Some(first));
/// ```
pub struct Manager {
    state: Mutex<State>,
    pinger: Arc<dyn Pinger>,
    cluster: Arc<dyn ClusterInfo>,
    rng: Mutex<ChaCha8Rng>,
    min_reuse: Duration,
    bugs: BugKnobs,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.lock();
        f.debug_struct("Manager")
            .field("servers", &g.servers)
            .field("suspect", &g.suspect)
            .field("offline", &g.offline)
            .finish()
    }
}

impl Manager {
    /// A manager with no servers; `seed` drives its shuffles and jitter.
    pub fn new(pinger: Arc<dyn Pinger>, cluster: Arc<dyn ClusterInfo>, seed: u64) -> Self {
        Manager {
            state: Mutex::new(State::default()),
            pinger,
            cluster,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            min_reuse: MIN_REUSE,
            bugs: BugKnobs::default(),
        }
    }

    /// The same manager with another minimum reuse time (simulations shorten it).
    pub fn with_min_reuse(mut self, min_reuse: Duration) -> Self {
        self.min_reuse = min_reuse;
        self
    }

    /// The same manager with planted bugs (test only): with [`Bug::FailoverFromFront`] it
    /// fails over as it did before issue 30 (see the bug).
    pub fn with_bugs(mut self, bugs: BugKnobs) -> Self {
        self.bugs = bugs;
        self
    }

    fn old_failover(&self) -> bool {
        self.bugs.has(Bug::FailoverFromFront)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a server: a known one (same name) is updated in place, a new one is appended (it
    /// takes traffic after the next rebalance, or when the servers before it fail). Either
    /// way the server is no longer suspect, and the manager is no longer offline (Consul's
    /// `AddServer`: a server was just seen).
    pub fn add_server(&self, s: Server) {
        let mut g = self.lock();
        g.suspect.remove(&s.name);
        match g.servers.iter_mut().find(|x| x.name == s.name) {
            Some(x) => *x = s,
            None => g.servers.push(s),
        }
        g.offline = false;
        g.version += 1;
    }

    /// Removes a server.
    pub fn remove_server(&self, s: &Server) {
        let mut g = self.lock();
        g.servers.retain(|x| x.name != s.name);
        g.suspect.remove(&s.name);
        g.answered.remove(&s.name);
        g.version += 1;
    }

    /// The server to use now: the front of the list, or the first server after it that is not
    /// suspect if the front one is; if every server is suspect, the one that answered last
    /// (`None` when there are none).
    pub fn find_server(&self) -> Option<Server> {
        let g = self.lock();
        if self.old_failover() {
            return g.servers.first().cloned();
        }
        g.order().first().map(|s| (*s).clone())
    }

    /// The order one RPC tries servers in, from now: the servers that are not suspect, front
    /// first, then the suspect ones, the one that answered last first. Each server appears
    /// once.
    pub fn failover_order(&self) -> Vec<Server> {
        self.lock().order().into_iter().cloned().collect()
    }

    /// Reports that `s` failed an RPC: it becomes suspect, and if it is the front server it
    /// moves to the back (if not, another report already moved it, and the order stays).
    pub fn notify_failed_server(&self, s: &Server) {
        let mut g = self.lock();
        if !self.old_failover() {
            g.suspect.insert(s.name.clone());
        }
        g.rotate_if_front(s);
    }

    /// Reports that `s` answered an RPC: it is no longer suspect.
    pub fn notify_ok_server(&self, s: &Server) {
        self.lock().answered(&s.name);
    }

    /// Membership lost `s` (its agent stopped being heard): it becomes suspect, so traffic
    /// shifts away from it at once, but the order stays (membership may be wrong: an agent
    /// that hears nobody loses every peer, reachable or not).
    pub fn fail_server(&self, s: &Server) {
        let mut g = self.lock();
        if self.old_failover() {
            g.rotate_if_front(s);
        } else if g.servers.iter().any(|x| x.name == s.name) {
            g.suspect.insert(s.name.clone());
        }
    }

    /// One RPC with failover: calls `attempt` with each server of
    /// [`failover_order`](Manager::failover_order) (taken now) in turn until one succeeds,
    /// reporting each failure ([`notify_failed_server`](Manager::notify_failed_server)) and
    /// the success ([`notify_ok_server`](Manager::notify_ok_server)). Every server is tried
    /// at most once. Returns the server that answered and its answer, or the last error
    /// (`None` when there is no server at all).
    pub async fn try_each<T, E, F, Fut>(&self, mut attempt: F) -> Result<(Server, T), Option<E>>
    where
        F: FnMut(Server) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        if self.old_failover() {
            return self.try_from_front(attempt).await;
        }
        let mut last = None;
        for s in self.failover_order() {
            match attempt(s.clone()).await {
                Ok(t) => {
                    self.notify_ok_server(&s);
                    return Ok((s, t));
                }
                Err(e) => {
                    self.notify_failed_server(&s);
                    last = Some(e);
                }
            }
        }
        Err(last)
    }

    /// The failover before issue 30 ([`Bug::FailoverFromFront`]): as many attempts as there
    /// are servers, each at whatever server is in front by then.
    async fn try_from_front<T, E, F, Fut>(&self, mut attempt: F) -> Result<(Server, T), Option<E>>
    where
        F: FnMut(Server) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut last = None;
        for _ in 0..self.num_servers() {
            let Some(s) = self.find_server() else { break };
            match attempt(s.clone()).await {
                Ok(t) => return Ok((s, t)),
                Err(e) => {
                    self.notify_failed_server(&s);
                    last = Some(e);
                }
            }
        }
        Err(last)
    }

    /// Number of servers, healthy or not.
    pub fn num_servers(&self) -> usize {
        self.lock().servers.len()
    }

    /// All servers, front first.
    pub fn servers(&self) -> Vec<Server> {
        self.lock().servers.clone()
    }

    /// Whether `s` is suspect now (see [`Manager`]).
    pub fn is_suspect(&self, s: &Server) -> bool {
        self.lock().is_suspect(s)
    }

    /// Whether every server failed its ping at the last rebalance (and none was added since).
    pub fn is_offline(&self) -> bool {
        self.lock().offline
    }

    /// Shuffles the list, then pings from the front, moving each server that does not answer to
    /// the back, until one answers; commits that order. If none answers, the old list is kept
    /// and the manager is offline until a later rebalance finds one or a server is added
    /// (also while this rebalance pings). A server that answers is no longer suspect; one that
    /// does not becomes suspect.
    pub async fn rebalance_servers(&self) {
        let (mut list, version) = {
            let g = self.lock();
            (g.servers.clone(), g.version)
        };
        if list.is_empty() {
            return;
        }
        {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            list.shuffle(&mut *rng);
        }
        let mut found = false;
        let mut silent = Vec::new();
        for _ in 0..list.len() {
            if self.pinger.ping(&list[0]).await {
                found = true;
                break;
            }
            silent.push(list[0].name.clone());
            list.rotate_left(1);
        }
        let mut g = self.lock();
        if !self.old_failover() {
            g.suspect.extend(silent);
            if found {
                g.answered(&list[0].name);
            }
        }
        // A server added while pinging ends offline (it was just seen); a rebalance that
        // found nobody does not undo that.
        if found || g.version == version {
            g.offline = !found;
        }
        if found {
            if g.version == version {
                g.servers = list;
            } else {
                // Servers came or went while pinging: keep the new order for the servers
                // still known, then append the newcomers.
                let current = std::mem::take(&mut g.servers);
                let mut merged: Vec<Server> = list
                    .into_iter()
                    .filter_map(|s| current.iter().find(|c| c.name == s.name).cloned())
                    .collect();
                let newcomers: Vec<Server> = current
                    .into_iter()
                    .filter(|c| !merged.iter().any(|m| m.name == c.name))
                    .collect();
                merged.extend(newcomers);
                g.servers = merged;
            }
        }
        let known: BTreeSet<String> = g.servers.iter().map(|s| s.name.clone()).collect();
        g.suspect.retain(|n| known.contains(n));
        g.answered.retain(|n, _| known.contains(n));
    }

    /// The delay until the next rebalance: the scaled interval plus up to half of it as jitter.
    pub fn rebalance_delay(&self) -> Duration {
        let base = rebalance_interval(self.min_reuse, self.num_servers(), self.cluster.num_nodes());
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let jitter = rng.gen_range(0..=u64::try_from(base.as_nanos() / 2).unwrap_or(u64::MAX));
        base.saturating_add(Duration::from_nanos(jitter))
    }

    /// Rebalances on the timer until `stop` completes (Consul's `Start`).
    pub async fn run<C: crate::Clock>(&self, clock: &C, stop: impl std::future::Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        loop {
            let sleep = clock.sleep(self.rebalance_delay());
            if let futures::future::Either::Left(_) = futures::future::select(&mut stop, sleep).await {
                return;
            }
            self.rebalance_servers().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use std::collections::BTreeSet;

    /// Answers pings from the servers named in the set.
    struct Up(Mutex<BTreeSet<String>>);
    impl Pinger for Up {
        fn ping(&self, s: &Server) -> crate::BoxFuture<'_, bool> {
            let ok = self.0.lock().unwrap().contains(&s.name);
            Box::pin(async move { ok })
        }
    }

    fn s(n: &str) -> Server {
        Server::new(n, "dc1", "p.")
    }

    fn manager(up: &[&str]) -> (Manager, Arc<Up>) {
        let p = Arc::new(Up(Mutex::new(up.iter().map(|x| x.to_string()).collect())));
        (Manager::new(p.clone(), Arc::new(|| 10usize), 7), p)
    }

    fn names(m: &Manager) -> Vec<String> {
        m.servers().into_iter().map(|s| s.name).collect()
    }

    #[test]
    fn an_empty_manager_finds_nothing_and_rebalancing_it_is_harmless() {
        let (m, _) = manager(&[]);
        assert_eq!(m.find_server(), None);
        assert_eq!(m.num_servers(), 0);
        block_on(m.rebalance_servers());
        assert!(!m.is_offline());
        m.notify_failed_server(&s("a"));
        assert_eq!(m.find_server(), None);
    }

    #[test]
    fn add_appends_new_servers_and_merges_known_ones() {
        let (m, _) = manager(&[]);
        m.add_server(s("a"));
        m.add_server(s("b"));
        let mut a2 = s("a");
        a2.datacenter = "dc9".into();
        m.add_server(a2.clone());
        assert_eq!(names(&m), ["a", "b"]);
        assert_eq!(m.find_server(), Some(a2));
        m.remove_server(&s("a"));
        assert_eq!(names(&m), ["b"]);
    }

    #[test]
    fn one_server_stays_in_front_even_when_it_fails() {
        let (m, _) = manager(&[]);
        m.add_server(s("a"));
        m.notify_failed_server(&s("a"));
        assert_eq!(m.find_server().unwrap().name, "a");
    }

    #[test]
    fn a_failed_front_server_rotates_to_the_back_but_a_non_front_one_does_not_move() {
        let (m, _) = manager(&[]);
        for n in ["a", "b", "c"] {
            m.add_server(s(n));
        }
        m.notify_failed_server(&s("b"));
        assert_eq!(names(&m), ["a", "b", "c"], "b is not in front: nothing moves");
        m.notify_failed_server(&s("a"));
        assert_eq!(names(&m), ["b", "c", "a"]);
        m.notify_failed_server(&s("a"));
        assert_eq!(
            names(&m),
            ["b", "c", "a"],
            "a second report of the same failure is a no-op"
        );
    }

    #[test]
    fn rebalance_puts_an_answering_server_in_front() {
        let (m, _) = manager(&["c"]);
        for n in ["a", "b", "c", "d"] {
            m.add_server(s(n));
        }
        block_on(m.rebalance_servers());
        assert_eq!(m.find_server().unwrap().name, "c");
        assert!(!m.is_offline());
        let mut all = names(&m);
        all.sort();
        assert_eq!(all, ["a", "b", "c", "d"], "nobody is lost");
    }

    #[test]
    fn rebalance_with_every_ping_failing_keeps_the_old_list_and_goes_offline() {
        let (m, up) = manager(&[]);
        for n in ["a", "b", "c"] {
            m.add_server(s(n));
        }
        block_on(m.rebalance_servers());
        assert!(m.is_offline());
        assert_eq!(names(&m), ["a", "b", "c"]);
        up.0.lock().unwrap().insert("b".into());
        block_on(m.rebalance_servers());
        assert!(!m.is_offline());
        assert_eq!(m.find_server().unwrap().name, "b");
    }

    #[test]
    fn the_rebalance_timer_is_at_least_the_reuse_time_and_scales_with_the_cluster() {
        assert_eq!(rebalance_interval(MIN_REUSE, 3, 100), MIN_REUSE);
        // 3 servers take 192 connections per second: 100 000 clients need 520.8 s.
        let big = rebalance_interval(MIN_REUSE, 3, 100_000);
        assert!((big.as_secs_f64() - 100_000.0 / 192.0).abs() < 1e-6);
        let (m, _) = manager(&[]);
        m.add_server(s("a"));
        for _ in 0..100 {
            let d = m.rebalance_delay();
            assert!(d >= MIN_REUSE && d <= MIN_REUSE + MIN_REUSE / 2, "{d:?}");
        }
    }

    #[test]
    fn rebalancing_spreads_first_choices_over_servers() {
        let up = Arc::new(Up(Mutex::new(
            ["a", "b", "c", "d"].iter().map(|x| x.to_string()).collect(),
        )));
        let mut counts = std::collections::BTreeMap::new();
        for seed in 0..400 {
            let m = Manager::new(up.clone(), Arc::new(|| 10usize), seed);
            for n in ["a", "b", "c", "d"] {
                m.add_server(s(n));
            }
            block_on(m.rebalance_servers());
            *counts.entry(m.find_server().unwrap().name).or_insert(0u32) += 1;
        }
        assert!(counts.values().all(|c| (60..=140).contains(c)), "{counts:?}");
    }

    /// One RPC through `m.try_each` against the servers named in `up`; while its second
    /// attempt is in flight, membership loses `lost` (as an agent that hears nobody reports
    /// every peer). Returns the servers tried, in order, and the one that answered.
    fn rpc(m: &Manager, up: &[&str], lost: &[&str]) -> (Vec<String>, Option<String>) {
        let mut tried = Vec::new();
        let r = block_on(m.try_each(|s: Server| {
            tried.push(s.name.clone());
            if tried.len() == 2 {
                for l in lost {
                    m.fail_server(&s_(l));
                }
            }
            let ok = up.contains(&s.name.as_str());
            async move {
                if ok {
                    Ok(())
                } else {
                    Err(())
                }
            }
        }));
        (tried, r.ok().map(|(s, ())| s.name))
    }

    fn s_(n: &str) -> Server {
        s(n)
    }

    #[test]
    fn failover_tries_every_server_once_whatever_membership_reports_meanwhile() {
        // The issue's case: n0, n1, n2 are slow consumers, the client's host agent hears
        // nobody and loses every peer while the RPC is in flight; only n3 answers.
        let (m, _) = manager(&[]);
        for n in ["n0", "n1", "n2", "n3"] {
            m.add_server(s(n));
        }
        let (tried, ok) = rpc(&m, &["n3"], &["n1", "n2", "n3"]);
        assert_eq!(tried, ["n0", "n1", "n2", "n3"]);
        assert_eq!(ok.as_deref(), Some("n3"));
        assert_eq!(
            m.find_server().unwrap().name,
            "n3",
            "the next RPC starts at the one that answered"
        );
        // The failover before issue 30 tried n0 twice and n3 never.
        let (old, _) = manager(&[]);
        let old = old.with_bugs(BugKnobs::planted(Bug::FailoverFromFront));
        for n in ["n0", "n1", "n2", "n3"] {
            old.add_server(s(n));
        }
        let (tried, ok) = rpc(&old, &["n3"], &["n1", "n2", "n3"]);
        assert_eq!(tried, ["n0", "n1", "n0", "n1"], "the planted bug");
        assert_eq!(ok, None);
    }

    #[test]
    fn a_membership_loss_marks_a_server_suspect_without_reordering() {
        let (m, _) = manager(&[]);
        for n in ["a", "b", "c"] {
            m.add_server(s(n));
        }
        m.fail_server(&s("a"));
        m.fail_server(&s("zz"));
        assert_eq!(names(&m), ["a", "b", "c"], "the order stays");
        assert_eq!(m.find_server().unwrap().name, "b", "traffic shifts away at once");
        assert!(m.is_suspect(&s("a")) && !m.is_suspect(&s("zz")));
        let order: Vec<String> = m.failover_order().into_iter().map(|s| s.name).collect();
        assert_eq!(order, ["b", "c", "a"], "a suspect server is tried last");
        m.add_server(s("a"));
        assert_eq!(m.find_server().unwrap().name, "a", "added again, it is in front again");
        for n in ["a", "b", "c"] {
            m.fail_server(&s(n));
        }
        assert_eq!(m.find_server().unwrap().name, "a", "all suspect: the front");
        let (tried, ok) = rpc(&m, &["c"], &[]);
        assert_eq!(
            (tried, ok.as_deref()),
            (vec!["a".to_string(), "b".into(), "c".into()], Some("c"))
        );
        assert!(!m.is_suspect(&s("c")), "an answer clears it");
    }

    #[test]
    fn adding_a_server_ends_offline() {
        let (m, up) = manager(&[]);
        m.add_server(s("a"));
        block_on(m.rebalance_servers());
        assert!(m.is_offline());
        up.0.lock().unwrap().insert("a".into());
        m.add_server(s("a"));
        assert!(!m.is_offline(), "a server was just seen (Consul's AddServer)");
    }

    #[test]
    fn rebalance_marks_silent_servers_suspect_and_clears_the_one_that_answers() {
        let (m, _) = manager(&["c"]);
        for n in ["a", "b", "c", "d"] {
            m.add_server(s(n));
            m.fail_server(&s(n));
        }
        block_on(m.rebalance_servers());
        assert_eq!(m.find_server().unwrap().name, "c");
        assert!(!m.is_suspect(&s("c")));
        assert!(["a", "b", "d"].iter().all(|n| m.is_suspect(&s(n))));
    }

    #[test]
    fn extreme_settings_never_panic() {
        let m = Manager::new(Arc::new(Up(Mutex::new(BTreeSet::new()))), Arc::new(|| usize::MAX), 1)
            .with_min_reuse(Duration::MAX);
        m.add_server(s("a"));
        assert_eq!(m.rebalance_delay(), Duration::MAX);
        assert!(rebalance_interval(Duration::ZERO, 0, usize::MAX) > Duration::ZERO);
    }

    /// Fails every ping, and while the first is in flight membership adds server "b".
    struct AddsWhilePinging(Mutex<Option<std::sync::Weak<Manager>>>);
    impl Pinger for AddsWhilePinging {
        fn ping(&self, _: &Server) -> crate::BoxFuture<'_, bool> {
            if let Some(m) = self.0.lock().unwrap().take().and_then(|w| w.upgrade()) {
                m.add_server(s("b"));
            }
            Box::pin(async { false })
        }
    }

    #[test]
    fn a_server_added_while_a_rebalance_pings_is_not_undone_by_it() {
        let p = Arc::new(AddsWhilePinging(Mutex::new(None)));
        let m = Arc::new(Manager::new(p.clone(), Arc::new(|| 10usize), 3));
        m.add_server(s("a"));
        *p.0.lock().unwrap() = Some(Arc::downgrade(&m));
        block_on(m.rebalance_servers());
        assert!(!m.is_offline(), "b was added after the rebalance began");
        block_on(m.rebalance_servers());
        assert!(m.is_offline(), "a rebalance with nothing added meanwhile goes offline");
    }

    #[test]
    fn with_every_server_suspect_the_one_that_answered_last_comes_first() {
        let (m, _) = manager(&[]);
        for n in ["a", "b", "c"] {
            m.add_server(s(n));
        }
        m.notify_ok_server(&s("c"));
        m.notify_ok_server(&s("b"));
        for n in ["a", "b", "c"] {
            m.fail_server(&s(n));
        }
        let order: Vec<String> = m.failover_order().into_iter().map(|s| s.name).collect();
        assert_eq!(order, ["b", "c", "a"], "b answered last, a never");
        assert_eq!(m.find_server().unwrap().name, "b");
        assert_eq!(names(&m), ["a", "b", "c"], "the list itself is not reordered");
    }
}
