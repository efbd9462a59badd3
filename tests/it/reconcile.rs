//! `imagegen reconcile` and `imagegen adopt` end to end: the binary against the Image Factory
//! emulator over real HTTP, with the ledger in real files. Each scenario checks the emulator's
//! request log, so "submitted nothing" means no POST reached the service.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use imagegen::factory::emulator::{Emulator, EmulatorConfig, Fault, Route};
use imagegen::state::JobStatus;
use serde_json::Value;

use crate::common::osob::Osob;
use crate::common::{
    self, Repo, fast_emulator, imagegen_against, json_of, posts, process_against, run_against,
    stdout_of,
};

/// `reconcile --wait` as the tests run it: no pull request, quick polls.
const WAIT: &[&str] = &["reconcile", "--no-pr", "--wait", "--poll-interval", "100ms"];

/// The first image name of every payload POSTed, in order.
fn posted_images(emulator: &Emulator) -> Vec<String> {
    posts(emulator)
        .iter()
        .map(|post| post.image_names().join(","))
        .collect()
}

fn affected(repo: &Repo, variable: &str) -> BTreeSet<String> {
    let output = repo.run(&["affected", variable, "--output", "json"], 0);
    json_of(&output)["definitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|definition| definition["definition"].as_str().unwrap().to_string())
        .collect()
}

fn set_variable(repo: &Repo, name: &str, value: &str) {
    let mut variables: serde_json::Map<String, Value> =
        serde_json::from_str(&repo.read("variables.json")).unwrap();
    variables.insert(name.to_string(), Value::String(value.to_string()));
    repo.write(
        "variables.json",
        &serde_json::to_string_pretty(&variables).unwrap(),
    );
}

/// Every definition's ledger entry is succeeded, and its tracking id names a job the emulator
/// ran for exactly the payload the ledger holds.
/// The run's table reports the shipped repository's 16 jobs succeeded, each built once.
fn assert_every_shipped_job_succeeded(
    output: &std::process::Output,
    repo: &Repo,
    emulator: &Emulator,
) {
    assert!(
        stdout_of(output).contains("16 succeeded"),
        "{}",
        stdout_of(output)
    );
    assert_all_built_once(repo, emulator);
}

fn assert_all_built_once(repo: &Repo, emulator: &Emulator) {
    let ledger = repo.ledger();
    let ids = repo.definition_ids();
    assert_eq!(ledger.definitions.len(), ids.len());
    let mut tracking_ids = BTreeSet::new();
    for (id, entry) in &ledger.definitions {
        assert_eq!(entry.status, JobStatus::Succeeded, "{id}: {entry:?}");
        let tracking_id = entry.tracking_id.clone().expect("a tracking id");
        assert!(
            tracking_ids.insert(tracking_id.clone()),
            "{id} shares a job"
        );
        let job = emulator
            .job(&tracking_id)
            .expect("the emulator knows the job");
        assert_eq!(job.images.len(), entry.image_names.len());
    }
    let payloads = emulator.payloads();
    let distinct: BTreeSet<String> = payloads.iter().map(Value::to_string).collect();
    assert_eq!(
        distinct.len(),
        payloads.len(),
        "the emulator started a job twice for one payload"
    );
}

#[test]
fn the_first_run_submits_everything_and_the_next_submits_nothing() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    let definitions = repo.definition_ids().len();

    // Without --wait the run ends at once, with every job still pending.
    let first = run_against(&repo, &emulator, &["reconcile", "--no-pr"], 2);
    assert_eq!(posts(&emulator).len(), definitions);
    let text = stdout_of(&first);
    assert!(
        text.contains("16 submitted by this run; 16 queued"),
        "{text}"
    );
    assert!(
        common::stderr_of(&first).contains("run imagegen reconcile again later"),
        "{}",
        common::stderr_of(&first)
    );

    // The next run polls them to the end and submits nothing.
    emulator.skip(Duration::from_secs(5));
    let second = run_against(&repo, &emulator, &["reconcile", "--no-pr"], 0);
    assert_eq!(posts(&emulator).len(), definitions, "no second POST");
    let text = stdout_of(&second);
    assert!(
        text.contains("0 submitted by this run; 16 succeeded"),
        "{text}"
    );
    assert_all_built_once(&repo, &emulator);

    // With nothing pending and nothing changed, there is nothing to do.
    let third = run_against(&repo, &emulator, &["reconcile", "--no-pr"], 0);
    assert!(
        stdout_of(&third).contains("nothing to do: 16 definitions unchanged and built"),
        "{}",
        stdout_of(&third)
    );
    assert_eq!(posts(&emulator).len(), definitions);
}

