//! Where results go: text for people on stdout (styled on a terminal, plain otherwise, NO_COLOR
//! respected) with problems on stderr, or one JSON document on stdout for machines. Both forms
//! are made from the same data. On a CI platform problems also become its annotations, and
//! long steps its collapsible groups (see [`crate::platform`]).

use std::io::Write;

use anstyle::{AnsiColor, Style};
use serde::Serialize;

use crate::diagnostics::{Diagnostics, Severity};
use crate::platform::{Annotation, Platform};

/// The form of a command's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

const ERROR: Style = AnsiColor::Red.on_default().bold();
const WARNING: Style = AnsiColor::Yellow.on_default().bold();

/// Writes a command's results in the chosen format.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub format: Format,
    /// Leave out notes and warnings; results and errors are still written.
    pub quiet: bool,
    /// The CI platform the run is on, detected once at start; `None` off a platform.
    pub platform: Option<Platform>,
}

impl Output {
    pub fn is_json(&self) -> bool {
        self.format == Format::Json
    }

    /// Writes text to stdout (text format only).
    pub fn text(&self, text: &str) -> std::io::Result<()> {
        let mut stdout = anstream::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()
    }

    /// Writes one JSON document to stdout.
    pub fn json(&self, value: &impl Serialize) -> std::io::Result<()> {
        // Serialized whole before any byte is written: a value that fails half way (a map
        // keyed by something other than a string) must print nothing rather than half a
        // document, so that the fatal error after it is the only document on stdout. One
        // write also spares the many flushes of a line-buffered stdout.
        let mut document = serde_json::to_vec_pretty(value)?;
        document.push(b'\n');
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&document)?;
        stdout.flush()
    }

    /// A remark for people on stderr, such as a count; silent with `--quiet` or JSON output.
    pub fn note(&self, text: &str) -> std::io::Result<()> {
        if self.quiet || self.is_json() {
            return Ok(());
        }
        let mut stderr = anstream::stderr().lock();
        writeln!(stderr, "{text}")
    }

    /// Problems, one a line, on stderr. In JSON output they travel inside the document instead;
    /// on a platform they are its annotations, in either format.
    pub fn diagnostics(&self, diagnostics: &Diagnostics) -> std::io::Result<()> {
        if self.platform.is_some() {
            for diagnostic in diagnostics.iter() {
                if diagnostic.is_error() || !self.quiet {
                    self.annotate(&Annotation::from_diagnostic(diagnostic))?;
                }
            }
            return Ok(());
        }
        if self.is_json() {
            return Ok(());
        }
        let mut stderr = anstream::stderr().lock();
        for diagnostic in diagnostics.iter() {
            match diagnostic.severity {
                Severity::Error => writeln!(stderr, "{ERROR}error:{ERROR:#} {diagnostic}")?,
                Severity::Warning if !self.quiet => {
                    writeln!(stderr, "{WARNING}warning:{WARNING:#} {diagnostic}")?;
                }
                Severity::Warning => {}
            }
        }
        Ok(())
    }

    /// One error for people: an annotation on a platform, else an `error:` line on stderr (in
    /// JSON output the document carries it).
    pub fn error(&self, text: &str) -> std::io::Result<()> {
        self.error_annotation(Annotation::error(text))
    }

    /// An error that knows more than its text (a file, a title): the annotation on a platform,
    /// else its message as an `error:` line (text output only).
    pub fn error_annotation(&self, annotation: Annotation) -> std::io::Result<()> {
        if self.platform.is_some() {
            return self.annotate(&annotation);
        }
        if self.is_json() {
            return Ok(());
        }
        error_line(&annotation.message)
    }

    /// A warning that knows more than its text (a file): the annotation on a platform, else its
    /// message as a `warning:` line (text output only). Silent with `--quiet`, as every warning.
    pub fn warning_annotation(&self, annotation: Annotation) -> std::io::Result<()> {
        if self.quiet {
            return Ok(());
        }
        if self.platform.is_some() {
            return self.annotate(&annotation);
        }
        if self.is_json() {
            return Ok(());
        }
        let mut stderr = anstream::stderr().lock();
        writeln!(
            stderr,
            "{WARNING}warning:{WARNING:#} {}",
            annotation.message
        )
    }

    /// Raises an annotation on the platform; nothing off a platform.
    ///
    /// On a platform the annotation takes the place of the plain `error:` or `warning:` line
    /// rather than coming on top of it: the agent prints the annotation in the log itself,
    /// styled as an error, so both would show every problem twice. It goes to stderr, where
    /// that line went, so it keeps its place among the other problem lines, stdout keeps only
    /// results (a JSON document stays one document), and both agents read logging commands
    /// on stderr as on stdout.
    pub fn annotate(&self, annotation: &Annotation) -> std::io::Result<()> {
        match &self.platform {
            Some(platform) => platform_line(&platform.annotation(annotation)),
            None => Ok(()),
        }
    }

    /// Opens a collapsible group on a platform (closing it is the caller's: groups do not
    /// nest); nothing off a platform.
    pub fn group_start(&self, title: &str) -> std::io::Result<()> {
        match &self.platform {
            Some(platform) => platform_line(&platform.group_start(title)),
            None => Ok(()),
        }
    }

    pub fn group_end(&self) -> std::io::Result<()> {
        match &self.platform {
            Some(platform) => platform_line(platform.group_end()),
            None => Ok(()),
        }
    }

    /// Hands a markdown summary of the run to the platform; nothing off a platform. A summary
    /// that cannot be written is a note, not a failure of the run it describes.
    pub fn summary(&self, markdown: &str) -> std::io::Result<()> {
        let Some(platform) = &self.platform else {
            return Ok(());
        };
        match platform.publish_summary(markdown) {
            Ok(Some(command)) => platform_line(&command),
            Ok(None) => Ok(()),
            Err(error) => {
                let mut stderr = anstream::stderr().lock();
                writeln!(stderr, "{WARNING}warning:{WARNING:#} {error}")
            }
        }
    }
}

/// A logging command, alone on its line (the agents read them line by line), unstyled.
fn platform_line(line: &str) -> std::io::Result<()> {
    let mut stderr = std::io::stderr().lock();
    writeln!(stderr, "{line}")?;
    stderr.flush()
}

/// One error line for people on stderr, styled like every other error.
fn error_line(text: &str) -> std::io::Result<()> {
    let mut stderr = anstream::stderr().lock();
    writeln!(stderr, "{ERROR}error:{ERROR:#} {text}")
}

/// Prints a fatal error (the whole chain of causes) in the chosen format, and as an error
/// annotation on a platform (instead of the `error:` line, as for every other error).
pub fn fatal(output: &Output, error: &anyhow::Error) {
    let causes: Vec<String> = error.chain().map(ToString::to_string).collect();
    if output.is_json() {
        let document =
            serde_json::json!({ "error": { "message": causes[0], "causes": &causes[1..] } });
        let _ = output.json(&document);
    }
    let message = causes.join(": ");
    if output.platform.is_some() {
        let _ = output.annotate(&Annotation::error(message));
    } else {
        let _ = error_line(&message);
    }
}
