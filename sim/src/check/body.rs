//! What a message in the model carries: one of the production wire types, as the agents'
//! machines take them.

use crate::scenario::MessageKind;
use leasehold::wire::{AgentLoc, Heartbeat, LeaseRecover, LeaseRecovered, LeaseRelease, LeaseReply, LeaseRequest};

/// A message's content.
#[derive(Debug, Clone, Hash)]
pub(crate) enum Body {
    /// `lease`: a heartbeat.
    Heartbeat(Heartbeat),
    /// `lease`: a request for promises.
    Request(LeaseRequest),
    /// `lease`: an answer to a request.
    Reply(LeaseReply),
    /// `lease`: a holder's early release.
    Release(LeaseRelease),
    /// `lease`: a starting agent's question for the highest token.
    Recover(LeaseRecover),
    /// `lease`: an answer to it.
    Recovered(LeaseRecovered),
    /// `allcall`: the call every agent answers (with the caller's recorded leader).
    Allcall(AgentLoc),
    /// `allcall`: an answer, which every agent hears.
    Allreply(AgentLoc),
}

impl Body {
    /// What it is, in the scenario's words.
    pub(crate) fn kind(&self) -> MessageKind {
        match self {
            Body::Heartbeat(_) => MessageKind::Heartbeat,
            Body::Request(_) => MessageKind::Request,
            Body::Reply(_) => MessageKind::Reply,
            Body::Release(_) => MessageKind::Release,
            Body::Recover(_) => MessageKind::Recover,
            Body::Recovered(_) => MessageKind::Recovered,
            Body::Allcall(_) => MessageKind::Allcall,
            Body::Allreply(_) => MessageKind::Allreply,
        }
    }
}
