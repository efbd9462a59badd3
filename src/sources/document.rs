//! A JSON document over HTTPS that lists versions (a release feed, a product's own API): a JSON
//! pointer to the version, or to an array of releases, each read through a pointer for its
//! version, its date and its notes, and a regular expression that keeps the versions wanted
//! and takes the version out of the text (its `version` group, or else its first, or else the
//! whole match). Pure.

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use super::version::{Candidate, Version};

/// How to find versions in the document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentQuery {
    /// Where the version, or the array of releases, is (RFC 6901; empty for the whole
    /// document).
    #[serde(default)]
    pub pointer: String,
    /// In each release, where its version text is (empty for the release itself).
    #[serde(default)]
    pub version: String,
    /// In each release, where the date it was published is (RFC 3339).
    #[serde(default)]
    pub date: Option<String>,
    /// In each release, where the link to its notes is.
    #[serde(default)]
    pub notes: Option<String>,
    /// Keeps the versions it matches, and takes the version out of the text.
    #[serde(default, with = "optional_regex")]
    pub regex: Option<Regex>,
}

mod optional_regex {
    use regex::Regex;
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Regex>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        text.map(|text| {
            Regex::new(&text).map_err(|error| {
                serde::de::Error::custom(format!(
                    "regex {text:?} is not a regular expression: {error}"
                ))
            })
        })
        .transpose()
    }
}

/// Every version the document offers under `query`.
pub fn versions(text: &str, query: &DocumentQuery) -> Result<Vec<Candidate>, String> {
    let document: Value = serde_json::from_str(crate::json::strip_bom(text)).map_err(|error| {
        let error = crate::json::json_error(text, &error);
        format!(
            "the answer is not JSON ({} at line {}, column {})",
            error.message, error.line, error.column
        )
    })?;
    let found = document
        .pointer(&query.pointer)
        .ok_or_else(|| format!("the document has nothing at {:?}", query.pointer))?;
    let releases: Vec<&Value> = match found {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    let mut candidates = Vec::new();
    for release in releases {
        let Some(text) = release.pointer(&query.version).and_then(scalar_text) else {
            continue;
        };
        let version_text = match &query.regex {
            Some(regex) => match regex.captures(&text) {
                Some(captures) => captures
                    .name("version")
                    .or_else(|| captures.get(1))
                    .or_else(|| captures.get(0))
                    .map(|found| found.as_str().to_string())
                    .unwrap_or_default(),
                None => continue,
            },
            None => text.clone(),
        };
        let Some(version) = Version::parse(&version_text) else {
            continue;
        };
        let published = match &query.date {
            Some(pointer) => match release.pointer(pointer).and_then(Value::as_str) {
                Some(date) => Some(parse_date(date).map_err(|reason| {
                    format!("the date {date:?} of {version_text} is not a date: {reason}")
                })?),
                None => None,
            },
            None => None,
        };
        let notes = query
            .notes
            .as_ref()
            .and_then(|pointer| release.pointer(pointer))
            .and_then(Value::as_str)
            .map(str::to_string);
        candidates.push(Candidate {
            value: version_text,
            version,
            published,
            notes,
        });
    }
    if candidates.is_empty() {
        return Err(format!(
            "the document offers no version at {:?}{}",
            query.pointer,
            if query.regex.is_some() {
                " that the regex matches"
            } else {
                ""
            }
        ));
    }
    Ok(candidates)
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// A timestamp (`2026-11-12T18:00:00Z`) or a date (`2026-11-12`, midnight UTC).
pub fn parse_date(text: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(timestamp) = text.parse::<jiff::Timestamp>() {
        return Ok(timestamp);
    }
    let date: jiff::civil::Date = text
        .parse()
        .map_err(|error: jiff::Error| error.to_string())?;
    date.to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .map(|zoned| zoned.timestamp())
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(json: &str) -> DocumentQuery {
        serde_json::from_str(json).unwrap()
    }

    const RELEASES: &str = r#"[
      {"tag_name": "v2.48.0-rc1", "published_at": "2026-11-20T10:00:00Z", "html_url": "https://git.test/releases/v2.48.0-rc1"},
      {"tag_name": "v2.47.1", "published_at": "2026-11-12T18:00:00Z", "html_url": "https://git.test/releases/v2.47.1"},
      {"tag_name": "v2.47.0", "published_at": "2026-10-06T18:00:00Z", "html_url": "https://git.test/releases/v2.47.0"}
    ]"#;

    #[test]
    fn releases_are_read_through_pointers_and_filtered_by_the_regex() {
        let found = versions(
            RELEASES,
            &query(r#"{"version": "/tag_name", "date": "/published_at", "notes": "/html_url", "regex": "^v(?<version>\\d+\\.\\d+\\.\\d+)$"}"#),
        )
        .unwrap();
        let values: Vec<&str> = found.iter().map(|c| c.value.as_str()).collect();
        assert_eq!(values, ["2.47.1", "2.47.0"]);
        assert_eq!(
            found[0].published,
            Some("2026-11-12T18:00:00Z".parse().unwrap())
        );
        assert_eq!(
            found[0].notes.as_deref(),
            Some("https://git.test/releases/v2.47.1")
        );
    }

    #[test]
    fn a_single_value_is_one_version() {
        let found = versions(
            r#"{"latest": {"version": "3.1.4"}}"#,
            &query(r#"{"pointer": "/latest/version"}"#),
        )
        .unwrap();
        assert_eq!(found[0].value, "3.1.4");
    }

    #[test]
    fn what_is_missing_is_said() {
        assert!(
            versions("{}", &query(r#"{"pointer": "/x"}"#))
                .unwrap_err()
                .contains("nothing at \"/x\"")
        );
        assert!(
            versions("[\"beta\"]", &query("{}"))
                .unwrap_err()
                .contains("no version")
        );
        assert!(
            versions("not json", &query("{}"))
                .unwrap_err()
                .starts_with("the answer is not JSON")
        );
        let error = serde_json::from_str::<DocumentQuery>(r#"{"regex": "("}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("is not a regular expression"), "{error}");
        assert_eq!(
            parse_date("2026-11-12").unwrap(),
            "2026-11-12T00:00:00Z".parse::<jiff::Timestamp>().unwrap()
        );
    }
}
