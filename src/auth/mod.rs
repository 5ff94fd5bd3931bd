//! Access tokens for connectors: the flows behind the
//! [`TokenSource`](crate::connector::TokenSource) a connector's client draws on.

pub mod authority;
pub mod cache;
pub mod jwt;
pub mod login;
pub mod oauth;
pub mod source;

pub use crate::connector::TokenSource;
pub use source::token_source;

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::time::Instant;

use crate::connector::ConnectorError;
use crate::sanitize;
use crate::secret::Secret;

/// A token from an environment variable or a file, never written in config.
pub struct StaticToken {
    token: Secret,
}

impl StaticToken {
    pub fn new(token: Secret) -> Self {
        Self { token }
    }

    /// Reads `env` first, then `file`; says which was tried, never the value.
    pub fn from_env_or_file(
        what: &str,
        env: Option<&str>,
        file: Option<&std::path::Path>,
    ) -> Result<Self, ConnectorError> {
        read_secret(what, env, file).map(Self::new)
    }
}

/// Reads a secret from an environment variable or a file.
pub fn read_secret(
    what: &str,
    env: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<Secret, ConnectorError> {
    if let Some(Ok(v)) = env.map(std::env::var) {
        let v = v.trim().to_string();
        if !v.is_empty() {
            return Ok(Secret::new(v));
        }
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConnectorError::Config(format!("{what}: cannot read {}: {e}", path.display()))
        })?;
        let v = text.trim().to_string();
        if v.is_empty() {
            return Err(ConnectorError::Config(format!(
                "{what}: {} is empty",
                path.display()
            )));
        }
        return Ok(Secret::new(v));
    }
    Err(ConnectorError::Config(match (env, file) {
        (Some(var), _) => format!("{what}: environment variable {var} is not set"),
        _ => format!("{what}: no token configured (set token_env or token_file)"),
    }))
}

#[async_trait]
impl TokenSource for StaticToken {
    async fn token(&self) -> Result<Secret, ConnectorError> {
        Ok(self.token.clone())
    }

    async fn invalidate(&self, _rejected: &Secret) {}
}

/// The success body of an OAuth token endpoint (RFC 6749 §5.1).
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

/// The error body of an OAuth token endpoint (RFC 6749 §5.2).
#[derive(Deserialize)]
pub struct OAuthErrorBody {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
}

/// Whether a text from an authorization server's answer repeats part of a
/// secret the request carried (a refresh token, code, assertion or client
/// secret): servers echo requests in their error descriptions, so such a
/// text is never shown.
pub fn echoes(text: &str, carried: &[&str]) -> bool {
    // Twelve characters of a random secret do not turn up by chance; a
    // window that short still catches an echo cut short or re-encoded
    // around a special character.
    const WINDOW: usize = 12;
    carried.iter().filter(|s| !s.is_empty()).any(|s| {
        let chars: Vec<char> = s.chars().collect();
        if chars.len() <= WINDOW {
            return text.contains(*s);
        }
        chars
            .windows(WINDOW)
            .any(|w| text.contains(&w.iter().collect::<String>()))
    })
}

/// `error` and `error_description` of an authorization server's answer,
/// cleaned for the terminal; either is left out when it echoes what the
/// request carried.
pub fn server_said(
    error: &str,
    description: Option<&str>,
    carried: &[&str],
    open: &str,
    close: &str,
) -> String {
    let code = if echoes(error, carried) {
        "an error (its text is not shown: it repeats a credential of the request)".to_string()
    } else {
        sanitize::clean_max(error, 80)
    };
    let description = description
        .filter(|d| !d.is_empty())
        .map(|d| {
            if echoes(d, carried) {
                "its description is not shown: it repeats a credential of the request".to_string()
            } else {
                sanitize::clean_max(d, 200)
            }
        })
        .map(|d| format!("{open}{d}{close}"))
        .unwrap_or_default();
    format!("{code}{description}")
}

/// Whether a token endpoint's error answer means "too many requests": 429,
/// or a vendor's rate-limit code in the body (Salesforce answers 403
/// `REQUEST_LIMIT_EXCEEDED`, Google `rateLimitExceeded` /
/// `userRateLimitExceeded`, OAuth servers `rate_limit_exceeded`). Only the
/// codes are looked at, never quoted.
pub fn token_rate_limited(status: u16, body: &[u8]) -> bool {
    if status == 429 {
        return true;
    }
    if !(400..500).contains(&status) {
        return false;
    }
    const CODES: [&str; 4] = [
        "REQUEST_LIMIT_EXCEEDED",
        "rateLimitExceeded",
        "userRateLimitExceeded",
        "rate_limit_exceeded",
    ];
    fn codes(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Array(a) => a.iter().for_each(|x| codes(x, out)),
            serde_json::Value::Object(o) => {
                for (k, x) in o {
                    if matches!(k.as_str(), "error" | "errorCode" | "reason" | "status")
                        && let Some(s) = x.as_str()
                    {
                        out.push(s.to_string());
                    }
                    codes(x, out);
                }
            }
            _ => {}
        }
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let mut found = Vec::new();
    codes(&v, &mut found);
    found.iter().any(|c| CODES.contains(&c.as_str()))
}

/// Turns a token endpoint's error answer into a message without secrets
/// (`carried`: the secrets the request sent, never repeated).
pub fn oauth_error(status: u16, body: &[u8], carried: &[&str]) -> ConnectorError {
    if token_rate_limited(status, body) {
        return ConnectorError::RateLimited {
            retry_after: None,
            message: format!("token endpoint rate limited (HTTP {status})"),
        };
    }
    if status >= 500 {
        // The endpoint is unavailable: not a verdict on the credentials.
        return ConnectorError::Api {
            status,
            code: String::new(),
            message: "token endpoint unavailable".into(),
        };
    }
    match serde_json::from_slice::<OAuthErrorBody>(body) {
        Ok(e) => ConnectorError::Auth(format!(
            "token endpoint said {}",
            server_said(&e.error, e.error_description.as_deref(), carried, ": ", "")
        )),
        Err(_) => ConnectorError::Auth(format!("token endpoint answered HTTP {status}")),
    }
}

/// A cached access token with its expiry.
pub struct Cached {
    pub token: Secret,
    pub expires: Instant,
    /// The lifetime the server gave.
    pub lifetime: Duration,
}

impl Cached {
    /// Fresh enough to use: more than `margin` left.
    pub fn fresh(&self, margin: Duration) -> bool {
        self.expires > Instant::now() + margin
    }
}
