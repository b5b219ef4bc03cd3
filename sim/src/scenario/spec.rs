//! The sections of a scenario file: `[membership]`, `[network]`, `[router]`, `[[node]]`,
//! `[faults]` and `[expect]`, each key documented in `scenarios/README.md`.

use super::duration::{Dur, DurRange};
use super::Bug;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[membership]`: overrides of the agents' configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipSpec {
    /// Heartbeat period (default 100ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beat: Option<Dur>,
    /// Lease time (default 10s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<Dur>,
    /// Max clock skew (default 1s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_clock_skew: Option<Dur>,
    /// Declared drift bound in ppm (default 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_drift_ppm: Option<u32>,
    /// A planted bug (known-bad scenarios only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bug: Option<Bug>,
    /// Authenticate every election message with a cluster key (`--cluster-key`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub authenticate: bool,
    /// State files that may be lost or rolled back at once (default 1, 0 for one node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_loss_tolerance: Option<usize>,
}

/// `[network]`: the simulated NATS routes.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dc_link: Vec<DcLink>,
    /// Probability that a delivered message is delivered a second time, later (default 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub duplicate: f64,
    /// Quantised time, as `leasehold-sim check` models it (its counterexamples set it to the
    /// beat): every message between two nodes arrives just before the first tick boundary after
    /// it was sent, the copies due at one boundary in the order sent, and scripted steps come
    /// just after their boundary. `latency` and `dc_link` are then unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick: Option<Dur>,
    /// How long a route between two servers lives while a cut or a stopped server keeps its
    /// pings from being answered, before nats-server closes it (what it held is then lost;
    /// measured by `leasehold-sim calibrate`).
    #[serde(default = "default_route_stale", skip_serializing_if = "is_default_route_stale")]
    pub route_stale: DurRange,
    /// From a route's close to nats-server's next dial of it.
    #[serde(default = "default_route_redial", skip_serializing_if = "is_default_route_redial")]
    pub route_redial: DurRange,
    /// From a server's start to its dial of each route.
    #[serde(default = "default_route_startup", skip_serializing_if = "is_default_route_startup")]
    pub route_startup: DurRange,
    /// The chance that, when a route stopped past its stale time heals while its dials hang,
    /// the two servers' dials collide as duplicates and the route is dialled again a redial
    /// later, rather than one of them completing at once (measured: 10 of 18 trials).
    #[serde(default = "default_route_collide", skip_serializing_if = "is_default_route_collide")]
    pub route_collide: f64,
    /// Messages a client may have pending (taken by its server, not yet read), all its
    /// subscriptions together, before more are dropped as a slow consumer's (default 65536,
    /// async-nats's capacity of one subscription).
    #[serde(default = "default_pending_msgs", skip_serializing_if = "is_default_pending_msgs")]
    pub pending_msgs: usize,
    /// Bytes a subscriber may have pending before more are dropped (default 64 MiB,
    /// nats-server's `max_pending`).
    #[serde(default = "default_pending_bytes", skip_serializing_if = "is_default_pending_bytes")]
    pub pending_bytes: usize,
}

fn default_route_stale() -> DurRange {
    DurRange::new(Duration::from_millis(4500), Duration::from_millis(5200))
}
fn is_default_route_stale(r: &DurRange) -> bool {
    *r == default_route_stale()
}
fn default_route_redial() -> DurRange {
    DurRange::new(Duration::from_millis(1000), Duration::from_millis(1100))
}
fn is_default_route_redial(r: &DurRange) -> bool {
    *r == default_route_redial()
}
fn default_route_startup() -> DurRange {
    DurRange::new(Duration::from_millis(25), Duration::from_millis(50))
}
fn is_default_route_startup(r: &DurRange) -> bool {
    *r == default_route_startup()
}
fn default_route_collide() -> f64 {
    0.6
}
fn is_default_route_collide(p: &f64) -> bool {
    *p == default_route_collide()
}
fn default_pending_msgs() -> usize {
    64 * 1024
}
fn is_default_pending_msgs(n: &usize) -> bool {
    *n == default_pending_msgs()
}
fn default_pending_bytes() -> usize {
    64 << 20
}
fn is_default_pending_bytes(n: &usize) -> bool {
    *n == default_pending_bytes()
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// `[[network.dc_link]]`: the one-way latency of routes between two datacenters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DcLink {
    /// The two datacenters.
    pub between: (String, String),
    /// One-way latency between them.
    pub latency: DurRange,
}

/// `[workload]`: what applications do beside the agents.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// A fenced store on a node of its own, reached over the simulated network: whoever
    /// believes it holds the lease writes to it every beat with its fencing token, and the
    /// store refuses a token lower than the highest it has accepted. The effects oracle
    /// checks what it accepted.
    #[serde(default)]
    pub fenced_store: bool,
    /// Whether the store checks tokens (default true; `false` is a known-bad store).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub store_checks_tokens: bool,
    /// Which applications run beside every agent, through the public API only; the guards
    /// oracle judges what their guards say.
    #[serde(default, skip_serializing_if = "Application::is_both")]
    pub application: Application,
}

/// `[workload] application`: which applications run beside every agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Application {
    /// Both of the others, side by side on one handle.
    #[default]
    Both,
    /// `leadership().await`, then `is_valid()`/`remaining()` every beat and at every change,
    /// until `lost()` resolves; the fenced store's writer, when there is a store.
    Guard,
    /// `run_callbacks`, whose leading future lives until it is dropped.
    Callbacks,
}

impl Application {
    fn is_both(&self) -> bool {
        *self == Application::Both
    }

    /// Whether the guard application runs.
    pub fn guard(self) -> bool {
        self != Application::Callbacks
    }

    /// Whether the callbacks application runs.
    pub fn callbacks(self) -> bool {
        self != Application::Guard
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            fenced_store: false,
            store_checks_tokens: true,
            application: Application::Both,
        }
    }
}

impl WorkloadSpec {
    /// Whether no workload is on (the table is left out of a written scenario).
    pub fn is_off(&self) -> bool {
        !self.fenced_store && self.store_checks_tokens
    }
}

/// `[router]`: simulated clients, each routing RPCs with a `Router` over the servers (the
/// scenario's nodes), checked by the oracle.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
    /// How many clients.
    pub clients: usize,
    /// The clients' datacenter (default: the first node's).
    #[serde(skip_serializing_if = "Option::is_none")]
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
            duplicate: 0.0,
            tick: None,
            route_stale: default_route_stale(),
            route_redial: default_route_redial(),
            route_startup: default_route_startup(),
            route_collide: default_route_collide(),
            pending_msgs: default_pending_msgs(),
            pending_bytes: default_pending_bytes(),
        }
    }
}

/// `[[node]]`: one agent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Its ID (default `n<index>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its rank (default its index).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<i64>,
    /// Its datacenter (for the router; default `dc1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    /// Its clock's rate error in ppm (default: drawn from `faults.clock_drift`, else 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift_ppm: Option<i64>,
    /// Its wall clock's offset in ms (default: drawn from `faults.clock_offset`, else 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_offset_ms: Option<i64>,
    /// Its own `cluster_size` (config skew; default: the number of nodes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_size: Option<usize>,
    /// Its own lease time (config skew; default `[membership] lease`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<Dur>,
    /// Its own heartbeat period (default `[membership] beat`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beat: Option<Dur>,
    /// Its own drift bound (config skew; default `[membership] max_drift_ppm`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_drift_ppm: Option<u32>,
}

