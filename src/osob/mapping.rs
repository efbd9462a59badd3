//! osob-mapping/osob.json: where the OSOB repository and its pull request live, and which OSOB
//! files name each definition's image. Read strictly, with every problem located.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::diagnostics::{Code, Diagnostic};
use crate::json;

/// The mapping's path, relative to the repository root.
pub const MAPPING_FILE: &str = "osob-mapping/osob.json";

/// The branch the pull request comes from unless the mapping names another.
pub const DEFAULT_PR_BRANCH: &str = "imagegen/helix-images";

/// The whole mapping.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub repository: RepositorySettings,
    pub provider: Provider,
    #[serde(default)]
    pub reviewers: Vec<String>,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub review_dates: Option<ReviewDates>,
    #[serde(default)]
    pub commit_author: CommitAuthor,
    /// Definition id -> the OSOB files (paths in the OSOB repository) naming its images.
    pub definitions: BTreeMap<String, Vec<String>>,
}

/// The OSOB repository.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositorySettings {
    /// https URL, file URL or local path; `IMAGEGEN_OSOB_URL` or `--osob-url` overrides it.
    pub url: String,
    pub base_branch: String,
    #[serde(default = "default_pr_branch")]
    pub pr_branch: String,
}

fn default_pr_branch() -> String {
    DEFAULT_PR_BRANCH.to_string()
}

/// Where the pull request is opened.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Provider {
    #[serde(rename = "azure-devops")]
    AzureDevOps {
        organization: String,
        project: String,
        repository: String,
        /// The service's base URL; https://dev.azure.com unless set.
        #[serde(default)]
        api_url: Option<String>,
    },
    #[serde(rename = "github")]
    GitHub {
        owner: String,
        repository: String,
        /// The API's base URL; https://api.github.com unless set (GitHub Enterprise).
        #[serde(default)]
        api_url: Option<String>,
    },
    /// Push the branch and print the pull request that would be opened.
    Local,
}

impl Provider {
    pub fn name(&self) -> &'static str {
        match self {
            Self::AzureDevOps { .. } => "azure-devops",
            Self::GitHub { .. } => "github",
            Self::Local => "local",
        }
    }
}

/// OSOB entries' review dates: when an image name in a YAML mapping is replaced, these keys of
/// the same mapping move to today plus `days`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewDates {
    pub keys: Vec<String>,
    pub days: u32,
}

/// Who the OSOB commits are by. A branch holding only this author's commits may be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitAuthor {
    pub name: String,
    pub email: String,
}

impl Default for CommitAuthor {
    fn default() -> Self {
        Self {
            name: "imagegen".to_string(),
            email: "imagegen@helix-images.invalid".to_string(),
        }
    }
}

/// Reads the mapping, or returns every problem found (file, line and column where known).
/// `definition_ids` are the definitions that exist, to catch ids that name none.
pub fn parse(text: &str, definition_ids: &[String]) -> (Option<Mapping>, Vec<Diagnostic>) {
    let mapping = match read(text) {
        Ok(mapping) => mapping,
        Err(problems) => return (None, problems),
    };
    let text = json::strip_bom(text);
    let mut problems = repository_problems(&mapping);
    problems.extend(definition_problems(&mapping, text, definition_ids));
    problems.extend(unmapped_definitions(&mapping, definition_ids));
    (Some(mapping), problems)
}

/// A problem of the mapping file as a whole.
fn located(diagnostic: Diagnostic) -> Diagnostic {
    diagnostic.in_file(MAPPING_FILE)
}

/// The mapping as written, or the syntax or shape error (one) that stops it being read.
fn read(text: &str) -> Result<Mapping, Vec<Diagnostic>> {
    if let Err(error) = json::parse_strict(text) {
        let diagnostic =
            Diagnostic::error(Code::JsonSyntax, error.message).at(error.line, error.column);
        return Err(vec![located(diagnostic)]);
    }
    let text = json::strip_bom(text);
    serde_json::from_str(text).map_err(|error| {
        let error = json::json_error(text, &error);
        vec![located(
            Diagnostic::error(Code::Mapping, error.message).at(error.line, error.column),
        )]
    })
}

