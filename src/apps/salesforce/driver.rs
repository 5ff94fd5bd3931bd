//! Salesforce driver: SOQL over the REST API of the org's My Domain.
//!
//! What it reads and removes, in the order it needs:
//! - phase 1: freeze the login (`UserLogin.IsFrozen`), end `AuthSession`s,
//!   revoke connected-app tokens (`OauthToken` via `/services/oauth2/revoke`);
//! - phase 2: permission set assignments (not those owned by a profile),
//!   then permission set licence assignments, public group and queue
//!   memberships, managed package licences;
//! - phase 3: deactivate (`User.IsActive = false`).
//!
//! Assumptions where the specs are silent, taken from Salesforce's docs:
//! - SOQL string literals escape `\` and `'` with a backslash (plus `\n`,
//!   `\r`, `\t`, `\b`, `\f`, `\"`); text comparison is case-insensitive.
//! - Query answers come in batches; `done: false` carries a relative
//!   `nextRecordsUrl` (`/services/data/vNN.0/query/{locator}`). The
//!   `Sforce-Query-Options: batchSize=N` header asks for 200..2,000 rows and
//!   the server may choose fewer. A listing is complete only when every page
//!   was read and the rows add up to `totalSize`.
//! - `OauthToken` has no usable Id (always null) and no delete call: a token
//!   is revoked by POSTing its `DeleteToken` as `token` to
//!   `{MyDomain}/services/oauth2/revoke` (200 on success; 400 `invalid_token`
//!   when the token is no longer valid, which here means already revoked).
//!   The DeleteToken is a credential: it lives only in a [`Secret`] for the
//!   length of one revoke call. Grant ids carry a keyed SHA-256 digest of it.
//!   An `OauthToken` query returns at most 2,500 rows in total.
//! - `DELETE /sobjects/{Type}/{Id}` answers 204; 404 `NOT_FOUND` or
//!   `ENTITY_IS_DELETED` means the row is already gone.
//! - Deactivation can be refused while org configuration names the user
//!   (default lead/case owner, Default Workflow User, assignment rules, ...).
//!   Salesforce answers 400 with an error array such as
//!   `FIELD_INTEGRITY_EXCEPTION`; that becomes [`ConnectorError::Refused`]
//!   with the manual step, and the freeze stays in place.
//! - Permission set assignments must be deleted before the permission set
//!   licence assignment they depend on: they are listed first and carry a
//!   higher risk, so the plan keeps them first within phase 2.
//! - 401 `INVALID_SESSION_ID` means the session expired or was revoked: the
//!   client gets one new token and retries. The JWT bearer answer has neither
//!   `expires_in` nor a refresh token; the token source caches it for 30
//!   minutes (below the default 2-hour session timeout) and 401 renewal
//!   covers shorter org timeouts. The assertion itself is valid for 150 s
//!   (Salesforce wants `exp` within about 3 minutes).
//! - 403 `REQUEST_LIMIT_EXCEEDED` (daily allocation or concurrent long
//!   requests) has no Retry-After: the client backs off. Every answer's
//!   `Sforce-Limit-Info: api-usage=n/max` is kept for the health line and
//!   handed to the shared client, which slows down as the allocation nears
//!   its end (`http::pace_share`), so the org's other integrations keep
//!   their share.

use crate::connector::find_by_each_address;
use crate::connector::id_prefix as prefix;
use crate::connector::maybe;

/// The sign-in methods this driver uses (`auth.flow`).
pub const FLOWS: &[crate::auth::oauth::Flow] = {
    use crate::auth::oauth::Flow;
    &[
        Flow::JwtBearer,
        Flow::DeviceCode,
        Flow::AuthorizationCode,
        Flow::ClientCredentials,
        Flow::Static,
    ]
};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

use crate::auth::TokenSource;
use crate::auth::jwt::{JwtBearer, JwtBearerConfig};
use crate::connector::http::{
    ApiClient, ApiRequest, LimitInfo, PageGuard, VendorPolicy, Verdict, default_classify,
};
use crate::connector::{
    AccountClass, BuildContext, Connector, ConnectorError, Health, Inventory, ListedAccount,
    Lookup, Presence, ResolvedConnector, RevokeOutcome,
};
use crate::model::{Account, Grant, GrantKind, Person, Phase, Risk};
use crate::sanitize::{clean, clean_max};
use crate::secret::Secret;

const USER_FIELDS: &str =
    "Id,Username,Email,Name,IsActive,UserType,ProfileId,Profile.Name,LastLoginDate";

/// Driver settings (`[settings]` in the manifest or config).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// REST API version, `vNN.0`.
    pub api_version: String,
    /// Rows per query batch asked for (200..=2000).
    #[serde(default = "default_batch")]
    pub query_batch_size: u32,
}

