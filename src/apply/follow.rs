//! With `--wait`: following each job of a run from its own submission. A job is first asked
//! about a `--poll-interval` after its submission was answered, each next time half as long
//! again, while the other submissions are still going out; a submission whose answer was lost
//! is sent again on the same schedule. No job waits for the unluckiest submission of the run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::submission::{self, Candidate, Outcome};
use super::{
    Answer, Followed, MAX_POLL_INTERVAL, Phase, Polled, Run, WaitOptions, questions,
    record_answers, rows,
};
use crate::state::{JobStatus, LedgerKey, StateError};

/// When each followed job is next asked about, and how long the wait after that one is.
#[derive(Debug)]
pub(super) struct Schedule {
    first: Duration,
    longest: Duration,
    jobs: BTreeMap<LedgerKey, Due>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Due {
    /// `None` while the job is being asked about (or sent again).
    at: Option<Instant>,
    /// The wait that led to `at`; the next one is half as long again.
    interval: Duration,
    /// Turns in a row that could not reach the service (a poll or a resend that failed).
    failures: u32,
}

impl Schedule {
    pub(super) fn new(first: Duration) -> Self {
        Self {
            first,
            longest: MAX_POLL_INTERVAL.max(first),
            jobs: BTreeMap::new(),
        }
    }

    /// Follows `key` from `now` (its submission was just answered, or the run found it in
    /// flight): first asked about a first interval later. A job followed already starts over,
    /// as a new submission is a new job.
    pub(super) fn start(&mut self, key: &LedgerKey, now: Instant) -> Duration {
        self.jobs.insert(
            key.clone(),
            Due {
                at: Some(now + self.first),
                interval: self.first,
                failures: 0,
            },
        );
        self.first
    }

    /// `key` was asked about at `asked` and is still pending: the next time comes half as
    /// long again after that (not after the answer, so a slow answer does not push the
    /// schedule back). Returns the wait.
    pub(super) fn asked(&mut self, key: &LedgerKey, asked: Instant) -> Duration {
        let interval = match self.jobs.get(key) {
            Some(due) => due.interval.mul_f64(1.5).min(self.longest),
            None => self.first,
        };
        self.jobs.insert(
            key.clone(),
            Due {
                at: Some(asked + interval),
                interval,
                failures: 0,
            },
        );
        interval
    }

    /// `key`'s turn, ended at `now`, could not reach the service (its retries were used up):
    /// nothing was learned, so the job is asked again soon, a first interval later, twice as
    /// long at each further failure in a row, and never later than its schedule had it.
    /// Returns the wait.
    pub(super) fn failed(&mut self, key: &LedgerKey, now: Instant) -> Duration {
        let (interval, failures) = match self.jobs.get(key) {
            Some(due) => (due.interval, due.failures + 1),
            None => (self.first, 1),
        };
        let wait = self
            .first
            .saturating_mul(1 << (failures - 1).min(16))
            .min(interval.mul_f64(1.5).min(self.longest).max(self.first));
        self.jobs.insert(
            key.clone(),
            Due {
                at: Some(now + wait),
                interval,
                failures,
            },
        );
        wait
    }

    /// `key` ended (or is no longer this run's to follow).
    pub(super) fn stop(&mut self, key: &LedgerKey) {
        self.jobs.remove(key);
    }

    pub(super) fn follows(&self, key: &LedgerKey) -> bool {
        self.jobs.contains_key(key)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The earliest time a job is due, if any waits.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.jobs.values().filter_map(|due| due.at).min()
    }

    /// The jobs due by `now`, marked as being asked about.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<LedgerKey> {
        let mut due = Vec::new();
        for (key, job) in &mut self.jobs {
            if job.at.is_some_and(|at| at <= now) {
                job.at = None;
                due.push(key.clone());
            }
        }
        due
    }
}

/// What one job's turn came to.
enum Turn {
    Asked {
        started: Instant,
        answer: Answer,
    },
    Resent {
        key: LedgerKey,
        started: Instant,
        outcome: Result<Outcome, StateError>,
    },
}

