//! Slack: the Web API and SCIM driver, its sign-in dialect (OAuth v2), and
//! the sandbox twins of both.

pub mod driver;
pub mod signin;
pub mod twin;
pub mod twin_oauth;

use std::sync::Arc;

use axum::Router;

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
