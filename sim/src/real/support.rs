//! What real mode can do: a scenario that uses anything else is skipped with its reason,
//! never passed.

use crate::scenario::{Scenario, Step};
use leasehold::Bug;

/// Most nodes a real run starts (two processes and a clock file each).
pub const MAX_REAL_NODES: usize = 9;

const FREEZE: &str =
    "`freeze` needs every clock of an agent stopped with it, which the runner's test clock cannot do yet";

/// Why `scn` cannot run against real processes, if it cannot.
pub fn unsupported(scn: &Scenario) -> Option<String> {
    let n = scn.sim_nodes().len();
    if n > MAX_REAL_NODES {
        return Some(format!("{n} nodes: real mode starts at most {MAX_REAL_NODES}"));
    }
    if scn.router.is_some() {
        return Some("router clients run only in the simulator".into());
    }
    let f = &scn.faults;
    let net = &scn.network;
    let reasons = [
        (f.suspend.is_some(), "`suspend` would suspend this machine"),
        (f.freeze.is_some(), FREEZE),
        (f.impostor.is_some(), "the `impostor` runs only in the simulator"),
        (
            f.preempt.is_some(),
            "`preempt` stalls a read inside the agent's clock, which the runner cannot reach",
        ),
        (
            f.congest.is_some(),
            "`congest` needs a client buffer that drains slowly, which the runner cannot make",
        ),
        (
            f.replay.is_some(),
            "`replay` needs a NATS client's reconnect buffer, which the runner cannot flush",
        ),
        (
            f.slow_consumer.is_some(),
            "`slow_consumer` needs a server to drop a subscriber's messages on demand",
        ),
        (
            net.duplicate > 0.0,
            "`duplicate`: real routes are TCP and never duplicate",
        ),
        (net.reorder, "`reorder`: real routes are TCP and keep order"),
        (
            (0..n).any(|i| scn.node_cfg(i).bug_knobs.has(Bug::SuspendBlindClock)),
            "the `suspend_blind_clock` bug needs a suspended host",
        ),
        (
            (0..n).any(|i| scn.node_cfg(i).bug_knobs.has(Bug::RatchetingClockRead)),
            "the `ratcheting_clock_read` bug lives in the simulator's clock, not in the agent",
        ),
    ];
    if let Some((_, why)) = reasons.iter().find(|(used, _)| *used) {
        return Some((*why).into());
    }
    scn.at.iter().find_map(|a| match &a.step {
        Step::Suspend(_) | Step::Wake(_) => Some("`suspend` would suspend this machine".into()),
        Step::Freeze(_) => Some(FREEZE.into()),
        Step::Clone(_) => {
            Some("`clone` is simulated only for now (the real test is tests/it/state_and_identity.rs)".into())
        }
        Step::CorruptState(_) => {
            Some("`corrupt_state` is simulated only for now (the real test is tests/it/state_and_identity.rs)".into())
        }
        Step::Replay(_) => {
            Some("`replay` needs a NATS client's reconnect buffer, which the runner cannot flush".into())
        }
        Step::SlowConsumer(_) | Step::FastConsumer(_) => {
            Some("`slow_consumer` needs a server to drop a subscriber's messages on demand".into())
        }
        Step::Congest(_) | Step::Uncongest(_) => {
            Some("`congest` needs a client buffer that drains slowly, which the runner cannot make".into())
        }
        Step::Preempt(_) => {
            Some("`preempt` stalls a read inside the agent's clock, which the runner cannot reach".into())
        }
        _ => None,
    })
}
