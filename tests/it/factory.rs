//! Image Factory over real HTTP: the client against the emulator the tests start, and the
//! `submit` and `status` commands of the binary against it, down to the emulator's request log.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use imagegen::catalog::Catalog;
use imagegen::definitions::Payload;
use imagegen::factory::emulator::{Emulator, EmulatorConfig, Fault, Route};
use imagegen::factory::{Credentials, FactoryClient, FactoryError, FactorySettings, RemoteStatus};
use imagegen::http::RetryPolicy;
use imagegen::state::JobStatus;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::common::router_server::RouterServer;
use crate::common::{
    Repo, fast_emulator, imagegen_against, json_of, posts, run_against, stderr_of, stdout_of,
};

/// Retries fast enough for tests, with the same shape as the real policy.
fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        max_elapsed: Duration::from_secs(20),
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
    }
}

fn client_for(emulator: &Emulator, secret: &str) -> FactoryClient {
    let config = emulator.config();
    let mut settings = FactorySettings::new(&emulator.url(), Some(&emulator.url())).unwrap();
    settings.retry = quick_retries();
    settings.timeouts.request = Duration::from_millis(500);
    let credentials = Credentials::new(
        &config.tenant_id,
        &config.client_id,
        SecretString::from(secret.to_string()),
        &config.resource_id,
    );
    FactoryClient::new(settings, credentials).unwrap()
}

fn client(emulator: &Emulator) -> FactoryClient {
    client_for(emulator, &emulator.config().client_secret)
}

fn payload(name: &str) -> Payload {
    Payload::new(&json!({
        "Location": "westus2",
        "Destination": [{"StorageAccountName": "x", "CustomImageName": name, "SubId": "s"}]
    }))
}

fn submissions(emulator: &Emulator) -> usize {
    posts(emulator).len()
}

fn token_requests(emulator: &Emulator) -> usize {
    emulator
        .requests()
        .iter()
        .filter(|request| request.is_token_request())
        .count()
}

// --- The client ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_token_is_fetched_once_and_reused() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let client = client(&emulator);
    let submitted = client.submit(&payload("Helix-A_1"), "key-a").await.unwrap();
    assert_eq!(submitted.status, RemoteStatus::Queued);
    assert!(!submitted.existing);
    client.submit(&payload("Helix-B_1"), "key-b").await.unwrap();
    let state = client.job(&submitted.tracking_id).await.unwrap();
    assert_eq!(state.tracking_id, submitted.tracking_id);
    assert_eq!(token_requests(&emulator), 1);
    assert_eq!(client.tokens_fetched(), 1);
    let token_request = emulator
        .requests()
        .into_iter()
        .find(|request| request.is_token_request())
        .unwrap();
    let form = token_request.body.unwrap();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["scope"], "api://image-factory-emulator/.default");
    assert_eq!(
        form["client_secret"], "[hidden]",
        "the log never holds the secret"
    );
}

#[tokio::test]
async fn an_expired_token_is_renewed_once() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let client = client(&emulator);
    let submitted = client.submit(&payload("Helix-A_1"), "key-a").await.unwrap();
    emulator.expire_tokens();
    client.job(&submitted.tracking_id).await.unwrap();
    assert_eq!(client.tokens_fetched(), 2);
    let statuses: Vec<(String, Option<u16>)> = emulator
        .requests()
        .iter()
        .map(|request| (request.route.unwrap_or("-").to_string(), request.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("token".to_string(), Some(200)),
            ("jobs".to_string(), Some(202)),
            ("jobs".to_string(), Some(401)),
            ("token".to_string(), Some(200)),
            ("jobs".to_string(), Some(200)),
        ]
    );
}

#[tokio::test]
async fn a_token_refused_twice_is_a_clear_error() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let refused = Fault::Status {
        status: 401,
        body: r#"{"error":{"code":"Unauthorized","message":"audience mismatch"}}"#.into(),
    };
    emulator.inject(Route::Jobs, refused.clone());
    emulator.inject(Route::Jobs, refused);
    let error = client(&emulator)
        .submit(&payload("Helix-A_1"), "k")
        .await
        .unwrap_err();
    assert!(
        matches!(error, FactoryError::Unauthorized { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("audience mismatch") && message.contains("IMAGE_FACTORY_RESOURCE_ID"),
        "{message}"
    );
    assert_eq!(token_requests(&emulator), 2);
}

#[tokio::test]
async fn the_v1_token_endpoint_asks_for_the_resource() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let config = emulator.config();
    let mut settings = FactorySettings::new(&emulator.url(), Some(&emulator.url())).unwrap();
    settings.token_version = imagegen::factory::TokenVersion::V1;
    let credentials = Credentials::new(
        &config.tenant_id,
        &config.client_id,
        SecretString::from(config.client_secret.clone()),
        &config.resource_id,
    );
    let client = FactoryClient::new(settings, credentials).unwrap();
    client.submit(&payload("Helix-A_1"), "k").await.unwrap();
    let request = &emulator.requests()[0];
    assert!(
        request.path.ends_with("/emulator-tenant/oauth2/token"),
        "{}",
        request.path
    );
    assert_eq!(
        request.body.as_ref().unwrap()["resource"],
        config.resource_id
    );
}

