//! The router workload: servers (the scenario's nodes) that answer pings and probe each
//! other, and clients that route RPCs with leasehold's `Router` over them, recording what
//! they did for the oracle ([`crate::oracle::routing`]).

use crate::agents::Agents;
use crate::clock::{true_now, SimClock};
use crate::fabric::Fabric;
use crate::scenario::RouterSpec;
use leasehold::router::{ClusterInfo, CoordinateBook, Manager, NetworkPinger, Pinger, Router, Server};
use leasehold::{AgentLoc, Clock, MembershipHandle};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One RPC as a client made it.
#[derive(Debug, Clone)]
pub struct Rpc {
    /// Client index.
    pub client: usize,
    /// True start and end (ns).
    pub start: u128,
    /// End.
    pub end: u128,
    /// Servers tried (node index) and whether each answered.
    pub tries: Vec<(usize, bool)>,
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
    /// Per client.
    pub ends: BTreeMap<usize, ClientEnd>,
}

/// Where the servers are, for a client.
#[derive(Clone)]
pub struct Servers {
    /// (fabric index, server) for every scenario node.
    pub all: Vec<(usize, Server)>,
}

impl Servers {
    /// The server named `name`, if it is one.
    pub fn named(&self, name: &str) -> Option<Server> {
        self.all.iter().find(|(_, s)| s.name == name).map(|(_, s)| s.clone())
    }

    /// The fabric index of the server named `name` (`usize::MAX` if none is).
    pub fn index_of(&self, name: &str) -> usize {
        self.all
            .iter()
            .find(|(_, s)| s.name == name)
            .map_or(usize::MAX, |(i, _)| *i)
    }
}

/// The ping/RPC subject prefix.
pub const PREFIX: &str = "_sim.router.";

fn cluster(n: usize) -> Arc<dyn ClusterInfo> {
    Arc::new(move || n)
}

