//! The clock model: each node's monotonic clock is a piecewise-linear function of true time
//! (a drift rate per segment, changed only at fault events), and its wall clock is the
//! monotonic clock plus an offset that steps move. The oracle inverts the mapping exactly.
//!
//! A node has two monotonic clocks, as a Linux host does: one that counts time while the host
//! is suspended (`CLOCK_BOOTTIME`, which production's `TokioClock` reads) and one that stops
//! (`CLOCK_MONOTONIC`, which `std::time::Instant` and tokio's timers read). The model says
//! which one the node's agent reads; every reading of "local time" (the agent's clock, the
//! trace, the oracle's inversion of claims) goes through that one.

use leasehold::{BoxFuture, Clock};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

/// The wall-clock epoch of every simulation (fixed, so traces are reproducible).
pub const WALL_EPOCH_SECS: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z

#[derive(Debug, Clone, Copy)]
struct Segment {
    true0: u128,
    local0: u128,
    ppm: i64,
}

/// A true time the clock will not reach while it is stopped (about 146 years, in ns): far
/// enough never to come, small enough to add to an `Instant`.
const NEVER: u128 = 1 << 62;

/// The rate of a stopped clock, in ppm of error.
const STOPPED: i64 = -1_000_000;

/// One node's clocks as functions of true simulated time (nanoseconds since the start).
#[derive(Debug, Clone)]
pub struct ClockModel {
    /// The clock that runs while suspended (`CLOCK_BOOTTIME`).
    segs: Vec<Segment>,
    /// The clock that stops while suspended (`CLOCK_MONOTONIC`).
    awake: Vec<Segment>,
    suspended: bool,
    /// Frozen (every clock stopped), and the rate to resume at.
    frozen: Option<i64>,
    /// The agent reads `awake` (a planted bug) rather than `segs`.
    reads_awake: bool,
    /// Wall clock minus monotonic clock, in ns.
    wall_offset: i128,
    /// A reading or an inversion needed a segment [forgotten](ClockModel::forget_before).
    stale: std::cell::Cell<bool>,
}

fn eval(segs: &[Segment], t: u128) -> u128 {
    let s = segs.iter().rev().find(|s| s.true0 <= t).unwrap_or(&segs[0]);
    let dt = (t.saturating_sub(s.true0)) as i128;
    (s.local0 as i128 + dt * (1_000_000 + s.ppm as i128) / 1_000_000) as u128
}

fn invert(segs: &[Segment], local: u128) -> u128 {
    let s = segs.iter().rev().find(|s| s.local0 <= local).unwrap_or(&segs[0]);
    let dl = local.saturating_sub(s.local0) as i128;
    let rate = 1_000_000 + s.ppm as i128;
    if rate <= 0 {
        // Stopped now, short of `local`: reached only after a wake-up that has not happened.
        return if dl == 0 { s.true0 } else { NEVER };
    }
    (s.true0 + ((dl * 1_000_000 + rate - 1) / rate) as u128).min(NEVER)
}

impl ClockModel {
    /// A clock whose monotonic reading starts at `origin` and runs at `1 + ppm/10⁶`, with its
    /// wall clock offset by `wall_offset_ns` from the common epoch.
    pub fn new(origin: Duration, ppm: i64, wall_offset_ns: i128) -> Self {
        let first = Segment {
            true0: 0,
            local0: origin.as_nanos(),
            ppm,
        };
        ClockModel {
            segs: vec![first],
            awake: vec![first],
            suspended: false,
            frozen: None,
            reads_awake: false,
            wall_offset: wall_offset_ns,
            stale: std::cell::Cell::new(false),
        }
    }

    /// Forgets the segments that ended before true time `t` (a long run judged up to there
    /// needs them no more), so the model does not grow with the run. A later reading or
    /// inversion that would have needed one marks the model [stale](ClockModel::stale).
    pub fn forget_before(&mut self, t: u128) {
        for segs in [&mut self.segs, &mut self.awake] {
            let done = segs.iter().skip(1).take_while(|s| s.true0 <= t).count();
            segs.drain(..done);
        }
    }

