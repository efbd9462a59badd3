//! The demo's story, in a build with the emulator: an Image Factory emulator runs in-process
//! on a fast clock, a bare git repository stands in for OSOB, and a throw-away copy of the
//! shipped definitions goes through this week's Visual Studio update, each step shown as the
//! command a person would type and printed as it prints.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anstyle::{AnsiColor, Style};
use anyhow::{Context as _, bail};
use include_dir::{Dir, include_dir};
use regex::Regex;

use super::DemoRequest;
use crate::apply::WaitOptions;
use crate::commands::factory_options::FactoryOptions;
use crate::commands::pr::PrRequest;
use crate::commands::vars::{self, update::UpdateRequest};
use crate::commands::{self, AdoptRequest, Context, ReconcileRequest};
use crate::exit::Exit;
use crate::factory::emulator::{Emulator, EmulatorConfig};
use crate::osob::mapping::MAPPING_FILE;
use crate::plan::PlanOptions;
use crate::sources::fetch::FetchSettings;
use crate::state::DEFAULT_STATE_PATH;
use crate::variables::{self, VARIABLES_FILE};

/// The definitions this build of imagegen ships, so the demo works from any folder.
static DEFINITIONS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/definitions");
/// A small OSOB with last week's image names; the OSOB tests use the same files.
static OSOB_FIXTURE: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/tests/fixtures/osob");
const SHIPPED_VARIABLES: &str = include_str!("../../../variables.json");
const SHIPPED_SOURCES: &str = include_str!("../../../variable-sources.json");
const SHIPPED_MAPPING: &str = include_str!("../../../osob-mapping/osob.json");

/// The values behind the image names the OSOB fixture holds: last week's. The other variables
/// appear in no image name, so their shipped values serve as last week's too.
const LAST_WEEK: &[(&str, &str)] = &[
    ("VS_2019_PREVIEW_VERSION", "16_11_0_3"),
    ("VS_2022_VERSION", "17_12_0"),
    ("WINDOWS_SERVER_2016_BUILD", "14393.7428.241008"),
    ("WINDOWS_SERVER_2019_BUILD", "17763.6414.241008"),
    ("WINDOWS_SERVER_2022_BUILD", "20348.2762.241006"),
    ("WINDOWS_SERVER_2025_BUILD", "26100.2033.241004"),
];

/// This week's change: the Visual Studio release, to the value variables.json ships.
const BUMPED: &str = "VS_2022_VERSION";

/// Images the emulator fails, so that the demo shows what a failure looks like.
const FAILING_IMAGES: &str = "Arm64";

/// How fast the emulator builds: a few seconds, so the whole story fits in well under 30.
const QUEUED_FOR: Duration = Duration::from_millis(800);
const RUNNING_FOR: Duration = Duration::from_millis(1600);
const POLL_INTERVAL: &str = "500ms";

const HEADING: Style = AnsiColor::Cyan.on_default().bold();
const COMMAND: Style = Style::new().bold();

/// What the demo expects of each step; a step that comes out otherwise fails the demo.
struct Expectations {
    problems: Vec<String>,
}

impl Expectations {
    fn exit(&mut self, step: &str, code: Exit, expected: Exit) {
        if code != expected {
            self.problems.push(format!(
                "{step} exited {}, expected {}",
                code.code(),
                expected.code()
            ));
        }
    }

    fn check(&mut self, holds: bool, problem: impl FnOnce() -> String) {
        if !holds {
            self.problems.push(problem());
        }
    }
}

