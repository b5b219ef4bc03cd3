//! `MembershipCfg`: hnatsd's configuration, its defaults, and the new fields.

use crate::wire::{AgentLoc, ExtInt};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Which election algorithm an agent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Quorum leases with fencing tokens (safe under partitions, pauses, restarts and drift).
    #[default]
    Lease,
    /// hnatsd's ALLCALL protocol, wire-compatible; can elect two leaders under partition.
    Allcall,
}

impl std::str::FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lease" => Ok(Algorithm::Lease),
            "allcall" => Ok(Algorithm::Allcall),
            other => Err(format!("unknown algorithm {other:?} (expected lease or allcall)")),
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Algorithm::Lease => "lease",
            Algorithm::Allcall => "allcall",
        })
    }
}

/// A known bug that can be planted in the `lease` algorithm or the router (test only), so the
/// simulator can show that its oracle catches it. This list is the one place planted bugs are
/// defined: the scenario files, the shrinker and the tests all name bugs through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bug {
    /// Grant promises right after a restart instead of waiting one promise period.
    SkipRestartQuarantine,
    /// Hold the lease for the full promise period, ignoring the drift bound.
    IgnoreDrift,
    /// Count the lease from when the last grant arrives instead of from before the request.
    LeaseFromGrant,
    /// Grant without checking an outstanding promise to another candidate.
    GrantIgnoringPromise,
    /// Start with no state file as if the cluster were brand new: no quarantine, no
    /// learning of the highest token from peers (the behaviour before state loss was
    /// modelled).
    TrustMissingState,
    /// Promise to candidates whose safety-relevant settings differ from ours.
    SkipConfigCheck,
    /// Count granted replies rather than distinct granters, so a duplicated grant counts twice.
    CountDuplicateGrants,
    /// Accept a grant for any earlier attempt with the same token (a replayed old grant).
    AcceptStaleReplies,
    /// Accept out-of-range values (tokens near 2^64, endless leases) and compute with them.
    UncheckedRanges,
    /// Do lease arithmetic on a clock that stops while the host is suspended or its VM is
    /// frozen (`CLOCK_MONOTONIC`, which `std::time::Instant` and tokio read), as
    /// [`TokioClock`](crate::TokioClock) did before it counted suspended time. Planted in the
    /// clock rather than the election: the simulator gives such an agent that clock.
    SuspendBlindClock,
    /// Keep granting and campaigning while another process with this agent's ID is heard,
    /// and draw no run ID (two processes started from the same state file then have the
    /// same identity): the behaviour before run IDs.
    IgnoreDuplicateId,
    /// Write the state of a start that is still waiting to recover as whole, so the next
    /// start trusts it (the behaviour before waiting states were marked).
    WholeWhileWaiting,
    /// Refuse to act only while more agents are live than `cluster_size` allows, and forget
    /// it once they are out of sight (a lone misconfigured node then acts alone when cut off).
    ForgetSizeEvidence,
    /// Read suspended time as [`TokioClock`](crate::TokioClock) did before
    /// [`SuspendedTime`](crate::SuspendedTime): `CLOCK_MONOTONIC`, then `CLOCK_BOOTTIME`, once
    /// each, keeping the running maximum of their difference, so a preemption between the two
    /// reads moves the clock forward for good (a granter's promise then ends early). Planted in
    /// the clock rather than the election: the simulator composes such an agent's clock with
    /// the old read; production has no such clock.
    RatchetingClockRead,
    /// Keep a [`Leadership`](crate::Leadership) guard valid after the claim ended (a resign or
    /// a stop) until the leader notice that follows the release and the heartbeat are
    /// published, as the handle did before it followed [`Notice::ClaimEnded`](crate::Notice):
    /// with a congested connection the guard then outlives the lease by the time those
    /// publishes take. Planted in the handle, not the election.
    GuardIgnoresClaimEnded,
    /// Believe a heartbeat's lease whatever its token, and report the first holder in ID
    /// order: a delayed or replayed heartbeat of an earlier holder (a reconnect buffer
    /// flushed) then makes a follower report the old leader and a lower token, until the next
    /// heartbeat corrects it (the behaviour before stale leases were recognised).
    TrustStaleHeartbeats,
    /// Campaign while the connection to the server is down, and at once when it is back:
    /// every attempt of a cut-off agent burns a token, and a returning best-ranked agent
    /// starts an election before it has heard the holder (the behaviour before the connection
    /// state reached the election).
    CampaignWhileDisconnected,
    /// Router: take every ping reply as it comes, in the name the reply gives, with any
    /// coordinate and round trip, unfiltered, and never reset an invalid own coordinate (the
    /// router before issue 30). Planted in a [`CoordinateBook`](crate::router::CoordinateBook).
    UncheckedCoordinates,
    /// Router: fail over by taking the current front server after each failure, as many times
    /// as there are servers, and let a membership loss rotate whichever server is in front
    /// (the failover before issue 30, which can try one server twice and another never).
    /// Planted in a [`Manager`](crate::router::Manager).
    FailoverFromFront,
    /// Have the client ping its server at async-nats's default interval (60 s) rather than
    /// [`MembershipCfg::ping_interval`]: a frozen server or a half-open connection is then
    /// noticed after two to three minutes (the agent before issue 31). Planted in the
    /// configuration: the simulated client and `leasehold-agent` both ping as it says.
    ClientDefaultPing,
    /// Await every publish to the end, and carry out a step's outputs before looking at a
    /// stop: a client whose outgoing buffer is full (its server down for long) then blocks
    /// the driver, and a stop is never served (the driver before issue 31). Planted in the
    /// driver.
    BlockingDriver,
    /// Step aside for, and hold back from campaigning for, a better-ranked live agent even
    /// while it says it cannot campaign yet (a restart in quarantine or recovering, or a deaf
    /// agent whose server drops what is sent to it and hears no one): a holder's lease then
    /// runs out and the cluster has no leader until that agent is ready (the behaviour before
    /// issue 24: 1.8 s with a 4 s lease after a restart, about 4 s with 10 s; for as long as
    /// a deaf agent stays deaf).
    DeferToUnready,
    /// Defer to every better-ranked member ever heard, live or not: once the best-ranked
    /// agent has been heard, no one else ever campaigns, so its death leaves the cluster
    /// without a leader for good (a liveness bug: the availability oracle catches it).
    DeferForever,
    /// Never renew: a holder lets its first lease run out and, as if it still held it,
    /// neither renews nor campaigns again; the others defer to it while it heartbeats (a
    /// liveness bug: the availability oracle catches it).
    DropRenewals,
    /// Wait a fixed `attempt_timeout` for every campaign, and never say that campaigns cannot
    /// gather a majority's answers in time: a best-ranked agent whose round trip to the
    /// others is longer than that timeout keeps failing, and the others keep deferring to its
    /// rank (the agent before issue 24: no leader for 99 % of a run with the best-ranked agent
    /// 300 ms away and a 1 s lease).
    DeferToSlow,
    /// A holder that steps aside for a better-ranked agent lets its lease run out rather than
    /// releasing it at its renewal: the better agent cannot campaign until the lease has run
    /// out and the granters' promises with it (the handover before issue 24).
    StepAsideSilently,
    /// The campaign before issue 24: an agent campaigns without a majority of agents in
    /// sight that may promise it (each half of a cut campaigns again and again, its agents
    /// promising it), and a candidate whose campaign failed leaves the promises it was given
    /// in place (each granter refuses every other candidate for a lease, and every retry
    /// renews them): two candidates that split the granters after a cut heals keep each other
    /// from winning until the promises run out.
    KeepFailedPromises,
    /// Trust a state file that was read: a start that loaded one asks no peer for the
    /// highest token (the recovery rule before `state_loss_tolerance`), so a file restored
    /// from an old snapshot makes its agent promise tokens already used.
    TrustOwnFile,
    /// Take any older incarnation of this agent's ID for a late message of an earlier run,
    /// however long after this start it is heard: a process started from a copy of another's
    /// state file (one incarnation above it) then never steps aside for the original, and
    /// each can win a majority with one token (the behaviour before the model checker found
    /// that schedule).
    OlderTwinIsLate,
}

