//! Okta emulator: the Management API under `/api/v1` (users and their
//! lifecycle and deletion, sessions, OAuth grants and tokens per client,
//! API tokens, factors, app links and assignments, app users, groups and
//! their members, admin roles) and the org authorization server's token
//! endpoint `/oauth2/v1/token` (client credentials with a `private_key_jwt`
//! client assertion).
//!
//! Behaviour copied from Okta (REFERENCE.md §3, the okta-*.json specs):
//! - `Authorization: SSWS {apiToken}` (the space optional, see
//!   `credentials`) or `Bearer {access token}`; an OAuth token must carry
//!   the `okta.*` scope of the call (403 `E0000006`).
//! - Errors are `{errorCode, errorSummary, errorLink, errorId, errorCauses}`.
//! - Lists page with `limit` and an opaque `after` cursor, and say where the
//!   next page is only in `Link: <…>; rel="next"` (plus `rel="self"`).
//! - Every answer carries `X-Rate-Limit-Limit`, `-Remaining` and `-Reset`
//!   (epoch seconds of the window's end); past the limit, 429 `E0000047`.
//! - `search` is eventually consistent: a user created or changed within the
//!   consistency delay is not yet found by it, and it compares
//!   case-insensitively. `filter` supports `eq` only and compares values
//!   case-sensitively. A list with neither omits DEPROVISIONED users.
//! - Suspend works on ACTIVE users only and keeps every assignment.
//!   Deactivation is asynchronous (`Prefer: respond-async` answers 202 with
//!   `transitioningToStatus`), then the user is DEPROVISIONED and loses every
//!   app assignment.
//! - Roles and apps held through a group (`assignmentType`/`scope` GROUP)
//!   refuse direct removal; APP_GROUP and BUILT_IN memberships cannot be
//!   edited. Removing an OKTA_GROUP membership takes what the group gave.
//!
//! The refusals' statuses and codes are the constants below
//! ([`GROUP_APP_REFUSED`], [`ACCESS_DENIED`], [`NOT_ACTIVE`],
//! [`NOT_FOUND`]), each with what the spec settles and what it leaves open.
//!
//! Sandbox-only controls: `GET`/`PUT /_sandbox/okta` (rate-limit window,
//! forced 429s, the search index's lag), `POST /_sandbox/okta/users`
//! (create a user now, for the search delay), `GET /_sandbox/okta/state`
//! (sessions and tokens, for tests).

use std::collections::{HashMap, HashSet};

use axum::extract::{Form, Path, Query, Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::sandbox::Shared;
use crate::sandbox::tenant::{self, Scenario};

/// The demo org's API token (SSWS): a demo value only the sandbox accepts.
pub const DEMO_API_TOKEN: &str = "00offboardDemoOktaApiTokenSandboxOnly";
/// The demo service app's client id (private_key_jwt).
pub const DEMO_CLIENT_ID: &str = "0oaoffboarddemo0svc";
/// Scopes the demo service app was granted.
pub const GRANTED_SCOPES: &[&str] = &[
    "okta.users.read",
    "okta.users.manage",
    "okta.apps.read",
    "okta.apps.manage",
    "okta.groups.read",
    "okta.groups.manage",
    "okta.roles.read",
    "okta.roles.manage",
    "okta.apiTokens.read",
    "okta.apiTokens.manage",
    "okta.userGrants.read",
    "okta.userGrants.manage",
    "okta.factors.read",
    "okta.factors.manage",
];

/// 403 for a group-held app assignment (`DELETE /apps/{appId}/users/{userId}`
/// of a user whose assignment has `scope: GROUP`). The spec settles the
/// status (its 403 is the only refusal it documents) but its 403 example is
/// the generic `E0000006`; the code is the one Okta's error catalogue names
/// for it, "Deactivate application for user forbidden".
pub const GROUP_APP_REFUSED: &str = "E0000090";
/// 403 `E0000006`, "You do not have permission to perform the requested
/// action", the spec's own 403 example: a group-held role
/// (`assignmentType: GROUP`) and a membership of an `APP_GROUP` or
/// `BUILT_IN` group (the spec: "You only can modify memberships for groups
/// of the OKTA_GROUP type"). The spec does not say which `errorCauses`
/// Okta adds; the twin names the reason in one.
pub const ACCESS_DENIED: &str = "E0000006";
/// 400 for suspending a user who is not `ACTIVE` ("Perform this operation
/// only on users with an ACTIVE status"). The spec settles the status; its
/// 400 example (`E0000028`, a missing parameter) cannot be the case here,
/// so the code is the generic validation failure `E0000001` ("Api
/// validation failed: {0}", the spec's own example of that code).
pub const NOT_ACTIVE: &str = "E0000001";
/// 404 `E0000007` ("Not found: Resource not found: {id} (User)"): an
/// unknown user, and deactivating a user who is already `DEPROVISIONED`.
/// For the latter the spec documents no 400 (only 403, 404, 429), and Okta
/// answers 404 `E0000007` (as reported against its Java SDK's `deactivate`).
pub const NOT_FOUND: &str = "E0000007";

/// Twin switches (`PUT /_sandbox/okta`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Requests allowed per window and credential, as Okta's per-minute
    /// buckets.
    pub rate_limit: u32,
    /// The window's length in seconds (Okta: 60).
    pub window_secs: u64,
    /// The next this many API requests are refused with 429 `E0000047`
    /// whatever the count (headers then say the window is spent).
    pub force_429: u32,
    /// How long `search` lags behind a change, in milliseconds (Okta's
    /// eventually consistent search index). None: the sandbox's
    /// consistency delay (`consistency_ms` of `/_sandbox/faults`).
    pub search_lag_ms: Option<u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            rate_limit: 6000,
            window_secs: 60,
            force_429: 0,
            search_lag_ms: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub login: String,
    pub email: String,
    pub first: String,
    pub last: String,
    pub status: String,
    /// Deactivation under way: when it settles.
    pub deactivating: Option<Instant>,
    /// Created or changed at: `search` sees it after the consistency delay.
    pub changed_at: Option<Instant>,
    pub last_login: Option<String>,
    pub sessions: u32,
}

#[derive(Debug, Clone)]
struct Member {
    user: String,
    removed_at: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Group {
    id: String,
    name: String,
    kind: &'static str,
    members: Vec<Member>,
    /// Apps assigned to the group.
    apps: Vec<String>,
    /// Admin roles assigned to the group: (role type, label).
    roles: Vec<(&'static str, &'static str)>,
}

#[derive(Debug, Clone)]
struct App {
    id: String,
    name: String,
    label: String,
    direct: Vec<Member>,
}

#[derive(Debug, Clone)]
struct Item {
    id: String,
    user: String,
    /// Client id (grants, tokens), role type, factor type, API token name.
    what: String,
    /// Scope (grants), label (roles), provider (factors), client name.
    extra: String,
    removed_at: Option<Instant>,
}

pub struct State {
    pub settings: Settings,
    pub users: Vec<User>,
    groups: Vec<Group>,
    apps: Vec<App>,
    clients: Vec<(String, String)>,
    grants: Vec<Item>,
    tokens: Vec<Item>,
    roles: Vec<Item>,
    factors: Vec<Item>,
    api_tokens: Vec<Item>,
    /// OAuth access tokens issued: token -> scopes.
    access: HashMap<String, Vec<String>>,
    seen_jti: HashSet<String>,
    /// Requests counted in the current window: (window start, count) per credential.
    windows: HashMap<String, (u64, u32)>,
    next: u64,
}

fn oid(prefix: &str, n: u64) -> String {
    format!("{prefix}{n:017}")
}

impl State {
    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        oid(prefix, self.next)
    }

