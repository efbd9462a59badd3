//! `--output json` under every fault the Image Factory emulator can make: each command that
//! talks to the service (and the ones around it) writes exactly one JSON document, and exits
//! with the code its text output exits with for the same fault.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use imagegen::factory::emulator::{Emulator, EmulatorConfig, Fault, Route};
use imagegen::state::JobStatus;
use serde_json::Value;

use crate::common::osob::Osob;
use crate::common::{Repo, process_against};

/// Tracked by the ledger as a job in flight (or, with a failing build, failed).
const IN_FLIGHT: &str = "vs2022/server-2022-enterprise";
/// Never submitted: the next reconcile or submit sends it.
const NEW: &str = "vs2022/server-2025-enterprise";

/// How long one request may take in these runs; `Slow` and `LateAnswer` hold theirs longer.
const HTTP_TIMEOUT: &str = "1s";
const HELD: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Reconcile,
    ReconcileWait,
    ReconcileDryRun,
    Submit,
    Status,
    Adopt,
    Pr,
}

const COMMANDS: [Command; 7] = [
    Command::Reconcile,
    Command::ReconcileWait,
    Command::ReconcileDryRun,
    Command::Submit,
    Command::Status,
    Command::Adopt,
    Command::Pr,
];

/// One way for the service to misbehave: faults injected on a route, or a build that fails.
#[derive(Debug, Clone)]
struct Misbehaviour {
    name: &'static str,
    injected: Vec<(Route, Fault)>,
    failing_build: bool,
}

fn injected(name: &'static str, route: Route, fault: Fault, times: usize) -> Misbehaviour {
    Misbehaviour {
        name,
        injected: vec![(route, fault); times],
        failing_build: false,
    }
}

fn status(status: u16, body: &str) -> Fault {
    Fault::Status {
        status,
        body: body.to_string(),
    }
}

