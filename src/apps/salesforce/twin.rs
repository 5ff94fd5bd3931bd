//! Salesforce emulator: the REST API under `/services/data/vNN.0` (query with
//! query locators, sObject PATCH/DELETE), the OAuth 2.0 token endpoint (JWT
//! bearer flow) and the revoke endpoint, with a small SOQL engine that
//! understands exactly the query forms Salesforce accepts for
//! `SELECT f1, Rel.f2 FROM Object WHERE a = 'x' AND/OR b IN ('y', 'z') ...`.
//!
//! Behaviour copied from Salesforce: errors are a JSON array
//! `[{"message","errorCode","fields"}]`; an unknown or expired session is 401
//! `INVALID_SESSION_ID`; every REST answer carries `Sforce-Limit-Info`;
//! queries return `{totalSize, done, records, nextRecordsUrl?}` in batches of
//! 2,000 (the `Sforce-Query-Options: batchSize=N` header asks for 200..2,000);
//! OAuth errors are `{"error","error_description"}`; the revoke endpoint
//! answers 200, or 400 `invalid_token` for a token it does not know.
//!
//! Sandbox-only controls live under `/_sandbox/salesforce`.

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::extract::{Form, Path, Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::sandbox::Shared;
use crate::sandbox::tenant::{self, Scenario};

/// The demo connected app's consumer key (the JWT `iss`).
pub const DEMO_CONSUMER_KEY: &str = "3MVG9offboardDemo.SandboxConsumerKey";
/// The org id part of issued access tokens.
const ORG_ID: &str = "00DSB0000000001";
/// The daily API allocation reported in `Sforce-Limit-Info`.
pub const DAILY_API_LIMIT: u64 = 15_000;
/// API versions this emulator answers (as `vNN.0` path segments).
const VERSIONS: &[&str] = &[
    "v58.0", "v59.0", "v60.0", "v61.0", "v62.0", "v63.0", "v64.0",
];
/// Query batch sizes Salesforce allows in `Sforce-Query-Options`.
const MIN_BATCH: usize = 200;
const MAX_BATCH: usize = 2000;

/// Fields each emulated object has, as SOQL names them (relationship fields
/// with their dotted path).
const SCHEMA: &[(&str, &[&str])] = &[
    (
        "User",
        &[
            "Id",
            "Username",
            "Email",
            "Name",
            "IsActive",
            "UserType",
            "ProfileId",
            "Profile.Name",
            "LastLoginDate",
            "FederationIdentifier",
        ],
    ),
    (
        "UserLogin",
        &["Id", "UserId", "IsFrozen", "IsPasswordLocked"],
    ),
    (
        "AuthSession",
        &[
            "Id",
            "UsersId",
            "SessionType",
            "LoginType",
            "SourceIp",
            "CreatedDate",
            "LastModifiedDate",
            "NumSecondsValid",
        ],
    ),
    (
        "OauthToken",
        &[
            "Id",
            "UserId",
            "AppName",
            "DeleteToken",
            "LastUsedDate",
            "UseCount",
            "CreatedDate",
        ],
    ),
    (
        "PermissionSetAssignment",
        &[
            "Id",
            "AssigneeId",
            "PermissionSetId",
            "PermissionSet.Name",
            "PermissionSet.Label",
            "PermissionSet.IsOwnedByProfile",
        ],
    ),
    (
        "PermissionSetLicenseAssign",
        &[
            "Id",
            "AssigneeId",
            "PermissionSetLicenseId",
            "PermissionSetLicense.MasterLabel",
        ],
    ),
    (
        "GroupMember",
        &["Id", "GroupId", "UserOrGroupId", "Group.Name", "Group.Type"],
    ),
    (
        "UserPackageLicense",
        &[
            "Id",
            "UserId",
            "PackageLicenseId",
            "PackageLicense.NamespacePrefix",
        ],
    ),
];

/// Relationship name -> (sObject type, the id field that points at it).
const RELATIONS: &[(&str, &str, &str)] = &[
    ("Profile", "Profile", "ProfileId"),
    ("PermissionSet", "PermissionSet", "PermissionSetId"),
    (
        "PermissionSetLicense",
        "PermissionSetLicense",
        "PermissionSetLicenseId",
    ),
    ("Group", "Group", "GroupId"),
    ("PackageLicense", "PackageLicense", "PackageLicenseId"),
];

const BOOLEAN_FIELDS: &[&str] = &[
    "IsActive",
    "IsFrozen",
    "IsPasswordLocked",
    "PermissionSet.IsOwnedByProfile",
];
const NUMBER_FIELDS: &[&str] = &["UseCount", "NumSecondsValid"];

/// Objects whose rows may be deleted through `DELETE /sobjects/{Type}/{Id}`.
const DELETABLE: &[&str] = &[
    "AuthSession",
    "PermissionSetAssignment",
    "PermissionSetLicenseAssign",
    "GroupMember",
    "UserPackageLicense",
];
/// Fields that `PATCH /sobjects/{Type}/{Id}` may change.
const UPDATABLE: &[(&str, &str)] = &[
    ("User", "IsActive"),
    ("UserLogin", "IsFrozen"),
    ("UserLogin", "IsPasswordLocked"),
];

#[derive(Debug, Clone)]
struct Row {
    fields: BTreeMap<String, Value>,
    removed_at: Option<Instant>,
    /// Updates accepted but not yet visible to reads (eventual consistency).
    pending: Vec<(String, Value, Instant)>,
}

impl Row {
    fn new(fields: Value) -> Self {
        let fields = match fields {
            Value::Object(m) => m.into_iter().collect(),
            _ => BTreeMap::new(),
        };
        Self {
            fields,
            removed_at: None,
            pending: Vec::new(),
        }
    }

    fn id(&self) -> Option<&str> {
        self.fields.get("Id").and_then(Value::as_str)
    }

    fn str(&self, f: &str) -> Option<&str> {
        self.fields.get(f).and_then(Value::as_str)
    }

    /// Makes updates older than the consistency delay visible.
    fn settle(&mut self, delay: std::time::Duration) {
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(_, _, at)| at.elapsed() >= delay);
        for (f, v, _) in ready {
            self.fields.insert(f, v);
        }
        self.pending = waiting;
    }
}

/// Why a deactivation is refused: Salesforce's error code and message.
#[derive(Debug, Clone)]
struct Refusal {
    code: &'static str,
    message: &'static str,
}