/// Sends `candidates` and follows every pending job of `tracked` until all ended or the wait
/// times out. Returns the outcome of every submission, a resend's in the place of the one
/// before it.
pub(super) async fn submit_and_follow(
    run: &Run<'_>,
    candidates: Vec<(Candidate, bool)>,
    tracked: &[LedgerKey],
    wait: WaitOptions,
    followed: &mut Followed,
) -> anyhow::Result<Vec<(LedgerKey, Outcome)>> {
    let started = Instant::now();
    let deadline = started + wait.timeout;
    let submitted: BTreeSet<LedgerKey> = candidates
        .iter()
        .map(|(candidate, _)| candidate.key.clone())
        .collect();
    let (sender, mut answered) = mpsc::unbounded_channel();
    // In a set of its own, so that a run stopping on an error stops its submissions too.
    let mut submitting = JoinSet::new();
    submitting.spawn(submission::submit_all(
        run.client.clone(),
        run.writer.clone(),
        candidates,
        Some(sender),
    ));
    let mut schedule = Schedule::new(wait.poll_interval);
    // The jobs in flight that this run does not send: followed from now.
    let others: Vec<LedgerKey> = tracked
        .iter()
        .filter(|key| !submitted.contains(*key))
        .cloned()
        .collect();
    follow_pending(run, &mut schedule, &others, started);

    let mut outcomes = None;
    let mut resent = BTreeMap::new();
    let mut turns: JoinSet<Turn> = JoinSet::new();
    loop {
        let now = Instant::now();
        let over_time = now >= deadline;
        if outcomes.is_some() && turns.is_empty() && (schedule.is_empty() || over_time) {
            followed.timed_out = !schedule.is_empty();
            break;
        }
        let wake = match schedule.next_due() {
            Some(due) if !over_time => due.min(deadline),
            // Past the deadline, nothing more is started: the run waits only for what is under
            // way (a submission, or a poll whose answer is to be recorded).
            _ => deadline.max(now) + Duration::from_secs(3600),
        };
        tokio::select! {
            Some(joined) = submitting.join_next(), if outcomes.is_none() => {
                let done = joined.map_err(|error| anyhow::anyhow!("the submissions stopped: {error}"))??;
                outcomes = Some(done);
                // Whatever answered without being seen (none should) is followed from now.
                follow_pending(run, &mut schedule, tracked, Instant::now());
                run.progress.phase(Phase::Waiting {
                    jobs: pending_count(run, tracked),
                });
            }
            Some(key) = answered.recv() => {
                follow_pending(run, &mut schedule, std::slice::from_ref(&key), Instant::now());
            }
            Some(joined) = turns.join_next(), if !turns.is_empty() => {
                let stopped = |error| anyhow::anyhow!("a poll or a resend stopped: {error}");
                let mut done = vec![joined.map_err(stopped)?];
                while let Some(joined) = turns.try_join_next() {
                    done.push(joined.map_err(stopped)?);
                }
                if let Err(error) = take_turns(run, &mut schedule, done, &mut resent, followed).await {
                    return Err(after_submissions(&mut submitting, error).await);
                }
            }
            () = tokio::time::sleep_until(wake) => {
                if !over_time {
                    for key in schedule.take_due(Instant::now()) {
                        start_turn(run, &mut schedule, &mut turns, key);
                    }
                }
            }
        }
    }
    run.progress.finished();
    let mut outcomes = outcomes.unwrap_or_default();
    for (key, outcome) in &mut outcomes {
        if let Some(later) = resent.remove(key) {
            *outcome = later;
        }
    }
    outcomes.extend(resent);
    outcomes.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(outcomes)
}

/// The error to stop a run on when following failed (the ledger could not be written): the
/// submissions' own, once they stopped, which names every job started so far; else `error`.
/// The submissions stop soon after the ledger does, as each records its intent first.
async fn after_submissions(
    submitting: &mut JoinSet<anyhow::Result<Vec<(LedgerKey, Outcome)>>>,
    error: anyhow::Error,
) -> anyhow::Error {
    match submitting.join_next().await {
        Some(Ok(Err(submissions))) => submissions,
        _ => error,
    }
}

