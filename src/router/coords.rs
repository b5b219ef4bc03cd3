//! Vivaldi network coordinates (Dabek, Cox, Kaashoek, Morris, SIGCOMM 2004), in the height-
//! vector form Consul's `serf/coordinate` uses.
//!
//! Why not the `vivaldi-nc` crate (0.6.12): when a node must move *closer* (measured round
//! trip below the estimate), its update scales a height vector by a negative factor, which the
//! crate treats as invalid and replaces with a random vector drawn from the thread's OS-seeded
//! RNG. Heights then only grow (estimates do not converge), and simulated runs stop being
//! reproducible. This module keeps the same algorithm with the height clamped instead, and no
//! randomness at all: a start position comes from the caller's seed, and the direction between
//! two coincident nodes from their names.

use crate::config::{Bug, BugKnobs};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Tuning from the paper (and Consul): error and movement gains.
const CE: f64 = 0.25;
const CC: f64 = 0.25;
/// Floor of a height, in ms.
const MIN_HEIGHT: f64 = 0.01;
/// Error of a fresh coordinate, and the most any coordinate may claim (Serf's
/// `VivaldiErrorMax`).
const START_ERROR: f64 = 1.5;
/// The largest position component or height a coordinate may have, in ms (100 s: ten times
/// the longest round trip accepted). Serf checks only that values are finite; the bound also
/// keeps every distance, and so every estimate, far inside what a [`Duration`] holds.
pub const MAX_COMPONENT_MS: f64 = 100_000.0;
/// The longest round trip a measurement may report (Serf's `maxRTT`).
pub const MAX_RTT: Duration = Duration::from_secs(10);
/// How many recent round trips per node the latency filter keeps; it uses their median
/// (Serf's `LatencyFilterSize`).
pub const LATENCY_FILTER_SIZE: usize = 3;

/// Why a measurement or a coordinate was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CoordinateError {
    /// A component, the height or the error is not finite or out of its range.
    #[error("coordinate is invalid (not finite or out of range)")]
    Invalid,
    /// The round trip is zero or longer than [`MAX_RTT`].
    #[error("round trip not in (0, 10 s]")]
    RoundTrip,
}

/// A 2-D Vivaldi coordinate with a height; distances are milliseconds of round trip.
///
/// A coordinate is valid when every value is finite, each position component lies within
/// ±[`MAX_COMPONENT_MS`], the height within `[0, MAX_COMPONENT_MS]` and the error within
/// `[0, 1.5]`. [`Coordinate::update`] takes only valid coordinates and round trips in
/// (0, [`MAX_RTT`]], and resets a coordinate that the step made invalid to the origin, as
/// Serf does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coordinate {
    /// Position in the latency plane (ms).
    pub vec: [f64; 2],
    /// Access-link height (ms), added to every distance.
    pub height: f64,
    /// Relative error estimate (0 = certain).
    pub error: f64,
}

impl Coordinate {
    /// A fresh coordinate at a small position drawn from `seed`.
    pub fn seeded(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Coordinate {
            vec: [rng.gen_range(-0.5..0.5), rng.gen_range(-0.5..0.5)],
            height: MIN_HEIGHT,
            error: START_ERROR,
        }
    }

    /// The origin, with the least height and the greatest error: where an invalid coordinate
    /// is reset to (Serf's `NewCoordinate`).
    pub fn origin() -> Self {
        Coordinate {
            vec: [0.0, 0.0],
            height: MIN_HEIGHT,
            error: START_ERROR,
        }
    }

    /// Whether every value is finite and within its range (see the type's documentation).
    pub fn is_valid(&self) -> bool {
        let within = |x: f64, lo: f64, hi: f64| x.is_finite() && (lo..=hi).contains(&x);
        self.vec.iter().all(|x| within(*x, -MAX_COMPONENT_MS, MAX_COMPONENT_MS))
            && within(self.height, 0.0, MAX_COMPONENT_MS)
            && within(self.error, 0.0, START_ERROR)
    }

    /// The estimated round trip to `other`. Never panics: a distance that is not a positive
    /// number is zero, and one too long for a [`Duration`] is [`Duration::MAX`] (neither
    /// happens between valid coordinates).
    pub fn estimated_rtt(&self, other: &Coordinate) -> Duration {
        duration_of_ms(self.distance_ms(other))
    }

