//! The GitHub and Azure DevOps providers over real HTTP: octocrab and azure_devops_rust_api
//! against fake services the tests start on 127.0.0.1, down to the requests they received.

use imagegen::pull_request::azure_devops::{
    AzureDevOpsProvider, AzureDevOpsToken, PAT_VAR, SYSTEM_ACCESS_TOKEN_VAR,
};
use imagegen::pull_request::github::{GITHUB_TOKEN_VAR, GitHubProvider};
use imagegen::pull_request::{Access, PrClient, PrError, PullRequestAction, PullRequestSpec};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::common_pr::{
    AdoCredential, AdoPull, AdoRejection, AdoSetup, FakeAzureDevOps, FakeGitHub, GitHubPull,
    GitHubSetup, RecordedRequest,
};

const OWNER: &str = "dotnet";
const REPO: &str = "helix-osob";
const BRANCH: &str = "imagegen/helix-images";
const TARGET: &str = "main";
const GITHUB_TOKEN: &str = "ghp-test-token";
const CANARY: &str = "canary-9f3b1c-never-print-me";

const ORGANIZATION: &str = "contoso";
/// A space, to see the project name escaped on the way out and in the web URL.
const PROJECT: &str = "Helix Images";
const REPOSITORY: &str = "osob";
const REVIEWER_A: &str = "0b2b1f6e-3c55-4c1a-9a63-0f4a8b6a1d01";
const REVIEWER_B: &str = "7e0c9b44-52a3-4b7e-8d0e-2a9c5f7e3b02";

fn spec(reviewers: &[&str], labels: &[&str]) -> PullRequestSpec {
    PullRequestSpec {
        source_branch: BRANCH.to_owned(),
        target_branch: TARGET.to_owned(),
        title: "Update Helix images to 2024.05".to_owned(),
        body: "## Images\n\n- windows.11.amd64: `helix-win11-2024.05`\n".to_owned(),
        reviewers: reviewers.iter().map(|name| (*name).to_owned()).collect(),
        labels: labels.iter().map(|name| (*name).to_owned()).collect(),
        report: None,
    }
}

fn methods_and_paths(requests: &[RecordedRequest]) -> Vec<(String, String)> {
    requests
        .iter()
        .map(|request| (request.method.clone(), request.path.clone()))
        .collect()
}

fn pair(method: &str, path: impl Into<String>) -> (String, String) {
    (method.to_owned(), path.into())
}

fn assert_no_canary(error: &PrError) {
    assert!(!error.to_string().contains(CANARY), "Display: {error}");
    assert!(!format!("{error:?}").contains(CANARY), "Debug: {error:?}");
}

// ---------------------------------------------------------------------------------------------
// GitHub

fn github_provider(fake: &FakeGitHub, token: &str) -> GitHubProvider {
    GitHubProvider::new(
        Some(&fake.api_base()),
        OWNER,
        REPO,
        SecretString::from(token.to_owned()),
    )
    .unwrap()
}

/// Enterprise-style base (`/api/v3`): the path in the base URL must be kept.
#[tokio::test]
async fn github_creates_the_pull_request_when_none_is_open() {
    let mut setup = GitHubSetup::new(OWNER, REPO, GITHUB_TOKEN);
    setup.prefix = "/api/v3";
    let fake = FakeGitHub::start(setup).await;
    let wanted = spec(&["alice", "bob"], &["osob", "automated"]);

    let opened = github_provider(&fake, GITHUB_TOKEN)
        .open_or_update(&wanted)
        .await
        .unwrap();

    assert_eq!(opened.action, PullRequestAction::Created);
    assert_eq!(opened.number, 1);
    assert_eq!(
        opened.url,
        format!("https://github.test/{OWNER}/{REPO}/pull/1")
    );
    let requests = fake.requests();
    let repo_path = format!("/api/v3/repos/{OWNER}/{REPO}");
    assert_eq!(
        methods_and_paths(&requests),
        vec![
            pair("GET", format!("{repo_path}/pulls")),
            pair("POST", format!("{repo_path}/pulls")),
            pair("POST", format!("{repo_path}/pulls/1/requested_reviewers")),
            pair("POST", format!("{repo_path}/issues/1/labels")),
        ]
    );
    let list = &requests[0];
    assert_eq!(list.query_value("state"), Some("open"));
    assert_eq!(
        list.query_value("head"),
        Some(format!("{OWNER}:{BRANCH}").as_str())
    );
    assert_eq!(list.query_value("base"), Some(TARGET));
    assert_eq!(
        requests[1].body,
        Some(json!({
            "title": wanted.title,
            "head": BRANCH,
            "base": TARGET,
            "body": wanted.body,
        }))
    );
    assert_eq!(
        requests[2].body,
        Some(json!({"reviewers": ["alice", "bob"], "team_reviewers": []}))
    );
    assert_eq!(
        requests[3].body,
        Some(json!({"labels": ["osob", "automated"]}))
    );
    for request in &requests {
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("Bearer {GITHUB_TOKEN}").as_str())
        );
    }
    let pulls = fake.pulls();
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].requested_reviewers, ["alice", "bob"]);
    assert_eq!(pulls[0].labels, ["osob", "automated"]);
}

