//! A generic OAuth 2.0 authorization server (RFC 6749, PKCE RFC 7636,
//! device grant RFC 8628, revocation RFC 7009) under `/oauth2/…`, for the
//! interactive and app-only flows, plus a protected resource
//! (`GET /oauth2/userinfo`) that checks its access tokens.
//!
//! Refresh tokens rotate: each use issues a new one and spends the old.
//! A spent one coming back means a copy is in other hands, so the whole
//! grant (every refresh and access token of that sign-in) is revoked and
//! the answer is `invalid_grant` (RFC 9700 §4.14.2). Revoking a refresh
//! token ends its grant's access tokens too (RFC 7009 §2.1).
//!
//! Demo clients: [`PUBLIC_CLIENT`] (no secret: PKCE and device) and
//! [`CONFIDENTIAL_CLIENT`] with [`CONFIDENTIAL_SECRET`] (client credentials).
//! These are demo values, not secrets.
//!
//! Test switches under `/_sandbox/oauth`: `GET` lists every token and code
//! issued (for leak tests); `PUT` changes [`Settings`]; `POST
//! /_sandbox/oauth/expire` ends every access token issued so far.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Form, Query, State as Ax};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tokio::time::Instant;

use super::Shared;

pub const PUBLIC_CLIENT: &str = "offboard-demo-public";
pub const CONFIDENTIAL_CLIENT: &str = "offboard-demo-confidential";
pub const CONFIDENTIAL_SECRET: &str = "offboard-demo-client-secret";
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Switches for tests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Lifetime of issued access tokens.
    pub access_ttl_secs: u64,
    /// `interval` sent with device codes.
    pub device_interval_secs: u64,
    /// Lifetime of device codes.
    pub device_ttl_secs: u64,
    /// Answers given to the next device-code polls before the real state
    /// is looked at (e.g. `["authorization_pending", "slow_down"]`).
    pub device_script: Vec<String>,
    /// Scopes never granted even when asked (the `scope` of the answer
    /// then says what was granted).
    pub withhold_scopes: Vec<String>,
    /// Slack twin: issue rotating user tokens (`refresh_token`,
    /// `expires_in`) rather than ones that never expire.
    pub slack_rotation: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            access_ttl_secs: 3600,
            device_interval_secs: 5,
            device_ttl_secs: 600,
            device_script: Vec::new(),
            withhold_scopes: Vec::new(),
            slack_rotation: true,
        }
    }
}

struct PendingAuth {
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    challenge: String,
}

