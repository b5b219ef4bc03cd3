//! The trace of a run: every significant event with true time, node and local time, in a
//! stable text form, and its digest.

use crate::oracle::secs;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TraceEvent {
    /// True simulated time (ns).
    pub at: u128,
    /// Order among events at the same time.
    pub seq: u64,
    /// The node concerned, if any.
    pub node: Option<String>,
    /// The node's monotonic clock then (ns), if a node is concerned.
    pub local: Option<u128>,
    /// What happened.
    pub what: String,
}

impl TraceEvent {
    /// The event as one line of text.
    pub fn line(&self) -> String {
        match (&self.node, self.local) {
            (Some(n), Some(l)) => format!("{} {n} local={} {}", secs(self.at), secs(l), self.what),
            (Some(n), None) => format!("{} {n} {}", secs(self.at), self.what),
            _ => format!("{} - {}", secs(self.at), self.what),
        }
    }
}

/// The trace as text, one event per line.
pub fn render(events: &[TraceEvent]) -> String {
    let mut s = String::new();
    for e in events {
        s.push_str(&e.line());
        s.push('\n');
    }
    s
}

/// A stable 64-bit digest (FNV-1a) of the rendered trace.
pub fn digest(events: &[TraceEvent]) -> u64 {
    render(events).bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
