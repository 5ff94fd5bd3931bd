//! Microsoft Graph emulator: the v1.0 API under `/v1.0` for what
//! offboarding reads and changes (users, their sign-in sessions, delegated
//! permission grants, app role assignments, authentication methods,
//! licences, group memberships, directory role assignments and PIM
//! eligibility, registered devices, owned objects, `$batch`) and the
//! Microsoft identity platform's token endpoint
//! `/{tenant}/oauth2/v2.0/token` (client credentials with a client secret or
//! a certificate's client assertion).
//!
//! Behaviour copied from Graph (REFERENCE.md §2, the CSDL and permissions
//! subsets):
//! - `Authorization: Bearer {token}` from the token endpoint; without it 401
//!   `InvalidAuthenticationToken`.
//! - Errors are `{"error":{"code","message","innerError":{"date",
//!   "request-id","client-request-id"}}}`.
//! - Collections are `{"value":[…]}` with an absolute `@odata.nextLink`
//!   (opaque `$skiptoken`) while more pages remain; `$top` asks a page size.
//!   Items of polymorphic lists carry `@odata.type`.
//! - A user read returns the default properties only; `accountEnabled`,
//!   `onPremisesSyncEnabled`, `assignedLicenses`, `licenseAssignmentStates`,
//!   `proxyAddresses` and `signInSessionsValidFromDateTime` come with
//!   `$select` alone; an unknown `$select` property is 400.
//! - `$filter` on `proxyAddresses/any(…)` is an advanced query: without
//!   `ConsistencyLevel: eventual` and `$count=true` it is 400
//!   `Request_UnsupportedQuery`; with them it is served from an index that
//!   lags behind writes by the consistency delay. `eq` on `mail` and
//!   `userPrincipalName` compares case-insensitively.
//! - Group-inherited licences refuse `assignLicense` removal (400); dynamic,
//!   on-premises-synced and mail-enabled (non-Microsoft 365) groups refuse
//!   member removal (400); writes to an on-premises-synced user's
//!   `accountEnabled` are refused (400).
//! - The password authentication method cannot be deleted (400).
//! - Removals and changes stay visible to reads for the consistency delay.
//! - 429 and 503 carry `Retry-After` (seconds); inside `$batch`, on the item.
//! - `$batch` takes at most 20 requests.
//!
//! Assumed where the specs are silent (from Microsoft's documentation, to
//! be checked against a live tenant): the exact wording of the 400 messages
//! for inherited licences, dynamic/synced/mail-enabled groups and synced
//! users; the AADSTS codes chosen for each token endpoint refusal.
//!
//! Sandbox-only controls: `GET`/`PUT /_sandbox/graph` (page size cap,
//! forced 429/503 answers), `POST /_sandbox/graph/users` (create a user
//! now, for the index lag), `GET /_sandbox/graph/state` (for tests).

// Handlers bail out with a finished error answer; boxing it buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};

use axum::body::Body;
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
use crate::sandbox::tenant::{self, BenchShape, Scenario};

/// The demo tenant (directory) id.
pub const DEMO_TENANT_ID: &str = "4f8b2c1e-0ffb-4a5d-9c3e-7d6a5b4c3d2e";
/// The demo app registration's application (client) id.
pub const DEMO_CLIENT_ID: &str = "9a1b2c3d-0ffb-4e5f-8a9b-0c1d2e3f4a5b";
/// The demo app's client secret: a demo value only the sandbox accepts.
pub const DEMO_CLIENT_SECRET: &str = "offb~DemoGraphClientSecret.SandboxOnly_0001";
/// The only scope a client credentials request may ask for Graph.
pub const GRAPH_DEFAULT_SCOPE: &str = "https://graph.microsoft.com/.default";
/// The password method's fixed id (Graph gives every user this one).
pub const PASSWORD_METHOD_ID: &str = "28c10230-6103-485e-b985-444c60001490";
/// `$batch` limit.
pub const BATCH_MAX: usize = 20;

/// Twin switches (`PUT /_sandbox/graph`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The largest page served whatever `$top` asks (Graph: 100 for most
    /// lists, 999 for users).
    pub max_page: usize,
    /// The next this many API requests are answered 429 with Retry-After.
    pub force_429: u32,
    /// The next this many API requests are answered 503 with Retry-After.
    pub force_503: u32,
    /// Seconds in Retry-After on those answers.
    pub retry_after_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_page: 100,
            force_429: 0,
            force_503: 0,
            retry_after_secs: 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub upn: String,
    pub mail: String,
    pub given: String,
    pub surname: String,
    pub proxy: Vec<String>,
    pub enabled: bool,
    /// When `accountEnabled` was set false: reads show it after the delay.
    pub disabled_at: Option<Instant>,
    pub synced: bool,
    pub sessions_valid_from: String,
    /// Created or changed at: the advanced-query index sees it after the delay.
    pub changed_at: Option<Instant>,
    pub job: String,
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
    types: Vec<&'static str>,
    mail_enabled: bool,
    security_enabled: bool,
    synced: bool,
    members: Vec<Member>,
    owners: Vec<String>,
    /// Licences (sku ids) the group assigns to its members.
    licenses: Vec<String>,
}

