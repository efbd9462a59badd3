//! `imagegen pr`: points OSOB at the images built, on one branch and in one pull request, and
//! the OSOB preview that `reconcile --dry-run` shows.

use anyhow::bail;
use serde::Serialize;
use serde_json::json;

use super::Context;
use crate::catalog::Catalog;
use crate::exit::Exit;
use crate::osob::mapping::{self, MAPPING_FILE, Mapping, Provider};
use crate::osob::publish::{self, Assume, BranchOptions, BranchOutcome, Prepared, PublishError};
use crate::osob::workspace::Workspace;
use crate::pr::{PrClient, PullRequest, PullRequestSpec, body};
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
    osob: String,
    base_branch: &'a str,
    pr_branch: &'a str,
    files: Vec<FileReport<'a>>,
    title: String,
    body: String,
    /// The full report, posted as one comment, when the description cannot hold it all.
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<String>,
    content: &'a body::PrContent,
    #[serde(skip_serializing_if = "Option::is_none")]
    branch: Option<BranchOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pull_request: Option<PullRequest>,
}

#[derive(Debug, Serialize)]
struct FileReport<'a> {
    path: &'a str,
    diff: String,
    replacements: &'a [crate::osob::edit::Replacement],
    dates: &'a [crate::osob::edit::DateChange],
}

/// What the OSOB step came to: an exit code, and its report as JSON and as text (or the
/// problems that stopped it).
#[derive(Debug)]
pub struct PrResult {
    pub code: Exit,
    pub json: serde_json::Value,
    pub text: String,
    /// One line standing for `text` when the run changed nothing in OSOB, so a scheduled
    /// reconcile does not print the same pull request every hour.
    pub unchanged: Option<String>,
    pub problems: Vec<String>,
    /// The pull request opened or updated, when the provider has one.
    pub pull_request: Option<PullRequest>,
    /// One line for a run's summary, said where the result is made: the pull request, or what
    /// became of OSOB.
    pub headline: String,
}

impl PrResult {
    /// The step stopped on `error`.
    pub fn failed(error: String) -> Self {
        Self::problems(vec![error])
    }

    fn problems(problems: Vec<String>) -> Self {
        Self {
            code: Exit::Error,
            json: json!({ "errors": problems }),
            text: String::new(),
            unchanged: None,
            headline: format!(
                "the OSOB step failed, nothing was pushed: {}",
                problems.join("; ")
            ),
            problems,
            pull_request: None,
        }
    }

    fn done(
        code: Exit,
        json: serde_json::Value,
        text: String,
        headline: String,
        pull_request: Option<PullRequest>,
    ) -> Self {
        Self {
            code,
            json,
            text,
            unchanged: None,
            problems: Vec::new(),
            pull_request,
            headline,
        }
    }

    /// Prints the report, or only its one line when OSOB was left as it was.
    pub fn print_brief(&self, context: &Context) -> anyhow::Result<()> {
        match &self.unchanged {
            Some(line) if self.problems.is_empty() && !context.output.is_json() => {
                context.output.text(line)?;
                Ok(())
            }
            _ => self.print(context),
        }
    }

    /// Prints the report (or the problems) as the output format asks.
    pub fn print(&self, context: &Context) -> anyhow::Result<()> {
        if !self.problems.is_empty() {
            return report_problems(context, &self.problems);
        }
        if context.output.is_json() {
            context.output.json(&self.json)?;
        } else {
            context.output.text(&self.text)?;
        }
        Ok(())
    }
}

/// `imagegen pr`: edits OSOB for every image built from the current definitions, pushes the
/// branch and opens or updates the pull request.
pub fn pr(context: &Context, request: PrRequest) -> anyhow::Result<Exit> {
    let catalog = Catalog::load(&context.repo);
    let ledger = context.store.read_blocking()?;
    let result = publish(context, &request, &catalog, &ledger)?;
    result.print(context)?;
    if !context.output.is_json() {
        context.output.text(&super::ledger_line(context))?;
    }
    if request.dry_run && result.problems.is_empty() && result.code == Exit::Pending {
        context
            .output
            .note("dry run: nothing was pushed and no pull request was touched")?;
    }
    Ok(result.code)
}

