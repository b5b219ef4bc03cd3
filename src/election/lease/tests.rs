use super::campaign::too_small;
use super::recovery::recovery_need;
use super::*;
use crate::election::Notice;

fn cfg(n: usize, f: Option<usize>) -> MembershipCfg {
    let mut cfg = MembershipCfg::default();
    cfg.id = "me".into();
    cfg.cluster_size = n;
    cfg.state_loss_tolerance = f;
    cfg
}

/// `recovery_need`, exhaustively for clusters of up to 7 agents and every tolerance.
/// Agent 0 restarts, its own state rolled back (it looks whole) or known lost. For every
/// majority M that granted a token, every set of other agents whose files were rolled
/// back (they answer, stale) that keeps the count, the restarting agent included, within
/// F, every set of other agents that know they lost their files (they do not answer) and
/// every set A of `need` answers from the rest: A includes a member of M whose file is
/// intact (a witness), or no such A exists and the start waits. And with one answer fewer
/// some choice misses every witness, so the rule asks for no more than it must.
#[test]
fn the_recovery_rule_is_exact_for_every_small_cluster() {
    let ones = |x: u32| x.count_ones() as usize;
    for n in 1..=7usize {
        let q = n / 2 + 1;
        let others = ((1u32 << n) - 1) & !1;
        let subsets = |of: u32| (0..1u32 << n).filter(move |s| s & !of == 0);
        for f in 0..=n / 2 {
            for lost in [false, true] {
                let need = recovery_need(&LeaseTiming::new(&cfg(n, Some(f))), lost);
                let f = if lost { f.max(1) } else { f };
                if f == 0 {
                    assert_eq!(need, 0, "no loss tolerated: every file is trusted");
                    continue;
                }
                // Some majority, rolled-back and lost sets, and `k` answers that miss
                // every witness.
                let misses = |k: usize, any_lost: bool| {
                    (0..1u32 << n).filter(|m| ones(*m) == q).any(|m| {
                        subsets(others).filter(|u| ones(*u) < f).any(|rolled| {
                            let lost_sets: Vec<u32> = if any_lost {
                                subsets(others & !rolled).collect()
                            } else {
                                vec![0]
                            };
                            lost_sets.into_iter().any(|known| {
                                let witnesses = m & others & !rolled & !known;
                                subsets(others & !known)
                                    .filter(|a| ones(*a) == k)
                                    .any(|a| a & witnesses == 0)
                            })
                        })
                    })
                };
                assert!(
                    !misses(need, true),
                    "n={n} f={f}: {need} answers can miss every witness"
                );
                assert!(misses(need - 1, false), "n={n} f={f}: {} answers would do", need - 1);
            }
        }
    }
}

#[test]
fn a_lone_agent_that_lost_its_file_waits_for_good_and_says_what_for() {
    let c = cfg(1, None);
    let (mut sm, _) = LeaseElection::new(&c, None, Duration::ZERO, 3);
    let mut now = Duration::ZERO;
    let mut waits = Vec::new();
    while now < Duration::from_secs(60) {
        for o in sm.tick(now) {
            if let Output::Notice(n @ Notice::WaitingForRecovery { .. }) = o {
                waits.push(n);
            }
        }
        assert!(sm.held(now).is_none(), "no token 1 again at {now:?}");
        now = sm.next_wakeup().max(now + Duration::from_millis(1));
    }
    assert!(sm.recovering());
    assert_eq!(waits.len(), 12, "said every 5 s: {waits:?}");
    assert_eq!(
        waits[0],
        Notice::WaitingForRecovery {
            answered: Vec::new(),
            need: 1,
            lost_state: true
        }
    );
    // With its file it needs no answers (a lone agent tolerates no loss): it leads after
    // one lease of quarantine, above the token it kept.
    let kept = Durable {
        incarnation: 1,
        max_token: 4,
        ..Durable::default()
    };
    let (mut sm, _) = LeaseElection::new(&c, Some(kept), Duration::ZERO, 3);
    assert!(!sm.recovering());
    let mut now = Duration::ZERO;
    while sm.held(now).is_none() {
        now = sm.next_wakeup().max(now + Duration::from_millis(1));
        sm.tick(now);
        assert!(
            now < c.lease_time + Duration::from_secs(1),
            "it leads after its quarantine"
        );
    }
    assert_eq!(sm.held(now).map(|h| h.0), Some(5));
}

