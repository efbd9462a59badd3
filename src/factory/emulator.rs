//! The Image Factory emulator: serves the token endpoint and the jobs API of the contract on
//! loopback, moves jobs along on its own clock, and misbehaves on request (throttling, server
//! errors, slow answers, reset connections, early token expiry, failing builds, replayed
//! submissions, jobs that read Succeeded without images or with a status the contract does not
//! name) so that tests, the demo and a first responder can see every path of the client
//! without the real service.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::wire::{
    BuiltImage, IDEMPOTENCY_KEY_HEADER, JobState, RemoteStatus, ServiceErrorResponse,
    SubmitResponse, TokenErrorResponse, TokenResponse, TokenVersion,
};

/// The identity the emulator accepts unless told otherwise.
pub const DEFAULT_TENANT_ID: &str = "emulator-tenant";
pub const DEFAULT_CLIENT_ID: &str = "emulator-client";
pub const DEFAULT_CLIENT_SECRET: &str = "emulator-secret";
pub const DEFAULT_RESOURCE_ID: &str = "api://image-factory-emulator";

/// How the emulator behaves.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The port to listen on, on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub resource_id: String,
    /// Other applications of the tenant: Azure AD issues tokens for them too, and the jobs API
    /// refuses those tokens (401), as the real service refuses a token for another audience.
    pub other_resources: Vec<String>,
    /// How long a new job stays Queued, then Running.
    pub queued_for: Duration,
    pub running_for: Duration,
    /// Jobs producing an image whose name matches fail instead of succeeding.
    pub fail_images: Option<Regex>,
    /// Tokens stop working after this long, whatever `expires_in` claimed.
    pub token_lifetime: Duration,
    /// The `expires_in` the token endpoint answers.
    pub token_expires_in: u64,
    /// Issued tokens start with this, so tests can search output for them.
    pub token_prefix: String,
    /// A share (0 to 1) of jobs API requests answered with one of `fault_kinds`.
    pub fault_rate: f64,
    pub fault_kinds: Vec<Fault>,
    /// Seeds the choice of which requests misbehave, so a run can be repeated.
    pub seed: u64,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            port: 0,
            tenant_id: DEFAULT_TENANT_ID.to_string(),
            client_id: DEFAULT_CLIENT_ID.to_string(),
            client_secret: DEFAULT_CLIENT_SECRET.to_string(),
            resource_id: DEFAULT_RESOURCE_ID.to_string(),
            other_resources: Vec::new(),
            queued_for: Duration::from_secs(5),
            running_for: Duration::from_secs(30),
            fail_images: None,
            token_lifetime: Duration::from_secs(3599),
            token_expires_in: 3599,
            token_prefix: "emulator-token-".to_string(),
            fault_rate: 0.0,
            fault_kinds: Vec::new(),
            seed: 1,
        }
    }
}

/// A way to misbehave, for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After` in seconds (or without one).
    Throttle { retry_after: Option<u64> },
    /// A 5xx answer.
    ServerError(u16),
    /// Any status with a JSON body, such as a 403.
    Status { status: u16, body: String },
    /// Answer only after this long (longer than the client waits, to cause a timeout).
    Slow(Duration),
    /// Act on the request at once (start the job), but hold the answer this long: the client
    /// can die, or give up, after the job exists and before it learns the tracking id.
    LateAnswer(Duration),
    /// Drop the connection without an answer.
    Reset,
    /// A submission is answered as the contract's replay of an earlier one that has since
    /// finished: `200 {trackingId, status: "Succeeded"}`, and the job is done. What a resend
    /// after a lost answer, or after a lost ledger, meets. Submissions only.
    Replay,
    /// A job's state reads `Succeeded` with no images (the service has not listed them yet);
    /// from then on the job is done and names its images. Job states only.
    NoImages,
    /// A job's state reads with this status, which the contract may not name (`Paused`).
    /// Job states only.
    ReportStatus(String),
}

impl Fault {
    /// Whether the fault can change the answer to a request with this method: the ones about
    /// submissions wait for a POST, the ones about job states for a GET.
    pub fn applies_to(&self, method: &str) -> bool {
        match self {
            Self::Replay => method == "POST",
            Self::NoImages | Self::ReportStatus(_) => method == "GET",
            _ => true,
        }
    }
}

