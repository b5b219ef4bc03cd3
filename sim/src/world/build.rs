//! Building the world of one run, in one place: the clocks the plan sets, the fabric with
//! its datacenters, the router servers, the recording, the fault resolver, and the madsim hosts
//! that run it all. Nodes are resolved from the scenario once, here.

use super::{State, World};
use crate::agents::Agents;
use crate::clock::ClockModel;
use crate::disk::Disks;
use crate::fabric::Fabric;
use crate::faults::Resolver;
use crate::nemesis::Plan;
use crate::oracle::conduct::Conduct;
use crate::oracle::guards::{Guards, SIM_SLACK};
use crate::oracle::{secs, Live};
use crate::record::{Book, Keep};
use crate::scenario::{Scenario, SimNode, Step};
use crate::seeds::mix;
use crate::workload::router::{client_datacenter, home_of, PingForger, Record, Servers, PREFIX};
use madsim::task::NodeId;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where each host sits in the fabric: the agents' nodes first, then the router clients, the
/// impostor, the fenced store and the stranger who answers router pings.
#[derive(Debug, Clone, Copy)]
struct Layout {
    nodes: usize,
    clients: usize,
    impostor: Option<usize>,
    store: Option<usize>,
    ping_forger: Option<usize>,
}

impl Layout {
    fn of(scn: &Scenario, nodes: usize) -> Self {
        let clients = scn.router.as_ref().map_or(0, |r| r.clients);
        let mut next = nodes + clients;
        let mut take = |present: bool| {
            present.then(|| {
                next += 1;
                next - 1
            })
        };
        let impostor = take(scn.faults.impostor.is_some());
        let store = take(scn.workload.fenced_store);
        // Router scenarios that forge also forge answers to pings.
        let forges = scn.faults.forge.is_some() || scn.at.iter().any(|a| matches!(a.step, Step::Forge(_)));
        let ping_forger = take(scn.router.is_some() && forges);
        Layout {
            nodes,
            clients,
            impostor,
            store,
            ping_forger,
        }
    }

    /// Hosts in the fabric.
    fn total(&self) -> usize {
        self.nodes
            + self.clients
            + usize::from(self.impostor.is_some())
            + usize::from(self.store.is_some())
            + usize::from(self.ping_forger.is_some())
    }
}

/// The madsim hosts of one run.
pub(crate) struct Hosts {
    /// The agents' hosts, by node index.
    pub agents: Vec<NodeId>,
    /// Router clients, the impostor, the fenced store, the ping forger.
    others: Vec<NodeId>,
}

impl Hosts {
    /// Takes every host down with the run: madsim frees a host's tasks (and all they hold: the
    /// world, the fabric, agents' state) when it dies, not when the runtime ends, so a sweep
    /// would otherwise keep every seed's.
    pub(crate) fn kill_all(&self) {
        let h = madsim::runtime::Handle::current();
        for id in self.agents.iter().chain(&self.others) {
            h.kill(*id);
        }
    }
}

