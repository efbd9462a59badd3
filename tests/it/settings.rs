//! Settings that would make imagegen use the wrong ledger, end to end through the binary: a
//! pipeline macro left unexpanded, a `--state` folder that does not exist, a ledger missing on
//! a CI platform. Each is refused before anything is read or sent, and every report names the
//! ledger it read.

use imagegen::state::JobStatus;

use crate::common::osob::Osob;
use crate::common::{
    Repo, fast_emulator, imagegen_against, posts, run_against, stderr_of, stdout_of,
};

// --- Macros a pipeline left unexpanded --------------------------------------------------------

#[test]
fn an_unexpanded_ledger_setting_is_refused_before_anything_is_submitted() {
    let repo = Repo::fixture("small");
    let emulator = fast_emulator();
    let output = imagegen_against(&repo, &emulator)
        .args(["reconcile", "--no-pr"])
        .env("IMAGEGEN_STATE", "$(imagegen-state-url)")
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert_eq!(
        stderr_of(&output),
        "error: --state (IMAGEGEN_STATE) is $(imagegen-state-url) in the environment: the \
         pipeline variable it names is not defined, so the pipeline passed the macro on as \
         written. Define the variable (in the pipeline or its variable group) or map the right \
         one; nothing was read or sent\n"
    );
    assert!(emulator.requests().is_empty(), "nothing was sent");
    assert_eq!(
        std::fs::read_dir(repo.path()).unwrap().count(),
        2,
        "no ledger was written"
    );
}

/// Arguments, environment, and how stderr starts.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn every_kind_of_macro_in_any_setting_is_refused_naming_flag_and_variable() {
    let repo = Repo::fixture("small");
    let cases: &[Case] = &[
        (
            &["reconcile", "--dry-run", "--state", "$[variables.ledger]"],
            &[],
            "error: --state (IMAGEGEN_STATE) was given as $[variables.ledger] on the command \
             line: the pipeline variable it names is not defined",
        ),
        (
            &[
                "status",
                "job-1",
                "--factory-url",
                "${{ vars.FACTORY_URL }}",
            ],
            &[],
            "error: --factory-url (IMAGE_FACTORY_URL) was given as ${{ vars.FACTORY_URL }} on \
             the command line: the pipeline variable it names is not defined",
        ),
        (
            &["status", "job-1"],
            &[("IMAGE_FACTORY_AUTHORITY", "https://$(login-host)/")],
            "error: --authority (IMAGE_FACTORY_AUTHORITY) is $(login-host) in the environment",
        ),
        (
            &["pr", "--dry-run"],
            &[("IMAGEGEN_OSOB_URL", "$(osob-url)")],
            "error: --osob-url (IMAGEGEN_OSOB_URL) is $(osob-url) in the environment",
        ),
        (
            &["--repo", "$(Build.SourcesDirectory)", "validate"],
            &[],
            "error: --repo (IMAGEGEN_REPO) was given as $(Build.SourcesDirectory) on the command \
             line",
        ),
        (
            &["validate"],
            &[("IMAGE_FACTORY_TENANT_ID", "$(image-factory-tenant-id)")],
            "error: IMAGE_FACTORY_TENANT_ID is $(image-factory-tenant-id) in the environment",
        ),
        (
            &["reconcile", "--dry-run"],
            &[("SYSTEM_ACCESSTOKEN", "$(System.AccessToken)")],
            "error: SYSTEM_ACCESSTOKEN is $(System.AccessToken) in the environment",
        ),
        (
            &["reconcile", "--dry-run"],
            &[("GITHUB_TOKEN", "${{ secrets.GITHUB_TOKEN }}")],
            "error: GITHUB_TOKEN is ${{ secrets.GITHUB_TOKEN }} in the environment",
        ),
    ];
    for (args, env, expected) in cases {
        let mut command = repo.imagegen();
        command.args(*args);
        for (name, value) in *env {
            command.env(name, value);
        }
        let output = command.assert().code(1).get_output().clone();
        let stderr = stderr_of(&output);
        assert!(stderr.starts_with(expected), "{args:?} {env:?}:\n{stderr}");
        assert_eq!(stdout_of(&output), "", "{args:?}");
    }
}

