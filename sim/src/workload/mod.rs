//! Workloads that run beside the agents in a simulation.

pub mod app;
pub mod router;
pub mod store;
