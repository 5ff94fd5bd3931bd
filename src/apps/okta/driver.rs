//! Okta driver: the Management API (`/api/v1`) of the org.
//!
//! What it reads and removes:
//! - phase 1: every session, with the OAuth tokens Okta issued in them
//!   (`DELETE /users/{id}/sessions?oauthTokens=true`; Okta cannot list
//!   sessions, so this ends `acknowledged`), OAuth consent grants
//!   (`/users/{id}/grants`), refresh tokens per client
//!   (`/users/{id}/clients/{clientId}/tokens`), API tokens the leaver owns
//!   (`GET /api-tokens`, kept where `userId` is theirs: they act with the
//!   leaver's rights after they leave), enrolled factors;
//! - phase 2: admin roles assigned to the user (`assignmentType` USER; a
//!   GROUP one is a manual step at the group), OKTA_GROUP memberships
//!   (APP_GROUP and BUILT_IN ones are manual: their source owns them), app
//!   assignments made to the user (`scope` USER; a GROUP one is manual at the
//!   group);
//! - phase 3: suspend (`lifecycle/suspend`, which keeps every assignment), or
//!   deactivate when `settings.close = "deactivate"`: asynchronous
//!   (`Prefer: respond-async`), and destructive (it deprovisions every app),
//!   so it is confirmed by a fresh read of the user's `status`.
//!
//! Lookup: `GET /users/{login}` (strongly consistent), then
//! `search=profile.email eq "…"` (case-insensitive, but eventually
//! consistent: a user changed seconds ago may not be found by it yet).
//! Never `filter=profile.email eq`, which compares case-sensitively.
//!
//! Paging follows `Link: <…>; rel="next"` through the shared client's
//! same-origin check and page guard. `X-Rate-Limit-*` paces the client
//! before Okta refuses ([`OktaPolicy::pace`]); a 429 `E0000047` waits until
//! `X-Rate-Limit-Reset`.

use crate::connector::id_prefix as prefix;
use crate::connector::maybe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::auth::oauth::Flow;
use crate::connector::http::{
    ApiClient, ApiRequest, PageGuard, VendorPolicy, Verdict, default_classify, header_u64,
    next_link, until_epoch,
};
use crate::connector::{
    BuildContext, Connector, ConnectorError, Health, Inventory, Lookup, Presence,
    ResolvedConnector, RevokeOutcome, find_by_each_address,
};
use crate::model::{Account, Grant, GrantKind, Person, Phase, Revocation, Risk};
use crate::sanitize::{clean, clean_max};

/// The sign-in methods this driver uses: an API token (`SSWS`), or an OAuth
/// service app with client credentials (`private_key_jwt`).
pub const FLOWS: &[Flow] = &[Flow::Static, Flow::ClientCredentials];

/// How the account is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Close {
    /// Suspend: sign-in blocked, assignments kept (the default).
    Suspend,
    /// Deactivate: DEPROVISIONED, every app deprovisioned.
    Deactivate,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default = "default_close")]
    pub close: Close,
    /// `limit` asked of paged lists.
    #[serde(default = "default_page")]
    pub page_size: u32,
}

fn default_close() -> Close {
    Close::Suspend
}

fn default_page() -> u32 {
    200
}

/// Okta's answers: `{errorCode, errorSummary, errorCauses}` errors, 429
/// `E0000047` until `X-Rate-Limit-Reset`, and `X-Rate-Limit-*` headroom.
pub struct OktaPolicy;

/// Seconds from now until the epoch second in `X-Rate-Limit-Reset` (never
/// more than Okta's longest window, an hour).
fn until_reset(headers: &HeaderMap) -> Option<Duration> {
    until_epoch(headers, "x-rate-limit-reset", Duration::from_secs(3600))
}

/// `(errorCode, errorSummary and causes)` of an Okta error body.
fn error_of(body: &[u8]) -> Option<(String, String)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let code = v.get("errorCode")?.as_str()?;
    let mut text = v
        .get("errorSummary")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let causes: Vec<&str> = v
        .get("errorCauses")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("errorSummary").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if !causes.is_empty() {
        text = format!("{text} ({})", causes.join("; "));
    }
    Some((clean_max(code, 40), clean_max(&text, 300)))
}

