//! Test only (`--test-report-saves`): every state the agent saves is also printed, exactly as
//! written to its state file, so that `leasehold-sim real` can restore precisely the save a
//! scenario's `rollback_state` names (reading the file instead would miss saves made between
//! two reads).

use leasehold::{BoxFuture, Durable, FileStorage, Storage, StorageError};

/// The agent's file storage, reporting each save on stdout as `{"test_saved": TEXT}` when
/// `report` is set (otherwise the file storage alone).
pub(crate) struct ReportedSaves {
    pub(crate) inner: FileStorage,
    pub(crate) report: bool,
}

impl Storage for ReportedSaves {
    fn load(&self) -> BoxFuture<'_, Result<Option<Durable>, StorageError>> {
        self.inner.load()
    }

    fn save(&self, state: &Durable) -> BoxFuture<'_, Result<(), StorageError>> {
        let bytes = self.report.then(|| leasehold::wire::encode(state));
        let saved = self.inner.save(state);
        Box::pin(async move {
            saved.await?;
            let Some(bytes) = bytes else { return Ok(()) };
            let text = String::from_utf8_lossy(&bytes);
            println!("{}", serde_json::json!({ "test_saved": text }));
            Ok(())
        })
    }

    fn set_aside(&self) -> BoxFuture<'_, Result<Option<String>, StorageError>> {
        self.inner.set_aside()
    }
}
