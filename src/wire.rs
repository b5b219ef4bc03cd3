//! Wire types: hnatsd's JSON shapes (`AgentLoc`, `ExtInt`, `HostPort`, the member list with
//! `LeadID`) and the messages of the `lease` algorithm, with bounded, panic-free decoding.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::sync::Arc;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Default largest message the decoder accepts.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;

/// Why a message could not be decoded. The caller counts it and drops the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The message is larger than the limit.
    #[error("message of {size} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Size of the message.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// The bytes are not the expected JSON (truncated, wrong types, not UTF-8, ...).
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Decodes a JSON message of at most `max` bytes. Unknown fields are ignored.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, WireError> {
    if bytes.len() > max {
        return Err(WireError::TooLarge { size: bytes.len(), max });
    }
    serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))
}

/// How many decoded messages a thread that shares decodes remembers.
const SHARED_DECODES: usize = 8;

thread_local! {
    static SHARED: std::cell::RefCell<Shared> = const { std::cell::RefCell::new(Shared { on: false, recent: std::collections::VecDeque::new(), hits: 0 }) };
}

/// The last messages decoded on this thread, by their bytes.
struct Shared {
    on: bool,
    recent: std::collections::VecDeque<Decoded>,
    /// Parses saved (read by tests: the values alone cannot tell a hit from a parse).
    hits: u64,
}

/// A message's bytes and what they decoded to.
type Decoded = (bytes::Bytes, Arc<dyn std::any::Any + Send + Sync>);

/// Lets the agents that this thread runs share decoded messages: [`decode_shared`] then
/// parses the same bytes once, however many of them receive the message, and hands each the
/// same (immutable) result.
///
/// For a process that runs a whole cluster on one thread, as the simulator and an embedded
/// [`Hub`](crate::Hub) cluster do, where every agent receives every peer's heartbeat. Decoding
/// is a pure function of the bytes, so what each agent gets is exactly what it would have
/// parsed itself; the size limit is still checked per agent, whose limits may differ. Off by
/// default: an agent alone in its process would only pay for the lookups.
pub fn share_decodes(on: bool) {
    SHARED.with(|s| {
        let mut s = s.borrow_mut();
        s.on = on;
        s.recent.clear();
    });
}

/// Decodes like [`decode`]; on a thread where [`share_decodes`] is on, the same bytes are
/// parsed once and every later call gets the same result (shared, not copied: a receiver
/// that keeps part of it clones that part).
pub fn decode_shared<T: DeserializeOwned + Send + Sync + 'static>(
    bytes: &bytes::Bytes,
    max: usize,
) -> Result<Arc<T>, WireError> {
    if bytes.len() > max || !SHARED.with(|s| s.borrow().on) {
        return decode(bytes, max).map(Arc::new);
    }
    let hit = SHARED.with(|s| {
        let s = s.borrow();
        // Receivers of one message decode it one after another: the newest is the likeliest,
        // and it is usually the very same buffer (the entry holds it, so the address cannot
        // have been reused); equal bytes elsewhere are found by comparing them.
        let same = |(b, _): &&Decoded| b.as_ptr() == bytes.as_ptr() && b.len() == bytes.len();
        let equal = |(b, _): &&Decoded| *b == *bytes;
        let found = s
            .recent
            .iter()
            .rev()
            .find(same)
            .or_else(|| s.recent.iter().rev().find(equal));
        found.and_then(|(_, v)| v.clone().downcast::<T>().ok())
    });
    if let Some(v) = hit {
        SHARED.with(|s| s.borrow_mut().hits += 1);
        return Ok(v);
    }
    let v = Arc::new(decode::<T>(bytes, max)?);
    SHARED.with(|s| {
        let mut s = s.borrow_mut();
        if s.recent.len() == SHARED_DECODES {
            s.recent.pop_front();
        }
        s.recent.push_back((bytes.clone(), v.clone()));
    });
    Ok(v)
}