/// The repository settings' problems: branch names, the URL, the review dates.
fn repository_problems(mapping: &Mapping) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let settings = &mapping.repository;
    for (field, branch) in [
        ("base_branch", &settings.base_branch),
        ("pr_branch", &settings.pr_branch),
    ] {
        if let Some(reason) = branch_name_problem(branch) {
            problems.push(located(Diagnostic::error(
                Code::Mapping,
                format!(
                    "repository.{field} {} is not a usable branch name: {reason}",
                    crate::output::quoted(branch)
                ),
            )));
        }
    }
    if settings.base_branch == settings.pr_branch {
        problems.push(located(Diagnostic::error(
            Code::Mapping,
            "repository.pr_branch must differ from base_branch: imagegen rebuilds its branch",
        )));
    }
    if settings.url.trim().is_empty() {
        problems.push(located(Diagnostic::error(
            Code::Mapping,
            "repository.url is empty",
        )));
    }
    if let Some(review) = &mapping.review_dates
        && (review.days == 0 || review.days > 3660 || review.keys.is_empty())
    {
        problems.push(located(Diagnostic::error(
            Code::Mapping,
            "review_dates needs at least one key and a number of days from 1 to 3660",
        )));
    }
    problems
}

/// The problems of each mapped definition, at its key: an id naming no definition, no file, a
/// file path OSOB cannot hold, a file listed twice.
fn definition_problems(
    mapping: &Mapping,
    text: &str,
    definition_ids: &[String],
) -> Vec<Diagnostic> {
    let positions = definition_key_positions(text);
    let at_key = |id: &str, diagnostic: Diagnostic| match positions.get(id) {
        Some((line, column)) => located(diagnostic).at(*line, *column),
        None => located(diagnostic),
    };
    let mut problems = Vec::new();
    for (id, files) in &mapping.definitions {
        if !definition_ids.contains(id) {
            let suggestion = definition_ids
                .iter()
                .map(|known| (strsim::jaro_winkler(id, known), known))
                .filter(|(score, _)| *score >= 0.85)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, known)| format!("; did you mean {known}?"))
                .unwrap_or_default();
            problems.push(at_key(
                id,
                Diagnostic::error(
                    Code::Mapping,
                    format!(
                        "definitions names {id}, but there is no definitions/{id}.json{suggestion}"
                    ),
                ),
            ));
        }
        if files.is_empty() {
            problems.push(at_key(
                id,
                Diagnostic::error(
                    Code::Mapping,
                    format!("{id} maps to no OSOB file: list the files naming its image"),
                ),
            ));
        }
        let mut seen = Vec::new();
        for file in files {
            if let Some(reason) = osob_path_problem(file) {
                problems.push(at_key(
                    id,
                    Diagnostic::error(
                        Code::Mapping,
                        format!("{id}: OSOB file {} {reason}", crate::output::quoted(file)),
                    ),
                ));
            }
            if seen.contains(&file) {
                problems.push(at_key(
                    id,
                    Diagnostic::error(Code::Mapping, format!("{id}: {file} is listed twice")),
                ));
            }
            seen.push(file);
        }
    }
    problems
}

/// A warning for each definition the mapping leaves out: its images are never named in OSOB.
fn unmapped_definitions(mapping: &Mapping, definition_ids: &[String]) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    for id in definition_ids {
        if !mapping.definitions.contains_key(id) {
            problems.push(located(
                Diagnostic::warning(
                    Code::UnmappedDefinition,
                    format!(
                        "{id} is not in the mapping: its images are built but never named in OSOB"
                    ),
                )
                .for_definition(id.clone()),
            ));
        }
    }
    problems
}

/// Reads the mapping from a repository; `None` (and no problem) when it has none.
pub fn load(repo: &Path, definition_ids: &[String]) -> (Option<Mapping>, Vec<Diagnostic>) {
    let path = repo.join(MAPPING_FILE);
    if !path.exists() {
        return (None, Vec::new());
    }
    match crate::catalog::read_text(&path, MAPPING_FILE) {
        Ok(text) => parse(&text, definition_ids),
        Err(problem) => (None, vec![*problem]),
    }
}

