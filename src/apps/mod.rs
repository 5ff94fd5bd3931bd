//! One folder per vendor: its driver, its sandbox twin, its sign-in dialect
//! when it has one, and its demo credentials, written and tested together.
//!
//! A vendor is registered once, in [`register!`] below, by its [`App`]: the
//! compiler then requires both halves (a driver without a twin, or a twin
//! without a driver, does not build), and every registry that depends on the
//! vendors (driver by name, the sandbox's routes and state, the sign-in
//! dialect) is generated from that one line.
//!
//! What every vendor shares lives below this module: the Connector trait and
//! the shared HTTP client in `connector`, the OAuth flows and token cache in
//! `auth`, the sandbox's server shell, faults and tenant people in `sandbox`.

pub mod google;
pub mod okta;
pub mod salesforce;
pub mod scim2;
pub mod slack;

use std::sync::{Arc, Mutex};

use axum::Router;

use crate::auth::authority::{self, Authority};
use crate::auth::cache::TokenCache;
use crate::auth::oauth::Flow;
use crate::connector::{BuildContext, Connector, ConnectorError, ResolvedConnector, TokenSource};
use crate::sandbox::Shared;
use crate::sandbox::tenant::BenchShape;
use crate::tomlfile::ConfigError;

/// A vendor: the driver offboard speaks to it with, and the twin the sandbox
/// emulates it with.
pub trait App {
    /// The `driver` its manifests name.
    const DRIVER: &'static str;
    /// The sign-in methods (`auth.flow`) the driver uses: any other is a
    /// config error, never a login that "succeeds" and fails on first use.
    const FLOWS: &'static [Flow];
    /// The twin's state in the sandbox (the vendor's demo tenant).
    type Twin: Send + 'static;

