//! Okta: the Management API driver (API token or an OAuth service app with
//! `private_key_jwt` client credentials, both through the shared sign-in
//! code), its sandbox twin, and the demo service app's key.

pub mod driver;
pub mod twin;

use std::sync::Arc;

use std::path::Path;

use axum::Router;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;

use crate::connector::{BuildContext, Connector, ConnectorError, ResolvedConnector};
use crate::sandbox::tenant::BenchShape;
use crate::sandbox::{Faults, Shared};

/// The demo service app's key pair: demo values only the sandbox accepts.
pub const DEMO_PRIVATE_KEY: &str = include_str!("demo.key.pem");
pub const DEMO_PUBLIC_KEY: &str = include_str!("demo.pub.pem");

pub struct Vendor;

impl super::App for Vendor {
    const DRIVER: &'static str = "okta";
    const FLOWS: &'static [crate::auth::oauth::Flow] = driver::FLOWS;
    type Twin = twin::State;

    const PATHS: &'static [&'static str] = &["/api/v1/", "/oauth2/v1/"];

    fn error(_path: &str, status: StatusCode, message: &str) -> Response {
        let code = match status.as_u16() {
            404 => "E0000007",
            405 => "E0000022",
            401 => "E0000011",
            429 => "E0000047",
            s if s >= 500 => "E0000009",
            _ => "E0000001",
        };
        twin::okta_error(status, code, message, &[])
    }

    /// Okta's 429 `E0000047` says when to come back in `X-Rate-Limit-Reset`
    /// (epoch seconds), not `Retry-After`.
    fn rate_limited(_path: &str, retry_after_secs: u64, _faults: &Faults) -> Response {
        let mut r = twin::okta_error(
            StatusCode::TOO_MANY_REQUESTS,
            "E0000047",
            "API call exceeded rate limit due to too many requests.",
            &[],
        );
        let reset = chrono::Utc::now().timestamp().max(0) as u64 + retry_after_secs;
        let h = r.headers_mut();
        h.insert("x-rate-limit-limit", HeaderValue::from_static("600"));
        h.insert("x-rate-limit-remaining", HeaderValue::from_static("0"));
        h.insert(
            "x-rate-limit-reset",
            HeaderValue::from_str(&reset.to_string()).expect("digits"),
        );
        r
    }

    fn demo_config(base_url: &str, keys_dir: &Path) -> String {
        format!(
            r#"
# The identity provider, through an API token (SSWS). For the OAuth
# service app instead: flow = "client-credentials", client_id =
# "{okta_client}", key_file = "{okta_key}", token_url =
# "{base_url}/oauth2/v1/token".
[connectors.okta]
manifest = "okta"

[connectors.okta.api]
base_url = "{base_url}"

[connectors.okta.auth]
token_file = "{okta_token}"
"#,
            okta_token = keys_dir.join("okta-api-token").display(),
            okta_key = keys_dir.join("okta-demo.key.pem").display(),
            okta_client = twin::DEMO_CLIENT_ID,
        )
    }

    fn write_demo_keys(dir: &Path) -> std::io::Result<()> {
        crate::sandbox::write_private(
            &dir.join("okta-api-token"),
            twin::DEMO_API_TOKEN.as_bytes(),
        )?;
        crate::sandbox::write_private(&dir.join("okta-demo.key.pem"), DEMO_PRIVATE_KEY.as_bytes())
    }

    fn driver(
        resolved: &ResolvedConnector,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(driver::Okta::new(resolved, ctx)?))
    }

    fn seed(bench: Option<&BenchShape>) -> twin::State {
        twin::State::seed_people(crate::sandbox::tenant::people_for(bench))
    }

    fn twin(state: &Shared) -> Router<Shared> {
        twin::routes(state)
    }
}
