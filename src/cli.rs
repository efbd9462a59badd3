//! The command line: clap types only, turned once into the library's requests.

use std::path::PathBuf;

use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgGroup, Args, CommandFactory as _, Parser, Subcommand, ValueEnum};
use imagegen::apply::WaitOptions;
use imagegen::commands::demo::DemoRequest;
use imagegen::commands::doctor::DoctorRequest;
use imagegen::commands::factory_options::FactoryOptions;
use imagegen::commands::ledger::{ImportRequest, LedgerRequest};
use imagegen::commands::pr::PrRequest;
use imagegen::commands::status::StatusRequest;
use imagegen::commands::submit::{SubmitRequest, SubmitTarget};
use imagegen::commands::vars::update::UpdateRequest;
use imagegen::commands::vars::{DiffRequest, SetRequest, VarsRequest};
use imagegen::commands::{AdoptRequest, Context, ReconcileRequest};
use imagegen::duration;
use imagegen::factory::TokenVersion;
use imagegen::output::{Format, Output};
use imagegen::plan::PlanOptions;
use imagegen::platform::{self, Platform};
use imagegen::settings::{self, Setting, SettingError, Source};
use imagegen::sources::fetch::FetchSettings;
use imagegen::state::MissingLedger;
use imagegen::variables;

const EXIT_CODES: &str = "\
Exit codes:
  0  done: no problem, nothing to submit, nothing pending
  1  an error (every problem is listed), or a job that failed
  2  changes planned or jobs still pending";

/// `0.1.0 (abc123def456)`: the commit tells which build a pipeline ran; `, dirty` that the tree
/// it was built from had changes no commit holds; `unknown commit` a build outside git.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("IMAGEGEN_BUILD_COMMIT"),
    ")"
);

const ABOUT: &str = "Builds Helix's Windows base images with Image Factory from the definitions \
committed in this repository, and keeps the OSOB configuration pointing at them.";

#[derive(Debug, Parser)]
#[command(name = "imagegen", version = VERSION, about = ABOUT, after_help = EXIT_CODES, max_term_width = 100)]
pub struct Cli {
    /// The repository holding definitions/ and variables.json
    #[arg(
        long,
        global = true,
        display_order = 101,
        env = "IMAGEGEN_REPO",
        value_name = "DIR",
        default_value = "."
    )]
    pub repo: PathBuf,

    /// The ledger of submitted jobs: a file, or an Azure blob URL with a SAS token
    /// [default: <repo>/.imagegen/state.json]
    #[arg(
        long,
        global = true,
        display_order = 102,
        env = "IMAGEGEN_STATE",
        value_name = "PATH|URL",
        hide_env_values = true
    )]
    pub state: Option<String>,

    /// Start an empty ledger if none exists: needed once, for the first run on a CI platform,
    /// where a missing ledger is otherwise refused (it means a wrong --state)
    #[arg(long, global = true, display_order = 103)]
    pub init_ledger: bool,

    /// Text for people, or one JSON document for machines
    #[arg(long, global = true, display_order = 104, value_enum, default_value_t = OutputArg::Text, value_name = "FORMAT")]
    pub output: OutputArg,

    /// When to colour text (NO_COLOR and CLICOLOR_FORCE are respected with auto)
    #[arg(long, global = true, display_order = 105, value_enum, default_value_t = ColorArg::Auto, value_name = "WHEN")]
    pub color: ColorArg,

    /// More logging on stderr (-v, -vv, -vvv); RUST_LOG overrides
    #[arg(short, long, global = true, display_order = 106, action = ArgAction::Count)]
    pub verbose: u8,

    /// Leave out warnings and notes; results and errors are still shown
    #[arg(short, long, global = true, display_order = 107)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorArg {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the whole loop on this machine: no secrets, no network, in a few seconds
    #[command(after_help = DEMO_HELP)]
    Demo(DemoArgs),

    /// Load and render every definition, and report every problem found
    #[command(after_help = "\
Examples:
  imagegen validate
  imagegen validate --output json")]
    Validate,

    /// Print one definition's payload rendered with variables.json
    #[command(after_help = "\
Examples:
  imagegen render vs2019-preview/server-2019-19h1-es-es-enterprise
  imagegen render definitions/vs2022/server-2022-enterprise.json
  imagegen render my-payload.json --output json")]
    Render {
        /// A definition id (its path under definitions/ without .json), or a path to a payload
        #[arg(value_name = "DEFINITION")]
        definition: String,
    },

    /// List the definitions that use any of the given variables
    #[command(after_help = "\
Examples:
  imagegen affected VS_2019_PREVIEW_VERSION
  imagegen affected VS_2019_PREVIEW_URL,VS_2019_PREVIEW_VERSION --output json")]
    Affected {
        /// Variable names, separated by spaces or commas
        #[arg(value_name = "VAR", required = true, value_delimiter = ',')]
        variables: Vec<String>,
    },

    /// Submit every definition whose payload changed, follow the jobs, then update OSOB
    #[command(after_help = RECONCILE_HELP)]
    Reconcile(ReconcileArgs),

    /// Record today's images as built, without submitting (the first rollout, or a hand build)
    #[command(after_help = ADOPT_HELP)]
    Adopt(AdoptArgs),

    /// Show every definition's image and whether OSOB uses it, or Image Factory jobs by id
    #[command(after_help = STATUS_HELP)]
    Status(StatusArgs),

    /// Submit a payload file, or every definition using some variables, to Image Factory
    #[command(
        group(ArgGroup::new("what").required(true).args(["payload", "vars"])),
        after_help = SUBMIT_HELP
    )]
    Submit(SubmitArgs),

    /// Point OSOB at the images built: edit its files, push one branch, open or update one PR
    #[command(after_help = PR_HELP)]
    Pr(PrArgs),

    /// List, change or compare the values in variables.json, with the definitions they rebuild
    #[command(after_help = VARS_HELP)]
    Vars(VarsArgs),

    /// Check that every service a run needs lets it through, before it runs: changes nothing
    #[command(after_help = DOCTOR_HELP)]
    Doctor(DoctorArgs),

    /// Copy the ledger to a file, or restore it from such a copy
    #[command(after_help = LEDGER_HELP)]
    Ledger(LedgerArgs),

    /// Print the shell completion script for imagegen
    #[command(after_help = COMPLETIONS_HELP)]
    Completions {
        /// The shell to complete in
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}

