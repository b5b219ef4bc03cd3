//! Running one seed of a scenario: madsim nodes, each with its agent and its NATS server, the
//! nemesis applying the plan, and the oracle judging the claims afterwards.

use crate::clock::{true_now, ClockModel, SimClock};
use crate::fabric::{Fabric, FabricStats};
use crate::nemesis::{plan, Action, FaultEvent, Plan};
use crate::oracle::{check_liveness, check_safety, secs, TrueClaim, Violation, ViolationKind};
use crate::scenario::Scenario;
use crate::trace::{digest, TraceEvent};
use leasehold::{Membership, Notice, Notices};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The outcome of one seed.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Scenario name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// What the oracle found (empty: clean).
    pub violations: Vec<Violation>,
    /// The full event trace.
    pub trace: Vec<TraceEvent>,
    /// Digest of the trace.
    pub digest: u64,
    /// Simulated time.
    pub sim_time: Duration,
    /// Wall time the run took.
    pub wall_time: Duration,
    /// How many times the holder changed.
    pub leader_changes: u64,
    /// Gaps with no holder between one holder and the next (ms).
    pub failovers_ms: Vec<f64>,
    /// What the simulated network did.
    pub fabric: FabricStats,
    /// The exact command that replays this seed.
    pub replay: String,
    /// The fault plan.
    pub plan: Plan,
    /// Node IDs, by index.
    pub nodes: Vec<String>,
    /// Every lease claim, in true time.
    pub claims: Vec<TrueClaim>,
    /// Router figures, for scenarios with `[router]`.
    pub router: Option<crate::routing::RouterReport>,
    /// The faults as applied, with runtime choices resolved (a partition as the exact routes
    /// it cut; skipped steps left out): a fully scripted form of the run.
    pub applied: Vec<FaultEvent>,
}

impl RunReport {
    /// The first safety violation, if any.
    pub fn safety_violation(&self) -> Option<&Violation> {
        self.violations
            .iter()
            .find(|v| v.is_safety() || v.kind == ViolationKind::Panic)
    }

    /// The router figures as one paragraph (empty without `[router]`).
    pub fn router_summary(&self) -> String {
        let Some(r) = &self.router else { return String::new() };
        format!(
            "router: {} RPCs, {} found no server; attempts per successful RPC {:?}; first choices {:?} (chi-square p = {}); distance order right for {}/{} clients",
            r.rpcs,
            r.failed,
            r.attempts,
            r.first_choices,
            r.spread_p.map_or("-".into(), |p| format!("{p:.3}")),
            r.distance_agree.0,
            r.distance_agree.1
        )
    }

    /// A report of the first violation: the claims, the faults around it, the last events
    /// before it, the seed, and the command that replays it.
    pub fn describe(&self) -> String {
        let Some(v) = self.violations.first() else {
            return format!("{} seed {}: no violation", self.scenario, self.seed);
        };
        let mut s = format!(
            "VIOLATION in {} (seed {}): {} at {}\n",
            self.scenario,
            self.seed,
            v.kind,
            secs(v.at)
        );
        for c in &v.claims {
            s.push_str(&format!("  claim: {c}\n"));
        }
        if !v.detail.is_empty() {
            s.push_str(&format!("  {}\n", v.detail));
        }
        let faults: Vec<String> = self
            .trace
            .iter()
            .filter(|e| e.what.starts_with("fault") && e.at <= v.at && e.at + 30_000_000_000 >= v.at)
            .map(|e| format!("    {}", e.line()))
            .collect();
        if !faults.is_empty() {
            s.push_str("  faults in the 30s before:\n");
            s.push_str(&faults.join("\n"));
            s.push('\n');
        }
        let before: Vec<&TraceEvent> = self.trace.iter().filter(|e| e.at <= v.at).collect();
        s.push_str("  last events before it:\n");
        for e in &before[before.len().saturating_sub(12)..] {
            s.push_str(&format!("    {}\n", e.line()));
        }
        s.push_str(&format!("  replay: {}\n", self.replay));
        s
    }
}

struct Recorded {
    node: usize,
    inc: u64,
    local: Duration,
    notice: Notice,
}

#[derive(Default)]
struct State {
    incarnations: Vec<u64>,
    receivers: Vec<(usize, u64, Notices)>,
    notices: Vec<Recorded>,
    trace: Vec<TraceEvent>,
    seq: u64,
    down: Vec<bool>,
    paused: Vec<bool>,
    applied: Vec<FaultEvent>,
}

