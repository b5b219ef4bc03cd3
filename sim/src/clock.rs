//! The clock model: each node's monotonic clock is a piecewise-linear function of true time
//! (a drift rate per segment, changed only at fault events), and its wall clock is the
//! monotonic clock plus an offset that steps move. The oracle inverts the mapping exactly.
//!
//! A node has two monotonic clocks, as a Linux host does: one that counts time while the host
//! is suspended (`CLOCK_BOOTTIME`) and one that stops (`CLOCK_MONOTONIC`, which
//! `std::time::Instant` and tokio's timers read). The agent's clock is composed from them as
//! production's `TokioClock` composes it: `CLOCK_MONOTONIC` plus the suspended time that
//! [`leasehold::SuspendedTime`] reads from a simulated kernel (`SimKernel`) over the two.
//! Unpreempted, that is exactly the `CLOCK_BOOTTIME` reading; a read preempted between two
//! kernel reads ([`ClockModel::preempt_next_read`]) can come out ahead, and the model then
//! records the jump ([`ClockModel::local_at`]), so every reading of "local time" (the agent's
//! clock, the trace, the oracle's inversion of claims) is exactly what the agent read.

use leasehold::{BoxFuture, Clock, KernelClocks, SuspendedTime};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

/// The wall-clock epoch of every simulation (fixed, so traces are reproducible).
pub const WALL_EPOCH_SECS: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z

/// One piece of a clock: from true time `from` on, the line through (`true0`, `local0`) at the
/// rate `1 + ppm/10⁶`. `true0` is `from`, except for the clock that stops while suspended
/// after a wake-up: that segment follows the other clock's line (less the time slept), so that
/// the two clocks differ by exactly the time slept, not by a nanosecond of rounding more or
/// less from one reading to the next.
#[derive(Debug, Clone, Copy)]
struct Segment {
    from: u128,
    true0: u128,
    local0: i128,
    ppm: i64,
}

impl Segment {
    /// A segment whose line starts where it applies.
    fn starting(t: u128, local: u128, ppm: i64) -> Self {
        Segment {
            from: t,
            true0: t,
            local0: local as i128,
            ppm,
        }
    }

    fn rate(&self) -> i128 {
        1_000_000 + self.ppm as i128
    }

    /// The reading on this segment's line at true time `t`.
    fn at(&self, t: u128) -> u128 {
        let dt = (t.saturating_sub(self.true0)) as i128;
        (self.local0 + dt * self.rate() / 1_000_000) as u128
    }

    /// The reading where the segment starts to apply.
    fn start(&self) -> u128 {
        self.at(self.from)
    }
}

/// A true time the clock will not reach while it is stopped (about 146 years, in ns): far
/// enough never to come, small enough to add to an `Instant`.
const NEVER: u128 = 1 << 62;

/// The rate of a stopped clock, in ppm of error.
const STOPPED: i64 = -1_000_000;

/// From true time `at` on (until the next), the agent's clock reads
/// `max(CLOCK_BOOTTIME + k, CLOCK_MONOTONIC + lead)`: what a composed read that came out ahead
/// (`lead`), or a new process's clock that continues such a reading (`k`), left behind.
#[derive(Debug, Clone, Copy)]
struct Lead {
    at: u128,
    k: u128,
    lead: Option<u128>,
}

/// The kernel reads of one composed read of the agent's clock (see [`SimKernel`]).
#[derive(Debug, Clone, Copy)]
struct KernelRead {
    /// True time of the read.
    at: u128,
    /// A preemption still to come, after the first kernel read (ns).
    stall: Option<u128>,
    /// How far ahead the kernel reads see the clocks (the preemption, once it happened).
    shift: u128,
}

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
    /// The agent reads `awake` (a planted bug) rather than composing its clock.
    reads_awake: bool,
    /// The agent's clock reads suspended time the old way (a planted bug).
    ratcheting: bool,
    /// Jumps of the agent's clock, in true-time order (none unless a read came out ahead).
    leads: Vec<Lead>,
    /// Leads before this true time were [forgotten](ClockModel::forget_before).
    leads_floor: u128,
    /// A preemption waiting for the agent's next composed read (ns).
    preempt: Option<u128>,
    /// The composed read in progress.
    read: Option<KernelRead>,
    /// How the agent's clock is composed: made by the first [`SimClock`] of the node's
    /// processes and shared by the others (a clone, the router server) until they die.
    host: Option<Arc<Host>>,
    /// Wall clock minus monotonic clock, in ns.
    wall_offset: i128,
    /// A reading or an inversion needed a segment [forgotten](ClockModel::forget_before).
    stale: std::cell::Cell<bool>,
    /// Composed reads that jumped ahead of the clock by more than
    /// [`leasehold::SUSPENDED_TIME_TOLERANCE`]: how many, and the first (true time, jump).
    ahead: (u64, Option<(u128, u128)>),
}

