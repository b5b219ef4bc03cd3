//! What real mode can do: a scenario that uses anything else is skipped with its reason,
//! never passed.

use crate::faults::Action;
use crate::scenario::Scenario;
use leasehold::Bug;
use std::time::Duration;

/// Most nodes a real run starts (two processes and a clock file each).
pub const MAX_REAL_NODES: usize = 9;

/// Why a fault action cannot be done against real processes, if it cannot: the one list that
/// real mode's fault target ([`crate::faults::FaultTarget::cannot`]) and the check of a whole
/// scenario ([`unsupported`]) read.
pub fn cannot(a: &Action) -> Option<&'static str> {
    match a {
        Action::Suspend(_) | Action::Wake(_) => Some("`suspend` would suspend this machine"),
        Action::Freeze(_) => {
            Some("`freeze` needs every clock of an agent stopped with it, which the runner's test clock cannot do yet")
        }
        Action::Replay(..) => Some("`replay` needs a NATS client's reconnect buffer, which the runner cannot flush"),
        Action::SlowConsumer(..) => Some("`slow_consumer` needs a server to drop a subscriber's messages on demand"),
        Action::Preempt(..) => Some("`preempt` stalls a read inside the agent's clock, which the runner cannot reach"),
        Action::Congest(..) => Some("`congest` needs a client buffer that drains slowly, which the runner cannot make"),
        Action::Message { .. } => {
            Some("`drop_message`, `delay_message` and `duplicate_message` pick one message out of a route, which real NATS cannot")
        }
        _ => None,
    }
}

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
    // The random fault classes, each by one action it draws.
    let zero = Duration::ZERO;
    let classes = [
        (f.suspend.is_some(), Action::Suspend(0)),
        (f.freeze.is_some(), Action::Freeze(0)),
        (f.preempt.is_some(), Action::Preempt(0, zero)),
        (f.congest.is_some(), Action::Congest(0, None)),
        (f.replay.is_some(), Action::Replay(0, zero)),
        (f.slow_consumer.is_some(), Action::SlowConsumer(0, true)),
    ];
    if let Some(why) = classes.iter().filter(|(used, _)| *used).find_map(|(_, a)| cannot(a)) {
        return Some(why.into());
    }
    let reasons = [
        (f.impostor.is_some(), "the `impostor` runs only in the simulator"),
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
    scn.at
        .iter()
        .find_map(|a| cannot(&Action::from_step(&a.step, |_| 0)))
        .map(str::to_string)
}
