//! The ledger: what was last submitted for each definition, and what became of the job.
//!
//! The ledger is the memory that keeps imagegen from submitting one payload twice. Its format is
//! plain versioned JSON. This module holds what every store shares: the format, its parsing and
//! written form, revisions, snapshots and the error type. The stores are leaves that import only
//! from here: [`file::FileStore`] keeps it on disk with atomic writes and a run lock,
//! [`blob::BlobStore`] in an Azure blob under its ETag; [`store`] chooses one and holds a run's
//! writer.

pub mod blob;
pub mod file;
pub mod journal;
pub mod store;
pub mod writer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::definitions::{Payload, PayloadHash, Rendered};
use crate::json;
use crate::variables::ValueChange;

pub use blob::BlobStore;
pub use file::{FileStore, LedgerLock};
pub use store::Store;
pub use writer::{Edit, LedgerWriter, WriteCount};

/// The ledger format this build writes: version 2 is a snapshot with a journal beside it
/// ([`journal`]).
pub const LEDGER_FORMAT_VERSION: u32 = 2;

/// The oldest ledger format this build reads: version 1 is the same document without a
/// journal, and becomes version 2 at the first write.
pub const OLDEST_LEDGER_FORMAT_VERSION: u32 = 1;

/// Where the ledger lives unless `--state` or `IMAGEGEN_STATE` says otherwise, relative to the
/// repository root.
pub const DEFAULT_STATE_PATH: &str = ".imagegen/state.json";

/// Every definition's last submission, by definition id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub version: u32,
    #[serde(default)]
    pub definitions: BTreeMap<String, LedgerEntry>,
    /// Payloads submitted by hand from files outside `definitions/`, by the file's path as
    /// given. Kept apart so that a plan never mistakes them for retired definitions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub manual: BTreeMap<String, LedgerEntry>,
    /// When `imagegen vars update` first saw each version a source offers, by variable then
    /// version: a minimum age is counted from it when the source states no date.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub seen: BTreeMap<String, BTreeMap<String, Timestamp>>,
}

/// Where an entry lives in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum LedgerKey {
    /// A definition, by id.
    Definition(String),
    /// A payload file outside `definitions/`, by path.
    Manual(String),
}

impl LedgerKey {
    /// The definition id or the file, as shown to people.
    pub fn name(&self) -> &str {
        match self {
            Self::Definition(name) | Self::Manual(name) => name,
        }
    }

    /// The file it stands for, relative to the repository root (a manual payload's path as
    /// it was given).
    pub fn file(&self) -> String {
        match self {
            Self::Definition(id) => format!("{}/{id}.json", crate::definitions::DEFINITIONS_DIR),
            Self::Manual(file) => file.clone(),
        }
    }
}

impl std::fmt::Display for LedgerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Ledger {
    pub fn entry(&self, key: &LedgerKey) -> Option<&LedgerEntry> {
        match key {
            LedgerKey::Definition(id) => self.definitions.get(id),
            LedgerKey::Manual(file) => self.manual.get(file),
        }
    }

    pub fn entry_mut(&mut self, key: &LedgerKey) -> Option<&mut LedgerEntry> {
        match key {
            LedgerKey::Definition(id) => self.definitions.get_mut(id),
            LedgerKey::Manual(file) => self.manual.get_mut(file),
        }
    }

    /// Records `entry` under `key`, returning what was there before.
    pub fn insert(&mut self, key: &LedgerKey, entry: LedgerEntry) -> Option<LedgerEntry> {
        match key {
            LedgerKey::Definition(id) => self.definitions.insert(id.clone(), entry),
            LedgerKey::Manual(file) => self.manual.insert(file.clone(), entry),
        }
    }

    pub fn remove(&mut self, key: &LedgerKey) -> Option<LedgerEntry> {
        match key {
            LedgerKey::Definition(id) => self.definitions.remove(id),
            LedgerKey::Manual(file) => self.manual.remove(file),
        }
    }

