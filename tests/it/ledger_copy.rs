//! `imagegen ledger export` and `imagegen ledger import` through the binary, for a ledger file
//! and a blob in Azurite: a copy exported and imported back leaves the next plan as it was; an
//! import that would forget a job in flight or a newer build is refused unless forced; a damaged
//! copy, or one of another format version, is refused with its line and column; a damaged
//! ledger file is set aside, kept, and restored; the JSON output is one document.

use imagegen::state::{JobStatus, Ledger};

use crate::common::azurite::Azurite;
use crate::common::{Repo, json_of, stderr_of, stdout_of};

const STATE: &str = ".imagegen/state.json";
const BUILT: &str = "vs2022/server-2022-enterprise";
const RUNNING: &str = "vs2022/server-2025-enterprise";
const FAILED: &str = "vs2022/server-2022-buildtools";

/// A repository whose ledger holds a built, a running and a failed job.
fn repo_with_a_ledger() -> Repo {
    let repo = Repo::shipped();
    repo.record_ledger(
        &repo.read("variables.json"),
        &[
            (BUILT, JobStatus::Succeeded),
            (RUNNING, JobStatus::Running),
            (FAILED, JobStatus::Failed),
        ],
    );
    repo
}

/// What `reconcile --dry-run` plans, in JSON, and its exit code.
fn plan(repo: &Repo, env: &[(&str, &str)]) -> (Option<i32>, serde_json::Value) {
    let output = repo
        .imagegen()
        .args(["reconcile", "--dry-run", "--output", "json"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (output.status.code(), json_of(&output))
}

#[test]
fn a_file_ledger_exported_and_imported_back_plans_the_same() {
    let repo = repo_with_a_ledger();
    let before = plan(&repo, &[]);
    let ledger = repo.ledger();
    let exported = repo.run(&["ledger", "export", "copy.json"], 0);
    assert!(
        stdout_of(&exported).starts_with(
            "Exported to copy.json: 3 definitions, 0 files submitted by hand, 1 pending"
        ),
        "{}",
        stdout_of(&exported)
    );
    let copy = repo.read("copy.json");
    assert!(copy.starts_with("{\n  \"version\": 2,\n"), "{copy}");
    let to_stdout = repo.run(&["ledger", "export"], 0);
    assert_eq!(stdout_of(&to_stdout), copy, "stdout holds the same copy");
    let as_json = repo.run(&["ledger", "export", "--output", "json"], 0);
    assert_eq!(stdout_of(&as_json), copy, "the copy is one JSON document");

    std::fs::remove_file(repo.path().join(STATE)).unwrap();
    assert_ne!(
        plan(&repo, &[]),
        before,
        "a lost ledger plans everything again"
    );
    let dry = repo.run(&["ledger", "import", "copy.json", "--dry-run"], 2);
    assert!(stdout_of(&dry).contains("nothing written (dry run)"));
    assert!(
        !repo.path().join(STATE).exists(),
        "a dry run writes nothing"
    );
    let imported = repo.run(&["ledger", "import", "copy.json"], 0);
    let text = stdout_of(&imported);
    assert!(
        text.contains(&format!("added   {BUILT}  -  "))
            && text.contains("3 changed, 0 unchanged; imported"),
        "{text}"
    );
    assert_eq!(repo.ledger(), ledger);
    assert_eq!(plan(&repo, &[]), before);
    // The same copy again changes nothing, and writes nothing.
    let again = repo.run(&["ledger", "import", "copy.json"], 0);
    assert!(stdout_of(&again).contains("the ledger already holds the copy: nothing written"));
}

#[test]
fn an_import_that_would_forget_a_job_in_flight_or_a_newer_build_is_refused_unless_forced() {
    let repo = repo_with_a_ledger();
    repo.run(&["ledger", "export", "copy.json"], 0);
    // Since the copy: a job in flight for a definition the copy lacks, and a newer build.
    let mut ledger: Ledger = repo.ledger();
    let mut in_flight = ledger.definitions[RUNNING].clone();
    in_flight.tracking_id = Some("job-submitted-after-the-copy".into());
    ledger
        .definitions
        .insert("vs2022/windows-11-23h2-enterprise".into(), in_flight);
    let rebuilt = ledger.definitions.get_mut(BUILT).unwrap();
    rebuilt.updated_at = "2026-11-20T08:00:00Z".parse().unwrap();
    rebuilt.completed_at = Some(rebuilt.updated_at);
    repo.save_ledger(&ledger);
    let held = repo.read(STATE);

    for args in [
        &["ledger", "import", "copy.json"][..],
        &["ledger", "import", "copy.json", "--dry-run"],
    ] {
        let refused = repo.run(args, 1);
        let stderr = stderr_of(&refused);
        assert!(
            stderr.contains(
                "error: vs2022/windows-11-23h2-enterprise: the ledger tracks job \
                 job-submitted-after-the-copy (running), which the copy does not hold"
            ),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "error: {BUILT}: the ledger's record (succeeded, 2026-11-20 08:00 UTC) is newer \
                 than the copy's (2026-11-16 11:30 UTC)"
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "would forget what the ledger holds of {BUILT}, \
                 vs2022/windows-11-23h2-enterprise;"
            )),
            "{stderr}"
        );
        assert_eq!(repo.read(STATE), held, "nothing was written");
    }
    let json = repo.run(&["ledger", "import", "copy.json", "--output", "json"], 1);
    let document = json_of(&json);
    assert_eq!(document["imported"], false);
    assert_eq!(document["refusals"].as_array().unwrap().len(), 2);
    assert_eq!(document["exit_code"], 1);

    repo.run(&["ledger", "import", "copy.json", "--force"], 0);
    assert_eq!(repo.read(STATE), repo.read("copy.json"));
}

