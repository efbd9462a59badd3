//! The ledger as a file: read with precise errors, written atomically (temporary file, fsync,
//! rename), guarded by an exclusive lock held for a whole run, and checked against the revision
//! that was read so that a write never overwrites a ledger changed since.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::journal::{self, Folded, Header, Record};
use super::{
    Base, LEDGER_FORMAT_VERSION, Ledger, MissingLedger, Revision, Rewrite, Snapshot, StateError,
    assemble, current_snapshot_form, parse_snapshot, snapshot_form,
};

/// How many times a reader reads again when the snapshot was replaced while it read the
/// journal (a compaction by the run holding the lock).
const READ_ATTEMPTS: usize = 5;

/// A file's size, modification time and inode: what changes when anyone writes or replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

impl Stamp {
    /// The stamp of the file at `path`; `None` when there is no such file.
    fn of(path: &Path) -> std::io::Result<Option<Stamp>> {
        match std::fs::metadata(path) {
            Ok(meta) => Ok(Some(Stamp {
                len: meta.len(),
                modified: meta.modified().ok(),
                inode: inode(&meta),
            })),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// How often a run waiting for the lock tries again.
const LOCK_RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// The most symbolic links followed from the ledger's path to its file.
const MAX_LINKS: usize = 40;

/// Proof that this process holds the ledger's run lock; released when dropped (or when the
/// process dies, since the operating system drops the lock with the file).
#[derive(Debug)]
pub struct LedgerLock {
    file: File,
    ledger_path: PathBuf,
    /// The ledger's real path, which the lock is named after and writes go to.
    real_path: PathBuf,
}

impl Drop for LedgerLock {
    fn drop(&mut self) {
        // Clear the holder's description so a waiter never names a finished run.
        let _ = self.file.set_len(0);
    }
}

/// The ledger kept in one JSON file.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
    /// The ledger's folder is created at the first write: true for imagegen's own default
    /// place only, since a folder missing from a path someone gave means a typo.
    create_folder: bool,
    missing: MissingLedger,
}

impl FileStore {
    /// The ledger at `path`, in imagegen's own place (such as `.imagegen/state.json` in the
    /// repository): its folder is created at the first write.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            create_folder: true,
            missing: MissingLedger::Empty,
        }
    }

    /// The ledger at a path a person gave (`--state`, `IMAGEGEN_STATE`): its folder must exist.
    pub fn given(path: impl Into<PathBuf>) -> Self {
        Self {
            create_folder: false,
            ..Self::new(path)
        }
    }

    /// What this store takes a ledger that does not exist for.
    pub fn missing(&self) -> MissingLedger {
        self.missing
    }