/// Encodes a message as JSON.
pub fn encode<T: Serialize>(msg: &T) -> bytes::Bytes {
    // Serialising these plain structs cannot fail (no maps with non-string keys, no
    // fallible Serialize impls); an empty body would be dropped by receivers as malformed.
    bytes::Bytes::from(serde_json::to_vec(msg).unwrap_or_default())
}

/// A host and port, as in hnatsd's `HostPort`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HostPort {
    /// Host name or address.
    #[serde(default)]
    pub host: String,
    /// TCP port.
    #[serde(default)]
    pub port: i64,
}

/// External and internal port pairs, as in hnatsd's `ExtInt` (sshd secures the external
/// port and forwards to the internal one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExtInt {
    /// The externally reachable endpoint.
    #[serde(rename = "externalHostPort", default)]
    pub external: HostPort,
    /// The endpoint on the loopback side.
    #[serde(rename = "internalHostPort", default)]
    pub internal: HostPort,
}

/// The identity and location of one agent, with hnatsd's JSON field names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AgentLoc {
    /// Server ID (`serverId`).
    #[serde(rename = "serverId", default)]
    pub id: String,
    /// Host of the agent's NATS server (`natsHost`).
    #[serde(rename = "natsHost", default)]
    pub nats_host: String,
    /// Client port of the agent's NATS server (`natsClientPort`).
    #[serde(rename = "natsClientPort", default)]
    pub nats_client_port: i64,
    /// gRPC endpoints (`grpc`).
    #[serde(default)]
    pub grpc: ExtInt,
    /// When the leader's lease expires, in wall time; `None` for any non-leader. On the wire
    /// `None` is Go's zero time, `0001-01-01T00:00:00Z`.
    #[serde(rename = "leaseExpires", default, with = "go_time")]
    pub lease_expires: Option<OffsetDateTime>,
    /// Lower rank is preferred as leader (`rank`).
    #[serde(default)]
    pub rank: i64,
    /// Process ID (`pid`): tells apart two agents that share a NATS server.
    #[serde(default)]
    pub pid: i64,
}

impl AgentLoc {
    /// A location with just an ID and a rank.
    pub fn new(id: impl Into<String>, rank: i64) -> Self {
        AgentLoc {
            id: id.into(),
            rank,
            ..Default::default()
        }
    }

    /// The same location with no lease, as hnatsd stores members.
    pub fn without_lease(&self) -> AgentLoc {
        AgentLoc {
            lease_expires: None,
            ..self.clone()
        }
    }
}

/// hnatsd's `AgentLocLessThan`: whether `i` is preferred over `j` as leader.
///
/// An empty ID sorts after every non-empty one (whatever the ranks); then lower rank, then ID,
/// NATS host and client port (empty strings sort high), then pid; on a full tie the later lease
/// expiry wins. `grpc` is not compared.
pub fn agent_loc_less_than(i: &AgentLoc, j: &AgentLoc) -> bool {
    agent_loc_cmp(i, j) == Ordering::Less
}

/// The total order behind [`agent_loc_less_than`].
pub fn agent_loc_cmp(i: &AgentLoc, j: &AgentLoc) -> Ordering {
    match (i.id.is_empty(), j.id.is_empty()) {
        (true, true) => return Ordering::Equal,
        (false, true) => return Ordering::Less,
        (true, false) => return Ordering::Greater,
        (false, false) => {}
    }
    i.rank
        .cmp(&j.rank)
        .then_with(|| cmp_str_empty_high(&i.id, &j.id))
        .then_with(|| cmp_str_empty_high(&i.nats_host, &j.nats_host))
        .then_with(|| i.nats_client_port.cmp(&j.nats_client_port))
        .then_with(|| i.pid.cmp(&j.pid))
        // The later expiry is preferred, so it sorts first.
        .then_with(|| lease_nanos(j).cmp(&lease_nanos(i)))
}

