//! The OSOB update over real git: a bare OSOB repository built from tests/fixtures/osob, the
//! binary's `imagegen pr` (local provider) editing it, and the branch rules checked on the
//! pushed result.

use imagegen::state::JobStatus;

use crate::common::osob::{BOT_EMAIL, BRANCH, Osob};
use crate::common::{Repo, json_of, stderr_of, stdout_of};
use crate::common_pr;

/// The shipped repository with the shipped mapping (its provider made `local`) and a ledger
/// saying every definition was built as it is now.
fn built_repo() -> Repo {
    let repo = local_repo();
    record_all(&repo, JobStatus::Succeeded);
    repo
}

/// The shipped repository with the shipped mapping, its provider made `local`; no ledger.
fn local_repo() -> Repo {
    let repo = Repo::shipped();
    repo.map_to_local_osob();
    repo
}

fn record_all(repo: &Repo, status: JobStatus) {
    let ids = repo.definition_ids();
    let statuses: Vec<(&str, JobStatus)> = ids.iter().map(|id| (id.as_str(), status)).collect();
    let variables = repo.read("variables.json");
    repo.record_ledger(&variables, &statuses);
}

fn pr(repo: &Repo, osob: &Osob, args: &[&str], code: i32) -> std::process::Output {
    repo.imagegen()
        .env("IMAGEGEN_OSOB_URL", osob.url())
        .arg("pr")
        .args(args)
        .assert()
        .code(code)
        .get_output()
        .clone()
}

