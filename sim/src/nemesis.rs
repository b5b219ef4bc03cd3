//! The nemesis: the fault plan of one run, drawn from the run's seed (ChaCha) and the scenario's
//! `[faults]`, merged with its scripted `[[at]]` timeline.

use crate::faults::{Action, FaultEvent};
use crate::scenario::{DurRange, FaultSpec, PartitionFault, PartitionKind, Scenario, Step};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// The plan of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Each node's initial drift (ppm).
    pub drift_ppm: Vec<i64>,
    /// Each node's initial wall-clock offset (ns).
    pub wall_offset_ns: Vec<i128>,
    /// Each node's monotonic clock origin (the reading at true time 0).
    pub origin: Vec<Duration>,
    /// Fault events in time order.
    pub events: Vec<FaultEvent>,
}

impl Plan {
    /// When the last fault ends (or the start, if there is none).
    pub fn last_fault_end(&self) -> Duration {
        self.events.iter().map(|e| e.at).max().unwrap_or(Duration::ZERO)
    }
}

fn gap(rng: &mut ChaCha8Rng, every: Duration) -> Duration {
    every.mul_f64(rng.gen_range(0.5..1.5))
}

fn within(rng: &mut ChaCha8Rng, r: DurRange) -> Duration {
    let (lo, hi) = (r.lo.as_nanos() as u64, r.hi.as_nanos() as u64);
    Duration::from_nanos(if hi > lo { rng.gen_range(lo..=hi) } else { lo })
}

/// One random fault class's episodes: after a gap (mean `every`), `draw` picks the fault and
/// its undoing, which follows after a time drawn from `lasts`; until `end`.
fn episodes(
    ev: &mut Vec<FaultEvent>,
    seed: u64,
    every: Duration,
    lasts: DurRange,
    end: Duration,
    mut draw: impl FnMut(&mut ChaCha8Rng) -> (Action, Action),
) {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let mut t = gap(&mut r, every);
    while t < end {
        let (fault, undo) = draw(&mut r);
        ev.push(FaultEvent {
            at: t,
            action: fault,
            scripted: false,
        });
        let back = (t + within(&mut r, lasts)).min(end);
        ev.push(FaultEvent {
            at: back,
            action: undo,
            scripted: false,
        });
        t = back + gap(&mut r, every);
    }
}

/// Draws a run's plan from `seed`.
pub fn plan(scn: &Scenario, seed: u64) -> Plan {
    let n = scn.sim_nodes().len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7321);
    let f = &scn.faults;
    let end = scn.faults_end();
    let drift_ppm: Vec<i64> = (0..n)
        .map(|_| {
            f.clock_drift
                .as_ref()
                .map_or(0, |d| rng.gen_range(-(d.max_ppm as i64)..=d.max_ppm as i64))
        })
        .collect();
    let wall_offset_ns: Vec<i128> = (0..n)
        .map(|_| {
            f.clock_offset.as_ref().map_or(0, |o| {
                let m = o.max.0.as_nanos() as i128;
                rng.gen_range(-m..=m)
            })
        })
        .collect();
    let origin = (0..n)
        .map(|_| Duration::from_millis(rng.gen_range(0..1_000_000)))
        .collect();
    // A `[[node]]`'s own clock settings win over the drawn ones (drawn anyway, so that the
    // other streams do not move).
    let drift_ppm: Vec<i64> = (0..n)
        .map(|i| scn.node.get(i).and_then(|s| s.drift_ppm).unwrap_or(drift_ppm[i]))
        .collect();
    let wall_offset_ns: Vec<i128> = (0..n)
        .map(|i| {
            let own = scn.node.get(i).and_then(|s| s.wall_offset_ms);
            own.map_or(wall_offset_ns[i], |ms| i128::from(ms) * 1_000_000)
        })
        .collect();
    let mut ev = random_faults(scn, f, n, end, &mut rng);
    let nodes = scn.sim_nodes();
    let index = |id: &str| nodes.iter().position(|x| x.id == id).unwrap_or(0);
    for at in &scn.at {
        let action = Action::from_step(&at.step, index);
        // A suspension for a while is woken by the plan itself.
        if let (Step::Suspend(s), Action::Suspend(i)) = (&at.step, &action) {
            if let Some(lasts) = s.lasts {
                ev.push(FaultEvent {
                    at: at.time.0 + lasts.0,
                    action: Action::Wake(*i),
                    scripted: true,
                });
            }
        }
        ev.push(FaultEvent {
            at: at.time.0,
            action,
            scripted: true,
        });
    }
    // Stable: events at the same time keep their generation order.
    ev.sort_by_key(|e| e.at);
    Plan {
        drift_ppm,
        wall_offset_ns,
        origin,
        events: ev,
    }
}

