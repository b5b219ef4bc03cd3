//! Election algorithms as sans-IO state machines: each takes `(now, input)` and returns
//! outputs; the driver ([`Membership`](crate::Membership)) runs them over a [`Clock`](crate::Clock) and a
//! [`Network`](crate::Network).

mod allcall;
mod lease;

pub use allcall::AllcallElection;
pub use lease::{LeaseElection, LeaseTiming, MAX_TOKEN_JUMP};

use crate::storage::Durable;
use crate::wire::{
    AgentLoc, Heartbeat, LeaseRecover, LeaseRecovered, LeaseRelease, LeaseReply, LeaseRequest, MemberList,
};
use std::time::Duration;

/// Something an election state machine tells its driver (and, through it, the application).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// This agent now believes it holds the lease from `from` until `until`, both on its own
    /// monotonic clock. Sent on every acquisition and renewal; the later `until` replaces the
    /// earlier one. This is what the simulator's oracle checks.
    Claim {
        /// Fencing token of the lease (`None` in `allcall`, which has none).
        token: Option<u64>,
        /// When the belief started (local monotonic).
        from: Duration,
        /// When it ends at the latest (local monotonic).
        until: Duration,
    },
    /// This agent gave its lease up before `until` (on stop); its claim ends at `at`.
    ClaimEnded {
        /// Local monotonic time the claim ended.
        at: Duration,
    },
    /// The leader as this agent sees it changed.
    Leader {
        /// The leader's ID, if any is known.
        leader: Option<String>,
        /// Whether the leader is this agent.
        is_me: bool,
        /// The fencing token of the leader's lease, if known.
        token: Option<u64>,
        /// When the lease ends (local monotonic), if this agent holds it.
        until: Option<Duration>,
    },
    /// A leader was elected (or re-elected): one entry of the leadership history.
    Elected {
        /// The leader's location; in `allcall`, with the lease it was given.
        leader: AgentLoc,
        /// The fencing token, in `lease`.
        token: Option<u64>,
    },
    /// A member was seen for the first time (or came back, or restarted).
    MemberAdded(AgentLoc),
    /// A member stopped answering.
    MemberLost(AgentLoc),
    /// The connection to the NATS server changed (from the driver, not the election).
    Connection(crate::network::Connection),
    /// A peer runs with a different lease timing (`lease_time`, `max_drift_ppm`): neither
    /// promises to the other. Reported once per peer and digest.
    ConfigMismatch {
        /// The peer's ID.
        peer: String,
        /// Our settings' digest.
        ours: u64,
        /// The peer's.
        theirs: u64,
    },
    /// A peer is configured for another cluster size: this agent promises only candidates
    /// configured for a cluster at least as large as its own, and does not defer to the rank
    /// of one configured for a smaller one. Expected while the size is being changed, one
    /// agent at a time; otherwise a deployment mistake. Reported once per peer and size.
    SizeMismatch {
        /// The peer's ID.
        peer: String,
        /// Our `cluster_size`.
        ours: usize,
        /// The peer's.
        theirs: u64,
    },
    /// This start has not yet learned the highest token in use (its state may be lost or
    /// rolled back): it neither promises nor campaigns. Sent when the wait begins and every
    /// few seconds while it lasts.
    WaitingForRecovery {
        /// Peers whose answers count so far, by ID.
        answered: Vec<String>,
        /// How many such answers the start needs (`cluster_size − quorum + F`).
        need: usize,
        /// Whether this agent started without usable state: if this is the first start of a
        /// brand-new cluster, the operator must say so (`initial_cluster_state = new`).
        lost_state: bool,
    },
    /// The wait is over: the highest token in use is known (`max_token`).
    Recovered {
        /// The highest token the answers (and this agent's state) knew.
        max_token: u64,
    },
    /// Another process runs with this agent's ID (another run ID): while it is heard this
    /// agent neither promises nor campaigns, and it gave up any lease it held. Sent when it
    /// is first heard, and again after it had gone quiet.
    DuplicateId {
        /// The other process's incarnation number.
        inc: u64,
        /// The other process's run ID.
        run: u64,
    },
    /// This agent saw a majority of a larger cluster, agreeing among themselves on other
    /// settings: its own `cluster_size` is too small. From now on (the evidence is kept in its
    /// state until its settings change) it needs as many promises as the larger cluster's
    /// majority, so it cannot lead on its own view.
    Undersized {
        /// This agent's `cluster_size`.
        cluster_size: usize,
        /// The larger cluster's size, as its agents said.
        seen: usize,
    },
    /// The durable state could not be read; it was moved aside (`moved_to`, when the storage
    /// can keep it) and this start treats its state as lost.
    StateUnreadable {
        /// Why it could not be read.
        error: String,
        /// Where the unreadable state now is.
        moved_to: Option<String>,
    },
}

/// What an election state machine asks its driver to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Make this durable before carrying out any later output; if that fails, drop the rest.
    Persist(Durable),
    /// Publish a message (its subject follows from its kind, see [`Publish`]).
    Publish(Publish),
    /// Tell the application (and the simulator's oracle).
    Notice(Notice),
}

/// A message an election publishes. Each kind has its own subject under the configured
/// prefix, so the state machines never build subject strings; the driver maps a kind to its
/// subject through one table built at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publish {
    /// `lease`: a heartbeat on `<prefix>hb`.
    Heartbeat(Heartbeat),
    /// `lease`: a request for promises on `<prefix>lease.request`, answered on this agent's inbox.
    Request(LeaseRequest),
    /// `lease`: the answer to a request, on the request's reply subject.
    Reply {
        /// The request's reply subject.
        to: String,
        /// The answer.
        reply: LeaseReply,
    },
    /// `lease`: a holder's early release on `<prefix>lease.release`.
    Release(LeaseRelease),
    /// `lease`: a starting agent's question on `<prefix>lease.recover`, answered on its
    /// recovery inbox.
    Recover(LeaseRecover),
    /// `lease`: the answer to a [`LeaseRecover`], on the question's reply subject.
    Recovered {
        /// The question's reply subject.
        to: String,
        /// The answer.
        answer: LeaseRecovered,
    },
    /// `allcall`: the recorded leader on `<prefix>allcall`, answered on `<prefix>allreply`.
    Allcall(AgentLoc),
    /// `allcall`: the answer to an allcall, on the allcall's reply subject.
    Pong {
        /// The allcall's reply subject.
        to: String,
        /// This agent's location (with its lease if it leads).
        loc: AgentLoc,
    },
    /// A membership report on `<prefix>lost`, `<prefix>added` or `<prefix>list`.
    Report(Report, MemberList),
}

/// Which membership report a [`MemberList`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Members that went away (`<prefix>lost`).
    Lost,
    /// Members that arrived (`<prefix>added`).
    Added,
    /// The member set at an election, with the leader's ID (`<prefix>list`).
    List,
}

impl From<Publish> for Output {
    fn from(p: Publish) -> Self {
        Output::Publish(p)
    }
}

impl From<Notice> for Output {
    fn from(n: Notice) -> Self {
        Output::Notice(n)
    }
}