/// A user-held object: grant, assignment, method, role assignment,
/// eligibility, direct licence.
#[derive(Debug, Clone)]
struct Item {
    id: String,
    user: String,
    /// Grant: client sp id; app role: resource sp id; method: odata kind;
    /// role: role definition id; licence: sku id.
    a: String,
    /// Grant: scope; app role: resource name; method: display name.
    b: String,
    /// Grant: consent type; app role: app role id; role: scope.
    c: String,
    removed_at: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Device {
    id: String,
    device_id: String,
    name: String,
    os: String,
    user: String,
    enabled: bool,
    disabled_at: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Owned {
    id: String,
    app_id: String,
    name: String,
    /// `application` or `servicePrincipal`.
    kind: &'static str,
    owners: Vec<String>,
}

pub struct State {
    pub settings: Settings,
    pub users: Vec<User>,
    groups: Vec<Group>,
    skus: Vec<(String, String)>,
    roles: Vec<(String, String)>,
    grants: Vec<Item>,
    app_roles: Vec<Item>,
    methods: Vec<Item>,
    role_assignments: Vec<Item>,
    eligible: Vec<Item>,
    licenses: Vec<Item>,
    devices: Vec<Device>,
    owned: Vec<Owned>,
    /// Access tokens issued.
    access: HashSet<String>,
    /// Sign-in session revocations per user (for tests).
    pub revocations: HashMap<String, u32>,
    next: u64,
}

/// A GUID-shaped id from a number and a tag.
fn guid(tag: u16, n: u64) -> String {
    format!(
        "{:08x}-{tag:04x}-4{:03x}-8{:03x}-{:012x}",
        (n.wrapping_mul(2654435761)) as u32,
        (n >> 12) & 0xfff,
        n & 0xfff,
        n
    )
}

const SKU_E3: &str = "05e9a617-0261-4cee-bb44-138d3ef5d965";
const SKU_EMS: &str = "efccb6f7-5641-4e0e-bd10-b4976e1bf68e";
const SKU_VISIO: &str = "c5928f49-12ba-48f7-ada3-0d743a3601d5";
const ROLE_GLOBAL_ADMIN: &str = "62e90394-69f5-4237-9190-012177145e10";
const ROLE_USER_ADMIN: &str = "fe930be7-5e62-47db-91af-98c3a49a38b1";
const ROLE_HELPDESK: &str = "729827e3-9c14-49f7-bb1b-9608f156bbb8";
const ROLE_EXCHANGE: &str = "29232cdf-9323-42fd-ade2-1d097af3e4de";

impl State {
    fn id(&mut self, tag: u16) -> String {
        self.next += 1;
        guid(tag, self.next)
    }

    fn item(&mut self, tag: u16, user: &str, a: &str, b: &str, c: &str) -> Item {
        Item {
            id: self.id(tag),
            user: user.into(),
            a: a.into(),
            b: b.into(),
            c: c.into(),
            removed_at: None,
        }
    }

    fn group(&mut self, name: &str, types: &[&'static str], mail: bool, synced: bool) -> usize {
        let id = self.id(0x6);
        self.groups.push(Group {
            id,
            name: name.into(),
            types: types.to_vec(),
            mail_enabled: mail,
            security_enabled: !types.contains(&"Unified"),
            synced,
            members: Vec::new(),
            owners: Vec::new(),
            licenses: Vec::new(),
        });
        self.groups.len() - 1
    }

    fn join(&mut self, g: usize, user: &str) {
        self.groups[g].members.push(Member {
            user: user.into(),
            removed_at: None,
        });
    }

    fn method(&mut self, user: &str, kind: &str, name: &str) {
        let m = self.item(0xa, user, kind, name, "");
        self.methods.push(m);
    }

    fn license(&mut self, user: &str, sku: &str) {
        let l = self.item(0x1, user, sku, "", "");
        self.licenses.push(l);
    }

    fn device(&mut self, user: &str, name: &str, os: &str) {
        let id = self.id(0xd);
        let device_id = self.id(0xe);
        self.devices.push(Device {
            id,
            device_id,
            name: name.into(),
            os: os.into(),
            user: user.into(),
            enabled: true,
            disabled_at: None,
        });
    }

    /// The demo tenant: everyone of the company but the Slack-only guest.
    pub fn seed(bench: Option<&BenchShape>) -> State {
        let mut s = State {
            settings: Settings::default(),
            users: Vec::new(),
            groups: Vec::new(),
            skus: vec![
                (SKU_E3.into(), "ENTERPRISEPACK".into()),
                (SKU_EMS.into(), "EMS".into()),
                (SKU_VISIO.into(), "VISIOCLIENT".into()),
            ],
            roles: vec![
                (ROLE_GLOBAL_ADMIN.into(), "Global Administrator".into()),
                (ROLE_USER_ADMIN.into(), "User Administrator".into()),
                (ROLE_HELPDESK.into(), "Helpdesk Administrator".into()),
                (ROLE_EXCHANGE.into(), "Exchange Administrator".into()),
            ],
            grants: Vec::new(),
            app_roles: Vec::new(),
            methods: Vec::new(),
            role_assignments: Vec::new(),
            eligible: Vec::new(),
            licenses: Vec::new(),
            devices: Vec::new(),
            owned: Vec::new(),
            access: HashSet::new(),
            revocations: HashMap::new(),
            next: 1000,
        };
        let staff = s.group("All Staff", &["Unified"], true, false);
        let dynamic = s.group("All Employees", &["DynamicMembership"], false, false);
        let licensed = s.group("M365 E3 users", &[], false, false);
        s.groups[licensed].licenses = vec![SKU_E3.into()];
        let finance_dl = s.group("finance-team (distribution list)", &[], true, false);
        let ad_sales = s.group("SG-Sales (on-premises)", &[], false, true);
        let it = s.group("IT Operations", &[], false, false);
        let contractors = s.group("Contractors", &[], false, false);
        let marketing = s.group("Marketing", &["Unified"], true, false);
        // Service principals in the tenant (clients and resources).
        let sp_graph = guid(0x5, 1);
        let sp_zoom = guid(0x5, 2);
        let sp_cli = guid(0x5, 3);
        let sp_sf = guid(0x5, 4);

        for p in tenant::people() {
            if p.scenario == Some(Scenario::SlackOnlyContractor) {
                continue;
            }
            let uid = guid(0x0, u64::from(p.n));
            let (upn, mail, proxy) = match p.scenario {
                // Signs in with the older address; the current one is only
                // a proxy address.
                Some(Scenario::DifferentEmail) => (
                    "achen@example.com".to_string(),
                    "achen@example.com".to_string(),
                    vec![
                        "SMTP:achen@example.com".to_string(),
                        format!("smtp:{}", p.email),
                    ],
                ),
                _ => (
                    p.email.clone(),
                    p.email.clone(),
                    vec![format!("SMTP:{}", p.email)],
                ),
            };
            s.users.push(User {
                id: uid.clone(),
                upn,
                mail,
                given: p.first.clone(),
                surname: p.last.clone(),
                proxy,
                enabled: true,
                disabled_at: None,
                synced: p.scenario == Some(Scenario::AlreadySuspended),
                sessions_valid_from: "2026-01-05T08:00:00Z".into(),
                changed_at: None,
                job: p.department.to_string(),
            });
            s.join(staff, &uid);
            s.join(dynamic, &uid);
            s.join(licensed, &uid);
            let Some(scenario) = p.scenario else {
                continue;
            };
            s.method(
                &uid,
                "microsoftAuthenticatorAuthenticationMethod",
                "iPhone 15",
            );
            match scenario {
                Scenario::Scheduled => {
                    s.join(finance_dl, &uid);
                    s.license(&uid, SKU_EMS);
                    s.method(&uid, "phoneAuthenticationMethod", "+1 555 0101");
                    let g = s.item(0x2, &uid, &sp_zoom, "User.Read Calendars.Read", "Principal");
                    s.grants.push(g);
                    let a = s.item(0x3, &uid, &sp_sf, "Salesforce", &guid(0x7, 1));
                    s.app_roles.push(a);
                    s.device(&uid, "DANA-LAPTOP", "Windows");
                }
                Scenario::UrgentTermination => {
                    s.join(it, &uid);
                    s.license(&uid, SKU_EMS);
                    s.license(&uid, SKU_VISIO);
                    s.method(&uid, "fido2AuthenticationMethod", "YubiKey 5 NFC");
                    s.method(&uid, "softwareOathAuthenticationMethod", "");
                    s.method(&uid, "temporaryAccessPassAuthenticationMethod", "");
                    for (sp, scope) in [
                        (&sp_cli, "Directory.AccessAsUser.All offline_access"),
                        (&sp_zoom, "User.Read"),
                    ] {
                        let g = s.item(0x2, &uid, sp, scope, "Principal");
                        s.grants.push(g);
                    }
                    let a = s.item(0x3, &uid, &sp_sf, "Salesforce", &guid(0x7, 1));
                    s.app_roles.push(a);
                    let r = s.item(0x4, &uid, ROLE_USER_ADMIN, "", "/");
                    s.role_assignments.push(r);
                    let r = s.item(0x8, &uid, ROLE_GLOBAL_ADMIN, "", "/");
                    s.eligible.push(r);
                    s.device(&uid, "MREYES-MBP", "MacOS");
                    s.device(&uid, "Pixel 8", "Android");
                    // The app registration he made, and its service principal.
                    let app = s.id(0x9);
                    let app_id = s.id(0x9);
                    s.owned.push(Owned {
                        id: app,
                        app_id: app_id.clone(),
                        name: "Ops automation".into(),
                        kind: "application",
                        owners: vec![uid.clone()],
                    });
                    let sp = s.id(0x5);
                    s.owned.push(Owned {
                        id: sp,
                        app_id,
                        name: "Ops automation".into(),
                        kind: "servicePrincipal",
                        owners: vec![uid.clone()],
                    });
                    s.groups[it].owners.push(uid.clone());
                }
                Scenario::Contractor => {
                    s.join(contractors, &uid);
                    s.method(&uid, "phoneAuthenticationMethod", "+44 7700 900123");
                }
                Scenario::Mover => {
                    s.join(ad_sales, &uid);
                    s.join(marketing, &uid);
                    let a = s.item(0x3, &uid, &sp_sf, "Salesforce", &guid(0x7, 1));
                    s.app_roles.push(a);
                }
                Scenario::AlreadySuspended => {
                    s.join(ad_sales, &uid);
                    let g = s.item(0x2, &uid, &sp_zoom, "User.Read", "Principal");
                    s.grants.push(g);
                }
                Scenario::DifferentEmail => {
                    s.license(&uid, SKU_VISIO);
                }
                Scenario::SlackOnlyContractor => {}
            }
        }
        // A tenant-wide consent: never the leaver's to remove.
        let g = s.item(0x2, "", &sp_graph, "User.Read", "AllPrincipals");
        s.grants.push(g);
        if let Some(b) = bench {
            let uid = guid(0x0, u64::from(BenchShape::PERSON_N));
            let (first, last) = ("Bench", "Leaver");
            s.users.push(User {
                id: uid.clone(),
                upn: b.email.clone(),
                mail: b.email.clone(),
                given: first.into(),
                surname: last.into(),
                proxy: vec![format!("SMTP:{}", b.email)],
                enabled: true,
                disabled_at: None,
                synced: false,
                sessions_valid_from: "2026-01-05T08:00:00Z".into(),
                changed_at: None,
                job: "Benchmark".into(),
            });
            for n in 0..b.slack_groups {
                let g = s.group(&format!("bench group {n}"), &[], false, false);
                s.join(g, &uid);
            }
            for _ in 0..b.sf_tokens {
                let g = s.item(0x2, &uid, &sp_zoom, "User.Read", "Principal");
                s.grants.push(g);
            }
        }
        s
    }

    fn user_idx(&self, key: &str) -> Option<usize> {
        self.users
            .iter()
            .position(|u| u.id == key || u.upn.eq_ignore_ascii_case(key))
    }

    /// What the user `upn` still holds here, removals counted at once
    /// (whatever reads still list): for the benchmark's check of the
    /// tenant itself.
    pub fn residual(&self, upn: &str) -> Vec<(crate::model::GrantKind, String)> {
        use crate::model::GrantKind as K;
        let Some(i) = self.user_idx(upn) else {
            return Vec::new();
        };
        let uid = self.users[i].id.clone();
        let mut out = Vec::new();
        if self.users[i].enabled {
            out.push((K::Account, "sign-in not blocked".to_string()));
        }
        if !self.revocations.contains_key(&uid) {
            out.push((K::Session, "sessions never revoked".to_string()));
        }
        let live = |x: &Item| x.user == uid && x.removed_at.is_none();
        for (kind, items, what) in [
            (K::OauthGrant, &self.grants, "delegated grant"),
            (K::License, &self.app_roles, "app role assignment"),
            (K::Device, &self.methods, "sign-in method"),
            (K::AdminRole, &self.role_assignments, "role assignment"),
            (K::AdminRole, &self.eligible, "eligible role"),
            (K::License, &self.licenses, "licence"),
        ] {
            for x in items.iter().filter(|x| live(x)) {
                out.push((kind, format!("{what} {}", x.id)));
            }
        }
        for g in &self.groups {
            if g.members
                .iter()
                .any(|m| m.user == uid && m.removed_at.is_none())
                && !g.types.contains(&"DynamicMembership")
                && !g.synced
                && (!g.mail_enabled || g.types.contains(&"Unified"))
            {
                out.push((K::Group, format!("group {}", g.name)));
            }
        }
        for d in self.devices.iter().filter(|d| d.user == uid && d.enabled) {
            out.push((K::Device, format!("device {}", d.name)));
        }
        out
    }

    fn role_name(&self, id: &str) -> String {
        self.roles
            .iter()
            .find(|(r, _)| r == id)
            .map_or_else(|| id.to_string(), |(_, n)| n.clone())
    }
}

// ----- answers -----------------------------------------------------------

/// Graph's error body.
pub fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
    let rid = uuid_like();
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": now,
                "request-id": rid,
                "client-request-id": rid,
            }
        }
    });
    let mut r = (status, Json(body)).into_response();
    r.headers_mut()
        .insert("request-id", HeaderValue::from_str(&rid).expect("hex"));
    r
}

