//! The command line: clap types only, turned once into the library's requests.

use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand, ValueEnum};
use imagegen::commands::{Context, ReconcileRequest};
use imagegen::output::{Format, Output};
use imagegen::plan::PlanOptions;

const EXIT_CODES: &str = "\
Exit codes:
  0  done: no problem, nothing to submit, nothing pending
  1  an error (every problem is listed), or a job that failed
  2  changes planned or jobs still pending";

const ABOUT: &str = "Builds Helix's Windows base images with Image Factory from the definitions \
committed in this repository, and keeps the OSOB configuration pointing at them.";

#[derive(Debug, Parser)]
#[command(name = "imagegen", version, about = ABOUT, after_help = EXIT_CODES, max_term_width = 100)]
pub struct Cli {
    /// The repository holding definitions/ and variables.json
    #[arg(
        long,
        global = true,
        env = "IMAGEGEN_REPO",
        value_name = "DIR",
        default_value = "."
    )]
    pub repo: PathBuf,

    /// The ledger of submitted jobs [default: <repo>/.imagegen/state.json]
    #[arg(long, global = true, env = "IMAGEGEN_STATE", value_name = "PATH")]
    pub state: Option<PathBuf>,

    /// Text for people, or one JSON document for machines
    #[arg(long, global = true, value_enum, default_value_t = OutputArg::Text, value_name = "FORMAT")]
    pub output: OutputArg,

    /// When to colour text (NO_COLOR and CLICOLOR_FORCE are respected with auto)
    #[arg(long, global = true, value_enum, default_value_t = ColorArg::Auto, value_name = "WHEN")]
    pub color: ColorArg,

    /// More logging on stderr (-v, -vv, -vvv); RUST_LOG overrides
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// Leave out warnings and notes; results and errors are still shown
    #[arg(short, long, global = true)]
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

    /// Compare the committed definitions with the ledger and show what would be submitted
    #[command(after_help = "\
Examples:
  imagegen reconcile --dry-run
  imagegen reconcile --dry-run --output json
  imagegen reconcile --dry-run --force

Exit codes: 0 nothing to do, 2 changes planned or jobs pending, 1 errors or a failed job.")]
    Reconcile {
        /// Show the plan only: nothing is submitted and the ledger is not changed
        #[arg(long)]
        dry_run: bool,

        /// Plan to resubmit definitions even when unchanged (jobs in flight are left alone)
        #[arg(long)]
        force: bool,
    },
}

impl Cli {
    pub fn context(&self) -> Context {
        let output = Output {
            format: match self.output {
                OutputArg::Text => Format::Text,
                OutputArg::Json => Format::Json,
            },
            quiet: self.quiet,
        };
        Context::new(self.repo.clone(), self.state.clone(), output)
    }

    pub fn color_choice(&self) -> anstream::ColorChoice {
        match self.color {
            ColorArg::Auto => anstream::ColorChoice::Auto,
            ColorArg::Always => anstream::ColorChoice::Always,
            ColorArg::Never => anstream::ColorChoice::Never,
        }
    }
}

impl Command {
    pub fn reconcile_request(dry_run: bool, force: bool) -> ReconcileRequest {
        ReconcileRequest {
            dry_run,
            plan: PlanOptions { force },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn affected_accepts_commas_and_spaces() {
        let cli = Cli::try_parse_from(["imagegen", "affected", "A,B", "C"]).unwrap();
        let Command::Affected { variables } = cli.command else {
            panic!("expected affected");
        };
        assert_eq!(variables, ["A", "B", "C"]);
    }
}
