//! The nemesis: the fault plan of one run, drawn from the run's seed (ChaCha) and the scenario's
//! `[faults]`, merged with its scripted `[[at]]` timeline.

use crate::faults::{Action, FaultEvent};
use crate::scenario::{DurRange, FaultSpec, PartitionFault, PartitionKind, Scenario, Step};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
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

/// Draws an episode's fault and its undoing.
type DrawEpisode = Box<dyn FnMut(&mut ChaCha8Rng) -> (Action, Action) + Send>;

/// Draws a single fault.
type DrawInstant = Box<dyn FnMut(&mut ChaCha8Rng) -> Action + Send>;

/// The drawing of one random fault class's events.
enum Draw {
    /// An episode: the fault, and its undoing after a time drawn from the range.
    Episode(DurRange, DrawEpisode),
    /// A single event.
    Instant(DrawInstant),
    /// A slow-consumer episode over `n` nodes, lasting a time drawn from the range.
    SlowConsumers(DurRange, usize),
}

/// One random fault class's events in time order, drawn as they are needed: after a gap (mean
/// `every`), a fault (and for an episode, its undoing after a while); until `end`.
struct Stream {
    r: ChaCha8Rng,
    /// When the next episode or instant begins.
    t: Duration,
    every: Duration,
    end: Duration,
    draw: Draw,
    /// Events drawn and not yet taken (an episode draws two or more at once).
    ready: VecDeque<FaultEvent>,
}

impl Stream {
    fn new(seed: u64, every: Duration, end: Duration, draw: Draw) -> Self {
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        let t = gap(&mut r, every);
        Stream {
            r,
            t,
            every,
            end,
            draw,
            ready: VecDeque::new(),
        }
    }

    fn episode(
        seed: u64,
        every: Duration,
        lasts: DurRange,
        end: Duration,
        draw: impl FnMut(&mut ChaCha8Rng) -> (Action, Action) + Send + 'static,
    ) -> Self {
        Stream::new(seed, every, end, Draw::Episode(lasts, Box::new(draw)))
    }

    fn instants(
        seed: u64,
        every: Duration,
        end: Duration,
        draw: impl FnMut(&mut ChaCha8Rng) -> Action + Send + 'static,
    ) -> Self {
        Stream::new(seed, every, end, Draw::Instant(Box::new(draw)))
    }

    /// Draws the next episode or instant, if there is one before the end.
    fn refill(&mut self) {
        if self.t >= self.end {
            return;
        }
        let (r, t) = (&mut self.r, self.t);
        let event = |at, action| FaultEvent {
            at,
            action,
            scripted: false,
        };
        match &mut self.draw {
            Draw::Episode(lasts, draw) => {
                let (fault, undo) = draw(r);
                let back = (t + within(r, *lasts)).min(self.end);
                self.ready.extend([event(t, fault), event(back, undo)]);
                self.t = back + gap(r, self.every);
            }
            Draw::Instant(draw) => {
                let action = draw(r);
                self.ready.push_back(event(t, action));
                self.t = t + gap(r, self.every);
            }
            // A load spike makes the servers of some nodes (one to all but one) drop what
            // is sent to them, all at once, until they catch up.
            Draw::SlowConsumers(lasts, n) => {
                let mut nodes: Vec<usize> = (0..*n).collect();
                nodes.shuffle(r);
                nodes.truncate(r.gen_range(1..=n.saturating_sub(1).max(1)));
                let back = (t + within(r, *lasts)).min(self.end);
                for (at, on) in [(t, true), (back, false)] {
                    self.ready
                        .extend(nodes.iter().map(|i| event(at, Action::SlowConsumer(*i, on))));
                }
                self.t = back + gap(r, self.every);
            }
        }
    }

    /// The next event's time, drawing it if needed.
    fn peek(&mut self) -> Option<Duration> {
        if self.ready.is_empty() {
            self.refill();
        }
        self.ready.front().map(|e| e.at)
    }
}