impl std::str::FromStr for Fault {
    type Err = String;

    /// `429`, `429:7` (Retry-After), `500` (any 5xx), `slow:30s`, `late:30s`, `reset`,
    /// `replay`, `no-images`, `status:Paused`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (kind, argument) = match text.split_once(':') {
            Some((kind, argument)) => (kind, Some(argument)),
            None => (text, None),
        };
        match (kind, argument) {
            ("429", None) => Ok(Self::Throttle { retry_after: None }),
            ("429", Some(seconds)) => seconds
                .parse()
                .map(|seconds| Self::Throttle {
                    retry_after: Some(seconds),
                })
                .map_err(|_| format!("{seconds:?} is not a number of seconds")),
            ("slow", argument) => {
                let duration = argument.unwrap_or("30s");
                crate::duration::parse(duration).map(Self::Slow)
            }
            ("late", argument) => {
                let duration = argument.unwrap_or("30s");
                crate::duration::parse(duration).map(Self::LateAnswer)
            }
            ("reset", None) => Ok(Self::Reset),
            ("replay", None) => Ok(Self::Replay),
            ("no-images", None) => Ok(Self::NoImages),
            ("status", Some(status)) if !status.trim().is_empty() => {
                Ok(Self::ReportStatus(status.trim().to_string()))
            }
            (status, None) if status.starts_with('5') => status
                .parse()
                .ok()
                .filter(|status| (500..600).contains(status))
                .map(Self::ServerError)
                .ok_or_else(|| format!("{status:?} is not a 5xx status")),
            _ => Err(format!(
                "{text:?} is not a fault: use 429, 429:SECONDS, 500 (any 5xx), slow:DURATION, \
                 late:DURATION, reset, replay, no-images or status:NAME"
            )),
        }
    }
}

/// Which requests an injected fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Token,
    Jobs,
}

/// One request the emulator received, as tests read it back.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub route: Option<&'static str>,
    pub idempotency_key: Option<String>,
    /// The JSON body of a submission; form fields (without the secret) of a token request.
    pub body: Option<Value>,
    /// The answer's status; `None` for a reset connection.
    pub status: Option<u16>,
    pub fault: Option<String>,
    /// Milliseconds since the emulator started.
    pub at_ms: u64,
}

impl LoggedRequest {
    pub fn is_submission(&self) -> bool {
        self.method == "POST" && self.route == Some("jobs")
    }

    pub fn is_token_request(&self) -> bool {
        self.route == Some("token")
    }

    /// The `CustomImageName`s of a submission's payload.
    pub fn image_names(&self) -> Vec<String> {
        self.body
            .as_ref()
            .map(crate::definitions::custom_image_names)
            .unwrap_or_default()
    }
}

struct Job {
    tracking_id: String,
    payload: Value,
    created: Instant,
    created_at: Timestamp,
    image_names: Vec<String>,
    location: String,
    subscription: String,
    /// Added to the job's age: a fault can move a job to its end at once.
    ahead: Duration,
}

struct IssuedToken {
    valid_until: Instant,
    /// The resource the token was asked for: the jobs API takes only its own.
    audience: String,
}

struct Shared {
    config: EmulatorConfig,
    started: Instant,
    inner: Mutex<Inner>,
}

struct Inner {
    jobs: HashMap<String, Job>,
    /// Idempotency key -> tracking id and when it was first used.
    keys: HashMap<String, (String, Instant)>,
    tokens: HashMap<String, IssuedToken>,
    tokens_issued: u64,
    log: Vec<LoggedRequest>,
    scripted: VecDeque<(Route, Fault)>,
    random: fastrand::Rng,
    /// Added to the real clock, so tests can skip ahead.
    skipped: Duration,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic in one handler must not take the whole emulator down with it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn now(&self, inner: &Inner) -> Instant {
        Instant::now() + inner.skipped
    }

