//! Simulator benchmark (a plain program: `cargo bench -p leasehold-sim`).
//!
//! 1. Simulated seconds per wall second for a 5-node `lease` cluster under the full nemesis
//!    (`scenarios/lease-all-faults.toml`), run as a sweep runs it (`run_seed_lean`), against
//!    the same load on raw madsim endpoints (as many 256-byte messages per simulated second
//!    between 5 nodes), in one run: one seed of each in turn.
//! 2. Scaling: N = 3, 5, 9, 17 and 33 nodes, calm and under the full nemesis: speed-up,
//!    deliveries per simulated second, and the peak memory of a process that ran only that
//!    case (each case runs in a child process of this program, so peaks do not mix).
//!
//! The last line is `speedup=<x> ratio=<y>`: the 5-node full-nemesis speed-up and its ratio
//! to raw madsim's, for scripts that track them.

use leasehold_sim::{run_seed_lean, Scenario};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SEEDS: u64 = 20;
/// The environment variable that makes this program one scaling case's child process.
const CHILD: &str = "LEASEHOLD_BENCH_CASE";

/// `nodes` endpoints, each sending a 256-byte message to every other one every `period`.
fn raw_madsim(nodes: usize, duration: Duration, period: Duration, seed: u64) -> (Duration, u64) {
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
                            // On a fixed beat: the sends themselves take simulated time, and
                            // sleeping a whole period after them would carry less load.
                            let mut next = madsim::time::Instant::now();
                            loop {
                                for (j, a) in addrs.iter().enumerate() {
                                    if j != i {
                                        let _ = ep.send_to(*a, 0, &payload).await;
                                    }
                                }
                                next += period;
                                madsim::time::sleep_until(next).await;
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

fn all_faults() -> Scenario {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/lease-all-faults.toml");
    Scenario::load(&root).unwrap()
}

/// A scaling case: `n` nodes, calm or under the full nemesis.
fn case(n: usize, full: bool) -> Scenario {
    if full {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/lease-all-faults.toml"))
                .unwrap();
        let text = text
            .lines()
            .map(|l| {
                if l.starts_with("nodes =") {
                    format!("nodes = {n}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        Scenario::parse("bench-full.toml", &text).unwrap()
    } else {
        Scenario::parse(
            "bench-calm.toml",
            &format!("nodes = {n}\nduration = \"60s\"\n[membership]\nlease = \"2s\"\n"),
        )
        .unwrap()
    }
}

/// Peak resident memory of this process so far, in MB (Linux's `VmHWM`).
fn peak_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// One scaling case, in this (child) process: prints `speedup deliveries_per_s peak_mb`.
fn child(spec: &str) {
    let (n, full) = spec.split_once(':').unwrap();
    let scn = case(n.parse().unwrap(), full == "full");
    let seeds = 2;
    let (mut wall, mut delivered) = (Duration::ZERO, 0u64);
    for seed in 0..seeds {
        let r = run_seed_lean(&scn, seed, "bench");
        wall += r.figures.wall_time;
        delivered += r.figures.fabric.delivered;
    }
    let sim = scn.duration.0.as_secs_f64() * seeds as f64;
    println!("{} {} {}", sim / wall.as_secs_f64(), delivered as f64 / sim, peak_mb());
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        return child(&spec);
    }
    let scn = all_faults();
    let n = scn.sim_nodes().len();
    // The simulator's load, to give raw madsim the same: as many point-to-point messages per
    // simulated second, each node sending to every other one at a steady period.
    let (mut delivered, mut published) = (0u64, 0u64);
    for seed in 0..SEEDS {
        let r = run_seed_lean(&scn, seed, "bench");
        delivered += r.figures.fabric.delivered;
        published += r.figures.fabric.published;
    }
    let sim_time = scn.duration.0 * SEEDS as u32;
    let per_pair_per_s = delivered as f64 / sim_time.as_secs_f64() / (n * (n - 1)) as f64;
    let period = Duration::from_secs_f64(1.0 / per_pair_per_s);
    // Then both, a seed of each in turn, so that a machine whose speed drifts during the
    // bench slows both sides alike and the ratio stays meaningful.
    let (mut sim_wall, mut raw_wall, mut raw_received) = (Duration::ZERO, Duration::ZERO, 0u64);
    for seed in 0..SEEDS {
        sim_wall += run_seed_lean(&scn, seed, "bench").figures.wall_time;
        let (w, c) = raw_madsim(n, scn.duration.0, period, seed);
        raw_wall += w;
        raw_received += c;
    }
    let speedup = sim_time.as_secs_f64() / sim_wall.as_secs_f64();
    let raw_speedup = sim_time.as_secs_f64() / raw_wall.as_secs_f64();
    println!("== simulator speed ({SEEDS} seeds of {}, {n} nodes)", scn.name);
    println!("leasehold-sim: {:.0} simulated s in {:.2} wall s = {speedup:.0}x real time; {published} publishes, {delivered} deliveries", sim_time.as_secs_f64(), sim_wall.as_secs_f64());
    println!("raw madsim:    {:.0} simulated s in {:.2} wall s = {raw_speedup:.0}x real time; {raw_received} deliveries (one message to each peer every {period:?})", sim_time.as_secs_f64(), raw_wall.as_secs_f64());
    println!();
    println!("== scaling (2 seeds of 60 simulated s per case, each case in its own process)");
    println!(
        "{:>4} {:>6} {:>10} {:>16} {:>14} {:>12}",
        "N", "faults", "speed-up", "deliveries/s", "cost/delivery", "peak MB"
    );
    let exe = std::env::current_exe().unwrap();
    for n in [3, 5, 9, 17, 33] {
        for full in [false, true] {
            let spec = format!("{n}:{}", if full { "full" } else { "calm" });
            let out = Command::new(&exe).env(CHILD, &spec).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let v: Vec<f64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            let [speed, per_s, peak] = v[..] else {
                println!("{spec}: child failed: {}", String::from_utf8_lossy(&out.stderr));
                continue;
            };
            // Wall time per delivery: constant if cost grows no faster than deliveries.
            let us_per_delivery = 1e6 / (speed * per_s);
            println!(
                "{n:>4} {:>6} {speed:>9.0}x {per_s:>16.0} {:>12.2}us {peak:>12.1}",
                if full { "full" } else { "calm" },
                us_per_delivery
            );
        }
    }
    println!();
    println!(
        "speedup={speedup:.0} ratio={:.2}",
        raw_wall.as_secs_f64() / sim_wall.as_secs_f64()
    );
}