#[test]
fn a_file_written_while_waiting_counts_as_lost_but_keeps_its_incarnation() {
    let stored = Durable {
        incarnation: 4,
        max_token: 0,
        recovering: true,
        ..Durable::default()
    };
    let (sm, out) = LeaseElection::new(&cfg(3, None), Some(stored), Duration::ZERO, 1);
    assert_eq!(sm.me().inc, 5, "incarnations still grow");
    assert!(
        sm.recovering() && sm.lost_state && !sm.whole,
        "not whole: it waits, and its answers do not count"
    );
    match &out[0] {
        Output::Persist(d) => assert!(d.recovering, "what it writes while waiting is marked too"),
        o => panic!("first output {o:?}"),
    }
    // The planted bug trusts it.
    let mut c = cfg(3, None);
    c.bug_knobs = BugKnobs::planted(Bug::WholeWhileWaiting);
    let stored = Durable {
        incarnation: 4,
        recovering: true,
        ..Durable::default()
    };
    let (sm, _) = LeaseElection::new(&c, Some(stored), Duration::ZERO, 1);
    assert!(sm.whole);
}

/// A lone agent of a brand-new cluster, holding its lease.
fn holder(c: &MembershipCfg) -> (LeaseElection, Duration) {
    let mut c = c.clone();
    c.initial_cluster_state = ClusterState::New;
    let (mut sm, _) = LeaseElection::new(&c, None, Duration::ZERO, 7);
    let mut now = Duration::ZERO;
    while sm.held(now).is_none() {
        now = sm.next_wakeup().max(now + Duration::from_millis(1));
        sm.tick(now);
        assert!(now < Duration::from_secs(5), "a lone agent leads");
    }
    (sm, now)
}

#[test]
fn another_process_with_our_id_makes_us_give_up_and_step_aside_while_it_is_heard() {
    let c = cfg(1, None);
    let (mut sm, now) = holder(&c);
    let mut hb = sm.heartbeat(now);
    // Our own heartbeat, echoed back, and an older run's: nothing.
    assert!(sm.on_heartbeat(now, &hb).is_empty());
    hb.run ^= 1;
    hb.inc -= 1;
    assert!(sm.on_heartbeat(now, &hb).is_empty(), "a late message from an older run");
    assert!(sm.held(now).is_some());
    // The same incarnation with another run ID: a second process.
    hb.inc += 1;
    let out = sm.on_heartbeat(now, &hb);
    assert!(out.contains(&Output::Notice(Notice::DuplicateId {
        inc: hb.inc,
        run: hb.run
    })));
    assert!(out.contains(&Output::Notice(Notice::ClaimEnded { at: now })));
    assert!(sm.held(now).is_none(), "it gave its lease up");
    assert!(sm.heartbeat(now).passive, "and says it does not campaign");
    assert!(sm.on_heartbeat(now, &hb).is_empty(), "said once while it is heard");
    let quiet = now + c.member_timeout;
    assert!(!sm.heartbeat(quiet).passive, "gone quiet: it may act again");
}

/// A process started from a copy of another's state file is one incarnation above the
/// original, which it then hears as an older incarnation. Heard a member timeout after its
/// start, the original is running now, not a late message: taken for one, it would count as a
/// granter apart from the copy, and each could win a majority under one token (the model
/// checker's schedule: clone, cut the clone off, heal).
#[test]
fn an_older_incarnation_still_heard_a_member_timeout_after_our_start_is_a_twin() {
    let c = cfg(1, None);
    let (mut sm, now) = holder(&c);
    let mut hb = sm.heartbeat(now);
    hb.run ^= 1;
    hb.inc -= 1;
    let later = (sm.started + c.member_timeout).max(now);
    let mut old = sm.clone();
    old.knobs = BugKnobs::from(vec![Bug::OlderTwinIsLate]);
    assert!(old.on_heartbeat(later, &hb).is_empty(), "the old rule: a late message");
    let out = sm.on_heartbeat(later, &hb);
    assert!(
        out.contains(&Output::Notice(Notice::DuplicateId {
            inc: hb.inc,
            run: hb.run
        })),
        "{out:?}"
    );
}

