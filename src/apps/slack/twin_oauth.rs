//! Slack OAuth v2 twin: `GET /oauth/v2/authorize` (a consent page approved
//! or denied by POSTing its form), `/api/oauth.v2.access` (code exchange and
//! refresh, HTTP 200 with `ok:false,error` on failure) and `/api/auth.revoke`.
//! User tokens it issues are accepted by the Slack Web API twin with the
//! scopes granted.
//!
//! Demo apps (not secrets): [`CLIENT_ID`] with [`CLIENT_SECRET`], and
//! [`PUBLIC_CLIENT_ID`], a PKCE-enabled public client. Redirect URLs are
//! taken as registered when they are loopback `http` URLs. With token
//! rotation (the default; `slack_rotation` in `/_sandbox/oauth`) tokens are
//! `xoxe.xoxp-…` with `refresh_token`/`expires_in`; without, `xoxp-…` that
//! do not expire. Withheld scopes (`withhold_scopes`) are left out of
//! `authed_user.scope`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Form, Query, RawQuery, State as Ax};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest;
use tokio::time::Instant;

use super::twin::{ADMIN_USER_ID, DEMO_READONLY_TOKEN, DEMO_SCIM_TOKEN, DEMO_USER_TOKEN};
use crate::sandbox::Shared;

pub const CLIENT_ID: &str = "1000000001.2000000001";
pub const CLIENT_SECRET: &str = "offboard-demo-slack-client-secret";
pub const PUBLIC_CLIENT_ID: &str = "1000000001.2000000002";
pub const APP_ID: &str = "A0DEMOAPP01";

struct Pending {
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    challenge: Option<String>,
}

struct Code {
    client_id: String,
    redirect_uri: String,
    scope: String,
    challenge: Option<String>,
    expires: Instant,
}

struct Token {
    scope: String,
    expires: Option<Instant>,
    family: Option<String>,
}

struct Refresh {
    client_id: String,
    scope: String,
}

/// Slack's authorization state (inside the sandbox's OAuth state).
#[derive(Default)]
pub struct State {
    pending: HashMap<String, Pending>,
    codes: HashMap<String, Code>,
    tokens: HashMap<String, Token>,
    refresh: HashMap<String, Refresh>,
    revoked: HashSet<String>,
}

impl State {
    /// Ends every access token issued so far (test switch).
    pub fn expire_all(&mut self) {
        let now = Instant::now();
        for t in self.tokens.values_mut() {
            if t.expires.is_some() {
                t.expires = Some(now);
            }
        }
    }
}

fn random(prefix: &str) -> String {
    let bytes: [u8; 24] = rand::random();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn known(id: &str) -> bool {
    id == CLIENT_ID || id == PUBLIC_CLIENT_ID
}

fn loopback_redirect(uri: &str) -> bool {
    url::Url::parse(uri).is_ok_and(|u| {
        u.scheme() == "http"
            && matches!(
                u.host_str(),
                Some("127.0.0.1") | Some("[::1]") | Some("localhost")
            )
            && u.fragment().is_none()
    })
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn slack_err(code: &str) -> Response {
    Json(json!({"ok": false, "error": code})).into_response()
}

/// The scopes of a user token this twin issued: Err with Slack's error
/// code when it is unknown, revoked or expired.
pub fn user_token(s: &Shared, token: &str) -> Result<Vec<String>, &'static str> {
    let st = s.oauth.lock().expect("oauth lock");
    if st.slack.revoked.contains(token) {
        return Err("token_revoked");
    }
    let t = st.slack.tokens.get(token).ok_or("invalid_auth")?;
    if t.expires.is_some_and(|e| e <= Instant::now()) {
        return Err("token_expired");
    }
    Ok(t.scope
        .split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect())
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/oauth/v2/authorize", get(authorize_page).post(decide))
        .route("/api/oauth.v2.access", any(access))
        .route("/api/auth.revoke", any(revoke))
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    client_id: Option<String>,
    user_scope: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

fn error_page(code: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Html(format!(
            "<!doctype html><html><body><h1>Something went wrong when authorizing this app.</h1><p>Error details: {}</p></body></html>",
            html_escape(code)
        )),
    )
        .into_response()
}

async fn authorize_page(Ax(s): Ax<Shared>, Query(q): Query<AuthorizeQuery>) -> Response {
    let client_id = q.client_id.unwrap_or_default();
    if !known(&client_id) {
        return error_page("invalid_client_id");
    }
    let redirect_uri = q.redirect_uri.unwrap_or_default();
    // Slack shows redirect problems on its own page, never redirects them.
    if !loopback_redirect(&redirect_uri) {
        return error_page("bad_redirect_uri");
    }
    let challenge = match (q.code_challenge, q.code_challenge_method.as_deref()) {
        (Some(c), Some("S256")) => Some(c),
        (Some(_), _) => return error_page("invalid_code_challenge_method"),
        (None, _) if client_id == PUBLIC_CLIENT_ID => return error_page("pkce_required"),
        (None, _) => None,
    };
    let scope = q.user_scope.unwrap_or_default();
    let rid = random("req-");
    s.oauth.lock().expect("oauth lock").slack.pending.insert(
        rid.clone(),
        Pending {
            client_id,
            redirect_uri,
            scope: scope.clone(),
            state: q.state,
            challenge,
        },
    );
    Html(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Slack sandbox</title></head><body>
<h1>offboard is requesting permission to access the Offboard Demo Slack organization</h1>
<p>On your behalf it will be able to: {scope}</p>
<form method="post" action="/oauth/v2/authorize">
<input type="hidden" name="request_id" value="{rid}">
<button type="submit" name="decision" value="approve">Allow</button>
<button type="submit" name="decision" value="deny">Cancel</button>
</form></body></html>"#,
        scope = html_escape(&scope),
        rid = html_escape(&rid),
    ))
    .into_response()
}

