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

use self::submission::{Candidate, Outcome};
use crate::catalog::Catalog;
use crate::definitions::Rendered;
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
    let writer = Arc::new(writer);
    let payloads = Payloads::new(catalog, options.plan.allow_same_name);
    let run = Run {
        client: &client,
        writer: &writer,
        payloads: &payloads,
        progress,
    };

    // 1. What the ledger holds as in flight may have moved on since the last run, and a job
    // that ended without its images may list them now.
    let in_flight = in_flight(&writer, selection).await;
    progress.phase(Phase::Polling {
        jobs: in_flight.len(),
    });
    let polled = poll(&client, &writer, &in_flight, progress).await?;

    // 2. Plan from the ledger as it now is, and submit what it marks. Intents an earlier run
    // recorded without an answer are sent again with their key.
    let plan =
        writer.with_ledger(|ledger| plan::plan_selected(catalog, ledger, options.plan, selection));
    let candidates = payloads.for_plan(&plan);
    progress.phase(Phase::Submitting {
        payloads: candidates.len(),
    });
    let outcomes = run.submit(candidates).await?;
    let mut followed = Followed {
        outcomes,
        poll_errors: polled.errors,
        unnamed_statuses: polled.unnamed,
        timed_out: false,
    };

    // 3. With --wait, follow the jobs this run answers for until they end.
    let tracked = answered_for(&plan, &in_flight);
    if let Some(wait) = options.wait {
        run.follow(&tracked, wait, &mut followed).await?;
    }
    writer.finish().await;
    Ok(Applied {
        plan,
        outcomes: followed.outcomes,
        jobs: rows(&writer, &tracked),
        poll_errors: followed.poll_errors,
        unnamed_statuses: followed.unnamed_statuses,
        timed_out: followed.timed_out,
        ledger: writer.ledger(),
    })
}

/// The entries of the selection whose job the ledger tracks: pending, or ended without the
/// images it claims. A manual entry belongs to every definition, so only to a run of them all.
async fn in_flight(writer: &LedgerWriter, selection: &Selection) -> Vec<LedgerKey> {
    let chosen = |key: &LedgerKey| match key {
        LedgerKey::Definition(id) => selection.matches(id),
        LedgerKey::Manual(_) => selection.is_all(),
    };
    writer.with_ledger(|ledger| {
        ledger
            .entries()
            .filter(|(key, entry)| entry.status.is_tracked() && chosen(key))
            .map(|(key, _)| key)
            .collect()
    })
}

/// The jobs a run answers for: what its plan submits, follows or reports as failed, and what
/// it found in flight.
fn answered_for(plan: &Plan, in_flight: &[LedgerKey]) -> Vec<LedgerKey> {
    let mut keys: Vec<LedgerKey> = plan
        .submit
        .iter()
        .map(|submission| &submission.definition)
        .chain(plan.pending.iter().map(|job| &job.definition))
        .chain(plan.failed.iter().map(|job| &job.definition))
        .map(|id| LedgerKey::Definition(id.clone()))
        .chain(in_flight.iter().cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The catalog's rendered payloads by definition id, ready to become submissions.
struct Payloads<'a> {
    rendered: BTreeMap<&'a str, &'a Rendered>,
    allow_same_name: bool,
}

impl<'a> Payloads<'a> {
    fn new(catalog: &'a Catalog, allow_same_name: bool) -> Self {
        Self {
            rendered: catalog
                .rendered
                .iter()
                .map(|rendered| (rendered.id.as_str(), rendered))
                .collect(),
            allow_same_name,
        }
    }

    /// A definition's rendered payload as a submission, with whether it is sent deliberately
    /// again (`--force`, `--retry-failed`).
    fn candidate(&self, id: &str, force: bool) -> Option<(Candidate, bool)> {
        let rendered = self.rendered.get(id)?;
        let key = LedgerKey::Definition(rendered.id.clone());
        let candidate =
            Candidate::from_rendered(key, rendered).allowing_same_name(self.allow_same_name);
        Some((candidate, force))
    }

    /// What the plan marks to submit, then the intents an earlier run recorded without their
    /// answer.
    fn for_plan(&self, plan: &Plan) -> Vec<(Candidate, bool)> {
        let marked = plan.submit.iter().filter_map(|submission| {
            let force = matches!(
                submission.reason,
                SubmitReason::Forced | SubmitReason::RetryFailed
            );
            self.candidate(&submission.definition, force)
        });
        let unanswered = plan
            .pending
            .iter()
            .filter(|job| job.job.status == JobStatus::Submitting)
            .filter_map(|job| self.candidate(&job.definition, false));
        marked.chain(unanswered).collect()
    }
}

/// What a run learns as it submits and follows its jobs.
struct Followed {
    outcomes: Vec<(LedgerKey, Outcome)>,
    poll_errors: BTreeMap<LedgerKey, PollError>,
    unnamed_statuses: BTreeMap<LedgerKey, UnnamedStatus>,
    timed_out: bool,
}

/// What every step of a run shares.
struct Run<'a> {
    client: &'a Arc<FactoryClient>,
    writer: &'a Arc<LedgerWriter>,
    payloads: &'a Payloads<'a>,
    progress: &'a dyn Progress,
}

