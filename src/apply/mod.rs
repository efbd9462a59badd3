//! The apply step of `imagegen reconcile`: polls the jobs the ledger holds as pending, submits
//! what the plan marks, and with `--wait` follows this run's jobs until they end. Every step
//! goes through the ledger writer, so a run killed at any instant is resumed by the next one.

pub mod submission;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use tokio::time::Instant;

use self::submission::{Candidate, Outcome, SharedWriter};
use crate::catalog::Catalog;
use crate::factory::{FactoryClient, FactoryError, JobState, RemoteStatus};
use crate::plan::{self, Plan, PlanOptions, SubmitReason};
use crate::selection::Selection;
use crate::state::{JobStatus, Ledger, LedgerKey, LedgerWriter, StateError, Store};

/// The longest wait between two polls, however long the jobs take.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// How a reconcile is carried out.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub plan: PlanOptions,
    /// How long to wait for another run holding the ledger's lock.
    pub lock_timeout: Duration,
    /// Follow this run's jobs until they end (`--wait`).
    pub wait: Option<WaitOptions>,
}

#[derive(Debug, Clone, Copy)]
pub struct WaitOptions {
    /// Give up waiting (the jobs go on; a later run picks them up) after this long.
    pub timeout: Duration,
    /// The first wait between polls; each further one is half as long again, up to
    /// [`MAX_POLL_INTERVAL`].
    pub poll_interval: Duration,
}

/// The steps of applying, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Asking the service about the jobs the ledger holds as in flight.
    Polling { jobs: usize },
    /// Sending what the plan marks (and intents whose answer was lost).
    Submitting { payloads: usize },
    /// With `--wait`: following this run's jobs until they end.
    Waiting { jobs: usize },
}

/// What the apply step reports as it goes, for progress bars or log lines.
pub trait Progress: Send + Sync {
    /// A step starts; the one before it, if any, is over.
    fn phase(&self, phase: Phase);
    /// A job's status moved.
    fn changed(&self, job: &JobRow, from: JobStatus);
    /// The run sleeps until the next poll; `jobs` are those still pending.
    fn waiting(&self, jobs: &[JobRow], next_poll: Duration);
    /// A poll failed; the job stays as the ledger holds it.
    fn poll_failed(&self, key: &LedgerKey, tracking_id: &str, error: &FactoryError);
    /// The wait is over.
    fn finished(&self);
}

/// What applying did.
#[derive(Debug)]
pub struct Applied {
    /// The plan as carried out: made after the first poll, so it reflects the service.
    pub plan: Plan,
    /// What became of every submission of this run.
    pub outcomes: Vec<(LedgerKey, Outcome)>,
    /// One row per job this run submitted, followed or reports as failed.
    pub jobs: Vec<JobRow>,
    /// Jobs the service could not be asked about, as the last poll left them.
    pub poll_errors: BTreeMap<LedgerKey, PollError>,
    /// Jobs that reported a status the contract does not name, at any poll of this run.
    pub unnamed_statuses: BTreeMap<LedgerKey, UnnamedStatus>,
    /// `--wait` ended at its timeout with jobs still pending.
    pub timed_out: bool,
    /// The ledger as this run left it.
    pub ledger: Ledger,
}

#[derive(Debug, Clone, Serialize)]
pub struct PollError {
    pub tracking_id: String,
    pub message: String,
    /// The error may pass (the service was unreachable or busy).
    pub transient: bool,
}

/// A status the contract does not name, which a job reported: taken as not finished (the
/// contract says to keep polling such a job, and to warn).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnnamedStatus {
    pub tracking_id: String,
    pub status: String,
}

impl UnnamedStatus {
    /// The warning for people, naming the entry it belongs to.
    pub fn warning(&self, key: &LedgerKey) -> String {
        format!(
            "{key}: job {} reports status {:?}, which the contract does not name; taken as not \
             finished, and asked about again at the next poll",
            self.tracking_id, self.status
        )
    }
}

/// What one poll learned besides the states it recorded.
#[derive(Debug, Default)]
struct Polled {
    errors: BTreeMap<LedgerKey, PollError>,
    unnamed: BTreeMap<LedgerKey, UnnamedStatus>,
}

/// One job as the summary table shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRow {
    pub key: LedgerKey,
    pub status: JobStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_id: Option<String>,
    pub image_names: Vec<String>,
    /// From submission to the end, or so far.
    #[serde(skip_serializing_if = "Option::is_none", with = "seconds")]
    pub duration: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub adopted: bool,
}

mod seconds {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => serializer.serialize_some(&duration.as_secs()),
            None => serializer.serialize_none(),
        }
    }
}

impl Applied {
    /// 1 if any job of this run failed, a payload was refused, or a submission or poll had a
    /// lasting problem; else 2 if anything is still pending; else 0.
    pub fn exit_code(&self) -> crate::exit::Exit {
        let failed = self.jobs.iter().any(|job| job.status.is_unsuccessful())
            || !self.plan.refused.is_empty()
            || self.outcomes.iter().any(|(_, outcome)| {
                matches!(
                    outcome,
                    Outcome::Rejected { .. } | Outcome::Refused { .. } | Outcome::Error { .. }
                )
            })
            || self.poll_errors.values().any(|error| !error.transient);
        if failed {
            crate::exit::Exit::Error
        } else if self.is_pending() {
            crate::exit::Exit::Pending
        } else {
            crate::exit::Exit::Ok
        }
    }

