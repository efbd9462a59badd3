//! The Visual Studio channel manifest (`https://aka.ms/vs/17/release/channel`): the release it
//! describes, read from its `info` (`productDisplayVersion`, `buildVersion`) and its
//! `channelItems` (an edition's bootstrapper, as the `Bootstrapper` item whose payload is
//! `vs_<edition>.exe`, and the release notes of the edition's `ChannelProduct`). Pure: the
//! manifest's text in, one candidate out.

use serde::Deserialize;

use super::version::{Candidate, Version};

/// Which value of the release a variable holds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelField {
    /// `info.productDisplayVersion`, such as `17.12.3` or `17.13.0 Preview 2.1`.
    DisplayVersion,
    /// `info.buildVersion`, such as `17.12.35527.113`.
    BuildVersion,
    /// The URL of the edition's bootstrapper (`vs_Enterprise.exe`), which changes with every
    /// release; ordered by the build version.
    Bootstrapper,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    info: Info,
    #[serde(default)]
    channel_items: Vec<ChannelItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Info {
    product_display_version: String,
    build_version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChannelItem {
    #[serde(default)]
    id: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    release_notes: Option<String>,
    #[serde(default)]
    payloads: Vec<Payload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    #[serde(default)]
    file_name: String,
    #[serde(default)]
    url: String,
}

/// The release the manifest describes, as the candidate for `field` of `edition`
/// (`Enterprise`, `Professional`, `BuildTools`, ...). The error says what the manifest lacks.
pub fn release(
    text: &str,
    field: &ChannelField,
    edition: Option<&str>,
) -> Result<Candidate, String> {
    let manifest: Manifest = serde_json::from_str(crate::json::strip_bom(text)).map_err(|error| {
        let error = crate::json::json_error(text, &error);
        format!(
            "the answer is not a channel manifest ({} at line {}, column {}): expected an object \
             with info.productDisplayVersion, info.buildVersion and channelItems",
            error.message, error.line, error.column
        )
    })?;
    let version_of = |raw: &str, field: &str| {
        Version::parse(raw).ok_or_else(|| format!("info.{field} {raw:?} holds no version number"))
    };
    let display = version_of(
        &manifest.info.product_display_version,
        "productDisplayVersion",
    )?;
    let build = version_of(&manifest.info.build_version, "buildVersion")?;
    let edition_product =
        edition.map(|edition| format!("Microsoft.VisualStudio.Product.{edition}"));
    // The edition's release notes, or else any product's: every edition links the same notes.
    let notes = manifest
        .channel_items
        .iter()
        .filter(|item| item.kind == "ChannelProduct" && item.release_notes.is_some())
        .max_by_key(|item| {
            edition_product
                .as_deref()
                .is_some_and(|id| item.id.eq_ignore_ascii_case(id))
        })
        .and_then(|item| item.release_notes.clone());
    let (version, value) = match field {
        ChannelField::DisplayVersion => (display.clone(), display.raw.clone()),
        ChannelField::BuildVersion => (build.clone(), build.raw.clone()),
        ChannelField::Bootstrapper => {
            let edition = edition.ok_or("the bootstrapper needs an edition")?;
            let file = format!("vs_{edition}.exe");
            let url = manifest
                .channel_items
                .iter()
                .filter(|item| item.kind == "Bootstrapper")
                .flat_map(|item| &item.payloads)
                .find(|payload| {
                    payload.file_name.eq_ignore_ascii_case(&file) && !payload.url.is_empty()
                })
                .map(|payload| payload.url.clone())
                .ok_or_else(|| {
                    format!("channelItems has no Bootstrapper item with a payload {file}")
                })?;
            (build.clone(), url)
        }
    };
    Ok(Candidate {
        version,
        value,
        published: None,
        notes,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A channel manifest with the shape of `https://aka.ms/vs/17/release/channel`, cut down
    /// to the members imagegen reads and a few it must step over.
    pub(crate) fn manifest(display: &str, build: &str) -> String {
        format!(
            r#"{{
  "manifestVersion": "1.1",
  "info": {{
    "id": "VisualStudio.17.Release/{display}+{build}",
    "buildBranch": "d17.12",
    "buildVersion": "{build}",
    "localBuild": "build-lab",
    "manifestName": "VisualStudio",
    "manifestType": "channel",
    "productDisplayVersion": "{display}",
    "productLine": "Dev17",
    "productLineVersion": "2022",
    "productMilestone": "RTW",
    "productName": "Visual Studio",
    "productSemanticVersion": "{display}+{build}"
  }},
  "channelItems": [
    {{
      "id": "Microsoft.VisualStudio.Manifests.VisualStudio",
      "version": "{build}",
      "type": "Manifest",
      "payloads": [{{ "fileName": "VisualStudio.vsman", "sha256": "00", "size": 1, "url": "https://download.test/{build}/VisualStudio.vsman" }}],
      "isHidden": true
    }},
    {{
      "id": "Microsoft.VisualStudio.Product.Enterprise",
      "version": "{build}",
      "type": "ChannelProduct",
      "releaseNotes": "https://learn.test/visualstudio/releases/2022/release-notes-v{display}"
    }},
    {{
      "id": "Microsoft.VisualStudio.Setup.Bootstrapper.Enterprise",
      "version": "{build}",
      "type": "Bootstrapper",
      "payloads": [{{ "fileName": "vs_Enterprise.exe", "sha256": "00", "size": 1, "url": "https://download.test/{build}/vs_Enterprise.exe" }}]
    }}
  ]
}}"#
        )
    }

    #[test]
    fn reads_the_release_and_its_notes() {
        let text = manifest("17.12.3", "17.12.35527.113");
        let display = release(&text, &ChannelField::DisplayVersion, Some("Enterprise")).unwrap();
        assert_eq!(display.value, "17.12.3");
        assert_eq!(
            display.notes.as_deref(),
            Some("https://learn.test/visualstudio/releases/2022/release-notes-v17.12.3")
        );
        let build = release(&text, &ChannelField::BuildVersion, None).unwrap();
        assert_eq!(build.version.parts, [17, 12, 35527, 113]);
        let bootstrapper = release(&text, &ChannelField::Bootstrapper, Some("enterprise")).unwrap();
        assert_eq!(
            bootstrapper.value,
            "https://download.test/17.12.35527.113/vs_Enterprise.exe"
        );
    }

    #[test]
    fn a_malformed_manifest_says_what_it_lacks() {
        let error = release(
            "{\"info\": {\"buildVersion\": \"17.1\"}}",
            &ChannelField::DisplayVersion,
            None,
        )
        .unwrap_err();
        assert!(
            error.contains("missing field `productDisplayVersion`"),
            "{error}"
        );
        let error = release("<html>", &ChannelField::DisplayVersion, None).unwrap_err();
        assert!(
            error.starts_with("the answer is not a channel manifest"),
            "{error}"
        );
        let error = release(
            &manifest("17.12.3", "17.12.1"),
            &ChannelField::Bootstrapper,
            Some("Community"),
        )
        .unwrap_err();
        assert_eq!(
            error,
            "channelItems has no Bootstrapper item with a payload vs_Community.exe"
        );
    }
}