/// `imagegen demo`: runs the weekly update end to end against local stand-ins and checks that
/// it came out as it should (one build failed and shown, the pull request printed, nothing
/// submitted twice). Exit code 0 when it did.
pub fn demo(context: &Context, request: DemoRequest) -> anyhow::Result<Exit> {
    if context.output.is_json() {
        bail!(
            "the demo has no JSON form: it tells a story for people; run the commands it shows \
             with --output json instead"
        );
    }
    let started = Instant::now();
    let folder = tempfile::Builder::new()
        .prefix("imagegen-demo-")
        .tempdir()
        .context("cannot create the demo's throw-away folder")?;
    let stage = Stage::create(folder.path())?;
    let emulator = Emulator::start_in_background(EmulatorConfig {
        queued_for: QUEUED_FOR,
        running_for: RUNNING_FOR,
        fail_images: Some(Regex::new(FAILING_IMAGES).expect("the pattern is a valid regex")),
        ..EmulatorConfig::default()
    })
    .context("cannot start the Image Factory emulator")?;
    let demo = Context::with_file(
        stage.repo.clone(),
        stage.repo.join(DEFAULT_STATE_PATH),
        context.output.clone(),
    );
    let factory = FactoryOptions {
        url: Some(emulator.url()),
        authority: Some(emulator.url()),
        credentials: Some(emulator.credentials()),
        ..FactoryOptions::default()
    };
    let this_week = shipped_value(BUMPED)?;
    let output = &context.output;
    output.text(&introduction(folder.path(), &emulator, request.keep))?;
    let mut expect = Expectations {
        problems: Vec::new(),
    };

    heading(
        context,
        "1. The first rollout: record last week's images, which OSOB names today, as built",
        "imagegen adopt",
    )?;
    let code = commands::adopt(
        &demo,
        AdoptRequest {
            lock_timeout: Duration::from_secs(5),
            ..AdoptRequest::default()
        },
    )?;
    expect.exit("imagegen adopt", code, Exit::Ok);

    // This week's release, published in a channel manifest served on loopback: the demo finds
    // it there, as the daily pipeline finds it in the real one.
    let channel = super::channel_server::ChannelServer::start(&this_week.replace('_', "."))
        .context("cannot start the demo's channel manifest server")?;
    heading(
        context,
        "2. This week's Visual Studio release, found where it is published: one variable changes",
        &format!(
            "IMAGEGEN_SOURCE_URL_REWRITE=https://aka.ms/={} imagegen vars update --only {BUMPED}",
            channel.url()
        ),
    )?;
    let code = vars::update::update(
        &demo,
        &UpdateRequest {
            only: vec![BUMPED.to_string()],
            fetch: FetchSettings {
                rewrites: vec![("https://aka.ms/".to_string(), channel.url())],
                ..FetchSettings::default()
            },
            lock_timeout: Duration::from_secs(5),
            ..UpdateRequest::default()
        },
    )?;
    expect.exit("imagegen vars update", code, Exit::Ok);
    let found = crate::catalog::read_variables_text(&stage.repo)
        .map(|text| {
            variables::Variables::parse(VARIABLES_FILE, &text)
                .0
                .get(BUMPED)
                == Some(this_week.as_str())
        })
        .unwrap_or(false);
    expect.check(found, || {
        format!("vars update did not find {this_week} for {BUMPED} in the channel manifest")
    });

    heading(
        context,
        "3. What the change leads to: the plan, and the OSOB edit if every build succeeds",
        "imagegen reconcile --dry-run",
    )?;
    let reconcile = ReconcileRequest {
        plan: PlanOptions::default(),
        lock_timeout: Duration::from_secs(5),
        factory: factory.clone(),
        pr: PrRequest {
            osob_url: Some(stage.osob_url()),
            ..PrRequest::default()
        },
        ..ReconcileRequest::default()
    };
    let code = commands::reconcile(
        &demo,
        ReconcileRequest {
            dry_run: true,
            ..reconcile.clone()
        },
    )?;
    expect.exit("imagegen reconcile --dry-run", code, Exit::Pending);
    let affected = affected_count(&stage.repo);

    heading(
        context,
        "4. Carry it out: submit, follow the jobs, then edit OSOB and print the pull request",
        &format!("imagegen reconcile --wait --poll-interval {POLL_INTERVAL}"),
    )?;
    let code = commands::reconcile(
        &demo,
        ReconcileRequest {
            wait: Some(WaitOptions {
                timeout: Duration::from_secs(60),
                poll_interval: crate::duration::parse_positive(POLL_INTERVAL)
                    .map_err(anyhow::Error::msg)?,
            }),
            ..reconcile.clone()
        },
    )?;
    // One image fails on purpose: the run says so with exit code 1.
    expect.exit("imagegen reconcile --wait", code, Exit::Error);
    let jobs_first = emulator.job_count();
    expect.check(jobs_first == affected, || {
        format!("the reconcile started {jobs_first} jobs, but {affected} definitions use {BUMPED}")
    });
    let branch_tip = stage.pr_branch_tip()?;
    expect.check(branch_tip.is_some(), || {
        "the OSOB branch was not pushed".to_string()
    });

    heading(
        context,
        "5. Run it again, as the pipeline's schedule does: nothing is built twice",
        "imagegen reconcile",
    )?;
    let code = commands::reconcile(&demo, reconcile.clone())?;
    // The failed build is reported again, and not resubmitted without --retry-failed.
    expect.exit("the second imagegen reconcile", code, Exit::Error);
    let jobs_second = emulator.job_count() - jobs_first;
    expect.check(jobs_second == 0, || {
        format!("the second reconcile started {jobs_second} jobs, expected none")
    });
    expect.check(stage.pr_branch_tip()? == branch_tip, || {
        "the second reconcile pushed the OSOB branch again".to_string()
    });

    let took = crate::duration::display(started.elapsed());
    if !expect.problems.is_empty() {
        for problem in &expect.problems {
            output.error(&format!("demo: {problem}"))?;
        }
        bail!("the demo did not go as it should ({took}); please report it with its output");
    }
    output.text(&conclusion(&took, jobs_first, &this_week))?;
    if request.keep {
        let kept = folder.keep();
        output.text(&format!(
            "The demo's files are kept in {}: try `imagegen --repo {} reconcile --dry-run`.\n",
            kept.display(),
            kept.join("repo").display()
        ))?;
    }
    Ok(Exit::Ok)
}