impl VendorPolicy for OktaPolicy {
    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Verdict {
        if status.is_success() {
            return Verdict::Ok;
        }
        match status.as_u16() {
            // E0000047: wait for the window's reset (Retry-After when no
            // reset is given).
            429 => Verdict::RateLimited(
                until_reset(headers)
                    .map(|d| d + Duration::from_millis(100))
                    .or_else(|| crate::connector::http::retry_after(headers)),
            ),
            401 => Verdict::Unauthorized,
            408 | 500 | 502 | 503 | 504 => Verdict::Transient,
            s => match error_of(body) {
                Some((code, message)) => Verdict::Fail(ConnectorError::Api {
                    status: s,
                    code,
                    message,
                }),
                None => default_classify(status, headers, body),
            },
        }
    }

    /// The window's headroom: the shared client spreads what is left of
    /// it over the time to its reset, and holds requests once it is spent
    /// (see [`crate::connector::http::pacing`]).
    fn limit_info(&self, headers: &HeaderMap) -> Option<crate::connector::http::LimitInfo> {
        let limit = header_u64(headers, "x-rate-limit-limit")?;
        let remaining = header_u64(headers, "x-rate-limit-remaining")?;
        Some(crate::connector::http::LimitInfo {
            text: format!("rate limit {remaining}/{limit} left this window"),
            usage: Some((limit.saturating_sub(remaining), limit)),
            resets_in: until_reset(headers),
        })
    }
}

/// Escapes a value for a double-quoted Okta expression string.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn s(v: &Value, f: &str) -> String {
    v.get(f)
        .and_then(Value::as_str)
        .map(clean)
        .unwrap_or_default()
}

fn id_of(v: &Value) -> Result<String, ConnectorError> {
    let id = v.get("id").and_then(Value::as_str).unwrap_or("");
    if id.is_empty() || id.len() > 100 {
        return Err(ConnectorError::BadResponse(format!(
            "an object without a valid id: `{}`",
            clean_max(id, 40)
        )));
    }
    Ok(id.to_string())
}

pub struct Okta {
    id: String,
    display_name: String,
    client: ApiClient,
    base: Url,
    close: Close,
    page_size: u32,
    refresh: Duration,
}

impl Okta {
    pub fn new(resolved: &ResolvedConnector, ctx: &BuildContext) -> Result<Self, ConnectorError> {
        let cfg = |e: crate::tomlfile::ConfigError| ConnectorError::Config(e.to_string());
        let settings: Settings = resolved.settings().map_err(cfg)?;
        if !(1..=200).contains(&settings.page_size) {
            return Err(ConnectorError::Config(format!(
                "key `connectors.{}.settings.page_size`: expected 1 to 200, found {}",
                resolved.id, settings.page_size
            )));
        }
        let base = resolved.url("base_url").map_err(cfg)?;
        let flow = Flow::of(resolved)?;
        let auth = crate::apps::token_source(resolved, ctx)?;
        let mut client = ApiClient::new(
            ctx.http.clone(),
            resolved.http_settings(),
            std::slice::from_ref(&base),
            Some(auth),
            Arc::new(OktaPolicy),
            ctx.notices.clone(),
        );
        if flow == Flow::Static {
            // An Okta API token goes in `Authorization: SSWS {token}`.
            client = client.with_auth_scheme("SSWS");
        }
        Ok(Self {
            id: resolved.id.clone(),
            display_name: resolved.manifest.display_name.clone(),
            client,
            base,
            close: settings.close,
            page_size: settings.page_size,
            refresh: resolved.refresh_interval(),
        })
    }

    pub fn client_stats(&self) -> crate::connector::http::ClientStats {
        self.client.stats()
    }

    fn url(&self, segments: &[&str]) -> Result<Url, ConnectorError> {
        let mut all = vec!["api", "v1"];
        all.extend_from_slice(segments);
        self.client.url(&self.base, &all)
    }