fn cmp_str_empty_high(a: &str, b: &str) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.cmp(b),
    }
}

fn lease_nanos(l: &AgentLoc) -> i128 {
    // Go's zero time is far before any real lease.
    l.lease_expires.map(|t| t.unix_timestamp_nanos()).unwrap_or(i128::MIN)
}

/// hnatsd's member list report (`lost`, `added`, `list`):
/// `{"LeadID":"...","Members":[AgentLoc...]}`, members sorted by [`agent_loc_cmp`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberList {
    /// ID of the leader (empty in `lost` and `added` reports).
    #[serde(rename = "LeadID", default)]
    pub lead_id: String,
    /// The members, best first.
    #[serde(rename = "Members", default, deserialize_with = "null_as_empty")]
    pub members: Vec<AgentLoc>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<AgentLoc>, D::Error> {
    Ok(Option::<Vec<AgentLoc>>::deserialize(d)?.unwrap_or_default())
}

/// Largest fencing token, incarnation or nonce-free counter accepted from the network
/// (2^53: exact in every JSON implementation, and more tokens than a cluster can use).
/// Larger values are out of range: the message is counted and dropped.
pub const MAX_COUNTER: u64 = 1 << 53;

/// Largest cluster size an agent may be configured for.
pub const MAX_CLUSTER_SIZE: usize = 1024;

/// Longest agent ID accepted from the network, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// Whether `id` is a usable agent ID: 1 to [`MAX_ID_LEN`] bytes.
pub fn id_in_range(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN
}

/// Identity of one run of one agent: its ID, an incarnation number that grows with every
/// restart (kept in [`Storage`](crate::Storage)), and a random run ID drawn at start.
///
/// The incarnation number orders runs while the state file lasts; the run ID tells runs
/// apart when it does not (a start whose file was lost counts from 1 again) and tells two
/// processes started with the same configured ID apart. Nothing an earlier run sent (a
/// release, a grant, a recovery answer) matches a later run's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Incarnation {
    /// The agent's ID.
    pub id: String,
    /// Which run of the agent.
    pub inc: u64,
    /// The run's random ID (0 from a sender that predates run IDs).
    #[serde(default)]
    pub run: u64,
}

/// A lease as seen from outside the holder, carried in heartbeats.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseView {
    /// The fencing token of the lease.
    pub token: u64,
    /// Time left on the holder's lease when the heartbeat was sent, in milliseconds.
    pub remaining_ms: u64,
}

/// `lease` algorithm: the heartbeat every agent publishes each beat on `<prefix>hb`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Who sends it (its `leaseExpires` is set while it holds a lease).
    pub loc: AgentLoc,
    /// Which run of the sender.
    pub inc: u64,
    /// The sender's run ID (see [`Incarnation::run`]).
    #[serde(default)]
    pub run: u64,
    /// The sender's configured `cluster_size` (0: not said). With [`Heartbeat::config`] it
    /// lets an agent configured for a smaller cluster see that it is wrong.
    #[serde(default)]
    pub cluster_size: u64,
    /// The sender's lease, if it holds one.
    #[serde(default)]
    pub lease: Option<LeaseView>,
    /// The highest fencing token the sender knows of.
    #[serde(default)]
    pub max_token: u64,
    /// Digest of the sender's safety-relevant settings ([`MembershipCfg::safety_digest`]).
    ///
    /// [`MembershipCfg::safety_digest`]: crate::MembershipCfg::safety_digest
    #[serde(default)]
    pub config: u64,
    /// The sender does not campaign (it resigned): others do not defer to its rank. Left out
    /// of the message when false, so heartbeats of agents that never resign are unchanged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passive: bool,
    /// The sender cannot campaign yet (a restart in quarantine or recovering, disconnected,
    /// listening after a reconnect, hearing no one, too slow to gather a majority in time, or
    /// without a majority in sight that may promise it): a holder does not step aside for its
    /// rank, and granters do not refuse others for it, until it can. Left out of the message
    /// when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub waiting: bool,
    /// The sender promises nothing yet (a start in quarantine or still recovering the highest
    /// token, or one whose majority is too small for the agents it sees): a candidate does not
    /// count on its promise. Left out of the message when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quarantined: bool,
}

