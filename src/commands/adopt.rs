//! `imagegen adopt`: images that exist already (the first rollout, a lost ledger), recorded in
//! the ledger as built so that nothing is submitted for them.

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::json;

use super::{Context, count};
use crate::catalog::Catalog;
use crate::definitions::Rendered;
use crate::exit::Exit;
use crate::output::Table;
use crate::selection::Selection;
use crate::state::{JobStatus, LedgerEntry, LedgerKey, LedgerWriter};

/// What `imagegen adopt` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct AdoptRequest {
    pub only: Vec<String>,
    pub except: Vec<String>,
    pub dry_run: bool,
    pub lock_timeout: Duration,
}

/// Whether a definition is adopted, or why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum AdoptAction {
    Adopt,
    /// The ledger has this payload built already.
    Built,
    /// A job is in flight: adopting would lose track of it.
    InFlight,
}

/// What adopting does with one definition.
#[derive(Debug, Clone, Serialize)]
struct Adoption {
    definition: String,
    action: AdoptAction,
    image_names: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracking_id: Option<String>,
}

/// `imagegen adopt`: records the current rendered payloads as built, without submitting, so
/// that the first reconcile does not rebuild images that exist already.
pub fn adopt(context: &Context, request: AdoptRequest) -> anyhow::Result<Exit> {
    let selection = Selection::new(&request.only, &request.except)?;
    let catalog = Catalog::load(&context.repo);
    let output = &context.output;
    if catalog.blocks_planning() || catalog.diagnostics.has_errors() {
        output.diagnostics(&catalog.diagnostics)?;
        if output.is_json() {
            output.json(&json!({ "adopted": [], "diagnostics": catalog.diagnostics }))?;
        } else {
            output.note("nothing was adopted: fix the errors above first")?;
        }
        return Ok(Exit::Error);
    }
    selection.check(&catalog.ids())?;
    let chosen: Vec<&Rendered> = catalog
        .rendered
        .iter()
        .filter(|rendered| selection.matches(&rendered.id))
        .collect();
    let adoptions = if request.dry_run {
        let ledger = context.store.read_blocking()?;
        chosen
            .iter()
            .map(|rendered| adoption(ledger.definitions.get(&rendered.id), rendered))
            .collect()
    } else {
        record(context, &chosen, request.lock_timeout)?
    };
    if output.is_json() {
        output.json(&json!({
            "dry_run": request.dry_run,
            "state": context.store.describe(),
            "adopted": adopted_count(&adoptions),
            "definitions": adoptions,
        }))?;
    } else {
        output.text(&render_adoptions(&adoptions, request.dry_run))?;
        output.text(&super::ledger_line(context))?;
        output.note(&adopted_line(&adoptions, request.dry_run))?;
    }
    Ok(Exit::Ok)
}

/// What adopting does with a definition, given its ledger entry: a job in flight or the same
/// payload built is left as it is.
fn adoption(entry: Option<&LedgerEntry>, rendered: &Rendered) -> Adoption {
    let (action, tracking_id) = match entry {
        Some(entry) if entry.status.is_pending() => {
            (AdoptAction::InFlight, entry.tracking_id.clone())
        }
        Some(entry)
            if entry.payload_hash == rendered.hash && entry.status == JobStatus::Succeeded =>
        {
            (AdoptAction::Built, entry.tracking_id.clone())
        }
        _ => (AdoptAction::Adopt, None),
    };
    Adoption {
        definition: rendered.id.clone(),
        action,
        image_names: rendered.image_names.clone(),
        tracking_id,
    }
}

/// Decides each definition on the ledger as it is saved, and records the adopted ones as built.
fn record(
    context: &Context,
    chosen: &[&Rendered],
    lock_timeout: Duration,
) -> anyhow::Result<Vec<Adoption>> {
    let runtime = crate::runtime::shared()?;
    runtime.block_on(async {
        let writer = LedgerWriter::open(&context.store, lock_timeout, "imagegen adopt").await?;
        let now = Timestamp::now();
        let adoptions = writer
            .update(|ledger| {
                chosen
                    .iter()
                    .map(|rendered| {
                        let key = LedgerKey::Definition(rendered.id.clone());
                        let adoption = adoption(ledger.entry(&key), rendered);
                        if adoption.action == AdoptAction::Adopt {
                            ledger.insert(&key, adopted_entry(rendered, now));
                        }
                        adoption
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
        writer.finish().await;
        Ok(adoptions)
    })
}

/// The entry of a payload adopted as built: its images, with no job behind them.
fn adopted_entry(rendered: &Rendered, now: Timestamp) -> LedgerEntry {
    LedgerEntry {
        payload_hash: rendered.hash.clone(),
        payload: rendered.payload.clone(),
        variables: rendered.variables.clone(),
        idempotency_key: None,
        tracking_id: None,
        status: JobStatus::Succeeded,
        message: None,
        image_names: rendered.image_names.clone(),
        submitted_at: None,
        updated_at: now,
        completed_at: Some(now),
        adopted: true,
        same_name_allowed: None,
    }
}

fn adopted_count(adoptions: &[Adoption]) -> usize {
    adoptions
        .iter()
        .filter(|a| a.action == AdoptAction::Adopt)
        .count()
}

/// One row per definition: its name, what adopting does with it, its images.
fn render_adoptions(adoptions: &[Adoption], dry_run: bool) -> String {
    let mut table = Table::new(&["definition", "action", "images"]);
    // As wide as "in flight", whatever this run's actions.
    table.min_width(1, 9);
    for adoption in adoptions {
        let action = match (adoption.action, dry_run) {
            (AdoptAction::Adopt, true) => "would adopt",
            (AdoptAction::Adopt, false) => "adopted",
            (AdoptAction::Built, _) => "built",
            (AdoptAction::InFlight, _) => "in flight",
        };
        table.row(&[
            adoption.definition.as_str(),
            action,
            &adoption.image_names.join(", "),
        ]);
    }
    table.render()
}

/// `2 definitions recorded as built without a submission; 1 left as they were (...)`.
fn adopted_line(adoptions: &[Adoption], dry_run: bool) -> String {
    let adopted = adopted_count(adoptions);
    let skipped = adoptions.len() - adopted;
    format!(
        "{} {} as built without a submission{}{}",
        count(adopted, "definition"),
        if dry_run {
            "would be recorded"
        } else {
            "recorded"
        },
        if skipped > 0 {
            format!(
                "; {skipped} left as they were (built already, or a job in flight: adopting \
                 would lose track of it)"
            )
        } else {
            String::new()
        },
        if dry_run {
            "; dry run: the ledger was not changed"
        } else {
            ""
        }
    )
}
