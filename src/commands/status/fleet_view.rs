//! `imagegen status` without tracking ids: reads the catalog, the ledger and OSOB's base branch,
//! and renders [`crate::fleet`]'s rows as a table (or one JSON document, and on a CI platform
//! the run's summary too). Image Factory is not asked: the states are those the ledger holds,
//! as the last run recorded them.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;

use super::StatusRequest;
use crate::catalog::Catalog;
use crate::commands::{Context, errors_of, ledger_line};
use crate::exit::Exit;
use crate::fleet::{self, FleetRow, InOsob, OsobFinding};
use crate::osob;
use crate::osob::mapping::{self, MAPPING_FILE, Mapping};
use crate::output::Table;
use crate::platform::{Annotation, markdown_cell};
use crate::selection::Selection;
use crate::state::Ledger;

/// What was read of OSOB for the fleet view.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
enum OsobRead {
    /// The repository has no osob-mapping/osob.json: OSOB is not this repository's concern.
    #[serde(serialize_with = "no_mapping")]
    NoMapping,
    /// OSOB could not be read: the table shows the ledger alone.
    NotRead { error: String },
    Read {
        url: String,
        base_branch: String,
        commit: String,
        #[serde(skip)]
        findings: BTreeMap<String, OsobFinding>,
    },
}

fn no_mapping<S: serde::Serializer>(serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_none()
}

impl OsobRead {
    fn findings(&self) -> Option<&BTreeMap<String, OsobFinding>> {
        match self {
            Self::Read { findings, .. } => Some(findings),
            // Without a mapping no definition is mapped: an empty map says so.
            Self::NoMapping => Some(&NO_FINDINGS),
            Self::NotRead { .. } => None,
        }
    }

    /// The line under the table that says where OSOB's answer came from.
    fn line(&self) -> String {
        match self {
            Self::NoMapping => {
                format!("OSOB: not looked at, since there is no {MAPPING_FILE}\n")
            }
            Self::NotRead { error } => {
                format!("OSOB: not read, so the OSOB column is unknown: {error}\n")
            }
            Self::Read {
                url,
                base_branch,
                commit,
                ..
            } => format!("OSOB: {url}, {base_branch} at {commit}\n"),
        }
    }
}

static NO_FINDINGS: BTreeMap<String, OsobFinding> = BTreeMap::new();

/// The fleet view: one row per definition, then the counts, OSOB's source and the ledger.
pub(super) fn fleet(context: &Context, request: &StatusRequest) -> anyhow::Result<Exit> {
    let output = &context.output;
    let catalog = Catalog::load(&context.repo);
    let selection = Selection::new(&request.only, &request.except)?;
    selection.check(&catalog.ids())?;
    let ledger = context.store.read_blocking()?;
    let errors = errors_of(&catalog);
    output.diagnostics(&errors)?;
    let osob = read_osob(context, &catalog, &ledger, &selection, request);
    let rows = fleet::rows(&catalog, &ledger, osob.findings(), &selection);
    let code = fleet::exit_code(&rows);
    if let OsobRead::NotRead { error } = &osob {
        output.annotate(
            &Annotation::error(format!("OSOB was not read: {error}"))
                .titled("imagegen status: OSOB not read"),
        )?;
    }
    output.summary(&render_markdown(&rows, &osob))?;
    if output.is_json() {
        output.json(&json!({
            "definitions": rows,
            "counts": fleet::counts(&rows),
            "osob": osob,
            "diagnostics": errors,
            "ledger": context.store.describe(),
            "exit_code": code,
        }))?;
    } else {
        output.text(&render_text(&rows))?;
        output.text(&format!("\n{}", counts_line(&rows)))?;
        output.text(&osob.line())?;
        output.text(&ledger_line(context))?;
    }
    Ok(code)
}

