//! The plan: what a reconcile would do, decided by one pure function of the rendered definitions
//! and the ledger. `reconcile --dry-run` prints it; applying carries out this same plan, so the
//! two can never disagree. Also the plan's text form (its JSON form is its serde shape).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use crate::catalog::{Catalog, parallel_map};
use crate::definitions::{PayloadHash, Rendered};
use crate::exit::Exit;
use crate::selection::Selection;
pub use crate::state::SameName;
use crate::state::{JobStatus, Ledger, LedgerEntry};
use crate::variables::{self, ValueChange};

/// Choices that change what is planned.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    /// Submit definitions whose payload did not change (built or failed) too. Jobs still in
    /// flight for the same payload are left alone: a second build of it would only race them.
    pub force: bool,
    /// Submit again definitions whose job failed or was canceled for the payload still
    /// committed (otherwise only a changed payload is tried again).
    pub retry_failed: bool,
    /// Submit a changed payload even when it keeps image names its last submission used
    /// (otherwise it is refused: see [`same_name`]).
    pub allow_same_name: bool,
}

/// Why a definition is to be submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubmitReason {
    NeverSubmitted,
    PayloadChanged,
    Forced,
    RetryFailed,
}

impl SubmitReason {
    pub fn describe(self) -> &'static str {
        match self {
            Self::NeverSubmitted => "never submitted",
            Self::PayloadChanged => "payload changed",
            Self::Forced => "forced",
            Self::RetryFailed => "retrying the failed job",
        }
    }
}

/// Why a definition is refused: the names it keeps, what changed, and how to fix it.
pub fn refusal(same_name: &SameName) -> String {
    format!(
        "the payload changed but keeps the image name{} {}, which its last \
         submission already used ({}); rebuilding it would put new content under a name OSOB \
         already uses, reaching the queues with no review. Put a version in CustomImageName (a \
         placeholder for a variable that changes with the content), or run again with \
         --allow-same-name to rebuild it under the same name on purpose",
        if same_name.image_names.len() == 1 {
            ""
        } else {
            "s"
        },
        same_name.image_names.join(", "),
        same_name.changed()
    )
}

/// Whether a payload (`hash`, naming `image_names`, rendered with `variables`) would build
/// under names that the last submission recorded in `entry` used for another payload. The
/// same payload sent again (`--force`, `--retry-failed`) is not this case.
pub fn same_name(
    entry: Option<&LedgerEntry>,
    hash: &PayloadHash,
    image_names: &[String],
    variables: &BTreeMap<String, String>,
) -> Option<SameName> {
    let entry = entry?;
    if &entry.payload_hash == hash {
        return None;
    }
    let previous = entry_image_names(entry);
    let kept: Vec<String> = image_names
        .iter()
        .filter(|name| previous.contains(name))
        .cloned()
        .collect();
    (!kept.is_empty()).then(|| SameName {
        image_names: kept,
        variable_changes: variables::changes(&entry.variables, variables),
    })
}

/// A job the ledger knows, by its tracking id and status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRef {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_id: Option<String>,
    pub status: JobStatus,
}

/// A definition to submit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Submission {
    pub definition: String,
    pub reason: SubmitReason,
    pub payload_hash: PayloadHash,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_hash: Option<PayloadHash>,
    /// The images the new job will produce.
    pub image_names: Vec<String>,
    /// The images of the last submission, if any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub previous_image_names: Vec<String>,
    /// The variables whose values differ from the last submission.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub variable_changes: Vec<ValueChange>,
    /// Unified diff of the last submitted payload against the rendered one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// The last job, when the new submission supersedes one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<JobRef>,
    /// The names kept from the last submission, when `--allow-same-name` lets it through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_name: Option<SameName>,
}

/// A changed payload not submitted because it keeps image names its last submission used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    pub definition: String,
    #[serde(flatten)]
    pub same_name: SameName,
    /// The error for people: what is kept, what changed, and how to fix it.
    pub message: String,
}

/// A job still being built (or whose submission's answer was never recorded).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingJob {
    pub definition: String,
    #[serde(flatten)]
    pub job: JobRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<Timestamp>,
    pub image_names: Vec<String>,
}

