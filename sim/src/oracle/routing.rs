//! Router checks: what the router clients recorded, judged against the fault history, from
//! where each client is (its host: it shares the host's side of every cut).
//!
//! * An RPC that found no server is a failure only if it never tried a server of that
//!   datacenter that it knew and that was reachable for the whole RPC (a retry there could
//!   have succeeded): messages lost at random on every route tried are not the router's
//!   fault. RPCs to every datacenter are judged.
//! * No RPC starts at a server that has been unreachable for longer than the detection bound
//!   (counted from when it became unreachable, or from when membership last told the client
//!   it was there, if later) while another server of its datacenter has been reachable for all
//!   of that bound and has answered the client since (and membership has not told the client
//!   it was lost after that), however the faults came and went in between (flapping
//!   included).
//! * Through the run, every rebalance's choice is judged: each rebalance picks uniformly among
//!   the servers that answer, so the choices made while the reachable set stayed the same are
//!   tested together against those sets (chi-square, p > [`SPREAD_P`]); the final first
//!   choices too.
//! * `datacenters_by_distance`, sampled after each client's timed rebalances and at the end,
//!   matches the latencies in force: a datacenter that was clearly closer (by a fifth and
//!   2 ms) than another under every latency in force over the last [`SETTLE`] is never listed
//!   after it.

use super::{secs, Violation, ViolationKind};
use crate::faults::FaultState;
use crate::faults::{Action, FaultEvent};
use crate::scenario::{DurRange, Scenario, SimNode};
use crate::workload::router::{client_datacenter, home_of, Record};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The stretch of true time before a distance sample over which an order must have held to
/// be judged (and how long a run goes on before any is): time for coordinates to converge.
pub const SETTLE: Duration = Duration::from_secs(20);

/// The p-value at or below which first choices are uneven (at the end, and through the run).
/// Every seed of every sweep is tested, so at 1e-3 one seed in a thousand fails by chance
/// (seed 32 of `router-forger`: 13 of 15 clients' final shuffles put n1 first, from
/// independent draws; seed 7 of `router-loss`: p = 8e-5 through the run). A real bias is far
/// below: 15 clients all on one of three servers give 3e-7, a rebalance that never shuffles
/// gives under 1e-20 over a run's hundred rebalances.
pub const SPREAD_P: f64 = 1e-6;

/// How long after the default latency last changed (a step, or a spike's start or end) a
/// distance sample is first judged: every coordinate is pulled by the routes that changed,
/// those of other datacenters too, and needs a few probes of each server to recover.
pub const RECOVER: Duration = Duration::from_secs(5);

/// How long after a server of a datacenter restarted that datacenter's distance is first
/// judged again: the server starts from a fresh coordinate and moves it by its own probes,
/// which faults after the restart can hold up (a server restarted, then suspended for 1.4 s,
/// still had an error estimate of 0.78 and sat 80 ms from its twin 10 s after the restart;
/// a second median over two servers is the further one).
pub const RESTART_RECOVER: Duration = Duration::from_secs(20);

/// Most findings of one kind reported per run.
const MAX_FINDINGS: usize = 3;

/// Figures of a run's routing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouterReport {
    /// RPCs made.
    pub rpcs: usize,
    /// Of them, to a datacenter other than the clients' own.
    pub remote_rpcs: usize,
    /// Of those, how many found no server.
    pub remote_failed: usize,
    /// Of those, how many succeeded at the first try.
    pub remote_first_try: usize,
    /// RPCs that found no server.
    pub failed: usize,
    /// Of them, those that never tried a known server reachable for the whole RPC (failures).
    pub failed_untried: usize,
    /// RPCs whose route the router called unhealthy.
    pub unhealthy: usize,
    /// How many attempts successful RPCs took: attempts → count.
    pub attempts: BTreeMap<usize, usize>,
    /// First choices per server after the final rebalance.
    pub first_choices: BTreeMap<String, usize>,
    /// Chi-square p-value of that spread.
    pub spread_p: Option<f64>,
    /// Rebalances judged through the run (the reachable servers unchanged while they ran).
    pub rebalances_judged: usize,
    /// Chi-square p-value of their choices against the servers reachable for each.
    pub run_spread_p: Option<f64>,
    /// Clients whose final distance order was right, of the clients whose final order was
    /// judged.
    pub distance_agree: (usize, usize),
    /// Distance samples right, of the samples judged (the final ones included).
    pub distance_samples: (usize, usize),
    /// How many clients knew each server at the end (learnt from membership).
    pub servers_known: BTreeMap<String, usize>,
}

