//! `imagegen status` without tracking ids, through the binary: every definition's state after
//! real runs against the emulator, what a bare OSOB repository's base branch names, an OSOB
//! that cannot be reached, the exit codes, the run summary on a CI platform; and `status
//! --watch` asking about its jobs at once.

use std::time::{Duration, Instant};

use imagegen::factory::emulator::{Emulator, EmulatorConfig, Fault, Route};
use serde_json::Value;

use crate::common::osob::Osob;
use crate::common::{Repo, emulator_failing, fast_emulator, json_of, run_against, stdout_of};

const ADOPTED: &str = "windows-server/server-2016-datacenter";
const BUILT: &str = "vs2022/server-2022-enterprise";
const FAILED: &str = "vs2022/server-2022-buildtools";
const BUILDING: &str = "vs2022/server-2025-enterprise";
const CHANGED: &str = "vs2019-preview/server-2019-en-us-enterprise";
const NEVER_BUILT: &str = "windows-server/server-2019-datacenter";

/// A repository with a definition in each state, and an OSOB whose main names the adopted
/// definition's image as today's variables render it (and older images for the others).
struct Fleet {
    repo: Repo,
    osob: Osob,
    _emulators: (Emulator, Emulator),
}

fn fleet() -> Fleet {
    let repo = Repo::shipped();
    repo.map_to_local_osob();
    let osob = Osob::new();
    // OSOB's maintainers moved the adopted definition's queues to today's image by hand.
    let rendered = repo.run(&["render", ADOPTED, "--output", "json"], 0);
    let today = json_of(&rendered)["image_names"][0]
        .as_str()
        .expect("an image name")
        .to_string();
    let file = "definitions/queues/windows-server.yml";
    let main = osob.tip("main").expect("OSOB has main");
    let text = osob.read(main, file);
    let old = regex::Regex::new(r"Helix-Server-DataCenter-2016_[0-9.]+")
        .unwrap()
        .find(&text)
        .expect("the fixture names a 2016 image")
        .as_str()
        .to_string();
    osob.commit_files(
        &osob.repo(),
        "main",
        None,
        &[(file.to_string(), text.replace(&old, &today).into_bytes())],
        "Server 2016 queues on the new image",
        "maintainer@osob.invalid",
    );

    let (failing, _) = emulator_failing(&repo, FAILED);
    repo.run(&["adopt", "--only", ADOPTED], 0);
    repo.run(&["adopt", "--only", CHANGED], 0);
    run_against(
        &repo,
        &failing,
        &[
            "reconcile",
            "--wait",
            "--no-pr",
            "--only",
            "vs2022/server-2022-*",
            "--poll-interval",
            "100ms",
        ],
        1,
    );
    let slow = Emulator::start_in_background(EmulatorConfig {
        queued_for: Duration::from_secs(3600),
        ..EmulatorConfig::default()
    })
    .expect("start the emulator");
    run_against(&repo, &slow, &["submit", BUILDING], 0);
    repo.run(&["vars", "set", "VS_2019_PREVIEW_VERSION=16_11_0_9"], 0);
    Fleet {
        repo,
        osob,
        _emulators: (failing, slow),
    }
}

fn row<'a>(document: &'a Value, definition: &str) -> &'a Value {
    document["definitions"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|row| row["definition"] == definition)
        .unwrap_or_else(|| panic!("no row for {definition}: {document}"))
}

