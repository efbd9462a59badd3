//! `imagegen doctor` through the binary, against the local stand-ins of every service a run
//! needs: the Image Factory emulator (and its Azure AD), a file ledger or a blob in Azurite, a
//! bare OSOB repository over a local path or https, and the GitHub and Azure DevOps routes.
//! Every stand-in passing first, for each provider; then one failure per check, each named with
//! its fix while the other checks still run; and no secret in any output.

use std::process::Output;
use std::time::{Duration, Instant};

use imagegen::factory::emulator::{Emulator, EmulatorConfig, Fault, Route};
use serde_json::{Value, json};

use crate::common::azurite::{self, Azurite};
use crate::common::git_https::GitHttpsServer;
use crate::common::osob::Osob;
use crate::common::{self, Repo, imagegen_against, json_of, stderr_of, stdout_of};
use crate::common_pr::{AdoCredential, AdoSetup, FakeAzureDevOps, FakeGitHub, GitHubSetup};

/// Every secret of these tests holds this, so that a leak anywhere in the output is caught.
const CANARY: &str = "canary-3d7e";
const CLIENT_SECRET: &str = "canary-3d7e-client-secret";
const PR_TOKEN: &str = "canary-3d7e-pr-token";
const BLOB: &str = "imagegen/state.json";
const FILE_CHECKS: [&str; 8] = [
    "azure-ad",
    "image-factory",
    "ledger",
    "ledger-write",
    "osob-repository",
    "osob-base-branch",
    "osob-files",
    "pr-provider",
];

/// An emulator whose secret and tokens hold the canary, and which also issues tokens for
/// another application of the tenant.
fn emulator() -> Emulator {
    Emulator::start_in_background(EmulatorConfig {
        client_secret: CLIENT_SECRET.to_string(),
        token_prefix: format!("{CANARY}-token-"),
        other_resources: vec!["api://another-app".to_string()],
        ..EmulatorConfig::default()
    })
    .expect("start the Image Factory emulator")
}

/// A repository with the shipped definitions and mapping (local provider), today's images
/// adopted into its file ledger, a bare OSOB, and the emulator.
struct World {
    repo: Repo,
    osob: Osob,
    emulator: Emulator,
    env: Vec<(String, String)>,
    /// Values no output may hold (the SAS signature of a blob ledger, a wrong token).
    secrets: Vec<String>,
}

impl World {
    fn new() -> Self {
        let repo = Repo::shipped();
        repo.map_to_local_osob();
        let world = Self {
            repo,
            osob: Osob::new(),
            emulator: emulator(),
            env: Vec::new(),
            secrets: vec![CANARY.to_string()],
        };
        world.repo.run(&["adopt"], 0);
        world
    }

    fn set(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.env.push((name.to_string(), value.into()));
        self
    }

    /// The mapping, changed by `change`.
    fn change_mapping(&self, change: impl FnOnce(&mut Value)) {
        let mut mapping: Value =
            serde_json::from_str(&self.repo.read("osob-mapping/osob.json")).expect("a mapping");
        change(&mut mapping);
        self.repo.write(
            "osob-mapping/osob.json",
            &serde_json::to_string_pretty(&mapping).expect("a mapping"),
        );
    }

    /// `imagegen doctor ARGS`, expecting `code`; no output holds a secret.
    fn doctor(&self, args: &[&str], code: i32) -> Output {
        let mut command = imagegen_against(&self.repo, &self.emulator);
        command
            .env("IMAGEGEN_OSOB_URL", self.osob.url())
            .arg("doctor")
            .args(args);
        for (name, value) in &self.env {
            command.env(name, value);
        }
        let output = tokio::task::block_in_place(|| command.output().expect("run imagegen"));
        let text = format!("{}{}", stdout_of(&output), stderr_of(&output));
        assert_eq!(output.status.code(), Some(code), "doctor {args:?}:\n{text}");
        for secret in &self.secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{secret} shows in:\n{text}"
            );
        }
        output
    }

    /// The text report, expecting `code`.
    fn report(&self, code: i32) -> String {
        stdout_of(&self.doctor(&[], code))
    }
}

