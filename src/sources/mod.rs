//! Where each variable's newest value is published, as `variable-sources.json` declares it
//! next to variables.json: the file read strictly with every problem located, and the sources
//! it names. The documents are read by [`channel`] (Visual Studio's channel manifest),
//! [`marketplace`] (Azure Marketplace image versions) and [`document`] (any JSON document),
//! pure functions of the text fetched at the edge by [`fetch`]; [`version`] decides, purely,
//! which version to propose.

pub mod channel;
pub mod document;
pub mod fetch;
pub mod marketplace;
pub mod version;

use std::path::Path;

use serde::Deserialize;

use crate::diagnostics::{Code, Diagnostic};
use crate::json;
use crate::osob::mapping::{self, CommitAuthor, Provider};
use channel::ChannelField;
use document::DocumentQuery;
use marketplace::ImageSku;
use version::{Rules, ValueFormat, Version};

/// The file's path, relative to the repository root.
pub const SOURCES_FILE: &str = "variable-sources.json";

/// The branch the variable updates come from unless the file names another.
pub const DEFAULT_UPDATE_BRANCH: &str = "imagegen/variable-updates";

/// The whole file.
#[derive(Debug, Clone)]
pub struct SourcesFile {
    pub pull_request: Option<PullRequestTarget>,
    /// In file order.
    pub variables: Vec<VariableSource>,
}

/// Where the pull request of `vars update --pr` goes: this repository.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullRequestTarget {
    pub repository: RepositoryTarget,
    pub provider: Provider,
    #[serde(default)]
    pub reviewers: Vec<String>,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub commit_author: CommitAuthor,
}

/// This repository as git reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryTarget {
    /// https URL, file URL or local path; `--repo-url` (`IMAGEGEN_REPO_URL`) overrides it.
    pub url: String,
    pub base_branch: String,
    #[serde(default = "default_update_branch")]
    pub pr_branch: String,
    /// Where variables.json is in the repository, when not at its root.
    #[serde(default)]
    pub folder: Option<String>,
}

fn default_update_branch() -> String {
    DEFAULT_UPDATE_BRANCH.to_string()
}

/// One variable's source, format and rules.
#[derive(Debug, Clone)]
pub struct VariableSource {
    pub name: String,
    /// The line of its key, for messages.
    pub line: usize,
    pub source: Source,
    pub format: ValueFormat,
    pub rules: Rules,
}

/// Where a value is published.
#[derive(Debug, Clone)]
pub enum Source {
    /// A Visual Studio channel manifest.
    Channel {
        url: String,
        field: ChannelField,
        edition: Option<String>,
    },
    /// An Azure Marketplace image's versions, through Resource Manager.
    Marketplace(ImageSku),
    /// Any JSON document.
    Document {
        url: String,
        query: Box<DocumentQuery>,
    },
}

impl Source {
    /// What the source is, for messages: its kind and where it is read.
    pub fn describe(&self) -> String {
        match self {
            Self::Channel { url, .. } => format!("the Visual Studio channel manifest {url}"),
            Self::Marketplace(sku) => {
                format!("the Azure Marketplace versions of {}", sku.describe())
            }
            Self::Document { url, .. } => format!("the JSON document {url}"),
        }
    }

