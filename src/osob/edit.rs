//! The OSOB edit, pure: finds each definition's current image name in an OSOB file through its
//! `CustomImageName` template, swaps in the newly built name, moves the review dates of the
//! same YAML mapping, and changes nothing else, byte for byte.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Serialize;

use super::mapping::ReviewDates;
use crate::json::line_column;

/// The characters an image name is made of; a match must not touch another one.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// One image of a definition: how to find its current name, and the name to put there.
#[derive(Debug, Clone)]
pub struct ImagePattern {
    pub definition: String,
    /// `Destination[].CustomImageName` as written, with its placeholders.
    pub template: String,
    pub new_name: String,
    regex: Regex,
    /// The placeholder of each capture group, in order.
    placeholders: Vec<String>,
}

impl ImagePattern {
    /// Turns `template` into a pattern: its text literally, each `{NAME}` a run of image-name
    /// characters. A `-` is allowed in a value only if one of `known_values` of that variable
    /// holds one, so `Image_{V}` does not swallow the longer name `Image_1-arm64`.
    pub fn new(
        definition: &str,
        template: &str,
        new_name: &str,
        known_values: &BTreeMap<String, Vec<String>>,
    ) -> Self {
        let placeholder = Regex::new(r"\{([A-Z][A-Z0-9_]*)\}").expect("a fixed pattern compiles");
        // Each placeholder stands for one character at least: a template whose text and
        // placeholders already pass Azure's limit on an image name names no image, and its
        // pattern (a megabyte of text, or of placeholders) would pass the regex size limit.
        let literal = placeholder.replace_all(template, "").chars().count();
        let least_length = literal + placeholder.find_iter(template).count();
        if least_length > crate::definitions::MAX_IMAGE_NAME_LEN {
            return Self {
                definition: definition.to_string(),
                template: template.to_string(),
                new_name: new_name.to_string(),
                regex: Regex::new(r"[^\s\S]").expect("a fixed pattern compiles"),
                placeholders: Vec::new(),
            };
        }
        let mut pattern = String::new();
        let mut placeholders = Vec::new();
        let mut last = 0;
        for captures in placeholder.captures_iter(template) {
            let whole = captures.get(0).expect("group 0 always matches");
            let name = captures[1].to_string();
            pattern.push_str(&regex::escape(&template[last..whole.start()]));
            let hyphen = known_values
                .get(&name)
                .is_some_and(|values| values.iter().any(|value| value.contains('-')));
            // Azure image names end in a letter, digit or underscore, so a value does too: a
            // sentence's full stop after a name is not part of it.
            pattern.push_str(if hyphen {
                "([A-Za-z0-9._-]*[A-Za-z0-9_])"
            } else {
                "([A-Za-z0-9._]*[A-Za-z0-9_])"
            });
            placeholders.push(name);
            last = whole.end();
        }
        pattern.push_str(&regex::escape(&template[last..]));
        Self {
            definition: definition.to_string(),
            template: template.to_string(),
            new_name: new_name.to_string(),
            regex: Regex::new(&pattern).expect("escaped text and fixed classes compile"),
            placeholders,
        }
    }

    /// Every whole image name in `text` this pattern matches, in order: the names a file
    /// holds for the definition now (what `imagegen status` compares with the ledger).
    pub fn names_in(&self, text: &str) -> Vec<String> {
        self.find(text)
            .into_iter()
            .map(|found| text[found.start..found.end].to_string())
            .collect()
    }

    /// Every whole image name in `text` this pattern matches, in order.
    fn find(&self, text: &str) -> Vec<Found> {
        let mut found = Vec::new();
        let mut position = 0;
        while position <= text.len() {
            let Some(captures) = self.regex.captures_at(text, position) else {
                break;
            };
            let whole = captures.get(0).expect("group 0 always matches");
            let before_ok = text[..whole.start()]
                .chars()
                .next_back()
                .is_none_or(|c| !is_name_char(c));
            let mut after = text[whole.end()..].chars();
            let after_ok = match after.next() {
                None => true,
                Some('.') => after.next().is_none_or(|c| !is_name_char(c)),
                Some(c) => !is_name_char(c),
            };
            let mut values = BTreeMap::new();
            let mut consistent = true;
            for (index, name) in self.placeholders.iter().enumerate() {
                let value = captures
                    .get(index + 1)
                    .map_or("", |group| group.as_str())
                    .to_string();
                if let Some(earlier) = values.insert(name.clone(), value.clone()) {
                    consistent &= earlier == value;
                }
            }
            if before_ok && after_ok && consistent {
                found.push(Found {
                    start: whole.start(),
                    end: whole.end(),
                    values,
                });
                position = whole.end().max(whole.start() + 1);
            } else {
                position = next_char_boundary(text, whole.start() + 1);
            }
        }
        found
    }
}