/// A run's fault events in time order, drawn lazily, so a long run does not hold its whole
/// plan: the random classes' streams merged by time (ties go to the class drawn first), then
/// the scripted steps. The order is that of a stable sort of all events by time.
pub struct Events {
    streams: Vec<Stream>,
    scripted: VecDeque<FaultEvent>,
}

impl Iterator for Events {
    type Item = FaultEvent;

    fn next(&mut self) -> Option<FaultEvent> {
        let mut best: Option<(Duration, usize)> = None;
        for (k, s) in self.streams.iter_mut().enumerate() {
            if let Some(at) = s.peek() {
                if best.is_none_or(|(b, _)| at < b) {
                    best = Some((at, k));
                }
            }
        }
        match (best, self.scripted.front()) {
            (Some((at, _)), Some(e)) if e.at < at => self.scripted.pop_front(),
            (Some((_, k)), _) => self.streams[k].ready.pop_front(),
            (None, _) => self.scripted.pop_front(),
        }
    }
}

/// Draws a run's plan from `seed`.
pub fn plan(scn: &Scenario, seed: u64) -> Plan {
    let (mut p, events) = lazy_plan(scn, seed);
    p.events = events.collect();
    p
}

/// Draws a run's plan from `seed`, its fault events left to be drawn as the run needs them
/// (`Plan::events` is empty): what a long run uses, so it does not hold them all.
pub fn lazy_plan(scn: &Scenario, seed: u64) -> (Plan, Events) {
    let n = scn.sim_nodes().len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7321);
    let f = &scn.faults;
    let end = scn.faults_end();
    let plan = draw_clocks(scn, n, &mut rng);
    let streams = random_faults(scn, f, n, end, &mut rng);
    let ev = scripted_events(scn);
    (
        plan,
        Events {
            streams,
            scripted: ev.into(),
        },
    )
}

/// Draws each of the `n` nodes' clocks (drift, wall-clock offset, monotonic origin) from
/// `rng`, in that order: the plan, its events still empty.
fn draw_clocks(scn: &Scenario, n: usize, rng: &mut ChaCha8Rng) -> Plan {
    let f = &scn.faults;
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
    Plan {
        drift_ppm,
        wall_offset_ns,
        origin,
        events: Vec::new(),
    }
}

/// The scenario's scripted steps as fault events, with the wake-ups of those that last a
/// while, in time order (steps at the same time keep their order in the file).
fn scripted_events(scn: &Scenario) -> Vec<FaultEvent> {
    let mut ev = Vec::new();
    let nodes = scn.sim_nodes();
    let index = |id: &str| nodes.iter().position(|x| x.id == id).unwrap_or(0);
    for at in &scn.at {
        let action = Action::from_step(&at.step, index);
        // A step that lasts a while (`for`) is ended by the plan itself: a suspension or a
        // freeze by its wake, a frozen connection by its thaw, a congestion or a slow link by
        // its end.
        let end = match (&at.step, &action) {
            (Step::Suspend(s) | Step::Freeze(s), Action::Suspend(i) | Action::Freeze(i)) => {
                s.lasts.map(|l| (l, Action::Wake(*i)))
            }
            (Step::FreezeConnection(f), Action::FreezeConnection(i, true)) => {
                f.lasts.map(|l| (l, Action::FreezeConnection(*i, false)))
            }
            (Step::Congest(c), Action::Congest(i, _)) => c.lasts.map(|l| (l, Action::Congest(*i, None))),
            (Step::Lag(g), Action::Lag(i, _)) => g.lasts.map(|l| (l, Action::Lag(*i, None))),
            _ => None,
        };
        if let Some((lasts, action)) = end {
            ev.push(FaultEvent {
                at: at.time.0 + lasts.0,
                action,
                scripted: true,
            });
        }
        ev.push(FaultEvent {
            at: at.time.0,
            action,
            scripted: true,
        });
    }
    // In quantised time a step comes just after its boundary's arrivals and timers.
    if let Some(q) = scn.quantum() {
        for e in &mut ev {
            e.at = Duration::from_nanos(q.step(e.at.as_nanos()) as u64);
        }
    }
    // Stable: scripted steps at the same time keep their order in the file.
    ev.sort_by_key(|e| e.at);
    ev
}