    /// Whether reading it needs an Azure AD token for Resource Manager.
    pub fn needs_arm(&self) -> bool {
        matches!(self, Self::Marketplace(_))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    pull_request: Option<PullRequestTarget>,
    variables: serde::de::IgnoredAny,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    #[serde(default)]
    channel: Option<RawChannel>,
    #[serde(default)]
    marketplace: Option<ImageSku>,
    #[serde(default)]
    json: Option<RawDocument>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    within: Option<String>,
    #[serde(default)]
    ignore: Vec<String>,
    #[serde(default)]
    min_age: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    url: String,
    field: ChannelField,
    #[serde(default)]
    edition: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    url: String,
    #[serde(flatten)]
    query: DocumentQuery,
}

/// Reads the file from a repository: `None` (and no problem) when it has none.
pub fn load(repo: &Path, variable_names: &[String]) -> (Option<SourcesFile>, Vec<Diagnostic>) {
    let path = repo.join(SOURCES_FILE);
    if !path.exists() {
        return (None, Vec::new());
    }
    match crate::catalog::read_text(&path, SOURCES_FILE) {
        Ok(text) => parse(&text, variable_names),
        Err(problem) => (None, vec![*problem]),
    }
}

/// Reads the file's text; every problem is returned, each with its line and column.
/// `variable_names` are the variables variables.json defines: a source for any other is an
/// error. The file is returned only when it has no error.
pub fn parse(text: &str, variable_names: &[String]) -> (Option<SourcesFile>, Vec<Diagnostic>) {
    if let Err(error) = json::parse_strict(text) {
        let diagnostic =
            Diagnostic::error(Code::JsonSyntax, error.message).at(error.line, error.column);
        return (None, vec![located(diagnostic)]);
    }
    let body = json::strip_bom(text);
    let raw: RawFile = match serde_json::from_str(body) {
        Ok(raw) => raw,
        Err(error) => {
            let error = json::json_error(body, &error);
            return (
                None,
                vec![located(problem(error.message).at(error.line, error.column))],
            );
        }
    };
    let _ = raw.variables;
    let mut problems = raw
        .pull_request
        .as_ref()
        .map(pull_request_problems)
        .unwrap_or_default();
    let members = json::parse_members(text).unwrap_or_default();
    let Some(variables) = members.iter().find(|member| member.key == "variables") else {
        return (None, problems);
    };
    let entries = match json::parse_members(variables.raw.get()) {
        Ok(entries) => entries,
        Err(_) => {
            let diagnostic = problem(
                "variables must be an object mapping each variable name to its source".to_string(),
            )
            .at(variables.value_line, variables.value_column);
            problems.push(located(diagnostic));
            return (None, problems);
        }
    };
    let mut sources = Vec::new();
    for entry in &entries {
        match variable_source(text, variables, entry, variable_names) {
            Ok(source) => sources.push(source),
            Err(entry_problems) => problems.extend(entry_problems),
        }
    }
    if problems.iter().any(Diagnostic::is_error) {
        return (None, problems);
    }
    (
        Some(SourcesFile {
            pull_request: raw.pull_request,
            variables: sources,
        }),
        problems,
    )
}

/// A problem of this file, which the caller places.
fn problem(message: String) -> Diagnostic {
    Diagnostic::error(Code::Sources, message)
}

/// Names this file as where the problem is.
fn located(diagnostic: Diagnostic) -> Diagnostic {
    diagnostic.in_file(SOURCES_FILE)
}

/// What is wrong with the branches the pull request section names.
fn pull_request_problems(target: &PullRequestTarget) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let repository = &target.repository;
    for (field, branch) in [
        ("base_branch", &repository.base_branch),
        ("pr_branch", &repository.pr_branch),
    ] {
        if let Some(reason) = mapping::branch_name_problem(branch) {
            problems.push(located(problem(format!(
                "pull_request.repository.{field} {} is not a usable branch name: {reason}",
                crate::output::quoted(branch)
            ))));
        }
    }
    if repository.base_branch == repository.pr_branch {
        problems.push(located(problem(
            "pull_request.repository.pr_branch must differ from base_branch: imagegen rebuilds its branch".to_string(),
        )));
    }
    problems
}

