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

use super::consequences::Renamed;
use super::{Consequences, shown};
use crate::catalog::{self, Sources};
use crate::commands::{Context, affected_json, affected_text, count, errors_of};
use crate::definitions::Definition;
use crate::diagnostics::Diagnostics;
use crate::exit::Exit;
use crate::osob::publish::{self, BranchOutcome, PUSH_ATTEMPTS, PublishError};
use crate::osob::workspace::{GitAuth, Workspace};
use crate::output::Table;
use crate::pull_request::variable_updates::{self, Bump, Rebuild, UpdateContent};
use crate::pull_request::{PrClient, PullRequest, PullRequestSpec};
use crate::selection::Selection;
use crate::sources::fetch::{FetchError, FetchSettings, Fetcher};
use crate::sources::version::{self, Candidate, Resolution};
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
    let read = catalog::read_sources(&context.repo);
    let working_text = super::variables_text(&read, "read")?;
    let Some(file) = load_sources_file(context, &working_text)? else {
        return Ok(Exit::Error);
    };
    let selected = select(&file, request)?;
    let target = pull_request_target(&file, request)?;
    // The provider (and its token) first: a run that cannot open the pull request must not
    // push the branch.
    let client = connect_provider(target.as_ref(), request)?;
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
    let fetched = fetch_candidates(request, &selected)?;
    let now = jiff::Timestamp::now();
    let mut resolved = resolve_all(&selected, fetched, &current, &seen, now);
    let change = Change::of(read, &text, &resolved)?;
    change.name_rebuilt_definitions(&mut resolved.reports);

    // What is done: nothing on a dry run or when anything failed; else the file, or the branch
    // and the pull request.
    let done = if change.is_applicable() && !request.dry_run {
        let place = Place {
            target: target.as_ref(),
            base: base.as_ref(),
            client: client.as_ref(),
        };
        carry_out(
            context, request, &place, &text, &change, &resolved, &current,
        )?
    } else {
        Done::default()
    };
    if !request.dry_run && resolved.errors.is_empty() && needs_ledger {
        record_seen(context, request, &resolved, now)?;
    }

    let outcome = Outcome {
        resolved: &resolved,
        change: &change,
        done: &done,
        target: target.as_ref(),
    };
    let exit = outcome.exit(request);
    if context.output.is_json() {
        report_json(context, request, &outcome, exit)?;
    } else {
        report_text(context, request, &outcome)?;
    }
    Ok(exit)
}

/// Reads variable-sources.json against the variables variables.json defines. `None` when it
/// has problems, which are shown; an error when either file is unusable.
fn load_sources_file(context: &Context, working_text: &str) -> anyhow::Result<Option<SourcesFile>> {
    let output = &context.output;
    let (working, problems) = Variables::parse(VARIABLES_FILE, working_text);
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
    if file.is_some() {
        return Ok(file);
    }
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
    Ok(None)
}

/// The pull request provider's client, when a pull request is to be opened.
fn connect_provider(
    target: Option<&PullRequestTarget>,
    request: &UpdateRequest,
) -> anyhow::Result<Option<PrClient>> {
    Ok(match (target, request.dry_run) {
        (Some(target), false) => Some(crate::runtime::block_on(PrClient::connect(
            &target.provider,
        ))??),
        _ => None,
    })
}

/// Where `--pr` proposes the change; `None` without `--pr`.
fn pull_request_target(
    file: &SourcesFile,
    request: &UpdateRequest,
) -> anyhow::Result<Option<PullRequestTarget>> {
    if !request.pr {
        return Ok(None);
    }
    let target = file.pull_request.clone().with_context(|| {
        format!("--pr needs a pull_request section in {SOURCES_FILE}: this repository's URL, base branch and provider (see docs/variable-sources.md)")
    })?;
    Ok(Some(target))
}

/// Each selected variable's candidates from its source, one source after another.
fn fetch_candidates(
    request: &UpdateRequest,
    selected: &[&VariableSource],
) -> anyhow::Result<Vec<Result<Vec<Candidate>, FetchError>>> {
    let fetcher = Fetcher::new(request.fetch.clone()).context("cannot build the HTTP client")?;
    let fetched = crate::runtime::block_on(async {
        let mut results = Vec::new();
        for variable in selected {
            results.push(fetcher.candidates(variable).await);
        }
        results
    })?;
    Ok(fetched)
}

/// What the rules make of every source's answer.
#[derive(Default)]
struct Resolved<'a> {
    reports: Vec<VariableReport>,
    /// The sources that failed, each naming its variable.
    errors: Vec<String>,
    /// The variables with a newer value to propose.
    proposals: Vec<(&'a VariableSource, Resolution)>,
    /// By variable, the versions seen for the first time now.
    first_seen: BTreeMap<String, Vec<String>>,
    /// By variable, the versions newer than its value (held back or proposed): the only ones
    /// whose first-seen date is still worth keeping.
    pending: BTreeMap<String, Vec<String>>,
}

