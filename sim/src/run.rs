//! Running one seed of a scenario: build the world, create its madsim nodes, play the fault
//! plan at its true times, then let the oracle judge what was recorded.

use crate::clock::ClockModel;
use crate::fabric::Fabric;
use crate::nemesis::{plan, Plan};
use crate::oracle::{secs, verdict, Violation, ViolationKind};
use crate::report::{Figures, RunReport};
use crate::scenario::Scenario;
use crate::trace::Trace;
use crate::workload::router::{Servers, PREFIX};
use crate::world::{mix, World};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Runs one seed of `scn` on a fresh thread (madsim seeds per-thread state on first use) and
/// returns its report. `source` is the scenario's path, used in the replay command.
pub fn run_seed(scn: &Scenario, seed: u64, source: &str) -> RunReport {
    let replay = format!("cargo run --release -p leasehold-sim -- replay {source} --seed {seed}");
    let (scn2, replay2) = (scn.clone(), replay.clone());
    let wall = std::time::Instant::now();
    let joined = std::thread::Builder::new()
        .name(format!("sim-seed-{seed}"))
        .spawn(move || {
            let mut rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
            rt.set_time_limit(scn2.duration.0 + Duration::from_secs(600));
            rt.block_on(simulate(scn2, seed, replay2))
        })
        .map_err(|e| e.to_string())
        .and_then(|h| {
            h.join().map_err(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into())
            })
        });
    let mut report = joined.unwrap_or_else(|msg| panicked(scn, seed, replay, msg));
    report.figures.wall_time = wall.elapsed();
    report
}

/// The report of a run that panicked.
fn panicked(scn: &Scenario, seed: u64, replay: String, msg: String) -> RunReport {
    RunReport {
        scenario: scn.name.clone(),
        seed,
        replay,
        nodes: scn.sim_nodes().into_iter().map(|n| n.id).collect(),
        plan: plan(scn, seed),
        applied: Vec::new(),
        trace: Trace::default(),
        claims: Vec::new(),
        violations: vec![Violation {
            kind: ViolationKind::Panic,
            at: 0,
            claims: Vec::new(),
            detail: msg,
        }],
        figures: Figures {
            sim_time: scn.duration.0,
            ..Figures::default()
        },
        router: None,
        swarm: None,
    }
}

async fn simulate(scn: Scenario, seed: u64, replay: String) -> RunReport {
    let start = madsim::time::Instant::now();
    let p = plan(&scn, seed);
    let w = Arc::new(build_world(&scn, seed, &p, start));
    let ids = create_nodes(&w);
    for ev in &p.events {
        // Steps due at the same instant are applied together: madsim's shortest sleep is 1 ms.
        if start + ev.at > madsim::time::Instant::now() {
            madsim::time::sleep_until(start + ev.at).await;
        }
        w.apply(&ev.action, &ids);
    }
    madsim::time::sleep_until(start + scn.duration.0).await;
    judge(&w, p, replay)
}

