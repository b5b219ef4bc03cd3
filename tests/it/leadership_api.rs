//! The application API on the in-process hub, under tokio's paused clock: awaiting
//! leadership, a guard whose loss future resolves before anyone else can hold, resigning,
//! dropping every handle, the notice stream, the watch view, callbacks, and named elections
//! side by side.
#![cfg(feature = "tokio")]

use futures::StreamExt;
use leasehold::{
    Algorithm, Clock, ClusterState, Hub, LeaderCallbacks, Leadership, Membership, MembershipCfg, MembershipHandle,
    MemoryStorage, Notice, TokioClock,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(2);

fn cfg(i: usize, n: usize, election: &str) -> MembershipCfg {
    let mut c = MembershipCfg::default();
    c.id = format!("n{i}");
    c.my_rank = i as i64;
    c.cluster_size = n;
    c.algorithm = Algorithm::Lease;
    c.lease_time = LEASE;
    c.max_clock_skew = Duration::from_millis(100);
    c.initial_cluster_state = ClusterState::New;
    c.election = election.to_string();
    c
}

fn start(hub: &Hub, clock: &TokioClock, n: usize, election: &str) -> Vec<MembershipHandle> {
    (0..n)
        .map(|i| {
            Membership::new(cfg(i, n, election), clock.clone(), hub.client(), MemoryStorage::new())
                .unwrap()
                .start()
        })
        .collect()
}

fn leaders(hs: &[MembershipHandle]) -> Vec<usize> {
    (0..hs.len()).filter(|i| hs[*i].is_leader_now()).collect()
}

/// Waits for some agent of `hs` other than `not` to hold a lease; returns it and its guard.
async fn next_leader(hs: &[MembershipHandle], not: usize) -> (usize, Leadership) {
    let others: Vec<_> = (0..hs.len()).filter(|i| *i != not).collect();
    let waits = others.iter().map(|i| {
        let h = hs[*i].clone();
        let i = *i;
        Box::pin(async move { (i, h.leadership().await.expect("a running agent")) })
    });
    futures::future::select_all(waits).await.0
}

#[tokio::test(start_paused = true)]
async fn awaiting_leadership_gives_the_token_and_a_guarantee_judged_on_the_agents_clock() {
    let (hub, clock) = (Hub::new(), TokioClock::new());
    let hs = start(&hub, &clock, 3, "");
    let lease = hs[0].leadership().await.expect("n0 leads");
    assert!(lease.token() >= 1);
    assert!(
        lease.is_valid() && lease.remaining() <= LEASE,
        "{:?}",
        lease.remaining()
    );
    assert!(lease.deadline() > tokio::time::Instant::now());
    assert_eq!(leaders(&hs), vec![0], "is_leader_now needs no clock from the caller");
    // Renewals keep the guarantee going for as long as n0 holds the lease.
    tokio::time::sleep(LEASE * 3).await;
    assert!(lease.is_valid(), "renewed");
    let watched = hs[1].watch();
    assert_eq!(
        watched.borrow().leader.as_deref(),
        Some("n0"),
        "the watch view has the latest state"
    );
    assert_eq!(watched.borrow().fencing_token, Some(lease.token()));
}

#[tokio::test(start_paused = true)]
async fn resigning_ends_the_guarantee_before_anyone_else_holds_and_campaigning_takes_part_again() {
    let (hub, clock) = (Hub::new(), TokioClock::new());
    let hs = start(&hub, &clock, 3, "");
    let lease = hs[0].leadership().await.unwrap();
    let lost_at = Arc::new(Mutex::new(None));
    let l = lost_at.clone();
    let (guard, c) = (lease.clone(), clock.clone());
    tokio::spawn(async move {
        guard.lost().await;
        *l.lock().unwrap() = Some(c.now());
    });
    let resigned_at = clock.now();
    hs[0].resign();
    let (who, next) = next_leader(&hs, 0).await;
    let took_over = clock.now();
    let lost = lost_at.lock().unwrap().expect("the guard's loss future resolved");
    assert!(lost <= took_over, "lost at {lost:?}, n{who} held at {took_over:?}");
    assert!(took_over - resigned_at < LEASE, "no wait for the lease to run out");
    assert!(next.token() > lease.token(), "a higher fencing token");
    // n0, the best-ranked, stays a follower until told otherwise.
    tokio::time::sleep(LEASE * 3).await;
    assert_eq!(leaders(&hs), vec![who], "n0 does not campaign after resigning");
    hs[0].campaign();
    let back = tokio::time::timeout(LEASE * 5, hs[0].leadership()).await;
    assert!(back.is_ok(), "n0 leads again once it campaigns");
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_releases_the_lease_and_stops_the_agent() {
    let (hub, clock) = (Hub::new(), TokioClock::new());
    let mut hs = start(&hub, &clock, 3, "");
    hs[0].leadership().await.unwrap();
    let leader = hs.remove(0);
    let copy = leader.clone();
    drop(leader);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!copy.is_stopped(), "a clone still holds it");
    let dropped_at = clock.now();
    drop(copy);
    let (_, _) = next_leader(&hs, usize::MAX).await;
    assert!(clock.now() - dropped_at < LEASE, "released, not left to run out");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        hs.iter().all(|h| h.members().iter().all(|m| m.id != "n0")),
        "n0 stopped"
    );
}

