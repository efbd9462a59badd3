//! The CI platform imagegen runs on (Azure Pipelines, GitHub Actions, or none), detected once,
//! and its logging commands: annotations, collapsible groups and the run's markdown summary.
//! Everything here formats strings; only [`Platform::publish_summary`] touches a file.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::diagnostics::{Diagnostic, Severity};

/// The file name of the summary Azure Pipelines shows as a tab of the run.
const AZURE_SUMMARY_FILE: &str = "imagegen.md";

/// The variables that say a run is on a CI platform: Azure Pipelines sets `TF_BUILD`, GitHub
/// Actions `GITHUB_ACTIONS`, and most others (GitHub Actions and GitLab included) `CI`.
pub const CI_VARIABLES: [&str; 3] = ["TF_BUILD", "GITHUB_ACTIONS", "CI"];

/// How a message says why imagegen took the run for a CI one.
pub const CI_EXPLANATION: &str =
    "This run is on a CI platform (TF_BUILD, GITHUB_ACTIONS or CI is true)";

/// Whether the environment `lookup` describes is a CI platform's: one of [`CI_VARIABLES`] set to
/// a true value (`true`, `1`, `yes`, `on`, in any case). Unattended there, nobody reads a plan
/// before it is carried out, so what would only look odd by hand must be an error.
pub fn is_ci(lookup: impl Fn(&str) -> Option<String>) -> bool {
    CI_VARIABLES.iter().any(|name| {
        lookup(name).is_some_and(|value| {
            matches!(
                value.trim().to_ascii_lowercase().as_str(),
                "true" | "1" | "yes" | "on"
            )
        })
    })
}

/// Which platform's logging commands to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    AzurePipelines,
    GitHubActions,
}

/// The platform this process runs on, with where its run summary goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub kind: Kind,
    /// Azure Pipelines: the file written and announced with `task.uploadsummary`; GitHub
    /// Actions: `GITHUB_STEP_SUMMARY`, appended to (absent when the runner gives none).
    pub summary: Option<PathBuf>,
}

/// An error or warning for the platform to show in its run's issues, and beside the file when
/// one is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    pub severity: Severity,
    pub message: String,
    /// Relative to the repository root, with `/` separators.
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// A stable code for machines (Azure's `code`; GitHub's title when no title is given).
    pub code: Option<String>,
    /// A short heading (GitHub Actions only: Azure Pipelines has no such field).
    pub title: Option<String>,
}

impl Annotation {
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            message: message.into(),
            file: None,
            line: None,
            column: None,
            code: None,
            title: None,
        }
    }

    pub fn warning(message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(message)
        }
    }

    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }

    pub fn titled(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// A diagnostic as an annotation. The message keeps the location in front, as the plain
    /// `error:` line has it, because the log line an agent prints shows the message only.
    pub fn from_diagnostic(diagnostic: &Diagnostic) -> Self {
        Self {
            severity: diagnostic.severity,
            message: diagnostic.to_string(),
            file: diagnostic.file.clone(),
            line: diagnostic.line,
            column: diagnostic.column,
            code: Some(diagnostic.code_name()),
            title: None,
        }
    }
}

impl Platform {
    /// The platform the environment `lookup` describes: Azure Pipelines when `TF_BUILD` is set
    /// (the agent sets `True`), GitHub Actions when `GITHUB_ACTIONS` is `true`, else none.
    pub fn detect(lookup: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let set = |name: &str| lookup(name).filter(|value| !value.is_empty());
        if set("TF_BUILD").is_some() {
            let folder = set("AGENT_TEMPDIRECTORY")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            // The agent resolves the announced path on its own, from another folder.
            let folder = std::path::absolute(&folder).unwrap_or(folder);
            return Some(Self {
                kind: Kind::AzurePipelines,
                summary: Some(folder.join(AZURE_SUMMARY_FILE)),
            });
        }
        if set("GITHUB_ACTIONS").as_deref() == Some("true") {
            return Some(Self {
                kind: Kind::GitHubActions,
                summary: set("GITHUB_STEP_SUMMARY").map(PathBuf::from),
            });
        }
        None
    }