#[tokio::test]
async fn github_updates_the_open_pull_request_instead_of_creating_another() {
    let mut setup = GitHubSetup::new(OWNER, REPO, GITHUB_TOKEN);
    let mut closed = GitHubPull::open(3, BRANCH, TARGET, "An old closed one");
    closed.open = false;
    let mut open = GitHubPull::open(7, BRANCH, TARGET, "Update Helix images to 2024.04");
    open.requested_reviewers = vec!["alice".to_owned()];
    open.labels = vec!["osob".to_owned()];
    setup.pulls = vec![closed.clone(), open];
    let fake = FakeGitHub::start(setup).await;
    let wanted = spec(&["alice", "bob"], &["osob", "automated"]);

    let updated = github_provider(&fake, GITHUB_TOKEN)
        .open_or_update(&wanted)
        .await
        .unwrap();

    assert_eq!(updated.action, PullRequestAction::Updated);
    assert_eq!(updated.number, 7);
    assert_eq!(
        updated.url,
        format!("https://github.test/{OWNER}/{REPO}/pull/7")
    );
    let requests = fake.requests();
    let repo_path = format!("/repos/{OWNER}/{REPO}");
    assert_eq!(
        requests
            .iter()
            .filter(|request| request.is("POST", &format!("{repo_path}/pulls")))
            .count(),
        0,
        "no pull request may be created: {requests:#?}"
    );
    assert_eq!(
        methods_and_paths(&requests),
        vec![
            pair("GET", format!("{repo_path}/pulls")),
            pair("PATCH", format!("{repo_path}/pulls/7")),
            pair("POST", format!("{repo_path}/pulls/7/requested_reviewers")),
            pair("POST", format!("{repo_path}/issues/7/labels")),
            // An earlier report comment to retire is looked for; there is none.
            pair("GET", format!("{repo_path}/issues/7/comments")),
        ]
    );
    // octocrab also sends `pull_number` in the body, which GitHub ignores: only the fields
    // that matter are compared.
    let patch = requests[1].body.as_ref().unwrap();
    assert_eq!(patch["title"], json!(wanted.title));
    assert_eq!(patch["body"], json!(wanted.body));
    assert!(
        patch.get("state").is_none() && patch.get("base").is_none(),
        "{patch}"
    );
    // Only what the pull request lacks is asked for.
    assert_eq!(
        requests[2].body,
        Some(json!({"reviewers": ["bob"], "team_reviewers": []}))
    );
    assert_eq!(requests[3].body, Some(json!({"labels": ["automated"]})));
    let pulls = fake.pulls();
    assert_eq!(pulls.len(), 2);
    assert_eq!(pulls[0], closed, "the closed pull request is left alone");
    assert_eq!(pulls[1].title, wanted.title);
    assert_eq!(pulls[1].body, wanted.body);
}

#[tokio::test]
async fn github_skips_reviewers_and_labels_when_there_are_none() {
    let mut setup = GitHubSetup::new(OWNER, REPO, GITHUB_TOKEN);
    setup.pulls = vec![GitHubPull::open(4, BRANCH, TARGET, "Old title")];
    let fake = FakeGitHub::start(setup).await;

    let updated = github_provider(&fake, GITHUB_TOKEN)
        .open_or_update(&spec(&[], &[]))
        .await
        .unwrap();

    assert_eq!(updated.action, PullRequestAction::Updated);
    let repo_path = format!("/repos/{OWNER}/{REPO}");
    assert_eq!(
        methods_and_paths(&fake.requests()),
        vec![
            pair("GET", format!("{repo_path}/pulls")),
            pair("PATCH", format!("{repo_path}/pulls/4")),
            pair("GET", format!("{repo_path}/issues/4/comments")),
        ]
    );
}

