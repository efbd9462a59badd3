//! The checks of `imagegen doctor`: each outside system a run depends on (Azure AD, Image
//! Factory, the ledger, OSOB and the pull-request provider) is asked, with the settings a run
//! would use, whether it will let the run through, and nothing is changed on any of them. Each
//! check comes out as a [`Check`], plain data the command prints as text or JSON.
//!
//! Every check runs whatever the others found, under its own time limit; a check that needs
//! what an earlier one could not give (the base branch, once OSOB did not answer) says so as
//! skipped rather than failing twice for one cause.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::catalog::Catalog;
use crate::commands::factory_options::FactoryOptions;
use crate::duration;
use crate::factory::auth::{CLIENT_ID_VAR, CLIENT_SECRET_VAR, RESOURCE_ID_VAR, TENANT_ID_VAR};
use crate::factory::client::{NO_SUCH_JOB, status_without_token};
use crate::factory::{AUTHORITY_VAR, FactoryError, TOKEN_VERSION_VAR, URL_VAR};
use crate::osob::mapping::{MAPPING_FILE, Mapping, Provider};
use crate::osob::publish::{self, Assume};
use crate::osob::workspace::Workspace;
use crate::pull_request::{PrClient, PrError};
use crate::state::blob::{NEEDED_PERMISSIONS, SAS_VAR, STATE_VAR};
use crate::state::{Ledger, Rewrite, StateError, Store};

pub const AZURE_AD: &str = "azure-ad";
pub const IMAGE_FACTORY: &str = "image-factory";
pub const LEDGER: &str = "ledger";
pub const LEDGER_WRITE: &str = "ledger-write";
pub const SAS_EXPIRY: &str = "ledger-sas-expiry";
pub const SAS_PERMISSIONS: &str = "ledger-sas-permissions";
pub const OSOB_REPOSITORY: &str = "osob-repository";
pub const OSOB_BASE_BRANCH: &str = "osob-base-branch";
pub const OSOB_FILES: &str = "osob-files";
pub const PR_PROVIDER: &str = "pr-provider";

/// A SAS that ends sooner than this is a warning: a pipeline runs hourly, and a person needs
/// time to have a new one issued and stored before runs start failing.
pub const SAS_WARNING_DAYS: i64 = 14;

/// How long the write check waits for a run holding a file ledger's lock.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    /// Passes, but something will need a person (a SAS expiring soon, a missing ledger off CI).
    Warn,
    Fail,
    /// Not checked, since it needs what a failed check could not give.
    Skip,
}

/// One check's result: what was found, and what to do about it. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            outcome: Outcome::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            outcome: Outcome::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            outcome: Outcome::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn skip(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            outcome: Outcome::Skip,
            detail: detail.into(),
            fix: None,
        }
    }

    fn timed_out(name: &'static str, what: &str, limit: Duration) -> Self {
        Self::fail(
            name,
            format!("{what} gave no answer within {}", duration::display(limit)),
            "check the network, a proxy and the address; a slow service may need a longer \
             --timeout",
        )
    }
}

/// What the checks are given: the settings a run would use, read already.
pub struct Settings {
    pub repo: PathBuf,
    /// The ledger, or why `--state` / `IMAGEGEN_STATE` names none that can be used.
    pub store: Result<Store, String>,
    /// A missing ledger fails its check (on a CI platform, where it means a wrong setting)
    /// rather than warning.
    pub missing_ledger_fails: bool,
    pub factory: FactoryOptions,
    pub catalog: Arc<Catalog>,
    /// The OSOB mapping, or why there is none to use.
    pub mapping: Result<Mapping, String>,
    /// `--osob-url` / `IMAGEGEN_OSOB_URL`.
    pub osob_url: Option<String>,
    /// How long each check may take.
    pub timeout: Duration,
}

/// Runs every check, the independent ones at once, and returns them in a fixed order: Image
/// Factory's, the ledger's, OSOB's, then the pull-request provider's.
pub async fn run(settings: Arc<Settings>) -> Vec<Check> {
    let (factory, ledger, osob, pr) = tokio::join!(
        factory_checks(&settings),
        ledger_checks(&settings),
        osob_checks(settings.clone()),
        pr_check(&settings),
    );
    let mut checks: Vec<Check> = factory.into_iter().chain(ledger).chain(osob).collect();
    checks.push(pr);
    checks
}

/// `future`'s output, or `None` once `limit` has passed.
async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(limit, future).await.ok()
}

// ---------------------------------------------------------------------------------------------
// Azure AD and Image Factory

