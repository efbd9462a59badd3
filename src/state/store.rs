//! Where the ledger lives (a file, or a blob in Azure Storage), and the writer a run holds to
//! change it: every change is saved at once, and a change that lost a race with another run is
//! redone on the ledger as that run left it, never written over it.

use std::sync::Arc;
use std::time::Duration;

use super::blob::{self, BlobStore};
use super::{
    FileStore, Ledger, LedgerEntry, LedgerKey, LedgerLock, MissingLedger, Revision, Rewrite,
    StateError,
};

/// How many times one change is redone after losing a race before the run gives up.
const CONFLICT_ATTEMPTS: u32 = 20;
/// The most a run waits before redoing a change that lost a race; the wait is random, so two
/// runs racing for the same ledger soon fall out of step.
const CONFLICT_BACKOFF: Duration = Duration::from_millis(200);

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

/// What a writer holds: the file's run lock, or nothing but the revision it read (a blob is
/// guarded by its ETag alone).
#[derive(Debug)]
enum Held {
    File { store: FileStore, lock: LedgerLock },
    Blob(Arc<BlobStore>),
}

/// The ledger held for writing by one run, saved after every change.
#[derive(Debug)]
pub struct LedgerWriter {
    held: Held,
    revision: Revision,
    ledger: Ledger,
    /// The ledger as this run first read it: an entry that changed since, and that this run
    /// did not claim, was changed by another run.
    at_open: Ledger,
    claimed: std::collections::BTreeSet<LedgerKey>,
    /// What this run has written to the store so far, for `RUST_LOG=imagegen=debug` and the
    /// benchmarks.
    written: WriteCount,
}

/// Writes a run made to its ledger store, and their bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteCount {
    pub writes: u64,
    pub bytes: u64,
}

impl Drop for LedgerWriter {
    fn drop(&mut self) {
        tracing::debug!(
            "ledger writes: {} writes, {} bytes written",
            self.written.writes,
            self.written.bytes
        );
    }
}