    /// The platform of this process's environment.
    pub fn from_env() -> Option<Self> {
        Self::detect(|name| std::env::var(name).ok())
    }

    /// The logging command that raises `annotation`.
    pub fn annotation(&self, annotation: &Annotation) -> String {
        match self.kind {
            Kind::AzurePipelines => azure_annotation(annotation),
            Kind::GitHubActions => github_annotation(annotation),
        }
    }

    /// The line that opens a collapsible group; groups do not nest.
    pub fn group_start(&self, title: &str) -> String {
        // A title is one line: a line break would end the command early.
        let title = title.replace(['\r', '\n'], " ");
        match self.kind {
            Kind::AzurePipelines => format!("##[group]{title}"),
            Kind::GitHubActions => format!("::group::{title}"),
        }
    }

    /// The line that closes the open group.
    pub fn group_end(&self) -> &'static str {
        match self.kind {
            Kind::AzurePipelines => "##[endgroup]",
            Kind::GitHubActions => "::endgroup::",
        }
    }

    /// Hands `markdown` to the platform's run summary. Returns the logging command to print
    /// (Azure Pipelines announces the file; GitHub Actions reads its file after the step).
    pub fn publish_summary(&self, markdown: &str) -> std::io::Result<Option<String>> {
        let Some(path) = &self.summary else {
            return Ok(None);
        };
        match self.kind {
            Kind::AzurePipelines => {
                std::fs::write(path, markdown).map_err(|error| with_path(error, path))?;
                Ok(Some(azure_upload_summary(path)))
            }
            Kind::GitHubActions => {
                // Other steps' summaries share the file: append, never replace.
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|error| with_path(error, path))?;
                file.write_all(markdown.as_bytes())
                    .and_then(|()| file.write_all(b"\n"))
                    .map_err(|error| with_path(error, path))?;
                Ok(None)
            }
        }
    }
}

fn with_path(error: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(
        error.kind(),
        format!("cannot write the run summary {}: {error}", path.display()),
    )
}

/// `##vso[task.logissue type=error;sourcepath=F;linenumber=L;columnnumber=C;code=X]message`
pub fn azure_annotation(annotation: &Annotation) -> String {
    let mut properties = vec![format!(
        "type={}",
        match annotation.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    )];
    if let Some(file) = &annotation.file {
        properties.push(format!("sourcepath={}", azure_property(file)));
        if let Some(line) = annotation.line {
            properties.push(format!("linenumber={line}"));
            if let Some(column) = annotation.column {
                properties.push(format!("columnnumber={column}"));
            }
        }
    }
    if let Some(code) = &annotation.code {
        properties.push(format!("code={}", azure_property(code)));
    }
    format!(
        "##vso[task.logissue {}]{}",
        properties.join(";"),
        azure_message(&annotation.message)
    )
}

/// `##vso[task.uploadsummary]<absolute path>`
pub fn azure_upload_summary(path: &Path) -> String {
    format!(
        "##vso[task.uploadsummary]{}",
        azure_message(&path.display().to_string())
    )
}