fn default_batch() -> u32 {
    2000
}

/// Reads Salesforce's answers: the `[{message, errorCode, fields}]` error
/// array, 403 `REQUEST_LIMIT_EXCEEDED`, and `Sforce-Limit-Info`.
pub struct SalesforcePolicy;

#[derive(Deserialize)]
struct SfError {
    #[serde(default)]
    message: String,
    #[serde(default, rename = "errorCode")]
    error_code: String,
}

/// The first error of a Salesforce error body: (errorCode, message), or the
/// OAuth form `{error, error_description}` of the revoke endpoint.
fn error_of(body: &[u8]) -> Option<(String, String)> {
    if let Ok(list) = serde_json::from_slice::<Vec<SfError>>(body) {
        return list
            .into_iter()
            .next()
            .map(|e| (clean_max(&e.error_code, 80), clean_max(&e.message, 300)));
    }
    let v: Value = serde_json::from_slice(body).ok()?;
    let code = v.get("error")?.as_str()?;
    let desc = v
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or("");
    Some((clean_max(code, 80), clean_max(desc, 300)))
}

impl VendorPolicy for SalesforcePolicy {
    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Verdict {
        if status.is_success() {
            return Verdict::Ok;
        }
        let err = error_of(body);
        let code = err.as_ref().map(|(c, _)| c.as_str()).unwrap_or("");
        match status.as_u16() {
            401 => Verdict::Unauthorized,
            403 if code == "REQUEST_LIMIT_EXCEEDED" => Verdict::RateLimited(None),
            429 => Verdict::RateLimited(crate::connector::http::retry_after(headers)),
            408 | 500 | 502 | 503 | 504 => Verdict::Transient,
            s => match err {
                Some((code, message)) => Verdict::Fail(ConnectorError::Api {
                    status: s,
                    code,
                    message,
                }),
                None => default_classify(status, headers, body),
            },
        }
    }

    fn limit_info(&self, headers: &HeaderMap) -> Option<LimitInfo> {
        let raw = headers.get("sforce-limit-info")?.to_str().ok()?;
        let usage = raw
            .split(',')
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("api-usage"))?
            .1
            .trim();
        let (used, max) = usage.split_once('/')?;
        let (used, max) = (used.parse::<u64>().ok()?, max.parse::<u64>().ok()?);
        Some(LimitInfo {
            text: format!("API requests {used}/{max} (24 h)"),
            usage: Some((used, max)),
            resets_in: None,
        })
    }
}

/// Escapes a value for a SOQL string literal (between single quotes).
pub fn soql_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The grant id of a connected-app token: a keyed digest of its DeleteToken
/// (stable across reads, says nothing about the token).
fn oauth_grant_id(delete_token: &Secret) -> String {
    let mut h = Sha256::new();
    h.update(b"offboard/salesforce/OauthToken/");
    h.update(delete_token.expose().as_bytes());
    format!("oauth:{}", &hex::encode(h.finalize())[..32])
}

fn s(v: &Value, f: &str) -> String {
    v.get(f)
        .and_then(Value::as_str)
        .map(clean)
        .unwrap_or_default()
}

fn rel(v: &Value, r: &str, f: &str) -> String {
    v.get(r).map(|o| s(o, f)).unwrap_or_default()
}

fn opt(v: &Value, f: &str) -> Option<String> {
    v.get(f).and_then(Value::as_str).map(clean)
}

/// A record id as sent back in a URL or a SOQL literal: Salesforce ids are
/// 15 or 18 alphanumerics; anything else is a bad answer.
fn record_id(v: &Value) -> Result<String, ConnectorError> {
    let id = v.get("Id").and_then(Value::as_str).unwrap_or("");
    if (id.len() == 15 || id.len() == 18) && id.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(id.to_string())
    } else {
        Err(ConnectorError::BadResponse(format!(
            "record without a valid Id: `{}`",
            clean_max(id, 40)
        )))
    }
}

/// The driver's JWT bearer token source, for callers outside the driver
/// (`offboard doctor`, `offboard login`).
pub fn jwt_token_source(
    resolved: &ResolvedConnector,
    ctx: &BuildContext,
) -> Result<Arc<dyn TokenSource>, ConnectorError> {
    let login = resolved
        .url("login_url")
        .map_err(|e| ConnectorError::Config(e.to_string()))?;
    salesforce_jwt(resolved, &login, ctx)
}

