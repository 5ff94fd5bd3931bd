//! GitHub driver: one organisation of GitHub Enterprise Cloud, through the
//! REST API (`Accept: application/vnd.github+json`,
//! `X-GitHub-Api-Version: 2022-11-28`), as a GitHub App installation or with
//! a token from the config.
//!
//! Finding the person: GitHub does not map a corporate address to a login
//! through REST (user search matches public profile emails only, and is
//! never used). In order: the config's `settings.logins` (the operator's
//! mapping); for an Enterprise Managed Users enterprise, its SCIM
//! (`userName eq`); the org's SCIM (`emails eq`) and the enterprise's SAML
//! identities (`consumed-licenses`: `github_com_saml_name_id` and the
//! verified-domain emails) for the login. An address with a SCIM identity
//! but no known login, or an org with neither SCIM nor an enterprise, is a
//! failed lookup that says to add the mapping: never a guess.
//!
//! What it reads and removes:
//! - phase 1: SSO credential authorizations (PATs, SSH keys, app tokens:
//!   unlinking ends their access to this org only, the credential itself
//!   stays valid), fine-grained PATs approved for the org (`action:
//!   revoke`; GitHub App only), pending invitations, codespaces in the org;
//! - phase 2: the admin role (demoted to member), organisation roles, team
//!   memberships, repository collaborator access (`settings.repositories`),
//!   the Copilot seat (cancelled: pending until the billing cycle ends; a
//!   seat given through a team goes with the team);
//! - phase 3: the membership (`DELETE /orgs/{org}/memberships/{user}`), or an
//!   outside collaborator's access; in an EMU enterprise the SCIM identity
//!   is suspended (`active: false`), and deleted only when
//!   `settings.emu_close = "delete"`. Membership held through an enterprise
//!   team cannot be removed in the org: it is a manual step at the
//!   enterprise. In a SCIM-managed org the SCIM identity outlives the
//!   removal: deprovision it in the identity provider (manual).
//! - listed for hand-over (manual): repositories they created, GitHub Apps
//!   they installed and OAuth apps they approved, from the audit log.
//!
//! Paging follows `Link: rel="next"` (same origin only) with
//! `per_page=100`; SCIM pages by `startIndex`/`count`. Rate limits: the
//! primary limit is 403 or 429 with `x-ratelimit-remaining: 0` (wait for
//! `x-ratelimit-reset`), the secondary limit 403 or 429 with `retry-after`;
//! any other 403 is a refusal. `x-ratelimit-*` on every answer paces the
//! client before the limit is reached ([`GitHubPolicy::pace`]).

use crate::connector::id_prefix as prefix;
use crate::connector::maybe;
use futures::future::join_all;
use std::collections::BTreeMap;
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
    ApiClient, ApiRequest, IndexPager, PageGuard, VendorPolicy, Verdict, body_excerpt, header_u64,
    next_link, retry_after, until_epoch,
};
use crate::connector::{
    BuildContext, Connector, ConnectorError, Health, Inventory, Lookup, Presence,
    ResolvedConnector, RevokeOutcome, TokenSource, find_by_each_address,
};
use crate::model::{Account, Grant, GrantKind, Person, Phase, Revocation, Risk};
use crate::sanitize::{clean, clean_max};

/// A token from the config (`static`), or a GitHub App (`jwt-bearer`: the
/// app's JWT, then an installation token).
pub const FLOWS: &[Flow] = &[Flow::Static, Flow::JwtBearer];

pub const API_VERSION: &str = "2022-11-28";

/// How an EMU account is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EmuClose {
    /// SCIM `active: false`: suspended, reversible (the default).
    #[default]
    Suspend,
    /// SCIM `DELETE`: irreversible, wipes PATs, SSH keys and authorizations.
    Delete,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The organisation's login (`example-co`).
    pub org: String,
    /// The enterprise's slug, for SAML identities (consumed licences) and EMU.
    #[serde(default)]
    pub enterprise: Option<String>,
    /// The enterprise uses Enterprise Managed Users (SCIM at the enterprise).
    #[serde(default)]
    pub emu: bool,
    /// The EMU short code that GitHub appends to every managed login.
    #[serde(default)]
    pub emu_shortcode: Option<String>,
    #[serde(default)]
    pub emu_close: EmuClose,
    /// The GitHub App's installation on the org (`jwt-bearer`).
    #[serde(default)]
    pub installation_id: Option<u64>,
    /// Corporate address → GitHub login, for people no SCIM or SAML
    /// identity names (outside collaborators, an org without SSO).
    #[serde(default)]
    pub logins: BTreeMap<String, String>,
    /// Repositories (of the org) whose direct collaborators are checked.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// `per_page` of paged lists (1..100).
    #[serde(default = "default_page")]
    pub page_size: u32,
}

fn default_page() -> u32 {
    100
}

/// Adds the headers GitHub asks every REST client to send.
pub fn headers(req: ApiRequest) -> ApiRequest {
    req.header("accept", "application/vnd.github+json")
        .header("x-github-api-version", API_VERSION)
}

/// GitHub's answers: `{message, documentation_url}` errors; the primary
/// and secondary rate limits, each on 403 or 429; `x-ratelimit-*` headroom.
pub struct GitHubPolicy;

/// The time until `x-ratelimit-reset` (epoch seconds; GitHub's window is an
/// hour).
fn until_reset(headers: &HeaderMap) -> Option<Duration> {
    until_epoch(headers, "x-ratelimit-reset", Duration::from_secs(3600))
}

/// `message` of a GitHub error body, with each `errors[]` entry's message
/// or code (422).
fn message_of(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let mut text = v
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| v.get("detail").and_then(Value::as_str))?
        .to_string();
    let errs: Vec<String> = v
        .get("errors")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    e.get("message")
                        .and_then(Value::as_str)
                        .or_else(|| e.get("code").and_then(Value::as_str))
                        .or_else(|| e.as_str())
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    if !errs.is_empty() {
        text = format!("{text} ({})", errs.join("; "));
    }
    Some(clean_max(&text, 300))
}

