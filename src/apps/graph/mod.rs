//! Microsoft Entra ID and Microsoft 365: the Microsoft Graph v1.0 driver
//! (an app registration with application permissions, signed in with client
//! credentials: a client secret, or a certificate's client assertion with
//! its `x5t`, both through the shared sign-in code), its sandbox twin, and
//! the demo app's certificate and key.

pub mod driver;
pub mod twin;

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;

use crate::connector::{BuildContext, Connector, ConnectorError, ResolvedConnector};
use crate::sandbox::tenant::BenchShape;
use crate::sandbox::{Faults, Shared};

/// The demo app's certificate and key pair: demo values only the sandbox
/// accepts.
pub const DEMO_PRIVATE_KEY: &str = include_str!("demo.key.pem");
pub const DEMO_PUBLIC_KEY: &str = include_str!("demo.pub.pem");
pub const DEMO_CERTIFICATE: &str = include_str!("demo.cert.pem");

pub struct Vendor;

impl super::App for Vendor {
    const DRIVER: &'static str = "microsoft-graph";
    const FLOWS: &'static [crate::auth::oauth::Flow] = driver::FLOWS;
    type Twin = twin::State;

    const PATHS: &'static [&'static str] = &["/v1.0/", token_prefix()];

    fn error(path: &str, status: StatusCode, message: &str) -> Response {
        if path.starts_with(token_prefix()) {
            return crate::sandbox::oauth_error(status, message);
        }
        let code = match status.as_u16() {
            404 => "Request_ResourceNotFound",
            405 => "Request_BadRequest",
            401 => "InvalidAuthenticationToken",
            403 => "Authorization_RequestDenied",
            429 => "TooManyRequests",
            503 => "serviceNotAvailable",
            s if s >= 500 => "generalException",
            _ => "BadRequest",
        };
        twin::graph_error(status, code, message)
    }

    fn rate_limited(path: &str, retry_after_secs: u64, _faults: &Faults) -> Response {
        crate::sandbox::with_retry_after(
            Self::error(
                path,
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests. Please retry after the time in the Retry-After header.",
            ),
            retry_after_secs,
        )
    }

    fn demo_config(base_url: &str, keys_dir: &Path) -> String {
        format!(
            r#"
# Microsoft Entra ID and Microsoft 365 (Graph), through an app registration
# with a client secret. For its certificate instead: drop client_secret_file
# and set key_file = "{key}", certificate_file = "{cert}".
[connectors.microsoft-graph]
manifest = "microsoft-graph"

[connectors.microsoft-graph.api]
base_url = "{base_url}/v1.0"

[connectors.microsoft-graph.auth]
token_url = "{base_url}/{tenant}/oauth2/v2.0/token"
client_id = "{client}"
client_secret_file = "{secret}"
"#,
            tenant = twin::DEMO_TENANT_ID,
            client = twin::DEMO_CLIENT_ID,
            secret = keys_dir.join("graph-client-secret").display(),
            key = keys_dir.join("graph-demo.key.pem").display(),
            cert = keys_dir.join("graph-demo.cert.pem").display(),
        )
    }

    fn write_demo_keys(dir: &Path) -> std::io::Result<()> {
        crate::sandbox::write_private(
            &dir.join("graph-client-secret"),
            twin::DEMO_CLIENT_SECRET.as_bytes(),
        )?;
        crate::sandbox::write_private(
            &dir.join("graph-demo.key.pem"),
            DEMO_PRIVATE_KEY.as_bytes(),
        )?;
        crate::sandbox::write_private(
            &dir.join("graph-demo.cert.pem"),
            DEMO_CERTIFICATE.as_bytes(),
        )
    }

    fn driver(
        resolved: &ResolvedConnector,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(driver::Graph::new(resolved, ctx)?))
    }

    fn seed(bench: Option<&BenchShape>) -> twin::State {
        twin::State::seed(bench)
    }

    fn twin(state: &Shared) -> Router<Shared> {
        twin::routes(state)
    }
}

/// The demo tenant's sign-in paths (`/{tenant}/oauth2/v2.0/token`,
/// `/{tenant}/v2.0/.well-known/openid-configuration`).
const fn token_prefix() -> &'static str {
    "/4f8b2c1e-0ffb-4a5d-9c3e-7d6a5b4c3d2e/"
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_token_prefix_names_the_demo_tenant() {
        assert_eq!(
            super::token_prefix(),
            format!("/{}/", super::twin::DEMO_TENANT_ID)
        );
    }
}
