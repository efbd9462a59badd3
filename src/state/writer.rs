//! The writer a run holds to change the ledger: each change is applied in memory at once and
//! appended to the journal before the change returns; changes that arrive while a write is
//! under way go out together in the next write; a change that lost a race with another run is
//! redone on the ledger as that run left it, never written over it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::blob::BlobStore;
use super::journal::Record;
use super::store::Store;
use super::{Base, FileStore, Ledger, LedgerEntry, LedgerKey, LedgerLock, Revision, StateError};

/// How many times one change is redone after losing a race before the run gives up.
const CONFLICT_ATTEMPTS: u32 = 20;
/// The most a run waits before redoing a change that lost a race; the wait is random, so two
/// runs racing for the same ledger soon fall out of step.
const CONFLICT_BACKOFF: Duration = Duration::from_millis(200);
/// A journal longer than this many records is folded into the snapshot during a run, not only
/// at its end: an append blob takes at most 50,000 appends, and an append holds one record or
/// more. Folding costs a whole snapshot, so it is kept for runs that need it: a run that
/// submits and follows 5,000 jobs appends about 30,000 records (an intent, an answer and a
/// state a poll), and reading 40,000 records back takes a fraction of a second.
const COMPACT_AFTER_RECORDS: usize = 40_000;

/// Writes a run made to its ledger store, and their bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteCount {
    pub writes: u64,
    pub bytes: u64,
}

/// The changes one closure makes to the ledger, over the ledger as it is: what is read goes
/// through the changes first, and only entries that end up different become journal records.
#[derive(Debug)]
pub struct Edit<'a> {
    base: &'a Ledger,
    changes: BTreeMap<LedgerKey, Option<LedgerEntry>>,
}

impl<'a> Edit<'a> {
    fn new(base: &'a Ledger) -> Self {
        Self {
            base,
            changes: BTreeMap::new(),
        }
    }

    pub fn entry(&self, key: &LedgerKey) -> Option<&LedgerEntry> {
        match self.changes.get(key) {
            Some(changed) => changed.as_ref(),
            None => self.base.entry(key),
        }
    }

    pub fn entry_mut(&mut self, key: &LedgerKey) -> Option<&mut LedgerEntry> {
        if !self.changes.contains_key(key) {
            let current = self.base.entry(key)?.clone();
            self.changes.insert(key.clone(), Some(current));
        }
        self.changes.get_mut(key)?.as_mut()
    }

    /// Records `entry` under `key`, returning what was there before.
    pub fn insert(&mut self, key: &LedgerKey, entry: LedgerEntry) -> Option<LedgerEntry> {
        let before = self.entry(key).cloned();
        self.changes.insert(key.clone(), Some(entry));
        before
    }

    pub fn remove(&mut self, key: &LedgerKey) -> Option<LedgerEntry> {
        let before = self.entry(key).cloned();
        if before.is_some() {
            self.changes.insert(key.clone(), None);
        }
        before
    }

    fn into_records(self) -> Vec<Record> {
        let base = self.base;
        self.changes
            .into_iter()
            .filter(|(key, entry)| base.entry(key) != entry.as_ref())
            .map(|(key, entry)| Record { key, entry })
            .collect()
    }
}

/// What a run holds of its store: the file's run lock, or nothing but the blob (guarded by
/// its ETags alone).
#[derive(Debug)]
enum Held {
    File { store: FileStore, lock: LedgerLock },
    Blob(Arc<BlobStore>),
}

/// What became of a staged change once a write was tried.
#[derive(Debug, Clone)]
enum Fate {
    Written,
    /// Another run changed the ledger first: the change is to be decided again.
    Redo,
    /// The write failed; the message of its error.
    Failed(String),
}

/// The ledger as this run sees it: as stored, plus the changes staged but not yet written.
#[derive(Debug)]
struct Memory {
    ledger: Ledger,
    /// The intents the ledger held when this run first read it (entries being submitted): an
    /// intent there now that was not, and that this run did not claim, is another run's. Only
    /// those are kept, since only an intent is ever resumed: a whole copy of a large ledger
    /// would cost as much memory as the ledger itself.
    at_open: Ledger,
    claimed: BTreeSet<LedgerKey>,
    staged: Vec<(u64, Vec<Record>)>,
    next_change: u64,
}

/// The ledger as stored, and what the next write must find there.
#[derive(Debug)]
struct Durable {
    held: Held,
    revision: Revision,
    base: Base,
    ledger: Ledger,
    written: WriteCount,
    fates: BTreeMap<u64, Fate>,
}

