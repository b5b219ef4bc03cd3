//! What real agents said, turned into what the oracle judges: each agent's `clock` lines map
//! its monotonic clock to true time (the host's `CLOCK_MONOTONIC`), so its lease lines become
//! claims in true time, exactly as the simulator's clock model turns notices into claims.

use super::procs::Line;
use crate::oracle::guards::{GuardWord, Guards, Via};
use crate::oracle::{secs, TrueClaim};
use crate::trace::TraceEvent;
use serde_json::Value;
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
    fn push(&mut self, v: &Value) {
        let num = |k: &str| v.get(k).and_then(Value::as_u64).map(u128::from);
        if let (Some(true0), Some(local0)) = (num("true_ns"), num("local_ns")) {
            let ppm = v.get("ppm").and_then(Value::as_i64).unwrap_or(0);
            self.segs.push(Segment { true0, local0, ppm });
        }
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
pub fn parse(lines: &[Line], ids: &[String], t0: u128, stalls: &[(u128, usize, bool)]) -> Record {
    let mut clocks: BTreeMap<(usize, u64), LocalClock> = BTreeMap::new();
    let mut events: Vec<(&Line, Value)> = Vec::new();
    for l in lines.iter().filter(|l| l.event) {
        let Ok(v) = serde_json::from_str::<Value>(&l.text) else {
            continue;
        };
        if v.get("event").and_then(Value::as_str) == Some("clock") {
            clocks.entry((l.node, l.inc)).or_default().push(&v);
        }
        events.push((l, v));
    }
    let rel = |t: u128| t.saturating_sub(t0);
    let mut claims: Vec<TrueClaim> = Vec::new();
    let mut trace = Vec::new();
    // (true time, node, incarnation, what): sorted, then judged in that order.
    let mut for_guards: Vec<(u128, usize, u64, ForGuards)> = stalls
        .iter()
        .map(|(t, i, s)| (*t, *i, 0, ForGuards::Stall(*s)))
        .collect();
    for (seq, (l, v)) in events.iter().enumerate() {
        let clock = clocks.get(&(l.node, l.inc));
        let local_of = |k: &str| v.get(k).and_then(Value::as_u64).map(u128::from);
        let to_true = |local: u128| clock.and_then(|c| c.true_at(local)).map(rel);
        let kind = v.get("event").and_then(Value::as_str).unwrap_or_default();
        let token = v.get("fencing_token").and_then(Value::as_u64);
        let mut guard = |local: Option<u128>, what: ForGuards| {
            if let Some(t) = local.and_then(to_true) {
                for_guards.push((t, l.node, l.inc, what));
            }
        };
        match kind {
            "lease_renewed" => {
                if let Some(until) = local_of("until_local_ns") {
                    guard(local_of("from_local_ns"), ForGuards::Claim(token, until));
                }
            }
            "lease_released" => {
                if let Some(at) = local_of("at_local_ns") {
                    guard(Some(at), ForGuards::ClaimEnded(at));
                }
            }
            "guard" | "guard_ended" => {
                let via = u8::from(v.get("via").and_then(Value::as_str) == Some("callbacks"));
                if let Some(at) = local_of("at_local_ns") {
                    guard(Some(at), ForGuards::Report(via, token, at, local_of("until_local_ns")));
                }
            }
            _ => {}
        }
        match kind {
            "lease_renewed" => {
                if let (Some(from), Some(until)) = (
                    local_of("from_local_ns").and_then(to_true),
                    local_of("until_local_ns").and_then(to_true),
                ) {
                    claims.push(TrueClaim {
                        node: l.node,
                        id: ids[l.node].clone(),
                        inc: l.inc,
                        token: v.get("fencing_token").and_then(Value::as_u64),
                        from,
                        until,
                    });
                }
            }
            "lease_released" => {
                if let Some(end) = local_of("at_local_ns").and_then(to_true) {
                    for c in claims.iter_mut().filter(|c| (c.node, c.inc) == (l.node, l.inc)) {
                        c.until = c.until.min(end);
                    }
                }
            }
            _ => {}
        }
        if let Some(what) = describe(kind, v) {
            trace.push(TraceEvent {
                at: rel(l.at),
                seq: seq as u64,
                node: Some(ids[l.node].clone()),
                local: clock.and_then(|c| c.local_at(l.at)),
                what,
            });
        }
    }
    for_guards.sort();
    let mut guards = Guards::new(ids.len(), crate::oracle::guards::REAL_SLACK);
    for (t, node, inc, what) in for_guards {
        let true_at = |local: u128| clocks.get(&(node, inc)).and_then(|c| c.true_at(local)).map_or(0, rel);
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
    Record {
        clocks,
        claims,
        trace,
        guards,
    }
}

/// An agent's event as a trace line, in the simulator's words where there are some.
fn describe(kind: &str, v: &Value) -> Option<String> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("none").to_string();
    let token = || {
        v.get("fencing_token")
            .and_then(Value::as_u64)
            .map_or("-".into(), |t| t.to_string())
    };
    let local = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .map_or("-".into(), |t| secs(u128::from(t)))
    };
    Some(match kind {
        "started" => "agent started".into(),
        "stopped" => "agent stopped".into(),
        "leadership" => format!(
            "leader {} {}token={}",
            s("leader"),
            if v.get("is_leader").and_then(Value::as_bool) == Some(true) {
                "(me) "
            } else {
                ""
            },
            token()
        ),
        "lease_renewed" => format!("claim token={} until local={}", token(), local("until_local_ns")),
        "lease_released" => "claim released".into(),
        "member_added" => format!("member added {}", s("member")),
        "member_lost" => format!("member lost {}", s("member")),
        "config_mismatch" => format!("config mismatch with {}", s("peer")),
        "size_mismatch" => format!("{} says cluster_size {}", s("peer"), v["theirs"]),
        "clock" => format!(
            "clock {}ppm wall offset {}ns",
            v.get("ppm").and_then(Value::as_i64).unwrap_or(0),
            v.get("wall_offset_ns").and_then(Value::as_i64).unwrap_or(0)
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(node: usize, inc: u64, at: u128, text: &str) -> Line {
        Line {
            node,
            inc,
            at,
            event: true,
            text: text.into(),
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
                r#"{"event":"clock","true_ns":100000000000,"local_ns":0,"ppm":0}"#,
            ),
            line(
                0,
                1,
                101 * s,
                r#"{"event":"clock","true_ns":101000000000,"local_ns":1000000000,"ppm":10000}"#,
            ),
            line(
                0,
                1,
                102 * s,
                r#"{"event":"lease_renewed","fencing_token":3,"from_local_ns":1000000000,"until_local_ns":3020000000}"#,
            ),
            line(
                1,
                2,
                103 * s,
                r#"{"event":"clock","true_ns":50000000000,"local_ns":7000000000,"ppm":0}"#,
            ),
            line(
                1,
                2,
                104 * s,
                r#"{"event":"lease_renewed","fencing_token":4,"from_local_ns":60000000000,"until_local_ns":61000000000}"#,
            ),
            line(1, 2, 104 * s, r#"{"event":"lease_released","at_local_ns":60500000000}"#),
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
        let clock = r#"{"event":"clock","true_ns":100000000000,"local_ns":0,"ppm":0}"#;
        let claim =
            r#"{"event":"lease_renewed","fencing_token":3,"from_local_ns":1000000000,"until_local_ns":3000000000}"#;
        let released = r#"{"event":"lease_released","at_local_ns":2000000000}"#;
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
