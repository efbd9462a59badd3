//! What new values in variables.json lead to, as `vars set` and `vars update` both show it: the
//! catalog built before and after, the definitions the new values break, those they rebuild,
//! and each rebuilt image's name before and after. Pure.

use serde::Serialize;

use crate::catalog::{Catalog, Sources};
use crate::definitions::Definition;
use crate::variables::SetOutcome;

/// The catalog with the old values and with the new, and what changed between them.
pub(crate) struct Consequences {
    /// The catalog with the old values; `None` when no value changes.
    pub before: Option<Catalog>,
    pub after: Catalog,
    /// Definitions that render with the old values and not with the new: then nothing may be
    /// written.
    pub broken: Vec<String>,
    /// The variables whose value changes.
    pub changed: Vec<String>,
}

/// One rebuilt definition's image names, before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Renamed {
    pub definition: String,
    pub old: Vec<String>,
    pub new: Vec<String>,
    /// The new payload keeps every image name: reconcile refuses it unless a person allows it
    /// (`--allow-same-name`), since OSOB would not notice the new image.
    pub same_name: bool,
}

impl Consequences {
    /// Builds the catalog with `text` (variables.json as it is) and with `outcome.text`.
    pub fn of(sources: &Sources, text: &str, outcome: &SetOutcome) -> Self {
        let with = |variables: &str| Sources {
            variables: Some(variables.to_string()),
            definitions: sources.definitions.clone(),
            problems: sources.problems.clone(),
        };
        // Building the catalog twice tells the definitions the new values break from the ones
        // that were broken already: only the first kind blocks the write.
        let (before, after) = if outcome.is_changed() {
            (
                Some(Catalog::build(with(text))),
                Catalog::build(with(&outcome.text)),
            )
        } else {
            (None, Catalog::build(with(text)))
        };
        let broken = match &before {
            Some(before) => after.invalid.difference(&before.invalid).cloned().collect(),
            None => Vec::new(),
        };
        Self {
            before,
            after,
            broken,
            changed: outcome.changed_names(),
        }
    }

    /// The definitions using any of `names`, with the ones each uses.
    pub fn affected_by(&self, names: &[String]) -> Vec<(&Definition, Vec<String>)> {
        self.after.affected_by(names)
    }

    /// The image names of every definition the change rebuilds, before and after.
    pub fn renamed(&self) -> Vec<Renamed> {
        let Some(before) = &self.before else {
            return Vec::new();
        };
        let names_in = |catalog: &Catalog, id: &str| {
            catalog
                .rendered
                .iter()
                .find(|rendered| rendered.id == id)
                .map(|rendered| rendered.image_names.clone())
                .unwrap_or_default()
        };
        self.after
            .affected_by(&self.changed)
            .into_iter()
            .map(|(definition, _)| {
                let old = names_in(before, &definition.id);
                let new = names_in(&self.after, &definition.id);
                Renamed {
                    definition: definition.id.clone(),
                    same_name: !new.is_empty() && old == new,
                    old,
                    new,
                }
            })
            .collect()
    }
}
