//! What real agents said, turned into what the oracle judges: each agent's `clock` lines map
//! its monotonic clock to true time (the host's `CLOCK_MONOTONIC`), so its lease lines become
//! claims in true time, exactly as the simulator's clock model turns notices into claims.

use super::procs::Line;
use crate::oracle::guards::{GuardWord, Guards, Via};
use crate::oracle::TrueClaim;
use crate::trace::{event_words, TraceEvent};
use leasehold::events::{AgentEvent, EventLine};
use std::collections::BTreeMap;

/// One segment of an agent's clock: from true `true0` on it reads `local0` and runs `ppm` fast.
#[derive(Debug, Clone, Copy)]
struct Segment {
    true0: u128,
    local0: u128,
    ppm: i64,
}

/// One incarnation's clock, as its `clock` lines describe it.
#[derive(Debug, Clone, Default)]
pub struct LocalClock {
    segs: Vec<Segment>,
}

impl LocalClock {
    fn push(&mut self, true_ns: u64, local_ns: u64, ppm: i64) {
        self.segs.push(Segment {
            true0: u128::from(true_ns),
            local0: u128::from(local_ns),
            ppm,
        });
    }

    /// The earliest true time (host ns) at which the clock reads at least `local`.
    pub fn true_at(&self, local: u128) -> Option<u128> {
        let s = self
            .segs
            .iter()
            .rev()
            .find(|s| s.local0 <= local)
            .or(self.segs.first())?;
        let rate = 1_000_000 + i128::from(s.ppm);
        let dl = local as i128 - s.local0 as i128;
        Some((s.true0 as i128 + (dl * 1_000_000 + rate - 1).div_euclid(rate)).max(0) as u128)
    }

    /// The clock's reading at true time `t` (host ns).
    pub fn local_at(&self, t: u128) -> Option<u128> {
        let s = self.segs.iter().rev().find(|s| s.true0 <= t).or(self.segs.first())?;
        let dt = t as i128 - s.true0 as i128;
        Some((s.local0 as i128 + dt * (1_000_000 + i128::from(s.ppm)) / 1_000_000).max(0) as u128)
    }
}

/// The agents' lines, parsed once.
pub struct Record {
    /// Each incarnation's clock.
    pub clocks: BTreeMap<(usize, u64), LocalClock>,
    /// Claims in true time since the start of the run (`t0`).
    pub claims: Vec<TrueClaim>,
    /// Trace events (agents' events; the runner adds its faults).
    pub trace: Vec<TraceEvent>,
    /// What the agents' applications said of their guards, judged.
    pub guards: Guards,
}

/// What the guards oracle takes from an agent's lines, in the order it must see them at one
/// instant: a claim before what a guard says of it, and a guard's word before the claim ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ForGuards {
    Claim(Option<u64>, u128),
    Stall(bool),
    Report(u8, Option<u64>, u128, Option<u128>),
    ClaimEnded(u128),
}

/// Parses `lines` of nodes named `ids`; `t0` is the true time (host ns) of the run's start;
/// `stalls` says when (true ns since `t0`) a node stopped running (`true`: paused) or ran again.
/// A line that is not an event of this schema is left out.
pub fn parse(lines: &[Line], ids: &[String], t0: u128, stalls: &[(u128, usize, bool)]) -> Record {
    let mut clocks: BTreeMap<(usize, u64), LocalClock> = BTreeMap::new();
    let mut events: Vec<(&Line, AgentEvent)> = Vec::new();
    for l in lines.iter().filter(|l| l.event) {
        let Ok(line) = serde_json::from_str::<EventLine>(&l.text) else {
            continue;
        };
        if let AgentEvent::Clock {
            true_ns, local_ns, ppm, ..
        } = line.event
        {
            clocks.entry((l.node, l.inc)).or_default().push(true_ns, local_ns, ppm);
        }
        events.push((l, line.event));
    }
    let rel = |t: u128| t.saturating_sub(t0);
    let mut claims: Vec<TrueClaim> = Vec::new();
    let mut trace = Vec::new();
    // (true time, node, incarnation, what): sorted, then judged in that order.
    let mut for_guards: Vec<(u128, usize, u64, ForGuards)> = stalls
        .iter()
        .map(|(t, i, s)| (*t, *i, 0, ForGuards::Stall(*s)))
        .collect();
    for (seq, (l, ev)) in events.iter().enumerate() {
        let clock = clocks.get(&(l.node, l.inc));
        let to_true = |local: u64| clock.and_then(|c| c.true_at(u128::from(local))).map(rel);
        if let Some((local, what)) = for_the_guards(ev) {
            if let Some(t) = to_true(local) {
                for_guards.push((t, l.node, l.inc, what));
            }
        }
        match ev {
            AgentEvent::LeaseRenewed {
                fencing_token,
                from_local_ns,
                until_local_ns,
                ..
            } => {
                if let (Some(from), Some(until)) = (to_true(*from_local_ns), to_true(*until_local_ns)) {
                    claims.push(TrueClaim {
                        node: l.node,
                        id: ids[l.node].clone(),
                        inc: l.inc,
                        token: *fencing_token,
                        from,
                        until,
                    });
                }
            }
            AgentEvent::LeaseReleased { at_local_ns, .. } => {
                if let Some(end) = to_true(*at_local_ns) {
                    for c in claims.iter_mut().filter(|c| (c.node, c.inc) == (l.node, l.inc)) {
                        c.until = c.until.min(end);
                    }
                }
            }
            _ => {}
        }
        if let Some(what) = event_words(ev) {
            trace.push(TraceEvent {
                at: rel(l.at),
                seq: seq as u64,
                node: Some(ids[l.node].clone()),
                local: clock.and_then(|c| c.local_at(l.at)),
                what,
            });
        }
    }
    let guards = judge_guards(for_guards, &clocks, ids, t0);
    Record {
        clocks,
        claims,
        trace,
        guards,
    }
}

