//! Router checks: what the router clients recorded, judged against the fault history.
//!
//! * a client's RPC reaches a server within as many attempts as it has servers, whenever one
//!   of them was reachable for the whole attempt;
//! * after a rebalance, clients' first choices spread evenly over the servers (chi-square,
//!   p > 0.001);
//! * `datacenters_by_distance` matches the order of the simulated true latencies once
//!   coordinates have converged;
//! * no RPC starts at a server that has been unreachable longer than the detection bound while
//!   a reachable one exists.

use super::{secs, Violation, ViolationKind};
use crate::faults::FaultEvent;
use crate::scenario::Scenario;
use crate::timeline::Timeline;
use crate::workload::router::Record;
use std::collections::BTreeMap;

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
    /// How many clients knew each server at the end (learnt from membership).
    pub servers_known: BTreeMap<String, usize>,
}

/// Judges what the clients recorded.
pub fn check(
    scn: &Scenario,
    record: &Record,
    applied: &[FaultEvent],
    client_dc: &str,
) -> (RouterReport, Vec<Violation>) {
    if scn.router.is_none() {
        return (RouterReport::default(), Vec::new());
    }
    let nodes: Vec<String> = scn.sim_nodes().into_iter().map(|n| n.id).collect();
    let local: Vec<usize> = scn
        .sim_nodes()
        .iter()
        .enumerate()
        .filter(|(_, n)| n.datacenter == client_dc)
        .map(|(i, _)| i)
        .collect();
    let mut rep = RouterReport {
        rpcs: record.rpcs.len(),
        ..Default::default()
    };
    for name in record.ends.values().flat_map(|e| &e.known) {
        *rep.servers_known.entry(name.clone()).or_insert(0) += 1;
    }
    let mut found = check_rpcs(scn, record, applied, &nodes, &local, &mut rep);
    found.extend(check_spread(scn, record, &nodes, &local, &mut rep));
    found.extend(check_distance(scn, record, client_dc, &mut rep));
    (rep, found)
}

/// Every RPC found a server when one was reachable, and none started at a server that had
/// been unreachable for longer than the detection bound (at most three findings).
fn check_rpcs(
    scn: &Scenario,
    record: &Record,
    applied: &[FaultEvent],
    nodes: &[String],
    local: &[usize],
    rep: &mut RouterReport,
) -> Vec<Violation> {
    let Some(spec) = &scn.router else { return Vec::new() };
    let n = nodes.len();
    let tl = Timeline::new(applied, n);
    let mut found = Vec::new();
    let timeout = spec.rpc_timeout.0.as_nanos();
    let bound = 2 * (spec.rpc_every.0 + spec.rpc_timeout.0).as_nanos() + spec.probe_every.0.as_nanos();
    let routing = |at: u128, detail: String| Violation {
        kind: ViolationKind::Routing,
        at,
        claims: Vec::new(),
        detail,
    };
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
            found.push(routing(
                r.start,
                format!(
                    "client c{} found no server in {} attempts {:?} though one was reachable",
                    r.client,
                    r.tries.len(),
                    r.tries
                ),
            ));
        }
        let Some((first, _)) = r.tries.first() else { continue };
        let since = local
            .contains(first)
            .then(|| tl.unreachable_since(r.start, client_node, *first))
            .flatten();
        if let Some(since) = since {
            if r.start.saturating_sub(since) > bound && any_reachable && tl.stable(since + 1, r.end) && found.len() < 3
            {
                found.push(routing(
                    r.start,
                    format!(
                        "client c{} routed to {} unreachable since {} (bound {})",
                        r.client,
                        nodes[*first],
                        secs(since),
                        secs(bound)
                    ),
                ));
            }
        }
    }
    found
}

/// First choices after the final rebalance are spread evenly over the local servers.
fn check_spread(
    scn: &Scenario,
    record: &Record,
    nodes: &[String],
    local: &[usize],
    rep: &mut RouterReport,
) -> Option<Violation> {
    let mut counts: BTreeMap<String, usize> = local.iter().map(|s| (nodes[*s].clone(), 0)).collect();
    for e in record.ends.values() {
        if let Some(i) = e.first_choice.filter(|i| *i < nodes.len()) {
            *counts.entry(nodes[i].clone()).or_insert(0) += 1;
        }
    }
    let total: usize = counts.values().sum();
    let mut found = None;
    if counts.len() > 1 && total > 0 {
        let p = chi_square_uniform_p(&counts.values().copied().collect::<Vec<_>>());
        rep.spread_p = Some(p);
        if p <= 0.001 {
            found = Some(Violation {
                kind: ViolationKind::Routing,
                at: scn.duration.0.as_nanos(),
                claims: Vec::new(),
                detail: format!("first choices are not spread evenly: {counts:?} (chi-square p = {p:.2e})"),
            });
        }
    }
    rep.first_choices = counts;
    found
}

/// Every client's datacenters by distance match the order of the true latencies.
fn check_distance(scn: &Scenario, record: &Record, client_dc: &str, rep: &mut RouterReport) -> Option<Violation> {
    let truth = true_distance_order(scn, client_dc);
    let agree = record.ends.values().filter(|e| e.by_distance == truth).count();
    rep.distance_agree = (agree, record.ends.len());
    if agree == record.ends.len() {
        return None;
    }
    let bad = record
        .ends
        .iter()
        .find(|(_, e)| e.by_distance != truth)
        .map(|(c, e)| format!("c{c}: {:?}", e.by_distance))
        .unwrap_or_default();
    Some(Violation {
        kind: ViolationKind::Routing,
        at: scn.duration.0.as_nanos(),
        claims: Vec::new(),
        detail: format!(
            "datacenters by distance disagree with the true order {truth:?} for {} of {} clients (e.g. {bad})",
            record.ends.len() - agree,
            record.ends.len()
        ),
    })
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
    use crate::faults::Action;
    use crate::workload::router::{ClientEnd, Rpc};
    use std::time::Duration;

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
            known: Vec::new(),
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
                            known: Vec::new(),
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
            known: Vec::new(),
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
