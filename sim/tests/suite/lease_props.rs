//! Property tests of the `lease` state machines alone (no runtime): a harness plays the
//! network and the clocks. True time is a counter; each node's monotonic clock is the
//! simulator's clock model, running at its own rate within the drift bound from its own
//! origin. Every claim is mapped back to true time and judged by the simulator's own oracle:
//! no two incarnations' claims overlap, and fencing tokens strictly increase from one holder
//! to the next.

use leasehold::election::{LeaseElection, Output, Publish};
use leasehold::wire::{Heartbeat, LeaseRecover, LeaseRecovered, LeaseRelease, LeaseReply, LeaseRequest};
use leasehold::{Bug, BugKnobs, ClusterState, Durable, MembershipCfg, Notice};
use leasehold_sim::clock::ClockModel;
use leasehold_sim::oracle::{check_safety, TrueClaim};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use std::time::Duration;

#[derive(Debug, Clone)]
enum Msg {
    Hb(Heartbeat),
    Req(LeaseRequest, usize),
    Reply(LeaseReply),
    Rel(LeaseRelease),
    Recover(LeaseRecover, usize),
    Recovered(LeaseRecovered),
}

struct Node {
    sm: Option<LeaseElection>,
    /// What the node's disk holds (`None` before its first save).
    durable: Option<Durable>,
    clock: ClockModel,
    paused: bool,
}

struct World {
    cfg: Vec<MembershipCfg>,
    nodes: Vec<Node>,
    true_ns: u128,
    /// (from, to, message)
    in_flight: Vec<(usize, usize, Msg)>,
    claims: Vec<TrueClaim>,
    isolated: Vec<bool>,
}

impl Node {
    fn local(&self, true_ns: u128) -> Duration {
        Duration::from_nanos(self.clock.local_at(true_ns) as u64)
    }
    /// The true time at which this node's clock reads `local` (rounded up).
    fn to_true(&self, local: Duration) -> u128 {
        self.clock.true_at(local.as_nanos())
    }
}

fn cfg_for(i: usize, n: usize, rank: i64, ppm: u32, knobs: BugKnobs) -> MembershipCfg {
    let mut c = MembershipCfg::default();
    c.id = format!("n{i}");
    c.my_rank = rank;
    c.cluster_size = n;
    c.beat = Duration::from_millis(100);
    c.lease_time = Duration::from_secs(2);
    c.member_timeout = Duration::from_millis(500);
    c.max_drift_ppm = ppm;
    c.bug_knobs = knobs;
    // The harness starts a brand-new cluster; every later start finds the state it saved.
    c.initial_cluster_state = ClusterState::New;
    c
}

impl World {
    fn new(c: &Cluster, knobs: BugKnobs) -> Self {
        let Cluster {
            ranks,
            drifts,
            origins,
            ppm,
        } = c;
        let n = ranks.len();
        let mut w = World {
            cfg: (0..n).map(|i| cfg_for(i, n, ranks[i], *ppm, knobs)).collect(),
            nodes: (0..n)
                .map(|i| Node {
                    sm: None,
                    durable: None,
                    // Drawn as a fraction of the bound, so it is always within it.
                    clock: ClockModel::new(Duration::from_millis(origins[i]), drifts[i] * i64::from(*ppm) / 1000, 0),
                    paused: false,
                })
                .collect(),
            true_ns: 0,
            in_flight: Vec::new(),
            claims: Vec::new(),
            isolated: vec![false; n],
        };
        for i in 0..n {
            w.start(i);
        }
        w
    }

    fn start(&mut self, i: usize) {
        let now = self.nodes[i].local(self.true_ns);
        let seed = i as u64 * 7919 + self.nodes[i].durable.as_ref().map_or(0, |d| d.incarnation);
        let (sm, out) = LeaseElection::new(&self.cfg[i], self.nodes[i].durable.clone(), now, seed);
        self.nodes[i].sm = Some(sm);
        self.nodes[i].paused = false;
        self.apply(i, out);
    }

