//! One leaver's case: accounts per connector, grants with their states, and
//! how a fresh read or the ledger's history changes them. Pure: no I/O.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Selection, Summary};
use crate::connector::RevokeOutcome;
use crate::evidence::{KindFailure, LedgerEvent, Record};
use crate::model::{Account, Grant, GrantKind, GrantState, Person};
use crate::sanitize::clean;

/// What the lookup of the leaver in one connector found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AccountStatus {
    /// Not looked up yet.
    Pending,
    Found {
        account: Account,
    },
    /// The app answered, and has no such account.
    NotFound,
    /// Several accounts match; the operator must pick (never guessed).
    Ambiguous {
        candidates: Vec<Account>,
    },
    /// The lookup failed: nothing is known (never shown as "no account").
    LookupFailed {
        error: String,
    },
}

impl AccountStatus {
    pub fn name(&self) -> &'static str {
        match self {
            AccountStatus::Pending => "pending",
            AccountStatus::Found { .. } => "found",
            AccountStatus::NotFound => "not_found",
            AccountStatus::Ambiguous { .. } => "ambiguous",
            AccountStatus::LookupFailed { .. } => "lookup_failed",
        }
    }

    pub fn account(&self) -> Option<&Account> {
        match self {
            AccountStatus::Found { account } => Some(account),
            _ => None,
        }
    }
}

/// One connector's part of a case.
#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    pub connector: String,
    pub display_name: String,
    #[serde(flatten)]
    pub status: AccountStatus,
    /// Kinds whose listing failed in the last read.
    pub failed_kinds: Vec<KindFailure>,
    /// When the last complete read of this connector finished.
    pub read_at: Option<DateTime<Utc>>,
}

/// One grant and where it stands.
#[derive(Debug, Clone, Serialize)]
pub struct GrantView {
    /// `connector/id`.
    pub key: String,
    pub grant: Grant,
    pub state: GrantState,
    /// When the grant entered its current state.
    pub since_state: DateTime<Utc>,
    /// The last thing the API said about it (revoke answer or read error).
    pub last_answer: Option<String>,
    /// Verified gone, but not removed by this tool (someone else did, or it
    /// expired): see the ledger's `vanished` record.
    #[serde(default)]
    pub vanished: bool,
}

/// A snapshot of one leaver's case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseView {
    pub email: String,
    pub accounts: Vec<AccountView>,
    pub grants: Vec<GrantView>,
    pub summary: Summary,
}

impl CaseView {
    pub fn grant(&self, key: &str) -> Option<&GrantView> {
        self.grants.iter().find(|g| g.key == key)
    }
}

/// What a fresh read changed (for the ledger and the event stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// A removing, failed or unconfirmed grant is no longer listed.
    Verified(String),
    /// A grant verified gone (or vanished) is listed again.
    Reappeared(String),
    /// A live or manual grant nobody here asked to remove is no longer
    /// listed: gone without us. Its state is `verified` (a fresh read
    /// confirms the absence); the ledger and the view say who removed it.
    Vanished(Grant),
}

/// The answer shown for a grant a fresh read no longer lists although this
/// tool did not remove it.
pub const VANISHED_NOTE: &str = "gone without offboard: a fresh read no longer lists it (someone else removed it, or it expired)";

/// The answer shown for a removal requested before an interruption that a
/// fresh read still lists.
pub const STILL_LISTED_NOTE: &str = "requested before an interruption, no answer recorded; a fresh read still lists it: run `offboard revoke` again";

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub grant: Grant,
    pub state: GrantState,
    pub since: DateTime<Utc>,
    pub answer: Option<String>,
    /// Its removal was requested in this case (a later absence is ours to
    /// verify, never "vanished").
    pub requested: bool,
    /// Verified gone, but not removed by this tool.
    pub vanished: bool,
    /// Its removal was under way when this process opened the case from
    /// the ledger (requested with no answer recorded, or accepted and not
    /// yet confirmed): a fresh read decides, and past the verify deadline
    /// it is escalated like any other removal.
    pub resumed: bool,
}

