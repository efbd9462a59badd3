//! The committed repository as one loaded whole: reading `definitions/` and variables.json from
//! disk ([`read_sources`]), then parsing and rendering them together ([`Catalog::build`], pure),
//! with every problem of every file collected in one pass.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::definitions::{DEFINITIONS_DIR, Definition, Rendered};
use crate::diagnostics::{Code, Diagnostic, Diagnostics};
use crate::variables::{VARIABLES_FILE, Variables};

/// One definition file's text, read from disk.
#[derive(Debug, Clone)]
pub struct DefinitionSource {
    pub id: String,
    /// Relative to the repository root, `/`-separated.
    pub file: String,
    pub text: String,
}

/// The texts of the committed files, and the problems met while reading them.
#[derive(Debug, Default)]
pub struct Sources {
    /// None when variables.json could not be read (a diagnostic says why).
    pub variables: Option<String>,
    pub definitions: Vec<DefinitionSource>,
    pub problems: Vec<Diagnostic>,
}

/// Reads variables.json and every `*.json` below `definitions/`, in id order.
/// Hidden files and folders (starting with `.`) and other extensions are skipped.
pub fn read_sources(root: &Path) -> Sources {
    let mut sources = Sources::default();
    match read_variables_text(root) {
        Ok(text) => sources.variables = Some(text),
        Err(problem) => sources.problems.push(*problem),
    }
    let definitions_root = root.join(DEFINITIONS_DIR);
    let (files, problems) = definition_files(root);
    sources.problems.extend(problems);
    let read = parallel_map(&files, |path| read_definition(&definitions_root, path));
    for result in read {
        match result {
            Ok(source) => sources.definitions.push(source),
            Err(problem) => sources.problems.push(*problem),
        }
    }
    // By id, not by path: `a/b.json` sorts after `a/b-core.json`, but `a/b` before `a/b-core`.
    sources.definitions.sort_by(|a, b| a.id.cmp(&b.id));
    sources
}

/// Reads variables.json, or says why it cannot.
pub fn read_variables_text(root: &Path) -> Result<String, Box<Diagnostic>> {
    let path = root.join(VARIABLES_FILE);
    read_text(&path, VARIABLES_FILE).map_err(|mut problem| {
        if problem.code == Code::Io {
            problem.message = format!(
                "{}; run imagegen from the repository root or pass --repo",
                problem.message
            );
        }
        problem
    })
}

/// Reads a file that must be UTF-8 text. When it is not, the problem says why in terms an
/// editor can act on: saved as UTF-16, or the line and column of the first byte that is not
/// UTF-8. `file` names it in the problem.
pub fn read_text(path: &Path, file: &str) -> Result<String, Box<Diagnostic>> {
    let problem = |code, message: String| Box::new(Diagnostic::error(code, message).in_file(file));
    let bytes = std::fs::read(path)
        .map_err(|error| problem(Code::Io, format!("cannot read {}: {error}", path.display())))?;
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(problem(
            Code::NotUtf8,
            "the file is saved as UTF-16; save it as UTF-8".to_string(),
        ));
    }
    String::from_utf8(bytes).map_err(|error| {
        let valid = error.utf8_error().valid_up_to();
        let bytes = error.as_bytes();
        let before = std::str::from_utf8(&bytes[..valid]).expect("valid up to here");
        let (line, column) = crate::json::line_column(before, valid);
        let diagnostic = Diagnostic::error(
            Code::NotUtf8,
            format!(
                "byte 0x{:02X} is not UTF-8 (the file may be saved as Windows-1252 or Latin-1); \
                 save it as UTF-8",
                bytes[valid]
            ),
        )
        .in_file(file)
        .at(line, column);
        Box::new(diagnostic)
    })
}

/// The paths of every definition file below `definitions/`, sorted.
pub fn definition_files(root: &Path) -> (Vec<PathBuf>, Vec<Diagnostic>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let definitions_root = root.join(DEFINITIONS_DIR);
    let mut walk = Walk {
        definitions_root: &definitions_root,
        repository: root.canonicalize().ok(),
        ancestors: Vec::new(),
        files: &mut files,
        problems: &mut problems,
    };
    walk.folder(&definitions_root);
    files.sort();
    (files, problems)
}

