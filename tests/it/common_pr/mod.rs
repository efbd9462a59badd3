//! Fake GitHub and Azure DevOps pull request services for the provider tests: real HTTP on
//! 127.0.0.1, pull requests kept in memory, every request recorded as it arrived.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// The path as it came over the wire, repeated slashes and all.
    pub raw_path: String,
    /// The path the routes saw: repeated slashes collapsed.
    pub path: String,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
    pub authorization: Option<String>,
}

impl RecordedRequest {
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
}

type RequestLog = Arc<Mutex<Vec<RecordedRequest>>>;

/// A server on an ephemeral port; stops when dropped.
struct RunningServer {
    address: SocketAddr,
    requests: RequestLog,
    task: JoinHandle<()>,
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `routes` with every request recorded and its path's repeated slashes collapsed first:
/// `azure_devops_rust_api` sends `//org/...`, and a `Router::layer` would run only after routing.
async fn serve(routes: Router) -> RunningServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let requests = RequestLog::default();
    let log = requests.clone();
    let service = tower::service_fn(move |request: Request| {
        let routes = routes.clone();
        let log = log.clone();
        async move { Ok::<_, Infallible>(record_and_route(routes, log, request).await) }
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, axum::ServiceExt::into_make_service(service))
            .await
            .unwrap();
    });
    RunningServer {
        address,
        requests,
        task,
    }
}

async fn record_and_route(routes: Router, log: RequestLog, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return (StatusCode::BAD_REQUEST, "unreadable body").into_response();
    };
    let raw_path = parts.uri.path().to_owned();
    let path = collapse_slashes(&raw_path);
    let query_text = parts.uri.query().map(str::to_owned);
    let path_and_query = match &query_text {
        Some(query) => format!("{path}?{query}"),
        None => path.clone(),
    };
    parts.uri = Uri::builder()
        .path_and_query(path_and_query)
        .build()
        .unwrap();
    log.lock().unwrap().push(RecordedRequest {
        method: parts.method.to_string(),
        raw_path,
        path,
        query: url::form_urlencoded::parse(query_text.unwrap_or_default().as_bytes())
            .into_owned()
            .collect(),
        body: serde_json::from_slice(&bytes).ok(),
        authorization: parts
            .headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
    });
    match routes
        .oneshot(Request::from_parts(parts, Body::from(bytes)))
        .await
    {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

fn collapse_slashes(path: &str) -> String {
    let mut collapsed = String::with_capacity(path.len());
    for character in path.chars() {
        if character == '/' && collapsed.ends_with('/') {
            continue;
        }
        collapsed.push(character);
    }
    collapsed
}

fn authorization_of(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
}

// ---------------------------------------------------------------------------------------------
// GitHub

/// A pull request as the fake GitHub keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubPull {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub head: String,
    pub base: String,
    pub open: bool,
    pub requested_reviewers: Vec<String>,
    pub labels: Vec<String>,
    /// Issue comments, oldest first.
    pub comments: Vec<PullComment>,
}

/// A comment on a pull request (an issue comment on GitHub, a thread's first comment on Azure
/// DevOps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullComment {
    pub id: u64,
    pub body: String,
    /// Azure DevOps only: the thread was created closed.
    pub closed: bool,
}

impl GitHubPull {
    pub fn open(number: u64, head: &str, base: &str, title: &str) -> Self {
        Self {
            number,
            title: title.to_owned(),
            body: "old body".to_owned(),
            head: head.to_owned(),
            base: base.to_owned(),
            open: true,
            requested_reviewers: Vec::new(),
            labels: Vec::new(),
            comments: Vec::new(),
        }
    }
}

/// How the fake GitHub starts and behaves.
#[derive(Debug, Clone)]
pub struct GitHubSetup {
    /// Where the REST routes live: "" like api.github.com, "/api/v3" like GitHub Enterprise.
    pub prefix: &'static str,
    pub owner: String,
    pub repo: String,
    /// The only token answered; any other gets 401 "Bad credentials".
    pub token: String,
    pub pulls: Vec<GitHubPull>,
    /// The first list answers empty although a pull request is open, as when another run opens
    /// it between our list and our create.
    pub stale_first_list: bool,
    /// Creating answers 403 "Resource not accessible by integration".
    pub forbid_create: bool,
    /// Branches with nothing to merge: creating from them answers 422 "No commits between".
    pub branches_without_commits: Vec<String>,
}

impl GitHubSetup {
    pub fn new(owner: &str, repo: &str, token: &str) -> Self {
        Self {
            prefix: "",
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            token: token.to_owned(),
            pulls: Vec::new(),
            stale_first_list: false,
            forbid_create: false,
            branches_without_commits: Vec::new(),
        }
    }
}

struct GitHubState {
    setup: GitHubSetup,
    pulls: Mutex<Vec<GitHubPull>>,
    lists_answered: Mutex<u32>,
    api_url: Mutex<String>,
}

pub struct FakeGitHub {
    server: RunningServer,
    state: Arc<GitHubState>,
}

/// The login the fake says opened every pull request.
pub const GITHUB_BOT_LOGIN: &str = "imagegen-bot";