impl Entry {
    pub fn key(&self) -> String {
        self.grant.key()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub person: Person,
    pub accounts: BTreeMap<String, AccountView>,
    pub grants: Vec<Entry>,
    /// Accounts the operator picked where several match: connector → id.
    pub picks: BTreeMap<String, String>,
}

/// Whether `key` is `g.key()` (without building it).
fn is_key(g: &Grant, key: &str) -> bool {
    key.len() == g.connector.len() + 1 + g.id.len()
        && key.starts_with(g.connector.as_str())
        && key.as_bytes()[g.connector.len()] == b'/'
        && key.ends_with(g.id.as_str())
}

/// Display text from an API, made safe. Ids are made inert where drivers
/// build them ([`Grant::api`]), so that a driver's own reads compare like
/// with like; the ids a grant waits for are cleaned the same way here.
pub(crate) fn clean_grant(mut g: Grant) -> Grant {
    g.after = g.after.iter().map(|a| clean(a)).collect();
    g.label = clean(&g.label);
    g.details = clean(&g.details);
    g.since = g.since.map(|s| clean(&s));
    if let crate::model::Revocation::Manual { instructions } = &mut g.revocation {
        *instructions = clean(instructions);
    }
    g
}

pub(crate) fn clean_account(mut a: Account) -> Account {
    // The account id stays exact: drivers read and act on it (printers
    // clean it).
    a.addresses = a.addresses.iter().map(|x| clean(x)).collect();
    a.login = clean(&a.login);
    a.display_name = clean(&a.display_name);
    a.last_login = a.last_login.map(|s| clean(&s));
    a.facts = a
        .facts
        .into_iter()
        .map(|(k, v)| (clean(&k), clean(&v)))
        .collect();
    a
}

/// What a grant is when first listed: a step only a person can do is
/// `manual` from the start; anything else is `live`.
pub fn initial_state(g: &Grant) -> GrantState {
    if g.is_manual() {
        GrantState::Manual
    } else {
        GrantState::Live
    }
}

/// The plans recorded in `records` that no `finished` record closed: per
/// case, the keys of the last unfinished plan's steps (a revoke that was
/// interrupted: the operator quit, the process was killed). In ledger order.
pub fn interrupted_plans(records: &[Record]) -> Vec<(String, Vec<String>)> {
    let mut open: Vec<(String, Vec<String>)> = Vec::new();
    for r in records {
        match &r.event {
            LedgerEvent::Planned { steps } => {
                open.retain(|(c, _)| *c != r.case);
                if !steps.is_empty() {
                    open.push((
                        r.case.clone(),
                        steps.iter().map(|s| s.key.clone()).collect(),
                    ));
                }
            }
            LedgerEvent::Finished { .. } => open.retain(|(c, _)| *c != r.case),
            _ => {}
        }
    }
    open
}

impl Case {
    pub fn new(person: Person) -> Case {
        Case {
            person,
            accounts: BTreeMap::new(),
            grants: Vec::new(),
            picks: BTreeMap::new(),
        }
    }