#[test]
fn a_secret_holding_a_macro_is_refused_without_showing_the_secret() {
    let repo = Repo::fixture("small");
    for (name, value) in [
        ("IMAGE_FACTORY_CLIENT_SECRET", "canary-secret$(suffix)"),
        ("IMAGEGEN_STATE_SAS", "sv=2022&sig=canary-signature$(x)"),
        (
            "IMAGEGEN_STATE",
            "https://account.blob.core.windows.net/c/state.json?sig=canary$(sas)",
        ),
    ] {
        let output = repo
            .imagegen()
            .args(["reconcile", "--dry-run"])
            .env(name, value)
            .assert()
            .code(1)
            .get_output()
            .clone();
        let stderr = stderr_of(&output);
        assert!(stderr.contains(name), "{stderr}");
        assert!(
            stderr.contains("holds an unexpanded macro in the environment (its value is secret"),
            "{stderr}"
        );
        assert!(!stderr.contains("canary"), "{name}: {stderr}");
    }
}

#[test]
fn a_macro_in_a_typed_value_is_explained_too() {
    let repo = Repo::fixture("small");
    let output = repo
        .imagegen()
        .args(["status", "job-1"])
        .env("IMAGE_FACTORY_TOKEN_VERSION", "$(token-version)")
        .assert()
        .code(1)
        .get_output()
        .clone();
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("invalid value '$(token-version)'"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "$(token-version) is a pipeline macro left as written: the pipeline variable it \
             names is not defined"
        ),
        "{stderr}"
    );
}

// --- A --state folder that does not exist -----------------------------------------------------

#[test]
fn a_state_path_in_a_missing_folder_is_refused_and_the_folder_is_not_created() {
    let repo = Repo::fixture("small");
    let emulator = fast_emulator();
    for args in [
        &["reconcile", "--no-pr", "--state", "ledgers/state.json"][..],
        &["reconcile", "--dry-run", "--state", "ledgers/state.json"],
        &["adopt", "--state", "ledgers/state.json"],
    ] {
        let output = run_against(&repo, &emulator, args, 1);
        let stderr = stderr_of(&output);
        assert!(
            stderr.ends_with(
                "the folder ledgers of the ledger ledgers/state.json does not exist; imagegen \
                 creates only its default folder .imagegen/, so check --state or IMAGEGEN_STATE \
                 for a typo, or create the folder\n"
            ),
            "{args:?}: {stderr}"
        );
    }
    assert!(!repo.path().join("ledgers").exists());
    assert!(posts(&emulator).is_empty(), "nothing was submitted");
    // In a folder that exists, a new ledger is started; the default folder is imagegen's own.
    std::fs::create_dir(repo.path().join("ledgers")).unwrap();
    run_against(
        &repo,
        &emulator,
        &["adopt", "--state", "ledgers/state.json"],
        0,
    );
    assert!(repo.path().join("ledgers/state.json").is_file());
    run_against(&repo, &emulator, &["adopt"], 0);
    assert!(repo.path().join(".imagegen/state.json").is_file());
}

// --- A ledger missing on a CI platform --------------------------------------------------------

const CI_PLATFORMS: [(&str, &str); 3] = [
    ("CI", "true"),
    ("TF_BUILD", "True"),
    ("GITHUB_ACTIONS", "true"),
];

