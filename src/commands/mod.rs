//! The commands: each turns its request into loading, rendering or planning, and its results
//! into output and an exit code. Nothing here knows about argv.

pub mod adopt;
pub mod demo;
pub mod doctor;
pub mod factory_options;
pub mod ledger;
pub mod pr;
pub mod reconcile;
pub mod status;
pub mod submit;
pub mod vars;

pub use adopt::{AdoptRequest, adopt};
pub use reconcile::{ReconcileRequest, reconcile};

use std::path::{Path, PathBuf};

use anyhow::bail;
use serde_json::json;

use crate::catalog::{self, Catalog};
use crate::definitions::{DEFINITIONS_DIR, Definition, Rendered};
use crate::diagnostics::Diagnostics;
use crate::exit::Exit;
use crate::osob::mapping;
use crate::output::{Output, Table};
use crate::state::{DEFAULT_STATE_PATH, FileStore, MissingLedger, Store};
use crate::suggest::{closest, did_you_mean};
use crate::variables::{self, VARIABLES_FILE, Variables};

/// What every command needs to know: where the repository and the ledger are, how to write.
#[derive(Debug, Clone)]
pub struct Context {
    /// The folder holding `definitions/` and variables.json.
    pub repo: PathBuf,
    /// Where the ledger lives.
    pub store: Store,
    pub output: Output,
}

impl Context {
    /// `state` is a path or a blob URL; it defaults to `.imagegen/state.json` inside the
    /// repository. `missing` says what a ledger that does not exist is.
    pub fn new(
        repo: PathBuf,
        state: Option<String>,
        missing: MissingLedger,
        output: Output,
    ) -> anyhow::Result<Self> {
        let store = match state.filter(|state| !state.is_empty()) {
            Some(location) => Store::locate(&location, missing)?,
            None => Store::File(
                FileStore::new(if repo == Path::new(".") {
                    PathBuf::from(DEFAULT_STATE_PATH)
                } else {
                    repo.join(DEFAULT_STATE_PATH)
                })
                .with_missing(missing),
            ),
        };
        Ok(Self {
            repo,
            store,
            output,
        })
    }

    /// A context for the ledger file `state`.
    pub fn with_file(repo: PathBuf, state: PathBuf, output: Output) -> Self {
        Self {
            repo,
            store: Store::File(FileStore::new(state)),
            output,
        }
    }
}

/// The line that ends every text report made from the ledger: which ledger it read (a blob by
/// its URL without the SAS), so that a run against the wrong one shows it at once. It comes
/// last so that the report's own first line stays the one to read first.
pub(crate) fn ledger_line(context: &Context) -> String {
    format!("Ledger: {}\n", context.store.describe())
}

/// An error when any problem is one, done otherwise: the part the committed files play in a
/// command's outcome.
fn exit_for(diagnostics: &Diagnostics) -> Exit {
    if diagnostics.has_errors() {
        Exit::Error
    } else {
        Exit::Ok
    }
}

/// `imagegen validate`: loads and renders everything and reports every problem.
pub fn validate(context: &Context) -> anyhow::Result<Exit> {
    let catalog = Catalog::load(&context.repo);
    let mut diagnostics = catalog.diagnostics.clone();
    let (_, mapping_problems) = mapping::load(&context.repo, &catalog.ids());
    diagnostics.extend(mapping_problems);
    let names: Vec<String> = catalog.variables.names().map(str::to_string).collect();
    let (_, source_problems) = crate::sources::load(&context.repo, &names);
    diagnostics.extend(source_problems);
    diagnostics.sort();
    let diagnostics = &diagnostics;
    let output = &context.output;
    // In JSON output this prints nothing, or the platform's annotations on stderr.
    output.diagnostics(diagnostics)?;
    if output.is_json() {
        output.json(&json!({
            "ok": !diagnostics.has_errors(),
            "definitions": catalog.definitions.len() + count_unparsed(&catalog),
            "rendered": catalog.rendered.len(),
            "variables": catalog.variables.len(),
            "errors": diagnostics.error_count(),
            "warnings": diagnostics.warning_count(),
            "diagnostics": diagnostics,
        }))?;
    } else {
        let definitions = catalog.definitions.len() + count_unparsed(&catalog);
        let summary = if diagnostics.has_errors() {
            format!(
                "{} and {} in {definitions} definitions and {VARIABLES_FILE}\n",
                count(diagnostics.error_count(), "error"),
                count(diagnostics.warning_count(), "warning"),
            )
        } else {
            format!(
                "ok: {definitions} definitions rendered with {} variables{}\n",
                catalog.variables.len(),
                match diagnostics.warning_count() {
                    0 => String::new(),
                    warnings => format!(" ({})", count(warnings, "warning")),
                }
            )
        };
        output.text(&summary)?;
    }
    Ok(exit_for(diagnostics))
}

