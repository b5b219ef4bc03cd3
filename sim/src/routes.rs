//! The cluster routes between simulated NATS servers, as nats-server runs them (measured with
//! `leasehold-sim calibrate`, see `[network] route_*`).
//!
//! A route is one TCP connection carrying both directions. While something stops it (a cut in
//! either direction, or a server at either end stopped), the bytes of a cut direction are held
//! by TCP; if it clears before the route goes stale they arrive late, in order. A route whose
//! pings go unanswered for the stale time is closed and what it held is lost; the servers dial
//! it again after the redial delay. A dial made while the route is still stopped hangs (its
//! handshake is held too) until it goes stale in turn, or until the route clears: then one of
//! the servers' hanging dials completes at once, or (with the collision chance) both complete,
//! collide as duplicate routes and are closed, and the route is dialled again a redial delay
//! after the heal (measured: a route healed after a long cut carried again within 15 ms in 8
//! of 18 trials and about 1.05 s later in the others; one healed between its close and its
//! next dial carries at that dial).
//! A server that dies closes its routes at once (the kernel resets them); a server that starts
//! dials its routes after its start-up delay.
//!
//! This module is the route state machine alone (times in, verdicts out); the fabric holds the
//! copies and asks it, per copy and at every change, whether a route carries.

use crate::scenario::DurRange;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The timing of nats-server's routes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RouteTiming {
    /// How long a stopped route lives before its pings run out and it is closed.
    pub(crate) stale: DurRange,
    /// From a route's close to the next dial.
    pub(crate) redial: DurRange,
    /// From a server's start to its dial of each route.
    pub(crate) startup: DurRange,
    /// The chance that the hanging dials of a route that heals collide (it is dialled again a
    /// redial later) rather than one completing at once.
    pub(crate) collide: f64,
}

/// One route's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Carrying; `stall`: stopped since then, closed at the second time unless it clears.
    Up { stall: Option<(u128, u128)> },
    /// Closed; dials at `dial` (`None`: an end is down and nobody dials). A dial made while
    /// the route is stopped hangs until `hangs_until`, then goes stale and is made again.
    Down {
        dial: Option<u128>,
        hangs_until: Option<u128>,
    },
}

/// Whether a route carries, and what became of it since it was last asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// It carries now.
    pub(crate) up: bool,
    /// It closed since it was last asked (what it held is lost).
    pub(crate) closed: bool,
}

/// Every route between `n` servers.
#[derive(Debug, Clone)]
pub(crate) struct Routes {
    timing: RouteTiming,
    rng: ChaCha8Rng,
    /// Per pair `(a, b)` with `a < b`: its state and whether it is clear (not stopped).
    state: Vec<Vec<(State, bool)>>,
}

impl Routes {
    /// `n` servers, every route up and clear; random delays drawn from `seed`.
    pub(crate) fn new(n: usize, timing: RouteTiming, seed: u64) -> Self {
        Routes {
            timing,
            rng: ChaCha8Rng::seed_from_u64(seed),
            state: vec![vec![(State::Up { stall: None }, true); n]; n],
        }
    }

    fn draw(&mut self, r: DurRange) -> u128 {
        let (lo, hi) = (r.lo.as_nanos(), r.hi.as_nanos());
        if hi > lo {
            self.rng.gen_range(lo..=hi)
        } else {
            lo
        }
    }

    fn pair(a: usize, b: usize) -> (usize, usize) {
        (a.min(b), a.max(b))
    }

