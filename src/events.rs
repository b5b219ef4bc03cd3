//! What an agent reports: one vocabulary for the JSON lines `leasehold-agent` prints, the
//! lines `leasehold-sim real` parses back, and the trace the simulator writes from notices.
//!
//! A line is an [`EventLine`]: the schema version `v` ([`EVENT_VERSION`]), the agent's `node`,
//! `at_unix_us` (its host's wall clock when it printed the line) and the [`AgentEvent`], whose
//! `event` field names it. A notice becomes an event through [`AgentEvent::of_notice`], the
//! one place that maps the library's [`Notice`] to what is printed. The schema, every event and
//! every field, is documented in the README ("The agent's events"), and a test holds the two
//! together.
//!
//! Readers should accept fields and events they do not know: a later version only adds them;
//! a change to what an existing field means raises [`EVENT_VERSION`].

use crate::election::Notice;
use crate::network::Connection;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The version of the event schema, printed as `v` on every line.
pub const EVENT_VERSION: u32 = 1;

/// One JSON line of `leasehold-agent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventLine {
    /// The schema version ([`EVENT_VERSION`]).
    pub v: u32,
    /// The agent's ID (`--id`).
    pub node: String,
    /// The host's wall clock when the line was printed, in Unix microseconds.
    pub at_unix_us: u64,
    /// What happened.
    #[serde(flatten)]
    pub event: AgentEvent,
}

impl EventLine {
    /// A line of this schema version.
    pub fn new(node: &str, at_unix_us: u64, event: AgentEvent) -> Self {
        EventLine {
            v: EVENT_VERSION,
            node: node.to_string(),
            at_unix_us,
            event,
        }
    }
}

/// The wall-clock and remaining-time fields of a lease, read off the agent's clocks when the
/// line is printed (`None` where the event has no such end, or where nothing reads a wall
/// clock, as in the simulator).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseWall {
    /// Milliseconds left of the lease, on this agent's clock.
    pub lease_remaining_ms: Option<u64>,
    /// When the lease began, as this host's wall clock in Unix microseconds.
    pub lease_from_unix_us: Option<u64>,
    /// When the lease ends, as this host's wall clock in Unix microseconds.
    pub lease_until_unix_us: Option<u64>,
}

/// Maps readings of the agent's monotonic clock to its host's wall clock, at one instant.
#[derive(Debug, Clone, Copy)]
pub struct WallAt {
    /// The monotonic clock's reading now.
    pub now: Duration,
    /// The wall clock now, in Unix microseconds.
    pub now_unix_us: u64,
}

impl WallAt {
    /// The wall-clock fields of a lease from `from` until `until` (monotonic readings).
    pub fn lease(&self, from: Option<Duration>, until: Option<Duration>) -> LeaseWall {
        let unix = |t: Duration| {
            if t >= self.now {
                self.now_unix_us.saturating_add(micros(t - self.now))
            } else {
                self.now_unix_us.saturating_sub(micros(self.now - t))
            }
        };
        LeaseWall {
            lease_remaining_ms: until.map(|u| millis(u.saturating_sub(self.now))),
            lease_from_unix_us: from.map(unix),
            lease_until_unix_us: until.map(unix),
        }
    }
}