    /// A job of this run is still being built, or its submission's answer was lost.
    pub fn is_pending(&self) -> bool {
        self.jobs.iter().any(|job| job.status.is_pending())
    }
}

/// Carries out the plan for the `selection` of `catalog`'s definitions.
pub async fn apply(
    catalog: &Catalog,
    store: &Store,
    client: Arc<FactoryClient>,
    selection: &Selection,
    options: &ApplyOptions,
    progress: &dyn Progress,
) -> anyhow::Result<Applied> {
    let writer = LedgerWriter::open(store, options.lock_timeout, "imagegen reconcile").await?;
    let writer = Arc::new(SharedWriter::new(writer));
    let chosen = |key: &LedgerKey| match key {
        LedgerKey::Definition(id) => selection.matches(id),
        LedgerKey::Manual(_) => selection.is_all(),
    };

    // 1. What the ledger holds as in flight may have moved on since the last run, and a job
    // that ended without its images may list them now.
    let in_flight: Vec<LedgerKey> = writer
        .lock()
        .await
        .ledger()
        .entries()
        .filter(|(key, entry)| entry.status.is_tracked() && chosen(key))
        .map(|(key, _)| key)
        .collect();
    progress.phase(Phase::Polling {
        jobs: in_flight.len(),
    });
    let polled = poll(&client, &writer, &in_flight, progress).await?;
    let mut poll_errors = polled.errors;
    let mut unnamed_statuses = polled.unnamed;

    // 2. Plan from the ledger as it now is, and submit what it marks. Intents an earlier run
    // recorded without an answer are sent again with their key.
    let mut plan = plan::plan(catalog, writer.lock().await.ledger(), options.plan);
    if !selection.is_all() {
        plan.select(|id| selection.matches(id));
    }
    let rendered: BTreeMap<&str, _> = catalog
        .rendered
        .iter()
        .map(|rendered| (rendered.id.as_str(), rendered))
        .collect();
    // A definition's rendered payload as a submission, with whether it is sent deliberately
    // again (`--force`, `--retry-failed`).
    let candidate = |id: &str, force: bool| {
        let rendered = rendered.get(id)?;
        let key = LedgerKey::Definition(rendered.id.clone());
        let candidate = Candidate::from_rendered(key, rendered)
            .allowing_same_name(options.plan.allow_same_name);
        Some((candidate, force))
    };
    let mut candidates: Vec<(Candidate, bool)> = plan
        .submit
        .iter()
        .filter_map(|submission| {
            let force = matches!(
                submission.reason,
                SubmitReason::Forced | SubmitReason::RetryFailed
            );
            candidate(&submission.definition, force)
        })
        .collect();
    candidates.extend(
        plan.pending
            .iter()
            .filter(|job| job.job.status == JobStatus::Submitting)
            .filter_map(|job| candidate(&job.definition, false)),
    );
    progress.phase(Phase::Submitting {
        payloads: candidates.len(),
    });
    let mut outcomes = submission::submit_all(client.clone(), writer.clone(), candidates).await?;

    // The jobs this run answers for: what it submitted, followed, or reports as failed.
    let mut tracked: Vec<LedgerKey> = plan
        .submit
        .iter()
        .map(|submission| &submission.definition)
        .chain(plan.pending.iter().map(|job| &job.definition))
        .chain(plan.failed.iter().map(|job| &job.definition))
        .map(|id| LedgerKey::Definition(id.clone()))
        .collect();
    tracked.extend(in_flight.iter().cloned());
    tracked.sort();
    tracked.dedup();

    // 3. With --wait, follow them until they end.
    let mut timed_out = false;
    if let Some(wait) = options.wait {
        let jobs = rows(&*writer.lock().await, &tracked)
            .iter()
            .filter(|job| job.status.is_pending())
            .count();
        progress.phase(Phase::Waiting { jobs });
        let deadline = Instant::now() + wait.timeout;
        let mut interval = wait.poll_interval;
        let mut next_poll = Instant::now() + interval;
        loop {
            let pending = rows(&*writer.lock().await, &tracked)
                .into_iter()
                .filter(|job| job.status.is_pending())
                .collect::<Vec<_>>();
            if pending.is_empty() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                timed_out = true;
                break;
            }
            let sleep = next_poll.saturating_duration_since(now).min(deadline - now);
            progress.waiting(&pending, sleep);
            tokio::time::sleep(sleep).await;
            interval = interval
                .mul_f64(1.5)
                .min(MAX_POLL_INTERVAL.max(wait.poll_interval));
            // The next poll is due an interval after this one starts, not after it ends: a
            // round whose stragglers wait out their retries does not push the schedule back.
            next_poll = Instant::now() + interval;
            // Submissions whose answer was lost are sent again with the same key.
            let resend: Vec<(Candidate, bool)> = pending
                .iter()
                .filter(|job| job.status == JobStatus::Submitting)
                .filter_map(|job| match &job.key {
                    LedgerKey::Definition(id) => candidate(id, false),
                    LedgerKey::Manual(_) => None,
                })
                .collect();
            if !resend.is_empty() {
                let resent = submission::submit_all(client.clone(), writer.clone(), resend).await?;
                for (key, outcome) in resent {
                    match outcomes.iter_mut().find(|(known, _)| *known == key) {
                        Some((_, earlier)) => *earlier = outcome,
                        None => outcomes.push((key, outcome)),
                    }
                }
            }
            let polled: Vec<LedgerKey> = pending.iter().map(|job| job.key.clone()).collect();
            let answers = poll(&client, &writer, &polled, progress).await?;
            for key in &polled {
                poll_errors.remove(key);
            }
            poll_errors.extend(answers.errors);
            unnamed_statuses.extend(answers.unnamed);
        }
        progress.finished();
    }
    let writer = writer.lock().await;
    let jobs = rows(&writer, &tracked);
    Ok(Applied {
        plan,
        outcomes,
        jobs,
        poll_errors,
        unnamed_statuses,
        timed_out,
        ledger: writer.ledger().clone(),
    })
}

