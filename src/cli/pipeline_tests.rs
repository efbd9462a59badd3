//! The pipelines that build and run imagegen, read as YAML: eng/pipelines/ci.yml,
//! eng/pipelines/imagegen.yml and the GitHub Actions workflows docs/pipeline.md shows. Every
//! script stops at its first failed command, every imagegen command in them is one the command
//! line accepts, CI runs every check, and production runs the binary CI built once it matches
//! its sha256, never one built on the spot.

use serde_json::Value;

use clap::Parser as _;

use super::Cli;
use super::tests::{imagegen_command_lines, shell_words};

const CI: &str = include_str!("../../eng/pipelines/ci.yml");

fn yaml(text: &str, what: &str) -> Value {
    serde_saphyr::from_str::<Value>(text).unwrap_or_else(|error| panic!("{what}: {error}"))
}

fn azure_ci() -> Value {
    yaml(CI, "eng/pipelines/ci.yml")
}

/// One shell script of a pipeline, with the step it belongs to for the messages.
struct Script {
    step: String,
    text: String,
}

/// Every script of a pipeline in the order it runs: Azure's `script` and `bash` steps and
/// GitHub's `run` steps, wherever they sit (a job's steps, a deployment's strategy).
fn scripts(pipeline: &Value) -> Vec<Script> {
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
fn steps(pipeline: &Value) -> Vec<&Value> {
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

/// Each line of a script as a shell splits it into words, up to its first operator.
fn command_lines(script: &str) -> Vec<Vec<String>> {
    script
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
fn check_scripts_fail_on_the_first_error(file: &str, pipeline: &Value) {
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
fn check_imagegen_commands_parse(file: &str, pipeline: &Value) -> Vec<Vec<String>> {
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

/// What CI runs, in this order: the format check, clippy with warnings as errors, the tests,
/// and the release build with the sha256 production checks.
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
    });
    let test = position("cargo test --locked", &|words| {
        words == ["cargo", "test", "--locked"]
    });
    let release = position("cargo build --release --locked", &|words| {
        words.starts_with(&["cargo".into(), "build".into()])
            && has(words, &["--release", "--locked"])
    });
    let checksum = position("sha256sum imagegen", &|words| {
        words == ["sha256sum", "imagegen"]
    });
    assert!(
        format < clippy && clippy < test && test < release && release <= checksum,
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
    assert_eq!(
        ci["trigger"]["branches"]["include"],
        serde_json::json!(["main"])
    );
    assert_eq!(ci["pr"]["branches"]["include"], serde_json::json!(["main"]));
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
         echo cargo is mentioned # cargo build\n    displayName: One\n  - bash: make && cargo build\n",
        "a pipeline",
    );
    let found: Vec<(String, String)> = scripts(&pipeline)
        .into_iter()
        .map(|script| (script.step, script.text))
        .collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].0, "One");
    assert_eq!(steps(&pipeline).len(), 3);
    assert!(runs(&found[1].1, "cargo"), "after &&");
    assert!(
        !runs("set -euo pipefail\n# cargo build\n", "cargo"),
        "a comment is no command"
    );
}