    fn item(&mut self, prefix: &str, user: &str, what: &str, extra: &str) -> Item {
        Item {
            id: self.id(prefix),
            user: user.into(),
            what: what.into(),
            extra: extra.into(),
            removed_at: None,
        }
    }

    fn group(&mut self, name: &str, kind: &'static str) -> usize {
        let id = self.id("00g");
        self.groups.push(Group {
            id,
            name: name.into(),
            kind,
            members: Vec::new(),
            apps: Vec::new(),
            roles: Vec::new(),
        });
        self.groups.len() - 1
    }

    fn app(&mut self, name: &str, label: &str) -> usize {
        let id = self.id("0oa");
        self.apps.push(App {
            id,
            name: name.into(),
            label: label.into(),
            direct: Vec::new(),
        });
        self.apps.len() - 1
    }

    fn join(&mut self, g: usize, user: &str) {
        self.groups[g].members.push(Member {
            user: user.into(),
            removed_at: None,
        });
    }

    fn assign(&mut self, a: usize, user: &str) {
        self.apps[a].direct.push(Member {
            user: user.into(),
            removed_at: None,
        });
    }

    /// The demo org: everyone of the tenant but the Slack-only guest.
    pub fn seed() -> State {
        Self::seed_people(tenant::people())
    }

    /// The org with these people (the demo's, and a bench tenant's).
    pub fn seed_people(people: Vec<tenant::TenantPerson>) -> State {
        let mut s = State {
            settings: Settings::default(),
            users: Vec::new(),
            groups: Vec::new(),
            apps: Vec::new(),
            clients: Vec::new(),
            grants: Vec::new(),
            tokens: Vec::new(),
            roles: Vec::new(),
            factors: Vec::new(),
            api_tokens: Vec::new(),
            access: HashMap::new(),
            seen_jti: HashSet::new(),
            windows: HashMap::new(),
            next: 1000,
        };
        let everyone = s.group("Everyone", "BUILT_IN");
        let staff = s.group("All Staff", "OKTA_GROUP");
        let it = s.group("IT Helpdesk", "OKTA_GROUP");
        let contractors = s.group("Contractors", "OKTA_GROUP");
        let ad_sales = s.group("sales-ad (Active Directory)", "APP_GROUP");
        let mut dept = HashMap::new();
        for d in tenant::DEPARTMENTS {
            dept.insert(*d, s.group(d, "OKTA_GROUP"));
        }
        let google = s.app("google", "Google Workspace");
        let slack = s.app("slack", "Slack");
        let salesforce = s.app("salesforce", "Salesforce");
        let github = s.app("github_enterprise", "GitHub Enterprise");
        let aws = s.app("amazon_aws", "AWS Console");
        s.groups[staff].apps = vec![s.apps[google].id.clone(), s.apps[slack].id.clone()];
        s.groups[it].roles = vec![("HELP_DESK_ADMIN", "Help Desk Administrator")];
        s.groups[it].apps = vec![s.apps[aws].id.clone()];
        s.clients = vec![
            ("0oaclient0zoom".into(), "Zoom".into()),
            ("0oaclient0cli".into(), "Okta CLI".into()),
            ("0oaclient0miro".into(), "Miro".into()),
        ];

        for p in people {
            if p.scenario == Some(Scenario::SlackOnlyContractor) {
                continue;
            }
            let uid = oid("00u", u64::from(p.n));
            let (login, email) = match p.scenario {
                // Signs in with the older address; the profile email is
                // written in mixed case (a `filter` would miss it).
                Some(Scenario::DifferentEmail) => (
                    "achen@example.com".to_string(),
                    "Alex.Chen@Example.com".to_string(),
                ),
                _ => (p.email.clone(), p.email.clone()),
            };
            let status = match p.scenario {
                Some(Scenario::AlreadySuspended) => "SUSPENDED",
                _ => "ACTIVE",
            };
            s.users.push(User {
                id: uid.clone(),
                login,
                email,
                first: p.first.clone(),
                last: p.last.clone(),
                status: status.into(),
                deactivating: None,
                changed_at: None,
                last_login: Some("2026-11-30T08:12:00.000Z".into()),
                sessions: if p.scenario.is_some() { 2 } else { 1 },
            });
            s.join(everyone, &uid);
            s.join(staff, &uid);
            s.join(dept[p.department], &uid);
            let Some(scenario) = p.scenario else {
                continue;
            };
            let f = s.item("opf", &uid, "push", "OKTA");
            s.factors.push(f);
            match scenario {
                Scenario::Scheduled => {
                    s.assign(salesforce, &uid);
                    let f = s.item("sms", &uid, "sms", "OKTA");
                    s.factors.push(f);
                    let g = s.item("oag", &uid, "0oaclient0zoom", "okta.users.read.self");
                    s.grants.push(g);
                    let t = s.item("oar", &uid, "0oaclient0zoom", "openid offline_access");
                    s.tokens.push(t);
                }
                Scenario::UrgentTermination => {
                    s.join(it, &uid);
                    let r = s.item("ra1", &uid, "ORG_ADMIN", "Organization Administrator");
                    s.roles.push(r);
                    s.assign(salesforce, &uid);
                    s.assign(github, &uid);
                    for c in ["0oaclient0cli", "0oaclient0miro"] {
                        let t = s.item("oar", &uid, c, "openid offline_access okta.users.read");
                        s.tokens.push(t);
                    }
                    let g = s.item("oag", &uid, "0oaclient0cli", "okta.users.manage");
                    s.grants.push(g);
                    let f = s.item("fwa", &uid, "webauthn", "FIDO");
                    s.factors.push(f);
                }
                Scenario::Contractor => {
                    s.join(contractors, &uid);
                    s.assign(github, &uid);
                    let t = s.item("00T", &uid, "CI deploy pipeline", "Okta API");
                    s.api_tokens.push(t);
                }
                Scenario::Mover => {
                    s.join(ad_sales, &uid);
                    s.join(dept["Marketing"], &uid);
                    s.assign(salesforce, &uid);
                }
                Scenario::AlreadySuspended => {
                    s.assign(salesforce, &uid);
                    let t = s.item("oar", &uid, "0oaclient0zoom", "openid offline_access");
                    s.tokens.push(t);
                }
                Scenario::DifferentEmail => {
                    s.assign(github, &uid);
                }
                Scenario::SlackOnlyContractor => {}
            }
        }
        // Other people's API tokens, so the org-wide list pages.
        for n in 0..25u64 {
            let uid = oid("00u", 100 + n);
            let t = s.item("00T", &uid, &format!("integration {n}"), "Okta API");
            s.api_tokens.push(t);
        }
        s
    }