/// Asks the service about every job of `keys` the ledger tracks, and records the answers in
/// one ledger write. Returns the jobs that could not be asked about, and those that reported a
/// status the contract does not name.
async fn poll(
    client: &Arc<FactoryClient>,
    writer: &Arc<SharedWriter>,
    keys: &[LedgerKey],
    progress: &dyn Progress,
) -> Result<Polled, StateError> {
    let asked: Vec<(LedgerKey, String, JobRow)> = {
        let writer = writer.lock().await;
        keys.iter()
            .filter_map(|key| {
                let entry = writer.ledger().entry(key)?;
                let tracking_id = entry.tracking_id.clone()?;
                entry
                    .status
                    .is_tracked()
                    .then(|| (key.clone(), tracking_id, row(key, entry, Timestamp::now())))
            })
            .collect()
    };
    // Every poll starts at once: the client's limiter bounds the requests in flight, and a
    // poll waiting out a backoff holds no slot there.
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (_, tracking_id, _)) in asked.iter().enumerate() {
        let client = client.clone();
        let tracking_id = tracking_id.clone();
        tasks.spawn(async move { (index, client.job(&tracking_id).await) });
    }
    let mut answers: Vec<(usize, Result<JobState, FactoryError>)> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        answers.push(joined.expect("a poll does not panic"));
    }
    answers.sort_by_key(|(index, _)| *index);
    let mut polled = Polled::default();
    let mut states = Vec::new();
    for (index, answer) in answers {
        let (key, tracking_id, before) = &asked[index];
        match answer {
            Ok(state) => {
                if let RemoteStatus::Other(status) = &state.status {
                    polled.unnamed.insert(
                        key.clone(),
                        UnnamedStatus {
                            tracking_id: tracking_id.clone(),
                            status: status.clone(),
                        },
                    );
                }
                states.push((key.clone(), state, before.status));
            }
            Err(error) => {
                progress.poll_failed(key, tracking_id, &error);
                polled.errors.insert(
                    key.clone(),
                    PollError {
                        tracking_id: tracking_id.clone(),
                        message: error.to_string(),
                        transient: error.is_transient(),
                    },
                );
            }
        }
    }
    if states.is_empty() {
        return Ok(polled);
    }
    let mut writer = writer.lock().await;
    let now = Timestamp::now();
    writer
        .update(|ledger| {
            for (key, state, _) in &states {
                if let Some(entry) = ledger.entry_mut(key)
                    // Only the job the ledger still tracks: an older job's news is not this
                    // entry's.
                    && entry.tracking_id.as_deref() == Some(state.tracking_id.as_str())
                {
                    submission::record_state(entry, state, now);
                }
            }
        })
        .await?;
    for (key, _, before) in &states {
        if let Some(entry) = writer.ledger().entry(key)
            && entry.status != *before
        {
            progress.changed(&row(key, entry, now), *before);
        }
    }
    Ok(polled)
}

fn rows(writer: &LedgerWriter, keys: &[LedgerKey]) -> Vec<JobRow> {
    let now = Timestamp::now();
    keys.iter()
        .filter_map(|key| Some(row(key, writer.ledger().entry(key)?, now)))
        .collect()
}

fn row(key: &LedgerKey, entry: &crate::state::LedgerEntry, now: Timestamp) -> JobRow {
    let end = entry.completed_at.unwrap_or(now);
    let duration = entry
        .submitted_at
        .and_then(|start| Duration::try_from(end.duration_since(start)).ok());
    JobRow {
        key: key.clone(),
        status: entry.status,
        tracking_id: entry.tracking_id.clone(),
        image_names: if entry.image_names.is_empty() {
            crate::definitions::custom_image_names(&entry.payload.to_value())
        } else {
            entry.image_names.clone()
        },
        duration,
        message: entry.message.clone(),
        adopted: entry.adopted,
    }
}
