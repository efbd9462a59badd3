//! The pull request `vars update --pr` opens on this repository: its title names the new
//! values, its description has a table of variables old -> new with a link to each release's
//! notes, the images that will rebuild, those whose names would not change, and the newer
//! versions the rules hold back. Rendered purely from the update, and cut to fit a provider.

use std::fmt::Write as _;

/// One variable's new value, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Bump {
    pub variable: String,
    pub old: String,
    pub new: String,
    /// The version as the source publishes it.
    pub version: String,
    /// The source, as messages name it.
    pub source: String,
    pub notes: Option<String>,
}

/// A rebuilt definition's image names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rebuild {
    pub definition: String,
    pub old: Vec<String>,
    pub new: Vec<String>,
}

/// Everything the pull request tells.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UpdateContent {
    pub bumps: Vec<Bump>,
    /// Definitions rebuilt under new image names.
    pub rebuilds: Vec<Rebuild>,
    /// Definitions rebuilt under the image names they have now.
    pub same_names: Vec<Rebuild>,
    /// `variable: version: why`, for versions the rules hold back.
    pub held_back: Vec<String>,
}

/// `Update VS_2022_VERSION to 17_12_3 and WINDOWS_SERVER_2022_BUILD to 20348.2966.250109`.
pub fn title(content: &UpdateContent) -> String {
    let parts: Vec<String> = content
        .bumps
        .iter()
        .map(|bump| format!("{} to {}", bump.variable, bump.new))
        .collect();
    let joined = match parts.as_slice() {
        [] => "nothing".to_string(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    };
    let title = format!("Update {joined}");
    // Titles are short on every provider; the description holds the whole list.
    if title.chars().count() > 200 {
        format!("Update {} variables", content.bumps.len())
    } else {
        title
    }
}

/// The description, at most `limit` characters: the image tables are left out (with a note)
/// when the whole does not fit.
pub fn describe(content: &UpdateContent, limit: usize) -> String {
    let whole = render(content, true);
    if whole.chars().count() <= limit {
        return whole;
    }
    let short = render(content, false);
    super::cap_body(&short, limit, "the provider")
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn render(content: &UpdateContent, with_images: bool) -> String {
    let mut body = String::from(
        "imagegen found newer values for these variables where they are published. Merging this \
         pull request changes variables.json; the reconcile that follows the merge rebuilds the \
         images below and then opens the OSOB pull request for them.\n\n",
    );
    body.push_str("| variable | old | new | version | source | release notes |\n| --- | --- | --- | --- | --- | --- |\n");
    for bump in &content.bumps {
        let notes = bump
            .notes
            .as_deref()
            .map_or("-".to_string(), |url| format!("[release notes]({url})"));
        let _ = writeln!(
            body,
            "| {} | `{}` | `{}` | {} | {} | {notes} |",
            cell(&bump.variable),
            cell(&bump.old),
            cell(&bump.new),
            cell(&bump.version),
            cell(&bump.source)
        );
    }
    let table = |body: &mut String, rows: &[Rebuild]| {
        body.push_str("| definition | old image | new image |\n| --- | --- | --- |\n");
        for row in rows {
            let _ = writeln!(
                body,
                "| {} | {} | {} |",
                cell(&row.definition),
                cell(&row.old.join(", ")),
                cell(&row.new.join(", "))
            );
        }
    };
    if with_images {
        let _ = write!(
            body,
            "\n### Images that will rebuild ({})\n\n",
            content.rebuilds.len() + content.same_names.len()
        );
        if content.rebuilds.is_empty() {
            body.push_str("None under a new name.\n");
        } else {
            table(&mut body, &content.rebuilds);
        }
        if !content.same_names.is_empty() {
            let _ = write!(
                body,
                "\n### Images whose names would not change ({})\n\n> [!WARNING]\n> These \
                 definitions use a changed variable, but their image names do not: reconcile \
                 refuses to rebuild them under a name OSOB already uses unless a person allows \
                 it with `--allow-same-name`. Consider putting the variable in the image name.\n\n",
                content.same_names.len()
            );
            table(&mut body, &content.same_names);
        }
    } else {
        let _ = write!(
            body,
            "\n{} images will rebuild ({} keep their names); the list is too long for this \
             description: `imagegen vars update --dry-run` on this branch prints it.\n",
            content.rebuilds.len() + content.same_names.len(),
            content.same_names.len()
        );
    }
    if !content.held_back.is_empty() {
        body.push_str("\n### Newer versions held back by the rules\n\n");
        for line in &content.held_back {
            let _ = writeln!(body, "- {}", cell(line));
        }
    }
    body.push_str("\nOpened by `imagegen vars update --pr`; the next run updates this pull request, or leaves it alone once merged.\n");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content() -> UpdateContent {
        UpdateContent {
            bumps: vec![
                Bump {
                    variable: "VS_2022_VERSION".into(),
                    old: "17_12_1".into(),
                    new: "17_12_3".into(),
                    version: "17.12.3".into(),
                    source:
                        "the Visual Studio channel manifest https://aka.test/vs/17/release/channel"
                            .into(),
                    notes: Some("https://learn.test/notes".into()),
                },
                Bump {
                    variable: "WINDOWS_SERVER_2022_BUILD".into(),
                    old: "20348.2849.241106".into(),
                    new: "20348.2966.250109".into(),
                    version: "20348.2966.250109".into(),
                    source: "the Azure Marketplace versions of P/O/S in westus2".into(),
                    notes: None,
                },
            ],
            rebuilds: vec![Rebuild {
                definition: "vs2022/server-2022-enterprise".into(),
                old: vec!["Helix-VS2022_17_12_1".into()],
                new: vec!["Helix-VS2022_17_12_3".into()],
            }],
            same_names: vec![Rebuild {
                definition: "windows-server/server-2022-datacenter".into(),
                old: vec!["Helix-Server2022".into()],
                new: vec!["Helix-Server2022".into()],
            }],
            held_back: vec![
                "VS_2022_VERSION: 17.13.0: outside 17.12, which the rules allow".into(),
            ],
        }
    }

    #[test]
    fn the_title_names_every_new_value() {
        assert_eq!(
            title(&content()),
            "Update VS_2022_VERSION to 17_12_3 and WINDOWS_SERVER_2022_BUILD to 20348.2966.250109"
        );
    }

    #[test]
    fn the_description_tells_the_whole_update() {
        let body = describe(&content(), 65_536);
        for expected in [
            "| VS_2022_VERSION | `17_12_1` | `17_12_3` | 17.12.3 | the Visual Studio channel manifest https://aka.test/vs/17/release/channel | [release notes](https://learn.test/notes) |",
            "| WINDOWS_SERVER_2022_BUILD | `20348.2849.241106` | `20348.2966.250109` | 20348.2966.250109 | the Azure Marketplace versions of P/O/S in westus2 | - |",
            "### Images that will rebuild (2)",
            "| vs2022/server-2022-enterprise | Helix-VS2022_17_12_1 | Helix-VS2022_17_12_3 |",
            "### Images whose names would not change (1)",
            "| windows-server/server-2022-datacenter | Helix-Server2022 | Helix-Server2022 |",
            "- VS_2022_VERSION: 17.13.0: outside 17.12, which the rules allow",
        ] {
            assert!(body.contains(expected), "{expected}\nin\n{body}");
        }
    }

    #[test]
    fn a_description_too_long_leaves_the_image_tables_out() {
        let mut long = content();
        long.rebuilds = (0..2000)
            .map(|index| Rebuild {
                definition: format!("d/{index}"),
                old: vec![format!("old-{index}")],
                new: vec![format!("new-{index}")],
            })
            .collect();
        let body = describe(&long, 4000);
        assert!(body.chars().count() <= 4000);
        assert!(
            body.contains("2001 images will rebuild (1 keep their names)"),
            "{body}"
        );
        assert!(body.contains("| VS_2022_VERSION |"));
    }
}
