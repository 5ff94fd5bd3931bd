//! Salesforce's authorization server. The web server flow (authorization
//! code with PKCE), refresh and revocation are standard and go through
//! [`OAuth`]; the device flow is Salesforce's own, at the token endpoint:
//!
//! - Start (when no `device_url` is configured; with one, the standard
//!   RFC 8628 request goes there and is polled the standard way):
//!   `POST {login}/services/oauth2/token` with
//!   `response_type=device_code&client_id&scope` answers
//!   `{device_code, user_code, verification_uri, interval}` (no
//!   `expires_in`: the code is taken to live 10 minutes).
//! - Poll: `POST {login}/services/oauth2/token` with
//!   `grant_type=device&client_id&code={device_code}` (and `client_secret`
//!   when the connected app has one). Until approval the answer is HTTP 400
//!   `{"error":"authorization_pending","error_description":…}`; `slow_down`
//!   adds 5 seconds to the interval; `access_denied` and `expired_token` end
//!   the wait. Success is `{access_token, refresh_token, scope,
//!   instance_url, id, token_type, issued_at, signature}` without
//!   `expires_in` (the session lifetime is the org's setting).

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::auth::authority::{Authority, DeviceGrant, DeviceInner};
use crate::auth::cache::StoredToken;
use crate::auth::oauth::{AuthRequest, OAuth, OAuthSettings, TokenSet};
use crate::connector::{ConnectorError, ResolvedConnector};
use crate::sanitize;
use crate::secret::Secret;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_BODY: usize = 1024 * 1024;
/// Device codes' lifetime when the answer does not say.
const DEVICE_TTL: Duration = Duration::from_secs(600);
/// Polling interval when the answer does not say (RFC 8628's default).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// Salesforce's authorization server for one connector.
pub struct SalesforceOAuth {
    standard: OAuth,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct DeviceAnswer {
    device_code: String,
    user_code: String,
    verification_uri: String,
    #[serde(default)]
    interval: Option<u64>,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    instance_url: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// The token and revocation endpoints default to the login host's
/// (`{api.login_url}/services/oauth2/token` and `/revoke`).
pub fn with_login_defaults(r: &ResolvedConnector) -> ResolvedConnector {
    let mut r = r.clone();
    if let Some(login) = r.manifest.api.get("login_url").cloned() {
        let login = login.trim_end_matches('/').to_string();
        let a = &mut r.manifest.auth;
        if a.token_url.is_none() {
            a.token_url = Some(format!("{login}/services/oauth2/token"));
        }
        if a.revoke_url.is_none() {
            a.revoke_url = Some(format!("{login}/services/oauth2/revoke"));
        }
    }
    r
}

impl SalesforceOAuth {
    pub fn new(settings: OAuthSettings, http: reqwest::Client) -> Result<Self, ConnectorError> {
        Ok(Self {
            standard: OAuth::new(settings, http.clone())?,
            http,
        })
    }

    fn s(&self) -> &OAuthSettings {
        &self.standard.settings
    }

    fn client_secret(&self) -> &str {
        self.s().client_secret.as_ref().map_or("", |s| s.expose())
    }

    async fn post(
        &self,
        mut form: Vec<(&str, String)>,
        what: &str,
    ) -> Result<(u16, Vec<u8>), ConnectorError> {
        form.push(("client_id", self.s().client_id.clone()));
        if let Some(secret) = &self.s().client_secret {
            form.push(("client_secret", secret.expose().to_string()));
        }
        let mut resp = self
            .http
            .post(self.s().token_url.clone())
            .timeout(REQUEST_TIMEOUT)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                ConnectorError::Network(if e.is_timeout() {
                    format!("{what}: the authorization server did not answer in time")
                } else {
                    format!("{what}: cannot reach the authorization server")
                })
            })?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|_| ConnectorError::Network(format!("{what}: the answer was cut off")))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ConnectorError::BadResponse(format!(
                    "{what}: answer larger than {MAX_BODY} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }

    fn error(status: u16, body: &[u8], what: &str, carried: &[&str]) -> ConnectorError {
        if status == 429 || status >= 500 {
            return ConnectorError::Api {
                status,
                code: String::new(),
                message: format!("{what}: the token endpoint is unavailable"),
            };
        }
        match serde_json::from_slice::<ErrorAnswer>(body) {
            Ok(e) => ConnectorError::Auth(format!(
                "{what}: the authorization server said {}",
                crate::auth::server_said(
                    &e.error,
                    e.error_description.as_deref(),
                    carried,
                    " (",
                    ")"
                )
            )),
            Err(_) => {
                ConnectorError::Auth(format!("{what}: the token endpoint answered HTTP {status}"))
            }
        }
    }
}

#[async_trait]
impl Authority for SalesforceOAuth {
    fn settings(&self) -> &OAuthSettings {
        self.s()
    }

    fn authorize(&self, redirect_uri: &str) -> Result<AuthRequest, ConnectorError> {
        self.standard.authorize(redirect_uri)
    }

    async fn exchange_code(
        &self,
        request: AuthRequest,
        code: &Secret,
    ) -> Result<TokenSet, ConnectorError> {
        self.standard.exchange_code(request, code).await
    }

    async fn refresh(&self, refresh_token: &Secret) -> Result<TokenSet, ConnectorError> {
        self.standard.refresh(refresh_token).await
    }

    async fn device_start(&self) -> Result<DeviceGrant, ConnectorError> {
        // A device authorization endpoint of its own is the standard one
        // (RFC 8628 §3.1): its request, and its polling.
        if self.s().device_url.is_some() {
            return Authority::device_start(&self.standard).await;
        }
        let what = "device authorization";
        let form = vec![
            ("response_type", "device_code".to_string()),
            ("scope", self.s().scopes.join(" ")),
        ];
        let (status, body) = self.post(form, what).await?;
        if status != 200 {
            return Err(Self::error(status, &body, what, &[self.client_secret()]));
        }
        let d: DeviceAnswer = serde_json::from_slice(&body).map_err(|_| {
            ConnectorError::BadResponse(format!(
                "{what}: the answer is not a device code (device_code, user_code, verification_uri)"
            ))
        })?;
        Ok(DeviceGrant {
            user_code: sanitize::clean_max(&d.user_code, 64),
            verification_uri: sanitize::clean_max(&d.verification_uri, 500),
            verification_uri_complete: None,
            expires_in: d.expires_in.map(Duration::from_secs).unwrap_or(DEVICE_TTL),
            interval: d
                .interval
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_INTERVAL),
            inner: DeviceInner::Code(Secret::new(d.device_code)),
        })
    }

    async fn device_finish(&self, grant: DeviceGrant) -> Result<TokenSet, ConnectorError> {
        let what = "device sign-in";
        let DeviceInner::Code(code) = &grant.inner else {
            return self.standard.device_finish(grant).await;
        };
        let deadline = tokio::time::Instant::now() + grant.expires_in;
        let mut interval = grant.interval;
        loop {
            tokio::time::sleep(interval).await;
            if tokio::time::Instant::now() > deadline {
                return Err(ConnectorError::Auth(format!(
                    "{what}: the authorization server said expired_token (the code was not approved in time; sign in again)"
                )));
            }
            let form = vec![
                ("grant_type", "device".to_string()),
                ("code", code.expose().to_string()),
            ];
            let (status, body) = match self.post(form, what).await {
                Ok(r) => r,
                // A dropped poll is retried at the next interval.
                Err(ConnectorError::Network(_)) => continue,
                Err(e) => return Err(e),
            };
            if status == 200 {
                let t: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
                    ConnectorError::BadResponse(format!(
                        "{what}: the authorization server's answer is not a token response"
                    ))
                })?;
                return Ok(TokenSet {
                    access_token: Secret::new(t.access_token),
                    refresh_token: t.refresh_token.map(Secret::new),
                    expires_in: t.expires_in.map(Duration::from_secs),
                    scopes: t
                        .scope
                        .map(|s| s.split_whitespace().map(str::to_string).collect()),
                    instance_url: t.instance_url.map(|u| sanitize::clean_max(&u, 300)),
                });
            }
            if status == 429 || status >= 500 {
                continue;
            }
            let answer = serde_json::from_slice::<ErrorAnswer>(&body)
                .map(|e| e.error)
                .unwrap_or_default();
            match answer.as_str() {
                "authorization_pending" => {}
                "slow_down" => interval += Duration::from_secs(5),
                _ => {
                    return Err(Self::error(
                        status,
                        &body,
                        what,
                        &[code.expose(), self.client_secret()],
                    ));
                }
            }
        }
    }

    fn can_revoke(&self) -> bool {
        self.standard.can_revoke()
    }

    async fn revoke(&self, stored: &StoredToken) -> Result<(), ConnectorError> {
        Authority::revoke(&self.standard, stored).await
    }
}
