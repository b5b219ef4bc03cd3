//! The oracle fed one final claim at a time, in start order, in constant memory: what a long
//! run or a sweep uses instead of holding every claim. It computes the run's figures exactly
//! as the report's `Figures::of_claims` does (a test holds the two together), and tells whether the
//! checks of [`verdict`](super::verdict) would find anything; a run it flags is run again
//! with every claim kept, so the report of a failure is always the whole one.

use super::liveness::gap_fails;
use super::{Live, TrueClaim};

/// The streaming oracle's state.
#[derive(Debug, Default)]
pub struct Streaming {
    /// Claims of positive length still running at the latest start (for overlaps).
    active: Vec<TrueClaim>,
    /// The highest token held so far by the two incarnations with the highest tokens:
    /// enough to know whether any *other* incarnation held a token at least as high.
    top: [Option<((usize, u64), u64)>; 2],
    /// A check failed (or may have): the run must be judged again with everything kept.
    flagged: bool,
    /// Liveness: the stretches judged (from the first that a later gap can still meet), the
    /// bound and the failover bound, how far the claims reach so far, and whether a gap
    /// failed a stretch.
    judged: Vec<(u128, u128)>,
    next: usize,
    bound: u128,
    max_gap: u128,
    gap_reach: u128,
    live_failed: bool,
    /// Figures: from when the calm tail counts (the last fault plus the bound), and the
    /// longest gap so far.
    tail_from: u128,
    longest_gap: u128,
    /// `[expect] no_leader_after`: no claim may reach past it, and liveness is not judged.
    wait_from: Option<u128>,
    /// The run's length (ns).
    end: u128,
    /// Figures: claims seen, the previous holder's latest claim, holder changes, failovers.
    claims: u64,
    prev: Option<TrueClaim>,
    leader_changes: u64,
    failovers_ms: Vec<f64>,
    /// Figures: time held so far, and how far it reaches.
    held: u128,
    reach: u128,
    /// Figures: time held in the calm tail so far.
    tail_held: u128,
}

impl Streaming {
    /// An oracle for a run judged as `live` says.
    pub fn new(live: Live) -> Self {
        Streaming {
            judged: live.judged(),
            bound: live.bound,
            max_gap: live.max_gap,
            tail_from: live.last_fault + live.bound,
            wait_from: live.wait_from,
            end: live.end,
            ..Streaming::default()
        }
    }

    /// Takes the claims that start at one instant, in recording order. Every claim must
    /// come after all that started earlier.
    pub fn take(&mut self, group: &[TrueClaim]) {
        for c in group {
            self.figures(c);
            if c.until > c.from {
                if c.from > self.gap_reach {
                    self.gap((self.gap_reach, c.from));
                }
                self.gap_reach = self.gap_reach.max(c.until);
            }
            if self.wait_from.is_some_and(|w| c.until > w && c.until > c.from) {
                self.flagged = true;
            }
        }
        // Safety takes ties by node, then incarnation, as `check_safety` sorts them.
        let mut sorted: Vec<&TrueClaim> = group.iter().filter(|c| c.until > c.from).collect();
        sorted.sort_by_key(|c| (c.node, c.inc));
        for c in sorted {
            self.safety(c);
        }
    }

    /// Judges a gap of the claims' union against the stretches it meets.
    fn gap(&mut self, g: (u128, u128)) {
        while self.judged.get(self.next).is_some_and(|s| s.1 <= g.0) {
            self.next += 1;
        }
        self.live_failed |= self.fails(g);
    }

    /// Whether gap `g` fails a stretch it meets, from `next` on.
    fn fails(&self, g: (u128, u128)) -> bool {
        self.judged[self.next.min(self.judged.len())..]
            .iter()
            .take_while(|s| s.0 < g.1)
            .any(|s| s.1 > g.0 && gap_fails(g, *s, self.bound, self.max_gap).is_some())
    }

    fn figures(&mut self, c: &TrueClaim) {
        self.claims += 1;
        let (from, until) = (c.from.max(self.reach), c.until.min(self.end));
        if until > from {
            self.held += until - from;
            self.longest_gap = self.longest_gap.max(from - self.reach);
            self.tail_held += until.saturating_sub(from.max(self.tail_from));
            self.reach = until;
        }
        match &self.prev {
            // A renewal by the same holder extends its claim.
            Some(p) if (p.node, p.inc) == (c.node, c.inc) => {
                if c.until > p.until {
                    self.prev = Some(c.clone());
                }
            }
            _ => {
                if let Some(p) = self.prev.as_ref().filter(|p| c.from > p.until) {
                    self.failovers_ms.push((c.from - p.until) as f64 / 1e6);
                }
                self.leader_changes += 1;
                self.prev = Some(c.clone());
            }
        }
    }

