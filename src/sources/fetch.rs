//! The edge where sources are read: each document fetched over HTTP (retried on throttling and
//! transient failures, read up to the body limit), Resource Manager's pages followed with an
//! Azure AD token for its resource, and every failure named with the variable and the source.
//! What the documents mean is decided by the pure modules beside this one.

use reqwest::Url;

use super::marketplace::{self, ARM_RESOURCE, DEFAULT_ARM_URL};
use super::version::Candidate;
use super::{Source, VariableSource, channel, document};
use crate::factory::auth::{Credentials, DEFAULT_AUTHORITY, TokenSource};
use crate::factory::wire::TokenVersion;
use crate::http::{self, RetryPolicy, Timeouts};

/// The most pages of one versions list followed: far more than any SKU has.
const MAX_PAGES: usize = 100;

/// How sources are reached.
#[derive(Debug, Clone, Default)]
pub struct FetchSettings {
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
    /// URL prefixes replaced before a request: `(from, to)`, the first match wins.
    pub rewrites: Vec<(String, String)>,
    /// Resource Manager's base URL; [`DEFAULT_ARM_URL`] unless set.
    pub arm_url: Option<String>,
    /// The subscription for sources that name none.
    pub subscription: Option<String>,
    /// The Azure AD authority; [`DEFAULT_AUTHORITY`] unless set.
    pub authority: Option<String>,
    pub token_version: TokenVersion,
    /// The identity to sign in with; `None` reads the `IMAGE_FACTORY_*` environment.
    pub credentials: Option<Credentials>,
}

/// Reads `FROM=TO` rewrites, as the flag and the environment give them.
pub fn parse_rewrite(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((from, to)) if !from.is_empty() && !to.is_empty() => {
            Ok((from.to_string(), to.to_string()))
        }
        _ => Err(format!(
            "{text:?} is not a rewrite: write FROM=TO, such as https://aka.ms/=http://127.0.0.1:8080/"
        )),
    }
}

/// Why a source could not be read: the variable, the source, and what happened. Never holds a
/// token or a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{variable}: cannot read {source_name}: {reason}")]
pub struct FetchError {
    pub variable: String,
    pub source_name: String,
    pub reason: String,
}

/// Reads sources; the Resource Manager token is fetched once, when first needed.
pub struct Fetcher {
    documents: reqwest::Client,
    arm_http: reqwest::Client,
    settings: FetchSettings,
    arm_token: tokio::sync::OnceCell<Result<TokenSource, String>>,
}

impl Fetcher {
    pub fn new(settings: FetchSettings) -> Result<Self, reqwest::Error> {
        Ok(Self {
            documents: http::public_client(settings.timeouts)?,
            arm_http: http::client(settings.timeouts)?,
            settings,
            arm_token: tokio::sync::OnceCell::new(),
        })
    }

    /// `url` with the first matching rewrite applied.
    pub fn rewritten(&self, url: &str) -> String {
        self.settings
            .rewrites
            .iter()
            .find(|(from, _)| url.starts_with(from.as_str()))
            .map_or_else(
                || url.to_string(),
                |(from, to)| format!("{to}{}", &url[from.len()..]),
            )
    }

    /// Every version the variable's source offers now.
    pub async fn candidates(
        &self,
        variable: &VariableSource,
    ) -> Result<Vec<Candidate>, FetchError> {
        let fail = |reason: String| FetchError {
            variable: variable.name.clone(),
            source_name: variable.source.describe(),
            reason,
        };
        match &variable.source {
            Source::Channel {
                url,
                field,
                edition,
            } => {
                let text = self.get(&self.documents, url, None).await.map_err(fail)?;
                channel::release(&text, field, edition.as_deref())
                    .map(|found| vec![found])
                    .map_err(fail)
            }
            Source::Document { url, query } => {
                let text = self.get(&self.documents, url, None).await.map_err(fail)?;
                document::versions(&text, query).map_err(fail)
            }
            Source::Marketplace(sku) => self.marketplace(sku).await.map_err(fail),
        }
    }

