//! JWT bearer grant (RFC 7523): Google service accounts with domain-wide
//! delegation and Salesforce's JWT bearer flow. The assertion is RS256.

use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::{Cached, TokenResponse, TokenSource, oauth_error};
use crate::connector::ConnectorError;
use crate::secret::Secret;

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

/// A `private_key_jwt` client assertion (RFC 7523 §3, OpenID Connect Core
/// §9): RS256, `iss` = `sub` = the client id, `aud` = the token endpoint,
/// valid five minutes, with a random `jti` so that a server refusing
/// replays (Okta does) takes each one once. `x5t` names the key's
/// certificate by its thumbprint, for servers that look the key up by it
/// (Microsoft).
pub fn client_assertion(
    client_id: &str,
    token_url: &str,
    private_key_pem: &Secret,
    x5t: Option<&str>,
) -> Result<Secret, ConnectorError> {
    let key = EncodingKey::from_rsa_pem(private_key_pem.expose().as_bytes()).map_err(|_| {
        ConnectorError::Config("the client's private key is not an RSA key in PEM form".into())
    })?;
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let claims = AssertionClaims {
        iss: client_id,
        sub: client_id,
        aud: token_url,
        iat: now,
        exp: now + 300,
        jti: hex::encode(rand::random::<[u8; 16]>()),
    };
    let mut header = Header::new(Algorithm::RS256);
    header.x5t = x5t.map(str::to_string);
    jsonwebtoken::encode(&header, &claims, &key)
        .map(Secret::new)
        .map_err(|e| ConnectorError::Auth(format!("cannot sign the client assertion: {e}")))
}

/// The `x5t` of an X.509 certificate in PEM form: the base64url SHA-1
/// thumbprint of its DER encoding (RFC 7515 §4.1.7).
pub fn certificate_thumbprint(pem: &str) -> Result<String, ConnectorError> {
    use base64::Engine;
    use sha1::Digest;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha1::Sha1::digest(certificate_der(pem)?)))
}

/// The DER encoding of an X.509 certificate in PEM form.
pub fn certificate_der(pem: &str) -> Result<Vec<u8>, ConnectorError> {
    use base64::Engine;
    let bad =
        || ConnectorError::Config("the certificate is not an X.509 certificate in PEM form".into());
    let start = pem.find("-----BEGIN CERTIFICATE-----").ok_or_else(bad)?;
    let body = &pem[start + "-----BEGIN CERTIFICATE-----".len()..];
    let end = body.find("-----END CERTIFICATE-----").ok_or_else(bad)?;
    let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| bad())?;
    if der.first() != Some(&0x30) {
        return Err(bad());
    }
    Ok(der)
}

/// Renew this long before expiry.
const MARGIN: Duration = Duration::from_secs(60);

