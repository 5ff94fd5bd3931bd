//! The SCIM 2.0 twin: an RFC 7643/7644 service provider, one tenant per
//! app on its own path prefix (`/scim2/{app}/v2/...`) with its own bearer
//! token. `/Users`, `/Groups` (GET list with `filter`, `startIndex`,
//! `count`, `attributes`; GET, PUT, PATCH, DELETE one; POST), and
//! `/ServiceProviderConfig`; `/Schemas`, `/ResourceTypes`, `/Bulk` and
//! `/Me` in [`super::twin_discovery`]. Filters with every operator and
//! value paths; PatchOp with any `op` case; `meta.version` ETags and 412
//! on a stale `If-Match`; the RFC error envelope (`status` as a string,
//! `scimType`).
//!
//! [`Quirks`] switch on the deviations real services show, per tenant:
//! case-sensitive `eq`, 204 with no body on a PATCH that changes nothing,
//! no `User.groups`, a `totalResults` that lies, `attributes=` dropping
//! `schemas`, no `members[...]` filter on `/Groups`, no ETags, PATCH not
//! implemented, a ServiceProviderConfig that misreports PATCH, bulk limits.
//! They are read and set on a running sandbox through
//! `GET`/`PUT /_sandbox/scim2/{app}`.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::filter::{self, Filter, get_ci};
use crate::sandbox::Shared;
use crate::sandbox::tenant;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The demo apps and their bearer tokens (not secrets).
pub const DEMO_APPS: &[&str] = &["zoom", "miro"];

/// The demo bearer token of a tenant (not a secret).
pub fn demo_token(app: &str) -> String {
    format!("scim2-{app}-sandbox-demo-token")
}

/// Deviations from RFC 7644 that real services show, per tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Quirks {
    /// `eq` (and every string comparison) is case-sensitive.
    pub case_exact_filter: bool,
    /// A PATCH that changes nothing answers 204 with no body.
    pub no_content_on_noop_patch: bool,
    /// Users carry no `groups` attribute.
    pub omit_user_groups: bool,
    /// `totalResults` is this much larger than the truth.
    pub inflate_total_results: usize,
    /// `attributes=` returns only the named attributes, without `schemas`.
    pub attributes_drop_schemas: bool,
    /// `/Groups?filter=members[...]` answers 400 invalidFilter.
    pub no_member_filter: bool,
    /// ETags (`meta.version`, `If-Match`) supported.
    pub etags: bool,
    /// PATCH answers 501 (PUT only).
    pub no_patch: bool,
    /// `/ServiceProviderConfig` says PATCH is not supported while it is.
    pub misreport_patch: bool,
    /// The most items a page holds, whatever `count` asks.
    pub max_page: usize,
    /// `startIndex` ignored: every page is the first.
    pub ignore_start_index: bool,
    /// The next this many writes find the resource changed by another
    /// client just before them (its version moves on, so a stale
    /// `If-Match` gets 412).
    pub concurrent_writes: u32,
    /// `/Bulk`: the most operations one request may carry (0: bulk not
    /// supported, 501).
    pub bulk_max_operations: usize,
    /// `/Bulk`: the largest request body, in bytes.
    pub bulk_max_payload_size: usize,
}

impl Default for Quirks {
    fn default() -> Self {
        Self {
            case_exact_filter: false,
            no_content_on_noop_patch: false,
            omit_user_groups: false,
            inflate_total_results: 0,
            attributes_drop_schemas: false,
            no_member_filter: false,
            etags: true,
            no_patch: false,
            misreport_patch: false,
            max_page: 100,
            ignore_start_index: false,
            concurrent_writes: 0,
            bulk_max_operations: 1000,
            bulk_max_payload_size: 1_048_576,
        }
    }
}

/// One stored resource: its attributes (no `id`, `meta`, `schemas`,
/// `groups`: those are rendered) and its version.
#[derive(Debug, Clone)]
pub struct Resource {
    pub id: String,
    pub attrs: Map<String, Value>,
    pub version: u64,
}

/// One app's tenant.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub token: String,
    pub quirks: Quirks,
    pub users: Vec<Resource>,
    pub groups: Vec<Resource>,
    next: u64,
}

impl Tenant {
    pub fn new(app: &str) -> Self {
        Self {
            token: demo_token(app),
            quirks: Quirks::default(),
            users: Vec::new(),
            groups: Vec::new(),
            next: 1,
        }
    }

    fn new_id(&mut self, prefix: &str) -> String {
        let id = format!("{prefix}{:06}", self.next);
        self.next += 1;
        id
    }

