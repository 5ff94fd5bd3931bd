//! OAuth 2.0 client calls (RFC 6749, PKCE RFC 7636, device grant RFC 8628,
//! revocation RFC 7009) through the `oauth2` crate, over the shared reqwest
//! client (no redirects) with a timeout per request.
//!
//! Errors are mapped here, once, into messages that hold no secret: the
//! crate's parse errors carry the raw response body (which may hold a
//! token), so they are never formatted.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenResponse,
};
use oauth2::{
    AsyncHttpClient, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    DeviceAuthorizationUrl, EndpointMaybeSet, EndpointNotSet, HttpClientError, HttpRequest,
    HttpResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, RevocationUrl, Scope, StandardDeviceAuthorizationResponse,
    StandardErrorResponse, StandardRevocableToken, TokenResponse as _, TokenUrl,
};
use url::Url;

use super::cache::StoredToken;
use super::read_secret;
use crate::connector::{ConnectorError, ResolvedConnector};
use crate::sanitize;
use crate::secret::Secret;

/// Each call to an authorization server gives up after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read from an authorization server.
const MAX_BODY: usize = 1024 * 1024;

/// How a connector obtains its tokens (manifest `auth.flow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    AuthorizationCode,
    DeviceCode,
    ClientCredentials,
    JwtBearer,
    Static,
}

impl Flow {
    pub fn parse(s: &str) -> Option<Flow> {
        Some(match s {
            "authorization-code" => Flow::AuthorizationCode,
            "device-code" => Flow::DeviceCode,
            "client-credentials" => Flow::ClientCredentials,
            "jwt-bearer" => Flow::JwtBearer,
            "static" => Flow::Static,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Flow::AuthorizationCode => "authorization-code",
            Flow::DeviceCode => "device-code",
            Flow::ClientCredentials => "client-credentials",
            Flow::JwtBearer => "jwt-bearer",
            Flow::Static => "static",
        }
    }

    /// Flows whose tokens come from a person signing in (cached on disk).
    pub fn is_interactive(self) -> bool {
        matches!(self, Flow::AuthorizationCode | Flow::DeviceCode)
    }

    /// The flow a connector is configured for.
    pub fn of(r: &ResolvedConnector) -> Result<Flow, ConnectorError> {
        let a = &r.manifest.auth;
        match a.flow.as_deref() {
            Some(f) => Flow::parse(f).ok_or_else(|| {
                ConnectorError::Config(format!(
                    "key `connectors.{}.auth.flow`: expected one of authorization-code, device-code, client-credentials, jwt-bearer, static; found `{}`",
                    r.id,
                    sanitize::clean_max(f, 40)
                ))
            }),
            None if a.token_env.is_some() || a.token_file.is_some() => Ok(Flow::Static),
            None => Err(ConnectorError::Config(format!(
                "key `connectors.{}.auth.flow`: no sign-in method configured (set auth.flow, or token_env / token_file)",
                r.id
            ))),
        }
    }
}

/// The endpoints and client of one connector's authorization server.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    pub connector: String,
    pub flow: Flow,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// The client's private key (PEM) for `private_key_jwt` client
    /// authentication (RFC 7523 §2.2, OpenID Connect Core §9): `auth.key_file`
    /// with the client-credentials flow. Used instead of a client secret.
    pub client_key: Option<Secret>,
    /// The `x5t` thumbprint of the key's certificate (`auth.certificate_file`),
    /// sent in the client assertion's header.
    pub client_cert_x5t: Option<String>,
    pub token_url: Url,
    pub authorize_url: Option<Url>,
    pub device_url: Option<Url>,
    pub revoke_url: Option<Url>,
    pub scopes: Vec<String>,
    /// Whose tokens these are (the cache file's account part).
    pub account: String,
}

fn parse_url(connector: &str, key: &str, raw: &str) -> Result<Url, ConnectorError> {
    crate::connector::manifest::check_url(raw).map_err(|why| {
        ConnectorError::Config(format!(
            "key `connectors.{connector}.auth.{key}`: expected an https URL (http only for a loopback host), found {why}"
        ))
    })
}

