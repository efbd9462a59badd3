//! imagegen on a CI platform, end to end: the logging commands of Azure Pipelines and GitHub
//! Actions (annotations, groups, the run summary) appear only when the platform's variables
//! say the run is there, and never spoil stdout's JSON document.

use imagegen::factory::emulator::Emulator;

use crate::common::{Repo, emulator_failing, imagegen_against, json_of, stderr_of, stdout_of};

const AZURE: &[(&str, &str)] = &[("TF_BUILD", "True")];
const GITHUB: &[(&str, &str)] = &[("GITHUB_ACTIONS", "true")];

const BROKEN: &str = "definitions/windows/broken.json";

/// The small fixture with one definition that is not JSON.
fn repo_with_a_broken_definition() -> Repo {
    let repo = Repo::fixture("small");
    repo.write(
        BROKEN,
        "{\n  \"BaseImage\": {\n    \"Name\": \"x\",,\n  }\n}\n",
    );
    repo
}

fn validate(repo: &Repo, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut command = repo.imagegen();
    command.arg("validate").args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.assert().code(1).get_output().clone()
}

fn has_logging_commands(text: &str) -> bool {
    text.lines()
        .any(|line| line.starts_with("##vso[") || line.starts_with("##[") || line.starts_with("::"))
}

#[test]
fn validate_speaks_no_platform_without_its_variables() {
    let repo = repo_with_a_broken_definition();
    let output = validate(&repo, &[], &[]);
    let stderr = stderr_of(&output);
    assert!(stderr.contains(&format!("error: {BROKEN}:3:")), "{stderr}");
    assert!(!has_logging_commands(&stderr), "{stderr}");
    assert!(!has_logging_commands(&stdout_of(&output)));
}

#[test]
fn validate_on_azure_pipelines_raises_a_located_issue_instead_of_the_error_line() {
    let repo = repo_with_a_broken_definition();
    let output = validate(&repo, AZURE, &[]);
    let stderr = stderr_of(&output);
    let issue = stderr
        .lines()
        .find(|line| line.starts_with("##vso[task.logissue type=error;"))
        .unwrap_or_else(|| panic!("no issue in:\n{stderr}"));
    assert!(
        issue.starts_with(&format!(
            "##vso[task.logissue type=error;sourcepath={BROKEN};linenumber=3;columnnumber="
        )),
        "{issue}"
    );
    assert!(issue.contains(";code=json-syntax]"), "{issue}");
    assert!(!stderr.contains("error: "), "not printed twice: {stderr}");
    assert!(!stderr.contains("::error"), "{stderr}");
}

#[test]
fn validate_on_github_actions_raises_a_located_error() {
    let repo = repo_with_a_broken_definition();
    let output = validate(&repo, GITHUB, &[]);
    let stderr = stderr_of(&output);
    let error = stderr
        .lines()
        .find(|line| line.starts_with("::error "))
        .unwrap_or_else(|| panic!("no error in:\n{stderr}"));
    assert!(
        error.starts_with(&format!("::error file={BROKEN},line=3,col=")),
        "{error}"
    );
    assert!(!stderr.contains("##vso["), "{stderr}");
}

#[test]
fn validate_json_stays_one_document_on_azure_pipelines() {
    let repo = repo_with_a_broken_definition();
    let output = validate(&repo, AZURE, &["--output", "json"]);
    let document = json_of(&output);
    assert_eq!(document["ok"], false);
    assert!(!has_logging_commands(&stdout_of(&output)));
    assert!(stderr_of(&output).contains("##vso[task.logissue type=error;"));
}

/// The small fixture against an emulator that fails the image of `vs/server-2022`.
struct FailingRun {
    repo: Repo,
    emulator: Emulator,
}

const FAILING: &str = "vs/server-2022";

impl FailingRun {
    fn new() -> Self {
        let repo = Repo::fixture("small");
        let (emulator, _) = emulator_failing(&repo, FAILING);
        Self { repo, emulator }
    }

    /// `reconcile --wait --no-pr` with `env` and `args`; it must exit 1. The repository has no
    /// ledger yet, which a run on a platform refuses unless it says `--init-ledger`, as a
    /// pipeline's first run does.
    fn reconcile(&self, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
        let mut command = imagegen_against(&self.repo, &self.emulator);
        command
            .args(["reconcile", "--no-pr", "--wait", "--poll-interval", "100ms"])
            .arg("--init-ledger")
            .args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        command.assert().code(1).get_output().clone()
    }

    /// The failed job's tracking id and the service's message, from the ledger and the
    /// emulator.
    fn failure(&self) -> (String, String) {
        let tracking_id = self.repo.ledger().definitions[FAILING]
            .tracking_id
            .clone()
            .expect("the failed job has a tracking id");
        let message = self
            .emulator
            .job(&tracking_id)
            .expect("the emulator knows the job")
            .message;
        assert!(!message.is_empty());
        (tracking_id, message)
    }
}