async fn factory_checks(settings: &Settings) -> [Check; 2] {
    [
        azure_ad(&settings.factory, settings.timeout).await,
        image_factory(&settings.factory, settings.timeout).await,
    ]
}

async fn azure_ad(options: &FactoryOptions, limit: Duration) -> Check {
    let fail = |error: &FactoryError| Check::fail(AZURE_AD, error.to_string(), sign_in_fix(error));
    let (source, credentials) = match (options.token_source(), options.credentials()) {
        (Ok(source), Ok(credentials)) => (source, credentials),
        (Err(error), _) | (_, Err(error)) => return fail(&error),
    };
    let http = match crate::http::client(options.timeouts()) {
        Ok(http) => http,
        Err(error) => return fail(&FactoryError::Client(error)),
    };
    match within(limit, source.token(&http, &options.retry(), None)).await {
        Some(Ok(_)) => Check::pass(
            AZURE_AD,
            format!(
                "Azure AD issued a token for {} to client id {} ({})",
                credentials.resource_id,
                credentials.client_id,
                source.token_url()
            ),
        ),
        Some(Err(error)) => fail(&error),
        None => Check::timed_out(
            AZURE_AD,
            &format!("Azure AD at {}", source.token_url()),
            limit,
        ),
    }
}

/// What to do when Azure AD issues no token.
fn sign_in_fix(error: &FactoryError) -> String {
    match error {
        FactoryError::MissingCredentials { names } => format!(
            "set {}; in a pipeline, map them from the key vault's variable group into the \
             step's environment",
            names.join(", ")
        ),
        FactoryError::BadUrl { name, .. } => {
            format!("fix {name}: an https URL such as https://login.microsoftonline.com")
        }
        FactoryError::Token { error, .. } => match error.as_str() {
            "invalid_client" | "unauthorized_client" => format!(
                "check {CLIENT_SECRET_VAR} and {CLIENT_ID_VAR}: the secret may be mistyped, \
                 expired or rotated. Issue a new one in the app registration and store it in the \
                 key vault secret image-factory-client-secret"
            ),
            "invalid_tenant" | "invalid_request" => {
                format!("check {TENANT_ID_VAR}: it must be the tenant of the app registration")
            }
            "invalid_resource" | "invalid_scope" => format!(
                "check {RESOURCE_ID_VAR}: it must be Image Factory's application id URI; if \
                 that is registered for v1 tokens only, set {TOKEN_VERSION_VAR}=v1"
            ),
            _ => format!(
                "check {TENANT_ID_VAR}, {CLIENT_ID_VAR}, {CLIENT_SECRET_VAR} and \
                 {RESOURCE_ID_VAR} against the app registration"
            ),
        },
        FactoryError::Redirect { .. } => {
            format!("set {AUTHORITY_VAR} to the address Azure AD answers at itself")
        }
        FactoryError::Status { .. } => {
            "Azure AD is failing or throttling: run again later".to_string()
        }
        _ => format!(
            "check {AUTHORITY_VAR} (default https://login.microsoftonline.com), the network and \
             any proxy"
        ),
    }
}

async fn image_factory(options: &FactoryOptions, limit: Duration) -> Check {
    let settings = match options.settings() {
        Ok(settings) => settings,
        Err(error) => {
            return Check::fail(IMAGE_FACTORY, error.to_string(), service_fix(&error));
        }
    };
    let client = match options.client() {
        Ok(client) => client,
        Err(error) => return without_token(&settings, &error, limit).await,
    };
    let url = settings.job_url(NO_SUCH_JOB);
    let token_url = options
        .token_source()
        .map(|source| source.token_url().to_string())
        .unwrap_or_default();
    match within(limit, client.job(NO_SUCH_JOB)).await {
        Some(Err(FactoryError::NotFound { .. })) => Check::pass(
            IMAGE_FACTORY,
            format!(
                "{} answers and accepts the token: job {NO_SUCH_JOB}, which cannot exist, \
                 answered 404 as the contract says",
                settings.base_url
            ),
        ),
        Some(Ok(_)) => Check::fail(
            IMAGE_FACTORY,
            format!(
                "GET {url} answered a job for {NO_SUCH_JOB}, an id no job has: the service \
                 there does not speak Image Factory's contract"
            ),
            format!("check {URL_VAR} (--factory-url)"),
        ),
        Some(Err(error)) if from_sign_in(&error, &token_url) => {
            without_token(&settings, &error, limit).await
        }
        Some(Err(error)) => Check::fail(IMAGE_FACTORY, error.to_string(), service_fix(&error)),
        None => Check::timed_out(IMAGE_FACTORY, &format!("GET {url}"), limit),
    }
}