    /// The fault for the next request to `route` with `method`: the first scripted one that
    /// applies to it, or else by chance one of `fault_kinds` (answered as usual when the one
    /// drawn does not apply).
    fn next_fault(&self, route: Route, method: &str) -> Option<Fault> {
        let mut inner = self.lock();
        if let Some(position) = inner
            .scripted
            .iter()
            .position(|(r, fault)| *r == route && fault.applies_to(method))
        {
            return inner.scripted.remove(position).map(|(_, fault)| fault);
        }
        let config = &self.config;
        if route == Route::Jobs
            && !config.fault_kinds.is_empty()
            && inner.random.f64() < config.fault_rate
        {
            let index = inner.random.usize(..config.fault_kinds.len());
            let fault = &config.fault_kinds[index];
            return fault.applies_to(method).then(|| fault.clone());
        }
        None
    }

    /// Moves a job to its end at once, as if its build had run.
    fn finish(&self, tracking_id: &str) {
        let config = &self.config;
        if let Some(job) = self.lock().jobs.get_mut(tracking_id) {
            job.ahead = config.queued_for + config.running_for;
        }
    }
}

/// A running emulator. Dropping it stops it.
pub struct Emulator {
    address: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Set when the emulator runs on a runtime of its own (see [`Emulator::start_in_background`]).
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Emulator {
    /// Binds 127.0.0.1 and serves on the current tokio runtime.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", config.port)).await?;
        let address = listener.local_addr()?;
        let seed = config.seed;
        let shared = Arc::new(Shared {
            config,
            started: Instant::now(),
            inner: Mutex::new(Inner {
                jobs: HashMap::new(),
                keys: HashMap::new(),
                tokens: HashMap::new(),
                tokens_issued: 0,
                log: Vec::new(),
                scripted: VecDeque::new(),
                random: fastrand::Rng::with_seed(seed),
                skipped: Duration::ZERO,
            }),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(serve(listener, shared.clone(), stopped));
        Ok(Self {
            address,
            shared,
            stop: Some(stop),
            thread: None,
        })
    }

    /// Starts the emulator on a thread with its own runtime, for callers without one (such as
    /// tests that run the imagegen binary against it).
    pub fn start_in_background(config: EmulatorConfig) -> std::io::Result<Self> {
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("image-factory-emulator".into())
            .spawn(move || {
                // Its own runtime, not the process's: the emulator must keep answering while
                // the caller is blocked outside any runtime, waiting for the jobs it serves.
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = sender.send(Err(error));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match Emulator::start(config).await {
                        Ok(mut emulator) => {
                            let stopped = emulator.stop.take();
                            let (stop, wait) = tokio::sync::oneshot::channel::<()>();
                            let _ =
                                sender.send(Ok((emulator.address, emulator.shared.clone(), stop)));
                            let _ = wait.await;
                            drop(stopped);
                        }
                        Err(error) => {
                            let _ = sender.send(Err(error));
                        }
                    }
                });
            })?;
        let (address, shared, stop) = receiver
            .recv()
            .map_err(|_| std::io::Error::other("the emulator thread ended before it started"))??;
        Ok(Self {
            address,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The base URL of the jobs API, and of the token endpoint (the emulator serves both).
    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }

    pub fn config(&self) -> &EmulatorConfig {
        &self.shared.config
    }

    /// The environment imagegen needs to use this emulator.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        let config = &self.shared.config;
        vec![
            (super::URL_VAR, self.url()),
            (super::AUTHORITY_VAR, self.url()),
            (super::auth::TENANT_ID_VAR, config.tenant_id.clone()),
            (super::auth::CLIENT_ID_VAR, config.client_id.clone()),
            (super::auth::CLIENT_SECRET_VAR, config.client_secret.clone()),
            (super::auth::RESOURCE_ID_VAR, config.resource_id.clone()),
        ]
    }

    /// The identity this emulator accepts, for a caller in the same process.
    pub fn credentials(&self) -> super::Credentials {
        let config = &self.shared.config;
        super::Credentials::new(
            config.tenant_id.clone(),
            config.client_id.clone(),
            secrecy::SecretString::from(config.client_secret.clone()),
            config.resource_id.clone(),
        )
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.clone()
    }

    /// Makes the next request to `route` misbehave as `fault` (queued after earlier ones); a
    /// fault about submissions waits for the next POST, one about job states for the next GET.
    pub fn inject(&self, route: Route, fault: Fault) {
        self.shared.lock().scripted.push_back((route, fault));
    }

    /// Makes every token issued so far stop working, as if they had expired early.
    pub fn expire_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Moves the emulator's clock forward: jobs progress and tokens age as if time had passed.
    pub fn skip(&self, duration: Duration) {
        self.shared.lock().skipped += duration;
    }

    /// A job's state as the API would report it.
    pub fn job(&self, tracking_id: &str) -> Option<JobState> {
        let inner = self.shared.lock();
        let now = self.shared.now(&inner);
        inner
            .jobs
            .get(tracking_id)
            .map(|job| job_state(&self.shared.config, job, now))
    }

    /// How many jobs were started (not counting repeats recognised by idempotency key).
    pub fn job_count(&self) -> usize {
        self.shared.lock().jobs.len()
    }

    /// The payloads of every job started, in no particular order.
    pub fn payloads(&self) -> Vec<Value> {
        self.shared
            .lock()
            .jobs
            .values()
            .map(|job| job.payload.clone())
            .collect()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Why a connection was dropped on purpose.
#[derive(Debug)]
struct ResetOnPurpose;

impl std::fmt::Display for ResetOnPurpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by the emulator, as configured")
    }
}

impl std::error::Error for ResetOnPurpose {}

async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let router = router(shared.clone());
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!("emulator: accept failed: {error}");
                    continue;
                }
            },
            _ = &mut stopped => return,
        };
        let router = router.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                handle(shared.clone(), router.clone(), request)
            });
            // An error here is a client going away or a reset on purpose; both are expected.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Logs the request, applies a fault if one is due, and otherwise routes it.
