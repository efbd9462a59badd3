//! `imagegen vars update`: each variable's newest value read from where it is published
//! (variable-sources.json), the rules applied, and the result shown (`--dry-run`), written
//! into variables.json in place as `vars set` writes it, or proposed on one branch of this
//! repository in one pull request (`--pr`). A source that fails stops the write: nothing is
//! changed, and the failure names the variable and the source.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use serde_json::json;

use super::{Consequences, shown};
use crate::catalog::{self, Sources};
use crate::commands::{Context, affected_json, affected_text, count, errors_of};
use crate::exit::Exit;
use crate::osob::publish::{self, BranchOutcome, PUSH_ATTEMPTS, PublishError};
use crate::osob::workspace::{GitAuth, Workspace};
use crate::output::Table;
use crate::pull_request::variable_updates::{self, Bump, Rebuild, UpdateContent};
use crate::pull_request::{PrClient, PullRequest, PullRequestSpec};
use crate::selection::Selection;
use crate::sources::fetch::{FetchError, FetchSettings, Fetcher};
use crate::sources::version::{self, Resolution};
use crate::sources::{self, PullRequestTarget, SOURCES_FILE, SourcesFile, VariableSource};
use crate::state::LedgerWriter;
use crate::variables::{self, SetOutcome, VARIABLES_FILE, Variables};

/// `imagegen vars update`.
#[derive(Debug, Clone, Default)]
pub struct UpdateRequest {
    /// Show what would change; write, push and record nothing.
    pub dry_run: bool,
    /// Propose the change in a pull request on this repository instead of writing the file.
    pub pr: bool,
    /// Variables to update (globs over names); all when empty.
    pub only: Vec<String>,
    pub except: Vec<String>,
    pub fetch: FetchSettings,
    /// This repository's URL for `--pr`, instead of the one in variable-sources.json.
    pub repo_url: Option<String>,
    /// Rebuild the branch even if someone else committed to it.
    pub take_over_branch: bool,
    /// How long to wait for another run holding a file ledger.
    pub lock_timeout: Duration,
}