const VARS_HELP: &str = "\
Examples:
  imagegen vars list
  imagegen vars set VS_2022_VERSION=17_12_2 --dry-run
  imagegen vars set VS_2022_VERSION=17_12_2
  imagegen vars diff HEAD
  imagegen vars update --dry-run

Exit codes: 0 done, 1 an error (nothing is written then).";

#[derive(Debug, Args)]
pub struct VarsArgs {
    #[command(subcommand)]
    pub command: VarsCommand,
}

#[derive(Debug, Subcommand)]
pub enum VarsCommand {
    /// Every variable in file order: its value and how many definitions use it
    #[command(after_help = "\
Examples:
  imagegen vars list
  imagegen vars list --output json

A variable no definition uses is marked unused. Exit code 1 when variables.json or a definition
has errors (each is listed with its file, line and column).")]
    List,

    /// Change values in variables.json in place, keeping every other byte of the file
    #[command(after_help = VARS_SET_HELP)]
    Set(VarsSetArgs),

    /// What changed in variables.json since a git revision, and what each change rebuilds
    #[command(after_help = "\
Examples:
  imagegen vars diff HEAD
  imagegen vars diff HEAD~1
  imagegen vars diff origin/main --output json

Compares variables.json at the revision with the file in the working tree (uncommitted edits
included). A revision without variables.json counts every variable as added.
Exit codes: 0 done, 1 an error (not a git repository, unknown revision, a file with errors).")]
    Diff(VarsDiffArgs),

    /// Find each variable's newest value where it is published, and write or propose it
    #[command(after_help = VARS_UPDATE_HELP)]
    Update(VarsUpdateArgs),
}

const VARS_UPDATE_HELP: &str = "\
Examples:
  imagegen vars update --dry-run
  imagegen vars update --only VS_2022_VERSION
  imagegen vars update --pr
  imagegen vars update --dry-run --output json

Reads variable-sources.json (see docs/variable-sources.md): for each variable, where its newest
value is published (a Visual Studio channel manifest, Azure Marketplace image versions through
Resource Manager, or a JSON document), how the value is written, and the rules that hold a newer
version back (within, ignore, min_age). Prints each variable's current and newest value, why a
newer one is not proposed, the definitions each change rebuilds and the image names old -> new,
warning of any image whose name would not change. Without --dry-run it writes variables.json in
place as `vars set` does; with --pr it pushes one branch on this repository instead (rebuilt
from the base branch, never over someone else's commit) and opens or updates one pull request.
A source that fails changes nothing, and is named with its variable.
Exit codes: 0 done or up to date, 2 (dry run) newer values found, 1 an error (nothing written).
Marketplace sources need the IMAGE_FACTORY_TENANT_ID, _CLIENT_ID and _CLIENT_SECRET settings and
a subscription; --pr needs the provider's token (see docs/configuration.md).";

#[derive(Debug, Args)]
pub struct VarsUpdateArgs {
    /// Show what would change; write, push and record nothing
    #[arg(long)]
    dry_run: bool,

    /// Push one branch on this repository and open or update one pull request, instead of
    /// writing variables.json
    #[arg(long)]
    pr: bool,

    /// Update only these variables (glob patterns over names), repeatable
    #[arg(long, value_name = "GLOB")]
    only: Vec<String>,

    /// Leave these variables alone (glob patterns over names), repeatable
    #[arg(long, value_name = "GLOB")]
    except: Vec<String>,

    /// This repository's URL (or a local path) for --pr, instead of variable-sources.json's
    #[arg(long, env = "IMAGEGEN_REPO_URL", value_name = "URL")]
    repo_url: Option<String>,

    /// Rebuild the branch even if someone else committed to it (their commits are dropped)
    #[arg(long)]
    take_over_branch: bool,

    /// The subscription Resource Manager is asked through, for Marketplace sources naming none
    #[arg(long, env = "IMAGEGEN_SUBSCRIPTION_ID", value_name = "ID")]
    subscription: Option<String>,

    /// Resource Manager's base URL
    #[arg(long, env = "IMAGEGEN_ARM_URL", value_name = "URL")]
    arm_url: Option<String>,

    /// Replace a prefix of every source URL (a mirror, a proxy, a local stand-in), repeatable;
    /// the environment variable takes several, separated by spaces
    #[arg(long, env = "IMAGEGEN_SOURCE_URL_REWRITE", value_name = "FROM=TO", value_delimiter = ' ', value_parser = parse_rewrite)]
    rewrite_source_url: Vec<(String, String)>,

    /// The Azure AD authority that issues the Resource Manager token
    #[arg(long, env = "IMAGE_FACTORY_AUTHORITY", value_name = "URL")]
    authority: Option<String>,

    /// The Azure AD token endpoint
    #[arg(
        long,
        env = "IMAGE_FACTORY_TOKEN_VERSION",
        value_name = "VERSION",
        default_value = "v2"
    )]
    token_version: TokenVersion,

    /// How long one request may take
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration::parse_positive)]
    http_timeout: Duration,

    /// Retries of a throttled, failing or timed-out request (never past 2 minutes)
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=20))]
    retries: u32,

    /// How long to wait for another run holding a file ledger (first-seen dates are kept there)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration::parse)]
    lock_timeout: Duration,
}

