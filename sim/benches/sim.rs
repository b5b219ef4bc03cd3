//! Simulator benchmark (a plain program: `cargo bench -p leasehold-sim`).
//!
//! 1. Simulated seconds per wall second for a 5-node `lease` cluster under the full nemesis
//!    (`scenarios/lease-all-faults.toml`), against the same message pattern (the same number of
//!    heartbeat-sized messages per beat between 5 nodes) on raw madsim endpoints, in one run.
//! 2. Deliveries per beat for `lease` and `allcall` at N = 8, 16, 32 (calm clusters).

use leasehold_sim::{run_seed, Scenario};
use std::path::Path;
use std::time::{Duration, Instant};

const SEEDS: u64 = 20;

fn raw_madsim(
    nodes: usize,
    duration: Duration,
    beat: Duration,
    msgs_per_beat_per_node: usize,
    seed: u64,
) -> (Duration, u64) {
    let wall = Instant::now();
    let received = std::thread::spawn(move || {
        let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        rt.block_on(async move {
            let h = madsim::runtime::Handle::current();
            let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let addrs: Vec<std::net::SocketAddr> = (0..nodes)
                .map(|i| format!("10.0.0.{}:4222", i + 1).parse().unwrap())
                .collect();
            for i in 0..nodes {
                let (addrs, count) = (addrs.clone(), count.clone());
                h.create_node()
                    .name(format!("n{i}"))
                    .ip(addrs[i].ip())
                    .init(move || {
                        let (addrs, count) = (addrs.clone(), count.clone());
                        async move {
                            let ep = madsim::net::Endpoint::bind(addrs[i]).await.unwrap();
                            let rx = ep.clone();
                            madsim::task::spawn(async move {
                                let mut buf = vec![0u8; 1024];
                                while rx.recv_from(0, &mut buf).await.is_ok() {
                                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                            });
                            let payload = vec![7u8; 256];
                            loop {
                                for _ in 0..msgs_per_beat_per_node {
                                    for (j, a) in addrs.iter().enumerate() {
                                        if j != i {
                                            let _ = ep.send_to(*a, 0, &payload).await;
                                        }
                                    }
                                }
                                madsim::time::sleep(beat).await;
                            }
                        }
                    })
                    .build();
            }
            madsim::time::sleep(duration).await;
            count.load(std::sync::atomic::Ordering::Relaxed)
        })
    })
    .join()
    .unwrap();
    (wall.elapsed(), received)
}

fn calm(algorithm: &str, n: usize) -> Scenario {
    Scenario::parse(
        "bench.toml",
        &format!("algorithm = \"{algorithm}\"\nnodes = {n}\nduration = \"20s\"\n[membership]\nlease = \"2s\"\n"),
    )
    .unwrap()
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/lease-all-faults.toml");
    let scn = Scenario::load(&root).unwrap();
    let n = scn.sim_nodes().len();
    let beat = scn.membership_cfg().beat;
    let (mut sim_wall, mut delivered, mut published) = (Duration::ZERO, 0u64, 0u64);
    for seed in 0..SEEDS {
        let r = run_seed(&scn, seed, "bench");
        sim_wall += r.figures.wall_time;
        delivered += r.figures.fabric.delivered;
        published += r.figures.fabric.published;
    }
    let sim_time = scn.duration.0 * SEEDS as u32;
    let beats = sim_time.as_secs_f64() / beat.as_secs_f64();
    // The same pattern on raw endpoints: as many point-to-point messages per beat.
    let per_node = ((delivered as f64 / beats) / (n * (n - 1)) as f64).round().max(1.0) as usize;
    let (mut raw_wall, mut raw_received) = (Duration::ZERO, 0u64);
    for seed in 0..SEEDS {
        let (w, c) = raw_madsim(n, scn.duration.0, beat, per_node, seed);
        raw_wall += w;
        raw_received += c;
    }
    println!("== simulator speed ({SEEDS} seeds of {}, {n} nodes)", scn.name);
    println!("leasehold-sim: {:.0} simulated s in {:.2} wall s = {:.0}x real time; {published} publishes, {delivered} deliveries", sim_time.as_secs_f64(), sim_wall.as_secs_f64(), sim_time.as_secs_f64() / sim_wall.as_secs_f64());
    println!("raw madsim:    {:.0} simulated s in {:.2} wall s = {:.0}x real time; {raw_received} deliveries ({per_node} msg/beat/peer)", sim_time.as_secs_f64(), raw_wall.as_secs_f64(), sim_time.as_secs_f64() / raw_wall.as_secs_f64());
    println!(
        "ratio: leasehold-sim runs at {:.2}x the speed of raw madsim endpoints",
        raw_wall.as_secs_f64() / sim_wall.as_secs_f64()
    );
    println!();
    println!("== deliveries per beat (calm, 20 s, lease 2 s, beat 100 ms)");
    println!("{:>4} {:>14} {:>14} {:>8}", "N", "lease", "allcall", "ratio");
    for n in [8, 16, 32] {
        let per_beat = |alg: &str| {
            let s = calm(alg, n);
            let r = run_seed(&s, 1, "bench");
            r.figures.fabric.delivered as f64 / (s.duration.0.as_secs_f64() / 0.1)
        };
        let (l, a) = (per_beat("lease"), per_beat("allcall"));
        println!("{n:>4} {l:>14.1} {a:>14.1} {:>7.1}x", a / l);
    }
}