#[test]
fn a_damaged_copy_or_one_of_another_version_is_refused_with_its_line_and_column() {
    let repo = repo_with_a_ledger();
    let held = repo.read(STATE);
    repo.write(
        "damaged.json",
        "{\n  \"version\": 1,\n  \"definitions\": {\n    \"a\": {},\n  }\n}\n",
    );
    let damaged = stderr_of(&repo.run(&["ledger", "import", "damaged.json"], 1));
    assert!(
        damaged.contains(
            "damaged.json:5:3: the copy is damaged: trailing comma; the ledger was not changed"
        ),
        "{damaged}"
    );
    let newer = held.replacen("\"version\": 2", "\"version\": 3", 1);
    repo.write("newer.json", &newer);
    let refused = stderr_of(&repo.run(&["ledger", "import", "newer.json", "--force"], 1));
    assert!(
        refused.contains(
            "newer.json:2:3: the copy has format version 3, but this imagegen reads versions up \
             to 2"
        ),
        "{refused}"
    );
    let json = repo.run(&["ledger", "import", "newer.json", "--output", "json"], 1);
    assert!(json_of(&json).is_object(), "one JSON document");
    assert_eq!(repo.read(STATE), held, "nothing was written");
}

#[test]
fn a_damaged_ledger_file_is_kept_aside_and_restored_from_the_copy() {
    let repo = repo_with_a_ledger();
    let ledger = repo.ledger();
    repo.run(&["ledger", "export", "copy.json"], 0);
    let text = repo.read(STATE);
    let truncated = &text[..text.len() / 2];
    repo.write(STATE, truncated);
    let plan = repo.run(&["reconcile", "--dry-run"], 1);
    assert!(stderr_of(&plan).contains("is damaged at line"));

    let restored = stdout_of(&repo.run(&["ledger", "import", "copy.json"], 0));
    assert!(
        restored.starts_with("The ledger is damaged ("),
        "{restored}"
    );
    assert_eq!(repo.ledger(), ledger);
    let kept: Vec<_> = std::fs::read_dir(repo.path().join(".imagegen"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("state.json.damaged-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(repo.read(&format!(".imagegen/{}", kept[0])), truncated);
}

#[tokio::test]
async fn a_blob_ledger_is_exported_and_imported_alike_under_its_etag() {
    let azurite = Azurite::start();
    let container = azurite.container("ledgers").await;
    let sas = azurite.sas(&container);
    let original = azurite.blob_url_without_sas(&container, "state.json");
    let restored = azurite.blob_url_without_sas(&container, "restored.json");
    let repo = Repo::shipped();
    let run = |url: &str, args: &[&str], code: i32| {
        let output = repo
            .imagegen()
            .args(args)
            .env("IMAGEGEN_STATE", url)
            .env("IMAGEGEN_STATE_SAS", &sas)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(code), "{args:?}: {output:?}");
        for text in [stdout_of(&output), stderr_of(&output)] {
            assert!(!text.contains("sig="), "the SAS is never shown: {text}");
        }
        output
    };
    run(&original, &["adopt", "--only", "windows-server/*"], 0);
    let environment = |url: &str| {
        [
            ("IMAGEGEN_STATE", url.to_string()),
            ("IMAGEGEN_STATE_SAS", sas.clone()),
        ]
    };
    let planned = |url: &str| {
        let env = environment(url);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        plan(&repo, &env)
    };
    let before = planned(&original);

    let exported = run(&original, &["ledger", "export", "copy.json"], 0);
    assert!(stdout_of(&exported).ends_with(&format!("\nLedger: {original}\n")));
    run(&restored, &["ledger", "import", "copy.json"], 0);
    let ledger_in = |bytes: Vec<u8>| serde_json::from_slice::<Ledger>(&bytes).unwrap();
    assert_eq!(
        ledger_in(azurite.blob(&container, "restored.json").await.unwrap().0),
        ledger_in(azurite.blob(&container, "state.json").await.unwrap().0),
        "the restored blob holds the ledger"
    );
    let mut after = planned(&restored);
    after.1["state"] = before.1["state"].clone();
    assert_eq!(after, before, "the next plan is unchanged");

    // A copy without one of the adopted entries would forget it: refused, then forced.
    let mut copy: serde_json::Value = serde_json::from_str(&repo.read("copy.json")).unwrap();
    copy["definitions"]
        .as_object_mut()
        .unwrap()
        .remove("windows-server/server-2016-datacenter");
    repo.write("older.json", &serde_json::to_string_pretty(&copy).unwrap());
    let refused = run(&restored, &["ledger", "import", "older.json"], 1);
    assert!(
        stderr_of(&refused)
            .contains("error: windows-server/server-2016-datacenter: the ledger's record"),
        "{}",
        stderr_of(&refused)
    );
    let forced = run(
        &restored,
        &[
            "ledger",
            "import",
            "older.json",
            "--force",
            "--output",
            "json",
        ],
        0,
    );
    let document = json_of(&forced);
    assert_eq!(document["imported"], true);
    assert_eq!(document["changes"][0]["change"], "removed");
    let (bytes, _) = azurite.blob(&container, "restored.json").await.unwrap();
    let ledger: Ledger = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(ledger.definitions.len(), 4);

    // A damaged blob is kept beside it and restored from the copy in one command.
    let damaged = &bytes[..bytes.len() / 2];
    azurite.put_blob(&container, "restored.json", damaged).await;
    run(&restored, &["reconcile", "--dry-run"], 1);
    let repaired = stdout_of(&run(&restored, &["ledger", "import", "copy.json"], 0));
    assert!(repaired.contains("kept as "), "{repaired}");
    assert_eq!(
        ledger_in(azurite.blob(&container, "restored.json").await.unwrap().0),
        ledger_in(azurite.blob(&container, "state.json").await.unwrap().0),
        "the damaged blob is replaced by the copy"
    );
    let kept = repaired
        .split("kept as ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap();
    let kept_name = kept.rsplit('/').next().unwrap();
    assert!(kept_name.starts_with("restored.json.damaged-"), "{kept}");
    assert_eq!(
        azurite.blob(&container, kept_name).await.unwrap().0,
        damaged,
        "the damaged ledger is kept as it was"
    );
}