#[tokio::test]
async fn github_adopts_the_pull_request_another_run_opened_meanwhile() {
    let mut setup = GitHubSetup::new(OWNER, REPO, GITHUB_TOKEN);
    setup.pulls = vec![GitHubPull::open(
        12,
        BRANCH,
        TARGET,
        "Opened by the other run",
    )];
    setup.stale_first_list = true;
    let fake = FakeGitHub::start(setup).await;
    let wanted = spec(&[], &["osob"]);

    let adopted = github_provider(&fake, GITHUB_TOKEN)
        .open_or_update(&wanted)
        .await
        .unwrap();

    assert_eq!(adopted.action, PullRequestAction::Adopted);
    assert_eq!(adopted.number, 12);
    assert_eq!(
        adopted.url,
        format!("https://github.test/{OWNER}/{REPO}/pull/12")
    );
    let repo_path = format!("/repos/{OWNER}/{REPO}");
    assert_eq!(
        methods_and_paths(&fake.requests()),
        vec![
            pair("GET", format!("{repo_path}/pulls")),
            pair("POST", format!("{repo_path}/pulls")),
            pair("GET", format!("{repo_path}/pulls")),
            pair("PATCH", format!("{repo_path}/pulls/12")),
            pair("POST", format!("{repo_path}/issues/12/labels")),
            pair("GET", format!("{repo_path}/issues/12/comments")),
        ]
    );
    let pulls = fake.pulls();
    assert_eq!(pulls.len(), 1, "no second pull request: {pulls:#?}");
    assert_eq!(pulls[0].title, wanted.title);
    assert_eq!(pulls[0].labels, ["osob"]);
}

#[tokio::test]
async fn github_reports_a_validation_failure_that_is_not_a_race() {
    let mut setup = GitHubSetup::new(OWNER, REPO, GITHUB_TOKEN);
    setup.branches_without_commits = vec![BRANCH.to_owned()];
    let fake = FakeGitHub::start(setup).await;

    let error = github_provider(&fake, GITHUB_TOKEN)
        .open_or_update(&spec(&[], &[]))
        .await
        .unwrap_err();

    let PrError::Api {
        provider,
        operation,
        status,
        message,
    } = &error
    else {
        panic!("expected an API error, got {error:?}");
    };
    assert_eq!(*provider, "GitHub");
    assert_eq!(*status, Some(422));
    assert!(
        operation.contains("create") && operation.contains(BRANCH),
        "{operation}"
    );
    assert_eq!(
        message,
        &format!("Validation Failed: No commits between {TARGET} and {BRANCH}")
    );
    // One list, one create: a 422 that is not "already exists" is not retried as a race.
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn github_reports_bad_credentials_without_the_token() {
    let fake = FakeGitHub::start(GitHubSetup::new(OWNER, REPO, GITHUB_TOKEN)).await;
    let provider = github_provider(&fake, CANARY);
    assert!(!format!("{provider:?}").contains(CANARY));

    let error = provider
        .open_or_update(&spec(&["alice"], &[]))
        .await
        .unwrap_err();

    assert!(
        matches!(&error, PrError::Api { status: Some(401), message, operation, .. }
            if message == "Bad credentials" && operation.contains(BRANCH)),
        "{error:?}"
    );
    let shown = error.to_string();
    assert!(
        shown.contains("401") && shown.contains("Bad credentials"),
        "{shown}"
    );
    assert_no_canary(&error);
    // The canary did reach the server, so the test would notice a leak.
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "no retry: {requests:#?}");
    assert_eq!(
        requests[0].authorization.as_deref(),
        Some(format!("Bearer {CANARY}").as_str())
    );
}

