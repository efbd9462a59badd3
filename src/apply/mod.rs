//! The apply step of `imagegen reconcile`: polls the jobs the ledger holds as pending, submits
//! what the plan marks, and with `--wait` follows this run's jobs until they end. Every step
//! goes through the ledger writer, so a run killed at any instant is resumed by the next one.

mod follow;
pub mod submission;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

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
    /// How long after its submission a job is first asked about; each next wait is half as
    /// long again, up to [`MAX_POLL_INTERVAL`].
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
    let mut followed = Followed {
        outcomes: Vec::new(),
        poll_errors: polled.errors,
        unnamed_statuses: polled.unnamed,
        timed_out: false,
    };

    // 3. With --wait, each job this run answers for is followed from its own submission until
    // it ends, while the other submissions still go out.
    let tracked = answered_for(&plan, &in_flight);
    followed.outcomes = match options.wait {
        Some(wait) => {
            follow::submit_and_follow(&run, candidates, &tracked, wait, &mut followed).await?
        }
        None => run.submit(candidates).await?,
    };
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
    /// Sends every candidate, without following the jobs (no `--wait`).
    async fn submit(
        &self,
        candidates: Vec<(Candidate, bool)>,
    ) -> anyhow::Result<Vec<(LedgerKey, Outcome)>> {
        submission::submit_all(self.client.clone(), self.writer.clone(), candidates, None).await
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
    // Every poll starts at once: the client's limiter bounds the requests in flight, and a
    // poll waiting out a backoff holds no slot there.
    let mut tasks = tokio::task::JoinSet::new();
    for question in questions(writer, keys) {
        tasks.spawn(question.ask(client.clone()));
    }
    let mut answers = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        answers.push(joined.expect("a poll does not panic"));
    }
    answers.sort_by(|a, b| a.question.key.cmp(&b.question.key));
    record_answers(writer, answers, progress).await
}

/// A job to ask the service about: its entry, the job the entry tracks, and its status then.
#[derive(Debug, Clone)]
struct Question {
    key: LedgerKey,
    tracking_id: String,
    before: JobStatus,
}

/// The service's answer to a [`Question`].
#[derive(Debug)]
struct Answer {
    question: Question,
    state: Result<JobState, FactoryError>,
}

impl Question {
    async fn ask(self, client: Arc<FactoryClient>) -> Answer {
        let state = client.job(&self.tracking_id).await;
        Answer {
            question: self,
            state,
        }
    }
}

/// The questions for the jobs of `keys` the ledger tracks (pending, or ended without images).
fn questions(writer: &LedgerWriter, keys: &[LedgerKey]) -> Vec<Question> {
    writer.with_ledger(|ledger| {
        keys.iter()
            .filter_map(|key| {
                let entry = ledger.entry(key)?;
                let tracking_id = entry.tracking_id.clone()?;
                entry.status.is_tracked().then(|| Question {
                    key: key.clone(),
                    tracking_id,
                    before: entry.status,
                })
            })
            .collect()
    })
}

/// Records the states the service reported in one ledger write (a job the entry no longer
/// tracks, as a new submission replaced it, is left alone), and tells `progress` what moved
/// and what could not be asked.
async fn record_answers(
    writer: &LedgerWriter,
    answers: Vec<Answer>,
    progress: &dyn Progress,
) -> Result<Polled, StateError> {
    let mut polled = Polled::default();
    let mut states = Vec::new();
    for Answer { question, state } in answers {
        match state {
            Ok(state) => {
                if let RemoteStatus::Other(status) = &state.status {
                    polled.unnamed.insert(
                        question.key.clone(),
                        UnnamedStatus {
                            tracking_id: question.tracking_id.clone(),
                            status: status.clone(),
                        },
                    );
                }
                states.push((question, state));
            }
            Err(error) => {
                progress.poll_failed(&question.key, &question.tracking_id, &error);
                polled.errors.insert(
                    question.key.clone(),
                    PollError {
                        tracking_id: question.tracking_id,
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
            for (question, state) in &states {
                if let Some(entry) = ledger.entry_mut(&question.key)
                    && entry.tracks(&state.tracking_id)
                {
                    submission::record_state(entry, state, now);
                }
            }
        })
        .await?;
    for (question, _) in &states {
        if let Some(entry) = writer.entry(&question.key)
            && entry.status != question.before
        {
            progress.changed(&row(&question.key, &entry, now), question.before);
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