/// Follows those of `keys` that are pending and not followed already, from `now`.
fn follow_pending(run: &Run<'_>, schedule: &mut Schedule, keys: &[LedgerKey], now: Instant) {
    let fresh: Vec<LedgerKey> = keys
        .iter()
        .filter(|key| !schedule.follows(key))
        .cloned()
        .collect();
    for job in rows(run.writer, &fresh) {
        if job.status.is_pending() {
            let wait = schedule.start(&job.key, now);
            run.progress.waiting(std::slice::from_ref(&job), wait);
        }
    }
}

fn pending_count(run: &Run<'_>, keys: &[LedgerKey]) -> usize {
    rows(run.writer, keys)
        .iter()
        .filter(|job| job.status.is_pending())
        .count()
}

/// Starts a due job's turn: asks about the job its entry tracks, or sends again a submission
/// whose answer was lost. A job with neither (an entry being sent by hand) waits its next turn.
fn start_turn(run: &Run<'_>, schedule: &mut Schedule, turns: &mut JoinSet<Turn>, key: LedgerKey) {
    let started = Instant::now();
    let Some(status) = run
        .writer
        .with_ledger(|ledger| Some(ledger.entry(&key)?.status))
    else {
        schedule.stop(&key);
        return;
    };
    if !status.is_pending() {
        schedule.stop(&key);
        return;
    }
    if status == JobStatus::Submitting
        && let LedgerKey::Definition(id) = &key
        && let Some((candidate, force)) = run.payloads.candidate(id, false)
    {
        let client = run.client.clone();
        let writer = run.writer.clone();
        turns.spawn(async move {
            let outcome = submission::submit(&client, &writer, &candidate, force).await;
            Turn::Resent {
                key: candidate.key,
                started,
                outcome,
            }
        });
        return;
    }
    match questions(run.writer, std::slice::from_ref(&key)).pop() {
        Some(question) => {
            let client = run.client.clone();
            turns.spawn(async move {
                let answer = question.ask(client).await;
                Turn::Asked { started, answer }
            });
        }
        None => {
            schedule.asked(&key, started);
        }
    }
}

