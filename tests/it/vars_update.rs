//! End-to-end tests of `imagegen vars update` through the binary, against local stand-ins with
//! the real documents' shapes (tests/it/common/publishers.rs): a Visual Studio channel manifest
//! reached through a URL rewrite, Resource Manager's paged versions behind an Azure AD token for
//! its own resource, and their failures; then `--pr` against a bare git repository and the
//! GitHub stand-in.

use serde_json::Value;

use crate::common::publishers::{self, Published, Publishers};
use crate::common::{Repo, json_of, stderr_of, stdout_of};

const WS2022: [&str; 4] = [
    "20348.2762.241006",
    "20348.2849.241106",
    "20348.2966.250109",
    "20348.3091.250210",
];

fn published(vs: &str) -> Published {
    Published {
        channel: Some((vs.to_string(), "17.12.35527.113".to_string())),
        versions: vec![
            ("2022-datacenter".into(), WS2022.map(String::from).to_vec()),
            (
                "2019-datacenter".into(),
                vec!["17763.6414.241008".into(), "17763.6532.241107".into()],
            ),
        ],
    }
}

/// The sources of three variables, the Windows Server 2022 SKU replaced by `sku_2022` (a fault
/// SKU of the stand-in, or the real one).
fn sources(sku_2022: &str, pull_request: Option<Value>) -> String {
    let mut file = serde_json::json!({
        "variables": {
            "VS_2022_VERSION": {
                "channel": {"url": "https://aka.ms/vs/17/release/channel", "field": "display-version", "edition": "Enterprise"},
                "format": "{parts:_}",
                "within": "17"
            },
            "WINDOWS_SERVER_2019_BUILD": {
                "marketplace": {"location": "westus2", "publisher": "MicrosoftWindowsServer", "offer": "WindowsServer", "sku": "2019-datacenter"}
            },
            "WINDOWS_SERVER_2022_BUILD": {
                "marketplace": {"location": "westus2", "publisher": "MicrosoftWindowsServer", "offer": "WindowsServer", "sku": sku_2022},
                "ignore": ["20348.3091.250210"]
            }
        }
    });
    if let Some(pull_request) = pull_request {
        file["pull_request"] = pull_request;
    }
    serde_json::to_string_pretty(&file).unwrap()
}

fn repo(sku_2022: &str) -> Repo {
    let repo = Repo::shipped();
    repo.write("variable-sources.json", &sources(sku_2022, None));
    repo
}

fn update(repo: &Repo, publishers: &Publishers, args: &[&str]) -> assert_cmd::Command {
    let mut command = repo.imagegen();
    command.args(["vars", "update"]).args(args);
    command.env(
        "IMAGEGEN_SOURCE_URL_REWRITE",
        format!("https://aka.ms/={}/", publishers.url()),
    );
    for (name, value) in publishers.environment() {
        command.env(name, value);
    }
    command
}

fn run(repo: &Repo, publishers: &Publishers, args: &[&str], code: i32) -> std::process::Output {
    update(repo, publishers, args)
        .assert()
        .code(code)
        .get_output()
        .clone()
}

fn no_secret_in(output: &std::process::Output) {
    for text in [stdout_of(output), stderr_of(output)] {
        assert!(
            !text.contains(publishers::ARM_TOKEN) && !text.contains(publishers::CLIENT_SECRET),
            "{text}"
        );
    }
}

