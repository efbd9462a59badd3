//! End-to-end tests of the imagegen binary on temporary copies of real repositories: the shipped
//! one, the small fixture under tests/fixtures/small, and broken ones written by each test.

use imagegen::state::JobStatus;
use serde_json::Value;

use crate::common::{Repo, json_of, stderr_of, stdout_of};

// The build script's git questions, asked here of throw-away repositories.
#[allow(dead_code)]
#[path = "../../build.rs"]
mod build_script;

// --- The shipped repository -------------------------------------------------------------------

#[test]
fn shipped_repository_validates_cleanly() {
    let repo = Repo::shipped();
    let output = repo.run(&["validate"], 0);
    assert_eq!(stderr_of(&output), "", "the shipped repo has no warnings");
    let count = repo.definition_ids().len();
    assert!(count >= 12, "at least 12 definitions ship, found {count}");
    assert!(
        stdout_of(&output).starts_with(&format!("ok: {count} definitions rendered with ")),
        "{}",
        stdout_of(&output)
    );
}

#[test]
fn dry_run_on_a_fresh_clone_plans_every_definition_and_exits_2() {
    let repo = Repo::shipped();
    let output = repo.run(&["reconcile", "--dry-run"], 2);
    let stdout = stdout_of(&output);
    let ids = repo.definition_ids();
    for id in &ids {
        assert!(
            stdout.contains(&format!("+ {id}  never submitted")),
            "{id} missing:\n{stdout}"
        );
    }
    assert!(
        stdout.ends_with(&format!(
            "Plan: {} to submit, 0 pending, 0 failed, 0 unchanged.\nLedger: .imagegen/state.json\n",
            ids.len()
        )),
        "{stdout}"
    );
    assert!(stderr_of(&output).contains("dry run: nothing was submitted"));
    assert!(
        !repo.path().join(".imagegen").exists(),
        "a dry run writes no ledger"
    );
}

#[test]
fn dry_run_json_gives_the_same_plan() {
    let repo = Repo::shipped();
    let output = repo.run(&["reconcile", "--dry-run", "--output", "json"], 2);
    let document = json_of(&output);
    let ids = repo.definition_ids();
    assert_eq!(document["summary"]["to_submit"], ids.len());
    let planned: Vec<&str> = document["plan"]["submit"]
        .as_array()
        .expect("submit is a list")
        .iter()
        .map(|submission| submission["definition"].as_str().expect("an id"))
        .collect();
    assert_eq!(planned, ids);
    assert_eq!(stderr_of(&output), "", "JSON output leaves stderr quiet");
}

#[test]
fn every_vs2019_preview_definition_uses_both_preview_variables() {
    let repo = Repo::shipped();
    let output = repo.run(
        &[
            "affected",
            "VS_2019_PREVIEW_URL,VS_2019_PREVIEW_VERSION",
            "--output",
            "json",
        ],
        0,
    );
    let document = json_of(&output);
    let both: Vec<&Value> = document["definitions"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|d| d["variables"].as_array().is_some_and(|v| v.len() == 2))
        .collect();
    assert!(both.len() >= 6, "{document:#}");
}

// --- Plans against a ledger (snapshots) ------------------------------------------------------

const OLD_VARIABLES: &str = r#"{
  "VS_URL": "https://vs.example.test/17/release",
  "VS_VERSION": "17_12_0",
  "WIN_2022_PATCH": "20348_2849",
  "WIN_2019_PATCH": "17763_6532",
  "WIN_2016_PATCH": "14393_7515"
}"#;

/// A week later: VS_VERSION moved on. server-2022 was built with the old version, windows-11's
/// build is still running, windows/server-2022 failed, windows/server-2016 is still building the
/// current payload, windows/server-2019 is built, and an image that is no longer defined remains.
fn repo_with_history() -> Repo {
    let repo = Repo::fixture("small");
    repo.write(
        "definitions/retired/server-2012.json",
        &repo
            .read("definitions/windows/server-2016.json")
            .replace("Helix-Server-2016", "Helix-Server-2012"),
    );
    repo.record_ledger(
        OLD_VARIABLES,
        &[
            ("vs/server-2022", JobStatus::Succeeded),
            ("vs/windows-11", JobStatus::Running),
            ("windows/server-2016", JobStatus::Queued),
            ("windows/server-2019", JobStatus::Succeeded),
            ("windows/server-2022", JobStatus::Failed),
            ("retired/server-2012", JobStatus::Succeeded),
        ],
    );
    std::fs::remove_dir_all(repo.path().join("definitions/retired")).expect("remove a definition");
    repo
}

