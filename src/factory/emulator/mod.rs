//! The Image Factory emulator: serves the token endpoint and the jobs API of the contract on
//! loopback, moves jobs along on its own clock, and misbehaves on request (throttling, server
//! errors, slow answers, reset connections, early token expiry, failing builds, replayed
//! submissions, jobs that read Succeeded without images or with a status the contract does not
//! name) so that tests, the demo and a first responder can see every path of the client
//! without the real service.

mod jobs;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;

use self::jobs::{Shared, job_state};
use super::wire::JobState;

/// The identity the emulator accepts unless told otherwise.
pub const DEFAULT_TENANT_ID: &str = "emulator-tenant";
pub const DEFAULT_CLIENT_ID: &str = "emulator-client";
pub const DEFAULT_CLIENT_SECRET: &str = "emulator-secret";
pub const DEFAULT_RESOURCE_ID: &str = "api://image-factory-emulator";

/// How the emulator behaves.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The port to listen on, on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub resource_id: String,
    /// Other applications of the tenant: Azure AD issues tokens for them too, and the jobs API
    /// refuses those tokens (401), as the real service refuses a token for another audience.
    pub other_resources: Vec<String>,
    /// How long a new job stays Queued, then Running.
    pub queued_for: Duration,
    pub running_for: Duration,
    /// Jobs producing an image whose name matches fail instead of succeeding.
    pub fail_images: Option<Regex>,
    /// Tokens stop working after this long, whatever `expires_in` claimed.
    pub token_lifetime: Duration,
    /// The `expires_in` the token endpoint answers.
    pub token_expires_in: u64,
    /// Issued tokens start with this, so tests can search output for them.
    pub token_prefix: String,
    /// A share (0 to 1) of jobs API requests answered with one of `fault_kinds`.
    pub fault_rate: f64,
    pub fault_kinds: Vec<Fault>,
    /// Seeds the choice of which requests misbehave, so a run can be repeated.
    pub seed: u64,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            port: 0,
            tenant_id: DEFAULT_TENANT_ID.to_string(),
            client_id: DEFAULT_CLIENT_ID.to_string(),
            client_secret: DEFAULT_CLIENT_SECRET.to_string(),
            resource_id: DEFAULT_RESOURCE_ID.to_string(),
            other_resources: Vec::new(),
            queued_for: Duration::from_secs(5),
            running_for: Duration::from_secs(30),
            fail_images: None,
            token_lifetime: Duration::from_secs(3599),
            token_expires_in: 3599,
            token_prefix: "emulator-token-".to_string(),
            fault_rate: 0.0,
            fault_kinds: Vec::new(),
            seed: 1,
        }
    }
}

/// A way to misbehave, for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After` in seconds (or without one).
    Throttle { retry_after: Option<u64> },
    /// A 5xx answer.
    ServerError(u16),
    /// Any status with a JSON body, such as a 403.
    Status { status: u16, body: String },
    /// Answer only after this long (longer than the client waits, to cause a timeout).
    Slow(Duration),
    /// Act on the request at once (start the job), but hold the answer this long: the client
    /// can die, or give up, after the job exists and before it learns the tracking id.
    LateAnswer(Duration),
    /// Drop the connection without an answer.
    Reset,
    /// A submission is answered as the contract's replay of an earlier one that has since
    /// finished: `200 {trackingId, status: "Succeeded"}`, and the job is done. What a resend
    /// after a lost answer, or after a lost ledger, meets. Submissions only.
    Replay,
    /// A job's state reads `Succeeded` with no images (the service has not listed them yet);
    /// from then on the job is done and names its images. Job states only.
    NoImages,
    /// A job's state reads with this status, which the contract may not name (`Paused`).
    /// Job states only.
    ReportStatus(String),
}

impl Fault {
    /// Whether the fault can change the answer to a request with this method: the ones about
    /// submissions wait for a POST, the ones about job states for a GET.
    pub fn applies_to(&self, method: &str) -> bool {
        match self {
            Self::Replay => method == "POST",
            Self::NoImages | Self::ReportStatus(_) => method == "GET",
            _ => true,
        }
    }
}

