//! Errors in scenario files, located by file, line and key.

/// A scenario that cannot be run: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file.
    pub file: String,
    /// 1-based line, if known.
    pub line: Option<usize>,
    /// The key at fault, if known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": key `{k}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ScenarioError {}

/// The key named in a serde message such as "unknown field `foo`, expected ..." (other
/// messages quote values, not keys).
pub(super) fn key_of(message: &str) -> Option<String> {
    if !(message.starts_with("unknown field") || message.starts_with("missing field")) {
        return None;
    }
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

/// The key whose value starts at byte offset `at`: the name before the nearest `=` before it
/// (inside an inline table too), or the first word of the line.
pub(super) fn key_at(text: &str, at: usize) -> String {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..at];
    let name = match before.rfind('=') {
        Some(eq) => before[..eq].trim_end(),
        None => text[line_start..]
            .lines()
            .next()
            .unwrap_or("")
            .split('=')
            .next()
            .unwrap_or("")
            .trim(),
    };
    let start = name
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.'))
        .map_or(0, |i| i + 1);
    name[start..].trim_matches(|c| c == '[' || c == ']').to_string()
}

/// The first line that assigns `key`.
pub(super) fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with(key) && l[key.len()..].trim_start().starts_with('=') || l.contains(&format!(" {key} ="))
        })
        .map(|i| i + 1)
}
