//! Azure Marketplace image versions, as Azure Resource Manager lists them for a publisher,
//! offer and SKU in a location: the route, and each page of the answer read into candidates.
//! The list is a JSON array of `{ "name": "<version>", "location", "id" }`, or a page
//! `{ "value": [...], "nextLink": "<url>" }` to follow. Pure.

use serde::Deserialize;

use super::version::{Candidate, Version};

/// The Resource Manager API version imagegen asks for.
pub const API_VERSION: &str = "2024-07-01";

/// Resource Manager's public endpoint, and the resource its tokens are issued for.
pub const DEFAULT_ARM_URL: &str = "https://management.azure.com";
pub const ARM_RESOURCE: &str = "https://management.azure.com";

/// Which image's versions to list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSku {
    /// The subscription to ask through; the `--subscription` setting when left out.
    #[serde(default)]
    pub subscription: Option<String>,
    pub location: String,
    pub publisher: String,
    pub offer: String,
    pub sku: String,
}

impl ImageSku {
    /// The list's path and query below Resource Manager's base URL, each name escaped.
    pub fn versions_route(&self, subscription: &str) -> String {
        let escape =
            |part: &str| url::form_urlencoded::byte_serialize(part.as_bytes()).collect::<String>();
        format!(
            "subscriptions/{}/providers/Microsoft.Compute/locations/{}/publishers/{}/artifacttypes/vmimage/offers/{}/skus/{}/versions?api-version={API_VERSION}",
            escape(subscription),
            escape(&self.location),
            escape(&self.publisher),
            escape(&self.offer),
            escape(&self.sku)
        )
    }

    /// `publisher/offer/sku in location`, as messages name it.
    pub fn describe(&self) -> String {
        format!(
            "{}/{}/{} in {}",
            self.publisher, self.offer, self.sku, self.location
        )
    }
}

/// One page of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub versions: Vec<Candidate>,
    pub next_link: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Listing {
    Bare(Vec<ImageVersion>),
    Paged {
        value: Vec<ImageVersion>,
        #[serde(default, rename = "nextLink")]
        next_link: Option<String>,
    },
}

#[derive(Deserialize)]
struct ImageVersion {
    name: String,
}

/// Reads one page of the list. A version name that holds no number is skipped.
pub fn page(text: &str) -> Result<Page, String> {
    let listing: Listing = serde_json::from_str(crate::json::strip_bom(text)).map_err(|_| {
        "the answer is not a list of image versions: expected a JSON array of objects with a \
         name, or an object with value and nextLink"
            .to_string()
    })?;
    let (items, next_link) = match listing {
        Listing::Bare(items) => (items, None),
        Listing::Paged { value, next_link } => (value, next_link.filter(|link| !link.is_empty())),
    };
    let versions = items
        .into_iter()
        .filter_map(|item| {
            Version::parse(&item.name).map(|version| Candidate {
                value: item.name,
                version,
                published: None,
                notes: None,
            })
        })
        .collect();
    Ok(Page {
        versions,
        next_link,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_bare_list_and_a_page_with_its_next_link() {
        let bare = page(
            r#"[{"location": "westus2", "name": "17763.6414.241008", "id": "/Subscriptions/s/Providers/Microsoft.Compute/Locations/westus2/Publishers/MicrosoftWindowsServer/ArtifactTypes/VMImage/Offers/WindowsServer/Skus/2019-datacenter/Versions/17763.6414.241008"}]"#,
        )
        .unwrap();
        assert_eq!(bare.versions[0].value, "17763.6414.241008");
        assert_eq!(bare.next_link, None);
        let paged = page(r#"{"value": [{"name": "17763.6532.241107", "location": "westus2"}], "nextLink": "https://arm.test/next?page=2"}"#).unwrap();
        assert_eq!(paged.versions[0].version.parts, [17763, 6532, 241107]);
        assert_eq!(
            paged.next_link.as_deref(),
            Some("https://arm.test/next?page=2")
        );
        assert!(
            page("{\"error\": {}}")
                .unwrap_err()
                .contains("not a list of image versions")
        );
    }

    #[test]
    fn the_route_escapes_each_name() {
        let sku = ImageSku {
            subscription: None,
            location: "westus2".into(),
            publisher: "MicrosoftWindowsServer".into(),
            offer: "WindowsServer".into(),
            sku: "2022-datacenter g2".into(),
        };
        assert_eq!(
            sku.versions_route("0000"),
            "subscriptions/0000/providers/Microsoft.Compute/locations/westus2/publishers/MicrosoftWindowsServer/artifacttypes/vmimage/offers/WindowsServer/skus/2022-datacenter+g2/versions?api-version=2024-07-01"
        );
    }
}
