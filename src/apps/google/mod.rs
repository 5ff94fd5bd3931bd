//! Google Workspace: the Admin SDK Directory and Licensing driver, its
//! sandbox twin, and the demo tenant's service-account key.

pub mod driver;
pub mod twin;

use std::sync::Arc;

use std::path::Path;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;

use crate::connector::{BuildContext, Connector, ConnectorError, ResolvedConnector};
use crate::sandbox::tenant::BenchShape;
use crate::sandbox::{Faults, Shared};

/// The demo service account's private key: a demo value only the sandbox
/// accepts.
pub const DEMO_PRIVATE_KEY: &str = include_str!("demo.key.pem");
pub const DEMO_PUBLIC_KEY: &str = include_str!("demo.pub.pem");
pub const DEMO_CLIENT_EMAIL: &str = "offboard-demo@offboard-sandbox.iam.gserviceaccount.com";

pub struct Vendor;

impl super::App for Vendor {
    const DRIVER: &'static str = "google-workspace";
    const FLOWS: &'static [crate::auth::oauth::Flow] = driver::FLOWS;
    type Twin = twin::State;

    const PATHS: &'static [&'static str] = &["/admin/", "/apps/licensing/", "/batch"];

    fn error(_path: &str, status: StatusCode, message: &str) -> Response {
        let reason = match status.as_u16() {
            404 => "notFound",
            401 => "authError",
            403 => "forbidden",
            400 => "invalid",
            429 => "rateLimitExceeded",
            503 => "backendError",
            _ => "internalError",
        };
        twin::google_error(status, reason, message)
    }

    fn not_found(method: &str, path: &str) -> Response {
        twin::google_error(
            StatusCode::NOT_FOUND,
            "notFound",
            &format!("Method not found: {method} {path}"),
        )
    }

    fn method_not_allowed(method: &str, path: &str) -> Response {
        twin::google_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "methodNotAllowed",
            &format!("HTTP method {method} is not allowed on {path}"),
        )
    }

    /// Google answers a rate limit with 403 `rateLimitExceeded` and no
    /// `Retry-After`; with the sandbox's `google_429` fault, with the newer
    /// 429 `RESOURCE_EXHAUSTED` and a `Retry-After`.
    fn rate_limited(_path: &str, retry_after_secs: u64, faults: &Faults) -> Response {
        if faults.google_429 {
            crate::sandbox::with_retry_after(
                twin::google_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rateLimitExceeded",
                    "Resource has been exhausted (e.g. check quota).",
                ),
                retry_after_secs,
            )
        } else {
            twin::google_error(
                StatusCode::FORBIDDEN,
                "rateLimitExceeded",
                "Rate Limit Exceeded",
            )
        }
    }

    fn demo_config(base_url: &str, keys_dir: &Path) -> String {
        format!(
            r#"
[connectors.google]
manifest = "google-workspace"

[connectors.google.api]
base_url = "{base_url}"
licensing_url = "{base_url}"

[connectors.google.auth]
token_url = "{base_url}/token"
key_file = "{google_key}"
subject = "{admin}"
"#,
            google_key = keys_dir.join("google-service-account.json").display(),
            admin = crate::sandbox::DEMO_ADMIN,
        )
    }

    fn write_demo_keys(dir: &Path) -> std::io::Result<()> {
        let sa = serde_json::json!({
            "type": "service_account",
            "project_id": "offboard-sandbox",
            "private_key_id": "demo-key-1",
            "private_key": DEMO_PRIVATE_KEY,
            "client_email": DEMO_CLIENT_EMAIL,
            "client_id": "100000000000000000001",
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        crate::sandbox::write_private(
            &dir.join("google-service-account.json"),
            serde_json::to_string_pretty(&sa)?.as_bytes(),
        )
    }

    fn driver(
        resolved: &ResolvedConnector,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        driver::build(resolved, ctx)
    }

    fn seed(bench: Option<&BenchShape>) -> twin::State {
        twin::State::seed(bench)
    }

    fn twin(state: &Shared) -> Router<Shared> {
        twin::routes().route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            twin::scope_check,
        ))
    }
}
