//! The pull request's title and description, rendered purely from what was built and edited,
//! and cut to the provider's limit with a note that says so.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::platform::markdown_cell;
use crate::state::JobStatus;

/// One image name that changes in OSOB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageChange {
    pub definition: String,
    /// The names found in OSOB (usually one).
    pub old_names: Vec<String>,
    pub new_name: String,
    /// Variables of the name that changed: (name, old, new).
    pub variables: Vec<(String, String, String)>,
    pub tracking_id: Option<String>,
    /// When the job ended, and how long it took, as text ("2026-11-23 12:41 UTC, 2h 41m").
    pub built: Option<String>,
}

/// A definition whose image is not in this pull request, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotIncluded {
    pub definition: String,
    pub status: NotIncludedStatus,
    pub reason: String,
}

/// Where a definition left out of the pull request stands: its "status" column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotIncludedStatus {
    /// The definition has errors.
    Invalid,
    /// Never submitted.
    NotBuilt,
    /// Its job is still being built, or ended without an image: the ledger's status.
    Job(JobStatus),
    /// Its job produced other images than the definition names.
    OtherImages,
    /// Changed since it was built, but keeping the image name: refused until a person allows it.
    SameName,
    /// Changed since it was built; the new payload is not built yet.
    Changed,
}

impl NotIncludedStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::NotBuilt => "not built",
            Self::Job(status) => status.as_str(),
            Self::OtherImages => "other images",
            Self::SameName => "same name",
            Self::Changed => "changed",
        }
    }
}

impl std::fmt::Display for NotIncludedStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Written as its column reads, as it was when the status was text.
impl Serialize for NotIncludedStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A review date moved in an OSOB file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DateMove {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub old: String,
    pub new: String,
}

/// Everything the pull request tells its reviewers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PrContent {
    pub changes: Vec<ImageChange>,
    pub not_included: Vec<NotIncluded>,
    pub dates: Vec<DateMove>,
    /// OSOB files changed, each with how many names changed in it.
    pub files: Vec<(String, usize)>,
}

const TITLE_LIMIT: usize = 200;

/// `Update Helix images: VS_2019_PREVIEW_VERSION 16_11_0_4 (6 images)`.
pub fn title(content: &PrContent) -> String {
    let mut values: BTreeMap<&str, &str> = BTreeMap::new();
    for change in &content.changes {
        for (name, _, new) in &change.variables {
            values.entry(name).or_insert(new);
        }
    }
    let count = content.changes.len();
    let images = format!("({count} image{})", if count == 1 { "" } else { "s" });
    let mut summary: Vec<String> = values
        .iter()
        .map(|(name, value)| format!("{name} {value}"))
        .collect();
    if summary.is_empty() {
        summary.push("new builds".to_string());
    }
    let mut title = format!("Update Helix images: {} {images}", summary.join(", "));
    while title.chars().count() > TITLE_LIMIT && summary.len() > 1 {
        summary.pop();
        title = format!(
            "Update Helix images: {}, and more {images}",
            summary.join(", ")
        );
    }
    title
}

/// The first line of the report comment: providers find their one comment by it.
pub const REPORT_HEADING: &str = "### imagegen: the full report";

const INTRO: &str = "imagegen built new Helix images with Image Factory; this pull request points \
                     OSOB at them. It changes image names, and the review dates of the entries \
                     whose image changed, nothing else.\n";

/// What the pull request says: its description and, when the description cannot hold the whole
/// change, the full report that goes in one comment on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Description {
    pub body: String,
    /// Set only when the description leaves something out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

/// The description, at most `body_limit` characters: every table when they fit; otherwise a
/// compact table of definition, old and new name, and the full report (variables, tracking
/// ids, build times, review dates, not included) for one comment of at most `comment_limit`.
pub fn describe(content: &PrContent, body_limit: usize, comment_limit: usize) -> Description {
    let sections = full_sections(content);
    let full = render(INTRO, &sections, usize::MAX, "");
    if full.chars().count() <= body_limit {
        return Description {
            body: full,
            report: None,
        };
    }
    let compact_intro = format!(
        "{INTRO}\n> The variables changed, tracking ids, build times, review dates moved and the \
         definitions not included are in the comment **{}** below.\n",
        REPORT_HEADING.trim_start_matches("### ")
    );
    let compact = [Section {
        title: format!("\n### Images ({})\n\n", content.changes.len()),
        heading: "| Definition | Old image | New image |\n| --- | --- | --- |\n".to_string(),
        rows: content.changes.iter().map(compact_row).collect(),
    }];
    let report_intro = format!("{REPORT_HEADING}\n\n{INTRO}");
    Description {
        body: render(
            &compact_intro,
            &compact,
            body_limit,
            "this description is cut to the provider's limit",
        ),
        report: Some(render(
            &report_intro,
            &sections,
            comment_limit,
            "this report is cut to the provider's limit for a comment",
        )),
    }
}