#[test]
fn a_majority_of_a_larger_cluster_is_evidence_kept_in_the_state_until_the_settings_change() {
    let c = cfg(1, None);
    let (mut sm, now) = holder(&c);
    let peer = |id: &str| Heartbeat {
        loc: AgentLoc::new(id, 9),
        inc: 1,
        run: 3,
        cluster_size: 5,
        lease: None,
        max_token: 0,
        config: 42,
        passive: false,
        waiting: false,
        quarantined: false,
    };
    let out = sm.on_heartbeat(now, &peer("a"));
    assert!(
        !out.iter().any(|o| matches!(o, Output::Persist(_))),
        "one agent is not evidence"
    );
    let out = sm.on_heartbeat(now, &peer("b"));
    assert!(
        !out.iter().any(|o| matches!(o, Output::Persist(_))),
        "two is not a majority of five"
    );
    let out: Vec<Output> = sm.on_heartbeat(now, &peer("c"));
    let saved = out.iter().find_map(|o| match o {
        Output::Persist(d) => d.larger_cluster,
        _ => None,
    });
    assert_eq!(
        saved.map(|l| l.cluster_size),
        Some(5),
        "three of five: kept in the state"
    );
    assert!(out.contains(&Output::Notice(Notice::Undersized {
        cluster_size: 1,
        seen: 5
    })));
    assert!(sm.held(now).is_none(), "and the lease it held alone is given up");
    assert_eq!(sm.quorum(), 3);
    // A restart keeps it; other settings forget it.
    let state = sm.durable.clone();
    let (again, _) = LeaseElection::new(&c, Some(state.clone()), now, 8);
    assert_eq!(again.quorum(), 3, "kept across a restart");
    let mut other = c.clone();
    other.lease_time *= 2;
    let (fresh, _) = LeaseElection::new(&other, Some(state), now, 8);
    assert_eq!(
        fresh.quorum(),
        1,
        "the settings changed: the evidence was about the old ones"
    );
}

#[test]
fn a_members_location_follows_its_heartbeats_without_their_lease_field() {
    let mut cfg = MembershipCfg::default();
    cfg.id = "me".into();
    cfg.cluster_size = 3;
    let now = Duration::from_secs(1);
    let (mut sm, _) = LeaseElection::new(&cfg, None, now, 1);
    let mut hb = Heartbeat {
        loc: AgentLoc::new("peer", 1),
        inc: 1,
        run: 1,
        cluster_size: 3,
        lease: None,
        max_token: 0,
        config: sm.config,
        passive: false,
        waiting: false,
        quarantined: false,
    };
    hb.loc.nats_host = "10.0.0.1".into();
    sm.on_heartbeat(now, &hb);
    assert_eq!(sm.live_members(now)[0].nats_host, "10.0.0.1");
    // The same incarnation moves; a heartbeat that says so updates the member.
    hb.loc.nats_host = "10.0.0.2".into();
    hb.loc.lease_expires = Some(time::OffsetDateTime::UNIX_EPOCH);
    sm.on_heartbeat(now, &hb);
    let peer = &sm.live_members(now)[0];
    assert_eq!(peer.nats_host, "10.0.0.2");
    assert_eq!(peer.lease_expires, None, "members are kept without a lease");
    // Only the lease field differs: nothing to copy, and still none kept.
    hb.loc.lease_expires = Some(time::OffsetDateTime::UNIX_EPOCH + time::Duration::SECOND);
    sm.on_heartbeat(now, &hb);
    assert_eq!(
        sm.live_members(now),
        vec![AgentLoc {
            lease_expires: None,
            ..hb.loc.clone()
        }]
    );
}

#[test]
fn a_stale_heartbeat_never_moves_the_reported_leader_or_token_backwards() {
    let run = |bugs: BugKnobs| {
        let mut c = MembershipCfg::default();
        c.id = "n2".into();
        c.cluster_size = 3;
        c.bug_knobs = bugs;
        let now = Duration::from_secs(1);
        let (mut sm, _) = LeaseElection::new(&c, None, now, 1);
        let config = sm.config;
        let beat = |id: &str, token: u64| Heartbeat {
            loc: AgentLoc::new(id, 1),
            inc: 1,
            run: 1,
            cluster_size: 3,
            lease: Some(crate::wire::LeaseView {
                token,
                remaining_ms: 1_500,
            }),
            max_token: token,
            config,
            passive: false,
            waiting: false,
            quarantined: false,
        };
        let mut tokens = Vec::new();
        let mut seen = |out: Vec<Output>| {
            tokens.extend(out.into_iter().filter_map(|o| match o {
                Output::Notice(Notice::Leader { token: Some(t), .. }) => Some(t),
                _ => None,
            }))
        };
        seen(sm.on_heartbeat(now, &beat("n0", 1)));
        seen(sm.on_heartbeat(now + Duration::from_millis(500), &beat("n1", 2)));
        // n0's old heartbeat, flushed from its reconnect buffer.
        seen(sm.on_heartbeat(now + Duration::from_millis(600), &beat("n0", 1)));
        seen(sm.on_heartbeat(now + Duration::from_millis(700), &beat("n1", 2)));
        tokens
    };
    assert_eq!(run(BugKnobs::default()), vec![1, 2]);
    let old = run(BugKnobs::planted(Bug::TrustStaleHeartbeats));
    assert!(
        old.windows(2).any(|w| w[1] < w[0]),
        "the old behaviour goes back to token 1: {old:?}"
    );
}