    /// Adds a user; returns its id.
    pub fn add_user(&mut self, user_name: &str, email: &str, given: &str, family: &str) -> String {
        let id = self.new_id("u");
        let attrs = json!({
            "userName": user_name,
            "externalId": email,
            "name": {"givenName": given, "familyName": family, "formatted": format!("{given} {family}")},
            "displayName": format!("{given} {family}"),
            "active": true,
            "emails": [{"value": email, "type": "work", "primary": true}],
        });
        self.users.push(Resource {
            id: id.clone(),
            attrs: attrs.as_object().cloned().unwrap_or_default(),
            version: 1,
        });
        id
    }

    /// Adds a group with these members; returns its id.
    pub fn add_group(&mut self, name: &str, members: &[&str]) -> String {
        let id = self.new_id("g");
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        self.groups.push(Resource {
            id: id.clone(),
            attrs: json!({"displayName": name, "members": members})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            version: 1,
        });
        id
    }

    pub fn user_id(&self, user_name: &str) -> Option<String> {
        self.users
            .iter()
            .find(|u| u.attrs.get("userName").and_then(Value::as_str) == Some(user_name))
            .map(|u| u.id.clone())
    }

    pub fn group_id(&self, name: &str) -> Option<String> {
        self.groups
            .iter()
            .find(|g| g.attrs.get("displayName").and_then(Value::as_str) == Some(name))
            .map(|g| g.id.clone())
    }

    /// Sets a multi-valued attribute (`roles`, `entitlements`) of a user.
    pub fn set_values(&mut self, user: &str, attr: &str, values: &[&str]) {
        if let Some(u) = self.users.iter_mut().find(|u| u.id == user) {
            let v: Vec<Value> = values
                .iter()
                .map(|v| json!({"value": v, "display": v}))
                .collect();
            u.attrs.insert(attr.to_string(), Value::Array(v));
        }
    }

    pub fn is_member(&self, group: &str, user: &str) -> bool {
        self.groups.iter().any(|g| {
            g.id == group
                && g.attrs
                    .get("members")
                    .and_then(Value::as_array)
                    .is_some_and(|m| m.iter().any(|x| x["value"] == user))
        })
    }

    pub fn user_active(&self, user: &str) -> Option<bool> {
        self.users
            .iter()
            .find(|u| u.id == user)
            .map(|u| u.attrs.get("active") == Some(&Value::Bool(true)))
    }
}

/// Every SCIM app the sandbox serves, by path name.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub apps: BTreeMap<String, Tenant>,
}

impl State {
    /// The demo company's two SCIM apps. Zoom: a conforming server. Miro:
    /// case-sensitive `eq` with user names as HR typed them, no
    /// `User.groups`, 204 on a no-op PATCH. Tom Becker (the orphan) is
    /// still active in both.
    pub fn seed() -> Self {
        Self::seed_people(tenant::people())
    }

