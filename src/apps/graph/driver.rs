//! Microsoft Graph driver: Entra ID and Microsoft 365 through the Graph v1.0
//! API, with application permissions (client credentials).
//!
//! What it reads and removes:
//! - phase 1: every sign-in session (`revokeSignInSessions`: Graph cannot
//!   list sessions, so this ends `acknowledged`; access tokens already
//!   issued stay valid until they expire, up to about an hour), delegated
//!   permission grants the user consented to (`oauth2PermissionGrants` with
//!   `principalId`: `AllPrincipals` grants are tenant-wide and never
//!   touched), authentication methods (each kind at its own endpoint; the
//!   password method cannot be deleted and stays), registered devices
//!   (disabled, `accountEnabled: false`);
//! - phase 2: app role assignments, directory role assignments
//!   (`roleAssignments`) and PIM-eligible roles (`roleEligibilityScheduleRequests`
//!   with `adminRemove`), direct group memberships (`members/{id}/$ref`;
//!   dynamic, on-premises-synced and mail-enabled groups are manual steps:
//!   Graph cannot change them), direct licences (`assignLicense`; a licence
//!   a group assigns is a manual step at the group), and what the user owns
//!   (`ownedObjects`: app registrations and service principals are
//!   non-human identities to hand over; owned groups need a new owner);
//! - phase 3: `PATCH accountEnabled=false`, last. A user synced from
//!   on-premises AD (`onPremisesSyncEnabled`) is mastered there: closing it
//!   is a manual step on-premises, never a cloud write the next sync undoes.
//!
//! Lookup: `GET /users/{upn}`, then `$filter=mail eq … or userPrincipalName
//! eq …`, then `proxyAddresses/any(…)`, an advanced query
//! (`ConsistencyLevel: eventual`, `$count=true`) served from an index that
//! lags behind recent changes. Non-default properties are asked with
//! `$select`.
//!
//! A user's lists are read together in one `$batch` (at most 20 requests);
//! an item the batch answers with an error (a throttled one included) is
//! read again on its own through the shared client, which honours
//! `Retry-After`. Paging follows the absolute `@odata.nextLink` through the
//! shared client's same-origin check and page guard.

use crate::connector::id_prefix as prefix;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use crate::auth::oauth::Flow;
use crate::connector::http::{
    ApiClient, ApiRequest, PageGuard, VendorPolicy, Verdict, default_classify,
};
use crate::connector::{
    AccountClass, BuildContext, Connector, ConnectorError, Health, Inventory, ListedAccount,
    Lookup, Presence, ResolvedConnector, RevokeOutcome, find_by_each_address,
};
use crate::model::{Account, Grant, GrantKind, Person, Phase, Revocation, Risk};
use crate::sanitize::{clean, clean_max};

/// The sign-in method this driver uses: client credentials (a client
/// secret, or a certificate's client assertion).
pub const FLOWS: &[Flow] = &[Flow::ClientCredentials];

/// The most requests one `$batch` may carry.
pub const BATCH_MAX: usize = 20;

/// The user properties read (the non-default ones need `$select`).
const USER_SELECT: &str = "id,displayName,userPrincipalName,mail,accountEnabled,onPremisesSyncEnabled,signInSessionsValidFromDateTime,assignedLicenses,licenseAssignmentStates";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `$top` asked of paged lists (Graph serves at most 999 users, 100 of
    /// most other lists).
    #[serde(default = "default_page")]
    pub page_size: u32,
    /// Read a user's lists in one `$batch` request.
    #[serde(default = "default_batch")]
    pub batch: bool,
}

fn default_page() -> u32 {
    100
}

fn default_batch() -> bool {
    true
}

/// Graph's answers: `{error:{code,message,innerError}}` errors; 429, 503
/// and 504 with `Retry-After`.
pub struct GraphPolicy;

/// `(code, message)` of a Graph error body.
fn error_of(body: &[u8]) -> Option<(String, String)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    let code = e.get("code")?.as_str()?;
    let message = e.get("message").and_then(Value::as_str).unwrap_or("");
    Some((clean_max(code, 60), clean_max(message, 300)))
}

