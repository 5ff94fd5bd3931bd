//! An authorization server as the sign-in flows and the token cache see it:
//! the standard one (RFC 6749 and friends, [`OAuth`]) or a vendor's own
//! dialect (Slack OAuth v2, the Salesforce device flow). Which one a
//! connector talks to follows from its driver.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use oauth2::StandardDeviceAuthorizationResponse;

use super::cache::StoredToken;
use super::oauth::{AuthRequest, OAuth, OAuthSettings, TokenSet, error_code};
use crate::connector::{ConnectorError, ResolvedConnector};
use crate::sanitize;
use crate::secret::Secret;

/// A started device sign-in: what to show, and what to poll with.
pub struct DeviceGrant {
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: Duration,
    pub interval: Duration,
    pub(crate) inner: DeviceInner,
}

pub(crate) enum DeviceInner {
    /// RFC 8628, polled by the `oauth2` crate.
    Standard(Box<StandardDeviceAuthorizationResponse>),
    /// A vendor's own device code, polled by its authority.
    Code(Secret),
}

impl std::fmt::Debug for DeviceGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceGrant")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// One connector's authorization server.
#[async_trait]
pub trait Authority: Send + Sync {
    fn settings(&self) -> &OAuthSettings;

    /// A fresh authorization request (state, and PKCE where used).
    fn authorize(&self, redirect_uri: &str) -> Result<AuthRequest, ConnectorError>;

    /// Exchanges the code the redirect brought back.
    async fn exchange_code(
        &self,
        request: AuthRequest,
        code: &Secret,
    ) -> Result<TokenSet, ConnectorError>;

    /// Uses a refresh token; the answer may carry a new one (rotation).
    async fn refresh(&self, refresh_token: &Secret) -> Result<TokenSet, ConnectorError>;

    /// Starts a device sign-in.
    async fn device_start(&self) -> Result<DeviceGrant, ConnectorError>;

    /// Polls until the device sign-in is approved, denied or expired.
    async fn device_finish(&self, grant: DeviceGrant) -> Result<TokenSet, ConnectorError>;

    fn can_revoke(&self) -> bool;

    /// Ends the cached sign-in at the server.
    async fn revoke(&self, stored: &StoredToken) -> Result<(), ConnectorError>;

    /// Whether a refresh failure means the sign-in is over (revoked,
    /// expired, rotated away) rather than a passing fault.
    fn sign_in_ended(&self, e: &ConnectorError) -> bool {
        error_code(e) == Some("invalid_grant")
    }
}

#[async_trait]
impl Authority for OAuth {
    fn settings(&self) -> &OAuthSettings {
        &self.settings
    }

    fn authorize(&self, redirect_uri: &str) -> Result<AuthRequest, ConnectorError> {
        OAuth::authorize(self, redirect_uri)
    }

    async fn exchange_code(
        &self,
        request: AuthRequest,
        code: &Secret,
    ) -> Result<TokenSet, ConnectorError> {
        OAuth::exchange_code(self, request, code).await
    }

    async fn refresh(&self, refresh_token: &Secret) -> Result<TokenSet, ConnectorError> {
        OAuth::refresh(self, refresh_token).await
    }

    async fn device_start(&self) -> Result<DeviceGrant, ConnectorError> {
        let d = self.device_authorize().await?;
        Ok(DeviceGrant {
            user_code: sanitize::clean_max(d.user_code().secret(), 64),
            verification_uri: sanitize::clean_max(d.verification_uri().as_str(), 500),
            verification_uri_complete: d
                .verification_uri_complete()
                .map(|u| sanitize::clean_max(u.secret(), 600)),
            expires_in: d.expires_in(),
            interval: d.interval(),
            inner: DeviceInner::Standard(Box::new(d)),
        })
    }

    async fn device_finish(&self, grant: DeviceGrant) -> Result<TokenSet, ConnectorError> {
        match grant.inner {
            DeviceInner::Standard(d) => self.device_poll(&d).await,
            DeviceInner::Code(_) => Err(ConnectorError::Config(
                "a vendor device code cannot be polled at a standard token endpoint".into(),
            )),
        }
    }

    fn can_revoke(&self) -> bool {
        OAuth::can_revoke(self)
    }

    async fn revoke(&self, stored: &StoredToken) -> Result<(), ConnectorError> {
        match &stored.refresh_token {
            Some(rt) => self.revoke_refresh(rt).await,
            None => self.revoke_access(&stored.access_token).await,
        }
    }
}

/// How a connector's authorization server is built: its vendor's dialect
/// (`crate::apps::authority`) or [`standard`].
pub type Dialect =
    fn(&ResolvedConnector, reqwest::Client) -> Result<Arc<dyn Authority>, ConnectorError>;

/// The standard authorization server of a connector (RFC 6749, 7009, 8628),
/// for drivers without a dialect of their own.
pub fn standard(
    resolved: &ResolvedConnector,
    http: reqwest::Client,
) -> Result<Arc<dyn Authority>, ConnectorError> {
    Ok(Arc::new(OAuth::new(
        OAuthSettings::from_resolved(resolved)?,
        http,
    )?))
}
