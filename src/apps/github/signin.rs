//! GitHub App sign-in: an RS256 JWT (`iss` = the app's id or client id,
//! `iat` a minute in the past for clock drift, `exp` within GitHub's ten
//! minutes) authenticates as the app; `POST
//! /app/installations/{installation_id}/access_tokens` with it gives an
//! installation access token (`{token, expires_at, permissions}`, an hour),
//! renewed before it expires and after a 401.
//!
//! The token request goes through the shared client (retries, rate limits,
//! redaction), authenticated by the JWT as its token source, and its answer
//! is never quoted in an error (it holds the token).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use crate::connector::http::{ApiClient, ApiRequest};
use crate::connector::{BuildContext, ConnectorError, ResolvedConnector, TokenSource};
use crate::secret::Secret;

/// Renew at most this long before expiry (less for short-lived tokens).
const MARGIN: Duration = Duration::from_secs(300);

#[derive(Serialize)]
struct AppClaims<'a> {
    iss: &'a str,
    iat: u64,
    exp: u64,
}

/// Signs the app's JWTs: a fresh one for every request (they are cheap and
/// live under ten minutes).
pub struct AppJwt {
    app_id: String,
    key: EncodingKey,
}

impl AppJwt {
    pub fn new(app_id: &str, private_key_pem: &Secret) -> Result<Self, ConnectorError> {
        let key = EncodingKey::from_rsa_pem(private_key_pem.expose().as_bytes()).map_err(|_| {
            ConnectorError::Config(
                "the GitHub App's private key is not an RSA key in PEM form".into(),
            )
        })?;
        Ok(Self {
            app_id: app_id.to_string(),
            key,
        })
    }

    pub fn sign(&self) -> Result<Secret, ConnectorError> {
        let now = chrono::Utc::now().timestamp().max(60) as u64;
        let claims = AppClaims {
            iss: &self.app_id,
            iat: now - 60,
            exp: now + 540,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map(Secret::new)
            .map_err(|e| ConnectorError::Auth(format!("cannot sign the GitHub App JWT: {e}")))
    }
}

#[async_trait]
impl TokenSource for AppJwt {
    async fn token(&self) -> Result<Secret, ConnectorError> {
        self.sign()
    }

    async fn invalidate(&self, _rejected: &Secret) {}
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: Secret,
    expires_at: String,
    #[serde(default)]
    permissions: serde_json::Map<String, serde_json::Value>,
}

/// An installation access token, cached until shortly before it expires.
pub struct InstallationToken {
    client: ApiClient,
    url: Url,
    cached: Mutex<Option<(Secret, Instant)>>,
    granted: std::sync::Mutex<Option<Vec<String>>>,
}

impl InstallationToken {
    /// From `[auth]` `client_id` (the app id or client id) and `key_file`,
    /// and `[settings]` `installation_id`.
    pub fn from_resolved(
        r: &ResolvedConnector,
        ctx: &BuildContext,
        base: &Url,
        installation_id: u64,
    ) -> Result<Self, ConnectorError> {
        let a = &r.manifest.auth;
        let app_id = a.client_id.as_deref().or(a.issuer.as_deref()).ok_or_else(|| {
            ConnectorError::Config(format!(
                "key `connectors.{}.auth.client_id`: expected the GitHub App's id or client id, found nothing",
                r.id
            ))
        })?;
        let key_path = a.key_file.as_deref().map(|p| r.path(p)).ok_or_else(|| {
            ConnectorError::Config(format!(
                "key `connectors.{}.auth.key_file`: expected the GitHub App's private key (PEM), found nothing",
                r.id
            ))
        })?;
        let pem = std::fs::read_to_string(&key_path).map_err(|e| {
            ConnectorError::Config(format!("key file {}: cannot read: {e}", key_path.display()))
        })?;
        let jwt = AppJwt::new(app_id, &Secret::new(pem))?;
        let client = ApiClient::new(
            ctx.http.clone(),
            r.http_settings(),
            std::slice::from_ref(base),
            Some(Arc::new(jwt)),
            Arc::new(super::driver::GitHubPolicy),
            ctx.notices.clone(),
        );
        let url = client.url(
            base,
            &[
                "app",
                "installations",
                &installation_id.to_string(),
                "access_tokens",
            ],
        )?;
        Ok(Self {
            client,
            url,
            cached: Mutex::new(None),
            granted: std::sync::Mutex::new(None),
        })
    }

    async fn fetch(&self) -> Result<(Secret, Instant), ConnectorError> {
        let req = super::driver::headers(ApiRequest::new(Method::POST, self.url.clone()))
            .idempotent(true)
            .secret_answer();
        let resp = self.client.send(req).await.map_err(|e| match e {
            ConnectorError::Api {
                status: status @ (401 | 403 | 404),
                ..
            } => ConnectorError::Auth(format!(
                "the GitHub App could not get an installation token (HTTP {status}): check auth.client_id, the key and settings.installation_id"
            )),
            ConnectorError::Auth(why) => ConnectorError::Auth(format!(
                "the GitHub App could not get an installation token (check auth.client_id, the key and settings.installation_id): {why}"
            )),
            e => e,
        })?;
        let answer: TokenAnswer = serde_json::from_slice(&resp.body).map_err(|_| {
            ConnectorError::BadResponse(
                "the installation token answer is not {token, expires_at} (not shown: it may hold a credential)".into(),
            )
        })?;
        let expires = chrono::DateTime::parse_from_rfc3339(&answer.expires_at)
            .map_err(|_| {
                ConnectorError::BadResponse(
                    "the installation token's expires_at is not a date".into(),
                )
            })?
            .with_timezone(&chrono::Utc);
        let lifetime = (expires - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        let margin = MARGIN.min(lifetime / 4);
        *self.granted.lock().expect("granted lock") = Some(
            answer
                .permissions
                .iter()
                .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap_or("?")))
                .collect(),
        );
        Ok((answer.token, Instant::now() + lifetime - margin))
    }
}

#[async_trait]
impl TokenSource for InstallationToken {
    async fn token(&self) -> Result<Secret, ConnectorError> {
        let mut cached = self.cached.lock().await;
        if let Some((t, renew_at)) = cached.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(t.clone());
        }
        let (t, renew_at) = self.fetch().await?;
        *cached = Some((t.clone(), renew_at));
        Ok(t)
    }

    async fn invalidate(&self, rejected: &Secret) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|(t, _)| t == rejected) {
            *cached = None;
        }
    }

    /// The installation's permissions, as `name:level`.
    fn granted_scopes(&self) -> Option<Vec<String>> {
        self.granted.lock().expect("granted lock").clone()
    }
}
