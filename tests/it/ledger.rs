//! One ledger file, however it is named: runs given a symbolic link to it, or a path through
//! `..`, take the same lock as runs given its real path, and no run's record is lost.

// The emulator is a default feature: without it, these tests have nothing to run against.
#![cfg(all(unix, feature = "emulator"))]

use std::process::{Child, Stdio};
use std::time::Duration;

use imagegen::state::{FileStore, JobStatus};

use crate::common::{Repo, fast_emulator, process_against, stderr_of};

/// A repository whose ledger lives in `ledgers/state.json`, also named by the link
/// `link.json` and by `other/../ledgers/state.json`.
fn repo_with_a_linked_ledger() -> Repo {
    let repo = Repo::shipped();
    std::fs::create_dir(repo.path().join("ledgers")).unwrap();
    std::fs::create_dir(repo.path().join("other")).unwrap();
    std::os::unix::fs::symlink("ledgers/state.json", repo.path().join("link.json")).unwrap();
    repo
}

const NAMES: [&str; 3] = [
    "ledgers/state.json",
    "link.json",
    "other/../ledgers/state.json",
];

#[test]
fn a_run_through_any_name_of_the_ledger_waits_for_the_lock_another_name_holds() {
    let repo = repo_with_a_linked_ledger();
    let _held = FileStore::new(repo.path().join("ledgers/state.json"))
        .lock(Duration::ZERO, "imagegen reconcile")
        .unwrap();
    for name in NAMES {
        let output = repo.run(&["adopt", "--state", name, "--lock-timeout", "200ms"], 1);
        let stderr = stderr_of(&output);
        assert!(
            stderr.contains("the ledger is locked by another run (imagegen reconcile, process"),
            "{name}: {stderr}"
        );
    }
    assert!(!repo.path().join("ledgers/state.json").exists());
}

#[test]
fn runs_recording_through_a_link_and_the_real_path_at_once_lose_no_entry() {
    let repo = repo_with_a_linked_ledger();
    let emulator = fast_emulator();
    let ids = repo.definition_ids();
    // Each definition is recorded by a run of its own, the runs going through every name of
    // the ledger at once: adopt one definition each, and two reconciles submitting the rest.
    let (adopted, submitted) = ids.split_at(ids.len() / 2);
    let spawn = |args: Vec<String>| -> Child {
        process_against(&repo, &emulator)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut runs: Vec<Child> = adopted
        .iter()
        .zip(NAMES.iter().cycle())
        .map(|(id, name)| {
            spawn(
                ["adopt", "--only", id, "--state", name]
                    .map(String::from)
                    .to_vec(),
            )
        })
        .collect();
    for (index, name) in NAMES.iter().take(2).enumerate() {
        let mut args: Vec<String> = ["reconcile", "--no-pr", "--state", name]
            .map(String::from)
            .to_vec();
        // Each reconcile takes every other definition of its half, so both have work to record.
        for id in submitted.iter().skip(index).step_by(2) {
            args.extend(["--only".to_string(), id.clone()]);
        }
        runs.push(spawn(args));
    }
    for run in runs {
        let output = run.wait_with_output().unwrap();
        assert!(
            matches!(output.status.code(), Some(0 | 2)),
            "{output:?}: {}",
            stderr_of(&output)
        );
    }
    let ledger = repo.ledger_at("ledgers/state.json");
    let recorded: Vec<&String> = ledger.definitions.keys().collect();
    assert_eq!(
        recorded,
        ids.iter().collect::<Vec<_>>(),
        "an entry was lost"
    );
    for id in adopted {
        assert!(ledger.definitions[id].adopted, "{id}");
    }
    for id in submitted {
        let entry = &ledger.definitions[id];
        assert!(
            entry.status.is_pending() || entry.status == JobStatus::Succeeded,
            "{id}: {entry:?}"
        );
        assert!(entry.tracking_id.is_some(), "{id}: {entry:?}");
    }
    assert!(
        std::fs::symlink_metadata(repo.path().join("link.json"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link is still a link"
    );
}