/// The random nemesis's events, until `end`. Each fault class is its own stream, seeded from
/// `rng` in a fixed order, so adding one class does not reshuffle the others. (That order is
/// the order of the classes in the two functions below, the first's before the second's: a
/// new class goes last.)
fn random_faults(scn: &Scenario, f: &FaultSpec, n: usize, end: Duration, rng: &mut ChaCha8Rng) -> Vec<Stream> {
    let mut ev: Vec<Stream> = Vec::new();
    cut_crash_clock_and_spike_streams(scn, f, n, end, rng, &mut ev);
    state_message_and_stall_streams(f, n, end, rng, &mut ev);
    ev
}

/// The first fault classes, seeded in this order: partitions, restarts, pauses, clock steps,
/// clock drift, loss spikes and latency spikes.
fn cut_crash_clock_and_spike_streams(
    scn: &Scenario,
    f: &FaultSpec,
    n: usize,
    end: Duration,
    rng: &mut ChaCha8Rng,
    ev: &mut Vec<Stream>,
) {
    if let Some(p) = &f.partition {
        ev.extend(partitions(p, n, end, rng));
    }
    if let Some(p) = &f.restart {
        ev.push(Stream::episode(rng.gen(), p.every.0, p.down_for, end, move |r| {
            let i = r.gen_range(0..n);
            (Action::Kill(i), Action::Restart(i))
        }));
    }
    if let Some(p) = &f.pause {
        ev.push(Stream::episode(rng.gen(), p.every.0, p.pause_for, end, move |r| {
            let i = r.gen_range(0..n);
            (Action::Pause(i), Action::Resume(i))
        }));
    }
    if let Some(p) = &f.clock_step {
        let m = p.max.0.as_nanos() as i128;
        ev.push(Stream::instants(rng.gen(), p.every.0, end, move |r| {
            Action::ClockStep(r.gen_range(0..n), r.gen_range(-m..=m))
        }));
    }
    if let Some(d) = &f.clock_drift {
        if let Some(every) = d.every {
            let m = i64::from(d.max_ppm);
            ev.push(Stream::instants(rng.gen(), every.0, end, move |r| {
                Action::Drift(r.gen_range(0..n), r.gen_range(-m..=m))
            }));
        }
    }
    if let Some(s) = &f.loss_spike {
        let (base, loss) = (scn.network.loss, s.loss);
        ev.push(Stream::episode(rng.gen(), s.every.0, s.lasts, end, move |_| {
            (Action::Loss(loss), Action::Loss(base))
        }));
    }
    if let Some(s) = &f.latency_spike {
        let (base, latency) = (scn.network.latency, s.latency);
        ev.push(Stream::episode(rng.gen(), s.every.0, s.lasts, end, move |_| {
            (Action::Latency(latency), Action::Latency(base))
        }));
    }
}