#[test]
fn on_a_ci_platform_a_missing_ledger_is_refused_unless_the_run_says_init_ledger() {
    let repo = Repo::fixture("small");
    let emulator = fast_emulator();
    for (name, value) in CI_PLATFORMS {
        for args in [
            &["reconcile", "--no-pr"][..],
            &["reconcile", "--dry-run"],
            &["adopt", "--dry-run"],
            &["pr", "--dry-run"],
        ] {
            let output = imagegen_against(&repo, &emulator)
                .args(args)
                .env(name, value)
                .assert()
                .code(1)
                .get_output()
                .clone();
            let stderr = stderr_of(&output);
            assert!(
                stderr.contains(
                    ".imagegen/state.json does not exist. This run is on a CI platform \
                     (TF_BUILD, GITHUB_ACTIONS or CI is true): a missing ledger there means a \
                     wrong setting (--state, IMAGEGEN_STATE)"
                ),
                "{name} {args:?}: {stderr}"
            );
            assert!(stderr.contains("--init-ledger"), "{stderr}");
        }
    }
    assert!(posts(&emulator).is_empty(), "nothing was submitted");
    assert!(!repo.path().join(".imagegen").exists());

    // The first rollout says it once: the ledger starts empty, then is required.
    imagegen_against(&repo, &emulator)
        .args(["adopt", "--only", "windows/*", "--init-ledger"])
        .env("TF_BUILD", "True")
        .assert()
        .code(0);
    let output = imagegen_against(&repo, &emulator)
        .args(["reconcile", "--dry-run"])
        .env("TF_BUILD", "True")
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(
        stdout_of(&output).contains("Plan: 2 to submit, 0 pending, 0 failed, 3 unchanged."),
        "{}",
        stdout_of(&output)
    );
}

#[test]
fn off_a_ci_platform_a_missing_ledger_is_still_an_empty_one() {
    let repo = Repo::fixture("small");
    for (name, value) in [("CI", "false"), ("CI", ""), ("GITHUB_ACTIONS", "")] {
        repo.imagegen()
            .args(["reconcile", "--dry-run"])
            .env(name, value)
            .assert()
            .code(2)
            .stdout(predicates::str::contains("Plan: 5 to submit"));
    }
}

// --- Every report names its ledger ------------------------------------------------------------

#[test]
fn every_text_report_names_the_ledger_it_read() {
    let repo = Repo::fixture("small");
    let emulator = fast_emulator();
    repo.record_ledger(
        &repo.read("variables.json"),
        &[("windows/server-2019", JobStatus::Succeeded)],
    );
    std::fs::create_dir(repo.path().join("ledgers")).unwrap();
    std::fs::rename(
        repo.path().join(".imagegen/state.json"),
        repo.path().join("ledgers/state.json"),
    )
    .unwrap();
    let tracking_id = repo.ledger_at("ledgers/state.json").definitions["windows/server-2019"]
        .tracking_id
        .clone()
        .unwrap();
    for args in [
        &["reconcile", "--dry-run"][..],
        &["reconcile", "--no-pr", "--only", "windows/server-2016"],
        &["adopt", "--dry-run"],
        &["adopt", "--only", "windows/server-2022"],
        &["status", &tracking_id],
        &["submit", "vs/server-2022"],
    ] {
        let output = imagegen_against(&repo, &emulator)
            .args(args)
            .args(["--state", "ledgers/state.json"])
            .output()
            .unwrap();
        let stdout = stdout_of(&output);
        assert!(
            stdout.contains("\nLedger: ledgers/state.json\n"),
            "{args:?}:\n{stdout}\n{}",
            stderr_of(&output)
        );
    }
}

#[test]
fn the_pr_report_names_the_ledger_it_read() {
    let repo = Repo::shipped();
    repo.map_to_local_osob();
    let osob = Osob::new();
    let output = repo
        .imagegen()
        .args(["pr", "--dry-run"])
        .env("IMAGEGEN_OSOB_URL", osob.url())
        .assert()
        .code(0)
        .get_output()
        .clone();
    let stdout = stdout_of(&output);
    assert!(
        stdout.starts_with("nothing to do: no image is built"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("\nLedger: .imagegen/state.json\n"),
        "{stdout}"
    );
}
