//! GitHub Enterprise Cloud: the organisation driver (a GitHub App
//! installation, or a token from the config), the GitHub App sign-in, its
//! sandbox twin, and the demo app's key.

pub mod driver;
pub mod signin;
pub mod twin;

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;

use crate::connector::{BuildContext, Connector, ConnectorError, ResolvedConnector, TokenSource};
use crate::sandbox::tenant::BenchShape;
use crate::sandbox::{Faults, Shared};

/// The demo GitHub App's key pair: demo values only the sandbox accepts.
pub const DEMO_PRIVATE_KEY: &str = include_str!("demo.key.pem");
pub const DEMO_PUBLIC_KEY: &str = include_str!("demo.pub.pem");

pub struct Vendor;

impl super::App for Vendor {
    const DRIVER: &'static str = "github";
    const FLOWS: &'static [crate::auth::oauth::Flow] = driver::FLOWS;
    type Twin = twin::State;

    const PATHS: &'static [&'static str] = &[
        "/orgs/",
        "/repos/",
        "/app/",
        "/scim/v2/organizations/",
        "/scim/v2/enterprises/",
        "/enterprises/",
        "/rate_limit",
        "/users/",
    ];

    fn error(_path: &str, status: StatusCode, message: &str) -> Response {
        twin::error(status, message)
    }

    fn not_found(_method: &str, _path: &str) -> Response {
        twin::error(StatusCode::NOT_FOUND, "Not Found")
    }

    /// GitHub's primary limit: 403 (or 429) with `x-ratelimit-remaining:
    /// 0` and the reset time; never `retry-after`, which is the secondary
    /// limit's signal.
    fn rate_limited(_path: &str, retry_after_secs: u64, _faults: &Faults) -> Response {
        let mut r = twin::error(
            StatusCode::FORBIDDEN,
            "API rate limit exceeded for installation. If you reach out to GitHub Support for help, please include the request ID.",
        );
        let reset = chrono::Utc::now().timestamp().max(0) as u64 + retry_after_secs;
        let h = r.headers_mut();
        h.insert("x-ratelimit-limit", HeaderValue::from_static("5000"));
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        h.insert("x-ratelimit-used", HeaderValue::from_static("5000"));
        h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
        h.insert(
            "x-ratelimit-reset",
            HeaderValue::from_str(&reset.to_string()).expect("digits"),
        );
        r
    }

    fn demo_config(base_url: &str, keys_dir: &Path) -> String {
        format!(
            r#"
# The GitHub organisation, as a GitHub App installation (its JWT, then an
# installation token). With a token instead: flow = "static", token_file =
# the same file as scim_token_file (a classic PAT cannot list fine-grained
# PATs).
[connectors.github]
manifest = "github"

[connectors.github.api]
base_url = "{base_url}"

[connectors.github.auth]
flow = "jwt-bearer"
client_id = "{app_id}"
key_file = "{key}"
# An enterprise owner's token for the enterprise's SAML identities and SCIM.
scim_token_file = "{pat}"

[connectors.github.settings]
org = "{org}"
enterprise = "{ent}"
installation_id = {installation}
repositories = ["website", "docs", "payments-api"]
# People no SCIM or SAML identity names: the operator's mapping.
logins = {{ "lena.kowalski@example.com" = "lena-k-dev" }}
"#,
            pat = keys_dir.join("github-token").display(),
            key = keys_dir.join("github-app.key.pem").display(),
            app_id = twin::DEMO_APP_ID,
            installation = twin::DEMO_INSTALLATION_ID,
            org = twin::ORG,
            ent = twin::ENTERPRISE,
        )
    }

    fn write_demo_keys(dir: &Path) -> std::io::Result<()> {
        crate::sandbox::write_private(&dir.join("github-token"), twin::DEMO_TOKEN.as_bytes())?;
        crate::sandbox::write_private(&dir.join("github-app.key.pem"), DEMO_PRIVATE_KEY.as_bytes())
    }

    fn driver(
        resolved: &ResolvedConnector,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(driver::GitHub::new(resolved, ctx)?))
    }

    fn seed(bench: Option<&BenchShape>) -> twin::State {
        twin::State::seed(bench)
    }

    fn twin(state: &Shared) -> Router<Shared> {
        twin::routes(state)
    }

    fn token_source(
        resolved: &ResolvedConnector,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn TokenSource>, ConnectorError> {
        driver::token_source(resolved, ctx)
    }
}
