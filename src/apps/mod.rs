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
use axum::http::StatusCode;
use axum::response::Response;

use crate::auth::authority::{self, Authority};
use crate::auth::cache::TokenCache;
use crate::auth::oauth::Flow;
use crate::connector::{BuildContext, Connector, ConnectorError, ResolvedConnector, TokenSource};
use std::path::Path;

use crate::sandbox::tenant::BenchShape;
use crate::sandbox::{Faults, Shared};
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

    /// The path prefixes the twin serves on the sandbox: a request is the
    /// vendor's when its path starts with one (the longest match wins), and
    /// then its errors, 404s, 405s and rate-limit answers are the vendor's.
    const PATHS: &'static [&'static str];

    /// An error answer in the vendor's own shape.
    fn error(path: &str, status: StatusCode, message: &str) -> Response;

    /// A path of the vendor's that no route serves.
    fn not_found(method: &str, path: &str) -> Response {
        let _ = method;
        Self::error(path, StatusCode::NOT_FOUND, "not found")
    }

    /// A known path asked with a method it does not serve (axum adds
    /// `Allow`).
    fn method_not_allowed(method: &str, path: &str) -> Response {
        Self::error(
            path,
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("HTTP method {method} is not allowed on {path}"),
        )
    }

    /// The vendor's rate-limit answer (the sandbox's `rate_429` fault),
    /// with the vendor's own signal for when to come back.
    fn rate_limited(path: &str, retry_after_secs: u64, faults: &Faults) -> Response {
        let _ = faults;
        crate::sandbox::with_retry_after(
            Self::error(path, StatusCode::TOO_MANY_REQUESTS, "Too many requests"),
            retry_after_secs,
        )
    }

    /// The vendor's connectors in the demo config, for a sandbox at
    /// `base_url` whose demo credentials are in `keys_dir`.
    fn demo_config(base_url: &str, keys_dir: &Path) -> String;

    /// Writes the demo credentials the demo config names into `dir`.
    fn write_demo_keys(dir: &Path) -> std::io::Result<()> {
        let _ = dir;
        Ok(())
    }

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

        /// The sandbox's answers in the shape of the vendor whose twin
        /// serves a path (longest prefix), for the shell's fallbacks and
        /// faults.
        pub struct Dialect {
            /// The vendor's field name in [`Twins`].
            pub name: &'static str,
            pub error: fn(&str, StatusCode, &str) -> Response,
            pub not_found: fn(&str, &str) -> Response,
            pub method_not_allowed: fn(&str, &str) -> Response,
            pub rate_limited: fn(&str, u64, &Faults) -> Response,
        }

        /// The dialect of the twin that serves `path`, if any does.
        pub fn dialect(path: &str) -> Option<Dialect> {
            let mut best: Option<(usize, Dialect)> = None;
            $(for prefix in <$app as App>::PATHS {
                if path.starts_with(prefix) && best.as_ref().is_none_or(|(n, _)| prefix.len() > *n) {
                    best = Some((prefix.len(), Dialect {
                        name: stringify!($field),
                        error: <$app as App>::error,
                        not_found: <$app as App>::not_found,
                        method_not_allowed: <$app as App>::method_not_allowed,
                        rate_limited: <$app as App>::rate_limited,
                    }));
                }
            })*
            best.map(|(_, d)| d)
        }

        /// The demo config's connectors, vendor by vendor in registry order.
        pub fn demo_config(base_url: &str, keys_dir: &Path) -> String {
            let mut out = String::new();
            $(out += &<$app as App>::demo_config(base_url, keys_dir);)*
            out
        }

        /// Writes every vendor's demo credentials into `dir`.
        pub fn write_demo_keys(dir: &Path) -> std::io::Result<()> {
            $(<$app as App>::write_demo_keys(dir)?;)*
            Ok(())
        }
    };
}

// One line per vendor: `field in the sandbox state: the vendor's App`. The
// order is the demo config's (and so the console's) order of connectors.
register! {
    google: google::Vendor,
    salesforce: salesforce::Vendor,
    slack: slack::Vendor,
    okta: okta::Vendor,
    scim2: scim2::Vendor,
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