fn uuid_like() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn not_found(key: &str) -> Response {
    graph_error(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        &format!(
            "Resource '{key}' does not exist or one of its queried reference-property objects are not present."
        ),
    )
}

fn bad_request(code: &str, message: &str) -> Response {
    graph_error(StatusCode::BAD_REQUEST, code, message)
}

/// An answer with Retry-After.
fn retry_after(mut r: Response, secs: u64) -> Response {
    r.headers_mut().insert(
        "retry-after",
        HeaderValue::from_str(&secs.to_string()).expect("digits"),
    );
    r
}

/// Authentication and the forced throttling answers of every `/v1.0` call.
async fn gate(AxState(s): AxState<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if !path.starts_with("/v1.0/") {
        return next.run(req).await;
    }
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (ok, throttle) = {
        let mut st = s.graph.lock().expect("graph lock");
        let ok = auth
            .strip_prefix("Bearer ")
            .is_some_and(|t| st.access.contains(t.trim()));
        let secs = st.settings.retry_after_secs;
        // `$batch` itself is never throttled: its items are.
        let throttle = if !ok || path == "/v1.0/$batch" {
            None
        } else if st.settings.force_429 > 0 {
            st.settings.force_429 -= 1;
            Some((StatusCode::TOO_MANY_REQUESTS, secs))
        } else if st.settings.force_503 > 0 {
            st.settings.force_503 -= 1;
            Some((StatusCode::SERVICE_UNAVAILABLE, secs))
        } else {
            None
        };
        (ok, throttle)
    };
    if !ok {
        let msg = if auth.is_empty() {
            "Access token is empty."
        } else {
            "IDX14100: JWT is not well formed, there are no dots (.)."
        };
        return graph_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", msg);
    }
    match throttle {
        Some((StatusCode::TOO_MANY_REQUESTS, secs)) => retry_after(
            graph_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Too many requests. Please retry after the time in the Retry-After header.",
            ),
            secs,
        ),
        Some((status, secs)) => retry_after(
            graph_error(
                status,
                "serviceNotAvailable",
                "The service is temporarily unavailable. Please retry after the time in the Retry-After header.",
            ),
            secs,
        ),
        None => next.run(req).await,
    }
}

pub fn routes(state: &Shared) -> Router<Shared> {
    api_routes(state)
        .route(
            &format!("/{DEMO_TENANT_ID}/oauth2/v2.0/token"),
            post(token_demo),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(token_other))
        .route(
            &format!("/{DEMO_TENANT_ID}/v2.0/.well-known/openid-configuration"),
            get(openid_configuration),
        )
        .route("/_sandbox/graph", get(get_settings).put(put_settings))
        .route("/_sandbox/graph/users", post(create_user))
        .route("/_sandbox/graph/state", get(get_state))
}

/// The `/v1.0` API (also what `$batch` dispatches to).
fn api_routes(state: &Shared) -> Router<Shared> {
    Router::new()
        .route("/v1.0/$batch", post(batch))
        .route("/v1.0/users", get(list_users))
        .route("/v1.0/users/{id}", get(get_user).patch(patch_user))
        .route(
            "/v1.0/users/{id}/revokeSignInSessions",
            post(revoke_sessions),
        )
        .route(
            "/v1.0/users/{id}/microsoft.graph.revokeSignInSessions",
            post(revoke_sessions),
        )
        .route("/v1.0/users/{id}/oauth2PermissionGrants", get(user_grants))
        .route("/v1.0/oauth2PermissionGrants", get(list_grants))
        .route(
            "/v1.0/oauth2PermissionGrants/{gid}",
            get(get_grant).delete(delete_grant),
        )
        .route("/v1.0/users/{id}/appRoleAssignments", get(list_app_roles))
        .route(
            "/v1.0/users/{id}/appRoleAssignments/{aid}",
            delete(delete_app_role),
        )
        .route("/v1.0/users/{id}/authentication/methods", get(list_methods))
        .route(
            "/v1.0/users/{id}/authentication/{kind}/{mid}",
            delete(delete_method),
        )
        .route("/v1.0/users/{id}/licenseDetails", get(license_details))
        .route("/v1.0/users/{id}/assignLicense", post(assign_license))
        .route(
            "/v1.0/users/{id}/microsoft.graph.assignLicense",
            post(assign_license),
        )
        .route("/v1.0/subscribedSkus", get(subscribed_skus))
        .route("/v1.0/users/{id}/memberOf", get(member_of))
        .route("/v1.0/groups/{gid}", get(get_group))
        .route(
            "/v1.0/groups/{gid}/members/{uid}/$ref",
            delete(delete_member),
        )
        .route(
            "/v1.0/roleManagement/directory/roleAssignments",
            get(list_role_assignments),
        )
        .route(
            "/v1.0/roleManagement/directory/roleAssignments/{rid}",
            delete(delete_role_assignment),
        )
        .route(
            "/v1.0/roleManagement/directory/roleEligibilitySchedules",
            get(list_eligible),
        )
        .route(
            "/v1.0/roleManagement/directory/roleEligibilityScheduleRequests",
            post(eligibility_request),
        )
        .route(
            "/v1.0/users/{id}/registeredDevices",
            get(registered_devices),
        )
        .route("/v1.0/devices/{did}", get(get_device).patch(patch_device))
        .route("/v1.0/users/{id}/ownedObjects", get(owned_objects))
        .layer(middleware::from_fn_with_state(state.clone(), gate))
}

// ----- paging and queries --------------------------------------------------

#[derive(Deserialize, Default, Clone)]
struct OData {
    #[serde(rename = "$top")]
    top: Option<usize>,
    #[serde(rename = "$skiptoken")]
    skiptoken: Option<String>,
    #[serde(rename = "$filter")]
    filter: Option<String>,
    #[serde(rename = "$select")]
    select: Option<String>,
    #[serde(rename = "$count")]
    count: Option<String>,
    #[serde(rename = "$expand")]
    expand: Option<String>,
}

fn skiptoken(offset: usize) -> String {
    let salt: u32 = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("RFNwdAIAAQAAAD:{offset}:{salt}"))
}

fn unskip(t: &str) -> Option<usize> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let mut parts = text.split(':');
    parts.next()?;
    parts.next()?.parse().ok()
}

/// One page of `items` with an absolute `@odata.nextLink` while more remain.
fn page(s: &Shared, path: &str, q: &OData, items: Vec<Value>, count: bool) -> Response {
    let max = s.graph.lock().expect("graph lock").settings.max_page.max(1);
    let size = q.top.unwrap_or(100).clamp(1, 999).min(max);
    let start = match q.skiptoken.as_deref() {
        None => 0,
        Some(t) => match unskip(t) {
            Some(n) => n,
            None => {
                return bad_request(
                    "Directory_InvalidPageToken",
                    "The specified page token value has expired and can no longer be included in your request.",
                );
            }
        },
    };
    let total = items.len();
    let end = (start + size).min(total);
    let value: Vec<Value> = items.into_iter().skip(start).take(size).collect();
    let context = format!(
        "{}/v1.0/$metadata#{}",
        s.base_url,
        path.trim_start_matches("/v1.0/")
    );
    let mut body = json!({"@odata.context": context, "value": value});
    if count {
        body["@odata.count"] = json!(total);
    }
    if end < total {
        let mut url = url::Url::parse(&format!("{}{path}", s.base_url)).expect("base url");
        {
            let mut qp = url.query_pairs_mut();
            qp.append_pair("$top", &size.to_string());
            for (k, v) in [
                ("$filter", &q.filter),
                ("$select", &q.select),
                ("$count", &q.count),
                ("$expand", &q.expand),
            ] {
                if let Some(v) = v {
                    qp.append_pair(k, v);
                }
            }
            qp.append_pair("$skiptoken", &skiptoken(end));
        }
        body["@odata.nextLink"] = json!(url.as_str());
    }
    Json(body).into_response()
}

