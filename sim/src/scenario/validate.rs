//! What a scenario must satisfy beyond its syntax: sane values, known nodes and datacenters,
//! and a timeline that can happen (a node is killed before it restarts, and so on). Every
//! error names the file, the line and the key.

use super::duration::text;
use super::error::line_of_key;
use super::{Scenario, ScenarioError, SimNode, Step};
use leasehold::Algorithm;
use std::time::Duration;

/// How far back a replay may reach (the fabric keeps this much of each node's publishes).
pub const MAX_REPLAY_WINDOW: Duration = Duration::from_secs(60);

/// The longest slow link (`lag`), each way: a real NATS route pings every second and closes
/// at the third unanswered ping, which a round trip of twice this still answers in time.
const MAX_LAG: Duration = Duration::from_secs(1);

/// Builds errors located in one file's text.
struct Errors<'a> {
    file: &'a str,
    text: &'a str,
}

impl Errors<'_> {
    fn at(&self, key: &str, message: String) -> ScenarioError {
        ScenarioError {
            file: self.file.to_string(),
            line: line_of_key(self.text, key),
            key: Some(key.to_string()),
            message,
        }
    }
}

impl Scenario {
    /// Checks everything the types cannot; `text` is the file's text, for error lines.
    pub(super) fn validate(&self, file: &str, text: &str) -> Result<(), ScenarioError> {
        let e = Errors { file, text };
        let nodes = self.check_nodes(&e)?;
        self.check_run(&e)?;
        self.check_datacenters(&e, &nodes)?;
        self.check_timeline(&e, &nodes)
    }

