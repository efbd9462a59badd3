//! The emulator's memory and its job model: the jobs it started and where each stands on its
//! own clock, the idempotency keys that send a resend back to its job, the tokens it issued,
//! the request log and the faults waiting for their request. No HTTP here: the server turns
//! these answers into responses.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;
use tokio::time::Instant;

use super::{EmulatorConfig, Fault, LoggedRequest, Route};
use crate::factory::wire::{BuiltImage, JobState, RemoteStatus, SubmitResponse};

/// How long an idempotency key sends a resend back to the job it started.
const KEY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

pub(super) struct Job {
    pub(super) tracking_id: String,
    pub(super) payload: Value,
    pub(super) created: Instant,
    pub(super) created_at: Timestamp,
    pub(super) image_names: Vec<String>,
    pub(super) location: String,
    pub(super) subscription: String,
    /// Added to the job's age: a fault can move a job to its end at once.
    pub(super) ahead: Duration,
}

pub(super) struct IssuedToken {
    pub(super) valid_until: Instant,
    /// The resource the token was asked for: the jobs API takes only its own.
    pub(super) audience: String,
}

/// What the server's handlers and the [`super::Emulator`] handle share.
pub(super) struct Shared {
    pub(super) config: EmulatorConfig,
    pub(super) started: Instant,
    inner: Mutex<Inner>,
}

pub(super) struct Inner {
    pub(super) jobs: HashMap<String, Job>,
    /// Idempotency key -> tracking id and when it was first used.
    keys: HashMap<String, (String, Instant)>,
    pub(super) tokens: HashMap<String, IssuedToken>,
    pub(super) tokens_issued: u64,
    pub(super) log: Vec<LoggedRequest>,
    pub(super) scripted: VecDeque<(Route, Fault)>,
    pub(super) random: fastrand::Rng,
    /// Added to the real clock, so tests can skip ahead.
    pub(super) skipped: Duration,
}

/// How a submission was taken.
pub(super) enum Submitted {
    /// A new job, just queued.
    New(SubmitResponse),
    /// A resend: its idempotency key names a job started within [`KEY_WINDOW`].
    Known(SubmitResponse),
}