fn parse_rewrite(argument: &str) -> Result<(String, String), String> {
    imagegen::sources::fetch::parse_rewrite(argument)
}

impl VarsUpdateArgs {
    fn request(&self) -> UpdateRequest {
        let factory = FactoryOptions {
            authority: self.authority.clone(),
            token_version: self.token_version,
            request_timeout: self.http_timeout,
            retries: self.retries,
            ..FactoryOptions::default()
        };
        UpdateRequest {
            dry_run: self.dry_run,
            pr: self.pr,
            only: self.only.clone(),
            except: self.except.clone(),
            fetch: FetchSettings {
                timeouts: factory.timeouts(),
                retry: factory.retry(),
                rewrites: self.rewrite_source_url.clone(),
                arm_url: self.arm_url.clone(),
                subscription: self.subscription.clone(),
                authority: self.authority.clone(),
                token_version: self.token_version,
                credentials: None,
            },
            repo_url: self.repo_url.clone(),
            take_over_branch: self.take_over_branch,
            lock_timeout: self.lock_timeout,
        }
    }
}

const VARS_SET_HELP: &str = "\
Examples:
  imagegen vars set VS_2022_VERSION=17_12_2 --dry-run
  imagegen vars set VS_2022_VERSION=17_12_2 VS_2022_CHANNEL_URL=https://aka.ms/vs/17/release
  imagegen vars set --add WINDOWS_SERVER_2028_BUILD=30000.1.250101
  imagegen vars set VS_2022_VERSION=17_12_2 --output json

Only the changed values' bytes change: key order, indentation, line endings, a byte-order mark
and the trailing newline stay as they are. A value equal to the current one is left alone. The
file is replaced atomically, and not at all when the new values would break a definition that
renders now. Prints each change and the definitions it rebuilds; run `imagegen reconcile
--dry-run` next to see the plan.
Exit codes: 0 done, 1 an error (nothing is written then: unknown name without --add, a name
given twice, a variables.json with errors, a new value that breaks a definition).";

#[derive(Debug, Args)]
pub struct VarsSetArgs {
    /// Each variable and its new value; the value is everything after the first `=`
    #[arg(value_name = "NAME=VALUE", required = true, value_parser = parse_assignment)]
    assignments: Vec<(String, String)>,

    /// Append names variables.json does not define yet, instead of refusing them
    #[arg(long)]
    add: bool,

    /// Show the changes and the definitions they rebuild; write nothing
    #[arg(long)]
    dry_run: bool,
}

fn parse_assignment(argument: &str) -> Result<(String, String), variables::VarsError> {
    variables::parse_assignment(argument)
}

#[derive(Debug, Args)]
pub struct VarsDiffArgs {
    /// The revision to compare with: HEAD, HEAD~1, a branch, a tag or a sha
    #[arg(value_name = "REV")]
    revision: String,
}

impl VarsArgs {
    pub fn request(&self) -> VarsRequest {
        match &self.command {
            VarsCommand::List => VarsRequest::List,
            VarsCommand::Set(set) => VarsRequest::Set(SetRequest {
                changes: set.assignments.clone(),
                add: set.add,
                dry_run: set.dry_run,
            }),
            VarsCommand::Diff(diff) => VarsRequest::Diff(DiffRequest {
                revision: diff.revision.clone(),
            }),
            VarsCommand::Update(update) => VarsRequest::Update(Box::new(update.request())),
        }
    }
}

const LEDGER_HELP: &str = "\
Examples:
  imagegen ledger export ledger-copy.json
  imagegen ledger import ledger-copy.json --dry-run
  imagegen ledger import ledger-copy.json

The copy is the ledger's own JSON with its format version, complete and readable: what the
pipeline publishes after every reconcile, and what restores a damaged or lost ledger.
Exit codes: 0 done, 2 (import --dry-run) the import would change the ledger, 1 an error or a
refused import (nothing is written then).";

#[derive(Debug, Args)]
pub struct LedgerArgs {
    #[command(subcommand)]
    pub command: LedgerCommand,
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Write a complete, versioned copy of the ledger to FILE, or to stdout
    #[command(after_help = "\
Examples:
  imagegen ledger export
  imagegen ledger export ledger-copy.json
  imagegen ledger export > ledger-copy.json

The copy is written atomically: a reader sees no half-written file. The ledger is only read.
Exit codes: 0 done, 1 an error (the ledger cannot be read, or the file cannot be written).")]
    Export(LedgerExportArgs),

    /// Replace the ledger with a copy export wrote, under its lock and compare-and-swap
    #[command(after_help = "\
Examples:
  imagegen ledger import ledger-copy.json --dry-run
  imagegen ledger import ledger-copy.json
  imagegen ledger import ledger-copy.json --force

Shows each entry added, removed or changed, with its status and tracking id. Refused (exit 1,
nothing written, the definitions named) when the copy would forget a job the ledger tracks in
flight or a record newer than the copy's, unless --force; refused always for a copy of another
format version or a damaged one (with its line and column). A damaged ledger file is kept beside
itself as <name>.damaged-<time> and replaced.
Exit codes: 0 imported (or nothing to change), 2 (dry run) the import would change the ledger,
1 an error or a refused import.")]
    Import(LedgerImportArgs),
}

#[derive(Debug, Args)]
pub struct LedgerExportArgs {
    /// Where to write the copy; stdout when left out
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LedgerImportArgs {
    /// The copy, as `imagegen ledger export` wrote it
    #[arg(value_name = "FILE")]
    file: PathBuf,

    /// Show what would change; write nothing
    #[arg(long)]
    dry_run: bool,

    /// Import even though the copy would forget a job in flight or a newer build
    #[arg(long)]
    force: bool,

    /// How long to wait for another run holding the ledger
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration::parse)]
    lock_timeout: Duration,
}

