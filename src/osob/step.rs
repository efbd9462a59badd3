//! The OSOB step of a run, whole: the provider's client, which built images go in, the edits at
//! the base tip, the push, and the pull request opened or updated, returned as a typed report
//! that the commands render (text, JSON, markdown). Also the preview `reconcile --dry-run`
//! shows: the same edits for the images the plan would build, with nothing pushed.

use git2::Oid;
use std::path::Path;

use crate::catalog::Catalog;
use crate::exit::Exit;
use crate::osob::mapping::{self, MAPPING_FILE, Mapping, Provider};
use crate::osob::publish::{self, Assume, BranchOptions, BranchOutcome, Prepared, PublishError};
use crate::osob::workspace::{Workspace, WorkspaceError};
use crate::pull_request::body::{self, NotIncluded};
use crate::pull_request::{Limits, PrClient, PullRequest, PullRequestSpec};
use crate::runtime::RuntimeError;
use crate::state::Ledger;

/// How the OSOB step runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepOptions<'a> {
    /// Read OSOB and make the edits and the pull request; push nothing, call nothing.
    pub dry_run: bool,
    /// Rebuild the branch even if someone else committed to it.
    pub take_over_branch: bool,
    /// Another OSOB repository than the mapping's.
    pub osob_url: Option<&'a str>,
}

/// What the OSOB step came to.
#[derive(Debug)]
pub struct StepReport {
    /// Pushes that lost a race and were redone from a fresh fetch, each as a line to tell.
    pub retries: Vec<String>,
    pub result: StepResult,
}

/// How the OSOB step ended.
#[derive(Debug)]
pub enum StepResult {
    /// Problems stopped it; each says whether anything was pushed.
    Stopped { problems: Vec<String> },
    /// OSOB names every image built already, or none is built: nothing to push.
    NothingToDo(NothingToDo),
    /// Files change: the branch, and the pull request.
    Changed(Box<Change>),
}

/// OSOB left as it is.
#[derive(Debug)]
pub struct NothingToDo {
    pub dry_run: bool,
    pub osob: String,
    pub base_branch: String,
    /// How many definitions have an image built from them as they are now.
    pub built: usize,
    pub not_included: Vec<NotIncluded>,
}

/// The change to OSOB: the edited files, the branch and the pull request.
#[derive(Debug)]
pub struct Change {
    pub dry_run: bool,
    /// The OSOB repository, as its workspace names it.
    pub osob: String,
    pub base_branch: String,
    pub pr_branch: String,
    pub provider: Provider,
    pub prepared: Prepared,
    pub title: String,
    pub description: body::Description,
    /// What became of the branch; `None` in a dry run.
    pub branch: Option<BranchOutcome>,
    /// The pull request opened or updated, when the provider has one and the branch was pushed.
    pub pull_request: Option<PullRequest>,
}

/// What `reconcile --dry-run` shows of OSOB.
#[derive(Debug)]
pub enum Preview {
    /// OSOB names every image the plan leads to already.
    AlreadyNamed { osob: String, base_branch: String },
    /// The edits and the pull request the run would lead to.
    Changed(Box<Change>),
}

/// Why the OSOB step could not start.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
}

impl StepReport {
    /// The step stopped on `problems`, before anything was pushed unless they say so.
    pub fn stopped(problems: Vec<String>) -> Self {
        Self {
            retries: Vec::new(),
            result: StepResult::Stopped { problems },
        }
    }

    /// 1 when problems stopped it; 2 for a dry run that would change OSOB; else 0.
    pub fn exit_code(&self) -> Exit {
        match &self.result {
            StepResult::Stopped { .. } => Exit::Error,
            StepResult::NothingToDo(_) => Exit::Ok,
            StepResult::Changed(change) if change.dry_run => Exit::Pending,
            StepResult::Changed(_) => Exit::Ok,
        }
    }

    /// The problems that stopped the step; none when it ran to its end.
    pub fn problems(&self) -> &[String] {
        match &self.result {
            StepResult::Stopped { problems } => problems,
            _ => &[],
        }
    }

    /// The pull request opened or updated, if any.
    pub fn pull_request(&self) -> Option<&PullRequest> {
        match &self.result {
            StepResult::Changed(change) => change.pull_request.as_ref(),
            _ => None,
        }
    }
}

