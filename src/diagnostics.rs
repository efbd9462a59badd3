//! Problems found in the committed files: one shape for errors and warnings, carrying the file,
//! line and column or the definition and JSON pointer, and a stable code for machines.

use std::fmt;

use serde::Serialize;

use crate::output::{SHOWN_MESSAGE_CHARS, shown, shown_within};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// What kind of problem a diagnostic reports; its name is part of the JSON output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    /// A file or folder could not be read.
    Io,
    /// The file is not UTF-8 text.
    NotUtf8,
    /// The text is not valid JSON (syntax, or the same key twice in one object).
    JsonSyntax,
    /// A file's top level has the wrong shape.
    WrongShape,
    /// variables.json defines a name twice.
    DuplicateVariable,
    /// A variable name does not match `[A-Z][A-Z0-9_]*`.
    BadVariableName,
    /// A variable's value is not a string.
    NonStringValue,
    /// A `{` or `}` in a string value that is neither `{{`/`}}` nor a placeholder.
    BadPlaceholder,
    /// A placeholder names no variable in variables.json.
    UndefinedVariable,
    /// A variable that no definition uses.
    UnusedVariable,
    /// A key that looks like it holds a placeholder; keys are never substituted.
    PlaceholderInKey,
    /// A definition has no `Destination[].CustomImageName`.
    MissingImageName,
    /// A rendered image name breaks Azure's naming rules.
    InvalidImageName,
    /// Two definitions would produce the same image.
    DuplicateImageName,
    /// A file in the definitions folder that is not a definition (nor a note).
    IgnoredFile,
    /// The definitions folder holds no definition.
    NoDefinitions,
    /// osob-mapping/osob.json is malformed or names what does not exist.
    Mapping,
    /// A definition the OSOB mapping does not list.
    UnmappedDefinition,
    /// A symbolic link under `definitions/` that leads outside the repository, nowhere, or
    /// round in a loop: it is not followed.
    Symlink,
    /// variable-sources.json is malformed or names a variable variables.json lacks.
    Sources,
}

/// One problem, located as precisely as what was being read allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: Code,
    /// The file, relative to the repository root, with `/` separators.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// The definition id the problem belongs to, when it belongs to one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    /// The JSON pointer (RFC 6901) of the field inside the definition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    pub message: String,
}

impl Diagnostic {
    /// An error saying `message`. Each message quotes values through [`crate::output::quoted`];
    /// whatever slips past that is cut here, so that no problem ever repeats a whole
    /// multi-megabyte value of a file.
    pub fn error(code: Code, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            severity: Severity::Error,
            code,
            file: None,
            line: None,
            column: None,
            definition: None,
            pointer: None,
            message: match shown_within(&message, SHOWN_MESSAGE_CHARS) {
                std::borrow::Cow::Borrowed(_) => message,
                std::borrow::Cow::Owned(cut) => cut,
            },
        }
    }

    pub fn warning(code: Code, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, message)
        }
    }

    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }

    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    pub fn for_definition(mut self, id: impl Into<String>) -> Self {
        self.definition = Some(id.into());
        self
    }

    /// The field's JSON pointer; a key of a huge object can make it huge, so it is cut like a
    /// value.
    pub fn at_pointer(mut self, pointer: impl Into<String>) -> Self {
        let pointer = pointer.into();
        self.pointer = Some(shown(&pointer).into_owned());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The code as the JSON output spells it, such as `json-syntax`.
    pub fn code_name(&self) -> String {
        serde_json::to_value(self.code)
            .ok()
            .and_then(|value| value.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// `file:line:column`, `file at /pointer`, or whichever part is known.
    pub fn location(&self) -> Option<String> {
        let mut location = self.file.clone()?;
        if let Some(line) = self.line {
            location.push_str(&format!(":{line}"));
            if let Some(column) = self.column {
                location.push_str(&format!(":{column}"));
            }
        }
        if let Some(pointer) = &self.pointer {
            let pointer = if pointer.is_empty() { "/" } else { pointer };
            location.push_str(&format!(" at {pointer}"));
        }
        Some(location)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location() {
            Some(location) => write!(f, "{location}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every problem of a load, in a stable order: by file, then position, then message.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(transparent)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    pub fn extend(&mut self, diagnostics: impl IntoIterator<Item = Diagnostic>) {
        self.0.extend(diagnostics);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    pub fn error_count(&self) -> usize {
        self.0.iter().filter(|d| d.is_error()).count()
    }

    pub fn warning_count(&self) -> usize {
        self.0.len() - self.error_count()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn sort(&mut self) {
        self.0.sort_by(|a, b| {
            (&a.file, a.line, a.column, &a.pointer, &a.message)
                .cmp(&(&b.file, b.line, b.column, &b.pointer, &b.message))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_with_line_and_column() {
        let diagnostic = Diagnostic::error(Code::JsonSyntax, "expected `,` or `}`")
            .in_file("definitions/a.json")
            .at(3, 14);
        assert_eq!(
            diagnostic.to_string(),
            "definitions/a.json:3:14: expected `,` or `}`"
        );
    }

    #[test]
    fn location_with_pointer() {
        let diagnostic = Diagnostic::error(Code::UndefinedVariable, "no variable X")
            .in_file("definitions/a.json")
            .at_pointer("/Destination/0/CustomImageName");
        assert_eq!(
            diagnostic.to_string(),
            "definitions/a.json at /Destination/0/CustomImageName: no variable X"
        );
    }

    #[test]
    fn no_location() {
        let diagnostic = Diagnostic::warning(Code::NoDefinitions, "nothing here");
        assert_eq!(diagnostic.to_string(), "nothing here");
    }
}
