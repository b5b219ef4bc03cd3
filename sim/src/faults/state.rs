//! What the faults have done to the cluster at one moment: the fold of the actions applied,
//! which the resolver asks whether an action would do anything, and which the timeline replays.

use super::Action;

/// What the faults have done to the cluster at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultState {
    /// Directed routes cut.
    pub cuts: Vec<(usize, usize)>,
    /// Nodes killed and not restarted.
    pub down: Vec<bool>,
    /// Nodes paused or suspended and not resumed or woken (a kill ends both).
    pub paused: Vec<bool>,
    /// Of the paused nodes, those suspended (woken by `Wake`, not `Resume`).
    pub suspended: Vec<bool>,
    /// Nodes whose server drops every message to them (slow consumers).
    pub slow: Vec<bool>,
}

impl FaultState {
    /// No faults, for `n` nodes.
    pub fn new(n: usize) -> Self {
        FaultState {
            cuts: Vec::new(),
            down: vec![false; n],
            paused: vec![false; n],
            suspended: vec![false; n],
            slow: vec![false; n],
        }
    }

    /// Whether `a` would change anything: restarting a node that is up, pausing, suspending
    /// or stopping one that is down or paused, resuming one that is not paused (or is
    /// suspended) and waking one that is not suspended do nothing.
    pub fn takes_effect(&self, a: &Action) -> bool {
        match a {
            Action::Kill(i) => !self.down[*i],
            Action::Restart(i) => self.down[*i],
            Action::Pause(i) | Action::Suspend(i) | Action::Freeze(i) | Action::Stop(i) => {
                !self.down[*i] && !self.paused[*i]
            }
            Action::Resume(i) => self.paused[*i] && !self.suspended[*i],
            Action::Wake(i) => self.suspended[*i],
            Action::WipeState(i) | Action::RollbackState(i, _) | Action::CorruptState(i) => self.down[*i],
            Action::Clone(i)
            | Action::Resign(i)
            | Action::Campaign(i)
            | Action::ServerDown(i, _)
            | Action::FreezeConnection(i, _) => !self.down[*i],
            Action::SlowConsumer(i, on) => self.slow[*i] != *on,
            _ => true,
        }
    }

    /// Applies a resolved action (route changes as [`Action::Cut`] or [`Action::Heal`]).
    pub fn apply(&mut self, a: &Action) {
        match a {
            Action::Cut(l) => self.cuts = l.clone(),
            Action::Heal => self.cuts.clear(),
            Action::Kill(i) | Action::Stop(i) => {
                self.down[*i] = true;
                self.paused[*i] = false;
                self.suspended[*i] = false;
            }
            Action::Restart(i) => self.down[*i] = false,
            Action::Pause(i) => self.paused[*i] = true,
            // A freeze is woken like a suspension (its clocks stop too).
            Action::Suspend(i) | Action::Freeze(i) => {
                self.paused[*i] = true;
                self.suspended[*i] = true;
            }
            Action::Resume(i) | Action::Wake(i) => {
                self.paused[*i] = false;
                self.suspended[*i] = false;
            }
            Action::SlowConsumer(i, on) => self.slow[*i] = *on,
            _ => {}
        }
    }

    /// Whether `a` and `b` can hear each other (both up, not paused, no cut either way).
    pub fn connected(&self, a: usize, b: usize) -> bool {
        !self.down[b]
            && !self.paused[b]
            && !self.slow[b]
            && !self.cuts.contains(&(a, b))
            && !self.cuts.contains(&(b, a))
    }
}