    fn safety(&mut self, c: &TrueClaim) {
        let me = (c.node, c.inc);
        self.active.retain(|a| a.until > c.from);
        if self.active.iter().any(|a| (a.node, a.inc) != me) {
            self.flagged = true;
        }
        self.active.push(c.clone());
        let Some(tok) = c.token else { return };
        if self.top.iter().flatten().any(|(who, t)| *who != me && *t >= tok) {
            self.flagged = true;
        }
        // Keep the two incarnations with the highest tokens, highest first.
        match self.top {
            [Some((w, t)), _] if w == me => self.top[0] = Some((w, t.max(tok))),
            [first, Some((w, t))] if w == me => {
                self.top[1] = Some((w, t.max(tok)));
                if first.is_none_or(|(_, f)| tok > f) {
                    self.top.swap(0, 1);
                }
            }
            [first, second] => {
                if first.is_none_or(|(_, f)| tok > f) {
                    self.top = [Some((me, tok)), first];
                } else if second.is_none_or(|(_, s)| tok > s) {
                    self.top[1] = Some((me, tok));
                }
            }
        }
    }

    /// Whether a check found (or may have found) a violation, counting liveness now that
    /// every claim has been taken.
    pub fn flagged(&self) -> bool {
        self.flagged || self.live_failed || self.fails((self.gap_reach, u128::MAX))
    }

    /// The availability figures: the longest time without a holder in the run, and the time
    /// held in the calm tail (from the last fault plus the bound to the end) with the tail's
    /// length (`None`: the run ends before the tail begins).
    pub fn availability_so_far(&self) -> (u128, Option<(u128, u128)>) {
        let tail = (self.tail_from < self.end).then(|| (self.tail_held, self.end - self.tail_from));
        (self.longest_gap.max(self.end.saturating_sub(self.reach)), tail)
    }

    /// The figures: claims, holder changes, failover gaps (ms) and time held (ns).
    pub fn figures_so_far(&self) -> (u64, u64, &[f64], u128) {
        (self.claims, self.leader_changes, &self.failovers_ms, self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::verdict;
    use crate::report::Figures;
    use proptest::prelude::*;
    use std::time::Duration;

    fn claim(node: usize, inc: u64, token: Option<u64>, from: u128, len: u128) -> TrueClaim {
        TrueClaim {
            node,
            id: format!("n{node}"),
            inc,
            token,
            from,
            until: from + len,
        }
    }

    fn live(last_fault: u128, bound: u128, end: u128, wait_from: Option<u128>) -> Live {
        Live {
            last_fault,
            bound,
            max_gap: bound,
            calm: Vec::new(),
            end,
            wait_from,
            beliefs_may_overlap: false,
            tail_healthy: true,
        }
    }

    /// Feeds `claims` in start order, ties grouped, as the recorder does.
    fn stream(claims: &[TrueClaim], live: Live) -> Streaming {
        let mut sorted = claims.to_vec();
        sorted.sort_by_key(|c| c.from);
        let mut s = Streaming::new(live);
        for group in sorted.chunk_by(|a, b| a.from == b.from) {
            s.take(group);
        }
        s
    }

    proptest! {
        /// On any claims (few nodes, overlapping and tied starts, tokens up and down) the
        /// stream flags exactly the runs `verdict` finds a violation in, and its figures are
        /// those of `Figures::of_claims`.
        #[test]
        fn agrees_with_the_whole_oracle(
            raw in prop::collection::vec((0usize..3, 1u64..3, prop::option::of(0u64..6), 0u128..40, 0u128..12), 0..24),
            last in 0u128..40,
            wait_from in prop::option::of(0u128..50),
            cuts in prop::collection::btree_set(0u128..40, 0..8),
            bound in 0u128..8,
            max_gap in 0u128..6,
        ) {
            let claims: Vec<TrueClaim> = raw
                .iter()
                .map(|(n, i, t, f, l)| claim(*n, *i, *t, *f, *l))
                .collect();
            let end = 50;
            let cuts: Vec<u128> = cuts.into_iter().filter(|c| *c <= last).collect();
            let l = Live {
                bound,
                max_gap,
                calm: cuts.chunks(2).filter(|p| p.len() == 2).map(|p| (p[0], p[1])).collect(),
                ..live(last, bound, end, wait_from)
            };
            let s = stream(&claims, l.clone());
            prop_assert_eq!(s.flagged(), !verdict(&claims, &l).is_empty());
            let f = Figures::of_claims(&claims, Duration::from_nanos(end as u64), last + bound);
            let (count, changes, failovers, held) = s.figures_so_far();
            prop_assert_eq!((count, changes, failovers), (f.claims, f.leader_changes, &f.failovers_ms[..]));
            prop_assert_eq!(Duration::from_nanos(end as u64).saturating_sub(Duration::from_nanos(held as u64)), f.no_leader);
            let (longest, tail) = s.availability_so_far();
            let ns = |x: u128| Duration::from_nanos(x as u64);
            prop_assert_eq!(ns(longest), f.longest_gap);
            prop_assert_eq!(f.calm_tail, tail.map(|(h, l)| (ns(h), ns(l))));
        }
    }

    #[test]
    fn a_token_below_another_incarnations_is_flagged_even_after_three_holders() {
        let ok = [
            claim(0, 1, Some(5), 0, 10),
            claim(1, 1, Some(7), 10, 10),
            claim(2, 1, Some(9), 20, 10),
        ];
        assert!(!stream(&ok, live(0, 100, 30, None)).flagged());
        let mut bad = ok.to_vec();
        bad.push(claim(0, 1, Some(6), 30, 10));
        assert!(
            stream(&bad, live(0, 100, 40, None)).flagged(),
            "6 after 9 of another incarnation"
        );
    }
}
