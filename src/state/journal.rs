//! The ledger's journal: the entry changes written since its snapshot, one JSON line each,
//! and the rule that folds them into the snapshot when the ledger is read.
//!
//! A run appends the entries it changes instead of rewriting the whole ledger, so a write
//! costs the size of the change. The journal's first line names it (a random id) and the
//! snapshot it continues; a snapshot written by a compaction names the journal it folded and
//! how many of its bytes. So a reader always knows which lines are already in the snapshot,
//! even when a compaction stopped between writing the snapshot and starting a new journal.

use serde::{Deserialize, Serialize};

use super::{Ledger, LedgerEntry, LedgerKey, StateError};
use crate::json;

/// The journal format this build reads and writes (its first line says it).
pub const JOURNAL_FORMAT_VERSION: u32 = 1;

/// The journal's name beside a ledger named `ledger` (a file name or a blob name).
pub fn journal_name(ledger: &str) -> String {
    format!("{ledger}.journal")
}

/// The journal's first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub journal: u32,
    /// A random name for this journal, that a snapshot folding it points to.
    pub id: String,
    /// The id of the snapshot this journal continues ([`snapshot_id`]).
    pub after: String,
}

impl Header {
    /// A new journal continuing the snapshot `after`.
    pub fn new(after: &str) -> Self {
        Self {
            journal: JOURNAL_FORMAT_VERSION,
            id: format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
            after: after.to_string(),
        }
    }

    pub fn line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a journal header always serializes");
        line.push(b'\n');
        line
    }
}

/// What a snapshot written by a compaction says it holds of a journal: its lines up to `bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Folded {
    pub id: String,
    pub bytes: u64,
}

/// One change: the entry under `key` is now `entry`, or gone.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub key: LedgerKey,
    pub entry: Option<LedgerEntry>,
}

impl Record {
    pub fn apply(&self, ledger: &mut Ledger) {
        match &self.entry {
            Some(entry) => {
                ledger.insert(&self.key, entry.clone());
            }
            None => {
                ledger.remove(&self.key);
            }
        }
    }
}

/// A record as one journal line holds it: the whole entry (`null` when it was removed), or,
/// in `patch`, only the fields that changed (a JSON merge patch of the entry: `null` clears a
/// field), since most changes are a status and a time and need not carry the payload again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub key: LedgerKey,
    #[serde(default)]
    pub entry: Option<LedgerEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Line {
    /// Applies this line to `ledger`; an error says why it cannot be (a patch of an entry the
    /// ledger does not hold, or one that leaves no valid entry).
    pub fn apply(&self, ledger: &mut Ledger) -> Result<(), String> {
        let Some(patch) = &self.patch else {
            match &self.entry {
                Some(entry) => ledger.insert(&self.key, entry.clone()),
                None => ledger.remove(&self.key),
            };
            return Ok(());
        };
        let current = ledger
            .entry(&self.key)
            .ok_or_else(|| format!("a change to {}, which the ledger does not hold", self.key))?;
        let mut fields = match serde_json::to_value(current) {
            Ok(serde_json::Value::Object(fields)) => fields,
            _ => unreachable!("an entry serializes to an object"),
        };
        for (name, value) in patch {
            match value {
                serde_json::Value::Null => fields.remove(name),
                value => fields.insert(name.clone(), value.clone()),
            };
        }
        let entry = serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(|error| format!("a change to {}: {error}", self.key))?;
        ledger.insert(&self.key, entry);
        Ok(())
    }
}

/// The line that changes `before` into `after` under `key`: the fields that differ when there
/// is an entry on both sides, or else the whole entry.
fn line(key: &LedgerKey, before: Option<&LedgerEntry>, after: Option<&LedgerEntry>) -> Line {
    let whole = || Line {
        key: key.clone(),
        entry: after.cloned(),
        patch: None,
    };
    let (Some(before), Some(after)) = (before, after) else {
        return whole();
    };
    let (Ok(serde_json::Value::Object(old)), Ok(serde_json::Value::Object(new))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return whole();
    };
    let mut patch = serde_json::Map::new();
    for (name, value) in &new {
        if old.get(name) != Some(value) {
            patch.insert(name.clone(), value.clone());
        }
    }
    for name in old.keys().filter(|name| !new.contains_key(*name)) {
        patch.insert(name.clone(), serde_json::Value::Null);
    }
    Line {
        key: key.clone(),
        entry: None,
        patch: Some(patch),
    }
}