/// The fault history as states in force from each applied event on, for questions about
/// any moment and any stretch.
struct States {
    initial: FaultState,
    after: Vec<(u128, FaultState)>,
}

impl States {
    fn new(applied: &[FaultEvent], n: usize) -> Self {
        let mut s = FaultState::new(n);
        let mut after = Vec::with_capacity(applied.len());
        for e in applied {
            s.apply(&e.action);
            after.push((e.at.as_nanos(), s.clone()));
        }
        States {
            initial: FaultState::new(n),
            after,
        }
    }

    /// Index of the first state after `t`.
    fn idx(&self, t: u128) -> usize {
        self.after.partition_point(|(at, _)| *at <= t)
    }

    fn at(&self, t: u128) -> &FaultState {
        match self.idx(t) {
            0 => &self.initial,
            i => &self.after[i - 1].1,
        }
    }

    /// Whether `b` was reachable from `a` at every moment of `[from, to]`.
    fn connected_throughout(&self, from: u128, to: u128, a: usize, b: usize) -> bool {
        self.at(from).connected(a, b)
            && self.after[self.idx(from)..self.idx(to)]
                .iter()
                .all(|(_, s)| s.connected(a, b))
    }

    /// Whether `b`'s reachability from `a` stayed as it was at `from` until `to`.
    fn steady(&self, from: u128, to: u128, a: usize, b: usize) -> bool {
        let was = self.at(from).connected(a, b);
        self.after[self.idx(from)..self.idx(to)]
            .iter()
            .all(|(_, s)| s.connected(a, b) == was)
    }

    /// Since when `b` has been continuously unreachable from `a` at `t` (`None`: reachable).
    fn unreachable_since(&self, t: u128, a: usize, b: usize) -> Option<u128> {
        if self.at(t).connected(a, b) {
            return None;
        }
        let mut i = self.idx(t);
        // The states before `t` that were unreachable too, back to the one it began with.
        while i > 1 && !self.after[i - 2].1.connected(a, b) {
            i -= 1;
        }
        Some(self.after.get(i.wrapping_sub(1)).map_or(0, |(at, _)| *at))
    }
}

/// What each client knew: when each server answered it (an RPC or a rebalance's ping) and
/// when membership told it each server was there, or lost.
struct Evidence {
    answered: Times,
    told: Times,
    lost: Times,
}

/// Sorted true times, by (client, server).
type Times = BTreeMap<(usize, usize), Vec<u128>>;

impl Evidence {
    fn new(record: &Record) -> Self {
        let mut answered = Times::new();
        for r in &record.rpcs {
            if let Some((s, true)) = r.tries.last() {
                answered.entry((r.client, *s)).or_default().push(r.end);
            }
        }
        for b in &record.rebalances {
            if let Some(s) = b.chosen {
                answered.entry((b.client, s)).or_default().push(b.end);
            }
        }
        let (mut told, mut lost) = (Times::new(), Times::new());
        for t in &record.told {
            let to = if t.added { &mut told } else { &mut lost };
            to.entry((t.client, t.server)).or_default().push(t.at);
        }
        for v in answered.values_mut().chain(told.values_mut()).chain(lost.values_mut()) {
            v.sort_unstable();
        }
        Evidence { answered, told, lost }
    }

    /// The last of `times` at or before `t`.
    fn last(times: Option<&Vec<u128>>, t: u128) -> Option<u128> {
        let v = times?;
        v[..v.partition_point(|x| *x <= t)].last().copied()
    }

    /// Whether `server` answered `client` within `(from, to)`, and membership did not tell
    /// the client it was lost after that.
    fn answered(&self, client: usize, server: usize, from: u128, to: u128) -> bool {
        let Some(at) = Self::last(self.answered.get(&(client, server)), to.saturating_sub(1)) else {
            return false;
        };
        at > from && Self::last(self.lost.get(&(client, server)), to).is_none_or(|l| l < at)
    }

    /// When membership last told `client` that `server` was there, at or before `t`.
    fn told(&self, client: usize, server: usize, t: u128) -> Option<u128> {
        Self::last(self.told.get(&(client, server)), t)
    }
}

/// The default route latency in force over a run: the scenario's, changed by `latency`
/// steps and spikes.
struct Latencies {
    base: DurRange,
    changes: Vec<(u128, DurRange)>,
}

