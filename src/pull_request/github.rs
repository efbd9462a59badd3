//! The GitHub provider: finds, creates or updates the OSOB pull request through octocrab, then
//! asks for its reviewers and labels.

use std::time::Duration;

use octocrab::Octocrab;
use octocrab::models::pulls::PullRequest as GitHubPullRequest;
use octocrab::service::middleware::retry::RetryConfig;
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{Access, PrError, PullRequest, PullRequestAction, PullRequestSpec};

/// Where the token comes from.
pub const GITHUB_TOKEN_VAR: &str = "GITHUB_TOKEN";

/// The user name git sends with the token over https.
pub const GIT_USERNAME: &str = "x-access-token";

/// Characters GitHub accepts in a pull request body.
pub const BODY_LIMIT: usize = 65_536;

/// Characters GitHub accepts in a comment.
pub const COMMENT_LIMIT: usize = 65_536;

const PROVIDER: &str = "GitHub";
const DEFAULT_API_BASE: &str = "https://api.github.com";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Opens or updates pull requests in one GitHub repository.
pub struct GitHubProvider {
    client: Octocrab,
    api_base: String,
    owner: String,
    repo: String,
}

impl std::fmt::Debug for GitHubProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubProvider")
            .field("api_base", &self.api_base)
            .field("owner", &self.owner)
            .field("repo", &self.repo)
            .field("token", &"[hidden]")
            .finish()
    }
}

/// How creating a pull request failed: one already open (a race with another run) is not an
/// error, the caller adopts it.
enum CreateFailure {
    AlreadyExists(PrError),
    Other(PrError),
}

impl GitHubProvider {
    /// `api_base`: None for api.github.com, or a base URL (GitHub Enterprise `https://host/api/v3`,
    /// or a test server). A path in it is kept.
    pub fn new(
        api_base: Option<&str>,
        owner: &str,
        repo: &str,
        token: SecretString,
    ) -> Result<Self, PrError> {
        if [owner, repo]
            .iter()
            .any(|part| part.trim().is_empty() || part.contains('/'))
        {
            return Err(PrError::Configuration(format!(
                "GitHub needs a repository as owner and name, got `{owner}/{repo}`"
            )));
        }
        crate::pull_request::check_token_is_header_safe(
            &token,
            &format!("GitHub token (from {GITHUB_TOKEN_VAR})"),
        )?;
        let api_base = api_base.unwrap_or(DEFAULT_API_BASE);
        let base_url = url::Url::parse(api_base)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
            .ok_or_else(|| {
                PrError::Configuration(format!(
                    "the GitHub API base `{api_base}` is not an http(s) URL"
                ))
            })?;
        let base_uri = base_url.as_str().trim_end_matches('/').to_owned();
        let client = Octocrab::builder()
            // No retries: the flow is idempotent (find, then create or update), so a failed run is
            // simply run again, and a test sees exactly the requests it caused.
            .add_retry_config(RetryConfig::None)
            .set_connect_timeout(Some(CONNECT_TIMEOUT))
            .set_read_timeout(Some(READ_TIMEOUT))
            .personal_token(token)
            .base_uri(base_uri.as_str())
            .map_err(|_| {
                PrError::Configuration(format!(
                    "the GitHub API base `{api_base}` is not a valid URI"
                ))
            })?
            .build()
            .map_err(|error| {
                PrError::Configuration(format!(
                    "cannot build the GitHub client: {}",
                    crate::output::error_chain(&error)
                ))
            })?;
        Ok(Self {
            client,
            api_base: base_uri,
            owner: owner.to_owned(),
            repo: repo.to_owned(),
        })
    }

    /// The token from `GITHUB_TOKEN`.
    pub fn token_from_env() -> Result<SecretString, PrError> {
        Self::token_from_lookup(|name| std::env::var(name).ok())
    }

    /// The token from `GITHUB_TOKEN` as `lookup` sees the environment; unset or blank is missing.
    pub fn token_from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<SecretString, PrError> {
        lookup(GITHUB_TOKEN_VAR)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
            .map(SecretString::from)
            .ok_or(PrError::MissingToken {
                provider: PROVIDER,
                names: vec![GITHUB_TOKEN_VAR],
            })
    }