    /// The same store, treating a missing ledger as `missing` says.
    pub fn with_missing(mut self, missing: MissingLedger) -> Self {
        self.missing = missing;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path as errors show it.
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    /// The one path of this ledger's file, whatever path names it: the file's own symbolic
    /// links followed, then its folder's real path (no `..`, no linked folder). Runs given a
    /// link and the file, or `a/../state.json` and `state.json`, take one lock and write one
    /// file. The file itself need not exist yet; its folder must.
    fn real_path(&self) -> std::io::Result<PathBuf> {
        let mut path = self.path.clone();
        let mut links = 0;
        // Link by link, since the last target may not exist yet (a first write).
        while std::fs::symlink_metadata(&path).is_ok_and(|meta| meta.file_type().is_symlink()) {
            links += 1;
            if links > MAX_LINKS {
                return Err(std::io::Error::other(format!(
                    "more than {MAX_LINKS} symbolic links lead from {} to the ledger",
                    self.path.display()
                )));
            }
            let target = std::fs::read_link(&path)?;
            // A relative target is relative to its link's folder; an absolute one replaces it.
            path = match path.parent() {
                Some(folder) => folder.join(target),
                None => target,
            };
        }
        let name = path
            .file_name()
            .ok_or_else(|| std::io::Error::other(format!("{} names no file", path.display())))?;
        let folder = match path.parent() {
            Some(folder) if !folder.as_os_str().is_empty() => folder,
            _ => Path::new("."),
        };
        Ok(folder.canonicalize()?.join(name))
    }

    /// Reads the ledger with the revision a later [`save`](Self::save) must find; a missing
    /// file is an empty ledger. Needs no lock: writes replace the file in one rename, so a
    /// reader sees the old ledger or the new one, never half of one.
    pub fn load(&self) -> Result<Snapshot, StateError> {
        self.load_for(true)
    }

    /// Reads the ledger only to look at it (a dry run): no revision is computed, since nothing
    /// will be written.
    pub fn read(&self) -> Result<Ledger, StateError> {
        Ok(self.load_for(false)?.ledger)
    }

    /// The journal's path: beside the ledger's real file, where a writer puts it.
    fn journal_path(&self) -> PathBuf {
        let real = self.real_path().unwrap_or_else(|_| self.path.clone());
        PathBuf::from(journal::journal_name(&real.to_string_lossy()))
    }

    /// Reads the snapshot and its journal; read again if the snapshot was replaced meanwhile,
    /// since the journal read may then belong to the new snapshot.
    fn load_for(&self, for_writer: bool) -> Result<Snapshot, StateError> {
        let journal_path = self.journal_path();
        let mut attempt = 1;
        loop {
            let stamp = |path: &Path| {
                Stamp::of(path).map_err(|source| StateError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            };
            let before = stamp(&self.path)?;
            let bytes = self.read_bytes()?;
            let journal = read_file(&journal_path).map_err(|source| StateError::Read {
                path: journal_path.clone(),
                source,
            })?;
            let after = stamp(&self.path)?;
            if before != after && attempt < READ_ATTEMPTS {
                attempt += 1;
                continue;
            }
            let (ledger, mut base) = assemble(
                &self.location(),
                bytes.as_deref(),
                journal.as_deref(),
                self.missing,
                for_writer,
            )?;
            base.stamp = after;
            let revision = if for_writer {
                Revision::of(bytes.as_deref())
            } else {
                Revision::absent()
            };
            return Ok(Snapshot {
                ledger,
                revision,
                base,
            });
        }
    }

    /// The folder the ledger lives in (`.` for a bare file name).
    fn folder(&self) -> PathBuf {
        match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Fails when the ledger's folder does not exist and is not imagegen's to create.
    fn check_folder(&self) -> Result<(), StateError> {
        let folder = self.folder();
        if self.create_folder || folder.is_dir() {
            return Ok(());
        }
        Err(StateError::NoFolder {
            path: self.path.clone(),
            folder,
        })
    }

    fn read_bytes(&self) -> Result<Option<Vec<u8>>, StateError> {
        match read_file(&self.path) {
            Ok(Some(bytes)) => Ok(Some(bytes)),
            Ok(None) => {
                self.check_folder()?;
                Ok(None)
            }
            Err(source) => Err(StateError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Takes the run lock, waiting up to `timeout` for another run to finish. `purpose` (such
    /// as "imagegen reconcile") is shown to runs that wait.
    pub fn lock(&self, timeout: Duration, purpose: &str) -> Result<LedgerLock, StateError> {
        self.check_folder()?;
        // A ledger that must exist is looked for before anything is created beside it.
        if self.missing == MissingLedger::Refuse && !self.path.exists() {
            return Err(StateError::Missing {
                location: self.location(),
            });
        }
        let unlockable = |source| StateError::Lock {
            path: self.path.clone(),
            source,
        };
        if self.create_folder {
            std::fs::create_dir_all(self.folder()).map_err(unlockable)?;
        }
        let real_path = self.real_path().map_err(unlockable)?;
        let mut lock_path = real_path.clone().into_os_string();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let lock_error = |source| StateError::Lock {
            path: lock_path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(lock_error)?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    if started.elapsed() >= timeout {
                        return Err(StateError::Locked {
                            holder: read_holder(&mut file),
                            path: lock_path,
                            waited: started.elapsed(),
                        });
                    }
                    std::thread::sleep(LOCK_RETRY_INTERVAL);
                }
                Err(std::fs::TryLockError::Error(source)) => return Err(lock_error(source)),
            }
        }
        let holder = format!(
            "{purpose}, process {} on {}, since {}",
            std::process::id(),
            host_name(),
            jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap_or_default()
        );
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(holder.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(lock_error)?;
        Ok(LedgerLock {
            file,
            ledger_path: self.path.clone(),
            real_path,
        })
    }

    /// Replaces the ledger with `ledger`, provided the file still holds `expected` (what this
    /// run read). Returns the new revision for the next write of the same run.
    pub fn save(
        &self,
        lock: &LedgerLock,
        expected: &Revision,
        bytes: &[u8],
    ) -> Result<Revision, StateError> {
        assert_eq!(
            lock.ledger_path, self.path,
            "a ledger is saved under its own lock"
        );
        let conflict = || StateError::Conflict {
            location: self.location(),
        };
        // Checked first to spare the write when the answer is already known, and again just
        // before the rename: the write is a compare-and-swap, not a check and then a write.
        let unchanged =
            || read_file(&lock.real_path).map(|bytes| &Revision::of(bytes.as_deref()) == expected);
        let read_error = |source| StateError::Read {
            path: self.path.clone(),
            source,
        };
        if !unchanged().map_err(read_error)? {
            return Err(conflict());
        }
        let replaced = crate::atomic_file::replace_if(&lock.real_path, bytes, unchanged).map_err(
            |source| StateError::Write {
                path: self.path.clone(),
                source,
            },
        )?;
        if !replaced {
            return Err(conflict());
        }
        Ok(Revision::of(Some(bytes)))
    }
}

impl FileStore {
    /// Appends `records` to the journal, under the run lock. The first append after a
    /// compaction (or to a ledger of format 1, or to none at all) writes the snapshot `durable`
    /// first, then starts a journal. Returns the bytes written.
    pub(crate) fn append(
        &self,
        lock: &LedgerLock,
        base: &mut Base,
        durable: &Ledger,
        records: &[Record],
    ) -> Result<u64, StateError> {
        self.check_stamp(lock, base)?;
        #[cfg(feature = "emulator")]
        failed_write_fault::strike().map_err(|source| StateError::Write {
            path: journal_path_of(lock),
            source,
        })?;
        let mut written = 0;
        if base.needs_start() {
            if base.snapshot_id.is_none() || base.snapshot_version < LEDGER_FORMAT_VERSION {
                written += self.write_snapshot(lock, base, durable, None)?;
            }
            written += self.start_journal(lock, base, durable, records)?;
            return Ok(written);
        }
        let tail = base
            .journal
            .as_mut()
            .expect("a journal that needs no start exists");
        let path = journal_path_of(lock);
        let write_error = |source| StateError::Write {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|error| match error.kind() {
                std::io::ErrorKind::NotFound => self.conflict(),
                _ => write_error(error),
            })?;
        let len = file.metadata().map_err(write_error)?.len();
        if len < tail.valid_bytes || !starts_with_header(&mut file, &tail.header) {
            return Err(self.conflict());
        }
        if len > tail.valid_bytes {
            // A torn line from a run killed while writing: never read, so cut it off.
            let mut beyond = Vec::new();
            file.seek(std::io::SeekFrom::Start(tail.valid_bytes))
                .and_then(|_| file.read_to_end(&mut beyond))
                .map_err(write_error)?;
            if beyond.contains(&b'\n') {
                return Err(self.conflict());
            }
            file.set_len(tail.valid_bytes).map_err(write_error)?;
        }
        let bytes = journal::record_lines(records, durable);
        #[cfg(feature = "emulator")]
        torn_write_fault::strike(&mut file, tail.valid_bytes, &bytes);
        file.seek(std::io::SeekFrom::Start(tail.valid_bytes))
            .and_then(|_| file.write_all(&bytes))
            .and_then(|()| file.sync_data())
            .map_err(write_error)?;
        tail.valid_bytes += bytes.len() as u64;
        tail.records += records.len();
        Ok(bytes.len() as u64)
    }

    /// Writes `durable` as the snapshot, folding the journal, and removes the journal. Returns
    /// the bytes written.
    pub(crate) fn compact(
        &self,
        lock: &LedgerLock,
        base: &mut Base,
        durable: &Ledger,
    ) -> Result<u64, StateError> {
        self.check_stamp(lock, base)?;
        let folded = base.journal.as_ref().map(|tail| Folded {
            id: tail.header.id.clone(),
            bytes: tail.valid_bytes,
        });
        let written = self.write_snapshot(lock, base, durable, folded.as_ref())?;
        let path = journal_path_of(lock);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            // The snapshot says what it folded, so a journal left behind is harmless.
            Err(error) => tracing::warn!("cannot remove {}: {error}", path.display()),
        }
        base.journal_exists = false;
        Ok(written)
    }

    fn conflict(&self) -> StateError {
        StateError::Conflict {
            location: self.location(),
        }
    }

    /// Fails with a conflict when the snapshot is not the one this writer read or wrote last.
    fn check_stamp(&self, lock: &LedgerLock, base: &Base) -> Result<(), StateError> {
        let now = Stamp::of(&lock.real_path).map_err(|source| StateError::Read {
            path: self.path.clone(),
            source,
        })?;
        if now == base.stamp {
            Ok(())
        } else {
            Err(self.conflict())
        }
    }

    fn write_snapshot(
        &self,
        lock: &LedgerLock,
        base: &mut Base,
        durable: &Ledger,
        folded: Option<&Folded>,
    ) -> Result<u64, StateError> {
        let bytes = current_snapshot_form(durable, folded);
        let expected = base.stamp;
        let unchanged = || Stamp::of(&lock.real_path).map(|now| now == expected);
        let write_error = |source| StateError::Write {
            path: self.path.clone(),
            source,
        };
        if !crate::atomic_file::replace_if(&lock.real_path, &bytes, unchanged)
            .map_err(write_error)?
        {
            return Err(self.conflict());
        }
        base.stamp = Stamp::of(&lock.real_path).map_err(write_error)?;
        base.snapshot_id = Some(journal::snapshot_id(&bytes));
        base.snapshot_version = LEDGER_FORMAT_VERSION;
        base.snapshot_bytes = bytes.len() as u64;
        base.journal = None;
        Ok(bytes.len() as u64)
    }

    /// Starts a journal continuing the snapshot, holding `records`, in place of any journal
    /// there (empty, torn, or another snapshot's).
    fn start_journal(
        &self,
        lock: &LedgerLock,
        base: &mut Base,
        durable: &Ledger,
        records: &[Record],
    ) -> Result<u64, StateError> {
        let snapshot_id = base
            .snapshot_id
            .clone()
            .expect("a journal starts after its snapshot is written");
        let header = Header::new(&snapshot_id);
        let mut bytes = header.line();
        bytes.extend(journal::record_lines(records, durable));
        let path = journal_path_of(lock);
        let write_error = |source| StateError::Write {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(write_error)?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_data())
            .map_err(write_error)?;
        // A new file's name is durable only once its folder is synced.
        #[cfg(unix)]
        if let Some(folder) = path.parent() {
            File::open(folder)
                .and_then(|folder| folder.sync_all())
                .map_err(write_error)?;
        }
        base.journal = Some(journal::Tail {
            header,
            valid_bytes: bytes.len() as u64,
            records: records.len(),
        });
        base.journal_exists = true;
        Ok(bytes.len() as u64)
    }
}

/// A test build's way to die in the middle of a journal write, as a run killed then would:
/// `IMAGEGEN_FAULT_TORN_JOURNAL_WRITE=N` writes half of the Nth append, syncs it, and aborts.
/// Test tooling, built only with the `emulator` feature that the release build leaves out.
#[cfg(feature = "emulator")]
mod torn_write_fault {
    use std::io::{Seek, Write};
    use std::sync::atomic::{AtomicU64, Ordering};

    pub const VAR: &str = "IMAGEGEN_FAULT_TORN_JOURNAL_WRITE";
    static APPENDS: AtomicU64 = AtomicU64::new(0);

    pub fn strike(file: &mut std::fs::File, at: u64, bytes: &[u8]) {
        let Some(chosen) = std::env::var(VAR).ok().and_then(|n| n.parse::<u64>().ok()) else {
            return;
        };
        if APPENDS.fetch_add(1, Ordering::SeqCst) + 1 != chosen {
            return;
        }
        let half = &bytes[..bytes.len() / 2];
        let _ = file
            .seek(std::io::SeekFrom::Start(at))
            .and_then(|_| file.write_all(half))
            .and_then(|()| file.sync_data());
        std::process::abort();
    }
}

/// A disk that fills up during a run, for the tests of what a run does when its ledger cannot
/// be written: from the append this variable names on (1 is the run's first), every append
/// fails as a full disk does, and nothing of it reaches the journal. Built with the emulator
/// only, like the torn write above.
#[cfg(feature = "emulator")]
mod failed_write_fault {
    use std::sync::atomic::{AtomicU64, Ordering};

    pub const VAR: &str = "IMAGEGEN_FAULT_FAILED_JOURNAL_WRITE";
    static APPENDS: AtomicU64 = AtomicU64::new(0);

    pub fn strike() -> std::io::Result<()> {
        let Some(first) = std::env::var(VAR).ok().and_then(|n| n.parse::<u64>().ok()) else {
            return Ok(());
        };
        if APPENDS.fetch_add(1, Ordering::SeqCst) + 1 < first {
            return Ok(());
        }
        const NO_SPACE_LEFT_ON_DEVICE: i32 = 28;
        Err(std::io::Error::from_raw_os_error(NO_SPACE_LEFT_ON_DEVICE))
    }
}

/// The journal beside the file the lock guards.
fn journal_path_of(lock: &LedgerLock) -> PathBuf {
    PathBuf::from(journal::journal_name(&lock.real_path.to_string_lossy()))
}

/// Whether `file` starts with `header`'s line: the journal this writer appends to is still
/// the one it read or started.
fn starts_with_header(file: &mut File, header: &Header) -> bool {
    let line = header.line();
    let mut start = vec![0; line.len()];
    file.rewind().is_ok() && file.read_exact(&mut start).is_ok() && start == line
}

/// A file's bytes, or `None` when there is no such file.
fn read_file(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

impl FileStore {
    /// The ledger as read, or `None` when there is no file (which [`read`](Self::read) takes
    /// for an empty ledger).
    pub fn read_existing(&self) -> Result<Option<Ledger>, StateError> {
        let exists = Stamp::of(&self.path)
            .map_err(|source| StateError::Read {
                path: self.path.clone(),
                source,
            })?
            .is_some();
        if exists {
            self.read().map(Some)
        } else {
            self.check_folder().map(|()| None)
        }
    }

    /// Saves the ledger unchanged, as a run saves it: under the run lock (waiting up to
    /// `lock_timeout`), on the condition that the file still holds what was read; then reads it
    /// back. It shows that a run can write the ledger, and changes none of its bytes. A missing
    /// ledger is left missing.
    pub fn rewrite_unchanged(
        &self,
        lock_timeout: Duration,
        purpose: &str,
    ) -> Result<Rewrite, StateError> {
        // Looked for before taking the lock, whose file would be created beside it.
        if self.read_bytes()?.is_none() {
            return Ok(Rewrite::Missing);
        }
        let lock = self.lock(lock_timeout, purpose)?;
        let Some(before) = self.read_bytes()? else {
            return Ok(Rewrite::Missing);
        };
        let (ledger, folded) = parse_snapshot(&self.location(), &before)?;
        if snapshot_form(&ledger, folded.as_ref()) != before {
            return Ok(Rewrite::NotAsWritten);
        }
        self.save(&lock, &Revision::of(Some(&before)), &before)?;
        Ok(match self.read_bytes()? {
            Some(after) if after == before => Rewrite::Unchanged {
                bytes: before.len(),
            },
            _ => Rewrite::ChangedAfter,
        })
    }
}

fn read_holder(file: &mut File) -> String {
    let mut holder = String::new();
    let _ = file
        .rewind()
        .and_then(|()| file.read_to_string(&mut holder));
    let holder = holder.trim();
    if holder.is_empty() {
        "a run that has not yet said who it is".to_string()
    } else {
        holder.to_string()
    }
}

/// The machine's name as the operating system gives it: `HOSTNAME` is a shell variable, unset
/// in most pipelines' environments, and `/proc` exists on Linux only.
fn host_name() -> String {
    let name = gethostname::gethostname();
    let name = name.to_string_lossy();
    let name = name.trim();
    if name.is_empty() {
        "this machine".to_string()
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::{Payload, PayloadHash};
    use crate::state::{JobStatus, LedgerEntry, written_form};
    use serde_json::json;

    fn entry() -> LedgerEntry {
        let payload = json!({"Destination": [{"CustomImageName": "Image-1"}]});
        LedgerEntry {
            payload_hash: PayloadHash::of(&payload),
            payload: Payload::new(&payload),
            variables: [("V".to_string(), "1".to_string())].into(),
            idempotency_key: Some("key".into()),
            tracking_id: Some("5f0c".into()),
            status: JobStatus::Running,
            message: None,
            image_names: Vec::new(),
            submitted_at: Some("2026-11-23T10:00:00Z".parse().unwrap()),
            updated_at: "2026-11-23T10:05:00Z".parse().unwrap(),
            completed_at: None,
            adopted: false,
            same_name_allowed: None,
        }
    }

    fn store() -> (tempfile::TempDir, FileStore) {
        let folder = tempfile::tempdir().unwrap();
        let store = FileStore::new(folder.path().join("nested/state.json"));
        (folder, store)
    }

    #[test]
    fn a_missing_ledger_is_empty() {
        let (_folder, store) = store();
        let snapshot = store.load().unwrap();
        assert_eq!(snapshot.ledger, Ledger::default());
    }

    #[test]
    fn saved_ledger_reads_back_identically() {
        let (_folder, store) = store();
        let snapshot = store.load().unwrap();
        let lock = store.lock(Duration::ZERO, "test").unwrap();
        let mut ledger = snapshot.ledger;
        ledger.definitions.insert("a/b".into(), entry());
        let revision = store
            .save(&lock, &snapshot.revision, &written_form(&ledger))
            .unwrap();
        let reread = store.load().unwrap();
        assert_eq!(reread.ledger, ledger);
        assert_eq!(reread.revision, revision);
        assert_eq!(store.read().unwrap(), ledger);
        // No temporary file is left beside the ledger.
        let names: Vec<_> = std::fs::read_dir(store.path().parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_write_never_overwrites_a_ledger_changed_since_it_was_read() {
        let (_folder, store) = store();
        let stale = store.load().unwrap();
        let lock = store.lock(Duration::ZERO, "test").unwrap();
        let mut first = Ledger::default();
        first.definitions.insert("first".into(), entry());
        store
            .save(&lock, &stale.revision, &written_form(&first))
            .unwrap();
        let error = store
            .save(&lock, &stale.revision, &written_form(&Ledger::default()))
            .unwrap_err();
        assert!(matches!(error, StateError::Conflict { .. }), "{error}");
        assert_eq!(store.load().unwrap().ledger, first);
    }

    #[test]
    fn a_second_lock_waits_then_names_the_holder() {
        let (_folder, store) = store();
        let _held = store.lock(Duration::ZERO, "imagegen reconcile").unwrap();
        let error = store
            .lock(Duration::from_millis(250), "imagegen adopt")
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("locked by another run (imagegen reconcile, process"),
            "{message}"
        );
        assert!(
            matches!(error, StateError::Locked { waited, .. } if waited >= Duration::from_millis(250))
        );
    }

    #[cfg(unix)]
    #[test]
    fn every_name_of_one_ledger_takes_the_same_lock() {
        let (folder, store) = store();
        let real = store.path().parent().unwrap();
        std::fs::create_dir_all(real).unwrap();
        std::os::unix::fs::symlink(store.path(), folder.path().join("link.json")).unwrap();
        std::os::unix::fs::symlink(real, folder.path().join("folder-link")).unwrap();
        std::fs::create_dir(folder.path().join("other")).unwrap();
        let _held = store.lock(Duration::ZERO, "imagegen reconcile").unwrap();
        for name in [
            "link.json",
            "folder-link/state.json",
            "other/../nested/state.json",
            "nested/./state.json",
        ] {
            let error = FileStore::given(folder.path().join(name))
                .lock(Duration::ZERO, "imagegen adopt")
                .unwrap_err();
            assert!(
                matches!(error, StateError::Locked { .. }),
                "{name}: {error}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_save_through_a_link_writes_the_file_and_keeps_the_link() {
        let (folder, store) = store();
        std::fs::create_dir_all(store.path().parent().unwrap()).unwrap();
        let link = folder.path().join("link.json");
        // The link is made before the file exists: the first save must create the file, not
        // put a file in the link's place.
        std::os::unix::fs::symlink(store.path(), &link).unwrap();
        let through_link = FileStore::given(&link);
        let snapshot = through_link.load().unwrap();
        let lock = through_link.lock(Duration::ZERO, "test").unwrap();
        let mut ledger = snapshot.ledger;
        ledger.definitions.insert("a".into(), entry());
        through_link
            .save(&lock, &snapshot.revision, &written_form(&ledger))
            .unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(store.read().unwrap(), ledger);
    }

    #[test]
    fn a_released_lock_can_be_taken_again() {
        let (_folder, store) = store();
        drop(store.lock(Duration::ZERO, "first").unwrap());
        store.lock(Duration::ZERO, "second").unwrap();
    }

    #[test]
    fn a_damaged_ledger_names_line_and_column() {
        let (_folder, store) = store();
        std::fs::create_dir_all(store.path().parent().unwrap()).unwrap();
        std::fs::write(
            store.path(),
            "{\n  \"version\": 1,\n  \"definitions\": {\n    \"a\": 7\n",
        )
        .unwrap();
        let message = store.load().unwrap_err().to_string();
        assert!(
            message.contains("is damaged at line 4, column"),
            "{message}"
        );
        assert!(message.contains("expected struct LedgerEntry"), "{message}");
    }

    #[test]
    fn a_newer_ledger_format_is_refused() {
        let (_folder, store) = store();
        std::fs::create_dir_all(store.path().parent().unwrap()).unwrap();
        std::fs::write(store.path(), r#"{"version": 3, "jobs": []}"#).unwrap();
        let message = store.load().unwrap_err().to_string();
        assert!(
            message
                .contains("has format version 3, but this imagegen understands versions up to 2"),
            "{message}"
        );
    }

    #[test]
    fn the_format_is_stable() {
        let mut ledger = Ledger::default();
        ledger.definitions.insert("a".into(), entry());
        let text = serde_json::to_string(&ledger).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"version":2,"definitions":{{"a":{{"payload_hash":"{}","payload":{{"Destination":[{{"CustomImageName":"Image-1"}}]}},"variables":{{"V":"1"}},"idempotency_key":"key","tracking_id":"5f0c","status":"running","image_names":[],"submitted_at":"2026-11-23T10:00:00Z","updated_at":"2026-11-23T10:05:00Z"}}}}}}"#,
                entry().payload_hash
            )
        );
    }

    #[test]
    fn a_rewrite_changes_no_byte_and_creates_no_ledger() {
        let (_folder, store) = store();
        assert_eq!(
            store.rewrite_unchanged(Duration::ZERO, "test").unwrap(),
            Rewrite::Missing
        );
        let lock = PathBuf::from(format!("{}.lock", store.path().display()));
        assert!(!store.path().exists() && !lock.exists());
        assert_eq!(store.read_existing().unwrap(), None);

        let snapshot = store.load().unwrap();
        let lock = store.lock(Duration::ZERO, "test").unwrap();
        let mut ledger = snapshot.ledger;
        ledger.definitions.insert("a".into(), entry());
        store
            .save(&lock, &snapshot.revision, &written_form(&ledger))
            .unwrap();
        drop(lock);
        let before = std::fs::read(store.path()).unwrap();
        assert_eq!(
            store.rewrite_unchanged(Duration::ZERO, "test").unwrap(),
            Rewrite::Unchanged {
                bytes: before.len()
            }
        );
        assert_eq!(std::fs::read(store.path()).unwrap(), before);
        assert_eq!(store.read_existing().unwrap(), Some(ledger));

        // A ledger written otherwise (by hand, compact) is not rewritten in imagegen's form.
        let compact = serde_json::to_vec(&store.read().unwrap()).unwrap();
        std::fs::write(store.path(), &compact).unwrap();
        assert_eq!(
            store.rewrite_unchanged(Duration::ZERO, "test").unwrap(),
            Rewrite::NotAsWritten
        );
        assert_eq!(std::fs::read(store.path()).unwrap(), compact);
    }

    #[test]
    fn a_rewrite_waits_for_the_lock_of_a_run() {
        let (_folder, store) = store();
        std::fs::create_dir_all(store.path().parent().unwrap()).unwrap();
        std::fs::write(store.path(), written_form(&Ledger::default())).unwrap();
        let _held = store.lock(Duration::ZERO, "imagegen reconcile").unwrap();
        let error = store
            .rewrite_unchanged(Duration::from_millis(10), "imagegen doctor")
            .unwrap_err();
        assert!(matches!(error, StateError::Locked { .. }), "{error}");
    }
}