/// Records the turns that ended together (the polls' answers in one ledger write), and puts
/// every job still pending back on the schedule.
async fn take_turns(
    run: &Run<'_>,
    schedule: &mut Schedule,
    done: Vec<Turn>,
    resent: &mut BTreeMap<LedgerKey, Outcome>,
    followed: &mut Followed,
) -> anyhow::Result<()> {
    let mut answers = Vec::new();
    // Each job whose turn ended, when the turn started, and whether it reached the service.
    let mut ended = Vec::new();
    for turn in done {
        match turn {
            Turn::Asked { started, answer } => {
                ended.push((answer.question.key.clone(), started, answer.state.is_ok()));
                answers.push(answer);
            }
            Turn::Resent {
                key,
                started,
                outcome,
            } => {
                let outcome = outcome?;
                let reached =
                    !matches!(outcome, Outcome::AnswerLost { .. } | Outcome::Error { .. });
                resent.insert(key.clone(), outcome);
                ended.push((key, started, reached));
            }
        }
    }
    if !answers.is_empty() {
        let asked: Vec<LedgerKey> = answers
            .iter()
            .map(|answer| answer.question.key.clone())
            .collect();
        let Polled { errors, unnamed } = record_answers(run.writer, answers, run.progress).await?;
        for key in &asked {
            followed.poll_errors.remove(key);
        }
        followed.poll_errors.extend(errors);
        followed.unnamed_statuses.extend(unnamed);
    }
    let keys: Vec<LedgerKey> = ended.iter().map(|(key, _, _)| key.clone()).collect();
    let now_pending: BTreeMap<LedgerKey, _> = rows(run.writer, &keys)
        .into_iter()
        .map(|job| (job.key.clone(), job))
        .collect();
    for (key, started, reached) in ended {
        match now_pending.get(&key) {
            Some(job) if job.status.is_pending() => {
                let left = if reached {
                    let wait = schedule.asked(&key, started);
                    (started + wait).saturating_duration_since(Instant::now())
                } else {
                    schedule.failed(&key, Instant::now())
                };
                run.progress.waiting(std::slice::from_ref(job), left);
            }
            _ => schedule.stop(&key),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> LedgerKey {
        LedgerKey::Definition(name.to_string())
    }

    #[test]
    fn each_job_is_first_asked_an_interval_after_its_own_start() {
        let mut schedule = Schedule::new(Duration::from_secs(5));
        let zero = Instant::now();
        schedule.start(&key("early"), zero);
        schedule.start(&key("late"), zero + Duration::from_secs(20));
        assert_eq!(schedule.next_due(), Some(zero + Duration::from_secs(5)));
        assert_eq!(
            schedule.take_due(zero + Duration::from_secs(5)),
            vec![key("early")]
        );
        // A job being asked about is not due again until it is put back.
        assert_eq!(schedule.next_due(), Some(zero + Duration::from_secs(25)));
        assert!(schedule.take_due(zero + Duration::from_secs(6)).is_empty());
    }

    #[test]
    fn each_next_wait_is_half_as_long_again_from_when_the_job_was_asked() {
        let mut schedule = Schedule::new(Duration::from_secs(4));
        let zero = Instant::now();
        schedule.start(&key("job"), zero);
        let mut asked = zero + Duration::from_secs(4);
        let mut waits = Vec::new();
        for _ in 0..3 {
            assert_eq!(schedule.take_due(asked), vec![key("job")]);
            let wait = schedule.asked(&key("job"), asked);
            waits.push(wait);
            asked += wait;
            assert_eq!(schedule.next_due(), Some(asked));
        }
        assert_eq!(waits, [6_000, 9_000, 13_500].map(Duration::from_millis));
    }

    #[test]
    fn the_wait_stops_growing_at_the_longest_interval() {
        let mut schedule = Schedule::new(Duration::from_secs(500));
        let zero = Instant::now();
        schedule.start(&key("job"), zero);
        assert_eq!(schedule.asked(&key("job"), zero), MAX_POLL_INTERVAL);
        assert_eq!(schedule.asked(&key("job"), zero), MAX_POLL_INTERVAL);
        // A first interval longer than the longest is kept as it is.
        let mut slow = Schedule::new(MAX_POLL_INTERVAL * 2);
        slow.start(&key("job"), zero);
        assert_eq!(slow.asked(&key("job"), zero), MAX_POLL_INTERVAL * 2);
    }

    #[test]
    fn a_turn_that_failed_comes_back_soon_and_later_at_each_failure_in_a_row() {
        let mut schedule = Schedule::new(Duration::from_secs(5));
        let zero = Instant::now();
        schedule.start(&key("job"), zero);
        for _ in 0..3 {
            schedule.asked(&key("job"), zero);
        }
        // The schedule had grown to 16.875 s, its next wait 25.3125 s. A failure brings the job
        // back after 5 s, then 10 s, 20 s, and never later than that next wait.
        let failures: Vec<Duration> = (0..4).map(|_| schedule.failed(&key("job"), zero)).collect();
        let next_wait = Duration::from_micros(25_312_500);
        assert_eq!(
            failures,
            [
                Duration::from_secs(5),
                Duration::from_secs(10),
                Duration::from_secs(20),
                next_wait
            ]
        );
        assert_eq!(schedule.next_due(), Some(zero + next_wait));
        // An answer ends the run of failures, and the schedule grows on from where it was.
        assert_eq!(schedule.asked(&key("job"), zero), next_wait);
        assert_eq!(schedule.failed(&key("job"), zero), Duration::from_secs(5));
    }

    #[test]
    fn a_new_start_replaces_the_schedule_and_a_stopped_job_is_gone() {
        let mut schedule = Schedule::new(Duration::from_secs(5));
        let zero = Instant::now();
        schedule.start(&key("job"), zero);
        schedule.asked(&key("job"), zero + Duration::from_secs(5));
        schedule.start(&key("job"), zero + Duration::from_secs(6));
        assert_eq!(schedule.next_due(), Some(zero + Duration::from_secs(11)));
        schedule.stop(&key("job"));
        assert!(schedule.is_empty());
        assert_eq!(schedule.next_due(), None);
    }
}
