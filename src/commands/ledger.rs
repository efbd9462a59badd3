//! `imagegen ledger export` writes a complete copy of the ledger (its own versioned JSON) to a
//! file or stdout; `imagegen ledger import` replaces the ledger with such a copy, under the
//! ledger's lock and compare-and-swap, refusing (unless forced) a copy that would forget a job
//! in flight or a newer build. What an import changes is decided by [`crate::ledger_copy`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;

use super::{Context, ledger_line};
use crate::exit::Exit;
use crate::ledger_copy::{self, Change, Import, Side};
use crate::output::Table;
use crate::state::{
    self, FileStore, LEDGER_FORMAT_VERSION, Ledger, LedgerWriter, MissingLedger, StateError, Store,
};

/// What `imagegen ledger` is asked to do.
#[derive(Debug, Clone)]
pub enum LedgerRequest {
    /// Write a copy to the file, or to stdout.
    Export {
        file: Option<PathBuf>,
    },
    Import(ImportRequest),
}

/// `imagegen ledger import FILE`.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub file: PathBuf,
    /// Show what would change; write nothing.
    pub dry_run: bool,
    /// Import although the copy would forget a job in flight or a newer build.
    pub force: bool,
    /// How long to wait for another run holding the ledger.
    pub lock_timeout: Duration,
}

pub fn ledger(context: &Context, request: LedgerRequest) -> anyhow::Result<Exit> {
    match request {
        LedgerRequest::Export { file } => export(context, file.as_deref()),
        LedgerRequest::Import(request) => import(context, &request),
    }
}

/// Reads the ledger (no lock: its writes are atomic, its journal folded in) and writes it out
/// whole, in the form the stores write it: pretty JSON with its `version`, this build's (a
/// version 1 ledger is the same document).
fn export(context: &Context, file: Option<&Path>) -> anyhow::Result<Exit> {
    let output = &context.output;
    let mut ledger = context.store.read_blocking()?;
    ledger.version = LEDGER_FORMAT_VERSION;
    let bytes = state::written_form(&ledger);
    let pending = ledger
        .entries()
        .filter(|(_, entry)| entry.status.is_pending())
        .count();
    let what = format!(
        "{} definitions, {} files submitted by hand, {pending} pending (format version \
         {LEDGER_FORMAT_VERSION})",
        ledger.definitions.len(),
        ledger.manual.len(),
    );
    let Some(file) = file else {
        // The copy is the document: in JSON output as in text.
        output.text(std::str::from_utf8(&bytes).expect("a ledger serializes to UTF-8"))?;
        output.note(&format!(
            "exported the ledger {}: {what}",
            context.store.describe()
        ))?;
        return Ok(Exit::Ok);
    };
    crate::atomic_file::replace(file, &bytes)
        .with_context(|| format!("cannot write the copy {}", file.display()))?;
    if output.is_json() {
        output.json(&json!({
            "exported_to": file,
            "version": LEDGER_FORMAT_VERSION,
            "definitions": ledger.definitions.len(),
            "manual": ledger.manual.len(),
            "pending": pending,
            "ledger": context.store.describe(),
        }))?;
    } else {
        output.text(&format!("Exported to {}: {what}\n", file.display()))?;
        output.text(&ledger_line(context))?;
    }
    Ok(Exit::Ok)
}

/// The ledger an import would replace.
enum Current {
    Readable(Ledger),
    /// A file ledger that does not parse: set aside (kept) and replaced.
    Damaged(StateError),
}

fn import(context: &Context, request: &ImportRequest) -> anyhow::Result<Exit> {
    let shown = request.file.display().to_string();
    let bytes =
        std::fs::read(&request.file).with_context(|| format!("cannot read the copy {shown}"))?;
    let copy = ledger_copy::parse_copy(&shown, &bytes)?;
    if request.dry_run {
        let current = match context.store.read_blocking() {
            Ok(ledger) => Current::Readable(ledger),
            Err(error) => Current::Damaged(settable_aside(&context.store, error)?),
        };
        let import = match &current {
            Current::Readable(ledger) => ledger_copy::compare(ledger, &copy),
            Current::Damaged(_) => ledger_copy::compare(&Ledger::default(), &copy),
        };
        return report(context, request, &current, &import, None);
    }
    let runtime = crate::runtime::shared()?;
    runtime.block_on(async {
        let purpose = "imagegen ledger import";
        let (writer, current, set_aside) =
            match LedgerWriter::open(&context.store, request.lock_timeout, purpose).await {
                Ok(writer) => {
                    let current = Current::Readable(writer.ledger());
                    (writer, current, None)
                }
                Err(error) => {
                    let error = settable_aside(&context.store, error)?;
                    let (store, kept) = match &context.store {
                        Store::File(file) => {
                            let kept = set_aside(file, request.lock_timeout, purpose)?;
                            // The damaged ledger existed: its replacement is no new ledger to
                            // refuse.
                            let store =
                                Store::File(file.clone().with_missing(MissingLedger::Empty));
                            (store, kept.display().to_string())
                        }
                        Store::Blob(blob) => {
                            (context.store.clone(), blob.set_aside_damaged().await?)
                        }
                    };
                    let writer = LedgerWriter::open(&store, request.lock_timeout, purpose).await?;
                    (writer, Current::Damaged(error), Some(kept))
                }
            };
        let import = ledger_copy::compare(&writer.ledger(), &copy);
        let refused = !import.refusals.is_empty() && !request.force;
        if !refused && (!import.is_empty() || set_aside.is_some()) {
            writer.replace_all(copy).await?;
        }
        report(context, request, &current, &import, set_aside.as_deref())
    })
}

