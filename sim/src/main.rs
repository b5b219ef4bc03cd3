//! `leasehold-sim`: run scenario files over many seeds, replay one seed.

use clap::{Parser, Subcommand};
use leasehold::Algorithm;
use leasehold_sim::sweep::{scenario_files, sweep, Summary};
use leasehold_sim::{run_seed, Scenario, ScenarioError};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod real_cmd;

/// Deterministic simulation of leasehold clusters under a seeded nemesis.
#[derive(Parser)]
#[command(name = "leasehold-sim", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run scenario files (or directories of them) over their seeds.
    Run {
        /// Scenario files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Seeds per scenario (default: the scenario's `seeds`).
        #[arg(long)]
        seeds: Option<u64>,
        /// Run only this seed.
        #[arg(long)]
        seed: Option<u64>,
        /// First seed of the sweep (default: the scenario's `first_seed`).
        #[arg(long)]
        first_seed: Option<u64>,
        /// Override the scenarios' algorithm.
        #[arg(long)]
        algorithm: Option<Algorithm>,
        /// One JSON object per scenario instead of the table.
        #[arg(long)]
        json: bool,
        /// Run only shard I of N (`I/N`, 0-based): seeds s with s % N == I.
        #[arg(long)]
        shard: Option<String>,
        /// For every failing seed, write its trace, an SVG timeline and a Perfetto trace here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Shrink a failing seed to a minimal scenario (fewest faults, shortest run, fewest nodes),
    /// written to scenarios/regressions/ (or --out).
    Shrink {
        /// The scenario file.
        file: PathBuf,
        /// The failing seed.
        #[arg(long)]
        seed: u64,
        /// Where to write the minimal scenario (a file or a directory).
        #[arg(long, default_value = "scenarios/regressions")]
        out: PathBuf,
        /// At most this many simulations while shrinking.
        #[arg(long, default_value_t = 500)]
        max_trials: usize,
    },
    /// Run scenario files against real processes on this machine (loopback only): one
    /// nats-server and one leasehold-agent per node, the same fault plan as the simulator's
    /// for each seed, judged by the same oracle, with the simulated figures beside.
    Real {
        /// Scenario files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Seeds per scenario (default: 1; each seed takes the scenario's duration).
        #[arg(long)]
        seeds: Option<u64>,
        /// Run only this seed.
        #[arg(long)]
        seed: Option<u64>,
        /// One JSON object per scenario instead of the table.
        #[arg(long)]
        json: bool,
        /// For every seed, write its trace, an SVG timeline and a Perfetto trace here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The agent binary (default: leasehold-agent beside this program).
        #[arg(long)]
        agent: Option<PathBuf>,
    },
    /// Replay one seed of one scenario and print its report and full trace.
    Replay {
        /// The scenario file.
        file: PathBuf,
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// Write the trace here instead of standard output.
        #[arg(long)]
        trace: Option<PathBuf>,
    },
}

fn load(path: &Path, algorithm: Option<Algorithm>) -> Result<Scenario, ScenarioError> {
    let mut s = Scenario::load(path)?;
    if let Some(a) = algorithm {
        s.algorithm = a;
    }
    Ok(s)
}

fn parse_shard(s: &str) -> Option<(u64, u64)> {
    let (i, n) = s.split_once('/')?;
    let (i, n) = (i.parse().ok()?, n.parse().ok()?);
    (n > 0 && i < n).then_some((i, n))
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::Run {
            paths,
            seeds,
            seed,
            first_seed,
            algorithm,
            json,
            shard,
            out,
        } => {
            let shard = match shard.as_deref().map(parse_shard) {
                Some(None) => {
                    eprintln!("error: --shard takes I/N with 0 <= I < N, e.g. 0/4");
                    return ExitCode::from(2);
                }
                Some(Some(s)) => Some(s),
                None => None,
            };
            let seeds = SeedChoice {
                seed,
                seeds,
                first_seed,
                shard,
            };
            cmd_run(&paths, algorithm, &seeds, json, out.as_deref())
        }
        Cmd::Shrink {
            file,
            seed,
            out,
            max_trials,
        } => cmd_shrink(&file, seed, &out, max_trials),
        Cmd::Replay { file, seed, trace } => cmd_replay(&file, seed, trace.as_deref()),
        Cmd::Real {
            paths,
            seeds,
            seed,
            json,
            out,
            agent,
        } => {
            let seeds = SeedChoice {
                seed,
                seeds: Some(seeds.unwrap_or(1)),
                first_seed: None,
                shard: None,
            };
            real_cmd::cmd_real(&paths, &seeds, json, out.as_deref(), agent)
        }
    }
}

/// Which seeds `run` runs of each scenario.
pub(crate) struct SeedChoice {
    seed: Option<u64>,
    seeds: Option<u64>,
    first_seed: Option<u64>,
    shard: Option<(u64, u64)>,
}

impl SeedChoice {
    pub(crate) fn list(&self, scn: &Scenario) -> Vec<u64> {
        if let Some(s) = self.seed {
            return vec![s];
        }
        let first = self.first_seed.unwrap_or(scn.first_seed);
        (first..first + self.seeds.unwrap_or(scn.seeds))
            .filter(|s| self.shard.is_none_or(|(i, n)| s % n == i))
            .collect()
    }
}

