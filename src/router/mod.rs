//! Client-side server routing, the successor of Consul's client `servers` package: a
//! [`Manager`] keeps the list of servers one client talks to (find, fail over, rebalance,
//! ping), and a [`Router`] routes to datacenters over network areas, sorted by distance
//! measured with Vivaldi network coordinates ([`Coordinate`]). Membership feeds it ([`feed()`]) instead of Serf.
//!
//! Nothing a stranger on the bus sends can steer it or make it panic: a ping counts only for
//! the server pinged and only with a valid coordinate ([`NetworkPinger`]); coordinates and
//! round trips are checked as Serf checks them, round trips filtered, an invalid own
//! coordinate reset ([`CoordinateBook`]); every estimate is a [`Duration`](std::time::Duration)
//! computed without panicking.

mod coords;
pub mod feed;
mod manager;
mod pinger;
#[allow(clippy::module_inception)]
mod router;

pub use coords::{Coordinate, CoordinateBook, CoordinateError, LATENCY_FILTER_SIZE, MAX_COMPONENT_MS, MAX_RTT};
pub use feed::{feed, flood_join};
pub use manager::{rebalance_interval, ClusterInfo, Manager, CONNS_PER_SEC_PER_SERVER, MIN_REUSE};
pub use pinger::{serve_pings, NetworkPinger, Pong};
pub use router::{AreaId, DatacenterMap, Route, Router, RouterError};

use serde::{Deserialize, Serialize};

/// A server a client can send RPCs to (Consul's `agent.Server`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Server {
    /// Unique name (the membership ID).
    pub name: String,
    /// Its datacenter.
    pub datacenter: String,
    /// The subject it answers pings on.
    pub ping_subject: String,
}

impl Server {
    /// A server named `name` in `datacenter`, answering pings on `<prefix>ping.<name>`.
    pub fn new(name: impl Into<String>, datacenter: impl Into<String>, prefix: &str) -> Self {
        let name = name.into();
        Server {
            ping_subject: format!("{prefix}ping.{name}"),
            datacenter: datacenter.into(),
            name,
        }
    }
}

/// Checks whether a server answers (Consul's `Pinger`).
pub trait Pinger: Send + Sync + 'static {
    /// Pings `server`; `Ok(true)` if it answered in time.
    fn ping(&self, server: &Server) -> crate::BoxFuture<'_, bool>;
}