/// Escapes a logging command's message for Azure Pipelines; `%` first, so that no escape is
/// escaped again.
pub fn azure_message(text: &str) -> String {
    text.replace('%', "%AZP25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a property value for Azure Pipelines: also `;`, which separates properties, and
/// `]`, which ends them.
pub fn azure_property(text: &str) -> String {
    azure_message(text).replace(';', "%3B").replace(']', "%5D")
}

/// `::error file=F,line=L,col=C,title=T::message`
pub fn github_annotation(annotation: &Annotation) -> String {
    let command = match annotation.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut properties = Vec::new();
    if let Some(file) = &annotation.file {
        properties.push(format!("file={}", github_property(file)));
        if let Some(line) = annotation.line {
            properties.push(format!("line={line}"));
            if let Some(column) = annotation.column {
                properties.push(format!("col={column}"));
            }
        }
    }
    if let Some(title) = annotation.title.as_ref().or(annotation.code.as_ref()) {
        properties.push(format!("title={}", github_property(title)));
    }
    let properties = if properties.is_empty() {
        String::new()
    } else {
        format!(" {}", properties.join(","))
    };
    format!(
        "::{command}{properties}::{}",
        github_message(&annotation.message)
    )
}

/// Escapes a workflow command's message for GitHub Actions; `%` first.
pub fn github_message(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a property value for GitHub Actions: also `:` and `,`, which end a value.
pub fn github_property(text: &str) -> String {
    github_message(text).replace(':', "%3A").replace(',', "%2C")
}

/// A markdown table cell: one line, with no `|` that would split it and no HTML.
pub fn markdown_cell(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
        .replace("\r\n", "<br>")
        .replace(['\r', '\n'], "<br>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::Code;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    }

    #[test]
    fn detects_azure_pipelines_by_tf_build_and_puts_the_summary_in_the_agent_temp_folder() {
        let platform = Platform::detect(env(&[
            ("TF_BUILD", "True"),
            ("AGENT_TEMPDIRECTORY", "/agent/_temp"),
        ]))
        .unwrap();
        assert_eq!(platform.kind, Kind::AzurePipelines);
        assert_eq!(
            platform.summary,
            Some(PathBuf::from("/agent/_temp/imagegen.md"))
        );
    }

    #[test]
    fn azure_without_a_temp_folder_uses_the_system_one() {
        let platform = Platform::detect(env(&[("TF_BUILD", "True")])).unwrap();
        let summary = platform.summary.unwrap();
        assert!(summary.is_absolute(), "{summary:?}");
        assert!(summary.starts_with(std::path::absolute(std::env::temp_dir()).unwrap()));
    }

    #[test]
    fn detects_github_actions_only_when_github_actions_is_true() {
        let platform = Platform::detect(env(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_STEP_SUMMARY", "/runner/summary.md"),
        ]))
        .unwrap();
        assert_eq!(platform.kind, Kind::GitHubActions);
        assert_eq!(platform.summary, Some(PathBuf::from("/runner/summary.md")));
        assert_eq!(Platform::detect(env(&[("GITHUB_ACTIONS", "false")])), None);
        assert_eq!(
            Platform::detect(env(&[("GITHUB_ACTIONS", "true")]))
                .unwrap()
                .summary,
            None
        );
    }

    #[test]
    fn no_platform_without_the_variables_or_with_them_empty() {
        assert_eq!(Platform::detect(env(&[])), None);
        assert_eq!(Platform::detect(env(&[("TF_BUILD", "")])), None);
    }

    #[test]
    fn azure_wins_when_both_are_set() {
        let platform =
            Platform::detect(env(&[("TF_BUILD", "True"), ("GITHUB_ACTIONS", "true")])).unwrap();
        assert_eq!(platform.kind, Kind::AzurePipelines);
    }

    #[test]
    fn azure_error_carries_file_line_column_and_code() {
        let diagnostic = Diagnostic::error(Code::JsonSyntax, "expected `,` or `}`")
            .in_file("definitions/a.json")
            .at(3, 14);
        assert_eq!(
            azure_annotation(&Annotation::from_diagnostic(&diagnostic)),
            "##vso[task.logissue type=error;sourcepath=definitions/a.json;linenumber=3;\
             columnnumber=14;code=json-syntax]definitions/a.json:3:14: expected `,` or `}`"
        );
    }

    #[test]
    fn azure_warning_without_a_location() {
        let diagnostic = Diagnostic::warning(Code::UnusedVariable, "X is unused");
        assert_eq!(
            azure_annotation(&Annotation::from_diagnostic(&diagnostic)),
            "##vso[task.logissue type=warning;code=unused-variable]X is unused"
        );
    }

    #[test]
    fn azure_escapes_properties_and_message() {
        let annotation = Annotation::error("100% done\r\nnext; [x]").in_file("a;b]c%d\ne");
        assert_eq!(
            azure_annotation(&annotation),
            "##vso[task.logissue type=error;sourcepath=a%3Bb%5Dc%AZP25d%0Ae]\
             100%AZP25 done%0D%0Anext; [x]"
        );
    }

    #[test]
    fn azure_groups_and_summary() {
        let platform = Platform {
            kind: Kind::AzurePipelines,
            summary: None,
        };
        assert_eq!(
            platform.group_start("Polling\n3 jobs"),
            "##[group]Polling 3 jobs"
        );
        assert_eq!(platform.group_end(), "##[endgroup]");
        assert_eq!(
            azure_upload_summary(Path::new("/agent/_temp/imagegen.md")),
            "##vso[task.uploadsummary]/agent/_temp/imagegen.md"
        );
    }

    #[test]
    fn github_error_carries_file_line_column_and_title() {
        let diagnostic = Diagnostic::error(Code::JsonSyntax, "expected `,` or `}`")
            .in_file("definitions/a.json")
            .at(3, 14);
        assert_eq!(
            github_annotation(&Annotation::from_diagnostic(&diagnostic)),
            "::error file=definitions/a.json,line=3,col=14,title=json-syntax::\
             definitions/a.json:3:14: expected `,` or `}`"
        );
        assert_eq!(
            github_annotation(&Annotation::error("plain")),
            "::error::plain"
        );
    }

    #[test]
    fn github_escapes_properties_and_message() {
        let annotation = Annotation::error("50% a: b, c\r\nd")
            .in_file("x,y:z%\n")
            .titled("vs2022/a: failed, sadly");
        assert_eq!(
            github_annotation(&annotation),
            "::error file=x%2Cy%3Az%25%0A,title=vs2022/a%3A failed%2C sadly::50%25 a: b, c%0D%0Ad"
        );
        let warning = Annotation {
            severity: Severity::Warning,
            ..Annotation::error("w")
        };
        assert_eq!(github_annotation(&warning), "::warning::w");
    }

    #[test]
    fn github_groups() {
        let platform = Platform {
            kind: Kind::GitHubActions,
            summary: None,
        };
        assert_eq!(platform.group_start("Submitting"), "::group::Submitting");
        assert_eq!(platform.group_end(), "::endgroup::");
    }

    #[test]
    fn summaries_are_written_for_azure_and_appended_for_github() {
        let folder = tempfile::tempdir().unwrap();
        let azure = Platform {
            kind: Kind::AzurePipelines,
            summary: Some(folder.path().join("imagegen.md")),
        };
        let command = azure.publish_summary("# one").unwrap().unwrap();
        assert_eq!(
            command,
            format!(
                "##vso[task.uploadsummary]{}",
                folder.path().join("imagegen.md").display()
            )
        );
        assert_eq!(
            std::fs::read_to_string(folder.path().join("imagegen.md")).unwrap(),
            "# one"
        );
        let file = folder.path().join("step-summary.md");
        std::fs::write(&file, "earlier step\n").unwrap();
        let github = Platform {
            kind: Kind::GitHubActions,
            summary: Some(file.clone()),
        };
        assert_eq!(github.publish_summary("# two").unwrap(), None);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "earlier step\n# two\n"
        );
    }

    #[test]
    fn a_ci_platform_is_any_of_its_variables_set_true() {
        assert!(is_ci(env(&[("TF_BUILD", "True")])));
        assert!(is_ci(env(&[("GITHUB_ACTIONS", "true")])));
        assert!(is_ci(env(&[("CI", "1")])));
        assert!(is_ci(env(&[("CI", " YES ")])));
        assert!(!is_ci(env(&[])));
        assert!(!is_ci(env(&[("CI", "false")])));
        assert!(!is_ci(env(&[("CI", "")])));
        assert!(!is_ci(env(&[("TF_BUILD", "0")])));
    }

    #[test]
    fn markdown_cells_stay_one_cell() {
        assert_eq!(markdown_cell("a | b\nc <d>"), "a \\| b<br>c &lt;d&gt;");
    }
}