impl Bug {
    /// Every plantable bug.
    pub const ALL: [Bug; 29] = [
        Bug::SkipRestartQuarantine,
        Bug::IgnoreDrift,
        Bug::LeaseFromGrant,
        Bug::GrantIgnoringPromise,
        Bug::TrustMissingState,
        Bug::SkipConfigCheck,
        Bug::CountDuplicateGrants,
        Bug::AcceptStaleReplies,
        Bug::UncheckedRanges,
        Bug::SuspendBlindClock,
        Bug::IgnoreDuplicateId,
        Bug::WholeWhileWaiting,
        Bug::ForgetSizeEvidence,
        Bug::RatchetingClockRead,
        Bug::GuardIgnoresClaimEnded,
        Bug::TrustStaleHeartbeats,
        Bug::CampaignWhileDisconnected,
        Bug::UncheckedCoordinates,
        Bug::FailoverFromFront,
        Bug::ClientDefaultPing,
        Bug::BlockingDriver,
        Bug::DeferToUnready,
        Bug::DeferForever,
        Bug::DropRenewals,
        Bug::DeferToSlow,
        Bug::StepAsideSilently,
        Bug::KeepFailedPromises,
        Bug::TrustOwnFile,
        Bug::OlderTwinIsLate,
    ];

    /// The bug's name in scenario files (`snake_case`).
    pub fn name(self) -> &'static str {
        match self {
            Bug::SkipRestartQuarantine => "skip_restart_quarantine",
            Bug::IgnoreDrift => "ignore_drift",
            Bug::LeaseFromGrant => "lease_from_grant",
            Bug::GrantIgnoringPromise => "grant_ignoring_promise",
            Bug::TrustMissingState => "trust_missing_state",
            Bug::SkipConfigCheck => "skip_config_check",
            Bug::CountDuplicateGrants => "count_duplicate_grants",
            Bug::AcceptStaleReplies => "accept_stale_replies",
            Bug::UncheckedRanges => "unchecked_ranges",
            Bug::SuspendBlindClock => "suspend_blind_clock",
            Bug::IgnoreDuplicateId => "ignore_duplicate_id",
            Bug::WholeWhileWaiting => "whole_while_waiting",
            Bug::ForgetSizeEvidence => "forget_size_evidence",
            Bug::RatchetingClockRead => "ratcheting_clock_read",
            Bug::GuardIgnoresClaimEnded => "guard_ignores_claim_ended",
            Bug::TrustStaleHeartbeats => "trust_stale_heartbeats",
            Bug::CampaignWhileDisconnected => "campaign_while_disconnected",
            Bug::UncheckedCoordinates => "unchecked_coordinates",
            Bug::FailoverFromFront => "failover_from_front",
            Bug::ClientDefaultPing => "client_default_ping",
            Bug::BlockingDriver => "blocking_driver",
            Bug::DeferToUnready => "defer_to_unready",
            Bug::DeferForever => "defer_forever",
            Bug::DropRenewals => "drop_renewals",
            Bug::DeferToSlow => "defer_to_slow",
            Bug::StepAsideSilently => "step_aside_silently",
            Bug::KeepFailedPromises => "keep_failed_promises",
            Bug::TrustOwnFile => "trust_own_file",
            Bug::OlderTwinIsLate => "older_twin_is_late",
        }
    }

    fn bit(self) -> u32 {
        1 << self as u32
    }
}

