//! The clock trait: the library's only source of time.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

/// A boxed, sendable future, as returned by the [`Clock`] and
/// [`Network`](crate::Network) traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A node's view of time.
///
/// Two readings with different contracts:
///
/// * [`Clock::now`] is **monotonic**: it never goes backwards, and it is the only reading the
///   lease arithmetic uses. Its origin is arbitrary (usually the clock's creation), and it is
///   not comparable between nodes. Its rate may differ from true time by the drift bound the
///   configuration declares ([`MembershipCfg::max_drift_ppm`](crate::MembershipCfg)); the
///   `lease` algorithm stays safe for any rate within that bound.
/// * [`Clock::wall`] is **wall time**: it may jump in either direction (NTP steps) and may be
///   offset from other nodes' wall clocks. It is used only for the informational
///   `leaseExpires` field and by the `allcall` algorithm, which trusts wall clocks to agree
///   within `max_clock_skew` (that is its weakness).
///
/// [`Clock::sleep_until`] completes **no earlier** than the moment `now()` reaches the
/// deadline; it may complete later (a loaded or paused process wakes late). Callers re-read
/// `now()` after waking rather than assuming the deadline.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic reading, as a duration since the clock's arbitrary origin.
    fn now(&self) -> Duration;

    /// Wall-clock reading (may jump; only for informational fields and `allcall`).
    fn wall(&self) -> SystemTime;

    /// A future that completes once `now()` has reached `deadline` (or later).
    fn sleep_until(&self, deadline: Duration) -> BoxFuture<'static, ()>;

    /// A future that completes once `dur` has passed on this clock.
    fn sleep(&self, dur: Duration) -> BoxFuture<'static, ()> {
        self.sleep_until(self.now().saturating_add(dur))
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> Duration {
        (**self).now()
    }
    fn wall(&self) -> SystemTime {
        (**self).wall()
    }
    fn sleep_until(&self, deadline: Duration) -> BoxFuture<'static, ()> {
        (**self).sleep_until(deadline)
    }
}

/// Runs `fut` until it completes or `dur` passes on `clock`, whichever comes first.
///
/// Returns `None` on time-out.
pub async fn timeout<C: Clock + ?Sized, F: Future>(clock: &C, dur: Duration, fut: F) -> Option<F::Output> {
    use futures::future::{select, Either};
    let sleep = clock.sleep(dur);
    let fut = std::pin::pin!(fut);
    match select(fut, sleep).await {
        Either::Left((out, _)) => Some(out),
        Either::Right(((), _)) => None,
    }
}

#[cfg(feature = "tokio")]
mod tokio_clock {
    use super::{BoxFuture, Clock};
    use std::time::{Duration, SystemTime};

    /// The production clock: tokio's monotonic time and the system's wall clock.
    ///
    /// Must be used inside a tokio runtime with the time driver enabled.
    #[derive(Debug, Clone)]
    pub struct TokioClock {
        origin: tokio::time::Instant,
    }

    impl TokioClock {
        /// A clock whose monotonic origin is the moment of creation.
        pub fn new() -> Self {
            TokioClock {
                origin: tokio::time::Instant::now(),
            }
        }
    }

    impl Default for TokioClock {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Clock for TokioClock {
        fn now(&self) -> Duration {
            self.origin.elapsed()
        }
        fn wall(&self) -> SystemTime {
            SystemTime::now()
        }
        fn sleep_until(&self, deadline: Duration) -> BoxFuture<'static, ()> {
            let at = self.origin + deadline;
            Box::pin(tokio::time::sleep_until(at))
        }
    }
}

#[cfg(feature = "tokio")]
pub use tokio_clock::TokioClock;