    /// The tenants with these people (the demo's, and a bench tenant's).
    pub fn seed_people(people: Vec<tenant::TenantPerson>) -> Self {
        let mut zoom = Tenant::new("zoom");
        let mut miro = Tenant::new("miro");
        miro.quirks.case_exact_filter = true;
        miro.quirks.omit_user_groups = true;
        miro.quirks.no_content_on_noop_patch = true;
        for (i, p) in people.iter().enumerate() {
            let leaver = p.scenario.is_some();
            let sam = p.scenario == Some(tenant::Scenario::SlackOnlyContractor);
            if (leaver && !sam) || i % 3 == 0 {
                zoom.add_user(&p.email, &p.email, &p.first, &p.last);
            }
            if leaver && !sam || i % 5 == 0 {
                // Miro keeps the case HR typed: First.Last@domain.
                let (local, domain) = p.email.split_once('@').unwrap_or((&p.email, ""));
                let cased: Vec<String> = local
                    .split('.')
                    .map(|w| {
                        let mut c = w.chars();
                        c.next()
                            .map(|f| f.to_uppercase().chain(c).collect())
                            .unwrap_or_default()
                    })
                    .collect();
                let user_name = format!("{}@{domain}", cased.join("."));
                miro.add_user(&user_name, &p.email, &p.first, &p.last);
            }
        }
        let id = |t: &Tenant, email: &str| {
            t.users
                .iter()
                .find(|u| {
                    u.attrs["emails"][0]["value"]
                        .as_str()
                        .is_some_and(|e| e == email)
                })
                .map(|u| u.id.clone())
                .unwrap_or_default()
        };
        let everyone: Vec<String> = zoom.users.iter().map(|u| u.id.clone()).collect();
        let all: Vec<&str> = everyone.iter().map(String::as_str).collect();
        zoom.add_group("All staff", &all);
        let dana = id(&zoom, "dana.whitfield@example.com");
        let marcus = id(&zoom, "marcus.reyes@example.com");
        let tom = id(&zoom, "tom.becker@example.com");
        let priya = id(&zoom, "priya.natarajan@example.com");
        zoom.add_group("Webinar hosts", &[&dana, &marcus, &priya]);
        zoom.add_group("Finance", &[&dana]);
        zoom.add_group("Sales", &[&tom, &priya]);
        zoom.set_values(&marcus, "roles", &["Admin"]);
        zoom.set_values(&dana, "entitlements", &["Large Meetings"]);
        zoom.set_values(&tom, "entitlements", &["Webinar 500"]);

        let dana = id(&miro, "dana.whitfield@example.com");
        let tom = id(&miro, "tom.becker@example.com");
        let marcus = id(&miro, "marcus.reyes@example.com");
        let alex = id(&miro, "alex.chen@example.com");
        miro.add_group("Design board editors", &[&dana, &tom, &alex]);
        miro.add_group("Company admins", &[&marcus]);
        miro.set_values(&marcus, "roles", &["Company Admin"]);
        let mut apps = BTreeMap::new();
        apps.insert("zoom".to_string(), zoom);
        apps.insert("miro".to_string(), miro);
        State { apps }
    }
}

pub fn routes() -> Router<Shared> {
    use super::twin_discovery as d;
    Router::new()
        .route(
            "/scim2/{app}/v2/ServiceProviderConfig",
            get(service_provider_config),
        )
        .route("/scim2/{app}/v2/Schemas", get(d::list_schemas))
        .route("/scim2/{app}/v2/Schemas/{id}", get(d::get_schema))
        .route("/scim2/{app}/v2/ResourceTypes", get(d::list_resource_types))
        .route(
            "/scim2/{app}/v2/ResourceTypes/{id}",
            get(d::get_resource_type),
        )
        .route("/scim2/{app}/v2/Bulk", post(d::bulk))
        .route("/scim2/{app}/v2/Me", any(d::me))
        .route("/_sandbox/scim2/{app}", get(get_quirks).put(put_quirks))
        .route("/scim2/{app}/v2/{kind}", get(list).post(create))
        .route(
            "/scim2/{app}/v2/{kind}/{id}",
            get(read).put(replace).patch(patch).delete(delete),
        )
}

/// The RFC 7644 §3.12 error envelope: `status` a string, `scimType` when
/// there is one.
pub fn error(status: StatusCode, scim_type: Option<&str>, detail: &str) -> Response {
    let mut body = json!({
        "schemas": [ERROR_SCHEMA],
        "status": status.as_u16().to_string(),
        "detail": detail,
    });
    if let Some(t) = scim_type {
        body["scimType"] = json!(t);
    }
    scim(status, body)
}

pub(super) fn scim(status: StatusCode, body: Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/scim+json"),
    );
    r
}

pub(super) type Guard<'a> = std::sync::MutexGuard<'a, State>;

/// The tenant of `app`, after checking the bearer token.
pub(super) fn tenant<'a>(
    st: &'a mut Guard<'_>,
    app: &str,
    headers: &HeaderMap,
) -> Result<&'a mut Tenant, Box<Response>> {
    let Some(t) = st.apps.get_mut(app) else {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            None,
            "no such SCIM service",
        )));
    };
    let tok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if tok != Some(t.token.as_str()) {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            None,
            "authentication required",
        )));
    }
    Ok(t)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Users,
    Groups,
}

fn kind(k: &str) -> Result<Kind, Box<Response>> {
    match k {
        "Users" => Ok(Kind::Users),
        "Groups" => Ok(Kind::Groups),
        _ => Err(Box::new(error(
            StatusCode::NOT_FOUND,
            None,
            "no such resource type",
        ))),
    }
}

fn etag(r: &Resource) -> String {
    format!("W/\"{}\"", r.version)
}