#[tokio::test]
async fn github_reports_a_forbidden_create() {
    let mut setup = GitHubSetup::new(OWNER, REPO, CANARY);
    setup.forbid_create = true;
    let fake = FakeGitHub::start(setup).await;

    let error = github_provider(&fake, CANARY)
        .open_or_update(&spec(&[], &[]))
        .await
        .unwrap_err();

    let shown = error.to_string();
    assert!(shown.contains("403"), "{shown}");
    assert!(
        shown.contains("Resource not accessible by integration"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("create the pull request from {BRANCH}")),
        "{shown}"
    );
    assert_no_canary(&error);
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn github_access_is_checked_by_reading_the_repository_and_its_pull_requests() {
    let mut setup = GitHubSetup::new(OWNER, REPO, GITHUB_TOKEN);
    setup.pulls = vec![GitHubPull::open(7, BRANCH, TARGET, "Update Helix images")];
    let fake = FakeGitHub::start(setup).await;
    let client = PrClient::GitHub(github_provider(&fake, GITHUB_TOKEN));
    let access = client.check_access(BRANCH, TARGET).await.unwrap();
    assert_eq!(
        access,
        Some(Access {
            repository: format!("{OWNER}/{REPO}"),
            open: Some(7)
        })
    );
    assert!(
        fake.requests()
            .iter()
            .all(|request| request.method == "GET"),
        "nothing is changed"
    );
    assert_eq!(
        methods_and_paths(&fake.requests())[0],
        pair("GET", format!("/repos/{OWNER}/{REPO}"))
    );

    let refused = PrClient::GitHub(github_provider(&fake, CANARY))
        .check_access(BRANCH, TARGET)
        .await
        .unwrap_err();
    assert_no_canary(&refused);
    assert_eq!(
        refused.to_string(),
        format!("GitHub: read the repository {OWNER}/{REPO} failed (401): Bad credentials")
    );
}

#[test]
fn github_token_comes_from_its_variable_and_its_absence_names_it() {
    let error = GitHubProvider::token_from_lookup(|_| None).unwrap_err();
    assert!(
        matches!(&error, PrError::MissingToken { provider: "GitHub", names } if names == &[GITHUB_TOKEN_VAR]),
        "{error:?}"
    );
    assert!(error.to_string().contains("GITHUB_TOKEN"), "{error}");

    let empty = GitHubProvider::token_from_lookup(|_| Some(String::new())).unwrap_err();
    assert!(matches!(empty, PrError::MissingToken { .. }));

    let token = GitHubProvider::token_from_lookup(|name| {
        (name == GITHUB_TOKEN_VAR).then(|| "ghp-from-env\n".to_owned())
    })
    .unwrap();
    assert_eq!(token.expose_secret(), "ghp-from-env");
}

// ---------------------------------------------------------------------------------------------
// Azure DevOps

const PAT: &str = "ado-test-pat";
const ACCESS_TOKEN: &str = "ado-test-oauth-token";

fn ado_provider(fake: &FakeAzureDevOps, token: AzureDevOpsToken) -> AzureDevOpsProvider {
    AzureDevOpsProvider::new(
        Some(&fake.endpoint()),
        ORGANIZATION,
        PROJECT,
        REPOSITORY,
        token,
    )
    .unwrap()
}

fn pat(value: &str) -> AzureDevOpsToken {
    AzureDevOpsToken::Pat(SecretString::from(value.to_owned()))
}

fn web_url(fake: &FakeAzureDevOps, id: u64) -> String {
    format!(
        "{}/{ORGANIZATION}/Helix%20Images/_git/{REPOSITORY}/pullrequest/{id}",
        fake.endpoint()
    )
}

#[tokio::test]
async fn azure_devops_creates_the_pull_request_with_reviewers_and_labels() {
    let credential = AdoCredential::Pat(PAT.to_owned());
    let fake = FakeAzureDevOps::start(AdoSetup::new(
        ORGANIZATION,
        PROJECT,
        REPOSITORY,
        credential.clone(),
    ))
    .await;
    let wanted = spec(&[REVIEWER_A, REVIEWER_B], &["osob"]);

    let opened = ado_provider(&fake, pat(PAT))
        .open_or_update(&wanted)
        .await
        .unwrap();

    assert_eq!(opened.action, PullRequestAction::Created);
    assert_eq!(opened.number, 101);
    assert_eq!(opened.url, web_url(&fake, 101));
    let requests = fake.requests();
    let repository_path = fake.repository_path();
    assert_eq!(
        methods_and_paths(&requests),
        vec![
            pair("GET", format!("{repository_path}/pullrequests")),
            pair("POST", format!("{repository_path}/pullrequests")),
        ]
    );
    for request in &requests {
        // The crate joins the endpoint and the path with a second slash; the routes still match.
        assert!(
            request.raw_path.starts_with(&format!("//{ORGANIZATION}/")),
            "{}",
            request.raw_path
        );
        assert_eq!(request.authorization, Some(credential.header()));
        assert!(request.query_value("api-version").is_some(), "{request:?}");
    }
    let list = &requests[0];
    assert_eq!(
        list.query_value("searchCriteria.sourceRefName"),
        Some(format!("refs/heads/{BRANCH}").as_str())
    );
    assert_eq!(
        list.query_value("searchCriteria.targetRefName"),
        Some(format!("refs/heads/{TARGET}").as_str())
    );
    assert_eq!(list.query_value("searchCriteria.status"), Some("active"));
    assert_eq!(
        requests[1].body,
        Some(json!({
            "sourceRefName": format!("refs/heads/{BRANCH}"),
            "targetRefName": format!("refs/heads/{TARGET}"),
            "title": wanted.title,
            "description": wanted.body,
            "reviewers": [{"id": REVIEWER_A}, {"id": REVIEWER_B}],
            "labels": [{"name": "osob"}],
        }))
    );
    let pulls = fake.pulls();
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].reviewers, [REVIEWER_A, REVIEWER_B]);
    assert_eq!(pulls[0].labels, ["osob"]);
}