    /// Every page of a list, following `Link: rel="next"` (same origin only).
    async fn list(&self, mut url: Url, paged: bool) -> Result<Vec<Value>, ConnectorError> {
        if paged {
            url.query_pairs_mut()
                .append_pair("limit", &self.page_size.to_string());
        }
        let mut guard = PageGuard::new();
        let mut out = Vec::new();
        loop {
            let resp = self.client.send(ApiRequest::get(url)).await?;
            let items: Vec<Value> = resp.json()?;
            out.extend(items);
            let Some(next) = guard.next(next_link(&resp.headers).as_deref())? else {
                break;
            };
            url = self.client.resolve_link(&self.base, &next)?;
        }
        Ok(out)
    }

    async fn get_user(&self, key: &str) -> Result<Option<Value>, ConnectorError> {
        match self
            .client
            .send(ApiRequest::get(self.url(&["users", key])?))
            .await
        {
            Ok(r) => Ok(Some(r.json()?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn find_address(&self, address: &str) -> Result<Lookup, ConnectorError> {
        let address = address.trim();
        if let Some(u) = self.get_user(address).await? {
            return Ok(Lookup::Found {
                account: self.account(&u)?,
            });
        }
        // Not a login: the profile email, through `search` (case-insensitive).
        let mut url = self.url(&["users"])?;
        url.query_pairs_mut()
            .append_pair("search", &format!("profile.email eq {}", quote(address)));
        let rows = self.list(url, true).await?;
        let mut accounts = Vec::new();
        for r in &rows {
            let a = self.account(r)?;
            if !accounts.iter().any(|x: &Account| x.id == a.id) {
                accounts.push(a);
            }
        }
        Ok(match accounts.len() {
            0 => Lookup::NotFound,
            1 => Lookup::Found {
                account: accounts.pop().expect("one"),
            },
            _ => Lookup::Ambiguous {
                candidates: accounts,
            },
        })
    }

    fn account(&self, u: &Value) -> Result<Account, ConnectorError> {
        let profile = u.get("profile").cloned().unwrap_or(Value::Null);
        let status = s(u, "status");
        let email = s(&profile, "email").to_ascii_lowercase();
        let mut facts = vec![("status".to_string(), status.clone())];
        if let Some(t) = u.get("transitioningToStatus").and_then(Value::as_str) {
            facts.push(("transitioning to".into(), clean(t)));
        }
        if !email.is_empty() {
            facts.push(("email".into(), email.clone()));
        }
        Ok(Account {
            connector: self.id.clone(),
            id: id_of(u)?,
            login: s(&profile, "login"),
            display_name: format!("{} {}", s(&profile, "firstName"), s(&profile, "lastName"))
                .trim()
                .to_string(),
            active: !matches!(status.as_str(), "SUSPENDED" | "DEPROVISIONED"),
            is_admin: false,
            last_login: u.get("lastLogin").and_then(Value::as_str).map(clean),
            facts,
            addresses: if email.is_empty() {
                Vec::new()
            } else {
                vec![email]
            },
            matched_by: None,
        })
    }

    fn grant(
        &self,
        id: String,
        kind: GrantKind,
        label: String,
        details: String,
        risk: Risk,
    ) -> Grant {
        Grant::api(self.id.clone(), id, kind, label, details, risk)
    }

    fn manual(&self, mut g: Grant, instructions: String) -> Grant {
        g.revocation = Revocation::Manual { instructions };
        g
    }

    /// The account: sessions (always, while it can sign in) and closing it.
    async fn account_grants(&self, uid: &str) -> Result<Vec<Grant>, ConnectorError> {
        let Some(u) = self.get_user(uid).await? else {
            return Ok(Vec::new());
        };
        let status = s(&u, "status");
        let transitioning = u.get("transitioningToStatus").and_then(Value::as_str);
        let mut out = Vec::new();
        if status != "DEPROVISIONED" {
            let mut g = self.grant(
                format!("sessions:{uid}"),
                GrantKind::Session,
                "Every Okta session, and the OAuth tokens issued in them".into(),
                "Okta cannot list a user's sessions: they are ended all at once (apps' own sessions are not)".into(),
                Risk::High,
            );
            g.phase = Some(Phase::CutAccess);
            out.push(g);
        }
        let deactivating = transitioning == Some("DEPROVISIONED");
        match self.close {
            Close::Deactivate if status != "DEPROVISIONED" || deactivating => {
                out.push(self.grant(
                    format!("deactivate:{uid}"),
                    GrantKind::Account,
                    "Deactivate user".into(),
                    format!("now {status}; deprovisions every app assignment (destructive; settings.close = \"deactivate\")"),
                    Risk::High,
                ));
            }
            Close::Suspend if status == "ACTIVE" => {
                out.push(self.grant(
                    format!("suspend:{uid}"),
                    GrantKind::Account,
                    "Suspend user".into(),
                    "blocks sign-in; keeps app assignments and groups for a rehire".into(),
                    Risk::High,
                ));
            }
            Close::Suspend if !matches!(status.as_str(), "SUSPENDED" | "DEPROVISIONED") => {
                let g = self.grant(
                    format!("suspend:{uid}"),
                    GrantKind::Account,
                    "Suspend user".into(),
                    format!("status {status}: Okta suspends only ACTIVE users"),
                    Risk::High,
                );
                out.push(self.manual(
                    g,
                    format!("Okta suspends only ACTIVE users and this one is {status}: deactivate the user in the Admin Console (Directory > People), or set settings.close = \"deactivate\""),
                ));
            }
            _ => {}
        }
        Ok(out)
    }

    async fn consent_grants(&self, uid: &str) -> Result<Vec<Grant>, ConnectorError> {
        let rows = self
            .list(self.url(&["users", uid, "grants"])?, true)
            .await?;
        rows.iter()
            .map(|r| {
                let mut g = self.grant(
                    format!("grant:{}", id_of(r)?),
                    GrantKind::OauthGrant,
                    format!(
                        "OAuth consent: {} to client {}",
                        s(r, "scopeId"),
                        s(r, "clientId")
                    ),
                    format!("issuer {}; source {}", s(r, "issuer"), s(r, "source")),
                    Risk::Medium,
                );
                g.since = r.get("created").and_then(Value::as_str).map(clean);
                Ok(g)
            })
            .collect()
    }

    /// Refresh tokens, one grant per client that holds any.
    async fn token_grants(&self, uid: &str) -> Result<Vec<Grant>, ConnectorError> {
        let clients = self
            .list(self.url(&["users", uid, "clients"])?, false)
            .await?;
        let mut out = Vec::new();
        for c in &clients {
            let cid = s(c, "client_id");
            if cid.is_empty() {
                return Err(ConnectorError::BadResponse(
                    "a client without client_id".into(),
                ));
            }
            let tokens = self
                .list(self.url(&["users", uid, "clients", &cid, "tokens"])?, true)
                .await?;
            if tokens.is_empty() {
                continue;
            }
            out.push(self.grant(
                format!("tokens:{cid}"),
                GrantKind::OauthGrant,
                format!("OAuth tokens of {}", s(c, "client_name")),
                format!("{} refresh token(s), client {cid}", tokens.len()),
                Risk::High,
            ));
        }
        Ok(out)
    }

    async fn api_token_grants(&self, uid: &str) -> Result<Vec<Grant>, ConnectorError> {
        let rows = self.list(self.url(&["api-tokens"])?, true).await?;
        rows.iter()
            .filter(|r| r.get("userId").and_then(Value::as_str) == Some(uid))
            .map(|r| {
                let mut g = self.grant(
                    format!("apitoken:{}", id_of(r)?),
                    GrantKind::ApiKey,
                    format!("Okta API token: {}", s(r, "name")),
                    format!(
                        "acts with the leaver's admin rights until revoked; expires {}",
                        s(r, "expiresAt")
                    ),
                    Risk::Critical,
                );
                g.since = r.get("created").and_then(Value::as_str).map(clean);
                Ok(g)
            })
            .collect()
    }

    async fn factor_grants(&self, uid: &str) -> Result<Vec<Grant>, ConnectorError> {
        let rows = self
            .list(self.url(&["users", uid, "factors"])?, false)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(self.grant(
                    format!("factor:{}", id_of(r)?),
                    GrantKind::Device,
                    format!(
                        "Enrolled factor: {} ({})",
                        s(r, "factorType"),
                        s(r, "provider")
                    ),
                    format!("status {}", s(r, "status")),
                    Risk::Medium,
                ))
            })
            .collect()
    }

    /// Group memberships: OKTA_GROUPs removed, the others manual.
    async fn group_grants(&self, uid: &str, login: &str) -> Result<Vec<Grant>, ConnectorError> {
        let rows = self
            .list(self.url(&["users", uid, "groups"])?, true)
            .await?;
        rows.iter()
            .map(|r| {
                let gid = id_of(r)?;
                let kind = s(r, "type");
                let name = r.get("profile").map(|p| s(p, "name")).unwrap_or_default();
                let g = self.grant(
                    format!("group:{gid}"),
                    GrantKind::Group,
                    format!("Group: {name}"),
                    format!("{kind} {gid}"),
                    Risk::Low,
                );
                Ok(match kind.as_str() {
                    "OKTA_GROUP" => g,
                    "BUILT_IN" => self.manual(
                        g,
                        format!("{name} is built in (every user is in it): nothing to remove; suspending or deactivating {login} ends what it gives"),
                    ),
                    _ => self.manual(
                        g,
                        format!("{name} is an {kind} group, owned by its source directory: remove {login} there (Active Directory, LDAP or the app), then Okta's next import drops it"),
                    ),
                })
            })
            .collect()
    }

    /// Ids of the OKTA_GROUP grants among `grants`: what a group-held role
    /// or app waits for.
    fn removable_groups(grants: &[Grant]) -> Vec<String> {
        grants
            .iter()
            .filter(|g| g.kind == GrantKind::Group && !g.is_manual())
            .map(|g| g.id.clone())
            .collect()
    }

    /// A group's name from the group grants read with it, else its id.
    fn group_name(groups: &[Grant], gid: &str) -> String {
        let key = format!("group:{gid}");
        groups
            .iter()
            .find(|g| g.id == key)
            .and_then(|g| g.label.strip_prefix("Group: "))
            .map_or_else(|| gid.to_string(), str::to_string)
    }

    async fn role_grants(
        &self,
        uid: &str,
        login: &str,
        group_grants: &[Grant],
    ) -> Result<Vec<Grant>, ConnectorError> {
        let groups = Self::removable_groups(group_grants);
        let rows = self
            .list(self.url(&["users", uid, "roles"])?, false)
            .await?;
        rows.iter()
            .map(|r| {
                let rid = id_of(r)?;
                let label = s(r, "label");
                let ty = s(r, "type");
                let via = s(r, "assignmentType");
                let g = self.grant(
                    format!("role:{rid}"),
                    GrantKind::AdminRole,
                    format!("Admin role: {label}"),
                    format!("{ty}, assigned {}", via.to_ascii_lowercase()),
                    Risk::Critical,
                );
                if via == "USER" {
                    return Ok(g);
                }
                let gid = r
                    .pointer("/_links/assignee/href")
                    .and_then(Value::as_str)
                    .and_then(|h| h.rsplit('/').next())
                    .map(clean)
                    .unwrap_or_default();
                let group = Self::group_name(group_grants, &gid);
                let mut g = self.manual(
                    g,
                    format!("{label} is held through group {group}: remove {login} from that group (the plan's group removal does it if it is an Okta group), or unassign the role from the group in Security > Administrators"),
                );
                g.label = format!("Admin role: {label} (through group {group})");
                let held = format!("group:{gid}");
                g.after = if groups.contains(&held) {
                    vec![held]
                } else {
                    Vec::new()
                };
                Ok(g)
            })
            .collect()
    }

    async fn app_grants(
        &self,
        uid: &str,
        login: &str,
        group_grants: &[Grant],
    ) -> Result<Vec<Grant>, ConnectorError> {
        let groups = Self::removable_groups(group_grants);
        let links = self
            .list(self.url(&["users", uid, "appLinks"])?, false)
            .await?;
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for l in &links {
            let app = s(l, "appInstanceId");
            if app.is_empty() || seen.contains(&app) {
                continue;
            }
            seen.push(app.clone());
            // appLinks does not say how the app is held: the app user does.
            let Some(au) = (match self
                .client
                .send(ApiRequest::get(self.url(&["apps", &app, "users", uid])?))
                .await
            {
                Ok(r) => Some(r.json::<Value>()?),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e),
            }) else {
                continue;
            };
            let label = s(l, "label");
            let g = self.grant(
                format!("app:{app}"),
                GrantKind::License,
                format!("App: {label}"),
                format!("{} assignment ({})", s(&au, "scope"), s(l, "appName")),
                Risk::Medium,
            );
            if s(&au, "scope") == "USER" {
                out.push(g);
            } else {
                let mut g = self.manual(
                    g,
                    format!("{label} is assigned through a group: remove {login} from the group that assigns it (the plan's Okta group removals may do it), or unassign the group from the app"),
                );
                g.label = format!("App: {label} (through a group)");
                g.after = groups.clone();
                out.push(g);
            }
        }
        Ok(out)
    }

    async fn delete(&self, url: Url) -> Result<RevokeOutcome, ConnectorError> {
        match self.client.send(ApiRequest::new(Method::DELETE, url)).await {
            Ok(_) => Ok(RevokeOutcome::Accepted),
            Err(e) if e.is_not_found() => Ok(RevokeOutcome::AlreadyGone),
            Err(e) => Err(refused(e)),
        }
    }

    async fn lifecycle(&self, uid: &str, action: &str) -> Result<RevokeOutcome, ConnectorError> {
        let mut url = self.url(&["users", uid, "lifecycle", action])?;
        let mut req = ApiRequest::new(Method::POST, url.clone());
        if action == "deactivate" {
            url.query_pairs_mut().append_pair("sendEmail", "false");
            req = ApiRequest::new(Method::POST, url).header("Prefer", "respond-async");
        }
        match self.client.send(req.idempotent(true)).await {
            Ok(_) => Ok(RevokeOutcome::Accepted),
            Err(e) if e.is_not_found() => Ok(RevokeOutcome::AlreadyGone),
            Err(ConnectorError::Api { status: 400, .. })
                if self.already_closed(uid, action).await =>
            {
                Ok(RevokeOutcome::AlreadyGone)
            }
            Err(e) => Err(refused(e)),
        }
    }

    /// Whether a refused suspend or deactivate is because it already
    /// happened (a fresh read decides).
    async fn already_closed(&self, uid: &str, action: &str) -> bool {
        match self.get_user(uid).await {
            Ok(Some(u)) => {
                let st = s(&u, "status");
                match action {
                    "suspend" => st == "SUSPENDED" || st == "DEPROVISIONED",
                    _ => st == "DEPROVISIONED",
                }
            }
            _ => false,
        }
    }
}

/// A 403 from a removal is Okta refusing (a group-held role or app, a
/// directory-owned group): a step a person must take, with Okta's reason.
fn refused(e: ConnectorError) -> ConnectorError {
    match e {
        ConnectorError::Api {
            status: 403 | 400,
            code,
            message,
        } if code.starts_with('E') => ConnectorError::Refused {
            manual: format!(
                "Okta refused ({code}): {message}. Remove it at its source (the group or directory that grants it) in the Admin Console."
            ),
            code,
            message,
        },
        e => e,
    }
}

#[async_trait]
impl Connector for Okta {
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
        find_by_each_address(person, |address| async move {
            self.find_address(&address).await
        })
        .await
    }