    fn apply(&mut self, i: usize, out: Vec<Output>) {
        let n = self.nodes.len();
        for o in out {
            match o {
                Output::Persist(d) => self.nodes[i].durable = Some(d),
                Output::Publish(Publish::Heartbeat(h)) => (0..n)
                    .filter(|j| *j != i)
                    .for_each(|j| self.in_flight.push((i, j, Msg::Hb(h.clone())))),
                Output::Publish(Publish::Request(r)) => (0..n)
                    .filter(|j| *j != i)
                    .for_each(|j| self.in_flight.push((i, j, Msg::Req(r.clone(), i)))),
                Output::Publish(Publish::Reply { to, reply }) => {
                    self.in_flight.push((i, to.parse().unwrap(), Msg::Reply(reply)))
                }
                Output::Publish(Publish::Release(r)) => (0..n)
                    .filter(|j| *j != i)
                    .for_each(|j| self.in_flight.push((i, j, Msg::Rel(r.clone())))),
                Output::Publish(Publish::Recover(r)) => (0..n)
                    .filter(|j| *j != i)
                    .for_each(|j| self.in_flight.push((i, j, Msg::Recover(r.clone(), i)))),
                Output::Publish(Publish::Recovered { to, answer }) => {
                    self.in_flight.push((i, to.parse().unwrap(), Msg::Recovered(answer)))
                }
                Output::Notice(Notice::Claim { token, from, until }) => {
                    let node = &self.nodes[i];
                    let inc = node.sm.as_ref().unwrap().me().inc;
                    // `from` is now: record the exact true time rather than a rounded inverse.
                    assert_eq!(from, node.local(self.true_ns));
                    self.claims.push(TrueClaim {
                        node: i,
                        id: format!("n{i}"),
                        inc,
                        token: Some(token.unwrap()),
                        from: self.true_ns,
                        until: node.to_true(until),
                    });
                }
                Output::Notice(Notice::ClaimEnded { at }) => {
                    let node = &self.nodes[i];
                    let inc = node.sm.as_ref().unwrap().me().inc;
                    assert_eq!(at, node.local(self.true_ns));
                    for c in self.claims.iter_mut().filter(|c| (c.node, c.inc) == (i, inc)) {
                        c.until = c.until.min(self.true_ns);
                    }
                }
                Output::Notice(_) | Output::Publish(_) => {}
            }
        }
    }

    fn tick(&mut self, i: usize) {
        if self.nodes[i].paused {
            return;
        }
        let now = self.nodes[i].local(self.true_ns);
        if let Some(sm) = self.nodes[i].sm.as_mut() {
            let out = sm.tick(now);
            assert!(
                sm.next_wakeup() > now,
                "a tick leaves a timer due (the driver would spin)"
            );
            self.apply(i, out);
        }
    }

    fn deliver(&mut self, k: usize) {
        if self.in_flight.is_empty() {
            return;
        }
        let (from, to, msg) = self.in_flight.remove(k % self.in_flight.len());
        if self.isolated[from] != self.isolated[to] {
            return; // a cut link loses what crosses it
        }
        if self.nodes[to].paused {
            self.in_flight.push((from, to, msg));
            return;
        }
        let now = self.nodes[to].local(self.true_ns);
        let Some(sm) = self.nodes[to].sm.as_mut() else { return };
        let out = match msg {
            Msg::Hb(h) => sm.on_heartbeat(now, &h),
            Msg::Req(r, from) => sm.on_request(now, r, from.to_string()),
            Msg::Reply(r) => sm.on_reply(now, r),
            Msg::Rel(r) => sm.on_release(now, r),
            Msg::Recover(r, from) => sm.on_recover(now, r, from.to_string()),
            Msg::Recovered(r) => sm.on_recovered(now, r),
        };
        self.apply(to, out);
    }

    fn advance(&mut self, ms: u64) {
        self.true_ns += u128::from(ms) * 1_000_000;
        for i in 0..self.nodes.len() {
            self.tick(i);
        }
    }

    /// Claims by different incarnations are disjoint, and the later one carries the higher
    /// token (the simulator's oracle judges).
    fn check(&self) -> Result<(), String> {
        match check_safety(&self.claims).first() {
            None => Ok(()),
            Some(v) => Err(format!(
                "{}: {} and {} ({})",
                v.kind, v.claims[0], v.claims[1], v.detail
            )),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Deliver(usize),
    DeliverAll,
    Drop(usize),
    Duplicate(usize),
    Restart(usize),
    Stop(usize),
    Pause(usize),
    Resume(usize),
    Isolate(usize),
    Heal,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u64..400).prop_map(Op::Advance),
        8 => any::<usize>().prop_map(Op::Deliver),
        3 => Just(Op::DeliverAll),
        2 => any::<usize>().prop_map(Op::Drop),
        1 => any::<usize>().prop_map(Op::Duplicate),
        1 => any::<usize>().prop_map(Op::Restart),
        1 => any::<usize>().prop_map(Op::Stop),
        1 => any::<usize>().prop_map(Op::Pause),
        1 => any::<usize>().prop_map(Op::Resume),
        1 => any::<usize>().prop_map(Op::Isolate),
        1 => Just(Op::Heal),
    ]
}