/// With the pipeline's token, sent as a bearer token.
#[tokio::test]
async fn azure_devops_updates_the_active_pull_request_instead_of_creating_another() {
    let credential = AdoCredential::Bearer(ACCESS_TOKEN.to_owned());
    let mut setup = AdoSetup::new(ORGANIZATION, PROJECT, REPOSITORY, credential.clone());
    let mut abandoned = AdoPull::active(140, BRANCH, TARGET, "An abandoned one");
    abandoned.status = "abandoned".to_owned();
    let mut active = AdoPull::active(150, BRANCH, TARGET, "Update Helix images to 2024.04");
    active.reviewers = vec![REVIEWER_A.to_owned()];
    active.labels = vec!["osob".to_owned()];
    setup.pulls = vec![abandoned.clone(), active];
    let fake = FakeAzureDevOps::start(setup).await;
    let wanted = spec(&[REVIEWER_A, REVIEWER_B], &["osob", "automated"]);

    let updated = ado_provider(
        &fake,
        AzureDevOpsToken::AccessToken(SecretString::from(ACCESS_TOKEN.to_owned())),
    )
    .open_or_update(&wanted)
    .await
    .unwrap();

    assert_eq!(updated.action, PullRequestAction::Updated);
    assert_eq!(updated.number, 150);
    assert_eq!(updated.url, web_url(&fake, 150));
    let requests = fake.requests();
    let repository_path = fake.repository_path();
    assert_eq!(
        requests
            .iter()
            .filter(|request| request.is("POST", &format!("{repository_path}/pullrequests")))
            .count(),
        0,
        "no pull request may be created: {requests:#?}"
    );
    assert_eq!(
        methods_and_paths(&requests),
        vec![
            pair("GET", format!("{repository_path}/pullrequests")),
            pair("PATCH", format!("{repository_path}/pullrequests/150")),
            pair(
                "POST",
                format!("{repository_path}/pullRequests/150/reviewers")
            ),
            pair("POST", format!("{repository_path}/pullRequests/150/labels")),
            // An earlier report thread to retire is looked for; there is none.
            pair("GET", format!("{repository_path}/pullRequests/150/threads")),
        ]
    );
    assert_eq!(
        requests[1].body,
        Some(json!({"title": wanted.title, "description": wanted.body}))
    );
    // Only what the pull request lacks is added.
    assert_eq!(requests[2].body, Some(json!([{"id": REVIEWER_B}])));
    assert_eq!(requests[3].body, Some(json!({"name": "automated"})));
    for request in &requests {
        assert!(request.raw_path.starts_with("//"), "{}", request.raw_path);
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("Bearer {ACCESS_TOKEN}").as_str())
        );
    }
    let pulls = fake.pulls();
    assert_eq!(
        pulls[0], abandoned,
        "the abandoned pull request is left alone"
    );
    assert_eq!(pulls[1].title, wanted.title);
    assert_eq!(pulls[1].description, wanted.body);
    assert_eq!(pulls[1].reviewers, [REVIEWER_A, REVIEWER_B]);
    assert_eq!(pulls[1].labels, ["osob", "automated"]);
}