/// The OSOB step for `ledger`: the branch edited and pushed, the pull request opened or
/// updated. Notes go to stderr as they happen; the report is returned for the caller to print.
pub fn publish(
    context: &Context,
    request: &PrRequest,
    catalog: &Catalog,
    ledger: &Ledger,
) -> anyhow::Result<PrResult> {
    let output = &context.output;
    let mapping = match load_mapping(context, catalog)? {
        Ok(mapping) => mapping,
        Err(diagnostics) => {
            return Ok(PrResult::problems(
                diagnostics.iter().map(ToString::to_string).collect(),
            ));
        }
    };
    // The provider (and its token) first: a run that cannot open the pull request must not
    // push the branch.
    let client = if request.dry_run {
        None
    } else {
        match crate::runtime::block_on(PrClient::connect(&mapping.provider))? {
            Ok(client) => Some(client),
            Err(error) => return Ok(PrResult::problems(vec![error.to_string()])),
        }
    };
    let (targets, not_included, errors) =
        publish::targets(catalog, ledger, &mapping, Assume::Built);
    if !errors.is_empty() {
        return Ok(PrResult::problems(errors));
    }
    let url = publish::osob_url(&mapping, request.osob_url.as_deref());
    let workspace = Workspace::open(
        &publish::cache_path(&context.repo),
        &url,
        publish::git_auth(&url, &mapping.provider),
    )?;
    let options = BranchOptions {
        dry_run: request.dry_run,
        take_over: request.take_over_branch,
        today: publish::today(),
    };
    let mut retries = Vec::new();
    let updated = publish::update_branch(
        &workspace,
        &mapping,
        &targets,
        &not_included,
        options,
        |_| {},
        |error| retries.push(format!("{error}; fetching again and redoing the edit")),
    );
    for retry in &retries {
        output.note(retry)?;
    }
    let (prepared, outcome) = match updated {
        Ok(updated) => updated,
        Err(PublishError::Edit { problems }) => {
            return Ok(PrResult::problems(
                problems.iter().map(ToString::to_string).collect(),
            ));
        }
        Err(error) => return Ok(PrResult::problems(vec![error.to_string()])),
    };
    if targets.is_empty() || prepared.is_empty() {
        let built = targets.len();
        let text = if targets.is_empty() {
            "nothing to do: no image is built from the current definitions yet, so OSOB keeps \
             its names\n"
                .to_string()
        } else {
            format!(
                "nothing to do: OSOB's {} already names every image built ({built} definitions)\n",
                mapping.repository.base_branch
            )
        };
        if !output.is_json() {
            print_not_included(context, &prepared)?;
        }
        return Ok(PrResult::done(
            Exit::Ok,
            json!({
                "dry_run": request.dry_run,
                "osob": workspace.url(),
                "nothing_to_do": true,
                "built": built,
                "not_included": not_included,
            }),
            text.clone(),
            text.trim_end().to_string(),
            None,
        ));
    }
    let title = body::title(&prepared.content);
    let description = describe(&prepared.content, &mapping.provider);
    let pull_request = match (&outcome, request.dry_run) {
        (Some(_), false) => {
            let client = client
                .as_ref()
                .expect("a client is built for every run that pushes");
            match open_pull_request(client, &mapping, &title, &description) {
                Ok(pull_request) => pull_request,
                Err(error) => {
                    return Ok(PrResult::problems(vec![format!(
                        "the branch {} was pushed, but the pull request could not be opened or \
                         updated: {error:#}. Run imagegen pr again once that is fixed: it finds \
                         the branch and updates the pull request",
                        mapping.repository.pr_branch
                    )]));
                }
            }
        }
        _ => None,
    };
    let report = PrReport {
        dry_run: request.dry_run,
        osob: workspace.url(),
        base_branch: &mapping.repository.base_branch,
        pr_branch: &mapping.repository.pr_branch,
        files: file_reports(&prepared),
        title: title.clone(),
        body: description.body.clone(),
        report: description.report.clone(),
        content: &prepared.content,
        branch: outcome.clone(),
        pull_request: pull_request.clone(),
    };
    let headline = match &pull_request {
        Some(pull_request) => pull_request_line(pull_request),
        None => report_headline(&report),
    };
    let mut result = PrResult::done(
        if request.dry_run {
            Exit::Pending
        } else {
            Exit::Ok
        },
        serde_json::to_value(&report)?,
        render_report(&report, &mapping),
        headline,
        pull_request,
    );
    if let Some(BranchOutcome::UpToDate { commit }) = &report.branch {
        let line = format!(
            "OSOB: {} already holds this change ({}): nothing pushed{}\n",
            report.pr_branch,
            &commit[..12],
            match &report.pull_request {
                Some(pull_request) => format!("; {}", pull_request_line(pull_request)),
                None => "; `imagegen pr --dry-run` shows the pull request".to_string(),
            }
        );
        if result.pull_request.is_none() {
            result.headline = line.trim_end().to_string();
        }
        result.unchanged = Some(line);
    }
    Ok(result)
}

