//! Quantised time (`[network] tick`): the grid on which `leasehold-sim check` explores, so a
//! counterexample it writes runs in the simulator step for step. True time is cut into ticks;
//! the messages due at a boundary arrive just before it, in the order sent, a few µs apart,
//! and the scripted steps of a boundary run just after it. A message sent at any moment
//! arrives at the next boundary whose arrivals are still to come. Timers are not quantised:
//! an agent's fires when its clock reaches it, as everywhere.

/// How long before a boundary its messages arrive, and after it its scripted steps run.
const LEAD_NS: u128 = 500_000;
/// The gap between two arrivals at one boundary (an agent handles each before the next).
const SLOT_NS: u128 = 2_000;
/// The smallest tick a scenario may ask for (room for the arrivals and the steps).
pub(crate) const MIN_TICK_NS: u128 = 10 * LEAD_NS;

/// A tick grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quantum {
    tick: u128,
}

impl Quantum {
    /// The grid of `tick` ns (at least [`MIN_TICK_NS`], as scenarios are validated).
    pub(crate) fn new(tick: u128) -> Self {
        Quantum {
            tick: tick.max(MIN_TICK_NS),
        }
    }

    /// The boundary at which a message sent at `now` arrives: the first one whose arrivals
    /// are still to come.
    pub(crate) fn boundary_after(&self, now: u128) -> u128 {
        ((now + LEAD_NS) / self.tick + 1) * self.tick
    }

    /// The boundary a copy due at `due` belongs to.
    pub(crate) fn boundary_of(&self, due: u128) -> u128 {
        (due + LEAD_NS) / self.tick * self.tick
    }

    /// The next boundary after `boundary`.
    pub(crate) fn next(&self, boundary: u128) -> u128 {
        boundary + self.tick
    }

    /// When the arrival numbered `slot` (0: the first) at `boundary` happens.
    pub(crate) fn arrival(&self, boundary: u128, slot: u64) -> u128 {
        let last = LEAD_NS / SLOT_NS - 1;
        boundary - LEAD_NS + u128::from(slot).min(last) * SLOT_NS
    }

    /// When a scripted step at `at` runs: just after it (after that boundary's timers).
    pub(crate) fn step(&self, at: u128) -> u128 {
        at + LEAD_NS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u128 = 1_000_000;

    #[test]
    fn a_message_sent_at_any_moment_of_a_tick_arrives_at_the_next_boundary() {
        let q = Quantum::new(100 * MS);
        // Sent at a boundary, by an arrival just before it, by a step just after it.
        assert_eq!(q.boundary_after(100 * MS), 200 * MS);
        assert_eq!(q.boundary_after(q.arrival(100 * MS, 3)), 200 * MS);
        assert_eq!(q.boundary_after(q.step(100 * MS)), 200 * MS);
        assert_eq!(q.boundary_of(q.arrival(200 * MS, 0)), 200 * MS);
        assert_eq!(q.boundary_of(q.arrival(200 * MS, 7)), 200 * MS);
        assert_eq!(q.boundary_of(q.arrival(200 * MS, u64::MAX)), 200 * MS);
        assert!(q.arrival(200 * MS, 0) < q.arrival(200 * MS, 1));
        assert!(q.arrival(200 * MS, u64::MAX) < 200 * MS);
    }
}
