//! N agents in one process on the in-process hub, in real time, printing leadership changes.
//!
//! ```text
//! cargo run --features tokio --example embedded -- --nodes 5 --seconds 5
//! ```
//! Exits 0 when the run ends with exactly one leader.

use clap::Parser;
use leasehold::{Clock, ClusterState, Hub, Membership, MembershipCfg, MemoryStorage, Notice, TokioClock};
use std::time::Duration;

/// Command-line options.
#[derive(Parser)]
struct Args {
    /// Agents to run.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Lease length, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    lease_ms: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let hub = Hub::new();
    let clock = TokioClock::new();
    let mut handles = Vec::new();
    for i in 0..args.nodes {
        let mut cfg = MembershipCfg::default();
        cfg.id = format!("n{i}");
        cfg.my_rank = i as i64;
        cfg.cluster_size = args.nodes;
        cfg.lease_time = Duration::from_millis(args.lease_ms);
        // The first run of a brand-new cluster: no state file is expected, so none is waited for.
        cfg.initial_cluster_state = ClusterState::New;
        let agent = match Membership::new(cfg, clock.clone(), hub.client(), MemoryStorage::new()) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("bad configuration: {e}");
                std::process::exit(2);
            }
        };
        let h = agent.handle();
        let mut notices = h.notices(1024);
        let id = format!("n{i}");
        let c = clock.clone();
        tokio::spawn(async move {
            while let Some((at, n)) = notices.next().await {
                if let Notice::Leader {
                    leader, is_me, token, ..
                } = n
                {
                    println!(
                        "{:>8.3}s {id}: leader={leader:?} is_me={is_me} token={token:?}",
                        at.as_secs_f64()
                    );
                }
            }
            let _ = c;
        });
        handles.push(agent.start());
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let now = clock.now();
    let leaders: Vec<String> = handles
        .iter()
        .enumerate()
        .filter(|(_, h)| h.status().is_leader_at(now))
        .map(|(i, _)| format!("n{i}"))
        .collect();
    for h in &handles {
        h.stop().await;
    }
    if leaders.len() == 1 {
        println!("final: exactly one leader: {}", leaders[0]);
    } else {
        println!("final: {} leaders: {leaders:?}", leaders.len());
        std::process::exit(1);
    }
}