/// The random nemesis's events, until `end`. Each fault class is its own stream, seeded from
/// `rng` in a fixed order, so adding one class does not reshuffle the others.
fn random_faults(scn: &Scenario, f: &FaultSpec, n: usize, end: Duration, rng: &mut ChaCha8Rng) -> Vec<FaultEvent> {
    let mut ev: Vec<FaultEvent> = Vec::new();
    if let Some(p) = &f.partition {
        partitions(&mut ev, p, n, end, rng);
    }
    if let Some(p) = &f.restart {
        episodes(&mut ev, rng.gen(), p.every.0, p.down_for, end, |r| {
            let i = r.gen_range(0..n);
            (Action::Kill(i), Action::Restart(i))
        });
    }
    if let Some(p) = &f.pause {
        episodes(&mut ev, rng.gen(), p.every.0, p.pause_for, end, |r| {
            let i = r.gen_range(0..n);
            (Action::Pause(i), Action::Resume(i))
        });
    }
    if let Some(p) = &f.clock_step {
        let m = p.max.0.as_nanos() as i128;
        instants(&mut ev, rng.gen(), p.every.0, end, |r| {
            Action::ClockStep(r.gen_range(0..n), r.gen_range(-m..=m))
        });
    }
    if let Some(d) = &f.clock_drift {
        if let Some(every) = d.every {
            let m = i64::from(d.max_ppm);
            instants(&mut ev, rng.gen(), every.0, end, |r| {
                Action::Drift(r.gen_range(0..n), r.gen_range(-m..=m))
            });
        }
    }
    if let Some(s) = &f.loss_spike {
        let base = scn.network.loss;
        episodes(&mut ev, rng.gen(), s.every.0, s.lasts, end, |_| {
            (Action::Loss(s.loss), Action::Loss(base))
        });
    }
    if let Some(s) = &f.latency_spike {
        let base = scn.network.latency;
        episodes(&mut ev, rng.gen(), s.every.0, s.lasts, end, |_| {
            (Action::Latency(s.latency), Action::Latency(base))
        });
    }
    if let Some(p) = &f.state_loss {
        episodes(&mut ev, rng.gen(), p.every.0, p.down_for, end, |r| {
            let node = r.gen_range(0..n);
            let loss = Action::StateLoss {
                node,
                wipe: r.gen_bool(0.5),
                pick: r.gen(),
            };
            (loss, Action::Restart(node))
        });
    }
    if let Some(p) = &f.replay {
        instants(&mut ev, rng.gen(), p.every.0, end, |r| {
            Action::Replay(r.gen_range(0..n), within(r, p.delay))
        });
    }
    if let Some(p) = &f.slow_consumer {
        slow_consumers(&mut ev, rng.gen(), p.every.0, p.lasts, n, end);
    }
    if let Some(p) = &f.forge {
        instants(&mut ev, rng.gen(), p.every.0, end, |r| Action::Forge(r.gen()));
    }
    if let Some(p) = &f.stop {
        episodes(&mut ev, rng.gen(), p.every.0, p.down_for, end, |r| {
            let i = r.gen_range(0..n);
            (Action::Stop(i), Action::Restart(i))
        });
    }
    if let Some(p) = &f.suspend {
        episodes(&mut ev, rng.gen(), p.every.0, p.lasts, end, |r| {
            let i = r.gen_range(0..n);
            (Action::Suspend(i), Action::Wake(i))
        });
    }
    ev
}