/// A job that failed or was canceled for the payload still committed: not submitted again until
/// the payload changes, or by force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedJob {
    pub definition: String,
    #[serde(flatten)]
    pub job: JobRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
}

/// A ledger entry whose definition is no longer committed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetiredEntry {
    pub definition: String,
    #[serde(flatten)]
    pub job: JobRef,
}

/// One variable change, with every definition to submit because of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VariableChange {
    pub name: String,
    pub old: Option<String>,
    pub new: Option<String>,
    pub definitions: Vec<String>,
}

/// Everything a reconcile would do, as plain data.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Plan {
    pub variable_changes: Vec<VariableChange>,
    pub submit: Vec<Submission>,
    pub pending: Vec<PendingJob>,
    pub failed: Vec<FailedJob>,
    /// Changed payloads that keep their image names, refused without `--allow-same-name`.
    pub refused: Vec<Refusal>,
    pub unchanged: Vec<String>,
    /// Definitions with errors: nothing is planned for them.
    pub not_planned: Vec<String>,
    pub retired: Vec<RetiredEntry>,
}

/// The plan's counts, for a summary line and for machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub to_submit: usize,
    pub pending: usize,
    pub failed: usize,
    pub refused: usize,
    pub unchanged: usize,
    pub not_planned: usize,
    pub retired: usize,
}

impl Plan {
    pub fn summary(&self) -> Summary {
        Summary {
            to_submit: self.submit.len(),
            pending: self.pending.len(),
            failed: self.failed.len(),
            refused: self.refused.len(),
            unchanged: self.unchanged.len(),
            not_planned: self.not_planned.len(),
            retired: self.retired.len(),
        }
    }

    /// Keeps only the definitions `keep` selects (`--only`, `--except`).
    pub fn select(&mut self, keep: impl Fn(&str) -> bool) {
        self.submit
            .retain(|submission| keep(&submission.definition));
        self.pending.retain(|job| keep(&job.definition));
        self.failed.retain(|job| keep(&job.definition));
        self.refused.retain(|refusal| keep(&refusal.definition));
        self.unchanged.retain(|id| keep(id));
        self.not_planned.retain(|id| keep(id));
        self.retired.retain(|entry| keep(&entry.definition));
        self.variable_changes = summarize_variable_changes(&self.submit);
    }

    /// Nothing to submit and nothing in flight.
    pub fn is_settled(&self) -> bool {
        self.submit.is_empty() && self.pending.is_empty()
    }

    /// 1 when a job failed or a submission is refused, 2 when anything is to submit or
    /// pending, 0 otherwise (see ARCHITECTURE.md, "Exit codes").
    pub fn exit_code(&self) -> Exit {
        if !self.failed.is_empty() || !self.refused.is_empty() {
            Exit::Error
        } else if !self.is_settled() {
            Exit::Pending
        } else {
            Exit::Ok
        }
    }
}

/// [`plan`], narrowed to the definitions `selection` chooses (`--only`, `--except`).
pub fn plan_selected(
    catalog: &Catalog,
    ledger: &Ledger,
    options: PlanOptions,
    selection: &Selection,
) -> Plan {
    let mut plan = plan(catalog, ledger, options);
    if !selection.is_all() {
        plan.select(|id| selection.matches(id));
    }
    plan
}

/// Decides what to do for every definition of the catalog, given the ledger. Pure.
pub fn plan(catalog: &Catalog, ledger: &Ledger, options: PlanOptions) -> Plan {
    let mut plan = Plan {
        not_planned: catalog.invalid.iter().cloned().collect(),
        ..Plan::default()
    };
    // Each definition is planned on its own (diffs are the costly part), then gathered in order.
    let decisions = parallel_map(&catalog.rendered, |rendered| {
        decide(rendered, ledger.definitions.get(&rendered.id), options)
    });
    for decision in decisions {
        match decision {
            Decision::Submit(submission) => plan.submit.push(*submission),
            Decision::Pending(job) => plan.pending.push(job),
            Decision::Failed(job) => plan.failed.push(job),
            Decision::Refused(refusal) => plan.refused.push(refusal),
            Decision::Unchanged(id) => plan.unchanged.push(id),
        }
    }
    let committed: BTreeSet<&str> = catalog
        .rendered
        .iter()
        .map(|rendered| rendered.id.as_str())
        .chain(catalog.invalid.iter().map(String::as_str))
        .collect();
    plan.retired = ledger
        .definitions
        .iter()
        .filter(|(id, _)| !committed.contains(id.as_str()))
        .map(|(id, entry)| RetiredEntry {
            definition: id.clone(),
            job: job_ref(entry),
        })
        .collect();
    plan.variable_changes = summarize_variable_changes(&plan.submit);
    plan
}

