//! Test support, not a stable API: applications built on the public API only, as a service
//! would be, that report what their guards say, so that a checker can hold the guard to the
//! agent's claims. The simulator runs them beside every simulated agent, and `leasehold-agent
//! --test-guard` beside a real one (for `leasehold-sim real`).
//!
//! * [`guard_app`]: `leadership().await`, then `remaining()` every beat and at every change of
//!   the leadership view until `lost()` resolves, writing under the guard's token if asked;
//! * [`callbacks_app`]: [`run_callbacks`](crate::run_callbacks), whose leading future reports
//!   when it is dropped.

use crate::callbacks::LeaderCallbacks;
use crate::clock::{BoxFuture, Clock};
use crate::handle::{Leadership, MembershipHandle};
use futures::future::{select, Either};
use std::sync::Arc;
use std::time::Duration;

/// Which part of the public API a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A guard from [`MembershipHandle::leadership`].
    Guard,
    /// The leading future that [`run_callbacks`](crate::run_callbacks) takes from
    /// `on_started_leading`.
    Callbacks,
}

/// What a guard said, on the agent's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardWord {
    /// At `at`, the guard was valid until `until` (`at` + `remaining()`), under `token`.
    Valid {
        /// Which API.
        via: Via,
        /// The guard's token.
        token: Option<u64>,
        /// When it was asked.
        at: Duration,
        /// The end it gave.
        until: Duration,
    },
    /// At `at`, the guard ended: `lost()` resolved, or the leading future was dropped.
    Ended {
        /// Which API.
        via: Via,
        /// The guard's token.
        token: Option<u64>,
        /// When.
        at: Duration,
    },
}

/// Where the applications' reports go.
pub type Report = Arc<dyn Fn(GuardWord) + Send + Sync>;

/// A write under a fencing token (to a fenced store), made by the guard application every beat
/// while its guard is valid.
pub type Write = Arc<dyn Fn(u64) -> BoxFuture<'static, ()> + Send + Sync>;

/// Runs the guard application over `agent` until the agent stops.
pub async fn guard_app<C: Clock + Clone>(
    agent: MembershipHandle,
    clock: C,
    beat: Duration,
    report: Report,
    write: Option<Write>,
) {
    while let Some(lease) = agent.leadership().await {
        let token = lease.token_if_any();
        let (agent, clock, lease_, write, report) = (&agent, &clock, &lease, &write, &report);
        let work = async move {
            loop {
                // Registered before the guard is read, so no change is missed.
                let changed = agent.changed();
                let at = clock.now();
                let left = lease_.remaining();
                if left.is_zero() {
                    // No longer valid: lost() resolves at once and ends the guard.
                    return futures::future::pending::<()>().await;
                }
                report(GuardWord::Valid {
                    via: Via::Guard,
                    token,
                    at,
                    until: at + left,
                });
                if let (Some(w), Some(t)) = (write.as_ref(), token) {
                    w(t).await;
                }
                let _ = select(Box::pin(changed), clock.sleep(beat)).await;
            }
        };
        if let Either::Right(..) = select(Box::pin(work), Box::pin(lease.lost())).await {
            report(GuardWord::Ended {
                via: Via::Guard,
                token,
                at: clock.now(),
            });
        }
    }
}

/// Runs the callbacks application over `agent` until the agent stops.
pub async fn callbacks_app<C: Clock + Clone>(agent: MembershipHandle, clock: C, report: Report) {
    crate::run_callbacks(agent, Reporter { clock, report }).await;
}

struct Reporter<C> {
    clock: C,
    report: Report,
}

/// Reports the end of a leading future when it is dropped.
struct OnDrop<C: Clock> {
    clock: C,
    report: Report,
    token: Option<u64>,
}

impl<C: Clock> Drop for OnDrop<C> {
    fn drop(&mut self) {
        (self.report)(GuardWord::Ended {
            via: Via::Callbacks,
            token: self.token,
            at: self.clock.now(),
        });
    }
}

impl<C: Clock + Clone> LeaderCallbacks for Reporter<C> {
    fn on_started_leading(&self, lease: Leadership) -> BoxFuture<'static, ()> {
        let at = self.clock.now();
        let token = lease.token_if_any();
        let left = lease.remaining();
        if !left.is_zero() {
            (self.report)(GuardWord::Valid {
                via: Via::Callbacks,
                token,
                at,
                until: at + left,
            });
        }
        let ended = OnDrop {
            clock: self.clock.clone(),
            report: self.report.clone(),
            token,
        };
        Box::pin(async move {
            let _ended = ended;
            futures::future::pending::<()>().await
        })
    }

    fn on_stopped_leading(&self) {}

    fn on_new_leader(&self, _leader: Option<String>) {}
}
