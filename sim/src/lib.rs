//! # leasehold-sim
//!
//! The deterministic simulation testbed of leasehold: the library's membership code runs,
//! unchanged, on madsim nodes with simulated clocks (drift, offsets, steps) and a simulated
//! NATS (routes with latency, loss, partitions), while a seeded nemesis injects faults and an
//! oracle checks in true time that no two agents ever hold a lease at once.
//!
//! The same scenario and seed give a byte-identical trace. Build with `--cfg madsim` (this
//! repository's `.cargo/config.toml` sets it).

#[cfg(not(madsim))]
compile_error!("leasehold-sim runs on madsim's simulated runtime: build with RUSTFLAGS=\"--cfg madsim\" (this repository's .cargo/config.toml sets it)");

// What a user of the simulator names: the command line, the tests and the benchmarks.
pub mod agreement;
pub mod check;
pub mod clock;
pub mod coverage;
pub mod faults;
pub mod hunt;
pub mod merge;
pub mod nemesis;
pub mod oracle;
pub mod real;
pub mod record;
pub mod render;
pub mod report;
pub mod scenario;
pub mod shrink;
pub mod swarm;
pub mod sweep;

// The simulated subsystems and the machinery of a run: internal, so `unreachable_pub` shows
// what leaks.
mod agents;
mod disk;
mod fabric;
mod forger;
mod impostor;
mod quantum;
mod routes;
mod run;
mod schedule;
mod seeds;
mod timeline;
mod topology;
mod trace;
mod workload;
mod world;

pub use oracle::{Violation, ViolationKind};
pub use report::RunReport;
pub use run::{run_seed, run_seed_lean, run_seed_parsing_each};
pub use scenario::{Scenario, ScenarioError};
pub use trace::{Trace, TraceEvent};