    /// The route between `a` and `b` at `now`, the route having been clear or stopped as last
    /// said since then.
    pub(crate) fn at(&mut self, a: usize, b: usize, now: u128) -> Verdict {
        let (a, b) = Self::pair(a, b);
        let (mut s, clear) = self.state[a][b];
        let mut closed = false;
        loop {
            match s {
                State::Up {
                    stall: Some((_, close)),
                } if close <= now => {
                    closed = true;
                    let dial = close + self.draw(self.timing.redial);
                    s = State::Down {
                        dial: Some(dial),
                        hangs_until: None,
                    };
                }
                State::Up { .. } => break,
                State::Down {
                    dial: Some(d),
                    hangs_until,
                } if d <= now => match (clear, hangs_until) {
                    (true, _) => s = State::Up { stall: None },
                    (false, None) => {
                        s = State::Down {
                            dial: Some(d),
                            hangs_until: Some(d + self.draw(self.timing.stale)),
                        }
                    }
                    (false, Some(h)) if h <= now => {
                        s = State::Down {
                            dial: Some(h + self.draw(self.timing.redial)),
                            hangs_until: None,
                        }
                    }
                    (false, Some(_)) => break,
                },
                State::Down { .. } => break,
            }
        }
        self.state[a][b].0 = s;
        Verdict {
            up: matches!(s, State::Up { .. }),
            closed,
        }
    }

    /// From `now` on, the route between `a` and `b` is clear (`true`) or stopped (a cut either
    /// way, an end stopped). A stopped route starts its stale time; a clear one carries again
    /// (a closed one at its next dial; one whose dial was hanging a redial delay from now).
    pub(crate) fn set_clear(&mut self, a: usize, b: usize, now: u128, clear: bool) -> Verdict {
        let v = self.at(a, b, now);
        let (a, b) = Self::pair(a, b);
        let (s, was) = self.state[a][b];
        if was == clear {
            return v;
        }
        let s = match (s, clear) {
            (State::Up { .. }, false) => State::Up {
                stall: Some((now, now + self.draw(self.timing.stale))),
            },
            (State::Up { .. }, true) => State::Up { stall: None },
            (State::Down { dial, hangs_until }, true) => match (dial, hangs_until) {
                (Some(d), Some(_)) if d <= now => {
                    if self.rng.gen_bool(self.timing.collide.clamp(0.0, 1.0)) {
                        State::Down {
                            dial: Some(now + self.draw(self.timing.redial)),
                            hangs_until: None,
                        }
                    } else {
                        State::Up { stall: None }
                    }
                }
                _ => State::Down {
                    dial,
                    hangs_until: None,
                },
            },
            (down, false) => down,
        };
        self.state[a][b] = (s, clear);
        Verdict {
            up: matches!(s, State::Up { .. }),
            closed: v.closed,
        }
    }

    /// A server at an end of the route between `a` and `b` died: it is closed, and nobody
    /// dials it until [`Routes::start`].
    pub(crate) fn end_down(&mut self, a: usize, b: usize, now: u128) -> Verdict {
        let v = self.at(a, b, now);
        let (a, b) = Self::pair(a, b);
        let was_up = matches!(self.state[a][b].0, State::Up { .. });
        self.state[a][b].0 = State::Down {
            dial: None,
            hangs_until: None,
        };
        Verdict {
            up: false,
            closed: v.closed || was_up,
        }
    }

    /// Both ends of the route between `a` and `b` run again, one of them just started: it
    /// dials after its start-up delay.
    pub(crate) fn start(&mut self, a: usize, b: usize, now: u128) {
        let (a, b) = Self::pair(a, b);
        if let State::Down { dial: None, .. } = self.state[a][b].0 {
            let d = now + self.draw(self.timing.startup);
            self.state[a][b].0 = State::Down {
                dial: Some(d),
                hangs_until: None,
            };
        }
    }