/// One comparison of a `$filter`.
#[derive(Debug, PartialEq)]
enum Cond {
    Eq(String, String),
    /// `proxyAddresses/any(p:p eq 'v')`.
    AnyEq(String, String),
}

/// `a eq 'x' or b eq 'y'`, and `prop/any(v:v eq 'x')`; None for anything
/// else (Graph answers 400).
fn parse_filter(f: &str) -> Option<Vec<Cond>> {
    let mut out = Vec::new();
    let mut rest = f.trim();
    loop {
        let (cond, after) = parse_cond(rest)?;
        out.push(cond);
        let after = after.trim_start();
        if after.is_empty() {
            return Some(out);
        }
        rest = after.strip_prefix("or ")?.trim_start();
    }
}

/// A quoted OData string at the start of `s` ('' is a quote), and the rest.
fn quoted(s: &str) -> Option<(String, &str)> {
    let s = s.strip_prefix('\'')?;
    let mut out = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if chars.peek().map(|(_, c)| *c) == Some('\'') {
                chars.next();
                out.push('\'');
                continue;
            }
            return Some((out, &s[i + 1..]));
        }
        out.push(c);
    }
    None
}

fn parse_cond(s: &str) -> Option<(Cond, &str)> {
    if let Some((prop, rest)) = s.split_once("/any(") {
        let prop = prop.trim().to_string();
        let (var, rest) = rest.split_once(':')?;
        let rest = rest.trim_start().strip_prefix(var.trim())?;
        let rest = rest.trim_start().strip_prefix("eq")?.trim_start();
        let (v, rest) = quoted(rest)?;
        let rest = rest.trim_start().strip_prefix(')')?;
        return Some((Cond::AnyEq(prop, v), rest));
    }
    let (prop, rest) = s.split_once(' ')?;
    let rest = rest.trim_start().strip_prefix("eq")?.trim_start();
    let (v, rest) = quoted(rest)?;
    Some((Cond::Eq(prop.to_string(), v), rest))
}

fn unsupported_filter(prop: &str, ty: &str) -> Response {
    bad_request(
        "Request_UnsupportedQuery",
        &format!(
            "Unsupported or invalid query filter clause specified for property '{prop}' of resource '{ty}'."
        ),
    )
}

fn bad_filter() -> Response {
    bad_request(
        "BadRequest",
        "Invalid filter clause: syntax error in the $filter expression.",
    )
}

/// `principalId eq '…'` and nothing else (the lists that take it).
fn principal_filter(q: &OData, ty: &str) -> Result<Option<String>, Response> {
    let Some(f) = &q.filter else {
        return Ok(None);
    };
    match parse_filter(f).as_deref() {
        Some([Cond::Eq(p, v)]) if p == "principalId" => Ok(Some(v.clone())),
        Some([Cond::Eq(p, _)]) | Some([Cond::AnyEq(p, _)]) => Err(unsupported_filter(p, ty)),
        _ => Err(bad_filter()),
    }
}

fn eventual(headers: &HeaderMap) -> bool {
    headers
        .get("consistencylevel")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("eventual"))
}

// ----- users ----------------------------------------------------------------

const USER_DEFAULT: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];
const USER_MORE: &[&str] = &[
    "accountEnabled",
    "onPremisesSyncEnabled",
    "assignedLicenses",
    "licenseAssignmentStates",
    "proxyAddresses",
    "signInSessionsValidFromDateTime",
    "userType",
    "department",
];

fn read_enabled(s: &Shared, enabled: bool, disabled_at: Option<Instant>) -> bool {
    match disabled_at {
        Some(t) => s.still_listed(Some(t)),
        None => enabled,
    }
}

fn listed(s: &Shared, removed_at: Option<Instant>) -> bool {
    s.still_listed(removed_at)
}

/// A user's licence states: direct ones, then each group's.
fn license_states(s: &Shared, st: &State, uid: &str) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = st
        .licenses
        .iter()
        .filter(|l| l.user == uid && listed(s, l.removed_at))
        .map(|l| (l.a.clone(), None))
        .collect();
    for g in &st.groups {
        if g.licenses.is_empty()
            || !g
                .members
                .iter()
                .any(|m| m.user == uid && listed(s, m.removed_at))
        {
            continue;
        }
        for sku in &g.licenses {
            out.push((sku.clone(), Some(g.id.clone())));
        }
    }
    out
}

fn user_full(s: &Shared, st: &State, u: &User) -> Value {
    let states = license_states(s, st, &u.id);
    let mut skus: Vec<&str> = states.iter().map(|(k, _)| k.as_str()).collect();
    skus.dedup();
    json!({
        "id": u.id,
        "businessPhones": [],
        "displayName": format!("{} {}", u.given, u.surname),
        "givenName": u.given,
        "jobTitle": u.job,
        "mail": u.mail,
        "mobilePhone": null,
        "officeLocation": null,
        "preferredLanguage": "en-US",
        "surname": u.surname,
        "userPrincipalName": u.upn,
        "accountEnabled": read_enabled(s, u.enabled, u.disabled_at),
        "onPremisesSyncEnabled": if u.synced { json!(true) } else { Value::Null },
        "assignedLicenses": skus.iter().map(|k| json!({"skuId": k, "disabledPlans": []})).collect::<Vec<_>>(),
        "licenseAssignmentStates": states.iter().map(|(k, g)| json!({
            "skuId": k, "assignedByGroup": g, "state": "Active", "error": "None",
            "disabledPlans": [], "lastUpdatedDateTime": "2026-01-05T08:00:00Z"
        })).collect::<Vec<_>>(),
        "proxyAddresses": u.proxy,
        "signInSessionsValidFromDateTime": u.sessions_valid_from,
        "userType": "Member",
        "department": u.job,
    })
}

/// The user as `$select` shapes it (default properties without it).
fn user_json(s: &Shared, st: &State, u: &User, select: Option<&str>) -> Result<Value, Response> {
    let full = user_full(s, st, u);
    let wanted: Vec<String> = match select {
        None => USER_DEFAULT.iter().map(|x| x.to_string()).collect(),
        Some(sel) => {
            let mut w = vec!["id".to_string()];
            for p in sel.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                if !USER_DEFAULT.contains(&p) && !USER_MORE.contains(&p) {
                    return Err(bad_request(
                        "Request_BadRequest",
                        &format!(
                            "Could not find a property named '{p}' on type 'microsoft.graph.user'."
                        ),
                    ));
                }
                w.push(p.to_string());
            }
            w
        }
    };
    let mut out = serde_json::Map::new();
    for k in wanted {
        if let Some(v) = full.get(&k) {
            out.insert(k, v.clone());
        }
    }
    Ok(Value::Object(out))
}

async fn list_users(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Query(q): Query<OData>,
) -> Response {
    let advanced = eventual(&headers) && q.count.as_deref() == Some("true");
    let conds = match &q.filter {
        None => None,
        Some(f) => match parse_filter(f) {
            Some(c) => Some(c),
            None => return bad_filter(),
        },
    };
    for c in conds.iter().flatten() {
        match c {
            Cond::Eq(p, _) if ["mail", "userPrincipalName", "id"].contains(&p.as_str()) => {}
            Cond::AnyEq(p, _) if p == "proxyAddresses" => {
                if !advanced {
                    return unsupported_filter(p, "User");
                }
            }
            Cond::Eq(p, _) | Cond::AnyEq(p, _) => return unsupported_filter(p, "User"),
        }
    }
    let items: Result<Vec<Value>, Response> = {
        let st = s.graph.lock().expect("graph lock");
        st.users
            .iter()
            .filter(|u| {
                // The advanced-query index lags behind writes.
                !(advanced && u.changed_at.is_some_and(|t| s.still_listed(Some(t))))
            })
            .filter(|u| match &conds {
                None => true,
                Some(cs) => cs.iter().any(|c| match c {
                    Cond::Eq(p, v) => match p.as_str() {
                        "mail" => u.mail.eq_ignore_ascii_case(v),
                        "userPrincipalName" => u.upn.eq_ignore_ascii_case(v),
                        _ => u.id == *v,
                    },
                    Cond::AnyEq(_, v) => u.proxy.iter().any(|x| x.eq_ignore_ascii_case(v)),
                }),
            })
            .map(|u| user_json(&s, &st, u, q.select.as_deref()))
            .collect()
    };
    match items {
        Ok(items) => page(
            &s,
            "/v1.0/users",
            &q,
            items,
            q.count.as_deref() == Some("true"),
        ),
        Err(r) => r,
    }
}

