//! The simulator's tests, as one test binary: one link instead of eight, and its tests run
//! side by side. (Real mode, `tests/real.rs`, stays a binary of its own: it drives real
//! processes against real time and must not share the machine with simulations.)

mod check;
mod cli;
mod hostile;
mod hunt;
mod lean;
mod lease_props;
mod pictures;
mod scenarios;
mod schedules;
mod simulator;
mod snapshots;
