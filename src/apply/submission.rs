//! Submitting payloads to Image Factory with the ledger as the record: the intent is saved
//! before the POST and the tracking id right after, so that no run loses a job or starts the
//! same payload twice, even when it is killed half way.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;

use jiff::Timestamp;
use serde::Serialize;

use crate::definitions::{Payload, PayloadHash, Rendered};
use crate::factory::{FactoryClient, FactoryError, JobState, RemoteStatus, Submitted};
use crate::plan;
use crate::state::{JobStatus, LedgerEntry, LedgerKey, LedgerWriter, SameName, StateError};

/// A payload ready to submit, and where the ledger keeps it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub key: LedgerKey,
    pub payload: Payload,
    pub hash: PayloadHash,
    pub variables: BTreeMap<String, String>,
    pub image_names: Vec<String>,
    /// Send it even if it changed but keeps image names its last submission used
    /// (`--allow-same-name`).
    pub allow_same_name: bool,
}

impl Candidate {
    pub fn from_rendered(key: LedgerKey, rendered: &Rendered) -> Self {
        Self {
            key,
            payload: rendered.payload.clone(),
            hash: rendered.hash.clone(),
            variables: rendered.variables.clone(),
            image_names: rendered.image_names.clone(),
            allow_same_name: false,
        }
    }

    pub fn allowing_same_name(mut self, allow: bool) -> Self {
        self.allow_same_name = allow;
        self
    }

    /// The image names this payload would keep from the submission `entry` records, if it
    /// is another payload (see [`plan::same_name`]).
    pub fn same_name(&self, entry: Option<&LedgerEntry>) -> Option<SameName> {
        plan::same_name(entry, &self.hash, &self.image_names, &self.variables)
    }

    /// The intent to send this payload under `idempotency_key`, decided on the entry `before`:
    /// a rebuild under the same names, allowed, is remembered for the pull request to say so.
    fn intent(
        &self,
        idempotency_key: &str,
        before: Option<&LedgerEntry>,
        now: Timestamp,
    ) -> LedgerEntry {
        let mut intent = LedgerEntry::intent_for(
            &self.payload,
            &self.hash,
            &self.variables,
            idempotency_key.to_string(),
            now,
        );
        if self.allow_same_name {
            intent.same_name_allowed = self.same_name(before);
        }
        intent
    }
}

/// What to do with a candidate, given the ledger's entry for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// POST it with this idempotency key. `resume` means an earlier run recorded the intent
    /// but not the answer: the same key lets the service hand back the job it may have started.
    Send {
        idempotency_key: String,
        resume: bool,
    },
    /// The same payload is being built already.
    InFlight { tracking_id: String },
    /// The same payload was built already; `--force` builds it again.
    Built { tracking_id: Option<String> },
    /// Another run recorded the intent to send this payload after this run read the ledger:
    /// that run is sending it.
    OtherRun,
    /// The payload changed but keeps image names the last submission used, and the candidate
    /// does not allow that.
    SameName(SameName),
}

/// Decides whether `hash` is to be sent, from the ledger's entry for it. A failed or canceled
/// payload may be sent again by hand; it then gets a fresh idempotency key, or the service
/// would answer with the failed job.
pub fn decide(entry: Option<&LedgerEntry>, hash: &PayloadHash, force: bool) -> Decision {
    let fresh = || Decision::Send {
        idempotency_key: hash.as_str().to_string(),
        resume: false,
    };
    let Some(entry) = entry else {
        return fresh();
    };
    if &entry.payload_hash != hash {
        return fresh();
    }
    let next_key = || Decision::Send {
        idempotency_key: next_idempotency_key(hash, entry.idempotency_key.as_deref()),
        resume: false,
    };
    match entry.status {
        JobStatus::Submitting => Decision::Send {
            idempotency_key: entry
                .idempotency_key
                .clone()
                .unwrap_or_else(|| hash.as_str().to_string()),
            resume: true,
        },
        JobStatus::Queued | JobStatus::Running => Decision::InFlight {
            tracking_id: entry.tracking_id.clone().unwrap_or_default(),
        },
        JobStatus::Failed | JobStatus::Canceled | JobStatus::NoImages => next_key(),
        JobStatus::Succeeded if force => next_key(),
        JobStatus::Succeeded => Decision::Built {
            tracking_id: entry.tracking_id.clone(),
        },
    }
}

/// Turns a decision to send a changed payload that keeps image names its last submission
/// (`entry`) used into a refusal, unless the candidate allows it.
pub fn refuse_same_name(
    decision: Decision,
    entry: Option<&LedgerEntry>,
    candidate: &Candidate,
) -> Decision {
    match decision {
        Decision::Send { resume: false, .. } if !candidate.allow_same_name => {
            match candidate.same_name(entry) {
                Some(same_name) => Decision::SameName(same_name),
                None => decision,
            }
        }
        _ => decision,
    }
}

