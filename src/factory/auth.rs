//! Azure AD client credentials for Image Factory: the four settings from the environment, held
//! so they never print, and a token cache that asks for a new token only when it must.

use std::time::Duration;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::FactoryError;
use super::wire::{TokenErrorResponse, TokenResponse, TokenVersion};
use crate::http::{self, RetryPolicy};

pub const TENANT_ID_VAR: &str = "IMAGE_FACTORY_TENANT_ID";
pub const CLIENT_ID_VAR: &str = "IMAGE_FACTORY_CLIENT_ID";
pub const CLIENT_SECRET_VAR: &str = "IMAGE_FACTORY_CLIENT_SECRET";
pub const RESOURCE_ID_VAR: &str = "IMAGE_FACTORY_RESOURCE_ID";

/// Where tokens come from unless `IMAGE_FACTORY_AUTHORITY` or `--authority` says otherwise.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The application identity imagegen signs in with.
#[derive(Clone)]
pub struct Credentials {
    pub tenant_id: String,
    pub client_id: String,
    client_secret: SecretString,
    /// The service's application id URI; the token is asked for this resource.
    pub resource_id: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[hidden]")
            .field("resource_id", &self.resource_id)
            .finish()
    }
}

impl Credentials {
    pub fn new(
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
        resource_id: impl Into<String>,
    ) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            client_secret,
            resource_id: resource_id.into(),
        }
    }

    /// Reads the four settings from the process environment.
    pub fn from_env() -> Result<Self, FactoryError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the four settings through `lookup`; every missing or empty one is named in one
    /// error, before anything is sent anywhere.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, FactoryError> {
        let mut missing = Vec::new();
        let mut read = |name: &'static str| {
            let value = lookup(name)
                .map(|value| value.trim().to_string())
                .unwrap_or_default();
            if value.is_empty() {
                missing.push(name);
            }
            value
        };
        let tenant_id = read(TENANT_ID_VAR);
        let client_id = read(CLIENT_ID_VAR);
        let client_secret = read(CLIENT_SECRET_VAR);
        let resource_id = read(RESOURCE_ID_VAR);
        if !missing.is_empty() {
            return Err(FactoryError::MissingCredentials { names: missing });
        }
        Ok(Self::new(
            tenant_id,
            client_id,
            SecretString::from(client_secret),
            resource_id,
        ))
    }
}

impl Credentials {
    /// The same identity, signing in for another resource (Resource Manager, for the
    /// variables' sources): the tenant, client and secret settings, with `resource` in place of
    /// `IMAGE_FACTORY_RESOURCE_ID`, which is then not needed.
    pub fn from_env_for(resource: &str) -> Result<Self, FactoryError> {
        Self::from_lookup(|name| match name {
            RESOURCE_ID_VAR => Some(resource.to_string()),
            _ => std::env::var(name).ok(),
        })
    }

    /// These credentials, asking for tokens for `resource` instead.
    pub fn for_resource(mut self, resource: &str) -> Self {
        self.resource_id = resource.to_string();
        self
    }
}

/// A bearer token and when to stop using it.
#[derive(Clone)]
pub struct AccessToken {
    secret: SecretString,
    /// Counts the tokens this cache fetched, so a 401 renews only the token that failed.
    pub generation: u64,
    renew_at: Instant,
}