#[tokio::test]
async fn azure_devops_adopts_the_pull_request_another_run_opened_meanwhile() {
    let mut setup = AdoSetup::new(
        ORGANIZATION,
        PROJECT,
        REPOSITORY,
        AdoCredential::Pat(PAT.to_owned()),
    );
    setup.pulls = vec![AdoPull::active(
        160,
        BRANCH,
        TARGET,
        "Opened by the other run",
    )];
    setup.stale_first_list = true;
    let fake = FakeAzureDevOps::start(setup).await;
    let wanted = spec(&[], &[]);

    let adopted = ado_provider(&fake, pat(PAT))
        .open_or_update(&wanted)
        .await
        .unwrap();

    assert_eq!(adopted.action, PullRequestAction::Adopted);
    assert_eq!(adopted.number, 160);
    assert_eq!(adopted.url, web_url(&fake, 160));
    let repository_path = fake.repository_path();
    assert_eq!(
        methods_and_paths(&fake.requests()),
        vec![
            pair("GET", format!("{repository_path}/pullrequests")),
            pair("POST", format!("{repository_path}/pullrequests")),
            pair("GET", format!("{repository_path}/pullrequests")),
            pair("PATCH", format!("{repository_path}/pullrequests/160")),
            pair("GET", format!("{repository_path}/pullRequests/160/threads")),
        ]
    );
    let pulls = fake.pulls();
    assert_eq!(pulls.len(), 1, "no second pull request: {pulls:#?}");
    assert_eq!(pulls[0].title, wanted.title);
}

#[tokio::test]
async fn azure_devops_reports_an_unauthorized_token_without_showing_it() {
    let fake = FakeAzureDevOps::start(AdoSetup::new(
        ORGANIZATION,
        PROJECT,
        REPOSITORY,
        AdoCredential::Pat(PAT.to_owned()),
    ))
    .await;
    let provider = ado_provider(&fake, pat(CANARY));
    assert!(!format!("{provider:?}").contains(CANARY));

    let error = provider.open_or_update(&spec(&[], &[])).await.unwrap_err();

    assert!(
        matches!(&error, PrError::Api { provider: "Azure DevOps", status: Some(401), message, .. }
            if message == "TF400813: The user '' is not authorized to access this resource."),
        "{error:?}"
    );
    let shown = error.to_string();
    assert!(
        shown.contains("401") && shown.contains("TF400813"),
        "{shown}"
    );
    assert!(shown.contains(BRANCH), "{shown}");
    assert_no_canary(&error);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "no retry: {requests:#?}");
    assert_eq!(
        requests[0].authorization,
        Some(AdoCredential::Pat(CANARY.to_owned()).header())
    );
}

#[tokio::test]
async fn azure_devops_reports_a_sign_in_page_as_a_refused_token() {
    let mut setup = AdoSetup::new(
        ORGANIZATION,
        PROJECT,
        REPOSITORY,
        AdoCredential::Pat(PAT.to_owned()),
    );
    setup.rejection = AdoRejection::SignInPage;
    let fake = FakeAzureDevOps::start(setup).await;

    let error = ado_provider(&fake, pat(CANARY))
        .open_or_update(&spec(&[], &[]))
        .await
        .unwrap_err();

    assert!(
        matches!(&error, PrError::Api { status: Some(203), message, .. } if message.contains("token was not accepted")),
        "{error:?}"
    );
    assert_no_canary(&error);
}

#[tokio::test]
async fn azure_devops_reports_a_forbidden_create() {
    let mut setup = AdoSetup::new(
        ORGANIZATION,
        PROJECT,
        REPOSITORY,
        AdoCredential::Bearer(CANARY.to_owned()),
    );
    setup.forbid_create = true;
    let fake = FakeAzureDevOps::start(setup).await;

    let error = ado_provider(
        &fake,
        AzureDevOpsToken::AccessToken(SecretString::from(CANARY.to_owned())),
    )
    .open_or_update(&spec(&[REVIEWER_A], &[]))
    .await
    .unwrap_err();

    let shown = error.to_string();
    assert!(shown.contains("403"), "{shown}");
    assert!(shown.contains("TF401027"), "{shown}");
    assert!(
        shown.contains(&format!("create the pull request from {BRANCH}")),
        "{shown}"
    );
    assert_no_canary(&error);
    assert_eq!(fake.requests().len(), 2, "one list, one create, no retry");
}

