//! The forger: a stranger on the bus that publishes hostile but well-formed messages (values
//! out of every documented range, phantom members, endless leases) and malformed bytes on
//! the election subjects, and (in router scenarios) hostile answers to router pings. Each
//! forged message is a pure function of its number, so a run that forges replays exactly.
//! (Forging *valid* messages that impersonate a member is what message authentication is
//! for; this forger tests robustness, not authentication.)

use bytes::Bytes;
use leasehold::wire::{
    encode, AgentLoc, Heartbeat, Incarnation, LeaseRecovered, LeaseRelease, LeaseRequest, LeaseView,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use time::OffsetDateTime;

/// One forged message.
#[derive(Debug, Clone)]
pub(crate) struct Forged {
    /// Whose server the forger publishes through (an index, taken modulo the node count).
    pub from: usize,
    /// The subject.
    pub subject: String,
    /// The reply subject, if any.
    pub reply: Option<String>,
    /// The bytes.
    pub payload: Bytes,
    /// What it is, for the trace.
    pub what: &'static str,
}

/// Kinds of forged message.
const KINDS: u64 = 12;

/// Forged message number `pick`, on the election subjects under `prefix`, aimed at `nodes`.
pub(crate) fn forge(pick: u64, prefix: &str, nodes: &[String]) -> Forged {
    let mut r = ChaCha8Rng::seed_from_u64(pick);
    let from = r.gen_range(0..nodes.len().max(1));
    let target = nodes
        .get(r.gen_range(0..nodes.len().max(1)))
        .cloned()
        .unwrap_or_default();
    let phantom = format!("forger-{}", r.gen_range(0..4u32));
    let forging = Forging { pick, prefix, from };
    match pick % KINDS {
        kind @ (0 | 2 | 11) => forging.lease_claim(kind, phantom),
        kind @ (1 | 3 | 10) => forging.odd_heartbeat(kind, &mut r, target, phantom),
        kind @ 4..=6 => forging.lease_message(kind, &mut r, target, phantom),
        kind => forging.junk_or_allcall(kind, &mut r, phantom),
    }
}

/// What every kind of forged message needs: its number, the subjects' prefix, and whose
/// server it goes through.
struct Forging<'a> {
    pick: u64,
    prefix: &'a str,
    from: usize,
}

