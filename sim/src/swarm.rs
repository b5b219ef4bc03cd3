//! Swarm testing: each seed runs with a random subset of the scenario's fault classes, at
//! random intensities inside what the file allows.
//!
//! A scenario that turns every fault on at once spreads each seed's chances thin: a bug that
//! needs long quiet stretches between two partitions is hidden by the pauses and clock steps
//! around them. Drawing, per seed, which classes run and how hard (Groce et al., "Swarm
//! Testing", ISSTA 2012) explores schedules that a uniform nemesis almost never produces.
//!
//! The draw comes from the seed alone (its own ChaCha stream, apart from the nemesis's), so
//! `replay --swarm` reproduces the run exactly. What was drawn is a plain `[faults]` table.
//!
//! How a class's settings are drawn, never harder than the file says:
//! - each class is on with probability ½, and at least one is;
//! - `every` (a mean gap) is multiplied by a factor drawn from 1 to 4;
//! - a range `"a..b"` becomes a random sub-range of itself;
//! - `max`, `max_ppm` and `loss` are multiplied by a factor drawn from ¼ to 1;
//! - `kinds` (partition shapes) becomes a random non-empty subset of the listed kinds.

use crate::record::Keep;
use crate::report::RunReport;
pub use crate::report::Swarm;
use crate::run::{run_seed, run_seed_lean};
use crate::scenario::duration::text;
use crate::scenario::{FaultSpec, Scenario};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;
use toml::Value;

/// Keeps the swarm's draw apart from the nemesis's stream of the same seed.
const STREAM: u64 = 0x5357_4152_4d00_0001;

/// The scenario as seed `seed` runs it under `--swarm`, and what was drawn.
pub fn draw(scn: &Scenario, seed: u64) -> (Scenario, Swarm) {
    let classes = scn.faults.classes();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ STREAM);
    let mut on: Vec<bool> = classes.iter().map(|_| rng.gen_bool(0.5)).collect();
    if !classes.is_empty() && !on.contains(&true) {
        let i = rng.gen_range(0..classes.len());
        on[i] = true;
    }
    let mut s = scn.clone();
    // Round-trip through TOML: a new fault class is swarmed without a change here.
    let drawn = Value::try_from(&scn.faults).ok().and_then(|v| match v {
        Value::Table(mut t) => {
            for (class, keep) in classes.iter().zip(&on) {
                match (keep, t.get_mut(*class)) {
                    (true, Some(Value::Table(settings))) => {
                        for (key, value) in settings.iter_mut() {
                            vary(key, value, &mut rng);
                        }
                    }
                    _ => {
                        t.remove(*class);
                    }
                }
            }
            Value::Table(t).try_into::<FaultSpec>().ok()
        }
        _ => None,
    });
    if let Some(f) = drawn {
        s.faults = f;
    }
    let pick = |want: bool| -> Vec<String> {
        classes
            .iter()
            .zip(&on)
            .filter(|(_, o)| **o == want)
            .map(|(c, _)| c.to_string())
            .collect()
    };
    let faults = faults_table(&s.faults);
    (
        s,
        Swarm {
            on: pick(true),
            off: pick(false),
            faults,
        },
    )
}

/// The body of a `[faults]` table, one inline table per class, as a scenario file has it.
fn faults_table(f: &FaultSpec) -> String {
    let Ok(Value::Table(t)) = Value::try_from(f) else {
        return String::new();
    };
    let mut out = String::new();
    let order = f.classes().into_iter().chain(std::iter::once("quiet"));
    for (k, v) in order.filter_map(|k| t.get(k).map(|v| (k, v))) {
        out.push_str(&format!("{k} = {v}\n"));
    }
    out
}

/// Runs seed `seed` of `scn` under `--swarm`: its report carries the draw, and its replay
/// command asks for the same draw. `keep`: the whole report ([`run_seed`]) or a sweep's
/// ([`run_seed_lean`]).
pub fn run_swarm_seed(scn: &Scenario, seed: u64, source: &str, keep: Keep) -> RunReport {
    let (s, swarm) = draw(scn, seed);
    let mut r = match keep {
        Keep::Everything => run_seed(&s, seed, source),
        Keep::Verdict => run_seed_lean(&s, seed, source),
    };
    r.replay.push_str(" --swarm");
    r.swarm = Some(swarm);
    r
}

