//! `imagegen reconcile`: the plan, printed with `--dry-run` or carried out, then the OSOB pull
//! request once every job has ended.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::json;

use super::factory_options::FactoryOptions;
use super::pr::{self as pr_step, PrRequest};
use super::{Context, count};
use crate::apply::submission::Outcome;
use crate::apply::{self, Applied, ApplyOptions, JobRow, Phase, Progress, WaitOptions};
use crate::catalog::Catalog;
use crate::diagnostics::Diagnostics;
use crate::duration;
use crate::exit::Exit;
use crate::factory::FactoryError;
use crate::osob::step::StepReport;
use crate::output::{self, Output, Table};
use crate::plan::{self, PlanOptions};
use crate::platform::{Annotation, markdown_cell};
use crate::selection::Selection;
use crate::state::{JobStatus, LedgerKey};
use crate::variables::VARIABLES_FILE;

/// What `imagegen reconcile` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct ReconcileRequest {
    /// Print the plan only; change nothing and call nothing.
    pub dry_run: bool,
    pub plan: PlanOptions,
    /// `--only` glob patterns over definition ids.
    pub only: Vec<String>,
    /// `--except` glob patterns over definition ids.
    pub except: Vec<String>,
    /// Stop after the jobs: no OSOB pull request.
    pub no_pr: bool,
    pub wait: Option<WaitOptions>,
    pub lock_timeout: Duration,
    pub factory: FactoryOptions,
    /// How the OSOB step runs once every job has ended.
    pub pr: PrRequest,
}

/// `reconcile --dry-run --output json`, borrowed from the plan rather than copied into a tree.
#[derive(Serialize)]
struct DryRunReport<'a> {
    dry_run: bool,
    state: String,
    summary: plan::Summary,
    plan: &'a plan::Plan,
    /// The OSOB change the plan leads to, or why it could not be shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    osob: Option<serde_json::Value>,
    diagnostics: &'a Diagnostics,
}

/// `imagegen reconcile`: plans from the committed files and the ledger; prints the plan with
/// `--dry-run`, carries it out otherwise.
pub fn reconcile(context: &Context, request: ReconcileRequest) -> anyhow::Result<Exit> {
    let selection = Selection::new(&request.only, &request.except)?;
    let store = &context.store;
    // The ledger is read while the catalog loads: both are large in a big repository.
    let (catalog, ledger) = std::thread::scope(|scope| {
        let ledger = request
            .dry_run
            .then(|| scope.spawn(|| store.read_blocking()));
        let catalog = Catalog::load(&context.repo);
        (
            catalog,
            ledger.map(|ledger| ledger.join().expect("reading the ledger does not panic")),
        )
    });
    let output = &context.output;
    if catalog.blocks_planning() {
        output.diagnostics(&catalog.diagnostics)?;
        if output.is_json() {
            output.json(&json!({
                "dry_run": request.dry_run,
                "plan": null,
                "diagnostics": catalog.diagnostics,
            }))?;
        } else {
            output.note(&format!(
                "nothing was planned: fix {VARIABLES_FILE} first, every definition depends on it"
            ))?;
        }
        return Ok(Exit::Error);
    }
    selection.check(&catalog.ids())?;
    let Some(ledger) = ledger else {
        return apply(context, &request, &catalog, &selection);
    };
    let ledger = ledger.context("cannot plan without the ledger")?;
    let plan = plan::plan_selected(&catalog, &ledger, request.plan, &selection);
    let osob = pr_step::preview(context, &catalog, &ledger, request.pr.osob_url.as_deref());
    output.diagnostics(&catalog.diagnostics)?;
    report_refusals(output, &plan)?;
    if output.is_json() {
        output.json(&DryRunReport {
            dry_run: true,
            state: context.store.describe(),
            summary: plan.summary(),
            plan: &plan,
            osob: osob.as_ref().map(|preview| match preview {
                Ok(text) => json!({ "preview": text }),
                Err(error) => json!({ "skipped": error }),
            }),
            diagnostics: &catalog.diagnostics,
        })?;
    } else {
        output.text(&plan::render_text(&plan))?;
        output.text(&super::ledger_line(context))?;
        match &osob {
            Some(Ok(preview)) => output.text(&format!("\n{preview}"))?,
            Some(Err(error)) => output.note(&format!("OSOB preview skipped: {error}"))?,
            None => {}
        }
        output.note("dry run: nothing was submitted and the ledger was not changed")?;
    }
    Ok(plan.exit_code().max(super::exit_for(&catalog.diagnostics)))
}

