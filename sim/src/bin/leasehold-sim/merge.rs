//! `leasehold-sim merge`: the `--json` lines of shards added up per scenario.

use super::*;
use crate::run::print_table;

pub(crate) fn cmd_merge(files: &[PathBuf], json: bool) -> ExitCode {
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
            .and_then(|t| leasehold_sim::merge::parse_lines(&name, &t))
        {
            Ok(l) => lines.extend(l),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
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
