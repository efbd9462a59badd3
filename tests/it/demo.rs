//! `imagegen demo` end to end: the binary, from an empty folder, tells the whole weekly update
//! against its in-process emulator and bare OSOB repository, and its output shows each part of
//! the story. A build without the emulator keeps the command, which says why it has no demo.

use crate::common::{Repo, stderr_of, stdout_of};

/// The text between a step's heading and the next one.
#[cfg(feature = "emulator")]
fn step<'a>(stdout: &'a str, number: &str) -> &'a str {
    let heading = format!("── {number}. ");
    let start = stdout
        .find(&heading)
        .unwrap_or_else(|| panic!("no step {number} in:\n{stdout}"));
    let rest = &stdout[start..];
    let end = rest[heading.len()..]
        .find("\n── ")
        .map_or(rest.len(), |end| end + heading.len());
    &rest[..end]
}

#[cfg(feature = "emulator")]
#[test]
fn the_demo_shows_one_failure_the_pull_request_and_a_second_run_that_submits_nothing() {
    let folder = Repo::empty();
    let output = folder.run(&["demo"], 0);
    let stdout = stdout_of(&output);
    let stderr = stderr_of(&output);

    let adopt = step(&stdout, "1");
    assert!(adopt.contains("$ imagegen adopt"), "{adopt}");
    assert_eq!(
        adopt
            .lines()
            .filter(|line| line.contains("  adopted  "))
            .count(),
        16,
        "{adopt}"
    );
    assert!(
        stderr.contains("16 definitions recorded as built"),
        "{stderr}"
    );

    let set = step(&stdout, "2");
    assert!(
        set.contains(" imagegen vars update --only VS_2022_VERSION"),
        "{set}"
    );
    assert!(
        set.contains("VS_2022_VERSION: 17_12_0 -> 17_12_1 (17.12.1, from the Visual Studio channel manifest https://aka.ms/vs/17/release/channel)"),
        "{set}"
    );
    assert!(set.contains("17_12_0 -> 17_12_1"), "{set}");

    let dry_run = step(&stdout, "3");
    assert!(
        dry_run.contains("Plan: 5 to submit, 0 pending, 0 failed, 11 unchanged."),
        "{dry_run}"
    );

    let run = step(&stdout, "4");
    assert!(
        run.contains("5 submitted by this run; 4 succeeded, 1 failed"),
        "{run}"
    );
    let failed_row = run
        .lines()
        .find(|line| line.starts_with("vs2022/windows-11-arm64-enterprise"))
        .expect("the failed job has a row");
    assert!(failed_row.contains("failed"), "{failed_row}");
    assert!(
        run.contains("the Visual Studio installer exited with code 1603"),
        "the service's message is shown under the failed job:\n{run}"
    );
    assert!(run.contains("pushed imagegen/helix-images"), "{run}");
    assert!(
        run.contains("The pull request imagegen would open or update (local"),
        "{run}"
    );
    // Last week's values match OSOB: only the images this week's change built go in.
    assert!(
        run.contains("# Update Helix images: VS_2022_VERSION 17_12_1 (4 images)"),
        "{run}"
    );
    assert!(run.contains("### Not included (1)"), "{run}");
    assert!(
        run.contains("+    Image: Helix-Windows-11-23H2-VS2022-Enterprise_17_12_1"),
        "the OSOB diff is printed:\n{run}"
    );
    // Whether a poll saw it running first depends on the machine's speed.
    assert!(
        stderr
            .lines()
            .any(|line| line.contains("vs2022/windows-11-arm64-enterprise: ")
                && line.contains(" -> failed")),
        "progress shows the failure as it happens:\n{stderr}"
    );

    let again = step(&stdout, "5");
    assert!(
        again.contains("0 submitted by this run; 1 failed; 15 unchanged"),
        "{again}"
    );
    assert!(again.contains("already holds this change"), "{again}");
    assert!(stdout.contains("── Done in"), "{stdout}");
    assert!(
        stderr.contains("imagegen reconcile --retry-failed"),
        "the failure says how to retry it:\n{stderr}"
    );
}

#[cfg(feature = "emulator")]
#[test]
fn the_demo_changes_nothing_outside_its_folder() {
    let folder = Repo::empty();
    folder.run(&["demo", "--quiet"], 0);
    let left: Vec<_> = std::fs::read_dir(folder.path())
        .expect("list the folder")
        .collect();
    assert!(left.is_empty(), "the demo wrote into its working folder");
}

#[cfg(feature = "emulator")]
#[test]
fn the_demo_keeps_its_folder_when_asked() {
    let folder = Repo::empty();
    let output = folder.run(&["demo", "--keep"], 0);
    let stdout = stdout_of(&output);
    let line = stdout
        .lines()
        .find(|line| line.starts_with("The demo's files are kept in "))
        .expect("the demo says where its files are");
    let kept = line["The demo's files are kept in ".len()..]
        .split(':')
        .next()
        .expect("a path");
    let kept = std::path::Path::new(kept);
    let variables = std::fs::read_to_string(kept.join("repo/variables.json")).expect("kept");
    assert!(variables.contains("\"VS_2022_VERSION\": \"17_12_1\""));
    assert!(kept.join("repo/.imagegen/state.json").is_file());
    assert!(kept.join("osob.git").is_dir());
    std::fs::remove_dir_all(kept).expect("clean up the kept folder");
}

#[cfg(feature = "emulator")]
#[test]
fn the_demo_has_no_json_form() {
    let folder = Repo::empty();
    let output = folder.run(&["demo", "--output", "json"], 1);
    let stderr = stderr_of(&output);
    assert!(stderr.contains("has no JSON form"), "{stderr}");
    let document: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the error is one JSON document");
    assert!(document["error"]["message"].is_string());
}

/// The production pipeline's build leaves the emulator out: `imagegen demo` is still there, and
/// says why it shows nothing and what to run instead.
#[cfg(not(feature = "emulator"))]
#[test]
fn without_the_emulator_the_demo_says_where_to_run_it() {
    let folder = Repo::empty();
    let output = folder.run(&["demo"], 1);
    assert_eq!(stdout_of(&output), "");
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("built without the Image Factory emulator")
            && stderr.contains("cargo run --locked -- demo"),
        "{stderr}"
    );
}