/// The key for the next deliberate submission of a payload: `<hash>`, then `<hash>-2`, `-3`...
pub fn next_idempotency_key(hash: &PayloadHash, previous: Option<&str>) -> String {
    let hash = hash.as_str();
    let attempt = match previous {
        Some(key) if key == hash => 1,
        Some(key) => key
            .strip_prefix(hash)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|number| number.parse::<u32>().ok())
            .unwrap_or(1),
        None => 0,
    };
    match attempt {
        0 => hash.to_string(),
        attempt => format!("{hash}-{}", attempt + 1),
    }
}

/// What became of one candidate.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The service took it (or, for a repeat, handed back the job it had).
    Submitted {
        tracking_id: String,
        status: JobStatus,
        /// The service recognised the idempotency key: no new job was started.
        existing: bool,
        /// The job of an earlier payload the ledger tracked for this key until now.
        replaced: Option<String>,
    },
    /// Not sent: the same payload is in flight or built.
    Skipped {
        reason: String,
        tracking_id: Option<String>,
    },
    /// The service refused the payload; recorded as failed so it is not sent again unchanged.
    Rejected { message: String },
    /// Not sent: the payload changed but keeps image names its last submission used. The
    /// ledger is as it was.
    Refused { message: String },
    /// No answer arrived; the intent stays in the ledger and the next run sends the payload
    /// again with the same idempotency key.
    AnswerLost { message: String },
    /// Nothing was started (sign-in refused, for one); the ledger holds what it held before.
    Error { message: String },
}

impl Outcome {
    pub fn is_problem(&self) -> bool {
        matches!(
            self,
            Self::Rejected { .. }
                | Self::Refused { .. }
                | Self::AnswerLost { .. }
                | Self::Error { .. }
        )
    }

    pub fn tracking_id(&self) -> Option<&str> {
        match self {
            Self::Submitted { tracking_id, .. } => Some(tracking_id),
            Self::Skipped { tracking_id, .. } => tracking_id.as_deref(),
            _ => None,
        }
    }
}

/// Decides for a candidate within a run: like [`decide`], except that an intent recorded by
/// another run since this one read the ledger belongs to that run, which is sending it now.
fn decide_in_run(writer: &LedgerWriter, candidate: &Candidate, force: bool) -> Decision {
    decide_against(
        writer.entry(&candidate.key).as_ref(),
        writer.entry_at_open(&candidate.key).as_ref(),
        candidate,
        force,
    )
}

fn decide_against(
    current: Option<&LedgerEntry>,
    at_open: Option<&LedgerEntry>,
    candidate: &Candidate,
    force: bool,
) -> Decision {
    let decision = decide(current, &candidate.hash, force);
    let decision = match (&decision, current) {
        (Decision::Send { resume: true, .. }, Some(entry)) if Some(entry) != at_open => {
            Decision::OtherRun
        }
        _ => decision,
    };
    refuse_same_name(decision, current, candidate)
}

/// Submits one candidate in three phases: confirms the job the ledger says is in flight,
/// records the intent (deciding again on the ledger as saved), then sends the payload and
/// records the answer. A failure to write the ledger stops before anything is sent, or is
/// reported with the tracking id to record.
pub async fn submit(
    client: &FactoryClient,
    writer: &LedgerWriter,
    candidate: &Candidate,
    force: bool,
) -> Result<Outcome, StateError> {
    // Each decision is taken on an entry (`basis`); the intent is recorded only if the entry is
    // still that one when it is saved, or else decided again.
    let (decision, basis) = (
        decide_in_run(writer, candidate, force),
        writer.entry(&candidate.key),
    );
    let (decision, basis) =
        match confirm_in_flight(client, writer, candidate, force, decision, basis).await? {
            Step::Decided { decision, basis } => (decision, basis),
            Step::Done(outcome) => return Ok(outcome),
        };
    let (decision, previous) = record_intent(writer, candidate, force, decision, basis).await?;
    match ready(decision) {
        Ready::Send {
            idempotency_key,
            resume,
        } => {
            send_and_record(
                client,
                writer,
                candidate,
                &idempotency_key,
                resume,
                previous,
            )
            .await
        }
        Ready::NotSent(outcome) => Ok(outcome),
    }
}

/// Where a submission stands after its first phase: a decision still to carry out, taken on
/// the entry `basis`, or its outcome already.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "one value per submission, moved once between two phases"
)]
enum Step {
    Decided {
        decision: Decision,
        basis: Option<LedgerEntry>,
    },
    Done(Outcome),
}

