//! Router checks in the simulator: clients that route RPCs with leasehold's `Router` over the
//! scenario's servers, and the oracle's judgement of what they did.
//!
//! * a client's RPC reaches a server within as many attempts as it has servers, whenever one
//!   of them was reachable for the whole attempt;
//! * after a rebalance, clients' first choices spread evenly over the servers (chi-square,
//!   p > 0.001);
//! * `datacenters_by_distance` matches the order of the simulated true latencies once
//!   coordinates have converged;
//! * no RPC starts at a server that has been unreachable longer than the detection bound while
//!   a reachable one exists.

use crate::clock::{true_now, SimClock};
use crate::fabric::Fabric;
use crate::nemesis::{Action, FaultEvent};
use crate::oracle::{secs, Violation, ViolationKind};
use crate::scenario::{RouterSpec, Scenario};
use leasehold::router::{ClusterInfo, CoordinateBook, NetworkPinger, Pinger, Router, Server};
use leasehold::Clock;
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
}

/// Everything clients recorded.
#[derive(Debug, Default)]
pub struct Record {
    /// All RPCs.
    pub rpcs: Vec<Rpc>,
    /// Per client.
    pub ends: BTreeMap<usize, ClientEnd>,
}

/// Figures of a run's routing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouterReport {
    /// RPCs made.
    pub rpcs: usize,
    /// RPCs that found no server.
    pub failed: usize,
    /// How many attempts successful RPCs took: attempts → count.
    pub attempts: BTreeMap<usize, usize>,
    /// First choices per server after the final rebalance.
    pub first_choices: BTreeMap<String, usize>,
    /// Chi-square p-value of that spread.
    pub spread_p: Option<f64>,
    /// Clients whose distance order matched the true one, of all clients.
    pub distance_agree: (usize, usize),
}

