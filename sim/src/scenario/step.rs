//! `[[at]]`: the scripted timeline. A step is one [`Step`] at one true time; in the file it is
//! a table with `time` and exactly one action key. The file form ([`RawAt`]) is converted to
//! and from the enum here and nowhere else.

use super::duration::{Dur, DurRange};
use serde::{Deserialize, Serialize};

/// One scripted action, naming nodes by ID.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Cut the routes between these groups (nodes not named stay with the first group).
    Partition(Vec<Vec<String>>),
    /// Cut the routes from the first node to the second only (added to the cuts in force).
    OneWay(String, String),
    /// Cut the node holding the lease now off from everyone (this node if none holds one).
    IsolateLeader(String),
    /// Cut exactly these directed routes `[from, to]` (replacing the cuts in force).
    Cut(Vec<(String, String)>),
    /// Set route loss.
    Loss(f64),
    /// Set route latency.
    Latency(DurRange),
    /// Restore every route.
    Heal,
    /// Kill this node (memory lost).
    Kill(String),
    /// Start this (killed) node again.
    Restart(String),
    /// Pause this node's process.
    Pause(String),
    /// Resume this node's process.
    Resume(String),
    /// Stop this node's agent gracefully, then take the node down (`restart` brings it back).
    Stop(String),
    /// Suspend this node's host, for a while or until `wake`.
    Suspend(SuspendAt),
    /// Wake this suspended node.
    Wake(String),
    /// Step a node's wall clock.
    ClockStep(ClockStepAt),
    /// Set a node's clock rate error.
    Drift(DriftAt),
    /// Delete a (down) node's durable state.
    WipeState(String),
    /// Restore a (down) node's durable state to an earlier save.
    RollbackState(RollbackAt),
    /// Make a (down) node's durable state unreadable (a truncated file).
    CorruptState(String),
    /// Start a second agent with this node's identity and a copy of its state file, on the
    /// same host (a copied unit file, a pod started beside its old self).
    Clone(String),
    /// Freeze a node, for a while or until `wake`: its process and every clock stop (a VM
    /// freeze, a stop-the-world pause), true time runs on.
    Freeze(SuspendAt),
    /// Deliver again what a node published in the last `window`.
    Replay(ReplayAt),
    /// Start dropping every message to a node (a slow consumer).
    SlowConsumer(String),
    /// Stop dropping messages to a node.
    FastConsumer(String),
    /// A stranger publishes the hostile message numbered `pick`.
    Forge(u64),
    /// Preempt a node's next composed clock read between two kernel clock reads.
    Preempt(PreemptAt),
    /// A node's publishes are handed over late, in order, as a full client buffer drains.
    Congest(CongestAt),
    /// A node's publishes go out at once again.
    Uncongest(String),
    /// Every message to and from a node's host takes longer (a slow link to it).
    Lag(LagAt),
    /// A node's link is as fast as the others' again.
    Unlag(String),
    /// A node's application resigns the lease (`MembershipHandle::resign`).
    Resign(String),
    /// A node's application campaigns again (`MembershipHandle::campaign`).
    Campaign(String),
    /// A node's NATS server goes down while its agent runs.
    ServerDown(String),
    /// A node's NATS server comes back (its agent reconnects and flushes its buffer).
    ServerUp(String),
    /// A node's connection to its NATS server freezes, for a while or until
    /// `thaw_connection`: nothing arrives, nothing fails (a stopped server process, a proxy
    /// holding the bytes); its client notices at its third unanswered ping.
    FreezeConnection(SuspendAt),
    /// A node's frozen connection thaws.
    ThawConnection(String),
    /// A node's configured `cluster_size` changes (its configuration file is edited): its
    /// next start uses it, the running process does not notice. With `stop` and `restart`
    /// around it, one step of a rolling change of the cluster's size.
    Resize(ResizeAt),
    /// Lose one election message in flight (needs `[network] tick`).
    DropMessage(MessageAt),
    /// Deliver one election message in flight a tick later, after those sent after it (needs
    /// `[network] tick`).
    DelayMessage(MessageAt),
    /// Deliver one election message in flight twice (needs `[network] tick`).
    DuplicateMessage(MessageAt),
}