impl VendorPolicy for GitHubPolicy {
    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Verdict {
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            return Verdict::Ok;
        }
        let spent = header_u64(headers, "x-ratelimit-remaining") == Some(0);
        let message = message_of(body).unwrap_or_else(|| body_excerpt(body));
        match status.as_u16() {
            // The secondary limit says when in `retry-after`; the primary
            // one with `x-ratelimit-remaining: 0` until `x-ratelimit-reset`.
            403 | 429 if retry_after(headers).is_some() => {
                Verdict::RateLimited(retry_after(headers))
            }
            403 | 429 if spent => {
                Verdict::RateLimited(until_reset(headers).map(|d| d + Duration::from_millis(500)))
            }
            // A secondary limit without `retry-after`: GitHub asks for at
            // least a minute's wait.
            403 | 429
                if message
                    .to_ascii_lowercase()
                    .contains("secondary rate limit") =>
            {
                Verdict::RateLimited(Some(Duration::from_secs(60)))
            }
            429 => Verdict::RateLimited(None),
            401 => Verdict::Unauthorized,
            408 | 500 | 502 | 503 | 504 => Verdict::Transient,
            s => Verdict::Fail(ConnectorError::Api {
                status: s,
                code: String::new(),
                message,
            }),
        }
    }

    fn limit_info(&self, headers: &HeaderMap) -> Option<crate::connector::http::LimitInfo> {
        let limit = header_u64(headers, "x-ratelimit-limit")?;
        let remaining = header_u64(headers, "x-ratelimit-remaining")?;
        let resource = headers
            .get("x-ratelimit-resource")
            .and_then(|v| v.to_str().ok())
            .map(|r| clean_max(r, 30))
            .unwrap_or_else(|| "core".into());
        let reset = until_reset(headers)
            .map(|d| format!(", resets in {} min", d.as_secs().div_ceil(60)))
            .unwrap_or_default();
        Some(crate::connector::http::LimitInfo {
            text: format!("rate limit {remaining}/{limit} left ({resource}{reset})"),
            // Paced by the one rule for windows (`http::pacing`): nearly out
            // of the hour's requests, the rest are spread to the reset, and
            // everything holds at the last one.
            usage: Some((limit.saturating_sub(remaining), limit)),
            resets_in: until_reset(headers),
        })
    }
}

fn s(v: &Value, f: &str) -> String {
    v.get(f)
        .and_then(Value::as_str)
        .map(clean)
        .unwrap_or_default()
}

/// A number or string id, as text.
fn id_text(v: &Value, f: &str) -> Result<String, ConnectorError> {
    let id = match v.get(f) {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(t)) if !t.is_empty() && t.len() <= 200 => clean(t),
        _ => {
            return Err(ConnectorError::BadResponse(format!(
                "an object without a valid `{f}`"
            )));
        }
    };
    Ok(id)
}

/// Quotes a value for a SCIM filter.
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

/// The login GitHub gives an EMU user: the IdP user name normalised (an
/// email's domain dropped, other characters than letters, digits and `-`
/// made `-`), an underscore, the enterprise's short code.
pub fn emu_login(user_name: &str, shortcode: &str) -> String {
    let local = user_name.split('@').next().unwrap_or(user_name);
    let norm: String = local
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{}_{}", norm.trim_matches('-'), shortcode)
}

/// A SCIM identity the lookup found.
#[derive(Debug, Clone)]
struct Identity {
    id: String,
    user_name: String,
    display_name: String,
    active: bool,
}

pub struct GitHub {
    id: String,
    display_name: String,
    client: ApiClient,
    /// An enterprise owner's token (`auth.scim_token_*`) for what a GitHub
    /// App installed on the org cannot read: the enterprise's consumed
    /// licences (SAML identities) and its SCIM (EMU).
    enterprise: Option<ApiClient>,
    base: Url,
    settings: Settings,
    app: bool,
    refresh: Duration,
}

/// The token source of a connector's `[auth]`: an installation token for a
/// GitHub App, else the shared flows (a token from the config).
pub fn token_source(
    resolved: &ResolvedConnector,
    ctx: &BuildContext,
) -> Result<Arc<dyn TokenSource>, ConnectorError> {
    if Flow::of(resolved)? == Flow::JwtBearer {
        let cfg = |e: crate::tomlfile::ConfigError| ConnectorError::Config(e.to_string());
        let settings: Settings = resolved.settings().map_err(cfg)?;
        let base = resolved.url("base_url").map_err(cfg)?;
        let installation = settings.installation_id.ok_or_else(|| {
            ConnectorError::Config(format!(
                "key `connectors.{}.settings.installation_id`: expected the GitHub App's installation id on the org (a GitHub App signs in with it), found nothing",
                resolved.id
            ))
        })?;
        return Ok(Arc::new(super::signin::InstallationToken::from_resolved(
            resolved,
            ctx,
            &base,
            installation,
        )?));
    }
    crate::auth::token_source(resolved, ctx, crate::auth::authority::standard)
}

impl GitHub {
    pub fn new(resolved: &ResolvedConnector, ctx: &BuildContext) -> Result<Self, ConnectorError> {
        let cfg = |e: crate::tomlfile::ConfigError| ConnectorError::Config(e.to_string());
        let mut settings: Settings = resolved.settings().map_err(cfg)?;
        if !(1..=100).contains(&settings.page_size) {
            return Err(ConnectorError::Config(format!(
                "key `connectors.{}.settings.page_size`: expected 1 to 100, found {}",
                resolved.id, settings.page_size
            )));
        }
        if settings.org.trim().is_empty() {
            return Err(ConnectorError::Config(format!(
                "key `connectors.{}.settings.org`: expected the organisation's login, found nothing",
                resolved.id
            )));
        }
        if settings.emu && (settings.enterprise.is_none() || settings.emu_shortcode.is_none()) {
            return Err(ConnectorError::Config(format!(
                "key `connectors.{}.settings.emu`: an EMU enterprise needs `enterprise` and `emu_shortcode`",
                resolved.id
            )));
        }
        settings.logins = settings
            .logins
            .into_iter()
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let base = resolved.url("base_url").map_err(cfg)?;
        let app = Flow::of(resolved)? == Flow::JwtBearer;
        let auth = crate::apps::token_source(resolved, ctx)?;
        let client = ApiClient::new(
            ctx.http.clone(),
            resolved.http_settings(),
            std::slice::from_ref(&base),
            Some(auth),
            Arc::new(GitHubPolicy),
            ctx.notices.clone(),
        );
        let a = &resolved.manifest.auth;
        let enterprise = if a.scim_token_env.is_some() || a.scim_token_file.is_some() {
            let token = crate::auth::StaticToken::from_env_or_file(
                &format!("connectors.{} enterprise token", resolved.id),
                a.scim_token_env.as_deref(),
                a.scim_token_file
                    .as_deref()
                    .map(|p| resolved.path(p))
                    .as_deref(),
            )?;
            let mut hs = resolved.http_settings();
            hs.connector = format!("{}/enterprise", resolved.id);
            Some(ApiClient::new(
                ctx.http.clone(),
                hs,
                std::slice::from_ref(&base),
                Some(Arc::new(token) as Arc<dyn TokenSource>),
                Arc::new(GitHubPolicy),
                ctx.notices.clone(),
            ))
        } else {
            None
        };
        Ok(Self {
            id: resolved.id.clone(),
            display_name: resolved.manifest.display_name.clone(),
            client,
            enterprise,
            base,
            settings,
            app,
            refresh: resolved.refresh_interval(),
        })
    }

