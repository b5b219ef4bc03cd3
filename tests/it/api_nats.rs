//! The application API against a real nats-server: awaiting leadership, a guard whose loss
//! future resolves before another agent holds (on resign, on stop, and when the leader's
//! server goes away), named elections side by side on one connection, an unreachable server
//! named in the error, and the fenced-writer example refusing a stale leader's write.
//!
//! `ci/test.sh` installs nats-server; without it these tests fail, saying so.
#![cfg(feature = "agent")]

use crate::common;

use common::{free_port, Server};
use leasehold::{
    Clock, ClusterState, Leadership, Membership, MembershipCfg, MembershipHandle, MemoryStorage, NatsNetwork,
    NatsOptions, NetError, TokioClock,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_secs(1);

async fn connect(url: &str) -> NatsNetwork {
    NatsNetwork::connect(&NatsOptions {
        url: url.into(),
        connect_timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    })
    .await
    .expect("the test server answers")
}

fn cfg(i: usize, election: &str) -> MembershipCfg {
    let mut c = MembershipCfg::default();
    c.id = format!("n{i}");
    c.my_rank = i as i64;
    c.cluster_size = 3;
    c.lease_time = LEASE;
    c.max_clock_skew = Duration::from_millis(200);
    c.initial_cluster_state = ClusterState::New;
    c.election = election.into();
    c
}

/// Three agents, agent `i` connected to `urls[i % urls.len()]`.
async fn start(urls: &[String], election: &str, clock: &TokioClock) -> Vec<MembershipHandle> {
    let mut hs = Vec::new();
    for i in 0..3 {
        let net = connect(&urls[i % urls.len()]).await;
        hs.push(
            Membership::new(cfg(i, election), clock.clone(), net, MemoryStorage::new())
                .unwrap()
                .start(),
        );
    }
    hs
}

/// Runs `event` on the leader (n0) and checks that its guard's loss future resolves before
/// any other agent holds a lease.
async fn lost_before_anyone_else_holds(hs: &[MembershipHandle], clock: &TokioClock, event: impl FnOnce()) {
    let lease: Leadership = tokio::time::timeout(Duration::from_secs(10), hs[0].leadership())
        .await
        .expect("n0 leads in time")
        .expect("n0 runs");
    let lost_at = Arc::new(Mutex::new(None));
    let (l, c, g) = (lost_at.clone(), clock.clone(), lease.clone());
    tokio::spawn(async move {
        g.lost().await;
        *l.lock().unwrap() = Some(c.now());
    });
    event();
    let next = futures::future::select_all(hs[1..].iter().map(|h| Box::pin(h.leadership())));
    let (next, _, _) = tokio::time::timeout(Duration::from_secs(10), next)
        .await
        .expect("a successor");
    let held_at = clock.now();
    let lost = lost_at.lock().unwrap().expect("the loss future resolved");
    assert!(lost <= held_at, "lost at {lost:?}, successor held at {held_at:?}");
    assert!(next.expect("a successor").token() > lease.token());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awaiting_leadership_and_losing_it_on_resign_and_on_stop() {
    let server = Server::start(free_port(), None);
    let clock = TokioClock::new();
    let hs = start(&[server.url()], "", &clock).await;
    lost_before_anyone_else_holds(&hs, &clock, || hs[0].resign()).await;
    hs[0].campaign();
    tokio::time::timeout(Duration::from_secs(10), hs[0].leadership())
        .await
        .expect("n0, the best-ranked, leads again once it campaigns");
    let h0 = hs[0].clone();
    lost_before_anyone_else_holds(&hs, &clock, move || h0.request_stop()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_server_goes_away_loses_its_guarantee_before_a_successor_holds() {
    let (pa, pb, ca, cb) = (free_port(), free_port(), free_port(), free_port());
    let mut a = Server::start(pa, Some((ca, vec![cb])));
    let b = Server::start(pb, Some((cb, vec![ca])));
    std::thread::sleep(Duration::from_millis(500)); // routes form
    let clock = TokioClock::new();
    // n0 on server a, n1 and n2 on server b.
    let urls = [a.url(), b.url(), b.url()];
    let mut hs = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let net = connect(url).await;
        hs.push(
            Membership::new(cfg(i, ""), clock.clone(), net, MemoryStorage::new())
                .unwrap()
                .start(),
        );
    }
    let mut notices = hs[0].notices(256);
    lost_before_anyone_else_holds(&hs, &clock, move || a.stop()).await;
    let mut saw_disconnect = false;
    while let Some((_, n)) = notices.try_next() {
        saw_disconnect |= n == leasehold::Notice::Connection(leasehold::Connection::Disconnected);
    }
    assert!(saw_disconnect, "the disconnection is a notice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_elections_run_side_by_side_on_one_connection() {
    let server = Server::start(free_port(), None);
    let clock = TokioClock::new();
    let mut orders = Vec::new();
    let mut billing = Vec::new();
    for i in 0..3 {
        let net = connect(&server.url()).await; // one connection, two elections
        orders.push(
            Membership::new(cfg(i, "orders"), clock.clone(), net.clone(), MemoryStorage::new())
                .unwrap()
                .start(),
        );
        billing.push(
            Membership::new(cfg(i, "billing"), clock.clone(), net, MemoryStorage::new())
                .unwrap()
                .start(),
        );
    }
    let a = tokio::time::timeout(Duration::from_secs(10), orders[0].leadership())
        .await
        .unwrap()
        .unwrap();
    let b = tokio::time::timeout(Duration::from_secs(10), billing[0].leadership())
        .await
        .unwrap()
        .unwrap();
    assert!(a.is_valid() && b.is_valid());
    orders[0].stop().await;
    let next = futures::future::select_all(orders[1..].iter().map(|h| Box::pin(h.leadership())));
    tokio::time::timeout(Duration::from_secs(10), next)
        .await
        .expect("orders elects again");
    assert!(b.is_valid(), "billing is untouched by orders' failover");
    assert_eq!(billing.iter().filter(|h| h.is_leader_now()).count(), 1);
}

#[tokio::test]
async fn an_unreachable_server_is_an_error_naming_it_within_the_timeout() {
    let started = Instant::now();
    let r = NatsNetwork::connect(&NatsOptions {
        url: "nats://127.0.0.1:1".into(),
        connect_timeout: Some(Duration::from_secs(1)),
        ..Default::default()
    })
    .await;
    let took = started.elapsed();
    match r {
        Err(NetError::Unreachable(m)) => assert!(m.contains("nats://127.0.0.1:1"), "{m}"),
        other => panic!("expected an error naming the server, got {:?}", other.map(|_| ())),
    }
    assert!(took < Duration::from_secs(3), "within the timeout: {took:?}");
}

#[test]
fn the_fenced_writer_example_refuses_a_stale_leaders_write() {
    let server = Server::start(free_port(), None);
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("examples/fenced_writer");
    assert!(
        example.is_file(),
        "{} missing: `cargo test --features nats` builds the examples",
        example.display()
    );
    let out = std::process::Command::new(&example)
        .arg(server.url())
        .output()
        .expect("the example runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("the stale write was refused"), "{text}");
}