impl AccessToken {
    pub fn expose(&self) -> &str {
        self.secret.expose_secret()
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Fetches tokens and keeps the current one until shortly before it expires. Requests made at
/// once share one fetch.
pub struct TokenSource {
    credentials: Credentials,
    token_url: Url,
    version: TokenVersion,
    current: Mutex<Option<AccessToken>>,
    fetched: std::sync::atomic::AtomicU64,
}

impl TokenSource {
    pub fn new(
        credentials: Credentials,
        authority: &Url,
        version: TokenVersion,
    ) -> Result<Self, FactoryError> {
        let token_url = super::join_url(authority, &version.route(&credentials.tenant_id))?;
        Ok(Self {
            credentials,
            token_url,
            version,
            current: Mutex::new(None),
            fetched: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn token_url(&self) -> &Url {
        &self.token_url
    }

    pub fn client_id(&self) -> &str {
        &self.credentials.client_id
    }

    /// How many tokens were fetched so far.
    pub fn fetch_count(&self) -> u64 {
        self.fetched.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A token that is still good; `rejected` names the generation the service just refused,
    /// which is then replaced (unless another request replaced it already).
    pub async fn token(
        &self,
        http: &reqwest::Client,
        retry: &RetryPolicy,
        rejected: Option<u64>,
    ) -> Result<AccessToken, FactoryError> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref() {
            let refused = rejected == Some(token.generation);
            if !refused && Instant::now() < token.renew_at {
                return Ok(token.clone());
            }
        }
        let generation = current.as_ref().map_or(0, |token| token.generation) + 1;
        let token = self.fetch(http, retry, generation).await?;
        *current = Some(token.clone());
        Ok(token)
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        retry: &RetryPolicy,
        generation: u64,
    ) -> Result<AccessToken, FactoryError> {
        let credentials = &self.credentials;
        let mut form = vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", credentials.client_id.clone()),
            (
                "client_secret",
                credentials.client_secret.expose_secret().to_string(),
            ),
        ];
        match self.version {
            TokenVersion::V2 => form.push(("scope", TokenVersion::scope(&credentials.resource_id))),
            TokenVersion::V1 => form.push(("resource", credentials.resource_id.clone())),
        }
        tracing::debug!(url = %self.token_url, client_id = %credentials.client_id, "asking Azure AD for a token");
        let sent = http::send(retry, "token request", || {
            http.post(self.token_url.clone()).form(&form)
        })
        .await;
        self.fetched
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let response = sent.result.map_err(|source| FactoryError::Transport {
            method: "POST",
            url: self.token_url.to_string(),
            attempts: sent.attempts,
            source,
        })?;
        if let Some(error) = super::redirect_refused("POST", &self.token_url, &response) {
            return Err(error);
        }
        let status = response.status();
        let body = http::read_text(response, http::MAX_BODY_BYTES)
            .await
            .map_err(|error| FactoryError::body("POST", &self.token_url, sent.attempts, error))?;
        if !status.is_success() {
            let refusal: TokenErrorResponse = serde_json::from_str(&body).unwrap_or_default();
            return Err(FactoryError::Token {
                url: self.token_url.to_string(),
                client_id: credentials.client_id.clone(),
                status: status.as_u16(),
                error: refusal.error,
                description: if refusal.error_description.is_empty() {
                    super::excerpt(&body)
                } else {
                    refusal.error_description
                },
            });
        }
        let token: TokenResponse =
            serde_json::from_str(&body).map_err(|source| FactoryError::Decode {
                url: self.token_url.to_string(),
                // The body holds the token itself: it must not reach the error.
                body: String::from("(the token response, not shown)"),
                source,
            })?;
        let lifetime = Duration::from_secs(token.expires_in);
        tracing::debug!(lifetime = ?lifetime, generation, "got a token");
        Ok(AccessToken {
            secret: SecretString::from(token.access_token),
            generation,
            renew_at: Instant::now() + lifetime.saturating_sub(renewal_margin(lifetime)),
        })
    }
}

/// How long before expiry a token is renewed: five minutes, or a tenth of a short lifetime.
fn renewal_margin(lifetime: Duration) -> Duration {
    Duration::from_secs(300).min(lifetime / 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_setting_is_named_at_once() {
        let error =
            Credentials::from_lookup(|name| (name == CLIENT_ID_VAR).then(|| "client".to_string()))
                .unwrap_err();
        let message = error.to_string();
        for name in [TENANT_ID_VAR, CLIENT_SECRET_VAR, RESOURCE_ID_VAR] {
            assert!(message.contains(name), "{message}");
        }
        assert!(!message.contains(CLIENT_ID_VAR), "{message}");
    }

    #[test]
    fn credentials_never_print_their_secret() {
        let credentials =
            Credentials::new("t", "c", SecretString::from("canary-secret"), "api://r");
        assert!(!format!("{credentials:?}").contains("canary"));
    }

    #[test]
    fn renewal_leaves_a_margin() {
        assert_eq!(
            renewal_margin(Duration::from_secs(3599)),
            Duration::from_secs(300)
        );
        assert_eq!(
            renewal_margin(Duration::from_secs(60)),
            Duration::from_secs(6)
        );
    }
}
