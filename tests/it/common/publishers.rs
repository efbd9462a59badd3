//! Stand-ins for where variables' values are published, with the real documents' shapes: a
//! Visual Studio channel manifest, Azure Resource Manager's list of Marketplace image versions
//! (in pages joined by `nextLink`, behind a bearer token), and the Azure AD token endpoint that
//! issues that token for the `https://management.azure.com` resource. Faults are chosen by the
//! SKU asked for, so one server serves every scenario. Every request is recorded.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::router_server::RouterServer;

pub const TENANT: &str = "tenant-publishers";
pub const CLIENT_ID: &str = "imagegen-client";
pub const CLIENT_SECRET: &str = "canary-client-secret-3f9a";
/// The token the stand-in issues for Resource Manager; it must never show in output.
pub const ARM_TOKEN: &str = "canary-arm-token-77c1";
pub const SUBSCRIPTION: &str = "00000000-1111-2222-3333-444444444444";

/// What the stand-in publishes now.
#[derive(Debug, Clone)]
pub struct Published {
    /// The channel manifest's `productDisplayVersion` and `buildVersion`; `None` answers a
    /// manifest without its `info`.
    pub channel: Option<(String, String)>,
    /// Each SKU's versions (the fault SKUs aside), oldest first; listed in pages of two.
    pub versions: Vec<(String, Vec<String>)>,
}

struct Shared {
    published: Mutex<Published>,
    base: Mutex<String>,
    requests: Mutex<Vec<String>>,
    throttled: Mutex<u32>,
}

/// The running stand-in.
pub struct Publishers {
    server: RouterServer,
    shared: Arc<Shared>,
}

impl Publishers {
    pub fn start(published: Published) -> Self {
        let shared = Arc::new(Shared {
            published: Mutex::new(published),
            base: Mutex::new(String::new()),
            requests: Mutex::new(Vec::new()),
            throttled: Mutex::new(0),
        });
        let router = Router::new()
            .route("/vs/{major}/{channel}/channel", get(channel))
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route(
                "/subscriptions/{subscription}/providers/Microsoft.Compute/locations/{location}/publishers/{publisher}/artifacttypes/vmimage/offers/{offer}/skus/{sku}/versions",
                get(versions),
            )
            .with_state(shared.clone());
        let server = RouterServer::start(router);
        *shared.base.lock().unwrap() = server.url().trim_end_matches('/').to_string();
        Self { server, shared }
    }

    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub fn url(&self) -> String {
        self.server.url().trim_end_matches('/').to_string()
    }

    pub fn publish(&self, published: Published) {
        *self.shared.published.lock().unwrap() = published;
    }

    /// `METHOD path?query`, in order.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The environment a run needs to sign in and reach Resource Manager here.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        vec![
            ("IMAGE_FACTORY_TENANT_ID", TENANT.to_string()),
            ("IMAGE_FACTORY_CLIENT_ID", CLIENT_ID.to_string()),
            ("IMAGE_FACTORY_CLIENT_SECRET", CLIENT_SECRET.to_string()),
            ("IMAGE_FACTORY_AUTHORITY", self.url()),
            ("IMAGEGEN_ARM_URL", self.url()),
            ("IMAGEGEN_SUBSCRIPTION_ID", SUBSCRIPTION.to_string()),
        ]
    }
}

fn record(shared: &Shared, line: String) {
    shared.requests.lock().unwrap().push(line);
}

