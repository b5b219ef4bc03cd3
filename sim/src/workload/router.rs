//! The router workload: servers (the scenario's nodes) that answer pings and probe each
//! other, and clients that route RPCs with leasehold's `Router` over them, recording what
//! they did for the oracle ([`crate::oracle::routing`]).

use crate::agents::Agents;
use crate::clock::{true_now, SimClock};
use crate::fabric::Fabric;
use crate::scenario::{RouterSpec, Scenario, SimNode};
use leasehold::router::{ClusterInfo, CoordinateBook, Manager, NetworkPinger, Pinger, Router, Server};
use leasehold::{AgentLoc, BugKnobs, Clock, MembershipHandle, Network, Notice};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One RPC as a client made it.
#[derive(Debug, Clone)]
pub struct Rpc {
    /// Client index.
    pub client: usize,
    /// The datacenter it was for.
    pub dc: String,
    /// True start and end (ns).
    pub start: u128,
    /// End.
    pub end: u128,
    /// The servers of that datacenter the client's router knew when it started (node index).
    pub known: Vec<usize>,
    /// Servers tried (node index) and whether each answered.
    pub tries: Vec<(usize, bool)>,
    /// Whether the router called its route healthy (not every manager offline).
    pub healthy: bool,
}

/// One rebalance of one manager, as a client made it.
#[derive(Debug, Clone)]
pub struct Rebalance {
    /// Client index.
    pub client: usize,
    /// The manager's datacenter.
    pub dc: String,
    /// True start and end (ns).
    pub start: u128,
    /// End.
    pub end: u128,
    /// The servers it chose among (node index).
    pub candidates: Vec<usize>,
    /// The server in front afterwards, unless none answered (offline).
    pub chosen: Option<usize>,
}

/// A client's datacenters by distance at one moment.
#[derive(Debug, Clone)]
pub struct DistanceSample {
    /// Client index.
    pub client: usize,
    /// True time (ns).
    pub at: u128,
    /// `datacenters_by_distance` then.
    pub order: Vec<String>,
}

/// A server that a client's host agent reported as a member (added) or lost, so the client's
/// router was told it is there or gone.
#[derive(Debug, Clone)]
pub struct Told {
    /// Client index.
    pub client: usize,
    /// The server (node index).
    pub server: usize,
    /// True time (ns).
    pub at: u128,
    /// Added (`true`) or lost.
    pub added: bool,
}

/// What one client ended with.
#[derive(Debug, Clone, Default)]
pub struct ClientEnd {
    /// Its first choice after the final rebalance.
    pub first_choice: Option<usize>,
    /// Its datacenters by distance.
    pub by_distance: Vec<String>,
    /// The servers its router knew (in either area), by name.
    pub known: Vec<String>,
}

/// Everything clients recorded.
#[derive(Debug, Default)]
pub struct Record {
    /// All RPCs.
    pub rpcs: Vec<Rpc>,
    /// Every rebalance of every client's managers.
    pub rebalances: Vec<Rebalance>,
    /// Every client's datacenters by distance, after each of its timed rebalances and at the end.
    pub distances: Vec<DistanceSample>,
    /// Every server added to or failed in a client's router by its host's membership.
    pub told: Vec<Told>,
    /// Per client.
    pub ends: BTreeMap<usize, ClientEnd>,
}

/// Where the servers are, for a client.
#[derive(Clone)]
pub(crate) struct Servers {
    /// (fabric index, server) for every scenario node.
    pub all: Vec<(usize, Server)>,
}

impl Servers {
    /// The server named `name`, if it is one.
    pub(crate) fn named(&self, name: &str) -> Option<Server> {
        self.all.iter().find(|(_, s)| s.name == name).map(|(_, s)| s.clone())
    }

    /// The fabric index of the server named `name` (`usize::MAX` if none is).
    pub(crate) fn index_of(&self, name: &str) -> usize {
        self.all
            .iter()
            .find(|(_, s)| s.name == name)
            .map_or(usize::MAX, |(i, _)| *i)
    }
}

/// The ping subject prefix (`<PREFIX>ping.<name>`).
pub(crate) const PREFIX: &str = "_sim.router.";

/// The subject a server answers RPCs on (pings have their own: a stranger who answers pings
/// does not answer RPCs).
pub(crate) fn rpc_subject(s: &Server) -> String {
    format!("{PREFIX}rpc.{}", s.name)
}

/// The router clients' datacenter (default: the first node's).
pub(crate) fn client_datacenter(scn: &Scenario) -> String {
    scn.router
        .as_ref()
        .and_then(|r| r.datacenter.clone())
        .unwrap_or_else(|| scn.sim_nodes()[0].datacenter.clone())
}