struct IssuedCode {
    client_id: String,
    redirect_uri: String,
    scope: String,
    challenge: String,
    expires: Instant,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DeviceState {
    Pending,
    Approved,
    Denied,
}

struct Device {
    client_id: String,
    user_code: String,
    scope: String,
    state: DeviceState,
    expires: Instant,
    interval: Duration,
    last_poll: Option<Instant>,
}

struct AccessToken {
    client_id: String,
    scope: String,
    expires: Instant,
    /// The grant (one sign-in) it belongs to, when it came with a refresh
    /// token: revoking the grant ends it too.
    grant: Option<String>,
}

struct RefreshToken {
    client_id: String,
    scope: String,
    grant: String,
}

/// The authorization server's state.
#[derive(Default)]
pub struct State {
    pub settings: Settings,
    pending: HashMap<String, PendingAuth>,
    codes: HashMap<String, IssuedCode>,
    devices: HashMap<String, Device>,
    access: HashMap<String, AccessToken>,
    refresh: HashMap<String, RefreshToken>,
    /// Refresh tokens rotated out, and the grant each belonged to: one
    /// coming back means it was copied or replayed (RFC 9700 §4.14.2).
    spent: HashMap<String, String>,
    /// Every token, code and device code ever issued (for leak tests).
    pub issued: Vec<String>,
    /// Times of device-code polls, per user code.
    pub polls: HashMap<String, Vec<Instant>>,
    /// Slack's OAuth v2 twin.
    pub slack: crate::apps::slack::twin_oauth::State,
    /// Salesforce's device flow twin.
    pub salesforce: crate::apps::salesforce::twin_oauth::State,
}

fn random(prefix: &str) -> String {
    let bytes: [u8; 24] = rand::random();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn user_code() -> String {
    // RFC 8628 §6.1: consonants only, case-insensitive, easy to type.
    const SET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    let pick = |_| SET[rand::random_range(0..SET.len())] as char;
    let a: String = (0..4).map(pick).collect();
    let b: String = (0..4).map(pick).collect();
    format!("{a}-{b}")
}

impl State {
    pub fn grant_scope(&self, asked: &str) -> String {
        asked
            .split_whitespace()
            .filter(|s| !self.settings.withhold_scopes.iter().any(|w| w == s))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Issues an access token, and with `grant` a refresh token of that
    /// grant (`Some(None)`: a new grant).
    fn issue(
        &mut self,
        client_id: &str,
        scope: &str,
        grant: Option<Option<String>>,
    ) -> serde_json::Value {
        let at = random("sbx-at-");
        let ttl = self.settings.access_ttl_secs;
        let grant = grant.map(|g| g.unwrap_or_else(|| random("grant-")));
        let rt = grant.as_ref().map(|_| random("sbx-rt-"));
        self.access.insert(
            at.clone(),
            AccessToken {
                client_id: client_id.into(),
                scope: scope.into(),
                expires: Instant::now() + Duration::from_secs(ttl),
                grant: grant.clone(),
            },
        );
        self.issued.push(at.clone());
        let mut body = serde_json::json!({
            "access_token": at,
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": scope,
        });
        if let (Some(rt), Some(grant)) = (rt, grant) {
            self.refresh.insert(
                rt.clone(),
                RefreshToken {
                    client_id: client_id.into(),
                    scope: scope.into(),
                    grant,
                },
            );
            self.issued.push(rt.clone());
            body["refresh_token"] = rt.into();
        }
        body
    }

    /// Ends a grant: its refresh token and every access token issued in it.
    fn revoke_grant(&mut self, grant: &str) {
        self.refresh.retain(|_, r| r.grant != grant);
        self.access.retain(|_, a| a.grant.as_deref() != Some(grant));
    }

    /// Whether an access token is valid now; its client and scope if so.
    pub fn check_access(&self, token: &str) -> Option<(String, String)> {
        self.access
            .get(token)
            .filter(|t| t.expires > Instant::now())
            .map(|t| (t.client_id.clone(), t.scope.clone()))
    }
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/oauth2/authorize",
            get(authorize_page).post(authorize_decide),
        )
        .route("/oauth2/device/authorize", post(device_authorize))
        .route("/oauth2/device", get(device_page).post(device_decide))
        .route("/oauth2/token", post(token))
        .route("/oauth2/revoke", post(revoke))
        .route("/oauth2/userinfo", get(userinfo))
        .route("/_sandbox/oauth", get(sandbox_issued).put(sandbox_settings))
        .route("/_sandbox/oauth/expire", post(sandbox_expire))
}

/// RFC 6749 §5.2 error body.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut resp = (
        status,
        Json(serde_json::json!({"error": error, "error_description": description})),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, "no-store".parse().expect("static"));
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"offboard-sandbox\"".parse().expect("static"),
        );
    }
    resp
}

fn token_ok(body: serde_json::Value) -> Response {
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, "no-store".parse().expect("static"));
    resp
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn known_client(id: &str) -> bool {
    id == PUBLIC_CLIENT || id == CONFIDENTIAL_CLIENT
}