/// Runs the OSOB step for `ledger`: edits every mapped file for the images built from the
/// current definitions, pushes the branch, and opens or updates the one pull request. A problem
/// that stops the step is in the report; an error means it could not start.
pub fn run(
    repo: &Path,
    mapping: &Mapping,
    catalog: &Catalog,
    ledger: &Ledger,
    options: StepOptions<'_>,
) -> Result<StepReport, StepError> {
    // The provider (and its token) first: a run that cannot open the pull request must not
    // push the branch.
    let client = if options.dry_run {
        None
    } else {
        match crate::runtime::block_on(PrClient::connect(&mapping.provider))? {
            Ok(client) => Some(client),
            Err(error) => return Ok(StepReport::stopped(vec![error.to_string()])),
        }
    };
    let (targets, not_included, errors) = publish::targets(catalog, ledger, mapping, Assume::Built);
    if !errors.is_empty() {
        return Ok(StepReport::stopped(errors));
    }
    let workspace = open_workspace(repo, mapping, options.osob_url)?;
    let branch_options = BranchOptions {
        dry_run: options.dry_run,
        take_over: options.take_over_branch,
        today: publish::today(),
    };
    let mut retries = Vec::new();
    let updated = publish::update_branch(
        &workspace,
        mapping,
        &targets,
        &not_included,
        branch_options,
        |_| {},
        |error| retries.push(format!("{error}; fetching again and redoing the edit")),
    );
    let report = |result| StepReport { retries, result };
    let (prepared, branch) = match updated {
        Ok(updated) => updated,
        Err(PublishError::Edit { problems }) => {
            let problems = problems.iter().map(ToString::to_string).collect();
            return Ok(report(StepResult::Stopped { problems }));
        }
        Err(error) => {
            return Ok(report(StepResult::Stopped {
                problems: vec![error.to_string()],
            }));
        }
    };
    if targets.is_empty() || prepared.is_empty() {
        return Ok(report(StepResult::NothingToDo(NothingToDo {
            dry_run: options.dry_run,
            osob: workspace.url(),
            base_branch: mapping.repository.base_branch.clone(),
            built: targets.len(),
            not_included,
        })));
    }
    let mut change = change(&workspace, mapping, prepared, options.dry_run);
    change.branch = branch;
    if let (Some(_), Some(client)) = (&change.branch, &client) {
        match open_pull_request(client, mapping, &change) {
            Ok(pull_request) => change.pull_request = pull_request,
            Err(error) => {
                return Ok(report(StepResult::Stopped {
                    problems: vec![format!(
                        "the branch {} was pushed, but the pull request could not be opened or \
                         updated: {error:#}. Run imagegen pr again once that is fixed: it finds \
                         the branch and updates the pull request",
                        mapping.repository.pr_branch
                    )],
                }));
            }
        }
    }
    Ok(report(StepResult::Changed(Box::new(change))))
}

/// The OSOB part of `reconcile --dry-run`: the edits and pull request this run would lead to if
/// every planned job succeeds, read from `osob_url` when given, else from the mapping's URL.
/// `None` when the repository has no mapping; the reason when the preview cannot be made.
pub fn preview(
    repo: &Path,
    catalog: &Catalog,
    ledger: &Ledger,
    osob_url: Option<&str>,
) -> Option<Result<Preview, String>> {
    let (mapping, problems) = mapping::load(repo, &catalog.ids());
    let mapping = mapping?;
    if problems.iter().any(|problem| problem.is_error()) {
        return Some(Err(format!(
            "{MAPPING_FILE} has errors (see imagegen validate)"
        )));
    }
    Some(preview_with(repo, catalog, ledger, &mapping, osob_url))
}

fn preview_with(
    repo: &Path,
    catalog: &Catalog,
    ledger: &Ledger,
    mapping: &Mapping,
    osob_url: Option<&str>,
) -> Result<Preview, String> {
    let (targets, not_included, errors) =
        publish::targets(catalog, ledger, mapping, Assume::Planned);
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let (workspace, base) =
        fetched_base(repo, mapping, osob_url).map_err(|error| error.to_string())?;
    let base_branch = &mapping.repository.base_branch;
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
        return Ok(Preview::AlreadyNamed {
            osob: workspace.url(),
            base_branch: base_branch.clone(),
        });
    }
    Ok(Preview::Changed(Box::new(change(
        &workspace, mapping, prepared, true,
    ))))
}

/// The workspace of the OSOB repository at `osob_url`, else the mapping's, with the provider's
/// credentials for https.
fn open_workspace(
    repo: &Path,
    mapping: &Mapping,
    osob_url: Option<&str>,
) -> Result<Workspace, WorkspaceError> {
    let url = publish::osob_url(mapping, osob_url);
    Workspace::open(
        &publish::cache_path(repo),
        &url,
        publish::git_auth(&url, &mapping.provider),
    )
}

/// The OSOB workspace of `repo`'s cache, with the mapping's base branch fetched, and its tip:
/// what a preview and the fleet view read the OSOB files at.
pub fn fetched_base(
    repo: &Path,
    mapping: &Mapping,
    osob_url: Option<&str>,
) -> Result<(Workspace, Oid), WorkspaceError> {
    let workspace = open_workspace(repo, mapping, osob_url)?;
    let base_branch = &mapping.repository.base_branch;
    workspace.fetch(&[base_branch])?;
    let base = workspace.required_tip(base_branch)?;
    Ok((workspace, base))
}

/// The change the edits make, with the pull request that tells it; no branch or pull request
/// yet.
fn change(workspace: &Workspace, mapping: &Mapping, prepared: Prepared, dry_run: bool) -> Change {
    let title = body::title(&prepared.content);
    let limits = Limits::of(&mapping.provider);
    let description = body::describe(&prepared.content, limits.description, limits.comment);
    Change {
        dry_run,
        osob: workspace.url(),
        base_branch: mapping.repository.base_branch.clone(),
        pr_branch: mapping.repository.pr_branch.clone(),
        provider: mapping.provider.clone(),
        prepared,
        title,
        description,
        branch: None,
        pull_request: None,
    }
}

/// Opens or updates the pull request of `change` through `client`.
fn open_pull_request(
    client: &PrClient,
    mapping: &Mapping,
    change: &Change,
) -> anyhow::Result<Option<PullRequest>> {
    let spec = PullRequestSpec {
        source_branch: mapping.repository.pr_branch.clone(),
        target_branch: mapping.repository.base_branch.clone(),
        title: change.title.clone(),
        body: change.description.body.clone(),
        report: change.description.report.clone(),
        reviewers: mapping.reviewers.clone(),
        labels: mapping.labels.clone(),
    };
    Ok(crate::runtime::block_on(client.open_or_update(&spec))??)
}