impl Step {
    /// The file key of this action.
    pub fn key(&self) -> &'static str {
        match self {
            Step::Partition(_) => "partition",
            Step::OneWay(..) => "one_way",
            Step::IsolateLeader(_) => "isolate_leader",
            Step::Cut(_) => "cut",
            Step::Loss(_) => "loss",
            Step::Latency(_) => "latency",
            Step::Heal => "heal",
            Step::Kill(_) => "kill",
            Step::Restart(_) => "restart",
            Step::Pause(_) => "pause",
            Step::Resume(_) => "resume",
            Step::Stop(_) => "stop",
            Step::Suspend(_) => "suspend",
            Step::Wake(_) => "wake",
            Step::ClockStep(_) => "clock_step",
            Step::Drift(_) => "drift",
            Step::WipeState(_) => "wipe_state",
            Step::RollbackState(_) => "rollback_state",
            Step::CorruptState(_) => "corrupt_state",
            Step::Clone(_) => "clone",
            Step::Freeze(_) => "freeze",
            Step::Replay(_) => "replay",
            Step::SlowConsumer(_) => "slow_consumer",
            Step::FastConsumer(_) => "fast_consumer",
            Step::Forge(_) => "forge",
            Step::Preempt(_) => "preempt",
            Step::Congest(_) => "congest",
            Step::Uncongest(_) => "uncongest",
            Step::Lag(_) => "lag",
            Step::Unlag(_) => "unlag",
            Step::Resign(_) => "resign",
            Step::Campaign(_) => "campaign",
            Step::ServerDown(_) => "server_down",
            Step::ServerUp(_) => "server_up",
            Step::FreezeConnection(_) => "freeze_connection",
            Step::ThawConnection(_) => "thaw_connection",
            Step::Resize(_) => "resize",
            Step::DropMessage(_) => "drop_message",
            Step::DelayMessage(_) => "delay_message",
            Step::DuplicateMessage(_) => "duplicate_message",
        }
    }

    /// Every node ID the step names.
    pub fn nodes(&self) -> Vec<&str> {
        match self {
            Step::Partition(groups) => groups.iter().flatten().map(String::as_str).collect(),
            Step::OneWay(a, b) => vec![a, b],
            Step::Cut(links) => links.iter().flat_map(|(a, b)| [a.as_str(), b.as_str()]).collect(),
            Step::Kill(n)
            | Step::IsolateLeader(n)
            | Step::Restart(n)
            | Step::Pause(n)
            | Step::Resume(n)
            | Step::Stop(n)
            | Step::Wake(n)
            | Step::WipeState(n)
            | Step::CorruptState(n)
            | Step::Clone(n)
            | Step::SlowConsumer(n)
            | Step::FastConsumer(n)
            | Step::Uncongest(n)
            | Step::Unlag(n)
            | Step::Resign(n)
            | Step::Campaign(n)
            | Step::ServerDown(n)
            | Step::ServerUp(n)
            | Step::ThawConnection(n) => vec![n],
            Step::FreezeConnection(f) => vec![&f.node],
            Step::Congest(c) => vec![&c.node],
            Step::Lag(l) => vec![&l.node],
            Step::ClockStep(c) => vec![&c.node],
            Step::Drift(d) => vec![&d.node],
            Step::Resize(r) => vec![&r.node],
            Step::DropMessage(m) | Step::DelayMessage(m) | Step::DuplicateMessage(m) => vec![&m.from, &m.to],
            Step::Suspend(s) => vec![&s.node],
            Step::Freeze(f) => vec![&f.node],
            Step::RollbackState(r) => vec![&r.node],
            Step::Replay(r) => vec![&r.node],
            Step::Preempt(p) => vec![&p.node],
            Step::Loss(_) | Step::Latency(_) | Step::Heal | Step::Forge(_) => Vec::new(),
        }
    }
}

/// One step of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawAt", into = "RawAt")]
pub struct At {
    /// When, in true simulated time from the start.
    pub time: Dur,
    /// What happens.
    pub step: Step,
}

/// A scripted wall-clock step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftAt {
    /// Which node.
    pub node: String,
    /// New rate error in ppm (negative: slow).
    pub ppm: i64,
}

/// A scripted change of a node's size setting: `resize = { node = "n0", cluster_size = 5 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResizeAt {
    /// Which node.
    pub node: String,
    /// Its `cluster_size` from its next start.
    pub cluster_size: usize,
}