/// One write to a store.
#[derive(Debug)]
enum Operation {
    Append(Vec<Record>),
    /// Fold the journal into a snapshot of this ledger (the stored one, or an import).
    Compact(Option<Ledger>),
}

/// The ledger held for writing by one run. Shared by the run's concurrent tasks (`&self`).
#[derive(Debug)]
pub struct LedgerWriter {
    memory: Mutex<Memory>,
    durable: tokio::sync::Mutex<Option<Durable>>,
    location: String,
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
                // Waiting for the lock and reading the file block: keep them off the runtime.
                tokio::task::spawn_blocking(move || {
                    let lock = file.lock(lock_timeout, &purpose)?;
                    let snapshot = file.load()?;
                    Ok::<_, StateError>((Held::File { store: file, lock }, snapshot))
                })
                .await
                .map_err(|error| StateError::Runtime(error.to_string()))??
            }
            // A blob has no lock: every write is conditional on the ETag this run read.
            Store::Blob(blob) => (Held::Blob(blob.clone()), blob.load().await?),
        };
        let mut snapshot = snapshot;
        // The first write makes the ledger this format, whatever it was read as.
        snapshot.ledger.version = super::LEDGER_FORMAT_VERSION;
        Ok(Self {
            memory: Mutex::new(Memory {
                ledger: snapshot.ledger.clone(),
                at_open: intents_of(&snapshot.ledger),
                claimed: BTreeSet::new(),
                staged: Vec::new(),
                next_change: 0,
            }),
            durable: tokio::sync::Mutex::new(Some(Durable {
                held,
                revision: snapshot.revision,
                base: snapshot.base,
                ledger: snapshot.ledger,
                written: WriteCount::default(),
                fates: BTreeMap::new(),
            })),
            location: store.describe(),
        })
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        // Nothing in this file panics while holding the lock; a closure given to `update` may,
        // and then its change was not staged, so what the lock guards is still whole.
        self.memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `look` on the ledger as this run sees it.
    pub fn with_ledger<R>(&self, look: impl FnOnce(&Ledger) -> R) -> R {
        look(&self.memory().ledger)
    }

    /// A copy of the ledger as this run sees it.
    pub fn ledger(&self) -> Ledger {
        self.with_ledger(Ledger::clone)
    }

    pub fn entry(&self, key: &LedgerKey) -> Option<LedgerEntry> {
        self.with_ledger(|ledger| ledger.entry(key).cloned())
    }

    /// The entry under `key` as this run first read it if it held an intent then (`None`
    /// otherwise), unless this run has claimed the entry since (then the entry as it is now:
    /// this run's own changes are not another run's).
    pub fn entry_at_open(&self, key: &LedgerKey) -> Option<LedgerEntry> {
        let memory = self.memory();
        if memory.claimed.contains(key) {
            memory.ledger.entry(key).cloned()
        } else {
            memory.at_open.entry(key).cloned()
        }
    }

    /// Marks the entry under `key` as this run's own (it recorded an intent there).
    pub fn claim(&self, key: &LedgerKey) {
        self.memory().claimed.insert(key.clone());
    }

    /// What this run has written to the store so far.
    pub async fn written(&self) -> WriteCount {
        self.durable
            .lock()
            .await
            .as_ref()
            .map(|durable| durable.written)
            .unwrap_or_default()
    }

    /// Applies `change` and records it in the journal before returning. If another run wrote
    /// first, the ledger is read again and `change` runs again on what that run left, so it
    /// must decide from the ledger it is given. If the write fails, the change is undone.
    pub async fn update<T>(
        &self,
        mut change: impl FnMut(&mut Edit<'_>) -> T,
    ) -> Result<T, StateError> {
        let mut attempt = 1;
        loop {
            let (id, result) = {
                let mut memory = self.memory();
                let mut edit = Edit::new(&memory.ledger);
                let result = change(&mut edit);
                let records = edit.into_records();
                if records.is_empty() {
                    return Ok(result);
                }
                (memory.stage(records), result)
            };
            match self.write_staged(id).await? {
                Fate::Written => return Ok(result),
                Fate::Failed(message) => return Err(StateError::Batch { message }),
                Fate::Redo if attempt < CONFLICT_ATTEMPTS => {
                    tracing::info!(
                        "another run changed the ledger; reading it again and redoing the change"
                    );
                    let most = CONFLICT_BACKOFF.min(Duration::from_millis(20) * attempt);
                    tokio::time::sleep(most.mul_f64(fastrand::f64())).await;
                    attempt += 1;
                }
                Fate::Redo => {
                    return Err(StateError::Conflict {
                        location: self.location.clone(),
                    });
                }
            }
        }
    }

    /// Replaces the whole ledger with `ledger` (an import), under the same compare-and-swap as
    /// any change. Changes another run appends afterwards still apply on top of it.
    pub async fn replace_all(&self, mut ledger: Ledger) -> Result<(), StateError> {
        ledger.version = super::LEDGER_FORMAT_VERSION;
        let mut slot = self.durable.lock().await;
        self.write_batch(&mut slot).await?;
        let result = run(&mut slot, Operation::Compact(Some(ledger))).await;
        if let Err(error) = result {
            self.recover(&mut slot, &[]).await;
            return Err(error);
        }
        let durable = slot.as_ref().ok_or_else(stopped)?;
        let mut memory = self.memory();
        memory.ledger = durable.ledger.clone();
        memory.claimed.clear();
        Ok(())
    }

    /// Folds the journal into the snapshot: the end of a run. A failure leaves the journal in
    /// place, which readers fold in, so it is reported in the log and not as an error.
    pub async fn finish(&self) {
        let mut slot = self.durable.lock().await;
        let Some(durable) = slot.as_ref() else {
            return;
        };
        // A journal with no record (or none that continues the snapshot) holds nothing to fold.
        if durable
            .base
            .journal
            .as_ref()
            .is_none_or(|tail| tail.records == 0)
        {
            return;
        }
        if let Err(error) = run(&mut slot, Operation::Compact(None)).await {
            tracing::info!(
                "the ledger's journal was not folded into its snapshot ({error}); the next run \
                 folds it"
            );
        }
    }

    /// Writes every staged change, `id` among them, unless a write under way already did.
    async fn write_staged(&self, id: u64) -> Result<Fate, StateError> {
        let mut slot = self.durable.lock().await;
        if let Some(fate) = slot.as_mut().and_then(|durable| durable.fates.remove(&id)) {
            return Ok(fate);
        }
        if let Err(error) = self.write_batch(&mut slot).await {
            return match slot.as_mut().and_then(|durable| durable.fates.remove(&id)) {
                Some(Fate::Failed(_)) | None => Err(error),
                Some(fate) => Ok(fate),
            };
        }
        let durable = slot.as_mut().ok_or_else(stopped)?;
        let fate = durable.fates.remove(&id).unwrap_or(Fate::Redo);
        if durable
            .base
            .journal
            .as_ref()
            .is_some_and(|tail| tail.records > COMPACT_AFTER_RECORDS)
            && let Err(error) = run(&mut slot, Operation::Compact(None)).await
        {
            tracing::info!("the ledger's journal was not folded into its snapshot: {error}");
        }
        Ok(fate)
    }

    /// Writes every change staged so far in one append, and records each one's fate.
    async fn write_batch(&self, slot: &mut Option<Durable>) -> Result<(), StateError> {
        let batch = std::mem::take(&mut self.memory().staged);
        if batch.is_empty() {
            return Ok(());
        }
        let records: Vec<Record> = batch
            .iter()
            .flat_map(|(_, records)| records.iter().cloned())
            .collect();
        let ids: Vec<u64> = batch.iter().map(|(id, _)| *id).collect();
        match run(slot, Operation::Append(records)).await {
            Ok(()) => {
                let durable = slot.as_mut().ok_or_else(stopped)?;
                for id in ids {
                    durable.fates.insert(id, Fate::Written);
                }
                Ok(())
            }
            Err(StateError::Conflict { .. }) => {
                self.recover(slot, &ids).await;
                if let Some(durable) = slot.as_mut() {
                    for id in ids {
                        durable.fates.insert(id, Fate::Redo);
                    }
                }
                Ok(())
            }
            Err(error) => {
                self.recover(slot, &ids).await;
                if let Some(durable) = slot.as_mut() {
                    for id in ids {
                        durable.fates.insert(id, Fate::Failed(error.to_string()));
                    }
                }
                Err(error)
            }
        }
    }

    /// After a write that failed or lost a race: reads the ledger again, so memory holds what
    /// the store holds. Changes staged meanwhile (not in `failed`) are to be redone on it.
    async fn recover(&self, slot: &mut Option<Durable>, failed: &[u64]) {
        let Some(durable) = slot.as_mut() else {
            return;
        };
        let reloaded = match &durable.held {
            Held::File { store, .. } => {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.load())
                    .await
                    .map_err(|error| StateError::Runtime(error.to_string()))
                    .and_then(|loaded| loaded)
            }
            Held::Blob(store) => store.load().await,
        };
        let snapshot = match reloaded {
            Ok(snapshot) => snapshot,
            Err(error) => {
                tracing::warn!("cannot read the ledger again after a failed write: {error}");
                // Memory may hold changes that were never written: write nothing more.
                *slot = None;
                return;
            }
        };
        durable.revision = snapshot.revision;
        durable.base = snapshot.base;
        durable.ledger = snapshot.ledger;
        let mut memory = self.memory();
        for (id, _) in std::mem::take(&mut memory.staged) {
            if !failed.contains(&id) {
                durable.fates.insert(id, Fate::Redo);
            }
        }
        memory.ledger = durable.ledger.clone();
    }
}

