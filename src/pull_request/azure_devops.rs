//! The Azure DevOps provider: finds, creates or updates the OSOB pull request through the git
//! service of `azure_devops_rust_api`, with a pipeline's OAuth token or a personal access token.

use std::sync::Arc;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind;
use azure_core::http::{
    AsyncRawResponse, HttpClient, RawResponse, Request, RetryOptions, Transport, Url,
};
use azure_core::time::{Duration, OffsetDateTime};
use azure_devops_rust_api::Credential;
use azure_devops_rust_api::git;
use azure_devops_rust_api::git::models::{
    Comment, CommentThread, GitPullRequest, GitPullRequestCommentThread,
    GitPullRequestCommentThreadList, GitPullRequestCreateOptions, GitPullRequestList,
    GitPullRequestUpdateOptions, GitRepository, IdentityId, IdentityRef, IdentityRefWithVoteList,
    PullRequestStatus, WebApiCreateTagRequestData, WebApiTagDefinition, comment, comment_thread,
    git_pull_request,
};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use super::{Access, PrError, PullRequest, PullRequestAction, PullRequestSpec};

/// Azure Pipelines' OAuth token of the build identity, sent as a bearer token.
pub const SYSTEM_ACCESS_TOKEN_VAR: &str = "SYSTEM_ACCESSTOKEN";
/// A personal access token, sent with basic authentication.
pub const PAT_VAR: &str = "AZURE_DEVOPS_PAT";
/// The variables a token is read from, in the order they are tried.
pub const TOKEN_VARS: [&str; 2] = [SYSTEM_ACCESS_TOKEN_VAR, PAT_VAR];
/// The user name git sends with the token over https (Azure Repos reads only the token).
pub const GIT_USERNAME: &str = "imagegen";
/// Characters Azure DevOps accepts in a pull request description.
pub const BODY_LIMIT: usize = 4_000;

/// Characters imagegen puts in one pull request comment. Azure DevOps takes far longer
/// comments; this keeps the report readable and the same size as on GitHub.
pub const COMMENT_LIMIT: usize = 65_536;

const PROVIDER: &str = "Azure DevOps";
const DEFAULT_ENDPOINT: &str = "https://dev.azure.com";
const BRANCH_REF_PREFIX: &str = "refs/heads/";

/// How imagegen signs in to Azure DevOps. Debug never shows the secret.
#[derive(Debug, Clone)]
pub enum AzureDevOpsToken {
    /// `SYSTEM_ACCESSTOKEN`: an OAuth token, sent as `Authorization: Bearer`.
    AccessToken(SecretString),
    /// `AZURE_DEVOPS_PAT`: a personal access token, sent as `Authorization: Basic`.
    Pat(SecretString),
}

impl AzureDevOpsToken {
    /// `SYSTEM_ACCESSTOKEN` first, then `AZURE_DEVOPS_PAT`, from the process environment.
    pub fn from_env() -> Result<Self, PrError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// `SYSTEM_ACCESSTOKEN` first, then `AZURE_DEVOPS_PAT`, as `lookup` sees the environment;
    /// unset or blank is missing.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, PrError> {
        let read = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
                .map(SecretString::from)
        };
        read(SYSTEM_ACCESS_TOKEN_VAR)
            .map(Self::AccessToken)
            .or_else(|| read(PAT_VAR).map(Self::Pat))
            .ok_or(PrError::MissingToken {
                provider: PROVIDER,
                names: vec![SYSTEM_ACCESS_TOKEN_VAR, PAT_VAR],
            })
    }

    fn into_credential(self) -> Credential {
        match self {
            Self::AccessToken(token) => {
                Credential::from_token_credential(Arc::new(FixedBearerToken(token)))
            }
            Self::Pat(pat) => Credential::from_pat(pat.expose_secret().to_owned()),
        }
    }

    fn secret(&self) -> &SecretString {
        match self {
            Self::AccessToken(token) | Self::Pat(token) => token,
        }
    }
}

/// A bearer token handed over as is: `azure_devops_rust_api` sends bearer tokens only through a
/// `TokenCredential`, and the pipeline's token is already issued, so there is nothing to acquire.
struct FixedBearerToken(SecretString);

impl std::fmt::Debug for FixedBearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FixedBearerToken([hidden])")
    }
}