/// Every definition id below `definitions/`, sorted.
pub fn definition_ids(root: &Path) -> Vec<String> {
    let definitions_root = root.join(DEFINITIONS_DIR);
    let mut ids: Vec<String> = definition_files(root)
        .0
        .iter()
        .filter_map(|path| definition_id(path.strip_prefix(&definitions_root).ok()?))
        .collect();
    ids.sort();
    ids
}

/// One walk through `definitions/`, collecting the `*.json` files and the problems met.
struct Walk<'a> {
    definitions_root: &'a Path,
    /// The repository's real path: a symbolic link may point anywhere inside it, and nowhere
    /// else, since the pipeline builds what the repository holds and nothing more.
    repository: Option<PathBuf>,
    /// The real paths of the folders being walked, from `definitions/` down: a link to one of
    /// them is a loop.
    ancestors: Vec<PathBuf>,
    files: &'a mut Vec<PathBuf>,
    problems: &'a mut Vec<Diagnostic>,
}

impl Walk<'_> {
    /// `definitions/...` for `path`, as problems name it.
    fn shown(&self, path: &Path) -> String {
        let relative = path.strip_prefix(self.definitions_root).unwrap_or(path);
        match slash_path(relative) {
            relative if relative.is_empty() => DEFINITIONS_DIR.to_string(),
            relative => format!("{DEFINITIONS_DIR}/{relative}"),
        }
    }

    /// Collects the `*.json` files below `folder`, and warns of any other file but notes
    /// (`*.md`): a definition saved as `server.jsn` or `server.json.txt` would otherwise never
    /// be built.
    fn folder(&mut self, folder: &Path) {
        let entries = match std::fs::read_dir(folder) {
            Ok(entries) => entries,
            Err(error) => {
                self.problems.push(Diagnostic::error(
                    Code::Io,
                    format!(
                        "cannot read the definitions folder {}: {error}",
                        folder.display()
                    ),
                ));
                return;
            }
        };
        let real = folder
            .canonicalize()
            .unwrap_or_else(|_| folder.to_path_buf());
        self.ancestors.push(real);
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    self.problems.push(Diagnostic::error(
                        Code::Io,
                        format!("cannot list {}: {error}", folder.display()),
                    ));
                    continue;
                }
            };
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            // The entry's own type needs no extra system call; only a link is followed to see
            // what it points at.
            let is_dir = match entry.file_type() {
                Ok(kind) if kind.is_symlink() => match self.follow(&path) {
                    Some(is_dir) => is_dir,
                    None => continue,
                },
                Ok(kind) => kind.is_dir(),
                Err(_) => path.is_dir(),
            };
            let extension = path.extension().and_then(|extension| extension.to_str());
            if is_dir {
                self.folder(&path);
            } else if extension == Some("json") {
                self.files.push(path);
            } else if extension != Some("md") {
                self.problems.push(
                    Diagnostic::warning(
                        Code::IgnoredFile,
                        "only *.json files are definitions, so this file is ignored; rename it \
                         if it is one",
                    )
                    .in_file(self.shown(&path)),
                );
            }
        }
        self.ancestors.pop();
    }

    /// Where the symbolic link `path` leads: `Some(true)` for a folder inside the repository
    /// that is not one being walked, `Some(false)` for anything else inside it; `None`, with
    /// a problem naming the link and its target, for a link that leads outside the repository,
    /// nowhere, or round in a loop.
    fn follow(&mut self, path: &Path) -> Option<bool> {
        let target = std::fs::read_link(path)
            .map(|target| target.display().to_string())
            .unwrap_or_else(|_| "?".to_string());
        let shown = self.shown(path);
        let refuse = |message: String| {
            let mut problem = Diagnostic::error(Code::Symlink, message).in_file(&shown);
            // A refused definition is reported as not planned, not taken for one removed.
            if let Some(id) = path
                .strip_prefix(self.definitions_root)
                .ok()
                .filter(|_| path.extension().is_some_and(|ext| ext == "json"))
                .and_then(definition_id)
            {
                problem = problem.for_definition(id);
            }
            problem
        };
        let real = match path.canonicalize() {
            Ok(real) => real,
            Err(error) => {
                self.problems.push(refuse(format!(
                    "a symbolic link to {target} that cannot be followed ({error}); fix or \
                     remove the link"
                )));
                return None;
            }
        };
        if let Some(repository) = &self.repository
            && !real.starts_with(repository)
        {
            self.problems.push(refuse(format!(
                "a symbolic link to {target} ({}), outside the repository: refused, since the \
                 pipeline builds only what the repository holds; copy the file in instead",
                real.display()
            )));
            return None;
        }
        let is_dir = real.is_dir();
        if is_dir && self.ancestors.contains(&real) {
            self.problems.push(refuse(format!(
                "a symbolic link to {target}, a folder that holds the link itself: a loop, so \
                 it is not followed; remove the link"
            )));
            return None;
        }
        Some(is_dir)
    }
}

