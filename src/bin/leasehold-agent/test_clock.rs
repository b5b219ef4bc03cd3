//! Test only: a clock the runner of `leasehold-sim real` drives, so that a real agent gets
//! the clock faults of a scenario (drift, wall-clock offsets and steps) and the runner knows
//! its local↔true mapping exactly.
//!
//! The monotonic reading is a piecewise-linear function of the host's `CLOCK_MONOTONIC`
//! (true time for every process on the host); the wall reading is the wall clock at start
//! plus the monotonic reading plus an offset. The runner appends changes to a control file,
//! one per line (`ppm <rate error>` or `wall <offset ns>`); the agent reads the file every
//! 10 ms, applies each new line once, at the moment it reads it, and prints a `clock` event
//! with that moment in true and local time. Those events are the mapping the runner uses.
//!
//! (libfaketime was measured as the first choice: it does move `CLOCK_MONOTONIC` and scales
//! sleeps, but its offset moves the monotonic clock with the wall clock, so a wall-clock step
//! cannot be made alone, and its rate counts from a start inside each process that the
//! runner cannot read, so the mapping would not be exact.)

use leasehold::{BoxFuture, Clock};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// The host's `CLOCK_MONOTONIC`, in ns: true time for every process on this host.
pub(crate) fn true_ns() -> u128 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128
}

/// One applied change: from true time `true0` on, local time runs at `1 + ppm/10⁶` from
/// `local0`, and the wall clock is offset by `wall_offset`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segment {
    pub(crate) true0: u128,
    pub(crate) local0: u128,
    pub(crate) ppm: i64,
    pub(crate) wall_offset: i128,
}

impl Segment {
    fn local_at(&self, t: u128) -> u128 {
        let dt = t.saturating_sub(self.true0) as i128;
        (self.local0 as i128 + dt * (1_000_000 + i128::from(self.ppm)) / 1_000_000).max(0) as u128
    }
}

struct State {
    seg: Segment,
    applied_lines: usize,
}

/// The runner-driven clock.
#[derive(Clone)]
pub(crate) struct TestClock {
    state: Arc<Mutex<State>>,
    wall0: SystemTime,
    file: PathBuf,
}

impl TestClock {
    /// A clock reading 0 now, with the changes already in `file` applied.
    pub(crate) fn new(file: PathBuf) -> (Self, Vec<Segment>) {
        let c = TestClock {
            state: Arc::new(Mutex::new(State {
                seg: Segment {
                    true0: true_ns(),
                    local0: 0,
                    ppm: 0,
                    wall_offset: 0,
                },
                applied_lines: 0,
            })),
            wall0: SystemTime::now(),
            file,
        };
        let first = c.poll();
        let seg = c.lock().seg;
        (c, if first.is_empty() { vec![seg] } else { first })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies the lines of the control file not applied yet; returns the new segments.
    pub(crate) fn poll(&self) -> Vec<Segment> {
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        let mut g = self.lock();
        let mut out = Vec::new();
        // Only whole lines: the runner may be writing the last one.
        let lines: Vec<&str> = text.split_inclusive('\n').filter(|l| l.ends_with('\n')).collect();
        for line in lines.iter().skip(g.applied_lines) {
            let now = true_ns();
            let mut seg = Segment {
                true0: now,
                local0: g.seg.local_at(now),
                ..g.seg
            };
            let mut words = line.split_whitespace();
            match (words.next(), words.next().and_then(|v| v.parse::<i128>().ok())) {
                (Some("ppm"), Some(p)) if p.abs() < 1_000_000 => seg.ppm = p as i64,
                (Some("wall"), Some(w)) => seg.wall_offset = w,
                _ => eprintln!("warning: test clock: ignoring line {line:?}"),
            }
            g.seg = seg;
            out.push(seg);
        }
        g.applied_lines = lines.len();
        out
    }
}

impl Clock for TestClock {
    fn now(&self) -> Duration {
        let local = self.lock().seg.local_at(true_ns());
        Duration::from_nanos(u64::try_from(local).unwrap_or(u64::MAX))
    }

    fn wall(&self) -> SystemTime {
        let (local, offset) = {
            let g = self.lock();
            (g.seg.local_at(true_ns()), g.seg.wall_offset)
        };
        let ns = local as i128 + offset;
        let d = Duration::from_nanos(ns.unsigned_abs().min(u128::from(u64::MAX)) as u64);
        if ns >= 0 {
            self.wall0 + d
        } else {
            self.wall0 - d
        }
    }

    fn sleep_until(&self, deadline: Duration) -> BoxFuture<'static, ()> {
        let this = self.clone();
        Box::pin(async move {
            // The rate may change while asleep: never sleep long, re-read on waking.
            loop {
                let now = this.now();
                if now >= deadline {
                    return;
                }
                let left = (deadline - now).min(Duration::from_millis(50));
                tokio::time::sleep(left).await;
            }
        })
    }
}
