//! The running agents' handles, by node: how the world stops an agent gracefully, and how a
//! router client reaches the agent of its host, as a service in production reaches the agent
//! in its own process.

use leasehold::MembershipHandle;
use std::sync::{Arc, Mutex, MutexGuard};

/// A node's running incarnation and its agent's handle (none while it is down).
type Slot = Option<(u64, MembershipHandle)>;

/// The current incarnation's handle of every node's agent.
#[derive(Clone, Default)]
pub(crate) struct Agents {
    slots: Arc<Mutex<Vec<Slot>>>,
}

impl Agents {
    /// No agent running yet, for `n` nodes.
    pub(crate) fn new(n: usize) -> Self {
        Agents {
            slots: Arc::new(Mutex::new(vec![None; n])),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Node `i`'s incarnation `inc` runs with handle `h`.
    pub(crate) fn started(&self, i: usize, inc: u64, h: MembershipHandle) {
        self.lock()[i] = Some((inc, h));
    }

    /// Node `i` went down: its handle is dropped, so watchers of it see its notices end.
    pub(crate) fn down(&self, i: usize) {
        self.lock()[i] = None;
    }

    /// Node `i`'s running incarnation and its handle.
    pub(crate) fn get(&self, i: usize) -> Option<(u64, MembershipHandle)> {
        self.lock().get(i).cloned().flatten()
    }

    /// Forgets every handle (a finished run).
    pub(crate) fn clear(&self) {
        self.lock().iter_mut().for_each(|s| *s = None);
    }
}