/// The bytes that append `records` to a journal, one line each; `before` is the ledger the
/// first of them changes (each later one changes what the earlier ones left).
pub fn record_lines(records: &[Record], before: &Ledger) -> Vec<u8> {
    let mut latest: std::collections::BTreeMap<&LedgerKey, Option<&LedgerEntry>> =
        std::collections::BTreeMap::new();
    let mut bytes = Vec::new();
    for record in records {
        let previous = latest
            .get(&record.key)
            .copied()
            .unwrap_or_else(|| before.entry(&record.key));
        let line = line(&record.key, previous, record.entry.as_ref());
        serde_json::to_writer(&mut bytes, &line).expect("a journal line always serializes");
        bytes.push(b'\n');
        latest.insert(&record.key, record.entry.as_ref());
    }
    bytes
}

/// Where a writer appends to a journal that continues its snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    pub header: Header,
    /// The bytes of whole lines; a torn line beyond is cut off before the next append.
    pub valid_bytes: u64,
    /// How many records it holds, to compact it before it grows too long.
    pub records: usize,
}

/// A journal as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Journal {
    pub header: Header,
    /// Each line with the byte offset it starts at and its line number.
    pub records: Vec<(u64, usize, Line)>,
    /// The bytes up to the end of the last whole line: what a writer appends after. A torn
    /// last line (a run killed in the middle of a write) lies beyond it and is ignored.
    pub valid_bytes: u64,
}

/// Reads a journal's bytes. `None` when it holds no whole header line (empty, or torn while
/// it was being started): there is nothing in it to apply. A damaged line before the last is
/// an error naming the line and column; a last line without its newline is a torn write.
pub fn parse(location: &str, bytes: &[u8]) -> Result<Option<Journal>, StateError> {
    let whole = match bytes.iter().rposition(|&byte| byte == b'\n') {
        Some(last) => &bytes[..=last],
        None => return Ok(None),
    };
    let damaged = |line_number: usize, message: String, column: usize| StateError::Parse {
        location: location.to_string(),
        line: line_number,
        column,
        message,
    };
    let mut lines = Vec::new();
    let mut start = 0;
    for (index, &byte) in whole.iter().enumerate() {
        if byte == b'\n' {
            lines.push((start, &whole[start..index]));
            start = index + 1;
        }
    }
    let line_text = |number: usize, line| {
        utf8_line(line).map_err(|()| damaged(number, "the line is not UTF-8".to_string(), 1))
    };
    let mut lines = lines.into_iter().enumerate();
    let Some((_, (_, header_line))) = lines.next() else {
        return Ok(None);
    };
    let header: Header = parse_line(line_text(1, header_line)?)
        .map_err(|(message, column)| damaged(1, format!("journal header: {message}"), column))?;
    if header.journal != JOURNAL_FORMAT_VERSION {
        return Err(StateError::UnsupportedVersion {
            location: location.to_string(),
            found: header.journal,
            supported: JOURNAL_FORMAT_VERSION,
        });
    }
    let mut records = Vec::new();
    for (index, (start, line)) in lines {
        let number = index + 1;
        let record: Line = parse_line(line_text(number, line)?)
            .map_err(|(message, column)| damaged(number, message, column))?;
        records.push((start as u64, number, record));
    }
    Ok(Some(Journal {
        header,
        records,
        valid_bytes: whole.len() as u64,
    }))
}

fn utf8_line(line: &[u8]) -> Result<&str, ()> {
    std::str::from_utf8(line).map_err(|_| ())
}

fn parse_line<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, (String, usize)> {
    serde_json::from_str(text).map_err(|error| {
        let error = json::json_error(text, &error);
        (error.message, error.column)
    })
}