/// The line of check `name` with the indented lines under it: its detail and fix.
fn check(report: &str, name: &str) -> String {
    let lines: Vec<&str> = report.lines().collect();
    let start = lines
        .iter()
        .position(|line| {
            line.get(6..)
                .is_some_and(|rest| rest.split(' ').next() == Some(name))
        })
        .unwrap_or_else(|| panic!("no line for {name} in:\n{report}"));
    let mut text = lines[start].to_string();
    for line in lines[start + 1..]
        .iter()
        .take_while(|line| line.starts_with(' '))
    {
        text.push('\n');
        text.push_str(line);
    }
    text
}

/// Asserts that check `name` came out as `outcome` (`pass`, `warn`, `FAIL`, `skip`) and that
/// its text holds every one of `words`.
fn assert_check(report: &str, name: &str, outcome: &str, words: &[&str]) {
    let text = check(report, name);
    assert!(
        text.starts_with(outcome),
        "{name} is not {outcome}:\n{report}"
    );
    for word in words {
        assert!(text.contains(word), "{name} lacks {word:?}:\n{text}");
    }
}

fn assert_all_pass(report: &str, names: &[&str]) {
    for name in names {
        assert_check(report, name, "pass", &[]);
    }
    assert!(!report.contains("fix:"), "{report}");
}