    /// Whether a reading or an inversion needed a segment that was forgotten (its answer was
    /// then wrong, and the run must be redone keeping them).
    pub fn stale(&self) -> bool {
        self.stale.get()
    }

    fn check(&self, fresh: bool) {
        if !fresh {
            self.stale.set(true);
        }
    }

    /// Makes the agent read the clock that stops while suspended (the planted bug
    /// `suspend_blind_clock`) instead of the one that keeps counting.
    pub fn reading_awake_time(mut self) -> Self {
        self.reads_awake = true;
        self
    }

    fn read(&self) -> &[Segment] {
        if self.reads_awake {
            &self.awake
        } else {
            &self.segs
        }
    }

    /// The reading of the agent's monotonic clock at true time `t` (ns).
    pub fn local_at(&self, t: u128) -> u128 {
        self.check(self.read()[0].true0 <= t);
        eval(self.read(), t)
    }

    /// The earliest true time (ns) at which the agent's monotonic reading is at least `local`
    /// (about 146 years if that waits for a wake-up that has not happened yet).
    pub fn true_at(&self, local: u128) -> u128 {
        self.check(self.read()[0].local0 <= local);
        invert(self.read(), local)
    }

    /// The current drift rate, in ppm (the rate a frozen clock resumes at).
    pub fn ppm(&self) -> i64 {
        self.frozen.unwrap_or_else(|| self.segs.last().map_or(0, |s| s.ppm))
    }

    /// Changes the drift rate from true time `t` on.
    pub fn set_ppm(&mut self, t: u128, ppm: i64) {
        if self.frozen.is_some() {
            self.frozen = Some(ppm);
            return;
        }
        let local0 = eval(&self.segs, t);
        self.segs.push(Segment { true0: t, local0, ppm });
        if !self.suspended {
            let local0 = eval(&self.awake, t);
            self.awake.push(Segment { true0: t, local0, ppm });
        }
    }

    /// The host is suspended at true time `t`: the awake-time clock stops (the other runs on).
    pub fn suspend(&mut self, t: u128) {
        if !self.suspended {
            self.suspended = true;
            let local0 = eval(&self.awake, t);
            self.awake.push(Segment {
                true0: t,
                local0,
                ppm: STOPPED,
            });
        }
    }

    /// The node freezes at true time `t` (a VM freeze, a stop-the-world pause): every clock
    /// stops, the one that counts suspended time and the wall clock too, until [`wake`].
    ///
    /// [`wake`]: ClockModel::wake
    pub fn freeze(&mut self, t: u128) {
        if self.frozen.is_some() {
            return;
        }
        self.frozen = Some(self.ppm());
        let local0 = eval(&self.segs, t);
        self.segs.push(Segment {
            true0: t,
            local0,
            ppm: STOPPED,
        });
        self.suspend(t);
    }

    /// The host wakes (or the node thaws) at true time `t`: its stopped clocks run again, at
    /// the current rate.
    pub fn wake(&mut self, t: u128) {
        if let Some(ppm) = self.frozen.take() {
            let local0 = eval(&self.segs, t);
            self.segs.push(Segment { true0: t, local0, ppm });
        }
        if self.suspended {
            self.suspended = false;
            let local0 = eval(&self.awake, t);
            self.awake.push(Segment {
                true0: t,
                local0,
                ppm: self.ppm(),
            });
        }
    }

    /// Steps the wall clock by `by_ns` (negative: backwards).
    pub fn step_wall(&mut self, by_ns: i128) {
        self.wall_offset += by_ns;
    }