    fn distance_ms(&self, other: &Coordinate) -> f64 {
        let (dx, dy) = (self.vec[0] - other.vec[0], self.vec[1] - other.vec[1]);
        (dx * dx + dy * dy).sqrt() + self.height + other.height
    }

    /// Moves this coordinate by one measurement: `other` (named `other_name`) is `rtt` away.
    /// Refuses an invalid `other` and a round trip outside (0, [`MAX_RTT`]] without moving;
    /// a step that leaves this coordinate invalid resets it to [`Coordinate::origin`].
    pub fn update(&mut self, other: &Coordinate, other_name: &str, rtt: Duration) -> Result<(), CoordinateError> {
        if !other.is_valid() {
            return Err(CoordinateError::Invalid);
        }
        if rtt.is_zero() || rtt > MAX_RTT {
            return Err(CoordinateError::RoundTrip);
        }
        self.step(other, other_name, rtt.as_secs_f64() * 1000.0);
        if !self.is_valid() {
            *self = Coordinate::origin();
        }
        Ok(())
    }

    /// One Vivaldi step towards (or away from) `other`, `rtt_ms` away, unchecked.
    fn step(&mut self, other: &Coordinate, other_name: &str, rtt_ms: f64) {
        if !(rtt_ms > 0.0 && rtt_ms.is_finite()) {
            return;
        }
        let dist = self.distance_ms(other);
        let w = self.error / (self.error + other.error).max(f64::EPSILON);
        let es = ((dist - rtt_ms).abs() / rtt_ms).min(1.0);
        self.error = (es * CE * w + self.error * (1.0 - CE * w)).clamp(0.0, START_ERROR);
        let force = CC * w * (rtt_ms - dist);
        let (dx, dy) = (self.vec[0] - other.vec[0], self.vec[1] - other.vec[1]);
        let mag = (dx * dx + dy * dy).sqrt();
        let unit = if mag > 1e-9 {
            [dx / mag, dy / mag]
        } else {
            // Coincident: push apart along a direction fixed by the other's name.
            let angle = (crate::hash::fnv1a(other_name.as_bytes()) % 3600) as f64 / 3600.0 * std::f64::consts::TAU;
            [angle.cos(), angle.sin()]
        };
        self.vec[0] += unit[0] * force;
        self.vec[1] += unit[1] * force;
        if dist > 1e-9 {
            self.height = ((self.height + other.height) * force / dist + self.height).max(MIN_HEIGHT);
        }
    }
}

/// `ms` milliseconds as a [`Duration`]: zero unless positive, at most [`Duration::MAX`].
fn duration_of_ms(ms: f64) -> Duration {
    if ms > 0.0 {
        Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::MAX)
    } else {
        Duration::ZERO
    }
}

/// One node's coordinate and the last known coordinates of others, fed by measured round
/// trips as Serf's coordinate client is: a measurement with an invalid coordinate or a round
/// trip outside (0, 10 s] is refused (and the other's coordinate not recorded); each other
/// node's round trips pass a latency filter (the median of its last three); a step that
/// leaves this node's coordinate invalid resets it to the origin.
#[derive(Debug, Clone)]
pub struct CoordinateBook {
    me: Coordinate,
    others: BTreeMap<String, Coordinate>,
    samples: BTreeMap<String, VecDeque<f64>>,
    resets: u64,
    rejected: u64,
    bugs: BugKnobs,
}

impl CoordinateBook {
    /// A book whose own coordinate starts from `seed`.
    pub fn new(seed: u64) -> Self {
        CoordinateBook {
            me: Coordinate::seeded(seed),
            others: BTreeMap::new(),
            samples: BTreeMap::new(),
            resets: 0,
            rejected: 0,
            bugs: BugKnobs::default(),
        }
    }

    /// The same book with planted bugs (test only): with [`Bug::UncheckedCoordinates`] it takes
    /// every coordinate and round trip as they come, unfiltered, and never resets its own
    /// coordinate (the book before issue 30).
    pub fn with_bugs(mut self, bugs: BugKnobs) -> Self {
        self.bugs = bugs;
        self
    }

    /// The bugs planted in this book (a [`NetworkPinger`](super::NetworkPinger) reads them too).
    pub fn bugs(&self) -> BugKnobs {
        self.bugs
    }

    /// This node's coordinate (always valid, unless a bug is planted).
    pub fn me(&self) -> &Coordinate {
        &self.me
    }