/// Phase 1, confirm the job in flight: the ledger may be behind, so the service is asked how
/// the job it names is doing before calling it so, and the answer is recorded and decided on.
/// Any other decision passes through untouched.
async fn confirm_in_flight(
    client: &FactoryClient,
    writer: &LedgerWriter,
    candidate: &Candidate,
    force: bool,
    decision: Decision,
    basis: Option<LedgerEntry>,
) -> Result<Step, StateError> {
    let Decision::InFlight { tracking_id } = &decision else {
        return Ok(Step::Decided { decision, basis });
    };
    match client.job(tracking_id).await {
        Ok(state) => {
            let key = &candidate.key;
            writer
                .update(|ledger| {
                    if let Some(entry) = ledger.entry_mut(key)
                        && entry.tracks(&state.tracking_id)
                    {
                        record_state(entry, &state, Timestamp::now());
                    }
                })
                .await?;
            Ok(Step::Decided {
                decision: decide_in_run(writer, candidate, force),
                basis: writer.entry(key),
            })
        }
        Err(FactoryError::NotFound { .. }) => Ok(after_unknown_job(
            tracking_id,
            basis,
            &candidate.hash,
            force,
        )),
        // The service could not be asked: the job is taken as still in flight.
        Err(_) => Ok(Step::Decided { decision, basis }),
    }
}

/// The service does not know the job the ledger tracks for this payload: it cannot be building
/// it. Only a deliberate `--force` starts another, since a wrong service URL looks the same.
fn after_unknown_job(
    tracking_id: &str,
    basis: Option<LedgerEntry>,
    hash: &PayloadHash,
    force: bool,
) -> Step {
    if !force {
        return Step::Done(Outcome::Skipped {
            reason: format!(
                "the ledger tracks job {tracking_id} for this payload, but Image Factory does not \
                 know it; check IMAGE_FACTORY_URL, or submit again with --force"
            ),
            tracking_id: Some(tracking_id.to_string()),
        });
    }
    let previous_key = basis
        .as_ref()
        .and_then(|entry| entry.idempotency_key.as_deref());
    Step::Decided {
        decision: Decision::Send {
            idempotency_key: next_idempotency_key(hash, previous_key),
            resume: false,
        },
        basis,
    }
}

/// Phase 2, record the intent: a decision to send afresh is saved as an intent before the POST,
/// deciding again on the ledger as saved, since another run may have got there first (and then
/// this one sends nothing). Returns the decision that stands and the entry the save found.
async fn record_intent(
    writer: &LedgerWriter,
    candidate: &Candidate,
    force: bool,
    decision: Decision,
    basis: Option<LedgerEntry>,
) -> Result<(Decision, Option<LedgerEntry>), StateError> {
    if !matches!(decision, Decision::Send { resume: false, .. }) {
        return Ok((decision, None));
    }
    let key = &candidate.key;
    let now = Timestamp::now();
    let at_open = writer.entry_at_open(key);
    let (decision, previous) = writer
        .update(|ledger| {
            let current = ledger.entry(key).cloned();
            let (decision, before) = decide_on_saved(
                &decision,
                basis.as_ref(),
                current.as_ref(),
                at_open.as_ref(),
                candidate,
                force,
                now,
            );
            if let Decision::Send {
                idempotency_key,
                resume: false,
            } = &decision
            {
                ledger.insert(key, candidate.intent(idempotency_key, before.as_ref(), now));
            }
            (decision, current)
        })
        .await?;
    if let Decision::Send { resume: false, .. } = decision {
        writer.claim(key);
    }
    Ok((decision, previous))
}

/// The decision that stands once the ledger is saved with `current` for the candidate's key,
/// and the entry it was taken on. A decision taken on `basis` stands if the entry is still
/// that one, or already holds this very intent (a save whose answer was lost landed);
/// otherwise it is taken again on `current`.
fn decide_on_saved(
    decision: &Decision,
    basis: Option<&LedgerEntry>,
    current: Option<&LedgerEntry>,
    at_open: Option<&LedgerEntry>,
    candidate: &Candidate,
    force: bool,
    now: Timestamp,
) -> (Decision, Option<LedgerEntry>) {
    let saved_already = match (decision, current) {
        (
            Decision::Send {
                idempotency_key, ..
            },
            Some(entry),
        ) => *entry == candidate.intent(idempotency_key, basis, now),
        _ => false,
    };
    if saved_already || current == basis {
        (decision.clone(), basis.cloned())
    } else {
        (
            decide_against(current, at_open, candidate, force),
            current.cloned(),
        )
    }
}

/// What a decision comes to once the intent is recorded: a payload to send, or the outcome of
/// sending nothing.
#[derive(Debug, Clone)]
enum Ready {
    Send {
        idempotency_key: String,
        resume: bool,
    },
    NotSent(Outcome),
}