#[test]
fn a_disconnected_agent_burns_no_token_and_listens_before_it_campaigns_again() {
    use crate::network::Connection;
    let run = |bugs: BugKnobs| {
        let mut c = cfg(3, None);
        c.initial_cluster_state = ClusterState::New;
        c.bug_knobs = bugs;
        let (mut sm, _) = LeaseElection::new(&c, None, Duration::ZERO, 7);
        let t = |s: u64| Duration::from_millis(s);
        // A worse-ranked peer it hears (whether it could, cut off, is not the point here).
        let peer = Heartbeat {
            loc: AgentLoc::new("peer".to_string(), 9),
            inc: 1,
            run: 1,
            cluster_size: 3,
            lease: None,
            max_token: 0,
            config: sm.config,
            passive: false,
            waiting: false,
            quarantined: false,
        };
        let start = sm.known_max();
        sm.connection(t(0), Connection::Disconnected);
        // Ten seconds cut off: every request it makes is one token burned.
        let mut requests = 0;
        let mut now = Duration::ZERO;
        while now < t(10_000) {
            now = sm.next_wakeup().max(now + t(1));
            sm.on_heartbeat(now, &peer);
            requests += sm
                .tick(now)
                .iter()
                .filter(|o| matches!(o, Output::Publish(Publish::Request(_))))
                .count();
        }
        let burned = sm.known_max() - start;
        sm.connection(now, Connection::Reconnected);
        let back = now;
        let mut first = None;
        while first.is_none() && now < back + t(10_000) {
            now = sm.next_wakeup().max(now + t(1));
            sm.on_heartbeat(now, &peer);
            if sm
                .tick(now)
                .iter()
                .any(|o| matches!(o, Output::Publish(Publish::Request(_))))
            {
                first = Some(now - back);
            }
        }
        (requests, first, burned)
    };
    let (requests, first, max) = run(BugKnobs::default());
    assert_eq!((requests, max), (0, 0), "no campaign, no token burned while cut off");
    let member_timeout = MembershipCfg::default().member_timeout;
    assert!(
        first.is_some_and(|d| d >= member_timeout),
        "it campaigns again only after listening for a member timeout: {first:?}"
    );
    let (requests, _, max) = run(BugKnobs::planted(Bug::CampaignWhileDisconnected));
    assert!(
        requests > 10 && max >= 5,
        "the old behaviour: {requests} requests, {max} tokens burned"
    );
}

#[test]
fn an_agent_that_cannot_campaign_yet_says_so_so_no_holder_steps_aside_for_it() {
    use crate::network::Connection;
    let c = cfg(1, None);
    let stored = Durable {
        incarnation: 3,
        max_token: 5,
        ..Durable::default()
    };
    let t = |ms: u64| Duration::from_millis(ms);
    // A restart: quarantined for a promise period, which its heartbeats say.
    let (sm, _) = LeaseElection::new(&c, Some(stored), t(0), 7);
    assert!(sm.heartbeat(t(1)).waiting, "quarantined: cannot campaign yet");
    assert!(!sm.heartbeat(t(1) + c.lease_time).waiting, "settled");
    // Disconnected, then listening for a member timeout after the reconnect.
    let (mut sm, now) = holder(&c);
    assert!(!sm.heartbeat(now).waiting);
    sm.connection(now, Connection::Disconnected);
    assert!(sm.heartbeat(now).waiting, "disconnected: cannot campaign");
    sm.connection(now, Connection::Reconnected);
    assert!(sm.heartbeat(now).waiting, "listening first after the reconnect");
    assert!(!sm.heartbeat(now + c.member_timeout).waiting, "then ready again");
    // A holder keeps renewing while a better-ranked member is waiting, and steps aside
    // once it is ready (or at once, with the old behaviour planted).
    let renews_beside = |bugs: BugKnobs, waiting: bool| {
        let mut c1 = cfg(1, None);
        c1.my_rank = 5;
        c1.bug_knobs = bugs;
        let (mut sm, mut now) = holder(&c1);
        let better = Heartbeat {
            loc: AgentLoc::new("better".to_string(), 0),
            inc: 1,
            run: 1,
            cluster_size: 1,
            lease: None,
            max_token: 0,
            config: sm.config,
            passive: false,
            waiting,
            quarantined: false,
        };
        let mut renewed = false;
        let end = now + c1.lease_time;
        while now < end {
            now = sm.next_wakeup().max(now + t(1));
            sm.on_heartbeat(now, &better);
            renewed |= sm
                .tick(now)
                .iter()
                .any(|o| matches!(o, Output::Publish(Publish::Request(_))));
        }
        renewed
    };
    assert!(
        renews_beside(BugKnobs::default(), true),
        "renews beside a waiting better agent"
    );
    assert!(
        !renews_beside(BugKnobs::default(), false),
        "steps aside for a ready one"
    );
    assert!(
        !renews_beside(BugKnobs::planted(Bug::DeferToUnready), true),
        "the old behaviour steps aside for a waiting one too"
    );
}