impl Memory {
    /// Applies `records` here and queues them for the next write; returns the change's id.
    fn stage(&mut self, records: Vec<Record>) -> u64 {
        for record in &records {
            record.apply(&mut self.ledger);
        }
        let id = self.next_change;
        self.next_change += 1;
        self.staged.push((id, records));
        id
    }
}

/// The entries of `ledger` that hold an intent (being submitted), in a ledger of their own.
fn intents_of(ledger: &Ledger) -> Ledger {
    let mut intents = Ledger {
        version: ledger.version,
        ..Ledger::default()
    };
    for (key, entry) in ledger.entries() {
        if entry.status == super::JobStatus::Submitting {
            intents.insert(&key, entry.clone());
        }
    }
    intents
}

fn stopped() -> StateError {
    StateError::Runtime(
        "the ledger writer stopped after a write it could not check; run again".to_string(),
    )
}

/// Runs one write against the store: a file's on the blocking pool (it syncs to disk), a
/// blob's on the runtime. The stored ledger follows only when the write succeeds.
async fn run(slot: &mut Option<Durable>, operation: Operation) -> Result<(), StateError> {
    let durable = slot.as_mut().ok_or_else(stopped)?;
    if let Held::Blob(store) = &durable.held {
        let store = store.clone();
        return durable.run_blob(&store, operation).await;
    }
    let mut owned = slot.take().ok_or_else(stopped)?;
    let (owned, result) = tokio::task::spawn_blocking(move || {
        let result = owned.run_file(operation);
        (owned, result)
    })
    .await
    .map_err(|error| StateError::Runtime(error.to_string()))?;
    *slot = Some(owned);
    result
}