impl FakeGitHub {
    pub async fn start(setup: GitHubSetup) -> Self {
        let state = Arc::new(GitHubState {
            pulls: Mutex::new(setup.pulls.clone()),
            setup,
            lists_answered: Mutex::new(0),
            api_url: Mutex::new(String::new()),
        });
        let repo_routes = Router::new()
            .route("/repos/{owner}/{repo}", get(github_repository))
            .route(
                "/repos/{owner}/{repo}/pulls",
                get(github_list).post(github_create),
            )
            .route("/repos/{owner}/{repo}/pulls/{number}", patch(github_update))
            .route(
                "/repos/{owner}/{repo}/pulls/{number}/requested_reviewers",
                post(github_request_reviewers),
            )
            .route(
                "/repos/{owner}/{repo}/issues/{number}/labels",
                post(github_add_labels),
            )
            .route(
                "/repos/{owner}/{repo}/issues/{number}/comments",
                get(github_list_comments).post(github_create_comment),
            )
            .route(
                "/repos/{owner}/{repo}/issues/comments/{id}",
                patch(github_update_comment),
            )
            .with_state(state.clone());
        let routes = if state.setup.prefix.is_empty() {
            repo_routes
        } else {
            Router::new().nest(state.setup.prefix, repo_routes)
        };
        let server = serve(routes).await;
        *state.api_url.lock().unwrap() = format!("http://{}{}", server.address, state.setup.prefix);
        Self { server, state }
    }

    /// The base URL a provider is given.
    pub fn api_base(&self) -> String {
        self.state.api_url.lock().unwrap().clone()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests.lock().unwrap().clone()
    }

    pub fn pulls(&self) -> Vec<GitHubPull> {
        self.state.pulls.lock().unwrap().clone()
    }
}

impl GitHubState {
    fn rejects(&self, headers: &HeaderMap, owner: &str, repo: &str) -> Option<Response> {
        if authorization_of(headers) != Some(format!("Bearer {}", self.setup.token).as_str()) {
            return Some(github_error(
                StatusCode::UNAUTHORIZED,
                "Bad credentials",
                None,
            ));
        }
        if owner != self.setup.owner || repo != self.setup.repo {
            return Some(github_error(StatusCode::NOT_FOUND, "Not Found", None));
        }
        None
    }

    fn user(&self, login: &str, id: u64) -> Value {
        let api = "https://api.github.test";
        json!({
            "login": login,
            "id": id,
            "node_id": format!("U_{id}"),
            "avatar_url": format!("https://avatars.github.test/u/{id}?v=4"),
            "gravatar_id": "",
            "url": format!("{api}/users/{login}"),
            "html_url": format!("https://github.test/{login}"),
            "followers_url": format!("{api}/users/{login}/followers"),
            "following_url": format!("{api}/users/{login}/following{{/other_user}}"),
            "gists_url": format!("{api}/users/{login}/gists{{/gist_id}}"),
            "starred_url": format!("{api}/users/{login}/starred{{/owner}}{{/repo}}"),
            "subscriptions_url": format!("{api}/users/{login}/subscriptions"),
            "organizations_url": format!("{api}/users/{login}/orgs"),
            "repos_url": format!("{api}/users/{login}/repos"),
            "events_url": format!("{api}/users/{login}/events{{/privacy}}"),
            "received_events_url": format!("{api}/users/{login}/received_events"),
            "type": "User",
            "site_admin": false
        })
    }

    fn label(&self, name: &str, index: usize) -> Value {
        json!({
            "id": 1000 + index,
            "node_id": format!("LA_{index}"),
            "url": format!(
                "https://api.github.test/repos/{}/{}/labels/{name}",
                self.setup.owner, self.setup.repo
            ),
            "name": name,
            "color": "0e8a16",
            "default": false,
            "description": null
        })
    }

    /// A pull request the way GitHub's REST API answers it (the fields octocrab requires and the
    /// usual others).
    fn pull_json(&self, pull: &GitHubPull) -> Value {
        let api = self.api_url.lock().unwrap().clone();
        let (owner, repo) = (&self.setup.owner, &self.setup.repo);
        let number = pull.number;
        let repository = json!({
            "id": 4242,
            "node_id": "R_4242",
            "name": repo,
            "full_name": format!("{owner}/{repo}"),
            "private": true,
            "html_url": format!("https://github.test/{owner}/{repo}"),
            "url": format!("{api}/repos/{owner}/{repo}")
        });
        let branch = |name: &str, sha: &str| {
            json!({
                "label": format!("{owner}:{name}"),
                "ref": name,
                "sha": sha,
                "user": self.user(owner, 9),
                "repo": repository
            })
        };
        json!({
            "url": format!("{api}/repos/{owner}/{repo}/pulls/{number}"),
            "id": 880_000 + number,
            "node_id": format!("PR_{number}"),
            "html_url": format!("https://github.test/{owner}/{repo}/pull/{number}"),
            "diff_url": format!("https://github.test/{owner}/{repo}/pull/{number}.diff"),
            "patch_url": format!("https://github.test/{owner}/{repo}/pull/{number}.patch"),
            "issue_url": format!("{api}/repos/{owner}/{repo}/issues/{number}"),
            "number": number,
            "state": if pull.open { "open" } else { "closed" },
            "locked": false,
            "title": pull.title,
            "user": self.user(GITHUB_BOT_LOGIN, 77),
            "body": pull.body,
            "labels": pull.labels.iter().enumerate().map(|(index, name)| self.label(name, index)).collect::<Vec<_>>(),
            "created_at": "2024-05-01T10:00:00Z",
            "updated_at": "2024-05-01T10:05:00Z",
            "closed_at": null,
            "merged_at": null,
            "requested_reviewers": pull.requested_reviewers.iter().enumerate().map(|(index, login)| self.user(login, 500 + index as u64)).collect::<Vec<_>>(),
            "requested_teams": [],
            "head": branch(&pull.head, "6dcb09b5b57875f334f61aebed695e2e4193db5e"),
            "base": branch(&pull.base, "9049f1265b7d61be4a8904a9a27120d2064dab3b"),
            "_links": {
                "self": {"href": format!("{api}/repos/{owner}/{repo}/pulls/{number}")},
                "html": {"href": format!("https://github.test/{owner}/{repo}/pull/{number}")}
            },
            "author_association": "CONTRIBUTOR",
            "auto_merge": null,
            "draft": false
        })
    }
}