/// How a journal relates to the snapshot it was read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// The journal continues this snapshot: its records from this offset on apply.
    Continues { from: u64 },
    /// The journal belongs to another snapshot: a compaction ran between the two reads, or
    /// the snapshot was replaced by hand or by an import. None of it applies.
    Foreign,
}

/// Which of `journal`'s records apply to the snapshot with id `snapshot_id` that says it
/// folded `folded`.
pub fn relation(journal: &Journal, snapshot_id: &str, folded: Option<&Folded>) -> Relation {
    match folded {
        Some(folded) if folded.id == journal.header.id => {
            Relation::Continues { from: folded.bytes }
        }
        _ if journal.header.after == snapshot_id => Relation::Continues { from: 0 },
        _ => Relation::Foreign,
    }
}

/// Applies the lines of `journal` from offset `from` on to `ledger`; `location` names the
/// journal in the error a line that cannot apply makes.
pub fn fold(
    ledger: &mut Ledger,
    journal: &Journal,
    from: u64,
    location: &str,
) -> Result<(), StateError> {
    for (_, number, line) in journal.records.iter().filter(|(at, _, _)| *at >= from) {
        line.apply(ledger).map_err(|message| StateError::Parse {
            location: location.to_string(),
            line: *number,
            column: 1,
            message,
        })?;
    }
    Ok(())
}