/// Sandbox-only knobs, set through `PUT /_sandbox/salesforce`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The server picks a smaller batch than asked (Salesforce documents that
    /// the requested batch size is not guaranteed). None: as asked.
    pub batch_size: Option<usize>,
    /// Answer next-page links on this absolute URL instead of our own (to
    /// test that clients refuse links to other hosts).
    pub foreign_next_url: Option<String>,
}

/// Counters tests can read through `GET /_sandbox/salesforce/stats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    pub token_requests: u64,
    pub tokens_issued: u64,
    pub api_requests: u64,
    pub revocations: u64,
}

/// The emulated Salesforce org.
#[derive(Debug)]
pub struct State {
    objects: BTreeMap<&'static str, Vec<Row>>,
    access_tokens: HashSet<String>,
    locators: HashMap<String, (Vec<Value>, usize)>,
    refusals: HashMap<String, Refusal>,
    next_locator: u64,
    pub settings: Settings,
    pub stats: Stats,
}

/// A user id in the demo org (18 characters, `005` key prefix).
pub fn user_id(n: u32) -> String {
    format!("005SB{n:010}AAA")
}

fn rec_id(prefix: &str, n: usize) -> String {
    format!("{prefix}SB{n:010}AAA")
}

fn sf_time(days_ago: i64, hours_ago: i64) -> String {
    let t =
        chrono::Utc::now() - chrono::Duration::days(days_ago) - chrono::Duration::hours(hours_ago);
    t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

struct Seeder {
    objects: BTreeMap<&'static str, Vec<Row>>,
    n: usize,
}

impl Seeder {
    fn next(&mut self, prefix: &str) -> String {
        self.n += 1;
        rec_id(prefix, self.n)
    }

    fn push(&mut self, object: &'static str, v: Value) {
        self.objects.entry(object).or_default().push(Row::new(v));
    }

    fn user(
        &mut self,
        n: u32,
        username: &str,
        email: &str,
        name: &str,
        profile: (&str, &str),
    ) -> String {
        let id = user_id(n);
        self.push(
            "User",
            json!({
                "Id": id, "Username": username, "Email": email, "Name": name,
                "IsActive": true, "UserType": "Standard",
                "ProfileId": profile.0, "Profile.Name": profile.1,
                "LastLoginDate": sf_time(1, i64::from(n % 20)),
                "FederationIdentifier": email,
            }),
        );
        let login = self.next("060");
        self.push(
            "UserLogin",
            json!({"Id": login, "UserId": id, "IsFrozen": false, "IsPasswordLocked": false}),
        );
        // Every user has the permission set their profile owns: never listed
        // by the driver (IsOwnedByProfile = true) and never deletable.
        let psa = self.next("0Pa");
        self.push(
            "PermissionSetAssignment",
            json!({"Id": psa, "AssigneeId": id, "PermissionSetId": format!("0PS{}", &profile.0[3..]),
                   "PermissionSet.Name": format!("X00e{}", &profile.0[3..8]),
                   "PermissionSet.Label": null, "PermissionSet.IsOwnedByProfile": true}),
        );
        id
    }

    fn permset(&mut self, user: &str, name: &str, label: &str) {
        let id = self.next("0Pa");
        let ps = format!("0PS{}", &id[3..]);
        self.push(
            "PermissionSetAssignment",
            json!({"Id": id, "AssigneeId": user, "PermissionSetId": ps,
                   "PermissionSet.Name": name, "PermissionSet.Label": label,
                   "PermissionSet.IsOwnedByProfile": false}),
        );
    }

    fn psl(&mut self, user: &str, label: &str) {
        let id = self.next("2LA");
        let lic = format!("0PL{}", &id[3..]);
        self.push(
            "PermissionSetLicenseAssign",
            json!({"Id": id, "AssigneeId": user, "PermissionSetLicenseId": lic,
                   "PermissionSetLicense.MasterLabel": label}),
        );
    }

    fn member(&mut self, user: &str, group: &str, gtype: &str, name: &str) {
        let id = self.next("011");
        self.push(
            "GroupMember",
            json!({"Id": id, "GroupId": group, "UserOrGroupId": user,
                   "Group.Name": name, "Group.Type": gtype}),
        );
    }

    fn package(&mut self, user: &str, lic: &str, ns: &str) {
        let id = self.next("051");
        self.push(
            "UserPackageLicense",
            json!({"Id": id, "UserId": user, "PackageLicenseId": lic,
                   "PackageLicense.NamespacePrefix": ns}),
        );
    }

    fn session(&mut self, user: &str, stype: &str, login: &str, ip: &str, hours_ago: i64) {
        let id = self.next("0Ak");
        self.push(
            "AuthSession",
            json!({"Id": id, "UsersId": user, "SessionType": stype, "LoginType": login,
                   "SourceIp": ip, "CreatedDate": sf_time(0, hours_ago),
                   "LastModifiedDate": sf_time(0, 0), "NumSecondsValid": 7200}),
        );
    }

    fn oauth(&mut self, user: &str, app: &str, uses: u64, days_ago: i64) {
        self.n += 1;
        // A delete token looks like an opaque secret; it is one.
        let token = format!("{ORG_ID}!{:032x}{:08x}", rand::random::<u128>(), self.n);
        self.push(
            "OauthToken",
            json!({"Id": null, "UserId": user, "AppName": app, "DeleteToken": token,
                   "LastUsedDate": sf_time(0, 2), "UseCount": uses,
                   "CreatedDate": sf_time(days_ago, 0)}),
        );
    }
}

const SYSADMIN: (&str, &str) = ("00eSB000000A01AAA", "System Administrator");
const STANDARD: (&str, &str) = ("00eSB000000A02AAA", "Standard User");
const CONTRACTOR: (&str, &str) = ("00eSB000000A03AAA", "Partner Community User");

const G_FINANCE: &str = "00GSB000000G01AAA";
const G_INVOICES: &str = "00GSB000000G02AAA";
const G_ALL: &str = "00GSB000000G03AAA";
const G_SALES: &str = "00GSB000000G04AAA";
const G_LEADS: &str = "00GSB000000G05AAA";
const G_ADMINS: &str = "00GSB000000G06AAA";

impl State {
    /// The demo org: the tenant's people as users, the leavers' access.
    pub fn seed() -> Self {
        Self::seed_people(tenant::people())
    }

    /// The tenant with these people (the demo's, and a bench crowd).
    pub fn seed_people(people: Vec<tenant::TenantPerson>) -> Self {
        let mut s = Seeder {
            objects: BTreeMap::new(),
            n: 0,
        };
        let mut refusals = HashMap::new();
        s.user(
            0,
            crate::sandbox::DEMO_ADMIN,
            crate::sandbox::DEMO_ADMIN,
            "Offboard Admin",
            SYSADMIN,
        );
        for p in people {
            let name = p.full_name();
            match p.scenario {
                Some(Scenario::SlackOnlyContractor) => {}
                Some(Scenario::Scheduled) => {
                    let u = s.user(p.n, &p.email, &p.email, &name, STANDARD);
                    s.permset(&u, "Finance_Approver", "Finance Approver");
                    s.permset(&u, "Sales_Cloud_Einstein_User", "Sales Cloud Einstein User");
                    s.psl(&u, "Sales Cloud Einstein");
                    s.member(&u, G_FINANCE, "Regular", "Finance Team");
                    s.member(&u, G_INVOICES, "Queue", "Invoice Review Queue");
                    s.member(&u, G_ALL, "Regular", "All Employees");
                    s.package(&u, "050SB000000P01AAA", "dsfs");
                    s.package(&u, "050SB000000P02AAA", "APXTConga4");
                    s.session(&u, "UI", "Application", "203.0.113.24", 3);
                    s.oauth(&u, "Salesforce Mobile", 214, 90);
                    s.oauth(&u, "Outlook Integration", 1290, 200);
                    // Dana is the Default Case Owner in Support Settings:
                    // Salesforce refuses to deactivate her until that changes.
                    refusals.insert(
                        u.clone(),
                        Refusal {
                            code: "FIELD_INTEGRITY_EXCEPTION",
                            message: "You cannot deactivate a user who is the default owner of cases. Change the Default Case Owner in Support Settings, then deactivate the user.",
                        },
                    );
                }
                Some(Scenario::UrgentTermination) => {
                    let u = s.user(p.n, &p.email, &p.email, &name, SYSADMIN);
                    s.permset(&u, "Modify_All_Data", "Modify All Data");
                    s.permset(&u, "API_Enabled_Integration", "API Enabled Integration");
                    s.member(&u, G_ADMINS, "Regular", "Salesforce Admins");
                    s.member(&u, G_ALL, "Regular", "All Employees");
                    s.session(&u, "UI", "Application", "198.51.100.7", 1);
                    s.session(&u, "API", "Remote Access 2.0", "198.51.100.7", 0);
                    s.session(&u, "Content", "Application", "198.51.100.7", 1);
                    s.oauth(&u, "Salesforce CLI", 5120, 30);
                    s.oauth(&u, "Dataloader Partner", 88, 12);
                    s.oauth(&u, "Workbench", 17, 2);
                }
                Some(Scenario::Contractor) => {
                    // Two users share one email (a contractor account and a
                    // partner-portal account): the email alone is ambiguous.
                    let a = s.user(
                        p.n,
                        "lena.kowalski@example.com.contractor",
                        &p.email,
                        &name,
                        STANDARD,
                    );
                    s.member(&a, G_ALL, "Regular", "All Employees");
                    s.user(
                        1000 + p.n,
                        "lena.kowalski@example.com.portal",
                        &p.email,
                        &name,
                        CONTRACTOR,
                    );
                }
                Some(Scenario::Mover) => {
                    let u = s.user(p.n, &p.email, &p.email, &name, STANDARD);
                    s.member(&u, G_SALES, "Regular", "Sales EMEA");
                    s.member(&u, G_LEADS, "Queue", "Inbound Leads Queue");
                    s.member(&u, G_ALL, "Regular", "All Employees");
                    s.permset(&u, "Sales_Ops", "Sales Operations");
                }
                Some(Scenario::AlreadySuspended) => {
                    // Suspended in Google, still active here (an orphan).
                    let u = s.user(p.n, &p.email, &p.email, &name, STANDARD);
                    s.permset(&u, "Reports_Export", "Export Reports");
                    s.member(&u, G_ALL, "Regular", "All Employees");
                    s.session(&u, "API", "Remote Access 2.0", "192.0.2.50", 5);
                    s.oauth(&u, "Tableau Connector", 640, 120);
                }
                Some(Scenario::DifferentEmail) => {
                    // Salesforce knows Alex under an older address, which is
                    // one of the Google aliases.
                    let u = s.user(
                        p.n,
                        "achen@example.com.prod",
                        "achen@example.com",
                        &name,
                        STANDARD,
                    );
                    s.permset(&u, "Marketing_User", "Marketing User");
                    s.member(&u, G_ALL, "Regular", "All Employees");
                    s.session(&u, "UI", "Application", "203.0.113.80", 6);
                }
                None => {
                    let u = s.user(p.n, &p.email, &p.email, &name, STANDARD);
                    if p.n % 3 == 0 {
                        s.member(&u, G_ALL, "Regular", "All Employees");
                    }
                }
            }
        }
        for (name, _) in SCHEMA {
            s.objects.entry(name).or_default();
        }
        Self {
            objects: s.objects,
            access_tokens: HashSet::new(),
            locators: HashMap::new(),
            refusals,
            next_locator: 0,
            settings: Settings::default(),
            stats: Stats::default(),
        }
    }

    /// Adds the benchmark leaver: a standard user with the sessions, tokens,
    /// permission sets and group memberships of `b`.
    pub fn seed_bench(&mut self, b: &tenant::BenchShape) {
        let mut s = Seeder {
            objects: std::mem::take(&mut self.objects),
            n: 900_000,
        };
        let u = s.user(
            tenant::BenchShape::PERSON_N,
            &b.email,
            &b.email,
            "Bench Leaver",
            STANDARD,
        );
        for i in 0..b.sf_sessions {
            s.session(&u, "UI", "Application", "203.0.113.9", (i % 12) as i64);
        }
        for i in 0..b.sf_tokens {
            s.oauth(&u, &format!("Bench app {i}"), i as u64, (i % 60) as i64);
        }
        for i in 0..b.sf_permsets {
            s.permset(&u, &format!("Bench_Set_{i:04}"), &format!("Bench set {i}"));
        }
        for i in 0..b.sf_groups {
            let g = format!("00GSB{:010}AAA", 9000 + i);
            let (ty, name) = if i % 4 == 0 {
                ("Queue", format!("Bench queue {i}"))
            } else {
                ("Regular", format!("Bench group {i}"))
            };
            s.member(&u, &g, ty, &name);
        }
        self.objects = s.objects;
    }

    /// Current (settled, still listed) values of an object's rows, for tests.
    pub fn rows(&self, object: &str) -> Vec<BTreeMap<String, Value>> {
        self.objects
            .get(object)
            .map(|v| v.iter().map(|r| r.fields.clone()).collect())
            .unwrap_or_default()
    }

    /// The org's state of record for an object: rows not removed, with every
    /// accepted update applied whether or not reads show it yet (for
    /// benchmarks and tests that check an outcome, not what the API lists).
    pub fn live_rows(&self, object: &str) -> Vec<BTreeMap<String, Value>> {
        self.objects
            .get(object)
            .map(|v| {
                v.iter()
                    .filter(|r| r.removed_at.is_none())
                    .map(|r| {
                        let mut f = r.fields.clone();
                        for (k, val, _) in &r.pending {
                            f.insert(k.clone(), val.clone());
                        }
                        f
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every delete token in the org (tests check they never leak).
    pub fn delete_tokens(&self) -> Vec<String> {
        self.objects
            .get("OauthToken")
            .map(|v| {
                v.iter()
                    .filter_map(|r| r.str("DeleteToken").map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/services/oauth2/token", post(token))
        .route("/services/oauth2/revoke", post(revoke))
        .route("/services/data/", get(versions))
        .route("/services/data/{version}/limits", get(limits))
        .route("/services/data/{version}/query", get(query))
        .route("/services/data/{version}/query/{locator}", get(query_more))
        .route(
            "/services/data/{version}/sobjects/{object}/{id}",
            get(retrieve).patch(update).delete(delete),
        )
        .route("/_sandbox/salesforce", get(get_settings).put(put_settings))
        .route("/_sandbox/salesforce/expire-tokens", post(expire_tokens))
        .route("/_sandbox/salesforce/stats", get(get_stats))
}

// ----- answers -----------------------------------------------------------

/// Salesforce's REST error body.
pub fn sf_error(status: StatusCode, code: &str, message: &str, fields: &[&str]) -> Response {
    (
        status,
        Json(json!([{"message": message, "errorCode": code, "fields": fields}])),
    )
        .into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn with_limits(mut resp: Response, used: u64) -> Response {
    resp.headers_mut().insert(
        "sforce-limit-info",
        HeaderValue::from_str(&format!("api-usage={used}/{DAILY_API_LIMIT}")).expect("ascii"),
    );
    resp
}

/// Checks the bearer token and counts the call; the error is already a response.
fn authorize(s: &Shared, headers: &HeaderMap, version: &str) -> Result<u64, Box<Response>> {
    let mut st = s.salesforce.lock().expect("salesforce lock");
    st.stats.api_requests += 1;
    let used = st.stats.api_requests;
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("OAuth "))
        })
        .map(str::trim);
    if !token.is_some_and(|t| {
        st.access_tokens.contains(t) || super::twin_oauth::check_access(s, t).is_some()
    }) {
        return Err(Box::new(with_limits(
            sf_error(
                StatusCode::UNAUTHORIZED,
                "INVALID_SESSION_ID",
                "Session expired or invalid",
                &[],
            ),
            used,
        )));
    }
    if !VERSIONS.contains(&version) {
        return Err(Box::new(with_limits(resource_not_found(), used)));
    }
    Ok(used)
}

/// `GET /services/data/vNN.0/limits`: the org's allocations, as
/// `{"DailyApiRequests":{"Max","Remaining"}, ...}`.
async fn limits(
    AxState(s): AxState<Shared>,
    Path(version): Path<String>,
    headers: HeaderMap,
) -> Response {
    let used = match authorize(&s, &headers, &version) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let body = json!({
        "DailyApiRequests": {"Max": DAILY_API_LIMIT, "Remaining": DAILY_API_LIMIT.saturating_sub(used)},
        "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
        "DataStorageMB": {"Max": 5, "Remaining": 5},
    });
    with_limits(Json(body).into_response(), used)
}

async fn versions() -> Response {
    let list: Vec<Value> = VERSIONS
        .iter()
        .map(|v| json!({"version": &v[1..], "url": format!("/services/data/{v}")}))
        .collect();
    Json(list).into_response()
}

// ----- OAuth -------------------------------------------------------------

#[derive(Deserialize)]
struct JwtClaims {
    iss: String,
    sub: String,
    aud: Value,
    exp: u64,
}

async fn token(AxState(s): AxState<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    s.salesforce
        .lock()
        .expect("salesforce lock")
        .stats
        .token_requests += 1;
    // The device flow and refresh grants (shared with the login twin).
    if let Some(r) = super::twin_oauth::token_request(&s, &form) {
        return r;
    }
    if form.get("grant_type").map(String::as_str) != Some(crate::auth::jwt::GRANT_TYPE) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant type not supported",
        );
    }
    let Some(assertion) = form.get("assertion") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "assertion required",
        );
    };
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(super::DEMO_PUBLIC_KEY.as_bytes())
        .expect("the demo public key parses");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.validate_aud = false;
    v.leeway = 30;
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let claims = match jsonwebtoken::decode::<JwtClaims>(assertion, &key, &v) {
        Ok(d) => d.claims,
        Err(e) => {
            let why = match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "expired authorization code",
                _ => "invalid assertion",
            };
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why);
        }
    };
    if claims.iss != DEMO_CONSUMER_KEY {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client_id",
            "client identifier invalid",
        );
    }
    let aud_ok = match &claims.aud {
        Value::String(a) => a == &s.base_url,
        Value::Array(v) => v.iter().any(|a| a.as_str() == Some(&s.base_url)),
        _ => false,
    };
    if !aud_ok {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "audience is invalid",
        );
    }
    // Salesforce wants the assertion to expire within about 3 minutes.
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    if claims.exp > now + 300 {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "invalid assertion: exp is too far in the future",
        );
    }
    let mut st = s.salesforce.lock().expect("salesforce lock");
    let admin = st.objects["User"].iter().find(|r| {
        r.str("Username")
            .is_some_and(|u| u.eq_ignore_ascii_case(&claims.sub))
            && r.fields.get("IsActive") == Some(&Value::Bool(true))
            && r.str("Profile.Name") == Some(SYSADMIN.1)
    });
    let Some(admin_id) = admin.and_then(Row::id).map(str::to_string) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "user hasn't approved this consumer",
        );
    };
    let token = format!("{ORG_ID}!AQ{:032x}", rand::random::<u128>());
    st.access_tokens.insert(token.clone());
    st.stats.tokens_issued += 1;
    Json(json!({
        "access_token": token,
        "scope": "api id",
        "instance_url": s.base_url,
        "id": format!("{}/id/{ORG_ID}/{admin_id}", s.base_url),
        "token_type": "Bearer",
        "issued_at": chrono::Utc::now().timestamp_millis().to_string(),
    }))
    .into_response()
}

