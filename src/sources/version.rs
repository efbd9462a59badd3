//! Versions as sources publish them, and the pure decision of which one to propose: parsing
//! (`17.12.3`, `16.11.0 Preview 4`, `17763.6532.241107`), comparing numerically part by part,
//! formatting a value for variables.json, and the rules that hold a newer version back.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

/// A version: its text as published and the numbers in it, in order. `17.12.10` is newer than
/// `17.12.9`, which a comparison of text would get wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Version {
    pub raw: String,
    #[serde(skip)]
    pub parts: Vec<u64>,
}

impl Version {
    /// The numbers of `raw` (every run of digits); `None` when it holds none, or a number too
    /// large to compare.
    pub fn parse(raw: &str) -> Option<Self> {
        let parts: Option<Vec<u64>> = raw
            .split(|c: char| !c.is_ascii_digit())
            .filter(|part| !part.is_empty())
            .map(|part| part.parse().ok())
            .collect();
        let parts = parts?;
        (!parts.is_empty()).then(|| Self {
            raw: raw.to_string(),
            parts,
        })
    }

    /// Part by part, numerically; when one is a prefix of the other, the longer is newer.
    pub fn compare(&self, other: &Self) -> Ordering {
        self.parts.cmp(&other.parts)
    }

    /// Whether the version begins with the parts of `prefix` (`17.12.3` is within `17` and
    /// `17.12`).
    pub fn is_within(&self, prefix: &[u64]) -> bool {
        self.parts.starts_with(prefix)
    }
}

/// One version a source offers, and what the variable would hold with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub version: Version,
    /// The text a value is made from (`{value}` in a format): the version itself, or what the
    /// source publishes with it, such as the bootstrapper's URL.
    pub value: String,
    /// The date the source states the version was published, when it states one.
    pub published: Option<Timestamp>,
    /// Where its release notes are, when the source says.
    pub notes: Option<String>,
}

/// How a candidate becomes a value: `{value}` (the default), `{version}`, `{1}`, `{2}`, ...
/// (the numbers of the version, from 1), and `{parts:SEP}` (every number, joined by SEP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueFormat(Vec<Token>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Text(String),
    Value,
    Version,
    Part(usize),
    Parts(String),
}

impl Default for ValueFormat {
    fn default() -> Self {
        Self(vec![Token::Value])
    }
}

impl ValueFormat {
    /// Reads a format; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                tokens.push(Token::Text(rest[..open].to_string()));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err(format!(
                    "a `{{` at character {} is never closed",
                    text.len() - rest.len() + open + 1
                ));
            };
            let name = &rest[open + 1..open + close];
            tokens.push(match name {
                "value" => Token::Value,
                "version" => Token::Version,
                _ => match name.strip_prefix("parts:") {
                    Some(separator) => Token::Parts(separator.to_string()),
                    None => match name.parse::<usize>() {
                        Ok(index) if index >= 1 => Token::Part(index),
                        _ => {
                            return Err(format!(
                                "{{{name}}} is not a part of a format: use {{value}}, \
                                 {{version}}, {{1}}, {{2}}, ... or {{parts:SEP}}"
                            ));
                        }
                    },
                },
            });
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err("a `}` is never opened".to_string());
        }
        if !rest.is_empty() {
            tokens.push(Token::Text(rest.to_string()));
        }
        if tokens.is_empty() {
            return Err("the format is empty".to_string());
        }
        Ok(Self(tokens))
    }

    /// Whether the format holds `{value}`, which may be more than a version (a URL).
    pub fn uses_value(&self) -> bool {
        self.0.contains(&Token::Value)
    }

    /// The value for `candidate`, or why it cannot be made (a part the version lacks).
    pub fn apply(&self, candidate: &Candidate) -> Result<String, String> {
        let mut value = String::new();
        for token in &self.0 {
            match token {
                Token::Text(text) => value.push_str(text),
                Token::Value => value.push_str(&candidate.value),
                Token::Version => value.push_str(&candidate.version.raw),
                Token::Part(index) => match candidate.version.parts.get(index - 1) {
                    Some(part) => value.push_str(&part.to_string()),
                    None => {
                        return Err(format!(
                            "version {} has {} numbers, so it has no {{{index}}}",
                            candidate.version.raw,
                            candidate.version.parts.len()
                        ));
                    }
                },
                Token::Parts(separator) => value.push_str(
                    &candidate
                        .version
                        .parts
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(separator),
                ),
            }
        }
        Ok(value)
    }
}