/// One variable's outcome, as JSON shows it.
#[derive(Debug, Serialize)]
struct VariableReport {
    name: String,
    current: Option<String>,
    source: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    resolution: Option<Resolution>,
    /// The definitions a change of this variable rebuilds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    definitions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Runs `imagegen vars update`.
pub fn update(context: &Context, request: &UpdateRequest) -> anyhow::Result<Exit> {
    let output = &context.output;
    let read = catalog::read_sources(&context.repo);
    let Some(working_text) = read.variables.clone() else {
        let problems: Vec<String> = read.problems.iter().map(ToString::to_string).collect();
        anyhow::bail!("cannot read {VARIABLES_FILE}: {}", problems.join("; "));
    };
    let (working, problems) = Variables::parse(VARIABLES_FILE, &working_text);
    if let Some(problem) = problems.first() {
        anyhow::bail!(
            "{VARIABLES_FILE} has errors ({problem}); fix them first (imagegen validate lists them)"
        );
    }
    let names: Vec<String> = working.names().map(str::to_string).collect();
    let (file, problems) = sources::load(&context.repo, &names);
    let mut diagnostics = crate::diagnostics::Diagnostics::default();
    diagnostics.extend(problems);
    diagnostics.sort();
    let Some(file) = file else {
        if diagnostics.is_empty() {
            anyhow::bail!(
                "no {SOURCES_FILE} in {}: it says where each variable's newest value is published \
                 (see docs/variable-sources.md)",
                context.repo.display()
            );
        }
        output.diagnostics(&diagnostics)?;
        if output.is_json() {
            output.json(&json!({ "diagnostics": diagnostics }))?;
        }
        return Ok(Exit::Error);
    };
    let selected = select(&file, request)?;
    let target = if request.pr {
        Some(file.pull_request.clone().with_context(|| {
            format!("--pr needs a pull_request section in {SOURCES_FILE}: this repository's URL, base branch and provider (see docs/variable-sources.md)")
        })?)
    } else {
        None
    };
    // The provider (and its token) first: a run that cannot open the pull request must not
    // push the branch.
    let client = match (&target, request.dry_run) {
        (Some(target), false) => Some(crate::runtime::block_on(PrClient::connect(
            &target.provider,
        ))??),
        _ => None,
    };
    // With --pr the change is made to variables.json as the base branch holds it, since the
    // branch is rebuilt on the base: the working tree may be anything.
    let base = match &target {
        Some(target) => Some(BaseBranch::fetch(context, request, target)?),
        None => None,
    };
    let text = base
        .as_ref()
        .map_or(working_text.clone(), |base| base.text.clone());
    let (current, problems) = Variables::parse(VARIABLES_FILE, &text);
    if let Some(problem) = problems.first() {
        anyhow::bail!("{VARIABLES_FILE} on the base branch has errors ({problem}); fix them first");
    }

    let needs_ledger = selected
        .iter()
        .any(|variable| variable.rules.min_age.is_some());
    let seen = if needs_ledger {
        context.store.read_blocking()?.seen
    } else {
        BTreeMap::new()
    };
    let fetcher = Fetcher::new(request.fetch.clone()).context("cannot build the HTTP client")?;
    let fetched: Vec<Result<Vec<version::Candidate>, FetchError>> =
        crate::runtime::block_on(async {
            let mut results = Vec::new();
            for variable in &selected {
                results.push(fetcher.candidates(variable).await);
            }
            results
        })?;

    let now = jiff::Timestamp::now();
    let empty = BTreeMap::new();
    let mut reports = Vec::new();
    let mut errors = Vec::new();
    let mut proposals: Vec<(&VariableSource, Resolution)> = Vec::new();
    let mut first_seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut pending: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (variable, result) in selected.iter().copied().zip(fetched) {
        let value = current.get(&variable.name).map(str::to_string);
        let mut report = VariableReport {
            name: variable.name.clone(),
            current: value.clone(),
            source: variable.source.describe(),
            resolution: None,
            definitions: Vec::new(),
            error: None,
        };
        let resolved = result
            .map_err(|error| error.to_string())
            .and_then(|candidates| {
                version::resolve(
                    value.as_deref().unwrap_or_default(),
                    &candidates,
                    &variable.format,
                    &variable.rules,
                    seen.get(&variable.name).unwrap_or(&empty),
                    now,
                )
                .map_err(|reason| {
                    FetchError {
                        variable: variable.name.clone(),
                        source_name: variable.source.describe(),
                        reason,
                    }
                    .to_string()
                })
            });
        match resolved {
            Ok(resolution) => {
                first_seen.insert(variable.name.clone(), resolution.first_seen.clone());
                pending.insert(
                    variable.name.clone(),
                    resolution
                        .held_back
                        .iter()
                        .map(|held| held.version.clone())
                        .chain(
                            resolution
                                .proposed
                                .iter()
                                .map(|offer| offer.version.clone()),
                        )
                        .collect(),
                );
                if resolution.proposed.is_some() {
                    proposals.push((variable, resolution.clone()));
                }
                report.resolution = Some(resolution);
            }
            Err(error) => {
                errors.push(error.clone());
                report.error = Some(error);
            }
        }
        reports.push(report);
    }

    let changes: Vec<(String, String)> = proposals
        .iter()
        .filter_map(|(variable, resolution)| {
            resolution
                .proposed
                .as_ref()
                .map(|offer| (variable.name.clone(), offer.value.clone()))
        })
        .collect();
    let outcome = variables::set_values(&text, &changes, false)
        .with_context(|| format!("{VARIABLES_FILE} was not changed"))?;
    let sources_for_catalog = Sources {
        variables: Some(text.clone()),
        definitions: read.definitions,
        problems: read.problems,
    };
    let consequences = Consequences::of(&sources_for_catalog, &text, &outcome);
    for report in &mut reports {
        if report
            .resolution
            .as_ref()
            .is_some_and(|r| r.proposed.is_some())
        {
            report.definitions = consequences
                .affected_by(std::slice::from_ref(&report.name))
                .iter()
                .map(|(definition, _)| definition.id.clone())
                .collect();
        }
    }
    let renamed = consequences.renamed();
    let affected = consequences.affected_by(&consequences.changed);
    let catalog_errors = errors_of(&consequences.after);
    let blocked = !errors.is_empty() || !consequences.broken.is_empty();
    let changed = outcome.is_changed() && !blocked;

    // What is done: nothing on a dry run or when anything failed; else the file, or the branch
    // and the pull request.
    let mut written = false;
    let mut branch = None;
    let mut pull_request = None;
    let mut failure = None;
    let content = pr_content(&proposals, &current, &renamed);
    if changed && !request.dry_run {
        match (&target, &base) {
            (Some(target), Some(base)) => {
                match propose(request, target, base, &outcome, &content, client.as_ref()) {
                    Ok((outcome, opened)) => {
                        branch = Some(outcome);
                        pull_request = opened;
                    }
                    Err(error) => failure = Some(format!("{error:#}")),
                }
            }
            _ => {
                let path = context.repo.join(VARIABLES_FILE);
                // Only if the file is still what was read: an edit made while the sources were
                // read is not lost.
                let still = || Ok(std::fs::read_to_string(&path)? == text);
                written = crate::atomic_file::replace_if(&path, outcome.text.as_bytes(), still)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                if !written {
                    failure = Some(format!(
                        "{VARIABLES_FILE} changed while the sources were read; it was left as it                          is now: run imagegen vars update again"
                    ));
                }
            }
        }
    }
    if !request.dry_run && errors.is_empty() && needs_ledger {
        record_seen(context, request, &first_seen, &pending, now)?;
    }

    let exit = if blocked || failure.is_some() || catalog_errors.has_errors() {
        Exit::Error
    } else if request.dry_run && outcome.is_changed() {
        Exit::Pending
    } else {
        Exit::Ok
    };
    if output.is_json() {
        output.json(&json!({
            "file": VARIABLES_FILE,
            "sources": SOURCES_FILE,
            "dry_run": request.dry_run,
            "pr": request.pr,
            "written": written,
            "variables": reports,
            "changes": if blocked { &[][..] } else { &outcome.changes[..] },
            "definitions": affected_json(&affected),
            "images": renamed,
            "broken": consequences.broken,
            "branch": branch,
            "pull_request": pull_request,
            "errors": errors.iter().chain(failure.iter()).collect::<Vec<_>>(),
            "diagnostics": catalog_errors,
            "exit_code": exit.code(),
        }))?;
        return Ok(exit);
    }
    output.diagnostics(&catalog_errors)?;
    output.text(&render_text(
        &reports,
        &affected_text(&affected),
        affected.len(),
        &renamed,
        blocked,
    ))?;
    for same in renamed.iter().filter(|renamed| renamed.same_name) {
        output.warning_annotation(crate::platform::Annotation::warning(format!(
            "{} is rebuilt but keeps its image name {}: reconcile refuses it unless a person \
             allows it with --allow-same-name",
            same.definition,
            same.new.join(", ")
        )))?;
    }
    for error in &errors {
        output.error(error)?;
    }
    if !consequences.broken.is_empty() {
        output.error(&format!(
            "the new values break {} ({}); {VARIABLES_FILE} was not changed",
            count(consequences.broken.len(), "definition"),
            consequences.broken.join(", ")
        ))?;
    }
    if let Some(error) = &failure {
        output.error(error)?;
    }
    let held = reports.iter().any(|report| {
        report
            .resolution
            .as_ref()
            .is_some_and(|resolution| !resolution.held_back.is_empty())
    });
    let note = if !blocked && !outcome.is_changed() && held {
        "nothing newer passes the rules (see \"not proposed\" above): nothing was written or \
         pushed"
            .to_string()
    } else {
        closing_note(
            request,
            blocked,
            outcome.is_changed(),
            written,
            branch.as_ref(),
            pull_request.as_ref(),
            target.as_ref(),
        )
    };
    output.note(&note)?;
    Ok(exit)
}

/// The variables `--only` and `--except` choose, in file order.
fn select<'a>(
    file: &'a SourcesFile,
    request: &UpdateRequest,
) -> anyhow::Result<Vec<&'a VariableSource>> {
    let selection = Selection::new(&request.only, &request.except)?;
    let names: Vec<String> = file
        .variables
        .iter()
        .map(|variable| variable.name.clone())
        .collect();
    for pattern in &request.only {
        let single = Selection::new(std::slice::from_ref(pattern), &[])?;
        if !names.iter().any(|name| single.matches(name)) {
            anyhow::bail!(
                "--only {pattern:?} matches no variable with a source in {SOURCES_FILE} ({})",
                names.join(", ")
            );
        }
    }
    let selected: Vec<&VariableSource> = file
        .variables
        .iter()
        .filter(|variable| selection.matches(&variable.name))
        .collect();
    if selected.is_empty() {
        anyhow::bail!(
            "no variable to update: {SOURCES_FILE} names none, or --only and --except leave none"
        );
    }
    Ok(selected)
}