/// What the plan does with one definition.
enum Decision {
    Submit(Box<Submission>),
    Pending(PendingJob),
    Failed(FailedJob),
    Refused(Refusal),
    Unchanged(String),
}

fn decide(rendered: &Rendered, entry: Option<&LedgerEntry>, options: PlanOptions) -> Decision {
    let Some(entry) = entry else {
        return Decision::Submit(Box::new(Submission {
            definition: rendered.id.clone(),
            reason: SubmitReason::NeverSubmitted,
            payload_hash: rendered.hash.clone(),
            previous_hash: None,
            image_names: rendered.image_names.clone(),
            previous_image_names: Vec::new(),
            variable_changes: Vec::new(),
            diff: None,
            replaces: None,
            same_name: None,
        }));
    };
    let changed = entry.payload_hash != rendered.hash;
    let reason = if changed {
        SubmitReason::PayloadChanged
    } else if options.force && !entry.status.is_pending() {
        SubmitReason::Forced
    } else if options.retry_failed && entry.status.is_unsuccessful() {
        SubmitReason::RetryFailed
    } else if entry.status.is_pending() {
        return Decision::Pending(PendingJob {
            definition: rendered.id.clone(),
            job: job_ref(entry),
            submitted_at: entry.submitted_at,
            image_names: rendered.image_names.clone(),
        });
    } else if entry.status.is_unsuccessful() {
        return Decision::Failed(FailedJob {
            definition: rendered.id.clone(),
            job: job_ref(entry),
            message: entry.message.clone(),
            completed_at: entry.completed_at,
        });
    } else {
        return Decision::Unchanged(rendered.id.clone());
    };
    let same_name = same_name(
        Some(entry),
        &rendered.hash,
        &rendered.image_names,
        &rendered.variables,
    );
    if let Some(same_name) = &same_name
        && !options.allow_same_name
    {
        return Decision::Refused(Refusal {
            definition: rendered.id.clone(),
            message: refusal(same_name),
            same_name: same_name.clone(),
        });
    }
    Decision::Submit(Box::new(Submission {
        definition: rendered.id.clone(),
        reason,
        payload_hash: rendered.hash.clone(),
        previous_hash: Some(entry.payload_hash.clone()),
        image_names: rendered.image_names.clone(),
        previous_image_names: entry_image_names(entry),
        variable_changes: variables::changes(&entry.variables, &rendered.variables),
        diff: changed
            .then(|| payload_diff(&entry.payload.to_value(), &rendered.payload.to_value())),
        replaces: Some(job_ref(entry)),
        same_name,
    }))
}

fn job_ref(entry: &LedgerEntry) -> JobRef {
    JobRef {
        tracking_id: entry.tracking_id.clone(),
        status: entry.status,
    }
}

/// The images a ledger entry stands for: the ones built, or else the ones its rendered payload
/// names.
pub fn entry_image_names(entry: &LedgerEntry) -> Vec<String> {
    if !entry.image_names.is_empty() {
        return entry.image_names.clone();
    }
    crate::definitions::custom_image_names(&entry.payload.to_value())
}

/// A unified diff of two payloads, each pretty-printed with its key order kept.
pub fn payload_diff(old: &Value, new: &Value) -> String {
    let pretty = |value: &Value| {
        let mut text = serde_json::to_string_pretty(value).expect("a JSON value serializes");
        text.push('\n');
        text
    };
    let (old, new) = (pretty(old), pretty(new));
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header("last submitted", "rendered now")
        .to_string()
}

