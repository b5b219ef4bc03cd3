//! Durable storage for what the `lease` algorithm must not forget across restarts: the
//! incarnation number and the highest fencing token promised.

use crate::clock::BoxFuture;
use crate::wire::Incarnation;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What an agent must keep across restarts (see [`Storage`](crate::Storage)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Durable {
    /// The last incarnation number used.
    pub incarnation: u64,
    /// The highest fencing token this agent has promised (or taken).
    pub max_token: u64,
    /// Who that token was promised to.
    pub owner: Option<Incarnation>,
    /// Written before this agent had learned the highest token from its peers (it started
    /// without a usable state file and was still waiting): a later start takes it as lost
    /// and keeps only its incarnation number. Left out of the file when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recovering: bool,
    /// Evidence that this agent's `cluster_size` is too small: it saw a majority of a larger
    /// cluster agreeing on other settings. Kept so that it outlasts a cut and a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub larger_cluster: Option<SizeEvidence>,
}

/// A larger cluster an agent has seen (see [`Durable::larger_cluster`]): while its own
/// settings have `digest`, it counts promises as a cluster of `cluster_size` would, so a node
/// deployed with too small a size cannot lead on its own view once cut off. A change of its
/// settings forgets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SizeEvidence {
    /// The digest of this agent's safety-relevant settings when it saw the larger cluster.
    pub digest: u64,
    /// The size that cluster's agents said.
    pub cluster_size: u64,
}

/// Why storage failed. A failed save means the promise it guarded is not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage: {0}")]
pub struct StorageError(pub String);

/// Where an agent keeps its [`Durable`] state.
///
/// `save` returns only once the state would survive a crash of the process or the machine
/// (for a file: written, synced, renamed into place, directory synced). `load` returns the
/// last state saved, or `None` when there is none: a missing state proves nothing (the agent
/// may have run before and lost it), so the agent then waits and learns from its peers.
pub trait Storage: Send + Sync + 'static {
    /// The last state saved, or `None` if nothing was ever saved (or it was lost).
    fn load(&self) -> BoxFuture<'_, Result<Option<Durable>, StorageError>>;
    /// Saves `state` durably.
    fn save(&self, state: &Durable) -> BoxFuture<'_, Result<(), StorageError>>;
    /// Moves an unreadable state aside, keeping its bytes for the operator, so that nothing
    /// overwrites it; returns where it went (`None`: there is nowhere to keep it, as for
    /// memory). The agent calls this when [`Storage::load`] failed, then starts as one that
    /// lost its state. The default keeps nothing.
    fn set_aside(&self) -> BoxFuture<'_, Result<Option<String>, StorageError>> {
        Box::pin(async { Ok(None) })
    }
}

/// Storage in memory, shared by clones: survives an agent restart inside one process (as in
/// tests and the embedded example), not a process crash.
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    state: Arc<Mutex<Option<Durable>>>,
}

impl MemoryStorage {
    /// Empty storage.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Storage for MemoryStorage {
    fn load(&self) -> BoxFuture<'_, Result<Option<Durable>, StorageError>> {
        let s = self
            .state
            .lock()
            .map(|g| g.clone())
            .map_err(|e| StorageError(e.to_string()));
        Box::pin(async move { s })
    }
    fn save(&self, state: &Durable) -> BoxFuture<'_, Result<(), StorageError>> {
        let r = self
            .state
            .lock()
            .map(|mut g| *g = Some(state.clone()))
            .map_err(|e| StorageError(e.to_string()));
        Box::pin(async move { r })
    }
}

/// Storage in a JSON file, replaced atomically on every save. Blocking I/O: the file is tiny
/// and written only when the highest token changes.
#[derive(Debug, Clone)]
pub struct FileStorage {
    path: PathBuf,
}