/// Whether `error` came from Azure AD rather than from the service: the request never reached
/// the service then.
fn from_sign_in(error: &FactoryError, token_url: &str) -> bool {
    match error {
        FactoryError::Token { .. } | FactoryError::MissingCredentials { .. } => true,
        FactoryError::Transport { url, .. }
        | FactoryError::Redirect { url, .. }
        | FactoryError::Status { url, .. }
        | FactoryError::Decode { url, .. } => url == token_url,
        _ => false,
    }
}

/// The service asked without a token, since there is none: its answer shows whether it is
/// reachable, though not whether it would accept imagegen's token.
async fn without_token(
    settings: &crate::factory::FactorySettings,
    no_token: &FactoryError,
    limit: Duration,
) -> Check {
    let url = settings.job_url(NO_SUCH_JOB);
    match within(limit, status_without_token(settings)).await {
        Some(Ok(status)) => Check::warn(
            IMAGE_FACTORY,
            format!(
                "{} answers (GET {url} without a token answered {}), but whether it accepts \
                 imagegen's token is not known: there is no token ({})",
                settings.base_url,
                status.as_u16(),
                short_reason(no_token)
            ),
            format!("fix {AZURE_AD} first, then run imagegen doctor again"),
        ),
        Some(Err(error)) => Check::fail(
            IMAGE_FACTORY,
            format!("{error}; there is no token to ask with either (see {AZURE_AD})"),
            service_fix(&error),
        ),
        None => Check::timed_out(IMAGE_FACTORY, &format!("GET {url}"), limit),
    }
}

/// Why there is no token, in a few words (the whole story is the Azure AD check's).
fn short_reason(error: &FactoryError) -> String {
    match error {
        FactoryError::MissingCredentials { names } => format!("{} not set", names.join(", ")),
        FactoryError::Token { status, error, .. } => {
            format!("Azure AD refused it: {status} {error}; see {AZURE_AD}")
        }
        _ => format!("see {AZURE_AD}"),
    }
}

