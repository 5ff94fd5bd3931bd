//! Generic SCIM 2.0 driver (RFC 7643/7644): any app whose manifest names
//! `driver = "scim2"`, at `[api] base_url` (the SCIM root, e.g.
//! `https://host/scim/v2`), with a bearer token (`flow = "static"`) or
//! OAuth client credentials.
//!
//! Grants of one user:
//! - `account:{id}` (Account): `active` true; closed with `PATCH /Users/{id}`
//!   replace `active` false (or `DELETE /Users/{id}` with
//!   `settings.close = "delete"`); verified by a fresh `GET /Users/{id}`
//!   showing `active:false` (or 404).
//! - `group:{gid}` (Group): from `User.groups` when the server fills it,
//!   else `/Groups?filter=members[value eq "{id}"]`, else every `/Groups`
//!   page (`settings.group_source` forces one). Removed on the group
//!   (`User.groups` is read-only): `PATCH /Groups/{gid}` remove
//!   `members[value eq "{id}"]`; verified by a fresh `GET /Groups/{gid}`.
//! - `role:{value}` (AdminRole), `entitlement:{value}` (License): the
//!   user's `roles` and `entitlements`, removed with `PATCH /Users/{id}`
//!   remove `roles[value eq "…"]`.
//! - `manual:{step}`: every `[manual_steps]` entry of the manifest (what
//!   SCIM cannot do: sessions, API tokens, licences, data hand-over).
//!
//! `/ServiceProviderConfig` is read once (patch, filter, etag, bulk) and
//! `settings.service_provider` overrides what a server misreports. Without
//! PATCH, changes are a `PUT` of the whole resource; without filtering, the
//! lookup pages `/Users`. With ETags, every write carries `If-Match` with
//! the resource's `meta.version`, and a 412 re-reads and retries.
//!
//! Assumptions where RFC 7644 leaves room, from what services do:
//! - `eq` may be case-sensitive (RFC 7643 says `userName` is not): the
//!   lookup tries the address as given and in `First.Last@domain` case, by
//!   `userName` then `emails[value eq …]`, and keeps only results whose
//!   `userName` or an email equals the address ignoring case (a server
//!   that ignores the filter cannot make it pick someone else).
//! - Resources may come without `schemas` (some drop it under
//!   `attributes=`): never required. A PATCH may answer 204 with no body:
//!   the body is never read. `status` in an error is a string (a number is
//!   read too); `scimType` is the error code.
//! - A remove that matches nothing (400 `noTarget`) or a 404 is already gone.
//! - Paging ends on an empty page, never on `totalResults` alone
//!   ([`IndexPager`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::filter::{get_ci, quote};
use super::twin::PATCH_SCHEMA;
use crate::connector::http::{
    ApiClient, ApiRequest, IndexPager, VendorPolicy, Verdict, body_excerpt, retry_after,
};
use crate::connector::{
    BuildContext, Connector, ConnectorError, Health, Inventory, Lookup, Presence,
    ResolvedConnector, RevokeOutcome, find_by_each_address,
};
use crate::model::{Account, Grant, GrantKind, Person, Revocation, Risk};
use crate::sanitize::{clean, clean_max};

/// A bearer token from a file or variable, or OAuth client credentials.
pub const FLOWS: &[crate::auth::oauth::Flow] = &[
    crate::auth::oauth::Flow::Static,
    crate::auth::oauth::Flow::ClientCredentials,
];

/// How the account is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Close {
    /// `active` false.
    #[default]
    Deactivate,
    /// `DELETE /Users/{id}` (only when the manifest says so).
    Delete,
}

/// Where group memberships are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GroupSource {
    /// `User.groups` when present, else a members filter, else paging.
    #[default]
    Auto,
    User,
    Filter,
    Scan,
}

/// What the server supports, as `/ServiceProviderConfig` says or the
/// manifest overrides.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SupportOverride {
    pub patch: Option<bool>,
    pub filter: Option<bool>,
    pub etag: Option<bool>,
    pub bulk: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `count` asked for each page (lowered to the server's
    /// `filter.maxResults`).
    pub page_size: usize,
    pub close: Close,
    pub group_source: GroupSource,
    /// Try `First.Last@domain` when the address as given finds nothing
    /// (servers with case-sensitive `eq`).
    pub case_variants: bool,
    /// Writes tried when the server answers 412 (the resource changed).
    pub write_attempts: u32,
    pub service_provider: SupportOverride,
    /// The grant kind of each manual step (default: from its name).
    pub manual_kinds: BTreeMap<String, String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            page_size: 100,
            close: Close::Deactivate,
            group_source: GroupSource::Auto,
            case_variants: true,
            write_attempts: 3,
            service_provider: SupportOverride::default(),
            manual_kinds: BTreeMap::new(),
        }
    }
}