/// The demo's folder: the repository copy and the bare OSOB repository beside it.
struct Stage {
    repo: PathBuf,
    osob: PathBuf,
}

impl Stage {
    fn create(root: &Path) -> anyhow::Result<Self> {
        let stage = Self {
            repo: root.join("repo"),
            osob: root.join("osob.git"),
        };
        DEFINITIONS
            .extract(stage.repo.join(crate::definitions::DEFINITIONS_DIR))
            .context("cannot write the demo's definitions")?;
        let overrides: Vec<(String, String)> = LAST_WEEK
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        let last_week = variables::set_values(SHIPPED_VARIABLES, &overrides, false)
            .context("cannot set last week's values in the shipped variables.json")?;
        write(&stage.repo.join(VARIABLES_FILE), last_week.text.as_bytes())?;
        write(
            &stage.repo.join(crate::sources::SOURCES_FILE),
            SHIPPED_SOURCES.as_bytes(),
        )?;
        write(
            &stage.repo.join(MAPPING_FILE),
            local_mapping(&stage.osob)?.as_bytes(),
        )?;
        seed_osob(&stage.osob)?;
        Ok(stage)
    }

    fn osob_url(&self) -> String {
        self.osob.display().to_string()
    }

    fn pr_branch_tip(&self) -> anyhow::Result<Option<git2::Oid>> {
        let repository = git2::Repository::open_bare(&self.osob)
            .with_context(|| format!("cannot open {}", self.osob.display()))?;
        let branch = shipped_branch("pr_branch")?;
        Ok(repository
            .refname_to_id(&format!("refs/heads/{branch}"))
            .ok())
    }
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// The shipped mapping, pointed at the bare repository and at no pull-request service.
fn local_mapping(osob: &Path) -> anyhow::Result<String> {
    let mut mapping: serde_json::Value = serde_json::from_str(SHIPPED_MAPPING)
        .with_context(|| format!("the shipped {MAPPING_FILE} is not JSON"))?;
    mapping["repository"]["url"] = serde_json::Value::from(osob.display().to_string());
    mapping["provider"] = serde_json::json!({ "kind": "local" });
    let mut text = serde_json::to_string_pretty(&mapping)?;
    text.push('\n');
    Ok(text)
}

/// A branch the shipped mapping names: `pr_branch` or `base_branch`.
fn shipped_branch(key: &str) -> anyhow::Result<String> {
    let mapping: serde_json::Value = serde_json::from_str(SHIPPED_MAPPING)?;
    mapping["repository"][key]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("the shipped {MAPPING_FILE} names no {key}"))
}