#[async_trait::async_trait]
impl TokenCredential for FixedBearerToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        // The pipeline's token lives as long as the job; the expiry only tells a cache when to
        // ask again, and this credential is asked for every request anyway.
        Ok(AccessToken::new(
            self.0.expose_secret().to_owned(),
            OffsetDateTime::now_utc() + Duration::hours(1),
        ))
    }
}

/// The SDK's HTTP client, with every answer read to at most [`crate::http::MAX_BODY_BYTES`]:
/// the SDK would otherwise collect any answer whole before imagegen sees it.
#[derive(Debug)]
struct CappedTransport {
    inner: Arc<dyn HttpClient>,
}

#[async_trait::async_trait]
impl HttpClient for CappedTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let response = self.inner.execute_request(request).await?;
        let (status, headers, body) = response.deconstruct();
        let mut shown_url = request.url().clone();
        shown_url.set_query(None);
        let bytes = crate::http::read_stream(body, crate::http::MAX_BODY_BYTES, shown_url.as_str())
            .await
            .map_err(|message| azure_core::Error::with_message(ErrorKind::Io, message))?;
        Ok(AsyncRawResponse::from_bytes(status, headers, bytes))
    }
}

/// Opens or updates pull requests in one Azure DevOps repository.
pub struct AzureDevOpsProvider {
    client: git::Client,
    endpoint: Url,
    organization: String,
    project: String,
    repository: String,
}

impl std::fmt::Debug for AzureDevOpsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureDevOpsProvider")
            .field("endpoint", &self.endpoint.as_str())
            .field("organization", &self.organization)
            .field("project", &self.project)
            .field("repository", &self.repository)
            .field("token", &"[hidden]")
            .finish()
    }
}

/// How creating a pull request failed: one already active (a race with another run) is not an
/// error, the caller adopts it.
enum CreateFailure {
    AlreadyExists(PrError),
    Other(PrError),
}

impl AzureDevOpsProvider {
    /// `endpoint`: None for https://dev.azure.com, or a base URL (a server's collection URL, or a
    /// test server).
    pub fn new(
        endpoint: Option<&str>,
        organization: &str,
        project: &str,
        repository: &str,
        token: AzureDevOpsToken,
    ) -> Result<Self, PrError> {
        for (what, value) in [
            ("organization", organization),
            ("project", project),
            ("repository", repository),
        ] {
            if value.trim().is_empty() || value.contains('/') {
                return Err(PrError::Configuration(format!(
                    "the Azure DevOps {what} must be a name without slashes, got `{value}`"
                )));
            }
        }
        crate::pull_request::check_token_is_header_safe(
            token.secret(),
            &format!("Azure DevOps token (from {SYSTEM_ACCESS_TOKEN_VAR} or {PAT_VAR})"),
        )?;
        let endpoint_text = endpoint.unwrap_or(DEFAULT_ENDPOINT);
        let endpoint = Url::parse(endpoint_text.trim_end_matches('/'))
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
            .ok_or_else(|| {
                PrError::Configuration(format!(
                    "the Azure DevOps endpoint `{endpoint_text}` is not an http(s) URL"
                ))
            })?;
        let client = git::ClientBuilder::new(token.into_credential())
            .endpoint(endpoint.clone())
            // azure_core retries 8 times over up to a minute by default; the flow is idempotent
            // (find, then create or update), so a failed run is simply run again.
            .retry(RetryOptions::none())
            .transport(Transport::new(Arc::new(CappedTransport {
                inner: azure_core::http::new_http_client(None),
            })))
            .build();
        Ok(Self {
            client,
            endpoint,
            organization: organization.to_owned(),
            project: project.to_owned(),
            repository: repository.to_owned(),
        })
    }