/// The JWT bearer flow as Salesforce wants it: `iss` = consumer key
/// (`auth.client_id`, or `auth.issuer`), `sub` = the admin's username,
/// `aud` = the login URL (not the token URL), `exp` within 3 minutes; the
/// token endpoint defaults to `{login_url}/services/oauth2/token`.
fn salesforce_jwt(
    resolved: &ResolvedConnector,
    login: &Url,
    ctx: &BuildContext,
) -> Result<Arc<dyn TokenSource>, ConnectorError> {
    let auth = &resolved.manifest.auth;
    let login_str = login.as_str().trim_end_matches('/').to_string();
    let token_url = match &auth.token_url {
        Some(t) => crate::connector::manifest::check_url(t).map_err(|why| {
            ConnectorError::Config(format!(
                "key `connectors.{}.auth.token_url`: expected the token endpoint URL, found {why}",
                resolved.id
            ))
        })?,
        None => Url::parse(&format!("{login_str}/services/oauth2/token"))
            .map_err(|e| ConnectorError::Config(format!("login_url: {e}")))?,
    };
    let missing = |k: &str, what: &str| {
        ConnectorError::Config(format!(
            "key `connectors.{}.auth.{k}`: expected {what}, found nothing",
            resolved.id
        ))
    };
    let issuer = auth
        .client_id
        .clone()
        .or_else(|| auth.issuer.clone())
        .ok_or_else(|| missing("client_id", "the connected app's consumer key"))?;
    let subject = auth
        .subject
        .clone()
        .ok_or_else(|| missing("subject", "the integration admin's username"))?;
    let key_path = auth
        .key_file
        .as_deref()
        .map(|p| resolved.path(p))
        .ok_or_else(|| missing("key_file", "a PEM private key file"))?;
    let pem = std::fs::read_to_string(&key_path).map_err(|e| {
        ConnectorError::Config(format!(
            "connector `{}`: cannot read the private key {}: {e}",
            resolved.id,
            key_path.display()
        ))
    })?;
    let jwt = JwtBearer::new(
        ctx.http.clone(),
        JwtBearerConfig {
            token_url,
            issuer,
            subject: Some(subject),
            scopes: Vec::new(),
            audience: Some(auth.audience.clone().unwrap_or(login_str)),
            private_key_pem: Secret::new(pem),
            key_id: None,
        },
    )?
    .with_assertion_lifetime(Duration::from_secs(150));
    Ok(Arc::new(jwt))
}

pub struct Salesforce {
    id: String,
    display_name: String,
    client: ApiClient,
    /// My Domain.
    base: Url,
    /// `{base}/services/data/vNN.0/`.
    api: Url,
    batch_size: u32,
    refresh: Duration,
    deactivation_manual: String,
}

impl Salesforce {
    pub fn new(resolved: &ResolvedConnector, ctx: &BuildContext) -> Result<Self, ConnectorError> {
        let cfg = |e: crate::tomlfile::ConfigError| ConnectorError::Config(e.to_string());
        let settings: Settings = resolved.settings().map_err(cfg)?;
        let version = settings.api_version.trim().to_string();
        let ok_version = version
            .strip_prefix('v')
            .and_then(|n| n.strip_suffix(".0"))
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if !ok_version {
            return Err(ConnectorError::Config(format!(
                "key `connectors.{}.settings.api_version`: expected a version like v62.0, found `{}`",
                resolved.id,
                clean_max(&version, 40)
            )));
        }
        if !(200..=2000).contains(&settings.query_batch_size) {
            return Err(ConnectorError::Config(format!(
                "key `connectors.{}.settings.query_batch_size`: expected 200 to 2000, found {}",
                resolved.id, settings.query_batch_size
            )));
        }
        let base = resolved.url("base_url").map_err(cfg)?;
        let login = resolved.url("login_url").map_err(cfg)?;
        let auth = match crate::auth::oauth::Flow::of(resolved)? {
            crate::auth::oauth::Flow::JwtBearer => salesforce_jwt(resolved, &login, ctx)?,
            // Device flow, static tokens, ...: the shared token sources.
            _ => crate::apps::token_source(resolved, ctx)?,
        };
        // Only My Domain may receive the bearer token (the login host is
        // reached by the token source alone).
        let client = ApiClient::new(
            ctx.http.clone(),
            resolved.http_settings(),
            std::slice::from_ref(&base),
            Some(auth),
            Arc::new(SalesforcePolicy),
            ctx.notices.clone(),
        );
        let api =
            crate::connector::http::join_segments(&base, &["services", "data", &version, ""])?;
        Ok(Self {
            id: resolved.id.clone(),
            display_name: resolved.manifest.display_name.clone(),
            client,
            base,
            api,
            batch_size: settings.query_batch_size,
            refresh: resolved.refresh_interval(),
            deactivation_manual: resolved
                .manifest
                .manual_steps
                .get("deactivation_refused")
                .cloned()
                .unwrap_or_else(|| {
                    "Reassign the org settings that still name this user in Setup, then deactivate again; the login stays frozen meanwhile.".into()
                }),
        })
    }