async fn handle(
    shared: Arc<Shared>,
    router: Router,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, ResetOnPurpose> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(Body::new(body), 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let route = route_of(&path);
    let mut entry = LoggedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        route: route.map(|route| match route {
            Route::Token => "token",
            Route::Jobs => "jobs",
        }),
        idempotency_key: parts
            .headers
            .get(IDEMPOTENCY_KEY_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string),
        body: logged_body(route, &bytes),
        status: None,
        fault: None,
        at_ms: u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    let fault = route.and_then(|route| shared.next_fault(route, parts.method.as_str()));
    entry.fault = fault.as_ref().map(|fault| format!("{fault:?}"));
    let response = match fault {
        Some(Fault::Reset) => {
            shared.lock().log.push(entry);
            return Err(ResetOnPurpose);
        }
        Some(Fault::Throttle { retry_after }) => {
            let mut response = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "throttled by the emulator",
            );
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, seconds.into());
            }
            response
        }
        Some(Fault::ServerError(status)) => error_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "ServerError",
            "a failure injected by the emulator",
        ),
        Some(Fault::Status { status, body }) => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap_or_default(),
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            route_request(&router, parts, bytes).await
        }
        Some(Fault::LateAnswer(delay)) => {
            let response = route_request(&router, parts, bytes).await;
            // Logged before the wait: the client may be gone by the time the answer goes out,
            // and the request reached the service all the same.
            entry.status = Some(response.status().as_u16());
            shared.lock().log.push(entry);
            tokio::time::sleep(delay).await;
            return Ok(response);
        }
        Some(Fault::Replay) => {
            let response = route_request(&router, parts, bytes).await;
            replayed(&shared, response).await
        }
        Some(Fault::NoImages) => {
            let response = route_request(&router, parts, bytes).await;
            rewrite_job_state(&shared, response, |state| {
                state.status = RemoteStatus::Succeeded;
                state.images.clear();
                state.message =
                    "the images are being registered (emulated: they are listed from the next \
                     request on)"
                        .to_string();
            })
            .await
        }
        Some(Fault::ReportStatus(status)) => {
            let response = route_request(&router, parts, bytes).await;
            rewrite_job_state(&shared, response, |state| {
                state.status = RemoteStatus::from(status.as_str());
                state.images.clear();
            })
            .await
        }
        None => route_request(&router, parts, bytes).await,
    };
    entry.status = Some(response.status().as_u16());
    shared.lock().log.push(entry);
    Ok(response)
}

