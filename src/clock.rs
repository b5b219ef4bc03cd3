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
///   `lease` algorithm stays safe for any rate within that bound. It must **keep counting
///   while the host is suspended or its VM frozen** (Linux's `CLOCK_BOOTTIME`, not
///   `CLOCK_MONOTONIC`): a lease is a span of true time, and a clock that stops would let a
///   holder wake up inside a lease that everyone else saw end (the `tokio` feature's
///   `TokioClock` does this).
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
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    /// The production clock: time that keeps counting while the host is suspended, and the
    /// system's wall clock.
    ///
    /// tokio's clock (like `std::time::Instant`) reads Linux's `CLOCK_MONOTONIC`, which does
    /// not advance while the host is suspended, and may not while a VM is frozen. A leader
    /// that counted its lease on it would wake up believing in a lease that ran out long ago
    /// in everyone else's time. So [`Clock::now`] is tokio's elapsed time **plus the time the
    /// host has spent suspended since the clock was created**, measured as the growth of
    /// `CLOCK_BOOTTIME − CLOCK_MONOTONIC` (the kernel's own count of suspended time). Right
    /// after a wake-up, `now()` has jumped by the suspension, so every lease deadline that
    /// passed in true time has passed for this agent too, before it handles anything.
    ///
    /// Built on tokio's time rather than on `CLOCK_BOOTTIME` directly so that tokio's paused
    /// test clock (`start_paused`) drives it too. Timers are tokio's: a sleep across a
    /// suspension ends late (allowed by [`Clock::sleep_until`]), and is then re-checked
    /// against `now()`. On systems other than Linux suspended time is not counted.
    ///
    /// Must be used inside a tokio runtime with the time driver enabled.
    #[derive(Debug, Clone)]
    pub struct TokioClock {
        origin: tokio::time::Instant,
        source: fn() -> Duration,
        suspended0: Duration,
        /// The largest suspended time read so far, in ns (two clocks read one after the
        /// other can make the difference dip by a few ns; `now()` must not go back).
        seen: Arc<AtomicU64>,
    }

    /// Time the host has spent suspended since boot (`CLOCK_BOOTTIME − CLOCK_MONOTONIC`).
    #[cfg(target_os = "linux")]
    fn suspended_since_boot() -> Duration {
        use rustix::time::{clock_gettime, ClockId, Timespec};
        let ns = |t: Timespec| (t.tv_sec as i128) * 1_000_000_000 + t.tv_nsec as i128;
        let mono = ns(clock_gettime(ClockId::Monotonic));
        let boot = ns(clock_gettime(ClockId::Boottime));
        Duration::from_nanos((boot - mono).clamp(0, i128::from(u64::MAX)) as u64)
    }

    #[cfg(not(target_os = "linux"))]
    fn suspended_since_boot() -> Duration {
        Duration::ZERO
    }

    impl TokioClock {
        /// A clock whose monotonic origin is the moment of creation.
        pub fn new() -> Self {
            Self::with_source(suspended_since_boot)
        }

        /// A clock that reads suspended time from `source` (tests stand in for the kernel).
        pub(crate) fn with_source(source: fn() -> Duration) -> Self {
            TokioClock {
                origin: tokio::time::Instant::now(),
                source,
                suspended0: source(),
                seen: Arc::new(AtomicU64::new(0)),
            }
        }

        /// Time the host has spent suspended since this clock was created.
        fn suspended(&self) -> Duration {
            let now = (self.source)().saturating_sub(self.suspended0);
            let now = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(self.seen.fetch_max(now, Ordering::Relaxed).max(now))
        }
    }

    impl Default for TokioClock {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Clock for TokioClock {
        fn now(&self) -> Duration {
            self.origin.elapsed().saturating_add(self.suspended())
        }
        fn wall(&self) -> SystemTime {
            SystemTime::now()
        }
        fn sleep_until(&self, deadline: Duration) -> BoxFuture<'static, ()> {
            let this = self.clone();
            Box::pin(async move {
                // tokio's timers do not count suspended time: wake, re-read, sleep the rest.
                loop {
                    let now = this.now();
                    if now >= deadline {
                        return;
                    }
                    tokio::time::sleep(deadline - now).await;
                }
            })
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        static SUSPENDED_NS: AtomicU64 = AtomicU64::new(5_000_000_000);

        fn fake_kernel() -> Duration {
            Duration::from_nanos(SUSPENDED_NS.load(Ordering::SeqCst))
        }

        #[tokio::test(start_paused = true)]
        async fn a_suspension_moves_now_and_ends_sleeps_at_once() {
            let clock = TokioClock::with_source(fake_kernel);
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert_eq!(
                clock.now(),
                Duration::from_secs(1),
                "suspended time before creation is not counted"
            );
            // The host sleeps for 30 s: tokio's clock does not move, the kernel's count does.
            let sleeper = tokio::spawn({
                let c = clock.clone();
                async move { c.sleep_until(Duration::from_secs(20)).await }
            });
            tokio::task::yield_now().await;
            SUSPENDED_NS.fetch_add(30_000_000_000, Ordering::SeqCst);
            assert_eq!(clock.now(), Duration::from_secs(31));
            // The pending sleep ends no later than its timer, and then sees the deadline passed.
            tokio::time::timeout(Duration::from_secs(20), sleeper)
                .await
                .unwrap()
                .unwrap();
            clock.sleep_until(Duration::from_secs(25)).await;
            assert!(
                clock.now() < Duration::from_secs(52),
                "a passed deadline needs no timer"
            );
            // A dip in the difference between the two kernel clocks never moves now() back.
            let before = clock.now();
            SUSPENDED_NS.fetch_sub(1, Ordering::SeqCst);
            assert_eq!(clock.now(), before);
        }
    }
}

#[cfg(feature = "tokio")]
pub use tokio_clock::TokioClock;