    #[cfg(test)]
    /// When the route between `a` and `b`, down now, next dials (`None`: it is up, or nobody
    /// dials it).
    pub(crate) fn next_dial(&self, a: usize, b: usize) -> Option<u128> {
        let (a, b) = Self::pair(a, b);
        match self.state[a][b].0 {
            State::Down { dial, .. } => dial,
            State::Up { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: u128 = 1_000_000_000;
    const MS: u128 = 1_000_000;

    fn fixed(ms: u64) -> DurRange {
        let d = Duration::from_millis(ms);
        DurRange { lo: d, hi: d }
    }

    /// Stale after 3.5 s, redial 1 s, start-up 20 ms; hanging dials always collide.
    fn routes() -> Routes {
        routes_colliding(1.0)
    }

    fn routes_colliding(collide: f64) -> Routes {
        Routes::new(
            3,
            RouteTiming {
                stale: fixed(3500),
                redial: fixed(1000),
                startup: fixed(20),
                collide,
            },
            1,
        )
    }

    #[test]
    fn a_heal_during_a_hanging_dial_that_does_not_collide_carries_at_once() {
        let mut r = routes_colliding(0.0);
        r.set_clear(0, 1, 0, false);
        assert!(!r.at(0, 1, 5 * S).up, "closed at 3.5 s, its dial at 4.5 s hangs");
        assert!(r.set_clear(0, 1, 6 * S, true).up);
    }

    #[test]
    fn a_cut_shorter_than_the_stale_time_never_closes_the_route() {
        let mut r = routes();
        r.set_clear(0, 1, S, false);
        assert!(r.at(0, 1, 4 * S).up, "stopped but not yet stale");
        let v = r.set_clear(1, 0, 4 * S + 400 * MS, true);
        assert_eq!(
            v,
            Verdict {
                up: true,
                closed: false
            }
        );
        assert!(r.at(0, 1, 100 * S).up, "a clear route never goes stale");
    }

    #[test]
    fn a_longer_cut_closes_it_at_the_stale_time_and_a_heal_during_a_hanging_dial_redials() {
        let mut r = routes();
        r.set_clear(0, 1, 0, false);
        assert_eq!(
            r.at(0, 1, 3499 * MS),
            Verdict {
                up: true,
                closed: false
            }
        );
        assert_eq!(
            r.at(0, 1, 3500 * MS),
            Verdict {
                up: false,
                closed: true
            }
        );
        assert_eq!(r.next_dial(0, 1), Some(4500 * MS), "dialled again a redial later");
        // The dial at 4.5 s hangs until 8 s; a heal at 6 s ends it in a collision, and the
        // route is dialled again a redial later.
        assert!(!r.at(0, 1, 5 * S).up);
        assert!(!r.set_clear(0, 1, 6 * S, true).up);
        assert!(!r.at(0, 1, 6999 * MS).up);
        assert!(r.at(0, 1, 7 * S).up);
    }

    #[test]
    fn a_heal_between_the_close_and_the_next_dial_carries_at_that_dial() {
        let mut r = routes();
        r.set_clear(0, 1, 0, false);
        assert!(!r.set_clear(0, 1, 4 * S, true).up, "closed at 3.5 s");
        assert!(!r.at(0, 1, 4499 * MS).up);
        assert!(r.at(0, 1, 4500 * MS).up);
    }

    #[test]
    fn a_heal_between_a_stale_dial_and_the_next_waits_for_the_next() {
        let mut r = routes();
        r.set_clear(0, 1, 0, false);
        // Closed at 3.5 s, dial at 4.5 s hangs until 8 s, next dial at 9 s.
        let v = r.set_clear(0, 1, 8500 * MS, true);
        assert_eq!(
            v,
            Verdict {
                up: false,
                closed: true
            }
        );
        assert!(!r.at(0, 1, 8999 * MS).up);
        assert!(r.at(0, 1, 9 * S).up, "the next dial finds it clear");
    }

    #[test]
    fn a_dead_server_closes_its_route_and_a_started_one_dials_after_its_start_up() {
        let mut r = routes();
        assert!(r.end_down(0, 2, S).closed);
        assert!(!r.at(2, 0, 50 * S).up, "nobody dials a dead server");
        r.start(0, 2, 50 * S);
        assert!(!r.at(0, 2, 50 * S + 19 * MS).up);
        assert!(r.at(0, 2, 50 * S + 20 * MS).up);
        assert!(r.at(0, 1, 50 * S).up, "other routes untouched");
    }
}
