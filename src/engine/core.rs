//! The engine: its options, its connectors and cases, and the helpers every
//! stage shares (ledger records, state changes, events). The stages are
//! their own files: `discovery`, `plan`, `execution`, `verification`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc::UnboundedSender;

use super::Event;
use super::case::{Case, CaseView};
use crate::connector::{BuildContext, Connector, ConnectorError, Health};
use crate::evidence::{Ledger, LedgerError, LedgerEvent};
use crate::model::{Grant, GrantKind, GrantState, Person};
use crate::sanitize::clean;

/// Longest wait between two verification reads.
pub const VERIFY_MAX_DELAY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Recorded in the ledger.
    pub operator: String,
    /// Past it, a removal not confirmed by a read is `unconfirmed`.
    pub verify_deadline: Duration,
    /// First wait before a read that confirms a removal (then as long
    /// again as it has waited; at most 5 s apart).
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
        .map(|r| crate::apps::build(r, &ctx))
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
    pub(super) connectors: Vec<Arc<dyn Connector>>,
    pub(super) ledger: Ledger,
    pub(super) opts: EngineOptions,
    pub(super) events: UnboundedSender<Event>,
    pub(super) cases: Mutex<HashMap<String, Case>>,
    /// Each leaver's place in the connectors' queues.
    pub(super) urgency: Mutex<HashMap<String, crate::connector::http::Urgency>>,
    /// Bulk lookups started for many leavers.
    pub(super) bulk: super::bulk::BulkReads,
    /// What each app's reads have shown so far of its delay between
    /// accepting a removal and leaving it out of its reads.
    pub(super) lags: Mutex<HashMap<String, super::verification::Delays>>,
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
            urgency: Mutex::new(HashMap::new()),
            bulk: Default::default(),
            lags: Mutex::default(),
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

    /// The engine's connectors (shared clients), e.g. for a bulk listing.
    pub fn connector_handles(&self) -> Vec<Arc<dyn Connector>> {
        self.connectors.clone()
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

    pub(super) fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    pub(super) fn order(&self) -> Vec<String> {
        self.connectors.iter().map(|c| c.id().to_string()).collect()
    }

    pub(super) fn connector(&self, id: &str) -> Option<&Arc<dyn Connector>> {
        self.connectors.iter().find(|c| c.id() == id)
    }

    /// Appends to the ledger; returns once the record is fsynced.
    /// Concurrent steps share one fsync (the ledger's group commit).
    pub(super) async fn record(&self, email: &str, event: LedgerEvent) -> Result<(), EngineError> {
        self.ledger.commit(email, vec![event]).await?;
        Ok(())
    }

    /// Appends several records next to each other, with one fsync.
    pub(super) async fn record_all(
        &self,
        email: &str,
        events: Vec<LedgerEvent>,
    ) -> Result<(), EngineError> {
        self.ledger.commit(email, events).await?;
        Ok(())
    }

    pub(super) fn with_case<T>(&self, email: &str, f: impl FnOnce(&mut Case) -> T) -> Option<T> {
        let mut cases = self.cases.lock().expect("cases lock");
        cases.get_mut(email).map(f)
    }

    pub(super) fn set_state(
        &self,
        email: &str,
        key: &str,
        state: GrantState,
        answer: Option<String>,
    ) {
        self.set_state_since(email, key, state, answer, Utc::now());
    }

    /// [`Self::set_state`] for a state entered at `now` (an app's answer,
    /// from the moment it came rather than the moment its record was
    /// durable: a removal's age is what its confirmation is scheduled by).
    pub(super) fn set_state_since(
        &self,
        email: &str,
        key: &str,
        state: GrantState,
        answer: Option<String>,
        now: chrono::DateTime<Utc>,
    ) {
        let changed = self.with_case(email, |c| {
            c.entry_mut(key).map(|e| {
                e.requested |= matches!(state, GrantState::Revoking | GrantState::Manual);
                e.resumed = false;
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

    pub(super) fn state_of(&self, email: &str, key: &str) -> Option<GrantState> {
        self.with_case(email, |c| c.entry(key).map(|e| e.state.clone()))
            .flatten()
    }

    pub fn case(&self, email: &str) -> Option<CaseView> {
        let email = Person::new(email).email;
        let order = self.order();
        self.with_case(&email, |c| c.view(&order))
    }

    pub(super) fn normalise(email: &str) -> Result<Person, EngineError> {
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

    pub(super) fn check_apps(&self, apps: &[String]) -> Result<(), EngineError> {
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
    pub(super) async fn open_case(&self, person: &Person) -> Result<(), EngineError> {
        if self
            .cases
            .lock()
            .expect("cases lock")
            .contains_key(&person.email)
        {
            return Ok(());
        }
        let records = self.ledger.case_records(&person.email)?;
        let mut case = Case::from_ledger(person.clone(), &records);
        // Whom a hand-over goes to, named once, is kept with the accounts
        // found (a driver notes it in the account's facts).
        if case.person.hand_over_to.is_none() {
            case.person.hand_over_to = records.iter().rev().find_map(|r| match &r.event {
                LedgerEvent::Discovered {
                    account: Some(a), ..
                } if r.case == person.email => a
                    .facts
                    .iter()
                    .find(|(k, _)| k == crate::connector::HAND_OVER_FACT)
                    .map(|(_, v)| v.clone()),
                _ => None,
            });
        }
        let pending = case.pending_keys();
        // A resumed removal (accepted, or requested with no answer
        // recorded) gets a fresh verification deadline in this run; reads
        // decide, and past the deadline it is escalated.
        let now = Utc::now();
        for e in case
            .grants
            .iter_mut()
            .filter(|e| matches!(e.state, GrantState::Removed | GrantState::Revoking))
        {
            e.since = now;
            e.resumed = true;
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
}