/// Every event an agent reports, named by its `event` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AgentEvent {
    /// The agent connected and runs.
    Started {
        /// `lease` or `allcall`.
        algorithm: String,
        /// The NATS server's URL.
        nats: String,
    },
    /// The agent stopped; the last line. Counts of what it dropped or failed to do.
    Stopped {
        /// Messages dropped as malformed or too large.
        malformed: u64,
        /// Well-formed messages dropped for a value out of range.
        out_of_range: u64,
        /// Messages dropped for a missing or bad cluster-key seal.
        unauthenticated: u64,
        /// Publishes that failed.
        publish_errors: u64,
        /// Publishes dropped because the connection did not take them within a beat.
        publishes_dropped: u64,
        /// Saves of the state file that failed.
        storage_errors: u64,
        /// Notices dropped because a watcher did not keep up.
        notices_dropped: u64,
    },
    /// The leader as this agent sees it changed.
    Leadership {
        /// The leader's ID, if one is known.
        leader: Option<String>,
        /// Whether it is this agent.
        is_leader: bool,
        /// The fencing token of the leader's lease, if known.
        fencing_token: Option<u64>,
        /// When this agent's lease ends, on its monotonic clock (if it holds it).
        until_local_ns: Option<u64>,
        /// Wall-clock view of the lease.
        #[serde(flatten)]
        wall: LeaseWall,
    },
    /// This agent acquired or renewed the lease: it holds it from `from_local_ns` until
    /// `until_local_ns` on its monotonic clock.
    LeaseRenewed {
        /// This agent's ID.
        leader: String,
        /// Always `true`.
        is_leader: bool,
        /// The lease's fencing token.
        fencing_token: Option<u64>,
        /// When the lease began (monotonic, ns; counted from before the request).
        from_local_ns: u64,
        /// When it ends at the latest (monotonic, ns).
        until_local_ns: u64,
        /// Wall-clock view of the lease.
        #[serde(flatten)]
        wall: LeaseWall,
    },
    /// This agent gave its lease up before its end (resign, stop, handover).
    LeaseReleased {
        /// Always `false`.
        is_leader: bool,
        /// When its claim ended (monotonic, ns).
        at_local_ns: u64,
        /// Wall-clock view of the end.
        #[serde(flatten)]
        wall: LeaseWall,
    },
    /// A member was seen for the first time, came back, or restarted.
    MemberAdded {
        /// Its ID.
        member: String,
        /// Its rank.
        rank: i64,
    },
    /// A member stopped answering.
    MemberLost {
        /// Its ID.
        member: String,
        /// Its rank.
        rank: i64,
    },
    /// The connection to NATS is up.
    Connected {
        /// The server's URL.
        nats: String,
    },
    /// The connection to NATS went down: this agent neither holds nor promises until it is back.
    Disconnected {
        /// The server's URL.
        nats: String,
    },
    /// The connection to NATS is back.
    Reconnected {
        /// The server's URL.
        nats: String,
    },
    /// A peer runs with another lease timing (`lease_time`, `max_drift_ppm`): neither
    /// promises to the other.
    ConfigMismatch {
        /// The peer's ID.
        peer: String,
        /// Our settings' digest (16 hex digits).
        ours: String,
        /// The peer's.
        theirs: String,
    },
    /// A peer is configured for another cluster size (expected while the size is changed).
    SizeMismatch {
        /// The peer's ID.
        peer: String,
        /// Our `cluster_size`.
        ours: u64,
        /// The peer's.
        theirs: u64,
    },
    /// This start waits to learn the highest token in use (every 5 s while it waits).
    WaitingForRecovery {
        /// How many answers it needs.
        need: u64,
        /// The peers whose answers count so far.
        answered: Vec<String>,
        /// Whether it started without usable state.
        lost_state: bool,
        /// With `lost_state`: what to do if this is a brand-new cluster.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hint: Option<String>,
    },
    /// The wait is over.
    Recovered {
        /// The highest token in use, as learnt.
        max_token: u64,
    },
    /// Another process runs with this agent's ID: this one neither promises nor campaigns
    /// while it is heard.
    DuplicateId {
        /// The other process's incarnation.
        other_incarnation: u64,
        /// The other process's run ID (16 hex digits).
        other_run: String,
    },
    /// A majority of a larger cluster agrees on other settings: `cluster_size` is too small.
    Undersized {
        /// This agent's `cluster_size`.
        cluster_size: u64,
        /// The larger cluster's size.
        seen: u64,
    },
    /// The state file could not be read and was moved aside.
    StateUnreadable {
        /// Why.
        error: String,
        /// Where it is now, if it could be kept.
        moved_to: Option<String>,
    },
    /// The connection stayed down for `--max-disconnected`; the agent exits 1.
    GaveUp {
        /// The server's URL.
        nats: String,
        /// Why.
        reason: String,
    },
    /// SIGUSR1: the agent gave its lease up and does not campaign until SIGUSR2.
    Resign,
    /// SIGUSR2: the agent takes part in elections again.
    Campaign,
    /// Test clock only (`--test-clock`): from true time `true_ns` (the host's
    /// `CLOCK_MONOTONIC`) on, the agent's clock reads `local_ns` and runs `ppm` fast.
    Clock {
        /// True time (ns).
        true_ns: u64,
        /// The agent's monotonic reading then (ns).
        local_ns: u64,
        /// Its rate error (ppm).
        ppm: i64,
        /// Its wall clock's offset (ns).
        wall_offset_ns: i64,
    },
    /// Test application only (`--test-guard`): a guard said it is valid until `until_local_ns`.
    Guard {
        /// `guard` or `callbacks`.
        via: String,
        /// The guard's token.
        fencing_token: Option<u64>,
        /// When it was asked (monotonic, ns).
        at_local_ns: u64,
        /// The end it gave (monotonic, ns).
        until_local_ns: u64,
    },
    /// Test application only: a guard said it ended.
    GuardEnded {
        /// `guard` or `callbacks`.
        via: String,
        /// The guard's token.
        fencing_token: Option<u64>,
        /// When (monotonic, ns).
        at_local_ns: u64,
    },
}

