//! Google Workspace driver: Admin SDK Directory API and the Enterprise
//! License Manager (Licensing API), as a service account with domain-wide
//! delegation impersonating an admin (JWT bearer, RFC 7523).
//!
//! Calls (D = `/admin/directory/v1`, L = `/apps/licensing/v1`):
//! - find: `GET D/users/{userKey}` (primary email, alias or id; 404 = none)
//! - OAuth tokens: `GET D/users/{u}/tokens`, `DELETE D/users/{u}/tokens/{clientId}`
//! - app passwords: `GET D/users/{u}/asps`, `DELETE D/users/{u}/asps/{codeId}`
//! - backup codes: `GET D/users/{u}/verificationCodes`,
//!   `POST D/users/{u}/verificationCodes/invalidate`
//! - web sessions: `POST D/users/{u}/signOut` (no list: acknowledged only)
//! - groups: `GET D/groups?userKey=` (paged), `DELETE D/groups/{g}/members/{m}`
//! - admin roles: `GET D/customer/my_customer/roleassignments?userKey=&includeIndirectRoleAssignments=true`
//!   (paged), `DELETE D/customer/my_customer/roleassignments/{id}`, names from
//!   `GET D/customer/my_customer/roles`
//! - licenses: `GET|DELETE L/product/{p}/sku/{s}/user/{primary email}` per
//!   configured SKU (the API has no per-user list; 404 = not assigned)
//! - devices: `GET D/customer/{c}/devices/mobile?query=email:{e}` (paged),
//!   `POST D/customer/{c}/devices/mobile/{resourceId}/action {"action":"admin_account_wipe"}`
//! - suspend: `PATCH D/users/{u} {"suspended":true}`
//! - data hand-over (T = `/admin/datatransfer/v1`), when the person to hand
//!   over to is known: `GET T/transfers?oldOwnerUserId=` (paged),
//!   `GET T/applications` (Drive and Docs, Calendar, by name),
//!   `POST T/transfers` (Drive with `PRIVACY_LEVEL` PRIVATE and SHARED,
//!   Calendar with `RELEASE_RESOURCES`); verified once a fresh read shows
//!   the transfer `completed`. Without a person it stays a manual step.
//!
//! Assumptions where Google's documentation is silent:
//! - Every write can take a while to show in reads; nothing is taken as done
//!   until a later read shows it.
//! - After `admin_account_wipe`, a device either leaves the listing or shows
//!   a status of `ACCOUNT_WIPING`/`ACCOUNT_WIPED` (or a full `WIPING`/`WIPED`);
//!   any of those counts as the account being removed from it.
//! - Google refuses to invalidate backup codes of a suspended user (with a
//!   4xx); the driver therefore never offers it on a suspended user and shows
//!   a manual step instead.
//! - The device search matches words by prefix, so results are filtered to
//!   devices whose `email` list holds the account's address exactly.
//! - A transfer's `overallTransferStatusCode` is `completed` once the data
//!   has moved, `failed` if it will not; anything else (`new`,
//!   `inProgress`) is under way. One completed transfer covering Drive and
//!   Calendar, to whomever, means the data has left the account.
//!
//! Left out on purpose: `POST /batch` and `fields`. Google counts every part
//! of a batch against the same per-user quota as a single call, so a batch
//! of membership removals saves round trips but not quota time (600 removals
//! take 15 s at 2,400 a minute either way), and each part's own rate-limit
//! answer would have to be retried outside the shared HTTP client. The
//! answers read are small; what costs is round trips, which `fields` does
//! not change.

use crate::connector::find_by_each_address;

/// The sign-in methods this driver uses (`auth.flow`): a service account
/// with domain-wide delegation, nothing else.
pub const FLOWS: &[crate::auth::oauth::Flow] = &[crate::auth::oauth::Flow::JwtBearer];
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::auth::jwt::{JwtBearer, JwtBearerConfig, ServiceAccountKey};
use crate::connector::http::{
    self, ApiClient, ApiRequest, PageGuard, VendorPolicy, Verdict, body_excerpt, retry_after,
};
use crate::connector::{
    AccountClass, BuildContext, Connector, ConnectorError, Health, Inventory, ListedAccount,
    Lookup, Presence, ResolvedConnector, RevokeOutcome,
};
use crate::model::{Account, Grant, GrantKind, Person, Phase, Revocation, Risk};
use crate::sanitize::clean_max;

/// Reading of Google's answers.
///
/// Errors: `{"error":{"code","message","status","errors":[{"domain","reason","message"}]}}`.
/// Rate limits: 403 with reason `rateLimitExceeded`, `userRateLimitExceeded`
/// or `quotaExceeded` (no Retry-After: back off), or 429 (Retry-After when
/// sent).
pub struct GooglePolicy;

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorInner,
}

#[derive(Deserialize, Default)]
struct ErrorInner {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize, Default)]
struct ErrorItem {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

const RATE_REASONS: &[&str] = &[
    "rateLimitExceeded",
    "userRateLimitExceeded",
    "quotaExceeded",
];

impl VendorPolicy for GooglePolicy {
    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Verdict {
        if status.is_success() {
            return Verdict::Ok;
        }
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let reason = parsed
            .as_ref()
            .and_then(|b| b.error.errors.first())
            .map(|e| e.reason.as_str())
            .unwrap_or("");
        match status.as_u16() {
            403 if RATE_REASONS.contains(&reason) => Verdict::RateLimited(None),
            429 => Verdict::RateLimited(retry_after(headers)),
            401 => Verdict::Unauthorized,
            408 | 500 | 502 | 503 | 504 => Verdict::Transient,
            s => {
                let (code, message) = match &parsed {
                    Some(b) => {
                        let first = b.error.errors.first();
                        let code = if reason.is_empty() {
                            b.error.status.clone()
                        } else {
                            reason.to_string()
                        };
                        let msg = if b.error.message.is_empty() {
                            first.map(|e| e.message.clone()).unwrap_or_default()
                        } else {
                            b.error.message.clone()
                        };
                        (clean_max(&code, 60), clean_max(&msg, 300))
                    }
                    None => (String::new(), body_excerpt(body)),
                };
                Verdict::Fail(ConnectorError::Api {
                    status: s,
                    code,
                    message,
                })
            }
        }
    }
}

/// One license SKU to check (manifest `[[settings.licenses]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sku {
    pub product_id: String,
    pub sku_id: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// Manifest `[settings]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Customer id for device and role calls (`my_customer`: the admin's own).
    #[serde(default = "my_customer")]
    pub customer: String,
    #[serde(default)]
    pub licenses: Vec<Sku>,
    /// maxResults for paged listings (capped at each API's maximum).
    #[serde(default)]
    pub page_size: Option<u32>,
}