impl Durable {
    fn run_file(&mut self, operation: Operation) -> Result<(), StateError> {
        let Held::File { store, lock } = &self.held else {
            unreachable!("a file write runs on a file store");
        };
        let bytes = match &operation {
            Operation::Append(records) => {
                store.append(lock, &mut self.base, &self.ledger, records)?
            }
            Operation::Compact(replacement) => store.compact(
                lock,
                &mut self.base,
                replacement.as_ref().unwrap_or(&self.ledger),
            )?,
        };
        self.written(bytes, operation);
        Ok(())
    }

    async fn run_blob(
        &mut self,
        store: &BlobStore,
        operation: Operation,
    ) -> Result<(), StateError> {
        let bytes = match &operation {
            Operation::Append(records) => {
                store
                    .append(&mut self.revision, &mut self.base, &self.ledger, records)
                    .await?
            }
            Operation::Compact(replacement) => {
                store
                    .compact(
                        &mut self.revision,
                        &mut self.base,
                        replacement.as_ref().unwrap_or(&self.ledger),
                    )
                    .await?
            }
        };
        self.written(bytes, operation);
        Ok(())
    }

    /// Follows a write that succeeded: the stored ledger, and the counts.
    fn written(&mut self, bytes: u64, operation: Operation) {
        self.written.writes += 1;
        self.written.bytes += bytes;
        match operation {
            Operation::Append(records) => {
                for record in &records {
                    record.apply(&mut self.ledger);
                }
            }
            Operation::Compact(Some(replacement)) => self.ledger = replacement,
            Operation::Compact(None) => {}
        }
    }
}

