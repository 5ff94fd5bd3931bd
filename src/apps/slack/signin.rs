//! Slack OAuth v2 for an admin *user* token.
//!
//! - Authorize: `GET https://slack.com/oauth/v2/authorize?client_id&user_scope&redirect_uri&state`.
//!   Admin scopes are user scopes, so they go in `user_scope` (comma
//!   separated); no bot `scope` is asked for.
//! - Exchange: `POST https://slack.com/api/oauth.v2.access` with `code` and
//!   `redirect_uri`; the client authenticates with HTTP Basic (Slack's
//!   recommendation) when a client secret is configured. Without a secret the
//!   app must have PKCE enabled (a public client): the request then carries
//!   `code_challenge`/`code_challenge_method=S256` and the exchange
//!   `client_id` and `code_verifier`. PKCE arguments are only sent without a
//!   secret, since an app that has not enabled PKCE may not accept them.
//! - Answers are HTTP 200 with `ok:false,error` on failure; on success the
//!   user token is `authed_user.access_token` (`token_type:"user"`), with
//!   `authed_user.refresh_token`/`expires_in` when token rotation is on.
//! - Refresh: `oauth.v2.access` with `grant_type=refresh_token`. Slack
//!   documents the refreshed token at the top level (`token_type:"user"` for a
//!   user token); an answer carrying it in `authed_user` is read as well.
//! - Logout: `auth.revoke` with the token as bearer (`{ok, revoked}`).
//! - Slack has no device grant.

use std::time::Duration;

use async_trait::async_trait;
use oauth2::{CsrfToken, PkceCodeChallenge};
use serde::Deserialize;
use url::Url;

use crate::auth::authority::{Authority, DeviceGrant};
use crate::auth::cache::StoredToken;
use crate::auth::oauth::{AuthRequest, OAuthSettings, TokenSet, error_code};
use crate::connector::ConnectorError;
use crate::sanitize;
use crate::secret::Secret;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_BODY: usize = 1024 * 1024;

