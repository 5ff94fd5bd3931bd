//! Slack driver: Web API (`https://slack.com/api/{method}`) with an admin user
//! token, and SCIM v2 (`https://api.slack.com/scim/v2/`) with a SCIM token.
//!
//! Grants of one user:
//! - `account:{user}` (Account): deactivated with SCIM `PATCH /Users/{id}`
//!   `active:false`; verified by SCIM `GET /Users/{id}` showing
//!   `active:false`. Manual for the primary owner, or without a SCIM token.
//! - `workspace-role:{team}` (AdminRole): workspace admin/owner flags from
//!   `users.info`, removed with `admin.users.setRegular`. Manual for the
//!   primary owner.
//! - `role:{role_id}:{entity_id}` (AdminRole): `admin.roles.listAssignments`,
//!   removed with `admin.roles.removeAssignments`.
//! - `session:{session_id}` (Session): `admin.users.session.list`, ended
//!   with `admin.users.session.invalidate`.
//! - `usergroup:{id}` (Group): `usergroups.list` with `include_users`, removed
//!   with `usergroups.users.update` (see [`SlackDriver::remove_from_group`]).
//! - `app:{app_id}` (OwnedApp): apps the user installed, from
//!   `team.integrationLogs?user=` (newest entry per app says whether it is
//!   still installed). Always a manual hand-over: uninstalling an app with
//!   `admin.apps.uninstall` would cut it off for everyone, and no Slack API
//!   transfers app ownership.
//!
//! Assumptions where the specs are silent (from Slack's documentation):
//! - Every Web API error is HTTP 200 with `ok:false`; `ratelimited` comes
//!   as HTTP 429 with `Retry-After` (treated the same if it ever comes on 200).
//! - `users.lookupByEmail` also answers for deactivated users, with
//!   `deleted:true`; a deactivated user has no account grant, and only what
//!   the API still lists (sessions, groups, roles, apps) is shown.
//! - `admin.users.session.invalidate` answers `invalid_session` for a session
//!   that no longer exists: treated as already gone.
//! - `admin.roles.removeAssignments` succeeds when the assignment is already
//!   gone; the following read confirms.
//! - Slack SCIM v2 errors use the RFC 7644 body
//!   (`{"schemas":[…Error],"status":"404","detail"}`); v1 uses
//!   `{"Errors":{"code","description"}}`. Both are read.
//! - `usergroups.users.update` refuses an empty list (`invalid_users`), so a
//!   group whose only member is the leaver is disabled with
//!   `usergroups.disable` (setting `sole_member_groups = "disable"`) or left
//!   as a manual step (`"manual"`). A disabled group grants nothing and is no
//!   longer listed by `usergroups.list` without `include_disabled`.
//! - Rate limits (docs.slack.dev "Rate limits", and each method's "Facts"):
//!   Web API methods have tiers, applied per method, per app, per workspace:
//!   Tier 1 1+/min, Tier 2 20+/min, Tier 3 50+/min, Tier 4 100+/min, and
//!   "special" limits described per method. The methods called here:
//!   Tier 2: `admin.users.session.list`, `.invalidate`, `.reset`,
//!   `usergroups.list`, `usergroups.users.list`, `usergroups.disable`,
//!   `admin.roles.removeAssignments`, `admin.users.setRegular`,
//!   `team.integrationLogs`; Tier 3: `users.lookupByEmail`; Tier 4:
//!   `users.info`. Assumed where no method page was at hand:
//!   `usergroups.users.update` and `admin.roles.listAssignments` are Tier 2
//!   like the rest of their families, and `auth.test` (special) is paced
//!   like Tier 4. The driver keeps one token bucket per method, as Slack
//!   counts them, at its tier's rate: each method's tier from
//!   `settings.method_tiers` over [`default_method_tiers`], rates from
//!   `settings.tiers` over [`default_tiers`] (Slack's documented minimums,
//!   bursts sized by Slack's wording: "occasional" for Tier 2, "sporadic"
//!   for Tier 3, "generous" for Tier 4). A 429's `Retry-After` pauses only
//!   the method that got it, so a run of session invalidations never holds
//!   up group reads or lookups. A read that a write depends on (a user
//!   group's members) reserves both requests' tokens first, so the write
//!   follows its read at once.
//! - SCIM limits are org-wide and shared with every SCIM app of the org
//!   (reads 1000/min; writes 600/min, burst 180) with tighter per-endpoint
//!   limits: `GET /Users/{id}` 300/min (burst 300), `PATCH /Users/{id}`
//!   180/min (burst 20). The SCIM client paces itself by the endpoint limits
//!   (buckets `scim_read`, `scim_write` in `settings.tiers`); other apps'
//!   calls are only seen through 429 `Retry-After`.

/// The sign-in methods this driver uses (`auth.flow`): an admin user token
/// from a file or variable, or from Slack OAuth v2 (`offboard login`).
pub const FLOWS: &[crate::auth::oauth::Flow] = &[
    crate::auth::oauth::Flow::Static,
    crate::auth::oauth::Flow::AuthorizationCode,
];
use crate::connector::find_by_each_address;
use crate::connector::id_prefix as prefix;
use crate::connector::maybe;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use futures::future::join_all;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::auth::{StaticToken, TokenSource};
use crate::connector::http::{
    ApiClient, ApiRequest, BucketRate, PageGuard, VendorPolicy, Verdict, body_excerpt, retry_after,
};
use crate::connector::{
    AccountClass, BuildContext, Connector, ConnectorError, Health, Inventory, ListedAccount,
    Lookup, Presence, ResolvedConnector, RevokeOutcome,
};
use crate::model::{Account, Grant, GrantKind, Person, Revocation, Risk};
use crate::sanitize;

/// What to do with a user group whose only member is the leaver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SoleMember {
    /// `usergroups.disable`.
    #[default]
    Disable,
    /// A manual step.
    Manual,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlackSettings {
    /// Workspace for `admin.users.*` calls; default: the user's `team_id`.
    pub team_id: Option<String>,
    /// `limit` for cursor-paged methods.
    pub page_size: u32,
    pub sole_member_groups: SoleMember,
    pub group_write_attempts: u32,
    /// Loopback port of `offboard login`'s redirect (0: any free port); set
    /// it when the Slack app's registered redirect URL names a port.
    pub redirect_port: u16,
    /// Rate of each tier, merged over [`default_tiers`].
    pub tiers: BTreeMap<String, TierLimit>,
    /// Tier of each Web API method, merged over [`default_method_tiers`].
    pub method_tiers: BTreeMap<String, String>,
    /// Tier of a method named in neither.
    pub default_tier: String,
}

/// One tier's pace: `per_minute` sustained, `burst` requests at once
/// (default: a quarter of a minute's worth, at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierLimit {
    pub per_minute: f64,
    #[serde(default)]
    pub burst: Option<u32>,
}

