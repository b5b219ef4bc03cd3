//! A service that writes to a store only while it leads, under its fencing token, and a store
//! that refuses a lower token — the pattern a lease exists for:
//!
//! ```text
//! nats-server -a 127.0.0.1 -p 4222 &
//! cargo run --features nats --example fenced_writer -- nats://127.0.0.1:4222
//! ```
//!
//! Three replicas run in this process, each with its own NATS connection. Each waits for
//! leadership, then writes under its token for as long as the lease is guaranteed. The
//! leader's last write is held back (a slow network, a long GC pause), the leader is stopped,
//! and the held write arrives after the next leader has written: the store refuses it. Exits
//! non-zero if the store ever accepted a write from a stale leader.

use leasehold::{
    ClusterState, Leadership, Membership, MembershipCfg, MembershipHandle, MemoryStorage, NatsNetwork, NatsOptions,
    TokioClock,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A store that remembers the highest fencing token it has seen and refuses anything lower.
#[derive(Default)]
struct FencedStore {
    highest: u64,
    log: Vec<(u64, String)>,
}

impl FencedStore {
    fn write(&mut self, token: u64, value: String) -> Result<(), String> {
        if token < self.highest {
            return Err(format!("refused {value:?}: token {token} < {}", self.highest));
        }
        self.highest = token;
        self.log.push((token, value));
        Ok(())
    }
}

/// One replica: waits for leadership, writes while the lease is guaranteed, repeats.
async fn replica(
    id: String,
    handle: MembershipHandle,
    store: Arc<Mutex<FencedStore>>,
    held: Arc<Mutex<Option<(u64, String)>>>,
) {
    while let Some(lease) = handle.leadership().await {
        let token = lease.token();
        println!("{id} leads with token {token}");
        let mut n = 0;
        while lease.is_valid() {
            n += 1;
            let value = format!("{id}#{n}");
            // The third write of the first leader is held back, to arrive late.
            if n == 3 && held.lock().unwrap().is_none() {
                *held.lock().unwrap() = Some((token, value));
            } else if let Err(e) = write_while(&lease, &store, token, value) {
                println!("{id}: {e}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("{id} no longer leads");
    }
}

fn write_while(lease: &Leadership, store: &Mutex<FencedStore>, token: u64, value: String) -> Result<(), String> {
    if !lease.is_valid() {
        return Err("lease lost before the write".into());
    }
    store.lock().unwrap().write(token, value)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let store = Arc::new(Mutex::new(FencedStore::default()));
    let held = Arc::new(Mutex::new(None));
    let mut handles = Vec::new();
    for i in 0..3 {
        let net = match NatsNetwork::connect(&NatsOptions {
            url: url.clone(),
            connect_timeout: Some(Duration::from_secs(5)),
            ..Default::default()
        })
        .await
        {
            Ok(n) => n,
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::from(1);
            }
        };
        let mut cfg = MembershipCfg::default();
        cfg.id = format!("replica-{i}");
        cfg.my_rank = i as i64;
        cfg.cluster_size = 3;
        cfg.lease_time = Duration::from_secs(1);
        cfg.initial_cluster_state = ClusterState::New;
        cfg.election = "fenced-writer-example".into();
        let h = Membership::new(cfg, TokioClock::new(), net, MemoryStorage::new())
            .expect("a valid configuration")
            .start();
        tokio::spawn(replica(format!("replica-{i}"), h.clone(), store.clone(), held.clone()));
        handles.push(h);
    }
    // Wait for the first leader's write to be held back, then stop that leader.
    let first = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if held.lock().unwrap().is_some() {
            if let Some(i) = handles.iter().position(|h| h.is_leader_now()) {
                break i;
            }
        }
    };
    handles[first].stop().await;
    println!("replica-{first} stopped");
    // The next leader writes; then the held write arrives.
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (stale_token, _) = held.lock().unwrap().clone().expect("held");
        if store.lock().unwrap().highest > stale_token {
            break;
        }
    }
    let (token, value) = held.lock().unwrap().take().expect("held");
    let verdict = store.lock().unwrap().write(token, value);
    for h in &handles {
        h.stop().await;
    }
    match verdict {
        Err(e) => {
            println!("the store {e}: the stale write was refused");
            std::process::ExitCode::SUCCESS
        }
        Ok(()) => {
            println!("the store accepted a stale leader's write");
            std::process::ExitCode::from(1)
        }
    }
}