impl Drop for LedgerWriter {
    fn drop(&mut self) {
        if let Some(durable) = self.durable.get_mut() {
            tracing::debug!(
                "ledger writes: {} writes, {} bytes written",
                durable.written.writes,
                durable.written.bytes
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{JobStatus, journal, written_form};

    fn entry(status: JobStatus) -> LedgerEntry {
        crate::state::sample_entry(status)
    }

    fn key(name: &str) -> LedgerKey {
        LedgerKey::Definition(name.into())
    }

    fn journal_path(file: &FileStore) -> std::path::PathBuf {
        std::path::PathBuf::from(journal::journal_name(
            &file.path().canonicalize().unwrap().to_string_lossy(),
        ))
    }

    /// Records `name` as queued through `writer`.
    async fn queue(writer: &LedgerWriter, name: &str) {
        writer
            .update(|ledger| ledger.insert(&key(name), entry(JobStatus::Queued)))
            .await
            .unwrap();
    }

    async fn open(file: &FileStore) -> LedgerWriter {
        LedgerWriter::open(&Store::File(file.clone()), Duration::ZERO, "test")
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_change_that_lost_a_race_is_redone_on_the_new_ledger() {
        let folder = tempfile::tempdir().unwrap();
        let file = FileStore::new(folder.path().join("state.json"));
        let writer = open(&file).await;
        // Someone replaces the file behind the lock's back (a restore, by hand).
        let mut theirs = Ledger::default();
        theirs.insert(&key("theirs"), entry(JobStatus::Queued));
        std::fs::write(file.path(), written_form(&theirs)).unwrap();

        let mut runs = 0;
        writer
            .update(|ledger| {
                runs += 1;
                ledger.insert(&key("mine"), entry(JobStatus::Submitting));
            })
            .await
            .unwrap();
        assert_eq!(runs, 2, "the change is redone once on the re-read ledger");
        let saved = file.read().unwrap();
        assert!(saved.definitions.contains_key("theirs"), "nothing is lost");
        assert!(saved.definitions.contains_key("mine"));
        assert_eq!(saved, writer.ledger());
        assert_eq!(writer.entry_at_open(&key("theirs")), None);
    }

    #[tokio::test]
    async fn a_change_appends_its_entry_and_the_end_of_a_run_folds_the_journal() {
        let folder = tempfile::tempdir().unwrap();
        let file = FileStore::new(folder.path().join("state.json"));
        let mut ledger = Ledger {
            version: 1,
            ..Ledger::default()
        };
        for index in 0..200 {
            ledger.insert(&key(&format!("old-{index}")), entry(JobStatus::Succeeded));
        }
        std::fs::write(file.path(), written_form(&ledger)).unwrap();
        let snapshot_size = std::fs::metadata(file.path()).unwrap().len();

        let writer = open(&file).await;
        for index in 0..20 {
            writer
                .update(|ledger| {
                    ledger.insert(&key(&format!("new-{index}")), entry(JobStatus::Queued))
                })
                .await
                .unwrap();
        }
        let written = writer.written().await;
        // The first write makes the version 1 file a version 2 snapshot and starts the
        // journal; the others append.
        assert_eq!(written.writes, 20);
        let appended = written.bytes - std::fs::metadata(file.path()).unwrap().len();
        assert!(
            appended < snapshot_size,
            "20 entries appended {appended} bytes; the snapshot is {snapshot_size}"
        );
        assert!(journal_path(&file).exists());
        // A reader folds the journal in.
        let read = file.read().unwrap();
        assert_eq!(read.definitions.len(), 220);
        assert_eq!(read, writer.ledger());

        writer.finish().await;
        assert!(!journal_path(&file).exists(), "the journal is folded");
        let folded = file.read().unwrap();
        assert_eq!(folded, writer.ledger());
        assert_eq!(folded.version, crate::state::LEDGER_FORMAT_VERSION);
    }

    #[tokio::test]
    async fn changes_that_arrive_together_are_written_together() {
        let folder = tempfile::tempdir().unwrap();
        let file = FileStore::new(folder.path().join("state.json"));
        let writer = Arc::new(open(&file).await);
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..50 {
            let writer = writer.clone();
            tasks.spawn(async move {
                writer
                    .update(|ledger| {
                        ledger.insert(&key(&format!("d-{index}")), entry(JobStatus::Queued))
                    })
                    .await
            });
        }
        while let Some(result) = tasks.join_next().await {
            result.unwrap().unwrap();
        }
        let written = writer.written().await;
        assert!(
            written.writes < 50,
            "50 changes took {} writes",
            written.writes
        );
        assert_eq!(file.read().unwrap().definitions.len(), 50);
    }

    #[tokio::test]
    async fn a_torn_last_record_is_ignored_and_cut_off_by_the_next_write() {
        let folder = tempfile::tempdir().unwrap();
        let file = FileStore::new(folder.path().join("state.json"));
        let writer = open(&file).await;
        queue(&writer, "a").await;
        drop(writer);
        // A run killed in the middle of its write left half a line.
        let torn = journal::record_lines(
            &[journal::Record {
                key: key("b"),
                entry: Some(entry(JobStatus::Queued)),
            }],
            &Ledger::default(),
        );
        let mut bytes = std::fs::read(journal_path(&file)).unwrap();
        bytes.extend(&torn[..torn.len() / 2]);
        std::fs::write(journal_path(&file), &bytes).unwrap();

        let read = file.read().unwrap();
        assert!(read.definitions.contains_key("a"));
        assert!(!read.definitions.contains_key("b"));

        let writer = open(&file).await;
        queue(&writer, "c").await;
        let read = file.read().unwrap();
        assert!(read.definitions.contains_key("a"));
        assert!(read.definitions.contains_key("c"));
        assert!(!read.definitions.contains_key("b"));
    }

    #[tokio::test]
    async fn a_journal_left_by_a_compaction_that_stopped_half_way_is_not_applied_twice() {
        let folder = tempfile::tempdir().unwrap();
        let file = FileStore::new(folder.path().join("state.json"));
        let writer = open(&file).await;
        queue(&writer, "a").await;
        let journal_bytes = std::fs::read(journal_path(&file)).unwrap();
        writer.finish().await;
        drop(writer);
        // The run stopped after writing the snapshot, before removing the journal.
        std::fs::write(journal_path(&file), &journal_bytes).unwrap();
        let writer = open(&file).await;
        writer
            .update(|ledger| {
                ledger.remove(&key("a"));
            })
            .await
            .unwrap();
        let read = file.read().unwrap();
        assert!(
            !read.definitions.contains_key("a"),
            "the old journal's record does not come back"
        );
    }

    #[tokio::test]
    async fn a_replaced_snapshot_ignores_the_journal_of_the_old_one() {
        let folder = tempfile::tempdir().unwrap();
        let file = FileStore::new(folder.path().join("state.json"));
        let writer = open(&file).await;
        queue(&writer, "a").await;
        drop(writer);
        // Restored by hand from a copy: the journal continues a snapshot that is gone.
        let mut copy = Ledger::default();
        copy.insert(&key("z"), entry(JobStatus::Succeeded));
        std::fs::write(file.path(), written_form(&copy)).unwrap();
        assert_eq!(file.read().unwrap(), copy);
    }

    #[tokio::test]
    async fn an_import_replaces_the_ledger_and_its_journal() {
        let folder = tempfile::tempdir().unwrap();
        let file = FileStore::new(folder.path().join("state.json"));
        let writer = open(&file).await;
        queue(&writer, "a").await;
        let mut copy = Ledger::default();
        copy.insert(&key("b"), entry(JobStatus::Succeeded));
        writer.replace_all(copy).await.unwrap();
        queue(&writer, "c").await;
        let read = file.read().unwrap();
        let names: Vec<&String> = read.definitions.keys().collect();
        assert_eq!(names, ["b", "c"]);
    }

    #[test]
    fn an_edit_records_only_entries_that_changed() {
        let mut ledger = Ledger::default();
        ledger.insert(&key("a"), entry(JobStatus::Queued));
        let mut edit = Edit::new(&ledger);
        edit.entry_mut(&key("a"));
        assert!(edit.entry_mut(&key("missing")).is_none());
        assert!(edit.remove(&key("missing")).is_none());
        assert!(edit.into_records().is_empty());

        let mut edit = Edit::new(&ledger);
        edit.entry_mut(&key("a")).unwrap().status = JobStatus::Running;
        assert_eq!(edit.entry(&key("a")).unwrap().status, JobStatus::Running);
        edit.insert(&key("b"), entry(JobStatus::Queued));
        edit.remove(&key("b"));
        let records = edit.into_records();
        assert_eq!(
            records.len(),
            1,
            "b was added and removed: nothing to record"
        );
        assert_eq!(records[0].key, key("a"));
    }
}