/// What to do when Image Factory does not answer as the contract says.
fn service_fix(error: &FactoryError) -> String {
    match error {
        FactoryError::MissingUrl => format!("set {URL_VAR} or pass --factory-url"),
        FactoryError::BadUrl { name, .. } => format!("fix {name}: an http(s) URL"),
        FactoryError::Unauthorized { .. } => format!(
            "the token is for another resource: check {RESOURCE_ID_VAR} against Image Factory's \
             application id URI (ask the Image Factory team)"
        ),
        FactoryError::Forbidden { client_id, .. } => {
            format!("ask the Image Factory team to allow client id {client_id}")
        }
        FactoryError::Status { status, .. } if *status == 429 || *status >= 500 => {
            "the service is failing or throttling: run again later (docs/first-responder.md, \
             \"When Image Factory is down\")"
                .to_string()
        }
        FactoryError::Status { status, .. } => format!(
            "check {URL_VAR}: Image Factory answers 404 for a job it does not know, not {status}"
        ),
        FactoryError::Redirect { .. } => {
            format!("set {URL_VAR} to the address the service answers at itself")
        }
        FactoryError::Decode { .. } => format!(
            "check {URL_VAR}: it answered something that is not the contract's JSON (a sign-in \
             page, a proxy?)"
        ),
        _ => format!(
            "check {URL_VAR}, the network and any proxy; the service may be down \
             (docs/first-responder.md, \"When Image Factory is down\")"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The ledger

async fn ledger_checks(settings: &Settings) -> Vec<Check> {
    let limit = settings.timeout;
    let store = match &settings.store {
        Ok(store) => store,
        Err(reason) => {
            return vec![
                Check::fail(LEDGER, reason.clone(), ledger_setting_fix()),
                Check::skip(LEDGER_WRITE, "not tried: there is no ledger to write"),
            ];
        }
    };
    let location = store.describe();
    let mut checks = Vec::new();
    let read = within(limit, store.read_existing()).await;
    checks.push(match &read {
        Some(Ok(Some(ledger))) => Check::pass(LEDGER, read_detail(&location, ledger)),
        Some(Ok(None)) => missing_ledger(&location, settings.missing_ledger_fails),
        Some(Err(error)) => Check::fail(LEDGER, error.to_string(), ledger_fix(error)),
        None => Check::timed_out(LEDGER, &format!("reading the ledger {location}"), limit),
    });
    checks.push(match read {
        Some(Ok(Some(_))) => {
            let rewritten = within(limit, store.rewrite_unchanged(LOCK_WAIT, "imagegen doctor"));
            write_check(store, rewritten.await, limit)
        }
        Some(Ok(None)) => Check::skip(
            LEDGER_WRITE,
            "not tried: there is no ledger to save unchanged, and imagegen doctor creates none",
        ),
        _ => Check::skip(LEDGER_WRITE, "not tried: the ledger could not be read"),
    });
    if let Store::Blob(blob) = store {
        checks.extend(sas_checks(&blob.sas_terms(), jiff::Timestamp::now()));
    }
    checks
}

fn read_detail(location: &str, ledger: &Ledger) -> String {
    let entries = ledger.definitions.len() + ledger.manual.len();
    let pending = ledger
        .entries()
        .filter(|(_, entry)| entry.status.is_pending())
        .count();
    format!(
        "{location} reads: {entries} {} ({pending} pending)",
        if entries == 1 { "entry" } else { "entries" }
    )
}

fn missing_ledger(location: &str, fails: bool) -> Check {
    let detail = format!(
        "{location} does not exist yet: a run would start an empty ledger there and submit every \
         definition as never submitted"
    );
    if fails {
        Check::fail(
            LEDGER,
            detail,
            format!(
                "check {STATE_VAR}: on a CI platform a missing ledger means a wrong setting. For \
                 the very first rollout, imagegen adopt records today's images and starts it"
            ),
        )
    } else {
        Check::warn(
            LEDGER,
            detail,
            format!(
                "nothing, if no run has used this ledger yet; otherwise point --state or \
                 {STATE_VAR} at the ledger the pipeline uses"
            ),
        )
    }
}

fn write_check(
    store: &Store,
    rewritten: Option<Result<Rewrite, StateError>>,
    limit: Duration,
) -> Check {
    let guard = match store {
        Store::File(_) => "under its run lock",
        Store::Blob(_) => "under its ETag (If-Match)",
    };
    match rewritten {
        Some(Ok(Rewrite::Unchanged { bytes })) => Check::pass(
            LEDGER_WRITE,
            format!(
                "saved unchanged {guard}, on the condition that it still held what was read, \
                 and read back byte for byte the same ({bytes} bytes)"
            ),
        ),
        Some(Ok(Rewrite::ChangedAfter)) => Check::pass(
            LEDGER_WRITE,
            format!(
                "saved unchanged {guard}; another run wrote it right after, so it reads back \
                 with that run's change"
            ),
        ),
        Some(Ok(Rewrite::NotAsWritten)) => Check::warn(
            LEDGER_WRITE,
            "not tried: the ledger's text is not what imagegen writes (edited by hand?), so \
             saving it would change its bytes",
            "nothing, if the edit was meant: the next run that records a change writes it in \
             imagegen's form",
        ),
        Some(Ok(Rewrite::Missing)) => Check::skip(
            LEDGER_WRITE,
            "not tried: the ledger disappeared while it was checked",
        ),
        Some(Err(error @ StateError::Locked { .. })) => Check::warn(
            LEDGER_WRITE,
            format!("not tried: {error}"),
            "nothing: a run after it waits for the lock (--lock-timeout); run imagegen doctor \
             again to test writing",
        ),
        Some(Err(error @ StateError::Conflict { .. })) => Check::warn(
            LEDGER_WRITE,
            format!(
                "another run wrote the ledger during the check, and nothing was overwritten: {error}"
            ),
            "run imagegen doctor again",
        ),
        Some(Err(error)) => Check::fail(LEDGER_WRITE, error.to_string(), ledger_fix(&error)),
        None => Check::timed_out(
            LEDGER_WRITE,
            &format!("saving the ledger {}", store.describe()),
            limit,
        ),
    }
}

fn ledger_setting_fix() -> String {
    format!(
        "fix --state / {STATE_VAR} (and {SAS_VAR} for a blob URL without a query); see \
         docs/ledger.md"
    )
}

fn renew_sas() -> String {
    format!(
        "issue a new SAS for the ledger's container with {NEEDED_PERMISSIONS} and a later \
         expiry, and store it in the pipeline's secret {SAS_VAR} (or as {STATE_VAR}'s query)"
    )
}

/// What to do when the ledger cannot be read or written.
fn ledger_fix(error: &StateError) -> String {
    use crate::state::blob::BlobError;
    match error {
        StateError::Blob(BlobError::Refused { .. }) => renew_sas(),
        StateError::Blob(BlobError::ContainerMissing { container, .. }) => format!(
            "create the container {container} once, or fix the container's name in {STATE_VAR}"
        ),
        StateError::Blob(BlobError::Transport { .. } | BlobError::Status { .. }) => {
            format!("check the account and container in {STATE_VAR}, and the network")
        }
        StateError::Blob(_) => ledger_setting_fix(),
        StateError::Parse { .. } => "restore the ledger from a backup or the pipeline's copy; \
             never delete it, or every definition is planned again"
            .to_string(),
        StateError::UnsupportedVersion { .. } => "use the newer imagegen that wrote it".to_string(),
        _ => format!("check the path (--state, {STATE_VAR}), its permissions and free space"),
    }
}

/// The checks a blob ledger's SAS allows from its own terms, at `now`.
pub fn sas_checks(terms: &crate::state::blob::SasTerms, now: jiff::Timestamp) -> [Check; 2] {
    let policy = terms.policy.as_deref();
    let expiry = match (terms.expires_at(), policy) {
        (Some(Ok(expires)), _) => {
            let left = now.duration_until(expires);
            let days = left.as_secs() / 86_400;
            let when = expires.strftime("%Y-%m-%d %H:%M UTC");
            if left.is_negative() || left.is_zero() {
                Check::fail(
                    SAS_EXPIRY,
                    format!(
                        "the SAS expired on {when}: Azure Storage refuses every request with it"
                    ),
                    renew_sas(),
                )
            } else if days < SAS_WARNING_DAYS {
                Check::warn(
                    SAS_EXPIRY,
                    format!(
                        "the SAS expires on {when}, in {}: every run after that fails",
                        day_count(left)
                    ),
                    renew_sas(),
                )
            } else {
                Check::pass(
                    SAS_EXPIRY,
                    format!("the SAS expires on {when}, in {days} days"),
                )
            }
        }
        (Some(Err(reason)), _) => Check::fail(SAS_EXPIRY, reason, renew_sas()),
        (None, Some(policy)) => Check::warn(
            SAS_EXPIRY,
            format!(
                "the SAS names no expiry: it takes it from the stored access policy {policy}, \
                 which imagegen cannot see"
            ),
            format!("check when the policy {policy} of the ledger's container expires"),
        ),
        (None, None) => Check::fail(
            SAS_EXPIRY,
            "the SAS names no expiry (se=) and no stored access policy (si=): Azure Storage \
             refuses it",
            renew_sas(),
        ),
    };
    let permissions = match (terms.missing_permissions(), policy) {
        (Some(missing), _) if missing.is_empty() => Check::pass(
            SAS_PERMISSIONS,
            format!(
                "sp={} allows read, create and write, as the ledger needs",
                terms.permissions.as_deref().unwrap_or_default()
            ),
        ),
        (Some(missing), _) => Check::fail(
            SAS_PERMISSIONS,
            format!(
                "sp={} lacks {}: the ledger needs {NEEDED_PERMISSIONS}",
                terms.permissions.as_deref().unwrap_or_default(),
                missing.join(" and ")
            ),
            renew_sas(),
        ),
        (None, Some(policy)) => Check::warn(
            SAS_PERMISSIONS,
            format!(
                "the SAS names no permissions: it takes them from the stored access policy \
                 {policy}, which imagegen cannot see ({LEDGER_WRITE} tests writing)"
            ),
            format!("check that the policy {policy} allows {NEEDED_PERMISSIONS}"),
        ),
        (None, None) => Check::fail(
            SAS_PERMISSIONS,
            "the SAS names no permissions (sp=) and no stored access policy (si=)",
            renew_sas(),
        ),
    };
    [expiry, permissions]
}

/// `3 days`, `1 day`, or hours or minutes when less than a day is left.
fn day_count(left: jiff::SignedDuration) -> String {
    let seconds = left.as_secs();
    match seconds / 86_400 {
        0 if seconds < 3600 => format!("{} minutes", seconds / 60),
        0 => format!("{} hours", seconds / 3600),
        1 => "1 day".to_string(),
        days => format!("{days} days"),
    }
}

// ---------------------------------------------------------------------------------------------
// OSOB

async fn osob_checks(settings: Arc<Settings>) -> Vec<Check> {
    let names = OSOB_CHECKS;
    let limit = settings.timeout;
    // The ledger's old values help the patterns find names written with them; without it the
    // current values alone are tried, and the ledger's own checks say why it is missing.
    let ledger = match &settings.store {
        Ok(store) => within(limit, store.read())
            .await
            .and_then(Result::ok)
            .unwrap_or_default(),
        Err(_) => Ledger::default(),
    };
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
    let working = settings.clone();
    // git2 blocks: the checks run on a thread of their own and report one by one, so that each
    // gets its own time limit and a hung connection stops only what waits for it.
    tokio::task::spawn_blocking(move || {
        osob_blocking(&working, &ledger, &mut |check| {
            let _ = sender.send(check);
        });
    });
    let mut checks = Vec::new();
    for (index, name) in names.into_iter().enumerate() {
        match within(limit, received.recv()).await {
            Some(Some(check)) => checks.push(check),
            Some(None) => checks.push(Check::fail(
                name,
                "the check stopped without an answer",
                "run imagegen doctor again with -vv, and report it with the output",
            )),
            None => {
                checks.push(Check::timed_out(name, "the OSOB repository", limit));
                for later in &names[index + 1..] {
                    checks.push(Check::skip(
                        later,
                        format!("not checked: {name} gave no answer in time"),
                    ));
                }
                break;
            }
        }
    }
    checks
}

const OSOB_CHECKS: [&str; 3] = [OSOB_REPOSITORY, OSOB_BASE_BRANCH, OSOB_FILES];

/// Reports the OSOB checks after `after` as skipped, for `why`.
fn skip_rest(report: &mut dyn FnMut(Check), after: &'static str, why: &str) {
    let from = OSOB_CHECKS
        .iter()
        .position(|name| *name == after)
        .unwrap_or(0)
        + 1;
    for name in &OSOB_CHECKS[from..] {
        report(Check::skip(name, format!("not checked: {why}")));
    }
}

/// The OSOB checks in order, each handed to `report` as it ends.
fn osob_blocking(settings: &Settings, ledger: &Ledger, report: &mut dyn FnMut(Check)) {
    let mapping = match &settings.mapping {
        Ok(mapping) => mapping,
        Err(reason) => {
            report(Check::fail(OSOB_REPOSITORY, reason.clone(), mapping_fix()));
            skip_rest(report, OSOB_REPOSITORY, "there is no usable mapping");
            return;
        }
    };
    let url = publish::osob_url(mapping, settings.osob_url.as_deref());
    let auth = publish::git_auth(&url, &mapping.provider);
    let with_token = auth.is_some();
    let workspace = match Workspace::open(&publish::cache_path(&settings.repo), &url, auth) {
        Ok(workspace) => workspace,
        Err(error) => {
            report(Check::fail(
                OSOB_REPOSITORY,
                error.to_string(),
                "imagegen's cache of OSOB is damaged or its folder is not writable: delete \
                 .imagegen/osob-cache.git (it is fetched again)",
            ));
            skip_rest(report, OSOB_REPOSITORY, "the OSOB cache cannot be used");
            return;
        }
    };
    let shown = workspace.url();
    let refs = match workspace.remote_refs() {
        Ok(refs) => refs,
        Err(error) => {
            report(Check::fail(
                OSOB_REPOSITORY,
                error.to_string(),
                reach_fix(&url, with_token, &mapping.provider),
            ));
            skip_rest(
                report,
                OSOB_REPOSITORY,
                "the OSOB repository did not answer",
            );
            return;
        }
    };
    report(reached_check(&shown, with_token, &refs));
    let branches = branches_check(&shown, &mapping.repository, &refs);
    if branches.outcome == Outcome::Fail {
        report(branches);
        skip_rest(report, OSOB_BASE_BRANCH, "the base branch does not exist");
        return;
    }
    report(branches);
    report(files_check(settings, mapping, ledger, &workspace));
}

/// The branch names among a repository's refs.
fn branch_names(refs: &[(String, git2::Oid)]) -> Vec<&str> {
    refs.iter()
        .filter_map(|(name, _)| name.strip_prefix("refs/heads/"))
        .collect()
}

/// The OSOB repository answered: with the token or not, and how many branches it has.
fn reached_check(shown: &str, with_token: bool, refs: &[(String, git2::Oid)]) -> Check {
    let branches = branch_names(refs);
    Check::pass(
        OSOB_REPOSITORY,
        format!(
            "{shown} answers{}: {} {}",
            if with_token { " with the token" } else { "" },
            branches.len(),
            if branches.len() == 1 {
                "branch"
            } else {
                "branches"
            }
        ),
    )
}

/// The base branch exists (it fails otherwise, naming the branches there are), and where the
/// pull-request branch stands.
fn branches_check(
    shown: &str,
    repository: &crate::osob::mapping::RepositorySettings,
    refs: &[(String, git2::Oid)],
) -> Check {
    let branches = branch_names(refs);
    let tip_of = |branch: &str| {
        refs.iter()
            .find(|(name, _)| name == &format!("refs/heads/{branch}"))
            .map(|(_, oid)| oid.to_string()[..12].to_string())
    };
    let Some(base_tip) = tip_of(&repository.base_branch) else {
        let mut known: Vec<&str> = branches.iter().take(10).copied().collect();
        if branches.len() > known.len() {
            known.push("...");
        }
        return Check::fail(
            OSOB_BASE_BRANCH,
            format!(
                "the OSOB repository {shown} has no branch {} (it has: {})",
                repository.base_branch,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
            format!("fix repository.base_branch in {MAPPING_FILE}, or --osob-url"),
        );
    };
    Check::pass(
        OSOB_BASE_BRANCH,
        format!(
            "{} is at {base_tip}; the pull-request branch {} {}",
            repository.base_branch,
            repository.pr_branch,
            match tip_of(&repository.pr_branch) {
                Some(tip) => format!("is at {tip}"),
                None => "does not exist yet".to_string(),
            }
        ),
    )
}

fn files_check(
    settings: &Settings,
    mapping: &Mapping,
    ledger: &Ledger,
    workspace: &Workspace,
) -> Check {
    let repository = &mapping.repository;
    let fetched = workspace
        .fetch(&[&repository.base_branch])
        .and_then(|()| workspace.required_tip(&repository.base_branch));
    let base = match fetched {
        Ok(base) => base,
        Err(error) => {
            let fix = reach_fix(&workspace.url(), true, &mapping.provider);
            return Check::fail(OSOB_FILES, error.to_string(), fix);
        }
    };
    // As if every planned job succeeded: every mapped definition is looked for, built or not.
    let (targets, not_included, _) =
        publish::targets(&settings.catalog, ledger, mapping, Assume::Planned);
    let unchecked: Vec<String> = not_included
        .iter()
        .map(|item| item.definition.clone())
        .collect();
    let files: std::collections::BTreeSet<&str> = targets
        .iter()
        .flat_map(|target| target.files.iter().map(String::as_str))
        .collect();
    let prepared = publish::prepare(
        workspace,
        base,
        &targets,
        not_included,
        mapping,
        publish::today(),
    );
    match prepared {
        Err(problems) => Check::fail(
            OSOB_FILES,
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            format!(
                "for each file: fix its path in {MAPPING_FILE}, map it to the definition whose \
                 image it names, or correct the name in OSOB so that it matches the definition's \
                 CustomImageName template (docs/osob.md, \"How names are found and replaced\")"
            ),
        ),
        Ok(_) if !unchecked.is_empty() => Check::warn(
            OSOB_FILES,
            format!(
                "{} {} on {} name their images as the templates say; not checked, since their \
                 definitions have errors: {}",
                files.len(),
                if files.len() == 1 { "file" } else { "files" },
                repository.base_branch,
                unchecked.join(", ")
            ),
            "fix the definitions (imagegen validate lists every problem)",
        ),
        Ok(_) => Check::pass(
            OSOB_FILES,
            format!(
                "{} {} on {} name the images of {} {} as their templates say",
                files.len(),
                if files.len() == 1 { "file" } else { "files" },
                repository.base_branch,
                targets.len(),
                if targets.len() == 1 {
                    "definition"
                } else {
                    "definitions"
                },
            ),
        ),
    }
}

fn mapping_fix() -> String {
    format!("fix {MAPPING_FILE} (imagegen validate lists every problem; docs/osob.md describes it)")
}

/// What to do when the OSOB repository does not answer.
fn reach_fix(url: &str, with_token: bool, provider: &Provider) -> String {
    let token = token_names(provider);
    if url.starts_with("https://") && !with_token {
        return format!(
            "set {token}: git sends it to OSOB over https; or check repository.url in \
             {MAPPING_FILE} (--osob-url, IMAGEGEN_OSOB_URL)"
        );
    }
    format!(
        "check the URL (repository.url in {MAPPING_FILE}, or --osob-url / IMAGEGEN_OSOB_URL), the \
         network, and the token in {token}: it needs Code (read & write) on Azure DevOps, \
         contents: write on GitHub"
    )
}

/// The variables a provider's token is read from, as people set them.
fn token_names(provider: &Provider) -> String {
    crate::pull_request::token_variables(provider).join(" or ")
}

// ---------------------------------------------------------------------------------------------
// The pull-request provider

async fn pr_check(settings: &Settings) -> Check {
    let mapping = match &settings.mapping {
        Ok(mapping) => mapping,
        Err(_) => {
            return Check::skip(
                PR_PROVIDER,
                format!("not checked: there is no usable mapping (see {OSOB_REPOSITORY})"),
            );
        }
    };
    let provider = &mapping.provider;
    let repository = &mapping.repository;
    let checked = within(settings.timeout, async {
        let client = PrClient::connect(provider).await?;
        client
            .check_access(&repository.pr_branch, &repository.base_branch)
            .await
    })
    .await;
    match checked {
        Some(Ok(None)) => Check::pass(
            PR_PROVIDER,
            "local: nothing to check, the pull request is printed rather than opened",
        ),
        Some(Ok(Some(access))) => Check::pass(
            PR_PROVIDER,
            format!(
                "{}: the token reads {} and its pull requests ({})",
                provider.name(),
                access.repository,
                match access.open {
                    Some(number) => format!(
                        "pull request #{number} from {} is open",
                        repository.pr_branch
                    ),
                    None => format!("no open pull request from {} yet", repository.pr_branch),
                }
            ),
        ),
        Some(Err(error)) => Check::fail(PR_PROVIDER, error.to_string(), pr_fix(&error, provider)),
        None => Check::timed_out(PR_PROVIDER, provider.name(), settings.timeout),
    }
}

/// What to do when the provider refuses or cannot be reached.
fn pr_fix(error: &PrError, provider: &Provider) -> String {
    let token = token_names(provider);
    let rights = match provider {
        Provider::GitHub { .. } => "contents: write and pull requests: write",
        _ => "Code (read & write) and Pull Request Threads (read & write)",
    };
    match error {
        PrError::MissingToken { .. } => format!(
            "set {token}; in Azure Pipelines map $(System.AccessToken) into the step's \
             SYSTEM_ACCESSTOKEN"
        ),
        PrError::Configuration(_) => format!("fix provider in {MAPPING_FILE}"),
        PrError::Api {
            status: Some(401 | 203 | 403),
            ..
        } => format!("renew the token in {token}; it needs {rights} on the OSOB repository"),
        PrError::Api {
            status: Some(404), ..
        } => format!(
            "check provider in {MAPPING_FILE} (the repository's names) and that the token in \
             {token} can see the repository"
        ),
        PrError::Api { status: None, .. } => {
            format!("check provider.api_url in {MAPPING_FILE} (or its default) and the network")
        }
        PrError::Api { .. } => "the service is failing: run again later".to_string(),
    }
}

/// Whether any check failed: `imagegen doctor` exits 1 then.
pub fn any_failed(checks: &[Check]) -> bool {
    checks.iter().any(|check| check.outcome == Outcome::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::blob::SasTerms;

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_sas_is_judged_by_its_expiry_and_permissions() {
        let now = at("2026-12-01T00:00:00Z");
        let judge = |sas: &str| sas_checks(&SasTerms::parse(sas), now);
        let [expiry, permissions] = judge("sp=rcw&se=2027-01-01T00%3A00%3A00Z&sig=x");
        assert_eq!(expiry.outcome, Outcome::Pass, "{expiry:?}");
        assert_eq!(
            expiry.detail,
            "the SAS expires on 2027-01-01 00:00 UTC, in 31 days"
        );
        assert_eq!(permissions.outcome, Outcome::Pass);

        let [expiry, _] = judge("sp=rcw&se=2026-12-10&sig=x");
        assert_eq!(expiry.outcome, Outcome::Warn);
        assert!(expiry.detail.contains("in 9 days"), "{}", expiry.detail);
        let [expiry, _] = judge("sp=rcw&se=2026-12-01T05%3A00Z&sig=x");
        assert!(expiry.detail.contains("in 5 hours"), "{}", expiry.detail);

        let [expiry, permissions] = judge("sp=rl&se=2026-11-30&sig=x");
        assert_eq!(expiry.outcome, Outcome::Fail);
        assert!(expiry.detail.starts_with("the SAS expired on 2026-11-30"));
        assert_eq!(permissions.outcome, Outcome::Fail);
        assert_eq!(
            permissions.detail,
            "sp=rl lacks create and write: the ledger needs read, create and write (sp=rcw)"
        );

        let [expiry, permissions] = judge("si=imagegen&sig=x");
        assert_eq!(
            (expiry.outcome, permissions.outcome),
            (Outcome::Warn, Outcome::Warn)
        );
        let [expiry, permissions] = judge("sig=x");
        assert_eq!(
            (expiry.outcome, permissions.outcome),
            (Outcome::Fail, Outcome::Fail)
        );
    }
}
