//! The application beside every agent, built on the public API only, as a service in
//! production would be: the guard application (`leadership().await`, then `remaining()` every
//! beat and at every change of the leadership view, until `lost()` resolves; with a fenced
//! store, a write under the guard's token every beat) and the callbacks application
//! (`run_callbacks`, whose leading future reports when it is dropped). Each reports what its
//! guard said to the guards oracle ([`crate::oracle::guards`]), on the node's clock.

use crate::clock::SimClock;
use crate::fabric::SimNet;
use crate::oracle::guards::{GuardEvent, Via};
use futures::future::{select, Either};
use leasehold::{BoxFuture, Clock, LeaderCallbacks, Leadership, MembershipHandle};
use std::sync::Arc;
use std::time::Duration;

/// Where an application's reports go.
pub type Report = Arc<dyn Fn(GuardEvent) + Send + Sync>;

/// Where the guard application writes, if there is a fenced store.
pub struct Writes {
    /// The node's connection.
    pub net: SimNet,
    /// The store's subject.
    pub subject: String,
    /// The writer's node ID.
    pub id: String,
}

/// Runs the guard application until the agent stops.
pub async fn guard_app(
    agent: MembershipHandle,
    clock: SimClock,
    beat: Duration,
    report: Report,
    writes: Option<Writes>,
) {
    while let Some(lease) = agent.leadership().await {
        let token = lease.token();
        let (agent, clock, lease_, writes, report) = (&agent, &clock, &lease, &writes, &report);
        let work = async move {
            loop {
                // Registered before the guard is read, so no change is missed.
                let changed = agent.changed();
                let at = clock.now();
                let left = lease_.remaining();
                if left.is_zero() {
                    // No longer valid: lost() resolves at once, and ends the guard.
                    return futures::future::pending::<()>().await;
                }
                report(GuardEvent::Valid {
                    via: Via::Guard,
                    token,
                    at: at.as_nanos(),
                    until: (at + left).as_nanos(),
                });
                if let (Some(w), Some(t)) = (writes.as_ref(), token) {
                    crate::workload::store::write(&w.net, &w.subject, &w.id, t).await;
                }
                let _ = select(Box::pin(changed), clock.sleep(beat)).await;
            }
        };
        let lost = lease.lost();
        if let Either::Right(..) = select(Box::pin(work), Box::pin(lost)).await {
            report(GuardEvent::Ended {
                via: Via::Guard,
                token,
                at: clock.now().as_nanos(),
            });
        }
    }
}

/// Runs the callbacks application until the agent stops.
pub async fn callbacks_app(agent: MembershipHandle, clock: SimClock, report: Report) {
    leasehold::run_callbacks(agent, Reporter { clock, report }).await;
}

struct Reporter {
    clock: SimClock,
    report: Report,
}

/// Reports the end of a leading future when it is dropped.
struct OnDrop {
    clock: SimClock,
    report: Report,
    token: Option<u64>,
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        (self.report)(GuardEvent::Ended {
            via: Via::Callbacks,
            token: self.token,
            at: self.clock.now().as_nanos(),
        });
    }
}

impl LeaderCallbacks for Reporter {
    fn on_started_leading(&self, lease: Leadership) -> BoxFuture<'static, ()> {
        let at = self.clock.now();
        let token = lease.token();
        let left = lease.remaining();
        if !left.is_zero() {
            (self.report)(GuardEvent::Valid {
                via: Via::Callbacks,
                token,
                at: at.as_nanos(),
                until: (at + left).as_nanos(),
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
