//! Salesforce: the REST API driver, its sign-in dialect (JWT bearer with the
//! consumer key, device flow), the sandbox twins of both, and the demo
//! connected app's key.

pub mod driver;
pub mod signin;
pub mod twin;
pub mod twin_oauth;

use std::sync::Arc;

use std::path::Path;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::auth::authority::Authority;
use crate::auth::oauth::{Flow, OAuthSettings};
use crate::connector::{BuildContext, Connector, ConnectorError, ResolvedConnector, TokenSource};
use crate::sandbox::tenant::BenchShape;
use crate::sandbox::{Faults, Shared};

/// The demo connected app's private key: a demo value only the sandbox
/// accepts.
pub const DEMO_PRIVATE_KEY: &str = include_str!("demo.key.pem");
pub const DEMO_PUBLIC_KEY: &str = include_str!("demo.pub.pem");

pub struct Vendor;

impl super::App for Vendor {
    const DRIVER: &'static str = "salesforce";
    const FLOWS: &'static [crate::auth::oauth::Flow] = driver::FLOWS;
    type Twin = twin::State;

    const PATHS: &'static [&'static str] = &["/services/"];

    fn error(_path: &str, status: StatusCode, message: &str) -> Response {
        let code = match status.as_u16() {
            404 => "NOT_FOUND",
            401 => "INVALID_SESSION_ID",
            400 => "MALFORMED_QUERY",
            _ => "UNKNOWN_EXCEPTION",
        };
        (
            status,
            Json(serde_json::json!([{"message": message, "errorCode": code, "fields": []}])),
        )
            .into_response()
    }

    fn not_found(_method: &str, path: &str) -> Response {
        Self::error(
            path,
            StatusCode::NOT_FOUND,
            "The requested resource does not exist",
        )
    }

    fn method_not_allowed(method: &str, _path: &str) -> Response {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            Json(serde_json::json!([{
                "message": format!("HTTP Method '{method}' not allowed on this resource"),
                "errorCode": "METHOD_NOT_ALLOWED",
            }])),
        )
            .into_response()
    }

    /// Salesforce answers an exhausted allocation with 403
    /// `REQUEST_LIMIT_EXCEEDED` and no `Retry-After`.
    fn rate_limited(_path: &str, _retry_after_secs: u64, _faults: &Faults) -> Response {
        (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])),
        )
            .into_response()
    }

    fn demo_config(base_url: &str, keys_dir: &Path) -> String {
        format!(
            r#"
[connectors.salesforce]
manifest = "salesforce"

[connectors.salesforce.api]
base_url = "{base_url}"
login_url = "{base_url}"

[connectors.salesforce.auth]
token_url = "{base_url}/services/oauth2/token"
audience = "{base_url}"
key_file = "{salesforce_key}"
client_id = "{consumer_key}"
subject = "{admin}"
"#,
            salesforce_key = keys_dir.join("salesforce-demo.key.pem").display(),
            consumer_key = twin::DEMO_CONSUMER_KEY,
            admin = crate::sandbox::DEMO_ADMIN,
        )
    }

    fn write_demo_keys(dir: &Path) -> std::io::Result<()> {
        crate::sandbox::write_private(
            &dir.join("salesforce-demo.key.pem"),
            DEMO_PRIVATE_KEY.as_bytes(),
        )
    }

    fn driver(
        resolved: &ResolvedConnector,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(driver::Salesforce::new(resolved, ctx)?))
    }

    fn seed(bench: Option<&BenchShape>) -> twin::State {
        let mut people = crate::sandbox::tenant::people();
        people.extend(crate::sandbox::tenant::crowd(bench));
        let mut s = twin::State::seed_people(people);
        if let Some(b) = bench {
            s.seed_bench(b);
        }
        s
    }

    fn twin(_: &Shared) -> Router<Shared> {
        twin::routes().merge(twin_oauth::routes())
    }

    fn authority(
        resolved: &ResolvedConnector,
        http: reqwest::Client,
    ) -> Result<Arc<dyn Authority>, ConnectorError> {
        let r = signin::with_login_defaults(resolved);
        Ok(Arc::new(signin::SalesforceOAuth::new(
            OAuthSettings::from_resolved(&r)?,
            http,
        )?))
    }

    /// Salesforce's JWT differs (issuer = consumer key, audience = login
    /// host): the driver's own.
    fn token_source(
        resolved: &ResolvedConnector,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn TokenSource>, ConnectorError> {
        match Flow::of(resolved)? {
            Flow::JwtBearer => driver::jwt_token_source(resolved, ctx),
            _ => crate::auth::token_source(resolved, ctx, Self::authority),
        }
    }
}
