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

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Tuning from the paper (and Consul): error and movement gains.
const CE: f64 = 0.25;
const CC: f64 = 0.25;
/// Floor of a height, in ms.
const MIN_HEIGHT: f64 = 0.01;
/// Error of a fresh coordinate.
const START_ERROR: f64 = 1.5;

/// A 2-D Vivaldi coordinate with a height; distances are milliseconds of round trip.
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

    /// The estimated round trip to `other`.
    pub fn estimated_rtt(&self, other: &Coordinate) -> Duration {
        Duration::from_secs_f64(self.distance_ms(other).max(0.0) / 1000.0)
    }

    fn distance_ms(&self, other: &Coordinate) -> f64 {
        let (dx, dy) = (self.vec[0] - other.vec[0], self.vec[1] - other.vec[1]);
        (dx * dx + dy * dy).sqrt() + self.height + other.height
    }

    /// Moves this coordinate by one measurement: `other` (named `other_name`) is `rtt` away.
    pub fn update(&mut self, other: &Coordinate, other_name: &str, rtt: Duration) {
        let rtt_ms = rtt.as_secs_f64() * 1000.0;
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

/// One node's coordinate and the last known coordinates of others.
#[derive(Debug, Clone)]
pub struct CoordinateBook {
    me: Coordinate,
    others: BTreeMap<String, Coordinate>,
}

impl CoordinateBook {
    /// A book whose own coordinate starts from `seed`.
    pub fn new(seed: u64) -> Self {
        CoordinateBook {
            me: Coordinate::seeded(seed),
            others: BTreeMap::new(),
        }
    }

    /// This node's coordinate.
    pub fn me(&self) -> &Coordinate {
        &self.me
    }

    /// The last coordinate heard from `name`.
    pub fn get(&self, name: &str) -> Option<&Coordinate> {
        self.others.get(name)
    }

    /// Every known coordinate, by name.
    pub fn all(&self) -> &BTreeMap<String, Coordinate> {
        &self.others
    }

    /// Learns `name`'s coordinate and moves this node's by a measured round trip to it
    /// (a zero `rtt` only records the coordinate).
    pub fn observe(&mut self, name: &str, theirs: Coordinate, rtt: Duration) {
        self.me.update(&theirs, name, rtt);
        self.others.insert(name.to_string(), theirs);
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
            books[i].observe(names[j], theirs, Duration::from_secs_f64(truth[i][j] / 1000.0));
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
        a.update(&b, "b", Duration::from_millis(20));
        a2.update(&b, "b", Duration::from_millis(20));
        assert_eq!(a, a2);
        assert!(a.estimated_rtt(&b) > Duration::from_millis(1));
    }
}
