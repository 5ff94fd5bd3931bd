//! The Connector trait every driver implements, manifest loading, and the
//! shared HTTP client.

pub mod http;
pub mod manifest;
pub mod steps;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::{Account, Grant, GrantKind, Person};
use crate::secret::Secret;
pub use manifest::{Manifest, ResolvedConnector};

/// An error from talking to an app. Its text never holds a secret, and any
/// text from the API in it has been sanitised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    #[error("HTTP {status}{}: {message}", if code.is_empty() { String::new() } else { format!(" {code}") })]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("rate limited{}{}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default(), if message.is_empty() { String::new() } else { format!(": {message}") })]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("timed out")]
    Timeout,
    #[error("network error: {0}")]
    Network(String),
    #[error("unexpected response: {0}")]
    BadResponse(String),
    #[error("refused to follow a link to {0}: not this connector's host")]
    ForeignLink(String),
    /// The app refused the change for a reason a person must fix.
    #[error("refused by the app: {message}")]
    Refused {
        code: String,
        message: String,
        /// What the operator should do about it.
        manual: String,
    },
    #[error("{0}")]
    Config(String),
    /// Not sent: a speculative read ([`http::probe`]) found no quota to
    /// spare. Says nothing about the app.
    #[error("not sent: no quota to spare for a speculative read")]
    Deferred,
}

impl ConnectorError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ConnectorError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            ConnectorError::Api { code, .. } | ConnectorError::Refused { code, .. } => {
                Some(code.as_str())
            }
            _ => None,
        }
    }
}

/// Gives a connector's client a valid access token.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A token valid for at least a little while (refreshed before expiry).
    async fn token(&self) -> Result<Secret, ConnectorError>;
    /// The API refused this token (401): forget it, so the next call gets a
    /// new one.
    async fn invalidate(&self, rejected: &Secret);
    /// Scopes the server reported granting with the current token, when it
    /// reported them (after a first `token()` call).
    fn granted_scopes(&self) -> Option<Vec<String>> {
        None
    }
}

/// The result of looking a person up in one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Lookup {
    Found {
        account: Account,
    },
    /// The app answered, and has no such account.
    NotFound,
    /// Several accounts match (e.g. Salesforce email is not unique): the
    /// operator picks; the tool never guesses.
    Ambiguous {
        candidates: Vec<Account>,
    },
}

/// What a connector read of one account's grants.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub grants: Vec<Grant>,
    /// Kinds whose listing failed: nothing may be concluded about them
    /// (a failed or partial read never counts as absence).
    pub failed: Vec<(GrantKind, ConnectorError)>,
}

impl Inventory {
    pub fn kind_failed(&self, kind: GrantKind) -> Option<&ConnectorError> {
        self.failed.iter().find(|(k, _)| *k == kind).map(|(_, e)| e)
    }
}

/// What the app said to a revoke request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeOutcome {
    /// Accepted; a fresh read must now confirm it.
    Accepted,
    /// The app says it was already gone (e.g. 404 on DELETE): success, and
    /// still confirmed by a fresh read.
    AlreadyGone,
    /// Accepted, and no API can list it (e.g. Google web sign-out): ends as
    /// `acknowledged`, never `verified`.
    Acknowledged,
}

/// What a fresh read says about one grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Present,
    Absent,
    /// Still listed, and the app says the change is under way (a data
    /// transfer in progress): not verified, and said so at the deadline.
    InProgress,
}

/// The account fact in which a driver notes whom the leaver's data is
/// handed over to ([`crate::model::Person::hand_over_to`]).
pub const HAND_OVER_FACT: &str = "hand_over_to";

/// What kind of identity a listed account is, for the orphan sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountClass {
    /// A member of the organisation.
    Member,
    /// A guest or external collaborator.
    Guest,
    /// A bot, app, API token or integration user: it has an owner, not a
    /// person behind it.
    NonHuman,
}

/// One account from an app's full listing ([`Connector::list_accounts`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedAccount {
    pub account: Account,
    pub class: AccountClass,
    /// Who owns a non-human identity (an address or the app's user id,
    /// when the app says), e.g. who installed a Slack app.
    pub owner: Option<String>,
}

/// Connector health as shown in the console header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    Unknown,
    Ok,
    Degraded,
    AuthError,
    RateLimited,
}

