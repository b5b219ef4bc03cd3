//! `leasehold-sim run`: scenario files over many seeds, a table or `--json` lines, pictures.

use super::*;

/// Where `run` writes pictures, and for which seeds.
pub(crate) struct Outputs {
    pub(crate) dir: PathBuf,
    /// Passing seeds too.
    pub(crate) all: bool,
}

pub(crate) fn cmd_run(
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
pub(crate) fn stem_of(src: &str) -> String {
    Path::new(src)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".into())
}

/// Sweeps one scenario, with a progress bar on a terminal, writing pictures to `out`.
pub(crate) fn run_one(
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
            match leasehold_sim::render::write_outputs(r, &stem, &o.dir) {
                // Said on stderr (above the progress bar), so the table stays clean.
                Ok(paths) => {
                    let said = paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ");
                    match &bar {
                        Some(b) => b.suspend(|| eprintln!("wrote {said}")),
                        None => eprintln!("wrote {said}"),
                    }
                }
                Err(e) => eprintln!("error: writing to {}: {e}", o.dir.display()),
            }
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    sum
}

pub(crate) fn print_table(rows: &[JsonSummary]) {
    let name_of = |s: &JsonSummary| {
        if s.swarm {
            format!("{} [swarm]", s.name)
        } else {
            s.name.clone()
        }
    };
    // The first column fits the longest name: names are how a reader finds a scenario.
    let w = rows
        .iter()
        .map(|s| name_of(s).chars().count())
        .max()
        .unwrap_or(0)
        .max(8);
    println!(
        "{:<w$} {:<8} {:>6} {:>5} {:>10} {:>9} {:>8} {:>9} {:>8} {:>9} {:>9} {:>7} {:>8}  result",
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
        println!(
            "{:<w$} {:<8} {:>6} {:>5} {:>10} {:>8.0}s {:>7.2}s {:>8.0}x {:>8} {:>9} {:>9} {:>7} {:>8}  {}",
            name_of(s),
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
