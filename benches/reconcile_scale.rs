//! The reconcile benchmark: generates 1,000 and 5,000 definitions, starts the Image Factory
//! emulator with its fault rate on, and times the release binary's `reconcile --wait` against
//! it, on the file ledger and (when Azurite is installed) on the blob ledger. It prints the wall
//! time against what the emulator alone needs for the same requests, GETs per job against the
//! ideal, the bytes written to the ledger against its final size, and peak RSS.
//!
//! Run: `cargo bench --bench reconcile_scale` (options: `-- --jobs 200,1000 --concurrency N
//! --fault-rate 0.33 --queued-for 5s --running-for 25s --poll-interval 5s --ledger file,blob
//! --keep DIR`). Exits with status 1 when a target is missed. docs/benchmarks.md explains the
//! ideal and the targets. `IMAGEGEN_BIN` and `EMULATOR_BIN` run other builds of the two
//! programs (an earlier commit's, to compare).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use imagegen::duration;
use imagegen::factory::TokenVersion;
use imagegen::factory::client::NO_SUCH_JOB;

#[allow(dead_code)]
#[path = "../tests/it/common/azurite.rs"]
mod azurite;

/// The imagegen program: `IMAGEGEN_BIN`, or this build's.
fn imagegen_bin() -> PathBuf {
    std::env::var_os("IMAGEGEN_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_imagegen")),
        PathBuf::from,
    )
}

/// The emulator program: `EMULATOR_BIN`, or this build's.
fn emulator_bin() -> PathBuf {
    std::env::var_os("EMULATOR_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_image-factory-emulator")),
        PathBuf::from,
    )
}

/// Where the checkout is: the Azurite helper looks for its copy under `target/test-tools`.
fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The targets of issue 15, as ratios (see docs/benchmarks.md).
const TARGET_LEDGER_RATIO: f64 = 3.0;
const TARGET_GET_RATIO: f64 = 1.2;
const TARGET_WALL_RATIO: f64 = 1.5;
const TARGET_RSS_BYTES: u64 = 100 * 1000 * 1000;
/// The RSS target holds up to this many jobs.
const RSS_TARGET_JOBS: usize = 5000;
/// Requests sent to the emulator to learn how fast it answers at the run's concurrency.
const CALIBRATION_REQUESTS: usize = 3000;
/// imagegen's growth of the wait between polls, and its cap (`apply::MAX_POLL_INTERVAL`).
const POLL_GROWTH: f64 = 1.5;
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LedgerKind {
    File,
    Blob,
}

impl LedgerKind {
    fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Blob => "blob (Azurite)",
        }
    }
}

struct Settings {
    jobs: Vec<usize>,
    concurrency: u16,
    fault_rate: f64,
    queued_for: Duration,
    running_for: Duration,
    poll_interval: Duration,
    ledgers: Vec<LedgerKind>,
    keep: Option<PathBuf>,
}