fn github_error(status: StatusCode, message: &str, errors: Option<Value>) -> Response {
    let mut body = json!({
        "message": message,
        "documentation_url": "https://docs.github.com/rest",
        "status": status.as_u16().to_string()
    });
    if let Some(errors) = errors {
        body["errors"] = errors;
    }
    (status, axum::Json(body)).into_response()
}

async fn github_repository(
    State(state): State<Arc<GitHubState>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(rejection) = state.rejects(&headers, &owner, &repo) {
        return rejection;
    }
    let api = state.api_url.lock().unwrap().clone();
    axum::Json(json!({
        "id": 4242,
        "node_id": "R_4242",
        "name": repo,
        "full_name": format!("{owner}/{repo}"),
        "private": true,
        "owner": state.user(&owner, 9),
        "html_url": format!("https://github.test/{owner}/{repo}"),
        "url": format!("{api}/repos/{owner}/{repo}"),
        "default_branch": "main",
        "permissions": {"admin": false, "maintain": false, "push": true, "triage": true, "pull": true}
    }))
    .into_response()
}

async fn github_list(
    State(state): State<Arc<GitHubState>>,
    Path((owner, repo)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    if let Some(rejection) = state.rejects(&headers, &owner, &repo) {
        return rejection;
    }
    let first_list = {
        let mut answered = state.lists_answered.lock().unwrap();
        *answered += 1;
        *answered == 1
    };
    if first_list && state.setup.stale_first_list {
        return axum::Json(json!([])).into_response();
    }
    let wanted = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let wanted_state = wanted("state").unwrap_or_else(|| "open".to_owned());
    let wanted_head = wanted("head");
    let wanted_base = wanted("base");
    let pulls = state.pulls.lock().unwrap().clone();
    let answer: Vec<Value> = pulls
        .iter()
        .filter(|pull| match wanted_state.as_str() {
            "open" => pull.open,
            "closed" => !pull.open,
            _ => true,
        })
        .filter(|pull| {
            wanted_head.as_deref().is_none_or(|head| {
                head == format!("{}:{}", state.setup.owner, pull.head) || head == pull.head
            })
        })
        .filter(|pull| wanted_base.as_deref().is_none_or(|base| base == pull.base))
        .map(|pull| state.pull_json(pull))
        .collect();
    axum::Json(Value::Array(answer)).into_response()
}

async fn github_create(
    State(state): State<Arc<GitHubState>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    axum::Json(request): axum::Json<Value>,
) -> Response {
    if let Some(rejection) = state.rejects(&headers, &owner, &repo) {
        return rejection;
    }
    if state.setup.forbid_create {
        return github_error(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
            None,
        );
    }
    let text = |key: &str| request[key].as_str().unwrap_or_default().to_owned();
    let (head, base) = (text("head"), text("base"));
    let head_branch = head.rsplit(':').next().unwrap_or_default().to_owned();
    if state.setup.branches_without_commits.contains(&head_branch) {
        return github_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation Failed",
            Some(json!([{
                "resource": "PullRequest",
                "code": "custom",
                "message": format!("No commits between {base} and {head_branch}")
            }])),
        );
    }
    let mut pulls = state.pulls.lock().unwrap();
    if pulls
        .iter()
        .any(|pull| pull.open && pull.head == head_branch && pull.base == base)
    {
        return github_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation Failed",
            Some(json!([{
                "resource": "PullRequest",
                "code": "custom",
                "message": format!("A pull request already exists for {}:{head_branch}.", state.setup.owner)
            }])),
        );
    }
    let pull = GitHubPull {
        number: pulls.iter().map(|pull| pull.number).max().unwrap_or(0) + 1,
        title: text("title"),
        body: text("body"),
        head: head_branch,
        base,
        open: true,
        requested_reviewers: Vec::new(),
        labels: Vec::new(),
        comments: Vec::new(),
    };
    pulls.push(pull.clone());
    (StatusCode::CREATED, axum::Json(state.pull_json(&pull))).into_response()
}

fn with_github_pull(
    state: &GitHubState,
    number: u64,
    change: impl FnOnce(&mut GitHubPull),
) -> Option<GitHubPull> {
    let mut pulls = state.pulls.lock().unwrap();
    let pull = pulls.iter_mut().find(|pull| pull.number == number)?;
    change(pull);
    Some(pull.clone())
}