// ---------------------------------------------------------------------------------------------
// Everything passing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_passes_against_the_local_stand_ins_and_nothing_changes() {
    let world = World::new();
    let ledger = world.repo.read(".imagegen/state.json");
    let osob_main = world.osob.tip("main");

    let report = world.report(0);
    assert_all_pass(&report, &FILE_CHECKS);
    assert_eq!(report.lines().count(), FILE_CHECKS.len() + 2, "{report}");
    assert!(
        report.ends_with("\n8 checks: 8 passed, 0 warnings, 0 failed\n"),
        "{report}"
    );
    assert_check(
        &report,
        "azure-ad",
        "pass",
        &["issued a token for api://image-factory-emulator to client id emulator-client"],
    );
    assert_check(
        &report,
        "image-factory",
        "pass",
        &["00000000-0000-0000-0000-000000000000", "answered 404"],
    );
    assert_check(&report, "ledger", "pass", &["16 entries"]);
    assert_check(&report, "ledger-write", "pass", &["byte for byte the same"]);
    assert_check(
        &report,
        "osob-base-branch",
        "pass",
        &["main is at", "imagegen/helix-images does not exist yet"],
    );
    assert_check(
        &report,
        "osob-files",
        "pass",
        &["4 files on main name the images of 16 definitions"],
    );
    assert_check(&report, "pr-provider", "pass", &["local: nothing to check"]);

    let document = json_of(&world.doctor(&["--output", "json"], 0));
    assert_eq!(document["ok"], true);
    let checks = document["checks"].as_array().expect("a list of checks");
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, FILE_CHECKS);
    for check in checks {
        assert_eq!(check["outcome"], "pass", "{check}");
        assert!(check["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert_eq!(check["fix"], Value::Null);
    }

    // Its logs at their most talkative show no secret either.
    world.doctor(&["-vvv"], 0);

    // Nothing was submitted, written, pushed or created.
    assert_eq!(world.repo.read(".imagegen/state.json"), ledger);
    assert_eq!(world.osob.tip("main"), osob_main);
    assert_eq!(world.osob.tip(common::osob::BRANCH), None);
    let requests = world.emulator.requests();
    assert!(!requests.iter().any(|r| r.is_submission()), "{requests:?}");
    assert!(
        requests
            .iter()
            .filter(|r| r.method == "GET")
            .all(|r| r.path == "/api/jobs/00000000-0000-0000-0000-000000000000"),
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_passes_with_github_over_https_and_a_blob_ledger() {
    let github = FakeGitHub::start(GitHubSetup::new("dotnet", "helix-machines", PR_TOKEN)).await;
    let azurite = Azurite::start();
    let container = azurite.container("ledgers").await;
    let mut world = World::new();
    let git = GitHttpsServer::start(world.osob.root(), "x-access-token", PR_TOKEN).await;
    world.change_mapping(|mapping| {
        mapping["provider"] = json!({
            "kind": "github",
            "owner": "dotnet",
            "repository": "helix-machines",
            "api_url": github.api_base(),
        });
    });
    let sas = azurite.sas_with(
        &container,
        "rcw",
        jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 90),
    );
    world.secrets.push(azurite::signature_of(&sas));
    world
        .set(
            "IMAGEGEN_STATE",
            azurite.blob_url_without_sas(&container, BLOB),
        )
        .set("IMAGEGEN_STATE_SAS", sas)
        .set("IMAGEGEN_OSOB_URL", git.url("osob.git"))
        .set("GITHUB_TOKEN", PR_TOKEN);
    for (name, value) in git.environment() {
        world.set(name, value);
    }
    // The blob ledger starts as the file's copy, as the first pipeline run would write it.
    let file_ledger = world.repo.read(".imagegen/state.json");
    azurite
        .put_blob(&container, BLOB, file_ledger.as_bytes())
        .await;
    let (_, etag) = azurite.blob(&container, BLOB).await.expect("the blob");

    let report = world.report(0);
    assert_all_pass(
        &report,
        &[
            "azure-ad",
            "image-factory",
            "ledger",
            "ledger-write",
            "ledger-sas-expiry",
            "ledger-sas-permissions",
            "osob-repository",
            "osob-base-branch",
            "osob-files",
            "pr-provider",
        ],
    );
    assert_check(
        &report,
        "ledger-write",
        "pass",
        &["under its ETag (If-Match)"],
    );
    assert_check(
        &report,
        "ledger-sas-expiry",
        "pass",
        &["the SAS expires on"],
    );
    assert_check(
        &report,
        "ledger-sas-permissions",
        "pass",
        &["sp=rcw allows read, create and write, as the ledger needs"],
    );
    assert_check(
        &report,
        "osob-repository",
        "pass",
        &["answers with the token"],
    );
    assert_check(
        &report,
        "pr-provider",
        "pass",
        &["github: the token reads dotnet/helix-machines and its pull requests"],
    );
    let (bytes, new_etag) = azurite.blob(&container, BLOB).await.expect("the blob");
    assert_eq!(
        bytes,
        file_ledger.as_bytes(),
        "the blob's bytes are unchanged"
    );
    assert_ne!(new_etag, etag, "it was written, under its ETag");
    assert!(github.requests().iter().all(|r| r.method == "GET"));
    assert!(git.requests().iter().all(|r| !r.is_push()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_passes_with_azure_devops() {
    let ado = FakeAzureDevOps::start(AdoSetup::new(
        "dnceng",
        "internal",
        "dotnet-helix-machines",
        AdoCredential::Pat(PR_TOKEN.to_string()),
    ))
    .await;
    let mut world = World::new();
    world.change_mapping(|mapping| {
        mapping["provider"] = json!({
            "kind": "azure-devops",
            "organization": "dnceng",
            "project": "internal",
            "repository": "dotnet-helix-machines",
            "api_url": ado.endpoint(),
        });
    });
    world.set("AZURE_DEVOPS_PAT", PR_TOKEN);
    let report = world.report(0);
    assert_all_pass(&report, &FILE_CHECKS);
    assert_check(
        &report,
        "pr-provider",
        "pass",
        &[
            "azure-devops: the token reads internal/dotnet-helix-machines",
            "no open pull request from imagegen/helix-images yet",
        ],
    );
    assert!(ado.requests().iter().all(|r| r.method == "GET"));
}

// ---------------------------------------------------------------------------------------------
// One failure per check

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_secret_fails_azure_ad_while_the_service_is_still_reached() {
    let mut world = World::new();
    world.set("IMAGE_FACTORY_CLIENT_SECRET", format!("{CANARY}-wrong"));
    let report = world.report(1);
    assert_check(
        &report,
        "azure-ad",
        "FAIL",
        &[
            "Azure AD refused a token for client id emulator-client",
            "(401 invalid_client)",
            "fix: check IMAGE_FACTORY_CLIENT_SECRET and IMAGE_FACTORY_CLIENT_ID",
        ],
    );
    assert_check(
        &report,
        "image-factory",
        "warn",
        &[
            "answers (GET",
            "without a token answered 401",
            "whether it accepts imagegen's token is not known",
            "fix: fix azure-ad first",
        ],
    );
    for name in &FILE_CHECKS[2..] {
        assert_check(&report, name, "pass", &[]);
    }
    assert!(report.contains("1 warning, 1 failed"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_service_refuses_fails_image_factory() {
    let mut world = World::new();
    // Azure AD issues it, for another application: the service answers 401.
    world.set("IMAGE_FACTORY_RESOURCE_ID", "api://another-app");
    let report = world.report(1);
    assert_check(&report, "azure-ad", "pass", &["for api://another-app"]);
    assert_check(
        &report,
        "image-factory",
        "FAIL",
        &[
            "Image Factory refused the token at",
            "(401) even after a new one was fetched",
            "fix: the token is for another resource: check IMAGE_FACTORY_RESOURCE_ID",
        ],
    );
    for name in &FILE_CHECKS[2..] {
        assert_check(&report, name, "pass", &[]);
    }
}

/// A world whose ledger is a blob in Azurite, written with a full SAS, then read with `sas`.
async fn blob_world(azurite: &Azurite, container: &str, sas: String) -> World {
    let mut world = World::new();
    let file_ledger = world.repo.read(".imagegen/state.json");
    azurite
        .put_blob(container, BLOB, file_ledger.as_bytes())
        .await;
    world.secrets.push(azurite::signature_of(&sas));
    world
        .set(
            "IMAGEGEN_STATE",
            azurite.blob_url_without_sas(container, BLOB),
        )
        .set("IMAGEGEN_STATE_SAS", sas);
    world
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_sas_fails_the_write_and_the_permissions() {
    let azurite = Azurite::start();
    let container = azurite.container("ledgers").await;
    let read_only = azurite.sas_with(
        &container,
        "r",
        jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 90),
    );
    let world = blob_world(&azurite, &container, read_only).await;
    let before = azurite.blob(&container, BLOB).await.expect("the blob");
    let report = world.report(1);
    assert_check(&report, "ledger", "pass", &["16 entries"]);
    assert_check(
        &report,
        "ledger-write",
        "FAIL",
        &[
            "Azure Storage refused the SAS for the ledger",
            "403 AuthorizationPermissionMismatch",
            "fix: issue a new SAS for the ledger's container with read, create and write (sp=rcw)",
            "IMAGEGEN_STATE_SAS",
        ],
    );
    assert_check(&report, "ledger-sas-expiry", "pass", &[]);
    assert_check(
        &report,
        "ledger-sas-permissions",
        "FAIL",
        &["sp=r lacks create and write: the ledger needs read, create and write (sp=rcw)"],
    );
    assert_eq!(
        azurite.blob(&container, BLOB).await,
        Some(before),
        "untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sas_expiring_within_two_weeks_warns_and_passes() {
    let azurite = Azurite::start();
    let container = azurite.container("ledgers").await;
    let expiring = azurite.sas_with(
        &container,
        "rcw",
        jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 7 + 1),
    );
    let world = blob_world(&azurite, &container, expiring).await;
    let report = world.report(0);
    assert_check(
        &report,
        "ledger-sas-expiry",
        "warn",
        &[
            "the SAS expires on",
            "in 7 days: every run after that fails",
            "fix: issue a new SAS",
        ],
    );
    for name in ["ledger", "ledger-write", "ledger-sas-permissions"] {
        assert_check(&report, name, "pass", &[]);
    }
    assert!(report.contains("1 warning, 0 failed"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_sas_fails() {
    let azurite = Azurite::start();
    let container = azurite.container("ledgers").await;
    let expired = azurite.sas_with(
        &container,
        "rcw",
        jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1),
    );
    let world = blob_world(&azurite, &container, expired).await;
    let report = world.report(1);
    assert_check(
        &report,
        "ledger",
        "FAIL",
        &[
            "Azure Storage refused the SAS for the ledger",
            "fix: issue a new SAS",
        ],
    );
    assert_check(&report, "ledger-write", "skip", &["could not be read"]);
    assert_check(
        &report,
        "ledger-sas-expiry",
        "FAIL",
        &["the SAS expired on", "fix: issue a new SAS"],
    );
    assert_check(&report, "ledger-sas-permissions", "pass", &[]);
    assert_check(&report, "osob-files", "pass", &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_osob_fails_and_what_needs_it_is_skipped() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = closed.local_addr().expect("an address").port();
    drop(closed);
    let mut world = World::new();
    world
        .set(
            "IMAGEGEN_OSOB_URL",
            format!("https://127.0.0.1:{port}/osob.git"),
        )
        .set("AZURE_DEVOPS_PAT", PR_TOKEN);
    let report = world.report(1);
    assert_check(
        &report,
        "osob-repository",
        "FAIL",
        &[
            &format!("cannot reach the OSOB repository https://127.0.0.1:{port}/osob.git"),
            "fix: check the URL (repository.url in osob-mapping/osob.json, or --osob-url",
        ],
    );
    assert_check(&report, "osob-base-branch", "skip", &["did not answer"]);
    assert_check(&report, "osob-files", "skip", &["did not answer"]);
    for name in [
        "azure-ad",
        "image-factory",
        "ledger",
        "ledger-write",
        "pr-provider",
    ] {
        assert_check(&report, name, "pass", &[]);
    }
    assert!(report.contains("1 failed, 2 skipped"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_base_branch_fails_and_names_the_branches_there() {
    let world = World::new();
    world.change_mapping(|mapping| mapping["repository"]["base_branch"] = json!("release"));
    let report = world.report(1);
    assert_check(&report, "osob-repository", "pass", &["1 branch"]);
    assert_check(
        &report,
        "osob-base-branch",
        "FAIL",
        &[
            "has no branch release (it has: main)",
            "fix: fix repository.base_branch in osob-mapping/osob.json",
        ],
    );
    assert_check(
        &report,
        "osob-files",
        "skip",
        &["the base branch does not exist"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapped_file_that_does_not_name_its_image_fails_naming_the_file() {
    let world = World::new();
    let file = "definitions/queues/vs2019-preview.yml";
    let text = world.osob.read_on("main", file).expect("the file");
    let renamed = text.replace(
        "Image: Helix-Server-DataCenter-2022-EN-US-VS2019-Preview-Professional_16_11_0_3",
        "Image: Helix-Pro-Renamed-By-Hand",
    );
    assert_ne!(renamed, text);
    world.osob.commit_files(
        &world.osob.repo(),
        "main",
        None,
        &[(file.to_string(), renamed.into_bytes())],
        "Rename an image by hand",
        "maintainer@osob.invalid",
    );
    let report = world.report(1);
    assert_check(
        &report,
        "osob-files",
        "FAIL",
        &[
            "definitions/queues/vs2019-preview.yml: no image of \
             vs2019-preview/server-2022-en-us-professional is named here",
            "Helix-Server-DataCenter-2022-EN-US-VS2019-Preview-Professional_{VS_2019_PREVIEW_VERSION}",
            "fix: for each file: fix its path in osob-mapping/osob.json",
        ],
    );
    for name in ["osob-repository", "osob-base-branch", "pr-provider"] {
        assert_check(&report, name, "pass", &[]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_pull_request_token_fails_the_provider_without_showing_it() {
    let github = FakeGitHub::start(GitHubSetup::new("dotnet", "helix-machines", PR_TOKEN)).await;
    let mut world = World::new();
    world.change_mapping(|mapping| {
        mapping["provider"] = json!({
            "kind": "github",
            "owner": "dotnet",
            "repository": "helix-machines",
            "api_url": github.api_base(),
        });
    });
    world.set("GITHUB_TOKEN", format!("{CANARY}-revoked"));
    let report = world.report(1);
    assert_check(
        &report,
        "pr-provider",
        "FAIL",
        &[
            "GitHub: read the repository dotnet/helix-machines failed (401): Bad credentials",
            "fix: renew the token in GITHUB_TOKEN; it needs contents: write and pull requests: \
             write",
        ],
    );
    for name in &FILE_CHECKS[..7] {
        assert_check(&report, name, "pass", &[]);
    }
}

// ---------------------------------------------------------------------------------------------
// The ledger's place, CI platforms, time limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ledger_warns_off_ci_fails_on_ci_and_is_never_created() {
    let world = World::new();
    for file in [".imagegen/state.json", ".imagegen/state.json.lock"] {
        std::fs::remove_file(world.repo.path().join(file)).expect("remove the ledger");
    }
    let report = world.report(0);
    assert_check(
        &report,
        "ledger",
        "warn",
        &[
            ".imagegen/state.json does not exist yet",
            "fix: nothing, if no run has used this ledger yet",
        ],
    );
    assert_check(
        &report,
        "ledger-write",
        "skip",
        &["imagegen doctor creates none"],
    );
    assert!(!world.repo.path().join(".imagegen/state.json").exists());
    assert!(!world.repo.path().join(".imagegen/state.json.lock").exists());

    // On a CI platform it means a wrong setting: a failure, and an annotation.
    let mut on_ci = world;
    on_ci.set("GITHUB_ACTIONS", "true");
    let output = on_ci.doctor(&["--output", "json"], 1);
    let document = json_of(&output);
    assert_eq!(document["ok"], false);
    let ledger = &document["checks"][2];
    assert_eq!(ledger["name"], "ledger");
    assert_eq!(ledger["outcome"], "fail");
    assert!(
        ledger["fix"].as_str().is_some_and(
            |fix| fix.contains("on a CI platform a missing ledger means a wrong setting")
        ),
        "{ledger}"
    );
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("::error title=imagegen doctor%3A ledger::ledger: .imagegen/state.json does not exist yet"),
        "{stderr}"
    );
    assert!(!on_ci.repo.path().join(".imagegen/state.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_azure_pipelines_each_failure_is_an_annotation() {
    let mut world = World::new();
    let temp = world.repo.path().display().to_string();
    world
        .set("TF_BUILD", "True")
        .set("AGENT_TEMPDIRECTORY", temp)
        .set("IMAGE_FACTORY_CLIENT_SECRET", format!("{CANARY}-wrong"));
    let output = world.doctor(&[], 1);
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains(
            "##vso[task.logissue type=error;code=doctor-azure-ad]azure-ad: Azure AD refused a token"
        ),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("##vso[task.logissue type=warning;code=doctor-image-factory]image-factory: "),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("##vso[task.logissue").count(),
        2,
        "one annotation per failure or warning: {stderr}"
    );
    assert_check(&stdout_of(&output), "azure-ad", "FAIL", &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_with_no_answer_fails_at_the_time_limit_and_the_others_still_run() {
    let world = World::new();
    world
        .emulator
        .inject(Route::Jobs, Fault::Slow(Duration::from_secs(60)));
    let started = Instant::now();
    let report = stdout_of(&world.doctor(&["--timeout", "1s"], 1));
    assert!(started.elapsed() < Duration::from_secs(30), "{report}");
    assert_check(
        &report,
        "image-factory",
        "FAIL",
        &["gave no answer within 1s", "fix: check the network"],
    );
    for name in ["azure-ad", "ledger", "osob-files", "pr-provider"] {
        assert_check(&report, name, "pass", &[]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_that_cannot_be_located_is_one_failed_check_among_the_others() {
    let mut world = World::new();
    world.set(
        "IMAGEGEN_STATE",
        "https://helixstate.blob.core.windows.net/imagegen/state.json",
    );
    let report = world.report(1);
    assert_check(
        &report,
        "ledger",
        "FAIL",
        &[
            "the ledger https://helixstate.blob.core.windows.net/imagegen/state.json has no SAS",
            "fix: fix --state / IMAGEGEN_STATE (and IMAGEGEN_STATE_SAS",
        ],
    );
    assert_check(&report, "ledger-write", "skip", &[]);
    for name in ["azure-ad", "image-factory", "osob-files", "pr-provider"] {
        assert_check(&report, name, "pass", &[]);
    }
}
