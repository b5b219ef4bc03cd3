//! The fenced store: a service on a node of its own, reached over the simulated network with
//! its latency, and the writers beside every agent. Whoever believes it holds the lease (by the
//! public API: one read of the agent's status, on the agent's own clock) writes to the store
//! every beat under its fencing token; the store refuses a token lower than the highest it has
//! accepted (unless it is the known-bad store that does not check), and hands every write it
//! handled to the effects oracle ([`crate::oracle::effects`]).

use crate::clock::{true_now, SimClock};
use crate::fabric::Fabric;
use crate::oracle::effects::{Effects, Write};
use leasehold::{Clock, MembershipHandle, Network};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The store's subject, under the election prefix.
pub fn subject(prefix: &str) -> String {
    format!("{prefix}store.write")
}

/// What a writer sends.
#[derive(Debug, Serialize, Deserialize)]
struct Put {
    node: String,
    token: u64,
}

/// Runs the store on fabric index `me` until the run ends, judging what it accepts into
/// `effects`; `checks`: whether it refuses tokens lower than the highest accepted.
pub async fn store_main(
    fabric: Fabric,
    me: usize,
    prefix: String,
    checks: bool,
    effects: Arc<Mutex<Effects>>,
    start: madsim::time::Instant,
) {
    fabric.serve(me);
    let net = fabric.client(me);
    let Ok(mut puts) = net.subscribe(&subject(&prefix)).await else {
        return;
    };
    let mut highest = 0u64;
    while let Some(m) = puts.next().await {
        let Ok(put) = serde_json::from_slice::<Put>(&m.payload) else {
            continue;
        };
        let accepted = !checks || put.token >= highest;
        if accepted {
            highest = highest.max(put.token);
        }
        effects.lock().unwrap_or_else(|e| e.into_inner()).take(Write {
            at: true_now(start),
            node: put.node,
            token: put.token,
            accepted,
        });
    }
}

/// The writer beside node `node`'s agent: every `beat` on the node's clock, a write under the
/// agent's token if it believes it holds the lease. Runs until its node goes down.
pub async fn writer(
    fabric: Fabric,
    node: usize,
    id: String,
    prefix: String,
    agent: MembershipHandle,
    clock: SimClock,
    beat: Duration,
) {
    let net = fabric.client(node);
    let subject = subject(&prefix);
    loop {
        clock.sleep(beat).await;
        // Status and token in one read, judged on the agent's own clock.
        let status = agent.status();
        let Some(token) = status.fencing_token.filter(|_| status.is_leader_at(clock.now())) else {
            continue;
        };
        let put = Put {
            node: id.clone(),
            token,
        };
        if let Ok(body) = serde_json::to_vec(&put) {
            let _ = net.publish(&subject, None, body.into()).await;
        }
    }
}
