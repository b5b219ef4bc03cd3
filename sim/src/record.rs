//! What a run records as it goes: trace events and lease claims.
//!
//! A replay keeps all of it ([`Keep::Everything`]). A sweep keeps only what its verdict needs
//! ([`Keep::Verdict`]): the trace is digested as it is made, and each claim is judged by the
//! [streaming oracle](crate::oracle::stream) once it can no longer change, in a window that
//! slides with true time; memory then stays flat however long the run. Anything that arrives
//! behind the window (possible only with a clock that stops, as the planted
//! `suspend_blind_clock` has) marks the record [late](Book::late), and the run is redone
//! with everything kept.

use crate::clock::ClockModel;
use crate::oracle::stream::Streaming;
use crate::oracle::TrueClaim;
use crate::trace::{Digest, Trace, TraceEvent};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// How much of a run is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The whole trace, every claim and every fault applied: what a report, a picture or a
    /// shrink needs.
    Everything,
    /// The trace's digest and length, the figures and whether the oracle found anything:
    /// what a sweep needs, in constant memory.
    Verdict,
}

/// How far behind true time (ns) a streamed event or claim waits before it is final: every
/// event and claim start is recorded within this of its true time.
const WINDOW: u128 = 60_000_000_000;

/// A lease claim as the agent made it, on its own monotonic clock (ns).
#[derive(Debug, Clone)]
struct RawClaim {
    node: usize,
    inc: u64,
    token: Option<u64>,
    from: u128,
    /// The end, brought forward when the agent says the claim ended.
    until: u128,
}

type TraceKey = (u128, Option<String>, u64);

/// The run's record.
pub struct Book {
    keep: Keep,
    clocks: Vec<Arc<Mutex<ClockModel>>>,
    ids: Vec<String>,
    /// Everything: every event, sorted at the end.
    events: Vec<TraceEvent>,
    /// Verdict: events not yet final, by their place in the trace; the last one digested.
    pending: BTreeMap<TraceKey, TraceEvent>,
    digested: Option<TraceKey>,
    digest: Digest,
    events_seen: u64,
    /// Everything: every claim, in recording order.
    claims: Vec<RawClaim>,
    /// Verdict: claims not yet final, by true start and recording order; the last start
    /// judged.
    window: BTreeMap<(u128, u64), RawClaim>,
    judged: Option<u128>,
    oracle: Streaming,
    claims_seen: u64,
    /// Claims that may still be running, in recording order (who leads now).
    running: VecDeque<RawClaim>,
    late: bool,
}

fn model(clocks: &[Arc<Mutex<ClockModel>>], i: usize) -> MutexGuard<'_, ClockModel> {
    clocks[i].lock().unwrap_or_else(|e| e.into_inner())
}

impl Book {
    /// An empty record for nodes `ids` with clocks `clocks`, keeping what `keep` says; the
    /// streaming oracle judges liveness as `live` says.
    pub fn new(keep: Keep, clocks: Vec<Arc<Mutex<ClockModel>>>, ids: Vec<String>, live: crate::oracle::Live) -> Self {
        Book {
            keep,
            clocks,
            ids,
            events: Vec::new(),
            pending: BTreeMap::new(),
            digested: None,
            digest: Digest::new(),
            events_seen: 0,
            claims: Vec::new(),
            window: BTreeMap::new(),
            judged: None,
            oracle: Streaming::new(live),
            claims_seen: 0,
            running: VecDeque::new(),
            late: false,
        }
    }

    /// Whether everything is kept.
    pub fn keeps_everything(&self) -> bool {
        self.keep == Keep::Everything
    }

    /// Whether something arrived too late for the stream: the run must be redone with
    /// everything kept.
    pub fn late(&self) -> bool {
        self.late || (0..self.clocks.len()).any(|i| model(&self.clocks, i).stale())
    }