/// A resource as the client sees it.
fn render(base: &str, app: &str, t: &Tenant, k: Kind, r: &Resource) -> Value {
    let mut v = Map::new();
    let (schema, rt, seg) = match k {
        Kind::Users => (USER_SCHEMA, "User", "Users"),
        Kind::Groups => (GROUP_SCHEMA, "Group", "Groups"),
    };
    let mut schemas = vec![json!(schema)];
    if k == Kind::Users
        && r.attrs
            .contains_key(super::twin_discovery::ENTERPRISE_SCHEMA)
    {
        schemas.push(json!(super::twin_discovery::ENTERPRISE_SCHEMA));
    }
    v.insert("schemas".into(), Value::Array(schemas));
    v.insert("id".into(), json!(r.id));
    for (key, val) in &r.attrs {
        v.insert(key.clone(), val.clone());
    }
    if k == Kind::Users && !t.quirks.omit_user_groups {
        let groups: Vec<Value> = t
            .groups
            .iter()
            .filter(|g| t.is_member(&g.id, &r.id))
            .map(|g| {
                json!({
                    "value": g.id,
                    "display": g.attrs.get("displayName"),
                    "$ref": format!("{base}/scim2/{app}/v2/Groups/{}", g.id),
                    "type": "direct",
                })
            })
            .collect();
        v.insert("groups".into(), Value::Array(groups));
    }
    if k == Kind::Groups
        && let Some(Value::Array(members)) = v.get_mut("members")
    {
        for m in members {
            if let Some(id) = m.get("value").and_then(Value::as_str).map(str::to_string) {
                m["$ref"] = json!(format!("{base}/scim2/{app}/v2/Users/{id}"));
                m["type"] = json!("User");
            }
        }
    }
    let mut meta = json!({
        "resourceType": rt,
        "created": "2025-01-06T09:00:00Z",
        "lastModified": "2026-11-02T09:00:00Z",
        "location": format!("{base}/scim2/{app}/v2/{seg}/{}", r.id),
    });
    if t.quirks.etags {
        meta["version"] = json!(etag(r));
    }
    v.insert("meta".into(), meta);
    Value::Object(v)
}

/// `attributes=a,b`: only those (plus `id`, and `schemas` unless the
/// quirk drops it).
fn project(v: Value, attrs: &[String], drop_schemas: bool) -> Value {
    if attrs.is_empty() {
        return v;
    }
    let Value::Object(m) = v else { return v };
    let out: Map<String, Value> = m
        .into_iter()
        .filter(|(k, _)| {
            k == "id"
                || (k == "schemas" && !drop_schemas)
                || attrs.iter().any(|a| {
                    filter::attr_path(a)
                        .first()
                        .is_some_and(|a| k.eq_ignore_ascii_case(a))
                })
        })
        .collect();
    Value::Object(out)
}

fn with_etag(mut r: Response, t: &Tenant, res: &Resource) -> Response {
    if t.quirks.etags
        && let Ok(v) = HeaderValue::from_str(&etag(res))
    {
        r.headers_mut().insert("etag", v);
    }
    r
}

async fn service_provider_config(
    AxState(s): AxState<Shared>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut st = s.scim2.lock().expect("scim2 lock");
    let t = match tenant(&mut st, &app, &headers) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let q = &t.quirks;
    scim(
        StatusCode::OK,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": !q.no_patch && !q.misreport_patch},
            "bulk": {
                "supported": q.bulk_max_operations > 0,
                "maxOperations": q.bulk_max_operations,
                "maxPayloadSize": q.bulk_max_payload_size,
            },
            "filter": {"supported": true, "maxResults": q.max_page},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": q.etags},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "Authentication with a bearer token",
            }],
            "meta": {
                "resourceType": "ServiceProviderConfig",
                "location": format!("{}/scim2/{app}/v2/ServiceProviderConfig", s.base_url),
            },
        }),
    )
}