fn count_unparsed(catalog: &Catalog) -> usize {
    catalog
        .invalid
        .iter()
        .filter(|id| catalog.definition(id).is_none())
        .count()
}

fn count(count: usize, noun: &str) -> String {
    format!("{count} {noun}{}", if count == 1 { "" } else { "s" })
}

/// `imagegen render <definition-id-or-path>`: prints one rendered payload.
pub fn render(context: &Context, target: &str) -> anyhow::Result<Exit> {
    let target = resolve_render_target(&context.repo, target)?;
    let (rendered, diagnostics) = render_target(&context.repo, &target);
    let output = &context.output;
    output.diagnostics(&diagnostics)?;
    match (&rendered, output.is_json()) {
        (Some(rendered), true) => output.json(&json!({
            "definition": rendered.id,
            "file": rendered.file,
            "payload_hash": rendered.hash,
            "image_names": rendered.image_names,
            "variables": rendered.variables,
            "payload": rendered.payload.to_value(),
            "diagnostics": diagnostics,
        }))?,
        (None, true) => output.json(&json!({ "diagnostics": diagnostics }))?,
        (Some(rendered), false) => {
            let mut text = serde_json::to_string_pretty(&rendered.payload.to_value())?;
            text.push('\n');
            output.text(&text)?;
        }
        (None, false) => {}
    }
    Ok(exit_for(&diagnostics))
}

/// Reads and renders one target with variables.json; every problem found is returned.
fn render_target(repo: &Path, target: &RenderTarget) -> (Option<Rendered>, Diagnostics) {
    let mut diagnostics = Diagnostics::default();
    let text = match catalog::read_text(&target.path, &target.file) {
        Ok(text) => text,
        Err(problem) => {
            diagnostics.push(*problem);
            String::new()
        }
    };
    let (parsed, problems) = if diagnostics.has_errors() {
        (None, Vec::new())
    } else {
        Definition::parse(&target.id, &target.file, &text)
    };
    // A payload file of one's own without placeholders goes as is: it needs no variables.json.
    let needs_variables = target.is_definition
        || parsed
            .as_ref()
            .is_none_or(|(definition, _)| !definition.placeholders.is_empty());
    let variables = if needs_variables {
        read_variables(repo, &mut diagnostics)
    } else {
        Variables::default()
    };
    diagnostics.extend(problems);
    let rendered = match parsed {
        Some((definition, template)) => match definition.render(template, &variables) {
            Ok(rendered) if !diagnostics.has_errors() => Some(rendered),
            Ok(_) => None,
            Err(errors) => {
                diagnostics.extend(errors);
                None
            }
        },
        None => None,
    };
    diagnostics.sort();
    (rendered, diagnostics)
}

/// Parses variables.json into `diagnostics`; what parsed is returned either way.
fn read_variables(repo: &Path, diagnostics: &mut Diagnostics) -> Variables {
    match catalog::read_variables_text(repo) {
        Ok(text) => {
            let (variables, problems) = Variables::parse(VARIABLES_FILE, &text);
            diagnostics.extend(problems);
            variables
        }
        Err(problem) => {
            diagnostics.push(*problem);
            Variables::default()
        }
    }
}

struct RenderTarget {
    id: String,
    file: String,
    path: PathBuf,
    /// Found under `definitions/`: the id is a definition id, not a file name.
    is_definition: bool,
}

