//! Fault sites: places in the agent's driver where production can legitimately be slow or
//! odd, made to misbehave on purpose by the simulator (FoundationDB's BUGGIFY).
//!
//! Compiled only with the `fault-sites` feature, which only `leasehold-sim` turns on: a
//! production build (`features = ["nats"]`, or `leasehold-agent` built as the README says) has
//! none of this code, and CI checks the agent binary for it. Each site is switched on for a
//! whole run by the simulator, from its seed, and then fires at random each time the driver
//! passes it (probability `fire`, times the site's rarity below: the driver passes a timer
//! or a message far more often than a save), while the simulator keeps the sites armed (it disarms them
//! for the calm tail at the end of a run). What a site does is something the algorithm must
//! tolerate anyway:
//!
//! | site | where | rarity | what it does |
//! |---|---|---|---|
//! | `slow_save` | before a durable save | 1 | the save takes 1–300 ms longer (a slow disk, fsync) |
//! | `late_timer` | when the machine's timer fires | 1/10 | it is handled 1–150 ms late (a loaded host) |
//! | `double_reply` | a reply to a lease request or recovery question | 1 | it is published twice |
//! | `long_pause` | before a message is handled | 1/50 | the process stalls 50 ms–1.5 s first (a GC pause) |
//!
//! The same object carries the simulator's coverage probe: after every step the driver
//! reports the election machine's abstract state ([`Probe`]).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Text that every binary whose driver has the fault sites compiled in carries (the driver
/// holds on to it): CI looks for it in `leasehold-sim` and must not find it in a production
/// `leasehold-agent`.
pub const COMPILED_IN: &str = "leasehold fault sites compiled in";

/// One fault site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Site {
    /// A durable save takes long.
    SlowSave,
    /// The machine's timer is handled late.
    LateTimer,
    /// A reply (lease grant or refusal, recovery answer) is published twice.
    DoubleReply,
    /// The process stalls before handling a message.
    LongPause,
}

impl Site {
    /// Every site.
    pub const ALL: [Site; 4] = [Site::SlowSave, Site::LateTimer, Site::DoubleReply, Site::LongPause];

    /// The site's name in scenario files and traces.
    pub fn name(self) -> &'static str {
        match self {
            Site::SlowSave => "slow_save",
            Site::LateTimer => "late_timer",
            Site::DoubleReply => "double_reply",
            Site::LongPause => "long_pause",
        }
    }

    /// The site named `name`.
    pub fn from_name(name: &str) -> Option<Site> {
        Site::ALL.into_iter().find(|s| s.name() == name)
    }

    /// How much rarer than `fire` this site fires, by how often the driver passes it: a save
    /// or a reply is rare, a timer a few times a beat, a message tens of times a second.
    fn rarity(self) -> f64 {
        match self {
            Site::SlowSave | Site::DoubleReply => 1.0,
            Site::LateTimer => 0.1,
            Site::LongPause => 0.02,
        }
    }

    /// How long a firing of this site delays the driver, in ms (`None`: it delays nothing).
    fn delay_ms(self) -> Option<(u64, u64)> {
        match self {
            Site::SlowSave => Some((1, 300)),
            Site::LateTimer => Some((1, 150)),
            Site::DoubleReply => None,
            Site::LongPause => Some((50, 1500)),
        }
    }
}

/// What an election machine is doing, abstracted for coverage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Role {
    /// Neither holding nor campaigning.
    #[default]
    Follower,
    /// A campaign is under way.
    Candidate,
    /// Holds a lease.
    Leader,
    /// Still waits to learn the highest token from its peers (or sits out its quarantine).
    Waiting,
    /// Resigned: grants and beats, never campaigns.
    Passive,
}

/// An election machine's abstract state after one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Probe {
    /// What it is doing.
    pub role: Role,
    /// It has promised a lease to another agent, and the promise stands.
    pub promised: bool,
    /// Its connection to the server is down.
    pub disconnected: bool,
    /// It has heard another process with its ID.
    pub duplicate: bool,
    /// It has heard peers with other settings or another cluster size.
    pub mismatched: bool,
}

/// What the driver reports to the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteEvent {
    /// A site fired (with the delay it caused, if any).
    Fired(Site, Option<Duration>),
    /// The machine's abstract state after a step (reported only when it changed).
    Probe(Probe),
}

/// A function that sees every [`SiteEvent`] with the agent's monotonic time.
pub type SiteObserver = Arc<dyn Fn(Duration, SiteEvent) + Send + Sync>;

/// The fault sites of one agent run: which are on, how often they fire, and whether they
/// are armed.
pub struct FaultSites {
    on: BTreeSet<Site>,
    fire: f64,
    rng: Mutex<ChaCha8Rng>,
    armed: Arc<AtomicBool>,
    observer: Option<SiteObserver>,
    last_probe: Mutex<Option<Probe>>,
}

impl std::fmt::Debug for FaultSites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultSites")
            .field("on", &self.on)
            .field("fire", &self.fire)
            .field("armed", &self.armed.load(Ordering::Relaxed))
            .finish()
    }
}