impl Latencies {
    fn new(scn: &Scenario, applied: &[FaultEvent]) -> Self {
        Latencies {
            base: scn.network.latency,
            changes: applied
                .iter()
                .filter_map(|e| match e.action {
                    Action::Latency(r) => Some((e.at.as_nanos(), r)),
                    _ => None,
                })
                .collect(),
        }
    }

    /// When the default latency last changed at or before `t` (0: never).
    fn last_change(&self, t: u128) -> u128 {
        let i = self.changes.partition_point(|(at, _)| *at <= t);
        i.checked_sub(1).map_or(0, |i| self.changes[i].0)
    }

    /// Every default latency in force at some moment of `[from, to]`.
    fn during(&self, from: u128, to: u128) -> Vec<DurRange> {
        let i = self.changes.partition_point(|(at, _)| *at <= from);
        let first = if i == 0 { self.base } else { self.changes[i - 1].1 };
        std::iter::once(first)
            .chain(
                self.changes[i..]
                    .iter()
                    .take_while(|(at, _)| *at <= to)
                    .map(|(_, r)| *r),
            )
            .collect()
    }
}

/// Judges what the clients recorded.
pub fn check(scn: &Scenario, record: &Record, applied: &[FaultEvent]) -> (RouterReport, Vec<Violation>) {
    let Some(spec) = &scn.router else {
        return (RouterReport::default(), Vec::new());
    };
    let sim_nodes = scn.sim_nodes();
    let nodes: Vec<String> = sim_nodes.iter().map(|n| n.id.clone()).collect();
    let client_dc = client_datacenter(scn);
    let homes: Vec<usize> = (0..spec.clients).map(|k| home_of(&sim_nodes, k, &client_dc)).collect();
    let states = States::new(applied, nodes.len());
    let mut rep = RouterReport {
        rpcs: record.rpcs.len(),
        ..Default::default()
    };
    for name in record.ends.values().flat_map(|e| &e.known) {
        *rep.servers_known.entry(name.clone()).or_insert(0) += 1;
    }
    let local: Vec<usize> = (0..nodes.len())
        .filter(|i| sim_nodes[*i].datacenter == client_dc)
        .collect();
    let mut found = check_rpcs(scn, record, &states, &nodes, &homes, &client_dc, &mut rep);
    found.extend(check_final_spread(scn, record, &nodes, &local, &mut rep));
    found.extend(check_run_spread(scn, record, &states, &nodes, &homes, &mut rep));
    found.extend(check_distance(scn, record, applied, &client_dc, &mut rep));
    (rep, found)
}

fn routing(at: u128, detail: String) -> Violation {
    Violation {
        kind: ViolationKind::Routing,
        at,
        claims: Vec::new(),
        detail,
    }
}

/// The detection bound for RPCs to `dc`: two of that datacenter's RPC periods (the clients'
/// own get three RPCs in four; each other datacenter one in four, in turn) and time-outs, and
/// a probe period.
fn detection_bound(scn: &Scenario, dc: &str, client_dc: &str) -> u128 {
    let Some(spec) = &scn.router else { return 0 };
    let mut dcs: Vec<String> = scn.sim_nodes().into_iter().map(|n| n.datacenter).collect();
    dcs.sort();
    dcs.dedup();
    let remote = dcs.len().saturating_sub(1).max(1) as u32;
    let period = if dc == client_dc {
        spec.rpc_every.0 * 2
    } else {
        spec.rpc_every.0 * 4 * remote
    };
    2 * (period + spec.rpc_timeout.0).as_nanos() + spec.probe_every.0.as_nanos()
}

/// RPC failures that a retry could have avoided, and RPCs that started at a server long
/// unreachable (at most [`MAX_FINDINGS`] of each).
fn check_rpcs(
    scn: &Scenario,
    record: &Record,
    states: &States,
    nodes: &[String],
    homes: &[usize],
    client_dc: &str,
    rep: &mut RouterReport,
) -> Vec<Violation> {
    let mut found = check_failed_rpcs(record, states, nodes, homes, client_dc, rep);
    found.extend(check_late_starts(scn, record, states, nodes, homes, client_dc));
    found
}

