//! What the end-to-end tests share: throw-away repositories (copies of the shipped one or of a
//! fixture) and the imagegen binary run inside them.

pub mod azurite;
// Serves OSOB over https to the scenarios that run the emulator too.
#[cfg(feature = "emulator")]
pub mod git_https;
pub mod osob;
pub mod publishers;
pub mod raw_server;
pub mod router_server;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use imagegen::catalog::Catalog;
#[cfg(feature = "emulator")]
use imagegen::factory::emulator::{Emulator, EmulatorConfig, LoggedRequest};
use imagegen::state::{FileStore, JobStatus, Ledger, LedgerEntry};
use serde_json::Value;

/// A throw-away repository the binary runs in.
pub struct Repo {
    dir: tempfile::TempDir,
}

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's folder");
    for entry in std::fs::read_dir(from).expect("list the folder to copy") {
        let entry = entry.expect("read a folder entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

impl Repo {
    pub fn empty() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary folder");
        Self { dir }
    }

    /// A copy of the definitions and variables this repository ships.
    pub fn shipped() -> Self {
        let repo = Self::empty();
        copy_tree(
            &manifest_dir().join("definitions"),
            &repo.path().join("definitions"),
        );
        repo.copy_file(&manifest_dir().join("variables.json"), "variables.json");
        repo
    }

    /// A copy of tests/fixtures/<name>.
    pub fn fixture(name: &str) -> Self {
        let repo = Self::empty();
        copy_tree(
            &manifest_dir().join("tests/fixtures").join(name),
            repo.path(),
        );
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn copy_file(&self, from: &Path, relative: &str) {
        std::fs::copy(from, self.path().join(relative)).expect("copy a file into the repo");
    }

    pub fn write(&self, relative: &str, text: &str) -> &Self {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().expect("a file has a folder")).expect("mkdir");
        std::fs::write(path, text).expect("write a file into the repo");
        self
    }

    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path().join(relative)).expect("read a file of the repo")
    }

    /// The binary, run from the repository root with a clean environment.
    pub fn imagegen(&self) -> Command {
        Command::from_std(self.process())
    }

    /// The same, as a process to spawn (and kill).
    pub fn process(&self) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_imagegen"));
        command.current_dir(self.path());
        for variable in [
            "IMAGEGEN_REPO",
            "IMAGEGEN_STATE",
            "NO_COLOR",
            "CLICOLOR_FORCE",
            "RUST_LOG",
            "IMAGE_FACTORY_URL",
            "IMAGE_FACTORY_AUTHORITY",
            "IMAGE_FACTORY_TOKEN_VERSION",
            "IMAGE_FACTORY_TENANT_ID",
            "IMAGE_FACTORY_CLIENT_ID",
            "IMAGE_FACTORY_CLIENT_SECRET",
            "IMAGE_FACTORY_RESOURCE_ID",
            "IMAGEGEN_STATE_SAS",
            "IMAGEGEN_OSOB_URL",
            "SYSTEM_ACCESSTOKEN",
            "AZURE_DEVOPS_PAT",
            "GITHUB_TOKEN",
            "IMAGEGEN_SUBSCRIPTION_ID",
            "IMAGEGEN_ARM_URL",
            "IMAGEGEN_SOURCE_URL_REWRITE",
            "IMAGEGEN_REPO_URL",
            // A test run inside a pipeline (CI=true, as the project's own CI sets it) must
            // neither speak the pipeline's logging commands nor refuse a missing ledger as a
            // pipeline run does: a test that wants either sets the variable itself.
            "CI",
            "TF_BUILD",
            "GITHUB_ACTIONS",
            "GITHUB_STEP_SUMMARY",
            "AGENT_TEMPDIRECTORY",
        ] {
            command.env_remove(variable);
        }
        command
    }

    /// Runs the binary with `args`, checks its exit code, and returns what it wrote.
    pub fn run(&self, args: &[&str], code: i32) -> std::process::Output {
        self.imagegen()
            .args(args)
            .assert()
            .code(code)
            .get_output()
            .clone()
    }

    pub fn definition_ids(&self) -> Vec<String> {
        imagegen::catalog::definition_ids(self.path())
    }

    /// Records in the default ledger what `variables` rendered, each definition with a status.
    pub fn record_ledger(&self, variables: &str, statuses: &[(&str, JobStatus)]) {
        let current = self.read("variables.json");
        self.write("variables.json", variables);
        let catalog = Catalog::load(self.path());
        assert!(
            !catalog.diagnostics.has_errors(),
            "{:?}",
            catalog.diagnostics
        );
        let mut ledger = Ledger::default();
        for (id, status) in statuses {
            let rendered = catalog
                .rendered
                .iter()
                .find(|rendered| rendered.id == *id)
                .unwrap_or_else(|| panic!("no definition {id} in the fixture"));
            let submitted = "2026-11-16T09:00:00Z".parse().expect("a timestamp");
            let mut entry = LedgerEntry::intent(rendered, rendered.hash.to_string(), submitted);
            entry.status = *status;
            entry.tracking_id = Some(format!("job-{}", id.replace('/', "-")));
            entry.updated_at = "2026-11-16T11:30:00Z".parse().expect("a timestamp");
            if *status == JobStatus::Succeeded {
                entry.image_names = rendered.image_names.clone();
                entry.completed_at = Some(entry.updated_at);
            }
            if status.is_unsuccessful() {
                entry.message = Some("artifact windows-helix-prereqs exited with code 1603".into());
                entry.completed_at = Some(entry.updated_at);
            }
            ledger.definitions.insert(id.to_string(), entry);
        }
        self.save_ledger(&ledger);
        self.write("variables.json", &current);
    }

    pub fn save_ledger(&self, ledger: &Ledger) {
        let store = FileStore::new(self.path().join(".imagegen/state.json"));
        let snapshot = store.load().expect("load the ledger");
        let lock = store
            .lock(std::time::Duration::ZERO, "test")
            .expect("lock the ledger");
        store
            .save(
                &lock,
                &snapshot.revision,
                &imagegen::state::written_form(ledger),
            )
            .expect("save the ledger");
    }
}