impl Forging<'_> {
    /// The election subject `name`.
    fn subject(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The forged message.
    fn forged(&self, subject: String, reply: Option<String>, payload: Bytes, what: &'static str) -> Forged {
        Forged {
            from: self.from,
            subject,
            reply,
            payload,
            what,
        }
    }

    /// Kinds 0, 2 and 11: a phantom member's heartbeat claiming a lease with a token near
    /// 2^64, a lease longer than any promise, or a short one.
    fn lease_claim(&self, kind: u64, phantom: String) -> Forged {
        match kind {
            0 => self.forged(
                self.subject("hb"),
                None,
                hb(
                    phantom,
                    Some(LeaseView {
                        token: u64::MAX,
                        remaining_ms: u64::MAX,
                    }),
                    u64::MAX,
                    None,
                ),
                "heartbeat with tokens near 2^64",
            ),
            2 => self.forged(
                self.subject("hb"),
                None,
                hb(
                    phantom,
                    Some(LeaseView {
                        token: 1,
                        remaining_ms: 1_000_000_000_000,
                    }),
                    1,
                    None,
                ),
                "heartbeat claiming a lease it cannot hold",
            ),
            // 11
            _ => self.forged(
                self.subject("hb"),
                None,
                hb(
                    phantom,
                    Some(LeaseView {
                        token: 1,
                        remaining_ms: 300,
                    }),
                    1,
                    None,
                ),
                "phantom member claiming a short lease",
            ),
        }
    }

    /// Kinds 1, 3 and 10: a heartbeat with a field out of range: an empty or 10 kB ID,
    /// leaseExpires in year 9999, or a member's incarnation near 2^64.
    fn odd_heartbeat(&self, kind: u64, r: &mut ChaCha8Rng, target: String, phantom: String) -> Forged {
        match kind {
            1 => {
                let id = if r.gen_bool(0.5) {
                    String::new()
                } else {
                    "x".repeat(10 * 1024)
                };
                self.forged(
                    self.subject("hb"),
                    None,
                    hb(id, None, 1, None),
                    "heartbeat from an empty or 10 kB ID",
                )
            }
            3 => self.forged(
                self.subject("hb"),
                None,
                hb(
                    phantom,
                    None,
                    0,
                    OffsetDateTime::from_unix_timestamp(253_402_300_799).ok(),
                ),
                "heartbeat with leaseExpires in year 9999",
            ),
            // 10
            _ => self.forged(
                self.subject("hb"),
                None,
                encode(&Heartbeat {
                    loc: AgentLoc::new(target, 0),
                    inc: u64::MAX,
                    run: u64::MAX,
                    cluster_size: u64::MAX,
                    lease: None,
                    max_token: 0,
                    config: 0,
                    passive: false,
                    waiting: false,
                    quarantined: false,
                }),
                "heartbeat from a member with an incarnation near 2^64",
            ),
        }
    }

    /// Kinds 4 to 6: a lease request, release or recovery answer with values out of range.
    fn lease_message(&self, kind: u64, r: &mut ChaCha8Rng, target: String, phantom: String) -> Forged {
        match kind {
            4 => self.forged(
                self.subject("lease.request"),
                Some(format!("_INBOX.forger.{}", self.pick)),
                encode(&LeaseRequest {
                    candidate: Incarnation {
                        id: phantom,
                        inc: 1 << 63,
                        run: 1,
                    },
                    rank: i64::MIN,
                    token: u64::MAX - r.gen_range(0..3),
                    attempt: u64::MAX,
                    cluster_size: u64::MAX,
                    config: r.gen(),
                }),
                "request with a token near 2^64",
            ),
            5 => self.forged(
                self.subject("lease.release"),
                None,
                encode(&LeaseRelease {
                    holder: Incarnation {
                        id: target,
                        inc: u64::MAX,
                        run: u64::MAX,
                    },
                    token: u64::MAX,
                }),
                "release by an impossible incarnation",
            ),
            // 6
            _ => self.forged(
                format!("{}lease.recovery.{target}.{}", self.prefix, r.gen_range(1..4)),
                None,
                encode(&LeaseRecovered {
                    peer: Incarnation {
                        id: phantom,
                        inc: 1,
                        run: 1,
                    },
                    nonce: r.gen(),
                    max_token: u64::MAX,
                    authoritative: true,
                }),
                "recovery answer with a token near 2^64",
            ),
        }
    }

    /// Kinds 7 to 9: malformed bytes, an oversized message, or an allcall answer with an
    /// extreme rank and year 9999.
    fn junk_or_allcall(&self, kind: u64, r: &mut ChaCha8Rng, phantom: String) -> Forged {
        match kind {
            7 => {
                let junk: Vec<u8> = (0..r.gen_range(0..64)).map(|_| r.gen()).collect();
                self.forged(
                    self.subject("lease.request"),
                    Some("_INBOX.forger".into()),
                    Bytes::from(junk),
                    "malformed bytes",
                )
            }
            8 => self.forged(
                self.subject("hb"),
                None,
                Bytes::from(format!("{{\"pad\":\"{}\"}}", "y".repeat(70 * 1024))),
                "oversized message",
            ),
            // 9
            _ => {
                let mut loc = AgentLoc::new(phantom, i64::MIN);
                loc.lease_expires = OffsetDateTime::from_unix_timestamp(253_402_300_799).ok();
                self.forged(
                    self.subject("allreply"),
                    None,
                    encode(&loc),
                    "allcall answer with an extreme rank and year 9999",
                )
            }
        }
    }
}

/// A heartbeat from `id` (the worst rank) with `lease`, `max_token` and the location's
/// `leaseExpires` set to `loc_lease`.
fn hb(id: String, lease: Option<LeaseView>, max_token: u64, loc_lease: Option<OffsetDateTime>) -> Bytes {
    let mut loc = AgentLoc::new(id, i64::MIN);
    loc.lease_expires = loc_lease;
    encode(&Heartbeat {
        loc,
        inc: 1,
        run: 1,
        cluster_size: 0,
        lease,
        max_token,
        config: 0,
        passive: false,
        waiting: false,
        quarantined: false,
    })
}

/// Kinds of forged ping reply.
const PONG_KINDS: u64 = 8;

