//! The one way imagegen speaks HTTP: a client built with a user agent and timeouts, a retry
//! loop with exponential backoff and jitter for throttling and transient failures, and answers
//! read up to a bound ([`read_text`]).

use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use tokio::time::Instant;

use crate::limiter::{Answer, Change, Limiter};

/// The user agent every request carries, so a service's logs can name the tool and version.
pub const USER_AGENT: &str = concat!("imagegen/", env!("CARGO_PKG_VERSION"));

/// Timeouts of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Time to open a connection (TCP and TLS).
    pub connect: Duration,
    /// Time for one whole request, from sending to the last byte of the answer.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(60),
        }
    }
}

/// Builds the HTTP client: rustls, the user agent, the timeouts, redirects within one origin.
pub fn client(timeouts: Timeouts) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.request)
        .redirect(same_origin_redirects())
        .build()
}

/// Builds the client for public documents fetched without credentials (a release feed, Visual
/// Studio's channel manifest): like [`client`], but following redirects to other hosts, as
/// such links (`aka.ms/...`) are redirects to a download host by design. Never used to send a
/// secret.
pub fn public_client(timeouts: Timeouts) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.request)
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .build()
}

/// The most redirects followed for one request, as reqwest's default policy has it.
const MAX_REDIRECTS: usize = 10;

/// Follows a redirect only to the origin (scheme, host and port) the request was sent to. A 307
/// or 308 sends the body again, and a payload or a client secret must never reach a host
/// nobody configured; the redirect that is not followed comes back as the answer, for the
/// caller to explain.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same_origin = attempt
            .previous()
            .first()
            .is_none_or(|first| first.origin() == attempt.url().origin());
        if !same_origin {
            attempt.stop()
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

/// Where a redirect that was not followed points, for an error message: resolved against the
/// request's URL, without credentials, query or fragment (a signed URL carries its secret in
/// the query).
pub fn redirect_target(url: &reqwest::Url, response: &Response) -> Option<String> {
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)?
        .to_str()
        .ok()?;
    let mut target = url.join(location).ok()?;
    let _ = target.set_username("");
    let _ = target.set_password(None);
    target.set_query(None);
    target.set_fragment(None);
    Some(target.to_string())
}

/// How often and for how long a request is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first one included.
    pub max_attempts: u32,
    /// No retry starts once this much time has passed since the first try.
    pub max_elapsed: Duration,
    /// The backoff before the second try; each further one doubles it, up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// Six tries, the backoffs 0.2, 0.4, 0.8, 1.6 and 3.2 s (each a random 50 to 100% of it):
    /// a blip costs a fifth of a second, and a failure that outlasts six seconds is left to
    /// the caller, whose next turn comes later (a `--wait` asks about the job again a poll
    /// interval on, the next run sends an unanswered submission again). A longer wait here
    /// would hold up every job behind its unluckiest request; throttling is slowed down by
    /// its Retry-After and the client's limiter, not by this.
    fn default() -> Self {
        Self {
            max_attempts: 6,
            max_elapsed: Duration::from_secs(120),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait before try `attempt + 1`: "full jitter", a random share of the exponential
    /// bound, so many clients throttled together do not come back together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let bound = self
            .initial_backoff
            .saturating_mul(1 << exponent)
            .min(self.max_backoff);
        bound.mul_f64(0.5 + fastrand::f64() / 2.0)
    }
}

/// The outcome of [`send`]: the last answer (which may still be an error status the caller
/// explains), or the transport error of the last try.
#[derive(Debug)]
pub struct Sent {
    pub result: Result<Response, reqwest::Error>,
    /// Tries made, the first one included.
    pub attempts: u32,
}