/// Counts the RPCs in `rep`; returns the failures that a retry at a server known, never
/// tried and reachable throughout could have avoided (at most [`MAX_FINDINGS`]).
fn check_failed_rpcs(
    record: &Record,
    states: &States,
    nodes: &[String],
    homes: &[usize],
    client_dc: &str,
    rep: &mut RouterReport,
) -> Vec<Violation> {
    let mut untried_found = Vec::new();
    for r in &record.rpcs {
        let host = homes.get(r.client).copied().unwrap_or(0);
        let name = |i: usize| nodes.get(i).cloned().unwrap_or_else(|| format!("#{i}"));
        let remote = r.dc != client_dc;
        rep.remote_rpcs += usize::from(remote);
        if !r.healthy {
            rep.unhealthy += 1;
        }
        let ok = r.tries.last().is_some_and(|(_, ok)| *ok);
        if ok {
            *rep.attempts.entry(r.tries.len()).or_insert(0) += 1;
            rep.remote_first_try += usize::from(remote && r.tries.len() == 1);
        } else {
            rep.failed += 1;
            rep.remote_failed += usize::from(remote);
            let untried: Vec<usize> = r
                .known
                .iter()
                .copied()
                .filter(|s| *s < nodes.len() && !r.tries.iter().any(|(t, _)| t == s))
                .filter(|s| states.connected_throughout(r.start, r.end, host, *s))
                .collect();
            if !untried.is_empty() {
                rep.failed_untried += 1;
                if untried_found.len() < MAX_FINDINGS {
                    untried_found.push(routing(
                        r.start,
                        format!(
                            "client c{} found no server of {} in {} attempts {:?} though {} was reachable throughout and never tried",
                            r.client,
                            r.dc,
                            r.tries.len(),
                            r.tries.iter().map(|(i, ok)| (name(*i), *ok)).collect::<Vec<_>>(),
                            name(untried[0])
                        ),
                    ));
                }
            }
        }
    }
    untried_found
}

/// RPCs that started at a server unreachable for longer than the detection bound while
/// another of its datacenter was reachable all that bound and had answered the client since
/// (at most [`MAX_FINDINGS`]).
fn check_late_starts(
    scn: &Scenario,
    record: &Record,
    states: &States,
    nodes: &[String],
    homes: &[usize],
    client_dc: &str,
) -> Vec<Violation> {
    let mut late_found = Vec::new();
    let evidence = Evidence::new(record);
    let mut bounds: BTreeMap<&str, u128> = BTreeMap::new();
    for r in &record.rpcs {
        let host = homes.get(r.client).copied().unwrap_or(0);
        let name = |i: usize| nodes.get(i).cloned().unwrap_or_else(|| format!("#{i}"));
        let Some((first, _)) = r.tries.first().copied() else {
            continue;
        };
        if first >= nodes.len() || late_found.len() >= MAX_FINDINGS {
            continue;
        }
        let bound = *bounds
            .entry(r.dc.as_str())
            .or_insert_with(|| detection_bound(scn, &r.dc, client_dc));
        let Some(since) = states.unreachable_since(r.start, host, first) else {
            continue;
        };
        // Membership telling the router the server is there (its agent is heard) is news the
        // router may act on: detection starts again from it.
        let since = evidence.told(r.client, first, r.start).map_or(since, |t| t.max(since));
        if r.start.saturating_sub(since) <= bound {
            continue;
        }
        let from = r.start.saturating_sub(bound);
        let other = r.known.iter().find(|s| {
            **s != first
                && **s < nodes.len()
                && states.connected_throughout(from, r.start, host, **s)
                && evidence.answered(r.client, **s, since, r.start)
        });
        if let Some(other) = other {
            late_found.push(routing(
                r.start,
                format!(
                    "client c{} routed to {} unreachable since {} (bound {}) though {} was reachable all that bound and had answered it since",
                    r.client,
                    name(first),
                    secs(since),
                    secs(bound),
                    name(*other)
                ),
            ));
        }
    }
    late_found
}

/// First choices after the final rebalance are spread evenly over the local servers.
fn check_final_spread(
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
        if p <= SPREAD_P {
            found = Some(routing(
                scn.duration.0.as_nanos(),
                format!("first choices are not spread evenly: {counts:?} (chi-square p = {p:.2e})"),
            ));
        }
    }
    rep.first_choices = counts;
    found
}