#[test]
fn changing_a_variable_resubmits_exactly_the_definitions_using_it() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    run_against(&repo, &emulator, WAIT, 0);
    let before = posts(&emulator).len();

    set_variable(&repo, "WINDOWS_SERVER_2022_BUILD", "20348.2966.241205");
    let expected = affected(&repo, "WINDOWS_SERVER_2022_BUILD");
    assert!(expected.len() > 1 && expected.len() < repo.definition_ids().len());
    // The Visual Studio images on Server 2022 do not carry the Windows build in their names:
    // rebuilding them under the same names has to be allowed.
    let output = run_against(
        &repo,
        &emulator,
        &[WAIT, &["--allow-same-name", "--output", "json"]].concat(),
        0,
    );
    let document = json_of(&output);
    let submitted: BTreeSet<String> = document["submitted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["ledger"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(submitted, expected);
    assert_eq!(posts(&emulator).len(), before + expected.len());
    for job in document["jobs"].as_array().unwrap() {
        assert_eq!(job["status"], "succeeded", "{job}");
        assert!(job["duration"].is_u64(), "{job}");
    }
    assert_eq!(document["exit_code"], 0);
    for id in &expected {
        let entry = &repo.ledger().definitions[id];
        assert_eq!(
            entry.variables["WINDOWS_SERVER_2022_BUILD"],
            "20348.2966.241205"
        );
    }
}

#[test]
fn a_failed_job_is_reported_and_only_retried_when_asked_or_changed() {
    let repo = Repo::shipped();
    let failing = "vs2022/server-2022-enterprise";
    let (emulator, image) = common::emulator_failing(&repo, failing);

    let first = run_against(&repo, &emulator, WAIT, 1);
    let text = stdout_of(&first);
    assert!(
        text.lines()
            .any(|line| line.starts_with(failing) && line.contains(" failed ")),
        "{text}"
    );
    let message = emulator
        .job(
            repo.ledger().definitions[failing]
                .tracking_id
                .as_deref()
                .unwrap(),
        )
        .unwrap()
        .message;
    assert!(!message.is_empty());
    assert!(text.contains(&message), "the message is shown: {text}");
    let submitted = posts(&emulator).len();

    // Not resubmitted by itself; still reported, still a failure.
    let again = run_against(&repo, &emulator, WAIT, 1);
    assert_eq!(posts(&emulator).len(), submitted);
    assert!(stdout_of(&again).contains(&message));

    // --retry-failed sends it once more, under a fresh idempotency key.
    run_against(&repo, &emulator, &[WAIT, &["--retry-failed"]].concat(), 1);
    let all = posts(&emulator);
    assert_eq!(all.len(), submitted + 1);
    let retry = all.last().unwrap();
    assert_eq!(retry.image_names(), std::slice::from_ref(&image));
    assert!(
        retry.idempotency_key.as_deref().unwrap().ends_with("-2"),
        "{:?}",
        retry.idempotency_key
    );

    // A changed payload is submitted again without asking.
    set_variable(&repo, "VS_2022_VERSION", "17_12_3");
    let affected = affected(&repo, "VS_2022_VERSION");
    run_against(&repo, &emulator, WAIT, 0);
    assert_eq!(posts(&emulator).len(), submitted + 1 + affected.len());
    assert_eq!(
        repo.ledger().definitions[failing].status,
        JobStatus::Succeeded
    );
}

#[test]
fn a_broken_definition_fails_the_run_but_does_not_hold_back_the_others() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    let broken = "definitions/windows-server/server-2016-datacenter.json";
    let text = repo
        .read(broken)
        .replace("{WINDOWS_SERVER_2016_BUILD}", "{WINDOWS_2016_BUILD}");
    repo.write(broken, &text);
    let output = run_against(&repo, &emulator, &["reconcile", "--no-pr"], 1);
    let stderr = common::stderr_of(&output);
    assert!(
        stderr.contains("error: definitions/windows-server/server-2016-datacenter.json at /"),
        "{stderr}"
    );
    assert!(stderr.contains("WINDOWS_2016_BUILD"), "{stderr}");
    assert_eq!(posts(&emulator).len(), repo.definition_ids().len() - 1);
    assert!(
        !repo
            .ledger()
            .definitions
            .contains_key("windows-server/server-2016-datacenter")
    );
}