    /// Finds the active pull request from `refs/heads/{source}` into `refs/heads/{target}` and
    /// updates its title and description, or creates it with the reviewers and labels; if
    /// creating answers TF401179 (one already exists), that one is found again and updated. An
    /// updated pull request gets the reviewers and labels it does not have yet.
    pub async fn open_or_update(&self, spec: &PullRequestSpec) -> Result<PullRequest, PrError> {
        let description = crate::pull_request::cap_body(&spec.body, BODY_LIMIT, PROVIDER);
        let (pull_request, action) = match self.find_active(spec).await? {
            Some(active)
                if active.title.as_deref() == Some(spec.title.as_str())
                    && active.description.as_deref() == Some(description.as_str()) =>
            {
                self.add_missing_reviewers(&active, spec).await?;
                self.add_missing_labels(&active, spec).await?;
                (active, PullRequestAction::Unchanged)
            }
            Some(active) => (
                self.bring_up_to_date(active, spec, &description).await?,
                PullRequestAction::Updated,
            ),
            None => match self.create(spec, &description).await {
                Ok(created) => (created, PullRequestAction::Created),
                Err(CreateFailure::AlreadyExists(error)) => match self.find_active(spec).await? {
                    Some(active) => (
                        self.bring_up_to_date(active, spec, &description).await?,
                        PullRequestAction::Adopted,
                    ),
                    None => return Err(error),
                },
                Err(CreateFailure::Other(error)) => return Err(error),
            },
        };
        let id = pull_request.pull_request_id;
        self.keep_report(id, spec, action == PullRequestAction::Created)
            .await?;
        Ok(PullRequest {
            number: u64::try_from(id).map_err(|_| PrError::Api {
                provider: PROVIDER,
                operation: format!("read the pull request from {}", spec.source_branch),
                status: None,
                message: format!("the pull request id {id} is not a positive number"),
            })?,
            url: self.web_url(id)?,
            action,
        })
    }

    /// Posts the report as one closed thread (a closed thread never blocks completion under a
    /// comment-resolution policy), or brings the one an earlier run posted up to date (found by
    /// its heading); without a report, an earlier one says it is retired. `created`: the pull
    /// request was opened by this run.
    async fn keep_report(
        &self,
        id: i32,
        spec: &PullRequestSpec,
        created: bool,
    ) -> Result<(), PrError> {
        if created && spec.report.is_none() {
            // A pull request created a moment ago has no comment to find or retire.
            return Ok(());
        }
        let existing = if created {
            None
        } else {
            self.find_report(id, spec).await?
        };
        let Some(wanted) = super::report_to_write(
            spec.report.as_deref(),
            existing.as_ref().map(|report| report.content.as_str()),
        ) else {
            return Ok(());
        };
        match existing {
            Some(report) => self.update_report(id, spec, &report, &wanted).await,
            None => self.post_report(id, spec, &wanted).await,
        }
    }

    /// The report comment an earlier run left on pull request `id`, if any is still there.
    async fn find_report(
        &self,
        id: i32,
        spec: &PullRequestSpec,
    ) -> Result<Option<ReportComment>, PrError> {
        let operation = report_operation("find", id, spec);
        let answer = self
            .client
            .pull_request_threads_client()
            .list(&self.organization, &self.repository, id, &self.project)
            .send()
            .await
            .map_err(|error| api_error(operation.clone(), &error))?;
        let threads: GitPullRequestCommentThreadList =
            decode(operation, answer.into_raw_response())?;
        Ok(threads.value.iter().find_map(|thread| {
            let thread = &thread.comment_thread;
            let first = thread.comments.first()?;
            let content = first.content.as_deref()?;
            if thread.is_deleted == Some(true)
                || first.is_deleted == Some(true)
                || !super::is_report(content)
            {
                return None;
            }
            Some(ReportComment {
                thread_id: thread.id?,
                comment_id: i32::try_from(first.id?).ok()?,
                content: content.to_owned(),
            })
        }))
    }

    /// Rewrites the report comment in place.
    async fn update_report(
        &self,
        id: i32,
        spec: &PullRequestSpec,
        report: &ReportComment,
        wanted: &str,
    ) -> Result<(), PrError> {
        let operation = report_operation("update", id, spec);
        let answer = self
            .client
            .pull_request_thread_comments_client()
            .update(
                &self.organization,
                text_comment(wanted),
                &self.repository,
                id,
                report.thread_id,
                report.comment_id,
                &self.project,
            )
            .send()
            .await
            .map_err(|error| api_error(operation.clone(), &error))?;
        let _: Comment = decode(operation, answer.into_raw_response())?;
        Ok(())
    }