/// `bug` planted if `on`, else none.
fn planted_if(on: bool, bug: Bug) -> BugKnobs {
    if on {
        BugKnobs::planted(bug)
    } else {
        BugKnobs::default()
    }
}

/// A brand-new agent "me" of a cluster of three, ranked `rank`, with `bugs` planted.
fn of_three(rank: i64, bugs: BugKnobs) -> LeaseElection {
    let mut c = cfg(3, Some(0));
    c.initial_cluster_state = ClusterState::New;
    c.my_rank = rank;
    c.bug_knobs = bugs;
    c.lease_time = Duration::from_secs(2);
    LeaseElection::new(&c, None, Duration::ZERO, 7).0
}

/// A heartbeat from peer `id` (incarnation 1, run 1) with `sm`'s settings.
fn beat_of(sm: &LeaseElection, id: &str, rank: i64, waiting: bool) -> Heartbeat {
    Heartbeat {
        loc: AgentLoc::new(id.to_string(), rank),
        inc: 1,
        run: 1,
        cluster_size: 3,
        lease: None,
        max_token: 0,
        config: sm.config,
        passive: false,
        waiting,
        quarantined: false,
    }
}

/// Steps `sm` from `now` until `done` says so (or `until`), hearing `peers` at each step
/// and, when `answer` is set, answering each request from each peer at once with it.
/// Returns the time reached and every output, in order.
fn drive(
    sm: &mut LeaseElection,
    mut now: Duration,
    until: Duration,
    peers: &[Heartbeat],
    answer: Option<bool>,
    done: impl Fn(&LeaseElection, Duration) -> bool,
) -> (Duration, Vec<Output>) {
    let mut all = Vec::new();
    while now < until && !done(sm, now) {
        now = sm.next_wakeup().max(now + Duration::from_millis(1));
        for p in peers {
            all.extend(sm.on_heartbeat(now, p));
        }
        let out = sm.tick(now);
        for o in &out {
            if let (Output::Publish(Publish::Request(r)), Some(granted)) = (o, answer) {
                for p in peers {
                    let reply = LeaseReply {
                        granter: Incarnation {
                            id: p.loc.id.clone(),
                            inc: 1,
                            run: 1,
                        },
                        attempt: r.attempt,
                        token: r.token,
                        granted,
                        max_token: r.token,
                    };
                    all.extend(sm.on_reply(now, reply));
                }
            }
        }
        all.extend(out);
    }
    (now, all)
}

/// A request from peer `id` for `token`.
fn request_from(sm: &LeaseElection, id: &str, rank: i64, token: u64) -> LeaseRequest {
    LeaseRequest {
        candidate: Incarnation {
            id: id.to_string(),
            inc: 1,
            run: 1,
        },
        rank,
        token,
        attempt: 99,
        config: sm.config,
        cluster_size: 3,
    }
}

fn granted(out: &[Output]) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::Publish(Publish::Reply { reply, .. }) if reply.granted))
}

#[test]
fn a_resign_hands_back_the_promise_to_itself_so_another_can_win_at_once() {
    let ms = Duration::from_millis;
    let mut sm = of_three(0, BugKnobs::default());
    // Only "b" is up: any lease needs both its promise and this agent's.
    let peers = [beat_of(&sm, "b", 1, false)];
    let (now, _) = drive(&mut sm, ms(0), ms(5000), &peers, Some(true), |sm, now| {
        sm.held(now).is_some()
    });
    let (token, _) = sm.held(now).expect("leads with b's promise");
    let out = sm.resign(now);
    assert_eq!(out.first(), Some(&Output::Notice(Notice::ClaimEnded { at: now })));
    // Without its own release coming back (no echo, or lost), b is promised at once.
    let out = sm.on_request(now + ms(5), request_from(&sm, "b", 1, token + 1), "inbox".into());
    assert!(granted(&out), "b is promised at once: {out:?}");
}