/// Which partition shapes the random nemesis draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionFault {
    /// Mean gap between partitions (each gap drawn from 0.5× to 1.5×).
    pub every: Dur,
    /// How long a partition lasts.
    pub heal_after: DurRange,
    /// Shapes to draw from (default all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<PartitionKind>>,
}

/// `restart = { every, down_for }`: kill a node (memory lost), start it again later.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartFault {
    /// Mean gap between kills.
    pub every: Dur,
    /// How long the node stays down.
    pub down_for: DurRange,
}

/// `pause = { every, pause_for }`: stop a process (clocks keep running), resume it later.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseFault {
    /// Mean gap between pauses.
    pub every: Dur,
    /// How long the process stays paused.
    pub pause_for: DurRange,
}

/// `stop = { every, down_for }`: stop an agent gracefully (a leader releases its lease), take
/// its node down, start it again later.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopFault {
    /// Mean gap between stops.
    pub every: Dur,
    /// How long the node stays down.
    pub down_for: DurRange,
}

/// `suspend = { every, for }`: suspend a host (its process and its `CLOCK_MONOTONIC` stop,
/// true time runs on), wake it later.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspendFault {
    /// Mean gap between suspensions.
    pub every: Dur,
    /// How long a suspension lasts.
    #[serde(rename = "for")]
    pub lasts: DurRange,
}

/// `freeze = { every, for }`: freeze a node (a VM freeze, a stop-the-world pause): its process
/// and every one of its clocks stop while true time runs on, then it thaws.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeFault {
    /// Mean gap between freezes.
    pub every: Dur,
    /// How long a freeze lasts.
    #[serde(rename = "for")]
    pub lasts: DurRange,
}

/// `clock_offset = { max }`: every node's wall clock starts offset by up to ±max.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockOffsetFault {
    /// Largest offset.
    pub max: Dur,
}

