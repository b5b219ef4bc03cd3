//! Scenario files: the TOML format of `scenarios/*.toml` (documented key by key in
//! `scenarios/README.md`), parsed with errors that name the file, the line and the key.

use leasehold::{Algorithm, BugKnobs};
use serde::{Deserialize, Deserializer};
use std::path::Path;
use std::time::Duration;

/// A duration written as text (`"100ms"`, `"2s"`, `"1m 30s"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Dur).map_err(serde::de::Error::custom)
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("bad duration {s:?}: {e} (write e.g. \"100ms\", \"2s\")"))
}

/// A range of durations (`"1ms..20ms"`), or one duration (`"5ms"`, meaning `5ms..5ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurRange {
    /// Lowest value.
    pub lo: Duration,
    /// Highest value (inclusive).
    pub hi: Duration,
}

impl DurRange {
    /// A range from `lo` to `hi`.
    pub fn new(lo: Duration, hi: Duration) -> Self {
        DurRange { lo, hi }
    }
}

impl<'de> Deserialize<'de> for DurRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let (lo, hi) = match s.split_once("..") {
            Some((a, b)) => (parse_duration(a), parse_duration(b)),
            None => (parse_duration(&s), parse_duration(&s)),
        };
        let (lo, hi) = (
            lo.map_err(serde::de::Error::custom)?,
            hi.map_err(serde::de::Error::custom)?,
        );
        if lo > hi {
            return Err(serde::de::Error::custom(format!("range {s:?} ends before it starts")));
        }
        Ok(DurRange { lo, hi })
    }
}

/// A planted bug (see [`leasehold::BugKnobs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bug {
    /// Grant right after a restart.
    SkipRestartQuarantine,
    /// Hold for the full promise period.
    IgnoreDrift,
    /// Count the lease from the last grant's arrival.
    LeaseFromGrant,
    /// Grant over an outstanding promise.
    GrantIgnoringPromise,
}

impl Bug {
    /// The knobs that plant this bug.
    pub fn knobs(self) -> BugKnobs {
        let mut k = BugKnobs::default();
        match self {
            Bug::SkipRestartQuarantine => k.skip_restart_quarantine = true,
            Bug::IgnoreDrift => k.ignore_drift = true,
            Bug::LeaseFromGrant => k.lease_from_grant = true,
            Bug::GrantIgnoringPromise => k.grant_ignoring_promise = true,
        }
        k
    }
}

/// `[membership]`: overrides of the agents' configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipSpec {
    /// Heartbeat period (default 100ms).
    pub beat: Option<Dur>,
    /// Lease time (default 10s).
    pub lease: Option<Dur>,
    /// Max clock skew (default 1s).
    pub max_clock_skew: Option<Dur>,
    /// Declared drift bound in ppm (default 1000).
    pub max_drift_ppm: Option<u32>,
    /// A planted bug (known-bad scenarios only).
    pub bug: Option<Bug>,
}

/// `[network]`: the simulated NATS routes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// One-way latency of a route (default `1ms..10ms`).
    #[serde(default = "default_latency")]
    pub latency: DurRange,
    /// Probability that a message on a route is lost (default 0).
    #[serde(default)]
    pub loss: f64,
    /// Let messages of one publisher overtake each other (default false: kept in order).
    #[serde(default)]
    pub reorder: bool,
    /// Latency between two datacenters (instead of `latency`), one `[[network.dc_link]]` each.
    #[serde(default)]
    pub dc_link: Vec<DcLink>,
}

/// `[[network.dc_link]]`: the one-way latency of routes between two datacenters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DcLink {
    /// The two datacenters.
    pub between: (String, String),
    /// One-way latency between them.
    pub latency: DurRange,
}

/// `[router]`: simulated clients, each routing RPCs with a `Router` over the servers (the
/// scenario's nodes), checked by the oracle.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
    /// How many clients.
    pub clients: usize,
    /// The clients' datacenter (default: the first node's).
    pub datacenter: Option<String>,
    /// Each client's RPC period (default 500ms).
    #[serde(default = "default_rpc_every")]
    pub rpc_every: Dur,
    /// Time-out of one RPC or ping (default 200ms).
    #[serde(default = "default_rpc_timeout")]
    pub rpc_timeout: Dur,
    /// Minimum time a client keeps a server before rebalancing (Consul: 120s; default 10s).
    #[serde(default = "default_min_reuse")]
    pub min_reuse: Dur,
    /// How often a client probes one server to update its coordinates (default 200ms).
    #[serde(default = "default_probe_every")]
    pub probe_every: Dur,
}