/// Forged ping reply number `pick` to a ping of server `pinged`, among `servers`: a reply
/// signed by another server with a far or extreme coordinate, or in the pinged server's name
/// with an extreme, non-finite (JSON `null`) or out-of-range coordinate, or malformed bytes.
/// Returns the bytes and what they are. (A reply in the pinged server's name with a plausible
/// coordinate is impersonation, which only authentication can refuse; this forger tests that
/// no value steers a router or makes it panic.)
pub(crate) fn forge_pong(pick: u64, pinged: &str, servers: &[String]) -> (Bytes, &'static str) {
    use leasehold::router::{Coordinate, Pong};
    let mut r = ChaCha8Rng::seed_from_u64(pick ^ 0x0009_0119);
    let others: Vec<&String> = servers.iter().filter(|s| *s != pinged).collect();
    let other = others
        .get(r.gen_range(0..others.len().max(1)))
        .map_or_else(|| "forger".to_string(), |s| s.to_string());
    let pong = |name: String, vec: [f64; 2], height: f64, error: f64| {
        encode(&Pong {
            name,
            coordinate: Coordinate { vec, height, error },
        })
    };
    let me = pinged.to_string();
    match pick % PONG_KINDS {
        0 => (
            pong(other, [3000.0, 0.0], 0.01, 0.1),
            "ping reply signed by another server, 3 s away",
        ),
        1 => (
            pong(me, [1e30, 0.0], 0.01, 0.1),
            "ping reply with a coordinate of [1e30, 0]",
        ),
        2 => (
            pong(other, [1e200, 0.0], 0.01, 0.1),
            "ping reply signed by another server, at [1e200, 0]",
        ),
        3 => (
            Bytes::from(format!(
                r#"{{"name":{me:?},"coordinate":{{"vec":[null,0.0],"height":0.01,"error":0.1}}}}"#
            )),
            "ping reply with a NaN coordinate (JSON null)",
        ),
        4 => (
            pong(me, [0.0, 0.0], 1e308, -1.0),
            "ping reply with a height of 1e308 and a negative error",
        ),
        5 => {
            let junk: Vec<u8> = (0..r.gen_range(0..64)).map(|_| r.gen()).collect();
            (Bytes::from(junk), "malformed ping reply")
        }
        6 => (
            pong(other, [1e30, 0.0], 0.01, 0.1),
            "ping reply signed by another server, at [1e30, 0]",
        ),
        _ => (
            pong(me, [1e200, 0.0], 0.01, 0.1),
            "ping reply with a coordinate of [1e200, 0]",
        ),
    }
}

/// Forged message number `pick`, dressed up as authenticated for a cluster that seals its
/// messages, by a stranger without the key: left bare, sealed under the cluster's own key ID
/// with a made-up MAC, or sealed under a key ID nobody has. Returns the payload and what it is.
pub(crate) fn counterfeit(pick: u64, subject: &str, payload: Bytes) -> (Bytes, &'static str) {
    let made_up = |id: &str| {
        leasehold::ClusterKeys::parse(&format!("{id}:{:032x}", u128::from(pick) * 0x9e37_79b9_7f4a_7c15))
            .map(|k| k.seal(subject, &payload))
            .unwrap_or_else(|_| payload.clone())
    };
    match (pick / KINDS) % 3 {
        0 => (payload.clone(), "unsealed"),
        1 => (made_up(SIM_KEY_ID), "sealed with a guessed key"),
        _ => (made_up("stolen"), "sealed under an unknown key id"),
    }
}

/// The key ID of the simulated clusters' key (a forger knows it: key IDs travel in clear).
pub(crate) const SIM_KEY_ID: &str = "sim";

/// The cluster key file of a run with `authenticate = true` (one `key-id:hex-secret` line),
/// drawn from the run's seed.
pub(crate) fn sim_key_file(seed: u64) -> String {
    let a = crate::seeds::mix(seed, 0xa7, 1);
    let b = crate::seeds::mix(seed, 0xa7, 2);
    format!("{SIM_KEY_ID}:{a:016x}{b:016x}\n")
}

/// The cluster key of a run with `authenticate = true`.
pub(crate) fn sim_keys(seed: u64) -> leasehold::ClusterKeys {
    leasehold::ClusterKeys::parse(&sim_key_file(seed))
        .unwrap_or_else(|e| unreachable!("a well-formed simulated key: {e}"))
}
