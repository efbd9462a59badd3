//! variables.json: the one committed file holding every placeholder's value, read strictly, the
//! comparison of the values a definition used before with the ones it uses now, and the edit
//! that changes values in the text while leaving every other byte as it was ([`set_values`]).

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;
use serde::Serialize;

use crate::diagnostics::{Code, Diagnostic};
use crate::json;
use crate::output::{quoted, shown};
use crate::suggest::{closest, did_you_mean};

/// The variables file's name, at the repository root.
pub const VARIABLES_FILE: &str = "variables.json";

/// One variable as committed, with the line that defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub value: String,
    pub line: usize,
}

/// The committed variables, in file order.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    entries: IndexMap<String, Variable>,
    /// Names defined with a value that was refused (such as a number): their error is reported
    /// once, at variables.json, not again at every placeholder naming them.
    rejected: BTreeSet<String>,
}

impl Variables {
    /// Parses the text of variables.json. Every problem is reported, each naming `file` and the
    /// line and column; the variables that are sound are returned beside them.
    pub fn parse(file: &str, text: &str) -> (Self, Vec<Diagnostic>) {
        let mut variables = Self::default();
        let members = match json::parse_members(text) {
            Ok(members) => members,
            Err(error) => return (variables, vec![unreadable(file, error)]),
        };
        let mut problems = Vec::new();
        for member in members {
            if let Some(problem) = variables.name_problem(file, &member) {
                problems.push(problem);
                continue;
            }
            match json::raw_as_string(member.raw) {
                Ok(value) => {
                    variables.entries.insert(
                        member.key,
                        Variable {
                            value,
                            line: member.key_line,
                        },
                    );
                }
                Err(not_a_string) => {
                    variables.rejected.insert(member.key.clone());
                    problems.push(value_problem(file, &member, not_a_string));
                }
            }
        }
        (variables, problems)
    }

    /// Why a member's name cannot be a variable: defined twice, or not a valid name.
    fn name_problem(&self, file: &str, member: &json::Member<'_>) -> Option<Diagnostic> {
        let at = |code, message: String| {
            Diagnostic::error(code, message)
                .in_file(file)
                .at(member.key_line, member.key_column)
        };
        if let Some(first) = self.entries.get(&member.key) {
            return Some(at(
                Code::DuplicateVariable,
                format!(
                    "variable {} is defined twice, at lines {} and {}",
                    shown(&member.key),
                    first.line,
                    member.key_line
                ),
            ));
        }
        if !is_valid_name(&member.key) {
            return Some(at(
                Code::BadVariableName,
                format!(
                    "{} is not a valid variable name: use capital letters, digits and \
                     underscores, starting with a letter (like VS_2019_PREVIEW_VERSION)",
                    quoted(&member.key)
                ),
            ));
        }
        None
    }