/// Every table of the change: images, review dates, not included, files.
fn full_sections(content: &PrContent) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    sections.push(Section {
        heading:
            "| Definition | Old image | New image | Variables changed | Tracking id | Built |\n\
                  | --- | --- | --- | --- | --- | --- |\n"
                .to_string(),
        title: format!("\n### Images ({})\n\n", content.changes.len()),
        rows: content.changes.iter().map(change_row).collect(),
    });
    if !content.dates.is_empty() {
        sections.push(Section {
            title: format!("\n### Review dates moved ({})\n\n", content.dates.len()),
            heading: "| File | Line | Key | Old | New |\n| --- | --- | --- | --- | --- |\n"
                .to_string(),
            rows: content
                .dates
                .iter()
                .map(|date| {
                    format!(
                        "| `{}` | {} | {} | {} | {} |\n",
                        markdown_cell(&date.file),
                        date.line,
                        markdown_cell(&date.key),
                        markdown_cell(&date.old),
                        markdown_cell(&date.new)
                    )
                })
                .collect(),
        });
    }
    if !content.not_included.is_empty() {
        sections.push(Section {
            title: format!(
                "\n### Not included ({}): not built from the current definition\n\n",
                content.not_included.len()
            ),
            heading: "| Definition | Status | Why |\n| --- | --- | --- |\n".to_string(),
            rows: content
                .not_included
                .iter()
                .map(|item| {
                    format!(
                        "| {} | {} | {} |\n",
                        markdown_cell(&item.definition),
                        markdown_cell(item.status.as_str()),
                        markdown_cell(&item.reason)
                    )
                })
                .collect(),
        });
    }
    if !content.files.is_empty() {
        sections.push(Section {
            title: "\n### Files changed\n\n".to_string(),
            heading: String::new(),
            rows: content
                .files
                .iter()
                .map(|(file, names)| {
                    format!(
                        "- `{}`: {names} name{}\n",
                        markdown_cell(file),
                        if *names == 1 { "" } else { "s" }
                    )
                })
                .collect(),
        });
    }
    sections
}

/// `intro` and `sections` in at most `limit` characters: rows that do not fit are left out,
/// and a note says how many, why (`cut_because`) and where to see them all.
fn render(intro: &str, sections: &[Section], limit: usize, cut_because: &str) -> String {
    let full: usize = intro.chars().count() + sections.iter().map(Section::length).sum::<usize>();
    if full <= limit {
        let mut text = intro.to_string();
        for section in sections {
            section.write_all(&mut text);
        }
        return text;
    }
    // Cut: fill each section in order while the note still fits.
    let total_rows: usize = sections.iter().map(|section| section.rows.len()).sum();
    let note = |left_out: usize| {
        format!(
            "\n> **{left_out} of {total_rows} rows are not shown**: {cut_because} of {limit} \
             characters. The commit message lists every image; `imagegen pr --dry-run` shows \
             everything.\n"
        )
    };
    let reserve = note(total_rows).chars().count();
    let mut text = intro.to_string();
    let mut used = text.chars().count();
    let mut shown = 0;
    for section in sections {
        let head = section.title.chars().count() + section.heading.chars().count();
        if used + head + reserve > limit {
            break;
        }
        let mut body = String::new();
        let mut rows = 0;
        for row in &section.rows {
            let length = row.chars().count();
            if used + head + body.chars().count() + length + reserve > limit {
                break;
            }
            body.push_str(row);
            rows += 1;
        }
        if rows == 0 {
            break;
        }
        text.push_str(&section.title);
        text.push_str(&section.heading);
        text.push_str(&body);
        used = text.chars().count();
        shown += rows;
    }
    text.push_str(&note(total_rows - shown));
    text
}

struct Section {
    title: String,
    heading: String,
    rows: Vec<String>,
}

impl Section {
    fn length(&self) -> usize {
        self.title.chars().count()
            + self.heading.chars().count()
            + self
                .rows
                .iter()
                .map(|row| row.chars().count())
                .sum::<usize>()
    }

    fn write_all(&self, text: &mut String) {
        text.push_str(&self.title);
        text.push_str(&self.heading);
        for row in &self.rows {
            text.push_str(row);
        }
    }
}

fn change_row(change: &ImageChange) -> String {
    let old = change
        .old_names
        .iter()
        .map(|name| format!("`{}`", markdown_cell(name)))
        .collect::<Vec<_>>()
        .join("<br>");
    let variables = if change.variables.is_empty() {
        "-".to_string()
    } else {
        change
            .variables
            .iter()
            .map(|(name, old, new)| {
                format!(
                    "{} {} → {}",
                    markdown_cell(name),
                    markdown_cell(old),
                    markdown_cell(new)
                )
            })
            .collect::<Vec<_>>()
            .join("<br>")
    };
    format!(
        "| {} | {old} | `{}` | {variables} | {} | {} |\n",
        markdown_cell(&change.definition),
        markdown_cell(&change.new_name),
        change
            .tracking_id
            .as_deref()
            .map_or("-".to_string(), markdown_cell),
        change
            .built
            .as_deref()
            .map_or("-".to_string(), markdown_cell),
    )
}