impl std::fmt::Display for Bug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The set of [`Bug`]s planted in an agent. Empty by default; never plant one in production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(from = "Vec<Bug>", into = "Vec<Bug>")]
pub struct BugKnobs {
    bits: u32,
}

impl BugKnobs {
    /// Knobs with exactly `bug` planted.
    pub fn planted(bug: Bug) -> Self {
        BugKnobs { bits: bug.bit() }
    }

    /// Whether `bug` is planted.
    pub fn has(&self, bug: Bug) -> bool {
        self.bits & bug.bit() != 0
    }

    /// Whether any bug is planted.
    pub fn any(&self) -> bool {
        self.bits != 0
    }
}

impl From<Vec<Bug>> for BugKnobs {
    fn from(bugs: Vec<Bug>) -> Self {
        BugKnobs {
            bits: bugs.iter().fold(0, |b, bug| b | bug.bit()),
        }
    }
}

impl From<BugKnobs> for Vec<Bug> {
    fn from(k: BugKnobs) -> Self {
        Bug::ALL.into_iter().filter(|b| k.has(*b)).collect()
    }
}

/// Whether this start may be the first start of a brand-new cluster (etcd's
/// `initial-cluster-state`). Never inferred: a missing state file proves nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterState {
    /// The cluster may have run before: a start waits one promise period and learns the
    /// highest token in use from its peers before it promises or campaigns.
    #[default]
    Existing,
    /// The operator says no agent of this cluster has ever run: a start that finds no state
    /// file skips the wait. Only for a cluster's very first start; never set it on a restart.
    New,
}

