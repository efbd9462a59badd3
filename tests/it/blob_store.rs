//! The ledger as a blob, over real HTTP against Azurite: reading, conditional writes and races,
//! damaged blobs, refused and expired SAS tokens, and the SAS never shown in an error or a log.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imagegen::definitions::{Payload, PayloadHash};
use imagegen::http::RetryPolicy;
use imagegen::state::blob::BlobError;
use imagegen::state::{BlobStore, JobStatus, Ledger, LedgerEntry, MissingLedger, StateError};
use serde_json::json;

use crate::common;
use crate::common::azurite::{self, Azurite};

const BLOB: &str = "imagegen/state.json";

fn entry(tracking_id: &str) -> LedgerEntry {
    let payload = json!({"Destination": [{"CustomImageName": "Image-1"}]});
    LedgerEntry {
        payload_hash: PayloadHash::of(&payload),
        payload: Payload::new(&payload),
        variables: [("V".to_string(), "1".to_string())].into(),
        idempotency_key: Some("key".into()),
        tracking_id: Some(tracking_id.into()),
        status: JobStatus::Running,
        message: None,
        image_names: Vec::new(),
        submitted_at: Some("2026-11-23T10:00:00Z".parse().unwrap()),
        updated_at: "2026-11-23T10:05:00Z".parse().unwrap(),
        completed_at: None,
        adopted: false,
        same_name_allowed: None,
    }
}

fn ledger_with(id: &str) -> Ledger {
    let mut ledger = Ledger::default();
    ledger
        .definitions
        .insert(id.to_string(), entry(&format!("job-{id}")));
    ledger
}

/// Retries fast enough for tests.
fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        max_elapsed: Duration::from_secs(10),
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
    }
}

fn store_at(url: &str) -> BlobStore {
    BlobStore::from_url(url, None)
        .expect("a valid blob URL")
        .with_retry(quick_retries())
}

/// An emulator with the container `ledgers`, and a store for [`BLOB`] in it.
async fn emulator_and_store() -> (Azurite, BlobStore) {
    let azurite = Azurite::start();
    let container = azurite.container("ledgers").await;
    let store = store_at(&azurite.blob_url(&container, BLOB));
    (azurite, store)
}

fn pretty(ledger: &Ledger) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(ledger).unwrap();
    bytes.push(b'\n');
    bytes
}

#[tokio::test]
async fn a_missing_blob_reads_as_an_empty_ledger() {
    let (azurite, store) = emulator_and_store().await;
    let snapshot = store.load().await.unwrap();
    assert_eq!(snapshot.ledger, Ledger::default());
    assert_eq!(store.read().await.unwrap(), Ledger::default());
    assert!(
        azurite.blob("ledgers", BLOB).await.is_none(),
        "reading never creates the blob"
    );
}

#[tokio::test]
async fn a_missing_blob_is_refused_where_the_ledger_must_exist() {
    let (azurite, store) = emulator_and_store().await;
    let store = store.with_missing(MissingLedger::Refuse);
    for error in [
        store.load().await.unwrap_err(),
        store.read().await.unwrap_err(),
    ] {
        assert!(matches!(error, StateError::Missing { .. }), "{error}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("the ledger {} does not exist.", store.display())),
            "{error}"
        );
    }
    assert!(azurite.blob("ledgers", BLOB).await.is_none());
}