/// Every fault the emulator makes, on the jobs API and on the token endpoint.
fn misbehaviours() -> Vec<Misbehaviour> {
    let jobs = Route::Jobs;
    let token = Route::Token;
    vec![
        Misbehaviour {
            name: "none",
            injected: Vec::new(),
            failing_build: false,
        },
        Misbehaviour {
            name: "failing build",
            injected: Vec::new(),
            failing_build: true,
        },
        injected(
            "429 Retry-After 0",
            jobs,
            Fault::Throttle {
                retry_after: Some(0),
            },
            3,
        ),
        injected("429", jobs, Fault::Throttle { retry_after: None }, 3),
        injected("500", jobs, Fault::ServerError(500), 3),
        injected("503", jobs, Fault::ServerError(503), 3),
        injected(
            "400 InvalidPayload",
            jobs,
            status(
                400,
                r#"{"error":{"code":"InvalidPayload","message":"VMSize is not offered"}}"#,
            ),
            1,
        ),
        injected(
            "401 twice",
            jobs,
            status(
                401,
                r#"{"error":{"code":"Unauthorized","message":"audience"}}"#,
            ),
            2,
        ),
        injected(
            "403",
            jobs,
            status(
                403,
                r#"{"error":{"code":"Forbidden","message":"not allowed"}}"#,
            ),
            1,
        ),
        injected(
            "404",
            jobs,
            status(404, r#"{"error":{"code":"NotFound","message":"no job"}}"#),
            1,
        ),
        injected(
            "200 not JSON",
            jobs,
            status(200, "<html>a login page</html>"),
            1,
        ),
        injected("slow", jobs, Fault::Slow(HELD), 1),
        injected("late answer", jobs, Fault::LateAnswer(HELD), 1),
        injected("reset", jobs, Fault::Reset, 3),
        injected("replay", jobs, Fault::Replay, 1),
        injected("no images", jobs, Fault::NoImages, 1),
        injected(
            "status Paused",
            jobs,
            Fault::ReportStatus("Paused".into()),
            1,
        ),
        injected("token 503", token, Fault::ServerError(503), 3),
        injected("token reset", token, Fault::Reset, 3),
        injected(
            "token refused",
            token,
            status(
                401,
                r#"{"error":"invalid_client","error_description":"AADSTS7000215"}"#,
            ),
            1,
        ),
    ]
}

/// One run of `command` under `misbehaviour`, from a fresh repository, ledger, emulator and
/// OSOB: 14 definitions built, one in flight, one never submitted.
fn run(command: Command, misbehaviour: &Misbehaviour, json: bool) -> std::process::Output {
    let repo = Repo::shipped();
    repo.map_to_local_osob();
    let osob = Osob::new();
    let ids = repo.definition_ids();
    let built: Vec<(&str, JobStatus)> = ids
        .iter()
        .map(String::as_str)
        .filter(|id| *id != IN_FLIGHT && *id != NEW)
        .map(|id| (id, JobStatus::Succeeded))
        .collect();
    repo.record_ledger(&repo.read("variables.json"), &built);
    // --wait follows jobs to their end, so there they end quickly; elsewhere they stay
    // in flight unless a fault moves them along.
    let (queued_for, running_for) = if command == Command::ReconcileWait {
        (Duration::from_millis(100), Duration::from_millis(200))
    } else {
        (Duration::from_secs(3600), Duration::from_secs(3600))
    };
    let emulator = Emulator::start_in_background(EmulatorConfig {
        queued_for,
        running_for,
        fail_images: misbehaviour.failing_build.then(|| {
            regex::Regex::new("^Helix-Server-DataCenter-2022-VS2022-Enterprise_").unwrap()
        }),
        ..EmulatorConfig::default()
    })
    .expect("start the emulator");
    let submitted = process_against(&repo, &emulator)
        .args(["submit", IN_FLIGHT])
        .output()
        .unwrap();
    assert_eq!(submitted.status.code(), Some(0), "{submitted:?}");
    if misbehaviour.failing_build {
        emulator.skip(queued_for + running_for);
    }
    let tracking_id = repo.ledger().definitions[IN_FLIGHT]
        .tracking_id
        .clone()
        .unwrap();
    for (route, fault) in &misbehaviour.injected {
        emulator.inject(*route, fault.clone());
    }
    let factory = ["--retries", "1", "--http-timeout", HTTP_TIMEOUT];
    let osob_url = osob.url();
    let reconcile = ["reconcile", "--concurrency", "1", "--osob-url", &osob_url];
    let mut args: Vec<&str> = match command {
        Command::Reconcile => [&reconcile[..], &factory].concat(),
        Command::ReconcileWait => [
            &reconcile[..],
            &factory,
            &["--wait", "--poll-interval", "100ms", "--timeout", "20s"],
        ]
        .concat(),
        Command::ReconcileDryRun => vec!["reconcile", "--dry-run"],
        Command::Submit => [&["submit", NEW][..], &factory].concat(),
        Command::Status => [&["status", &tracking_id][..], &factory].concat(),
        Command::Adopt => vec!["adopt"],
        Command::Pr => vec!["pr"],
    };
    if json {
        args.extend(["--output", "json"]);
    }
    process_against(&repo, &emulator)
        .env("IMAGEGEN_OSOB_URL", &osob_url)
        .args(&args)
        .output()
        .unwrap()
}

/// What went wrong with one command under one fault, if anything.
fn check(command: Command, misbehaviour: &Misbehaviour) -> Result<i32, String> {
    let text = run(command, misbehaviour, false);
    let json = run(command, misbehaviour, true);
    let case = format!("{command:?} under {}", misbehaviour.name);
    let stdout = String::from_utf8_lossy(&json.stdout);
    let document: Value = serde_json::from_slice(&json.stdout).map_err(|error| {
        format!(
            "{case}: stdout is not one JSON document ({error}):\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&json.stderr)
        )
    })?;
    let (text_code, json_code) = (text.status.code(), json.status.code());
    if text_code != json_code {
        return Err(format!(
            "{case}: text exits {text_code:?} but JSON exits {json_code:?}\ntext stderr:\n{}\njson:\n{stdout}\njson stderr:\n{}",
            String::from_utf8_lossy(&text.stderr),
            String::from_utf8_lossy(&json.stderr)
        ));
    }
    if let Some(claimed) = document.get("exit_code")
        && claimed.as_i64() != json_code.map(i64::from)
    {
        return Err(format!(
            "{case}: the document says exit code {claimed} but the run exits {json_code:?}"
        ));
    }
    json_code.ok_or_else(|| format!("{case}: killed by a signal"))
}

#[test]
fn every_command_prints_one_json_document_and_the_text_exit_code_under_every_fault() {
    let started = Instant::now();
    let cases: Vec<(Command, Misbehaviour)> = COMMANDS
        .iter()
        .flat_map(|command| {
            misbehaviours()
                .into_iter()
                .map(move |misbehaviour| (*command, misbehaviour))
        })
        .collect();
    let total = cases.len();
    let queue = Mutex::new(cases);
    let results = Mutex::new(Vec::new());
    // The runs mostly wait on timers and the network: a few at once keep the test short.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let Some((command, misbehaviour)) = queue.lock().unwrap().pop() else {
                        return;
                    };
                    let result = check(command, &misbehaviour);
                    results
                        .lock()
                        .unwrap()
                        .push((command, misbehaviour.name, result));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(command, name, _)| (COMMANDS.iter().position(|c| c == command), *name));
    let mut failures = Vec::new();
    for (command, name, result) in &results {
        match result {
            Ok(code) => eprintln!("{command:?} under {name}: exit {code} in both formats"),
            Err(failure) => failures.push(failure.clone()),
        }
    }
    eprintln!(
        "{total} command x fault cases (text and JSON each) in {:.1?}",
        started.elapsed()
    );
    assert_eq!(results.len(), total);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