impl std::str::FromStr for Fault {
    type Err = String;

    /// `429`, `429:7` (Retry-After), `500` (any 5xx), `slow:30s`, `late:30s`, `reset`,
    /// `replay`, `no-images`, `status:Paused`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (kind, argument) = match text.split_once(':') {
            Some((kind, argument)) => (kind, Some(argument)),
            None => (text, None),
        };
        match (kind, argument) {
            ("429", None) => Ok(Self::Throttle { retry_after: None }),
            ("429", Some(seconds)) => seconds
                .parse()
                .map(|seconds| Self::Throttle {
                    retry_after: Some(seconds),
                })
                .map_err(|_| format!("{seconds:?} is not a number of seconds")),
            ("slow", argument) => {
                let duration = argument.unwrap_or("30s");
                crate::duration::parse(duration).map(Self::Slow)
            }
            ("late", argument) => {
                let duration = argument.unwrap_or("30s");
                crate::duration::parse(duration).map(Self::LateAnswer)
            }
            ("reset", None) => Ok(Self::Reset),
            ("replay", None) => Ok(Self::Replay),
            ("no-images", None) => Ok(Self::NoImages),
            ("status", Some(status)) if !status.trim().is_empty() => {
                Ok(Self::ReportStatus(status.trim().to_string()))
            }
            (status, None) if status.starts_with('5') => status
                .parse()
                .ok()
                .filter(|status| (500..600).contains(status))
                .map(Self::ServerError)
                .ok_or_else(|| format!("{status:?} is not a 5xx status")),
            _ => Err(format!(
                "{text:?} is not a fault: use 429, 429:SECONDS, 500 (any 5xx), slow:DURATION, \
                 late:DURATION, reset, replay, no-images or status:NAME"
            )),
        }
    }
}

/// Which requests an injected fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Token,
    Jobs,
}

/// One request the emulator received, as tests read it back.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub route: Option<&'static str>,
    pub idempotency_key: Option<String>,
    /// The JSON body of a submission; form fields (without the secret) of a token request.
    pub body: Option<Value>,
    /// The answer's status; `None` for a reset connection.
    pub status: Option<u16>,
    pub fault: Option<String>,
    /// Milliseconds since the emulator started.
    pub at_ms: u64,
}

impl LoggedRequest {
    pub fn is_submission(&self) -> bool {
        self.method == "POST" && self.route == Some("jobs")
    }

    pub fn is_token_request(&self) -> bool {
        self.route == Some("token")
    }

    /// The `CustomImageName`s of a submission's payload.
    pub fn image_names(&self) -> Vec<String> {
        self.body
            .as_ref()
            .map(crate::definitions::custom_image_names)
            .unwrap_or_default()
    }
}

/// A running emulator. Dropping it stops it.
pub struct Emulator {
    address: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Set when the emulator runs on a runtime of its own (see [`Emulator::start_in_background`]).
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Emulator {
    /// Binds 127.0.0.1 and serves on the current tokio runtime.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", config.port)).await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(server::serve(listener, shared.clone(), stopped));
        Ok(Self {
            address,
            shared,
            stop: Some(stop),
            thread: None,
        })
    }