fn ready(decision: Decision) -> Ready {
    match decision {
        Decision::Send {
            idempotency_key,
            resume,
        } => Ready::Send {
            idempotency_key,
            resume,
        },
        Decision::InFlight { tracking_id } => Ready::NotSent(Outcome::Skipped {
            reason: format!("the same payload is being built as job {tracking_id}"),
            tracking_id: Some(tracking_id),
        }),
        Decision::OtherRun => Ready::NotSent(Outcome::Skipped {
            reason: "another run is submitting the same payload right now".to_string(),
            tracking_id: None,
        }),
        Decision::SameName(same_name) => Ready::NotSent(Outcome::Refused {
            message: plan::refusal(&same_name),
        }),
        Decision::Built { tracking_id } => Ready::NotSent(Outcome::Skipped {
            reason: match &tracking_id {
                Some(id) => {
                    format!("the same payload was built by job {id}; --force builds it again")
                }
                None => {
                    "the same payload was recorded as built; --force builds it again".to_string()
                }
            },
            tracking_id,
        }),
    }
}

/// Phase 3, send and record the answer: POSTs the payload under `idempotency_key` and records
/// what came back on the entry holding this submission's intent, and only there. `previous` is
/// the entry the intent replaced: put back when nothing was started.
async fn send_and_record(
    client: &FactoryClient,
    writer: &LedgerWriter,
    candidate: &Candidate,
    idempotency_key: &str,
    resume: bool,
    previous: Option<LedgerEntry>,
) -> Result<Outcome, StateError> {
    let key = &candidate.key;
    if resume {
        tracing::info!(
            "{key}: an earlier run recorded this submission without its answer; sending it again \
             with the same idempotency key"
        );
    }
    let replaced = replaced_job(previous.as_ref(), &candidate.hash);
    match client.submit(&candidate.payload, idempotency_key).await {
        Ok(submitted) => {
            // The answer is a tracking id and a hint. A replay may say Succeeded, but it never
            // names the images: those, and the state itself, come from the job.
            let state = if submitted.status.is_terminal() {
                client.job(&submitted.tracking_id).await.ok()
            } else {
                None
            };
            writer
                .update(|ledger| {
                    if let Some(entry) = ledger
                        .entry_mut(key)
                        .filter(|entry| entry.holds_intent(idempotency_key))
                    {
                        record_submitted(entry, &submitted, state.as_ref(), Timestamp::now());
                    }
                })
                .await
                .map_err(|source| StateError::Unrecorded {
                    key: key.to_string(),
                    tracking_id: submitted.tracking_id.clone(),
                    source: Box::new(source),
                })?;
            let status = writer
                .entry(key)
                .filter(|entry| entry.tracks(&submitted.tracking_id))
                .map_or(hinted_status(&submitted.status), |entry| entry.status);
            Ok(Outcome::Submitted {
                tracking_id: submitted.tracking_id,
                status,
                existing: submitted.existing,
                replaced,
            })
        }
        Err(FactoryError::Rejected { message, code, .. }) => {
            let message = format!("Image Factory rejected the payload ({code}): {message}");
            writer
                .update(|ledger| {
                    if let Some(entry) = ledger
                        .entry_mut(key)
                        .filter(|entry| entry.holds_intent(idempotency_key))
                    {
                        record_rejected(entry, &message, Timestamp::now());
                    }
                })
                .await?;
            Ok(Outcome::Rejected { message })
        }
        Err(error) if error.answer_lost() => Ok(Outcome::AnswerLost {
            message: error.to_string(),
        }),
        Err(error) => {
            // Nothing was started: put back what the ledger held, so the next run decides
            // from the truth (a resumed intent stays, as it was already there).
            if !resume {
                writer
                    .update(|ledger| {
                        match undo_intent(ledger.entry(key), idempotency_key, previous.as_ref()) {
                            Undo::Leave => {}
                            Undo::Restore(entry) => {
                                ledger.insert(key, entry.clone());
                            }
                            Undo::Remove => {
                                ledger.remove(key);
                            }
                        }
                    })
                    .await?;
            }
            Ok(Outcome::Error {
                message: error.to_string(),
            })
        }
    }
}

/// The job of an earlier payload that the ledger tracked for this key until the intent took its
/// place, if it was still being built.
fn replaced_job(previous: Option<&LedgerEntry>, hash: &PayloadHash) -> Option<String> {
    previous
        .filter(|entry| entry.status.is_pending() && &entry.payload_hash != hash)
        .and_then(|entry| entry.tracking_id.clone())
}

