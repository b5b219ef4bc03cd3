//! Failover benchmark on a real NATS server (not a test):
//!
//! ```text
//! cargo run --release --features nats --example failover -- --kills 20
//! ```
//! Starts `nats-server` on a free loopback port, runs N agents in this process, and kills the
//! leader `--kills` times (its task is dropped without releasing: a crash), measuring the time
//! until another agent holds the lease. Prints p50/p99 against the bound lease + skew + 3 beats.

use clap::Parser;
use leasehold::{
    Clock, ClusterState, Membership, MembershipCfg, MembershipHandle, MemoryStorage, NatsNetwork, NatsOptions,
    TokioClock,
};
use std::time::{Duration, Instant};

/// Options.
#[derive(Parser)]
struct Args {
    /// How many times to kill the leader.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// Agents.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Lease, ms.
    #[arg(long, default_value_t = 1000)]
    lease_ms: u64,
    /// Beat, ms.
    #[arg(long, default_value_t = 100)]
    beat_ms: u64,
    /// Max clock skew, ms.
    #[arg(long, default_value_t = 500)]
    skew_ms: u64,
    /// `new` (the first start of a brand-new cluster: no wait) or `existing` (as every
    /// restart: wait a lease and learn the highest token from peers that have their state;
    /// a whole cluster started `existing` with no state waits for good).
    #[arg(long, default_value = "new")]
    initial_cluster_state: ClusterState,
    /// nats-server binary.
    #[arg(long, default_value = "nats-server")]
    nats_server: String,
}

struct Running {
    handle: MembershipHandle,
    task: tokio::task::JoinHandle<()>,
}

async fn start(
    i: usize,
    args: &Args,
    url: &str,
    clock: &TokioClock,
    storage: &[MemoryStorage],
    first: bool,
) -> Running {
    let mut cfg = MembershipCfg::default();
    // A first start may be declared the first run of a brand-new cluster; a restart never is.
    if first {
        cfg.initial_cluster_state = args.initial_cluster_state;
    }
    cfg.id = format!("n{i}");
    cfg.my_rank = i as i64;
    cfg.cluster_size = args.nodes;
    cfg.lease_time = Duration::from_millis(args.lease_ms);
    cfg.beat = Duration::from_millis(args.beat_ms);
    cfg.member_timeout = cfg.beat * 5;
    cfg.max_clock_skew = Duration::from_millis(args.skew_ms);
    let net = NatsNetwork::connect(&NatsOptions {
        url: url.into(),
        ..Default::default()
    })
    .await
    .expect("connect");
    let agent = Membership::new(cfg, clock.clone(), net, storage[i].clone()).expect("config");
    let handle = agent.handle();
    let task = tokio::spawn(async move {
        let _ = agent.run().await;
    });
    Running { handle, task }
}

fn leader(agents: &[Option<Running>], clock: &TokioClock) -> Option<usize> {
    let now = clock.now();
    agents
        .iter()
        .position(|a| a.as_ref().is_some_and(|a| a.handle.status().is_leader_at(now)))
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bin = if std::path::Path::new(&args.nats_server).exists() || which(&args.nats_server) {
        args.nats_server.clone()
    } else {
        "/usr/sbin/nats-server".into()
    };
    let mut server = std::process::Command::new(&bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .spawn()
        .expect("nats-server (install it, or pass --nats-server PATH)");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = format!("nats://127.0.0.1:{port}");
    let clock = TokioClock::new();
    let storage: Vec<MemoryStorage> = (0..args.nodes).map(|_| MemoryStorage::new()).collect();
    let mut agents: Vec<Option<Running>> = Vec::new();
    let t_start = Instant::now();
    for i in 0..args.nodes {
        agents.push(Some(start(i, &args, &url, &clock, &storage, true).await));
    }
    while leader(&agents, &clock).is_none() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let cold = t_start.elapsed();
    let bound = Duration::from_millis(args.lease_ms + args.skew_ms + 3 * args.beat_ms);
    let mut took = Vec::new();
    for k in 0..args.kills {
        // Kill only a settled leader: the best-ranked agent, holding and renewing (a holder
        // that is stepping down for a better-ranked one would measure a handover instead).
        let l = 0;
        while leader(&agents, &clock) != Some(l) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(args.beat_ms * 10)).await;
        if let Some(a) = agents[l].take() {
            a.task.abort();
        }
        let t0 = Instant::now();
        let next = loop {
            if let Some(n) = leader(&agents, &clock) {
                break n;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        took.push(t0.elapsed());
        eprintln!("kill {k}: n{l} -> n{next} in {:?}", t0.elapsed());
        agents[l] = Some(start(l, &args, &url, &clock, &storage, false).await);
    }
    let _ = server.kill();
    let _ = server.wait();
    took.sort();
    let p = |q: f64| took[((q * took.len() as f64).ceil() as usize).clamp(1, took.len()) - 1];
    println!(
        "failover over {} kills of the leader ({} agents, lease {} ms, beat {} ms, skew {} ms):",
        took.len(),
        args.nodes,
        args.lease_ms,
        args.beat_ms,
        args.skew_ms
    );
    println!(
        "cold start (initial cluster state {:?}): first leader after {cold:?}",
        args.initial_cluster_state
    );
    println!(
        "p50 {:?}  p99 {:?}  max {:?}  bound (lease + skew + 3 beats) {:?}",
        p(0.50),
        p(0.99),
        took[took.len() - 1],
        bound
    );
}

fn which(name: &str) -> bool {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .any(|d| std::path::Path::new(d).join(name).exists())
}