#[test]
fn only_and_except_choose_definitions_by_id() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    run_against(
        &repo,
        &emulator,
        &[
            "reconcile",
            "--no-pr",
            "--only",
            "vs2022*",
            "--except",
            "*/windows-11*",
        ],
        2,
    );
    let chosen: BTreeSet<String> = repo.ledger().definitions.keys().cloned().collect();
    assert!(!chosen.is_empty());
    for id in &chosen {
        assert!(
            id.starts_with("vs2022") && !id.contains("/windows-11"),
            "{id}"
        );
    }
    assert_eq!(posts(&emulator).len(), chosen.len());
    let output = imagegen_against(&repo, &emulator)
        .args(["reconcile", "--no-pr", "--only", "vs2033*"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(
        common::stderr_of(&output).contains("--only \"vs2033*\" matches no definition id"),
        "{}",
        common::stderr_of(&output)
    );
}

/// Starts `reconcile` with its first submission's answer held back for `delay`, and returns
/// once the service has started that job: the run now waits for an answer, holding the ledger.
fn reconcile_stalled_after_first_post(
    repo: &Repo,
    emulator: &Emulator,
    delay: Duration,
) -> std::process::Child {
    emulator.inject(Route::Jobs, Fault::LateAnswer(delay));
    let child = process_against(repo, emulator)
        .args(["reconcile", "--no-pr", "--concurrency", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while emulator.job_count() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no job started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

/// Kills `reconcile` at the worst moment (the job exists, its answer is not yet recorded) and
/// then at random moments, again and again; the run after that must end with every definition
/// built exactly once.
#[test]
fn a_run_killed_at_any_moment_is_resumed_without_a_duplicate_job() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    let definitions = repo.definition_ids().len();

    // The first job is started but its answer is held back: kill the run in that gap.
    let mut child = reconcile_stalled_after_first_post(&repo, &emulator, Duration::from_secs(30));
    child.kill().unwrap();
    child.wait().unwrap();
    let interrupted = repo.ledger();
    let (id, entry) = interrupted.definitions.iter().next().unwrap();
    assert_eq!(entry.status, JobStatus::Submitting, "{id}");
    assert_eq!(entry.tracking_id, None, "the answer never arrived");

    // Then at random moments.
    let mut random = fastrand::Rng::with_seed(4);
    for _ in 0..8 {
        let mut child = process_against(&repo, &emulator)
            .args(WAIT)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(random.u64(0..400)));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    run_against(&repo, &emulator, WAIT, 0);
    assert_eq!(emulator.job_count(), definitions, "one job per definition");
    assert_all_built_once(&repo, &emulator);
    // Every POST after the first of a payload carried the same key: the service's
    // de-duplication, not luck, kept the job count right.
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for post in posts(&emulator) {
        keys.entry(post.image_names().join(","))
            .or_default()
            .insert(post.idempotency_key.unwrap());
    }
    assert!(keys.values().all(|keys| keys.len() == 1), "{keys:?}");
}

/// Kills `reconcile` in the middle of a journal write (half a record on disk), run after run;
/// every next run reads the ledger, cuts the torn record off and goes on, and the work ends
/// without a duplicate job.
#[test]
fn a_run_killed_in_the_middle_of_a_journal_write_is_resumed_without_a_duplicate_job() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    let definitions = repo.definition_ids().len();
    let journal = repo.path().join(".imagegen/state.json.journal");
    let mut kills = 0;
    for attempt in 0..8 {
        // The second append of each run: the first starts the journal anew or appends.
        let output = process_against(&repo, &emulator)
            .args(WAIT)
            .env("IMAGEGEN_FAULT_TORN_JOURNAL_WRITE", "2")
            .output()
            .unwrap();
        if output.status.success() {
            break;
        }
        kills += 1;
        let bytes = std::fs::read(&journal).unwrap();
        assert!(
            !bytes.ends_with(b"\n"),
            "run {attempt}: the journal ends in a torn record"
        );
        // The torn record is not read: the ledger is whole, and a dry run plans from it.
        let _ = repo.ledger();
        let dry = process_against(&repo, &emulator)
            .args(["reconcile", "--dry-run"])
            .output()
            .unwrap();
        assert_ne!(
            dry.status.code(),
            Some(1),
            "run {attempt}: {}",
            String::from_utf8_lossy(&dry.stderr)
        );
    }
    assert!(kills >= 2, "only {kills} runs died in a journal write");
    run_against(&repo, &emulator, WAIT, 0);
    assert_eq!(emulator.job_count(), definitions, "one job per definition");
    assert_all_built_once(&repo, &emulator);
    assert!(
        !journal.exists(),
        "the run that finished folded the journal into the snapshot"
    );
}

/// The disk fills up in the middle of a `--wait` (every journal append from the third on
/// fails): the run stops with exit 1 and says which file could not be written and why, and the
/// next run, with room again, ends every job with no payload built twice.
#[test]
fn a_ledger_that_cannot_be_written_mid_run_stops_it_and_the_next_run_builds_each_payload_once() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    let definitions = repo.definition_ids().len();
    let failed = process_against(&repo, &emulator)
        .args(WAIT)
        .args(["--output", "json"])
        .env("IMAGEGEN_FAULT_FAILED_JOURNAL_WRITE", "3")
        .output()
        .unwrap();
    let stderr = common::stderr_of(&failed);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("state.json.journal") && stderr.contains("No space left on device"),
        "{stderr}"
    );
    // The intents written before the disk filled were sent; the jobs they started are named
    // with their tracking ids, though the ledger could not take them.
    let started = posts(&emulator).len();
    assert!(started >= 1, "{stderr}");
    assert!(
        stderr.contains("jobs started so far: ") && !stderr.contains("so far: none"),
        "{stderr}"
    );
    assert!(stderr.contains("(not recorded)"), "{stderr}");
    // With --output json, standard output is one document holding the same error.
    let document = json_of(&failed);
    let message = document["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("(not recorded)"), "{document}");
    run_against(&repo, &emulator, WAIT, 0);
    assert_eq!(emulator.job_count(), definitions, "one job per definition");
    assert_all_built_once(&repo, &emulator);
}

#[test]
fn two_runs_at_once_on_one_ledger_submit_each_definition_once() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    let spawn = || {
        process_against(&repo, &emulator)
            .args(["reconcile", "--no-pr", "--output", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let first = first.wait_with_output().unwrap();
    let second = second.wait_with_output().unwrap();
    for output in [&first, &second] {
        assert_eq!(output.status.code(), Some(2), "{output:?}");
    }
    let submitted = |output: &std::process::Output| {
        json_of(output)["submitted"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|item| item["result"]["outcome"] == "submitted")
            .count()
    };
    let definitions = repo.definition_ids().len();
    // One run submitted everything; the other waited for the lock and found it all in flight.
    let mut counts = [submitted(&first), submitted(&second)];
    counts.sort();
    assert_eq!(counts, [0, definitions]);
    assert_eq!(posts(&emulator).len(), definitions);
    assert_eq!(repo.ledger().definitions.len(), definitions);
}

#[test]
fn a_job_the_service_does_not_know_is_reported_and_replaced_only_by_force() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    let id = "windows-server/server-2016-datacenter";
    // A ledger from another environment: the job it tracks does not exist here.
    let variables = repo.read("variables.json");
    repo.record_ledger(&variables, &[(id, JobStatus::Running)]);
    let output = run_against(&repo, &emulator, &["reconcile", "--no-pr", "--only", id], 1);
    let stderr = common::stderr_of(&output);
    assert!(
        stderr.contains(&format!(
            "error: {id}: could not ask about job job-windows-server-server-2016-datacenter: \
             Image Factory knows no job"
        )),
        "{stderr}"
    );
    assert!(
        posts(&emulator).is_empty(),
        "nothing was submitted in its place"
    );

    let skipped = run_against(&repo, &emulator, &["submit", id], 0);
    assert!(
        stdout_of(&skipped).contains("Image Factory does not know it"),
        "{}",
        stdout_of(&skipped)
    );
    assert!(posts(&emulator).is_empty());
    run_against(&repo, &emulator, &["submit", id, "--force"], 0);
    let sent = posts(&emulator);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].idempotency_key.as_deref().unwrap().ends_with("-2"));
    let entry = &repo.ledger().definitions[id];
    assert_eq!(entry.status, JobStatus::Queued);
    assert!(
        emulator
            .job(entry.tracking_id.as_deref().unwrap())
            .is_some()
    );
}