    /// Every entry with its key: definitions first, then manual submissions.
    pub fn entries(&self) -> impl Iterator<Item = (LedgerKey, &LedgerEntry)> {
        self.definitions
            .iter()
            .map(|(id, entry)| (LedgerKey::Definition(id.clone()), entry))
            .chain(
                self.manual
                    .iter()
                    .map(|(file, entry)| (LedgerKey::Manual(file.clone()), entry)),
            )
    }
}

impl Default for Ledger {
    fn default() -> Self {
        Self {
            version: LEDGER_FORMAT_VERSION,
            definitions: BTreeMap::new(),
            manual: BTreeMap::new(),
            seen: BTreeMap::new(),
        }
    }
}

/// The last submission of one definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The hash of the payload submitted; a different rendered hash means "submit again".
    pub payload_hash: PayloadHash,
    /// The payload submitted, exactly, so a plan can show what changed since.
    pub payload: Payload,
    /// The variables the payload was rendered with.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Sent with the submission; a retry after a lost answer reuses it, so the service can
    /// recognise the job it already started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Image Factory's id for the job; absent while the submission's answer is not yet recorded,
    /// and for adopted images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_id: Option<String>,
    pub status: JobStatus,
    /// The service's message about the job, such as why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The images the job produced (empty until it succeeded).
    #[serde(default)]
    pub image_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
    /// Recorded as built without a submission (the image existed already).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
    /// The payload kept image names of the submission before it, and a person allowed that
    /// (`--allow-same-name`): what was kept and what changed, for the pull request to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_name_allowed: Option<SameName>,
}

impl LedgerEntry {
    /// Whether this entry still tracks the job `tracking_id`: news of an older job, which a
    /// newer submission replaced, is not this entry's.
    pub fn tracks(&self, tracking_id: &str) -> bool {
        self.tracking_id.as_deref() == Some(tracking_id)
    }

    /// Whether this entry holds the intent of the submission sent under `idempotency_key`: only
    /// that submission may record its answer here.
    pub fn holds_intent(&self, idempotency_key: &str) -> bool {
        self.idempotency_key.as_deref() == Some(idempotency_key)
    }

    /// The entry recorded just before a payload is sent: what is being submitted and the key
    /// that makes sending it again safe, with no tracking id yet.
    pub fn intent(rendered: &Rendered, idempotency_key: String, now: Timestamp) -> Self {
        Self::intent_for(
            &rendered.payload,
            &rendered.hash,
            &rendered.variables,
            idempotency_key,
            now,
        )
    }

    /// The same, for any payload (such as a file submitted by hand).
    pub fn intent_for(
        payload: &Payload,
        payload_hash: &PayloadHash,
        variables: &BTreeMap<String, String>,
        idempotency_key: String,
        now: Timestamp,
    ) -> Self {
        Self {
            payload_hash: payload_hash.clone(),
            payload: payload.clone(),
            variables: variables.clone(),
            idempotency_key: Some(idempotency_key),
            tracking_id: None,
            status: JobStatus::Submitting,
            message: None,
            image_names: Vec::new(),
            submitted_at: Some(now),
            updated_at: now,
            completed_at: None,
            adopted: false,
            same_name_allowed: None,
        }
    }
}

/// A changed payload that builds images under names its last submission used: new content
/// under a name OSOB already points at, which reaches the queues with no review. Refused unless
/// a person allows it (see `plan::same_name`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SameName {
    /// The names the new payload shares with the last submission.
    pub image_names: Vec<String>,
    /// The variables whose values differ from the last submission (none when the definition
    /// itself changed).
    pub variable_changes: Vec<ValueChange>,
}

