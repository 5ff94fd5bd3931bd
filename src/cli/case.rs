//! `offboard scan`, `revoke`, `verify` and `evidence`: one leaver's case
//! from the command line. Progress goes to stderr, results to stdout; every
//! text from an API is sanitised before it is printed.
//!
//! `--json` output (stable; `schema` names the shape and its version):
//! - scan / revoke / verify: `offboard.case/1`, see [`CaseJson`];
//! - revoke --dry-run: `offboard.plan/1`, see [`PlanJson`].

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;

use super::{CmdResult, DoneArgs, EvidenceArgs, Failure, Global, RevokeArgs, ScanArgs, VerifyArgs};
use crate::config::{self, Loaded};
use crate::connector::ConnectorError;
use crate::connector::http::HttpNotice;
use crate::engine::{
    AccountStatus, CaseView, Engine, EngineError, EngineOptions, Event, GrantView, Selection,
    Summary, connectors_from_config,
};
use crate::evidence;
use crate::evidence::report::{self, Format};
use crate::model::{GrantKind, Plan, Revocation};
use crate::sanitize::{clean, clean_max};

/// Exit code of `evidence` when the ledger's hash chain is broken: DESIGN.md's
/// "other error" (the message says what is broken and where).
pub const EXIT_CHAIN_BROKEN: u8 = 1;

pub const CASE_SCHEMA: &str = "offboard.case/1";
pub const PLAN_SCHEMA: &str = "offboard.plan/1";