    /// Builds variables from pairs, for tests and for generated repositories.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let entries = pairs
            .into_iter()
            .enumerate()
            .map(|(index, (name, value))| {
                let variable = Variable {
                    value: value.to_string(),
                    line: index + 2,
                };
                (name.to_string(), variable)
            })
            .collect();
        Self {
            entries,
            rejected: BTreeSet::new(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .get(name)
            .map(|variable| variable.value.as_str())
    }

    pub fn line_of(&self, name: &str) -> Option<usize> {
        self.entries.get(name).map(|variable| variable.line)
    }

    /// True when variables.json defines `name` with a value that was refused.
    pub fn is_rejected(&self, name: &str) -> bool {
        self.rejected.contains(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Names and values in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|(name, variable)| (name.as_str(), variable.value.as_str()))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// variables.json that cannot be read at all: not JSON, or not one object of strings.
fn unreadable(file: &str, error: json::JsonError) -> Diagnostic {
    let message = if error.message.starts_with("invalid type") {
        "variables.json must be one JSON object mapping each variable name to a string".to_string()
    } else {
        error.message
    };
    let code = if message.starts_with("variables.json must") {
        Code::WrongShape
    } else {
        Code::JsonSyntax
    };
    Diagnostic::error(code, message)
        .in_file(file)
        .at(error.line, error.column)
}

/// Why a member's value is not a variable's value, at the value.
fn value_problem(
    file: &str,
    member: &json::Member<'_>,
    not_a_string: json::NotAString,
) -> Diagnostic {
    match not_a_string {
        json::NotAString::Kind(kind) => Diagnostic::error(
            Code::NonStringValue,
            format!(
                "the value of {} is {kind}; every value must be a string \
             (write \"{}\" with quotes)",
                shown(&member.key),
                shown(member.raw.get()).replace('\n', " ")
            ),
        )
        .in_file(file)
        .at(member.value_line, member.value_column),
        json::NotAString::LoneSurrogate { escape, offset } => {
            // A string holds no line break, so the escape is on the value's line.
            let column = member.value_column
                + member
                    .raw
                    .get()
                    .get(..offset)
                    .map_or(offset, |before| before.chars().count());
            Diagnostic::error(
                Code::JsonSyntax,
                format!(
                    "the value of {} holds the escape {escape}, half of a UTF-16 \
                     surrogate pair without its other half, which stands for no \
                     character; write the character itself, or both halves of its \
                     pair (like \\ud83d\\ude00)",
                    shown(&member.key)
                ),
            )
            .in_file(file)
            .at(member.value_line, column)
        }
    }
}

/// `[A-Z][A-Z0-9_]*`: the only names a placeholder can have.
///
/// ```
/// use imagegen::variables::is_valid_name;
///
/// assert!(is_valid_name("VS_2019_PREVIEW_VERSION"));
/// assert!(!is_valid_name("vs_version"));
/// assert!(!is_valid_name("2019_VERSION"));
/// ```
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'A'..=b'Z'))
        && bytes.all(|byte| matches!(byte, b'A'..=b'Z' | b'0'..=b'9' | b'_'))
}

/// How one variable's value differs between two uses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct ValueChange {
    pub name: String,
    /// The value last submitted; absent when the definition did not use the variable then.
    pub old: Option<String>,
    /// The value now; absent when the definition no longer uses the variable.
    pub new: Option<String>,
}

/// The variables whose value differs between `old` and `new`, by name.
pub fn changes(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<ValueChange> {
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let (old, new) = (old.get(name), new.get(name));
            (old != new).then(|| ValueChange {
                name: name.clone(),
                old: old.cloned(),
                new: new.cloned(),
            })
        })
        .collect()
}

/// Why a change to variables.json was refused. Nothing is written when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VarsError {
    /// An argument without `=`.
    #[error(
        "{argument:?} is not NAME=VALUE: write the new value after `=` (like VS_2022_VERSION=17_12_2)"
    )]
    NotAnAssignment { argument: String },
    #[error(
        "{name:?} is not a variable name: names use capital letters, digits and underscores \
         (like VS_2019_PREVIEW_VERSION)"
    )]
    InvalidName { name: String },
    /// A name variables.json does not define, without `--add`.
    #[error(
        "no variable {name} in {VARIABLES_FILE}; pass --add to add it as a new variable{}",
        did_you_mean(suggestions)
    )]
    UnknownName {
        name: String,
        /// The closest names variables.json defines, best first.
        suggestions: Vec<String>,
    },
    #[error("{name} is set twice in one call; give each variable one value")]
    SetTwice { name: String },
    /// variables.json has errors: it is not edited until they are fixed.
    #[error(
        "{VARIABLES_FILE} has {}; fix {} first:\n{}",
        if problems.len() == 1 { "an error".to_string() } else { format!("{} errors", problems.len()) },
        if problems.len() == 1 { "it" } else { "them" },
        problems.iter().map(|problem| format!("  {problem}")).collect::<Vec<_>>().join("\n")
    )]
    InvalidFile { problems: Vec<Diagnostic> },
    /// The edited text did not read back with the intended values: a bug in the edit, caught
    /// before anything is written.
    #[error(
        "the edited {VARIABLES_FILE} would not read back as intended ({reason}); nothing was \
         written. Please report this with the file attached"
    )]
    EditCheck { reason: String },
}

