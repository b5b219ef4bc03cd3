//! Each node's simulated disk: the durable state its agent saved. It lives outside the node,
//! so a kill keeps exactly what was saved before it; a save is atomic and synced when it
//! returns. Production loses disks too: a volume that is gone ([`Disks::wipe`]) or restored
//! from an old snapshot ([`Disks::rollback`]) — every save is kept, so a rollback can go to
//! any earlier one.

use leasehold::{BoxFuture, Durable, Storage, StorageError};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Default)]
struct Disk {
    /// What a load returns now (`None`: no state file).
    current: Option<Durable>,
    /// Every save, oldest first.
    saves: Vec<Durable>,
}

/// The disks of every node. Cheap to clone.
#[derive(Clone)]
pub struct Disks {
    disks: Arc<Mutex<Vec<Disk>>>,
}

impl Disks {
    /// `n` empty disks.
    pub fn new(n: usize) -> Self {
        Disks {
            disks: Arc::new(Mutex::new((0..n).map(|_| Disk::default()).collect())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Disk>> {
        self.disks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Node `i`'s store.
    pub fn storage(&self, i: usize) -> SimStorage {
        SimStorage {
            disks: self.clone(),
            node: i,
        }
    }

    /// Forgets every disk (the run is over).
    pub fn clear(&self) {
        self.lock().iter_mut().for_each(|d| *d = Disk::default());
    }

    /// Deletes node `i`'s state (the volume is gone).
    pub fn wipe(&self, i: usize) {
        self.lock()[i].current = None;
    }

    /// How many saves node `i` made.
    pub fn saves(&self, i: usize) -> usize {
        self.lock()[i].saves.len()
    }

    /// Restores node `i`'s state to its save number `to` (0: the first), as a volume restored
    /// from a snapshot; a save that does not exist means no state at all.
    pub fn rollback(&self, i: usize, to: usize) {
        let mut g = self.lock();
        let d = &mut g[i];
        d.current = d.saves.get(to).cloned();
    }
}

/// A node's durable store.
#[derive(Clone)]
pub struct SimStorage {
    disks: Disks,
    node: usize,
}

impl Storage for SimStorage {
    fn load(&self) -> BoxFuture<'_, Result<Option<Durable>, StorageError>> {
        let d = self.disks.lock()[self.node].current.clone();
        Box::pin(async move { Ok(d) })
    }

    fn save(&self, state: &Durable) -> BoxFuture<'_, Result<(), StorageError>> {
        let mut g = self.disks.lock();
        let disk = &mut g[self.node];
        disk.current = Some(state.clone());
        disk.saves.push(state.clone());
        Box::pin(async move { Ok(()) })
    }
}
