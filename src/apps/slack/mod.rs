//! Slack: the Web API and SCIM driver, its sign-in dialect (OAuth v2), and
//! the sandbox twins of both.

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
use crate::auth::oauth::OAuthSettings;
use crate::connector::{BuildContext, Connector, ConnectorError, ResolvedConnector};
use crate::sandbox::Shared;
use crate::sandbox::tenant::BenchShape;

pub struct Vendor;

impl super::App for Vendor {
    const DRIVER: &'static str = "slack";
    const FLOWS: &'static [crate::auth::oauth::Flow] = driver::FLOWS;
    type Twin = twin::State;

    const PATHS: &'static [&'static str] = &["/api/", "/scim/"];

    /// The Web API answers errors with HTTP 200 and `ok:false` (except 429
    /// and 5xx); SCIM with its `Errors` object.
    fn error(path: &str, status: StatusCode, message: &str) -> Response {
        if path.starts_with("/scim/") {
            return (
                status,
                Json(serde_json::json!({"Errors": {"code": status.as_u16(), "description": message}})),
            )
                .into_response();
        }
        let code = match status.as_u16() {
            404 | 405 => "unknown_method",
            429 => "ratelimited",
            s if s >= 500 => "internal_error",
            _ => "invalid_arguments",
        };
        let st = if status.as_u16() >= 429 {
            status
        } else {
            StatusCode::OK
        };
        (st, Json(serde_json::json!({"ok": false, "error": code}))).into_response()
    }

    /// Slack names the method it does not know; the Web API takes any HTTP
    /// method, so a wrong one is still `ok:false`.
    fn not_found(_method: &str, path: &str) -> Response {
        match path.strip_prefix("/api/") {
            Some(m) => twin::unknown_method(m),
            None => Self::error(path, StatusCode::NOT_FOUND, "not found"),
        }
    }

    fn method_not_allowed(method: &str, path: &str) -> Response {
        match path.strip_prefix("/api/") {
            Some(m) => twin::unknown_method(m),
            None => Self::error(
                path,
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("HTTP method {method} is not allowed on {path}"),
            ),
        }
    }

    fn demo_config(base_url: &str, keys_dir: &Path) -> String {
        format!(
            r#"
[connectors.slack]
manifest = "slack"

[connectors.slack.api]
base_url = "{base_url}/api/"
scim_url = "{base_url}/scim/v2/"

[connectors.slack.auth]
token_file = "{user_token}"
scim_token_file = "{scim_token}"

# Slack's real tier limits (connectors/slack.toml) would pace the demo's
# refreshes to a crawl; the sandbox enforces tiers only when its
# `slack_tiers` fault is set, so the demo paces itself far above them.
[connectors.slack.settings.tiers]
tier1 = {{ per_minute = 6000, burst = 200 }}
tier2 = {{ per_minute = 6000, burst = 200 }}
tier3 = {{ per_minute = 6000, burst = 200 }}
tier4 = {{ per_minute = 6000, burst = 200 }}
special = {{ per_minute = 6000, burst = 200 }}
scim_read = {{ per_minute = 6000, burst = 200 }}
scim_write = {{ per_minute = 6000, burst = 200 }}
"#,
            user_token = keys_dir.join("slack-user-token").display(),
            scim_token = keys_dir.join("slack-scim-token").display(),
        )
    }

    fn write_demo_keys(dir: &Path) -> std::io::Result<()> {
        crate::sandbox::write_private(
            &dir.join("slack-user-token"),
            twin::DEMO_USER_TOKEN.as_bytes(),
        )?;
        crate::sandbox::write_private(
            &dir.join("slack-scim-token"),
            twin::DEMO_SCIM_TOKEN.as_bytes(),
        )
    }

    fn driver(
        resolved: &ResolvedConnector,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(driver::SlackDriver::build(resolved, ctx)?))
    }

    fn seed(bench: Option<&BenchShape>) -> twin::State {
        let mut s = twin::State::seed();
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
        Ok(Arc::new(signin::SlackOAuth::new(
            OAuthSettings::from_resolved(resolved)?,
            http,
        )?))
    }
}