impl SameName {
    /// `VAR old -> new, ...`, or what changed when no variable did.
    pub fn changed(&self) -> String {
        if self.variable_changes.is_empty() {
            return "the definition itself changed, no variable".to_string();
        }
        let value = |value: &Option<String>| value.clone().unwrap_or_else(|| "(not used)".into());
        self.variable_changes
            .iter()
            .map(|change| {
                format!(
                    "{} {} -> {}",
                    change.name,
                    value(&change.old),
                    value(&change.new)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Where a definition's last submission stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// The intent to submit is recorded; the service's answer is not (yet). A later run sends
    /// the same payload with the same idempotency key instead of starting a second job.
    Submitting,
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
    /// The service reports the job Succeeded but names no image. Not built (nothing of it goes
    /// into OSOB) and not pending (nothing waits for it), but asked about again by every run
    /// until the service lists the images.
    #[serde(rename = "no-images")]
    NoImages,
}

impl JobStatus {
    /// Still being built, or not known to have reached the service: a later run polls it.
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Submitting | Self::Queued | Self::Running)
    }

    /// Asked about again when a run polls: pending, or ended without the images it claims.
    pub fn is_tracked(self) -> bool {
        self.is_pending() || self == Self::NoImages
    }

    /// Ended without an image.
    pub fn is_unsuccessful(self) -> bool {
        matches!(self, Self::Failed | Self::Canceled | Self::NoImages)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitting => "submitting",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::NoImages => "no-images",
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the ledger {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the ledger {location} is damaged at line {line}, column {column}: {message}; restore \
         it from a backup or from the pipeline's copy"
    )]
    Parse {
        /// The file's path or the blob's URL (never with its SAS).
        location: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "the ledger {location} has format version {found}, but this imagegen understands \
         versions up to {supported}; use a newer imagegen"
    )]
    UnsupportedVersion {
        location: String,
        found: u32,
        supported: u32,
    },
    #[error("cannot write the ledger {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the ledger {location} does not exist. {}: a missing ledger there means a \
         wrong setting (--state, IMAGEGEN_STATE), and planning against an empty one would submit \
         every definition again. Check the setting; only for the very first run, pass \
         --init-ledger to start an empty ledger (docs/ledger.md)",
        crate::platform::CI_EXPLANATION
    )]
    Missing { location: String },
    #[error(
        "the folder {folder} of the ledger {path} does not exist; imagegen creates only its \
         default folder .imagegen/, so check --state or IMAGEGEN_STATE for a typo, or create \
         the folder"
    )]
    NoFolder { path: PathBuf, folder: PathBuf },
    #[error("cannot lock the ledger with {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the ledger is locked by another run ({holder}); gave up after waiting {waited:?}. \
         If no such run is alive, the lock is already free: try again"
    )]
    Locked {
        path: PathBuf,
        holder: String,
        waited: Duration,
    },
    #[error(
        "the ledger {location} changed since this run read it; nothing was written. Run again \
         to plan from the new ledger"
    )]
    Conflict { location: String },
    /// A write of several changes together failed; each change but the first is told so.
    #[error("cannot write the ledger: {message}")]
    Batch { message: String },
    /// The service started a job, and the ledger could not record its tracking id: the entry
    /// still holds the intent, which the next run sends again with the same idempotency key.
    #[error("{key}: job {tracking_id} was started, but the ledger could not record it")]
    Unrecorded {
        key: String,
        tracking_id: String,
        source: Box<StateError>,
    },
    #[error(transparent)]
    Blob(#[from] blob::BlobError),
    #[error("cannot start the async runtime to read the ledger: {0}")]
    Runtime(String),
}

/// Identifies one version of the ledger file's content; `None` inside means "no file yet".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision(Option<String>);

impl Revision {
    /// A revision the store names itself, such as a blob's ETag.
    pub(crate) fn tagged(tag: impl Into<String>) -> Self {
        Self(Some(tag.into()))
    }

    /// The revision of a ledger that does not exist yet.
    pub(crate) fn absent() -> Self {
        Self(None)
    }

    /// The store's name for this revision; `None` when the ledger does not exist yet.
    pub(crate) fn tag(&self) -> Option<&str> {
        self.0.as_deref()
    }

    pub(crate) fn of(bytes: Option<&[u8]>) -> Self {
        Self(bytes.map(|bytes| {
            Sha256::digest(bytes)
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect()
        }))
    }
}

/// A ledger as read (its snapshot with its journal folded in), with the revision a later
/// write of the whole snapshot must still find, and where the next append goes.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub ledger: Ledger,
    pub revision: Revision,
    pub(crate) base: Base,
}

