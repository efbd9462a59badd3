//! The pipelines that build and run imagegen, read as YAML: eng/pipelines/ci.yml,
//! eng/pipelines/imagegen.yml and the GitHub Actions workflows docs/pipeline.md shows. Every
//! script stops at its first failed command, every imagegen command in them is one the command
//! line accepts, CI runs every check, and production runs the binary CI built once it matches
//! its sha256, never one built on the spot.

use std::collections::BTreeSet;

use clap::{CommandFactory as _, Parser as _};
use serde_json::{Value, json};

use super::Cli;
use super::tests::{imagegen_command_lines, shell_words};

const CI: &str = include_str!("../../eng/pipelines/ci.yml");
const PRODUCTION: &str = include_str!("../../eng/pipelines/imagegen.yml");
const PIPELINE_DOC: &str = include_str!("../../docs/pipeline.md");
const OSOB_MAPPING: &str = include_str!("../../osob-mapping/osob.json");

pub(super) fn yaml(text: &str, what: &str) -> Value {
    serde_saphyr::from_str::<Value>(text).unwrap_or_else(|error| panic!("{what}: {error}"))
}

fn azure_ci() -> Value {
    yaml(CI, "eng/pipelines/ci.yml")
}

fn azure_production() -> Value {
    yaml(PRODUCTION, "eng/pipelines/imagegen.yml")
}

/// One shell script of a pipeline, with the step it belongs to for the messages.
pub(super) struct Script {
    pub(super) step: String,
    pub(super) text: String,
}

