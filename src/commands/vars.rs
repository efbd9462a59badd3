//! `imagegen vars`: variables.json listed with how many definitions use each variable (`list`),
//! changed in place with every other byte kept (`set`), and compared with a git revision
//! (`diff`), each naming the definitions a change rebuilds.

use crate::exit::Exit;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;
use serde_json::json;

use super::{Context, affected_json, affected_text, count, errors_of, exit_for};
use crate::catalog::{self, Catalog};
use crate::definitions::Definition;
use crate::diagnostics::Diagnostics;
use crate::output::Table;
use crate::variables::{self, SetChange, SetStatus, VARIABLES_FILE, ValueChange, Variables};

mod consequences;
pub mod update;

pub(crate) use consequences::Consequences;

/// What `imagegen vars` is asked to do.
#[derive(Debug, Clone)]
pub enum VarsRequest {
    List,
    Set(SetRequest),
    Diff(DiffRequest),
    Update(Box<update::UpdateRequest>),
}

/// `imagegen vars set NAME=VALUE...`.
#[derive(Debug, Clone, Default)]
pub struct SetRequest {
    /// Each name with its new value, in the order given.
    pub changes: Vec<(String, String)>,
    /// Append names variables.json does not define yet, instead of refusing them.
    pub add: bool,
    /// Show the changes and the rebuilds; write nothing.
    pub dry_run: bool,
}

/// `imagegen vars diff <REV>`.
#[derive(Debug, Clone)]
pub struct DiffRequest {
    /// Any revision git understands: `HEAD~1`, a branch, a tag, a sha.
    pub revision: String,
}

/// Runs one `imagegen vars` subcommand.
pub fn vars(context: &Context, request: VarsRequest) -> anyhow::Result<Exit> {
    match request {
        VarsRequest::List => list(context),
        VarsRequest::Set(request) => set(context, &request),
        VarsRequest::Diff(request) => diff(context, &request),
        VarsRequest::Update(request) => update::update(context, &request),
    }
}

/// A value as people read it: quoted only when it would otherwise be hard to see (empty, with
/// spaces or control characters).
/// A value too long to show whole is cut, with its length, and left unquoted.
fn shown(value: &str) -> String {
    let cut = crate::output::shown(value);
    if matches!(cut, std::borrow::Cow::Borrowed(_))
        && (value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        format!("{value:?}")
    } else {
        cut.into_owned()
    }
}

#[derive(Serialize)]
struct ListedVariable<'a> {
    name: &'a str,
    value: &'a str,
    line: Option<usize>,
    /// How many definitions use the variable.
    definitions: usize,
    unused: bool,
}

/// `imagegen vars list`: every variable in file order, with how many definitions use it.
pub fn list(context: &Context) -> anyhow::Result<Exit> {
    let catalog = Catalog::load(&context.repo);
    let errors = errors_of(&catalog);
    let listed: Vec<ListedVariable> = catalog
        .variables
        .iter()
        .map(|(name, value)| {
            let definitions = catalog.affected_by(&[name.to_string()]).len();
            ListedVariable {
                name,
                value,
                line: catalog.variables.line_of(name),
                definitions,
                unused: definitions == 0,
            }
        })
        .collect();
    let output = &context.output;
    if output.is_json() {
        output.json(&json!({
            "file": VARIABLES_FILE,
            "variables": listed,
            "diagnostics": errors,
        }))?;
    } else {
        output.diagnostics(&errors)?;
        let mut table = Table::default();
        for row in &listed {
            let used = if row.unused {
                "unused".to_string()
            } else {
                count(row.definitions, "definition")
            };
            table.row(&[row.name, &shown(row.value), &used]);
        }
        output.text(&table.render())?;
        output.note(&format!(
            "{} in {VARIABLES_FILE}",
            count(listed.len(), "variable")
        ))?;
    }
    Ok(exit_for(&errors))
}

/// `vars set --output json`.
#[derive(Serialize)]
struct SetReport<'a> {
    file: &'static str,
    dry_run: bool,
    /// True when variables.json was rewritten by this run.
    written: bool,
    changes: &'a [SetChange],
    /// The definitions that use a changed variable, as `imagegen affected` lists them.
    definitions: Vec<serde_json::Value>,
    /// Definitions that render now but would not with the new values: then nothing is written.
    broken: &'a [String],
    diagnostics: &'a Diagnostics,
}