    /// Finds the open pull request from `source_branch` (this repository) into `target_branch`
    /// and updates its title and body, or creates it; if creating answers that one already
    /// exists, that one is found again and updated. Then asks for the reviewers and adds the
    /// labels it does not have yet.
    pub async fn open_or_update(&self, spec: &PullRequestSpec) -> Result<PullRequest, PrError> {
        let body = crate::pull_request::cap_body(&spec.body, BODY_LIMIT, PROVIDER);
        let (pull_request, action) = match self.find_open(spec).await? {
            Some(open)
                if open.title.as_deref() == Some(spec.title.as_str())
                    && open.body.as_deref() == Some(body.as_str()) =>
            {
                (open, PullRequestAction::Unchanged)
            }
            Some(open) => (
                self.update(&open, spec, &body).await?,
                PullRequestAction::Updated,
            ),
            None => match self.create(spec, &body).await {
                Ok(created) => (created, PullRequestAction::Created),
                Err(CreateFailure::AlreadyExists(error)) => match self.find_open(spec).await? {
                    Some(open) => (
                        self.update(&open, spec, &body).await?,
                        PullRequestAction::Adopted,
                    ),
                    None => return Err(error),
                },
                Err(CreateFailure::Other(error)) => return Err(error),
            },
        };
        self.request_missing_reviewers(&pull_request, spec).await?;
        self.add_missing_labels(&pull_request, spec).await?;
        self.keep_report(
            pull_request.number,
            spec,
            action == PullRequestAction::Created,
        )
        .await?;
        let url = pull_request
            .html_url
            .as_ref()
            .map(|url| url.to_string())
            .ok_or_else(|| PrError::Api {
                provider: PROVIDER,
                operation: format!(
                    "read the web address of pull request #{} from {}",
                    pull_request.number, spec.source_branch
                ),
                status: None,
                message: "the answer has no html_url".to_owned(),
            })?;
        Ok(PullRequest {
            number: pull_request.number,
            url,
            action,
        })
    }

    /// Reads the repository, then looks for the open pull request from the spec's branch.
    pub async fn check_access(&self, spec: &PullRequestSpec) -> Result<Access, PrError> {
        #[derive(Deserialize)]
        struct Repository {
            full_name: String,
        }
        let repository: Repository = self.call(Verb::Get, "", None).await.map_err(|failure| {
            failure.into_error(format!("read the repository {}/{}", self.owner, self.repo))
        })?;
        let open = self.find_open(spec).await?;
        Ok(Access {
            repository: repository.full_name,
            open: open.map(|pull_request| pull_request.number),
        })
    }

    async fn find_open(
        &self,
        spec: &PullRequestSpec,
    ) -> Result<Option<GitHubPullRequest>, PrError> {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("state", "open")
            .append_pair("head", &format!("{}:{}", self.owner, spec.source_branch))
            .append_pair("base", &spec.target_branch)
            .finish();
        let open: Vec<GitHubPullRequest> = self
            .call(Verb::Get, &format!("pulls?{query}"), None)
            .await
            .map_err(|failure| {
                failure.into_error(format!(
                    "list the open pull requests from {} into {}",
                    spec.source_branch, spec.target_branch
                ))
            })?;
        // The query already filters; checking again keeps a lenient server from handing us
        // someone else's pull request.
        Ok(open.into_iter().find(|pull_request| {
            pull_request.head.ref_field == spec.source_branch
                && pull_request.base.ref_field == spec.target_branch
        }))
    }

    async fn create(
        &self,
        spec: &PullRequestSpec,
        body: &str,
    ) -> Result<GitHubPullRequest, CreateFailure> {
        let request = json!({
            "title": spec.title,
            "head": spec.source_branch,
            "base": spec.target_branch,
            "body": body,
        });
        self.call(Verb::Post, "pulls", Some(&request))
            .await
            .map_err(|failure| {
                let already_exists = failure.is_already_exists();
                let error = failure.into_error(format!(
                    "create the pull request from {} into {}",
                    spec.source_branch, spec.target_branch
                ));
                if already_exists {
                    CreateFailure::AlreadyExists(error)
                } else {
                    CreateFailure::Other(error)
                }
            })
    }

    async fn update(
        &self,
        open: &GitHubPullRequest,
        spec: &PullRequestSpec,
        body: &str,
    ) -> Result<GitHubPullRequest, PrError> {
        let request = json!({ "title": spec.title, "body": body });
        self.call(
            Verb::Patch,
            &format!("pulls/{}", open.number),
            Some(&request),
        )
        .await
        .map_err(|failure| {
            failure.into_error(format!(
                "update pull request #{} from {}",
                open.number, spec.source_branch
            ))
        })
    }