    /// Rebuilds what the ledger says about this case: every grant that was
    /// requested, answered, verified, escalated or ticked off, in its last
    /// recorded state. Grants merely discovered are not carried over: a
    /// fresh read lists them.
    pub fn from_ledger(person: Person, records: &[Record]) -> Case {
        let email = person.email.clone();
        let mut case = Case::new(person);
        for r in records.iter().filter(|r| r.case == email) {
            let at = r.ts;
            match &r.event {
                LedgerEvent::RevokeRequested { grant, .. } => {
                    case.set_from_history(grant.clone(), GrantState::Revoking, at, None);
                }
                LedgerEvent::ManualRequired { grant, .. } => {
                    case.set_from_history(grant.clone(), GrantState::Manual, at, None);
                }
                LedgerEvent::ApiAnswer {
                    key,
                    outcome,
                    error,
                    manual,
                } => {
                    let (state, answer) =
                        answer_state(*outcome, error.as_deref(), manual.as_deref(), at);
                    case.update_history(key, state, at, Some(answer));
                }
                LedgerEvent::Verified { key, .. } => {
                    case.update_history(key, GrantState::Verified { at }, at, None);
                }
                LedgerEvent::Escalated { key, reason } => {
                    case.update_history(
                        key,
                        GrantState::Unconfirmed {
                            reason: reason.clone(),
                        },
                        at,
                        None,
                    );
                }
                LedgerEvent::ManualDone { key, note, .. } => {
                    case.update_history(
                        key,
                        GrantState::Acknowledged {
                            at,
                            note: Some(note.clone()),
                        },
                        at,
                        None,
                    );
                }
                LedgerEvent::Reappeared { key } => {
                    case.update_history(key, GrantState::Live, at, None);
                }
                LedgerEvent::Vanished { grant, read_at, .. } => {
                    let key = grant.key();
                    case.set_from_history(
                        grant.clone(),
                        GrantState::Verified { at: *read_at },
                        at,
                        Some(VANISHED_NOTE.to_string()),
                    );
                    if let Some(e) = case.grants.iter_mut().find(|e| e.key() == key) {
                        e.vanished = true;
                    }
                }
                LedgerEvent::StillListed { key, note } => {
                    case.update_history(key, GrantState::Live, at, Some(note.clone()));
                }
                // Addresses of accounts found earlier are aliases to try.
                LedgerEvent::Discovered {
                    account: Some(a), ..
                } => {
                    for address in &a.addresses {
                        case.person.add_alias(address);
                    }
                }
                LedgerEvent::AccountPicked {
                    connector,
                    account_id,
                    ..
                } => {
                    case.picks.insert(connector.clone(), account_id.clone());
                }
                _ => {}
            }
        }
        case
    }

    fn set_from_history(
        &mut self,
        grant: Grant,
        state: GrantState,
        at: DateTime<Utc>,
        answer: Option<String>,
    ) {
        let key = grant.key();
        match self.grants.iter_mut().find(|e| is_key(&e.grant, &key)) {
            Some(e) => {
                e.requested |= matches!(state, GrantState::Revoking | GrantState::Manual);
                e.vanished = false;
                e.grant = grant;
                e.state = state;
                e.since = at;
                if answer.is_some() {
                    e.answer = answer;
                }
            }
            None => self.grants.push(Entry {
                requested: matches!(state, GrantState::Revoking | GrantState::Manual),
                vanished: false,
                resumed: false,
                grant,
                state,
                since: at,
                answer,
            }),
        }
    }

    fn update_history(
        &mut self,
        key: &str,
        state: GrantState,
        at: DateTime<Utc>,
        answer: Option<String>,
    ) {
        if let Some(e) = self.grants.iter_mut().find(|e| is_key(&e.grant, key)) {
            e.vanished = false;
            e.state = state;
            e.since = at;
            if answer.is_some() {
                e.answer = answer;
            }
        }
    }

    /// Grants whose removal is under way or unresolved (for `resumed`).
    pub fn pending_keys(&self) -> Vec<String> {
        self.grants
            .iter()
            .filter(|e| {
                matches!(
                    e.state,
                    GrantState::Revoking | GrantState::Removed | GrantState::Unconfirmed { .. }
                )
            })
            .map(Entry::key)
            .collect()
    }

    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.grants.iter().find(|e| is_key(&e.grant, key))
    }

    pub fn entry_mut(&mut self, key: &str) -> Option<&mut Entry> {
        self.grants.iter_mut().find(|e| is_key(&e.grant, key))
    }

    pub fn account(&self, connector: &str) -> Option<&Account> {
        self.accounts
            .get(connector)
            .and_then(|a| a.status.account())
    }

    pub fn set_status(&mut self, connector: &str, display_name: &str, status: AccountStatus) {
        let a = self
            .accounts
            .entry(connector.to_string())
            .or_insert_with(|| AccountView {
                connector: connector.to_string(),
                display_name: display_name.to_string(),
                status: AccountStatus::Pending,
                failed_kinds: Vec::new(),
                read_at: None,
            });
        a.status = status;
        if a.status.account().is_none() {
            a.failed_kinds.clear();
        }
    }