impl HealthState {
    pub fn label(self) -> &'static str {
        match self {
            HealthState::Unknown => "…",
            HealthState::Ok => "ok",
            HealthState::Degraded => "degraded",
            HealthState::AuthError => "auth error",
            HealthState::RateLimited => "rate-limited",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub state: HealthState,
    pub detail: Option<String>,
    /// Rate-limit headroom when the API reports it.
    pub limit_info: Option<String>,
}

impl Health {
    /// Derives health from the client's counters.
    pub fn from_stats(stats: &http::ClientStats) -> Health {
        let recent = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.is_some_and(|t| chrono::Utc::now() - t < chrono::Duration::seconds(30))
        };
        let state = if stats.last_auth_error.is_some()
            && stats
                .last_success
                .is_none_or(|_| stats.last_error == stats.last_auth_error)
        {
            HealthState::AuthError
        } else if recent(stats.last_rate_limited) {
            HealthState::RateLimited
        } else if stats.last_error.is_some() && stats.last_success.is_none() {
            HealthState::Degraded
        } else if stats.last_success.is_some() {
            HealthState::Ok
        } else {
            HealthState::Unknown
        };
        Health {
            state,
            detail: stats.last_error.clone(),
            limit_info: stats.limit_info.clone(),
        }
    }
}

/// One app's driver. Every method goes over HTTP through the shared client.
#[async_trait]
pub trait Connector: Send + Sync {
    /// The connector id from the config (e.g. `google`).
    fn id(&self) -> &str;
    /// The app's name for people (e.g. `Google Workspace`).
    fn display_name(&self) -> &str;
    /// Default seconds between live refreshes (manifest `refresh_secs`).
    fn refresh_interval(&self) -> Duration {
        Duration::from_secs(5)
    }

    /// Resolves the person: primary email first, then aliases.
    async fn find_person(&self, person: &Person) -> Result<Lookup, ConnectorError>;

    /// Lists every grant of the account. Kinds whose listing failed go into
    /// [`Inventory::failed`]; the rest are complete listings.
    async fn list_grants(&self, account: &Account) -> Inventory;

    /// Revokes one grant. Idempotent: a grant already gone is
    /// [`RevokeOutcome::AlreadyGone`].
    async fn revoke(
        &self,
        account: &Account,
        grant: &Grant,
    ) -> Result<RevokeOutcome, ConnectorError>;

    /// Re-reads the API for these grants. A grant is `Absent` only when a
    /// fresh, complete, successful read no longer lists it (or answers 404).
    async fn verify(
        &self,
        account: &Account,
        grants: &[Grant],
    ) -> Vec<(String, Result<Presence, ConnectorError>)> {
        let inv = self.list_grants(account).await;
        presence_from_inventory(&inv, grants)
    }

    /// Current health from the connector's client.
    fn health(&self) -> Health;

    /// Every account in the app (paged through the shared client, within
    /// its quota), for the orphan sweep. Fails unless the whole listing was
    /// read: a partial listing is never taken as the whole.
    async fn list_accounts(&self) -> Result<Vec<ListedAccount>, ConnectorError> {
        Err(ConnectorError::Config(format!(
            "{} cannot list its accounts (not supported by its driver)",
            self.display_name()
        )))
    }

    /// Whether the app is an identity directory whose account listing says
    /// who is suspended (the orphan sweep's default `--directory`).
    fn identity_directory(&self) -> bool {
        false
    }

    /// Looks many people up with one bulk read where the app offers one
    /// (one directory listing, one query for many addresses): the lookup of
    /// each person it can answer for, as [`Connector::find_person`] would
    /// give it. A person it cannot answer for (no account or several match
    /// the addresses read) is left out, to be looked up on their own.
    /// Default: the app's account listing ([`Connector::list_accounts`]),
    /// matched by [`match_listed`].
    async fn find_people(
        &self,
        people: &[Person],
    ) -> Result<Vec<(String, Lookup)>, ConnectorError> {
        let listed = self.list_accounts().await?;
        Ok(match_listed(
            people,
            &listed.into_iter().map(|l| l.account).collect::<Vec<_>>(),
        ))
    }

    /// A cheap authenticated read showing the API answers with the current
    /// credentials (`offboard doctor`). Default: look up an address that
    /// cannot exist; any answer but an error passes. Drivers with a cheaper
    /// or more telling call override it.
    async fn probe(&self) -> Result<(), ConnectorError> {
        self.find_person(&Person::new("offboard-doctor-probe@example.invalid"))
            .await
            .map(|_| ())
    }
}