#[test]
fn dry_run_shows_every_variables_newest_value_why_and_what_it_rebuilds() {
    let publishers = Publishers::start(published("17.12.3"));
    let repo = repo("2022-datacenter");
    let before = repo.read("variables.json");

    let output = run(&repo, &publishers, &["--dry-run"], 2);

    let stdout = stdout_of(&output);
    println!("{stdout}");
    for expected in [
        "VS_2022_VERSION: 17_12_1 -> 17_12_3 (17.12.3, from the Visual Studio channel manifest https://aka.ms/vs/17/release/channel)\n  release notes: https://learn.test/visualstudio/releases/2022/release-notes#17.12.3\n  rebuilds 5 definitions: ",
        "WINDOWS_SERVER_2019_BUILD: 17763.6532.241107 is up to date (newest: 17763.6532.241107 from the Azure Marketplace versions of MicrosoftWindowsServer/WindowsServer/2019-datacenter in westus2)",
        "WINDOWS_SERVER_2022_BUILD: 20348.2849.241106 -> 20348.2966.250109 (20348.2966.250109, from the Azure Marketplace versions of MicrosoftWindowsServer/WindowsServer/2022-datacenter in westus2)\n  not proposed: 20348.3091.250210 (20348.3091.250210): listed under ignore\n",
        "\nDefinitions to rebuild (",
        "\nImage names:\n",
        "vs2022/server-2022-enterprise                  Helix-Server-DataCenter-2022-VS2022-Enterprise_17_12_1                    Helix-Server-DataCenter-2022-VS2022-Enterprise_17_12_3\n",
        "Helix-Server-DataCenter-2022-EN-US-VS2019-Preview-Professional_16_11_0_4 (unchanged!)",
    ] {
        assert!(stdout.contains(expected), "{expected}\nnot in\n{stdout}");
    }
    // The VS 2019 image on Server 2022 takes the new Windows build but keeps its name.
    assert!(
        stderr_of(&output).contains("warning: vs2019-preview/server-2022-en-us-professional is rebuilt but keeps its image name"),
        "{}",
        stderr_of(&output)
    );
    assert!(
        stderr_of(&output).contains("dry run: variables.json was not changed"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(repo.read("variables.json"), before);
    no_secret_in(&output);
    // One token for Resource Manager, and the 2022 list read to its end through nextLink.
    let requests = publishers.requests();
    assert_eq!(
        requests.iter().filter(|r| r.starts_with("POST")).count(),
        1,
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.ends_with("scope=https://management.azure.com/.default")),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(
            |r| r.contains("skus/2022-datacenter/versions?api-version=2024-07-01&$skiptoken=1")
        ),
        "{requests:?}"
    );
}

#[test]
fn dry_run_json_is_one_document_with_each_variable() {
    let publishers = Publishers::start(published("17.12.3"));
    let repo = repo("2022-datacenter");
    let document = json_of(&run(
        &repo,
        &publishers,
        &["--dry-run", "--output", "json"],
        2,
    ));
    let variables = document["variables"].as_array().unwrap();
    assert_eq!(variables.len(), 3);
    assert_eq!(variables[0]["proposed"]["value"], "17_12_3");
    assert_eq!(variables[1]["proposed"], Value::Null);
    assert_eq!(variables[2]["held_back"][0]["reason"], "ignored");
    assert_eq!(document["written"], false);
    assert!(!document["images"].as_array().unwrap().is_empty());
}

#[test]
fn update_writes_only_the_new_values_bytes_and_only_the_chosen_variables() {
    let publishers = Publishers::start(published("17.12.3"));
    let repo = repo("2022-datacenter");
    let before = repo.read("variables.json");

    run(&repo, &publishers, &["--only", "VS_2022*"], 0);

    assert_eq!(
        repo.read("variables.json"),
        before.replace("\"17_12_1\"", "\"17_12_3\"")
    );
    // Only the channel was asked: no token, no Resource Manager.
    assert!(
        publishers
            .requests()
            .iter()
            .all(|r| r.starts_with("GET /vs/")),
        "{:?}",
        publishers.requests()
    );

    run(&repo, &publishers, &["--except", "VS_*"], 0);
    assert_eq!(
        repo.read("variables.json"),
        before
            .replace("\"17_12_1\"", "\"17_12_3\"")
            .replace("\"20348.2849.241106\"", "\"20348.2966.250109\"")
    );
    let output = run(&repo, &publishers, &[], 0);
    // The 2022 build listed under ignore is still newer: the note says the rules held it back.
    assert!(
        stderr_of(&output).contains("nothing newer passes the rules"),
        "{}",
        stderr_of(&output)
    );
}

/// A source that fails: exit 1, the variable and the source named, variables.json untouched
/// although the other sources found newer values.
fn fails(repo: &Repo, publishers: &Publishers, args: &[&str], expected: &[&str]) {
    let before = repo.read("variables.json");
    let output = run(repo, publishers, args, 1);
    let stderr = stderr_of(&output);
    for expected in expected {
        assert!(stderr.contains(expected), "{expected}\nnot in\n{stderr}");
    }
    assert!(
        stderr.contains("variables.json was not changed"),
        "{stderr}"
    );
    assert_eq!(repo.read("variables.json"), before);
    no_secret_in(&output);
}

#[test]
fn an_unauthorized_list_names_the_variable_and_the_source_and_writes_nothing() {
    let publishers = Publishers::start(published("17.12.3"));
    fails(
        &repo("denied"),
        &publishers,
        &[],
        &[
            "error: WINDOWS_SERVER_2022_BUILD: cannot read the Azure Marketplace versions of MicrosoftWindowsServer/WindowsServer/denied in westus2: GET ",
            "answered 401 Unauthorized",
            "AuthenticationFailed",
            "the identity needs the Reader role on the subscription",
        ],
    );
}

#[test]
fn throttling_is_waited_out_as_retry_after_asks_and_then_reported() {
    let publishers = Publishers::start(published("17.12.3"));
    // Once: waited out, and the run goes on.
    let repo_once = repo("throttled-once");
    let started = std::time::Instant::now();
    run(&repo_once, &publishers, &["--dry-run"], 2);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    // Always: given up after the retries, with what the service asked.
    fails(
        &repo("throttled"),
        &publishers,
        &["--retries", "1"],
        &[
            "WINDOWS_SERVER_2022_BUILD: cannot read the Azure Marketplace versions of MicrosoftWindowsServer/WindowsServer/throttled in westus2",
            "answered 429 Too Many Requests, asking to wait 1s (after 2 tries)",
            "it is throttling: run again later",
        ],
    );
}

#[test]
fn a_malformed_manifest_and_an_empty_list_are_named() {
    let publishers = Publishers::start(Published {
        channel: None,
        ..published("17.12.3")
    });
    fails(
        &repo("empty"),
        &publishers,
        &[],
        &[
            "VS_2022_VERSION: cannot read the Visual Studio channel manifest https://aka.ms/vs/17/release/channel: the answer is not a channel manifest (missing field `info`",
            "WINDOWS_SERVER_2022_BUILD: cannot read the Azure Marketplace versions of MicrosoftWindowsServer/WindowsServer/empty in westus2: Resource Manager lists no version of MicrosoftWindowsServer/WindowsServer/empty in westus2",
        ],
    );
}

#[test]
fn a_refused_sign_in_names_the_variable_and_never_the_secret() {
    let publishers = Publishers::start(published("17.12.3"));
    let repo = repo("2022-datacenter");
    let before = repo.read("variables.json");
    let output = update(&repo, &publishers, &[])
        .env("IMAGE_FACTORY_CLIENT_SECRET", "canary-wrong-secret")
        .assert()
        .code(1)
        .get_output()
        .clone();
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("WINDOWS_SERVER_2019_BUILD: cannot read the Azure Marketplace versions"),
        "{stderr}"
    );
    assert!(
        stderr.contains("signing in to Azure AD for https://management.azure.com failed"),
        "{stderr}"
    );
    assert!(stderr.contains("AADSTS7000215"), "{stderr}");
    assert!(!stderr.contains("canary-wrong-secret"), "{stderr}");
    assert_eq!(repo.read("variables.json"), before);
}