/// The segment that applies at true time `t`.
fn find(segs: &[Segment], t: u128) -> &Segment {
    segs.iter().rev().find(|s| s.from <= t).unwrap_or(&segs[0])
}

fn eval(segs: &[Segment], t: u128) -> u128 {
    find(segs, t).at(t)
}

fn invert(segs: &[Segment], local: u128) -> u128 {
    let s = segs.iter().rev().find(|s| s.start() <= local).unwrap_or(&segs[0]);
    let dl = (local as i128 - s.local0).max(0);
    let rate = s.rate();
    if rate <= 0 {
        // Stopped now, short of `local`: reached only after a wake-up that has not happened.
        return if local <= s.start() { s.from } else { NEVER };
    }
    (s.true0 + ((dl * 1_000_000 + rate - 1) / rate) as u128)
        .max(s.from)
        .min(NEVER)
}

/// The earliest true time from `t0` on at which `segs` reads at least `local` (`NEVER` if it
/// does not yet).
fn earliest(segs: &[Segment], local: u128, t0: u128) -> u128 {
    for (k, s) in segs.iter().enumerate() {
        let next = segs.get(k + 1).map(|n| n.from);
        if next.is_some_and(|n| n <= t0) {
            continue;
        }
        let lo = s.from.max(t0);
        if s.at(lo) >= local {
            return lo;
        }
        let rate = s.rate();
        if rate > 0 {
            let dl = local as i128 - s.local0;
            let t = s.true0 + ((dl * 1_000_000 + rate - 1) / rate) as u128;
            if next.is_none_or(|n| t < n) {
                return t.min(NEVER);
            }
        }
    }
    NEVER
}

impl ClockModel {
    /// A clock whose monotonic reading starts at `origin` and runs at `1 + ppm/10⁶`, with its
    /// wall clock offset by `wall_offset_ns` from the common epoch.
    pub fn new(origin: Duration, ppm: i64, wall_offset_ns: i128) -> Self {
        let first = Segment::starting(0, origin.as_nanos(), ppm);
        ClockModel {
            segs: vec![first],
            awake: vec![first],
            suspended: false,
            frozen: None,
            reads_awake: false,
            ratcheting: false,
            leads: Vec::new(),
            leads_floor: 0,
            preempt: None,
            read: None,
            host: None,
            // The monotonic origin is the host's uptime, nothing the wall clock shares.
            wall_offset: wall_offset_ns - origin.as_nanos() as i128,
            stale: std::cell::Cell::new(false),
            ahead: (0, None),
        }
    }