#[tokio::test]
async fn azure_devops_access_is_checked_by_reading_the_repository_and_its_pull_requests() {
    let fake = FakeAzureDevOps::start(AdoSetup::new(
        ORGANIZATION,
        PROJECT,
        REPOSITORY,
        AdoCredential::Pat("pat-token".to_owned()),
    ))
    .await;
    let client = PrClient::AzureDevOps(ado_provider(&fake, pat("pat-token")));
    assert_eq!(
        client.check_access(BRANCH, TARGET).await.unwrap(),
        Some(Access {
            repository: format!("{PROJECT}/{REPOSITORY}"),
            open: None
        })
    );
    let requests = fake.requests();
    assert!(requests.iter().all(|request| request.method == "GET"));
    assert_eq!(requests[0].path, fake.repository_path());

    let refused = PrClient::AzureDevOps(ado_provider(&fake, pat(CANARY)))
        .check_access(BRANCH, TARGET)
        .await
        .unwrap_err();
    assert_no_canary(&refused);
    let message = refused.to_string();
    assert!(
        message.starts_with(&format!(
            "Azure DevOps: read the repository {REPOSITORY} of project {PROJECT} failed (401): TF400813"
        )),
        "{message}"
    );
}

#[tokio::test]
async fn the_local_provider_has_no_access_to_check() {
    assert_eq!(
        PrClient::Local.check_access(BRANCH, TARGET).await.unwrap(),
        None
    );
}

#[test]
fn azure_devops_token_prefers_the_pipeline_token_and_its_absence_names_both_variables() {
    let error = AzureDevOpsToken::from_lookup(|_| None).unwrap_err();
    assert!(
        matches!(&error, PrError::MissingToken { provider: "Azure DevOps", names }
            if names == &[SYSTEM_ACCESS_TOKEN_VAR, PAT_VAR]),
        "{error:?}"
    );
    let shown = error.to_string();
    assert!(
        shown.contains("SYSTEM_ACCESSTOKEN") && shown.contains("AZURE_DEVOPS_PAT"),
        "{shown}"
    );

    let both = |name: &str| match name {
        SYSTEM_ACCESS_TOKEN_VAR => Some("oauth".to_owned()),
        PAT_VAR => Some("pat".to_owned()),
        _ => None,
    };
    assert!(matches!(
        AzureDevOpsToken::from_lookup(both).unwrap(),
        AzureDevOpsToken::AccessToken(token) if token.expose_secret() == "oauth"
    ));
    let pat_only = |name: &str| (name == PAT_VAR).then(|| "pat".to_owned());
    assert!(matches!(
        AzureDevOpsToken::from_lookup(pat_only).unwrap(),
        AzureDevOpsToken::Pat(token) if token.expose_secret() == "pat"
    ));
}

/// An address nothing listens on: bound, then released.
async fn unreachable_base() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}