/// Applies each variable's rules to what its source offered, in the order selected.
fn resolve_all<'a>(
    selected: &[&'a VariableSource],
    fetched: Vec<Result<Vec<Candidate>, FetchError>>,
    current: &Variables,
    seen: &BTreeMap<String, BTreeMap<String, jiff::Timestamp>>,
    now: jiff::Timestamp,
) -> Resolved<'a> {
    let empty = BTreeMap::new();
    let mut resolved = Resolved::default();
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
        let seen = seen.get(&variable.name).unwrap_or(&empty);
        match resolve_one(variable, result, value.as_deref(), seen, now) {
            Ok(resolution) => {
                resolved.remember(variable, &resolution);
                report.resolution = Some(resolution);
            }
            Err(error) => {
                resolved.errors.push(error.clone());
                report.error = Some(error);
            }
        }
        resolved.reports.push(report);
    }
    resolved
}

/// One variable's resolution, or why its source or rules gave none.
fn resolve_one(
    variable: &VariableSource,
    fetched: Result<Vec<Candidate>, FetchError>,
    value: Option<&str>,
    seen: &BTreeMap<String, jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Result<Resolution, String> {
    let candidates = fetched.map_err(|error| error.to_string())?;
    version::resolve(
        value.unwrap_or_default(),
        &candidates,
        &variable.format,
        &variable.rules,
        seen,
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
}

impl<'a> Resolved<'a> {
    /// Keeps what the ledger and the proposal need from one variable's resolution.
    fn remember(&mut self, variable: &'a VariableSource, resolution: &Resolution) {
        self.first_seen
            .insert(variable.name.clone(), resolution.first_seen.clone());
        self.pending.insert(
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
            self.proposals.push((variable, resolution.clone()));
        }
    }

    /// The new value of each variable with a proposal.
    fn changes(&self) -> Vec<(String, String)> {
        self.proposals
            .iter()
            .filter_map(|(variable, resolution)| {
                resolution
                    .proposed
                    .as_ref()
                    .map(|offer| (variable.name.clone(), offer.value.clone()))
            })
            .collect()
    }
}

/// The proposals made to variables.json, and what they do to the catalog.
struct Change {
    outcome: SetOutcome,
    consequences: Consequences,
    renamed: Vec<Renamed>,
    catalog_errors: Diagnostics,
    /// A source failed or a definition breaks: nothing is written or pushed.
    blocked: bool,
}

impl Change {
    /// `read` is the repository as read; `text` is variables.json as the change starts from
    /// (the base branch's with `--pr`).
    fn of(read: Sources, text: &str, resolved: &Resolved<'_>) -> anyhow::Result<Self> {
        let outcome = variables::set_values(text, &resolved.changes(), false)
            .with_context(|| format!("{VARIABLES_FILE} was not changed"))?;
        let sources_for_catalog = Sources {
            variables: Some(text.to_string()),
            definitions: read.definitions,
            problems: read.problems,
        };
        let consequences = Consequences::of(&sources_for_catalog, text, &outcome);
        let renamed = consequences.renamed();
        let catalog_errors = errors_of(&consequences.after);
        let blocked = !resolved.errors.is_empty() || !consequences.broken.is_empty();
        Ok(Self {
            outcome,
            consequences,
            renamed,
            catalog_errors,
            blocked,
        })
    }

    /// There is something to write or push, and nothing stops it.
    fn is_applicable(&self) -> bool {
        self.outcome.is_changed() && !self.blocked
    }

    /// The definitions the change rebuilds, each with the changed variables it uses.
    fn affected(&self) -> Vec<(&Definition, Vec<String>)> {
        self.consequences.affected_by(&self.consequences.changed)
    }

    /// Tells each report with a proposal which definitions its variable rebuilds.
    fn name_rebuilt_definitions(&self, reports: &mut [VariableReport]) {
        for report in reports {
            if report
                .resolution
                .as_ref()
                .is_some_and(|r| r.proposed.is_some())
            {
                report.definitions = self
                    .consequences
                    .affected_by(std::slice::from_ref(&report.name))
                    .iter()
                    .map(|(definition, _)| definition.id.clone())
                    .collect();
            }
        }
    }
}

/// Where `--pr` takes the change; all `None` without it.
struct Place<'a> {
    target: Option<&'a PullRequestTarget>,
    base: Option<&'a BaseBranch>,
    /// `None` on a dry run, or for a local provider.
    client: Option<&'a PrClient>,
}

/// What a run did with its change.
#[derive(Default)]
struct Done {
    written: bool,
    branch: Option<BranchOutcome>,
    pull_request: Option<PullRequest>,
    /// Why the change was not made after all (an error, already said as text).
    failure: Option<String>,
}

/// Writes the change into variables.json, or with `--pr` pushes it and opens the pull request.
fn carry_out(
    context: &Context,
    request: &UpdateRequest,
    place: &Place<'_>,
    text: &str,
    change: &Change,
    resolved: &Resolved<'_>,
    current: &Variables,
) -> anyhow::Result<Done> {
    let mut done = Done::default();
    if let (Some(target), Some(base)) = (place.target, place.base) {
        let content = pr_content(&resolved.proposals, current, &change.renamed);
        match propose(
            request,
            target,
            base,
            &change.outcome,
            &content,
            place.client,
        ) {
            Ok((outcome, opened)) => {
                done.branch = Some(outcome);
                done.pull_request = opened;
            }
            Err(error) => done.failure = Some(format!("{error:#}")),
        }
        return Ok(done);
    }
    let path = context.repo.join(VARIABLES_FILE);
    // Only if the file is still what was read: an edit made while the sources were read is
    // not lost.
    let still = || Ok(std::fs::read_to_string(&path)? == text);
    done.written = crate::atomic_file::replace_if(&path, change.outcome.text.as_bytes(), still)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if !done.written {
        done.failure = Some(format!(
            "{VARIABLES_FILE} changed while the sources were read; it was left as it                          is now: run imagegen vars update again"
        ));
    }
    Ok(done)
}

/// Everything a report tells.
struct Outcome<'a> {
    resolved: &'a Resolved<'a>,
    change: &'a Change,
    done: &'a Done,
    target: Option<&'a PullRequestTarget>,
}