/// `reconcile` as JSON: the plan carried out, the jobs, and the OSOB step.
#[derive(Serialize)]
struct ApplyReport<'a> {
    dry_run: bool,
    state: String,
    summary: plan::Summary,
    plan: &'a plan::Plan,
    submitted: Vec<serde_json::Value>,
    jobs: &'a [JobRow],
    /// A list, not a map: a ledger key is an object, and JSON keys are strings.
    poll_errors: Vec<PollErrorReport<'a>>,
    /// What text output writes as `warning:` lines.
    warnings: Vec<String>,
    timed_out: bool,
    /// The OSOB step's report, or why it did not run.
    pr: serde_json::Value,
    diagnostics: &'a Diagnostics,
    exit_code: Exit,
}

/// A job the service could not be asked about, with the entry it belongs to.
#[derive(Serialize)]
struct PollErrorReport<'a> {
    ledger: &'a LedgerKey,
    #[serde(flatten)]
    error: &'a apply::PollError,
}

fn apply(
    context: &Context,
    request: &ReconcileRequest,
    catalog: &Catalog,
    selection: &Selection,
) -> anyhow::Result<Exit> {
    let output = &context.output;
    let client = Arc::new(request.factory.client()?);
    output.diagnostics(&catalog.diagnostics)?;
    let options = ApplyOptions {
        plan: request.plan,
        lock_timeout: request.lock_timeout,
        wait: request.wait,
    };
    let progress = Reporter::new(output);
    let runtime = crate::runtime::shared()?;
    let applied = runtime.block_on(apply::apply(
        catalog,
        &context.store,
        client,
        selection,
        &options,
        &progress,
    ));
    // Closed before anything else is printed, and also when the run stopped on an error.
    progress.close_group();
    let applied = applied?;
    let code = applied
        .exit_code()
        .max(super::exit_for(&catalog.diagnostics));
    let pr = osob_step(context, request, catalog, &applied)?;
    let code = match &pr {
        OsobStep::Ran(report) => code.max(report.exit_code()),
        OsobStep::Skipped(_) => code,
    };
    if output.platform.is_some() {
        output.summary(&render_summary(&applied, &pr, code))?;
    }
    if output.is_json() {
        print_json(context, catalog, &applied, &pr, code)?;
    } else {
        print_text(context, request, &applied, &pr, code)?;
    }
    Ok(code)
}

/// The OSOB step, once every job of the batch has ended: reviewers see one change, not one a
/// job.
fn osob_step(
    context: &Context,
    request: &ReconcileRequest,
    catalog: &Catalog,
    applied: &Applied,
) -> anyhow::Result<OsobStep> {
    if request.no_pr {
        return Ok(OsobStep::Skipped(Skipped::NoPr));
    }
    if applied.is_pending() {
        return Ok(OsobStep::Skipped(Skipped::JobsPending));
    }
    let output = &context.output;
    output.group_start("OSOB pull request")?;
    // The jobs are recorded whatever happens here: a failing OSOB step is reported with
    // them, not instead of them.
    let report = pr_step::publish(context, &request.pr, catalog, &applied.ledger)
        .unwrap_or_else(|error| StepReport::stopped(vec![format!("{error:#}")]));
    output.group_end()?;
    Ok(OsobStep::Ran(Box::new(report)))
}

