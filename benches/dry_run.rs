//! The dry-run benchmark: generates a repository of 10,000 definitions using 500 variables, and
//! times `imagegen validate` and `imagegen reconcile --dry-run` against merely reading and
//! JSON-parsing the same files. Targets: a dry run under 1 s, and within 3x of read-and-parse.
//!
//! Run: `cargo bench --bench dry_run` (options: `-- --definitions N --variables M --runs R`,
//! and `--keep DIR` to generate the repository into DIR and leave it there for profiling).
//! Exits with status 1 when a target is missed, so it can serve as a check.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use imagegen::catalog::Catalog;
use imagegen::plan::{self, PlanOptions};
use imagegen::state::{FileStore, JobStatus, Ledger, LedgerEntry};

const TARGET_DRY_RUN: Duration = Duration::from_secs(1);
const TARGET_RATIO: f64 = 3.0;

struct Settings {
    definitions: usize,
    variables: usize,
    runs: usize,
    /// Generate the repository here and keep it (for profiling), instead of a temporary folder.
    keep: Option<PathBuf>,
}

impl Settings {
    fn from_args() -> Self {
        let mut settings = Self {
            definitions: 10_000,
            variables: 500,
            runs: 5,
            keep: None,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut index = 0;
        while index < args.len() {
            let value = || {
                args.get(index + 1)
                    .and_then(|value| value.parse().ok())
                    .unwrap_or_else(|| panic!("{} needs a whole number", args[index]))
            };
            match args[index].as_str() {
                "--definitions" => settings.definitions = value(),
                "--variables" => settings.variables = value(),
                "--runs" => settings.runs = value(),
                "--keep" => {
                    let folder = args.get(index + 1).expect("--keep needs a folder");
                    settings.keep = Some(PathBuf::from(folder));
                }
                // cargo bench passes `--bench`; anything else is not ours.
                _ => {
                    index += 1;
                    continue;
                }
            }
            index += 2;
        }
        settings
    }
}

fn variable_name(index: usize) -> String {
    format!("VAR_{index:04}")
}

/// variables.json with every value carrying `week`, so another week changes chosen values.
fn variables_json(settings: &Settings, changed_every: usize, week: usize) -> String {
    let entries: Vec<String> = (0..settings.variables)
        .map(|index| {
            let week = if index % changed_every == 0 { week } else { 0 };
            format!(
                "  \"{}\": \"{week}_{}_{index}\"",
                variable_name(index),
                index % 7
            )
        })
        .collect();
    format!("{{\n{}\n}}\n", entries.join(",\n"))
}

/// A payload of about 1.5 KB, shaped like the shipped definitions, using 2 to 4 variables.
fn definition_json(index: usize, variables: usize) -> String {
    let uses = 2 + index % 3;
    let used: Vec<String> = (0..uses)
        .map(|k| variable_name((index * 7 + k * 131) % variables))
        .collect();
    let extra = used
        .iter()
        .enumerate()
        .skip(2)
        .map(|(k, name)| format!(",\n        \"Extra{k}\": \"{{{name}}}\""))
        .collect::<String>();
    format!(
        r#"{{
  "BaseImage": {{
    "Publisher": "MicrosoftWindowsServer",
    "Offer": "WindowsServer",
    "Sku": "2022-datacenter",
    "Version": "latest"
  }},
  "Location": "westus2",
  "VMSize": "Standard_D8s_v5",
  "OsDiskSizeGB": 256,
  "Artifacts": [
    {{
      "Name": "windows-enable-long-paths",
      "Parameters": {{}}
    }},
    {{
      "Name": "windows-vs-release",
      "Parameters": {{
        "Channel": "Release",
        "WorkLoads": "reduced",
        "Sku": "Enterprise",
        "VSBootstrapperURL": "https://example.test/{{{second}}}/vs_Enterprise.exe"{extra}
      }}
    }},
    {{
      "Name": "windows-helix-prereqs",
      "Parameters": {{
        "PythonVersion": "3.12",
        "InstallDotNetRuntimes": "true"
      }}
    }},
    {{
      "Name": "windows-install-updates",
      "Parameters": {{
        "Reboot": "true"
      }}
    }}
  ],
  "Tags": {{
    "Owner": "dnceng",
    "Purpose": "helix",
    "Definition": "group-{group:02}/image-{index:05}"
  }},
  "Destination": [
    {{
      "StorageAccountName": "heliximgfctdncwus2",
      "CustomImageName": "Helix-Bench-{index:05}_{{{first}}}",
      "SubId": "84a65c9a-787d-45da-b10a-3a1cefce8060"
    }}
  ]
}}
"#,
        first = used[0],
        second = used[1],
        group = index % 50,
    )
}