fn next_char_boundary(text: &str, mut index: usize) -> usize {
    while index < text.len() && !text.is_char_boundary(index) {
        index += 1;
    }
    index
}

struct Found {
    start: usize,
    end: usize,
    values: BTreeMap<String, String>,
}

/// One image name swapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replacement {
    pub definition: String,
    pub line: usize,
    pub column: usize,
    pub old: String,
    pub new: String,
    /// The values the old name was built with, read back through the template.
    pub old_values: BTreeMap<String, String>,
}

/// One review date moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DateChange {
    pub key: String,
    pub line: usize,
    pub old: String,
    pub new: String,
}

/// One OSOB file, before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEdit {
    pub path: String,
    #[serde(skip)]
    pub original: String,
    #[serde(skip)]
    pub edited: String,
    /// Every match, the ones already naming the new image included (`old == new`).
    pub replacements: Vec<Replacement>,
    pub dates: Vec<DateChange>,
}

impl FileEdit {
    pub fn changed(&self) -> bool {
        self.original != self.edited
    }
}

/// Why a file could not be edited; names the file and, where known, the line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EditProblem {
    pub path: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for EditProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "{}:{line}:{column}: {}", self.path, self.message)
            }
            (Some(line), None) => write!(f, "{}:{line}: {}", self.path, self.message),
            _ => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Edits one OSOB file: every match of every pattern is replaced by its pattern's new name.
/// A pattern matching nothing, and one span claimed by two definitions, are errors. With
/// `review`, the review-date keys of each YAML mapping where a name changed move to `today`
/// plus the days. The edited text must still parse as YAML or JSON, as the original did.
pub fn edit_file(
    path: &str,
    original: &str,
    patterns: &[&ImagePattern],
    review: Option<(&ReviewDates, jiff::civil::Date)>,
) -> Result<FileEdit, Vec<EditProblem>> {
    let problem =
        |offset: Option<usize>, message: String| problem_at(path, original, offset, message);
    let is_yaml = path.ends_with(".yml") || path.ends_with(".yaml");
    let (spans, mut problems) = find_spans(original, patterns, is_yaml, &problem);
    let (kept, overlaps) = without_overlaps(original, spans, &problem);
    problems.extend(overlaps);
    if !problems.is_empty() {
        return Err(problems);
    }
    let (mut edited, replacements, changed_lines) = replace_spans(original, &kept);
    let mut dates = Vec::new();
    if let (Some((review, today)), true) = (review, is_yaml) {
        match move_review_dates(&edited, &changed_lines, review, today) {
            Ok((text, changes)) => {
                edited = text;
                dates = changes;
            }
            Err(message) => return Err(vec![problem(None, message)]),
        }
    }
    if let Some(message) = still_parses(path, original, &edited) {
        return Err(vec![problem(None, message)]);
    }
    Ok(FileEdit {
        path: path.to_string(),
        original: original.to_string(),
        edited,
        replacements,
        dates,
    })
}

/// A problem of the file at `path`, at `offset` of its text when known.
fn problem_at(path: &str, original: &str, offset: Option<usize>, message: String) -> EditProblem {
    let (line, column) = offset.map(|offset| line_column(original, offset)).unzip();
    EditProblem {
        path: path.to_string(),
        line,
        column,
        message,
    }
}

