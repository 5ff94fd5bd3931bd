//! The engine proper: discovery, planning, phased execution and the verify
//! loop, recording every step in the ledger before or as it happens.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use tokio::sync::{Notify, mpsc::UnboundedSender};

use super::case::{
    AccountStatus, Case, CaseView, Change, Entry, STILL_LISTED_NOTE, answer_state, clean_account,
};
use super::{Event, Summary};
use crate::connector::{
    BuildContext, Connector, ConnectorError, Health, Lookup, Presence, RevokeOutcome,
};
use crate::evidence::{KindFailure, Ledger, LedgerError, LedgerEvent, LookupResult, PlannedStep};
use crate::model::{Grant, GrantKind, GrantState, Person, Phase, Plan};
use crate::sanitize::clean;

/// Longest wait between two verification reads.
pub const VERIFY_MAX_DELAY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Recorded in the ledger.
    pub operator: String,
    /// Past it, a removal not confirmed by a read is `unconfirmed`.
    pub verify_deadline: Duration,
    /// First wait between verification reads (then doubled while reads
    /// confirm nothing, halved while they confirm some; at most 5 s).
    pub verify_initial_delay: Duration,
}

impl EngineOptions {
    pub fn from_config(loaded: &crate::config::Loaded) -> EngineOptions {
        let e = &loaded.config.engine;
        EngineOptions {
            operator: loaded.operator(),
            verify_deadline: Duration::from_secs(e.verify_deadline_secs),
            verify_initial_delay: Duration::from_millis(e.verify_initial_delay_ms.max(1)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorInfo {
    pub id: String,
    pub display_name: String,
    pub refresh_interval: Duration,
}

/// Which grants a revoke covers. Empty vectors mean "all".
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub apps: Vec<String>,
    pub kinds: Vec<GrantKind>,
    /// `connector/id`.
    pub keys: Vec<String>,
}

impl Selection {
    pub fn matches_app(&self, connector: &str) -> bool {
        self.apps.is_empty() || self.apps.iter().any(|a| a == connector)
    }

    pub fn matches_kind(&self, kind: GrantKind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&kind)
    }

    pub fn matches(&self, g: &Grant) -> bool {
        self.matches_app(&g.connector)
            && self.matches_kind(g.kind)
            && (self.keys.is_empty() || self.keys.contains(&g.key()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("evidence ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("no case for {0}: discover it first")]
    NoCase(String),
    #[error("{0}")]
    Invalid(String),
}

/// Builds every enabled connector of a config, with the client's notices
/// forwarded to `events` as [`Event::Http`].
pub fn connectors_from_config(
    resolved: &[crate::connector::ResolvedConnector],
    data_dir: &std::path::Path,
    events: &UnboundedSender<Event>,
) -> Result<Vec<Arc<dyn Connector>>, ConnectorError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = BuildContext {
        http: crate::connector::http::shared_reqwest(),
        notices: Some(tx),
        data_dir: data_dir.to_path_buf(),
    };
    let out = resolved
        .iter()
        .map(|r| crate::connector::build(r, &ctx))
        .collect::<Result<Vec<_>, _>>()?;
    let events = events.clone();
    tokio::spawn(async move {
        while let Some(n) = rx.recv().await {
            if events.send(Event::Http(n)).is_err() {
                break;
            }
        }
    });
    Ok(out)
}

pub struct Engine {
    connectors: Vec<Arc<dyn Connector>>,
    ledger: Ledger,
    opts: EngineOptions,
    events: UnboundedSender<Event>,
    cases: Mutex<HashMap<String, Case>>,
}

impl Engine {
    pub fn new(
        connectors: Vec<Arc<dyn Connector>>,
        ledger: Ledger,
        opts: EngineOptions,
        events: UnboundedSender<Event>,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            connectors,
            ledger,
            opts,
            events,
            cases: Mutex::new(HashMap::new()),
        })
    }

    pub fn connectors(&self) -> Vec<ConnectorInfo> {
        self.connectors
            .iter()
            .map(|c| ConnectorInfo {
                id: c.id().to_string(),
                display_name: c.display_name().to_string(),
                refresh_interval: c.refresh_interval().max(Duration::from_secs(2)),
            })
            .collect()
    }

    pub fn health(&self) -> Vec<(String, Health)> {
        self.connectors
            .iter()
            .map(|c| (c.id().to_string(), c.health()))
            .collect()
    }

    pub fn ledger_path(&self) -> PathBuf {
        self.ledger.path().to_path_buf()
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    fn order(&self) -> Vec<String> {
        self.connectors.iter().map(|c| c.id().to_string()).collect()
    }

    fn connector(&self, id: &str) -> Option<&Arc<dyn Connector>> {
        self.connectors.iter().find(|c| c.id() == id)
    }

    /// Appends to the ledger; returns once the record is fsynced.
    /// Concurrent steps share one fsync (the ledger's group commit).
    async fn record(&self, email: &str, event: LedgerEvent) -> Result<(), EngineError> {
        self.ledger.commit(email, vec![event]).await?;
        Ok(())
    }

    /// Appends several records next to each other, with one fsync.
    async fn record_all(&self, email: &str, events: Vec<LedgerEvent>) -> Result<(), EngineError> {
        self.ledger.commit(email, events).await?;
        Ok(())
    }

    fn with_case<T>(&self, email: &str, f: impl FnOnce(&mut Case) -> T) -> Option<T> {
        let mut cases = self.cases.lock().expect("cases lock");
        cases.get_mut(email).map(f)
    }

    fn set_state(&self, email: &str, key: &str, state: GrantState, answer: Option<String>) {
        let now = Utc::now();
        let changed = self.with_case(email, |c| {
            c.entry_mut(key).map(|e| {
                e.requested |= matches!(state, GrantState::Revoking | GrantState::Manual);
                e.state = state.clone();
                e.since = now;
                if answer.is_some() {
                    e.answer = answer.clone();
                }
            })
        });
        if matches!(changed, Some(Some(()))) {
            self.emit(Event::State {
                email: email.to_string(),
                key: key.to_string(),
                state,
                at: now,
            });
        }
    }

    fn state_of(&self, email: &str, key: &str) -> Option<GrantState> {
        self.with_case(email, |c| c.entry(key).map(|e| e.state.clone()))
            .flatten()
    }

    pub fn case(&self, email: &str) -> Option<CaseView> {
        let email = Person::new(email).email;
        let order = self.order();
        self.with_case(&email, |c| c.view(&order))
    }

    fn normalise(email: &str) -> Result<Person, EngineError> {
        let p = Person::new(email);
        let ok = p.email.len() <= 254
            && p.email
                .split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
            && !p.email.chars().any(|c| c.is_control() || c.is_whitespace());
        if ok {
            Ok(p)
        } else {
            Err(EngineError::Invalid(format!(
                "`{}` is not an email address",
                clean(email)
            )))
        }
    }

    fn check_apps(&self, apps: &[String]) -> Result<(), EngineError> {
        for a in apps {
            if self.connector(a).is_none() {
                return Err(EngineError::Invalid(format!(
                    "unknown app `{}` (configured: {})",
                    clean(a),
                    self.order().join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Opens the case in memory, from the ledger's history when it has one.
    async fn open_case(&self, person: &Person) -> Result<(), EngineError> {
        if self
            .cases
            .lock()
            .expect("cases lock")
            .contains_key(&person.email)
        {
            return Ok(());
        }
        let records = Ledger::read_case(self.ledger.path(), &person.email)?;
        let mut case = Case::from_ledger(person.clone(), &records);
        let pending = case.pending_keys();
        // A resumed removal gets a fresh verification deadline in this run.
        let now = Utc::now();
        for e in case
            .grants
            .iter_mut()
            .filter(|e| e.state == GrantState::Removed)
        {
            e.since = now;
        }
        self.cases
            .lock()
            .expect("cases lock")
            .entry(person.email.clone())
            .or_insert(case);
        self.emit(Event::CaseOpened {
            email: person.email.clone(),
        });
        if !pending.is_empty() {
            self.record(&person.email, LedgerEvent::Resumed { pending })
                .await?;
        }
        Ok(())
    }

    /// Resolves the person in every connector concurrently and lists their
    /// grants; records each connector's snapshot as `discovered`.
    pub async fn discover(&self, email: &str) -> Result<CaseView, EngineError> {
        self.discover_apps(email, &[]).await
    }

    /// [`Engine::discover`] limited to some connectors (empty: all).
    pub async fn discover_apps(
        &self,
        email: &str,
        apps: &[String],
    ) -> Result<CaseView, EngineError> {
        let person = Self::normalise(email)?;
        self.check_apps(apps)?;
        self.open_case(&person).await?;
        let selected: Vec<Arc<dyn Connector>> = self
            .connectors
            .iter()
            .filter(|c| apps.is_empty() || apps.iter().any(|a| a == c.id()))
            .cloned()
            .collect();
        let mut round = selected.clone();
        // First every connector with what is known; then, while accounts
        // found elsewhere teach new addresses, the connectors that answered
        // "not found" again with them. Bounded: each round needs a new alias.
        for _ in 0..=self.connectors.len() {
            let person = self.case_person(&person.email);
            let jobs = round
                .iter()
                .map(|c| self.read_connector(&person, c.clone(), true, true));
            for r in join_all(jobs).await {
                r?;
            }
            if !self.learn_aliases(&person.email) {
                break;
            }
            round = selected
                .iter()
                .filter(|c| {
                    self.with_case(&person.email, |case| {
                        case.accounts
                            .get(c.id())
                            .is_some_and(|a| a.status == AccountStatus::NotFound)
                    })
                    .unwrap_or(false)
                })
                .cloned()
                .collect();
            if round.is_empty() {
                break;
            }
        }
        Ok(self.case(&person.email).expect("case opened"))
    }

    /// The case's person, with the aliases learned so far.
    fn case_person(&self, email: &str) -> Person {
        self.with_case(email, |c| c.person.clone())
            .unwrap_or_else(|| Person::new(email))
    }

    /// Adds to the person's aliases every address of the accounts found
    /// (never of ambiguous candidates); true when one is new.
    fn learn_aliases(&self, email: &str) -> bool {
        self.with_case(email, |c| {
            let addresses: Vec<String> = c
                .accounts
                .values()
                .filter_map(|a| a.status.account())
                .flat_map(|a| a.addresses.iter().cloned())
                .collect();
            let mut new = false;
            for a in addresses {
                new |= c.person.add_alias(&a);
            }
            new
        })
        .unwrap_or(false)
    }

    /// Picks one of the accounts that match the leaver in `connector`
    /// (where the lookup was ambiguous), records the choice in the ledger,
    /// and reads that account's grants. Later lookups keep the pick while
    /// the account is still among the candidates. Picking the account
    /// already found is a no-op. Anything else is refused: never guessed.
    pub async fn pick_account(
        &self,
        email: &str,
        connector: &str,
        account_id: &str,
    ) -> Result<CaseView, EngineError> {
        let person = Self::normalise(email)?;
        let email = person.email.as_str();
        self.check_apps(&[connector.to_string()])?;
        self.open_case(&person).await?;
        let status = || {
            self.with_case(email, |c| {
                c.accounts.get(connector).map(|a| a.status.clone())
            })
            .flatten()
        };
        if !matches!(
            status(),
            Some(AccountStatus::Ambiguous { .. } | AccountStatus::Found { .. })
        ) {
            self.discover_apps(email, &[connector.to_string()]).await?;
        }
        match status() {
            Some(AccountStatus::Found { account }) if account.id == account_id => {}
            Some(AccountStatus::Ambiguous { candidates })
                if candidates.iter().any(|a| a.id == account_id) =>
            {
                self.record(
                    email,
                    LedgerEvent::AccountPicked {
                        connector: connector.to_string(),
                        account_id: account_id.to_string(),
                        candidates: candidates.iter().map(|a| a.id.clone()).collect(),
                    },
                )
                .await?;
                self.with_case(email, |c| {
                    c.picks
                        .insert(connector.to_string(), account_id.to_string())
                });
                let c = self.connector(connector).cloned().expect("checked");
                let person = self.case_person(email);
                self.read_connector(&person, c, true, true).await?;
            }
            Some(AccountStatus::Ambiguous { candidates }) => {
                return Err(EngineError::Invalid(format!(
                    "`{}` is not one of the accounts that match {email} in {connector}: {}",
                    clean(account_id),
                    candidates
                        .iter()
                        .map(|a| format!("{} ({})", a.id, a.login))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            Some(AccountStatus::Found { account }) => {
                return Err(EngineError::Invalid(format!(
                    "{connector} has one account for {email} ({} {}); `{}` is not it",
                    account.id,
                    account.login,
                    clean(account_id)
                )));
            }
            other => {
                return Err(EngineError::Invalid(format!(
                    "{connector}: nothing to pick for {email} (lookup: {})",
                    other.as_ref().map_or("pending", AccountStatus::name)
                )));
            }
        }
        Ok(self.case(email).expect("case opened"))
    }

    /// Re-reads one connector (None: all). New grants appear; removing
    /// grants that a fresh complete read no longer lists become verified.
    pub async fn refresh(
        &self,
        email: &str,
        connector: Option<&str>,
    ) -> Result<CaseView, EngineError> {
        let person = Self::normalise(email)?;
        if let Some(c) = connector {
            self.check_apps(&[c.to_string()])?;
        }
        self.open_case(&person).await?;
        // With the aliases the ledger taught (accounts found earlier).
        let person = self.case_person(&person.email);
        let jobs = self
            .connectors
            .iter()
            .filter(|c| connector.is_none_or(|id| id == c.id()))
            .map(|c| self.read_connector(&person, c.clone(), false, false));
        for r in join_all(jobs).await {
            r?;
        }
        Ok(self.case(&person.email).expect("case opened"))
    }

    /// One connector: look up (unless the account is known and `lookup` is
    /// false), list grants, merge, record.
    async fn read_connector(
        &self,
        person: &Person,
        c: Arc<dyn Connector>,
        lookup: bool,
        snapshot: bool,
    ) -> Result<(), EngineError> {
        let email = person.email.as_str();
        let id = c.id().to_string();
        let known = if lookup {
            None
        } else {
            self.with_case(email, |case| case.account(&id).cloned())
                .flatten()
        };
        let account = match known {
            Some(a) => a,
            None => {
                self.emit(Event::Discovering {
                    email: email.into(),
                    connector: id.clone(),
                });
                let found = c.find_person(person).await;
                let (status, result, error) = match found {
                    Err(e) => {
                        let msg = clean(&e.to_string());
                        self.emit(Event::LookupFailed {
                            email: email.into(),
                            connector: id.clone(),
                            error: msg.clone(),
                        });
                        (
                            AccountStatus::LookupFailed { error: msg.clone() },
                            LookupResult::Failed,
                            Some(msg),
                        )
                    }
                    Ok(l) => {
                        let l = match l {
                            Lookup::Found { account } => Lookup::Found {
                                account: clean_account(account),
                            },
                            Lookup::Ambiguous { candidates } => Lookup::Ambiguous {
                                candidates: candidates.into_iter().map(clean_account).collect(),
                            },
                            Lookup::NotFound => Lookup::NotFound,
                        };
                        self.emit(Event::Lookup {
                            email: email.into(),
                            connector: id.clone(),
                            lookup: l.clone(),
                        });
                        match l {
                            Lookup::Found { account } => {
                                (AccountStatus::Found { account }, LookupResult::Found, None)
                            }
                            Lookup::NotFound => {
                                (AccountStatus::NotFound, LookupResult::NotFound, None)
                            }
                            Lookup::Ambiguous { candidates } => {
                                let pick = self
                                    .with_case(email, |case| case.picks.get(&id).cloned())
                                    .flatten();
                                match candidates
                                    .iter()
                                    .find(|a| pick.as_deref() == Some(a.id.as_str()))
                                {
                                    // The operator's recorded pick, still a
                                    // candidate.
                                    Some(a) => {
                                        let mut account = a.clone();
                                        account.facts.push((
                                            "picked".into(),
                                            format!(
                                                "by the operator, one of {} matching accounts",
                                                candidates.len()
                                            ),
                                        ));
                                        (
                                            AccountStatus::Found { account },
                                            LookupResult::Found,
                                            None,
                                        )
                                    }
                                    None => (
                                        AccountStatus::Ambiguous { candidates },
                                        LookupResult::Ambiguous,
                                        None,
                                    ),
                                }
                            }
                        }
                    }
                };
                let account = status.account().cloned();
                self.with_case(email, |case| {
                    case.set_status(&id, c.display_name(), status.clone())
                });
                let Some(account) = account else {
                    if snapshot {
                        let candidates = match &status {
                            AccountStatus::Ambiguous { candidates } => candidates.clone(),
                            _ => Vec::new(),
                        };
                        self.record(
                            email,
                            LedgerEvent::Discovered {
                                connector: id.clone(),
                                result,
                                account: None,
                                candidates,
                                error,
                                grants: Vec::new(),
                                failed_kinds: Vec::new(),
                            },
                        )
                        .await?;
                    }
                    self.emit_health(&c);
                    return Ok(());
                };
                account
            }
        };
        let started = Utc::now();
        let inv = c.list_grants(&account).await;
        let now = Utc::now();
        let failed: Vec<(GrantKind, String)> = inv
            .failed
            .iter()
            .map(|(k, e)| (*k, clean(&e.to_string())))
            .collect();
        // Entries this read closes are kept as they were, so that they can
        // be put back if the ledger refuses the record: nothing is shown
        // closed that the evidence does not hold.
        let (changes, before) = self
            .with_case(email, |case| {
                let before: Vec<Entry> = case
                    .grants
                    .iter()
                    .filter(|e| e.grant.connector == id)
                    .cloned()
                    .collect();
                let changes = case.apply_read(&id, inv.grants.clone(), &failed, started, now);
                let closed: HashSet<String> = changes
                    .iter()
                    .filter_map(|ch| match ch {
                        Change::Verified(key) => Some(key.clone()),
                        Change::Vanished(g) => Some(g.key()),
                        Change::Reappeared(_) => None,
                    })
                    .collect();
                let before = before
                    .into_iter()
                    .filter(|e| closed.contains(&e.key()))
                    .collect::<Vec<_>>();
                (changes, before)
            })
            .unwrap_or_default();
        let grants: Vec<Grant> = self
            .with_case(email, |case| {
                case.grants
                    .iter()
                    .filter(|e| e.grant.connector == id)
                    .filter(|e| inv.grants.iter().any(|g| g.id == e.grant.id))
                    .map(|e| e.grant.clone())
                    .collect()
            })
            .unwrap_or_default();
        self.emit(Event::Inventory {
            email: email.into(),
            connector: id.clone(),
            grants: grants.clone(),
            failed: failed.clone(),
            at: now,
        });
        if snapshot {
            self.record(
                email,
                LedgerEvent::Discovered {
                    connector: id.clone(),
                    result: LookupResult::Found,
                    account: Some(account.clone()),
                    candidates: Vec::new(),
                    error: None,
                    grants,
                    failed_kinds: failed
                        .iter()
                        .map(|(kind, error)| KindFailure {
                            kind: *kind,
                            error: error.clone(),
                        })
                        .collect(),
                },
            )
            .await?;
        }
        if let Err(e) = self
            .record_changes(email, changes, "absent from a fresh complete read")
            .await
        {
            self.with_case(email, |case| {
                for old in before {
                    if let Some(e) = case.entry_mut(&old.key()) {
                        *e = old;
                    }
                }
            });
            return Err(e);
        }
        self.emit_health(&c);
        Ok(())
    }

    async fn record_changes(
        &self,
        email: &str,
        changes: Vec<Change>,
        how: &str,
    ) -> Result<(), EngineError> {
        let (keys, events): (Vec<String>, Vec<LedgerEvent>) = changes
            .into_iter()
            .map(|ch| match ch {
                Change::Verified(key) => (
                    key.clone(),
                    LedgerEvent::Verified {
                        key,
                        how: how.to_string(),
                    },
                ),
                Change::Reappeared(key) => (key.clone(), LedgerEvent::Reappeared { key }),
                Change::Vanished(grant) => (
                    grant.key(),
                    LedgerEvent::Vanished {
                        key: grant.key(),
                        read_at: self
                            .with_case(email, |c| {
                                c.accounts.get(&grant.connector).and_then(|a| a.read_at)
                            })
                            .flatten()
                            .unwrap_or_else(Utc::now),
                        grant,
                        how: format!("{how}; not removed by this tool"),
                    },
                ),
            })
            .unzip();
        self.record_all(email, events).await?;
        for key in keys {
            if let Some(state) = self.state_of(email, &key) {
                self.emit(Event::State {
                    email: email.into(),
                    key,
                    state,
                    at: Utc::now(),
                });
            }
        }
        Ok(())
    }

    fn emit_health(&self, c: &Arc<dyn Connector>) {
        self.emit(Event::Health {
            connector: c.id().to_string(),
            health: c.health(),
        });
    }

    /// The phased plan for the selected grants that are not yet closed
    /// (live, failed, unconfirmed, manual, or a removal to re-request).
    pub fn plan(&self, email: &str, selection: &Selection) -> Result<Plan, EngineError> {
        let person = Self::normalise(email)?;
        self.check_apps(&selection.apps)?;
        let grants = self
            .with_case(&person.email, |c| {
                c.grants
                    .iter()
                    .filter(|e| selection.matches(&e.grant) && !e.state.is_closed())
                    .filter(|e| c.account(&e.grant.connector).is_some())
                    .map(|e| e.grant.clone())
                    .collect::<Vec<_>>()
            })
            .ok_or_else(|| EngineError::NoCase(person.email.clone()))?;
        Ok(Plan::build(&grants))
    }

    /// Plans, executes phase by phase (a phase starts once every request of
    /// the one before is answered), and verifies until every requested
    /// grant is verified, acknowledged, failed or unconfirmed. Verification
    /// starts as soon as the first removal is accepted, alongside the later
    /// phases. Discovers the case first when it is not open.
    pub async fn revoke(&self, email: &str, selection: &Selection) -> Result<Summary, EngineError> {
        let person = Self::normalise(email)?;
        let email = person.email.as_str();
        if self.case(email).is_none() {
            self.discover(email).await?;
        }
        let plan = self.plan(email, selection)?;
        let steps: Vec<PlannedStep> = plan
            .phases
            .iter()
            .flat_map(|p| {
                p.steps.iter().map(|g| PlannedStep {
                    phase: p.phase.number(),
                    key: g.key(),
                    kind: g.kind,
                    label: g.label.clone(),
                    manual: g.is_manual(),
                })
            })
            .collect();
        self.record(email, LedgerEvent::Planned { steps }).await?;
        self.emit(Event::Planned {
            email: email.into(),
            plan: plan.clone(),
        });

        let exec_done = AtomicBool::new(false);
        let wake = Notify::new();
        let scope: HashSet<String> = plan
            .phases
            .iter()
            .flat_map(|p| p.steps.iter().map(Grant::key))
            .collect();
        let exec = async {
            let r = self.execute(email, &plan, &wake).await;
            exec_done.store(true, Ordering::SeqCst);
            wake.notify_one();
            r
        };
        let (exec_result, verify_result) =
            tokio::join!(exec, self.verify_loop(email, &scope, &exec_done, &wake));
        exec_result?;
        verify_result?;
        let summary = self
            .with_case(email, |c| c.summary(selection))
            .unwrap_or_default();
        self.record(
            email,
            LedgerEvent::Finished {
                summary: summary.clone(),
            },
        )
        .await?;
        self.emit(Event::Finished {
            email: email.into(),
            summary: summary.clone(),
        });
        Ok(summary)
    }

    /// Re-reads every connector and waits until every removal under way is
    /// verified or past the deadline. Sends no revoke request.
    pub async fn verify(&self, email: &str, selection: &Selection) -> Result<Summary, EngineError> {
        let person = Self::normalise(email)?;
        let email = person.email.as_str();
        let started = Utc::now();
        self.discover_apps(email, &selection.apps).await?;
        // Requested before an interruption, never answered, and still
        // listed by the read just made: live, to be requested again.
        let still = self
            .with_case(email, |c| c.revoking_still_listed(started))
            .unwrap_or_default();
        for key in still {
            self.record(
                email,
                LedgerEvent::StillListed {
                    key: key.clone(),
                    note: STILL_LISTED_NOTE.into(),
                },
            )
            .await?;
            self.set_state(
                email,
                &key,
                GrantState::Live,
                Some(STILL_LISTED_NOTE.into()),
            );
        }
        let scope: HashSet<String> = self
            .with_case(email, |c| {
                c.grants
                    .iter()
                    .filter(|e| selection.matches(&e.grant))
                    .map(|e| e.key())
                    .collect()
            })
            .unwrap_or_default();
        let done = AtomicBool::new(true);
        self.verify_loop(email, &scope, &done, &Notify::new())
            .await?;
        let summary = self
            .with_case(email, |c| c.summary(selection))
            .unwrap_or_default();
        self.emit(Event::Finished {
            email: email.into(),
            summary: summary.clone(),
        });
        Ok(summary)
    }

    async fn execute(&self, email: &str, plan: &Plan, wake: &Notify) -> Result<(), EngineError> {
        for phase in &plan.phases {
            let total = phase.steps.len();
            let done = std::sync::atomic::AtomicUsize::new(0);
            // One flag per step, set once its request is answered. A step
            // waits only for the steps it names in `after` that come before
            // it in the phase (the plan puts them first; a cycle is not
            // waited on): everything else runs concurrently.
            let answered: Vec<tokio::sync::watch::Sender<bool>> = phase
                .steps
                .iter()
                .map(|_| tokio::sync::watch::channel(false).0)
                .collect();
            let jobs = phase.steps.iter().enumerate().map(|(i, g)| {
                let waits: Vec<tokio::sync::watch::Receiver<bool>> = phase.steps[..i]
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.connector == g.connector && g.after.contains(&p.id))
                    .map(|(j, _)| answered[j].subscribe())
                    .collect();
                let answered = &answered[i];
                let done = &done;
                async move {
                    for mut w in waits {
                        let _ = w.wait_for(|d| *d).await;
                    }
                    let r = self.execute_one(email, phase.phase, g, wake).await;
                    answered.send_replace(true);
                    let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                    self.emit(Event::PhaseProgress {
                        email: email.into(),
                        phase: phase.phase,
                        done: n,
                        total,
                    });
                    r
                }
            });
            // Every request of the phase is answered before the next starts.
            for r in join_all(jobs).await {
                r?;
            }
        }
        Ok(())
    }

    async fn execute_one(
        &self,
        email: &str,
        phase: Phase,
        g: &Grant,
        wake: &Notify,
    ) -> Result<(), EngineError> {
        let key = g.key();
        if let crate::model::Revocation::Manual { instructions } = &g.revocation {
            // Recorded once per case: a step listed as manual from the
            // start is `requested` once the ledger says it is required.
            let required = self
                .with_case(email, |c| c.entry(&key).map(|e| e.requested))
                .flatten()
                .unwrap_or(false);
            if !required {
                self.record(
                    email,
                    LedgerEvent::ManualRequired {
                        key: key.clone(),
                        grant: g.clone(),
                        instructions: instructions.clone(),
                    },
                )
                .await?;
                self.set_state(email, &key, GrantState::Manual, None);
            }
            return Ok(());
        }
        let (Some(c), Some(account)) = (
            self.connector(&g.connector).cloned(),
            self.with_case(email, |c| c.account(&g.connector).cloned())
                .flatten(),
        ) else {
            self.set_state(
                email,
                &key,
                GrantState::Failed {
                    reason: "no account to act on in this app".into(),
                },
                None,
            );
            return Ok(());
        };
        // Evidence first: the request is recorded before it is sent.
        self.record(
            email,
            LedgerEvent::RevokeRequested {
                key: key.clone(),
                phase: phase.number(),
                grant: g.clone(),
            },
        )
        .await?;
        self.set_state(email, &key, GrantState::Revoking, None);
        let result = c.revoke(&account, g).await;
        let (outcome, error, manual) = match &result {
            Ok(o) => (Some(*o), None, None),
            Err(ConnectorError::Refused { manual, .. }) => (
                None,
                Some(clean(&result.as_ref().unwrap_err().to_string())),
                Some(clean(manual)),
            ),
            Err(e) => (None, Some(clean(&e.to_string())), None),
        };
        self.record(
            email,
            LedgerEvent::ApiAnswer {
                key: key.clone(),
                outcome,
                error: error.clone(),
                manual: manual.clone(),
            },
        )
        .await?;
        let (state, answer) =
            answer_state(outcome, error.as_deref(), manual.as_deref(), Utc::now());
        self.emit(Event::ApiAnswer {
            email: email.into(),
            key: key.clone(),
            answer: answer.clone(),
        });
        // A concurrent refresh may already have verified it.
        if self.state_of(email, &key) == Some(GrantState::Revoking) {
            self.set_state(email, &key, state, Some(answer));
        }
        if matches!(
            outcome,
            Some(RevokeOutcome::Accepted | RevokeOutcome::AlreadyGone)
        ) {
            wake.notify_one();
        }
        self.emit_health(&c);
        Ok(())
    }

    /// Re-reads, batched per connector, every grant in `scope` whose removal
    /// was accepted, with a delay that doubles after a round that confirms
    /// nothing, halves after one that confirms some, and starts over when
    /// new removals arrive, until each is absent from a fresh successful read (`verified`) or its
    /// deadline passes (`unconfirmed`, escalated in the ledger). Ends when
    /// nothing is pending and `exec_done` is set.
    async fn verify_loop(
        &self,
        email: &str,
        scope: &HashSet<String>,
        exec_done: &AtomicBool,
        wake: &Notify,
    ) -> Result<(), EngineError> {
        let mut delay = self.opts.verify_initial_delay;
        let mut seen: HashSet<String> = HashSet::new();
        let mut last_error: HashMap<String, String> = HashMap::new();
        loop {
            let pending = self.pending(email, scope);
            if pending.is_empty() {
                if exec_done.load(Ordering::SeqCst) {
                    return Ok(());
                }
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                continue;
            }
            let keys: HashSet<String> = pending
                .values()
                .flat_map(|(_, gs)| gs.iter().map(Grant::key))
                .collect();
            if !keys.is_subset(&seen) {
                delay = self.opts.verify_initial_delay;
                seen.extend(keys);
            }
            tokio::time::sleep(delay).await;
            let mut progressed = false;

            let rounds = pending
                .into_iter()
                .map(|(cid, (account, grants))| async move {
                    let c = self.connector(&cid).cloned();
                    let results = match &c {
                        Some(c) => c.verify(&account, &grants).await,
                        None => Vec::new(),
                    };
                    (cid, c, grants, results)
                });
            for (cid, c, grants, results) in join_all(rounds).await {
                let asked: HashSet<&str> = grants.iter().map(|g| g.id.as_str()).collect();
                let mut verified = Vec::new();
                for (id, r) in results {
                    let key = format!("{cid}/{id}");
                    if !asked.contains(id.as_str()) {
                        continue;
                    }
                    match r {
                        Ok(Presence::Absent) => verified.push(key),
                        Ok(Presence::Present) => {
                            last_error.remove(&key);
                        }
                        Err(e) => {
                            last_error.insert(key, clean(&e.to_string()));
                        }
                    }
                }
                // One fsync for the whole round; each grant turns verified
                // only once its record is durable.
                verified.retain(|key| self.state_of(email, key) == Some(GrantState::Removed));
                self.record_all(
                    email,
                    verified
                        .iter()
                        .map(|key| LedgerEvent::Verified {
                            key: key.clone(),
                            how: "absent from a fresh read".into(),
                        })
                        .collect(),
                )
                .await?;
                let now = Utc::now();
                progressed |= !verified.is_empty();
                for key in verified {
                    self.set_state(email, &key, GrantState::Verified { at: now }, None);
                }
                if let Some(c) = c {
                    self.emit_health(&c);
                }
            }
            // Removals settle in a wave: while reads confirm some, the rest
            // are close behind, so the wait shortens; a round that confirms
            // nothing doubles it.
            delay = if progressed {
                (delay / 2).max(self.opts.verify_initial_delay)
            } else {
                (delay * 2).min(VERIFY_MAX_DELAY)
            };
            self.escalate_overdue(email, scope, &last_error).await?;
        }
    }

    /// Removals under way in `scope`, grouped by connector, with the account.
    fn pending(
        &self,
        email: &str,
        scope: &HashSet<String>,
    ) -> BTreeMap<String, (crate::model::Account, Vec<Grant>)> {
        self.with_case(email, |c| {
            let mut out: BTreeMap<String, (crate::model::Account, Vec<Grant>)> = BTreeMap::new();
            for e in &c.grants {
                if e.state != GrantState::Removed || !scope.contains(&e.key()) {
                    continue;
                }
                let Some(account) = c.account(&e.grant.connector) else {
                    continue;
                };
                out.entry(e.grant.connector.clone())
                    .or_insert_with(|| (account.clone(), Vec::new()))
                    .1
                    .push(e.grant.clone());
            }
            out
        })
        .unwrap_or_default()
    }

    async fn escalate_overdue(
        &self,
        email: &str,
        scope: &HashSet<String>,
        last_error: &HashMap<String, String>,
    ) -> Result<(), EngineError> {
        let deadline =
            chrono::Duration::from_std(self.opts.verify_deadline).unwrap_or(chrono::Duration::MAX);
        let now = Utc::now();
        let overdue: Vec<String> = self
            .with_case(email, |c| {
                c.grants
                    .iter()
                    .filter(|e| e.state == GrantState::Removed && scope.contains(&e.key()))
                    .filter(|e| now - e.since >= deadline)
                    .map(|e| e.key())
                    .collect()
            })
            .unwrap_or_default();
        let reasons: Vec<(String, String)> = overdue
            .into_iter()
            .map(|key| {
                let reason = match last_error.get(&key) {
                    Some(e) => format!(
                        "not confirmed within {}s; last read failed: {e}",
                        self.opts.verify_deadline.as_secs()
                    ),
                    None => format!(
                        "still listed {}s after the app accepted the removal",
                        self.opts.verify_deadline.as_secs()
                    ),
                };
                (key, reason)
            })
            .collect();
        self.record_all(
            email,
            reasons
                .iter()
                .map(|(key, reason)| LedgerEvent::Escalated {
                    key: key.clone(),
                    reason: reason.clone(),
                })
                .collect(),
        )
        .await?;
        for (key, reason) in reasons {
            self.set_state(email, &key, GrantState::Unconfirmed { reason }, None);
        }
        Ok(())
    }

    /// Ticks off a manual step, or accepts a failed or unconfirmed grant
    /// after manual work, with a note: `acknowledged`.
    pub async fn manual_done(&self, email: &str, key: &str, note: &str) -> Result<(), EngineError> {
        let person = Self::normalise(email)?;
        let email = person.email.as_str();
        let state = self
            .with_case(email, |c| c.entry(key).map(|e| e.state.clone()))
            .ok_or_else(|| EngineError::NoCase(email.to_string()))?
            .ok_or_else(|| {
                EngineError::Invalid(format!("no grant `{}` in this case", clean(key)))
            })?;
        let is_manual = self
            .with_case(email, |c| c.entry(key).map(|e| e.grant.is_manual()))
            .flatten()
            .unwrap_or(false);
        if !(state.needs_attention() || (is_manual && state == GrantState::Live)) {
            return Err(EngineError::Invalid(format!(
                "`{}` is {}: only manual, failed or unconfirmed grants can be ticked off",
                clean(key),
                state.name()
            )));
        }
        let note = clean(note);
        self.record(
            email,
            LedgerEvent::ManualDone {
                key: key.to_string(),
                note: note.clone(),
                previous_state: state.to_string(),
            },
        )
        .await?;
        self.set_state(
            email,
            key,
            GrantState::Acknowledged {
                at: Utc::now(),
                note: Some(note),
            },
            None,
        );
        Ok(())
    }
}
