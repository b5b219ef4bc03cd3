//! Each node's simulated disk: the durable state its agent saved. It lives outside the node,
//! so a kill keeps exactly what was saved before it; a save is atomic and synced when it
//! returns. Production loses disks too: a volume that is gone ([`Disks::wipe`]) or restored
//! from an old snapshot ([`Disks::rollback`]) — every save is kept, so a rollback can go to
//! any earlier one. Saves of the same state in a row are kept once with a count (an agent
//! saves far more often than its state changes), and a node keeps its last [`KEPT_STATES`]
//! states, so a long run does not grow with its saves: a volume comes back at most that many
//! changes old. Save numbers count from the oldest save kept.

use leasehold::{BoxFuture, Durable, Storage, StorageError};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

/// How many distinct states in a row a node's disk keeps for rollbacks (a run of a few
/// minutes never reaches it).
pub(crate) const KEPT_STATES: usize = 256;

#[derive(Default)]
struct Disk {
    /// What a load returns now (`None`: no state file).
    current: Option<Durable>,
    /// The saves kept, oldest first, as runs of equal states with their lengths.
    saves: VecDeque<(Durable, usize)>,
    /// How many saves are kept.
    count: usize,
    /// The state file cannot be read (a truncated write): a load fails until it is set aside.
    unreadable: bool,
    /// How many unreadable files were set aside.
    aside: usize,
}

impl Disk {
    /// Save number `k` (0: the first), if there is one.
    fn save_number(&self, mut k: usize) -> Option<&Durable> {
        for (state, n) in &self.saves {
            if k < *n {
                return Some(state);
            }
            k -= n;
        }
        None
    }
}

/// The disks of every node. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Disks {
    disks: Arc<Mutex<Vec<Disk>>>,
}

impl Disks {
    /// `n` empty disks.
    pub(crate) fn new(n: usize) -> Self {
        Disks {
            disks: Arc::new(Mutex::new((0..n).map(|_| Disk::default()).collect())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Disk>> {
        self.disks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Node `i`'s store.
    pub(crate) fn storage(&self, i: usize) -> SimStorage {
        SimStorage {
            disks: self.clone(),
            node: i,
        }
    }

    /// Forgets every disk (the run is over).
    pub(crate) fn clear(&self) {
        self.lock().iter_mut().for_each(|d| *d = Disk::default());
    }

    /// Deletes node `i`'s state (the volume is gone).
    pub(crate) fn wipe(&self, i: usize) {
        self.lock()[i].current = None;
    }

    /// Makes node `i`'s state unreadable (a truncated file): its next load fails.
    pub(crate) fn corrupt(&self, i: usize) {
        self.lock()[i].unreadable = true;
    }

    /// A new disk holding a copy of node `i`'s state file as its running agent started
    /// from it (the incarnation before its own; the rest as last saved); its index.
    pub(crate) fn copy_of(&self, i: usize) -> usize {
        let mut g = self.lock();
        let mut current = g[i].current.clone();
        if let Some(d) = &mut current {
            d.incarnation = d.incarnation.saturating_sub(1);
        }
        let copy = Disk {
            current,
            unreadable: g[i].unreadable,
            ..Disk::default()
        };
        g.push(copy);
        g.len() - 1
    }

    /// How many saves node `i` made.
    pub(crate) fn saves(&self, i: usize) -> usize {
        self.lock()[i].count
    }

    /// Restores node `i`'s state to its save number `to` (0: the first), as a volume restored
    /// from a snapshot; a save that does not exist means no state at all.
    pub(crate) fn rollback(&self, i: usize, to: usize) {
        let mut g = self.lock();
        let d = &mut g[i];
        d.current = d.save_number(to).cloned();
    }
}

/// A node's durable store.
#[derive(Clone)]
pub(crate) struct SimStorage {
    disks: Disks,
    node: usize,
}

impl Storage for SimStorage {
    fn load(&self) -> BoxFuture<'_, Result<Option<Durable>, StorageError>> {
        let g = self.disks.lock();
        let disk = &g[self.node];
        let d = if disk.unreadable {
            Err(StorageError(format!("node {}: state file truncated", self.node)))
        } else {
            Ok(disk.current.clone())
        };
        Box::pin(async move { d })
    }

    fn set_aside(&self) -> BoxFuture<'_, Result<Option<String>, StorageError>> {
        let mut g = self.disks.lock();
        let disk = &mut g[self.node];
        let moved = disk.unreadable.then(|| {
            disk.unreadable = false;
            disk.current = None;
            disk.aside += 1;
            format!("state.unreadable.{}", disk.aside)
        });
        Box::pin(async move { Ok(moved) })
    }

    fn save(&self, state: &Durable) -> BoxFuture<'_, Result<(), StorageError>> {
        let mut g = self.disks.lock();
        let disk = &mut g[self.node];
        disk.current = Some(state.clone());
        disk.unreadable = false;
        disk.count += 1;
        match disk.saves.back_mut() {
            Some((last, n)) if last == state => *n += 1,
            _ => {
                if disk.saves.len() == KEPT_STATES {
                    if let Some((_, n)) = disk.saves.pop_front() {
                        disk.count -= n;
                    }
                }
                disk.saves.push_back((state.clone(), 1));
            }
        }
        Box::pin(async move { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(token: u64) -> Durable {
        Durable {
            incarnation: 1,
            max_token: token,
            owner: None,
            ..Durable::default()
        }
    }

    #[test]
    fn a_rollback_finds_every_save_by_its_number_though_equal_saves_are_kept_once() {
        let disks = Disks::new(1);
        let s = disks.storage(0);
        let tokens = [1, 1, 1, 2, 2, 3, 1, 1];
        for t in tokens {
            drop(s.save(&state(t)));
        }
        assert_eq!(disks.saves(0), tokens.len());
        assert_eq!(disks.lock()[0].saves.len(), 4, "four runs of equal saves");
        for (k, t) in tokens.iter().enumerate() {
            disks.rollback(0, k);
            assert_eq!(disks.lock()[0].current, Some(state(*t)), "save {k}");
        }
        disks.rollback(0, tokens.len());
        assert_eq!(disks.lock()[0].current, None, "a save that does not exist: no state");
    }

    #[test]
    fn only_the_last_states_are_kept_and_save_numbers_count_from_the_oldest_kept() {
        let disks = Disks::new(1);
        let s = disks.storage(0);
        for t in 0..(KEPT_STATES as u64 + 10) {
            drop(s.save(&state(t)));
            drop(s.save(&state(t)));
        }
        assert_eq!(disks.saves(0), 2 * KEPT_STATES);
        disks.rollback(0, 0);
        assert_eq!(disks.lock()[0].current, Some(state(10)), "the oldest state kept");
        disks.rollback(0, 2 * KEPT_STATES - 1);
        assert_eq!(disks.lock()[0].current, Some(state(KEPT_STATES as u64 + 9)));
    }
}
