//! Strict JSON reading shared by every file imagegen loads: a byte-order mark is accepted, a
//! duplicate object key is an error, and every error knows its line and column.
//!
//! serde_json quietly keeps the last of two equal keys; in a payload or in variables.json that
//! hides a typo, so objects are built here by a visitor that refuses them.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A syntax or shape error at a place in a JSON text (1-based line, 1-based column in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Drops a UTF-8 byte-order mark, which editors on Windows like to write.
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Parses `text` into a [`Value`], keeping key order and refusing duplicate keys.
///
/// ```
/// let error = imagegen::json::parse_strict("{\n  \"A\": 1,\n  \"A\": 2\n}").unwrap_err();
/// assert_eq!(error.to_string(), "3:5: duplicate key \"A\"");
/// ```
pub fn parse_strict(text: &str) -> Result<Value, JsonError> {
    let text = strip_bom(text);
    if text.trim().is_empty() {
        return Err(JsonError {
            line: 1,
            column: 1,
            message: "the file is empty; it must hold one JSON object".into(),
        });
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = StrictValue
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|error| json_error(text, &error))?;
    Ok(value)
}

/// Turns a serde_json error into a [`JsonError`] whose column counts characters, not bytes.
pub fn json_error(text: &str, error: &serde_json::Error) -> JsonError {
    let full = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    let message = full.strip_suffix(&position).unwrap_or(&full).to_string();
    let line = error.line().max(1);
    let column = char_column(text, line, error.column());
    JsonError {
        line,
        column,
        message,
    }
}

/// The 1-based (line, column) of a byte offset, columns counted in characters.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&byte| byte == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |newline| newline + 1);
    let column = text
        .get(line_start..offset)
        .map_or(offset - line_start, |prefix| prefix.chars().count())
        + 1;
    (line, column)
}

/// Converts serde_json's byte column on `line` to a character column.
fn char_column(text: &str, line: usize, byte_column: usize) -> usize {
    let Some(line_text) = text.split('\n').nth(line - 1) else {
        return byte_column;
    };
    let end = byte_column.min(line_text.len());
    match line_text.get(..end) {
        Some(prefix) => prefix.chars().count().max(1),
        None => byte_column,
    }
}

/// Builds a [`Value`] like serde_json does, but fails on a key seen twice in one object.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(access.size_hint().unwrap_or(0));
        while let Some(item) = access.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key \"{key}\"")));
            }
            let value = access.next_value_seed(StrictValue)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

/// One member of a top-level JSON object, with where its key starts in the text.
#[derive(Debug)]
pub struct Member<'a> {
    pub key: String,
    /// Byte offset of the key's opening quote in the text given to [`parse_members`] (a
    /// byte-order mark included), so that an editor can splice the text around it.
    pub key_offset: usize,
    /// Byte offset of the value's first byte, likewise.
    pub value_offset: usize,
    pub key_line: usize,
    pub key_column: usize,
    pub value_line: usize,
    pub value_column: usize,
    /// The member's value exactly as written.
    pub raw: &'a serde_json::value::RawValue,
}

/// Reads a top-level JSON object member by member, duplicates included, each with its position,
/// so that callers can report every problem of a flat file (such as variables.json) in one pass.
///
/// Fails only on a syntax error or when the top level is not an object.
pub fn parse_members(text: &str) -> Result<Vec<Member<'_>>, JsonError> {
    let bom = text.len() - strip_bom(text).len();
    let text = strip_bom(text);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let members = MembersVisitor { text, bom }
        .deserialize(&mut deserializer)
        .and_then(|members| deserializer.end().map(|()| members))
        .map_err(|error| json_error(text, &error))?;
    Ok(members)
}

struct MembersVisitor<'a> {
    text: &'a str,
    /// Length of the byte-order mark stripped before `text`, added back to the offsets.
    bom: usize,
}

impl<'de> DeserializeSeed<'de> for MembersVisitor<'de> {
    type Value = Vec<Member<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MembersVisitor<'de> {
    type Value = Vec<Member<'de>>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        while let Some(key) = access.next_key::<String>()? {
            let raw: &'de serde_json::value::RawValue = access.next_value()?;
            // The raw value borrows from `self.text`, so its address gives its offset.
            let value_offset = raw.get().as_ptr() as usize - self.text.as_ptr() as usize;
            let key_offset = key_offset_before(self.text, value_offset).unwrap_or(value_offset);
            let (key_line, key_column) = line_column(self.text, key_offset);
            let (value_line, value_column) = line_column(self.text, value_offset);
            members.push(Member {
                key,
                key_offset: key_offset + self.bom,
                value_offset: value_offset + self.bom,
                key_line,
                key_column,
                value_line,
                value_column,
                raw,
            });
        }
        Ok(members)
    }
}

