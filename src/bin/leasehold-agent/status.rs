//! `leasehold-agent status`: who holds an election's lease, with what token and how much of
//! it is left, and who is a member, from the heartbeats on the bus (the `lease` algorithm's;
//! with `--cluster-key`, sealed ones are opened, as an agent opens them). It listens for
//! `--listen` (a few beats), then prints a table, or one JSON object with `--json`. Exit
//! codes: 0 with one holder, 1 with none (or the server unreachable), 2 for a configuration
//! error, 3 with more than one (which the `lease` algorithm never allows: look at their
//! clocks and their configurations).

use crate::connect::NatsFlags;
use leasehold::wire::{decode, Heartbeat, LeaseRelease, DEFAULT_MAX_MESSAGE};
use leasehold::{ClusterKeys, MembershipCfg, NatsNetwork, Network};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The flags of `leasehold-agent status`.
#[derive(clap::Parser, Debug)]
#[command(name = "leasehold-agent status", version, args_override_self = true)]
pub(crate) struct StatusArgs {
    /// The connection to NATS.
    #[command(flatten)]
    conn: NatsFlags,
    /// Subject prefix (as the agents').
    #[arg(long, default_value = "_nats.cluster.members.")]
    prefix: String,
    /// The election's name (as the agents' `--election`; default: the prefix's one election).
    #[arg(long, default_value = "")]
    election: String,
    /// How long to listen: heartbeats come every beat, so a few beats hear every member.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    listen: Duration,
    /// The cluster keys, if the agents seal their messages (`--cluster-key` of the agents).
    #[arg(long)]
    cluster_key: Option<PathBuf>,
    /// One JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// The longest lease `status` believes a heartbeat about: agents' leases last seconds or
/// minutes; a day is a forged heartbeat or a misconfiguration, shown as a member, not a holder.
const LONGEST_LEASE: Duration = Duration::from_secs(24 * 3600);

/// What `status` found.
#[derive(Debug, Serialize)]
struct Report {
    /// The subject listened to.
    subject: String,
    /// How long it listened (ms).
    listened_ms: u64,
    /// Every agent holding a lease, by its latest heartbeat (one, or none; more is a fault).
    holders: Vec<Holder>,
    /// Every agent heard, by ID.
    members: Vec<Member>,
    /// Messages on the subject that did not open or decode as heartbeats.
    dropped: u64,
}

/// An agent that said it holds a lease.
#[derive(Debug, Serialize)]
struct Holder {
    id: String,
    token: u64,
    /// What was left of its lease when it said so (ms).
    lease_remaining_ms: u64,
}

/// An agent heard, by its latest heartbeat.
#[derive(Debug, Serialize)]
struct Member {
    id: String,
    rank: i64,
    incarnation: u64,
    cluster_size: u64,
    max_token: u64,
    /// `leading`, `waiting`, `quarantined`, `passive` or `follower`.
    state: &'static str,
}

/// Runs `status` with the command line `argv` (from `status` on).
pub(crate) async fn main(argv: Vec<String>) -> ExitCode {
    let a = <StatusArgs as clap::Parser>::parse_from(argv);
    let fail = |code: u8, e: String| {
        eprintln!("error: {e}");
        ExitCode::from(code)
    };
    if let Err(e) = a.conn.check_url() {
        return fail(2, e);
    }
    let keys = match a.cluster_key.as_deref().map(ClusterKeys::load).transpose() {
        Ok(k) => k,
        Err(e) => return fail(2, format!("--cluster-key {e}")),
    };
    let mut cfg = MembershipCfg::zero();
    cfg.sys_member_prefix = a.prefix.clone();
    cfg.election = a.election.clone();
    let subject = format!("{}hb", cfg.election_prefix());
    let net = match NatsNetwork::connect(&a.conn.options("leasehold-agent status".into(), None)).await {
        Ok(n) => n,
        Err(e) => return fail(1, e.to_string()),
    };
    let release_subject = format!("{}lease.release", cfg.election_prefix());
    let (mut sub, mut rel) = match (net.subscribe(&subject).await, net.subscribe(&release_subject).await) {
        (Ok(s), Ok(r)) => (s, r),
        (Err(e), _) | (_, Err(e)) => {
            return fail(2, format!("cannot listen on {subject:?} (--prefix, --election): {e}"))
        }
    };
    let mut heard = Heard::default();
    let end = tokio::time::Instant::now() + a.listen;
    loop {
        let msg = tokio::select! {
            m = sub.next() => m,
            m = rel.next() => m,
            _ = tokio::time::sleep_until(end) => None,
        };
        let Some(msg) = msg else { break };
        let Some(body) = (match &keys {
            Some(k) => k.open(&msg.subject, &msg.payload).ok(),
            None => Some(msg.payload.clone()),
        }) else {
            heard.dropped += 1;
            continue;
        };
        heard.take(msg.subject == release_subject, &body, tokio::time::Instant::now());
    }
    let report = report(subject, a.listen, &heard, tokio::time::Instant::now());
    if a.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        print!("{}", table(&report));
    }
    match report.holders.len() {
        1 => ExitCode::SUCCESS,
        0 => ExitCode::from(1),
        _ => ExitCode::from(3),
    }
}

