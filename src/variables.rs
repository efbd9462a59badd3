//! variables.json: the one committed file holding every placeholder's value, read strictly, and
//! the comparison of the values a definition used before with the ones it uses now.

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;
use serde::Serialize;

use crate::diagnostics::{Code, Diagnostic};
use crate::json;

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
        let mut problems = Vec::new();
        let members = match json::parse_members(text) {
            Ok(members) => members,
            Err(error) => {
                let message = if error.message.starts_with("invalid type") {
                    "variables.json must be one JSON object mapping each variable name to a string"
                        .to_string()
                } else {
                    error.message
                };
                let code = if message.starts_with("variables.json must") {
                    Code::WrongShape
                } else {
                    Code::JsonSyntax
                };
                problems.push(
                    Diagnostic::error(code, message)
                        .in_file(file)
                        .at(error.line, error.column),
                );
                return (variables, problems);
            }
        };
        for member in members {
            let at = |code, message: String| {
                Diagnostic::error(code, message)
                    .in_file(file)
                    .at(member.key_line, member.key_column)
            };
            if let Some(first) = variables.entries.get(&member.key) {
                problems.push(at(
                    Code::DuplicateVariable,
                    format!(
                        "variable {} is defined twice, at lines {} and {}",
                        member.key, first.line, member.key_line
                    ),
                ));
                continue;
            }
            if !is_valid_name(&member.key) {
                problems.push(at(
                    Code::BadVariableName,
                    format!(
                        "{:?} is not a valid variable name: use capital letters, digits and \
                         underscores, starting with a letter (like VS_2019_PREVIEW_VERSION)",
                        member.key
                    ),
                ));
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
                Err(kind) => {
                    variables.rejected.insert(member.key.clone());
                    problems.push(
                        Diagnostic::error(
                            Code::NonStringValue,
                            format!(
                                "the value of {} is {kind}; every value must be a string \
                             (write \"{}\" with quotes)",
                                member.key,
                                member.raw.get().replace('\n', " ")
                            ),
                        )
                        .in_file(file)
                        .at(member.value_line, member.value_column),
                    );
                }
            }
        }
        (variables, problems)
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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
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
}