/// Where the servers are, for a client.
#[derive(Clone)]
pub struct Servers {
    /// (fabric index, server) for every scenario node.
    pub all: Vec<(usize, Server)>,
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

/// A client: RPCs through its router, probes for coordinates, rebalances on its timer, and
/// near the end rebalances once more and records its first choice and distance order.
#[allow(clippy::too_many_arguments)]
pub async fn client_main(
    fabric: Fabric,
    clock: SimClock,
    start: madsim::time::Instant,
    node: usize,
    client: usize,
    dc: String,
    servers: Servers,
    spec: RouterSpec,
    end: Duration,
    seed: u64,
    record: Arc<Mutex<Record>>,
) {
    let book = Arc::new(Mutex::new(CoordinateBook::new(seed)));
    let net = fabric.client(node);
    let pinger: Arc<NetworkPinger<_, _>> =
        Arc::new(NetworkPinger::new(net, clock.clone(), spec.rpc_timeout.0, book.clone()));
    let router = Router::new(dc.clone(), seed).with_min_reuse(spec.min_reuse.0);
    let n = servers.all.len() + spec.clients;
    let _ = router.add_area("lan", cluster(n), pinger.clone(), book.clone());
    let _ = router.add_area("wan", cluster(n), pinger.clone(), book.clone());
    for (_, s) in &servers.all {
        let area = if s.datacenter == dc { "lan" } else { "wan" };
        let _ = router.add_server(area, s.clone());
    }
    let index_of = |name: &str| {
        servers
            .all
            .iter()
            .find(|(_, s)| s.name == name)
            .map(|(i, _)| *i)
            .unwrap_or(usize::MAX)
    };
    let rebalance_all = |router: &Router| {
        let mut ms = Vec::new();
        for d in router.datacenters() {
            ms.extend(router.managers(&d));
        }
        ms
    };
    for m in rebalance_all(&router) {
        m.rebalance_servers().await;
    }
    let local = router.managers(&dc).into_iter().next();
    let mut next_rebalance = clock.now() + local.as_ref().map_or(spec.min_reuse.0, |m| m.rebalance_delay());
    let mut next_rpc = clock.now();
    let last_call = end.saturating_sub(Duration::from_secs(2));
    let mut probe = 0usize;
    loop {
        let t = Duration::from_nanos(true_now(start) as u64);
        if t >= last_call {
            break;
        }
        if clock.now() >= next_rebalance {
            for m in rebalance_all(&router) {
                m.rebalance_servers().await;
            }
            next_rebalance = clock.now() + local.as_ref().map_or(spec.min_reuse.0, |m| m.rebalance_delay());
        }
        if clock.now() >= next_rpc {
            next_rpc = clock.now() + spec.rpc_every.0;
            let rpc_start = true_now(start);
            let mut tries = Vec::new();
            if let Some(route) = router.find_route(&dc) {
                let (manager, mut server) = (route.manager, route.server);
                for _ in 0..manager.num_servers() {
                    let ok = leasehold::request(
                        &fabric.client(node),
                        &clock,
                        &server.ping_subject,
                        bytes::Bytes::from_static(b"{}"),
                        spec.rpc_timeout.0,
                    )
                    .await
                    .is_ok();
                    tries.push((index_of(&server.name), ok));
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
            record.lock().unwrap_or_else(|e| e.into_inner()).rpcs.push(Rpc {
                client,
                start: rpc_start,
                end: true_now(start),
                tries,
            });
        }
        let all = &servers.all;
        if !all.is_empty() {
            pinger.ping(&all[probe % all.len()].1).await;
            probe += 1;
        }
        clock.sleep(spec.probe_every.0).await;
    }
    // The final rebalance, then what the oracle judges.
    if let Some(m) = &local {
        m.rebalance_servers().await;
    }
    let first_choice = router.find_route(&dc).map(|r| index_of(&r.server.name));
    let by_distance = router.datacenters_by_distance();
    record.lock().unwrap_or_else(|e| e.into_inner()).ends.insert(
        client,
        ClientEnd {
            first_choice,
            by_distance,
        },
    );
}

/// Route state over true time, rebuilt from the applied faults.
struct Timeline<'a> {
    events: &'a [FaultEvent],
    servers: usize,
}

impl Timeline<'_> {
    /// (cuts, down, paused) in force at `t` (ns).
    fn at(&self, t: u128) -> (Vec<(usize, usize)>, Vec<bool>, Vec<bool>) {
        let (mut cuts, mut down, mut paused) = (Vec::new(), vec![false; self.servers], vec![false; self.servers]);
        for e in self.events.iter().filter(|e| e.at.as_nanos() <= t) {
            match &e.action {
                Action::Cut(l) => cuts = l.clone(),
                Action::Heal => cuts.clear(),
                Action::Kill(i) => down[*i] = true,
                Action::Restart(i) => down[*i] = false,
                Action::Pause(i) => paused[*i] = true,
                Action::Resume(i) => paused[*i] = false,
                _ => {}
            }
        }
        (cuts, down, paused)
    }

    fn reachable(&self, t: u128, client_node: usize, s: usize) -> bool {
        let (cuts, down, paused) = self.at(t);
        !down[s] && !paused[s] && !cuts.contains(&(client_node, s)) && !cuts.contains(&(s, client_node))
    }

    /// Whether no fault changed routes or servers in `[from, to]`.
    fn stable(&self, from: u128, to: u128) -> bool {
        !self.events.iter().any(|e| {
            (from..=to).contains(&e.at.as_nanos()) && !matches!(e.action, Action::ClockStep(..) | Action::Drift(..))
        })
    }

    /// Since when (ns) `s` has been continuously unreachable from `client_node` at `t`.
    fn unreachable_since(&self, t: u128, client_node: usize, s: usize) -> Option<u128> {
        if self.reachable(t, client_node, s) {
            return None;
        }
        let mut since = 0;
        for e in self.events.iter().filter(|e| e.at.as_nanos() <= t) {
            if self.reachable(e.at.as_nanos().saturating_sub(1), client_node, s)
                && !self.reachable(e.at.as_nanos(), client_node, s)
            {
                since = e.at.as_nanos();
            }
        }
        Some(since)
    }
}

/// Judges what the clients recorded.
pub fn check(
    scn: &Scenario,
    record: &Record,
    applied: &[FaultEvent],
    client_dc: &str,
) -> (RouterReport, Vec<Violation>) {
    let Some(spec) = &scn.router else {
        return (RouterReport::default(), Vec::new());
    };
    let nodes = scn.sim_nodes();
    let n = nodes.len();
    let tl = Timeline {
        events: applied,
        servers: n,
    };
    let local: Vec<usize> = (0..n).filter(|i| nodes[*i].datacenter == client_dc).collect();
    let mut rep = RouterReport {
        rpcs: record.rpcs.len(),
        ..Default::default()
    };
    let mut found = Vec::new();
    let timeout = spec.rpc_timeout.0.as_nanos();
    let bound = 2 * (spec.rpc_every.0 + spec.rpc_timeout.0).as_nanos() + spec.probe_every.0.as_nanos();
    for r in &record.rpcs {
        let ok = r.tries.last().is_some_and(|(_, ok)| *ok);
        if ok {
            *rep.attempts.entry(r.tries.len()).or_insert(0) += 1;
        } else {
            rep.failed += 1;
        }
        let client_node = n + r.client;
        let window_stable = tl.stable(r.start.saturating_sub(timeout), r.end + timeout);
        let any_reachable = local.iter().any(|s| tl.reachable(r.start, client_node, *s));
        if !ok && window_stable && any_reachable && found.len() < 3 {
            found.push(Violation {
                kind: ViolationKind::Routing,
                at: r.start,
                claims: Vec::new(),
                detail: format!(
                    "client c{} found no server in {} attempts {:?} though one was reachable",
                    r.client,
                    r.tries.len(),
                    r.tries
                ),
            });
        }
        if let Some((first, _)) = r.tries.first() {
            if let Some(since) = local
                .contains(first)
                .then(|| tl.unreachable_since(r.start, client_node, *first))
                .flatten()
            {
                if r.start.saturating_sub(since) > bound
                    && any_reachable
                    && tl.stable(since + 1, r.end)
                    && found.len() < 3
                {
                    found.push(Violation {
                        kind: ViolationKind::Routing,
                        at: r.start,
                        claims: Vec::new(),
                        detail: format!(
                            "client c{} routed to {} unreachable since {} (bound {})",
                            r.client,
                            nodes[*first].id,
                            secs(since),
                            secs(bound)
                        ),
                    });
                }
            }
        }
    }
    // Spread of first choices after the final rebalance.
    let mut counts: BTreeMap<String, usize> = local.iter().map(|s| (nodes[*s].id.clone(), 0)).collect();
    for e in record.ends.values() {
        if let Some(i) = e.first_choice.filter(|i| *i < n) {
            *counts.entry(nodes[i].id.clone()).or_insert(0) += 1;
        }
    }
    let total: usize = counts.values().sum();
    if counts.len() > 1 && total > 0 {
        let p = chi_square_uniform_p(&counts.values().copied().collect::<Vec<_>>());
        rep.spread_p = Some(p);
        if p <= 0.001 {
            found.push(Violation {
                kind: ViolationKind::Routing,
                at: scn.duration.0.as_nanos(),
                claims: Vec::new(),
                detail: format!("first choices are not spread evenly: {counts:?} (chi-square p = {p:.2e})"),
            });
        }
    }
    rep.first_choices = counts;
    // Distance order against the true latencies.
    let truth = true_distance_order(scn, client_dc);
    let agree = record.ends.values().filter(|e| e.by_distance == truth).count();
    rep.distance_agree = (agree, record.ends.len());
    if agree < record.ends.len() {
        let bad = record
            .ends
            .iter()
            .find(|(_, e)| e.by_distance != truth)
            .map(|(c, e)| format!("c{c}: {:?}", e.by_distance))
            .unwrap_or_default();
        found.push(Violation {
            kind: ViolationKind::Routing,
            at: scn.duration.0.as_nanos(),
            claims: Vec::new(),
            detail: format!(
                "datacenters by distance disagree with the true order {truth:?} for {} of {} clients (e.g. {bad})",
                record.ends.len() - agree,
                record.ends.len()
            ),
        });
    }
    (rep, found)
}

/// Datacenters by true round trip from `from` (the local one first, ties by name).
pub fn true_distance_order(scn: &Scenario, from: &str) -> Vec<String> {
    let mut dcs: Vec<String> = scn.sim_nodes().into_iter().map(|n| n.datacenter).collect();
    dcs.sort();
    dcs.dedup();
    let mid = |r: crate::scenario::DurRange| (r.lo + r.hi).as_secs_f64();
    let rtt = |d: &str| -> f64 {
        if d == from {
            return 0.0;
        }
        scn.network
            .dc_link
            .iter()
            .find(|l| (l.between.0 == from && l.between.1 == d) || (l.between.1 == from && l.between.0 == d))
            .map_or(mid(scn.network.latency), |l| mid(l.latency))
    };
    dcs.sort_by(|a, b| rtt(a).total_cmp(&rtt(b)).then_with(|| a.cmp(b)));
    dcs
}

/// p-value of Pearson's chi-square test of `counts` against a uniform spread.
pub fn chi_square_uniform_p(counts: &[usize]) -> f64 {
    let k = counts.len();
    let total: usize = counts.iter().sum();
    if k < 2 || total == 0 {
        return 1.0;
    }
    let e = total as f64 / k as f64;
    let x2: f64 = counts.iter().map(|c| (*c as f64 - e).powi(2) / e).sum();
    gamma_q((k - 1) as f64 / 2.0, x2 / 2.0)
}

/// Regularized upper incomplete gamma function Q(a, x).
fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let ln_pre = -x + a * x.ln() - ln_gamma(a);
    if x < a + 1.0 {
        // Series for P(a, x).
        let (mut sum, mut term, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..500 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        1.0 - sum * ln_pre.exp()
    } else {
        // Continued fraction for Q(a, x) (modified Lentz).
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..500 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < 1e-15 {
                break;
            }
        }
        ln_pre.exp() * h
    }
}