    /// The shared client's counters (requests, rate limits, limit info).
    pub fn client_stats(&self) -> crate::connector::http::ClientStats {
        self.client.stats()
    }

    fn sobject_url(&self, object: &str, id: &str) -> Result<Url, ConnectorError> {
        self.client.url(&self.api, &["sobjects", object, id])
    }

    /// Runs a SOQL query and reads every page. Fails unless the whole result
    /// was read.
    pub async fn query(&self, soql: &str) -> Result<Vec<Value>, ConnectorError> {
        self.query_pages(soql, false).await
    }

    /// [`Self::query`] for rows that hold credentials (DeleteTokens): an
    /// answer that does not parse is reported without quoting it.
    async fn query_secret(&self, soql: &str) -> Result<Vec<Value>, ConnectorError> {
        self.query_pages(soql, true).await
    }

    async fn query_pages(&self, soql: &str, secret: bool) -> Result<Vec<Value>, ConnectorError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(rename = "totalSize")]
            total_size: u64,
            done: bool,
            records: Vec<Value>,
            #[serde(default, rename = "nextRecordsUrl")]
            next_records_url: Option<String>,
        }
        let options = format!("batchSize={}", self.batch_size);
        let mut url = self.client.url(&self.api, &["query"])?;
        url.query_pairs_mut().append_pair("q", soql);
        let mut guard = PageGuard::new();
        let mut out = Vec::new();
        let mut total = None;
        loop {
            let mut req = ApiRequest::get(url).header("Sforce-Query-Options", options.clone());
            if secret {
                req = req.secret_answer();
            }
            let page: Page = self.client.send(req).await?.json()?;
            total.get_or_insert(page.total_size);
            out.extend(page.records);
            if page.done {
                break;
            }
            let Some(next) = guard.next(page.next_records_url.as_deref())? else {
                return Err(ConnectorError::BadResponse(
                    "query answer has done=false but no nextRecordsUrl; the listing is incomplete"
                        .into(),
                ));
            };
            url = self.client.resolve_link(&self.base, &next)?;
        }
        let total = total.unwrap_or(0);
        if out.len() as u64 != total {
            return Err(ConnectorError::BadResponse(format!(
                "query returned {} of {total} rows; the listing is incomplete",
                out.len()
            )));
        }
        Ok(out)
    }

    /// Looks users up by Username or Email for each address.
    pub async fn find_by_addresses(&self, addresses: &[String]) -> Result<Lookup, ConnectorError> {
        let mut terms = Vec::new();
        for a in addresses {
            let q = soql_quote(a.trim());
            terms.push(format!("Username={q}"));
            terms.push(format!("Email={q}"));
        }
        if terms.is_empty() {
            return Ok(Lookup::NotFound);
        }
        let soql = format!(
            "SELECT {USER_FIELDS} FROM User WHERE {}",
            terms.join(" OR ")
        );
        let rows = self.query(&soql).await?;
        let mut accounts: Vec<Account> = Vec::new();
        for r in &rows {
            let a = self.account(r)?;
            if !accounts.iter().any(|x| x.id == a.id) {
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

    fn account(&self, r: &Value) -> Result<Account, ConnectorError> {
        let profile = rel(r, "Profile", "Name");
        let mut facts = vec![("email".to_string(), s(r, "Email"))];
        if !profile.is_empty() {
            facts.push(("profile".into(), profile.clone()));
        }
        let user_type = s(r, "UserType");
        if !user_type.is_empty() {
            facts.push(("user type".into(), user_type));
        }
        let active = r.get("IsActive").and_then(Value::as_bool).unwrap_or(false);
        if !active {
            facts.push(("status".into(), "inactive (deactivated)".into()));
        }
        let email = s(r, "Email").to_ascii_lowercase();
        Ok(Account {
            // Salesforce's deliverable address is `Email`; `Username` is
            // email-shaped but need not receive mail.
            addresses: if email.is_empty() {
                Vec::new()
            } else {
                vec![email]
            },
            matched_by: None,
            connector: self.id.clone(),
            id: record_id(r)?,
            login: s(r, "Username"),
            display_name: s(r, "Name"),
            active,
            is_admin: profile == "System Administrator",
            last_login: opt(r, "LastLoginDate"),
            facts,
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

    /// Account-kind grants: freeze (phase 1) while the login is not frozen,
    /// deactivate (phase 3) while the user is active.
    async fn account_grants(&self, user: &str) -> Result<Vec<Grant>, ConnectorError> {
        let q = soql_quote(user);
        let users = self
            .query(&format!("SELECT Id,IsActive FROM User WHERE Id={q}"))
            .await?;
        let active = users
            .first()
            .and_then(|u| u.get("IsActive"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut out = Vec::new();
        if !active {
            return Ok(out);
        }
        let logins = self
            .query(&format!(
                "SELECT Id,IsFrozen FROM UserLogin WHERE UserId={q}"
            ))
            .await?;
        for l in &logins {
            if l.get("IsFrozen").and_then(Value::as_bool) == Some(false) {
                let mut g = self.grant(
                    format!("freeze:{}", record_id(l)?),
                    GrantKind::Account,
                    "Freeze login".into(),
                    "Blocks sign-in at once while the rest is removed (UserLogin.IsFrozen)".into(),
                    Risk::Critical,
                );
                g.phase = Some(Phase::CutAccess);
                out.push(g);
            }
        }
        out.push(self.grant(
            format!("deactivate:{user}"),
            GrantKind::Account,
            "Deactivate user".into(),
            "User.IsActive = false; frees the user licence".into(),
            Risk::High,
        ));
        Ok(out)
    }

    async fn session_grants(&self, user: &str) -> Result<Vec<Grant>, ConnectorError> {
        let rows = self
            .query(&format!(
                "SELECT Id,SessionType,LoginType,SourceIp,CreatedDate,LastModifiedDate,NumSecondsValid FROM AuthSession WHERE UsersId={}",
                soql_quote(user)
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let mut g = self.grant(
                    format!("session:{}", record_id(r)?),
                    GrantKind::Session,
                    format!("{} session from {}", s(r, "SessionType"), s(r, "SourceIp")),
                    format!(
                        "login type {}; last active {}",
                        s(r, "LoginType"),
                        s(r, "LastModifiedDate")
                    ),
                    Risk::High,
                );
                g.since = opt(r, "CreatedDate");
                Ok(g)
            })
            .collect()
    }

    /// Connected-app tokens. The DeleteToken is read into a Secret, hashed
    /// into the grant id and dropped.
    async fn oauth_rows(&self, user: &str) -> Result<Vec<(String, Secret, Value)>, ConnectorError> {
        let rows = self
            .query_secret(&format!(
                "SELECT AppName,DeleteToken,LastUsedDate,UseCount,CreatedDate FROM OauthToken WHERE UserId={}",
                soql_quote(user)
            ))
            .await?;
        let mut out = Vec::new();
        for mut r in rows {
            let token = match r.get_mut("DeleteToken").map(Value::take) {
                Some(Value::String(t)) if !t.is_empty() => Secret::new(t),
                _ => {
                    return Err(ConnectorError::BadResponse(
                        "an OauthToken row has no DeleteToken (the connector needs Customize Application to see every user's tokens)".into(),
                    ));
                }
            };
            out.push((oauth_grant_id(&token), token, r));
        }
        Ok(out)
    }

    async fn oauth_grants(&self, user: &str) -> Result<Vec<Grant>, ConnectorError> {
        Ok(self
            .oauth_rows(user)
            .await?
            .into_iter()
            .map(|(id, _token, r)| {
                let uses = r.get("UseCount").and_then(Value::as_u64).unwrap_or(0);
                let mut g = self.grant(
                    id,
                    GrantKind::OauthGrant,
                    format!("Connected app: {}", s(&r, "AppName")),
                    format!(
                        "used {uses} times, last {}",
                        opt(&r, "LastUsedDate").unwrap_or_else(|| "never".into())
                    ),
                    Risk::High,
                );
                g.since = opt(&r, "CreatedDate");
                g
            })
            .collect())
    }

    async fn permset_grants(&self, user: &str) -> Result<Vec<Grant>, ConnectorError> {
        let rows = self
            .query(&format!(
                "SELECT Id,PermissionSetId,PermissionSet.Name,PermissionSet.Label FROM PermissionSetAssignment WHERE AssigneeId={} AND PermissionSet.IsOwnedByProfile=false",
                soql_quote(user)
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let name = rel(r, "PermissionSet", "Name");
                let label = rel(r, "PermissionSet", "Label");
                let shown = if label.is_empty() {
                    name.clone()
                } else {
                    label
                };
                let lower = name.to_ascii_lowercase();
                let risk = if ["modify_all", "view_all", "admin", "api"]
                    .iter()
                    .any(|w| lower.contains(w))
                {
                    Risk::High
                } else {
                    Risk::Medium
                };
                Ok(self.grant(
                    format!("permset:{}", record_id(r)?),
                    GrantKind::AdminRole,
                    format!("Permission set: {shown}"),
                    format!("API name {name}"),
                    risk,
                ))
            })
            .collect()
    }

    async fn psl_grants(&self, user: &str) -> Result<Vec<Grant>, ConnectorError> {
        let rows = self
            .query(&format!(
                "SELECT Id,PermissionSetLicenseId,PermissionSetLicense.MasterLabel FROM PermissionSetLicenseAssign WHERE AssigneeId={}",
                soql_quote(user)
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(self.grant(
                    format!("psl:{}", record_id(r)?),
                    GrantKind::License,
                    format!(
                        "Permission set licence: {}",
                        rel(r, "PermissionSetLicense", "MasterLabel")
                    ),
                    "removed after the permission sets that need it".into(),
                    Risk::Low,
                ))
            })
            .collect()
    }

    async fn package_grants(&self, user: &str) -> Result<Vec<Grant>, ConnectorError> {
        let rows = self
            .query(&format!(
                "SELECT Id,PackageLicenseId,PackageLicense.NamespacePrefix FROM UserPackageLicense WHERE UserId={}",
                soql_quote(user)
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(self.grant(
                    format!("package:{}", record_id(r)?),
                    GrantKind::License,
                    format!(
                        "Managed package licence: {}",
                        rel(r, "PackageLicense", "NamespacePrefix")
                    ),
                    format!("package licence {}", s(r, "PackageLicenseId")),
                    Risk::Low,
                ))
            })
            .collect()
    }

    async fn group_grants(&self, user: &str) -> Result<Vec<Grant>, ConnectorError> {
        let rows = self
            .query(&format!(
                "SELECT Id,GroupId,Group.Name,Group.Type FROM GroupMember WHERE UserOrGroupId={}",
                soql_quote(user)
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let ty = rel(r, "Group", "Type");
                let what = if ty == "Queue" {
                    "Queue"
                } else {
                    "Public group"
                };
                Ok(self.grant(
                    format!("group:{}", record_id(r)?),
                    GrantKind::Group,
                    format!("{what}: {}", rel(r, "Group", "Name")),
                    format!("group {} ({ty})", s(r, "GroupId")),
                    if ty == "Queue" {
                        Risk::Medium
                    } else {
                        Risk::Low
                    },
                ))
            })
            .collect()
    }

    /// `DELETE /sobjects/{Type}/{Id}`: 204, or already gone on 404.
    async fn delete_row(&self, object: &str, id: &str) -> Result<RevokeOutcome, ConnectorError> {
        let req = ApiRequest::new(Method::DELETE, self.sobject_url(object, id)?);
        match self.client.send(req).await {
            Ok(_) => Ok(RevokeOutcome::Accepted),
            Err(e) if e.is_not_found() || e.code() == Some("ENTITY_IS_DELETED") => {
                Ok(RevokeOutcome::AlreadyGone)
            }
            Err(e) => Err(e),
        }
    }

    async fn patch(
        &self,
        object: &str,
        id: &str,
        body: Value,
    ) -> Result<RevokeOutcome, ConnectorError> {
        let req = ApiRequest::new(Method::PATCH, self.sobject_url(object, id)?).json(body);
        self.client.send(req).await.map(|_| RevokeOutcome::Accepted)
    }

    async fn revoke_oauth(
        &self,
        user: &str,
        grant_id: &str,
    ) -> Result<RevokeOutcome, ConnectorError> {
        // Re-read: the DeleteToken is never kept between calls.
        let rows = self.oauth_rows(user).await?;
        let Some((_, token, _)) = rows.into_iter().find(|(id, _, _)| id == grant_id) else {
            return Ok(RevokeOutcome::AlreadyGone);
        };
        let url = self
            .client
            .url(&self.base, &["services", "oauth2", "revoke"])?;
        // The revoke endpoint authenticates by the token itself: no bearer.
        let req = ApiRequest::new(Method::POST, url)
            .form(vec![("token".into(), token.expose().to_string())])
            .secret_body()
            .unauthenticated()
            .idempotent(true);
        match self.client.send(req).await {
            Ok(_) => Ok(RevokeOutcome::Accepted),
            Err(ConnectorError::Api {
                status: 400, code, ..
            }) if code == "invalid_token" => Ok(RevokeOutcome::AlreadyGone),
            Err(ConnectorError::Api { status, code, .. }) => Err(ConnectorError::Api {
                status,
                code,
                message: "the revoke endpoint refused the token".into(),
            }),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Connector for Salesforce {
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
        // The primary address, then each alias on its own, so that a match
        // says which address found it. Several users for one address are
        // ambiguous: the operator picks.
        find_by_each_address(person, |address| async move {
            self.find_by_addresses(&[address]).await
        })
        .await
    }

    async fn list_grants(&self, account: &Account) -> Inventory {
        let user = account.id.as_str();
        let (acct, sessions, oauth, permsets, psls, groups, packages) = tokio::join!(
            self.account_grants(user),
            self.session_grants(user),
            self.oauth_grants(user),
            self.permset_grants(user),
            self.psl_grants(user),
            self.group_grants(user),
            self.package_grants(user),
        );
        let mut inv = Inventory::default();
        let mut licences = Vec::new();
        let take =
            |kind: GrantKind, r: Result<Vec<Grant>, ConnectorError>, inv: &mut Inventory| match r {
                Ok(g) => inv.grants.extend(g),
                Err(e) => {
                    if !inv.failed.iter().any(|(k, _)| *k == kind) {
                        inv.failed.push((kind, e));
                    }
                }
            };
        take(GrantKind::Account, acct, &mut inv);
        take(GrantKind::Session, sessions, &mut inv);
        take(GrantKind::OauthGrant, oauth, &mut inv);
        // Permission sets before the licences they depend on.
        take(GrantKind::AdminRole, permsets, &mut inv);
        take(GrantKind::Group, groups, &mut inv);
        for r in [psls, packages] {
            match r {
                Ok(g) => licences.extend(g),
                Err(e) => take(GrantKind::License, Err(e), &mut inv),
            }
        }
        if inv.kind_failed(GrantKind::License).is_none() {
            // Salesforce refuses to delete a PermissionSetLicenseAssign while
            // permission sets that need the licence are still assigned: each
            // licence waits for every permission set assignment of the user
            // (the query does not say which set needs which licence).
            let permsets: Vec<String> = inv
                .grants
                .iter()
                .filter(|g| g.id.starts_with("permset:"))
                .map(|g| g.id.clone())
                .collect();
            for g in &mut licences {
                if g.id.starts_with("psl:") {
                    g.after = permsets.clone();
                }
            }
            inv.grants.extend(licences);
        }
        inv
    }

    async fn revoke(
        &self,
        account: &Account,
        grant: &Grant,
    ) -> Result<RevokeOutcome, ConnectorError> {
        let (what, id) = grant.id.split_once(':').ok_or_else(|| {
            ConnectorError::Config(format!(
                "not a Salesforce grant: {}",
                clean_max(&grant.id, 80)
            ))
        })?;
        match what {
            "freeze" => {
                self.patch("UserLogin", id, serde_json::json!({"IsFrozen": true}))
                    .await
            }
            "deactivate" => {
                match self
                    .patch("User", id, serde_json::json!({"IsActive": false}))
                    .await
                {
                    Err(ConnectorError::Api {
                        status,
                        code,
                        message,
                    }) if (400..500).contains(&status) && status != 404 => {
                        Err(ConnectorError::Refused {
                            code,
                            message,
                            manual: self.deactivation_manual.clone(),
                        })
                    }
                    Err(e) if e.is_not_found() => Err(ConnectorError::Api {
                        status: 404,
                        code: "NOT_FOUND".into(),
                        message: "the user no longer exists".into(),
                    }),
                    other => other,
                }
            }
            "session" => self.delete_row("AuthSession", id).await,
            "permset" => self.delete_row("PermissionSetAssignment", id).await,
            "psl" => self.delete_row("PermissionSetLicenseAssign", id).await,
            "group" => self.delete_row("GroupMember", id).await,
            "package" => self.delete_row("UserPackageLicense", id).await,
            "oauth" => self.revoke_oauth(&account.id, &grant.id).await,
            _ => Err(ConnectorError::Config(format!(
                "not a Salesforce grant: {}",
                clean_max(&grant.id, 80)
            ))),
        }
    }

    /// Re-reads only the objects the asked grants live in (one query per
    /// kind of row; the account is read as User then UserLogin).
    async fn verify(
        &self,
        account: &Account,
        grants: &[Grant],
    ) -> Vec<(String, Result<Presence, ConnectorError>)> {
        let user = account.id.as_str();
        let has = |p: &str| grants.iter().any(|g| prefix(g) == p);
        let (acct, sessions, oauth, permsets, psls, groups, packages) = tokio::join!(
            maybe(
                has("freeze") || has("deactivate"),
                self.account_grants(user)
            ),
            maybe(has("session"), self.session_grants(user)),
            maybe(has("oauth"), self.oauth_grants(user)),
            maybe(has("permset"), self.permset_grants(user)),
            maybe(has("psl"), self.psl_grants(user)),
            maybe(has("group"), self.group_grants(user)),
            maybe(has("package"), self.package_grants(user)),
        );
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
                    "freeze" | "deactivate" => present(&acct, g),
                    "session" => present(&sessions, g),
                    "oauth" => present(&oauth, g),
                    "permset" => present(&permsets, g),
                    "psl" => present(&psls, g),
                    "group" => present(&groups, g),
                    "package" => present(&packages, g),
                    _ => Err(ConnectorError::Config(format!(
                        "not a Salesforce grant: {}",
                        clean_max(&g.id, 80)
                    ))),
                };
                (g.id.clone(), r)
            })
            .collect()
    }

    /// `SELECT … FROM User WHERE Email IN (…) OR Username IN (…)`, a
    /// hundred addresses a query: the users matching any of the people's
    /// addresses, matched to each person as their own lookup would.
    async fn find_people(
        &self,
        people: &[Person],
    ) -> Result<Vec<(String, Lookup)>, ConnectorError> {
        let addresses: Vec<String> = people
            .iter()
            .flat_map(|p| p.addresses().map(|a| a.trim().to_string()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut accounts: Vec<Account> = Vec::new();
        for chunk in addresses.chunks(100) {
            let list = chunk
                .iter()
                .map(|a| soql_quote(a))
                .collect::<Vec<_>>()
                .join(",");
            let rows = self
                .query(&format!(
                    "SELECT {USER_FIELDS} FROM User WHERE Email IN ({list}) OR Username IN ({list})"
                ))
                .await?;
            for r in &rows {
                let a = self.account(r)?;
                if !accounts.iter().any(|x| x.id == a.id) {
                    accounts.push(a);
                }
            }
        }
        Ok(crate::connector::match_listed(people, &accounts))
    }

    /// `SELECT … FROM User` (every page): standard users are members;
    /// portal, community and guest-site users are guests; automated-process
    /// and integration users are non-human.
    async fn list_accounts(&self) -> Result<Vec<ListedAccount>, ConnectorError> {
        let rows = self
            .query(&format!("SELECT {USER_FIELDS} FROM User"))
            .await?;
        rows.iter()
            .map(|r| {
                let class = match s(r, "UserType").as_str() {
                    "" | "Standard" => AccountClass::Member,
                    "AutomatedProcess" | "CloudIntegrationUser" | "LicenseManager" => {
                        AccountClass::NonHuman
                    }
                    _ => AccountClass::Guest,
                };
                Ok(ListedAccount {
                    account: self.account(r)?,
                    class,
                    owner: None,
                })
            })
            .collect()
    }

    fn health(&self) -> Health {
        Health::from_stats(&self.client.stats())
    }

    /// `GET /services/data/vNN.0/limits`: needs a valid session and the
    /// `api` scope; its `Sforce-Limit-Info` header feeds the limit line, and
    /// an exhausted `DailyApiRequests` allocation fails the check.
    async fn probe(&self) -> Result<(), ConnectorError> {
        #[derive(Deserialize)]
        struct Allocation {
            #[serde(rename = "Max")]
            max: u64,
            #[serde(rename = "Remaining")]
            remaining: u64,
        }
        #[derive(Deserialize)]
        struct Limits {
            #[serde(rename = "DailyApiRequests")]
            daily: Option<Allocation>,
        }
        let url = crate::connector::http::join_segments(&self.api, &["limits"])?;
        let limits: Limits = self.client.get_json(url).await?;
        match limits.daily {
            Some(d) if d.remaining == 0 => Err(ConnectorError::RateLimited {
                retry_after: None,
                message: format!(
                    "the org's daily API allocation is used up (0 of {} left)",
                    d.max
                ),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_soql_literals() {
        assert_eq!(soql_quote("o'hara@x.com"), "'o\\'hara@x.com'");
        assert_eq!(soql_quote("a\\' OR Email='b"), "'a\\\\\\' OR Email=\\'b'");
        assert_eq!(soql_quote("x\ny"), "'x\\ny'");
    }

    #[test]
    fn reads_errors_and_limits() {
        let p = SalesforcePolicy;
        let mut h = HeaderMap::new();
        h.insert("sforce-limit-info", "api-usage=25/15000".parse().unwrap());
        let info = p.limit_info(&h).expect("read");
        assert_eq!(info.text, "API requests 25/15000 (24 h)");
        assert_eq!(info.usage, Some((25, 15000)));
        let body = br#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#;
        assert!(matches!(
            p.classify(StatusCode::FORBIDDEN, &h, body),
            Verdict::RateLimited(None)
        ));
        let body =
            br#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#;
        assert!(matches!(
            p.classify(StatusCode::UNAUTHORIZED, &h, body),
            Verdict::Unauthorized
        ));
        let body = br#"[{"message":"bad \u001b[31m","errorCode":"MALFORMED_QUERY","fields":[]}]"#;
        match p.classify(StatusCode::BAD_REQUEST, &h, body) {
            Verdict::Fail(ConnectorError::Api { code, message, .. }) => {
                assert_eq!(code, "MALFORMED_QUERY");
                assert!(!message.contains('\u{1b}'));
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn oauth_ids_hide_the_token() {
        let t = Secret::new("00D!secretdeletetoken");
        let id = oauth_grant_id(&t);
        assert!(id.starts_with("oauth:"));
        assert!(!id.contains("secret"));
        assert_eq!(id, oauth_grant_id(&Secret::new("00D!secretdeletetoken")));
    }
}