/// What may hold a newer version back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// Only versions beginning with these numbers (`17` or `17.12`).
    pub within: Option<Version>,
    /// Versions never to propose, as published.
    pub ignore: Vec<String>,
    /// How old a version must be before it is proposed: from the date the source states, or
    /// else from the day imagegen first saw it.
    pub min_age: Option<Duration>,
}

/// Why a newer version is not proposed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum HeldBack {
    /// Outside the range the rules allow.
    OutOfRange { within: String },
    /// Listed under `ignore`.
    Ignored,
    /// Younger than `min_age`.
    TooYoung {
        /// Since when it is counted, and how that date is known.
        since: Timestamp,
        stated: bool,
        /// When it becomes old enough.
        ready_at: Timestamp,
    },
}

impl std::fmt::Display for HeldBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OutOfRange { within } => write!(f, "outside {within}, which the rules allow"),
            Self::Ignored => f.write_str("listed under ignore"),
            Self::TooYoung {
                since,
                stated,
                ready_at,
            } => write!(
                f,
                "too new: {} {}, proposed from {}",
                if *stated { "published" } else { "first seen" },
                since.strftime("%Y-%m-%d %H:%M UTC"),
                ready_at.strftime("%Y-%m-%d %H:%M UTC")
            ),
        }
    }
}

/// A version with the value it would give.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Offered {
    pub version: String,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// A newer version that is not proposed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Withheld {
    pub version: String,
    pub value: String,
    #[serde(flatten)]
    pub why: HeldBack,
}

/// What the rules make of a source's versions for one variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// The newest version the source offers, whatever the rules say.
    pub newest: Offered,
    /// The newest version the rules allow, when it is newer than the current value.
    pub proposed: Option<Offered>,
    /// Versions newer than the current one (and than any proposed) that the rules hold back,
    /// newest first.
    pub held_back: Vec<Withheld>,
    /// Versions seen for the first time now, whose date the age rule counts from.
    #[serde(skip)]
    pub first_seen: Vec<String>,
}

/// Decides which version to propose for a variable holding `current`, from `candidates` (in
/// any order, at least one), under `rules`. `seen` holds when each version was first seen;
/// `now` is the time of this run. Pure.
pub fn resolve(
    current: &str,
    candidates: &[Candidate],
    format: &ValueFormat,
    rules: &Rules,
    seen: &BTreeMap<String, Timestamp>,
    now: Timestamp,
) -> Result<Resolution, String> {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| b.version.compare(&a.version));
    let newest = *sorted
        .first()
        .ok_or_else(|| "the source offers no version".to_string())?;
    let current_version = current_version(current, &sorted, format)?;
    let is_newer = |candidate: &Candidate| {
        current_version
            .as_ref()
            .is_none_or(|current| candidate.version.compare(current) == Ordering::Greater)
    };
    let mut held_back = Vec::new();
    let mut first_seen = Vec::new();
    let mut proposed = None;
    for candidate in sorted.iter().copied() {
        if !is_newer(candidate) {
            break;
        }
        let why = held_back_by(candidate, rules, seen, now, &mut first_seen);
        let offer = offered(candidate, format)?;
        match why {
            Some(why) => held_back.push(Withheld {
                version: offer.version,
                value: offer.value,
                why,
            }),
            None => {
                // A value equal to the current one (two versions formatted alike) changes
                // nothing.
                if offer.value != current {
                    proposed = Some(offer);
                }
                break;
            }
        }
    }
    Ok(Resolution {
        newest: offered(newest, format)?,
        proposed,
        held_back,
        first_seen,
    })
}

/// A candidate as the variable would hold it.
fn offered(candidate: &Candidate, format: &ValueFormat) -> Result<Offered, String> {
    Ok(Offered {
        version: candidate.version.raw.clone(),
        value: format.apply(candidate)?,
        notes: candidate.notes.clone(),
    })
}

/// The version the variable holds now: the candidate whose value it is, or else the numbers
/// of the value itself (a formatted version like 17_12_1). A value that is neither (a URL no
/// longer offered) is older than anything offered. `sorted` is newest first, never empty.
fn current_version(
    current: &str,
    sorted: &[&Candidate],
    format: &ValueFormat,
) -> Result<Option<Version>, String> {
    for candidate in sorted {
        if offered(candidate, format)?.value == current {
            return Ok(Some(candidate.version.clone()));
        }
    }
    let newest = sorted[0];
    // A value that is not a version (a URL) says nothing by its digits.
    let value_is_version = !format.uses_value() || newest.value == newest.version.raw;
    Ok(value_is_version.then(|| Version::parse(current)).flatten())
}