/// Finds the opening quote of the key that precedes the value starting at `value_offset`
/// (walking back over `"key"`, white space and the colon).
fn key_offset_before(text: &str, value_offset: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut index = value_offset;
    let skip_space_back = |mut index: usize| {
        while index > 0 && bytes[index - 1].is_ascii_whitespace() {
            index -= 1;
        }
        index
    };
    index = skip_space_back(index);
    if index == 0 || bytes[index - 1] != b':' {
        return None;
    }
    index = skip_space_back(index - 1);
    if index == 0 || bytes[index - 1] != b'"' {
        return None;
    }
    let closing = index - 1;
    let mut cursor = closing;
    while cursor > 0 {
        cursor -= 1;
        if bytes[cursor] == b'"' {
            let backslashes = bytes[..cursor]
                .iter()
                .rev()
                .take_while(|&&byte| byte == b'\\')
                .count();
            if backslashes % 2 == 0 {
                return Some(cursor);
            }
        }
    }
    None
}

/// Why a raw JSON value is not a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAString {
    /// It is another kind of value: "a number", "an object", ...
    Kind(&'static str),
    /// It is a string, but one that holds an escape of half a UTF-16 surrogate pair (`\ud800`)
    /// without the other half: no character, so no Rust string, can hold it.
    LoneSurrogate {
        /// The escape as written, such as `\ud800`.
        escape: String,
        /// Byte offset of its backslash in the raw value.
        offset: usize,
    },
}

/// Reads a raw JSON value as a string, or says why it is not one.
pub fn raw_as_string(raw: &serde_json::value::RawValue) -> Result<String, NotAString> {
    let text = raw.get();
    match String::deserialize(&mut serde_json::Deserializer::from_str(text)) {
        Ok(value) => Ok(value),
        // A raw value is checked for syntax only, so a string that fails to read holds an
        // escape no string can: half of a surrogate pair.
        Err(_) if text.starts_with('"') => Err(match lone_surrogate(text) {
            Some(offset) => NotAString::LoneSurrogate {
                escape: text.get(offset..offset + 6).unwrap_or_default().to_string(),
                offset,
            },
            None => NotAString::Kind("a string that cannot be read"),
        }),
        Err(_) => Err(NotAString::Kind(match text.as_bytes().first() {
            Some(b'{') => "an object",
            Some(b'[') => "an array",
            Some(b't' | b'f') => "a boolean",
            Some(b'n') => "null",
            _ => "a number",
        })),
    }
}

/// The byte offset of the first `\uXXXX` escape in a JSON string's text that is half of a
/// UTF-16 surrogate pair without its other half.
fn lone_surrogate(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    // A high half waiting for its low half, which must be the very next escape.
    let mut high: Option<usize> = None;
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'\\' && bytes.get(index + 1) == Some(&b'u') {
            let unit = text
                .get(index + 2..index + 6)
                .and_then(|hex| u16::from_str_radix(hex, 16).ok())?;
            match unit {
                0xD800..=0xDBFF if high.is_some() => return high,
                0xD800..=0xDBFF => high = Some(index),
                0xDC00..=0xDFFF if high.take().is_none() => return Some(index),
                0xDC00..=0xDFFF => {}
                _ if high.is_some() => return high,
                _ => {}
            }
            index += 6;
            continue;
        }
        if high.is_some() {
            return high;
        }
        // Any other escape is two bytes; `\\` must not be read as the start of one.
        index += if bytes[index] == b'\\' { 2 } else { 1 };
    }
    high
}

