//! Hostile values: arbitrary well-formed messages (any token, incarnation, rank, ID, lease
//! length, expiry) fed to both election state machines between honest traffic. Whatever they
//! hold, no machine panics or overflows (tests run with overflow checks on), and once the bad
//! sender stops, a leader is elected again within lease + max skew + 5 beats.

use leasehold::election::{AllcallElection, LeaseElection, Output, Publish};
use leasehold::wire::{
    AgentLoc, Heartbeat, Incarnation, LeaseRecover, LeaseRecovered, LeaseRelease, LeaseReply, LeaseRequest, LeaseView,
};
use leasehold::{Algorithm, ClusterState, MembershipCfg, Notice};
use proptest::prelude::*;
use std::time::Duration;
use time::OffsetDateTime;

const BEAT_MS: u64 = 100;
const LEASE_MS: u64 = 2000;
const SKEW_MS: u64 = 1000;
/// How soon after the bad sender stops a leader must hold, as the simulator judges liveness.
const BOUND_MS: u64 = LEASE_MS + SKEW_MS + 5 * BEAT_MS;

fn cfg(i: usize, n: usize, algorithm: Algorithm) -> MembershipCfg {
    let mut c = MembershipCfg::default();
    c.id = format!("n{i}");
    c.my_rank = i as i64;
    c.cluster_size = n;
    c.algorithm = algorithm;
    c.beat = Duration::from_millis(BEAT_MS);
    c.member_timeout = Duration::from_millis(5 * BEAT_MS);
    c.lease_time = Duration::from_millis(LEASE_MS);
    c.max_clock_skew = Duration::from_millis(SKEW_MS);
    c.initial_cluster_state = ClusterState::New;
    c
}

/// Any string: empty, short, a real member's ID, or 10 kB.
fn any_id() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9]{1,8}",
        (0..5usize).prop_map(|i| format!("n{i}")),
        Just("x".repeat(10 * 1024)),
    ]
}

/// Any u64, leaning on the edges.
fn any_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0..10u64,
        Just(u64::MAX),
        Just(1 << 53),
        Just((1 << 53) + 1),
        Just(1 << 63)
    ]
}

fn any_time() -> impl Strategy<Value = Option<OffsetDateTime>> {
    prop_oneof![
        Just(None),
        (-377_705_116_800i64..=253_402_300_799).prop_map(|s| OffsetDateTime::from_unix_timestamp(s).ok()),
    ]
}

fn any_loc() -> impl Strategy<Value = AgentLoc> {
    (any_id(), any::<i64>(), any_time()).prop_map(|(id, rank, t)| {
        let mut l = AgentLoc::new(id, rank);
        l.lease_expires = t;
        l
    })
}

fn any_inc() -> impl Strategy<Value = Incarnation> {
    (any_id(), any_u64(), any_u64()).prop_map(|(id, inc, run)| Incarnation { id, inc, run })
}

/// A hostile `lease` message.
#[derive(Debug, Clone)]
enum Bad {
    Hb(Heartbeat),
    Req(LeaseRequest),
    Reply(LeaseReply),
    Rel(LeaseRelease),
    Recover(LeaseRecover),
    Recovered(LeaseRecovered),
}

fn bad() -> impl Strategy<Value = Bad> {
    prop_oneof![
        (
            any_loc(),
            any_u64(),
            proptest::option::of((any_u64(), any_u64())),
            any_u64(),
            any_u64(),
            (any::<bool>(), any::<bool>()),
            (any_u64(), any_u64())
        )
            .prop_map(
                |(loc, inc, lease, max_token, config, (passive, waiting), (run, cluster_size))| Bad::Hb(Heartbeat {
                    loc,
                    inc,
                    run,
                    cluster_size,
                    lease: lease.map(|(token, remaining_ms)| LeaseView { token, remaining_ms }),
                    max_token,
                    config,
                    passive,
                    waiting,
                    quarantined: waiting && passive,
                })
            ),
        (any_inc(), any::<i64>(), any_u64(), any_u64(), any_u64(), any_u64()).prop_map(
            |(candidate, rank, token, attempt, config, cluster_size)| {
                Bad::Req(LeaseRequest {
                    candidate,
                    rank,
                    token,
                    attempt,
                    config,
                    cluster_size,
                })
            }
        ),
        (any_inc(), any_u64(), any_u64(), any::<bool>(), any_u64()).prop_map(
            |(granter, attempt, token, granted, max_token)| Bad::Reply(LeaseReply {
                granter,
                attempt,
                token,
                granted,
                max_token,
            })
        ),
        (any_inc(), any_u64()).prop_map(|(holder, token)| Bad::Rel(LeaseRelease { holder, token })),
        (any_inc(), any_u64()).prop_map(|(who, nonce)| Bad::Recover(LeaseRecover { who, nonce })),
        (any_inc(), any_u64(), any_u64(), any::<bool>()).prop_map(|(peer, nonce, max_token, authoritative)| {
            Bad::Recovered(LeaseRecovered {
                peer,
                nonce,
                max_token,
                authoritative,
            })
        }),
    ]
}