/// The node whose host router client `k` of datacenter `dc` runs on: the nodes of its
/// datacenter in turn (any node, if it has none). The client shares that host's routes: a
/// partition puts it on its host's side.
pub(crate) fn home_of(nodes: &[SimNode], k: usize, dc: &str) -> usize {
    let local: Vec<usize> = (0..nodes.len()).filter(|i| nodes[*i].datacenter == dc).collect();
    if local.is_empty() {
        k % nodes.len().max(1)
    } else {
        local[k % local.len()]
    }
}

/// The bugs planted in the scenario's routers (`membership.bug`, when it is a router bug).
pub(crate) fn router_bugs(scn: &Scenario) -> BugKnobs {
    scn.membership.bug.map(BugKnobs::planted).unwrap_or_default()
}

fn cluster(n: usize) -> Arc<dyn ClusterInfo> {
    Arc::new(move || n)
}

/// A server's side: answer pings and RPCs, and probe the other servers so its coordinate
/// places it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn server_main(
    fabric: Fabric,
    clock: SimClock,
    me: usize,
    servers: Servers,
    spec: RouterSpec,
    seed: u64,
    bugs: BugKnobs,
) {
    let book = Arc::new(Mutex::new(CoordinateBook::new(seed).with_bugs(bugs)));
    let (_, my) = servers.all[me].clone();
    madsim::task::spawn(leasehold::router::serve_pings(
        fabric.client(me),
        my.ping_subject.clone(),
        my.name.clone(),
        book.clone(),
    ));
    madsim::task::spawn(leasehold::router::serve_pings(
        fabric.client(me),
        rpc_subject(&my),
        my.name.clone(),
        book.clone(),
    ));
    let pinger = NetworkPinger::new(fabric.client(me), clock.clone(), spec.rpc_timeout.0, book);
    let others: Vec<Server> = servers
        .all
        .iter()
        .filter(|(i, _)| *i != me)
        .map(|(_, s)| s.clone())
        .collect();
    for k in 0usize.. {
        clock.sleep(spec.probe_every.0).await;
        if !others.is_empty() {
            pinger.ping(&others[k % others.len()]).await;
        }
    }
}

/// One simulated router client: it routes RPCs through its own [`Router`] (to its own
/// datacenter, and every fourth to another in turn), probes servers for coordinates,
/// rebalances on its timer, and near the end rebalances once more and records its first
/// choice and its datacenters by distance. It learns the servers as a service in production
/// does: its own host's server, and the rest from the membership notices of its host's agent
/// ([`leasehold::router::feed()`]).
pub(crate) struct Client {
    /// The simulated NATS.
    pub fabric: Fabric,
    /// The client's clock.
    pub clock: SimClock,
    /// True time zero.
    pub start: madsim::time::Instant,
    /// The client's fabric index.
    pub node: usize,
    /// The client's number (`c<index>`).
    pub index: usize,
    /// The client's datacenter.
    pub dc: String,
    /// The servers (what a member's ID means: name, datacenter, ping subject).
    pub servers: Servers,
    /// The running agents.
    pub agents: Agents,
    /// The node whose host the client runs on (its agent feeds the client).
    pub home: usize,
    /// The scenario's `[router]`.
    pub spec: RouterSpec,
    /// End of the run (true time).
    pub end: Duration,
    /// Seed of the router's shuffles and the coordinates.
    pub seed: u64,
    /// Bugs planted in the client's router.
    pub bugs: BugKnobs,
    /// Where RPCs and the final choices are recorded.
    pub record: Arc<Mutex<Record>>,
}

