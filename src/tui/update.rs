//! `update(&mut Model, Action) -> Vec<Effect>`: the only place the console's
//! state changes. Pure: no I/O, no clock other than the one in the actions.

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::connector::http::HttpNotice;
use crate::connector::{HealthState, Lookup};
use crate::engine::Event;
use crate::model::{Grant, GrantState, Revocation};
use crate::sanitize::clean;

use super::action::{Action, Effect};
use super::model::*;

/// Background discoveries run at most this many at a time (the default of
/// [`Model::background_discoveries`]). Each app's client paces every
/// leaver's requests within that app's quota, so running several at once
/// fills the quotas instead of waiting on one leaver's slowest app; the
/// selected leaver still comes first.
pub const BACKGROUND_DISCOVERIES: usize = 8;

/// What the console does when it opens: discover the selected leaver, then
/// the rest of the queue in order.
pub fn init(model: &mut Model) -> Vec<Effect> {
    model.dirty = true;
    schedule_discovery(model)
}

/// Starts the discoveries due: the selected leaver's first (whenever the
/// selection moves to a leaver not yet discovered), then, once it is done,
/// the others in queue order, `model.background_discoveries` at a time. A failed
/// discovery waits until the operator asks again (`v`).
pub fn schedule_discovery(model: &mut Model) -> Vec<Effect> {
    let mut fx = Vec::new();
    let due = |l: &LeaverRow| !l.discovered && !l.discovering && l.discovery_error.is_none();
    let selected = model.selected_index();
    if let Some(i) = selected {
        let l = &mut model.leavers[i];
        if due(l) {
            l.discovering = true;
            fx.push(Effect::Discover {
                email: l.email.clone(),
            });
        }
        if l.discovering {
            return fx;
        }
    }
    let mut running = model.leavers.iter().filter(|l| l.discovering).count();
    let limit = model.background_discoveries.max(1);
    for l in &mut model.leavers {
        if running >= limit {
            break;
        }
        if due(l) {
            l.discovering = true;
            running += 1;
            fx.push(Effect::Discover {
                email: l.email.clone(),
            });
        }
    }
    fx
}

pub fn update(model: &mut Model, action: Action) -> Vec<Effect> {
    // Moving through the grant list changes no grant: skip the recompute.
    let nav_only = model.focus == Focus::Grants
        && model.input.is_none()
        && model.dialog.is_none()
        && matches!(&action, Action::Key(k) if matches!(
            k.code,
            KeyCode::Up | KeyCode::Down | KeyCode::Char('j' | 'k') | KeyCode::PageUp | KeyCode::PageDown
        ));
    let fx = match action {
        Action::Key(key) => {
            if key.kind != KeyEventKind::Press {
                return Vec::new();
            }
            model.dirty = true;
            on_key(model, key)
        }
        Action::Resize(w, h) => {
            model.size = (w, h);
            model.dirty = true;
            Vec::new()
        }
        Action::Tick(now) => on_tick(model, now),
        Action::Engine(ev) => {
            model.dirty = true;
            if let Some(b) = model.batch.as_mut() {
                b.progress.observe(&ev);
            }
            on_event(model, ev);
            Vec::new()
        }
        Action::AutoRan { result, cases } => {
            model.dirty = true;
            model.auto_running = false;
            for snap in cases {
                let email = snap.email.clone();
                apply_snapshot(model, &email, snap);
            }
            match result {
                Ok(lines) if lines.is_empty() => {}
                Ok(lines) => {
                    for l in lines {
                        model.log(Level::Info, format!("auto: {}", clean(&l)));
                    }
                }
                Err(e) => {
                    let e = clean(&e);
                    model.log(Level::Error, format!("auto: {e}"));
                    model.message = Some((Level::Error, format!("auto: {e}")));
                }
            }
            Vec::new()
        }
        Action::BatchPrepared { emails, result } => {
            model.dirty = true;
            if let Some(Dialog::Batch {
                emails: open,
                plan,
                error,
                ..
            }) = model.dialog.as_mut()
                && *open == emails
            {
                match result {
                    Ok(p) => *plan = Some(p),
                    Err(e) => *error = Some(clean(&e)),
                }
            }
            Vec::new()
        }
        Action::BatchFinished { result, cases } => {
            model.dirty = true;
            for snap in cases {
                let email = snap.email.clone();
                apply_snapshot(model, &email, snap);
            }
            let emails = model
                .batch
                .as_ref()
                .map(|b| b.emails.clone())
                .unwrap_or_default();
            for e in &emails {
                if let Some(l) = model.leaver_mut(e) {
                    l.revoking = false;
                }
            }
            if let Some(b) = model.batch.as_mut() {
                b.running = false;
            }
            match result {
                Ok(out) => {
                    if let Some(b) = model.batch.as_mut() {
                        b.paused = out.paused.as_deref().map(clean);
                        b.not_started = out.not_started.clone();
                        // Leavers whose `Finished` event is still on its way.
                        for (email, r) in &out.finished {
                            b.progress.finish(email, r);
                        }
                    }
                    if let Some(why) = &out.paused {
                        let text = format!(
                            "batch PAUSED: circuit breaker: {}; {} leaver(s) not started",
                            clean(why),
                            out.not_started.len()
                        );
                        model.log(Level::Error, text.clone());
                        model.message = Some((Level::Error, text));
                    } else {
                        let level = if out.exit_code() == 0 {
                            Level::Good
                        } else {
                            Level::Warn
                        };
                        let text = format!(
                            "batch: {} of {} leaver(s) run{}",
                            out.finished.len(),
                            emails.len(),
                            if out.exit_code() == 0 {
                                " - all closed"
                            } else {
                                "; some need attention"
                            }
                        );
                        model.log(level, text.clone());
                        model.message = Some((level, text));
                    }
                }
                Err(e) => {
                    let e = clean(&e);
                    model.log(Level::Error, format!("batch: {e}"));
                    model.message = Some((Level::Error, format!("batch: {e}")));
                }
            }
            Vec::new()
        }
        Action::Discovered {
            email,
            result,
            health,
        } => {
            model.dirty = true;
            apply_health(model, &health);
            let now = model.now;
            let mut fx = Vec::new();
            match result {
                Ok(snap) => {
                    apply_snapshot(model, &email, snap);
                    if let Some(l) = model.leaver_mut(&email) {
                        l.discovering = false;
                        l.discovered = true;
                        l.discovery_error = None;
                        l.as_of = Some(now);
                    }
                    for c in &mut model.connectors {
                        c.last_refresh = Some(now);
                        c.next_due = Some(now + chrono_dur(c.effective_interval()));
                    }
                    let n = model
                        .leaver_mut(&email)
                        .map(|l| l.grants.len())
                        .unwrap_or(0);
                    model.log(Level::Info, format!("{email}: discovered {n} grants"));
                    let not_found = model.leaver_mut(&email).is_some_and(|l| {
                        l.status() == super::model::LeaverStatus::NotFoundAnywhere
                    });
                    let warnings = crate::model::address_warning(&email)
                        .into_iter()
                        .chain(not_found.then(|| crate::engine::NOT_FOUND_ANYWHERE.to_string()));
                    for w in warnings {
                        let w = format!("{email}: {}", clean(&w));
                        model.log(Level::Warn, w.clone());
                        model.message = Some((Level::Warn, w));
                    }
                    fx = resume_interrupted(model, &email);
                }
                Err(e) => {
                    let e = clean(&e);
                    if let Some(l) = model.leaver_mut(&email) {
                        l.discovering = false;
                        l.discovery_error = Some(e.clone());
                    }
                    model.log(Level::Error, format!("{email}: discovery failed: {e}"));
                    model.message = Some((Level::Error, format!("discovery failed: {e}")));
                }
            }
            fx
        }
        Action::Refreshed {
            email,
            connector,
            result,
            health,
            at,
        } => {
            model.dirty = true;
            apply_health(model, &health);
            let ok = result.is_ok();
            match result {
                Ok(snap) => {
                    apply_snapshot(model, &email, snap);
                    if let Some(l) = model.leaver_mut(&email) {
                        l.as_of = Some(at);
                    }
                }
                Err(e) => model.log(
                    Level::Warn,
                    format!(
                        "refresh of {} failed: {}",
                        connector.as_deref().unwrap_or("all apps"),
                        clean(&e)
                    ),
                ),
            }
            let mut fx = Vec::new();
            for c in &mut model.connectors {
                if connector.as_deref().is_some_and(|id| id != c.id) {
                    continue;
                }
                c.in_flight = false;
                if ok {
                    c.last_refresh = Some(at);
                }
                if ok && !matches!(c.health, HealthState::RateLimited | HealthState::Degraded) {
                    c.backoff = 0;
                } else {
                    c.backoff = (c.backoff + 1).min(6);
                }
                let due = model.now + chrono_dur(c.effective_interval());
                c.next_due = Some(c.next_due.map_or(due, |d| d.max(due)));
                if c.pending {
                    c.pending = false;
                    c.in_flight = true;
                    fx.push(Effect::Refresh {
                        email: email.clone(),
                        connector: Some(c.id.clone()),
                    });
                }
            }
            fx
        }
        Action::RevokeFinished {
            email,
            result,
            case,
        } => {
            model.dirty = true;
            if let Some(snap) = case {
                apply_snapshot(model, &email, snap);
            }
            if let Some(l) = model.leaver_mut(&email) {
                l.revoking = false;
            }
            match result {
                Ok(s) => {
                    let left = s.live + s.removing + s.unconfirmed + s.failed + s.manual;
                    let text = format!(
                        "{email}: {} verified, {} acknowledged, {} unconfirmed, {} failed, {} manual{}",
                        s.verified,
                        s.acknowledged,
                        s.unconfirmed,
                        s.failed,
                        s.manual,
                        if left == 0 { " - all closed" } else { "" }
                    );
                    let level = if left == 0 { Level::Good } else { Level::Warn };
                    model.log(level, text.clone());
                    model.message = Some((level, text));
                }
                Err(e) => {
                    let e = clean(&e);
                    model.log(Level::Error, format!("{email}: revoke failed: {e}"));
                    model.message = Some((Level::Error, format!("revoke failed: {e}")));
                }
            }
            Vec::new()
        }
        Action::ManualDone {
            email,
            key,
            result,
            case,
        } => {
            model.dirty = true;
            if let Some(snap) = case {
                apply_snapshot(model, &email, snap);
            }
            match result {
                Ok(()) => {
                    model.log(
                        Level::Good,
                        format!("{key}: manual step done (recorded in the ledger)"),
                    );
                    model.message = Some((Level::Good, format!("{key}: marked done")));
                }
                Err(e) => {
                    let e = clean(&e);
                    model.log(
                        Level::Error,
                        format!("{key}: could not record the manual step: {e}"),
                    );
                    model.message = Some((Level::Error, format!("not recorded: {e}")));
                }
            }
            Vec::new()
        }
        Action::TookOver { email, result } => {
            model.dirty = true;
            match result {
                Ok(text) => {
                    let text = clean(&text);
                    model.log(Level::Good, text.clone());
                    model.message = Some((Level::Good, text));
                }
                Err(e) => {
                    let text = format!("{email}: take-over failed: {}", clean(&e));
                    model.log(Level::Error, text.clone());
                    model.message = Some((Level::Error, text));
                }
            }
            Vec::new()
        }
        Action::Exported { email, result } => {
            model.dirty = true;
            match result {
                Ok(path) => {
                    let path = clean(&path.display().to_string());
                    let text = format!("report for {email} written to {path}");
                    model.log(Level::Good, text);
                    // The whole path, in a dialog: a footer line would cut it.
                    model.dialog = Some(Dialog::Notice {
                        title: "Evidence report written".into(),
                        text: vec![
                            format!("The evidence report for {email} is in"),
                            path,
                            String::new(),
                            "Attach it to the ticket; `offboard evidence verify` checks the ledger it came from.".into(),
                        ],
                        scroll: 0,
                    });
                    model.message = Some((Level::Good, "report written".into()));
                }
                Err(e) => {
                    let text = format!("export failed: {}", clean(&e));
                    model.log(Level::Error, text.clone());
                    model.message = Some((Level::Error, text));
                }
            }
            Vec::new()
        }
        Action::LoginPrompt { app, prompt } => {
            model.dirty = true;
            if let Some(Dialog::Login {
                app: open,
                prompt: p,
                ..
            }) = &mut model.dialog
                && *open == app
            {
                *p = Some(prompt);
            }
            Vec::new()
        }
        Action::LoginFinished { app, result } => {
            model.dirty = true;
            login_finished(model, app, result)
        }
        Action::Picked {
            email,
            app,
            account,
            result,
            health,
        } => {
            model.dirty = true;
            apply_health(model, &health);
            let account = clean(&account);
            match result {
                Ok(snap) => {
                    apply_snapshot(model, &email, snap);
                    let text =
                        format!("{app}: {email} is account {account} (recorded in the ledger)");
                    model.log(Level::Good, text.clone());
                    model.message = Some((Level::Good, text));
                }
                Err(e) => {
                    let text = format!("{app}: pick not applied: {}", clean(&e));
                    model.log(Level::Error, text.clone());
                    model.message = Some((Level::Error, text));
                }
            }
            Vec::new()
        }
        Action::Paste(text) => {
            model.dirty = true;
            on_paste(model, &text);
            Vec::new()
        }
        Action::Terminate(why) => {
            model.log(Level::Warn, clean(&why));
            model.quit = true;
            model.dirty = true;
            Vec::new()
        }
    };
    if !nav_only {
        model.recompute_grants();
    }
    let mut fx = fx;
    fx.extend(schedule_discovery(model));
    fx
}