/// Looks the person up by their primary address, then by each alias, with
/// `lookup` (one address; `NotFound` only when the app says so, any other
/// failure an error). The first address that finds anything wins, and a match
/// through an alias says which one.
pub async fn find_by_each_address<F, Fut>(
    person: &Person,
    lookup: F,
) -> Result<Lookup, ConnectorError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Lookup, ConnectorError>>,
{
    for address in person.addresses() {
        let alias = (address != person.email).then(|| address.to_string());
        match lookup(address.to_string()).await? {
            Lookup::NotFound => continue,
            Lookup::Found { mut account } => {
                account.matched_by = alias;
                return Ok(Lookup::Found { account });
            }
            Lookup::Ambiguous { mut candidates } => {
                for c in &mut candidates {
                    c.matched_by = alias.clone();
                }
                return Ok(Lookup::Ambiguous { candidates });
            }
        }
    }
    Ok(Lookup::NotFound)
}

/// Matches people to accounts read in bulk, address by address as
/// [`find_by_each_address`] does (the primary address first, then each
/// alias; an account matches on any of its addresses or its login): the
/// first address that matches exactly one account finds it. A person whose
/// first matching address matches several accounts, or who matches none, is
/// left out: only a lookup of their own may call that ambiguous or absent.
pub fn match_listed(people: &[Person], accounts: &[Account]) -> Vec<(String, Lookup)> {
    let mut by_address: std::collections::HashMap<String, Vec<usize>> =
        std::collections::HashMap::new();
    for (i, a) in accounts.iter().enumerate() {
        let mut keys: Vec<String> = a.addresses.iter().map(|x| x.to_lowercase()).collect();
        keys.push(a.login.to_lowercase());
        keys.sort();
        keys.dedup();
        for k in keys.into_iter().filter(|k| !k.is_empty()) {
            by_address.entry(k).or_default().push(i);
        }
    }
    let mut out = Vec::new();
    for p in people {
        for address in p.addresses() {
            let Some(found) = by_address.get(&address.to_lowercase()) else {
                continue;
            };
            if let [one] = found.as_slice() {
                let mut account = accounts[*one].clone();
                account.matched_by = (address != p.email).then(|| address.to_string());
                out.push((p.email.clone(), Lookup::Found { account }));
            }
            break;
        }
    }
    out
}

/// Presence of each grant in a fresh inventory; grants of a kind whose
/// listing failed get that error.
pub fn presence_from_inventory(
    inv: &Inventory,
    grants: &[Grant],
) -> Vec<(String, Result<Presence, ConnectorError>)> {
    presence_where_read(inv, grants, |_| true)
}

/// [`presence_from_inventory`] for a read of some of the app's listings:
/// a grant no listing of the read holds (`read` says no: an id the
/// driver does not know) is an error, never taken for gone.
pub fn presence_where_read(
    inv: &Inventory,
    grants: &[Grant],
    read: impl Fn(&Grant) -> bool,
) -> Vec<(String, Result<Presence, ConnectorError>)> {
    grants
        .iter()
        .map(|g| {
            let r = match inv.kind_failed(g.kind) {
                _ if !read(g) => Err(not_read(g)),
                Some(e) => Err(e.clone()),
                None if inv.grants.iter().any(|x| x.id == g.id) => Ok(Presence::Present),
                None => Ok(Presence::Absent),
            };
            (g.id.clone(), r)
        })
        .collect()
}

/// A grant none of the driver's listings holds (an id it does not know,
/// such as one a changed configuration no longer reads): never gone.
pub fn not_read(g: &Grant) -> ConnectorError {
    ConnectorError::Config(format!(
        "no read of this app lists a grant like {}",
        crate::sanitize::clean_max(&g.id, 80)
    ))
}

/// The part of a grant id before its first `:` (the drivers' kind of
/// grant, which says which listing holds it).
pub fn id_prefix(g: &Grant) -> &str {
    g.id.split_once(':').map_or(g.id.as_str(), |(p, _)| p)
}

/// Awaits `f` only when `want` (a driver's read of only the listings a
/// confirming read needs).
pub async fn maybe<F: std::future::Future>(want: bool, f: F) -> Option<F::Output> {
    match want {
        true => Some(f.await),
        false => None,
    }
}

/// What building a driver needs besides its resolved manifest.
#[derive(Clone)]
pub struct BuildContext {
    pub http: reqwest::Client,
    pub notices: Option<tokio::sync::mpsc::UnboundedSender<http::HttpNotice>>,
    /// Data directory (token cache).
    pub data_dir: std::path::PathBuf,
}