/// One member of `variables` read as a variable's source, or its problems, located in `text`.
fn variable_source(
    text: &str,
    variables: &json::Member<'_>,
    entry: &json::Member<'_>,
    variable_names: &[String],
) -> Result<VariableSource, Vec<Diagnostic>> {
    let key_at = json::line_column(text, variables.value_offset + entry.key_offset);
    let at_key = |message: String| located(problem(message).at(key_at.0, key_at.1));
    let name = entry.key.clone();
    if !variable_names.contains(&name) {
        let suggestions = crate::suggest::closest(&name, variable_names.iter().cloned());
        return Err(vec![at_key(format!(
            "{name} has a source, but variables.json defines no {name}{}",
            crate::suggest::did_you_mean(&suggestions)
        ))]);
    }
    let raw_entry: RawEntry = serde_json::from_str(entry.raw.get()).map_err(|error| {
        let inner = json::json_error(entry.raw.get(), &error);
        let value_at = json::line_column(text, variables.value_offset + entry.value_offset);
        let (line, column) = if inner.line == 1 {
            (value_at.0, value_at.1 + inner.column - 1)
        } else {
            (value_at.0 + inner.line - 1, inner.column)
        };
        vec![located(
            problem(format!("{name}: {}", inner.message)).at(line, column),
        )]
    })?;
    match entry_source(&name, raw_entry) {
        Ok((source, format, rules)) => Ok(VariableSource {
            name,
            line: key_at.0,
            source,
            format,
            rules,
        }),
        Err(reasons) => Err(reasons
            .into_iter()
            .map(|reason| at_key(format!("{name}: {reason}")))
            .collect()),
    }
}

/// One entry's source, format and rules, or every reason it has none.
fn entry_source(name: &str, raw: RawEntry) -> Result<(Source, ValueFormat, Rules), Vec<String>> {
    let mut reasons = Vec::new();
    let kinds = [
        raw.channel.is_some(),
        raw.marketplace.is_some(),
        raw.json.is_some(),
    ];
    let source = match (raw.channel, raw.marketplace, raw.json) {
        (Some(channel), None, None) => {
            if channel.field == ChannelField::Bootstrapper && channel.edition.is_none() {
                reasons.push(
                    "channel.field bootstrapper needs channel.edition (such as Enterprise)"
                        .to_string(),
                );
            }
            check_url(&channel.url, "channel.url", &mut reasons);
            Some(Source::Channel {
                url: channel.url,
                field: channel.field,
                edition: channel.edition,
            })
        }
        (None, Some(sku), None) => Some(Source::Marketplace(sku)),
        (None, None, Some(document)) => {
            check_url(&document.url, "json.url", &mut reasons);
            for (field, pointer) in [
                ("pointer", Some(&document.query.pointer)),
                ("version", Some(&document.query.version)),
                ("date", document.query.date.as_ref()),
                ("notes", document.query.notes.as_ref()),
            ] {
                if let Some(pointer) =
                    pointer.filter(|pointer| !pointer.is_empty() && !pointer.starts_with('/'))
                {
                    reasons.push(format!("json.{field} {pointer:?} is not a JSON pointer: it starts with / (or is empty)"));
                }
            }
            Some(Source::Document {
                url: document.url,
                query: Box::new(document.query),
            })
        }
        _ => {
            reasons.push(format!(
                "give exactly one source: channel, marketplace or json ({} given)",
                kinds.iter().filter(|given| **given).count()
            ));
            None
        }
    };
    let format = match raw.format.as_deref().map(ValueFormat::parse) {
        None => ValueFormat::default(),
        Some(Ok(format)) => format,
        Some(Err(reason)) => {
            reasons.push(format!("format: {reason}"));
            ValueFormat::default()
        }
    };
    let within = raw.within.as_deref().and_then(|within| {
        let parsed = Version::parse(within);
        if parsed.is_none() {
            reasons.push(format!(
                "within {within:?} holds no version number (write 17 or 17.12)"
            ));
        }
        parsed
    });
    let min_age = raw
        .min_age
        .as_deref()
        .and_then(|age| match version::parse_age(age) {
            Ok(age) => Some(age),
            Err(reason) => {
                reasons.push(format!("min_age: {reason} (or days, like 7d)"));
                None
            }
        });
    let _ = name;
    match source {
        Some(source) if reasons.is_empty() => Ok((
            source,
            format,
            Rules {
                within,
                ignore: raw.ignore,
                min_age,
            },
        )),
        _ => Err(reasons),
    }
}