impl LedgerWriter {
    /// Takes the run lock of a file ledger (waiting up to `lock_timeout`) and reads the ledger.
    /// `purpose` (such as "imagegen reconcile") is shown to runs that wait.
    pub async fn open(
        store: &Store,
        lock_timeout: Duration,
        purpose: &str,
    ) -> Result<Self, StateError> {
        let (held, snapshot) = match store {
            Store::File(file) => {
                let file = file.clone();
                let purpose = purpose.to_string();
                // Waiting for the lock blocks: keep it off the async workers.
                let (lock, file) = tokio::task::spawn_blocking(move || {
                    file.lock(lock_timeout, &purpose).map(|lock| (lock, file))
                })
                .await
                .expect("taking the ledger lock does not panic")?;
                let snapshot = file.load()?;
                (Held::File { store: file, lock }, snapshot)
            }
            // A blob has no lock: every write is conditional on the ETag this run read.
            Store::Blob(blob) => (Held::Blob(blob.clone()), blob.load().await?),
        };
        Ok(Self {
            held,
            revision: snapshot.revision,
            at_open: snapshot.ledger.clone(),
            ledger: snapshot.ledger,
            claimed: Default::default(),
            written: WriteCount::default(),
        })
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The entry under `key` as this run first read it, unless this run has claimed the entry
    /// since (then the entry as it is now: this run's own changes are not another run's).
    pub fn entry_at_open(&self, key: &LedgerKey) -> Option<&LedgerEntry> {
        if self.claimed.contains(key) {
            self.ledger.entry(key)
        } else {
            self.at_open.entry(key)
        }
    }

    /// What this run has written to the store so far.
    pub fn written(&self) -> WriteCount {
        self.written
    }

    /// Replaces the whole ledger with `ledger` (an import), under the same compare-and-swap as
    /// any change.
    pub async fn replace_all(&mut self, ledger: Ledger) -> Result<(), StateError> {
        self.update(|current| *current = ledger.clone()).await
    }

    /// Marks the entry under `key` as this run's own (it recorded an intent there).
    pub fn claim(&mut self, key: &LedgerKey) {
        self.claimed.insert(key.clone());
    }

    /// Applies `change` and saves. If another run saved first, the ledger is read again and
    /// `change` runs again on what that run left, so it must decide from the ledger it is given.
    /// If the save fails, the ledger in memory stays as the store holds it.
    pub async fn update<T>(
        &mut self,
        mut change: impl FnMut(&mut Ledger) -> T,
    ) -> Result<T, StateError> {
        let mut attempt = 1;
        loop {
            let mut next = self.ledger.clone();
            let result = change(&mut next);
            match self.save(&next).await {
                Ok(revision) => {
                    self.written.writes += 1;
                    self.written.bytes += super::written_form(&next).len() as u64;
                    self.revision = revision;
                    self.ledger = next;
                    return Ok(result);
                }
                Err(StateError::Conflict { .. }) if attempt < CONFLICT_ATTEMPTS => {
                    tracing::info!(
                        "another run changed the ledger; reading it again and redoing the change"
                    );
                    let most = CONFLICT_BACKOFF.min(Duration::from_millis(20) * attempt);
                    tokio::time::sleep(most.mul_f64(fastrand::f64())).await;
                    self.reload().await?;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn save(&self, ledger: &Ledger) -> Result<Revision, StateError> {
        match &self.held {
            Held::File { store, lock } => store.save(lock, &self.revision, ledger),
            Held::Blob(store) => store.save(&self.revision, ledger).await,
        }
    }

    async fn reload(&mut self) -> Result<(), StateError> {
        let snapshot = match &self.held {
            Held::File { store, .. } => store.load()?,
            Held::Blob(store) => store.load().await?,
        };
        self.ledger = snapshot.ledger;
        self.revision = snapshot.revision;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::{Payload, PayloadHash};
    use crate::state::JobStatus;
    use serde_json::json;

    fn entry(status: JobStatus) -> LedgerEntry {
        let payload = json!({"Destination": [{"CustomImageName": "Image-1"}]});
        LedgerEntry {
            payload_hash: PayloadHash::of(&payload),
            payload: Payload::new(&payload),
            variables: Default::default(),
            idempotency_key: Some("key".into()),
            tracking_id: None,
            status,
            message: None,
            image_names: Vec::new(),
            submitted_at: None,
            updated_at: jiff::Timestamp::UNIX_EPOCH,
            completed_at: None,
            adopted: false,
            same_name_allowed: None,
        }
    }

    #[tokio::test]
    async fn a_change_that_lost_a_race_is_redone_on_the_new_ledger() {
        let folder = tempfile::tempdir().unwrap();
        let file = FileStore::new(folder.path().join("state.json"));
        let store = Store::File(file.clone());
        let mut writer = LedgerWriter::open(&store, Duration::ZERO, "test")
            .await
            .unwrap();
        // Someone edits the file behind the lock's back (a restore, by hand).
        let mut theirs = Ledger::default();
        theirs
            .definitions
            .insert("theirs".into(), entry(JobStatus::Queued));
        let text = serde_json::to_string(&theirs).unwrap();
        std::fs::write(file.path(), text).unwrap();

        let mut runs = 0;
        writer
            .update(|ledger| {
                runs += 1;
                ledger
                    .definitions
                    .insert("mine".into(), entry(JobStatus::Submitting));
            })
            .await
            .unwrap();
        assert_eq!(runs, 2, "the change is redone once on the re-read ledger");
        let saved = file.read().unwrap();
        assert!(saved.definitions.contains_key("theirs"), "nothing is lost");
        assert!(saved.definitions.contains_key("mine"));
        assert_eq!(&saved, writer.ledger());
        assert_eq!(
            writer.entry_at_open(&LedgerKey::Definition("theirs".into())),
            None
        );
    }
}