/// A revoke the ledger holds as interrupted (the console was quit or
/// killed during it) continues once its leaver has been read again: the
/// steps not yet closed are requested again (each request is idempotent)
/// and verified. The operator confirmed them when the run started.
fn resume_interrupted(model: &mut Model, email: &str) -> Vec<Effect> {
    let read_only = model.read_only;
    let Some(l) = model.leaver_mut(email) else {
        return Vec::new();
    };
    if l.resume.is_empty() || l.revoking {
        return Vec::new();
    }
    let keys = std::mem::take(&mut l.resume);
    let open = keys
        .iter()
        .filter(|k| l.grant(k).is_some_and(|g| !g.state.is_closed()))
        .count();
    if read_only {
        model.log(
            Level::Warn,
            format!(
                "{email}: a revoke was interrupted ({open} step(s) open); open the console without --read-only to resume it"
            ),
        );
        return Vec::new();
    }
    model.log(
        Level::Warn,
        format!(
            "{email}: resuming the interrupted revoke ({open} of {} step(s) still open, from the evidence ledger)",
            keys.len()
        ),
    );
    start_revoke(
        model,
        email.to_string(),
        RevokeScope {
            keys,
            ..Default::default()
        },
    )
}

fn login_finished(model: &mut Model, app: String, result: Result<String, String>) -> Vec<Effect> {
    let open = matches!(&model.dialog, Some(Dialog::Login { app: a, .. }) if *a == app);
    match result {
        Ok(text) => {
            let text = format!("{app}: {}", clean(&text));
            model.log(Level::Good, text.clone());
            model.message = Some((Level::Good, text));
            if open {
                model.dialog = None;
            }
            // Read again with the new token, so that the header's health
            // reflects it now rather than at the next scheduled refresh.
            let email = model
                .selected()
                .filter(|l| l.discovered)
                .map(|l| l.email.clone());
            let mut fx = Vec::new();
            if let Some(c) = model.connectors.iter_mut().find(|c| c.id == app) {
                c.backoff = 0;
                c.health_detail = None;
                match email {
                    Some(email) if !c.in_flight => {
                        c.in_flight = true;
                        fx.push(Effect::Refresh {
                            email,
                            connector: Some(c.id.clone()),
                        });
                    }
                    Some(_) => c.pending = true,
                    None => c.next_due = None,
                }
            }
            fx
        }
        Err(e) => {
            let e = clean(&e);
            model.log(Level::Error, format!("{app}: sign-in failed: {e}"));
            if let Some(Dialog::Login {
                error, submitted, ..
            }) = &mut model.dialog
                && open
            {
                *error = Some(e);
                *submitted = false;
            } else {
                model.message = Some((Level::Error, format!("{app}: sign-in failed: {e}")));
            }
            Vec::new()
        }
    }
}