    /// `GET /api/v1/users` (every page, `Link` paging): one listing of the
    /// org answers for every leaver it holds by login or profile email. It
    /// omits deprovisioned users, as Okta's list does: those are looked up
    /// on their own.
    async fn find_people(
        &self,
        people: &[Person],
    ) -> Result<Vec<(String, Lookup)>, ConnectorError> {
        let rows = self.list(self.url(&["users"])?, true).await?;
        let accounts = rows
            .iter()
            .map(|r| self.account(r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(crate::connector::match_listed(people, &accounts))
    }

    async fn list_grants(&self, account: &Account) -> Inventory {
        let uid = account.id.as_str();
        let login = account.login.as_str();
        let (acct, consents, tokens, api, factors, groups) = tokio::join!(
            self.account_grants(uid),
            self.consent_grants(uid),
            self.token_grants(uid),
            self.api_token_grants(uid),
            self.factor_grants(uid),
            self.group_grants(uid, login),
        );
        let group_list: Vec<Grant> = groups.as_ref().cloned().unwrap_or_default();
        let (roles, apps) = tokio::join!(
            self.role_grants(uid, login, &group_list),
            self.app_grants(uid, login, &group_list),
        );
        let mut inv = Inventory::default();
        let mut take = |kind: GrantKind, r: Result<Vec<Grant>, ConnectorError>| match r {
            Ok(g) => inv.grants.extend(g),
            Err(e) => {
                if !inv.failed.iter().any(|(k, _)| *k == kind) {
                    inv.failed.push((kind, e));
                }
            }
        };
        match acct {
            Ok(g) => take(GrantKind::Account, Ok(g)),
            Err(e) => {
                take(GrantKind::Account, Err(e.clone()));
                take(GrantKind::Session, Err(e));
            }
        }
        take(GrantKind::OauthGrant, consents);
        take(GrantKind::OauthGrant, tokens);
        take(GrantKind::ApiKey, api);
        take(GrantKind::Device, factors);
        take(GrantKind::Group, groups);
        take(GrantKind::AdminRole, roles);
        take(GrantKind::License, apps);
        // A listing of a kind that failed in part is no listing.
        let failed: Vec<GrantKind> = inv.failed.iter().map(|(k, _)| *k).collect();
        inv.grants.retain(|g| !failed.contains(&g.kind));
        inv
    }

    async fn revoke(
        &self,
        account: &Account,
        grant: &Grant,
    ) -> Result<RevokeOutcome, ConnectorError> {
        let uid = account.id.as_str();
        let (what, id) = grant.id.split_once(':').ok_or_else(|| {
            ConnectorError::Config(format!("not an Okta grant: {}", clean_max(&grant.id, 80)))
        })?;
        match what {
            "sessions" => {
                let mut url = self.url(&["users", uid, "sessions"])?;
                url.query_pairs_mut().append_pair("oauthTokens", "true");
                match self.client.send(ApiRequest::new(Method::DELETE, url)).await {
                    // Okta cannot list sessions: nothing can confirm it.
                    Ok(_) => Ok(RevokeOutcome::Acknowledged),
                    Err(e) => Err(e),
                }
            }
            "grant" => self.delete(self.url(&["users", uid, "grants", id])?).await,
            "tokens" => {
                self.delete(self.url(&["users", uid, "clients", id, "tokens"])?)
                    .await
            }
            "apitoken" => self.delete(self.url(&["api-tokens", id])?).await,
            "factor" => self.delete(self.url(&["users", uid, "factors", id])?).await,
            "group" => self.delete(self.url(&["groups", id, "users", uid])?).await,
            "role" => self.delete(self.url(&["users", uid, "roles", id])?).await,
            "app" => self.delete(self.url(&["apps", id, "users", uid])?).await,
            "suspend" => self.lifecycle(uid, "suspend").await,
            "deactivate" => self.lifecycle(uid, "deactivate").await,
            _ => Err(ConnectorError::Config(format!(
                "not an Okta grant: {}",
                clean_max(&grant.id, 80)
            ))),
        }
    }

    /// Re-reads only what the asked grants live in.
    async fn verify(
        &self,
        account: &Account,
        grants: &[Grant],
    ) -> Vec<(String, Result<Presence, ConnectorError>)> {
        // The listings, by the grants each holds.
        const ACCOUNT: &[&str] = &["sessions", "suspend", "deactivate"];
        const CONSENTS: &[&str] = &["grant"];
        const TOKENS: &[&str] = &["tokens"];
        const API: &[&str] = &["apitoken"];
        const FACTORS: &[&str] = &["factor"];
        const ROLES: &[&str] = &["role"];
        const APPS: &[&str] = &["app"];
        const GROUPS: &[&str] = &["group", "role", "app"];
        let read = [ACCOUNT, CONSENTS, TOKENS, API, FACTORS, GROUPS];
        let has = |p: &[&str]| grants.iter().any(|g| p.contains(&prefix(g)));
        let needs_groups = has(GROUPS);
        let mut inv = Inventory::default();
        let uid = account.id.as_str();
        let login = account.login.as_str();
        let mut take = |kind: GrantKind, r: Option<Result<Vec<Grant>, ConnectorError>>| match r {
            Some(Ok(g)) => inv.grants.extend(g),
            Some(Err(e)) => inv.failed.push((kind, e)),
            None => {}
        };
        let (acct, consents, tokens, api, factors, groups) = tokio::join!(
            maybe(has(ACCOUNT), self.account_grants(uid)),
            maybe(has(CONSENTS), self.consent_grants(uid)),
            maybe(has(TOKENS), self.token_grants(uid)),
            maybe(has(API), self.api_token_grants(uid)),
            maybe(has(FACTORS), self.factor_grants(uid)),
            maybe(needs_groups, self.group_grants(uid, login)),
        );
        let group_list: Vec<Grant> = match &groups {
            Some(Ok(g)) => g.clone(),
            _ => Vec::new(),
        };
        let (roles, apps) = tokio::join!(
            maybe(has(ROLES), self.role_grants(uid, login, &group_list)),
            maybe(has(APPS), self.app_grants(uid, login, &group_list)),
        );
        match acct {
            Some(Err(e)) => {
                take(GrantKind::Account, Some(Err(e.clone())));
                take(GrantKind::Session, Some(Err(e)));
            }
            other => take(GrantKind::Account, other),
        }
        match (consents, tokens) {
            (Some(Err(e)), _) | (_, Some(Err(e))) => take(GrantKind::OauthGrant, Some(Err(e))),
            (a, b) => {
                take(GrantKind::OauthGrant, a);
                take(GrantKind::OauthGrant, b);
            }
        }
        take(GrantKind::ApiKey, api);
        take(GrantKind::Device, factors);
        take(GrantKind::Group, groups);
        take(GrantKind::AdminRole, roles);
        take(GrantKind::License, apps);
        crate::connector::presence_where_read(&inv, grants, |g| {
            read.iter().any(|l| l.contains(&prefix(g)))
        })
    }

    fn health(&self) -> Health {
        Health::from_stats(&self.client.stats())
    }

    /// `GET /api/v1/users` (paged through `Link`), for the orphan sweep:
    /// every user but the deprovisioned ones (Okta leaves them out of a
    /// list without `search`; they cannot sign in). Okta has no guests:
    /// every user is a member.
    async fn list_accounts(&self) -> Result<Vec<crate::connector::ListedAccount>, ConnectorError> {
        let users = self.list(self.url(&["users"])?, true).await?;
        users
            .iter()
            .map(|u| {
                Ok(crate::connector::ListedAccount {
                    account: self.account(u)?,
                    class: crate::connector::AccountClass::Member,
                    owner: None,
                })
            })
            .collect()
    }

    /// `GET /api/v1/users?limit=1`: needs a valid credential with
    /// okta.users.read; its rate-limit headers feed the health line.
    async fn probe(&self) -> Result<(), ConnectorError> {
        let mut url = self.url(&["users"])?;
        url.query_pairs_mut().append_pair("limit", "1");
        self.client.send(ApiRequest::get(url)).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::http::{Pacing, pacing};

    #[test]
    fn expression_values_are_escaped() {
        assert_eq!(quote(r#"a"b\c@x.com"#), r#""a\"b\\c@x.com""#);
        assert_eq!(quote("x\ny"), "\"xy\"");
    }

    #[test]
    fn pacing_holds_until_reset_when_the_window_is_spent() {
        let mut h = HeaderMap::new();
        let reset = chrono::Utc::now().timestamp() + 5;
        h.insert("x-rate-limit-limit", "100".parse().unwrap());
        h.insert("x-rate-limit-reset", reset.to_string().parse().unwrap());
        h.insert("x-rate-limit-remaining", "60".parse().unwrap());
        let pace = |h: &HeaderMap| pacing(&OktaPolicy.limit_info(h).unwrap());
        assert_eq!(pace(&h), None);
        h.insert("x-rate-limit-remaining", "5".parse().unwrap());
        let Some(Pacing::Hold(spread)) = pace(&h) else {
            panic!("a nearly spent window is spread out")
        };
        assert!(
            spread <= Duration::from_secs(1) && spread > Duration::ZERO,
            "{spread:?}"
        );
        h.insert("x-rate-limit-remaining", "1".parse().unwrap());
        let Some(Pacing::Hold(hold)) = pace(&h) else {
            panic!("a spent window holds")
        };
        assert!(hold >= Duration::from_secs(3));
    }
}