/// The run as one JSON document; its problems as annotations on a platform.
fn print_json(
    context: &Context,
    catalog: &Catalog,
    applied: &Applied,
    pr: &OsobStep,
    code: Exit,
) -> anyhow::Result<()> {
    let output = &context.output;
    // Silent off a platform (the document carries them); its annotations on one.
    report_problems(output, applied)?;
    if let OsobStep::Ran(report) = pr {
        for problem in report.problems() {
            output.error(problem)?;
        }
    }
    let submitted = applied
        .outcomes
        .iter()
        .map(|(key, outcome)| json!({ "ledger": key, "result": outcome }))
        .collect();
    output.json(&ApplyReport {
        dry_run: false,
        state: context.store.describe(),
        summary: applied.plan.summary(),
        plan: &applied.plan,
        submitted,
        jobs: &applied.jobs,
        poll_errors: applied
            .poll_errors
            .iter()
            .map(|(ledger, error)| PollErrorReport { ledger, error })
            .collect(),
        warnings: applied
            .unnamed_statuses
            .iter()
            .map(|(key, unnamed)| unnamed.warning(key))
            .collect(),
        timed_out: applied.timed_out,
        pr: match pr {
            OsobStep::Ran(report) => pr_step::report_json(report)?,
            OsobStep::Skipped(reason) => json!({ "skipped": reason.to_string() }),
        },
        diagnostics: &catalog.diagnostics,
        exit_code: code,
    })?;
    Ok(())
}

/// The run for people: the job table, the problems, and the pull request.
fn print_text(
    context: &Context,
    request: &ReconcileRequest,
    applied: &Applied,
    pr: &OsobStep,
    code: Exit,
) -> anyhow::Result<()> {
    let output = &context.output;
    output.text(&render_applied(applied))?;
    output.text(&super::ledger_line(context))?;
    report_problems(output, applied)?;
    if applied.timed_out {
        output.note(
            "--timeout reached with jobs still being built: they go on, and the next reconcile \
             picks them up",
        )?;
    }
    match pr {
        OsobStep::Ran(report) => {
            if !report.problems().is_empty() {
                output.note("OSOB pull request:")?;
            } else {
                output.text("\n")?;
            }
            pr_step::print_brief(context, report)?;
        }
        OsobStep::Skipped(Skipped::JobsPending) => output.note(&format!(
            "OSOB pull request: not yet, {}",
            Skipped::JobsPending
        ))?,
        OsobStep::Skipped(Skipped::NoPr) => {}
    }
    if code == Exit::Pending && request.wait.is_none() {
        output.note(
            "jobs are still being built: run imagegen reconcile again later (the pipeline's \
             schedule does), or pass --wait",
        )?;
    }
    Ok(())
}

/// What became of the OSOB step of a run.
enum OsobStep {
    /// It ran: the pull request, or the problems that stopped it.
    Ran(Box<StepReport>),
    Skipped(Skipped),
}

/// Why a run left OSOB alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skipped {
    /// The run said `--no-pr`.
    NoPr,
    /// Some job of the batch is still being built: reviewers get one change, not one a job.
    JobsPending,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NoPr => "--no-pr",
            Self::JobsPending => {
                "jobs are still being built; a later run opens or updates the pull request"
            }
        })
    }
}