    /// What the person with this address still holds, read from the
    /// org's own state (benchmarks check outcomes with it): an account
    /// neither suspended nor deprovisioned (nor on its way), live sessions,
    /// group memberships, direct app assignments, grants, tokens, roles,
    /// factors, API tokens.
    pub fn held_by(&self, email: &str) -> Vec<(crate::model::GrantKind, String)> {
        use crate::model::GrantKind as K;
        let Some(u) = self
            .users
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(email) || u.login.eq_ignore_ascii_case(email))
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        // Suspended (the default closure) or deprovisioned: closed.
        if !matches!(u.status.as_str(), "SUSPENDED" | "DEPROVISIONED") && u.deactivating.is_none() {
            out.push((K::Account, format!("account {}", u.status)));
        }
        if u.sessions > 0 && u.status != "DEPROVISIONED" {
            out.push((K::Session, format!("{} session(s)", u.sessions)));
        }
        let live = |m: &Member| m.user == u.id && m.removed_at.is_none();
        for g in self.groups.iter().filter(|g| g.members.iter().any(live)) {
            out.push((K::Group, format!("group {}", g.name)));
        }
        for a in self.apps.iter().filter(|a| a.direct.iter().any(live)) {
            out.push((K::License, format!("app {}", a.label)));
        }
        for (kind, items) in [
            (K::OauthGrant, &self.grants),
            (K::OauthGrant, &self.tokens),
            (K::AdminRole, &self.roles),
            (K::Device, &self.factors),
            (K::ApiKey, &self.api_tokens),
        ] {
            for i in items
                .iter()
                .filter(|i| i.user == u.id && i.removed_at.is_none())
            {
                out.push((kind, format!("{} {}", i.id, i.what)));
            }
        }
        out
    }

    /// What a user still holds, whatever any listing shows (for tests):
    /// `grant:`, `token:`, `factor:`, `role:`, `api-token:` and `app:`
    /// entries with an id or app name, `group:` with the group's name.
    pub fn held(&self, user_id: &str) -> Vec<String> {
        let live = |items: &[Item], kind: &str| -> Vec<String> {
            items
                .iter()
                .filter(|i| i.user == user_id && i.removed_at.is_none())
                .map(|i| format!("{kind}:{}", i.id))
                .collect()
        };
        let mut out = live(&self.grants, "grant");
        out.extend(live(&self.tokens, "token"));
        out.extend(live(&self.factors, "factor"));
        out.extend(live(&self.roles, "role"));
        out.extend(live(&self.api_tokens, "api-token"));
        for a in &self.apps {
            if a.direct
                .iter()
                .any(|m| m.user == user_id && m.removed_at.is_none())
            {
                out.push(format!("app:{}", a.name));
            }
        }
        for g in &self.groups {
            if g.members
                .iter()
                .any(|m| m.user == user_id && m.removed_at.is_none())
            {
                out.push(format!("group:{}", g.name));
            }
        }
        out
    }

    fn user_idx(&self, key: &str) -> Option<usize> {
        self.users
            .iter()
            .position(|u| u.id == key || u.login.eq_ignore_ascii_case(key))
    }

    /// Settles a deactivation whose time has come: DEPROVISIONED, and every
    /// app assignment deprovisioned.
    fn settle(&mut self, now: Instant) {
        let mut done = Vec::new();
        for u in &mut self.users {
            if u.deactivating.is_some_and(|t| t <= now) {
                u.deactivating = None;
                u.status = "DEPROVISIONED".into();
                u.changed_at = Some(now);
                u.sessions = 0;
                done.push(u.id.clone());
            }
        }
        for id in done {
            for a in &mut self.apps {
                for m in &mut a.direct {
                    if m.user == id && m.removed_at.is_none() {
                        m.removed_at = Some(now);
                    }
                }
            }
        }
    }
}

// ----- answers -----------------------------------------------------------

/// Okta's error body.
pub fn okta_error(status: StatusCode, code: &str, summary: &str, causes: &[&str]) -> Response {
    let causes: Vec<Value> = causes.iter().map(|c| json!({"errorSummary": c})).collect();
    (
        status,
        Json(json!({
            "errorCode": code,
            "errorSummary": summary,
            "errorLink": code,
            "errorId": format!("oae{}", rand::random::<u32>()),
            "errorCauses": causes,
        })),
    )
        .into_response()
}

fn not_found() -> Response {
    okta_error(
        StatusCode::NOT_FOUND,
        NOT_FOUND,
        "Not found: Resource not found: (User)",
        &[],
    )
}

fn forbidden(cause: &str) -> Response {
    okta_error(
        StatusCode::FORBIDDEN,
        ACCESS_DENIED,
        "You do not have permission to perform the requested action",
        &[cause],
    )
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn listed(s: &Shared, removed_at: Option<Instant>) -> bool {
    s.still_listed(removed_at)
}

/// The scope an OAuth token needs for a call.
fn scope_for(method: &str, path: &str) -> &'static str {
    let write = method != "GET";
    let family = if path.starts_with("/api/v1/api-tokens") {
        "apiTokens"
    } else if path.starts_with("/api/v1/apps") || path.ends_with("/appLinks") {
        "apps"
    } else if path.starts_with("/api/v1/groups") || path.ends_with("/groups") {
        "groups"
    } else if path.contains("/roles") {
        "roles"
    } else if path.contains("/factors") {
        "factors"
    } else if path.contains("/grants") || path.contains("/clients") {
        "userGrants"
    } else {
        "users"
    };
    match (family, write) {
        ("apiTokens", false) => "okta.apiTokens.read",
        ("apiTokens", true) => "okta.apiTokens.manage",
        ("apps", false) => "okta.apps.read",
        ("apps", true) => "okta.apps.manage",
        ("groups", false) => "okta.groups.read",
        ("groups", true) => "okta.groups.manage",
        ("roles", false) => "okta.roles.read",
        ("roles", true) => "okta.roles.manage",
        ("factors", false) => "okta.factors.read",
        ("factors", true) => "okta.factors.manage",
        ("userGrants", false) => "okta.userGrants.read",
        ("userGrants", true) => "okta.userGrants.manage",
        (_, false) => "okta.users.read",
        _ => "okta.users.manage",
    }
}

/// The scheme (`SSWS` or `Bearer`, matched without regard to case as
/// RFC 9110 §11.1 has it) and the credential of an `Authorization` value.
/// The space after the scheme is optional: Okta's own Python SDK (3.x, the
/// OpenAPI-generated client) sends `SSWS{token}` with none (its
/// `Configuration.auth_settings` joins the mode and the token directly),
/// and that SDK is what Okta documents for its orgs, so an org takes it.
fn credentials(auth: &str) -> Option<(&'static str, &str)> {
    let auth = auth.trim();
    for scheme in ["SSWS", "Bearer"] {
        if let Some(head) = auth.get(..scheme.len())
            && head.eq_ignore_ascii_case(scheme)
        {
            let token = auth[scheme.len()..].trim_start();
            return (!token.is_empty()).then_some((scheme, token));
        }
    }
    None
}

/// Authentication, scopes and the rate-limit window of every `/api/v1`
/// call; the headers go on every answer, 429 `E0000047` past the limit.
async fn gate(AxState(s): AxState<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if !path.starts_with("/api/v1/") {
        return next.run(req).await;
    }
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let credential = {
        let st = s.okta.lock().expect("okta lock");
        match credentials(&auth) {
            Some(("SSWS", t)) => (t == DEMO_API_TOKEN).then(|| ("ssws".to_string(), None)),
            Some((_, t)) => st.access.get(t).map(|scopes| {
                (
                    format!("oauth:{}", &t[..t.len().min(12)]),
                    Some(scopes.clone()),
                )
            }),
            None => None,
        }
    };
    let Some((who, scopes)) = credential else {
        return okta_error(
            StatusCode::UNAUTHORIZED,
            "E0000011",
            "Invalid token provided",
            &[],
        );
    };
    let (limit, remaining, reset, refused) = {
        let mut st = s.okta.lock().expect("okta lock");
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let w = st.settings.window_secs.max(1);
        let start = now - now % w;
        let limit = st.settings.rate_limit;
        let forced = st.settings.force_429 > 0;
        if forced {
            st.settings.force_429 -= 1;
        }
        let entry = st.windows.entry(who).or_insert((start, 0));
        if entry.0 != start {
            *entry = (start, 0);
        }
        let refused = forced || entry.1 >= limit;
        if !refused {
            entry.1 += 1;
        }
        let remaining = if forced {
            0
        } else {
            limit - entry.1.min(limit)
        };
        (limit, remaining, start + w, refused)
    };
    let mut resp = if refused {
        okta_error(
            StatusCode::TOO_MANY_REQUESTS,
            "E0000047",
            "API call exceeded rate limit due to too many requests.",
            &[],
        )
    } else if let Some(scopes) = scopes.filter(|sc| {
        !sc.iter()
            .any(|x| x == scope_for(req.method().as_str(), &path))
    }) {
        let need = scope_for(req.method().as_str(), &path);
        let _ = scopes;
        let mut r = okta_error(
            StatusCode::FORBIDDEN,
            "E0000006",
            "You do not have permission to perform the requested action",
            &[],
        );
        r.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_str(&format!(
                "Bearer realm=\"IdpMyAccountAPI\", error=\"insufficient_scope\", scope=\"{need}\""
            ))
            .expect("ascii"),
        );
        r
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    for (k, v) in [
        ("x-rate-limit-limit", limit.to_string()),
        ("x-rate-limit-remaining", remaining.to_string()),
        ("x-rate-limit-reset", reset.to_string()),
    ] {
        h.insert(k, HeaderValue::from_str(&v).expect("digits"));
    }
    resp
}