/// Reads one `NAME=VALUE` argument; the value is everything after the first `=` and may be
/// empty or hold further `=`.
///
/// ```
/// use imagegen::variables::parse_assignment;
///
/// assert_eq!(
///     parse_assignment("VS_2022_VERSION=17_12_2").unwrap(),
///     ("VS_2022_VERSION".to_string(), "17_12_2".to_string())
/// );
/// assert!(parse_assignment("VS_2022_VERSION").is_err());
/// ```
pub fn parse_assignment(argument: &str) -> Result<(String, String), VarsError> {
    let (name, value) = argument
        .split_once('=')
        .ok_or_else(|| VarsError::NotAnAssignment {
            argument: argument.to_string(),
        })?;
    if !is_valid_name(name) {
        return Err(VarsError::InvalidName {
            name: name.to_string(),
        });
    }
    Ok((name.to_string(), value.to_string()))
}

/// What happened to one variable named in a [`set_values`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SetStatus {
    /// The value was replaced.
    Changed,
    /// The variable was new (`add`) and was appended.
    Added,
    /// The value was already the one asked for; its bytes were left as they were.
    Unchanged,
}

/// One variable named in a [`set_values`] call, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetChange {
    pub name: String,
    /// The value before; absent when the variable was added.
    pub old: Option<String>,
    pub new: String,
    pub status: SetStatus,
}

/// The edited text of variables.json and what changed in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOutcome {
    /// The whole new text: equal to the input, byte for byte, except for the changed values and
    /// the added members.
    pub text: String,
    /// Every variable named, in the order given.
    pub changes: Vec<SetChange>,
}

impl SetOutcome {
    /// True when any value changed or was added, so the file needs writing.
    pub fn is_changed(&self) -> bool {
        self.changes
            .iter()
            .any(|change| change.status != SetStatus::Unchanged)
    }

    /// The names whose value changed or that were added, in the order given.
    pub fn changed_names(&self) -> Vec<String> {
        self.changes
            .iter()
            .filter(|change| change.status != SetStatus::Unchanged)
            .map(|change| change.name.clone())
            .collect()
    }
}