impl Settings {
    fn from_args() -> Self {
        let mut settings = Self {
            jobs: vec![1000, 5000],
            concurrency: imagegen::factory::DEFAULT_CONCURRENCY,
            fault_rate: 0.33,
            queued_for: Duration::from_secs(5),
            running_for: Duration::from_secs(25),
            poll_interval: Duration::from_secs(5),
            ledgers: vec![LedgerKind::File, LedgerKind::Blob],
            keep: None,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut index = 0;
        while index < args.len() {
            let name = args[index].as_str();
            let value = || {
                args.get(index + 1)
                    .map(String::as_str)
                    .unwrap_or_else(|| panic!("{name} needs a value"))
            };
            let time =
                || duration::parse(value()).unwrap_or_else(|error| panic!("{name}: {error}"));
            match name {
                "--jobs" => {
                    settings.jobs = value()
                        .split(',')
                        .map(|jobs| jobs.parse().expect("--jobs takes whole numbers"))
                        .collect();
                }
                "--concurrency" => {
                    settings.concurrency = value().parse().expect("--concurrency takes a number")
                }
                "--fault-rate" => {
                    settings.fault_rate = value().parse().expect("--fault-rate takes a share")
                }
                "--queued-for" => settings.queued_for = time(),
                "--running-for" => settings.running_for = time(),
                "--poll-interval" => settings.poll_interval = time(),
                "--ledger" => {
                    settings.ledgers = value()
                        .split(',')
                        .map(|kind| match kind {
                            "file" => LedgerKind::File,
                            "blob" => LedgerKind::Blob,
                            other => panic!("--ledger takes file or blob, not {other:?}"),
                        })
                        .collect();
                }
                "--keep" => settings.keep = Some(PathBuf::from(value())),
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

    fn job_duration(&self) -> Duration {
        self.queued_for + self.running_for
    }
}

/// A payload of about 1.4 KB shaped like the shipped definitions, with an image name of its own.
fn definition_json(index: usize) -> String {
    format!(
        r#"{{
  "BaseImage": {{
    "Publisher": "MicrosoftWindowsServer",
    "Offer": "WindowsServer",
    "Sku": "2022-datacenter",
    "Version": "{{WINDOWS_SERVER_2022_BUILD}}"
  }},
  "Location": "westus2",
  "VMSize": "Standard_D8s_v5",
  "OsDiskSizeGB": 256,
  "Artifacts": [
    {{ "Name": "windows-enable-long-paths", "Parameters": {{}} }},
    {{
      "Name": "windows-vs-release",
      "Parameters": {{
        "Channel": "Release",
        "WorkLoads": "reduced",
        "Sku": "Enterprise",
        "VSBootstrapperURL": "{{VS_2022_CHANNEL_URL}}/vs_Enterprise.exe"
      }}
    }},
    {{
      "Name": "windows-helix-prereqs",
      "Parameters": {{ "PythonVersion": "3.12", "InstallDotNetRuntimes": "true" }}
    }}
  ],
  "Tags": {{ "Owner": "dnceng", "Purpose": "helix", "Definition": "scale/image-{index:05}" }},
  "Destination": [
    {{
      "StorageAccountName": "heliximgfctdncwus2",
      "CustomImageName": "Helix-Scale-{index:05}_{{VS_2022_VERSION}}",
      "SubId": "84a65c9a-787d-45da-b10a-3a1cefce8060"
    }}
  ]
}}
"#
    )
}

const VARIABLES_JSON: &str = r#"{
  "VS_2022_CHANNEL_URL": "https://aka.ms/vs/17/release",
  "VS_2022_VERSION": "17_12_1",
  "WINDOWS_SERVER_2022_BUILD": "20348.2849.241106"
}
"#;

fn write_repository(root: &Path, jobs: usize) {
    for index in 0..jobs {
        let folder = root.join(format!("definitions/group-{:02}", index % 50));
        std::fs::create_dir_all(&folder).expect("create a definitions folder");
        std::fs::write(
            folder.join(format!("image-{index:05}.json")),
            definition_json(index),
        )
        .expect("write a definition");
    }
    std::fs::write(root.join("variables.json"), VARIABLES_JSON).expect("write variables.json");
}

/// The emulator program, running; killed when dropped.
struct EmulatorProcess {
    child: Child,
    /// Kept open: the program prints its environment and then nothing, but a closed pipe would
    /// make any later line fail.
    _stdout: BufReader<ChildStdout>,
    environment: Vec<(String, String)>,
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl EmulatorProcess {
    fn start(settings: &Settings) -> Self {
        let mut child = Command::new(emulator_bin())
            .args([
                "--queued-for",
                &format!("{}ms", settings.queued_for.as_millis()),
            ])
            .args([
                "--running-for",
                &format!("{}ms", settings.running_for.as_millis()),
            ])
            .args(["--fault-rate", &settings.fault_rate.to_string()])
            .args(["--faults", "503"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start image-factory-emulator");
        let mut stdout = BufReader::new(child.stdout.take().expect("the emulator's stdout"));
        let mut environment = Vec::new();
        let mut line = String::new();
        // It prints its URL, then one `export NAME=VALUE` line per variable imagegen needs.
        while environment.len() < 6 {
            line.clear();
            let read = stdout
                .read_line(&mut line)
                .expect("read the emulator's output");
            assert!(
                read > 0,
                "the emulator stopped before printing its environment"
            );
            if let Some((name, value)) = line
                .trim()
                .strip_prefix("export ")
                .and_then(|pair| pair.split_once('='))
            {
                environment.push((name.to_string(), value.to_string()));
            }
        }
        Self {
            child,
            _stdout: stdout,
            environment,
        }
    }

    fn variable(&self, name: &str) -> &str {
        self.environment
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, value)| value.as_str())
            .unwrap_or_else(|| panic!("the emulator printed no {name}"))
    }

    fn url(&self) -> &str {
        self.variable("IMAGE_FACTORY_URL")
    }
}

/// How long the emulator takes per request when `concurrency` requests are in flight: a burst
/// of GETs for the job no one has, with a token, from a bare client.
async fn calibrate(emulator: &EmulatorProcess, concurrency: usize) -> Duration {
    let http = reqwest::Client::new();
    let token_url = format!(
        "{}{}",
        emulator.url(),
        TokenVersion::V2.route(emulator.variable("IMAGE_FACTORY_TENANT_ID"))
    );
    let scope = TokenVersion::scope(emulator.variable("IMAGE_FACTORY_RESOURCE_ID"));
    let answer: serde_json::Value = http
        .post(token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", emulator.variable("IMAGE_FACTORY_CLIENT_ID")),
            (
                "client_secret",
                emulator.variable("IMAGE_FACTORY_CLIENT_SECRET"),
            ),
            ("scope", scope.as_str()),
        ])
        .send()
        .await
        .expect("the emulator issues a token")
        .json()
        .await
        .expect("a token answer");
    let token = answer["access_token"]
        .as_str()
        .expect("a token answer has a token")
        .to_string();
    let url = format!("{}api/jobs/{NO_SUCH_JOB}", emulator.url());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        let share = CALIBRATION_REQUESTS / concurrency
            + usize::from(worker < CALIBRATION_REQUESTS % concurrency);
        tasks.spawn(async move {
            for _ in 0..share {
                let answer = http.get(&url).bearer_auth(&token).send().await;
                let answer = answer.expect("the emulator answers");
                let _ = answer.bytes().await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a calibration task finishes");
    }
    started.elapsed() / CALIBRATION_REQUESTS as u32
}

/// One request of the emulator's log, as far as the benchmark reads it.
#[derive(serde::Deserialize)]
struct Logged {
    method: String,
    path: String,
    route: Option<String>,
    fault: Option<String>,
}

#[derive(Debug, Default)]
struct Requests {
    gets: usize,
    posts: usize,
    faulted: usize,
}

async fn count_requests(emulator: &EmulatorProcess) -> Requests {
    let log: Vec<Logged> = reqwest::get(format!("{}_emulator/requests", emulator.url()))
        .await
        .expect("the emulator serves its log")
        .json()
        .await
        .expect("the emulator's log is JSON");
    let mut requests = Requests::default();
    for logged in log
        .iter()
        .filter(|logged| logged.route.as_deref() == Some("jobs"))
        .filter(|logged| !logged.path.ends_with(NO_SUCH_JOB))
    {
        match logged.method.as_str() {
            "GET" => requests.gets += 1,
            "POST" => requests.posts += 1,
            _ => {}
        }
        requests.faulted += usize::from(logged.fault.is_some());
    }
    requests
}

/// The polls a job needs under imagegen's schedule when it takes `job` to build: the first wait
/// is `interval`, each next one half as long again. Returns the count and when the last is.
fn polls_needed(job: Duration, interval: Duration) -> (usize, Duration) {
    let mut at = Duration::ZERO;
    let mut wait = interval;
    let mut polls = 0;
    loop {
        at += wait;
        polls += 1;
        if at >= job {
            return (polls, at);
        }
        wait = wait
            .mul_f64(POLL_GROWTH)
            .min(MAX_POLL_INTERVAL.max(interval));
    }
}

/// What the emulator alone needs for a run of `jobs`: every request (each one that fails
/// retried, at the fault rate) served at the calibrated pace, plus the poll schedule's wait
/// for the builds.
struct Ideal {
    gets: f64,
    wall: Duration,
}

fn ideal(settings: &Settings, jobs: usize, per_request: Duration) -> Ideal {
    let tries = 1.0 / (1.0 - settings.fault_rate);
    let (polls, last_poll) = polls_needed(settings.job_duration(), settings.poll_interval);
    let posts = jobs as f64 * tries;
    let last_round = jobs as f64 * tries;
    Ideal {
        gets: jobs as f64 * polls as f64 * tries,
        wall: per_request.mul_f64(posts + last_round) + last_poll,
    }
}

/// What one run of imagegen left behind.
struct Run {
    wall: Duration,
    exit: Option<i32>,
    peak_rss: Option<u64>,
    writes: u64,
    bytes_written: u64,
    /// From the first log line to the last submission's answer.
    submitting: Option<Duration>,
    stderr: PathBuf,
}

fn imagegen(root: &Path, emulator: &EmulatorProcess, settings: &Settings, state: &str) -> Run {
    let stderr = root.join("imagegen.stderr");
    let rss_file = root.join("imagegen.rss");
    let time = Path::new("/usr/bin/time");
    let mut command = if time.exists() {
        let mut command = Command::new(time);
        command.arg("-o").arg(&rss_file).args(["-f", "%M"]);
        command.arg(imagegen_bin());
        command
    } else {
        Command::new(imagegen_bin())
    };
    // Run as by hand: a CI platform would refuse to start an empty ledger.
    for variable in imagegen::platform::CI_VARIABLES {
        command.env_remove(variable);
    }
    command
        .envs(
            emulator
                .environment
                .iter()
                .map(|(name, value)| (name, value)),
        )
        .env("RUST_LOG", "imagegen=debug")
        .env("NO_COLOR", "1")
        .arg("--repo")
        .arg(root)
        .args(["reconcile", "--wait", "--no-pr", "--timeout", "30m"])
        .args([
            "--poll-interval",
            &format!("{}ms", settings.poll_interval.as_millis()),
        ])
        .args(["--concurrency", &settings.concurrency.to_string()])
        .args(["--state", state])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("create the stderr file"));
    let started = Instant::now();
    let mut child = command.spawn().expect("start imagegen");
    // Without /usr/bin/time, the high-water mark is read while it runs.
    let mut peak = None;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for imagegen") {
            break status;
        }
        if !time.exists()
            && let Some(kib) = vm_hwm_kib(child.id())
        {
            peak = Some(kib * 1024);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = started.elapsed();
    if let Ok(text) = std::fs::read_to_string(&rss_file) {
        peak = text
            .lines()
            .last()
            .and_then(|line| line.trim().parse::<u64>().ok())
            .map(|kib| kib * 1024);
    }
    let log = std::fs::read_to_string(&stderr).expect("read imagegen's stderr");
    let (writes, bytes_written) = ledger_writes(&log);
    Run {
        wall,
        exit: status.code(),
        peak_rss: peak,
        writes,
        bytes_written,
        submitting: submitting(&log),
        stderr,
    }
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// How long the submissions took: from the first line of the debug log to the last
/// submission's answer (`DEBUG POST ... status=`), by the lines' timestamps.
fn submitting(log: &str) -> Option<Duration> {
    let at = |line: &str| {
        let stamp = line.split_whitespace().next()?;
        stamp.parse::<jiff::Timestamp>().ok()
    };
    let first = log.lines().find_map(at)?;
    let last_post = log
        .lines()
        .rev()
        .filter(|line| line.contains(" DEBUG POST ") && line.contains(" status="))
        .find_map(at)?;
    Duration::try_from(last_post.duration_since(first)).ok()
}

/// The sum of the ledger writers' `ledger writes: N writes, M bytes written` lines.
fn ledger_writes(log: &str) -> (u64, u64) {
    log.lines()
        .filter_map(|line| line.split_once("ledger writes: ").map(|(_, rest)| rest))
        .filter_map(|rest| {
            let (writes, rest) = rest.split_once(" writes, ")?;
            let bytes = rest.split_once(" bytes written")?.0;
            Some((
                writes.trim().parse::<u64>().ok()?,
                bytes.trim().parse::<u64>().ok()?,
            ))
        })
        .fold((0, 0), |(writes, bytes), (w, b)| (writes + w, bytes + b))
}

/// The size of a blob in Azurite's `bench` container, 0 when there is none. A client of its
/// own: Azurite closes idle connections, and a pooled one from the start of the run is stale.
async fn blob_size(azurite: &azurite::Azurite, blob: &str) -> u64 {
    let answer = reqwest::Client::new()
        .get(azurite.blob_url("bench", blob))
        .header("x-ms-version", "2020-12-06")
        .send()
        .await
        .unwrap_or_else(|error| panic!("reading blob {blob} from Azurite: {error}"));
    match answer.status().as_u16() {
        404 => 0,
        200 => answer.bytes().await.map_or(0, |bytes| bytes.len() as u64),
        status => panic!("reading blob {blob} from Azurite answered {status}"),
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |metadata| metadata.len())
}

fn megabytes(bytes: u64) -> String {
    if bytes >= 1_000_000_000 {
        format!("{:.2} GB", bytes as f64 / 1e9)
    } else {
        format!("{:.2} MB", bytes as f64 / 1e6)
    }
}

struct Verdicts {
    all_met: bool,
}

impl Verdicts {
    fn line(&mut self, what: &str, figure: String, against: String, ratio: Option<f64>, met: bool) {
        self.all_met &= met;
        println!(
            "  {what:<16} {figure:>12}   {against:<42} {:>8}  {}",
            ratio.map_or(String::new(), |ratio| format!("{ratio:.2}x")),
            if met { "PASS" } else { "FAIL" }
        );
    }
}

fn main() {
    let settings = Settings::from_args();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("start a runtime");
    let azurite_installed = std::env::var_os("AZURITE_BIN").is_some()
        || manifest_dir()
            .join("target/test-tools/azurite/node_modules/.bin/azurite-blob")
            .exists();
    let (polls, last_poll) = polls_needed(settings.job_duration(), settings.poll_interval);
    println!(
        "jobs built in {:?} (queued {:?}, running {:?}); first poll after {:?}, each wait half as \
         long again: {polls} polls a job, the last at {:.1?}; 503 on {:.0}% of jobs requests; \
         --concurrency {}; {} cores\n",
        settings.job_duration(),
        settings.queued_for,
        settings.running_for,
        settings.poll_interval,
        last_poll,
        settings.fault_rate * 100.0,
        settings.concurrency,
        std::thread::available_parallelism().map_or(1, usize::from),
    );
    let mut verdicts = Verdicts { all_met: true };
    for &jobs in &settings.jobs {
        for &kind in &settings.ledgers {
            if kind == LedgerKind::Blob && !azurite_installed {
                println!(
                    "{jobs} jobs, blob ledger: skipped, Azurite is not installed (.ci/run installs \
                     it under target/test-tools; or set AZURITE_BIN)\n"
                );
                continue;
            }
            let folder = tempfile::tempdir().expect("create a temporary folder");
            let root = match &settings.keep {
                Some(kept) => {
                    let root = kept.join(format!(
                        "{jobs}-{}",
                        kind.name().split(' ').next().unwrap_or("ledger")
                    ));
                    std::fs::create_dir_all(&root).expect("create the folder to keep");
                    root
                }
                None => folder.path().to_path_buf(),
            };
            write_repository(&root, jobs);
            let emulator = EmulatorProcess::start(&settings);
            let per_request =
                runtime.block_on(calibrate(&emulator, usize::from(settings.concurrency)));
            let azurite = (kind == LedgerKind::Blob).then(azurite::Azurite::start);
            let (state, run) = match &azurite {
                None => {
                    let state = root.join("ledger/state.json");
                    std::fs::create_dir_all(root.join("ledger")).expect("create the ledger folder");
                    let run = imagegen(&root, &emulator, &settings, &state.to_string_lossy());
                    (state.to_string_lossy().into_owned(), run)
                }
                Some(azurite) => {
                    let container = runtime.block_on(azurite.container("bench"));
                    let url = azurite.blob_url(&container, "state.json");
                    let run = imagegen(&root, &emulator, &settings, &url);
                    (url, run)
                }
            };
            let (ledger_size, journal_size) = match &azurite {
                None => (
                    file_size(Path::new(&state)),
                    file_size(Path::new(&format!("{state}.journal"))),
                ),
                Some(azurite) => runtime.block_on(async {
                    (
                        blob_size(azurite, "state.json").await,
                        blob_size(azurite, "state.json.journal").await,
                    )
                }),
            };
            let requests = runtime.block_on(count_requests(&emulator));
            drop(emulator);
            let ideal = ideal(&settings, jobs, per_request);

            println!(
                "{jobs} jobs, {} ledger: imagegen exited {}; {} POSTs, {} GETs, {} answered 503; \
                 emulator alone: {:.0} µs a request at concurrency {}",
                kind.name(),
                run.exit
                    .map_or("on a signal".to_string(), |code| code.to_string()),
                requests.posts,
                requests.gets,
                requests.faulted,
                per_request.as_secs_f64() * 1e6,
                settings.concurrency,
            );
            if let Some(submitting) = run.submitting {
                println!(
                    "  submissions took {:.1} s (the emulator alone: {:.1} s); the wait after them \
                     {:.1} s (the poll schedule: {:.1} s)",
                    submitting.as_secs_f64(),
                    per_request.as_secs_f64() * jobs as f64 / (1.0 - settings.fault_rate),
                    run.wall.saturating_sub(submitting).as_secs_f64(),
                    last_poll.as_secs_f64(),
                );
            }
            let exited_well = run.exit == Some(0);
            if !exited_well {
                println!(
                    "  imagegen did not finish every job: see {}",
                    run.stderr.display()
                );
                verdicts.all_met = false;
            }
            let wall_ratio = run.wall.as_secs_f64() / ideal.wall.as_secs_f64();
            verdicts.line(
                "wall time",
                format!("{:.1} s", run.wall.as_secs_f64()),
                format!("emulator alone {:.1} s", ideal.wall.as_secs_f64()),
                Some(wall_ratio),
                wall_ratio <= TARGET_WALL_RATIO,
            );
            let get_ratio = requests.gets as f64 / ideal.gets;
            verdicts.line(
                "GETs per job",
                format!("{:.2}", requests.gets as f64 / jobs as f64),
                format!("ideal {:.2}", ideal.gets / jobs as f64),
                Some(get_ratio),
                get_ratio <= TARGET_GET_RATIO,
            );
            let kept = ledger_size + journal_size;
            let ledger_ratio = run.bytes_written as f64 / kept.max(1) as f64;
            verdicts.line(
                "ledger written",
                megabytes(run.bytes_written),
                format!(
                    "{} writes; final {} + journal {}",
                    run.writes,
                    megabytes(ledger_size),
                    megabytes(journal_size)
                ),
                Some(ledger_ratio),
                run.writes > 0 && ledger_ratio <= TARGET_LEDGER_RATIO,
            );
            match run.peak_rss {
                Some(peak) => verdicts.line(
                    "peak RSS",
                    megabytes(peak),
                    format!("target under {}", megabytes(TARGET_RSS_BYTES)),
                    None,
                    jobs > RSS_TARGET_JOBS || peak < TARGET_RSS_BYTES,
                ),
                None => println!("  peak RSS         not measured"),
            }
            println!();
        }
    }
    println!(
        "targets: wall time <= {TARGET_WALL_RATIO}x the emulator alone, GETs <= \
         {TARGET_GET_RATIO}x the ideal, ledger bytes written <= {TARGET_LEDGER_RATIO}x (final \
         ledger + journal), peak RSS under 100 MB up to {RSS_TARGET_JOBS} jobs"
    );
    if !verdicts.all_met {
        std::process::exit(1);
    }
}