impl VendorPolicy for GraphPolicy {
    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Verdict {
        if status.is_success() {
            return Verdict::Ok;
        }
        let wait = crate::connector::http::retry_after(headers);
        match status.as_u16() {
            429 => Verdict::RateLimited(wait),
            // Graph's throttling also answers 503 and 504 with Retry-After.
            503 | 504 if wait.is_some() => Verdict::RateLimited(wait),
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
}

/// An OData string literal: quoted, with `'` doubled.
pub fn quote(value: &str) -> String {
    let v: String = value.chars().filter(|c| !c.is_control()).collect();
    format!("'{}'", v.replace('\'', "''"))
}

fn s(v: &Value, f: &str) -> String {
    v.get(f)
        .and_then(Value::as_str)
        .map(clean)
        .unwrap_or_default()
}

fn id_of(v: &Value) -> Result<String, ConnectorError> {
    let id = v.get("id").and_then(Value::as_str).unwrap_or("");
    if id.is_empty() || id.len() > 200 {
        return Err(ConnectorError::BadResponse(format!(
            "an object without a valid id: `{}`",
            clean_max(id, 40)
        )));
    }
    Ok(id.to_string())
}

fn values(v: &Value) -> &[Value] {
    v.get("value")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn odata_type(v: &Value) -> String {
    s(v, "@odata.type")
        .trim_start_matches("#microsoft.graph.")
        .to_string()
}

/// An authentication method's type (`fido2AuthenticationMethod`): its short
/// code in grant ids, the endpoint segment it is deleted at
/// (`fido2Methods`), and a name for people.
const METHOD_KINDS: &[(&str, &str, &str, &str)] = &[
    (
        "microsoftAuthenticatorAuthenticationMethod",
        "authapp",
        "microsoftAuthenticatorMethods",
        "Microsoft Authenticator",
    ),
    (
        "fido2AuthenticationMethod",
        "fido2",
        "fido2Methods",
        "FIDO2 security key",
    ),
    (
        "phoneAuthenticationMethod",
        "phone",
        "phoneMethods",
        "Phone",
    ),
    (
        "softwareOathAuthenticationMethod",
        "softoath",
        "softwareOathMethods",
        "Software OATH token",
    ),
    (
        "temporaryAccessPassAuthenticationMethod",
        "tap",
        "temporaryAccessPassMethods",
        "Temporary Access Pass",
    ),
    (
        "windowsHelloForBusinessAuthenticationMethod",
        "hello",
        "windowsHelloForBusinessMethods",
        "Windows Hello for Business",
    ),
    (
        "emailAuthenticationMethod",
        "email",
        "emailMethods",
        "Email (self-service password reset)",
    ),
    (
        "platformCredentialAuthenticationMethod",
        "platform",
        "platformCredentialMethods",
        "Platform credential",
    ),
    (
        "hardwareOathAuthenticationMethod",
        "hardoath",
        "hardwareOathMethods",
        "Hardware OATH token",
    ),
    (
        "externalAuthenticationMethod",
        "external",
        "externalAuthenticationMethods",
        "External authentication method",
    ),
];

/// `(code, segment, name)` of a method type.
fn method_kind(ty: &str) -> Option<(&'static str, &'static str, &'static str)> {
    METHOD_KINDS
        .iter()
        .find(|(t, ..)| *t == ty)
        .map(|(_, c, s, n)| (*c, *s, *n))
}

/// The endpoint segment of a method code.
fn method_segment(code: &str) -> Option<&'static str> {
    METHOD_KINDS
        .iter()
        .find(|(_, c, ..)| *c == code)
        .map(|(_, _, s, _)| *s)
}

/// The lists a user's grants are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    User,
    Grants,
    AppRoles,
    Methods,
    Licenses,
    MemberOf,
    Roles,
    Eligible,
    Devices,
    Owned,
}

const ALL_READS: [Read; 10] = [
    Read::User,
    Read::Grants,
    Read::AppRoles,
    Read::Methods,
    Read::Licenses,
    Read::MemberOf,
    Read::Roles,
    Read::Eligible,
    Read::Devices,
    Read::Owned,
];

/// The reads a grant's presence is decided by.
fn reads_for(g: &Grant) -> &'static [Read] {
    match prefix(g) {
        "sessions" | "disable" => &[Read::User],
        "grant" => &[Read::Grants],
        "approle" => &[Read::AppRoles],
        "method" => &[Read::Methods],
        "license" | "inherited" => &[Read::User, Read::Licenses, Read::MemberOf],
        "group" => &[Read::MemberOf],
        "role" => &[Read::Roles],
        "eligible" => &[Read::Eligible],
        "device" => &[Read::Devices],
        "owned" => &[Read::Owned],
        _ => &[],
    }
}

pub struct Graph {
    id: String,
    display_name: String,
    client: ApiClient,
    base: Url,
    page_size: u32,
    batch: bool,
    refresh: Duration,
}

impl Graph {
    pub fn new(resolved: &ResolvedConnector, ctx: &BuildContext) -> Result<Self, ConnectorError> {
        let cfg = |e: crate::tomlfile::ConfigError| ConnectorError::Config(e.to_string());
        let settings: Settings = resolved.settings().map_err(cfg)?;
        if !(1..=999).contains(&settings.page_size) {
            return Err(ConnectorError::Config(format!(
                "key `connectors.{}.settings.page_size`: expected 1 to 999, found {}",
                resolved.id, settings.page_size
            )));
        }
        let base = resolved.url("base_url").map_err(cfg)?;
        let auth = crate::apps::token_source(resolved, ctx)?;
        let client = ApiClient::new(
            ctx.http.clone(),
            resolved.http_settings(),
            std::slice::from_ref(&base),
            Some(auth),
            Arc::new(GraphPolicy),
            ctx.notices.clone(),
        );
        Ok(Self {
            id: resolved.id.clone(),
            display_name: resolved.manifest.display_name.clone(),
            client,
            base,
            page_size: settings.page_size,
            batch: settings.batch,
            refresh: resolved.refresh_interval(),
        })
    }

