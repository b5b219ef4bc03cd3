//! The nemesis: the fault plan of one run, drawn from the seed (ChaCha) and the scenario's
//! `[faults]`, merged with its scripted `[[at]]` timeline.

use crate::scenario::{DurRange, PartitionKind, Scenario};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// One fault action.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Cut routes between groups of node indices.
    Partition {
        /// The groups.
        groups: Vec<Vec<usize>>,
        /// What shape it is, for the trace.
        label: &'static str,
    },
    /// Cut the current leader off from everyone (resolved when applied; `fallback` if none).
    IsolateLeader {
        /// Node isolated when no node holds a lease.
        fallback: usize,
    },
    /// Two halves joined only through `bridge`.
    Bridge {
        /// One side.
        a: Vec<usize>,
        /// The other side.
        b: Vec<usize>,
        /// The node that hears both.
        bridge: usize,
    },
    /// Cut exactly these directed routes (replacing the cuts in force).
    Cut(Vec<(usize, usize)>),
    /// Cut routes from `from` to `to` only.
    OneWay {
        /// Senders whose messages are lost.
        from: Vec<usize>,
        /// Receivers that do not get them.
        to: Vec<usize>,
    },
    /// Restore every route.
    Heal,
    /// Kill a node (memory lost).
    Kill(usize),
    /// Start a killed node again.
    Restart(usize),
    /// Pause a node's process (its clocks keep running).
    Pause(usize),
    /// Resume a paused node.
    Resume(usize),
    /// Step a node's wall clock by this many ns (negative: back).
    ClockStep(usize, i128),
    /// Set a node's drift rate (ppm).
    Drift(usize, i64),
    /// Set route loss.
    Loss(f64),
    /// Set route latency.
    Latency(DurRange),
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultEvent {
    /// True simulated time.
    pub at: Duration,
    /// What happens.
    pub action: Action,
    /// From `[[at]]` rather than the random nemesis.
    pub scripted: bool,
}

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
    let nodes = scn.sim_nodes();
    let n = nodes.len();
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
    let mut ev: Vec<FaultEvent> = Vec::new();
    let push = |ev: &mut Vec<FaultEvent>, at: Duration, action: Action| {
        ev.push(FaultEvent {
            at,
            action,
            scripted: false,
        })
    };

    // Each fault class is its own stream, so adding one class does not reshuffle the others.
    if let Some(p) = &f.partition {
        let kinds = p.kinds.clone().unwrap_or_else(|| {
            vec![
                PartitionKind::Halves,
                PartitionKind::MajorityMinority,
                PartitionKind::IsolateLeader,
                PartitionKind::Bridge,
                PartitionKind::OneWay,
            ]
        });
        if n > 1 && !kinds.is_empty() {
            episodes(&mut ev, rng.gen(), p.every.0, p.heal_after, end, |r| {
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
                    PartitionKind::Bridge | PartitionKind::OneWay => Action::OneWay {
                        from: perm[1..].to_vec(),
                        to: vec![perm[0]],
                    },
                };
                (action, Action::Heal)
            });
        }
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
        let mut r = ChaCha8Rng::seed_from_u64(rng.gen());
        let mut t = gap(&mut r, p.every.0);
        while t < end {
            let m = p.max.0.as_nanos() as i128;
            push(&mut ev, t, Action::ClockStep(r.gen_range(0..n), r.gen_range(-m..=m)));
            t += gap(&mut r, p.every.0);
        }
    }
    if let Some(d) = &f.clock_drift {
        if let Some(every) = d.every {
            let mut r = ChaCha8Rng::seed_from_u64(rng.gen());
            let mut t = gap(&mut r, every.0);
            let m = i64::from(d.max_ppm);
            while t < end {
                push(&mut ev, t, Action::Drift(r.gen_range(0..n), r.gen_range(-m..=m)));
                t += gap(&mut r, every.0);
            }
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

    let index = |id: &str| nodes.iter().position(|x| x.id == id).unwrap_or(0);
    for at in &scn.at {
        let action = if let Some(groups) = &at.partition {
            Action::Partition {
                groups: groups.iter().map(|g| g.iter().map(|id| index(id)).collect()).collect(),
                label: "scripted",
            }
        } else if let Some((a, b)) = &at.one_way {
            Action::OneWay {
                from: vec![index(a)],
                to: vec![index(b)],
            }
        } else if let Some(links) = &at.cut {
            Action::Cut(links.iter().map(|(a, b)| (index(a), index(b))).collect())
        } else if let Some(l) = at.loss {
            Action::Loss(l)
        } else if let Some(r) = at.latency {
            Action::Latency(r)
        } else if at.heal {
            Action::Heal
        } else if let Some(id) = &at.kill {
            Action::Kill(index(id))
        } else if let Some(id) = &at.restart {
            Action::Restart(index(id))
        } else if let Some(id) = &at.pause {
            Action::Pause(index(id))
        } else if let Some(id) = &at.resume {
            Action::Resume(index(id))
        } else if let Some(c) = &at.clock_step {
            let by = c.by.0.as_nanos() as i128;
            Action::ClockStep(index(&c.node), if c.back { -by } else { by })
        } else if let Some(d) = &at.drift {
            Action::Drift(index(&d.node), d.ppm)
        } else {
            continue;
        };
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