/// A Google service-account key file (the fields used here).
#[derive(Deserialize)]
pub struct ServiceAccountKey {
    pub client_email: String,
    pub private_key: Secret,
    #[serde(default)]
    pub private_key_id: Option<String>,
    #[serde(default)]
    pub token_uri: Option<String>,
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

impl ServiceAccountKey {
    pub fn load(path: &std::path::Path) -> Result<Self, ConnectorError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConnectorError::Config(format!(
                "service-account key {}: cannot read: {e}",
                path.display()
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| {
            ConnectorError::Config(format!(
                "service-account key {}: not a service-account JSON key (expected client_email and private_key): line {} column {}",
                path.display(),
                e.line(),
                e.column()
            ))
        })
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

/// Exchanges a signed assertion for an access token, cached until shortly
/// before it expires.
pub struct JwtBearer {
    http: reqwest::Client,
    token_url: Url,
    issuer: String,
    subject: Option<String>,
    scope: Option<String>,
    audience: String,
    key: EncodingKey,
    key_id: Option<String>,
    /// Lifetime asked for (Google allows at most one hour).
    lifetime: Duration,
    cache: Mutex<Option<Cached>>,
}

pub struct JwtBearerConfig {
    pub token_url: Url,
    pub issuer: String,
    pub subject: Option<String>,
    pub scopes: Vec<String>,
    /// Defaults to the token URL.
    pub audience: Option<String>,
    pub private_key_pem: Secret,
    pub key_id: Option<String>,
}

impl JwtBearer {
    pub fn new(http: reqwest::Client, cfg: JwtBearerConfig) -> Result<Self, ConnectorError> {
        let key =
            EncodingKey::from_rsa_pem(cfg.private_key_pem.expose().as_bytes()).map_err(|_| {
                ConnectorError::Config("private key is not an RSA key in PEM form".into())
            })?;
        Ok(Self {
            http,
            audience: cfg
                .audience
                .unwrap_or_else(|| cfg.token_url.as_str().to_string()),
            token_url: cfg.token_url,
            issuer: cfg.issuer,
            subject: cfg.subject,
            scope: (!cfg.scopes.is_empty()).then(|| cfg.scopes.join(" ")),
            key,
            key_id: cfg.key_id,
            lifetime: Duration::from_secs(3600),
            cache: Mutex::new(None),
        })
    }

    /// Sets how long each signed assertion is valid (Salesforce accepts an
    /// `exp` at most about three minutes ahead; Google at most one hour).
    pub fn with_assertion_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// The signed assertion (RS256).
    pub fn assertion(&self) -> Result<Secret, ConnectorError> {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let claims = Claims {
            iss: &self.issuer,
            sub: self.subject.as_deref(),
            scope: self.scope.as_deref(),
            aud: &self.audience,
            iat: now,
            exp: now + self.lifetime.as_secs(),
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(Secret::new)
            .map_err(|e| ConnectorError::Auth(format!("cannot sign the assertion: {e}")))
    }

    /// One token request, retried (with backoff) when the endpoint is
    /// unreachable, times out, answers 5xx or says it is rate limited (429,
    /// Salesforce's 403 `REQUEST_LIMIT_EXCEEDED`, Google's
    /// `rateLimitExceeded`): an outage or a limit of the token endpoint is
    /// not a credentials problem. The waits stay within [`RETRY_BUDGET`]
    /// (a `Retry-After` beyond it ends the retries).
    async fn fetch(&self) -> Result<Cached, ConnectorError> {
        const ATTEMPTS: u32 = 3;
        const LIMITED_ATTEMPTS: u32 = 6;
        let mut attempt = 0;
        let mut waited = Duration::ZERO;
        let body = loop {
            attempt += 1;
            match self.request_once().await {
                Ok(body) => break body,
                Err(e) if is_transient(&e) => {
                    let limited = matches!(e, ConnectorError::RateLimited { .. });
                    let max = if limited { LIMITED_ATTEMPTS } else { ATTEMPTS };
                    let backoff = Duration::from_millis(250 * u64::from(1u32 << attempt.min(5)))
                        + Duration::from_millis(rand::random_range(0..200));
                    let wait = match &e {
                        ConnectorError::RateLimited {
                            retry_after: Some(d),
                            ..
                        } => *d,
                        _ => backoff,
                    };
                    if attempt >= max || waited + wait > RETRY_BUDGET {
                        return Err(e);
                    }
                    waited += wait;
                    tracing::info!(token_url = %self.token_url, attempt, ?wait, limited, "token endpoint unavailable or rate limited; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        };
        let t: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            ConnectorError::BadResponse("token endpoint answer has no access_token".into())
        })?;
        let ttl = Duration::from_secs(t.expires_in.unwrap_or(1800).clamp(1, 86_400));
        tracing::info!(token_url = %self.token_url, ttl_secs = ttl.as_secs(), "access token obtained");
        Ok(Cached {
            token: Secret::new(t.access_token),
            expires: Instant::now() + ttl,
            lifetime: ttl,
        })
    }
}

impl JwtBearer {
    async fn request_once(&self) -> Result<bytes::Bytes, ConnectorError> {
        let assertion = self.assertion()?;
        let resp = self
            .http
            .post(self.token_url.clone())
            .timeout(Duration::from_secs(30))
            .form(&[
                ("grant_type", GRANT_TYPE),
                ("assertion", assertion.expose()),
            ])
            .send()
            .await
            .map_err(|e| {
                ConnectorError::Network(if e.is_timeout() {
                    "token endpoint timed out".into()
                } else {
                    "cannot reach the token endpoint".into()
                })
            })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|_| ConnectorError::Network("token endpoint dropped the connection".into()))?;
        if !status.is_success() {
            return Err(
                match oauth_error(status.as_u16(), &body, &[assertion.expose()]) {
                    ConnectorError::RateLimited { message, .. } => ConnectorError::RateLimited {
                        retry_after: crate::connector::http::retry_after(&headers),
                        message,
                    },
                    e => e,
                },
            );
        }
        Ok(body)
    }
}

/// How long token requests may wait in total between retries.
pub const RETRY_BUDGET: Duration = Duration::from_secs(30);

fn is_transient(e: &ConnectorError) -> bool {
    matches!(
        e,
        ConnectorError::Network(_) | ConnectorError::Timeout | ConnectorError::RateLimited { .. }
    ) || matches!(e, ConnectorError::Api { status, .. } if *status == 429 || *status >= 500)
}

#[async_trait]
impl TokenSource for JwtBearer {
    async fn token(&self) -> Result<Secret, ConnectorError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref() {
            let margin = MARGIN.min(
                Duration::from_secs(5)
                    .max(c.expires.saturating_duration_since(Instant::now()) / 10),
            );
            if c.fresh(margin) {
                return Ok(c.token.clone());
            }
        }
        let fresh = self.fetch().await?;
        let token = fresh.token.clone();
        *cache = Some(fresh);
        Ok(token)
    }

    async fn invalidate(&self, rejected: &Secret) {
        let mut cache = self.cache.lock().await;
        if cache.as_ref().is_some_and(|c| &c.token == rejected) {
            *cache = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A token endpoint that fails `failures` times with `status`, then issues a token.
    async fn flaky_endpoint(status: u16, failures: u32) -> (Url, Arc<AtomicU32>) {
        flaky_endpoint_with(status, failures, r#"{"error":"server_error"}"#).await
    }

    /// Like [`flaky_endpoint`], failing with `body`.
    async fn flaky_endpoint_with(
        status: u16,
        failures: u32,
        body: &'static str,
    ) -> (Url, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let app = axum::Router::new().route(
            "/token",
            axum::routing::post(move || {
                let c = c.clone();
                async move {
                    let n = c.fetch_add(1, Ordering::SeqCst);
                    if n < failures {
                        (
                            axum::http::StatusCode::from_u16(status).unwrap(),
                            body.to_string(),
                        )
                    } else {
                        (
                            axum::http::StatusCode::OK,
                            r#"{"access_token":"tok-123","expires_in":3600,"token_type":"Bearer"}"#
                                .to_string(),
                        )
                    }
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        (Url::parse(&format!("http://{addr}/token")).unwrap(), calls)
    }

    fn source(token_url: Url) -> JwtBearer {
        JwtBearer::new(
            reqwest::Client::new(),
            JwtBearerConfig {
                token_url,
                issuer: "svc@example.iam".into(),
                subject: Some("admin@example.com".into()),
                scopes: vec!["s".into()],
                audience: None,
                private_key_pem: Secret::new(crate::apps::google::DEMO_PRIVATE_KEY),
                key_id: None,
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn token_endpoint_outage_is_retried_not_an_auth_error() {
        let (url, calls) = flaky_endpoint(503, 1).await;
        let t = source(url).token().await.unwrap();
        assert_eq!(t.expose(), "tok-123");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn lasting_outage_is_reported_as_unavailable() {
        let (url, calls) = flaky_endpoint(503, 100).await;
        let e = source(url).token().await.unwrap_err();
        assert!(!matches!(e, ConnectorError::Auth(_)), "{e}");
        assert!(e.to_string().contains("unavailable"), "{e}");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn rate_limited_token_requests_are_waited_out() {
        for body in [
            r#"{"error":{"code":403,"errors":[{"domain":"usageLimits","reason":"rateLimitExceeded"}]}}"#,
            r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        ] {
            let (url, calls) = flaky_endpoint_with(403, 3, body).await;
            let t = source(url).token().await.unwrap();
            assert_eq!(t.expose(), "tok-123");
            assert_eq!(calls.load(Ordering::SeqCst), 4, "{body}");
        }
        // A 403 that is no rate limit is a refusal, not retried.
        let (url, calls) = flaky_endpoint_with(403, 100, r#"{"error":"access_denied"}"#).await;
        let e = source(url).token().await.unwrap_err();
        assert!(matches!(e, ConnectorError::Auth(_)), "{e}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn refused_credentials_are_not_retried() {
        let (url, calls) = flaky_endpoint(400, 100).await;
        let e = source(url).token().await.unwrap_err();
        assert!(matches!(e, ConnectorError::Auth(_)), "{e}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