impl LedgerArgs {
    pub fn request(&self) -> LedgerRequest {
        match &self.command {
            LedgerCommand::Export(export) => LedgerRequest::Export {
                file: export.file.clone(),
            },
            LedgerCommand::Import(import) => LedgerRequest::Import(ImportRequest {
                file: import.file.clone(),
                dry_run: import.dry_run,
                force: import.force,
                lock_timeout: import.lock_timeout,
            }),
        }
    }
}

const COMPLETIONS_HELP: &str = "\
Examples:
  imagegen completions bash > ~/.local/share/bash-completion/completions/imagegen
  imagegen completions zsh > ~/.zfunc/_imagegen
  imagegen completions fish > ~/.config/fish/completions/imagegen.fish
  imagegen completions powershell >> $PROFILE

The script completes commands, flags and their values; load it as your shell's documentation
says, or as shown above.";

/// Writes the completion script for `shell` to `out`.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    use clap::CommandFactory as _;
    clap_complete::generate(shell, &mut Cli::command(), "imagegen", out);
}

const DEMO_HELP: &str = "\
Examples:
  imagegen demo
  imagegen demo --keep

Starts an Image Factory emulator in-process and a bare git repository standing in for OSOB,
copies the shipped definitions into a throw-away folder, and goes through this week's Visual
Studio update with the commands a person would type: adopt last week's images, vars update (the
new release found in a channel manifest the demo serves on loopback), reconcile --dry-run, reconcile --wait (one image fails on purpose), and reconcile again, which
submits nothing. The pull request is printed, not opened. Nothing outside the throw-away
folder is read or changed, and nothing leaves the machine. A build without the default
features (the production pipeline's) has no emulator: there the command says so and exits 1.
Exit codes: 0 the story came out as it should, 1 it did not.";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the throw-away folder and say where it is, to look around afterwards
    #[arg(long)]
    keep: bool,
}

impl DemoArgs {
    pub fn request(&self) -> DemoRequest {
        DemoRequest { keep: self.keep }
    }
}

const RECONCILE_HELP: &str = "\
Examples:
  imagegen reconcile --dry-run
  imagegen reconcile
  imagegen reconcile --wait --timeout 6h
  imagegen reconcile --only 'vs2022/*' --no-pr
  imagegen reconcile --retry-failed
  imagegen reconcile --only 'vs2022/*' --allow-same-name

1. polls every job the ledger holds as pending, 2. submits every definition whose rendered
payload differs from the ledger (a failed payload is not resubmitted unless --retry-failed; a
changed payload that keeps its image names is refused unless --allow-same-name),
3. with --wait, polls until every job of this run has ended, 4. once no job is pending, edits
OSOB and opens or updates the one pull request (unless --no-pr). A run killed at any point is
resumed by the next one; the same payload is never submitted twice.
Exit codes: 0 done, 2 changes planned (dry run) or jobs still pending, 1 an error, a failed job
or a refused payload.
Needs the IMAGE_FACTORY_* settings, and the pull request provider's token (see
docs/configuration.md); --dry-run needs neither.";

const ADOPT_HELP: &str = "\
Examples:
  imagegen adopt --dry-run
  imagegen adopt
  imagegen adopt --only 'vs2019/*'

Records each definition's current rendered payload in the ledger as built (succeeded, adopted,
no tracking id), with the image names its payload names, so reconcile does not rebuild images
that exist already. A definition already built with the same payload, or with a job in flight,
is left as it is.";

const PR_HELP: &str = "\
Examples:
  imagegen pr --dry-run
  imagegen pr
  imagegen pr --osob-url ../dotnet-helix-machines --dry-run

Every image built from the current definitions (per the ledger) replaces the name OSOB holds for
it in the files osob-mapping/osob.json lists; review dates of those entries move forward. The
branch is rebuilt from the tip of the base branch each time, so the pull request always shows
exactly the image changes. A branch holding someone else's commits is left alone.
Exit codes: 0 done or nothing to do, 2 (dry run) changes to push, 1 an error.
Needs SYSTEM_ACCESSTOKEN or AZURE_DEVOPS_PAT (Azure DevOps), or GITHUB_TOKEN (GitHub).";

#[derive(Debug, Args)]
pub struct PrArgs {
    /// Show the OSOB diff and the pull request; push nothing, call no API
    #[arg(long)]
    dry_run: bool,

    /// Rebuild the branch even if someone else committed to it (their commits are dropped)
    #[arg(long)]
    take_over_branch: bool,

    #[command(flatten)]
    osob: OsobUrlArgs,
}

impl PrArgs {
    pub fn request(&self) -> PrRequest {
        PrRequest {
            dry_run: self.dry_run,
            take_over_branch: self.take_over_branch,
            osob_url: self.osob.osob_url.clone(),
        }
    }
}

const DOCTOR_HELP: &str = "\
Examples:
  imagegen doctor
  imagegen doctor --output json
  imagegen doctor --osob-url ../dotnet-helix-machines --timeout 10s

Checks, with the settings reconcile would use: Azure AD issues a token (azure-ad); Image
Factory answers and accepts it, a job that cannot exist answering 404 (image-factory); the
ledger reads (ledger), and saves unchanged under its lock or ETag (ledger-write); a blob
ledger's SAS expires more than 14 days ahead and allows read, create and write
(ledger-sas-expiry, ledger-sas-permissions); OSOB answers with the token (osob-repository), has
the base branch (osob-base-branch), and every mapped file names its definitions' images as
their templates say (osob-files); the pull-request provider's token reads the repository and
its pull requests (pr-provider). One line each, with the fix for a warning or a failure; on a
CI platform failures and warnings are annotations too. Nothing is submitted, pushed or opened,
no ledger is created and none is changed. A missing ledger is a warning, and a failure on a CI
platform.
Exit codes: 0 every check passed (warnings pass), 1 any failed.
Reads the settings of reconcile: the IMAGE_FACTORY_* variables, IMAGEGEN_STATE and
IMAGEGEN_STATE_SAS, and the provider's token (see docs/configuration.md); a missing one is a
failed check, not an error that hides the others.";

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    osob: OsobUrlArgs,

    /// How long each check may take
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration::parse_positive)]
    timeout: Duration,

    #[command(flatten)]
    factory: FactoryArgs,
}