/// Whether an answer is worth trying again: throttling and server-side failures.
pub fn is_transient_status(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::INTERNAL_SERVER_ERROR
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

/// Whether a transport error is worth trying again: a timeout, a refused or reset connection,
/// an answer cut off. A request that could not be built is not.
pub fn is_transient_error(error: &reqwest::Error) -> bool {
    error.is_timeout() || error.is_connect() || error.is_request() || error.is_body()
}

/// Sends the request `build` makes, trying again under `policy` while the answer is 429 (as
/// long as its Retry-After asks), a 5xx, or a transport failure. `what` names the request in
/// logs. `build` is called once per try, so each try gets fresh headers.
pub async fn send(policy: &RetryPolicy, what: &str, build: impl FnMut() -> RequestBuilder) -> Sent {
    send_limited(policy, None, what, build).await
}

/// [`send`], with each try taking a slot of `limiter` (when given) and giving it back as soon
/// as the answer's headers are in, before any backoff: a request waiting to try again holds no
/// slot another one could use. Every answer is reported to the limiter, so a 429 slows down
/// every request of the client, not only the one throttled.
pub async fn send_limited(
    policy: &RetryPolicy,
    limiter: Option<&Limiter>,
    what: &str,
    mut build: impl FnMut() -> RequestBuilder,
) -> Sent {
    let mut first_try = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let slot = match limiter {
            Some(limiter) => Some(limiter.acquire().await),
            None => None,
        };
        // Time spent waiting for the first slot is not spent retrying.
        let started = *first_try.get_or_insert_with(Instant::now);
        let result = build().send().await;
        if let (Some(limiter), Some(slot)) = (limiter, &slot) {
            match limiter.record(slot, answer_of(&result)) {
                Some(Change::Lowered { to }) => tracing::warn!(
                    "{what}: the service throttles; at most {to} requests at once to it from now on"
                ),
                Some(Change::Raised { to }) => {
                    tracing::debug!("{what}: up to {to} requests at once to the service again")
                }
                None => {}
            }
        }
        drop(slot);
        let wait = match &result {
            Ok(response) if is_transient_status(response.status()) => {
                let status = response.status();
                let asked = retry_after(response);
                let wait = asked.unwrap_or_else(|| policy.backoff(attempt));
                Some((wait, format!("it answered {status}")))
            }
            Ok(_) => None,
            Err(error) if is_transient_error(error) => {
                Some((policy.backoff(attempt), error_summary(error)))
            }
            Err(_) => None,
        };
        let Some((wait, cause)) = wait else {
            return Sent {
                result,
                attempts: attempt,
            };
        };
        let out_of_tries = attempt >= policy.max_attempts;
        let out_of_time = started.elapsed() + wait > policy.max_elapsed;
        if out_of_tries || out_of_time {
            tracing::warn!(
                "{what}: {cause}; giving up after {attempt} {} in {:.1?}",
                if attempt == 1 { "try" } else { "tries" },
                started.elapsed()
            );
            return Sent {
                result,
                attempts: attempt,
            };
        }
        tracing::warn!(
            "{what}: {cause}; trying again in {:.1?} (try {} of at most {})",
            wait,
            attempt + 1,
            policy.max_attempts
        );
        // The answer is dropped before the wait, so its connection goes back to the pool.
        drop(result);
        tokio::time::sleep(wait).await;
    }
}

/// How a limiter counts the outcome of one try.
fn answer_of(result: &Result<Response, reqwest::Error>) -> Answer {
    match result {
        Ok(response) if response.status() == StatusCode::TOO_MANY_REQUESTS => Answer::Throttled {
            retry_after: retry_after(response),
        },
        Ok(response) if is_transient_status(response.status()) => Answer::Failed,
        Ok(_) => Answer::Served,
        Err(_) => Answer::Failed,
    }
}

/// The wait a 429 or 503 asks for: `Retry-After` in seconds or as an HTTP date.
pub fn retry_after(response: &Response) -> Option<Duration> {
    let value = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    parse_retry_after(value, jiff::Timestamp::now())
}