    /// Records a trace event; `now` is true time (ns).
    pub fn event(&mut self, e: TraceEvent, now: u128) {
        self.events_seen += 1;
        if self.keep == Keep::Everything {
            self.events.push(e);
            return;
        }
        let key = (e.at, e.node.clone(), e.seq);
        if self.digested.as_ref().is_some_and(|d| key <= *d) {
            self.late = true;
        }
        self.pending.insert(key, e);
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 + WINDOW >= now {
                break;
            }
            let (key, e) = entry.remove_entry();
            self.digest.line(&e.line());
            self.digested = Some(key);
        }
    }

    /// Records a claim by incarnation `inc` of node `node`, on its clock; `now` is true time.
    pub fn claim(&mut self, node: usize, inc: u64, token: Option<u64>, (from, until): (u128, u128), now: u128) {
        let c = RawClaim {
            node,
            inc,
            token,
            from,
            until,
        };
        self.running.push_back(c.clone());
        if self.running.len() > 64 {
            self.prune_running(now);
        }
        self.claims_seen += 1;
        match self.keep {
            Keep::Everything => self.claims.push(c),
            Keep::Verdict => {
                let start = model(&self.clocks, node).true_at(from);
                if self.judged.is_some_and(|j| start <= j) {
                    self.late = true;
                }
                self.window.insert((start, self.claims_seen), c);
                self.judge(now, false);
            }
        }
    }

    /// Incarnation `inc` of node `node` says its claims ended at `at` on its clock.
    pub fn claim_ended(&mut self, node: usize, inc: u64, at: u128, now: u128) {
        let ends = |c: &mut RawClaim| {
            if (c.node, c.inc) == (node, inc) {
                c.until = c.until.min(at);
            }
        };
        self.running.iter_mut().for_each(ends);
        self.claims.iter_mut().for_each(ends);
        self.window.values_mut().for_each(ends);
        if self.keep == Keep::Verdict {
            self.judge(now, false);
        }
    }

    /// Feeds the streaming oracle the claims that are final: started more than the window
    /// ago and ended on their node's clock (all of them at the end of the run), a whole
    /// instant's starts at a time.
    fn judge(&mut self, now: u128, all: bool) {
        loop {
            let Some((&(start, _), _)) = self.window.first_key_value() else {
                return;
            };
            let group: Vec<(u128, u64)> = self
                .window
                .range((start, 0)..=(start, u64::MAX))
                .map(|(k, _)| *k)
                .collect();
            let final_ = |c: &RawClaim| c.until <= model(&self.clocks, c.node).local_at(now);
            if !all && (start + WINDOW >= now || !group.iter().all(|k| final_(&self.window[k]))) {
                return;
            }
            let raw: Vec<RawClaim> = group.iter().filter_map(|k| self.window.remove(k)).collect();
            let claims: Vec<TrueClaim> = raw.iter().map(|c| self.true_claim(c)).collect();
            self.oracle.take(&claims);
            // The clocks' history before what is judged is needed no more (a window of it is
            // kept for the trace's notices); forgotten a window at a time.
            let before = self.judged.map_or(0, |j| j / WINDOW);
            if start / WINDOW > before && start > 2 * WINDOW {
                for i in 0..self.clocks.len() {
                    model(&self.clocks, i).forget_before(start - 2 * WINDOW);
                }
            }
            self.judged = Some(start);
        }
    }

    fn true_claim(&self, c: &RawClaim) -> TrueClaim {
        let m = model(&self.clocks, c.node);
        TrueClaim {
            node: c.node,
            id: self.ids[c.node].clone(),
            inc: c.inc,
            token: c.token,
            from: m.true_at(c.from),
            until: m.true_at(c.until),
        }
    }

    /// Every claim so far in true time, in recording order (`Keep::Everything`; empty
    /// otherwise).
    pub fn claims(&self) -> Vec<TrueClaim> {
        self.claims.iter().map(|c| self.true_claim(c)).collect()
    }

    /// The node whose claim is held at true time `now`, if any (the earliest recorded).
    pub fn holder(&mut self, now: u128) -> Option<usize> {
        self.prune_running(now);
        self.running
            .iter()
            .map(|c| self.true_claim(c))
            .find(|c| c.from <= now && now < c.until)
            .map(|c| c.node)
    }

    /// Forgets the claims whose end has passed on their node's clock: they can never be
    /// held again.
    fn prune_running(&mut self, now: u128) {
        let clocks = &self.clocks;
        self.running.retain(|c| c.until > model(clocks, c.node).local_at(now));
    }

    /// The trace: every event in true-time order (ties by node, then recording order), or,
    /// when streamed, only its digest and length.
    pub fn take_trace(&mut self) -> Trace {
        if self.keep == Keep::Everything {
            let mut events = std::mem::take(&mut self.events);
            events.sort_by(|a, b| (a.at, &a.node, a.seq).cmp(&(b.at, &b.node, b.seq)));
            return Trace::new(events);
        }
        for e in std::mem::take(&mut self.pending).into_values() {
            self.digest.line(&e.line());
        }
        Trace::streamed(self.digest.value(), self.events_seen)
    }

    /// Judges every claim left (the run is over) and returns the streaming oracle.
    pub fn finish_stream(&mut self, now: u128) -> &Streaming {
        self.judge(now, true);
        &self.oracle
    }

    /// How many claims were made.
    pub fn claims_seen(&self) -> u64 {
        self.claims_seen
    }

    /// Drops everything (the run has been judged).
    pub fn clear(&mut self) {
        self.events = Vec::new();
        self.pending = BTreeMap::new();
        self.claims = Vec::new();
        self.window = BTreeMap::new();
        self.running = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: u128 = 1_000_000_000;

    fn book() -> Book {
        let clocks = vec![Arc::new(Mutex::new(ClockModel::new(Duration::ZERO, 0, 0)))];
        let live = crate::oracle::Live {
            last_fault: 0,
            bound: 10 * S,
            max_gap: 10 * S,
            calm: Vec::new(),
            end: 1000 * S,
            wait_from: None,
            beliefs_may_overlap: false,
            tail_healthy: true,
        };
        Book::new(Keep::Verdict, clocks, vec!["n0".into()], live)
    }

    fn event(at: u128, seq: u64) -> TraceEvent {
        TraceEvent {
            at,
            seq,
            node: None,
            local: None,
            what: "x".into(),
        }
    }

    #[test]
    fn an_event_behind_the_window_makes_the_record_late() {
        let mut b = book();
        b.event(event(S, 1), S);
        b.event(event(100 * S, 2), 100 * S);
        assert!(!b.late(), "in order");
        b.event(event(30 * S, 3), 100 * S);
        assert!(!b.late(), "within the window: still sorted in");
        b.event(event(2 * S, 4), 100 * S);
        assert!(b.late(), "behind what was digested");
    }

    #[test]
    fn a_claim_starting_before_one_judged_makes_the_record_late() {
        let mut b = book();
        b.claim(0, 1, Some(1), (S, 3 * S), S);
        b.claim(0, 1, Some(1), (200 * S, 203 * S), 200 * S);
        assert!(!b.late());
        b.claim(0, 1, Some(1), (S / 2, 2 * S), 200 * S);
        assert!(b.late());
    }

    #[test]
    fn a_reading_of_a_forgotten_clock_segment_makes_the_record_late() {
        let mut b = book();
        model(&b.clocks, 0).set_ppm(100 * S, 50);
        model(&b.clocks, 0).set_ppm(200 * S, -50);
        model(&b.clocks, 0).forget_before(150 * S);
        assert!(!b.late());
        b.claim(0, 1, Some(1), (160 * S, 162 * S), 160 * S);
        assert!(!b.late(), "the segment from 100 s on is kept");
        b.claim(0, 1, Some(1), (90 * S, 92 * S), 160 * S);
        assert!(b.late(), "90 s was forgotten");
    }
}