impl FaultSites {
    /// Sites `on`, each firing with probability `fire` (clamped to 0..=1) when passed, drawn
    /// from a stream seeded with `seed`; armed until `armed` is set to false.
    pub fn new(on: impl IntoIterator<Item = Site>, fire: f64, seed: u64, armed: Arc<AtomicBool>) -> Self {
        FaultSites {
            on: on.into_iter().collect(),
            fire: if fire.is_finite() { fire.clamp(0.0, 1.0) } else { 0.0 },
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            armed,
            observer: None,
            last_probe: Mutex::new(None),
        }
    }

    /// Reports every firing and every change of the machine's abstract state to `observe`.
    pub fn with_observer(mut self, observe: SiteObserver) -> Self {
        self.observer = Some(observe);
        self
    }

    /// Whether `site` fires now (and tells the observer if it does, with `delay`).
    fn fires(&self, now: Duration, site: Site) -> Option<Option<Duration>> {
        if !self.on.contains(&site) || !self.armed.load(Ordering::Relaxed) {
            return None;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        if !rng.gen_bool(self.fire * site.rarity()) {
            return None;
        }
        let delay = site
            .delay_ms()
            .map(|(lo, hi)| Duration::from_millis(rng.gen_range(lo..=hi)));
        drop(rng);
        if let Some(o) = &self.observer {
            o(now, SiteEvent::Fired(site, delay));
        }
        Some(delay)
    }

    /// How long `site` delays the driver now (`None`: it does not fire, or delays nothing).
    pub(crate) fn delay(&self, now: Duration, site: Site) -> Option<Duration> {
        self.fires(now, site).flatten()
    }

    /// Whether `site` fires now.
    pub(crate) fn fired(&self, now: Duration, site: Site) -> bool {
        self.fires(now, site).is_some()
    }

    /// Reports the machine's abstract state if it changed since the last report.
    pub(crate) fn probe(&self, now: Duration, p: Probe) {
        let Some(o) = &self.observer else { return };
        let mut last = self.last_probe.lock().unwrap_or_else(|e| e.into_inner());
        if *last != Some(p) {
            *last = Some(p);
            drop(last);
            o(now, SiteEvent::Probe(p));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites(on: &[Site], fire: f64) -> (FaultSites, Arc<AtomicBool>, Arc<Mutex<Vec<SiteEvent>>>) {
        let armed = Arc::new(AtomicBool::new(true));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let f = FaultSites::new(on.iter().copied(), fire, 7, armed.clone())
            .with_observer(Arc::new(move |_, ev| s.lock().unwrap().push(ev)));
        (f, armed, seen)
    }

    #[test]
    fn a_site_fires_only_while_on_and_armed() {
        let (f, armed, seen) = sites(&[Site::SlowSave, Site::DoubleReply], 1.0);
        let now = Duration::ZERO;
        let d = f.delay(now, Site::SlowSave).expect("on, armed, fire 1: fires");
        assert!((1..=300).contains(&(d.as_millis() as u64)), "{d:?}");
        assert!(f.fired(now, Site::DoubleReply));
        assert!(!f.fired(now, Site::LongPause), "not on");
        armed.store(false, Ordering::Relaxed);
        assert!(f.delay(now, Site::SlowSave).is_none(), "disarmed");
        assert_eq!(seen.lock().unwrap().len(), 2, "each firing reported once");
    }

    #[test]
    fn fire_zero_never_fires_and_a_rare_site_fires_at_its_rate() {
        let (f, _, _) = sites(&Site::ALL, 0.0);
        assert!((0..1000).all(|_| !f.fired(Duration::ZERO, Site::SlowSave)));
        let (f, _, _) = sites(&Site::ALL, 1.0);
        let n = (0..10_000).filter(|_| f.fired(Duration::ZERO, Site::LongPause)).count();
        assert!((100..=300).contains(&n), "1/50 of 10000 passes: {n}");
    }

    #[test]
    fn the_same_seed_fires_the_same_way() {
        let draw = || {
            let (f, _, _) = sites(&Site::ALL, 0.5);
            (0..200)
                .map(|_| f.delay(Duration::ZERO, Site::SlowSave))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(), draw());
    }

    #[test]
    fn a_probe_is_reported_only_when_it_changed() {
        let (f, _, seen) = sites(&[], 0.0);
        let leader = Probe {
            role: Role::Leader,
            ..Probe::default()
        };
        f.probe(Duration::ZERO, Probe::default());
        f.probe(Duration::ZERO, Probe::default());
        f.probe(Duration::ZERO, leader);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![SiteEvent::Probe(Probe::default()), SiteEvent::Probe(leader)]
        );
    }

    #[test]
    fn every_site_is_found_by_its_name() {
        for s in Site::ALL {
            assert_eq!(Site::from_name(s.name()), Some(s));
        }
        assert_eq!(Site::from_name("slow"), None);
    }
}