impl std::str::FromStr for ClusterState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "existing" => Ok(ClusterState::Existing),
            "new" => Ok(ClusterState::New),
            other => Err(format!("unknown cluster state {other:?} (expected new or existing)")),
        }
    }
}

/// The fields of hnatsd's `MembershipCfg` that only describe where an agent runs, kept for
/// wire parity: they are reported in each agent's [`AgentLoc`] (and its ordering's ties), and
/// nothing in the election reads them otherwise. (hnatsd's `NatsUrl` is gone: nothing read
/// it; the NATS adapter connects to `NatsOptions::url`, feature `nats`.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HnatsdFields {
    /// Host of this agent's NATS server.
    pub nats_host: String,
    /// Client port of this agent's NATS server.
    pub nats_client_port: i64,
    /// Process ID.
    pub pid: i64,
    /// gRPC endpoints.
    pub grpc: ExtInt,
}

/// Configuration of one agent (hnatsd's `MembershipCfg` plus new fields).
///
/// Zero values mean "use the default", as in hnatsd; [`MembershipCfg::set_defaults`] fills
/// them in, and [`Default`] returns a filled-in configuration. [`MembershipCfg::builder`]
/// builds one by name. It also reads from a file (TOML, JSON, …) with serde: the field names
/// as keys, durations as text (`lease_time = "10s"`), a key left out zero (so defaulted by
/// [`Membership::new`](crate::Membership::new)), an unknown key an error:
///
/// ```
/// let cfg: leasehold::MembershipCfg =
///     serde_json::from_str(r#"{"id": "n0", "cluster_size": 3, "lease_time": "10s", "beat": "200ms"}"#)?;
/// assert_eq!(cfg.lease_time, std::time::Duration::from_secs(10));
/// assert!(serde_json::from_str::<leasehold::MembershipCfg>(r#"{"lease": "10s"}"#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default = "MembershipCfg::zero", deny_unknown_fields)]
pub struct MembershipCfg {
    /// Largest wall-clock disagreement tolerated between agents (default 1 s). `allcall`
    /// honours a lease for `lease_time + max_clock_skew`; `lease` uses it only for liveness.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Heartbeat period (default 100 ms).
    #[serde(with = "humantime_serde")]
    pub beat: Duration,
    /// Subject prefix for membership traffic (default `_nats.cluster.members.`).
    pub sys_member_prefix: String,
    /// Lease length (default 10 s): the minimum a leader is elected for in `allcall`, the
    /// promise period in `lease`.
    #[serde(with = "humantime_serde")]
    pub lease_time: Duration,
    /// This agent's rank; lower is preferred as leader. Signed, as hnatsd's wire carries it
    /// ([`MembershipCfg::builder`] takes an unsigned one).
    pub my_rank: i64,
    /// This agent's ID (hnatsd takes the NATS server's ID); must be unique in the cluster.
    pub id: String,
    /// What hnatsd's agents report of themselves besides their ID and rank, for wire parity.
    #[serde(default)]
    pub hnatsd: HnatsdFields,
    /// Election algorithm (default [`Algorithm::Lease`]).
    pub algorithm: Algorithm,
    /// Number of agents in the cluster; `lease` needs a majority of it. Required for `lease`.
    pub cluster_size: usize,
    /// Bound on any agent's monotonic clock rate error, in parts per million (default 1000).
    pub max_drift_ppm: u32,
    /// Entries kept in the leadership history (default 100; the newest are kept).
    pub history_size: usize,
    /// A member not heard from for this long is reported lost (default 5 beats).
    #[serde(with = "humantime_serde")]
    pub member_timeout: Duration,
    /// Largest message accepted from the network (default 64 KiB).
    pub max_message: usize,
    /// Whether a start without state may assume a brand-new cluster (default
    /// [`ClusterState::Existing`]).
    pub initial_cluster_state: ClusterState,
    /// How many agents' state files may be rolled back to an older snapshot at once (they look
    /// whole), the restarting agent's own state counted whatever happened to it, with fencing
    /// tokens still strictly increasing and no two holders overlapping (`lease` only); lost or
    /// unreadable files are detected and do not count. `None`: 1, or 0 for a one-agent
    /// cluster, which has no one to ask. At most `cluster_size / 2`. A start waits for
    /// `cluster_size − quorum + F` answers from peers with whole files (see
    /// `docs/ARCHITECTURE.md`, "Rollback tolerance"), so a larger F makes restarts wait for
    /// more peers.
    #[serde(default)]
    pub state_loss_tolerance: Option<usize>,
    /// Test-only planted bugs (see [`BugKnobs`]): never read from a configuration file, and
    /// not part of the documented API.
    #[doc(hidden)]
    #[serde(skip)]
    pub bug_knobs: BugKnobs,
    /// The election's name (default empty: the one election of the prefix, on hnatsd's
    /// subjects). Agents with different names run independent elections side by side, on
    /// `<prefix><election>.…` subjects, as etcd keys or Kubernetes Lease names do; each needs
    /// its own durable state.
    #[serde(default)]
    pub election: String,
}