impl FileStorage {
    /// Storage at `path` (created on first save; its directory must exist).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStorage { path: path.into() }
    }

    /// Storage at `path`, checked now, before anything runs: its directory exists and takes a
    /// file (a probe, the save's own temporary file, is written and removed), and a file
    /// already there can be opened. The error names the path and the reason; without this
    /// check a missing directory fails only the first save, once the agent runs.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let s = FileStorage::new(path);
        let err =
            |what: &str, p: &std::path::Path, e: std::io::Error| StorageError(format!("{what} {}: {e}", p.display()));
        let dir = match s.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(d) => d.to_path_buf(),
            None => PathBuf::from("."),
        };
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(StorageError(format!(
                    "state directory {}: not a directory",
                    dir.display()
                )))
            }
            Err(e) => return Err(err("state directory", &dir, e)),
        }
        let probe = s.path.with_extension("tmp");
        std::fs::File::create(&probe).map_err(|e| err("state directory", &dir, e))?;
        let _ = std::fs::remove_file(&probe);
        if s.path.exists() {
            std::fs::File::open(&s.path).map_err(|e| err("state file", &s.path, e))?;
        }
        Ok(s)
    }

    /// Where the state lives.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn load_now(&self) -> Result<Option<Durable>, StorageError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => crate::wire::decode(&bytes, crate::wire::DEFAULT_MAX_MESSAGE)
                .map(Some)
                .map_err(|e| StorageError(format!("{}: {e}", self.path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError(format!("{}: {e}", self.path.display()))),
        }
    }

    /// Renames the file to the first free `<path>.unreadable.<k>`.
    fn set_aside_now(&self) -> Result<Option<String>, StorageError> {
        let err = |e: std::io::Error| StorageError(format!("{}: {e}", self.path.display()));
        if !self.path.exists() {
            return Ok(None);
        }
        let mut k = 1u32;
        let aside = loop {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".unreadable.{k}"));
            let candidate = PathBuf::from(name);
            if !candidate.exists() {
                break candidate;
            }
            k = k
                .checked_add(1)
                .ok_or_else(|| StorageError(format!("{}: no free name to set it aside", self.path.display())))?;
        };
        std::fs::rename(&self.path, &aside).map_err(err)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        }
        Ok(Some(aside.display().to_string()))
    }

    fn save_now(&self, state: &Durable) -> Result<(), StorageError> {
        use std::io::Write;
        let err = |e: std::io::Error| StorageError(format!("{}: {e}", self.path.display()));
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&crate::wire::encode(state)).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        }
        Ok(())
    }
}

impl Storage for FileStorage {
    fn load(&self) -> BoxFuture<'_, Result<Option<Durable>, StorageError>> {
        let r = self.load_now();
        Box::pin(async move { r })
    }
    fn save(&self, state: &Durable) -> BoxFuture<'_, Result<(), StorageError>> {
        let r = self.save_now(state);
        Box::pin(async move { r })
    }
    fn set_aside(&self) -> BoxFuture<'_, Result<Option<String>, StorageError>> {
        let r = self.set_aside_now();
        Box::pin(async move { r })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    /// A missing directory, a file where the directory should be, and a directory that takes
    /// no file are refused by `open`, naming the path and the reason; a good one is taken.
    #[test]
    fn opening_file_storage_names_a_bad_state_directory() {
        let dir = std::env::temp_dir().join(format!("leasehold-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let missing = dir.join("nowhere").join("state.json");
        let e = FileStorage::open(&missing).unwrap_err().to_string();
        assert!(
            e.contains(&dir.join("nowhere").display().to_string()) && e.contains("No such file"),
            "{e}"
        );
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("file"), b"x").unwrap();
        let e = FileStorage::open(dir.join("file").join("state.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a directory") || e.contains("Not a directory"), "{e}");
        let ok = FileStorage::open(dir.join("state.json")).expect("a directory that takes files");
        assert_eq!(ok.path(), dir.join("state.json"));
        assert!(!dir.join("state.tmp").exists(), "the probe is removed");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let ro = dir.join("read-only");
            std::fs::create_dir_all(&ro).unwrap();
            std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
            // (root writes anywhere: the check is then moot, and so is this part of the test.)
            if std::fs::File::create(ro.join("probe")).is_err() {
                let e = FileStorage::open(ro.join("state.json")).unwrap_err().to_string();
                assert!(e.contains("Permission denied"), "{e}");
            }
            std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn file_storage_round_trips_and_starts_empty() {
        let dir = std::env::temp_dir().join(format!("leasehold-storage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let s = FileStorage::new(dir.join("state.json"));
        let _ = std::fs::remove_file(dir.join("state.json"));
        assert_eq!(
            block_on(s.load()).unwrap(),
            None,
            "no file: no state, not a default one"
        );
        let d = Durable {
            incarnation: 3,
            max_token: 9,
            owner: Some(Incarnation {
                id: "a".into(),
                inc: 2,
                run: 7,
            }),
            ..Durable::default()
        };
        block_on(s.save(&d)).unwrap();
        assert_eq!(
            block_on(FileStorage::new(dir.join("state.json")).load()).unwrap(),
            Some(d)
        );
        std::fs::write(dir.join("state.json"), b"{\"incarnation\":").unwrap();
        assert!(
            block_on(s.load()).is_err(),
            "a corrupt file is an error, not a fresh start"
        );
        // Set aside, twice: each keeps its bytes under a name of its own; nothing is lost.
        let first = block_on(s.set_aside()).unwrap().unwrap();
        assert!(first.ends_with("state.json.unreadable.1"), "{first}");
        assert_eq!(
            block_on(s.load()).unwrap(),
            None,
            "set aside: the state is gone, not zeroed"
        );
        std::fs::write(dir.join("state.json"), b"garbage").unwrap();
        let second = block_on(s.set_aside()).unwrap().unwrap();
        assert!(second.ends_with("state.json.unreadable.2"), "{second}");
        assert_eq!(std::fs::read(&first).unwrap(), b"{\"incarnation\":");
        assert_eq!(std::fs::read(&second).unwrap(), b"garbage");
        assert_eq!(block_on(s.set_aside()).unwrap(), None, "nothing to set aside");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