/// A bare repository whose base branch holds the OSOB fixture in one commit.
fn seed_osob(path: &Path) -> anyhow::Result<()> {
    let repository = git2::Repository::init_bare(path)
        .with_context(|| format!("cannot create the bare repository {}", path.display()))?;
    let mut files = Vec::new();
    collect(&OSOB_FIXTURE, &mut files);
    let mut builder = git2::build::TreeUpdateBuilder::new();
    for (file, bytes) in files {
        let blob = repository.blob(bytes)?;
        builder.upsert(file, blob, git2::FileMode::Blob);
    }
    let empty = repository.find_tree(repository.treebuilder(None)?.write()?)?;
    let tree = repository.find_tree(builder.create_updated(&repository, &empty)?)?;
    let signature = git2::Signature::now("OSOB maintainer", "maintainer@osob.invalid")?;
    let base = shipped_branch("base_branch")?;
    repository.commit(
        Some(&format!("refs/heads/{base}")),
        &signature,
        &signature,
        "OSOB as it stands, with last week's images",
        &tree,
        &[],
    )?;
    repository.set_head(&format!("refs/heads/{base}"))?;
    Ok(())
}

fn collect<'a>(dir: &'a Dir<'a>, files: &mut Vec<(&'a Path, &'a [u8])>) {
    for file in dir.files() {
        files.push((file.path(), file.contents()));
    }
    for child in dir.dirs() {
        collect(child, files);
    }
}

fn shipped_value(name: &str) -> anyhow::Result<String> {
    let (shipped, _) = variables::Variables::parse(VARIABLES_FILE, SHIPPED_VARIABLES);
    shipped
        .get(name)
        .map(str::to_string)
        .with_context(|| format!("the shipped {VARIABLES_FILE} has no {name}"))
}

/// How many definitions the bump rebuilds, as `imagegen affected` counts them.
fn affected_count(repo: &Path) -> usize {
    crate::catalog::Catalog::load(repo)
        .affected_by(&[BUMPED.to_string()])
        .len()
}

fn heading(context: &Context, title: &str, command: &str) -> anyhow::Result<()> {
    context.output.text(&format!(
        "\n{HEADING}── {title}{HEADING:#}\n{COMMAND}$ {command}{COMMAND:#}\n"
    ))?;
    Ok(())
}

fn introduction(folder: &Path, emulator: &Emulator, keep: bool) -> String {
    format!(
        "imagegen demo: the weekly Visual Studio update, start to finish, on this machine alone.\n\
         \n\
         Everything happens in {folder}{removed}:\n\
         - repo/: a copy of the definitions, variables.json (with last week's values) and the OSOB\n  \
           mapping this imagegen ships; the ledger starts empty\n\
         - osob.git/: a bare git repository standing in for OSOB, naming last week's images\n\
         - Image Factory: an emulator at {url} that builds in about {build} and fails every\n  \
           image named *{FAILING_IMAGES}*, to show what a failure looks like\n\
         The commands below run against these, as they would with IMAGE_FACTORY_URL pointing at the\n\
         emulator. The pull request provider is `local`: it prints the pull request, opening none.\n",
        folder = folder.display(),
        removed = if keep {
            ", kept afterwards"
        } else {
            ", removed at the end (--keep keeps it)"
        },
        url = emulator.url(),
        build = crate::duration::display(QUEUED_FOR + RUNNING_FOR),
    )
}

fn conclusion(took: &str, jobs: usize, this_week: &str) -> String {
    format!(
        "\n{HEADING}── Done in {took}{HEADING:#}\n\
         {BUMPED} moved to {this_week}: {jobs} definitions were submitted once each, one failed and\n\
         was reported with the service's message, the others went into one OSOB pull request,\n\
         and the second run submitted nothing. For the real thing, read docs/user-guide.md; when\n\
         a run fails, docs/first-responder.md.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_week_names_only_variables_that_exist() {
        for (name, _) in LAST_WEEK {
            assert!(
                shipped_value(name).is_ok(),
                "{name} is not in variables.json"
            );
        }
        assert_ne!(
            shipped_value(BUMPED).unwrap(),
            LAST_WEEK
                .iter()
                .find(|(name, _)| *name == BUMPED)
                .unwrap()
                .1,
            "this week's value differs from last week's"
        );
    }

    #[test]
    fn the_fixture_and_the_definitions_are_embedded() {
        let mut files = Vec::new();
        collect(&OSOB_FIXTURE, &mut files);
        assert!(
            files
                .iter()
                .any(|(path, _)| path.ends_with("definitions/images.json"))
        );
        let mut definitions = Vec::new();
        collect(&DEFINITIONS, &mut definitions);
        let on_disk = crate::catalog::definition_ids(Path::new(env!("CARGO_MANIFEST_DIR")));
        assert_eq!(definitions.len(), on_disk.len());
    }
}