/// Every group opened is closed before the next opens, and the last is closed.
fn assert_groups_pair(text: &str, open: &str, close: &str) {
    let mut depth = 0;
    let mut groups = 0;
    for line in text.lines() {
        if line.starts_with(open) {
            assert_eq!(depth, 0, "a group opened inside another:\n{text}");
            depth += 1;
            groups += 1;
        } else if line == close {
            assert_eq!(depth, 1, "a group closed that was not open:\n{text}");
            depth -= 1;
        }
    }
    assert_eq!(depth, 0, "a group was left open:\n{text}");
    assert!(
        groups >= 3,
        "polling, submitting and waiting each in a group:\n{text}"
    );
}

#[test]
fn reconcile_speaks_no_platform_without_its_variables() {
    let run = FailingRun::new();
    let output = run.reconcile(&[], &[]);
    assert!(
        !has_logging_commands(&stderr_of(&output)),
        "{}",
        stderr_of(&output)
    );
    assert!(!has_logging_commands(&stdout_of(&output)));
}

#[test]
fn a_failed_image_on_github_actions_is_an_error_with_groups_and_a_step_summary() {
    let run = FailingRun::new();
    let summary = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(summary.path(), "an earlier step's summary\n").unwrap();
    let summary_path = summary.path().to_str().unwrap();
    let output = run.reconcile(
        &[GITHUB, &[("GITHUB_STEP_SUMMARY", summary_path)]].concat(),
        &[],
    );
    let stderr = stderr_of(&output);
    let (tracking_id, message) = run.failure();

    let error = stderr
        .lines()
        .find(|line| line.starts_with("::error ") && line.contains(&tracking_id))
        .unwrap_or_else(|| panic!("no error naming the job in:\n{stderr}"));
    assert!(
        error.starts_with(&format!("::error file=definitions/{FAILING}.json,title=")),
        "{error}"
    );
    assert!(
        error.contains(&format!("::{FAILING}: job {tracking_id} failed: ")),
        "{error}"
    );
    assert!(error.contains(&message.replace('%', "%25")), "{error}");
    assert_groups_pair(&stderr, "::group::", "::endgroup::");

    let markdown = std::fs::read_to_string(summary.path()).unwrap();
    assert!(
        markdown.starts_with("an earlier step's summary\n"),
        "appended: {markdown}"
    );
    assert!(
        markdown.contains("| definition | status | tracking id | images | took |"),
        "{markdown}"
    );
    assert!(
        markdown.contains(&format!("| {FAILING} | failed | {tracking_id} |")),
        "{markdown}"
    );
    assert!(markdown.contains(&message), "{markdown}");
    assert!(markdown.contains("No pull request: --no-pr"), "{markdown}");
}

#[test]
fn a_failed_image_on_azure_pipelines_is_an_issue_with_groups_and_an_uploaded_summary() {
    let run = FailingRun::new();
    let temp = tempfile::tempdir().unwrap();
    let output = run.reconcile(
        &[
            AZURE,
            &[("AGENT_TEMPDIRECTORY", temp.path().to_str().unwrap())],
        ]
        .concat(),
        &[],
    );
    let stderr = stderr_of(&output);
    let (tracking_id, message) = run.failure();

    let issue = stderr
        .lines()
        .find(|line| {
            line.starts_with("##vso[task.logissue type=error;") && line.contains(&tracking_id)
        })
        .unwrap_or_else(|| panic!("no issue naming the job in:\n{stderr}"));
    assert!(
        issue.starts_with(&format!(
            "##vso[task.logissue type=error;sourcepath=definitions/{FAILING}.json]"
        )),
        "{issue}"
    );
    assert!(
        issue.contains(&format!("]{FAILING}: job {tracking_id} failed: ")),
        "{issue}"
    );
    assert!(issue.contains(&message.replace('%', "%AZP25")), "{issue}");
    assert_groups_pair(&stderr, "##[group]", "##[endgroup]");

    let upload = stderr
        .lines()
        .find_map(|line| line.strip_prefix("##vso[task.uploadsummary]"))
        .unwrap_or_else(|| panic!("no summary uploaded in:\n{stderr}"));
    let path = std::path::Path::new(upload);
    assert!(path.is_absolute(), "{upload}");
    assert!(path.starts_with(temp.path()), "{upload}");
    let markdown = std::fs::read_to_string(path).expect("the uploaded summary exists");
    assert!(
        markdown.contains("| definition | status | tracking id | images | took |"),
        "{markdown}"
    );
    assert!(
        markdown.contains(&format!("| {FAILING} | failed | {tracking_id} |")),
        "{markdown}"
    );
    assert!(markdown.contains(&message), "{markdown}");
}

#[test]
fn reconcile_json_stays_one_document_on_azure_pipelines() {
    let run = FailingRun::new();
    let temp = tempfile::tempdir().unwrap();
    let output = run.reconcile(
        &[
            AZURE,
            &[("AGENT_TEMPDIRECTORY", temp.path().to_str().unwrap())],
        ]
        .concat(),
        &["--output", "json"],
    );
    let document = json_of(&output);
    assert_eq!(document["exit_code"], 1);
    assert!(!has_logging_commands(&stdout_of(&output)));
    let (tracking_id, _) = run.failure();
    assert!(
        stderr_of(&output)
            .lines()
            .any(|line| line.starts_with("##vso[task.logissue type=error;")
                && line.contains(&tracking_id)),
        "{}",
        stderr_of(&output)
    );
}
