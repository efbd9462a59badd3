//! Where results go: text for people on stdout (styled on a terminal, plain otherwise, NO_COLOR
//! respected) with problems on stderr, or one JSON document on stdout for machines. Both forms
//! are made from the same data. On a CI platform problems also become its annotations, and
//! long steps its collapsible groups (see [`crate::platform`]).

use std::borrow::Cow;
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

/// The most characters of one value (a variable's value, a tracking id, an image name, a
/// definition id) that a table or a message shows.
pub const SHOWN_CHARS: usize = 300;

/// The most characters of a free-text message (the service's word on a failed job) shown under
/// a table row: longer than a value, since the end of a message often says what went wrong.
pub const SHOWN_MESSAGE_CHARS: usize = 2_000;

/// `text` as people are shown it: whole up to [`SHOWN_CHARS`] characters; a longer one cut and
/// followed by its full length, the two together within [`SHOWN_CHARS`], so that showing a
/// shown text again changes nothing. Whatever a file or a service holds, one value can neither
/// flood a log nor stretch a table past what a terminal (or a formatting width) can take.
pub fn shown(text: &str) -> Cow<'_, str> {
    shown_within(text, SHOWN_CHARS)
}

/// [`shown`] with another limit.
pub fn shown_within(text: &str, limit: usize) -> Cow<'_, str> {
    if text.char_indices().nth(limit).is_none() {
        return Cow::Borrowed(text);
    }
    let note = format!("… ({} characters in all)", text.chars().count());
    let keep = limit.saturating_sub(note.chars().count());
    let end = text
        .char_indices()
        .nth(keep)
        .map_or(text.len(), |(end, _)| end);
    Cow::Owned(format!("{}{note}", &text[..end]))
}

/// `text` in double quotes with escapes, as a message quotes a value, and [`shown`] first: a
/// multi-megabyte value is quoted as its start and its length.
pub fn quoted(text: &str) -> String {
    format!("{:?}", shown(text).as_ref())
}

/// Columns of text lined up for people, each cell padded to its column's width in characters.
/// Every cell is [`shown`], so no column is wider than [`SHOWN_CHARS`]; the last one, which is
/// not padded and so widens nothing, may hold a message of up to [`SHOWN_MESSAGE_CHARS`]. Every
/// table imagegen prints goes through here.
#[derive(Debug, Clone, Default)]
pub struct Table {
    rows: Vec<Line>,
    /// Columns kept at least this wide, so they stay put from one run to the next.
    min_widths: Vec<usize>,
    /// Spaces before every line, for a table under a heading.
    indent: usize,
}

#[derive(Debug, Clone)]
enum Line {
    Cells(Vec<String>),
    /// A line of its own under the row before it (such as a failed job's message), indented,
    /// counted in no column.
    Detail(String),
}

impl Table {
    /// A table whose first row is `header` (none when empty).
    pub fn new<S: AsRef<str>>(header: &[S]) -> Self {
        let mut table = Self::default();
        if !header.is_empty() {
            table.row(header);
        }
        table
    }

    pub fn row<S: AsRef<str>>(&mut self, cells: &[S]) -> &mut Self {
        let last = cells.len().saturating_sub(1);
        self.rows.push(Line::Cells(
            cells
                .iter()
                .enumerate()
                .map(|(index, cell)| {
                    let limit = if index == last {
                        SHOWN_MESSAGE_CHARS
                    } else {
                        SHOWN_CHARS
                    };
                    shown_within(cell.as_ref(), limit).into_owned()
                })
                .collect(),
        ));
        self
    }

    /// Keeps `column` (from 0) at least `width` characters wide: as wide as its widest value
    /// can be, so it does not move when this run's values are shorter.
    pub fn min_width(&mut self, column: usize, width: usize) -> &mut Self {
        if self.min_widths.len() <= column {
            self.min_widths.resize(column + 1, 0);
        }
        self.min_widths[column] = width;
        self
    }

    /// Starts every line with `spaces` spaces.
    pub fn indent(&mut self, spaces: usize) -> &mut Self {
        self.indent = spaces;
        self
    }

    /// A message under the last row, cut at [`SHOWN_MESSAGE_CHARS`].
    pub fn detail(&mut self, text: &str) -> &mut Self {
        self.rows.push(Line::Detail(
            shown_within(text, SHOWN_MESSAGE_CHARS).into_owned(),
        ));
        self
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.min_widths.clone();
        for line in &self.rows {
            if let Line::Cells(cells) = line {
                for (index, cell) in cells.iter().enumerate() {
                    let width = cell.chars().count();
                    match widths.get_mut(index) {
                        Some(known) => *known = (*known).max(width),
                        None => widths.push(width),
                    }
                }
            }
        }
        let mut text = String::new();
        for line in &self.rows {
            text.extend(std::iter::repeat_n(' ', self.indent));
            match line {
                Line::Cells(cells) => {
                    let start = text.len();
                    for (index, cell) in cells.iter().enumerate() {
                        if index > 0 {
                            text.push_str("  ");
                        }
                        text.push_str(cell);
                        if index + 1 < cells.len() {
                            let pad = widths[index].saturating_sub(cell.chars().count());
                            text.extend(std::iter::repeat_n(' ', pad));
                        }
                    }
                    let kept = text[start..].trim_end().len();
                    text.truncate(start + kept);
                }
                Line::Detail(detail) => {
                    text.push_str("  ");
                    text.push_str(detail);
                }
            }
            text.push('\n');
        }
        text
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

/// An error and its causes on one line, each cause once.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_value_is_shown_cut_with_its_length() {
        assert_eq!(shown("short"), "short");
        let long = "é".repeat(70_000);
        let cut = shown(&long);
        assert!(cut.starts_with("éé"));
        assert!(cut.ends_with("é… (70000 characters in all)"), "{cut}");
        assert_eq!(cut.chars().count(), SHOWN_CHARS);
        assert_eq!(shown(&cut), cut, "showing a shown text changes nothing");
        let exact = "x".repeat(SHOWN_CHARS);
        assert_eq!(shown(&exact), exact);
    }

    #[test]
    fn a_table_lines_up_columns_and_cuts_long_cells() {
        let mut table = Table::new(&["definition", "tracking id", "result"]);
        table.row(&["a", &"x".repeat(70_000), "queued"]);
        table.detail("why it failed");
        table.row(&["ü-long-name", "-", ""]);
        let text = table.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!("definition   {:SHOWN_CHARS$}  result", "tracking id")
        );
        assert!(
            lines[1].ends_with("x… (70000 characters in all)  queued"),
            "{}",
            lines[1]
        );
        assert_eq!(lines[2], "  why it failed");
        assert_eq!(lines[3], "ü-long-name  -", "no trailing spaces");
    }
}
