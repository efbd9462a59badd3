//! imagegen under inputs far larger than anyone meant: a value or id of tens of thousands of
//! characters from a file or from the service, a reader that stops early, an answer of hundreds
//! of megabytes. Each test runs the real binary and asks that it neither panic nor flood its
//! output, and that it says what it refused.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use imagegen::state::JobStatus;
use serde_json::json;

use crate::common::raw_server::{Answer, raw_server};
use crate::common::router_server::RouterServer;
use crate::common::{Repo, stderr_of, stdout_of};

/// The binary in `repo`, pointed at `service` (standing in for Image Factory and Azure AD) with
/// made-up credentials.
fn imagegen_against_service(repo: &Repo, service: &RouterServer) -> assert_cmd::Command {
    let mut command = repo.imagegen();
    command
        .env("IMAGE_FACTORY_URL", service.url())
        .env("IMAGE_FACTORY_AUTHORITY", service.url())
        .env("IMAGE_FACTORY_TENANT_ID", "tenant")
        .env("IMAGE_FACTORY_CLIENT_ID", "client")
        .env("IMAGE_FACTORY_CLIENT_SECRET", "secret")
        .env("IMAGE_FACTORY_RESOURCE_ID", "api://factory");
    command
}

fn token_answer() -> axum::Json<serde_json::Value> {
    axum::Json(json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "t"}))
}

// --- Values and ids far longer than a table column --------------------------------------------

#[test]
fn vars_list_shows_a_value_of_65536_characters_cut_with_its_length() {
    let repo = Repo::fixture("small");
    let mut variables: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&repo.read("variables.json")).expect("the fixture's variables");
    variables.insert("HUGE".into(), json!("v".repeat(65_536)));
    repo.write(
        "variables.json",
        &serde_json::to_string_pretty(&variables).expect("JSON"),
    );
    let output = repo.run(&["vars", "list"], 0);
    let stdout = stdout_of(&output);
    let huge = stdout
        .lines()
        .find(|line| line.starts_with("HUGE"))
        .unwrap_or_else(|| panic!("no HUGE row in:\n{stdout}"));
    assert!(
        huge.contains("v… (65536 characters in all)  unused"),
        "{huge}"
    );
    assert!(stdout.len() < 10_000, "{} bytes", stdout.len());
}

