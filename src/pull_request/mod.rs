//! The OSOB pull request: what it says (rendered purely from the results), and the providers
//! that open it or update it on Azure DevOps, GitHub, or nowhere (`local`).

pub mod azure_devops;
pub mod body;
pub mod github;
pub mod variable_updates;

use crate::osob::mapping;

/// The pull request imagegen wants to exist: one, from a fixed branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestSpec {
    /// The branch imagegen pushes, without `refs/heads/`.
    pub source_branch: String,
    /// The branch it merges into, without `refs/heads/`.
    pub target_branch: String,
    pub title: String,
    /// Markdown, already capped to the provider's limit.
    pub body: String,
    /// GitHub logins, or Azure DevOps identity ids.
    pub reviewers: Vec<String>,
    pub labels: Vec<String>,
    /// The full report for one comment on the pull request (found by
    /// [`body::REPORT_HEADING`] and updated in place), when the description leaves things out;
    /// `None` retires a report comment an earlier run posted.
    pub report: Option<String>,
}

/// What an earlier report comment becomes once the description holds the whole change again.
pub(crate) fn retired_report() -> String {
    format!(
        "{}\n\nThe description now holds the whole change; this report is no longer needed.\n",
        body::REPORT_HEADING
    )
}

/// What the report comment must say now, given what an earlier run left (`existing`): the
/// report, the retired note when there is no report any more, or `None` when nothing is to be
/// sent (no report and none left, or the comment already says it).
pub(crate) fn report_to_write(wanted: Option<&str>, existing: Option<&str>) -> Option<String> {
    let wanted = match (wanted, existing) {
        (Some(report), _) => report.to_owned(),
        (None, Some(_)) => retired_report(),
        (None, None) => return None,
    };
    (existing != Some(wanted.as_str())).then_some(wanted)
}

/// Whether a comment is imagegen's report (current or retired).
pub(crate) fn is_report(comment: &str) -> bool {
    comment.starts_with(body::REPORT_HEADING)
}

/// What a provider accepts, in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub description: usize,
    pub comment: usize,
}

impl Limits {
    /// The limits of the provider the mapping names; `local` prints what GitHub would take.
    pub fn of(provider: &mapping::Provider) -> Self {
        match provider {
            mapping::Provider::AzureDevOps { .. } => Self {
                description: azure_devops::BODY_LIMIT,
                comment: azure_devops::COMMENT_LIMIT,
            },
            mapping::Provider::GitHub { .. } | mapping::Provider::Local => Self {
                description: github::BODY_LIMIT,
                comment: github::COMMENT_LIMIT,
            },
        }
    }
}

/// The variables the provider's token is read from, in the order they are tried; `local`
/// pushes with the Azure DevOps ones.
pub fn token_variables(provider: &mapping::Provider) -> &'static [&'static str] {
    match provider {
        mapping::Provider::GitHub { .. } => &[github::GITHUB_TOKEN_VAR],
        mapping::Provider::AzureDevOps { .. } | mapping::Provider::Local => {
            &azure_devops::TOKEN_VARS
        }
    }
}

/// The user name and token git pushes with over https to the provider's repository: the first
/// of [`token_variables`] set to something other than blanks. `None` when none is.
pub fn git_credentials(provider: &mapping::Provider) -> Option<(&'static str, String)> {
    let token = token_variables(provider).iter().find_map(|name| {
        std::env::var(name)
            .ok()
            .filter(|value| !value.trim().is_empty())
    })?;
    let username = match provider {
        mapping::Provider::GitHub { .. } => github::GIT_USERNAME,
        mapping::Provider::AzureDevOps { .. } | mapping::Provider::Local => {
            azure_devops::GIT_USERNAME
        }
    };
    Some((username, token))
}

/// What a provider did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PullRequestAction {
    /// No open pull request came from the branch: one was created.
    Created,
    /// One was open: its title and description were brought up to date.
    Updated,
    /// Creating answered "already exists" (a race with another run): that one was updated.
    Adopted,
    /// One was open with this title and description already: nothing was sent, so reviewers
    /// see no "edited" event from a run that changed nothing.
    Unchanged,
}

/// A pull request as a provider reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PullRequest {
    /// GitHub's number or Azure DevOps' id.
    pub number: u64,
    /// Where people open it in a browser.
    pub url: String,
    pub action: PullRequestAction,
}