/// RFC 8252 §7.3: a loopback redirect may use any port.
fn redirect_allowed(uri: &str) -> bool {
    url::Url::parse(uri).is_ok_and(|u| {
        u.scheme() == "http"
            && matches!(u.host_str(), Some("127.0.0.1") | Some("[::1]"))
            && u.fragment().is_none()
    })
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

async fn authorize_page(Ax(s): Ax<Shared>, Query(q): Query<AuthorizeQuery>) -> Response {
    let client_id = q.client_id.unwrap_or_default();
    let redirect_uri = q.redirect_uri.unwrap_or_default();
    // Errors about the client or redirect are shown, never redirected (§4.1.2.1).
    if !known_client(&client_id) {
        return (StatusCode::BAD_REQUEST, Html("unknown client_id")).into_response();
    }
    if !redirect_allowed(&redirect_uri) {
        return (
            StatusCode::BAD_REQUEST,
            Html("redirect_uri must be a loopback http URI"),
        )
            .into_response();
    }
    let redirect_error = |error: &str| {
        let mut u = url::Url::parse(&redirect_uri).expect("checked above");
        u.query_pairs_mut().append_pair("error", error);
        if let Some(st) = &q.state {
            u.query_pairs_mut().append_pair("state", st);
        }
        (StatusCode::FOUND, [(header::LOCATION, u.to_string())]).into_response()
    };
    if q.response_type.as_deref() != Some("code") {
        return redirect_error("unsupported_response_type");
    }
    let Some(challenge) = q
        .code_challenge
        .filter(|_| q.code_challenge_method.as_deref() == Some("S256"))
    else {
        // PKCE with S256 is required of every client here.
        return redirect_error("invalid_request");
    };
    let scope = q.scope.unwrap_or_default();
    let request_id = random("req-");
    s.oauth.lock().expect("oauth lock").pending.insert(
        request_id.clone(),
        PendingAuth {
            client_id: client_id.clone(),
            redirect_uri,
            scope: scope.clone(),
            state: q.state,
            challenge,
        },
    );
    Html(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Sandbox sign-in</title></head><body>
<h1>Allow {client} to access the sandbox?</h1>
<p>Scopes: {scope}</p>
<form method="post" action="/oauth2/authorize">
<input type="hidden" name="request_id" value="{rid}">
<button type="submit" name="decision" value="approve">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form></body></html>"#,
        client = html_escape(&client_id),
        scope = html_escape(&scope),
        rid = html_escape(&request_id),
    ))
    .into_response()
}

#[derive(Deserialize)]
struct Decision {
    request_id: Option<String>,
    user_code: Option<String>,
    decision: Option<String>,
}

async fn authorize_decide(Ax(s): Ax<Shared>, Form(d): Form<Decision>) -> Response {
    let mut st = s.oauth.lock().expect("oauth lock");
    let Some(p) = d.request_id.as_deref().and_then(|id| st.pending.remove(id)) else {
        return (
            StatusCode::BAD_REQUEST,
            Html("unknown or used sign-in request"),
        )
            .into_response();
    };
    let mut u = url::Url::parse(&p.redirect_uri).expect("checked at authorize");
    if d.decision.as_deref() == Some("approve") {
        let code = random("sbx-code-");
        st.issued.push(code.clone());
        let scope = st.grant_scope(&p.scope);
        st.codes.insert(
            code.clone(),
            IssuedCode {
                client_id: p.client_id,
                redirect_uri: p.redirect_uri.clone(),
                scope,
                challenge: p.challenge,
                expires: Instant::now() + Duration::from_secs(600),
            },
        );
        u.query_pairs_mut().append_pair("code", &code);
    } else {
        u.query_pairs_mut().append_pair("error", "access_denied");
    }
    if let Some(state) = &p.state {
        u.query_pairs_mut().append_pair("state", state);
    }
    (StatusCode::FOUND, [(header::LOCATION, u.to_string())]).into_response()
}

#[allow(clippy::result_large_err)] // the error is the answer to send
/// Client authentication: HTTP Basic (RFC 6749 §2.3.1, form-urlencoded
/// id and secret) or `client_id`/`client_secret` in the body.
fn client_auth(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<(String, bool), Response> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .map(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
                .and_then(|s| {
                    s.split_once(':').map(|(i, p)| {
                        let dec = |x: &str| {
                            url::form_urlencoded::parse(format!("x={x}").as_bytes())
                                .next()
                                .map(|(_, v)| v.into_owned())
                                .unwrap_or_default()
                        };
                        (dec(i), dec(p))
                    })
                })
        });
    let (id, secret, used_basic) = match basic {
        Some(Some((i, p))) => (i, Some(p), true),
        Some(None) => {
            return Err(oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "malformed Basic credentials",
            ));
        }
        None => (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned(),
            false,
        ),
    };
    let status = if used_basic {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::BAD_REQUEST
    };
    match id.as_str() {
        PUBLIC_CLIENT => Ok((id, false)),
        CONFIDENTIAL_CLIENT if secret.as_deref() == Some(CONFIDENTIAL_SECRET) => Ok((id, true)),
        _ => Err(oauth_error(
            status,
            "invalid_client",
            "client authentication failed",
        )),
    }
}