#[tokio::test]
async fn a_wrong_secret_is_refused_without_showing_it() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let error = client_for(&emulator, "canary-wrong-secret-5d1e")
        .submit(&payload("Helix-A_1"), "k")
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, FactoryError::Token { status: 401, .. }),
        "{error:?}"
    );
    assert!(
        message.contains("invalid_client") && message.contains("emulator-client"),
        "{message}"
    );
    assert!(!message.contains("canary") && !format!("{error:?}").contains("canary"));
    assert_eq!(submissions(&emulator), 0);
}

#[tokio::test]
async fn throttling_waits_as_long_as_retry_after_asks() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emulator.inject(
        Route::Jobs,
        Fault::Throttle {
            retry_after: Some(1),
        },
    );
    client(&emulator)
        .submit(&payload("Helix-A_1"), "key-a")
        .await
        .unwrap();
    let posts = posts(&emulator);
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0].status, Some(429));
    assert_eq!(posts[1].status, Some(202));
    assert!(
        posts[1].at_ms - posts[0].at_ms >= 1000,
        "the retry came {} ms later, before Retry-After's 1 s",
        posts[1].at_ms - posts[0].at_ms
    );
    assert_eq!(emulator.job_count(), 1);
}

/// A client allowing `concurrency` requests at once, whose retries wait `backoff` (half of it to
/// all of it, as jitter has it).
fn client_with(emulator: &Emulator, concurrency: usize, backoff: Duration) -> FactoryClient {
    let config = emulator.config();
    let mut settings = FactorySettings::new(&emulator.url(), Some(&emulator.url())).unwrap();
    settings.concurrency = concurrency;
    settings.retry = RetryPolicy {
        initial_backoff: backoff,
        max_backoff: backoff,
        ..quick_retries()
    };
    let credentials = Credentials::new(
        &config.tenant_id,
        &config.client_id,
        SecretString::from(config.client_secret.clone()),
        &config.resource_id,
    );
    FactoryClient::new(settings, credentials).unwrap()
}

#[tokio::test]
async fn a_request_waiting_out_its_backoff_gives_its_slot_to_another() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emulator.inject(Route::Jobs, Fault::ServerError(503));
    // One request at a time, and a retry at least a second after its 503.
    let client = client_with(&emulator, 1, Duration::from_secs(2));
    let (first, second) = (payload("Helix-A_1"), payload("Helix-B_1"));
    let (a, b) = tokio::join!(
        client.submit(&first, "key-a"),
        client.submit(&second, "key-b"),
    );
    a.unwrap();
    b.unwrap();
    let posts = posts(&emulator);
    let statuses: Vec<_> = posts.iter().map(|post| post.status).collect();
    assert_eq!(statuses, [Some(503), Some(202), Some(202)]);
    let (failed, other, retry) = (&posts[0], &posts[1], &posts[2]);
    assert_ne!(other.idempotency_key, failed.idempotency_key);
    assert_eq!(retry.idempotency_key, failed.idempotency_key);
    assert!(
        other.at_ms - failed.at_ms < 500,
        "the other submission went {} ms after the 503: it waited for the retry's backoff",
        other.at_ms - failed.at_ms
    );
    assert!(retry.at_ms - failed.at_ms >= 1000);
}