#[tokio::test]
async fn on_a_ci_platform_a_missing_blob_stops_the_run_and_reports_name_the_blob_without_its_sas() {
    let azurite = Azurite::start();
    let container = azurite.container("ledgers").await;
    let url = azurite.blob_url_without_sas(&container, BLOB);
    let sas = azurite.sas(&container);
    let repo = common::Repo::fixture("small");
    let run = |args: &[&str]| {
        repo.imagegen()
            .args(args)
            .env("IMAGEGEN_STATE", &url)
            .env("IMAGEGEN_STATE_SAS", &sas)
            .env("CI", "true")
            .output()
            .unwrap()
    };
    let refused = run(&["reconcile", "--dry-run"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = common::stderr_of(&refused);
    assert!(
        stderr.contains(&format!(
            "the ledger {url} does not exist. This run is on a CI"
        )),
        "{stderr}"
    );
    let adopted = run(&["adopt", "--init-ledger"]);
    assert_eq!(adopted.status.code(), Some(0), "{adopted:?}");
    let planned = run(&["reconcile", "--dry-run"]);
    assert_eq!(planned.status.code(), Some(0), "{planned:?}");
    for output in [&adopted, &planned] {
        let stdout = common::stdout_of(output);
        assert!(stdout.ends_with(&format!("\nLedger: {url}\n")), "{stdout}");
        assert!(!stdout.contains("sig="), "{stdout}");
    }
}

#[tokio::test]
async fn a_saved_ledger_loads_back_identically_and_its_revision_is_the_etag() {
    let (azurite, store) = emulator_and_store().await;
    let empty = store.load().await.unwrap();
    let ledger = ledger_with("a/b");
    let revision = store
        .save(&empty.revision, &imagegen::state::written_form(&ledger))
        .await
        .unwrap();

    let (bytes, etag) = azurite.blob("ledgers", BLOB).await.unwrap();
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        String::from_utf8(pretty(&ledger)).unwrap(),
        "pretty JSON with a trailing newline, like the file store"
    );
    assert!(
        format!("{revision:?}").contains(&format!("{etag:?}")),
        "{revision:?} {etag}"
    );

    let reloaded = store.load().await.unwrap();
    assert_eq!(reloaded.ledger, ledger);
    assert_eq!(reloaded.revision, revision);
    assert_eq!(store.read().await.unwrap(), ledger);

    // The revision a save returns is the one the next save of the same run needs.
    let mut changed = ledger.clone();
    changed.definitions.insert("c/d".into(), entry("job-c-d"));
    store
        .save(&revision, &imagegen::state::written_form(&changed))
        .await
        .unwrap();
    assert_eq!(store.read().await.unwrap(), changed);
}

#[tokio::test]
async fn a_save_from_a_stale_revision_is_a_conflict_and_changes_nothing() {
    let (azurite, store) = emulator_and_store().await;
    let empty = store.load().await.unwrap();
    let first = store
        .save(
            &empty.revision,
            &imagegen::state::written_form(&ledger_with("first")),
        )
        .await
        .unwrap();
    let stale = store.load().await.unwrap();
    assert_eq!(stale.revision, first);
    store
        .save(
            &first,
            &imagegen::state::written_form(&ledger_with("second")),
        )
        .await
        .unwrap();
    let before = azurite.blob("ledgers", BLOB).await.unwrap();

    let error = store
        .save(
            &stale.revision,
            &imagegen::state::written_form(&ledger_with("third")),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, StateError::Conflict { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "the ledger {} changed since this run read it; nothing was written. Run again to \
             plan from the new ledger",
            azurite.blob_url_without_sas("ledgers", BLOB)
        )
    );
    assert_eq!(azurite.blob("ledgers", BLOB).await.unwrap(), before);
    assert_eq!(store.read().await.unwrap(), ledger_with("second"));
}

#[tokio::test]
async fn of_two_saves_racing_from_one_revision_exactly_one_wins() {
    let (azurite, first_run) = emulator_and_store().await;
    let second_run = store_at(&azurite.blob_url("ledgers", BLOB));
    for round in 0..5 {
        // Round 0 races to create the blob; later rounds race to replace it.
        let read = first_run.load().await.unwrap();
        let (mine, theirs) = (
            ledger_with(&format!("mine-{round}")),
            ledger_with(&format!("theirs-{round}")),
        );
        let (my_bytes, their_bytes) = (
            imagegen::state::written_form(&mine),
            imagegen::state::written_form(&theirs),
        );
        let (my_result, their_result) = tokio::join!(
            first_run.save(&read.revision, &my_bytes),
            second_run.save(&read.revision, &their_bytes)
        );
        let winner = match (&my_result, &their_result) {
            (Ok(_), Err(StateError::Conflict { .. })) => mine,
            (Err(StateError::Conflict { .. }), Ok(_)) => theirs,
            other => panic!("round {round}: not exactly one winner: {other:?}"),
        };
        assert_eq!(first_run.read().await.unwrap(), winner, "round {round}");
    }
}

#[tokio::test]
async fn creating_a_ledger_that_already_exists_is_a_conflict() {
    let (azurite, store) = emulator_and_store().await;
    let missing = store.load().await.unwrap();
    let elsewhere = pretty(&ledger_with("written-elsewhere"));
    azurite.put_blob("ledgers", BLOB, &elsewhere).await;

    let error = store
        .save(
            &missing.revision,
            &imagegen::state::written_form(&ledger_with("mine")),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, StateError::Conflict { .. }), "{error:?}");
    assert_eq!(azurite.blob("ledgers", BLOB).await.unwrap().0, elsewhere);
}

