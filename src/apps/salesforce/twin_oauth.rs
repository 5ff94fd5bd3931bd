//! Salesforce device flow twin (non-RFC): the token endpoint takes
//! `response_type=device_code&client_id&scope` to start, and
//! `grant_type=device&client_id&code` to poll; `grant_type=refresh_token`
//! renews. Errors are HTTP 400 `{"error","error_description"}`:
//! `authorization_pending`, `slow_down` (polled faster than `interval`),
//! `access_denied`, `expired_token`, `invalid_client_id`, `invalid_grant`.
//! The operator approves at `/setup/connect` (Salesforce's verification
//! page) by POSTing its form.
//!
//! The org emulator's `/services/oauth2/token` hands these grants to
//! [`token_request`], and its REST API accepts the tokens issued here
//! ([`check_access`]).
//!
//! Demo connected apps (not secrets), device flow enabled, no secret
//! required: [`CONSUMER_KEY`] and the org emulator's JWT consumer key. Polling, expiry and withheld scopes follow the
//! switches in `/_sandbox/oauth` (`device_interval_secs`, `device_ttl_secs`,
//! `device_script`, `withhold_scopes`, `access_ttl_secs`).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Form, Query, State as Ax};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use crate::sandbox::Shared;

pub const CONSUMER_KEY: &str = "3MVG9DEMO_offboard_sandbox_device_consumer_key";
pub const ORG_ID: &str = "00DDEMO000000001";
pub const ADMIN_USER_ID: &str = "005DEMO000000001";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Decision {
    Pending,
    Approved,
    Denied,
}

struct Device {
    user_code: String,
    scope: String,
    decision: Decision,
    expires: Instant,
    interval: Duration,
    last_poll: Option<Instant>,
}

struct Session {
    scope: String,
    expires: Instant,
}

/// The device flow's state (inside the sandbox's OAuth state).
#[derive(Default)]
pub struct State {
    devices: HashMap<String, Device>,
    sessions: HashMap<String, Session>,
    refresh: HashMap<String, String>,
}

impl State {
    pub fn expire_all(&mut self) {
        let now = Instant::now();
        for s in self.sessions.values_mut() {
            s.expires = now;
        }
    }
}

/// The scope of a valid access token this twin issued (for the org
/// emulator's API).
pub fn check_access(s: &Shared, token: &str) -> Option<String> {
    let st = s.oauth.lock().expect("oauth lock");
    st.salesforce
        .sessions
        .get(token)
        .filter(|x| x.expires > Instant::now())
        .map(|x| x.scope.clone())
}

pub fn routes() -> Router<Shared> {
    Router::new().route("/setup/connect", get(connect_page).post(connect_decide))
}

fn error(error: &str, description: &str) -> Response {
    let mut r = (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, "no-store".parse().expect("static"));
    r
}

fn ok(body: serde_json::Value) -> Response {
    let mut r = Json(body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, "no-store".parse().expect("static"));
    r
}