#[test]
fn a_second_run_waits_for_the_lock_then_names_the_holder() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    // The first run holds the ledger while its first submission's answer is held back.
    let mut holder = reconcile_stalled_after_first_post(&repo, &emulator, Duration::from_secs(3));
    let output = run_against(
        &repo,
        &emulator,
        &["reconcile", "--no-pr", "--lock-timeout", "300ms"],
        1,
    );
    let stderr = common::stderr_of(&output);
    assert!(
        stderr.contains("the ledger is locked by another run (imagegen reconcile, process"),
        "{stderr}"
    );
    assert_eq!(holder.wait().unwrap().code(), Some(2));
    assert_eq!(emulator.job_count(), repo.definition_ids().len());
}

/// The same race on a ledger kept in Azure Storage (Azurite): no lock, only ETags. Both runs
/// submit; every lost write is redone on the ledger the other run left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_at_once_on_a_blob_ledger_submit_each_definition_once() {
    let azurite = common::azurite::Azurite::start();
    azurite.container("ledgers").await;
    let url = azurite.blob_url("ledgers", "helix/state.json");
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    let spawn = || {
        process_against(&repo, &emulator)
            .env("IMAGEGEN_STATE", &url)
            .args(["reconcile", "--no-pr", "--output", "json", "-v"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let (first, second) = tokio::task::spawn_blocking(move || {
        (
            first.wait_with_output().unwrap(),
            second.wait_with_output().unwrap(),
        )
    })
    .await
    .unwrap();
    for output in [&first, &second] {
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let document = json_of(output);
        assert!(
            !document["state"].as_str().unwrap().contains("sig="),
            "the SAS is never shown"
        );
    }
    let definitions = repo.definition_ids().len();
    let all_posts = posts(&emulator);
    let keys: BTreeSet<String> = all_posts
        .iter()
        .map(|post| post.idempotency_key.clone().unwrap())
        .collect();
    assert_eq!(keys.len(), definitions, "one key a definition");
    assert_eq!(emulator.job_count(), definitions, "one job a definition");
    // No lost update: the blob holds every job, with the tracking id the service gave it.
    let (bytes, _) = azurite.blob("ledgers", "helix/state.json").await.unwrap();
    let ledger: imagegen::state::Ledger = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(ledger.definitions.len(), definitions);
    for (id, entry) in &ledger.definitions {
        let tracking_id = entry
            .tracking_id
            .as_deref()
            .unwrap_or_else(|| panic!("{id}"));
        assert!(emulator.job(tracking_id).is_some(), "{id}");
    }
    let raced = [&first, &second]
        .iter()
        .any(|output| common::stderr_of(output).contains("another run changed the ledger"));
    assert!(raced, "the runs did race for the blob");

    // The next run, on any machine, polls them to the end from the blob alone.
    emulator.skip(Duration::from_secs(5));
    let output = imagegen_against(&repo, &emulator)
        .env("IMAGEGEN_STATE", &url)
        .args(["reconcile", "--no-pr"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    // The racing runs may have seen some jobs end already; the blob says how every one ended.
    let (bytes, _) = azurite.blob("ledgers", "helix/state.json").await.unwrap();
    let ledger: imagegen::state::Ledger = serde_json::from_slice(&bytes).unwrap();
    let succeeded = ledger
        .definitions
        .values()
        .filter(|entry| entry.status == JobStatus::Succeeded)
        .count();
    assert_eq!(succeeded, definitions, "{}", stdout_of(&output));
    assert!(
        stdout_of(&output).contains("0 submitted by this run"),
        "{}",
        stdout_of(&output)
    );
    assert_eq!(emulator.job_count(), definitions);
}

#[test]
fn a_long_wait_converges_through_throttling_server_errors_and_expiring_tokens() {
    let repo = Repo::shipped();
    let emulator = Emulator::start_in_background(EmulatorConfig {
        queued_for: Duration::from_millis(300),
        running_for: Duration::from_millis(900),
        fault_rate: 0.25,
        fault_kinds: vec![
            Fault::Throttle {
                retry_after: Some(0),
            },
            Fault::ServerError(500),
            Fault::ServerError(503),
        ],
        seed: 11,
        ..EmulatorConfig::default()
    })
    .unwrap();
    let output = std::thread::scope(|scope| {
        // The service drops every token it gave while the run goes on.
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(600));
            emulator.expire_tokens();
        });
        run_against(&repo, &emulator, &[WAIT, &["--retries", "8"]].concat(), 0)
    });
    assert_every_shipped_job_succeeded(&output, &repo, &emulator);
    let requests = emulator.requests();
    let faults = requests.iter().filter(|r| r.fault.is_some()).count();
    let renewed = requests.iter().filter(|r| r.is_token_request()).count();
    assert!(faults >= 5, "faults were injected: {faults}");
    assert!(renewed >= 2, "tokens expired and were renewed: {renewed}");
    let refused = requests.iter().filter(|r| r.status == Some(401)).count();
    assert!(refused >= 1, "an expired token was refused and renewed");
}

#[test]
fn each_job_is_followed_from_its_own_submission_while_a_slow_one_is_still_out() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    // The first submission is answered only after three seconds; the others at once.
    let slow = Duration::from_secs(3);
    emulator.inject(Route::Jobs, Fault::Slow(slow));
    let output = run_against(&repo, &emulator, WAIT, 0);
    assert_every_shipped_job_succeeded(&output, &repo, &emulator);
    let requests = emulator.requests();
    let slow_post = requests
        .iter()
        .find(|request| request.is_submission() && request.fault.is_some())
        .expect("the slow submission reached the service");
    let answered_at = slow_post.at_ms + u64::try_from(slow.as_millis()).unwrap();
    // The other jobs were asked about, and ended, while the slow one was still out.
    let polls_meanwhile = requests
        .iter()
        .filter(|request| request.method == "GET" && request.at_ms < answered_at)
        .count();
    assert!(
        polls_meanwhile >= 15,
        "{polls_meanwhile} polls before the slow submission was answered"
    );
}