/// The text report: each variable, then what the changes rebuild.
fn render_text(
    reports: &[VariableReport],
    affected_text: &str,
    affected: usize,
    renamed: &[super::consequences::Renamed],
    blocked: bool,
) -> String {
    let mut text = String::new();
    for report in reports {
        let current = report
            .current
            .as_deref()
            .map_or("(not set)".to_string(), shown);
        match (&report.resolution, &report.error) {
            (Some(resolution), _) => {
                match &resolution.proposed {
                    Some(offer) => text.push_str(&format!(
                        "{}: {current} -> {} ({}, from {})\n",
                        report.name,
                        shown(&offer.value),
                        offer.version,
                        report.source
                    )),
                    None => text.push_str(&format!(
                        "{}: {current} is up to date (newest: {} from {})\n",
                        report.name,
                        shown(&resolution.newest.value),
                        report.source
                    )),
                }
                if let Some(notes) = resolution
                    .proposed
                    .as_ref()
                    .and_then(|offer| offer.notes.as_ref())
                {
                    text.push_str(&format!("  release notes: {notes}\n"));
                }
                for held in &resolution.held_back {
                    text.push_str(&format!(
                        "  not proposed: {} ({}): {}\n",
                        held.version,
                        shown(&held.value),
                        held.why
                    ));
                }
                if !report.definitions.is_empty() {
                    text.push_str(&format!(
                        "  rebuilds {}: {}\n",
                        count(report.definitions.len(), "definition"),
                        report.definitions.join(", ")
                    ));
                }
            }
            (None, Some(_)) => text.push_str(&format!(
                "{}: {current}: its source failed (see below)\n",
                report.name
            )),
            (None, None) => {}
        }
    }
    if affected > 0 && !blocked {
        text.push_str(&format!(
            "\nDefinitions to rebuild ({affected}):\n{affected_text}"
        ));
        let mut table = Table::new(&["definition", "old image", "new image"]);
        for renamed in renamed {
            let new = if renamed.same_name {
                format!("{} (unchanged!)", renamed.new.join(", "))
            } else {
                renamed.new.join(", ")
            };
            table.row(&[renamed.definition.as_str(), &renamed.old.join(", "), &new]);
        }
        text.push_str(&format!("\nImage names:\n{}", table.render()));
    }
    text
}