fn default_rpc_every() -> Dur {
    Dur(Duration::from_millis(500))
}
fn default_rpc_timeout() -> Dur {
    Dur(Duration::from_millis(200))
}
fn default_min_reuse() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_probe_every() -> Dur {
    Dur(Duration::from_millis(200))
}

fn default_latency() -> DurRange {
    DurRange::new(Duration::from_millis(1), Duration::from_millis(10))
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            latency: default_latency(),
            loss: 0.0,
            reorder: false,
            dc_link: Vec::new(),
        }
    }
}

/// `[[node]]`: one agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Its ID (default `n<index>`).
    pub id: Option<String>,
    /// Its rank (default its index).
    pub rank: Option<i64>,
    /// Its datacenter (for the router; default `dc1`).
    pub datacenter: Option<String>,
    /// Its clock's rate error in ppm (default: drawn from `faults.clock_drift`, else 0).
    pub drift_ppm: Option<i64>,
    /// Its wall clock's offset in ms (default: drawn from `faults.clock_offset`, else 0).
    pub wall_offset_ms: Option<i64>,
}

/// Which partition shapes the random nemesis draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionKind {
    /// Two random halves.
    Halves,
    /// A random majority and the minority.
    MajorityMinority,
    /// The current leader alone against the rest.
    IsolateLeader,
    /// Two halves joined only through one bridge node.
    Bridge,
    /// One node hears nobody, everybody hears it.
    OneWay,
}

/// `partition = { every, heal_after, kinds }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionFault {
    /// Mean gap between partitions (each gap drawn from 0.5× to 1.5×).
    pub every: Dur,
    /// How long a partition lasts.
    pub heal_after: DurRange,
    /// Shapes to draw from (default all).
    pub kinds: Option<Vec<PartitionKind>>,
}

/// `restart = { every, down_for }`: kill a node (memory lost), start it again later.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartFault {
    /// Mean gap between kills.
    pub every: Dur,
    /// How long the node stays down.
    pub down_for: DurRange,
}

/// `pause = { every, pause_for }`: stop a process (clocks keep running), resume it later.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseFault {
    /// Mean gap between pauses.
    pub every: Dur,
    /// How long the process stays paused.
    pub pause_for: DurRange,
}

/// `clock_offset = { max }`: every node's wall clock starts offset by up to ±max.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockOffsetFault {
    /// Largest offset.
    pub max: Dur,
}

/// `clock_drift = { max_ppm, every }`: clock rates within ±max_ppm, redrawn for one node at
/// each `every` (if given).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockDriftFault {
    /// Largest rate error, in ppm.
    pub max_ppm: u32,
    /// Mean gap between rate changes.
    pub every: Option<Dur>,
}

/// `clock_step = { every, max }`: NTP-like jumps of one node's wall clock by up to ±max.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockStepFault {
    /// Mean gap between steps.
    pub every: Dur,
    /// Largest step.
    pub max: Dur,
}

/// `loss_spike = { every, lasts, loss }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossSpikeFault {
    /// Mean gap between spikes.
    pub every: Dur,
    /// How long a spike lasts.
    pub lasts: DurRange,
    /// Loss probability during the spike.
    pub loss: f64,
}

/// `latency_spike = { every, lasts, latency }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencySpikeFault {
    /// Mean gap between spikes.
    pub every: Dur,
    /// How long a spike lasts.
    pub lasts: DurRange,
    /// Route latency during the spike.
    pub latency: DurRange,
}

/// `[faults]`: the random nemesis. Every entry is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Network partitions.
    pub partition: Option<PartitionFault>,
    /// Kills and restarts.
    pub restart: Option<RestartFault>,
    /// Process pauses.
    pub pause: Option<PauseFault>,
    /// Initial wall-clock offsets.
    pub clock_offset: Option<ClockOffsetFault>,
    /// Clock rate errors.
    pub clock_drift: Option<ClockDriftFault>,
    /// Wall-clock steps.
    pub clock_step: Option<ClockStepFault>,
    /// Bursts of message loss.
    pub loss_spike: Option<LossSpikeFault>,
    /// Bursts of latency.
    pub latency_spike: Option<LatencySpikeFault>,
    /// Random faults stop this long before the end (default twice `expect.leader_within`).
    pub quiet: Option<Dur>,
}