/// Honest `lease` nodes on a perfect network (every message delivered at the next step),
/// with clocks equal to true time.
struct LeaseCluster {
    sms: Vec<LeaseElection>,
    now: Duration,
    /// The last local time each node claimed a lease until.
    claimed_until: Vec<Option<Duration>>,
    last_claim_at: Option<Duration>,
}

impl LeaseCluster {
    /// `n` nodes; the last one restarts from a saved state, so it is recovering (waiting a
    /// lease and asking its peers) when the bad messages come.
    fn new(n: usize) -> Self {
        let sms = (0..n)
            .map(|i| {
                let mut c = cfg(i, n, Algorithm::Lease);
                let stored = (i == n - 1).then(|| {
                    c.initial_cluster_state = ClusterState::Existing;
                    leasehold::Durable {
                        incarnation: 3,
                        max_token: 0,
                        owner: None,
                        ..leasehold::Durable::default()
                    }
                });
                LeaseElection::new(&c, stored, Duration::ZERO, i as u64).0
            })
            .collect();
        LeaseCluster {
            sms,
            now: Duration::ZERO,
            claimed_until: vec![None; n],
            last_claim_at: None,
        }
    }

    /// Carries out node `i`'s outputs: every publish reaches every other node at once.
    fn apply(&mut self, i: usize, out: Vec<Output>) {
        let now = self.now;
        let n = self.sms.len();
        for o in out {
            match o {
                Output::Notice(Notice::Claim { until, .. }) => {
                    self.claimed_until[i] = Some(until);
                    self.last_claim_at = Some(now);
                }
                Output::Publish(p) => {
                    for j in (0..n).filter(|j| *j != i) {
                        let sm = &mut self.sms[j];
                        let more = match p.clone() {
                            Publish::Heartbeat(h) => sm.on_heartbeat(now, &h),
                            Publish::Request(r) => sm.on_request(now, r, i.to_string()),
                            Publish::Reply { to, reply } if to == j.to_string() => sm.on_reply(now, reply),
                            Publish::Release(r) => sm.on_release(now, r),
                            Publish::Recover(r) => sm.on_recover(now, r, i.to_string()),
                            Publish::Recovered { to, answer } if to == j.to_string() => sm.on_recovered(now, answer),
                            _ => Vec::new(),
                        };
                        self.apply(j, more);
                    }
                }
                _ => {}
            }
        }
    }

    fn step(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        for i in 0..self.sms.len() {
            let out = self.sms[i].tick(self.now);
            self.apply(i, out);
        }
    }

    fn feed(&mut self, to: usize, m: Bad) {
        let now = self.now;
        let sm = &mut self.sms[to];
        let out = match m {
            Bad::Hb(h) => sm.on_heartbeat(now, &h),
            Bad::Req(r) => sm.on_request(now, r, "_INBOX.bad".into()),
            Bad::Reply(r) => sm.on_reply(now, r),
            Bad::Rel(r) => sm.on_release(now, r),
            Bad::Recover(r) => sm.on_recover(now, r, "_INBOX.bad".into()),
            Bad::Recovered(r) => sm.on_recovered(now, r),
        };
        self.apply(to, out);
    }
}

/// Honest `allcall` nodes on a perfect network, wall clock = true time from a fixed epoch.
struct AllcallCluster {
    sms: Vec<AllcallElection>,
    now: Duration,
    last_claim_at: Option<Duration>,
}

fn wall(now: Duration) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_767_225_600).expect("a fixed epoch") + now
}

impl AllcallCluster {
    fn new(n: usize) -> Self {
        AllcallCluster {
            sms: (0..n)
                .map(|i| AllcallElection::new(&cfg(i, n, Algorithm::Allcall), Duration::ZERO).0)
                .collect(),
            now: Duration::ZERO,
            last_claim_at: None,
        }
    }