/// The world of one run: clocks from the plan, the fabric with its datacenters, the servers.
fn build_world(scn: &Scenario, seed: u64, p: &Plan, start: madsim::time::Instant) -> World {
    let nodes = scn.sim_nodes();
    let n = nodes.len();
    let m = scn.router.as_ref().map_or(0, |r| r.clients);
    let clocks = (0..n)
        .map(|i| {
            let c = ClockModel::new(p.origin[i], p.drift_ppm[i], p.wall_offset_ns[i]);
            // The planted bug is the clock the agent reads: one that stops while suspended.
            if scn.node_cfg(i).bug_knobs.has(leasehold::Bug::SuspendBlindClock) {
                c.reading_awake_time()
            } else {
                c
            }
        })
        .chain((0..m).map(|_| ClockModel::new(Duration::ZERO, 0, 0)))
        .map(|c| Arc::new(Mutex::new(c)))
        .collect();
    let net = &scn.network;
    // An impostor has a server of its own, after the nodes and the router clients.
    let strangers = usize::from(scn.faults.impostor.is_some());
    let fabric = Fabric::new(
        n + m + strangers,
        net.latency,
        net.loss,
        net.reorder,
        mix(seed, 0xfab, 0),
        start,
    );
    fabric.set_duplicate(net.duplicate);
    if scn.faults.replay.is_some()
        || scn
            .at
            .iter()
            .any(|a| matches!(a.step, crate::scenario::Step::Replay(_)))
    {
        fabric.keep_log(crate::scenario::MAX_REPLAY_WINDOW);
    }
    let mut dcs: Vec<String> = nodes.iter().map(|x| x.datacenter.clone()).collect();
    dcs.sort();
    dcs.dedup();
    let dc_index = |d: &str| dcs.iter().position(|x| x == d).unwrap_or(0);
    let client_dc = client_datacenter(scn);
    fabric.topology(|t| {
        for (i, node) in nodes.iter().enumerate() {
            t.set_datacenter(i, dc_index(&node.datacenter));
        }
        for k in 0..m {
            t.set_datacenter(n + k, dc_index(&client_dc));
        }
        for l in &net.dc_link {
            t.set_dc_latency(dc_index(&l.between.0), dc_index(&l.between.1), l.latency);
        }
    });
    let servers = Servers {
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
    };
    let w = World::new(scn.clone(), seed, start, fabric, clocks, servers);
    for (i, c) in p.drift_ppm.iter().enumerate() {
        if *c != 0 || p.wall_offset_ns[i] != 0 {
            let off = p.wall_offset_ns[i];
            let sign = if off < 0 { "-" } else { "+" };
            w.trace(
                Some(i),
                format!("clock drift {c}ppm wall offset {sign}{}", secs(off.unsigned_abs())),
            );
        }
    }
    w
}

/// The router clients' datacenter (default: the first node's).
fn client_datacenter(scn: &Scenario) -> String {
    scn.router
        .as_ref()
        .and_then(|r| r.datacenter.clone())
        .unwrap_or_else(|| scn.sim_nodes()[0].datacenter.clone())
}

/// Creates a madsim node per agent (10.0.x.y) and per router client (10.1.x.y); returns the
/// agents' node IDs, by index.
fn create_nodes(w: &Arc<World>) -> Vec<madsim::task::NodeId> {
    let h = madsim::runtime::Handle::current();
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
    let clients = w.scn.router.as_ref().map_or(0, |r| r.clients);
    let dc = client_datacenter(&w.scn);
    for k in 0..clients {
        let (w2, dc) = (w.clone(), dc.clone());
        h.create_node()
            .name(format!("c{k}"))
            .ip(ip(1, k))
            .init(move || w2.clone().client_main(k, dc.clone()))
            .build();
    }
    if let Some(imp) = w.scn.faults.impostor.clone() {
        let me = w.nodes.len() + clients;
        let (fabric, prefix) = (w.fabric.clone(), w.scn.membership_cfg().sys_member_prefix);
        let (phantoms, counterfeit) = (w.nodes.len(), w.scn.membership.authenticate);
        h.create_node()
            .name("impostor")
            .ip(ip(2, 0))
            .init(move || {
                madsim::task::spawn(fabric.serve(me));
                crate::impostor::run(fabric.clone(), me, prefix.clone(), phantoms, imp.every.0, counterfeit)
            })
            .build();
    }
    ids
}

/// The oracle's verdict on what the world recorded, and the run's figures.
fn judge(w: &World, p: Plan, replay: String) -> RunReport {
    let scn = &w.scn;
    let claims = w.claims();
    let mut violations = verdict(
        &claims,
        p.last_fault_end().as_nanos(),
        scn.leader_within().as_nanos(),
        scn.duration.0.as_nanos(),
    );
    let trace = Trace::new(w.take_trace());
    let applied = w.take_applied();
    let router = scn.router.as_ref().map(|_| {
        let rec = w.routes.lock().unwrap_or_else(|e| e.into_inner());
        let (rep, found) = crate::oracle::routing::check(scn, &rec, &applied, &client_datacenter(scn));
        violations.extend(found);
        rep
    });
    let mut figures = Figures::of_claims(&claims, scn.duration.0);
    figures.fabric = w.fabric.stats();
    w.release();
    RunReport {
        scenario: scn.name.clone(),
        seed: w.seed,
        replay,
        nodes: w.nodes.iter().map(|n| n.id.clone()).collect(),
        plan: p,
        applied,
        trace,
        claims,
        violations,
        figures,
        router,
        swarm: None,
    }
}
