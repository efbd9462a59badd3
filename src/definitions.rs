//! Image definitions: parsing one definition, finding its `{VARIABLE}` placeholders, rendering it
//! with variables.json, hashing the result and reading the image names it will produce. Pure.
//!
//! Substitution happens on parsed JSON, inside string values only, so every value is escaped
//! correctly by the serializer and key order is kept. `{{` and `}}` write literal braces; any
//! other brace is an error, since a mistyped placeholder (`{Vs_2019_URL}`) must never reach
//! Image Factory as literal text.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::diagnostics::{Code, Diagnostic};
use crate::json;
use crate::output::{quoted, shown};
use crate::variables::{self, Variables};

/// The folder, under the repository root, that holds the definitions.
pub const DEFINITIONS_DIR: &str = "definitions";

/// Azure's limit on a managed image name.
pub(crate) const MAX_IMAGE_NAME_LEN: usize = 80;

/// A placeholder found in a definition, with the JSON pointer of the string holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub name: String,
    pub pointer: String,
}

/// What is known of a committed definition once parsed: its id, its file and its placeholders.
/// Its template travels beside it ([`Definition::parse`]) and is consumed by rendering, so a
/// large catalog never holds two copies of every payload.
#[derive(Debug, Clone)]
pub struct Definition {
    /// Its path under `definitions/` without `.json`, with `/` separators.
    pub id: String,
    /// Its path relative to the repository root, for messages.
    pub file: String,
    /// Every placeholder, in document order.
    pub placeholders: Vec<Placeholder>,
    /// Some string holds a stray brace (already reported): the definition cannot be rendered,
    /// but its placeholders are still checked so every problem shows in one run.
    pub has_brace_errors: bool,
    /// `Destination[].CustomImageName` before rendering, in order (those that are strings):
    /// the patterns that find this definition's images in OSOB.
    pub image_name_templates: Vec<String>,
}

/// A definition rendered with the current variables: what would be submitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub id: String,
    pub file: String,
    pub payload: Payload,
    pub hash: PayloadHash,
    /// The variables the definition uses, with the values it was rendered with.
    pub variables: BTreeMap<String, String>,
    /// `Destination[].CustomImageName`, rendered: the images the job will produce.
    pub image_names: Vec<String>,
}

/// A payload kept as its compact JSON text, key order kept. Catalogs and ledgers hold thousands
/// of payloads but need a payload's tree only to show what changed, so they keep the text: one
/// allocation each instead of one per field. The text is shared: the catalog's payload, the
/// submission, and every copy of the ledger entry that records it (the run's view, the stored
/// one, the journal record) hold the same allocation, which keeps a run over thousands of
/// definitions within its memory target (docs/benchmarks.md).
#[derive(Debug, Clone)]
pub struct Payload(Arc<RawValue>);

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Payload {
    /// A payload read back (from the ledger) is checked to read as a tree: raw JSON is only
    /// checked for syntax, which lets a string hold `\ud800`, half of a surrogate pair and no
    /// character, and a plan would then fail to show what changed. The check builds no tree.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Readable::deserialize(&mut serde_json::Deserializer::from_str(raw.get())).map_err(
            |error| {
                serde::de::Error::custom(format_args!(
                    "the payload holds JSON that cannot be read ({error})"
                ))
            },
        )?;
        Ok(Self(Arc::from(raw)))
    }
}

/// Reads any JSON value through to its last string, keeping nothing: a string reads only if
/// every escape in it stands for a character.
struct Readable;

impl<'de> Deserialize<'de> for Readable {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Readable)
    }
}