fn summarize_variable_changes(submissions: &[Submission]) -> Vec<VariableChange> {
    let mut grouped: BTreeMap<&ValueChange, Vec<String>> = BTreeMap::new();
    for submission in submissions {
        for change in &submission.variable_changes {
            grouped
                .entry(change)
                .or_default()
                .push(submission.definition.clone());
        }
    }
    grouped
        .into_iter()
        .map(|(change, definitions)| VariableChange {
            name: change.name.clone(),
            old: change.old.clone(),
            new: change.new.clone(),
            definitions,
        })
        .collect()
}

const HEADING: Style = Style::new().bold();
const ID: Style = Style::new().bold();
const SUBMIT: Style = AnsiColor::Green.on_default().bold();
const PENDING: Style = AnsiColor::Cyan.on_default();
const FAILED: Style = AnsiColor::Red.on_default().bold();
const DIM: Style = Style::new().dimmed();
const REMOVED: Style = AnsiColor::Red.on_default();
const ADDED: Style = AnsiColor::Green.on_default();
const HUNK: Style = AnsiColor::Cyan.on_default();

fn value_or_unset(value: Option<&String>) -> std::borrow::Cow<'_, str> {
    value.map_or("(not used)".into(), |value| crate::output::shown(value))
}

fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// The plan for people, with ANSI styles (the output stream removes them when it must): each
/// part that has anything to say, then the counts.
pub fn render_text(plan: &Plan) -> String {
    let mut out = String::new();
    let w = &mut out;
    write_variable_changes(w, plan);
    write_submissions(w, plan);
    write_pending(w, plan);
    write_failed(w, plan);
    write_refused(w, plan);
    write_left_out(w, plan);
    write_counts(w, plan);
    out
}

/// The variables whose values changed, each with the definitions it affects.
fn write_variable_changes(w: &mut String, plan: &Plan) {
    if !plan.variable_changes.is_empty() {
        let _ = writeln!(
            w,
            "{HEADING}Variables changed since the last submission:{HEADING:#}"
        );
        let mut table = crate::output::Table::default();
        table.indent(2);
        for change in &plan.variable_changes {
            table.row(&[
                change.name.as_str(),
                &format!(
                    "{} -> {}  {DIM}({}){DIM:#}",
                    value_or_unset(change.old.as_ref()),
                    value_or_unset(change.new.as_ref()),
                    plural(change.definitions.len(), "definition", "definitions"),
                ),
            ]);
        }
        w.push_str(&table.render());
        let _ = writeln!(w);
    }
}

/// What is to be submitted, each with why and what changes.
fn write_submissions(w: &mut String, plan: &Plan) {
    if !plan.submit.is_empty() {
        let _ = writeln!(w, "{HEADING}To submit ({}):{HEADING:#}", plan.submit.len());
        for submission in &plan.submit {
            write_submission(w, submission);
        }
        let _ = writeln!(w);
    }
}

/// The jobs in flight, polled before anything is planned.
fn write_pending(w: &mut String, plan: &Plan) {
    if !plan.pending.is_empty() {
        let _ = writeln!(
            w,
            "{HEADING}Pending jobs ({}), to be polled:{HEADING:#}",
            plan.pending.len()
        );
        for job in &plan.pending {
            let submitted = job
                .submitted_at
                .map(|at| format!(", submitted {at}"))
                .unwrap_or_default();
            write_job(w, &job.definition, &job.job, PENDING, &submitted);
        }
        let _ = writeln!(w);
    }
}

/// The failed jobs, left alone until their payload changes or a person asks again.
fn write_failed(w: &mut String, plan: &Plan) {
    if !plan.failed.is_empty() {
        let _ = writeln!(
            w,
            "{HEADING}Failed jobs ({}), not resubmitted until the payload changes (--retry-failed or --force):{HEADING:#}",
            plan.failed.len()
        );
        for job in &plan.failed {
            let message = job
                .message
                .as_deref()
                .filter(|message| !message.is_empty())
                .map(|message| format!(": {message}"))
                .unwrap_or_default();
            write_job(w, &job.definition, &job.job, FAILED, &message);
        }
        let _ = writeln!(w);
    }
}