#[test]
fn wait_gives_up_at_its_timeout_and_exits_pending() {
    let repo = Repo::shipped();
    let emulator = Emulator::start_in_background(EmulatorConfig {
        queued_for: Duration::from_secs(3600),
        ..EmulatorConfig::default()
    })
    .unwrap();
    let output = run_against(
        &repo,
        &emulator,
        &[WAIT, &["--only", "vs2019*", "--timeout", "500ms"]].concat(),
        2,
    );
    assert!(
        common::stderr_of(&output).contains("--timeout reached"),
        "{}",
        common::stderr_of(&output)
    );
    assert!(stdout_of(&output).contains("queued"));
}

#[test]
fn adopt_records_todays_images_so_nothing_is_rebuilt() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    let preview = repo.run(&["adopt", "--dry-run"], 0);
    assert!(stdout_of(&preview).contains("would adopt"));
    assert!(!repo.path().join(".imagegen/state.json").exists());

    repo.run(&["adopt", "--only", "vs2019*"], 0);
    let adopted = repo.ledger();
    assert!(!adopted.definitions.is_empty());
    for (id, entry) in &adopted.definitions {
        assert!(id.starts_with("vs2019"), "{id}");
        assert!(entry.adopted && entry.tracking_id.is_none());
        assert_eq!(entry.status, JobStatus::Succeeded);
        assert!(!entry.image_names.is_empty());
    }
    let output = repo.run(&["adopt", "--output", "json"], 0);
    let document = json_of(&output);
    assert_eq!(
        document["adopted"].as_u64().unwrap() as usize,
        repo.definition_ids().len() - adopted.definitions.len()
    );

    run_against(&repo, &emulator, &["reconcile", "--no-pr"], 0);
    assert!(
        posts(&emulator).is_empty(),
        "{:?}",
        posted_images(&emulator)
    );
}