pub fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

pub fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

pub fn json_of(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON document")
}

/// An emulator whose jobs finish within a second.
#[cfg(feature = "emulator")]
pub fn fast_emulator() -> Emulator {
    Emulator::start_in_background(EmulatorConfig {
        queued_for: std::time::Duration::from_millis(200),
        running_for: std::time::Duration::from_millis(300),
        ..EmulatorConfig::default()
    })
    .expect("start the Image Factory emulator")
}

/// A fast emulator whose build of `definition`'s image (as `repo` renders it) fails, and that
/// image's name.
#[cfg(feature = "emulator")]
pub fn emulator_failing(repo: &Repo, definition: &str) -> (Emulator, String) {
    let rendered = repo.run(&["render", definition, "--output", "json"], 0);
    let image = json_of(&rendered)["image_names"][0]
        .as_str()
        .expect("the definition names its image")
        .to_string();
    let emulator = Emulator::start_in_background(EmulatorConfig {
        queued_for: std::time::Duration::from_millis(100),
        running_for: std::time::Duration::from_millis(100),
        fail_images: Some(
            regex::Regex::new(&format!("^{}$", regex::escape(&image))).expect("a valid pattern"),
        ),
        ..EmulatorConfig::default()
    })
    .expect("start the Image Factory emulator");
    (emulator, image)
}

/// The binary in `repo`, with the emulator's settings in its environment.
#[cfg(feature = "emulator")]
pub fn imagegen_against(repo: &Repo, emulator: &Emulator) -> Command {
    Command::from_std(process_against(repo, emulator))
}

/// The same, as a process to spawn (and kill).
#[cfg(feature = "emulator")]
pub fn process_against(repo: &Repo, emulator: &Emulator) -> std::process::Command {
    let mut command = repo.process();
    for (name, value) in emulator.environment() {
        command.env(name, value);
    }
    command.env_remove("IMAGE_FACTORY_TOKEN_VERSION");
    command
}

/// Runs the binary in `repo` against the emulator, checks its exit code, returns its output.
#[cfg(feature = "emulator")]
pub fn run_against(
    repo: &Repo,
    emulator: &Emulator,
    args: &[&str],
    code: i32,
) -> std::process::Output {
    imagegen_against(repo, emulator)
        .args(args)
        .assert()
        .code(code)
        .get_output()
        .clone()
}

/// Every job submission the emulator received, in order.
#[cfg(feature = "emulator")]
pub fn posts(emulator: &Emulator) -> Vec<LoggedRequest> {
    emulator
        .requests()
        .into_iter()
        .filter(LoggedRequest::is_submission)
        .collect()
}

impl Repo {
    /// The ledger in its default place.
    pub fn ledger(&self) -> Ledger {
        self.ledger_at(".imagegen/state.json")
    }

    /// The ledger at `relative` in the repository.
    pub fn ledger_at(&self, relative: &str) -> Ledger {
        FileStore::new(self.path().join(relative))
            .read()
            .expect("read the ledger")
    }
}