/// `imagegen vars set`: changes values in variables.json in place (or shows the change with
/// `--dry-run`), then lists the definitions that the change rebuilds.
pub fn set(context: &Context, request: &SetRequest) -> anyhow::Result<Exit> {
    let path = context.repo.join(VARIABLES_FILE);
    let sources = catalog::read_sources(&context.repo);
    let text = variables_text(&sources, "edit")?;
    let outcome = variables::set_values(&text, &request.changes, request.add)
        .with_context(|| format!("{VARIABLES_FILE} was not changed"))?;

    let consequences = Consequences::of(&sources, &text, &outcome);
    let Consequences {
        after,
        broken,
        changed,
        ..
    } = &consequences;
    let affected = after.affected_by(changed);
    let errors = errors_of(after);

    let write = outcome.is_changed() && broken.is_empty() && !request.dry_run;
    if write {
        crate::atomic_file::replace(&path, outcome.text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }

    let output = &context.output;
    if output.is_json() {
        output.json(&SetReport {
            file: VARIABLES_FILE,
            dry_run: request.dry_run,
            written: write,
            changes: &outcome.changes,
            definitions: affected_json(&affected),
            broken,
            diagnostics: &errors,
        })?;
    } else {
        output.diagnostics(&errors)?;
        output.text(&render_set(&outcome.changes, &affected, broken))?;
        note_set(output, request, &outcome, changed, &affected, broken)?;
    }
    Ok(if broken.is_empty() {
        exit_for(&errors)
    } else {
        crate::exit::Exit::Error
    })
}

/// The text of variables.json as read, or why the command, which needs it to `verb` it
/// (`edit`, `read`), cannot.
fn variables_text(sources: &crate::catalog::Sources, verb: &str) -> anyhow::Result<String> {
    if let Some(text) = &sources.variables {
        return Ok(text.clone());
    }
    let problems: Vec<String> = sources
        .problems
        .iter()
        .filter(|problem| problem.file.as_deref() == Some(VARIABLES_FILE))
        .map(ToString::to_string)
        .collect();
    anyhow::bail!("cannot {verb} {VARIABLES_FILE}: {}", problems.join("; "));
}

/// One line per value (old -> new), then the definitions to rebuild.
fn render_set(
    changes: &[SetChange],
    affected: &[(&Definition, Vec<String>)],
    broken: &[String],
) -> String {
    let mut text = String::new();
    for change in changes {
        text.push_str(&match (change.status, &change.old) {
            (SetStatus::Unchanged, _) => {
                format!("{}: {} (unchanged)\n", change.name, shown(&change.new))
            }
            (_, Some(old)) => {
                format!(
                    "{}: {} -> {}\n",
                    change.name,
                    shown(old),
                    shown(&change.new)
                )
            }
            (_, None) => format!("{}: (new) -> {}\n", change.name, shown(&change.new)),
        });
    }
    if !affected.is_empty() && broken.is_empty() {
        text.push_str(&format!(
            "\nDefinitions to rebuild ({}):\n{}",
            affected.len(),
            affected_text(affected)
        ));
    }
    text
}

/// What became of the file: refused, left as it was, or written (or not, in a dry run).
fn note_set(
    output: &crate::output::Output,
    request: &SetRequest,
    outcome: &variables::SetOutcome,
    changed: &[String],
    affected: &[(&Definition, Vec<String>)],
    broken: &[String],
) -> anyhow::Result<()> {
    if !broken.is_empty() {
        output.error(&format!(
            "the new values break {} that {} now ({}); {VARIABLES_FILE} was not changed",
            count(broken.len(), "definition"),
            if broken.len() == 1 {
                "renders"
            } else {
                "render"
            },
            broken.join(", ")
        ))?;
    } else if !outcome.is_changed() {
        output.note(&format!(
            "every value is already set: {VARIABLES_FILE} was not rewritten"
        ))?;
    } else {
        if affected.is_empty() {
            output.note(&format!("no definition uses {}", changed.join(" or ")))?;
        }
        output.note(&if request.dry_run {
            format!("dry run: {VARIABLES_FILE} was not changed")
        } else {
            format!("wrote {VARIABLES_FILE}; run `imagegen reconcile --dry-run` to see the plan")
        })?;
    }
    Ok(())
}

/// Why `imagegen vars diff` could not read the older variables.json.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error(
        "{} is not inside a git repository ({reason}); run imagegen vars diff in a clone, or \
         pass --repo pointing into one",
        path.display()
    )]
    NotARepository { path: PathBuf, reason: String },
    #[error(
        "the git repository {} has no working tree (it is bare); run imagegen vars diff in a \
         clone with its files checked out",
        path.display()
    )]
    Bare { path: PathBuf },
    #[error(
        "{} is outside the git repository's working tree {}; pass --repo pointing into it",
        path.display(),
        workdir.display()
    )]
    OutsideWorkdir { path: PathBuf, workdir: PathBuf },
    #[error(
        "unknown revision {revision:?} ({reason}); give a commit, branch or tag git knows, such \
         as HEAD~1, main or a sha (`git log --oneline` lists them)"
    )]
    UnknownRevision { revision: String, reason: String },
    #[error("cannot read {file} at {revision}: {reason}")]
    Read {
        revision: String,
        file: String,
        reason: String,
    },
    #[error("{file} at {revision} is not UTF-8 text")]
    NotUtf8 { revision: String, file: String },
}

