//! The OSOB update from start to end: which built images go in, the edit of every mapped file
//! on the tip of the base branch, one commit on the pull-request branch pushed with a lease,
//! and the pull request opened or updated. The dry run stops before the push and shows it all.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use jiff::Timestamp;
use serde::Serialize;

use crate::catalog::Catalog;
use crate::duration;
use crate::osob::edit::{self, EditProblem, FileEdit, ImagePattern};
use crate::osob::mapping::{Mapping, Provider};
use crate::osob::workspace::{GitAuth, Workspace, WorkspaceError};
use crate::pull_request::body::{
    self, DateMove, ImageChange, NotIncluded, NotIncludedStatus, PrContent,
};
use crate::state::{JobStatus, Ledger, SameName};

/// Which images count as built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assume {
    /// Only images a job built from the definition as it is now.
    Built,
    /// Also every image the plan would build, as if every job succeeded (for the dry run of
    /// `reconcile`, which shows the pull request the run would lead to).
    Planned,
}

/// One definition's images on their way into OSOB.
#[derive(Debug, Clone)]
pub struct Target {
    pub definition: String,
    pub files: Vec<String>,
    pub patterns: Vec<ImagePattern>,
    pub new_values: BTreeMap<String, String>,
    pub tracking_id: Option<String>,
    pub built: Option<String>,
    /// Built under the names of the submission before it, as a person allowed
    /// (`--allow-same-name`): the pull request says so.
    pub same_name: Option<SameName>,
}

/// Decides, from the catalog and the ledger, which mapped definitions' images go into OSOB.
/// Returns those, the ones left out with the reason, and the errors that stop the whole update.
/// A definition that cannot be published (a job that produced other names than the definition
/// asks for, or none) is left out with the reason, never such an error: one definition must not
/// hold back the pull request of the others. No error stops the whole update today; the list
/// stays for the callers that report them.
pub fn targets(
    catalog: &Catalog,
    ledger: &Ledger,
    mapping: &Mapping,
    assume: Assume,
) -> (Vec<Target>, Vec<NotIncluded>, Vec<String>) {
    let mut targets = Vec::new();
    let mut left_out = Vec::new();
    let rendered_by_id: BTreeMap<&str, &crate::definitions::Rendered> = catalog
        .rendered
        .iter()
        .map(|rendered| (rendered.id.as_str(), rendered))
        .collect();
    let definitions_by_id: BTreeMap<&str, &crate::definitions::Definition> = catalog
        .definitions
        .iter()
        .map(|definition| (definition.id.as_str(), definition))
        .collect();
    for (id, files) in &mapping.definitions {
        let definition = definitions_by_id.get(id.as_str()).copied();
        let rendered = rendered_by_id.get(id.as_str()).copied();
        let (Some(definition), Some(rendered)) = (definition, rendered) else {
            left_out.push(NotIncluded {
                definition: id.clone(),
                status: NotIncludedStatus::Invalid,
                reason: "the definition has errors (see imagegen validate)".to_string(),
            });
            continue;
        };
        let entry = ledger.definitions.get(id);
        let (tracking_id, built, same_name) = match publishable(id, entry, rendered, assume) {
            Publishable::Yes {
                tracking_id,
                built,
                same_name,
            } => (tracking_id, built, same_name),
            Publishable::LeftOut(not_included) => {
                left_out.push(not_included);
                continue;
            }
        };
        targets.push(Target {
            definition: id.clone(),
            files: files.clone(),
            patterns: patterns(id, definition, rendered, entry),
            new_values: rendered.variables.clone(),
            tracking_id,
            built,
            same_name,
        });
    }
    (targets, left_out, Vec::new())
}

/// Whether a definition's images go into OSOB, and what the pull request says of them.
enum Publishable {
    Yes {
        tracking_id: Option<String>,
        /// When it was built, as the pull request says it.
        built: Option<String>,
        same_name: Option<SameName>,
    },
    LeftOut(NotIncluded),
}