/// `[[at]]`: one scripted step, at a true simulated time. Exactly one action per step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtSpec {
    /// When, in true simulated time from the start.
    pub time: Dur,
    /// Cut the routes between these groups (nodes not named stay with the first group).
    pub partition: Option<Vec<Vec<String>>>,
    /// Cut the routes from the first node to the second only (added to the cuts in force).
    pub one_way: Option<(String, String)>,
    /// Cut exactly these directed routes `[from, to]` (replacing the cuts in force).
    pub cut: Option<Vec<(String, String)>>,
    /// Set route loss.
    pub loss: Option<f64>,
    /// Set route latency.
    pub latency: Option<DurRange>,
    /// Restore every route.
    #[serde(default)]
    pub heal: bool,
    /// Kill this node (memory lost).
    pub kill: Option<String>,
    /// Start this (killed) node again.
    pub restart: Option<String>,
    /// Pause this node's process.
    pub pause: Option<String>,
    /// Resume this node's process.
    pub resume: Option<String>,
    /// Step a node's wall clock: `{ node = "n0", by = "2s", back = false }`.
    pub clock_step: Option<ClockStepAt>,
    /// Set a node's clock rate error: `{ node = "n0", ppm = -500 }`.
    pub drift: Option<DriftAt>,
}

/// A scripted wall-clock step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockStepAt {
    /// Which node.
    pub node: String,
    /// By how much.
    pub by: Dur,
    /// Step backwards instead of forwards.
    #[serde(default)]
    pub back: bool,
}

/// A scripted drift change.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftAt {
    /// Which node.
    pub node: String,
    /// New rate error in ppm (negative: slow).
    pub ppm: i64,
}

/// `[expect]`: what the run must show.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The oracle must find a violation (known-bad scenarios).
    #[serde(default)]
    pub violation: bool,
    /// A lease is held within this long after the last fault (default lease + max skew + 5 beats).
    pub leader_within: Option<Dur>,
}

/// One scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name (defaults to the file stem).
    #[serde(default)]
    pub name: String,
    /// Election algorithm (default `lease`).
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Number of nodes, when `[[node]]` tables are not given.
    pub nodes: Option<usize>,
    /// Seeds swept by default (default 20).
    #[serde(default = "default_seeds")]
    pub seeds: u64,
    /// The first seed of the sweep (default 0): seeds `first_seed .. first_seed + seeds`.
    #[serde(default)]
    pub first_seed: u64,
    /// Simulated time per seed (default 60s).
    #[serde(default = "default_duration")]
    pub duration: Dur,
    /// Agent configuration overrides.
    #[serde(default)]
    pub membership: MembershipSpec,
    /// Route behaviour.
    #[serde(default)]
    pub network: NetworkSpec,
    /// Explicit nodes.
    #[serde(default)]
    pub node: Vec<NodeSpec>,
    /// The random nemesis.
    #[serde(default)]
    pub faults: FaultSpec,
    /// The scripted timeline.
    #[serde(default)]
    pub at: Vec<AtSpec>,
    /// Expectations.
    #[serde(default)]
    pub expect: Expect,
    /// Router clients (optional).
    pub router: Option<RouterSpec>,
}

fn default_seeds() -> u64 {
    20
}

fn default_duration() -> Dur {
    Dur(Duration::from_secs(60))
}

/// A scenario that cannot be run: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file.
    pub file: String,
    /// 1-based line, if known.
    pub line: Option<usize>,
    /// The key at fault, if known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": key `{k}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ScenarioError {}

/// A node of a resolved scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimNode {
    /// Its ID.
    pub id: String,
    /// Its rank.
    pub rank: i64,
    /// Its datacenter.
    pub datacenter: String,
}

