//! Workloads that run beside the agents in a simulation.

pub(crate) mod router;
pub(crate) mod store;