impl World {
    /// The world of seed `seed` of `scn` under fault plan `plan`, from true time zero `start`,
    /// keeping what `keep` says and judged for liveness as `live` says; its hosts are created
    /// and running.
    pub(crate) fn build(
        scn: &Scenario,
        seed: u64,
        plan: &Plan,
        start: madsim::time::Instant,
        keep: Keep,
        live: Live,
    ) -> (Arc<World>, Hosts) {
        let nodes = scn.sim_nodes();
        let n = nodes.len();
        let layout = Layout::of(scn, n);
        let clocks = clocks(scn, plan, n, layout.clients);
        let fabric = fabric(scn, seed, start, &nodes, &layout);
        let ids: Vec<String> = nodes.iter().map(|x| x.id.clone()).collect();
        let book = Book::new(keep, clocks[..n].to_vec(), ids.clone(), live);
        let cfg = scn.membership_cfg();
        let w = Arc::new(World {
            scn: scn.clone(),
            seed,
            start,
            fabric,
            disks: Disks::new(n),
            clocks,
            servers: Servers {
                all: nodes
                    .iter()
                    .enumerate()
                    .map(|(i, x)| {
                        (
                            i,
                            leasehold::router::Server::new(x.id.clone(), x.datacenter.clone(), PREFIX),
                        )
                    })
                    .collect(),
            },
            routes: Arc::new(Mutex::new(Record::default())),
            ping_forger: PingForger::default(),
            agents: Agents::new(n),
            effects: Arc::new(Mutex::new(crate::oracle::effects::Effects::default())),
            graces: Mutex::new(Vec::new()),
            resolver: Mutex::new(Resolver::new(
                ids,
                seed,
                cfg.sys_member_prefix,
                scn.membership.authenticate,
            )),
            state: Mutex::new(State {
                incarnations: vec![0; n],
                book,
                seq: 0,
                notice_seq: u64::MAX / 2,
                applied: Vec::new(),
                applied_count: 0,
                stops: vec![0; n],
                sizes: vec![None; n],
                coverage: super::sites::coverage(scn, &plan.drift_ppm),
                clones: Vec::new(),
                guards: Guards::new(n, SIM_SLACK),
                conduct: Conduct::default(),
            }),
            sites: super::sites::SitePlan::of(scn, seed),
            nodes,
        });
        if let Some(s) = &w.sites {
            w.trace(None, s.describe());
        }
        for (i, c) in plan.drift_ppm.iter().enumerate() {
            if *c != 0 || plan.wall_offset_ns[i] != 0 {
                let off = plan.wall_offset_ns[i];
                let sign = if off < 0 { "-" } else { "+" };
                w.trace(
                    Some(i),
                    format!("clock drift {c}ppm wall offset {sign}{}", secs(off.unsigned_abs())),
                );
            }
        }
        let hosts = create_hosts(&w, &layout);
        (w, hosts)
    }
}

/// Every node's clock as the plan sets it (with the clock bugs planted where the scenario
/// says), then the router clients' clocks.
fn clocks(scn: &Scenario, plan: &Plan, n: usize, clients: usize) -> Vec<Arc<Mutex<ClockModel>>> {
    (0..n)
        .map(|i| {
            let c = ClockModel::new(plan.origin[i], plan.drift_ppm[i], plan.wall_offset_ns[i]);
            // Planted bugs in the clock the agent reads: one that stops while suspended, or one
            // that reads suspended time the old way.
            let bugs = scn.node_cfg(i).bug_knobs;
            let c = if bugs.has(leasehold::Bug::RatchetingClockRead) {
                c.ratcheting_read()
            } else {
                c
            };
            if bugs.has(leasehold::Bug::SuspendBlindClock) {
                c.reading_awake_time()
            } else {
                c
            }
        })
        .chain((0..clients).map(|_| ClockModel::new(Duration::ZERO, 0, 0)))
        .map(|c| Arc::new(Mutex::new(c)))
        .collect()
}

/// The simulated NATS: every host of the layout, routes with the scenario's latency, loss,
/// duplicates and reordering, datacenters and the links between them.
fn fabric(scn: &Scenario, seed: u64, start: madsim::time::Instant, nodes: &[SimNode], layout: &Layout) -> Fabric {
    let net = &scn.network;
    let fabric = Fabric::new(
        layout.total(),
        net.latency,
        net.loss,
        net.reorder,
        mix(seed, 0xfab, 0),
        start,
    );
    fabric.set_duplicate(net.duplicate);
    fabric.set_quantum(scn.quantum());
    // In quantised time routes are ideal, as in the checker.
    if scn.quantum().is_none() {
        let timing = crate::routes::RouteTiming {
            stale: net.route_stale,
            redial: net.route_redial,
            startup: net.route_startup,
            collide: net.route_collide,
        };
        fabric.set_routes(timing, mix(seed, 0xfab, 1));
    }
    fabric.set_pending_limits(net.pending_msgs, net.pending_bytes);
    if scn.faults.replay.is_some() || scn.at.iter().any(|a| matches!(a.step, Step::Replay(_))) {
        fabric.keep_log(crate::scenario::MAX_REPLAY_WINDOW);
    }
    let mut dcs: Vec<String> = nodes.iter().map(|x| x.datacenter.clone()).collect();
    dcs.sort();
    dcs.dedup();
    let dc_index = |d: &str| dcs.iter().position(|x| x == d).unwrap_or(0);
    let client_dc = client_datacenter(scn);
    let n = layout.nodes;
    fabric.topology(|t| {
        for (i, node) in nodes.iter().enumerate() {
            t.set_datacenter(i, dc_index(&node.datacenter));
        }
        for k in 0..layout.clients {
            t.set_datacenter(n + k, dc_index(&client_dc));
            t.set_host(n + k, home_of(nodes, k, &client_dc));
        }
        if let Some(f) = layout.ping_forger {
            t.set_datacenter(f, dc_index(&client_dc));
        }
        for l in &net.dc_link {
            t.set_dc_latency(dc_index(&l.between.0), dc_index(&l.between.1), l.latency);
        }
    });
    fabric
}