/// Every match of every pattern, in the order of the text, and a problem for each pattern
/// that matches nothing.
fn find_spans<'p>(
    original: &str,
    patterns: &[&'p ImagePattern],
    is_yaml: bool,
    problem: &impl Fn(Option<usize>, String) -> EditProblem,
) -> (Vec<(Found, &'p ImagePattern)>, Vec<EditProblem>) {
    let mut problems = Vec::new();
    let mut spans: Vec<(Found, &ImagePattern)> = Vec::new();
    for pattern in patterns {
        let mut found = pattern.find(original);
        // A comment may record history ("moved from X"): it stays as written.
        if is_yaml {
            found.retain(|found| !in_yaml_comment(original, found.start));
        }
        if found.is_empty() {
            problems.push(problem(
                None,
                format!(
                    "no image of {} is named here: nothing matches {} (is the file mapped to \
                     the right definition, or was the name edited by hand?)",
                    pattern.definition, pattern.template
                ),
            ));
        }
        spans.extend(found.into_iter().map(|found| (found, *pattern)));
    }
    spans.sort_by_key(|(found, pattern)| (found.start, found.end, pattern.definition.clone()));
    (spans, problems)
}

/// The spans that overlap no other, and a problem for each span two definitions claim
/// (the same span with the same new name is one claim, kept once).
fn without_overlaps<'p>(
    original: &str,
    spans: Vec<(Found, &'p ImagePattern)>,
    problem: &impl Fn(Option<usize>, String) -> EditProblem,
) -> (Vec<(Found, &'p ImagePattern)>, Vec<EditProblem>) {
    let mut problems = Vec::new();
    let mut kept: Vec<(Found, &ImagePattern)> = Vec::new();
    for (found, pattern) in spans {
        if let Some((previous, other)) = kept.last()
            && found.start < previous.end
        {
            let same = found.start == previous.start
                && found.end == previous.end
                && other.new_name == pattern.new_name;
            if !same {
                problems.push(problem(
                    Some(found.start),
                    format!(
                        "{} matches the images of both {} ({}) and {} ({}): make the templates \
                         tell them apart, or map this file to one of them",
                        &original[previous.start..previous.end.max(found.end)],
                        other.definition,
                        other.template,
                        pattern.definition,
                        pattern.template
                    ),
                ));
            }
            continue;
        }
        kept.push((found, pattern));
    }
    (kept, problems)
}

/// The text with every kept span replaced by its new name, the replacements, and the lines
/// where a name changed.
fn replace_spans(
    original: &str,
    kept: &[(Found, &ImagePattern)],
) -> (String, Vec<Replacement>, Vec<usize>) {
    let mut edited = String::with_capacity(original.len());
    let mut replacements = Vec::new();
    let mut changed_lines = Vec::new();
    let mut cursor = 0;
    for (found, pattern) in kept {
        let old = &original[found.start..found.end];
        let (line, column) = line_column(original, found.start);
        edited.push_str(&original[cursor..found.start]);
        edited.push_str(&pattern.new_name);
        cursor = found.end;
        if old != pattern.new_name {
            changed_lines.push(line);
        }
        replacements.push(Replacement {
            definition: pattern.definition.clone(),
            line,
            column,
            old: old.to_string(),
            new: pattern.new_name.clone(),
            old_values: found.values.clone(),
        });
    }
    edited.push_str(&original[cursor..]);
    (edited, replacements, changed_lines)
}

/// Whether `offset` lies in a YAML comment: after a `#` that starts the line or follows a
/// space, outside quotes.
fn in_yaml_comment(text: &str, offset: usize) -> bool {
    let line_start = text[..offset].rfind('\n').map_or(0, |index| index + 1);
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for c in text[line_start..offset].chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(open), c) if c == open => quote = None,
            (None, '#') if previous == ' ' || previous == '\t' => return true,
            _ => {}
        }
        previous = c;
    }
    false
}

/// Says why the edited text no longer parses, when the original did.
fn still_parses(path: &str, original: &str, edited: &str) -> Option<String> {
    let parse = |text: &str| -> Result<(), String> {
        if path.ends_with(".json") {
            serde_json::from_str::<serde_json::Value>(text)
                .map(drop)
                .map_err(|error| error.to_string())
        } else if path.ends_with(".yml") || path.ends_with(".yaml") {
            serde_saphyr::from_str::<serde_json::Value>(text)
                .map(drop)
                .map_err(|error| error.to_string())
        } else {
            Ok(())
        }
    };
    match (parse(original), parse(edited)) {
        (Ok(()), Err(error)) => Some(format!(
            "the edited file no longer parses ({error}); nothing was changed"
        )),
        _ => None,
    }
}

/// A line split into what matters for finding keys in a block-style YAML mapping.
struct YamlLine<'a> {
    /// The column (0-based) where the key starts, after indentation and any `- `.
    key_column: usize,
    /// The line starts a list item (`- key: value`).
    list_item: bool,
    key: Option<&'a str>,
    /// The byte range of the value (without quotes) inside the whole text.
    value: Option<(usize, usize)>,
    blank_or_comment: bool,
}

