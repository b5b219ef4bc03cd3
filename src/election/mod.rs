//! Election algorithms as sans-IO state machines: each takes `(now, input)` and returns
//! outputs; the driver in [`crate::membership`] runs them over a [`Clock`](crate::Clock) and a
//! [`Network`](crate::Network).

pub mod allcall;
pub mod lease;

use crate::wire::AgentLoc;
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
}