impl OAuthSettings {
    /// Reads the `[auth]` of a resolved connector (manifest merged with config).
    pub fn from_resolved(r: &ResolvedConnector) -> Result<Self, ConnectorError> {
        let a = &r.manifest.auth;
        let flow = Flow::of(r)?;
        let opt = |key: &str, v: &Option<String>| -> Result<Option<Url>, ConnectorError> {
            v.as_deref().map(|s| parse_url(&r.id, key, s)).transpose()
        };
        let token_url = opt("token_url", &a.token_url)?.ok_or_else(|| {
            ConnectorError::Config(format!(
                "key `connectors.{}.auth.token_url`: expected the token endpoint URL, found nothing",
                r.id
            ))
        })?;
        let client_id = a.client_id.clone().ok_or_else(|| {
            ConnectorError::Config(format!(
                "key `connectors.{}.auth.client_id`: expected the OAuth client id, found nothing",
                r.id
            ))
        })?;
        let client_secret = if a.client_secret_env.is_some() || a.client_secret_file.is_some() {
            let file = a.client_secret_file.as_deref().map(|p| r.path(p));
            Some(read_secret(
                &format!("connector `{}` client secret", r.id),
                a.client_secret_env.as_deref(),
                file.as_deref(),
            )?)
        } else {
            None
        };
        // private_key_jwt: the client proves itself with an assertion signed
        // by its key instead of a shared secret.
        let client_key = match (&a.key_file, flow) {
            (Some(p), Flow::ClientCredentials) => {
                let path = r.path(p);
                Some(Secret::new(std::fs::read_to_string(&path).map_err(|e| {
                    ConnectorError::Config(format!(
                        "key `connectors.{}.auth.key_file`: cannot read the private key {}: {e}",
                        r.id,
                        path.display()
                    ))
                })?))
            }
            _ => None,
        };
        let client_cert_x5t = match &a.certificate_file {
            Some(p) => {
                let path = r.path(p);
                let pem = std::fs::read_to_string(&path).map_err(|e| {
                    ConnectorError::Config(format!(
                        "key `connectors.{}.auth.certificate_file`: cannot read the certificate {}: {e}",
                        r.id,
                        path.display()
                    ))
                })?;
                Some(super::jwt::certificate_thumbprint(&pem).map_err(|e| {
                    ConnectorError::Config(format!(
                        "key `connectors.{}.auth.certificate_file`: {e}",
                        r.id
                    ))
                })?)
            }
            None => None,
        };
        if client_key.is_some() && client_secret.is_some() {
            return Err(ConnectorError::Config(format!(
                "key `connectors.{}.auth.key_file`: expected either a private key (private_key_jwt) or a client secret, found both",
                r.id
            )));
        }
        Ok(Self {
            connector: r.id.clone(),
            flow,
            client_id,
            client_secret,
            client_key,
            client_cert_x5t,
            token_url,
            authorize_url: opt("authorize_url", &a.authorize_url)?,
            device_url: opt("device_url", &a.device_url)?,
            revoke_url: opt("revoke_url", &a.revoke_url)?,
            scopes: a.scopes.clone(),
            account: a.subject.clone().unwrap_or_else(|| "default".into()),
        })
    }
}

type Oauth2Client = oauth2::Client<
    BasicErrorResponse,
    BasicTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointMaybeSet,
    EndpointMaybeSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The shared reqwest client with a timeout and a size cap per request.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    timeout: Duration,
}

