//! Workloads that run beside the agents in a simulation.

pub mod router;
pub mod store;