#[test]
fn dry_run_text_shows_changes_diffs_pending_and_failed_jobs() {
    let repo = repo_with_history();
    let output = repo.run(&["reconcile", "--dry-run"], 1);
    insta::assert_snapshot!(stdout_of(&output));
}

#[test]
fn dry_run_json_shows_the_same_plan() {
    let repo = repo_with_history();
    let output = repo.run(&["reconcile", "--dry-run", "--output", "json"], 1);
    let text = stdout_of(&output).replace(&repo.path().display().to_string(), "[REPO]");
    insta::assert_snapshot!(text);
}

#[test]
fn nothing_changed_means_exit_0() {
    let repo = Repo::fixture("small");
    let current = repo.read("variables.json");
    let all: Vec<(String, JobStatus)> = repo
        .definition_ids()
        .into_iter()
        .map(|id| (id, JobStatus::Succeeded))
        .collect();
    let statuses: Vec<(&str, JobStatus)> = all.iter().map(|(id, s)| (id.as_str(), *s)).collect();
    repo.record_ledger(&current, &statuses);
    let output = repo.run(&["reconcile", "--dry-run"], 0);
    assert_eq!(
        stdout_of(&output),
        "Unchanged and built: 5 definitions\nPlan: 0 to submit, 0 pending, 0 failed, 5 unchanged.\n\
         Ledger: .imagegen/state.json\n"
    );
}