    /// Builds the driver for a resolved connector.
    fn driver(
        resolved: &ResolvedConnector,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, ConnectorError>;

    /// The twin's demo tenant (plus the benchmark's extra grants).
    fn seed(bench: Option<&BenchShape>) -> Self::Twin;

    /// The twin's routes (its API, its token endpoints).
    fn twin(state: &Shared) -> Router<Shared>;

    /// The vendor's authorization server, for interactive sign-in and
    /// cached tokens: the standard one unless the vendor has a dialect.
    fn authority(
        resolved: &ResolvedConnector,
        http: reqwest::Client,
    ) -> Result<Arc<dyn Authority>, ConnectorError> {
        authority::standard(resolved, http)
    }

    /// The token source the connector's `[auth]` asks for: the shared flows
    /// unless the vendor's differ.
    fn token_source(
        resolved: &ResolvedConnector,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn TokenSource>, ConnectorError> {
        crate::auth::token_source(resolved, ctx, Self::authority)
    }
}

macro_rules! register {
    ($($field:ident: $app:ty),* $(,)?) => {
        /// Every vendor twin's state, one field per registered vendor (the
        /// sandbox's state derefs to it, so a handler reads `s.google`).
        pub struct Twins {
            $(pub $field: Mutex<<$app as App>::Twin>,)*
        }

        impl Twins {
            /// The demo tenant of every vendor.
            pub fn seed(bench: Option<&BenchShape>) -> Self {
                Self { $($field: Mutex::new(<$app as App>::seed(bench)),)* }
            }
        }

        /// The driver names the registry knows.
        pub const DRIVERS: &[&str] = &[$(<$app as App>::DRIVER),*];

        /// Builds the driver a resolved connector names.
        pub fn build(
            resolved: &ResolvedConnector,
            ctx: &BuildContext,
        ) -> Result<Arc<dyn Connector>, ConnectorError> {
            let driver = resolved.manifest.driver.as_str();
            $(if driver == <$app as App>::DRIVER {
                return <$app as App>::driver(resolved, ctx);
            })*
            Err(ConnectorError::Config(format!(
                "connector `{}`: unknown driver `{driver}` (known: {})",
                resolved.id,
                DRIVERS.join(", ")
            )))
        }

        /// The sign-in methods a driver uses; None for a driver this build
        /// does not have.
        pub fn driver_flows(driver: &str) -> Option<&'static [Flow]> {
            $(if driver == <$app as App>::DRIVER {
                return Some(<$app as App>::FLOWS);
            })*
            None
        }

        /// A connector's authorization server, in its vendor's dialect.
        pub fn authority(
            resolved: &ResolvedConnector,
            http: reqwest::Client,
        ) -> Result<Arc<dyn Authority>, ConnectorError> {
            let driver = resolved.manifest.driver.as_str();
            $(if driver == <$app as App>::DRIVER {
                return <$app as App>::authority(resolved, http);
            })*
            authority::standard(resolved, http)
        }

        /// The token source of a connector's `[auth]`, in its vendor's terms.
        pub fn token_source(
            resolved: &ResolvedConnector,
            ctx: &BuildContext,
        ) -> Result<Arc<dyn TokenSource>, ConnectorError> {
            let driver = resolved.manifest.driver.as_str();
            $(if driver == <$app as App>::DRIVER {
                return <$app as App>::token_source(resolved, ctx);
            })*
            crate::auth::token_source(resolved, ctx, authority::standard)
        }

        /// Every twin's routes.
        pub fn twins(state: &Shared) -> Router<Shared> {
            Router::new()$(.merge(<$app as App>::twin(state)))*
        }
    };
}

// One line per vendor: `field in the sandbox state: the vendor's App`.
register! {
    google: google::Vendor,
    okta: okta::Vendor,
    salesforce: salesforce::Vendor,
    scim2: scim2::Vendor,
    slack: slack::Vendor,
}

/// The authorization server and token cache of a connector, for the
/// sign-in flows (`offboard login`, `logout`, the console's `:login`).
pub fn sign_in(
    resolved: &ResolvedConnector,
    http: reqwest::Client,
    data_dir: &std::path::Path,
) -> Result<(Arc<dyn Authority>, TokenCache), ConnectorError> {
    let oauth = authority(resolved, http)?;
    let cache = crate::auth::source::cache_for(oauth.settings(), data_dir);
    Ok((oauth, cache))
}

/// Signs a connector out: revokes its cached token at its authorization
/// server, then deletes the cache (see [`crate::auth::login::logout`]).
pub async fn sign_out(
    resolved: &ResolvedConnector,
    http: reqwest::Client,
    data_dir: &std::path::Path,
) -> Result<crate::auth::login::LogoutReport, ConnectorError> {
    let (oauth, cache) = sign_in(resolved, http, data_dir)?;
    crate::auth::login::logout(oauth.as_ref(), &cache).await
}

/// Refuses an `auth.flow` the connector's driver does not use: it would
/// "succeed" at `offboard login` and then fail on first use.
pub fn check_flow(resolved: &ResolvedConnector) -> Result<(), ConfigError> {
    let id = &resolved.id;
    if let Some(f) = resolved.manifest.auth.flow.as_deref() {
        let names = |flows: &[Flow]| {
            flows
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let all = [
            Flow::AuthorizationCode,
            Flow::DeviceCode,
            Flow::ClientCredentials,
            Flow::JwtBearer,
            Flow::Static,
        ];
        let allowed = driver_flows(&resolved.manifest.driver).unwrap_or(&all);
        if !Flow::parse(f).is_some_and(|flow| allowed.contains(&flow)) {
            return Err(ConfigError::Key {
                key: format!("connectors.{id}.auth.flow"),
                expected: format!(
                    "a sign-in method the `{}` driver uses: {}",
                    crate::sanitize::clean_max(&resolved.manifest.driver, 40),
                    names(allowed)
                ),
                found: format!("`{}`", crate::sanitize::clean_max(f, 40)),
            });
        }
    }
    Ok(())
}
