//! The election machine a process of the model runs: the production [`LeaseElection`] or
//! [`AllcallElection`], as the agent's driver runs either, behind the few calls the model
//! makes (its wake-up, its timer, a message, its fingerprint).

use super::body::Body;
use leasehold::election::{AllcallElection, LeaseElection, Output};
use leasehold::{Durable, MembershipCfg};
use std::time::Duration;
use time::OffsetDateTime;

/// The wall clock at the model's true time zero (the simulator's common epoch): a process's
/// wall clock reads it plus its monotonic clock's run since its origin, as the simulator's
/// does with no wall offset.
const WALL_EPOCH_SECS: i64 = crate::clock::WALL_EPOCH_SECS as i64;

/// One process's election machine. (`lease`'s is the larger by far and the one explored most:
/// boxing it would add an allocation to every cloned state for the rarer `allcall`.)
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Machine {
    /// `lease`.
    Lease(LeaseElection),
    /// `allcall` (hnatsd's algorithm, the known-bad baseline).
    Allcall(AllcallElection),
}

impl Machine {
    /// Starts the machine `cfg` names at local time `now`; `lease` reads `stored` and draws
    /// from `seed`. Its first outputs with it.
    pub(crate) fn start(
        cfg: &MembershipCfg,
        stored: Option<Durable>,
        now: Duration,
        seed: u64,
    ) -> (Machine, Vec<Output>) {
        match cfg.algorithm {
            leasehold::Algorithm::Lease => {
                let (m, out) = LeaseElection::new(cfg, stored, now, seed);
                (Machine::Lease(m), out)
            }
            leasehold::Algorithm::Allcall => {
                let (m, out) = AllcallElection::new(cfg, now);
                (Machine::Allcall(m), out)
            }
        }
    }

    /// When its timer is due (local).
    pub(crate) fn next_wakeup(&self) -> Duration {
        match self {
            Machine::Lease(m) => m.next_wakeup(),
            Machine::Allcall(m) => m.next_wakeup(),
        }
    }

    /// Its timer fires at local time `now`; `origin` is its monotonic clock's reading at true
    /// time zero (`allcall` reads the wall clock too).
    pub(crate) fn tick(&mut self, now: Duration, origin: Duration) -> Vec<Output> {
        match self {
            Machine::Lease(m) => m.tick(now),
            Machine::Allcall(m) => m.tick(now, wall(now, origin)),
        }
    }

    /// A message arrives at local time `now`; an answer to it goes to `inbox`.
    pub(crate) fn on(&mut self, now: Duration, body: Body, inbox: String) -> Vec<Output> {
        match (self, body) {
            (Machine::Lease(m), Body::Heartbeat(hb)) => m.on_heartbeat(now, &hb),
            (Machine::Lease(m), Body::Request(r)) => m.on_request(now, r, inbox),
            (Machine::Lease(m), Body::Reply(r)) => m.on_reply(now, r),
            (Machine::Lease(m), Body::Release(r)) => m.on_release(now, r),
            (Machine::Lease(m), Body::Recover(r)) => m.on_recover(now, r, inbox),
            (Machine::Lease(m), Body::Recovered(a)) => m.on_recovered(now, a),
            // Answers go to the allcall's reply subject, which every agent hears.
            (Machine::Allcall(m), Body::Allcall(_)) => m.on_allcall(Some(ALLREPLY.into())),
            (Machine::Allcall(m), Body::Allreply(loc)) => {
                m.on_pong(loc);
                Vec::new()
            }
            // Neither hears the other's subjects.
            _ => Vec::new(),
        }
    }

    /// Whether it holds the lease at local time `now` (`allcall`: records itself as leader).
    pub(crate) fn holds(&self, now: Duration) -> bool {
        match self {
            Machine::Lease(m) => m.held(now).is_some(),
            Machine::Allcall(m) => m.is_leader(),
        }
    }

    /// Its incarnation (`allcall` has none: `starts` stands for it).
    pub(crate) fn inc(&self, starts: u64) -> u64 {
        match self {
            Machine::Lease(m) => m.me().inc,
            Machine::Allcall(_) => starts,
        }
    }

    /// Feeds its state to `h` (see the machines' own `fingerprint`).
    pub(crate) fn fingerprint(&self, h: &mut impl std::hash::Hasher) {
        match self {
            Machine::Lease(m) => {
                h.write_u8(1);
                m.fingerprint(h);
            }
            Machine::Allcall(m) => {
                h.write_u8(2);
                m.fingerprint(h);
            }
        }
    }
}

/// The allcall reply subject's name in the model (every process hears it).
pub(crate) const ALLREPLY: &str = "allreply";

/// The wall clock of a process whose monotonic clock reads `now` and read `origin` at true
/// time zero.
fn wall(now: Duration, origin: Duration) -> OffsetDateTime {
    let run = now.saturating_sub(origin);
    OffsetDateTime::from_unix_timestamp(WALL_EPOCH_SECS).unwrap_or(OffsetDateTime::UNIX_EPOCH) + run
}