/// Lines that differ between two texts, as (old, new) pairs; the texts must have as many lines.
fn changed_lines(old: &str, new: &str) -> Vec<(String, String)> {
    let old: Vec<&str> = old.split_inclusive('\n').collect();
    let new: Vec<&str> = new.split_inclusive('\n').collect();
    assert_eq!(old.len(), new.len(), "an edit never adds or removes lines");
    old.iter()
        .zip(&new)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn pr_changes_exactly_the_image_names_and_review_dates() {
    let repo = built_repo();
    let osob = Osob::new();
    let base = osob.tip("main").unwrap();
    let output = pr(&repo, &osob, &[], 0);
    let stdout = stdout_of(&output);
    let tip = osob.tip(BRANCH).expect("the branch was pushed");
    let osob_repo = osob.repo();
    let commit = osob_repo.find_commit(tip).unwrap();
    assert_eq!(
        commit.parent_id(0).unwrap(),
        base,
        "one commit on the tip of main"
    );
    assert_eq!(commit.author().email(), Ok(BOT_EMAIL));
    let message = commit.message().unwrap();
    assert!(
        message.starts_with(
            "Update Helix images: VS_2019_PREVIEW_VERSION 16_11_0_4, VS_2022_VERSION 17_12_1, "
        ),
        "{message}"
    );
    assert!(message.contains(
        "vs2022/server-2022-enterprise: Helix-Server-DataCenter-2022-VS2022-Enterprise_17_12_0 -> Helix-Server-DataCenter-2022-VS2022-Enterprise_17_12_1"
    ));

    let name_or_date =
        regex::Regex::new(r"^(\s*(- )?(Image|UpdateRequiredDate|\x22name\x22)\s*:)").unwrap();
    for file in [
        "definitions/queues/windows-server.yml",
        "definitions/queues/vs2019-preview.yml",
        "definitions/queues/windows-client.yml",
        "definitions/images.json",
    ] {
        let before = osob.read(base, file);
        let after = osob.read(tip, file);
        let changes = changed_lines(&before, &after);
        assert!(!changes.is_empty(), "{file} changed");
        for (old, new) in &changes {
            assert!(
                name_or_date.is_match(old),
                "{file}: only names and dates change, not {old:?}"
            );
            assert_eq!(
                old.ends_with("\r\n"),
                new.ends_with("\r\n"),
                "line endings kept"
            );
        }
        assert_eq!(before.ends_with('\n'), after.ends_with('\n'));
    }
    let client = osob.read(tip, "definitions/queues/windows-client.yml");
    assert!(
        client
            .split_inclusive('\n')
            .all(|line| line.ends_with("\r\n")),
        "CRLF kept in every line"
    );
    let server = osob.read(tip, "definitions/queues/windows-server.yml");
    assert_eq!(
        server
            .matches("Image: \"Helix-Server-DataCenter-2022_20348.2849.241106\"")
            .count(),
        2,
        "both queues sharing the image, quotes kept"
    );
    assert!(server.contains("Image: 'Helix-Server-DataCenter-Core-2022_20348.2849.241106'"));
    assert!(
        server.contains("      UpdateRequiredDate: never   # not the queue's date: left alone")
    );
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    let due = today.checked_add(jiff::Span::new().days(90)).unwrap();
    assert!(server.contains(&format!("UpdateRequiredDate: {}", due.strftime("%Y-%m-%d"))));
    assert!(
        server.contains(&format!("UpdateRequiredDate: {}", due.strftime("%m/%d/%Y"))),
        "format kept"
    );
    let preview = osob.read(tip, "definitions/queues/vs2019-preview.yml");
    assert!(
        preview.contains("# History: moved from Helix-Server-DataCenter-19H1-ES-ES-VS2019-Preview-Enterprise_16_11_0_2 on"),
        "comments stay as written"
    );
    assert!(
        preview.contains("EstimatedRemovalDate: 2027-06-30"),
        "only the listed date keys move"
    );

    assert!(stdout.contains("pushed imagegen/helix-images"), "{stdout}");
    assert!(
        stdout.contains("The pull request imagegen would open or update (local"),
        "{stdout}"
    );
    assert!(stdout.contains("| vs2022/server-2022-enterprise | `Helix-Server-DataCenter-2022-VS2022-Enterprise_17_12_0` | `Helix-Server-DataCenter-2022-VS2022-Enterprise_17_12_1` | VS_2022_VERSION 17_12_0 → 17_12_1 | job-vs2022-server-2022-enterprise |"), "{stdout}");

    // Run again: the branch already holds this change; nothing is pushed.
    let again = stdout_of(&pr(&repo, &osob, &[], 0));
    assert!(again.contains("already holds this change"), "{again}");
    assert_eq!(osob.tip(BRANCH), Some(tip));
}

#[test]
fn the_dry_run_shows_the_diff_and_pushes_nothing() {
    let repo = built_repo();
    let osob = Osob::new();
    let output = pr(&repo, &osob, &["--dry-run"], 2);
    let stdout = stdout_of(&output);
    assert!(
        stdout.contains("--- a/definitions/queues/windows-client.yml"),
        "{stdout}"
    );
    assert!(
        stdout.contains("-    Image: Helix-Windows-11-23H2-VS2022-Enterprise_17_12_0\r\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("+    Image: Helix-Windows-11-23H2-VS2022-Enterprise_17_12_1\r\n"),
        "{stdout}"
    );
    assert!(stdout.contains("# Update Helix images: "), "{stdout}");
    assert!(stderr_of(&output).contains("dry run: nothing was pushed"));
    assert_eq!(osob.tip(BRANCH), None);
    let document = json_of(&pr(&repo, &osob, &["--dry-run", "--output", "json"], 2));
    assert_eq!(document["files"].as_array().unwrap().len(), 4);
    assert!(document["title"].as_str().unwrap().ends_with("(16 images)"));
}

#[test]
fn reconcile_dry_run_previews_the_osob_change_of_the_planned_builds() {
    let repo = built_repo();
    std::fs::remove_file(repo.path().join(".imagegen/state.json")).unwrap();
    let osob = Osob::new();
    let output = repo
        .imagegen()
        .env("IMAGEGEN_OSOB_URL", osob.url())
        .args(["reconcile", "--dry-run"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    let stdout = stdout_of(&output);
    assert!(stdout.contains("Plan: 16 to submit"), "{stdout}");
    assert!(
        stdout.contains("+    Image: Helix-Windows-11-23H2-VS2022-Enterprise_17_12_1\r\n"),
        "{stdout}"
    );
    assert!(stdout.contains("after this run's build"), "{stdout}");
    assert_eq!(osob.tip(BRANCH), None, "a dry run never pushes");
}

/// The flag is the preview's source as much as the environment is; given both, the flag wins.
#[test]
fn reconcile_dry_run_previews_the_osob_repository_the_flag_names() {
    let repo = built_repo();
    std::fs::remove_file(repo.path().join(".imagegen/state.json")).unwrap();
    let osob = Osob::new();
    let output = repo
        .imagegen()
        .env(
            "IMAGEGEN_OSOB_URL",
            repo.path().join("no-such-osob").display().to_string(),
        )
        .args(["reconcile", "--dry-run", "--osob-url", &osob.url()])
        .assert()
        .code(2)
        .get_output()
        .clone();
    let stdout = stdout_of(&output);
    assert!(
        !stderr_of(&output).contains("OSOB preview skipped"),
        "{}",
        stderr_of(&output)
    );
    assert!(
        stdout.contains(&format!("OSOB {} (main)", osob.url())),
        "{stdout}"
    );
    assert!(
        stdout.contains("+    Image: Helix-Windows-11-23H2-VS2022-Enterprise_17_12_1\r\n"),
        "{stdout}"
    );
}

#[test]
fn only_built_images_go_in_and_the_rest_are_listed_apart() {
    let repo = built_repo();
    let variables = repo.read("variables.json");
    let mut statuses: Vec<(String, JobStatus)> = repo
        .definition_ids()
        .into_iter()
        .map(|id| (id, JobStatus::Succeeded))
        .collect();
    statuses[0].1 = JobStatus::Failed;
    statuses[1].1 = JobStatus::Running;
    let borrowed: Vec<(&str, JobStatus)> = statuses
        .iter()
        .map(|(id, status)| (id.as_str(), *status))
        .collect();
    repo.record_ledger(&variables, &borrowed);
    let osob = Osob::new();
    let stdout = stdout_of(&pr(&repo, &osob, &[], 0));
    assert!(stdout.contains("### Not included (2)"), "{stdout}");
    assert!(
        stdout.contains(&format!("| {} | failed | job job-", statuses[0].0)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("| {} | running | job job-", statuses[1].0)),
        "{stdout}"
    );
    let tip = osob.tip(BRANCH).unwrap();
    let preview = osob.read(tip, "definitions/queues/vs2019-preview.yml");
    assert!(
        preview.contains("Helix-Server-DataCenter-19H1-ES-ES-VS2019-Preview-Enterprise_16_11_0_3"),
        "the failed definition's image stays as it was"
    );
}

#[test]
fn a_merged_pull_request_leaves_nothing_to_do() {
    let repo = built_repo();
    let osob = Osob::new();
    pr(&repo, &osob, &[], 0);
    // Merge: main now points where the branch does.
    let tip = osob.tip(BRANCH).unwrap();
    osob.repo()
        .reference("refs/heads/main", tip, true, "merge")
        .unwrap();
    let stdout = stdout_of(&pr(&repo, &osob, &[], 0));
    assert!(
        stdout.starts_with("nothing to do: OSOB's main already names every image built"),
        "{stdout}"
    );
}

#[test]
fn a_bot_only_branch_is_rebuilt_on_the_new_base() {
    let repo = built_repo();
    let osob = Osob::new();
    pr(&repo, &osob, &[], 0);
    let first = osob.tip(BRANCH).unwrap();
    // Someone changes main elsewhere; the bot's branch is now behind.
    let osob_repo = osob.repo();
    let new_base = osob.commit_files(
        &osob_repo,
        "main",
        None,
        &[("docs/notes.md".to_string(), b"unrelated\n".to_vec())],
        "Unrelated change",
        "maintainer@osob.invalid",
    );
    let stdout = stdout_of(&pr(&repo, &osob, &[], 0));
    let second = osob.tip(BRANCH).unwrap();
    assert_ne!(first, second);
    assert_eq!(
        osob_repo.find_commit(second).unwrap().parent_id(0).unwrap(),
        new_base
    );
    assert!(
        stdout.contains(&format!("replacing {}", &first.to_string()[..12])),
        "{stdout}"
    );
}

#[test]
fn someone_elses_commit_on_the_branch_is_left_alone() {
    let repo = built_repo();
    let osob = Osob::new();
    pr(&repo, &osob, &[], 0);
    let osob_repo = osob.repo();
    let human = osob.commit_files(
        &osob_repo,
        BRANCH,
        None,
        &[(
            "definitions/queues/extra.yml".to_string(),
            b"queues: []\n".to_vec(),
        )],
        "Add a queue by hand",
        "reviewer@osob.invalid",
    );
    let output = pr(&repo, &osob, &[], 1);
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("holds commits that are not imagegen's, so it was left untouched"),
        "{stderr}"
    );
    assert!(
        stderr.contains("reviewer@osob.invalid") && stderr.contains("Add a queue by hand"),
        "{stderr}"
    );
    assert!(stderr.contains("--take-over-branch"));
    assert_eq!(osob.tip(BRANCH), Some(human));
    pr(&repo, &osob, &["--take-over-branch"], 0);
    let taken = osob.tip(BRANCH).unwrap();
    assert_ne!(taken, human);
    assert_eq!(
        osob_repo.find_commit(taken).unwrap().author().email(),
        Ok(BOT_EMAIL)
    );
}

#[test]
fn a_mapped_file_without_the_image_is_an_error_and_nothing_is_pushed() {
    let repo = built_repo();
    let mapping = repo.read("osob-mapping/osob.json").replace(
        "\"vs2022/server-2022-enterprise\": [\n      \"definitions/images.json\"\n    ]",
        "\"vs2022/server-2022-enterprise\": [\n      \"definitions/images.json\",\n      \"definitions/queues/windows-server.yml\"\n    ]",
    );
    assert!(mapping.contains("windows-server.yml\"\n    ]"));
    repo.write("osob-mapping/osob.json", &mapping);
    let osob = Osob::new();
    let output = pr(&repo, &osob, &[], 1);
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("error: definitions/queues/windows-server.yml: no image of vs2022/server-2022-enterprise is named here"),
        "{stderr}"
    );
    assert_eq!(osob.tip(BRANCH), None);
}

#[test]
fn a_push_against_a_moved_branch_loses_its_lease() {
    let osob = Osob::new();
    let cache = tempfile::tempdir().unwrap();
    let workspace =
        imagegen::osob::workspace::Workspace::open(cache.path(), &osob.url(), None).unwrap();
    workspace.fetch(&["main", BRANCH]).unwrap();
    let base = workspace.required_tip("main").unwrap();
    let author = imagegen::osob::mapping::CommitAuthor::default();
    let commit = workspace
        .commit(base, &[("a.txt".into(), b"a\n".to_vec())], "bot", &author)
        .unwrap();
    // Another run pushes the branch after this one fetched.
    let osob_repo = osob.repo();
    let theirs = osob.commit_files(
        &osob_repo,
        BRANCH,
        Some(base),
        &[("b.txt".into(), b"b\n".to_vec())],
        "other run",
        BOT_EMAIL,
    );
    let error = workspace.push(BRANCH, commit, None).unwrap_err();
    assert!(error.is_race(), "{error}");
    assert!(
        error.to_string().contains("moved while this run worked"),
        "{error}"
    );
    assert_eq!(osob.tip(BRANCH), Some(theirs), "nothing was overwritten");
    // After fetching again, the lease names the right commit and the push goes through.
    workspace.fetch(&["main", BRANCH]).unwrap();
    workspace
        .push(BRANCH, commit, workspace.tip(BRANCH))
        .unwrap();
    assert_eq!(osob.tip(BRANCH), Some(commit));
}

#[test]
fn validate_checks_the_mapping() {
    let repo = built_repo();
    repo.write(
        "osob-mapping/osob.json",
        &repo.read("osob-mapping/osob.json").replace(
            "vs2022/server-2022-enterprise",
            "vs2022/server-2022-enterprize",
        ),
    );
    let output = repo.run(&["validate"], 1);
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("definitions names vs2022/server-2022-enterprize, but there is no definitions/vs2022/server-2022-enterprize.json; did you mean vs2022/server-2022-enterprise?"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "warning: osob-mapping/osob.json: vs2022/server-2022-enterprise is not in the mapping"
        ),
        "{stderr}"
    );
}

#[test]
fn a_push_that_loses_a_race_is_redone_from_a_fresh_fetch() {
    let repo = built_repo();
    let osob = Osob::new();
    let catalog = imagegen::catalog::Catalog::load(repo.path());
    let ledger = imagegen::state::FileStore::new(repo.path().join(".imagegen/state.json"))
        .read()
        .unwrap();
    let (mapping, problems) = imagegen::osob::mapping::load(repo.path(), &repo.definition_ids());
    assert!(problems.is_empty(), "{problems:?}");
    let mapping = mapping.unwrap();
    let (targets, not_included, errors) = imagegen::osob::publish::targets(
        &catalog,
        &ledger,
        &mapping,
        imagegen::osob::publish::Assume::Built,
    );
    assert!(errors.is_empty());
    let cache = tempfile::tempdir().unwrap();
    let workspace =
        imagegen::osob::workspace::Workspace::open(cache.path(), &osob.url(), None).unwrap();
    let osob_repo = osob.repo();
    let base = osob.tip("main").unwrap();
    let mut raced = None;
    let mut retries = Vec::new();
    let (_, outcome) = imagegen::osob::publish::update_branch(
        &workspace,
        &mapping,
        &targets,
        &not_included,
        imagegen::osob::publish::BranchOptions {
            dry_run: false,
            take_over: false,
            today: imagegen::osob::publish::today(),
        },
        |attempt| {
            // Another run pushes the branch between this run's fetch and its push.
            if attempt == 1 {
                raced = Some(osob.commit_files(
                    &osob_repo,
                    BRANCH,
                    Some(base),
                    &[("other-run.txt".into(), b"x\n".to_vec())],
                    "another run",
                    BOT_EMAIL,
                ));
            }
        },
        |error| retries.push(error.to_string()),
    )
    .unwrap();
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert!(
        retries[0].contains("moved while this run worked"),
        "{retries:?}"
    );
    let tip = osob.tip(BRANCH).unwrap();
    assert!(
        matches!(outcome, Some(imagegen::osob::publish::BranchOutcome::Pushed { replaced: Some(ref old), .. }) if *old == raced.unwrap().to_string()),
        "the second try replaced the other run's bot-only branch: {outcome:?}"
    );
    assert_eq!(
        osob_repo.find_commit(tip).unwrap().parent_id(0).unwrap(),
        base
    );
}

#[test]
fn nothing_built_means_nothing_to_do() {
    let repo = built_repo();
    record_all(&repo, JobStatus::Running);
    let osob = Osob::new();
    let output = pr(&repo, &osob, &[], 0);
    let stdout = stdout_of(&output);
    assert!(
        stdout.starts_with("nothing to do: no image is built"),
        "{stdout}"
    );
    assert!(stderr_of(&output).contains("not included: vs2022/server-2022-enterprise (running): job job-vs2022-server-2022-enterprise is still building"));
    assert_eq!(osob.tip(BRANCH), None);
}

/// Points the repository's mapping at the Azure DevOps service the test started.
fn use_azure_devops(repo: &Repo, service: &common_pr::FakeAzureDevOps) {
    let mut mapping: serde_json::Value =
        serde_json::from_str(&repo.read("osob-mapping/osob.json")).unwrap();
    mapping["provider"] = serde_json::json!({
        "kind": "azure-devops",
        "organization": "dnceng",
        "project": "internal",
        "repository": "dotnet-helix-machines",
        "api_url": service.endpoint(),
    });
    repo.write(
        "osob-mapping/osob.json",
        &serde_json::to_string_pretty(&mapping).unwrap(),
    );
}

/// The whole `imagegen pr` against the Azure DevOps routes: the first run creates the pull
/// request, the second (after a new build) updates the same one; a missing token stops the run
/// before anything is pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_opens_one_azure_devops_pull_request_and_updates_it_later() {
    use crate::common_pr::{AdoCredential, AdoSetup, FakeAzureDevOps};
    let pat = "canary-pat-31f9";
    let service = FakeAzureDevOps::start(AdoSetup::new(
        "dnceng",
        "internal",
        "dotnet-helix-machines",
        AdoCredential::Pat(pat.to_string()),
    ))
    .await;
    let repo = built_repo();
    use_azure_devops(&repo, &service);
    let osob = Osob::new();
    let run = |pat: Option<&'static str>, code: i32| {
        let mut command = repo.imagegen();
        command.env("IMAGEGEN_OSOB_URL", osob.url()).arg("pr");
        match pat {
            Some(pat) => command.env("AZURE_DEVOPS_PAT", pat),
            None => command.env_remove("AZURE_DEVOPS_PAT"),
        };
        command.env_remove("SYSTEM_ACCESSTOKEN");
        let output = command.assert().code(code).get_output().clone();
        let text = format!("{}{}", stdout_of(&output), stderr_of(&output));
        assert!(
            !text.contains("canary-pat"),
            "the token never shows: {text}"
        );
        text
    };
    let missing = tokio::task::block_in_place(|| run(None, 1));
    assert!(
        missing.contains("Azure DevOps needs a token: set SYSTEM_ACCESSTOKEN or AZURE_DEVOPS_PAT"),
        "{missing}"
    );
    assert_eq!(osob.tip(BRANCH), None, "nothing pushed without a token");

    let first = tokio::task::block_in_place(|| run(Some("canary-pat-31f9"), 0));
    assert!(first.contains("pull request #101 created"), "{first}");
    let pulls = service.pulls();
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].source_ref, "refs/heads/imagegen/helix-images");
    assert!(
        pulls[0].title.starts_with("Update Helix images: "),
        "{}",
        pulls[0].title
    );
    assert!(pulls[0].description.chars().count() <= 4_000);
    assert_eq!(pulls[0].labels, ["helix-images"]);

    // A new Visual Studio build: the same pull request is updated, not a second one opened.
    let variables = repo.read("variables.json").replace("17_12_1", "17_12_2");
    repo.write("variables.json", &variables);
    record_all(&repo, JobStatus::Succeeded);
    let second = tokio::task::block_in_place(|| run(Some("canary-pat-31f9"), 0));
    assert!(second.contains("pull request #101 updated"), "{second}");
    let pulls = service.pulls();
    assert_eq!(pulls.len(), 1);
    assert!(
        pulls[0].title.contains("VS_2022_VERSION 17_12_2"),
        "{}",
        pulls[0].title
    );
    let creates = service
        .requests()
        .iter()
        .filter(|request| request.method == "POST" && request.path.ends_with("/pullrequests"))
        .count();
    assert_eq!(creates, 1);
    let tip = osob.tip(BRANCH).unwrap();
    assert!(
        osob.read(tip, "definitions/images.json")
            .contains("Helix-Server-DataCenter-2022-VS2022-Enterprise_17_12_2")
    );
}