/// What the guards oracle takes from an event, and the local time it happened at.
fn for_the_guards(ev: &AgentEvent) -> Option<(u64, ForGuards)> {
    let u = u128::from;
    match ev {
        AgentEvent::LeaseRenewed {
            fencing_token,
            from_local_ns,
            until_local_ns,
            ..
        } => Some((*from_local_ns, ForGuards::Claim(*fencing_token, u(*until_local_ns)))),
        AgentEvent::LeaseReleased { at_local_ns, .. } => Some((*at_local_ns, ForGuards::ClaimEnded(u(*at_local_ns)))),
        AgentEvent::Guard {
            via,
            fencing_token,
            at_local_ns,
            until_local_ns,
        } => Some((
            *at_local_ns,
            ForGuards::Report(
                u8::from(via == "callbacks"),
                *fencing_token,
                u(*at_local_ns),
                Some(u(*until_local_ns)),
            ),
        )),
        AgentEvent::GuardEnded {
            via,
            fencing_token,
            at_local_ns,
        } => Some((
            *at_local_ns,
            ForGuards::Report(u8::from(via == "callbacks"), *fencing_token, u(*at_local_ns), None),
        )),
        _ => None,
    }
}

/// Judges what the guards said, in true-time order.
fn judge_guards(
    mut for_guards: Vec<(u128, usize, u64, ForGuards)>,
    clocks: &BTreeMap<(usize, u64), LocalClock>,
    ids: &[String],
    t0: u128,
) -> Guards {
    for_guards.sort();
    let mut guards = Guards::new(ids.len(), crate::oracle::guards::REAL_SLACK);
    for (t, node, inc, what) in for_guards {
        let true_at = |local: u128| {
            clocks
                .get(&(node, inc))
                .and_then(|c| c.true_at(local))
                .map_or(0, |t| t.saturating_sub(t0))
        };
        match what {
            ForGuards::Claim(token, until) => guards.claim(node, inc, token, until),
            ForGuards::ClaimEnded(at) => guards.claim_ended(node, inc, at),
            ForGuards::Stall(stalled) => guards.stalled(node, stalled, t),
            ForGuards::Report(via, token, at, until) => {
                let via = if via == 1 { Via::Callbacks } else { Via::Guard };
                let ns = |t: u128| std::time::Duration::from_nanos(u64::try_from(t).unwrap_or(u64::MAX));
                let ev = match until {
                    Some(until) => GuardWord::Valid {
                        via,
                        token,
                        at: ns(at),
                        until: ns(until),
                    },
                    None => GuardWord::Ended { via, token, at: ns(at) },
                };
                guards.take(node, &ids[node], inc, ev, true_at);
            }
        }
    }
    guards
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent's line; `text` without the fields every line has.
    fn line(node: usize, inc: u64, at: u128, text: &str) -> Line {
        Line {
            node,
            inc,
            at,
            event: true,
            text: text.replacen(r#"{"event""#, r#"{"v":1,"node":"x","at_unix_us":0,"event""#, 1),
        }
    }

    #[test]
    fn lease_lines_become_claims_in_true_time_through_each_clock() {
        let s = 1_000_000_000u128;
        let ids = vec!["a".to_string(), "b".to_string()];
        let lines = vec![
            // a's clock reads 0 at true 100 s and runs 1% fast from true 101 s.
            line(
                0,
                1,
                100 * s,
                r#"{"event":"clock","true_ns":100000000000,"local_ns":0,"ppm":0,"wall_offset_ns":0}"#,
            ),
            line(
                0,
                1,
                101 * s,
                r#"{"event":"clock","true_ns":101000000000,"local_ns":1000000000,"ppm":10000,"wall_offset_ns":0}"#,
            ),
            line(
                0,
                1,
                102 * s,
                r#"{"event":"lease_renewed","leader":"x","is_leader":true,"fencing_token":3,"from_local_ns":1000000000,"until_local_ns":3020000000}"#,
            ),
            line(
                1,
                2,
                103 * s,
                r#"{"event":"clock","true_ns":50000000000,"local_ns":7000000000,"ppm":0,"wall_offset_ns":0}"#,
            ),
            line(
                1,
                2,
                104 * s,
                r#"{"event":"lease_renewed","leader":"x","is_leader":true,"fencing_token":4,"from_local_ns":60000000000,"until_local_ns":61000000000}"#,
            ),
            line(
                1,
                2,
                104 * s,
                r#"{"event":"lease_released","is_leader":false,"at_local_ns":60500000000}"#,
            ),
            line(1, 2, 104 * s, "not json"),
        ];
        let r = parse(&lines, &ids, 100 * s, &[]);
        assert_eq!(r.claims.len(), 2);
        assert_eq!((r.claims[0].from, r.claims[0].until), (s, 3 * s), "{:?}", r.claims[0]);
        assert_eq!(r.claims[0].token, Some(3));
        let b = &r.claims[1];
        assert_eq!(
            (b.node, b.inc, b.from, b.until),
            (1, 2, 3 * s, 3 * s + s / 2),
            "released early"
        );
        assert!(r
            .trace
            .iter()
            .any(|e| e.what == "claim token=3 until local=3.020000000s"));
    }

    #[test]
    fn guard_lines_are_judged_against_the_agents_claims_and_a_pause_excuses_a_late_end() {
        let s = 1_000_000_000u128;
        let ids = vec!["a".to_string()];
        let clock = r#"{"event":"clock","true_ns":100000000000,"local_ns":0,"ppm":0,"wall_offset_ns":0}"#;
        let claim = r#"{"event":"lease_renewed","leader":"x","is_leader":true,"fencing_token":3,"from_local_ns":1000000000,"until_local_ns":3000000000}"#;
        let released = r#"{"event":"lease_released","is_leader":false,"at_local_ns":2000000000}"#;
        let run = |extra: &[&str], stalls: &[(u128, usize, bool)]| {
            let mut lines = vec![line(0, 1, 100 * s, clock), line(0, 1, 101 * s, claim)];
            // Printed out of order with the claim lines, as two tasks print them.
            lines.extend(extra.iter().map(|t| line(0, 1, 100 * s, t)));
            lines.push(line(0, 1, 102 * s, released));
            parse(&lines, &ids, 100 * s, stalls).guards
        };
        let inside =
            r#"{"event":"guard","via":"guard","fencing_token":3,"at_local_ns":1500000000,"until_local_ns":3000000000}"#;
        let ends = r#"{"event":"guard_ended","via":"callbacks","fencing_token":3,"at_local_ns":2000000000}"#;
        let g = run(&[inside, ends], &[]);
        assert_eq!((g.reports, g.violations), (2, 0));
        let after =
            r#"{"event":"guard","via":"guard","fencing_token":3,"at_local_ns":2100000000,"until_local_ns":3000000000}"#;
        let g = run(&[after], &[]);
        assert_eq!(g.violations, 1, "valid after its claim was released");
        let late = r#"{"event":"guard_ended","via":"guard","fencing_token":3,"at_local_ns":2500000000}"#;
        assert_eq!(run(&[late], &[]).violations, 1, "ended 500 ms after the claim");
        let woken = r#"{"event":"guard_ended","via":"guard","fencing_token":3,"at_local_ns":2005000000}"#;
        assert_eq!(
            run(&[woken], &[]).violations,
            0,
            "5 ms: a task's wake-up on a busy host"
        );
        assert_eq!(
            run(&[late], &[(s + s / 2, 0, true), (2 * s + s / 4, 0, false)]).violations,
            0,
            "paused across the claim's end"
        );
    }
}
