//! The subjects of one agent's election, built once at start from the configuration: what the
//! driver subscribes to, how an incoming subject maps to a [`Topic`], and where each kind of
//! [`Publish`] goes. Nothing else in the crate spells a membership subject.

use crate::config::{Algorithm, MembershipCfg};
use crate::election::{Publish, Report};
use crate::wire::Incarnation;

/// What an incoming message is, by the subject it arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Topic {
    /// `<prefix>hb`: a `lease` heartbeat.
    Heartbeat,
    /// `<prefix>lease.request`: a request for promises.
    Request,
    /// `<prefix>lease.release`: a holder's early release.
    Release,
    /// This incarnation's own inbox: answers to its requests.
    Inbox,
    /// `<prefix>lease.recover`: a starting agent asks for the highest token.
    Recover,
    /// This incarnation's recovery inbox: answers to its own question.
    RecoveryInbox,
    /// `<prefix>allcall`.
    Allcall,
    /// `<prefix>allreply`.
    Allreply,
}

/// Every subject one agent uses.
#[derive(Debug, Clone)]
pub(crate) struct Subjects {
    hb: String,
    request: String,
    release: String,
    inbox: String,
    recover: String,
    recovery_inbox: String,
    allcall: String,
    allreply: String,
    lost: String,
    added: String,
    list: String,
    /// What the agent listens on, in subscription order.
    listen: Vec<(String, Topic)>,
}

impl Subjects {
    /// The subjects for `cfg`'s algorithm; `me` names the `lease` inbox (one per incarnation,
    /// so answers meant for an earlier run never reach this one).
    pub(crate) fn new(cfg: &MembershipCfg, me: Option<&Incarnation>) -> Self {
        let p = &cfg.election_prefix();
        let s = |name: &str| format!("{p}{name}");
        let inbox = me.map_or_else(String::new, |me| {
            format!("{p}lease.reply.{}.{}.{:x}", me.id, me.inc, me.run)
        });
        let recovery_inbox = me.map_or_else(String::new, |me| {
            format!("{p}lease.recovery.{}.{}.{:x}", me.id, me.inc, me.run)
        });
        let mut subjects = Subjects {
            hb: s("hb"),
            request: s("lease.request"),
            release: s("lease.release"),
            inbox,
            recover: s("lease.recover"),
            recovery_inbox,
            allcall: s("allcall"),
            allreply: s("allreply"),
            lost: s("lost"),
            added: s("added"),
            list: s("list"),
            listen: Vec::new(),
        };
        subjects.listen = match cfg.algorithm {
            Algorithm::Lease => vec![
                (subjects.hb.clone(), Topic::Heartbeat),
                (subjects.request.clone(), Topic::Request),
                (subjects.release.clone(), Topic::Release),
                (subjects.inbox.clone(), Topic::Inbox),
                (subjects.recover.clone(), Topic::Recover),
                (subjects.recovery_inbox.clone(), Topic::RecoveryInbox),
            ],
            Algorithm::Allcall => vec![
                (subjects.allcall.clone(), Topic::Allcall),
                (subjects.allreply.clone(), Topic::Allreply),
            ],
        };
        subjects
    }

    /// The subjects to subscribe to, in order.
    pub(crate) fn listen(&self) -> impl Iterator<Item = &str> {
        self.listen.iter().map(|(s, _)| s.as_str())
    }

    /// The topic of a message that arrived on `subject`, if it is one of ours.
    pub(crate) fn topic(&self, subject: &str) -> Option<Topic> {
        self.listen.iter().find(|(s, _)| s == subject).map(|(_, t)| *t)
    }

    /// Where `p` goes: its subject and reply subject.
    pub(crate) fn route<'a>(&'a self, p: &'a Publish) -> (&'a str, Option<&'a str>) {
        match p {
            Publish::Heartbeat(_) => (&self.hb, None),
            Publish::Request(_) => (&self.request, Some(&self.inbox)),
            Publish::Reply { to, .. } | Publish::Pong { to, .. } | Publish::Recovered { to, .. } => (to, None),
            Publish::Recover(_) => (&self.recover, Some(&self.recovery_inbox)),
            Publish::Release(_) => (&self.release, None),
            Publish::Allcall(_) => (&self.allcall, Some(&self.allreply)),
            Publish::Report(Report::Lost, _) => (&self.lost, None),
            Publish::Report(Report::Added, _) => (&self.added, None),
            Publish::Report(Report::List, _) => (&self.list, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{AgentLoc, MemberList};

    #[test]
    fn lease_subjects_listen_in_order_and_route_by_kind() {
        let mut cfg = MembershipCfg::default();
        cfg.id = "a".into();
        let me = Incarnation {
            id: "a".into(),
            inc: 3,
            run: 0x2a,
        };
        let s = Subjects::new(&cfg, Some(&me));
        let listen: Vec<&str> = s.listen().collect();
        assert_eq!(
            listen,
            [
                "_nats.cluster.members.hb",
                "_nats.cluster.members.lease.request",
                "_nats.cluster.members.lease.release",
                "_nats.cluster.members.lease.reply.a.3.2a",
                "_nats.cluster.members.lease.recover",
                "_nats.cluster.members.lease.recovery.a.3.2a",
            ]
        );
        assert_eq!(s.topic("_nats.cluster.members.lease.reply.a.3.2a"), Some(Topic::Inbox));
        assert_eq!(s.topic("_nats.cluster.members.allcall"), None);
        let list = Publish::Report(Report::List, MemberList::default());
        assert_eq!(s.route(&list), ("_nats.cluster.members.list", None));
    }

    #[test]
    fn allcall_subjects_are_the_original_ones() {
        let mut cfg = MembershipCfg::default();
        cfg.algorithm = Algorithm::Allcall;
        let s = Subjects::new(&cfg, None);
        assert_eq!(
            s.listen().collect::<Vec<_>>(),
            ["_nats.cluster.members.allcall", "_nats.cluster.members.allreply"]
        );
        let call = Publish::Allcall(AgentLoc::default());
        assert_eq!(
            s.route(&call),
            ("_nats.cluster.members.allcall", Some("_nats.cluster.members.allreply"))
        );
    }
}