/// The run's problems: `error:` lines and notes in text output; on a platform each error is
/// an annotation, in either format. A failed job is annotated only on a platform: off one,
/// the table shows it with its message.
fn report_problems(output: &Output, applied: &Applied) -> anyhow::Result<()> {
    for (key, outcome) in &applied.outcomes {
        match outcome {
            Outcome::Submitted {
                tracking_id,
                existing: true,
                ..
            } => output.note(&format!(
                "{key}: sent again with the idempotency key of an interrupted submission; Image \
                 Factory handed back job {tracking_id}, no second build was started"
            ))?,
            Outcome::Rejected { message }
            | Outcome::Refused { message }
            | Outcome::Error { message } => {
                output.error_annotation(
                    Annotation::error(format!("{key}: not submitted: {message}"))
                        .in_file(key.file())
                        .titled(format!("{key} not submitted")),
                )?;
            }
            Outcome::AnswerLost { message } => output.note(&format!(
                "{key}: the submission's answer was lost ({message}); the next run sends it \
                 again with the same idempotency key"
            ))?,
            _ => {}
        }
    }
    report_refusals(output, &applied.plan)?;
    for (key, error) in &applied.poll_errors {
        let line = format!(
            "{key}: could not ask about job {}: {}",
            error.tracking_id, error.message
        );
        if error.transient {
            output.note(&line)?;
        } else {
            output.error_annotation(Annotation::error(line).in_file(key.file()))?;
        }
    }
    for (key, unnamed) in &applied.unnamed_statuses {
        output.warning_annotation(Annotation::warning(unnamed.warning(key)).in_file(key.file()))?;
    }
    let rejected = |key: &LedgerKey| {
        applied
            .outcomes
            .iter()
            .any(|(known, outcome)| known == key && matches!(outcome, Outcome::Rejected { .. }))
    };
    for job in &applied.jobs {
        // A rejected payload is recorded as failed: its "not submitted" error above says it.
        if job.status.is_unsuccessful() && !rejected(&job.key) {
            output.annotate(&failed_job_annotation(job))?;
        }
    }
    if applied
        .jobs
        .iter()
        .any(|job| job.status == JobStatus::NoImages)
    {
        output.note(
            "a job that reports Succeeded without naming its images is not built: every run asks \
             about it again and publishes it once the images are listed; if they never are, \
             look at the job (imagegen status ID) and build it again with imagegen reconcile \
             --retry-failed",
        )?;
    }
    if applied
        .jobs
        .iter()
        .any(|job| job.status.is_unsuccessful() && job.status != JobStatus::NoImages)
    {
        output.note(
            "a failed build is not submitted again until its payload changes: read the message \
             above (docs/first-responder.md says what each one means), fix the cause, then \
             change the definition or run imagegen reconcile --retry-failed",
        )?;
    }
    Ok(())
}

/// The definitions the plan refuses to submit (a changed payload that keeps its image names),
/// each an error naming what it keeps, what changed, and the way out.
fn report_refusals(output: &Output, plan: &plan::Plan) -> anyhow::Result<()> {
    for refusal in &plan.refused {
        let key = LedgerKey::Definition(refusal.definition.clone());
        output.error_annotation(
            Annotation::error(format!("{key}: not submitted: {}", refusal.message))
                .in_file(key.file())
                .titled(format!("{key} not submitted: it keeps its image name")),
        )?;
    }
    Ok(())
}

/// A failed or canceled job: the definition, the tracking id and the service's message.
fn failed_job_annotation(job: &JobRow) -> Annotation {
    Annotation::error(format!(
        "{}: job {} {}: {}",
        job.key,
        job.tracking_id.as_deref().unwrap_or("(no tracking id)"),
        job.status,
        job.message
            .as_deref()
            .filter(|message| !message.is_empty())
            .unwrap_or("Image Factory gave no message"),
    ))
    .in_file(job.key.file())
    .titled(format!("{} {}", job.key, job.status))
}

/// The run as markdown for the platform's summary: the job table, the failures with their
/// messages, and the pull request or why there is none. Made from the same rows as the text.
fn render_summary(applied: &Applied, pr: &OsobStep, code: Exit) -> String {
    let mut text = String::from("## imagegen reconcile\n\n");
    text.push_str(match code {
        Exit::Ok => "**Done**: nothing is pending.",
        Exit::Pending => "**Pending**: jobs are still being built; the schedule polls again.",
        _ => "**Failed**: see the problems below.",
    });
    text.push_str("\n\n");
    if applied.jobs.is_empty() && !applied.plan.refused.is_empty() {
        text.push_str(&format!(
            "Nothing submitted: {} refused; {} unchanged and built.\n",
            count(applied.plan.refused.len(), "definition"),
            applied.plan.summary().unchanged
        ));
    } else if applied.jobs.is_empty() {
        text.push_str(&format!(
            "Nothing to do: {} unchanged and built.\n",
            count(applied.plan.summary().unchanged, "definition")
        ));
    } else {
        text.push_str("| definition | status | tracking id | images | took |\n");
        text.push_str("| --- | --- | --- | --- | --- |\n");
        for job in &applied.jobs {
            text.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                markdown_cell(job.key.name()),
                status_cell(job),
                markdown_cell(job.tracking_id.as_deref().unwrap_or("-")),
                markdown_cell(&job.image_names.join(", ")),
                took_cell(job),
            ));
        }
        text.push_str(&format!("\n{}\n", counts_line(applied)));
    }
    let failures = summary_failures(applied);
    if !failures.is_empty() {
        text.push_str("\n### Failures\n\n");
        for failure in failures {
            text.push_str(&format!("- {failure}\n"));
        }
    }
    text.push_str("\n### Pull request\n\n");
    text.push_str(&summary_pull_request(pr));
    text
}

