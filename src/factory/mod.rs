//! Image Factory, the service that builds the images: its wire format, Azure AD sign-in, the
//! client, and an emulator that serves the same contract on loopback. Everything the contract
//! fixes lives under this module, so a difference in the real service is a change here only.
//! The emulator is built only with the `emulator` feature (on by default): production never
//! runs it, so its release build leaves the server and its dependencies out.

pub mod auth;
pub mod client;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod wire;

use reqwest::Url;

pub use auth::Credentials;
pub use client::{FactoryClient, FactorySettings, Submitted};
pub use wire::{BuiltImage, JobState, RemoteStatus, TokenVersion};

/// Requests one client has in flight at once, unless told otherwise (`--concurrency`): tens of
/// definitions go out in a wave or two, and the service's first 429 halves it
/// (docs/configuration.md, "Concurrency").
pub const DEFAULT_CONCURRENCY: u16 = 16;

/// Environment variable naming the service's base URL (also `--factory-url`).
pub const URL_VAR: &str = "IMAGE_FACTORY_URL";
/// Environment variable naming the Azure AD authority (also `--authority`).
pub const AUTHORITY_VAR: &str = "IMAGE_FACTORY_AUTHORITY";
/// Environment variable choosing the token endpoint version, `v1` or `v2`.
pub const TOKEN_VERSION_VAR: &str = "IMAGE_FACTORY_TOKEN_VERSION";

/// What went wrong talking to Image Factory or Azure AD. Each variant names the URL and what
/// the service said; none ever holds a secret or a token.
#[derive(Debug, thiserror::Error)]
pub enum FactoryError {
    #[error(
        "Image Factory credentials are missing: set {} (in a pipeline they come from the key \
         vault variable group; see docs/configuration.md)",
        names.join(", ")
    )]
    MissingCredentials { names: Vec<&'static str> },

    #[error("no Image Factory URL: set {URL_VAR} or pass --factory-url")]
    MissingUrl,

    #[error("{name} {value:?} is not a usable URL: {reason}")]
    BadUrl {
        name: &'static str,
        value: String,
        reason: String,
    },

    #[error(
        "Azure AD refused a token for client id {client_id} at {url} ({status}{}): {description}. \
         Check {} and {}",
        if error.is_empty() { String::new() } else { format!(" {error}") },
        auth::CLIENT_ID_VAR,
        auth::CLIENT_SECRET_VAR
    )]
    Token {
        url: String,
        client_id: String,
        status: u16,
        error: String,
        description: String,
    },

    #[error("Image Factory rejected the payload at {url} ({code}): {message}")]
    Rejected {
        url: String,
        code: String,
        message: String,
    },

    #[error(
        "Image Factory refused the token at {url} (401) even after a new one was fetched: {body}. \
         Check that {} is the service's resource id",
        auth::RESOURCE_ID_VAR
    )]
    Unauthorized { url: String, body: String },

    #[error("client id {client_id} may not use Image Factory at {url} (403): {body}")]
    Forbidden {
        url: String,
        client_id: String,
        body: String,
    },

    #[error("Image Factory knows no job {tracking_id} ({url} answered 404)")]
    NotFound { tracking_id: String, url: String },

    #[error(
        "{method} {url} answered {status} after {attempts} {}: {body}",
        if *attempts == 1 { "try" } else { "tries" }
    )]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        attempts: u32,
        body: String,
    },

    #[error(
        "{method} {url} failed after {attempts} {}: {}",
        if *attempts == 1 { "try" } else { "tries" },
        crate::http::error_summary(source)
    )]
    Transport {
        method: &'static str,
        url: String,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },

    #[error(
        "{method} {url} was redirected ({status}) to {location}, another host; imagegen follows \
         no redirect to another host, so that no payload, secret or token goes where nobody \
         configured it to go. Check {URL_VAR} and {AUTHORITY_VAR}: each must be the address \
         the service itself answers at"
    )]
    Redirect {
        method: &'static str,
        url: String,
        status: u16,
        location: String,
    },

    #[error("{url} answered something that is not the contract's JSON ({source}): {body}")]
    Decode {
        url: String,
        body: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error(
        "the idempotency key {key:?} cannot be sent as an HTTP header (the ledger was edited by \
         hand?); nothing was sent: fix or remove the entry's idempotency_key"
    )]
    BadIdempotencyKey { key: String },

    #[error("{method} {source}")]
    TooLarge {
        method: &'static str,
        #[source]
        source: crate::http::BodyError,
    },
}