/// A scripted rollback: `rollback_state = "n0"` (to an earlier save drawn from the seed) or
/// `rollback_state = { node = "n0", to = 2 }` (to save number 2, the first being 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RollbackForm", into = "RollbackForm")]
pub struct RollbackAt {
    /// Which node.
    pub node: String,
    /// Which save (`None`: drawn from the seed among the earlier ones).
    pub to: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum RollbackForm {
    Node(String),
    Exact {
        node: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<usize>,
    },
}

impl From<RollbackForm> for RollbackAt {
    fn from(f: RollbackForm) -> Self {
        match f {
            RollbackForm::Node(node) => RollbackAt { node, to: None },
            RollbackForm::Exact { node, to } => RollbackAt { node, to },
        }
    }
}

impl From<RollbackAt> for RollbackForm {
    fn from(r: RollbackAt) -> Self {
        match r.to {
            None => RollbackForm::Node(r.node),
            to => RollbackForm::Exact { node: r.node, to },
        }
    }
}

/// A scripted suspension: `suspend = { node = "n0", for = "30s" }` (woken after 30 s), or
/// `suspend = "n0"` (until a `wake` step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "SuspendForm", into = "SuspendForm")]
pub struct SuspendAt {
    /// Which node.
    pub node: String,
    /// How long (`None`: until `wake`).
    pub lasts: Option<Dur>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged, expecting = r#"a node ID, or { node = "n0", for = "30s" }"#)]
enum SuspendForm {
    Node(String),
    For(SuspendFor),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuspendFor {
    node: String,
    #[serde(rename = "for")]
    lasts: Dur,
}

impl From<SuspendForm> for SuspendAt {
    fn from(f: SuspendForm) -> Self {
        match f {
            SuspendForm::Node(node) => SuspendAt { node, lasts: None },
            SuspendForm::For(SuspendFor { node, lasts }) => SuspendAt {
                node,
                lasts: Some(lasts),
            },
        }
    }
}

impl From<SuspendAt> for SuspendForm {
    fn from(s: SuspendAt) -> Self {
        match s.lasts {
            None => SuspendForm::Node(s.node),
            Some(lasts) => SuspendForm::For(SuspendFor { node: s.node, lasts }),
        }
    }
}

/// A scripted replay: `replay = { node = "n0", window = "5s" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayAt {
    /// Whose publishes.
    pub node: String,
    /// How far back.
    pub window: Dur,
}

/// A scripted preemption: `preempt = { node = "n0", by = "25ms" }`: n0's next composed clock
/// read stalls this long between two of its kernel clock reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreemptAt {
    /// Which node.
    pub node: String,
    /// How long the stall lasts.
    pub by: Dur,
}

/// A scripted congestion: `congest = { node = "n1", delay = "400ms", for = "5s" }`: each of
/// n1's publishes is handed to its server `delay` after the one before it (or after it was
/// made, if later), in order, as a full client buffer drains; the publisher waits for it. Without
/// `for`, until an `uncongest` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CongestAt {
    /// Which node.
    pub node: String,
    /// How late each publish is handed over.
    pub delay: Dur,
    /// How long the congestion lasts (`None`: until `uncongest`).
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub lasts: Option<Dur>,
}

/// A scripted slow link: `lag = { node = "n0", latency = "300ms", for = "10s" }`: every
/// message between n0's server and the others' takes `latency` more than its route's, each
/// way, in order (a far host, a congested WAN path), while n0 hears and is heard. Without
/// `for`, until an `unlag` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LagAt {
    /// Which node.
    pub node: String,
    /// How much longer each message takes, each way.
    pub latency: Dur,
    /// How long the slow link lasts (`None`: until `unlag`).
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub lasts: Option<Dur>,
}

/// One election message in flight, named for a targeted fault:
/// `drop_message = { from = "n0", to = "n1", kind = "reply" }`: of the copies of that kind on
/// their way from `from` to `to`, the earliest due (or the `nth`, counting from 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageAt {
    /// The sender.
    pub from: String,
    /// The receiver.
    pub to: String,
    /// What it is.
    pub kind: MessageKind,
    /// Which of those copies, in the order they are due (default 0: the first).
    #[serde(default, skip_serializing_if = "is_first")]
    pub nth: usize,
}

fn is_first(n: &usize) -> bool {
    *n == 0
}