    /// The last coordinate accepted from `name`.
    pub fn get(&self, name: &str) -> Option<&Coordinate> {
        self.others.get(name)
    }

    /// Every known coordinate, by name.
    pub fn all(&self) -> &BTreeMap<String, Coordinate> {
        &self.others
    }

    /// How many times this node's coordinate was reset to the origin.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// How many measurements and coordinates were refused.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Learns `name`'s coordinate without a measurement (this node's does not move).
    pub fn record(&mut self, name: &str, theirs: Coordinate) -> Result<(), CoordinateError> {
        if !theirs.is_valid() && !self.unchecked() {
            self.rejected += 1;
            return Err(CoordinateError::Invalid);
        }
        self.others.insert(name.to_string(), theirs);
        Ok(())
    }

    /// Moves this node's coordinate by a round trip measured to `name`, whose coordinate is
    /// `theirs`, and records `theirs`. A refused measurement changes nothing.
    pub fn observe(&mut self, name: &str, theirs: Coordinate, rtt: Duration) -> Result<(), CoordinateError> {
        if self.unchecked() {
            // The book before issue 30: anything goes, and nothing is ever reset.
            self.me.step(&theirs, name, rtt.as_secs_f64() * 1000.0);
            self.others.insert(name.to_string(), theirs);
            return Ok(());
        }
        if !theirs.is_valid() {
            self.rejected += 1;
            return Err(CoordinateError::Invalid);
        }
        if rtt.is_zero() || rtt > MAX_RTT {
            self.rejected += 1;
            return Err(CoordinateError::RoundTrip);
        }
        let filtered = self.filter(name, rtt.as_secs_f64() * 1000.0);
        self.me.step(&theirs, name, filtered);
        if !self.me.is_valid() {
            self.me = Coordinate::origin();
            self.resets += 1;
        }
        self.others.insert(name.to_string(), theirs);
        Ok(())
    }

