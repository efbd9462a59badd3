//! `imagegen status`: without tracking ids, the fleet (every definition's build and whether OSOB
//! names its image, see [`fleet`]); with them, each job's state by tracking id, followed with
//! `--watch` until all ended, the jobs the ledger knows recorded there.

mod fleet_view;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::json;

use super::Context;
use super::factory_options::FactoryOptions;
use crate::apply::submission::{self};
use crate::duration;
use crate::exit::Exit;
use crate::factory::{FactoryClient, FactoryError, JobState, RemoteStatus};
use crate::output::{SHOWN_MESSAGE_CHARS, shown, shown_within};
use crate::platform::Annotation;
use crate::state::{LedgerKey, LedgerWriter};

/// How many jobs `--watch` asks about at once: as many as `reconcile` polls by default.
const POLL_CONCURRENCY: usize = 4;

/// What `imagegen status` is asked to do.
#[derive(Debug, Clone)]
pub struct StatusRequest {
    /// The jobs to show; none shows the fleet instead.
    pub tracking_ids: Vec<String>,
    /// With no tracking ids: the definitions to show (`--only`, `--except`).
    pub only: Vec<String>,
    pub except: Vec<String>,
    /// With no tracking ids: another OSOB repository than the mapping's (`--osob-url`).
    pub osob_url: Option<String>,
    /// Poll until every job has ended.
    pub watch: bool,
    pub poll_interval: Duration,
    pub factory: FactoryOptions,
}

/// One job as `status` reports it.
#[derive(Debug, Clone, Serialize)]
struct JobReport {
    tracking_id: String,
    /// The definition or file the ledger records for this job, if it knows the job.
    #[serde(skip_serializing_if = "Option::is_none")]
    ledger: Option<LedgerKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<JobState>,
    /// Why the state could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The error may pass (the service was unreachable or busy).
    #[serde(skip)]
    transient: bool,
    /// Not asked yet, or worth asking again (a transient error while watching).
    #[serde(skip)]
    ask_again: bool,
}

impl JobReport {
    fn is_terminal(&self) -> bool {
        match &self.state {
            Some(state) => state.status.is_terminal(),
            None => !self.ask_again,
        }
    }

    fn summary(&self) -> String {
        match (&self.state, &self.error) {
            (Some(state), _) if without_images(state) => format!("{}, no images", state.status),
            (Some(state), _) => state.status.to_string(),
            (None, Some(_)) if self.transient => "unreachable".to_string(),
            (None, Some(_)) => "unknown".to_string(),
            (None, None) => "not asked".to_string(),
        }
    }
}

/// A job that reads Succeeded but names no image: not built (see [`submission::record_state`]).
fn without_images(state: &JobState) -> bool {
    state.status == RemoteStatus::Succeeded && state.images.is_empty()
}

/// `imagegen status`: the fleet, or with tracking ids each job's state.
pub fn status(context: &Context, request: StatusRequest) -> anyhow::Result<Exit> {
    if request.tracking_ids.is_empty() {
        fleet_view::fleet(context, &request)
    } else {
        jobs(context, request)
    }
}

/// `imagegen status <tracking-id>...`: each job's state; `--watch` polls until all ended.
fn jobs(context: &Context, request: StatusRequest) -> anyhow::Result<Exit> {
    let client = Arc::new(request.factory.client()?);
    let runtime = crate::runtime::shared()?;
    let (mut reports, ledger_line) = named_reports(context, &request);
    let output = &context.output;
    let mut first = true;
    loop {
        let asking: Vec<(usize, String)> = reports
            .iter()
            .enumerate()
            .filter(|(_, report)| !report.is_terminal())
            .map(|(index, report)| (index, report.tracking_id.clone()))
            .collect();
        for (index, answer) in runtime.block_on(ask_all(&client, asking)) {
            take_answer(context, &request, &mut reports[index], answer, first)?;
        }
        if request.watch && first && !output.is_json() {
            output.text(&render_reports(&reports))?;
        }
        first = false;
        if !request.watch || reports.iter().all(JobReport::is_terminal) {
            break;
        }
        std::thread::sleep(request.poll_interval);
    }
    runtime.block_on(record_states(context, &reports))?;
    print_reports(context, &request, &reports, &ledger_line)?;
    Ok(status_exit_code(&reports))
}