#[tokio::test]
async fn a_damaged_blob_names_line_and_column() {
    let (azurite, store) = emulator_and_store().await;
    azurite
        .put_blob(
            "ledgers",
            BLOB,
            b"{\n  \"version\": 1,\n  \"definitions\": {\n    \"a\": 7\n",
        )
        .await;
    let message = store.load().await.unwrap_err().to_string();
    assert!(
        message.starts_with(&format!(
            "the ledger {} is damaged at line 4, column",
            azurite.blob_url_without_sas("ledgers", BLOB)
        )),
        "{message}"
    );
    assert!(message.contains("expected struct LedgerEntry"), "{message}");

    azurite
        .put_blob("ledgers", BLOB, br#"{"version": 3, "jobs": []}"#)
        .await;
    let message = store.read().await.unwrap_err().to_string();
    assert!(
        message.contains("has format version 3, but this imagegen understands versions up to 2"),
        "{message}"
    );
}

#[tokio::test]
async fn a_read_only_sas_cannot_save_and_says_which_permissions_it_needs() {
    let azurite = Azurite::start();
    let container = azurite.container("ledgers").await;
    let read_only = azurite.sas_with(
        &container,
        "r",
        jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1),
    );
    let url = format!(
        "{}?{read_only}",
        azurite.blob_url_without_sas(&container, BLOB)
    );
    let store = store_at(&url);
    let missing = store.load().await.unwrap();
    let error = store
        .save(
            &missing.revision,
            &imagegen::state::written_form(&ledger_with("a")),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            StateError::Blob(BlobError::Refused { status: 403, code, .. })
                if code == "AuthorizationPermissionMismatch"
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "Azure Storage refused the SAS for the ledger {} (403 \
             AuthorizationPermissionMismatch: ",
            azurite.blob_url_without_sas(&container, BLOB)
        )),
        "{message}"
    );
    assert!(
        message.contains("the ledger needs read, create and write (sp=rcw)"),
        "{message}"
    );
    assert!(azurite.blob(&container, BLOB).await.is_none());
}

#[tokio::test]
async fn an_expired_sas_is_refused_and_the_error_says_what_to_do() {
    let azurite = Azurite::start();
    let container = azurite.container("ledgers").await;
    let expired = azurite.sas_with(
        &container,
        "rcw",
        jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1),
    );
    let store = store_at(&format!(
        "{}?{expired}",
        azurite.blob_url_without_sas(&container, BLOB)
    ));
    let error = store.load().await.unwrap_err();
    assert!(
        matches!(
            &error,
            // Azure answers AuthenticationFailed; Azurite, AuthorizationFailure.
            StateError::Blob(BlobError::Refused { status: 403, code, .. })
                if code == "AuthenticationFailed" || code == "AuthorizationFailure"
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("The SAS may have expired"), "{message}");
    assert!(
        message.contains(
            "Issue a new SAS and set it in IMAGEGEN_STATE's query or in IMAGEGEN_STATE_SAS"
        ),
        "{message}"
    );
}

#[tokio::test]
async fn the_sas_can_come_from_its_own_environment_value() {
    let azurite = Azurite::start();
    let container = azurite.container("ledgers").await;
    let plain_url = azurite.blob_url_without_sas(&container, BLOB);
    let store = BlobStore::from_url(&plain_url, Some(&azurite.sas(&container)))
        .unwrap()
        .with_retry(quick_retries());
    assert_eq!(store.display(), plain_url);
    let missing = store.load().await.unwrap();
    store
        .save(
            &missing.revision,
            &imagegen::state::written_form(&ledger_with("a")),
        )
        .await
        .unwrap();
    assert_eq!(store.read().await.unwrap(), ledger_with("a"));

    let message = BlobStore::from_url(&plain_url, None)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("has no SAS") && message.contains("IMAGEGEN_STATE_SAS"),
        "{message}"
    );
}

#[tokio::test]
async fn a_missing_container_says_it_must_exist() {
    let azurite = Azurite::start();
    let existing = azurite.container("ledgers").await;
    let absent = store_at(&azurite.blob_url(&existing, BLOB))
        .load()
        .await
        .unwrap()
        .revision;
    let store = store_at(&azurite.blob_url("nowhere", BLOB));
    let expected = format!(
        "the container `nowhere` of the ledger {} does not exist (404 ContainerNotFound); \
         create it first: imagegen creates the ledger blob, never its container",
        azurite.blob_url_without_sas("nowhere", BLOB)
    );
    assert_eq!(store.load().await.unwrap_err().to_string(), expected);
    let error = store
        .save(&absent, &imagegen::state::written_form(&ledger_with("a")))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), expected);
}