fn yaml_line(text: &str, start: usize, end: usize) -> YamlLine<'_> {
    let line = text[start..end].trim_end_matches(['\r', '\n']);
    let indent = line.len() - line.trim_start_matches(' ').len();
    let mut rest = &line[indent..];
    let blank_or_comment = rest.is_empty() || rest.starts_with('#');
    let mut key_column = indent;
    let mut list_item = false;
    while let Some(after) = rest.strip_prefix("- ") {
        let spaces = after.len() - after.trim_start_matches(' ').len();
        key_column += 2 + spaces;
        rest = &after[spaces..];
        list_item = true;
    }
    let (key, value) = match rest.find(':') {
        Some(colon)
            if rest[colon + 1..].is_empty() || rest[colon + 1..].starts_with([' ', '\t']) =>
        {
            let key = rest[..colon].trim().trim_matches(['"', '\'']);
            let value_text = &rest[colon + 1..];
            let value_text = match value_text.find(" #") {
                Some(comment) => &value_text[..comment],
                None => value_text,
            };
            let trimmed = value_text.trim().trim_matches(['"', '\'']);
            let value = (!trimmed.is_empty()).then(|| {
                let offset_in_line = (trimmed.as_ptr() as usize) - (line.as_ptr() as usize);
                (
                    start + offset_in_line,
                    start + offset_in_line + trimmed.len(),
                )
            });
            (Some(key), value)
        }
        _ => (None, None),
    };
    YamlLine {
        key_column,
        list_item,
        key,
        value,
        blank_or_comment,
    }
}

/// Moves each review date key found in the mapping of each changed line to `today` + days.
fn move_review_dates(
    text: &str,
    changed_lines: &[usize],
    review: &ReviewDates,
    today: jiff::civil::Date,
) -> Result<(String, Vec<DateChange>), String> {
    let lines = yaml_lines(text);
    let new_date = today
        .checked_add(jiff::Span::new().days(i64::from(review.days)))
        .map_err(|error| format!("cannot add {} days to {today}: {error}", review.days))?;
    let mut edits: BTreeMap<usize, DateChange> = BTreeMap::new();
    let mut spans: BTreeMap<usize, (usize, usize, String)> = BTreeMap::new();
    for &line_number in changed_lines {
        let Some(owner) = owning_key(&lines, line_number - 1) else {
            continue;
        };
        let column = lines[owner].key_column;
        for index in mapping_keys(&lines, owner) {
            let line = &lines[index];
            let (Some(key), Some((start, end))) = (line.key, line.value) else {
                continue;
            };
            if line.key_column != column || !review.keys.iter().any(|k| k == key) {
                continue;
            }
            let old = &text[start..end];
            let format = date_format(old).ok_or_else(|| {
                format!(
                    "line {}: {key} is {old:?}, a date format imagegen does not know (use \
                     YYYY-MM-DD or MM/DD/YYYY)",
                    index + 1
                )
            })?;
            let new = new_date.strftime(format).to_string();
            spans.insert(start, (start, end, new.clone()));
            edits.insert(
                index,
                DateChange {
                    key: key.to_string(),
                    line: index + 1,
                    old: old.to_string(),
                    new,
                },
            );
        }
    }
    let changes = edits
        .into_values()
        .filter(|change| change.old != change.new)
        .collect();
    Ok((splice(text, spans.values()), changes))
}

/// Every line of `text`, split for finding keys.
fn yaml_lines(text: &str) -> Vec<YamlLine<'_>> {
    let mut starts = vec![0];
    starts.extend(text.match_indices('\n').map(|(index, _)| index + 1));
    if starts.last() == Some(&text.len()) {
        starts.pop();
    }
    let line_end = |index: usize| starts.get(index + 1).copied().unwrap_or(text.len());
    (0..starts.len())
        .map(|index| yaml_line(text, starts[index], line_end(index)))
        .collect()
}