/// Every failure of the run, one markdown line each: failed jobs, refused or unsent payloads,
/// jobs that could not be asked about.
fn summary_failures(applied: &Applied) -> Vec<String> {
    let mut failures = Vec::new();
    for job in applied
        .jobs
        .iter()
        .filter(|job| job.status.is_unsuccessful())
    {
        failures.push(format!(
            "**{}** (job {}) {}: {}",
            markdown_cell(job.key.name()),
            markdown_cell(job.tracking_id.as_deref().unwrap_or("-")),
            job.status,
            markdown_cell(job.message.as_deref().unwrap_or("no message"))
        ));
    }
    for refusal in &applied.plan.refused {
        failures.push(format!(
            "**{}**: not submitted: {}",
            markdown_cell(&refusal.definition),
            markdown_cell(&refusal.message)
        ));
    }
    for (key, outcome) in &applied.outcomes {
        if let Outcome::Rejected { message }
        | Outcome::Refused { message }
        | Outcome::Error { message } = outcome
        {
            failures.push(format!(
                "**{}**: not submitted: {}",
                markdown_cell(key.name()),
                markdown_cell(message)
            ));
        }
    }
    for (key, error) in applied.poll_errors.iter().filter(|(_, e)| !e.transient) {
        failures.push(format!(
            "**{}**: could not ask about job {}: {}",
            markdown_cell(key.name()),
            markdown_cell(&error.tracking_id),
            markdown_cell(&error.message)
        ));
    }
    failures
}

/// The pull request as the summary links it, or why there is none.
fn summary_pull_request(pr: &OsobStep) -> String {
    match pr {
        OsobStep::Ran(report) => match report.pull_request() {
            Some(pull_request) => format!(
                "[#{}]({}): {}\n",
                pull_request.number,
                pull_request.url,
                markdown_cell(&pr_step::headline(report))
            ),
            None => format!(
                "No pull request: {}\n",
                markdown_cell(&pr_step::headline(report))
            ),
        },
        OsobStep::Skipped(reason) => {
            format!("No pull request: {}\n", markdown_cell(&reason.to_string()))
        }
    }
}

fn status_cell(job: &JobRow) -> String {
    if job.adopted {
        "adopted".to_string()
    } else {
        job.status.to_string()
    }
}

fn took_cell(job: &JobRow) -> String {
    let took = job.duration.map(duration::display).unwrap_or_default();
    if job.status.is_pending() && !took.is_empty() {
        format!("{took} so far")
    } else {
        took
    }
}

/// `2 submitted by this run; 1 failed, 1 succeeded; 14 unchanged`
fn counts_line(applied: &Applied) -> String {
    let submitted = applied
        .outcomes
        .iter()
        .filter(|(_, outcome)| matches!(outcome, Outcome::Submitted { .. }))
        .count();
    let mut by_status: BTreeMap<JobStatus, usize> = BTreeMap::new();
    for job in &applied.jobs {
        *by_status.entry(job.status).or_default() += 1;
    }
    let statuses: Vec<String> = by_status
        .iter()
        .map(|(status, n)| format!("{n} {status}"))
        .collect();
    format!(
        "{submitted} submitted by this run; {}; {} unchanged",
        statuses.join(", "),
        applied.plan.summary().unchanged
    )
}

fn render_applied(applied: &Applied) -> String {
    let refused = applied.plan.refused.len();
    if applied.jobs.is_empty() && refused > 0 {
        return format!(
            "nothing submitted: {} refused (see below); {} unchanged and built\n",
            count(refused, "definition"),
            applied.plan.summary().unchanged
        );
    }
    if applied.jobs.is_empty() {
        return format!(
            "nothing to do: {} unchanged and built\n",
            count(applied.plan.summary().unchanged, "definition")
        );
    }
    format!("{}\n{}\n", render_jobs(&applied.jobs), counts_line(applied))
}

