//! `leasehold-sim shrink`: a failing seed made a minimal scenario, written beside the others.

use super::*;
use crate::run::stem_of;

/// Where `shrink` writes by default: the `scenarios/regressions/` folder of the repository
/// that holds `file` (the nearest enclosing `scenarios` folder, else `scenarios/` beside the
/// nearest `.git`), never relative to the working directory.
pub(crate) fn regressions_dir(file: &Path) -> Result<PathBuf, String> {
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

pub(crate) fn cmd_shrink(file: &Path, seed: u64, ran: RanAs, out_file: Option<&Path>, max_trials: usize) -> ExitCode {
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