/// `clock_drift = { max_ppm, every }`: clock rates within ±max_ppm, redrawn for one node at
/// each `every` (if given).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockDriftFault {
    /// Largest rate error, in ppm.
    pub max_ppm: u32,
    /// Mean gap between rate changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every: Option<Dur>,
}

/// `clock_step = { every, max }`: NTP-like jumps of one node's wall clock by up to ±max.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockStepFault {
    /// Mean gap between steps.
    pub every: Dur,
    /// Largest step.
    pub max: Dur,
}

/// `loss_spike = { every, lasts, loss }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencySpikeFault {
    /// Mean gap between spikes.
    pub every: Dur,
    /// How long a spike lasts.
    pub lasts: DurRange,
    /// Route latency during the spike.
    pub latency: DurRange,
}

/// `state_loss = { every, down_for }`: kill a node, delete or roll back its durable state,
/// start it again later.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateLossFault {
    /// Mean gap between losses.
    pub every: Dur,
    /// How long the node stays down.
    pub down_for: DurRange,
}

/// `replay = { every, delay }`: a node's publishes of the last `delay` are delivered again,
/// as a client does when it flushes what it buffered while disconnected.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayFault {
    /// Mean gap between replays.
    pub every: Dur,
    /// How far back the replayed messages go.
    pub delay: DurRange,
}

/// `slow_consumer = { every, for }`: a node's client stops reading for a while; its server
/// keeps what comes for it up to `[network] pending_msgs` / `pending_bytes` and drops the
/// rest, as NATS does to a subscriber that falls behind; what was kept arrives, late and in
/// order, when it reads again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowConsumerFault {
    /// Mean gap between episodes.
    pub every: Dur,
    /// How long an episode lasts.
    #[serde(rename = "for")]
    pub lasts: DurRange,
}

/// `forge = { every }`: a stranger publishes hostile messages (values out of range, phantom
/// members, malformed bytes) on the election subjects.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgeFault {
    /// Mean gap between forged messages.
    pub every: Dur,
}

/// `impostor = { every }`: a stranger who reads the bus answers every lease request with
/// grants from phantom members and, every `every`, announces that the holder released.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImpostorFault {
    /// Gap between forged releases.
    pub every: Dur,
}

/// `preempt = { every, max }`: a random node's next composed clock read stalls between two of
/// its kernel clock reads (a preemption or a GC pause in the middle of the read), for a time
/// drawn log-uniformly from 1 µs to `max`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreemptFault {
    /// Mean gap between preemptions.
    pub every: Dur,
    /// Longest stall.
    pub max: Dur,
}

/// `congest = { every, delay, for }`: a random node's publishes are handed to its server late,
/// in order, as a full client buffer drains: each `delay` (drawn per episode) after the one
/// before; its agent waits for each.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CongestFault {
    /// Mean gap between episodes.
    pub every: Dur,
    /// How late each publish is handed over.
    pub delay: DurRange,
    /// How long an episode lasts.
    #[serde(rename = "for")]
    pub lasts: DurRange,
}

/// `lag = { every, latency, for }`: a random node's link slows: every message between its
/// server and the others' takes `latency` (drawn per episode) more, each way, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LagFault {
    /// Mean gap between episodes.
    pub every: Dur,
    /// How much longer each message takes, each way.
    pub latency: DurRange,
    /// How long an episode lasts.
    #[serde(rename = "for")]
    pub lasts: DurRange,
}

/// `sites = { enable, fire }` or `sites = { on, fire }`: the library's fault sites (BUGGIFY,
/// see `leasehold::fault_sites`). Each site is on for a whole run with probability `enable`
/// (drawn from the seed), or exactly the sites named in `on`; a site that is on fires with
/// probability `fire` each time the agent passes it, until the random faults stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SitesFault {
    /// Probability that each site is on for a run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable: Option<f64>,
    /// Exactly these sites are on (`slow_save`, `late_timer`, `double_reply`, `long_pause`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on: Option<Vec<String>>,
    /// Probability that a site that is on fires when passed.
    pub fire: f64,
}