    /// The wall-clock reading at true time `t`.
    pub fn wall_at(&self, t: u128) -> SystemTime {
        // The wall clock keeps counting while suspended, whichever clock the agent reads.
        let ns = eval(&self.segs, t) as i128 + self.wall_offset + i128::from(WALL_EPOCH_SECS) * 1_000_000_000;
        SystemTime::UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64)
    }
}

/// madsim's timers fire no sooner than this after they are armed: a scenario's route latencies
/// may not be shorter (checked when it is loaded), and the fabric relies on that.
pub const TIMER_RESOLUTION: Duration = Duration::from_millis(1);

/// True simulated time since the start of the run, in ns.
pub fn true_now(start: madsim::time::Instant) -> u128 {
    start.elapsed().as_nanos()
}

/// The run's true clock, read through a handle kept from its creation: the same reading as
/// [`true_now`], without looking madsim's runtime up on every call (the hot paths read it per
/// message).
#[derive(Clone)]
pub struct TrueClock {
    time: madsim::time::TimeHandle,
    start: madsim::time::Instant,
}

impl TrueClock {
    /// The current run's clock, counted from `start`. Call inside the run's runtime.
    pub fn new(start: madsim::time::Instant) -> Self {
        TrueClock {
            time: madsim::time::TimeHandle::current(),
            start,
        }
    }

    /// madsim's instant now.
    pub fn instant(&self) -> madsim::time::Instant {
        self.time.now_instant()
    }

    /// True time since the start, in ns.
    pub fn now(&self) -> u128 {
        self.instant().saturating_duration_since(self.start).as_nanos()
    }

    /// The instant `ns` after the start.
    pub fn at(&self, ns: u128) -> madsim::time::Instant {
        self.start + Duration::from_nanos(ns as u64)
    }

    /// madsim's sleep until `ns` after the start (at least 1 ms from now, as madsim's are).
    pub fn sleep_until(&self, ns: u128) -> madsim::time::Sleep {
        self.time.sleep_until(self.at(ns))
    }
}

/// A node's [`Clock`] in the simulation: madsim's time seen through the node's [`ClockModel`].
#[derive(Clone)]
pub struct SimClock {
    model: Arc<Mutex<ClockModel>>,
    truth: TrueClock,
}

impl SimClock {
    /// The clock of `model`, with true time counted from `start`. Call inside the run's runtime.
    pub fn new(model: Arc<Mutex<ClockModel>>, start: madsim::time::Instant) -> Self {
        SimClock {
            model,
            truth: TrueClock::new(start),
        }
    }

    fn model(&self) -> std::sync::MutexGuard<'_, ClockModel> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for SimClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.model().local_at(self.truth.now()) as u64)
    }

    fn wall(&self) -> SystemTime {
        self.model().wall_at(self.truth.now())
    }

    fn sleep_until(&self, deadline: Duration) -> BoxFuture<'static, ()> {
        Box::pin(SimSleep {
            clock: self.clone(),
            deadline,
            alarm: Alarm::default(),
        })
    }
}

/// A sleep on a node's clock: an [`Alarm`] set to the true instant of its deadline.
struct SimSleep {
    clock: SimClock,
    deadline: Duration,
    alarm: Alarm,
}

impl Future for SimSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // The rate may change while asleep: every poll re-reads the model, and the alarm
        // re-arms if the true instant of the deadline moved.
        let target = self.clock.model().true_at(self.deadline.as_nanos());
        let now = self.clock.truth.instant();
        let wake = self.clock.truth.at(target.min(NEVER));
        if now >= wake {
            return Poll::Ready(());
        }
        self.alarm.poll_at(wake, now, cx)
    }
}

