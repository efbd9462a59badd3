//! Image Factory's wire format: routes, headers and the JSON bodies of the contract, shared by
//! the client and the emulator so that the two cannot drift apart.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The route jobs are submitted to, under the service's base URL.
pub const JOBS_ROUTE: &str = "api/jobs";

/// The header that makes a repeated submission return the first job instead of a new one.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// Which Azure AD token endpoint is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenVersion {
    /// `{authority}/{tenant}/oauth2/token` with `resource=`.
    V1,
    /// `{authority}/{tenant}/oauth2/v2.0/token` with `scope={resource}/.default`.
    #[default]
    V2,
}

impl TokenVersion {
    /// The token route under the authority, for a tenant.
    pub fn route(self, tenant: &str) -> String {
        match self {
            Self::V1 => format!("{tenant}/oauth2/token"),
            Self::V2 => format!("{tenant}/oauth2/v2.0/token"),
        }
    }

    /// The v2 scope that stands for a resource.
    pub fn scope(resource: &str) -> String {
        format!("{}/.default", resource.trim_end_matches('/'))
    }
}

impl std::str::FromStr for TokenVersion {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "v1" | "1" => Ok(Self::V1),
            "v2" | "2" | "v2.0" => Ok(Self::V2),
            other => Err(format!("{other:?} is not a token version: use v1 or v2")),
        }
    }
}

/// A token endpoint's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub token_type: String,
    /// Seconds from now; v1 endpoints send it as a string.
    #[serde(deserialize_with = "number_or_string")]
    pub expires_in: u64,
    pub access_token: String,
}

/// A token endpoint's refusal.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokenErrorResponse {
    pub error: String,
    #[serde(default)]
    pub error_description: String,
}

fn number_or_string<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Text(String),
    }
    match Either::deserialize(deserializer)? {
        Either::Number(number) => Ok(number),
        Either::Text(text) => text.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// The answer to a submission: 202 for a new job, 200 for the job an earlier submission with
/// the same idempotency key started.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitResponse {
    pub tracking_id: String,
    pub status: RemoteStatus,
}

/// A job as the service reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobState {
    pub tracking_id: String,
    pub status: RemoteStatus,
    #[serde(default)]
    pub message: String,
    /// Empty until the job succeeded.
    #[serde(default)]
    pub images: Vec<BuiltImage>,
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
}

/// One image a job produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuiltImage {
    pub name: String,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub resource_id: Option<String>,
}

/// A job's status. A status the contract does not name is kept as sent and is not terminal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RemoteStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
    Other(String),
}

impl RemoteStatus {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Queued => "Queued",
            Self::Running => "Running",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Canceled => "Canceled",
            Self::Other(other) => other,
        }
    }

    /// The job will not change any more.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Canceled)
    }
}

impl std::fmt::Display for RemoteStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for RemoteStatus {
    fn from(text: &str) -> Self {
        match text {
            "Queued" => Self::Queued,
            "Running" => Self::Running,
            "Succeeded" => Self::Succeeded,
            "Failed" => Self::Failed,
            "Canceled" => Self::Canceled,
            other => Self::Other(other.to_string()),
        }
    }
}

impl Serialize for RemoteStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RemoteStatus {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Self::from(text.as_str()))
    }
}

/// The body of a 4xx answer from the jobs API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceErrorResponse {
    pub error: ServiceError,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceError {
    pub code: String,
    pub message: String,
}

impl ServiceErrorResponse {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            error: ServiceError {
                code: code.to_string(),
                message: message.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_routes_follow_the_version() {
        assert_eq!(TokenVersion::V2.route("t"), "t/oauth2/v2.0/token");
        assert_eq!(TokenVersion::V1.route("t"), "t/oauth2/token");
        assert_eq!(
            TokenVersion::scope("api://factory/"),
            "api://factory/.default"
        );
        assert_eq!("V1".parse::<TokenVersion>(), Ok(TokenVersion::V1));
        assert!("v3".parse::<TokenVersion>().is_err());
    }

    #[test]
    fn job_state_reads_the_contract_example() {
        let state: JobState = serde_json::from_str(
            r#"{"trackingId":"5f0c","status":"Succeeded","message":"",
                "images":[{"name":"Helix-X_1","location":"westus2","resourceId":"/subscriptions/x"}],
                "createdAt":"2026-11-23T10:00:00Z","updatedAt":"2026-11-23T12:41:07Z"}"#,
        )
        .unwrap();
        assert_eq!(state.status, RemoteStatus::Succeeded);
        assert_eq!(state.images[0].name, "Helix-X_1");
        let odd: JobState =
            serde_json::from_str(r#"{"trackingId":"x","status":"Validating"}"#).unwrap();
        assert_eq!(odd.status, RemoteStatus::Other("Validating".into()));
        assert!(!odd.status.is_terminal());
    }

    #[test]
    fn token_lifetime_may_be_a_string() {
        let token: TokenResponse = serde_json::from_str(
            r#"{"token_type":"Bearer","expires_in":"3599","access_token":"a"}"#,
        )
        .unwrap();
        assert_eq!(token.expires_in, 3599);
    }
}