pub fn routes(state: &Shared) -> Router<Shared> {
    Router::new()
        .route("/oauth2/v1/token", post(token))
        .route("/api/v1/users", get(list_users))
        .route("/api/v1/users/{id}", get(get_user).delete(delete_user))
        .route("/api/v1/users/{id}/lifecycle/{action}", post(lifecycle))
        .route("/api/v1/users/{id}/sessions", delete(clear_sessions))
        .route(
            "/api/v1/users/{id}/grants",
            get(list_grants).delete(delete_all_grants),
        )
        .route(
            "/api/v1/users/{id}/grants/{grant}",
            get(get_grant).delete(delete_grant),
        )
        .route("/api/v1/users/{id}/clients", get(list_clients))
        .route(
            "/api/v1/users/{id}/clients/{client}/grants",
            get(list_client_grants).delete(delete_client_grants),
        )
        .route(
            "/api/v1/users/{id}/clients/{client}/tokens",
            get(list_tokens).delete(delete_tokens),
        )
        .route(
            "/api/v1/users/{id}/clients/{client}/tokens/{token}",
            get(get_token).delete(delete_token),
        )
        .route("/api/v1/users/{id}/factors", get(list_factors))
        .route("/api/v1/users/{id}/factors/{factor}", delete(delete_factor))
        .route("/api/v1/users/{id}/appLinks", get(app_links))
        .route("/api/v1/users/{id}/groups", get(user_groups))
        .route("/api/v1/users/{id}/roles", get(list_roles))
        .route(
            "/api/v1/users/{id}/roles/{role}",
            get(get_role).delete(delete_role),
        )
        .route("/api/v1/apps/{app}/users", get(list_app_users))
        .route(
            "/api/v1/apps/{app}/users/{id}",
            get(get_app_user).delete(delete_app_user),
        )
        .route("/api/v1/groups/{group}/users", get(list_members))
        .route("/api/v1/groups/{group}/users/{id}", delete(delete_member))
        .route("/api/v1/api-tokens", get(list_api_tokens))
        .route(
            "/api/v1/api-tokens/{token}",
            get(get_api_token).delete(delete_api_token),
        )
        .route("/_sandbox/okta", get(get_settings).put(put_settings))
        .route("/_sandbox/okta/users", post(create_user))
        .route("/_sandbox/okta/state", get(get_state))
        .layer(middleware::from_fn_with_state(state.clone(), gate))
}

// ----- paging ------------------------------------------------------------

#[derive(Deserialize, Default)]
struct PageQuery {
    limit: Option<usize>,
    after: Option<String>,
    search: Option<String>,
    filter: Option<String>,
    q: Option<String>,
}

fn cursor(id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("c:{id}"))
}

fn uncursor(c: &str) -> Option<String> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()?;
    String::from_utf8(raw)
        .ok()?
        .strip_prefix("c:")
        .map(str::to_string)
}

/// One page of `items` (each with an `id`), with Okta's `Link` headers.
fn page(
    s: &Shared,
    path: &str,
    q: &PageQuery,
    extra: &[(&str, &str)],
    items: Vec<Value>,
    default_limit: usize,
    max_limit: usize,
) -> Response {
    let limit = q.limit.unwrap_or(default_limit).clamp(1, max_limit);
    let start = match q.after.as_deref() {
        None => 0,
        Some(c) => match uncursor(c) {
            Some(id) => items
                .iter()
                .position(|v| v["id"].as_str() == Some(id.as_str()))
                .map_or(items.len(), |i| i + 1),
            None => {
                return okta_error(
                    StatusCode::BAD_REQUEST,
                    "E0000001",
                    "Api validation failed: after",
                    &["after: Invalid cursor"],
                );
            }
        },
    };
    let chunk: Vec<Value> = items.iter().skip(start).take(limit).cloned().collect();
    let more = start + chunk.len() < items.len();
    let link = |after: Option<&str>| {
        let mut u = url::Url::parse(&format!("{}{path}", s.base_url)).expect("base url");
        {
            let mut qp = u.query_pairs_mut();
            for (k, v) in extra {
                qp.append_pair(k, v);
            }
            if let Some(a) = after {
                qp.append_pair("after", a);
            }
            qp.append_pair("limit", &limit.to_string());
        }
        u.to_string()
    };
    let mut resp = Json(Value::Array(chunk.clone())).into_response();
    let h = resp.headers_mut();
    h.append(
        "link",
        HeaderValue::from_str(&format!("<{}>; rel=\"self\"", link(q.after.as_deref())))
            .expect("ascii"),
    );
    if more && let Some(last) = chunk.last().and_then(|v| v["id"].as_str()) {
        h.append(
            "link",
            HeaderValue::from_str(&format!("<{}>; rel=\"next\"", link(Some(&cursor(last)))))
                .expect("ascii"),
        );
    }
    resp
}

// ----- users ---------------------------------------------------------------

fn user_json(s: &Shared, u: &User) -> Value {
    let base = &s.base_url;
    json!({
        "id": u.id,
        "status": u.status,
        "transitioningToStatus": u.deactivating.map(|_| "DEPROVISIONED"),
        "created": "2024-03-01T09:00:00.000Z",
        "activated": "2024-03-01T09:05:00.000Z",
        "statusChanged": "2026-11-01T09:00:00.000Z",
        "lastLogin": u.last_login,
        "lastUpdated": "2026-11-30T08:12:00.000Z",
        "passwordChanged": "2026-06-01T10:00:00.000Z",
        "type": {"id": "oty1offboarddemo"},
        "profile": {
            "login": u.login,
            "email": u.email,
            "firstName": u.first,
            "lastName": u.last,
        },
        "credentials": {"provider": {"type": "OKTA", "name": "OKTA"}},
        "_links": {"self": {"href": format!("{base}/api/v1/users/{}", u.id)}},
    })
}

/// Parses `ATTR eq "VALUE"` (backslash escapes `\"` and `\\`).
fn parse_eq(expr: &str) -> Option<(String, String)> {
    let expr = expr.trim();
    let (attr, rest) = expr.split_once(' ')?;
    let rest = rest.trim_start();
    let rest = rest.strip_prefix("eq ")?.trim();
    let inner = rest.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some((attr.to_string(), out))
}

fn attr_of<'a>(u: &'a User, attr: &str) -> Option<&'a str> {
    match attr {
        "profile.email" => Some(&u.email),
        "profile.login" => Some(&u.login),
        "id" => Some(&u.id),
        "status" => Some(&u.status),
        _ => None,
    }
}

fn bad_search(which: &str) -> Response {
    okta_error(
        StatusCode::BAD_REQUEST,
        "E0000031",
        &format!("Invalid {which} criteria."),
        &[],
    )
}