#[test]
fn a_holder_hands_over_to_a_ready_better_agent_at_a_renewal_by_releasing_its_lease_first() {
    let ms = Duration::from_millis;
    for silent in [false, true] {
        let bugs = planted_if(silent, Bug::StepAsideSilently);
        let mut sm = of_three(5, bugs);
        let b = beat_of(&sm, "b", 6, false);
        let (now, _) = drive(
            &mut sm,
            ms(0),
            ms(5000),
            std::slice::from_ref(&b),
            Some(true),
            |sm, now| sm.held(now).is_some(),
        );
        let (token, until) = sm.held(now).expect("leads with b's promise");
        // A better-ranked agent, ready: at the next renewal this agent steps aside.
        let better = [b, beat_of(&sm, "a", 0, false)];
        let mut at = now;
        let mut ended = None;
        while at < until + ms(1) && ended.is_none() {
            at = sm.next_wakeup().max(at + ms(1));
            for p in &better {
                sm.on_heartbeat(at, p);
            }
            let out = sm.tick(at);
            if out.contains(&Output::Notice(Notice::ClaimEnded { at })) {
                ended = Some(out);
            }
        }
        if silent {
            assert!(ended.is_none(), "the old way lets the lease run out");
            assert!(sm.held(at).is_none() && at >= until);
            continue;
        }
        let out = ended.expect("the claim ends at a renewal");
        assert!(at < until, "released before it ran out");
        // First in its step: a publish may wait for the network, and the claim must have
        // ended by the time its end is seen.
        assert_eq!(out.first(), Some(&Output::Notice(Notice::ClaimEnded { at })));
        assert!(
            matches!(out.get(1), Some(Output::Publish(Publish::Release(r))) if r.token == token),
            "the release follows the end of the claim: {out:?}"
        );
        let out = sm.on_request(at, request_from(&sm, "a", 0, token + 1), "inbox".into());
        assert!(granted(&out), "and its own promise is handed back");
    }
}

#[test]
fn campaigns_that_hear_too_few_answers_in_time_wait_longer_then_say_so_until_a_probe_is_answered_in_time() {
    let ms = Duration::from_millis;
    for planted in [false, true] {
        let bugs = planted_if(planted, Bug::DeferToSlow);
        let mut sm = of_three(0, bugs);
        let t = sm.timing().clone();
        let peers = [beat_of(&sm, "b", 1, false), beat_of(&sm, "c", 2, false)];
        // No answer ever comes in time (the others are far away).
        let (now, out) = drive(&mut sm, ms(0), ms(20_000), &peers, None, |sm, now| {
            now > ms(0) && sm.heartbeat(now).waiting
        });
        let attempts = out
            .iter()
            .filter(|o| matches!(o, Output::Publish(Publish::Request(_))))
            .count();
        if planted {
            assert!(!sm.heartbeat(now).waiting, "the old agent never says it is slow");
            assert_eq!(sm.attempt_wait, t.attempt_timeout, "and always waits the same");
            continue;
        }
        assert!(now < ms(5_000), "said within a few attempts ({attempts} requests)");
        assert_eq!(sm.attempt_wait, t.hold / 2, "the last attempt waited half a hold");
        // A slow agent leaves the campaign to the others while one of them is ready.
        assert!(!sm.may_campaign(now));
        // It probes once a promise period; an answer from a majority in time ends it.
        let (now, out) = drive(&mut sm, now, now + t.promise * 2, &peers, None, |_, _| false);
        let nonce = out
            .iter()
            .rev()
            .find_map(|o| match o {
                Output::Publish(Publish::Recover(r)) => Some(r.nonce),
                _ => None,
            })
            .expect("a probe");
        let answer = |id: &str, nonce: u64| LeaseRecovered {
            peer: Incarnation {
                id: id.into(),
                inc: 1,
                run: 1,
            },
            nonce,
            max_token: 0,
            authoritative: true,
        };
        sm.on_recovered(now, answer("b", nonce ^ 1));
        assert!(
            sm.heartbeat(now).waiting,
            "an answer to another question does not count"
        );
        sm.on_recovered(now + ms(20), answer("b", nonce));
        assert!(!sm.heartbeat(now + ms(20)).waiting, "measured again: no longer slow");
        assert_eq!(sm.attempt_wait, t.attempt_timeout, "and it waits as before");
    }
}

#[test]
fn a_granter_promises_only_candidates_configured_for_a_cluster_at_least_as_large_as_its_own() {
    let ms = Duration::from_millis;
    // Ranked below both its peers, so rank refuses no one here.
    let mut sm = of_three(5, BugKnobs::default());
    let peers = [beat_of(&sm, "b", 1, false), beat_of(&sm, "c", 2, false)];
    // Settled and hearing its peers, promised to no one (it waits before campaigning).
    drive(&mut sm, ms(0), ms(100), &peers, None, |_, _| false);
    let ask = |sm: &mut LeaseElection, size: u64, token: u64| {
        let mut req = request_from(sm, "b", 1, token);
        req.cluster_size = size;
        let out = sm.on_request(ms(100), req, "inbox".into());
        granted(&out)
    };
    assert!(
        !ask(&mut sm, 2, 1),
        "configured for two: its majority could be too small"
    );
    assert!(ask(&mut sm, 5, 1), "configured for five: promised");
    assert!(ask(&mut sm, 3, 1), "the same size: promised (a renewal of the same)");
    let mut req = request_from(&sm, "b", 1, 2);
    req.cluster_size = 2048;
    let before = sm.rejected();
    assert!(!granted(&sm.on_request(ms(100), req, "inbox".into())));
    assert_eq!(sm.rejected(), before + 1, "a size out of range is counted and dropped");
}

