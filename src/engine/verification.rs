//! Verification: fresh reads until each accepted removal is absent
//! (`verified`), or its deadline passes (`unconfirmed`, escalated).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use tokio::sync::Notify;

use super::case::STILL_LISTED_NOTE;
use super::core::{Engine, EngineError, Selection, VERIFY_MAX_DELAY};
use super::{Event, Summary};
use crate::connector::Presence;
use crate::evidence::LedgerEvent;
use crate::model::{Grant, GrantState};
use crate::sanitize::clean;

impl Engine {
    /// Re-reads every connector and waits until every removal under way is
    /// verified or past the deadline. Sends no revoke request.
    pub async fn verify(&self, email: &str, selection: &Selection) -> Result<Summary, EngineError> {
        self.as_leaver(email, self.verify_queued(email, selection))
            .await
    }

    async fn verify_queued(
        &self,
        email: &str,
        selection: &Selection,
    ) -> Result<Summary, EngineError> {
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

    /// Re-reads, batched per connector, every grant in `scope` whose removal
    /// was accepted, with a delay that doubles after a round that confirms
    /// nothing, halves after one that confirms some, and starts over when
    /// new removals arrive, until each is absent from a fresh successful read (`verified`) or its
    /// deadline passes (`unconfirmed`, escalated in the ledger). Ends when
    /// nothing is pending and `exec_done` is set.
    ///
    /// Each connector is re-read on its own schedule: a connector whose
    /// reads wait for its rate limit never holds back another's
    /// confirmations (as phases, verification is per app).
    pub(super) async fn verify_loop(
        &self,
        email: &str,
        scope: &HashSet<String>,
        exec_done: &AtomicBool,
        wake: &Notify,
    ) -> Result<(), EngineError> {
        let mut by_connector: BTreeMap<&str, HashSet<String>> = BTreeMap::new();
        for key in scope {
            let cid = key.split_once('/').map_or(key.as_str(), |(c, _)| c);
            by_connector.entry(cid).or_default().insert(key.clone());
        }
        let loops = by_connector
            .values()
            .map(|keys| self.verify_connector(email, keys, exec_done, wake));
        join_all(loops).await.into_iter().collect()
    }

    /// [`Self::verify_loop`] for one connector's grants (`scope`).
    async fn verify_connector(
        &self,
        email: &str,
        scope: &HashSet<String>,
        exec_done: &AtomicBool,
        wake: &Notify,
    ) -> Result<(), EngineError> {
        let mut delay = self.opts.verify_initial_delay;
        let mut seen: HashSet<String> = HashSet::new();
        let mut last_error: HashMap<String, String> = HashMap::new();
        let mut in_progress: HashSet<String> = HashSet::new();
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
                        // Behind the removals still going out through the
                        // same rate buckets.
                        Some(c) => {
                            crate::connector::http::background(c.verify(&account, &grants)).await
                        }
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
                            in_progress.remove(&key);
                        }
                        Ok(Presence::InProgress) => {
                            last_error.remove(&key);
                            in_progress.insert(key);
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
                let gone: HashSet<String> = verified
                    .iter()
                    .filter_map(|k| k.strip_prefix(&format!("{cid}/")).map(str::to_string))
                    .collect();
                for key in verified {
                    self.set_state(email, &key, GrantState::Verified { at: now }, None);
                }
                if let Some(c) = c {
                    // What is held through a grant just verified gone (a
                    // Google admin role held through a group) is decided by
                    // a fresh read now: verified, or still manual.
                    if self.held_through(email, &cid, &gone) {
                        let person = self.case_person(email);
                        self.read_connector(&person, c.clone(), false, false)
                            .await?;
                    }
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
            self.escalate_overdue(email, scope, &last_error, &in_progress)
                .await?;
        }
    }

    /// Whether an open manual grant of `connector` is held through one of
    /// `ids` (names it in `after`).
    fn held_through(&self, email: &str, connector: &str, ids: &HashSet<String>) -> bool {
        !ids.is_empty()
            && self
                .with_case(email, |c| {
                    c.grants.iter().any(|e| {
                        e.grant.connector == connector
                            && e.grant.is_manual()
                            && matches!(e.state, GrantState::Manual | GrantState::Live)
                            && e.grant.after.iter().any(|a| ids.contains(a))
                    })
                })
                .unwrap_or(false)
    }

    /// Removals under way in `scope`, grouped by connector, with the account.
    pub(super) fn pending(
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

    pub(super) async fn escalate_overdue(
        &self,
        email: &str,
        scope: &HashSet<String>,
        last_error: &HashMap<String, String>,
        in_progress: &HashSet<String>,
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
                    None if in_progress.contains(&key) => format!(
                        "pending: the app still reports it in progress {}s after accepting it (not verified; check again later with offboard verify)",
                        self.opts.verify_deadline.as_secs()
                    ),
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
}