impl Shared {
    pub(super) fn new(config: EmulatorConfig) -> Self {
        let seed = config.seed;
        Self {
            config,
            started: Instant::now(),
            inner: Mutex::new(Inner {
                jobs: HashMap::new(),
                keys: HashMap::new(),
                tokens: HashMap::new(),
                tokens_issued: 0,
                log: Vec::new(),
                scripted: VecDeque::new(),
                random: fastrand::Rng::with_seed(seed),
                skipped: Duration::ZERO,
            }),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic in one handler must not take the whole emulator down with it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn now(&self, inner: &Inner) -> Instant {
        Instant::now() + inner.skipped
    }

    /// The fault for the next request to `route` with `method`: the first scripted one that
    /// applies to it, or else by chance one of `fault_kinds` (answered as usual when the one
    /// drawn does not apply).
    pub(super) fn next_fault(&self, route: Route, method: &str) -> Option<Fault> {
        let mut inner = self.lock();
        if let Some(position) = inner
            .scripted
            .iter()
            .position(|(r, fault)| *r == route && fault.applies_to(method))
        {
            return inner.scripted.remove(position).map(|(_, fault)| fault);
        }
        let config = &self.config;
        if route == Route::Jobs
            && !config.fault_kinds.is_empty()
            && inner.random.f64() < config.fault_rate
        {
            let index = inner.random.usize(..config.fault_kinds.len());
            let fault = &config.fault_kinds[index];
            return fault.applies_to(method).then(|| fault.clone());
        }
        None
    }

    /// Moves a job to its end at once, as if its build had run.
    pub(super) fn finish(&self, tracking_id: &str) {
        let config = &self.config;
        if let Some(job) = self.lock().jobs.get_mut(tracking_id) {
            job.ahead = config.queued_for + config.running_for;
        }
    }

    /// Queues a job for a checked `payload`, or, when `key` was first used within
    /// [`KEY_WINDOW`], answers with the job it started then, as it stands now.
    pub(super) fn submit(
        &self,
        inner: &mut Inner,
        payload: Value,
        key: Option<String>,
    ) -> Submitted {
        let now = self.now(inner);
        if let Some(key) = &key
            && let Some((tracking_id, first_used)) = inner.keys.get(key)
            && now.duration_since(*first_used) < KEY_WINDOW
        {
            let tracking_id = tracking_id.clone();
            let status = inner
                .jobs
                .get(&tracking_id)
                .map_or(RemoteStatus::Queued, |job| {
                    job_state(&self.config, job, now).status
                });
            return Submitted::Known(SubmitResponse {
                tracking_id,
                status,
            });
        }
        let tracking_id = format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            inner.random.u32(..),
            inner.random.u16(..),
            inner.random.u16(..),
            inner.random.u16(..),
            inner.random.u64(..) & 0xffff_ffff_ffff
        );
        let image_names = crate::definitions::custom_image_names(&payload);
        let location = payload
            .get("Location")
            .and_then(Value::as_str)
            .unwrap_or("westus2")
            .to_string();
        let subscription = payload
            .pointer("/Destination/0/SubId")
            .and_then(Value::as_str)
            .unwrap_or("00000000-0000-0000-0000-000000000000")
            .to_string();
        inner.jobs.insert(
            tracking_id.clone(),
            Job {
                tracking_id: tracking_id.clone(),
                payload,
                created: now,
                created_at: Timestamp::now(),
                image_names,
                location,
                subscription,
                ahead: Duration::ZERO,
            },
        );
        if let Some(key) = key {
            inner.keys.insert(key, (tracking_id.clone(), now));
        }
        Submitted::New(SubmitResponse {
            tracking_id,
            status: RemoteStatus::Queued,
        })
    }
}

/// What the emulator insists on, as the real service would: an object with destinations that
/// name their images.
pub(super) fn check_payload(payload: &Value) -> Result<(), String> {
    let Some(object) = payload.as_object() else {
        return Err("the payload must be a JSON object".to_string());
    };
    let Some(destinations) = object.get("Destination").and_then(Value::as_array) else {
        return Err("Destination is required and must be an array".to_string());
    };
    if destinations.is_empty() {
        return Err("Destination must name at least one image".to_string());
    }
    for (index, destination) in destinations.iter().enumerate() {
        match destination.get("CustomImageName").and_then(Value::as_str) {
            Some(name) if !name.trim().is_empty() => {
                if name.contains('{') || name.contains('}') {
                    return Err(format!(
                        "Destination[{index}].CustomImageName {name:?} holds a brace: \
                         was a placeholder left unrendered?"
                    ));
                }
            }
            _ => {
                return Err(format!("Destination[{index}].CustomImageName is required"));
            }
        }
    }
    Ok(())
}

/// Where a job stands at `now`: Queued, then Running, then Succeeded or Failed.
pub(super) fn job_state(config: &EmulatorConfig, job: &Job, now: Instant) -> JobState {
    let age = now.saturating_duration_since(job.created) + job.ahead;
    let at = |offset: Duration| {
        job.created_at
            .checked_add(jiff::SignedDuration::try_from(offset).unwrap_or_default())
            .unwrap_or(job.created_at)
    };
    let running_from = config.queued_for;
    let done_at = config.queued_for + config.running_for;
    let failing = config
        .fail_images
        .as_ref()
        .and_then(|pattern| job.image_names.iter().find(|name| pattern.is_match(name)));
    let (status, message, images, updated) = if age < running_from {
        (
            RemoteStatus::Queued,
            String::new(),
            Vec::new(),
            at(Duration::ZERO),
        )
    } else if age < done_at {
        (
            RemoteStatus::Running,
            "building".to_string(),
            Vec::new(),
            at(running_from),
        )
    } else if let Some(name) = failing {
        (
            RemoteStatus::Failed,
            format!(
                "the build of {name} failed: the Visual Studio installer exited with code 1603 \
                 (emulated failure)"
            ),
            Vec::new(),
            at(done_at),
        )
    } else {
        let images = job
            .image_names
            .iter()
            .map(|name| BuiltImage {
                name: name.clone(),
                location: Some(job.location.clone()),
                resource_id: Some(format!(
                    "/subscriptions/{}/resourceGroups/helix-images/providers/Microsoft.Compute/images/{name}",
                    job.subscription
                )),
            })
            .collect();
        (RemoteStatus::Succeeded, String::new(), images, at(done_at))
    };
    JobState {
        tracking_id: job.tracking_id.clone(),
        status,
        message,
        images,
        created_at: Some(job.created_at),
        updated_at: Some(updated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;
    use serde_json::json;

    #[test]
    fn payloads_must_name_their_images() {
        assert!(check_payload(&json!([])).is_err());
        assert!(check_payload(&json!({"Destination": []})).is_err());
        assert!(
            check_payload(&json!({"Destination": [{"CustomImageName": "X_{V}"}]}))
                .unwrap_err()
                .contains("placeholder")
        );
        assert!(check_payload(&json!({"Destination": [{"CustomImageName": "X_1"}]})).is_ok());
    }

    #[test]
    fn jobs_move_along_the_clock_and_fail_on_request() {
        let config = EmulatorConfig {
            queued_for: Duration::from_secs(1),
            running_for: Duration::from_secs(2),
            fail_images: Some(Regex::new("Broken").unwrap()),
            ..EmulatorConfig::default()
        };
        let created = Instant::now();
        let job = |name: &str| Job {
            tracking_id: "t".into(),
            payload: json!({}),
            created,
            created_at: Timestamp::UNIX_EPOCH,
            image_names: vec![name.to_string()],
            location: "westus2".into(),
            subscription: "s".into(),
            ahead: Duration::ZERO,
        };
        let good = job("Helix-Good_1");
        let at = |seconds: u64| created + Duration::from_secs(seconds);
        assert_eq!(
            job_state(&config, &good, at(0)).status,
            RemoteStatus::Queued
        );
        assert_eq!(
            job_state(&config, &good, at(1)).status,
            RemoteStatus::Running
        );
        let done = job_state(&config, &good, at(3));
        assert_eq!(done.status, RemoteStatus::Succeeded);
        assert_eq!(done.images[0].name, "Helix-Good_1");
        let failed = job_state(&config, &job("Helix-Broken_1"), at(3));
        assert_eq!(failed.status, RemoteStatus::Failed);
        assert!(failed.message.contains("Helix-Broken_1") && failed.images.is_empty());
    }
}