struct World {
    scn: Scenario,
    routes: Arc<Mutex<crate::routing::Record>>,
    servers: crate::routing::Servers,
    seed: u64,
    start: madsim::time::Instant,
    fabric: Fabric,
    clocks: Vec<Arc<Mutex<ClockModel>>>,
    state: Mutex<State>,
}

impl World {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn trace(&self, node: Option<usize>, what: String) {
        let at = true_now(self.start);
        let nodes = self.scn.sim_nodes();
        let local = node.map(|i| self.clocks[i].lock().unwrap_or_else(|e| e.into_inner()).local_at(at));
        let mut st = self.lock();
        st.seq += 1;
        let seq = st.seq;
        st.trace.push(TraceEvent {
            at,
            seq,
            node: node.map(|i| nodes[i].id.clone()),
            local,
            what,
        });
    }

    /// Moves every queued notice into the record (they are stamped with local time already).
    fn drain(&self) {
        let mut st = self.lock();
        let mut got = Vec::new();
        for (node, inc, rx) in st.receivers.iter_mut() {
            while let Some((local, notice)) = rx.try_next() {
                got.push(Recorded {
                    node: *node,
                    inc: *inc,
                    local,
                    notice,
                });
            }
        }
        st.notices.extend(got);
    }

    /// The claims so far, in true time.
    fn claims(&self) -> Vec<TrueClaim> {
        let nodes = self.scn.sim_nodes();
        let st = self.lock();
        let mut out: Vec<TrueClaim> = Vec::new();
        for r in &st.notices {
            let model = self.clocks[r.node].lock().unwrap_or_else(|e| e.into_inner());
            match &r.notice {
                Notice::Claim { token, from, until } => out.push(TrueClaim {
                    node: r.node,
                    id: nodes[r.node].id.clone(),
                    inc: r.inc,
                    token: *token,
                    from: model.true_at(from.as_nanos()),
                    until: model.true_at(until.as_nanos()),
                }),
                Notice::ClaimEnded { at } => {
                    let end = model.true_at(at.as_nanos());
                    for c in out.iter_mut().filter(|c| (c.node, c.inc) == (r.node, r.inc)) {
                        c.until = c.until.min(end);
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn leader_now(&self) -> Option<usize> {
        self.drain();
        let now = true_now(self.start);
        self.claims()
            .into_iter()
            .filter(|c| c.from <= now && now < c.until)
            .map(|c| c.node)
            .next()
    }
}

fn mix(seed: u64, a: u64, b: u64) -> u64 {
    // splitmix64 over the combination, so nearby inputs give unrelated seeds.
    let mut z = seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

async fn node_main(w: Arc<World>, i: usize) {
    let inc = {
        let mut st = w.lock();
        st.incarnations[i] += 1;
        st.incarnations[i]
    };
    w.trace(Some(i), format!("start incarnation {inc}"));
    madsim::task::spawn(w.fabric.serve(i));
    if let Some(spec) = w.scn.router.clone() {
        let clock = SimClock::new(w.clocks[i].clone(), w.start);
        madsim::task::spawn(crate::routing::server_main(
            w.fabric.clone(),
            clock,
            i,
            w.servers.clone(),
            spec,
            mix(w.seed, i as u64, 0x5e7),
        ));
    }
    let node = &w.scn.sim_nodes()[i];
    let mut cfg = w.scn.membership_cfg();
    cfg.id = node.id.clone();
    cfg.my_rank = node.rank;
    cfg.pid = i as i64 + 1;
    cfg.nats_host = format!("10.0.0.{}", i + 1);
    cfg.nats_client_port = 4222;
    let clock = SimClock::new(w.clocks[i].clone(), w.start);
    let agent = match Membership::new(cfg, clock, w.fabric.client(i), w.fabric.storage(i)) {
        Ok(a) => a.with_seed(mix(w.seed, i as u64, inc)),
        Err(e) => {
            w.trace(Some(i), format!("agent failed to configure: {e}"));
            return;
        }
    };
    let notices = agent.handle().notices(1 << 20);
    w.lock().receivers.push((i, inc, notices));
    if let Err(e) = agent.run().await {
        w.trace(Some(i), format!("agent failed: {e}"));
    }
}

fn describe(w: &World, a: &Action, leader: Option<usize>) -> String {
    let nodes = w.scn.sim_nodes();
    let name = |i: &usize| nodes[*i].id.clone();
    let names = |v: &Vec<usize>| v.iter().map(name).collect::<Vec<_>>().join(",");
    match a {
        Action::Partition { groups, label } => {
            format!(
                "fault partition ({label}) {}",
                groups
                    .iter()
                    .map(|g| format!("[{}]", names(g)))
                    .collect::<Vec<_>>()
                    .join(" | ")
            )
        }
        Action::IsolateLeader { fallback } => format!(
            "fault partition (isolate leader) [{}]",
            name(&leader.unwrap_or(*fallback))
        ),
        Action::Bridge { a, b, bridge } => format!(
            "fault partition (bridge {}) [{}] | [{}]",
            name(bridge),
            names(a),
            names(b)
        ),
        Action::OneWay { from, to } => format!("fault one-way cut [{}] -> [{}]", names(from), names(to)),
        Action::Cut(links) => format!(
            "fault cut {}",
            links
                .iter()
                .map(|(a, b)| format!("{}->{}", name(a), name(b)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Action::Heal => "fault heal".into(),
        Action::Kill(i) => format!("fault kill {}", name(i)),
        Action::Restart(i) => format!("fault restart {}", name(i)),
        Action::Pause(i) => format!("fault pause {}", name(i)),
        Action::Resume(i) => format!("fault resume {}", name(i)),
        Action::ClockStep(i, by) => format!(
            "fault clock step {} by {}{}",
            name(i),
            if *by < 0 { "-" } else { "+" },
            secs(by.unsigned_abs())
        ),
        Action::Drift(i, ppm) => format!("fault drift {} {ppm}ppm", name(i)),
        Action::Loss(l) => format!("fault loss {l}"),
        Action::Latency(r) => format!("fault latency {:?}..{:?}", r.lo, r.hi),
    }
}

fn apply(w: &World, a: &Action, ids: &[madsim::task::NodeId]) {
    let resolved = apply_now(w, a, ids);
    if let Some(r) = resolved {
        let at = Duration::from_nanos(true_now(w.start) as u64);
        w.lock().applied.push(FaultEvent {
            at,
            action: r,
            scripted: true,
        });
    }
}

/// Applies `a`; returns its resolved form, or `None` if it did nothing (e.g. restarting a node
/// that is up).
fn apply_now(w: &World, a: &Action, ids: &[madsim::task::NodeId]) -> Option<Action> {
    let h = madsim::runtime::Handle::current();
    let n = ids.len();
    let leader = matches!(a, Action::IsolateLeader { .. })
        .then(|| w.leader_now())
        .flatten();
    w.trace(None, describe(w, a, leader));
    let now = true_now(w.start);
    let changed = match a {
        Action::Partition { groups, .. } => {
            w.fabric.partition(groups);
            true
        }
        Action::IsolateLeader { fallback } => {
            let x = leader.unwrap_or(*fallback);
            w.fabric.partition(&[(0..n).filter(|j| *j != x).collect(), vec![x]]);
            true
        }
        Action::Bridge { a, b, bridge } => {
            let mut side_a = a.clone();
            side_a.push(*bridge);
            w.fabric.partition(&[side_a, b.clone()]);
            for j in b {
                w.fabric.set_cut(*bridge, *j, false);
                w.fabric.set_cut(*j, *bridge, false);
            }
            true
        }
        Action::OneWay { from, to } => {
            for f in from {
                for t in to {
                    w.fabric.set_cut(*f, *t, true);
                }
            }
            true
        }
        Action::Cut(links) => {
            w.fabric.set_cuts(links);
            true
        }
        Action::Heal => {
            w.fabric.heal();
            return Some(Action::Heal);
        }
        Action::Kill(i) => {
            let mut st = w.lock();
            if st.down[*i] {
                return None;
            }
            st.down[*i] = true;
            st.paused[*i] = false;
            drop(st);
            h.kill(ids[*i]);
            w.fabric.down(*i);
            return Some(a.clone());
        }
        Action::Restart(i) => {
            let mut st = w.lock();
            if !st.down[*i] {
                return None;
            }
            st.down[*i] = false;
            drop(st);
            h.restart(ids[*i]);
            return Some(a.clone());
        }
        Action::Pause(i) => {
            let mut st = w.lock();
            if st.down[*i] || st.paused[*i] {
                return None;
            }
            st.paused[*i] = true;
            drop(st);
            h.pause(ids[*i]);
            return Some(a.clone());
        }
        Action::Resume(i) => {
            let mut st = w.lock();
            if !st.paused[*i] {
                return None;
            }
            st.paused[*i] = false;
            drop(st);
            h.resume(ids[*i]);
            return Some(a.clone());
        }
        Action::ClockStep(i, by) => {
            w.clocks[*i].lock().unwrap_or_else(|e| e.into_inner()).step_wall(*by);
            return Some(a.clone());
        }
        Action::Drift(i, ppm) => {
            w.clocks[*i]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .set_ppm(now, *ppm);
            return Some(a.clone());
        }
        Action::Loss(l) => {
            w.fabric.set_loss(*l);
            return Some(a.clone());
        }
        Action::Latency(r) => {
            w.fabric.set_latency(*r);
            return Some(a.clone());
        }
    };
    // Route changes are recorded as the exact set of routes cut afterwards.
    changed.then(|| Action::Cut(w.fabric.cuts()))
}

async fn simulate(scn: Scenario, seed: u64, replay: String) -> RunReport {
    let start = madsim::time::Instant::now();
    let nodes = scn.sim_nodes();
    let n = nodes.len();
    let p = plan(&scn, seed);
    let m = scn.router.as_ref().map_or(0, |r| r.clients);
    let clocks = (0..n)
        .map(|i| {
            Arc::new(Mutex::new(ClockModel::new(
                p.origin[i],
                p.drift_ppm[i],
                p.wall_offset_ns[i],
            )))
        })
        .chain((0..m).map(|_| Arc::new(Mutex::new(ClockModel::new(Duration::ZERO, 0, 0)))))
        .collect();
    let fabric = Fabric::new(
        n + m,
        scn.network.latency,
        scn.network.loss,
        scn.network.reorder,
        mix(seed, 0xfab, 0),
        start,
    );
    let mut dcs: Vec<String> = nodes.iter().map(|x| x.datacenter.clone()).collect();
    dcs.sort();
    dcs.dedup();
    let dc_index = |d: &str| dcs.iter().position(|x| x == d).unwrap_or(0);
    let client_dc = scn
        .router
        .as_ref()
        .and_then(|r| r.datacenter.clone())
        .unwrap_or_else(|| nodes[0].datacenter.clone());
    for (i, node) in nodes.iter().enumerate() {
        fabric.set_datacenter(i, dc_index(&node.datacenter));
    }
    for k in 0..m {
        fabric.set_datacenter(n + k, dc_index(&client_dc));
    }
    for l in &scn.network.dc_link {
        fabric.set_dc_latency(dc_index(&l.between.0), dc_index(&l.between.1), l.latency);
    }
    let servers = crate::routing::Servers {
        all: nodes
            .iter()
            .enumerate()
            .map(|(i, x)| {
                (
                    i,
                    leasehold::router::Server::new(x.id.clone(), x.datacenter.clone(), crate::routing::PREFIX),
                )
            })
            .collect(),
    };
    let w = Arc::new(World {
        seed,
        start,
        fabric,
        clocks,
        state: Mutex::new(State {
            incarnations: vec![0; n],
            down: vec![false; n],
            paused: vec![false; n],
            ..State::default()
        }),
        scn: scn.clone(),
        routes: Arc::new(Mutex::new(crate::routing::Record::default())),
        servers,
    });
    for (i, c) in p.drift_ppm.iter().enumerate() {
        if *c != 0 || p.wall_offset_ns[i] != 0 {
            w.trace(
                Some(i),
                format!(
                    "clock drift {c}ppm wall offset {}{}",
                    if p.wall_offset_ns[i] < 0 { "-" } else { "+" },
                    secs(p.wall_offset_ns[i].unsigned_abs())
                ),
            );
        }
    }
    let h = madsim::runtime::Handle::current();
    let ids: Vec<madsim::task::NodeId> = (0..n)
        .map(|i| {
            let w2 = w.clone();
            h.create_node()
                .name(nodes[i].id.clone())
                .ip(std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                    10,
                    0,
                    (i / 250) as u8,
                    (i % 250) as u8 + 1,
                )))
                .init(move || node_main(w2.clone(), i))
                .build()
                .id()
        })
        .collect();
    if let Some(spec) = scn.router.clone() {
        for k in 0..m {
            let (w2, spec, dc) = (w.clone(), spec.clone(), client_dc.clone());
            h.create_node()
                .name(format!("c{k}"))
                .ip(std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                    10,
                    1,
                    (k / 250) as u8,
                    (k % 250) as u8 + 1,
                )))
                .init(move || {
                    let (w, spec, dc) = (w2.clone(), spec.clone(), dc.clone());
                    async move {
                        madsim::task::spawn(w.fabric.serve(n + k));
                        let clock = SimClock::new(w.clocks[n + k].clone(), w.start);
                        crate::routing::client_main(
                            w.fabric.clone(),
                            clock,
                            w.start,
                            n + k,
                            k,
                            dc,
                            w.servers.clone(),
                            spec,
                            w.scn.duration.0,
                            mix(w.seed, 1000 + k as u64, 0),
                            w.routes.clone(),
                        )
                        .await;
                    }
                })
                .build();
        }
    }
    for ev in &p.events {
        madsim::time::sleep_until(start + ev.at).await;
        w.drain();
        apply(&w, &ev.action, &ids);
    }
    madsim::time::sleep_until(start + scn.duration.0).await;
    w.drain();

    let claims = w.claims();
    let mut violations = check_safety(&claims);
    let end = scn.duration.0.as_nanos();
    let last_fault = p.last_fault_end().as_nanos();
    let bound = scn.leader_within().as_nanos();
    if last_fault + bound <= end {
        violations.extend(check_liveness(&claims, last_fault, bound));
    }
    violations.sort_by_key(|v| v.at);

    let mut st = w.lock();
    let mut trace = std::mem::take(&mut st.trace);
    let mut seq = u64::MAX / 2;
    for r in &st.notices {
        let what = match &r.notice {
            Notice::Claim { token, until, .. } => format!(
                "claim token={} until local={}",
                token.map_or("-".into(), |t| t.to_string()),
                secs(until.as_nanos())
            ),
            Notice::ClaimEnded { .. } => "claim released".into(),
            Notice::Leader {
                leader, is_me, token, ..
            } => {
                format!(
                    "leader {} {}token={}",
                    leader.as_deref().unwrap_or("none"),
                    if *is_me { "(me) " } else { "" },
                    token.map_or("-".into(), |t| t.to_string())
                )
            }
            Notice::MemberAdded(l) => format!("member added {}", l.id),
            Notice::MemberLost(l) => format!("member lost {}", l.id),
            Notice::Elected { .. } => continue,
        };
        let model = w.clocks[r.node].lock().unwrap_or_else(|e| e.into_inner());
        seq += 1;
        trace.push(TraceEvent {
            at: model.true_at(r.local.as_nanos()),
            seq,
            node: Some(nodes[r.node].id.clone()),
            local: Some(r.local.as_nanos()),
            what,
        });
    }
    trace.sort_by(|a, b| (a.at, &a.node, a.seq).cmp(&(b.at, &b.node, b.seq)));
    drop(st);

    let applied = std::mem::take(&mut w.lock().applied);
    let router = scn.router.as_ref().map(|_| {
        let rec = w.routes.lock().unwrap_or_else(|e| e.into_inner());
        let (rep, found) = crate::routing::check(&scn, &rec, &applied, &client_dc);
        violations.extend(found);
        rep
    });
    let mut sorted = claims.clone();
    let claims_out = claims.clone();
    sorted.sort_by_key(|c| c.from);
    let mut leader_changes = 0;
    let mut failovers_ms = Vec::new();
    let mut prev: Option<&TrueClaim> = None;
    for c in &sorted {
        match prev {
            Some(p) if (p.node, p.inc) == (c.node, c.inc) => {
                if c.until > p.until {
                    prev = Some(c);
                }
            }
            _ => {
                if let Some(p) = prev {
                    if c.from > p.until {
                        failovers_ms.push((c.from - p.until) as f64 / 1e6);
                    }
                }
                leader_changes += 1;
                prev = Some(c);
            }
        }
    }
    RunReport {
        scenario: scn.name.clone(),
        seed,
        violations,
        digest: digest(&trace),
        trace,
        sim_time: scn.duration.0,
        wall_time: Duration::ZERO,
        leader_changes,
        failovers_ms,
        fabric: w.fabric.stats(),
        replay,
        applied,
        plan: p,
        nodes: nodes.iter().map(|n| n.id.clone()).collect(),
        claims: claims_out,
        router,
    }
}

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
    let mut report = joined.unwrap_or_else(|msg| RunReport {
        scenario: scn.name.clone(),
        seed,
        violations: vec![Violation {
            kind: ViolationKind::Panic,
            at: 0,
            claims: Vec::new(),
            detail: msg,
        }],
        trace: Vec::new(),
        digest: 0,
        sim_time: scn.duration.0,
        wall_time: Duration::ZERO,
        leader_changes: 0,
        failovers_ms: Vec::new(),
        fabric: FabricStats::default(),
        replay,
        plan: plan(scn, seed),
        applied: Vec::new(),
        nodes: scn.sim_nodes().into_iter().map(|n| n.id).collect(),
        claims: Vec::new(),
        router: None,
    });
    report.wall_time = wall.elapsed();
    report
}
