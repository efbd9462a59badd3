//! A copy of the ledger, as `imagegen ledger export` writes it and `imagegen ledger import`
//! reads it back: reading one (a damaged copy or one of another format version refused with
//! its file, line and column), and, pure, what importing it would change in the ledger and
//! what it would forget.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::Serialize;

use crate::json;
use crate::state::{self, JobStatus, Ledger, LedgerEntry, LedgerKey};

/// Why a copy cannot be imported; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{file}:{line}:{column}: the copy is damaged: {message}; the ledger was not changed")]
    Damaged {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "{file}:{line}:{column}: the copy has format version {found}, but this imagegen reads \
         versions up to {supported}; the ledger was not changed (use the imagegen that wrote \
         it)"
    )]
    OtherVersion {
        file: String,
        line: usize,
        column: usize,
        found: u32,
        supported: u32,
    },
}

/// Reads a copy's bytes; `file` names it in errors. Stricter than reading the ledger itself: a
/// key written twice (which a hand edit leaves) is damage, not the last one silently winning.
pub fn parse_copy(file: &str, bytes: &[u8]) -> Result<Ledger, CopyError> {
    let damaged = |line, column, message| CopyError::Damaged {
        file: file.to_string(),
        line,
        column,
        message,
    };
    if let Ok(text) = std::str::from_utf8(bytes)
        && let Err(error) = json::parse_strict(json::strip_bom(text))
    {
        return Err(damaged(error.line, error.column, error.message));
    }
    state::parse_ledger(file, bytes).map_err(|error| match error {
        state::StateError::Parse {
            line,
            column,
            message,
            ..
        } => damaged(line, column, message),
        state::StateError::UnsupportedVersion {
            found, supported, ..
        } => {
            let text = String::from_utf8_lossy(bytes);
            let (line, column) = text
                .find("\"version\"")
                .map_or((1, 1), |offset| json::line_column(&text, offset));
            CopyError::OtherVersion {
                file: file.to_string(),
                line,
                column,
                found,
                supported,
            }
        }
        other => damaged(1, 1, other.to_string()),
    })
}

/// How one entry changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// The copy has it, the ledger does not.
    Added,
    /// The ledger has it, the copy does not: importing forgets it.
    Removed,
    /// Both have it, differently.
    Changed,
}

/// An entry as a change shows it: its status and job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Side {
    pub status: JobStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_id: Option<String>,
    /// When it last changed: its end, or its last update.
    pub at: Timestamp,
}

impl Side {
    fn of(entry: &LedgerEntry) -> Self {
        Self {
            status: entry.status,
            tracking_id: entry.tracking_id.clone(),
            at: last_change(entry),
        }
    }
}

/// One entry the import changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryChange {
    pub key: LedgerKey,
    pub change: Change,
    /// In the ledger now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Side>,
    /// In the copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Side>,
}

/// What the import would lose, and is refused for unless forced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Refusal {
    /// The ledger tracks a job in flight that the copy does not have, or has as another job:
    /// forgetting it would have the next run submit the payload again.
    JobInFlight {
        key: LedgerKey,
        status: JobStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        tracking_id: Option<String>,
    },
    /// The ledger holds a newer record of this entry than the copy (a build that ended since the
    /// copy was made): forgetting it would have the next run build it again.
    NewerRecord {
        key: LedgerKey,
        status: JobStatus,
        at: Timestamp,
        #[serde(skip_serializing_if = "Option::is_none")]
        copy_at: Option<Timestamp>,
    },
}

impl Refusal {
    pub fn key(&self) -> &LedgerKey {
        match self {
            Self::JobInFlight { key, .. } | Self::NewerRecord { key, .. } => key,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::JobInFlight {
                key,
                status,
                tracking_id,
            } => write!(
                f,
                "{key}: the ledger tracks {} ({status}), which the copy does not hold: the next run \
                 would submit it again",
                tracking_id
                    .as_deref()
                    .map_or("a submission".to_string(), |id| format!("job {id}"))
            ),
            Self::NewerRecord {
                key,
                status,
                at,
                copy_at,
            } => write!(
                f,
                "{key}: the ledger's record ({status}, {}) is newer than the copy's ({})",
                minutes(*at),
                copy_at.map_or("none".to_string(), minutes)
            ),
        }
    }
}

