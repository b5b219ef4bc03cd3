//! `leasehold-sim`: run scenario files over many seeds, replay one seed.

use clap::{Parser, Subcommand};
use leasehold::Algorithm;

use leasehold_sim::sweep::{scenario_files, sweep_opts, JsonSummary, Summary, SweepOptions};
use leasehold_sim::{run_seed, Scenario, ScenarioError};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod check;
mod hunt;
mod merge;
mod real;
mod replay;
mod run;
mod shrink;

use merge::cmd_merge;
use replay::cmd_replay;
use run::{cmd_run, Outputs};
use shrink::cmd_shrink;

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
        #[arg(long, value_parser = at_least_one)]
        seeds: Option<u64>,
        /// Run only this seed.
        #[arg(long, conflicts_with_all = ["shard", "shards", "seeds", "first_seed"])]
        seed: Option<u64>,
        /// First seed of the sweep (default: the scenario's `first_seed`).
        #[arg(long)]
        first_seed: Option<u64>,
        /// Override the scenarios' algorithm.
        #[arg(long)]
        algorithm: Option<Algorithm>,
        /// Override the scenarios' duration (for example `24h`, for a soak run).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<std::time::Duration>,
        /// One JSON object per scenario instead of the table (`merge` reads them back).
        #[arg(long)]
        json: bool,
        /// Run only shard I of N (`I/N`, 0-based): seeds s with s % N == I.
        #[arg(long, conflicts_with = "shards")]
        shard: Option<String>,
        /// Run one shard of N, its index read from JOB_COMPLETION_INDEX (a Kubernetes
        /// Indexed Job sets it).
        #[arg(long, value_parser = at_least_one)]
        shards: Option<u64>,
        /// Swarm testing: each seed turns on a random subset of the scenario's fault classes,
        /// at random intensities within the file's ranges (`replay --swarm` reproduces it).
        #[arg(long)]
        swarm: bool,
        /// Run every seed, even after a known-bad scenario is caught (to measure how often).
        #[arg(long)]
        keep_going: bool,
        /// For every failing seed, write its trace, an SVG timeline and a Perfetto trace here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// With --out: write them for passing seeds too.
        #[arg(long, requires = "out")]
        out_all: bool,
        /// Seeds run at once, each on its own thread (default: one per CPU). The results do
        /// not depend on it.
        #[arg(long, value_parser = at_least_one)]
        jobs: Option<u64>,
    },
    /// Combine the `run --json` lines of a sweep's shards into one summary table and one exit
    /// code (1 if any scenario failed its expectation); or the `hunt --json` lines of a hunt's
    /// shards (1 if any shard found a failure).
    Merge {
        /// Files of `run --json` lines (`-` reads standard input).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// One merged JSON object per scenario instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Shrink a failing seed to a minimal scenario (every remaining fault step, node and
    /// scripted action needed; shortest run; plainest network), written to the
    /// `scenarios/regressions/` folder of the repository that holds FILE.
    Shrink {
        /// The scenario file.
        file: PathBuf,
        /// The failing seed.
        #[arg(long)]
        seed: u64,
        /// How `run` ran the seed.
        #[command(flatten)]
        ran: RanAs,
        /// Write the minimal scenario to this file instead.
        #[arg(long)]
        out_file: Option<PathBuf>,
        /// At most this many simulations while shrinking.
        #[arg(long, default_value_t = 2000)]
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
        /// Also print, per scenario and figure, the real seeds' spread, the simulated median
        /// of the same seeds, and whether that median lies within the real spread.
        #[arg(long)]
        compare: bool,
    },
    /// Measure how the real nats-server's routes behave under the real runner's cuts and
    /// restarts on this machine (two servers on loopback): when a cut route closes, what a
    /// short cut delivers late, how soon a route is usable after a heal or a restart. The
    /// numbers behind the `[network] route_*` defaults.
    Calibrate {
        /// Repetitions of each cut length and of the restart.
        #[arg(long, default_value_t = 3)]
        trials: usize,
        /// Cut lengths to try.
        #[arg(long, value_delimiter = ',', default_value = "500ms,1s,2s,3s,5s,8s", value_parser = humantime::parse_duration)]
        cuts: Vec<std::time::Duration>,
    },
    /// Model-check the production lease machine: every path of a small cluster to a bounded
    /// depth, with faults of the chosen classes between the ticks of true time; exits 1 with a
    /// counterexample if an invariant breaks.
    Check(check::CheckArgs),
    /// Coverage-guided search: run the files, keep the runs that reach new abstract election
    /// states, mutate their fault schedules, until a run breaks a file's expectation (shrunk
    /// and written to the `scenarios/regressions/` folder, exit 1) or the budget runs out
    /// (exit 0).
    Hunt {
        /// Scenario files or directories (each must expect no violation).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Per file: wall time (`10m`, `90s`) or a number of simulations (`500`, the same
        /// hunt on any machine).
        #[arg(long, default_value = "10m")]
        budget: leasehold_sim::hunt::Budget,
        /// The seed every choice of the hunt is drawn from.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Hunt as shard I of N (`I/N`, 0-based): each shard draws its own stream.
        #[arg(long)]
        shard: Option<String>,
        /// Write failures here instead of the repository's `scenarios/regressions/`.
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// One JSON object per file instead of the text (`merge` reads them back).
        #[arg(long)]
        json: bool,
        /// At most this many simulations to shrink a failure.
        #[arg(long, default_value_t = 600)]
        shrink_trials: usize,
    },
    /// Replay one seed of one scenario and print its full trace and report.
    Replay {
        /// The scenario file.
        file: PathBuf,
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// How `run` ran the seed.
        #[command(flatten)]
        ran: RanAs,
        /// Write the trace here instead of standard output.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Print the run as one JSON object (and no trace) instead.
        #[arg(long)]
        json: bool,
        /// Write the trace, an SVG timeline and a Perfetto trace into this directory.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// How `run` ran a seed, for `replay` and `shrink` to run it the same way.
#[derive(clap::Args, Clone, Copy)]
struct RanAs {
    /// The seed ran under `run --swarm`.
    #[arg(long)]
    swarm: bool,
    /// It ran with `run --algorithm`.
    #[arg(long)]
    algorithm: Option<Algorithm>,
    /// It ran with `run --duration`.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<std::time::Duration>,
}

fn load(path: &Path, algorithm: Option<Algorithm>) -> Result<Scenario, ScenarioError> {
    let mut s = Scenario::load(path)?;
    if let Some(a) = algorithm {
        s.algorithm = a;
    }
    Ok(s)
}

impl RanAs {
    /// A scenario file with `--algorithm` and `--duration` applied; a clear error (exit 2)
    /// if it cannot be read or the duration does not fit its timeline.
    fn load(&self, path: &Path) -> Result<Scenario, ExitCode> {
        let mut s = load(path, self.algorithm).map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(2)
        })?;
        if let Some(d) = self.duration {
            s.with_duration(d).map_err(|e| {
                eprintln!("error: {}: --duration: {e}", path.display());
                ExitCode::from(2)
            })?;
        }
        Ok(s)
    }

    /// The flags that reproduce `--algorithm` and `--duration` in a replay command
    /// (`--swarm` is added by the swarm run itself).
    fn flags(&self) -> String {
        let mut f = String::new();
        if let Some(a) = self.algorithm {
            f.push_str(&format!(" --algorithm {a}"));
        }
        if let Some(d) = self.duration {
            f.push_str(&format!(" --duration \"{}\"", humantime::format_duration(d)));
        }
        f
    }
}