/// A submission's answer turned into the replay of a finished job: 200, `Succeeded`, and the
/// job done. A refusal stays as it was.
async fn replayed(shared: &Shared, response: Response<Body>) -> Response<Body> {
    if !response.status().is_success() {
        return response;
    }
    let Some(answer) = read_json::<SubmitResponse>(response).await else {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "EmulatorError",
            "the emulator could not read its own answer",
        );
    };
    shared.finish(&answer.tracking_id);
    (
        StatusCode::OK,
        axum::Json(SubmitResponse {
            tracking_id: answer.tracking_id,
            status: RemoteStatus::Succeeded,
        }),
    )
        .into_response()
}

/// A job state's answer, changed by `change`; the job is done from then on. Any other answer
/// (such as a 404) stays as it was.
async fn rewrite_job_state(
    shared: &Shared,
    response: Response<Body>,
    change: impl FnOnce(&mut JobState),
) -> Response<Body> {
    if response.status() != StatusCode::OK {
        return response;
    }
    let Some(mut state) = read_json::<JobState>(response).await else {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "EmulatorError",
            "the emulator could not read its own answer",
        );
    };
    shared.finish(&state.tracking_id);
    change(&mut state);
    axum::Json(state).into_response()
}

async fn read_json<T: serde::de::DeserializeOwned>(response: Response<Body>) -> Option<T> {
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024 * 1024)
        .await
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

async fn route_request(
    router: &Router,
    parts: axum::http::request::Parts,
    bytes: axum::body::Bytes,
) -> Response<Body> {
    let request = Request::from_parts(parts, Body::from(bytes));
    match router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

fn route_of(path: &str) -> Option<Route> {
    if path.ends_with("/oauth2/token") || path.ends_with("/oauth2/v2.0/token") {
        Some(Route::Token)
    } else if path == "/api/jobs" || path.starts_with("/api/jobs/") {
        Some(Route::Jobs)
    } else {
        None
    }
}

fn logged_body(route: Option<Route>, bytes: &[u8]) -> Option<Value> {
    match route {
        Some(Route::Jobs) if !bytes.is_empty() => Some(
            serde_json::from_slice(bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned())),
        ),
        Some(Route::Token) => {
            let fields: Vec<(String, String)> = serde_urlencoded_pairs(bytes).into_iter().collect();
            let mut logged = serde_json::Map::new();
            for (name, value) in fields {
                // The log is read by tests and printed by the binary: never the secret.
                let value = if name == "client_secret" {
                    "[hidden]".to_string()
                } else {
                    value
                };
                logged.insert(name, Value::String(value));
            }
            Some(Value::Object(logged))
        }
        _ => None,
    }
}

fn serde_urlencoded_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/token", post(token_v1))
        .route("/{tenant}/oauth2/v2.0/token", post(token_v2))
        .route("/api/jobs", post(submit))
        .route("/api/jobs/{tracking_id}", get(job))
        .route("/_emulator/requests", get(request_log))
        .fallback(|| async {
            error_response(
                StatusCode::NOT_FOUND,
                "NotFound",
                "no such route in the emulator",
            )
        })
        .with_state(shared)
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
}

async fn token_v1(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Form(form): Form<TokenForm>,
) -> Response<Body> {
    issue_token(&shared, TokenVersion::V1, &tenant, form)
}

async fn token_v2(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Form(form): Form<TokenForm>,
) -> Response<Body> {
    issue_token(&shared, TokenVersion::V2, &tenant, form)
}