#[tokio::test]
async fn an_unreachable_service_is_an_api_error_without_a_status_and_without_retries() {
    let base = unreachable_base().await;
    let started = std::time::Instant::now();

    let github = GitHubProvider::new(Some(&base), OWNER, REPO, SecretString::from(CANARY))
        .unwrap()
        .open_or_update(&spec(&[], &[]))
        .await
        .unwrap_err();
    let azure_devops =
        AzureDevOpsProvider::new(Some(&base), ORGANIZATION, PROJECT, REPOSITORY, pat(CANARY))
            .unwrap()
            .open_or_update(&spec(&[], &[]))
            .await
            .unwrap_err();

    for error in [&github, &azure_devops] {
        assert!(
            matches!(error, PrError::Api { status: None, operation, message, .. }
                if operation.contains(BRANCH) && message.to_lowercase().contains("refused")),
            "{error:?}"
        );
        assert_no_canary(error);
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}: something retried",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// The report comment

/// A spec over the description's cap: its full report goes in one comment.
fn spec_with_report(report: &str) -> PullRequestSpec {
    let mut spec = spec(&[], &[]);
    spec.report = Some(format!(
        "{}\n\n{report}\n",
        imagegen::pull_request::body::REPORT_HEADING
    ));
    spec
}

/// Posted once, updated in place, left alone when unchanged, retired when no longer needed:
/// never one comment per run.
#[tokio::test]
async fn github_keeps_one_report_comment_up_to_date() {
    let mut setup = GitHubSetup::new(OWNER, REPO, GITHUB_TOKEN);
    setup.pulls = vec![GitHubPull::open(21, BRANCH, TARGET, "Old title")];
    let fake = FakeGitHub::start(setup).await;
    let provider = github_provider(&fake, GITHUB_TOKEN);
    let bodies = |fake: &FakeGitHub| -> Vec<String> {
        fake.pulls()[0]
            .comments
            .iter()
            .map(|comment| comment.body.clone())
            .collect()
    };
    let writes = |fake: &FakeGitHub| {
        fake.requests()
            .iter()
            .filter(|request| request.path.contains("/comments") && request.method != "GET")
            .count()
    };

    provider
        .open_or_update(&spec_with_report("first batch"))
        .await
        .unwrap();
    assert_eq!(bodies(&fake).len(), 1);
    assert!(bodies(&fake)[0].ends_with("first batch\n"));

    provider
        .open_or_update(&spec_with_report("second batch"))
        .await
        .unwrap();
    assert_eq!(bodies(&fake).len(), 1, "updated, not posted again");
    assert!(bodies(&fake)[0].ends_with("second batch\n"));
    assert_eq!(writes(&fake), 2);

    provider
        .open_or_update(&spec_with_report("second batch"))
        .await
        .unwrap();
    assert_eq!(writes(&fake), 2, "an unchanged report is not sent again");

    provider.open_or_update(&spec(&[], &[])).await.unwrap();
    assert_eq!(bodies(&fake).len(), 1);
    assert!(
        bodies(&fake)[0].contains("no longer needed"),
        "{:?}",
        bodies(&fake)
    );
}

#[tokio::test]
async fn azure_devops_keeps_one_closed_report_thread_up_to_date() {
    let mut setup = AdoSetup::new(
        ORGANIZATION,
        PROJECT,
        REPOSITORY,
        AdoCredential::Pat(PAT.to_owned()),
    );
    setup.pulls = vec![AdoPull::active(170, BRANCH, TARGET, "Old title")];
    let fake = FakeAzureDevOps::start(setup).await;
    let provider = ado_provider(&fake, pat(PAT));
    let threads = |fake: &FakeAzureDevOps| fake.pulls()[0].comments.clone();
    let writes = |fake: &FakeAzureDevOps| {
        fake.requests()
            .iter()
            .filter(|request| request.path.contains("/threads") && request.method != "GET")
            .count()
    };

    provider
        .open_or_update(&spec_with_report("first batch"))
        .await
        .unwrap();
    let posted = threads(&fake);
    assert_eq!(posted.len(), 1);
    assert!(posted[0].body.ends_with("first batch\n"));
    assert!(
        posted[0].closed,
        "a closed thread never blocks completion under a comment-resolution policy"
    );

    provider
        .open_or_update(&spec_with_report("second batch"))
        .await
        .unwrap();
    let updated = threads(&fake);
    assert_eq!(updated.len(), 1, "updated, not posted again");
    assert_eq!(updated[0].id, posted[0].id);
    assert!(updated[0].body.ends_with("second batch\n"));
    assert_eq!(writes(&fake), 2);

    provider
        .open_or_update(&spec_with_report("second batch"))
        .await
        .unwrap();
    assert_eq!(writes(&fake), 2, "an unchanged report is not sent again");

    provider.open_or_update(&spec(&[], &[])).await.unwrap();
    assert!(threads(&fake)[0].body.contains("no longer needed"));
}

/// A pull request created by this run posts its report without looking for an older one.
#[tokio::test]
async fn a_new_pull_request_gets_its_report_in_one_request() {
    let fake = FakeGitHub::start(GitHubSetup::new(OWNER, REPO, GITHUB_TOKEN)).await;
    github_provider(&fake, GITHUB_TOKEN)
        .open_or_update(&spec_with_report("first batch"))
        .await
        .unwrap();
    let comment_requests: Vec<(String, String)> = methods_and_paths(&fake.requests())
        .into_iter()
        .filter(|(_, path)| path.contains("/comments"))
        .collect();
    assert_eq!(
        comment_requests,
        vec![pair(
            "POST",
            format!("/repos/{OWNER}/{REPO}/issues/1/comments")
        )]
    );
    assert_eq!(fake.pulls()[0].comments.len(), 1);
}