async fn github_update(
    State(state): State<Arc<GitHubState>>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    headers: HeaderMap,
    axum::Json(request): axum::Json<Value>,
) -> Response {
    if let Some(rejection) = state.rejects(&headers, &owner, &repo) {
        return rejection;
    }
    let updated = with_github_pull(&state, number, |pull| {
        if let Some(title) = request["title"].as_str() {
            pull.title = title.to_owned();
        }
        if let Some(body) = request["body"].as_str() {
            pull.body = body.to_owned();
        }
    });
    match updated {
        Some(pull) => axum::Json(state.pull_json(&pull)).into_response(),
        None => github_error(StatusCode::NOT_FOUND, "Not Found", None),
    }
}

async fn github_request_reviewers(
    State(state): State<Arc<GitHubState>>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    headers: HeaderMap,
    axum::Json(request): axum::Json<Value>,
) -> Response {
    if let Some(rejection) = state.rejects(&headers, &owner, &repo) {
        return rejection;
    }
    let logins = strings_in(&request["reviewers"], None);
    let updated = with_github_pull(&state, number, |pull| {
        add_missing(&mut pull.requested_reviewers, logins);
    });
    // GitHub answers with the pull request, not a review.
    match updated {
        Some(pull) => (StatusCode::CREATED, axum::Json(state.pull_json(&pull))).into_response(),
        None => github_error(StatusCode::NOT_FOUND, "Not Found", None),
    }
}

async fn github_add_labels(
    State(state): State<Arc<GitHubState>>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    headers: HeaderMap,
    axum::Json(request): axum::Json<Value>,
) -> Response {
    if let Some(rejection) = state.rejects(&headers, &owner, &repo) {
        return rejection;
    }
    let names = strings_in(&request["labels"], None);
    let updated = with_github_pull(&state, number, |pull| {
        add_missing(&mut pull.labels, names);
    });
    match updated {
        Some(pull) => axum::Json(Value::Array(
            pull.labels
                .iter()
                .enumerate()
                .map(|(index, name)| state.label(name, index))
                .collect(),
        ))
        .into_response(),
        None => github_error(StatusCode::NOT_FOUND, "Not Found", None),
    }
}

fn github_comment_json(comment: &PullComment) -> Value {
    json!({
        "id": comment.id,
        "node_id": format!("IC_{}", comment.id),
        "body": comment.body,
        "user": {"login": GITHUB_BOT_LOGIN, "id": 41898282},
    })
}

async fn github_list_comments(
    State(state): State<Arc<GitHubState>>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    if let Some(rejection) = state.rejects(&headers, &owner, &repo) {
        return rejection;
    }
    let number_of = |name: &str, default: usize| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.parse::<usize>().ok())
            .unwrap_or(default)
    };
    let (per_page, page) = (number_of("per_page", 30), number_of("page", 1).max(1));
    match with_github_pull(&state, number, |_| {}) {
        Some(pull) => axum::Json(Value::Array(
            pull.comments
                .iter()
                .skip((page - 1) * per_page)
                .take(per_page)
                .map(github_comment_json)
                .collect(),
        ))
        .into_response(),
        None => github_error(StatusCode::NOT_FOUND, "Not Found", None),
    }
}

async fn github_create_comment(
    State(state): State<Arc<GitHubState>>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    headers: HeaderMap,
    axum::Json(request): axum::Json<Value>,
) -> Response {
    if let Some(rejection) = state.rejects(&headers, &owner, &repo) {
        return rejection;
    }
    let id = next_comment_id();
    let body = request["body"].as_str().unwrap_or_default().to_owned();
    let comment = PullComment {
        id,
        body,
        closed: false,
    };
    let added = comment.clone();
    match with_github_pull(&state, number, move |pull| pull.comments.push(added)) {
        Some(_) => (
            StatusCode::CREATED,
            axum::Json(github_comment_json(&comment)),
        )
            .into_response(),
        None => github_error(StatusCode::NOT_FOUND, "Not Found", None),
    }
}

async fn github_update_comment(
    State(state): State<Arc<GitHubState>>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
    axum::Json(request): axum::Json<Value>,
) -> Response {
    if let Some(rejection) = state.rejects(&headers, &owner, &repo) {
        return rejection;
    }
    let mut pulls = state.pulls.lock().unwrap();
    let Some(comment) = pulls
        .iter_mut()
        .flat_map(|pull| pull.comments.iter_mut())
        .find(|comment| comment.id == id)
    else {
        return github_error(StatusCode::NOT_FOUND, "Not Found", None);
    };
    if let Some(body) = request["body"].as_str() {
        comment.body = body.to_owned();
    }
    axum::Json(github_comment_json(comment)).into_response()
}

/// Comment ids are unique across every fake service of the test process, as GitHub's are.
fn next_comment_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(9_000);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The strings of a JSON array: its items themselves, or each item's `field`.
fn strings_in(list: &Value, field: Option<&str>) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| match field {
            Some(field) => item[field].as_str(),
            None => item.as_str(),
        })
        .map(str::to_owned)
        .collect()
}

