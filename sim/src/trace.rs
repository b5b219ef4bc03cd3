//! The trace of a run: every significant event with true time, node and local time, in a
//! stable text form, and its digest.

use crate::oracle::secs;
use leasehold::events::AgentEvent;

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

/// What an agent's event says in the trace (`None` for those it leaves out): the one wording
/// of both worlds, the simulator's notices (through [`AgentEvent::of_notice`]) and the lines
/// real agents print.
pub(crate) fn event_words(ev: &AgentEvent) -> Option<String> {
    let token = |t: &Option<u64>| t.map_or("-".into(), |t| t.to_string());
    Some(match ev {
        AgentEvent::Started { .. } => "agent started".into(),
        AgentEvent::Stopped { .. } => "agent stopped".into(),
        AgentEvent::LeaseRenewed {
            fencing_token,
            until_local_ns,
            ..
        } => format!(
            "claim token={} until local={}",
            token(fencing_token),
            secs(u128::from(*until_local_ns))
        ),
        AgentEvent::LeaseReleased { .. } => "claim released".into(),
        AgentEvent::Leadership {
            leader,
            is_leader,
            fencing_token,
            ..
        } => format!(
            "leader {} {}token={}",
            leader.as_deref().unwrap_or("none"),
            if *is_leader { "(me) " } else { "" },
            token(fencing_token)
        ),
        AgentEvent::MemberAdded { member, .. } => format!("member added {member}"),
        AgentEvent::MemberLost { member, .. } => format!("member lost {member}"),
        AgentEvent::ConfigMismatch { peer, .. } => format!("config mismatch with {peer}"),
        AgentEvent::SizeMismatch { peer, theirs, .. } => format!("{peer} says cluster_size {theirs}"),
        AgentEvent::Connected { .. } => "connection Connected".into(),
        AgentEvent::Disconnected { .. } => "connection Disconnected".into(),
        AgentEvent::Reconnected { .. } => "connection Reconnected".into(),
        AgentEvent::WaitingForRecovery { answered, need, .. } => {
            format!("waiting for recovery: {} of {need} answers", answered.len())
        }
        AgentEvent::Recovered { max_token } => format!("recovered max_token={max_token}"),
        AgentEvent::DuplicateId { other_incarnation, .. } => {
            format!("duplicate id heard (incarnation {other_incarnation})")
        }
        AgentEvent::Undersized { cluster_size, seen } => {
            format!("undersized: cluster_size {cluster_size}, {seen} agents seen")
        }
        AgentEvent::StateUnreadable { .. } => "state unreadable, set aside".into(),
        AgentEvent::GaveUp { reason, .. } => format!("gave up: {reason}"),
        AgentEvent::Resign => "resign (its application gives the lease up)".into(),
        AgentEvent::Campaign => "campaign (its application takes part again)".into(),
        AgentEvent::Clock {
            ppm, wall_offset_ns, ..
        } => format!("clock {ppm}ppm wall offset {wall_offset_ns}ns"),
        AgentEvent::Guard { .. } | AgentEvent::GuardEnded { .. } => return None,
    })
}

/// The trace as text, one event per line.
pub(crate) fn render(events: &[TraceEvent]) -> String {
    let mut s = String::new();
    for e in events {
        s.push_str(&e.line());
        s.push('\n');
    }
    s
}

/// A stable 64-bit digest (FNV-1a) of the rendered trace.
pub(crate) fn digest(events: &[TraceEvent]) -> u64 {
    let mut d = Digest::new();
    for e in events {
        d.line(&e.line());
    }
    d.value()
}

/// [`digest`] taken one line at a time, so a trace can be digested without being kept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Digest(u64);

impl Digest {
    /// The digest of an empty trace.
    pub(crate) fn new() -> Self {
        Digest(leasehold::fnv1a(b""))
    }

    /// Adds one rendered line (its newline is added here).
    pub(crate) fn line(&mut self, line: &str) {
        for b in line.bytes().chain([b'\n']) {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The digest so far.
    pub(crate) fn value(&self) -> u64 {
        self.0
    }
}

impl Default for Digest {
    fn default() -> Self {
        Digest::new()
    }
}

/// A run's trace: its events in order, and their digest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// The events, by true time (ties by node, then order of recording); empty when the run
    /// kept only its verdict ([`Keep::Verdict`](crate::record::Keep)).
    pub events: Vec<TraceEvent>,
    /// How many events the trace has (kept or not).
    pub len: u64,
    /// The FNV-1a digest of the events' lines.
    pub digest: u64,
}

impl Trace {
    /// A trace of `events`, digested.
    pub fn new(events: Vec<TraceEvent>) -> Self {
        Trace {
            digest: digest(&events),
            len: events.len() as u64,
            events,
        }
    }

    /// A trace that was digested as it was made and not kept.
    pub fn streamed(digest: u64, len: u64) -> Self {
        Trace {
            events: Vec::new(),
            len,
            digest,
        }
    }

    /// The trace as text, one event per line.
    pub fn render(&self) -> String {
        render(&self.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_taken_line_by_line_is_the_digest_of_the_rendered_trace() {
        let events: Vec<TraceEvent> = (0..5u64)
            .map(|i| TraceEvent {
                at: u128::from(i) * 1_000,
                seq: i,
                node: (i % 2 == 0).then(|| format!("n{i}")),
                local: (i % 3 == 0).then_some(7),
                what: format!("event {i}"),
            })
            .collect();
        assert_eq!(digest(&events), leasehold::fnv1a(render(&events).as_bytes()));
        assert_eq!(digest(&[]), leasehold::fnv1a(b""));
    }
}