impl FactoryError {
    /// The error for an answer to `method` on `url` whose body could not be read.
    pub(crate) fn body(
        method: &'static str,
        url: &Url,
        attempts: u32,
        error: crate::http::BodyError,
    ) -> Self {
        match error {
            crate::http::BodyError::Transport { source } => Self::Transport {
                method,
                url: url.to_string(),
                attempts,
                source,
            },
            too_large => Self::TooLarge {
                method,
                source: too_large,
            },
        }
    }

    /// Worth asking again later: the service was unreachable, throttling or failing.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// The service may have acted on the request even though no answer arrived.
    pub fn answer_lost(&self) -> bool {
        // An answer too large to read is an answer all the same: the service may have acted.
        matches!(self, Self::Transport { .. } | Self::TooLarge { .. })
            || matches!(self, Self::Status { status, .. } if *status >= 500)
    }
}

/// The error for an answer that is a redirect the HTTP client did not follow (one to another
/// origin: see [`crate::http::client`]); `None` for any other answer.
fn redirect_refused(
    method: &'static str,
    url: &Url,
    response: &reqwest::Response,
) -> Option<FactoryError> {
    let status = response.status();
    if !status.is_redirection() {
        return None;
    }
    Some(FactoryError::Redirect {
        method,
        url: url.to_string(),
        status: status.as_u16(),
        location: crate::http::redirect_target(url, response)
            .unwrap_or_else(|| "(no usable Location)".to_string()),
    })
}

/// Parses a base URL and makes sure relative routes join below it, not beside its last segment.
pub fn parse_base_url(name: &'static str, value: &str) -> Result<Url, FactoryError> {
    let bad = |reason: String| FactoryError::BadUrl {
        name,
        value: value.to_string(),
        reason,
    };
    let mut url = Url::parse(value.trim()).map_err(|error| bad(error.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("use an http or https URL".to_string()));
    }
    if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "leave credentials and query strings out of it".to_string()
        ));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn join_url(base: &Url, route: &str) -> Result<Url, FactoryError> {
    base.join(route).map_err(|error| FactoryError::BadUrl {
        name: "route",
        value: format!("{base}{route}"),
        reason: error.to_string(),
    })
}

/// The start of a response body, for an error message.
fn excerpt(body: &str) -> String {
    const LIMIT: usize = 1000;
    let body = body.trim();
    if body.is_empty() {
        return "(empty body)".to_string();
    }
    match body.char_indices().nth(LIMIT) {
        Some((end, _)) => format!("{}… ({} bytes in all)", &body[..end], body.len()),
        None => body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_get_a_trailing_slash() {
        let url = parse_base_url(URL_VAR, "http://127.0.0.1:8080/factory").unwrap();
        assert_eq!(
            join_url(&url, "api/jobs").unwrap().as_str(),
            "http://127.0.0.1:8080/factory/api/jobs"
        );
        let error = parse_base_url(URL_VAR, "ftp://x").unwrap_err().to_string();
        assert!(error.contains(URL_VAR) && error.contains("http"), "{error}");
        assert!(parse_base_url(URL_VAR, "https://x/?sig=1").is_err());
    }

    #[test]
    fn excerpts_are_short() {
        assert_eq!(excerpt("  "), "(empty body)");
        let long = "é".repeat(3000);
        let cut = excerpt(&long);
        assert!(cut.starts_with(&"é".repeat(1000)) && cut.ends_with("(6000 bytes in all)"));
    }
}
