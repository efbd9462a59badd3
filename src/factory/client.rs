//! The Image Factory client: submits payloads and reads job states, signing in with Azure AD,
//! retrying what the contract calls transient and explaining everything else.

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use super::auth::{AccessToken, Credentials, DEFAULT_AUTHORITY, TokenSource};
use super::wire::{
    IDEMPOTENCY_KEY_HEADER, JOBS_ROUTE, JobState, RemoteStatus, ServiceErrorResponse,
    SubmitResponse, TokenVersion,
};
use super::{FactoryError, excerpt, join_url, parse_base_url};
use crate::definitions::Payload;
use crate::http::{self, RetryPolicy, Timeouts};
use crate::limiter::Limiter;

/// Where the service and its sign-in are, and how patient to be with them.
#[derive(Debug, Clone)]
pub struct FactorySettings {
    /// The service's base URL; routes join below it.
    pub base_url: Url,
    pub authority: Url,
    pub token_version: TokenVersion,
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
    /// Requests in flight at once, at most (`--concurrency`); fewer while the service throttles.
    pub concurrency: usize,
}

impl FactorySettings {
    /// Settings from the given URLs (`authority` defaults to Azure's public cloud).
    pub fn new(base_url: &str, authority: Option<&str>) -> Result<Self, FactoryError> {
        Ok(Self {
            base_url: parse_base_url(super::URL_VAR, base_url)?,
            authority: parse_base_url(
                super::AUTHORITY_VAR,
                authority.unwrap_or(DEFAULT_AUTHORITY),
            )?,
            token_version: TokenVersion::default(),
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            concurrency: usize::from(super::DEFAULT_CONCURRENCY),
        })
    }

    /// The URL submissions go to.
    pub fn jobs_url(&self) -> Url {
        join_url(&self.base_url, JOBS_ROUTE).expect("a fixed route joins any base URL")
    }

    /// The URL of one job's state.
    pub fn job_url(&self, tracking_id: &str) -> Url {
        let mut url = self.jobs_url();
        url.path_segments_mut()
            .expect("an http URL has path segments")
            .push(tracking_id);
        url
    }
}

/// A tracking id no job has: the nil UUID, which no service issues. Asking for its job shows
/// whether the service answers and takes the token, and touches no job (`imagegen doctor`).
pub const NO_SUCH_JOB: &str = "00000000-0000-0000-0000-000000000000";

/// The service's answer to a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub tracking_id: String,
    pub status: RemoteStatus,
    /// The service recognised the idempotency key and returned the job it started before.
    pub existing: bool,
}

/// Talks to one Image Factory. Cheap to share: one connection pool, one token cache, and one
/// limiter, so that every task of a run shares the concurrency and the service's requests to
/// slow down. Callers may start as many requests as they like: the limiter queues them.
pub struct FactoryClient {
    http: reqwest::Client,
    settings: FactorySettings,
    tokens: TokenSource,
    limiter: Limiter,
}

impl FactoryClient {
    pub fn new(settings: FactorySettings, credentials: Credentials) -> Result<Self, FactoryError> {
        let http = http::client(settings.timeouts).map_err(FactoryError::Client)?;
        let tokens = TokenSource::new(credentials, &settings.authority, settings.token_version)?;
        let limiter = Limiter::new(settings.concurrency);
        Ok(Self {
            http,
            settings,
            tokens,
            limiter,
        })
    }

    pub fn settings(&self) -> &FactorySettings {
        &self.settings
    }

    /// The requests allowed in flight now: the setting, or fewer after the service throttled.
    pub fn concurrency(&self) -> usize {
        self.limiter.limit()
    }

    /// How many tokens this client fetched.
    pub fn tokens_fetched(&self) -> u64 {
        self.tokens.fetch_count()
    }

    /// Submits a rendered payload. The idempotency key lets the service recognise a repeat.
    pub async fn submit(
        &self,
        payload: &Payload,
        idempotency_key: &str,
    ) -> Result<Submitted, FactoryError> {
        let url = self.settings.jobs_url();
        // imagegen makes keys of hex digits and dashes, but a resumed one comes from the
        // ledger, which a person may have edited.
        let key = HeaderValue::from_str(idempotency_key).map_err(|_| {
            FactoryError::BadIdempotencyKey {
                key: idempotency_key.to_string(),
            }
        })?;
        let body = payload.as_json().to_string();
        let (status, text) = self
            .call(Method::POST, &url, |request| {
                request
                    .header(CONTENT_TYPE, "application/json")
                    .header(IDEMPOTENCY_KEY_HEADER, key.clone())
                    .body(body.clone())
            })
            .await?;
        match status {
            StatusCode::OK | StatusCode::CREATED | StatusCode::ACCEPTED => {
                let answer: SubmitResponse = decode(&url, &text)?;
                Ok(Submitted {
                    tracking_id: answer.tracking_id,
                    status: answer.status,
                    existing: status == StatusCode::OK,
                })
            }
            StatusCode::BAD_REQUEST => {
                let (code, message) = match serde_json::from_str::<ServiceErrorResponse>(&text) {
                    Ok(answer) => (answer.error.code, answer.error.message),
                    Err(_) => ("400".to_string(), excerpt(&text)),
                };
                Err(FactoryError::Rejected {
                    url: url.to_string(),
                    code,
                    message,
                })
            }
            _ => Err(self.unexpected("POST", &url, status, &text, None)),
        }
    }