    /// Merges a fresh read of one connector. Kinds in `failed` are left as
    /// they were: a failed read never counts as absence. For the others the
    /// read is complete: a grant whose removal was requested here
    /// (removing, failed or unconfirmed) that it no longer lists is
    /// verified gone; a live or manual grant it no longer lists went without
    /// us and becomes `vanished`; a verified or vanished grant listed again
    /// is live again (an acknowledged one stays acknowledged: what cannot be
    /// listed is listed every time).
    pub fn apply_read(
        &mut self,
        connector: &str,
        listed: Vec<Grant>,
        failed: &[(GrantKind, String)],
        started: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        let kind_failed = |k: GrantKind| failed.iter().any(|(f, _)| *f == k);
        // One grant per id: an item a listing showed twice (on two pages,
        // as a listing that shifts while it is read does) is one grant,
        // planned and revoked once.
        let mut ids = HashSet::new();
        let mut listed: Vec<Grant> = listed
            .into_iter()
            .map(clean_grant)
            .filter(|g| ids.insert(g.id.clone()))
            .collect();
        // Ids this case asked the app to remove: a manual grant held
        // through one of them (it names it in `after`, like a Google admin
        // role held through a group) that a read no longer lists went
        // because of us.
        let requested: HashSet<String> = self
            .grants
            .iter()
            .filter(|e| e.grant.connector == connector && e.requested)
            .map(|e| e.grant.id.clone())
            .collect();
        let mut keep = Vec::with_capacity(self.grants.len());
        for mut e in std::mem::take(&mut self.grants) {
            if e.grant.connector != connector || kind_failed(e.grant.kind) {
                keep.push(e);
                continue;
            }
            if let Some(pos) = listed.iter().position(|g| g.id == e.grant.id) {
                e.grant = listed.remove(pos);
                // A read that began before the removal was confirmed
                // (reads of one app overlap) is older than that
                // confirmation: it does not bring the grant back.
                if matches!(e.state, GrantState::Verified { .. }) && e.since < started {
                    e.vanished = false;
                    e.state = initial_state(&e.grant);
                    e.since = now;
                    changes.push(Change::Reappeared(e.key()));
                }
                keep.push(e);
                continue;
            }
            match e.state {
                GrantState::Revoking
                | GrantState::Removed
                | GrantState::Failed { .. }
                | GrantState::Unconfirmed { .. } => {
                    e.state = GrantState::Verified { at: now };
                    e.since = now;
                    changes.push(Change::Verified(e.key()));
                    keep.push(e);
                }
                GrantState::Verified { .. } | GrantState::Acknowledged { .. } => keep.push(e),
                // Nobody here asked to remove it, and a fresh complete read
                // no longer lists it: gone without us, kept in the view.
                GrantState::Live | GrantState::Manual
                    if e.requested
                        || (e.grant.is_manual()
                            && e.grant.after.iter().any(|a| requested.contains(a))) =>
                {
                    e.state = GrantState::Verified { at: now };
                    e.since = now;
                    changes.push(Change::Verified(e.key()));
                    keep.push(e);
                }
                GrantState::Live | GrantState::Manual => {
                    e.state = GrantState::Verified { at: now };
                    e.vanished = true;
                    e.answer = Some(VANISHED_NOTE.to_string());
                    e.since = now;
                    changes.push(Change::Vanished(e.grant.clone()));
                    keep.push(e);
                }
            }
        }
        for g in listed {
            keep.push(Entry {
                state: initial_state(&g),
                grant: g,
                since: now,
                answer: None,
                requested: false,
                vanished: false,
                resumed: false,
            });
        }
        self.grants = keep;
        if let Some(a) = self.accounts.get_mut(connector) {
            a.failed_kinds = failed
                .iter()
                .map(|(kind, error)| KindFailure {
                    kind: *kind,
                    error: error.clone(),
                })
                .collect();
            a.read_at = Some(now);
        }
        changes
    }

    /// Grants still `revoking` (requested, no answer recorded) that the last
    /// complete read of their connector, finished at or after `since`,
    /// still lists.
    pub fn revoking_still_listed(&self, since: DateTime<Utc>) -> Vec<String> {
        self.grants
            .iter()
            .filter(|e| e.state == GrantState::Revoking)
            .filter(|e| {
                self.accounts.get(&e.grant.connector).is_some_and(|a| {
                    a.status.account().is_some()
                        && a.read_at.is_some_and(|t| t >= since)
                        && !a.failed_kinds.iter().any(|f| f.kind == e.grant.kind)
                })
            })
            .map(Entry::key)
            .collect()
    }

