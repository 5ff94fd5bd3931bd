//! What the ledger says about each leaver: per app, the last lookup, what
//! its last read listed, when access was first and last removed; and what
//! is still open and why. `run --due` decides from it whether a leaver has
//! anything left to do (so a second run does nothing new), and the period
//! report is built from it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::connector::RevokeOutcome;
use crate::evidence::{LedgerEvent, LookupResult, Record};
use crate::model::{GrantKind, Phase};

/// Why a grant is not closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenState {
    /// Listed by the last read, never removed (or listed again).
    Live,
    /// Requested, not yet confirmed by a read.
    Removing,
    /// Past the verification deadline without a confirming read.
    Unconfirmed,
    /// The app refused.
    Failed,
    /// A step a person must do and tick off (`offboard done`).
    Manual,
}

impl OpenState {
    pub fn as_str(self) -> &'static str {
        match self {
            OpenState::Live => "live",
            OpenState::Removing => "removing",
            OpenState::Unconfirmed => "unconfirmed",
            OpenState::Failed => "failed",
            OpenState::Manual => "manual",
        }
    }

    /// Open states that only a person can settle: running the policy again
    /// would change nothing.
    pub fn needs_a_person(self) -> bool {
        matches!(
            self,
            OpenState::Failed | OpenState::Manual | OpenState::Unconfirmed
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OpenGrant {
    pub key: String,
    pub app: String,
    pub kind: GrantKind,
    pub phase: u8,
    pub label: String,
    pub state: OpenState,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppHistory {
    pub app: String,
    /// The last lookup's result.
    pub lookup: LookupResult,
    pub last_read: DateTime<Utc>,
    /// Why the last read was incomplete (lookup error, kinds not readable).
    pub unreadable: Vec<String>,
    pub first_removed: Option<DateTime<Utc>>,
    pub last_removed: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseHistory {
    pub email: String,
    /// The name an app's account carries, as last read.
    pub name: Option<String>,
    pub first_record: DateTime<Utc>,
    pub last_record: DateTime<Utc>,
    pub first_request: Option<DateTime<Utc>>,
    pub apps: Vec<AppHistory>,
    pub open: Vec<OpenGrant>,
}

struct Track {
    app: String,
    kind: GrantKind,
    phase: u8,
    label: String,
    /// None: closed.
    state: Option<OpenState>,
    reason: Option<String>,
}

impl CaseHistory {
    /// Every app's last read found nothing, or was not complete: the
    /// ledger cannot say that nothing is left.
    pub fn unsettled_reads(&self) -> Vec<String> {
        let mut out = Vec::new();
        for a in &self.apps {
            match a.lookup {
                LookupResult::Failed | LookupResult::Ambiguous => {
                    out.push(format!("{}: {}", a.app, a.lookup.as_str()))
                }
                _ => {}
            }
            for u in &a.unreadable {
                out.push(format!("{}: {u}", a.app));
            }
        }
        if !self.apps.is_empty() && self.apps.iter().all(|a| a.lookup == LookupResult::NotFound) {
            out.push(crate::engine::NOT_FOUND_ANYWHERE.to_string());
        }
        out
    }

    /// When the last of the access was closed, if nothing is open and
    /// every read was complete.
    pub fn all_closed_at(&self) -> Option<DateTime<Utc>> {
        if !self.open.is_empty() || !self.unsettled_reads().is_empty() || self.apps.is_empty() {
            return None;
        }
        self.apps
            .iter()
            .filter_map(|a| a.last_removed)
            .max()
            .or_else(|| self.apps.iter().map(|a| a.last_read).max())
    }
}

/// The history of every case in the records, by email.
pub fn cases(records: &[Record]) -> BTreeMap<String, CaseHistory> {
    let mut emails: Vec<&str> = records
        .iter()
        .map(|r| r.case.as_str())
        .filter(|c| !c.is_empty())
        .collect();
    emails.sort();
    emails.dedup();
    emails
        .into_iter()
        .filter_map(|e| case(records, e).map(|h| (e.to_string(), h)))
        .collect()
}

/// The history of one case, or None when the ledger has no record of it.
pub fn case(records: &[Record], email: &str) -> Option<CaseHistory> {
    let email = email.trim().to_ascii_lowercase();
    let recs: Vec<&Record> = records.iter().filter(|r| r.case == email).collect();
    let first = recs.first()?;
    let mut apps: BTreeMap<String, AppHistory> = BTreeMap::new();
    // The keys the last read of each app listed.
    let mut listed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut tracks: BTreeMap<String, Track> = BTreeMap::new();
    let mut first_request = None;
    let mut name: Option<String> = None;
    let app_of = |key: &str| {
        key.split_once('/')
            .map(|(a, _)| a.to_string())
            .unwrap_or_default()
    };
    let closed = |apps: &mut BTreeMap<String, AppHistory>, app: &str, at: DateTime<Utc>| {
        if let Some(a) = apps.get_mut(app) {
            a.first_removed = Some(a.first_removed.map_or(at, |f| f.min(at)));
            a.last_removed = Some(a.last_removed.map_or(at, |l| l.max(at)));
        }
    };
    for r in &recs {
        let at = r.ts;
        match &r.event {
            LedgerEvent::Discovered {
                connector,
                result,
                grants,
                error,
                failed_kinds,
                account,
                ..
            } => {
                if let Some(a) = account
                    && !a.display_name.trim().is_empty()
                {
                    name = Some(a.display_name.clone());
                }
                let a = apps.entry(connector.clone()).or_insert(AppHistory {
                    app: connector.clone(),
                    lookup: *result,
                    last_read: at,
                    unreadable: Vec::new(),
                    first_removed: None,
                    last_removed: None,
                });
                a.lookup = *result;
                a.last_read = at;
                a.unreadable = error.iter().cloned().collect();
                a.unreadable.extend(
                    failed_kinds
                        .iter()
                        .map(|f| format!("{} not readable: {}", f.kind, f.error)),
                );
                let keys: Vec<String> = grants.iter().map(|g| g.key()).collect();
                for g in grants {
                    tracks.entry(g.key()).or_insert(Track {
                        app: connector.clone(),
                        kind: g.kind,
                        phase: g.phase().number(),
                        label: g.label.clone(),
                        state: Some(OpenState::Live),
                        reason: None,
                    });
                }
                listed.insert(connector.clone(), keys);
            }
            LedgerEvent::RevokeRequested { key, grant, .. }
            | LedgerEvent::ManualRequired { key, grant, .. } => {
                let manual = matches!(r.event, LedgerEvent::ManualRequired { .. });
                if !manual {
                    first_request.get_or_insert(at);
                }
                let t = tracks.entry(key.clone()).or_insert(Track {
                    app: app_of(key),
                    kind: grant.kind,
                    phase: grant.phase().number(),
                    label: grant.label.clone(),
                    state: None,
                    reason: None,
                });
                t.kind = grant.kind;
                t.phase = grant.phase().number();
                t.label = grant.label.clone();
                if let LedgerEvent::ManualRequired { instructions, .. } = &r.event {
                    t.state = Some(OpenState::Manual);
                    t.reason = Some(instructions.clone());
                } else {
                    t.state = Some(OpenState::Removing);
                    t.reason = None;
                }
            }
            LedgerEvent::ApiAnswer {
                key,
                outcome,
                error,
                manual,
            } => {
                let Some(t) = tracks.get_mut(key) else {
                    continue;
                };
                match outcome {
                    Some(RevokeOutcome::Accepted | RevokeOutcome::AlreadyGone) => {}
                    Some(RevokeOutcome::Acknowledged) => {
                        t.state = None;
                        t.reason = None;
                        let app = t.app.clone();
                        closed(&mut apps, &app, at);
                    }
                    None => {
                        t.state = Some(OpenState::Failed);
                        let e = error.clone().unwrap_or_else(|| "no answer".into());
                        t.reason = Some(match manual {
                            Some(m) if !m.is_empty() => format!("{e}; manual step: {m}"),
                            _ => e,
                        });
                    }
                }
            }
            LedgerEvent::Verified { key, .. } | LedgerEvent::ManualDone { key, .. } => {
                if let Some(t) = tracks.get_mut(key) {
                    t.state = None;
                    t.reason = None;
                    let app = t.app.clone();
                    closed(&mut apps, &app, at);
                }
            }
            LedgerEvent::Vanished {
                key,
                grant,
                read_at,
                ..
            } => {
                let t = tracks.entry(key.clone()).or_insert(Track {
                    app: app_of(key),
                    kind: grant.kind,
                    phase: grant.phase().number(),
                    label: grant.label.clone(),
                    state: None,
                    reason: None,
                });
                t.state = None;
                let app = t.app.clone();
                closed(&mut apps, &app, *read_at);
            }
            LedgerEvent::Escalated { key, reason } => {
                if let Some(t) = tracks.get_mut(key) {
                    t.state = Some(OpenState::Unconfirmed);
                    t.reason = Some(reason.clone());
                }
            }
            LedgerEvent::Reappeared { key } => {
                if let Some(t) = tracks.get_mut(key) {
                    t.state = Some(OpenState::Live);
                    t.reason = Some("listed again after it was verified gone".into());
                }
            }
            LedgerEvent::StillListed { key, note } => {
                if let Some(t) = tracks.get_mut(key) {
                    t.state = Some(OpenState::Live);
                    t.reason = Some(note.clone());
                }
            }
            _ => {}
        }
    }
    let open = tracks
        .into_iter()
        .filter_map(|(key, t)| {
            let state = t.state?;
            // A grant never requested that the app's last read no longer
            // lists is not live (the engine records it as vanished).
            if state == OpenState::Live
                && t.reason.is_none()
                && !listed.get(&t.app).is_some_and(|l| l.contains(&key))
            {
                return None;
            }
            Some(OpenGrant {
                key,
                app: t.app,
                kind: t.kind,
                phase: t.phase,
                label: t.label,
                state,
                reason: t.reason,
            })
        })
        .collect();
    Some(CaseHistory {
        email,
        name,
        first_record: first.ts,
        last_record: recs.last().map_or(first.ts, |r| r.ts),
        first_request,
        apps: apps.into_values().collect(),
        open,
    })
}

/// Phase 1 of the default policy: what cuts live access.
pub fn cuts_access(kind: GrantKind) -> bool {
    kind.default_phase() == Phase::CutAccess
}