async fn list(
    AxState(s): AxState<Shared>,
    Path((app, k)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let k = match kind(&k) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let mut st = s.scim2.lock().expect("scim2 lock");
    let t = match tenant(&mut st, &app, &headers) {
        Ok(t) => &*t,
        Err(r) => return *r,
    };
    let mut start = 1usize;
    let mut count = t.quirks.max_page;
    let mut filter_text = None;
    let mut attrs: Vec<String> = Vec::new();
    for (key, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "startIndex" => start = v.parse::<i64>().unwrap_or(1).max(1) as usize,
            "count" => {
                count = v
                    .parse::<i64>()
                    .unwrap_or(t.quirks.max_page as i64)
                    .clamp(0, t.quirks.max_page as i64) as usize
            }
            "filter" => filter_text = Some(v.into_owned()),
            "attributes" => {
                attrs = v
                    .split(',')
                    .map(|a| a.trim().to_string())
                    .filter(|a| !a.is_empty())
                    .collect()
            }
            _ => {}
        }
    }
    let f: Option<Filter> = match filter_text.as_deref().map(filter::parse) {
        None => None,
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                Some("invalidFilter"),
                &format!("invalid filter: {e}"),
            );
        }
    };
    if k == Kind::Groups
        && t.quirks.no_member_filter
        && filter_text
            .as_deref()
            .is_some_and(|f| f.to_ascii_lowercase().contains("members"))
    {
        return error(
            StatusCode::BAD_REQUEST,
            Some("invalidFilter"),
            "filtering on members is not supported",
        );
    }
    let base = &s.base_url;
    let items = match k {
        Kind::Users => &t.users,
        Kind::Groups => &t.groups,
    };
    let all: Vec<Value> = items
        .iter()
        .map(|r| render(base, &app, t, k, r))
        .filter(|v| {
            f.as_ref()
                .is_none_or(|f| filter::matches(f, v, t.quirks.case_exact_filter))
        })
        .collect();
    let total = all.len() + t.quirks.inflate_total_results;
    if t.quirks.ignore_start_index {
        start = 1;
    }
    let page: Vec<Value> = all
        .into_iter()
        .skip(start - 1)
        .take(count)
        .map(|v| project(v, &attrs, t.quirks.attributes_drop_schemas))
        .collect();
    scim(
        StatusCode::OK,
        json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": page.len(),
            "Resources": page,
        }),
    )
}

async fn read(
    AxState(s): AxState<Shared>,
    Path((app, k, id)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let k = match kind(&k) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let mut st = s.scim2.lock().expect("scim2 lock");
    let t = match tenant(&mut st, &app, &headers) {
        Ok(t) => &*t,
        Err(r) => return *r,
    };
    let mut attrs: Vec<String> = Vec::new();
    for (key, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if key == "attributes" {
            attrs = v.split(',').map(|a| a.trim().to_string()).collect();
        }
    }
    let items = match k {
        Kind::Users => &t.users,
        Kind::Groups => &t.groups,
    };
    match items.iter().find(|r| r.id == id) {
        Some(r) => {
            let v = project(
                render(&s.base_url, &app, t, k, r),
                &attrs,
                t.quirks.attributes_drop_schemas,
            );
            with_etag(scim(StatusCode::OK, v), t, r)
        }
        None => error(
            StatusCode::NOT_FOUND,
            None,
            &format!("Resource {id} not found"),
        ),
    }
}

pub(super) async fn create(
    AxState(s): AxState<Shared>,
    Path((app, k)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let k = match kind(&k) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let Ok(Value::Object(mut attrs)) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "a JSON object is required",
        );
    };
    for ro in ["id", "meta", "schemas", "groups"] {
        attrs.remove(ro);
    }
    let mut st = s.scim2.lock().expect("scim2 lock");
    let t = match tenant(&mut st, &app, &headers) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let key = if k == Kind::Users {
        "userName"
    } else {
        "displayName"
    };
    let Some(name) = attrs.get(key).and_then(Value::as_str).map(str::to_string) else {
        return error(
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
            &format!("{key} is required"),
        );
    };
    let list = if k == Kind::Users {
        &t.users
    } else {
        &t.groups
    };
    if list.iter().any(|r| {
        r.attrs
            .get(key)
            .and_then(Value::as_str)
            .is_some_and(|n| n.eq_ignore_ascii_case(&name))
    }) {
        return error(
            StatusCode::CONFLICT,
            Some("uniqueness"),
            &format!("{key} is already taken"),
        );
    }
    if k == Kind::Users && !attrs.contains_key("active") {
        attrs.insert("active".into(), json!(true));
    }
    let id = t.new_id(if k == Kind::Users { "u" } else { "g" });
    let r = Resource {
        id,
        attrs,
        version: 1,
    };
    let list = if k == Kind::Users {
        &mut t.users
    } else {
        &mut t.groups
    };
    list.push(r.clone());
    let t = &*t;
    with_etag(
        scim(StatusCode::CREATED, render(&s.base_url, &app, t, k, &r)),
        t,
        &r,
    )
}

/// The `concurrent_writes` quirk: another client changed the resource just
/// before this write.
fn concurrent_write(t: &mut Tenant, k: Kind, id: &str) {
    if t.quirks.concurrent_writes == 0 {
        return;
    }
    t.quirks.concurrent_writes -= 1;
    let list = if k == Kind::Users {
        &mut t.users
    } else {
        &mut t.groups
    };
    if let Some(r) = list.iter_mut().find(|r| r.id == id) {
        r.version += 1;
    }
}