    async fn marketplace(&self, sku: &marketplace::ImageSku) -> Result<Vec<Candidate>, String> {
        let subscription = sku.subscription.as_deref().or(self.settings.subscription.as_deref()).ok_or_else(|| {
            "no subscription to ask Resource Manager through: set IMAGEGEN_SUBSCRIPTION_ID or --subscription, or name one in the source".to_string()
        })?;
        let base = self.settings.arm_url.as_deref().unwrap_or(DEFAULT_ARM_URL);
        let base = Url::parse(&format!("{}/", base.trim_end_matches('/')))
            .map_err(|error| format!("the Resource Manager URL {base:?} is not a URL: {error}"))?;
        let first = base
            .join(&sku.versions_route(subscription))
            .map_err(|error| error.to_string())?;
        let token = self.arm_token().await?;
        let mut versions = Vec::new();
        let mut next = Some(first.to_string());
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(format!(
                    "Resource Manager gave more than {MAX_PAGES} pages; the list was not read to its end"
                ));
            }
            // The token goes only where Resource Manager is: a nextLink elsewhere is refused.
            let parsed = Url::parse(&url)
                .map_err(|error| format!("nextLink {url:?} is not a URL: {error}"))?;
            if parsed.origin() != base.origin() {
                return Err(format!(
                    "nextLink {} leads away from Resource Manager ({}); it was not followed",
                    shown_url(&parsed),
                    base.origin().ascii_serialization()
                ));
            }
            let access = token
                .token(&self.arm_http, &self.settings.retry, None)
                .await
                .map_err(|error| {
                    format!("signing in to Azure AD for {ARM_RESOURCE} failed: {error}")
                })?;
            let text = self
                .get(&self.arm_http, &url, Some(access.expose()))
                .await?;
            let page = marketplace::page(&text)?;
            versions.extend(page.versions);
            next = page.next_link;
        }
        if versions.is_empty() {
            return Err(format!(
                "Resource Manager lists no version of {}: check the publisher, offer, SKU and location (`az vm image list --all --publisher {} --offer {} --sku {} --location {}`)",
                sku.describe(),
                sku.publisher,
                sku.offer,
                sku.sku,
                sku.location
            ));
        }
        Ok(versions)
    }

    async fn arm_token(&self) -> Result<&TokenSource, String> {
        let source = self
            .arm_token
            .get_or_init(|| async {
                let credentials = match &self.settings.credentials {
                    Some(credentials) => credentials.clone().for_resource(ARM_RESOURCE),
                    None => Credentials::from_env_for(ARM_RESOURCE)
                        .map_err(|error| error.to_string())?,
                };
                let authority = self
                    .settings
                    .authority
                    .as_deref()
                    .unwrap_or(DEFAULT_AUTHORITY);
                let authority =
                    crate::factory::parse_base_url(crate::factory::AUTHORITY_VAR, authority)
                        .map_err(|error| error.to_string())?;
                TokenSource::new(credentials, &authority, self.settings.token_version)
                    .map_err(|error| error.to_string())
            })
            .await;
        source.as_ref().map_err(Clone::clone)
    }

    /// The text at `url` (rewritten), or what went wrong in words.
    async fn get(
        &self,
        client: &reqwest::Client,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<String, String> {
        let target = self.rewritten(url);
        let parsed =
            Url::parse(&target).map_err(|error| format!("{target:?} is not a URL: {error}"))?;
        let shown = shown_url(&parsed);
        let sent = http::send(&self.settings.retry, &format!("GET {shown}"), || {
            let request = client
                .get(parsed.clone())
                .header(reqwest::header::ACCEPT, "application/json");
            match bearer {
                Some(token) => request.bearer_auth(token),
                None => request,
            }
        })
        .await;
        let tries = match sent.attempts {
            1 => String::new(),
            n => format!(" (after {n} tries)"),
        };
        let response = sent
            .result
            .map_err(|error| format!("GET {shown}: {}{tries}", http::error_summary(&error)))?;
        let status = response.status();
        let waited = http::retry_after(&response);
        let body = http::read_text(response, http::MAX_BODY_BYTES)
            .await
            .map_err(|error| format!("GET {shown}: {error}"))?;
        if !status.is_success() {
            let hint = match status.as_u16() {
                401 | 403 => match bearer {
                    Some(_) => {
                        "; the identity needs the Reader role on the subscription (see docs/pipeline.md)"
                    }
                    None => "; the document is not public",
                },
                429 => "; it is throttling: run again later",
                _ => "",
            };
            let asked = waited
                .map(|wait| format!(", asking to wait {}", crate::duration::display(wait)))
                .unwrap_or_default();
            return Err(format!(
                "GET {shown} answered {status}{asked}{tries}: {}{hint}",
                excerpt(&body)
            ));
        }
        Ok(body)
    }
}

/// A URL as messages show it: without credentials or query (a signed URL carries its secret
/// in the query).
fn shown_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.to_string()
}

/// The start of an answer, for a message.
fn excerpt(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return "(empty body)".to_string();
    }
    crate::output::shown_within(body, 300).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_replace_the_first_matching_prefix() {
        let fetcher = Fetcher::new(FetchSettings {
            rewrites: vec![parse_rewrite("https://aka.ms/=http://127.0.0.1:9/aka/").unwrap()],
            ..FetchSettings::default()
        })
        .unwrap();
        assert_eq!(
            fetcher.rewritten("https://aka.ms/vs/17/release/channel"),
            "http://127.0.0.1:9/aka/vs/17/release/channel"
        );
        assert_eq!(
            fetcher.rewritten("https://other.test/x"),
            "https://other.test/x"
        );
        assert!(parse_rewrite("nothing").is_err());
    }
}