/// Reads one definition file below `definitions_root`.
pub fn read_definition(
    definitions_root: &Path,
    path: &Path,
) -> Result<DefinitionSource, Box<Diagnostic>> {
    let relative = path
        .strip_prefix(definitions_root)
        .expect("definition files are found below the definitions folder");
    let file = format!("{DEFINITIONS_DIR}/{}", slash_path(relative));
    let id = definition_id(relative).ok_or_else(|| {
        let diagnostic = Diagnostic::error(
            Code::Io,
            "the file name is not valid UTF-8; rename it".to_string(),
        )
        .in_file(&file);
        Box::new(diagnostic)
    })?;
    let text = read_text(path, &file).map_err(|problem| Box::new(problem.for_definition(&id)))?;
    Ok(DefinitionSource { id, file, text })
}

fn slash_path(path: &Path) -> String {
    path.components()
        .map(|component| component.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// A definition's id: its path under `definitions/`, without `.json`, `/`-separated.
pub fn definition_id(relative: &Path) -> Option<String> {
    let without_extension = relative.with_extension("");
    let mut parts = Vec::new();
    for component in without_extension.components() {
        parts.push(component.as_os_str().to_str()?);
    }
    Some(parts.join("/"))
}

/// Runs `work` over `items` on every available core, keeping the input order.
pub fn parallel_map<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    // Below a few hundred items, starting threads costs more than it saves.
    if threads == 1 || items.len() < 256 {
        return items.iter().map(work).collect();
    }
    let chunk_size = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = items
            .chunks(chunk_size)
            .map(|chunk| scope.spawn(move || chunk.iter().map(work).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("a worker thread panicked"))
            .collect()
    })
}

/// Everything committed, parsed and rendered, with every problem found.
#[derive(Debug, Default)]
pub struct Catalog {
    pub variables: Variables,
    /// Every definition that parsed, in id order.
    pub definitions: Vec<Definition>,
    /// Every definition that rendered without error, in id order.
    pub rendered: Vec<Rendered>,
    /// Ids of definitions that could not be parsed or rendered.
    pub invalid: BTreeSet<String>,
    /// True when variables.json itself has errors: then no definition can be trusted.
    pub variables_invalid: bool,
    pub diagnostics: Diagnostics,
}

impl Catalog {
    /// Reads and builds the repository at `root`.
    pub fn load(root: &Path) -> Self {
        Self::build(read_sources(root))
    }

    /// Parses and renders what [`read_sources`] read. Pure.
    pub fn build(sources: Sources) -> Self {
        let mut catalog = Self::default();
        let mut diagnostics = Diagnostics::default();
        // Without a parsed variables.json every placeholder would be reported as undefined,
        // burying the one error that matters: then definitions are only checked on their own.
        let mut variables_parsed = false;
        catalog.invalid.extend(
            sources
                .problems
                .iter()
                .filter_map(|problem| problem.definition.clone()),
        );
        diagnostics.extend(sources.problems);
        if let Some(text) = &sources.variables {
            let (variables, problems) = Variables::parse(VARIABLES_FILE, text);
            variables_parsed = !problems
                .iter()
                .any(|problem| matches!(problem.code, Code::JsonSyntax | Code::WrongShape));
            catalog.variables_invalid = !problems.is_empty();
            catalog.variables = variables;
            diagnostics.extend(problems);
        } else {
            catalog.variables_invalid = true;
        }

        let variables = &catalog.variables;
        let results = parallel_map(&sources.definitions, |source| {
            let (parsed, mut problems) = Definition::parse(&source.id, &source.file, &source.text);
            let Some((definition, template)) = parsed else {
                return (None, None, problems);
            };
            let rendered = if variables_parsed {
                definition
                    .render(template, variables)
                    .map_err(|errors| problems.extend(errors))
                    .ok()
            } else {
                None
            };
            (Some(definition), rendered, problems)
        });
        let mut all_parsed = true;
        for (source, (definition, rendered, problems)) in sources.definitions.iter().zip(results) {
            all_parsed &= definition.is_some();
            if definition.is_none() || rendered.is_none() {
                catalog.invalid.insert(source.id.clone());
            }
            catalog.definitions.extend(definition);
            catalog.rendered.extend(rendered);
            diagnostics.extend(problems);
        }

        diagnostics.extend(catalog.duplicate_image_names());
        if variables_parsed && all_parsed {
            diagnostics.extend(catalog.unused_variables());
        }
        if sources.definitions.is_empty() && catalog.invalid.is_empty() {
            diagnostics.push(
                Diagnostic::warning(
                    Code::NoDefinitions,
                    "no definitions found: add image definitions as *.json files here",
                )
                .in_file(DEFINITIONS_DIR),
            );
        }
        diagnostics.sort();
        catalog.diagnostics = diagnostics;
        catalog
    }