/// A server's side: answer pings, and probe the other servers so its coordinate places it.
pub async fn server_main(fabric: Fabric, clock: SimClock, me: usize, servers: Servers, spec: RouterSpec, seed: u64) {
    let book = Arc::new(Mutex::new(CoordinateBook::new(seed)));
    let (_, my) = servers.all[me].clone();
    madsim::task::spawn(leasehold::router::serve_pings(
        fabric.client(me),
        my.ping_subject.clone(),
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

/// One simulated router client: it routes RPCs through its own [`Router`], probes servers
/// for coordinates, rebalances on its timer, and near the end rebalances once more and
/// records its first choice and its datacenters by distance. It learns the servers as a
/// service in production does: its own host's server, and the rest from the membership
/// notices of its host's agent ([`leasehold::router::feed`]).
pub struct Client {
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
    /// Where RPCs and the final choices are recorded.
    pub record: Arc<Mutex<Record>>,
}

impl Client {
    /// Runs the client until two seconds before the end, then records its final choices.
    pub async fn run(self) {
        let book = Arc::new(Mutex::new(CoordinateBook::new(self.seed)));
        let pinger: Arc<NetworkPinger<_, _>> = Arc::new(NetworkPinger::new(
            self.fabric.client(self.node),
            self.clock.clone(),
            self.spec.rpc_timeout.0,
            book.clone(),
        ));
        let router = Arc::new(Router::new(self.dc.clone(), self.seed).with_min_reuse(self.spec.min_reuse.0));
        let n = self.servers.all.len() + self.spec.clients;
        let _ = router.add_area("lan", cluster(n), pinger.clone(), book.clone());
        let _ = router.add_area("wan", cluster(n), pinger.clone(), book);
        let (_, own) = self.servers.all[self.home].clone();
        let _ = router.add_server(area_of(&own, &self.dc), own);
        madsim::task::spawn(follow_host(
            router.clone(),
            self.agents.clone(),
            self.home,
            self.servers.clone(),
            self.dc.clone(),
            self.clock.clone(),
            self.spec.probe_every.0,
        ));
        rebalance_all(&router).await;
        let local = router.managers(&self.dc).into_iter().next();
        let delay = |m: &Option<Arc<Manager>>| m.as_ref().map_or(self.spec.min_reuse.0, |m| m.rebalance_delay());
        let mut next_rebalance = self.clock.now() + delay(&local);
        let mut next_rpc = self.clock.now();
        let last_call = self.end.saturating_sub(Duration::from_secs(2));
        let mut probe = 0usize;
        while Duration::from_nanos(true_now(self.start) as u64) < last_call {
            if self.clock.now() >= next_rebalance {
                rebalance_all(&router).await;
                next_rebalance = self.clock.now() + delay(&local);
            }
            if self.clock.now() >= next_rpc {
                next_rpc = self.clock.now() + self.spec.rpc_every.0;
                self.rpc(&router).await;
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
            m.rebalance_servers().await;
        }
        let end = ClientEnd {
            first_choice: router
                .find_route(&self.dc)
                .map(|r| self.servers.index_of(&r.server.name)),
            by_distance: router.datacenters_by_distance(),
            known: known_servers(&router),
        };
        self.record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ends
            .insert(self.index, end);
    }

    /// One RPC: the route's server first, then fail over through the manager's list.
    async fn rpc(&self, router: &Router) {
        let rpc_start = true_now(self.start);
        let mut tries = Vec::new();
        if let Some(route) = router.find_route(&self.dc) {
            let (manager, mut server) = (route.manager, route.server);
            for _ in 0..manager.num_servers() {
                let ok = leasehold::request(
                    &self.fabric.client(self.node),
                    &self.clock,
                    &server.ping_subject,
                    bytes::Bytes::from_static(b"{}"),
                    self.spec.rpc_timeout.0,
                )
                .await
                .is_ok();
                tries.push((self.servers.index_of(&server.name), ok));
                if ok {
                    break;
                }
                manager.notify_failed_server(&server);
                match manager.find_server() {
                    Some(s) => server = s,
                    None => break,
                }
            }
        }
        self.record.lock().unwrap_or_else(|e| e.into_inner()).rpcs.push(Rpc {
            client: self.index,
            start: rpc_start,
            end: true_now(self.start),
            tries,
        });
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

/// Feeds `router` from the agent of node `home`, incarnation after incarnation: each new one
/// is watched (its notices first, then the members it already knows, so that nothing falls
/// between the two), and the watch of the one before is dropped.
async fn follow_host(
    router: Arc<Router>,
    agents: Agents,
    home: usize,
    servers: Servers,
    dc: String,
    clock: SimClock,
    every: Duration,
) {
    let mut seen = 0;
    let mut feeds: Vec<madsim::task::JoinHandle<()>> = Vec::new();
    loop {
        if let Some((inc, agent)) = agents.get(home).filter(|(inc, _)| *inc != seen) {
            seen = inc;
            feeds.drain(..).for_each(|f| f.abort());
            for area in ["lan", "wan"] {
                feeds.push(madsim::task::spawn(feed_area(
                    router.clone(),
                    area,
                    agent.clone(),
                    servers.clone(),
                    dc.clone(),
                )));
            }
        }
        clock.sleep(every).await;
    }
}

/// Feeds one area of `router` from `agent`, with the servers that belong in it.
async fn feed_area(router: Arc<Router>, area: &'static str, agent: MembershipHandle, servers: Servers, dc: String) {
    let server_of = |loc: &AgentLoc| servers.named(&loc.id).filter(|s| area_of(s, &dc) == area);
    let notices = agent.notices(1024);
    for loc in agent.members() {
        if let Some(s) = server_of(&loc) {
            let _ = router.add_server(area, s);
        }
    }
    leasehold::router::feed(&router, area, notices, server_of).await;
}

/// Rebalances every manager of every datacenter.
async fn rebalance_all(router: &Router) {
    for d in router.datacenters() {
        for m in router.managers(&d) {
            m.rebalance_servers().await;
        }
    }
}
