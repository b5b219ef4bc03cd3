//! `leasehold-sim`: run scenario files over many seeds, replay one seed.

use clap::{Parser, Subcommand};
use leasehold::Algorithm;
use leasehold_sim::merge;
use leasehold_sim::sweep::{scenario_files, sweep_opts, JsonSummary, Summary, SweepOptions};
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
    /// code (1 if any scenario failed its expectation).
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

/// Where `run` writes pictures, and for which seeds.
struct Outputs {
    dir: PathBuf,
    /// Passing seeds too.
    all: bool,
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
    (algorithm, duration): (Option<Algorithm>, Option<std::time::Duration>),
    seeds: &SeedChoice,
    options: SweepOptions,
    json: bool,
    out: Option<&Outputs>,
) -> ExitCode {
    let mut scns = match load_some(paths, algorithm) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Some(d) = duration {
        for (src, scn) in scns.iter_mut() {
            if let Err(e) = scn.with_duration(d) {
                eprintln!("error: {src}: --duration: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let tty = std::io::stderr().is_terminal() && !json;
    let mut summaries: Vec<Summary> = Vec::new();
    let flags = RanAs {
        swarm: options.swarm,
        algorithm,
        duration,
    }
    .flags();
    for (src, scn) in &scns {
        let mut sum = run_one(src, scn, &seeds.list(scn), options, tty, out);
        if let Some(r) = sum.first_failing.as_mut() {
            r.replay.push_str(&flags);
        }
        if json {
            println!("{}", serde_json::to_string(&sum.json()).unwrap_or_default());
        }
        summaries.push(sum);
    }
    if !json {
        print_table(&summaries.iter().map(Summary::json).collect::<Vec<_>>());
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

/// The file name's stem, for output names.
fn stem_of(src: &str) -> String {
    Path::new(src)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".into())
}

/// Sweeps one scenario, with a progress bar on a terminal, writing pictures to `out`.
fn run_one(
    src: &str,
    scn: &Scenario,
    list: &[u64],
    options: SweepOptions,
    tty: bool,
    out: Option<&Outputs>,
) -> Summary {
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new(list.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{msg:40} [{bar:30}] {pos}/{len} seeds {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message(scn.name.clone());
        b
    });
    let stem = stem_of(src);
    let sum = sweep_opts(scn, src, list, options, |r| {
        if let Some(b) = &bar {
            b.inc(1);
        }
        if let Some(o) = out.filter(|o| o.all || !r.violations.is_empty()) {
            if let Err(e) = leasehold_sim::render::write_outputs(r, &stem, &o.dir) {
                eprintln!("error: writing to {}: {e}", o.dir.display());
            }
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    sum
}

fn cmd_merge(files: &[PathBuf], json: bool) -> ExitCode {
    let mut lines = Vec::new();
    for f in files {
        let name = f.display().to_string();
        let text = if name == "-" {
            let mut t = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut t).map(|_| t)
        } else {
            std::fs::read_to_string(f)
        };
        match text
            .map_err(|e| format!("{name}: {e}"))
            .and_then(|t| merge::parse_lines(&name, &t))
        {
            Ok(l) => lines.extend(l),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let merged = match merge::merge(lines) {
        Ok(m) if m.is_empty() => {
            eprintln!("error: no summaries in {} file(s)", files.len());
            return ExitCode::from(2);
        }
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        for m in &merged {
            println!("{}", serde_json::to_string(m).unwrap_or_default());
        }
    } else {
        print_table(&merged);
    }
    for m in merged.iter().filter(|m| !m.ok) {
        match (&m.replay, m.expected_violation) {
            (_, true) => eprintln!(
                "\n{} ({}): expected a violation, none found in {} seeds",
                m.name, m.file, m.seeds
            ),
            (Some(r), false) => eprintln!(
                "\n{} ({}): {} of {} seeds failed (first: {:?}); replay: {r}",
                m.name, m.file, m.violations, m.seeds, m.failing_seeds
            ),
            _ => {}
        }
    }
    if merged.iter().all(|m| m.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Where `shrink` writes by default: the `scenarios/regressions/` folder of the repository
/// that holds `file` (the nearest enclosing `scenarios` folder, else `scenarios/` beside the
/// nearest `.git`), never relative to the working directory.
fn regressions_dir(file: &Path) -> Result<PathBuf, String> {
    let abs = std::fs::canonicalize(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut dirs = abs.ancestors().skip(1);
    if let Some(d) = dirs.clone().find(|d| d.file_name().is_some_and(|n| n == "scenarios")) {
        return Ok(d.join("regressions"));
    }
    if let Some(d) = dirs.find(|d| d.join(".git").exists()) {
        return Ok(d.join("scenarios").join("regressions"));
    }
    Err(format!(
        "{} is in no `scenarios` folder and no git repository: give --out-file",
        file.display()
    ))
}

fn cmd_shrink(file: &Path, seed: u64, ran: RanAs, out_file: Option<&Path>, max_trials: usize) -> ExitCode {
    let scn = match ran.load(file) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let dest = match out_file {
        Some(f) => f.to_path_buf(),
        None => match regressions_dir(file) {
            Ok(d) => d.join(format!(
                "{}-seed{seed}{}.toml",
                stem_of(&file.display().to_string()),
                if ran.swarm { "-swarm" } else { "" }
            )),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let shrunk = match leasehold_sim::shrink::shrink(&scn, &file.display().to_string(), seed, ran.swarm, max_trials) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(&dest, &shrunk.toml) {
        eprintln!("error: {}: {e}", dest.display());
        return ExitCode::from(2);
    }
    println!("{}", shrunk.summary_line());
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

fn cmd_replay(
    file: &Path,
    seed: u64,
    ran: RanAs,
    trace_out: Option<&Path>,
    json: bool,
    out: Option<&Path>,
) -> ExitCode {
    let scn = match ran.load(file) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let src = file.display().to_string();
    let mut r = if ran.swarm {
        leasehold_sim::swarm::run_swarm_seed(&scn, seed, &src, leasehold_sim::record::Keep::Everything)
    } else {
        run_seed(&scn, seed, &src)
    };
    r.replay.push_str(&ran.flags());
    if let Some(p) = trace_out {
        if let Err(e) = std::fs::write(p, r.trace.render()) {
            eprintln!("error: {}: {e}", p.display());
            return ExitCode::from(2);
        }
    }
    if let Some(dir) = out {
        match leasehold_sim::render::write_outputs(&r, &stem_of(&src), dir) {
            Ok(files) => {
                for f in files {
                    eprintln!("wrote {}", f.display());
                }
            }
            Err(e) => {
                eprintln!("error: writing to {}: {e}", dir.display());
                return ExitCode::from(2);
            }
        }
    }
    if json {
        println!("{}", r.json(&src));
    } else {
        if trace_out.is_none() {
            print!("{}", r.trace.render());
        }
        if let Some(w) = &r.swarm {
            println!("{w}\n[faults]\n{}", w.faults);
        }
        println!("{}", r.describe());
        if r.router.is_some() {
            println!("{}", r.router_summary());
        }
        println!("trace digest {:016x}", r.trace.digest);
    }
    if r.shows(scn.expect.violation) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_table(rows: &[JsonSummary]) {
    println!(
        "{:<52} {:<8} {:>6} {:>5} {:>10} {:>9} {:>8} {:>9} {:>8} {:>9} {:>9} {:>7} {:>8}  result",
        "scenario",
        "algo",
        "seeds",
        "viol",
        "first-fail",
        "sim",
        "wall",
        "speed-up",
        "changes",
        "fo-p50",
        "fo-p99",
        "avail",
        "gap-max"
    );
    for s in rows {
        let ms = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.0}ms"));
        let name = if s.swarm {
            format!("{} [swarm]", s.name)
        } else {
            s.name.clone()
        };
        println!(
            "{:<52} {:<8} {:>6} {:>5} {:>10} {:>8.0}s {:>7.2}s {:>8.0}x {:>8} {:>9} {:>9} {:>7} {:>8}  {}",
            name.chars().take(52).collect::<String>(),
            s.algorithm,
            s.seeds,
            s.violations,
            s.first_failing_seed.map_or("-".to_string(), |x| x.to_string()),
            s.sim_seconds,
            s.wall_seconds,
            s.sim_seconds / s.wall_seconds.max(1e-9),
            s.leader_changes,
            ms(s.failover_p50_ms),
            ms(s.failover_p99_ms),
            s.availability_min
                .map_or("-".to_string(), |a| format!("{:.1}%", a * 100.0)),
            s.longest_gap_max_s.map_or("-".to_string(), |g| format!("{g:.2}s")),
            s.verdict()
        );
    }
}