#[tokio::test]
async fn a_429_slows_every_request_of_the_client_down() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emulator.inject(
        Route::Jobs,
        Fault::Throttle {
            retry_after: Some(1),
        },
    );
    let client = client_with(&emulator, 4, Duration::from_millis(20));
    assert_eq!(client.concurrency(), 4);
    let (first, second) = (payload("Helix-A_1"), payload("Helix-B_1"));
    let throttled = client.submit(&first, "key-a");
    // The second submission starts once the client has the first one's 429 (and has halved
    // its concurrency): it was not throttled itself, and waits out the Retry-After all the same.
    let after_the_429 = async {
        while client.concurrency() == 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let lowered = client.concurrency();
        (lowered, client.submit(&second, "key-b").await)
    };
    let (a, (lowered, b)) = tokio::join!(throttled, after_the_429);
    a.unwrap();
    b.unwrap();
    assert_eq!(
        lowered, 2,
        "the client halves its concurrency when throttled"
    );
    let posts = posts(&emulator);
    assert_eq!(posts[0].status, Some(429));
    for post in &posts[1..] {
        assert_eq!(post.status, Some(202));
        assert!(
            post.at_ms - posts[0].at_ms >= 1000,
            "{:?} was sent {} ms after the 429, within its Retry-After of 1 s",
            post.idempotency_key,
            post.at_ms - posts[0].at_ms
        );
    }
    assert_eq!(
        client.concurrency(),
        3,
        "two answers without a 429 (as many as the lowered limit) allow one request more"
    );
}

#[tokio::test]
async fn bursts_of_server_errors_and_resets_are_retried_with_the_same_key() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    for fault in [
        Fault::ServerError(500),
        Fault::Reset,
        Fault::ServerError(503),
        Fault::ServerError(502),
    ] {
        emulator.inject(Route::Jobs, fault);
    }
    client(&emulator)
        .submit(&payload("Helix-A_1"), "key-a")
        .await
        .unwrap();
    let posts = posts(&emulator);
    assert_eq!(posts.len(), 5);
    assert!(
        posts
            .iter()
            .all(|post| post.idempotency_key.as_deref() == Some("key-a"))
    );
    assert_eq!(emulator.job_count(), 1);
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_asked_again() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let client = client(&emulator);
    let submitted = client.submit(&payload("Helix-A_1"), "k").await.unwrap();
    emulator.inject(Route::Jobs, Fault::Slow(Duration::from_secs(3)));
    let state = client.job(&submitted.tracking_id).await.unwrap();
    assert_eq!(state.tracking_id, submitted.tracking_id);
}

#[tokio::test]
async fn retries_are_bounded_and_the_last_answer_is_shown() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    for _ in 0..10 {
        emulator.inject(Route::Jobs, Fault::ServerError(503));
    }
    let error = client(&emulator)
        .submit(&payload("Helix-A_1"), "k")
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(error.is_transient() && error.answer_lost(), "{error:?}");
    assert!(
        message.contains("503")
            && message.contains("after 5 tries")
            && message.contains("/api/jobs"),
        "{message}"
    );
    assert_eq!(submissions(&emulator), 5);
}

#[tokio::test]
async fn a_rejected_payload_shows_the_service_message() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let error = client(&emulator)
        .submit(&Payload::new(&json!({"Location": "westus2"})), "k")
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "Image Factory rejected the payload at {}api/jobs (InvalidPayload): Destination is \
             required and must be an array",
            emulator.url()
        )
    );
    assert_eq!(submissions(&emulator), 1, "a 400 is not retried");
}

#[tokio::test]
async fn forbidden_and_unknown_jobs_say_what_is_wrong() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let client = client(&emulator);
    let error = client.job("no-such-job").await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("Image Factory knows no job no-such-job"),
        "{error}"
    );
    emulator.inject(
        Route::Jobs,
        Fault::Status {
            status: 403,
            body: r#"{"error":{"code":"Forbidden","message":"not on the allow list"}}"#.into(),
        },
    );
    let error = client.submit(&payload("Helix-A_1"), "k").await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("client id emulator-client") && message.contains("not on the allow list"),
        "{message}"
    );
}

#[tokio::test]
async fn the_idempotency_key_returns_the_first_job() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let client = client(&emulator);
    let first = client.submit(&payload("Helix-A_1"), "same").await.unwrap();
    let again = client.submit(&payload("Helix-A_1"), "same").await.unwrap();
    assert_eq!(first.tracking_id, again.tracking_id);
    assert!(again.existing);
    assert_eq!(emulator.job_count(), 1);
}