#[test]
fn validate_locates_every_problem_of_the_sources_file() {
    let repo = Repo::shipped();
    repo.write(
        "variable-sources.json",
        "{\n  \"variables\": {\n    \"VS_2022_VERSOIN\": {\"channel\": {\"url\": \"https://x.test\", \"field\": \"display-version\"}},\n    \"VS_2022_VERSION\": {\"channel\": {\"url\": \"https://x.test\", \"field\": \"newest\"}}\n  }\n}\n",
    );
    let output = repo.run(&["validate"], 1);
    let stderr = stderr_of(&output);
    assert!(stderr.contains("variable-sources.json:3:5: VS_2022_VERSOIN has a source, but variables.json defines no VS_2022_VERSOIN; did you mean VS_2022_VERSION or VS_2019_PREVIEW_VERSION?"), "{stderr}");
    assert!(stderr.contains("variable-sources.json:4:"), "{stderr}");
    assert!(stderr.contains("unknown variant `newest`"), "{stderr}");
}

// --- --pr -------------------------------------------------------------------------------------

const GITHUB_TOKEN: &str = "canary-github-token-51d0";
const UPDATE_BRANCH: &str = "imagegen/variable-updates";

/// A bare repository standing in for this one: `main` holds the shipped variables.json.
fn this_repository(folder: &std::path::Path) -> std::path::PathBuf {
    let path = folder.join("helix-images.git");
    let repo = git2::Repository::init_bare(&path).unwrap();
    let blob = repo
        .blob(&std::fs::read(crate::common::manifest_dir().join("variables.json")).unwrap())
        .unwrap();
    let mut builder = repo.treebuilder(None).unwrap();
    builder.insert("variables.json", blob, 0o100644).unwrap();
    let tree = repo.find_tree(builder.write().unwrap()).unwrap();
    let signature = git2::Signature::now("Maintainer", "maintainer@helix.invalid").unwrap();
    repo.commit(
        Some("refs/heads/main"),
        &signature,
        &signature,
        "variables as they stand",
        &tree,
        &[],
    )
    .unwrap();
    path
}

