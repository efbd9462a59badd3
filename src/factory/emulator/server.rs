//! The emulator on the wire: the routes of the token endpoint and the jobs API, the bearer
//! tokens they check, the request log, and the faults that change an answer (or drop the
//! connection) before the client sees it.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use super::jobs::{Inner, IssuedToken, Shared, Submitted, check_payload, job_state};
use super::{Fault, LoggedRequest, Route};
use crate::factory::wire::{
    IDEMPOTENCY_KEY_HEADER, JobState, RemoteStatus, ServiceErrorResponse, SubmitResponse,
    TokenErrorResponse, TokenResponse, TokenVersion,
};

/// Why a connection was dropped on purpose.
#[derive(Debug)]
struct ResetOnPurpose;

impl std::fmt::Display for ResetOnPurpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by the emulator, as configured")
    }
}

impl std::error::Error for ResetOnPurpose {}

pub(super) async fn serve(
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
    let mut entry = logged_request(&shared, &parts, path, route, &bytes);
    let fault = route.and_then(|route| shared.next_fault(route, parts.method.as_str()));
    entry.fault = fault.as_ref().map(|fault| format!("{fault:?}"));
    let response = match fault {
        Some(Fault::Reset) => {
            shared.lock().log.push(entry);
            return Err(ResetOnPurpose);
        }
        Some(Fault::Throttle { retry_after }) => throttled(retry_after),
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

/// The request as the log keeps it; its status and fault are added once known.
fn logged_request(
    shared: &Shared,
    parts: &axum::http::request::Parts,
    path: String,
    route: Option<Route>,
    bytes: &[u8],
) -> LoggedRequest {
    LoggedRequest {
        method: parts.method.to_string(),
        path,
        route: route.map(|route| match route {
            Route::Token => "token",
            Route::Jobs => "jobs",
        }),
        idempotency_key: parts
            .headers
            .get(IDEMPOTENCY_KEY_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string),
        body: logged_body(route, bytes),
        status: None,
        fault: None,
        at_ms: u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// 429, with a `Retry-After` when the fault names one.
fn throttled(retry_after: Option<u64>) -> Response<Body> {
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
    let key = headers
        .get(IDEMPOTENCY_KEY_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let (status, answer) = match shared.submit(inner, payload, key) {
        Submitted::New(answer) => (StatusCode::ACCEPTED, answer),
        Submitted::Known(answer) => (StatusCode::OK, answer),
    };
    (status, axum::Json(answer)).into_response()
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

fn error_response(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    (status, axum::Json(ServiceErrorResponse::new(code, message))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::factory::emulator::{DEFAULT_RESOURCE_ID, Emulator, EmulatorConfig};

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
