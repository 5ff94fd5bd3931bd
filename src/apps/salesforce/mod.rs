//! Salesforce: the REST API driver, its sign-in dialect (JWT bearer with the
//! consumer key, device flow), the sandbox twins of both, and the demo
//! connected app's key.

pub mod driver;
pub mod signin;
pub mod twin;
pub mod twin_oauth;

use std::sync::Arc;

use axum::Router;

use crate::auth::authority::Authority;
use crate::auth::oauth::{Flow, OAuthSettings};
use crate::connector::{BuildContext, Connector, ConnectorError, ResolvedConnector, TokenSource};
use crate::sandbox::Shared;
use crate::sandbox::tenant::BenchShape;

/// The demo connected app's private key: a demo value only the sandbox
/// accepts.
pub const DEMO_PRIVATE_KEY: &str = include_str!("demo.key.pem");
pub const DEMO_PUBLIC_KEY: &str = include_str!("demo.pub.pem");

pub struct Vendor;

impl super::App for Vendor {
    const DRIVER: &'static str = "salesforce";
    const FLOWS: &'static [crate::auth::oauth::Flow] = driver::FLOWS;
    type Twin = twin::State;

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