/// Pasted text goes to whatever text field is open (control characters and
/// line breaks dropped).
fn on_paste(model: &mut Model, text: &str) {
    let text: String = text.chars().filter(|c| !c.is_control()).collect();
    let field: Option<(&mut String, usize)> = match (&mut model.dialog, &mut model.input) {
        (
            Some(Dialog::Login {
                prompt: Some(LoginPrompt::Code { .. }),
                pasted,
                submitted: false,
                ..
            }),
            _,
        ) => Some((pasted, 4000)),
        (Some(Dialog::RevokeAll { typed, .. }), _) => Some((typed, 320)),
        (Some(Dialog::ManualNote { note, .. }), _) => Some((note, 1000)),
        (None, Some(Input::Command(t) | Input::Filter(t))) => Some((t, 400)),
        _ => None,
    };
    if let Some((field, cap)) = field {
        for c in text.chars() {
            if field.len() >= cap {
                break;
            }
            field.push(c);
        }
    }
    if let (None, Some(Input::Filter(t))) = (&model.dialog, &model.input) {
        let t = t.clone();
        set_filter(model, t);
    }
}

fn chrono_dur(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::seconds(5))
}

/// How often `:auto on` runs the exit-time policy.
pub const AUTO_EVERY_SECS: i64 = 60;

fn on_tick(model: &mut Model, now: DateTime<Utc>) -> Vec<Effect> {
    let minute_changed = now.format("%H:%M").to_string() != model.now.format("%H:%M").to_string();
    model.now = now;
    if model.busy() || model.connectors.iter().any(|c| c.in_flight) {
        model.spinner = model.spinner.wrapping_add(1);
        model.dirty = true;
    }
    if minute_changed {
        model.dirty = true;
    }
    let mut fx = Vec::new();
    // `:auto on`: the exit-time policy, once a minute.
    if model.auto && !model.auto_running && model.auto_next.is_none_or(|t| now >= t) {
        model.auto_running = true;
        model.auto_next = Some(now + chrono::Duration::seconds(AUTO_EVERY_SECS));
        fx.push(Effect::AutoRun);
    }
    // Live refresh of the selected leaver, per connector, one in flight each.
    let Some(l) = model.selected() else {
        return fx;
    };
    if !l.discovered || l.discovering {
        return fx;
    }
    let email = l.email.clone();
    for c in &mut model.connectors {
        if c.in_flight {
            continue;
        }
        if c.next_due.is_none_or(|d| now >= d) {
            c.in_flight = true;
            fx.push(Effect::Refresh {
                email: email.clone(),
                connector: Some(c.id.clone()),
            });
        }
    }
    fx
}

/// Refresh now: every connector not already refreshing; the others run
/// again as soon as their current refresh ends.
fn refresh_now(model: &mut Model) -> Vec<Effect> {
    let Some(l) = model.selected() else {
        return Vec::new();
    };
    let email = l.email.clone();
    if !l.discovered {
        if l.discovering {
            return Vec::new();
        }
        if let Some(l) = model.leaver_mut(&email) {
            l.discovering = true;
            l.discovery_error = None;
        }
        model.message = Some((Level::Info, format!("discovering {email}")));
        return vec![Effect::Discover { email }];
    }
    let mut fx = Vec::new();
    for c in &mut model.connectors {
        if c.in_flight {
            c.pending = true;
        } else {
            c.in_flight = true;
            fx.push(Effect::Refresh {
                email: email.clone(),
                connector: Some(c.id.clone()),
            });
        }
    }
    model.message = Some((Level::Info, format!("refreshing {email}")));
    fx
}

fn apply_health(model: &mut Model, health: &[(String, crate::connector::Health)]) {
    for (id, h) in health {
        if let Some(c) = model.connectors.iter_mut().find(|c| &c.id == id) {
            c.health = h.state;
            c.health_detail = h.detail.as_deref().map(clean);
        }
    }
}

pub fn clean_grant(mut g: Grant) -> Grant {
    g.connector = clean(&g.connector);
    g.id = clean(&g.id);
    g.label = clean(&g.label);
    g.details = clean(&g.details);
    g.since = g.since.as_deref().map(clean);
    if let Revocation::Manual { instructions } = &g.revocation {
        g.revocation = Revocation::Manual {
            instructions: clean(instructions),
        };
    }
    g
}

pub fn clean_state(s: GrantState) -> GrantState {
    match s {
        GrantState::Unconfirmed { reason } => GrantState::Unconfirmed {
            reason: clean(&reason),
        },
        GrantState::Failed { reason } => GrantState::Failed {
            reason: clean(&reason),
        },
        GrantState::Acknowledged { at, note } => GrantState::Acknowledged {
            at,
            note: note.as_deref().map(clean),
        },
        other => other,
    }
}

fn clean_account(a: AccountStatus) -> AccountStatus {
    match a {
        AccountStatus::Found {
            login,
            display_name,
            active,
        } => AccountStatus::Found {
            login: clean(&login),
            display_name: clean(&display_name),
            active,
        },
        AccountStatus::Failed { error } => AccountStatus::Failed {
            error: clean(&error),
        },
        AccountStatus::Ambiguous { candidates } => AccountStatus::Ambiguous {
            candidates: candidates
                .into_iter()
                .map(|c| Candidate {
                    id: clean(&c.id),
                    login: clean(&c.login),
                    display_name: clean(&c.display_name),
                    active: c.active,
                    last_login: c.last_login.as_deref().map(clean),
                })
                .collect(),
        },
        other => other,
    }
}

/// Replaces a leaver's case with the engine's snapshot (sanitised here).
pub fn apply_snapshot(model: &mut Model, email: &str, snap: CaseSnapshot) {
    let email = email.to_string();
    if model.leaver_mut(&email).is_none() {
        model.leavers.push(LeaverRow::new(&email));
    }
    let l = model.leaver_mut(&email).expect("just added");
    if let Some(n) = snap.display_name.as_deref() {
        l.name = Some(clean(n));
    }
    for (id, a) in snap.accounts {
        l.accounts.insert(clean(&id), clean_account(a));
    }
    l.grants = snap
        .grants
        .into_iter()
        .map(|g| GrantRow {
            key: clean(&g.key),
            grant: clean_grant(g.grant),
            state: clean_state(g.state),
            since_state: g.since_state,
            answer: g.answer.as_deref().map(clean),
        })
        .collect();
    let keys: std::collections::BTreeSet<String> = l.grants.iter().map(|g| g.key.clone()).collect();
    if model.selected().is_some_and(|s| s.email == email) {
        model.marks.retain(|k| keys.contains(k));
    }
}

fn is_selected(model: &Model, email: &str) -> bool {
    model.selected().is_some_and(|l| l.email == email)
}

