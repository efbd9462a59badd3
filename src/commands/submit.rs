//! `imagegen submit`: sends one payload file, one definition, or every definition that uses
//! some variables, recording each in the ledger first.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;

use super::factory_options::FactoryOptions;
use super::{Context, count, render_target, resolve_render_target};
use crate::apply::submission::{self, Candidate, Outcome};
use crate::catalog::Catalog;
use crate::diagnostics::Diagnostics;
use crate::exit::Exit;
use crate::factory::FactoryError;
use crate::factory::wire::IDEMPOTENCY_KEY_HEADER;
use crate::output::{Table, shown};
use crate::platform::Annotation;
use crate::state::{LedgerKey, LedgerWriter};

/// What `imagegen submit` sends.
#[derive(Debug, Clone)]
pub enum SubmitTarget {
    /// A definition id or a payload file.
    File(String),
    /// Every definition that uses any of these variables.
    Variables(Vec<String>),
}

/// What `imagegen submit` is asked to do.
#[derive(Debug, Clone)]
pub struct SubmitRequest {
    pub target: SubmitTarget,
    /// Print what would be sent; send nothing, record nothing.
    pub dry_run: bool,
    /// Send again a payload that was built already.
    pub force: bool,
    /// Send a changed payload that keeps image names its last submission used.
    pub allow_same_name: bool,
    pub lock_timeout: Duration,
    pub factory: FactoryOptions,
}

/// `imagegen submit`: renders, records the intent, sends, records the tracking id.
pub fn submit(context: &Context, request: SubmitRequest) -> anyhow::Result<Exit> {
    let (candidates, diagnostics) = candidates(context, &request.target)?;
    let output = &context.output;
    output.diagnostics(&diagnostics)?;
    if diagnostics.has_errors() {
        if output.is_json() {
            output.json(&json!({ "submitted": [], "diagnostics": diagnostics }))?;
        } else {
            output.note("nothing was submitted: fix the errors above first")?;
        }
        return Ok(Exit::Error);
    }
    if candidates.is_empty() {
        if let SubmitTarget::Variables(names) = &request.target {
            output.note(&format!(
                "no definition uses {}: nothing to submit",
                names.join(" or ")
            ))?;
        }
        if output.is_json() {
            output.json(&json!({ "submitted": [], "diagnostics": diagnostics }))?;
        }
        return Ok(Exit::Ok);
    }
    let candidates: Vec<Candidate> = candidates
        .into_iter()
        .map(|candidate| candidate.allowing_same_name(request.allow_same_name))
        .collect();
    if request.dry_run {
        return print_dry_run(context, &request, &candidates);
    }
    let results = send(context, &request, candidates)?;
    // On a platform, each payload not submitted is an error in the run's issues; off one, the
    // table below says it.
    for (key, outcome) in &results {
        if let Some(annotation) = submit_annotation(key, outcome) {
            output.annotate(&annotation)?;
        }
    }
    if output.is_json() {
        let submitted: Vec<_> = results
            .iter()
            .map(|(key, outcome)| json!({ "ledger": key, "result": outcome }))
            .collect();
        output.json(&json!({ "submitted": submitted, "diagnostics": diagnostics }))?;
    } else {
        print_outcomes(context, &results)?;
    }
    Ok(if results.iter().any(|(_, outcome)| outcome.is_problem()) {
        Exit::Error
    } else {
        Exit::Ok
    })
}

/// The payloads the target names, rendered, with the problems found on the way.
fn candidates(
    context: &Context,
    target: &SubmitTarget,
) -> anyhow::Result<(Vec<Candidate>, Diagnostics)> {
    match target {
        SubmitTarget::File(target) => {
            let target = resolve_render_target(&context.repo, target)?;
            let (rendered, diagnostics) = render_target(&context.repo, &target);
            let key = if target.is_definition {
                LedgerKey::Definition(target.id.clone())
            } else {
                LedgerKey::Manual(target.file.clone())
            };
            let candidates = rendered
                .map(|rendered| vec![Candidate::from_rendered(key, &rendered)])
                .unwrap_or_default();
            Ok((candidates, diagnostics))
        }
        SubmitTarget::Variables(names) => candidates_for_variables(context, names),
    }
}

