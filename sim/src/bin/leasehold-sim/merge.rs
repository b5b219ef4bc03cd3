//! `leasehold-sim merge`: the `--json` lines of shards added up per scenario.

use super::*;
use crate::run::print_table;

pub(crate) fn cmd_merge(files: &[PathBuf], json: bool) -> ExitCode {
    let mut lines = Vec::new();
    let mut hunts = Vec::new();
    for f in files {
        let name = f.display().to_string();
        let text = if name == "-" {
            let mut t = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut t).map(|_| t)
        } else {
            std::fs::read_to_string(f)
        };
        // `hunt --json` lines are merged as hunts, `run --json` lines as sweeps.
        let text = text.map(|t| {
            let (h, r): (Vec<&str>, Vec<&str>) = t.lines().partition(|l| l.contains("\"kind\":\"hunt\""));
            hunts.extend(h.into_iter().map(|l| (name.clone(), l.to_string())));
            r.join("\n")
        });
        match text
            .map_err(|e| format!("{name}: {e}"))
            .and_then(|t| leasehold_sim::merge::parse_lines(&name, &t))
        {
            Ok(l) => lines.extend(l),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if !hunts.is_empty() {
        return merge_hunts(&hunts, !lines.is_empty(), json);
    }
    let merged = match leasehold_sim::merge::merge(lines) {
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

/// The shards of hunts, per file: simulations added up, every finding listed; exit 1 if any
/// shard found a failure.
fn merge_hunts(lines: &[(String, String)], mixed: bool, json: bool) -> ExitCode {
    use leasehold_sim::hunt::{merge_hunts, HuntReport};
    if mixed {
        eprintln!("error: these files mix `hunt --json` and `run --json` lines: merge them apart");
        return ExitCode::from(2);
    }
    let mut reports = Vec::new();
    for (file, l) in lines {
        match serde_json::from_str::<HuntReport>(l) {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("error: {file}: not a `leasehold-sim hunt --json` line: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let merged = merge_hunts(reports);
    for m in &merged {
        if json {
            println!("{}", serde_json::to_string(m).unwrap_or_default());
        } else {
            println!(
                "{}: {} shards, {} simulations, {:.1}s, found {}",
                m.file,
                m.shards.len(),
                m.runs,
                m.wall_s,
                m.found.len()
            );
            for (shard, f) in &m.found {
                println!(
                    "  shard {shard}: {} at simulation {}, seed {}",
                    f.violation, f.run, f.seed
                );
            }
        }
    }
    if merged.iter().any(|m| !m.found.is_empty()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