/// The line (0-based) of the key whose mapping holds the name on line `index`; `None` for a
/// name mentioned in a comment, which moves no date.
fn owning_key(lines: &[YamlLine<'_>], index: usize) -> Option<usize> {
    let mut owner = index;
    if lines[owner].blank_or_comment {
        return None;
    }
    // A name in a list under a key belongs to that key's mapping.
    while lines[owner].key.is_none() || lines[owner].blank_or_comment {
        let column = lines[owner].key_column;
        match (0..owner)
            .rev()
            .find(|&i| !lines[i].blank_or_comment && lines[i].key_column < column)
        {
            Some(parent) => owner = parent,
            None => break,
        }
    }
    Some(owner)
}

/// The lines of the keys at the same level as `owner` in its mapping, `owner` first.
fn mapping_keys(lines: &[YamlLine<'_>], owner: usize) -> Vec<usize> {
    let column = lines[owner].key_column;
    let mut block = vec![owner];
    // Up to the mapping's first key (a list item's `- ` line starts it).
    let mut index = owner;
    while !lines[index].list_item && index > 0 {
        index -= 1;
        let line = &lines[index];
        if line.blank_or_comment || line.key_column > column {
            continue;
        }
        if line.key_column < column {
            break;
        }
        block.push(index);
    }
    for (index, line) in lines.iter().enumerate().skip(owner + 1) {
        if line.blank_or_comment || line.key_column > column {
            continue;
        }
        if line.key_column < column || line.list_item {
            break;
        }
        block.push(index);
    }
    block
}

/// `text` with each span (start, end, new), in order and apart, replaced by its new text.
fn splice<'a>(text: &str, spans: impl Iterator<Item = &'a (usize, usize, String)>) -> String {
    let mut edited = String::with_capacity(text.len());
    let mut cursor = 0;
    for (start, end, new) in spans {
        edited.push_str(&text[cursor..*start]);
        edited.push_str(new);
        cursor = *end;
    }
    edited.push_str(&text[cursor..]);
    edited
}

/// The strftime format a date is written in, for the formats OSOB uses.
fn date_format(value: &str) -> Option<&'static str> {
    let digits = |part: &str, lengths: &[usize]| {
        lengths.contains(&part.len()) && part.chars().all(|c| c.is_ascii_digit())
    };
    let parts: Vec<&str> = value.split('-').collect();
    if parts.len() == 3
        && digits(parts[0], &[4])
        && digits(parts[1], &[2])
        && digits(parts[2], &[2])
    {
        return Some("%Y-%m-%d");
    }
    let parts: Vec<&str> = value.split('/').collect();
    if parts.len() == 3 && digits(parts[2], &[4]) {
        if digits(parts[0], &[2]) && digits(parts[1], &[2]) {
            return Some("%m/%d/%Y");
        }
        if digits(parts[0], &[1, 2]) && digits(parts[1], &[1, 2]) {
            return Some("%-m/%-d/%Y");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(definition: &str, template: &str, new_name: &str) -> ImagePattern {
        ImagePattern::new(definition, template, new_name, &BTreeMap::new())
    }

    fn today() -> jiff::civil::Date {
        jiff::civil::date(2026, 11, 28)
    }

    const YAML: &str = "\
# Helix queues. The previous image was Helix-Win-VS_16_11_0_3.
queues:
  - Name: windows.vs2019.preview
    Image: Helix-Win-VS_16_11_0_3   # bumped weekly
    UpdateRequiredDate: 2026-12-01
    EstimatedRemovalDate: 2027-06-01
    Settings: &defaults
      Size: large
      UpdateRequiredDate: 2020-01-01
  - Name: windows.vs2019.other
    Image: Helix-Win-VS_16_11_0_3-arm64
    UpdateRequiredDate: 2026-12-01
";

    #[test]
    fn only_the_matched_names_and_their_dates_change() {
        let image = pattern("vs/win", "Helix-Win-VS_{V}", "Helix-Win-VS_16_11_0_4");
        let review = ReviewDates {
            keys: vec!["UpdateRequiredDate".into()],
            days: 90,
        };
        let edit = edit_file("queues.yml", YAML, &[&image], Some((&review, today()))).unwrap();
        let expected = YAML
            .replacen(
                "Image: Helix-Win-VS_16_11_0_3   #",
                "Image: Helix-Win-VS_16_11_0_4   #",
                1,
            )
            .replacen(
                "UpdateRequiredDate: 2026-12-01",
                "UpdateRequiredDate: 2027-02-26",
                1,
            );
        assert_eq!(edit.edited, expected);
        assert_eq!(
            edit.replacements.len(),
            1,
            "neither the comment nor the arm64 image"
        );
        assert_eq!(edit.replacements[0].line, 4);
        assert_eq!(edit.replacements[0].old_values["V"], "16_11_0_3");
        assert_eq!(
            edit.dates,
            [DateChange {
                key: "UpdateRequiredDate".into(),
                line: 5,
                old: "2026-12-01".into(),
                new: "2027-02-26".into()
            }]
        );
    }

    #[test]
    fn crlf_quotes_and_the_last_newline_are_kept() {
        let text = "a:\r\n  image: \"Helix-A_1\"\r\n  UpdateRequiredDate: '11/02/2026'\r\n";
        let image = pattern("a", "Helix-A_{V}", "Helix-A_2");
        let review = ReviewDates {
            keys: vec!["UpdateRequiredDate".into()],
            days: 90,
        };
        let edit = edit_file("a.yaml", text, &[&image], Some((&review, today()))).unwrap();
        assert_eq!(
            edit.edited,
            "a:\r\n  image: \"Helix-A_2\"\r\n  UpdateRequiredDate: '02/26/2027'\r\n"
        );
    }

    #[test]
    fn names_already_current_change_nothing() {
        let image = pattern("a", "Helix-A_{V}", "Helix-A_2");
        let edit = edit_file("a.json", r#"{"image": "Helix-A_2"}"#, &[&image], None).unwrap();
        assert!(!edit.changed());
        assert_eq!(edit.replacements[0].old, edit.replacements[0].new);
    }

    #[test]
    fn zero_matches_is_an_error_naming_the_file() {
        let image = pattern("vs/a", "Helix-A_{V}", "Helix-A_2");
        let problems = edit_file("q/a.yml", "image: Helix-B_1\n", &[&image], None).unwrap_err();
        assert_eq!(problems.len(), 1);
        let message = problems[0].to_string();
        assert!(
            message.starts_with(
                "q/a.yml: no image of vs/a is named here: nothing matches Helix-A_{V}"
            ),
            "{message}"
        );
    }

    #[test]
    fn a_name_claimed_by_two_definitions_is_ambiguous() {
        let a = pattern("vs/a", "Helix-{OS}-VS_{V}", "Helix-Win-VS_2");
        let b = pattern("vs/b", "Helix-Win-{SKU}_{V}", "Helix-Win-VS_3");
        let problems =
            edit_file("q.yml", "x: 1\nimage: Helix-Win-VS_1\n", &[&a, &b], None).unwrap_err();
        let message = problems[0].to_string();
        assert!(
            message.starts_with("q.yml:2:8: Helix-Win-VS_1 matches the images of both vs/a"),
            "{message}"
        );
    }

    #[test]
    fn hyphens_in_values_follow_the_known_values() {
        let mut known = BTreeMap::new();
        known.insert("V".to_string(), vec!["17-12".to_string()]);
        let image = ImagePattern::new("a", "Helix-A_{V}", "Helix-A_17-13", &known);
        let edit = edit_file(
            "a.txt",
            "Helix-A_17-12 and Helix-A_17-12\n",
            &[&image],
            None,
        )
        .unwrap();
        assert_eq!(edit.edited, "Helix-A_17-13 and Helix-A_17-13\n");
    }

    #[test]
    fn an_edit_that_breaks_the_file_is_refused() {
        // A template that reaches into YAML syntax: the swap would unbalance the quotes.
        let image = pattern("a", "A_{V}", "A_1\"");
        let problems = edit_file("a.yml", "x: \"A_0\"\n", &[&image], None).unwrap_err();
        assert!(
            problems[0].message.contains("no longer parses"),
            "{problems:?}"
        );
    }

    #[test]
    fn comments_are_told_from_values() {
        let text = "a: 'x # y' Helix # Helix\n# Helix\nb: Helix#x\n";
        let at = |needle: &str, nth: usize| text.match_indices(needle).nth(nth).unwrap().0;
        assert!(!in_yaml_comment(text, at("Helix", 0)));
        assert!(in_yaml_comment(text, at("Helix", 1)));
        assert!(in_yaml_comment(text, at("Helix", 2)));
        assert!(!in_yaml_comment(text, at("Helix", 3)));
    }

    #[test]
    fn date_formats_are_recognised() {
        assert_eq!(date_format("2026-12-01"), Some("%Y-%m-%d"));
        assert_eq!(date_format("12/01/2026"), Some("%m/%d/%Y"));
        assert_eq!(date_format("1/2/2026"), Some("%-m/%-d/%Y"));
        assert_eq!(date_format("next week"), None);
    }

    #[test]
    fn a_template_longer_than_any_image_name_names_none_and_does_not_panic() {
        for template in [
            format!("Helix-{}", "x".repeat(1_000_000)),
            "{V}".repeat(300_000),
        ] {
            let image = ImagePattern::new("a", &template, "Helix-a", &BTreeMap::new());
            assert!(image.regex.find("Helix-xxxx and Helix-a").is_none());
        }
    }
}