/// Escapes one JSON pointer reference token (RFC 6901).
pub fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order() {
        let value = parse_strict(r#"{"b": 1, "a": 2, "c": {"z": 1, "y": 2}}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&value).unwrap(),
            r#"{"b":1,"a":2,"c":{"z":1,"y":2}}"#
        );
    }

    #[test]
    fn duplicate_key_is_an_error_with_its_position() {
        let error = parse_strict("{\n  \"a\": 1,\n  \"a\": 2\n}").unwrap_err();
        assert_eq!(error.message, "duplicate key \"a\"");
        assert_eq!(error.line, 3);
    }

    #[test]
    fn nested_duplicate_key_is_an_error() {
        let error = parse_strict(r#"{"x": [{"k": 1, "k": 1}]}"#).unwrap_err();
        assert_eq!(error.message, "duplicate key \"k\"");
    }

    #[test]
    fn syntax_error_names_line_and_character_column() {
        let error = parse_strict("{\n  \"é\": \"ü\" x\n}").unwrap_err();
        assert_eq!(error.line, 2);
        // `  "é": "ü" x`: the x is the 12th character (14th byte).
        assert_eq!(error.column, 12);
        assert_eq!(error.message, "expected `,` or `}`");
    }

    #[test]
    fn byte_order_mark_is_accepted() {
        let value = parse_strict("\u{feff}{\"a\": \"b\"}").unwrap();
        assert_eq!(value["a"], "b");
    }

    #[test]
    fn trailing_characters_are_an_error() {
        let error = parse_strict("{} {}").unwrap_err();
        assert_eq!((error.line, error.column), (1, 4));
    }

    #[test]
    fn crlf_lines_are_counted_once() {
        let error = parse_strict("{\r\n\"a\": 1,\r\n\"a\": 2\r\n}").unwrap_err();
        assert_eq!(error.line, 3);
    }

    #[test]
    fn members_carry_key_and_value_positions() {
        let text = "{\n  \"A\": \"1\",\n  \"B\":\n    [2],\n  \"A\": \"3\"\n}";
        let members = parse_members(text).unwrap();
        let summary: Vec<_> = members
            .iter()
            .map(|member| {
                (
                    member.key.as_str(),
                    member.key_line,
                    member.key_column,
                    member.value_line,
                    member.raw.get(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("A", 2, 3, 2, "\"1\""),
                ("B", 3, 3, 4, "[2]"),
                ("A", 5, 3, 5, "\"3\"")
            ]
        );
    }

    #[test]
    fn member_offsets_count_bytes_of_the_text_given_bom_included() {
        let text = "\u{feff}{\"é\": \"ü\", \"B\": \"2\"}";
        let members = parse_members(text).unwrap();
        let spans: Vec<_> = members
            .iter()
            .map(|m| (&text[m.key_offset..m.value_offset], m.raw.get()))
            .collect();
        assert_eq!(spans, [("\"é\": ", "\"ü\""), ("\"B\": ", "\"2\"")]);
    }

    #[test]
    fn member_key_with_escaped_quote_is_found() {
        let members = parse_members(r#"{"a\"b": "v"}"#).unwrap();
        assert_eq!(members[0].key, "a\"b");
        assert_eq!(members[0].key_column, 2);
    }

    #[test]
    fn members_of_a_non_object_is_an_error() {
        let error = parse_members("[1, 2]").unwrap_err();
        assert_eq!(
            error.message,
            "invalid type: sequence, expected a JSON object"
        );
    }

    #[test]
    fn raw_values_are_named_by_kind() {
        let members = parse_members(r#"{"a": 1, "b": {}, "c": "s", "d": null}"#).unwrap();
        let kinds: Vec<_> = members.iter().map(|m| raw_as_string(m.raw)).collect();
        assert_eq!(
            kinds,
            [
                Err(NotAString::Kind("a number")),
                Err(NotAString::Kind("an object")),
                Ok("s".to_string()),
                Err(NotAString::Kind("null"))
            ]
        );
    }

    #[test]
    fn a_lone_surrogate_escape_is_found_where_it_is_written() {
        for (text, escape, offset) in [
            (r#"{"a": "x\ud800"}"#, r"\ud800", 2),
            (r#"{"a": "\udc00y"}"#, r"\udc00", 1),
            (r#"{"a": "\ud800\u0041"}"#, r"\ud800", 1),
            (r#"{"a": "\\ud800 \ud83d\ude00 \ud83d"}"#, r"\ud83d", 22),
        ] {
            let members = parse_members(text).unwrap();
            assert_eq!(
                raw_as_string(members[0].raw),
                Err(NotAString::LoneSurrogate {
                    escape: escape.to_string(),
                    offset
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncé d", 7), (2, 4));
        assert_eq!(line_column("", 0), (1, 1));
    }

    #[test]
    fn pointer_tokens_are_escaped() {
        assert_eq!(escape_pointer_token("a/b~c"), "a~1b~0c");
    }
}