/// Sends every candidate through the ledger, as many at once as asked.
fn send(
    context: &Context,
    request: &SubmitRequest,
    candidates: Vec<Candidate>,
) -> anyhow::Result<Vec<(LedgerKey, Outcome)>> {
    let client = Arc::new(request.factory.client()?);
    let runtime = crate::runtime::shared()?;
    let writer = runtime
        .block_on(LedgerWriter::open(
            &context.store,
            request.lock_timeout,
            "imagegen submit",
        ))
        .context("cannot record the submission in the ledger, so nothing was submitted")?;
    let writer = Arc::new(writer);
    let candidates = candidates
        .into_iter()
        .map(|candidate| (candidate, request.force))
        .collect();
    runtime.block_on(async {
        let results = submission::submit_all(client, writer.clone(), candidates, None).await;
        writer.finish().await;
        results
    })
}

/// The outcomes for people: the table, then what to do about lost answers and refusals.
fn print_outcomes(context: &Context, results: &[(LedgerKey, Outcome)]) -> anyhow::Result<()> {
    let output = &context.output;
    output.text(&render_outcomes(results))?;
    output.text(&super::ledger_line(context))?;
    let problems = results.iter().filter(|(_, o)| o.is_problem()).count();
    if results
        .iter()
        .any(|(_, o)| matches!(o, Outcome::AnswerLost { .. }))
    {
        output.note(
            "a submission's answer was lost: the ledger keeps its intent, and the next \
             `imagegen submit` or `imagegen reconcile` sends it again with the same \
             idempotency key",
        )?;
    }
    if problems > 0 {
        output.note(&format!("{} not submitted", count(problems, "payload")))?;
    }
    Ok(())
}

/// The error annotation for a payload that was not submitted.
fn submit_annotation(key: &LedgerKey, outcome: &Outcome) -> Option<Annotation> {
    let detail = match outcome {
        Outcome::Rejected { message } => format!("rejected: {message}"),
        Outcome::Refused { message } => format!("refused: {message}"),
        Outcome::AnswerLost { message } => format!(
            "the answer was lost ({message}); the next run sends it again with the same \
             idempotency key"
        ),
        Outcome::Error { message } => message.clone(),
        Outcome::Submitted { .. } | Outcome::Skipped { .. } => return None,
    };
    Some(
        Annotation::error(format!("{key}: not submitted: {detail}"))
            .in_file(key.file())
            .titled(format!("{key} not submitted")),
    )
}

fn render_outcomes(results: &[(LedgerKey, Outcome)]) -> String {
    let mut table = Table::new(&["definition", "tracking id", "result"]);
    // A tracking id is 36 characters wide in the contract: keep the column that wide even
    // when every id in this table is shorter (a `-`).
    table.min_width(1, 36);
    for (key, outcome) in results {
        let (tracking_id, result) = match outcome {
            Outcome::Submitted {
                tracking_id,
                status,
                existing,
                replaced,
            } => {
                let mut result = status.to_string();
                if *existing {
                    result.push_str(" (the service already had this payload)");
                }
                if let Some(replaced) = replaced {
                    result.push_str(&format!(
                        " (replaces job {} in the ledger)",
                        shown(replaced)
                    ));
                }
                (tracking_id.clone(), result)
            }
            Outcome::Skipped {
                reason,
                tracking_id,
            } => (
                tracking_id.clone().unwrap_or_else(|| "-".into()),
                format!("skipped: {reason}"),
            ),
            Outcome::Rejected { message } => ("-".into(), format!("rejected: {message}")),
            Outcome::Refused { message } => ("-".into(), format!("refused: {message}")),
            Outcome::AnswerLost { message } => ("?".into(), format!("answer lost: {message}")),
            Outcome::Error { message } => ("-".into(), format!("error: {message}")),
        };
        table.row(&[key.name(), &shown(&tracking_id), &result]);
    }
    table.render()
}