/// What OSOB's base branch names for each selected, mapped definition; a repository without a
/// mapping, and an OSOB that cannot be read, say so instead of failing the view.
fn read_osob(
    context: &Context,
    catalog: &Catalog,
    ledger: &Ledger,
    selection: &Selection,
    request: &StatusRequest,
) -> OsobRead {
    let (mapping, problems) = mapping::load(&context.repo, &catalog.ids());
    let mapping = match mapping {
        None if problems.is_empty() => return OsobRead::NoMapping,
        Some(mapping) if !problems.iter().any(|problem| problem.is_error()) => mapping,
        _ => {
            return OsobRead::NotRead {
                error: format!("{MAPPING_FILE} has errors (imagegen validate lists them)"),
            };
        }
    };
    match read_findings(context, catalog, ledger, selection, &mapping, request) {
        Ok(read) => read,
        Err(error) => OsobRead::NotRead { error },
    }
}

fn read_findings(
    context: &Context,
    catalog: &Catalog,
    ledger: &Ledger,
    selection: &Selection,
    mapping: &Mapping,
    request: &StatusRequest,
) -> Result<OsobRead, String> {
    let (workspace, base) =
        osob::step::fetched_base(&context.repo, mapping, request.osob_url.as_deref())
            .map_err(|error| error.to_string())?;
    let base_branch = &mapping.repository.base_branch;
    // Each file once, however many definitions it names.
    let mut texts: BTreeMap<&str, Option<String>> = BTreeMap::new();
    let mut findings = BTreeMap::new();
    for (id, files) in &mapping.definitions {
        if !selection.matches(id) {
            continue;
        }
        let Some(definition) = catalog.definition(id) else {
            continue;
        };
        let mut contents = Vec::new();
        for file in files {
            if !texts.contains_key(file.as_str()) {
                let bytes = workspace
                    .read(base, file)
                    .map_err(|error| error.to_string())?;
                let text = bytes.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
                texts.insert(file, text);
            }
            contents.push((file.clone(), texts[file.as_str()].clone()));
        }
        let finding = fleet::finding(
            id,
            &definition.image_name_templates,
            &known_values(catalog, ledger, id),
            &contents,
            base_branch,
        );
        findings.insert(id.clone(), finding);
    }
    let commit = base.to_string();
    Ok(OsobRead::Read {
        url: workspace.url(),
        base_branch: base_branch.clone(),
        commit: commit[..12.min(commit.len())].to_string(),
        findings,
    })
}

/// The values a definition's variables have today and had at its last submission: the names
/// OSOB holds were made with one of them.
fn known_values(catalog: &Catalog, ledger: &Ledger, id: &str) -> BTreeMap<String, Vec<String>> {
    let today = catalog
        .rendered
        .iter()
        .filter(|rendered| rendered.id == id)
        .flat_map(|rendered| rendered.variables.iter());
    let recorded = ledger
        .definitions
        .get(id)
        .into_iter()
        .flat_map(|entry| entry.variables.iter());
    let mut known: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in today.chain(recorded) {
        known.entry(name.clone()).or_default().push(value.clone());
    }
    known
}

const HEADER: [&str; 6] = [
    "definition",
    "state",
    "image",
    "built",
    "tracking id",
    "OSOB",
];

/// The cells of one row, as both the text table and the markdown summary show them.
fn cells(row: &FleetRow) -> [String; 6] {
    let or_dash = |text: String| if text.is_empty() { "-".into() } else { text };
    [
        row.definition.clone(),
        row.state.to_string(),
        or_dash(row.images.join(", ")),
        row.built_at.map_or("-".to_string(), |at| {
            at.strftime("%Y-%m-%d %H:%M UTC").to_string()
        }),
        row.tracking_id.clone().unwrap_or_else(|| "-".into()),
        osob_cell(&row.osob),
    ]
}

fn osob_cell(osob: &InOsob) -> String {
    match osob {
        InOsob::Named => "names it".into(),
        InOsob::Partly { others } => format!("names it, and still {}", others.join(", ")),
        InOsob::Other { names } if names.is_empty() => "names none".into(),
        InOsob::Other { names } => format!("still names {}", names.join(", ")),
        InOsob::Missing { .. } => "names none".into(),
        InOsob::NotMapped => "not mapped".into(),
        InOsob::NotRead => "not read".into(),
    }
}