/// Builds a checked [`MembershipCfg`]: the two settings every agent needs, its ID and the
/// cluster's size, up front; the rest by name, with durations as [`Duration`] and the rank as
/// an unsigned number; [`MembershipCfgBuilder::build`] fills in the defaults and validates.
///
/// ```
/// use leasehold::{ClusterState, MembershipCfg};
/// use std::time::Duration;
///
/// let cfg = MembershipCfg::builder("orders-1", 3)
///     .rank(0)
///     .lease(Duration::from_secs(10))
///     .election("orders")
///     .initial_cluster_state(ClusterState::Existing)
///     .build()?;
/// assert_eq!(cfg.beat, Duration::from_millis(100));
/// let e = MembershipCfg::builder("orders-1", 3).lease(Duration::from_millis(200)).build().unwrap_err();
/// assert_eq!(e.field, "lease_time");
/// # Ok::<(), leasehold::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct MembershipCfgBuilder {
    cfg: MembershipCfg,
}

impl MembershipCfg {
    /// A builder for agent `id` in a cluster of `cluster_size` agents.
    pub fn builder(id: impl Into<String>, cluster_size: usize) -> MembershipCfgBuilder {
        let mut cfg = MembershipCfg::zero();
        cfg.id = id.into();
        cfg.cluster_size = cluster_size;
        MembershipCfgBuilder { cfg }
    }
}

impl MembershipCfgBuilder {
    /// This agent's rank: lower is preferred as leader (default 0).
    pub fn rank(mut self, rank: u32) -> Self {
        self.cfg.my_rank = i64::from(rank);
        self
    }