/// `If-Match` against the resource's current version.
fn precondition(headers: &HeaderMap, t: &Tenant, r: &Resource) -> Result<(), Box<Response>> {
    if !t.quirks.etags {
        return Ok(());
    }
    match headers.get("if-match").and_then(|v| v.to_str().ok()) {
        Some(m) if m.trim() != "*" && m.trim() != etag(r) => Err(Box::new(error(
            StatusCode::PRECONDITION_FAILED,
            None,
            "the resource changed: If-Match does not match its current version",
        ))),
        _ => Ok(()),
    }
}

fn check_values(attrs: &Map<String, Value>) -> Result<(), (Option<&'static str>, String)> {
    if let Some(a) = get_ci(&Value::Object(attrs.clone()), "active")
        && !a.is_boolean()
    {
        return Err((Some("invalidValue"), "active must be a JSON boolean".into()));
    }
    Ok(())
}

pub(super) async fn replace(
    AxState(s): AxState<Shared>,
    Path((app, k, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let k = match kind(&k) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let Ok(Value::Object(mut attrs)) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "a JSON object is required",
        );
    };
    for ro in ["id", "meta", "schemas", "groups"] {
        attrs.remove(ro);
    }
    if let Err((t, m)) = check_values(&attrs) {
        return error(StatusCode::BAD_REQUEST, t, &m);
    }
    let mut st = s.scim2.lock().expect("scim2 lock");
    let t = match tenant(&mut st, &app, &headers) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    concurrent_write(t, k, &id);
    let list = if k == Kind::Users {
        &t.users
    } else {
        &t.groups
    };
    let Some(i) = list.iter().position(|r| r.id == id) else {
        return error(
            StatusCode::NOT_FOUND,
            None,
            &format!("Resource {id} not found"),
        );
    };
    if let Err(r) = precondition(&headers, t, &list[i]) {
        return *r;
    }
    let list = if k == Kind::Users {
        &mut t.users
    } else {
        &mut t.groups
    };
    if list[i].attrs != attrs {
        list[i].attrs = attrs;
        list[i].version += 1;
    }
    let r = list[i].clone();
    let t = &*t;
    with_etag(
        scim(StatusCode::OK, render(&s.base_url, &app, t, k, &r)),
        t,
        &r,
    )
}