fn my_customer() -> String {
    "my_customer".into()
}

pub struct GoogleWorkspace {
    id: String,
    display_name: String,
    refresh: Duration,
    client: ApiClient,
    directory: Url,
    licensing: Url,
    transfer: Url,
    /// Drive and Calendar application ids, read once.
    transfer_apps: tokio::sync::OnceCell<(String, String)>,
    settings: Settings,
    /// The manifest's `[manual_steps]`.
    manual_steps: std::collections::BTreeMap<String, String>,
    /// The admin the service account acts as.
    subject: String,
}

/// Manifest steps that apply to every Google account: Drive and Calendar
/// stay with the account until they are transferred. With a person to hand
/// over to, the driver transfers them itself (the Data Transfer API); with
/// nobody named, this stays a manual step.
const ACCOUNT_STEPS: &[crate::connector::steps::AccountStep] =
    &[crate::connector::steps::AccountStep {
        step: "data_transfer",
        kind: GrantKind::Delegation,
        label: "Drive and Calendar hand-over",
        risk: Risk::Medium,
    }];

/// Builds the driver from a resolved `google-workspace` connector.
pub fn build(
    resolved: &ResolvedConnector,
    ctx: &BuildContext,
) -> Result<Arc<dyn Connector>, ConnectorError> {
    let cfg = |e: crate::tomlfile::ConfigError| ConnectorError::Config(e.to_string());
    let settings: Settings = resolved.settings().map_err(cfg)?;
    let base = resolved.url("base_url").map_err(cfg)?;
    let lic = resolved.url("licensing_url").map_err(cfg)?;
    let auth = &resolved.manifest.auth;
    let id = &resolved.id;
    let key_file = auth.key_file.as_deref().ok_or_else(|| {
        ConnectorError::Config(format!(
            "connectors.{id}.auth.key_file: expected the service-account JSON key file, found nothing"
        ))
    })?;
    let subject = auth.subject.clone().ok_or_else(|| {
        ConnectorError::Config(format!(
            "connectors.{id}.auth.subject: expected the admin's email to act as, found nothing"
        ))
    })?;
    let token_url = auth.token_url.as_deref().ok_or_else(|| {
        ConnectorError::Config(format!(
            "connectors.{id}.auth.token_url: expected a URL, found nothing"
        ))
    })?;
    let token_url = crate::connector::manifest::check_url(token_url).map_err(|why| {
        ConnectorError::Config(format!(
            "key `connectors.{id}.auth.token_url`: expected the token endpoint URL, found {why}"
        ))
    })?;
    let key = ServiceAccountKey::load(&resolved.path(key_file))?;
    let jwt = JwtBearer::new(
        ctx.http.clone(),
        JwtBearerConfig {
            token_url,
            issuer: key.client_email.clone(),
            subject: Some(subject.clone()),
            scopes: auth.scopes.clone(),
            audience: auth.audience.clone(),
            private_key_pem: key.private_key,
            key_id: key.private_key_id,
        },
    )?;
    let client = ApiClient::new(
        ctx.http.clone(),
        resolved.http_settings(),
        &resolved.all_urls().map_err(cfg)?,
        Some(Arc::new(jwt)),
        Arc::new(GooglePolicy),
        ctx.notices.clone(),
    );
    Ok(Arc::new(GoogleWorkspace {
        id: resolved.id.clone(),
        display_name: resolved.manifest.display_name.clone(),
        refresh: resolved.refresh_interval(),
        directory: http::join_segments(&base, &["admin", "directory", "v1"])?,
        licensing: http::join_segments(&lic, &["apps", "licensing", "v1"])?,
        transfer: http::join_segments(&base, &["admin", "datatransfer", "v1"])?,
        transfer_apps: tokio::sync::OnceCell::new(),
        client,
        settings,
        manual_steps: resolved.manifest.manual_steps.clone(),
        subject,
    }))
}

// ---- API shapes ---------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct User {
    id: String,
    primary_email: String,
    #[serde(default)]
    name: UserName,
    #[serde(default)]
    suspended: bool,
    #[serde(default)]
    suspension_reason: Option<String>,
    #[serde(default)]
    is_admin: bool,
    #[serde(default)]
    is_delegated_admin: bool,
    #[serde(default)]
    last_login_time: Option<String>,
    #[serde(default)]
    org_unit_path: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    /// Aliases outside the customer's own domains (e.g. from a secondary
    /// domain that was removed); read-only, still deliver mail.
    #[serde(default)]
    non_editable_aliases: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct UserName {
    #[serde(default)]
    full_name: String,
}