/// The definitions using any of `names`, rendered; refuses unknown names.
fn candidates_for_variables(
    context: &Context,
    names: &[String],
) -> anyhow::Result<(Vec<Candidate>, Diagnostics)> {
    let catalog = Catalog::load(&context.repo);
    super::check_variable_names(&catalog, names)?;
    let affected = catalog.affected_by(names);
    let affected_ids: Vec<&str> = affected.iter().map(|(d, _)| d.id.as_str()).collect();
    let mut diagnostics = Diagnostics::default();
    // Problems of definitions that do not use the variables do not stop this submission.
    diagnostics.extend(
        catalog
            .diagnostics
            .iter()
            .filter(|diagnostic| {
                !diagnostic.is_error()
                    || catalog.variables_invalid
                    || diagnostic
                        .definition
                        .as_deref()
                        .is_none_or(|id| affected_ids.contains(&id))
            })
            .cloned(),
    );
    let candidates = catalog
        .rendered
        .iter()
        .filter(|rendered| affected_ids.contains(&rendered.id.as_str()))
        .map(|rendered| {
            Candidate::from_rendered(LedgerKey::Definition(rendered.id.clone()), rendered)
        })
        .collect();
    Ok((candidates, diagnostics))
}

fn print_dry_run(
    context: &Context,
    request: &SubmitRequest,
    candidates: &[Candidate],
) -> anyhow::Result<Exit> {
    let jobs_url = match request.factory.settings() {
        Ok(settings) => settings.jobs_url().to_string(),
        Err(FactoryError::MissingUrl) => "$IMAGE_FACTORY_URL/api/jobs".to_string(),
        Err(error) => return Err(error.into()),
    };
    let ledger = context.store.read_blocking().unwrap_or_default();
    let output = &context.output;
    let mut documents = Vec::new();
    let mut text = String::new();
    let mut refused = false;
    for candidate in candidates {
        let entry = ledger.entry(&candidate.key);
        let decision = submission::refuse_same_name(
            submission::decide(entry, &candidate.hash, request.force),
            entry,
            candidate,
        );
        let payload = candidate.payload.to_value();
        match &decision {
            submission::Decision::Send {
                idempotency_key, ..
            } => {
                text.push_str(&format!(
                    "# {}\nPOST {jobs_url}\nAuthorization: Bearer (an Azure AD token, never shown)\n\
                     Content-Type: application/json\n{IDEMPOTENCY_KEY_HEADER}: {idempotency_key}\n\n{}\n\n",
                    candidate.key,
                    serde_json::to_string_pretty(&payload)?
                ));
                documents.push(json!({
                    "ledger": candidate.key,
                    "send": true,
                    "method": "POST",
                    "url": jobs_url,
                    "idempotency_key": idempotency_key,
                    "payload": payload,
                }));
            }
            submission::Decision::InFlight { tracking_id } => {
                text.push_str(&format!(
                    "# {}: not sent, the same payload is being built as job {tracking_id}\n\n",
                    candidate.key
                ));
                documents.push(
                    json!({"ledger": candidate.key, "send": false, "in_flight": tracking_id}),
                );
            }
            submission::Decision::OtherRun => {
                text.push_str(&format!(
                    "# {}: not sent, another run is submitting the same payload\n\n",
                    candidate.key
                ));
                documents.push(json!({"ledger": candidate.key, "send": false, "other_run": true}));
            }
            submission::Decision::SameName(same_name) => {
                refused = true;
                let message = crate::plan::refusal(same_name);
                text.push_str(&format!("# {}: not sent, {message}\n\n", candidate.key));
                documents.push(json!({"ledger": candidate.key, "send": false, "refused": message}));
            }
            submission::Decision::Built { tracking_id } => {
                text.push_str(&format!(
                    "# {}: not sent, the same payload was built already (--force sends it)\n\n",
                    candidate.key
                ));
                documents
                    .push(json!({"ledger": candidate.key, "send": false, "built_by": tracking_id}));
            }
        }
    }
    if output.is_json() {
        output.json(&json!({ "dry_run": true, "requests": documents }))?;
    } else {
        output.text(&text)?;
        output.note("dry run: nothing was submitted and the ledger was not changed")?;
    }
    Ok(if refused { Exit::Error } else { Exit::Ok })
}
