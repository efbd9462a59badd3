//! Where Image Factory and its sign-in are, as `reconcile`, `submit`, `status`, `adopt`, `demo`
//! and `doctor` take them: one set of options, one client built from them.

use std::time::Duration;

use crate::factory::auth::{DEFAULT_AUTHORITY, TokenSource};
use crate::factory::wire::TokenVersion;
use crate::factory::{self, Credentials, FactoryClient, FactoryError, FactorySettings};
use crate::http::{RetryPolicy, Timeouts};

/// Where Image Factory and its sign-in are. People and pipelines give the credentials in the
/// environment only, never in flags.
#[derive(Debug, Clone)]
pub struct FactoryOptions {
    /// The service's base URL (`--factory-url`, `IMAGE_FACTORY_URL`).
    pub url: Option<String>,
    /// The Azure AD authority (`--authority`, `IMAGE_FACTORY_AUTHORITY`).
    pub authority: Option<String>,
    pub token_version: TokenVersion,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// Retries of a transient failure, after the first try.
    pub retries: u32,
    /// Requests in flight at once, at most (`--concurrency`).
    pub concurrency: usize,
    /// The identity to sign in with; `None` reads the `IMAGE_FACTORY_*` environment. Only the
    /// demo sets it, for the emulator it starts in-process.
    pub credentials: Option<Credentials>,
}

impl Default for FactoryOptions {
    fn default() -> Self {
        Self {
            url: None,
            authority: None,
            token_version: TokenVersion::default(),
            request_timeout: Timeouts::default().request,
            retries: RetryPolicy::default().max_attempts - 1,
            concurrency: usize::from(factory::DEFAULT_CONCURRENCY),
            credentials: None,
        }
    }
}

impl FactoryOptions {
    pub fn settings(&self) -> Result<FactorySettings, FactoryError> {
        let url = self.url.as_deref().ok_or(FactoryError::MissingUrl)?;
        let mut settings = FactorySettings::new(url, self.authority.as_deref())?;
        settings.token_version = self.token_version;
        settings.timeouts = self.timeouts();
        settings.retry = self.retry();
        settings.concurrency = self.concurrency;
        Ok(settings)
    }

    /// How long one request may take.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            request: self.request_timeout,
            ..Timeouts::default()
        }
    }

    /// How often a request is tried.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.retries + 1,
            ..RetryPolicy::default()
        }
    }

    /// The identity to sign in with: the one given, or else the `IMAGE_FACTORY_*` environment.
    pub fn credentials(&self) -> Result<Credentials, FactoryError> {
        match &self.credentials {
            Some(credentials) => Ok(credentials.clone()),
            None => Credentials::from_env(),
        }
    }

    /// The Azure AD sign-in alone, which needs no service URL (`imagegen doctor` checks it on
    /// its own).
    pub fn token_source(&self) -> Result<TokenSource, FactoryError> {
        let credentials = self.credentials()?;
        let authority = factory::parse_base_url(
            factory::AUTHORITY_VAR,
            self.authority.as_deref().unwrap_or(DEFAULT_AUTHORITY),
        )?;
        TokenSource::new(credentials, &authority, self.token_version)
    }

    /// A client, with every setting checked before anything goes over the network.
    pub fn client(&self) -> Result<FactoryClient, FactoryError> {
        // Missing credentials are named first, as before any URL: they are the usual cause.
        let credentials = self.credentials()?;
        FactoryClient::new(self.settings()?, credentials)
    }
}