impl Client {
    fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the client until two seconds before the end, then records its final choices.
    pub(crate) async fn run(self) {
        let book = Arc::new(Mutex::new(CoordinateBook::new(self.seed).with_bugs(self.bugs)));
        let pinger: Arc<NetworkPinger<_, _>> = Arc::new(NetworkPinger::new(
            self.fabric.client(self.node),
            self.clock.clone(),
            self.spec.rpc_timeout.0,
            book.clone(),
        ));
        let router = Arc::new(
            Router::new(self.dc.clone(), self.seed)
                .with_min_reuse(self.spec.min_reuse.0)
                .with_bugs(self.bugs),
        );
        let n = self.servers.all.len() + self.spec.clients;
        let _ = router.add_area("lan", cluster(n), pinger.clone(), book.clone());
        let _ = router.add_area("wan", cluster(n), pinger.clone(), book);
        let (_, own) = self.servers.all[self.home].clone();
        let _ = router.add_server(area_of(&own, &self.dc), own);
        madsim::task::spawn(follow_host(
            router.clone(),
            Feed {
                agents: self.agents.clone(),
                home: self.home,
                servers: self.servers.clone(),
                dc: self.dc.clone(),
                client: self.index,
                start: self.start,
                record: self.record.clone(),
            },
            self.clock.clone(),
            self.spec.probe_every.0,
        ));
        self.rebalance_all(&router).await;
        let local = router.managers(&self.dc).into_iter().next();
        let delay = |m: &Option<Arc<Manager>>| m.as_ref().map_or(self.spec.min_reuse.0, |m| m.rebalance_delay());
        let mut next_rebalance = self.clock.now() + delay(&local);
        let mut next_rpc = self.clock.now();
        let last_call = self.end.saturating_sub(Duration::from_secs(2));
        let (mut probe, mut rpcs) = (0usize, 0usize);
        while Duration::from_nanos(true_now(self.start) as u64) < last_call {
            if self.clock.now() >= next_rebalance {
                self.rebalance_all(&router).await;
                self.sample_distance(&router);
                next_rebalance = self.clock.now() + delay(&local);
            }
            if self.clock.now() >= next_rpc {
                next_rpc = self.clock.now() + self.spec.rpc_every.0;
                let remote: Vec<String> = router.datacenters().into_iter().filter(|d| *d != self.dc).collect();
                let dc = if rpcs % 4 == 3 && !remote.is_empty() {
                    remote[(rpcs / 4) % remote.len()].clone()
                } else {
                    self.dc.clone()
                };
                rpcs += 1;
                self.rpc(&router, &dc).await;
            }
            let all = &self.servers.all;
            if !all.is_empty() {
                pinger.ping(&all[probe % all.len()].1).await;
                probe += 1;
            }
            self.clock.sleep(self.spec.probe_every.0).await;
        }
        // The final rebalance, then what the oracle judges.
        if let Some(m) = &local {
            self.rebalance(m, &self.dc).await;
        }
        self.sample_distance(&router);
        let end = ClientEnd {
            first_choice: router
                .find_route(&self.dc)
                .map(|r| self.servers.index_of(&r.server.name)),
            by_distance: router.datacenters_by_distance(),
            known: known_servers(&router),
        };
        self.record().ends.insert(self.index, end);
    }

    fn indices(&self, list: &[Server]) -> Vec<usize> {
        list.iter().map(|s| self.servers.index_of(&s.name)).collect()
    }

    /// Rebalances one manager and records the choice.
    async fn rebalance(&self, m: &Manager, dc: &str) {
        let start = true_now(self.start);
        let candidates = self.indices(&m.servers());
        m.rebalance_servers().await;
        let chosen = (!m.is_offline())
            .then(|| m.servers().first().map(|s| self.servers.index_of(&s.name)))
            .flatten();
        let end = true_now(self.start);
        self.record().rebalances.push(Rebalance {
            client: self.index,
            dc: dc.to_string(),
            start,
            end,
            candidates,
            chosen,
        });
    }

    /// Rebalances every manager of every datacenter.
    async fn rebalance_all(&self, router: &Router) {
        for d in router.datacenters() {
            for m in router.managers(&d) {
                self.rebalance(&m, &d).await;
            }
        }
    }

    /// Records the datacenters by distance now.
    fn sample_distance(&self, router: &Router) {
        let sample = DistanceSample {
            client: self.index,
            at: true_now(self.start),
            order: router.datacenters_by_distance(),
        };
        self.record().distances.push(sample);
    }

    /// One RPC to datacenter `dc`: through the route's manager, which tries every server it
    /// knows once ([`Manager::try_each`]).
    async fn rpc(&self, router: &Router, dc: &str) {
        let rpc_start = true_now(self.start);
        let tries = Mutex::new(Vec::new());
        let (mut known, mut healthy) = (Vec::new(), false);
        if let Some(route) = router.find_route(dc) {
            known = self.indices(&route.manager.servers());
            healthy = route.healthy;
            let net = self.fabric.client(self.node);
            let _ = route
                .manager
                .try_each(|s: Server| {
                    let (net, tries) = (&net, &tries);
                    async move {
                        let ok = leasehold::request(
                            net,
                            &self.clock,
                            &rpc_subject(&s),
                            bytes::Bytes::from_static(b"{}"),
                            self.spec.rpc_timeout.0,
                        )
                        .await
                        .is_ok();
                        tries
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((self.servers.index_of(&s.name), ok));
                        if ok {
                            Ok(())
                        } else {
                            Err(())
                        }
                    }
                })
                .await;
        }
        let rpc = Rpc {
            client: self.index,
            dc: dc.to_string(),
            start: rpc_start,
            end: true_now(self.start),
            known,
            tries: tries.into_inner().unwrap_or_else(|e| e.into_inner()),
            healthy,
        };
        self.record().rpcs.push(rpc);
    }
}