/// `[faults]`: the random nemesis. Every entry is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Network partitions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<PartitionFault>,
    /// Kills and restarts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartFault>,
    /// Process pauses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseFault>,
    /// Initial wall-clock offsets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_offset: Option<ClockOffsetFault>,
    /// Clock rate errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_drift: Option<ClockDriftFault>,
    /// Wall-clock steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_step: Option<ClockStepFault>,
    /// Bursts of message loss.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_spike: Option<LossSpikeFault>,
    /// Bursts of latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_spike: Option<LatencySpikeFault>,
    /// Durable state lost or rolled back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_loss: Option<StateLossFault>,
    /// Old publishes delivered again, long after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayFault>,
    /// Slow-consumer drops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_consumer: Option<SlowConsumerFault>,
    /// Hostile messages from a stranger.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forge: Option<ForgeFault>,
    /// Graceful stops and restarts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopFault>,
    /// Host suspensions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspend: Option<SuspendFault>,
    /// Freezes: the process and every clock stop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freeze: Option<FreezeFault>,
    /// A stranger granting leases and forging releases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impostor: Option<ImpostorFault>,
    /// Clock reads preempted between two kernel clock reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preempt: Option<PreemptFault>,
    /// Congested client connections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub congest: Option<CongestFault>,
    /// Slow links to random nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<LagFault>,
    /// The library's fault sites.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sites: Option<SitesFault>,
    /// Random faults stop this long before the end (default twice `expect.leader_within`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quiet: Option<Dur>,
}

impl FaultSpec {
    /// The fault classes this table turns on, by their keys, in the file's order.
    pub fn classes(&self) -> Vec<&'static str> {
        let on = [
            ("partition", self.partition.is_some()),
            ("restart", self.restart.is_some()),
            ("pause", self.pause.is_some()),
            ("clock_offset", self.clock_offset.is_some()),
            ("clock_drift", self.clock_drift.is_some()),
            ("clock_step", self.clock_step.is_some()),
            ("loss_spike", self.loss_spike.is_some()),
            ("latency_spike", self.latency_spike.is_some()),
            ("state_loss", self.state_loss.is_some()),
            ("replay", self.replay.is_some()),
            ("slow_consumer", self.slow_consumer.is_some()),
            ("forge", self.forge.is_some()),
            ("stop", self.stop.is_some()),
            ("suspend", self.suspend.is_some()),
            ("freeze", self.freeze.is_some()),
            ("impostor", self.impostor.is_some()),
            ("preempt", self.preempt.is_some()),
            ("congest", self.congest.is_some()),
            ("lag", self.lag.is_some()),
            ("sites", self.sites.is_some()),
        ];
        on.into_iter().filter(|(_, on)| *on).map(|(k, _)| k).collect()
    }
}

/// `[expect]`: what the run must show.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The oracle must find a violation (known-bad scenarios): `true` for any safety
    /// violation, or the kind the planted bug causes.
    #[serde(default)]
    pub violation: Expected,
    /// A lease is held within this long after the last fault (default lease + max skew + 5 beats).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_within: Option<Dur>,
    /// The failover bound: once a calm stretch (or the calm tail) is `leader_within` old, no
    /// gap without a holder may last longer than this (default
    /// [`Scenario::max_gap`](super::Scenario::max_gap)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_gap: Option<Dur>,
    /// The cluster must wait for good from this true time on: no lease may be held after it
    /// (a cluster that cannot know the highest token in use must not elect). Liveness is not
    /// judged then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_leader_after: Option<Dur>,
    /// Beliefs may overlap (faults beyond the lease's assumptions, such as freezes): overlaps
    /// and token order of claims are counted, not failures, and the run is judged by its
    /// effects on the fenced store (`[workload] fenced_store`, required).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub beliefs_may_overlap: bool,
}

/// What `[expect] violation` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Expected {
    /// `false`: no violation; `true`: some safety violation (overlap or token order).
    Any(bool),
    /// This kind of violation.
    Kind(ExpectedKind),
}

impl Default for Expected {
    fn default() -> Self {
        Expected::Any(false)
    }
}

/// A violation kind a known-bad scenario can expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedKind {
    /// Two holders at once.
    Overlap,
    /// A later holder's token was not higher.
    TokenOrder,
    /// No leader after the faults stopped.
    NoLeader,
    /// A leader where the cluster had to wait (`expect.no_leader_after`).
    LeaderWhileWaiting,
    /// The fenced store accepted a write under a token lower than one it had accepted.
    StaleWrite,
    /// An application's guard was valid outside its agent's claim.
    Guard,
    /// An agent reported an older leader's token after a newer one.
    ViewBackwards,
    /// A router check failed (`[router]` scenarios with a planted router bug).
    Routing,
    /// A frozen connection was not reported within three ping intervals and a beat.
    Unnoticed,
    /// An agent asked to stop had not stopped two seconds later.
    StopHung,
    /// An agent asked for promises under a new token while it had reported its connection
    /// down.
    CampaignDisconnected,
    /// A holder let its lease run out with neither a renewal asked for nor a release.
    SilentLapse,
    /// An agent's clock jumped ahead at one read by more than 100 µs.
    ClockAhead,
}

impl Expected {
    /// Whether a violation is expected at all.
    pub fn any(self) -> bool {
        self != Expected::Any(false)
    }
}