impl Scenario {
    /// Parses a scenario from TOML text; `file` names it in errors and defaults the name.
    pub fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let mut s: Scenario = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|sp| text[..sp.start.min(text.len())].matches('\n').count() + 1);
            let message = e.message().to_string();
            let key = key_of(&message).or_else(|| e.span().map(|sp| key_at(text, sp.start)));
            ScenarioError {
                file: file.to_string(),
                line,
                key,
                message,
            }
        })?;
        if s.name.is_empty() {
            s.name = Path::new(file)
                .file_stem()
                .map(|x| x.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        s.validate(file, text)?;
        Ok(s)
    }

    /// Reads and parses a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: file.clone(),
            line: None,
            key: None,
            message: e.to_string(),
        })?;
        Scenario::parse(&file, &text)
    }

    /// The seeds swept by default.
    pub fn seed_list(&self) -> Vec<u64> {
        (self.first_seed..self.first_seed.saturating_add(self.seeds)).collect()
    }

    /// The nodes, with defaults resolved.
    pub fn sim_nodes(&self) -> Vec<SimNode> {
        if self.node.is_empty() {
            (0..self.nodes.unwrap_or(3))
                .map(|i| SimNode {
                    id: format!("n{i}"),
                    rank: i as i64,
                    datacenter: "dc1".into(),
                })
                .collect()
        } else {
            self.node
                .iter()
                .enumerate()
                .map(|(i, n)| SimNode {
                    id: n.id.clone().unwrap_or_else(|| format!("n{i}")),
                    rank: n.rank.unwrap_or(i as i64),
                    datacenter: n.datacenter.clone().unwrap_or_else(|| "dc1".into()),
                })
                .collect()
        }
    }

    /// The agents' configuration, before the per-node fields.
    pub fn membership_cfg(&self) -> leasehold::MembershipCfg {
        let mut c = leasehold::MembershipCfg::default();
        let m = &self.membership;
        if let Some(d) = m.beat {
            c.beat = d.0;
            c.member_timeout = d.0 * 5;
        }
        if let Some(d) = m.lease {
            c.lease_time = d.0;
        }
        if let Some(d) = m.max_clock_skew {
            c.max_clock_skew = d.0;
        }
        if let Some(p) = m.max_drift_ppm {
            c.max_drift_ppm = p;
        }
        c.algorithm = self.algorithm;
        c.cluster_size = self.sim_nodes().len();
        c.bug_knobs = m.bug.map(Bug::knobs).unwrap_or_default();
        c
    }

    /// How soon after the last fault a lease must be held.
    pub fn leader_within(&self) -> Duration {
        let c = self.membership_cfg();
        self.expect
            .leader_within
            .map(|d| d.0)
            .unwrap_or(c.lease_time + c.max_clock_skew + c.beat * 5)
    }

    /// When random faults stop (true time from the start).
    pub fn faults_end(&self) -> Duration {
        let quiet = self.faults.quiet.map(|d| d.0).unwrap_or(self.leader_within() * 2);
        self.duration.0.saturating_sub(quiet)
    }

    fn validate(&self, file: &str, text: &str) -> Result<(), ScenarioError> {
        let err = |key: &str, message: String| ScenarioError {
            file: file.to_string(),
            line: line_of_key(text, key),
            key: Some(key.to_string()),
            message,
        };
        if self.nodes.is_some() && !self.node.is_empty() {
            return Err(err("nodes", "give either `nodes` or [[node]] tables, not both".into()));
        }
        let nodes = self.sim_nodes();
        if nodes.is_empty() || nodes.len() > 64 {
            return Err(err("nodes", format!("{} nodes: must be 1 to 64", nodes.len())));
        }
        let mut ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(err("id", "node ids must be unique".into()));
        }
        if self.seeds == 0 {
            return Err(err("seeds", "must be at least 1".into()));
        }
        if self.duration.0.is_zero() {
            return Err(err("duration", "must be positive".into()));
        }
        if !(0.0..=1.0).contains(&self.network.loss) {
            return Err(err("loss", format!("{} is not a probability", self.network.loss)));
        }
        let cfg = self.membership_cfg();
        if cfg.algorithm == Algorithm::Lease && cfg.lease_time < cfg.beat * 4 {
            return Err(err("lease", "must be at least 4 beats".into()));
        }
        if self.membership.bug.is_some() && self.algorithm != Algorithm::Lease {
            return Err(err("bug", "bug knobs plant bugs in the lease algorithm only".into()));
        }
        for f in [self.faults.loss_spike.as_ref().map(|s| s.loss)].into_iter().flatten() {
            if !(0.0..=1.0).contains(&f) {
                return Err(err("loss", format!("{f} is not a probability")));
            }
        }
        let dcs: Vec<&str> = nodes.iter().map(|n| n.datacenter.as_str()).collect();
        for l in &self.network.dc_link {
            for dc in [&l.between.0, &l.between.1] {
                if !dcs.contains(&dc.as_str()) {
                    return Err(err("between", format!("no node is in datacenter {dc:?}")));
                }
            }
        }
        if let Some(r) = &self.router {
            if r.clients == 0 || r.clients > 1000 {
                return Err(err("clients", format!("{} clients: must be 1 to 1000", r.clients)));
            }
            if let Some(dc) = &r.datacenter {
                if !dcs.contains(&dc.as_str()) {
                    return Err(err("datacenter", format!("no node is in datacenter {dc:?}")));
                }
            }
        }
        let known = |id: &str| nodes.iter().any(|n| n.id == id);
        let mut last = Duration::ZERO;
        let mut down: Vec<&str> = Vec::new();
        let mut paused: Vec<&str> = Vec::new();
        for at in &self.at {
            let t = at.time.0;
            if t < last {
                return Err(err(
                    "time",
                    format!("[[at]] steps must be in time order ({t:?} after {last:?})"),
                ));
            }
            if t > self.duration.0 {
                return Err(err(
                    "time",
                    format!("{t:?} is after the end of the run ({:?})", self.duration.0),
                ));
            }
            last = t;
            let actions = [
                at.partition.is_some(),
                at.one_way.is_some(),
                at.cut.is_some(),
                at.loss.is_some(),
                at.latency.is_some(),
                at.heal,
                at.kill.is_some(),
                at.restart.is_some(),
                at.pause.is_some(),
                at.resume.is_some(),
                at.clock_step.is_some(),
                at.drift.is_some(),
            ];
            if actions.iter().filter(|a| **a).count() != 1 {
                return Err(err(
                    "time",
                    format!("the [[at]] step at {t:?} must have exactly one action"),
                ));
            }
            let mut named: Vec<(&str, &str)> = Vec::new();
            if let Some(g) = &at.partition {
                named.extend(g.iter().flatten().map(|s| ("partition", s.as_str())));
            }
            if let Some((a, b)) = &at.one_way {
                named.push(("one_way", a));
                named.push(("one_way", b));
            }
            for (a, b) in at.cut.iter().flatten() {
                named.push(("cut", a));
                named.push(("cut", b));
            }
            if let Some(l) = at.loss {
                if !(0.0..=1.0).contains(&l) {
                    return Err(err("loss", format!("{l} is not a probability")));
                }
            }
            for (k, v) in [
                ("kill", &at.kill),
                ("restart", &at.restart),
                ("pause", &at.pause),
                ("resume", &at.resume),
            ] {
                if let Some(v) = v {
                    named.push((k, v));
                }
            }
            if let Some(c) = &at.clock_step {
                named.push(("clock_step", &c.node));
            }
            if let Some(d) = &at.drift {
                named.push(("drift", &d.node));
            }
            for (k, id) in named {
                if !known(id) {
                    return Err(err(k, format!("unknown node {id:?}")));
                }
            }
            if let Some(id) = &at.kill {
                if down.contains(&id.as_str()) {
                    return Err(err("kill", format!("{id} is already down at {t:?}")));
                }
                down.push(id);
            }
            if let Some(id) = &at.restart {
                if !down.contains(&id.as_str()) {
                    return Err(err("restart", format!("{id} is not down at {t:?}: kill it first")));
                }
                down.retain(|d| d != id);
            }
            if let Some(id) = &at.pause {
                if paused.contains(&id.as_str()) || down.contains(&id.as_str()) {
                    return Err(err("pause", format!("{id} is already paused or down at {t:?}")));
                }
                paused.push(id);
            }
            if let Some(id) = &at.resume {
                if !paused.contains(&id.as_str()) {
                    return Err(err("resume", format!("{id} is not paused at {t:?}")));
                }
                paused.retain(|d| d != id);
            }
            if let Some(d) = &at.drift {
                if d.ppm.unsigned_abs() >= 100_000 {
                    return Err(err("ppm", "drift must be within ±100000 ppm".into()));
                }
            }
        }
        Ok(())
    }
}