/// Every script of a pipeline in the order it runs: Azure's `script` and `bash` steps and
/// GitHub's `run` steps, wherever they sit (a job's steps, a deployment's strategy).
pub(super) fn scripts(pipeline: &Value) -> Vec<Script> {
    fn collect(value: &Value, found: &mut Vec<Script>) {
        match value {
            Value::Object(map) => {
                let script = ["script", "bash", "run"]
                    .into_iter()
                    .find_map(|key| map.get(key).and_then(Value::as_str));
                if let Some(text) = script {
                    let step = ["displayName", "name"]
                        .into_iter()
                        .find_map(|key| map.get(key).and_then(Value::as_str))
                        .unwrap_or(text);
                    found.push(Script {
                        step: step.to_string(),
                        text: text.to_string(),
                    });
                    return;
                }
                map.values().for_each(|value| collect(value, found));
            }
            Value::Array(items) => items.iter().for_each(|item| collect(item, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    collect(pipeline, &mut found);
    found
}

/// Every step of a pipeline in the order it runs, wherever the steps sit.
pub(super) fn steps(pipeline: &Value) -> Vec<&Value> {
    fn collect<'a>(value: &'a Value, found: &mut Vec<&'a Value>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Array(steps)) = map.get("steps") {
                    found.extend(steps);
                }
                map.iter()
                    .filter(|(key, _)| *key != "steps")
                    .for_each(|(_, value)| collect(value, found));
            }
            Value::Array(items) => items.iter().for_each(|item| collect(item, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    collect(pipeline, &mut found);
    found
}

/// Each line of a script (a `\` at its end joining the next) as a shell splits it into words,
/// up to its first operator.
fn command_lines(script: &str) -> Vec<Vec<String>> {
    script
        .replace("\\\n", " ")
        .lines()
        .map(shell_words)
        .filter(|words| !words.is_empty())
        .collect()
}

/// Whether any command of the script, also one after `&&`, `|` or `;`, runs `program`.
fn runs(script: &str, program: &str) -> bool {
    script.lines().any(|line| {
        let line = line.split(" #").next().unwrap_or_default();
        !line.trim_start().starts_with('#')
            && line
                .split(|c: char| c.is_whitespace() || "|&;()`\"'$".contains(c))
                .any(|word| word == program || word.ends_with(&format!("/{program}")))
    })
}

/// The first line of a script is `set -euo pipefail`: without it bash carries on after a
/// failed command, and a step whose build failed still ends green.
pub(super) fn check_scripts_fail_on_the_first_error(file: &str, pipeline: &Value) {
    let scripts = scripts(pipeline);
    assert!(!scripts.is_empty(), "{file} has no script");
    for script in scripts {
        assert_eq!(
            script.text.lines().next().map(str::trim),
            Some("set -euo pipefail"),
            "{file}: step {:?} does not start with `set -euo pipefail`:\n{}",
            script.step,
            script.text
        );
    }
}

/// Every imagegen command in the pipeline's scripts is one the command line accepts.
pub(super) fn check_imagegen_commands_parse(file: &str, pipeline: &Value) -> Vec<Vec<String>> {
    let commands: Vec<Vec<String>> = scripts(pipeline)
        .iter()
        .flat_map(|script| imagegen_command_lines(&script.text))
        .collect();
    for words in &commands {
        if let Err(error) = Cli::try_parse_from(words)
            && error.kind() != clap::error::ErrorKind::DisplayVersion
        {
            panic!("{file}: {words:?} does not parse: {error}");
        }
    }
    commands
}

/// What CI runs, in this order: the format check, clippy with warnings as errors (with the
/// default features and without them, so the build production runs is linted too), the tests,
/// and the release build with the sha256 production checks. The release build leaves the
/// default features out: production never runs the emulator or the demo, so its binary holds
/// neither.
fn check_ci_checks_and_builds(file: &str, pipeline: &Value) {
    let scripts = scripts(pipeline);
    let position = |what: &str, found: &dyn Fn(&[String]) -> bool| {
        scripts
            .iter()
            .position(|script| command_lines(&script.text).iter().any(|words| found(words)))
            .unwrap_or_else(|| panic!("{file} has no step running {what}"))
    };
    let has =
        |words: &[String], wanted: &[&str]| wanted.iter().all(|w| words.iter().any(|x| x == w));
    let format = position("cargo fmt --check", &|words| {
        words.starts_with(&["cargo".into(), "fmt".into()]) && has(words, &["--check"])
    });
    let clippy = position("cargo clippy --all-targets -- -D warnings", &|words| {
        words.starts_with(&["cargo".into(), "clippy".into()])
            && has(words, &["--locked", "--all-targets", "-D", "warnings"])
            && !has(words, &["--no-default-features"])
    });
    let clippy_production = position(
        "cargo clippy --no-default-features --all-targets -- -D warnings",
        &|words| {
            words.starts_with(&["cargo".into(), "clippy".into()])
                && has(
                    words,
                    &[
                        "--locked",
                        "--no-default-features",
                        "--all-targets",
                        "-D",
                        "warnings",
                    ],
                )
        },
    );
    let test = position("cargo test --locked", &|words| {
        words == ["cargo", "test", "--locked"]
    });
    let release = position(
        "cargo build --release --locked --no-default-features",
        &|words| {
            words.starts_with(&["cargo".into(), "build".into()])
                && has(words, &["--release", "--locked", "--no-default-features"])
        },
    );
    let checksum = position("sha256sum imagegen", &|words| {
        words == ["sha256sum", "imagegen"]
    });
    assert!(
        format < clippy
            && clippy_production < test
            && clippy < test
            && test < release
            && release <= checksum,
        "{file}: fmt, clippy, test, release build and its sha256 run in this order"
    );
    assert!(
        scripts[checksum]
            .text
            .contains("sha256sum imagegen > imagegen.sha256"),
        "{file}: the sha256 goes beside the binary, named imagegen.sha256"
    );
}

#[test]
fn ci_runs_every_check_then_builds_the_release_binary_and_its_sha256() {
    let ci = azure_ci();
    check_scripts_fail_on_the_first_error("ci.yml", &ci);
    check_imagegen_commands_parse("ci.yml", &ci);
    check_ci_checks_and_builds("ci.yml", &ci);
    assert_eq!(ci["trigger"]["branches"]["include"], json!(["main"]));
    assert_eq!(ci["pr"]["branches"]["include"], json!(["main"]));
    let steps = steps(&ci);
    // The toolchain comes from rust-toolchain.toml, which rustup reads when given no name.
    let install = scripts(&ci)
        .into_iter()
        .position(|script| {
            command_lines(&script.text)
                .iter()
                .any(|words| *words == ["rustup", "toolchain", "install"])
        })
        .expect("ci.yml installs the pinned toolchain");
    assert_eq!(
        install, 0,
        "the toolchain is installed before anything uses it"
    );
    let caches: Vec<&&Value> = steps
        .iter()
        .filter(|step| step["task"] == "Cache@2")
        .collect();
    assert_eq!(caches.len(), 2, "the crates and target/ are cached");
    for cache in caches {
        let key = cache["inputs"]["key"].as_str().unwrap_or_default();
        assert!(
            key.contains("Cargo.lock"),
            "a cache keyed on Cargo.lock: {key}"
        );
    }
    // Only main's runs publish, so production never runs a pull request's binary.
    let publish = steps
        .iter()
        .find(|step| step.get("publish").is_some())
        .expect("ci.yml publishes the binary");
    assert_eq!(publish["artifact"], "imagegen-linux-x64");
    let condition = publish["condition"].as_str().unwrap_or_default();
    assert!(
        condition.contains("eq(variables['Build.SourceBranch'], 'refs/heads/main')")
            && condition.contains("ne(variables['Build.Reason'], 'PullRequest')"),
        "{condition}"
    );
    let last = steps.last().expect("ci.yml has steps");
    assert!(std::ptr::eq(*last, *publish), "publishing comes last");
}

#[test]
fn scripts_are_told_apart_from_other_steps_and_commands_after_operators() {
    let pipeline = yaml(
        "steps:\n  - checkout: self\n  - script: |\n      set -euo pipefail\n      \
         echo done # cargo build\n    displayName: One\n  - bash: make && cargo build\n",
        "a pipeline",
    );
    let found = scripts(&pipeline);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].step, "One");
    assert_eq!(
        found[1].step, "make && cargo build",
        "a step without a name goes by its script"
    );
    assert_eq!(steps(&pipeline).len(), 3);
    assert!(!runs(&found[0].text, "cargo"), "a comment is no command");
    assert!(runs(&found[1].text, "cargo"), "a command after && is one");
}

/// Production builds nothing: no cargo, rustup or rustc in any of its scripts.
pub(super) fn check_builds_nothing(file: &str, pipeline: &Value) {
    for script in scripts(pipeline) {
        for program in ["cargo", "rustup", "rustc"] {
            assert!(
                !runs(&script.text, program),
                "{file}: step {:?} runs {program}: production takes the binary CI built",
                script.step
            );
        }
    }
}

/// Where a line sits: the script's position in the pipeline, then the line's in the script.
type Place = (usize, usize);

/// The binary is checked against its sha256 before anything runs it, and the first thing it is
/// asked is its version, so the log says which build ran.
pub(super) fn check_sha256_before_the_binary_runs(file: &str, pipeline: &Value) {
    let scripts = scripts(pipeline);
    let first = |wanted: &dyn Fn(&str) -> bool| -> Option<Place> {
        scripts.iter().enumerate().find_map(|(index, script)| {
            let line = script.text.lines().position(&wanted)?;
            Some((index, line))
        })
    };
    let check = first(&|line| {
        let words = shell_words(line);
        words.first().is_some_and(|word| word == "sha256sum")
            && words.iter().any(|word| word == "--check" || word == "-c")
            && words.iter().any(|word| word == "imagegen.sha256")
    })
    .unwrap_or_else(|| panic!("{file}: no `sha256sum --check imagegen.sha256`"));
    let run = first(&|line| !imagegen_command_lines(line).is_empty())
        .unwrap_or_else(|| panic!("{file}: imagegen never runs"));
    assert!(
        check < run,
        "{file}: imagegen runs before its sha256 is checked"
    );
    let (script, line) = run;
    let words =
        &imagegen_command_lines(scripts[script].text.lines().nth(line).unwrap_or_default())[0];
    assert_eq!(
        words,
        &["imagegen", "--version"],
        "{file}: the first imagegen command"
    );
}

/// What an unattended reconcile reads from its environment besides the pull request's token:
/// each pipeline maps every one into the reconcile step.
const RECONCILE_SETTINGS: [&str; 7] = [
    imagegen::factory::URL_VAR,
    imagegen::factory::auth::TENANT_ID_VAR,
    imagegen::factory::auth::CLIENT_ID_VAR,
    imagegen::factory::auth::CLIENT_SECRET_VAR,
    imagegen::factory::auth::RESOURCE_ID_VAR,
    imagegen::state::blob::STATE_VAR,
    imagegen::state::blob::SAS_VAR,
];

/// The tokens for the OSOB pull request: a pipeline maps the one (or ones) its provider reads.
const PULL_REQUEST_TOKENS: [&str; 3] = [
    imagegen::pull_request::azure_devops::SYSTEM_ACCESS_TOKEN_VAR,
    imagegen::pull_request::azure_devops::PAT_VAR,
    imagegen::pull_request::github::GITHUB_TOKEN_VAR,
];

/// Read by a reconcile, but left unmapped on purpose: mapping a variable the pipeline does not
/// define would hand the tool the macro's text, `$(name)`, which it refuses.
const LEFT_TO_THEIR_DEFAULTS: [(&str, &str); 4] = [
    (
        "IMAGEGEN_REPO",
        "the step runs in the checkout, the default",
    ),
    (
        imagegen::factory::AUTHORITY_VAR,
        "the default authority serves the tenant",
    ),
    (imagegen::factory::TOKEN_VERSION_VAR, "the default, v2"),
    ("IMAGEGEN_OSOB_URL", "osob-mapping/osob.json names OSOB"),
];

/// Every environment variable a reconcile reads: the command line's settings, and the names
/// the modules read themselves (constants `*_VAR` under src/).
fn environment_a_reconcile_reads() -> BTreeSet<String> {
    let command = Cli::command();
    let reconcile = command
        .find_subcommand("reconcile")
        .expect("a reconcile command");
    let mut names: BTreeSet<String> = command
        .get_arguments()
        .chain(reconcile.get_arguments())
        .filter_map(|argument| argument.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    let constant = regex::Regex::new(r#"const [A-Z_]+_VAR: &str = "([A-Z][A-Z0-9_]*)";"#)
        .expect("a valid pattern");
    let mut folders = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("src/ lists") {
            let path = entry.expect("a src/ entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let text = std::fs::read_to_string(&path).expect("a source file reads");
                names.extend(
                    constant
                        .captures_iter(&text)
                        .map(|found| found[1].to_string()),
                );
            }
        }
    }
    names
}

#[test]
fn every_variable_a_reconcile_reads_is_mapped_or_left_to_its_default_on_purpose() {
    let known: BTreeSet<&str> = RECONCILE_SETTINGS
        .into_iter()
        .chain(PULL_REQUEST_TOKENS)
        .chain(LEFT_TO_THEIR_DEFAULTS.map(|(name, _)| name))
        .collect();
    let reads = environment_a_reconcile_reads();
    let unknown: Vec<&String> = reads
        .iter()
        .filter(|name| !known.contains(name.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "map these into the pipelines' reconcile steps, or say why not: {unknown:?}"
    );
    for name in &known {
        assert!(
            reads.contains(*name),
            "{name} is no longer read: drop it here"
        );
    }
}

/// The reconcile step maps `settings` and passes the run when jobs are pending (exit code 2).
fn check_reconcile_step(file: &str, step: &Value, settings: &[&str]) {
    let env = step["env"]
        .as_object()
        .unwrap_or_else(|| panic!("{file}: the reconcile step maps no environment"));
    for name in settings {
        assert!(
            env.contains_key(*name),
            "{file}: {name} is not mapped: {env:?}"
        );
    }
    let script = step["script"]
        .as_str()
        .or(step["run"].as_str())
        .unwrap_or_default();
    assert!(
        script.contains("imagegen reconcile || status=$?")
            && script.contains("\"$status\" -eq 2")
            && script.contains("exit 0"),
        "{file}: exit code 2 (jobs pending) passes the run: {script}"
    );
}

/// The step whose script runs `imagegen reconcile`.
fn reconcile_step<'a>(file: &str, pipeline: &'a Value) -> &'a Value {
    imagegen_step(file, pipeline, "reconcile")
}

/// The step whose script runs `imagegen <command>`.
fn imagegen_step<'a>(file: &str, pipeline: &'a Value, command: &str) -> &'a Value {
    steps(pipeline)
        .into_iter()
        .find(|step| {
            ["script", "run"].iter().any(|key| {
                step[key].as_str().is_some_and(|script| {
                    imagegen_command_lines(script)
                        .iter()
                        .any(|words| words.get(1).is_some_and(|name| name == command))
                })
            })
        })
        .unwrap_or_else(|| panic!("{file}: no step runs imagegen {command}"))
}

