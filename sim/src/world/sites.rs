//! The library's fault sites (BUGGIFY) and its coverage probe, as one run uses them: which
//! sites are on (drawn from the seed, or named by the file), their switch, and what the
//! agents report through them (a firing goes into the trace, a probe into the coverage).

use super::World;
use crate::coverage::Coverage;
use crate::faults::Action;
use crate::scenario::Scenario;
use crate::seeds::mix;
use leasehold::fault_sites::{FaultSites, Site, SiteEvent};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Keeps the sites' draw apart from the nemesis's and the swarm's streams of the same seed.
const STREAM: u64 = 0x5349_5445_5300_0001;

/// The fault sites of one run.
pub(crate) struct SitePlan {
    /// The sites that are on.
    pub on: Vec<Site>,
    /// How often a site that is on fires.
    pub fire: f64,
    /// Cleared when the random faults stop: no site fires in the calm tail.
    pub armed: Arc<AtomicBool>,
}

impl SitePlan {
    /// The sites seed `seed` of `scn` runs with (`None`: the file turns none on).
    pub(crate) fn of(scn: &Scenario, seed: u64) -> Option<SitePlan> {
        let spec = scn.faults.sites.as_ref()?;
        let on = match (&spec.on, spec.enable) {
            (Some(names), _) => names.iter().filter_map(|n| Site::from_name(n)).collect(),
            (None, Some(p)) => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed ^ STREAM);
                Site::ALL
                    .into_iter()
                    .filter(|_| rng.gen_bool(p.clamp(0.0, 1.0)))
                    .collect()
            }
            (None, None) => Vec::new(),
        };
        Some(SitePlan {
            on,
            fire: spec.fire,
            armed: Arc::new(AtomicBool::new(true)),
        })
    }

    /// For the trace: which sites are on.
    pub(crate) fn describe(&self) -> String {
        let names: Vec<&str> = self.on.iter().map(|s| s.name()).collect();
        let on = if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        };
        format!("fault sites on: {on} (fire {})", self.fire)
    }
}

/// Coverage of a run of `scn`, if it asks for it.
pub(crate) fn coverage(scn: &Scenario, drift_ppm: &[i64]) -> Option<Coverage> {
    if !scn.coverage {
        return None;
    }
    let n = scn.sim_nodes().len();
    let skewed: Vec<bool> = (0..n)
        .map(|i| {
            scn.node.get(i).is_some_and(|s| {
                s.cluster_size.is_some() || s.lease.is_some() || s.beat.is_some() || s.max_drift_ppm.is_some()
            })
        })
        .collect();
    Some(Coverage::new(&skewed, &drift_ppm[..n.min(drift_ppm.len())]))
}

/// The kind of a fault action, for coverage: its variant's name.
fn kind(a: &Action) -> &'static str {
    match a {
        Action::Partition { .. } | Action::IsolateLeader { .. } | Action::Bridge { .. } => "partition",
        Action::Cut(_) | Action::OneWay { .. } => "cut",
        Action::Heal => "heal",
        Action::Kill(_) => "kill",
        Action::Restart(_) => "restart",
        Action::Pause(_) | Action::Resume(_) => "pause",
        Action::Stop(_) => "stop",
        Action::Suspend(_) | Action::Wake(_) | Action::Freeze(_) => "suspend",
        Action::ClockStep(..) => "clock_step",
        Action::Drift(..) => "drift",
        Action::Loss(_) | Action::Latency(_) => "network",
        Action::WipeState(_) | Action::RollbackState(..) | Action::CorruptState(_) => "state_loss",
        Action::Clone(_) => "clone",
        Action::Replay(..) => "replay",
        Action::SlowConsumer(..) => "slow_consumer",
        Action::Forge(_) => "forge",
        Action::ServerDown(..) | Action::FreezeConnection(..) => "server",
        Action::Congest(..) => "congest",
        Action::Lag(..) => "lag",
        Action::Preempt(..) => "preempt",
        Action::Resign(_) | Action::Campaign(_) => "steer",
        _ => "other",
    }
}

impl World {
    /// The fault sites (and coverage probe) for an agent of node `i` whose jitter seed is
    /// `seed`; `None` when the run has neither.
    pub(super) fn fault_sites(self: &Arc<Self>, i: usize, seed: u64) -> Option<FaultSites> {
        if self.sites.is_none() && !self.scn.coverage {
            return None;
        }
        let (on, fire, armed) = match &self.sites {
            Some(p) => (p.on.clone(), p.fire, p.armed.clone()),
            None => (Vec::new(), 0.0, Arc::new(AtomicBool::new(false))),
        };
        let w = self.clone();
        let sites = FaultSites::new(on, fire, mix(seed, STREAM, i as u64), armed)
            .with_observer(Arc::new(move |_local, ev| w.site_event(i, ev)));
        Some(sites)
    }

    /// What an agent of node `i` reported through its fault sites.
    fn site_event(&self, i: usize, ev: SiteEvent) {
        match ev {
            SiteEvent::Fired(site, delay) => {
                let words = delay
                    .map(|d| format!(" for {}", crate::oracle::secs(d.as_nanos())))
                    .unwrap_or_default();
                self.trace(Some(i), format!("fault site {} fired{words}", site.name()));
                // A delay stalls the agent's loop (a late timer, a pause before a message, a
                // save): its reports wait meanwhile.
                if let Some(d) = delay {
                    let now = crate::clock::true_now(self.start);
                    let mut st = self.lock();
                    // What ran out before the stall is judged; the stall excuses the rest.
                    self.lapses(&mut st, i, now);
                    st.conduct.busy(i, now, now.saturating_add(d.as_nanos()));
                }
            }
            SiteEvent::Probe(p) => {
                if let Some(c) = self.lock().coverage.as_mut() {
                    c.probe(i, p);
                }
            }
        }
    }

    /// A fault was applied: coverage notes its kind.
    pub(super) fn cover_fault(&self, a: &Action) {
        let mut st = self.lock();
        let Some(c) = st.coverage.as_mut() else { return };
        let down = matches!(a, Action::Kill(_) | Action::Stop(_));
        let clock = match a {
            Action::Drift(_, ppm) => Some(Some(*ppm)),
            Action::ClockStep(..) => Some(None),
            _ => None,
        };
        c.fault(kind(a), a.node(), down, clock);
    }

    /// The random faults have stopped: so do the fault sites.
    pub(crate) fn disarm_sites(&self) {
        if let Some(p) = &self.sites {
            if p.armed.swap(false, Ordering::Relaxed) {
                self.trace(None, "fault sites disarmed".into());
            }
        }
    }

    /// The coverage features reached (empty unless the run collects them).
    pub(crate) fn take_coverage(&self) -> Vec<u64> {
        self.lock()
            .coverage
            .take()
            .map(|c| c.features().iter().copied().collect())
            .unwrap_or_default()
    }
}