    /// Posts the report as the first comment of a new thread, closed: it asks nothing of anyone.
    async fn post_report(
        &self,
        id: i32,
        spec: &PullRequestSpec,
        wanted: &str,
    ) -> Result<(), PrError> {
        let operation = report_operation("post", id, spec);
        let mut first = text_comment(wanted);
        first.parent_comment_id = Some(0);
        let mut thread = CommentThread::new();
        thread.comments = vec![first];
        thread.status = Some(comment_thread::Status::Closed);
        let mut body = GitPullRequestCommentThread::new();
        body.comment_thread = thread;
        let answer = self
            .client
            .pull_request_threads_client()
            .create(
                &self.organization,
                body,
                &self.repository,
                id,
                &self.project,
            )
            .send()
            .await
            .map_err(|error| api_error(operation.clone(), &error))?;
        let _: GitPullRequestCommentThread = decode(operation, answer.into_raw_response())?;
        Ok(())
    }

    /// Where people open pull request `id`: the API's own `url` is the REST address.
    fn web_url(&self, id: i32) -> Result<String, PrError> {
        let mut url = self.endpoint.clone();
        url.path_segments_mut()
            .map_err(|()| {
                PrError::Configuration(format!(
                    "the Azure DevOps endpoint `{}` cannot take a path",
                    self.endpoint
                ))
            })?
            .pop_if_empty()
            .extend([
                self.organization.as_str(),
                self.project.as_str(),
                "_git",
                self.repository.as_str(),
                "pullrequest",
                &id.to_string(),
            ]);
        Ok(url.into())
    }

    /// Reads the repository, then looks for the active pull request from the spec's branch.
    pub async fn check_access(&self, spec: &PullRequestSpec) -> Result<Access, PrError> {
        let operation = || {
            format!(
                "read the repository {} of project {}",
                self.repository, self.project
            )
        };
        let answer = self
            .client
            .repositories_client()
            .get_repository(&self.organization, &self.repository, &self.project)
            .send()
            .await
            .map_err(|error| api_error(operation(), &error))?;
        let repository: GitRepository = decode(operation(), answer.into_raw_response())?;
        let open = self.find_active(spec).await?;
        Ok(Access {
            repository: format!("{}/{}", repository.project.name, repository.name),
            open: open.and_then(|pull_request| u64::try_from(pull_request.pull_request_id).ok()),
        })
    }

    async fn find_active(&self, spec: &PullRequestSpec) -> Result<Option<GitPullRequest>, PrError> {
        let operation = || {
            format!(
                "list the active pull requests from {} into {}",
                spec.source_branch, spec.target_branch
            )
        };
        let (source_ref, target_ref) = refs_of(spec);
        let answer = self
            .client
            .pull_requests_client()
            .get_pull_requests(&self.organization, &self.repository, &self.project)
            .search_criteria_source_ref_name(&source_ref)
            .search_criteria_target_ref_name(&target_ref)
            .search_criteria_status(PullRequestStatus::Active)
            .send()
            .await
            .map_err(|error| api_error(operation(), &error))?;
        let list: GitPullRequestList = decode(operation(), answer.into_raw_response())?;
        // The query already filters; checking again keeps a lenient server from handing us
        // another branch's pull request. Azure Repos compares ref names without case.
        Ok(list.value.into_iter().find(|pull_request| {
            pull_request.status == git_pull_request::Status::Active
                && pull_request
                    .source_ref_name
                    .eq_ignore_ascii_case(&source_ref)
                && pull_request
                    .target_ref_name
                    .eq_ignore_ascii_case(&target_ref)
        }))
    }

    async fn create(
        &self,
        spec: &PullRequestSpec,
        description: &str,
    ) -> Result<GitPullRequest, CreateFailure> {
        let operation = || {
            format!(
                "create the pull request from {} into {}",
                spec.source_branch, spec.target_branch
            )
        };
        let (source_ref, target_ref) = refs_of(spec);
        let mut options =
            GitPullRequestCreateOptions::new(source_ref, target_ref, spec.title.clone());
        options.description = Some(description.to_owned());
        options.reviewers = spec
            .reviewers
            .iter()
            .map(|id| IdentityId { id: id.clone() })
            .collect();
        options.labels = spec
            .labels
            .iter()
            .map(|name| WebApiCreateTagRequestData::new(name.clone()))
            .collect();
        let answer = self
            .client
            .pull_requests_client()
            .create(&self.organization, &self.repository, &self.project, options)
            .send()
            .await
            .map_err(|error| {
                if is_already_exists(&error) {
                    CreateFailure::AlreadyExists(api_error(operation(), &error))
                } else {
                    CreateFailure::Other(api_error(operation(), &error))
                }
            })?;
        decode(operation(), answer.into_raw_response()).map_err(CreateFailure::Other)
    }