async fn token(
    Ax(s): Ax<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (client_id, confidential) = match client_auth(&headers, &form) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let mut st = s.oauth.lock().expect("oauth lock");
    match get("grant_type") {
        "authorization_code" => {
            let Some(c) = st.codes.remove(get("code")) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown, used or expired code",
                );
            };
            if c.client_id != client_id || c.expires < Instant::now() {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "code not valid for this client",
                );
            }
            if c.redirect_uri != get("redirect_uri") {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "redirect_uri does not match",
                );
            }
            let verifier = get("code_verifier");
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(verifier.as_bytes()));
            if verifier.len() < 43 || computed != c.challenge {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "PKCE verification failed",
                );
            }
            token_ok(st.issue(&client_id, &c.scope, Some(None)))
        }
        "refresh_token" => {
            let rt = get("refresh_token");
            if let Some(grant) = st.spent.get(rt).cloned() {
                // A rotated-out refresh token came back: someone holds a
                // copy, so the whole sign-in ends (RFC 9700 §4.14.2).
                st.revoke_grant(&grant);
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "refresh token reused; the grant is revoked",
                );
            }
            let Some(r) = st.refresh.get(rt) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown, rotated or revoked refresh token",
                );
            };
            if r.client_id != client_id {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "refresh token of another client",
                );
            }
            let (scope, grant) = (r.scope.clone(), r.grant.clone());
            // Rotation: the old refresh token stops working, and is
            // remembered so that its reuse is caught.
            st.refresh.remove(rt);
            st.spent.insert(rt.to_string(), grant.clone());
            token_ok(st.issue(&client_id, &scope, Some(Some(grant))))
        }
        DEVICE_GRANT => {
            let dc = get("device_code").to_string();
            let now = Instant::now();
            let Some(d) = st.devices.get_mut(&dc) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown device code",
                );
            };
            if d.client_id != client_id {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "device code of another client",
                );
            }
            let too_fast = d
                .last_poll
                .is_some_and(|t| now.duration_since(t) + Duration::from_millis(200) < d.interval);
            d.last_poll = Some(now);
            let user_code = d.user_code.clone();
            let (state, expired, scope) = (d.state, d.expires <= now, d.scope.clone());
            st.polls.entry(user_code).or_default().push(now);
            if !st.settings.device_script.is_empty() {
                let e = st.settings.device_script.remove(0);
                return oauth_error(StatusCode::BAD_REQUEST, &e, "scripted answer");
            }
            if expired {
                st.devices.remove(&dc);
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "expired_token",
                    "the device code has expired",
                );
            }
            match state {
                DeviceState::Denied => {
                    st.devices.remove(&dc);
                    oauth_error(
                        StatusCode::BAD_REQUEST,
                        "access_denied",
                        "the user denied the request",
                    )
                }
                DeviceState::Pending if too_fast => {
                    oauth_error(StatusCode::BAD_REQUEST, "slow_down", "polling too fast")
                }
                DeviceState::Pending => oauth_error(
                    StatusCode::BAD_REQUEST,
                    "authorization_pending",
                    "waiting for the user",
                ),
                DeviceState::Approved => {
                    st.devices.remove(&dc);
                    token_ok(st.issue(&client_id, &scope, Some(None)))
                }
            }
        }
        "client_credentials" => {
            if !confidential {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unauthorized_client",
                    "client credentials need a confidential client",
                );
            }
            let scope = st.grant_scope(get("scope"));
            token_ok(st.issue(&client_id, &scope, None))
        }
        "" => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is missing",
        ),
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant type not supported",
        ),
    }
}

async fn device_authorize(
    Ax(s): Ax<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (client_id, _) = match client_auth(&headers, &form) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut st = s.oauth.lock().expect("oauth lock");
    let scope = st.grant_scope(form.get("scope").map(String::as_str).unwrap_or(""));
    let device_code = random("sbx-dc-");
    let code = user_code();
    let interval = st.settings.device_interval_secs;
    let ttl = st.settings.device_ttl_secs;
    st.issued.push(device_code.clone());
    st.devices.insert(
        device_code.clone(),
        Device {
            client_id,
            user_code: code.clone(),
            scope,
            state: DeviceState::Pending,
            expires: Instant::now() + Duration::from_secs(ttl),
            interval: Duration::from_secs(interval),
            last_poll: None,
        },
    );
    let uri = format!("{}/oauth2/device", s.base_url);
    token_ok(serde_json::json!({
        "device_code": device_code,
        "user_code": code,
        "verification_uri": uri,
        "verification_uri_complete": format!("{uri}?user_code={code}"),
        "expires_in": ttl,
        "interval": interval,
    }))
}