/// What `status` heard: each member's latest heartbeat and when it came, each holder's latest
/// release and when it came, and how many messages it could not read.
#[derive(Default)]
struct Heard {
    heartbeats: BTreeMap<String, (Heartbeat, tokio::time::Instant)>,
    releases: BTreeMap<String, (u64, tokio::time::Instant)>,
    dropped: u64,
}

impl Heard {
    /// Takes a message's body (a release's if `release`), come at `at`.
    fn take(&mut self, release: bool, body: &[u8], at: tokio::time::Instant) {
        if release {
            match decode::<LeaseRelease>(body, DEFAULT_MAX_MESSAGE) {
                Ok(r) => {
                    self.releases.insert(r.holder.id, (r.token, at));
                }
                Err(_) => self.dropped += 1,
            }
            return;
        }
        match decode::<Heartbeat>(body, DEFAULT_MAX_MESSAGE) {
            Ok(hb) if !hb.loc.id.is_empty() => {
                self.heartbeats.insert(hb.loc.id.clone(), (hb, at));
            }
            _ => self.dropped += 1,
        }
    }
}

/// The report of what was `heard`, at `now`: a holder is an agent whose latest heartbeat said
/// it held a lease that has not run out since it came (an agent that crashed holding one
/// counts until then, as the others must wait until then too) and that it has not released
/// since (a holder stopping hands over: it releases, then sends no heartbeat).
fn report(subject: String, listened: Duration, heard: &Heard, now: tokio::time::Instant) -> Report {
    let holders = heard
        .heartbeats
        .values()
        .filter_map(|(hb, at)| {
            let l = hb.lease.as_ref()?;
            let released = heard.releases.get(&hb.loc.id);
            if released.is_some_and(|(token, when)| *token == l.token && when >= at) {
                return None;
            }
            // (A lease out of any range, from a forged heartbeat, is no holder.)
            let left = Duration::from_millis(l.remaining_ms);
            if left > LONGEST_LEASE {
                return None;
            }
            let ends = at.checked_add(left)?;
            (ends > now).then(|| Holder {
                id: hb.loc.id.clone(),
                token: l.token,
                lease_remaining_ms: u64::try_from((ends - now).as_millis()).unwrap_or(u64::MAX),
            })
        })
        .collect();
    let members = heard
        .heartbeats
        .values()
        .map(|(hb, _)| Member {
            id: hb.loc.id.clone(),
            rank: hb.loc.rank,
            incarnation: hb.inc,
            cluster_size: hb.cluster_size,
            max_token: hb.max_token,
            state: if hb.lease.is_some() {
                "leading"
            } else if hb.quarantined {
                "quarantined"
            } else if hb.waiting {
                "waiting"
            } else if hb.passive {
                "passive"
            } else {
                "follower"
            },
        })
        .collect();
    Report {
        subject,
        listened_ms: u64::try_from(listened.as_millis()).unwrap_or(u64::MAX),
        holders,
        members,
        dropped: heard.dropped,
    }
}