/// `lease` algorithm: a candidate asks for a promise (`<prefix>lease.request`); the reply
/// subject carries the answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// The candidate.
    pub candidate: Incarnation,
    /// The candidate's rank (granters prefer the best-ranked live member).
    pub rank: i64,
    /// The fencing token the lease will carry.
    pub token: u64,
    /// Identifies the attempt, so stale answers are ignored.
    pub attempt: u64,
    /// Digest of the candidate's lease timing: a granter whose own differs refuses.
    #[serde(default)]
    pub config: u64,
    /// The candidate's configured `cluster_size` (0: not said): a granter configured for a
    /// larger cluster refuses, since the candidate's majority could be too small for the
    /// agents that may grant.
    #[serde(default)]
    pub cluster_size: u64,
}

/// `lease` algorithm: a granter's answer to a [`LeaseRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseReply {
    /// Who answers.
    pub granter: Incarnation,
    /// The attempt answered.
    pub attempt: u64,
    /// The token asked for.
    pub token: u64,
    /// Whether the promise was made.
    pub granted: bool,
    /// The highest token the granter has promised, so a refused candidate can outbid it.
    pub max_token: u64,
}

/// `lease` algorithm: a starting agent asks its peers for the highest token they know
/// (`<prefix>lease.recover`), so that it never promises or takes a token at or below one
/// already in use, whatever its own state file says.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseRecover {
    /// The starting agent.
    pub who: Incarnation,
    /// A number the answers must echo, so an old answer replayed later is not counted.
    pub nonce: u64,
}

/// `lease` algorithm: a peer's answer to a [`LeaseRecover`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseRecovered {
    /// Who answers.
    pub peer: Incarnation,
    /// The nonce of the question.
    pub nonce: u64,
    /// The highest token the peer has promised or seen.
    pub max_token: u64,
    /// Whether the peer's own knowledge is whole: it loaded its state file, or recovered
    /// itself. Only such answers count towards recovery (a peer that lost its file too might
    /// know nothing of a token it promised).
    #[serde(default)]
    pub authoritative: bool,
}

/// `lease` algorithm: a holder gives its lease up early (`<prefix>lease.release`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseRelease {
    /// The holder that no longer holds the lease.
    pub holder: Incarnation,
    /// The token of the lease given up.
    pub token: u64,
}

mod go_time {
    //! Go's `time.Time` JSON: RFC 3339 with nanoseconds, zero time for "none".
    use super::*;

    const GO_ZERO: &str = "0001-01-01T00:00:00Z";