/// What the driver uses of the server's capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Support {
    pub patch: bool,
    pub filter: bool,
    pub etag: bool,
    pub bulk: bool,
    pub max_results: Option<usize>,
}

/// SCIM errors: the RFC 7644 envelope, `scimType` as the code.
pub struct ScimPolicy;

impl VendorPolicy for ScimPolicy {
    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Verdict {
        if status.is_success() {
            return Verdict::Ok;
        }
        match status.as_u16() {
            429 => return Verdict::RateLimited(retry_after(headers)),
            401 => return Verdict::Unauthorized,
            408 | 500 | 502 | 503 | 504 => return Verdict::Transient,
            _ => {}
        }
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let code = v
            .get("scimType")
            .and_then(Value::as_str)
            .map(|c| clean_max(c, 40))
            .unwrap_or_default();
        let message = match v.get("detail").and_then(Value::as_str) {
            Some(d) => clean_max(d, 300),
            None => body_excerpt(body),
        };
        // `status` is a string in the envelope; it must agree with HTTP.
        Verdict::Fail(ConnectorError::Api {
            status: status.as_u16(),
            code,
            message,
        })
    }
}

pub struct Scim2Driver {
    id: String,
    name: String,
    refresh: Duration,
    client: ApiClient,
    base: Url,
    settings: Settings,
    manual: BTreeMap<String, String>,
    support: tokio::sync::Mutex<Option<Support>>,
}

#[derive(Deserialize)]
struct ListResponse {
    #[serde(rename = "Resources", alias = "resources", default)]
    resources: Vec<Value>,
    #[serde(rename = "totalResults", default)]
    total: Option<u64>,
}

fn id_of(v: &Value) -> Option<String> {
    get_ci(v, "id").and_then(Value::as_str).map(str::to_string)
}

fn str_of<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    get_ci(v, k).and_then(Value::as_str)
}

/// The `value`s (and display) of a multi-valued attribute.
fn values(v: &Value, attr: &str) -> Vec<(String, String)> {
    get_ci(v, attr)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| {
                    let val = match x {
                        Value::String(s) => s.clone(),
                        o => str_of(o, "value")?.to_string(),
                    };
                    let display = str_of(x, "display").unwrap_or(&val).to_string();
                    Some((val, display))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn is_active(u: &Value) -> bool {
    match get_ci(u, "active") {
        Some(Value::Bool(b)) => *b,
        // Some servers send strings; anything else but an explicit false
        // counts as active, so an account is never hidden.
        Some(Value::String(s)) => !s.eq_ignore_ascii_case("false"),
        _ => true,
    }
}

/// `dana.whitfield@x` → `Dana.Whitfield@x`.
fn title_case(address: &str) -> String {
    let (local, domain) = address.split_once('@').unwrap_or((address, ""));
    let parts: Vec<String> = local
        .split('.')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        })
        .collect();
    if domain.is_empty() {
        parts.join(".")
    } else {
        format!("{}@{domain}", parts.join("."))
    }
}

/// A manual step's grant kind from its name: `session…`, `api_key…`,
/// `token…`, `licen…`, `device…`, `data…`/`delegation…`, `owned…`/`app…`.
fn step_kind(name: &str) -> GrantKind {
    let n = name.to_ascii_lowercase();
    if let Some(k) = GrantKind::parse(&n) {
        return k;
    }
    if n.starts_with("session") {
        GrantKind::Session
    } else if n.contains("token") || n.contains("key") {
        GrantKind::ApiKey
    } else if n.starts_with("licen") || n.starts_with("seat") {
        GrantKind::License
    } else if n.starts_with("device") {
        GrantKind::Device
    } else if n.starts_with("owned") || n.starts_with("app") || n.starts_with("bot") {
        GrantKind::OwnedApp
    } else if n.starts_with("admin") || n.starts_with("role") {
        GrantKind::AdminRole
    } else {
        GrantKind::Delegation
    }
}

