//! Discovery: the leaver looked up in every app (with the aliases other apps
//! teach), each account's grants listed, merged into the case and recorded.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;
use futures::future::join_all;

use super::Event;
use super::case::{AccountStatus, CaseView, Change, Entry, clean_account};
use super::core::{Engine, EngineError};
use crate::connector::{Connector, Lookup};
use crate::evidence::{KindFailure, LedgerEvent, LookupResult};
use crate::model::{Account, Grant, GrantKind, GrantState, Person};
use crate::sanitize::clean;

impl Engine {
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
        self.as_leaver(email, self.discover_apps_queued(email, apps))
            .await
    }

    async fn discover_apps_queued(
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

    /// Names who receives the leaver's data in a hand-over (Google Drive and
    /// Calendar): the manager from the roster, or a person the operator
    /// names. It is kept with the case (and, through the accounts found,
    /// in the ledger) and takes effect with the next lookup
    /// ([`Engine::discover`]). Hand-over steps nobody acted on yet are
    /// dropped, so that the next read lists them for the new person.
    pub async fn set_hand_over(&self, email: &str, to: &str) -> Result<(), EngineError> {
        let person = Self::normalise(email)?;
        let to = Self::normalise(to)?.email;
        if person.addresses().any(|a| a == to) {
            return Err(EngineError::Invalid(format!(
                "{} cannot hand their data over to themselves",
                person.email
            )));
        }
        self.open_case(&person).await?;
        self.with_case(&person.email, |c| {
            if c.person.hand_over_to.as_deref() != Some(to.as_str()) {
                c.person.hand_over_to = Some(to.clone());
                c.grants.retain(|e| {
                    e.grant.kind != GrantKind::Delegation
                        || e.requested
                        || !matches!(e.state, GrantState::Manual | GrantState::Live)
                });
            }
        });
        Ok(())
    }

    /// Whom the leaver's data is handed over to, when known.
    pub fn hand_over_of(&self, email: &str) -> Option<String> {
        let email = Person::new(email).email;
        self.with_case(&email, |c| c.person.hand_over_to.clone())
            .flatten()
    }

    /// The case's person, with the aliases learned so far.
    pub(super) fn case_person(&self, email: &str) -> Person {
        self.with_case(email, |c| c.person.clone())
            .unwrap_or_else(|| Person::new(email))
    }

    /// Adds to the person's aliases every address of the accounts found
    /// (never of ambiguous candidates); true when one is new.
    pub(super) fn learn_aliases(&self, email: &str) -> bool {
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
        self.as_leaver(email, self.refresh_queued(email, connector))
            .await
    }

    async fn refresh_queued(
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
    pub(super) async fn read_connector(
        &self,
        person: &Person,
        c: Arc<dyn Connector>,
        lookup: bool,
        snapshot: bool,
    ) -> Result<(), EngineError> {
        let email = person.email.as_str();
        let known = if lookup {
            None
        } else {
            self.with_case(email, |case| case.account(c.id()).cloned())
                .flatten()
        };
        let account = match known {
            Some(a) => a,
            None => match self.look_up(person, &c, snapshot).await? {
                Some(a) => a,
                None => {
                    self.emit_health(&c);
                    return Ok(());
                }
            },
        };
        let failed = self.read_grants(email, &c, &account, snapshot).await?;
        self.escalate_resumed(email, c.id(), &failed).await?;
        self.emit_health(&c);
        Ok(())
    }

    /// Looks the person up in one connector and records what it said; the
    /// account when exactly one (or the operator's pick) matches.
    async fn look_up(
        &self,
        person: &Person,
        c: &Arc<dyn Connector>,
        snapshot: bool,
    ) -> Result<Option<Account>, EngineError> {
        let email = person.email.as_str();
        let id = c.id().to_string();
        self.emit(Event::Discovering {
            email: email.into(),
            connector: id.clone(),
        });
        let (status, result, error) = match self.lookup_in(person, c).await {
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
                let l = clean_lookup(l);
                self.emit(Event::Lookup {
                    email: email.into(),
                    connector: id.clone(),
                    lookup: l.clone(),
                });
                match l {
                    Lookup::Found { account } => {
                        (AccountStatus::Found { account }, LookupResult::Found, None)
                    }
                    Lookup::NotFound => (AccountStatus::NotFound, LookupResult::NotFound, None),
                    Lookup::Ambiguous { candidates } => {
                        let pick = self
                            .with_case(email, |case| case.picks.get(&id).cloned())
                            .flatten();
                        match picked(&candidates, pick.as_deref()) {
                            Some(account) => {
                                (AccountStatus::Found { account }, LookupResult::Found, None)
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
        if account.is_none() && snapshot {
            let candidates = match &status {
                AccountStatus::Ambiguous { candidates } => candidates.clone(),
                _ => Vec::new(),
            };
            self.record(
                email,
                LedgerEvent::Discovered {
                    connector: id,
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
        Ok(account)
    }

    /// Lists one account's grants, merges them into the case (closing
    /// removals a complete read no longer lists) and records the snapshot
    /// and the changes; returns the kinds whose listing failed.
    async fn read_grants(
        &self,
        email: &str,
        c: &Arc<dyn Connector>,
        account: &Account,
        snapshot: bool,
    ) -> Result<Vec<(GrantKind, String)>, EngineError> {
        let id = c.id().to_string();
        let started = Utc::now();
        let inv = c.list_grants(account).await;
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
        Ok(failed)
    }

    /// Removals resumed from the ledger that this fresh read still lists
    /// past the verify deadline are escalated as `unconfirmed`, as the
    /// verify loop does for removals of this run: nothing stays "removing"
    /// forever after a crash.
    async fn escalate_resumed(
        &self,
        email: &str,
        connector: &str,
        failed: &[(GrantKind, String)],
    ) -> Result<(), EngineError> {
        let deadline =
            chrono::Duration::from_std(self.opts.verify_deadline).unwrap_or(chrono::Duration::MAX);
        let overdue = self
            .with_case(email, |c| {
                c.overdue_resumed(connector, failed, deadline, Utc::now())
            })
            .unwrap_or_default();
        if overdue.is_empty() {
            return Ok(());
        }
        self.record_all(
            email,
            overdue
                .iter()
                .map(|(key, reason)| LedgerEvent::Escalated {
                    key: key.clone(),
                    reason: reason.clone(),
                })
                .collect(),
        )
        .await?;
        for (key, reason) in overdue {
            self.set_state(email, &key, GrantState::Unconfirmed { reason }, None);
        }
        Ok(())
    }

    pub(super) async fn record_changes(
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

    pub(super) fn emit_health(&self, c: &Arc<dyn Connector>) {
        self.emit(Event::Health {
            connector: c.id().to_string(),
            health: c.health(),
        });
    }
}

/// A lookup with every text from the API sanitised.
fn clean_lookup(l: Lookup) -> Lookup {
    match l {
        Lookup::Found { account } => Lookup::Found {
            account: clean_account(account),
        },
        Lookup::Ambiguous { candidates } => Lookup::Ambiguous {
            candidates: candidates.into_iter().map(clean_account).collect(),
        },
        Lookup::NotFound => Lookup::NotFound,
    }
}

/// The operator's recorded pick among ambiguous candidates, while it is
/// still one of them.
fn picked(candidates: &[Account], pick: Option<&str>) -> Option<Account> {
    let a = candidates.iter().find(|a| pick == Some(a.id.as_str()))?;
    let mut account = a.clone();
    account.facts.push((
        "picked".into(),
        format!(
            "by the operator, one of {} matching accounts",
            candidates.len()
        ),
    ));
    Some(account)
}
