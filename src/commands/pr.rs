//! `imagegen pr`: points OSOB at the images built, on one branch and in one pull request, and
//! the OSOB preview that `reconcile --dry-run` shows.

use anyhow::bail;
use serde::Serialize;
use serde_json::json;

use super::Context;
use crate::catalog::Catalog;
use crate::exit::Exit;
use crate::osob::mapping::{self, MAPPING_FILE, Mapping, Provider};
use crate::osob::publish::{self, BranchOutcome, Prepared};
use crate::osob::step::{self, Change, NothingToDo, Preview, StepOptions, StepReport, StepResult};
use crate::pull_request::PullRequest;
use crate::pull_request::body::{self, NotIncluded};
use crate::state::Ledger;

/// What `imagegen pr` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct PrRequest {
    /// Read OSOB and show the diff and the pull request; push nothing, call nothing.
    pub dry_run: bool,
    /// Rebuild the branch even if someone else committed to it.
    pub take_over_branch: bool,
    /// Another OSOB repository than the mapping's (`--osob-url`, `IMAGEGEN_OSOB_URL`).
    pub osob_url: Option<String>,
}

/// The mapping, or the reason there is none to work with.
fn load_mapping(
    context: &Context,
    catalog: &Catalog,
) -> anyhow::Result<Result<Mapping, crate::diagnostics::Diagnostics>> {
    let (mapping, problems) = mapping::load(&context.repo, &catalog.ids());
    let mut diagnostics = crate::diagnostics::Diagnostics::default();
    diagnostics.extend(problems);
    match mapping {
        Some(mapping) if !diagnostics.has_errors() => {
            context.output.diagnostics(&diagnostics)?;
            Ok(Ok(mapping))
        }
        Some(_) => Ok(Err(diagnostics)),
        None if diagnostics.has_errors() => Ok(Err(diagnostics)),
        None => bail!(
            "no {MAPPING_FILE} in {}: without it imagegen does not know where OSOB is (see \
             docs/osob.md)",
            context.repo.display()
        ),
    }
}

/// The pull request as JSON output shows it.
#[derive(Debug, Serialize)]
struct PrReport<'a> {
    dry_run: bool,
    osob: &'a str,
    base_branch: &'a str,
    pr_branch: &'a str,
    files: Vec<FileReport<'a>>,
    title: &'a str,
    body: &'a str,
    /// The full report, posted as one comment, when the description cannot hold it all.
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<&'a str>,
    content: &'a body::PrContent,
    #[serde(skip_serializing_if = "Option::is_none")]
    branch: Option<&'a BranchOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pull_request: Option<&'a PullRequest>,
}

impl<'a> PrReport<'a> {
    fn of(change: &'a Change) -> Self {
        Self {
            dry_run: change.dry_run,
            osob: &change.osob,
            base_branch: &change.base_branch,
            pr_branch: &change.pr_branch,
            files: file_reports(&change.prepared),
            title: &change.title,
            body: &change.description.body,
            report: change.description.report.as_deref(),
            content: &change.prepared.content,
            branch: change.branch.as_ref(),
            pull_request: change.pull_request.as_ref(),
        }
    }
}

#[derive(Debug, Serialize)]
struct FileReport<'a> {
    path: &'a str,
    diff: String,
    replacements: &'a [crate::osob::edit::Replacement],
    dates: &'a [crate::osob::edit::DateChange],
}

/// `imagegen pr`: edits OSOB for every image built from the current definitions, pushes the
/// branch and opens or updates the pull request.
pub fn pr(context: &Context, request: PrRequest) -> anyhow::Result<Exit> {
    let catalog = Catalog::load(&context.repo);
    let ledger = context.store.read_blocking()?;
    let report = publish(context, &request, &catalog, &ledger)?;
    print(context, &report)?;
    if !context.output.is_json() {
        context.output.text(&super::ledger_line(context))?;
    }
    if let StepResult::Changed(change) = &report.result
        && change.dry_run
    {
        context
            .output
            .note("dry run: nothing was pushed and no pull request was touched")?;
    }
    Ok(report.exit_code())
}