/// Adds to `list` the `items` it does not hold yet, as the services do for reviewers and labels.
fn add_missing(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Azure DevOps

/// A pull request as the fake Azure DevOps keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoPull {
    pub id: i32,
    pub title: String,
    pub description: String,
    /// Full ref names, `refs/heads/...`.
    pub source_ref: String,
    pub target_ref: String,
    /// "active", "abandoned" or "completed".
    pub status: String,
    /// Identity ids.
    pub reviewers: Vec<String>,
    pub labels: Vec<String>,
    /// Threads, each with its first comment, oldest first.
    pub comments: Vec<PullComment>,
}

impl AdoPull {
    pub fn active(id: i32, source_branch: &str, target_branch: &str, title: &str) -> Self {
        Self {
            id,
            title: title.to_owned(),
            description: "old description".to_owned(),
            source_ref: format!("refs/heads/{source_branch}"),
            target_ref: format!("refs/heads/{target_branch}"),
            status: "active".to_owned(),
            reviewers: Vec::new(),
            labels: Vec::new(),
            comments: Vec::new(),
        }
    }
}

/// The `Authorization` header the fake Azure DevOps accepts.
#[derive(Debug, Clone)]
pub enum AdoCredential {
    /// `Bearer {token}`.
    Bearer(String),
    /// `Basic base64(":{pat}")`.
    Pat(String),
}

impl AdoCredential {
    pub fn header(&self) -> String {
        match self {
            Self::Bearer(token) => format!("Bearer {token}"),
            Self::Pat(pat) => format!("Basic {}", base64_of(format!(":{pat}").as_bytes())),
        }
    }
}

/// What the fake answers a credential it does not accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdoRejection {
    /// 401 with TF400813 in JSON.
    Unauthorized,
    /// 203 with an HTML sign-in page, as Azure DevOps does on some routes.
    SignInPage,
}

/// How the fake Azure DevOps starts and behaves.
#[derive(Debug, Clone)]
pub struct AdoSetup {
    pub organization: String,
    pub project: String,
    pub repository: String,
    pub credential: AdoCredential,
    pub rejection: AdoRejection,
    pub pulls: Vec<AdoPull>,
    /// The first list answers empty although a pull request is active.
    pub stale_first_list: bool,
    /// Creating answers 403 TF401027 (no PullRequestContribute permission).
    pub forbid_create: bool,
}

impl AdoSetup {
    pub fn new(
        organization: &str,
        project: &str,
        repository: &str,
        credential: AdoCredential,
    ) -> Self {
        Self {
            organization: organization.to_owned(),
            project: project.to_owned(),
            repository: repository.to_owned(),
            credential,
            rejection: AdoRejection::Unauthorized,
            pulls: Vec::new(),
            stale_first_list: false,
            forbid_create: false,
        }
    }
}

const ADO_PROJECT_ID: &str = "a7573007-bbb3-4341-b726-0c4148a07853";
const ADO_REPOSITORY_ID: &str = "3411ebc1-d5aa-464f-9615-0b527bc66719";
const ADO_BUILD_IDENTITY: &str = "d6245f20-2af8-44f4-9451-8107cb2767db";

struct AdoState {
    setup: AdoSetup,
    pulls: Mutex<Vec<AdoPull>>,
    lists_answered: Mutex<u32>,
    base_url: Mutex<String>,
}

pub struct FakeAzureDevOps {
    server: RunningServer,
    state: Arc<AdoState>,
}

type RepoPath = (String, String, String);
type PullPath = (String, String, String, i32);

impl FakeAzureDevOps {
    pub async fn start(setup: AdoSetup) -> Self {
        let state = Arc::new(AdoState {
            pulls: Mutex::new(setup.pulls.clone()),
            setup,
            lists_answered: Mutex::new(0),
            base_url: Mutex::new(String::new()),
        });
        let routes = Router::new()
            .route(
                "/{organization}/{project}/_apis/git/repositories/{repository}",
                get(ado_repository),
            )
            .route(
                "/{organization}/{project}/_apis/git/repositories/{repository}/pullrequests",
                get(ado_list).post(ado_create),
            )
            .route(
                "/{organization}/{project}/_apis/git/repositories/{repository}/pullrequests/{id}",
                patch(ado_update),
            )
            .route(
                "/{organization}/{project}/_apis/git/repositories/{repository}/pullRequests/{id}/reviewers",
                post(ado_add_reviewers),
            )
            .route(
                "/{organization}/{project}/_apis/git/repositories/{repository}/pullRequests/{id}/labels",
                post(ado_add_label),
            )
            .route(
                "/{organization}/{project}/_apis/git/repositories/{repository}/pullRequests/{id}/threads",
                get(ado_list_threads).post(ado_create_thread),
            )
            .route(
                "/{organization}/{project}/_apis/git/repositories/{repository}/pullRequests/{id}/threads/{thread}/comments/{comment}",
                patch(ado_update_comment),
            )
            .with_state(state.clone());
        let server = serve(routes).await;
        *state.base_url.lock().unwrap() = format!("http://{}", server.address);
        Self { server, state }
    }

    /// The endpoint a provider is given.
    pub fn endpoint(&self) -> String {
        self.state.base_url.lock().unwrap().clone()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests.lock().unwrap().clone()
    }

    pub fn pulls(&self) -> Vec<AdoPull> {
        self.state.pulls.lock().unwrap().clone()
    }