async fn list_users(AxState(s): AxState<Shared>, Query(q): Query<PageQuery>) -> Response {
    let sandbox_delay = s.consistency();
    let now = Instant::now();
    let mut st = s.okta.lock().expect("okta lock");
    st.settle(now);
    let consistency = st
        .settings
        .search_lag_ms
        .map_or(sandbox_delay, std::time::Duration::from_millis);
    let users: Vec<&User> = if let Some(search) = q.search.as_deref() {
        let Some((attr, value)) = parse_eq(search) else {
            return bad_search("search");
        };
        // The search index lags: what changed within the delay is unseen.
        st.users
            .iter()
            .filter(|u| {
                u.changed_at
                    .is_none_or(|t| now.duration_since(t) >= consistency)
            })
            .filter(|u| attr_of(u, &attr).is_some_and(|v| v.eq_ignore_ascii_case(&value)))
            .collect()
    } else if let Some(filter) = q.filter.as_deref() {
        let Some((attr, value)) = parse_eq(filter) else {
            return bad_search("filter");
        };
        st.users
            .iter()
            .filter(|u| attr_of(u, &attr).is_some_and(|v| v == value))
            .collect()
    } else {
        st.users
            .iter()
            .filter(|u| u.status != "DEPROVISIONED")
            .filter(|u| {
                q.q.as_deref().is_none_or(|p| {
                    let p = p.to_ascii_lowercase();
                    u.login.to_ascii_lowercase().starts_with(&p)
                        || u.email.to_ascii_lowercase().starts_with(&p)
                        || u.first.to_ascii_lowercase().starts_with(&p)
                        || u.last.to_ascii_lowercase().starts_with(&p)
                })
            })
            .collect()
    };
    let items: Vec<Value> = users.iter().map(|u| user_json(&s, u)).collect();
    drop(st);
    let mut extra = Vec::new();
    if let Some(v) = q.search.as_deref() {
        extra.push(("search", v));
    }
    if let Some(v) = q.filter.as_deref() {
        extra.push(("filter", v));
    }
    page(&s, "/api/v1/users", &q, &extra, items, 200, 200)
}

async fn get_user(AxState(s): AxState<Shared>, Path(id): Path<String>) -> Response {
    let mut st = s.okta.lock().expect("okta lock");
    st.settle(Instant::now());
    match st.user_idx(&id) {
        Some(i) => Json(user_json(&s, &st.users[i])).into_response(),
        None => not_found(),
    }
}

/// `sendEmail` is accepted and ignored: the sandbox sends no mail.
#[derive(Deserialize)]
struct LifecycleQuery {
    #[serde(rename = "sendEmail")]
    #[allow(dead_code)]
    send_email: Option<bool>,
}

async fn lifecycle(
    AxState(s): AxState<Shared>,
    Path((id, action)): Path<(String, String)>,
    Query(_q): Query<LifecycleQuery>,
    headers: HeaderMap,
) -> Response {
    let now = Instant::now();
    let consistency = s.consistency();
    let mut st = s.okta.lock().expect("okta lock");
    st.settle(now);
    let Some(i) = st.user_idx(&id) else {
        return not_found();
    };
    match action.as_str() {
        "suspend" => {
            if st.users[i].status != "ACTIVE" {
                return okta_error(
                    StatusCode::BAD_REQUEST,
                    NOT_ACTIVE,
                    "Api validation failed: suspend",
                    &["Cannot suspend a user that is not active"],
                );
            }
            let u = &mut st.users[i];
            u.status = "SUSPENDED".into();
            u.changed_at = Some(now);
            Json(json!({})).into_response()
        }
        "unsuspend" => {
            if st.users[i].status != "SUSPENDED" {
                return okta_error(
                    StatusCode::BAD_REQUEST,
                    "E0000001",
                    "Api validation failed: unsuspend",
                    &["Cannot unsuspend a user that is not suspended"],
                );
            }
            st.users[i].status = "ACTIVE".into();
            Json(json!({})).into_response()
        }
        "reset_factors" => {
            let uid = st.users[i].id.clone();
            remove_where(&mut st.factors, now, |f| f.user == uid);
            Json(json!({})).into_response()
        }
        "deactivate" => {
            let u = &mut st.users[i];
            if u.status == "DEPROVISIONED" {
                let summary = format!("Not found: Resource not found: {} (User)", u.id);
                return okta_error(StatusCode::NOT_FOUND, NOT_FOUND, &summary, &[]);
            }
            if u.deactivating.is_none() {
                u.deactivating = Some(now + consistency);
            }
            let is_async = headers
                .get("prefer")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("respond-async"));
            if is_async {
                StatusCode::ACCEPTED.into_response()
            } else {
                // Without respond-async Okta answers once done.
                u.deactivating = Some(now);
                st.settle(now);
                Json(json!({})).into_response()
            }
        }
        _ => not_found(),
    }
}

#[derive(Deserialize)]
struct SessionQuery {
    #[serde(rename = "oauthTokens")]
    oauth_tokens: Option<bool>,
}