/// What a writer needs to know of the stored ledger to append to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Base {
    /// The snapshot's id ([`journal::snapshot_id`]); `None` when there is no snapshot yet.
    pub snapshot_id: Option<String>,
    /// The snapshot's format version: a version 1 snapshot is rewritten as version 2 before
    /// a journal may continue it, so that an older imagegen never reads it without its journal.
    pub snapshot_version: u32,
    pub snapshot_bytes: u64,
    /// The journal that continues this snapshot, if any.
    pub journal: Option<journal::Tail>,
    /// A journal file or blob exists (perhaps empty, torn or foreign): a new one replaces it.
    pub journal_exists: bool,
    /// The journal's store tag (a blob's ETag), to append to exactly the journal read.
    pub journal_tag: Option<String>,
    /// The snapshot file's size, time and inode as read: a file writer checks them before
    /// each append, since hashing the whole snapshot again would cost what the journal saves.
    pub stamp: Option<file::Stamp>,
}

impl Base {
    /// Whether the next write must start a journal (and first rewrite the snapshot).
    pub fn needs_start(&self) -> bool {
        self.journal.is_none()
            || self.snapshot_id.is_none()
            || self.snapshot_version < LEDGER_FORMAT_VERSION
    }
}

/// Reads a ledger from its snapshot's bytes and its journal's (`None` for either: it does not
/// exist). `location` names the snapshot in errors; `missing` says what no snapshot means.
///
/// The snapshot's id (a hash of all its bytes) is computed only when a journal needs it or
/// `for_writer` says a write will follow, so that a dry run reads at the speed of parsing.
pub(crate) fn assemble(
    location: &str,
    snapshot: Option<&[u8]>,
    journal_bytes: Option<&[u8]>,
    missing: MissingLedger,
    for_writer: bool,
) -> Result<(Ledger, Base), StateError> {
    let (mut ledger, folded, snapshot_id) = match snapshot {
        Some(bytes) => {
            let (ledger, folded) = parse_snapshot(location, bytes)?;
            let id = (for_writer || journal_bytes.is_some()).then(|| journal::snapshot_id(bytes));
            (ledger, folded, id)
        }
        None => (missing.empty_ledger(location)?, None, None),
    };
    let mut base = Base {
        snapshot_version: ledger.version,
        snapshot_bytes: snapshot.map_or(0, |bytes| bytes.len() as u64),
        journal_exists: journal_bytes.is_some(),
        ..Base::default()
    };
    let journal_location = journal::journal_name(location);
    let parsed = match journal_bytes {
        Some(bytes) => journal::parse(&journal_location, bytes)?,
        None => None,
    };
    if let (Some(read), Some(id)) = (parsed, &snapshot_id) {
        match journal::relation(&read, id, folded.as_ref()) {
            journal::Relation::Continues { from } => {
                journal::fold(&mut ledger, &read, from, &journal_location)?;
                base.journal = Some(journal::Tail {
                    header: read.header,
                    valid_bytes: read.valid_bytes,
                    records: read.records.len(),
                });
            }
            journal::Relation::Foreign => tracing::warn!(
                "the journal {journal_location} does not continue the ledger's snapshot (it                  was replaced by hand or by an import); it is ignored, and the next write                  starts a new one"
            ),
        }
    }
    base.snapshot_id = snapshot_id;
    Ok((ledger, base))
}

/// Parses a snapshot: the ledger, and what it folded of a journal.
pub(crate) fn parse_snapshot(
    location: &str,
    bytes: &[u8],
) -> Result<(Ledger, Option<journal::Folded>), StateError> {
    let ledger = parse_ledger(location, bytes)?;
    #[derive(Deserialize)]
    struct Marker {
        #[serde(default)]
        journal: Option<journal::Folded>,
    }
    let folded = serde_json::from_str::<Marker>(json::strip_bom(
        std::str::from_utf8(bytes).unwrap_or_default(),
    ))
    .map_err(|error| StateError::Parse {
        location: location.to_owned(),
        line: error.line(),
        column: error.column(),
        message: format!("its \"journal\" field: {error}"),
    })?
    .journal;
    Ok((ledger, folded))
}