async fn get_user(
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
    Query(q): Query<OData>,
) -> Response {
    let st = s.graph.lock().expect("graph lock");
    let Some(i) = st.user_idx(&id) else {
        return not_found(&id);
    };
    match user_json(&s, &st, &st.users[i], q.select.as_deref()) {
        Ok(mut v) => {
            v["@odata.context"] = json!(format!("{}/v1.0/$metadata#users/$entity", s.base_url));
            Json(v).into_response()
        }
        Err(r) => r,
    }
}

fn uid_of(st: &State, key: &str) -> Result<String, Response> {
    st.user_idx(key)
        .map(|i| st.users[i].id.clone())
        .ok_or_else(|| not_found(key))
}

async fn patch_user(
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = s.graph.lock().expect("graph lock");
    let Some(i) = st.user_idx(&id) else {
        return not_found(&id);
    };
    let Some(obj) = body.as_object() else {
        return bad_request("BadRequest", "Empty Payload. JSON content expected.");
    };
    for (k, v) in obj {
        match (k.as_str(), v) {
            ("accountEnabled", Value::Bool(b)) => {
                let u = &mut st.users[i];
                if u.synced {
                    return bad_request(
                        "Request_BadRequest",
                        "Unable to update the specified properties for on-premises mastered Directory Sync objects or objects currently undergoing migration.",
                    );
                }
                if !*b && u.enabled {
                    u.enabled = false;
                    u.disabled_at = Some(Instant::now());
                } else if *b {
                    u.enabled = true;
                    u.disabled_at = None;
                }
                u.changed_at = Some(Instant::now());
            }
            ("accountEnabled", _) => {
                return bad_request(
                    "BadRequest",
                    "Invalid value specified for property 'accountEnabled' of resource 'User'.",
                );
            }
            (k, _) => {
                return bad_request(
                    "Request_BadRequest",
                    &format!("Property '{k}' cannot be updated through this sandbox."),
                );
            }
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn revoke_sessions(AxState(s): AxState<Shared>, Path(id): Path<String>) -> Response {
    let mut st = s.graph.lock().expect("graph lock");
    let Some(i) = st.user_idx(&id) else {
        return not_found(&id);
    };
    let uid = st.users[i].id.clone();
    st.users[i].sessions_valid_from = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    *st.revocations.entry(uid).or_default() += 1;
    Json(json!({
        "@odata.context": format!("{}/v1.0/$metadata#Edm.Boolean", s.base_url),
        "value": true
    }))
    .into_response()
}

// ----- delegated grants, app role assignments -------------------------------

fn grant_json(g: &Item) -> Value {
    json!({
        "id": g.id,
        "clientId": g.a,
        "consentType": g.c,
        "principalId": if g.user.is_empty() { Value::Null } else { json!(g.user) },
        "resourceId": guid(0x5, 1),
        "scope": g.b,
    })
}

async fn list_grants(AxState(s): AxState<Shared>, Query(q): Query<OData>) -> Response {
    let principal = match principal_filter(&q, "OAuth2PermissionGrant") {
        Ok(p) => p,
        Err(r) => return r,
    };
    let items: Vec<Value> = {
        let st = s.graph.lock().expect("graph lock");
        st.grants
            .iter()
            .filter(|g| listed(&s, g.removed_at))
            .filter(|g| principal.as_ref().is_none_or(|p| g.user == *p))
            .map(grant_json)
            .collect()
    };
    page(&s, "/v1.0/oauth2PermissionGrants", &q, items, false)
}

async fn user_grants(
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
    Query(q): Query<OData>,
) -> Response {
    let items: Vec<Value> = {
        let st = s.graph.lock().expect("graph lock");
        let uid = match uid_of(&st, &id) {
            Ok(u) => u,
            Err(r) => return r,
        };
        st.grants
            .iter()
            .filter(|g| g.user == uid && listed(&s, g.removed_at))
            .map(grant_json)
            .collect()
    };
    page(
        &s,
        &format!("/v1.0/users/{id}/oauth2PermissionGrants"),
        &q,
        items,
        false,
    )
}

async fn get_grant(AxState(s): AxState<Shared>, Path(gid): Path<String>) -> Response {
    let st = s.graph.lock().expect("graph lock");
    match st
        .grants
        .iter()
        .find(|g| g.id == gid && listed(&s, g.removed_at))
    {
        Some(g) => Json(grant_json(g)).into_response(),
        None => not_found(&gid),
    }
}

fn remove(items: &mut [Item], now: Instant, f: impl Fn(&Item) -> bool) -> bool {
    let mut hit = false;
    for i in items.iter_mut().filter(|i| f(i)) {
        if i.removed_at.is_none() {
            i.removed_at = Some(now);
            hit = true;
        }
    }
    hit
}

async fn delete_grant(AxState(s): AxState<Shared>, Path(gid): Path<String>) -> Response {
    let mut st = s.graph.lock().expect("graph lock");
    if remove(&mut st.grants, Instant::now(), |g| g.id == gid) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found(&gid)
    }
}

async fn list_app_roles(
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
    Query(q): Query<OData>,
) -> Response {
    let items: Vec<Value> = {
        let st = s.graph.lock().expect("graph lock");
        let uid = match uid_of(&st, &id) {
            Ok(u) => u,
            Err(r) => return r,
        };
        let name = st
            .users
            .iter()
            .find(|u| u.id == uid)
            .map(|u| format!("{} {}", u.given, u.surname))
            .unwrap_or_default();
        st.app_roles
            .iter()
            .filter(|a| a.user == uid && listed(&s, a.removed_at))
            .map(|a| {
                json!({
                    "id": a.id,
                    "appRoleId": a.c,
                    "createdDateTime": "2025-03-01T09:00:00Z",
                    "principalDisplayName": name,
                    "principalId": uid,
                    "principalType": "User",
                    "resourceDisplayName": a.b,
                    "resourceId": a.a,
                })
            })
            .collect()
    };
    page(
        &s,
        &format!("/v1.0/users/{id}/appRoleAssignments"),
        &q,
        items,
        false,
    )
}

async fn delete_app_role(
    AxState(s): AxState<Shared>,
    Path((id, aid)): Path<(String, String)>,
) -> Response {
    let mut st = s.graph.lock().expect("graph lock");
    let uid = match uid_of(&st, &id) {
        Ok(u) => u,
        Err(r) => return r,
    };
    if remove(&mut st.app_roles, Instant::now(), |a| {
        a.id == aid && a.user == uid
    }) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found(&aid)
    }
}

// ----- authentication methods -------------------------------------------------

/// `fido2Methods` → `fido2AuthenticationMethod`.
fn method_type(segment: &str) -> Option<String> {
    let kind = segment.strip_suffix("Methods")?;
    const KINDS: &[&str] = &[
        "microsoftAuthenticator",
        "fido2",
        "phone",
        "softwareOath",
        "temporaryAccessPass",
        "windowsHelloForBusiness",
        "email",
        "platformCredential",
        "hardwareOath",
        "password",
    ];
    if KINDS.contains(&kind) {
        Some(format!("{kind}AuthenticationMethod"))
    } else if segment == "externalAuthenticationMethods" {
        Some("externalAuthenticationMethod".into())
    } else {
        None
    }
}

async fn list_methods(
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
    Query(q): Query<OData>,
) -> Response {
    let items: Vec<Value> = {
        let st = s.graph.lock().expect("graph lock");
        let uid = match uid_of(&st, &id) {
            Ok(u) => u,
            Err(r) => return r,
        };
        let mut v = vec![json!({
            "@odata.type": "#microsoft.graph.passwordAuthenticationMethod",
            "id": PASSWORD_METHOD_ID,
            "password": null,
            "createdDateTime": "2025-01-05T08:00:00Z",
        })];
        v.extend(
            st.methods
                .iter()
                .filter(|m| m.user == uid && listed(&s, m.removed_at))
                .map(|m| {
                    let mut o = json!({
                        "@odata.type": format!("#microsoft.graph.{}", m.a),
                        "id": m.id,
                        "createdDateTime": "2025-06-01T10:00:00Z",
                    });
                    match m.a.as_str() {
                        "phoneAuthenticationMethod" => {
                            o["phoneNumber"] = json!(m.b);
                            o["phoneType"] = json!("mobile");
                        }
                        "temporaryAccessPassAuthenticationMethod" => {
                            o["isUsable"] = json!(true);
                            o["lifetimeInMinutes"] = json!(60);
                        }
                        _ => o["displayName"] = json!(m.b),
                    }
                    o
                }),
        );
        v
    };
    page(
        &s,
        &format!("/v1.0/users/{id}/authentication/methods"),
        &q,
        items,
        false,
    )
}

async fn delete_method(
    AxState(s): AxState<Shared>,
    Path((id, kind, mid)): Path<(String, String, String)>,
) -> Response {
    let Some(ty) = method_type(&kind) else {
        return graph_error(
            StatusCode::NOT_FOUND,
            "UnknownError",
            &format!(
                "No HTTP resource was found that matches the request URI 'authentication/{kind}'."
            ),
        );
    };
    let mut st = s.graph.lock().expect("graph lock");
    let uid = match uid_of(&st, &id) {
        Ok(u) => u,
        Err(r) => return r,
    };
    if ty == "passwordAuthenticationMethod" || mid == PASSWORD_METHOD_ID {
        return bad_request(
            "badRequest",
            "The password authentication method cannot be deleted.",
        );
    }
    if remove(&mut st.methods, Instant::now(), |m| {
        m.id == mid && m.user == uid && m.a == ty
    }) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        graph_error(
            StatusCode::NOT_FOUND,
            "itemNotFound",
            &format!("The authentication method '{mid}' was not found."),
        )
    }
}