impl Run<'_> {
    async fn submit(
        &self,
        candidates: Vec<(Candidate, bool)>,
    ) -> anyhow::Result<Vec<(LedgerKey, Outcome)>> {
        submission::submit_all(self.client.clone(), self.writer.clone(), candidates).await
    }

    /// With `--wait`: polls the `tracked` jobs still pending, at a growing interval, until they
    /// all end or the wait times out.
    async fn follow(
        &self,
        tracked: &[LedgerKey],
        wait: WaitOptions,
        followed: &mut Followed,
    ) -> anyhow::Result<()> {
        let jobs = self.pending(tracked).await.len();
        self.progress.phase(Phase::Waiting { jobs });
        let deadline = Instant::now() + wait.timeout;
        let mut interval = wait.poll_interval;
        let mut next_poll = Instant::now() + interval;
        loop {
            let pending = self.pending(tracked).await;
            if pending.is_empty() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                followed.timed_out = true;
                break;
            }
            let sleep = next_poll.saturating_duration_since(now).min(deadline - now);
            self.progress.waiting(&pending, sleep);
            tokio::time::sleep(sleep).await;
            interval = interval
                .mul_f64(1.5)
                .min(MAX_POLL_INTERVAL.max(wait.poll_interval));
            // The next poll is due an interval after this one starts, not after it ends: a
            // round whose stragglers wait out their retries does not push the schedule back.
            next_poll = Instant::now() + interval;
            self.resend_unanswered(&pending, followed).await?;
            self.poll_again(&pending, followed).await?;
        }
        self.progress.finished();
        Ok(())
    }

    /// The rows of the `keys` jobs still pending.
    async fn pending(&self, keys: &[LedgerKey]) -> Vec<JobRow> {
        rows(self.writer, keys)
            .into_iter()
            .filter(|job| job.status.is_pending())
            .collect()
    }

    /// Submissions whose answer was lost are sent again with the same key; each outcome takes
    /// the place of the one before it.
    async fn resend_unanswered(
        &self,
        pending: &[JobRow],
        followed: &mut Followed,
    ) -> anyhow::Result<()> {
        let resend: Vec<(Candidate, bool)> = pending
            .iter()
            .filter(|job| job.status == JobStatus::Submitting)
            .filter_map(|job| match &job.key {
                LedgerKey::Definition(id) => self.payloads.candidate(id, false),
                LedgerKey::Manual(_) => None,
            })
            .collect();
        if resend.is_empty() {
            return Ok(());
        }
        for (key, outcome) in self.submit(resend).await? {
            match followed
                .outcomes
                .iter_mut()
                .find(|(known, _)| *known == key)
            {
                Some((_, earlier)) => *earlier = outcome,
                None => followed.outcomes.push((key, outcome)),
            }
        }
        Ok(())
    }

    /// Polls the pending jobs; what this poll learned replaces what earlier ones said of them.
    async fn poll_again(&self, pending: &[JobRow], followed: &mut Followed) -> anyhow::Result<()> {
        let keys: Vec<LedgerKey> = pending.iter().map(|job| job.key.clone()).collect();
        let answers = poll(self.client, self.writer, &keys, self.progress).await?;
        for key in &keys {
            followed.poll_errors.remove(key);
        }
        followed.poll_errors.extend(answers.errors);
        followed.unnamed_statuses.extend(answers.unnamed);
        Ok(())
    }
}

/// Asks the service about every job of `keys` the ledger tracks, and records the answers in
/// one ledger write. Returns the jobs that could not be asked about, and those that reported a
/// status the contract does not name.
async fn poll(
    client: &Arc<FactoryClient>,
    writer: &Arc<LedgerWriter>,
    keys: &[LedgerKey],
    progress: &dyn Progress,
) -> Result<Polled, StateError> {
    let asked: Vec<(LedgerKey, String, JobRow)> = writer.with_ledger(|ledger| {
        keys.iter()
            .filter_map(|key| {
                let entry = ledger.entry(key)?;
                let tracking_id = entry.tracking_id.clone()?;
                entry
                    .status
                    .is_tracked()
                    .then(|| (key.clone(), tracking_id, row(key, entry, Timestamp::now())))
            })
            .collect()
    });
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
    let now = Timestamp::now();
    writer
        .update(|ledger| {
            for (key, state, _) in &states {
                if let Some(entry) = ledger.entry_mut(key)
                    && entry.tracks(&state.tracking_id)
                {
                    submission::record_state(entry, state, now);
                }
            }
        })
        .await?;
    for (key, _, before) in &states {
        if let Some(entry) = writer.entry(key)
            && entry.status != *before
        {
            progress.changed(&row(key, &entry, now), *before);
        }
    }
    Ok(polled)
}

fn rows(writer: &LedgerWriter, keys: &[LedgerKey]) -> Vec<JobRow> {
    let now = Timestamp::now();
    writer.with_ledger(|ledger| {
        keys.iter()
            .filter_map(|key| Some(row(key, ledger.entry(key)?, now)))
            .collect()
    })
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
        image_names: plan::entry_image_names(entry),
        duration,
        message: entry.message.clone(),
        adopted: entry.adopted,
    }
}