fn on_event(model: &mut Model, ev: Event) {
    match ev {
        Event::CaseOpened { email } => {
            let email = clean(&email);
            if is_selected(model, &email) {
                model.log(Level::Info, format!("case opened for {email}"));
            }
        }
        Event::Discovering { email, connector } => {
            let (email, connector) = (clean(&email), clean(&connector));
            // A lookup repeated by every refresh (no account there yet)
            // keeps what the last one found and says nothing new.
            let mut first = true;
            if let Some(l) = model.leaver_mut(&email) {
                first = matches!(
                    l.accounts.get(&connector),
                    None | Some(AccountStatus::Pending | AccountStatus::Failed { .. })
                );
                if first {
                    l.accounts.insert(connector.clone(), AccountStatus::Pending);
                }
            }
            if first && is_selected(model, &email) {
                model.log(Level::Info, format!("{connector}: looking up {email}"));
            }
        }
        Event::Lookup {
            email,
            connector,
            lookup,
        } => {
            let (email, connector) = (clean(&email), clean(&connector));
            let status = match lookup {
                Lookup::Found { account } => AccountStatus::Found {
                    login: account.login,
                    display_name: account.display_name,
                    active: account.active,
                },
                Lookup::NotFound => AccountStatus::NotFound,
                Lookup::Ambiguous { candidates } => AccountStatus::Ambiguous {
                    candidates: candidates.iter().map(Candidate::from_account).collect(),
                },
            };
            let status = clean_account(status);
            let changed = model
                .leavers
                .iter()
                .find(|l| l.email == email)
                .and_then(|l| l.accounts.get(&connector))
                .is_none_or(|old| {
                    matches!(old, AccountStatus::Pending) || old.label() != status.label()
                });
            // Background discoveries log one summary line each, not every
            // step: the pane stays about the leaver on screen; a lookup
            // that finds what the last one found says nothing.
            if changed
                && (is_selected(model, &email) || matches!(status, AccountStatus::Ambiguous { .. }))
            {
                model.log(
                    Level::Info,
                    format!("{connector}: {email}: account {}", status.label()),
                );
            }
            if let Some(l) = model.leaver_mut(&email) {
                if let AccountStatus::Found { display_name, .. } = &status
                    && l.name.is_none()
                    && !display_name.is_empty()
                {
                    l.name = Some(display_name.clone());
                }
                l.accounts.insert(connector, status);
            }
        }
        Event::LookupFailed {
            email,
            connector,
            error,
        } => {
            let (email, connector, error) = (clean(&email), clean(&connector), clean(&error));
            model.log(
                Level::Error,
                format!("{connector}: lookup of {email} failed: {error}"),
            );
            if let Some(l) = model.leaver_mut(&email) {
                l.accounts
                    .insert(connector, AccountStatus::Failed { error });
            }
        }
        Event::Inventory {
            email,
            connector,
            grants,
            failed,
            at,
        } => {
            let (email, connector) = (clean(&email), clean(&connector));
            if let Some(c) = model.connectors.iter_mut().find(|c| c.id == connector) {
                c.last_refresh = Some(at);
            }
            let mut added = 0;
            if let Some(l) = model.leaver_mut(&email) {
                for g in grants {
                    let g = clean_grant(g);
                    let key = g.key();
                    if l.grant(&key).is_none() {
                        let state = if g.is_manual() {
                            GrantState::Manual
                        } else {
                            GrantState::Live
                        };
                        l.grants.push(GrantRow {
                            key,
                            grant: g,
                            state,
                            since_state: Some(at),
                            answer: None,
                        });
                        added += 1;
                    }
                }
            }
            if added > 0 && is_selected(model, &email) {
                model.log(
                    Level::Info,
                    format!("{connector}: {added} new grants for {email}"),
                );
            }
            for (kind, err) in failed {
                model.log(
                    Level::Warn,
                    format!("{connector}: could not list {kind}: {}", clean(&err)),
                );
            }
        }
        Event::Planned { email, plan } => {
            let email = clean(&email);
            model.log(
                Level::Info,
                format!(
                    "{email}: plan of {} steps in {} phases",
                    plan.len(),
                    plan.phases.len()
                ),
            );
            if let Some(l) = model.leaver_mut(&email) {
                l.progress = plan
                    .phases
                    .iter()
                    .map(|p| (p.phase, (0, p.steps.len())))
                    .collect();
            }
        }
        Event::State {
            email,
            key,
            state,
            at,
        } => {
            let (email, key) = (clean(&email), clean(&key));
            let state = clean_state(state);
            let mut label = key.clone();
            if let Some(l) = model.leaver_mut(&email)
                && let Some(g) = l.grants.iter_mut().find(|g| g.key == key)
            {
                label = format!("{} ({})", g.grant.label, g.grant.connector);
                g.state = state.clone();
                g.since_state = Some(at);
            }
            let level = match &state {
                GrantState::Verified { .. } | GrantState::Acknowledged { .. } => Level::Good,
                GrantState::Failed { .. } => Level::Error,
                GrantState::Unconfirmed { .. } => Level::Warn,
                _ => Level::Info,
            };
            let verb = match &state {
                GrantState::Revoking => "requested".to_string(),
                GrantState::Removed => "accepted, confirming".to_string(),
                GrantState::Verified { at } => {
                    format!("verified gone at {}", at.format("%H:%M:%S"))
                }
                GrantState::Unconfirmed { reason } => format!("escalated: unconfirmed ({reason})"),
                other => other.to_string(),
            };
            model.log(level, format!("{label}: {verb}"));
        }
        Event::ApiAnswer { email, key, answer } => {
            let (email, key, answer) = (clean(&email), clean(&key), clean(&answer));
            if let Some(l) = model.leaver_mut(&email)
                && let Some(g) = l.grants.iter_mut().find(|g| g.key == key)
            {
                g.answer = Some(answer.clone());
            }
            model.log(Level::Info, format!("{key}: API answered {answer}"));
        }
        Event::PhaseProgress {
            email,
            phase,
            done,
            total,
        } => {
            if let Some(l) = model.leaver_mut(&clean(&email)) {
                l.revoking = true;
                l.progress.insert(phase, (done, total));
            }
        }
        Event::Finished { email, summary } => {
            let email = clean(&email);
            model.log(
                Level::Info,
                format!(
                    "{email}: finished ({} verified, {} acknowledged)",
                    summary.verified, summary.acknowledged
                ),
            );
        }
        Event::Http(n) => match n {
            HttpNotice::RateLimited {
                connector,
                wait,
                attempt,
            } => {
                let connector = clean(&connector);
                if let Some(c) = model.connectors.iter_mut().find(|c| c.id == connector) {
                    c.health = HealthState::RateLimited;
                    let until = model.now + chrono_dur(wait.max(c.effective_interval()));
                    c.next_due = Some(c.next_due.map_or(until, |d| d.max(until)));
                }
                // One line per burst: a run of rate limits updates the
                // last line instead of flooding the pane.
                let prefix = format!("{connector}: rate-limited");
                let now = model.now;
                match model.activity.back_mut() {
                    Some(last) if last.text.starts_with(&prefix) => {
                        let n = last
                            .text
                            .strip_prefix(&format!("{prefix} "))
                            .and_then(|r| r.split_once(" times"))
                            .and_then(|(n, _)| n.parse::<u64>().ok())
                            .unwrap_or(1);
                        last.text = format!(
                            "{prefix} {} times, waiting {:.1}s before retrying",
                            n + 1,
                            wait.as_secs_f64()
                        );
                        last.at = now;
                    }
                    _ => model.log(
                        Level::Warn,
                        format!(
                            "{prefix}, waiting {:.1}s before retrying (attempt {attempt})",
                            wait.as_secs_f64()
                        ),
                    ),
                }
            }
            HttpNotice::Retrying {
                connector,
                wait,
                attempt,
                reason,
            } => {
                model.log(
                    Level::Warn,
                    format!(
                        "{}: retry {attempt} in {:.1}s: {}",
                        clean(&connector),
                        wait.as_secs_f64(),
                        clean(&reason)
                    ),
                );
            }
            HttpNotice::TokenRenewed { connector } => {
                model.log(Level::Info, format!("{}: token renewed", clean(&connector)));
            }
        },
        Event::Health { connector, health } => {
            apply_health(model, &[(connector, health)]);
        }
        Event::Error { email, message } => {
            let message = clean(&message);
            let text = match email {
                Some(e) => format!("{}: {message}", clean(&e)),
                None => message,
            };
            model.log(Level::Error, text.clone());
            model.message = Some((Level::Error, text));
        }
        Event::Holder {
            email,
            holder,
            since,
        } => {
            let email = clean(&email);
            if model.leaver_mut(&email).is_none() {
                model.leavers.push(LeaverRow::new(&email));
            }
            let holder = holder.zip(since).map(|(h, t)| (clean(&h), t));
            if let Some(l) = model.leaver_mut(&email) {
                l.holder = holder;
            }
        }
        Event::TeamStep {
            email,
            operator,
            text,
        } => {
            let email = clean(&email);
            if !email.is_empty() && model.leaver_mut(&email).is_none() {
                model.leavers.push(LeaverRow::new(&email));
            }
            model.log(
                Level::Info,
                format!("[{}] {email}: {}", clean(&operator), clean(&text)),
            );
        }
    }
}

