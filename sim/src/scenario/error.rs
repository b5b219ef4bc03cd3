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

/// The line that assigns `key` (a bare key, or a dotted path such as `expect.leader_within`
/// whose last part is the key and whose other parts are tables around it): the earliest such
/// assignment in the file, found in the parsed document, so a comment or a string that
/// mentions the key never matches.
pub(super) fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let path: Vec<&str> = key.split('.').collect();
    let mut best = None;
    earliest(doc.get_ref(), &path, &mut Vec::new(), &mut best);
    best.map(|at: usize| text[..at.min(text.len())].matches('\n').count() + 1)
}

/// The smallest byte offset of a key matching `path`, below the tables `outer`.
fn earliest<'a>(t: &'a toml::de::DeTable<'a>, path: &[&str], outer: &mut Vec<&'a str>, best: &mut Option<usize>) {
    let (last, within) = path.split_last().unwrap_or((&"", &[]));
    for (k, v) in t.iter() {
        let name: &str = k.get_ref();
        if name == *last && outer.ends_with(within) {
            let at = k.span().start;
            *best = Some(best.map_or(at, |b| b.min(at)));
        }
        outer.push(name);
        match v.get_ref() {
            toml::de::DeValue::Table(inner) => earliest(inner, path, outer, best),
            toml::de::DeValue::Array(items) => {
                for item in items.iter() {
                    if let toml::de::DeValue::Table(inner) = item.get_ref() {
                        earliest(inner, path, outer, best);
                    }
                }
            }
            _ => {}
        }
        outer.pop();
    }
}