/// Collects what tracing writes, at every level, while a test runs.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_error_or_log_line_shows_the_signature() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let azurite = Azurite::start();
    let container = azurite.container("ledgers").await;
    let sas = azurite.sas(&container);
    let signature = azurite::signature_of(&sas);
    let url = |blob: &str| azurite.blob_url(&container, blob);
    let mut errors: Vec<StateError> = Vec::new();

    // Conflict: a stale revision, and creating a blob that exists.
    let store = store_at(&url("conflict.json"));
    let missing = store.load().await.unwrap();
    let first = store
        .save(
            &missing.revision,
            &imagegen::state::written_form(&ledger_with("a")),
        )
        .await
        .unwrap();
    store
        .save(&first, &imagegen::state::written_form(&ledger_with("b")))
        .await
        .unwrap();
    errors.push(
        store
            .save(&first, &imagegen::state::written_form(&ledger_with("c")))
            .await
            .unwrap_err(),
    );
    errors.push(
        store
            .save(
                &missing.revision,
                &imagegen::state::written_form(&ledger_with("c")),
            )
            .await
            .unwrap_err(),
    );

    // Parse and UnsupportedVersion.
    azurite
        .put_blob(&container, "damaged.json", b"{\"version\": 1,")
        .await;
    errors.push(store_at(&url("damaged.json")).load().await.unwrap_err());
    azurite
        .put_blob(&container, "newer.json", br#"{"version": 9}"#)
        .await;
    errors.push(store_at(&url("newer.json")).load().await.unwrap_err());

    // Refused: a read-only SAS writing, an expired one reading; each has its own signature.
    let hour = jiff::SignedDuration::from_hours(1);
    let mut signatures = vec![signature];
    for (permissions, expiry) in [
        ("r", jiff::Timestamp::now() + hour),
        ("rcw", jiff::Timestamp::now() - hour),
    ] {
        let other = azurite.sas_with(&container, permissions, expiry);
        signatures.push(azurite::signature_of(&other));
        let store = store_at(&format!(
            "{}?{other}",
            azurite.blob_url_without_sas(&container, "refused.json")
        ));
        errors.push(
            store
                .save(
                    &missing.revision,
                    &imagegen::state::written_form(&Ledger::default()),
                )
                .await
                .unwrap_err(),
        );
        if permissions == "rcw" {
            errors.push(store.load().await.unwrap_err());
        }
    }

    // ContainerMissing, and a plain service refusal (a container name too short: 400).
    errors.push(
        store_at(&azurite.blob_url("nowhere", BLOB))
            .load()
            .await
            .unwrap_err(),
    );
    errors.push(
        store_at(&azurite.blob_url("x", BLOB))
            .load()
            .await
            .unwrap_err(),
    );

    // Transport: nothing listens on the port any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let unreachable = BlobStore::from_url(
        &format!(
            "http://127.0.0.1:{port}/{}/{container}/{BLOB}?{sas}",
            azurite::ACCOUNT
        ),
        None,
    )
    .unwrap()
    .with_retry(RetryPolicy::none());
    errors.push(unreachable.load().await.unwrap_err());
    errors.push(
        unreachable
            .save(
                &missing.revision,
                &imagegen::state::written_form(&Ledger::default()),
            )
            .await
            .unwrap_err(),
    );

    let kinds: Vec<String> = errors.iter().map(variant_name).collect();
    for expected in [
        "Conflict",
        "Parse",
        "UnsupportedVersion",
        "Refused",
        "ContainerMissing",
        "Status",
        "Transport",
    ] {
        assert!(
            kinds.iter().any(|kind| kind == expected),
            "no {expected} among {kinds:?}"
        );
    }

    let mut shown = String::new();
    for error in &errors {
        shown.push_str(&format!("{error}\n{error:?}\n{error:#?}\n"));
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            shown.push_str(&format!("{cause}\n{cause:?}\n"));
            source = cause.source();
        }
    }
    shown.push_str(&format!("{store:?}\n{unreachable:#?}\n"));
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains(&format!("127.0.0.1:{port}")),
        "the logs were captured:\n{logged}"
    );
    for signature in &signatures {
        let encoded: String = url::form_urlencoded::byte_serialize(signature.as_bytes()).collect();
        for text in [&shown, &logged] {
            assert!(
                !text.contains(signature.as_str()) && !text.contains(&encoded),
                "the signature {signature} shows in:\n{text}"
            );
        }
    }
    assert!(!shown.contains("sig="), "{shown}");
}

