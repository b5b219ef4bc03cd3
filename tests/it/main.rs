//! The library's integration tests, in one binary (one link instead of five; the build is
//! most of CI's time): the driver on the in-process hub, the application API, and real
//! `nats-server` processes with the agent binary, NATS permissions and TLS.

#[cfg(feature = "agent")]
mod common;

mod agent_cli;
mod api_nats;
#[cfg(feature = "agent")]
mod deploy;
mod leadership_api;
mod membership_hub;
#[cfg(feature = "agent")]
mod metrics;
mod nats_integration;
mod security;
mod state_and_identity;
#[cfg(feature = "agent")]
mod status;