fn write_repository(root: &Path, settings: &Settings) -> u64 {
    let mut bytes = 0;
    for index in 0..settings.definitions {
        let folder = root.join(format!("definitions/group-{:02}", index % 50));
        std::fs::create_dir_all(&folder).expect("create a definitions folder");
        let text = definition_json(index, settings.variables);
        bytes += text.len() as u64;
        std::fs::write(folder.join(format!("image-{index:05}.json")), text)
            .expect("write a definition");
    }
    bytes
}

/// Records every definition as built with last week's variables, of which one in ten differ.
fn write_ledger(root: &Path, settings: &Settings) -> u64 {
    std::fs::write(root.join("variables.json"), variables_json(settings, 10, 1))
        .expect("write last week's variables");
    let catalog = Catalog::load(root);
    assert!(
        !catalog.diagnostics.has_errors(),
        "the generated repository is valid"
    );
    let mut ledger = Ledger::default();
    let at = "2026-11-16T10:00:00Z".parse().expect("a timestamp");
    for (index, rendered) in catalog.rendered.iter().enumerate() {
        let mut entry = LedgerEntry::intent(rendered, rendered.hash.to_string(), at);
        entry.status = JobStatus::Succeeded;
        entry.tracking_id = Some(format!("bench-{index}"));
        entry.image_names = rendered.image_names.clone();
        entry.completed_at = Some(at);
        ledger.definitions.insert(rendered.id.clone(), entry);
    }
    let store = FileStore::new(root.join(".imagegen/state.json"));
    let snapshot = store.load().expect("read the empty ledger");
    let lock = store
        .lock(Duration::ZERO, "benchmark")
        .expect("lock the ledger");
    store
        .save(
            &lock,
            &snapshot.revision,
            &imagegen::state::written_form(&ledger),
        )
        .expect("save the ledger");
    std::fs::write(root.join("variables.json"), variables_json(settings, 10, 2))
        .expect("write this week's variables");
    std::fs::metadata(store.path()).map_or(0, |metadata| metadata.len())
}

fn definition_paths(root: &Path) -> Vec<PathBuf> {
    imagegen::catalog::definition_files(root).0
}

fn read_and_parse(paths: &[PathBuf]) -> usize {
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).expect("read a definition");
            let value: serde_json::Value = serde_json::from_str(&text).expect("parse a definition");
            value.as_object().map_or(0, serde_json::Map::len)
        })
        .sum()
}

fn read_and_parse_parallel(paths: &[PathBuf]) -> usize {
    let half = paths.len().div_ceil(2);
    std::thread::scope(|scope| {
        let workers: Vec<_> = paths
            .chunks(half.max(1))
            .map(|chunk| scope.spawn(move || read_and_parse(chunk)))
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a worker finished"))
            .sum()
    })
}

struct Timing {
    name: &'static str,
    median: Duration,
    min: Duration,
}

fn measure(name: &'static str, runs: usize, mut work: impl FnMut()) -> Timing {
    work();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed()
        })
        .collect();
    times.sort();
    Timing {
        name,
        median: times[times.len() / 2],
        min: times[0],
    }
}

/// The binary, run as by hand even on a CI machine: a scenario without a ledger must plan
/// against an empty one, which a run on a CI platform refuses.
fn imagegen() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_imagegen"));
    for variable in imagegen::platform::CI_VARIABLES {
        command.env_remove(variable);
    }
    command
}