/// The changed payloads refused because they keep their image names, and the way out.
fn write_refused(w: &mut String, plan: &Plan) {
    if !plan.refused.is_empty() {
        let _ = writeln!(
            w,
            "{FAILED}Refused: changed payloads that keep their image names ({}):{FAILED:#}",
            plan.refused.len()
        );
        for refusal in &plan.refused {
            let _ = writeln!(
                w,
                "  {FAILED}!{FAILED:#} {ID}{}{ID:#}  keeps {}; changed: {}",
                refusal.definition,
                refusal.same_name.image_names.join(", "),
                refusal.same_name.changed()
            );
        }
        let _ = writeln!(
            w,
            "  Put a version in CustomImageName (a placeholder for a variable that changes with \
             the content), or pass --allow-same-name to rebuild under the same name on purpose."
        );
        let _ = writeln!(w);
    }
}

/// Definitions left out with errors, ledger entries no longer defined, and how many are
/// unchanged.
fn write_left_out(w: &mut String, plan: &Plan) {
    if !plan.not_planned.is_empty() {
        let _ = writeln!(
            w,
            "{FAILED}Not planned because of the errors reported ({}):{FAILED:#} {}",
            plan.not_planned.len(),
            plan.not_planned.join(", ")
        );
    }
    if !plan.retired.is_empty() {
        let retired: Vec<String> = plan
            .retired
            .iter()
            .map(|entry| format!("{} ({})", entry.definition, entry.job.status))
            .collect();
        let _ = writeln!(
            w,
            "In the ledger but no longer defined ({}): {}",
            plan.retired.len(),
            retired.join(", ")
        );
    }
    if !plan.unchanged.is_empty() {
        let _ = writeln!(
            w,
            "{DIM}Unchanged and built: {}{DIM:#}",
            plural(plan.unchanged.len(), "definition", "definitions")
        );
    }
}

/// `Plan: 2 to submit, 1 pending, 0 failed, 14 unchanged.`
fn write_counts(w: &mut String, plan: &Plan) {
    let summary = plan.summary();
    let _ = writeln!(
        w,
        "{HEADING}Plan:{HEADING:#} {} to submit, {} pending, {} failed, {}{} unchanged.",
        summary.to_submit,
        summary.pending,
        summary.failed,
        if summary.refused > 0 {
            format!("{} refused, ", summary.refused)
        } else {
            String::new()
        },
        summary.unchanged
    );
}

/// One job a line: definition, status, tracking id, then `suffix`.
fn write_job(w: &mut String, definition: &str, job: &JobRef, status_style: Style, suffix: &str) {
    let _ = writeln!(
        w,
        "  {ID}{definition}{ID:#}  {status_style}{}{status_style:#}  {}{suffix}",
        job.status,
        describe_tracking(job),
    );
}

fn describe_tracking(job: &JobRef) -> String {
    match &job.tracking_id {
        Some(id) => format!("tracking id {}", crate::output::shown(id)),
        None if job.status == JobStatus::Submitting => {
            "no tracking id recorded: the submission is resent with its idempotency key".into()
        }
        None => "no tracking id".into(),
    }
}