/// The later fault classes, seeded in this order after the first: state loss, replays, slow
/// consumers, forgeries, stops, suspensions, freezes, congestion, preemption and slow links
/// (each new class last, so that a file without it draws what it drew before).
fn state_message_and_stall_streams(f: &FaultSpec, n: usize, end: Duration, rng: &mut ChaCha8Rng, ev: &mut Vec<Stream>) {
    if let Some(p) = &f.state_loss {
        ev.push(Stream::episode(rng.gen(), p.every.0, p.down_for, end, move |r| {
            let node = r.gen_range(0..n);
            let loss = Action::StateLoss {
                node,
                wipe: r.gen_bool(0.5),
                pick: r.gen(),
            };
            (loss, Action::Restart(node))
        }));
    }
    if let Some(p) = &f.replay {
        let delay = p.delay;
        ev.push(Stream::instants(rng.gen(), p.every.0, end, move |r| {
            Action::Replay(r.gen_range(0..n), within(r, delay))
        }));
    }
    if let Some(p) = &f.slow_consumer {
        ev.push(Stream::new(rng.gen(), p.every.0, end, Draw::SlowConsumers(p.lasts, n)));
    }
    if let Some(p) = &f.forge {
        ev.push(Stream::instants(rng.gen(), p.every.0, end, |r| Action::Forge(r.gen())));
    }
    if let Some(p) = &f.stop {
        ev.push(Stream::episode(rng.gen(), p.every.0, p.down_for, end, move |r| {
            let i = r.gen_range(0..n);
            (Action::Stop(i), Action::Restart(i))
        }));
    }
    if let Some(p) = &f.suspend {
        ev.push(Stream::episode(rng.gen(), p.every.0, p.lasts, end, move |r| {
            let i = r.gen_range(0..n);
            (Action::Suspend(i), Action::Wake(i))
        }));
    }
    if let Some(p) = &f.freeze {
        ev.push(Stream::episode(rng.gen(), p.every.0, p.lasts, end, move |r| {
            let i = r.gen_range(0..n);
            (Action::Freeze(i), Action::Wake(i))
        }));
    }
    if let Some(c) = &f.congest {
        let delay = c.delay;
        ev.push(Stream::episode(rng.gen(), c.every.0, c.lasts, end, move |r| {
            let i = r.gen_range(0..n);
            (Action::Congest(i, Some(within(r, delay))), Action::Congest(i, None))
        }));
    }
    if let Some(p) = &f.preempt {
        let max = p.max.0;
        ev.push(Stream::instants(rng.gen(), p.every.0, end, move |r| {
            Action::Preempt(r.gen_range(0..n), log_uniform(r, max))
        }));
    }
    if let Some(l) = &f.lag {
        let latency = l.latency;
        ev.push(Stream::episode(rng.gen(), l.every.0, l.lasts, end, move |r| {
            let i = r.gen_range(0..n);
            (Action::Lag(i, Some(within(r, latency))), Action::Lag(i, None))
        }));
    }
}

/// A duration from 1 µs (or `max`, if shorter) to `max`, spread evenly over the octaves
/// between them (an octave drawn uniformly, then a time uniformly within it): short stalls are
/// as common as long ones. Integer arithmetic only, so every platform draws the same.
fn log_uniform(r: &mut ChaCha8Rng, max: Duration) -> Duration {
    let hi = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX).max(1);
    let lo = hi.min(1_000);
    let octaves = 64 - (hi / lo).leading_zeros();
    let k = r.gen_range(0..octaves);
    let a = lo << k;
    let b = a.saturating_mul(2).min(hi);
    Duration::from_nanos(r.gen_range(a..=b))
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
fn partitions(p: &PartitionFault, n: usize, end: Duration, rng: &mut ChaCha8Rng) -> Option<Stream> {
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
        return None;
    }
    Some(Stream::episode(rng.gen(), p.every.0, p.heal_after, end, move |r| {
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
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalls_spread_over_the_octaves_from_a_microsecond_to_the_longest() {
        let mut r = ChaCha8Rng::seed_from_u64(5);
        let max = Duration::from_millis(500);
        let draws: Vec<Duration> = (0..20_000).map(|_| log_uniform(&mut r, max)).collect();
        assert!(draws.iter().all(|d| *d >= Duration::from_micros(1) && *d <= max));
        let within = |lo: u64, hi: u64| {
            let n = draws
                .iter()
                .filter(|d| (lo..hi).contains(&(d.as_micros() as u64)))
                .count();
            n as f64 / draws.len() as f64
        };
        // 19 octaves: a third of the stalls within SuspendedTime's 100 us tolerance, and as
        // many from 1 ms to 32 ms as from 16 ms to 500 ms.
        assert!((0.30..0.40).contains(&within(0, 101)), "{}", within(0, 101));
        assert!((within(1_000, 32_000) - within(16_000, 500_001)).abs() < 0.03);
        assert_eq!(
            log_uniform(&mut r, Duration::from_nanos(300)),
            Duration::from_nanos(300)
        );
    }
}
