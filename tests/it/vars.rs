//! End-to-end tests of `imagegen vars` (list, set, diff) on temporary copies of the shipped
//! repository and of the small fixture, with real git repositories made by git2 for `diff`.

use std::path::Path;

use serde_json::Value;

use crate::common::{self, Repo, json_of, stderr_of, stdout_of};

/// Commits every file below `root` as the first commit of a new git repository there.
fn commit_everything(root: &Path) {
    let git = git2::Repository::init(root).expect("init a git repository");
    let mut index = git.index().expect("open the index");
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .expect("add every file");
    index.write().expect("write the index");
    let tree = git
        .find_tree(index.write_tree().expect("write the tree"))
        .expect("find the tree");
    let signature = git2::Signature::now("Test", "test@example.test").expect("a signature");
    git.commit(Some("HEAD"), &signature, &signature, "init", &tree, &[])
        .expect("commit");
}

fn affected_stdout(repo: &Repo, name: &str) -> String {
    stdout_of(&repo.run(&["affected", name], 0))
}

fn affected_ids(repo: &Repo, name: &str) -> Vec<Value> {
    let document = json_of(&repo.run(&["affected", name, "--output", "json"], 0));
    document["definitions"]
        .as_array()
        .expect("a list of definitions")
        .clone()
}

// --- vars set ---------------------------------------------------------------------------------