/// The OSOB step for `ledger`: the mapping loaded (its warnings shown), then the branch edited
/// and pushed and the pull request opened or updated. Notes go to stderr; the report is
/// returned for the caller to print.
pub fn publish(
    context: &Context,
    request: &PrRequest,
    catalog: &Catalog,
    ledger: &Ledger,
) -> anyhow::Result<StepReport> {
    let mapping = match load_mapping(context, catalog)? {
        Ok(mapping) => mapping,
        Err(diagnostics) => {
            return Ok(StepReport::stopped(
                diagnostics.iter().map(ToString::to_string).collect(),
            ));
        }
    };
    let options = StepOptions {
        dry_run: request.dry_run,
        take_over_branch: request.take_over_branch,
        osob_url: request.osob_url.as_deref(),
    };
    let report = step::run(&context.repo, &mapping, catalog, ledger, options)?;
    for retry in &report.retries {
        context.output.note(retry)?;
    }
    if let StepResult::NothingToDo(nothing) = &report.result
        && !context.output.is_json()
    {
        print_not_included(context, &nothing.not_included)?;
    }
    Ok(report)
}

/// The report as JSON: the change, what was left alone, or the problems.
pub fn report_json(report: &StepReport) -> anyhow::Result<serde_json::Value> {
    Ok(match &report.result {
        StepResult::Stopped { problems } => json!({ "errors": problems }),
        StepResult::NothingToDo(nothing) => json!({
            "dry_run": nothing.dry_run,
            "osob": nothing.osob,
            "nothing_to_do": true,
            "built": nothing.built,
            "not_included": nothing.not_included,
        }),
        StepResult::Changed(change) => serde_json::to_value(PrReport::of(change))?,
    })
}

/// The report as text: the diff and the pull request, or what was left alone.
fn report_text(report: &StepReport) -> String {
    match &report.result {
        StepResult::Stopped { .. } => String::new(),
        StepResult::NothingToDo(nothing) => format!("{}\n", nothing_to_do_line(nothing)),
        StepResult::Changed(change) => render_report(&PrReport::of(change), &change.provider),
    }
}

fn nothing_to_do_line(nothing: &NothingToDo) -> String {
    match nothing.built {
        0 => "nothing to do: no image is built from the current definitions yet, so OSOB keeps \
              its names"
            .to_string(),
        built => format!(
            "nothing to do: OSOB's {} already names every image built ({built} definitions)",
            nothing.base_branch
        ),
    }
}

/// One line standing for the report when the run changed nothing in OSOB, so a scheduled
/// reconcile does not print the same pull request every hour.
fn unchanged_line(change: &Change) -> Option<String> {
    let Some(BranchOutcome::UpToDate { commit }) = &change.branch else {
        return None;
    };
    Some(format!(
        "OSOB: {} already holds this change ({}): nothing pushed{}",
        change.pr_branch,
        &commit[..12],
        match &change.pull_request {
            Some(pull_request) => format!("; {}", pull_request_line(pull_request)),
            None => "; `imagegen pr --dry-run` shows the pull request".to_string(),
        }
    ))
}

/// One line for a run's summary: the pull request, or what became of OSOB.
pub fn headline(report: &StepReport) -> String {
    match &report.result {
        StepResult::Stopped { problems } => format!(
            "the OSOB step failed, nothing was pushed: {}",
            problems.join("; ")
        ),
        StepResult::NothingToDo(nothing) => nothing_to_do_line(nothing),
        StepResult::Changed(change) => match &change.pull_request {
            Some(pull_request) => pull_request_line(pull_request),
            None => {
                unchanged_line(change).unwrap_or_else(|| report_headline(&PrReport::of(change)))
            }
        },
    }
}

/// Prints the report, or only its one line when OSOB was left as it was.
pub fn print_brief(context: &Context, report: &StepReport) -> anyhow::Result<()> {
    if let StepResult::Changed(change) = &report.result
        && let Some(line) = unchanged_line(change)
        && !context.output.is_json()
    {
        context.output.text(&format!("{line}\n"))?;
        return Ok(());
    }
    print(context, report)
}

/// Prints the report (or the problems) as the output format asks.
pub fn print(context: &Context, report: &StepReport) -> anyhow::Result<()> {
    if let StepResult::Stopped { problems } = &report.result {
        return report_problems(context, problems);
    }
    if context.output.is_json() {
        context.output.json(&report_json(report)?)?;
    } else {
        context.output.text(&report_text(report))?;
    }
    Ok(())
}