fn on_branch(bare: &std::path::Path, branch: &str) -> Option<String> {
    let repo = git2::Repository::open_bare(bare).unwrap();
    let tip = repo.refname_to_id(&format!("refs/heads/{branch}")).ok()?;
    let tree = repo.find_commit(tip).unwrap().tree().unwrap();
    let entry = tree.get_path(std::path::Path::new("variables.json")).ok()?;
    Some(String::from_utf8(repo.find_blob(entry.id()).unwrap().content().to_vec()).unwrap())
}

async fn run_async(command: assert_cmd::Command, code: i32) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let mut command = command;
        command.assert().code(code).get_output().clone()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_opens_one_pull_request_and_the_next_run_updates_it() {
    use crate::common_pr::{FakeGitHub, GitHubSetup};
    let github = FakeGitHub::start(GitHubSetup::new("dotnet", "helix-images", GITHUB_TOKEN)).await;
    let publishers = Publishers::start(published("17.12.3"));
    let folder = tempfile::tempdir().unwrap();
    let bare = this_repository(folder.path());
    let repo = Repo::shipped();
    let pull_request = serde_json::json!({
        "repository": {"url": bare.display().to_string(), "base_branch": "main"},
        "provider": {"kind": "github", "owner": "dotnet", "repository": "helix-images", "api_url": github.api_base()},
        "labels": ["variable-update"]
    });
    repo.write(
        "variable-sources.json",
        &sources("2022-datacenter", Some(pull_request)),
    );
    let working = repo.read("variables.json");
    let command = || {
        let mut command = update(&repo, &publishers, &["--pr"]);
        command.env("GITHUB_TOKEN", GITHUB_TOKEN);
        command
    };

    let output = run_async(command(), 0).await;
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains(&format!("pushed {UPDATE_BRANCH}")),
        "{stderr}"
    );
    assert!(!stderr.contains(GITHUB_TOKEN) && !stdout_of(&output).contains(GITHUB_TOKEN));
    let pulls = github.pulls();
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].head, UPDATE_BRANCH);
    assert_eq!(
        pulls[0].title,
        "Update VS_2022_VERSION to 17_12_3 and WINDOWS_SERVER_2022_BUILD to 20348.2966.250109"
    );
    for expected in [
        "| VS_2022_VERSION | `17_12_1` | `17_12_3` | 17.12.3 |",
        "[release notes](https://learn.test/visualstudio/releases/2022/release-notes#17.12.3)",
        "### Images that will rebuild (8)",
        "| vs2022/server-2022-enterprise | Helix-Server-DataCenter-2022-VS2022-Enterprise_17_12_1 | Helix-Server-DataCenter-2022-VS2022-Enterprise_17_12_3 |",
        "### Images whose names would not change (1)",
        "- WINDOWS_SERVER_2022_BUILD: 20348.3091.250210: listed under ignore",
    ] {
        assert!(
            pulls[0].body.contains(expected),
            "{expected}\nnot in\n{}",
            pulls[0].body
        );
    }
    assert_eq!(pulls[0].labels, ["variable-update"]);
    let shipped =
        std::fs::read_to_string(crate::common::manifest_dir().join("variables.json")).unwrap();
    let first = shipped
        .replace("\"17_12_1\"", "\"17_12_3\"")
        .replace("\"20348.2849.241106\"", "\"20348.2966.250109\"");
    assert_eq!(
        on_branch(&bare, UPDATE_BRANCH).as_deref(),
        Some(first.as_str())
    );
    assert_eq!(
        repo.read("variables.json"),
        working,
        "--pr leaves the working tree alone"
    );

    // A newer release: the same branch rebuilt from main, the same pull request updated.
    publishers.publish(published("17.12.4"));
    run_async(command(), 0).await;
    let pulls = github.pulls();
    assert_eq!(pulls.len(), 1);
    assert_eq!(
        pulls[0].title,
        "Update VS_2022_VERSION to 17_12_4 and WINDOWS_SERVER_2022_BUILD to 20348.2966.250109"
    );
    let second = first.replace("\"17_12_3\"", "\"17_12_4\"");
    assert_eq!(
        on_branch(&bare, UPDATE_BRANCH).as_deref(),
        Some(second.as_str())
    );
    let repository = git2::Repository::open_bare(&bare).unwrap();
    let tip = repository
        .find_commit(
            repository
                .refname_to_id(&format!("refs/heads/{UPDATE_BRANCH}"))
                .unwrap(),
        )
        .unwrap();
    assert_eq!(
        tip.parent_id(0).unwrap(),
        repository.refname_to_id("refs/heads/main").unwrap()
    );

    // Nothing new: nothing pushed, the pull request left as it is.
    let output = run_async(command(), 0).await;
    assert!(
        stderr_of(&output).contains("already holds this change: nothing pushed"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(github.pulls().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_with_nothing_newer_pushes_nothing_and_opens_nothing() {
    use crate::common_pr::{FakeGitHub, GitHubSetup};
    let github = FakeGitHub::start(GitHubSetup::new("dotnet", "helix-images", GITHUB_TOKEN)).await;
    let publishers = Publishers::start(Published {
        channel: Some(("17.12.1".into(), "17.12.35514.174".into())),
        versions: vec![
            ("2022-datacenter".into(), vec!["20348.2849.241106".into()]),
            ("2019-datacenter".into(), vec!["17763.6532.241107".into()]),
        ],
    });
    let folder = tempfile::tempdir().unwrap();
    let bare = this_repository(folder.path());
    let repo = Repo::shipped();
    let pull_request = serde_json::json!({
        "repository": {"url": bare.display().to_string(), "base_branch": "main"},
        "provider": {"kind": "github", "owner": "dotnet", "repository": "helix-images", "api_url": github.api_base()}
    });
    repo.write(
        "variable-sources.json",
        &sources("2022-datacenter", Some(pull_request)),
    );
    let mut command = update(&repo, &publishers, &["--pr"]);
    command.env("GITHUB_TOKEN", GITHUB_TOKEN);
    let output = run_async(command, 0).await;
    assert!(
        stderr_of(&output).contains("every variable is up to date: nothing was written or pushed"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(on_branch(&bare, UPDATE_BRANCH), None);
    assert!(github.pulls().is_empty());
}

#[test]
fn a_minimum_age_counts_from_the_first_run_that_saw_the_version_kept_in_the_ledger() {
    let publishers = Publishers::start(published("17.12.3"));
    let repo = Repo::shipped();
    repo.write(
        "variable-sources.json",
        r#"{"variables": {"VS_2022_VERSION": {"channel": {"url": "https://aka.ms/vs/17/release/channel", "field": "display-version"}, "format": "{parts:_}", "min_age": "2d"}}}"#,
    );
    let before = repo.read("variables.json");

    // A dry run counts from now and records nothing.
    let output = run(&repo, &publishers, &["--dry-run"], 0);
    assert!(
        stdout_of(&output).contains("  not proposed: 17.12.3 (17_12_3): too new: first seen "),
        "{}",
        stdout_of(&output)
    );
    assert!(repo.ledger().seen.is_empty());

    // The first real run records the date, and proposes nothing yet.
    run(&repo, &publishers, &[], 0);
    assert_eq!(repo.read("variables.json"), before);
    let mut ledger = repo.ledger();
    let first = ledger.seen["VS_2022_VERSION"]["17.12.3"];
    assert!(jiff::Timestamp::now().duration_since(first).as_secs() < 60);

    // Two days and a bit later (the ledger says so), it is proposed and written.
    let earlier = first
        .checked_sub(jiff::SignedDuration::from_hours(49))
        .unwrap();
    ledger
        .seen
        .get_mut("VS_2022_VERSION")
        .unwrap()
        .insert("17.12.3".into(), earlier);
    repo.save_ledger(&ledger);
    run(&repo, &publishers, &[], 0);
    assert_eq!(
        repo.read("variables.json"),
        before.replace("\"17_12_1\"", "\"17_12_3\"")
    );
    // Once the value is current, the ledger forgets the date.
    run(&repo, &publishers, &[], 0);
    assert!(repo.ledger().seen.is_empty(), "{:?}", repo.ledger().seen);
}