/// Where each key of the `definitions` object is, for messages.
fn definition_key_positions(text: &str) -> BTreeMap<String, (usize, usize)> {
    let mut positions = BTreeMap::new();
    let Ok(members) = json::parse_members(text) else {
        return positions;
    };
    let Some(member) = members.iter().find(|member| member.key == "definitions") else {
        return positions;
    };
    let Ok(inner) = json::parse_members(member.raw.get()) else {
        return positions;
    };
    for definition in inner {
        let (line, column) = if definition.key_line == 1 {
            (
                member.value_line,
                member.value_column + definition.key_column - 1,
            )
        } else {
            (
                member.value_line + definition.key_line - 1,
                definition.key_column,
            )
        };
        positions.insert(definition.key, (line, column));
    }
    positions
}

/// Why a git branch name cannot be used, if it cannot (the common rules of git check-ref-format).
pub fn branch_name_problem(branch: &str) -> Option<&'static str> {
    if branch.is_empty() {
        return Some("it is empty");
    }
    if branch.starts_with("refs/") {
        return Some("write it without refs/heads/");
    }
    if branch.starts_with('/') || branch.ends_with('/') || branch.contains("//") {
        return Some("it has an empty path part");
    }
    if branch.contains("..") || branch.contains("@{") || branch.ends_with(".lock") {
        return Some("it holds '..', '@{' or ends in .lock");
    }
    if branch
        .chars()
        .any(|c| c.is_ascii_control() || " ~^:?*[\\".contains(c))
    {
        return Some("it holds a space or one of ~ ^ : ? * [ \\");
    }
    None
}

/// Why an OSOB file path cannot be used, if it cannot: relative, inside the repository.
fn osob_path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("is empty");
    }
    if path.starts_with('/') || path.contains('\\') || path.contains(':') {
        return Some("must be a relative path with / separators");
    }
    if path
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Some("must not hold empty, '.' or '..' parts");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPPING: &str = r#"{
  "repository": {"url": "https://dev.azure.com/o/p/_git/r", "base_branch": "main"},
  "provider": {"kind": "azure-devops", "organization": "o", "project": "p", "repository": "r"},
  "review_dates": {"keys": ["UpdateRequiredDate"], "days": 90},
  "definitions": {
    "vs/a": ["queues/a.yml", "queues/shared.yml"],
    "vs/b": ["queues/shared.yml"]
  }
}"#;

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn a_valid_mapping_reads_with_defaults() {
        let (mapping, problems) = parse(MAPPING, &ids(&["vs/a", "vs/b"]));
        assert!(problems.is_empty(), "{problems:?}");
        let mapping = mapping.unwrap();
        assert_eq!(mapping.repository.pr_branch, DEFAULT_PR_BRANCH);
        assert_eq!(mapping.provider.name(), "azure-devops");
        assert_eq!(mapping.definitions["vs/a"].len(), 2);
        assert_eq!(mapping.commit_author, CommitAuthor::default());
    }

    #[test]
    fn unknown_ids_are_located_and_unmapped_ones_warned() {
        let (_, problems) = parse(MAPPING, &ids(&["vs/a", "vs/c"]));
        let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            messages.iter().any(|m| m.starts_with(
                "osob-mapping/osob.json:7:5: definitions names vs/b, but there is no definitions/vs/b.json"
            )),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("vs/c is not in the mapping")),
            "{messages:?}"
        );
    }

    #[test]
    fn shape_errors_name_line_and_column() {
        let text = MAPPING.replace("\"base_branch\"", "\"base\"");
        let (mapping, problems) = parse(&text, &ids(&["vs/a", "vs/b"]));
        assert!(mapping.is_none());
        let message = problems[0].to_string();
        assert!(
            message.starts_with("osob-mapping/osob.json:2:")
                && message.contains("unknown field `base`"),
            "{message}"
        );
    }

    #[test]
    fn branches_and_paths_are_checked() {
        assert!(branch_name_problem("imagegen/helix images").is_some());
        assert!(branch_name_problem("refs/heads/x").is_some());
        assert!(branch_name_problem("imagegen/helix-images").is_none());
        assert!(osob_path_problem("../x.yml").is_some());
        assert!(osob_path_problem("/etc/x").is_some());
        assert!(osob_path_problem("queues/windows.yml").is_none());
        let text = MAPPING.replace("\"queues/a.yml\"", "\"../a.yml\"");
        let (_, problems) = parse(&text, &ids(&["vs/a", "vs/b"]));
        assert!(problems[0].to_string().contains("'..'"), "{problems:?}");
    }
}