    /// Reads a job's state.
    pub async fn job(&self, tracking_id: &str) -> Result<JobState, FactoryError> {
        let url = self.settings.job_url(tracking_id);
        let (status, text) = self.call(Method::GET, &url, |request| request).await?;
        match status {
            StatusCode::OK => decode(&url, &text),
            _ => Err(self.unexpected("GET", &url, status, &text, Some(tracking_id))),
        }
    }

    /// Sends one authorised request (with retries), and once more with a new token if the
    /// service refuses the token. Returns the final status and body.
    async fn call(
        &self,
        method: Method,
        url: &Url,
        decorate: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<(StatusCode, String), FactoryError> {
        let method_name = if method == Method::POST {
            "POST"
        } else {
            "GET"
        };
        let mut rejected = None;
        loop {
            let token = self
                .tokens
                .token(&self.http, &self.settings.retry, rejected)
                .await?;
            let authorization = bearer(&token);
            let what = format!("{method_name} {url}");
            let sent = http::send_limited(&self.settings.retry, Some(&self.limiter), &what, || {
                decorate(
                    self.http
                        .request(method.clone(), url.clone())
                        .header(AUTHORIZATION, authorization.clone()),
                )
            })
            .await;
            let response = sent.result.map_err(|source| FactoryError::Transport {
                method: method_name,
                url: url.to_string(),
                attempts: sent.attempts,
                source,
            })?;
            if let Some(error) = super::redirect_refused(method_name, url, &response) {
                return Err(error);
            }
            let status = response.status();
            let text = http::read_text(response, http::MAX_BODY_BYTES)
                .await
                .map_err(|error| FactoryError::body(method_name, url, sent.attempts, error))?;
            tracing::debug!(%status, tries = sent.attempts, "{what}");
            if status == StatusCode::UNAUTHORIZED && rejected.is_none() {
                tracing::info!("Image Factory refused the token; fetching a new one");
                rejected = Some(token.generation);
                continue;
            }
            if http::is_transient_status(status) {
                return Err(FactoryError::Status {
                    method: method_name,
                    url: url.to_string(),
                    status: status.as_u16(),
                    attempts: sent.attempts,
                    body: excerpt(&text),
                });
            }
            return Ok((status, text));
        }
    }

    fn unexpected(
        &self,
        method: &'static str,
        url: &Url,
        status: StatusCode,
        text: &str,
        tracking_id: Option<&str>,
    ) -> FactoryError {
        let url = url.to_string();
        let body = excerpt(text);
        match status {
            StatusCode::UNAUTHORIZED => FactoryError::Unauthorized { url, body },
            StatusCode::FORBIDDEN => FactoryError::Forbidden {
                url,
                client_id: self.tokens.client_id().to_string(),
                body,
            },
            StatusCode::NOT_FOUND if tracking_id.is_some() => FactoryError::NotFound {
                tracking_id: tracking_id.unwrap_or_default().to_string(),
                url,
            },
            _ => FactoryError::Status {
                method,
                url,
                status: status.as_u16(),
                attempts: 1,
                body,
            },
        }
    }
}

/// Asks once for the job [`NO_SUCH_JOB`] without a token, and returns the status answered: any
/// answer (the contract's is 401) shows the service is reachable. For when there is no token to
/// ask with (`imagegen doctor` while Azure AD refuses one).
pub async fn status_without_token(settings: &FactorySettings) -> Result<StatusCode, FactoryError> {
    let http = http::client(settings.timeouts).map_err(FactoryError::Client)?;
    let url = settings.job_url(NO_SUCH_JOB);
    let sent = http::send(&RetryPolicy::none(), &format!("GET {url}"), || {
        http.get(url.clone())
    })
    .await;
    let response = sent.result.map_err(|source| FactoryError::Transport {
        method: "GET",
        url: url.to_string(),
        attempts: sent.attempts,
        source,
    })?;
    match super::redirect_refused("GET", &url, &response) {
        Some(error) => Err(error),
        None => Ok(response.status()),
    }
}

/// The Authorization header, marked sensitive so that no log of headers shows it.
fn bearer(token: &AccessToken) -> HeaderValue {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
    value.set_sensitive(true);
    value
}

fn decode<T: serde::de::DeserializeOwned>(url: &Url, text: &str) -> Result<T, FactoryError> {
    serde_json::from_str(text).map_err(|source| FactoryError::Decode {
        url: url.to_string(),
        body: excerpt(text),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_urls_escape_the_tracking_id() {
        let settings = FactorySettings::new("http://127.0.0.1:9/factory", None).unwrap();
        assert_eq!(
            settings.jobs_url().as_str(),
            "http://127.0.0.1:9/factory/api/jobs"
        );
        assert_eq!(
            settings.job_url("a/b c").as_str(),
            "http://127.0.0.1:9/factory/api/jobs/a%2Fb%20c"
        );
    }
}