#[test]
fn force_plans_built_definitions_again_but_leaves_jobs_in_flight() {
    let repo = repo_with_history();
    let output = repo.run(
        &["reconcile", "--dry-run", "--force", "--output", "json"],
        2,
    );
    let document = json_of(&output);
    let reasons: Vec<(String, String)> = document["plan"]["submit"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| {
            (
                s["definition"].as_str().unwrap().into(),
                s["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expect = |id: &str, reason: &str| (id.to_string(), reason.to_string());
    assert_eq!(
        reasons,
        [
            expect("vs/server-2022", "payload-changed"),
            expect("vs/windows-11", "payload-changed"),
            expect("windows/server-2019", "forced"),
            expect("windows/server-2022", "forced"),
        ]
    );
    assert_eq!(
        document["plan"]["pending"][0]["definition"],
        "windows/server-2016"
    );
}

#[test]
fn state_path_comes_from_flag_or_environment() {
    let repo = repo_with_history();
    std::fs::rename(
        repo.path().join(".imagegen/state.json"),
        repo.path().join("elsewhere.json"),
    )
    .expect("move the ledger");
    // Without the ledger everything is new.
    repo.imagegen()
        .args(["reconcile", "--dry-run"])
        .assert()
        .code(2)
        .stdout(predicates::str::contains("Plan: 5 to submit"));
    repo.imagegen()
        .args(["reconcile", "--dry-run", "--state", "elsewhere.json"])
        .assert()
        .code(1)
        .stdout(predicates::str::contains(
            "Plan: 2 to submit, 1 pending, 1 failed",
        ));
    repo.imagegen()
        .args(["reconcile", "--dry-run"])
        .env("IMAGEGEN_STATE", "elsewhere.json")
        .assert()
        .code(1)
        .stdout(predicates::str::contains(
            "Plan: 2 to submit, 1 pending, 1 failed",
        ));
}

#[test]
fn a_damaged_ledger_is_an_error_naming_the_file_and_line() {
    let repo = Repo::fixture("small");
    repo.write(
        ".imagegen/state.json",
        "{\n  \"version\": 1,\n  \"definitions\": {\n    \"a\": {\"payload_hash\": 3}\n  }\n}\n",
    );
    let output = repo.run(&["reconcile", "--dry-run"], 1);
    let stderr = stderr_of(&output);
    assert!(
        stderr.starts_with("error: cannot plan without the ledger: the ledger "),
        "{stderr}"
    );
    assert!(
        stderr.contains(".imagegen/state.json is damaged at line 4, column"),
        "{stderr}"
    );
    assert!(
        stderr.contains("invalid type: integer `3`, expected a string"),
        "{stderr}"
    );
    assert_eq!(stdout_of(&output), "");
}

#[test]
fn a_damaged_ledger_in_json_output_is_a_json_error() {
    let repo = Repo::fixture("small");
    repo.write(".imagegen/state.json", "not json");
    let output = repo.run(&["reconcile", "--dry-run", "--output", "json"], 1);
    let document = json_of(&output);
    assert_eq!(
        document["error"]["message"],
        "cannot plan without the ledger"
    );
    assert!(
        document["error"]["causes"][0]
            .as_str()
            .unwrap()
            .contains("state.json is damaged at line 1, column 2: expected ident")
    );
}

#[test]
fn reconcile_without_image_factory_settings_stops_before_touching_the_ledger() {
    let repo = Repo::fixture("small");
    repo.imagegen()
        .arg("reconcile")
        .assert()
        .code(1)
        .stderr(predicates::str::starts_with(
            "error: Image Factory credentials are missing: set IMAGE_FACTORY_TENANT_ID",
        ));
    assert!(!repo.path().join(".imagegen").exists());
}

// --- Errors in the committed files ------------------------------------------------------------

#[test]
fn every_problem_in_every_file_is_reported_in_one_run() {
    let repo = Repo::fixture("small");
    repo.write(
        "variables.json",
        "{\n  \"VS_URL\": \"https://vs.example.test\",\n  \"VS_VERSION\": \"17_12_1\",\n  \"VS_VERSION\": \"17_12_2\",\n  \"win_2016_patch\": \"x\",\n  \"WIN_2019_PATCH\": 17763,\n  \"WIN_2022_PATCH\": \"20348_2849\",\n  \"WIN_2016_PATCH\": \"14393_7515\"\n}\n",
    )
    .write("definitions/broken/syntax.json", "{\n  \"VMSize\": \"Standard_D4s_v5\"\n  \"Destination\": []\n}\n")
    .write("definitions/broken/crlf.json", "{\r\n  \"A\": 1,\r\n  \"A\": 2\r\n}\r\n")
    .write("definitions/broken/list.json", "[]")
    .write(
        "definitions/broken/undefined.json",
        r#"{"Artifacts": [{"Parameters": {"Url": "{VS_URLL}/vs.exe", "Script": "if (x) { y }"}}], "Destination": [{"CustomImageName": "Img-{VS_VERSION}"}]}"#,
    );
    let output = repo.run(&["validate"], 1);
    insta::assert_snapshot!(stderr_of(&output));
    assert_eq!(
        stdout_of(&output),
        "8 errors and 0 warnings in 9 definitions and variables.json\n"
    );
}

#[test]
fn validate_json_lists_diagnostics_with_codes_and_positions() {
    let repo = Repo::fixture("small");
    repo.write("definitions/broken/syntax.json", "{\n  \"A\": \"x\",\n}\n");
    let output = repo.run(&["validate", "--output", "json"], 1);
    let document = json_of(&output);
    assert_eq!(document["ok"], false);
    assert_eq!(
        document["diagnostics"][0],
        serde_json::json!({
            "severity": "error",
            "code": "json-syntax",
            "file": "definitions/broken/syntax.json",
            "line": 3,
            "column": 1,
            "definition": "broken/syntax",
            "message": "trailing comma",
        })
    );
}

#[test]
fn broken_variables_block_the_plan() {
    let repo = Repo::fixture("small");
    repo.write("variables.json", "{\"VS_URL\": \"x\",}");
    let output = repo.run(&["reconcile", "--dry-run"], 1);
    assert_eq!(stdout_of(&output), "");
    assert_eq!(
        stderr_of(&output),
        "error: variables.json:1:16: trailing comma\n\
         nothing was planned: fix variables.json first, every definition depends on it\n"
    );
}

#[test]
fn a_broken_definition_is_left_out_of_the_plan_and_fails_the_run() {
    let repo = Repo::fixture("small");
    repo.write("definitions/vs/windows-11.json", "{");
    let output = repo.run(&["reconcile", "--dry-run"], 1);
    let stdout = stdout_of(&output);
    assert!(
        stdout.contains("Not planned because of the errors reported (1): vs/windows-11"),
        "{stdout}"
    );
    assert!(stdout.contains("Plan: 4 to submit"), "{stdout}");
    assert!(
        stderr_of(&output).starts_with(
            "error: definitions/vs/windows-11.json:1:1: EOF while parsing an object\n"
        )
    );
}

#[test]
fn byte_order_marks_and_crlf_files_are_accepted() {
    let repo = Repo::fixture("small");
    let variables = repo.read("variables.json").replace('\n', "\r\n");
    repo.write("variables.json", &format!("\u{feff}{variables}"));
    let definition = repo
        .read("definitions/vs/server-2022.json")
        .replace('\n', "\r\n");
    repo.write(
        "definitions/vs/server-2022.json",
        &format!("\u{feff}{definition}"),
    );
    repo.imagegen().arg("validate").assert().code(0).stderr("");
}

#[test]
fn files_that_are_not_utf8_or_empty_say_how_to_fix_them() {
    let repo = Repo::fixture("small");
    std::fs::write(
        repo.path().join("definitions/vs/notepad.json"),
        b"\xff\xfe{\x00}\x00",
    )
    .expect("write a UTF-16 file");
    std::fs::write(
        repo.path().join("definitions/vs/latin1.json"),
        b"{\n  \"Name\": \"caf\xe9\"\n}\n",
    )
    .expect("write a Latin-1 file");
    repo.write("definitions/vs/empty.json", "\n");
    let output = repo.run(&["validate"], 1);
    assert_eq!(
        stderr_of(&output),
        "error: definitions/vs/empty.json:1:1: the file is empty; it must hold one JSON object\n\
         error: definitions/vs/latin1.json:2:15: byte 0xE9 is not UTF-8 (the file may be saved \
         as Windows-1252 or Latin-1); save it as UTF-8\n\
         error: definitions/vs/notepad.json: the file is saved as UTF-16; save it as UTF-8\n"
    );
    assert_eq!(
        stdout_of(&output),
        "3 errors and 0 warnings in 8 definitions and variables.json\n"
    );
    let output = repo.run(&["reconcile", "--dry-run"], 1);
    assert!(
        stdout_of(&output).contains(
            "Not planned because of the errors reported (3): vs/empty, vs/latin1, vs/notepad"
        ),
        "{}",
        stdout_of(&output)
    );
}

#[test]
fn a_definition_saved_with_another_extension_is_not_skipped_silently() {
    let repo = Repo::fixture("small");
    repo.write("definitions/vs/server-2025.jsn", "{}")
        .write("definitions/vs/README.md", "notes");
    repo.imagegen().arg("validate").assert().code(0).stderr(
        "warning: definitions/vs/server-2025.jsn: only *.json files are definitions, so this \
             file is ignored; rename it if it is one\n",
    );
}

#[test]
fn render_finds_a_path_inside_the_repository_given_by_flag() {
    let repo = Repo::fixture("small");
    let elsewhere = Repo::empty();
    let output = elsewhere.run(
        &[
            "--repo",
            repo.path().to_str().expect("a UTF-8 path"),
            "render",
            "definitions/windows/server-2019.json",
            "--output",
            "json",
        ],
        0,
    );
    assert_eq!(json_of(&output)["definition"], "windows/server-2019");
}

#[test]
fn an_empty_definitions_folder_warns_and_plans_nothing() {
    let repo = Repo::empty();
    repo.write("variables.json", "{\"UNUSED\": \"1\"}");
    std::fs::create_dir_all(repo.path().join("definitions")).expect("mkdir");
    repo.imagegen()
        .arg("validate")
        .assert()
        .code(0)
        .stdout("ok: 0 definitions rendered with 1 variables (2 warnings)\n")
        .stderr(
            "warning: definitions: no definitions found: add image definitions as *.json files here\n\
             warning: variables.json:1:3: variable UNUSED is not used by any definition\n",
        );
    repo.imagegen()
        .args(["reconcile", "--dry-run", "--quiet"])
        .assert()
        .code(0)
        .stdout(
            "Plan: 0 to submit, 0 pending, 0 failed, 0 unchanged.\nLedger: .imagegen/state.json\n",
        )
        .stderr("");
}

#[test]
fn a_missing_repository_says_where_to_run() {
    let repo = Repo::empty();
    let output = repo.run(&["validate"], 1);
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("error: variables.json: cannot read "),
        "{stderr}"
    );
    assert!(
        stderr.contains("run imagegen from the repository root or pass --repo"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cannot read the definitions folder"),
        "{stderr}"
    );
}

// --- render ---------------------------------------------------------------------------------

#[test]
fn render_by_id_or_path_prints_the_payload_with_escaped_values() {
    let repo = Repo::fixture("small");
    let variables = repo.read("variables.json").replace(
        "https://vs.example.test/17/release",
        r#"C:\\VS \"Preview\" — ü"#,
    );
    repo.write("variables.json", &variables);
    let by_id = repo.run(&["render", "vs/server-2022"], 0);
    let by_path = repo.run(&["render", "definitions/vs/server-2022.json"], 0);
    assert_eq!(by_id.stdout, by_path.stdout);
    let text = stdout_of(&by_id);
    assert!(
        text.contains(r#""VSBootstrapperURL": "C:\\VS \"Preview\" — ü/vs_Enterprise.exe""#),
        "{text}"
    );
    let payload: Value = serde_json::from_str(&text).expect("the output is JSON");
    assert_eq!(
        payload["Destination"][0]["CustomImageName"],
        "Helix-Server-2022-VS2022-Enterprise_17_12_1"
    );
    let keys: Vec<&String> = payload.as_object().expect("an object").keys().collect();
    assert_eq!(
        keys,
        ["BaseImage", "VMSize", "Artifacts", "Destination"],
        "key order is kept"
    );
}

#[test]
fn render_json_carries_hash_images_and_variables() {
    let repo = Repo::fixture("small");
    let output = repo.run(&["render", "windows/server-2019", "--output", "json"], 0);
    let document = json_of(&output);
    assert_eq!(document["definition"], "windows/server-2019");
    assert_eq!(document["image_names"][0], "Helix-Server-2019_17763_6532");
    assert_eq!(
        document["variables"],
        serde_json::json!({"WIN_2019_PATCH": "17763_6532"})
    );
    assert_eq!(document["payload_hash"].as_str().map(str::len), Some(64));
}

#[test]
fn render_accepts_a_payload_file_outside_the_definitions() {
    let repo = Repo::fixture("small");
    repo.write(
        "scratch/try.json",
        r#"{"Note": "{{literal}}", "Destination": [{"CustomImageName": "Try-{VS_VERSION}"}]}"#,
    );
    let output = repo.run(&["render", "scratch/try.json"], 0);
    let payload: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(payload["Note"], "{literal}");
    assert_eq!(payload["Destination"][0]["CustomImageName"], "Try-17_12_1");
}

#[test]
fn render_of_an_unknown_id_suggests_close_ones() {
    let repo = Repo::fixture("small");
    repo.imagegen()
        .args(["render", "server-2019"])
        .assert()
        .code(1)
        .stderr(
            "error: no definition \"server-2019\": expected definitions/server-2019.json, or a \
             path to a payload file; did you mean windows/server-2019?\n",
        );
}

#[test]
fn render_reports_undefined_variables_with_their_pointer() {
    let repo = Repo::fixture("small");
    repo.write(
        "definitions/vs/server-2022.json",
        &repo
            .read("definitions/vs/server-2022.json")
            .replace("{VS_URL}", "{VS_URI}"),
    );
    repo.imagegen()
        .args(["render", "vs/server-2022"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(
            "error: definitions/vs/server-2022.json at /Artifacts/1/Parameters/VSBootstrapperURL: \
             {VS_URI} names no variable in variables.json\n",
        );
}

// --- affected -------------------------------------------------------------------------------

#[test]
fn affected_lists_the_definitions_using_any_variable() {
    let repo = Repo::fixture("small");
    repo.imagegen()
        .args(["affected", "VS_VERSION", "WIN_2016_PATCH"])
        .assert()
        .code(0)
        .stdout(
            "vs/server-2022       VS_VERSION\n\
             vs/windows-11        VS_VERSION\n\
             windows/server-2016  WIN_2016_PATCH\n",
        )
        .stderr("3 definitions use VS_VERSION or WIN_2016_PATCH\n");
}

#[test]
fn affected_refuses_unknown_variables_with_a_suggestion() {
    let repo = Repo::fixture("small");
    repo.imagegen()
        .args(["affected", "VS_VERSON"])
        .assert()
        .code(1)
        .stderr(
            "error: no variable VS_VERSON in variables.json, and no definition uses it; did you \
             mean VS_VERSION?\n",
        );
    repo.imagegen()
        .args(["affected", "vs_version"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "\"vs_version\" is not a variable name",
        ));
}

// --- Output conventions ---------------------------------------------------------------------

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let repo = Repo::fixture("small");
    let plain = repo
        .imagegen()
        .args(["reconcile", "--dry-run"])
        .assert()
        .get_output()
        .clone();
    assert!(
        !stdout_of(&plain).contains('\u{1b}'),
        "no colour into a pipe"
    );
    let coloured = repo
        .imagegen()
        .args(["reconcile", "--dry-run", "--color", "always"])
        .assert()
        .get_output()
        .clone();
    assert!(
        stdout_of(&coloured).contains("\u{1b}["),
        "colour when forced"
    );
    let no_color = repo
        .imagegen()
        .args(["reconcile", "--dry-run"])
        .env("NO_COLOR", "1")
        .env("CLICOLOR_FORCE", "1")
        .assert()
        .get_output()
        .clone();
    assert!(!stdout_of(&no_color).contains('\u{1b}'), "NO_COLOR wins");
}

#[test]
fn a_usage_error_exits_1_not_2_which_means_pending() {
    let repo = Repo::fixture("small");
    let output = repo.run(&["reconcile", "--dry-rn"], 1);
    assert!(
        stderr_of(&output).contains("unexpected argument '--dry-rn'"),
        "{}",
        stderr_of(&output)
    );
    repo.run(&["--version"], 0);
}

// --- The version ----------------------------------------------------------------------------

#[test]
fn version_names_the_commit_the_binary_was_built_from() {
    let output = Repo::empty().run(&["--version"], 0);
    let stdout = stdout_of(&output);
    let build = stdout
        .strip_prefix(&format!("imagegen {} (", env!("CARGO_PKG_VERSION")))
        .and_then(|rest| rest.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("{stdout:?}"));
    // The build script runs again whenever HEAD moves, so the binary names the commit git
    // names now. Whether it is dirty may lag until git's next operation: not compared.
    let checkout = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    match build_script::describe(checkout) {
        Some(now) => assert!(
            build == now.commit || build == format!("{}, dirty", now.commit),
            "{stdout:?}, HEAD is {}",
            now.commit
        ),
        None => assert_eq!(build, build_script::UNKNOWN_COMMIT),
    }
}

/// A git repository with one commit of `file.txt`, made with the author and signing settings
/// of no one's machine.
fn committed_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("create a temporary folder");
    std::fs::write(dir.path().join("file.txt"), "one\n").expect("write a file");
    for args in [
        &["init", "-q"][..],
        &["add", "file.txt"],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "commit.gpgsign=false",
            "commit",
            "-q",
            "-m",
            "one",
        ],
    ] {
        let status = std::process::Command::new("git")
            .arg("-C")
            .arg(dir.path())
            .args(args)
            .status()
            .expect("git runs");
        assert!(status.success(), "git {args:?}");
    }
    dir
}

#[test]
fn the_build_describes_a_clean_tree_by_its_commit_alone() {
    let repo = committed_repo();
    // An untracked file is no change to what is built.
    std::fs::write(repo.path().join("notes.txt"), "x").expect("write a file");
    let build = build_script::describe(repo.path()).expect("git describes the repository");
    assert_eq!(build.commit.len(), 12, "{}", build.commit);
    assert!(build.commit.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(build.description(), build.commit);
    assert!(
        build.watched.iter().any(|path| path.ends_with("HEAD")),
        "{:?}",
        build.watched
    );
}

#[test]
fn the_build_marks_a_tree_with_uncommitted_changes_dirty() {
    let repo = committed_repo();
    std::fs::write(repo.path().join("file.txt"), "two\n").expect("change a tracked file");
    let build = build_script::describe(repo.path()).expect("git describes the repository");
    assert_eq!(build.description(), format!("{}, dirty", build.commit));
}

#[test]
fn the_build_of_a_tree_outside_git_names_no_commit() {
    let plain = tempfile::tempdir().expect("create a temporary folder");
    assert!(build_script::describe(plain.path()).is_none());
    // A source tarball unpacked inside some other repository is not that repository's commit.
    let repo = committed_repo();
    std::fs::create_dir(repo.path().join("unpacked")).expect("mkdir");
    assert!(build_script::describe(&repo.path().join("unpacked")).is_none());
    assert_eq!(build_script::UNKNOWN_COMMIT, "unknown commit");
}

#[test]
fn every_command_help_shows_an_example() {
    let repo = Repo::empty();
    for command in ["validate", "render", "affected", "reconcile"] {
        repo.imagegen()
            .args([command, "--help"])
            .assert()
            .code(0)
            .stdout(predicates::str::contains("Examples:\n  imagegen "));
    }
    repo.imagegen()
        .arg("--help")
        .assert()
        .code(0)
        .stdout(predicates::str::contains("Exit codes:"));
}

#[test]
fn a_lone_surrogate_escape_in_variables_is_named_with_its_line_and_column() {
    let repo = Repo::fixture("small");
    let variables = repo
        .read("variables.json")
        .replace("\"17_12_1\"", r#""17_\ud800""#);
    repo.write("variables.json", &variables);
    let output = repo.run(&["validate"], 1);
    let stderr = stderr_of(&output);
    assert!(
        stderr.starts_with(
            "error: variables.json:3:21: the value of VS_VERSION holds the escape \\ud800, half \
             of a UTF-16 surrogate pair"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("is a number"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn a_symlink_under_definitions_leading_out_of_the_repository_is_refused() {
    let repo = Repo::fixture("small");
    let outside = Repo::empty();
    outside.write(
        "secret.json",
        &repo.read("definitions/windows/server-2019.json"),
    );
    let target = outside.path().join("secret.json");
    std::os::unix::fs::symlink(&target, repo.path().join("definitions/windows/evil.json"))
        .expect("make a link");
    // A link inside the repository is followed as before.
    std::fs::create_dir(repo.path().join("shared")).expect("mkdir");
    repo.write(
        "shared/inside.json",
        &repo
            .read("definitions/windows/server-2019.json")
            .replace("Helix-Server-2019", "Helix-Server-2019-Inside"),
    );
    std::os::unix::fs::symlink(
        "../../shared/inside.json",
        repo.path().join("definitions/windows/inside.json"),
    )
    .expect("make a link");
    let output = repo.run(&["validate"], 1);
    assert_eq!(
        stderr_of(&output),
        format!(
            "error: definitions/windows/evil.json: a symbolic link to {} ({}), outside the \
             repository: refused, since the pipeline builds only what the repository holds; \
             copy the file in instead\n",
            target.display(),
            target.canonicalize().expect("a real path").display()
        )
    );
    let output = repo.run(&["reconcile", "--dry-run"], 1);
    let stdout = stdout_of(&output);
    assert!(
        stdout.contains("+ windows/inside  never submitted"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Not planned because of the errors reported (1): windows/evil"),
        "{stdout}"
    );
}

#[cfg(unix)]
#[test]
fn a_symlink_loop_under_definitions_is_one_error() {
    let repo = Repo::fixture("small");
    std::os::unix::fs::symlink("..", repo.path().join("definitions/windows/up"))
        .expect("make a link");
    std::os::unix::fs::symlink("self.json", repo.path().join("definitions/vs/self.json"))
        .expect("make a link");
    let output = repo.run(&["validate"], 1);
    let stderr = stderr_of(&output);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(
        stderr.contains(
            "error: definitions/windows/up: a symbolic link to .., a folder that holds the link \
             itself: a loop, so it is not followed; remove the link\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: definitions/vs/self.json: a symbolic link to self.json that cannot be followed ("),
        "{stderr}"
    );
    assert!(
        stdout_of(&output).starts_with("2 errors and 0 warnings in 6 definitions"),
        "{}",
        stdout_of(&output)
    );
}

#[test]
fn a_ledger_payload_holding_a_lone_surrogate_is_a_damaged_ledger_not_a_panic() {
    let repo = Repo::fixture("small");
    repo.write(
        ".imagegen/state.json",
        r#"{"version": 1, "definitions": {"vs/server-2022": {"payload_hash": "00",
            "payload": {"Destination": [{"CustomImageName": "x\ud800"}]},
            "status": "succeeded", "updated_at": "2026-11-23T10:00:00Z"}}}"#,
    );
    let output = repo.run(&["reconcile", "--dry-run"], 1);
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains(
            ".imagegen/state.json is damaged at line 2, column 72: the payload holds JSON that \
             cannot be read"
        ),
        "{stderr}"
    );
}
