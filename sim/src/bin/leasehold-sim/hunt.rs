//! `leasehold-sim hunt`: coverage-guided search for a failing schedule, shrunk and written
//! beside the other scenarios.

use super::*;
use crate::run::stem_of;
use crate::shrink::regressions_dir;
use leasehold_sim::hunt::{hunt, Budget, HuntOptions, HuntReport};

/// What `hunt` was asked.
pub(crate) struct HuntArgs<'a> {
    pub(crate) paths: &'a [PathBuf],
    pub(crate) budget: Budget,
    pub(crate) seed: u64,
    pub(crate) shard: (u64, u64),
    pub(crate) out_dir: Option<&'a Path>,
    pub(crate) json: bool,
    pub(crate) shrink_trials: usize,
}

pub(crate) fn cmd_hunt(a: &HuntArgs<'_>) -> ExitCode {
    let mut files = Vec::new();
    for p in a.paths {
        match scenario_files(p) {
            Ok(f) => files.extend(f),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let mut scns = Vec::new();
    for f in &files {
        match Scenario::load(f) {
            Ok(s) if s.expect.violation.any() || s.router.is_some() => {
                eprintln!(
                    "error: {}: hunt needs a lease or allcall scenario that expects no violation",
                    f.display()
                );
                return ExitCode::from(2);
            }
            Ok(s) => scns.push((f.clone(), s)),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let opts = HuntOptions {
        budget: a.budget,
        seed: a.seed,
        shard: a.shard,
        shrink_trials: a.shrink_trials,
    };
    let tty = std::io::stderr().is_terminal() && !a.json;
    let mut failed = false;
    for (path, scn) in &scns {
        let src = path.display().to_string();
        let bar = tty.then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_message(format!("hunting {src}"));
            b
        });
        let report = hunt(scn, &src, &opts, |_, runs, features| {
            if let Some(b) = &bar {
                b.set_message(format!("hunting {src}: {runs} simulations, {features} features"));
                b.tick();
            }
        });
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        let written = match &report.found {
            Some(f) => match write_found(path, a, &f.toml, f.seed) {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            },
            None => None,
        };
        failed |= report.found.is_some();
        if a.json {
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
        } else {
            print_report(&report, written.as_deref());
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Writes a failure's scenario into `--out-dir` (default: the repository's
/// `scenarios/regressions/`); returns where.
fn write_found(file: &Path, a: &HuntArgs<'_>, toml: &str, seed: u64) -> Result<PathBuf, String> {
    let dir = match a.out_dir {
        Some(d) => d.to_path_buf(),
        None => regressions_dir(file)?,
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let shard = if a.shard.1 > 1 {
        format!("-shard{}", a.shard.0)
    } else {
        String::new()
    };
    let dest = dir.join(format!(
        "{}-hunt{}{shard}-seed{seed}.toml",
        stem_of(&file.display().to_string()),
        a.seed
    ));
    std::fs::write(&dest, toml).map_err(|e| format!("{}: {e}", dest.display()))?;
    Ok(dest)
}

/// What a hunt did, for a person.
fn print_report(r: &HuntReport, written: Option<&Path>) {
    println!(
        "{}: {} simulations in {:.1}s, {} coverage features, corpus {}{}",
        r.file,
        r.runs,
        r.wall_s,
        r.features,
        r.corpus,
        if r.invalid > 0 {
            format!(", {} invalid mutants skipped", r.invalid)
        } else {
            String::new()
        }
    );
    // Coverage growth, at most ten points of it.
    let step = r.growth.len().div_ceil(10).max(1);
    let points: Vec<String> = r
        .growth
        .iter()
        .enumerate()
        .filter(|(k, _)| k % step == 0 || *k + 1 == r.growth.len())
        .map(|(_, g)| format!("{}@{}", g.features, g.runs))
        .collect();
    println!("  coverage (features@simulations): {}", points.join(" "));
    match (&r.found, written) {
        (Some(f), Some(p)) => {
            println!(
                "  FOUND at simulation {} ({:.1}s): {}\n  {}\n  wrote {}\n  replay: leasehold-sim replay {} --seed {}",
                f.run,
                f.wall_s,
                f.violation,
                f.shrunk,
                p.display(),
                p.display(),
                f.seed
            );
        }
        _ => println!("  nothing found"),
    }
}