/// A report for each tracking id asked about, named after the definition the ledger holds it
/// for, and the ledger line that ends the text. Without a ledger, the ids speak for themselves.
fn named_reports(context: &Context, request: &StatusRequest) -> (Vec<JobReport>, String) {
    let read = context.store.read_blocking();
    let ledger_line = match &read {
        Ok(_) => super::ledger_line(context),
        Err(error) => format!(
            "Ledger: {} (not read, so no job is named after its definition: {error})\n",
            context.store.describe()
        ),
    };
    let known: BTreeMap<String, LedgerKey> = read
        .map(|ledger| {
            ledger
                .entries()
                .filter_map(|(key, entry)| Some((entry.tracking_id.clone()?, key)))
                .collect()
        })
        .unwrap_or_default();
    let reports = request
        .tracking_ids
        .iter()
        .map(|id| JobReport {
            tracking_id: id.clone(),
            ledger: known.get(id).cloned(),
            state: None,
            error: None,
            transient: false,
            ask_again: true,
        })
        .collect();
    (reports, ledger_line)
}

/// Records one answer in its report; while watching, says what changed (from the second
/// round on: the first round's table says it all).
fn take_answer(
    context: &Context,
    request: &StatusRequest,
    report: &mut JobReport,
    answer: Result<JobState, FactoryError>,
    first: bool,
) -> anyhow::Result<()> {
    let output = &context.output;
    let before = report.summary();
    match answer {
        Ok(state) => {
            if let RemoteStatus::Other(status) = &state.status {
                tracing::warn!(
                    "job {}: status {status:?} is not one the contract names; taking it as not \
                     finished",
                    report.tracking_id
                );
            }
            report.state = Some(state);
            report.error = None;
            report.transient = false;
            report.ask_again = false;
        }
        Err(error) => {
            report.transient = error.is_transient();
            report.ask_again = report.transient && request.watch;
            if report.ask_again && !first {
                output.note(&format!(
                    "job {}: {error}; asking again in {}",
                    report.tracking_id,
                    duration::display(request.poll_interval)
                ))?;
            }
            report.error = Some(error.to_string());
        }
    }
    if request.watch && !first && !output.is_json() && report.summary() != before {
        output.text(&format!(
            "{}  {}{}: {} -> {}\n",
            seconds(Timestamp::now()),
            report.tracking_id,
            report
                .ledger
                .as_ref()
                .map(|key| format!(" ({key})"))
                .unwrap_or_default(),
            before,
            report.summary()
        ))?;
    }
    Ok(())
}

/// The reports as annotations (on a CI platform), then as JSON or the table.
fn print_reports(
    context: &Context,
    request: &StatusRequest,
    reports: &[JobReport],
    ledger_line: &str,
) -> anyhow::Result<()> {
    let output = &context.output;
    // On a platform, each job that makes the exit code 1 is an error in the run's issues; off
    // one, the report below says it.
    for report in reports {
        if let Some(annotation) = status_annotation(report) {
            output.annotate(&annotation)?;
        }
    }
    if output.is_json() {
        output.json(&json!({ "jobs": reports }))?;
    } else {
        if request.watch {
            output.text("\n")?;
        }
        output.text(&render_reports(reports))?;
        output.text(ledger_line)?;
    }
    Ok(())
}

/// Asks the service about each `(index, tracking id)` at once, [`POLL_CONCURRENCY`] at a time,
/// as `reconcile` polls: a slow job holds up no other. The answers come back in the order asked.
async fn ask_all(
    client: &Arc<FactoryClient>,
    asking: Vec<(usize, String)>,
) -> Vec<(usize, Result<JobState, FactoryError>)> {
    let permits = Arc::new(tokio::sync::Semaphore::new(POLL_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, tracking_id) in asking {
        let client = client.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (index, client.job(&tracking_id).await)
        });
    }
    let mut answers = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        answers.push(joined.expect("asking about a job does not panic"));
    }
    answers.sort_by_key(|(index, _)| *index);
    answers
}