    /// The collapsed path of the repository's routes.
    pub fn repository_path(&self) -> String {
        let setup = &self.state.setup;
        format!(
            "/{}/{}/_apis/git/repositories/{}",
            setup.organization,
            setup.project.replace(' ', "%20"),
            setup.repository
        )
    }
}

impl AdoState {
    fn rejects(
        &self,
        headers: &HeaderMap,
        (organization, project, repository): &RepoPath,
    ) -> Option<Response> {
        if authorization_of(headers) != Some(self.setup.credential.header().as_str()) {
            return Some(match self.setup.rejection {
                AdoRejection::Unauthorized => ado_error(
                    StatusCode::UNAUTHORIZED,
                    "TF400813: The user '' is not authorized to access this resource.",
                    "UnauthorizedRequestException",
                ),
                AdoRejection::SignInPage => (
                    StatusCode::NON_AUTHORITATIVE_INFORMATION,
                    [("content-type", "text/html; charset=utf-8")],
                    "<!DOCTYPE html><html><head><title>Azure DevOps Services | Sign In</title></head><body></body></html>",
                )
                    .into_response(),
            });
        }
        if organization != &self.setup.organization
            || project != &self.setup.project
            || repository != &self.setup.repository
        {
            return Some(ado_error(
                StatusCode::NOT_FOUND,
                &format!(
                    "TF401019: The Git repository with name or identifier {repository} does not exist or you do not have permissions for the operation you are attempting."
                ),
                "GitRepositoryNotFoundException",
            ));
        }
        None
    }

    fn identity(&self, id: &str) -> Value {
        let base = self.base_url.lock().unwrap().clone();
        json!({
            "displayName": format!("Identity {id}"),
            "url": format!("{base}/_apis/Identities/{id}"),
            "_links": {"avatar": {"href": format!("{base}/_apis/GraphProfile/MemberAvatars/aad.{id}")}},
            "id": id,
            "uniqueName": format!("{id}@contoso.test"),
            "imageUrl": format!("{base}/_api/_common/identityImage?id={id}"),
            "descriptor": format!("aad.{id}")
        })
    }

    fn label(&self, name: &str, index: usize) -> Value {
        let base = self.base_url.lock().unwrap().clone();
        json!({
            "id": format!("5f1b2c3d-0000-4000-8000-{index:012}"),
            "name": name,
            "active": true,
            "url": format!("{base}/{}/_apis/wit/tags/{index}", self.setup.organization)
        })
    }

    /// A pull request the way Azure DevOps answers it (the fields the crate requires and the
    /// usual others).
    fn pull_json(&self, pull: &AdoPull) -> Value {
        let base = self.base_url.lock().unwrap().clone();
        let organization = &self.setup.organization;
        let repository_url = format!(
            "{base}/{organization}/{ADO_PROJECT_ID}/_apis/git/repositories/{ADO_REPOSITORY_ID}"
        );
        let reviewers: Vec<Value> = pull
            .reviewers
            .iter()
            .map(|id| {
                let mut reviewer = self.identity(id);
                reviewer["reviewerUrl"] = json!(format!(
                    "{repository_url}/pullRequests/{}/reviewers/{id}",
                    pull.id
                ));
                reviewer["vote"] = json!(0);
                reviewer["hasDeclined"] = json!(false);
                reviewer["isFlagged"] = json!(false);
                reviewer
            })
            .collect();
        json!({
            "repository": {
                "id": ADO_REPOSITORY_ID,
                "name": self.setup.repository,
                "url": repository_url,
                "project": {
                    "id": ADO_PROJECT_ID,
                    "name": self.setup.project,
                    "state": "wellFormed",
                    "visibility": "private"
                }
            },
            "pullRequestId": pull.id,
            "codeReviewId": pull.id,
            "status": pull.status,
            "createdBy": self.identity(ADO_BUILD_IDENTITY),
            "creationDate": "2024-05-01T10:00:00.1234567Z",
            "title": pull.title,
            "description": pull.description,
            "sourceRefName": pull.source_ref,
            "targetRefName": pull.target_ref,
            "mergeStatus": "succeeded",
            "isDraft": false,
            "mergeId": "f5fc8381-3fb2-49fe-8a0d-27dcc2d6ef82",
            "reviewers": reviewers,
            "labels": pull.labels.iter().enumerate().map(|(index, name)| self.label(name, index)).collect::<Vec<_>>(),
            "url": format!("{repository_url}/pullRequests/{}", pull.id),
            "supportsIterations": true
        })
    }
}

fn ado_error(status: StatusCode, message: &str, type_key: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "$id": "1",
            "innerException": null,
            "message": message,
            "typeName": format!("Microsoft.TeamFoundation.Git.Server.{type_key}, Microsoft.TeamFoundation.Git.Server"),
            "typeKey": type_key,
            "errorCode": 0,
            "eventId": 3000
        })),
    )
        .into_response()
}