/// A ledger that cannot be read is replaced only when it is damaged (a file or a blob), and
/// it is kept beside it; any other error (a newer format, a refused SAS) stops the import.
fn settable_aside(_store: &Store, error: StateError) -> anyhow::Result<StateError> {
    match &error {
        StateError::Parse { .. } => Ok(error),
        _ => Err(error.into()),
    }
}

/// Renames the damaged ledger file to `<name>.damaged-<UTC time>` beside it, under its lock,
/// and returns the new path: a damaged ledger is never deleted, since it may hold the only
/// record of a job submitted after the copy was made.
fn set_aside(file: &FileStore, lock_timeout: Duration, purpose: &str) -> anyhow::Result<PathBuf> {
    let _lock = file.lock(lock_timeout, purpose)?;
    let real = file
        .path()
        .canonicalize()
        .with_context(|| format!("cannot find the ledger {}", file.path().display()))?;
    let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
    let mut name = real.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".damaged-{stamp}"));
    let kept = real.with_file_name(name);
    std::fs::rename(&real, &kept).with_context(|| {
        format!(
            "cannot set the damaged ledger {} aside as {}",
            real.display(),
            kept.display()
        )
    })?;
    Ok(kept)
}

/// The import's outcome: what changed (or would), what was refused, and the exit code. A dry
/// run exits 2 when the import would change something.
fn report(
    context: &Context,
    request: &ImportRequest,
    current: &Current,
    import: &Import,
    set_aside: Option<&str>,
) -> anyhow::Result<Exit> {
    let output = &context.output;
    let refused = !import.refusals.is_empty() && !request.force;
    let damaged = match current {
        Current::Damaged(error) => Some(error.to_string()),
        Current::Readable(_) => None,
    };
    let changes = !import.is_empty() || damaged.is_some();
    let code = if refused {
        Exit::Error
    } else if request.dry_run && changes {
        Exit::Pending
    } else {
        Exit::Ok
    };
    let imported = !request.dry_run && !refused && changes;
    if refused {
        let names: Vec<&str> = import
            .refusals
            .iter()
            .map(|refusal| refusal.key().name())
            .collect();
        for refusal in &import.refusals {
            output.error(&refusal.to_string())?;
        }
        output.error(&format!(
            "the copy {} would forget what the ledger holds of {}; {}. Export the ledger first \
             if in doubt, and pass --force to import anyway",
            request.file.display(),
            names.join(", "),
            if request.dry_run {
                "nothing would be written"
            } else {
                "nothing was written"
            }
        ))?;
    }
    if output.is_json() {
        output.json(&json!({
            "file": request.file,
            "dry_run": request.dry_run,
            "forced": request.force,
            "imported": imported,
            "damaged": damaged,
            "set_aside": set_aside,
            "changes": import.changes,
            "unchanged": import.unchanged,
            "refusals": import.refusals,
            "ledger": context.store.describe(),
            "exit_code": code,
        }))?;
        return Ok(code);
    }
    let mut text = String::new();
    if let Some(damaged) = &damaged {
        text.push_str(&format!(
            "The ledger is damaged ({damaged}): {}\n",
            match set_aside {
                Some(kept) => format!("kept as {kept}, and replaced by the copy"),
                None => "it would be kept beside itself, and replaced by the copy".to_string(),
            }
        ));
    }
    text.push_str(&changes_table(import));
    text.push_str(&format!(
        "{} changed, {} unchanged; {}\n",
        import.changes.len(),
        import.unchanged,
        match (request.dry_run, refused, imported) {
            (true, true, _) => "the import would be refused: nothing written (dry run)",
            (true, false, _) if changes => "nothing written (dry run)",
            (_, true, _) => "refused: nothing written",
            (false, false, true) => "imported",
            _ => "the ledger already holds the copy: nothing written",
        }
    ));
    if imported {
        text.push_str(
            "Next: `imagegen reconcile --dry-run` plans from the imported ledger; `imagegen \
             adopt` records what OSOB names and the copy lacks\n",
        );
    }
    text.push_str(&ledger_line(context));
    output.text(&text)?;
    Ok(code)
}

fn side(side: Option<&Side>) -> String {
    side.map_or("-".to_string(), |side| match &side.tracking_id {
        Some(id) => format!("{} {id}", side.status),
        None => side.status.to_string(),
    })
}

fn changes_table(import: &Import) -> String {
    if import.changes.is_empty() {
        return String::new();
    }
    let mut table = Table::new(&["change", "entry", "in the ledger", "in the copy"]);
    for change in &import.changes {
        let word = match change.change {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        };
        table.row(&[
            word.to_string(),
            change.key.to_string(),
            side(change.before.as_ref()),
            side(change.after.as_ref()),
        ]);
    }
    table.render()
}
