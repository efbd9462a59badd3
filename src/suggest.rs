//! "Did you mean ...?": the known names closest to a mistyped one, for every error that refuses
//! a name (a definition id, a variable).

/// Up to three candidates that look like `wanted`, best first: those containing it if any,
/// else those spelled alike.
pub fn closest(wanted: &str, candidates: impl IntoIterator<Item = String>) -> Vec<String> {
    let wanted_lower = wanted.to_lowercase();
    let candidates: Vec<String> = candidates.into_iter().collect();
    let containing: Vec<String> = candidates
        .iter()
        .filter(|candidate| candidate.to_lowercase().contains(&wanted_lower))
        .take(3)
        .cloned()
        .collect();
    if !containing.is_empty() {
        return containing;
    }
    let mut scored: Vec<(f64, String)> = candidates
        .into_iter()
        .map(|candidate| {
            (
                strsim::jaro_winkler(&wanted_lower, &candidate.to_lowercase()),
                candidate,
            )
        })
        .filter(|(score, _)| *score >= 0.85)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    scored.into_iter().take(3).map(|(_, name)| name).collect()
}

/// `; did you mean A or B?`, or nothing when there is no suggestion.
pub fn did_you_mean(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", suggestions.join(" or "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_prefers_contained_names() {
        let candidates = ["vs2019/server-2019", "vs2022/server-2022", "other/x"].map(String::from);
        assert_eq!(
            closest("server-2019", candidates.clone()),
            ["vs2019/server-2019"]
        );
        assert!(closest("zzzz", candidates).is_empty());
    }

    #[test]
    fn closest_finds_typos() {
        let candidates = ["VS_2019_PREVIEW_VERSION", "VS_2022_VERSION"].map(String::from);
        assert_eq!(
            closest("VS_2019_PREVEIW_VERSION", candidates)[0],
            "VS_2019_PREVIEW_VERSION"
        );
    }
}