/// The report as a table for a terminal.
fn table(r: &Report) -> String {
    let mut out = format!("subject  {}\n", r.subject);
    match r.holders.as_slice() {
        [] => out.push_str("leader   none heard\n"),
        [h] => out.push_str(&format!(
            "leader   {} (token {}, {:.1} s of its lease left)\n",
            h.id,
            h.token,
            h.lease_remaining_ms as f64 / 1000.0
        )),
        many => {
            for h in many {
                out.push_str(&format!(
                    "HOLDER   {} (token {}): more than one holder\n",
                    h.id, h.token
                ));
            }
        }
    }
    out.push_str(&format!(
        "members  {} heard in {} ms{}\n",
        r.members.len(),
        r.listened_ms,
        if r.dropped > 0 {
            format!(
                " ({} messages dropped: unsealed, wrong key or not a heartbeat)",
                r.dropped
            )
        } else {
            String::new()
        }
    ));
    let width = r.members.iter().map(|m| m.id.len()).max().unwrap_or(2).max(2);
    out.push_str(&format!(
        "{:<width$}  {:>5}  {:>11}  {:>12}  {:>9}  STATE\n",
        "ID", "RANK", "INCARNATION", "CLUSTER SIZE", "MAX TOKEN"
    ));
    for m in &r.members {
        out.push_str(&format!(
            "{:<width$}  {:>5}  {:>11}  {:>12}  {:>9}  {}\n",
            m.id, m.rank, m.incarnation, m.cluster_size, m.max_token, m.state
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold::wire::{AgentLoc, LeaseView};

    fn hb(id: &str, remaining_ms: Option<u64>) -> Heartbeat {
        Heartbeat {
            loc: AgentLoc {
                id: id.into(),
                ..AgentLoc::default()
            },
            inc: 1,
            run: 0,
            cluster_size: 3,
            lease: remaining_ms.map(|remaining_ms| LeaseView { token: 7, remaining_ms }),
            max_token: 7,
            config: 0,
            passive: false,
            waiting: false,
            quarantined: false,
        }
    }

    /// A holder is one whose lease has not run out since its heartbeat came and that has not
    /// released it since; a lease out of any range (a forged heartbeat's) is no holder and no
    /// panic; every sender is a member.
    #[test]
    fn holders_are_leases_still_running_and_unreleased_and_out_of_range_ones_are_none() {
        let at = tokio::time::Instant::now();
        let mut heard = Heard::default();
        for (id, l) in [
            ("n0", Some(60_000)),
            ("n1", Some(0)),
            ("n2", Some(u64::MAX)),
            ("n3", None),
            ("n4", Some(60_000)),
        ] {
            heard.heartbeats.insert(id.to_string(), (hb(id, l), at));
        }
        // n4 stopped and handed over: its release came after its last heartbeat.
        let release =
            |id: &str, token: u64| format!(r#"{{"holder":{{"id":"{id}","inc":1}},"token":{token}}}"#).into_bytes();
        heard.take(true, &release("n4", 7), at + Duration::from_millis(5));
        // n0's release of an older lease (another token) changes nothing.
        heard.take(true, &release("n0", 6), at + Duration::from_millis(5));
        heard.take(true, b"not json", at);
        let r = report(
            "x.hb".into(),
            Duration::from_secs(1),
            &heard,
            at + Duration::from_millis(10),
        );
        let holders: Vec<&str> = r.holders.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(holders, ["n0"]);
        assert!(r.holders[0].lease_remaining_ms <= 60_000);
        assert_eq!((r.members.len(), r.dropped), (5, 1));
        assert!(table(&r).contains("leader   n0 (token 7,"));
    }
}