/// A count that must be positive (`--seeds 0` would report on nothing and pass).
fn at_least_one(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
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
            duration,
            json,
            shard,
            shards,
            swarm,
            keep_going,
            out,
            out_all,
            jobs,
        } => {
            let shard = match shard_choice(shard.as_deref(), shards, std::env::var("JOB_COMPLETION_INDEX").ok()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let seeds = SeedChoice {
                seed,
                seeds,
                first_seed,
                shard,
            };
            let options = SweepOptions {
                swarm,
                keep_going,
                shard,
                whole: out_all,
                jobs: jobs.map_or_else(
                    || std::thread::available_parallelism().map_or(1, usize::from),
                    |j| usize::try_from(j).unwrap_or(usize::MAX),
                ),
            };
            let out = out.map(|dir| Outputs { dir, all: out_all });
            cmd_run(&paths, (algorithm, duration), &seeds, options, json, out.as_ref())
        }
        Cmd::Merge { files, json } => cmd_merge(&files, json),
        Cmd::Check(args) => check::cmd_check(&args),
        Cmd::Shrink {
            file,
            seed,
            ran,
            out_file,
            max_trials,
        } => cmd_shrink(&file, seed, ran, out_file.as_deref(), max_trials),
        Cmd::Replay {
            file,
            seed,
            ran,
            trace,
            json,
            out,
        } => cmd_replay(&file, seed, ran, trace.as_deref(), json, out.as_deref()),
        Cmd::Hunt {
            paths,
            budget,
            seed,
            shard,
            out_dir,
            json,
            shrink_trials,
        } => {
            let shard = match shard.as_deref().map(|s| parse_shard(s).ok_or(s)) {
                None => (0, 1),
                Some(Ok(s)) => s,
                Some(Err(s)) => {
                    eprintln!("error: --shard {s:?}: expected I/N with I < N");
                    return ExitCode::from(2);
                }
            };
            hunt::cmd_hunt(&hunt::HuntArgs {
                paths: &paths,
                budget,
                seed,
                shard,
                out_dir: out_dir.as_deref(),
                json,
                shrink_trials,
            })
        }
        Cmd::Calibrate { trials, cuts } => real::cmd_calibrate(&cuts, trials),
        Cmd::Real {
            paths,
            seeds,
            seed,
            json,
            out,
            agent,
            compare,
        } => real::cmd_real(
            &paths,
            &SeedChoice::real(seed, seeds),
            json,
            out.as_deref(),
            agent,
            compare,
        ),
    }
}