fn issue_token(
    shared: &Shared,
    version: TokenVersion,
    tenant: &str,
    form: TokenForm,
) -> Response<Body> {
    let config = &shared.config;
    let refuse = |status: StatusCode, error: &str, description: String| {
        let body = TokenErrorResponse {
            error: error.to_string(),
            error_description: description,
        };
        (status, axum::Json(body)).into_response()
    };
    if tenant != config.tenant_id {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            format!("tenant {tenant:?} is not known to the emulator"),
        );
    }
    if form.grant_type.as_deref() != Some("client_credentials") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only client_credentials is supported".to_string(),
        );
    }
    if form.client_id.as_deref() != Some(config.client_id.as_str())
        || form.client_secret.as_deref() != Some(config.client_secret.as_str())
    {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided, or unknown client id.".to_string(),
        );
    }
    let asked_for = |resource: &String| match version {
        TokenVersion::V2 => form.scope.as_deref() == Some(TokenVersion::scope(resource).as_str()),
        TokenVersion::V1 => form.resource.as_deref() == Some(resource.as_str()),
    };
    let Some(audience) = std::iter::once(&config.resource_id)
        .chain(&config.other_resources)
        .find(|resource| asked_for(resource))
        .cloned()
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            format!(
                "AADSTS500011: the resource was not found; expected {}",
                config.resource_id
            ),
        );
    };
    let mut guard = shared.lock();
    let inner = &mut *guard;
    inner.tokens_issued += 1;
    let token = format!(
        "{}{}-{:016x}",
        config.token_prefix,
        inner.tokens_issued,
        inner.random.u64(..)
    );
    let valid_until = shared.now(inner) + config.token_lifetime;
    inner.tokens.insert(
        token.clone(),
        IssuedToken {
            valid_until,
            audience,
        },
    );
    axum::Json(TokenResponse {
        token_type: "Bearer".to_string(),
        expires_in: config.token_expires_in,
        access_token: token,
    })
    .into_response()
}

/// Checks the bearer token; why it is refused if it is missing, unknown or expired.
fn authorize(shared: &Shared, inner: &Inner, headers: &HeaderMap) -> Result<(), &'static str> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let Some(token) = token else {
        return Err("no bearer token");
    };
    match inner.tokens.get(token) {
        Some(issued) if issued.audience != shared.config.resource_id => {
            Err("the token is for another resource")
        }
        Some(issued) if shared.now(inner) < issued.valid_until => Ok(()),
        Some(_) => Err("the token expired"),
        None => Err("the token is not valid for this service"),
    }
}

fn unauthorized(reason: &str) -> Response<Body> {
    error_response(StatusCode::UNAUTHORIZED, "Unauthorized", reason)
}

async fn submit(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response<Body> {
    let mut guard = shared.lock();
    let inner = &mut *guard;
    if let Err(reason) = authorize(&shared, inner, &headers) {
        return unauthorized(reason);
    }
    let payload: Value = match serde_json::from_slice(&body) {
        Ok(payload) => payload,
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "InvalidPayload",
                &format!("the body is not JSON: {error}"),
            );
        }
    };
    if let Err(message) = check_payload(&payload) {
        return error_response(StatusCode::BAD_REQUEST, "InvalidPayload", &message);
    }
    let now = shared.now(inner);
    let key = headers
        .get(IDEMPOTENCY_KEY_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    const KEY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
    if let Some(key) = &key
        && let Some((tracking_id, first_used)) = inner.keys.get(key)
        && now.duration_since(*first_used) < KEY_WINDOW
    {
        let tracking_id = tracking_id.clone();
        let status = inner
            .jobs
            .get(&tracking_id)
            .map_or(RemoteStatus::Queued, |job| {
                job_state(&shared.config, job, now).status
            });
        return (
            StatusCode::OK,
            axum::Json(SubmitResponse {
                tracking_id,
                status,
            }),
        )
            .into_response();
    }
    let tracking_id = format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        inner.random.u32(..),
        inner.random.u16(..),
        inner.random.u16(..),
        inner.random.u16(..),
        inner.random.u64(..) & 0xffff_ffff_ffff
    );
    let image_names = crate::definitions::custom_image_names(&payload);
    let location = payload
        .get("Location")
        .and_then(Value::as_str)
        .unwrap_or("westus2")
        .to_string();
    let subscription = payload
        .pointer("/Destination/0/SubId")
        .and_then(Value::as_str)
        .unwrap_or("00000000-0000-0000-0000-000000000000")
        .to_string();
    inner.jobs.insert(
        tracking_id.clone(),
        Job {
            tracking_id: tracking_id.clone(),
            payload,
            created: now,
            created_at: Timestamp::now(),
            image_names,
            location,
            subscription,
            ahead: Duration::ZERO,
        },
    );
    if let Some(key) = key {
        inner.keys.insert(key, (tracking_id.clone(), now));
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(SubmitResponse {
            tracking_id,
            status: RemoteStatus::Queued,
        }),
    )
        .into_response()
}