    /// Adds a round trip (ms) to `name`'s recent ones and returns their median.
    fn filter(&mut self, name: &str, rtt_ms: f64) -> f64 {
        let q = self.samples.entry(name.to_string()).or_default();
        q.push_back(rtt_ms);
        while q.len() > LATENCY_FILTER_SIZE {
            q.pop_front();
        }
        let mut sorted: Vec<f64> = q.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    /// Forgets `name`'s coordinate and round trips.
    pub fn forget(&mut self, name: &str) {
        self.others.remove(name);
        self.samples.remove(name);
    }

    fn unchecked(&self) -> bool {
        self.bugs.has(Bug::UncheckedCoordinates)
    }

    /// The estimated round trip from this node to `name`.
    pub fn estimated_rtt(&self, name: &str) -> Option<Duration> {
        self.others.get(name).map(|c| self.me.estimated_rtt(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_coordinates_are_reproducible() {
        assert_eq!(Coordinate::seeded(3), Coordinate::seeded(3));
        assert_ne!(Coordinate::seeded(3), Coordinate::seeded(4));
    }

    #[test]
    fn coordinates_converge_to_measured_round_trips() {
        // Four nodes: a, b close (10 ms); c 50 ms from a, 45 from b; d far from everyone.
        let names = ["a", "b", "c", "d"];
        let truth = [
            [0.0, 10.0, 50.0, 120.0],
            [10.0, 0.0, 45.0, 115.0],
            [50.0, 45.0, 0.0, 100.0],
            [120.0, 115.0, 100.0, 0.0],
        ];
        let mut books: Vec<CoordinateBook> = (0..4).map(|i| CoordinateBook::new(i as u64 + 1)).collect();
        for round in 0..2000usize {
            let i = round % 4;
            let j = (i + 1 + (round / 4) % 3) % 4;
            let theirs = books[j].me().clone();
            books[i]
                .observe(names[j], theirs, Duration::from_secs_f64(truth[i][j] / 1000.0))
                .unwrap();
        }
        for i in 0..4 {
            for j in 0..4 {
                if i != j {
                    let est = books[i].estimated_rtt(names[j]).unwrap().as_secs_f64() * 1000.0;
                    assert!(
                        (est - truth[i][j]).abs() <= truth[i][j] * 0.25 + 2.0,
                        "{}-{}: estimated {est:.1} ms, true {}",
                        names[i],
                        names[j],
                        truth[i][j]
                    );
                }
            }
        }
    }

    #[test]
    fn coincident_nodes_are_pushed_apart_deterministically() {
        let mut a = Coordinate {
            vec: [0.0, 0.0],
            height: MIN_HEIGHT,
            error: 1.0,
        };
        let b = a.clone();
        let mut a2 = a.clone();
        a.update(&b, "b", Duration::from_millis(20)).unwrap();
        a2.update(&b, "b", Duration::from_millis(20)).unwrap();
        assert_eq!(a, a2);
        assert!(a.estimated_rtt(&b) > Duration::from_millis(1));
    }

    fn at(x: f64) -> Coordinate {
        Coordinate {
            vec: [x, 0.0],
            height: MIN_HEIGHT,
            error: 0.5,
        }
    }

    #[test]
    fn invalid_coordinates_and_round_trips_are_refused_and_change_nothing() {
        let mut book = CoordinateBook::new(3);
        let before = book.me().clone();
        let bad = [
            at(1e30),
            at(1e200),
            at(f64::NAN),
            at(f64::INFINITY),
            at(-MAX_COMPONENT_MS * 1.01),
            Coordinate {
                height: -1.0,
                ..at(1.0)
            },
            Coordinate {
                height: f64::NAN,
                ..at(1.0)
            },
            Coordinate {
                error: f64::NAN,
                ..at(1.0)
            },
            Coordinate { error: 2.0, ..at(1.0) },
        ];
        for c in bad {
            assert!(!c.is_valid(), "{c:?}");
            assert_eq!(
                book.observe("s", c.clone(), Duration::from_millis(10)),
                Err(CoordinateError::Invalid)
            );
            assert_eq!(book.record("s", c.clone()), Err(CoordinateError::Invalid));
            let mut me = before.clone();
            assert_eq!(
                me.update(&c, "s", Duration::from_millis(10)),
                Err(CoordinateError::Invalid)
            );
            assert_eq!(me, before);
        }
        for rtt in [Duration::ZERO, MAX_RTT + Duration::from_nanos(1), Duration::MAX] {
            assert_eq!(book.observe("s", at(10.0), rtt), Err(CoordinateError::RoundTrip));
        }
        assert_eq!(book.me(), &before);
        assert!(book.all().is_empty());
        assert_eq!(book.rejected(), 2 * 9 + 3);
        assert!(at(MAX_COMPONENT_MS).is_valid() && at(-MAX_COMPONENT_MS).is_valid());
    }

    #[test]
    fn a_step_that_leaves_the_coordinate_invalid_resets_it_to_the_origin() {
        // Two valid coordinates near the bound, 10 s apart by measurement: the step pushes this
        // one past the bound.
        let mut book = CoordinateBook::new(1);
        book.me = Coordinate {
            vec: [99_000.0, 0.0],
            height: MIN_HEIGHT,
            error: START_ERROR,
        };
        let far = Coordinate {
            vec: [98_000.0, 0.0],
            height: MIN_HEIGHT,
            error: START_ERROR,
        };
        book.observe("s", far, MAX_RTT).unwrap();
        assert_eq!(book.me(), &Coordinate::origin());
        assert_eq!(book.resets(), 1);
    }

    #[test]
    fn hostile_coordinates_never_stick_and_honest_probes_converge_afterwards() {
        // The measurement: [1e200, 0] once, then 600 honest probes of a server 20 ms
        // away. The router before issue 30 stayed NaN; now the hostile one is refused.
        let server = at(15.0);
        let mut book = CoordinateBook::new(5);
        assert!(book.observe("s", at(1e200), Duration::from_millis(20)).is_err());
        for _ in 0..600 {
            book.observe("s", server.clone(), Duration::from_millis(20)).unwrap();
        }
        let est = book.estimated_rtt("s").unwrap().as_secs_f64() * 1000.0;
        assert!((est - 20.0).abs() < 2.0, "estimated {est} ms");
        let mut old = CoordinateBook::new(5).with_bugs(BugKnobs::planted(Bug::UncheckedCoordinates));
        let _ = old.observe("s", at(1e200), Duration::from_millis(20));
        for _ in 0..600 {
            let _ = old.observe("s", server.clone(), Duration::from_millis(20));
        }
        assert!(old.me().vec[0].is_nan(), "the planted bug stays NaN for good");
        assert_eq!(
            old.estimated_rtt("s"),
            Some(Duration::ZERO),
            "and estimates nothing, without a panic"
        );
    }

    #[test]
    fn the_latency_filter_takes_the_median_of_the_last_three_round_trips() {
        let (mut a, mut b) = (CoordinateBook::new(2), CoordinateBook::new(2));
        for (i, ms) in [10, 10, 4000, 10, 10].into_iter().enumerate() {
            a.observe("s", at(5.0), Duration::from_millis(ms)).unwrap();
            b.observe("s", at(5.0), Duration::from_millis(10)).unwrap();
            assert_eq!(
                a.me(),
                b.me(),
                "one spike among three samples is filtered out (sample {i})"
            );
        }
        // Two spikes in a row are a new latency.
        a.observe("s", at(5.0), Duration::from_millis(4000)).unwrap();
        a.observe("s", at(5.0), Duration::from_millis(4000)).unwrap();
        b.observe("s", at(5.0), Duration::from_millis(10)).unwrap();
        b.observe("s", at(5.0), Duration::from_millis(10)).unwrap();
        assert_ne!(a.me(), b.me());
    }

    fn any_f64() -> impl proptest::strategy::Strategy<Value = f64> {
        use proptest::prelude::*;
        prop_oneof![
            proptest::num::f64::ANY,
            -2.0 * MAX_COMPONENT_MS..2.0 * MAX_COMPONENT_MS,
            -2.0..2.0f64,
            Just(1e30),
            Just(1e200),
            Just(f64::MAX),
            Just(MAX_COMPONENT_MS),
        ]
    }

    fn any_coordinate() -> impl proptest::strategy::Strategy<Value = Coordinate> {
        use proptest::prelude::*;
        (any_f64(), any_f64(), any_f64(), any_f64()).prop_map(|(x, y, height, error)| Coordinate {
            vec: [x, y],
            height,
            error,
        })
    }

    fn any_rtt() -> impl proptest::strategy::Strategy<Value = Duration> {
        use proptest::prelude::*;
        prop_oneof![
            (0u64..=20_000_000_000).prop_map(Duration::from_nanos),
            any::<u64>().prop_map(Duration::from_nanos),
            any::<(u64, u32)>().prop_map(|(s, n)| Duration::new(s, n % 1_000_000_000)),
            Just(Duration::MAX),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// No coordinate and no round trip makes the book panic or leaves its own coordinate
        /// (or any it keeps) invalid, and every estimate stays under 500 s.
        #[test]
        fn no_input_panics_or_leaves_an_invalid_coordinate(
            steps in proptest::collection::vec((0usize..3, any_coordinate(), any_rtt(), proptest::bool::ANY), 1..40),
        ) {
            let names = ["a", "b", "c"];
            let mut book = CoordinateBook::new(7);
            for (who, c, rtt, measured) in steps {
                let accepted = c.is_valid();
                let r = if measured { book.observe(names[who], c.clone(), rtt) } else { book.record(names[who], c.clone()) };
                if !accepted {
                    proptest::prop_assert_eq!(r, Err(CoordinateError::Invalid));
                }
                let mut me = book.me().clone();
                let _ = me.update(&c, names[who], rtt);
                proptest::prop_assert!(me.is_valid());
                let _ = book.me().estimated_rtt(&c);
                let _ = c.estimated_rtt(&c);
                proptest::prop_assert!(book.me().is_valid(), "{:?}", book.me());
                proptest::prop_assert!(book.all().values().all(Coordinate::is_valid));
                for n in names {
                    if let Some(d) = book.estimated_rtt(n) {
                        proptest::prop_assert!(d < Duration::from_secs(500), "{:?}", d);
                    }
                }
            }
        }

        /// With the planted bug nothing is checked, but still nothing panics.
        #[test]
        fn the_unchecked_book_is_wrong_but_never_panics(
            steps in proptest::collection::vec((0usize..3, any_coordinate(), any_rtt()), 1..40),
        ) {
            let names = ["a", "b", "c"];
            let mut book = CoordinateBook::new(7).with_bugs(BugKnobs::planted(Bug::UncheckedCoordinates));
            for (who, c, rtt) in steps {
                let _ = book.observe(names[who], c, rtt);
                for n in names {
                    let _ = book.estimated_rtt(n);
                }
            }
        }
    }
}