/// One setting of an enabled class, drawn within what the file allows.
fn vary(key: &str, value: &mut Value, rng: &mut ChaCha8Rng) {
    match (key, &*value) {
        ("every", Value::String(d)) => {
            if let Ok(d) = humantime::parse_duration(d) {
                *value = Value::String(text(scale(d, rng.gen_range(1.0..=4.0))));
            }
        }
        ("max", Value::String(d)) => {
            if let Ok(d) = humantime::parse_duration(d) {
                *value = Value::String(text(scale(d, rng.gen_range(0.25..=1.0))));
            }
        }
        ("max_ppm", Value::Integer(p)) => {
            *value = Value::Integer((*p as f64 * rng.gen_range(0.25..=1.0)).round() as i64);
        }
        ("loss", Value::Float(l)) => *value = Value::Float(l * rng.gen_range(0.25..=1.0)),
        ("kinds", Value::Array(kinds)) if !kinds.is_empty() => {
            let mut keep: Vec<Value> = kinds.iter().filter(|_| rng.gen_bool(0.5)).cloned().collect();
            if keep.is_empty() {
                keep.push(kinds[rng.gen_range(0..kinds.len())].clone());
            }
            *value = Value::Array(keep);
        }
        (_, Value::String(r)) => {
            let Some((a, b)) = r.split_once("..") else {
                return;
            };
            if let (Ok(lo), Ok(hi)) = (humantime::parse_duration(a.trim()), humantime::parse_duration(b.trim())) {
                let span = hi.saturating_sub(lo).as_nanos() as f64;
                let x = lo + Duration::from_nanos((span * rng.gen_range(0.0..=1.0)) as u64);
                let y = x + Duration::from_nanos(
                    (hi.saturating_sub(x).as_nanos() as f64 * rng.gen_range(0.0..=1.0)) as u64,
                );
                *value = Value::String(format!("{}..{}", text(x), text(y.min(hi))));
            }
        }
        _ => {}
    }
}

/// `d` times `f`, to the millisecond (a drawn setting reads like one a person wrote).
fn scale(d: Duration, f: f64) -> Duration {
    let ms = (d.as_secs_f64() * f * 1000.0).round().max(1.0);
    Duration::from_millis(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
nodes = 3
duration = "60s"
[faults]
partition = { every = "5s", heal_after = "1s..3s", kinds = ["halves", "isolate_leader", "one_way"] }
pause = { every = "4s", pause_for = "100ms..2s" }
clock_drift = { max_ppm = 20000 }
loss_spike = { every = "6s", lasts = "1s..2s", loss = 0.5 }
"#;

    #[test]
    fn a_draw_is_the_seeds_and_stays_inside_the_file() {
        let scn = Scenario::parse("s.toml", FILE).unwrap();
        let mut seen_on = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let (s, w) = draw(&scn, seed);
            assert_eq!(draw(&scn, seed).1, w, "the same seed draws the same");
            assert!(!w.on.is_empty());
            assert_eq!(w.on.len() + w.off.len(), 4);
            seen_on.insert(w.on.clone());
            assert_eq!(s.faults.classes(), w.on.iter().map(|c| c.as_str()).collect::<Vec<_>>());
            if let Some(p) = &s.faults.partition {
                assert!(p.every.0 >= Duration::from_secs(5) && p.every.0 <= Duration::from_secs(20));
                assert!(p.heal_after.lo >= Duration::from_secs(1) && p.heal_after.hi <= Duration::from_secs(3));
                assert!(p.heal_after.lo <= p.heal_after.hi);
                let kinds = p.kinds.as_ref().unwrap();
                assert!(!kinds.is_empty() && kinds.len() <= 3);
            }
            if let Some(d) = &s.faults.clock_drift {
                assert!(d.max_ppm >= 5000 && d.max_ppm <= 20000);
            }
            if let Some(l) = &s.faults.loss_spike {
                assert!(l.loss > 0.0 && l.loss <= 0.5);
            }
            // The drawn table is a valid scenario's.
            let text = format!("nodes = 3\nduration = \"60s\"\n[faults]\n{}", w.faults);
            Scenario::parse("drawn.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        }
        assert!(seen_on.len() >= 10, "many different subsets: {}", seen_on.len());
    }
}