/// Why a row needs a second look: a failed job's message, an OSOB file naming none of it.
fn details(row: &FleetRow) -> Vec<String> {
    let mut details = Vec::new();
    if let Some(message) = &row.message {
        details.push(message.clone());
    }
    if let InOsob::Missing { problem } = &row.osob {
        details.push(format!("OSOB: {problem}"));
    }
    details
}

fn render_text(rows: &[FleetRow]) -> String {
    let mut table = Table::new(&HEADER);
    for row in rows {
        table.row(&cells(row));
        for detail in details(row) {
            table.detail(&detail);
        }
    }
    table.render()
}

/// `16 definitions: 12 built, 2 building, 1 failed, 1 changed`, states in their order.
fn counts_line(rows: &[FleetRow]) -> String {
    let counts = fleet::counts(rows);
    let parts: Vec<String> = counts
        .iter()
        .map(|(state, count)| format!("{count} {state}"))
        .collect();
    format!(
        "{} {}: {}\n",
        rows.len(),
        if rows.len() == 1 {
            "definition"
        } else {
            "definitions"
        },
        if parts.is_empty() {
            "none chosen".to_string()
        } else {
            parts.join(", ")
        }
    )
}

/// The same table in markdown, for the CI platform's run summary.
fn render_markdown(rows: &[FleetRow], osob: &OsobRead) -> String {
    let mut text = String::from("## imagegen status\n\n");
    text.push_str(&format!("| {} |\n", HEADER.join(" | ")));
    text.push_str(&format!("|{}\n", " --- |".repeat(HEADER.len())));
    for row in rows {
        let mut cells = cells(row).map(|cell| markdown_cell(&cell));
        let details = details(row);
        if !details.is_empty() {
            cells[5] = format!("{}<br>{}", cells[5], markdown_cell(&details.join("; ")));
        }
        text.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    text.push('\n');
    text.push_str(&counts_line(rows));
    text.push('\n');
    text.push_str(&markdown_cell(osob.line().trim_end()));
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::BuildState;
    use crate::state::JobStatus;

    fn row(definition: &str, state: BuildState, osob: InOsob) -> FleetRow {
        FleetRow {
            definition: definition.into(),
            state,
            status: Some(JobStatus::Succeeded),
            images: vec![format!("Image-{definition}_2")],
            built_at: Some("2026-11-16T11:30:00Z".parse().unwrap()),
            tracking_id: Some(format!("job-{definition}")),
            message: None,
            osob,
        }
    }

    fn rows() -> Vec<FleetRow> {
        let mut failed = row("c", BuildState::Failed, InOsob::NotMapped);
        failed.built_at = None;
        failed.message = Some("exited with code 1603".into());
        vec![
            row("a", BuildState::Built, InOsob::Named),
            row(
                "b",
                BuildState::Built,
                InOsob::Other {
                    names: vec!["Image-b_1".into()],
                },
            ),
            failed,
        ]
    }

    #[test]
    fn the_table_has_one_row_per_definition_with_messages_under_it() {
        let rows = rows();
        assert_eq!(
            render_text(&rows),
            "\
definition  state   image      built                 tracking id  OSOB
a           built   Image-a_2  2026-11-16 11:30 UTC  job-a        names it
b           built   Image-b_2  2026-11-16 11:30 UTC  job-b        still names Image-b_1
c           failed  Image-c_2  -                     job-c        not mapped
  exited with code 1603
"
        );
        assert_eq!(counts_line(&rows), "3 definitions: 2 built, 1 failed\n");
    }

    #[test]
    fn the_summary_is_the_same_table_in_markdown() {
        let osob = OsobRead::NotRead {
            error: "cannot reach <osob>".into(),
        };
        let markdown = render_markdown(&rows(), &osob);
        assert!(
            markdown.contains(
                "| c | failed | Image-c_2 | - | job-c | not mapped<br>exited with code 1603 |"
            ),
            "{markdown}"
        );
        assert!(
            markdown.ends_with(
                "OSOB: not read, so the OSOB column is unknown: cannot reach &lt;osob&gt;\n"
            ),
            "{markdown}"
        );
    }
}