impl<'de> serde::de::Visitor<'de> for Readable {
    type Value = Readable;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Readable, E> {
        Ok(Readable)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Readable, E> {
        Ok(Readable)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Readable, E> {
        Ok(Readable)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Readable, E> {
        Ok(Readable)
    }

    fn visit_str<E>(self, _: &str) -> Result<Readable, E> {
        Ok(Readable)
    }

    fn visit_unit<E>(self) -> Result<Readable, E> {
        Ok(Readable)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut items: A) -> Result<Readable, A::Error> {
        while items.next_element::<Readable>()?.is_some() {}
        Ok(Readable)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Readable, A::Error> {
        while map.next_entry::<Readable, Readable>()?.is_some() {}
        Ok(Readable)
    }
}

impl Payload {
    pub fn new(payload: &Value) -> Self {
        let raw = serde_json::value::to_raw_value(payload).expect("a JSON value serializes");
        Self(Arc::from(raw))
    }

    /// The payload as a JSON tree, key order kept.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.0.get()).expect("a payload holds valid JSON")
    }

    /// The compact JSON text, exactly as it is submitted.
    pub fn as_json(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// sha256, in lower-case hex, of a payload's canonical JSON (see [`canonical_json`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PayloadHash(String);

impl PayloadHash {
    pub fn of(payload: &Value) -> Self {
        let mut hasher = HashWriter(Sha256::new());
        write_canonical(payload, &mut hasher).expect("hashing cannot fail");
        let digest = hasher.0.finalize();
        let mut hex = String::with_capacity(64);
        for byte in digest.iter() {
            let _ = write!(hex, "{byte:02x}");
        }
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, enough to tell payloads apart on screen.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }
}

impl std::fmt::Display for PayloadHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Compact JSON with every object's keys sorted by their UTF-8 bytes: the form that is hashed,
/// so re-indenting a definition or reordering its keys is not a change worth a rebuild.
///
/// ```
/// use imagegen::definitions::{canonical_json, PayloadHash};
/// use serde_json::json;
///
/// let payload = json!({"b": [1, 2], "a": "x"});
/// assert_eq!(canonical_json(&payload), br#"{"a":"x","b":[1,2]}"#);
/// assert_eq!(PayloadHash::of(&payload), PayloadHash::of(&json!({"a": "x", "b": [1, 2]})));
/// ```
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write_canonical(value, &mut out).expect("writing to memory cannot fail");
    out
}

/// Feeds what is written straight into the hash, so the canonical form is never buffered.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn write_canonical(value: &Value, out: &mut impl std::io::Write) -> std::io::Result<()> {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.write_all(b"{")?;
            for (index, (key, value)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut *out, key.as_str())?;
                out.write_all(b":")?;
                write_canonical(value, out)?;
            }
            out.write_all(b"}")
        }
        Value::Array(items) => {
            out.write_all(b"[")?;
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.write_all(b",")?;
                }
                write_canonical(item, out)?;
            }
            out.write_all(b"]")
        }
        scalar => Ok(serde_json::to_writer(out, scalar)?),
    }
}

/// A piece of a string value: literal text, or a placeholder's name.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

/// Splits a string value into text and placeholders, turning `{{` and `}}` into one brace.
fn pieces(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'{' if bytes.get(index + 1) == Some(&b'{') => {
                pieces.push(Piece::Text(&text[start..=index]));
                index += 2;
                start = index;
            }
            b'}' if bytes.get(index + 1) == Some(&b'}') => {
                pieces.push(Piece::Text(&text[start..=index]));
                index += 2;
                start = index;
            }
            b'{' => {
                let Some(length) = text[index + 1..].find('}') else {
                    return Err(format!(
                        "unmatched '{{' in {}: write '{{{{' for a literal brace",
                        quoted(text)
                    ));
                };
                let name = &text[index + 1..index + 1 + length];
                if !variables::is_valid_name(name) {
                    return Err(format!(
                        "{{{}}} in {} is not a placeholder: names use capital letters, digits \
                         and underscores (like {{VS_2019_PREVIEW_VERSION}}); write '{{{{' and \
                         '}}}}' for literal braces",
                        shown(name),
                        quoted(text)
                    ));
                }
                pieces.push(Piece::Text(&text[start..index]));
                pieces.push(Piece::Placeholder(name));
                index += length + 2;
                start = index;
            }
            b'}' => {
                return Err(format!(
                    "unmatched '}}' in {}: write '}}}}' for a literal brace",
                    quoted(text)
                ));
            }
            _ => index += 1,
        }
    }
    pieces.push(Piece::Text(&text[start..]));
    pieces.retain(|piece| *piece != Piece::Text(""));
    Ok(pieces)
}