#[derive(Deserialize)]
struct Items<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Token {
    client_id: String,
    #[serde(default)]
    display_text: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    native_app: bool,
    #[serde(default)]
    anonymous: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Asp {
    code_id: i64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    creation_time: Option<String>,
    #[serde(default)]
    last_time_used: Option<String>,
}

/// Codes are read only to be counted: never kept, never shown.
#[derive(Deserialize)]
struct VerificationCode {}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Group {
    id: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleAssignment {
    role_assignment_id: String,
    #[serde(default)]
    role_id: String,
    #[serde(default)]
    assigned_to: String,
    #[serde(default)]
    assignee_type: Option<String>,
    #[serde(default)]
    scope_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Role {
    role_id: String,
    #[serde(default)]
    role_name: String,
    #[serde(default)]
    role_description: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MobileDevice {
    resource_id: String,
    #[serde(default)]
    email: Vec<String>,
    #[serde(default)]
    model: String,
    #[serde(default)]
    os: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    last_sync: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LicenseAssignment {
    #[serde(default)]
    sku_name: Option<String>,
    #[serde(default)]
    product_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DataTransfer {
    #[serde(default)]
    id: String,
    #[serde(default)]
    new_owner_user_id: String,
    #[serde(default)]
    overall_transfer_status_code: String,
    #[serde(default)]
    request_time: Option<String>,
    #[serde(default)]
    application_data_transfers: Vec<ApplicationDataTransfer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplicationDataTransfer {
    #[serde(default)]
    application_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransfersPage {
    #[serde(default)]
    data_transfers: Vec<DataTransfer>,
    next_page_token: Option<String>,
}

impl Paged for TransfersPage {
    type Item = DataTransfer;
    fn parts(self) -> (Vec<DataTransfer>, Option<String>) {
        (self.data_transfers, self.next_page_token)
    }
}

#[derive(Deserialize)]
struct TransferApp {
    id: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppsPage {
    #[serde(default)]
    applications: Vec<TransferApp>,
    next_page_token: Option<String>,
}

impl Paged for AppsPage {
    type Item = TransferApp;
    fn parts(self) -> (Vec<TransferApp>, Option<String>) {
        (self.applications, self.next_page_token)
    }
}

/// Where a leaver's data hand-over stands.
enum HandOver {
    /// Nobody to hand over to: the manifest's manual step.
    Manual,
    /// A transfer of Drive and Calendar has completed.
    Done,
    /// To hand over to this person; the transfer under way, if any.
    Open {
        to: String,
        under_way: Option<DataTransfer>,
    },
}

/// A page of a paged listing: its items and `nextPageToken`.
trait Paged: DeserializeOwned {
    type Item;
    fn parts(self) -> (Vec<Self::Item>, Option<String>);
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupsPage {
    #[serde(default)]
    groups: Vec<Group>,
    next_page_token: Option<String>,
}

impl Paged for GroupsPage {
    type Item = Group;
    fn parts(self) -> (Vec<Group>, Option<String>) {
        (self.groups, self.next_page_token)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ItemsPage<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
    next_page_token: Option<String>,
}

impl<T: DeserializeOwned> Paged for ItemsPage<T> {
    type Item = T;
    fn parts(self) -> (Vec<T>, Option<String>) {
        (self.items, self.next_page_token)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DevicesPage {
    #[serde(default)]
    mobiledevices: Vec<MobileDevice>,
    next_page_token: Option<String>,
}

impl Paged for DevicesPage {
    type Item = MobileDevice;
    fn parts(self) -> (Vec<MobileDevice>, Option<String>) {
        (self.mobiledevices, self.next_page_token)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsersPage {
    #[serde(default)]
    users: Vec<User>,
    next_page_token: Option<String>,
}

impl Paged for UsersPage {
    type Item = User;
    fn parts(self) -> (Vec<User>, Option<String>) {
        (self.users, self.next_page_token)
    }
}

// ---- grant ids ------------------------------------------------------------------

const SIGNOUT: &str = "signout";
const BACKUP_CODES: &str = "backup_codes";
const SUSPEND: &str = "suspend";
/// The Drive and Calendar hand-over through the Data Transfer API.
const HAND_OVER: &str = "transfer:drive_calendar";
/// Marks, among the ids `present_ids` returns, a transfer under way.
const IN_PROGRESS: &str = "transfer:drive_calendar (in progress)";
const DRIVE_APP: &str = "Drive and Docs";
const CALENDAR_APP: &str = "Calendar";

/// Device statuses that show the account is being, or has been, removed.
const WIPED: &[&str] = &["ACCOUNT_WIPING", "ACCOUNT_WIPED", "WIPING", "WIPED"];

/// Scopes that make a third-party token critical.
fn critical_scope(s: &str) -> bool {
    s == "https://mail.google.com/"
        || s.contains("/auth/admin.")
        || s.ends_with("/auth/cloud-platform")
        || s.ends_with("/auth/drive")
}

fn epoch_ms(s: &Option<String>) -> Option<String> {
    let ms: i64 = s.as_deref()?.parse().ok()?;
    if ms <= 0 {
        return None;
    }
    chrono::DateTime::from_timestamp_millis(ms).map(|d| d.format("%Y-%m-%d").to_string())
}

/// Google answers `1970-01-01T00:00:00.000Z` for "never".
fn real_time(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .filter(|t| !t.starts_with("1970-01-01"))
        .map(|t| clean_max(t, 40))
}

impl GoogleWorkspace {
    fn dir(&self, segments: &[&str]) -> Result<Url, ConnectorError> {
        self.client.url(&self.directory, segments)
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

    fn page_size(&self, cap: u32) -> String {
        self.settings
            .page_size
            .unwrap_or(cap)
            .clamp(1, cap)
            .to_string()
    }

    /// Reads every page of a listing (a repeated page token is an error: a
    /// partial listing is never taken as the whole).
    async fn collect<P: Paged>(&self, url: Url) -> Result<Vec<P::Item>, ConnectorError> {
        let mut guard = PageGuard::new();
        let mut token: Option<String> = None;
        let mut out = Vec::new();
        loop {
            let mut u = url.clone();
            if let Some(t) = &token {
                u.query_pairs_mut().append_pair("pageToken", t);
            }
            let page: P = self.client.get_json(u).await?;
            let (items, next) = page.parts();
            out.extend(items);
            match guard.next(next.as_deref())? {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    async fn read_user(&self, key: &str) -> Result<User, ConnectorError> {
        self.client.get_json(self.dir(&["users", key])?).await
    }

    fn account_of(&self, u: &User) -> Account {
        let mut facts = vec![
            (
                "org_unit".to_string(),
                clean_max(u.org_unit_path.as_deref().unwrap_or("/"), 120),
            ),
            ("suspended".to_string(), u.suspended.to_string()),
        ];
        if u.is_admin {
            facts.push(("super_admin".into(), "true".into()));
        }
        if u.is_delegated_admin {
            facts.push(("delegated_admin".into(), "true".into()));
        }
        if let Some(r) = u.suspension_reason.as_deref().filter(|_| u.suspended) {
            facts.push(("suspension_reason".into(), clean_max(r, 80)));
        }
        if !u.aliases.is_empty() {
            let a: Vec<String> = u.aliases.iter().map(|a| clean_max(a, 120)).collect();
            facts.push(("aliases".into(), a.join(", ")));
        }
        let mut addresses = vec![clean_max(&u.primary_email, 254).to_ascii_lowercase()];
        for a in u.aliases.iter().chain(&u.non_editable_aliases) {
            let a = clean_max(a, 254).to_ascii_lowercase();
            if !addresses.contains(&a) {
                addresses.push(a);
            }
        }
        Account {
            addresses,
            matched_by: None,
            connector: self.id.clone(),
            id: clean_max(&u.id, 64),
            login: clean_max(&u.primary_email, 254),
            display_name: clean_max(&u.name.full_name, 120),
            active: !u.suspended,
            is_admin: u.is_admin || u.is_delegated_admin,
            last_login: real_time(&u.last_login_time),
            facts,
        }
    }

    // ---- listings, one per kind ---------------------------------------------

    async fn list_tokens(&self, key: &str) -> Result<Vec<Grant>, ConnectorError> {
        let list: Items<Token> = self
            .client
            .get_json(self.dir(&["users", key, "tokens"])?)
            .await?;
        Ok(list
            .items
            .into_iter()
            .map(|t| {
                let name = if t.display_text.is_empty() {
                    &t.client_id
                } else {
                    &t.display_text
                };
                let risk = if t.scopes.iter().any(|s| critical_scope(s)) {
                    Risk::Critical
                } else {
                    Risk::High
                };
                let mut details = format!(
                    "client {}; scopes: {}",
                    clean_max(&t.client_id, 120),
                    clean_max(&t.scopes.join(" "), 400)
                );
                if t.native_app {
                    details.push_str("; installed app");
                }
                if t.anonymous {
                    details.push_str("; unregistered client");
                }
                self.grant(
                    format!("token:{}", clean_max(&t.client_id, 200)),
                    GrantKind::OauthGrant,
                    format!("OAuth app: {}", clean_max(name, 80)),
                    details,
                    risk,
                )
            })
            .collect())
    }

    async fn list_asps(&self, key: &str) -> Result<Vec<Grant>, ConnectorError> {
        let list: Items<Asp> = self
            .client
            .get_json(self.dir(&["users", key, "asps"])?)
            .await?;
        Ok(list
            .items
            .into_iter()
            .map(|a| {
                let mut details =
                    String::from("app-specific password (bypasses 2-step verification)");
                if let Some(c) = epoch_ms(&a.creation_time) {
                    details.push_str(&format!("; created {c}"));
                }
                let last = epoch_ms(&a.last_time_used);
                if let Some(l) = &last {
                    details.push_str(&format!("; last used {l}"));
                }
                let mut g = self.grant(
                    format!("asp:{}", a.code_id),
                    GrantKind::AppPassword,
                    format!("App password: {}", clean_max(&a.name, 80)),
                    details,
                    Risk::High,
                );
                g.since = last;
                g
            })
            .collect())
    }

    async fn count_codes(&self, key: &str) -> Result<usize, ConnectorError> {
        let list: Items<VerificationCode> = self
            .client
            .get_json(self.dir(&["users", key, "verificationCodes"])?)
            .await?;
        Ok(list.items.len())
    }

    async fn list_groups(&self, login: &str) -> Result<Vec<Group>, ConnectorError> {
        let mut url = self.dir(&["groups"])?;
        url.query_pairs_mut()
            .append_pair("userKey", login)
            .append_pair("maxResults", &self.page_size(200));
        self.collect::<GroupsPage>(url).await
    }

    fn group_grants(&self, groups: &[Group]) -> Vec<Grant> {
        groups
            .iter()
            .map(|g| {
                let label = if g.email.is_empty() { &g.id } else { &g.email };
                self.grant(
                    format!("group:{}", clean_max(&g.id, 100)),
                    GrantKind::Group,
                    format!("Group: {}", clean_max(label, 120)),
                    clean_max(&g.name, 120),
                    Risk::Medium,
                )
            })
            .collect()
    }

    async fn list_assignments(&self, login: &str) -> Result<Vec<RoleAssignment>, ConnectorError> {
        let mut url = self.dir(&["customer", "my_customer", "roleassignments"])?;
        url.query_pairs_mut()
            .append_pair("userKey", login)
            .append_pair("includeIndirectRoleAssignments", "true")
            .append_pair("maxResults", &self.page_size(200));
        self.collect::<ItemsPage<RoleAssignment>>(url).await
    }

    /// Role names by id. Names are only for labels: a failure leaves ids.
    async fn role_names(&self) -> HashMap<String, String> {
        let listed = match self.dir(&["customer", "my_customer", "roles"]) {
            Ok(mut url) => {
                url.query_pairs_mut()
                    .append_pair("maxResults", &self.page_size(100));
                self.collect::<ItemsPage<Role>>(url).await
            }
            Err(e) => Err(e),
        };
        match listed {
            Ok(roles) => roles
                .into_iter()
                .map(|r| {
                    let name = r
                        .role_description
                        .filter(|d| !d.is_empty())
                        .unwrap_or(r.role_name);
                    (r.role_id, name)
                })
                .collect(),
            Err(e) => {
                tracing::info!(connector = %self.id, error = %e, "role names unavailable");
                HashMap::new()
            }
        }
    }

    fn role_grants(
        &self,
        account: &Account,
        assignments: Vec<RoleAssignment>,
        names: &HashMap<String, String>,
        groups: &HashMap<String, String>,
    ) -> Vec<Grant> {
        assignments
            .into_iter()
            .map(|a| {
                let name = names
                    .get(&a.role_id)
                    .map(|n| clean_max(n, 80))
                    .unwrap_or_else(|| format!("role {}", clean_max(&a.role_id, 40)));
                let scope = clean_max(a.scope_type.as_deref().unwrap_or("CUSTOMER"), 30);
                let id = format!("role:{}", clean_max(&a.role_assignment_id, 60));
                if a.assignee_type.as_deref() == Some("group") {
                    let group = groups
                        .get(&a.assigned_to)
                        .map(|e| clean_max(e, 120))
                        .unwrap_or_else(|| format!("group id {}", clean_max(&a.assigned_to, 60)));
                    let mut g = self.grant(
                        id,
                        GrantKind::AdminRole,
                        format!("Admin role: {name} (through {group})"),
                        format!(
                            "held through group {group}; deleting the assignment would take the role from every member"
                        ),
                        Risk::Critical,
                    );
                    g.revocation = Revocation::Manual {
                        instructions: format!(
                            "Remove {} from group {group} (the role is held through it; removing the group's membership in this plan does it)",
                            account.login
                        ),
                    };
                    // Held through the group's membership: once that is
                    // removed, a fresh read decides this one.
                    g.after = vec![format!("group:{}", clean_max(&a.assigned_to, 100))];
                    g
                } else {
                    self.grant(
                        id,
                        GrantKind::AdminRole,
                        format!("Admin role: {name}"),
                        format!("direct assignment, scope {scope}"),
                        Risk::Critical,
                    )
                }
            })
            .collect()
    }

    fn license_url(&self, sku: &Sku, login: &str) -> Result<Url, ConnectorError> {
        self.client.url(
            &self.licensing,
            &[
                "product",
                &sku.product_id,
                "sku",
                &sku.sku_id,
                "user",
                login,
            ],
        )
    }

    /// One read per SKU: `Some` when assigned, `None` on 404.
    async fn read_license(
        &self,
        sku: &Sku,
        login: &str,
    ) -> Result<Option<LicenseAssignment>, ConnectorError> {
        match self.client.get_json(self.license_url(sku, login)?).await {
            Ok(l) => Ok(Some(l)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list_licenses(
        &self,
        login: &str,
        skus: &[&Sku],
    ) -> Result<Vec<Grant>, ConnectorError> {
        let reads = join_all(skus.iter().map(|s| self.read_license(s, login))).await;
        let mut out = Vec::new();
        for (sku, r) in skus.iter().zip(reads) {
            if let Some(l) = r? {
                let name = sku
                    .name
                    .clone()
                    .or(l.sku_name)
                    .or(l.product_name)
                    .unwrap_or_else(|| sku.sku_id.clone());
                out.push(self.grant(
                    license_id(sku),
                    GrantKind::License,
                    format!("License: {}", clean_max(&name, 80)),
                    format!(
                        "product {}, SKU {} (suspending does not release it)",
                        clean_max(&sku.product_id, 40),
                        clean_max(&sku.sku_id, 40)
                    ),
                    Risk::Low,
                ));
            }
        }
        Ok(out)
    }

    async fn list_devices(&self, login: &str) -> Result<Vec<Grant>, ConnectorError> {
        let mut url = self.dir(&["customer", &self.settings.customer, "devices", "mobile"])?;
        let plain = login
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@+-".contains(c));
        let query = if plain {
            format!("email:{login}")
        } else {
            format!("email:\"{}\"", login.replace('"', ""))
        };
        url.query_pairs_mut()
            .append_pair("query", &query)
            .append_pair("maxResults", &self.page_size(100));
        let devices = self.collect::<DevicesPage>(url).await?;
        Ok(devices
            .into_iter()
            .filter(|d| d.email.iter().any(|e| e.eq_ignore_ascii_case(login)))
            .filter(|d| !WIPED.contains(&d.status.as_str()))
            .map(|d| {
                let mut g = self.grant(
                    format!("device:{}", clean_max(&d.resource_id, 100)),
                    GrantKind::Device,
                    format!(
                        "Device: {} ({})",
                        clean_max(&d.model, 60),
                        clean_max(&d.os, 40)
                    ),
                    format!(
                        "{}, status {}; revoking wipes the work account from it",
                        clean_max(&d.kind, 30),
                        clean_max(&d.status, 30)
                    ),
                    Risk::High,
                );
                g.since = real_time(&d.last_sync);
                g
            })
            .collect())
    }

    fn user_grants(
        &self,
        user: &User,
        codes: Result<usize, ConnectorError>,
    ) -> (Vec<Grant>, Option<ConnectorError>) {
        let mut out = Vec::new();
        let login = clean_max(&user.primary_email, 254);
        let critical = user.is_admin || user.is_delegated_admin;
        if !user.suspended {
            out.push(self.grant(
                SIGNOUT.into(),
                GrantKind::Session,
                "Web sessions: sign out everywhere".into(),
                "Google cannot list sessions: the sign-out is acknowledged, never verified".into(),
                Risk::High,
            ));
        }
        let mut codes_err = None;
        match codes {
            Ok(0) => {}
            Ok(n) => {
                let mut g = self.grant(
                    BACKUP_CODES.into(),
                    GrantKind::BackupCodes,
                    "Backup verification codes".into(),
                    format!(
                        "{n} unused codes; must be invalidated before the account is suspended"
                    ),
                    Risk::Medium,
                );
                // Google refuses this on a suspended user: it runs in phase 1,
                // before the suspension.
                g.phase = Some(Phase::CutAccess);
                if user.suspended {
                    g.details = format!(
                        "{n} unused codes; Google does not invalidate the codes of a suspended user"
                    );
                    g.revocation = Revocation::Manual {
                        instructions: format!(
                            "In the Admin console, reactivate {login} briefly, invalidate the backup codes (user > Security > 2-step verification > Backup codes), then suspend again"
                        ),
                    };
                }
                out.push(g);
            }
            Err(e) => codes_err = Some(e),
        }
        if !user.suspended {
            out.push(self.grant(
                SUSPEND.into(),
                GrantKind::Account,
                format!("Suspend account {login}"),
                format!(
                    "account active{}; suspension blocks sign-in (data and licenses stay)",
                    if critical { ", admin" } else { "" }
                ),
                if critical { Risk::Critical } else { Risk::High },
            ));
        }
        (out, codes_err)
    }

    // ---- data hand-over ------------------------------------------------------

    fn hand_over_target(account: &Account) -> Option<&str> {
        account
            .facts
            .iter()
            .find(|(k, _)| k == crate::connector::HAND_OVER_FACT)
            .map(|(_, v)| v.as_str())
    }

    fn transfer_url(&self, segments: &[&str]) -> Result<Url, ConnectorError> {
        self.client.url(&self.transfer, segments)
    }

    /// Every transfer of the leaver's data (`oldOwnerUserId`), all pages.
    async fn list_transfers(&self, old_owner: &str) -> Result<Vec<DataTransfer>, ConnectorError> {
        let mut url = self.transfer_url(&["transfers"])?;
        url.query_pairs_mut()
            .append_pair("oldOwnerUserId", old_owner)
            .append_pair("maxResults", &self.page_size(500));
        self.collect::<TransfersPage>(url).await
    }

    /// The ids of Drive and Docs and of Calendar (`applications.list`, read
    /// once).
    async fn transfer_apps(&self) -> Result<&(String, String), ConnectorError> {
        self.transfer_apps
            .get_or_try_init(|| async {
                let mut url = self.transfer_url(&["applications"])?;
                url.query_pairs_mut().append_pair("maxResults", "500");
                let apps = self.collect::<AppsPage>(url).await?;
                let find = |name: &str| {
                    apps.iter()
                        .find(|a| a.name.eq_ignore_ascii_case(name))
                        .map(|a| clean_max(&a.id, 40))
                        .ok_or_else(|| ConnectorError::Refused {
                            code: "noApplication".into(),
                            message: format!("the Data Transfer API lists no `{name}` application"),
                            manual: "Transfer the leaver's Drive and Calendar in the Admin console (Data transfer), then tick this step off".into(),
                        })
                };
                Ok((find(DRIVE_APP)?, find(CALENDAR_APP)?))
            })
            .await
    }

    /// Where the hand-over stands: a fresh read of the leaver's transfers
    /// when there is someone to hand over to.
    async fn hand_over_state(&self, account: &Account) -> Result<HandOver, ConnectorError> {
        let Some(to) = Self::hand_over_target(account) else {
            return Ok(HandOver::Manual);
        };
        let transfers = self.list_transfers(&account.id).await?;
        let (drive, calendar) = self.transfer_apps().await?;
        let covers = |t: &DataTransfer| {
            [drive, calendar].iter().all(|app| {
                t.application_data_transfers
                    .iter()
                    .any(|a| &a.application_id == *app)
            })
        };
        if transfers
            .iter()
            .any(|t| t.overall_transfer_status_code == "completed" && covers(t))
        {
            return Ok(HandOver::Done);
        }
        let under_way = transfers
            .into_iter()
            .filter(|t| {
                !matches!(
                    t.overall_transfer_status_code.as_str(),
                    "completed" | "failed"
                )
            })
            .rfind(|t| covers(t));
        Ok(HandOver::Open {
            to: to.to_string(),
            under_way,
        })
    }

    fn hand_over_grants(&self, state: &HandOver) -> Vec<Grant> {
        match state {
            HandOver::Manual => crate::connector::steps::account_step_grants(
                &self.id,
                &self.manual_steps,
                ACCOUNT_STEPS,
            ),
            HandOver::Done => Vec::new(),
            HandOver::Open { to, under_way } => {
                let details = match under_way {
                    Some(t) => format!(
                        "transfer {} {} (requested {}) to user {}; verified once a fresh read shows it completed",
                        clean_max(&t.id, 60),
                        clean_max(&t.overall_transfer_status_code, 30),
                        clean_max(t.request_time.as_deref().unwrap_or("?"), 40),
                        clean_max(&t.new_owner_user_id, 40),
                    ),
                    None => "Drive files and Calendar go to this person through the Data Transfer API, before the account is suspended".into(),
                };
                vec![self.grant(
                    HAND_OVER.into(),
                    GrantKind::Delegation,
                    format!("Drive and Calendar hand-over to {}", clean_max(to, 254)),
                    details,
                    Risk::Medium,
                )]
            }
        }
    }

    /// Asks for the transfer of Drive (private and shared files) and
    /// Calendar to the person named, unless one is already under way or
    /// done.
    async fn hand_over(&self, account: &Account) -> Result<RevokeOutcome, ConnectorError> {
        let to = match self.hand_over_state(account).await? {
            HandOver::Done => return Ok(RevokeOutcome::AlreadyGone),
            HandOver::Open {
                under_way: Some(_), ..
            } => return Ok(RevokeOutcome::Accepted),
            HandOver::Open { to, .. } => to,
            HandOver::Manual => {
                return Err(ConnectorError::Refused {
                    code: "manual".into(),
                    message: "nobody to hand the data over to".into(),
                    manual: "Name the person to hand over to (the manager), or transfer in the Admin console (Data transfer)".into(),
                });
            }
        };
        let dest = match self.read_user(&to).await {
            Ok(u) => u,
            Err(e) if e.is_not_found() => {
                return Err(ConnectorError::Refused {
                    code: "notFound".into(),
                    message: format!(
                        "{} has no Google account to hand over to",
                        clean_max(&to, 254)
                    ),
                    manual: format!(
                        "Name another person to hand {}'s data to, or transfer it in the Admin console (Data transfer) and tick this step off",
                        account.login
                    ),
                });
            }
            Err(e) => return Err(e),
        };
        if dest.id == account.id {
            return Err(ConnectorError::Refused {
                code: "sameUser".into(),
                message: "the person to hand over to is the leaver".into(),
                manual: "Name another person to hand the data over to".into(),
            });
        }
        let (drive, calendar) = self.transfer_apps().await?;
        let body = serde_json::json!({
            "oldOwnerUserId": account.id,
            "newOwnerUserId": dest.id,
            "applicationDataTransfers": [
                {"applicationId": drive, "applicationTransferParams": [
                    {"key": "PRIVACY_LEVEL", "value": ["PRIVATE", "SHARED"]}]},
                {"applicationId": calendar, "applicationTransferParams": [
                    {"key": "RELEASE_RESOURCES", "value": ["TRUE"]}]},
            ],
        });
        let req = ApiRequest::new(Method::POST, self.transfer_url(&["transfers"])?).json(body);
        self.client.send(req).await?;
        Ok(RevokeOutcome::Accepted)
    }

    /// The ids present in a fresh read of one kind, for `verify`.
    async fn present_ids(
        &self,
        account: &Account,
        kind: GrantKind,
        grants: &[&Grant],
    ) -> Result<HashSet<String>, ConnectorError> {
        let login = account.login.as_str();
        let ids = |v: Vec<Grant>| v.into_iter().map(|g| g.id).collect::<HashSet<_>>();
        match kind {
            GrantKind::OauthGrant => Ok(ids(self.list_tokens(login).await?)),
            GrantKind::AppPassword => Ok(ids(self.list_asps(login).await?)),
            GrantKind::BackupCodes => Ok(if self.count_codes(login).await? > 0 {
                HashSet::from([BACKUP_CODES.to_string()])
            } else {
                HashSet::new()
            }),
            GrantKind::Group => Ok(ids(self.group_grants(&self.list_groups(login).await?))),
            GrantKind::AdminRole => Ok(self
                .list_assignments(login)
                .await?
                .into_iter()
                .map(|a| format!("role:{}", clean_max(&a.role_assignment_id, 60)))
                .collect()),
            GrantKind::License => {
                let skus: Vec<&Sku> = self
                    .settings
                    .licenses
                    .iter()
                    .filter(|s| grants.iter().any(|g| g.id == license_id(s)))
                    .collect();
                Ok(ids(self.list_licenses(login, &skus).await?))
            }
            GrantKind::Device => Ok(ids(self.list_devices(login).await?)),
            GrantKind::Account => {
                let u = self.read_user(login).await?;
                Ok(if u.suspended {
                    HashSet::new()
                } else {
                    HashSet::from([SUSPEND.to_string()])
                })
            }
            // Sessions cannot be listed: a sign-out is never confirmed absent.
            GrantKind::Session => Ok(HashSet::from([SIGNOUT.to_string()])),
            // Manifest steps apply while the account exists; only a person
            // ticks them off.
            GrantKind::Delegation => {
                let state = self.hand_over_state(account).await?;
                if matches!(state, HandOver::Manual) {
                    self.read_user(login).await?;
                }
                let mut out = ids(self.hand_over_grants(&state));
                if let HandOver::Open {
                    under_way: Some(_), ..
                } = state
                {
                    out.insert(IN_PROGRESS.into());
                }
                Ok(out)
            }
            other => Err(ConnectorError::Config(format!(
                "the Google driver has no `{other}` grants"
            ))),
        }
    }

    fn refused_manual(grant: &Grant) -> ConnectorError {
        let manual = match &grant.revocation {
            Revocation::Manual { instructions } => instructions.clone(),
            Revocation::Api => String::new(),
        };
        ConnectorError::Refused {
            code: "manual".into(),
            message: format!("{} is a manual step", grant.label),
            manual,
        }
    }
}

fn license_id(s: &Sku) -> String {
    format!(
        "license:{}/{}",
        clean_max(&s.product_id, 60),
        clean_max(&s.sku_id, 60)
    )
}

/// A 404 on a removal means the thing is already gone.
fn gone_ok(r: Result<http::ApiResponse, ConnectorError>) -> Result<RevokeOutcome, ConnectorError> {
    match r {
        Ok(_) => Ok(RevokeOutcome::Accepted),
        Err(e) if e.is_not_found() => Ok(RevokeOutcome::AlreadyGone),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl Connector for GoogleWorkspace {
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
        // users.get resolves the primary address and aliases alike. The
        // person's primary address first, then each alias learned elsewhere;
        // only a 404 moves on (any other error is a failed lookup).
        let to = person.hand_over_to.as_deref();
        find_by_each_address(person, |address| async move {
            match self.read_user(&address).await {
                Ok(u) => {
                    let mut account = self.account_of(&u);
                    if let Some(to) = to {
                        account
                            .facts
                            .push((crate::connector::HAND_OVER_FACT.into(), clean_max(to, 254)));
                    }
                    Ok(Lookup::Found { account })
                }
                Err(e) if e.is_not_found() => Ok(Lookup::NotFound),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn list_grants(&self, account: &Account) -> Inventory {
        let login = account.login.as_str();
        let skus: Vec<&Sku> = self.settings.licenses.iter().collect();
        let (user, tokens, asps, codes, groups, assignments, names, licenses, devices, hand_over) = tokio::join!(
            self.read_user(login),
            self.list_tokens(login),
            self.list_asps(login),
            self.count_codes(login),
            self.list_groups(login),
            self.list_assignments(login),
            self.role_names(),
            self.list_licenses(login, &skus),
            self.list_devices(login),
            self.hand_over_state(account),
        );
        let mut inv = Inventory::default();
        match user {
            Ok(u) => {
                let (grants, codes_err) = self.user_grants(&u, codes);
                inv.grants.extend(grants);
                if let Some(e) = codes_err {
                    inv.failed.push((GrantKind::BackupCodes, e));
                }
            }
            Err(e) => {
                // Sessions, suspension and backup codes depend on the
                // user's state: nothing can be said about them.
                for k in [
                    GrantKind::Account,
                    GrantKind::Session,
                    GrantKind::BackupCodes,
                ] {
                    inv.failed.push((k, e.clone()));
                }
            }
        }
        let mut put = |kind: GrantKind, r: Result<Vec<Grant>, ConnectorError>| match r {
            Ok(g) => inv.grants.extend(g),
            Err(e) => inv.failed.push((kind, e)),
        };
        put(GrantKind::OauthGrant, tokens);
        put(GrantKind::AppPassword, asps);
        put(GrantKind::Device, devices);
        let group_emails: HashMap<String, String> = match &groups {
            Ok(gs) => gs.iter().map(|g| (g.id.clone(), g.email.clone())).collect(),
            Err(_) => HashMap::new(),
        };
        put(
            GrantKind::AdminRole,
            assignments.map(|a| self.role_grants(account, a, &names, &group_emails)),
        );
        put(GrantKind::Group, groups.map(|g| self.group_grants(&g)));
        put(GrantKind::License, licenses);
        put(
            GrantKind::Delegation,
            hand_over.map(|h| self.hand_over_grants(&h)),
        );
        inv
    }

    async fn revoke(
        &self,
        account: &Account,
        grant: &Grant,
    ) -> Result<RevokeOutcome, ConnectorError> {
        if grant.is_manual() {
            return Err(Self::refused_manual(grant));
        }
        let login = account.login.as_str();
        let id = grant.id.as_str();
        if id == SIGNOUT {
            let req = ApiRequest::new(Method::POST, self.dir(&["users", login, "signOut"])?)
                .idempotent(true);
            self.client.send(req).await?;
            return Ok(RevokeOutcome::Acknowledged);
        }
        if id == BACKUP_CODES {
            let url = self.dir(&["users", login, "verificationCodes", "invalidate"])?;
            let req = ApiRequest::new(Method::POST, url).idempotent(true);
            return match self.client.send(req).await {
                Ok(_) => Ok(RevokeOutcome::Accepted),
                Err(ConnectorError::Api { status, code, message }) if (400..500).contains(&status) && status != 404 => {
                    Err(ConnectorError::Refused {
                        code,
                        message,
                        manual: "If the user is already suspended, reactivate them briefly in the Admin console, invalidate the backup codes, then suspend again".into(),
                    })
                }
                Err(e) => Err(e),
            };
        }
        if id == HAND_OVER {
            return self.hand_over(account).await;
        }
        if id == SUSPEND {
            let req = ApiRequest::new(Method::PATCH, self.dir(&["users", login])?)
                .json(serde_json::json!({"suspended": true}));
            self.client.send(req).await?;
            return Ok(RevokeOutcome::Accepted);
        }
        let (prefix, rest) = id.split_once(':').ok_or_else(|| {
            ConnectorError::Config(format!("unknown Google grant `{}`", clean_max(id, 80)))
        })?;
        match prefix {
            "token" => {
                let url = self.dir(&["users", login, "tokens", rest])?;
                gone_ok(self.client.send(ApiRequest::new(Method::DELETE, url)).await)
            }
            "asp" => {
                let url = self.dir(&["users", login, "asps", rest])?;
                gone_ok(self.client.send(ApiRequest::new(Method::DELETE, url)).await)
            }
            "group" => {
                let url = self.dir(&["groups", rest, "members", login])?;
                gone_ok(self.client.send(ApiRequest::new(Method::DELETE, url)).await)
            }
            "role" => {
                let url = self.dir(&["customer", "my_customer", "roleassignments", rest])?;
                gone_ok(self.client.send(ApiRequest::new(Method::DELETE, url)).await)
            }
            "license" => {
                let sku = self
                    .settings
                    .licenses
                    .iter()
                    .find(|s| license_id(s) == id)
                    .ok_or_else(|| {
                        ConnectorError::Config(format!(
                            "license `{}` is not in this connector's settings.licenses",
                            clean_max(rest, 80)
                        ))
                    })?;
                let url = self.license_url(sku, login)?;
                gone_ok(self.client.send(ApiRequest::new(Method::DELETE, url)).await)
            }
            "device" => {
                let url = self.dir(&[
                    "customer",
                    &self.settings.customer,
                    "devices",
                    "mobile",
                    rest,
                    "action",
                ])?;
                let req = ApiRequest::new(Method::POST, url)
                    .json(serde_json::json!({"action": "admin_account_wipe"}))
                    .idempotent(true);
                gone_ok(self.client.send(req).await)
            }
            _ => Err(ConnectorError::Config(format!(
                "unknown Google grant `{}`",
                clean_max(id, 80)
            ))),
        }
    }

    async fn verify(
        &self,
        account: &Account,
        grants: &[Grant],
    ) -> Vec<(String, Result<Presence, ConnectorError>)> {
        // One fresh read per kind asked about, not one per grant.
        let mut kinds: Vec<GrantKind> = grants.iter().map(|g| g.kind).collect();
        kinds.sort();
        kinds.dedup();
        let reads = join_all(kinds.iter().map(|&k| {
            let of_kind: Vec<&Grant> = grants.iter().filter(|g| g.kind == k).collect();
            async move { (k, self.present_ids(account, k, &of_kind).await) }
        }))
        .await;
        let by_kind: HashMap<GrantKind, Result<HashSet<String>, ConnectorError>> =
            reads.into_iter().collect();
        grants
            .iter()
            .map(|g| {
                // A read answers for the ids it can hold: a licence of a
                // product no longer configured, say, is not read at all.
                let read = match g.kind {
                    GrantKind::Account => g.id == SUSPEND,
                    GrantKind::BackupCodes => g.id == BACKUP_CODES,
                    GrantKind::License => {
                        self.settings.licenses.iter().any(|s| g.id == license_id(s))
                    }
                    _ => true,
                };
                let r = match by_kind.get(&g.kind) {
                    _ if !read => Err(crate::connector::not_read(g)),
                    Some(Ok(ids)) if g.id == HAND_OVER && ids.contains(IN_PROGRESS) => {
                        Ok(Presence::InProgress)
                    }
                    Some(Ok(ids)) if ids.contains(&g.id) => Ok(Presence::Present),
                    Some(Ok(_)) => Ok(Presence::Absent),
                    Some(Err(e)) => Err(e.clone()),
                    None => Err(ConnectorError::BadResponse("not read".into())),
                };
                (g.id.clone(), r)
            })
            .collect()
    }

    /// `GET D/users?customer=&maxResults=500` (paged): every user of the
    /// customer, suspended ones included. Google has no guests in the
    /// directory; every user is a member.
    /// The directory: its listing says who is suspended.
    fn identity_directory(&self) -> bool {
        true
    }

    async fn list_accounts(&self) -> Result<Vec<ListedAccount>, ConnectorError> {
        let mut url = self.dir(&["users"])?;
        url.query_pairs_mut()
            .append_pair("customer", &self.settings.customer)
            .append_pair("maxResults", &self.page_size(500));
        let users = self.collect::<UsersPage>(url).await?;
        Ok(users
            .iter()
            .map(|u| ListedAccount {
                account: self.account_of(u),
                class: AccountClass::Member,
                owner: None,
            })
            .collect())
    }

    fn health(&self) -> Health {
        Health::from_stats(&self.client.stats())
    }

    /// Reads the admin the service account acts as
    /// (`users.get`, needs `admin.directory.user`): the token itself was
    /// granted for every manifest scope at once (domain-wide delegation is
    /// all or nothing).
    async fn probe(&self) -> Result<(), ConnectorError> {
        self.read_user(&self.subject).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(status: u16, body: &str, headers: HeaderMap) -> Verdict {
        GooglePolicy.classify(
            StatusCode::from_u16(status).unwrap(),
            &headers,
            body.as_bytes(),
        )
    }

    fn err(code: u16, reason: &str, msg: &str) -> String {
        serde_json::json!({"error": {"code": code, "message": msg, "status": "X",
            "errors": [{"domain": "global", "reason": reason, "message": msg}]}})
        .to_string()
    }

    #[test]
    fn policy_reads_google_errors() {
        for r in RATE_REASONS {
            assert!(matches!(
                classify(403, &err(403, r, "slow down"), HeaderMap::new()),
                Verdict::RateLimited(None)
            ));
        }
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert!(matches!(
            classify(429, &err(429, "rateLimitExceeded", "x"), h),
            Verdict::RateLimited(Some(d)) if d == Duration::from_secs(7)
        ));
        assert!(matches!(
            classify(401, "{}", HeaderMap::new()),
            Verdict::Unauthorized
        ));
        assert!(matches!(
            classify(503, "", HeaderMap::new()),
            Verdict::Transient
        ));
        match classify(
            403,
            &err(403, "forbidden", "Not Authorized\u{1b}[2J"),
            HeaderMap::new(),
        ) {
            Verdict::Fail(ConnectorError::Api {
                status,
                code,
                message,
            }) => {
                assert_eq!(status, 403);
                assert_eq!(code, "forbidden");
                assert!(!message.contains('\u{1b}'), "{message}");
            }
            other => panic!("{other:?}"),
        }
        match classify(404, "<html>nope</html>", HeaderMap::new()) {
            Verdict::Fail(e) => assert!(e.is_not_found()),
            other => panic!("{other:?}"),
        }
    }
}