    pub(super) fn serialize<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            None => s.serialize_str(GO_ZERO),
            Some(t) => {
                let text = t.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
                s.serialize_str(&text)
            }
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
        d.deserialize_option(GoTime)
    }

    /// Reads the text in place when it can (no allocation), and knows Go's zero time without
    /// parsing it: every non-leader's heartbeat carries it.
    struct GoTime;

    impl<'de> serde::de::Visitor<'de> for GoTime {
        type Value = Option<OffsetDateTime>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an RFC 3339 time or null")
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(GoTime)
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            if text.is_empty() || text == GO_ZERO {
                return Ok(None);
            }
            let t = OffsetDateTime::parse(text, &Rfc3339).map_err(E::custom)?;
            Ok(if t.year() <= 1 { None } else { Some(t) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn loc(id: &str, rank: i64) -> AgentLoc {
        AgentLoc::new(id, rank)
    }

    #[test]
    fn shared_decodes_give_each_caller_what_it_would_have_parsed() {
        let hb = |id: &str, token: u64| Heartbeat {
            loc: loc(id, 1),
            inc: 3,
            run: 0,
            cluster_size: 3,
            lease: None,
            max_token: token,
            config: 7,
            passive: false,
            waiting: false,
            quarantined: false,
        };
        let (a, b) = (encode(&hb("a", 1)), encode(&hb("b", u64::MAX)));
        let hits = || SHARED.with(|s| s.borrow().hits);
        for on in [false, true] {
            share_decodes(on);
            let before = hits();
            for _ in 0..3 {
                assert_eq!(decode_shared::<Heartbeat>(&a, 4096), Ok(Arc::new(hb("a", 1))));
                assert_eq!(decode_shared::<Heartbeat>(&b, 4096), Ok(Arc::new(hb("b", u64::MAX))));
            }
            // Each message parsed once, then shared (a copy of equal bytes hits too).
            let copy = bytes::Bytes::copy_from_slice(&a);
            assert_eq!(decode_shared::<Heartbeat>(&copy, 4096), Ok(Arc::new(hb("a", 1))));
            assert_eq!(hits() - before, if on { 5 } else { 0 });
            // The limit is each caller's own, even for bytes already decoded.
            assert!(matches!(
                decode_shared::<Heartbeat>(&a, 10),
                Err(WireError::TooLarge { .. })
            ));
            // The same bytes asked for as another type are parsed as that type.
            assert!(matches!(
                decode_shared::<LeaseRelease>(&a, 4096),
                Err(WireError::Malformed(_))
            ));
            assert!(matches!(
                decode_shared::<Heartbeat>(&bytes::Bytes::from_static(b"{"), 4096),
                Err(WireError::Malformed(_))
            ));
            // More distinct messages than are remembered.
            for t in 0..(3 * SHARED_DECODES as u64) {
                assert_eq!(
                    decode_shared::<Heartbeat>(&encode(&hb("c", t)), 4096),
                    Ok(Arc::new(hb("c", t)))
                );
            }
        }
        share_decodes(false);
    }

    #[test]
    fn lower_rank_wins_then_id() {
        assert!(agent_loc_less_than(&loc("b", 0), &loc("a", 1)));
        assert!(agent_loc_less_than(&loc("a", 1), &loc("b", 1)));
        assert!(!agent_loc_less_than(&loc("b", 1), &loc("a", 1)));
    }

    #[test]
    fn empty_id_sorts_after_any_non_empty_id_even_with_lower_rank() {
        assert!(agent_loc_less_than(&loc("a", 1), &AgentLoc::default()));
        assert!(agent_loc_less_than(&loc("z", 100), &loc("", -100)));
        assert!(!agent_loc_less_than(&loc("", -100), &loc("z", 100)));
        assert!(!agent_loc_less_than(&loc("", 0), &loc("", 0)));
    }

    #[test]
    fn host_port_pid_break_ties_in_that_order() {
        let mut a = loc("x", 0);
        let mut b = loc("x", 0);
        a.nats_host = "h1".into();
        b.nats_host = "h2".into();
        b.nats_client_port = 1;
        a.nats_client_port = 9;
        assert!(agent_loc_less_than(&a, &b), "host decides before port");
        b.nats_host = "h1".into();
        assert!(agent_loc_less_than(&b, &a), "then port");
        b.nats_client_port = 9;
        a.pid = 1;
        b.pid = 2;
        assert!(agent_loc_less_than(&a, &b), "then pid");
        b.nats_host = String::new();
        assert!(agent_loc_less_than(&a, &b), "an empty host sorts high");
    }

    #[test]
    fn a_full_tie_prefers_the_later_lease() {
        let mut early = loc("x", 0);
        let mut late = loc("x", 0);
        early.lease_expires = Some(datetime!(2024-01-01 00:00:00 UTC));
        late.lease_expires = Some(datetime!(2024-01-01 00:00:01 UTC));
        assert!(agent_loc_less_than(&late, &early));
        assert!(!agent_loc_less_than(&early, &late));
        assert!(agent_loc_less_than(&early, &loc("x", 0)), "any lease beats none");
        assert!(!agent_loc_less_than(&late, &late.clone()));
    }

    #[test]
    fn agent_loc_uses_the_seed_field_names() {
        let mut l = loc("srv1", 3);
        l.nats_host = "10.0.0.1".into();
        l.nats_client_port = 4222;
        l.pid = 77;
        l.grpc.external = HostPort {
            host: "ext".into(),
            port: 1,
        };
        l.grpc.internal = HostPort {
            host: "int".into(),
            port: 2,
        };
        l.lease_expires = Some(datetime!(2017-04-25 10:00:00.5 UTC));
        let v: serde_json::Value = serde_json::from_slice(&encode(&l)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "serverId": "srv1", "natsHost": "10.0.0.1", "natsClientPort": 4222,
                "grpc": {"externalHostPort": {"host": "ext", "port": 1},
                         "internalHostPort": {"host": "int", "port": 2}},
                "leaseExpires": "2017-04-25T10:00:00.5Z", "rank": 3, "pid": 77
            })
        );
        let back: AgentLoc = decode(&encode(&l), DEFAULT_MAX_MESSAGE).unwrap();
        assert_eq!(back, l);
    }

    #[test]
    fn no_lease_is_gos_zero_time_and_offsets_parse() {
        let v: serde_json::Value = serde_json::from_slice(&encode(&loc("a", 0))).unwrap();
        assert_eq!(v["leaseExpires"], "0001-01-01T00:00:00Z");
        let go = br#"{"serverId":"a","natsHost":"","natsClientPort":0,"grpc":{"externalHostPort":{"host":"","port":0},"internalHostPort":{"host":"","port":0}},"leaseExpires":"2017-04-25T03:00:00.123456789-07:00","rank":0,"pid":0}"#;
        let l: AgentLoc = decode(go, DEFAULT_MAX_MESSAGE).unwrap();
        assert_eq!(l.lease_expires, Some(datetime!(2017-04-25 10:00:00.123456789 UTC)));
        let zero: AgentLoc = decode(br#"{"serverId":"a","leaseExpires":"0001-01-01T00:00:00Z"}"#, 1024).unwrap();
        assert_eq!(zero.lease_expires, None);
    }

    #[test]
    fn member_list_matches_the_seed_report() {
        let list = MemberList {
            lead_id: "a".into(),
            members: vec![loc("a", 0)],
        };
        let v: serde_json::Value = serde_json::from_slice(&encode(&list)).unwrap();
        assert_eq!(v["LeadID"], "a");
        assert_eq!(v["Members"][0]["serverId"], "a");
        let back: MemberList = decode(br#"{"LeadID":"","Members":null}"#, 1024).unwrap();
        assert!(back.members.is_empty());
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let l: AgentLoc = decode(br#"{"serverId":"a","rank":2,"future":{"x":[1,2]}}"#, 1024).unwrap();
        assert_eq!((l.id.as_str(), l.rank), ("a", 2));
    }

    #[test]
    fn malformed_oversized_and_truncated_input_are_errors() {
        let full = encode(&loc("abc", 1));
        for cut in 0..full.len() {
            assert!(
                matches!(decode::<AgentLoc>(&full[..cut], 1024), Err(WireError::Malformed(_))),
                "cut at {cut}"
            );
        }
        assert_eq!(
            decode::<AgentLoc>(&full, 10),
            Err(WireError::TooLarge {
                size: full.len(),
                max: 10
            })
        );
        for bad in [
            &b"\xff\xfe"[..],
            b"[1]",
            b"\"x\"",
            b"{\"rank\":\"x\"}",
            b"{\"leaseExpires\":\"yesterday\"}",
            b"null",
        ] {
            assert!(decode::<AgentLoc>(bad, 1024).is_err(), "{bad:?}");
        }
        assert!(decode::<LeaseRequest>(b"{\"candidate\":{}}", 1024).is_err());
    }
}