/// Every rebalance of the run, against the servers reachable while it ran: each picks
/// uniformly among those that answer, so the counts of choices are tested against the sum
/// of those uniform chances (Pearson's chi-square, one constraint per datacenter).
fn check_run_spread(
    scn: &Scenario,
    record: &Record,
    states: &States,
    nodes: &[String],
    homes: &[usize],
    rep: &mut RouterReport,
) -> Option<Violation> {
    let mut observed: BTreeMap<usize, f64> = BTreeMap::new();
    let mut expected: BTreeMap<usize, f64> = BTreeMap::new();
    let mut dc_of: BTreeMap<usize, &str> = BTreeMap::new();
    for b in &record.rebalances {
        let host = homes.get(b.client).copied().unwrap_or(0);
        let Some(chosen) = b.chosen else { continue };
        let cands: Vec<usize> = b.candidates.iter().copied().filter(|s| *s < nodes.len()).collect();
        if !cands.iter().all(|s| states.steady(b.start, b.end, host, *s)) {
            continue;
        }
        let reach: Vec<usize> = cands
            .into_iter()
            .filter(|s| states.at(b.start).connected(host, *s))
            .collect();
        if !reach.contains(&chosen) {
            continue;
        }
        rep.rebalances_judged += 1;
        *observed.entry(chosen).or_insert(0.0) += 1.0;
        for s in &reach {
            *expected.entry(*s).or_insert(0.0) += 1.0 / reach.len() as f64;
            dc_of.insert(*s, b.dc.as_str());
        }
    }
    let groups: BTreeSet<&str> = dc_of.values().copied().collect();
    let df = expected.len().saturating_sub(groups.len());
    if df == 0 {
        return None;
    }
    let x2: f64 = expected
        .iter()
        .map(|(s, e)| (observed.get(s).copied().unwrap_or(0.0) - e).powi(2) / e)
        .sum();
    let p = gamma_q(df as f64 / 2.0, x2 / 2.0);
    rep.run_spread_p = Some(p);
    (p <= SPREAD_P).then(|| {
        let show: BTreeMap<String, String> = expected
            .iter()
            .map(|(s, e)| {
                (
                    nodes[*s].clone(),
                    format!("{} of {e:.1}", observed.get(s).copied().unwrap_or(0.0)),
                )
            })
            .collect();
        routing(
            scn.duration.0.as_nanos(),
            format!("rebalances through the run are not spread evenly: chosen of expected {show:?} (chi-square p = {p:.2e})"),
        )
    })
}