async fn ado_repository(
    State(state): State<Arc<AdoState>>,
    Path(path): Path<RepoPath>,
    headers: HeaderMap,
) -> Response {
    if let Some(rejection) = state.rejects(&headers, &path) {
        return rejection;
    }
    let base = state.base_url.lock().unwrap().clone();
    let organization = &state.setup.organization;
    let repository = &state.setup.repository;
    axum::Json(json!({
        "id": ADO_REPOSITORY_ID,
        "name": repository,
        "url": format!("{base}/{organization}/{ADO_PROJECT_ID}/_apis/git/repositories/{ADO_REPOSITORY_ID}"),
        "project": {
            "id": ADO_PROJECT_ID,
            "name": state.setup.project,
            "state": "wellFormed",
            "visibility": "private"
        },
        "defaultBranch": "refs/heads/main",
        "size": 123456,
        "remoteUrl": format!("https://{organization}@dev.azure.test/{organization}/{}/_git/{repository}", state.setup.project),
        "webUrl": format!("https://dev.azure.test/{organization}/{}/_git/{repository}", state.setup.project),
        "isDisabled": false,
        "isInMaintenance": false
    }))
    .into_response()
}

async fn ado_list(
    State(state): State<Arc<AdoState>>,
    Path(path): Path<RepoPath>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    if let Some(rejection) = state.rejects(&headers, &path) {
        return rejection;
    }
    let first_list = {
        let mut answered = state.lists_answered.lock().unwrap();
        *answered += 1;
        *answered == 1
    };
    let wanted = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let source = wanted("searchCriteria.sourceRefName");
    let target = wanted("searchCriteria.targetRefName");
    // Azure DevOps defaults to active pull requests.
    let status = wanted("searchCriteria.status").unwrap_or_else(|| "active".to_owned());
    let pulls = if first_list && state.setup.stale_first_list {
        Vec::new()
    } else {
        state.pulls.lock().unwrap().clone()
    };
    let value: Vec<Value> = pulls
        .iter()
        .filter(|pull| status == "all" || pull.status == status)
        .filter(|pull| {
            source
                .as_deref()
                .is_none_or(|source| source.eq_ignore_ascii_case(&pull.source_ref))
        })
        .filter(|pull| {
            target
                .as_deref()
                .is_none_or(|target| target.eq_ignore_ascii_case(&pull.target_ref))
        })
        .map(|pull| state.pull_json(pull))
        .collect();
    axum::Json(json!({"value": value, "count": value.len()})).into_response()
}

async fn ado_create(
    State(state): State<Arc<AdoState>>,
    Path(path): Path<RepoPath>,
    headers: HeaderMap,
    axum::Json(request): axum::Json<Value>,
) -> Response {
    if let Some(rejection) = state.rejects(&headers, &path) {
        return rejection;
    }
    if state.setup.forbid_create {
        return ado_error(
            StatusCode::FORBIDDEN,
            "TF401027: You need the Git 'PullRequestContribute' permission to perform this action. Details: identity 'Build\\d6245f20', scope 'repository'.",
            "GitNeedsPermissionException",
        );
    }
    let text = |key: &str| request[key].as_str().unwrap_or_default().to_owned();
    let (source_ref, target_ref) = (text("sourceRefName"), text("targetRefName"));
    let mut pulls = state.pulls.lock().unwrap();
    if pulls.iter().any(|pull| {
        pull.status == "active"
            && pull.source_ref.eq_ignore_ascii_case(&source_ref)
            && pull.target_ref.eq_ignore_ascii_case(&target_ref)
    }) {
        return ado_error(
            StatusCode::CONFLICT,
            "TF401179: An active pull request for the source and target branch already exists.",
            "GitPullRequestExistsException",
        );
    }
    let pull = AdoPull {
        id: pulls.iter().map(|pull| pull.id).max().unwrap_or(100) + 1,
        title: text("title"),
        description: text("description"),
        source_ref,
        target_ref,
        status: "active".to_owned(),
        reviewers: strings_in(&request["reviewers"], Some("id")),
        labels: strings_in(&request["labels"], Some("name")),
        comments: Vec::new(),
    };
    pulls.push(pull.clone());
    (StatusCode::CREATED, axum::Json(state.pull_json(&pull))).into_response()
}

fn with_ado_pull(state: &AdoState, id: i32, change: impl FnOnce(&mut AdoPull)) -> Option<AdoPull> {
    let mut pulls = state.pulls.lock().unwrap();
    let pull = pulls.iter_mut().find(|pull| pull.id == id)?;
    change(pull);
    Some(pull.clone())
}

fn ado_pull_not_found() -> Response {
    ado_error(
        StatusCode::NOT_FOUND,
        "TF401180: The requested pull request was not found.",
        "GitPullRequestNotFoundException",
    )
}

async fn ado_update(
    State(state): State<Arc<AdoState>>,
    Path((organization, project, repository, id)): Path<PullPath>,
    headers: HeaderMap,
    axum::Json(request): axum::Json<Value>,
) -> Response {
    if let Some(rejection) = state.rejects(&headers, &(organization, project, repository)) {
        return rejection;
    }
    let updated = with_ado_pull(&state, id, |pull| {
        if let Some(title) = request["title"].as_str() {
            pull.title = title.to_owned();
        }
        if let Some(description) = request["description"].as_str() {
            pull.description = description.to_owned();
        }
    });
    match updated {
        Some(pull) => axum::Json(state.pull_json(&pull)).into_response(),
        None => ado_pull_not_found(),
    }
}

