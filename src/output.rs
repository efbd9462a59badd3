//! Where results go: text for people on stdout (styled on a terminal, plain otherwise, NO_COLOR
//! respected) with problems on stderr, or one JSON document on stdout for machines. Both forms
//! are made from the same data.

use std::io::Write;

use anstyle::{AnsiColor, Style};
use serde::Serialize;

use crate::diagnostics::{Diagnostics, Severity};

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
#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    pub format: Format,
    /// Leave out notes and warnings; results and errors are still written.
    pub quiet: bool,
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
        // stdout flushes at every newline; a large document is written in far fewer calls.
        let mut stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
        serde_json::to_writer_pretty(&mut stdout, value)?;
        stdout.write_all(b"\n")?;
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

    /// Problems, one a line, on stderr. In JSON output they travel inside the document instead.
    pub fn diagnostics(&self, diagnostics: &Diagnostics) -> std::io::Result<()> {
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
}

/// One error line for people on stderr, styled like every other error.
pub fn error_line(text: &str) -> std::io::Result<()> {
    let mut stderr = anstream::stderr().lock();
    writeln!(stderr, "{ERROR}error:{ERROR:#} {text}")
}

/// Prints a fatal error (the whole chain of causes) in the chosen format.
pub fn fatal(format: Format, error: &anyhow::Error) {
    let causes: Vec<String> = error.chain().map(ToString::to_string).collect();
    if format == Format::Json {
        let document =
            serde_json::json!({ "error": { "message": causes[0], "causes": &causes[1..] } });
        let _ = Output::default().json(&document);
    }
    let mut stderr = anstream::stderr().lock();
    let _ = writeln!(stderr, "{ERROR}error:{ERROR:#} {}", causes.join(": "));
}