impl Http {
    pub fn new(client: reqwest::Client) -> Self {
        Self {
            client,
            timeout: REQUEST_TIMEOUT,
        }
    }
}

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = HttpClientError<reqwest::Error>;
    type Future =
        Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + Sync + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let mut req: reqwest::Request = request.try_into().map_err(Box::new)?;
            *req.timeout_mut() = Some(self.timeout);
            let mut resp = self.client.execute(req).await.map_err(Box::new)?;
            let mut builder = oauth2::http::Response::builder().status(resp.status());
            for (name, value) in resp.headers() {
                builder = builder.header(name, value);
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(Box::new)? {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(HttpClientError::Other(format!(
                        "answer larger than {MAX_BODY} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            builder.body(body).map_err(HttpClientError::Http)
        })
    }
}

/// Tokens from a token endpoint.
pub struct TokenSet {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub expires_in: Option<Duration>,
    /// The `scope` the server reported (None: not reported, which per
    /// RFC 6749 §5.1 means the scopes asked for).
    pub scopes: Option<Vec<String>>,
    /// The API host the token is for, when the server names one
    /// (Salesforce `instance_url`).
    pub instance_url: Option<String>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("expires_in", &self.expires_in)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl TokenSet {
    fn from_response(r: &BasicTokenResponse) -> Self {
        Self {
            access_token: Secret::new(r.access_token().secret().clone()),
            refresh_token: r.refresh_token().map(|t| Secret::new(t.secret().clone())),
            expires_in: r.expires_in(),
            scopes: r
                .scopes()
                .map(|s| s.iter().map(|x| x.to_string()).collect()),
            instance_url: None,
        }
    }

    /// What goes into the cache. A refresh answer without a new refresh
    /// token keeps the old one; with one, the old one is replaced (rotation).
    pub fn into_stored(self, s: &OAuthSettings, previous: Option<&StoredToken>) -> StoredToken {
        let now = chrono::Utc::now().timestamp();
        StoredToken {
            access_token: self.access_token,
            refresh_token: self
                .refresh_token
                .or_else(|| previous.and_then(|p| p.refresh_token.clone())),
            expires_at: self.expires_in.map(|d| now + d.as_secs() as i64),
            scopes: self
                .scopes
                .or_else(|| previous.and_then(|p| p.scopes.clone())),
            token_url: s.token_url.to_string(),
            client_id: s.client_id.clone(),
            flow: previous
                .map(|p| p.flow.clone())
                .unwrap_or_else(|| s.flow.name().to_string()),
            obtained_at: now,
            instance_url: self
                .instance_url
                .or_else(|| previous.and_then(|p| p.instance_url.clone())),
        }
    }
}

/// A started authorization-code request: the URL to open, and what the
/// redirect must be checked against.
pub struct AuthRequest {
    pub url: Url,
    pub redirect_uri: String,
    state: CsrfToken,
    verifier: PkceCodeVerifier,
}

impl std::fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthRequest")
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

impl AuthRequest {
    /// A request built by a vendor-specific authorization URL.
    pub(crate) fn new(
        url: Url,
        redirect_uri: String,
        state: CsrfToken,
        verifier: PkceCodeVerifier,
    ) -> Self {
        Self {
            url,
            redirect_uri,
            state,
            verifier,
        }
    }

    /// The PKCE verifier to send with the code.
    pub(crate) fn verifier(&self) -> &str {
        self.verifier.secret()
    }

    /// Whether `state` is the one sent (constant-time comparison).
    pub fn state_matches(&self, state: &str) -> bool {
        let a = self.state.secret().as_bytes();
        let b = state.as_bytes();
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// An OAuth client for one connector.
pub struct OAuth {
    pub settings: OAuthSettings,
    client: Oauth2Client,
    http: Http,
}

impl OAuth {
    pub fn new(settings: OAuthSettings, http: reqwest::Client) -> Result<Self, ConnectorError> {
        let bad = |what: &str| {
            ConnectorError::Config(format!(
                "connector `{}`: {what} is not a valid URL",
                settings.connector
            ))
        };
        let mut client = oauth2::Client::new(ClientId::new(settings.client_id.clone()))
            .set_token_uri_option(Some(
                TokenUrl::new(settings.token_url.to_string()).map_err(|_| bad("token_url"))?,
            ))
            .set_auth_uri_option(
                settings
                    .authorize_url
                    .as_ref()
                    .map(|u| AuthUrl::new(u.to_string()))
                    .transpose()
                    .map_err(|_| bad("authorize_url"))?,
            )
            .set_device_authorization_url_option(
                settings
                    .device_url
                    .as_ref()
                    .map(|u| DeviceAuthorizationUrl::new(u.to_string()))
                    .transpose()
                    .map_err(|_| bad("device_url"))?,
            )
            .set_revocation_url_option(
                settings
                    .revoke_url
                    .as_ref()
                    .map(|u| RevocationUrl::new(u.to_string()))
                    .transpose()
                    .map_err(|_| bad("revoke_url"))?,
            );
        if let Some(secret) = &settings.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose().to_string()));
        }
        Ok(Self {
            settings,
            client,
            http: Http::new(http),
        })
    }

    /// The client secret, or "" for a public client (for keeping it out of
    /// errors).
    fn client_secret(&self) -> &str {
        self.settings
            .client_secret
            .as_ref()
            .map_or("", |s| s.expose())
    }

    fn scopes(&self) -> impl Iterator<Item = Scope> + '_ {
        self.settings.scopes.iter().cloned().map(Scope::new)
    }

    fn missing(&self, what: &str, key: &str) -> ConnectorError {
        ConnectorError::Config(format!(
            "connector `{}` has no {what} (set connectors.{}.auth.{key})",
            self.settings.connector, self.settings.connector
        ))
    }

    /// A fresh authorization request: PKCE S256 and a random state.
    pub fn authorize(&self, redirect_uri: &str) -> Result<AuthRequest, ConnectorError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let redirect = RedirectUrl::new(redirect_uri.to_string())
            .map_err(|_| ConnectorError::Config("bad redirect URI".into()))?;
        let (url, state) = self
            .client
            .authorize_url(CsrfToken::new_random)
            .map_err(|_| self.missing("authorization endpoint", "authorize_url"))?
            .add_scopes(self.scopes())
            .set_pkce_challenge(challenge)
            .set_redirect_uri(Cow::Owned(redirect))
            .url();
        Ok(AuthRequest {
            url,
            redirect_uri: redirect_uri.to_string(),
            state,
            verifier,
        })
    }

    /// Exchanges an authorization code, with the request's PKCE verifier.
    pub async fn exchange_code(
        &self,
        request: AuthRequest,
        code: &Secret,
    ) -> Result<TokenSet, ConnectorError> {
        let redirect = RedirectUrl::new(request.redirect_uri.clone())
            .map_err(|_| ConnectorError::Config("bad redirect URI".into()))?;
        let verifier = request.verifier.secret().clone();
        let r = self
            .client
            .exchange_code(AuthorizationCode::new(code.expose().to_string()))
            .map_err(|_| self.missing("token endpoint", "token_url"))?
            .set_pkce_verifier(request.verifier)
            .set_redirect_uri(Cow::Owned(redirect))
            .request_async(&self.http)
            .await
            .map_err(|e| {
                token_error(
                    e,
                    "authorization code exchange",
                    &[code.expose(), &verifier, self.client_secret()],
                )
            })?;
        Ok(TokenSet::from_response(&r))
    }

    /// Uses a refresh token; the answer may carry a new one (rotation).
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<TokenSet, ConnectorError> {
        let rt = RefreshToken::new(refresh_token.expose().to_string());
        let r = self
            .client
            .exchange_refresh_token(&rt)
            .map_err(|_| self.missing("token endpoint", "token_url"))?
            .request_async(&self.http)
            .await
            .map_err(|e| {
                token_error(
                    e,
                    "token refresh",
                    &[refresh_token.expose(), self.client_secret()],
                )
            })?;
        Ok(TokenSet::from_response(&r))
    }

    /// Client credentials grant (app-only access).
    pub async fn client_credentials(&self) -> Result<TokenSet, ConnectorError> {
        if let Some(key) = &self.settings.client_key {
            // private_key_jwt (RFC 7523 §2.2): client_id in the body, and a
            // fresh assertion (iss = sub = client_id, aud = token endpoint,
            // a unique jti) in place of a secret.
            let assertion = super::jwt::client_assertion(
                &self.settings.client_id,
                self.settings.token_url.as_str(),
                key,
                self.settings.client_cert_x5t.as_deref(),
            )?;
            let r = self
                .client
                .exchange_client_credentials()
                .map_err(|_| self.missing("token endpoint", "token_url"))?
                .add_extra_param("client_assertion_type", super::jwt::CLIENT_ASSERTION_TYPE)
                .add_extra_param("client_assertion", assertion.expose())
                .add_scopes(self.scopes())
                .request_async(&self.http)
                .await
                .map_err(|e| token_error(e, "client credentials grant", &[assertion.expose()]))?;
            return Ok(TokenSet::from_response(&r));
        }
        if self.settings.client_secret.is_none() {
            return Err(self.missing("client secret", "client_secret_env or client_secret_file"));
        }
        let r = self
            .client
            .exchange_client_credentials()
            .map_err(|_| self.missing("token endpoint", "token_url"))?
            .add_scopes(self.scopes())
            .request_async(&self.http)
            .await
            .map_err(|e| token_error(e, "client credentials grant", &[self.client_secret()]))?;
        Ok(TokenSet::from_response(&r))
    }

    /// Device authorization request (RFC 8628 §3.1).
    pub async fn device_authorize(
        &self,
    ) -> Result<StandardDeviceAuthorizationResponse, ConnectorError> {
        self.client
            .exchange_device_code()
            .map_err(|_| self.missing("device authorization endpoint", "device_url"))?
            .add_scopes(self.scopes())
            .request_async(&self.http)
            .await
            .map_err(|e| token_error(e, "device authorization", &[self.client_secret()]))
    }

    /// Polls the token endpoint (RFC 8628 §3.4–3.5): `authorization_pending`
    /// waits the interval, `slow_down` adds 5 seconds to it, anything else
    /// ends the wait.
    pub async fn device_poll(
        &self,
        details: &StandardDeviceAuthorizationResponse,
    ) -> Result<TokenSet, ConnectorError> {
        let r = self
            .client
            .exchange_device_access_token(details)
            .map_err(|_| self.missing("token endpoint", "token_url"))?
            .request_async(&self.http, tokio::time::sleep, None)
            .await
            .map_err(|e| {
                token_error(
                    e,
                    "device sign-in",
                    &[details.device_code().secret(), self.client_secret()],
                )
            })?;
        Ok(TokenSet::from_response(&r))
    }

    pub fn can_revoke(&self) -> bool {
        self.settings.revoke_url.is_some()
    }

    /// Revokes a refresh token (RFC 7009); by §2.1 the server should also
    /// end the access tokens issued from it.
    pub async fn revoke_refresh(&self, token: &Secret) -> Result<(), ConnectorError> {
        self.revoke(token, "refresh_token").await
    }

    pub async fn revoke_access(&self, token: &Secret) -> Result<(), ConnectorError> {
        self.revoke(token, "access_token").await
    }

    /// RFC 7009 §2.1: POST `token` and `token_type_hint` with the client's
    /// authentication (HTTP Basic for confidential clients, `client_id` in
    /// the body for public ones). Sent directly rather than through the
    /// `oauth2` crate, which refuses plain-http revocation URLs even on the
    /// loopback interface; here plain http is allowed for loopback hosts only.
    async fn revoke(&self, token: &Secret, hint: &str) -> Result<(), ConnectorError> {
        let url = self
            .settings
            .revoke_url
            .clone()
            .ok_or_else(|| self.missing("revocation endpoint", "revoke_url"))?;
        let loopback = matches!(
            url.host(),
            Some(url::Host::Ipv4(ip)) if ip.is_loopback()
        ) || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
            || url.host_str() == Some("localhost");
        if url.scheme() != "https" && !loopback {
            return Err(ConnectorError::Config(format!(
                "connector `{}`: the revocation endpoint must use https",
                self.settings.connector
            )));
        }
        let mut form = vec![("token", token.expose()), ("token_type_hint", hint)];
        let mut req = self.http.client.post(url).timeout(self.http.timeout);
        match &self.settings.client_secret {
            Some(secret) => {
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                req = req.basic_auth(enc(&self.settings.client_id), Some(enc(secret.expose())));
            }
            None => form.push(("client_id", self.settings.client_id.as_str())),
        }
        let resp = req.form(&form).send().await.map_err(|e| {
            ConnectorError::Network(if e.is_timeout() {
                "token revocation: the authorization server did not answer in time".into()
            } else {
                "token revocation: cannot reach the authorization server".into()
            })
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.bytes().await.unwrap_or_default();
        Err(
            match serde_json::from_slice::<super::OAuthErrorBody>(&body) {
                Ok(e) => ConnectorError::Auth(format!(
                    "token revocation: the authorization server said {}",
                    super::server_said(
                        &e.error,
                        e.error_description.as_deref(),
                        &[token.expose(), self.client_secret()],
                        " (",
                        ")"
                    )
                )),
                Err(_) => ConnectorError::Api {
                    status: status.as_u16(),
                    code: String::new(),
                    message: "token revocation failed".into(),
                },
            },
        )
    }
}

/// Maps the crate's error without formatting anything that could hold a
/// token: the server's `error` code and description are shown (cleaned)
/// unless they repeat what the request carried, network failures by kind,
/// unparsable bodies not at all.
fn token_error<
    T: oauth2::ErrorResponseType + AsRef<str> + std::fmt::Display + Send + Sync + 'static,
>(
    e: RequestTokenError<HttpClientError<reqwest::Error>, StandardErrorResponse<T>>,
    what: &str,
    carried: &[&str],
) -> ConnectorError {
    match e {
        RequestTokenError::ServerResponse(r) => ConnectorError::Auth(format!(
            "{what}: the authorization server said {}",
            super::server_said(
                r.error().as_ref(),
                r.error_description().map(String::as_str),
                carried,
                " (",
                ")"
            )
        )),
        RequestTokenError::Request(HttpClientError::Reqwest(re)) => {
            ConnectorError::Network(if re.is_timeout() {
                format!("{what}: the authorization server did not answer in time")
            } else if re.is_connect() {
                format!("{what}: cannot connect to the authorization server")
            } else {
                format!("{what}: the request to the authorization server failed")
            })
        }
        RequestTokenError::Request(_) => ConnectorError::Network(format!(
            "{what}: the request to the authorization server failed"
        )),
        RequestTokenError::Parse(_, _) => ConnectorError::BadResponse(format!(
            "{what}: the authorization server's answer is not an OAuth token response"
        )),
        RequestTokenError::Other(_) => ConnectorError::BadResponse(format!(
            "{what}: unexpected answer from the authorization server"
        )),
    }
}

/// The error code of an auth failure (e.g. `access_denied`), for callers
/// that act on it.
pub fn error_code(e: &ConnectorError) -> Option<&str> {
    match e {
        ConnectorError::Auth(m) => m
            .split("the authorization server said ")
            .nth(1)
            .map(|rest| rest.split(' ').next().unwrap_or(rest)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> OAuthSettings {
        OAuthSettings {
            connector: "app".into(),
            flow: Flow::ClientCredentials,
            client_id: "client".into(),
            client_secret: Some(Secret::new("s3cr3t-value")),
            client_key: None,
            client_cert_x5t: None,
            token_url: Url::parse("https://auth.example.com/token").unwrap(),
            authorize_url: Some(Url::parse("https://auth.example.com/authorize").unwrap()),
            device_url: None,
            revoke_url: None,
            scopes: vec!["a".into()],
            account: "default".into(),
        }
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let s = settings();
        assert!(!format!("{s:?}").contains("s3cr3t-value"));
        let t = TokenSet {
            access_token: Secret::new("at-secret"),
            refresh_token: Some(Secret::new("rt-secret")),
            expires_in: None,
            scopes: None,
            instance_url: None,
        };
        let d = format!("{t:?}");
        assert!(!d.contains("at-secret") && !d.contains("rt-secret"), "{d}");
        let oauth = OAuth::new(s, reqwest::Client::new()).unwrap();
        let req = oauth.authorize("http://127.0.0.1:1/callback").unwrap();
        let d = format!("{req:?}");
        assert!(!d.contains(req.state.secret().as_str()), "{d}");
        assert!(!d.contains(req.verifier.secret().as_str()), "{d}");
        // The URL carries the challenge and state, never the verifier.
        assert!(!req.url.as_str().contains(req.verifier.secret().as_str()));
        assert!(req.state_matches(&req.state.secret().clone()));
        assert!(!req.state_matches("other"));
    }

    #[test]
    fn flow_names_round_trip() {
        for f in [
            Flow::AuthorizationCode,
            Flow::DeviceCode,
            Flow::ClientCredentials,
            Flow::JwtBearer,
            Flow::Static,
        ] {
            assert_eq!(Flow::parse(f.name()), Some(f));
        }
        assert_eq!(Flow::parse("password"), None);
    }

    #[tokio::test]
    async fn revocation_over_plain_http_only_on_loopback() {
        let mut s = settings();
        s.revoke_url = Some(Url::parse("http://auth.example.com/revoke").unwrap());
        let oauth = OAuth::new(s, reqwest::Client::new()).unwrap();
        let e = oauth.revoke_refresh(&Secret::new("rt")).await.unwrap_err();
        assert!(e.to_string().contains("must use https"), "{e}");
    }
}