/// `--json` of scan, revoke and verify.
#[derive(Debug, Serialize)]
pub struct CaseJson {
    pub schema: &'static str,
    /// `scan`, `revoke`, `verify` or `done`.
    pub command: &'static str,
    pub email: String,
    pub apps: Vec<AppJson>,
    pub grants: Vec<GrantJson>,
    pub summary: Summary,
    /// The process's exit code: 0 all verified/acknowledged, 3 something left.
    pub exit_code: u8,
    /// What the operator can do next (ambiguous lookups, removals to
    /// request again), in plain words.
    pub hints: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct AppJson {
    pub app: String,
    pub name: String,
    /// `found`, `not_found`, `ambiguous`, `lookup_failed` or `pending`.
    pub status: &'static str,
    pub account: Option<AccountJson>,
    pub candidates: Vec<AccountJson>,
    pub error: Option<String>,
    /// Kinds whose listing failed: nothing is known about them.
    pub unreadable_kinds: Vec<KindErrorJson>,
    pub read_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
pub struct AccountJson {
    pub id: String,
    pub login: String,
    pub display_name: String,
    pub active: bool,
    pub is_admin: bool,
    /// Every address the app knows for the account.
    pub addresses: Vec<String>,
    /// The alias the account was found through (not the primary address).
    pub matched_by: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct KindErrorJson {
    pub kind: GrantKind,
    pub error: String,
}

#[derive(Debug, Serialize)]
pub struct GrantJson {
    /// `app/id`.
    pub key: String,
    pub app: String,
    pub id: String,
    pub kind: GrantKind,
    pub label: String,
    pub details: String,
    /// `low`, `medium`, `high`, `critical`.
    pub risk: crate::model::Risk,
    /// `api` or `manual`.
    pub revocation: &'static str,
    pub instructions: Option<String>,
    /// 1 cut access, 2 remove entitlements, 3 close the account.
    pub phase: u8,
    /// live, revoking, removed?, verified, unconfirmed, failed, manual, acknowledged.
    pub state: &'static str,
    /// Why failed/unconfirmed, or the note of an acknowledged step.
    pub reason: Option<String>,
    pub state_since: DateTime<Utc>,
    pub last_answer: Option<String>,
    /// Verified gone, but not removed by offboard (someone else did, or it expired).
    pub vanished: bool,
}

/// `--json` of `revoke --dry-run`.
#[derive(Debug, Serialize)]
pub struct PlanJson {
    pub schema: &'static str,
    pub email: String,
    pub phases: Vec<PhaseJson>,
}

#[derive(Debug, Serialize)]
pub struct PhaseJson {
    pub phase: u8,
    pub title: &'static str,
    pub steps: Vec<GrantJson>,
}

fn account_json(a: &crate::model::Account) -> AccountJson {
    AccountJson {
        id: clean(&a.id),
        login: clean(&a.login),
        display_name: clean(&a.display_name),
        active: a.active,
        is_admin: a.is_admin,
        addresses: a.addresses.iter().map(|x| clean(x)).collect(),
        matched_by: a.matched_by.as_deref().map(clean),
    }
}

fn grant_json(g: &GrantView) -> GrantJson {
    GrantJson {
        key: clean(&g.key),
        app: g.grant.connector.clone(),
        id: clean(&g.grant.id),
        kind: g.grant.kind,
        label: clean(&g.grant.label),
        details: clean(&g.grant.details),
        risk: g.grant.risk,
        revocation: match g.grant.revocation {
            Revocation::Api => "api",
            Revocation::Manual { .. } => "manual",
        },
        instructions: match &g.grant.revocation {
            Revocation::Manual { instructions } => Some(clean(instructions)),
            Revocation::Api => None,
        },
        phase: g.grant.phase().number(),
        state: g.state.name(),
        reason: g.state.reason().map(clean),
        state_since: g.since_state,
        last_answer: g.last_answer.as_deref().map(clean),
        vanished: g.vanished,
    }
}

pub fn case_json(
    command: &'static str,
    view: &CaseView,
    sel: &Selection,
    summary: &Summary,
) -> CaseJson {
    CaseJson {
        schema: CASE_SCHEMA,
        command,
        email: view.email.clone(),
        apps: view
            .accounts
            .iter()
            .filter(|a| sel.matches_app(&a.connector))
            .map(|a| AppJson {
                app: a.connector.clone(),
                name: clean(&a.display_name),
                status: a.status.name(),
                account: a.status.account().map(account_json),
                candidates: match &a.status {
                    AccountStatus::Ambiguous { candidates } => {
                        candidates.iter().map(account_json).collect()
                    }
                    _ => Vec::new(),
                },
                error: match &a.status {
                    AccountStatus::LookupFailed { error } => Some(clean(error)),
                    _ => None,
                },
                unreadable_kinds: a
                    .failed_kinds
                    .iter()
                    .filter(|f| sel.matches_kind(f.kind))
                    .map(|f| KindErrorJson {
                        kind: f.kind,
                        error: clean(&f.error),
                    })
                    .collect(),
                read_at: a.read_at,
            })
            .collect(),
        grants: view
            .grants
            .iter()
            .filter(|g| sel.matches(&g.grant))
            .map(grant_json)
            .collect(),
        summary: summary.clone(),
        exit_code: summary.exit_code(),
        hints: hints(view, sel),
    }
}

/// What must not read as "all clear": an address found in no app, and one
/// with characters outside ASCII (a lookalike). Printed on stderr as
/// `warning:` lines, and first among the hints.
pub fn warnings(view: &CaseView, sel: &Selection) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(w) = crate::model::address_warning(&view.email) {
        out.push(clean(&w));
    }
    let mut s = Summary::default();
    s.add_accounts(&view.accounts, sel);
    if s.not_found_anywhere > 0 {
        out.push(format!(
            "{}: {} {}",
            clean(&view.email),
            crate::engine::NOT_FOUND_ANYWHERE,
            if sel.apps.is_empty() {
                "(no configured app has an account for it)".to_string()
            } else {
                format!("(looked up in {})", sel.apps.join(", "))
            }
        ));
    }
    out
}

fn print_warnings(view: &CaseView, sel: &Selection) {
    for w in warnings(view, sel) {
        eprint!("{}", wrap(&format!("warning: {w}"), "", output_width()));
    }
}

/// What the operator can do next, for the table and `--json`.
pub fn hints(view: &CaseView, sel: &Selection) -> Vec<String> {
    let mut out = warnings(view, sel);
    for a in view
        .accounts
        .iter()
        .filter(|a| sel.matches_app(&a.connector))
    {
        if let AccountStatus::Ambiguous { candidates } = &a.status {
            out.push(format!(
                "{app}: {} accounts match {} ({}); nothing was guessed: pick one with --account {app}=ID",
                candidates.len(),
                clean(&view.email),
                candidates
                    .iter()
                    .map(|c| format!("{} <{}>", clean(&c.id), clean(&c.login)))
                    .collect::<Vec<_>>()
                    .join(", "),
                app = a.connector
            ));
        }
    }
    let grants = || view.grants.iter().filter(|g| sel.matches(&g.grant));
    let still = grants()
        .filter(|g| {
            g.state == crate::model::GrantState::Live
                && g.last_answer.as_deref() == Some(crate::engine::STILL_LISTED_NOTE)
        })
        .count();
    if still > 0 {
        out.push(format!(
            "{still} grant(s) requested before an interruption are still listed by a fresh read: run `offboard revoke {} --yes` again",
            clean(&view.email)
        ));
    }
    let revoking = grants()
        .filter(|g| g.state == crate::model::GrantState::Revoking)
        .count();
    if revoking > 0 {
        out.push(format!(
            "{revoking} grant(s) were requested but no answer is recorded and no fresh read could settle them: nothing is known about them; run `offboard verify {}` again once the app answers",
            clean(&view.email)
        ));
    }
    let vanished = grants().filter(|g| g.vanished).count();
    if vanished > 0 {
        out.push(format!(
            "{vanished} grant(s) vanished: a fresh read no longer lists them although this tool did not remove them (someone else did, or they expired)"
        ));
    }
    for step in next_steps(view, sel) {
        out.push(format!(
            "{} {} ({}): {}; when done: {}",
            step.what, step.key, step.label, step.todo, step.command
        ));
    }
    out
}

/// A grant a person must act on, with the command that ticks it off.
pub struct NextStep {
    /// `manual step`, `failed` or `unconfirmed`.
    pub what: &'static str,
    pub key: String,
    pub label: String,
    /// What to do, in the app's words where it gave them.
    pub todo: String,
    pub command: String,
}

/// Every manual step still open, and every failed or unconfirmed grant
/// (fixed by hand, then ticked off the same way), in the case's order.
pub fn next_steps(view: &CaseView, sel: &Selection) -> Vec<NextStep> {
    let email = clean(&view.email);
    view.grants
        .iter()
        .filter(|g| sel.matches(&g.grant))
        .filter_map(|g| {
            let (what, todo) = match (&g.state, &g.grant.revocation) {
                (crate::model::GrantState::Manual, Revocation::Manual { instructions })
                | (crate::model::GrantState::Live, Revocation::Manual { instructions }) => {
                    ("manual step", clean(instructions))
                }
                (crate::model::GrantState::Failed { reason }, _) => (
                    "failed",
                    format!(
                        "{}; fix it in the app, or retry with `offboard revoke {email} --yes`",
                        clean(reason)
                    ),
                ),
                (crate::model::GrantState::Unconfirmed { reason }, _) => (
                    "unconfirmed",
                    format!(
                        "{}; check it in the app, then `offboard verify {email}`",
                        clean(reason)
                    ),
                ),
                _ => return None,
            };
            Some(NextStep {
                what,
                key: clean(&g.key),
                label: clean(&g.grant.label),
                todo,
                command: format!(
                    "offboard done {email} {} --note \"what was done, by whom\"",
                    clean(&g.key)
                ),
            })
        })
        .collect()
}

/// The next steps as text for `width` columns: each key, what to do
/// (wrapped), and the command (continued with `\` so it pastes whole).
pub fn render_next_steps(view: &CaseView, sel: &Selection, width: usize) -> String {
    let steps = next_steps(view, sel);
    if steps.is_empty() {
        return String::new();
    }
    let mut o = format!(
        "\nnext steps ({}): do each, then tick it off with the command under it\n",
        steps.len()
    );
    for s in steps {
        o.push_str(&wrap(
            &format!("{} {}: {}", s.what, s.key, s.label),
            "  ",
            width,
        ));
        o.push_str(&wrap(&s.todo, "      ", width));
        o.push_str(&wrap_command(&s.command, "      ", width));
    }
    o
}

/// A shell command wrapped at spaces, each line but the last ending in
/// ` \` (a quoted argument is kept on one line).
fn wrap_command(cmd: &str, indent: &str, width: usize) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut quoted: Option<String> = None;
    for w in cmd.split(' ') {
        match quoted.as_mut() {
            Some(q) => {
                q.push(' ');
                q.push_str(w);
                if w.ends_with('"') {
                    words.push(quoted.take().unwrap_or_default());
                }
            }
            None if w.starts_with('"') && !(w.len() > 1 && w.ends_with('"')) => {
                quoted = Some(w.to_string())
            }
            None => words.push(w.to_string()),
        }
    }
    words.extend(quoted);
    let max = width.saturating_sub(indent.chars().count() + 2).max(20);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for w in words {
        if !line.is_empty() && line.chars().count() + 1 + w.chars().count() > max {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&w);
    }
    lines.push(line);
    let n = lines.len();
    lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let lead = if i == 0 {
                indent.to_string()
            } else {
                format!("{indent}  ")
            };
            if i + 1 < n {
                format!("{lead}{l} \\\n")
            } else {
                format!("{lead}{l}\n")
            }
        })
        .collect()
}