fn print_not_included(context: &Context, not_included: &[NotIncluded]) -> anyhow::Result<()> {
    for item in not_included {
        context.output.note(&format!(
            "not included: {} ({}): {}",
            item.definition, item.status, item.reason
        ))?;
    }
    Ok(())
}

fn report_problems(context: &Context, problems: &[String]) -> anyhow::Result<()> {
    if context.output.is_json() {
        for problem in problems {
            // Nothing off a platform: the document carries them.
            context.output.error(problem)?;
        }
        context.output.json(&json!({ "errors": problems }))?;
    } else {
        for problem in problems {
            context.output.error(problem)?;
        }
        context
            .output
            .note("nothing was pushed and no pull request was touched")?;
    }
    Ok(())
}

fn file_reports(prepared: &Prepared) -> Vec<FileReport<'_>> {
    prepared
        .changed_files()
        .into_iter()
        .map(|edit| FileReport {
            path: &edit.path,
            diff: publish::unified_diff(edit),
            replacements: &edit.replacements,
            dates: &edit.dates,
        })
        .collect()
}

/// `pull request #N updated: URL`.
fn pull_request_line(pull_request: &PullRequest) -> String {
    format!(
        "pull request #{} {}: {}",
        pull_request.number,
        action_word(pull_request.action),
        pull_request.url
    )
}

/// The report's first line: which OSOB, and how many files change on which branch.
fn report_headline(report: &PrReport<'_>) -> String {
    format!(
        "OSOB {} ({}): {} to change on {}",
        report.osob,
        report.base_branch,
        match report.files.len() {
            1 => "1 file".to_string(),
            n => format!("{n} files"),
        },
        report.pr_branch
    )
}

fn render_report(report: &PrReport<'_>, provider: &Provider) -> String {
    let mut text = format!("{}\n\n", report_headline(report));
    for file in &report.files {
        text.push_str(&file.diff);
        if !file.diff.ends_with('\n') {
            text.push('\n');
        }
    }
    match &report.branch {
        Some(BranchOutcome::Pushed { commit, replaced }) => text.push_str(&format!(
            "\npushed {} ({}){}\n",
            report.pr_branch,
            &commit[..12],
            replaced
                .as_ref()
                .map(|old| format!(", replacing {}", &old[..12]))
                .unwrap_or_default()
        )),
        Some(BranchOutcome::UpToDate { commit }) => text.push_str(&format!(
            "\n{} already holds this change ({}): nothing pushed\n",
            report.pr_branch,
            &commit[..12]
        )),
        _ => {}
    }
    match (&report.pull_request, provider, report.dry_run) {
        (Some(pull_request), _, _) => text.push_str(&format!(
            "{}
",
            pull_request_line(pull_request)
        )),
        (None, provider, dry_run) => {
            let verb = if dry_run || matches!(provider, Provider::Local) {
                "would open or update"
            } else {
                "opened"
            };
            text.push_str(&format!(
                "\nThe pull request imagegen {verb} ({}, {} into {}):\n\n# {}\n\n{}\n",
                provider.name(),
                report.pr_branch,
                report.base_branch,
                report.title,
                report.body
            ));
            if let Some(comment) = &report.report {
                text.push_str(&format!(
                    "\nWith one comment holding the full report:\n\n{comment}\n"
                ));
            }
        }
    }
    text
}

fn action_word(action: crate::pull_request::PullRequestAction) -> &'static str {
    match action {
        crate::pull_request::PullRequestAction::Created => "created",
        crate::pull_request::PullRequestAction::Updated => "updated",
        crate::pull_request::PullRequestAction::Adopted => "adopted and updated",
        crate::pull_request::PullRequestAction::Unchanged => "already up to date",
    }
}

/// The OSOB part of `reconcile --dry-run`, as text: the diff and the pull request the run
/// would lead to. `None` when the repository has no mapping.
pub fn preview(
    context: &Context,
    catalog: &Catalog,
    ledger: &Ledger,
    osob_url: Option<&str>,
) -> Option<Result<String, String>> {
    let preview = step::preview(&context.repo, catalog, ledger, osob_url)?;
    Some(preview.map(|preview| match preview {
        Preview::AlreadyNamed { osob, base_branch } => format!(
            "OSOB {osob} ({base_branch}): already names every image; no pull request needed\n"
        ),
        Preview::Changed(change) => render_report(&PrReport::of(&change), &change.provider),
    }))
}