#[tokio::test(start_paused = true)]
async fn notices_are_a_stream() {
    let (hub, clock) = (Hub::new(), TokioClock::new());
    let hs = start(&hub, &clock, 3, "");
    let notices = hs[1].notices(64);
    let leaders = notices.filter_map(|(_, n)| async move {
        match n {
            Notice::Leader { leader: Some(l), .. } => Some(l),
            _ => None,
        }
    });
    let first_leader = Box::pin(leaders).next().await;
    assert_eq!(first_leader.as_deref(), Some("n0"));
}

#[derive(Default, Clone)]
struct Recorder {
    events: Arc<Mutex<Vec<String>>>,
}

impl LeaderCallbacks for Recorder {
    fn on_started_leading(&self, lease: Leadership) -> leasehold::BoxFuture<'static, ()> {
        self.events.lock().unwrap().push(format!("started {:?}", lease.token()));
        Box::pin(futures::future::pending())
    }
    fn on_stopped_leading(&self) {
        self.events.lock().unwrap().push("stopped".into());
    }
    fn on_new_leader(&self, leader: Option<String>) {
        self.events.lock().unwrap().push(format!("leader {leader:?}"));
    }
}

#[tokio::test(start_paused = true)]
async fn callbacks_follow_leadership_as_kubernetes_leaderelection_does() {
    let (hub, clock) = (Hub::new(), TokioClock::new());
    let hs = start(&hub, &clock, 3, "");
    let rec = Recorder::default();
    tokio::spawn(leasehold::run_callbacks(hs[0].clone(), rec.clone()));
    let lease = hs[0].leadership().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    hs[0].resign();
    next_leader(&hs, 0).await;
    // n0 hears of the new leader from its next heartbeat: within a beat (100 ms), so wait up to
    // three, looking every 10 ms (a fixed sleep of one beat raced that heartbeat).
    let heard = |r: &Recorder| {
        r.events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.starts_with("leader Some(\"n1\")"))
    };
    for _ in 0..30 {
        if heard(&rec) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let events = rec.events.lock().unwrap().clone();
    let want_start = format!("started {:?}", lease.token());
    let pos = |e: &str| events.iter().position(|x| x == e);
    assert!(pos("leader Some(\"n0\")").is_some(), "{events:?}");
    assert!(pos(&want_start) < pos("stopped"), "{events:?}");
    assert!(
        events.iter().any(|e| e.starts_with("leader Some(\"n1\")")),
        "{events:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn named_elections_run_side_by_side_on_one_connection() {
    let (hub, clock) = (Hub::new(), TokioClock::new());
    let a = start(&hub, &clock, 3, "orders");
    let b = start(&hub, &clock, 3, "billing");
    a[0].leadership().await.unwrap();
    b[0].leadership().await.unwrap();
    assert_eq!((leaders(&a), leaders(&b)), (vec![0], vec![0]), "one leader each");
    assert_eq!(a[1].members().len(), 2, "each sees only its own election's members");
    a[0].stop().await;
    next_leader(&a, 0).await;
    assert_eq!(leaders(&b), vec![0], "the other election is untouched");
    let bad = Membership::new(cfg(9, 3, "no.dots"), clock.clone(), hub.client(), MemoryStorage::new());
    assert!(bad.is_err(), "an election name is one subject token");
}