#[derive(Deserialize)]
struct DeviceQuery {
    user_code: Option<String>,
}

async fn device_page(Query(q): Query<DeviceQuery>) -> Html<String> {
    Html(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Sandbox device sign-in</title></head><body>
<h1>Enter the code shown on your device</h1>
<form method="post" action="/oauth2/device">
<input name="user_code" value="{code}" autocomplete="off">
<button type="submit" name="decision" value="approve">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form></body></html>"#,
        code = html_escape(q.user_code.as_deref().unwrap_or("")),
    ))
}

async fn device_decide(Ax(s): Ax<Shared>, Form(d): Form<Decision>) -> Response {
    let wanted = d
        .user_code
        .unwrap_or_default()
        .trim()
        .to_ascii_uppercase()
        .replace(' ', "");
    let mut st = s.oauth.lock().expect("oauth lock");
    let now = Instant::now();
    let Some(dev) = st
        .devices
        .values_mut()
        .find(|x| x.user_code == wanted && x.expires > now && x.state == DeviceState::Pending)
    else {
        return (StatusCode::BAD_REQUEST, Html("unknown or expired code")).into_response();
    };
    if d.decision.as_deref() == Some("approve") {
        dev.state = DeviceState::Approved;
        Html("Approved. You can return to your device.").into_response()
    } else {
        dev.state = DeviceState::Denied;
        Html("Denied.").into_response()
    }
}

/// RFC 7009: 200 for every well-formed request, known token or not.
async fn revoke(
    Ax(s): Ax<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (client_id, _) = match client_auth(&headers, &form) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(token) = form.get("token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is missing",
        );
    };
    let mut st = s.oauth.lock().expect("oauth lock");
    if let Some(grant) = st
        .refresh
        .get(token)
        .filter(|r| r.client_id == client_id)
        .map(|r| r.grant.clone())
    {
        // §2.1: the access tokens of the same grant end too.
        st.revoke_grant(&grant);
    } else if st
        .access
        .get(token)
        .is_some_and(|a| a.client_id == client_id)
    {
        st.access.remove(token);
    }
    StatusCode::OK.into_response()
}

/// A protected resource: who the bearer is, or 401 per RFC 6750 §3.
async fn userinfo(Ax(s): Ax<Shared>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let st = s.oauth.lock().expect("oauth lock");
    match token.and_then(|t| st.check_access(t)) {
        Some((client_id, scope)) => Json(serde_json::json!({
            "sub": super::DEMO_ADMIN,
            "client_id": client_id,
            "scope": scope,
        }))
        .into_response(),
        None => {
            let mut r = (
                StatusCode::UNAUTHORIZED,
                Json(serde_json::json!({"error": "invalid_token", "error_description": "the access token is invalid or has expired"})),
            )
                .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer error=\"invalid_token\"".parse().expect("static"),
            );
            r
        }
    }
}

#[derive(Serialize)]
struct Issued {
    issued: Vec<String>,
    polls: HashMap<String, Vec<u64>>,
    settings: Settings,
}

async fn sandbox_issued(Ax(s): Ax<Shared>) -> Json<Issued> {
    let st = s.oauth.lock().expect("oauth lock");
    let origin = Instant::now();
    Json(Issued {
        issued: st.issued.clone(),
        // Milliseconds before now, newest last.
        polls: st
            .polls
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.iter()
                        .map(|t| origin.duration_since(*t).as_millis() as u64)
                        .collect(),
                )
            })
            .collect(),
        settings: st.settings.clone(),
    })
}

async fn sandbox_settings(Ax(s): Ax<Shared>, Json(new): Json<Settings>) -> Json<Settings> {
    s.oauth.lock().expect("oauth lock").settings = new.clone();
    Json(new)
}

async fn sandbox_expire(Ax(s): Ax<Shared>) -> StatusCode {
    let mut st = s.oauth.lock().expect("oauth lock");
    let now = Instant::now();
    for a in st.access.values_mut() {
        a.expires = now;
    }
    st.slack.expire_all();
    st.salesforce.expire_all();
    StatusCode::NO_CONTENT
}