/// A wake-up at a true instant that costs madsim one timer, however often it is polled.
///
/// madsim's own `Sleep` adds a timer to the world's heap on every poll that finds it pending,
/// and a timer is never taken back: a task that polls its sleep once per message (an agent's
/// loop) would leave a timer per message, each of which later wakes
/// the task for nothing (and every wake is a poll, which moves madsim's time and draws from
/// its RNG). An alarm arms one madsim timer per instant and hands later polls' wakers to it
/// through a relay, which is emptied when the alarm is dropped, so a stale timer wakes nobody.
#[derive(Default)]
pub(crate) struct Alarm {
    /// The instant a madsim timer is armed for, and that timer.
    armed: Option<(madsim::time::Instant, madsim::time::Sleep)>,
    relay: Arc<Relay>,
}

/// Passes a timer's wake on to whoever polled the alarm last.
#[derive(Default)]
struct Relay(futures::task::AtomicWaker);

impl futures::task::ArcWake for Relay {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.wake();
    }
}

impl Alarm {
    /// Ready once madsim's time (`now`, as the caller read it) has reached `at`; until then,
    /// arms (or re-arms, if `at` moved) a timer that will wake the caller.
    pub(crate) fn poll_at(
        &mut self,
        at: madsim::time::Instant,
        now: madsim::time::Instant,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if now >= at {
            return Poll::Ready(());
        }
        self.relay.0.register(cx.waker());
        if self.armed.as_ref().map(|(t, _)| *t) != Some(at) {
            let mut sleep = madsim::time::sleep_until(at);
            let waker = futures::task::waker(self.relay.clone());
            // Not yet elapsed (checked above), so this arms the timer and returns pending.
            let _ = Pin::new(&mut sleep).poll(&mut Context::from_waker(&waker));
            self.armed = Some((at, sleep));
        }
        Poll::Pending
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        self.relay.0.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_true_invert_across_rate_changes() {
        let mut m = ClockModel::new(Duration::from_secs(5), 1000, 0);
        m.set_ppm(2_000_000_000, -700);
        m.set_ppm(7_000_000_000, 300);
        for t in [
            0u128,
            1,
            999_999_999,
            2_000_000_000,
            3_123_456_789,
            7_000_000_000,
            9_999_999_999,
        ] {
            let l = m.local_at(t);
            let back = m.true_at(l);
            assert!(back <= t && t - back <= 1, "t={t} local={l} back={back}");
            assert!(m.local_at(back) >= l);
        }
        assert_eq!(m.local_at(1_000_000_000), 5_000_000_000 + 1_001_000_000);
    }

    #[test]
    fn suspend_stops_only_the_awake_time_clock() {
        let s = 1_000_000_000u128;
        let mut boot = ClockModel::new(Duration::ZERO, 0, 0);
        let mut awake = ClockModel::new(Duration::ZERO, 0, 0).reading_awake_time();
        for m in [&mut boot, &mut awake] {
            m.suspend(2 * s);
            m.set_ppm(3 * s, 1000); // a rate change while suspended applies after the wake-up
            m.wake(7 * s);
        }
        assert_eq!(boot.local_at(7 * s), 7 * s + s * 4 / 1000);
        assert_eq!(awake.local_at(5 * s), 2 * s, "stopped while suspended");
        assert_eq!(awake.local_at(8 * s), 3 * s + s / 1000);
        assert_eq!(awake.true_at(2 * s + 1), 7 * s + 1, "reached only after the wake-up");
        assert_eq!(boot.wall_at(5 * s), awake.wall_at(5 * s), "wall time runs on in both");
        let mut frozen = ClockModel::new(Duration::ZERO, 0, 0).reading_awake_time();
        frozen.suspend(s);
        assert_eq!(frozen.true_at(2 * s), NEVER, "not before a wake-up that has not come");
    }

    #[test]
    fn wall_steps_do_not_move_the_monotonic_clock() {
        let mut m = ClockModel::new(Duration::ZERO, 0, 0);
        let before = (m.local_at(10), m.wall_at(10));
        m.step_wall(-2_000_000_000);
        assert_eq!(m.local_at(10), before.0);
        assert_eq!(before.1.duration_since(m.wall_at(10)).unwrap(), Duration::from_secs(2));
    }
}
