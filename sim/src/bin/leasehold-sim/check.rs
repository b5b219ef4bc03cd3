//! `leasehold-sim check`: exhaustive model checking of the lease machine.

use leasehold::{Algorithm, Bug};
use leasehold_sim::check::{check, CheckOptions, FaultClass};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The arguments of `check`.
#[derive(clap::Args)]
pub(crate) struct CheckArgs {
    /// Agents in the cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=5))]
    nodes: u64,
    /// The election algorithm (`allcall`: hnatsd's, which allows two leaders by design; the
    /// checker finds them).
    #[arg(long, default_value = "lease")]
    algorithm: Algorithm,
    /// Steps per path (ticks and faults); 16 covers an election, the leader's
    /// crash, its restart and quarantine, and a lease held again, with three agents.
    #[arg(long, default_value_t = 16)]
    depth: u32,
    /// Faults per path at most.
    #[arg(long, default_value_t = 2)]
    budget: u32,
    /// Fault classes, comma-separated (drop, delay, duplicate, crash, wipe, rollback, clone,
    /// partition, forge; default: all but forge).
    #[arg(long, value_delimiter = ',', value_parser = FaultClass::parse)]
    faults: Vec<FaultClass>,
    /// Plant this bug in every agent (its name, as in scenario files).
    #[arg(long, value_parser = parse_bug)]
    bug: Option<Bug>,
    /// Lease time.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "600ms")]
    lease: Duration,
    /// Heartbeat period.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "100ms")]
    beat: Duration,
    /// True time per tick, at least 5 ms: a message arrives at the next tick boundary (default:
    /// the beat). A finer tick shows errors smaller than a beat's latency, at the price of depth.
    #[arg(long, value_parser = humantime::parse_duration)]
    tick: Option<Duration>,
    /// Drift bound (ppm): each clock runs at minus it or plus it (every assignment).
    #[arg(long, default_value_t = 50_000)]
    drift_ppm: u32,
    /// Also let clocks run exactly (3^n assignments of rates rather than 2^n).
    #[arg(long)]
    exact_clocks: bool,
    /// Explore only this assignment of clock rates: one rate error (ppm) per node, comma-separated
    /// (a counterexample's `clocks (ppm)` line).
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    clocks: Vec<i64>,
    /// Run seeds to explore (0..K), each with every assignment of clock rates: each seed gives
    /// the agents other jitter, as the simulator's seed does.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Threads (default: one per CPU); the result does not depend on it.
    #[arg(long)]
    jobs: Option<usize>,
    /// Give node n0 this `cluster_size` (a misconfigured node).
    #[arg(long)]
    misconfigured_size: Option<usize>,
    /// Give node n0 this lease time (a misconfigured node).
    #[arg(long, value_parser = humantime::parse_duration)]
    misconfigured_lease: Option<Duration>,
    /// Do not judge liveness at the leaves.
    #[arg(long)]
    no_liveness: bool,
    /// Stop after this many distinct states per assignment of clock rates (the check then
    /// says it is not exhaustive).
    #[arg(long, default_value_t = 20_000_000)]
    max_states: u64,
    /// Write the counterexample here as a scenario file (quantised time, every fault a
    /// scripted step) that `replay` runs.
    #[arg(long)]
    out_file: Option<PathBuf>,
}

fn parse_bug(s: &str) -> Result<Bug, String> {
    Bug::ALL
        .into_iter()
        .find(|b| b.name() == s)
        .ok_or_else(|| format!("unknown bug {s:?}"))
}

/// Runs the check and prints its figures and any counterexample.
pub(crate) fn cmd_check(a: &CheckArgs) -> ExitCode {
    if a.tick.is_some_and(|t| t < Duration::from_millis(5)) {
        eprintln!("error: --tick must be at least 5ms (a tick holds its arrivals and its steps)");
        return ExitCode::from(2);
    }
    if !a.clocks.is_empty() && a.clocks.len() != a.nodes as usize {
        eprintln!(
            "error: --clocks gives {} rates for {} nodes: one per node",
            a.clocks.len(),
            a.nodes
        );
        return ExitCode::from(2);
    }
    let opts = options(a);
    let r = check(&opts);
    let secs = r.wall.as_secs_f64();
    println!(
        "nodes {} depth {} budget {} faults {}: {} states explored, {} distinct, {} leaves, {:.0} states/s, {:.2} s{}",
        opts.nodes,
        opts.depth,
        opts.budget,
        opts.faults.iter().map(|c| c.name()).collect::<Vec<_>>().join(","),
        r.explored,
        r.distinct,
        r.leaves,
        r.explored as f64 / secs.max(1e-9),
        secs,
        if r.exhaustive {
            ", exhaustive"
        } else {
            ", NOT exhaustive (state cap reached)"
        }
    );
    match r.counterexample {
        None => {
            println!("no violation");
            if r.exhaustive {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Some(c) => {
            print!("{}", c.render());
            if let Some(f) = &a.out_file {
                match c.scenario(&opts) {
                    Ok(text) => match std::fs::write(f, &text) {
                        Ok(()) => println!(
                            "written as a scenario: {} (leasehold-sim replay {} --seed {})",
                            f.display(),
                            f.display(),
                            c.seed
                        ),
                        Err(e) => eprintln!("error: cannot write {}: {e}", f.display()),
                    },
                    Err(why) => eprintln!("error: no scenario written: {why}"),
                }
            }
            ExitCode::from(1)
        }
    }
}

/// The check the arguments ask for.
fn options(a: &CheckArgs) -> CheckOptions {
    CheckOptions {
        nodes: a.nodes as usize,
        algorithm: a.algorithm,
        depth: a.depth,
        budget: a.budget,
        faults: if a.faults.is_empty() {
            FaultClass::DEFAULT.to_vec()
        } else {
            a.faults.clone()
        },
        bug: a.bug,
        lease: a.lease,
        beat: a.beat,
        tick: a.tick,
        drift_ppm: a.drift_ppm,
        exact_clocks: a.exact_clocks,
        clocks: (!a.clocks.is_empty()).then(|| a.clocks.clone()),
        seeds: a.seeds,
        jobs: a
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        misconfigured_size: a.misconfigured_size,
        misconfigured_lease: a.misconfigured_lease,
        liveness: !a.no_liveness,
        max_states: a.max_states,
    }
}