fn has_brace(text: &str) -> bool {
    text.bytes().any(|byte| byte == b'{' || byte == b'}')
}

/// The path from the document root to the value being visited.
#[derive(Default)]
struct Path<'a>(Vec<Token<'a>>);

enum Token<'a> {
    Key(&'a str),
    Index(usize),
}

impl Path<'_> {
    fn pointer(&self) -> String {
        let mut pointer = String::new();
        for token in &self.0 {
            pointer.push('/');
            match token {
                Token::Key(key) => pointer.push_str(&json::escape_pointer_token(key)),
                Token::Index(index) => {
                    let _ = write!(pointer, "{index}");
                }
            }
        }
        pointer
    }
}

impl Definition {
    /// Parses a definition's text into the definition and its template. Problems name `file`
    /// and a line and column or a JSON pointer. A definition comes back whenever the text is a
    /// JSON object, even with brace errors.
    pub fn parse(id: &str, file: &str, text: &str) -> (Option<(Self, Value)>, Vec<Diagnostic>) {
        let located = |diagnostic: Diagnostic| diagnostic.in_file(file).for_definition(id);
        let template = match json::parse_strict(text) {
            Ok(value) => value,
            Err(error) => {
                let diagnostic =
                    Diagnostic::error(Code::JsonSyntax, error.message).at(error.line, error.column);
                return (None, vec![located(diagnostic)]);
            }
        };
        if !template.is_object() {
            let diagnostic = Diagnostic::error(
                Code::WrongShape,
                format!(
                    "a definition must be a JSON object (the Image Factory payload), not {}",
                    kind_of(&template)
                ),
            );
            return (None, vec![located(diagnostic)]);
        }
        let mut placeholders = Vec::new();
        let mut problems = Vec::new();
        collect_placeholders(
            &template,
            &mut Path::default(),
            &mut placeholders,
            &mut problems,
        );
        let problems: Vec<Diagnostic> = problems.into_iter().map(located).collect();
        let image_name_templates = custom_image_names(&template);
        let definition = Self {
            id: id.to_string(),
            file: file.to_string(),
            placeholders,
            has_brace_errors: problems.iter().any(Diagnostic::is_error),
            image_name_templates,
        };
        (Some((definition, template)), problems)
    }

    /// The names of the variables this definition uses.
    pub fn variable_names(&self) -> BTreeSet<&str> {
        self.placeholders
            .iter()
            .map(|placeholder| placeholder.name.as_str())
            .collect()
    }

    pub fn uses_any<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> bool {
        let used = self.variable_names();
        names.into_iter().any(|name| used.contains(name))
    }

