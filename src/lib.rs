//! # leasehold
//!
//! Cluster membership, health checks and leader election with leases for services that talk
//! over NATS — the Rust successor of hnatsd's health agent and of Consul's client `servers`
//! package.
//!
//! The core never touches a runtime: it is written against two traits, a [`Clock`] and a
//! [`Network`] (NATS-shaped publish/subscribe), plus a small [`Storage`] for what must survive
//! a restart. The same code runs
//! * in one process on the in-process [`Hub`] (examples, tests, embedded clusters),
//! * in production on tokio and NATS (features `tokio` and `nats`),
//! * in the deterministic simulator (`leasehold-sim`), under simulated clocks, a simulated NATS
//!   and a nemesis, where an oracle checks that no two agents ever hold a lease at once.
//!
//! The election algorithms are sans-IO state machines ([`election::LeaseElection`],
//! [`election::AllcallElection`]); [`Membership`] is the thin async driver around them.
//!
//! ```
//! use leasehold::{Hub, Membership, MembershipCfg, MemoryStorage};
//! # #[cfg(feature = "tokio")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let hub = Hub::new();
//! let mut cfg = MembershipCfg::default();
//! cfg.id = "a".into();
//! cfg.cluster_size = 1;
//! cfg.lease_time = std::time::Duration::from_millis(400);
//! // A brand-new cluster; a restart would leave this at `Existing` and wait to learn from peers.
//! cfg.initial_cluster_state = leasehold::ClusterState::New;
//! let agent = Membership::new(cfg, leasehold::TokioClock::new(), hub.client(), MemoryStorage::new()).unwrap();
//! let handle = agent.start();
//! tokio::time::sleep(std::time::Duration::from_millis(600)).await;
//! assert_eq!(handle.status().leader.as_deref(), Some("a"));
//! handle.stop().await;
//! # }
//! # #[cfg(not(feature = "tokio"))]
//! # fn main() {}
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

mod auth;
mod callbacks;
mod clock;
mod config;
pub mod election;
pub mod events;
#[cfg(feature = "fault-sites")]
#[cfg_attr(docsrs, doc(cfg(feature = "fault-sites")))]
pub mod fault_sites;
mod handle;
mod hash;
mod hub;
mod inbox;
mod membership;
#[cfg(feature = "nats")]
mod nats;
mod network;
#[doc(hidden)]
pub mod probe;
pub mod router;
mod storage;
mod subjects;
pub mod wire;

/// Building blocks for a [`Network`] implementation: how the in-process hub, the simulator's
/// NATS and any new transport hold subscriptions and check publishes the way a NATS server
/// does.
pub mod transport {
    pub use crate::network::{
        check_publish, reconnect_delay, validate_subject, Delivery, SubjectTable, DEFAULT_SUBSCRIPTION_CAPACITY,
        HANDSHAKE_TIMEOUT,
    };
}

pub use auth::{AuthError, ClusterKeys};
pub use callbacks::{run_callbacks, LeaderCallbacks};
#[cfg(all(feature = "tokio", target_os = "linux"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "tokio", target_os = "linux"))))]
pub use clock::LinuxClocks;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use clock::TokioClock;
pub use clock::{timeout, BoxFuture, Clock, KernelClocks, SuspendedTime, SUSPENDED_TIME_TOLERANCE};
pub use config::{
    Algorithm, Bug, BugKnobs, ClusterState, ConfigError, HnatsdFields, MembershipCfg, MembershipCfgBuilder,
};
pub use election::Notice;
pub use handle::{LeaderStatus, Leadership, LeadershipRecord, MembershipHandle, Notices, Stats};
pub use hash::fnv1a;
pub use hub::{Hub, HubClient, DEFAULT_MAX_PAYLOAD};
pub use membership::{Membership, MembershipError, Observer};
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use nats::{NatsNetwork, NatsOptions};
pub use network::{request, subject_matches, Connection, Message, NetError, Network, Subscription};
pub use storage::{Durable, FileStorage, MemoryStorage, Storage, StorageError};
pub use wire::{agent_loc_less_than, AgentLoc, ExtInt, HostPort, MemberList};