async fn clear_sessions(
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
    Query(q): Query<SessionQuery>,
) -> Response {
    let now = Instant::now();
    let mut st = s.okta.lock().expect("okta lock");
    let Some(i) = st.user_idx(&id) else {
        return not_found();
    };
    st.users[i].sessions = 0;
    let uid = st.users[i].id.clone();
    if q.oauth_tokens == Some(true) {
        for t in st.tokens.iter_mut().filter(|t| t.user == uid) {
            t.removed_at.get_or_insert(now);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The user's id for a path key (an id or a login).
fn uid(st: &State, key: &str) -> Option<String> {
    st.user_idx(key).map(|i| st.users[i].id.clone())
}

// ----- grants, clients, tokens -------------------------------------------

fn grant_json(s: &Shared, g: &Item) -> Value {
    json!({
        "id": g.id, "status": "ACTIVE", "clientId": g.what, "userId": g.user,
        "scopeId": g.extra, "issuer": s.base_url, "source": "END_USER",
        "created": "2026-09-01T10:00:00.000Z",
        "createdBy": {"id": g.user, "type": "User"},
    })
}

async fn list_grants(
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let st = s.okta.lock().expect("okta lock");
    let Some(u) = uid(&st, &id) else {
        return not_found();
    };
    let items = st
        .grants
        .iter()
        .filter(|g| g.user == u && listed(&s, g.removed_at))
        .map(|g| grant_json(&s, g))
        .collect();
    drop(st);
    page(
        &s,
        &format!("/api/v1/users/{u}/grants"),
        &q,
        &[],
        items,
        20,
        200,
    )
}

async fn get_grant(
    AxState(s): AxState<Shared>,
    Path((id, grant)): Path<(String, String)>,
) -> Response {
    let st = s.okta.lock().expect("okta lock");
    let Some(u) = uid(&st, &id) else {
        return not_found();
    };
    match st
        .grants
        .iter()
        .find(|g| g.user == u && g.id == grant && listed(&s, g.removed_at))
    {
        Some(g) => Json(grant_json(&s, g)).into_response(),
        None => not_found(),
    }
}

fn remove_where(items: &mut [Item], now: Instant, f: impl Fn(&Item) -> bool) -> usize {
    let mut n = 0;
    for i in items.iter_mut().filter(|i| i.removed_at.is_none() && f(i)) {
        i.removed_at = Some(now);
        n += 1;
    }
    n
}

async fn delete_grant(
    AxState(s): AxState<Shared>,
    Path((id, grant)): Path<(String, String)>,
) -> Response {
    let mut st = s.okta.lock().expect("okta lock");
    let Some(u) = uid(&st, &id) else {
        return not_found();
    };
    if remove_where(&mut st.grants, Instant::now(), |g| {
        g.user == u && g.id == grant
    }) == 0
    {
        return not_found();
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn delete_all_grants(AxState(s): AxState<Shared>, Path(id): Path<String>) -> Response {
    let mut st = s.okta.lock().expect("okta lock");
    let Some(u) = uid(&st, &id) else {
        return not_found();
    };
    remove_where(&mut st.grants, Instant::now(), |g| g.user == u);
    StatusCode::NO_CONTENT.into_response()
}

async fn list_clients(AxState(s): AxState<Shared>, Path(id): Path<String>) -> Response {
    let st = s.okta.lock().expect("okta lock");
    let Some(u) = uid(&st, &id) else {
        return not_found();
    };
    let mut out = Vec::new();
    for (cid, name) in &st.clients {
        let has = st
            .tokens
            .iter()
            .chain(st.grants.iter())
            .any(|t| t.user == u && &t.what == cid && listed(&s, t.removed_at));
        if has {
            let base = &s.base_url;
            out.push(json!({
                "client_id": cid, "client_name": name,
                "client_uri": null, "logo_uri": null,
                "_links": {
                    "grants": {"href": format!("{base}/api/v1/users/{u}/clients/{cid}/grants")},
                    "tokens": {"href": format!("{base}/api/v1/users/{u}/clients/{cid}/tokens")},
                },
            }));
        }
    }
    Json(Value::Array(out)).into_response()
}

fn token_json(s: &Shared, t: &Item) -> Value {
    json!({
        "id": t.id, "status": "ACTIVE", "clientId": t.what, "userId": t.user,
        "issuer": format!("{}/oauth2/default", s.base_url),
        "scopes": t.extra.split(' ').collect::<Vec<_>>(),
        "created": "2026-10-01T10:00:00.000Z",
        "expiresAt": "2027-01-01T10:00:00.000Z",
    })
}

async fn get_token(
    AxState(s): AxState<Shared>,
    Path((id, client, token)): Path<(String, String, String)>,
) -> Response {
    let st = s.okta.lock().expect("okta lock");
    let Some(u) = uid(&st, &id) else {
        return not_found();
    };
    match st
        .tokens
        .iter()
        .find(|t| t.user == u && t.what == client && t.id == token && listed(&s, t.removed_at))
    {
        Some(t) => Json(token_json(&s, t)).into_response(),
        None => not_found(),
    }
}

/// A user's grants for one client.
async fn list_client_grants(
    AxState(s): AxState<Shared>,
    Path((id, client)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Response {
    let st = s.okta.lock().expect("okta lock");
    let Some(u) = uid(&st, &id) else {
        return not_found();
    };
    let items = st
        .grants
        .iter()
        .filter(|g| g.user == u && g.what == client && listed(&s, g.removed_at))
        .map(|g| grant_json(&s, g))
        .collect();
    drop(st);
    page(
        &s,
        &format!("/api/v1/users/{u}/clients/{client}/grants"),
        &q,
        &[],
        items,
        20,
        200,
    )
}

async fn delete_client_grants(
    AxState(s): AxState<Shared>,
    Path((id, client)): Path<(String, String)>,
) -> Response {
    let mut st = s.okta.lock().expect("okta lock");
    let Some(u) = uid(&st, &id) else {
        return not_found();
    };
    remove_where(&mut st.grants, Instant::now(), |g| {
        g.user == u && g.what == client
    });
    StatusCode::NO_CONTENT.into_response()
}

async fn list_tokens(
    AxState(s): AxState<Shared>,
    Path((id, client)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Response {
    let st = s.okta.lock().expect("okta lock");
    let Some(u) = uid(&st, &id) else {
        return not_found();
    };
    let items = st
        .tokens
        .iter()
        .filter(|t| t.user == u && t.what == client && listed(&s, t.removed_at))
        .map(|t| token_json(&s, t))
        .collect();
    drop(st);
    page(
        &s,
        &format!("/api/v1/users/{u}/clients/{client}/tokens"),
        &q,
        &[],
        items,
        20,
        200,
    )
}

async fn delete_tokens(
    AxState(s): AxState<Shared>,
    Path((id, client)): Path<(String, String)>,
) -> Response {
    let mut st = s.okta.lock().expect("okta lock");
    let Some(u) = uid(&st, &id) else {
        return not_found();
    };
    remove_where(&mut st.tokens, Instant::now(), |t| {
        t.user == u && t.what == client
    });
    StatusCode::NO_CONTENT.into_response()
}

async fn delete_token(
    AxState(s): AxState<Shared>,
    Path((id, client, token)): Path<(String, String, String)>,
) -> Response {
    let mut st = s.okta.lock().expect("okta lock");
    let Some(u) = uid(&st, &id) else {
        return not_found();
    };
    if remove_where(&mut st.tokens, Instant::now(), |t| {
        t.user == u && t.what == client && t.id == token
    }) == 0
    {
        return not_found();
    }
    StatusCode::NO_CONTENT.into_response()
}

// ----- factors, apps, groups, roles ----------------------------------------

async fn list_factors(AxState(s): AxState<Shared>, Path(id): Path<String>) -> Response {
    let st = s.okta.lock().expect("okta lock");
    let Some(u) = uid(&st, &id) else {
        return not_found();
    };
    let out: Vec<Value> = st
        .factors
        .iter()
        .filter(|f| f.user == u && listed(&s, f.removed_at))
        .map(|f| {
            json!({
                "id": f.id, "factorType": f.what, "provider": f.extra,
                "vendorName": f.extra, "status": "ACTIVE",
                "created": "2025-01-10T10:00:00.000Z",
                "lastUpdated": "2025-01-10T10:00:00.000Z",
                "profile": {},
            })
        })
        .collect();
    Json(Value::Array(out)).into_response()
}

async fn delete_factor(
    AxState(s): AxState<Shared>,
    Path((id, factor)): Path<(String, String)>,
) -> Response {
    let mut st = s.okta.lock().expect("okta lock");
    let Some(u) = uid(&st, &id) else {
        return not_found();
    };
    if remove_where(&mut st.factors, Instant::now(), |f| {
        f.user == u && f.id == factor
    }) == 0
    {
        return not_found();
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Groups a user is (still listed as) a member of.
fn member_groups<'a>(s: &Shared, st: &'a State, u: &str) -> Vec<&'a Group> {
    st.groups
        .iter()
        .filter(|g| {
            g.members
                .iter()
                .any(|m| m.user == u && listed(s, m.removed_at))
        })
        .collect()
}

/// How a user holds an app: `USER` (direct), `GROUP`, or not at all.
fn app_scope(s: &Shared, st: &State, app: &App, u: &str) -> Option<&'static str> {
    if app
        .direct
        .iter()
        .any(|m| m.user == u && listed(s, m.removed_at))
    {
        return Some("USER");
    }
    let deprovisioned = st
        .users
        .iter()
        .any(|x| x.id == u && x.status == "DEPROVISIONED");
    (!deprovisioned
        && member_groups(s, st, u)
            .iter()
            .any(|g| g.apps.contains(&app.id)))
    .then_some("GROUP")
}

async fn app_links(AxState(s): AxState<Shared>, Path(id): Path<String>) -> Response {
    let mut st = s.okta.lock().expect("okta lock");
    st.settle(Instant::now());
    let Some(u) = uid(&st, &id) else {
        return not_found();
    };
    let mut out = Vec::new();
    for (n, a) in st.apps.iter().enumerate() {
        if app_scope(&s, &st, a, &u).is_some() {
            out.push(json!({
                "id": format!("00ub0oNGTSWTBKOLGLNR{n}"),
                "label": a.label, "appName": a.name, "appInstanceId": a.id,
                "appAssignmentId": format!("0ua{}{}", a.id, u),
                "linkUrl": format!("{}/home/{}/{}/1", s.base_url, a.name, a.id),
                "logoUrl": format!("{}/assets/img/logos/{}.png", s.base_url, a.name),
                "credentialsSetup": false, "hidden": false, "sortOrder": n,
            }));
        }
    }
    Json(Value::Array(out)).into_response()
}

async fn get_app_user(
    AxState(s): AxState<Shared>,
    Path((app, id)): Path<(String, String)>,
) -> Response {
    let mut st = s.okta.lock().expect("okta lock");
    st.settle(Instant::now());
    let Some(u) = uid(&st, &id) else {
        return not_found();
    };
    let Some(a) = st.apps.iter().find(|a| a.id == app) else {
        return not_found();
    };
    match app_scope(&s, &st, a, &u) {
        Some(scope) => Json(app_user_json(&s, &st, a, &u, scope)).into_response(),
        None => not_found(),
    }
}

async fn delete_app_user(
    AxState(s): AxState<Shared>,
    Path((app, id)): Path<(String, String)>,
) -> Response {
    let now = Instant::now();
    let mut st = s.okta.lock().expect("okta lock");
    st.settle(now);
    let Some(u) = uid(&st, &id) else {
        return not_found();
    };
    let Some(ai) = st.apps.iter().position(|a| a.id == app) else {
        return not_found();
    };
    match app_scope(&s, &st, &st.apps[ai], &u) {
        Some("USER") => {
            for m in st.apps[ai]
                .direct
                .iter_mut()
                .filter(|m| m.user == u && m.removed_at.is_none())
            {
                m.removed_at = Some(now);
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Some(_) => okta_error(
            StatusCode::FORBIDDEN,
            GROUP_APP_REFUSED,
            "Deactivate application for user forbidden",
            &[
                "The user is assigned to this application through a group; remove the user from the group",
            ],
        ),
        None => not_found(),
    }
}

async fn user_groups(
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let st = s.okta.lock().expect("okta lock");
    let Some(u) = uid(&st, &id) else {
        return not_found();
    };
    let items = member_groups(&s, &st, &u)
        .into_iter()
        .map(|g| {
            json!({
                "id": g.id, "type": g.kind, "objectClass": ["okta:user_group"],
                "created": "2024-01-01T00:00:00.000Z",
                "lastUpdated": "2024-01-01T00:00:00.000Z",
                "lastMembershipUpdated": "2026-11-01T00:00:00.000Z",
                "profile": {"name": g.name, "description": null},
            })
        })
        .collect();
    drop(st);
    page(
        &s,
        &format!("/api/v1/users/{u}/groups"),
        &q,
        &[],
        items,
        200,
        10000,
    )
}

async fn delete_member(
    AxState(s): AxState<Shared>,
    Path((group, id)): Path<(String, String)>,
) -> Response {
    let now = Instant::now();
    let mut st = s.okta.lock().expect("okta lock");
    let Some(u) = uid(&st, &id) else {
        return not_found();
    };
    let Some(g) = st.groups.iter_mut().find(|g| g.id == group) else {
        return not_found();
    };
    if g.kind != "OKTA_GROUP" {
        return forbidden(&format!(
            "Cannot remove users from a group of type {}: its memberships are managed by its source",
            g.kind
        ));
    }
    for m in g
        .members
        .iter_mut()
        .filter(|m| m.user == u && m.removed_at.is_none())
    {
        m.removed_at = Some(now);
    }
    StatusCode::NO_CONTENT.into_response()
}

/// A user's role assignments: direct ones, then one per role of each group
/// the user is in.
fn roles_of(s: &Shared, st: &State, u: &str) -> Vec<Value> {
    let mut out: Vec<Value> = st
        .roles
        .iter()
        .filter(|r| r.user == u && listed(s, r.removed_at))
        .map(|r| {
            json!({
                "id": r.id, "type": r.what, "label": r.extra, "status": "ACTIVE",
                "assignmentType": "USER",
                "created": "2025-05-01T00:00:00.000Z",
                "lastUpdated": "2025-05-01T00:00:00.000Z",
                "_links": {"assignee": {"href": format!("{}/api/v1/users/{u}", s.base_url)}},
            })
        })
        .collect();
    for g in member_groups(s, st, u) {
        for (i, (ty, label)) in g.roles.iter().enumerate() {
            out.push(json!({
                "id": format!("irb{}{i}", g.id), "type": ty, "label": label,
                "status": "ACTIVE", "assignmentType": "GROUP",
                "created": "2025-05-01T00:00:00.000Z",
                "lastUpdated": "2025-05-01T00:00:00.000Z",
                "_links": {"assignee": {"href": format!("{}/api/v1/groups/{}", s.base_url, g.id)}},
            }));
        }
    }
    out
}

async fn list_roles(AxState(s): AxState<Shared>, Path(id): Path<String>) -> Response {
    let st = s.okta.lock().expect("okta lock");
    let Some(u) = uid(&st, &id) else {
        return not_found();
    };
    Json(Value::Array(roles_of(&s, &st, &u))).into_response()
}

async fn get_role(
    AxState(s): AxState<Shared>,
    Path((id, role)): Path<(String, String)>,
) -> Response {
    let st = s.okta.lock().expect("okta lock");
    let Some(u) = uid(&st, &id) else {
        return not_found();
    };
    match roles_of(&s, &st, &u)
        .into_iter()
        .find(|r| r["id"].as_str() == Some(role.as_str()))
    {
        Some(r) => Json(r).into_response(),
        None => not_found(),
    }
}

async fn delete_role(
    AxState(s): AxState<Shared>,
    Path((id, role)): Path<(String, String)>,
) -> Response {
    let mut st = s.okta.lock().expect("okta lock");
    let Some(u) = uid(&st, &id) else {
        return not_found();
    };
    let held = roles_of(&s, &st, &u)
        .into_iter()
        .find(|r| r["id"].as_str() == Some(role.as_str()));
    match held {
        Some(r) if r["assignmentType"] == "GROUP" => forbidden(
            "The role is assigned to a group the user is in; unassign it from the group or remove the user from the group",
        ),
        Some(_) => {
            remove_where(&mut st.roles, Instant::now(), |r| {
                r.user == u && r.id == role
            });
            StatusCode::NO_CONTENT.into_response()
        }
        None => not_found(),
    }
}

/// `DELETE /api/v1/users/{id}`: a user who is not DEPROVISIONED is
/// deactivated (asynchronously with `Prefer: respond-async`); a second call
/// deletes the user for good.
async fn delete_user(
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let now = Instant::now();
    let consistency = s.consistency();
    let mut st = s.okta.lock().expect("okta lock");
    st.settle(now);
    let Some(i) = st.user_idx(&id) else {
        return not_found();
    };
    if st.users[i].status == "DEPROVISIONED" {
        let gone = st.users.remove(i).id;
        for g in &mut st.groups {
            g.members.retain(|m| m.user != gone);
        }
        for a in &mut st.apps {
            a.direct.retain(|m| m.user != gone);
        }
        return StatusCode::NO_CONTENT.into_response();
    }
    let is_async = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("respond-async"));
    let u = &mut st.users[i];
    u.deactivating = Some(if is_async { now + consistency } else { now });
    st.settle(now);
    if is_async {
        StatusCode::ACCEPTED.into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

/// `GET /api/v1/groups/{groupId}/users`: the members, as users.
async fn list_members(
    AxState(s): AxState<Shared>,
    Path(group): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let st = s.okta.lock().expect("okta lock");
    let Some(g) = st.groups.iter().find(|g| g.id == group) else {
        return not_found();
    };
    let items = g
        .members
        .iter()
        .filter(|m| listed(&s, m.removed_at))
        .filter_map(|m| st.users.iter().find(|u| u.id == m.user))
        .map(|u| user_json(&s, u))
        .collect();
    drop(st);
    page(
        &s,
        &format!("/api/v1/groups/{group}/users"),
        &q,
        &[],
        items,
        1000,
        10000,
    )
}

fn app_user_json(s: &Shared, st: &State, a: &App, u: &str, scope: &str) -> Value {
    json!({
        "id": u, "scope": scope, "status": "PROVISIONED", "syncState": "SYNCHRONIZED",
        "created": "2024-03-01T09:10:00.000Z",
        "credentials": {"userName": st.users.iter().find(|x| x.id == u).map(|x| x.login.clone())},
        "profile": {},
        "_links": {"app": {"href": format!("{}/api/v1/apps/{}", s.base_url, a.id)}},
    })
}

/// `GET /api/v1/apps/{appId}/users`: everyone assigned, directly or
/// through a group.
async fn list_app_users(
    AxState(s): AxState<Shared>,
    Path(app): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let mut st = s.okta.lock().expect("okta lock");
    st.settle(Instant::now());
    let Some(a) = st.apps.iter().find(|a| a.id == app) else {
        return not_found();
    };
    let items = st
        .users
        .iter()
        .filter_map(|u| app_scope(&s, &st, a, &u.id).map(|scope| (u, scope)))
        .map(|(u, scope)| app_user_json(&s, &st, a, &u.id, scope))
        .collect();
    drop(st);
    page(
        &s,
        &format!("/api/v1/apps/{app}/users"),
        &q,
        &[],
        items,
        50,
        500,
    )
}

// ----- API tokens ----------------------------------------------------------

fn api_token_json(s: &Shared, t: &Item) -> Value {
    json!({
        "id": t.id, "name": t.what, "userId": t.user, "clientName": t.extra,
        "created": "2025-02-01T00:00:00.000Z",
        "lastUpdated": "2026-11-29T00:00:00.000Z",
        "expiresAt": "2026-12-31T00:00:00.000Z",
        "tokenWindow": "P30D",
        "network": {"connection": "ANYWHERE"},
        "_link": {"self": {"href": format!("{}/api/v1/api-tokens/{}", s.base_url, t.id)}},
    })
}

async fn list_api_tokens(AxState(s): AxState<Shared>, Query(q): Query<PageQuery>) -> Response {
    let st = s.okta.lock().expect("okta lock");
    let items = st
        .api_tokens
        .iter()
        .filter(|t| listed(&s, t.removed_at))
        .map(|t| api_token_json(&s, t))
        .collect();
    drop(st);
    page(&s, "/api/v1/api-tokens", &q, &[], items, 20, 200)
}

async fn get_api_token(AxState(s): AxState<Shared>, Path(token): Path<String>) -> Response {
    let st = s.okta.lock().expect("okta lock");
    match st
        .api_tokens
        .iter()
        .find(|t| t.id == token && listed(&s, t.removed_at))
    {
        Some(t) => Json(api_token_json(&s, t)).into_response(),
        None => not_found(),
    }
}

async fn delete_api_token(AxState(s): AxState<Shared>, Path(token): Path<String>) -> Response {
    let mut st = s.okta.lock().expect("okta lock");
    if remove_where(&mut st.api_tokens, Instant::now(), |t| t.id == token) == 0 {
        return not_found();
    }
    StatusCode::NO_CONTENT.into_response()
}

// ----- token endpoint ------------------------------------------------------

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    aud: Value,
    #[serde(default)]
    jti: Option<String>,
}

/// `POST /oauth2/v1/token`: client credentials for the demo service app,
/// authenticated with a `private_key_jwt` client assertion (RS256, checked
/// against the app's registered public key).
async fn token(AxState(s): AxState<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server.",
        );
    }
    if form.get("client_assertion_type").map(String::as_str)
        != Some(crate::auth::jwt::CLIENT_ASSERTION_TYPE)
    {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "A client_assertion_type of urn:ietf:params:oauth:client-assertion-type:jwt-bearer is required.",
        );
    }
    let Some(assertion) = form.get("client_assertion") else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The client_assertion is missing.",
        );
    };
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(super::DEMO_PUBLIC_KEY.as_bytes())
        .expect("the demo public key parses");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.validate_aud = false;
    v.leeway = 30;
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let claims = match jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &v) {
        Ok(d) => d.claims,
        Err(_) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "The client_assertion signature is invalid.",
            );
        }
    };
    let aud = format!("{}/oauth2/v1/token", s.base_url);
    let aud_ok = match &claims.aud {
        Value::String(a) => *a == aud,
        Value::Array(v) => v.iter().any(|a| a.as_str() == Some(&aud)),
        _ => false,
    };
    if claims.iss != DEMO_CLIENT_ID
        || claims.sub != DEMO_CLIENT_ID
        || form.get("client_id").is_some_and(|c| c != DEMO_CLIENT_ID)
    {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The client_assertion token has an invalid issuer or subject.",
        );
    }
    if !aud_ok {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The audience claim for client_assertion must be the endpoint invoked for the request.",
        );
    }
    let Some(jti) = claims.jti else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The client_assertion token must contain a jti claim.",
        );
    };
    let scopes: Vec<String> = form
        .get("scope")
        .map(|s| s.split_ascii_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    if scopes.is_empty() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "The authorization server resource does not have any configured default scopes, 'scope' must be provided.",
        );
    }
    if let Some(bad) = scopes
        .iter()
        .find(|x| !GRANTED_SCOPES.contains(&x.as_str()))
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &format!("The following scopes are not allowed: {bad}"),
        );
    }
    let mut st = s.okta.lock().expect("okta lock");
    if !st.seen_jti.insert(jti) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The client_assertion token has already been used.",
        );
    }
    let token = format!("eyJokta.{}", hex::encode(rand::random::<[u8; 24]>()));
    st.access.insert(token.clone(), scopes.clone());
    Json(json!({
        "token_type": "Bearer",
        "expires_in": 3600,
        "access_token": token,
        "scope": scopes.join(" "),
    }))
    .into_response()
}