/// [`load_all`], with a clear error and exit code 2 for bad input or no scenario at all.
pub(crate) fn load_some(paths: &[PathBuf], algorithm: Option<Algorithm>) -> Result<Vec<(String, Scenario)>, ExitCode> {
    match load_all(paths, algorithm) {
        Ok(s) if s.is_empty() => {
            eprintln!("error: no scenario files found");
            Err(ExitCode::from(2))
        }
        Ok(s) => Ok(s),
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// Every scenario under `paths`, parsed before anything runs: bad input simulates nothing.
fn load_all(paths: &[PathBuf], algorithm: Option<Algorithm>) -> Result<Vec<(String, Scenario)>, ScenarioError> {
    let mut scns = Vec::new();
    for p in paths {
        for f in scenario_files(p)? {
            scns.push((f.display().to_string(), load(&f, algorithm)?));
        }
    }
    Ok(scns)
}

fn cmd_run(
    paths: &[PathBuf],
    algorithm: Option<Algorithm>,
    seeds: &SeedChoice,
    json: bool,
    out: Option<&Path>,
) -> ExitCode {
    let scns = match load_some(paths, algorithm) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let tty = std::io::stderr().is_terminal() && !json;
    let mut summaries: Vec<Summary> = Vec::new();
    for (src, scn) in &scns {
        let sum = run_one(src, scn, &seeds.list(scn), tty, out);
        if json {
            println!("{}", serde_json::to_string(&sum.json()).unwrap_or_default());
        }
        summaries.push(sum);
    }
    if !json {
        print_table(&summaries);
    }
    let failed: Vec<&Summary> = summaries.iter().filter(|s| !s.met).collect();
    for s in &failed {
        match (&s.first_failing, s.expected_violation) {
            (Some(r), false) => eprintln!("\n{}", r.describe()),
            (_, true) => eprintln!(
                "\n{} ({}): expected a violation, none found in {} seeds",
                s.name, s.source, s.seeds
            ),
            _ => {}
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Sweeps one scenario, with a progress bar on a terminal, writing pictures of failing seeds
/// to `out`.
fn run_one(src: &str, scn: &Scenario, list: &[u64], tty: bool, out: Option<&Path>) -> Summary {
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new(list.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{msg:40} [{bar:30}] {pos}/{len} seeds {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message(scn.name.clone());
        b
    });
    let stem = Path::new(src)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sum = sweep(scn, src, list, |r| {
        if let Some(b) = &bar {
            b.inc(1);
        }
        if let (Some(dir), false) = (out, r.violations.is_empty()) {
            if let Err(e) = leasehold_sim::render::write_outputs(r, &stem, dir) {
                eprintln!("error: writing to {}: {e}", dir.display());
            }
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    sum
}

fn cmd_shrink(file: &Path, seed: u64, out: &Path, max_trials: usize) -> ExitCode {
    let scn = match load(file, None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let shrunk = match leasehold_sim::shrink::shrink(&scn, &file.display().to_string(), seed, max_trials) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".into());
    let dest = if out.extension().is_some_and(|x| x == "toml") {
        out.to_path_buf()
    } else {
        out.join(format!("{stem}-seed{seed}.toml"))
    };
    if let Some(dir) = dest.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(&dest, &shrunk.toml) {
        eprintln!("error: {}: {e}", dest.display());
        return ExitCode::from(2);
    }
    println!(
        "shrunk in {} simulations: fault steps {} -> {}, nodes {} -> {}, duration {:?} -> {:?}",
        shrunk.trials,
        shrunk.events.0,
        shrunk.events.1,
        shrunk.nodes.0,
        shrunk.nodes.1,
        shrunk.duration.0,
        shrunk.duration.1
    );
    println!(
        "{}",
        shrunk
            .report
            .describe()
            .replace("shrink.toml", &dest.display().to_string())
    );
    println!("wrote {}", dest.display());
    ExitCode::SUCCESS
}

fn cmd_replay(file: &Path, seed: u64, trace_out: Option<&Path>) -> ExitCode {
    let scn = match load(file, None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let r = run_seed(&scn, seed, &file.display().to_string());
    let text = r.trace.render();
    match trace_out {
        Some(p) => {
            if let Err(e) = std::fs::write(p, text) {
                eprintln!("error: {}: {e}", p.display());
                return ExitCode::from(2);
            }
        }
        None => print!("{text}"),
    }
    println!("{}", r.describe());
    if r.router.is_some() {
        println!("{}", r.router_summary());
    }
    println!("trace digest {:016x}", r.trace.digest);
    if r.shows(scn.expect.violation) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_table(rows: &[Summary]) {
    println!(
        "{:<52} {:<8} {:>6} {:>5} {:>10} {:>9} {:>8} {:>9} {:>8} {:>9} {:>9}  result",
        "scenario", "algo", "seeds", "viol", "first-fail", "sim", "wall", "speed-up", "changes", "fo-p50", "fo-p99"
    );
    for s in rows {
        let ms = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.0}ms"));
        println!(
            "{:<52} {:<8} {:>6} {:>5} {:>10} {:>8.0}s {:>7.2}s {:>8.0}x {:>8} {:>9} {:>9}  {}",
            s.name.chars().take(52).collect::<String>(),
            s.algorithm,
            s.seeds,
            s.violations,
            s.first_failing.as_ref().map_or("-".to_string(), |r| r.seed.to_string()),
            s.sim_time.as_secs_f64(),
            s.wall_time.as_secs_f64(),
            s.sim_time.as_secs_f64() / s.wall_time.as_secs_f64().max(1e-9),
            s.leader_changes,
            ms(s.failover_percentile(50.0)),
            ms(s.failover_percentile(99.0)),
            match (s.met, s.expected_violation) {
                (true, true) => "ok (violation caught, as expected)",
                (true, false) => "ok",
                (false, true) => "FAIL (expected violation not found)",
                (false, false) => "FAIL",
            }
        );
    }
}