    async fn request_missing_reviewers(
        &self,
        pull_request: &GitHubPullRequest,
        spec: &PullRequestSpec,
    ) -> Result<(), PrError> {
        let author = pull_request.user.as_ref().map(|user| user.login.as_str());
        let requested: Vec<&str> = pull_request
            .requested_reviewers
            .iter()
            .flatten()
            .map(|reviewer| reviewer.login.as_str())
            .collect();
        // GitHub refuses to ask the author for a review (422), and asking again someone already
        // asked only sends them another notification.
        let missing: Vec<String> = spec
            .reviewers
            .iter()
            .filter(|login| !author.is_some_and(|author| author.eq_ignore_ascii_case(login)))
            .filter(|login| {
                !requested
                    .iter()
                    .any(|known| known.eq_ignore_ascii_case(login))
            })
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let request = json!({ "reviewers": missing, "team_reviewers": [] });
        let _: serde::de::IgnoredAny = self
            .call(
                Verb::Post,
                &format!("pulls/{}/requested_reviewers", pull_request.number),
                Some(&request),
            )
            .await
            .map_err(|failure| {
                failure.into_error(format!(
                    "request reviewers on pull request #{} from {}",
                    pull_request.number, spec.source_branch
                ))
            })?;
        Ok(())
    }

    async fn add_missing_labels(
        &self,
        pull_request: &GitHubPullRequest,
        spec: &PullRequestSpec,
    ) -> Result<(), PrError> {
        let present: Vec<&str> = pull_request
            .labels
            .iter()
            .flatten()
            .map(|label| label.name.as_str())
            .collect();
        let missing: Vec<String> = spec
            .labels
            .iter()
            .filter(|label| {
                !present
                    .iter()
                    .any(|known| known.eq_ignore_ascii_case(label))
            })
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let request = json!({ "labels": missing });
        let _: serde::de::IgnoredAny = self
            .call(
                Verb::Post,
                &format!("issues/{}/labels", pull_request.number),
                Some(&request),
            )
            .await
            .map_err(|failure| {
                failure.into_error(format!(
                    "add labels to pull request #{} from {}",
                    pull_request.number, spec.source_branch
                ))
            })?;
        Ok(())
    }

    /// Posts the report as one issue comment, or brings the one an earlier run posted up to
    /// date (found by its heading); without a report, an earlier one says it is retired.
    /// `created`: the pull request was opened by this run.
    async fn keep_report(
        &self,
        number: u64,
        spec: &PullRequestSpec,
        created: bool,
    ) -> Result<(), PrError> {
        let operation = |what: &str| {
            format!(
                "{what} the report comment of pull request #{number} from {}",
                spec.source_branch
            )
        };
        // A pull request created a moment ago has no comment to find.
        let existing = if created {
            None
        } else {
            self.find_report_comment(number)
                .await
                .map_err(|failure| failure.into_error(operation("find")))?
        };
        let Some(wanted) = super::report_to_write(
            spec.report.as_deref(),
            existing.as_ref().map(|comment| comment.body.as_str()),
        ) else {
            return Ok(());
        };
        let (verb, route, what) = match existing {
            Some(comment) => (
                Verb::Patch,
                format!("issues/comments/{}", comment.id),
                "update",
            ),
            None => (Verb::Post, format!("issues/{number}/comments"), "post"),
        };
        let _: serde::de::IgnoredAny = self
            .call(verb, &route, Some(&json!({ "body": wanted })))
            .await
            .map_err(|failure| failure.into_error(operation(what)))?;
        Ok(())
    }

    /// The first comment that starts with the report heading, page by page.
    async fn find_report_comment(&self, number: u64) -> Result<Option<IssueComment>, CallFailure> {
        const PAGE: usize = 100;
        // A bot's pull request with more than 2,000 comments is not one to keep scanning.
        for page in 1..=20 {
            let comments: Vec<IssueComment> = self
                .call(
                    Verb::Get,
                    &format!("issues/{number}/comments?per_page={PAGE}&page={page}"),
                    None,
                )
                .await?;
            let last = comments.len() < PAGE;
            if let Some(found) = comments
                .into_iter()
                .find(|comment| super::is_report(&comment.body))
            {
                return Ok(Some(found));
            }
            if last {
                break;
            }
        }
        Ok(None)
    }

    /// Sends one request under `/repos/{owner}/{repo}/` (to the repository itself for an empty
    /// `route`) and reads its answer, at most [`crate::http::MAX_BODY_BYTES`] of it: octocrab's
    /// typed calls would read any answer whole.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Verb,
        route: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, CallFailure> {
        let mut uri = format!("/repos/{}/{}", self.owner, self.repo);
        if !route.is_empty() {
            uri.push('/');
            uri.push_str(route);
        }
        let shown_url = format!("{}{uri}", self.api_base);
        let response = match method {
            Verb::Get => self.client._get(uri).await,
            Verb::Post => self.client._post(uri, body).await,
            Verb::Patch => self.client._patch(uri, body).await,
        }
        .map_err(|error| CallFailure::Transport(crate::output::error_chain(&error)))?;
        let status = response.status().as_u16();
        let bytes = crate::http::read_stream(
            http_body_util::BodyDataStream::new(response.into_body()),
            crate::http::MAX_BODY_BYTES,
            &shown_url,
        )
        .await
        .map_err(CallFailure::Transport)?;
        if !(200..300).contains(&status) {
            return Err(CallFailure::Refused {
                status,
                error: serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
                    message: String::from_utf8_lossy(&bytes).trim().to_owned(),
                    errors: Vec::new(),
                }),
            });
        }
        serde_json::from_slice(&bytes).map_err(|error| {
            CallFailure::Transport(format!("the answer could not be read: {error}"))
        })
    }
}