/// The bytes of a new snapshot of `ledger` in this imagegen's format, saying it folded `folded`.
/// A run's ledger already says this format (the writer sets it when it reads the ledger), so
/// the ledger is copied only when it does not: a snapshot of thousands of entries is written
/// at the end of every run.
pub(crate) fn current_snapshot_form(ledger: &Ledger, folded: Option<&journal::Folded>) -> Vec<u8> {
    if ledger.version == LEDGER_FORMAT_VERSION {
        return snapshot_form(ledger, folded);
    }
    let mut current = ledger.clone();
    current.version = LEDGER_FORMAT_VERSION;
    snapshot_form(&current, folded)
}

/// The bytes of a snapshot of `ledger` that says it folded `folded`.
pub(crate) fn snapshot_form(ledger: &Ledger, folded: Option<&journal::Folded>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Document<'a> {
        #[serde(flatten)]
        ledger: &'a Ledger,
        #[serde(skip_serializing_if = "Option::is_none")]
        journal: Option<&'a journal::Folded>,
    }
    let mut bytes = serde_json::to_vec_pretty(&Document {
        ledger,
        journal: folded,
    })
    .expect("a ledger always serializes");
    bytes.push(b'\n');
    bytes
}

/// What reading a ledger that does not exist means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingLedger {
    /// An empty ledger: nothing was submitted yet (a first run, a fresh clone).
    #[default]
    Empty,
    /// An error: the ledger should exist (a run on a CI platform, unless it says
    /// `--init-ledger`).
    Refuse,
}

impl MissingLedger {
    /// The ledger to use when the one at `location` does not exist.
    pub(crate) fn empty_ledger(self, location: &str) -> Result<Ledger, StateError> {
        match self {
            Self::Empty => Ok(Ledger::default()),
            Self::Refuse => Err(StateError::Missing {
                location: location.to_owned(),
            }),
        }
    }
}

/// What saving the ledger unchanged showed ([`store::Store::rewrite_unchanged`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// There is no ledger: nothing was written, so that checking never creates one.
    Missing,
    /// Saved as it was, on the condition that it still held what had been read, and read back
    /// byte for byte the same.
    Unchanged { bytes: usize },
    /// Not written: its text is not what imagegen writes for it (edited by hand, or by another
    /// tool), so saving it would have changed its bytes.
    NotAsWritten,
    /// Saved, but another writer changed it right after, before it was read back.
    ChangedAfter,
}

/// The bytes a store writes for `ledger`.
pub fn written_form(ledger: &Ledger) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(ledger).expect("a ledger always serializes");
    bytes.push(b'\n');
    bytes
}

/// Parses a ledger's bytes; `location` (a path or a URL) names it in errors.
pub fn parse_ledger(location: &str, bytes: &[u8]) -> Result<Ledger, StateError> {
    let text = std::str::from_utf8(bytes).map_err(|error| {
        let (line, column) = json::line_column(
            &String::from_utf8_lossy(&bytes[..error.valid_up_to()]),
            error.valid_up_to(),
        );
        StateError::Parse {
            location: location.to_owned(),
            line,
            column,
            message: "the file is not UTF-8".into(),
        }
    })?;
    let text = json::strip_bom(text);
    #[derive(Deserialize)]
    struct VersionOnly {
        version: u32,
    }
    // A newer format may not parse as this one: check the version first to say so clearly.
    if let Ok(VersionOnly { version }) = serde_json::from_str::<VersionOnly>(text)
        && !(OLDEST_LEDGER_FORMAT_VERSION..=LEDGER_FORMAT_VERSION).contains(&version)
    {
        return Err(StateError::UnsupportedVersion {
            location: location.to_owned(),
            found: version,
            supported: LEDGER_FORMAT_VERSION,
        });
    }
    serde_json::from_str::<Ledger>(text).map_err(|error| {
        let error = json::json_error(text, &error);
        StateError::Parse {
            location: location.to_owned(),
            line: error.line,
            column: error.column,
            message: error.message,
        }
    })
}

/// An entry for the state module's tests: one image, an idempotency key, no job yet.
#[cfg(test)]
pub(crate) fn sample_entry(status: JobStatus) -> LedgerEntry {
    let payload = serde_json::json!({"Destination": [{"CustomImageName": "Image-1"}]});
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
        updated_at: Timestamp::UNIX_EPOCH,
        completed_at: None,
        adopted: false,
        same_name_allowed: None,
    }
}