/// The doctor step checks what the reconcile will use: it maps the same environment, and runs
/// under the same condition (after a failed validate, never without the checked binary).
fn check_doctor_step(file: &str, pipeline: &Value, condition_key: &str) {
    let doctor = imagegen_step(file, pipeline, "doctor");
    let reconcile = reconcile_step(file, pipeline);
    assert_eq!(
        doctor["env"], reconcile["env"],
        "{file}: the doctor checks the settings the reconcile uses"
    );
    assert_eq!(doctor[condition_key], reconcile[condition_key], "{file}");
}

#[test]
fn production_runs_on_merges_touching_the_inputs_and_every_hour_one_run_at_a_time() {
    let pipeline = azure_production();
    let trigger = &pipeline["trigger"];
    assert_eq!(trigger["batch"], true);
    assert_eq!(trigger["branches"]["include"], json!(["main"]));
    assert_eq!(
        trigger["paths"]["include"],
        json!(["variables.json", "definitions/", "osob-mapping/"])
    );
    assert_eq!(pipeline["pr"], "none");
    let schedules = pipeline["schedules"].as_array().expect("a schedule");
    assert_eq!(schedules.len(), 1);
    assert_eq!(schedules[0]["cron"], "0 * * * *");
    assert_eq!(schedules[0]["always"], true);
    assert_eq!(schedules[0]["branches"]["include"], json!(["main"]));
    // The environment's Exclusive Lock check makes runs take turns; `sequential` has each
    // one wait for its turn instead of being canceled.
    assert_eq!(pipeline["lockBehavior"], "sequential");
    let jobs = pipeline["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["deployment"], "reconcile");
    assert_eq!(jobs[0]["environment"], "imagegen");
    assert_eq!(
        pipeline["variables"],
        json!([{"group": "imagegen-settings"}, {"group": "imagegen-secrets"}]),
        "plain settings, and the key vault's secrets"
    );
}

#[test]
fn production_runs_the_binary_ci_built_on_main_once_its_sha256_matches() {
    let pipeline = azure_production();
    check_scripts_fail_on_the_first_error("imagegen.yml", &pipeline);
    check_builds_nothing("imagegen.yml", &pipeline);
    check_sha256_before_the_binary_runs("imagegen.yml", &pipeline);
    let names: Vec<String> = check_imagegen_commands_parse("imagegen.yml", &pipeline)
        .into_iter()
        .filter_map(|words| words.get(1).cloned())
        .collect();
    assert_eq!(
        names,
        ["--version", "validate", "doctor", "reconcile", "ledger"]
    );
    // The artifact of ci.yml's latest successful run on main, and no CI run starts a reconcile.
    let ci = yaml(CI, "ci.yml");
    let published = steps(&ci)
        .into_iter()
        .find_map(|step| {
            step["artifact"]
                .as_str()
                .filter(|_| step.get("publish").is_some())
        })
        .expect("ci.yml publishes an artifact");
    let resources = pipeline["resources"]["pipelines"]
        .as_array()
        .expect("pipeline resources");
    assert_eq!(resources.len(), 1);
    let resource = &resources[0];
    assert_eq!(
        resource["source"], "imagegen-ci",
        "the name ci.yml's pipeline has"
    );
    assert_eq!(resource["branch"], "main");
    assert_eq!(resource["trigger"], "none");
    let alias = resource["pipeline"].as_str().expect("an alias");
    let steps = steps(&pipeline);
    let download = steps
        .iter()
        .position(|step| step["download"] == alias)
        .expect("a download step for the CI pipeline's artifact");
    assert_eq!(steps[download]["artifact"], published);
    let install = steps
        .iter()
        .position(|step| {
            step["script"]
                .as_str()
                .is_some_and(|script| script.contains("sha256sum --check"))
        })
        .expect("an install step");
    assert!(download < install, "downloaded, then checked");
    let install = steps[install];
    let script = install["script"].as_str().unwrap_or_default();
    assert!(
        script.contains(&format!("$(Pipeline.Workspace)/{alias}/{published}")),
        "the binary is taken from where the download put it: {script}"
    );
    // Whatever picked the run (a manual run can choose any), only main's binary goes on.
    assert!(script.contains(r#"if [ "$CI_SOURCE_BRANCH" != "refs/heads/main" ]; then"#));
    assert_eq!(
        install["env"]["CI_SOURCE_BRANCH"],
        format!("$(resources.pipeline.{alias}.sourceBranch)")
    );
}

#[test]
fn production_declares_the_osob_repository_the_mapping_names() {
    let pipeline = azure_production();
    let mapping: Value = serde_json::from_str(OSOB_MAPPING).expect("the mapping is JSON");
    let repositories = pipeline["resources"]["repositories"]
        .as_array()
        .expect("repository resources");
    let osob = repositories
        .iter()
        .find(|repository| {
            repository["name"]
                == format!(
                    "{}/{}",
                    mapping["provider"]["project"].as_str().unwrap_or_default(),
                    mapping["provider"]["repository"]
                        .as_str()
                        .unwrap_or_default()
                )
        })
        .expect("a resource for the OSOB repository osob-mapping/osob.json names");
    assert_eq!(osob["type"], "git");
    // Declared for the job's token without a checkout: the tool clones OSOB itself.
    assert_eq!(
        pipeline["jobs"][0]["uses"]["repositories"],
        json!([osob["repository"]])
    );
    assert!(
        !steps(&pipeline)
            .iter()
            .any(|step| step["checkout"] == osob["repository"]),
        "OSOB is not checked out"
    );
}

#[test]
fn production_reconcile_step_maps_every_setting_and_passes_on_pending_jobs() {
    let pipeline = azure_production();
    let step = reconcile_step("imagegen.yml", &pipeline);
    let azure_token = imagegen::pull_request::azure_devops::SYSTEM_ACCESS_TOKEN_VAR;
    let settings: Vec<&str> = RECONCILE_SETTINGS
        .into_iter()
        .chain([azure_token])
        .collect();
    check_reconcile_step("imagegen.yml", step, &settings);
    check_doctor_step("imagegen.yml", &pipeline, "condition");
    assert_eq!(step["env"][azure_token], "$(System.AccessToken)");
    // Runs after a failed validate, never without the checked binary.
    assert_eq!(
        step["condition"],
        "and(not(canceled()), eq(variables.imagegenInstalled, 'true'))"
    );
    let install = steps(&pipeline)
        .into_iter()
        .find_map(|step| {
            step["script"]
                .as_str()
                .filter(|s| s.contains("sha256sum --check"))
        })
        .expect("an install step");
    assert!(
        install.lines().last().is_some_and(
            |line| line.contains("##vso[task.setvariable variable=imagegenInstalled]true")
        ),
        "the install step says it succeeded as its last act: {install}"
    );
}

/// Where `step` sits among the pipeline's steps.
fn position_of(pipeline: &Value, step: &Value) -> usize {
    steps(pipeline)
        .iter()
        .position(|found| std::ptr::eq(*found, step))
        .expect("the step is one of the pipeline's")
}

/// After the reconcile, whatever became of it, a step exports the ledger to a file in a folder
/// of its own, reading it with the reconcile's ledger settings, and the step after it publishes
/// that folder. Returns the export step and the publish step.
fn check_ledger_export<'a>(
    file: &str,
    pipeline: &'a Value,
    condition_key: &str,
) -> (&'a Value, &'a Value) {
    let reconcile = reconcile_step(file, pipeline);
    let export = imagegen_step(file, pipeline, "ledger");
    let script = export["script"]
        .as_str()
        .or(export["run"].as_str())
        .unwrap_or_default();
    let exported = imagegen_command_lines(script)
        .into_iter()
        .find(|words| words.get(2).is_some_and(|word| word == "export"))
        .unwrap_or_else(|| panic!("{file}: no `imagegen ledger export FILE`: {script}"));
    assert_eq!(
        exported.len(),
        4,
        "{file}: the copy goes to a file: {exported:?}"
    );
    assert!(
        position_of(pipeline, export) > position_of(pipeline, reconcile),
        "{file}: the ledger is exported after the reconcile"
    );
    let condition = export[condition_key].as_str().unwrap_or_default();
    assert!(
        condition.contains("always()") || condition.contains("succeededOrFailed()"),
        "{file}: the export runs whether the reconcile passed or failed: {condition}"
    );
    assert_eq!(
        export[condition_key],
        reconcile[condition_key]
            .as_str()
            .unwrap_or_default()
            .replace("not(canceled())", "always()")
            .replace("!cancelled()", "always()"),
        "{file}: the export needs the checked binary as the reconcile does"
    );
    for name in [
        imagegen::state::blob::STATE_VAR,
        imagegen::state::blob::SAS_VAR,
    ] {
        assert_eq!(
            export["env"][name], reconcile["env"][name],
            "{file}: the export reads the reconcile's ledger"
        );
    }
    // The folder the copy is written to: `copy="FOLDER"` in the script, then `$copy/NAME`.
    let folder = command_lines(script)
        .into_iter()
        .find_map(|words| words.first()?.strip_prefix("copy=").map(str::to_string))
        .unwrap_or_else(|| panic!("{file}: the export names its folder copy=...: {script}"));
    assert!(
        exported[3].starts_with("$copy/"),
        "{file}: the copy goes into the published folder: {exported:?}"
    );
    let publish = steps(pipeline)
        .into_iter()
        .nth(position_of(pipeline, export) + 1)
        .unwrap_or_else(|| panic!("{file}: no step publishes the copy"));
    let published = publish["publish"]
        .as_str()
        .or(publish["with"]["path"].as_str())
        .unwrap_or_default();
    let name = |path: &str| {
        path.trim_end_matches('/')
            .rsplit('/')
            .next()
            .map(str::to_string)
    };
    assert_eq!(
        name(published),
        name(&folder),
        "{file}: the step after the export publishes its folder: {publish}"
    );
    (export, publish)
}

#[test]
fn production_publishes_a_copy_of_the_ledger_after_every_reconcile_once_per_attempt() {
    let pipeline = azure_production();
    let file = "imagegen.yml";
    let (export, publish) = check_ledger_export(file, &pipeline, "condition");
    let script = export["script"].as_str().unwrap_or_default();
    assert!(
        script.contains(r#"copy="$(Build.ArtifactStagingDirectory)/imagegen-ledger""#),
        "{script}"
    );
    assert_eq!(
        publish["publish"],
        "$(Build.ArtifactStagingDirectory)/imagegen-ledger"
    );
    let artifact = publish["artifact"].as_str().unwrap_or_default();
    assert!(
        artifact.starts_with("imagegen-ledger-") && artifact.contains("$(System.JobAttempt)"),
        "one artifact name per attempt: {artifact}"
    );
    // Published whatever the reconcile did, but only a copy that was written whole.
    assert!(
        script.lines().last().is_some_and(
            |line| line.contains("##vso[task.setvariable variable=ledgerExported]true")
        ),
        "the export says it succeeded as its last act: {script}"
    );
    assert_eq!(
        publish["condition"],
        "and(always(), eq(variables.ledgerExported, 'true'))"
    );
}

#[test]
fn the_github_reconcile_workflow_in_the_docs_uploads_a_copy_of_the_ledger_too() {
    let workflow = github_workflow("imagegen");
    let file = "docs/pipeline.md (imagegen)";
    let (export, upload) = check_ledger_export(file, &workflow, "if");
    assert!(
        export["run"]
            .as_str()
            .is_some_and(|script| script.contains(r#"copy="$RUNNER_TEMP/imagegen-ledger""#)),
        "{export}"
    );
    assert!(
        upload["uses"]
            .as_str()
            .is_some_and(|uses| uses.starts_with("actions/upload-artifact@")),
        "{upload}"
    );
    assert_eq!(
        upload["with"]["path"],
        "${{ runner.temp }}/imagegen-ledger/"
    );
    assert_eq!(
        upload["with"]["name"],
        "imagegen-ledger-${{ github.run_attempt }}"
    );
    assert_eq!(
        upload["if"],
        format!(
            "${{{{ always() && steps.{}.outcome == 'success' }}}}",
            export["id"].as_str().unwrap_or_default()
        )
    );
}

/// The GitHub Actions workflow called `name` among those docs/pipeline.md shows.
fn github_workflow(name: &str) -> Value {
    let section = &PIPELINE_DOC[PIPELINE_DOC
        .find("## GitHub Actions")
        .expect("docs/pipeline.md has a GitHub Actions section")..];
    section
        .split("```yaml\n")
        .skip(1)
        .map(|block| &block[..block.find("```").expect("the block ends")])
        .map(|text| yaml(text, "a workflow in docs/pipeline.md"))
        .find(|workflow| workflow["name"] == name)
        .unwrap_or_else(|| panic!("docs/pipeline.md shows no workflow named {name}"))
}

#[test]
fn the_github_ci_workflow_in_the_docs_checks_like_ci_yml_and_uploads_the_binary_from_main() {
    let workflow = github_workflow("ci");
    let file = "docs/pipeline.md (ci)";
    check_scripts_fail_on_the_first_error(file, &workflow);
    check_imagegen_commands_parse(file, &workflow);
    check_ci_checks_and_builds(file, &workflow);
    assert_eq!(workflow["on"]["push"]["branches"], json!(["main"]));
    assert_eq!(workflow["on"]["pull_request"]["branches"], json!(["main"]));
    assert!(
        command_lines(&scripts(&workflow)[0].text)
            .iter()
            .any(|words| *words == ["rustup", "toolchain", "install"]),
        "the pinned toolchain is installed first"
    );
    let steps = steps(&workflow);
    let cache = steps
        .iter()
        .find(|step| {
            step["uses"]
                .as_str()
                .is_some_and(|uses| uses.starts_with("actions/cache@"))
        })
        .expect("a cache step");
    assert!(
        cache["with"]["key"]
            .as_str()
            .is_some_and(|key| key.contains("'Cargo.lock'")),
        "keyed on Cargo.lock: {cache}"
    );
    let upload = steps.last().expect("the job has steps");
    assert!(
        upload["uses"]
            .as_str()
            .is_some_and(|uses| uses.starts_with("actions/upload-artifact@")),
        "uploading comes last: {upload}"
    );
    assert_eq!(upload["with"]["name"], "imagegen-linux-x64");
    assert_eq!(
        upload["if"],
        "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    );
}

#[test]
fn the_github_reconcile_workflow_in_the_docs_runs_the_binary_ci_uploaded_from_main() {
    let workflow = github_workflow("imagegen");
    let file = "docs/pipeline.md (imagegen)";
    assert_eq!(
        workflow["on"]["push"]["paths"],
        json!(["variables.json", "definitions/**", "osob-mapping/**"])
    );
    assert_eq!(workflow["on"]["schedule"][0]["cron"], "0 * * * *");
    assert_eq!(
        workflow["concurrency"],
        json!({"group": "imagegen", "cancel-in-progress": false}),
        "one run at a time, none canceled"
    );
    check_scripts_fail_on_the_first_error(file, &workflow);
    check_builds_nothing(file, &workflow);
    check_sha256_before_the_binary_runs(file, &workflow);
    let names: Vec<String> = check_imagegen_commands_parse(file, &workflow)
        .into_iter()
        .filter_map(|words| words.get(1).cloned())
        .collect();
    assert_eq!(
        names,
        ["--version", "validate", "doctor", "reconcile", "ledger"]
    );
    // The artifact of the latest successful CI run for a push to main.
    let uploaded = steps(&github_workflow("ci"))
        .last()
        .map(|upload| upload["with"]["name"].clone())
        .expect("the CI workflow uploads");
    assert_eq!(workflow["permissions"]["actions"], "read");
    let install = steps(&workflow)
        .into_iter()
        .find(|step| step["id"] == "install")
        .expect("a step with the id install");
    let commands = command_lines(install["run"].as_str().unwrap_or_default());
    let has = |words: &[String], wanted: &[&str]| {
        wanted.chunks(2).all(|pair| {
            words
                .windows(2)
                .any(|found| found[0] == pair[0] && found[1] == pair[1])
        })
    };
    assert!(
        commands.iter().any(|words| {
            words.iter().any(|word| word.starts_with("run_id=$(gh"))
                && has(words, &["--workflow", "ci.yml", "--branch", "main"])
                && has(words, &["--event", "push", "--status", "success"])
        }),
        "the run comes from `gh run list` of ci.yml's successful pushes to main: {commands:?}"
    );
    assert!(
        commands.iter().any(|words| {
            words.starts_with(&["gh".into(), "run".into(), "download".into()])
                && words.iter().any(|word| *word == uploaded)
        }),
        "the CI run's artifact {uploaded} is downloaded: {commands:?}"
    );
    let reconcile = reconcile_step(file, &workflow);
    let settings: Vec<&str> = RECONCILE_SETTINGS
        .into_iter()
        .chain([
            imagegen::pull_request::github::GITHUB_TOKEN_VAR,
            imagegen::pull_request::azure_devops::PAT_VAR,
        ])
        .collect();
    check_reconcile_step(file, reconcile, &settings);
    check_doctor_step(file, &workflow, "if");
    assert_eq!(
        reconcile["if"],
        "${{ !cancelled() && steps.install.outcome == 'success' }}"
    );
}
