//! Okta: the Management API driver (API token or an OAuth service app with
//! `private_key_jwt` client credentials, both through the shared sign-in
//! code), its sandbox twin, and the demo service app's key.

pub mod driver;
pub mod twin;

use std::sync::Arc;

use axum::Router;

use crate::connector::{BuildContext, Connector, ConnectorError, ResolvedConnector};
use crate::sandbox::Shared;
use crate::sandbox::tenant::BenchShape;

/// The demo service app's key pair: demo values only the sandbox accepts.
pub const DEMO_PRIVATE_KEY: &str = include_str!("demo.key.pem");
pub const DEMO_PUBLIC_KEY: &str = include_str!("demo.pub.pem");

pub struct Vendor;

impl super::App for Vendor {
    const DRIVER: &'static str = "okta";
    const FLOWS: &'static [crate::auth::oauth::Flow] = driver::FLOWS;
    type Twin = twin::State;

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
