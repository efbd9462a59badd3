//! Where the ledger lives: a file, or a blob in Azure Storage, as `--state` names it.

use std::sync::Arc;
use std::time::Duration;

use super::blob::{self, BlobStore};
use super::{FileStore, Ledger, MissingLedger, Rewrite, StateError};

/// The ledger's home, as `--state` / `IMAGEGEN_STATE` names it.
#[derive(Debug, Clone)]
pub enum Store {
    File(FileStore),
    /// One blob in Azure Storage, for runs on fresh machines (the pipeline).
    Blob(Arc<BlobStore>),
}

impl Store {
    /// What this store takes a ledger that does not exist for.
    pub fn missing(&self) -> MissingLedger {
        match self {
            Self::File(store) => store.missing(),
            Self::Blob(store) => store.missing(),
        }
    }

    /// The store `location` names: a blob URL (its SAS in the query, or else in
    /// `IMAGEGEN_STATE_SAS`), or else a file path, whose folder must exist. `missing` says
    /// what a ledger that does not exist is.
    pub fn locate(location: &str, missing: MissingLedger) -> Result<Self, StateError> {
        if blob::is_blob_url(location) {
            let sas = std::env::var(blob::SAS_VAR).ok();
            let store = BlobStore::from_url(location, sas.as_deref())?.with_missing(missing);
            return Ok(Self::Blob(Arc::new(store)));
        }
        Ok(Self::File(FileStore::given(location).with_missing(missing)))
    }

    /// The ledger's location as shown to people (never with a secret in it).
    pub fn describe(&self) -> String {
        match self {
            Self::File(store) => store.path().display().to_string(),
            Self::Blob(store) => store.display(),
        }
    }

    /// Reads the ledger to look at it; nothing will be written.
    pub async fn read(&self) -> Result<Ledger, StateError> {
        match self {
            Self::File(store) => store.read(),
            Self::Blob(store) => store.read().await,
        }
    }

    /// The ledger as read, or `None` when it does not exist (which [`read`](Self::read) takes
    /// for an empty ledger).
    pub async fn read_existing(&self) -> Result<Option<Ledger>, StateError> {
        match self {
            Self::File(store) => store.read_existing(),
            Self::Blob(store) => store.read_existing().await,
        }
    }

    /// Saves the ledger unchanged, as a run saves it, and reads it back: a file under its run
    /// lock (waiting up to `lock_timeout`; `purpose` names this process to runs that wait), a
    /// blob under its ETag. Nothing is written when there is no ledger.
    pub async fn rewrite_unchanged(
        &self,
        lock_timeout: Duration,
        purpose: &str,
    ) -> Result<Rewrite, StateError> {
        match self {
            Self::File(file) => {
                let file = file.clone();
                let purpose = purpose.to_string();
                // Waiting for the lock blocks: keep it off the async workers.
                tokio::task::spawn_blocking(move || file.rewrite_unchanged(lock_timeout, &purpose))
                    .await
                    .expect("rewriting the ledger does not panic")
            }
            Self::Blob(store) => store.rewrite_unchanged().await,
        }
    }

    /// Reads the ledger outside any async runtime (a dry run, `imagegen pr`).
    pub fn read_blocking(&self) -> Result<Ledger, StateError> {
        match self {
            Self::File(store) => store.read(),
            Self::Blob(store) => crate::runtime::block_on(store.read())
                .map_err(|error| StateError::Runtime(error.to_string()))?,
        }
    }
}