    /// Substitutes every placeholder and reads the image names. Each error names the
    /// definition's file and the JSON pointer of the field. A placeholder naming a variable
    /// whose value variables.json got wrong fails the rendering without an error of its own:
    /// that error is variables.json's.
    pub fn render(
        &self,
        mut template: Value,
        variables: &Variables,
    ) -> Result<Rendered, Vec<Diagnostic>> {
        let located =
            |diagnostic: Diagnostic| diagnostic.in_file(&self.file).for_definition(&self.id);
        let missing = |placeholder: &&Placeholder| !variables.contains(&placeholder.name);
        let undefined: Vec<Diagnostic> = self
            .placeholders
            .iter()
            .filter(missing)
            .filter(|placeholder| !variables.is_rejected(&placeholder.name))
            .map(|placeholder| {
                let diagnostic = Diagnostic::error(
                    Code::UndefinedVariable,
                    format!(
                        "{{{}}} names no variable in variables.json",
                        shown(&placeholder.name)
                    ),
                )
                .at_pointer(&placeholder.pointer);
                located(diagnostic)
            })
            .collect();
        if self.has_brace_errors
            || !undefined.is_empty()
            || self.placeholders.iter().any(|p| missing(&p))
        {
            return Err(undefined);
        }
        substitute(&mut template, variables);
        let payload = template;
        let image_names = image_names(&payload)
            .map_err(|problems| problems.into_iter().map(located).collect::<Vec<_>>())?;
        let variables = self
            .variable_names()
            .into_iter()
            .map(|name| {
                let value = variables.get(name).unwrap_or_default();
                (name.to_string(), value.to_string())
            })
            .collect();
        Ok(Rendered {
            id: self.id.clone(),
            file: self.file.clone(),
            hash: PayloadHash::of(&payload),
            payload: Payload::new(&payload),
            variables,
            image_names,
        })
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn collect_placeholders<'a>(
    value: &'a Value,
    path: &mut Path<'a>,
    placeholders: &mut Vec<Placeholder>,
    problems: &mut Vec<Diagnostic>,
) {
    match value {
        Value::String(text) if has_brace(text) => match pieces(text) {
            Ok(pieces) => {
                for piece in pieces {
                    if let Piece::Placeholder(name) = piece {
                        placeholders.push(Placeholder {
                            name: name.to_string(),
                            pointer: path.pointer(),
                        });
                    }
                }
            }
            Err(message) => {
                problems.push(
                    Diagnostic::error(Code::BadPlaceholder, message).at_pointer(path.pointer()),
                );
            }
        },
        Value::Object(map) => {
            for (key, value) in map {
                path.0.push(Token::Key(key));
                if matches!(pieces(key).as_deref(), Ok(p) if p.iter().any(|piece| matches!(piece, Piece::Placeholder(_))))
                {
                    problems.push(
                        Diagnostic::warning(
                            Code::PlaceholderInKey,
                            format!(
                                "the key {} looks like it holds a placeholder, but keys are \
                                 never substituted: it is sent as written",
                                quoted(key)
                            ),
                        )
                        .at_pointer(path.pointer()),
                    );
                }
                collect_placeholders(value, path, placeholders, problems);
                path.0.pop();
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                path.0.push(Token::Index(index));
                collect_placeholders(item, path, placeholders, problems);
                path.0.pop();
            }
        }
        _ => {}
    }
}

/// Renders, in place, a template already checked by [`Definition::parse`] whose variables all
/// exist. Only strings holding a brace are rewritten; everything else stays where it is.
fn substitute(template: &mut Value, variables: &Variables) {
    match template {
        Value::String(text) if has_brace(text) => {
            let mut rendered = String::with_capacity(text.len() + 32);
            for piece in pieces(text).expect("the template was checked when it was parsed") {
                match piece {
                    Piece::Text(text) => rendered.push_str(text),
                    Piece::Placeholder(name) => {
                        rendered.push_str(variables.get(name).unwrap_or_default());
                    }
                }
            }
            *text = rendered;
        }
        Value::Object(map) => {
            for value in map.values_mut() {
                substitute(value, variables);
            }
        }
        Value::Array(items) => {
            for item in items {
                substitute(item, variables);
            }
        }
        _ => {}
    }
}

/// Every `Destination[].CustomImageName` that is a string, in order, as written; nothing
/// checked. (Rendered, they are the names of the images a job produces.)
pub fn custom_image_names(payload: &Value) -> Vec<String> {
    payload
        .get("Destination")
        .and_then(Value::as_array)
        .map(|destinations| {
            destinations
                .iter()
                .filter_map(|d| d.get("CustomImageName").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Reads `Destination[].CustomImageName` and checks each name against Azure's rules.
fn image_names(payload: &Value) -> Result<Vec<String>, Vec<Diagnostic>> {
    let missing = |pointer: &str, message: &str| {
        vec![Diagnostic::error(Code::MissingImageName, message).at_pointer(pointer)]
    };
    let Some(destinations) = payload.get("Destination").and_then(Value::as_array) else {
        return Err(missing(
            "/Destination",
            "a definition needs a Destination array whose entries name the image they \
             produce in CustomImageName",
        ));
    };
    if destinations.is_empty() {
        return Err(missing(
            "/Destination",
            "Destination is empty: name at least one image in Destination[].CustomImageName",
        ));
    }
    let mut names = Vec::with_capacity(destinations.len());
    let mut problems = Vec::new();
    for (index, destination) in destinations.iter().enumerate() {
        let pointer = format!("/Destination/{index}/CustomImageName");
        match destination.get("CustomImageName").and_then(Value::as_str) {
            Some(name) => match image_name_problem(name) {
                None => names.push(name.to_string()),
                Some(reason) => problems.push(
                    Diagnostic::error(
                        Code::InvalidImageName,
                        format!(
                            "image name {} is not a valid Azure image name: {reason}",
                            quoted(name)
                        ),
                    )
                    .at_pointer(pointer),
                ),
            },
            None => problems.extend(missing(
                &format!("/Destination/{index}"),
                "this Destination has no CustomImageName string",
            )),
        }
    }
    if problems.is_empty() {
        Ok(names)
    } else {
        Err(problems)
    }
}

/// Why `name` is not a valid Azure managed image name, if it is not.
pub fn image_name_problem(name: &str) -> Option<String> {
    let length = name.chars().count();
    if length == 0 {
        return Some("it is empty".into());
    }
    if length > MAX_IMAGE_NAME_LEN {
        return Some(format!(
            "it is {length} characters long, over the limit of {MAX_IMAGE_NAME_LEN}"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Some(format!(
            "it contains {bad:?}; only letters, digits, '_', '.' and '-' are allowed"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Some("it must start with a letter or digit".into());
    }
    if !name.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        return Some("it must end with a letter, digit or '_'".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_read_back_must_read_as_a_tree() {
        let payload: Payload = serde_json::from_str(r#"{"a": ["\ud83d\ude00", {"\u00e9": 1}]}"#)
            .expect("a payload of characters reads");
        assert_eq!(payload.to_value()["a"][0], "😀");
        for text in [r#"{"a": "\ud800"}"#, r#"{"\udc00": 1}"#, r#"["x\ud83d"]"#] {
            let error = serde_json::from_str::<Payload>(text)
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with("the payload holds JSON that cannot be read"),
                "{text}: {error}"
            );
        }
    }
    use serde_json::json;

    const DESTINATION: &str =
        r#""Destination": [{"StorageAccountName": "s", "CustomImageName": "Image-{VERSION}"}]"#;

    fn definition(body: &str) -> (Definition, Value) {
        let text = format!("{{{body}, {DESTINATION}}}");
        let (definition, problems) =
            Definition::parse("group/image", "definitions/group/image.json", &text);
        assert!(problems.is_empty(), "{problems:?}");
        definition.unwrap()
    }

    fn problems(text: &str) -> Vec<String> {
        let (_, problems) = Definition::parse("d", "definitions/d.json", text);
        problems.iter().map(ToString::to_string).collect()
    }

    fn variables() -> Variables {
        Variables::from_pairs([
            ("VERSION", "16_11_0_4"),
            ("URL", "https://example.test/vs"),
            ("QUOTED", r#"say "hi" \ back\slash"#),
            ("UNICODE", "Español — 日本語"),
            ("NESTED", "{VERSION}"),
        ])
    }

    fn render(body: &str) -> Value {
        let (definition, template) = definition(body);
        definition
            .render(template, &variables())
            .unwrap()
            .payload
            .to_value()
    }

    #[test]
    fn placeholders_are_substituted_inside_strings() {
        let payload = render(r#""Url": "{URL}/vs_Enterprise.exe", "Both": "{URL}-{VERSION}""#);
        assert_eq!(payload["Url"], "https://example.test/vs/vs_Enterprise.exe");
        assert_eq!(payload["Both"], "https://example.test/vs-16_11_0_4");
        assert_eq!(
            payload["Destination"][0]["CustomImageName"],
            "Image-16_11_0_4"
        );
    }

    #[test]
    fn quotes_backslashes_and_unicode_are_escaped_by_the_serializer() {
        let payload = render(r#""A": "{QUOTED}", "B": "{UNICODE}""#);
        assert_eq!(payload["A"], r#"say "hi" \ back\slash"#);
        let text = serde_json::to_string(&payload).unwrap();
        assert!(
            text.contains(r#""A":"say \"hi\" \\ back\\slash""#),
            "{text}"
        );
        assert!(text.contains(r#""B":"Español — 日本語""#), "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), payload);
    }

    #[test]
    fn doubled_braces_write_literal_braces() {
        let payload = render(r#""Script": "if ($x) {{ echo {VERSION} }}""#);
        assert_eq!(payload["Script"], "if ($x) { echo 16_11_0_4 }");
    }

    #[test]
    fn values_are_not_expanded_again() {
        let payload = render(r#""N": "{NESTED}""#);
        assert_eq!(payload["N"], "{VERSION}");
    }

    #[test]
    fn keys_are_left_alone_with_a_warning() {
        let text = format!(r#"{{"{{VERSION}}": "x", {DESTINATION}}}"#);
        let (definition, problems) = Definition::parse("d", "definitions/d.json", &text);
        assert_eq!(
            problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "definitions/d.json at /{VERSION}: the key \"{VERSION}\" looks like it holds a \
                 placeholder, but keys are never substituted: it is sent as written"
            ]
        );
        let (definition, template) = definition.unwrap();
        let payload = definition
            .render(template, &variables())
            .unwrap()
            .payload
            .to_value();
        assert_eq!(payload["{VERSION}"], "x");
    }

    #[test]
    fn key_order_is_kept() {
        let payload = render(r#""Zeta": "1", "Alpha": "{VERSION}", "Mid": {"b": 1, "a": 2}"#);
        let keys: Vec<_> = payload.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["Zeta", "Alpha", "Mid", "Destination"]);
        let text = serde_json::to_string(&payload["Mid"]).unwrap();
        assert_eq!(text, r#"{"b":1,"a":2}"#);
    }

    #[test]
    fn numbers_booleans_and_nulls_pass_through() {
        let payload = render(r#""N": 12.5, "B": true, "Z": null, "L": [1, "{VERSION}"]"#);
        assert_eq!(payload["N"], json!(12.5));
        assert_eq!(payload["L"], json!([1, "16_11_0_4"]));
    }

    #[test]
    fn undefined_variable_names_definition_file_and_pointer() {
        let definition = definition(r#""Artifacts": [{"Parameters": {"Url": "{MISSING}/x"}}]"#);
        let (definition, template) = definition;
        let errors = definition.render(template, &variables()).unwrap_err();
        assert_eq!(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "definitions/group/image.json at /Artifacts/0/Parameters/Url: {MISSING} names \
                 no variable in variables.json"
            ]
        );
        assert_eq!(errors[0].definition.as_deref(), Some("group/image"));
    }

    #[test]
    fn pointer_escapes_slash_and_tilde_in_keys() {
        let definition = definition(r#""a/b": {"c~d": "{MISSING}"}"#);
        let (definition, template) = definition;
        let errors = definition.render(template, &variables()).unwrap_err();
        assert_eq!(errors[0].pointer.as_deref(), Some("/a~1b/c~0d"));
    }

    #[test]
    fn stray_braces_are_errors() {
        assert_eq!(
            problems(r#"{"A": "x { y"}"#),
            [
                r#"definitions/d.json at /A: unmatched '{' in "x { y": write '{{' for a literal brace"#
            ]
        );
        assert_eq!(
            problems(r#"{"A": "x } y"}"#),
            [
                r#"definitions/d.json at /A: unmatched '}' in "x } y": write '}}' for a literal brace"#
            ]
        );
        assert_eq!(
            problems(r#"{"A": ["{Vs_Version}"]}"#),
            [
                "definitions/d.json at /A/0: {Vs_Version} in \"{Vs_Version}\" is not a \
                 placeholder: names use capital letters, digits and underscores (like \
                 {VS_2019_PREVIEW_VERSION}); write '{{' and '}}' for literal braces"
            ]
        );
    }

    #[test]
    fn a_definition_must_be_an_object() {
        assert_eq!(
            problems("[1]"),
            [
                "definitions/d.json: a definition must be a JSON object (the Image Factory payload), not an array"
            ]
        );
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        assert_eq!(
            problems("{\n  \"A\": \"x\",\n}"),
            ["definitions/d.json:3:1: trailing comma"]
        );
    }

    #[test]
    fn image_names_are_required_and_checked() {
        let render_errors = |text: &str| {
            let (parsed, _) = Definition::parse("d", "definitions/d.json", text);
            let (definition, template) = parsed.unwrap();
            definition
                .render(template, &variables())
                .unwrap_err()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            render_errors(r#"{"A": 1}"#),
            [
                "definitions/d.json at /Destination: a definition needs a Destination array \
                 whose entries name the image they produce in CustomImageName"
            ]
        );
        assert_eq!(
            render_errors(r#"{"Destination": [{"CustomImageName": "Image {VERSION}"}, {}]}"#),
            [
                "definitions/d.json at /Destination/0/CustomImageName: image name \"Image \
                 16_11_0_4\" is not a valid Azure image name: it contains ' '; only letters, \
                 digits, '_', '.' and '-' are allowed",
                "definitions/d.json at /Destination/1: this Destination has no CustomImageName \
                 string"
            ]
        );
    }

    #[test]
    fn image_name_rules() {
        assert_eq!(image_name_problem("Helix-Server-2022_16.11"), None);
        assert!(image_name_problem("").is_some());
        assert!(image_name_problem(&"a".repeat(81)).is_some());
        assert_eq!(image_name_problem(&"a".repeat(80)), None);
        assert!(image_name_problem("-a").is_some());
        assert!(image_name_problem("a.").is_some());
        assert_eq!(image_name_problem("a_"), None);
    }

    #[test]
    fn hash_ignores_formatting_and_key_order_but_not_values() {
        let a = PayloadHash::of(&json!({"a": 1, "b": {"x": "1", "y": [1, 2]}}));
        let b = PayloadHash::of(
            &serde_json::from_str("{\n  \"b\": {\"y\": [1, 2], \"x\": \"1\"},\n  \"a\": 1\n}")
                .unwrap(),
        );
        let c = PayloadHash::of(&json!({"a": 1, "b": {"x": "2", "y": [1, 2]}}));
        let d = PayloadHash::of(&json!({"a": 1, "b": {"x": "1", "y": [2, 1]}}));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert_eq!(a.as_str().len(), 64);
    }

    #[test]
    fn canonical_form_is_compact_and_sorted() {
        let value = json!({"b": "\"q\"", "a": [true, null, 1.5]});
        assert_eq!(
            String::from_utf8(canonical_json(&value)).unwrap(),
            r#"{"a":[true,null,1.5],"b":"\"q\""}"#
        );
    }

    #[test]
    fn rendered_records_the_variables_used() {
        let (definition, template) = definition(r#""Url": "{URL}""#);
        let rendered = definition.render(template, &variables()).unwrap();
        assert_eq!(
            rendered.variables.into_iter().collect::<Vec<_>>(),
            [
                ("URL".to_string(), "https://example.test/vs".to_string()),
                ("VERSION".to_string(), "16_11_0_4".to_string())
            ]
        );
        assert_eq!(rendered.image_names, ["Image-16_11_0_4"]);
    }

    #[test]
    fn pieces_split_text_and_placeholders() {
        assert_eq!(
            pieces("a{B}c{{d}}").unwrap(),
            [
                Piece::Text("a"),
                Piece::Placeholder("B"),
                Piece::Text("c{"),
                Piece::Text("d}"),
            ]
        );
    }
}