async fn revoke(
    AxState(s): AxState<Shared>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(t) = form.get("token").filter(|t| !t.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_token_type",
            "token type not supported",
        );
    };
    let mut st = s.salesforce.lock().expect("salesforce lock");
    if st.access_tokens.remove(t) {
        st.stats.revocations += 1;
        return StatusCode::OK.into_response();
    }
    let row = st.objects.get_mut("OauthToken").and_then(|rows| {
        rows.iter_mut()
            .find(|r| r.removed_at.is_none() && r.str("DeleteToken") == Some(t.as_str()))
    });
    match row {
        Some(r) => {
            r.removed_at = Some(Instant::now());
            st.stats.revocations += 1;
            StatusCode::OK.into_response()
        }
        None => oauth_error(StatusCode::BAD_REQUEST, "invalid_token", "invalid token"),
    }
}

// ----- SOQL --------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Eq,
    Comma,
    LParen,
    RParen,
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Bool(bool),
    Null,
    Num(String),
}

#[derive(Debug, Clone)]
enum Expr {
    Cmp(String, Lit),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

#[derive(Debug)]
struct Soql {
    fields: Vec<String>,
    object: &'static str,
    filter: Option<Expr>,
}

/// A SOQL error: (HTTP status, errorCode, message).
type SoqlError = (StatusCode, &'static str, String);

fn malformed(msg: impl Into<String>) -> SoqlError {
    (StatusCode::BAD_REQUEST, "MALFORMED_QUERY", msg.into())
}

fn lex(q: &str) -> Result<Vec<Tok>, SoqlError> {
    let mut out = Vec::new();
    let mut it = q.chars().peekable();
    while let Some(&c) = it.peek() {
        match c {
            c if c.is_whitespace() => {
                it.next();
            }
            '=' => {
                it.next();
                out.push(Tok::Eq);
            }
            ',' => {
                it.next();
                out.push(Tok::Comma);
            }
            '(' => {
                it.next();
                out.push(Tok::LParen);
            }
            ')' => {
                it.next();
                out.push(Tok::RParen);
            }
            '\'' => {
                it.next();
                let mut s = String::new();
                loop {
                    match it.next() {
                        None => return Err(malformed("unterminated string literal")),
                        Some('\'') => break,
                        Some('\\') => match it.next() {
                            Some('\'') => s.push('\''),
                            Some('"') => s.push('"'),
                            Some('\\') => s.push('\\'),
                            Some('n') => s.push('\n'),
                            Some('r') => s.push('\r'),
                            Some('t') => s.push('\t'),
                            Some('b') => s.push('\u{8}'),
                            Some('f') => s.push('\u{c}'),
                            _ => {
                                return Err(malformed(
                                    "Invalid string literal: illegal escape sequence",
                                ));
                            }
                        },
                        Some(ch) => s.push(ch),
                    }
                }
                out.push(Tok::Str(s));
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' => {
                let mut w = String::new();
                while let Some(&ch) = it.peek() {
                    if ch.is_ascii_alphanumeric() || ch == '_' || ch == '.' || ch == '-' {
                        w.push(ch);
                        it.next();
                    } else {
                        break;
                    }
                }
                out.push(Tok::Word(w));
            }
            other => return Err(malformed(format!("unexpected token: '{other}'"))),
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    object: &'static str,
    schema: &'a [&'static str],
}

fn keyword(t: Option<&Tok>, kw: &str) -> bool {
    matches!(t, Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "<EOF>".into(),
        Some(Tok::Word(w)) => w.clone(),
        Some(Tok::Str(s)) => format!("'{s}'"),
        Some(Tok::Eq) => "=".into(),
        Some(Tok::Comma) => ",".into(),
        Some(Tok::LParen) => "(".into(),
        Some(Tok::RParen) => ")".into(),
    }
}

fn object_schema(name: &str) -> Option<(&'static str, &'static [&'static str])> {
    SCHEMA
        .iter()
        .find(|(o, _)| o.eq_ignore_ascii_case(name))
        .map(|(o, f)| (*o, *f))
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn bump(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn field(&self, name: &str) -> Result<String, SoqlError> {
        self.schema
            .iter()
            .find(|f| f.eq_ignore_ascii_case(name))
            .map(|f| f.to_string())
            .ok_or_else(|| {
                (
                    StatusCode::BAD_REQUEST,
                    "INVALID_FIELD",
                    format!(
                        "No such column '{name}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name.",
                        self.object
                    ),
                )
            })
    }

    fn expr(&mut self) -> Result<Expr, SoqlError> {
        let first = self.factor()?;
        let mut op: Option<&'static str> = None;
        let mut parts = vec![first];
        loop {
            let this = if keyword(self.peek(), "AND") {
                "AND"
            } else if keyword(self.peek(), "OR") {
                "OR"
            } else {
                break;
            };
            if op.is_some_and(|o| o != this) {
                // SOQL needs parentheses to mix AND and OR.
                return Err(malformed(format!("unexpected token: '{this}'")));
            }
            op = Some(this);
            self.bump();
            parts.push(self.factor()?);
        }
        Ok(match op {
            None => parts.pop().expect("one part"),
            Some("AND") => Expr::And(parts),
            Some(_) => Expr::Or(parts),
        })
    }

    fn factor(&mut self) -> Result<Expr, SoqlError> {
        if self.peek() == Some(&Tok::LParen) {
            self.bump();
            let e = self.expr()?;
            if self.bump() != Some(Tok::RParen) {
                return Err(malformed("expecting ')'"));
            }
            return Ok(e);
        }
        let name = match self.bump() {
            Some(Tok::Word(w)) => w,
            t => {
                return Err(malformed(format!(
                    "unexpected token: '{}'",
                    describe(t.as_ref())
                )));
            }
        };
        let field = self.field(&name)?;
        if keyword(self.peek(), "IN") {
            // `Email IN ('a', 'b')`: any of the values.
            self.bump();
            if self.bump() != Some(Tok::LParen) {
                return Err(malformed("expecting '(' after IN"));
            }
            let mut any = Vec::new();
            loop {
                any.push(Expr::Cmp(field.clone(), self.literal(&field)?));
                match self.bump() {
                    Some(Tok::Comma) => {}
                    Some(Tok::RParen) => break,
                    t => {
                        return Err(malformed(format!(
                            "unexpected token: '{}'",
                            describe(t.as_ref())
                        )));
                    }
                }
            }
            return Ok(Expr::Or(any));
        }
        if self.bump() != Some(Tok::Eq) {
            return Err(malformed(format!(
                "unexpected token after '{name}': only '=' and IN are supported"
            )));
        }
        let lit = self.literal(&field)?;
        Ok(Expr::Cmp(field, lit))
    }

    /// A literal compared with `field`, of the field's type.
    fn literal(&mut self, field: &str) -> Result<Lit, SoqlError> {
        let lit = match self.bump() {
            Some(Tok::Str(s)) => Lit::Str(s),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Lit::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Lit::Bool(false),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Lit::Null,
            Some(Tok::Word(w))
                if w.chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == '-') =>
            {
                Lit::Num(w)
            }
            t => {
                return Err(malformed(format!(
                    "unexpected token: '{}'",
                    describe(t.as_ref())
                )));
            }
        };
        let boolean = BOOLEAN_FIELDS.contains(&field);
        let number = NUMBER_FIELDS.contains(&field);
        let ok = match &lit {
            Lit::Null => true,
            Lit::Bool(_) => boolean,
            Lit::Num(_) => number,
            Lit::Str(_) => !boolean && !number,
        };
        if !ok {
            return Err((
                StatusCode::BAD_REQUEST,
                "INVALID_QUERY_FILTER_OPERATOR",
                format!(
                    "value of filter criterion for field '{field}' must be of the field's type"
                ),
            ));
        }
        Ok(lit)
    }
}

fn parse_soql(q: &str) -> Result<Soql, SoqlError> {
    let toks = lex(q)?;
    // Find the object first: field names are checked against it.
    let from = toks
        .iter()
        .position(|t| keyword(Some(t), "FROM"))
        .ok_or_else(|| malformed("unexpected token: <EOF>, expecting FROM"))?;
    let object_name = match toks.get(from + 1) {
        Some(Tok::Word(w)) => w.clone(),
        t => return Err(malformed(format!("unexpected token: '{}'", describe(t)))),
    };
    let (object, schema) = object_schema(&object_name).ok_or_else(|| {
        (
            StatusCode::BAD_REQUEST,
            "INVALID_TYPE",
            format!("sObject type '{object_name}' is not supported."),
        )
    })?;
    let mut p = Parser {
        toks,
        pos: 0,
        object,
        schema,
    };
    if !keyword(p.peek(), "SELECT") {
        return Err(malformed(format!(
            "unexpected token: '{}'",
            describe(p.peek())
        )));
    }
    p.bump();
    let mut fields = Vec::new();
    loop {
        match p.bump() {
            Some(Tok::Word(w)) if !w.eq_ignore_ascii_case("FROM") => fields.push(p.field(&w)?),
            t => {
                return Err(malformed(format!(
                    "unexpected token: '{}'",
                    describe(t.as_ref())
                )));
            }
        }
        match p.peek() {
            Some(Tok::Comma) => {
                p.bump();
            }
            _ => break,
        }
    }
    if !keyword(p.bump().as_ref(), "FROM") {
        return Err(malformed("expecting FROM"));
    }
    p.bump(); // the object
    let filter = if keyword(p.peek(), "WHERE") {
        p.bump();
        Some(p.expr()?)
    } else {
        None
    };
    if let Some(t) = p.peek() {
        // ORDER BY, LIMIT, GROUP BY, ... are not emulated.
        return Err(malformed(format!(
            "unexpected token: '{}'",
            describe(Some(t))
        )));
    }
    Ok(Soql {
        fields,
        object,
        filter,
    })
}

fn matches(e: &Expr, row: &Row) -> bool {
    match e {
        Expr::And(v) => v.iter().all(|e| matches(e, row)),
        Expr::Or(v) => v.iter().any(|e| matches(e, row)),
        Expr::Cmp(f, lit) => {
            let v = row.fields.get(f).unwrap_or(&Value::Null);
            match (lit, v) {
                (Lit::Null, v) => v.is_null(),
                // Text comparison in SOQL is case-insensitive.
                (Lit::Str(s), Value::String(x)) => s.eq_ignore_ascii_case(x),
                (Lit::Bool(b), Value::Bool(x)) => b == x,
                (Lit::Num(n), Value::Number(x)) => n.parse::<f64>().ok() == x.as_f64(),
                _ => false,
            }
        }
    }
}

/// A record as the REST API renders it, with only the selected fields.
fn render(object: &str, version: &str, row: &Row, fields: &[String]) -> Value {
    let mut m = Map::new();
    let mut attrs = Map::new();
    attrs.insert("type".into(), json!(object));
    if let Some(id) = row.id() {
        attrs.insert(
            "url".into(),
            json!(format!("/services/data/{version}/sobjects/{object}/{id}")),
        );
    }
    m.insert("attributes".into(), Value::Object(attrs));
    for f in fields {
        let v = row.fields.get(f).cloned().unwrap_or(Value::Null);
        match f.split_once('.') {
            None => {
                m.insert(f.clone(), v);
            }
            Some((rel, leaf)) => {
                let (ty, idf) = RELATIONS
                    .iter()
                    .find(|(r, _, _)| *r == rel)
                    .map(|(_, t, i)| (*t, *i))
                    .unwrap_or((rel, "Id"));
                let Some(rid) = row.str(idf) else {
                    m.insert(rel.to_string(), Value::Null);
                    continue;
                };
                let entry = m.entry(rel.to_string()).or_insert_with(|| {
                    json!({"attributes": {"type": ty, "url": format!("/services/data/{version}/sobjects/{ty}/{rid}")}})
                });
                if let Value::Object(o) = entry {
                    o.insert(leaf.to_string(), v);
                }
            }
        }
    }
    Value::Object(m)
}

#[derive(Deserialize)]
struct QueryParams {
    q: Option<String>,
}

fn requested_batch(headers: &HeaderMap) -> usize {
    headers
        .get("sforce-query-options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("batchSize"))
                .and_then(|(_, n)| n.trim().parse::<usize>().ok())
        })
        .map(|n| n.clamp(MIN_BATCH, MAX_BATCH))
        .unwrap_or(MAX_BATCH)
}

async fn query(
    AxState(s): AxState<Shared>,
    Path(version): Path<String>,
    headers: HeaderMap,
    Query(params): Query<QueryParams>,
) -> Response {
    let used = match authorize(&s, &headers, &version) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let Some(q) = params.q.filter(|q| !q.trim().is_empty()) else {
        return with_limits(
            sf_error(
                StatusCode::BAD_REQUEST,
                "MALFORMED_QUERY",
                "A query string has to be specified",
                &[],
            ),
            used,
        );
    };
    let soql = match parse_soql(&q) {
        Ok(p) => p,
        Err((st, code, msg)) => return with_limits(sf_error(st, code, &msg, &[]), used),
    };
    let delay = s.consistency();
    let mut st = s.salesforce.lock().expect("salesforce lock");
    let mut records = Vec::new();
    if let Some(rows) = st.objects.get_mut(soql.object) {
        for row in rows.iter_mut() {
            row.settle(delay);
            if !s.still_listed(row.removed_at) {
                continue;
            }
            if soql.filter.as_ref().is_none_or(|f| matches(f, row)) {
                records.push(render(soql.object, &version, row, &soql.fields));
            }
        }
    }
    let batch = st
        .settings
        .batch_size
        .map(|b| b.clamp(1, MAX_BATCH))
        .unwrap_or(MAX_BATCH)
        .min(requested_batch(&headers));
    st.next_locator += 1;
    let locator = format!("01gSB{:010}AAA", st.next_locator);
    let body = page(&mut st, &version, &locator, records, 0, batch);
    with_limits(Json(body).into_response(), used)
}

fn page(
    st: &mut State,
    version: &str,
    locator: &str,
    records: Vec<Value>,
    offset: usize,
    batch: usize,
) -> Value {
    let total = records.len();
    let end = (offset + batch).min(total);
    let chunk: Vec<Value> = records[offset.min(total)..end].to_vec();
    let done = end >= total;
    let mut body = json!({"totalSize": total, "done": done, "records": chunk});
    if done {
        st.locators.remove(locator);
    } else {
        let next = match &st.settings.foreign_next_url {
            Some(u) => u.clone(),
            None => format!("/services/data/{version}/query/{locator}-{end}"),
        };
        body["nextRecordsUrl"] = json!(next);
        st.locators.insert(locator.to_string(), (records, batch));
    }
    body
}

async fn query_more(
    AxState(s): AxState<Shared>,
    Path((version, locator)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let used = match authorize(&s, &headers, &version) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let invalid = || {
        with_limits(
            sf_error(
                StatusCode::BAD_REQUEST,
                "INVALID_QUERY_LOCATOR",
                "invalid query locator",
                &[],
            ),
            used,
        )
    };
    let Some((base, offset)) = locator.rsplit_once('-') else {
        return invalid();
    };
    let Ok(offset) = offset.parse::<usize>() else {
        return invalid();
    };
    let mut st = s.salesforce.lock().expect("salesforce lock");
    let Some((records, batch)) = st.locators.get(base).cloned() else {
        return invalid();
    };
    if offset == 0 || offset >= records.len() {
        return invalid();
    }
    let body = page(&mut st, &version, base, records, offset, batch);
    with_limits(Json(body).into_response(), used)
}

// ----- sObject rows ------------------------------------------------------

/// Whether the assignee of this PermissionSetLicenseAssign still has a
/// permission set assigned (not owned by a profile).
fn psl_in_use(st: &State, id: &str) -> bool {
    let Some(assignee) = st
        .objects
        .get("PermissionSetLicenseAssign")
        .and_then(|v| v.iter().find(|r| r.id() == Some(id)))
        .and_then(|r| r.str("AssigneeId"))
    else {
        return false;
    };
    st.objects.get("PermissionSetAssignment").is_some_and(|v| {
        v.iter().any(|a| {
            a.removed_at.is_none()
                && a.str("AssigneeId") == Some(assignee)
                && a.fields.get("PermissionSet.IsOwnedByProfile") != Some(&Value::Bool(true))
        })
    })
}

fn find_row<'a>(st: &'a mut State, object: &str, id: &str) -> Option<&'a mut Row> {
    st.objects
        .get_mut(object)?
        .iter_mut()
        .find(|r| r.id() == Some(id))
}

fn missing(deleted: bool) -> Response {
    if deleted {
        sf_error(
            StatusCode::NOT_FOUND,
            "ENTITY_IS_DELETED",
            "entity is deleted",
            &[],
        )
    } else {
        resource_not_found()
    }
}

async fn retrieve(
    AxState(s): AxState<Shared>,
    Path((version, object, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let used = match authorize(&s, &headers, &version) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let Some((object, fields)) = object_schema(&object) else {
        return with_limits(resource_not_found(), used);
    };
    let delay = s.consistency();
    let mut st = s.salesforce.lock().expect("salesforce lock");
    let resp = match find_row(&mut st, object, &id) {
        Some(r) if r.removed_at.is_none() => {
            r.settle(delay);
            let fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
            Json(render(object, &version, r, &fields)).into_response()
        }
        Some(_) => missing(true),
        None => missing(false),
    };
    with_limits(resp, used)
}

async fn update(
    AxState(s): AxState<Shared>,
    Path((version, object, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let used = match authorize(&s, &headers, &version) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let resp = update_inner(&s, &object, &id, &body);
    with_limits(resp, used)
}

fn update_inner(s: &Shared, object: &str, id: &str, body: &[u8]) -> Response {
    let Some((object, _)) = object_schema(object) else {
        return resource_not_found();
    };
    let Ok(Value::Object(changes)) = serde_json::from_slice::<Value>(body) else {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            "The request body is not a JSON object",
            &[],
        );
    };
    for (k, v) in &changes {
        if !UPDATABLE.contains(&(object, k.as_str())) {
            return sf_error(
                StatusCode::BAD_REQUEST,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                &format!(
                    "Unable to create/update fields: {k}. Please check the security settings of this field and verify that it is read/write for your profile or permission set."
                ),
                &[k.as_str()],
            );
        }
        if !v.is_boolean() {
            return sf_error(
                StatusCode::BAD_REQUEST,
                "JSON_PARSER_ERROR",
                &format!("Cannot deserialize instance of boolean from {v} value"),
                &[],
            );
        }
    }
    let delay = s.consistency();
    let mut st = s.salesforce.lock().expect("salesforce lock");
    let refusal = st.refusals.get(id).cloned();
    let Some(row) = find_row(&mut st, object, id) else {
        return missing(false);
    };
    row.settle(delay);
    if let Some(r) =
        refusal.filter(|_| object == "User" && changes.get("IsActive") == Some(&Value::Bool(false)))
    {
        return sf_error(StatusCode::BAD_REQUEST, r.code, r.message, &[]);
    }
    let now = Instant::now();
    for (k, v) in changes {
        row.pending.push((k, v, now));
    }
    row.settle(delay);
    StatusCode::NO_CONTENT.into_response()
}

async fn delete(
    AxState(s): AxState<Shared>,
    Path((version, object, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let used = match authorize(&s, &headers, &version) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let Some((object, _)) = object_schema(&object) else {
        return with_limits(resource_not_found(), used);
    };
    if !DELETABLE.contains(&object) {
        return with_limits(
            sf_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "HTTP Method 'DELETE' not allowed. Allowed are HEAD,GET,PATCH",
                &[],
            ),
            used,
        );
    }
    let mut st = s.salesforce.lock().expect("salesforce lock");
    let licence_in_use = object == "PermissionSetLicenseAssign" && psl_in_use(&st, &id);
    let resp = match find_row(&mut st, object, &id) {
        None => missing(false),
        Some(r) if r.removed_at.is_some() => missing(true),
        Some(r) if r.fields.get("PermissionSet.IsOwnedByProfile") == Some(&Value::Bool(true)) => {
            sf_error(
                StatusCode::BAD_REQUEST,
                "DELETE_FAILED",
                "You can't delete a permission set assignment that's owned by a profile.",
                &[],
            )
        }
        Some(r) if r.removed_at.is_none() && licence_in_use => {
            // Salesforce refuses while permission sets that need the licence
            // are assigned (the emulator does not model which set needs which
            // licence: any assigned permission set blocks).
            sf_error(
                StatusCode::BAD_REQUEST,
                "DELETE_FAILED",
                "This user is assigned permission sets that require this permission set license. Remove those permission set assignments first.",
                &[],
            )
        }
        Some(r) => {
            r.removed_at = Some(Instant::now());
            StatusCode::NO_CONTENT.into_response()
        }
    };
    with_limits(resp, used)
}

// ----- sandbox controls --------------------------------------------------

async fn get_settings(AxState(s): AxState<Shared>) -> Json<Settings> {
    Json(
        s.salesforce
            .lock()
            .expect("salesforce lock")
            .settings
            .clone(),
    )
}

async fn put_settings(AxState(s): AxState<Shared>, Json(new): Json<Settings>) -> Json<Settings> {
    s.salesforce.lock().expect("salesforce lock").settings = new.clone();
    Json(new)
}

/// Ends every issued access token, as a session timeout would.
async fn expire_tokens(AxState(s): AxState<Shared>) -> StatusCode {
    s.salesforce
        .lock()
        .expect("salesforce lock")
        .access_tokens
        .clear();
    StatusCode::NO_CONTENT
}

async fn get_stats(AxState(s): AxState<Shared>) -> Json<Stats> {
    Json(s.salesforce.lock().expect("salesforce lock").stats.clone())
}

/// Salesforce's answer for an object or record that does not exist.
fn resource_not_found() -> Response {
    sf_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "The requested resource does not exist",
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_driver_queries() {
        let q = parse_soql(
            "SELECT Id,Username,Email,Name,IsActive,UserType,ProfileId,Profile.Name,LastLoginDate FROM User WHERE Username='o\\'hara@x.com' OR Email='o\\'hara@x.com'",
        )
        .unwrap();
        assert_eq!(q.object, "User");
        assert_eq!(q.fields.len(), 9);
        match q.filter.unwrap() {
            Expr::Or(v) => assert!(
                matches!(&v[0], Expr::Cmp(f, Lit::Str(s)) if f == "Username" && s == "o'hara@x.com")
            ),
            e => panic!("{e:?}"),
        }
        let q = parse_soql("select Id from PermissionSetAssignment where AssigneeId = '005' and PermissionSet.IsOwnedByProfile = false").unwrap();
        assert!(matches!(q.filter, Some(Expr::And(_))));
    }

    #[test]
    fn rejects_what_it_does_not_emulate() {
        for bad in [
            "SELECT Id FROM User WHERE Email = 'a' OR Email = 'b' AND IsActive = true",
            "SELECT Id FROM User LIMIT 5",
            "SELECT Id FROM User WHERE Email != 'a'",
            "SELECT Id FROM User WHERE Email = 'a\\q'",
            "SELECT Id FROM User WHERE Email = 'open",
            "DELETE FROM User",
        ] {
            let e = parse_soql(bad).unwrap_err();
            assert_eq!(e.1, "MALFORMED_QUERY", "{bad}");
        }
        assert_eq!(
            parse_soql("SELECT Password FROM User").unwrap_err().1,
            "INVALID_FIELD"
        );
        assert_eq!(
            parse_soql("SELECT Id FROM Account").unwrap_err().1,
            "INVALID_TYPE"
        );
        assert_eq!(
            parse_soql("SELECT Id FROM User WHERE IsActive = 'true'")
                .unwrap_err()
                .1,
            "INVALID_QUERY_FILTER_OPERATOR"
        );
    }

    #[test]
    fn bench_leaver_has_the_shape_asked_and_the_demo_org_none() {
        let shape = tenant::BenchShape {
            sf_sessions: 7,
            sf_tokens: 5,
            sf_permsets: 4,
            sf_groups: 3,
            ..tenant::BenchShape::default()
        };
        let plain = State::seed();
        let mut st = State::seed();
        st.seed_bench(&shape);
        let id = user_id(tenant::BenchShape::PERSON_N);
        let of = |st: &State, object: &str, field: &str| {
            st.rows(object)
                .iter()
                .filter(|r| r[field] == id.as_str())
                .count()
        };
        assert_eq!(of(&plain, "User", "Id"), 0);
        assert_eq!(of(&st, "User", "Id"), 1);
        assert_eq!(of(&st, "AuthSession", "UsersId"), 7);
        assert_eq!(of(&st, "OauthToken", "UserId"), 5);
        // Plus the profile's own permission set.
        assert_eq!(of(&st, "PermissionSetAssignment", "AssigneeId"), 5);
        assert_eq!(of(&st, "GroupMember", "UserOrGroupId"), 3);
        let ids: std::collections::HashSet<String> = st
            .objects
            .values()
            .flatten()
            .filter_map(|r| r.str("Id").map(str::to_string))
            .collect();
        let rows = st
            .objects
            .values()
            .flatten()
            .filter(|r| r.str("Id").is_some())
            .count();
        assert_eq!(ids.len(), rows, "record ids stay unique");
    }

    #[test]
    fn seed_has_the_scenarios() {
        let st = State::seed();
        let users = st.rows("User");
        let lena: Vec<_> = users
            .iter()
            .filter(|u| u["Email"] == "lena.kowalski@example.com")
            .collect();
        assert_eq!(lena.len(), 2);
        assert!(users.iter().any(|u| u["Email"] == "achen@example.com"));
        assert!(
            !users
                .iter()
                .any(|u| u["Email"] == "sam.okafor@partner.example.net")
        );
        assert_eq!(st.refusals.len(), 1);
        assert!(st.delete_tokens().len() >= 6);
    }
}