fn minutes(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// What importing a copy would do to the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Import {
    /// Every entry that changes, by key (definitions first, then manual submissions).
    pub changes: Vec<EntryChange>,
    /// What would be lost; the import is refused unless forced.
    pub refusals: Vec<Refusal>,
    /// Entries the copy holds exactly as the ledger does.
    pub unchanged: usize,
}

impl Import {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Compares the ledger as it is with the copy that would replace it.
pub fn compare(current: &Ledger, copy: &Ledger) -> Import {
    let keys: BTreeSet<LedgerKey> = current
        .entries()
        .chain(copy.entries())
        .map(|(key, _)| key)
        .collect();
    let mut import = Import::default();
    for key in keys {
        let (now, then) = (current.entry(&key), copy.entry(&key));
        let change = match (now, then) {
            (None, Some(_)) => Change::Added,
            (Some(_), None) => Change::Removed,
            (Some(now), Some(then)) if !same_entry(now, then) => Change::Changed,
            _ => {
                import.unchanged += 1;
                continue;
            }
        };
        if let Some(now) = now {
            // A job in flight the copy holds too is followed by the next run's poll, whatever
            // status the copy caught it at.
            if now.status.is_pending() {
                if then.is_none_or(|then| !same_submission(now, then)) {
                    import.refusals.push(Refusal::JobInFlight {
                        key: key.clone(),
                        status: now.status,
                        tracking_id: now.tracking_id.clone(),
                    });
                }
            } else if then.is_none_or(|then| last_change(now) > last_change(then)) {
                import.refusals.push(Refusal::NewerRecord {
                    key: key.clone(),
                    status: now.status,
                    at: last_change(now),
                    copy_at: then.map(last_change),
                });
            }
        }
        import.changes.push(EntryChange {
            change,
            before: now.map(Side::of),
            after: then.map(Side::of),
            key,
        });
    }
    import
}

/// The same record, however its payload's JSON is laid out (a copy a person reformatted holds
/// the same payloads in other whitespace).
fn same_entry(now: &LedgerEntry, then: &LedgerEntry) -> bool {
    now == then || serde_json::to_value(now).ok() == serde_json::to_value(then).ok()
}

/// One submission of one payload: the copy holds the job the ledger tracks, perhaps at an
/// earlier status, which the next run's poll brings up to date.
fn same_submission(now: &LedgerEntry, then: &LedgerEntry) -> bool {
    now.payload_hash == then.payload_hash
        && now.idempotency_key == then.idempotency_key
        && (then.tracking_id.is_none() || now.tracking_id == then.tracking_id)
}

fn last_change(entry: &LedgerEntry) -> Timestamp {
    entry
        .completed_at
        .unwrap_or(entry.updated_at)
        .max(entry.updated_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::{Payload, PayloadHash};
    use serde_json::json;

    fn entry(image: &str, status: JobStatus, at: &str) -> LedgerEntry {
        let payload = json!({"Destination": [{"CustomImageName": image}]});
        LedgerEntry {
            payload_hash: PayloadHash::of(&payload),
            payload: Payload::new(&payload),
            variables: Default::default(),
            idempotency_key: Some(format!("key-{image}")),
            tracking_id: Some(format!("job-{image}")),
            status,
            message: None,
            image_names: Vec::new(),
            submitted_at: None,
            updated_at: at.parse().unwrap(),
            completed_at: None,
            adopted: false,
            same_name_allowed: None,
        }
    }

    fn ledger(entries: &[(&str, LedgerEntry)]) -> Ledger {
        let mut ledger = Ledger::default();
        for (id, entry) in entries {
            ledger.definitions.insert(id.to_string(), entry.clone());
        }
        ledger
    }

    const MONDAY: &str = "2026-11-16T09:00:00Z";
    const TUESDAY: &str = "2026-11-17T09:00:00Z";

    #[test]
    fn a_copy_of_the_ledger_as_it_is_changes_nothing() {
        let current = ledger(&[("a", entry("A_1", JobStatus::Succeeded, MONDAY))]);
        let import = compare(&current, &current.clone());
        assert!(import.is_empty());
        assert_eq!(import.unchanged, 1);
        assert!(import.refusals.is_empty());
    }

    #[test]
    fn a_payload_laid_out_otherwise_is_the_same_entry() {
        let current = ledger(&[("a", entry("A_1", JobStatus::Succeeded, MONDAY))]);
        let mut text = String::from_utf8(state::written_form(&current)).unwrap();
        text = text.replace(
            r#"{"Destination":[{"CustomImageName":"A_1"}]}"#,
            "{ \"Destination\": [ { \"CustomImageName\": \"A_1\" } ] }",
        );
        let copy = parse_copy("copy.json", text.as_bytes()).unwrap();
        assert_ne!(copy, current, "the payload's text differs");
        assert!(compare(&current, &copy).is_empty());
    }

    #[test]
    fn restoring_a_lost_ledger_adds_every_entry_and_refuses_nothing() {
        let copy = ledger(&[
            ("a", entry("A_1", JobStatus::Succeeded, MONDAY)),
            ("b", entry("B_1", JobStatus::Running, MONDAY)),
        ]);
        let import = compare(&Ledger::default(), &copy);
        assert_eq!(
            import
                .changes
                .iter()
                .map(|change| (change.key.name(), change.change))
                .collect::<Vec<_>>(),
            [("a", Change::Added), ("b", Change::Added)]
        );
        assert!(import.refusals.is_empty());
    }

    #[test]
    fn forgetting_a_job_in_flight_or_a_newer_build_is_refused() {
        let current = ledger(&[
            // Submitted after the copy was made.
            ("in-flight", entry("A_2", JobStatus::Running, TUESDAY)),
            // Built after the copy was made.
            ("rebuilt", entry("B_2", JobStatus::Succeeded, TUESDAY)),
            // The copy's job, polled since: the same submission, not forgotten.
            ("polled", entry("C_1", JobStatus::Running, TUESDAY)),
            ("gone", entry("D_1", JobStatus::Succeeded, MONDAY)),
        ]);
        let copy = ledger(&[
            ("in-flight", entry("A_1", JobStatus::Succeeded, MONDAY)),
            ("rebuilt", entry("B_1", JobStatus::Succeeded, MONDAY)),
            ("polled", entry("C_1", JobStatus::Queued, MONDAY)),
        ]);
        let import = compare(&current, &copy);
        let refused: Vec<String> = import.refusals.iter().map(ToString::to_string).collect();
        assert_eq!(
            refused,
            [
                "gone: the ledger's record (succeeded, 2026-11-16 09:00 UTC) is newer than the \
                 copy's (none)",
                "in-flight: the ledger tracks job job-A_2 (running), which the copy does not \
                 hold: the next run would submit it again",
                "rebuilt: the ledger's record (succeeded, 2026-11-17 09:00 UTC) is newer than \
                 the copy's (2026-11-16 09:00 UTC)",
            ]
        );
        assert_eq!(
            import.changes.len(),
            4,
            "polled changes, but is not refused"
        );
    }

    #[test]
    fn a_damaged_copy_or_one_of_another_version_is_refused_with_its_line_and_column() {
        let damaged = parse_copy(
            "copy.json",
            b"{\n  \"version\": 1,\n  \"definitions\": {,}\n}",
        )
        .unwrap_err();
        assert!(
            damaged
                .to_string()
                .starts_with("copy.json:3:19: the copy is damaged: "),
            "{damaged}"
        );
        let twice = parse_copy(
            "copy.json",
            b"{\"version\": 1, \"definitions\": {}, \"definitions\": {}}",
        )
        .unwrap_err();
        assert!(
            twice
                .to_string()
                .starts_with("copy.json:1:47: the copy is damaged: "),
            "{twice}"
        );
        let newer = parse_copy(
            "copy.json",
            b"{\n  \"definitions\": {},\n  \"version\": 3\n}",
        )
        .unwrap_err();
        assert_eq!(
            newer.to_string(),
            "copy.json:3:3: the copy has format version 3, but this imagegen reads versions up \
             to 2; the ledger was not changed (use the imagegen that wrote it)"
        );
        let written = state::written_form(&ledger(&[(
            "a",
            entry("A_1", JobStatus::Succeeded, MONDAY),
        )]));
        assert_eq!(
            parse_copy("copy.json", &written).unwrap().definitions.len(),
            1
        );
    }
}