/// A definition id (`vs2019-preview/server-2019`), a path to a definition, or a path to any
/// payload file.
fn resolve_render_target(repo: &Path, target: &str) -> anyhow::Result<RenderTarget> {
    // A path is taken as given, or else inside the repository (`--repo` from elsewhere).
    let in_repo = repo.join(target);
    let as_path = [Path::new(target), in_repo.as_path()]
        .into_iter()
        .find(|path| path.is_file());
    if let Some(as_path) = as_path {
        let definitions_root = repo.join(DEFINITIONS_DIR);
        let inside = match (as_path.canonicalize(), definitions_root.canonicalize()) {
            (Ok(path), Ok(root)) => path
                .strip_prefix(&root)
                .ok()
                .and_then(catalog::definition_id),
            _ => None,
        };
        return Ok(match inside {
            Some(id) => RenderTarget {
                file: format!("{DEFINITIONS_DIR}/{id}.json"),
                id,
                path: as_path.to_path_buf(),
                is_definition: true,
            },
            None => RenderTarget {
                id: target.to_string(),
                file: target.to_string(),
                path: as_path.to_path_buf(),
                is_definition: false,
            },
        });
    }
    let id = target.strip_suffix(".json").unwrap_or(target);
    let path = repo.join(DEFINITIONS_DIR).join(format!("{id}.json"));
    if path.is_file() {
        return Ok(RenderTarget {
            id: id.to_string(),
            file: format!("{DEFINITIONS_DIR}/{id}.json"),
            path,
            is_definition: true,
        });
    }
    let suggestions = closest(id, catalog::definition_ids(repo));
    bail!(
        "no definition {id:?}: expected definitions/{id}.json, or a path to a payload file{}",
        did_you_mean(&suggestions)
    )
}

/// Refuses names that are not variable names, or that neither variables.json nor any
/// definition knows (with the closest known names).
fn check_variable_names(catalog: &Catalog, names: &[String]) -> anyhow::Result<()> {
    for name in names {
        if !variables::is_valid_name(name) {
            return Err(variables::VarsError::InvalidName { name: name.clone() }.into());
        }
    }
    let known = |name: &String| {
        catalog.variables.contains(name)
            || catalog
                .definitions
                .iter()
                .any(|definition| definition.variable_names().contains(name.as_str()))
    };
    if let Some(unknown) = names.iter().find(|name| !known(name)) {
        let suggestions = closest(unknown, catalog.variables.names().map(str::to_string));
        bail!(
            "no variable {unknown} in {VARIABLES_FILE}, and no definition uses it{}",
            did_you_mean(&suggestions)
        );
    }
    Ok(())
}

/// `imagegen affected <VAR>...`: the definitions that use any of the variables.
pub fn affected(context: &Context, names: &[String]) -> anyhow::Result<Exit> {
    let catalog = Catalog::load(&context.repo);
    check_variable_names(&catalog, names)?;
    let affected = catalog.affected_by(names);
    let output = &context.output;
    // A definition that does not parse might use the variables too: say so, and fail.
    let errors = errors_of(&catalog);
    output.diagnostics(&errors)?;
    if output.is_json() {
        output.json(&json!({
            "variables": names,
            "definitions": affected_json(&affected),
            "diagnostics": errors,
        }))?;
    } else {
        output.text(&affected_text(&affected))?;
        output.note(&match affected.len() {
            0 => format!("no definition uses {}", names.join(" or ")),
            n => format!("{} use {}", count(n, "definition"), names.join(" or ")),
        })?;
    }
    Ok(exit_for(&errors))
}

/// The catalog's errors alone: its warnings (such as an unused variable) are left to
/// `validate`.
fn errors_of(catalog: &Catalog) -> Diagnostics {
    let mut errors = Diagnostics::default();
    errors.extend(catalog.diagnostics.iter().filter(|d| d.is_error()).cloned());
    errors
}

/// [`Catalog::affected_by`]'s definitions as `imagegen affected` prints them: one a line, the
/// id padded, then the variables it uses.
fn affected_text(affected: &[(&Definition, Vec<String>)]) -> String {
    let mut table = Table::default();
    for (definition, used) in affected {
        table.row(&[definition.id.as_str(), &used.join(", ")]);
    }
    table.render()
}

/// The same in `imagegen affected --output json`'s shape.
fn affected_json(affected: &[(&Definition, Vec<String>)]) -> Vec<serde_json::Value> {
    affected
        .iter()
        .map(|(definition, used)| {
            json!({ "definition": definition.id, "file": definition.file, "variables": used })
        })
        .collect()
}