    /// Forgets the segments that ended before true time `t` (a long run judged up to there
    /// needs them no more), so the model does not grow with the run. A later reading or
    /// inversion that would have needed one marks the model [stale](ClockModel::stale).
    pub fn forget_before(&mut self, t: u128) {
        for segs in [&mut self.segs, &mut self.awake] {
            let done = segs.iter().skip(1).take_while(|s| s.from <= t).count();
            segs.drain(..done);
        }
        let done = self.leads.iter().skip(1).take_while(|l| l.at <= t).count();
        if done > 0 {
            self.leads.drain(..done);
            self.leads_floor = self.leads[0].at;
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
    /// `suspend_blind_clock`) instead of composing its clock.
    pub fn reading_awake_time(mut self) -> Self {
        self.reads_awake = true;
        self
    }

    /// Makes the agent's clock read suspended time the old way (the planted bug
    /// `ratcheting_clock_read`: see `RatchetingRead`) instead of with
    /// [`SuspendedTime`].
    pub fn ratcheting_read(mut self) -> Self {
        self.ratcheting = true;
        self
    }

    fn read(&self) -> &[Segment] {
        if self.reads_awake {
            &self.awake
        } else {
            &self.segs
        }
    }

    /// The jump in force at true time `t`, if any.
    fn lead_at(&self, t: u128) -> Option<&Lead> {
        self.leads.iter().rev().find(|l| l.at <= t)
    }

    /// The reading of the agent's monotonic clock at true time `t` (ns): the clock that stops,
    /// with the `suspend_blind_clock` bug; else `CLOCK_BOOTTIME`, or, after a composed read
    /// that came out ahead, `max(CLOCK_BOOTTIME + k, CLOCK_MONOTONIC + lead)`. A composed
    /// reading is `CLOCK_MONOTONIC` plus the running maximum of its suspended-time estimates,
    /// and unpreempted estimates are exact, so a preempted one that came out ahead stays ahead
    /// until a suspension grows the true suspended time past it. `k` is zero but for a
    /// process started after such a jump: its new clock continues the reading (and reads
    /// `CLOCK_BOOTTIME + k`), with a running maximum of its own.
    pub fn local_at(&self, t: u128) -> u128 {
        self.check(self.read()[0].from <= t);
        if self.reads_awake {
            return eval(&self.awake, t);
        }
        if !self.leads.is_empty() {
            self.check(self.leads_floor <= t && self.awake[0].from <= t);
        }
        self.composed_at(t)
    }

    /// The composed reading at true time `t` (see [`local_at`](ClockModel::local_at)).
    fn composed_at(&self, t: u128) -> u128 {
        let boot = eval(&self.segs, t);
        match self.lead_at(t) {
            Some(l) => (boot + l.k).max(l.lead.map_or(0, |lead| eval(&self.awake, t) + lead)),
            None => boot,
        }
    }

    /// The earliest true time (ns) at which the agent's monotonic reading is at least `local`
    /// (about 146 years if that waits for a wake-up that has not happened yet).
    pub fn true_at(&self, local: u128) -> u128 {
        self.check(self.read()[0].start() <= local);
        let t = invert(self.read(), local);
        if self.reads_awake || self.leads.is_empty() {
            return t;
        }
        if t < self.leads[0].at {
            self.check(self.leads_floor == 0);
            return t;
        }
        // The reading never goes back: find the first span between two jumps in which it
        // gets there (the last span goes on for ever), then where in it.
        let (mut lo, mut hi) = (0, self.leads.len() - 1);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.composed_at(self.leads[mid + 1].at.saturating_sub(1)) >= local {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let l = &self.leads[lo];
        let mut at = earliest(&self.segs, local.saturating_sub(l.k), l.at);
        if let Some(lead) = l.lead {
            at = at.min(earliest(&self.awake, local.saturating_sub(lead), l.at));
        }
        self.check(self.leads_floor <= at);
        at
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
        self.segs.push(Segment::starting(t, local0, ppm));
        if !self.suspended {
            let local0 = eval(&self.awake, t);
            self.awake.push(Segment::starting(t, local0, ppm));
        }
    }

    /// The host is suspended at true time `t`: the awake-time clock stops (the other runs on).
    pub fn suspend(&mut self, t: u128) {
        if !self.suspended {
            self.suspended = true;
            let local0 = eval(&self.awake, t);
            self.awake.push(Segment::starting(t, local0, STOPPED));
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
        self.segs.push(Segment::starting(t, local0, STOPPED));
        self.suspend(t);
    }

    /// The host wakes (or the node thaws) at true time `t`: its stopped clocks run again, at
    /// the current rate; the awake-time clock on the other clock's line less the time slept
    /// (so their difference stays exactly the time slept until both change rate together; a
    /// freeze stopped both, so it adds nothing to the time slept).
    pub fn wake(&mut self, t: u128) {
        if let Some(ppm) = self.frozen.take() {
            let local0 = eval(&self.segs, t);
            self.segs.push(Segment::starting(t, local0, ppm));
        }
        if self.suspended {
            self.suspended = false;
            let slept = eval(&self.segs, t) as i128 - eval(&self.awake, t) as i128;
            let line = *find(&self.segs, t);
            self.awake.push(Segment {
                from: t,
                local0: line.local0 - slept,
                ..line
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

    /// The node's processes died (a kill): the next clock made on it composes its reading
    /// afresh, with a running maximum of its own, as a new process's `TokioClock` does.
    pub fn processes_died(&mut self) {
        self.host = None;
    }

    /// Preempts the agent's next composed clock read for `by`: its process stalls between
    /// the first and the second kernel clock read, so the reads after the stall see the
    /// clocks as they are `by` later. Another preemption before that read keeps the longer.
    pub fn preempt_next_read(&mut self, by: Duration) {
        self.preempt = self.preempt.max(Some(by.as_nanos()));
    }

    /// The true time a kernel read sees, moving the composed read in progress on (`None`
    /// outside one: the read sees the present).
    fn kernel_time(&mut self) -> Option<u128> {
        let r = self.read.as_mut()?;
        let t = r.at + r.shift;
        // The stall falls right after the first kernel read.
        if let Some(p) = r.stall.take() {
            r.shift = p;
        }
        Some(t)
    }

    /// A composed read of the agent's clock begins at true time `t`; returns the
    /// `CLOCK_MONOTONIC` reading it starts from.
    fn begin_read(&mut self, t: u128) -> u128 {
        // A suspended host runs nothing: only the drops of a process killed while suspended
        // read its clock then, and no preemption falls inside them (stalled there, a read would
        // see the host asleep for the whole stall and come out ahead by it).
        let stall = if self.suspended { None } else { self.preempt.take() };
        self.read = Some(KernelRead { at: t, stall, shift: 0 });
        eval(&self.awake, t)
    }

    /// Composed reads of the agent's clock that jumped ahead of it by more than
    /// [`leasehold::SUSPENDED_TIME_TOLERANCE`] (a preemption counted as suspended time): how
    /// many, and the first one's true time and jump (ns).
    pub fn reads_ahead(&self) -> (u64, Option<(u128, u128)>) {
        self.ahead
    }

    /// The composed read begun at `t` gave `reading`: records the jump if it came out ahead
    /// of the model, so that [`local_at`](ClockModel::local_at) is what the agent read.
    fn end_read(&mut self, t: u128, reading: u128) {
        self.read = None;
        let model = self.local_at(t);
        if reading != model {
            assert!(
                reading > model,
                "a composed clock read came out behind the model: {reading} < {model} at {t}"
            );
            if reading - model > leasehold::SUSPENDED_TIME_TOLERANCE.as_nanos() {
                self.ahead.0 += 1;
                self.ahead.1.get_or_insert((t, reading - model));
            }
            let lead = Lead {
                at: t,
                k: self.lead_at(t).map_or(0, |l| l.k),
                lead: Some(reading - eval(&self.awake, t)),
            };
            self.leads.push(lead);
            debug_assert_eq!(self.local_at(t), reading);
        }
    }
}

/// The two kernel clocks of a simulated host, as [`SuspendedTime`] reads them: the node's
/// model's `CLOCK_MONOTONIC` (the clock that stops) and `CLOCK_BOOTTIME`, at true time. Within a
/// composed read that is preempted, every kernel read after the first sees the clocks as
/// they are the preemption later. The process is not delayed itself (what `pause` does), so
/// the next composed read sees the present again: this kernel's `CLOCK_MONOTONIC` never goes
/// back within a composed read, which is all `SuspendedTime` compares.
struct SimKernel {
    /// Weak: the model holds the composer that holds this kernel.
    model: Weak<Mutex<ClockModel>>,
    truth: TrueClock,
}

impl SimKernel {
    fn read(&self, clock: impl FnOnce(&ClockModel, u128) -> u128) -> Duration {
        let Some(model) = self.model.upgrade() else {
            return Duration::ZERO;
        };
        let mut m = model.lock().unwrap_or_else(|e| e.into_inner());
        let t = m.kernel_time().unwrap_or_else(|| self.truth.now());
        Duration::from_nanos(clock(&m, t) as u64)
    }
}

impl KernelClocks for SimKernel {
    fn monotonic(&self) -> Duration {
        self.read(|m, t| eval(&m.awake, t))
    }
    fn boottime(&self) -> Duration {
        self.read(|m, t| eval(&m.segs, t))
    }
}

/// A way to read the time a host has spent suspended (since an origin).
trait Suspended: Send + Sync {
    fn suspended(&self) -> Duration;
}

impl<K: KernelClocks + Send + Sync> Suspended for SuspendedTime<K> {
    fn suspended(&self) -> Duration {
        SuspendedTime::suspended(self)
    }
}

/// How `TokioClock` read suspended time before [`SuspendedTime`] (the planted bug
/// `ratcheting_clock_read`), as it was: `CLOCK_MONOTONIC`, then `CLOCK_BOOTTIME`, once each,
/// their difference less the one at creation, kept as a running maximum. A preemption between
/// the two reads inflates the difference by its length, and the maximum keeps it: the clock
/// jumps forward for good.
struct RatchetingRead<K> {
    kernel: K,
    suspended0: Duration,
    seen: AtomicU64,
}

impl<K: KernelClocks> RatchetingRead<K> {
    fn new(kernel: K) -> Self {
        let suspended0 = Self::since_boot(&kernel);
        RatchetingRead {
            kernel,
            suspended0,
            seen: AtomicU64::new(0),
        }
    }

    fn since_boot(kernel: &K) -> Duration {
        let mono = kernel.monotonic().as_nanos() as i128;
        let boot = kernel.boottime().as_nanos() as i128;
        Duration::from_nanos((boot - mono).clamp(0, i128::from(u64::MAX)) as u64)
    }
}

impl<K: KernelClocks + Send + Sync> Suspended for RatchetingRead<K> {
    fn suspended(&self) -> Duration {
        let now = Self::since_boot(&self.kernel).saturating_sub(self.suspended0);
        let now = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.seen.fetch_max(now, Ordering::Relaxed).max(now))
    }
}

/// A node's composed clock: `CLOCK_MONOTONIC + base + suspended()`, as `TokioClock` is
/// tokio's elapsed time plus `SuspendedTime::suspended()`. `base` is the model's reading less
/// `CLOCK_MONOTONIC` when it was made (`CLOCK_BOOTTIME − CLOCK_MONOTONIC`, unless an earlier
/// process's clock jumped), so that unpreempted it reads on exactly as the model does.
struct Host {
    suspended: Box<dyn Suspended>,
    base: u128,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("base", &self.base).finish_non_exhaustive()
    }
}

/// The composed clock of the node whose model is `model` (made by the first caller), or
/// `None` if its agent reads the clock that stops.
fn host_of(model: &Arc<Mutex<ClockModel>>, truth: &TrueClock) -> Option<Arc<Host>> {
    let lock = || model.lock().unwrap_or_else(|e| e.into_inner());
    let (awake, host, ratcheting) = {
        let m = lock();
        (m.reads_awake, m.host.clone(), m.ratcheting)
    };
    if awake {
        return None;
    }
    if host.is_some() {
        return host;
    }
    let kernel = SimKernel {
        model: Arc::downgrade(model),
        truth: truth.clone(),
    };
    // Both read the kernel once now, outside a composed read: the model as it is now.
    let suspended: Box<dyn Suspended> = if ratcheting {
        Box::new(RatchetingRead::new(kernel))
    } else {
        Box::new(SuspendedTime::new(kernel))
    };
    let t = truth.now();
    let mut m = lock();
    // The new clock continues the node's reading (a new process's clock has an origin of its
    // own; the model keeps one): `CLOCK_BOOTTIME` unless an earlier process's clock jumped.
    let (boot, reading) = (eval(&m.segs, t), m.local_at(t));
    if reading != boot {
        m.leads.push(Lead {
            at: t,
            k: reading - boot,
            lead: None,
        });
    }
    let base = reading - eval(&m.awake, t);
    let host = Arc::new(Host { suspended, base });
    m.host = Some(host.clone());
    Some(host)
}

/// madsim's `sleep` and `sleep_until` wait at least this long (as tokio's timer wheel rounds a
/// sleep up to its 1 ms tick). The agents' own timers keep that floor, harmlessly: their
/// production runtime has it too. The fabric's deliveries do not: they are armed for the exact
/// instant ([`TrueClock::timer_at`]), so a route may take 250 µs or nothing at all.
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

    /// A madsim sleep that ends exactly `ns` after the start, however soon that is (a sleep's
    /// deadline, once reset, is not floored).
    pub fn timer_at(&self, ns: u128) -> madsim::time::Sleep {
        let mut s = self.time.sleep_until(self.at(ns));
        std::pin::Pin::new(&mut s).reset(self.at(ns));
        s
    }
}

/// A node's [`Clock`] in the simulation: madsim's time seen through the node's [`ClockModel`],
/// composed as production composes it (see the module's documentation).
#[derive(Clone)]
pub struct SimClock {
    model: Arc<Mutex<ClockModel>>,
    truth: TrueClock,
    /// `None`: the agent reads the clock that stops (`suspend_blind_clock`).
    host: Option<Arc<Host>>,
}

impl SimClock {
    /// The clock of `model`, with true time counted from `start`. Call inside the run's runtime.
    pub fn new(model: Arc<Mutex<ClockModel>>, start: madsim::time::Instant) -> Self {
        let truth = TrueClock::new(start);
        let host = host_of(&model, &truth);
        SimClock { model, truth, host }
    }

    fn model(&self) -> std::sync::MutexGuard<'_, ClockModel> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for SimClock {
    fn now(&self) -> Duration {
        let t = self.truth.now();
        let Some(host) = &self.host else {
            return Duration::from_nanos(self.model().local_at(t) as u64);
        };
        let mono = {
            let mut m = self.model();
            if !m.host.as_ref().is_some_and(|h| Arc::ptr_eq(h, host)) {
                // A dead process's clock (read on its way out): the node's reading.
                return Duration::from_nanos(m.local_at(t) as u64);
            }
            // As `TokioClock::now`: CLOCK_MONOTONIC (tokio's elapsed time), then suspended
            // time.
            m.begin_read(t)
        };
        let reading = mono + host.base + host.suspended.suspended().as_nanos();
        self.model().end_read(t, reading);
        Duration::from_nanos(reading as u64)
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
    fn the_two_clocks_differ_by_exactly_the_time_slept() {
        let s = 1_000_000_000u128;
        let mut m = ClockModel::new(Duration::from_secs(3), 537, 0);
        m.suspend(2 * s + 123_457);
        m.set_ppm(3 * s + 999, -271);
        m.wake(5 * s + 777_777);
        let slept = eval(&m.segs, 5 * s + 777_777) - eval(&m.awake, 5 * s + 777_777);
        // Not one nanosecond of rounding either way, at any instant, until they change rate
        // together; and none after.
        for k in 0..20_000u128 {
            let t = 5 * s + 777_777 + k * 1_234_567;
            assert_eq!(eval(&m.segs, t) - eval(&m.awake, t), slept, "t={t}");
        }
        m.set_ppm(40 * s + 1, 901);
        for k in 0..2_000u128 {
            let t = 40 * s + k * 7_654_321;
            assert_eq!(eval(&m.segs, t) - eval(&m.awake, t), slept, "t={t}");
        }
        // The stopping clock is still inverted as before: reached only once it runs again.
        let stopped = eval(&m.awake, 2 * s + 123_457);
        assert_eq!(eval(&m.awake, 4 * s), stopped);
        assert_eq!(invert(&m.awake, stopped + 1), 5 * s + 777_778);
    }

    /// Runs `f` on a fresh madsim runtime, with true time counted from its start.
    fn in_sim(f: impl FnOnce(madsim::time::Instant) -> BoxFuture<'static, ()> + Send + 'static) {
        let rt = madsim::runtime::Runtime::with_seed_and_config(1, madsim::Config::default());
        rt.block_on(async move { f(madsim::time::Instant::now()).await });
    }

    fn model(c: ClockModel) -> Arc<Mutex<ClockModel>> {
        Arc::new(Mutex::new(c))
    }

    fn lock(m: &Arc<Mutex<ClockModel>>) -> std::sync::MutexGuard<'_, ClockModel> {
        m.lock().unwrap()
    }

    /// Every local time the model gives maps back to the earliest true time it was reached.
    fn assert_inverts(m: &ClockModel, upto: u128) {
        for k in 0..4_000u128 {
            let t = k * upto / 4_000;
            let l = m.local_at(t);
            let back = m.true_at(l);
            assert!(back <= t, "t={t} local={l} back={back}");
            assert_eq!(m.local_at(back), l, "t={t} back={back}");
            assert!(
                back == 0 || m.local_at(back - 1) < l,
                "not the earliest: t={t} back={back}"
            );
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn composed_reads_are_boottime_exactly_and_preemptions_do_not_move_them() {
        in_sim(|start| {
            Box::pin(async move {
                let m = model(ClockModel::new(Duration::from_secs(7), 733, 0));
                let clock = SimClock::new(m.clone(), start);
                let truth = TrueClock::new(start);
                let boot = |t: u128| eval(&lock(&m).segs, t);
                for step in 0..50u64 {
                    madsim::time::sleep(MS * 13).await;
                    if step == 10 {
                        lock(&m).suspend(truth.now());
                        madsim::time::sleep(MS * 500).await;
                        lock(&m).wake(truth.now());
                    }
                    if step % 7 == 3 {
                        // Longer than the tolerance: the bracket is refused and retried.
                        lock(&m).preempt_next_read(MS * 25);
                    }
                    let (t, r) = (truth.now(), clock.now().as_nanos());
                    assert_eq!(r, boot(t), "step {step}");
                    assert_eq!(lock(&m).local_at(t), r);
                }
                assert!(lock(&m).leads.is_empty());
                // Within the tolerance: accepted at its midpoint, ahead by half the stall.
                lock(&m).preempt_next_read(Duration::from_micros(60));
                let (t, r) = (truth.now(), clock.now().as_nanos());
                let ahead = r - boot(t);
                assert!((30_000..=30_100).contains(&ahead), "ahead by {ahead}");
                assert_eq!(lock(&m).local_at(t), r, "the model records the jump");
                assert_eq!(lock(&m).reads_ahead(), (0, None), "within the tolerance");
                madsim::time::sleep(MS * 40).await;
                let t = truth.now();
                assert_eq!(clock.now().as_nanos(), boot(t) + ahead, "and it stays");
                let model = lock(&m).local_at(t);
                assert_eq!(model, boot(t) + ahead);
                assert_inverts(&lock(&m), truth.now() + 1_000_000_000);
            })
        });
    }

    #[test]
    fn a_read_while_the_host_sleeps_is_not_preempted() {
        // Only the drops of a process killed while its host sleeps read the clock then.
        in_sim(|start| {
            Box::pin(async move {
                let m = model(ClockModel::new(Duration::from_secs(7), 250, 0));
                let clock = SimClock::new(m.clone(), start);
                let truth = TrueClock::new(start);
                let boot = |t: u128| eval(&lock(&m).segs, t);
                madsim::time::sleep(MS * 100).await;
                lock(&m).suspend(truth.now());
                madsim::time::sleep(MS * 300).await;
                lock(&m).preempt_next_read(MS * 30);
                let (t, r) = (truth.now(), clock.now().as_nanos());
                assert_eq!(r, boot(t), "not ahead by the 30 ms the host would sleep through");
                lock(&m).wake(truth.now());
                madsim::time::sleep(MS * 10).await;
                let (t, r) = (truth.now(), clock.now().as_nanos());
                assert_eq!(r, boot(t), "the stall, after the wake, is retried");
                let mm = lock(&m);
                assert!(mm.leads.is_empty(), "{:?}", mm.leads);
                assert_eq!(mm.reads_ahead(), (0, None));
            })
        });
    }

    #[test]
    fn the_old_read_ratchets_and_the_model_follows_it_exactly() {
        in_sim(|start| {
            Box::pin(async move {
                let m = model(ClockModel::new(Duration::from_secs(7), -412, 0).ratcheting_read());
                let clock = SimClock::new(m.clone(), start);
                let truth = TrueClock::new(start);
                let boot = |t: u128| eval(&lock(&m).segs, t);
                let awake = |t: u128| eval(&lock(&m).awake, t);
                madsim::time::sleep(MS * 100).await;
                assert_eq!(clock.now().as_nanos(), boot(truth.now()), "unpreempted, exact");
                lock(&m).preempt_next_read(MS * 25);
                let (t, r) = (truth.now(), clock.now().as_nanos());
                // The stall's length on the host's clock.
                let stall = awake(t + 25_000_000) - awake(t);
                assert_eq!(r, boot(t) + stall, "ahead by the preemption");
                assert_eq!(lock(&m).reads_ahead(), (1, Some((t, stall))), "past the tolerance");
                lock(&m).preempt_next_read(MS * 10);
                madsim::time::sleep(MS * 100).await;
                let t = truth.now();
                assert_eq!(clock.now().as_nanos(), boot(t) + stall, "a shorter one does not add");
                lock(&m).preempt_next_read(MS * 40);
                madsim::time::sleep(MS * 100).await;
                let (t, r) = (truth.now(), clock.now().as_nanos());
                let stall = awake(t + 40_000_000) - awake(t);
                assert_eq!(r, boot(t) + stall, "a longer one moves it on");
                // Another clock of the same processes (a clone) reads the same.
                let again = SimClock::new(m.clone(), start);
                assert_eq!(again.now().as_nanos(), r);
                // A suspension shorter than the lead is absorbed by it; a longer one is counted.
                lock(&m).suspend(truth.now());
                madsim::time::sleep(MS * 20).await;
                lock(&m).wake(truth.now());
                let t = truth.now();
                let slept = boot(t) - awake(t);
                assert_eq!(clock.now().as_nanos(), boot(t) + stall - slept);
                lock(&m).suspend(truth.now());
                madsim::time::sleep(MS * 50).await;
                lock(&m).wake(truth.now());
                madsim::time::sleep(MS * 30).await;
                let t = truth.now();
                assert_eq!(clock.now().as_nanos(), boot(t), "caught up");
                // From there on, a shorter preemption than the longest moves it on again.
                lock(&m).preempt_next_read(MS * 30);
                let (t, r) = (truth.now(), clock.now().as_nanos());
                let stall = awake(t + 30_000_000) - awake(t);
                assert_eq!(r, boot(t) + stall);
                // A new process's clock continues the reading, with a maximum of its own.
                lock(&m).processes_died();
                let fresh = SimClock::new(m.clone(), start);
                madsim::time::sleep(MS * 100).await;
                let t = truth.now();
                assert_eq!(fresh.now().as_nanos(), boot(t) + stall);
                lock(&m).preempt_next_read(MS * 10);
                let (t, r) = (truth.now(), fresh.now().as_nanos());
                let stall = stall + awake(t + 10_000_000) - awake(t);
                assert_eq!(r, boot(t) + stall, "the new process's clock jumps too");
                madsim::time::sleep(MS * 100).await;
                let t = truth.now();
                assert_eq!(fresh.now().as_nanos(), boot(t) + stall);
                // The dead process's clock, were it read, would not move the model.
                assert_eq!(clock.now().as_nanos(), boot(t) + stall);
                let mm = lock(&m);
                assert_eq!(mm.leads.len(), 5, "{:?}", mm.leads);
                assert_inverts(&mm, t + 1_000_000_000);
            })
        });
    }

    #[test]
    fn a_preemption_shifts_the_kernel_reads_after_the_first_one_of_a_read() {
        let mut m = ClockModel::new(Duration::ZERO, 0, 0);
        m.preempt_next_read(MS);
        m.preempt_next_read(Duration::from_micros(10));
        assert_eq!(m.preempt, Some(1_000_000), "the longer one is kept");
        assert_eq!(m.begin_read(5), 5);
        assert_eq!(m.kernel_time(), Some(5), "the first kernel read sees the present");
        assert_eq!(
            m.kernel_time(),
            Some(1_000_005),
            "the rest see the clocks the stall later"
        );
        assert_eq!(m.kernel_time(), Some(1_000_005));
        m.end_read(5, 5);
        assert_eq!(m.kernel_time(), None, "outside a composed read: the present");
        m.begin_read(9);
        assert_eq!((m.kernel_time(), m.kernel_time()), (Some(9), Some(9)), "not preempted");
        assert_eq!(m.preempt, None);
    }

    /// Two hosts up for different times, their wall clocks set alike, read one wall time (as
    /// two real machines synchronised by NTP do), whatever their monotonic clocks read; an
    /// offset shows as itself.
    #[test]
    fn wall_clocks_do_not_depend_on_the_monotonic_origin() {
        let a = ClockModel::new(Duration::from_secs(955), 0, 0);
        let b = ClockModel::new(Duration::from_secs(295), 0, 0);
        let c = ClockModel::new(Duration::from_secs(17), 0, 250_000_000);
        let t = 3_000_000_000;
        assert_ne!(a.local_at(t), b.local_at(t));
        assert_eq!(a.wall_at(t), b.wall_at(t));
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(WALL_EPOCH_SECS);
        assert_eq!(a.wall_at(t), epoch + Duration::from_secs(3));
        assert_eq!(
            c.wall_at(t).duration_since(a.wall_at(t)).unwrap(),
            Duration::from_millis(250)
        );
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