pub fn plan_json(email: &str, plan: &Plan, view: &CaseView) -> PlanJson {
    PlanJson {
        schema: PLAN_SCHEMA,
        email: email.to_string(),
        phases: plan
            .phases
            .iter()
            .map(|p| PhaseJson {
                phase: p.phase.number(),
                title: p.phase.title(),
                steps: p
                    .steps
                    .iter()
                    .filter_map(|g| view.grant(&g.key()))
                    .map(grant_json)
                    .collect(),
            })
            .collect(),
    }
}

pub(crate) struct Session {
    pub(crate) engine: Arc<Engine>,
    pub(crate) events: UnboundedReceiver<Event>,
    /// Where the ledger (and in team mode, the queue) lives.
    pub(crate) store: evidence::Store,
    pub(crate) lease: std::time::Duration,
    pub(crate) operator: String,
}

/// What claiming a leaver gave.
pub(crate) enum Claimed {
    /// One operator, the ledger file: nothing to claim.
    Solo,
    Lease(crate::store::Lease),
    Held(crate::store::Held),
}

impl Claimed {
    pub(crate) async fn release(self) {
        if let Claimed::Lease(l) = self {
            let email = l.email.clone();
            if let Err(e) = l.release().await {
                eprintln!(
                    "offboard: {}: the lease was not released ({e}); it expires by itself",
                    clean(&email)
                );
            }
        }
    }
}

/// Team mode: claims `email` (adding it to the shared queue) before acting
/// on it; a live lease of another host is taken only with `take_over`.
pub(crate) async fn claim(
    s: &Session,
    email: &str,
    source: &str,
    take_over: bool,
) -> Result<Claimed, Failure> {
    claim_with(
        &s.store,
        s.engine.ledger(),
        &s.operator,
        s.lease,
        email,
        source,
        take_over,
    )
    .await
}

/// [`claim`] with the parts of a session (for tasks of their own).
pub(crate) async fn claim_with(
    store: &evidence::Store,
    ledger: &evidence::Ledger,
    operator: &str,
    lease: std::time::Duration,
    email: &str,
    source: &str,
    take_over: bool,
) -> Result<Claimed, Failure> {
    let Some(pg) = store.shared() else {
        return Ok(Claimed::Solo);
    };
    let me = crate::store::me(operator);
    let email = crate::model::Person::new(email).email;
    let (p, e, src, by) = (
        pg.clone(),
        email.clone(),
        source.to_string(),
        me.label.clone(),
    );
    crate::store::pg::spawn(async move { p.add_leavers(vec![(e, None)], src, by).await })
        .await
        .map_err(|e| Failure::other(e.to_string()))?;
    match crate::store::Lease::claim(pg, ledger, &email, &me, lease, take_over)
        .await
        .map_err(|e| Failure::other(e.to_string()))?
    {
        Ok(lease) => Ok(Claimed::Lease(lease)),
        Err(held) => Ok(Claimed::Held(held)),
    }
}

