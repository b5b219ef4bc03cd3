//! The fault history of a run, replayed for the pictures: the shaded spans of down, paused
//! and suspended nodes and of cut routes (folded with [`FaultState::apply`], as the resolver
//! and the router oracle fold them), and cuts described by their sides.

use crate::faults::{Action, FaultEvent, FaultState};

/// What a shaded span of a picture shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpanKind {
    /// Some routes were cut.
    Partition,
    /// The node was down.
    Down,
    /// The node was paused (SIGSTOP).
    Paused,
    /// The node's host was suspended (its monotonic clock stopped too).
    Suspended,
}

/// An interval of true time (ns) during which a fault was in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Span {
    /// The node concerned, or `None` for the whole cluster.
    pub node: Option<usize>,
    /// Start (ns).
    pub from: u128,
    /// End (ns).
    pub to: u128,
    /// Which fault.
    pub kind: SpanKind,
    /// For a partition, the directed routes cut.
    pub cuts: Vec<(usize, usize)>,
}

/// A run's applied fault events (in time order), for questions about any moment.
pub(crate) struct Timeline<'a> {
    events: &'a [FaultEvent],
    nodes: usize,
}

impl<'a> Timeline<'a> {
    /// The history of `events` over `nodes` nodes (indices at or above `nodes`, such as router
    /// clients, are never down or paused).
    pub(crate) fn new(events: &'a [FaultEvent], nodes: usize) -> Self {
        Timeline { events, nodes }
    }

    /// The spans of cut routes, down nodes and paused nodes until `end` (ns). A change of
    /// cuts while some are in force starts a new partition span.
    pub(crate) fn spans(&self, end: u128) -> Vec<Span> {
        let mut out = Vec::new();
        let mut s = FaultState::new(self.nodes);
        let mut cut_since: Option<(u128, Vec<(usize, usize)>)> = None;
        let mut down_since: Vec<Option<u128>> = vec![None; self.nodes];
        let mut paused_since: Vec<Option<u128>> = vec![None; self.nodes];
        let mut suspended_since: Vec<Option<u128>> = vec![None; self.nodes];
        for e in self.events {
            let t = e.at.as_nanos();
            s.apply(&e.action);
            if matches!(e.action, Action::Cut(_) | Action::Heal) {
                out.extend(cut_since.take().map(|(from, cuts)| partition(from, t, cuts)));
                cut_since = (!s.cuts.is_empty()).then(|| (t, s.cuts.clone()));
            }
            for i in 0..self.nodes {
                let (paused, suspended) = (s.paused[i] && !s.suspended[i], s.suspended[i]);
                track(&mut out, &mut down_since[i], s.down[i], i, t, SpanKind::Down);
                track(&mut out, &mut paused_since[i], paused, i, t, SpanKind::Paused);
                track(&mut out, &mut suspended_since[i], suspended, i, t, SpanKind::Suspended);
            }
        }
        out.extend(cut_since.map(|(from, cuts)| partition(from, end, cuts)));
        for i in 0..self.nodes {
            out.extend(down_since[i].map(|from| span(Some(i), from, end, SpanKind::Down)));
            out.extend(paused_since[i].map(|from| span(Some(i), from, end, SpanKind::Paused)));
            out.extend(suspended_since[i].map(|from| span(Some(i), from, end, SpanKind::Suspended)));
        }
        out
    }
}