impl Scim2Driver {
    pub fn build(resolved: &ResolvedConnector, ctx: &BuildContext) -> Result<Self, ConnectorError> {
        let cfg = |e: crate::tomlfile::ConfigError| ConnectorError::Config(e.to_string());
        let settings: Settings = resolved.settings().map_err(cfg)?;
        if !(1..=1000).contains(&settings.page_size) {
            return Err(ConnectorError::Config(format!(
                "key `connectors.{}.settings.page_size`: expected 1 to 1000, found {}",
                resolved.id, settings.page_size
            )));
        }
        for (step, kind) in &settings.manual_kinds {
            if GrantKind::parse(kind).is_none() {
                return Err(ConnectorError::Config(format!(
                    "key `connectors.{}.settings.manual_kinds.{}`: expected a grant kind (session, api_key, license, ...), found `{}`",
                    resolved.id,
                    clean_max(step, 40),
                    clean_max(kind, 40)
                )));
            }
        }
        let base = resolved.url("base_url").map_err(cfg)?;
        let auth = crate::apps::token_source(resolved, ctx)?;
        let client = ApiClient::new(
            ctx.http.clone(),
            resolved.http_settings(),
            std::slice::from_ref(&base),
            Some(auth),
            Arc::new(ScimPolicy),
            ctx.notices.clone(),
        );
        Ok(Self {
            id: resolved.id.clone(),
            name: resolved.manifest.display_name.clone(),
            refresh: resolved.refresh_interval(),
            client,
            base,
            settings,
            manual: resolved.manifest.manual_steps.clone(),
            support: tokio::sync::Mutex::new(None),
        })
    }

    fn url(&self, segments: &[&str]) -> Result<Url, ConnectorError> {
        self.client.url(&self.base, segments)
    }

    /// `/ServiceProviderConfig`, read once, with the manifest's overrides.
    /// A server without one (404, 501) gets RFC defaults: PATCH and
    /// filtering assumed, no ETags.
    pub async fn support(&self) -> Result<Support, ConnectorError> {
        let mut cached = self.support.lock().await;
        if let Some(s) = *cached {
            return Ok(s);
        }
        let url = self.url(&["ServiceProviderConfig"])?;
        let spc = match self.client.send(ApiRequest::get(url)).await {
            Ok(r) => r.json::<Value>()?,
            Err(e) if matches!(e.status(), Some(404 | 501)) => Value::Null,
            Err(e) => return Err(e),
        };
        let flag = |k: &str, default: bool| {
            get_ci(&spc, k)
                .and_then(|o| get_ci(o, "supported"))
                .and_then(Value::as_bool)
                .unwrap_or(default)
        };
        let o = self.settings.service_provider;
        let s = Support {
            patch: o.patch.unwrap_or_else(|| flag("patch", true)),
            filter: o.filter.unwrap_or_else(|| flag("filter", true)),
            etag: o.etag.unwrap_or_else(|| flag("etag", false)),
            bulk: o.bulk.unwrap_or_else(|| flag("bulk", false)),
            max_results: get_ci(&spc, "filter")
                .and_then(|f| get_ci(f, "maxResults"))
                .and_then(Value::as_u64)
                .filter(|n| *n > 0)
                .map(|n| n as usize),
        };
        *cached = Some(s);
        Ok(s)
    }

    /// Every resource of a listing, page by page.
    async fn list(
        &self,
        kind: &str,
        filter: Option<&str>,
        attributes: Option<&str>,
    ) -> Result<Vec<Value>, ConnectorError> {
        let support = self.support().await?;
        let count = support
            .max_results
            .map_or(self.settings.page_size, |m| m.min(self.settings.page_size));
        let url = self.url(&[kind])?;
        let mut pager = IndexPager::new(count);
        let mut out = Vec::new();
        loop {
            let start = pager.start_index().to_string();
            let count = pager.count().to_string();
            let mut q: Vec<(&str, &str)> = vec![("startIndex", &start), ("count", &count)];
            if let Some(f) = filter {
                q.push(("filter", f));
            }
            if let Some(a) = attributes {
                q.push(("attributes", a));
            }
            let page: ListResponse = self
                .client
                .send(ApiRequest::get(url.clone()).query(&q))
                .await?
                .json()?;
            let ids: Vec<String> = page.resources.iter().filter_map(id_of).collect();
            if ids.len() != page.resources.len() {
                return Err(ConnectorError::BadResponse(
                    "a listed resource has no id".into(),
                ));
            }
            out.extend(page.resources);
            if !pager.page(&ids, page.total)? {
                return Ok(out);
            }
        }
    }

