//! Any SCIM 2.0 app (RFC 7643/7644): the generic `scim2` driver, its filter
//! grammar, and the sandbox twin that serves several SCIM apps at once on
//! their own path prefixes (`/scim2/{app}/v2/...`) with their own tokens.
//! A new SCIM app needs a manifest in `connectors/` and a config entry, no
//! code.

pub mod driver;
pub mod filter;
pub mod twin;

use std::sync::Arc;

use axum::Router;

use crate::connector::{BuildContext, Connector, ConnectorError, ResolvedConnector};
use crate::sandbox::Shared;
use crate::sandbox::tenant::BenchShape;

pub struct Vendor;

impl super::App for Vendor {
    const DRIVER: &'static str = "scim2";
    const FLOWS: &'static [crate::auth::oauth::Flow] = driver::FLOWS;
    type Twin = twin::State;

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