fn check_url(url: &str, field: &str, reasons: &mut Vec<String>) {
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "https" | "http") => {}
        _ => reasons.push(format!("{field} {url:?} is not an http or https URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        [
            "VS_2022_VERSION",
            "WINDOWS_SERVER_2022_BUILD",
            "GIT_VERSION",
        ]
        .map(String::from)
        .to_vec()
    }

    fn messages(text: &str) -> Vec<String> {
        parse(text, &names())
            .1
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_whole_file_reads() {
        let text = r#"{
  "pull_request": {
    "repository": {"url": "https://git.test/helix-images", "base_branch": "main"},
    "provider": {"kind": "local"}
  },
  "variables": {
    "VS_2022_VERSION": {
      "channel": {"url": "https://aka.test/vs/17/release/channel", "field": "display-version"},
      "format": "{parts:_}",
      "within": "17",
      "min_age": "2d"
    },
    "WINDOWS_SERVER_2022_BUILD": {
      "marketplace": {"location": "westus2", "publisher": "MicrosoftWindowsServer", "offer": "WindowsServer", "sku": "2022-datacenter"},
      "ignore": ["20348.2849.241106"]
    },
    "GIT_VERSION": {
      "json": {"url": "https://api.git.test/releases", "version": "/tag_name", "regex": "^v(\\d+\\.\\d+\\.\\d+)$"}
    }
  }
}"#;
        let (file, problems) = parse(text, &names());
        assert!(problems.is_empty(), "{problems:?}");
        let file = file.unwrap();
        assert_eq!(
            file.pull_request.unwrap().repository.pr_branch,
            DEFAULT_UPDATE_BRANCH
        );
        let lines: Vec<(String, usize)> = file
            .variables
            .iter()
            .map(|v| (v.name.clone(), v.line))
            .collect();
        assert_eq!(
            lines,
            [
                ("VS_2022_VERSION".into(), 7),
                ("WINDOWS_SERVER_2022_BUILD".into(), 13),
                ("GIT_VERSION".into(), 17)
            ]
        );
        assert_eq!(
            file.variables[0].rules.min_age,
            Some(std::time::Duration::from_secs(2 * 86_400))
        );
    }

    #[test]
    fn every_problem_is_located_in_one_pass() {
        let text = "{\n  \"variables\": {\n    \"VS_2022_VERSOIN\": {},\n    \"VS_2022_VERSION\": {\"channel\": {\"url\": \"x\", \"field\": \"bootstrapper\"}, \"format\": \"{major}\"},\n    \"GIT_VERSION\": {\n      \"json\": {\"url\": \"https://x.test\", \"regex\": \"(\"}\n    },\n    \"WINDOWS_SERVER_2022_BUILD\": {\"marketplace\": {\"location\": \"w\"}}\n  }\n}";
        assert_eq!(
            messages(text),
            [
                "variable-sources.json:3:5: VS_2022_VERSOIN has a source, but variables.json defines no VS_2022_VERSOIN; did you mean VS_2022_VERSION?",
                "variable-sources.json:4:5: VS_2022_VERSION: channel.field bootstrapper needs channel.edition (such as Enterprise)",
                "variable-sources.json:4:5: VS_2022_VERSION: channel.url \"x\" is not an http or https URL",
                "variable-sources.json:4:5: VS_2022_VERSION: format: {major} is not a part of a format: use {value}, {version}, {1}, {2}, ... or {parts:SEP}",
                "variable-sources.json:6:53: GIT_VERSION: regex \"(\" is not a regular expression: regex parse error:\n    (\n    ^\nerror: unclosed group",
                "variable-sources.json:8:66: WINDOWS_SERVER_2022_BUILD: missing field `publisher`",
            ]
        );
    }

    #[test]
    fn syntax_and_shape_errors_name_line_and_column() {
        assert_eq!(
            messages("{\n  \"variables\": {\n  }\n  \"x\": 1\n}"),
            ["variable-sources.json:4:3: expected `,` or `}`"]
        );
        assert_eq!(
            messages("{\"variable\": {}}"),
            [
                "variable-sources.json:1:11: unknown field `variable`, expected `pull_request` or `variables`"
            ]
        );
        assert_eq!(
            messages("{\"variables\": {\"GIT_VERSION\": {\"format\": \"{value}\"}}}"),
            [
                "variable-sources.json:1:16: GIT_VERSION: give exactly one source: channel, marketplace or json (0 given)"
            ]
        );
    }
}