/// ln Γ(x) (Lanczos).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 6] = [
        76.180_091_729_471_46,
        -86.505_320_329_416_77,
        24.014_098_240_830_91,
        -1.231_739_572_450_155,
        0.001_208_650_973_866_179,
        -0.000_005_395_239_384_953,
    ];
    let mut y = x;
    let tmp = x + 5.5 - (x + 0.5) * (x + 5.5).ln();
    let mut ser = 1.000_000_000_190_015;
    for g in G {
        y += 1.0;
        ser += g / y;
    }
    -tmp + (2.506_628_274_631_000_5 * ser / x).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scn() -> Scenario {
        Scenario::parse(
            "r.toml",
            "duration = \"30s\"\n[network]\nlatency = \"1ms\"\n[[network.dc_link]]\nbetween = [\"dc1\", \"dc2\"]\nlatency = \"40ms\"\n[[node]]\ndatacenter = \"dc1\"\n[[node]]\ndatacenter = \"dc1\"\n[[node]]\ndatacenter = \"dc2\"\n[router]\nclients = 2\n",
        )
        .unwrap()
    }

    fn ok_end() -> ClientEnd {
        ClientEnd {
            first_choice: Some(0),
            by_distance: vec!["dc1".into(), "dc2".into()],
        }
    }

    fn record(rpcs: Vec<Rpc>, ends: [ClientEnd; 2]) -> Record {
        Record {
            rpcs,
            ends: ends.into_iter().enumerate().collect(),
        }
    }

    const S: u128 = 1_000_000_000;

    #[test]
    fn a_clean_record_passes() {
        let mut b = ok_end();
        b.first_choice = Some(1);
        let r = record(
            vec![Rpc {
                client: 0,
                start: S,
                end: S + 2_000_000,
                tries: vec![(0, true)],
            }],
            [ok_end(), b],
        );
        let (rep, v) = check(&scn(), &r, &[], "dc1");
        assert!(v.is_empty(), "{v:?}");
        assert_eq!(rep.attempts.get(&1), Some(&1));
        assert_eq!(rep.distance_agree, (2, 2));
    }

    #[test]
    fn an_rpc_that_fails_while_a_server_is_reachable_is_caught() {
        let bad = Rpc {
            client: 0,
            start: 5 * S,
            end: 5 * S + 400_000_000,
            tries: vec![(0, false), (1, false)],
        };
        let (_, v) = check(
            &scn(),
            &record(
                vec![bad.clone()],
                [
                    ok_end(),
                    ClientEnd {
                        first_choice: Some(1),
                        ..ok_end()
                    },
                ],
            ),
            &[],
            "dc1",
        );
        assert!(v.iter().any(|v| v.detail.contains("found no server")), "{v:?}");
        // The same failure while both servers are down is no violation.
        let down = [
            FaultEvent {
                at: Duration::from_secs(1),
                action: Action::Kill(0),
                scripted: true,
            },
            FaultEvent {
                at: Duration::from_secs(1),
                action: Action::Kill(1),
                scripted: true,
            },
        ];
        let (_, v) = check(
            &scn(),
            &record(
                vec![bad],
                [
                    ok_end(),
                    ClientEnd {
                        first_choice: Some(1),
                        ..ok_end()
                    },
                ],
            ),
            &down,
            "dc1",
        );
        assert!(!v.iter().any(|v| v.detail.contains("found no server")), "{v:?}");
    }

    #[test]
    fn routing_to_a_long_dead_server_is_caught() {
        let dead = [FaultEvent {
            at: Duration::from_secs(1),
            action: Action::Kill(0),
            scripted: true,
        }];
        let late = Rpc {
            client: 0,
            start: 10 * S,
            end: 10 * S + 300_000_000,
            tries: vec![(0, false), (1, true)],
        };
        let (_, v) = check(
            &scn(),
            &record(
                vec![late],
                [
                    ok_end(),
                    ClientEnd {
                        first_choice: Some(1),
                        ..ok_end()
                    },
                ],
            ),
            &dead,
            "dc1",
        );
        assert!(v.iter().any(|v| v.detail.contains("unreachable since")), "{v:?}");
    }

    #[test]
    fn an_uneven_spread_and_a_wrong_distance_order_are_caught() {
        let many = Scenario::parse("r.toml", "nodes = 2\n[router]\nclients = 60\n").unwrap();
        let rec = Record {
            rpcs: Vec::new(),
            ends: (0..60)
                .map(|c| {
                    (
                        c,
                        ClientEnd {
                            first_choice: Some(0),
                            by_distance: vec!["dc1".into()],
                        },
                    )
                })
                .collect(),
        };
        let (rep, v) = check(&many, &rec, &[], "dc1");
        assert!(rep.spread_p.unwrap() < 0.001);
        assert!(v.iter().any(|v| v.detail.contains("not spread evenly")), "{v:?}");
        let wrong = ClientEnd {
            first_choice: Some(1),
            by_distance: vec!["dc2".into(), "dc1".into()],
        };
        let (_, v) = check(&scn(), &record(Vec::new(), [ok_end(), wrong]), &[], "dc1");
        assert!(
            v.iter().any(|v| v.detail.contains("disagree with the true order")),
            "{v:?}"
        );
    }

    #[test]
    fn chi_square_p_values_match_tables() {
        // df = 2: P(X² > 5.991) = 0.05; df = 4: P(X² > 13.277) = 0.01.
        assert!((gamma_q(1.0, 5.991 / 2.0) - 0.05).abs() < 1e-3);
        assert!((gamma_q(2.0, 13.277 / 2.0) - 0.01).abs() < 1e-3);
        assert!(chi_square_uniform_p(&[10, 10, 10]) > 0.99);
        assert!(chi_square_uniform_p(&[30, 0, 0]) < 1e-6);
    }
}
