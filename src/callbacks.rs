//! Callbacks for those who want them, in the style of Kubernetes' `leaderelection`: built on
//! [`MembershipHandle::leadership`], [`Leadership::lost`] and [`MembershipHandle::changed`].

use crate::clock::BoxFuture;
use crate::handle::{Leadership, MembershipHandle};
use futures::future::{select, Either};

/// What to do when leadership comes and goes (Kubernetes' `LeaderCallbacks`).
pub trait LeaderCallbacks: Send + Sync + 'static {
    /// This agent holds a lease: lead until the returned future ends. It is dropped (so
    /// cancelled) as soon as the lease can no longer be guaranteed; `lease` gives the fencing
    /// token to write with, and its [`Leadership::lost`] to check cooperatively. If it ends
    /// first, the lease is kept until lost (resign through the handle to give it up).
    fn on_started_leading(&self, lease: Leadership) -> BoxFuture<'static, ()>;

    /// The lease was lost, given up or ran out (called after the leading future is dropped).
    fn on_stopped_leading(&self);

    /// The leader as this agent sees it changed (`None`: no leader known).
    fn on_new_leader(&self, leader: Option<String>);
}

/// Runs `callbacks` until the agent stops.
pub async fn run_callbacks(handle: MembershipHandle, callbacks: impl LeaderCallbacks) {
    let leaders = async {
        let mut last = None;
        loop {
            let changed = handle.changed();
            let now = handle.status().leader;
            if now != last {
                callbacks.on_new_leader(now.clone());
                last = now;
            }
            if handle.is_stopped() {
                return;
            }
            changed.await;
        }
    };
    let leading = async {
        while let Some(lease) = handle.leadership().await {
            let lead = callbacks.on_started_leading(lease.clone());
            let lost = lease.lost();
            if let Either::Left(((), lost)) = select(lead, std::pin::pin!(lost)).await {
                // Done leading of its own accord: the lease is kept until it is lost (call
                // `MembershipHandle::resign` to give it up for others).
                lost.await;
            }
            callbacks.on_stopped_leading();
        }
    };
    futures::future::join(leaders, leading).await;
}