/// The id of a snapshot: the sha256 of its bytes, as a journal's header names it.
pub fn snapshot_id(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::JobStatus;

    fn entry(status: JobStatus) -> LedgerEntry {
        crate::state::sample_entry(status)
    }

    fn record(name: &str, status: Option<JobStatus>) -> Record {
        Record {
            key: LedgerKey::Definition(name.into()),
            entry: status.map(entry),
        }
    }

    fn journal_bytes(header: &Header, records: &[Record]) -> Vec<u8> {
        let mut bytes = header.line();
        bytes.extend(record_lines(records, &Ledger::default()));
        bytes
    }

    #[test]
    fn records_fold_in_order_and_a_removal_removes() {
        let header = Header::new("snap");
        let bytes = journal_bytes(
            &header,
            &[
                record("a", Some(JobStatus::Submitting)),
                record("b", Some(JobStatus::Queued)),
                record("a", Some(JobStatus::Running)),
                record("b", None),
            ],
        );
        let journal = parse("j", &bytes).unwrap().unwrap();
        assert_eq!(journal.valid_bytes, bytes.len() as u64);
        let mut ledger = Ledger::default();
        fold(&mut ledger, &journal, 0, "j").unwrap();
        assert_eq!(ledger.definitions["a"].status, JobStatus::Running);
        assert!(!ledger.definitions.contains_key("b"));
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_not_counted() {
        let header = Header::new("snap");
        let whole = journal_bytes(&header, &[record("a", Some(JobStatus::Queued))]);
        let mut bytes = whole.clone();
        let torn = record_lines(&[record("b", Some(JobStatus::Queued))], &Ledger::default());
        bytes.extend(&torn[..torn.len() / 2]);
        let journal = parse("j", &bytes).unwrap().unwrap();
        assert_eq!(journal.records.len(), 1);
        assert_eq!(journal.valid_bytes, whole.len() as u64);
    }

    #[test]
    fn a_torn_header_is_an_empty_journal() {
        let line = Header::new("snap").line();
        assert_eq!(parse("j", &line[..line.len() - 1]).unwrap(), None);
        assert_eq!(parse("j", b"").unwrap(), None);
    }

    #[test]
    fn a_damaged_line_before_the_last_names_its_line() {
        let header = Header::new("snap");
        let mut bytes = header.line();
        bytes.extend(b"{\"key\": oops}\n");
        bytes.extend(record_lines(
            &[record("a", Some(JobStatus::Queued))],
            &Ledger::default(),
        ));
        let error = parse("state.json.journal", &bytes).unwrap_err();
        let StateError::Parse { location, line, .. } = &error else {
            panic!("{error}");
        };
        assert_eq!(location, "state.json.journal");
        assert_eq!(*line, 2);
    }

    #[test]
    fn a_journal_of_another_format_is_refused() {
        let mut header = Header::new("snap");
        header.journal = 9;
        let error = parse("j", &header.line()).unwrap_err();
        assert!(matches!(
            error,
            StateError::UnsupportedVersion { found: 9, .. }
        ));
    }

    #[test]
    fn a_snapshot_that_folded_part_of_a_journal_takes_only_the_rest() {
        let header = Header::new("old-snapshot");
        let first = journal_bytes(&header, &[record("a", Some(JobStatus::Queued))]);
        let mut bytes = first.clone();
        bytes.extend(record_lines(
            &[record("b", Some(JobStatus::Queued))],
            &Ledger::default(),
        ));
        let journal = parse("j", &bytes).unwrap().unwrap();
        let folded = Folded {
            id: header.id.clone(),
            bytes: first.len() as u64,
        };
        assert_eq!(
            relation(&journal, "new-snapshot", Some(&folded)),
            Relation::Continues {
                from: first.len() as u64
            }
        );
        let mut ledger = Ledger::default();
        fold(&mut ledger, &journal, first.len() as u64, "j").unwrap();
        assert!(!ledger.definitions.contains_key("a"));
        assert!(ledger.definitions.contains_key("b"));
    }

    #[test]
    fn a_journal_continues_only_its_own_snapshot() {
        let journal = parse("j", &Header::new("s1").line()).unwrap().unwrap();
        assert_eq!(
            relation(&journal, "s1", None),
            Relation::Continues { from: 0 }
        );
        assert_eq!(relation(&journal, "s2", None), Relation::Foreign);
        let other = Folded {
            id: "another journal".into(),
            bytes: 10,
        };
        assert_eq!(relation(&journal, "s2", Some(&other)), Relation::Foreign);
    }

    #[test]
    fn a_change_to_an_entry_is_written_as_the_fields_that_changed() {
        let mut before = Ledger::default();
        let mut queued = entry(JobStatus::Queued);
        queued.message = Some("waiting".into());
        before.insert(&LedgerKey::Definition("a".into()), queued.clone());
        let mut running = queued.clone();
        running.status = JobStatus::Running;
        running.message = None;
        running.tracking_id = Some("job-1".into());
        let mut done = running.clone();
        done.status = JobStatus::Succeeded;
        let records = [
            Record {
                key: LedgerKey::Definition("a".into()),
                entry: Some(running.clone()),
            },
            Record {
                key: LedgerKey::Definition("a".into()),
                entry: Some(done.clone()),
            },
        ];
        let lines = record_lines(&records, &before);
        let text = String::from_utf8(lines.clone()).unwrap();
        assert!(!text.contains("payload_hash"), "only what changed: {text}");
        assert!(
            text.contains(r#""message":null"#),
            "a field cleared: {text}"
        );
        let mut bytes = Header::new("s").line();
        bytes.extend(&lines);
        let journal = parse("j", &bytes).unwrap().unwrap();
        let mut folded = before.clone();
        fold(&mut folded, &journal, 0, "j").unwrap();
        assert_eq!(
            folded.entry(&LedgerKey::Definition("a".into())),
            Some(&done)
        );
    }

    #[test]
    fn a_change_to_an_entry_the_ledger_does_not_hold_names_its_line() {
        let mut before = Ledger::default();
        before.insert(&LedgerKey::Definition("a".into()), entry(JobStatus::Queued));
        let mut running = entry(JobStatus::Running);
        running.tracking_id = Some("job-1".into());
        let lines = record_lines(
            &[Record {
                key: LedgerKey::Definition("a".into()),
                entry: Some(running),
            }],
            &before,
        );
        let mut bytes = Header::new("s").line();
        bytes.extend(&lines);
        let journal = parse("j", &bytes).unwrap().unwrap();
        let error = fold(&mut Ledger::default(), &journal, 0, "state.json.journal").unwrap_err();
        assert!(
            matches!(&error, StateError::Parse { line: 2, .. }),
            "{error}"
        );
    }
}