pub(super) async fn delete(
    AxState(s): AxState<Shared>,
    Path((app, k, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let k = match kind(&k) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let mut st = s.scim2.lock().expect("scim2 lock");
    let t = match tenant(&mut st, &app, &headers) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    concurrent_write(t, k, &id);
    let list = if k == Kind::Users {
        &t.users
    } else {
        &t.groups
    };
    let Some(i) = list.iter().position(|r| r.id == id) else {
        return error(
            StatusCode::NOT_FOUND,
            None,
            &format!("Resource {id} not found"),
        );
    };
    if let Err(r) = precondition(&headers, t, &list[i]) {
        return *r;
    }
    if k == Kind::Users {
        t.users.remove(i);
        for g in &mut t.groups {
            if let Some(Value::Array(m)) = g.attrs.get_mut("members") {
                let before = m.len();
                m.retain(|x| x["value"] != id.as_str());
                if m.len() != before {
                    g.version += 1;
                }
            }
        }
    } else {
        t.groups.remove(i);
    }
    StatusCode::NO_CONTENT.into_response()
}

/// A PATCH path: `attr`, `attr.sub`, `attr[filter]`, `attr[filter].sub`.
struct PatchPath {
    attr: String,
    filter: Option<Filter>,
    sub: Option<String>,
}

fn patch_path(raw: &str) -> Result<PatchPath, String> {
    let raw = raw.trim();
    let (head, filter, tail) = match raw.find('[') {
        Some(i) => {
            let close = raw.rfind(']').ok_or("missing `]`")?;
            let inner = filter::parse(&raw[i + 1..close])?;
            (
                &raw[..i],
                Some(inner),
                raw[close + 1..].trim_start_matches('.'),
            )
        }
        None => (raw, None, ""),
    };
    let mut segs = filter::attr_path(head);
    let mut sub = (!tail.is_empty()).then(|| tail.to_ascii_lowercase());
    if filter.is_none() && segs.len() > 1 {
        sub = segs.pop();
    }
    let attr = segs
        .into_iter()
        .next()
        .filter(|a| !a.is_empty())
        .ok_or("empty path")?;
    Ok(PatchPath { attr, filter, sub })
}

fn key_ci(m: &Map<String, Value>, k: &str) -> String {
    m.keys()
        .find(|x| x.eq_ignore_ascii_case(k))
        .cloned()
        .unwrap_or_else(|| k.to_string())
}

type PatchError = (StatusCode, Option<&'static str>, String);

fn bad(t: &'static str, m: impl Into<String>) -> PatchError {
    (StatusCode::BAD_REQUEST, Some(t), m.into())
}

/// Applies one operation to a resource's attributes.
fn apply(
    attrs: &mut Map<String, Value>,
    op: &str,
    path: Option<&str>,
    value: Option<&Value>,
) -> Result<(), PatchError> {
    let op = op.to_ascii_lowercase();
    let Some(path) = path.filter(|p| !p.trim().is_empty()) else {
        // No path: the value is an object of attributes.
        if op == "remove" {
            return Err(bad("noTarget", "remove needs a path"));
        }
        let Some(Value::Object(obj)) = value else {
            return Err(bad(
                "invalidValue",
                "an operation without a path needs an object value",
            ));
        };
        for (k, v) in obj {
            apply(attrs, &op, Some(k), Some(v))?;
        }
        return Ok(());
    };
    let p = patch_path(path).map_err(|e| bad("invalidPath", format!("invalid path: {e}")))?;
    if matches!(p.attr.as_str(), "id" | "meta" | "groups" | "schemas") {
        return Err(bad("mutability", format!("{} is read-only", p.attr)));
    }
    if p.attr == "active" && op != "remove" && !value.is_some_and(Value::is_boolean) {
        return Err(bad("invalidValue", "active must be a JSON boolean"));
    }
    let key = key_ci(attrs, &p.attr);
    match (op.as_str(), &p.filter) {
        ("add" | "replace", None) => {
            let Some(v) = value else {
                return Err(bad("invalidValue", "a value is required"));
            };
            match &p.sub {
                Some(sub) => {
                    let obj = attrs.entry(key).or_insert_with(|| json!({}));
                    if let Value::Object(o) = obj {
                        let sk = key_ci(o, sub);
                        o.insert(sk, v.clone());
                    }
                }
                None => {
                    let existing = attrs.get_mut(&key);
                    match (op.as_str(), existing, v) {
                        ("add", Some(Value::Array(a)), Value::Array(new)) => {
                            for n in new {
                                if !a.contains(n) {
                                    a.push(n.clone());
                                }
                            }
                        }
                        ("add", Some(Value::Array(a)), n @ Value::Object(_)) => {
                            if !a.contains(n) {
                                a.push(n.clone());
                            }
                        }
                        _ => {
                            attrs.insert(key, v.clone());
                        }
                    }
                }
            }
        }
        ("remove", None) => match (attrs.get_mut(&key), value) {
            // Entra-style: remove the listed values from a multi-valued attribute.
            (Some(Value::Array(a)), Some(Value::Array(gone))) => {
                a.retain(|x| {
                    !gone
                        .iter()
                        .any(|g| g.get("value").is_some() && g.get("value") == x.get("value"))
                });
            }
            _ => match &p.sub {
                Some(sub) => {
                    if let Some(Value::Object(o)) = attrs.get_mut(&key) {
                        let sk = key_ci(o, sub);
                        o.remove(&sk);
                    }
                }
                None => {
                    attrs.remove(&key);
                }
            },
        },
        (_, Some(f)) => {
            let Some(Value::Array(items)) = attrs.get_mut(&key) else {
                if op == "remove" {
                    // Nothing to remove: success (RFC 7644 §3.5.2.2).
                    return Ok(());
                }
                return Err(bad("noTarget", "no value matches the path"));
            };
            match (op.as_str(), &p.sub) {
                ("remove", None) => items.retain(|i| !filter::matches(f, i, false)),
                ("remove", Some(sub)) => {
                    for i in items.iter_mut().filter(|i| filter::matches(f, i, false)) {
                        if let Value::Object(o) = i {
                            let sk = key_ci(o, sub);
                            o.remove(&sk);
                        }
                    }
                }
                ("add" | "replace", sub) => {
                    let Some(v) = value else {
                        return Err(bad("invalidValue", "a value is required"));
                    };
                    let mut hit = false;
                    for i in items.iter_mut().filter(|i| filter::matches(f, i, false)) {
                        hit = true;
                        match (sub, i) {
                            (Some(sub), Value::Object(o)) => {
                                let sk = key_ci(o, sub);
                                o.insert(sk, v.clone());
                            }
                            (None, i) => *i = v.clone(),
                            _ => {}
                        }
                    }
                    if !hit {
                        return Err(bad("noTarget", "no value matches the path"));
                    }
                }
                _ => return Err(bad("invalidSyntax", format!("unknown op `{op}`"))),
            }
        }
        _ => return Err(bad("invalidSyntax", format!("unknown op `{op}`"))),
    }
    Ok(())
}

pub(super) async fn patch(
    AxState(s): AxState<Shared>,
    Path((app, k, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let k = match kind(&k) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let mut st = s.scim2.lock().expect("scim2 lock");
    let t = match tenant(&mut st, &app, &headers) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    if t.quirks.no_patch {
        return error(StatusCode::NOT_IMPLEMENTED, None, "PATCH is not supported");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "the body is not JSON",
        );
    };
    let schema_ok = body["schemas"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == PATCH_SCHEMA));
    let Some(ops) = get_ci(&body, "Operations")
        .and_then(Value::as_array)
        .filter(|_| schema_ok)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "a PatchOp message (schemas, Operations) is required",
        );
    };
    concurrent_write(t, k, &id);
    let list = if k == Kind::Users {
        &t.users
    } else {
        &t.groups
    };
    let Some(i) = list.iter().position(|r| r.id == id) else {
        return error(
            StatusCode::NOT_FOUND,
            None,
            &format!("Resource {id} not found"),
        );
    };
    if let Err(r) = precondition(&headers, t, &list[i]) {
        return *r;
    }
    let mut attrs = list[i].attrs.clone();
    for o in ops {
        let op = get_ci(o, "op").and_then(Value::as_str).unwrap_or_default();
        if !matches!(
            op.to_ascii_lowercase().as_str(),
            "add" | "remove" | "replace"
        ) {
            return error(
                StatusCode::BAD_REQUEST,
                Some("invalidSyntax"),
                "op must be add, remove or replace",
            );
        }
        let path = get_ci(o, "path").and_then(Value::as_str);
        if let Err((code, t, m)) = apply(&mut attrs, op, path, get_ci(o, "value")) {
            return error(code, t, &m);
        }
    }
    let list = if k == Kind::Users {
        &mut t.users
    } else {
        &mut t.groups
    };
    let changed = list[i].attrs != attrs;
    if changed {
        list[i].attrs = attrs;
        list[i].version += 1;
    }
    let r = list[i].clone();
    let t = &*t;
    if !changed && t.quirks.no_content_on_noop_patch {
        return StatusCode::NO_CONTENT.into_response();
    }
    with_etag(
        scim(StatusCode::OK, render(&s.base_url, &app, t, k, &r)),
        t,
        &r,
    )
}

// ----- sandbox controls ----------------------------------------------------

/// `GET /_sandbox/scim2/{app}`: the tenant's deviation switches.
async fn get_quirks(AxState(s): AxState<Shared>, Path(app): Path<String>) -> Response {
    let st = s.scim2.lock().expect("scim2 lock");
    match st.apps.get(&app) {
        Some(t) => Json(t.quirks.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, None, "no such SCIM service"),
    }
}

/// `PUT /_sandbox/scim2/{app}`: sets the switches named in the body (a
/// JSON object of [`Quirks`] fields); those left out keep their value. An
/// unknown field or a wrong type is refused with 400 and changes nothing.
async fn put_quirks(
    AxState(s): AxState<Shared>,
    Path(app): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let mut st = s.scim2.lock().expect("scim2 lock");
    let Some(t) = st.apps.get_mut(&app) else {
        return error(StatusCode::NOT_FOUND, None, "no such SCIM service");
    };
    let Ok(Value::Object(changes)) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "a JSON object of quirk switches is required",
        );
    };
    let Ok(Value::Object(mut now)) = serde_json::to_value(&t.quirks) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, None, "quirks unreadable");
    };
    for (k, v) in changes {
        if !now.contains_key(&k) {
            return error(
                StatusCode::BAD_REQUEST,
                Some("invalidValue"),
                &format!("unknown quirk `{k}`"),
            );
        }
        now.insert(k, v);
    }
    match serde_json::from_value::<Quirks>(Value::Object(now)) {
        Ok(q) => {
            t.quirks = q.clone();
            Json(q).into_response()
        }
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
            &format!("quirks: {e}"),
        ),
    }
}