/// variables.json at a revision: its text, or None when it did not exist there.
struct AtRevision {
    /// The commit the revision names, when it names one.
    commit: Option<String>,
    /// The path in the git tree, `/`-separated.
    file: String,
    text: Option<String>,
}

/// Reads variables.json of the repository at `repo` as it was at `revision`.
fn read_at_revision(repo: &Path, revision: &str) -> Result<AtRevision, DiffError> {
    let git = git2::Repository::discover(repo).map_err(|error| DiffError::NotARepository {
        path: repo.canonicalize().unwrap_or_else(|_| repo.to_path_buf()),
        reason: error.message().to_string(),
    })?;
    let workdir = git.workdir().ok_or_else(|| DiffError::Bare {
        path: git.path().to_path_buf(),
    })?;
    // `--repo` may be a folder inside the git repository: the tree path is relative to the
    // working tree's root, and both sides are resolved so that links do not get in the way.
    let (Ok(folder), Ok(root)) = (repo.canonicalize(), workdir.canonicalize()) else {
        return Err(DiffError::OutsideWorkdir {
            path: repo.to_path_buf(),
            workdir: workdir.to_path_buf(),
        });
    };
    let relative = folder
        .strip_prefix(&root)
        .map_err(|_| DiffError::OutsideWorkdir {
            path: folder.clone(),
            workdir: root.clone(),
        })?
        .join(VARIABLES_FILE);
    let file = relative
        .components()
        .map(|component| component.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    let unknown = |error: git2::Error| DiffError::UnknownRevision {
        revision: revision.to_string(),
        reason: error.message().to_string(),
    };
    let object = git.revparse_single(revision).map_err(unknown)?;
    let commit = object
        .peel_to_commit()
        .ok()
        .map(|commit| commit.id().to_string());
    let tree = object.peel_to_tree().map_err(unknown)?;
    let read_error = |error: git2::Error| DiffError::Read {
        revision: revision.to_string(),
        file: file.clone(),
        reason: error.message().to_string(),
    };
    let entry = match tree.get_path(&relative) {
        Ok(entry) => entry,
        Err(error) if error.code() == git2::ErrorCode::NotFound => {
            return Ok(AtRevision {
                commit,
                file,
                text: None,
            });
        }
        Err(error) => return Err(read_error(error)),
    };
    let blob = entry
        .to_object(&git)
        .and_then(|object| object.peel_to_blob())
        .map_err(read_error)?;
    let text = String::from_utf8(blob.content().to_vec()).map_err(|_| DiffError::NotUtf8 {
        revision: revision.to_string(),
        file: file.clone(),
    })?;
    Ok(AtRevision {
        commit,
        file,
        text: Some(text),
    })
}

/// One difference of `vars diff`, with the definitions it rebuilds.
#[derive(Serialize)]
struct DiffEntry<'a> {
    name: &'a str,
    /// `changed`, `added` or `removed`.
    kind: &'static str,
    old: Option<&'a str>,
    new: Option<&'a str>,
    definitions: Vec<serde_json::Value>,
}