impl DoctorArgs {
    /// The request, with the ledger's location (`--state`) as given: the doctor locates it.
    pub fn request(&self, state: Option<String>) -> DoctorRequest {
        DoctorRequest {
            state,
            factory: self.factory.options(),
            osob_url: self.osob.osob_url.clone(),
            timeout: self.timeout,
        }
    }
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Show the plan only: nothing is submitted and the ledger is not changed
    #[arg(long)]
    dry_run: bool,

    /// Resubmit definitions even when unchanged (jobs in flight are left alone)
    #[arg(long)]
    force: bool,

    /// Resubmit definitions whose job failed though their payload did not change
    #[arg(long)]
    retry_failed: bool,

    /// Submit changed payloads even when they keep the image names of their last submission
    /// (new content under names OSOB already uses); refused otherwise
    #[arg(long)]
    allow_same_name: bool,

    #[command(flatten)]
    selection: SelectionArgs,

    /// Stop after the jobs: do not touch OSOB or the pull request
    #[arg(long)]
    no_pr: bool,

    /// Poll until every job of this run has ended (or --timeout), each from its own submission
    #[arg(long)]
    wait: bool,

    /// With --wait: stop waiting this long after the first submission; the jobs go on and a
    /// later run follows them
    #[arg(long, value_name = "DURATION", default_value = "6h", value_parser = duration::parse_positive)]
    timeout: Duration,

    /// With --wait: how long after its submission a job is first asked about; each next wait
    /// is half as long again, up to 10m
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration::parse_positive)]
    poll_interval: Duration,

    /// Requests to Image Factory at once; fewer while it throttles
    #[arg(long, value_name = "N", default_value_t = imagegen::factory::DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,

    #[command(flatten)]
    lock: LockArgs,

    /// Rebuild the OSOB branch even if someone else committed to it
    #[arg(long)]
    take_over_branch: bool,

    #[command(flatten)]
    osob: OsobUrlArgs,

    #[command(flatten)]
    factory: FactoryArgs,
}

impl ReconcileArgs {
    pub fn request(&self) -> ReconcileRequest {
        ReconcileRequest {
            dry_run: self.dry_run,
            plan: PlanOptions {
                force: self.force,
                retry_failed: self.retry_failed,
                allow_same_name: self.allow_same_name,
            },
            only: self.selection.only.clone(),
            except: self.selection.except.clone(),
            no_pr: self.no_pr,
            wait: self.wait.then_some(WaitOptions {
                timeout: self.timeout,
                poll_interval: self.poll_interval,
            }),
            lock_timeout: self.lock.lock_timeout,
            factory: FactoryOptions {
                concurrency: usize::from(self.concurrency),
                ..self.factory.options()
            },
            pr: PrRequest {
                dry_run: false,
                take_over_branch: self.take_over_branch,
                osob_url: self.osob.osob_url.clone(),
            },
        }
    }
}

#[derive(Debug, Args)]
pub struct AdoptArgs {
    #[command(flatten)]
    selection: SelectionArgs,

    /// Show what would be recorded; change nothing
    #[arg(long)]
    dry_run: bool,

    #[command(flatten)]
    lock: LockArgs,
}

impl AdoptArgs {
    pub fn request(&self) -> AdoptRequest {
        AdoptRequest {
            only: self.selection.only.clone(),
            except: self.selection.except.clone(),
            dry_run: self.dry_run,
            lock_timeout: self.lock.lock_timeout,
        }
    }
}

const STATUS_HELP: &str = "\
Examples:
  imagegen status
  imagegen status --only 'vs2022/*' --osob-url ../dotnet-helix-machines
  imagegen status --output json
  imagegen status 5f0c2a9e-1b7d-4c1e-9a51-0d6c3f0e8b21
  imagegen status ID1 ID2 --watch --poll-interval 30s

Without tracking ids: one row per definition with its state as the ledger holds it (built,
adopted, building, failed, never built, changed since its build, invalid), the image it built
and when, the tracking id, and whether OSOB's base branch names that image (or which older one
it still names). Reads the ledger and OSOB, not Image Factory. On a CI platform the table also
goes to the run's summary.
Exit codes: 0 every definition built and named by OSOB, 2 something is building, changed, never
built or not yet named by OSOB, 1 a build failed, a definition has errors or OSOB was not read.

With tracking ids: each job's state, message, images and times, from Image Factory.
Exit codes: 0 every job succeeded, 1 any failed, was canceled, is unknown or succeeded without
naming its images, 2 any still running.
Needs the IMAGE_FACTORY_* settings (see docs/configuration.md).";

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Tracking ids, as `submit` and `reconcile` print them; none shows every definition
    #[arg(value_name = "TRACKING_ID")]
    tracking_ids: Vec<String>,

    /// Without tracking ids: only definitions whose id matches this glob (repeatable)
    #[arg(long, value_name = "GLOB", conflicts_with = "tracking_ids")]
    only: Vec<String>,

    /// Without tracking ids: leave out definitions whose id matches this glob (repeatable)
    #[arg(long, value_name = "GLOB", conflicts_with = "tracking_ids")]
    except: Vec<String>,

    /// Without tracking ids: read this OSOB repository (a URL or a local path) instead of
    /// the mapping's
    #[arg(long, env = "IMAGEGEN_OSOB_URL", value_name = "URL")]
    osob_url: Option<String>,

    /// Poll the jobs until every one has ended
    #[arg(long, requires = "tracking_ids")]
    watch: bool,

    /// Time between polls with --watch (like 30s, 5m)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration::parse_positive)]
    poll_interval: Duration,

    #[command(flatten)]
    factory: FactoryArgs,
}