// ----- licences ---------------------------------------------------------------

async fn license_details(
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
    Query(q): Query<OData>,
) -> Response {
    let items: Vec<Value> = {
        let st = s.graph.lock().expect("graph lock");
        let uid = match uid_of(&st, &id) {
            Ok(u) => u,
            Err(r) => return r,
        };
        let mut skus: Vec<String> = license_states(&s, &st, &uid)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        skus.sort();
        skus.dedup();
        skus.iter()
            .map(|k| {
                let part = st
                    .skus
                    .iter()
                    .find(|(id, _)| id == k)
                    .map(|(_, p)| p.clone())
                    .unwrap_or_default();
                json!({
                    "id": format!("{k}-{}", &uid[..8]),
                    "skuId": k,
                    "skuPartNumber": part,
                    "servicePlans": [{"servicePlanId": guid(0xb, 1), "servicePlanName": "EXCHANGE_S_ENTERPRISE", "provisioningStatus": "Success", "appliesTo": "User"}],
                })
            })
            .collect()
    };
    page(
        &s,
        &format!("/v1.0/users/{id}/licenseDetails"),
        &q,
        items,
        false,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssignLicense {
    add_licenses: Vec<Value>,
    remove_licenses: Vec<String>,
}

async fn assign_license(
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<AssignLicense>(&body) else {
        return bad_request(
            "Request_BadRequest",
            "Invalid value specified for property 'addLicenses' and 'removeLicenses' (both are required).",
        );
    };
    if !body.add_licenses.is_empty() {
        return bad_request(
            "Request_BadRequest",
            "License assignment is not emulated by this sandbox.",
        );
    }
    let mut st = s.graph.lock().expect("graph lock");
    let uid = match uid_of(&st, &id) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let states = license_states(&s, &st, &uid);
    for sku in &body.remove_licenses {
        let direct = states.iter().any(|(k, g)| k == sku && g.is_none());
        let inherited = states.iter().any(|(k, g)| k == sku && g.is_some());
        if !direct && inherited {
            return bad_request(
                "Request_BadRequest",
                "User license is inherited from a group membership and it cannot be removed directly from the user.",
            );
        }
        if !direct {
            return bad_request(
                "Request_BadRequest",
                &format!("License {sku} does not correspond to a valid company License."),
            );
        }
    }
    let now = Instant::now();
    for sku in &body.remove_licenses {
        remove(&mut st.licenses, now, |l| l.user == uid && &l.a == sku);
    }
    let i = st.user_idx(&uid).expect("user");
    let mut v = user_json(&s, &st, &st.users[i], None).unwrap_or_default();
    v["@odata.context"] = json!(format!("{}/v1.0/$metadata#users/$entity", s.base_url));
    Json(v).into_response()
}

async fn subscribed_skus(AxState(s): AxState<Shared>, Query(q): Query<OData>) -> Response {
    let items: Vec<Value> = {
        let st = s.graph.lock().expect("graph lock");
        st.skus
            .iter()
            .map(|(k, p)| {
                json!({"id": format!("{DEMO_TENANT_ID}_{k}"), "skuId": k, "skuPartNumber": p,
                       "capabilityStatus": "Enabled", "consumedUnits": 120, "appliesTo": "User"})
            })
            .collect()
    };
    page(&s, "/v1.0/subscribedSkus", &q, items, false)
}

// ----- groups -------------------------------------------------------------------

fn group_json(g: &Group) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.group",
        "id": g.id,
        "displayName": g.name,
        "groupTypes": g.types,
        "mailEnabled": g.mail_enabled,
        "securityEnabled": g.security_enabled,
        "onPremisesSyncEnabled": if g.synced { json!(true) } else { Value::Null },
        "mail": if g.mail_enabled { json!(format!("{}@example.com", g.name.split(' ').next().unwrap_or("group").to_lowercase())) } else { Value::Null },
        "membershipRule": if g.types.contains(&"DynamicMembership") { json!("user.accountEnabled -eq true") } else { Value::Null },
    })
}

async fn member_of(
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
    Query(q): Query<OData>,
) -> Response {
    let items: Vec<Value> = {
        let st = s.graph.lock().expect("graph lock");
        let uid = match uid_of(&st, &id) {
            Ok(u) => u,
            Err(r) => return r,
        };
        let mut v: Vec<Value> = st
            .groups
            .iter()
            .filter(|g| {
                g.members
                    .iter()
                    .any(|m| m.user == uid && listed(&s, m.removed_at))
            })
            .map(group_json)
            .collect();
        // Activated directory roles come in memberOf too.
        for r in st
            .role_assignments
            .iter()
            .filter(|r| r.user == uid && listed(&s, r.removed_at))
        {
            v.push(json!({
                "@odata.type": "#microsoft.graph.directoryRole",
                "id": guid(0xc, r.a.len() as u64),
                "displayName": st.role_name(&r.a),
                "roleTemplateId": r.a,
            }));
        }
        v
    };
    page(&s, &format!("/v1.0/users/{id}/memberOf"), &q, items, false)
}

async fn get_group(AxState(s): AxState<Shared>, Path(gid): Path<String>) -> Response {
    let st = s.graph.lock().expect("graph lock");
    match st.groups.iter().find(|g| g.id == gid) {
        Some(g) => Json(group_json(g)).into_response(),
        None => not_found(&gid),
    }
}

async fn delete_member(
    AxState(s): AxState<Shared>,
    Path((gid, uid)): Path<(String, String)>,
) -> Response {
    let mut st = s.graph.lock().expect("graph lock");
    let Some(g) = st.groups.iter_mut().find(|g| g.id == gid) else {
        return not_found(&gid);
    };
    if g.types.contains(&"DynamicMembership") {
        return bad_request(
            "Request_BadRequest",
            "Insufficient privileges to complete the operation: the membership of a dynamic group is set by its rule.",
        );
    }
    if g.synced {
        return bad_request(
            "Request_BadRequest",
            "Unable to update the specified properties for on-premises mastered Directory Sync objects or objects currently undergoing migration.",
        );
    }
    if g.mail_enabled && !g.types.contains(&"Unified") {
        return bad_request(
            "Request_BadRequest",
            "Cannot Update a mail-enabled security groups and or distribution list.",
        );
    }
    let now = Instant::now();
    let mut hit = false;
    for m in g.members.iter_mut().filter(|m| m.user == uid) {
        if m.removed_at.is_none() {
            m.removed_at = Some(now);
            hit = true;
        }
    }
    if hit {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found(&uid)
    }
}

// ----- directory roles --------------------------------------------------------------

fn role_json(st: &State, r: &Item, expand: bool) -> Value {
    let mut v = json!({
        "id": r.id,
        "roleDefinitionId": r.a,
        "principalId": r.user,
        "directoryScopeId": r.c,
    });
    if expand {
        v["roleDefinition"] = json!({
            "id": r.a, "displayName": st.role_name(&r.a), "isBuiltIn": true, "templateId": r.a
        });
    }
    v
}

fn wants_role_definition(q: &OData) -> bool {
    q.expand
        .as_deref()
        .is_some_and(|e| e.split(',').any(|x| x.trim() == "roleDefinition"))
}

async fn list_role_assignments(AxState(s): AxState<Shared>, Query(q): Query<OData>) -> Response {
    let principal = match principal_filter(&q, "UnifiedRoleAssignment") {
        Ok(p) => p,
        Err(r) => return r,
    };
    let items: Vec<Value> = {
        let st = s.graph.lock().expect("graph lock");
        st.role_assignments
            .iter()
            .filter(|r| listed(&s, r.removed_at))
            .filter(|r| principal.as_ref().is_none_or(|p| r.user == *p))
            .map(|r| role_json(&st, r, wants_role_definition(&q)))
            .collect()
    };
    page(
        &s,
        "/v1.0/roleManagement/directory/roleAssignments",
        &q,
        items,
        false,
    )
}