/// Records the service's answer to a submission: its tracking id and the status it hints at,
/// then the job's own state when the service was asked about that very job.
fn record_submitted(
    entry: &mut LedgerEntry,
    submitted: &Submitted,
    state: Option<&JobState>,
    now: Timestamp,
) {
    entry.tracking_id = Some(submitted.tracking_id.clone());
    entry.status = hinted_status(&submitted.status);
    entry.updated_at = now;
    if let Some(state) = state.filter(|state| state.tracking_id == submitted.tracking_id) {
        record_state(entry, state, now);
    }
}

/// Records a payload the service refused as failed, so it is not sent again unchanged.
fn record_rejected(entry: &mut LedgerEntry, message: &str, now: Timestamp) {
    entry.status = JobStatus::Failed;
    entry.message = Some(message.to_string());
    entry.updated_at = now;
    entry.completed_at = Some(now);
}

/// What becomes of an intent when nothing was started.
#[derive(Debug, Clone, PartialEq)]
enum Undo<'a> {
    /// The entry no longer holds this intent: another run's, left alone.
    Leave,
    /// The entry the intent replaced is put back.
    Restore(&'a LedgerEntry),
    /// There was no entry before the intent.
    Remove,
}

fn undo_intent<'a>(
    current: Option<&LedgerEntry>,
    idempotency_key: &str,
    previous: Option<&'a LedgerEntry>,
) -> Undo<'a> {
    if !current.is_some_and(|entry| entry.holds_intent(idempotency_key)) {
        return Undo::Leave;
    }
    match previous {
        Some(entry) => Undo::Restore(entry),
        None => Undo::Remove,
    }
}

/// Submissions under way at once, per request the client may have in flight. Each one under
/// way may be sent and not yet recorded (its answer waits its turn at the ledger behind the
/// writes queued before it), which a kill would leave to the idempotency key alone, and each
/// holds its task's memory (about 10 KB): the bound keeps both small. It is a multiple of the
/// client's concurrency, not the concurrency itself, because a submission spends most of its
/// life waiting out backoffs when the service fails often, and a submission waiting holds no
/// slot of the client's: with a third of the requests answered 503, four a slot kept 5,000
/// submissions at about 300 a second while the service could take thousands; sixteen a slot
/// keep its slots busy (docs/benchmarks.md).
const SUBMISSIONS_PER_SLOT: usize = 16;

