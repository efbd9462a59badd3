//! The imagegen binary: parses the command line, sets up logging and colour, runs the command
//! and turns its outcome into the exit code.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};
use imagegen::commands;
use imagegen::exit::Exit;
use imagegen::platform::Platform;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    // The matches are kept beside the parsed flags: they tell which settings came from the
    // command line and which from the environment, for the check of every setting.
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)))
        .map_err(|error| error.format(&mut Cli::command()));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            let _ = error.print();
            explain_unexpanded_value(&error);
            // clap exits 2 on a usage error, but 2 means "changes planned" here: a mistyped
            // flag in a pipeline must fail it, not look like pending work.
            return if error.use_stderr() {
                ExitCode::from(Exit::Error.code())
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Command::Completions { shell } = cli.command {
        // Needs no repository, ledger or logging: a shell's start-up file runs it.
        return match print_completions(shell) {
            Ok(()) => ExitCode::SUCCESS,
            // `imagegen completions bash | head -3` stopped reading: that is not a failure.
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: cannot write the completion script: {error}");
                ExitCode::from(Exit::Error.code())
            }
        };
    }
    cli.color_choice().write_global();
    init_logging(cli.verbose);
    // The platform is read from the environment here, once; everything after asks `Output`.
    let output = cli.output(Platform::from_env());
    let result = cli
        .context(output.clone(), &matches)
        .and_then(|context| run(&cli, &context));
    match result {
        Ok(outcome) => ExitCode::from(outcome.code()),
        // A reader that stopped early (`imagegen affected X | head -1`) is not a failure.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            imagegen::output::fatal(&output, &error);
            ExitCode::from(Exit::Error.code())
        }
    }
}

fn run(cli: &Cli, context: &commands::Context) -> anyhow::Result<Exit> {
    match &cli.command {
        Command::Demo(demo) => commands::demo::demo(context, demo.request()),
        Command::Validate => commands::validate(context),
        Command::Render { definition } => commands::render(context, definition),
        Command::Affected { variables } => commands::affected(context, variables),
        Command::Reconcile(reconcile) => commands::reconcile(context, reconcile.request()),
        Command::Adopt(adopt) => commands::adopt(context, adopt.request()),
        Command::Status(status) => commands::status::status(context, status.request()),
        Command::Submit(submit) => commands::submit::submit(context, submit.request()),
        Command::Pr(pr) => commands::pr::pr(context, pr.request()),
        Command::Vars(vars) => commands::vars::vars(context, vars.request()),
        Command::Ledger(ledger) => commands::ledger::ledger(context, ledger.request()),
        Command::Doctor(doctor) => {
            commands::doctor::doctor(context, doctor.request(cli.state.clone()))
        }
        Command::Completions { shell } => {
            print_completions(*shell)?;
            Ok(Exit::Ok)
        }
    }
}

/// Writes the completion script to stdout. clap_complete panics when its writer fails, so the
/// script is made in memory and written here, where a failed write is an error to handle.
fn print_completions(shell: clap_complete::Shell) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut script = Vec::new();
    cli::write_completions(shell, &mut script);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&script)?;
    stdout.flush()
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "imagegen=info",
        2 => "imagegen=debug",
        _ => "imagegen=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// A value clap refused (a duration, a number, a token version) may be a pipeline's macro left
/// unexpanded: say so, since clap's message alone reads like a typo.
fn explain_unexpanded_value(error: &clap::Error) {
    use clap::error::{ContextKind, ContextValue};
    if let Some(ContextValue::String(value)) = error.get(ContextKind::InvalidValue)
        && let Some(found) = imagegen::settings::unexpanded_macro(value)
    {
        eprintln!(
            "{found} is a pipeline macro left as written: the pipeline variable it names is not \
             defined. Define it, or map the right one"
        );
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