#[test]
fn a_tracking_id_of_70000_characters_from_the_service_leaves_every_later_reconcile_working() {
    let long_id = "7".repeat(70_000);
    let answered = long_id.clone();
    let router = Router::new()
        .route(
            "/{tenant}/oauth2/v2.0/token",
            post(|| async { token_answer() }),
        )
        .route(
            "/api/jobs",
            post(move || {
                let id = answered.clone();
                async move {
                    (
                        StatusCode::ACCEPTED,
                        axum::Json(json!({"trackingId": id, "status": "Queued"})),
                    )
                }
            }),
        )
        .route(
            "/api/jobs/{id}",
            get(|Path(id): Path<String>| async move {
                axum::Json(json!({"trackingId": id, "status": "Running"}))
            }),
        );
    let service = RouterServer::start(router);
    let repo = Repo::fixture("small");
    imagegen_against_service(&repo, &service)
        .args(["reconcile", "--no-pr", "--only", "vs/server-2022"])
        .assert()
        .code(2);
    let entry = &repo.ledger().definitions["vs/server-2022"];
    assert_eq!(entry.tracking_id.as_deref(), Some(long_id.as_str()));
    assert_eq!(entry.status, JobStatus::Queued);
    // The next runs poll the job, print it in their table and plan: none may panic.
    let output = imagegen_against_service(&repo, &service)
        .args(["reconcile", "--no-pr", "--only", "vs/server-2022"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    let stdout = stdout_of(&output);
    assert!(stdout.contains("7… (70000 characters in all)"), "{stdout}");
    assert!(stdout.len() < 10_000, "{} bytes", stdout.len());
    let output = repo.run(&["reconcile", "--dry-run"], 2);
    assert!(
        stdout_of(&output).contains("7… (70000 characters in all)"),
        "{}",
        stdout_of(&output)
    );
}

#[test]
fn values_of_20_megabytes_give_problems_of_a_few_kilobytes() {
    let repo = Repo::fixture("small");
    const SIZE: usize = 20 << 20;
    // An image name with spaces, a number where a string belongs, and a stray brace: each is
    // a problem that quotes what it found.
    let variables = repo.read("variables.json").replace(
        "\"VS_VERSION\": \"17_12_1\"",
        &format!(
            "\"VS_VERSION\": \"{}\",\n  \"NUMBER\": {}",
            "a b".repeat(SIZE / 3),
            "7".repeat(SIZE)
        ),
    );
    repo.write("variables.json", &variables);
    let definition = repo.read("definitions/windows/server-2019.json").replacen(
        '{',
        &format!("{{\n  \"Script\": \"{{ {}\",", "x".repeat(SIZE)),
        1,
    );
    repo.write("definitions/windows/server-2019.json", &definition);
    for args in [
        &["validate"][..],
        &["validate", "--output", "json"],
        &["reconcile", "--dry-run"],
    ] {
        let output = repo.run(args, 1);
        let stderr = stderr_of(&output);
        let written = output.stdout.len() + output.stderr.len();
        assert!(written < 64 << 10, "{args:?} wrote {written} bytes");
        if args.len() == 1 {
            assert!(
                stderr.contains(" characters in all)\" is not a valid Azure image name"),
                "{args:?}: {stderr}"
            );
            assert!(
                stderr.contains("the value of NUMBER is a number"),
                "{stderr}"
            );
            assert!(stderr.contains("unmatched '{' in \"{ xxx"), "{stderr}");
        }
    }
}

// --- A reader that stops early ----------------------------------------------------------------

#[test]
fn completions_into_a_closed_pipe_end_quietly() {
    let repo = Repo::empty();
    // The reading end is closed before imagegen writes a byte, as `| head -3` does once it has
    // its lines: every write then fails with a broken pipe.
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let output = repo
        .process()
        .args(["completions", "powershell"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run imagegen");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(stderr_of(&output), "");
}

// --- Answers of hundreds of megabytes ---------------------------------------------------------

const TWO_HUNDRED_MEGABYTES: u64 = 200 << 20;

/// Runs imagegen against the raw server at `address` and returns what it wrote, with the
/// most memory it held (Linux only: its peak resident size, in kibibytes).
fn run_against_raw(address: SocketAddr, args: &[&str]) -> (std::process::Output, Option<u64>) {
    let repo = Repo::fixture("small");
    let url = format!("http://{address}/");
    let child = repo
        .process()
        .args(args)
        .env("IMAGE_FACTORY_URL", &url)
        .env("IMAGE_FACTORY_AUTHORITY", &url)
        .env("IMAGE_FACTORY_TENANT_ID", "tenant")
        .env("IMAGE_FACTORY_CLIENT_ID", "client")
        .env("IMAGE_FACTORY_CLIENT_SECRET", "secret")
        .env("IMAGE_FACTORY_RESOURCE_ID", "api://factory")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run imagegen");
    let status = format!("/proc/{}/status", child.id());
    let watcher = std::thread::spawn(move || {
        let mut peak = None;
        while let Ok(text) = std::fs::read_to_string(&status) {
            // A finished process (a zombie until waited for) has no memory lines.
            let Some(line) = text.lines().find(|line| line.starts_with("VmHWM:")) else {
                break;
            };
            peak = line
                .split_whitespace()
                .nth(1)
                .and_then(|kib| kib.parse::<u64>().ok())
                .or(peak);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        peak
    });
    let output = child.wait_with_output().expect("imagegen ends");
    (output, watcher.join().expect("the watcher ends"))
}

fn token_json() -> String {
    r#"{"token_type": "Bearer", "expires_in": 3599, "access_token": "t"}"#.to_string()
}

#[test]
fn an_image_factory_answer_of_200_megabytes_is_refused_naming_the_url_and_the_cap() {
    for announced in [true, false] {
        let address = raw_server(if announced {
            |method, path| match (method, path.ends_with("/token")) {
                ("POST", true) => Answer::Json(token_json()),
                _ => Answer::Huge {
                    size: TWO_HUNDRED_MEGABYTES,
                    announced: true,
                },
            }
        } else {
            |method, path| match (method, path.ends_with("/token")) {
                ("POST", true) => Answer::Json(token_json()),
                _ => Answer::Huge {
                    size: TWO_HUNDRED_MEGABYTES,
                    announced: false,
                },
            }
        });
        let (output, peak) = run_against_raw(address, &["status", "job-1"]);
        let stdout = stdout_of(&output);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{stdout}{}",
            stderr_of(&output)
        );
        let expected = format!(
            "GET http://{address}/api/jobs/job-1 answered {}, more than the 4 MiB imagegen reads \
             of any answer",
            if announced {
                format!("a body of {TWO_HUNDRED_MEGABYTES} bytes")
            } else {
                "a body".to_string()
            }
        );
        assert!(stdout.contains(&expected), "{stdout}");
        assert!(stdout.len() < 10_000, "{} bytes", stdout.len());
        if let Some(peak) = peak {
            assert!(peak < 100 << 10, "imagegen held {peak} KiB");
        }
    }
}

#[test]
fn an_azure_ad_answer_of_200_megabytes_is_refused_naming_the_url_and_the_cap() {
    let address = raw_server(|_, _| Answer::Huge {
        size: TWO_HUNDRED_MEGABYTES,
        announced: false,
    });
    let (output, peak) = run_against_raw(address, &["status", "job-1"]);
    let stdout = stdout_of(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}{}",
        stderr_of(&output)
    );
    assert!(
        stdout.contains(&format!(
            "POST http://{address}/tenant/oauth2/v2.0/token answered a body, more than the 4 MiB \
             imagegen reads of any answer"
        )),
        "{stdout}"
    );
    if let Some(peak) = peak {
        assert!(peak < 100 << 10, "imagegen held {peak} KiB");
    }
}