/// Creates a madsim host per agent (10.0.x.y), per router client (10.1.x.y), and for the
/// impostor, the fenced store and the ping forger.
fn create_hosts(w: &Arc<World>, layout: &Layout) -> Hosts {
    let h = madsim::runtime::Handle::current();
    if w.scn.quantum().is_some() {
        for i in 0..w.nodes.len() {
            w.fabric.set_ping(i, w.scn.node_cfg(i).ping_interval());
            w.fabric.serve(i);
        }
    }
    let ip = |net: u8, i: usize| IpAddr::V4(Ipv4Addr::new(10, net, (i / 250) as u8, (i % 250) as u8 + 1));
    let ids = (0..w.nodes.len())
        .map(|i| {
            let w2 = w.clone();
            h.create_node()
                .name(w.nodes[i].id.clone())
                .ip(ip(0, i))
                .init(move || w2.clone().node_main(i))
                .build()
                .id()
        })
        .collect();
    let mut others = Vec::new();
    let dc = client_datacenter(&w.scn);
    for k in 0..layout.clients {
        let (w2, dc) = (w.clone(), dc.clone());
        let node = h
            .create_node()
            .name(format!("c{k}"))
            .ip(ip(1, k))
            .init(move || w2.clone().client_main(k, dc.clone()))
            .build();
        others.push(node.id());
    }
    if let (Some(imp), Some(me)) = (w.scn.faults.impostor.clone(), layout.impostor) {
        let (fabric, prefix) = (w.fabric.clone(), w.scn.membership_cfg().sys_member_prefix);
        let (phantoms, counterfeit) = (w.nodes.len(), w.scn.membership.authenticate);
        let node = h
            .create_node()
            .name("impostor")
            .ip(ip(2, 0))
            .init(move || {
                fabric.serve(me);
                crate::impostor::run(fabric.clone(), me, prefix.clone(), phantoms, imp.every.0, counterfeit)
            })
            .build();
        others.push(node.id());
    }
    if let Some(me) = layout.store {
        let (fabric, prefix) = (w.fabric.clone(), w.scn.membership_cfg().election_prefix());
        let (checks, effects, start) = (w.scn.workload.store_checks_tokens, w.effects.clone(), w.start);
        let node = h
            .create_node()
            .name("store")
            .ip(ip(3, 0))
            .init(move || {
                let effects = effects.clone();
                let judge = move |w| effects.lock().unwrap_or_else(|e| e.into_inner()).take(w);
                crate::workload::store::store_main(fabric.clone(), me, prefix.clone(), checks, judge, start)
            })
            .build();
        others.push(node.id());
    }
    if let Some(me) = layout.ping_forger {
        let (fabric, forger, servers) = (w.fabric.clone(), w.ping_forger.clone(), w.servers.clone());
        let node = h
            .create_node()
            .name("ping-forger")
            .ip(ip(4, 0))
            .init(move || {
                fabric.serve(me);
                forger.clone().run(fabric.clone(), me, servers.clone())
            })
            .build();
        others.push(node.id());
    }
    Hosts { agents: ids, others }
}