fn on_key(model: &mut Model, key: KeyEvent) -> Vec<Effect> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && key.code == KeyCode::Char('c') {
        // Asked once while work is in flight; a second Ctrl-C quits.
        if matches!(model.dialog, Some(Dialog::Quit { .. })) {
            model.quit = true;
        } else {
            ask_quit(model);
        }
        return Vec::new();
    }
    if model.dialog.is_some() {
        return on_dialog_key(model, key);
    }
    if model.input.is_some() {
        return on_input_key(model, key);
    }
    model.message = None;
    if ctrl && key.code == KeyCode::Char('r') {
        return refresh_now(model);
    }
    match key.code {
        KeyCode::Char('q') => {
            ask_quit(model);
            Vec::new()
        }
        KeyCode::Char('o') if model.focus == Focus::Grants => {
            toggle_open_only(model);
            Vec::new()
        }
        KeyCode::Char('j') | KeyCode::Down => {
            move_sel(model, 1);
            Vec::new()
        }
        KeyCode::Char('k') | KeyCode::Up => {
            move_sel(model, -1);
            Vec::new()
        }
        KeyCode::PageDown => {
            move_sel(model, 10);
            Vec::new()
        }
        KeyCode::PageUp => {
            move_sel(model, -10);
            Vec::new()
        }
        KeyCode::Char('g') | KeyCode::Home => {
            move_sel(model, -1_000_000);
            Vec::new()
        }
        KeyCode::Char('G') | KeyCode::End => {
            move_sel(model, 1_000_000);
            Vec::new()
        }
        KeyCode::Tab => {
            model.focus = next_focus(model, true);
            Vec::new()
        }
        KeyCode::BackTab => {
            model.focus = next_focus(model, false);
            Vec::new()
        }
        KeyCode::Enter => on_enter(model),
        KeyCode::Esc
            if model.batch.as_ref().is_some_and(|b| !b.running)
                && model.screen == Screen::Overview
                && model.focus == Focus::Queue
                && model.filter_queue.is_empty() =>
        {
            model.batch = None;
            Vec::new()
        }
        KeyCode::Esc => {
            on_esc(model);
            Vec::new()
        }
        KeyCode::Char('/') => {
            let current = match model.focus {
                Focus::Queue => model.filter_queue.clone(),
                Focus::Matrix => model.filter_apps.clone(),
                Focus::Grants => model.filter_grants.clone(),
                Focus::Activity => return Vec::new(),
            };
            model.input = Some(Input::Filter(current));
            Vec::new()
        }
        KeyCode::Char(':') => {
            model.input = Some(Input::Command(String::new()));
            Vec::new()
        }
        KeyCode::Char('?') => {
            model.dialog = Some(Dialog::Help { scroll: 0 });
            Vec::new()
        }
        KeyCode::Char('v') => refresh_now(model),
        KeyCode::Char(' ') if !model.read_only && model.focus == Focus::Queue => {
            toggle_pick(model);
            Vec::new()
        }
        KeyCode::Char(' ') if !model.read_only => {
            toggle_mark(model);
            Vec::new()
        }
        KeyCode::Char('B') if !model.read_only => open_batch(model),
        KeyCode::Char('r') if !model.read_only => {
            open_revoke(model);
            Vec::new()
        }
        KeyCode::Char('R') if !model.read_only => {
            open_revoke_all(model);
            Vec::new()
        }
        KeyCode::Char(' ' | 'r' | 'R' | 'B') => {
            model.message = Some((Level::Info, "read-only: no changes can be made".into()));
            Vec::new()
        }
        _ => {
            model.dirty = false;
            Vec::new()
        }
    }
}

/// Quits, unless a revoke is in flight: then asks first (focus on Stay).
fn ask_quit(model: &mut Model) {
    if model.in_flight().is_empty() {
        model.quit = true;
    } else {
        model.dialog = Some(Dialog::Quit {
            quit_focused: false,
        });
    }
}

/// `o` in the drill-down: only the grants still open, or all again.
fn toggle_open_only(model: &mut Model) {
    let terms: Vec<&str> = model
        .filter_grants
        .split('|')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    let f = if terms.iter().any(|t| t.eq_ignore_ascii_case("open")) {
        String::new()
    } else {
        "open".to_string()
    };
    model.message = Some((
        Level::Info,
        if f.is_empty() {
            "showing every grant".into()
        } else {
            "showing open grants only (o again: all)".into()
        },
    ));
    model.filter_grants = f;
    model.grant_sel = 0;
    model.grant_offset.set(0);
    model.recompute_grants();
}

fn next_focus(model: &Model, forward: bool) -> Focus {
    let order: &[Focus] = match model.screen {
        Screen::Overview => &[Focus::Queue, Focus::Matrix, Focus::Activity],
        Screen::Drill(_) => &[Focus::Queue, Focus::Grants, Focus::Activity],
    };
    let i = order.iter().position(|f| *f == model.focus).unwrap_or(0);
    let n = order.len();
    order[if forward {
        (i + 1) % n
    } else {
        (i + n - 1) % n
    }]
}

fn move_sel(model: &mut Model, delta: i64) {
    fn step(cur: usize, len: usize, delta: i64) -> usize {
        if len == 0 {
            return 0;
        }
        (cur as i64 + delta).clamp(0, len as i64 - 1) as usize
    }
    match model.focus {
        Focus::Queue => {
            let before = model.selected_index();
            model.queue_sel = step(model.queue_sel, model.queue_view().len(), delta);
            if model.selected_index() != before {
                leaver_changed(model);
            }
        }
        Focus::Matrix => model.matrix_sel = step(model.matrix_sel, model.app_view().len(), delta),
        Focus::Grants => model.grant_sel = step(model.grant_sel, model.grant_view.len(), delta),
        Focus::Activity => {
            let max = model.activity.len().saturating_sub(1) as i64;
            model.activity_back = (model.activity_back as i64 - delta).clamp(0, max) as usize;
        }
    }
}

/// A different leaver is selected: marks and the drill position reset, and
/// the new leaver's connectors refresh soon.
fn leaver_changed(model: &mut Model) {
    model.marks.clear();
    model.grant_sel = 0;
    model.grant_offset.set(0);
    for c in &mut model.connectors {
        c.next_due = None;
    }
    model.recompute_grants();
}

fn on_enter(model: &mut Model) -> Vec<Effect> {
    match model.focus {
        Focus::Queue => {
            model.focus = match model.screen {
                Screen::Overview => Focus::Matrix,
                Screen::Drill(_) => Focus::Grants,
            };
            refresh_if_new(model)
        }
        Focus::Matrix => {
            if let Some(app) = model.selected_app() {
                let id = app.id.clone();
                if !open_accounts(model, &id) {
                    drill(model, id);
                }
            }
            Vec::new()
        }
        Focus::Grants => {
            let Some(g) = model.selected_grant().cloned() else {
                if let Screen::Drill(app) = &model.screen {
                    let app = app.clone();
                    open_accounts(model, &app);
                }
                return Vec::new();
            };
            let Revocation::Manual { instructions } = &g.grant.revocation else {
                model.dialog = Some(Dialog::GrantDetail {
                    key: g.key.clone(),
                    scroll: 0,
                });
                return Vec::new();
            };
            if g.state.is_closed() {
                model.dialog = Some(Dialog::GrantDetail {
                    key: g.key.clone(),
                    scroll: 0,
                });
                return Vec::new();
            }
            if model.read_only {
                model.message = Some((Level::Info, "read-only: no changes can be made".into()));
                return Vec::new();
            }
            if g.state.is_closed() {
                model.message = Some((Level::Info, format!("{}: already done", g.grant.label)));
                return Vec::new();
            }
            let email = model
                .selected()
                .map(|l| l.email.clone())
                .unwrap_or_default();
            model.dialog = Some(Dialog::ManualNote {
                email,
                key: g.key.clone(),
                label: g.grant.label.clone(),
                instructions: instructions.clone(),
                note: String::new(),
            });
            Vec::new()
        }
        Focus::Activity => Vec::new(),
    }
}