fn closing_note(
    request: &UpdateRequest,
    blocked: bool,
    changed: bool,
    written: bool,
    branch: Option<&BranchOutcome>,
    pull_request: Option<&PullRequest>,
    target: Option<&PullRequestTarget>,
) -> String {
    if blocked {
        return format!("{VARIABLES_FILE} was not changed and nothing was pushed");
    }
    if !changed {
        return "every variable is up to date: nothing was written or pushed".to_string();
    }
    if request.dry_run {
        return format!("dry run: {VARIABLES_FILE} was not changed and nothing was pushed");
    }
    if written {
        return format!(
            "wrote {VARIABLES_FILE}; run `imagegen reconcile --dry-run` to see the plan"
        );
    }
    let branch_name = target.map_or("the branch", |target| target.repository.pr_branch.as_str());
    let branch_text = match branch {
        Some(BranchOutcome::Pushed { commit, .. }) => {
            format!("pushed {branch_name} ({})", &commit[..12])
        }
        Some(BranchOutcome::UpToDate { .. }) => {
            format!("{branch_name} already holds this change: nothing pushed")
        }
        _ => String::new(),
    };
    match pull_request {
        Some(pull_request) => format!(
            "{branch_text}; pull request #{} {:?}: {}",
            pull_request.number, pull_request.action, pull_request.url
        ),
        None => format!("{branch_text}; the provider is local, so no pull request was opened"),
    }
}