fn print_not_included(context: &Context, prepared: &Prepared) -> anyhow::Result<()> {
    for item in &prepared.content.not_included {
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

fn render_report(report: &PrReport<'_>, mapping: &Mapping) -> String {
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
    match (&report.pull_request, &mapping.provider, report.dry_run) {
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

fn action_word(action: crate::pr::PullRequestAction) -> &'static str {
    match action {
        crate::pr::PullRequestAction::Created => "created",
        crate::pr::PullRequestAction::Updated => "updated",
        crate::pr::PullRequestAction::Adopted => "adopted and updated",
        crate::pr::PullRequestAction::Unchanged => "already up to date",
    }
}

/// The description, and the report comment when it is needed, within the provider's limits.
fn describe(content: &body::PrContent, provider: &Provider) -> body::Description {
    let limits = crate::pr::Limits::of(provider);
    body::describe(content, limits.description, limits.comment)
}

/// Opens or updates the pull request through `client`.
fn open_pull_request(
    client: &PrClient,
    mapping: &Mapping,
    title: &str,
    description: &body::Description,
) -> anyhow::Result<Option<PullRequest>> {
    let spec = PullRequestSpec {
        source_branch: mapping.repository.pr_branch.clone(),
        target_branch: mapping.repository.base_branch.clone(),
        title: title.to_string(),
        body: description.body.clone(),
        report: description.report.clone(),
        reviewers: mapping.reviewers.clone(),
        labels: mapping.labels.clone(),
    };
    Ok(crate::runtime::block_on(client.open_or_update(&spec))??)
}

/// The OSOB part of `reconcile --dry-run`: the diff and pull request this run would lead to if
/// every planned job succeeds, read from `osob_url` when given, else from the mapping's URL.
/// `None` when the repository has no mapping.
pub fn preview(
    context: &Context,
    catalog: &Catalog,
    ledger: &Ledger,
    osob_url: Option<&str>,
) -> Option<Result<String, String>> {
    let (mapping, problems) = mapping::load(&context.repo, &catalog.ids());
    let mapping = mapping?;
    if problems.iter().any(|problem| problem.is_error()) {
        return Some(Err(format!(
            "{MAPPING_FILE} has errors (see imagegen validate)"
        )));
    }
    Some(preview_with(context, catalog, ledger, &mapping, osob_url))
}

fn preview_with(
    context: &Context,
    catalog: &Catalog,
    ledger: &Ledger,
    mapping: &Mapping,
    osob_url: Option<&str>,
) -> Result<String, String> {
    let (targets, not_included, errors) =
        publish::targets(catalog, ledger, mapping, Assume::Planned);
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let url = publish::osob_url(mapping, osob_url);
    let workspace = Workspace::open(
        &publish::cache_path(&context.repo),
        &url,
        publish::git_auth(&url, &mapping.provider),
    )
    .map_err(|error| error.to_string())?;
    workspace
        .fetch(&[&mapping.repository.base_branch])
        .map_err(|error| error.to_string())?;
    let base = workspace
        .required_tip(&mapping.repository.base_branch)
        .map_err(|error| error.to_string())?;
    let prepared = publish::prepare(
        &workspace,
        base,
        &targets,
        not_included,
        mapping,
        publish::today(),
    )
    .map_err(|problems| {
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    if prepared.is_empty() {
        return Ok(format!(
            "OSOB {} ({}): already names every image; no pull request needed\n",
            workspace.url(),
            mapping.repository.base_branch
        ));
    }
    let title = body::title(&prepared.content);
    let description = describe(&prepared.content, &mapping.provider);
    let report = PrReport {
        dry_run: true,
        osob: workspace.url(),
        base_branch: &mapping.repository.base_branch,
        pr_branch: &mapping.repository.pr_branch,
        files: file_reports(&prepared),
        title,
        body: description.body,
        report: description.report,
        content: &prepared.content,
        branch: None,
        pull_request: None,
    };
    Ok(render_report(&report, mapping))
}