/// What a targeted fault does to one message in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageFault {
    /// It is lost.
    Drop,
    /// It arrives a tick later, after the copies sent after it.
    Delay,
    /// It arrives twice.
    Duplicate,
}

/// The kinds of election message a targeted fault can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// A heartbeat.
    Heartbeat,
    /// A request for promises.
    Request,
    /// An answer to a request (a grant or a refusal).
    Reply,
    /// A holder's early release.
    Release,
    /// A starting agent's question for the highest token.
    Recover,
    /// An answer to that question.
    Recovered,
    /// `allcall`: the call every agent answers.
    Allcall,
    /// `allcall`: an answer, which every agent hears.
    Allreply,
}

impl MessageKind {
    /// Its name in a scenario file.
    pub fn name(self) -> &'static str {
        match self {
            MessageKind::Heartbeat => "heartbeat",
            MessageKind::Request => "request",
            MessageKind::Reply => "reply",
            MessageKind::Release => "release",
            MessageKind::Recover => "recover",
            MessageKind::Recovered => "recovered",
            MessageKind::Allcall => "allcall",
            MessageKind::Allreply => "allreply",
        }
    }

    /// The kind of a message published on `subject` (the agent's subjects: `<prefix>hb`,
    /// `<prefix>lease.request`, `<prefix>lease.reply.<incarnation>`, …), if it is one.
    pub fn of_subject(subject: &str) -> Option<MessageKind> {
        // `lease.recovery.` before `lease.recover`, which it starts with.
        [
            ("lease.recovery.", MessageKind::Recovered),
            ("lease.reply.", MessageKind::Reply),
            ("lease.request", MessageKind::Request),
            ("lease.release", MessageKind::Release),
            ("lease.recover", MessageKind::Recover),
        ]
        .into_iter()
        .find(|(part, _)| subject.contains(part))
        .map(|(_, k)| k)
        .or_else(|| {
            [
                ("hb", MessageKind::Heartbeat),
                ("allcall", MessageKind::Allcall),
                ("allreply", MessageKind::Allreply),
            ]
            .into_iter()
            .find(|(end, _)| subject.ends_with(end))
            .map(|(_, k)| k)
        })
    }
}

/// An `[[at]]` table as written in the file: `time` and one action key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAt {
    time: Dur,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<Vec<Vec<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    one_way: Option<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    isolate_leader: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cut: Option<Vec<(String, String)>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency: Option<DurRange>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    heal: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    kill: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    restart: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pause: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resume: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    suspend: Option<SuspendAt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wake: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clock_step: Option<ClockStepAt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    drift: Option<DriftAt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wipe_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback_state: Option<RollbackAt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    corrupt_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    freeze: Option<SuspendAt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay: Option<ReplayAt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    slow_consumer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fast_consumer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    forge: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preempt: Option<PreemptAt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    congest: Option<CongestAt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uncongest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lag: Option<LagAt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unlag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resign: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_down: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_up: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    freeze_connection: Option<SuspendAt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thaw_connection: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resize: Option<ResizeAt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    drop_message: Option<MessageAt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay_message: Option<MessageAt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate_message: Option<MessageAt>,
}

impl TryFrom<RawAt> for At {
    type Error = String;