    pub fn client_stats(&self) -> crate::connector::http::ClientStats {
        self.client.stats()
    }

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, ConnectorError> {
        let mut url = self.client.url(&self.base, segments)?;
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// The request a `$batch` item names: the URL relative to the version.
    fn relative(&self, url: &Url) -> Option<String> {
        let base = self.base.as_str().trim_end_matches('/');
        url.as_str()
            .strip_prefix(base)
            .filter(|r| r.starts_with('/'))
            .map(str::to_string)
    }

    /// Every page of a collection from its first answer, following the
    /// absolute `@odata.nextLink` (same origin only).
    async fn rest_of(&self, mut body: Value) -> Result<Value, ConnectorError> {
        let mut guard = PageGuard::new();
        let mut all: Vec<Value> = values(&body).to_vec();
        let mut next = body
            .get("@odata.nextLink")
            .and_then(Value::as_str)
            .map(str::to_string);
        while let Some(link) = guard.next(next.as_deref())? {
            let url = self.client.resolve_link(&self.base, &link)?;
            let page: Value = self.client.send(ApiRequest::get(url)).await?.json()?;
            all.extend(values(&page).iter().cloned());
            next = page
                .get("@odata.nextLink")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        if body.get("value").is_some() {
            body["value"] = Value::Array(all);
            if let Some(o) = body.as_object_mut() {
                o.remove("@odata.nextLink");
            }
        }
        Ok(body)
    }

    /// One read: the object, or the whole collection.
    async fn read(&self, url: Url) -> Result<Value, ConnectorError> {
        let body: Value = self.client.send(ApiRequest::get(url)).await?.json()?;
        self.rest_of(body).await
    }

    /// Several reads, in `$batch` requests of at most 20 where batching is
    /// on; an item answered with an error is read again on its own.
    async fn read_all(&self, urls: Vec<Url>) -> Vec<Result<Value, ConnectorError>> {
        if !self.batch || urls.len() < 2 {
            return futures::future::join_all(urls.into_iter().map(|u| self.read(u))).await;
        }
        let mut out = Vec::with_capacity(urls.len());
        for chunk in urls.chunks(BATCH_MAX) {
            out.extend(self.batch_chunk(chunk).await);
        }
        out
    }

    async fn batch_chunk(&self, urls: &[Url]) -> Vec<Result<Value, ConnectorError>> {
        let requests: Vec<Value> = urls
            .iter()
            .enumerate()
            .filter_map(|(i, u)| {
                self.relative(u)
                    .map(|r| json!({"id": i.to_string(), "method": "GET", "url": r}))
            })
            .collect();
        let answers: Result<Value, ConnectorError> = async {
            let url = self.url(&["$batch"], &[])?;
            let req = ApiRequest::new(Method::POST, url)
                .json(json!({ "requests": requests }))
                .idempotent(true);
            self.client.send(req).await?.json()
        }
        .await;
        let answers = match answers {
            Ok(a) => a,
            Err(e) => return urls.iter().map(|_| Err(e.clone())).collect(),
        };
        let items = answers
            .get("responses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let items = &items;
        futures::future::join_all(urls.iter().enumerate().map(|(i, url)| async move {
            let key = i.to_string();
            let item = items
                .iter()
                .find(|r| r.get("id").and_then(Value::as_str) == Some(key.as_str()));
            let ok = item.filter(|r| {
                r.get("status")
                    .and_then(Value::as_u64)
                    .is_some_and(|st| (200..300).contains(&st))
            });
            match ok.and_then(|r| r.get("body")).cloned() {
                Some(body) => self.rest_of(body).await,
                // Throttled, failed or missing: read it on its own, through
                // the client's retries and Retry-After.
                None => self.read(url.clone()).await,
            }
        }))
        .await
    }

    async fn get_user(&self, key: &str) -> Result<Option<Value>, ConnectorError> {
        match self
            .client
            .send(ApiRequest::get(
                self.url(&["users", key], &[("$select", USER_SELECT)])?,
            ))
            .await
        {
            Ok(r) => Ok(Some(r.json()?)),
            Err(e) if e.is_not_found() => Ok(None),
            // A key that is no UPN (`/users/{x}` takes ids and UPNs).
            Err(ConnectorError::Api { status: 400, .. }) => Ok(None),
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
        let q = quote(address);
        let filter = format!("mail eq {q} or userPrincipalName eq {q}");
        let url = self.url(
            &["users"],
            &[("$filter", &filter), ("$select", USER_SELECT)],
        )?;
        let rows = self.read(url).await?;
        let found = self.accounts(&rows)?;
        if !found.is_empty() {
            return Ok(Self::one(found));
        }
        // Another address of theirs: an advanced query, from an index that
        // lags behind recent changes.
        let filter = format!(
            "proxyAddresses/any(p:p eq {})",
            quote(&format!("smtp:{address}"))
        );
        let url = self.url(
            &["users"],
            &[
                ("$filter", &filter),
                ("$count", "true"),
                ("$select", USER_SELECT),
            ],
        )?;
        let body: Value = self
            .client
            .send(ApiRequest::get(url).header("ConsistencyLevel", "eventual"))
            .await?
            .json()?;
        let rows = self.rest_of(body).await?;
        Ok(Self::one(self.accounts(&rows)?))
    }

    fn accounts(&self, rows: &Value) -> Result<Vec<Account>, ConnectorError> {
        let mut out: Vec<Account> = Vec::new();
        for r in values(rows) {
            let a = self.account(r)?;
            if !out.iter().any(|x| x.id == a.id) {
                out.push(a);
            }
        }
        Ok(out)
    }

    fn one(mut accounts: Vec<Account>) -> Lookup {
        match accounts.len() {
            0 => Lookup::NotFound,
            1 => Lookup::Found {
                account: accounts.pop().expect("one"),
            },
            _ => Lookup::Ambiguous {
                candidates: accounts,
            },
        }
    }

    fn account(&self, u: &Value) -> Result<Account, ConnectorError> {
        let enabled = u.get("accountEnabled").and_then(Value::as_bool);
        let synced = u.get("onPremisesSyncEnabled").and_then(Value::as_bool) == Some(true);
        let mail = s(u, "mail").to_ascii_lowercase();
        let mut facts = vec![(
            "account".to_string(),
            match enabled {
                Some(true) => "enabled".to_string(),
                Some(false) => "disabled".to_string(),
                None => "unknown".to_string(),
            },
        )];
        if synced {
            facts.push(("source".into(), "synced from on-premises AD".into()));
        }
        let since = s(u, "signInSessionsValidFromDateTime");
        if !since.is_empty() {
            facts.push(("sessions valid from".into(), since));
        }
        if !mail.is_empty() {
            facts.push(("mail".into(), mail.clone()));
        }
        Ok(Account {
            connector: self.id.clone(),
            id: id_of(u)?,
            login: s(u, "userPrincipalName"),
            display_name: s(u, "displayName"),
            active: enabled != Some(false),
            is_admin: false,
            last_login: None,
            facts,
            addresses: if mail.is_empty() {
                Vec::new()
            } else {
                vec![mail]
            },
            matched_by: None,
        })
    }

    fn read_url(&self, r: Read, uid: &str) -> Result<Url, ConnectorError> {
        let top = self.page_size.to_string();
        let principal = format!("principalId eq {}", quote(uid));
        match r {
            Read::User => self.url(&["users", uid], &[("$select", USER_SELECT)]),
            Read::Grants => self.url(&["oauth2PermissionGrants"], &[("$filter", &principal)]),
            Read::AppRoles => self.url(&["users", uid, "appRoleAssignments"], &[("$top", &top)]),
            Read::Methods => self.url(&["users", uid, "authentication", "methods"], &[]),
            Read::Licenses => self.url(&["users", uid, "licenseDetails"], &[]),
            Read::MemberOf => self.url(&["users", uid, "memberOf"], &[("$top", &top)]),
            Read::Roles => self.url(
                &["roleManagement", "directory", "roleAssignments"],
                &[("$filter", &principal), ("$expand", "roleDefinition")],
            ),
            Read::Eligible => self.url(
                &["roleManagement", "directory", "roleEligibilitySchedules"],
                &[("$filter", &principal), ("$expand", "roleDefinition")],
            ),
            Read::Devices => self.url(&["users", uid, "registeredDevices"], &[("$top", &top)]),
            Read::Owned => self.url(&["users", uid, "ownedObjects"], &[("$top", &top)]),
        }
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

    /// Reads what `wanted` names and builds the grants found there.
    async fn inventory(&self, account: &Account, wanted: &[Read]) -> Inventory {
        let uid = account.id.as_str();
        let login = account.login.as_str();
        let mut reads: Vec<Read> = ALL_READS
            .into_iter()
            .filter(|r| wanted.contains(r))
            .collect();
        // Group names for group-held licences.
        if reads.contains(&Read::Licenses) && !reads.contains(&Read::MemberOf) {
            reads.push(Read::MemberOf);
        }
        let mut urls = Vec::new();
        let mut inv = Inventory::default();
        for r in &reads {
            match self.read_url(*r, uid) {
                Ok(u) => urls.push(u),
                Err(e) => {
                    inv.failed.push((GrantKind::Account, e));
                    return inv;
                }
            }
        }
        let answers = self.read_all(urls).await;
        let got = |r: Read| -> Option<&Result<Value, ConnectorError>> {
            reads.iter().position(|x| *x == r).map(|i| &answers[i])
        };
        let fail = |inv: &mut Inventory, kinds: &[GrantKind], e: &ConnectorError| {
            for k in kinds {
                if !inv.failed.iter().any(|(x, _)| x == k) {
                    inv.failed.push((*k, e.clone()));
                }
            }
        };
        let user = got(Read::User);
        let groups = got(Read::MemberOf);
        if let Some(r) = user {
            match r {
                Ok(u) => inv.grants.extend(self.account_grants(u, login)),
                Err(e) => fail(&mut inv, &[GrantKind::Account, GrantKind::Session], e),
            }
        }
        let build = |inv: &mut Inventory,
                     r: Read,
                     kinds: &[GrantKind],
                     f: &dyn Fn(&Value) -> Result<Vec<Grant>, ConnectorError>| {
            if let Some(res) = got(r) {
                match res.as_ref().map_err(Clone::clone).and_then(f) {
                    Ok(g) => inv.grants.extend(g),
                    Err(e) => fail(inv, kinds, &e),
                }
            }
        };
        build(&mut inv, Read::Grants, &[GrantKind::OauthGrant], &|v| {
            self.consent_grants(v)
        });
        build(&mut inv, Read::AppRoles, &[GrantKind::License], &|v| {
            self.app_role_grants(v)
        });
        build(&mut inv, Read::Methods, &[GrantKind::Device], &|v| {
            self.method_grants(v, login)
        });
        build(&mut inv, Read::MemberOf, &[GrantKind::Group], &|v| {
            self.group_grants(v, login)
        });
        build(&mut inv, Read::Roles, &[GrantKind::AdminRole], &|v| {
            self.role_grants(v, false)
        });
        build(&mut inv, Read::Eligible, &[GrantKind::AdminRole], &|v| {
            self.role_grants(v, true)
        });
        build(&mut inv, Read::Devices, &[GrantKind::Device], &|v| {
            self.device_grants(v)
        });
        build(&mut inv, Read::Owned, &[GrantKind::OwnedApp], &|v| {
            self.owned_grants(v, login)
        });
        if let Some(res) = got(Read::Licenses) {
            let group_list = groups.and_then(|g| g.as_ref().ok());
            match (res, user) {
                (Ok(details), Some(Ok(u))) => {
                    match self.license_grants(details, u, group_list, login) {
                        Ok(g) => inv.grants.extend(g),
                        Err(e) => fail(&mut inv, &[GrantKind::License], &e),
                    }
                }
                (Err(e), _) | (_, Some(Err(e))) => fail(&mut inv, &[GrantKind::License], e),
                (Ok(_), None) => {}
            }
        }
        // A listing of a kind that failed in part is no listing.
        let failed: Vec<GrantKind> = inv.failed.iter().map(|(k, _)| *k).collect();
        inv.grants.retain(|g| !failed.contains(&g.kind));
        inv
    }

    /// Sessions (while the user exists) and closing the account.
    fn account_grants(&self, u: &Value, login: &str) -> Vec<Grant> {
        let Ok(uid) = id_of(u) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut g = self.grant(
            format!("sessions:{uid}"),
            GrantKind::Session,
            "Every Microsoft 365 sign-in session (refresh tokens, session cookies)".into(),
            "Graph cannot list sessions: revokeSignInSessions ends them all at once. Access tokens already issued stay valid until they expire, up to about an hour".into(),
            Risk::High,
        );
        g.phase = Some(Phase::CutAccess);
        out.push(g);
        let enabled = u.get("accountEnabled").and_then(Value::as_bool) != Some(false);
        let synced = u.get("onPremisesSyncEnabled").and_then(Value::as_bool) == Some(true);
        if enabled {
            let g = self.grant(
                format!("disable:{uid}"),
                GrantKind::Account,
                "Block sign-in (accountEnabled = false)".into(),
                "the account is kept, with its mailbox and files, for hand-over".into(),
                Risk::High,
            );
            out.push(if synced {
                let mut g = self.manual(
                    g,
                    format!("{login} is synced from on-premises Active Directory: disable the account there (Active Directory Users and Computers, or Disable-ADAccount); the next sync blocks sign-in in Entra ID. A cloud change would be refused or undone by the sync."),
                );
                g.label = "Block sign-in (synced from on-premises AD: disable it there)".into();
                g
            } else {
                g
            });
        }
        out
    }

    fn consent_grants(&self, v: &Value) -> Result<Vec<Grant>, ConnectorError> {
        let mut out = Vec::new();
        for g in values(v) {
            // A tenant-wide consent is everyone's: never the leaver's to remove.
            if s(g, "consentType") != "Principal" {
                continue;
            }
            let gid = id_of(g)?;
            out.push(self.grant(
                format!("grant:{gid}"),
                GrantKind::OauthGrant,
                format!("Delegated consent: {}", clean_max(&s(g, "scope"), 120)),
                format!(
                    "client service principal {}, resource {}",
                    s(g, "clientId"),
                    s(g, "resourceId")
                ),
                Risk::High,
            ));
        }
        Ok(out)
    }

    fn app_role_grants(&self, v: &Value) -> Result<Vec<Grant>, ConnectorError> {
        values(v)
            .iter()
            .map(|a| {
                let aid = id_of(a)?;
                Ok(self.grant(
                    format!("approle:{aid}"),
                    GrantKind::License,
                    format!("App: {}", clean_max(&s(a, "resourceDisplayName"), 80)),
                    format!("app role assignment (role {})", s(a, "appRoleId")),
                    Risk::Medium,
                ))
            })
            .collect()
    }

    fn method_grants(&self, v: &Value, login: &str) -> Result<Vec<Grant>, ConnectorError> {
        let mut out = Vec::new();
        for m in values(v) {
            let ty = odata_type(m);
            // The password method cannot be deleted: blocking sign-in covers it.
            if ty == "passwordAuthenticationMethod" {
                continue;
            }
            let mid = id_of(m)?;
            let name = [s(m, "displayName"), s(m, "phoneNumber")]
                .into_iter()
                .find(|x| !x.is_empty())
                .map(|x| format!(" ({})", clean_max(&x, 60)))
                .unwrap_or_default();
            match method_kind(&ty) {
                Some((code, _, what)) => out.push(self.grant(
                    format!("method:{code}:{mid}"),
                    GrantKind::Device,
                    format!("Sign-in method: {what}{name}"),
                    "can approve sign-ins and reset the password".into(),
                    Risk::High,
                )),
                None => {
                    let g = self.grant(
                        format!("method:other:{mid}"),
                        GrantKind::Device,
                        format!("Sign-in method: {}{name}", clean_max(&ty, 60)),
                        "a kind Graph has no delete endpoint for here".into(),
                        Risk::High,
                    );
                    out.push(self.manual(
                        g,
                        format!("Remove it in the Entra admin center: Users > {login} > Authentication methods."),
                    ));
                }
            }
        }
        Ok(out)
    }

    fn group_grants(&self, v: &Value, login: &str) -> Result<Vec<Grant>, ConnectorError> {
        let mut out = Vec::new();
        for g in values(v) {
            // Directory roles and administrative units come in memberOf too:
            // roles are read from roleAssignments.
            if odata_type(g) != "group" {
                continue;
            }
            let gid = id_of(g)?;
            let name = clean_max(&s(g, "displayName"), 80);
            let types: Vec<String> = g
                .get("groupTypes")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(clean).collect())
                .unwrap_or_default();
            let dynamic = types.iter().any(|t| t == "DynamicMembership");
            let unified = types.iter().any(|t| t == "Unified");
            let synced = g.get("onPremisesSyncEnabled").and_then(Value::as_bool) == Some(true);
            let mail = g.get("mailEnabled").and_then(Value::as_bool) == Some(true);
            let what = if unified {
                "Microsoft 365 group"
            } else if mail {
                "distribution list / mail-enabled security group"
            } else {
                "security group"
            };
            let grant = self.grant(
                format!("group:{gid}"),
                GrantKind::Group,
                format!("Group: {name}"),
                format!(
                    "{what}, {}",
                    if dynamic {
                        "member by its rule"
                    } else {
                        "direct member"
                    }
                ),
                Risk::Medium,
            );
            let why = if dynamic {
                Some(format!(
                    "{name} is a dynamic group: its rule adds {login}; change the attributes the rule reads (or the rule), or block sign-in"
                ))
            } else if synced {
                Some(format!(
                    "{name} is synced from on-premises AD: remove {login} from it there"
                ))
            } else if mail && !unified {
                Some(format!(
                    "{name} is mail-enabled: remove {login} in the Exchange admin center (Graph cannot change its members)"
                ))
            } else {
                None
            };
            out.push(match why {
                Some(why) => {
                    let mut g = self.manual(grant, why);
                    g.label = format!(
                        "Group: {name} ({})",
                        if dynamic {
                            "dynamic"
                        } else if synced {
                            "on-premises"
                        } else {
                            "mail-enabled"
                        }
                    );
                    g
                }
                None => grant,
            });
        }
        Ok(out)
    }

    fn license_grants(
        &self,
        details: &Value,
        user: &Value,
        groups: Option<&Value>,
        login: &str,
    ) -> Result<Vec<Grant>, ConnectorError> {
        let states: Vec<&Value> = user
            .get("licenseAssignmentStates")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let group_name = |gid: &str| -> String {
            groups
                .map(values)
                .unwrap_or(&[])
                .iter()
                .find(|g| g.get("id").and_then(Value::as_str) == Some(gid))
                .map(|g| clean_max(&s(g, "displayName"), 80))
                .unwrap_or_else(|| clean_max(gid, 60))
        };
        let mut out = Vec::new();
        for d in values(details) {
            let sku = s(d, "skuId");
            if sku.is_empty() {
                continue;
            }
            let part = s(d, "skuPartNumber");
            let mine: Vec<&&Value> = states.iter().filter(|st| s(st, "skuId") == sku).collect();
            // No state says how it is held: taken as direct (assignLicense
            // refuses it otherwise, and says so).
            let direct = mine.is_empty()
                || mine
                    .iter()
                    .any(|st| st.get("assignedByGroup").is_none_or(Value::is_null));
            if direct {
                out.push(self.grant(
                    format!("license:{sku}"),
                    GrantKind::License,
                    format!("Licence: {part}"),
                    "assigned directly".into(),
                    Risk::Low,
                ));
            }
            // One step per licence, whichever groups assign it.
            let gids: Vec<String> = mine
                .iter()
                .filter_map(|st| st.get("assignedByGroup").and_then(Value::as_str))
                .map(clean)
                .collect();
            if gids.is_empty() {
                continue;
            }
            let names: Vec<String> = gids.iter().map(|g| group_name(g)).collect();
            let (one, these) = if names.len() == 1 {
                ("group", "that group")
            } else {
                ("groups", "those groups")
            };
            let names = names.join(", ");
            let g = self.grant(
                format!("inherited:{sku}"),
                GrantKind::License,
                format!("Licence: {part} (through {one} {names})"),
                "group-based licensing: assignLicense cannot remove it".into(),
                Risk::Low,
            );
            let mut g = self.manual(
                g,
                format!("{part} is assigned by {one} {names}: remove {login} from {these} (the plan's group removal does it if Graph can), or remove the licence from the group in the Entra admin center"),
            );
            g.after = gids.iter().map(|gid| format!("group:{gid}")).collect();
            out.push(g);
        }
        Ok(out)
    }

    fn role_grants(&self, v: &Value, eligible: bool) -> Result<Vec<Grant>, ConnectorError> {
        values(v)
            .iter()
            .map(|r| {
                let rid = id_of(r)?;
                let name = r
                    .pointer("/roleDefinition/displayName")
                    .and_then(Value::as_str)
                    .map(|n| clean_max(n, 80))
                    .unwrap_or_else(|| s(r, "roleDefinitionId"));
                let scope = s(r, "directoryScopeId");
                Ok(if eligible {
                    self.grant(
                        format!("eligible:{rid}"),
                        GrantKind::AdminRole,
                        format!("Eligible directory role (PIM): {name}"),
                        format!("can be activated at any time; scope {scope}"),
                        Risk::Critical,
                    )
                } else {
                    self.grant(
                        format!("role:{rid}"),
                        GrantKind::AdminRole,
                        format!("Directory role: {name}"),
                        format!("active assignment; scope {scope}"),
                        Risk::Critical,
                    )
                })
            })
            .collect()
    }

    fn device_grants(&self, v: &Value) -> Result<Vec<Grant>, ConnectorError> {
        let mut out = Vec::new();
        for d in values(v) {
            if d.get("accountEnabled").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let did = id_of(d)?;
            out.push(self.grant(
                format!("device:{did}"),
                GrantKind::Device,
                format!(
                    "Registered device: {} ({})",
                    clean_max(&s(d, "displayName"), 60),
                    clean_max(&s(d, "operatingSystem"), 30)
                ),
                "disabled (accountEnabled = false): its device sign-in and primary refresh token stop working".into(),
                Risk::High,
            ));
        }
        Ok(out)
    }

    fn owned_grants(&self, v: &Value, login: &str) -> Result<Vec<Grant>, ConnectorError> {
        let mut out = Vec::new();
        for o in values(v) {
            let ty = odata_type(o);
            let oid = id_of(o)?;
            let name = clean_max(&s(o, "displayName"), 80);
            let (key, label, how) = match ty.as_str() {
                "application" => (
                    "app",
                    format!("Owned app registration: {name}"),
                    format!(
                        "{name} (appId {}) is a non-human identity {login} owns: its secrets and certificates keep working after they leave. Add a new owner in the Entra admin center (App registrations > {name} > Owners), review its credentials, then remove {login}.",
                        s(o, "appId")
                    ),
                ),
                "servicePrincipal" => (
                    "sp",
                    format!("Owned enterprise app: {name}"),
                    format!(
                        "{name} (service principal, appId {}) is owned by {login}: add a new owner (Enterprise applications > {name} > Owners), then remove {login}.",
                        s(o, "appId")
                    ),
                ),
                "group" => (
                    "group",
                    format!("Owned group: {name}"),
                    format!(
                        "{login} owns group {name}: add a new owner before they leave (a group without owners cannot be managed by its members)."
                    ),
                ),
                _ => continue,
            };
            let g = self.grant(
                format!("owned:{key}:{oid}"),
                GrantKind::OwnedApp,
                label,
                "hand over to a new owner".into(),
                Risk::Medium,
            );
            out.push(self.manual(g, how));
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

    async fn patch_disabled(&self, url: Url) -> Result<RevokeOutcome, ConnectorError> {
        let req = ApiRequest::new(Method::PATCH, url)
            .json(json!({"accountEnabled": false}))
            .idempotent(true);
        match self.client.send(req).await {
            Ok(_) => Ok(RevokeOutcome::Accepted),
            Err(e) if e.is_not_found() => Ok(RevokeOutcome::AlreadyGone),
            Err(e) => Err(refused(e)),
        }
    }

    /// PIM: an `adminRemove` request for the eligibility schedule `sid`.
    async fn remove_eligibility(
        &self,
        uid: &str,
        sid: &str,
    ) -> Result<RevokeOutcome, ConnectorError> {
        let current = self.read(self.read_url(Read::Eligible, uid)?).await?;
        let Some(e) = values(&current)
            .iter()
            .find(|e| e.get("id").and_then(Value::as_str) == Some(sid))
        else {
            return Ok(RevokeOutcome::AlreadyGone);
        };
        let body = json!({
            "action": "adminRemove",
            "principalId": uid,
            "roleDefinitionId": e.get("roleDefinitionId").cloned().unwrap_or(Value::Null),
            "directoryScopeId": e.get("directoryScopeId").cloned().unwrap_or(json!("/")),
            "justification": "Offboarding: access removed by offboard",
        });
        let url = self.url(
            &[
                "roleManagement",
                "directory",
                "roleEligibilityScheduleRequests",
            ],
            &[],
        )?;
        match self
            .client
            .send(
                ApiRequest::new(Method::POST, url)
                    .json(body)
                    .idempotent(true),
            )
            .await
        {
            Ok(_) => Ok(RevokeOutcome::Accepted),
            Err(e) if e.code() == Some("RoleAssignmentDoesNotExist") => {
                Ok(RevokeOutcome::AlreadyGone)
            }
            Err(e) => Err(refused(e)),
        }
    }
}

/// A 400 or 403 from a change is Graph refusing it (an inherited licence,
/// a group it cannot change, a synced object, missing rights): a step a
/// person must take, with Graph's reason.
fn refused(e: ConnectorError) -> ConnectorError {
    match e {
        ConnectorError::Api {
            status: s @ (400 | 403),
            code,
            message,
        } => ConnectorError::Refused {
            manual: if s == 403 {
                format!(
                    "Graph refused ({code}): {message}. The app needs the permission named in the README; changes to privileged users also need an Entra role on its service principal."
                )
            } else {
                format!(
                    "Graph refused ({code}): {message}. Change it at its source (the group, on-premises AD or the Entra admin center)."
                )
            },
            code,
            message,
        },
        e => e,
    }
}

#[async_trait]
impl Connector for Graph {
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

    async fn list_grants(&self, account: &Account) -> Inventory {
        self.inventory(account, &ALL_READS).await
    }

    async fn revoke(
        &self,
        account: &Account,
        grant: &Grant,
    ) -> Result<RevokeOutcome, ConnectorError> {
        let uid = account.id.as_str();
        let bad = || {
            ConnectorError::Config(format!(
                "not a Microsoft Graph grant: {}",
                clean_max(&grant.id, 80)
            ))
        };
        let (what, id) = grant.id.split_once(':').ok_or_else(bad)?;
        match what {
            "sessions" => {
                let url = self.url(&["users", uid, "revokeSignInSessions"], &[])?;
                self.client
                    .send(ApiRequest::new(Method::POST, url).idempotent(true))
                    .await?;
                // Nothing lists sessions: nothing can confirm it.
                Ok(RevokeOutcome::Acknowledged)
            }
            "grant" => {
                self.delete(self.url(&["oauth2PermissionGrants", id], &[])?)
                    .await
            }
            "approle" => {
                self.delete(self.url(&["users", uid, "appRoleAssignments", id], &[])?)
                    .await
            }
            "method" => {
                let (code, mid) = id.split_once(':').ok_or_else(bad)?;
                let segment = method_segment(code).ok_or_else(bad)?;
                self.delete(self.url(&["users", uid, "authentication", segment, mid], &[])?)
                    .await
            }
            "license" => {
                let url = self.url(&["users", uid, "assignLicense"], &[])?;
                let body = json!({"addLicenses": [], "removeLicenses": [id]});
                match self
                    .client
                    .send(
                        ApiRequest::new(Method::POST, url)
                            .json(body)
                            .idempotent(true),
                    )
                    .await
                {
                    Ok(_) => Ok(RevokeOutcome::Accepted),
                    Err(e) if e.is_not_found() => Ok(RevokeOutcome::AlreadyGone),
                    Err(e) => Err(refused(e)),
                }
            }
            "group" => {
                self.delete(self.url(&["groups", id, "members", uid, "$ref"], &[])?)
                    .await
            }
            "role" => {
                self.delete(self.url(&["roleManagement", "directory", "roleAssignments", id], &[])?)
                    .await
            }
            "eligible" => self.remove_eligibility(uid, id).await,
            "device" => self.patch_disabled(self.url(&["devices", id], &[])?).await,
            "disable" => self.patch_disabled(self.url(&["users", uid], &[])?).await,
            _ => Err(bad()),
        }
    }

    /// Re-reads only the lists the asked grants live in.
    async fn verify(
        &self,
        account: &Account,
        grants: &[Grant],
    ) -> Vec<(String, Result<Presence, ConnectorError>)> {
        let mut wanted: Vec<Read> = Vec::new();
        for g in grants {
            for r in reads_for(g) {
                if !wanted.contains(r) {
                    wanted.push(*r);
                }
            }
        }
        let inv = self.inventory(account, &wanted).await;
        crate::connector::presence_where_read(&inv, grants, |g| !reads_for(g).is_empty())
    }

    /// Every user (`GET /users`, 999 a page, with `userType`): members,
    /// and guests (B2B collaborators).
    async fn list_accounts(&self) -> Result<Vec<ListedAccount>, ConnectorError> {
        let select = format!("{USER_SELECT},userType");
        let url = self.url(&["users"], &[("$top", "999"), ("$select", &select)])?;
        let rows = self.read(url).await?;
        values(&rows)
            .iter()
            .map(|u| {
                Ok(ListedAccount {
                    account: self.account(u)?,
                    class: if s(u, "userType") == "Guest" {
                        AccountClass::Guest
                    } else {
                        AccountClass::Member
                    },
                    owner: None,
                })
            })
            .collect()
    }

    fn health(&self) -> Health {
        Health::from_stats(&self.client.stats())
    }

    /// `GET /users?$top=1&$select=id`: needs a valid token with User.Read.All.
    async fn probe(&self) -> Result<(), ConnectorError> {
        let url = self.url(&["users"], &[("$top", "1"), ("$select", "id")])?;
        self.client.send(ApiRequest::get(url)).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odata_strings_double_their_quotes() {
        assert_eq!(quote("o'neil@x.com"), "'o''neil@x.com'");
        assert_eq!(quote("a\nb"), "'ab'");
    }

    #[test]
    fn throttling_503_with_retry_after_waits_as_told() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        assert!(matches!(
            GraphPolicy.classify(StatusCode::SERVICE_UNAVAILABLE, &h, b""),
            Verdict::RateLimited(Some(d)) if d == Duration::from_secs(3)
        ));
        assert!(matches!(
            GraphPolicy.classify(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new(), b""),
            Verdict::Transient
        ));
        let body = br#"{"error":{"code":"Request_BadRequest","message":"no","innerError":{}}}"#;
        match GraphPolicy.classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), body) {
            Verdict::Fail(ConnectorError::Api { code, .. }) => {
                assert_eq!(code, "Request_BadRequest")
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn method_types_map_to_their_endpoints() {
        assert_eq!(
            method_kind("fido2AuthenticationMethod").unwrap().1,
            "fido2Methods"
        );
        let (code, segment, _) = method_kind("temporaryAccessPassAuthenticationMethod").unwrap();
        assert_eq!(segment, "temporaryAccessPassMethods");
        assert_eq!(method_segment(code), Some(segment));
        assert!(method_kind("passwordAuthenticationMethod").is_none());
        // Every code is short and names one endpoint.
        for (_, c, ..) in METHOD_KINDS {
            assert!(c.len() <= 8);
            assert_eq!(METHOD_KINDS.iter().filter(|(_, x, ..)| x == c).count(), 1);
        }
    }
}