/// Parses a `Retry-After` value against `now`. A date in the past means "now".
pub fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = value.parse::<f64>()
        && seconds.is_finite()
        && seconds >= 0.0
    {
        return Some(Duration::from_secs_f64(seconds));
    }
    let date = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let ahead = now.duration_until(date);
    Some(Duration::try_from(ahead).unwrap_or(Duration::ZERO))
}

/// The most bytes of one answer imagegen reads from a service: far above any answer the
/// contracts describe (a job's state, a token, a pull request), far below what would hurt a
/// build agent. A service, a proxy or a wrong URL that answers more is refused, not read.
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// Why an answer's body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(
        "{url} answered {}, more than the {} imagegen reads of any answer; nothing of it was \
         used. Check that the URL points at the service",
        match size {
            Some(size) => format!("a body of {size} bytes"),
            None => "a body".to_string(),
        },
        shown_size(*limit)
    )]
    TooLarge {
        /// The URL that answered (after any redirect), without secrets: imagegen's service URLs
        /// carry none.
        url: String,
        limit: usize,
        /// What the answer announced (`Content-Length`), when it did.
        size: Option<u64>,
    },
    /// The connection failed while the body was read.
    #[error("{}", error_summary(source))]
    Transport {
        #[source]
        source: reqwest::Error,
    },
}

/// A byte count as a message shows a limit: `4 MiB`, or bytes when not whole mebibytes.
pub fn shown_size(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// Reads an answer's body, chunk by chunk, up to `limit` bytes: an answer announcing more is
/// refused before a byte is read, and one that goes on past the limit is dropped there, so an
/// endless or huge answer costs at most `limit` bytes of memory.
pub async fn read_body(mut response: Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let too_large = |response: &Response, size| BodyError::TooLarge {
        url: response.url().to_string(),
        limit,
        size,
    };
    let announced = response.content_length();
    if announced.is_some_and(|size| size > limit as u64) {
        return Err(too_large(&response, announced));
    }
    let mut body = Vec::with_capacity(announced.map_or(0, |size| size as usize));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| BodyError::Transport { source })?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large(&response, None));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// [`read_body`] for a body that comes as a stream of chunks (octocrab's and the Azure SDK's
/// raw responses); `url` must hold no secret. Transport errors come back as text.
pub async fn read_stream<S, E>(mut body: S, limit: usize, url: &str) -> Result<Vec<u8>, String>
where
    S: futures_core::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut bytes = Vec::new();
    while let Some(chunk) =
        std::future::poll_fn(|context| std::pin::Pin::new(&mut body).poll_next(context)).await
    {
        let chunk = chunk.map_err(|error| format!("reading the answer of {url}: {error}"))?;
        if bytes.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge {
                url: url.to_owned(),
                limit,
                size: None,
            }
            .to_string());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// [`read_body`] as text; bytes that are not UTF-8 are replaced, as an error message can only
/// quote text.
pub async fn read_text(response: Response, limit: usize) -> Result<String, BodyError> {
    let body = read_body(response, limit).await?;
    Ok(match String::from_utf8(body) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    })
}

/// A transport error in a few words, with its innermost cause (such as "connection reset by
/// peer"), which reqwest's own message leaves out.
pub fn error_summary(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "the connection failed"
    };
    let mut innermost: &dyn std::error::Error = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    format!("{kind} ({innermost})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        for _ in 0..100 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(policy.backoff(30) <= Duration::from_secs(1));
        }
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now: jiff::Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("0.25", now),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn limits_are_shown_in_mebibytes_when_whole() {
        assert_eq!(shown_size(MAX_BODY_BYTES), "4 MiB");
        assert_eq!(shown_size(1000), "1000 bytes");
    }

    #[test]
    fn only_throttling_and_server_failures_are_transient() {
        assert!(is_transient_status(StatusCode::TOO_MANY_REQUESTS));
        assert!(is_transient_status(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!is_transient_status(StatusCode::BAD_REQUEST));
        assert!(!is_transient_status(StatusCode::UNAUTHORIZED));
        assert!(!is_transient_status(StatusCode::NOT_IMPLEMENTED));
    }
}
