//! Each node's simulated disk: the durable state its agent saved. It lives outside the node,
//! so a kill keeps exactly what was saved before it; a save is atomic and synced when it
//! returns.

use leasehold::{BoxFuture, Durable, Storage, StorageError};
use std::sync::{Arc, Mutex, MutexGuard};

/// The disks of every node. Cheap to clone.
#[derive(Clone)]
pub struct Disks {
    durable: Arc<Mutex<Vec<Durable>>>,
}

impl Disks {
    /// `n` empty disks.
    pub fn new(n: usize) -> Self {
        Disks {
            durable: Arc::new(Mutex::new(vec![Durable::default(); n])),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Durable>> {
        self.durable.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Node `i`'s store.
    pub fn storage(&self, i: usize) -> SimStorage {
        SimStorage {
            disks: self.clone(),
            node: i,
        }
    }
}

/// A node's durable store.
#[derive(Clone)]
pub struct SimStorage {
    disks: Disks,
    node: usize,
}

impl Storage for SimStorage {
    fn load(&self) -> BoxFuture<'_, Result<Durable, StorageError>> {
        let d = self.disks.lock()[self.node].clone();
        Box::pin(async move { Ok(d) })
    }

    fn save(&self, state: &Durable) -> BoxFuture<'_, Result<(), StorageError>> {
        self.disks.lock()[self.node] = state.clone();
        Box::pin(async move { Ok(()) })
    }
}