impl TierLimit {
    const fn new(per_minute: f64, burst: u32) -> Self {
        Self {
            per_minute,
            burst: Some(burst),
        }
    }

    fn rate(&self) -> BucketRate {
        let burst = self
            .burst
            .unwrap_or((self.per_minute / 4.0).floor() as u32)
            .max(1);
        BucketRate::per_minute(self.per_minute, burst)
    }
}

/// Slack's documented tier minimums, and the SCIM endpoint limits.
pub fn default_tiers() -> BTreeMap<String, TierLimit> {
    [
        ("tier1", TierLimit::new(1.0, 1)),
        ("tier2", TierLimit::new(20.0, 5)),
        ("tier3", TierLimit::new(50.0, 15)),
        ("tier4", TierLimit::new(100.0, 30)),
        ("special", TierLimit::new(100.0, 30)),
        ("scim_read", TierLimit::new(300.0, 300)),
        ("scim_write", TierLimit::new(180.0, 20)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The tier of each Web API method this driver calls (see the module notes).
pub fn default_method_tiers() -> BTreeMap<String, String> {
    [
        ("auth.test", "special"),
        ("users.lookupByEmail", "tier3"),
        ("users.info", "tier4"),
        ("admin.users.session.list", "tier2"),
        ("admin.users.session.invalidate", "tier2"),
        ("admin.users.session.reset", "tier2"),
        ("admin.users.setRegular", "tier2"),
        ("admin.roles.listAssignments", "tier2"),
        ("admin.roles.removeAssignments", "tier2"),
        ("usergroups.list", "tier2"),
        ("usergroups.users.list", "tier2"),
        ("usergroups.users.update", "tier2"),
        ("usergroups.disable", "tier2"),
        ("team.integrationLogs", "tier2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// SCIM buckets (named in `settings.tiers`).
const SCIM_READ: &str = "scim_read";
const SCIM_WRITE: &str = "scim_write";

impl SlackSettings {
    /// `tiers` and `method_tiers` over the defaults, checked: every tier a
    /// method names exists, and every rate is positive.
    fn resolve_tiers(&mut self, id: &str) -> Result<(), ConnectorError> {
        let mut tiers = default_tiers();
        tiers.extend(std::mem::take(&mut self.tiers));
        let mut methods = default_method_tiers();
        methods.extend(std::mem::take(&mut self.method_tiers));
        for (name, t) in &tiers {
            if !(t.per_minute.is_finite() && t.per_minute > 0.0) || t.burst == Some(0) {
                return Err(ConnectorError::Config(format!(
                    "connectors.{id}.settings.tiers.{name}: expected per_minute > 0 and burst >= 1, found per_minute = {}, burst = {:?}",
                    t.per_minute, t.burst
                )));
            }
        }
        let known = || tiers.keys().cloned().collect::<Vec<_>>().join(", ");
        for (method, tier) in &methods {
            if !tiers.contains_key(tier) {
                return Err(ConnectorError::Config(format!(
                    "connectors.{id}.settings.method_tiers.\"{method}\": expected one of the tiers {}, found `{tier}`",
                    known()
                )));
            }
        }
        if !tiers.contains_key(&self.default_tier) {
            return Err(ConnectorError::Config(format!(
                "connectors.{id}.settings.default_tier: expected one of the tiers {}, found `{}`",
                known(),
                self.default_tier
            )));
        }
        self.tiers = tiers;
        self.method_tiers = methods;
        Ok(())
    }

    /// The tier a Web API method belongs to.
    pub fn tier_of(&self, method: &str) -> &str {
        self.method_tiers
            .get(method)
            .map_or(self.default_tier.as_str(), String::as_str)
    }

    /// The bucket a Web API method draws from: its own, at its tier's rate
    /// (Slack limits each method separately); a method with no tier of its
    /// own shares its default tier's bucket.
    pub fn bucket_of(&self, method: &str) -> String {
        if self.method_tiers.contains_key(method) {
            format!("method:{method}")
        } else {
            self.default_tier.clone()
        }
    }

    fn buckets(&self) -> Vec<(String, BucketRate)> {
        let tiers = self.tiers.iter().map(|(k, t)| (k.clone(), t.rate()));
        let methods = self
            .method_tiers
            .iter()
            .map(|(m, tier)| (format!("method:{m}"), self.tiers[tier].rate()));
        tiers.chain(methods).collect()
    }
}

impl Default for SlackSettings {
    fn default() -> Self {
        Self {
            team_id: None,
            page_size: 200,
            sole_member_groups: SoleMember::Disable,
            group_write_attempts: 5,
            redirect_port: 0,
            tiers: BTreeMap::new(),
            method_tiers: BTreeMap::new(),
            default_tier: "tier2".into(),
        }
    }
}

/// Web API answers: `ok:false` on HTTP 200 is an error, never data.
pub struct WebPolicy;

/// Error codes that mean the token itself is bad.
const AUTH_CODES: &[&str] = &[
    "not_authed",
    "invalid_auth",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "no_permission",
    "not_allowed_token_type",
    "org_login_required",
];

#[derive(Deserialize)]
struct Envelope {
    ok: Option<bool>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    needed: Option<String>,
    #[serde(default)]
    provided: Option<String>,
}

impl VendorPolicy for WebPolicy {
    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Verdict {
        let s = status.as_u16();
        if s == 429 {
            return Verdict::RateLimited(retry_after(headers));
        }
        if s == 408 || s >= 500 {
            return Verdict::Transient;
        }
        let env: Envelope = match serde_json::from_slice(body) {
            Ok(e) => e,
            Err(_) => {
                return Verdict::Fail(ConnectorError::BadResponse(format!(
                    "Slack answered HTTP {s} without its JSON envelope: {}",
                    body_excerpt(body)
                )));
            }
        };
        match (env.ok, env.error.as_deref()) {
            (Some(true), _) if status.is_success() => Verdict::Ok,
            (_, Some("ratelimited")) => Verdict::RateLimited(retry_after(headers)),
            (_, Some(code)) => {
                let code = sanitize::clean_max(code, 80);
                if code == "token_expired" {
                    // A rotating token ran out: renew it once and retry.
                    return Verdict::Unauthorized;
                }
                if AUTH_CODES.contains(&code.as_str()) {
                    return Verdict::Fail(ConnectorError::Auth(format!(
                        "Slack refused the admin token: {code}"
                    )));
                }
                let mut message = format!("Slack error `{code}`");
                if let Some(n) = env.needed {
                    message.push_str(&format!(
                        " (needed scope: {}; token has: {})",
                        sanitize::clean_max(&n, 120),
                        sanitize::clean_max(env.provided.as_deref().unwrap_or(""), 300)
                    ));
                }
                Verdict::Fail(ConnectorError::Api {
                    status: s,
                    code,
                    message,
                })
            }
            _ => Verdict::Fail(ConnectorError::BadResponse(format!(
                "Slack answered HTTP {s} without ok:true: {}",
                body_excerpt(body)
            ))),
        }
    }
}

/// SCIM answers: RFC 7644 errors (v2) or Slack's v1 `Errors` object.
pub struct ScimPolicy;

impl VendorPolicy for ScimPolicy {
    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Verdict {
        let s = status.as_u16();
        if status.is_success() {
            return Verdict::Ok;
        }
        if s == 429 {
            return Verdict::RateLimited(retry_after(headers));
        }
        if s == 408 || s >= 500 {
            return Verdict::Transient;
        }
        let detail = scim_detail(body);
        if s == 401 {
            return Verdict::Fail(ConnectorError::Auth(format!(
                "Slack SCIM refused the SCIM token: {detail}"
            )));
        }
        Verdict::Fail(ConnectorError::Api {
            status: s,
            code: String::new(),
            message: detail,
        })
    }
}

fn scim_detail(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = v["detail"]
        .as_str()
        .or_else(|| v["Errors"]["description"].as_str())
        .or_else(|| v["Errors"][0]["description"].as_str());
    match text {
        Some(t) => sanitize::clean_max(t, 200),
        None => body_excerpt(body),
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
struct SlackUser {
    id: String,
    #[serde(default)]
    team_id: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    real_name: Option<String>,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    is_admin: bool,
    #[serde(default)]
    is_owner: bool,
    #[serde(default)]
    is_primary_owner: bool,
    #[serde(default)]
    is_restricted: bool,
    #[serde(default)]
    is_ultra_restricted: bool,
    #[serde(default)]
    is_bot: bool,
    #[serde(default)]
    profile: Profile,
    #[serde(default)]
    enterprise_user: Option<EnterpriseUser>,
}

#[derive(Debug, Clone, Deserialize, Default)]
struct Profile {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    real_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
struct EnterpriseUser {
    #[serde(default)]
    enterprise_id: Option<String>,
    #[serde(default)]
    is_admin: bool,
    #[serde(default)]
    is_owner: bool,
    #[serde(default)]
    teams: Vec<String>,
}

#[derive(Deserialize)]
struct UserResp {
    user: SlackUser,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct SessionsResp {
    active_sessions: Vec<SessionObj>,
    #[serde(default)]
    response_metadata: Meta,
}

#[derive(Deserialize)]
struct SessionObj {
    /// A number in Slack's samples; read as either.
    session_id: Value,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    created: Option<DeviceInfo>,
    #[serde(default)]
    recent: Option<DeviceInfo>,
}

#[derive(Deserialize, Default, Clone)]
struct DeviceInfo {
    #[serde(default)]
    device_hardware: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    os_version: Option<String>,
    #[serde(default)]
    slack_client_version: Option<String>,
    #[serde(default)]
    ip: Option<String>,
}

#[derive(Deserialize)]
struct GroupsResp {
    usergroups: Vec<GroupObj>,
}

#[derive(Deserialize)]
struct GroupObj {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    handle: String,
    #[serde(default)]
    users: Option<Vec<String>>,
    #[serde(default)]
    date_delete: i64,
}

#[derive(Deserialize)]
struct GroupUsersResp {
    users: Vec<String>,
}

#[derive(Deserialize)]
struct GroupUpdateResp {
    usergroup: GroupUpdated,
}

#[derive(Deserialize)]
struct GroupUpdated {
    #[serde(default)]
    users: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RolesResp {
    role_assignments: Vec<RoleObj>,
    #[serde(default)]
    response_metadata: Meta,
}

#[derive(Deserialize)]
struct RoleObj {
    role_id: String,
    entity_id: String,
    user_id: String,
    #[serde(default)]
    date_create: Option<i64>,
}

#[derive(Deserialize)]
struct LogsResp {
    logs: Vec<LogObj>,
    paging: Paging,
}

#[derive(Deserialize)]
struct LogObj {
    #[serde(default)]
    app_id: Option<String>,
    #[serde(default)]
    service_id: Option<String>,
    #[serde(default)]
    service_type: Option<String>,
    change_type: String,
    #[serde(default)]
    date: Value,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
}

/// The newest integration-log entry of one app.
struct Install {
    date: i64,
    change: String,
    name: String,
    scope: String,
    user_id: String,
}

impl Install {
    fn installed(&self) -> bool {
        matches!(
            self.change.as_str(),
            "added" | "enabled" | "expanded" | "updated"
        )
    }
}

#[derive(Deserialize)]
struct MembersPage {
    #[serde(default)]
    members: Vec<SlackUser>,
    #[serde(default)]
    response_metadata: Meta,
}

#[derive(Deserialize)]
struct Paging {
    #[serde(default)]
    page: u32,
    #[serde(default)]
    pages: Option<u32>,
}

#[derive(Deserialize)]
struct ScimUser {
    #[serde(default)]
    active: Option<bool>,
}

pub struct SlackDriver {
    id: String,
    display_name: String,
    refresh: Duration,
    web: ApiClient,
    /// None when no SCIM token is configured: deactivation is manual.
    scim: Option<ApiClient>,
    base: Url,
    scim_base: Url,
    settings: SlackSettings,
    manual_steps: BTreeMap<String, String>,
    /// Scopes the admin token needs (manifest `auth.scopes`).
    scopes: Vec<String>,
}

impl SlackDriver {
    /// `users.list`, every page (deactivated members included).
    async fn members(&self) -> Result<Vec<SlackUser>, ConnectorError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        let mut guard = PageGuard::new();
        loop {
            let mut args = vec![("limit", "200")];
            if let Some(c) = &cursor {
                args.push(("cursor", c.as_str()));
            }
            let page: MembersPage = self.read("users.list", &args).await?;
            out.extend(page.members);
            match guard.next(page.response_metadata.next_cursor.as_deref())? {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    pub fn build(r: &ResolvedConnector, ctx: &BuildContext) -> Result<Self, ConnectorError> {
        let cfg = |e: crate::tomlfile::ConfigError| ConnectorError::Config(e.to_string());
        let base = r.url("base_url").map_err(cfg)?;
        let scim_base = r.url("scim_url").map_err(cfg)?;
        let mut settings: SlackSettings = r.settings().map_err(cfg)?;
        settings.resolve_tiers(&r.id)?;
        if settings.page_size == 0 || settings.page_size > 1000 {
            return Err(ConnectorError::Config(format!(
                "connectors.{}.settings.page_size: expected 1 to 1000, found {}",
                r.id, settings.page_size
            )));
        }
        let a = &r.manifest.auth;
        // The admin user token: static (token_env / token_file), or from
        // `offboard login` (Slack OAuth v2, cached and renewed) per auth.flow.
        let token = crate::apps::token_source(r, ctx)?;
        let web = ApiClient::new(
            ctx.http.clone(),
            r.http_settings(),
            std::slice::from_ref(&base),
            Some(token),
            Arc::new(WebPolicy),
            ctx.notices.clone(),
        )
        .with_buckets(settings.buckets());
        let scim = if a.scim_token_env.is_some() || a.scim_token_file.is_some() {
            let what = format!("connectors.{} SCIM token", r.id);
            let token = StaticToken::from_env_or_file(
                &what,
                a.scim_token_env.as_deref(),
                a.scim_token_file.as_deref().map(|p| r.path(p)).as_deref(),
            )?;
            let mut hs = r.http_settings();
            hs.connector = format!("{}/scim", r.id);
            Some(
                ApiClient::new(
                    ctx.http.clone(),
                    hs,
                    std::slice::from_ref(&scim_base),
                    Some(Arc::new(token) as Arc<dyn TokenSource>),
                    Arc::new(ScimPolicy),
                    ctx.notices.clone(),
                )
                .with_buckets(settings.buckets()),
            )
        } else {
            None
        };
        Ok(Self {
            id: r.id.clone(),
            display_name: r.manifest.display_name.clone(),
            refresh: r.refresh_interval(),
            web,
            scim,
            base,
            scim_base,
            settings,
            manual_steps: r.manifest.manual_steps.clone(),
            scopes: a.scopes.clone(),
        })
    }

    /// The Web API client (for health and tests of its counters).
    pub fn web_client(&self) -> &ApiClient {
        &self.web
    }

    fn manual(&self, step: &str, fallback: &str) -> Revocation {
        Revocation::Manual {
            instructions: self
                .manual_steps
                .get(step)
                .cloned()
                .unwrap_or_else(|| fallback.to_string()),
        }
    }

    /// A read method: GET with the arguments in the query.
    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        args: &[(&str, &str)],
    ) -> Result<T, ConnectorError> {
        self.send(self.read_request(method, args)?).await
    }

    fn read_request(
        &self,
        method: &str,
        args: &[(&str, &str)],
    ) -> Result<ApiRequest, ConnectorError> {
        let url = self.web.url(&self.base, &[method])?;
        Ok(ApiRequest::get(url)
            .query(args)
            .bucket(self.settings.bucket_of(method)))
    }

    /// A method with a form body (POST). `idempotent` when sending it twice
    /// does no harm.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        args: &[(&str, &str)],
        idempotent: bool,
    ) -> Result<T, ConnectorError> {
        self.send(self.call_request(method, args, idempotent)?)
            .await
    }

    fn call_request(
        &self,
        method: &str,
        args: &[(&str, &str)],
        idempotent: bool,
    ) -> Result<ApiRequest, ConnectorError> {
        let url = self.web.url(&self.base, &[method])?;
        let form = args
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        Ok(ApiRequest::new(Method::POST, url)
            .form(form)
            .idempotent(idempotent)
            .bucket(self.settings.bucket_of(method)))
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        req: ApiRequest,
    ) -> Result<T, ConnectorError> {
        self.web.send(req).await?.json()
    }

    fn team_of(&self, user: &SlackUser) -> Option<String> {
        self.settings.team_id.clone().or_else(|| {
            user.team_id.clone().or_else(|| {
                user.enterprise_user
                    .as_ref()
                    .and_then(|e| e.teams.first().cloned())
            })
        })
    }

    fn account_of(&self, u: &SlackUser) -> Account {
        let display = u
            .real_name
            .clone()
            .or_else(|| u.profile.real_name.clone())
            .unwrap_or_else(|| u.name.clone());
        let mut facts = Vec::new();
        if let Some(t) = self.team_of(u) {
            facts.push(("team_id".into(), sanitize::clean_max(&t, 40)));
        }
        if let Some(e) = u
            .enterprise_user
            .as_ref()
            .and_then(|e| e.enterprise_id.clone())
        {
            facts.push(("enterprise_id".into(), sanitize::clean_max(&e, 40)));
        }
        let kind = if u.is_bot {
            "bot"
        } else if u.is_ultra_restricted {
            "single-channel guest"
        } else if u.is_restricted {
            "multi-channel guest"
        } else if u.is_primary_owner {
            "primary owner"
        } else if u.is_owner {
            "owner"
        } else if u.is_admin {
            "admin"
        } else {
            "member"
        };
        facts.push(("user_type".into(), kind.into()));
        if u.deleted {
            facts.push(("status".into(), "deactivated".into()));
        }
        Account {
            // Slack keeps one address per user: `profile.email`.
            addresses: u
                .profile
                .email
                .iter()
                .map(|e| sanitize::clean_max(e, 254).to_ascii_lowercase())
                .collect(),
            matched_by: None,
            connector: self.id.clone(),
            id: sanitize::clean_max(&u.id, 40),
            login: sanitize::clean_max(u.profile.email.as_deref().unwrap_or(&u.name), 200),
            display_name: sanitize::clean_max(&display, 120),
            active: !u.deleted,
            is_admin: is_admin(u),
            last_login: None,
            facts,
        }
    }

    async fn user_info(&self, user_id: &str) -> Result<SlackUser, ConnectorError> {
        let r: UserResp = self.read("users.info", &[("user", user_id)]).await?;
        Ok(r.user)
    }

    fn grant(&self, id: String, kind: GrantKind, label: String, risk: Risk) -> Grant {
        Grant::api(self.id.clone(), id, kind, label, String::new(), risk)
    }

    /// Account and workspace-role grants from `users.info`.
    fn user_grants(&self, u: &SlackUser, team: Option<&str>) -> Vec<Grant> {
        let mut out = Vec::new();
        if u.deleted {
            return out;
        }
        if u.is_admin || u.is_owner || u.is_primary_owner {
            let role = if u.is_primary_owner {
                "Primary owner"
            } else if u.is_owner {
                "Workspace owner"
            } else {
                "Workspace admin"
            };
            let mut g = self.grant(
                format!("workspace-role:{}", team.unwrap_or("-")),
                GrantKind::AdminRole,
                format!("{role} of workspace {}", team.unwrap_or("?")),
                Risk::Critical,
            );
            if u.is_primary_owner {
                g.revocation = self.manual(
                    "primary_owner",
                    "Transfer primary ownership in the Slack admin pages first.",
                );
            } else if team.is_none() {
                g.revocation = self.manual(
                    "workspace_role",
                    "Set the user to a regular member in the Slack admin pages (no team_id known).",
                );
            } else {
                g.details = "admin.users.setRegular".into();
            }
            out.push(g);
        }
        let mut acc = self.grant(
            format!("account:{}", sanitize::clean_max(&u.id, 40)),
            GrantKind::Account,
            "Slack account".into(),
            Risk::High,
        );
        let guest = if u.is_ultra_restricted {
            "single-channel guest"
        } else if u.is_restricted {
            "multi-channel guest"
        } else {
            "member"
        };
        acc.details = format!("active {guest}; deactivated through SCIM");
        if u.is_primary_owner {
            acc.revocation = self.manual(
                "primary_owner",
                "The primary owner cannot be deactivated: transfer primary ownership first.",
            );
        } else if self.scim.is_none() {
            acc.revocation = self.manual(
                "deactivate",
                "Deactivate the account in the Slack admin pages.",
            );
        }
        out.push(acc);
        out
    }

    async fn list_sessions(
        &self,
        user_id: &str,
        team: Option<&str>,
    ) -> Result<Vec<Grant>, ConnectorError> {
        let mut out = Vec::new();
        let mut guard = PageGuard::new();
        let mut cursor: Option<String> = None;
        let limit = self.settings.page_size.to_string();
        loop {
            let mut args = vec![("user_id", user_id), ("limit", limit.as_str())];
            if let Some(t) = team {
                args.push(("team_id", t));
            }
            if let Some(c) = cursor.as_deref() {
                args.push(("cursor", c));
            }
            // A read, sent as POST as the SDKs do; safe to repeat.
            let page: SessionsResp = self.call("admin.users.session.list", &args, true).await?;
            for x in page.active_sessions {
                if x.user_id.as_deref().is_some_and(|u| u != user_id) {
                    continue;
                }
                let sid = match &x.session_id {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.clone(),
                    _ => {
                        return Err(ConnectorError::BadResponse(
                            "admin.users.session.list: a session without session_id".into(),
                        ));
                    }
                };
                let sid = sanitize::clean_max(&sid, 40);
                let dev = x.recent.clone().or(x.created.clone()).unwrap_or_default();
                let c = |s: &Option<String>| sanitize::clean_max(s.as_deref().unwrap_or("?"), 60);
                let mut g = self.grant(
                    format!("session:{sid}"),
                    GrantKind::Session,
                    format!(
                        "Session on {} ({} {})",
                        c(&dev.device_hardware),
                        c(&dev.os),
                        c(&dev.os_version)
                    ),
                    Risk::High,
                );
                g.details = format!(
                    "session {sid}, client {}, IP {}",
                    c(&dev.slack_client_version),
                    c(&dev.ip)
                );
                out.push(g);
            }
            match guard.next(page.response_metadata.next_cursor.as_deref())? {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(out)
    }

    async fn list_groups(
        &self,
        user_id: &str,
        team: Option<&str>,
    ) -> Result<Vec<Grant>, ConnectorError> {
        let mut args = vec![("include_users", "true"), ("include_disabled", "false")];
        if let (Some(t), Some(_)) = (team, self.settings.team_id.as_deref()) {
            // Org-level tokens need the workspace.
            args.push(("team_id", t));
        }
        let r: GroupsResp = self.read("usergroups.list", &args).await?;
        let mut out = Vec::new();
        for g in r.usergroups {
            if g.date_delete != 0 {
                continue;
            }
            let Some(users) = g.users else {
                return Err(ConnectorError::BadResponse(
                    "usergroups.list answered without member lists".into(),
                ));
            };
            if !users.iter().any(|u| u == user_id) {
                continue;
            }
            let mut grant = self.grant(
                format!("usergroup:{}", sanitize::clean_max(&g.id, 40)),
                GrantKind::Group,
                format!(
                    "@{} ({})",
                    sanitize::clean_max(&g.handle, 60),
                    sanitize::clean_max(&g.name, 80)
                ),
                Risk::Medium,
            );
            grant.details = format!("{} members", users.len());
            if users.len() == 1 {
                match self.settings.sole_member_groups {
                    SoleMember::Disable => {
                        grant.details =
                            "only member: the group will be disabled (usergroups.disable)".into();
                    }
                    SoleMember::Manual => {
                        grant.revocation = self.manual(
                            "sole_member_group",
                            "Add a new member to this user group, or disable it.",
                        );
                    }
                }
            }
            out.push(grant);
        }
        Ok(out)
    }

    async fn list_roles(&self, user_id: &str) -> Result<Vec<Grant>, ConnectorError> {
        let mut out = Vec::new();
        let mut guard = PageGuard::new();
        let mut cursor: Option<String> = None;
        let limit = self.settings.page_size.min(200).to_string();
        loop {
            let mut args = vec![("limit", limit.as_str())];
            if let Some(c) = cursor.as_deref() {
                args.push(("cursor", c));
            }
            // listAssignments has no user filter: read all, keep the user's.
            let page: RolesResp = self
                .call("admin.roles.listAssignments", &args, true)
                .await?;
            for r in page
                .role_assignments
                .into_iter()
                .filter(|r| r.user_id == user_id)
            {
                let role = sanitize::clean_max(&r.role_id, 40);
                let entity = sanitize::clean_max(&r.entity_id, 40);
                let mut g = self.grant(
                    format!("role:{role}:{entity}"),
                    GrantKind::AdminRole,
                    format!("Admin role {role} on {entity}"),
                    Risk::Critical,
                );
                g.since = r.date_create.map(|d| d.to_string());
                out.push(g);
            }
            match guard.next(page.response_metadata.next_cursor.as_deref())? {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(out)
    }

    /// The newest integration-log entry per app, of one user's or of
    /// everyone's (logs are read in full, old-style paging).
    async fn installs(
        &self,
        user_id: Option<&str>,
    ) -> Result<BTreeMap<String, Install>, ConnectorError> {
        let mut latest: BTreeMap<String, Install> = BTreeMap::new();
        let mut page_no = 1u32;
        let mut guard = PageGuard::new();
        loop {
            let p = page_no.to_string();
            let mut args = vec![("count", "100"), ("page", p.as_str())];
            if let Some(u) = user_id {
                args.push(("user", u));
            }
            let r: LogsResp = self.read("team.integrationLogs", &args).await?;
            for l in r.logs {
                let Some(app) = l.app_id.clone().or(l.service_id.clone()) else {
                    continue;
                };
                let date = match &l.date {
                    Value::String(s) => s.parse().unwrap_or(0),
                    Value::Number(n) => n.as_i64().unwrap_or(0),
                    _ => 0,
                };
                let newer = latest.get(&app).is_none_or(|e| date >= e.date);
                if newer {
                    latest.insert(
                        app,
                        Install {
                            date,
                            change: l.change_type,
                            name: l.service_type.unwrap_or_default(),
                            scope: l.scope.unwrap_or_default(),
                            user_id: l.user_id.unwrap_or_default(),
                        },
                    );
                }
            }
            let pages = r.paging.pages.unwrap_or(1);
            if r.paging.page >= pages {
                break;
            }
            page_no = r.paging.page + 1;
            guard.next(Some(&page_no.to_string()))?;
        }
        Ok(latest)
    }

    /// Apps the user installed that are still installed. The newest log
    /// entry per app decides.
    async fn list_apps(&self, user_id: &str) -> Result<Vec<Grant>, ConnectorError> {
        let latest = self.installs(Some(user_id)).await?;
        let mut out = Vec::new();
        for (app, i) in latest {
            if !i.installed() {
                continue;
            }
            let (date, name, scope) = (i.date, i.name, i.scope);
            let app = sanitize::clean_max(&app, 40);
            let name = if name.is_empty() {
                app.clone()
            } else {
                sanitize::clean_max(&name, 80)
            };
            let mut g = self.grant(
                format!("app:{app}"),
                GrantKind::OwnedApp,
                format!("App installed by the leaver: {name}"),
                Risk::Medium,
            );
            g.details = format!("app {app}, scopes {}", sanitize::clean_max(&scope, 200));
            g.since = Some(date.to_string());
            g.revocation = self.manual(
                "app_handover",
                "Hand over the app to a new owner before the account is deactivated.",
            );
            out.push(g);
        }
        Ok(out)
    }

    async fn group_members(
        &self,
        group: &str,
        prepaid: bool,
    ) -> Result<Vec<String>, ConnectorError> {
        let mut req = self.read_request(
            "usergroups.users.list",
            &[("usergroup", group), ("include_disabled", "true")],
        )?;
        if prepaid {
            req = req.prepaid();
        }
        let r: GroupUsersResp = self.send(req).await?;
        Ok(r.users)
    }

    /// Removes `user` from a user group without losing a concurrent change.
    /// Deactivated members, which Slack lists but refuses in a write, are
    /// left out of the list written (they have no access either way).
    ///
    /// `usergroups.users.update` replaces the whole member list and Slack
    /// offers no version or compare-and-swap, so the write is guarded:
    /// 1. take the rate-limit tokens of the read and the write together;
    /// 2. read the members (`usergroups.users.list`) and compute the list
    ///    without the leaver;
    /// 3. write at once, and check the list Slack answers with is exactly
    ///    the one computed (if the leaver is in it, or anyone of it is
    ///    missing, start over).
    ///
    /// A member added before step 2, however long step 1 waited, is
    /// therefore always kept, at one read per write. What remains is one
    /// request's round trip between the read and the write; a member added
    /// in it is visible to the other writer's own read and this driver's
    /// next listing (the operator sees the group list refresh).
    /// After `group_write_attempts` conflicting rounds the removal fails
    /// and nothing more is written.
    async fn remove_from_group(
        &self,
        group: &str,
        user: &str,
    ) -> Result<RevokeOutcome, ConnectorError> {
        let attempts = self.settings.group_write_attempts.max(1);
        // Deactivated members Slack refuses in a write (`invalid_users`),
        // though `usergroups.users.list` still lists them: left out.
        let mut deactivated: HashSet<String> = HashSet::new();
        for round in 0..attempts {
            // The read and the write go out back to back: both tokens are
            // taken before the read, so no rate-limit wait opens a window
            // between them, and the list written is the one just read (one
            // read per write: an earlier read would only cost a token).
            let (list, update) = (
                self.settings.bucket_of("usergroups.users.list"),
                self.settings.bucket_of("usergroups.users.update"),
            );
            self.web.reserve(&[Some(&list), Some(&update)]).await;
            let current = self.group_members(group, true).await?;
            if !current.iter().any(|u| u == user) {
                return Ok(if round == 0 {
                    RevokeOutcome::AlreadyGone
                } else {
                    RevokeOutcome::Accepted
                });
            }
            let desired: Vec<String> = current
                .iter()
                .filter(|u| *u != user && !deactivated.contains(*u))
                .cloned()
                .collect();
            if desired.is_empty() {
                return match self.settings.sole_member_groups {
                    SoleMember::Disable => {
                        let _: Value = self
                            .call("usergroups.disable", &[("usergroup", group)], true)
                            .await?;
                        Ok(RevokeOutcome::Accepted)
                    }
                    SoleMember::Manual => Err(ConnectorError::Refused {
                        code: "sole_member".into(),
                        message: "the leaver is the group's only member".into(),
                        manual: self
                            .manual_steps
                            .get("sole_member_group")
                            .cloned()
                            .unwrap_or_else(|| "Add a member to the group, or disable it.".into()),
                    }),
                };
            }
            let users = desired.join(",");
            let written: GroupUpdateResp = match self
                .send(
                    self.call_request(
                        "usergroups.users.update",
                        &[("usergroup", group), ("users", &users)],
                        true,
                    )?
                    .prepaid(),
                )
                .await
            {
                Ok(w) => w,
                Err(ConnectorError::Api { code, .. }) if code == "invalid_users" => {
                    // Which members are deactivated? Only asked when Slack
                    // refuses the list, one `users.info` each (Tier 4).
                    let infos = join_all(desired.iter().map(|u| self.user_info(u))).await;
                    let newly: Vec<String> = desired
                        .iter()
                        .zip(infos)
                        .filter(|(_, i)| i.as_ref().is_ok_and(|i| i.deleted))
                        .map(|(u, _)| u.clone())
                        .collect();
                    if newly.is_empty() {
                        return Err(ConnectorError::Refused {
                            code: "invalid_users".into(),
                            message: "Slack refused the group's remaining member list (invalid_users), and no member reads as deactivated".into(),
                            manual: "Remove the leaver in Slack's user group settings; Slack refuses the list offboard would write.".into(),
                        });
                    }
                    tracing::info!(connector = %self.id, round, left_out = newly.len(), "user group holds deactivated members; writing without them");
                    deactivated.extend(newly);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match written.usergroup.users {
                Some(w) if set(&w) == set(&desired) => return Ok(RevokeOutcome::Accepted),
                None => return Ok(RevokeOutcome::Accepted),
                Some(_) => {
                    tracing::info!(connector = %self.id, round, "user group answer differs from the list written; re-reading");
                    continue;
                }
            }
        }
        Err(ConnectorError::Refused {
            code: "concurrent_changes".into(),
            message: format!(
                "the user group kept changing during {attempts} attempts; nothing was overwritten"
            ),
            manual: "Retry in a moment, or remove the member in Slack's user group settings."
                .into(),
        })
    }

    fn scim_client(&self) -> Result<&ApiClient, ConnectorError> {
        self.scim.as_ref().ok_or_else(|| {
            ConnectorError::Config(format!(
                "connector `{}`: no SCIM token configured (auth.scim_token_env or auth.scim_token_file)",
                self.id
            ))
        })
    }

    /// SCIM `active` of a user; `None` when SCIM answers 404.
    async fn scim_active(&self, user_id: &str) -> Result<Option<bool>, ConnectorError> {
        let scim = self.scim_client()?;
        let url = scim.url(&self.scim_base, &["Users", user_id])?;
        match scim.send(ApiRequest::get(url).bucket(SCIM_READ)).await {
            Ok(r) => {
                let u: ScimUser = r.json()?;
                u.active
                    .map(Some)
                    .ok_or_else(|| ConnectorError::BadResponse("SCIM user without `active`".into()))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn deactivate(&self, user_id: &str) -> Result<RevokeOutcome, ConnectorError> {
        let scim = self.scim_client()?;
        let url = scim.url(&self.scim_base, &["Users", user_id])?;
        let body = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": false}],
        });
        let req = ApiRequest::new(Method::PATCH, url)
            .json(body)
            .idempotent(true)
            .bucket(SCIM_WRITE);
        match scim.send(req).await {
            Ok(_) => Ok(RevokeOutcome::Accepted),
            // Slack never deletes users: SCIM not knowing one the Web API
            // just found means the SCIM token belongs elsewhere. Fail now
            // rather than wait for verification to run out.
            Err(e) if e.is_not_found() => Err(ConnectorError::Refused {
                code: "scim_user_not_found".into(),
                message: format!(
                    "SCIM does not know user {}: the SCIM token may belong to another workspace or org",
                    crate::sanitize::clean_max(user_id, 40)
                ),
                manual: "check that the SCIM token is for this workspace (Slack admin > Settings > SCIM), or deactivate the account in the admin dashboard".into(),
            }),
            Err(e) => Err(e),
        }
    }
}

fn set(v: &[String]) -> BTreeSet<&str> {
    v.iter().map(String::as_str).collect()
}

fn is_admin(u: &SlackUser) -> bool {
    u.is_admin
        || u.is_owner
        || u.is_primary_owner
        || u.enterprise_user
            .as_ref()
            .is_some_and(|e| e.is_admin || e.is_owner)
}

fn fact<'a>(a: &'a Account, k: &str) -> Option<&'a str> {
    a.facts
        .iter()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.as_str())
}

#[async_trait]
impl Connector for SlackDriver {
    fn id(&self) -> &str {
        &self.id
    }

    fn display_name(&self) -> &str {
        &self.display_name
    }

    fn refresh_interval(&self) -> Duration {
        self.refresh
    }

    async fn find_person(&self, person: &Person) -> Result<Lookup, ConnectorError> {
        // The primary address, then each alias learned elsewhere.
        find_by_each_address(person, |address| async move {
            match self
                .read::<UserResp>("users.lookupByEmail", &[("email", &address)])
                .await
            {
                Ok(r) => Ok(Lookup::Found {
                    account: self.account_of(&r.user),
                }),
                // The only answer that means "no such user"; every other
                // error is a failed read.
                Err(e) if e.code() == Some("users_not_found") => Ok(Lookup::NotFound),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn list_grants(&self, account: &Account) -> Inventory {
        let mut inv = Inventory::default();
        let uid = account.id.as_str();
        let info = self.user_info(uid).await;
        let team: Option<String> = match &info {
            Ok(u) => self.team_of(u),
            Err(_) => self
                .settings
                .team_id
                .clone()
                .or_else(|| fact(account, "team_id").map(str::to_string)),
        };
        match &info {
            Ok(u) => inv.grants.extend(self.user_grants(u, team.as_deref())),
            Err(e) => {
                inv.failed.push((GrantKind::Account, e.clone()));
            }
        }
        let (sessions, groups, roles, apps) = tokio::join!(
            self.list_sessions(uid, team.as_deref()),
            self.list_groups(uid, team.as_deref()),
            self.list_roles(uid),
            self.list_apps(uid),
        );
        match sessions {
            Ok(g) => inv.grants.extend(g),
            Err(e) => inv.failed.push((GrantKind::Session, e)),
        }
        match groups {
            Ok(g) => inv.grants.extend(g),
            Err(e) => inv.failed.push((GrantKind::Group, e)),
        }
        // Admin roles come from two reads: either failing makes the kind failed.
        let role_err = info.as_ref().err().cloned();
        match (roles, role_err) {
            (Ok(g), None) => inv.grants.extend(g),
            (Err(e), _) | (Ok(_), Some(e)) => {
                inv.grants.retain(|g| g.kind != GrantKind::AdminRole);
                inv.failed.push((GrantKind::AdminRole, e));
            }
        }
        match apps {
            Ok(g) => inv.grants.extend(g),
            Err(e) => inv.failed.push((GrantKind::OwnedApp, e)),
        }
        inv
    }

    async fn revoke(
        &self,
        account: &Account,
        grant: &Grant,
    ) -> Result<RevokeOutcome, ConnectorError> {
        if let Revocation::Manual { instructions } = &grant.revocation {
            return Err(ConnectorError::Refused {
                code: "manual".into(),
                message: "this grant is removed by a person".into(),
                manual: instructions.clone(),
            });
        }
        let uid = account.id.as_str();
        let team = self
            .settings
            .team_id
            .clone()
            .or_else(|| fact(account, "team_id").map(str::to_string));
        let need_team = || {
            team.clone().ok_or_else(|| {
                ConnectorError::Config(format!(
                    "connector `{}`: no team_id for {uid} (set settings.team_id)",
                    self.id
                ))
            })
        };
        let (prefix, rest) = grant.id.split_once(':').unwrap_or((grant.id.as_str(), ""));
        match prefix {
            "session" => {
                let t = need_team()?;
                let r: Result<Value, _> = self
                    .call(
                        "admin.users.session.invalidate",
                        &[("session_id", rest), ("team_id", &t)],
                        true,
                    )
                    .await;
                match r {
                    Ok(_) => Ok(RevokeOutcome::Accepted),
                    Err(e) if e.code() == Some("invalid_session") => Ok(RevokeOutcome::AlreadyGone),
                    Err(e) => Err(e),
                }
            }
            "usergroup" => self.remove_from_group(rest, uid).await,
            "role" => {
                let (role, entity) = rest.split_once(':').ok_or_else(|| {
                    ConnectorError::BadResponse(format!("malformed role grant id `{}`", grant.id))
                })?;
                let _: Value = self
                    .call(
                        "admin.roles.removeAssignments",
                        &[("role_id", role), ("entity_ids", entity), ("user_ids", uid)],
                        true,
                    )
                    .await?;
                Ok(RevokeOutcome::Accepted)
            }
            "workspace-role" => {
                let t = need_team()?;
                let _: Value = self
                    .call(
                        "admin.users.setRegular",
                        &[("team_id", &t), ("user_id", uid)],
                        true,
                    )
                    .await?;
                Ok(RevokeOutcome::Accepted)
            }
            "account" => self.deactivate(uid).await,
            _ => Err(ConnectorError::Refused {
                code: "unknown_grant".into(),
                message: format!("`{}` is not a grant this driver revokes", grant.id),
                manual: "Remove it in the Slack admin pages.".into(),
            }),
        }
    }

    /// Re-reads only what the asked grants need: `users.info` for the
    /// account and workspace role (SCIM for a deactivation when a SCIM
    /// token is configured), and one listing per other kind asked about.
    async fn verify(
        &self,
        account: &Account,
        grants: &[Grant],
    ) -> Vec<(String, Result<Presence, ConnectorError>)> {
        let uid = account.id.as_str();
        let has = |p: &str| grants.iter().any(|g| prefix(g) == p);
        let scim_account =
            |g: &Grant| g.kind == GrantKind::Account && self.scim.is_some() && !g.is_manual();
        let known_team = self
            .settings
            .team_id
            .clone()
            .or_else(|| fact(account, "team_id").map(str::to_string));
        let need_info = has("workspace-role")
            || grants
                .iter()
                .any(|g| prefix(g) == "account" && !scim_account(g))
            || (known_team.is_none() && (has("session") || has("usergroup")));
        let info = match need_info {
            true => Some(self.user_info(uid).await),
            false => None,
        };
        let team = known_team.or_else(|| match &info {
            Some(Ok(u)) => self.team_of(u),
            _ => None,
        });
        let team = team.as_deref();
        let (sessions, groups, roles, apps, scim) = tokio::join!(
            maybe(has("session"), self.list_sessions(uid, team)),
            maybe(has("usergroup"), self.list_groups(uid, team)),
            maybe(has("role"), self.list_roles(uid)),
            maybe(has("app"), self.list_apps(uid)),
            maybe(grants.iter().any(scim_account), self.scim_active(uid)),
        );
        let from_info = info.map(|r| r.map(|u| self.user_grants(&u, team)));
        let present = |list: &Option<Result<Vec<Grant>, ConnectorError>>, g: &Grant| match list {
            Some(Ok(list)) => Ok(if list.iter().any(|x| x.id == g.id) {
                Presence::Present
            } else {
                Presence::Absent
            }),
            Some(Err(e)) => Err(e.clone()),
            None => Err(ConnectorError::BadResponse("not read".into())),
        };
        grants
            .iter()
            .map(|g| {
                let r = match prefix(g) {
                    // SCIM is the source of truth for deactivation.
                    "account" if scim_account(g) => match &scim {
                        Some(Ok(Some(true))) => Ok(Presence::Present),
                        Some(Ok(Some(false))) => Ok(Presence::Absent),
                        // Slack never deletes a user: a SCIM 404 for the
                        // account users.lookupByEmail found means the SCIM
                        // token speaks for another org or workspace, not
                        // that the account is closed.
                        Some(Ok(None)) => Err(ConnectorError::BadResponse(
                            "SCIM does not know this user (404), so its deactivation cannot be confirmed; check that the SCIM token belongs to the user's organisation".into(),
                        )),
                        Some(Err(e)) => Err(e.clone()),
                        None => Err(ConnectorError::BadResponse("not read".into())),
                    },
                    "account" | "workspace-role" => present(&from_info, g),
                    "session" => present(&sessions, g),
                    "usergroup" => present(&groups, g),
                    "role" => present(&roles, g),
                    "app" => present(&apps, g),
                    _ => Err(crate::connector::not_read(g)),
                };
                (g.id.clone(), r)
            })
            .collect()
    }

    /// `users.list` (cursor-paged, 200 a page): one read of the workspace's
    /// members answers for every leaver it lists.
    async fn find_people(
        &self,
        people: &[Person],
    ) -> Result<Vec<(String, Lookup)>, ConnectorError> {
        let accounts: Vec<Account> = self
            .members()
            .await?
            .iter()
            .map(|u| self.account_of(u))
            .collect();
        Ok(crate::connector::match_listed(people, &accounts))
    }

    /// `users.list` (cursor-paged, deactivated members included) and
    /// `team.integrationLogs` (the apps still installed, each owned by
    /// whoever installed it last).
    async fn list_accounts(&self) -> Result<Vec<ListedAccount>, ConnectorError> {
        let mut out = Vec::new();
        let mut emails: HashMap<String, String> = HashMap::new();
        for u in self.members().await? {
            let account = self.account_of(&u);
            if let Some(e) = &u.profile.email {
                emails.insert(u.id.clone(), sanitize::clean_max(e, 254));
            }
            let class = if u.is_bot {
                AccountClass::NonHuman
            } else if u.is_restricted || u.is_ultra_restricted {
                AccountClass::Guest
            } else {
                AccountClass::Member
            };
            out.push(ListedAccount {
                account,
                class,
                owner: None,
            });
        }
        for (app, i) in self.installs(None).await? {
            if !i.installed() {
                continue;
            }
            let app = sanitize::clean_max(&app, 40);
            let name = if i.name.is_empty() {
                app.clone()
            } else {
                sanitize::clean_max(&i.name, 80)
            };
            let owner = emails
                .get(&i.user_id)
                .cloned()
                .unwrap_or_else(|| sanitize::clean_max(&i.user_id, 40));
            out.push(ListedAccount {
                account: Account {
                    connector: self.id.clone(),
                    id: format!("app:{app}"),
                    login: name.clone(),
                    display_name: format!("App {name}"),
                    active: true,
                    is_admin: false,
                    last_login: chrono::DateTime::from_timestamp(i.date, 0).map(|d| d.to_rfc3339()),
                    facts: vec![("user_type".into(), "app".into())],
                    addresses: Vec::new(),
                    matched_by: None,
                },
                class: AccountClass::NonHuman,
                owner: (!owner.is_empty()).then_some(owner),
            });
        }
        Ok(out)
    }

    fn health(&self) -> Health {
        Health::from_stats(&self.web.stats())
    }

    /// `auth.test` (`ok:true` checked by the policy), then the token's
    /// scopes from Slack's `x-oauth-scopes` header against the manifest's.
    async fn probe(&self) -> Result<(), ConnectorError> {
        let url = self.web.url(&self.base, &["auth.test"])?;
        let resp = self
            .web
            .send(ApiRequest::get(url).bucket(self.settings.bucket_of("auth.test")))
            .await?;
        let _: Value = resp.json()?;
        let Some(have) = resp
            .headers
            .get("x-oauth-scopes")
            .and_then(|v| v.to_str().ok())
        else {
            // Not reported: the admin methods' `missing_scope` answers will
            // name any scope that is lacking.
            return Ok(());
        };
        let have: BTreeSet<&str> = have.split(',').map(str::trim).collect();
        let missing: Vec<&str> = self
            .scopes
            .iter()
            .map(String::as_str)
            .filter(|s| !have.contains(s))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ConnectorError::Auth(format!(
                "the Slack token lacks scopes: {}",
                sanitize::clean_max(&missing.join(" "), 400)
            )))
        }
    }
}