    /// Removals resumed from the ledger in `connector` that no read has
    /// confirmed `deadline` after the case was opened (a complete read
    /// still lists them, or the read of their kind failed): each with the
    /// reason it is escalated as `unconfirmed`.
    pub fn overdue_resumed(
        &self,
        connector: &str,
        failed: &[(GrantKind, String)],
        deadline: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Vec<(String, String)> {
        let secs = deadline.num_seconds();
        self.grants
            .iter()
            .filter(|e| e.resumed && e.grant.connector == connector)
            .filter(|e| now - e.since >= deadline)
            .filter_map(|e| {
                let read_failed = failed.iter().find(|(k, _)| *k == e.grant.kind);
                let reason = match (&e.state, read_failed) {
                    (GrantState::Revoking | GrantState::Removed, Some((_, err))) => format!(
                        "resumed after an interruption, not confirmed within {secs}s; last read failed: {err}"
                    ),
                    (GrantState::Revoking, None) => format!(
                        "requested before an interruption, no answer recorded; a fresh read still lists it {secs}s after the case was resumed: revoke it again"
                    ),
                    (GrantState::Removed, None) => format!(
                        "still listed {secs}s after the app accepted the removal (resumed after an interruption)"
                    ),
                    _ => return None,
                };
                Some((e.key(), reason))
            })
            .collect()
    }

    /// Counts states of the selected grants, and read failures and
    /// ambiguous lookups of the selected connectors (only failed kinds the
    /// selection covers count).
    pub fn summary(&self, sel: &Selection) -> Summary {
        let mut s = Summary::default();
        for e in self.grants.iter().filter(|e| sel.matches(&e.grant)) {
            s.add(&e.state);
            if e.vanished && matches!(e.state, GrantState::Verified { .. }) {
                s.vanished += 1;
            }
        }
        s.add_accounts(self.accounts.values(), sel);
        s
    }

    pub fn view(&self, order: &[String]) -> CaseView {
        let mut accounts: Vec<AccountView> = self.accounts.values().cloned().collect();
        accounts.sort_by_key(|a| {
            order
                .iter()
                .position(|c| *c == a.connector)
                .unwrap_or(usize::MAX)
        });
        let mut grants: Vec<GrantView> = self
            .grants
            .iter()
            .map(|e| GrantView {
                key: e.key(),
                grant: e.grant.clone(),
                state: e.state.clone(),
                since_state: e.since,
                last_answer: e.answer.clone(),
                vanished: e.vanished,
            })
            .collect();
        grants.sort_by(|a, b| {
            let pa = order.iter().position(|c| *c == a.grant.connector);
            let pb = order.iter().position(|c| *c == b.grant.connector);
            pa.cmp(&pb)
                .then(a.grant.phase().cmp(&b.grant.phase()))
                .then(b.grant.risk.cmp(&a.grant.risk))
        });
        CaseView {
            email: self.person.email.clone(),
            accounts,
            grants,
            summary: self.summary(&Selection::default()),
        }
    }
}

/// The state and answer text for a revoke answer.
pub(crate) fn answer_state(
    outcome: Option<RevokeOutcome>,
    error: Option<&str>,
    manual: Option<&str>,
    at: DateTime<Utc>,
) -> (GrantState, String) {
    match (outcome, error) {
        (Some(RevokeOutcome::Accepted), _) => (GrantState::Removed, "accepted".into()),
        (Some(RevokeOutcome::AlreadyGone), _) => (
            GrantState::Removed,
            "already gone (idempotent success)".into(),
        ),
        (Some(RevokeOutcome::Acknowledged), _) => (
            GrantState::Acknowledged { at, note: None },
            "acknowledged (no API can list it)".into(),
        ),
        (None, e) => {
            let e = e.unwrap_or("no answer");
            let reason = match manual {
                Some(m) if !m.is_empty() => format!("{e}; manual step: {m}"),
                _ => e.to_string(),
            };
            (
                GrantState::Failed {
                    reason: reason.clone(),
                },
                reason,
            )
        }
    }
}