    /// New title and description, then the reviewers and labels the pull request lacks.
    async fn bring_up_to_date(
        &self,
        active: GitPullRequest,
        spec: &PullRequestSpec,
        description: &str,
    ) -> Result<GitPullRequest, PrError> {
        let id = active.pull_request_id;
        let operation = || format!("update pull request {id} from {}", spec.source_branch);
        let mut options = GitPullRequestUpdateOptions::new();
        options.title = Some(spec.title.clone());
        options.description = Some(description.to_owned());
        let answer = self
            .client
            .pull_requests_client()
            .update(
                &self.organization,
                &self.repository,
                &self.project,
                id,
                options,
            )
            .send()
            .await
            .map_err(|error| api_error(operation(), &error))?;
        let updated: GitPullRequest = decode(operation(), answer.into_raw_response())?;
        self.add_missing_reviewers(&active, spec).await?;
        self.add_missing_labels(&active, spec).await?;
        Ok(updated)
    }

    async fn add_missing_reviewers(
        &self,
        active: &GitPullRequest,
        spec: &PullRequestSpec,
    ) -> Result<(), PrError> {
        let missing: Vec<IdentityRef> = spec
            .reviewers
            .iter()
            .filter(|id| {
                !active
                    .reviewers
                    .iter()
                    .any(|reviewer| reviewer.identity_ref.id.eq_ignore_ascii_case(id))
            })
            .map(|id| IdentityRef::new(id.clone()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let id = active.pull_request_id;
        let operation = || {
            format!(
                "add reviewers to pull request {id} from {}",
                spec.source_branch
            )
        };
        let answer = self
            .client
            .pull_request_reviewers_client()
            .create_pull_request_reviewers(
                &self.organization,
                missing,
                &self.repository,
                id,
                &self.project,
            )
            .send()
            .await
            .map_err(|error| api_error(operation(), &error))?;
        let _added: IdentityRefWithVoteList = decode(operation(), answer.into_raw_response())?;
        Ok(())
    }

    async fn add_missing_labels(
        &self,
        active: &GitPullRequest,
        spec: &PullRequestSpec,
    ) -> Result<(), PrError> {
        let id = active.pull_request_id;
        for label in &spec.labels {
            let present = active.labels.iter().any(|known| {
                known
                    .name
                    .as_deref()
                    .is_some_and(|name| name.eq_ignore_ascii_case(label))
            });
            if present {
                continue;
            }
            let operation = || {
                format!(
                    "add label {label} to pull request {id} from {}",
                    spec.source_branch
                )
            };
            let answer = self
                .client
                .pull_request_labels_client()
                .create(
                    &self.organization,
                    WebApiCreateTagRequestData::new(label.clone()),
                    &self.repository,
                    id,
                    &self.project,
                )
                .send()
                .await
                .map_err(|error| api_error(operation(), &error))?;
            let _added: WebApiTagDefinition = decode(operation(), answer.into_raw_response())?;
        }
        Ok(())
    }
}

fn refs_of(spec: &PullRequestSpec) -> (String, String) {
    (
        format!("{BRANCH_REF_PREFIX}{}", spec.source_branch),
        format!("{BRANCH_REF_PREFIX}{}", spec.target_branch),
    )
}

/// Reads a successful answer. Azure DevOps answers a token it does not accept on some routes with
/// 203 and an HTML sign-in page, which would otherwise surface as "expected value at line 1".
fn decode<T: DeserializeOwned>(operation: String, answer: RawResponse) -> Result<T, PrError> {
    let status = u16::from(answer.status());
    if status == 203 {
        return Err(PrError::Api {
            provider: PROVIDER,
            operation,
            status: Some(status),
            message: "Azure DevOps answered with a sign-in page: the token was not accepted"
                .to_owned(),
        });
    }
    serde_json::from_slice(answer.body()).map_err(|error| PrError::Api {
        provider: PROVIDER,
        operation,
        status: Some(status),
        message: format!("the answer could not be read: {error}"),
    })
}

/// Azure DevOps answers 409 with TF401179 (type key `GitPullRequestExistsException`) when an
/// active pull request has the same source and target.
fn is_already_exists(error: &azure_core::Error) -> bool {
    let Some(body) = error_body(error) else {
        return false;
    };
    error.http_status().map(u16::from) == Some(409)
        && (body.get("typeKey").and_then(|key| key.as_str())
            == Some("GitPullRequestExistsException")
            || body
                .get("message")
                .and_then(|message| message.as_str())
                .is_some_and(|message| message.starts_with("TF401179")))
}

/// The JSON body of an HTTP error answer, when it has one.
fn error_body(error: &azure_core::Error) -> Option<serde_json::Value> {
    match error.kind() {
        ErrorKind::HttpResponse {
            raw_response: Some(answer),
            ..
        } => serde_json::from_slice(answer.body()).ok(),
        _ => None,
    }
}

/// Longest part of an answer that is not JSON (an HTML page) kept in a message.
const RAW_MESSAGE_LIMIT: usize = 300;

fn api_error(operation: String, error: &azure_core::Error) -> PrError {
    let message = match error.kind() {
        ErrorKind::HttpResponse { .. } => error_body(error)
            .and_then(|body| {
                body.get("message")
                    .and_then(|message| message.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| {
                let text = error.to_string();
                match text.char_indices().nth(RAW_MESSAGE_LIMIT) {
                    Some((end, _)) => format!("{}…", &text[..end]),
                    None => text,
                }
            }),
        _ => crate::output::error_chain(error),
    };
    PrError::Api {
        provider: PROVIDER,
        operation,
        status: error.http_status().map(u16::from),
        message,
    }
}

/// imagegen's report comment as found on a pull request.
struct ReportComment {
    thread_id: i32,
    comment_id: i32,
    content: String,
}

/// What was being done with the report comment, for errors.
fn report_operation(what: &str, id: i32, spec: &PullRequestSpec) -> String {
    format!(
        "{what} the report comment of pull request {id} from {}",
        spec.source_branch
    )
}

/// A plain text comment holding `content`.
fn text_comment(content: &str) -> Comment {
    let mut comment = Comment::new();
    comment.content = Some(content.to_owned());
    comment.comment_type = Some(comment::CommentType::Text);
    comment
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(known, _)| known == name)
                .map(|(_, value)| value.clone())
        }
    }

    #[test]
    fn the_pipeline_token_wins_over_a_pat() {
        let token = AzureDevOpsToken::from_lookup(lookup_of(&[
            (PAT_VAR, "pat"),
            (SYSTEM_ACCESS_TOKEN_VAR, "oauth"),
        ]))
        .unwrap();
        assert!(
            matches!(&token, AzureDevOpsToken::AccessToken(secret) if secret.expose_secret() == "oauth")
        );
    }

    #[test]
    fn a_blank_pipeline_token_falls_back_to_the_pat() {
        let token = AzureDevOpsToken::from_lookup(lookup_of(&[
            (SYSTEM_ACCESS_TOKEN_VAR, " "),
            (PAT_VAR, "pat"),
        ]))
        .unwrap();
        assert!(matches!(&token, AzureDevOpsToken::Pat(secret) if secret.expose_secret() == "pat"));
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let token = AzureDevOpsToken::Pat(SecretString::from("canary-pat"));
        assert!(!format!("{token:?}").contains("canary-pat"));
        let provider = AzureDevOpsProvider::new(None, "org", "project", "repo", token).unwrap();
        assert!(!format!("{provider:?}").contains("canary-pat"));
    }

    #[test]
    fn the_web_url_names_the_project_and_repository_escaped() {
        let provider = AzureDevOpsProvider::new(
            Some("https://dev.azure.com/"),
            "contoso",
            "Helix Images",
            "osob",
            AzureDevOpsToken::Pat(SecretString::from("pat")),
        )
        .unwrap();
        assert_eq!(
            provider.web_url(42).unwrap(),
            "https://dev.azure.com/contoso/Helix%20Images/_git/osob/pullrequest/42"
        );
    }

    #[test]
    fn a_description_over_the_limit_is_cut_at_a_character() {
        let long = "ü".repeat(BODY_LIMIT + 1);
        assert_eq!(
            crate::pull_request::cap_body(&long, BODY_LIMIT, PROVIDER)
                .chars()
                .count(),
            BODY_LIMIT
        );
        assert_eq!(
            crate::pull_request::cap_body("short", BODY_LIMIT, PROVIDER),
            "short"
        );
    }
}