    fn try_from(r: RawAt) -> Result<At, String> {
        let mut steps: Vec<Step> = Vec::new();
        steps.extend(r.partition.map(Step::Partition));
        steps.extend(r.one_way.map(|(a, b)| Step::OneWay(a, b)));
        steps.extend(r.isolate_leader.map(Step::IsolateLeader));
        steps.extend(r.cut.map(Step::Cut));
        steps.extend(r.loss.map(Step::Loss));
        steps.extend(r.latency.map(Step::Latency));
        steps.extend(r.heal.then_some(Step::Heal));
        steps.extend(r.kill.map(Step::Kill));
        steps.extend(r.restart.map(Step::Restart));
        steps.extend(r.pause.map(Step::Pause));
        steps.extend(r.resume.map(Step::Resume));
        steps.extend(r.stop.map(Step::Stop));
        steps.extend(r.suspend.map(Step::Suspend));
        steps.extend(r.wake.map(Step::Wake));
        steps.extend(r.clock_step.map(Step::ClockStep));
        steps.extend(r.drift.map(Step::Drift));
        steps.extend(r.wipe_state.map(Step::WipeState));
        steps.extend(r.rollback_state.map(Step::RollbackState));
        steps.extend(r.corrupt_state.map(Step::CorruptState));
        steps.extend(r.clone.map(Step::Clone));
        steps.extend(r.freeze.map(Step::Freeze));
        steps.extend(r.replay.map(Step::Replay));
        steps.extend(r.slow_consumer.map(Step::SlowConsumer));
        steps.extend(r.fast_consumer.map(Step::FastConsumer));
        steps.extend(r.forge.map(Step::Forge));
        steps.extend(r.preempt.map(Step::Preempt));
        steps.extend(r.congest.map(Step::Congest));
        steps.extend(r.uncongest.map(Step::Uncongest));
        steps.extend(r.lag.map(Step::Lag));
        steps.extend(r.unlag.map(Step::Unlag));
        steps.extend(r.resign.map(Step::Resign));
        steps.extend(r.campaign.map(Step::Campaign));
        steps.extend(r.server_down.map(Step::ServerDown));
        steps.extend(r.server_up.map(Step::ServerUp));
        steps.extend(r.freeze_connection.map(Step::FreezeConnection));
        steps.extend(r.thaw_connection.map(Step::ThawConnection));
        steps.extend(r.resize.map(Step::Resize));
        steps.extend(r.drop_message.map(Step::DropMessage));
        steps.extend(r.delay_message.map(Step::DelayMessage));
        steps.extend(r.duplicate_message.map(Step::DuplicateMessage));
        match <[Step; 1]>::try_from(steps) {
            Ok([step]) => Ok(At { time: r.time, step }),
            Err(_) => Err(format!(
                "the [[at]] step at {:?} must have exactly one action",
                r.time.0
            )),
        }
    }
}

impl From<At> for RawAt {
    fn from(a: At) -> RawAt {
        let mut r = RawAt {
            time: a.time,
            ..RawAt::default()
        };
        match a.step {
            Step::Partition(g) => r.partition = Some(g),
            Step::OneWay(x, y) => r.one_way = Some((x, y)),
            Step::IsolateLeader(x) => r.isolate_leader = Some(x),
            Step::Cut(l) => r.cut = Some(l),
            Step::Loss(l) => r.loss = Some(l),
            Step::Latency(l) => r.latency = Some(l),
            Step::Heal => r.heal = true,
            Step::Kill(n) => r.kill = Some(n),
            Step::Restart(n) => r.restart = Some(n),
            Step::Pause(n) => r.pause = Some(n),
            Step::Resume(n) => r.resume = Some(n),
            Step::Stop(n) => r.stop = Some(n),
            Step::Suspend(x) => r.suspend = Some(x),
            Step::Wake(n) => r.wake = Some(n),
            Step::ClockStep(c) => r.clock_step = Some(c),
            Step::Drift(d) => r.drift = Some(d),
            Step::WipeState(n) => r.wipe_state = Some(n),
            Step::RollbackState(x) => r.rollback_state = Some(x),
            Step::CorruptState(n) => r.corrupt_state = Some(n),
            Step::Clone(n) => r.clone = Some(n),
            Step::Freeze(f) => r.freeze = Some(f),
            Step::Replay(x) => r.replay = Some(x),
            Step::SlowConsumer(n) => r.slow_consumer = Some(n),
            Step::FastConsumer(n) => r.fast_consumer = Some(n),
            Step::Forge(p) => r.forge = Some(p),
            Step::Preempt(p) => r.preempt = Some(p),
            Step::Congest(c) => r.congest = Some(c),
            Step::Uncongest(n) => r.uncongest = Some(n),
            Step::Lag(l) => r.lag = Some(l),
            Step::Unlag(n) => r.unlag = Some(n),
            Step::Resign(n) => r.resign = Some(n),
            Step::Campaign(n) => r.campaign = Some(n),
            Step::ServerDown(n) => r.server_down = Some(n),
            Step::ServerUp(n) => r.server_up = Some(n),
            Step::FreezeConnection(f) => r.freeze_connection = Some(f),
            Step::ThawConnection(n) => r.thaw_connection = Some(n),
            Step::Resize(x) => r.resize = Some(x),
            Step::DropMessage(m) => r.drop_message = Some(m),
            Step::DelayMessage(m) => r.delay_message = Some(m),
            Step::DuplicateMessage(m) => r.duplicate_message = Some(m),
        }
        r
    }
}