#[derive(Debug, Clone)]
struct Cluster {
    ranks: Vec<i64>,
    /// Each node's drift, in thousandths of the bound (−1000..=1000).
    drifts: Vec<i64>,
    /// Each node's clock origin, in ms.
    origins: Vec<u64>,
    /// The declared drift bound.
    ppm: u32,
}

fn cluster_with(ppm: impl Strategy<Value = u32>) -> impl Strategy<Value = Cluster> {
    (3usize..=7, ppm).prop_flat_map(|(n, ppm)| {
        (
            proptest::collection::vec(0i64..3, n),
            proptest::collection::vec(-1000i64..=1000, n),
            proptest::collection::vec(0u64..100_000, n),
        )
            .prop_map(move |(ranks, drifts, origins)| Cluster {
                ranks,
                drifts,
                origins,
                ppm,
            })
    })
}

fn cluster() -> impl Strategy<Value = Cluster> {
    cluster_with(prop_oneof![Just(100u32), Just(1000), Just(50_000)])
}

fn play(world: &mut World, ops: &[Op]) {
    let n = world.nodes.len();
    for op in ops {
        match op.clone() {
            Op::Advance(ms) => world.advance(ms),
            Op::Deliver(k) => world.deliver(k),
            Op::DeliverAll => {
                while let Some(k) = world.in_flight.iter().position(|(_, to, _)| !world.nodes[*to].paused) {
                    world.deliver(k);
                }
            }
            Op::Drop(k) if !world.in_flight.is_empty() => {
                let len = world.in_flight.len();
                world.in_flight.remove(k % len);
            }
            Op::Duplicate(k) if !world.in_flight.is_empty() => {
                let m = world.in_flight[k % world.in_flight.len()].clone();
                world.in_flight.push(m);
            }
            // A crash: memory lost, only what was persisted survives; back at once.
            Op::Restart(i) => world.start(i % n),
            // A clean stop (a leader releases), then a start.
            Op::Stop(i) => {
                let i = i % n;
                let now = world.nodes[i].local(world.true_ns);
                if let Some(mut sm) = world.nodes[i].sm.take() {
                    let out = sm.stop(now);
                    world.nodes[i].sm = Some(sm);
                    world.apply(i, out);
                }
                world.start(i);
            }
            Op::Pause(i) => world.nodes[i % n].paused = true,
            Op::Resume(i) => world.nodes[i % n].paused = false,
            Op::Isolate(i) => world.isolated[i % n] = true,
            Op::Heal => world.isolated.iter_mut().for_each(|x| *x = false),
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_two_holders_overlap_and_tokens_increase(c in cluster(), ops in proptest::collection::vec(op(), 1..400)) {
        let mut w = World::new(&c, BugKnobs::default());
        play(&mut w, &ops);
        // Run on calmly for a while so late deliveries and renewals are exercised too.
        for _ in 0..50 {
            w.advance(97);
            for k in 0..3 { w.deliver(k); }
        }
        prop_assert!(w.check().is_ok(), "{}", w.check().unwrap_err());
    }

    #[test]
    fn with_a_connected_majority_and_no_faults_the_best_ranked_leads(c in cluster()) {
        let mut w = World::new(&c, BugKnobs::default());
        let ranks = c.ranks.clone();
        let mut first_leader_at = None;
        for step in 0..1000u64 {
            w.advance(10);
            while !w.in_flight.is_empty() { w.deliver(0); }
            if first_leader_at.is_none() && !w.claims.is_empty() {
                first_leader_at = Some(step * 10);
            }
        }
        prop_assert!(w.check().is_ok(), "{}", w.check().unwrap_err());
        let at = first_leader_at.expect("a leader emerged");
        prop_assert!(at <= 1000, "first leader after {at} ms");
        let best = (0..ranks.len()).min_by_key(|i| (ranks[*i], format!("n{i}"))).unwrap();
        let now = w.true_ns;
        let mut holders: Vec<usize> = w.claims.iter().filter(|c| c.from <= now && now < c.until).map(|c| c.node).collect();
        holders.dedup(); // renewals by the same holder
        prop_assert_eq!(holders, vec![best]);
    }
}

/// The harness has teeth: with a planted bug it finds a violation in some random run.
/// Drift is drawn within the declared bound of 5%, wide enough that a drift bug shows.
fn finds_violation_with(knobs: BugKnobs, restarts: bool) -> bool {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let ops = proptest::collection::vec(op(), 50..400);
    for _ in 0..500 {
        let c = cluster_with(Just(50_000u32)).new_tree(&mut runner).unwrap().current();
        let ops = ops.new_tree(&mut runner).unwrap().current();
        let ops: Vec<Op> = ops
            .into_iter()
            .filter(|o| restarts || !matches!(o, Op::Restart(_)))
            .collect();
        let mut w = World::new(&c, knobs);
        play(&mut w, &ops);
        if w.check().is_err() {
            return true;
        }
    }
    false
}

#[test]
fn the_checker_catches_granting_over_an_outstanding_promise() {
    assert!(finds_violation_with(BugKnobs::planted(Bug::GrantIgnoringPromise), true));
}

#[test]
fn the_checker_catches_a_skipped_restart_quarantine() {
    assert!(finds_violation_with(
        BugKnobs::planted(Bug::SkipRestartQuarantine),
        true
    ));
}

impl World {
    /// Advances in 10 ms steps, delivering every message `keep` allows at once; others wait.
    fn run_sync(&mut self, ms: u64, keep: impl Fn(usize, usize, &Msg) -> bool) {
        for _ in 0..ms / 10 {
            self.advance(10);
            let mut k = 0;
            while k < self.in_flight.len() {
                let (from, to, ref m) = self.in_flight[k];
                if keep(from, to, m) && !self.nodes[to].paused {
                    self.deliver(k);
                } else {
                    k += 1;
                }
            }
        }
    }

    fn holds(&self, node: usize) -> bool {
        self.claims
            .iter()
            .any(|c| c.node == node && c.from <= self.true_ns && self.true_ns < c.until)
    }
}

/// n0 (rank 0, the slowest clock allowed) leads; n1, n2 run fastest. n0 is cut off right
/// after it (re)acquires; n1 campaigns as soon as the promises run out.
fn isolate_slow_holder(knobs: BugKnobs, origin_ms: u64) -> World {
    let c = Cluster {
        ranks: vec![0, 1, 2],
        drifts: vec![-1000, 1000, 1000],
        origins: vec![origin_ms, 0, 7],
        ppm: 50_000,
    };
    let mut w = World::new(&c, knobs);
    w.run_sync(3000, |_, _, _| true);
    assert!(w.holds(0), "n0 leads before the cut");
    let claims = w.claims.len();
    // Wait for a renewal, then cut n0 off at once.
    while w.claims.len() == claims {
        w.run_sync(10, |_, _, _| true);
    }
    w.isolated[0] = true;
    w.run_sync(6000, |_, _, _| true);
    w
}

/// n0's grants are held back `delay_ms` before it sees them; right after it acquires, it is
/// cut off, and n1 takes over once the promises run out.
fn delay_grants_then_isolate(knobs: BugKnobs, delay_ms: u64) -> World {
    let c = Cluster {
        ranks: vec![0, 1, 2],
        drifts: vec![0, 0, 0],
        origins: vec![0, 0, 0],
        ppm: 1000,
    };
    let mut w = World::new(&c, knobs);
    let held = |_: usize, to: usize, m: &Msg| !(to == 0 && matches!(m, Msg::Reply(_)));
    while !w
        .in_flight
        .iter()
        .any(|(_, to, m)| *to == 0 && matches!(m, Msg::Reply(_)))
    {
        w.run_sync(10, held);
    }
    // Less than the attempt time-out (300 ms), so the late grants still count.
    w.run_sync(delay_ms, held);
    w.run_sync(10, |_, _, _| true);
    assert!(w.holds(0), "n0 acquired with the late grants");
    w.isolated[0] = true;
    w.run_sync(6000, |_, _, _| true);
    w
}

#[test]
fn the_checker_catches_a_hold_time_that_ignores_drift() {
    let bug = BugKnobs::planted(Bug::IgnoreDrift);
    let caught = (0..20)
        .filter(|o| isolate_slow_holder(bug, o * 13).check().is_err())
        .count();
    assert!(caught > 0, "no schedule exposed the drift bug");
    for o in 0..20 {
        let w = isolate_slow_holder(BugKnobs::default(), o * 13);
        assert!(
            w.check().is_ok(),
            "the correct algorithm failed the same schedule: {}",
            w.check().unwrap_err()
        );
        assert!(w.holds(1) || w.holds(2), "the majority side took over");
    }
}

#[test]
fn the_checker_catches_a_lease_counted_from_the_grant() {
    let bug = BugKnobs::planted(Bug::LeaseFromGrant);
    assert!(delay_grants_then_isolate(bug, 250).check().is_err());
    let w = delay_grants_then_isolate(BugKnobs::default(), 250);
    assert!(w.check().is_ok(), "{}", w.check().unwrap_err());
    assert!(w.holds(1) || w.holds(2), "the majority side took over");
}
