//! The fenced store: a service on a node of its own, reached over the simulated network with
//! its latency. Whoever holds a valid lease guard (the guard application of `leasehold::probe`,
//! beside every agent) writes to the store every beat under the guard's fencing token; the
//! store refuses a token lower than the highest it has accepted (unless it is the known-bad store
//! that does not check), and hands every write it handled to whoever judges them (the effects
//! oracle).

use crate::clock::true_now;
use crate::fabric::{Fabric, SimNet};
use leasehold::Network;
use serde::{Deserialize, Serialize};

/// The store's subject, under the election prefix.
pub(crate) fn subject(prefix: &str) -> String {
    format!("{prefix}store.write")
}

/// What a writer sends.
#[derive(Debug, Serialize, Deserialize)]
struct Put {
    node: String,
    token: u64,
}

/// One write that reached the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// True time the store took it (ns).
    pub at: u128,
    /// The writer's node ID.
    pub node: String,
    /// The fencing token it was written under.
    pub token: u64,
    /// Whether the store accepted it.
    pub accepted: bool,
}

/// Runs the store on fabric index `me` until the run ends, handing every write it handled to
/// `handled`; `checks`: whether it refuses tokens lower than the highest accepted.
pub(crate) async fn store_main(
    fabric: Fabric,
    me: usize,
    prefix: String,
    checks: bool,
    mut handled: impl FnMut(Write),
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
        handled(Write {
            at: true_now(start),
            node: put.node,
            token: put.token,
            accepted,
        });
    }
}

/// Writes under `token` as node `id` over `net` (the writer is the guard application of
/// `leasehold::probe`, beside every agent).
pub(crate) async fn write(net: &SimNet, subject: &str, id: &str, token: u64) {
    let put = Put {
        node: id.to_string(),
        token,
    };
    if let Ok(body) = serde_json::to_vec(&put) {
        let _ = net.publish(subject, None, body.into()).await;
    }
}