/// What the pull request tells, from the proposals and the rebuilds.
fn pr_content(
    proposals: &[(&VariableSource, Resolution)],
    current: &Variables,
    renamed: &[super::consequences::Renamed],
) -> UpdateContent {
    let row = |renamed: &super::consequences::Renamed| Rebuild {
        definition: renamed.definition.clone(),
        old: renamed.old.clone(),
        new: renamed.new.clone(),
    };
    UpdateContent {
        bumps: proposals
            .iter()
            .filter_map(|(variable, resolution)| {
                let offer = resolution.proposed.as_ref()?;
                Some(Bump {
                    variable: variable.name.clone(),
                    old: current.get(&variable.name).unwrap_or_default().to_string(),
                    new: offer.value.clone(),
                    version: offer.version.clone(),
                    source: variable.source.describe(),
                    notes: offer.notes.clone(),
                })
            })
            .collect(),
        rebuilds: renamed.iter().filter(|r| !r.same_name).map(row).collect(),
        same_names: renamed.iter().filter(|r| r.same_name).map(row).collect(),
        held_back: proposals
            .iter()
            .flat_map(|(variable, resolution)| {
                resolution
                    .held_back
                    .iter()
                    .map(move |held| format!("{}: {}: {}", variable.name, held.version, held.why))
            })
            .collect(),
    }
}

/// This repository's base branch as fetched for `--pr`, and variables.json on it.
struct BaseBranch {
    workspace: Workspace,
    /// variables.json's path in the repository.
    path: String,
    text: String,
}

impl BaseBranch {
    fn fetch(
        context: &Context,
        request: &UpdateRequest,
        target: &PullRequestTarget,
    ) -> anyhow::Result<Self> {
        let url = request
            .repo_url
            .clone()
            .unwrap_or_else(|| target.repository.url.clone());
        let workspace = Workspace::open(&cache_path(&context.repo), &url, git_auth(&url, target))?;
        let repository = &target.repository;
        workspace.fetch(&[&repository.base_branch, &repository.pr_branch])?;
        let tip = workspace.required_tip(&repository.base_branch)?;
        let path = match repository
            .folder
            .as_deref()
            .map(|folder| folder.trim_matches('/'))
        {
            Some(folder) if !folder.is_empty() => format!("{folder}/{VARIABLES_FILE}"),
            _ => VARIABLES_FILE.to_string(),
        };
        let bytes = workspace.read(tip, &path)?.with_context(|| {
            format!(
                "{} has no {path} on {}",
                workspace.url(),
                repository.base_branch
            )
        })?;
        let text = String::from_utf8(bytes)
            .with_context(|| format!("{path} on {} is not UTF-8", repository.base_branch))?;
        Ok(Self {
            workspace,
            path,
            text,
        })
    }
}

/// Where the bare cache of this repository lives (beside the OSOB one).
fn cache_path(repo: &Path) -> std::path::PathBuf {
    repo.join(".imagegen").join("self-cache.git")
}

/// Git credentials for an https URL of this repository, from the provider's token variables
/// (the same as OSOB's).
fn git_auth(url: &str, target: &PullRequestTarget) -> Option<GitAuth> {
    publish::git_auth(url, &target.provider)
}

