//! The fleet as `imagegen status` shows it without tracking ids: for every definition, where its
//! last build stands in the ledger, and whether OSOB's base branch names the image it built.
//! Pure: the catalog, the ledger and the names read from OSOB go in, plain rows come out; the
//! command reads OSOB and renders the rows.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::Serialize;

use crate::catalog::Catalog;
use crate::definitions::Rendered;
use crate::exit::Exit;
use crate::osob::edit::ImagePattern;
use crate::selection::Selection;
use crate::state::{JobStatus, Ledger, LedgerEntry};

/// Where a definition's build stands, judged against the definition as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuildState {
    /// A job built the payload the definition renders today.
    Built,
    /// Today's payload was recorded as built without a job (`imagegen adopt`).
    Adopted,
    /// A job for today's payload is in flight (or its submission's answer is not recorded).
    Building,
    /// The job for today's payload failed, was canceled, or ended without naming its images.
    Failed,
    /// The ledger holds no submission of it.
    NeverBuilt,
    /// The ledger's last submission is of another payload: the definition or a variable it
    /// uses changed since, and the next reconcile submits it.
    Changed,
    /// The definition does not render (see `imagegen validate`).
    Invalid,
}

impl BuildState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Built => "built",
            Self::Adopted => "adopted",
            Self::Building => "building",
            Self::Failed => "failed",
            Self::NeverBuilt => "never built",
            Self::Changed => "changed",
            Self::Invalid => "invalid",
        }
    }

    /// Its image exists and is the one the definition asks for today.
    pub fn is_built(self) -> bool {
        matches!(self, Self::Built | Self::Adopted)
    }
}

impl std::fmt::Display for BuildState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What OSOB's base branch says about one definition, as read from its mapped files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OsobFinding {
    /// The names its `CustomImageName` templates match in the mapped files, each once, in the
    /// order found.
    Names(Vec<String>),
    /// A mapped file is missing, or names no image of it.
    Problem(String),
}

/// Whether OSOB names the image a definition built, as a row shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum InOsob {
    /// OSOB names exactly the images the row's build produced.
    Named,
    /// OSOB names the images the row's build produced in some places, and `others` of the
    /// definition elsewhere: a change not yet made everywhere.
    Partly { others: Vec<String> },
    /// OSOB names other images of the definition only: older ones, still in use.
    Other { names: Vec<String> },
    /// OSOB names none: a mapped file is missing, or nothing in it matches the template.
    Missing { problem: String },
    /// osob-mapping/osob.json maps no OSOB file to the definition (or there is no mapping).
    NotMapped,
    /// OSOB could not be read; the reason is given once, beside the table.
    NotRead,
}

/// One definition of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetRow {
    pub definition: String,
    pub state: BuildState,
    /// The ledger's status of the last submission, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
    /// The images of the ledger's last submission: built, being built, or failed to build.
    pub images: Vec<String>,
    /// When that build ended, if it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub built_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_id: Option<String>,
    /// The service's message about a failed job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub osob: InOsob,
}

/// The rows of every definition `selection` chooses, in id order: those that do not render
/// too, so that none goes unseen. `osob` holds what each mapped definition's files name on the
/// base branch, or `None` when OSOB could not be read.
pub fn rows(
    catalog: &Catalog,
    ledger: &Ledger,
    osob: Option<&BTreeMap<String, OsobFinding>>,
    selection: &Selection,
) -> Vec<FleetRow> {
    let rendered: BTreeMap<&str, &Rendered> = catalog
        .rendered
        .iter()
        .map(|rendered| (rendered.id.as_str(), rendered))
        .collect();
    catalog
        .ids()
        .into_iter()
        .filter(|id| selection.matches(id))
        .map(|id| {
            let entry = ledger.definitions.get(&id);
            let state = state_of(rendered.get(id.as_str()).copied(), entry);
            let images = entry.map(images_of).unwrap_or_default();
            let osob = match osob {
                None => InOsob::NotRead,
                Some(findings) => match findings.get(&id) {
                    None => InOsob::NotMapped,
                    Some(OsobFinding::Problem(problem)) => InOsob::Missing {
                        problem: problem.clone(),
                    },
                    Some(OsobFinding::Names(names)) => in_osob(names, &images),
                },
            };
            FleetRow {
                state,
                status: entry.map(|entry| entry.status),
                built_at: entry
                    .filter(|entry| entry.status == JobStatus::Succeeded)
                    .map(|entry| entry.completed_at.unwrap_or(entry.updated_at)),
                tracking_id: entry.and_then(|entry| entry.tracking_id.clone()),
                message: entry
                    .filter(|entry| entry.status.is_unsuccessful())
                    .and_then(|entry| entry.message.clone()),
                images,
                osob,
                definition: id,
            }
        })
        .collect()
}