/// The key named in a serde message such as "unknown field `foo`, expected ..." (other
/// messages quote values, not keys).
fn key_of(message: &str) -> Option<String> {
    if !(message.starts_with("unknown field") || message.starts_with("missing field")) {
        return None;
    }
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

/// The key whose value starts at byte offset `at`: the name before the nearest `=` before it
/// (inside an inline table too), or the first word of the line.
fn key_at(text: &str, at: usize) -> String {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..at];
    let name = match before.rfind('=') {
        Some(eq) => before[..eq].trim_end(),
        None => text[line_start..]
            .lines()
            .next()
            .unwrap_or("")
            .split('=')
            .next()
            .unwrap_or("")
            .trim(),
    };
    let start = name
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.'))
        .map_or(0, |i| i + 1);
    name[start..].trim_matches(|c| c == '[' || c == ']').to_string()
}

/// The first line that assigns `key`.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with(key) && l[key.len()..].trim_start().starts_with('=') || l.contains(&format!(" {key} ="))
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ScenarioError {
        Scenario::parse("bad.toml", text).unwrap_err()
    }

    #[test]
    fn an_unknown_key_names_file_line_and_key() {
        let e = err("nodes = 3\n\n[network]\nlatncy = \"1ms\"\n");
        assert_eq!(
            (e.file.as_str(), e.line, e.key.as_deref()),
            ("bad.toml", Some(4), Some("latncy"))
        );
        assert!(
            e.to_string().starts_with("bad.toml:4: key `latncy`: unknown field"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_duration_names_its_key_even_in_an_inline_table() {
        let e = err("nodes = 3\n[faults]\npartition = { every = \"soon\", heal_after = \"1s\" }\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("every")));
        assert!(e.message.contains("bad duration"), "{e}");
        let e = err("duration = \"5 parsecs\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("duration")));
    }

    #[test]
    fn bad_values_are_rejected() {
        assert_eq!(err("[network]\nloss = 1.5\n").key.as_deref(), Some("loss"));
        assert_eq!(
            err("[network]\nlatency = \"9ms..1ms\"\n").key.as_deref(),
            Some("latency")
        );
        assert_eq!(err("algorithm = \"raft\"\n").key.as_deref(), Some("algorithm"));
        assert_eq!(err("nodes = 0\n").key.as_deref(), Some("nodes"));
        assert_eq!(
            err("[membership]\nbeat = \"1s\"\nlease = \"2s\"\n").key.as_deref(),
            Some("lease")
        );
        assert_eq!(
            err("algorithm = \"allcall\"\n[membership]\nbug = \"ignore_drift\"\n")
                .key
                .as_deref(),
            Some("bug")
        );
    }

    #[test]
    fn impossible_timelines_are_rejected_with_their_line() {
        let e = err("nodes = 3\n[[at]]\ntime = \"5s\"\nrestart = \"n1\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(4), Some("restart")));
        assert!(e.message.contains("not down"), "{e}");
        let e = err("nodes = 3\n[[at]]\ntime = \"5s\"\nkill = \"n9\"\n");
        assert!(e.message.contains("unknown node"), "{e}");
        let e = err("nodes = 3\n[[at]]\ntime = \"5s\"\nheal = true\n[[at]]\ntime = \"4s\"\nheal = true\n");
        assert!(e.message.contains("time order"), "{e}");
        let e = err("nodes = 3\nduration = \"10s\"\n[[at]]\ntime = \"11s\"\nheal = true\n");
        assert!(e.message.contains("after the end"), "{e}");
        let e = err("nodes = 3\n[[at]]\ntime = \"1s\"\nheal = true\nkill = \"n0\"\n");
        assert!(e.message.contains("exactly one action"), "{e}");
    }

    #[test]
    fn defaults_resolve() {
        let s = Scenario::parse("dir/my-scenario.toml", "").unwrap();
        assert_eq!(s.name, "my-scenario");
        assert_eq!(s.sim_nodes().len(), 3);
        assert_eq!(s.leader_within(), Duration::from_millis(11_500));
        assert_eq!(s.faults_end(), Duration::from_secs(60) - Duration::from_millis(23_000));
    }
}