/// The hint of a start without state that waits (see [`AgentEvent::WaitingForRecovery`]).
pub const NEW_CLUSTER_HINT: &str =
    "if this is the first start of a brand-new cluster, pass --initial-cluster-state new";

impl AgentEvent {
    /// The event of agent `node`'s notice (`None` for those not reported:
    /// [`Notice::Elected`]). `nats` is the server's URL; `wall` maps the agent's clock to its wall clock (`None`: the
    /// wall-clock fields stay empty).
    pub fn of_notice(n: &Notice, node: &str, nats: &str, wall: Option<WallAt>) -> Option<AgentEvent> {
        let lease = |from, until| wall.map(|w| w.lease(from, until)).unwrap_or_default();
        let nats = nats.to_string();
        Some(match n {
            Notice::Leader {
                leader,
                is_me,
                token,
                until,
            } => AgentEvent::Leadership {
                leader: leader.clone(),
                is_leader: *is_me,
                fencing_token: *token,
                until_local_ns: until.map(nanos),
                wall: lease(None, *until),
            },
            Notice::Claim { token, from, until } => AgentEvent::LeaseRenewed {
                leader: node.to_string(),
                is_leader: true,
                fencing_token: *token,
                from_local_ns: nanos(*from),
                until_local_ns: nanos(*until),
                wall: lease(Some(*from), Some(*until)),
            },
            Notice::ClaimEnded { at } => AgentEvent::LeaseReleased {
                is_leader: false,
                at_local_ns: nanos(*at),
                wall: lease(None, Some(*at)),
            },
            Notice::MemberAdded(l) => AgentEvent::MemberAdded {
                member: l.id.clone(),
                rank: l.rank,
            },
            Notice::MemberLost(l) => AgentEvent::MemberLost {
                member: l.id.clone(),
                rank: l.rank,
            },
            Notice::Connection(Connection::Connected) => AgentEvent::Connected { nats },
            Notice::Connection(Connection::Disconnected) => AgentEvent::Disconnected { nats },
            Notice::Connection(Connection::Reconnected) => AgentEvent::Reconnected { nats },
            Notice::ConfigMismatch { peer, ours, theirs } => AgentEvent::ConfigMismatch {
                peer: peer.clone(),
                ours: format!("{ours:016x}"),
                theirs: format!("{theirs:016x}"),
            },
            Notice::SizeMismatch { peer, ours, theirs } => AgentEvent::SizeMismatch {
                peer: peer.clone(),
                ours: *ours as u64,
                theirs: *theirs,
            },
            Notice::WaitingForRecovery {
                answered,
                need,
                lost_state,
            } => AgentEvent::WaitingForRecovery {
                need: *need as u64,
                answered: answered.clone(),
                lost_state: *lost_state,
                hint: lost_state.then(|| NEW_CLUSTER_HINT.to_string()),
            },
            Notice::Recovered { max_token } => AgentEvent::Recovered { max_token: *max_token },
            Notice::DuplicateId { inc, run } => AgentEvent::DuplicateId {
                other_incarnation: *inc,
                other_run: format!("{run:016x}"),
            },
            Notice::Undersized { cluster_size, seen } => AgentEvent::Undersized {
                cluster_size: *cluster_size as u64,
                seen: *seen as u64,
            },
            Notice::StateUnreadable { error, moved_to } => AgentEvent::StateUnreadable {
                error: error.clone(),
                moved_to: moved_to.clone(),
            },
            Notice::Elected { .. } => return None,
        })
    }

    /// The `event` field's value.
    pub fn name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("event").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_default()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::AgentLoc;

    fn loc(id: &str) -> AgentLoc {
        AgentLoc {
            id: id.into(),
            rank: 3,
            ..AgentLoc::default()
        }
    }

    /// One notice of every kind.
    fn every_notice() -> Vec<Notice> {
        vec![
            Notice::Claim {
                token: Some(7),
                from: Duration::from_secs(1),
                until: Duration::from_secs(3),
            },
            Notice::ClaimEnded {
                at: Duration::from_secs(2),
            },
            Notice::Leader {
                leader: Some("a".into()),
                is_me: false,
                token: Some(7),
                until: None,
            },
            Notice::Elected {
                leader: loc("a"),
                token: Some(7),
            },
            Notice::MemberAdded(loc("b")),
            Notice::MemberLost(loc("b")),
            Notice::Connection(Connection::Connected),
            Notice::Connection(Connection::Disconnected),
            Notice::Connection(Connection::Reconnected),
            Notice::ConfigMismatch {
                peer: "b".into(),
                ours: 1,
                theirs: 2,
            },
            Notice::SizeMismatch {
                peer: "b".into(),
                ours: 3,
                theirs: 5,
            },
            Notice::WaitingForRecovery {
                answered: vec!["b".into()],
                need: 2,
                lost_state: true,
            },
            Notice::Recovered { max_token: 9 },
            Notice::DuplicateId { inc: 4, run: 0xabc },
            Notice::Undersized {
                cluster_size: 3,
                seen: 5,
            },
            Notice::StateUnreadable {
                error: "bad".into(),
                moved_to: None,
            },
        ]
    }