async fn delete_role_assignment(AxState(s): AxState<Shared>, Path(rid): Path<String>) -> Response {
    let mut st = s.graph.lock().expect("graph lock");
    if remove(&mut st.role_assignments, Instant::now(), |r| r.id == rid) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found(&rid)
    }
}

async fn list_eligible(AxState(s): AxState<Shared>, Query(q): Query<OData>) -> Response {
    let principal = match principal_filter(&q, "UnifiedRoleEligibilitySchedule") {
        Ok(p) => p,
        Err(r) => return r,
    };
    let items: Vec<Value> = {
        let st = s.graph.lock().expect("graph lock");
        st.eligible
            .iter()
            .filter(|r| listed(&s, r.removed_at))
            .filter(|r| principal.as_ref().is_none_or(|p| r.user == *p))
            .map(|r| {
                let mut v = role_json(&st, r, wants_role_definition(&q));
                v["memberType"] = json!("Direct");
                v["status"] = json!("Provisioned");
                v["scheduleInfo"] = json!({"startDateTime": "2025-09-01T00:00:00Z", "expiration": {"type": "noExpiration"}});
                v
            })
            .collect()
    };
    page(
        &s,
        "/v1.0/roleManagement/directory/roleEligibilitySchedules",
        &q,
        items,
        false,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EligibilityRequest {
    action: String,
    principal_id: String,
    role_definition_id: String,
    directory_scope_id: String,
    #[serde(default)]
    justification: Option<String>,
}

async fn eligibility_request(AxState(s): AxState<Shared>, body: axum::body::Bytes) -> Response {
    let Ok(r) = serde_json::from_slice::<EligibilityRequest>(&body) else {
        return bad_request(
            "InvalidRequest",
            "action, principalId, roleDefinitionId and directoryScopeId are required.",
        );
    };
    if r.action != "adminRemove" {
        return bad_request(
            "InvalidRequest",
            &format!("The action '{}' is not emulated by this sandbox.", r.action),
        );
    }
    let mut st = s.graph.lock().expect("graph lock");
    let now = Instant::now();
    if !remove(&mut st.eligible, now, |e| {
        e.user == r.principal_id && e.a == r.role_definition_id && e.c == r.directory_scope_id
    }) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "RoleAssignmentDoesNotExist",
            "The Role assignment does not exist.",
        );
    }
    let id = st.id(0xf);
    (
        StatusCode::CREATED,
        Json(json!({
            "@odata.context": format!("{}/v1.0/$metadata#roleManagement/directory/roleEligibilityScheduleRequests/$entity", s.base_url),
            "id": id,
            "status": "Revoked",
            "action": "adminRemove",
            "principalId": r.principal_id,
            "roleDefinitionId": r.role_definition_id,
            "directoryScopeId": r.directory_scope_id,
            "justification": r.justification,
            "createdDateTime": chrono::Utc::now().to_rfc3339(),
        })),
    )
        .into_response()
}

// ----- devices, owned objects ---------------------------------------------------------

fn device_json(s: &Shared, d: &Device) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.device",
        "id": d.id,
        "deviceId": d.device_id,
        "displayName": d.name,
        "operatingSystem": d.os,
        "accountEnabled": read_enabled(s, d.enabled, d.disabled_at),
        "approximateLastSignInDateTime": "2026-11-30T08:00:00Z",
    })
}

async fn registered_devices(
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
    Query(q): Query<OData>,
) -> Response {
    let items: Vec<Value> = {
        let st = s.graph.lock().expect("graph lock");
        let uid = match uid_of(&st, &id) {
            Ok(u) => u,
            Err(r) => return r,
        };
        st.devices
            .iter()
            .filter(|d| d.user == uid)
            .map(|d| device_json(&s, d))
            .collect()
    };
    page(
        &s,
        &format!("/v1.0/users/{id}/registeredDevices"),
        &q,
        items,
        false,
    )
}

async fn get_device(AxState(s): AxState<Shared>, Path(did): Path<String>) -> Response {
    let st = s.graph.lock().expect("graph lock");
    match st.devices.iter().find(|d| d.id == did) {
        Some(d) => Json(device_json(&s, d)).into_response(),
        None => not_found(&did),
    }
}

async fn patch_device(
    AxState(s): AxState<Shared>,
    Path(did): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = s.graph.lock().expect("graph lock");
    let Some(d) = st.devices.iter_mut().find(|d| d.id == did) else {
        return not_found(&did);
    };
    match body.get("accountEnabled") {
        Some(Value::Bool(false)) => {
            if d.enabled {
                d.enabled = false;
                d.disabled_at = Some(Instant::now());
            }
        }
        Some(Value::Bool(true)) => {
            d.enabled = true;
            d.disabled_at = None;
        }
        _ => {
            return bad_request(
                "Request_BadRequest",
                "Only accountEnabled can be updated through this sandbox.",
            );
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn owned_objects(
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
    Query(q): Query<OData>,
) -> Response {
    let items: Vec<Value> = {
        let st = s.graph.lock().expect("graph lock");
        let uid = match uid_of(&st, &id) {
            Ok(u) => u,
            Err(r) => return r,
        };
        let mut v: Vec<Value> = st
            .owned
            .iter()
            .filter(|o| o.owners.contains(&uid))
            .map(|o| {
                json!({
                    "@odata.type": format!("#microsoft.graph.{}", o.kind),
                    "id": o.id,
                    "appId": o.app_id,
                    "displayName": o.name,
                })
            })
            .collect();
        v.extend(
            st.groups
                .iter()
                .filter(|g| g.owners.contains(&uid))
                .map(group_json),
        );
        v
    };
    page(
        &s,
        &format!("/v1.0/users/{id}/ownedObjects"),
        &q,
        items,
        false,
    )
}

// ----- $batch ----------------------------------------------------------------------------

#[derive(Deserialize)]
struct BatchBody {
    requests: Vec<BatchItem>,
}

#[derive(Deserialize)]
struct BatchItem {
    id: String,
    method: String,
    url: String,
    #[serde(default)]
    headers: HashMap<String, String>,
    #[serde(default)]
    body: Option<Value>,
}

/// JSON batching: each request is served by the API routes (with the
/// batch's credential) and answered in `responses`, throttling included.
async fn batch(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Ok(b) = serde_json::from_slice::<BatchBody>(&body) else {
        return bad_request("BadRequest", "Invalid batch payload format.");
    };
    if b.requests.len() > BATCH_MAX {
        return bad_request(
            "BadRequest",
            &format!("The number of batch requests exceeds the limit of {BATCH_MAX}."),
        );
    }
    let mut ids = HashSet::new();
    if !b.requests.iter().all(|r| ids.insert(r.id.clone())) {
        return bad_request("BadRequest", "Batch request ids must be unique.");
    }
    let auth = headers.get("authorization").cloned();
    let router = api_routes(&s).with_state(s.clone());
    let mut responses = Vec::new();
    for r in b.requests {
        let url = r.url.trim_start_matches('/');
        if url.starts_with("http") || url.starts_with("v1.0/") {
            responses.push(json!({"id": r.id, "status": 400, "body": {"error": {"code": "BadRequest", "message": "Batch item URLs are relative to the version: /users/{id}"}}}));
            continue;
        }
        // Items' URLs come as written (`$filter=a eq 'b'`): what a URI
        // cannot hold is encoded here, as Graph does.
        const LOOSE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
            .add(b' ')
            .add(b'"')
            .add(b'<')
            .add(b'>')
            .add(b'`')
            .add(b'{')
            .add(b'}')
            .add(b'|')
            .add(b'\\')
            .add(b'^');
        let url = percent_encoding::utf8_percent_encode(url, LOOSE).to_string();
        let mut req = axum::http::Request::builder()
            .method(r.method.as_str())
            .uri(format!("/v1.0/{url}"));
        if let Some(a) = &auth {
            req = req.header("authorization", a.clone());
        }
        for (k, v) in &r.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let body = match &r.body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(serde_json::to_vec(v).expect("json"))
            }
            None => Body::empty(),
        };
        let Ok(req) = req.body(body) else {
            responses.push(json!({"id": r.id, "status": 400, "body": {"error": {"code": "BadRequest", "message": "Invalid batch request."}}}));
            continue;
        };
        let resp = tower::ServiceExt::oneshot(router.clone(), req)
            .await
            .expect("infallible");
        let status = resp.status().as_u16();
        let mut h = serde_json::Map::new();
        for k in ["retry-after", "content-type", "location"] {
            if let Some(v) = resp.headers().get(k).and_then(|v| v.to_str().ok()) {
                h.insert(k.into(), json!(v));
            }
        }
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut item = json!({"id": r.id, "status": status, "headers": h});
        if !body.is_null() {
            item["body"] = body;
        }
        responses.push(item);
    }
    Json(json!({"responses": responses})).into_response()
}

// ----- token endpoint ------------------------------------------------------------------------

/// The Microsoft identity platform's error body: AADSTS code in the text
/// and in `error_codes`.
fn aad_error(status: StatusCode, error: &str, code: u32, text: &str) -> Response {
    let trace = uuid_like();
    let corr = uuid_like();
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    (
        status,
        Json(json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {corr} Timestamp: {now}"),
            "error_codes": [code],
            "timestamp": now,
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        })),
    )
        .into_response()
}