fn variant_name(error: &StateError) -> String {
    let debug = format!("{error:?}");
    let debug = debug.strip_prefix("Blob(").unwrap_or(&debug);
    debug
        .split([' ', '(', '{'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn the_sas_signing_hmac_matches_rfc_4231() {
    let mac = azurite::hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    let hex: String = mac.iter().map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(
        hex,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

/// The binary with the ledger in a blob, end to end: one process reads, records and polls
/// through the same blob client across all its steps, and the next run picks up where it left.
#[cfg(feature = "emulator")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reconciles_with_the_ledger_in_a_blob() {
    let azurite = Azurite::start();
    let container = azurite.container("ledgers").await;
    let url = azurite.blob_url(&container, BLOB);
    let repo = common::Repo::shipped();
    let emulator = common::fast_emulator();
    let run = |args: &[&str], code: i32| {
        tokio::task::block_in_place(|| {
            let output = common::imagegen_against(&repo, &emulator)
                .env("IMAGEGEN_STATE", &url)
                .args(args)
                .output()
                .expect("run imagegen");
            let text = format!(
                "{}{}",
                common::stdout_of(&output),
                common::stderr_of(&output)
            );
            assert_eq!(
                output.status.code(),
                Some(code),
                "imagegen {args:?}:\n{text}"
            );
            assert!(
                !text.contains(&azurite::signature_of(&azurite.sas(&container))),
                "the SAS never shows: {text}"
            );
            text
        })
    };
    let pending = run(&["reconcile", "--no-pr"], 2);
    assert!(pending.contains("16 submitted"), "{pending}");
    let built = run(
        &["reconcile", "--wait", "--poll-interval", "100ms", "--no-pr"],
        0,
    );
    assert!(built.contains("16 succeeded"), "{built}");
    run(&["reconcile", "--dry-run"], 0);
    let (bytes, _) = azurite
        .blob(&container, BLOB)
        .await
        .expect("the ledger was written");
    let ledger: Ledger = serde_json::from_slice(&bytes).expect("the blob is a ledger");
    assert_eq!(ledger.definitions.len(), 16);
    assert!(
        ledger
            .definitions
            .values()
            .all(|entry| entry.status == JobStatus::Succeeded && !entry.image_names.is_empty())
    );
    let tracking_id = ledger
        .definitions
        .values()
        .next()
        .unwrap()
        .tracking_id
        .clone()
        .unwrap();
    let status = run(&["status", &tracking_id], 0);
    assert!(status.contains("): Succeeded"), "{status}");
}

fn writer_store(azurite: &Azurite) -> imagegen::state::Store {
    imagegen::state::Store::Blob(Arc::new(store_at(&azurite.blob_url("ledgers", BLOB))))
}

async fn open_writer(azurite: &Azurite) -> imagegen::state::LedgerWriter {
    imagegen::state::LedgerWriter::open(&writer_store(azurite), Duration::ZERO, "test")
        .await
        .unwrap()
}

fn key(name: &str) -> imagegen::state::LedgerKey {
    imagegen::state::LedgerKey::Definition(name.into())
}

/// Two runs append to one journal blob at once: the ETags make them take turns, and every
/// change of both is in the ledger afterwards, folded or not.
#[tokio::test]
async fn two_runs_appending_to_one_journal_blob_keep_every_change() {
    let (azurite, store) = emulator_and_store().await;
    let first = Arc::new(open_writer(&azurite).await);
    let second = Arc::new(open_writer(&azurite).await);
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..20 {
        for (run, writer) in [("a", first.clone()), ("b", second.clone())] {
            tasks.spawn(async move {
                writer
                    .update(|ledger| {
                        ledger.insert(&key(&format!("{run}-{index}")), entry(&format!("{index}")))
                    })
                    .await
            });
        }
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(store.read().await.unwrap().definitions.len(), 40);
    // Folding by one run while the other still appends loses nothing.
    first.finish().await;
    second
        .update(|ledger| ledger.insert(&key("after-the-fold"), entry("late")))
        .await
        .unwrap();
    second.finish().await;
    let ledger = store.read().await.unwrap();
    assert_eq!(ledger.definitions.len(), 41);
    assert!(ledger.definitions.contains_key("after-the-fold"));
}

/// Of two runs recording an intent for the same definition at once, only one records it: the
/// other's change is redone on the ledger the first left, and sees the intent there.
#[tokio::test]
async fn two_runs_recording_the_same_intent_on_a_blob_record_it_once() {
    let (azurite, store) = emulator_and_store().await;
    let first = open_writer(&azurite).await;
    let second = open_writer(&azurite).await;
    async fn record(
        writer: &imagegen::state::LedgerWriter,
        job: &'static str,
    ) -> Result<bool, StateError> {
        writer
            .update(move |ledger| {
                if ledger.entry(&key("shared")).is_some() {
                    return false;
                }
                ledger.insert(&key("shared"), entry(job));
                true
            })
            .await
    }
    let (mine, theirs) = tokio::join!(record(&first, "mine"), record(&second, "theirs"));
    let recorded = [mine.unwrap(), theirs.unwrap()];
    assert_eq!(
        recorded.iter().filter(|recorded| **recorded).count(),
        1,
        "{recorded:?}"
    );
    let ledger = store.read().await.unwrap();
    let winner = if recorded[0] { "mine" } else { "theirs" };
    assert_eq!(
        ledger.definitions["shared"].tracking_id.as_deref(),
        Some(winner)
    );
}

/// A version 1 blob is rewritten as version 2 at the first write, and a run that folded its
/// journal leaves an empty journal blob behind (a SAS without delete rights can do that).
#[tokio::test]
async fn a_version_1_blob_is_migrated_at_the_first_write_and_folded_at_the_end() {
    let (azurite, store) = emulator_and_store().await;
    let mut old = ledger_with("old");
    old.version = 1;
    azurite.put_blob("ledgers", BLOB, &pretty(&old)).await;
    let writer = open_writer(&azurite).await;
    writer
        .update(|ledger| ledger.insert(&key("new"), entry("new")))
        .await
        .unwrap();
    let read = store.read().await.unwrap();
    assert_eq!(read.version, 2);
    assert_eq!(read.definitions.len(), 2);
    writer.finish().await;
    let written = writer.written().await;
    assert_eq!(
        written.writes, 2,
        "one append (with the migration), one fold"
    );
    assert_eq!(store.read().await.unwrap(), read);
}

/// Runs of `reconcile --wait` on one blob ledger, killed at random moments (in the middle of
/// an append, a fold or a POST), then two at once: the work ends with every definition built
/// exactly once, and the ledger (snapshot and journal) reads whole after each kill.
#[cfg(feature = "emulator")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_on_a_blob_ledger_killed_at_random_or_two_at_once_build_each_definition_once() {
    use std::process::Stdio;
    let azurite = Azurite::start();
    let container = azurite.container("ledgers").await;
    let url = azurite.blob_url(&container, BLOB);
    let store = store_at(&url);
    let repo = common::Repo::shipped();
    let emulator = common::fast_emulator();
    let wait = ["reconcile", "--wait", "--poll-interval", "100ms", "--no-pr"];
    let spawn = || {
        common::process_against(&repo, &emulator)
            .env("IMAGEGEN_STATE", &url)
            .args(wait)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start imagegen")
    };
    let mut random = fastrand::Rng::with_seed(15);
    for _ in 0..6 {
        let mut child = spawn();
        tokio::time::sleep(Duration::from_millis(random.u64(50..700))).await;
        child.kill().unwrap();
        child.wait().unwrap();
        store
            .read()
            .await
            .expect("the ledger reads whole after a kill");
    }
    let (first, second) = (spawn(), spawn());
    for child in [first, second] {
        let output = tokio::task::block_in_place(|| child.wait_with_output()).unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(emulator.job_count(), 16, "one job per definition");
    let ledger = store.read().await.unwrap();
    assert_eq!(ledger.definitions.len(), 16);
    let tracking_ids: std::collections::BTreeSet<_> = ledger
        .definitions
        .values()
        .map(|entry| {
            assert_eq!(entry.status, JobStatus::Succeeded, "{entry:?}");
            entry.tracking_id.clone().unwrap()
        })
        .collect();
    assert_eq!(tracking_ids.len(), 16, "each definition its own job");
}