/// Sets each `(name, value)` of `changes` in `text`, the content of variables.json, and returns
/// the new text. Pure: reading and writing the file is the caller's.
///
/// Only the changed values' bytes are replaced, each by the value as a JSON string (quotes,
/// backslashes and control characters escaped, any other character kept as is); key order,
/// indentation, line endings, a byte-order mark and a trailing newline or its absence stay as
/// they were. A value equal to the current one is [`SetStatus::Unchanged`] and its bytes are
/// not touched, even when written with different escapes.
///
/// A name variables.json does not define is refused, with the closest known names, unless `add`
/// is true: then it is appended after the last member with that member's indentation, spacing
/// and line ending (into `{}`, on a line of its own indented by two spaces). Also refused: an
/// invalid name, a name given twice, and a text with any error (every error is returned, with
/// its line and column). The new text is parsed again before it is returned, so a caller never
/// writes a file that would not read back with the intended values.
///
/// ```
/// use imagegen::variables::{SetStatus, set_values};
///
/// let text = "{\r\n  \"VS_2022_VERSION\": \"17_12_1\"\r\n}";
/// let changes = [("VS_2022_VERSION".to_string(), "17_12_2".to_string())];
/// let outcome = set_values(text, &changes, false).unwrap();
/// assert_eq!(outcome.text, "{\r\n  \"VS_2022_VERSION\": \"17_12_2\"\r\n}");
/// assert_eq!(outcome.changes[0].status, SetStatus::Changed);
/// ```
pub fn set_values(
    text: &str,
    changes: &[(String, String)],
    add: bool,
) -> Result<SetOutcome, VarsError> {
    let (variables, problems) = Variables::parse(VARIABLES_FILE, text);
    if !problems.is_empty() {
        return Err(VarsError::InvalidFile { problems });
    }
    let mut seen = BTreeSet::new();
    for (name, _) in changes {
        if !is_valid_name(name) {
            return Err(VarsError::InvalidName { name: name.clone() });
        }
        if !seen.insert(name.as_str()) {
            return Err(VarsError::SetTwice { name: name.clone() });
        }
        if !add && !variables.contains(name) {
            return Err(VarsError::UnknownName {
                name: name.clone(),
                suggestions: closest(name, variables.names().map(str::to_string)),
            });
        }
    }
    let members = json::parse_members(text).map_err(|error| VarsError::EditCheck {
        reason: format!("it parsed once but not twice: {error}"),
    })?;

    let mut replacements: Vec<(usize, usize, String)> = Vec::new();
    let mut added = Vec::new();
    let mut outcome = Vec::new();
    for (name, value) in changes {
        let member = members.iter().find(|member| &member.key == name);
        let (old, status) = match (variables.get(name), member) {
            (Some(old), _) if old == value => (Some(old), SetStatus::Unchanged),
            (Some(old), Some(member)) => {
                let end = member.value_offset + member.raw.get().len();
                replacements.push((member.value_offset, end, json_string(value)));
                (Some(old), SetStatus::Changed)
            }
            _ => {
                added.push((name.as_str(), value.as_str()));
                (None, SetStatus::Added)
            }
        };
        outcome.push(SetChange {
            name: name.clone(),
            old: old.map(str::to_string),
            new: value.clone(),
            status,
        });
    }
    if !added.is_empty() {
        replacements.push(addition(text, &members, &added));
    }

    replacements.sort_by_key(|(start, _, _)| *start);
    let mut edited = String::with_capacity(text.len() + 64);
    let mut copied = 0;
    for (start, end, replacement) in &replacements {
        edited.push_str(&text[copied..*start]);
        edited.push_str(replacement);
        copied = *end;
    }
    edited.push_str(&text[copied..]);

    check_edit(&variables, &edited, &outcome)?;
    Ok(SetOutcome {
        text: edited,
        changes: outcome,
    })
}

/// A value as a JSON string literal; non-ASCII characters are kept as they are.
fn json_string(value: &str) -> String {
    serde_json::to_string(value).expect("a string always serializes")
}

/// The splice that appends `added` to the object: after the last member's value, or inside an
/// empty object's braces.
fn addition(
    text: &str,
    members: &[json::Member<'_>],
    added: &[(&str, &str)],
) -> (usize, usize, String) {
    let Some(last) = members.last() else {
        let body = json::strip_bom(text);
        let open = text.len() - body.len() + body.find('{').expect("the text parsed as an object");
        let close = open
            + text[open..]
                .find('}')
                .expect("the text parsed as an object");
        let newline = line_ending(text);
        let gap = format!("{newline}  ");
        let members = joined(added, ": ", &format!(",{gap}"));
        return (open + 1, close, format!("{gap}{members}{newline}"));
    };
    let bytes = text.as_bytes();
    // What separates a member from the one before it (or from `{`): reused for each new member
    // so that it sits on its own line with the same indentation, or on the same line.
    let mut gap_start = last.key_offset;
    while gap_start > 0 && bytes[gap_start - 1].is_ascii_whitespace() {
        gap_start -= 1;
    }
    let before_key = &text[gap_start..last.key_offset];
    let gap = match before_key.rfind('\n') {
        Some(newline) => format!("{}{}", line_ending(text), &before_key[newline + 1..]),
        None if before_key.is_empty() => " ".to_string(),
        None => before_key.to_string(),
    };
    let mut key_end = last.value_offset;
    while key_end > last.key_offset && bytes[key_end - 1] != b'"' {
        key_end -= 1;
    }
    let colon = &text[key_end..last.value_offset];
    let colon = if colon.contains('\n') { ": " } else { colon };
    let at = last.value_offset + last.raw.get().len();
    (
        at,
        at,
        format!(",{gap}{}", joined(added, colon, &format!(",{gap}"))),
    )
}

fn joined(added: &[(&str, &str)], colon: &str, separator: &str) -> String {
    added
        .iter()
        .map(|(name, value)| format!("{}{colon}{}", json_string(name), json_string(value)))
        .collect::<Vec<_>>()
        .join(separator)
}

/// The file's line ending: CRLF when its first line ends so, LF otherwise.
fn line_ending(text: &str) -> &'static str {
    match text.find('\n') {
        Some(index) if text[..index].ends_with('\r') => "\r\n",
        _ => "\n",
    }
}