/// Submits every candidate (with its `force`), and returns each outcome in ledger-key order.
/// The client's limiter bounds the requests in flight; [`SUBMISSIONS_PER_SLOT`] bounds the
/// submissions under way. Each candidate's key is sent to `answered` (when given) as soon as
/// its outcome is recorded, for its job to be followed from then on. A ledger that cannot be
/// written stops the run with the jobs started so far named, so none is lost from sight.
pub async fn submit_all(
    client: Arc<FactoryClient>,
    writer: Arc<LedgerWriter>,
    candidates: Vec<(Candidate, bool)>,
    answered: Option<tokio::sync::mpsc::UnboundedSender<LedgerKey>>,
) -> anyhow::Result<Vec<(LedgerKey, Outcome)>> {
    let under_way = SUBMISSIONS_PER_SLOT * client.settings().concurrency.max(1);
    let mut tasks = tokio::task::JoinSet::new();
    let mut results = Vec::new();
    let mut ledger_error = None;
    // Jobs the service started whose tracking id the ledger could not take.
    let mut unrecorded = Vec::new();
    let mut record = |joined: Result<
        (LedgerKey, Result<Outcome, StateError>),
        tokio::task::JoinError,
    >|
     -> anyhow::Result<()> {
        let (key, outcome) = joined.context("a submission task panicked")?;
        match outcome {
            Ok(outcome) => {
                if let Some(answered) = &answered {
                    // The follower may have stopped (its run is failing); the outcome stands.
                    let _ = answered.send(key.clone());
                }
                results.push((key, outcome));
            }
            Err(error) => {
                if let StateError::Unrecorded {
                    key, tracking_id, ..
                } = &error
                {
                    unrecorded.push(format!("{key}: {tracking_id} (not recorded)"));
                }
                ledger_error.get_or_insert(error);
            }
        }
        Ok(())
    };
    for (candidate, force) in candidates {
        // A task is spawned only when there is room for it: a spawned task holds the memory
        // of its whole submission from the start.
        if tasks.len() >= under_way
            && let Some(joined) = tasks.join_next().await
        {
            record(joined)?;
        }
        let client = client.clone();
        let writer = writer.clone();
        tasks.spawn(async move {
            let outcome = submit(&client, &writer, &candidate, force).await;
            (candidate.key, outcome)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        record(joined)?;
    }
    results.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(error) = ledger_error {
        let mut started: Vec<String> = results
            .iter()
            .filter_map(|(key, outcome)| Some(format!("{key}: {}", outcome.tracking_id()?)))
            .chain(unrecorded)
            .collect();
        started.sort();
        return Err(anyhow::Error::new(error).context(format!(
            "the ledger could not be written; jobs started so far: {}",
            if started.is_empty() {
                "none".to_string()
            } else {
                started.join(", ")
            }
        )));
    }
    Ok(results)
}

/// The ledger's status for a status the service reports. One the contract does not name is
/// not terminal, so it counts as running.
pub fn job_status(status: &RemoteStatus) -> JobStatus {
    match status {
        RemoteStatus::Queued => JobStatus::Queued,
        RemoteStatus::Running | RemoteStatus::Other(_) => JobStatus::Running,
        RemoteStatus::Succeeded => JobStatus::Succeeded,
        RemoteStatus::Failed => JobStatus::Failed,
        RemoteStatus::Canceled => JobStatus::Canceled,
    }
}

/// The ledger's status for the status a submission's answer hints at: pending whatever it
/// says, since only the job's own state (`GET`) tells how it ended and what it built.
pub fn hinted_status(status: &RemoteStatus) -> JobStatus {
    match status {
        RemoteStatus::Queued => JobStatus::Queued,
        _ => JobStatus::Running,
    }
}

/// Records what the service reports about a job in its ledger entry. A job Succeeded without
/// images is not built: it is kept as [`JobStatus::NoImages`], with the service's message, and
/// asked about again.
pub fn record_state(entry: &mut LedgerEntry, state: &JobState, now: Timestamp) {
    let mut status = job_status(&state.status);
    entry.message = Some(state.message.clone()).filter(|message| !message.is_empty());
    if status == JobStatus::Succeeded && state.images.is_empty() {
        status = JobStatus::NoImages;
        entry.message = Some(no_images_message(&state.message));
    }
    entry.status = status;
    if status == JobStatus::Succeeded {
        entry.image_names = state
            .images
            .iter()
            .map(|image| image.name.clone())
            .collect();
    } else {
        entry.image_names.clear();
    }
    entry.updated_at = now;
    if state.status.is_terminal() && entry.completed_at.is_none() {
        entry.completed_at = Some(state.updated_at.unwrap_or(now));
    }
}

/// What a job Succeeded without images is recorded with: the service's own message, and what
/// imagegen does about it.
pub fn no_images_message(service_message: &str) -> String {
    let said = if service_message.trim().is_empty() {
        "Image Factory gave no message".to_string()
    } else {
        format!("Image Factory says: {}", service_message.trim())
    };
    format!(
        "the job reports Succeeded but names no image ({said}); nothing of it goes into OSOB, and \
         every run asks about it again until its images are listed"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hash(text: &str) -> PayloadHash {
        PayloadHash::of(&json!(text))
    }

    fn entry(payload_hash: &PayloadHash, status: JobStatus, key: &str) -> LedgerEntry {
        LedgerEntry {
            payload_hash: payload_hash.clone(),
            payload: Payload::new(&json!({})),
            variables: BTreeMap::new(),
            idempotency_key: Some(key.to_string()),
            tracking_id: Some("t-1".into()),
            status,
            message: None,
            image_names: Vec::new(),
            submitted_at: None,
            updated_at: Timestamp::UNIX_EPOCH,
            completed_at: None,
            adopted: false,
            same_name_allowed: None,
        }
    }

    #[test]
    fn a_new_or_changed_payload_is_sent_under_its_hash() {
        let new = hash("new");
        let send = Decision::Send {
            idempotency_key: new.as_str().to_string(),
            resume: false,
        };
        assert_eq!(decide(None, &new, false), send);
        let old = entry(&hash("old"), JobStatus::Running, "k");
        assert_eq!(decide(Some(&old), &new, false), send);
    }

    #[test]
    fn the_same_payload_is_never_started_twice_by_accident() {
        let payload = hash("p");
        let running = entry(&payload, JobStatus::Running, payload.as_str());
        assert!(matches!(
            decide(Some(&running), &payload, true),
            Decision::InFlight { .. }
        ));
        let built = entry(&payload, JobStatus::Succeeded, payload.as_str());
        assert!(matches!(
            decide(Some(&built), &payload, false),
            Decision::Built { .. }
        ));
        let interrupted = entry(&payload, JobStatus::Submitting, "earlier-key");
        assert_eq!(
            decide(Some(&interrupted), &payload, false),
            Decision::Send {
                idempotency_key: "earlier-key".into(),
                resume: true
            }
        );
    }

    #[test]
    fn deliberate_repeats_get_fresh_keys() {
        let payload = hash("p");
        let failed = entry(&payload, JobStatus::Failed, payload.as_str());
        assert_eq!(
            decide(Some(&failed), &payload, false),
            Decision::Send {
                idempotency_key: format!("{payload}-2"),
                resume: false
            }
        );
        assert_eq!(
            next_idempotency_key(&payload, Some(&format!("{payload}-2"))),
            format!("{payload}-3")
        );
        let built = entry(&payload, JobStatus::Succeeded, payload.as_str());
        assert!(matches!(
            decide(Some(&built), &payload, true),
            Decision::Send { resume: false, .. }
        ));
    }

    #[test]
    fn a_reported_state_is_recorded() {
        let mut recorded = entry(&hash("p"), JobStatus::Queued, "k");
        let state: JobState = serde_json::from_value(json!({
            "trackingId": "t-1", "status": "Succeeded", "message": "",
            "images": [{"name": "Helix-X_1"}], "updatedAt": "2026-11-23T12:00:00Z"
        }))
        .unwrap();
        record_state(&mut recorded, &state, Timestamp::UNIX_EPOCH);
        assert_eq!(recorded.status, JobStatus::Succeeded);
        assert_eq!(recorded.image_names, ["Helix-X_1"]);
        assert_eq!(recorded.message, None);
        assert_eq!(
            recorded.completed_at,
            Some("2026-11-23T12:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn a_success_without_images_is_not_recorded_as_built() {
        let mut recorded = entry(&hash("p"), JobStatus::Running, "k");
        let state: JobState = serde_json::from_value(json!({
            "trackingId": "t-1", "status": "Succeeded", "message": "still copying", "images": []
        }))
        .unwrap();
        record_state(&mut recorded, &state, Timestamp::UNIX_EPOCH);
        assert_eq!(recorded.status, JobStatus::NoImages);
        assert!(recorded.status.is_tracked() && !recorded.status.is_pending());
        assert!(recorded.image_names.is_empty());
        let message = recorded.message.unwrap();
        assert!(
            message.contains("Succeeded but names no image")
                && message.contains("Image Factory says: still copying"),
            "{message}"
        );
        assert_eq!(hinted_status(&RemoteStatus::Succeeded), JobStatus::Running);
        assert_eq!(hinted_status(&RemoteStatus::Queued), JobStatus::Queued);
    }

    fn candidate(payload: &PayloadHash) -> Candidate {
        Candidate {
            key: LedgerKey::Definition("vs/a".into()),
            payload: Payload::new(&json!({})),
            hash: payload.clone(),
            variables: BTreeMap::new(),
            image_names: vec!["Helix-A_1".into()],
            allow_same_name: false,
        }
    }

    fn send(idempotency_key: &str) -> Decision {
        Decision::Send {
            idempotency_key: idempotency_key.to_string(),
            resume: false,
        }
    }

    #[test]
    fn a_job_the_service_does_not_know_is_left_alone_unless_forced() {
        let payload = hash("p");
        let running = entry(&payload, JobStatus::Running, payload.as_str());
        match after_unknown_job("t-1", Some(running.clone()), &payload, false) {
            Step::Done(Outcome::Skipped {
                reason,
                tracking_id,
            }) => {
                assert_eq!(tracking_id.as_deref(), Some("t-1"));
                assert!(
                    reason.contains("does not know it") && reason.contains("--force"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Forced: a new job under the next key, decided on the entry it replaces.
        match after_unknown_job("t-1", Some(running.clone()), &payload, true) {
            Step::Decided { decision, basis } => {
                assert_eq!(decision, send(&format!("{payload}-2")));
                assert_eq!(basis, Some(running));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_intent_is_recorded_only_on_the_entry_it_was_decided_on() {
        let payload = hash("p");
        let candidate = candidate(&payload);
        let now = Timestamp::UNIX_EPOCH;
        let decision = send(payload.as_str());
        let failed = entry(&hash("old"), JobStatus::Failed, "old-key");
        // The entry is still the one the decision was taken on: it stands.
        let (stands, before) = decide_on_saved(
            &decision,
            Some(&failed),
            Some(&failed),
            Some(&failed),
            &candidate,
            false,
            now,
        );
        assert_eq!((stands, before), (decision.clone(), Some(failed.clone())));
        // A save whose answer was lost landed: the very intent is there, and it stands.
        let landed = candidate.intent(payload.as_str(), Some(&failed), now);
        let (stands, _) = decide_on_saved(
            &decision,
            Some(&failed),
            Some(&landed),
            Some(&failed),
            &candidate,
            false,
            now,
        );
        assert_eq!(stands, decision);
        // Another run recorded its intent for the same payload since: that run sends it.
        let theirs = entry(&payload, JobStatus::Submitting, "their-key");
        let (other_run, before) = decide_on_saved(
            &decision,
            Some(&failed),
            Some(&theirs),
            Some(&failed),
            &candidate,
            false,
            now,
        );
        assert_eq!(other_run, Decision::OtherRun);
        assert_eq!(before, Some(theirs));
        // Another run built it meanwhile: nothing to send.
        let built = entry(&payload, JobStatus::Succeeded, payload.as_str());
        let (built_now, _) = decide_on_saved(
            &decision,
            Some(&failed),
            Some(&built),
            Some(&failed),
            &candidate,
            false,
            now,
        );
        assert!(matches!(built_now, Decision::Built { .. }), "{built_now:?}");
    }

    #[test]
    fn every_decision_not_to_send_has_its_outcome() {
        assert!(matches!(
            ready(send("k")),
            Ready::Send { ref idempotency_key, resume: false } if idempotency_key == "k"
        ));
        match ready(Decision::Built {
            tracking_id: Some("t-9".into()),
        }) {
            Ready::NotSent(Outcome::Skipped {
                reason,
                tracking_id,
            }) => {
                assert_eq!(
                    reason,
                    "the same payload was built by job t-9; --force builds it again"
                );
                assert_eq!(tracking_id.as_deref(), Some("t-9"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            ready(Decision::OtherRun),
            Ready::NotSent(Outcome::Skipped {
                tracking_id: None,
                ..
            })
        ));
        assert!(matches!(
            ready(Decision::InFlight {
                tracking_id: "t-1".into()
            }),
            Ready::NotSent(Outcome::Skipped { tracking_id: Some(ref id), .. }) if id == "t-1"
        ));
    }

    #[test]
    fn an_answer_is_recorded_as_a_hint_and_the_state_only_of_the_same_job() {
        let payload = hash("p");
        let submitted = Submitted {
            tracking_id: "t-2".into(),
            status: RemoteStatus::Succeeded,
            existing: true,
        };
        let mut recorded = entry(&payload, JobStatus::Submitting, "k");
        recorded.tracking_id = None;
        let other_job: JobState = serde_json::from_value(json!({
            "trackingId": "t-1", "status": "Succeeded", "images": [{"name": "Helix-A_0"}]
        }))
        .unwrap();
        record_submitted(
            &mut recorded,
            &submitted,
            Some(&other_job),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(recorded.tracking_id.as_deref(), Some("t-2"));
        assert_eq!(recorded.status, JobStatus::Running);
        assert!(recorded.image_names.is_empty());
        let this_job: JobState = serde_json::from_value(json!({
            "trackingId": "t-2", "status": "Succeeded", "images": [{"name": "Helix-A_1"}]
        }))
        .unwrap();
        record_submitted(
            &mut recorded,
            &submitted,
            Some(&this_job),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(recorded.status, JobStatus::Succeeded);
        assert_eq!(recorded.image_names, ["Helix-A_1"]);
    }

    #[test]
    fn a_rejected_payload_is_recorded_as_failed_with_the_message() {
        let mut recorded = entry(&hash("p"), JobStatus::Submitting, "k");
        record_rejected(&mut recorded, "bad image", Timestamp::UNIX_EPOCH);
        assert_eq!(recorded.status, JobStatus::Failed);
        assert_eq!(recorded.message.as_deref(), Some("bad image"));
        assert_eq!(recorded.completed_at, Some(Timestamp::UNIX_EPOCH));
    }

    #[test]
    fn an_intent_that_started_nothing_gives_back_what_the_ledger_held() {
        let payload = hash("p");
        let ours = entry(&payload, JobStatus::Submitting, "our-key");
        let earlier = entry(&hash("old"), JobStatus::Failed, "old-key");
        assert_eq!(
            undo_intent(Some(&ours), "our-key", Some(&earlier)),
            Undo::Restore(&earlier)
        );
        assert_eq!(undo_intent(Some(&ours), "our-key", None), Undo::Remove);
        // Another run's intent took the entry since: it is not this run's to undo.
        let theirs = entry(&payload, JobStatus::Submitting, "their-key");
        assert_eq!(
            undo_intent(Some(&theirs), "our-key", Some(&earlier)),
            Undo::Leave
        );
        assert_eq!(undo_intent(None, "our-key", None), Undo::Leave);
    }

    #[test]
    fn only_a_pending_job_of_another_payload_is_replaced() {
        let payload = hash("p");
        let running_old = entry(&hash("old"), JobStatus::Running, "old-key");
        assert_eq!(
            replaced_job(Some(&running_old), &payload).as_deref(),
            Some("t-1")
        );
        let failed_old = entry(&hash("old"), JobStatus::Failed, "old-key");
        assert_eq!(replaced_job(Some(&failed_old), &payload), None);
        let running_same = entry(&payload, JobStatus::Running, payload.as_str());
        assert_eq!(replaced_job(Some(&running_same), &payload), None);
        assert_eq!(replaced_job(None, &payload), None);
    }
}
