//! eng/pipelines/variable-updates.yml read as YAML: it runs every day on main whatever changed,
//! its scripts stop at the first failed command, it runs the binary CI built once its sha256
//! matches, and its one imagegen step is `vars update --pr` with every setting that command
//! reads mapped (and nothing Image Factory alone needs).

use serde_json::{Value, json};

use super::pipeline_tests::{
    check_builds_nothing, check_imagegen_commands_parse, check_scripts_fail_on_the_first_error,
    check_sha256_before_the_binary_runs, steps, yaml,
};

const FILE: &str = "eng/pipelines/variable-updates.yml";
const PIPELINE: &str = include_str!("../../eng/pipelines/variable-updates.yml");

fn pipeline() -> Value {
    yaml(PIPELINE, FILE)
}

#[test]
fn variable_updates_run_every_day_on_main_and_never_for_a_push_or_a_pull_request() {
    let pipeline = pipeline();
    assert_eq!(pipeline["trigger"], "none");
    assert_eq!(pipeline["pr"], "none");
    let schedules = pipeline["schedules"].as_array().expect("a schedule");
    assert_eq!(schedules.len(), 1);
    let cron: Vec<&str> = schedules[0]["cron"]
        .as_str()
        .expect("a cron")
        .split(' ')
        .collect();
    assert_eq!(cron[2..], ["*", "*", "*"], "once a day, every day");
    assert_eq!(schedules[0]["always"], true);
    assert_eq!(schedules[0]["branches"]["include"], json!(["main"]));
}

#[test]
fn variable_updates_check_the_binary_and_fail_on_the_first_error() {
    let pipeline = pipeline();
    check_scripts_fail_on_the_first_error(FILE, &pipeline);
    check_builds_nothing(FILE, &pipeline);
    check_sha256_before_the_binary_runs(FILE, &pipeline);
    let commands = check_imagegen_commands_parse(FILE, &pipeline);
    assert_eq!(
        commands,
        [
            vec!["imagegen", "--version"],
            vec!["imagegen", "vars", "update", "--pr"]
        ],
        "the pipeline proposes, and never writes or reconciles"
    );
}

#[test]
fn the_update_step_maps_the_identity_the_subscription_the_ledger_and_the_token() {
    let pipeline = pipeline();
    let step = steps(&pipeline)
        .into_iter()
        .find(|step| {
            step["script"]
                .as_str()
                .is_some_and(|script| script.contains("vars update"))
        })
        .expect("a vars update step");
    let env = step["env"].as_object().expect("the step maps settings");
    let mut mapped: Vec<&str> = env.keys().map(String::as_str).collect();
    mapped.sort_unstable();
    assert_eq!(
        mapped,
        [
            "IMAGEGEN_REPO_URL",
            "IMAGEGEN_STATE",
            "IMAGEGEN_STATE_SAS",
            "IMAGEGEN_SUBSCRIPTION_ID",
            imagegen::factory::auth::CLIENT_ID_VAR,
            imagegen::factory::auth::CLIENT_SECRET_VAR,
            imagegen::factory::auth::TENANT_ID_VAR,
            imagegen::pull_request::azure_devops::SYSTEM_ACCESS_TOKEN_VAR,
        ]
    );
    // Each flag's environment variable is the one the command line reads.
    let command = <super::Cli as clap::CommandFactory>::command();
    let update = command
        .find_subcommand("vars")
        .and_then(|vars| vars.find_subcommand("update"))
        .expect("vars update");
    let reads: Vec<String> = update
        .get_arguments()
        .filter_map(|argument| argument.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    for name in ["IMAGEGEN_REPO_URL", "IMAGEGEN_SUBSCRIPTION_ID"] {
        assert!(
            reads.iter().any(|read| read == name),
            "vars update reads no {name}"
        );
    }
    // The secrets come from the key vault's group, never written in the file.
    assert_eq!(
        env[imagegen::factory::auth::CLIENT_SECRET_VAR],
        "$(image-factory-client-secret)"
    );
    assert_eq!(env["IMAGEGEN_STATE_SAS"], "$(imagegen-state-sas)");
}