    /// One event of every kind: those of the notices, and the agent's own.
    pub(crate) fn every_event() -> Vec<AgentEvent> {
        let wall = WallAt {
            now: Duration::from_secs(2),
            now_unix_us: 1_000_000_000,
        };
        let mut all: Vec<AgentEvent> = every_notice()
            .iter()
            .filter_map(|n| AgentEvent::of_notice(n, "a", "nats://h:4222", Some(wall)))
            .collect();
        all.extend([
            AgentEvent::Started {
                algorithm: "lease".into(),
                nats: "nats://h:4222".into(),
            },
            AgentEvent::Stopped {
                malformed: 1,
                out_of_range: 2,
                unauthenticated: 3,
                publish_errors: 4,
                publishes_dropped: 5,
                storage_errors: 6,
                notices_dropped: 7,
            },
            AgentEvent::GaveUp {
                nats: "nats://h:4222".into(),
                reason: "disconnected".into(),
            },
            AgentEvent::Resign,
            AgentEvent::Campaign,
            AgentEvent::Clock {
                true_ns: 1,
                local_ns: 2,
                ppm: -3,
                wall_offset_ns: -4,
            },
            AgentEvent::Guard {
                via: "guard".into(),
                fencing_token: Some(7),
                at_local_ns: 1,
                until_local_ns: 2,
            },
            AgentEvent::GuardEnded {
                via: "callbacks".into(),
                fencing_token: None,
                at_local_ns: 3,
            },
        ]);
        all
    }

    #[test]
    fn every_event_reads_back_as_it_was_printed_with_version_node_and_time() {
        let all = every_event();
        assert_eq!(all.len(), 23, "every variant once");
        for ev in all {
            let line = EventLine::new("n1", 42, ev);
            let text = serde_json::to_string(&line).unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!((v["v"].as_u64(), v["node"].as_str()), (Some(1), Some("n1")), "{text}");
            assert_eq!(v["event"].as_str(), Some(line.event.name().as_str()), "{text}");
            assert_eq!(serde_json::from_str::<EventLine>(&text).unwrap(), line, "{text}");
        }
    }

    #[test]
    fn the_readme_lists_every_event_and_every_field_of_the_schema() {
        let readme = include_str!("../README.md");
        let start = readme
            .find("### The agent's events")
            .expect("the README has the schema");
        let section = &readme[start..];
        let section = &section[..section[4..].find("\n#").map_or(section.len(), |e| e + 4)];
        assert!(section.contains(&format!("now **{EVENT_VERSION}**")), "the version");
        for field in ["`v`", "`node`", "`at_unix_us`", "`event`"] {
            assert!(section.contains(field), "{field}");
        }
        for ev in every_event() {
            let v = serde_json::to_value(&ev).unwrap();
            let row = section
                .lines()
                .find(|l| {
                    l.split('|')
                        .nth(1)
                        .is_some_and(|first| first.contains(&format!("`{}`", ev.name())))
                })
                .unwrap_or_else(|| panic!("no row for {}", ev.name()));
            for key in v.as_object().unwrap().keys().filter(|k| *k != "event") {
                assert!(
                    row.contains(&format!("`{key}`")),
                    "{}: field {key} not listed",
                    ev.name()
                );
            }
        }
    }

    #[test]
    fn lease_lines_say_their_end_on_the_wall_clock_and_a_reader_ignores_fields_it_does_not_know() {
        let wall = WallAt {
            now: Duration::from_secs(2),
            now_unix_us: 1_000_000_000,
        };
        let claim = Notice::Claim {
            token: Some(7),
            from: Duration::from_secs(1),
            until: Duration::from_secs(5),
        };
        let Some(AgentEvent::LeaseRenewed { wall: w, .. }) = AgentEvent::of_notice(&claim, "a", "", Some(wall)) else {
            panic!("a claim is a lease_renewed line");
        };
        assert_eq!(w.lease_remaining_ms, Some(3000));
        assert_eq!(w.lease_from_unix_us, Some(999_000_000));
        assert_eq!(w.lease_until_unix_us, Some(1_003_000_000));
        let newer = r#"{"v":2,"node":"a","at_unix_us":1,"event":"recovered","max_token":5,"new_field":[1]}"#;
        let line: EventLine = serde_json::from_str(newer).unwrap();
        assert_eq!(line.event, AgentEvent::Recovered { max_token: 5 });
    }
}
