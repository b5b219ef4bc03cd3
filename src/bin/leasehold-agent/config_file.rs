//! `--config FILE`: the agent's flags from a TOML file. Each key is a flag's name (`cluster-size`
//! or `cluster_size`), each value its value (`lease = "10s"`, `rank = 2`, `tls = true`); the
//! file's flags go before the command line's, so a flag typed on the command line wins. An
//! unknown key, a value of the wrong kind or a file that is not TOML is an error naming the
//! file, the line and the key.

use clap::CommandFactory;
use std::path::Path;

/// `argv` with the flags of its `--config FILE` (if any) put before the command line's.
pub(crate) fn expand<A: CommandFactory>(argv: Vec<String>) -> Result<Vec<String>, String> {
    let Some(path) = config_path(&argv) else {
        return Ok(argv);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("--config {path}: {e}"))?;
    let flags = flags_of::<A>(Path::new(&path), &text)?;
    let mut out = Vec::with_capacity(argv.len() + flags.len());
    out.extend(argv.first().cloned());
    out.extend(flags);
    out.extend(argv.into_iter().skip(1));
    Ok(out)
}

/// The value of `--config` on the command line.
fn config_path(argv: &[String]) -> Option<String> {
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(p.to_string());
        }
        if a == "--config" {
            return it.next().cloned();
        }
    }
    None
}

/// The 1-based line of `key`'s assignment in `text` (1 if it cannot be found).
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(1, |i| i + 1)
}

/// The file's keys as `--flag=value` arguments, checked against the flags `A` has.
fn flags_of<A: CommandFactory>(path: &Path, text: &str) -> Result<Vec<String>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        // (The line the error starts on: newlines before its first byte, plus one.)
        let line = e
            .span()
            .and_then(|s| text.get(..s.start))
            .map_or(1, |before| before.matches('\n').count() + 1);
        format!("{}:{line}: {}", path.display(), e.message())
    })?;
    let cmd = A::command();
    let known: Vec<String> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| a.get_long().map(String::from))
        .filter(|l| l != "config")
        .collect();
    let mut out = Vec::new();
    for (key, value) in &table {
        let flag = key.replace('_', "-");
        let at = || format!("{}:{}: key `{key}`", path.display(), line_of(text, key));
        if !known.contains(&flag) {
            return Err(format!("{}: not a flag of leasehold-agent (see --help)", at()));
        }
        match value {
            toml::Value::String(s) => out.push(format!("--{flag}={s}")),
            toml::Value::Integer(i) => out.push(format!("--{flag}={i}")),
            toml::Value::Float(f) => out.push(format!("--{flag}={f}")),
            toml::Value::Boolean(true) => out.push(format!("--{flag}")),
            // A switch that is off is the default: nothing to pass.
            toml::Value::Boolean(false) => {}
            other => {
                return Err(format!(
                    "{}: expected a string, a number or true/false, found {}",
                    at(),
                    other.type_str()
                ))
            }
        }
    }
    Ok(out)
}