/// Opens the list of accounts that match the selected leaver in `app`,
/// when there are several. Returns whether it did.
fn open_accounts(model: &mut Model, app: &str) -> bool {
    let Some(l) = model.selected() else {
        return false;
    };
    let Some(AccountStatus::Ambiguous { candidates }) = l.accounts.get(app) else {
        return false;
    };
    model.dialog = Some(Dialog::Accounts {
        email: l.email.clone(),
        app: app.to_string(),
        candidates: candidates.clone(),
        selected: 0,
    });
    true
}

fn refresh_if_new(model: &mut Model) -> Vec<Effect> {
    match model.selected() {
        Some(l) if !l.discovered && !l.discovering => {
            let email = l.email.clone();
            if let Some(l) = model.leaver_mut(&email) {
                l.discovering = true;
            }
            vec![Effect::Discover { email }]
        }
        _ => Vec::new(),
    }
}

fn drill(model: &mut Model, app: String) {
    model.screen = Screen::Drill(app);
    model.focus = Focus::Grants;
    model.grant_sel = 0;
    model.grant_offset.set(0);
    model.filter_grants.clear();
    model.recompute_grants();
}

fn on_esc(model: &mut Model) {
    match model.focus {
        Focus::Grants if !model.filter_grants.is_empty() => model.filter_grants.clear(),
        Focus::Queue if !model.filter_queue.is_empty() => {
            // Keep the selected leaver selected once the filter is gone.
            let keep = model.selected_index();
            model.filter_queue.clear();
            if let Some(i) = keep {
                model.queue_sel = i;
            }
        }
        Focus::Matrix if !model.filter_apps.is_empty() => model.filter_apps.clear(),
        _ => {
            if let Screen::Drill(app) = &model.screen {
                let app = app.clone();
                model.screen = Screen::Overview;
                model.focus = Focus::Matrix;
                model.filter_grants.clear();
                if let Some(i) = model
                    .app_view()
                    .iter()
                    .position(|&i| model.connectors[i].id == app)
                {
                    model.matrix_sel = i;
                }
            } else if model.focus != Focus::Queue {
                model.focus = Focus::Queue;
            }
        }
    }
}

/// Picks (or unpicks) the selected leaver for a batch.
fn toggle_pick(model: &mut Model) {
    if let Some(email) = model.selected().map(|l| l.email.clone()) {
        if !model.picked.remove(&email) {
            model.picked.insert(email);
        }
        model.message = Some((
            Level::Info,
            format!(
                "{} leaver(s) picked; B revokes them as one batch",
                model.picked.len()
            ),
        ));
        move_sel(model, 1);
    }
}

/// `B`: the picked leavers (or the selected one) as one batch: first its
/// dry run, then the exact count typed.
fn open_batch(model: &mut Model) -> Vec<Effect> {
    if model.batch.as_ref().is_some_and(|b| b.running) {
        model.message = Some((Level::Info, "a batch is already running".into()));
        return Vec::new();
    }
    let emails: Vec<String> = model
        .leavers
        .iter()
        .filter(|l| model.picked.contains(&l.email))
        .map(|l| l.email.clone())
        .collect();
    if emails.is_empty() {
        model.message = Some((
            Level::Info,
            "pick leavers with Space in the queue, then B".into(),
        ));
        return Vec::new();
    }
    model.dialog = Some(Dialog::Batch {
        emails: emails.clone(),
        plan: None,
        typed: String::new(),
        error: None,
    });
    vec![Effect::BatchPrepare { emails }]
}

fn start_batch(model: &mut Model, emails: Vec<String>, plan: &BatchPlan) -> Vec<Effect> {
    let n = emails.len();
    for e in &emails {
        if let Some(l) = model.leaver_mut(e) {
            l.revoking = true;
            l.progress.clear();
        }
    }
    model.batch = Some(BatchView {
        emails: emails.clone(),
        progress: crate::fleet::batch::Progress::new(&emails, &plan.requests, &plan.quotas),
        running: true,
        paused: None,
        not_started: Vec::new(),
    });
    model.picked.clear();
    model.activity_back = 0;
    model.log(
        Level::Info,
        format!("batch of {n} leaver(s) requested by {}", model.operator),
    );
    vec![Effect::BatchRun { emails, confirm: n }]
}

fn toggle_mark(model: &mut Model) {
    if model.focus != Focus::Grants {
        model.message = Some((
            Level::Info,
            "marks apply to grants: Enter an app first".into(),
        ));
        return;
    }
    if let Some(key) = model.selected_grant().map(|g| g.key.clone()) {
        if !model.marks.remove(&key) {
            model.marks.insert(key);
        }
        move_sel(model, 1);
    }
}

/// Revocable now: live, or a failed/unconfirmed one to retry. Manual steps
/// are ticked off with Enter instead.
fn revocable(g: &GrantRow) -> bool {
    !g.grant.is_manual()
        && matches!(
            g.state,
            GrantState::Live | GrantState::Failed { .. } | GrantState::Unconfirmed { .. }
        )
}

fn open_revoke(model: &mut Model) {
    let Some(l) = model.selected() else {
        return;
    };
    let email = l.email.clone();
    match model.focus {
        Focus::Grants => {
            let chosen: Vec<&GrantRow> = if model.marks.is_empty() {
                model.selected_grant().into_iter().collect()
            } else {
                l.grants
                    .iter()
                    .filter(|g| model.marks.contains(&g.key))
                    .collect()
            };
            if chosen.len() == 1 && chosen[0].grant.is_manual() {
                model.message = Some((
                    Level::Info,
                    "a manual step: press Enter to mark it done".into(),
                ));
                return;
            }
            let ok: Vec<&GrantRow> = chosen.into_iter().filter(|g| revocable(g)).collect();
            if ok.is_empty() {
                model.message = Some((Level::Info, "nothing to revoke here".into()));
                return;
            }
            let retry = ok.iter().all(|g| g.state.needs_attention());
            model.dialog = Some(Dialog::Confirm {
                email,
                scope: RevokeScope {
                    keys: ok.iter().map(|g| g.key.clone()).collect(),
                    ..Default::default()
                },
                count: ok.len(),
                labels: ok
                    .iter()
                    .take(5)
                    .map(|g| format!("{} ({})", g.grant.label, g.grant.kind))
                    .collect(),
                retry,
                yes_focused: false,
            });
        }
        Focus::Matrix => {
            let Some(app) = model.selected_app() else {
                return;
            };
            let keys: Vec<&GrantRow> = l
                .grants
                .iter()
                .filter(|g| g.grant.connector == app.id && revocable(g))
                .collect();
            if keys.is_empty() {
                model.message = Some((Level::Info, format!("nothing to revoke in {}", app.name)));
                return;
            }
            model.dialog = Some(Dialog::Confirm {
                email,
                scope: RevokeScope {
                    apps: vec![app.id.clone()],
                    ..Default::default()
                },
                count: keys.len(),
                labels: vec![format!("everything live in {}", app.name)],
                retry: false,
                yes_focused: false,
            });
        }
        _ => {
            model.message = Some((
                Level::Info,
                "select an app or grants first (Tab, Enter)".into(),
            ));
        }
    }
}

