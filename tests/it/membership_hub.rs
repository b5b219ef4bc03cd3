//! The `Membership` driver end to end on the in-process hub, under tokio's paused clock (time
//! advances only when every task waits, so these runs are fast and repeatable).
#![cfg(feature = "tokio")]

use bytes::Bytes;
use leasehold::{
    Algorithm, Clock, ClusterState, Hub, Membership, MembershipCfg, MembershipHandle, MemoryStorage, Network, Notice,
    TokioClock,
};
use std::time::Duration;

fn cfg(i: usize, n: usize, algorithm: Algorithm) -> MembershipCfg {
    let mut c = MembershipCfg::default();
    c.id = format!("n{i}");
    c.my_rank = i as i64;
    c.cluster_size = n;
    c.algorithm = algorithm;
    c.lease_time = Duration::from_secs(2);
    c.max_clock_skew = Duration::from_millis(100);
    // Each test starts a brand-new cluster.
    c.initial_cluster_state = ClusterState::New;
    c
}

fn start(hub: &Hub, clock: &TokioClock, n: usize, algorithm: Algorithm) -> Vec<MembershipHandle> {
    (0..n)
        .map(|i| {
            Membership::new(cfg(i, n, algorithm), clock.clone(), hub.client(), MemoryStorage::new())
                .unwrap()
                .start()
        })
        .collect()
}