/// Every distance sample taken after [`SETTLE`], and [`RECOVER`] after the default latency
/// last changed, lists no datacenter after one that was clearly closer (by a fifth and 2 ms)
/// under every latency in force over the [`SETTLE`] before it, unless a server of either
/// restarted within [`RESTART_RECOVER`]. Pairs whose order some latency of that stretch made unclear (a step or a spike
/// that brought them close or swapped them) are not judged; a sample with no pair of other
/// datacenters left to judge is not counted (unless it is wrong).
fn check_distance(
    scn: &Scenario,
    record: &Record,
    applied: &[FaultEvent],
    client_dc: &str,
    rep: &mut RouterReport,
) -> Option<Violation> {
    let lat = Latencies::new(scn, applied);
    let settle = SETTLE.as_nanos();
    let nodes = scn.sim_nodes();
    // Each datacenter's restarts: a restarted server starts from a fresh coordinate.
    let restarts = restarts_by_datacenter(&nodes, applied);
    let fresh = |dc: &str, at: u128| {
        restarts
            .get(dc)
            .is_some_and(|r| r.iter().any(|t| *t <= at && at - t < RESTART_RECOVER.as_nanos()))
    };
    let last: BTreeMap<usize, u128> = record.distances.iter().map(|d| (d.client, d.at)).collect();
    let (mut right, mut judged, mut final_right, mut final_judged) = (0, 0, 0, 0);
    let mut first_bad = None;
    for d in &record.distances {
        if d.at < settle || d.at.saturating_sub(lat.last_change(d.at)) < RECOVER.as_nanos() {
            continue;
        }
        let window = lat.during(d.at - settle, d.at);
        let rtts = |dc: &str| -> Vec<f64> { window.iter().map(|l| true_rtt(scn, client_dc, dc, *l)).collect() };
        // `b` clearly closer than `a` under every latency of the window, and neither with a
        // server restarted lately.
        let closer = |b: &str, a: &str| {
            !fresh(a, d.at) && !fresh(b, d.at) && rtts(b).iter().zip(rtts(a)).all(|(rb, ra)| rb * 1.2 + 0.002 < ra)
        };
        let (any, wrong) = judge_order(&d.order, client_dc, closer);
        if !any {
            continue;
        }
        judged += 1;
        let is_final = last.get(&d.client) == Some(&d.at);
        final_judged += usize::from(is_final);
        match wrong {
            None => {
                right += 1;
                final_right += usize::from(is_final);
            }
            Some((a, b)) if first_bad.is_none() => {
                let latency = window[window.len() - 1];
                first_bad = Some(routing(
                    d.at,
                    format!(
                        "c{}'s datacenters by distance {:?} put {a} ({:.0} ms) before {b} ({:.0} ms)",
                        d.client,
                        d.order,
                        true_rtt(scn, client_dc, &a, latency) * 1000.0,
                        true_rtt(scn, client_dc, &b, latency) * 1000.0
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    rep.distance_samples = (right, judged);
    rep.distance_agree = (final_right, final_judged);
    first_bad.map(|mut v| {
        v.detail = format!("{} ({} of {judged} samples wrong)", v.detail, judged - right);
        v
    })
}

/// Each datacenter's restarts, as true times (ns), from the faults applied.
fn restarts_by_datacenter<'a>(nodes: &'a [SimNode], applied: &[FaultEvent]) -> BTreeMap<&'a str, Vec<u128>> {
    let mut restarts: BTreeMap<&str, Vec<u128>> = BTreeMap::new();
    for e in applied {
        if let Action::Restart(i) = e.action {
            if let Some(n) = nodes.get(i) {
                restarts.entry(n.datacenter.as_str()).or_default().push(e.at.as_nanos());
            }
        }
    }
    restarts
}

/// Judges every pair of a distance sample's `order` with `closer(b, a)` (`b` clearly closer
/// than `a`): whether some pair counts as judged, and the first pair listed the wrong way.
fn judge_order(
    order: &[String],
    client_dc: &str,
    closer: impl Fn(&str, &str) -> bool,
) -> (bool, Option<(String, String)>) {
    let mut any = false;
    let mut wrong = None;
    for (i, a) in order.iter().enumerate() {
        for b in &order[i + 1..] {
            // (The clients' own datacenter is first by definition: a pair with it is
            // checked but does not make a sample count as judged.)
            let counts = a != client_dc && b != client_dc;
            if closer(b, a) {
                wrong = wrong.or(Some((a.clone(), b.clone())));
                any = true;
            } else if closer(a, b) {
                any |= counts;
            }
        }
    }
    (any, wrong)
}

/// The round trip (s) from datacenter `from` to `to` with `latency` as the default route
/// latency: each way the middle of the `dc_link` range if one joins them, else of `latency`.
pub fn true_rtt(scn: &Scenario, from: &str, to: &str, latency: DurRange) -> f64 {
    if from == to {
        return 0.0;
    }
    let mid = |r: DurRange| (r.lo + r.hi).as_secs_f64();
    scn.network
        .dc_link
        .iter()
        .find(|l| (l.between.0 == from && l.between.1 == to) || (l.between.1 == from && l.between.0 == to))
        .map_or(mid(latency), |l| mid(l.latency))
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
    use crate::workload::router::{ClientEnd, DistanceSample, Rebalance, Rpc};

    /// dc1 holds n0 and n1, dc2 holds n2 (40 ms away); two clients in dc1, on the hosts of
    /// n0 (c0) and n1 (c1).
    fn scn() -> Scenario {
        Scenario::parse(
            "r.toml",
            "duration = \"60s\"\n[network]\nlatency = \"1ms\"\n[[network.dc_link]]\nbetween = [\"dc1\", \"dc2\"]\nlatency = \"40ms\"\n[[node]]\ndatacenter = \"dc1\"\n[[node]]\ndatacenter = \"dc1\"\n[[node]]\ndatacenter = \"dc2\"\n[router]\nclients = 2\n",
        )
        .unwrap()
    }

    const S: u128 = 1_000_000_000;

    fn ev(secs: u64, action: Action) -> FaultEvent {
        FaultEvent {
            at: Duration::from_secs(secs),
            action,
            scripted: true,
        }
    }

    fn rpc(client: usize, start_s: u128, tries: Vec<(usize, bool)>) -> Rpc {
        Rpc {
            client,
            dc: "dc1".into(),
            start: start_s * S,
            end: start_s * S + 400_000_000,
            known: vec![0, 1],
            tries,
            healthy: true,
        }
    }

    fn record(rpcs: Vec<Rpc>) -> Record {
        Record {
            rpcs,
            ends: (0..2)
                .map(|c| {
                    (
                        c,
                        ClientEnd {
                            first_choice: Some(c),
                            by_distance: vec!["dc1".into(), "dc2".into()],
                            known: Vec::new(),
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    fn details(v: &[Violation]) -> String {
        v.iter().map(|v| v.detail.clone()).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn a_clean_record_passes() {
        let (rep, v) = check(&scn(), &record(vec![rpc(0, 1, vec![(0, true)])]), &[]);
        assert!(v.is_empty(), "{v:?}");
        assert_eq!(rep.attempts.get(&1), Some(&1));
        assert_eq!((rep.rpcs, rep.failed), (1, 0));
    }

    #[test]
    fn giving_up_is_a_failure_only_with_a_reachable_server_never_tried() {
        // n0 tried and lost, n1 reachable and never tried: a retry could have succeeded.
        let (rep, v) = check(&scn(), &record(vec![rpc(0, 5, vec![(0, false)])]), &[]);
        assert!(details(&v).contains("never tried"), "{v:?}");
        assert_eq!((rep.failed, rep.failed_untried), (1, 1));
        // Both tried, both lost (loss on the routes): not the router's fault, though faults
        // came and went meanwhile.
        let flap = [ev(4, Action::Kill(2)), ev(5, Action::Restart(2))];
        let (rep, v) = check(&scn(), &record(vec![rpc(0, 5, vec![(0, false), (1, false)])]), &flap);
        assert!(v.is_empty(), "{v:?}");
        assert_eq!((rep.failed, rep.failed_untried), (1, 0));
        // n1 untried but down for part of the RPC: no retry could have been sure to succeed.
        let down = [ev(5, Action::Kill(1))];
        let late = Rpc {
            start: 5 * S - 100_000_000,
            ..rpc(0, 5, vec![(0, false)])
        };
        let (_, v) = check(&scn(), &record(vec![late]), &down);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn clients_are_judged_from_their_hosts_side_of_a_partition() {
        // n0's host is cut from n1's: client c0 (on n0's host) cannot reach n1, c1 can.
        let cut = [ev(1, Action::Cut(vec![(0, 1), (1, 0)]))];
        let (_, v) = check(&scn(), &record(vec![rpc(0, 5, vec![(0, false)])]), &cut);
        assert!(v.is_empty(), "c0 had nowhere else to go: {v:?}");
        let (_, v) = check(&scn(), &record(vec![rpc(1, 5, vec![(0, false)])]), &cut);
        assert!(
            details(&v).contains("never tried"),
            "c1 could reach its own host's n1: {v:?}"
        );
    }

    #[test]
    fn routing_to_a_long_dead_server_is_caught_even_while_others_flap() {
        // n0 dies at 1 s; n2 (another datacenter) flaps all along, n1 stays reachable and
        // answers c1 at 5 s.
        let mut faults = vec![ev(1, Action::Kill(0))];
        for t in 2..10 {
            faults.push(ev(
                t,
                if t % 2 == 0 {
                    Action::Pause(2)
                } else {
                    Action::Resume(2)
                },
            ));
        }
        let answered = rpc(1, 5, vec![(0, false), (1, true)]);
        let late = rpc(1, 10, vec![(0, false), (1, true)]);
        let (_, v) = check(&scn(), &record(vec![answered.clone(), late.clone()]), &faults);
        assert!(
            details(&v).contains("routed to n0 unreachable since 1.000000000s"),
            "{v:?}"
        );
        assert_eq!(v.len(), 1, "the RPC at 5 s had no evidence against n0 yet: {v:?}");
        // Soon after the death it is not a failure, nor with no other server reachable for
        // the whole bound, nor when nothing else answered the client since.
        let (_, v) = check(&scn(), &record(vec![rpc(1, 2, vec![(0, false), (1, true)])]), &faults);
        assert!(v.is_empty(), "{v:?}");
        let mut both = faults.clone();
        both.extend([ev(8, Action::Kill(1)), ev(9, Action::Restart(1))]);
        let (_, v) = check(&scn(), &record(vec![answered.clone(), late.clone()]), &both);
        assert!(v.is_empty(), "{v:?}");
        let (_, v) = check(&scn(), &record(vec![late.clone()]), &faults);
        assert!(v.is_empty(), "{v:?}");
        // Membership telling the client at 9 s that n0 is there starts detection again.
        let mut told = record(vec![answered, late]);
        told.told.push(crate::workload::router::Told {
            client: 1,
            server: 0,
            at: 9 * S,
            added: true,
        });
        let (_, v) = check(&scn(), &told, &faults);
        assert!(v.is_empty(), "{v:?}");
        // So does membership telling it that n1 was lost after n1 answered.
        let mut told = record(vec![
            rpc(1, 5, vec![(0, false), (1, true)]),
            rpc(1, 10, vec![(0, false), (1, true)]),
        ]);
        told.told.push(crate::workload::router::Told {
            client: 1,
            server: 1,
            at: 8 * S,
            added: false,
        });
        let (_, v) = check(&scn(), &told, &faults);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn uneven_spreads_are_caught_at_the_end_and_through_the_run() {
        let many = Scenario::parse("r.toml", "nodes = 2\n[router]\nclients = 60\n").unwrap();
        let mut rec = Record {
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
            ..Default::default()
        };
        let rebalance = |client: usize, chosen: usize| Rebalance {
            client,
            dc: "dc1".into(),
            start: S,
            end: 3 * S,
            candidates: vec![0, 1],
            chosen: Some(chosen),
        };
        rec.rebalances = (0..200).map(|k| rebalance(k % 60, usize::from(k % 2 == 0))).collect();
        let (rep, v) = check(&many, &rec, &[]);
        assert!(rep.spread_p.unwrap() < 0.001);
        assert!(details(&v).contains("first choices are not spread evenly"), "{v:?}");
        assert!(rep.run_spread_p.unwrap() > 0.5, "half and half: {rep:?}");
        assert_eq!(rep.rebalances_judged, 200);
        // Always the first server, through the run.
        rec.rebalances = (0..200).map(|k| rebalance(k % 60, 0)).collect();
        let (rep, v) = check(&many, &rec, &[]);
        assert!(rep.run_spread_p.unwrap() < 1e-20);
        assert!(details(&v).contains("through the run are not spread evenly"), "{v:?}");
        // ... unless only it was reachable (n1 down): then there was no choice.
        let (rep, v) = check(&many, &rec, &[ev(0, Action::Kill(1))]);
        assert!(!details(&v).contains("through the run"), "{v:?}");
        assert_eq!(rep.run_spread_p, None);
        // A rebalance during which a candidate came or went is not judged.
        let (rep, _) = check(&many, &rec, &[ev(2, Action::Kill(1))]);
        assert_eq!(rep.rebalances_judged, 0);
    }

    #[test]
    fn distance_order_is_judged_against_the_latencies_in_force() {
        // Three datacenters: dc3 has no link of its own, so it takes the default latency.
        let scn = Scenario::parse(
            "r.toml",
            "duration = \"90s\"\n[network]\nlatency = \"5ms\"\n[[network.dc_link]]\nbetween = [\"dc1\", \"dc2\"]\nlatency = \"30ms\"\n[[node]]\ndatacenter = \"dc1\"\n[[node]]\ndatacenter = \"dc2\"\n[[node]]\ndatacenter = \"dc3\"\n[router]\nclients = 1\n",
        )
        .unwrap();
        let sample = |at_s: u128, order: [&str; 3]| DistanceSample {
            client: 0,
            at: at_s * S,
            order: order.iter().map(|d| d.to_string()).collect(),
        };
        let step = [ev(
            10,
            Action::Latency(DurRange::new(Duration::from_millis(60), Duration::from_millis(60))),
        )];
        let before = ["dc1", "dc3", "dc2"];
        let after = ["dc1", "dc2", "dc3"];
        let judge = |samples: Vec<DistanceSample>, faults: &[FaultEvent]| {
            let rec = Record {
                distances: samples,
                ..Default::default()
            };
            check(&scn, &rec, faults)
        };
        // Without the step, dc3 (10 ms) is nearer than dc2 (60 ms).
        let (rep, v) = judge(vec![sample(25, before), sample(50, before)], &[]);
        assert!(v.is_empty(), "{v:?}");
        assert_eq!(rep.distance_samples, (2, 2));
        // After it, dc3 is 120 ms away: the clients must follow, once the latencies settled.
        let (rep, v) = judge(vec![sample(25, before), sample(50, after)], &step);
        assert!(v.is_empty(), "the sample at 25 s is not judged yet: {v:?}");
        assert_eq!(rep.distance_samples, (1, 1));
        assert_eq!(rep.distance_agree, (1, 1), "the last sample is the final one");
        let (_, v) = judge(vec![sample(50, before)], &step);
        assert!(details(&v).contains("put dc3 (120 ms) before dc2 (60 ms)"), "{v:?}");
        // Nothing is judged before the run has settled.
        let (rep, _) = judge(vec![sample(5, after)], &[]);
        assert_eq!(rep.distance_samples, (0, 0));
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