/// Reads the edited text back: it must hold exactly the old variables with the new values.
fn check_edit(before: &Variables, edited: &str, changes: &[SetChange]) -> Result<(), VarsError> {
    let (after, problems) = Variables::parse(VARIABLES_FILE, edited);
    let fail = |reason: String| Err(VarsError::EditCheck { reason });
    if let Some(problem) = problems.first() {
        return fail(problem.to_string());
    }
    let mut expected: IndexMap<&str, &str> = before.iter().collect();
    for change in changes {
        expected.insert(&change.name, &change.new);
    }
    let found: IndexMap<&str, &str> = after.iter().collect();
    if found != expected || !found.keys().eq(expected.keys()) {
        return fail("the names or values differ from the ones asked for".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Variables, Vec<String>) {
        let (variables, problems) = Variables::parse("variables.json", text);
        (
            variables,
            problems.iter().map(ToString::to_string).collect(),
        )
    }

    #[test]
    fn reads_names_and_values_in_order() {
        let (variables, problems) = parse("{\n  \"B\": \"2\",\n  \"A\": \"1\"\n}\n");
        assert!(problems.is_empty());
        assert_eq!(
            variables.iter().collect::<Vec<_>>(),
            [("B", "2"), ("A", "1")]
        );
        assert_eq!(variables.line_of("A"), Some(3));
    }

    #[test]
    fn duplicate_names_both_lines() {
        let (variables, problems) = parse("{\n  \"A\": \"1\",\n  \"B\": \"2\",\n  \"A\": \"3\"\n}");
        assert_eq!(
            problems,
            ["variables.json:4:3: variable A is defined twice, at lines 2 and 4"]
        );
        assert_eq!(variables.get("A"), Some("1"));
    }

    #[test]
    fn every_problem_is_reported_in_one_pass() {
        let (variables, problems) =
            parse("{\n  \"lower\": \"1\",\n  \"N\": 5,\n  \"OK\": \"x\",\n  \"OK\": \"y\"\n}");
        assert_eq!(
            problems,
            [
                "variables.json:2:3: \"lower\" is not a valid variable name: use capital \
                 letters, digits and underscores, starting with a letter (like \
                 VS_2019_PREVIEW_VERSION)",
                "variables.json:3:8: the value of N is a number; every value must be a string \
                 (write \"5\" with quotes)",
                "variables.json:5:3: variable OK is defined twice, at lines 4 and 5",
            ]
        );
        assert_eq!(variables.len(), 1);
    }

    #[test]
    fn not_an_object() {
        let (_, problems) = parse("[\"A\"]");
        assert_eq!(
            problems,
            [
                "variables.json:1:1: variables.json must be one JSON object mapping each \
                 variable name to a string"
            ]
        );
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let (_, problems) = parse("{\r\n  \"A\": \"1\"\r\n  \"B\": \"2\"\r\n}");
        assert_eq!(problems, ["variables.json:3:3: expected `,` or `}`"]);
    }

    #[test]
    fn byte_order_mark_and_crlf_are_accepted() {
        let (variables, problems) = parse("\u{feff}{\r\n  \"A\": \"1\"\r\n}\r\n");
        assert!(problems.is_empty());
        assert_eq!(variables.get("A"), Some("1"));
    }

    #[test]
    fn valid_names() {
        for name in ["A", "VS_2019_PREVIEW_URL", "X1", "A_"] {
            assert!(is_valid_name(name), "{name}");
        }
        for name in ["", "a", "1A", "_A", "A-B", "Ä", "A B"] {
            assert!(!is_valid_name(name), "{name}");
        }
    }

    #[test]
    fn changes_list_changed_added_and_removed() {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let old = map(&[("A", "1"), ("B", "2"), ("C", "3")]);
        let new = map(&[("A", "1"), ("B", "5"), ("D", "4")]);
        let change = |name: &str, old: Option<&str>, new: Option<&str>| ValueChange {
            name: name.into(),
            old: old.map(Into::into),
            new: new.map(Into::into),
        };
        assert_eq!(
            changes(&old, &new),
            [
                change("B", Some("2"), Some("5")),
                change("C", Some("3"), None),
                change("D", None, Some("4")),
            ]
        );
    }

    fn set(text: &str, pairs: &[(&str, &str)], add: bool) -> Result<SetOutcome, VarsError> {
        let changes: Vec<(String, String)> = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        set_values(text, &changes, add)
    }

    fn set_text(text: &str, pairs: &[(&str, &str)], add: bool) -> String {
        set(text, pairs, add).unwrap().text
    }

    #[test]
    fn set_replaces_only_the_value_bytes_with_crlf_and_bom() {
        let text = "\u{feff}{\r\n  \"A\": \"1\",\r\n  \"B\": \"2\"\r\n}\r\n";
        assert_eq!(
            set_text(text, &[("B", "20")], false),
            "\u{feff}{\r\n  \"A\": \"1\",\r\n  \"B\": \"20\"\r\n}\r\n"
        );
    }

    #[test]
    fn set_keeps_tabs_odd_spacing_and_a_missing_trailing_newline() {
        let text = "{\n\t\"A\" :\t\"1\" ,\n\t  \"B\":\"2\"   }";
        assert_eq!(
            set_text(text, &[("A", "one"), ("B", "two")], false),
            "{\n\t\"A\" :\t\"one\" ,\n\t  \"B\":\"two\"   }"
        );
    }

    #[test]
    fn set_escapes_quotes_backslashes_and_control_characters_and_keeps_unicode() {
        let value = "say \"hi\"\\path\nnext\ttab\u{1}é→😀";
        let outcome = set("{\"A\": \"1\"}\n", &[("A", value)], false).unwrap();
        assert_eq!(
            outcome.text,
            "{\"A\": \"say \\\"hi\\\"\\\\path\\nnext\\ttab\\u0001é→😀\"}\n"
        );
        let (variables, problems) = Variables::parse(VARIABLES_FILE, &outcome.text);
        assert!(problems.is_empty());
        assert_eq!(variables.get("A"), Some(value));
    }

    #[test]
    fn set_reports_old_and_new_values_in_the_order_given() {
        let outcome = set(
            "{\"A\": \"1\", \"B\": \"2\"}",
            &[("B", "3"), ("A", "1")],
            false,
        )
        .unwrap();
        assert_eq!(
            outcome.changes,
            [
                SetChange {
                    name: "B".into(),
                    old: Some("2".into()),
                    new: "3".into(),
                    status: SetStatus::Changed,
                },
                SetChange {
                    name: "A".into(),
                    old: Some("1".into()),
                    new: "1".into(),
                    status: SetStatus::Unchanged,
                },
            ]
        );
        assert_eq!(outcome.changed_names(), ["B"]);
    }

    #[test]
    fn setting_the_current_value_is_unchanged_and_leaves_the_text_alone() {
        // The same value written with an escape stays as written.
        let text = "{\n  \"A\": \"\\u0031\"\n}\n";
        let outcome = set(text, &[("A", "1")], false).unwrap();
        assert_eq!(outcome.text, text);
        assert_eq!(outcome.changes[0].status, SetStatus::Unchanged);
        assert!(!outcome.is_changed());
    }

    #[test]
    fn add_appends_after_the_last_member_with_its_indentation_and_line_ending() {
        let text = "{\r\n    \"A\": \"1\",\r\n    \"B\": \"2\"\r\n}";
        let outcome = set(text, &[("C", "3"), ("A", "0"), ("D", "4")], true).unwrap();
        assert_eq!(
            outcome.text,
            "{\r\n    \"A\": \"0\",\r\n    \"B\": \"2\",\r\n    \"C\": \"3\",\r\n    \"D\": \"4\"\r\n}"
        );
        let statuses: Vec<_> = outcome.changes.iter().map(|c| c.status).collect();
        assert_eq!(
            statuses,
            [SetStatus::Added, SetStatus::Changed, SetStatus::Added]
        );
        assert_eq!(outcome.changes[0].old, None);
    }

    #[test]
    fn add_on_one_line_stays_on_one_line() {
        assert_eq!(
            set_text("{\"A\":\"1\"}", &[("B", "2")], true),
            "{\"A\":\"1\", \"B\":\"2\"}"
        );
    }

    #[test]
    fn add_into_an_empty_object_puts_each_variable_on_its_own_line() {
        assert_eq!(
            set_text("{}\n", &[("A", "1"), ("B", "2")], true),
            "{\n  \"A\": \"1\",\n  \"B\": \"2\"\n}\n"
        );
        assert_eq!(
            set_text("\u{feff}{ \r\n}", &[("A", "1")], true),
            "\u{feff}{\r\n  \"A\": \"1\"\r\n}"
        );
    }

    #[test]
    fn unknown_name_is_refused_with_the_closest_names() {
        let error = set(
            "{\"VS_2022_VERSION\": \"1\"}",
            &[("VS_2022_VERSOIN", "2")],
            false,
        )
        .unwrap_err();
        assert_eq!(
            error,
            VarsError::UnknownName {
                name: "VS_2022_VERSOIN".into(),
                suggestions: vec!["VS_2022_VERSION".into()],
            }
        );
        assert_eq!(
            error.to_string(),
            "no variable VS_2022_VERSOIN in variables.json; pass --add to add it as a new \
             variable; did you mean VS_2022_VERSION?"
        );
    }

    #[test]
    fn a_name_given_twice_is_refused() {
        let error = set("{\"A\": \"1\"}", &[("A", "2"), ("A", "3")], false).unwrap_err();
        assert_eq!(error, VarsError::SetTwice { name: "A".into() });
    }

    #[test]
    fn an_invalid_name_is_refused_even_with_add() {
        let error = set("{}", &[("vs_version", "2")], true).unwrap_err();
        assert_eq!(
            error,
            VarsError::InvalidName {
                name: "vs_version".into()
            }
        );
    }

    #[test]
    fn a_broken_file_is_not_edited_and_every_error_is_named() {
        let text = "{\n  \"A\": 1,\n  \"B\": \"2\",\n  \"B\": \"3\"\n}";
        let error = set(text, &[("B", "4")], false).unwrap_err();
        assert_eq!(
            error.to_string(),
            "variables.json has 2 errors; fix them first:\n  variables.json:2:8: the value of A \
             is a number; every value must be a string (write \"1\" with quotes)\n  \
             variables.json:4:3: variable B is defined twice, at lines 3 and 4"
        );
        let error = set("{\n  \"A\": \"1\"\n  \"B\": \"2\"\n}", &[("A", "3")], false).unwrap_err();
        assert_eq!(
            error.to_string(),
            "variables.json has an error; fix it first:\n  variables.json:3:3: expected `,` or `}`"
        );
    }

    #[test]
    fn assignments_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_assignment("URL=https://x.test/?a=b").unwrap(),
            ("URL".to_string(), "https://x.test/?a=b".to_string())
        );
        assert_eq!(
            parse_assignment("EMPTY=").unwrap(),
            ("EMPTY".to_string(), String::new())
        );
        assert_eq!(
            parse_assignment("VS_2022_VERSION").unwrap_err(),
            VarsError::NotAnAssignment {
                argument: "VS_2022_VERSION".into()
            }
        );
        assert!(matches!(
            parse_assignment("lower=1"),
            Err(VarsError::InvalidName { .. })
        ));
    }
}