/// Runs the binary once and checks its exit code, showing stderr if it is wrong.
fn check_binary(root: &Path, args: &[&str], expected: i32) {
    let output = imagegen()
        .arg("--repo")
        .arg(root)
        .args(args)
        .stdout(Stdio::null())
        .output()
        .expect("run imagegen");
    assert_eq!(
        output.status.code(),
        Some(expected),
        "imagegen {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn run_binary(root: &Path, args: &[&str]) {
    imagegen()
        .arg("--repo")
        .arg(root)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run imagegen");
}

fn milliseconds(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn main() {
    let settings = Settings::from_args();
    let folder = tempfile::tempdir().expect("create a temporary folder");
    let root = match &settings.keep {
        Some(kept) => {
            std::fs::create_dir_all(kept).expect("create the folder to keep");
            kept.as_path()
        }
        None => folder.path(),
    };
    let definition_bytes = write_repository(root, &settings);
    std::fs::write(
        root.join("variables.json"),
        variables_json(&settings, 10, 2),
    )
    .expect("write the variables");
    let paths = definition_paths(root);
    let runs = settings.runs;

    let mut timings = Vec::new();
    timings.push(measure("read + parse (1 thread)", runs, || {
        read_and_parse(&paths);
    }));
    timings.push(measure("read + parse (2 threads)", runs, || {
        read_and_parse_parallel(&paths);
    }));
    check_binary(root, &["validate"], 0);
    timings.push(measure("imagegen validate", runs, || {
        run_binary(root, &["validate"]);
    }));
    check_binary(root, &["reconcile", "--dry-run"], 2);
    timings.push(measure("dry run, no ledger", runs, || {
        run_binary(root, &["reconcile", "--dry-run"]);
    }));

    let ledger_bytes = write_ledger(root, &settings);
    let planned = {
        let catalog = Catalog::load(root);
        let ledger = FileStore::new(root.join(".imagegen/state.json"))
            .load()
            .expect("read the ledger")
            .ledger;
        plan::plan(&catalog, &ledger, PlanOptions::default()).summary()
    };
    check_binary(root, &["reconcile", "--dry-run"], 2);
    timings.push(measure("dry run, 10% vars changed", runs, || {
        run_binary(root, &["reconcile", "--dry-run"]);
    }));
    timings.push(measure("dry run, 10% vars changed, json", runs, || {
        run_binary(root, &["reconcile", "--dry-run", "--output", "json"]);
    }));
    timings.push(measure("  of which: load catalog", runs, || {
        Catalog::load(root);
    }));
    timings.push(measure("  of which: read ledger", runs, || {
        FileStore::new(root.join(".imagegen/state.json"))
            .read()
            .expect("read the ledger");
    }));
    let catalog = Catalog::load(root);
    let ledger = FileStore::new(root.join(".imagegen/state.json"))
        .read()
        .expect("read the ledger");
    timings.push(measure("  of which: plan + text", runs, || {
        plan::render_text(&plan::plan(&catalog, &ledger, PlanOptions::default()));
    }));

    let baseline = timings[0].median;
    println!(
        "{} definitions ({:.1} MB) using {} variables; ledger {:.1} MB; {} cores; median of {runs} runs",
        settings.definitions,
        definition_bytes as f64 / 1e6,
        settings.variables,
        ledger_bytes as f64 / 1e6,
        std::thread::available_parallelism().map_or(1, usize::from),
    );
    println!(
        "with the ledger: {} to submit (payload changed), {} unchanged\n",
        planned.to_submit, planned.unchanged
    );
    println!(
        "{:<30} {:>10} {:>10} {:>12}",
        "measurement", "median ms", "min ms", "x baseline"
    );
    for timing in &timings {
        println!(
            "{:<30} {:>10.1} {:>10.1} {:>12.2}",
            timing.name,
            milliseconds(timing.median),
            milliseconds(timing.min),
            timing.median.as_secs_f64() / baseline.as_secs_f64()
        );
    }

    println!(
        "\ntargets: dry run under {} ms, and within {TARGET_RATIO}x of read + parse (1 thread)",
        TARGET_DRY_RUN.as_millis()
    );
    let mut all_met = true;
    for timing in timings.iter().filter(|t| t.name.starts_with("dry run")) {
        let ratio = timing.median.as_secs_f64() / baseline.as_secs_f64();
        let met = timing.median < TARGET_DRY_RUN && ratio <= TARGET_RATIO;
        all_met &= met;
        println!(
            "  {:<28} {:>8.1} ms  {:>5.2}x  {}",
            timing.name,
            milliseconds(timing.median),
            ratio,
            if met { "PASS" } else { "FAIL" }
        );
    }
    if !all_met {
        std::process::exit(1);
    }
}