    pub fn client_stats(&self) -> crate::connector::http::ClientStats {
        self.client.stats()
    }

    fn org(&self) -> &str {
        &self.settings.org
    }

    fn url(&self, segments: &[&str]) -> Result<Url, ConnectorError> {
        self.client.url(&self.base, segments)
    }

    fn org_url(&self, segments: &[&str]) -> Result<Url, ConnectorError> {
        let mut all = vec!["orgs", self.org()];
        all.extend_from_slice(segments);
        self.url(&all)
    }

    async fn send(
        &self,
        req: ApiRequest,
    ) -> Result<crate::connector::http::ApiResponse, ConnectorError> {
        self.client_for(&req.url).send(headers(req)).await
    }

    /// The enterprise token's client for the enterprise's paths, when one
    /// is configured; the connector's otherwise.
    fn client_for(&self, url: &Url) -> &ApiClient {
        let rest = url
            .path()
            .strip_prefix(self.base.path().trim_end_matches('/'))
            .unwrap_or("");
        match &self.enterprise {
            Some(e)
                if rest.starts_with("/enterprises/")
                    || rest.starts_with("/scim/v2/enterprises/") =>
            {
                e
            }
            _ => &self.client,
        }
    }

    /// A GET that answers None on 404.
    async fn get_opt(&self, url: Url) -> Result<Option<Value>, ConnectorError> {
        match self.send(ApiRequest::get(url)).await {
            Ok(r) if r.status == StatusCode::NO_CONTENT => Ok(Some(Value::Null)),
            Ok(r) => Ok(Some(r.json()?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every page of a list (`field` names the array inside an object
    /// answer), following `Link: rel="next"` on this connector's origin.
    async fn list(&self, mut url: Url, field: Option<&str>) -> Result<Vec<Value>, ConnectorError> {
        url.query_pairs_mut()
            .append_pair("per_page", &self.settings.page_size.to_string());
        let mut guard = PageGuard::new();
        let mut out = Vec::new();
        loop {
            let resp = self.send(ApiRequest::get(url)).await?;
            let v: Value = resp.json()?;
            let items = match field {
                None => v,
                Some(f) => v.get(f).cloned().unwrap_or(Value::Null),
            };
            match items {
                Value::Array(a) => out.extend(a),
                _ => {
                    return Err(ConnectorError::BadResponse(format!(
                        "expected a list{}",
                        field.map(|f| format!(" in `{f}`")).unwrap_or_default()
                    )));
                }
            }
            let Some(next) = guard.next(next_link(&resp.headers).as_deref())? else {
                break;
            };
            url = self.client.resolve_link(&self.base, &next)?;
        }
        Ok(out)
    }

    /// Every SCIM identity a filter matches (None: the org has no SCIM).
    async fn scim(
        &self,
        path: &[&str],
        filter: &str,
    ) -> Result<Option<Vec<Value>>, ConnectorError> {
        let url = self.url(path)?;
        let mut pager = IndexPager::new(100);
        let mut out = Vec::new();
        loop {
            let start = pager.start_index().to_string();
            let count = pager.count().to_string();
            let req = ApiRequest::get(url.clone())
                .query(&[
                    ("startIndex", &start),
                    ("count", &count),
                    ("filter", filter),
                ])
                .header("accept", "application/scim+json");
            let resp = match self
                .client_for(&url)
                .send(req.header("x-github-api-version", API_VERSION))
                .await
            {
                Ok(r) => r,
                // SCIM not enabled for this org (no SAML SSO).
                Err(e) if e.is_not_found() && out.is_empty() => return Ok(None),
                Err(e) => return Err(e),
            };
            let v: Value = resp.json()?;
            let items = v
                .get("Resources")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let ids: Vec<String> = items
                .iter()
                .map(|r| id_text(r, "id"))
                .collect::<Result<_, _>>()?;
            let total = v.get("totalResults").and_then(Value::as_u64);
            out.extend(items);
            if !pager.page(&ids, total)? {
                break;
            }
        }
        Ok(Some(out))
    }

    fn identity(v: &Value) -> Result<Identity, ConnectorError> {
        Ok(Identity {
            id: id_text(v, "id")?,
            user_name: s(v, "userName"),
            display_name: s(v, "displayName"),
            active: v.get("active").and_then(Value::as_bool).unwrap_or(true),
        })
    }

    /// Logins whose SAML identity (`github_com_saml_name_id`) is one of
    /// `names`, or whose verified-domain emails hold `address`.
    async fn saml_logins(
        &self,
        names: &[String],
        address: &str,
    ) -> Result<Vec<String>, ConnectorError> {
        let Some(ent) = self.settings.enterprise.as_deref() else {
            return Ok(Vec::new());
        };
        let rows = self
            .list(
                self.url(&["enterprises", ent, "consumed-licenses"])?,
                Some("users"),
            )
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let login = s(r, "github_com_login");
            if login.is_empty() {
                continue;
            }
            let name_id = s(r, "github_com_saml_name_id");
            let verified = r
                .get("github_com_verified_domain_emails")
                .and_then(Value::as_array)
                .is_some_and(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .any(|e| e.eq_ignore_ascii_case(address))
                });
            let named =
                !name_id.is_empty() && names.iter().any(|n| n.eq_ignore_ascii_case(&name_id));
            if (named || verified) && !out.contains(&login) {
                out.push(login);
            }
        }
        Ok(out)
    }

    async fn find_address(&self, address: &str) -> Result<Lookup, ConnectorError> {
        let address = address.trim().to_ascii_lowercase();
        if let Some(login) = self.settings.logins.get(&address) {
            return self
                .account_of(login, None, "settings.logins", &address)
                .await;
        }
        if self.settings.emu {
            let ent = self.settings.enterprise.clone().unwrap_or_default();
            let f = format!("userName eq {}", quote(&address));
            let rows = self
                .scim(&["scim", "v2", "enterprises", &ent, "Users"], &f)
                .await?
                .ok_or_else(|| {
                    ConnectorError::BadResponse(format!(
                        "the enterprise {} has no SCIM (is it an EMU enterprise?)",
                        clean_max(&ent, 60)
                    ))
                })?;
            let Some(row) = rows.first() else {
                return Ok(Lookup::NotFound);
            };
            let ident = Self::identity(row)?;
            let login = emu_login(
                &ident.user_name,
                self.settings.emu_shortcode.as_deref().unwrap_or(""),
            );
            return self
                .account_of(&login, Some(ident), "EMU SCIM", &address)
                .await;
        }
        let f = format!("emails eq {}", quote(&address));
        let scim = self
            .scim(&["scim", "v2", "organizations", self.org(), "Users"], &f)
            .await?;
        let idents: Vec<Identity> = scim
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(Self::identity)
            .collect::<Result<_, _>>()?;
        if scim.is_none() && self.settings.enterprise.is_none() {
            return Err(ConnectorError::Config(format!(
                "the org {} has no SCIM and no enterprise is configured: GitHub cannot map {} to a login; add it to settings.logins",
                clean_max(self.org(), 60),
                clean_max(&address, 80)
            )));
        }
        let mut names: Vec<String> = vec![address.clone()];
        names.extend(idents.iter().map(|i| i.user_name.clone()));
        let logins = self.saml_logins(&names, &address).await?;
        match (logins.len(), idents.len()) {
            (0, 0) => Ok(Lookup::NotFound),
            (0, _) => Err(ConnectorError::BadResponse(format!(
                "{} has a SCIM identity in the org but GitHub does not say its login (not linked yet, or no enterprise configured): add it to settings.logins",
                clean_max(&address, 80)
            ))),
            (1, _) => {
                let ident = idents.into_iter().next();
                self.account_of(&logins[0], ident, "SAML identity", &address)
                    .await
            }
            _ => {
                let mut candidates = Vec::new();
                for l in &logins {
                    if let Lookup::Found { account } = self
                        .account_of(l, idents.first().cloned(), "SAML identity", &address)
                        .await?
                    {
                        candidates.push(account);
                    }
                }
                Ok(match candidates.len() {
                    0 => Lookup::NotFound,
                    1 => Lookup::Found {
                        account: candidates.pop().expect("one"),
                    },
                    _ => Lookup::Ambiguous { candidates },
                })
            }
        }
    }

    /// The account of `login` in the org: a member (active or invited), or
    /// an outside collaborator; NotFound when neither.
    async fn account_of(
        &self,
        login: &str,
        ident: Option<Identity>,
        via: &str,
        address: &str,
    ) -> Result<Lookup, ConnectorError> {
        let membership = self.get_opt(self.org_url(&["memberships", login])?).await?;
        let mut facts = vec![("found by".to_string(), via.to_string())];
        let (active, is_admin) = match &membership {
            Some(m) => {
                let role = s(m, "role");
                facts.push(("org role".into(), role.clone()));
                facts.push(("state".into(), s(m, "state")));
                if m.get("direct_membership") == Some(&Value::Bool(false)) {
                    facts.push(("membership".into(), "through enterprise teams only".into()));
                }
                (true, role == "admin")
            }
            None => {
                if !self.is_outside_collaborator(login).await? {
                    return Ok(Lookup::NotFound);
                }
                facts.push(("org role".into(), "outside collaborator".into()));
                (true, false)
            }
        };
        if let Some(i) = &ident {
            facts.push(("SCIM identity".into(), i.id.clone()));
            if !i.active {
                facts.push(("SCIM active".into(), "false".into()));
            }
        }
        let mut addresses = vec![address.to_ascii_lowercase()];
        if let Some(i) = &ident {
            let n = i.user_name.to_ascii_lowercase();
            if n.contains('@') && !addresses.contains(&n) {
                addresses.push(n);
            }
        }
        Ok(Lookup::Found {
            account: Account {
                connector: self.id.clone(),
                id: clean(login),
                login: clean(login),
                display_name: ident
                    .as_ref()
                    .map(|i| i.display_name.clone())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| clean(login)),
                active: active && ident.as_ref().is_none_or(|i| i.active),
                is_admin,
                last_login: None,
                facts,
                addresses,
                matched_by: None,
            },
        })
    }

    async fn is_outside_collaborator(&self, login: &str) -> Result<bool, ConnectorError> {
        let rows = self
            .list(self.org_url(&["outside_collaborators"])?, None)
            .await?;
        Ok(rows
            .iter()
            .any(|r| s(r, "login").eq_ignore_ascii_case(login)))
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

    fn manual(mut g: Grant, instructions: String) -> Grant {
        g.revocation = Revocation::Manual { instructions };
        g
    }

    /// Membership, admin role, outside-collaborator access, the SCIM
    /// identity and (EMU) the suspension.
    /// `outside`: also whether a non-member is an outside collaborator.
    async fn account_grants(
        &self,
        login: &str,
        outside: bool,
    ) -> Result<Vec<Grant>, ConnectorError> {
        let org = self.org().to_string();
        let mut out = Vec::new();
        match self.get_opt(self.org_url(&["memberships", login])?).await? {
            Some(m) => {
                let role = s(&m, "role");
                let state = s(&m, "state");
                let direct = m.get("direct_membership") != Some(&Value::Bool(false));
                if role == "admin" && state == "active" {
                    out.push(self.grant(
                        format!("admin:{login}"),
                        GrantKind::AdminRole,
                        format!("Organisation owner of {org}"),
                        "demoted to member before the membership is removed".into(),
                        Risk::Critical,
                    ));
                }
                let teams: Vec<String> = m
                    .get("enterprise_teams_providing_indirect_membership")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(clean).collect())
                    .unwrap_or_default();
                if direct && !self.settings.emu {
                    out.push(self.grant(
                        format!("membership:{login}"),
                        GrantKind::Account,
                        format!("Member of {org} ({role}, {state})"),
                        "removed from the org: its private repositories, teams and seat".into(),
                        Risk::High,
                    ));
                }
                if !teams.is_empty() {
                    let g = self.grant(
                        format!("enterprise-teams:{login}"),
                        GrantKind::Account,
                        format!(
                            "Member of {org} through enterprise teams: {}",
                            teams.join(", ")
                        ),
                        "the org cannot remove membership an enterprise team gives".into(),
                        Risk::High,
                    );
                    out.push(Self::manual(
                        g,
                        format!(
                            "Remove {login} from the enterprise teams {} (Enterprise settings > People > Enterprise teams), or from the IdP group that feeds them; the org's own removal leaves this membership",
                            teams.join(", ")
                        ),
                    ));
                }
            }
            None => {
                if outside && self.is_outside_collaborator(login).await? {
                    out.push(self.grant(
                        format!("outside:{login}"),
                        GrantKind::Account,
                        format!("Outside collaborator on {org}'s repositories"),
                        "removed from every repository of the org".into(),
                        Risk::High,
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The SCIM identity: EMU suspension (or deletion), or in a SCIM org
    /// the stale identity left for the identity provider.
    async fn identity_grants(
        &self,
        login: &str,
        account: &Account,
    ) -> Result<Vec<Grant>, ConnectorError> {
        let Some(scim_id) = account
            .facts
            .iter()
            .find(|(k, _)| k == "SCIM identity")
            .map(|(_, v)| v.clone())
        else {
            return Ok(Vec::new());
        };
        let org = self.org().to_string();
        if self.settings.emu {
            let ent = self.settings.enterprise.clone().unwrap_or_default();
            let v = self
                .get_opt(self.url(&["scim", "v2", "enterprises", &ent, "Users", &scim_id])?)
                .await?;
            let Some(v) = v else { return Ok(Vec::new()) };
            let active = v.get("active").and_then(Value::as_bool).unwrap_or(true);
            return Ok(match self.settings.emu_close {
                EmuClose::Suspend if active => vec![self.grant(
                    format!("suspend:{scim_id}"),
                    GrantKind::Account,
                    format!("Managed user {login} (EMU)"),
                    "suspended through SCIM (active: false): reversible; sign-in and every token stop".into(),
                    Risk::High,
                )],
                EmuClose::Delete => vec![self.grant(
                    format!("delete:{scim_id}"),
                    GrantKind::Account,
                    format!("Managed user {login} (EMU)"),
                    "deleted through SCIM (settings.emu_close = \"delete\"): irreversible; wipes PATs, SSH keys and authorizations".into(),
                    Risk::High,
                )],
                _ => Vec::new(),
            });
        }
        let v = self
            .get_opt(self.url(&["scim", "v2", "organizations", &org, "Users", &scim_id])?)
            .await?;
        Ok(match v {
            Some(_) => {
                // Not held through the membership (it outlives its
                // removal): a read that no longer lists it saw the IdP
                // deprovision it.
                let g = self.grant(
                    format!("scim:{scim_id}"),
                    GrantKind::Account,
                    format!("SCIM identity in {org}"),
                    "outlives a removal made in GitHub: the IdP would provision it again".into(),
                    Risk::Medium,
                );
                vec![Self::manual(
                    g,
                    format!(
                        "Unassign {login} from the GitHub app in the identity provider, so that it deprovisions the SCIM identity; a removal in GitHub alone leaves it, and the IdP can invite them again"
                    ),
                )]
            }
            None => Vec::new(),
        })
    }

    /// Organisation roles, one listing per role.
    async fn org_role_grants(&self, login: &str) -> Result<Vec<Grant>, ConnectorError> {
        let v = self
            .send(ApiRequest::get(self.org_url(&["organization-roles"])?))
            .await?
            .json::<Value>()?;
        let roles = v
            .get("roles")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut out = Vec::new();
        for r in &roles {
            let rid = id_text(r, "id")?;
            let users = self
                .list(self.org_url(&["organization-roles", &rid, "users"])?, None)
                .await?;
            let Some(u) = users
                .iter()
                .find(|u| s(u, "login").eq_ignore_ascii_case(login))
            else {
                continue;
            };
            let name = s(r, "name");
            let g = self.grant(
                format!("orgrole:{rid}"),
                GrantKind::AdminRole,
                format!("Organisation role: {name}"),
                s(r, "description"),
                Risk::High,
            );
            if s(u, "assignment") == "indirect" {
                let teams: Vec<String> = u
                    .get("inherited_from")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(|t| s(t, "slug")).collect())
                    .unwrap_or_default();
                let mut g = Self::manual(
                    g,
                    format!(
                        "{name} is held through the teams {}: the plan's team removals end it",
                        teams.join(", ")
                    ),
                );
                g.after = teams.iter().map(|t| format!("team:{t}")).collect();
                out.push(g);
            } else {
                out.push(g);
            }
        }
        Ok(out)
    }

    /// Team memberships: the org's teams, each asked for the user (`only`:
    /// just these slugs, for a confirming read).
    async fn team_grants(
        &self,
        login: &str,
        only: Option<&[String]>,
    ) -> Result<Vec<Grant>, ConnectorError> {
        let slugs: Vec<(String, String)> = match only {
            Some(o) => o.iter().map(|s| (s.clone(), s.clone())).collect(),
            None => self
                .list(self.org_url(&["teams"])?, None)
                .await?
                .iter()
                .map(|t| (s(t, "slug"), s(t, "name")))
                .filter(|(slug, _)| !slug.is_empty())
                .collect(),
        };
        // One read per team, at once: the client's concurrency and rate
        // limits pace them.
        let reads = join_all(slugs.into_iter().map(|(slug, name)| async move {
            let url = self.org_url(&["teams", &slug, "memberships", login])?;
            let m = self.get_opt(url).await?;
            Ok::<_, ConnectorError>(m.map(|m| {
                self.grant(
                    format!("team:{slug}"),
                    GrantKind::Group,
                    format!("Team: {name}"),
                    format!("{} ({})", s(&m, "role"), s(&m, "state")),
                    Risk::Low,
                )
            }))
        }))
        .await;
        reads.into_iter().filter_map(Result::transpose).collect()
    }

    async fn repo_grants(
        &self,
        login: &str,
        only: Option<&[String]>,
    ) -> Result<Vec<Grant>, ConnectorError> {
        let repos = only.unwrap_or(&self.settings.repositories);
        let reads = join_all(repos.iter().map(|r| async move {
            let url = self.url(&["repos", self.org(), r, "collaborators", login])?;
            let found = self.get_opt(url).await?.is_some();
            Ok::<_, ConnectorError>(found.then(|| {
                self.grant(
                    format!("repo:{r}"),
                    GrantKind::Group,
                    format!("Collaborator on {}/{r}", self.org()),
                    "direct repository access".into(),
                    Risk::Medium,
                )
            }))
        }))
        .await;
        reads.into_iter().filter_map(Result::transpose).collect()
    }

    async fn credential_grants(&self, login: &str) -> Result<Vec<Grant>, ConnectorError> {
        let mut url = self.org_url(&["credential-authorizations"])?;
        url.query_pairs_mut().append_pair("login", login);
        let rows = self.list(url, None).await?;
        rows.iter()
            .filter(|r| s(r, "login").eq_ignore_ascii_case(login))
            .map(|r| {
                let cid = id_text(r, "credential_id")?;
                let ty = s(r, "credential_type");
                let what = match r.get("token_last_eight").and_then(Value::as_str) {
                    Some(l8) => format!("…{}", clean_max(l8, 8)),
                    None => s(r, "fingerprint"),
                };
                let title = s(r, "authorized_credential_title");
                let note = s(r, "authorized_credential_note");
                let mut g = self.grant(
                    format!("credential:{cid}"),
                    GrantKind::ApiKey,
                    format!("SSO-authorized {ty} {}", if title.is_empty() { note } else { title }).trim().to_string(),
                    format!("{what}; unlinking ends its access to this org only: the credential stays valid elsewhere until its owner deletes it"),
                    Risk::High,
                );
                g.since = r
                    .get("credential_authorized_at")
                    .and_then(Value::as_str)
                    .map(clean);
                Ok(g)
            })
            .collect()
    }

    async fn pat_grants(&self, login: &str) -> Result<Vec<Grant>, ConnectorError> {
        let mut url = self.org_url(&["personal-access-tokens"])?;
        url.query_pairs_mut().append_pair("owner[]", login);
        let rows = match self.list(url, None).await {
            Ok(r) => r,
            Err(ConnectorError::Api {
                status: 403,
                message,
                ..
            }) if !self.app => {
                return Err(ConnectorError::Api {
                    status: 403,
                    code: String::new(),
                    message: format!("only a GitHub App can list fine-grained PATs: {message}"),
                });
            }
            Err(e) => return Err(e),
        };
        rows.iter()
            .filter(|r| {
                r.get("owner")
                    .is_some_and(|o| s(o, "login").eq_ignore_ascii_case(login))
            })
            .map(|r| {
                let id = id_text(r, "id")?;
                let expired = r.get("token_expired") == Some(&Value::Bool(true));
                let mut g = self.grant(
                    format!("pat:{id}"),
                    GrantKind::ApiKey,
                    format!("Fine-grained PAT: {}", s(r, "token_name")),
                    format!(
                        "repositories {}; expires {}{}",
                        s(r, "repository_selection"),
                        r.get("token_expires_at")
                            .and_then(Value::as_str)
                            .map(clean)
                            .unwrap_or_else(|| "never".into()),
                        if expired { " (expired)" } else { "" }
                    ),
                    Risk::Critical,
                );
                g.since = r
                    .get("access_granted_at")
                    .and_then(Value::as_str)
                    .map(clean);
                Ok(g)
            })
            .collect()
    }

    async fn invitation_grants(
        &self,
        login: &str,
        emails: &[String],
    ) -> Result<Vec<Grant>, ConnectorError> {
        let rows = self.list(self.org_url(&["invitations"])?, None).await?;
        rows.iter()
            .filter(|r| {
                s(r, "login").eq_ignore_ascii_case(login)
                    || emails.iter().any(|e| s(r, "email").eq_ignore_ascii_case(e))
            })
            .map(|r| {
                let id = id_text(r, "id")?;
                let mut g = self.grant(
                    format!("invitation:{id}"),
                    GrantKind::Account,
                    format!("Pending invitation to {} ({})", self.org(), s(r, "role")),
                    format!(
                        "{} team(s); could still be accepted",
                        r.get("team_count").and_then(Value::as_u64).unwrap_or(0)
                    ),
                    Risk::Medium,
                );
                g.phase = Some(Phase::CutAccess);
                g.since = r.get("created_at").and_then(Value::as_str).map(clean);
                Ok(g)
            })
            .collect()
    }

    async fn codespace_grants(&self, login: &str) -> Result<Vec<Grant>, ConnectorError> {
        let rows = match self
            .list(
                self.org_url(&["members", login, "codespaces"])?,
                Some("codespaces"),
            )
            .await
        {
            Ok(r) => r,
            // Not a member (an outside collaborator): none in the org.
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e),
        };
        rows.iter()
            .map(|r| {
                let name = s(r, "name");
                if name.is_empty() {
                    return Err(ConnectorError::BadResponse(
                        "a codespace without a name".into(),
                    ));
                }
                let repo = r
                    .get("repository")
                    .map(|x| s(x, "full_name"))
                    .unwrap_or_default();
                Ok(self.grant(
                    format!("codespace:{name}"),
                    GrantKind::Device,
                    format!("Codespace {} on {repo}", s(r, "display_name")),
                    format!("{}; holds a checkout and the user's secrets", s(r, "state")),
                    Risk::Medium,
                ))
            })
            .collect()
    }

    async fn copilot_grants(&self, login: &str) -> Result<Vec<Grant>, ConnectorError> {
        let seat = match self
            .send(ApiRequest::get(
                self.org_url(&["members", login, "copilot"])?,
            ))
            .await
        {
            Ok(r) => r.json::<Value>()?,
            // 404: no seat; 422: Copilot is not enabled for the org.
            Err(ConnectorError::Api {
                status: 404 | 422, ..
            }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        if !seat
            .get("pending_cancellation_date")
            .is_none_or(Value::is_null)
        {
            return Ok(Vec::new());
        }
        let g = self.grant(
            format!("copilot:{login}"),
            GrantKind::License,
            format!("Copilot seat ({})", s(&seat, "plan_type")),
            "cancelled seats stay until the end of the billing cycle".into(),
            Risk::Low,
        );
        Ok(vec![
            match seat.get("assigning_team").filter(|t| !t.is_null()) {
                Some(t) => {
                    let slug = s(t, "slug");
                    let mut g = Self::manual(
                        g,
                        format!(
                            "The seat is given through team {slug}: the plan's team removal ends it (or unassign Copilot from the team)"
                        ),
                    );
                    g.label = format!("Copilot seat through team {slug}");
                    g.after = vec![format!("team:{slug}")];
                    g
                }
                None => g,
            },
        ])
    }

    /// Repositories, GitHub Apps and OAuth apps the leaver created,
    /// installed or approved (from the audit log), still there: listed for
    /// hand-over.
    async fn owned_grants(&self, login: &str) -> Result<Vec<Grant>, ConnectorError> {
        let mut url = self.org_url(&["audit-log"])?;
        url.query_pairs_mut()
            .append_pair("phrase", &format!("actor:{login}"))
            .append_pair("include", "web");
        let events = self.list(url, None).await?;
        let mut repos: Vec<String> = Vec::new();
        let mut apps: Vec<String> = Vec::new();
        let mut oauth: Vec<String> = Vec::new();
        // Oldest first, so that a later destroy or uninstall cancels.
        for e in events.iter().rev() {
            let action = s(e, "action");
            let repo = s(e, "repo");
            // Apps and OAuth apps are named in `name`.
            let app = s(e, "name");
            let oauth_app = app.clone();
            match action.as_str() {
                "repo.create" if !repo.is_empty() && !repos.contains(&repo) => repos.push(repo),
                "repo.destroy" => repos.retain(|r| *r != repo),
                "integration_installation.create" if !app.is_empty() && !apps.contains(&app) => {
                    apps.push(app)
                }
                "integration_installation.destroy" => apps.retain(|a| *a != app),
                "org.oauth_app_access_approved"
                    if !oauth_app.is_empty() && !oauth.contains(&oauth_app) =>
                {
                    oauth.push(oauth_app)
                }
                "org.oauth_app_access_revoked" => oauth.retain(|a| *a != oauth_app),
                _ => {}
            }
        }
        if !apps.is_empty() {
            let installed: Vec<String> = self
                .list(self.org_url(&["installations"])?, Some("installations"))
                .await?
                .iter()
                .map(|i| s(i, "app_slug"))
                .collect();
            apps.retain(|a| installed.contains(a));
        }
        let hand_over = |what: &str| {
            format!(
                "Hand {what} over to its new owner (a team or a service account), or remove it; removing {login} does not"
            )
        };
        let mut out = Vec::new();
        for r in repos {
            let g = self.grant(
                format!("owned-repo:{r}"),
                GrantKind::OwnedApp,
                format!("Repository {r} (created by {login})"),
                "a non-human asset: its deploy keys, webhooks and secrets need an owner".into(),
                Risk::Medium,
            );
            out.push(Self::manual(
                g,
                hand_over(&format!(
                    "repository {r} (its admin rights, deploy keys, secrets)"
                )),
            ));
        }
        for a in apps {
            let g = self.grant(
                format!("owned-app:{a}"),
                GrantKind::OwnedApp,
                format!("GitHub App {a} (installed by {login})"),
                "a non-human identity that keeps acting with its own token".into(),
                Risk::High,
            );
            out.push(Self::manual(
                g,
                hand_over(&format!(
                    "GitHub App {a} (Settings > GitHub Apps; transfer its ownership)"
                )),
            ));
        }
        for a in oauth {
            let g = self.grant(
                format!("owned-oauth:{a}"),
                GrantKind::OwnedApp,
                format!("OAuth app {a} (approved by {login})"),
                "a non-human identity whose tokens keep working".into(),
                Risk::High,
            );
            out.push(Self::manual(
                g,
                hand_over(&format!(
                    "OAuth app {a} (review it under Settings > Third-party access)"
                )),
            ));
        }
        Ok(out)
    }

    async fn delete(&self, url: Url) -> Result<RevokeOutcome, ConnectorError> {
        self.write(ApiRequest::new(Method::DELETE, url)).await
    }

    async fn write(&self, req: ApiRequest) -> Result<RevokeOutcome, ConnectorError> {
        match self.send(req).await {
            Ok(_) => Ok(RevokeOutcome::Accepted),
            Err(e) if e.is_not_found() => Ok(RevokeOutcome::AlreadyGone),
            Err(e) => Err(refused(e)),
        }
    }

    /// Grants of the kinds `want` selects (by id prefix); `teams`/`repos`:
    /// only these, for a confirming read.
    async fn read(
        &self,
        account: &Account,
        want: &(dyn Fn(&str) -> bool + Sync),
        teams: Option<&[String]>,
        repos: Option<&[String]>,
    ) -> Inventory {
        let login = account.login.as_str();
        let (acct, ident, roles, team, repo) = tokio::join!(
            maybe(
                want("membership") || want("admin") || want("outside") || want("enterprise-teams"),
                self.account_grants(login, want("outside"))
            ),
            maybe(
                want("scim") || want("suspend") || want("delete"),
                self.identity_grants(login, account)
            ),
            maybe(want("orgrole"), self.org_role_grants(login)),
            maybe(want("team"), self.team_grants(login, teams)),
            maybe(want("repo"), self.repo_grants(login, repos)),
        );
        let (cred, pat, inv, code, cop, owned) = tokio::join!(
            maybe(want("credential"), self.credential_grants(login)),
            maybe(want("pat"), self.pat_grants(login)),
            maybe(
                want("invitation"),
                self.invitation_grants(login, &account.addresses)
            ),
            maybe(want("codespace"), self.codespace_grants(login)),
            maybe(want("copilot"), self.copilot_grants(login)),
            maybe(want("owned"), self.owned_grants(login)),
        );
        let mut inv_out = Inventory::default();
        let mut take = |kinds: &[GrantKind], r: Option<Result<Vec<Grant>, ConnectorError>>| match r
        {
            Some(Ok(g)) => inv_out.grants.extend(g),
            Some(Err(e)) => {
                for k in kinds {
                    if !inv_out.failed.iter().any(|(x, _)| x == k) {
                        inv_out.failed.push((*k, e.clone()));
                    }
                }
            }
            None => {}
        };
        take(&[GrantKind::Account, GrantKind::AdminRole], acct);
        take(&[GrantKind::Account], ident);
        take(&[GrantKind::AdminRole], roles);
        take(&[GrantKind::Group], team);
        take(&[GrantKind::Group], repo);
        take(&[GrantKind::ApiKey], cred);
        take(&[GrantKind::ApiKey], pat);
        take(&[GrantKind::Account], inv);
        take(&[GrantKind::Device], code);
        take(&[GrantKind::License], cop);
        take(&[GrantKind::OwnedApp], owned);
        let failed: Vec<GrantKind> = inv_out.failed.iter().map(|(k, _)| *k).collect();
        inv_out.grants.retain(|g| !failed.contains(&g.kind));
        inv_out
    }
}

/// A 403 or 422 from a removal is GitHub refusing (inherited access, the
/// last owner, a seat given by a team): a step a person must take.
fn refused(e: ConnectorError) -> ConnectorError {
    match e {
        ConnectorError::Api {
            status: status @ (403 | 422),
            message,
            ..
        } => ConnectorError::Refused {
            code: status.to_string(),
            manual: format!(
                "GitHub refused (HTTP {status}): {message}. Remove it where it is granted (the enterprise, a team or the identity provider)."
            ),
            message,
        },
        e => e,
    }
}

/// The id prefixes [`GitHub::read`] has a listing for (and `owned-*`).
const READ: &[&str] = &[
    "membership",
    "admin",
    "outside",
    "enterprise-teams",
    "scim",
    "suspend",
    "delete",
    "orgrole",
    "team",
    "repo",
    "credential",
    "pat",
    "invitation",
    "codespace",
    "copilot",
];

#[async_trait]
impl Connector for GitHub {
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
        self.read(account, &|_| true, None, None).await
    }

    async fn revoke(
        &self,
        account: &Account,
        grant: &Grant,
    ) -> Result<RevokeOutcome, ConnectorError> {
        let login = account.login.as_str();
        let (what, id) = grant.id.split_once(':').ok_or_else(|| {
            ConnectorError::Config(format!("not a GitHub grant: {}", clean_max(&grant.id, 80)))
        })?;
        let ent = self.settings.enterprise.clone().unwrap_or_default();
        match what {
            "membership" => self.delete(self.org_url(&["memberships", login])?).await,
            "outside" => {
                self.delete(self.org_url(&["outside_collaborators", login])?)
                    .await
            }
            "admin" => {
                self.write(
                    ApiRequest::new(Method::PUT, self.org_url(&["memberships", login])?)
                        .json(json!({"role": "member"})),
                )
                .await
            }
            "orgrole" => {
                self.delete(self.org_url(&["organization-roles", "users", login, id])?)
                    .await
            }
            "team" => {
                self.delete(self.org_url(&["teams", id, "memberships", login])?)
                    .await
            }
            "repo" => {
                self.delete(self.url(&["repos", self.org(), id, "collaborators", login])?)
                    .await
            }
            "credential" => {
                self.delete(self.org_url(&["credential-authorizations", id])?)
                    .await
            }
            "pat" => {
                let pat: u64 = id.parse().map_err(|_| {
                    ConnectorError::Config(format!("not a PAT grant id: {}", clean_max(id, 40)))
                })?;
                self.write(
                    ApiRequest::new(Method::POST, self.org_url(&["personal-access-tokens"])?)
                        .json(json!({"action": "revoke", "pat_ids": [pat]}))
                        .idempotent(true),
                )
                .await
            }
            "invitation" => self.delete(self.org_url(&["invitations", id])?).await,
            "codespace" => {
                self.delete(self.org_url(&["members", login, "codespaces", id])?)
                    .await
            }
            "copilot" => {
                self.write(
                    ApiRequest::new(
                        Method::DELETE,
                        self.org_url(&["copilot", "billing", "selected_users"])?,
                    )
                    .json(json!({"selected_usernames": [login]})),
                )
                .await
            }
            "suspend" => {
                self.write(
                    ApiRequest::new(
                        Method::PATCH,
                        self.url(&["scim", "v2", "enterprises", &ent, "Users", id])?,
                    )
                    .json(json!({
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "replace", "path": "active", "value": false}],
                    })),
                )
                .await
            }
            "delete" => {
                self.delete(self.url(&["scim", "v2", "enterprises", &ent, "Users", id])?)
                    .await
            }
            _ => Err(ConnectorError::Config(format!(
                "not a GitHub grant: {}",
                clean_max(&grant.id, 80)
            ))),
        }
    }

    /// Re-reads only what the asked grants live in (a team or repository
    /// grant: that one team's or repository's membership).
    async fn verify(
        &self,
        account: &Account,
        grants: &[Grant],
    ) -> Vec<(String, Result<Presence, ConnectorError>)> {
        let prefixes: Vec<&str> = grants.iter().map(prefix).collect();
        let ids = |p: &str| -> Vec<String> {
            grants
                .iter()
                .filter(|g| prefix(g) == p)
                .filter_map(|g| g.id.split_once(':').map(|(_, id)| id.to_string()))
                .collect()
        };
        let teams = ids("team");
        let repos = ids("repo");
        let want = |p: &str| {
            prefixes.iter().any(|x| match p {
                // Owned assets and the EMU identity are read with their own.
                "owned" => x.starts_with("owned"),
                _ => *x == p,
            })
        };
        let inv = self.read(account, &want, Some(&teams), Some(&repos)).await;
        crate::connector::presence_where_read(&inv, grants, |g| {
            READ.contains(&prefix(g)) || prefix(g).starts_with("owned")
        })
    }

    fn health(&self) -> Health {
        Health::from_stats(&self.client.stats())
    }

    /// The org's members, its outside collaborators (guests) and the apps
    /// installed on it (non-human), every page of each.
    async fn list_accounts(&self) -> Result<Vec<crate::connector::ListedAccount>, ConnectorError> {
        use crate::connector::{AccountClass, ListedAccount};
        let (members, outside, apps) = tokio::join!(
            self.list(self.org_url(&["members"])?, None),
            self.list(self.org_url(&["outside_collaborators"])?, None),
            self.list(self.org_url(&["installations"])?, Some("installations")),
        );
        let account = |id: String, login: String, facts: Vec<(String, String)>| Account {
            connector: self.id.clone(),
            id,
            display_name: login.clone(),
            login,
            active: true,
            is_admin: false,
            last_login: None,
            facts,
            addresses: Vec::new(),
            matched_by: None,
        };
        let mut out = Vec::new();
        for (rows, class) in [
            (members?, AccountClass::Member),
            (outside?, AccountClass::Guest),
        ] {
            for r in rows {
                let login = s(&r, "login");
                if login.is_empty() {
                    return Err(ConnectorError::BadResponse("a user without a login".into()));
                }
                out.push(ListedAccount {
                    account: account(login.clone(), login, Vec::new()),
                    class,
                    owner: None,
                });
            }
        }
        for r in apps? {
            let slug = s(&r, "app_slug");
            out.push(ListedAccount {
                account: account(
                    format!("installation:{}", id_text(&r, "id")?),
                    slug,
                    vec![("kind".into(), "GitHub App installation".into())],
                ),
                class: AccountClass::NonHuman,
                owner: None,
            });
        }
        Ok(out)
    }

    /// `GET /rate_limit` (not counted against the limit) and the org's
    /// membership list head: a valid credential that can read the org.
    async fn probe(&self) -> Result<(), ConnectorError> {
        self.send(ApiRequest::get(self.url(&["rate_limit"])?))
            .await?;
        let mut url = self.org_url(&["members"])?;
        url.query_pairs_mut().append_pair("per_page", "1");
        self.send(ApiRequest::get(url)).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, String)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn primary_and_secondary_limits_and_refusals_are_told_apart() {
        let reset = (chrono::Utc::now().timestamp() + 30).to_string();
        let body = br#"{"message":"API rate limit exceeded for installation ID 1.","documentation_url":"https://docs.github.com"}"#;
        for status in [403, 429] {
            let st = StatusCode::from_u16(status).unwrap();
            let primary = h(&[
                ("x-ratelimit-remaining", "0".into()),
                ("x-ratelimit-reset", reset.clone()),
            ]);
            match GitHubPolicy.classify(st, &primary, body) {
                Verdict::RateLimited(Some(d)) => assert!(d >= Duration::from_secs(25), "{d:?}"),
                v => panic!("{status} primary: {v:?}"),
            }
            let secondary = h(&[
                ("retry-after", "7".into()),
                ("x-ratelimit-remaining", "4000".into()),
            ]);
            match GitHubPolicy.classify(
                st,
                &secondary,
                b"{\"message\":\"You have exceeded a secondary rate limit.\"}",
            ) {
                Verdict::RateLimited(Some(d)) => assert_eq!(d, Duration::from_secs(7)),
                v => panic!("{status} secondary: {v:?}"),
            }
        }
        let plenty = h(&[("x-ratelimit-remaining", "4000".into())]);
        match GitHubPolicy.classify(
            StatusCode::FORBIDDEN,
            &plenty,
            br#"{"message":"Resource not accessible by integration","documentation_url":"x"}"#,
        ) {
            Verdict::Fail(ConnectorError::Api {
                status: 403,
                message,
                ..
            }) => {
                assert_eq!(message, "Resource not accessible by integration")
            }
            v => panic!("a refusal: {v:?}"),
        }
    }

    #[test]
    fn emu_logins_follow_githubs_normalisation() {
        assert_eq!(
            emu_login("Dana.Whitfield@example.com", "exco"),
            "dana-whitfield_exco"
        );
        assert_eq!(emu_login("jdoe", "acme"), "jdoe_acme");
    }

    #[test]
    fn filter_values_are_quoted() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