impl Outcome<'_> {
    fn exit(&self, request: &UpdateRequest) -> Exit {
        let Self { change, done, .. } = self;
        if change.blocked || done.failure.is_some() || change.catalog_errors.has_errors() {
            Exit::Error
        } else if request.dry_run && change.outcome.is_changed() {
            Exit::Pending
        } else {
            Exit::Ok
        }
    }
}

/// The JSON report.
fn report_json(
    context: &Context,
    request: &UpdateRequest,
    outcome: &Outcome<'_>,
    exit: Exit,
) -> anyhow::Result<()> {
    let Outcome {
        resolved,
        change,
        done,
        ..
    } = outcome;
    let affected = change.affected();
    context.output.json(&json!({
        "file": VARIABLES_FILE,
        "sources": SOURCES_FILE,
        "dry_run": request.dry_run,
        "pr": request.pr,
        "written": done.written,
        "variables": resolved.reports,
        "changes": if change.blocked { &[][..] } else { &change.outcome.changes[..] },
        "definitions": affected_json(&affected),
        "images": change.renamed,
        "broken": change.consequences.broken,
        "branch": done.branch,
        "pull_request": done.pull_request,
        "errors": resolved.errors.iter().chain(done.failure.iter()).collect::<Vec<_>>(),
        "diagnostics": change.catalog_errors,
        "exit_code": exit.code(),
    }))?;
    Ok(())
}

/// The text report: each variable and what it rebuilds, the warnings and errors, and a closing
/// note on what was done.
fn report_text(
    context: &Context,
    request: &UpdateRequest,
    outcome: &Outcome<'_>,
) -> anyhow::Result<()> {
    let output = &context.output;
    let Outcome {
        resolved,
        change,
        done,
        target,
    } = outcome;
    let affected = change.affected();
    output.diagnostics(&change.catalog_errors)?;
    output.text(&render_text(
        &resolved.reports,
        &affected_text(&affected),
        affected.len(),
        &change.renamed,
        change.blocked,
    ))?;
    for same in change.renamed.iter().filter(|renamed| renamed.same_name) {
        output.warning_annotation(crate::platform::Annotation::warning(format!(
            "{} is rebuilt but keeps its image name {}: reconcile refuses it unless a person \
             allows it with --allow-same-name",
            same.definition,
            same.new.join(", ")
        )))?;
    }
    for error in &resolved.errors {
        output.error(error)?;
    }
    let broken = &change.consequences.broken;
    if !broken.is_empty() {
        output.error(&format!(
            "the new values break {} ({}); {VARIABLES_FILE} was not changed",
            count(broken.len(), "definition"),
            broken.join(", ")
        ))?;
    }
    if let Some(error) = &done.failure {
        output.error(error)?;
    }
    let held = resolved.reports.iter().any(|report| {
        report
            .resolution
            .as_ref()
            .is_some_and(|resolution| !resolution.held_back.is_empty())
    });
    let note = if !change.blocked && !change.outcome.is_changed() && held {
        "nothing newer passes the rules (see \"not proposed\" above): nothing was written or \
         pushed"
            .to_string()
    } else {
        closing_note(
            request,
            change.blocked,
            change.outcome.is_changed(),
            done.written,
            done.branch.as_ref(),
            done.pull_request.as_ref(),
            *target,
        )
    };
    output.note(&note)?;
    Ok(())
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
    renamed: &[Renamed],
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
    renamed: &[Renamed],
) -> UpdateContent {
    let row = |renamed: &Renamed| Rebuild {
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
    resolved: &Resolved<'_>,
    now: jiff::Timestamp,
) -> anyhow::Result<()> {
    let Resolved {
        first_seen,
        pending,
        ..
    } = resolved;
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