    fn apply(&mut self, out: Vec<Output>) {
        let n = self.sms.len();
        for o in out {
            match o {
                Output::Notice(Notice::Claim { .. }) => self.last_claim_at = Some(self.now),
                Output::Publish(Publish::Allcall(_)) => {
                    let pongs: Vec<Output> = (0..n).flat_map(|j| self.sms[j].on_allcall(Some("r".into()))).collect();
                    for p in pongs {
                        if let Output::Publish(Publish::Pong { loc, .. }) = p {
                            for sm in &mut self.sms {
                                sm.on_pong(loc.clone());
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn step(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        for i in 0..self.sms.len() {
            let out = self.sms[i].tick(self.now, wall(self.now));
            self.apply(out);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn hostile_lease_messages_neither_panic_nor_stop_elections(
        n in 3usize..=5,
        bad in proptest::collection::vec((0usize..5, bad()), 1..60),
    ) {
        let mut c = LeaseCluster::new(n);
        // The bad messages start while the last node is still recovering.
        c.step(BEAT_MS);
        for (to, m) in bad {
            c.feed(to % n, m);
            c.step(BEAT_MS / 2);
        }
        let stopped = c.now;
        for _ in 0..(BOUND_MS / 10) {
            c.step(10);
        }
        let holds = c.claimed_until.iter().flatten().any(|u| *u > c.now);
        prop_assert!(
            c.last_claim_at.is_some_and(|t| t >= stopped) || holds,
            "no leader within {BOUND_MS} ms after the bad sender stopped"
        );
        prop_assert!(c.sms.iter().all(|s| !s.recovering()), "every node recovered once the bad sender stopped");
    }

    #[test]
    fn hostile_allcall_answers_neither_panic_nor_stop_elections(
        n in 2usize..=4,
        bad in proptest::collection::vec((0usize..4, any_loc()), 1..60),
    ) {
        let mut c = AllcallCluster::new(n);
        for _ in 0..20 {
            c.step(BEAT_MS);
        }
        for (to, loc) in bad {
            c.sms[to % n].on_pong(loc);
            c.step(BEAT_MS / 2);
        }
        let stopped = c.now;
        for _ in 0..(BOUND_MS / 10) {
            c.step(10);
        }
        prop_assert!(
            c.last_claim_at.is_some_and(|t| t > stopped),
            "no allcall leader claiming within {BOUND_MS} ms after the bad sender stopped"
        );
    }
}

/// The proptest has teeth: a forged heartbeat with a token near 2^64, accepted by the planted
/// `unchecked_ranges` bug, stops elections for good.
#[test]
fn with_unchecked_ranges_one_forged_heartbeat_stops_elections_for_good() {
    let forged = Bad::Hb(Heartbeat {
        loc: AgentLoc::new("forger", 0),
        inc: 1,
        run: 1,
        cluster_size: 0,
        lease: None,
        max_token: u64::MAX,
        config: 0,
        passive: false,
        waiting: false,
        quarantined: false,
    });
    let run = |bug: bool| {
        let mut c = LeaseCluster::new(3);
        if bug {
            for (i, sm) in c.sms.iter_mut().enumerate() {
                let mut k = cfg(i, 3, Algorithm::Lease);
                k.bug_knobs = leasehold::BugKnobs::planted(leasehold::Bug::UncheckedRanges);
                *sm = LeaseElection::new(&k, None, Duration::ZERO, i as u64).0;
            }
        }
        // Nobody holds yet: every node hears the forgery before the first campaign.
        for i in 0..3 {
            c.feed(i, forged.clone());
        }
        for _ in 0..(BOUND_MS / 10) * 3 {
            c.step(10);
        }
        c.last_claim_at.is_some()
    };
    assert!(run(false), "range checks drop the forgery and a leader is elected");
    assert!(
        !run(true),
        "without range checks the token wraps and no leader is ever elected"
    );
}

/// Found by the proptest above: four forged requests, two of them under made-up names and
/// one under a member's name, all with other settings and a token near the limit, made honest
/// agents believe that token, gossip it and stop electing for good (no leader again). Only
/// live members with our settings count as witnesses of a token jump now.
#[test]
fn forged_requests_under_any_name_with_other_settings_never_poison_the_token() {
    let req = |id: &str, inc: u64, rank: i64, token: u64, config: u64| {
        Bad::Req(LeaseRequest {
            candidate: Incarnation {
                id: id.into(),
                inc,
                run: 0,
            },
            rank,
            token,
            attempt: 1,
            config,
            cluster_size: 3,
        })
    };
    let jump = 1u64 << 53;
    let bad = [
        (0, req("0", jump, 0, jump, 0)),
        (0, req("", 0, 594_899_586, 9, jump)),
        (1, req("37svm", jump, i64::MIN / 2, jump, 2)),
        (0, req("n2", jump, i64::MIN / 3, jump, jump)),
    ];
    let mut c = LeaseCluster::new(3);
    c.step(BEAT_MS);
    for (to, m) in bad {
        c.feed(to, m);
        c.step(BEAT_MS / 2);
    }
    let stopped = c.now;
    for _ in 0..(BOUND_MS / 10) {
        c.step(10);
    }
    assert!(
        c.last_claim_at.is_some_and(|t| t >= stopped),
        "a leader within {BOUND_MS} ms after the forged requests"
    );
    assert!(
        c.sms.iter().all(|s| s.rejected() < 10),
        "honest agents do not reject each other"
    );
}