/// A definition's images go in when a job built them from the definition as it is now (or,
/// with [`Assume::Planned`], when the plan would build them), and named what it names.
fn publishable(
    id: &str,
    entry: Option<&crate::state::LedgerEntry>,
    rendered: &crate::definitions::Rendered,
    assume: Assume,
) -> Publishable {
    let built_now = entry.filter(|entry| {
        entry.status == JobStatus::Succeeded && entry.payload_hash == rendered.hash
    });
    let Some(entry) = built_now else {
        return match assume {
            Assume::Planned => Publishable::Yes {
                tracking_id: None,
                built: Some("after this run's build".to_string()),
                same_name: None,
            },
            Assume::Built => Publishable::LeftOut(not_included(id, entry, rendered)),
        };
    };
    let missing: Vec<&String> = rendered
        .image_names
        .iter()
        .filter(|name| !entry.adopted && !entry.image_names.contains(name))
        .collect();
    if !missing.is_empty() {
        return Publishable::LeftOut(NotIncluded {
            definition: id.to_string(),
            status: NotIncludedStatus::OtherImages,
            reason: format!(
                "job {} produced {}, not {} that the definition names; nothing of it goes into \
                 OSOB",
                entry.tracking_id.as_deref().unwrap_or("(none)"),
                list_or_none(&entry.image_names),
                missing
                    .iter()
                    .map(|name| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Publishable::Yes {
        tracking_id: entry.tracking_id.clone(),
        built: Some(built_text(entry)),
        same_name: entry.same_name_allowed.clone(),
    }
}

/// The patterns that find a definition's images in OSOB: each `CustomImageName` template, its
/// placeholders matching the values the variables have now or had at the last submission.
fn patterns(
    id: &str,
    definition: &crate::definitions::Definition,
    rendered: &crate::definitions::Rendered,
    entry: Option<&crate::state::LedgerEntry>,
) -> Vec<ImagePattern> {
    let mut known_values: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let earlier = entry.map(|entry| &entry.variables);
    for (name, value) in rendered
        .variables
        .iter()
        .chain(earlier.into_iter().flatten())
    {
        known_values
            .entry(name.clone())
            .or_default()
            .push(value.clone());
    }
    definition
        .image_name_templates
        .iter()
        .zip(&rendered.image_names)
        .map(|(template, new_name)| ImagePattern::new(id, template, new_name, &known_values))
        .collect()
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "no image".to_string()
    } else {
        names.join(", ")
    }
}

fn built_text(entry: &crate::state::LedgerEntry) -> String {
    if entry.adopted {
        return "adopted (built before imagegen)".to_string();
    }
    let ended = entry.completed_at.unwrap_or(entry.updated_at);
    let mut text = ended.strftime("%Y-%m-%d %H:%M UTC").to_string();
    if let Some(started) = entry.submitted_at
        && let Ok(took) = std::time::Duration::try_from(ended.duration_since(started))
    {
        text.push_str(&format!(", {}", duration::display(took)));
    }
    text
}

fn not_included(
    id: &str,
    entry: Option<&crate::state::LedgerEntry>,
    rendered: &crate::definitions::Rendered,
) -> NotIncluded {
    let job = |entry: &crate::state::LedgerEntry| {
        entry
            .tracking_id
            .as_deref()
            .map_or("the job".to_string(), |id| format!("job {id}"))
    };
    let (status, reason) = match entry {
        None => (
            NotIncludedStatus::NotBuilt,
            "never submitted; run imagegen reconcile".to_string(),
        ),
        Some(entry) if entry.status == JobStatus::NoImages => (
            NotIncludedStatus::Job(entry.status),
            format!(
                "{}: {}",
                job(entry),
                entry.message.as_deref().unwrap_or("no image listed")
            ),
        ),
        Some(entry) if entry.status.is_pending() => (
            NotIncludedStatus::Job(entry.status),
            format!("{} is still building", job(entry)),
        ),
        Some(entry) if entry.status.is_unsuccessful() => (
            NotIncludedStatus::Job(entry.status),
            format!(
                "{} {}: {}",
                job(entry),
                entry.status,
                entry.message.as_deref().unwrap_or("no message")
            ),
        ),
        Some(entry) => match crate::plan::same_name(
            Some(entry),
            &rendered.hash,
            &rendered.image_names,
            &rendered.variables,
        ) {
            // Planned as refused: reviewers learn why the image stays as it is.
            Some(same_name) => (
                NotIncludedStatus::SameName,
                format!(
                    "the definition changed since {} built it ({}) but keeps the image name {}: \
                     it is not rebuilt until its name changes, or a person allows it with \
                     --allow-same-name",
                    job(entry),
                    same_name.changed(),
                    same_name.image_names.join(", ")
                ),
            ),
            None => (
                NotIncludedStatus::Changed,
                format!(
                    "the definition changed since {} built it; the new payload is not built yet",
                    job(entry)
                ),
            ),
        },
    };
    NotIncluded {
        definition: id.to_string(),
        status,
        reason,
    }
}

/// The edits of every mapped file, read from the tip of the base branch.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    pub edits: Vec<FileEdit>,
    pub content: PrContent,
}

impl Prepared {
    pub fn changed_files(&self) -> Vec<&FileEdit> {
        self.edits.iter().filter(|edit| edit.changed()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.changed_files().is_empty()
    }
}

/// Reads each mapped file at `base` and edits it; every problem of every file is returned.
pub fn prepare(
    workspace: &Workspace,
    base: git2::Oid,
    targets: &[Target],
    not_included: Vec<NotIncluded>,
    mapping: &Mapping,
    today: jiff::civil::Date,
) -> Result<Prepared, Vec<EditProblem>> {
    let mut by_file: BTreeMap<&str, Vec<&ImagePattern>> = BTreeMap::new();
    for target in targets {
        for file in &target.files {
            by_file.entry(file).or_default().extend(&target.patterns);
        }
    }
    let review = mapping.review_dates.as_ref().map(|review| (review, today));
    let mut edits = Vec::new();
    let mut problems = Vec::new();
    for (file, patterns) in by_file {
        let missing = |message: String| EditProblem {
            path: file.to_string(),
            line: None,
            column: None,
            message,
        };
        let bytes = match workspace.read(base, file) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                problems.push(missing(format!(
                    "is not in OSOB's {} branch: fix its path in osob-mapping/osob.json",
                    mapping.repository.base_branch
                )));
                continue;
            }
            Err(error) => {
                problems.push(missing(error.to_string()));
                continue;
            }
        };
        let Ok(text) = String::from_utf8(bytes) else {
            problems.push(missing(
                "is not UTF-8 text, so imagegen leaves it alone".into(),
            ));
            continue;
        };
        match edit::edit_file(file, &text, &patterns, review) {
            Ok(edit) => edits.push(edit),
            Err(mut found) => problems.append(&mut found),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let content = content(targets, &edits, not_included);
    Ok(Prepared { edits, content })
}

/// What the pull request tells reviewers, from the targets and the edits.
fn content(targets: &[Target], edits: &[FileEdit], not_included: Vec<NotIncluded>) -> PrContent {
    let mut changes = Vec::new();
    for target in targets {
        for pattern in &target.patterns {
            let replaced: Vec<_> = edits
                .iter()
                .flat_map(|edit| &edit.replacements)
                .filter(|r| r.definition == target.definition && r.new == pattern.new_name)
                .filter(|r| r.old != r.new)
                .collect();
            if replaced.is_empty() {
                if let Some(change) = same_name_change(target, pattern, edits) {
                    changes.push(change);
                }
                continue;
            }
            let built = match kept_name(target, pattern) {
                Some(_) => Some(same_name_note(target)),
                None => target.built.clone(),
            };
            let old_names: BTreeSet<String> = replaced.iter().map(|r| r.old.clone()).collect();
            let mut variables = BTreeSet::new();
            for replacement in &replaced {
                for (name, old) in &replacement.old_values {
                    if let Some(new) = target.new_values.get(name)
                        && new != old
                    {
                        variables.insert((name.clone(), old.clone(), new.clone()));
                    }
                }
            }
            changes.push(ImageChange {
                definition: target.definition.clone(),
                old_names: old_names.into_iter().collect(),
                new_name: pattern.new_name.clone(),
                variables: variables.into_iter().collect(),
                tracking_id: target.tracking_id.clone(),
                built,
            });
        }
    }
    let dates = edits
        .iter()
        .flat_map(|edit| {
            edit.dates.iter().map(|date| DateMove {
                file: edit.path.clone(),
                line: date.line,
                key: date.key.clone(),
                old: date.old.clone(),
                new: date.new.clone(),
            })
        })
        .collect();
    let files = edits
        .iter()
        .filter(|edit| edit.changed())
        .map(|edit| {
            let names = edit.replacements.iter().filter(|r| r.old != r.new).count();
            (edit.path.clone(), names)
        })
        .collect();
    PrContent {
        changes,
        not_included,
        dates,
        files,
    }
}

/// What the target kept of its last submission's names, when `pattern`'s image is one of them.
fn kept_name<'a>(target: &'a Target, pattern: &ImagePattern) -> Option<&'a SameName> {
    target
        .same_name
        .as_ref()
        .filter(|same_name| same_name.image_names.contains(&pattern.new_name))
}

/// The "built" cell of an image rebuilt under a name it had before, as a person allowed.
fn same_name_note(target: &Target) -> String {
    format!(
        "{}; rebuilt under the same name with new content, allowed with --allow-same-name",
        target.built.as_deref().unwrap_or("built")
    )
}

/// The row for an image rebuilt under the name OSOB already holds, which a person allowed: no
/// name changes, so only this row tells reviewers that new content is behind the name.
fn same_name_change(
    target: &Target,
    pattern: &ImagePattern,
    edits: &[FileEdit],
) -> Option<ImageChange> {
    let same_name = kept_name(target, pattern)?;
    let named_in_osob = edits
        .iter()
        .flat_map(|edit| &edit.replacements)
        .any(|r| r.definition == target.definition && r.new == pattern.new_name);
    if !named_in_osob {
        return None;
    }
    let value = |value: &Option<String>| value.clone().unwrap_or_else(|| "(not used)".into());
    Some(ImageChange {
        definition: target.definition.clone(),
        old_names: vec![pattern.new_name.clone()],
        new_name: pattern.new_name.clone(),
        variables: same_name
            .variable_changes
            .iter()
            .map(|change| (change.name.clone(), value(&change.old), value(&change.new)))
            .collect(),
        tracking_id: target.tracking_id.clone(),
        built: Some(same_name_note(target)),
    })
}

/// The commit message: the title, then every name and date that changes.
pub fn commit_message(content: &PrContent) -> String {
    let mut message = body::title(content);
    message.push_str("\n\n");
    for change in &content.changes {
        for old in &change.old_names {
            message.push_str(&format!(
                "{}: {old} -> {}\n",
                change.definition, change.new_name
            ));
        }
    }
    for date in &content.dates {
        message.push_str(&format!(
            "{}:{} {}: {} -> {}\n",
            date.file, date.line, date.key, date.old, date.new
        ));
    }
    message.push_str("\nMade by imagegen.\n");
    message
}

/// The unified diff of one edited file, as `git diff` would show it.
pub fn unified_diff(edit: &FileEdit) -> String {
    similar::TextDiff::from_lines(&edit.original, &edit.edited)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{}", edit.path), &format!("b/{}", edit.path))
        .to_string()
}

/// The URL of the OSOB repository to use, and the git credentials for it.
pub fn osob_url(mapping: &Mapping, override_url: Option<&str>) -> String {
    override_url
        .map(str::to_string)
        .unwrap_or_else(|| mapping.repository.url.clone())
}

/// Where the bare cache of the OSOB repository lives for a repository.
pub fn cache_path(repo: &Path) -> std::path::PathBuf {
    repo.join(".imagegen").join("osob-cache.git")
}

/// Git credentials for an https OSOB URL, from the provider's token variables.
pub fn git_auth(url: &str, provider: &Provider) -> Option<GitAuth> {
    if !url.starts_with("https://") {
        return None;
    }
    let (username, token) = crate::pull_request::git_credentials(provider)?;
    Some(GitAuth {
        username: username.to_string(),
        token: secrecy::SecretString::from(token),
    })
}

/// What became of the branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "branch")]
pub enum BranchOutcome {
    /// The base branch already names every built image: nothing to push.
    NothingToDo,
    /// The branch already held exactly this change.
    UpToDate { commit: String },
    Pushed {
        commit: String,
        replaced: Option<String>,
    },
}

/// Commits the edits on the base tip and pushes the pull-request branch, refusing to replace
/// commits that are not the bot's unless `take_over`. Returns what happened.
pub fn push_branch(
    workspace: &Workspace,
    mapping: &Mapping,
    base: git2::Oid,
    prepared: &Prepared,
    take_over: bool,
) -> Result<BranchOutcome, PublishError> {
    let branch = &mapping.repository.pr_branch;
    let files: Vec<(String, Vec<u8>)> = prepared
        .changed_files()
        .iter()
        .map(|edit| (edit.path.clone(), edit.edited.clone().into_bytes()))
        .collect();
    if files.is_empty() {
        return Ok(BranchOutcome::NothingToDo);
    }
    let message = commit_message(&prepared.content);
    push_commit(
        workspace,
        branch,
        &mapping.commit_author,
        base,
        &files,
        &message,
        take_over,
    )
}

/// Commits `files` on `base` and pushes the commit to `branch` with a lease: the branch is
/// rebuilt from the base each time, a branch already holding exactly this change is left as
/// it is, and one holding commits by anyone but `author` is left alone unless `take_over`.
/// The OSOB branch and the variable updates' branch follow these same rules.
pub fn push_commit(
    workspace: &Workspace,
    branch: &str,
    author: &crate::osob::mapping::CommitAuthor,
    base: git2::Oid,
    files: &[(String, Vec<u8>)],
    message: &str,
    take_over: bool,
) -> Result<BranchOutcome, PublishError> {
    let current = workspace.tip(branch);
    if let Some(tip) = current {
        let foreign = workspace.foreign_commits(tip, base, author)?;
        if !foreign.is_empty() && !take_over {
            return Err(PublishError::ForeignCommits {
                branch: branch.to_string(),
                commits: foreign
                    .iter()
                    .map(|c| format!("{} by {}: {}", &c.id[..12], c.author, c.summary))
                    .collect(),
            });
        }
    }
    let commit = workspace.commit(base, files, message, author)?;
    if let Some(tip) = current
        && workspace.is_same_change(tip, base, commit)
    {
        return Ok(BranchOutcome::UpToDate {
            commit: tip.to_string(),
        });
    }
    workspace.push(branch, commit, current)?;
    Ok(BranchOutcome::Pushed {
        commit: commit.to_string(),
        replaced: current.map(|tip| tip.to_string()),
    })
}

/// How many times a push that lost a race is redone from a fresh fetch.
pub const PUSH_ATTEMPTS: usize = 3;

/// What [`update_branch`] is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct BranchOptions {
    /// Edit and report, but push nothing.
    pub dry_run: bool,
    /// Rebuild the branch even if someone else committed to it.
    pub take_over: bool,
    pub today: jiff::civil::Date,
}

/// Fetches, edits every mapped file at the base tip and (unless a dry run, or nothing changes)
/// pushes the branch. A push that lost a race to another writer is redone from a fresh fetch,
/// up to [`PUSH_ATTEMPTS`] times; `on_retry` hears of each. `before_push` runs just before each
/// push (tests use it to race).
pub fn update_branch(
    workspace: &Workspace,
    mapping: &Mapping,
    targets: &[Target],
    not_included: &[NotIncluded],
    options: BranchOptions,
    mut before_push: impl FnMut(usize),
    mut on_retry: impl FnMut(&WorkspaceError),
) -> Result<(Prepared, Option<BranchOutcome>), PublishError> {
    let repository = &mapping.repository;
    let mut attempt = 0;
    loop {
        attempt += 1;
        workspace.fetch(&[&repository.base_branch, &repository.pr_branch])?;
        let base = workspace.required_tip(&repository.base_branch)?;
        let prepared = prepare(
            workspace,
            base,
            targets,
            not_included.to_vec(),
            mapping,
            options.today,
        )
        .map_err(|problems| PublishError::Edit { problems })?;
        if options.dry_run || prepared.is_empty() {
            return Ok((prepared, None));
        }
        before_push(attempt);
        match push_branch(workspace, mapping, base, &prepared, options.take_over) {
            Ok(outcome) => return Ok((prepared, Some(outcome))),
            Err(PublishError::Workspace(error)) if error.is_race() && attempt < PUSH_ATTEMPTS => {
                on_retry(&error);
            }
            Err(error) => return Err(error),
        }
    }
}

/// Why the OSOB update stopped.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error(
        "the branch {branch} holds commits that are not imagegen's, so it was left untouched:\n  {}\n\
         Merge or close that work, delete the branch, or run again with --take-over-branch",
        commits.join("\n  ")
    )]
    ForeignCommits {
        branch: String,
        commits: Vec<String>,
    },
    #[error("{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Edit { problems: Vec<EditProblem> },
}