/// A stranger who answers pings (the `forge` fault in a router scenario): it reads every
/// ping on the bus from a server of its own and, once armed by a forge, answers the next
/// [`PingForger::ANSWERS`] pings at once with hostile replies (see [`crate::forger::forge_pong`]).
#[derive(Clone, Default)]
pub(crate) struct PingForger {
    armed: Arc<Mutex<Option<(u64, usize)>>>,
}

impl PingForger {
    /// How many pings one forge answers.
    pub(crate) const ANSWERS: usize = 16;

    /// Arms the forger with forged reply number `pick`; returns what it will send.
    pub(crate) fn arm(&self, pick: u64) -> &'static str {
        *self.armed.lock().unwrap_or_else(|e| e.into_inner()) = Some((pick, Self::ANSWERS));
        crate::forger::forge_pong(pick, "", &[]).1
    }

    fn take(&self) -> Option<u64> {
        let mut g = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        let (pick, left) = (*g)?;
        *g = (left > 1).then_some((pick, left - 1));
        Some(pick)
    }

    /// Runs the forger on fabric index `me` until the run ends.
    pub(crate) async fn run(self, fabric: Fabric, me: usize, servers: Servers) {
        let net = fabric.client(me);
        let Ok(mut pings) = net.subscribe(&format!("{PREFIX}ping.*")).await else {
            return;
        };
        let names: Vec<String> = servers.all.iter().map(|(_, s)| s.name.clone()).collect();
        while let Some(m) = pings.next().await {
            let (Some(to), Some(pick)) = (m.reply, self.take()) else {
                continue;
            };
            let pinged = m.subject.rsplit('.').next().unwrap_or_default();
            let (payload, _) = crate::forger::forge_pong(pick, pinged, &names);
            let _ = net.publish(&to, None, payload).await;
        }
    }
}

/// Every server `router` knows, by name (global-area names are the plain names too).
fn known_servers(router: &Router) -> Vec<String> {
    let mut names: Vec<String> = ["lan", "wan"]
        .iter()
        .flat_map(|area| {
            router
                .datacenters()
                .into_iter()
                .flat_map(move |dc| router.area_servers(area, &dc))
        })
        .map(|s| s.name)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The area a server belongs in, for a client in datacenter `dc`.
fn area_of(s: &Server, dc: &str) -> &'static str {
    if s.datacenter == dc {
        "lan"
    } else {
        "wan"
    }
}

/// What feeds one client's router: its host's agent, and where to record what it was told.
#[derive(Clone)]
struct Feed {
    agents: Agents,
    home: usize,
    servers: Servers,
    dc: String,
    client: usize,
    start: madsim::time::Instant,
    record: Arc<Mutex<Record>>,
}

impl Feed {
    /// Records that membership added (or lost) server `s`.
    fn told(&self, s: &Server, added: bool) {
        let told = Told {
            client: self.client,
            server: self.servers.index_of(&s.name),
            at: true_now(self.start),
            added,
        };
        self.record.lock().unwrap_or_else(|e| e.into_inner()).told.push(told);
    }
}

/// Feeds `router` from the agent of the client's host, incarnation after incarnation: each
/// new one is watched (its notices first, then the members it already knows, so that nothing
/// falls between the two), and the watch of the one before is dropped.
async fn follow_host(router: Arc<Router>, feed: Feed, clock: SimClock, every: Duration) {
    let mut seen = 0;
    let mut feeds: Vec<madsim::task::JoinHandle<()>> = Vec::new();
    loop {
        if let Some((inc, agent)) = feed.agents.get(feed.home).filter(|(inc, _)| *inc != seen) {
            seen = inc;
            feeds.drain(..).for_each(|f| f.abort());
            for area in ["lan", "wan"] {
                feeds.push(madsim::task::spawn(feed_area(
                    router.clone(),
                    area,
                    agent.clone(),
                    feed.clone(),
                )));
            }
        }
        clock.sleep(every).await;
    }
}

/// Feeds one area of `router` from `agent`, with the servers that belong in it, as
/// [`leasehold::router::feed()`] does (through its core, [`leasehold::router::feed::apply`]),
/// recording each server added or lost.
async fn feed_area(router: Arc<Router>, area: &'static str, agent: MembershipHandle, feed: Feed) {
    let server_of = |loc: &AgentLoc| feed.servers.named(&loc.id).filter(|s| area_of(s, &feed.dc) == area);
    let mut notices = agent.notices(1024);
    for loc in agent.members() {
        if let Some(s) = server_of(&loc) {
            feed.told(&s, true);
            let _ = router.add_server(area, s);
        }
    }
    while let Some((_, n)) = notices.next().await {
        match &n {
            Notice::MemberAdded(loc) => server_of(loc).inspect(|s| feed.told(s, true)),
            Notice::MemberLost(loc) => server_of(loc).inspect(|s| feed.told(s, false)),
            _ => None,
        };
        leasehold::router::feed::apply(&router, area, &n, &server_of);
    }
}