/// `imagegen vars diff <REV>`: what changed in variables.json since a git revision, compared
/// with the file in the working tree. A revision without variables.json counts every variable
/// as added.
pub fn diff(context: &Context, request: &DiffRequest) -> anyhow::Result<Exit> {
    let revision = request.revision.as_str();
    let old = read_at_revision(&context.repo, revision)?;
    let catalog = Catalog::load(&context.repo);
    let mut errors = errors_of(&catalog);
    let (old_variables, old_problems) = match &old.text {
        Some(text) => Variables::parse(&format!("{revision}:{}", old.file), text),
        None => (Variables::default(), Vec::new()),
    };
    // A side that does not parse would show every variable as added or removed: then only the
    // problems are reported.
    let comparable = !catalog.variables_invalid && old_problems.is_empty();
    errors.extend(old_problems);
    errors.sort();
    let changes: Vec<ValueChange> = if comparable {
        variables::changes(&as_map(&old_variables), &as_map(&catalog.variables))
    } else {
        Vec::new()
    };
    let affected: Vec<Vec<(&Definition, Vec<String>)>> = changes
        .iter()
        .map(|change| catalog.affected_by(std::slice::from_ref(&change.name)))
        .collect();
    let rebuilt: BTreeSet<&str> = affected
        .iter()
        .flatten()
        .map(|(definition, _)| definition.id.as_str())
        .collect();
    let output = &context.output;
    if output.is_json() {
        let entries: Vec<DiffEntry> = changes
            .iter()
            .zip(&affected)
            .map(|(change, affected)| DiffEntry {
                name: &change.name,
                kind: change_kind(change),
                old: change.old.as_deref(),
                new: change.new.as_deref(),
                definitions: affected_json(affected),
            })
            .collect();
        output.json(&json!({
            "revision": revision,
            "commit": old.commit,
            "file": old.file,
            "found_at_revision": old.text.is_some(),
            "changes": entries,
            "definitions": rebuilt,
            "diagnostics": errors,
        }))?;
    } else {
        output.diagnostics(&errors)?;
        output.text(&render_diff(&changes, &affected))?;
        let at = match &old.commit {
            Some(commit) => format!("{revision} ({})", &commit[..commit.len().min(10)]),
            None => revision.to_string(),
        };
        if old.text.is_none() {
            output.note(&format!(
                "{} did not exist at {at}: every variable counts as added",
                old.file
            ))?;
        }
        if comparable {
            output.note(&diff_counts_line(&at, &changes, rebuilt.len()))?;
        }
    }
    Ok(exit_for(&errors))
}

fn as_map(variables: &Variables) -> BTreeMap<String, String> {
    variables
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

fn change_kind(change: &ValueChange) -> &'static str {
    match (&change.old, &change.new) {
        (Some(_), Some(_)) => "changed",
        (None, _) => "added",
        (Some(_), None) => "removed",
    }
}

/// One line per change (old -> new), each followed by the definitions using the variable.
fn render_diff(changes: &[ValueChange], affected: &[Vec<(&Definition, Vec<String>)>]) -> String {
    let mut text = String::new();
    for (change, affected) in changes.iter().zip(affected) {
        let line = match (&change.old, &change.new) {
            (Some(old), Some(new)) => {
                format!("{}: {} -> {}", change.name, shown(old), shown(new))
            }
            (None, Some(new)) => format!("{}: (new) -> {}", change.name, shown(new)),
            (Some(old), None) => format!("{}: {} -> (removed)", change.name, shown(old)),
            (None, None) => continue,
        };
        text.push_str(&line);
        text.push('\n');
        if affected.is_empty() {
            text.push_str("  no definition uses it\n");
        }
        for (definition, _) in affected {
            text.push_str(&format!("  {}\n", definition.id));
        }
    }
    text
}

/// `since HEAD~1 (0123456789): 1 changed, 0 added, 0 removed; 3 definitions to rebuild`.
fn diff_counts_line(at: &str, changes: &[ValueChange], rebuilt: usize) -> String {
    if changes.is_empty() {
        return format!("{VARIABLES_FILE} is the same as at {at}");
    }
    let of_kind = |wanted| changes.iter().filter(|c| change_kind(c) == wanted).count();
    format!(
        "since {at}: {} changed, {} added, {} removed; {} to rebuild",
        of_kind("changed"),
        of_kind("added"),
        of_kind("removed"),
        count(rebuilt, "definition")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_hard_to_see_are_quoted() {
        assert_eq!(shown("17_12_2"), "17_12_2");
        assert_eq!(shown("é→x"), "é→x");
        assert_eq!(shown(""), "\"\"");
        assert_eq!(shown("a b"), "\"a b\"");
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
    }
}