const SUBMIT_HELP: &str = "\
Examples:
  imagegen submit definitions/vs2022/server-2022-enterprise.json
  imagegen submit vs2022/server-2022-enterprise --dry-run
  imagegen submit my-payload.json
  imagegen submit --vars VS_2022_CHANNEL_URL,VS_2022_VERSION

Placeholders are rendered from variables.json (a file without any goes as is). Every submission
is recorded in the ledger, so `reconcile` follows the job and never submits the same payload again.
A payload already built is skipped unless --force; one in flight is always skipped. A changed
payload that keeps the image names of its last submission is refused unless --allow-same-name.
Exit codes: 0 every payload was submitted or skipped, 1 any was not.
Needs the IMAGE_FACTORY_* settings (see docs/configuration.md).";

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// A payload file, or a definition id
    #[arg(value_name = "PAYLOAD_FILE")]
    payload: Option<String>,

    /// Submit every definition that uses any of these variables
    #[arg(long, value_name = "VAR", num_args = 1.., value_delimiter = ',')]
    vars: Vec<String>,

    /// Print the rendered payload and the request; send nothing, record nothing
    #[arg(long)]
    dry_run: bool,

    /// Submit again a payload that was already built
    #[arg(long)]
    force: bool,

    /// Submit a changed payload even when it keeps the image names of its last submission
    /// (new content under names OSOB already uses); refused otherwise
    #[arg(long)]
    allow_same_name: bool,

    /// Requests to Image Factory at once; fewer while it throttles
    #[arg(long, value_name = "N", default_value_t = imagegen::factory::DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,

    #[command(flatten)]
    lock: LockArgs,

    #[command(flatten)]
    factory: FactoryArgs,
}

/// `--only` and `--except`: which definitions a command works on.
#[derive(Debug, Args)]
pub struct SelectionArgs {
    /// Only definitions whose id matches this glob (repeatable; `*` crosses folders)
    #[arg(long, value_name = "GLOB")]
    only: Vec<String>,

    /// Leave out definitions whose id matches this glob (repeatable)
    #[arg(long, value_name = "GLOB")]
    except: Vec<String>,
}

/// `--lock-timeout`, for the commands that write the ledger.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// How long to wait for another run holding the ledger
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration::parse)]
    lock_timeout: Duration,
}

/// `--osob-url`, for the commands that read OSOB.
#[derive(Debug, Args)]
pub struct OsobUrlArgs {
    /// Use this OSOB repository (a URL or a local path) instead of the mapping's
    #[arg(long, env = "IMAGEGEN_OSOB_URL", value_name = "URL")]
    osob_url: Option<String>,
}

/// Where Image Factory is. Its credentials come from the environment only, never from flags.
#[derive(Debug, Args)]
pub struct FactoryArgs {
    /// Image Factory's base URL
    #[arg(long, env = "IMAGE_FACTORY_URL", value_name = "URL")]
    pub factory_url: Option<String>,

    /// The Azure AD authority tokens come from [default: https://login.microsoftonline.com]
    #[arg(long, env = "IMAGE_FACTORY_AUTHORITY", value_name = "URL")]
    pub authority: Option<String>,

    /// The Azure AD token endpoint: v2 (scope) or v1 (resource)
    #[arg(
        long,
        env = "IMAGE_FACTORY_TOKEN_VERSION",
        value_name = "VERSION",
        default_value = "v2"
    )]
    pub token_version: TokenVersion,

    /// How long one request to Image Factory or Azure AD may take
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration::parse_positive)]
    pub http_timeout: Duration,

    /// Retries of a throttled, failing or timed-out request (with backoff, within 2 minutes)
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=20))]
    pub retries: u32,
}

impl StatusArgs {
    pub fn request(&self) -> StatusRequest {
        StatusRequest {
            tracking_ids: self.tracking_ids.clone(),
            only: self.only.clone(),
            except: self.except.clone(),
            osob_url: self.osob_url.clone(),
            watch: self.watch,
            poll_interval: self.poll_interval,
            factory: self.factory.options(),
        }
    }
}

impl SubmitArgs {
    pub fn request(&self) -> SubmitRequest {
        SubmitRequest {
            target: match &self.payload {
                Some(file) => SubmitTarget::File(file.clone()),
                None => SubmitTarget::Variables(self.vars.clone()),
            },
            dry_run: self.dry_run,
            force: self.force,
            allow_same_name: self.allow_same_name,
            lock_timeout: self.lock.lock_timeout,
            factory: FactoryOptions {
                concurrency: usize::from(self.concurrency),
                ..self.factory.options()
            },
        }
    }
}

impl FactoryArgs {
    fn options(&self) -> FactoryOptions {
        FactoryOptions {
            url: self.factory_url.clone(),
            authority: self.authority.clone(),
            token_version: self.token_version,
            request_timeout: self.http_timeout,
            retries: self.retries,
            // Commands with a `--concurrency` flag set their own.
            concurrency: usize::from(imagegen::factory::DEFAULT_CONCURRENCY),
            credentials: None,
        }
    }
}

impl Cli {
    /// How results are written, on the CI `platform` the caller detected.
    pub fn output(&self, platform: Option<Platform>) -> Output {
        Output {
            format: match self.output {
                OutputArg::Text => Format::Text,
                OutputArg::Json => Format::Json,
            },
            quiet: self.quiet,
            platform,
        }
    }