    /// Two definitions producing one image name would overwrite each other's image: both are
    /// errors, and neither is planned.
    fn duplicate_image_names(&mut self) -> Vec<Diagnostic> {
        let mut producers: BTreeMap<&str, Vec<(usize, &Rendered)>> = BTreeMap::new();
        for rendered in &self.rendered {
            for (index, name) in rendered.image_names.iter().enumerate() {
                producers.entry(name).or_default().push((index, rendered));
            }
        }
        let mut problems = Vec::new();
        let mut clashing = BTreeSet::new();
        for (name, producers) in producers
            .iter()
            .filter(|(_, producers)| producers.len() > 1)
        {
            for (index, rendered) in producers {
                let others: Vec<&str> = producers
                    .iter()
                    .filter(|(other_index, other)| other.id != rendered.id || other_index != index)
                    .map(|(_, other)| other.id.as_str())
                    .collect();
                problems.push(
                    Diagnostic::error(
                        Code::DuplicateImageName,
                        format!(
                            "image name {} is also produced by {}; every image needs a name \
                             of its own",
                            crate::output::quoted(name),
                            others.join(", ")
                        ),
                    )
                    .in_file(&rendered.file)
                    .for_definition(&rendered.id)
                    .at_pointer(format!("/Destination/{index}/CustomImageName")),
                );
                clashing.insert(rendered.id.clone());
            }
        }
        self.rendered
            .retain(|rendered| !clashing.contains(&rendered.id));
        self.invalid.extend(clashing);
        problems
    }

    fn unused_variables(&self) -> Vec<Diagnostic> {
        let used: BTreeSet<&str> = self
            .definitions
            .iter()
            .flat_map(Definition::variable_names)
            .collect();
        self.variables
            .names()
            .filter(|name| !used.contains(name))
            .map(|name| {
                let line = self.variables.line_of(name).unwrap_or(1);
                Diagnostic::warning(
                    Code::UnusedVariable,
                    format!(
                        "variable {} is not used by any definition",
                        crate::output::shown(name)
                    ),
                )
                .in_file(VARIABLES_FILE)
                .at(line, 3)
            })
            .collect()
    }