/// Why the rules hold a newer candidate back, if they do. A version the age rule meets for
/// the first time is added to `first_seen`: its age counts from now.
fn held_back_by(
    candidate: &Candidate,
    rules: &Rules,
    seen: &BTreeMap<String, Timestamp>,
    now: Timestamp,
    first_seen: &mut Vec<String>,
) -> Option<HeldBack> {
    if let Some(within) = rules
        .within
        .as_ref()
        .filter(|within| !candidate.version.is_within(&within.parts))
    {
        return Some(HeldBack::OutOfRange {
            within: within.raw.clone(),
        });
    }
    if rules.ignore.iter().any(|ignored| {
        Version::parse(ignored).is_some_and(|v| v.parts == candidate.version.parts)
            || *ignored == candidate.version.raw
    }) {
        return Some(HeldBack::Ignored);
    }
    let min_age = rules.min_age?;
    let (since, stated) = match (candidate.published, seen.get(&candidate.version.raw)) {
        (Some(published), _) => (published, true),
        (None, Some(first)) => (*first, false),
        (None, None) => {
            first_seen.push(candidate.version.raw.clone());
            (now, false)
        }
    };
    let ready_at = since
        .checked_add(jiff::SignedDuration::try_from(min_age).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX);
    (ready_at > now).then_some(HeldBack::TooYoung {
        since,
        stated,
        ready_at,
    })
}