pub(crate) fn engine_failure(e: EngineError) -> Failure {
    match e {
        EngineError::Invalid(m) => Failure::usage(m),
        other => Failure::other(other.to_string()),
    }
}

fn load_config(global: &Global) -> Result<Loaded, Failure> {
    let path = config::config_path(global.config.as_deref());
    Ok(config::load(&path)?)
}

pub(crate) fn open(global: &Global, data_dir: &std::path::Path) -> Result<Session, Failure> {
    let loaded = load_config(global)?;
    let resolved = loaded.connectors()?;
    if resolved.is_empty() {
        return Err(Failure::usage(format!(
            "config: {}: no enabled connector in [connectors]",
            loaded.path.display()
        )));
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let connectors = connectors_from_config(&resolved, data_dir, &tx).map_err(|e| match e {
        ConnectorError::Config(m) => {
            Failure::usage(format!("config: {}: {m}", loaded.path.display()))
        }
        other => Failure::other(other.to_string()),
    })?;
    let opts = EngineOptions::from_config(&loaded);
    let store = crate::store::open(&loaded.config.store, &loaded.dir, data_dir)
        .map_err(|e| Failure::other(e.to_string()))?;
    let ledger = store
        .open(&opts.operator)
        .map_err(|e| Failure::other(format!("evidence ledger: {e}")))?;
    for note in ledger.startup_notes() {
        eprintln!("offboard: {note}");
    }
    if let Some(pg) = store.shared() {
        crate::store::share_quota(
            pg,
            &crate::store::me(&opts.operator),
            resolved.iter().map(|r| r.id.clone()).collect(),
        );
    }
    let operator = opts.operator.clone();
    Ok(Session {
        engine: Engine::new(connectors, ledger, opts, tx),
        events: rx,
        store,
        lease: loaded.config.store.lease(),
        operator,
    })
}

/// Whom the leaver's data goes to in a hand-over: `--hand-over-to`, else
/// their manager in `[roster] path` (when that file reads; a roster that
/// does not leaves the hand-over a manual step).
async fn name_hand_over(
    global: &Global,
    s: &Session,
    email: &str,
    flag: Option<&str>,
) -> Result<(), Failure> {
    let to = match flag {
        Some(t) => Some(t.to_string()),
        None => roster_manager(global, email),
    };
    if let Some(to) = to {
        s.engine
            .set_hand_over(email, &to)
            .await
            .map_err(engine_failure)?;
    }
    Ok(())
}

fn roster_manager(global: &Global, email: &str) -> Option<String> {
    use crate::fleet::roster;
    let loaded = load_config(global).ok()?;
    let cfg = &loaded.config.roster;
    let path = cfg.path.as_ref().filter(|p| p.as_os_str() != "-")?;
    let path = if path.is_relative() {
        loaded.dir.join(path)
    } else {
        path.clone()
    };
    let r = roster::load(&roster::Source::File(path), cfg).ok()?;
    r.get(email)?.manager.clone()
}

/// `--account APP=ID` values.
fn parse_picks(values: &[String]) -> Result<Vec<(String, String)>, Failure> {
    values
        .iter()
        .map(|v| match v.split_once('=') {
            Some((app, id)) if !app.trim().is_empty() && !id.trim().is_empty() => {
                Ok((app.trim().to_string(), id.trim().to_string()))
            }
            _ => Err(Failure::usage(format!(
                "--account `{}`: expected APP=ID (e.g. salesforce=005000000000001AAA)",
                clean_max(v, 80)
            ))),
        })
        .collect()
}

/// Applies the operator's picks (after a discovery that found the
/// candidates).
async fn apply_picks(
    s: &mut Session,
    email: &str,
    picks: &[(String, String)],
) -> Result<(), Failure> {
    for (app, id) in picks {
        with_progress(&mut s.events, false, s.engine.pick_account(email, app, id))
            .await
            .map_err(engine_failure)?;
    }
    Ok(())
}

pub(super) fn selection(apps: &[String], kinds: &[String]) -> Result<Selection, Failure> {
    let mut sel = Selection {
        apps: apps.to_vec(),
        ..Selection::default()
    };
    for k in kinds {
        match GrantKind::parse(k) {
            Some(k) => sel.kinds.push(k),
            None => {
                return Err(Failure::usage(format!(
                    "--kind `{}`: expected one of {}",
                    clean_max(k, 40),
                    GrantKind::ALL.map(|k| k.as_str()).join(", ")
                )));
            }
        }
    }
    Ok(sel)
}

/// One progress line for an event (stderr), or None.
pub(super) fn progress_line(e: &Event) -> Option<String> {
    match e {
        Event::LookupFailed {
            connector, error, ..
        } => Some(format!("[{connector}] lookup failed: {}", clean(error))),
        Event::Planned { plan, .. } => Some(format!(
            "plan: {} step(s) in {} phase(s)",
            plan.len(),
            plan.phases.len()
        )),
        Event::State { key, state, .. } => {
            Some(format!("  {}: {}", clean(key), clean(&state.to_string())))
        }
        Event::PhaseProgress {
            phase, done, total, ..
        } if done == total => Some(format!(
            "phase {} ({}): {total} request(s) answered",
            phase.number(),
            phase.title()
        )),
        Event::Http(HttpNotice::RateLimited {
            connector, wait, ..
        }) => Some(format!(
            "[{connector}] rate limited, waiting {:.1}s",
            wait.as_secs_f64()
        )),
        Event::Http(HttpNotice::Retrying {
            connector,
            wait,
            reason,
            ..
        }) => Some(format!(
            "[{connector}] retrying in {:.1}s: {}",
            wait.as_secs_f64(),
            clean(reason)
        )),
        Event::Error { message, .. } => Some(format!("error: {}", clean(message))),
        Event::Holder { .. } | Event::TeamStep { .. } => None,
        _ => None,
    }
}

/// Runs `fut` while printing progress lines (when `progress`), then drains
/// what is left.
pub(crate) async fn with_progress<T>(
    events: &mut UnboundedReceiver<Event>,
    progress: bool,
    fut: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(fut);
    let show = |e: &Event| {
        if progress && let Some(line) = progress_line(e) {
            eprintln!("{line}");
        }
    };
    let out = loop {
        tokio::select! {
            r = &mut fut => break r,
            Some(e) = events.recv() => show(&e),
        }
    };
    while let Ok(e) = events.try_recv() {
        show(&e);
    }
    out
}

fn pad(s: &str, w: usize) -> String {
    let s = clean_max(s, w);
    let n = s.chars().count();
    format!("{s}{}", " ".repeat(w.saturating_sub(n)))
}

/// Columns to lay the table out in: the terminal's width, else `$COLUMNS`,
/// else 120 (a file or a pipe).
fn output_width() -> usize {
    use std::io::IsTerminal;
    let from_tty = std::io::stdout()
        .is_terminal()
        .then(|| crossterm::terminal::size().ok())
        .flatten()
        .map(|(w, _)| usize::from(w));
    from_tty
        .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
        .unwrap_or(120)
        .clamp(60, 400)
}

fn push_row(out: &mut String, row: String) {
    out.push_str(row.trim_end());
    out.push('\n');
}

/// Wraps a `, `-separated list at item boundaries, so that a count never
/// parts from its noun.
fn wrap_items(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for item in text.split(", ") {
        if !line.is_empty() && line.chars().count() + 2 + item.chars().count() > width {
            out.push_str(&line);
            out.push_str(",\n");
            line.clear();
            line.push_str("  ");
        } else if !line.is_empty() {
            line.push_str(", ");
        }
        line.push_str(item);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// Word-wraps `text` into lines of at most `width` characters, each
/// starting with `indent`.
fn wrap(text: &str, indent: &str, width: usize) -> String {
    let max = width.saturating_sub(indent.chars().count()).max(20);
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > max {
            out.push_str(indent);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(indent);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The human table: per app, its lookup result and its grants.
pub fn render_table(view: &CaseView, sel: &Selection) -> String {
    render_table_width(view, sel, output_width())
}

/// The table for `width` columns: the label gets what the fixed columns
/// leave, details what is left after it; reasons and manual steps are
/// wrapped, never cut.
pub fn render_table_width(view: &CaseView, sel: &Selection, width: usize) -> String {
    const FIXED: usize = 2 + 13 + 1 + 8 + 1 + 12 + 1;
    // One column spare: a line that fills the terminal exactly wraps on some.
    let width = width.saturating_sub(1);
    let room = width.saturating_sub(FIXED);
    let label_w = if room >= 26 + 1 + 20 {
        26.max(room / 3)
    } else {
        room.max(12)
    };
    let details_w = room.saturating_sub(label_w + 1);
    let mut o = String::new();
    o.push_str(&format!("{}\n", clean(&view.email)));
    for a in view
        .accounts
        .iter()
        .filter(|a| sel.matches_app(&a.connector))
    {
        let head = match &a.status {
            AccountStatus::Found { account } => format!(
                "found: {} <{}>{}{}{}{}",
                account.display_name,
                account.login,
                if account.active { "" } else { ", inactive" },
                if account.is_admin { ", ADMIN" } else { "" },
                match &account.matched_by {
                    Some(alias) => format!(", matched by alias {alias}"),
                    None => String::new(),
                },
                if account.facts.iter().any(|(k, _)| k == "picked") {
                    ", picked by the operator"
                } else {
                    ""
                }
            ),
            AccountStatus::NotFound => "no account (the app answered: not found)".into(),
            AccountStatus::Ambiguous { candidates } => format!(
                "AMBIGUOUS: {} accounts match ({}); nothing was guessed: pick one with --account APP=ID",
                candidates.len(),
                candidates
                    .iter()
                    .map(|c| format!("{} {}", c.id, c.login))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            AccountStatus::LookupFailed { error } => {
                format!("LOOKUP FAILED: {error} (unknown, not \"no account\")")
            }
            AccountStatus::Pending => "not read".into(),
        };
        o.push_str(&format!(
            "\n{} ({}): {}\n",
            clean(&a.display_name),
            a.connector,
            clean(&head)
        ));
        for f in a.failed_kinds.iter().filter(|f| sel.matches_kind(f.kind)) {
            o.push_str(&format!(
                "  could not read {}: {} (unknown, not absent)\n",
                f.kind,
                clean(&f.error)
            ));
        }
        let grants: Vec<&GrantView> = view
            .grants
            .iter()
            .filter(|g| g.grant.connector == a.connector && sel.matches(&g.grant))
            .collect();
        if grants.is_empty() {
            continue;
        }
        push_row(
            &mut o,
            format!(
                "  {} {} {} {} {}",
                pad("KIND", 13),
                pad("RISK", 8),
                pad("STATE", 12),
                pad("LABEL", label_w),
                if details_w >= 10 { "DETAILS" } else { "" }
            ),
        );
        for g in grants {
            push_row(
                &mut o,
                format!(
                    "  {} {} {} {} {}",
                    pad(g.grant.kind.as_str(), 13),
                    pad(g.grant.risk.as_str(), 8),
                    pad(g.state.name(), 12),
                    pad(&g.grant.label, label_w),
                    if details_w >= 10 {
                        clean_max(&g.grant.details, details_w)
                    } else {
                        String::new()
                    }
                ),
            );
            if let (true, crate::model::GrantState::Verified { at }) = (g.vanished, &g.state) {
                o.push_str(&wrap(
                    &format!(
                        "gone without us: the read at {} no longer lists it (not removed by this tool)",
                        at.format("%Y-%m-%d %H:%M:%S UTC")
                    ),
                    "      ",
                    width,
                ));
            } else if g.state == crate::model::GrantState::Live
                && let Some(a) = g.last_answer.as_deref()
                && a == crate::engine::STILL_LISTED_NOTE
            {
                o.push_str(&wrap(a, "      ", width));
            } else if let Some(r) = g.state.reason() {
                o.push_str(&wrap(&clean(r), "      ", width));
            } else if let Revocation::Manual { instructions } = &g.grant.revocation
                && !g.state.is_closed()
            {
                o.push_str(&wrap(
                    &format!("manual: {}", clean(instructions)),
                    "      ",
                    width,
                ));
            }
        }
    }
    o
}

fn summary_line(s: &Summary) -> String {
    format!(
        "summary: {} verified{}, {} acknowledged, {} live, {} removing, {} unconfirmed, {} failed, {} manual, {} read failure(s), {} ambiguous",
        s.verified,
        if s.vanished > 0 {
            format!(" ({} of them gone without offboard)", s.vanished)
        } else {
            String::new()
        },
        s.acknowledged,
        s.live,
        s.removing,
        s.unconfirmed,
        s.failed,
        s.manual,
        s.read_failures,
        s.ambiguous
    )
}

fn print_json<T: Serialize>(v: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Failure::other(e.to_string()))?;
    println!("{text}");
    Ok(())
}

pub fn render_plan(plan: &Plan) -> String {
    render_plan_width(plan, output_width())
}

/// The plan for `width` columns: labels wrap under their column, manual
/// instructions wrap under the step, at word boundaries; nothing is cut.
pub fn render_plan_width(plan: &Plan, width: usize) -> String {
    // One column spare, as for the table.
    let width = width.saturating_sub(1);
    const FIXED: usize = 2 + 10 + 1 + 13 + 1 + 8 + 1;
    let label_w = width.saturating_sub(FIXED).max(20);
    let mut o = String::new();
    if plan.is_empty() {
        o.push_str("nothing to revoke\n");
    }
    for p in &plan.phases {
        o.push_str(&format!(
            "phase {}: {}\n",
            p.phase.number(),
            p.phase.title()
        ));
        for g in &p.steps {
            let label = wrap(&clean(&g.label), "", label_w);
            let mut lines = label.lines();
            push_row(
                &mut o,
                format!(
                    "  {} {} {} {}",
                    pad(&g.connector, 10),
                    pad(g.kind.as_str(), 13),
                    pad(g.risk.as_str(), 8),
                    lines.next().unwrap_or("")
                ),
            );
            for more in lines {
                push_row(&mut o, format!("{}{more}", " ".repeat(FIXED)));
            }
            if let Revocation::Manual { instructions } = &g.revocation {
                o.push_str(&wrap(
                    &format!("manual: {}", clean(instructions)),
                    "      ",
                    width,
                ));
            }
        }
    }
    o
}

pub async fn scan(global: &Global, args: ScanArgs, data_dir: PathBuf) -> CmdResult {
    let sel = selection(&args.apps, &[])?;
    let picks = parse_picks(&args.accounts)?;
    let mut s = open(global, &data_dir)?;
    name_hand_over(global, &s, &args.email, args.hand_over_to.as_deref()).await?;
    let mut view = with_progress(
        &mut s.events,
        false,
        s.engine.discover_apps(&args.email, &args.apps),
    )
    .await
    .map_err(engine_failure)?;
    if !picks.is_empty() {
        apply_picks(&mut s, &view.email.clone(), &picks).await?;
        view = s
            .engine
            .case(&view.email)
            .ok_or_else(|| Failure::other("the case vanished"))?;
    }
    let summary = summarise(&view, &sel);
    print_warnings(&view, &sel);
    if args.json {
        print_json(&case_json("scan", &view, &sel, &summary))?;
    } else {
        print!("{}", render_table(&view, &sel));
        print!("\n{}", wrap_items(&summary_line(&summary), output_width()));
        print_hints(&view, &sel);
    }
    Ok(summary.exit_code())
}

/// The hints, then each step a person must take with the command that
/// ticks it off (the steps are not repeated as hints).
fn print_hints(view: &CaseView, sel: &Selection) {
    let steps = next_steps(view, sel).len();
    let all = hints(view, sel);
    let general = all.len() - steps;
    for h in all.into_iter().take(general) {
        print!("{}", wrap(&format!("hint: {h}"), "", output_width()));
    }
    print!("{}", render_next_steps(view, sel, output_width()));
}

fn summarise(view: &CaseView, sel: &Selection) -> Summary {
    let mut s = Summary::default();
    for g in view.grants.iter().filter(|g| sel.matches(&g.grant)) {
        s.add(&g.state);
    }
    s.add_accounts(&view.accounts, sel);
    s
}

fn confirm(email: &str, n: usize) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(
            "refusing to revoke without --yes: stdin is not a terminal (nothing was changed)",
        ));
    }
    eprint!("Revoke {n} grant(s) of {email}? Type the email to confirm: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Failure::other(format!("reading the confirmation: {e}")))?;
    Ok(line.trim().eq_ignore_ascii_case(email))
}

pub async fn revoke(global: &Global, args: RevokeArgs, data_dir: PathBuf) -> CmdResult {
    let sel = selection(&args.apps, &args.kinds)?;
    let picks = parse_picks(&args.accounts)?;
    if !args.dry_run && !args.yes && !std::io::stdin().is_terminal() {
        return Err(Failure::usage(
            "refusing to revoke without --yes: stdin is not a terminal (nothing was changed)",
        ));
    }
    let mut s = open(global, &data_dir)?;
    let Some(target) = args.email.as_deref() else {
        return Err(Failure::usage(
            "revoke: name a leaver (EMAIL) or a batch (--from FILE)",
        ));
    };
    let claimed = if args.dry_run {
        Claimed::Solo
    } else {
        claim(&s, target, "revoke", args.take_over).await?
    };
    if let Claimed::Held(h) = &claimed {
        return Err(Failure::other(format!(
            "{}: {h}; nothing was done. Watch it with `offboard store watch {}`, or take it over with `offboard revoke {} --take-over` (recorded in the ledger)",
            clean(target),
            clean(target),
            clean(target)
        )));
    }
    let work = revoke_claimed(global, &mut s, &args, target, &sel, &picks);
    let code = match &claimed {
        Claimed::Lease(l) => tokio::select! {
            r = work => r,
            () = l.lost_wait() => Err(lease_lost(target)),
        },
        _ => work.await,
    };
    claimed.release().await;
    code
}

/// The lease was taken over (or expired while the database was away).
pub(crate) fn lease_lost(email: &str) -> Failure {
    Failure::other(format!("{}: {}", clean(email), crate::store::LEASE_LOST))
}

async fn revoke_claimed(
    global: &Global,
    s: &mut Session,
    args: &RevokeArgs,
    target: &str,
    sel: &Selection,
    picks: &[(String, String)],
) -> CmdResult {
    name_hand_over(global, s, target, args.hand_over_to.as_deref()).await?;
    let view = with_progress(
        &mut s.events,
        true,
        s.engine.discover_apps(target, &args.apps),
    )
    .await
    .map_err(engine_failure)?;
    let email = view.email.clone();
    apply_picks(s, &email, picks).await?;
    let view = s
        .engine
        .case(&email)
        .ok_or_else(|| Failure::other("the case vanished"))?;
    let plan = s.engine.plan(&email, sel).map_err(engine_failure)?;
    if args.dry_run {
        if args.json {
            print_json(&plan_json(&email, &plan, &view))?;
        } else {
            print!("{}", render_plan(&plan));
            let other = summarise(&view, sel);
            if other.read_failures + other.ambiguous > 0 {
                println!(
                    "note: {} app(s) could not be read completely and {} lookup(s) are ambiguous; the plan cannot cover them",
                    other.read_failures, other.ambiguous
                );
            }
        }
        return Ok(0);
    }
    if !args.yes {
        eprint!("{}", render_plan(&plan));
        if !confirm(&email, plan.len())? {
            return Err(Failure::other("cancelled; nothing was changed"));
        }
    }
    let summary = with_progress(&mut s.events, true, s.engine.revoke(&email, sel))
        .await
        .map_err(engine_failure)?;
    let view = s
        .engine
        .case(&email)
        .ok_or_else(|| Failure::other("the case vanished"))?;
    print_warnings(&view, sel);
    if args.json {
        print_json(&case_json("revoke", &view, sel, &summary))?;
    } else {
        print!("{}", render_table(&view, sel));
        print!("\n{}", wrap_items(&summary_line(&summary), output_width()));
        print_hints(&view, sel);
        println!("evidence: offboard evidence {email} --format md");
    }
    Ok(summary.exit_code())
}

/// `offboard done EMAIL KEY --note …`: ticks off a manual step after a fresh
/// read of the case, recording the note in the ledger.
pub async fn done(global: &Global, args: DoneArgs, data_dir: PathBuf) -> CmdResult {
    if args.note.trim().is_empty() {
        return Err(Failure::usage(
            "--note: say what was done (it goes into the evidence)",
        ));
    }
    let sel = Selection::default();
    let mut s = open(global, &data_dir)?;
    let claimed = claim(&s, &args.email, "done", false).await?;
    if let Claimed::Held(h) = &claimed {
        return Err(Failure::other(format!(
            "{}: {h}; nothing was recorded (the host that holds the leaver ticks it off, or take it over with `offboard revoke {} --take-over`)",
            clean(&args.email),
            clean(&args.email)
        )));
    }
    // A fresh read finds the step; only the tick-off is recorded (the
    // snapshot of the leaver's access was recorded by the scan or revoke).
    let ticked = async {
        with_progress(&mut s.events, false, s.engine.refresh(&args.email, None))
            .await
            .map_err(engine_failure)?;
        s.engine
            .manual_done(&args.email, &args.key, &args.note)
            .await
            .map_err(engine_failure)
    }
    .await;
    claimed.release().await;
    ticked?;
    let email = crate::model::Person::new(&args.email).email;
    let view = s
        .engine
        .case(&email)
        .ok_or_else(|| Failure::other("the case vanished"))?;
    let summary = view.summary.clone();
    if args.json {
        print_json(&case_json("done", &view, &sel, &summary))?;
    } else {
        println!("{}: {} ticked off", clean(&email), clean(&args.key));
        print!("\n{}", wrap_items(&summary_line(&summary), output_width()));
        print_hints(&view, &sel);
    }
    Ok(summary.exit_code())
}

pub async fn verify(global: &Global, args: VerifyArgs, data_dir: PathBuf) -> CmdResult {
    let sel = selection(&args.apps, &[])?;
    let picks = parse_picks(&args.accounts)?;
    let mut s = open(global, &data_dir)?;
    if !picks.is_empty() {
        let view = with_progress(
            &mut s.events,
            false,
            s.engine.discover_apps(&args.email, &args.apps),
        )
        .await
        .map_err(engine_failure)?;
        apply_picks(&mut s, &view.email, &picks).await?;
    }
    let summary = with_progress(&mut s.events, true, s.engine.verify(&args.email, &sel))
        .await
        .map_err(engine_failure)?;
    let email = crate::model::Person::new(&args.email).email;
    let view = s
        .engine
        .case(&email)
        .ok_or_else(|| Failure::other("the case vanished"))?;
    print_warnings(&view, &sel);
    if args.json {
        print_json(&case_json("verify", &view, &sel, &summary))?;
    } else {
        print!("{}", render_table(&view, &sel));
        print!("\n{}", wrap_items(&summary_line(&summary), output_width()));
        print_hints(&view, &sel);
    }
    Ok(summary.exit_code())
}

pub async fn evidence(global: &Global, args: EvidenceArgs, data_dir: PathBuf) -> CmdResult {
    let store = super::store::evidence_store(global, &data_dir, args.ledger.as_deref())?;
    let path = store.path();
    if args.target == "verify" {
        if !store.exists() {
            return Err(Failure::other(format!("no ledger at {}", path.display())));
        }
        let rep = store.verify().map_err(|e| Failure::other(e.to_string()))?;
        if rep.ok() {
            println!(
                "OK: {} records, hash chain intact ({}){}\nhead: {} (keep it with the report: it shows later whether the last record was edited or records were cut from the end)",
                rep.records,
                path.display(),
                if rep.set_aside > 0 {
                    format!("; {} torn line(s) from crashes set aside", rep.set_aside)
                } else {
                    String::new()
                },
                rep.head
            );
            return Ok(0);
        }
        println!(
            "BROKEN: {} problem(s) in {} ({} lines)",
            rep.problems.len(),
            path.display(),
            rep.records
        );
        for p in &rep.problems {
            println!("  line {}: {}", p.line, p.what);
        }
        return Ok(EXIT_CHAIN_BROKEN);
    }
    let format = Format::parse(&args.format).ok_or_else(|| {
        Failure::usage(format!(
            "--format {}: expected md, json or csv",
            clean_max(&args.format, 20)
        ))
    })?;
    let email = crate::model::Person::new(&args.target).email;
    if !email.contains('@') {
        return Err(Failure::usage(format!(
            "`{}` is neither `verify` nor an email address",
            clean_max(&args.target, 60)
        )));
    }
    let records = store
        .records()
        .map_err(|e| Failure::other(format!("{e} (run `offboard evidence verify`)")))?;
    if !records.iter().any(|r| r.case == email) {
        return Err(Failure::other(format!(
            "no records for {email} in {}",
            path.display()
        )));
    }
    let chain = store.verify().map_err(|e| Failure::other(e.to_string()))?;
    let text = report::render_with_chain(&records, &email, format, Some(&chain));
    match &args.output {
        Some(out) => std::fs::write(out, text)
            .map_err(|e| Failure::other(format!("{}: {e}", out.display())))?,
        None => print!("{text}"),
    }
    if chain.ok() {
        Ok(0)
    } else {
        eprintln!(
            "offboard: the ledger's hash chain is broken ({} problem(s)); run `offboard evidence verify`",
            chain.problems.len()
        );
        Ok(EXIT_CHAIN_BROKEN)
    }
}

#[cfg(test)]
mod width_tests {
    use super::wrap;

    #[test]
    fn wrap_keeps_every_word_within_the_width() {
        let text = "Salesforce refused to deactivate the user: change the Default Case Owner in Support Settings, then deactivate again; the login stays frozen meanwhile.";
        let out = wrap(text, "      ", 60);
        assert!(out.lines().all(|l| l.chars().count() <= 60), "{out}");
        assert!(out.lines().all(|l| l.starts_with("      ")));
        let words: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(words, text.split_whitespace().collect::<Vec<_>>());
    }
}