    /// The settings become the library's [`Context`], once every one of them (given as a flag,
    /// or in the environment, `matches` saying which) is checked: a macro the pipeline left
    /// unexpanded is refused here, for every setting at once, before anything is read.
    pub fn context(&self, output: Output, matches: &clap::ArgMatches) -> anyhow::Result<Context> {
        settings::check_environment(|name| std::env::var(name).ok())?;
        check_given_settings(&Self::command(), matches)?;
        // Unattended, a ledger that should be there and is not must stop the run: planning
        // against an empty one would submit every definition again.
        let missing = if self.init_ledger || !platform::is_ci(|name| std::env::var(name).ok()) {
            MissingLedger::Empty
        } else {
            MissingLedger::Refuse
        };
        // The doctor locates the ledger itself: one it cannot locate is a failed check there,
        // not an error that would hide every other check.
        let state = match self.command {
            Command::Doctor(_) => None,
            _ => self.state.clone(),
        };
        Context::new(self.repo.clone(), state, missing, output)
    }

    pub fn color_choice(&self) -> anstream::ColorChoice {
        match self.color {
            ColorArg::Auto => anstream::ColorChoice::Auto,
            ColorArg::Always => anstream::ColorChoice::Always,
            ColorArg::Never => anstream::ColorChoice::Never,
        }
    }
}

/// Checks every option of `command` (and of the subcommand `matches` chose, down the tree)
/// that was given on the command line or in the environment. A positional argument (a
/// definition id, a tracking id, `NAME=VALUE`) is data, not a setting, and may hold `$(`.
fn check_given_settings(
    command: &clap::Command,
    matches: &clap::ArgMatches,
) -> Result<(), SettingError> {
    for arg in command.get_arguments().filter(|arg| !arg.is_positional()) {
        let id = arg.get_id().as_str();
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => Source::CommandLine,
            Some(ValueSource::EnvVariable) => Source::Environment,
            _ => continue,
        };
        let Ok(Some(values)) = matches.try_get_raw(id) else {
            continue;
        };
        let setting = Setting {
            flag: arg.get_long().map(|long| format!("--{long}")),
            env: arg.get_env().map(|env| env.to_string_lossy().into_owned()),
            // A value whose environment variable is hidden from --help may hold a secret.
            secret: arg.is_hide_env_values_set(),
        };
        for value in values {
            settings::check(&setting, source, &value.to_string_lossy())?;
        }
    }
    if let Some((name, chosen)) = matches.subcommand()
        && let Some(subcommand) = command.find_subcommand(name)
    {
        check_given_settings(subcommand, chosen)?;
    }
    Ok(())
}

#[cfg(test)]
mod pipeline_tests;