/// What a provider's token was shown to read ([`PrClient::check_access`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The repository as the service names it: `owner/name` on GitHub, `project/name` on Azure
    /// DevOps.
    pub repository: String,
    /// The open pull request from the branch asked about, if there is one.
    pub open: Option<u64>,
}

/// What went wrong with a provider. Never holds a token.
#[derive(Debug, thiserror::Error)]
pub enum PrError {
    #[error("{provider} needs a token: set {}", names.join(" or "))]
    MissingToken {
        provider: &'static str,
        names: Vec<&'static str>,
    },
    #[error("{provider}: {operation} failed{}: {message}", status.map(|s| format!(" ({s})")).unwrap_or_default())]
    Api {
        provider: &'static str,
        /// What was being done, such as "list the pull requests from imagegen/helix-images".
        operation: String,
        status: Option<u16>,
        message: String,
    },
    #[error("{0}")]
    Configuration(String),
}

/// A token goes into an `Authorization` header: one with a stray newline (from a file) would
/// fail far from its cause, or make a client panic, so it is refused here, naming where it came
/// from but never its value.
pub(crate) fn check_token_is_header_safe(
    token: &secrecy::SecretString,
    origin: &str,
) -> Result<(), PrError> {
    use secrecy::ExposeSecret as _;
    let secret = token.expose_secret();
    if secret.is_empty() || !secret.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(PrError::Configuration(format!(
            "the {origin} is empty or holds spaces or control characters"
        )));
    }
    Ok(())
}

/// The description cut to `limit` characters. The renderer already fits it; this only guards
/// the provider's limit.
pub(crate) fn cap_body(body: &str, limit: usize, provider: &str) -> String {
    match body.char_indices().nth(limit) {
        Some((end, _)) => {
            tracing::warn!(
                limit,
                "the pull request description is longer than {provider} accepts; it was cut"
            );
            body[..end].to_owned()
        }
        None => body.to_owned(),
    }
}

/// The provider the mapping names, ready to call: built, with its token checked, before
/// anything is pushed, so a missing token stops a run before it changes OSOB.
///
/// Built by the async [`PrClient::connect`], so only inside the runtime that will send its
/// requests: octocrab spawns its request buffer's worker on the current runtime as it is built,
/// and panics outside one.
#[derive(Debug)]
pub enum PrClient {
    GitHub(github::GitHubProvider),
    AzureDevOps(azure_devops::AzureDevOpsProvider),
    /// Opens nothing; the caller prints the pull request.
    Local,
}

impl PrClient {
    pub async fn connect(provider: &mapping::Provider) -> Result<Self, PrError> {
        Ok(match provider {
            mapping::Provider::Local => Self::Local,
            mapping::Provider::GitHub {
                owner,
                repository,
                api_url,
            } => Self::GitHub(github::GitHubProvider::new(
                api_url.as_deref(),
                owner,
                repository,
                github::GitHubProvider::token_from_env()?,
            )?),
            mapping::Provider::AzureDevOps {
                organization,
                project,
                repository,
                api_url,
            } => Self::AzureDevOps(azure_devops::AzureDevOpsProvider::new(
                api_url.as_deref(),
                organization,
                project,
                repository,
                azure_devops::AzureDevOpsToken::from_env()?,
            )?),
        })
    }

    /// Reads the repository, and lists its open pull requests from `source_branch` into
    /// `target_branch` as a run does before opening one, changing nothing: the token is shown to
    /// reach both. `None` for `local`, which has nothing to read.
    pub async fn check_access(
        &self,
        source_branch: &str,
        target_branch: &str,
    ) -> Result<Option<Access>, PrError> {
        // The search reads the branches alone; a pull request's words play no part in it.
        let spec = PullRequestSpec {
            source_branch: source_branch.to_owned(),
            target_branch: target_branch.to_owned(),
            title: String::new(),
            body: String::new(),
            reviewers: Vec::new(),
            labels: Vec::new(),
            report: None,
        };
        match self {
            Self::GitHub(provider) => provider.check_access(&spec).await.map(Some),
            Self::AzureDevOps(provider) => provider.check_access(&spec).await.map(Some),
            Self::Local => Ok(None),
        }
    }

    /// Opens or updates the pull request; `None` for `local`.
    pub async fn open_or_update(
        &self,
        spec: &PullRequestSpec,
    ) -> Result<Option<PullRequest>, PrError> {
        match self {
            Self::GitHub(provider) => provider.open_or_update(spec).await.map(Some),
            Self::AzureDevOps(provider) => provider.open_or_update(spec).await.map(Some),
            Self::Local => Ok(None),
        }
    }
}