#[tokio::test]
async fn the_emulator_replays_leaves_out_images_and_invents_statuses_on_request() {
    let emulator = Emulator::start(EmulatorConfig {
        queued_for: Duration::from_secs(60),
        running_for: Duration::from_secs(600),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let client = client(&emulator);
    // Faults about job states wait for a GET; the one about submissions for a POST.
    emulator.inject(Route::Jobs, Fault::ReportStatus("Paused".into()));
    emulator.inject(Route::Jobs, Fault::NoImages);
    emulator.inject(Route::Jobs, Fault::Replay);
    let replayed = client.submit(&payload("Helix-A_1"), "a").await.unwrap();
    assert!(replayed.existing, "answered 200 as a replay");
    assert_eq!(replayed.status, RemoteStatus::Succeeded);
    let paused = client.job(&replayed.tracking_id).await.unwrap();
    assert_eq!(paused.status, RemoteStatus::Other("Paused".into()));
    let imageless = client.job(&replayed.tracking_id).await.unwrap();
    assert_eq!(imageless.status, RemoteStatus::Succeeded);
    assert!(imageless.images.is_empty() && !imageless.message.is_empty());
    let listed = client.job(&replayed.tracking_id).await.unwrap();
    assert_eq!(listed.status, RemoteStatus::Succeeded);
    assert_eq!(listed.images[0].name, "Helix-A_1");
    assert_eq!(emulator.job_count(), 1);
}

#[tokio::test]
async fn jobs_move_along_the_emulator_clock() {
    let emulator = Emulator::start(EmulatorConfig {
        queued_for: Duration::from_secs(60),
        running_for: Duration::from_secs(600),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let client = client(&emulator);
    let id = client
        .submit(&payload("Helix-A_1"), "k")
        .await
        .unwrap()
        .tracking_id;
    assert_eq!(client.job(&id).await.unwrap().status, RemoteStatus::Queued);
    emulator.skip(Duration::from_secs(61));
    assert_eq!(client.job(&id).await.unwrap().status, RemoteStatus::Running);
    emulator.skip(Duration::from_secs(600));
    let done = client.job(&id).await.unwrap();
    assert_eq!(done.status, RemoteStatus::Succeeded);
    assert_eq!(done.images[0].name, "Helix-A_1");
}

// --- The binary ---------------------------------------------------------------------------------

/// Submits one definition with the binary; its tracking id, from the ledger.
fn submit_definition(repo: &Repo, emulator: &Emulator, id: &str) -> String {
    run_against(repo, emulator, &["submit", id], 0);
    repo.ledger().definitions[id].tracking_id.clone().unwrap()
}

#[test]
fn submit_sends_one_file_and_records_it_for_reconcile() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    let output = run_against(
        &repo,
        &emulator,
        &["submit", "definitions/vs2022/server-2022-enterprise.json"],
        0,
    );
    let stdout = stdout_of(&output);
    let ledger = repo.ledger();
    let entry = &ledger.definitions["vs2022/server-2022-enterprise"];
    let tracking_id = entry.tracking_id.clone().unwrap();
    assert!(stdout.contains(&tracking_id), "{stdout}");
    assert_eq!(entry.status, JobStatus::Queued);
    assert_eq!(
        entry.idempotency_key.as_deref(),
        Some(entry.payload_hash.as_str())
    );
    let posts = posts(&emulator);
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].idempotency_key.as_deref(),
        Some(entry.payload_hash.as_str())
    );
    assert_eq!(posts[0].body.as_ref().unwrap(), &entry.payload.to_value());
    // reconcile now follows the job instead of planning it again.
    let plan = json_of(&repo.run(&["reconcile", "--dry-run", "--output", "json"], 2));
    let pending: Vec<&str> = plan["plan"]["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["definition"].as_str().unwrap())
        .collect();
    assert_eq!(pending, ["vs2022/server-2022-enterprise"]);
}

#[test]
fn submit_by_variables_sends_exactly_the_definitions_that_use_them() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    let catalog = Catalog::load(repo.path());
    let variables = vec!["VS_2022_VERSION".to_string()];
    let mut expected: Vec<String> = catalog
        .affected_by(&variables)
        .iter()
        .flat_map(|(definition, _)| {
            catalog
                .rendered
                .iter()
                .find(|rendered| rendered.id == definition.id)
                .unwrap()
                .image_names
                .clone()
        })
        .collect();
    expected.sort();
    assert!(
        expected.len() >= 2,
        "the shipped repo uses VS_2022_VERSION in several definitions"
    );
    let output = run_against(
        &repo,
        &emulator,
        &["submit", "--vars", "VS_2022_VERSION", "--output", "json"],
        0,
    );
    let mut sent: Vec<String> = emulator
        .requests()
        .iter()
        .filter(|request| request.is_submission())
        .flat_map(|request| request.image_names())
        .collect();
    sent.sort();
    assert_eq!(sent, expected);
    assert_eq!(
        token_requests(&emulator),
        1,
        "one token serves every submission"
    );
    let document = json_of(&output);
    let submitted = document["submitted"].as_array().unwrap();
    assert_eq!(submitted.len(), expected.len());
    assert!(
        submitted
            .iter()
            .all(|item| item["result"]["outcome"] == "submitted")
    );
    assert_eq!(
        repo.ledger().definitions.len(),
        expected.len(),
        "every submission is in the ledger"
    );
}

#[test]
fn status_watch_follows_jobs_to_the_end_and_records_them() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    run_against(
        &repo,
        &emulator,
        &["submit", "vs2022/server-2022-enterprise"],
        0,
    );
    let entry = repo.ledger().definitions["vs2022/server-2022-enterprise"].clone();
    let tracking_id = entry.tracking_id.unwrap();
    let output = run_against(
        &repo,
        &emulator,
        &[
            "status",
            &tracking_id,
            "--watch",
            "--poll-interval",
            "100ms",
        ],
        0,
    );
    let stdout = stdout_of(&output);
    assert!(
        stdout.contains(&format!(
            "{tracking_id} (vs2022/server-2022-enterprise): Succeeded"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("-> Succeeded"), "{stdout}");
    let recorded = repo.ledger().definitions["vs2022/server-2022-enterprise"].clone();
    assert_eq!(recorded.status, JobStatus::Succeeded);
    assert_eq!(
        recorded.image_names,
        entry.payload.to_value()["Destination"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["CustomImageName"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    );
    // Built already: a second submit skips it, --force builds it again under a new key.
    let again = stdout_of(&run_against(
        &repo,
        &emulator,
        &["submit", "vs2022/server-2022-enterprise"],
        0,
    ));
    assert!(
        again.contains("skipped: the same payload was built"),
        "{again}"
    );
    assert_eq!(submissions(&emulator), 1);
    run_against(
        &repo,
        &emulator,
        &["submit", "vs2022/server-2022-enterprise", "--force"],
        0,
    );
    let forced = repo.ledger().definitions["vs2022/server-2022-enterprise"].clone();
    assert_eq!(
        forced.idempotency_key,
        Some(format!("{}-2", forced.payload_hash))
    );
    assert_ne!(forced.tracking_id, recorded.tracking_id);
    assert_eq!(emulator.job_count(), 2);
}

#[test]
fn status_reports_a_failed_job_and_an_unknown_id_with_exit_1() {
    let repo = Repo::shipped();
    let emulator = Emulator::start_in_background(EmulatorConfig {
        queued_for: Duration::ZERO,
        running_for: Duration::ZERO,
        fail_images: Some(regex::Regex::new("DataCenter-2022-VS2022").unwrap()),
        ..EmulatorConfig::default()
    })
    .unwrap();
    let tracking_id = submit_definition(&repo, &emulator, "vs2022/server-2022-enterprise");
    let output = run_against(
        &repo,
        &emulator,
        &["status", &tracking_id, "no-such-job"],
        1,
    );
    let stdout = stdout_of(&output);
    assert!(stdout.contains(": Failed"), "{stdout}");
    assert!(
        stdout.contains("installer exited with code 1603"),
        "{stdout}"
    );
    assert!(
        stdout.contains("no-such-job: unknown") && stdout.contains("knows no job no-such-job"),
        "{stdout}"
    );
    let recorded = &repo.ledger().definitions["vs2022/server-2022-enterprise"];
    assert_eq!(recorded.status, JobStatus::Failed);
    assert!(recorded.message.as_deref().unwrap().contains("1603"));
}

#[test]
fn status_reports_a_success_without_images_as_not_built() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    let tracking_id = submit_definition(&repo, &emulator, "vs2022/server-2022-enterprise");
    emulator.skip(Duration::from_secs(5));
    emulator.inject(Route::Jobs, Fault::NoImages);
    let output = run_against(&repo, &emulator, &["status", &tracking_id], 1);
    let stdout = stdout_of(&output);
    assert!(
        stdout.contains(&format!(
            "{tracking_id} (vs2022/server-2022-enterprise): Succeeded, no images"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("names no image"), "{stdout}");
    let recorded = &repo.ledger().definitions["vs2022/server-2022-enterprise"];
    assert_eq!(recorded.status, JobStatus::NoImages);
    // Asked again, the service lists the images.
    run_against(&repo, &emulator, &["status", &tracking_id], 0);
    let recorded = &repo.ledger().definitions["vs2022/server-2022-enterprise"];
    assert_eq!(recorded.status, JobStatus::Succeeded);
}

#[test]
fn status_exits_2_while_a_job_runs() {
    let repo = Repo::shipped();
    let emulator = Emulator::start_in_background(EmulatorConfig::default()).unwrap();
    let tracking_id = submit_definition(&repo, &emulator, "vs2022/server-2022-enterprise");
    let document = json_of(&run_against(
        &repo,
        &emulator,
        &["status", &tracking_id, "--output", "json"],
        2,
    ));
    assert_eq!(document["jobs"][0]["state"]["status"], "Queued");
}

#[test]
fn a_rejected_submission_shows_the_message_and_is_recorded_as_failed() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    emulator.inject(
        Route::Jobs,
        Fault::Status {
            status: 400,
            body: r#"{"error":{"code":"InvalidPayload","message":"VMSize Standard_D8s_v5 is not offered in westus2"}}"#.into(),
        },
    );
    let output = run_against(
        &repo,
        &emulator,
        &["submit", "vs2022/server-2022-enterprise"],
        1,
    );
    let stdout = stdout_of(&output);
    assert!(
        stdout.contains("rejected: Image Factory rejected the payload (InvalidPayload): VMSize Standard_D8s_v5 is not offered in westus2"),
        "{stdout}"
    );
    let recorded = &repo.ledger().definitions["vs2022/server-2022-enterprise"];
    assert_eq!(recorded.status, JobStatus::Failed);
    assert_eq!(recorded.tracking_id, None);
}

#[test]
fn a_lost_answer_keeps_the_intent_and_the_next_run_reuses_its_key() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    emulator.inject(Route::Jobs, Fault::Reset);
    let output = run_against(
        &repo,
        &emulator,
        &["submit", "vs2022/server-2022-enterprise", "--retries", "0"],
        1,
    );
    assert!(
        stdout_of(&output).contains("answer lost"),
        "{}",
        stdout_of(&output)
    );
    assert!(stderr_of(&output).contains("same idempotency key"));
    let intent = repo.ledger().definitions["vs2022/server-2022-enterprise"].clone();
    assert_eq!(intent.status, JobStatus::Submitting);
    assert_eq!(intent.tracking_id, None);
    run_against(
        &repo,
        &emulator,
        &["submit", "vs2022/server-2022-enterprise"],
        0,
    );
    let recorded = repo.ledger().definitions["vs2022/server-2022-enterprise"].clone();
    assert_eq!(recorded.status, JobStatus::Queued);
    assert!(recorded.tracking_id.is_some());
    let keys: Vec<Option<String>> = posts(&emulator)
        .into_iter()
        .map(|request| request.idempotency_key)
        .collect();
    assert_eq!(
        keys,
        [intent.idempotency_key.clone(), intent.idempotency_key]
    );
}

#[test]
fn a_replayed_submission_takes_its_images_from_the_job_not_the_answer() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    emulator.inject(Route::Jobs, Fault::Replay);
    let id = "vs2022/server-2022-enterprise";
    let output = run_against(&repo, &emulator, &["submit", id], 0);
    let stdout = stdout_of(&output);
    assert!(
        stdout.contains("succeeded (the service already had this payload)"),
        "{stdout}"
    );
    let entry = repo.ledger().definitions[id].clone();
    assert_eq!(entry.status, JobStatus::Succeeded);
    let job = emulator.job(entry.tracking_id.as_deref().unwrap()).unwrap();
    assert_eq!(
        entry.image_names,
        job.images
            .iter()
            .map(|image| image.name.clone())
            .collect::<Vec<_>>()
    );
    assert!(!entry.image_names.is_empty());
    let requests: Vec<String> = emulator
        .requests()
        .iter()
        .filter(|request| request.route == Some("jobs"))
        .map(|request| format!("{} {:?}", request.method, request.status))
        .collect();
    assert_eq!(requests, ["POST Some(200)", "GET Some(200)"]);
}

#[test]
fn submit_refuses_a_changed_payload_that_keeps_its_image_name_unless_allowed() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    let id = "vs2022/server-2022-enterprise";
    submit_definition(&repo, &emulator, id);
    let variables = repo.read("variables.json").replace(
        "https://aka.ms/vs/17/release",
        "https://aka.ms/vs/17/channel-2",
    );
    repo.write("variables.json", &variables);
    let refused = |args: &[&str]| {
        let output = run_against(&repo, &emulator, args, 1);
        let stdout = stdout_of(&output);
        assert!(
            stdout.contains(
                "refused: the payload changed but keeps the image name \
                 Helix-Server-DataCenter-2022-VS2022-Enterprise_17_12_1"
            ) || stdout.contains("not sent, the payload changed but keeps the image name"),
            "{stdout}"
        );
        assert!(
            stdout.contains(
                "VS_2022_CHANNEL_URL https://aka.ms/vs/17/release -> https://aka.ms/vs/17/channel-2"
            ),
            "{stdout}"
        );
        assert!(stdout.contains("--allow-same-name"), "{stdout}");
    };
    refused(&["submit", id]);
    refused(&["submit", id, "--dry-run"]);
    assert_eq!(submissions(&emulator), 1, "nothing more was sent");
    // By variables: the others, never submitted, go; this one is refused.
    refused(&["submit", "--vars", "VS_2022_CHANNEL_URL"]);
    let sent = posts(&emulator);
    assert!(sent.len() > 2);
    assert!(
        sent[1..]
            .iter()
            .all(|post| post.image_names()
                != ["Helix-Server-DataCenter-2022-VS2022-Enterprise_17_12_1"]),
        "the refused payload was not sent"
    );
    run_against(&repo, &emulator, &["submit", id, "--allow-same-name"], 0);
    assert_eq!(submissions(&emulator), sent.len() + 1);
    let entry = &repo.ledger().definitions[id];
    assert!(entry.same_name_allowed.is_some());
    assert_eq!(
        entry.variables["VS_2022_CHANNEL_URL"],
        "https://aka.ms/vs/17/channel-2"
    );
}

#[test]
fn missing_credentials_are_named_before_any_request() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    let output = imagegen_against(&repo, &emulator)
        .env_remove("IMAGE_FACTORY_CLIENT_SECRET")
        .env("IMAGE_FACTORY_TENANT_ID", "  ")
        .args(["submit", "--vars", "VS_2022_VERSION"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("IMAGE_FACTORY_TENANT_ID, IMAGE_FACTORY_CLIENT_SECRET"),
        "{stderr}"
    );
    assert!(emulator.requests().is_empty());
    assert!(!repo.path().join(".imagegen/state.json").exists());
}

#[test]
fn a_missing_url_is_named() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    let output = imagegen_against(&repo, &emulator)
        .env_remove("IMAGE_FACTORY_URL")
        .args(["status", "x"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(stderr_of(&output).contains("set IMAGE_FACTORY_URL or pass --factory-url"));
}

#[test]
fn submit_dry_run_prints_the_request_and_sends_nothing() {
    let repo = Repo::shipped();
    let output = repo
        .imagegen()
        .env_remove("IMAGE_FACTORY_URL")
        .args(["submit", "vs2022/server-2022-enterprise", "--dry-run"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let stdout = stdout_of(&output);
    assert!(
        stdout.starts_with("# vs2022/server-2022-enterprise\nPOST $IMAGE_FACTORY_URL/api/jobs\n"),
        "{stdout}"
    );
    assert!(stdout.contains("Idempotency-Key: "), "{stdout}");
    assert!(stdout.contains("\"CustomImageName\": \"Helix-"), "{stdout}");
    assert!(!repo.path().join(".imagegen").exists());
}

#[test]
fn a_payload_file_without_placeholders_goes_as_is() {
    let repo = Repo::empty();
    let emulator = fast_emulator();
    let text = r#"{"Location": "eastus", "Destination": [{"CustomImageName": "Helix-Manual_1", "SubId": "s"}]}"#;
    repo.write("payload.json", text);
    run_against(&repo, &emulator, &["submit", "payload.json"], 0);
    let payloads = emulator.payloads();
    assert_eq!(payloads, [serde_json::from_str::<Value>(text).unwrap()]);
    let ledger = repo.ledger();
    assert!(ledger.definitions.is_empty());
    assert_eq!(ledger.manual["payload.json"].status, JobStatus::Queued);
}

#[test]
fn secrets_never_reach_output_logs_or_the_ledger() {
    let repo = Repo::shipped();
    let secret = "canary-secret-9b1f42";
    let emulator = Emulator::start_in_background(EmulatorConfig {
        client_secret: secret.to_string(),
        token_prefix: "canary-token-".to_string(),
        queued_for: Duration::ZERO,
        running_for: Duration::from_millis(100),
        ..EmulatorConfig::default()
    })
    .unwrap();
    // Early expiry and a throttled request, so the retry and renewal paths log too.
    emulator.inject(
        Route::Jobs,
        Fault::Throttle {
            retry_after: Some(0),
        },
    );
    let mut transcript = String::new();
    let mut trace = |args: &[&str], code: i32| {
        let output = imagegen_against(&repo, &emulator)
            .env("RUST_LOG", "trace")
            .args(["-vvv"])
            .args(args)
            .assert()
            .code(code)
            .get_output()
            .clone();
        transcript.push_str(&stdout_of(&output));
        transcript.push_str(&stderr_of(&output));
    };
    trace(&["submit", "--vars", "VS_2022_VERSION"], 0);
    emulator.expire_tokens();
    let ids: Vec<String> = repo
        .ledger()
        .definitions
        .values()
        .filter_map(|entry| entry.tracking_id.clone())
        .collect();
    let mut args = vec!["status", "--watch", "--poll-interval", "100ms"];
    args.extend(ids.iter().map(String::as_str));
    trace(&args, 0);
    // A wrong secret on the way out.
    let output = imagegen_against(&repo, &emulator)
        .env("RUST_LOG", "trace")
        .env("IMAGE_FACTORY_CLIENT_SECRET", "canary-wrong-77aa")
        .args(["-vvv", "status", &ids[0]])
        .assert()
        .code(1)
        .get_output()
        .clone();
    transcript.push_str(&stdout_of(&output));
    transcript.push_str(&stderr_of(&output));
    assert!(
        transcript.contains("invalid_client"),
        "the refusal is shown"
    );
    assert!(
        transcript.contains("trying again"),
        "the trace covers a retry: {transcript}"
    );
    assert!(transcript.len() > 1000, "trace logging was on");
    let ledger_text = repo.read(".imagegen/state.json");
    for canary in ["canary-secret", "canary-token", "canary-wrong"] {
        assert!(
            !transcript.contains(canary),
            "{canary} leaked into the output"
        );
        assert!(
            !ledger_text.contains(canary),
            "{canary} leaked into the ledger"
        );
    }
}

#[test]
fn an_unreachable_service_is_named_as_such() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let output = imagegen_against(&repo, &emulator)
        .env("IMAGE_FACTORY_URL", &url)
        .env("IMAGE_FACTORY_AUTHORITY", &url)
        .args(["status", "some-job", "--retries", "0"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let stdout = stdout_of(&output);
    assert!(stdout.contains("some-job: unreachable"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "POST {url}emulator-tenant/oauth2/v2.0/token failed after 1 try: could not connect"
        )),
        "{stdout}"
    );
}

#[test]
fn a_redirect_to_another_host_is_refused_and_the_payload_never_goes_there() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    // Another host (another port is another origin) that would gladly take the payload.
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let elsewhere = RouterServer::start(axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            (
                axum::http::StatusCode::ACCEPTED,
                axum::Json(json!({"trackingId": "elsewhere", "status": "Queued"})),
            )
        }
    }));
    let target = format!("{}api/jobs?sig=secret-in-the-location", elsewhere.url());
    let redirecting = RouterServer::start(axum::Router::new().fallback(move || {
        let target = target.clone();
        async move {
            (
                axum::http::StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, target)],
            )
        }
    }));
    let output = imagegen_against(&repo, &emulator)
        .env("IMAGE_FACTORY_URL", redirecting.url())
        .args(["submit", "vs2022/server-2022-enterprise"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let stdout = stdout_of(&output);
    assert_eq!(received.load(Ordering::SeqCst), 0, "{stdout}");
    assert!(
        stdout.contains(&format!(
            "POST {}api/jobs was redirected (307) to {}api/jobs, another host",
            redirecting.url(),
            elsewhere.url()
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("secret-in-the-location"), "{stdout}");
    assert!(
        !repo
            .ledger()
            .definitions
            .contains_key("vs2022/server-2022-enterprise"),
        "nothing was started: the ledger is as before"
    );
}

#[test]
fn a_redirect_within_the_same_host_is_followed() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let router = axum::Router::new()
        .route(
            "/api/jobs",
            axum::routing::post(|| async {
                (
                    axum::http::StatusCode::PERMANENT_REDIRECT,
                    [(axum::http::header::LOCATION, "/moved/api/jobs")],
                )
            }),
        )
        .route(
            "/moved/api/jobs",
            axum::routing::post(move |body: axum::body::Bytes| {
                let counter = counter.clone();
                async move {
                    assert!(!body.is_empty(), "the payload came along");
                    counter.fetch_add(1, Ordering::SeqCst);
                    (
                        axum::http::StatusCode::ACCEPTED,
                        axum::Json(json!({"trackingId": "moved-1", "status": "Queued"})),
                    )
                }
            }),
        );
    let server = RouterServer::start(router);
    imagegen_against(&repo, &emulator)
        .env("IMAGE_FACTORY_URL", server.url())
        .args(["submit", "vs2022/server-2022-enterprise"])
        .assert()
        .code(0);
    assert_eq!(received.load(Ordering::SeqCst), 1);
    assert_eq!(
        repo.ledger().definitions["vs2022/server-2022-enterprise"]
            .tracking_id
            .as_deref(),
        Some("moved-1")
    );
}