/// Records what the service said about jobs the ledger knows. The ledger is only a cache of
/// the service here: if another run holds it, that run records the same states itself.
async fn record_states(context: &Context, reports: &[JobReport]) -> anyhow::Result<()> {
    let known: Vec<(&LedgerKey, &JobState)> = reports
        .iter()
        .filter_map(|report| Some((report.ledger.as_ref()?, report.state.as_ref()?)))
        .collect();
    if known.is_empty() {
        return Ok(());
    }
    let opened =
        LedgerWriter::open(&context.store, Duration::from_secs(5), "imagegen status").await;
    let writer = match opened {
        Ok(writer) => writer,
        Err(error) => {
            context
                .output
                .note(&format!("the ledger was not updated: {error}"))?;
            return Ok(());
        }
    };
    let now = Timestamp::now();
    writer
        .update(|ledger| {
            for (key, state) in &known {
                let Some(entry) = ledger.entry_mut(key) else {
                    continue;
                };
                if entry.tracks(&state.tracking_id) {
                    submission::record_state(entry, state, now);
                }
            }
        })
        .await?;
    writer.finish().await;
    Ok(())
}

/// The error annotation for a job that failed, was canceled or could not be read.
fn status_annotation(report: &JobReport) -> Option<Annotation> {
    let name = report
        .ledger
        .as_ref()
        .map(|key| format!(" ({key})"))
        .unwrap_or_default();
    let detail = match (&report.state, &report.error) {
        (Some(state), _) if without_images(state) => submission::no_images_message(&state.message),
        (Some(state), _)
            if matches!(state.status, RemoteStatus::Failed | RemoteStatus::Canceled) =>
        {
            if state.message.is_empty() {
                "Image Factory gave no message".to_string()
            } else {
                state.message.clone()
            }
        }
        (Some(_), _) => return None,
        (None, Some(error)) => error.clone(),
        (None, None) => "not asked".to_string(),
    };
    Some(
        Annotation::error(format!(
            "job {}{name}: {}: {detail}",
            report.tracking_id,
            report.summary()
        ))
        .titled(format!("job {} {}", report.tracking_id, report.summary())),
    )
}

/// 1 if any job failed, was canceled, is unknown or succeeded without images; else 2 if any is
/// still going; else 0.
fn status_exit_code(reports: &[JobReport]) -> Exit {
    let failed = reports.iter().any(|report| match &report.state {
        Some(state) => {
            matches!(state.status, RemoteStatus::Failed | RemoteStatus::Canceled)
                || without_images(state)
        }
        None => true,
    });
    if failed {
        Exit::Error
    } else if reports.iter().all(JobReport::is_terminal) {
        Exit::Ok
    } else {
        Exit::Pending
    }
}

fn seconds(timestamp: Timestamp) -> Timestamp {
    timestamp.round(jiff::Unit::Second).unwrap_or(timestamp)
}

fn render_reports(reports: &[JobReport]) -> String {
    let mut text = String::new();
    for report in reports {
        let name = report
            .ledger
            .as_ref()
            .map(|key| format!(" ({})", shown(key.name())))
            .unwrap_or_default();
        text.push_str(&format!(
            "{}{name}: {}\n",
            shown(&report.tracking_id),
            shown(&report.summary())
        ));
        if let Some(state) = &report.state {
            if let Some(created) = state.created_at {
                let updated = state.updated_at.unwrap_or(created);
                let (label, end) = if state.status.is_terminal() {
                    ("took", updated)
                } else {
                    ("so far", Timestamp::now())
                };
                let took = Duration::try_from(end.duration_since(created)).unwrap_or_default();
                text.push_str(&format!(
                    "  created {}, updated {} ({label} {})\n",
                    seconds(created),
                    seconds(updated),
                    duration::display(took)
                ));
            }
            for image in &state.images {
                text.push_str(&format!(
                    "  image   {}{}\n",
                    shown(&image.name),
                    image
                        .location
                        .as_deref()
                        .map(|location| format!(" ({})", shown(location)))
                        .unwrap_or_default()
                ));
            }
            if without_images(state) {
                text.push_str(&format!(
                    "  message {}\n",
                    shown_within(
                        &submission::no_images_message(&state.message),
                        SHOWN_MESSAGE_CHARS
                    )
                ));
            } else if !state.message.is_empty() {
                text.push_str(&format!(
                    "  message {}\n",
                    shown_within(&state.message, SHOWN_MESSAGE_CHARS)
                ));
            }
        }
        if let Some(error) = &report.error {
            text.push_str(&format!(
                "  error   {}\n",
                shown_within(error, SHOWN_MESSAGE_CHARS)
            ));
        }
    }
    text
}