    fn check_nodes(&self, e: &Errors<'_>) -> Result<Vec<SimNode>, ScenarioError> {
        if self.nodes.is_some() && !self.node.is_empty() {
            return Err(e.at("nodes", "give either `nodes` or [[node]] tables, not both".into()));
        }
        let nodes = self.sim_nodes();
        if nodes.is_empty() || nodes.len() > 64 {
            return Err(e.at("nodes", format!("{} nodes: must be 1 to 64", nodes.len())));
        }
        let mut ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(e.at("id", "node ids must be unique".into()));
        }
        Ok(nodes)
    }

    /// The run's settings, checked in this order: the first error found is the one reported.
    fn check_run(&self, e: &Errors<'_>) -> Result<(), ScenarioError> {
        self.check_length(e)?;
        self.check_network_and_node_tables(e)?;
        self.check_simulator_limits(e)?;
        self.check_algorithm_and_workload(e)?;
        self.check_fault_values(e)
    }

    /// The run's length, the bounds it expects, and whether its random faults have time to
    /// happen.
    fn check_length(&self, e: &Errors<'_>) -> Result<(), ScenarioError> {
        if self.seeds == 0 {
            return Err(e.at("seeds", "must be at least 1".into()));
        }
        if self.duration.0.is_zero() {
            return Err(e.at("duration", "must be positive".into()));
        }
        if self.expect.leader_within.is_some_and(|d| d.0.is_zero()) {
            return Err(e.at(
                "expect.leader_within",
                "must be positive: no cluster elects a leader in no time".into(),
            ));
        }
        if self.expect.max_gap.is_some_and(|d| d.0.is_zero()) {
            return Err(e.at("expect.max_gap", "must be positive: no failover takes no time".into()));
        }
        let classes = self.faults.classes();
        if !classes.is_empty() && self.faults_end().is_zero() {
            let (key, why) = match self.faults.quiet {
                Some(q) => ("faults.quiet", text(q.0)),
                None => (
                    "duration",
                    format!(
                        "the default quiet time, twice expect.leader_within = {}",
                        text(self.leader_within() * 2)
                    ),
                ),
            };
            return Err(e.at(
                key,
                format!(
                    "random faults ({}) stop {why} before the end, and the run lasts {}: none would happen; \
                     lengthen `duration` or shorten `quiet`",
                    classes.join(", "),
                    text(self.duration.0)
                ),
            ));
        }
        Ok(())
    }

    /// The network's probabilities and each `[[node]]` table's settings.
    fn check_network_and_node_tables(&self, e: &Errors<'_>) -> Result<(), ScenarioError> {
        if !(0.0..=1.0).contains(&self.network.loss) {
            return Err(e.at("loss", format!("{} is not a probability", self.network.loss)));
        }
        if !(0.0..=1.0).contains(&self.network.duplicate) {
            return Err(e.at("duplicate", format!("{} is not a probability", self.network.duplicate)));
        }
        for (i, n) in self.node.iter().enumerate() {
            let cfg = self.node_cfg(i);
            if n.cluster_size == Some(0) {
                return Err(e.at("cluster_size", "must be at least 1".into()));
            }
            if n.drift_ppm.is_some_and(|p| p.unsigned_abs() >= 100_000) {
                return Err(e.at("drift_ppm", "must be within ±100000 ppm".into()));
            }
            if n.max_drift_ppm.is_some_and(|p| p >= 100_000) {
                return Err(e.at("max_drift_ppm", "must be below 100000 (10%)".into()));
            }
            if cfg.algorithm == Algorithm::Lease
                && (n.lease.is_some() || n.beat.is_some())
                && cfg.lease_time < cfg.beat * 4
            {
                return Err(e.at("lease", format!("node {i}: lease must be at least 4 beats")));
            }
        }
        Ok(())
    }

    /// What the simulator can play: ticks long enough, replays within its window. (Any
    /// latency, down to zero, is played exactly.)
    fn check_simulator_limits(&self, e: &Errors<'_>) -> Result<(), ScenarioError> {
        // A route stopped for good is closed and dialled again once per redial delay: a shorter
        // one than nats-server's retry would only cost simulation steps.
        if self.network.route_redial.lo < Duration::from_millis(100) {
            return Err(e.at(
                "route_redial",
                format!(
                    "{:?} is too short: nats-server dials a closed route again after a second; at least 100ms",
                    self.network.route_redial.lo
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.network.route_collide) {
            return Err(e.at(
                "route_collide",
                format!("{} is not a probability", self.network.route_collide),
            ));
        }
        if self.network.pending_msgs == 0 {
            return Err(e.at(
                "pending_msgs",
                "0 would drop every message of a slow consumer: at least 1".into(),
            ));
        }
        if let Some(t) = self.network.tick {
            if t.0.as_nanos() < crate::quantum::MIN_TICK_NS {
                return Err(e.at(
                    "tick",
                    format!(
                        "{:?} is too short: a tick holds its arrivals and its steps, at least {:?}",
                        t.0,
                        Duration::from_nanos(crate::quantum::MIN_TICK_NS as u64)
                    ),
                ));
            }
        }
        let windows = self
            .faults
            .replay
            .iter()
            .map(|r| r.delay.hi)
            .chain(self.at.iter().filter_map(|a| match &a.step {
                Step::Replay(r) => Some(r.window.0),
                _ => None,
            }));
        if windows.into_iter().any(|w| w > MAX_REPLAY_WINDOW) {
            return Err(e.at(
                "delay",
                format!("replays reach back at most {}s", MAX_REPLAY_WINDOW.as_secs()),
            ));
        }
        Ok(())
    }

    /// The algorithm's timing, and the features that need the `lease` algorithm or the fenced
    /// store.
    fn check_algorithm_and_workload(&self, e: &Errors<'_>) -> Result<(), ScenarioError> {
        let cfg = self.membership_cfg();
        if cfg.algorithm == Algorithm::Lease && cfg.lease_time < cfg.beat * 4 {
            return Err(e.at("lease", "must be at least 4 beats".into()));
        }
        if self.faults.impostor.is_some() && self.algorithm != Algorithm::Lease {
            return Err(e.at(
                "impostor",
                "the impostor forges lease messages: use algorithm = \"lease\"".into(),
            ));
        }
        if self.membership.bug.is_some() && self.algorithm != Algorithm::Lease {
            return Err(e.at("bug", "bug knobs plant bugs in the lease algorithm only".into()));
        }
        if self.expect.beliefs_may_overlap && !self.workload.fenced_store {
            return Err(e.at(
                "beliefs_may_overlap",
                "judging by effects needs a fenced store: set [workload] fenced_store = true".into(),
            ));
        }
        if !self.workload.store_checks_tokens && !self.workload.fenced_store {
            return Err(e.at(
                "store_checks_tokens",
                "there is no store: set [workload] fenced_store = true".into(),
            ));
        }
        if self.workload.fenced_store && !self.workload.application.guard() {
            return Err(e.at(
                "application",
                "the fenced store's writer is the guard application: use \"guard\" or \"both\"".into(),
            ));
        }
        if self.workload.fenced_store && self.algorithm != Algorithm::Lease {
            return Err(e.at(
                "fenced_store",
                "the fenced store takes fencing tokens: use algorithm = \"lease\"".into(),
            ));
        }
        if let Some(f) = self.membership.state_loss_tolerance {
            let n = self.sim_nodes().len();
            if f > n / 2 {
                return Err(e.at(
                    "state_loss_tolerance",
                    format!("{f} is more than half the {n} nodes: a restart could never gather enough answers"),
                ));
            }
        }
        Ok(())
    }

    /// The values of the fault classes that have bounds of their own.
    fn check_fault_values(&self, e: &Errors<'_>) -> Result<(), ScenarioError> {
        if let Some(p) = &self.faults.preempt {
            if p.every.0.is_zero() || p.max.0.is_zero() {
                return Err(e.at("preempt", "`every` and `max` must be positive".into()));
            }
        }
        if let Some(c) = &self.faults.congest {
            if c.every.0.is_zero() || c.delay.lo.is_zero() || c.lasts.lo.is_zero() {
                return Err(e.at("congest", "`every`, `delay` and `for` must be positive".into()));
            }
        }
        if let Some(l) = &self.faults.lag {
            if l.every.0.is_zero() || l.latency.lo.is_zero() || l.lasts.lo.is_zero() {
                return Err(e.at("lag", "`every`, `latency` and `for` must be positive".into()));
            }
            self.check_lag(e, l.latency.hi)?;
        }
        if let Some(st) = &self.faults.sites {
            let p = |x: f64| (0.0..=1.0).contains(&x);
            match (&st.enable, &st.on) {
                (Some(x), None) if !p(*x) => return Err(e.at("enable", format!("{x} is not a probability"))),
                (Some(_), None) => {}
                (None, Some(names)) => {
                    if let Some(bad) = names
                        .iter()
                        .find(|n| leasehold::fault_sites::Site::from_name(n).is_none())
                    {
                        let all: Vec<&str> = leasehold::fault_sites::Site::ALL.iter().map(|s| s.name()).collect();
                        return Err(e.at(
                            "on",
                            format!("unknown fault site {bad:?} (expected one of {})", all.join(", ")),
                        ));
                    }
                }
                _ => {
                    return Err(e.at(
                        "sites",
                        "give exactly one of `enable` (a probability) and `on` (site names)".into(),
                    ))
                }
            }
            if !p(st.fire) {
                return Err(e.at("fire", format!("{} is not a probability", st.fire)));
            }
        }
        if let Some(f) = self.faults.loss_spike.as_ref().map(|s| s.loss) {
            if !(0.0..=1.0).contains(&f) {
                return Err(e.at("loss", format!("{f} is not a probability")));
            }
        }
        Ok(())
    }

    fn check_datacenters(&self, e: &Errors<'_>, nodes: &[SimNode]) -> Result<(), ScenarioError> {
        let dcs: Vec<&str> = nodes.iter().map(|n| n.datacenter.as_str()).collect();
        for l in &self.network.dc_link {
            for dc in [&l.between.0, &l.between.1] {
                if !dcs.contains(&dc.as_str()) {
                    return Err(e.at("between", format!("no node is in datacenter {dc:?}")));
                }
            }
        }
        if let Some(r) = &self.router {
            if r.clients == 0 || r.clients > 1000 {
                return Err(e.at("clients", format!("{} clients: must be 1 to 1000", r.clients)));
            }
            if let Some(dc) = &r.datacenter {
                if !dcs.contains(&dc.as_str()) {
                    return Err(e.at("datacenter", format!("no node is in datacenter {dc:?}")));
                }
            }
        }
        Ok(())
    }

    /// A slow link the simulator models faithfully: at most [`MAX_LAG`] each way (real NATS
    /// routes ping every second and close at the third unanswered ping; the simulated routes
    /// do not close for a lag), not on the tick grid (which fixes every arrival), and not
    /// beside router clients (the routing oracle's distances do not know it).
    fn check_lag(&self, e: &Errors<'_>, latency: Duration) -> Result<(), ScenarioError> {
        let why = if latency > MAX_LAG {
            format!("{latency:?} is more than a slow link can be here ({MAX_LAG:?} each way: longer would close real NATS routes)")
        } else if self.network.tick.is_some() {
            "a slow link is not modelled on the tick grid ([network] tick fixes every arrival)".into()
        } else if self.router.is_some() {
            "a slow link is not modelled beside router clients (the routing oracle judges the configured latencies)"
                .into()
        } else {
            return Ok(());
        };
        Err(e.at("lag", why))
    }

    /// Steps in time order, within the run, naming known nodes, in an order that can happen.
    fn check_timeline(&self, e: &Errors<'_>, nodes: &[SimNode]) -> Result<(), ScenarioError> {
        let mut last = Duration::ZERO;
        let mut life = NodeLife::default();
        for at in &self.at {
            let t = at.time.0;
            if t < last {
                return Err(e.at(
                    "time",
                    format!("[[at]] steps must be in time order ({t:?} after {last:?})"),
                ));
            }
            if t > self.duration.0 {
                return Err(e.at(
                    "time",
                    format!("{t:?} is after the end of the run ({:?})", self.duration.0),
                ));
            }
            last = t;
            let key = at.step.key();
            if let Some(id) = at
                .step
                .nodes()
                .into_iter()
                .find(|id| !nodes.iter().any(|n| n.id == *id))
            {
                return Err(e.at(key, format!("unknown node {id:?}")));
            }
            match &at.step {
                Step::Loss(l) if !(0.0..=1.0).contains(l) => {
                    return Err(e.at("loss", format!("{l} is not a probability")));
                }
                Step::Resize(r) if !(1..=1024).contains(&r.cluster_size) => {
                    return Err(e.at("cluster_size", "a cluster size must be within 1..=1024".into()));
                }
                Step::Resize(_) if self.algorithm != Algorithm::Lease => {
                    return Err(e.at("resize", "resize applies to the lease algorithm".into()));
                }
                Step::Drift(d) if d.ppm.unsigned_abs() >= 100_000 => {
                    return Err(e.at("ppm", "drift must be within ±100000 ppm".into()));
                }
                Step::Preempt(p) if p.by.0.is_zero() => {
                    return Err(e.at(
                        "preempt",
                        "a preemption must last a while: `by` must be positive".into(),
                    ));
                }
                Step::Congest(c) if c.delay.0.is_zero() || c.lasts.is_some_and(|l| l.0.is_zero()) => {
                    return Err(e.at(
                        "congest",
                        "a congestion must slow something: `delay` (and `for`, if given) must be positive".into(),
                    ));
                }
                Step::Lag(l) if l.latency.0.is_zero() || l.lasts.is_some_and(|x| x.0.is_zero()) => {
                    return Err(e.at(
                        "lag",
                        "a slow link must slow something: `latency` (and `for`, if given) must be positive".into(),
                    ));
                }
                Step::Lag(l) => self.check_lag(e, l.latency.0)?,
                Step::FreezeConnection(f) if f.lasts.is_some_and(|l| l.0.is_zero()) => {
                    return Err(e.at(
                        "freeze_connection",
                        "a freeze must last a while: `for` must be positive".into(),
                    ));
                }
                Step::DropMessage(_) | Step::DelayMessage(_) | Step::DuplicateMessage(_)
                    if self.network.tick.is_none() =>
                {
                    return Err(e.at(
                        key,
                        "a message in flight is named on the tick grid: set [network] tick".into(),
                    ));
                }
                Step::DropMessage(m) | Step::DelayMessage(m) | Step::DuplicateMessage(m) if m.from == m.to => {
                    return Err(e.at(key, "a node's messages to itself are not on a route".into()));
                }
                Step::Resign(_) | Step::Campaign(_) if self.algorithm != Algorithm::Lease => {
                    return Err(e.at(key, "only the `lease` algorithm has a lease to resign".into()));
                }
                step => life.apply(step, t).map_err(|m| e.at(key, m))?,
            }
        }
        Ok(())
    }
}

/// Which nodes are down, paused or suspended along a scripted timeline.
#[derive(Default)]
struct NodeLife<'a> {
    down: Vec<&'a str>,
    paused: Vec<&'a str>,
    /// Suspended nodes, and when the plan wakes each (`None`: a `wake` step must).
    suspended: Vec<(&'a str, Option<Duration>)>,
}

impl<'a> NodeLife<'a> {
    fn apply(&mut self, step: &'a Step, t: Duration) -> Result<(), String> {
        self.suspended.retain(|(_, until)| until.is_none_or(|u| u > t));
        let down = |id: &str| self.down.contains(&id);
        let still = |id: &str| self.paused.contains(&id) || self.suspended.iter().any(|(s, _)| *s == id);
        match step {
            Step::Kill(id) => {
                if down(id) {
                    return Err(format!("{id} is already down at {t:?}"));
                }
                self.down.push(id);
                // A kill ends a pause and a suspension.
                self.paused.retain(|d| d != id);
                self.suspended.retain(|(d, _)| d != id);
            }
            Step::Restart(id) => {
                if !down(id) {
                    return Err(format!("{id} is not down at {t:?}: kill or stop it first"));
                }
                self.down.retain(|d| d != id);
            }
            Step::Pause(id)
            | Step::Stop(id)
            | Step::Suspend(super::SuspendAt { node: id, .. })
            | Step::Freeze(super::SuspendAt { node: id, .. })
                if still(id) || down(id) =>
            {
                return Err(format!("{id} is already paused, suspended or down at {t:?}"));
            }
            Step::Pause(id) => self.paused.push(id),
            Step::Stop(id) => self.down.push(id),
            Step::Suspend(s) | Step::Freeze(s) => self.suspended.push((&s.node, s.lasts.map(|d| t + d.0))),
            Step::Resume(id) => {
                if !self.paused.contains(&id.as_str()) {
                    return Err(format!(
                        "{id} is not paused at {t:?} (a suspended node is woken with `wake`)"
                    ));
                }
                self.paused.retain(|d| d != id);
            }
            Step::Wake(id) => {
                if !self.suspended.iter().any(|(s, _)| s == id) {
                    return Err(format!("{id} is not suspended at {t:?}"));
                }
                self.suspended.retain(|(d, _)| d != id);
            }
            Step::WipeState(id)
            | Step::CorruptState(id)
            | Step::RollbackState(super::step::RollbackAt { node: id, .. })
                if !down(id) =>
            {
                return Err(format!(
                    "{id} is not down at {t:?}: its state can change only while it is down (kill it first)"
                ));
            }
            Step::Clone(id) if down(id) => {
                return Err(format!("{id} is down at {t:?}: a clone starts beside a running agent"));
            }
            _ => {}
        }
        Ok(())
    }
}