async fn channel(
    State(shared): State<Arc<Shared>>,
    Path((major, channel)): Path<(String, String)>,
) -> Response {
    record(&shared, format!("GET /vs/{major}/{channel}/channel"));
    let published = shared.published.lock().unwrap().clone();
    let Some((display, build)) = published.channel else {
        // A manifest as a broken deployment might serve it: the items, no info.
        return axum::Json(json!({"manifestVersion": "1.1", "channelItems": []})).into_response();
    };
    let text = format!(
        r#"{{
  "manifestVersion": "1.1",
  "info": {{
    "id": "VisualStudio.{major}.Release/{display}+{build}",
    "buildBranch": "d{major}",
    "buildVersion": "{build}",
    "localBuild": "build-lab",
    "manifestName": "VisualStudio",
    "manifestType": "channel",
    "productDisplayVersion": "{display}",
    "productLine": "Dev{major}",
    "productLineVersion": "2022",
    "productMilestone": "RTW",
    "productMilestoneIsPreRelease": "False",
    "productName": "Visual Studio",
    "productSemanticVersion": "{display}+{build}"
  }},
  "channelItems": [
    {{
      "id": "Microsoft.VisualStudio.Manifests.VisualStudio",
      "version": "{build}",
      "type": "Manifest",
      "payloads": [{{"fileName": "VisualStudio.vsman", "sha256": "5f1e", "size": 2048, "url": "https://download.test/{build}/VisualStudio.vsman"}}],
      "isHidden": true
    }},
    {{
      "id": "Microsoft.VisualStudio.Product.Enterprise",
      "version": "{build}",
      "type": "ChannelProduct",
      "releaseNotes": "https://learn.test/visualstudio/releases/2022/release-notes#{display}"
    }},
    {{
      "id": "Microsoft.VisualStudio.Setup.Bootstrapper.Enterprise",
      "version": "{build}",
      "type": "Bootstrapper",
      "payloads": [{{"fileName": "vs_Enterprise.exe", "sha256": "9ad0", "size": 4096, "url": "https://download.test/{build}/vs_Enterprise.exe"}}]
    }}
  ]
}}"#
    );
    ([("content-type", "application/json")], text).into_response()
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> Response {
    record(
        &shared,
        format!(
            "POST /{tenant}/oauth2/v2.0/token scope={}",
            form.get("scope").map_or("", String::as_str)
        ),
    );
    let refuse = |code: &str, description: &str| {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": code, "error_description": description})),
        )
            .into_response()
    };
    if tenant != TENANT || form.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return refuse(
            "unauthorized_client",
            "AADSTS700016: Application not found in the directory.",
        );
    }
    if form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET) {
        return refuse(
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.",
        );
    }
    if form.get("scope").map(String::as_str) != Some("https://management.azure.com/.default") {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_scope", "error_description": "AADSTS500011: The resource principal was not found."}))).into_response();
    }
    axum::Json(json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": ARM_TOKEN})).into_response()
}

async fn versions(
    State(shared): State<Arc<Shared>>,
    Path((subscription, location, publisher, offer, sku)): Path<(
        String,
        String,
        String,
        String,
        String,
    )>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    record(
        &shared,
        format!("GET /subscriptions/{subscription}/.../offers/{offer}/skus/{sku}/versions?{query}"),
    );
    let authorized = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        == Some(&format!("Bearer {ARM_TOKEN}"));
    let arm_error = |status: StatusCode, code: &str, message: &str| {
        (
            status,
            axum::Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response()
    };
    if !authorized || sku == "denied" {
        return arm_error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing or invalid.",
        );
    }
    if subscription != SUBSCRIPTION {
        return arm_error(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            "The subscription could not be found.",
        );
    }
    let throttle = match sku.as_str() {
        "throttled" => true,
        "throttled-once" => {
            let mut count = shared.throttled.lock().unwrap();
            *count += 1;
            *count == 1
        }
        _ => false,
    };
    if throttle {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            axum::Json(json!({"error": {"code": "TooManyRequests", "message": "The request is being throttled."}})),
        )
            .into_response();
    }
    if sku == "empty" {
        return axum::Json(json!([])).into_response();
    }
    let all = shared
        .published
        .lock()
        .unwrap()
        .versions
        .iter()
        // Once the throttling is over, the SKU lists what the 2022 one does.
        .find(|(name, _)| *name == sku || (sku == "throttled-once" && name == "2022-datacenter"))
        .map(|(_, versions)| versions.clone())
        .unwrap_or_default();
    let page: usize = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("$skiptoken="))
        .and_then(|page| page.parse().ok())
        .unwrap_or(0);
    let chunk: Vec<_> = all
        .iter()
        .skip(page * 2)
        .take(2)
        .map(|name| {
            json!({
                "location": location,
                "name": name,
                "id": format!("/Subscriptions/{subscription}/Providers/Microsoft.Compute/Locations/{location}/Publishers/{publisher}/ArtifactTypes/VMImage/Offers/{offer}/Skus/{sku}/Versions/{name}")
            })
        })
        .collect();
    let base = shared.base.lock().unwrap().clone();
    let next = (all.len() > (page + 1) * 2).then(|| {
        format!(
            "{base}/subscriptions/{subscription}/providers/Microsoft.Compute/locations/{location}/publishers/{publisher}/artifacttypes/vmimage/offers/{offer}/skus/{sku}/versions?api-version=2024-07-01&$skiptoken={}",
            page + 1
        )
    });
    axum::Json(json!({"value": chunk, "nextLink": next})).into_response()
}