async fn token_other(Path(tenant): Path<String>) -> Response {
    aad_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        90002,
        &format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        ),
    )
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    aud: Value,
}

/// The demo certificate's SHA-1 thumbprint, base64url (`x5t`).
pub fn demo_cert_x5t() -> String {
    crate::auth::jwt::certificate_thumbprint(super::DEMO_CERTIFICATE)
        .expect("the demo certificate parses")
}

/// Its SHA-256 thumbprint, base64url (`x5t#S256`, which Microsoft's
/// libraries send with PS256).
fn demo_cert_x5t_s256() -> String {
    use sha2::Digest;
    let der = crate::auth::jwt::certificate_der(super::DEMO_CERTIFICATE)
        .expect("the demo certificate parses");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der))
}

/// The tenant's OpenID Connect metadata (what Microsoft's libraries read
/// to find the token endpoint). It names Entra's public addresses, as
/// Entra's does: a client reaches the sandbox in their place through a
/// transport that sends login.microsoftonline.com here (Microsoft's
/// libraries accept nothing but https endpoints).
async fn openid_configuration() -> Response {
    let base = format!("https://login.microsoftonline.com/{DEMO_TENANT_ID}");
    Json(json!({
        "token_endpoint": format!("{base}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("https://login.microsoftonline.com/{DEMO_TENANT_ID}/v2.0"),
        "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
    }))
    .into_response()
}

/// `client_secret_basic`: `Authorization: Basic base64(id:secret)`, each
/// form-urlencoded (RFC 6749 §2.3.1).
fn basic_client(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.strip_prefix("Basic ")?.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let dec = |x: &str| {
        percent_encoding::percent_decode_str(&x.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    Some((dec(id)?, dec(secret)?))
}

async fn token_demo(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Form(mut form): Form<HashMap<String, String>>,
) -> Response {
    // The endpoint takes the client's secret in the body or in Basic auth.
    if let Some((id, secret)) = basic_client(&headers) {
        form.entry("client_id".into()).or_insert(id);
        form.entry("client_secret".into()).or_insert(secret);
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    let client = form.get("client_id").map(String::as_str).unwrap_or("");
    if client.is_empty() {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    }
    if client != DEMO_CLIENT_ID {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client}' was not found in the directory '{DEMO_TENANT_ID}'."
            ),
        );
    }
    let scope = form.get("scope").map(String::as_str).unwrap_or("");
    if scope.split_ascii_whitespace().collect::<Vec<_>>() != [GRAPH_DEFAULT_SCOPE] {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    }
    if let Some(assertion) = form.get("client_assertion") {
        if form.get("client_assertion_type").map(String::as_str)
            != Some(crate::auth::jwt::CLIENT_ASSERTION_TYPE)
        {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_assertion_type'.",
            );
        }
        let header = jsonwebtoken::decode_header(assertion).ok();
        // Thumbprints compare without base64 padding (MSAL pads them).
        let same = |got: &Option<String>, want: String| {
            got.as_deref()
                .is_some_and(|g| g.trim_end_matches('=') == want.trim_end_matches('='))
        };
        let named = header.as_ref().is_some_and(|h| {
            same(&h.x5t, demo_cert_x5t()) || same(&h.x5t_s256, demo_cert_x5t_s256())
        });
        let alg = header
            .map(|h| h.alg)
            .filter(|a| {
                matches!(
                    a,
                    jsonwebtoken::Algorithm::RS256 | jsonwebtoken::Algorithm::PS256
                )
            })
            .unwrap_or(jsonwebtoken::Algorithm::RS256);
        if !named {
            return aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                700027,
                "The certificate with identifier used to sign the client assertion is not registered on application.",
            );
        }
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(super::DEMO_PUBLIC_KEY.as_bytes())
            .expect("the demo public key parses");
        let mut v = jsonwebtoken::Validation::new(alg);
        v.validate_aud = false;
        v.leeway = 30;
        v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        let claims = match jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &v) {
            Ok(d) => d.claims,
            Err(_) => {
                return aad_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    700027,
                    "Client assertion failed signature validation.",
                );
            }
        };
        // This endpoint, at the sandbox's address or at the public one it
        // stands in for.
        let auds = [
            format!("{}/{DEMO_TENANT_ID}/oauth2/v2.0/token", s.base_url),
            format!("https://login.microsoftonline.com/{DEMO_TENANT_ID}/oauth2/v2.0/token"),
        ];
        let aud_ok = match &claims.aud {
            Value::String(a) => auds.contains(a),
            Value::Array(v) => v
                .iter()
                .any(|a| a.as_str().is_some_and(|a| auds.iter().any(|x| x == a))),
            _ => false,
        };
        if claims.iss != DEMO_CLIENT_ID || claims.sub != DEMO_CLIENT_ID {
            return aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            );
        }
        if !aud_ok {
            return aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                700024,
                "Client assertion audience claim does not match the token endpoint.",
            );
        }
    } else {
        match form.get("client_secret") {
            None => {
                return aad_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    7000218,
                    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                );
            }
            Some(secret) if secret != DEMO_CLIENT_SECRET => {
                return aad_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.",
                );
            }
            Some(_) => {}
        }
    }
    let token = format!(
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.{}.{}",
        hex::encode(rand::random::<[u8; 24]>()),
        hex::encode(rand::random::<[u8; 8]>())
    );
    s.graph
        .lock()
        .expect("graph lock")
        .access
        .insert(token.clone());
    Json(json!({
        "token_type": "Bearer",
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": token,
    }))
    .into_response()
}

// ----- sandbox controls ----------------------------------------------------------------------

async fn get_settings(AxState(s): AxState<Shared>) -> Json<Settings> {
    Json(s.graph.lock().expect("graph lock").settings.clone())
}

async fn put_settings(AxState(s): AxState<Shared>, Json(v): Json<Settings>) -> Json<Settings> {
    s.graph.lock().expect("graph lock").settings = v.clone();
    Json(v)
}

#[derive(Deserialize)]
struct NewUser {
    upn: String,
    #[serde(default)]
    proxy: Vec<String>,
}

/// Creates a user now: the advanced-query index sees it after the delay.
async fn create_user(AxState(s): AxState<Shared>, Json(n): Json<NewUser>) -> Response {
    let mut st = s.graph.lock().expect("graph lock");
    let id = st.id(0x0);
    st.users.push(User {
        id: id.clone(),
        upn: n.upn.clone(),
        mail: n.upn.clone(),
        given: "New".into(),
        surname: "User".into(),
        proxy: n.proxy,
        enabled: true,
        disabled_at: None,
        synced: false,
        sessions_valid_from: "2026-01-05T08:00:00Z".into(),
        changed_at: Some(Instant::now()),
        job: String::new(),
    });
    Json(json!({"id": id})).into_response()
}

async fn get_state(AxState(s): AxState<Shared>) -> Json<Value> {
    let st = s.graph.lock().expect("graph lock");
    Json(json!({
        "revocations": st.revocations,
        "users": st.users.iter().map(|u| json!({"id": u.id, "upn": u.upn, "enabled": u.enabled})).collect::<Vec<_>>(),
        "grants": st.grants.iter().filter(|g| g.removed_at.is_none()).map(|g| json!({"id": g.id, "consentType": g.c, "principalId": g.user})).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_the_forms_graph_takes() {
        assert_eq!(
            parse_filter("mail eq 'a''b@x.com' or userPrincipalName eq 'c@x.com'"),
            Some(vec![
                Cond::Eq("mail".into(), "a'b@x.com".into()),
                Cond::Eq("userPrincipalName".into(), "c@x.com".into()),
            ])
        );
        assert_eq!(
            parse_filter("proxyAddresses/any(p:p eq 'smtp:a@x.com')"),
            Some(vec![Cond::AnyEq(
                "proxyAddresses".into(),
                "smtp:a@x.com".into()
            )])
        );
        assert_eq!(parse_filter("mail eq 'x' and id eq 'y'"), None);
        assert_eq!(parse_filter("mail eq 'unterminated"), None);
    }

    #[test]
    fn page_tokens_round_trip_and_are_opaque() {
        let t = skiptoken(40);
        assert_eq!(unskip(&t), Some(40));
        assert!(!t.contains("40"));
    }
}