/// Slow-consumer episodes: a load spike makes the servers of some nodes (one to all but one)
/// drop what is sent to them, all at once, until they catch up.
fn slow_consumers(ev: &mut Vec<FaultEvent>, seed: u64, every: Duration, lasts: DurRange, n: usize, end: Duration) {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let mut t = gap(&mut r, every);
    while t < end {
        let mut nodes: Vec<usize> = (0..n).collect();
        nodes.shuffle(&mut r);
        nodes.truncate(r.gen_range(1..=n.saturating_sub(1).max(1)));
        let back = (t + within(&mut r, lasts)).min(end);
        for (at, on) in [(t, true), (back, false)] {
            ev.extend(nodes.iter().map(|i| FaultEvent {
                at,
                action: Action::SlowConsumer(*i, on),
                scripted: false,
            }));
        }
        t = back + gap(&mut r, every);
    }
}

/// Single-event faults (clock steps, drift changes) at gaps of mean `every`, until `end`.
fn instants(
    ev: &mut Vec<FaultEvent>,
    seed: u64,
    every: Duration,
    end: Duration,
    mut draw: impl FnMut(&mut ChaCha8Rng) -> Action,
) {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let mut t = gap(&mut r, every);
    while t < end {
        let action = draw(&mut r);
        ev.push(FaultEvent {
            at: t,
            action,
            scripted: false,
        });
        t += gap(&mut r, every);
    }
}

/// A one-way cut of a random shape over the shuffled nodes `perm` (at least two): everyone to
/// one node (it hears nothing and is heard), one node to everyone (it hears all and is heard
/// by none), one set to another, or a single link.
fn one_way(r: &mut ChaCha8Rng, perm: &[usize]) -> Action {
    let n = perm.len();
    let (from, to) = match r.gen_range(0..4) {
        0 => (perm[1..].to_vec(), vec![perm[0]]),
        1 => (vec![perm[0]], perm[1..].to_vec()),
        2 => {
            let k = r.gen_range(1..n);
            (perm[..k].to_vec(), perm[k..].to_vec())
        }
        _ => (vec![perm[0]], vec![perm[1]]),
    };
    Action::OneWay { from, to }
}

/// Partition episodes, each of a shape drawn from the allowed kinds, healed after a while.
fn partitions(ev: &mut Vec<FaultEvent>, p: &PartitionFault, n: usize, end: Duration, rng: &mut ChaCha8Rng) {
    let kinds = p.kinds.clone().unwrap_or_else(|| {
        vec![
            PartitionKind::Halves,
            PartitionKind::MajorityMinority,
            PartitionKind::IsolateLeader,
            PartitionKind::Bridge,
            PartitionKind::OneWay,
        ]
    });
    if n <= 1 || kinds.is_empty() {
        return;
    }
    episodes(ev, rng.gen(), p.every.0, p.heal_after, end, |r| {
        let mut perm: Vec<usize> = (0..n).collect();
        perm.shuffle(r);
        let action = match kinds[r.gen_range(0..kinds.len())] {
            PartitionKind::Halves => Action::Partition {
                groups: vec![perm[..n / 2].to_vec(), perm[n / 2..].to_vec()],
                label: "halves",
            },
            PartitionKind::MajorityMinority => {
                let minority = r.gen_range(1..=((n - 1) / 2).max(1));
                Action::Partition {
                    groups: vec![perm[minority..].to_vec(), perm[..minority].to_vec()],
                    label: "majority/minority",
                }
            }
            PartitionKind::IsolateLeader => Action::IsolateLeader { fallback: perm[0] },
            PartitionKind::Bridge if n >= 3 => Action::Bridge {
                bridge: perm[0],
                a: perm[1..=(n - 1) / 2].to_vec(),
                b: perm[(n - 1) / 2 + 1..].to_vec(),
            },
            PartitionKind::Bridge | PartitionKind::OneWay => one_way(r, &perm),
        };
        (action, Action::Heal)
    });
}