/// The summary table: definition, status, tracking id, images, duration; messages below.
fn render_jobs(jobs: &[JobRow]) -> String {
    let mut table = Table::new(&["definition", "status", "tracking id", "images", "took"]);
    // As wide as the widest status, so the column stays put from one run to the next.
    table.min_width(1, JobStatus::Submitting.as_str().len());
    for job in jobs {
        table.row(&[
            job.key.name(),
            &status_cell(job),
            job.tracking_id.as_deref().unwrap_or("-"),
            &job.image_names.join(", "),
            &took_cell(job),
        ]);
        if let Some(message) = job
            .message
            .as_deref()
            .filter(|_| job.status.is_unsuccessful())
        {
            table.detail(message);
        }
    }
    table.render()
}

/// Shows progress while waiting: a line per job on a terminal, redrawn in place; otherwise (a
/// pipeline's log) one line per change of state, each phase in a collapsible group on a
/// platform.
struct Reporter {
    quiet: bool,
    bars: Option<Bars>,
    output: Output,
    /// A platform group is open; groups do not nest, so the next phase closes it first.
    group_open: Mutex<bool>,
}

struct Bars {
    multi: indicatif::MultiProgress,
    jobs: Mutex<BTreeMap<LedgerKey, indicatif::ProgressBar>>,
    /// The widest name shown so far: each job is followed on its own schedule, so bars come
    /// one at a time and are padded to this to stay in columns.
    name_width: std::sync::atomic::AtomicUsize,
}

impl Reporter {
    fn new(output: &Output) -> Self {
        let quiet = output.quiet;
        let bars = (!quiet && std::io::stderr().is_terminal()).then(|| Bars {
            multi: indicatif::MultiProgress::new(),
            jobs: Mutex::new(BTreeMap::new()),
            name_width: std::sync::atomic::AtomicUsize::new(0),
        });
        Self {
            quiet,
            bars,
            output: output.clone(),
            group_open: Mutex::new(false),
        }
    }

    /// Closes the open group, if any.
    fn close_group(&self) {
        let mut open = self
            .group_open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if std::mem::take(&mut *open) {
            // Like the progress lines: a log that cannot be written does not stop the run.
            let _ = self.output.group_end();
        }
    }

    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        let stamp = Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or_else(|_| Timestamp::now());
        let line = format!("{stamp}  {text}");
        match &self.bars {
            Some(bars) => {
                let _ = bars.multi.println(line);
            }
            None => {
                let _ = writeln!(anstream::stderr().lock(), "{line}");
            }
        }
    }
}

fn describe(job: &JobRow) -> String {
    format!(
        "{}{}",
        job.status,
        job.tracking_id
            .as_deref()
            .map(|id| format!(" (job {id})"))
            .unwrap_or_default()
    )
}

impl Progress for Reporter {
    fn phase(&self, phase: Phase) {
        if self.output.platform.is_none() {
            return;
        }
        self.close_group();
        let title = match phase {
            Phase::Polling { jobs } => format!("Polling {} in flight", count(jobs, "job")),
            Phase::Submitting { payloads } => format!("Submitting {}", count(payloads, "payload")),
            Phase::Waiting { jobs } => format!("Waiting for {} to end", count(jobs, "job")),
        };
        if self.output.group_start(&title).is_ok() {
            *self
                .group_open
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        }
    }