#[test]
fn the_fleet_shows_each_definitions_state_image_job_and_what_osob_names() {
    let fleet = fleet();
    let osob = fleet.osob.url();
    let output = fleet
        .repo
        .run(&["status", "--osob-url", &osob, "--output", "json"], 1);
    let document = json_of(&output);
    let rows = document["definitions"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        fleet.repo.definition_ids().len(),
        "one row each"
    );
    let expect = [
        (ADOPTED, "adopted", "named"),
        (BUILT, "built", "other"),
        (FAILED, "failed", "other"),
        (BUILDING, "building", "other"),
        (CHANGED, "changed", "other"),
        (NEVER_BUILT, "never-built", "other"),
    ];
    for (definition, state, in_osob) in expect {
        let row = row(&document, definition);
        assert_eq!(row["state"], state, "{definition}: {row}");
        assert_eq!(row["osob"]["state"], in_osob, "{definition}: {row}");
    }
    let built = row(&document, BUILT);
    assert!(built["tracking_id"].is_string() && built["built_at"].is_string());
    assert!(
        built["osob"]["names"][0]
            .as_str()
            .is_some_and(|name| name.starts_with("Helix-Server-DataCenter-2022-VS2022-Enterprise_")),
        "OSOB still names the image before this build: {built}"
    );
    assert!(row(&document, FAILED)["message"].is_string());
    assert!(row(&document, NEVER_BUILT).get("tracking_id").is_none());
    assert_eq!(document["counts"]["adopted"], 1);
    assert_eq!(document["counts"]["changed"], 1);
    assert_eq!(document["osob"]["base_branch"], "main");
    assert_eq!(document["exit_code"], 1);

    let text = stdout_of(&fleet.repo.run(&["status", "--osob-url", &osob], 1));
    let line = |definition: &str| {
        text.lines()
            .find(|line| line.starts_with(&format!("{definition} ")))
            .unwrap_or_else(|| panic!("no line for {definition}:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        text.starts_with("definition ") && text.contains(" tracking id "),
        "{text}"
    );
    assert!(line(ADOPTED).contains(" adopted Helix-Server-DataCenter-2016_"));
    assert!(line(ADOPTED).ends_with(" - names it"), "{}", line(ADOPTED));
    assert!(line(BUILT).contains(" still names Helix-Server-DataCenter-2022-VS2022-"));
    assert!(line(NEVER_BUILT).contains(" never built - - - still names "));
    assert!(
        text.contains(&format!("\nOSOB: {osob}, main at ")),
        "{text}"
    );
    assert!(text.ends_with("\nLedger: .imagegen/state.json\n"), "{text}");
}

#[test]
fn the_exit_code_says_whether_everything_chosen_is_built_and_named() {
    let fleet = fleet();
    let osob = fleet.osob.url();
    let status = |only: &[&str], code| {
        let mut args = vec!["status", "--osob-url", &osob];
        for pattern in only {
            args.extend(["--only", pattern]);
        }
        fleet.repo.run(&args, code)
    };
    status(&[ADOPTED], 0);
    status(&[ADOPTED, BUILDING], 2);
    status(&[ADOPTED, CHANGED], 2);
    status(&[BUILT], 2);
    status(&[ADOPTED, FAILED], 1);
    let except = fleet.repo.run(
        &[
            "status",
            "--osob-url",
            &osob,
            "--only",
            "windows-server/*",
            "--except",
            NEVER_BUILT,
            "--output",
            "json",
        ],
        2,
    );
    let rows = json_of(&except)["definitions"].as_array().unwrap().len();
    assert_eq!(rows, 4, "five windows-server definitions, one left out");
}

#[test]
fn with_osob_unreachable_the_table_still_prints_and_says_so() {
    let fleet = fleet();
    let nowhere = fleet.repo.path().join("no-such-osob.git");
    let nowhere = nowhere.to_str().unwrap();
    let text = stdout_of(
        &fleet
            .repo
            .run(&["status", "--osob-url", nowhere, "--only", ADOPTED], 1),
    );
    assert!(
        text.contains(" adopted ") && text.contains(" not read\n"),
        "{text}"
    );
    assert!(
        text.contains("\nOSOB: not read, so the OSOB column is unknown: "),
        "{text}"
    );
    let json = fleet
        .repo
        .run(&["status", "--osob-url", nowhere, "--output", "json"], 1);
    let document = json_of(&json);
    assert!(document["osob"]["error"].is_string(), "{document}");
    assert!(
        document["definitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|row| row["osob"]["state"] == "not-read")
    );
}

#[test]
fn on_a_ci_platform_the_fleet_goes_to_the_run_summary_too() {
    let fleet = fleet();
    let summary = fleet.repo.path().join("summary.md");
    let output = fleet
        .repo
        .imagegen()
        .args(["status", "--osob-url", &fleet.osob.url(), "--only", ADOPTED])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let markdown = std::fs::read_to_string(&summary).expect("the summary was written");
    assert!(markdown.starts_with("## imagegen status\n"), "{markdown}");
    assert!(
        markdown.contains(&format!(
            "| {ADOPTED} | adopted | Helix-Server-DataCenter-2016_"
        )),
        "{markdown}"
    );
}

#[test]
fn status_watch_asks_about_its_jobs_at_once() {
    let repo = Repo::shipped();
    let emulator = fast_emulator();
    let ids = [
        "windows-server/server-2016-datacenter",
        "windows-server/server-2019-datacenter",
        "windows-server/server-2022-datacenter",
    ];
    for id in ids {
        run_against(&repo, &emulator, &["submit", id], 0);
    }
    let ledger = repo.ledger();
    let tracking: Vec<String> = ids
        .iter()
        .map(|id| ledger.definitions[*id].tracking_id.clone().unwrap())
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    // Each of the first three answers takes a second: one after the other, they would take
    // three.
    for _ in 0..3 {
        emulator.inject(Route::Jobs, Fault::Slow(Duration::from_secs(1)));
    }
    let started = Instant::now();
    let mut args = vec!["status", "--watch", "--poll-interval", "100ms"];
    args.extend(tracking.iter().map(String::as_str));
    let output = run_against(&repo, &emulator, &args, 0);
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "the three slow answers were waited for one after the other: {took:?}\n{}",
        stdout_of(&output)
    );
    let stdout = stdout_of(&output);
    let last_report = stdout.rsplit("\n\n").next().unwrap_or_default();
    assert_eq!(last_report.matches("): Succeeded\n").count(), 3, "{stdout}");
}

/// A definition whose image name is a megabyte of text (a paste gone wrong) is a definition
/// that does not render: the fleet says so, in text and in one JSON document, and never
/// panics on the pattern it would have looked for in OSOB's files.
#[test]
fn a_megabyte_image_name_is_reported_as_invalid_not_a_panic() {
    let repo = Repo::shipped();
    repo.map_to_local_osob();
    let osob = Osob::new();
    let file = "definitions/windows-server/server-2016-datacenter.json";
    let mut definition: Value = serde_json::from_str(&repo.read(file)).unwrap();
    definition["Destination"][0]["CustomImageName"] =
        Value::String(format!("Helix-{}", "x".repeat(1_000_000)));
    repo.write(file, &serde_json::to_string_pretty(&definition).unwrap());
    let osob = osob.url();
    let text = stdout_of(&repo.run(&["status", "--osob-url", &osob], 1));
    assert!(
        text.lines().any(
            |line| line.starts_with("windows-server/server-2016-datacenter ")
                && line.contains("invalid")
        ),
        "{}",
        &text[..text.len().min(2000)]
    );
    let json = repo.run(&["status", "--osob-url", &osob, "--output", "json"], 1);
    let document = json_of(&json);
    assert_eq!(
        row(&document, "windows-server/server-2016-datacenter")["state"],
        "invalid"
    );
}