    /// True when nothing may be planned: variables.json is broken, so every rendering is suspect.
    /// Every definition id found, parsed or not, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: BTreeSet<String> = self.invalid.clone();
        ids.extend(
            self.definitions
                .iter()
                .map(|definition| definition.id.clone()),
        );
        ids.into_iter().collect()
    }

    pub fn blocks_planning(&self) -> bool {
        self.variables_invalid
    }

    pub fn definition(&self, id: &str) -> Option<&Definition> {
        self.definitions
            .iter()
            .find(|definition| definition.id == id)
    }

    /// The definitions that use any of `names`, each with the ones it uses, in id order.
    pub fn affected_by<'a>(&'a self, names: &[String]) -> Vec<(&'a Definition, Vec<String>)> {
        self.definitions
            .iter()
            .filter_map(|definition| {
                let used = definition.variable_names();
                let matching: Vec<String> = names
                    .iter()
                    .filter(|name| used.contains(name.as_str()))
                    .cloned()
                    .collect();
                (!matching.is_empty()).then_some((definition, matching))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VARIABLES: &str = r#"{"VERSION": "1_0", "URL": "https://x.test", "SPARE": "s"}"#;

    fn source(id: &str, text: &str) -> DefinitionSource {
        DefinitionSource {
            id: id.to_string(),
            file: format!("definitions/{id}.json"),
            text: text.to_string(),
        }
    }

    fn image(name: &str) -> String {
        format!(r#"{{"Url": "{{URL}}", "Destination": [{{"CustomImageName": "{name}"}}]}}"#)
    }

    fn build(definitions: Vec<DefinitionSource>) -> Catalog {
        Catalog::build(Sources {
            variables: Some(VARIABLES.to_string()),
            definitions,
            problems: Vec::new(),
        })
    }

    fn messages(catalog: &Catalog) -> Vec<String> {
        catalog
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn every_problem_in_every_file_is_reported_together() {
        let catalog = build(vec![
            source("a", &image("A-{VERSION}")),
            source("b", "{ broken"),
            source("c", &image("C-{NOPE}")),
            source("d", "[]"),
        ]);
        assert_eq!(
            messages(&catalog),
            [
                "definitions/b.json:1:3: key must be a string",
                "definitions/c.json at /Destination/0/CustomImageName: {NOPE} names no variable \
                 in variables.json",
                "definitions/d.json: a definition must be a JSON object (the Image Factory \
                 payload), not an array",
            ]
        );
        assert_eq!(catalog.rendered.len(), 1);
        assert_eq!(catalog.invalid.iter().collect::<Vec<_>>(), ["b", "c", "d"]);
    }

    #[test]
    fn unused_variables_are_warnings() {
        let catalog = build(vec![source("a", &image("A-{VERSION}"))]);
        assert_eq!(
            messages(&catalog),
            ["variables.json:1:3: variable SPARE is not used by any definition"]
        );
        assert!(!catalog.diagnostics.has_errors());
    }

    #[test]
    fn duplicate_image_names_fail_both_definitions() {
        let catalog = build(vec![
            source("a", &image("Same-{VERSION}")),
            source("b", &image("Same-1_0")),
            source("c", &image("Other")),
        ]);
        let errors: Vec<_> = messages(&catalog)
            .into_iter()
            .filter(|message| message.contains("also produced"))
            .collect();
        assert_eq!(
            errors,
            [
                "definitions/a.json at /Destination/0/CustomImageName: image name \"Same-1_0\" \
                 is also produced by b; every image needs a name of its own",
                "definitions/b.json at /Destination/0/CustomImageName: image name \"Same-1_0\" \
                 is also produced by a; every image needs a name of its own",
            ]
        );
        assert_eq!(catalog.rendered.len(), 1);
    }

    #[test]
    fn an_empty_definitions_folder_is_a_warning() {
        let catalog = build(Vec::new());
        assert!(!catalog.diagnostics.has_errors());
        assert!(
            messages(&catalog).contains(
                &"definitions: no definitions found: add image definitions as *.json files here"
                    .to_string()
            )
        );
    }

    #[test]
    fn broken_variables_block_planning() {
        let catalog = Catalog::build(Sources {
            variables: Some(r#"{"A": 1}"#.to_string()),
            definitions: Vec::new(),
            problems: Vec::new(),
        });
        assert!(catalog.blocks_planning());
    }

    #[test]
    fn affected_lists_definitions_using_any_variable() {
        let catalog = build(vec![
            source("a", &image("A-{VERSION}")),
            source("b", &image("B")),
        ]);
        let affected = catalog.affected_by(&["VERSION".to_string(), "SPARE".to_string()]);
        assert_eq!(affected.len(), 1);
        assert_eq!(affected[0].0.id, "a");
        assert_eq!(affected[0].1, ["VERSION"]);
        assert_eq!(catalog.affected_by(&["URL".to_string()]).len(), 2);
    }

    #[test]
    fn ids_use_slashes_and_drop_the_extension() {
        let id = definition_id(Path::new("vs2019").join("server.json").as_path());
        assert_eq!(id.as_deref(), Some("vs2019/server"));
    }

    #[test]
    fn parallel_map_keeps_order() {
        let items: Vec<usize> = (0..1000).collect();
        assert_eq!(
            parallel_map(&items, |item| item * 2),
            items.iter().map(|i| i * 2).collect::<Vec<_>>()
        );
    }
}