/// Pushes the branch (rebuilt on the base tip, redone from a fresh fetch if it lost a race)
/// and opens or updates the pull request.
fn propose(
    request: &UpdateRequest,
    target: &PullRequestTarget,
    base: &BaseBranch,
    outcome: &SetOutcome,
    content: &UpdateContent,
    client: Option<&PrClient>,
) -> anyhow::Result<(BranchOutcome, Option<PullRequest>)> {
    let repository = &target.repository;
    let title = variable_updates::title(content);
    let message = format!(
        "{title}\n\n{}\nMade by imagegen vars update.\n",
        content
            .bumps
            .iter()
            .map(|bump| format!(
                "{}: {} -> {} ({})\n",
                bump.variable, bump.old, bump.new, bump.version
            ))
            .collect::<String>()
    );
    let workspace = &base.workspace;
    let mut attempt = 0;
    let pushed = loop {
        attempt += 1;
        if attempt > 1 {
            workspace.fetch(&[&repository.base_branch, &repository.pr_branch])?;
        }
        let tip = workspace.required_tip(&repository.base_branch)?;
        let on_tip = workspace.read(tip, &base.path)?;
        // The base moved under this run and changed variables.json: the change is made again
        // from the start by the next run rather than over someone's edit.
        if attempt > 1 && on_tip.as_deref() != Some(base.text.as_bytes()) {
            anyhow::bail!(
                "{} changed on {} while this run worked; nothing was pushed, run again",
                base.path,
                repository.base_branch
            );
        }
        let files = vec![(base.path.clone(), outcome.text.clone().into_bytes())];
        match publish::push_commit(
            workspace,
            &repository.pr_branch,
            &target.commit_author,
            tip,
            &files,
            &message,
            request.take_over_branch,
        ) {
            Ok(outcome) => break outcome,
            Err(PublishError::Workspace(error)) if error.is_race() && attempt < PUSH_ATTEMPTS => {
                tracing::warn!("{error}; fetching again and redoing the commit");
            }
            Err(error) => return Err(error.into()),
        }
    };
    let Some(client) = client else {
        return Ok((pushed, None));
    };
    let limits = crate::pull_request::Limits::of(&target.provider);
    let spec = PullRequestSpec {
        source_branch: repository.pr_branch.clone(),
        target_branch: repository.base_branch.clone(),
        title,
        body: variable_updates::describe(content, limits.description),
        reviewers: target.reviewers.clone(),
        labels: target.labels.clone(),
        report: None,
    };
    let opened = crate::runtime::block_on(client.open_or_update(&spec))?.with_context(|| {
        format!(
            "the branch {} was pushed, but the pull request could not be opened or updated; run \
             imagegen vars update --pr again once that is fixed: it finds the branch and updates \
             the pull request",
            repository.pr_branch
        )
    })?;
    Ok((pushed, opened))
}

/// Records when versions were first seen, and forgets versions no longer pending (older than
/// the current value, or proposed and merged): the ledger keeps only what an age rule still
/// counts from.
fn record_seen(
    context: &Context,
    request: &UpdateRequest,
    first_seen: &BTreeMap<String, Vec<String>>,
    pending: &BTreeMap<String, Vec<String>>,
    now: jiff::Timestamp,
) -> anyhow::Result<()> {
    crate::runtime::block_on(async {
        let writer =
            LedgerWriter::open(&context.store, request.lock_timeout, "imagegen vars update")
                .await?;
        let mut ledger = writer.ledger();
        let before = ledger.seen.clone();
        for (variable, versions) in pending {
            let known = ledger.seen.entry(variable.clone()).or_default();
            known.retain(|version, _| versions.contains(version));
            for version in first_seen.get(variable).into_iter().flatten() {
                known.entry(version.clone()).or_insert(now);
            }
            if known.is_empty() {
                ledger.seen.remove(variable);
            }
        }
        if ledger.seen != before {
            writer.replace_all(ledger).await?;
        }
        writer.finish().await;
        Ok::<_, crate::state::StateError>(())
    })??;
    Ok(())
}