fn random(bytes: usize) -> String {
    let v: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

fn user_code() -> String {
    const SET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ23456789";
    (0..8)
        .map(|_| SET[rand::random_range(0..SET.len())] as char)
        .collect()
}

/// Answers the device-flow and refresh requests of a token endpoint form;
/// None for other grants (left to the caller).
pub fn token_request(s: &Shared, form: &HashMap<String, String>) -> Option<Response> {
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let start = get("response_type") == "device_code";
    let grant = get("grant_type");
    if !start && grant != "device" && grant != "refresh_token" {
        return None;
    }
    if ![CONSUMER_KEY, super::twin::DEMO_CONSUMER_KEY].contains(&get("client_id")) {
        return Some(error("invalid_client_id", "client identifier invalid"));
    }
    let mut st = s.oauth.lock().expect("oauth lock");
    let now = Instant::now();
    if start {
        let scope = st.grant_scope(get("scope"));
        let device_code = random(32);
        let code = user_code();
        let interval = st.settings.device_interval_secs;
        let ttl = st.settings.device_ttl_secs;
        st.issued.push(device_code.clone());
        st.salesforce.devices.insert(
            device_code.clone(),
            Device {
                user_code: code.clone(),
                scope,
                decision: Decision::Pending,
                expires: now + Duration::from_secs(ttl),
                interval: Duration::from_secs(interval),
                last_poll: None,
            },
        );
        return Some(ok(json!({
            "device_code": device_code,
            "user_code": code,
            "verification_uri": format!("{}/setup/connect", s.base_url),
            "interval": interval,
        })));
    }
    if grant == "refresh_token" {
        let Some(scope) = st.salesforce.refresh.get(get("refresh_token")).cloned() else {
            return Some(error("invalid_grant", "expired access/refresh token"));
        };
        // Salesforce keeps the refresh token: the answer has none.
        return Some(ok(issue(s, &mut st, &scope, false)));
    }
    let code = get("code").to_string();
    let Some(d) = st.salesforce.devices.get_mut(&code) else {
        return Some(error("invalid_grant", "invalid device code"));
    };
    let too_fast = d
        .last_poll
        .is_some_and(|t| now.duration_since(t) + Duration::from_millis(200) < d.interval);
    d.last_poll = Some(now);
    let (decision, expired, scope, user) = (
        d.decision,
        d.expires <= now,
        d.scope.clone(),
        d.user_code.clone(),
    );
    st.polls.entry(user).or_default().push(now);
    if !st.settings.device_script.is_empty() {
        let e = st.settings.device_script.remove(0);
        return Some(error(&e, "scripted answer"));
    }
    if expired {
        st.salesforce.devices.remove(&code);
        return Some(error("expired_token", "device code expired"));
    }
    Some(match decision {
        Decision::Denied => {
            st.salesforce.devices.remove(&code);
            error("access_denied", "end-user denied authorization")
        }
        Decision::Pending if too_fast => error("slow_down", "polling too frequently"),
        Decision::Pending => error("authorization_pending", "authorization pending"),
        Decision::Approved => {
            st.salesforce.devices.remove(&code);
            ok(issue(s, &mut st, &scope, true))
        }
    })
}

fn issue(
    s: &Shared,
    st: &mut crate::sandbox::oauth::State,
    scope: &str,
    with_refresh: bool,
) -> serde_json::Value {
    let at = format!("{ORG_ID}!{}", random(40));
    st.issued.push(at.clone());
    let ttl = st.settings.access_ttl_secs;
    st.salesforce.sessions.insert(
        at.clone(),
        Session {
            scope: scope.to_string(),
            expires: Instant::now() + Duration::from_secs(ttl),
        },
    );
    let mut body = json!({
        "access_token": at,
        "signature": random(32),
        "scope": scope,
        "instance_url": s.base_url,
        "id": format!("{}/id/{ORG_ID}/{ADMIN_USER_ID}", s.base_url),
        "token_type": "Bearer",
        "issued_at": chrono::Utc::now().timestamp_millis().to_string(),
    });
    if with_refresh {
        let rt = format!("5Aep{}", random(40));
        st.issued.push(rt.clone());
        st.salesforce.refresh.insert(rt.clone(), scope.to_string());
        body["refresh_token"] = rt.into();
    }
    body
}

#[derive(Deserialize)]
struct CodeQuery {
    user_code: Option<String>,
}

async fn connect_page(Query(q): Query<CodeQuery>) -> Html<String> {
    let code = q.user_code.unwrap_or_default();
    let safe: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect();
    Html(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Connect Your Device</title></head><body>
<h1>Connect Your Device</h1>
<form method="post" action="/setup/connect">
<input name="user_code" value="{safe}" autocomplete="off">
<button type="submit" name="decision" value="approve">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form></body></html>"#
    ))
}

#[derive(Deserialize)]
struct Approval {
    user_code: Option<String>,
    decision: Option<String>,
}

async fn connect_decide(Ax(s): Ax<Shared>, Form(a): Form<Approval>) -> Response {
    let wanted = a.user_code.unwrap_or_default().trim().to_ascii_uppercase();
    let mut st = s.oauth.lock().expect("oauth lock");
    let now = Instant::now();
    let Some(d) = st
        .salesforce
        .devices
        .values_mut()
        .find(|d| d.user_code == wanted && d.expires > now && d.decision == Decision::Pending)
    else {
        return (StatusCode::BAD_REQUEST, Html("Invalid or expired code.")).into_response();
    };
    if a.decision.as_deref() == Some("approve") {
        d.decision = Decision::Approved;
        Html("Your device is connected.").into_response()
    } else {
        d.decision = Decision::Denied;
        Html("Access denied.").into_response()
    }
}