#[derive(Deserialize)]
struct Decision {
    request_id: Option<String>,
    decision: Option<String>,
}

async fn decide(Ax(s): Ax<Shared>, Form(d): Form<Decision>) -> Response {
    let mut st = s.oauth.lock().expect("oauth lock");
    let Some(p) = d
        .request_id
        .as_deref()
        .and_then(|id| st.slack.pending.remove(id))
    else {
        return error_page("invalid_request");
    };
    let mut u = url::Url::parse(&p.redirect_uri).expect("checked at authorize");
    if d.decision.as_deref() == Some("approve") {
        let code = random("sbx-slack-code-");
        st.issued.push(code.clone());
        st.slack.codes.insert(
            code.clone(),
            Code {
                client_id: p.client_id,
                redirect_uri: p.redirect_uri.clone(),
                scope: p.scope,
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

/// Arguments from the query and a form body.
fn args(query: Option<&str>, body: &[u8]) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for src in [query.unwrap_or("").as_bytes(), body] {
        for (k, v) in url::form_urlencoded::parse(src) {
            m.insert(k.into_owned(), v.into_owned());
        }
    }
    m
}

/// The client: HTTP Basic or `client_id`/`client_secret` arguments.
fn client(
    headers: &HeaderMap,
    a: &HashMap<String, String>,
) -> Result<(String, bool), &'static str> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(i, p)| (i.to_string(), p.to_string()))
        });
    let (id, secret) = match basic {
        Some((i, p)) => (i, Some(p)),
        None => (
            a.get("client_id").cloned().unwrap_or_default(),
            a.get("client_secret").cloned().filter(|x| !x.is_empty()),
        ),
    };
    match (id.as_str(), secret.as_deref()) {
        (CLIENT_ID, Some(CLIENT_SECRET)) => Ok((id, true)),
        (CLIENT_ID, Some(_)) => Err("bad_client_secret"),
        (CLIENT_ID, None) => Err("bad_client_secret"),
        (PUBLIC_CLIENT_ID, None) => Ok((id, false)),
        (PUBLIC_CLIENT_ID, Some(_)) => Err("bad_client_secret"),
        _ => Err("invalid_client_id"),
    }
}

fn issue(st: &mut crate::sandbox::oauth::State, client_id: &str, scope: &str) -> (String, Value) {
    let rotation = st.settings.slack_rotation;
    let ttl = st.settings.access_ttl_secs;
    let (at, rt) = if rotation {
        (random("xoxe.xoxp-1-"), Some(random("xoxe-1-")))
    } else {
        (random("xoxp-1000000001-"), None)
    };
    st.issued.push(at.clone());
    st.slack.tokens.insert(
        at.clone(),
        Token {
            scope: scope.to_string(),
            expires: rotation.then(|| Instant::now() + Duration::from_secs(ttl)),
            family: rt.clone(),
        },
    );
    let mut user = json!({
        "id": ADMIN_USER_ID,
        "scope": scope,
        "access_token": at,
        "token_type": "user",
    });
    if let Some(rt) = rt {
        st.issued.push(rt.clone());
        st.slack.refresh.insert(
            rt.clone(),
            Refresh {
                client_id: client_id.to_string(),
                scope: scope.to_string(),
            },
        );
        user["refresh_token"] = rt.into();
        user["expires_in"] = ttl.into();
    }
    (at, user)
}

