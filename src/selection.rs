//! Which definitions a run works on: `--only` and `--except` glob patterns over definition ids.

use globset::{Glob, GlobMatcher};

/// The definitions chosen by `--only` (any of them; all when none is given) minus those
/// matching any `--except`. In a pattern `*` also crosses `/`, so `vs2022*` chooses every
/// definition under `definitions/vs2022/`.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    only: Vec<Pattern>,
    except: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    text: String,
    matcher: GlobMatcher,
}

impl Pattern {
    fn new(flag: &str, text: &str) -> anyhow::Result<Self> {
        let glob = Glob::new(text).map_err(|error| {
            anyhow::anyhow!("{flag} {text:?} is not a glob pattern: {}", error.kind())
        })?;
        Ok(Self {
            text: text.to_string(),
            matcher: glob.compile_matcher(),
        })
    }
}

impl Selection {
    pub fn new(only: &[String], except: &[String]) -> anyhow::Result<Self> {
        Ok(Self {
            only: only
                .iter()
                .map(|text| Pattern::new("--only", text))
                .collect::<anyhow::Result<_>>()?,
            except: except
                .iter()
                .map(|text| Pattern::new("--except", text))
                .collect::<anyhow::Result<_>>()?,
        })
    }

    /// Everything is chosen.
    pub fn is_all(&self) -> bool {
        self.only.is_empty() && self.except.is_empty()
    }

    pub fn matches(&self, id: &str) -> bool {
        (self.only.is_empty() || self.only.iter().any(|p| p.matcher.is_match(id)))
            && !self.except.iter().any(|p| p.matcher.is_match(id))
    }

    /// Refuses `--only` patterns that choose none of `ids` (most likely a typo), and a
    /// selection that leaves nothing.
    pub fn check(&self, ids: &[String]) -> anyhow::Result<()> {
        for pattern in &self.only {
            if !ids.iter().any(|id| pattern.matcher.is_match(id)) {
                anyhow::bail!(
                    "--only {:?} matches no definition id (ids are paths under definitions/ \
                     without .json, like vs2022/server-2022-enterprise; `imagegen validate` \
                     lists how many there are)",
                    pattern.text
                );
            }
        }
        if !self.is_all() && !ids.iter().any(|id| self.matches(id)) {
            anyhow::bail!("--only and --except together leave no definition to work on");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selection(only: &[&str], except: &[&str]) -> Selection {
        let owned = |patterns: &[&str]| patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        Selection::new(&owned(only), &owned(except)).unwrap()
    }

    #[test]
    fn star_crosses_folders_and_except_wins() {
        let chosen = selection(&["vs2022*"], &["*preview*"]);
        assert!(chosen.matches("vs2022/server-2022-enterprise"));
        assert!(!chosen.matches("vs2022-preview/server-2022"));
        assert!(!chosen.matches("vs2019/server-2019"));
        assert!(selection(&[], &[]).matches("anything"));
    }

    #[test]
    fn a_pattern_matching_nothing_is_refused() {
        let ids = ["vs2022/a".to_string(), "vs2019/b".to_string()];
        let message = selection(&["vs2033*"], &[])
            .check(&ids)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("--only \"vs2033*\" matches no definition"),
            "{message}"
        );
        let message = selection(&[], &["*"]).check(&ids).unwrap_err().to_string();
        assert!(message.contains("leave no definition"), "{message}");
        let message = Selection::new(&["[".into()], &[]).unwrap_err().to_string();
        assert!(message.contains("is not a glob pattern"), "{message}");
    }
}