    /// One resource, or None on 404.
    async fn get(&self, kind: &str, id: &str) -> Result<Option<Value>, ConnectorError> {
        let url = self.url(&[kind, id])?;
        match self.client.send(ApiRequest::get(url)).await {
            Ok(r) => Ok(Some(r.json()?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn matches_address(u: &Value, address: &str) -> bool {
        str_of(u, "userName").is_some_and(|n| n.eq_ignore_ascii_case(address))
            || values(u, "emails")
                .iter()
                .any(|(v, _)| v.eq_ignore_ascii_case(address))
    }

    async fn lookup(&self, address: String) -> Result<Lookup, ConnectorError> {
        let support = self.support().await?;
        let mut hits: Vec<Value> = Vec::new();
        if support.filter {
            let mut forms = vec![address.clone()];
            if self.settings.case_variants {
                let t = title_case(&address);
                if t != address {
                    forms.push(t);
                }
            }
            'forms: for form in &forms {
                for f in [
                    format!("userName eq {}", quote(form)),
                    format!("emails[value eq {}]", quote(form)),
                ] {
                    let found = self.list("Users", Some(&f), None).await?;
                    hits = found
                        .into_iter()
                        .filter(|u| Self::matches_address(u, &address))
                        .collect();
                    if !hits.is_empty() {
                        break 'forms;
                    }
                }
            }
        } else {
            hits = self
                .list("Users", None, None)
                .await?
                .into_iter()
                .filter(|u| Self::matches_address(u, &address))
                .collect();
        }
        let mut seen = std::collections::BTreeSet::new();
        hits.retain(|u| id_of(u).is_some_and(|id| seen.insert(id)));
        Ok(match hits.len() {
            0 => Lookup::NotFound,
            1 => Lookup::Found {
                account: self.account(&hits[0]),
            },
            _ => Lookup::Ambiguous {
                candidates: hits.iter().map(|u| self.account(u)).collect(),
            },
        })
    }

    fn account(&self, u: &Value) -> Account {
        let login = str_of(u, "userName").unwrap_or_default();
        let display = str_of(u, "displayName")
            .or_else(|| get_ci(u, "name").and_then(|n| str_of(n, "formatted")))
            .unwrap_or(login);
        let mut facts = Vec::new();
        if let Some(x) = str_of(u, "externalId") {
            facts.push(("externalId".to_string(), clean_max(x, 120)));
        }
        if let Some(t) = str_of(u, "userType") {
            facts.push(("userType".to_string(), clean_max(t, 60)));
        }
        Account {
            connector: self.id.clone(),
            id: clean(&id_of(u).unwrap_or_default()),
            login: clean_max(login, 200),
            display_name: clean_max(display, 200),
            active: is_active(u),
            is_admin: !values(u, "roles").is_empty(),
            last_login: None,
            facts,
            addresses: values(u, "emails")
                .into_iter()
                .map(|(v, _)| clean_max(&v.to_ascii_lowercase(), 200))
                .collect(),
            matched_by: None,
        }
    }

    /// The user's groups (id, name) by the configured source.
    async fn groups_of(
        &self,
        user: &Value,
        uid: &str,
    ) -> Result<Vec<(String, String)>, ConnectorError> {
        let from_user = get_ci(user, "groups").filter(|g| g.is_array());
        let source = self.settings.group_source;
        if source == GroupSource::User || (source == GroupSource::Auto && from_user.is_some()) {
            return Ok(values(user, "groups"));
        }
        let by_filter = if matches!(source, GroupSource::Auto | GroupSource::Filter)
            && self.support().await?.filter
        {
            let f = format!("members[value eq {}]", quote(uid));
            match self.list("Groups", Some(&f), Some("id,displayName")).await {
                Ok(gs) => Some(gs),
                // The server cannot filter on members: page every group.
                Err(e)
                    if source == GroupSource::Auto
                        && matches!(e.status(), Some(400 | 403 | 501)) =>
                {
                    None
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        let groups = match by_filter {
            Some(gs) => gs,
            None => self
                .list("Groups", None, Some("id,displayName,members"))
                .await?
                .into_iter()
                .filter(|g| values(g, "members").iter().any(|(v, _)| v == uid))
                .collect(),
        };
        Ok(groups
            .iter()
            .filter_map(|g| {
                let id = id_of(g)?;
                let name = str_of(g, "displayName").unwrap_or(&id).to_string();
                Some((id, name))
            })
            .collect())
    }

    fn manual_grants(&self) -> Vec<Grant> {
        self.manual
            .iter()
            .filter_map(|(step, text)| {
                let text = clean(text.trim());
                if text.is_empty() {
                    return None;
                }
                let kind = self
                    .settings
                    .manual_kinds
                    .get(step)
                    .and_then(|k| GrantKind::parse(k))
                    .unwrap_or_else(|| step_kind(step));
                Some(Grant {
                    connector: self.id.clone(),
                    id: crate::connector::steps::step_id(step),
                    kind,
                    label: clean_max(&step.replace('_', " "), 60),
                    details: "manual step from the connector manifest (SCIM cannot do it)".into(),
                    risk: Risk::Medium,
                    revocation: Revocation::Manual { instructions: text },
                    since: None,
                    phase: None,
                    after: Vec::new(),
                })
            })
            .collect()
    }

    /// A PATCH of one resource, `If-Match` its version when the server has
    /// ETags; a 412 re-reads and tries again. Without PATCH support, the
    /// whole resource is `PUT` back with `edit` applied.
    async fn write(
        &self,
        kind: &str,
        id: &str,
        ops: Vec<Value>,
        edit: impl Fn(&mut Value),
    ) -> Result<RevokeOutcome, ConnectorError> {
        let support = self.support().await?;
        let url = self.url(&[kind, id])?;
        let attempts = self.settings.write_attempts.max(1);
        let mut last = None;
        for _ in 0..attempts {
            let current = if support.etag || !support.patch {
                match self.get(kind, id).await? {
                    Some(v) => Some(v),
                    None => return Ok(RevokeOutcome::AlreadyGone),
                }
            } else {
                None
            };
            let version = current
                .as_ref()
                .and_then(|c| get_ci(c, "meta"))
                .and_then(|m| str_of(m, "version"))
                .filter(|_| support.etag)
                .map(str::to_string);
            let mut req = if support.patch {
                ApiRequest::new(Method::PATCH, url.clone()).json(json!({
                    "schemas": [PATCH_SCHEMA],
                    "Operations": ops,
                }))
            } else {
                let mut body = current.clone().unwrap_or(Value::Null);
                if let Value::Object(m) = &mut body {
                    m.retain(|k, _| {
                        !k.eq_ignore_ascii_case("meta") && !k.eq_ignore_ascii_case("groups")
                    });
                }
                edit(&mut body);
                ApiRequest::new(Method::PUT, url.clone()).json(body)
            };
            if let Some(v) = version {
                req = req.header("if-match", v);
            }
            match self.client.send(req.idempotent(true)).await {
                // 200 with the resource, or 204 with no body: never read.
                Ok(_) => return Ok(RevokeOutcome::Accepted),
                Err(e) if e.is_not_found() => return Ok(RevokeOutcome::AlreadyGone),
                Err(e) if e.code() == Some("noTarget") => return Ok(RevokeOutcome::AlreadyGone),
                Err(e) if e.status() == Some(412) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ConnectorError::BadResponse("no write attempted".into())))
    }

    async fn close_account(&self, uid: &str) -> Result<RevokeOutcome, ConnectorError> {
        if self.settings.close == Close::Delete {
            let url = self.url(&["Users", uid])?;
            return match self.client.send(ApiRequest::new(Method::DELETE, url)).await {
                Ok(_) => Ok(RevokeOutcome::Accepted),
                Err(e) if e.is_not_found() => Ok(RevokeOutcome::AlreadyGone),
                Err(e) => Err(e),
            };
        }
        self.write(
            "Users",
            uid,
            vec![json!({"op": "replace", "path": "active", "value": false})],
            |u| {
                if let Value::Object(m) = u {
                    m.retain(|k, _| !k.eq_ignore_ascii_case("active"));
                    m.insert("active".into(), Value::Bool(false));
                }
            },
        )
        .await
    }

    fn remove_value(attr: &'static str, value: String) -> impl Fn(&mut Value) {
        move |r: &mut Value| {
            if let Value::Object(m) = r
                && let Some((_, Value::Array(a))) =
                    m.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(attr))
            {
                a.retain(|x| x.get("value").and_then(Value::as_str) != Some(value.as_str()));
            }
        }
    }
}

#[async_trait]
impl Connector for Scim2Driver {
    fn id(&self) -> &str {
        &self.id
    }

    fn display_name(&self) -> &str {
        &self.name
    }

    fn refresh_interval(&self) -> Duration {
        self.refresh
    }

    async fn find_person(&self, person: &Person) -> Result<Lookup, ConnectorError> {
        find_by_each_address(person, |a| self.lookup(a)).await
    }

    /// `GET /Users` (every page): one listing answers for every leaver it
    /// holds by `userName` or an email, compared without regard to case.
    async fn find_people(
        &self,
        people: &[Person],
    ) -> Result<Vec<(String, Lookup)>, ConnectorError> {
        let users = self.list("Users", None, None).await?;
        let accounts: Vec<Account> = users.iter().map(|u| self.account(u)).collect();
        Ok(crate::connector::match_listed(people, &accounts))
    }

    async fn list_grants(&self, account: &Account) -> Inventory {
        let mut inv = Inventory::default();
        let user = match self.get("Users", &account.id).await {
            Ok(Some(u)) => u,
            Ok(None) => return inv,
            Err(e) => {
                for k in [
                    GrantKind::Account,
                    GrantKind::Group,
                    GrantKind::AdminRole,
                    GrantKind::License,
                ] {
                    inv.failed.push((k, e.clone()));
                }
                return inv;
            }
        };
        let uid = &account.id;
        let login = clean_max(str_of(&user, "userName").unwrap_or(uid), 200);
        if is_active(&user) {
            let how = match self.settings.close {
                Close::Deactivate => "deactivated with SCIM (active=false)",
                Close::Delete => "deleted with SCIM (DELETE /Users)",
            };
            inv.grants.push(Grant::api(
                &self.id,
                format!("account:{uid}"),
                GrantKind::Account,
                format!("Account {login}"),
                format!("active; {how}"),
                Risk::High,
            ));
        }
        for (v, d) in values(&user, "roles") {
            inv.grants.push(Grant::api(
                &self.id,
                format!("role:{v}"),
                GrantKind::AdminRole,
                format!("Role {}", clean_max(&d, 80)),
                "SCIM role on the user".into(),
                Risk::High,
            ));
        }
        for (v, d) in values(&user, "entitlements") {
            inv.grants.push(Grant::api(
                &self.id,
                format!("entitlement:{v}"),
                GrantKind::License,
                format!("Entitlement {}", clean_max(&d, 80)),
                "SCIM entitlement on the user".into(),
                Risk::Medium,
            ));
        }
        match self.groups_of(&user, uid).await {
            Ok(groups) => {
                for (gid, name) in groups {
                    inv.grants.push(Grant::api(
                        &self.id,
                        format!("group:{gid}"),
                        GrantKind::Group,
                        format!("Group {}", clean_max(&name, 80)),
                        "membership removed on the group (PATCH /Groups)".into(),
                        Risk::Medium,
                    ));
                }
            }
            Err(e) => inv.failed.push((GrantKind::Group, e)),
        }
        inv.grants.extend(self.manual_grants());
        inv
    }

    async fn revoke(
        &self,
        account: &Account,
        grant: &Grant,
    ) -> Result<RevokeOutcome, ConnectorError> {
        let uid = &account.id;
        if let Some(gid) = grant.id.strip_prefix("group:") {
            return self
                .write(
                    "Groups",
                    gid,
                    vec![json!({"op": "remove", "path": format!("members[value eq {}]", quote(uid))})],
                    Self::remove_value("members", uid.clone()),
                )
                .await;
        }
        for (prefix, attr) in [("role:", "roles"), ("entitlement:", "entitlements")] {
            if let Some(v) = grant.id.strip_prefix(prefix) {
                return self
                    .write(
                        "Users",
                        uid,
                        vec![json!({"op": "remove", "path": format!("{attr}[value eq {}]", quote(v))})],
                        Self::remove_value(attr, v.to_string()),
                    )
                    .await;
            }
        }
        if grant.id.strip_prefix("account:") == Some(uid.as_str()) {
            return self.close_account(uid).await;
        }
        Err(ConnectorError::Refused {
            code: "manual".into(),
            message: format!("`{}` is not removed through SCIM", clean_max(&grant.id, 80)),
            manual: match &grant.revocation {
                Revocation::Manual { instructions } => instructions.clone(),
                Revocation::Api => "Remove it in the app's admin console.".into(),
            },
        })
    }

    async fn verify(
        &self,
        account: &Account,
        grants: &[Grant],
    ) -> Vec<(String, Result<Presence, ConnectorError>)> {
        let needs_user = grants
            .iter()
            .any(|g| !g.id.starts_with("group:") && !g.is_manual());
        // The user and each group asked about, read at once.
        let group_ids: Vec<&str> = grants
            .iter()
            .filter_map(|g| g.id.strip_prefix("group:"))
            .collect();
        let (user, groups) = tokio::join!(
            async {
                match needs_user {
                    true => Some(self.get("Users", &account.id).await),
                    false => None,
                }
            },
            futures::future::join_all(group_ids.iter().map(|gid| self.get("Groups", gid)))
        );
        let mut groups: HashMap<&str, Result<Option<Value>, ConnectorError>> =
            group_ids.into_iter().zip(groups).collect();
        let mut out = Vec::new();
        for g in grants {
            let r = if let Some(gid) = g.id.strip_prefix("group:") {
                // A fresh read of the group's members.
                match groups
                    .remove(gid)
                    .unwrap_or_else(|| Err(ConnectorError::BadResponse("not read".into())))
                {
                    Ok(None) => Ok(Presence::Absent),
                    Ok(Some(grp)) => Ok(
                        if values(&grp, "members")
                            .iter()
                            .any(|(v, _)| *v == account.id)
                        {
                            Presence::Present
                        } else {
                            Presence::Absent
                        },
                    ),
                    Err(e) => Err(e),
                }
            } else if g.is_manual() {
                Ok(Presence::Present)
            } else {
                match user.as_ref().expect("read above") {
                    Err(e) => Err(e.clone()),
                    Ok(None) => Ok(Presence::Absent),
                    Ok(Some(u)) => {
                        let held = |attr: &str, v: &str| {
                            values(u, attr).iter().any(|(x, _)| clean(x) == v)
                        };
                        let present = match g.id.split_once(':') {
                            Some(("account", _)) => Some(is_active(u)),
                            Some(("role", v)) => Some(held("roles", v)),
                            Some(("entitlement", v)) => Some(held("entitlements", v)),
                            _ => None,
                        };
                        match present {
                            Some(true) => Ok(Presence::Present),
                            Some(false) => Ok(Presence::Absent),
                            None => Err(crate::connector::not_read(g)),
                        }
                    }
                }
            };
            out.push((g.id.clone(), r));
        }
        out
    }

    fn health(&self) -> Health {
        Health::from_stats(&self.client.stats())
    }

    /// Every `/Users` page (`startIndex`/`count`), for the orphan sweep. A
    /// SCIM user is a member, unless its `userType` says guest or external.
    async fn list_accounts(&self) -> Result<Vec<crate::connector::ListedAccount>, ConnectorError> {
        let users = self.list("Users", None, None).await?;
        Ok(users
            .iter()
            .map(|u| {
                let guest = str_of(u, "userType").is_some_and(|t| {
                    let t = t.to_ascii_lowercase();
                    t.contains("guest") || t.contains("external")
                });
                crate::connector::ListedAccount {
                    account: self.account(u),
                    class: if guest {
                        crate::connector::AccountClass::Guest
                    } else {
                        crate::connector::AccountClass::Member
                    },
                    owner: None,
                }
            })
            .collect())
    }

    /// `/ServiceProviderConfig`, then a one-item `/Users` page (the token
    /// must be able to read users).
    async fn probe(&self) -> Result<(), ConnectorError> {
        self.support().await?;
        let url = self.url(&["Users"])?;
        self.client
            .send(ApiRequest::get(url).query(&[("startIndex", "1"), ("count", "1")]))
            .await?
            .json::<ListResponse>()
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_kinds_and_case_forms() {
        assert_eq!(
            title_case("tom.becker@example.com"),
            "Tom.Becker@example.com"
        );
        assert_eq!(step_kind("sessions"), GrantKind::Session);
        assert_eq!(step_kind("api_tokens"), GrantKind::ApiKey);
        assert_eq!(step_kind("licence"), GrantKind::License);
        assert_eq!(step_kind("data_transfer"), GrantKind::Delegation);
        assert_eq!(step_kind("owned_app"), GrantKind::OwnedApp);
    }
}