fn open_revoke_all(model: &mut Model) {
    let Some(l) = model.selected() else {
        return;
    };
    // Opened even while the leaver is still being discovered, so that the
    // email the operator starts typing goes into the dialog, never into
    // the views as keys; Enter waits for the inventory.
    let count = l.grants.iter().filter(|g| revocable(g)).count();
    if count == 0 && l.discovered {
        model.message = Some((Level::Info, "nothing left to revoke".into()));
        return;
    }
    model.dialog = Some(Dialog::RevokeAll {
        email: l.email.clone(),
        typed: String::new(),
        count,
    });
}

fn on_dialog_key(model: &mut Model, key: KeyEvent) -> Vec<Effect> {
    let Some(dialog) = model.dialog.as_mut() else {
        return Vec::new();
    };
    let max_scroll = model.popup_max_scroll.get();
    match dialog {
        Dialog::Help { scroll }
        | Dialog::GrantDetail { scroll, .. }
        | Dialog::Notice { scroll, .. } => {
            match key.code {
                KeyCode::Esc | KeyCode::Char('?' | 'q') | KeyCode::Enter => model.dialog = None,
                KeyCode::Down | KeyCode::Char('j') => *scroll = (*scroll + 1).min(max_scroll),
                KeyCode::Up | KeyCode::Char('k') => *scroll = scroll.saturating_sub(1),
                KeyCode::PageDown | KeyCode::Char(' ') => *scroll = (*scroll + 10).min(max_scroll),
                KeyCode::PageUp => *scroll = scroll.saturating_sub(10),
                KeyCode::Home | KeyCode::Char('g') => *scroll = 0,
                KeyCode::End | KeyCode::Char('G') => *scroll = max_scroll,
                _ => {}
            }
            Vec::new()
        }
        Dialog::Quit { quit_focused } => {
            match key.code {
                KeyCode::Esc | KeyCode::Char('n' | 'q') => model.dialog = None,
                // Arrows and Tab only, as in the revoke dialog.
                KeyCode::Left | KeyCode::Right | KeyCode::Tab | KeyCode::BackTab => {
                    *quit_focused = !*quit_focused;
                }
                KeyCode::Enter => {
                    if *quit_focused {
                        model.quit = true;
                    }
                    model.dialog = None;
                }
                _ => {}
            }
            Vec::new()
        }
        Dialog::Accounts {
            email,
            app,
            candidates,
            selected,
        } => {
            match key.code {
                KeyCode::Esc | KeyCode::Char('q') => model.dialog = None,
                KeyCode::Enter if model.read_only => {
                    model.message = Some((Level::Info, "read-only: no changes can be made".into()));
                }
                KeyCode::Enter => {
                    let Some(c) = candidates.get(*selected) else {
                        return Vec::new();
                    };
                    let fx = vec![Effect::PickAccount {
                        email: email.clone(),
                        app: app.clone(),
                        account_id: c.id.clone(),
                    }];
                    let text = format!("{app}: picking {} ({}) for {email}", c.login, c.id);
                    model.log(Level::Info, text.clone());
                    model.message = Some((Level::Info, text));
                    model.dialog = None;
                    return fx;
                }
                KeyCode::Down | KeyCode::Char('j') => {
                    *selected = (*selected + 1).min(candidates.len().saturating_sub(1));
                }
                KeyCode::Up | KeyCode::Char('k') => *selected = selected.saturating_sub(1),
                _ => {}
            }
            Vec::new()
        }
        Dialog::Login {
            app,
            prompt,
            pasted,
            submitted,
            error,
        } => {
            let app = app.clone();
            let pasting =
                matches!(prompt, Some(LoginPrompt::Code { .. })) && !*submitted && error.is_none();
            match key.code {
                KeyCode::Esc => {
                    let ended = error.is_some();
                    model.dialog = None;
                    if ended {
                        return Vec::new();
                    }
                    model.log(Level::Warn, format!("{app}: sign-in cancelled"));
                    vec![Effect::LoginCancel { app }]
                }
                KeyCode::Enter if error.is_some() => {
                    model.dialog = None;
                    Vec::new()
                }
                KeyCode::Backspace if pasting => {
                    pasted.pop();
                    Vec::new()
                }
                KeyCode::Char(c) if pasting && !key.modifiers.contains(KeyModifiers::CONTROL) => {
                    if pasted.len() < 4000 {
                        pasted.push(c);
                    }
                    Vec::new()
                }
                KeyCode::Enter if pasting => {
                    let url = pasted.trim().to_string();
                    if !(url.contains("code=") || url.contains("error=")) {
                        model.message = Some((
                            Level::Warn,
                            "paste the whole address the browser went to (it has code= and state=)"
                                .into(),
                        ));
                        return Vec::new();
                    }
                    *submitted = true;
                    vec![Effect::LoginPaste { app, url }]
                }
                _ => Vec::new(),
            }
        }
        Dialog::Confirm {
            email,
            scope,
            yes_focused,
            ..
        } => match key.code {
            KeyCode::Esc | KeyCode::Char('n' | 'q') => {
                model.dialog = None;
                Vec::new()
            }
            // Arrows and Tab only: a letter typed by mistake never moves
            // the focus to the destructive button.
            KeyCode::Left | KeyCode::Right | KeyCode::Tab | KeyCode::BackTab => {
                *yes_focused = !*yes_focused;
                Vec::new()
            }
            KeyCode::Enter => {
                let fx = if *yes_focused {
                    let email = email.clone();
                    let scope = scope.clone();
                    start_revoke(model, email, scope)
                } else {
                    Vec::new()
                };
                model.dialog = None;
                fx
            }
            _ => Vec::new(),
        },
        Dialog::Batch {
            emails,
            plan,
            typed,
            ..
        } => match key.code {
            KeyCode::Esc => {
                model.dialog = None;
                Vec::new()
            }
            KeyCode::Backspace => {
                typed.pop();
                Vec::new()
            }
            KeyCode::Char(c) if c.is_ascii_digit() && typed.len() < 9 => {
                typed.push(c);
                Vec::new()
            }
            KeyCode::Enter => {
                let n = emails.len();
                match plan.clone() {
                    Some(p) if typed.trim() == n.to_string() => {
                        let emails = emails.clone();
                        model.dialog = None;
                        start_batch(model, emails, &p)
                    }
                    Some(_) => {
                        model.message = Some((
                            Level::Warn,
                            format!("type {n} (the number of leavers) to go ahead"),
                        ));
                        Vec::new()
                    }
                    None => Vec::new(),
                }
            }
            _ => Vec::new(),
        },
        Dialog::RevokeAll { email, typed, .. } => match key.code {
            KeyCode::Esc => {
                model.dialog = None;
                Vec::new()
            }
            KeyCode::Backspace => {
                typed.pop();
                Vec::new()
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                if typed.len() < 320 {
                    typed.push(c);
                }
                Vec::new()
            }
            KeyCode::Enter => {
                let discovered = model
                    .leavers
                    .iter()
                    .any(|l| l.email.eq_ignore_ascii_case(email) && l.discovered);
                if !discovered {
                    model.message = Some((
                        Level::Warn,
                        "still discovering: press Enter again once the inventory is in".into(),
                    ));
                    Vec::new()
                } else if typed.trim().eq_ignore_ascii_case(email) {
                    let email = email.clone();
                    model.dialog = None;
                    start_revoke(model, email, RevokeScope::default())
                } else {
                    model.message = Some((
                        Level::Warn,
                        "that is not the leaver's email: nothing revoked".into(),
                    ));
                    Vec::new()
                }
            }
            _ => Vec::new(),
        },
        Dialog::ManualNote {
            email,
            key: gkey,
            note,
            ..
        } => match key.code {
            KeyCode::Esc => {
                model.dialog = None;
                Vec::new()
            }
            KeyCode::Backspace => {
                note.pop();
                Vec::new()
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                if note.len() < 1000 {
                    note.push(c);
                }
                Vec::new()
            }
            KeyCode::Enter => {
                if note.trim().is_empty() {
                    model.message = Some((
                        Level::Warn,
                        "a note is required: what was done, by whom".into(),
                    ));
                    return Vec::new();
                }
                let fx = vec![Effect::ManualDone {
                    email: email.clone(),
                    key: gkey.clone(),
                    note: note.trim().to_string(),
                }];
                model.dialog = None;
                fx
            }
            _ => Vec::new(),
        },
    }
}