/// Reads a minimum age: `7d`, `36h`, `1d12h`, or any duration [`crate::duration::parse`] reads.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if let Some((days, rest)) = trimmed.split_once('d')
        && let Ok(days) = days.parse::<u64>()
    {
        let rest = if rest.is_empty() {
            Duration::ZERO
        } else {
            crate::duration::parse(rest)?
        };
        return Ok(Duration::from_secs(days * 86_400) + rest);
    }
    crate::duration::parse(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(version: &str) -> Candidate {
        Candidate {
            version: Version::parse(version).unwrap(),
            value: version.to_string(),
            published: None,
            notes: None,
        }
    }

    fn underscored() -> ValueFormat {
        ValueFormat::parse("{parts:_}").unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn versions_compare_numerically_part_by_part() {
        let v = |text| Version::parse(text).unwrap();
        assert_eq!(v("17.12.10").compare(&v("17.12.9")), Ordering::Greater);
        assert_eq!(
            v("17763.6532.241107").compare(&v("17763.6414.241008")),
            Ordering::Greater
        );
        assert_eq!(v("17.12").compare(&v("17.12.0")), Ordering::Less);
        assert_eq!(v("16.11.0 Preview 4").parts, [16, 11, 0, 4]);
        assert!(Version::parse("latest").is_none());
        assert!(v("17.12.3").is_within(&[17, 12]));
        assert!(!v("17.13.0").is_within(&[17, 12]));
    }

    #[test]
    fn formats_make_values_from_the_version() {
        let c = candidate("17.12.3");
        assert_eq!(underscored().apply(&c).unwrap(), "17_12_3");
        assert_eq!(ValueFormat::default().apply(&c).unwrap(), "17.12.3");
        assert_eq!(
            ValueFormat::parse("v{1}.{2}").unwrap().apply(&c).unwrap(),
            "v17.12"
        );
        assert!(
            ValueFormat::parse("{4}")
                .unwrap()
                .apply(&c)
                .unwrap_err()
                .contains("no {4}")
        );
        assert!(
            ValueFormat::parse("{major}")
                .unwrap_err()
                .contains("{major} is not")
        );
        assert!(
            ValueFormat::parse("{value")
                .unwrap_err()
                .contains("never closed")
        );
        assert!(ValueFormat::parse("").is_err());
    }

    #[test]
    fn the_newest_allowed_version_is_proposed() {
        let candidates = [
            candidate("17.12.1"),
            candidate("17.12.3"),
            candidate("17.12.2"),
        ];
        let resolution = resolve(
            "17_12_1",
            &candidates,
            &underscored(),
            &Rules::default(),
            &BTreeMap::new(),
            at("2026-11-23T10:00:00Z"),
        )
        .unwrap();
        assert_eq!(resolution.newest.value, "17_12_3");
        assert_eq!(resolution.proposed.unwrap().value, "17_12_3");
        assert!(resolution.held_back.is_empty());
    }

    #[test]
    fn nothing_is_proposed_when_current_or_older() {
        for current in ["17_12_3", "17_13_0"] {
            let resolution = resolve(
                current,
                &[candidate("17.12.3")],
                &underscored(),
                &Rules::default(),
                &BTreeMap::new(),
                at("2026-11-23T10:00:00Z"),
            )
            .unwrap();
            assert_eq!(resolution.proposed, None, "{current}");
        }
    }

    #[test]
    fn range_and_ignore_hold_newer_versions_back_with_the_reason() {
        let candidates = [
            candidate("17.12.1"),
            candidate("17.12.2"),
            candidate("17.13.0"),
        ];
        let rules = Rules {
            within: Version::parse("17.12"),
            ignore: vec!["17.12.2".into()],
            min_age: None,
        };
        let resolution = resolve(
            "17_12_1",
            &candidates,
            &underscored(),
            &rules,
            &BTreeMap::new(),
            at("2026-11-23T10:00:00Z"),
        )
        .unwrap();
        assert_eq!(resolution.proposed, None);
        assert_eq!(resolution.newest.version, "17.13.0");
        let reasons: Vec<String> = resolution
            .held_back
            .iter()
            .map(|held| format!("{}: {}", held.version, held.why))
            .collect();
        assert_eq!(
            reasons,
            [
                "17.13.0: outside 17.12, which the rules allow",
                "17.12.2: listed under ignore"
            ]
        );
    }

    #[test]
    fn age_counts_from_the_stated_date_or_from_first_seen() {
        let now = at("2026-11-23T10:00:00Z");
        let rules = Rules {
            min_age: Some(parse_age("3d").unwrap()),
            ..Rules::default()
        };
        let mut stated = candidate("17.12.3");
        stated.published = Some(at("2026-11-22T10:00:00Z"));
        let resolution = resolve(
            "17_12_1",
            &[stated.clone(), candidate("17.12.2")],
            &underscored(),
            &rules,
            &BTreeMap::new(),
            now,
        )
        .unwrap();
        // 17.12.3 was published a day ago; 17.12.2 is seen for the first time now.
        assert_eq!(resolution.proposed, None);
        assert_eq!(resolution.first_seen, ["17.12.2"]);
        assert_eq!(
            resolution.held_back[0].why.to_string(),
            "too new: published 2026-11-22 10:00 UTC, proposed from 2026-11-25 10:00 UTC"
        );
        // Seen four days ago: old enough, and proposed although a newer one waits.
        let seen = BTreeMap::from([("17.12.2".to_string(), at("2026-11-19T09:00:00Z"))]);
        let resolution = resolve(
            "17_12_1",
            &[stated, candidate("17.12.2")],
            &underscored(),
            &rules,
            &seen,
            now,
        )
        .unwrap();
        assert_eq!(resolution.proposed.unwrap().value, "17_12_2");
        assert_eq!(resolution.held_back.len(), 1);
        assert!(resolution.first_seen.is_empty());
    }

    #[test]
    fn a_value_that_is_not_a_version_is_matched_by_what_the_source_offers() {
        let mut offered = candidate("17.12.35527.113");
        offered.value = "https://x.test/vs_enterprise.exe".into();
        let resolution = resolve(
            "https://x.test/vs_enterprise.exe",
            &[offered.clone()],
            &ValueFormat::default(),
            &Rules::default(),
            &BTreeMap::new(),
            at("2026-11-23T10:00:00Z"),
        )
        .unwrap();
        assert_eq!(resolution.proposed, None);
        let resolution = resolve(
            "https://x.test/old/vs_enterprise.exe",
            &[offered],
            &ValueFormat::default(),
            &Rules::default(),
            &BTreeMap::new(),
            at("2026-11-23T10:00:00Z"),
        )
        .unwrap();
        assert_eq!(
            resolution.proposed.unwrap().value,
            "https://x.test/vs_enterprise.exe"
        );
    }

    #[test]
    fn ages_read_days() {
        assert_eq!(parse_age("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_age("1d12h").unwrap(), Duration::from_secs(36 * 3600));
        assert_eq!(parse_age("36h").unwrap(), Duration::from_secs(36 * 3600));
        assert!(parse_age("soon").is_err());
    }
}
