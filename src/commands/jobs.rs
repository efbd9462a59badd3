//! The commands that talk to Image Factory by hand: `status` follows jobs, `submit` sends one
//! payload file or every definition that uses some variables, recording them in the ledger.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::json;

use super::{Context, count, render_target, resolve_render_target};
use crate::catalog::Catalog;
use crate::diagnostics::Diagnostics;
use crate::duration;
use crate::exit;
use crate::factory::wire::{IDEMPOTENCY_KEY_HEADER, TokenVersion};
use crate::factory::{
    Credentials, FactoryClient, FactoryError, FactorySettings, JobState, RemoteStatus,
};
use crate::http::{RetryPolicy, Timeouts};
use crate::output::{SHOWN_MESSAGE_CHARS, Table, shown, shown_within};
use crate::platform::Annotation;
use crate::state::{LedgerKey, LedgerWriter};
use crate::submission::{self, Candidate, Outcome};

/// Where Image Factory and its sign-in are. People and pipelines give the credentials in the
/// environment only, never in flags.
#[derive(Debug, Clone)]
pub struct FactoryOptions {
    /// The service's base URL (`--factory-url`, `IMAGE_FACTORY_URL`).
    pub url: Option<String>,
    /// The Azure AD authority (`--authority`, `IMAGE_FACTORY_AUTHORITY`).
    pub authority: Option<String>,
    pub token_version: TokenVersion,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// Retries of a transient failure, after the first try.
    pub retries: u32,
    /// The identity to sign in with; `None` reads the `IMAGE_FACTORY_*` environment. Only the
    /// demo sets it, for the emulator it starts in-process.
    pub credentials: Option<Credentials>,
}

impl Default for FactoryOptions {
    fn default() -> Self {
        Self {
            url: None,
            authority: None,
            token_version: TokenVersion::default(),
            request_timeout: Timeouts::default().request,
            retries: RetryPolicy::default().max_attempts - 1,
            credentials: None,
        }
    }
}

impl FactoryOptions {
    pub fn settings(&self) -> Result<FactorySettings, FactoryError> {
        let url = self.url.as_deref().ok_or(FactoryError::MissingUrl)?;
        let mut settings = FactorySettings::new(url, self.authority.as_deref())?;
        settings.token_version = self.token_version;
        settings.timeouts.request = self.request_timeout;
        settings.retry.max_attempts = self.retries + 1;
        Ok(settings)
    }

    /// A client, with every setting checked before anything goes over the network.
    pub fn client(&self) -> Result<FactoryClient, FactoryError> {
        let credentials = match &self.credentials {
            Some(credentials) => credentials.clone(),
            None => Credentials::from_env()?,
        };
        FactoryClient::new(self.settings()?, credentials)
    }
}

pub(crate) fn runtime() -> anyhow::Result<&'static tokio::runtime::Runtime> {
    Ok(crate::runtime::shared()?)
}

/// What `imagegen status` is asked to do.
#[derive(Debug, Clone)]
pub struct StatusRequest {
    pub tracking_ids: Vec<String>,
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

/// `imagegen status <tracking-id>...`: each job's state; `--watch` polls until all ended.
pub fn status(context: &Context, request: StatusRequest) -> anyhow::Result<u8> {
    let client = request.factory.client()?;
    // The ledger only names the jobs it knows; without one, the ids speak for themselves.
    let runtime = runtime()?;
    let read = runtime.block_on(context.store.read());
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
    let output = &context.output;
    let mut reports: Vec<JobReport> = request
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
    let mut first = true;
    loop {
        for report in reports.iter_mut().filter(|report| !report.is_terminal()) {
            let before = report.summary();
            match runtime.block_on(client.job(&report.tracking_id)) {
                Ok(state) => {
                    if let RemoteStatus::Other(status) = &state.status {
                        tracing::warn!(
                            "job {}: status {status:?} is not one the contract names; \
                             taking it as not finished",
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
    // On a platform, each job that makes the exit code 1 is an error in the run's issues; off
    // one, the report below says it.
    for report in &reports {
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
        output.text(&render_reports(&reports))?;
        output.text(&ledger_line)?;
    }
    Ok(status_exit_code(&reports))
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
    let mut writer = match opened {
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
                // Only the job the ledger still tracks: an older job's news is not this entry's.
                if entry.tracking_id.as_deref() == Some(state.tracking_id.as_str()) {
                    submission::record_state(entry, state, now);
                }
            }
        })
        .await?;
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
fn status_exit_code(reports: &[JobReport]) -> u8 {
    let failed = reports.iter().any(|report| match &report.state {
        Some(state) => {
            matches!(state.status, RemoteStatus::Failed | RemoteStatus::Canceled)
                || without_images(state)
        }
        None => true,
    });
    if failed {
        exit::ERROR
    } else if reports.iter().all(JobReport::is_terminal) {
        exit::OK
    } else {
        exit::PENDING
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
    /// Submissions at once, with `--vars`.
    pub concurrency: usize,
    pub lock_timeout: Duration,
    pub factory: FactoryOptions,
}

/// `imagegen submit`: renders, records the intent, sends, records the tracking id.
pub fn submit(context: &Context, request: SubmitRequest) -> anyhow::Result<u8> {
    let (candidates, diagnostics) = match &request.target {
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
            (candidates, diagnostics)
        }
        SubmitTarget::Variables(names) => candidates_for_variables(context, names)?,
    };
    let output = &context.output;
    output.diagnostics(&diagnostics)?;
    if diagnostics.has_errors() {
        if output.is_json() {
            output.json(&json!({ "submitted": [], "diagnostics": diagnostics }))?;
        } else {
            output.note("nothing was submitted: fix the errors above first")?;
        }
        return Ok(exit::ERROR);
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
        return Ok(exit::OK);
    }
    let candidates: Vec<Candidate> = candidates
        .into_iter()
        .map(|candidate| candidate.allowing_same_name(request.allow_same_name))
        .collect();
    if request.dry_run {
        return print_dry_run(context, &request, &candidates);
    }
    let client = Arc::new(request.factory.client()?);
    let runtime = runtime()?;
    let writer = runtime
        .block_on(LedgerWriter::open(
            &context.store,
            request.lock_timeout,
            "imagegen submit",
        ))
        .context("cannot record the submission in the ledger, so nothing was submitted")?;
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    let candidates = candidates
        .into_iter()
        .map(|candidate| (candidate, request.force))
        .collect();
    let results = runtime.block_on(submission::submit_all(
        client,
        writer,
        candidates,
        request.concurrency,
    ))?;
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
        output.text(&render_outcomes(&results))?;
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
    }
    Ok(if results.iter().any(|(_, outcome)| outcome.is_problem()) {
        exit::ERROR
    } else {
        exit::OK
    })
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
    for (key, outcome) in results {
        let (tracking_id, result) = match outcome {
            Outcome::Submitted {
                tracking_id,
                status,
                existing,
                replaced,
            } => {
                let mut result = status.to_lowercase();
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
        // A tracking id is 36 characters wide in the contract: keep the column that wide even
        // when every id in this table is shorter (a `-`).
        table.row(&[key.name(), &format!("{:36}", shown(&tracking_id)), &result]);
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
) -> anyhow::Result<u8> {
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
    Ok(if refused { exit::ERROR } else { exit::OK })
}