#[test]
fn set_changes_exactly_that_values_bytes_and_lists_what_affected_lists() {
    let repo = Repo::shipped();
    let original = repo.read("variables.json");
    assert_eq!(original.matches("\"17_12_1\"").count(), 1);
    let expected = original.replace(
        "\"VS_2022_VERSION\": \"17_12_1\"",
        "\"VS_2022_VERSION\": \"17_12_2\"",
    );
    assert_ne!(expected, original);
    let affected = affected_stdout(&repo, "VS_2022_VERSION");
    assert!(!affected.is_empty());

    let output = repo.run(&["vars", "set", "VS_2022_VERSION=17_12_2"], 0);

    assert_eq!(repo.read("variables.json"), expected);
    let stdout = stdout_of(&output);
    let count = affected.lines().count();
    assert_eq!(
        stdout,
        format!(
            "VS_2022_VERSION: 17_12_1 -> 17_12_2\n\nDefinitions to rebuild ({count}):\n{affected}"
        )
    );
    assert!(
        stderr_of(&output).contains("run `imagegen reconcile --dry-run`"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(affected_stdout(&repo, "VS_2022_VERSION"), affected);
}

#[test]
fn set_json_reports_the_change_and_the_same_definitions_as_affected() {
    let repo = Repo::shipped();
    let affected = affected_ids(&repo, "VS_2022_VERSION");
    let output = repo.run(
        &["vars", "set", "VS_2022_VERSION=17_12_2", "--output", "json"],
        0,
    );
    let document = json_of(&output);
    assert_eq!(document["written"], true);
    assert_eq!(document["dry_run"], false);
    assert_eq!(
        document["changes"],
        serde_json::json!([{
            "name": "VS_2022_VERSION",
            "old": "17_12_1",
            "new": "17_12_2",
            "status": "changed",
        }])
    );
    assert_eq!(document["definitions"].as_array(), Some(&affected));
    assert_eq!(document["diagnostics"], serde_json::json!([]));
    assert_eq!(stderr_of(&output), "");
}

#[test]
fn set_dry_run_shows_the_change_and_leaves_the_file_untouched() {
    let repo = Repo::shipped();
    let original = repo.read("variables.json");
    let affected = affected_stdout(&repo, "VS_2022_VERSION");
    let output = repo.run(&["vars", "set", "VS_2022_VERSION=17_12_2", "--dry-run"], 0);
    assert_eq!(repo.read("variables.json"), original);
    assert!(
        stdout_of(&output).starts_with("VS_2022_VERSION: 17_12_1 -> 17_12_2\n"),
        "{}",
        stdout_of(&output)
    );
    assert!(stdout_of(&output).ends_with(&affected));
    assert!(stderr_of(&output).contains("dry run: variables.json was not changed"));
}

#[test]
fn set_refuses_an_unknown_name_with_a_suggestion_and_leaves_the_file_untouched() {
    let repo = Repo::shipped();
    let original = repo.read("variables.json");
    let output = repo.run(&["vars", "set", "VS_2022_VERSOIN=17_12_2"], 1);
    assert_eq!(repo.read("variables.json"), original);
    let stderr = stderr_of(&output);
    assert!(stderr.contains("no variable VS_2022_VERSOIN"), "{stderr}");
    assert!(stderr.contains("did you mean VS_2022_VERSION"), "{stderr}");
    assert!(stderr.contains("--add"), "{stderr}");
    assert_eq!(stdout_of(&output), "");
}

#[test]
fn set_refuses_a_name_without_a_value_and_a_name_given_twice() {
    let repo = Repo::shipped();
    let original = repo.read("variables.json");
    let output = repo.run(&["vars", "set", "VS_2022_VERSION"], 1);
    assert!(stderr_of(&output).contains("is not NAME=VALUE"));
    let output = repo.run(
        &["vars", "set", "VS_2022_VERSION=1", "VS_2022_VERSION=2"],
        1,
    );
    assert!(stderr_of(&output).contains("VS_2022_VERSION is set twice"));
    assert_eq!(repo.read("variables.json"), original);
}

#[test]
fn set_keeps_crlf_a_byte_order_mark_and_no_trailing_newline() {
    let repo = Repo::fixture("small");
    let original = format!(
        "\u{feff}{}",
        repo.read("variables.json")
            .trim_end()
            .replace('\n', "\r\n")
            .replace("  ", "\t")
    );
    repo.write("variables.json", &original);
    repo.run(&["vars", "set", "VS_VERSION=17_12_2"], 0);
    assert_eq!(
        repo.read("variables.json"),
        original.replace("\"17_12_1\"", "\"17_12_2\"")
    );
}

#[test]
fn set_add_appends_a_new_variable_in_the_files_style() {
    let repo = Repo::fixture("small");
    let original = repo.read("variables.json");
    let output = repo.run(&["vars", "set", "--add", "NEW_VALUE=a \"b\""], 0);
    assert_eq!(
        repo.read("variables.json"),
        original.replace(
            "\"14393_7515\"\n}",
            "\"14393_7515\",\n  \"NEW_VALUE\": \"a \\\"b\\\"\"\n}"
        )
    );
    assert_eq!(stdout_of(&output), "NEW_VALUE: (new) -> \"a \\\"b\\\"\"\n");
    assert!(stderr_of(&output).contains("no definition uses NEW_VALUE"));
}

#[test]
fn set_to_the_current_value_does_not_rewrite_the_file() {
    let repo = Repo::fixture("small");
    let path = repo.path().join("variables.json");
    let before = std::fs::metadata(&path).expect("metadata").modified().ok();
    let output = repo.run(&["vars", "set", "VS_VERSION=17_12_1"], 0);
    assert_eq!(stdout_of(&output), "VS_VERSION: 17_12_1 (unchanged)\n");
    assert!(stderr_of(&output).contains("was not rewritten"));
    assert_eq!(
        std::fs::metadata(&path).expect("metadata").modified().ok(),
        before
    );
}

#[cfg(unix)]
#[test]
fn set_replaces_the_file_by_a_rename_and_leaves_no_temporary_file() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let repo = Repo::fixture("small");
    let path = repo.path().join("variables.json");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let inode = std::fs::metadata(&path).expect("metadata").ino();
    repo.run(&["vars", "set", "VS_VERSION=17_12_2"], 0);
    let metadata = std::fs::metadata(&path).expect("metadata");
    assert_ne!(metadata.ino(), inode, "a new file was renamed into place");
    assert_eq!(metadata.permissions().mode() & 0o777, 0o644);
    let leftovers: Vec<_> = std::fs::read_dir(repo.path())
        .expect("list the repo")
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn set_refuses_a_value_that_breaks_definitions_rendering_now() {
    let repo = Repo::fixture("small");
    let original = repo.read("variables.json");
    let output = repo.run(&["vars", "set", "VS_VERSION=17 12 2"], 1);
    assert_eq!(repo.read("variables.json"), original);
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("is not a valid Azure image name"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the new values break 2 definitions that render now"),
        "{stderr}"
    );
}

#[test]
fn set_refuses_a_broken_variables_file_naming_line_and_column() {
    let repo = Repo::fixture("small");
    let broken = "{\n  \"VS_VERSION\": \"17_12_1\"\n  \"VS_URL\": \"x\"\n}\n";
    repo.write("variables.json", broken);
    let output = repo.run(&["vars", "set", "VS_VERSION=17_12_2"], 1);
    assert!(
        stderr_of(&output).contains("variables.json:3:3: expected `,` or `}`"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(repo.read("variables.json"), broken);
}

// --- vars list --------------------------------------------------------------------------------

#[test]
fn list_shows_each_variable_in_file_order_with_its_use_count() {
    let repo = Repo::fixture("small");
    let text = repo.read("variables.json").replace(
        "\"14393_7515\"\n",
        "\"14393_7515\",\n  \"SPARE\": \"not used\"\n",
    );
    repo.write("variables.json", &text);
    let output = repo.run(&["vars", "list"], 0);
    let stdout = stdout_of(&output);
    let names: Vec<&str> = stdout
        .lines()
        .map(|line| line.split_whitespace().next().expect("a name"))
        .collect();
    assert_eq!(
        names,
        [
            "VS_URL",
            "VS_VERSION",
            "WIN_2022_PATCH",
            "WIN_2019_PATCH",
            "WIN_2016_PATCH",
            "SPARE"
        ]
    );
    let line_of = |name: &str| {
        stdout
            .lines()
            .find(|line| line.starts_with(&format!("{name} ")))
            .expect("a line per variable")
            .to_string()
    };
    let uses = affected_ids(&repo, "VS_VERSION").len();
    let words: Vec<String> = line_of("VS_VERSION")
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(
        words,
        ["VS_VERSION", "17_12_1", &uses.to_string(), "definitions"]
    );
    let spare = line_of("SPARE");
    assert!(spare.starts_with("SPARE  "), "{stdout}");
    assert!(spare.contains(" \"not used\" "), "{stdout}");
    assert!(spare.ends_with("  unused"), "{stdout}");
    assert!(stderr_of(&output).contains("6 variables in variables.json"));
}

#[test]
fn list_json_is_one_document_with_counts_and_diagnostics() {
    let repo = Repo::shipped();
    let document = json_of(&repo.run(&["vars", "list", "--output", "json"], 0));
    let variables = document["variables"].as_array().expect("a list");
    let first = &variables[0];
    assert_eq!(first["name"], "VS_2019_PREVIEW_URL");
    assert_eq!(first["line"], 2);
    assert_eq!(first["unused"], false);
    assert_eq!(
        first["definitions"].as_u64(),
        Some(affected_ids(&repo, "VS_2019_PREVIEW_URL").len() as u64)
    );
    let version = variables
        .iter()
        .find(|variable| variable["name"] == "VS_2022_VERSION")
        .expect("VS_2022_VERSION is listed");
    assert_eq!(version["value"], "17_12_1");
    assert_eq!(document["diagnostics"], serde_json::json!([]));
}

#[test]
fn list_of_a_broken_variables_file_reports_line_and_column_and_exits_1() {
    let repo = Repo::fixture("small");
    let text = repo
        .read("variables.json")
        .replace("\"VS_VERSION\": \"17_12_1\"", "\"VS_VERSION\": 17");
    repo.write("variables.json", &text);
    let output = repo.run(&["vars", "list"], 1);
    assert!(
        stderr_of(&output).contains("variables.json:3:17: the value of VS_VERSION is a number"),
        "{}",
        stderr_of(&output)
    );
    let document = json_of(&repo.run(&["vars", "list", "--output", "json"], 1));
    let diagnostic = document["diagnostics"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|diagnostic| diagnostic["file"] == "variables.json")
        .expect("a problem in variables.json");
    assert_eq!(
        (
            &diagnostic["file"],
            &diagnostic["line"],
            &diagnostic["column"]
        ),
        (
            &Value::from("variables.json"),
            &Value::from(3),
            &Value::from(17)
        )
    );
}

// --- vars diff --------------------------------------------------------------------------------

#[test]
fn diff_head_shows_old_and_new_values_and_the_definitions_they_rebuild() {
    let repo = Repo::shipped();
    commit_everything(repo.path());
    let output = repo.run(&["vars", "diff", "HEAD"], 0);
    assert_eq!(stdout_of(&output), "");
    assert!(stderr_of(&output).contains("variables.json is the same as at HEAD"));

    repo.run(&["vars", "set", "VS_2022_VERSION=17_12_2"], 0);
    let output = repo.run(&["vars", "diff", "HEAD"], 0);
    let rebuilt: String = affected_ids(&repo, "VS_2022_VERSION")
        .iter()
        .map(|definition| format!("  {}\n", definition["definition"].as_str().expect("an id")))
        .collect();
    assert_eq!(
        stdout_of(&output),
        format!("VS_2022_VERSION: 17_12_1 -> 17_12_2\n{rebuilt}")
    );
    assert!(
        stderr_of(&output).contains("1 changed, 0 added, 0 removed"),
        "{}",
        stderr_of(&output)
    );

    let document = json_of(&repo.run(&["vars", "diff", "HEAD", "--output", "json"], 0));
    assert_eq!(document["changes"][0]["kind"], "changed");
    assert_eq!(document["changes"][0]["old"], "17_12_1");
    assert_eq!(document["changes"][0]["new"], "17_12_2");
    assert_eq!(
        document["changes"][0]["definitions"].as_array(),
        Some(&affected_ids(&repo, "VS_2022_VERSION"))
    );
    assert_eq!(document["found_at_revision"], true);
}

#[test]
fn diff_from_a_subfolder_of_the_git_repository_finds_its_variables_file() {
    let repo = Repo::empty();
    common::copy_tree(
        &common::manifest_dir().join("tests/fixtures/small"),
        &repo.path().join("images"),
    );
    commit_everything(repo.path());
    repo.run(
        &[
            "vars",
            "set",
            "--repo",
            "images",
            "--add",
            "WIN_2025_PATCH=26100_1",
        ],
        0,
    );
    let text = repo.read("images/variables.json");
    let removed = text.replace("  \"WIN_2016_PATCH\": \"14393_7515\",\n", "");
    assert_ne!(removed, text);
    repo.write("images/variables.json", &removed);
    let document = json_of(&repo.run(
        &[
            "vars", "diff", "HEAD", "--repo", "images", "--output", "json",
        ],
        1,
    ));
    assert_eq!(document["file"], "images/variables.json");
    let kinds: Vec<(&str, &str)> = document["changes"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|change| {
            (
                change["name"].as_str().expect("a name"),
                change["kind"].as_str().expect("a kind"),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("WIN_2016_PATCH", "removed"), ("WIN_2025_PATCH", "added")]
    );
    // A definition still uses the removed variable: it is listed, and the error says why.
    assert!(
        !document["changes"][0]["definitions"]
            .as_array()
            .expect("a list")
            .is_empty()
    );
    assert!(
        document["diagnostics"]
            .to_string()
            .contains("WIN_2016_PATCH")
    );
}

#[test]
fn diff_with_an_unknown_revision_says_so_and_exits_1() {
    let repo = Repo::shipped();
    commit_everything(repo.path());
    let output = repo.run(&["vars", "diff", "no-such-branch"], 1);
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("unknown revision \"no-such-branch\""),
        "{stderr}"
    );
    assert!(stderr.contains("HEAD~1"), "{stderr}");
}

#[test]
fn diff_outside_a_git_repository_says_so_and_exits_1() {
    let repo = Repo::shipped();
    let output = repo.run(&["vars", "diff", "HEAD"], 1);
    assert!(
        stderr_of(&output).contains("is not inside a git repository"),
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn diff_against_a_revision_without_variables_json_counts_every_variable_as_added() {
    let repo = Repo::fixture("small");
    let text = repo.read("variables.json");
    std::fs::remove_file(repo.path().join("variables.json")).expect("remove variables.json");
    commit_everything(repo.path());
    repo.write("variables.json", &text);
    let output = repo.run(&["vars", "diff", "HEAD"], 0);
    assert!(stderr_of(&output).contains("variables.json did not exist at HEAD"));
    assert!(
        stdout_of(&output).contains("VS_VERSION: (new) -> 17_12_1\n"),
        "{}",
        stdout_of(&output)
    );
}