    /// The lease time (default 10 s): at least four beats.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.cfg.lease_time = lease;
        self
    }

    /// The heartbeat period (default 100 ms).
    pub fn beat(mut self, beat: Duration) -> Self {
        self.cfg.beat = beat;
        self
    }

    /// The bound on any agent's clock rate error, in ppm (default 1000; every agent the same).
    pub fn max_drift_ppm(mut self, ppm: u32) -> Self {
        self.cfg.max_drift_ppm = ppm;
        self
    }

    /// The largest wall-clock disagreement tolerated (default 1 s).
    pub fn max_clock_skew(mut self, skew: Duration) -> Self {
        self.cfg.max_clock_skew = skew;
        self
    }

    /// The election's name (default: the one election of the prefix).
    pub fn election(mut self, name: impl Into<String>) -> Self {
        self.cfg.election = name.into();
        self
    }

    /// The subject prefix (default `_nats.cluster.members.`; it ends with a dot).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.cfg.sys_member_prefix = prefix.into();
        self
    }

    /// The election algorithm (default [`Algorithm::Lease`]).
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.cfg.algorithm = algorithm;
        self
    }

    /// Whether a start without state may take the cluster for brand-new (default
    /// [`ClusterState::Existing`]; `New` only for a cluster's very first start).
    pub fn initial_cluster_state(mut self, state: ClusterState) -> Self {
        self.cfg.initial_cluster_state = state;
        self
    }

    /// How many state files may be rolled back at once (default 1, or 0 for one agent).
    pub fn state_loss_tolerance(mut self, f: usize) -> Self {
        self.cfg.state_loss_tolerance = Some(f);
        self
    }

    /// How long a silent member is kept (default five beats).
    pub fn member_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.member_timeout = timeout;
        self
    }

    /// The configuration, its defaults filled in, or what is wrong with it.
    pub fn build(self) -> Result<MembershipCfg, ConfigError> {
        let mut cfg = self.cfg;
        cfg.set_defaults();
        cfg.validate()?;
        Ok(cfg)
    }
}

impl Default for MembershipCfg {
    fn default() -> Self {
        let mut cfg = MembershipCfg::zero();
        cfg.set_defaults();
        cfg
    }
}

/// A configuration that cannot run: the field at fault, and why (so that a front end can name
/// its own spelling of the field, as `leasehold-agent` names its flags). Other fields the
/// reason names are in backquotes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid membership configuration: {field} {reason}")]
pub struct ConfigError {
    /// The [`MembershipCfg`] field at fault.
    pub field: &'static str,
    /// What is wrong with it (it may name other fields).
    pub reason: String,
}

impl MembershipCfg {
    /// A configuration with every field zero or empty (nothing defaulted yet).
    pub fn zero() -> Self {
        MembershipCfg {
            max_clock_skew: Duration::ZERO,
            beat: Duration::ZERO,
            sys_member_prefix: String::new(),
            lease_time: Duration::ZERO,
            my_rank: 0,
            id: String::new(),
            hnatsd: HnatsdFields::default(),
            algorithm: Algorithm::Lease,
            cluster_size: 0,
            max_drift_ppm: 0,
            history_size: 0,
            member_timeout: Duration::ZERO,
            max_message: 0,
            initial_cluster_state: ClusterState::Existing,
            state_loss_tolerance: None,
            bug_knobs: BugKnobs::default(),
            election: String::new(),
        }
    }

    /// Fills in defaults for every zero field (hnatsd's `SetDefaults`).
    pub fn set_defaults(&mut self) {
        if self.lease_time.is_zero() {
            self.lease_time = Duration::from_secs(10);
        }
        if self.sys_member_prefix.is_empty() {
            self.sys_member_prefix = "_nats.cluster.members.".into();
        }
        if self.beat.is_zero() {
            self.beat = Duration::from_millis(100);
        }
        if self.max_clock_skew.is_zero() {
            self.max_clock_skew = Duration::from_secs(1);
        }
        if self.max_drift_ppm == 0 {
            self.max_drift_ppm = 1000;
        }
        if self.history_size == 0 {
            self.history_size = 100;
        }
        if self.member_timeout.is_zero() {
            self.member_timeout = self.beat * 5;
        }
        if self.max_message == 0 {
            self.max_message = crate::wire::DEFAULT_MAX_MESSAGE;
        }
    }