/// Who was cut off from whom, in words: the sides of a clean partition (`n0 | n1 n2`), or
/// the one-way cuts (`n1 n2 -/-> n0`).
pub(crate) fn describe_cuts(cuts: &[(usize, usize)], ids: &[String]) -> String {
    let name = |i: usize| ids.get(i).cloned().unwrap_or_else(|| format!("#{i}"));
    let n = ids.len();
    let cut = |a: usize, b: usize| cuts.contains(&(a, b));
    let symmetric = cuts.iter().all(|(a, b)| cut(*b, *a));
    if symmetric {
        // Sides: nodes that can still hear each other, joined transitively.
        let mut side: Vec<usize> = (0..n).collect();
        for a in 0..n {
            for b in 0..n {
                if a != b && !cut(a, b) {
                    let (x, y) = (side[a], side[b]);
                    for s in side.iter_mut() {
                        if *s == y {
                            *s = x;
                        }
                    }
                }
            }
        }
        let mut groups: Vec<Vec<String>> = Vec::new();
        let mut seen = Vec::new();
        for i in 0..n {
            if !seen.contains(&side[i]) {
                seen.push(side[i]);
                groups.push((0..n).filter(|j| side[*j] == side[i]).map(name).collect());
            }
        }
        if groups.len() > 1 {
            return groups.iter().map(|g| g.join(" ")).collect::<Vec<_>>().join(" | ");
        }
    }
    // One-way (or not a clean split): senders grouped by the receiver they cannot reach.
    let mut parts = Vec::new();
    for b in 0..n {
        let from: Vec<String> = (0..n).filter(|a| cut(*a, b)).map(name).collect();
        if !from.is_empty() {
            parts.push(format!("{} -/-> {}", from.join(" "), name(b)));
        }
    }
    parts.join(", ")
}

fn partition(from: u128, to: u128, cuts: Vec<(usize, usize)>) -> Span {
    Span {
        node: None,
        from,
        to,
        kind: SpanKind::Partition,
        cuts,
    }
}

fn span(node: Option<usize>, from: u128, to: u128, kind: SpanKind) -> Span {
    Span {
        node,
        from,
        to,
        kind,
        cuts: Vec::new(),
    }
}

/// Opens or closes node `i`'s span of `kind` as its flag changes at `t`.
fn track(out: &mut Vec<Span>, since: &mut Option<u128>, on: bool, i: usize, t: u128, kind: SpanKind) {
    match (since.is_some(), on) {
        (false, true) => *since = Some(t),
        (true, false) => out.extend(since.take().map(|from| span(Some(i), from, t, kind))),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ev(s: u64, action: Action) -> FaultEvent {
        FaultEvent {
            at: Duration::from_secs(s),
            action,
            scripted: true,
        }
    }

    #[test]
    fn state_spans_follow_the_events() {
        let events = [
            ev(1, Action::Kill(0)),
            ev(2, Action::Cut(vec![(1, 2)])),
            ev(3, Action::Restart(0)),
            ev(4, Action::Heal),
            ev(5, Action::Pause(1)),
        ];
        let tl = Timeline::new(&events, 3);
        let s = 1_000_000_000u128;
        let spans = tl.spans(10 * s);
        assert!(spans.contains(&span(Some(0), s, 3 * s, SpanKind::Down)));
        assert!(spans.contains(&partition(2 * s, 4 * s, vec![(1, 2)])));
        assert!(spans.contains(&span(Some(1), 5 * s, 10 * s, SpanKind::Paused)));
    }

    #[test]
    fn cuts_are_described_by_their_sides() {
        let ids: Vec<String> = ["n0", "n1", "n2"].iter().map(|s| s.to_string()).collect();
        assert_eq!(describe_cuts(&[(0, 1), (1, 0), (0, 2), (2, 0)], &ids), "n0 | n1 n2");
        assert_eq!(describe_cuts(&[(1, 0), (2, 0)], &ids), "n1 n2 -/-> n0");
        assert_eq!(
            describe_cuts(&[(0, 1), (1, 0)], &ids),
            "n1 -/-> n0, n0 -/-> n1",
            "n2 bridges them"
        );
    }

    #[test]
    fn only_actions_that_change_something_take_effect() {
        let mut s = FaultState::new(2);
        assert!(!s.takes_effect(&Action::Restart(0)));
        s.apply(&Action::Pause(0));
        assert!(!s.takes_effect(&Action::Pause(0)));
        s.apply(&Action::Kill(0));
        assert!(!s.paused[0], "a kill ends a pause");
        assert!(!s.takes_effect(&Action::Resume(0)));
        assert!(s.takes_effect(&Action::Restart(0)));
    }
}