// ----- sandbox controls ----------------------------------------------------

async fn get_settings(AxState(s): AxState<Shared>) -> Json<Settings> {
    Json(s.okta.lock().expect("okta lock").settings.clone())
}

async fn put_settings(AxState(s): AxState<Shared>, Json(v): Json<Settings>) -> Json<Settings> {
    let mut st = s.okta.lock().expect("okta lock");
    st.settings = v.clone();
    st.windows.clear();
    Json(v)
}

#[derive(Deserialize)]
struct NewUser {
    login: String,
    email: String,
    #[serde(default)]
    first: String,
    #[serde(default)]
    last: String,
}

/// Creates an ACTIVE user now: `search` will not see it until the
/// consistency delay has passed.
async fn create_user(AxState(s): AxState<Shared>, Json(n): Json<NewUser>) -> Response {
    let mut st = s.okta.lock().expect("okta lock");
    let id = st.id("00u");
    st.users.push(User {
        id: id.clone(),
        login: n.login,
        email: n.email,
        first: n.first,
        last: n.last,
        status: "ACTIVE".into(),
        deactivating: None,
        changed_at: Some(Instant::now()),
        last_login: None,
        sessions: 1,
    });
    Json(json!({"id": id})).into_response()
}

/// What tests check that no listing shows: open sessions and live refresh
/// tokens per user id.
async fn get_state(AxState(s): AxState<Shared>) -> Json<Value> {
    let st = s.okta.lock().expect("okta lock");
    let users: serde_json::Map<String, Value> = st
        .users
        .iter()
        .filter(|u| u.sessions > 0 || st.tokens.iter().any(|t| t.user == u.id && t.removed_at.is_none()))
        .map(|u| {
            (
                u.login.clone(),
                json!({
                    "id": u.id,
                    "sessions": u.sessions,
                    "tokens": st.tokens.iter().filter(|t| t.user == u.id && t.removed_at.is_none()).count(),
                }),
            )
        })
        .collect();
    Json(Value::Object(users))
}