fn compact_row(change: &ImageChange) -> String {
    let old = change
        .old_names
        .iter()
        .map(|name| format!("`{}`", markdown_cell(name)))
        .collect::<Vec<_>>()
        .join("<br>");
    format!(
        "| {} | {old} | `{}` |\n",
        markdown_cell(&change.definition),
        markdown_cell(&change.new_name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(index: usize) -> ImageChange {
        ImageChange {
            definition: format!("vs2019-preview/image-{index}"),
            old_names: vec![format!("Helix-Image-{index}_16_11_0_3")],
            new_name: format!("Helix-Image-{index}_16_11_0_4"),
            variables: vec![(
                "VS_2019_PREVIEW_VERSION".into(),
                "16_11_0_3".into(),
                "16_11_0_4".into(),
            )],
            tracking_id: Some(format!("job-{index}")),
            built: Some("2026-11-23 12:41 UTC, 2h 41m".into()),
        }
    }

    fn content(count: usize) -> PrContent {
        PrContent {
            changes: (0..count).map(change).collect(),
            not_included: vec![NotIncluded {
                definition: "vs2022/x".into(),
                status: NotIncludedStatus::Job(JobStatus::Failed),
                reason: "job j-9 failed: installer exited with code 1603 | see logs".into(),
            }],
            dates: vec![DateMove {
                file: "queues/windows.yml".into(),
                line: 12,
                key: "UpdateRequiredDate".into(),
                old: "2026-12-01".into(),
                new: "2027-02-26".into(),
            }],
            files: vec![("queues/windows.yml".into(), count)],
        }
    }

    #[test]
    fn the_title_names_the_new_values_and_the_count() {
        assert_eq!(
            title(&content(6)),
            "Update Helix images: VS_2019_PREVIEW_VERSION 16_11_0_4 (6 images)"
        );
        assert_eq!(
            title(&content(1)),
            "Update Helix images: VS_2019_PREVIEW_VERSION 16_11_0_4 (1 image)"
        );
    }

    #[test]
    fn a_change_that_fits_is_described_whole_and_needs_no_report() {
        let described = describe(&content(2), 65_536, 65_536);
        let text = &described.body;
        assert_eq!(described.report, None);
        assert!(text.contains("| vs2019-preview/image-1 | `Helix-Image-1_16_11_0_3` | `Helix-Image-1_16_11_0_4` | VS_2019_PREVIEW_VERSION 16_11_0_3 → 16_11_0_4 | job-1 | 2026-11-23 12:41 UTC, 2h 41m |"), "{text}");
        assert!(text.contains("### Not included (1)"));
        assert!(
            text.contains("1603 \\| see logs"),
            "pipes are escaped: {text}"
        );
        assert!(text.contains(
            "| `queues/windows.yml` | 12 | UpdateRequiredDate | 2026-12-01 | 2027-02-26 |"
        ));
        assert!(!text.contains("<!--"));
        assert!(!text.contains("rows are not shown"));
    }

    /// 30 of these images overflow Azure DevOps' 4,000 characters (16 of the shipped ones do,
    /// see tests/it/osob_story.rs): the description keeps every image in a compact table, the
    /// comment the rest.
    #[test]
    fn a_change_over_the_cap_keeps_every_name_and_moves_the_rest_to_the_report() {
        let described = describe(&content(30), 4_000, 65_536);
        let body = &described.body;
        assert!(body.chars().count() <= 4_000, "{}", body.chars().count());
        assert!(!body.contains("rows are not shown"), "{body}");
        for index in 0..30 {
            assert!(
                body.contains(&format!("| `Helix-Image-{index}_16_11_0_4` |")),
                "{body}"
            );
        }
        assert!(body.contains("imagegen: the full report"));
        assert!(!body.contains("job-3"), "tracking ids are in the report");
        let report = described.report.expect("a report");
        assert!(report.starts_with(REPORT_HEADING));
        assert!(report.contains("| job-29 |"), "{report}");
        assert!(report.contains("### Review dates moved (1)"));
        assert!(report.contains("### Not included (1)"));
        assert!(!report.contains("rows are not shown"));
    }

    #[test]
    fn two_hundred_images_cut_the_description_with_a_note_and_keep_the_report_whole() {
        let described = describe(&content(200), 4_000, 65_536);
        let body = &described.body;
        assert!(body.chars().count() <= 4_000, "{}", body.chars().count());
        assert!(body.contains("rows are not shown"), "{body}");
        assert!(body.contains("cut to the provider's limit of 4000 characters"));
        assert!(body.contains("| vs2019-preview/image-0 |"));
        let report = described.report.expect("a report");
        assert!(report.chars().count() <= 65_536);
        assert!(report.contains("| job-199 |"));
        assert!(!report.contains("rows are not shown"));
    }

    #[test]
    fn a_report_over_the_comment_limit_is_cut_with_a_visible_note() {
        let report = describe(&content(600), 4_000, 65_536)
            .report
            .expect("a report");
        assert!(report.chars().count() <= 65_536);
        assert!(report.starts_with(REPORT_HEADING));
        assert!(
            report.contains("limit for a comment of 65536 characters"),
            "{report}"
        );
    }
}