    fn changed(&self, job: &JobRow, from: JobStatus) {
        let mut text = format!("{}: {from} -> {}", job.key, describe(job));
        if let Some(message) = job
            .message
            .as_deref()
            .filter(|_| job.status.is_unsuccessful())
        {
            text.push_str(&format!(": {message}"));
        }
        self.line(&text);
        if let Some(bars) = &self.bars
            && !job.status.is_pending()
            && let Some(bar) = bars
                .jobs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&job.key)
        {
            bar.finish_and_clear();
        }
    }

    fn waiting(&self, jobs: &[JobRow], next_poll: Duration) {
        let Some(bars) = &self.bars else {
            return;
        };
        let style = indicatif::ProgressStyle::with_template("{spinner} {prefix}  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        let mut shown = bars
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let padded = |key: &LedgerKey, width: usize| {
            let name = output::shown(key.name());
            let pad = width.saturating_sub(name.chars().count());
            format!("{name}{}", " ".repeat(pad))
        };
        let widest = jobs
            .iter()
            .map(|job| output::shown(job.key.name()).chars().count())
            .max()
            .unwrap_or(0);
        let before = bars
            .name_width
            .fetch_max(widest, std::sync::atomic::Ordering::Relaxed);
        let width = before.max(widest);
        if widest > before {
            for (key, bar) in shown.iter() {
                bar.set_prefix(padded(key, width));
            }
        }
        for job in jobs {
            let bar = shown.entry(job.key.clone()).or_insert_with(|| {
                let bar = bars.multi.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.enable_steady_tick(Duration::from_millis(200));
                bar
            });
            bar.set_prefix(padded(&job.key, width));
            bar.set_message(format!(
                "{}{}; next look in {}",
                describe(job),
                job.duration
                    .map(|took| format!(", {} so far", duration::display(took)))
                    .unwrap_or_default(),
                duration::display(next_poll)
            ));
        }
    }

    fn poll_failed(&self, key: &LedgerKey, tracking_id: &str, error: &FactoryError) {
        self.line(&format!(
            "{key}: could not ask about job {tracking_id}: {error}{}",
            if error.is_transient() {
                "; asking again at the next poll"
            } else {
                ""
            }
        ));
    }

    fn finished(&self) {
        if let Some(bars) = &self.bars {
            for (_, bar) in std::mem::take(
                &mut *bars
                    .jobs
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            ) {
                bar.finish_and_clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(jobs: Vec<JobRow>, outcomes: Vec<(LedgerKey, Outcome)>) -> Applied {
        Applied {
            plan: plan::Plan::default(),
            outcomes,
            jobs,
            poll_errors: BTreeMap::new(),
            unnamed_statuses: BTreeMap::new(),
            timed_out: false,
            ledger: crate::state::Ledger::default(),
        }
    }

    fn job(id: &str, status: JobStatus, message: Option<&str>) -> JobRow {
        JobRow {
            key: LedgerKey::Definition(id.to_string()),
            status,
            tracking_id: Some(format!("job-{id}")),
            image_names: vec![format!("Image-{id}")],
            duration: Some(Duration::from_secs(38 * 60)),
            message: message.map(str::to_string),
            adopted: false,
        }
    }

    #[test]
    fn the_summary_tells_the_jobs_the_failures_and_why_there_is_no_pull_request() {
        let applied = applied(
            vec![
                job("a", JobStatus::Succeeded, None),
                job("b", JobStatus::Failed, Some("exit | code\n1603")),
            ],
            Vec::new(),
        );
        let markdown = render_summary(&applied, &OsobStep::Skipped(Skipped::NoPr), Exit::Error);
        assert_eq!(
            markdown,
            "## imagegen reconcile\n\n\
             **Failed**: see the problems below.\n\n\
             | definition | status | tracking id | images | took |\n\
             | --- | --- | --- | --- | --- |\n\
             | a | succeeded | job-a | Image-a | 38m |\n\
             | b | failed | job-b | Image-b | 38m |\n\
             \n0 submitted by this run; 1 succeeded, 1 failed; 0 unchanged\n\
             \n### Failures\n\n\
             - **b** (job job-b) failed: exit \\| code<br>1603\n\
             \n### Pull request\n\n\
             No pull request: --no-pr\n"
        );
    }

    #[test]
    fn a_failed_job_annotation_names_the_definition_the_job_and_the_message() {
        let annotation = failed_job_annotation(&job("vs/a", JobStatus::Failed, Some("boom")));
        assert_eq!(annotation.message, "vs/a: job job-vs/a failed: boom");
        assert_eq!(annotation.file.as_deref(), Some("definitions/vs/a.json"));
        assert_eq!(annotation.title.as_deref(), Some("vs/a failed"));
    }
}