/// What the emulator insists on, as the real service would: an object with destinations that
/// name their images.
fn check_payload(payload: &Value) -> Result<(), String> {
    let Some(object) = payload.as_object() else {
        return Err("the payload must be a JSON object".to_string());
    };
    let Some(destinations) = object.get("Destination").and_then(Value::as_array) else {
        return Err("Destination is required and must be an array".to_string());
    };
    if destinations.is_empty() {
        return Err("Destination must name at least one image".to_string());
    }
    for (index, destination) in destinations.iter().enumerate() {
        match destination.get("CustomImageName").and_then(Value::as_str) {
            Some(name) if !name.trim().is_empty() => {
                if name.contains('{') || name.contains('}') {
                    return Err(format!(
                        "Destination[{index}].CustomImageName {name:?} holds a brace: \
                         was a placeholder left unrendered?"
                    ));
                }
            }
            _ => {
                return Err(format!("Destination[{index}].CustomImageName is required"));
            }
        }
    }
    Ok(())
}

async fn job(
    State(shared): State<Arc<Shared>>,
    Path(tracking_id): Path<String>,
    headers: HeaderMap,
) -> Response<Body> {
    let inner = shared.lock();
    if let Err(reason) = authorize(&shared, &inner, &headers) {
        return unauthorized(reason);
    }
    let now = shared.now(&inner);
    match inner.jobs.get(&tracking_id) {
        Some(job) => axum::Json(job_state(&shared.config, job, now)).into_response(),
        None => error_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("no job {tracking_id}"),
        ),
    }
}

async fn request_log(State(shared): State<Arc<Shared>>) -> Response<Body> {
    axum::Json(shared.lock().log.clone()).into_response()
}