fn granted(st: &crate::sandbox::oauth::State, asked: &str) -> String {
    asked
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty() && !st.settings.withhold_scopes.iter().any(|w| w == x))
        .collect::<Vec<_>>()
        .join(",")
}

async fn access(
    Ax(s): Ax<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let a = args(query.as_deref(), &body);
    let get = |k: &str| a.get(k).map(String::as_str).unwrap_or("");
    let (client_id, confidential) = match client(&headers, &a) {
        Ok(c) => c,
        Err(e) => return slack_err(e),
    };
    let mut st = s.oauth.lock().expect("oauth lock");
    let enterprise = json!({"id": super::twin::ENTERPRISE_ID, "name": "Offboard Demo"});
    match get("grant_type") {
        "" | "authorization_code" => {
            let Some(c) = st.slack.codes.remove(get("code")) else {
                return slack_err("invalid_code");
            };
            if c.client_id != client_id || c.expires <= Instant::now() {
                return slack_err("invalid_code");
            }
            if c.redirect_uri != get("redirect_uri") {
                return slack_err("bad_redirect_uri");
            }
            match &c.challenge {
                Some(ch) => {
                    let v = get("code_verifier");
                    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(sha2::Sha256::digest(v.as_bytes()));
                    if v.len() < 43 || &computed != ch {
                        return slack_err("invalid_grant");
                    }
                }
                None if !confidential => return slack_err("invalid_grant"),
                None => {}
            }
            let scope = granted(&st, &c.scope);
            let (_, user) = issue(&mut st, &client_id, &scope);
            Json(json!({
                "ok": true,
                "app_id": APP_ID,
                "authed_user": user,
                "scope": "",
                "token_type": "bot",
                "enterprise": enterprise,
                "team": null,
                "is_enterprise_install": true,
            }))
            .into_response()
        }
        "refresh_token" => {
            let rt = get("refresh_token").to_string();
            let Some(r) = st.slack.refresh.get(&rt) else {
                return slack_err("invalid_refresh_token");
            };
            if r.client_id != client_id {
                return slack_err("invalid_refresh_token");
            }
            let scope = r.scope.clone();
            // Rotation: the refresh token is spent.
            st.slack.refresh.remove(&rt);
            let (_, user) = issue(&mut st, &client_id, &scope);
            let mut body = json!({
                "ok": true,
                "app_id": APP_ID,
                "user_id": ADMIN_USER_ID,
                "enterprise": enterprise,
                "team": null,
                "is_enterprise_install": true,
            });
            for k in [
                "access_token",
                "token_type",
                "scope",
                "refresh_token",
                "expires_in",
            ] {
                if let Some(v) = user.get(k) {
                    body[k] = v.clone();
                }
            }
            Json(body).into_response()
        }
        _ => slack_err("invalid_grant_type"),
    }
}

/// `auth.revoke`: ends the bearer token (and the refresh token it came
/// with); `test=true` only checks it.
async fn revoke(
    Ax(s): Ax<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let a = args(query.as_deref(), &body);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
        .or_else(|| a.get("token").cloned());
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return slack_err("not_authed");
    };
    if [DEMO_USER_TOKEN, DEMO_SCIM_TOKEN, DEMO_READONLY_TOKEN].contains(&token.as_str()) {
        // The fixed demo tokens stay valid for the next run.
        return slack_err("not_allowed_token_type");
    }
    if let Err(e) = user_token(&s, &token) {
        return slack_err(e);
    }
    let test = matches!(a.get("test").map(String::as_str), Some("true" | "1"));
    if !test {
        let mut st = s.oauth.lock().expect("oauth lock");
        if let Some(t) = st.slack.tokens.remove(&token) {
            if let Some(f) = t.family {
                st.slack.refresh.remove(&f);
                let family: Vec<String> = st
                    .slack
                    .tokens
                    .iter()
                    .filter(|(_, x)| x.family.as_deref() == Some(f.as_str()))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in family {
                    st.slack.tokens.remove(&k);
                    st.slack.revoked.insert(k);
                }
            }
            st.slack.revoked.insert(token);
        }
    }
    Json(json!({"ok": true, "revoked": !test})).into_response()
}
