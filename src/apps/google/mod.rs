//! Google Workspace: the Admin SDK Directory and Licensing driver, its
//! sandbox twin, and the demo tenant's service-account key.

pub mod driver;
pub mod twin;

use std::sync::Arc;

use axum::Router;

use crate::connector::{BuildContext, Connector, ConnectorError, ResolvedConnector};
use crate::sandbox::Shared;
use crate::sandbox::tenant::BenchShape;

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
