//! Any SCIM 2.0 app (RFC 7643/7644): the generic `scim2` driver, its filter
//! grammar, and the sandbox twin that serves several SCIM apps at once on
//! their own path prefixes (`/scim2/{app}/v2/...`) with their own tokens.
//! A new SCIM app needs a manifest in `connectors/` and a config entry, no
//! code.

pub mod driver;
pub mod filter;
pub mod twin;
pub mod twin_discovery;

use std::sync::Arc;

use std::path::Path;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;

use crate::connector::{BuildContext, Connector, ConnectorError, ResolvedConnector};
use crate::sandbox::Shared;
use crate::sandbox::tenant::BenchShape;

pub struct Vendor;

impl super::App for Vendor {
    const DRIVER: &'static str = "scim2";
    const FLOWS: &'static [crate::auth::oauth::Flow] = driver::FLOWS;
    type Twin = twin::State;

    const PATHS: &'static [&'static str] = &["/scim2/"];

    fn error(_path: &str, status: StatusCode, message: &str) -> Response {
        twin::error(status, None, message)
    }

    fn demo_config(base_url: &str, keys_dir: &Path) -> String {
        let mut out = String::from(
            r#"
# Two SCIM 2.0 apps on the generic `scim2` driver (connectors/zoom.toml,
# connectors/miro.toml), each on its own path of the sandbox.
"#,
        );
        for (i, app) in twin::DEMO_APPS.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out += &format!(
                r#"[connectors.{app}]
manifest = "{app}"

[connectors.{app}.api]
base_url = "{base_url}/scim2/{app}/v2"

[connectors.{app}.auth]
token_file = "{token}"
"#,
                token = keys_dir.join(format!("scim2-{app}-token")).display(),
            );
        }
        out
    }

    fn write_demo_keys(dir: &Path) -> std::io::Result<()> {
        for app in twin::DEMO_APPS {
            crate::sandbox::write_private(
                &dir.join(format!("scim2-{app}-token")),
                twin::demo_token(app).as_bytes(),
            )?;
        }
        Ok(())
    }

    fn driver(
        resolved: &ResolvedConnector,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(driver::Scim2Driver::build(resolved, ctx)?))
    }

    fn seed(bench: Option<&BenchShape>) -> twin::State {
        twin::State::seed_people(crate::sandbox::tenant::people_for(bench))
    }

    fn twin(_: &Shared) -> Router<Shared> {
        twin::routes()
    }
}
