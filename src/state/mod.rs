//! The ledger: what was last submitted for each definition, and what became of the job.
//!
//! The ledger is the memory that keeps imagegen from submitting one payload twice. Its format is
//! plain versioned JSON; [`file::FileStore`] keeps it on disk with atomic writes and a run lock.

pub mod blob;
pub mod file;
pub mod store;

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::definitions::{Payload, PayloadHash, Rendered};
use crate::variables::ValueChange;

pub use blob::BlobStore;
pub use file::{
    FileStore, LedgerLock, MissingLedger, Revision, Snapshot, StateError, parse_ledger,
};
pub use store::{LedgerWriter, Store};

/// The ledger format this build reads and writes.
pub const LEDGER_FORMAT_VERSION: u32 = 1;

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
}

/// Where an entry lives in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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