    /// Starts the emulator on a thread with its own runtime, for callers without one (such as
    /// tests that run the imagegen binary against it).
    pub fn start_in_background(config: EmulatorConfig) -> std::io::Result<Self> {
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("image-factory-emulator".into())
            .spawn(move || {
                // Its own runtime, not the process's: the emulator must keep answering while
                // the caller is blocked outside any runtime, waiting for the jobs it serves.
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = sender.send(Err(error));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match Emulator::start(config).await {
                        Ok(mut emulator) => {
                            let stopped = emulator.stop.take();
                            let (stop, wait) = tokio::sync::oneshot::channel::<()>();
                            let _ =
                                sender.send(Ok((emulator.address, emulator.shared.clone(), stop)));
                            let _ = wait.await;
                            drop(stopped);
                        }
                        Err(error) => {
                            let _ = sender.send(Err(error));
                        }
                    }
                });
            })?;
        let (address, shared, stop) = receiver
            .recv()
            .map_err(|_| std::io::Error::other("the emulator thread ended before it started"))??;
        Ok(Self {
            address,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The base URL of the jobs API, and of the token endpoint (the emulator serves both).
    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }

    pub fn config(&self) -> &EmulatorConfig {
        &self.shared.config
    }

    /// The environment imagegen needs to use this emulator.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        let config = &self.shared.config;
        vec![
            (super::URL_VAR, self.url()),
            (super::AUTHORITY_VAR, self.url()),
            (super::auth::TENANT_ID_VAR, config.tenant_id.clone()),
            (super::auth::CLIENT_ID_VAR, config.client_id.clone()),
            (super::auth::CLIENT_SECRET_VAR, config.client_secret.clone()),
            (super::auth::RESOURCE_ID_VAR, config.resource_id.clone()),
        ]
    }

    /// The identity this emulator accepts, for a caller in the same process.
    pub fn credentials(&self) -> super::Credentials {
        let config = &self.shared.config;
        super::Credentials::new(
            config.tenant_id.clone(),
            config.client_id.clone(),
            secrecy::SecretString::from(config.client_secret.clone()),
            config.resource_id.clone(),
        )
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.clone()
    }

    /// Makes the next request to `route` misbehave as `fault` (queued after earlier ones); a
    /// fault about submissions waits for the next POST, one about job states for the next GET.
    pub fn inject(&self, route: Route, fault: Fault) {
        self.shared.lock().scripted.push_back((route, fault));
    }

    /// Makes every token issued so far stop working, as if they had expired early.
    pub fn expire_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Moves the emulator's clock forward: jobs progress and tokens age as if time had passed.
    pub fn skip(&self, duration: Duration) {
        self.shared.lock().skipped += duration;
    }

    /// A job's state as the API would report it.
    pub fn job(&self, tracking_id: &str) -> Option<JobState> {
        let inner = self.shared.lock();
        let now = self.shared.now(&inner);
        inner
            .jobs
            .get(tracking_id)
            .map(|job| job_state(&self.shared.config, job, now))
    }

    /// How many jobs were started (not counting repeats recognised by idempotency key).
    pub fn job_count(&self) -> usize {
        self.shared.lock().jobs.len()
    }

    /// The payloads of every job started, in no particular order.
    pub fn payloads(&self) -> Vec<Value> {
        self.shared
            .lock()
            .jobs
            .values()
            .map(|job| job.payload.clone())
            .collect()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_from_their_short_forms() {
        assert_eq!(
            "429:3".parse::<Fault>(),
            Ok(Fault::Throttle {
                retry_after: Some(3)
            })
        );
        assert_eq!("503".parse::<Fault>(), Ok(Fault::ServerError(503)));
        assert_eq!("reset".parse::<Fault>(), Ok(Fault::Reset));
        assert_eq!(
            "slow:2s".parse::<Fault>(),
            Ok(Fault::Slow(Duration::from_secs(2)))
        );
        assert_eq!("replay".parse::<Fault>(), Ok(Fault::Replay));
        assert_eq!("no-images".parse::<Fault>(), Ok(Fault::NoImages));
        assert_eq!(
            "status:Paused".parse::<Fault>(),
            Ok(Fault::ReportStatus("Paused".into()))
        );
        assert!("status:".parse::<Fault>().is_err());
        assert!(Fault::Replay.applies_to("POST") && !Fault::Replay.applies_to("GET"));
        assert!(Fault::NoImages.applies_to("GET") && !Fault::NoImages.applies_to("POST"));
        assert!(Fault::Reset.applies_to("GET") && Fault::Reset.applies_to("POST"));
        assert!("404".parse::<Fault>().is_err());
        assert!("599x".parse::<Fault>().is_err());
    }
}