#[test]
fn a_transient_poll_failure_exits_2_and_prints_one_document_in_json_as_in_text() {
    let repo = Repo::shipped();
    let emulator = Emulator::start_in_background(EmulatorConfig {
        queued_for: Duration::from_secs(3600),
        ..EmulatorConfig::default()
    })
    .unwrap();
    let id = "vs2022/server-2022-enterprise";
    run_against(&repo, &emulator, &["submit", id], 0);
    let args = ["reconcile", "--no-pr", "--only", id, "--retries", "0"];
    emulator.inject(Route::Jobs, Fault::ServerError(503));
    let text = run_against(&repo, &emulator, &args, 2);
    assert!(
        common::stderr_of(&text).contains("asking again at the next poll"),
        "{}",
        common::stderr_of(&text)
    );
    emulator.inject(Route::Jobs, Fault::ServerError(503));
    let json = run_against(
        &repo,
        &emulator,
        &[&args[..], &["--output", "json"]].concat(),
        2,
    );
    let document = json_of(&json);
    let errors = document["poll_errors"].as_array().expect("a list");
    assert_eq!(errors.len(), 1, "{document}");
    assert_eq!(errors[0]["ledger"]["name"], id);
    assert_eq!(errors[0]["transient"], true);
    assert!(errors[0]["message"].as_str().unwrap().contains("503"));
    assert_eq!(document["exit_code"], 2);
}

/// Every definition in the ledger is built, with the images its payload names.
fn assert_every_image_recorded(repo: &Repo) {
    let ledger = repo.ledger();
    assert_eq!(ledger.definitions.len(), repo.definition_ids().len());
    for (id, entry) in &ledger.definitions {
        assert_eq!(entry.status, JobStatus::Succeeded, "{id}: {entry:?}");
        assert_eq!(
            entry.image_names,
            imagegen::definitions::custom_image_names(&entry.payload.to_value()),
            "{id}: the images come from the job"
        );
    }
}

#[test]
fn a_resend_after_a_kill_between_the_post_and_its_answer_records_the_images_of_the_job() {
    let repo = Repo::shipped();
    repo.map_to_local_osob();
    let osob = Osob::new();
    let emulator = fast_emulator();
    let mut child = reconcile_stalled_after_first_post(&repo, &emulator, Duration::from_secs(30));
    child.kill().unwrap();
    child.wait().unwrap();
    // The job whose answer was lost has ended by the time the next run sends it again: the
    // service answers with the replay (200, Succeeded), which names no image.
    emulator.skip(Duration::from_secs(5));
    let output = run_against(
        &repo,
        &emulator,
        &[
            "reconcile",
            "--wait",
            "--poll-interval",
            "100ms",
            "--osob-url",
            &osob.url(),
        ],
        0,
    );
    assert!(
        posts(&emulator).iter().any(|post| post.status == Some(200)),
        "the resend was a replay"
    );
    assert_eq!(emulator.job_count(), repo.definition_ids().len());
    assert_every_image_recorded(&repo);
    assert!(
        osob.read_on("imagegen/helix-images", "definitions/images.json")
            .is_some(),
        "the pull request's branch was pushed: {}",
        common::stderr_of(&output)
    );
}

#[test]
fn a_lost_ledger_is_rebuilt_from_the_jobs_the_service_hands_back() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    run_against(&repo, &emulator, WAIT, 0);
    std::fs::remove_file(repo.path().join(".imagegen/state.json")).unwrap();
    let output = run_against(&repo, &emulator, WAIT, 0);
    assert_eq!(
        emulator.job_count(),
        repo.definition_ids().len(),
        "no second build"
    );
    assert!(
        common::stderr_of(&output).contains("handed back job"),
        "{}",
        common::stderr_of(&output)
    );
    assert_every_image_recorded(&repo);
}