/// The shard to run: `--shard I/N`, or `--shards N` with I from the batch system's
/// environment (`JOB_COMPLETION_INDEX`, as a Kubernetes Indexed Job sets it).
fn shard_choice(shard: Option<&str>, shards: Option<u64>, index: Option<String>) -> Result<Option<(u64, u64)>, String> {
    match (shard, shards) {
        (Some(s), _) => parse_shard(s)
            .map(Some)
            .ok_or_else(|| format!("--shard takes I/N with 0 <= I < N, e.g. 0/4; got {s:?}")),
        (None, Some(n)) => {
            let Some(i) = index else {
                return Err(format!(
                    "--shards {n} reads this shard's index from JOB_COMPLETION_INDEX, which is not set \
                     (a Kubernetes Indexed Job sets it; elsewhere use --shard I/{n})"
                ));
            };
            match i.trim().parse::<u64>() {
                Ok(i) if i < n => Ok(Some((i, n))),
                _ => Err(format!("JOB_COMPLETION_INDEX={i:?} is not an index below --shards {n}")),
            }
        }
        (None, None) => Ok(None),
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
    /// Real mode's: `--seed S`, or `--seeds N` (default 1) from the scenario's first seed.
    fn real(seed: Option<u64>, seeds: Option<u64>) -> Self {
        SeedChoice {
            seed,
            seeds: Some(seeds.unwrap_or(1)),
            first_seed: None,
            shard: None,
        }
    }

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
pub(crate) fn load_all(
    paths: &[PathBuf],
    algorithm: Option<Algorithm>,
) -> Result<Vec<(String, Scenario)>, ScenarioError> {
    let mut scns = Vec::new();
    for p in paths {
        for f in scenario_files(p)? {
            scns.push((f.display().to_string(), load(&f, algorithm)?));
        }
    }
    Ok(scns)
}