/// Slack's authorization server for one connector.
pub struct SlackOAuth {
    settings: OAuthSettings,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct AuthedUser {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// `oauth.v2.access`'s answer (the fields read here).
#[derive(Deserialize)]
struct Access {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    authed_user: Option<AuthedUser>,
}

#[derive(Deserialize)]
struct Envelope {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
}

fn scopes_of(s: &str) -> Vec<String> {
    s.split([',', ' '])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

fn loopback(url: &Url) -> bool {
    matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
        || url.host_str() == Some("localhost")
}

/// What an `ok:false` code means for the operator.
fn hint(code: &str) -> &'static str {
    match code {
        "bad_redirect_uri" => {
            " (the redirect URL is not one registered in the Slack app's OAuth settings)"
        }
        "invalid_code" => " (the code was already used or has expired; sign in again)",
        "bad_client_secret" | "invalid_client_id" | "invalid_client" => {
            " (check auth.client_id and the client secret)"
        }
        "invalid_refresh_token" => " (the sign-in has ended; sign in again)",
        "oauth_authorization_url_mismatch" => {
            " (the sign-in must start at /oauth/v2/authorize, check auth.authorize_url)"
        }
        _ => "",
    }
}

impl SlackOAuth {
    pub fn new(settings: OAuthSettings, http: reqwest::Client) -> Result<Self, ConnectorError> {
        Ok(Self { settings, http })
    }

    fn public(&self) -> bool {
        self.settings.client_secret.is_none()
    }

    fn no_device(&self) -> ConnectorError {
        ConnectorError::Config(format!(
            "connector `{}`: Slack has no device sign-in; run `offboard login {}` without --device, open the URL it prints on any machine, and paste the redirected address back",
            self.settings.connector, self.settings.connector
        ))
    }

    fn missing(&self, what: &str, key: &str) -> ConnectorError {
        ConnectorError::Config(format!(
            "connector `{}` has no {what} (set connectors.{}.auth.{key})",
            self.settings.connector, self.settings.connector
        ))
    }

    /// POSTs a form to `oauth.v2.access` with the client's authentication.
    async fn access(
        &self,
        mut form: Vec<(&str, String)>,
        what: &str,
    ) -> Result<Access, ConnectorError> {
        // What the request carries, never repeated from an answer.
        let mut carried: Vec<String> = form.iter().map(|(_, v)| v.clone()).collect();
        if let Some(secret) = &self.settings.client_secret {
            carried.push(secret.expose().to_string());
        }
        let mut req = self
            .http
            .post(self.settings.token_url.clone())
            .timeout(REQUEST_TIMEOUT);
        match &self.settings.client_secret {
            Some(secret) => {
                req = req.basic_auth(&self.settings.client_id, Some(secret.expose()));
            }
            None => form.push(("client_id", self.settings.client_id.clone())),
        }
        let (status, body) = send(req.form(&form), what).await?;
        if status == 429 || status >= 500 {
            return Err(ConnectorError::Api {
                status,
                code: String::new(),
                message: format!("{what}: Slack's token endpoint is unavailable"),
            });
        }
        let access: Access = serde_json::from_slice(&body).map_err(|_| {
            ConnectorError::BadResponse(format!(
                "{what}: Slack answered HTTP {status} without its JSON envelope"
            ))
        })?;
        if !access.ok {
            let raw = access.error.as_deref().unwrap_or("unknown_error");
            let carried: Vec<&str> = carried.iter().map(String::as_str).collect();
            let code = if crate::auth::echoes(raw, &carried) {
                "an error whose text repeats a credential of the request (not shown)".to_string()
            } else {
                sanitize::clean_max(raw, 80)
            };
            return Err(ConnectorError::Auth(format!(
                "{what}: the authorization server said {code}{}",
                hint(&code)
            )));
        }
        Ok(access)
    }

    /// The user token of an answer: at the top level when it is a user
    /// token (refresh answers), else in `authed_user`.
    fn user_tokens(a: Access, what: &str) -> Result<TokenSet, ConnectorError> {
        let top_is_user = a.token_type.as_deref() == Some("user") && a.access_token.is_some();
        let (at, rt, exp, scope) = if top_is_user {
            (a.access_token, a.refresh_token, a.expires_in, a.scope)
        } else {
            match a.authed_user {
                Some(u)
                    if u.access_token.is_some()
                        && u.token_type.as_deref().is_none_or(|t| t == "user") =>
                {
                    (u.access_token, u.refresh_token, u.expires_in, u.scope)
                }
                _ => {
                    return Err(ConnectorError::BadResponse(format!(
                        "{what}: Slack issued no user token (the app must ask for the admin scopes as user scopes)"
                    )));
                }
            }
        };
        let at = at.filter(|t| !t.is_empty()).ok_or_else(|| {
            ConnectorError::BadResponse(format!("{what}: Slack's answer has an empty token"))
        })?;
        Ok(TokenSet {
            access_token: Secret::new(at),
            refresh_token: rt.filter(|t| !t.is_empty()).map(Secret::new),
            expires_in: exp.map(Duration::from_secs),
            scopes: scope.as_deref().map(scopes_of),
            instance_url: None,
        })
    }

    /// `auth.revoke` with `token` as bearer: Ok(true) revoked, Ok(false)
    /// the token was no longer valid.
    async fn revoke_token(&self, url: &Url, token: &Secret) -> Result<bool, ConnectorError> {
        let req = self
            .http
            .post(url.clone())
            .timeout(REQUEST_TIMEOUT)
            .bearer_auth(token.expose())
            .form(&[("test", "false")]);
        let (status, body) = send(req, "token revocation").await?;
        if status == 429 || status >= 500 {
            return Err(ConnectorError::Api {
                status,
                code: String::new(),
                message: "token revocation: Slack is unavailable".into(),
            });
        }
        let env: Envelope = serde_json::from_slice(&body).map_err(|_| {
            ConnectorError::BadResponse(format!(
                "token revocation: Slack answered HTTP {status} without its JSON envelope"
            ))
        })?;
        match (env.ok, env.error.as_deref()) {
            (true, _) => Ok(true),
            (false, Some("invalid_auth" | "token_revoked" | "account_inactive")) => Ok(false),
            (false, e) => Err(ConnectorError::Auth(format!(
                "token revocation: the authorization server said {}",
                crate::auth::server_said(
                    e.unwrap_or("unknown_error"),
                    None,
                    &[token.expose()],
                    "",
                    ""
                )
            ))),
        }
    }
}

/// Sends a request and reads at most [`MAX_BODY`] bytes of the answer.
async fn send(req: reqwest::RequestBuilder, what: &str) -> Result<(u16, Vec<u8>), ConnectorError> {
    let mut resp = req.send().await.map_err(|e| {
        ConnectorError::Network(if e.is_timeout() {
            format!("{what}: Slack did not answer in time")
        } else {
            format!("{what}: cannot reach Slack")
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

#[async_trait]
impl Authority for SlackOAuth {
    fn settings(&self) -> &OAuthSettings {
        &self.settings
    }

    fn authorize(&self, redirect_uri: &str) -> Result<AuthRequest, ConnectorError> {
        let mut url = self
            .settings
            .authorize_url
            .clone()
            .ok_or_else(|| self.missing("authorization endpoint", "authorize_url"))?;
        let state = CsrfToken::new_random();
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &self.settings.client_id)
                .append_pair("user_scope", &self.settings.scopes.join(","))
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("state", state.secret());
            if self.public() {
                q.append_pair("code_challenge", challenge.as_str())
                    .append_pair("code_challenge_method", "S256");
            }
        }
        Ok(AuthRequest::new(
            url,
            redirect_uri.to_string(),
            state,
            verifier,
        ))
    }

    async fn exchange_code(
        &self,
        request: AuthRequest,
        code: &Secret,
    ) -> Result<TokenSet, ConnectorError> {
        let what = "authorization code exchange";
        let mut form = vec![
            ("code", code.expose().to_string()),
            ("redirect_uri", request.redirect_uri.clone()),
        ];
        if self.public() {
            form.push(("code_verifier", request.verifier().to_string()));
        }
        let a = self.access(form, what).await?;
        Self::user_tokens(a, what)
    }

    async fn refresh(&self, refresh_token: &Secret) -> Result<TokenSet, ConnectorError> {
        let what = "token refresh";
        let form = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh_token.expose().to_string()),
        ];
        let a = self.access(form, what).await?;
        Self::user_tokens(a, what)
    }

    async fn device_start(&self) -> Result<DeviceGrant, ConnectorError> {
        Err(self.no_device())
    }

    async fn device_finish(&self, _grant: DeviceGrant) -> Result<TokenSet, ConnectorError> {
        Err(self.no_device())
    }

    fn can_revoke(&self) -> bool {
        self.settings.revoke_url.is_some()
    }

    async fn revoke(&self, stored: &StoredToken) -> Result<(), ConnectorError> {
        let url = self
            .settings
            .revoke_url
            .clone()
            .ok_or_else(|| self.missing("revocation endpoint", "revoke_url"))?;
        if url.scheme() != "https" && !loopback(&url) {
            return Err(ConnectorError::Config(format!(
                "connector `{}`: the revocation endpoint must use https",
                self.settings.connector
            )));
        }
        let expired = stored
            .expires_at
            .is_some_and(|e| e <= chrono::Utc::now().timestamp());
        // An expired rotating token cannot revoke itself: renew it first, so
        // that the refresh token's sign-in is the one ended.
        let token = match (&stored.refresh_token, expired) {
            (Some(rt), true) => match self.refresh(rt).await {
                Ok(t) => t.access_token,
                Err(e) if self.sign_in_ended(&e) => return Ok(()),
                Err(e) => return Err(e),
            },
            _ => stored.access_token.clone(),
        };
        match self.revoke_token(&url, &token).await {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("token_expired") => {
                let Some(rt) = &stored.refresh_token else {
                    // Expired and not renewable: it opens nothing any more.
                    return Ok(());
                };
                match self.refresh(rt).await {
                    Ok(t) => self.revoke_token(&url, &t.access_token).await.map(|_| ()),
                    Err(e) if self.sign_in_ended(&e) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn sign_in_ended(&self, e: &ConnectorError) -> bool {
        matches!(
            error_code(e),
            Some("invalid_refresh_token" | "invalid_grant" | "token_revoked")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(secret: Option<&str>) -> OAuthSettings {
        OAuthSettings {
            connector: "slack".into(),
            flow: crate::auth::oauth::Flow::AuthorizationCode,
            client_id: "111.222".into(),
            client_secret: secret.map(Secret::new),
            client_key: None,
            client_cert_x5t: None,
            token_url: Url::parse("https://slack.com/api/oauth.v2.access").unwrap(),
            authorize_url: Some(Url::parse("https://slack.com/oauth/v2/authorize").unwrap()),
            device_url: None,
            revoke_url: None,
            scopes: vec!["admin".into(), "users:read".into()],
            account: "default".into(),
        }
    }

    fn param(u: &Url, k: &str) -> Option<String> {
        u.query_pairs()
            .find(|(x, _)| x == k)
            .map(|(_, v)| v.into_owned())
    }

    #[test]
    fn authorize_url_asks_for_user_scopes() {
        let s = SlackOAuth::new(settings(Some("sec")), reqwest::Client::new()).unwrap();
        let r = Authority::authorize(&s, "http://127.0.0.1:9/callback").unwrap();
        assert_eq!(r.url.path(), "/oauth/v2/authorize");
        assert_eq!(
            param(&r.url, "user_scope").as_deref(),
            Some("admin,users:read")
        );
        assert_eq!(param(&r.url, "scope"), None);
        assert_eq!(param(&r.url, "client_id").as_deref(), Some("111.222"));
        // Confidential: no PKCE arguments.
        assert_eq!(param(&r.url, "code_challenge"), None);
        let state = param(&r.url, "state").unwrap();
        assert!(r.state_matches(&state));

        let p = SlackOAuth::new(settings(None), reqwest::Client::new()).unwrap();
        let r = Authority::authorize(&p, "http://127.0.0.1:9/callback").unwrap();
        assert_eq!(
            param(&r.url, "code_challenge_method").as_deref(),
            Some("S256")
        );
        assert!(!r.url.as_str().contains(r.verifier()));
    }

    #[test]
    fn user_token_is_read_from_authed_user_or_top_level() {
        let a: Access = serde_json::from_str(
            r#"{"ok":true,"access_token":"xoxb-bot","token_type":"bot","scope":"commands",
            "authed_user":{"id":"U1","scope":"admin,users:read","access_token":"xoxp-u","token_type":"user","refresh_token":"xoxe-1-r","expires_in":43200}}"#,
        )
        .unwrap();
        let t = SlackOAuth::user_tokens(a, "x").unwrap();
        assert_eq!(t.access_token.expose(), "xoxp-u");
        assert_eq!(t.refresh_token.unwrap().expose(), "xoxe-1-r");
        assert_eq!(t.scopes.unwrap(), vec!["admin", "users:read"]);
        let a: Access = serde_json::from_str(
            r#"{"ok":true,"access_token":"xoxe.xoxp-n","token_type":"user","scope":"admin","refresh_token":"xoxe-1-n","expires_in":43200}"#,
        )
        .unwrap();
        assert_eq!(
            SlackOAuth::user_tokens(a, "x")
                .unwrap()
                .access_token
                .expose(),
            "xoxe.xoxp-n"
        );
        let a: Access =
            serde_json::from_str(r#"{"ok":true,"access_token":"xoxb-bot","token_type":"bot"}"#)
                .unwrap();
        let e = SlackOAuth::user_tokens(a, "x").err().unwrap().to_string();
        assert!(e.contains("no user token") && !e.contains("xoxb"), "{e}");
    }
}