#[cfg(test)]
mod variable_updates_pipeline_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The imagegen commands a document shows a person: each line of a code block (after an
    /// optional `$ ` prompt) and each inline code span, with `cargo run --locked --` read as
    /// `imagegen`. A synopsis's brackets (`adopt [--dry-run]`) are dropped, and a generic form
    /// (`imagegen COMMAND --help`, `imagegen <command>`) is left out.
    fn doc_command_lines(text: &str) -> Vec<Vec<String>> {
        let placeholder = regex::Regex::new(r"<[A-Za-z][A-Za-z_-]*>").expect("a valid pattern");
        let mut candidates = Vec::new();
        let mut in_block = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                in_block = !in_block;
            } else if in_block {
                candidates.push(line.to_string());
            } else {
                candidates.extend(line.split('`').skip(1).step_by(2).map(str::to_string));
            }
        }
        candidates
            .iter()
            .map(|candidate| {
                let candidate = candidate.trim_start();
                let candidate = candidate.strip_prefix("$ ").unwrap_or(candidate);
                match candidate.strip_prefix("cargo run --locked -- ") {
                    Some(rest) => format!("imagegen {rest}"),
                    None => candidate.to_string(),
                }
                .replace(['[', ']'], "")
            })
            // `<tracking-id>` is a value to fill in, not a redirection.
            .map(|candidate| {
                placeholder
                    .replace_all(&candidate, "PLACEHOLDER")
                    .into_owned()
            })
            .flat_map(|candidate| imagegen_command_lines(&candidate))
            // The program's name alone, or a generic form: `imagegen COMMAND --help`.
            .filter(|words| {
                words.get(1).is_some_and(|command| {
                    !(command == "PLACEHOLDER" || command.chars().all(|c| c.is_ascii_uppercase()))
                })
            })
            .collect()
    }

    #[test]
    fn doc_commands_come_from_code_blocks_and_inline_spans() {
        assert_eq!(
            doc_command_lines(
                "run `imagegen validate`, or `imagegen adopt [--dry-run]`\n```sh\n$ imagegen demo\n\
                 cargo run --locked -- reconcile --dry-run  # plan\n```\n`imagegen COMMAND --help`"
            ),
            [
                vec!["imagegen", "validate"],
                vec!["imagegen", "adopt", "--dry-run"],
                vec!["imagegen", "demo"],
                vec!["imagegen", "reconcile", "--dry-run"],
            ]
        );
    }

    /// Every command the docs show a person is one the command line accepts.
    #[test]
    fn every_command_in_the_docs_parses() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = vec![root.join("README.md")];
        let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
            .expect("docs/ exists")
            .map(|entry| entry.expect("a docs entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
            .collect();
        docs.sort();
        files.extend(docs);
        let mut checked = 0;
        let mut failures = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).expect("a doc reads");
            for words in doc_command_lines(&text) {
                checked += 1;
                // `imagegen vars` names a group of commands: clap shows its help.
                if let Err(error) = Cli::try_parse_from(&words)
                    && !matches!(
                        error.kind(),
                        clap::error::ErrorKind::DisplayHelp
                            | clap::error::ErrorKind::DisplayVersion
                            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                    )
                {
                    failures.push(format!(
                        "{}: `{}`: {}",
                        file.strip_prefix(root).unwrap_or(file).display(),
                        words.join(" "),
                        error.kind()
                    ));
                }
            }
        }
        assert!(checked > 50, "only {checked} commands found in the docs");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn every_command_has_examples_in_its_help() {
        fn check(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in command.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                let has_examples = sub
                    .get_after_help()
                    .is_some_and(|help| help.to_string().contains("Examples:"));
                // A group (`vars`) shows its commands; each of them has the examples.
                if !has_examples && !sub.has_subcommands() {
                    missing.push(path.clone());
                }
                check(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        check(&Cli::command(), "imagegen", &mut missing);
        assert!(missing.is_empty(), "no examples in --help of {missing:?}");
    }

    #[test]
    fn completions_name_every_command() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh] {
            let mut script = Vec::new();
            write_completions(shell, &mut script);
            let script = String::from_utf8(script).expect("the script is UTF-8");
            for command in Cli::command().get_subcommands() {
                assert!(
                    script.contains(command.get_name()),
                    "{shell} completions lack {}",
                    command.get_name()
                );
            }
            assert!(
                script.contains("--dry-run"),
                "{shell} completions lack flags"
            );
        }
    }

    #[test]
    fn affected_accepts_commas_and_spaces() {
        let cli = Cli::try_parse_from(["imagegen", "affected", "A,B", "C"]).unwrap();
        let Command::Affected { variables } = cli.command else {
            panic!("expected affected");
        };
        assert_eq!(variables, ["A", "B", "C"]);
    }

    fn vars_request(args: &[&str]) -> VarsRequest {
        let cli = Cli::try_parse_from(["imagegen", "vars"].iter().chain(args)).unwrap();
        let Command::Vars(vars) = cli.command else {
            panic!("expected vars");
        };
        vars.request()
    }

    #[test]
    fn vars_subcommands_parse_into_requests() {
        assert!(matches!(vars_request(&["list"]), VarsRequest::List));
        let VarsRequest::Set(set) = vars_request(&["set", "A=1", "B=x=y", "--add", "--dry-run"])
        else {
            panic!("expected vars set");
        };
        assert_eq!(
            set.changes,
            [("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert!(set.add && set.dry_run);
        let VarsRequest::Diff(diff) = vars_request(&["diff", "HEAD~1"]) else {
            panic!("expected vars diff");
        };
        assert_eq!(diff.revision, "HEAD~1");
    }

    #[test]
    fn vars_set_refuses_a_name_without_a_value_and_an_empty_call() {
        for args in [
            &["imagegen", "vars", "set", "VS_2022_VERSION"][..],
            &["imagegen", "vars", "set", "lower=1"],
            &["imagegen", "vars", "set"],
            &["imagegen", "vars", "diff"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    /// Every command line in `text` that runs imagegen (its first word after any `NAME=value`
    /// is `imagegen` or a path ending in `/imagegen`), split into words as a shell would with simple quoting: `'...'`
    /// literal, `"..."` with `\` escapes, a `\` at the end of a line joining the next. A
    /// command ends at an unquoted `|`, `&`, `;`, `<`, `>` or a `#` comment. The first word is
    /// always `imagegen`, ready for `Cli::try_parse_from`.
    pub(super) fn imagegen_command_lines(text: &str) -> Vec<Vec<String>> {
        let joined = text.replace("\\\r\n", " ").replace("\\\n", " ");
        joined
            .lines()
            .filter_map(|line| {
                let line = line.trim_start();
                let line = line.strip_prefix("$ ").unwrap_or(line);
                let mut words = shell_words(line);
                // `RUST_LOG=debug imagegen ...` runs imagegen; `bin=.../imagegen` runs nothing.
                let assignments = words.iter().take_while(|word| is_assignment(word)).count();
                words.drain(..assignments);
                let first = words.first()?;
                if first != "imagegen" && !first.ends_with("/imagegen") {
                    return None;
                }
                words[0] = "imagegen".to_string();
                Some(words)
            })
            .collect()
    }

    /// `NAME=value`, a variable set for the command or in the shell.
    fn is_assignment(word: &str) -> bool {
        word.split_once('=').is_some_and(|(name, _)| {
            name.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    }

    /// The words of one command, up to the first unquoted operator or comment.
    pub(super) fn shell_words(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut word: Option<String> = None;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' => {
                    let word = word.get_or_insert_with(String::new);
                    word.extend(chars.by_ref().take_while(|&c| c != '\''));
                }
                '"' => {
                    let word = word.get_or_insert_with(String::new);
                    while let Some(c) = chars.next() {
                        match c {
                            '"' => break,
                            '\\' if matches!(chars.peek(), Some('"' | '\\' | '$' | '`')) => {
                                word.extend(chars.next());
                            }
                            c => word.push(c),
                        }
                    }
                }
                '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
                '#' if word.is_none() => break,
                '|' | '&' | ';' | '<' | '>' => {
                    // `2>&1`: the digits belong to the redirection, not to the command.
                    if word
                        .as_deref()
                        .is_some_and(|w| w.chars().all(|c| c.is_ascii_digit()))
                    {
                        word = None;
                    }
                    break;
                }
                c if c.is_whitespace() => words.extend(word.take()),
                c => word.get_or_insert_with(String::new).push(c),
            }
        }
        words.extend(word);
        words
    }

    #[test]
    fn command_lines_are_split_like_a_shell_splits_them() {
        let text = "\
echo imagegen is not run here
imagegen validate
  ./target/release/imagegen reconcile || status=$?
$ imagegen affected 'A B' \"C \\\"D\\\"\" # a comment
imagegen reconcile --only \\
  'vs2022/*' 2>&1 | tee log
imagegen status ID;echo done
bin=\"$dir/imagegen\"
RUST_LOG=debug \"$bin/imagegen\" --version";
        assert_eq!(
            imagegen_command_lines(text),
            [
                vec!["imagegen", "validate"],
                vec!["imagegen", "reconcile"],
                vec!["imagegen", "affected", "A B", "C \"D\""],
                vec!["imagegen", "reconcile", "--only", "vs2022/*"],
                vec!["imagegen", "status", "ID"],
                vec!["imagegen", "--version"],
            ]
        );
    }
}