fn write_submission(w: &mut String, submission: &Submission) {
    let _ = writeln!(
        w,
        "  {SUBMIT}+{SUBMIT:#} {ID}{}{ID:#}  {}",
        submission.definition,
        submission.reason.describe()
    );
    let previous = &submission.previous_image_names;
    for (index, name) in submission.image_names.iter().enumerate() {
        match previous.get(index).filter(|old| *old != name) {
            Some(old) => {
                let _ = writeln!(w, "      image {old} -> {name}");
            }
            None => {
                let _ = writeln!(w, "      image {name}");
            }
        }
    }
    for change in &submission.variable_changes {
        let _ = writeln!(
            w,
            "      {} {} -> {}",
            change.name,
            value_or_unset(change.old.as_ref()),
            value_or_unset(change.new.as_ref())
        );
    }
    if let Some(same_name) = &submission.same_name {
        let _ = writeln!(
            w,
            "      {FAILED}keeps the image name {} (allowed by --allow-same-name){FAILED:#}",
            same_name.image_names.join(", ")
        );
    }
    if let Some(job) = &submission.replaces
        && job.status.is_pending()
    {
        let _ = writeln!(
            w,
            "      {PENDING}supersedes the {} job ({}){PENDING:#}",
            job.status,
            describe_tracking(job)
        );
    }
    if let Some(diff) = &submission.diff {
        for line in diff.lines() {
            let style = if line.starts_with("@@") {
                HUNK
            } else if line.starts_with("---") || line.starts_with("+++") {
                HEADING
            } else if line.starts_with('-') {
                REMOVED
            } else if line.starts_with('+') {
                ADDED
            } else {
                Style::new()
            };
            let _ = writeln!(w, "      {style}{line}{style:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{DefinitionSource, Sources};

    fn catalog(variables: &str, ids: &[&str]) -> Catalog {
        let definitions = ids
            .iter()
            .map(|id| DefinitionSource {
                id: id.to_string(),
                file: format!("definitions/{id}.json"),
                text: format!(
                    r#"{{"Url": "{{URL}}", "Destination": [{{"CustomImageName": "{id}-{{VERSION}}"}}]}}"#
                ),
            })
            .collect();
        Catalog::build(Sources {
            variables: Some(variables.to_string()),
            definitions,
            problems: Vec::new(),
        })
    }

    fn submitted(rendered: &Rendered, status: JobStatus) -> LedgerEntry {
        LedgerEntry {
            payload_hash: rendered.hash.clone(),
            payload: rendered.payload.clone(),
            variables: rendered.variables.clone(),
            idempotency_key: Some(rendered.hash.to_string()),
            tracking_id: Some(format!("job-{}", rendered.id)),
            status,
            message: status.is_unsuccessful().then(|| "disk full".to_string()),
            image_names: if status == JobStatus::Succeeded {
                rendered.image_names.clone()
            } else {
                Vec::new()
            },
            submitted_at: Some("2026-11-23T10:00:00Z".parse().unwrap()),
            updated_at: "2026-11-23T12:00:00Z".parse().unwrap(),
            completed_at: None,
            adopted: false,
            same_name_allowed: None,
        }
    }

    const OLD: &str = r#"{"URL": "https://x.test", "VERSION": "1"}"#;
    const FORCED: PlanOptions = PlanOptions {
        force: true,
        retry_failed: false,
        allow_same_name: false,
    };
    const RETRY_FAILED: PlanOptions = PlanOptions {
        force: false,
        retry_failed: true,
        allow_same_name: false,
    };

    const NEW: &str = r#"{"URL": "https://x.test", "VERSION": "2"}"#;

    fn ledger(catalog: &Catalog, statuses: &[(&str, JobStatus)]) -> Ledger {
        let mut ledger = Ledger::default();
        for (id, status) in statuses {
            let rendered = catalog.rendered.iter().find(|r| r.id == *id).unwrap();
            ledger
                .definitions
                .insert(id.to_string(), submitted(rendered, *status));
        }
        ledger
    }

    fn ids<T>(items: &[T], id: impl Fn(&T) -> &str) -> Vec<String> {
        items.iter().map(|item| id(item).to_string()).collect()
    }

    #[test]
    fn a_fresh_ledger_submits_everything() {
        let catalog = catalog(NEW, &["a", "b"]);
        let plan = plan(&catalog, &Ledger::default(), PlanOptions::default());
        assert_eq!(ids(&plan.submit, |s| &s.definition), ["a", "b"]);
        assert!(
            plan.submit
                .iter()
                .all(|s| s.reason == SubmitReason::NeverSubmitted)
        );
        assert_eq!(plan.exit_code(), Exit::Pending);
    }

    #[test]
    fn nothing_changed_means_nothing_to_do() {
        let catalog = catalog(NEW, &["a", "b"]);
        let ledger = ledger(
            &catalog,
            &[("a", JobStatus::Succeeded), ("b", JobStatus::Succeeded)],
        );
        let plan = plan(&catalog, &ledger, PlanOptions::default());
        assert_eq!(plan.unchanged, ["a", "b"]);
        assert!(plan.is_settled());
        assert_eq!(plan.exit_code(), Exit::Ok);
    }

    #[test]
    fn a_changed_variable_resubmits_with_old_and_new_values_and_a_diff() {
        let old = catalog(OLD, &["a"]);
        let ledger = ledger(&old, &[("a", JobStatus::Succeeded)]);
        let plan = plan(&catalog(NEW, &["a"]), &ledger, PlanOptions::default());
        let submission = &plan.submit[0];
        assert_eq!(submission.reason, SubmitReason::PayloadChanged);
        assert_eq!(submission.previous_image_names, ["a-1"]);
        assert_eq!(submission.image_names, ["a-2"]);
        assert_eq!(
            plan.variable_changes,
            [VariableChange {
                name: "VERSION".into(),
                old: Some("1".into()),
                new: Some("2".into()),
                definitions: vec!["a".into()],
            }]
        );
        let diff = submission.diff.as_deref().unwrap();
        assert!(
            diff.contains("-      \"CustomImageName\": \"a-1\""),
            "{diff}"
        );
        assert!(
            diff.contains("+      \"CustomImageName\": \"a-2\""),
            "{diff}"
        );
    }

    #[test]
    fn pending_jobs_are_polled_not_resubmitted() {
        let catalog = catalog(NEW, &["a", "b"]);
        let ledger = ledger(
            &catalog,
            &[("a", JobStatus::Running), ("b", JobStatus::Submitting)],
        );
        let plan = plan(&catalog, &ledger, FORCED);
        assert!(plan.submit.is_empty());
        assert_eq!(ids(&plan.pending, |p| &p.definition), ["a", "b"]);
        assert_eq!(plan.exit_code(), Exit::Pending);
    }

    #[test]
    fn a_changed_payload_supersedes_a_running_job() {
        let old = catalog(OLD, &["a"]);
        let ledger = ledger(&old, &[("a", JobStatus::Running)]);
        let plan = plan(&catalog(NEW, &["a"]), &ledger, PlanOptions::default());
        assert_eq!(
            plan.submit[0].replaces,
            Some(JobRef {
                tracking_id: Some("job-a".into()),
                status: JobStatus::Running
            })
        );
        assert!(plan.pending.is_empty());
    }

    /// The values of NEW with another URL, which no image name holds.
    const NEW_URL: &str = r#"{"URL": "https://y.test", "VERSION": "2"}"#;

    #[test]
    fn a_changed_payload_that_keeps_its_image_name_is_refused() {
        let built = catalog(NEW, &["a", "b"]);
        let ledger = ledger(
            &built,
            &[("a", JobStatus::Succeeded), ("b", JobStatus::Failed)],
        );
        let plan = plan(
            &catalog(NEW_URL, &["a", "b"]),
            &ledger,
            PlanOptions::default(),
        );
        assert!(plan.submit.is_empty());
        assert_eq!(ids(&plan.refused, |r| &r.definition), ["a", "b"]);
        let refusal = &plan.refused[0];
        assert_eq!(refusal.same_name.image_names, ["a-2"]);
        assert_eq!(
            refusal.message,
            "the payload changed but keeps the image name a-2, which its last submission \
             already used (URL https://x.test -> https://y.test); rebuilding it would put new \
             content under a name OSOB already uses, reaching the queues with no review. Put a \
             version in CustomImageName (a placeholder for a variable that changes with the \
             content), or run again with --allow-same-name to rebuild it under the same name on \
             purpose"
        );
        assert_eq!(plan.exit_code(), Exit::Error);
        assert_eq!(plan.summary().refused, 2);
        let text = anstream::adapter::strip_str(&render_text(&plan)).to_string();
        assert!(
            text.contains("! a  keeps a-2; changed: URL https://x.test -> https://y.test"),
            "{text}"
        );
        assert!(text.contains("2 refused, 0 unchanged."), "{text}");
    }

    #[test]
    fn allow_same_name_submits_it_and_says_so() {
        let ledger = ledger(&catalog(NEW, &["a"]), &[("a", JobStatus::Succeeded)]);
        let allowed = PlanOptions {
            allow_same_name: true,
            ..PlanOptions::default()
        };
        let plan = plan(&catalog(NEW_URL, &["a"]), &ledger, allowed);
        assert!(plan.refused.is_empty());
        let same_name = plan.submit[0].same_name.as_ref().unwrap();
        assert_eq!(same_name.image_names, ["a-2"]);
        assert_eq!(same_name.variable_changes[0].name, "URL");
        let text = anstream::adapter::strip_str(&render_text(&plan)).to_string();
        assert!(
            text.contains("keeps the image name a-2 (allowed by --allow-same-name)"),
            "{text}"
        );
    }

    #[test]
    fn a_new_name_or_the_same_payload_again_is_not_a_same_name_rebuild() {
        let ledger = ledger(&catalog(OLD, &["a"]), &[("a", JobStatus::Succeeded)]);
        let renamed = plan(&catalog(NEW, &["a"]), &ledger, PlanOptions::default());
        assert_eq!(renamed.submit[0].same_name, None);
        let again = plan(&catalog(OLD, &["a"]), &ledger, FORCED);
        assert_eq!(again.submit[0].reason, SubmitReason::Forced);
        assert!(again.refused.is_empty() && again.submit[0].same_name.is_none());
    }

    #[test]
    fn a_failed_job_is_reported_not_resubmitted_unless_forced() {
        let catalog = catalog(NEW, &["a"]);
        let ledger = ledger(&catalog, &[("a", JobStatus::Failed)]);
        let plan_default = plan(&catalog, &ledger, PlanOptions::default());
        assert!(plan_default.submit.is_empty());
        assert_eq!(plan_default.failed[0].message.as_deref(), Some("disk full"));
        assert_eq!(plan_default.exit_code(), Exit::Error);
        let forced = plan(&catalog, &ledger, FORCED);
        assert_eq!(forced.submit[0].reason, SubmitReason::Forced);
        assert_eq!(forced.submit[0].diff, None);
        let retried = plan(&catalog, &ledger, RETRY_FAILED);
        assert_eq!(retried.submit[0].reason, SubmitReason::RetryFailed);
        assert!(retried.failed.is_empty());
    }

    #[test]
    fn a_selection_keeps_only_the_definitions_chosen() {
        let catalog = catalog(NEW, &["a", "b"]);
        let mut selected = plan(&catalog, &Ledger::default(), PlanOptions::default());
        selected.select(|id| id == "b");
        let ids: Vec<_> = selected
            .submit
            .iter()
            .map(|s| s.definition.as_str())
            .collect();
        assert_eq!(ids, ["b"]);
    }

    #[test]
    fn force_resubmits_built_definitions() {
        let catalog = catalog(NEW, &["a"]);
        let ledger = ledger(&catalog, &[("a", JobStatus::Succeeded)]);
        let plan = plan(&catalog, &ledger, FORCED);
        assert_eq!(plan.submit[0].reason, SubmitReason::Forced);
    }

    #[test]
    fn removed_definitions_are_listed_as_retired_but_broken_ones_are_not() {
        let old = catalog(NEW, &["a", "gone", "broken"]);
        let ledger = ledger(
            &old,
            &[
                ("gone", JobStatus::Succeeded),
                ("broken", JobStatus::Succeeded),
            ],
        );
        let mut current = catalog(NEW, &["a"]);
        current.invalid.insert("broken".into());
        let plan = plan(&current, &ledger, PlanOptions::default());
        assert_eq!(ids(&plan.retired, |r| &r.definition), ["gone"]);
        assert_eq!(plan.not_planned, ["broken"]);
    }

    #[test]
    fn text_form_tells_the_whole_plan() {
        let old = catalog(OLD, &["a", "b", "c", "d"]);
        let ledger = ledger(
            &old,
            &[
                ("a", JobStatus::Succeeded),
                ("c", JobStatus::Running),
                ("d", JobStatus::Failed),
            ],
        );
        let mut current = catalog(NEW, &["a", "b", "c", "d"]);
        current.rendered.retain(|r| r.id != "c" && r.id != "d");
        let old_c = old.rendered.iter().find(|r| r.id == "c").unwrap().clone();
        let old_d = old.rendered.iter().find(|r| r.id == "d").unwrap().clone();
        current.rendered.extend([old_c, old_d]);
        let text = anstream::adapter::strip_str(&render_text(&plan(
            &current,
            &ledger,
            PlanOptions::default(),
        )))
        .to_string();
        insta::assert_snapshot!(text);
    }
}