/// Today's date in UTC, for review dates.
pub fn today() -> jiff::civil::Date {
    Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osob::edit::Replacement;
    use crate::variables::ValueChange;

    fn target(same_name: Option<SameName>) -> Target {
        Target {
            definition: "vs/a".into(),
            files: vec!["queues.yml".into()],
            patterns: vec![ImagePattern::new(
                "vs/a",
                "Helix-A_{V}",
                "Helix-A_2",
                &BTreeMap::new(),
            )],
            new_values: BTreeMap::from([("V".to_string(), "2".to_string())]),
            tracking_id: Some("job-a".into()),
            built: Some("2026-11-23 12:41 UTC, 2h 41m".into()),
            same_name,
        }
    }

    /// A file of OSOB naming `old` where the image of vs/a is.
    fn osob_edit(old: &str) -> FileEdit {
        FileEdit {
            path: "queues.yml".into(),
            original: format!("Image: {old}\n"),
            edited: "Image: Helix-A_2\n".into(),
            replacements: vec![Replacement {
                definition: "vs/a".into(),
                line: 1,
                column: 8,
                old: old.into(),
                new: "Helix-A_2".into(),
                old_values: BTreeMap::from([(
                    "V".to_string(),
                    old.trim_start_matches("Helix-A_").to_string(),
                )]),
            }],
            dates: Vec::new(),
        }
    }

    fn allowed() -> SameName {
        SameName {
            image_names: vec!["Helix-A_2".into()],
            variable_changes: vec![ValueChange {
                name: "URL".into(),
                old: Some("https://x.test".into()),
                new: Some("https://y.test".into()),
            }],
        }
    }

    #[test]
    fn a_rebuild_under_the_same_name_is_told_in_the_pull_request() {
        // OSOB names the image already: no name changes, and only this row says new content
        // is behind it.
        let kept = content(
            &[target(Some(allowed()))],
            &[osob_edit("Helix-A_2")],
            Vec::new(),
        );
        assert_eq!(kept.changes.len(), 1);
        let row = &kept.changes[0];
        assert_eq!(row.old_names, ["Helix-A_2"]);
        assert_eq!(row.new_name, "Helix-A_2");
        assert_eq!(
            row.variables,
            [(
                "URL".to_string(),
                "https://x.test".to_string(),
                "https://y.test".to_string()
            )]
        );
        assert_eq!(
            row.built.as_deref(),
            Some(
                "2026-11-23 12:41 UTC, 2h 41m; rebuilt under the same name with new content, \
                 allowed with --allow-same-name"
            )
        );
        // Without the allowance, a name OSOB already holds is no change at all.
        let unchanged = content(&[target(None)], &[osob_edit("Helix-A_2")], Vec::new());
        assert!(unchanged.changes.is_empty());
        // When OSOB still names an older image, the row that changes the name says it too.
        let renamed = content(
            &[target(Some(allowed()))],
            &[osob_edit("Helix-A_1")],
            Vec::new(),
        );
        assert_eq!(renamed.changes[0].old_names, ["Helix-A_1"]);
        assert!(
            renamed.changes[0]
                .built
                .as_deref()
                .unwrap()
                .ends_with("allowed with --allow-same-name")
        );
    }
}