fn state_of(rendered: Option<&Rendered>, entry: Option<&LedgerEntry>) -> BuildState {
    let Some(rendered) = rendered else {
        return BuildState::Invalid;
    };
    let Some(entry) = entry else {
        return BuildState::NeverBuilt;
    };
    if entry.payload_hash != rendered.hash {
        return BuildState::Changed;
    }
    match entry.status {
        JobStatus::Submitting | JobStatus::Queued | JobStatus::Running => BuildState::Building,
        JobStatus::Succeeded if entry.adopted => BuildState::Adopted,
        JobStatus::Succeeded => BuildState::Built,
        JobStatus::Failed | JobStatus::Canceled | JobStatus::NoImages => BuildState::Failed,
    }
}

/// The images a submission produced, or, before it produced any, the ones its payload names.
fn images_of(entry: &LedgerEntry) -> Vec<String> {
    if entry.image_names.is_empty() {
        crate::definitions::custom_image_names(&entry.payload.to_value())
    } else {
        entry.image_names.clone()
    }
}

fn in_osob(found: &[String], images: &[String]) -> InOsob {
    let found_set: BTreeSet<&String> = found.iter().collect();
    let images_set: BTreeSet<&String> = images.iter().collect();
    let others: Vec<String> = found
        .iter()
        .filter(|name| !images_set.contains(name))
        .cloned()
        .collect();
    if !images.is_empty() && found_set == images_set {
        InOsob::Named
    } else if others.len() < found.len() {
        InOsob::Partly { others }
    } else {
        InOsob::Other { names: others }
    }
}

