//! The OSOB pull request: what it says (rendered purely from the results), and the providers
//! that open it or update it on Azure DevOps, GitHub, or nowhere (`local`).

pub mod azure_devops;
pub mod body;
pub mod github;

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
