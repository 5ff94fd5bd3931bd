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
use crate::connector::{ConnectorError, Presence};
use crate::evidence::LedgerEvent;
use crate::model::{Grant, GrantKind, GrantState};
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
    /// was accepted, each on its own schedule ([`Watch`]), until it is
    /// absent from a fresh successful read (`verified`) or its deadline
    /// passes (`unconfirmed`, escalated in the ledger). Ends when nothing
    /// is pending and `exec_done` is set.
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

    /// [`Self::verify_loop`] for one connector's grants (`scope`), each on
    /// its own schedule ([`Watch`]).
    async fn verify_connector(
        &self,
        email: &str,
        scope: &HashSet<String>,
        exec_done: &AtomicBool,
        wake: &Notify,
    ) -> Result<(), EngineError> {
        let mut watch: HashMap<String, Watch> = HashMap::new();
        let mut last_error: HashMap<String, String> = HashMap::new();
        let mut in_progress: HashSet<String> = HashSet::new();
        let initial = self.opts.verify_initial_delay.as_secs_f64();
        loop {
            let Some((cid, account, pending)) = self.pending_ages(email, scope) else {
                if exec_done.load(Ordering::SeqCst) {
                    return Ok(());
                }
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                continue;
            };
            let quiet = exec_done.load(Ordering::SeqCst) || !self.outgoing(email, scope);
            let lag = self.lag_of(&cid);
            watch.retain(|k, _| pending.iter().any(|(g, _)| g.key() == *k));
            let mut sure = Vec::new();
            let mut speculative = Vec::new();
            let mut next = f64::INFINITY;
            let mut soon = Vec::new();
            // Removals of a kind settle in the order they were made: one
            // younger than another of its kind was when a read still
            // listed that one is not read yet (for its first seconds, so
            // that a removal that never settles holds nothing up for long).
            let mut listed: HashMap<crate::model::GrantKind, f64> = HashMap::new();
            for (g, _) in &pending {
                if let Some(a) = watch.get(&g.key()).and_then(|w| w.listed_at) {
                    let e = listed.entry(g.kind).or_insert(a);
                    *e = e.max(a);
                }
            }
            for (g, age) in &pending {
                if let Some(a) = listed.get(&g.kind)
                    && *a > *age
                    && *age < VERIFY_MAX_DELAY.as_secs_f64()
                {
                    next = next.min(a - age);
                    continue;
                }
                let w = watch.entry(g.key()).or_insert_with(|| Watch::new(initial));
                match w.due(*age, lag, self.hold_of(&cid, g.kind), quiet) {
                    Due::Read => sure.push(g.clone()),
                    Due::Probe => speculative.push(g.clone()),
                    Due::In(d) => {
                        next = next.min(d);
                        // Not before the app's delay: it would be listed.
                        if d <= PROBE_MIN.max(age * PROBE_SHARE) && lag.is_none_or(|l| *age >= l) {
                            soon.push(g.clone());
                        }
                    }
                }
            }
            // Removals due shortly go with this round: they are most often
            // in the same listing.
            if !sure.is_empty() {
                sure.extend(soon);
            } else if !speculative.is_empty() {
                speculative.extend(soon);
            }
            if sure.is_empty() && speculative.is_empty() {
                // Until the first grant is due; a removal answered or a
                // grant added wakes it sooner.
                let cap = if quiet {
                    VERIFY_MAX_DELAY.as_secs_f64()
                } else {
                    0.2
                };
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs_f64(next.clamp(0.001, cap))) => {}
                }
                continue;
            }
            let ages: HashMap<String, (f64, GrantKind)> = pending
                .iter()
                .map(|(g, a)| (g.id.clone(), (*a, g.kind)))
                .collect();
            let Some(c) = self.connector(&cid).cloned() else {
                return Ok(());
            };
            let read = |grants: Vec<Grant>, probe: bool| {
                let c = c.clone();
                let account = account.clone();
                async move {
                    if grants.is_empty() {
                        return (Vec::new(), None);
                    }
                    // Behind the removals still going out through the same
                    // rate buckets; a speculative read only with quota to
                    // spare.
                    let read = crate::connector::http::timed(c.verify(&account, &grants));
                    let (results, sent) = if probe {
                        crate::connector::http::probe(read).await
                    } else {
                        crate::connector::http::background(read).await
                    };
                    let asked: HashSet<&str> = grants.iter().map(|g| g.id.as_str()).collect();
                    let results = results
                        .into_iter()
                        .filter(|(id, _)| asked.contains(id.as_str()))
                        .collect::<Vec<_>>();
                    (results, sent)
                }
            };
            let asked: Vec<String> = sure.iter().chain(&speculative).map(Grant::key).collect();
            let started = tokio::time::Instant::now();
            let ((a, a_sent), (b, b_sent)) =
                tokio::join!(read(sure, false), read(speculative, true));
            // A read's requests may wait for quota: what it saw held at
            // some moment between its first and its last request, this
            // long after the ages were taken.
            let after = |sent: Option<(tokio::time::Instant, tokio::time::Instant)>| {
                sent.map(|(first, last)| {
                    (
                        (first - started).as_secs_f64(),
                        (last - started).as_secs_f64(),
                    )
                })
            };
            let (a_sent, b_sent) = (after(a_sent), after(b_sent));
            let mut verified = Vec::new();
            let mut seen = Vec::new();
            let mut answered: HashSet<String> = HashSet::new();
            let a = a.into_iter().map(|r| (r, a_sent));
            let b = b.into_iter().map(|r| (r, b_sent));
            for ((id, r), sent) in a.chain(b) {
                let key = format!("{cid}/{id}");
                let (Some(w), Some(&(age, kind))) = (watch.get_mut(&key), ages.get(&id)) else {
                    continue;
                };
                answered.insert(key.clone());
                let age = age + sent.map_or(0.0, |(first, _)| first);
                if let (Ok(p @ (Presence::Absent | Presence::Present)), Some((first, last))) =
                    (&r, sent)
                {
                    let gone = *p == Presence::Absent;
                    seen.push(Seen {
                        kind,
                        age,
                        span: last - first,
                        gone,
                        listed_at: w.listed_at.filter(|_| gone),
                    });
                }
                match r {
                    Ok(Presence::Absent) => verified.push(key),
                    Ok(Presence::Present) => {
                        last_error.remove(&key);
                        in_progress.remove(&key);
                        w.listed(age, lag, initial);
                    }
                    Ok(Presence::InProgress) => {
                        last_error.remove(&key);
                        in_progress.insert(key);
                        // A job under way says nothing of the app's delay.
                        w.listed_at = None;
                        w.listed(age, None, initial);
                    }
                    Err(ConnectorError::Deferred) => w.deferred(age),
                    Err(e) => {
                        last_error.insert(key, clean(&e.to_string()));
                        w.listed(age, lag, initial);
                    }
                }
            }
            // A grant the app's read gave no answer for is a failed read:
            // its schedule moves on like any other's.
            for key in asked.iter().filter(|k| !answered.contains(*k)) {
                if let (Some(w), Some(&(age, _))) = (
                    watch.get_mut(key),
                    key.strip_prefix(&format!("{cid}/"))
                        .and_then(|id| ages.get(id)),
                ) {
                    last_error.insert(key.clone(), "the app's read gave no answer for it".into());
                    w.listed(age, lag, initial);
                }
            }
            self.learn_lag(&cid, &seen);
            verified.retain(|key| self.state_of(email, key) == Some(GrantState::Removed));
            let gone: HashSet<String> = verified
                .iter()
                .filter_map(|k| k.strip_prefix(&format!("{cid}/")).map(str::to_string))
                .collect();
            self.record_verified(email, verified, "absent from a fresh read")
                .await?;
            // What is held through a grant just verified gone (a Google
            // admin role held through a group) is decided by a fresh read
            // now: verified, or still manual.
            let held = self.held_through(email, &cid, &gone);
            if !held.is_empty() {
                self.read_held(email, &c, &account, held).await?;
            }
            self.emit_health(&c);
            self.escalate_overdue(email, scope, &last_error, &in_progress)
                .await?;
        }
    }

    /// The app's delay between accepting a removal and its reads leaving it
    /// out, as this process has seen it (see [`Self::learn_lag`]).
    fn lag_of(&self, connector: &str) -> Option<f64> {
        self.delays(connector, Delays::lag)
    }

    /// See [`Delays::hold`].
    fn hold_of(&self, connector: &str, kind: GrantKind) -> Option<f64> {
        self.delays(connector, |d| d.hold(kind))
    }

    /// `f` of what this process has learned of the app's delay, if anything.
    fn delays(&self, connector: &str, f: impl FnOnce(&Delays) -> Option<f64>) -> Option<f64> {
        self.lags
            .lock()
            .expect("lags lock")
            .get(connector)
            .and_then(f)
    }

    /// Learns an app's delay from one round of reads (see [`Delays`]).
    fn learn_lag(&self, connector: &str, seen: &[Seen]) {
        self.lags
            .lock()
            .expect("lags lock")
            .entry(connector.to_string())
            .or_default()
            .learn(seen);
    }

    /// The one connector of `scope` with removals awaiting confirmation:
    /// its id, the account, and each removal with its age (seconds since
    /// the app accepted it).
    fn pending_ages(&self, email: &str, scope: &HashSet<String>) -> Option<PendingAges> {
        let now = Utc::now();
        let (cid, (account, grants)) = self.pending(email, scope).into_iter().next()?;
        let ages: HashMap<String, f64> = self
            .with_case(email, |c| {
                c.grants
                    .iter()
                    .filter(|e| e.grant.connector == cid)
                    .map(|e| (e.grant.id.clone(), (now - e.since).as_seconds_f64()))
                    .collect()
            })
            .unwrap_or_default();
        let grants = grants
            .into_iter()
            .map(|g| {
                let age = ages.get(&g.id).copied().unwrap_or(0.0).max(0.0);
                (g, age)
            })
            .collect();
        Some((cid, account, grants))
    }

    /// Whether a removal in `scope` is still to be sent or answered.
    fn outgoing(&self, email: &str, scope: &HashSet<String>) -> bool {
        self.with_case(email, |c| {
            c.grants.iter().any(|e| {
                scope.contains(&e.key())
                    && !e.grant.is_manual()
                    && matches!(e.state, GrantState::Live | GrantState::Revoking)
            })
        })
        .unwrap_or(false)
    }

    /// The open manual grants of `connector` held through one of `ids`
    /// (that name it in `after`).
    fn held_through(&self, email: &str, connector: &str, ids: &HashSet<String>) -> Vec<Grant> {
        if ids.is_empty() {
            return Vec::new();
        }
        self.with_case(email, |c| {
            c.grants
                .iter()
                .filter(|e| {
                    e.grant.connector == connector
                        && e.grant.is_manual()
                        && matches!(e.state, GrantState::Manual | GrantState::Live)
                        && e.grant.after.iter().any(|a| ids.contains(a))
                })
                .map(|e| e.grant.clone())
                .collect()
        })
        .unwrap_or_default()
    }

    /// A fresh read of `held`, manual grants held through removals just
    /// verified: one the read no longer lists went with them (verified);
    /// one still listed once nothing the plan removes holds it any more is
    /// held some other way now, and a full read of the app says how (it
    /// may be removable itself). A read that fails or says nothing of one
    /// brings the full read too.
    async fn read_held(
        &self,
        email: &str,
        c: &std::sync::Arc<dyn crate::connector::Connector>,
        account: &crate::model::Account,
        held: Vec<Grant>,
    ) -> Result<(), EngineError> {
        let answers = crate::connector::http::background(c.verify(account, &held)).await;
        let mut went = Vec::new();
        let mut full = false;
        for g in &held {
            match answers.iter().find(|(id, _)| *id == g.id).map(|(_, r)| r) {
                Some(Ok(Presence::Absent)) => went.push(g.key()),
                Some(Ok(Presence::Present)) => full |= !self.holders_open(email, g),
                _ => full = true,
            }
        }
        went.retain(|key| {
            matches!(
                self.state_of(email, key),
                Some(GrantState::Manual | GrantState::Live)
            )
        });
        self.record_verified(
            email,
            went,
            "absent from a fresh read once what held it was removed",
        )
        .await?;
        if full {
            let person = self.case_person(email);
            self.read_connector(&person, c.clone(), false, false)
                .await?;
        }
        Ok(())
    }

    /// Records `keys` verified (`how`), with one fsync; each turns verified
    /// only once its record is durable.
    async fn record_verified(
        &self,
        email: &str,
        keys: Vec<String>,
        how: &str,
    ) -> Result<(), EngineError> {
        self.record_all(
            email,
            keys.iter()
                .map(|key| LedgerEvent::Verified {
                    key: key.clone(),
                    how: how.into(),
                })
                .collect(),
        )
        .await?;
        let now = Utc::now();
        for key in keys {
            self.set_state(email, &key, GrantState::Verified { at: now }, None);
        }
        Ok(())
    }

    /// Whether something `g` is held through (its `after`) is a grant of
    /// the case not verified gone yet.
    fn holders_open(&self, email: &str, g: &Grant) -> bool {
        g.after.iter().any(|a| {
            let key = format!("{}/{a}", g.connector);
            self.state_of(email, &key)
                .is_some_and(|s| !matches!(s, GrantState::Verified { .. }))
        })
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

/// One connector's removals awaiting confirmation: its id, the account,
/// and each removal with its age in seconds.
type PendingAges = (String, crate::model::Account, Vec<(Grant, f64)>);

/// What one read said of one removal, for [`Engine::learn_lag`].
#[derive(Debug, Clone, Copy)]
struct Seen {
    kind: GrantKind,
    /// Its age when the read's first request went out: still listed,
    /// the app's delay is longer.
    age: f64,
    /// From the read's first request to its last: gone, the delay is
    /// `age + span` at most.
    span: f64,
    gone: bool,
    /// Its age at the last read that listed it, when it is gone now.
    listed_at: Option<f64>,
}

/// What one app's reads have shown of its delay between accepting a
/// removal and leaving it out of its reads, kind by kind (ages in seconds
/// since each removal was accepted): a removal still listed at some age
/// says the delay is longer; one gone says it is that long at most. The
/// kind's delay is the shortest gone age past the longest listed one; the
/// app's, the longest over its kinds known that closely (to within a
/// speculative read's spacing), else the shortest of the kinds' bounds. A
/// kind with nothing seen listed says nothing (gone at once, or before it
/// was asked); one listed past an age seen gone makes that gone age stale
/// (the delay grew).
#[derive(Debug, Default)]
pub(super) struct Delays(HashMap<GrantKind, Bracket>);

#[derive(Debug, Clone, Copy, Default)]
struct Bracket {
    /// The longest age seen listed.
    listed: Option<f64>,
    /// The shortest age seen gone past it.
    gone: Option<f64>,
}

impl Delays {
    fn learn(&mut self, seen: &[Seen]) {
        for s in seen {
            let b = self.0.entry(s.kind).or_default();
            let listed = if s.gone { s.listed_at } else { Some(s.age) };
            if let Some(a) = listed
                && b.listed.is_none_or(|l| a > l)
            {
                b.listed = Some(a);
                b.gone = b.gone.filter(|g| *g > a);
            }
        }
        for s in seen.iter().filter(|s| s.gone) {
            let b = self.0.get_mut(&s.kind).expect("entered above");
            let at = s.age + s.span;
            if b.listed.is_none_or(|l| at > l) {
                b.gone = Some(b.gone.map_or(at, |g| g.min(at)));
            }
        }
    }

    fn brackets(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.0.values().filter_map(|b| Some((b.listed?, b.gone?)))
    }

    /// The longest delay among kinds known to within a speculative read's
    /// spacing.
    fn known(&self) -> Option<f64> {
        self.brackets()
            .filter(|(l, g)| g - l <= PROBE_MIN.max(g * PROBE_SHARE))
            .map(|(_, g)| g.min(LAG_CAP))
            .reduce(f64::max)
    }

    fn lag(&self) -> Option<f64> {
        // Otherwise the closest bound: the read at it finds out more.
        self.known().or_else(|| {
            self.brackets()
                .map(|(_, g)| g.min(LAG_CAP))
                .reduce(f64::min)
        })
    }

    /// The age before which a read of a removal of `kind` would still list
    /// it: the app's delay once known closely, unless removals of this kind
    /// were seen gone sooner.
    fn hold(&self, kind: GrantKind) -> Option<f64> {
        let known = self.known()?;
        let own = self.0.get(&kind).and_then(|b| b.gone);
        Some(own.map_or(known, |g| g.min(known)))
    }
}

/// Longest app delay [`Engine::learn_lag`] keeps: beyond it the backoff
/// reads come first anyway.
const LAG_CAP: f64 = 60.0;

/// A speculative read comes this long after the last one at least...
const PROBE_MIN: f64 = 0.1;

/// ...and otherwise after this share of the time the removal has waited,
/// so that it is confirmed within about that share of its delay.
const PROBE_SHARE: f64 = 0.15;

/// One removal's confirmation schedule. Three kinds of read, by age (the
/// seconds since the app accepted it):
///
/// - a read that waits for quota if it must, on a backoff: first at the
///   engine's initial delay, then after as long again as the removal has
///   waited since the last read of any kind, at most [`VERIFY_MAX_DELAY`]
///   apart (what confirms every removal, however busy the quota);
/// - one such read once the removal is as old as the app's learned delay
///   ([`Engine::learn_lag`]): when it should be gone;
/// - speculative reads ([`crate::connector::http::probe`]), once the app
///   has every removal of the leaver answered: right then (most apps are
///   consistent at once) or, once the app's delay is known, not before it;
///   then every [`PROBE_SHARE`] of the age; sent only with quota to spare,
///   so an app's delay is found out at little cost.
#[derive(Debug)]
struct Watch {
    /// Age of the next read that waits for quota.
    read_at: f64,
    /// Age of the next speculative read.
    probe_at: f64,
    /// The learned delay its read at the delay was made for: a read made
    /// for a delay learned too short does not stand for the longer one
    /// learned since.
    lag_read: Option<f64>,
    /// Listed past the app's learned delay once: the one quick re-read
    /// that follows was scheduled.
    late: bool,
    /// Age at the last read that listed it.
    listed_at: Option<f64>,
}

/// What a removal's schedule says now.
#[derive(Debug, PartialEq)]
enum Due {
    Read,
    Probe,
    /// Nothing for this many seconds.
    In(f64),
}

impl Watch {
    fn new(initial: f64) -> Watch {
        Watch {
            read_at: initial,
            probe_at: 0.0,
            lag_read: None,
            late: false,
            listed_at: None,
        }
    }

    fn due(&mut self, age: f64, lag: Option<f64>, hold: Option<f64>, quiet: bool) -> Due {
        let lag_due = lag.filter(|l| self.lag_read.is_none_or(|r| *l > r * (1.0 + PROBE_SHARE)));
        // Before the app's delay, known closely, the backoff's early reads
        // would only list it, and take quota from the reads that would not.
        let read_at = match hold {
            Some(h) if self.lag_read.is_none() => self.read_at.max(h),
            _ => self.read_at,
        };
        if age >= read_at || lag_due.is_some_and(|l| age >= l) {
            if let Some(l) = lag_due.filter(|l| age >= *l) {
                self.lag_read = Some(l);
            }
            return Due::Read;
        }
        // Before the app's learned delay, a speculative read is wasted.
        let probe_at = lag_due.map_or(self.probe_at, |l| self.probe_at.max(l));
        if quiet && age >= probe_at {
            return Due::Probe;
        }
        let mut next = read_at;
        if let Some(l) = lag_due {
            next = next.min(l);
        }
        if quiet {
            next = next.min(probe_at);
        }
        Due::In(next - age)
    }

    /// A read at `age` (speculative or not) still listed it, or failed.
    fn listed(&mut self, age: f64, lag: Option<f64>, initial: f64) {
        self.listed_at = Some(age);
        self.probe_at = age + PROBE_MIN.max(age * PROBE_SHARE);
        self.read_at = age + age.max(initial).min(VERIFY_MAX_DELAY.as_secs_f64());
        if let Some(l) = lag.filter(|l| age >= *l) {
            self.lag_read = Some(self.lag_read.map_or(l, |r| r.max(l)));
            // Later than the app's delay said: once, the next read that
            // waits for quota comes as soon as a speculative one would.
            if !self.late {
                self.late = true;
                self.read_at = self.probe_at;
            }
        }
    }

    /// A speculative read at `age` was not sent (or only in part): the
    /// next as if it had been, so that speculative reads never take more
    /// than their share however short the quota.
    fn deferred(&mut self, age: f64) {
        self.probe_at = age + PROBE_MIN.max(age * PROBE_SHARE);
    }
}

#[cfg(test)]
mod schedule_tests {
    use super::*;

    /// What one round of reads teaches a fresh app.
    fn lag_from(seen: &[Seen]) -> Option<f64> {
        let mut d = Delays::default();
        d.learn(seen);
        d.lag()
    }

    /// The wait a schedule names, to the millisecond.
    fn wait(d: Due) -> Option<i64> {
        match d {
            Due::In(s) => Some((s * 1000.0).round() as i64),
            _ => None,
        }
    }

    #[test]
    fn while_the_app_still_has_removals_to_answer_only_the_backoff_reads() {
        let mut w = Watch::new(0.25);
        assert_eq!(wait(w.due(0.0, None, None, false)), Some(250));
        assert_eq!(wait(w.due(0.1, Some(2.0), None, false)), Some(150));
        assert_eq!(w.due(0.25, None, None, false), Due::Read);
        // Listed at 0.25: the next such read after as long again.
        w.listed(0.25, None, 0.25);
        assert_eq!(wait(w.due(0.3, None, None, false)), Some(200));
        // Never more than five seconds apart.
        w.listed(20.0, None, 0.25);
        assert_eq!(wait(w.due(20.0, None, None, false)), Some(5000));
    }

    #[test]
    fn once_the_app_has_answered_everything_a_speculative_read_goes_at_once_then_every_share_of_the_wait()
     {
        let mut w = Watch::new(0.25);
        assert_eq!(w.due(0.01, None, None, true), Due::Probe);
        w.listed(0.01, None, 0.25);
        // At least 100 ms apart...
        assert_eq!(wait(w.due(0.05, None, None, true)), Some(60));
        assert_eq!(w.due(0.11, None, None, true), Due::Probe);
        // ...else 15% of the age: listed at 2 s, the next at 2.3 s.
        w.listed(2.0, None, 0.25);
        assert_eq!(wait(w.due(2.2, None, None, true)), Some(100));
        assert_eq!(w.due(2.3, None, None, true), Due::Probe);
        // Not sent (no quota to spare): the next one as if it had been.
        w.deferred(2.3);
        assert_eq!(wait(w.due(2.35, None, None, true)), Some(295));
    }

    #[test]
    fn a_learned_delay_brings_one_read_that_waits_for_quota_when_it_is_reached() {
        let mut w = Watch::new(5.0);
        assert_eq!(wait(w.due(1.0, Some(1.5), None, false)), Some(500));
        assert_eq!(w.due(1.5, Some(1.5), None, false), Due::Read);
        // No speculative read before the delay, even with every removal answered.
        let mut v = Watch::new(5.0);
        assert_eq!(wait(v.due(0.2, Some(1.5), None, true)), Some(1300));
        // Still listed then: one quick read that waits for quota, as soon
        // as a speculative one would (15% of 1.5 s later)...
        w.listed(1.5, Some(1.5), 5.0);
        assert_eq!(wait(w.due(1.6, Some(1.5), None, false)), Some(125));
        assert_eq!(w.due(1.725, Some(1.5), None, false), Due::Read);
        // ...then the backoff; no second read for the delay.
        w.listed(1.725, Some(1.5), 5.0);
        assert_eq!(wait(w.due(1.8, Some(1.5), None, false)), Some(4925));
    }

    #[test]
    fn once_the_delay_is_known_closely_no_backoff_read_comes_before_it() {
        let g = |kind, age, gone| Seen {
            kind,
            age,
            span: 0.0,
            gone,
            listed_at: None,
        };
        use GrantKind::{Account, ApiKey, Session};
        let mut d = Delays::default();
        // Known loosely: nothing held back.
        d.learn(&[g(ApiKey, 0.9, false), g(ApiKey, 1.45, true)]);
        assert_eq!(d.hold(Account), None);
        // Known closely: held back to it, for every kind...
        d.learn(&[g(ApiKey, 1.4, false)]);
        assert_eq!(d.hold(Account), Some(1.45));
        assert_eq!(d.hold(ApiKey), Some(1.45));
        // ...but a kind seen gone sooner is not held past that.
        d.learn(&[g(Session, 0.3, true)]);
        assert_eq!(d.hold(Session), Some(0.3));
        // The backoff read due at 0.25 s and 0.5 s waits for 1.45 s...
        let mut w = Watch::new(0.25);
        assert_eq!(wait(w.due(0.3, None, Some(1.45), false)), Some(1150));
        assert_eq!(w.due(1.45, Some(1.45), Some(1.45), false), Due::Read);
        // ...and once read there, the backoff goes on as before.
        w.listed(1.45, Some(1.45), 0.25);
        assert_eq!(w.due(1.7, Some(1.45), Some(1.45), false), Due::Read);
        // Without it, the backoff's first read comes at 0.25 s.
        let mut v = Watch::new(0.25);
        assert_eq!(v.due(0.3, None, None, false), Due::Read);
    }

    #[test]
    fn the_delay_is_learned_from_removals_seen_listed_then_gone() {
        let g = |kind, age, gone, listed_at| Seen {
            kind,
            age,
            span: 0.0,
            gone,
            listed_at,
        };
        use GrantKind::{BackupCodes, Group, OauthGrant, Session};
        assert_eq!(lag_from(&[]), None);
        // Gone at the first read: nothing learned.
        assert_eq!(lag_from(&[g(Group, 0.3, true, None)]), None);
        // Listed at 1.2 s and gone at 1.6 s; another listed at 1.3 s and
        // gone at 1.8 s: between 1.3 and 1.6, so 1.6.
        assert_eq!(
            lag_from(&[
                g(Group, 1.6, true, Some(1.2)),
                g(Group, 1.8, true, Some(1.3))
            ]),
            Some(1.6)
        );
        // In one read, one gone at 1.6 s and another of its kind still
        // listed at 1.4 s: 1.6.
        assert_eq!(
            lag_from(&[
                g(OauthGrant, 1.6, true, None),
                g(OauthGrant, 1.4, false, None)
            ]),
            Some(1.6)
        );
        // Inconsistent (one listed older than another was gone): the
        // longest gone, so that the read at it finds them gone.
        assert_eq!(
            lag_from(&[
                g(Group, 0.5, true, Some(0.1)),
                g(Group, 1.4, true, Some(0.9))
            ]),
            Some(1.4)
        );
        // Kinds apart: one gone at once says nothing of another's delay;
        // the longest of the kinds' delays is kept.
        assert_eq!(
            lag_from(&[
                g(Session, 0.1, true, None),
                g(Group, 0.9, true, Some(0.5)),
                g(Session, 2.0, true, Some(1.9)),
            ]),
            Some(2.0)
        );
        assert_eq!(
            lag_from(&[g(Group, 500.0, true, Some(100.0))]),
            Some(LAG_CAP)
        );
        // A read that took 0.5 s (waiting for quota): listed at 1.0 s when
        // it began says the delay is longer than 1.0 s; gone at 1.1 s when
        // it began says it is 1.6 s at most.
        let slow = |age, gone| Seen {
            kind: Group,
            age,
            span: 0.5,
            gone,
            listed_at: None,
        };
        assert_eq!(lag_from(&[slow(1.1, true), slow(1.0, false)]), Some(1.6));
        // A kind known closely outweighs one known loosely.
        assert_eq!(
            lag_from(&[
                g(Group, 1.43, false, None),
                g(Group, 1.46, true, None),
                g(BackupCodes, 3.15, true, Some(0.8)),
            ]),
            Some(1.46)
        );
        // Rounds add up: a later, looser gone age does not replace a
        // tighter one...
        let mut d = Delays::default();
        d.learn(&[slow(0.95, false), slow(0.95, true)]);
        assert_eq!(d.lag(), Some(1.45));
        d.learn(&[slow(1.35, true)]);
        assert_eq!(d.lag(), Some(1.45));
        // ...and one listed past it says the delay grew: learned again.
        d.learn(&[slow(1.6, false)]);
        assert_eq!(d.lag(), None);
        d.learn(&[slow(1.7, true)]);
        assert_eq!(d.lag(), Some(2.2));
    }

    #[test]
    fn a_delay_learned_longer_brings_another_read_at_it() {
        let mut w = Watch::new(5.0);
        assert_eq!(w.due(1.0, Some(1.0), None, false), Due::Read);
        w.listed(1.0, Some(1.0), 5.0);
        w.listed(1.15, Some(1.0), 5.0);
        assert_eq!(wait(w.due(1.2, Some(1.0), None, false)), Some(4950));
        // Learned 1.5 s since: one read when it is reached.
        assert_eq!(wait(w.due(1.2, Some(1.5), None, false)), Some(300));
        assert_eq!(w.due(1.5, Some(1.5), None, false), Due::Read);
        // A few hundredths longer is not worth another.
        assert_eq!(wait(w.due(1.6, Some(1.55), None, false)), Some(4550));
    }
}