#[test]
fn a_job_succeeded_without_images_is_tracked_again_and_does_not_hold_back_the_pull_request() {
    let repo = Repo::shipped();
    repo.map_to_local_osob();
    let osob = Osob::new();
    let emulator = fast_emulator();
    run_against(&repo, &emulator, &["reconcile", "--no-pr"], 2);
    emulator.skip(Duration::from_secs(5));
    emulator.inject(Route::Jobs, Fault::NoImages);
    let output = run_against(
        &repo,
        &emulator,
        &[
            "reconcile",
            "--concurrency",
            "1",
            "--osob-url",
            &osob.url(),
            "--output",
            "json",
        ],
        1,
    );
    let document = json_of(&output);
    let imageless: Vec<&Value> = document["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|job| job["status"] != "succeeded")
        .collect();
    assert_eq!(imageless.len(), 1, "{document:#}");
    let job = imageless[0];
    assert_eq!(job["status"], "no-images", "{job}");
    let message = job["message"].as_str().unwrap();
    assert!(
        message.contains("Succeeded but names no image")
            && message.contains("the images are being registered"),
        "the service's message is shown: {message}"
    );
    let id = job["key"]["name"].as_str().unwrap().to_string();
    let entry = repo.ledger().definitions[&id].clone();
    assert_eq!(entry.status, JobStatus::NoImages);
    assert!(entry.image_names.is_empty(), "never recorded as built");

    // The pull request goes ahead with the other images, and names this one as not included.
    let pr = &document["pr"];
    let not_included = pr["content"]["not_included"].as_array().unwrap();
    assert!(
        not_included
            .iter()
            .any(|item| item["definition"] == id.as_str() && item["status"] == "no-images"),
        "{pr:#}"
    );
    assert!(!pr["content"]["changes"].as_array().unwrap().is_empty());
    assert!(pr["body"].as_str().unwrap().contains(&id));
    assert!(
        osob.read_on("imagegen/helix-images", "definitions/images.json")
            .is_some()
    );

    // The next run asks about it again; now the service lists its images.
    let again = run_against(
        &repo,
        &emulator,
        &["reconcile", "--osob-url", &osob.url()],
        0,
    );
    let entry = repo.ledger().definitions[&id].clone();
    assert_eq!(entry.status, JobStatus::Succeeded, "{}", stdout_of(&again));
    assert!(!entry.image_names.is_empty());
}

#[test]
fn a_job_that_built_other_names_is_left_out_of_the_pull_request_without_blocking_it() {
    let repo = Repo::shipped();
    repo.map_to_local_osob();
    let osob = Osob::new();
    let ids = repo.definition_ids();
    let statuses: Vec<(&str, JobStatus)> = ids
        .iter()
        .map(|id| (id.as_str(), JobStatus::Succeeded))
        .collect();
    repo.record_ledger(&repo.read("variables.json"), &statuses);
    let odd = "vs2022/server-2022-enterprise";
    let mut ledger = repo.ledger();
    ledger.definitions.get_mut(odd).unwrap().image_names = vec!["Helix-Something-Else_1".into()];
    repo.save_ledger(&ledger);
    let output = repo
        .imagegen()
        .env("IMAGEGEN_OSOB_URL", osob.url())
        .args(["pr", "--dry-run", "--output", "json"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    let document = json_of(&output);
    let left_out = &document["content"]["not_included"];
    let item = left_out
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["definition"] == odd)
        .unwrap_or_else(|| panic!("{document:#}"));
    assert!(
        item["reason"]
            .as_str()
            .unwrap()
            .contains("produced Helix-Something-Else_1, not"),
        "{item}"
    );
    assert!(document["content"]["changes"].as_array().unwrap().len() > 1);
}

#[test]
fn a_status_the_contract_does_not_name_is_warned_about_and_polled_again() {
    let repo = Repo::shipped();
    let emulator = Emulator::start_in_background(EmulatorConfig {
        queued_for: Duration::from_secs(3600),
        ..EmulatorConfig::default()
    })
    .unwrap();
    let id = "vs2022/server-2022-enterprise";
    run_against(&repo, &emulator, &["submit", id], 0);
    let tracking_id = repo.ledger().definitions[id].tracking_id.clone().unwrap();
    emulator.inject(Route::Jobs, Fault::ReportStatus("Paused".into()));
    let output = run_against(&repo, &emulator, &["reconcile", "--no-pr", "--only", id], 2);
    let stderr = common::stderr_of(&output);
    assert!(
        stderr.contains(&format!(
            "warning: {id}: job {tracking_id} reports status \"Paused\", which the contract does \
             not name; taken as not finished, and asked about again"
        )),
        "{stderr}"
    );
    assert_eq!(repo.ledger().definitions[id].status, JobStatus::Running);

    emulator.inject(Route::Jobs, Fault::ReportStatus("Paused".into()));
    let output = run_against(
        &repo,
        &emulator,
        &["reconcile", "--no-pr", "--only", id, "--output", "json"],
        2,
    );
    let document = json_of(&output);
    let warnings = document["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{document:#}");
    assert!(warnings[0].as_str().unwrap().contains("\"Paused\""));
}

/// Changes a variable that no image name holds: the definitions using it keep their names.
const CHANNEL: &str = "VS_2022_CHANNEL_URL";
const NEW_CHANNEL: &str = "https://aka.ms/vs/17/channel-2";

#[test]
fn a_changed_payload_that_keeps_its_image_name_is_refused_unless_allowed() {
    let repo = Repo::shipped();
    repo.map_to_local_osob();
    let osob = Osob::new();
    let emulator = fast_emulator();
    run_against(&repo, &emulator, WAIT, 0);
    let built = repo.ledger();
    let before = posts(&emulator).len();
    let old_channel = built.definitions["vs2022/server-2022-enterprise"].variables[CHANNEL].clone();
    set_variable(&repo, CHANNEL, NEW_CHANNEL);
    let using = affected(&repo, CHANNEL);
    assert!(using.len() > 1);
    let expected = format!(
        "error: vs2022/server-2022-enterprise: not submitted: the payload changed but keeps the \
         image name Helix-Server-DataCenter-2022-VS2022-Enterprise_17_12_1, which its last \
         submission already used ({CHANNEL} {old_channel} -> {NEW_CHANNEL}); rebuilding it would \
         put new content under a name OSOB already uses, reaching the queues with no review. Put \
         a version in CustomImageName (a placeholder for a variable that changes with the \
         content), or run again with --allow-same-name to rebuild it under the same name on \
         purpose"
    );

    // The dry run and the run agree: refused, exit 1, nothing sent.
    let dry_run = repo.run(&["reconcile", "--dry-run"], 1);
    assert!(
        common::stderr_of(&dry_run).contains(&expected),
        "{}",
        common::stderr_of(&dry_run)
    );
    assert!(
        stdout_of(&dry_run).contains(&format!(
            "Refused: changed payloads that keep their image names ({})",
            using.len()
        )),
        "{}",
        stdout_of(&dry_run)
    );
    let plan = json_of(&repo.run(&["reconcile", "--dry-run", "--output", "json"], 1));
    let refused: BTreeSet<String> = plan["plan"]["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|refusal| refusal["definition"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(refused, using);
    assert_eq!(plan["summary"]["refused"], using.len());
    let output = run_against(&repo, &emulator, &["reconcile", "--no-pr"], 1);
    assert!(
        common::stderr_of(&output).contains(&expected),
        "{}",
        common::stderr_of(&output)
    );
    assert_eq!(posts(&emulator).len(), before, "nothing was submitted");
    assert_eq!(repo.ledger(), built, "the ledger is as it was");
    let pr_dry_run = || {
        json_of(
            &repo
                .imagegen()
                .env("IMAGEGEN_OSOB_URL", osob.url())
                .args(["pr", "--dry-run", "--output", "json"])
                .assert()
                .code(2)
                .get_output()
                .clone(),
        )
    };
    let pr = pr_dry_run();
    let left_out = pr["content"]["not_included"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["definition"] == "vs2022/server-2022-enterprise")
        .unwrap_or_else(|| panic!("{pr:#}"));
    assert_eq!(left_out["status"], "same name", "{left_out}");
    assert!(
        left_out["reason"]
            .as_str()
            .unwrap()
            .contains("--allow-same-name"),
        "{left_out}"
    );

    // A person allows it on purpose: built, remembered, and said in the pull request.
    run_against(
        &repo,
        &emulator,
        &[WAIT, &["--allow-same-name"]].concat(),
        0,
    );
    assert_eq!(posts(&emulator).len(), before + using.len());
    let entry = &repo.ledger().definitions["vs2022/server-2022-enterprise"];
    let allowed = entry.same_name_allowed.as_ref().expect("remembered");
    assert_eq!(
        allowed.image_names,
        ["Helix-Server-DataCenter-2022-VS2022-Enterprise_17_12_1"]
    );
    assert_eq!(allowed.variable_changes[0].name, CHANNEL);
    let pr = pr_dry_run();
    let body = pr["body"].as_str().unwrap();
    assert!(
        body.lines()
            .any(|line| line.contains("vs2022/server-2022-enterprise")
                && line.contains("allowed with --allow-same-name")),
        "{body}"
    );
    // Planned again, the same payload is no longer a change.
    run_against(&repo, &emulator, &["reconcile", "--no-pr"], 0);
}

#[test]
fn force_sends_the_same_payload_again_without_a_same_name_refusal() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    let id = "vs2022/server-2022-enterprise";
    run_against(&repo, &emulator, &[WAIT, &["--only", id]].concat(), 0);
    run_against(
        &repo,
        &emulator,
        &[WAIT, &["--only", id, "--force"]].concat(),
        0,
    );
    assert_eq!(posts(&emulator).len(), 2);
    assert_eq!(repo.ledger().definitions[id].same_name_allowed, None);
}

/// A ledger edited by hand so that an intent's idempotency key holds a character no HTTP
/// header may carry: the resend is refused with a message naming the key, nothing is sent,
/// the other definitions go on, and the run does not panic.
#[test]
fn an_intent_whose_idempotency_key_cannot_be_a_header_is_reported_not_a_panic() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    let id = "windows-server/server-2016-datacenter";
    repo.record_ledger(&repo.read("variables.json"), &[(id, JobStatus::Submitting)]);
    let mut ledger = repo.ledger();
    let entry = ledger.definitions.get_mut(id).unwrap();
    entry.tracking_id = None;
    entry.idempotency_key = Some("key\nwith a line break".into());
    repo.save_ledger(&ledger);
    let output = process_against(&repo, &emulator)
        .args(["reconcile", "--no-pr", "--only", "windows-server/*"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot be sent as an HTTP header"),
        "{stderr}"
    );
    let posted = posts(&emulator);
    assert_eq!(posted.len(), 4, "the four other definitions were sent");
}