fn start_revoke(model: &mut Model, email: String, scope: RevokeScope) -> Vec<Effect> {
    if let Some(l) = model.leaver_mut(&email) {
        l.revoking = true;
        l.progress.clear();
        l.resume.clear();
    }
    model.marks.clear();
    // A new run: the activity pane follows it again.
    model.activity_back = 0;
    model.log(
        Level::Info,
        format!("{email}: revoke requested by {}", model.operator),
    );
    vec![Effect::Revoke { email, scope }]
}

fn on_input_key(model: &mut Model, key: KeyEvent) -> Vec<Effect> {
    let Some(input) = model.input.as_mut() else {
        return Vec::new();
    };
    let text = match input {
        Input::Command(t) | Input::Filter(t) => t,
    };
    match key.code {
        KeyCode::Esc => {
            if matches!(input, Input::Filter(_)) {
                set_filter(model, String::new());
            }
            model.input = None;
            Vec::new()
        }
        KeyCode::Backspace => {
            text.pop();
            if let Some(Input::Filter(t)) = &model.input {
                let t = t.clone();
                set_filter(model, t);
            }
            Vec::new()
        }
        KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
            if text.len() < 400 {
                text.push(c);
            }
            if let Some(Input::Filter(t)) = &model.input {
                let t = t.clone();
                set_filter(model, t);
            }
            Vec::new()
        }
        KeyCode::Enter => match model.input.take() {
            Some(Input::Command(cmd)) => run_command(model, &cmd),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn set_filter(model: &mut Model, f: String) {
    match model.focus {
        Focus::Queue => {
            model.filter_queue = f;
            model.queue_sel = 0;
            leaver_changed(model);
        }
        Focus::Matrix => {
            model.filter_apps = f;
            model.matrix_sel = 0;
        }
        Focus::Grants => {
            model.filter_grants = f;
            model.grant_sel = 0;
            model.grant_offset.set(0);
            model.recompute_grants();
        }
        Focus::Activity => {}
    }
}

fn run_command(model: &mut Model, cmd: &str) -> Vec<Effect> {
    let cmd = cmd.trim();
    let (name, arg) = match cmd.split_once(char::is_whitespace) {
        Some((n, a)) => (n, a.trim()),
        None => (cmd, ""),
    };
    match name {
        "q" | "quit" => {
            ask_quit(model);
            Vec::new()
        }
        "add" => {
            let email = arg.to_ascii_lowercase();
            if !valid_email(&email) {
                model.message = Some((
                    Level::Warn,
                    format!("`:add EMAIL`: `{}` is not an email address", clean(arg)),
                ));
                return Vec::new();
            }
            if let Some(i) = model.leavers.iter().position(|l| l.email == email) {
                select_leaver(model, i);
                model.message = Some((Level::Info, format!("{email} is already in the queue")));
                return Vec::new();
            }
            let mut row = LeaverRow::new(&email);
            row.discovering = true;
            model.leavers.push(row);
            let i = model.leavers.len() - 1;
            select_leaver(model, i);
            model.log(Level::Info, format!("{email}: added to the queue"));
            vec![Effect::Discover { email }]
        }
        "app" => {
            let want = arg.to_lowercase();
            let found = model
                .connectors
                .iter()
                .find(|c| c.id.to_lowercase() == want || c.name.to_lowercase() == want)
                .or_else(|| {
                    model.connectors.iter().find(|c| {
                        !want.is_empty()
                            && (c.id.to_lowercase().starts_with(&want)
                                || c.name.to_lowercase().starts_with(&want))
                    })
                })
                .map(|c| c.id.clone());
            match found {
                Some(id) => {
                    model.filter_apps.clear();
                    if let Some(i) = model
                        .app_view()
                        .iter()
                        .position(|&i| model.connectors[i].id == id)
                    {
                        model.matrix_sel = i;
                    }
                    drill(model, id);
                }
                None => {
                    let known: Vec<&str> = model.connectors.iter().map(|c| c.id.as_str()).collect();
                    model.message = Some((
                        Level::Warn,
                        format!("no app `{}` (apps: {})", clean(arg), known.join(", ")),
                    ));
                }
            }
            Vec::new()
        }
        "theme" => {
            let (theme, msg) = model.themes.get(arg);
            model.theme = theme;
            model.message = Some(match msg {
                Some(m) => (Level::Warn, clean(&m)),
                None => (Level::Info, format!("theme {}", model.theme.name)),
            });
            Vec::new()
        }
        "export" => match model.selected() {
            Some(l) => vec![Effect::Export {
                email: l.email.clone(),
                exit_at: l.exit_at,
            }],
            None => {
                model.message = Some((Level::Info, "no leaver selected".into()));
                Vec::new()
            }
        },
        "login" => {
            if arg.is_empty() {
                model.message = Some((Level::Warn, "`:login APP`: name a connector".into()));
                return Vec::new();
            }
            let app = clean(arg);
            model.dialog = Some(Dialog::Login {
                app: app.clone(),
                prompt: None,
                pasted: String::new(),
                submitted: false,
                error: None,
            });
            model.log(Level::Info, format!("{app}: sign-in started"));
            vec![Effect::Login { app }]
        }
        "help" => {
            model.dialog = Some(Dialog::Help { scroll: 0 });
            Vec::new()
        }
        "auto" => match arg {
            "on" if model.read_only => {
                model.message = Some((Level::Info, "read-only: no changes can be made".into()));
                Vec::new()
            }
            "on" => {
                model.auto = true;
                model.auto_next = None;
                model.log(
                    Level::Info,
                    format!(
                        "auto on: the exit-time policy runs every {AUTO_EVERY_SECS}s while the console is open (by {})",
                        model.operator
                    ),
                );
                Vec::new()
            }
            "off" => {
                model.auto = false;
                model.log(Level::Info, "auto off".to_string());
                Vec::new()
            }
            _ => {
                model.message = Some((
                    Level::Warn,
                    format!(
                        "`:auto on` or `:auto off` (now {})",
                        if model.auto { "on" } else { "off" }
                    ),
                ));
                Vec::new()
            }
        },
        "takeover" => {
            if model.read_only {
                model.message = Some((Level::Info, "read-only: no changes can be made".into()));
                return Vec::new();
            }
            let Some(l) = model.selected().map(|l| l.email.clone()) else {
                model.message = Some((Level::Info, "no leaver selected".into()));
                return Vec::new();
            };
            model.log(
                Level::Info,
                format!("{l}: taking over from the host that holds them"),
            );
            vec![Effect::TakeOver { email: l }]
        }
        "handover" => {
            let to = arg.to_ascii_lowercase();
            if model.read_only {
                model.message = Some((Level::Info, "read-only: no changes can be made".into()));
                return Vec::new();
            }
            if !valid_email(&to) {
                model.message = Some((
                    Level::Warn,
                    format!(
                        "`:handover EMAIL`: `{}` is not an email address",
                        clean(arg)
                    ),
                ));
                return Vec::new();
            }
            let Some(l) = model.selected().map(|l| l.email.clone()) else {
                model.message = Some((Level::Info, "no leaver selected".into()));
                return Vec::new();
            };
            if let Some(row) = model.leaver_mut(&l) {
                row.manager = Some(to.clone());
                row.discovering = true;
            }
            model.log(Level::Info, format!("{l}: data hand-over to {to}"));
            vec![Effect::HandOver { email: l, to }]
        }
        "" => Vec::new(),
        other => {
            model.message = Some((
                Level::Warn,
                format!(
                    "unknown command `:{}` (add, app, theme, export, login, auto, handover, takeover, quit)",
                    clean(other)
                ),
            ));
            Vec::new()
        }
    }
}

fn select_leaver(model: &mut Model, i: usize) {
    model.filter_queue.clear();
    model.queue_sel = i;
    leaver_changed(model);
}

fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@._+-'".contains(c))
}