#[test]
fn an_agent_whose_peers_were_set_for_a_larger_cluster_waits_and_is_not_deferred_to() {
    let ms = Duration::from_millis;
    // The best-ranked agent, still configured for three, among two set for five (and one
    // more member): it cannot win (they refuse it), so it says it waits, and campaigns not.
    let mut sm = of_three(0, BugKnobs::default());
    let five = |id: &str, rank: i64| {
        let mut b = beat_of(&sm, id, rank, false);
        b.cluster_size = 5;
        b
    };
    let peers = [five("b", 1), five("c", 2), five("d", 3)];
    let (now, out) = drive(&mut sm, ms(0), ms(3000), &peers, None, |_, _| false);
    assert!(sm.heartbeat(now).waiting, "cannot win: says it is waiting");
    assert!(
        !out.iter().any(|o| matches!(o, Output::Publish(Publish::Request(_)))),
        "and burns no token"
    );
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Notice(Notice::SizeMismatch { theirs: 5, .. }))));
    // It still promises them, and a ready one ranked below it is not refused for its rank.
    let mut req = request_from(&sm, "b", 1, 1);
    req.cluster_size = 5;
    assert!(granted(&sm.on_request(now, req, "inbox".into())));
}

#[test]
fn evidence_of_a_larger_cluster_is_forgotten_once_the_whole_smaller_cluster_is_live_and_no_one_says_more() {
    let ms = Duration::from_millis;
    for size in [3usize, 2] {
        let mut c = cfg(size, Some(0));
        c.initial_cluster_state = ClusterState::New;
        let (mut sm, _) = LeaseElection::new(&c, None, Duration::ZERO, 7);
        let beat = |sm: &LeaseElection, id: &str, n: u64| {
            let mut b = beat_of(sm, id, 9, false);
            b.cluster_size = n;
            b
        };
        // Three of five say five: evidence.
        let larger = [beat(&sm, "x", 5), beat(&sm, "y", 5), beat(&sm, "z", 5)];
        drive(&mut sm, ms(0), ms(100), &larger, None, |_, _| false);
        assert_eq!(sm.evidenced_size(), 5);
        // Those go quiet (made smaller, or cut off); the whole smaller cluster is heard.
        let later = ms(100) + c.member_timeout * 2;
        let own: Vec<Heartbeat> = (1..size).map(|k| beat(&sm, &format!("p{k}"), size as u64)).collect();
        sm.tick(later);
        let mut out = Vec::new();
        for b in &own {
            out.extend(sm.on_heartbeat(later, b));
        }
        if size == 2 {
            assert_eq!(sm.evidenced_size(), 5, "a cluster of two never forgets on its own");
            continue;
        }
        assert_eq!(sm.evidenced_size(), 0, "forgotten");
        assert!(out
            .iter()
            .any(|o| matches!(o, Output::Persist(d) if d.larger_cluster.is_none())));
        assert_eq!(sm.quorum(), 2);
        // One who still says five keeps it.
        let (mut again, _) = LeaseElection::new(&c, None, Duration::ZERO, 7);
        drive(&mut again, ms(0), ms(100), &larger, None, |_, _| false);
        let mut with_one = own.clone();
        with_one.push(beat(&again, "x", 5));
        for b in &with_one {
            again.on_heartbeat(ms(101), b);
        }
        assert_eq!(again.evidenced_size(), 5, "someone still says five");
    }
}

#[test]
fn a_failed_campaign_releases_its_promises_but_a_failed_renewal_keeps_them() {
    let ms = Duration::from_millis;
    let mut sm = of_three(0, BugKnobs::default());
    let peers = [beat_of(&sm, "b", 1, false), beat_of(&sm, "c", 2, false)];
    // Refused by both peers: a majority can no longer be reached.
    let (now, out) = drive(&mut sm, ms(0), ms(3000), &peers, Some(false), |sm, _| {
        sm.attempt.is_none() && sm.promise.is_none() && sm.known_max() > 0
    });
    let token = out
        .iter()
        .find_map(|o| match o {
            Output::Publish(Publish::Request(r)) => Some(r.token),
            _ => None,
        })
        .expect("it campaigned");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Publish(Publish::Release(r)) if r.token == token)),
        "the promises of a failed campaign are released"
    );
    assert!(sm.held(now).is_none());
    assert!(sm.promise.is_none(), "its promise to itself too");
    // A holder whose renewal is refused keeps them: its lease stands on them.
    let mut holder = of_three(0, BugKnobs::default());
    let (now, _) = drive(&mut holder, ms(0), ms(3000), &peers, Some(true), |sm, now| {
        sm.held(now).is_some()
    });
    let (_, until) = holder.held(now).expect("leads");
    let (_, out) = drive(&mut holder, now, until - ms(1), &peers, Some(false), |_, _| false);
    assert!(
        !out.iter().any(|o| matches!(o, Output::Publish(Publish::Release(_)))),
        "a refused renewal releases nothing"
    );
}