/// Where a job stands at `now`: Queued, then Running, then Succeeded or Failed.
fn job_state(config: &EmulatorConfig, job: &Job, now: Instant) -> JobState {
    let age = now.saturating_duration_since(job.created) + job.ahead;
    let at = |offset: Duration| {
        job.created_at
            .checked_add(jiff::SignedDuration::try_from(offset).unwrap_or_default())
            .unwrap_or(job.created_at)
    };
    let running_from = config.queued_for;
    let done_at = config.queued_for + config.running_for;
    let failing = config
        .fail_images
        .as_ref()
        .and_then(|pattern| job.image_names.iter().find(|name| pattern.is_match(name)));
    let (status, message, images, updated) = if age < running_from {
        (
            RemoteStatus::Queued,
            String::new(),
            Vec::new(),
            at(Duration::ZERO),
        )
    } else if age < done_at {
        (
            RemoteStatus::Running,
            "building".to_string(),
            Vec::new(),
            at(running_from),
        )
    } else if let Some(name) = failing {
        (
            RemoteStatus::Failed,
            format!(
                "the build of {name} failed: the Visual Studio installer exited with code 1603 \
                 (emulated failure)"
            ),
            Vec::new(),
            at(done_at),
        )
    } else {
        let images = job
            .image_names
            .iter()
            .map(|name| BuiltImage {
                name: name.clone(),
                location: Some(job.location.clone()),
                resource_id: Some(format!(
                    "/subscriptions/{}/resourceGroups/helix-images/providers/Microsoft.Compute/images/{name}",
                    job.subscription
                )),
            })
            .collect();
        (RemoteStatus::Succeeded, String::new(), images, at(done_at))
    };
    JobState {
        tracking_id: job.tracking_id.clone(),
        status,
        message,
        images,
        created_at: Some(job.created_at),
        updated_at: Some(updated),
    }
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    (status, axum::Json(ServiceErrorResponse::new(code, message))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn faults_parse_from_their_short_forms() {
        assert_eq!(
            "429:3".parse::<Fault>(),
            Ok(Fault::Throttle {
                retry_after: Some(3)
            })
        );
        assert_eq!("503".parse::<Fault>(), Ok(Fault::ServerError(503)));
        assert_eq!("reset".parse::<Fault>(), Ok(Fault::Reset));
        assert_eq!(
            "slow:2s".parse::<Fault>(),
            Ok(Fault::Slow(Duration::from_secs(2)))
        );
        assert_eq!("replay".parse::<Fault>(), Ok(Fault::Replay));
        assert_eq!("no-images".parse::<Fault>(), Ok(Fault::NoImages));
        assert_eq!(
            "status:Paused".parse::<Fault>(),
            Ok(Fault::ReportStatus("Paused".into()))
        );
        assert!("status:".parse::<Fault>().is_err());
        assert!(Fault::Replay.applies_to("POST") && !Fault::Replay.applies_to("GET"));
        assert!(Fault::NoImages.applies_to("GET") && !Fault::NoImages.applies_to("POST"));
        assert!(Fault::Reset.applies_to("GET") && Fault::Reset.applies_to("POST"));
        assert!("404".parse::<Fault>().is_err());
        assert!("599x".parse::<Fault>().is_err());
    }

    #[test]
    fn payloads_must_name_their_images() {
        assert!(check_payload(&json!([])).is_err());
        assert!(check_payload(&json!({"Destination": []})).is_err());
        assert!(
            check_payload(&json!({"Destination": [{"CustomImageName": "X_{V}"}]}))
                .unwrap_err()
                .contains("placeholder")
        );
        assert!(check_payload(&json!({"Destination": [{"CustomImageName": "X_1"}]})).is_ok());
    }

    #[test]
    fn jobs_move_along_the_clock_and_fail_on_request() {
        let config = EmulatorConfig {
            queued_for: Duration::from_secs(1),
            running_for: Duration::from_secs(2),
            fail_images: Some(Regex::new("Broken").unwrap()),
            ..EmulatorConfig::default()
        };
        let created = Instant::now();
        let job = |name: &str| Job {
            tracking_id: "t".into(),
            payload: json!({}),
            created,
            created_at: Timestamp::UNIX_EPOCH,
            image_names: vec![name.to_string()],
            location: "westus2".into(),
            subscription: "s".into(),
            ahead: Duration::ZERO,
        };
        let good = job("Helix-Good_1");
        let at = |seconds: u64| created + Duration::from_secs(seconds);
        assert_eq!(
            job_state(&config, &good, at(0)).status,
            RemoteStatus::Queued
        );
        assert_eq!(
            job_state(&config, &good, at(1)).status,
            RemoteStatus::Running
        );
        let done = job_state(&config, &good, at(3));
        assert_eq!(done.status, RemoteStatus::Succeeded);
        assert_eq!(done.images[0].name, "Helix-Good_1");
        let failed = job_state(&config, &job("Helix-Broken_1"), at(3));
        assert_eq!(failed.status, RemoteStatus::Failed);
        assert!(failed.message.contains("Helix-Broken_1") && failed.images.is_empty());
    }

    /// A token from the emulator's own token endpoint, for `resource`.
    async fn token_for(http: &reqwest::Client, emulator: &Emulator, resource: &str) -> String {
        let config = emulator.config();
        let answer: TokenResponse = http
            .post(format!(
                "{}{}",
                emulator.url(),
                TokenVersion::V2.route(&config.tenant_id)
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", config.client_id.as_str()),
                ("client_secret", config.client_secret.as_str()),
                ("scope", TokenVersion::scope(resource).as_str()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer.access_token
    }

    #[tokio::test]
    async fn an_unknown_job_is_404_and_a_token_for_another_resource_is_401() {
        let emulator = Emulator::start(EmulatorConfig {
            other_resources: vec!["api://another-app".into()],
            ..EmulatorConfig::default()
        })
        .await
        .unwrap();
        let http = reqwest::Client::new();
        let url = format!(
            "{}api/jobs/00000000-0000-0000-0000-000000000000",
            emulator.url()
        );
        let ask = |token: Option<String>| {
            let mut request = http.get(&url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            async move { request.send().await.unwrap() }
        };
        assert_eq!(ask(None).await.status(), StatusCode::UNAUTHORIZED);
        let own = token_for(&http, &emulator, DEFAULT_RESOURCE_ID).await;
        let unknown = ask(Some(own)).await;
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        let error: ServiceErrorResponse = unknown.json().await.unwrap();
        assert_eq!(error.error.code, "NotFound");
        let other = token_for(&http, &emulator, "api://another-app").await;
        let refused = ask(Some(other)).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        let error: ServiceErrorResponse = refused.json().await.unwrap();
        assert!(
            error.error.message.contains("another resource"),
            "{error:?}"
        );
    }
}