async fn ado_add_reviewers(
    State(state): State<Arc<AdoState>>,
    Path((organization, project, repository, id)): Path<PullPath>,
    headers: HeaderMap,
    axum::Json(request): axum::Json<Value>,
) -> Response {
    if let Some(rejection) = state.rejects(&headers, &(organization, project, repository)) {
        return rejection;
    }
    let ids = strings_in(&request, Some("id"));
    let added = ids.clone();
    let updated = with_ado_pull(&state, id, |pull| add_missing(&mut pull.reviewers, ids));
    match updated {
        Some(_) => {
            let value: Vec<Value> = added
                .iter()
                .map(|id| {
                    let mut reviewer = state.identity(id);
                    reviewer["vote"] = json!(0);
                    reviewer
                })
                .collect();
            axum::Json(json!({"count": value.len(), "value": value})).into_response()
        }
        None => ado_pull_not_found(),
    }
}

async fn ado_add_label(
    State(state): State<Arc<AdoState>>,
    Path((organization, project, repository, id)): Path<PullPath>,
    headers: HeaderMap,
    axum::Json(request): axum::Json<Value>,
) -> Response {
    if let Some(rejection) = state.rejects(&headers, &(organization, project, repository)) {
        return rejection;
    }
    let name = request["name"].as_str().unwrap_or_default().to_owned();
    let updated = with_ado_pull(&state, id, |pull| {
        add_missing(&mut pull.labels, [name.clone()]);
    });
    match updated {
        Some(pull) => {
            let index = pull
                .labels
                .iter()
                .position(|label| *label == name)
                .unwrap_or(0);
            axum::Json(state.label(&name, index)).into_response()
        }
        None => ado_pull_not_found(),
    }
}

/// Standard base64 with padding, for the basic-auth header a PAT makes.
fn base64_of(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = String::new();
    for chunk in bytes.chunks(3) {
        let word = chunk.iter().enumerate().fold(0u32, |word, (index, byte)| {
            word | u32::from(*byte) << (16 - 8 * index)
        });
        for position in 0..4 {
            if position <= chunk.len() {
                encoded.push(char::from(
                    ALPHABET[(word >> (18 - 6 * position) & 0x3f) as usize],
                ));
            } else {
                encoded.push('=');
            }
        }
    }
    encoded
}

#[test]
fn base64_matches_the_known_encodings() {
    assert_eq!(base64_of(b""), "");
    assert_eq!(base64_of(b"f"), "Zg==");
    assert_eq!(base64_of(b"fo"), "Zm8=");
    assert_eq!(base64_of(b"foo"), "Zm9v");
    assert_eq!(base64_of(b":pat"), "OnBhdA==");
}

#[test]
fn repeated_slashes_collapse_to_one() {
    assert_eq!(
        collapse_slashes("//org///project/_apis"),
        "/org/project/_apis"
    );
    assert_eq!(collapse_slashes("/plain/path"), "/plain/path");
}

fn ado_thread_json(comment: &PullComment) -> Value {
    json!({
        "id": comment.id,
        "status": if comment.closed { "closed" } else { "active" },
        "isDeleted": false,
        "comments": [{
            "id": 1,
            "parentCommentId": 0,
            "content": comment.body,
            "commentType": "text",
            "isDeleted": false,
        }],
    })
}

async fn ado_list_threads(
    State(state): State<Arc<AdoState>>,
    Path((organization, project, repository, id)): Path<PullPath>,
    headers: HeaderMap,
) -> Response {
    if let Some(rejection) = state.rejects(&headers, &(organization, project, repository)) {
        return rejection;
    }
    match with_ado_pull(&state, id, |_| {}) {
        Some(pull) => {
            let value: Vec<Value> = pull.comments.iter().map(ado_thread_json).collect();
            axum::Json(json!({"count": value.len(), "value": value})).into_response()
        }
        None => ado_pull_not_found(),
    }
}

async fn ado_create_thread(
    State(state): State<Arc<AdoState>>,
    Path((organization, project, repository, id)): Path<PullPath>,
    headers: HeaderMap,
    axum::Json(request): axum::Json<Value>,
) -> Response {
    if let Some(rejection) = state.rejects(&headers, &(organization, project, repository)) {
        return rejection;
    }
    let comment = PullComment {
        id: next_comment_id(),
        body: request["comments"][0]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        closed: request["status"] == json!("closed"),
    };
    let added = comment.clone();
    match with_ado_pull(&state, id, move |pull| pull.comments.push(added)) {
        Some(_) => axum::Json(ado_thread_json(&comment)).into_response(),
        None => ado_pull_not_found(),
    }
}

async fn ado_update_comment(
    State(state): State<Arc<AdoState>>,
    Path((organization, project, repository, id, thread, comment)): Path<(
        String,
        String,
        String,
        i32,
        u64,
        u64,
    )>,
    headers: HeaderMap,
    axum::Json(request): axum::Json<Value>,
) -> Response {
    if let Some(rejection) = state.rejects(&headers, &(organization, project, repository)) {
        return rejection;
    }
    let content = request["content"].as_str().unwrap_or_default().to_owned();
    let mut found = None;
    let updated = with_ado_pull(&state, id, |pull| {
        if let Some(existing) = pull
            .comments
            .iter_mut()
            .find(|existing| existing.id == thread && comment == 1)
        {
            existing.body = content.clone();
            found = Some(existing.clone());
        }
    });
    match (updated, found) {
        (Some(_), Some(existing)) => {
            axum::Json(ado_thread_json(&existing)["comments"][0].clone()).into_response()
        }
        _ => ado_pull_not_found(),
    }
}