    /// Checks what defaults cannot fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field: &'static str, reason: String| Err(ConfigError { field, reason });
        if !crate::wire::id_in_range(&self.id) {
            return err("id", "must be 1 to 256 bytes (peers drop longer ones)".into());
        }
        if self.cluster_size > crate::wire::MAX_CLUSTER_SIZE {
            return err(
                "cluster_size",
                format!("must be at most {}", crate::wire::MAX_CLUSTER_SIZE),
            );
        }
        if self.beat.is_zero() {
            return err("beat", "must be positive (call set_defaults)".into());
        }
        if self.lease_time.is_zero() {
            return err("lease_time", "must be positive (call set_defaults)".into());
        }
        if self.algorithm == Algorithm::Lease {
            if self.cluster_size == 0 {
                return err("cluster_size", "must be set for the lease algorithm".into());
            }
            if self.max_drift_ppm >= 100_000 {
                return err("max_drift_ppm", "must be below 100000 (10%)".into());
            }
            if self.lease_time < self.beat * 4 {
                return err(
                    "lease_time",
                    format!(
                        "must be at least 4 beats: {:?} is less than 4 × `beat` ({:?})",
                        self.lease_time, self.beat
                    ),
                );
            }
            if let Some(f) = self.state_loss_tolerance {
                if f > self.cluster_size / 2 {
                    return err(
                        "state_loss_tolerance",
                        format!(
                            "{f} is more than `cluster_size` / 2 = {}: a restart would need answers from \
                             more peers than there are",
                            self.cluster_size / 2
                        ),
                    );
                }
            }
        }
        if !self.sys_member_prefix.ends_with('.') {
            return err("sys_member_prefix", "must end with '.'".into());
        }
        crate::network::validate_subject(self.sys_member_prefix.trim_end_matches('.'), false)
            .or_else(|e| err("sys_member_prefix", e.to_string()))?;
        let name_ok = self
            .election
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if self.election.len() > 64 || !name_ok {
            return err(
                "election",
                "must be at most 64 of A-Z a-z 0-9 _ - (one subject token)".into(),
            );
        }
        Ok(())
    }

    /// The prefix of this election's subjects: `sys_member_prefix`, then the election's name
    /// and a dot if it has one.
    pub fn election_prefix(&self) -> String {
        if self.election.is_empty() {
            self.sys_member_prefix.clone()
        } else {
            format!("{}{}.", self.sys_member_prefix, self.election)
        }
    }

    /// How often an agent's client should ping its server: a quarter of the lease, at least
    /// 50 ms. A NATS client drops a connection that has left three pings unanswered, so a
    /// frozen server or a half-open connection is noticed (the agent hears
    /// [`Connection::Disconnected`](crate::Connection)) within three of these, three quarters
    /// of a lease. `leasehold-agent` sets it; embedders set
    /// `NatsOptions::ping_interval` (feature `nats`) to it (the client's own default is
    /// 60 s).
    pub fn ping_interval(&self) -> Duration {
        if self.bug_knobs.has(Bug::ClientDefaultPing) {
            return Duration::from_secs(60);
        }
        (self.lease_time / 4).max(Duration::from_millis(50))
    }

    /// The majority of `cluster_size`: promises needed to hold a lease.
    pub fn quorum(&self) -> usize {
        self.cluster_size / 2 + 1
    }

    /// The state-loss tolerance in force: [`MembershipCfg::state_loss_tolerance`], or its
    /// default (1, or 0 for a one-agent cluster).
    pub fn loss_tolerance(&self) -> usize {
        self.state_loss_tolerance.unwrap_or(1.min(self.cluster_size / 2))
    }

    /// This agent's location, with no lease.
    pub fn my_loc(&self) -> AgentLoc {
        AgentLoc {
            id: self.id.clone(),
            nats_host: self.hnatsd.nats_host.clone(),
            nats_client_port: self.hnatsd.nats_client_port,
            grpc: self.hnatsd.grpc.clone(),
            lease_expires: None,
            rank: self.my_rank,
            pid: self.hnatsd.pid,
        }
    }

    /// A digest of the timing `lease` safety depends on (lease time, drift bound), carried
    /// in heartbeats and requests: agents whose digests differ refuse to promise to each
    /// other, since a holder with a longer lease would outlive its granters' promises. The
    /// cluster size is not in it: it travels on its own, so that a cluster can change its
    /// size one agent at a time (a granter promises only candidates configured for a
    /// cluster at least as large as its own; see docs/ARCHITECTURE.md, "Changing the size").
    pub fn safety_digest(&self) -> u64 {
        let mut b = Vec::with_capacity(24);
        b.extend_from_slice(&self.lease_time.as_nanos().to_le_bytes());
        b.extend_from_slice(&self.max_drift_ppm.to_le_bytes());
        crate::hash::fnv1a(&b)
    }

    /// A digest of every setting `lease` safety depends on, the cluster size included: what
    /// evidence of a larger cluster is kept under ([`crate::Durable`]'s `larger_cluster`), so
    /// that a change of this agent's size or timing forgets it.
    pub fn settings_digest(&self) -> u64 {
        let mut b = Vec::with_capacity(32);
        b.extend_from_slice(&(self.cluster_size as u64).to_le_bytes());
        b.extend_from_slice(&self.lease_time.as_nanos().to_le_bytes());
        b.extend_from_slice(&self.max_drift_ppm.to_le_bytes());
        crate::hash::fnv1a(&b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design() {
        let c = MembershipCfg::default();
        assert_eq!(c.max_clock_skew, Duration::from_secs(1));
        assert_eq!(c.beat, Duration::from_millis(100));
        assert_eq!(c.lease_time, Duration::from_secs(10));
        assert_eq!(c.sys_member_prefix, "_nats.cluster.members.");
        assert_eq!(c.my_rank, 0);
        assert_eq!(c.algorithm, Algorithm::Lease);
        assert_eq!(c.history_size, 100);
        assert_eq!(c.max_drift_ppm, 1000);
        assert_eq!(c.member_timeout, Duration::from_millis(500));
        assert_eq!(c.max_message, 64 * 1024);
        assert!(!c.bug_knobs.any());
    }

    #[test]
    fn set_defaults_keeps_what_was_set() {
        let mut c = MembershipCfg::zero();
        c.beat = Duration::from_millis(20);
        c.lease_time = Duration::from_secs(2);
        c.set_defaults();
        assert_eq!(c.beat, Duration::from_millis(20));
        assert_eq!(c.lease_time, Duration::from_secs(2));
        assert_eq!(c.member_timeout, Duration::from_millis(100));
    }

    #[test]
    fn validation_names_the_problem() {
        let mut c = MembershipCfg::default();
        assert_eq!(c.validate().unwrap_err().field, "id");
        c.id = "a".into();
        assert_eq!(c.validate().unwrap_err().field, "cluster_size");
        c.cluster_size = 3;
        assert!(c.validate().is_ok());
        c.state_loss_tolerance = Some(2);
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "state_loss_tolerance");
        assert!(
            e.to_string()
                .contains("state_loss_tolerance 2 is more than `cluster_size` / 2"),
            "{e}"
        );
        c.cluster_size = 5;
        assert!(c.validate().is_ok(), "two of five");
        c.state_loss_tolerance = None;
        c.cluster_size = 1;
        assert_eq!(c.loss_tolerance(), 0, "a lone agent has no one to ask");
        c.cluster_size = 3;
        assert_eq!(c.loss_tolerance(), 1);
        c.algorithm = Algorithm::Allcall;
        c.cluster_size = 0;
        assert!(c.validate().is_ok(), "allcall needs no cluster size");
        c.sys_member_prefix = "bad prefix.".into();
        assert!(c.validate().is_err());
    }
}