fn leaders(handles: &[MembershipHandle], now: Duration) -> Vec<usize> {
    (0..handles.len())
        .filter(|i| handles[*i].status().is_leader_at(now))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn lease_cluster_elects_one_leader_and_fails_over_when_it_stops() {
    let (hub, clock) = (Hub::new(), TokioClock::new());
    let listener = hub.client();
    let mut lists = listener.subscribe("_nats.cluster.members.list").await.unwrap();
    let mut added_reports = listener.subscribe("_nats.cluster.members.added").await.unwrap();
    let hs = start(&hub, &clock, 3, Algorithm::Lease);
    let mut notices = hs[1].notices(256);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(leaders(&hs, clock.now()), vec![0], "the best-ranked agent leads");
    let st = hs[1].status();
    assert_eq!(st.leader.as_deref(), Some("n0"));
    let token = st.fencing_token.expect("followers know the token");
    assert_eq!(hs[0].status().fencing_token, Some(token));
    assert_eq!(hs[1].members().len(), 2);
    let mut added = 0;
    while let Some((_, n)) = notices.try_next() {
        added += matches!(n, Notice::MemberAdded(_)) as usize;
    }
    assert_eq!(added, 2);
    let list: leasehold::MemberList =
        serde_json::from_slice(&lists.try_next().expect("a list report").payload).unwrap();
    assert_eq!(list.lead_id, "n0");
    assert_eq!(list.members.len(), 3);
    assert!(added_reports.try_next().is_some(), "an added report");

    let stopped_at = clock.now();
    hs[0].stop().await;
    assert!(hs[0].is_stopped());
    assert!(
        !hs[0].status().is_leader_at(clock.now()),
        "a stopped agent does not lead"
    );
    // The leader released its lease: the next-best takes over well within lease + skew + 5 beats.
    let bound = Duration::from_secs(2) + Duration::from_millis(100) + Duration::from_millis(500);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if leaders(&hs, clock.now()) == vec![1] {
            break;
        }
        assert!(clock.now() - stopped_at < bound, "no failover within {bound:?}");
    }
    assert!(hs[1].status().fencing_token.unwrap() > token, "the token grew");
    assert!(hs[1].history().iter().any(|r| r.leader.id == "n1"));
    for h in &hs[1..] {
        h.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn malformed_and_oversized_messages_are_counted_and_dropped() {
    let (hub, clock) = (Hub::new(), TokioClock::new());
    let hs = start(&hub, &clock, 3, Algorithm::Lease);
    let junk = hub.client();
    tokio::time::sleep(Duration::from_millis(10)).await; // let the agents subscribe
    for payload in [&b"{not json"[..], b"", b"[1,2]", &vec![b'x'; 70 * 1024]] {
        for s in ["hb", "lease.request", "lease.release"] {
            junk.publish(
                &format!("_nats.cluster.members.{s}"),
                Some("_INBOX.junk"),
                Bytes::copy_from_slice(payload),
            )
            .await
            .unwrap();
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(leaders(&hs, clock.now()), vec![0], "the election is unaffected");
    for h in &hs {
        assert_eq!(h.stats().malformed, 12, "every bad message is counted by every agent");
        h.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn allcall_cluster_agrees_on_the_best_ranked_leader_and_reports_lists() {
    let (hub, clock) = (Hub::new(), TokioClock::new());
    let listener = hub.client();
    let mut lists = listener.subscribe("_nats.cluster.members.list").await.unwrap();
    let hs = start(&hub, &clock, 3, Algorithm::Allcall);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for h in &hs {
        assert_eq!(h.status().leader.as_deref(), Some("n0"));
    }
    assert_eq!(leaders(&hs, clock.now()), vec![0]);
    let m = lists.try_next().expect("a list report was published");
    let list: leasehold::MemberList = serde_json::from_slice(&m.payload).unwrap();
    assert!(!list.lead_id.is_empty());
    for h in &hs {
        h.stop().await;
    }
}

/// Storage that works until told to fail.
#[derive(Clone, Default)]
struct Flaky {
    inner: MemoryStorage,
    broken: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl leasehold::Storage for Flaky {
    fn load(&self) -> leasehold::BoxFuture<'_, Result<Option<leasehold::Durable>, leasehold::StorageError>> {
        self.inner.load()
    }
    fn save(&self, d: &leasehold::Durable) -> leasehold::BoxFuture<'_, Result<(), leasehold::StorageError>> {
        if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
            Box::pin(async { Err(leasehold::StorageError("disk full".into())) })
        } else {
            self.inner.save(d)
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_cannot_persist_a_grant_stops_instead_of_answering() {
    let (hub, clock) = (Hub::new(), TokioClock::new());
    let flaky = Flaky::default();
    // n0 ranks last here, so it only grants; n1 leads with a token n0 saved.
    let mut c0 = cfg(0, 3, Algorithm::Lease);
    c0.my_rank = 9;
    let agent0 = Membership::new(c0, clock.clone(), hub.client(), flaky.clone()).unwrap();
    let h0 = agent0.handle();
    let run0 = tokio::spawn(agent0.run());
    let hs: Vec<MembershipHandle> = (1..3)
        .map(|i| {
            Membership::new(
                cfg(i, 3, Algorithm::Lease),
                clock.clone(),
                hub.client(),
                MemoryStorage::new(),
            )
            .unwrap()
            .start()
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(hs[0].status().is_leader_at(clock.now()), "n1 leads");
    // The disk fails; the leader leaves; n2 asks n0 to promise a new token, which needs a save.
    flaky.broken.store(true, std::sync::atomic::Ordering::SeqCst);
    hs[0].stop().await;
    let r = tokio::time::timeout(Duration::from_secs(10), run0)
        .await
        .expect("n0 stops")
        .unwrap();
    assert!(matches!(r, Err(leasehold::MembershipError::Storage(_))), "{r:?}");
    assert!(h0.is_stopped());
    assert!(h0.stats().storage_errors >= 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !hs[1].status().is_leader_at(clock.now()),
        "n2 got no majority from an unsaved promise"
    );
    hs[1].stop().await;
}

#[tokio::test(start_paused = true)]
async fn membership_feeds_a_router_end_to_end() {
    use leasehold::router::{feed, serve_pings, CoordinateBook, NetworkPinger, Router, Server};
    use std::sync::{Arc, Mutex};
    let (hub, clock) = (Hub::new(), TokioClock::new());
    let hs = start(&hub, &clock, 3, Algorithm::Lease);
    let server = |id: &str| Server::new(id, "dc1", "_nats.cluster.members.");
    // Every agent answers pings, as leasehold-agent does.
    let pongs: Vec<_> = (0..3)
        .map(|i| {
            let s = server(&format!("n{i}"));
            tokio::spawn(serve_pings(
                hub.client(),
                s.ping_subject,
                s.name,
                Arc::new(Mutex::new(CoordinateBook::new(i))),
            ))
        })
        .collect();
    // n2's membership feeds a router on the same node.
    let book = Arc::new(Mutex::new(CoordinateBook::new(9)));
    let pinger = Arc::new(NetworkPinger::new(
        hub.client(),
        clock.clone(),
        Duration::from_millis(200),
        book.clone(),
    ));
    let router = Arc::new(Router::new("dc1", 1));
    router.add_area("lan", Arc::new(|| 3usize), pinger, book).unwrap();
    let (r, notices) = (router.clone(), hs[2].notices(256));
    let fed = tokio::spawn(async move {
        feed(&r, "lan", notices, |l| {
            Some(Server::new(l.id.clone(), "dc1", "_nats.cluster.members."))
        })
        .await
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut names: Vec<String> = router.area_servers("lan", "dc1").into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, ["n0", "n1"], "members added by the agent's notices");
    let manager = router.managers("dc1").remove(0);
    manager.rebalance_servers().await;
    assert!(
        !manager.is_offline(),
        "the pings went over the network and were answered"
    );
    // n0's agent stops: n2 loses it and the router moves traffic off it.
    let front = router.find_route("dc1").unwrap().server.name;
    let victim = if front == "n0" { 0 } else { 1 };
    hs[victim].stop().await;
    pongs[victim].abort();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let route = router.find_route("dc1").unwrap();
    assert_ne!(
        route.server.name,
        format!("n{victim}"),
        "the lost member is not routed to"
    );
    assert_eq!(
        router.area_servers("lan", "dc1").len(),
        2,
        "a failed server stays listed"
    );
    for h in &hs {
        h.stop().await;
    }
    fed.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_agent_whose_network_closes_for_good_stops_instead_of_spinning() {
    let (hub, clock) = (Hub::new(), TokioClock::new());
    let hs = start(&hub, &clock, 1, Algorithm::Lease);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!hs[0].is_stopped());
    // Every subscription ends; an agent that took that for a timer would spin forever here.
    hub.close();
    tokio::time::timeout(Duration::from_secs(5), async {
        while !hs[0].is_stopped() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the agent stops once its network is closed");
}

/// A hub connection whose publishes, once `stuck` is set, never complete: a NATS client whose
/// outgoing buffer is full while it is disconnected.
#[derive(Clone)]
struct Stuck {
    inner: leasehold::HubClient,
    stuck: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Network for Stuck {
    fn publish(
        &self,
        subject: &str,
        reply: Option<&str>,
        payload: Bytes,
    ) -> leasehold::BoxFuture<'_, Result<(), leasehold::NetError>> {
        if self.stuck.load(std::sync::atomic::Ordering::SeqCst) {
            return Box::pin(futures::future::pending());
        }
        self.inner.publish(subject, reply, payload)
    }
    fn subscribe(
        &self,
        subject: &str,
    ) -> leasehold::BoxFuture<'_, Result<leasehold::Subscription, leasehold::NetError>> {
        self.inner.subscribe(subject)
    }
    fn new_inbox(&self) -> String {
        self.inner.new_inbox()
    }
}

/// A lone agent on `hub` that leads, and then whose every publish never completes.
async fn stuck_leader(hub: &Hub, clock: &TokioClock) -> (MembershipHandle, leasehold::Leadership) {
    let stuck = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let net = Stuck {
        inner: hub.client(),
        stuck: stuck.clone(),
    };
    let a = Membership::new(cfg(0, 1, Algorithm::Lease), clock.clone(), net, MemoryStorage::new())
        .unwrap()
        .start();
    let lease = a.leadership().await.expect("a lone agent leads");
    stuck.store(true, std::sync::atomic::Ordering::SeqCst);
    (a, lease)
}

#[tokio::test(start_paused = true)]
async fn a_due_timer_runs_before_a_stream_of_messages_that_each_hold_the_loop_a_beat() {
    // A lone leader whose publishes never complete (each step waits a beat, then drops them)
    // hears a heartbeat every 20 ms from two processes with one ID, and each one replaces the
    // other in its member table and makes it publish a `members.added` report: a step of a
    // beat per message, and always another message waiting. A driver that served waiting
    // messages before a due timer never ran the renewal, and the lease ran out in two seconds.
    let (hub, clock) = (Hub::new(), TokioClock::new());
    let (a, _lease) = stuck_leader(&hub, &clock).await;
    let twins = hub.client();
    for k in 0..300u64 {
        let beat = leasehold::wire::Heartbeat {
            loc: leasehold::AgentLoc::new("x", 9),
            inc: 1,
            run: 1 + k % 2,
            cluster_size: 1,
            lease: None,
            max_token: 0,
            config: 0,
            passive: false,
            waiting: false,
            quarantined: false,
        };
        twins
            .publish("_nats.cluster.members.hb", None, leasehold::wire::encode(&beat))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            a.status().is_leader_at(clock.now()),
            "the lease ran out {} ms into the stream",
            (k + 1) * 20
        );
    }
    assert!(a.stats().publishes_dropped > 10, "the loop was held a beat per step");
}

#[tokio::test(start_paused = true)]
async fn a_stop_is_served_while_a_publish_never_completes_and_the_release_waits_a_second_at_most() {
    let (hub, clock) = (Hub::new(), TokioClock::new());
    let (a, lease) = stuck_leader(&hub, &clock).await;
    // Nothing goes out any more: each step's publishes are dropped after a beat, and the
    // loop goes on (a loop blocked in the first publish would drop none).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dropped = a.stats().publishes_dropped;
    assert!(dropped >= 3, "{dropped} publishes dropped in five beats");
    let asked = clock.now();
    let stopped = tokio::time::timeout(Duration::from_secs(30), a.stop()).await;
    assert!(
        stopped.is_ok(),
        "stop() never returned: the driver waits on the publish"
    );
    let took = clock.now() - asked;
    assert!(took <= Duration::from_millis(1_100), "stop took {took:?}");
    assert!(!lease.is_valid() && a.is_stopped());
}