/// What OSOB's files name for one definition: every whole name its `templates` match (each
/// placeholder standing for any image-name token) in the mapped `files`, given as their path
/// and their text on the base branch (`None` when the branch lacks the file).
/// `known_values` are the values the definition's variables had (today's and the ledger's): a
/// value with a `-` lets its placeholder match one.
pub fn finding(
    definition: &str,
    templates: &[String],
    known_values: &BTreeMap<String, Vec<String>>,
    files: &[(String, Option<String>)],
    base_branch: &str,
) -> OsobFinding {
    let patterns: Vec<ImagePattern> = templates
        .iter()
        .map(|template| ImagePattern::new(definition, template, "", known_values))
        .collect();
    let mut names: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    for (path, text) in files {
        let Some(text) = text else {
            problems.push(format!("{path} is not on OSOB's {base_branch} branch"));
            continue;
        };
        for pattern in &patterns {
            let found = pattern.names_in(text);
            if found.is_empty() {
                problems.push(format!(
                    "{path}: nothing matches {}",
                    crate::output::quoted(&pattern.template)
                ));
            }
            for name in found {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    if problems.is_empty() {
        OsobFinding::Names(names)
    } else {
        OsobFinding::Problem(problems.join("; "))
    }
}

/// How many rows are in each state.
pub fn counts(rows: &[FleetRow]) -> BTreeMap<BuildState, usize> {
    let mut counts = BTreeMap::new();
    for row in rows {
        *counts.entry(row.state).or_insert(0) += 1;
    }
    counts
}

/// 1 when a build failed, a definition does not render, or OSOB could not be read or names no
/// image of a definition; else 2 when something is still to be built or not yet named by OSOB;
/// else 0: every definition built and named by OSOB (or mapped to no OSOB file).
pub fn exit_code(rows: &[FleetRow]) -> Exit {
    rows.iter()
        .map(|row| {
            let build = match row.state {
                BuildState::Built | BuildState::Adopted => Exit::Ok,
                BuildState::Building | BuildState::NeverBuilt | BuildState::Changed => {
                    Exit::Pending
                }
                BuildState::Failed | BuildState::Invalid => Exit::Error,
            };
            let osob = match row.osob {
                InOsob::Named | InOsob::NotMapped => Exit::Ok,
                InOsob::Partly { .. } | InOsob::Other { .. } => Exit::Pending,
                InOsob::Missing { .. } | InOsob::NotRead => Exit::Error,
            };
            build.max(osob)
        })
        .max()
        .unwrap_or(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{DefinitionSource, Sources};
    use crate::state::LedgerEntry;

    const VARIABLES: &str = r#"{"V": "2", "W": "1"}"#;

    fn definition(id: &str, template: &str) -> DefinitionSource {
        DefinitionSource {
            id: id.to_string(),
            file: format!("definitions/{id}.json"),
            text: format!(r#"{{"Destination": [{{"CustomImageName": "{template}"}}]}}"#),
        }
    }

    /// Seven definitions, one for each state; `broken` names no variable that exists.
    fn catalog() -> Catalog {
        Catalog::build(Sources {
            variables: Some(VARIABLES.to_string()),
            definitions: [
                "adopted", "building", "built", "changed", "failed", "new", "broken",
            ]
            .into_iter()
            .map(|id| {
                let variable = if id == "broken" { "NOPE" } else { "V" };
                definition(id, &format!("Image-{id}_{{{variable}}}"))
            })
            .collect(),
            problems: Vec::new(),
        })
    }

    fn rendered<'a>(catalog: &'a Catalog, id: &str) -> &'a Rendered {
        catalog
            .rendered
            .iter()
            .find(|rendered| rendered.id == id)
            .expect("the definition renders")
    }

    fn recorded(rendered: &Rendered, status: JobStatus) -> LedgerEntry {
        let submitted = "2026-11-16T09:00:00Z".parse().unwrap();
        let mut entry = LedgerEntry::intent(rendered, "key".into(), submitted);
        entry.status = status;
        entry.tracking_id = Some(format!("job-{}", rendered.id));
        entry.updated_at = "2026-11-16T11:30:00Z".parse().unwrap();
        if status == JobStatus::Succeeded {
            entry.image_names = rendered.image_names.clone();
            entry.completed_at = Some(entry.updated_at);
        }
        if status.is_unsuccessful() {
            entry.message = Some("artifact exited with code 1603".into());
        }
        entry
    }

    fn ledger(catalog: &Catalog) -> Ledger {
        let mut ledger = Ledger::default();
        for (id, status) in [
            ("adopted", JobStatus::Succeeded),
            ("building", JobStatus::Running),
            ("built", JobStatus::Succeeded),
            ("failed", JobStatus::Failed),
        ] {
            let mut entry = recorded(rendered(catalog, id), status);
            if id == "adopted" {
                entry.adopted = true;
                entry.tracking_id = None;
            }
            ledger.definitions.insert(id.to_string(), entry);
        }
        // Built last week, with V=1: today's V=2 renders another payload.
        let mut changed = recorded(rendered(catalog, "changed"), JobStatus::Succeeded);
        changed.payload_hash = crate::definitions::PayloadHash::of(&serde_json::json!({}));
        changed.image_names = vec!["Image-changed_1".into()];
        ledger.definitions.insert("changed".into(), changed);
        ledger
    }

    fn names(found: &[&str]) -> OsobFinding {
        OsobFinding::Names(found.iter().map(|name| name.to_string()).collect())
    }

    #[test]
    fn each_definition_gets_its_state_image_time_and_tracking_id() {
        let catalog = catalog();
        let rows = rows(&catalog, &ledger(&catalog), None, &Selection::default());
        let summary: Vec<(&str, BuildState, Vec<String>, Option<&str>)> = rows
            .iter()
            .map(|row| {
                (
                    row.definition.as_str(),
                    row.state,
                    row.images.clone(),
                    row.tracking_id.as_deref(),
                )
            })
            .collect();
        let images = |name: &str| vec![name.to_string()];
        assert_eq!(
            summary,
            [
                (
                    "adopted",
                    BuildState::Adopted,
                    images("Image-adopted_2"),
                    None
                ),
                ("broken", BuildState::Invalid, Vec::new(), None),
                (
                    "building",
                    BuildState::Building,
                    images("Image-building_2"),
                    Some("job-building")
                ),
                (
                    "built",
                    BuildState::Built,
                    images("Image-built_2"),
                    Some("job-built")
                ),
                (
                    "changed",
                    BuildState::Changed,
                    images("Image-changed_1"),
                    Some("job-changed")
                ),
                (
                    "failed",
                    BuildState::Failed,
                    images("Image-failed_2"),
                    Some("job-failed")
                ),
                ("new", BuildState::NeverBuilt, Vec::new(), None),
            ]
        );
        let built = rows.iter().find(|row| row.definition == "built").unwrap();
        assert_eq!(
            built.built_at,
            Some("2026-11-16T11:30:00Z".parse().unwrap())
        );
        let failed = rows.iter().find(|row| row.definition == "failed").unwrap();
        assert_eq!(failed.built_at, None);
        assert_eq!(
            failed.message.as_deref(),
            Some("artifact exited with code 1603")
        );
        assert!(rows.iter().all(|row| row.osob == InOsob::NotRead));
        assert_eq!(exit_code(&rows), Exit::Error);
    }

    #[test]
    fn osob_names_the_built_image_an_older_one_or_none() {
        let catalog = catalog();
        let findings: BTreeMap<String, OsobFinding> = [
            ("built", names(&["Image-built_2"])),
            ("changed", names(&["Image-changed_1"])),
            ("adopted", names(&["Image-adopted_1"])),
            ("building", names(&["Image-building_1", "Image-building_2"])),
            (
                "failed",
                OsobFinding::Problem("a.yml: nothing matches".into()),
            ),
        ]
        .into_iter()
        .map(|(id, finding)| (id.to_string(), finding))
        .collect();
        let rows = rows(
            &catalog,
            &ledger(&catalog),
            Some(&findings),
            &Selection::default(),
        );
        let osob = |id: &str| {
            rows.iter()
                .find(|row| row.definition == id)
                .map(|row| row.osob.clone())
                .unwrap()
        };
        assert_eq!(osob("built"), InOsob::Named);
        assert_eq!(osob("changed"), InOsob::Named, "the image it built last");
        assert_eq!(
            osob("adopted"),
            InOsob::Other {
                names: vec!["Image-adopted_1".into()]
            }
        );
        assert_eq!(
            osob("building"),
            InOsob::Partly {
                others: vec!["Image-building_1".into()]
            },
            "one file names the new image, another still the old one"
        );
        assert_eq!(
            osob("failed"),
            InOsob::Missing {
                problem: "a.yml: nothing matches".into()
            }
        );
        assert_eq!(osob("new"), InOsob::NotMapped);
    }

    #[test]
    fn the_exit_code_is_0_only_when_every_image_is_built_and_named() {
        let catalog = catalog();
        let ledger = ledger(&catalog);
        let built_ones = Selection::new(&["built".into(), "adopted".into()], &[]).unwrap();
        let findings = |adopted: &[&str]| -> BTreeMap<String, OsobFinding> {
            [
                ("built".to_string(), names(&["Image-built_2"])),
                ("adopted".to_string(), names(adopted)),
            ]
            .into()
        };
        let all_named = findings(&["Image-adopted_2"]);
        let old_one = findings(&["Image-adopted_1"]);
        let code = |osob: Option<&BTreeMap<String, OsobFinding>>, selection: &Selection| {
            exit_code(&rows(&catalog, &ledger, osob, selection))
        };
        assert_eq!(code(Some(&all_named), &built_ones), Exit::Ok);
        assert_eq!(code(Some(&old_one), &built_ones), Exit::Pending);
        assert_eq!(code(None, &built_ones), Exit::Error, "OSOB not read");
        let building = Selection::new(&["built".into(), "building".into()], &[]).unwrap();
        assert_eq!(code(Some(&all_named), &building), Exit::Pending);
        let failed = Selection::new(&["built".into(), "failed".into()], &[]).unwrap();
        assert_eq!(code(Some(&all_named), &failed), Exit::Error);
        assert_eq!(
            counts(&rows(&catalog, &ledger, None, &Selection::default()))[&BuildState::Built],
            1
        );
    }

    #[test]
    fn a_finding_lists_each_name_the_templates_match_once_and_every_missing_match() {
        let known = BTreeMap::from([("V".to_string(), vec!["2".to_string()])]);
        let files = vec![
            (
                "a.yml".to_string(),
                Some("image: Image-x_1\nagain: Image-x_1\nother: Image-y_1\n".to_string()),
            ),
            ("b.yml".to_string(), Some("image: Image-x_0\n".to_string())),
        ];
        let templates = vec!["Image-x_{V}".to_string()];
        assert_eq!(
            finding("x", &templates, &known, &files, "main"),
            names(&["Image-x_1", "Image-x_0"])
        );
        let files = vec![
            ("a.yml".to_string(), Some("image: Image-y_1\n".to_string())),
            ("gone.yml".to_string(), None),
        ];
        assert_eq!(
            finding("x", &templates, &known, &files, "main"),
            OsobFinding::Problem(
                "a.yml: nothing matches \"Image-x_{V}\"; gone.yml is not on OSOB's main branch"
                    .into()
            )
        );
    }
}