/// The requests the provider sends.
#[derive(Debug, Clone, Copy)]
enum Verb {
    Get,
    Post,
    Patch,
}

/// An issue comment, as much of it as imagegen reads.
#[derive(Debug, Deserialize)]
struct IssueComment {
    id: u64,
    #[serde(default)]
    body: String,
}

/// GitHub's error document: a message, and for 422 "Validation Failed" what failed.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

/// Why a call gave no answer to use.
#[derive(Debug)]
enum CallFailure {
    /// GitHub answered with an error status.
    Refused { status: u16, error: ErrorBody },
    /// No usable answer: unreachable, cut off, too large, or not what GitHub sends.
    Transport(String),
}

impl CallFailure {
    /// GitHub answers 422 "Validation Failed" with "A pull request already exists for
    /// owner:branch." among the errors when an open pull request has the same head and base.
    fn is_already_exists(&self) -> bool {
        const ALREADY_EXISTS: &str = "pull request already exists";
        match self {
            Self::Refused { status: 422, error } => {
                error.message.contains(ALREADY_EXISTS)
                    || error.errors.iter().any(|detail| {
                        detail
                            .get("message")
                            .and_then(|message| message.as_str())
                            .is_some_and(|message| message.contains(ALREADY_EXISTS))
                    })
            }
            _ => false,
        }
    }

    fn into_error(self, operation: String) -> PrError {
        match self {
            Self::Refused { status, error } => PrError::Api {
                provider: PROVIDER,
                operation,
                status: Some(status),
                message: service_message(&error),
            },
            Self::Transport(message) => PrError::Api {
                provider: PROVIDER,
                operation,
                status: None,
                message,
            },
        }
    }
}

/// GitHub's message, with the details of a "Validation Failed" that say what actually failed.
fn service_message(error: &ErrorBody) -> String {
    let details: Vec<String> = error
        .errors
        .iter()
        .filter_map(
            |detail| match detail.get("message").and_then(|m| m.as_str()) {
                Some(message) => Some(message.to_owned()),
                None => {
                    let part = |key: &str| detail.get(key).and_then(|v| v.as_str());
                    let described: Vec<&str> = [part("resource"), part("field"), part("code")]
                        .into_iter()
                        .flatten()
                        .collect();
                    (!described.is_empty()).then(|| described.join(" "))
                }
            },
        )
        .collect();
    if details.is_empty() {
        error.message.clone()
    } else {
        format!("{}: {}", error.message, details.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_within_the_limit_is_kept_and_a_longer_one_is_cut_at_a_character() {
        assert_eq!(
            crate::pull_request::cap_body("short", BODY_LIMIT, PROVIDER),
            "short"
        );
        let long = "é".repeat(BODY_LIMIT + 5);
        let capped = crate::pull_request::cap_body(&long, BODY_LIMIT, PROVIDER);
        assert_eq!(capped.chars().count(), BODY_LIMIT);
    }

    #[test]
    fn a_token_with_a_newline_is_refused_without_showing_it() {
        let error = crate::pull_request::check_token_is_header_safe(
            &SecretString::from("canary-token\n"),
            "GitHub token (from GITHUB_TOKEN)",
        )
        .unwrap_err();
        assert!(!error.to_string().contains("canary-token"));
        assert!(error.to_string().contains(GITHUB_TOKEN_VAR));
    }

    #[test]
    fn a_blank_token_is_missing() {
        let error = GitHubProvider::token_from_lookup(|_| Some("  ".to_owned())).unwrap_err();
        assert!(matches!(error, PrError::MissingToken { .. }));
    }

    #[test]
    fn an_api_base_that_is_not_a_url_is_a_configuration_error() {
        let error = GitHubProvider::new(
            Some("not a url"),
            "owner",
            "repo",
            SecretString::from("token"),
        )
        .unwrap_err();
        assert!(matches!(error, PrError::Configuration(_)), "{error:?}");
    }
}
