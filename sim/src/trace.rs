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
    leasehold::fnv1a(render(events).as_bytes())
}

/// A run's trace: its events in order, and their digest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// The events, by true time (ties by node, then order of recording).
    pub events: Vec<TraceEvent>,
    /// [`digest`] of the events.
    pub digest: u64,
}

impl Trace {
    /// A trace of `events`, digested.
    pub fn new(events: Vec<TraceEvent>) -> Self {
        Trace {
            digest: digest(&events),
            events,
        }
    }

    /// The trace as text, one event per line.
    pub fn render(&self) -> String {
        render(&self.events)
    }
}