/// Agents numbered `0..sizes.len()`, configured for `sizes`, those in `acting` taking part:
/// whether two distinct candidates could each gather their majority (themselves included,
/// from acting agents configured for a cluster no larger than theirs) with no agent in both.
fn two_holders_possible(sizes: &[u64], acting: u32) -> bool {
    let n = sizes.len();
    let q = |s: u64| (s / 2 + 1) as u32;
    let may_grant = |x: usize| {
        (0..n)
            .filter(|&g| acting & (1 << g) != 0 && sizes[g] <= sizes[x])
            .fold(0u32, |m, g| m | 1 << g)
    };
    let holds = |x: usize, set: u32| set & (1 << x) != 0 && set & !may_grant(x) == 0 && set.count_ones() >= q(sizes[x]);
    (0..n).filter(|&x| acting & (1 << x) != 0).any(|x| {
        (0..n)
            .filter(|&y| y != x && acting & (1 << y) != 0)
            .any(|y| (0..1u32 << n).any(|gx| holds(x, gx) && (0..1u32 << n).any(|gy| gx & gy == 0 && holds(y, gy))))
    })
}

/// Whether some agent in `up` could gather its majority from the agents in `up` configured
/// for a cluster no larger than its own.
fn holder_possible(sizes: &[u64], up: u32) -> bool {
    let n = sizes.len();
    (0..n).filter(|&x| up & (1 << x) != 0).any(|x| {
        let may = (0..n).filter(|&g| up & (1 << g) != 0 && sizes[g] <= sizes[x]).count();
        may as u64 > sizes[x] / 2
    })
}

/// The size rule, exhaustively for up to five agents configured for 1 to 6: where every
/// agent sees every other, those that `too_small` lets act can never hold two leases at once
/// (a failed check only ever stops agents). And the documented procedures: at every step,
/// whatever each agent sees (a cut hides the check), two holders are impossible, and with
/// any one agent down a holder is still possible; adding both new members first is not.
#[test]
fn the_size_rule_is_safe_for_every_small_mix_of_sizes_and_the_procedures_hold_at_every_step() {
    for n in 1..=5usize {
        let mut sizes = vec![1u64; n];
        loop {
            let acting = (0..n)
                .filter(|&i| !too_small((sizes[i] / 2 + 1) as usize, sizes[i], &sizes))
                .fold(0u32, |m, i| m | 1 << i);
            assert!(
                !two_holders_possible(&sizes, acting),
                "sizes {sizes:?}, acting {acting:b}"
            );
            // Next mix (an odometer over 1..=6).
            let Some(k) = (0..n).find(|&k| sizes[k] < 6) else { break };
            sizes[k] += 1;
            for s in &mut sizes[..k] {
                *s = 1;
            }
        }
    }
    // The procedures of the README, as the sizes of the agents deployed after each step.
    let grow: [&[u64]; 6] = [
        &[3, 3, 3],
        &[3, 3, 3, 5],
        &[5, 3, 3, 5],
        &[5, 5, 3, 5],
        &[5, 5, 5, 5],
        &[5, 5, 5, 5, 5],
    ];
    let shrink: [&[u64]; 6] = [
        &[5, 5, 5, 5, 5],
        &[5, 5, 5, 5],
        &[3, 5, 5, 5],
        &[3, 3, 5, 5],
        &[3, 3, 3, 5],
        &[3, 3, 3],
    ];
    for step in grow.iter().chain(shrink.iter()) {
        let all = (1u32 << step.len()) - 1;
        assert!(
            !two_holders_possible(step, all),
            "a cut could give two holders at {step:?}"
        );
        for down in 0..step.len() {
            assert!(
                holder_possible(step, all & !(1 << down)),
                "no holder possible at {step:?} with agent {down} down"
            );
        }
    }
    assert!(
        two_holders_possible(&[3, 3, 3, 5, 5], 0b11111),
        "both new members first"
    );
    // Shrinking with the second member removed before the last agent is reconfigured is
    // safe, but one more agent down then leaves no holder possible.
    assert!(!two_holders_possible(&[3, 3, 5], 0b111));
    assert!(
        !holder_possible(&[3, 3, 5], 0b110),
        "agent 0 down: no majority anyone may gather"
    );
}
