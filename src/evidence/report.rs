//! The per-leaver evidence report, from the ledger's records: the
//! before-snapshot of all access (enough to restore a rehire: app, kind, id,
//! label, details), each grant's timeline (requested, answer, verified /
//! unconfirmed / failed with times), the chain status, and the events.
//!
//! Markdown and CSV are sanitised: no control characters (API text goes
//! through [`crate::sanitize::clean`]); Markdown escapes `|` and the other
//! characters that would change a table or inject markup; CSV quotes every
//! field and prefixes a `'` to a cell starting with `=`, `+`, `-` or `@`
//! (formula injection).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{ChainReport, LedgerEvent, LookupResult, Problem, Record};
use crate::connector::RevokeOutcome;
use crate::model::{Account, Revocation};
use crate::sanitize::clean;

/// The JSON report's `schema` value.
pub const SCHEMA: &str = "offboard.evidence/1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Json,
    Csv,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s.trim().to_ascii_lowercase().as_str() {
            "md" | "markdown" => Some(Format::Markdown),
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainStatus {
    pub checked: bool,
    pub ok: Option<bool>,
    pub records: usize,
    pub problems: Vec<Problem>,
    /// SHA-256 of the ledger's last line when the chain was checked.
    pub head: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountSnapshot {
    pub app: String,
    pub result: LookupResult,
    pub account: Option<Account>,
    pub candidates: Vec<Account>,
    pub error: Option<String>,
    pub read_at: DateTime<Utc>,
    /// The account's state at the end: `closed` (its suspension or
    /// deactivation verified by a fresh read), `active`, `inactive`, or the
    /// last lookup's result.
    pub final_state: String,
    /// When the closing was verified, or the last read.
    pub final_at: Option<DateTime<Utc>>,
}

/// What a reviewer reads first: who, when, what was closed per app, what
/// is still open and why, and the chain head to keep.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub leaver: String,
    /// The exit time, when the operator's roster or queue knew it.
    pub exit_at: Option<DateTime<Utc>>,
    /// `closed` (everything verified or acknowledged) or `open`.
    pub status: &'static str,
    pub apps: Vec<AppOutcome>,
    pub still_open: Vec<OpenGrant>,
    pub chain_head: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppOutcome {
    pub app: String,
    /// First and last removal confirmed by a fresh read (or ticked off).
    pub first_removed_at: Option<DateTime<Utc>>,
    pub last_removed_at: Option<DateTime<Utc>>,
    pub closed: usize,
    pub open: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpenGrant {
    pub key: String,
    pub app: String,
    pub label: String,
    pub outcome: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotGrant {
    pub app: String,
    pub kind: String,
    pub id: String,
    pub label: String,
    pub details: String,
    pub risk: String,
    /// `api` or `manual`.
    pub revocation: String,
    pub since: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub key: String,
    pub app: String,
    pub kind: String,
    pub id: String,
    pub label: String,
    pub requests: usize,
    pub requested_at: Option<DateTime<Utc>>,
    pub answer: Option<String>,
    pub answered_at: Option<DateTime<Utc>>,
    /// verified, unconfirmed, failed, acknowledged, manual, removing, live.
    pub outcome: String,
    pub outcome_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    /// The operator who asked for the removal (or required the manual step).
    pub requested_by: Option<String>,
    /// The operator whose run recorded the outcome.
    pub outcome_by: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub case: String,
    pub generated_at: DateTime<Utc>,
    pub outcome: Outcome,
    pub chain: ChainStatus,
    pub accounts: Vec<AccountSnapshot>,
    pub before: Vec<SnapshotGrant>,
    pub grants: Vec<Timeline>,
    pub events: Vec<Record>,
}

/// Renders the report for `email` from a ledger's records (the chain is
/// shown as not checked; see [`render_with_chain`]).
pub fn render(records: &[Record], email: &str, format: Format) -> String {
    render_with_chain(records, email, format, None)
}

pub fn render_with_chain(
    records: &[Record],
    email: &str,
    format: Format,
    chain: Option<&ChainReport>,
) -> String {
    render_full(records, email, format, chain, None)
}

/// The report with the leaver's exit time, when the caller knows it.
pub fn render_full(
    records: &[Record],
    email: &str,
    format: Format,
    chain: Option<&ChainReport>,
    exit_at: Option<DateTime<Utc>>,
) -> String {
    let mut report = build(records, email, chain);
    report.outcome.exit_at = exit_at;
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&report).unwrap_or_else(|_| "{}".into());
            s.push('\n');
            s
        }
        Format::Markdown => markdown(&report),
        Format::Csv => csv(&report),
    }
}

pub fn build(records: &[Record], email: &str, chain: Option<&ChainReport>) -> Report {
    let email = email.trim().to_ascii_lowercase();
    let recs: Vec<&Record> = records.iter().filter(|r| r.case == email).collect();
    let first_request = recs
        .iter()
        .position(|r| matches!(r.event, LedgerEvent::RevokeRequested { .. }));

    // Before-snapshot: per app, the last read before the first request
    // (or the first read when every read came after).
    let mut accounts: Vec<AccountSnapshot> = Vec::new();
    let mut before: Vec<SnapshotGrant> = Vec::new();
    let mut chosen: Vec<(String, usize)> = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        if let LedgerEvent::Discovered { connector, .. } = &r.event {
            let before_first = first_request.is_none_or(|f| i < f);
            match chosen.iter_mut().find(|(c, _)| c == connector) {
                Some(slot) if before_first => slot.1 = i,
                Some(_) => {}
                None => chosen.push((connector.clone(), i)),
            }
        }
    }
    for (_, i) in &chosen {
        let r = recs[*i];
        if let LedgerEvent::Discovered {
            connector,
            result,
            account,
            candidates,
            error,
            grants,
            ..
        } = &r.event
        {
            accounts.push(AccountSnapshot {
                app: connector.clone(),
                result: *result,
                account: account.clone(),
                candidates: candidates.clone(),
                error: error.clone(),
                read_at: r.ts,
                final_state: String::new(),
                final_at: None,
            });
            for g in grants {
                before.push(SnapshotGrant {
                    app: g.connector.clone(),
                    kind: g.kind.as_str().into(),
                    id: g.id.clone(),
                    label: g.label.clone(),
                    details: g.details.clone(),
                    risk: g.risk.as_str().into(),
                    revocation: match &g.revocation {
                        Revocation::Api => "api".into(),
                        Revocation::Manual { .. } => "manual".into(),
                    },
                    since: g.since.clone(),
                });
            }
        }
    }

    let mut grants: Vec<Timeline> = Vec::new();
    for r in &recs {
        let Some(key) = r.key() else { continue };
        let idx = match grants.iter().position(|t| t.key == key) {
            Some(i) => i,
            None => {
                let (app, id) = key.split_once('/').unwrap_or((key, ""));
                let found = before.iter().find(|g| g.app == app && g.id == id);
                grants.push(Timeline {
                    key: key.to_string(),
                    app: app.into(),
                    kind: found.map(|g| g.kind.clone()).unwrap_or_default(),
                    id: id.into(),
                    label: found.map(|g| g.label.clone()).unwrap_or_default(),
                    requests: 0,
                    requested_at: None,
                    answer: None,
                    answered_at: None,
                    outcome: "live".into(),
                    outcome_at: None,
                    reason: None,
                    requested_by: None,
                    outcome_by: None,
                });
                grants.len() - 1
            }
        };
        let t = &mut grants[idx];
        let at = Some(r.ts);
        match &r.event {
            LedgerEvent::RevokeRequested { .. } | LedgerEvent::ManualRequired { .. } => {
                t.requested_by = Some(r.operator.clone());
            }
            LedgerEvent::ApiAnswer { .. }
            | LedgerEvent::Verified { .. }
            | LedgerEvent::Escalated { .. }
            | LedgerEvent::ManualDone { .. }
            | LedgerEvent::Reappeared { .. }
            | LedgerEvent::Vanished { .. }
            | LedgerEvent::StillListed { .. } => t.outcome_by = Some(r.operator.clone()),
            _ => {}
        }
        match &r.event {
            LedgerEvent::RevokeRequested { grant, .. } => {
                t.requests += 1;
                t.requested_at.get_or_insert(r.ts);
                t.kind = grant.kind.as_str().into();
                t.label = grant.label.clone();
                t.outcome = "removing".into();
                t.outcome_at = at;
                t.reason = None;
            }
            LedgerEvent::ApiAnswer {
                outcome,
                error,
                manual,
                ..
            } => {
                t.answered_at = at;
                let (text, state, reason) = match (outcome, error) {
                    (Some(RevokeOutcome::Accepted), _) => {
                        ("accepted".to_string(), "removing", None)
                    }
                    (Some(RevokeOutcome::AlreadyGone), _) => {
                        ("already gone".to_string(), "removing", None)
                    }
                    (Some(RevokeOutcome::Acknowledged), _) => {
                        ("acknowledged".to_string(), "acknowledged", None)
                    }
                    (None, e) => {
                        let e = e.clone().unwrap_or_default();
                        let reason = match manual {
                            Some(m) => format!("{e}; manual step: {m}"),
                            None => e.clone(),
                        };
                        (e, "failed", Some(reason))
                    }
                };
                t.answer = Some(text);
                t.outcome = state.into();
                t.outcome_at = at;
                t.reason = reason;
            }
            LedgerEvent::Verified { .. } => {
                t.outcome = "verified".into();
                t.outcome_at = at;
                t.reason = None;
            }
            LedgerEvent::Escalated { reason, .. } => {
                t.outcome = "unconfirmed".into();
                t.outcome_at = at;
                t.reason = Some(reason.clone());
            }
            LedgerEvent::ManualRequired {
                instructions,
                grant,
                ..
            } => {
                t.kind = grant.kind.as_str().into();
                t.label = grant.label.clone();
                t.outcome = "manual".into();
                t.outcome_at = at;
                t.reason = Some(instructions.clone());
            }
            LedgerEvent::ManualDone { note, .. } => {
                t.outcome = "acknowledged".into();
                t.outcome_at = at;
                t.reason = Some(format!("ticked off: {note}"));
            }
            LedgerEvent::Reappeared { .. } => {
                t.outcome = "live".into();
                t.outcome_at = at;
                t.reason = Some("listed again".into());
            }
            LedgerEvent::Vanished { grant, read_at, .. } => {
                t.kind = grant.kind.as_str().into();
                t.label = grant.label.clone();
                t.outcome = "vanished".into();
                t.outcome_at = Some(*read_at);
                t.reason = Some("gone without us: a fresh read no longer lists it".into());
            }
            LedgerEvent::StillListed { note, .. } => {
                t.outcome = "live".into();
                t.outcome_at = at;
                t.reason = Some(note.clone());
            }
            _ => {}
        }
    }

    // Each account's state at the end: closed once a fresh read confirmed
    // its closing step, else what the last read found.
    for a in &mut accounts {
        let closing = grants.iter().find(|t| {
            t.app == a.app && t.kind == "account" && t.outcome == "verified" && t.requests > 0
        });
        let last = recs.iter().rev().find_map(|r| match &r.event {
            LedgerEvent::Discovered {
                connector,
                result,
                account,
                ..
            } if *connector == a.app => Some((r.ts, *result, account.clone())),
            _ => None,
        });
        (a.final_state, a.final_at) = match (closing, last) {
            (Some(t), _) => ("closed".into(), t.outcome_at),
            (None, Some((at, _, Some(acc)))) => (
                if acc.active { "active" } else { "inactive" }.into(),
                Some(at),
            ),
            (None, Some((at, result, None))) => (result.as_str().into(), Some(at)),
            (None, None) => (a.result.as_str().into(), Some(a.read_at)),
        };
    }
    let closed_outcome = |o: &str| matches!(o, "verified" | "acknowledged" | "vanished");
    let mut apps: Vec<AppOutcome> = Vec::new();
    for t in &grants {
        let i = match apps.iter().position(|a| a.app == t.app) {
            Some(i) => i,
            None => {
                apps.push(AppOutcome {
                    app: t.app.clone(),
                    first_removed_at: None,
                    last_removed_at: None,
                    closed: 0,
                    open: 0,
                });
                apps.len() - 1
            }
        };
        let a = &mut apps[i];
        if closed_outcome(&t.outcome) {
            a.closed += 1;
            if let Some(at) = t.outcome_at {
                a.first_removed_at = Some(a.first_removed_at.map_or(at, |f| f.min(at)));
                a.last_removed_at = Some(a.last_removed_at.map_or(at, |l| l.max(at)));
            }
        } else {
            a.open += 1;
        }
    }
    // Still open: every grant of the before-snapshot with no closing
    // outcome, and every timeline entry that did not close.
    let mut still_open: Vec<OpenGrant> = grants
        .iter()
        .filter(|t| !closed_outcome(&t.outcome))
        .map(|t| OpenGrant {
            key: t.key.clone(),
            app: t.app.clone(),
            label: t.label.clone(),
            outcome: t.outcome.clone(),
            reason: t
                .reason
                .clone()
                .or_else(|| (t.outcome == "live").then(|| "no removal was requested".to_string())),
        })
        .collect();
    for g in &before {
        let key = format!("{}/{}", g.app, g.id);
        if !grants.iter().any(|t| t.key == key) {
            let manual = g.revocation == "manual";
            still_open.push(OpenGrant {
                key,
                app: g.app.clone(),
                label: g.label.clone(),
                outcome: if manual { "manual" } else { "live" }.into(),
                reason: Some(
                    if manual {
                        "a person must do it, then tick it off (`offboard done`)"
                    } else {
                        "no removal was requested"
                    }
                    .into(),
                ),
            });
            match apps.iter_mut().find(|a| a.app == g.app) {
                Some(a) => a.open += 1,
                None => apps.push(AppOutcome {
                    app: g.app.clone(),
                    first_removed_at: None,
                    last_removed_at: None,
                    closed: 0,
                    open: 1,
                }),
            }
        }
    }
    let outcome = Outcome {
        leaver: email.clone(),
        exit_at: None,
        status: if still_open.is_empty() {
            "closed"
        } else {
            "open"
        },
        apps,
        still_open,
        chain_head: chain.map(|c| c.head.clone()),
    };

    Report {
        schema: SCHEMA,
        case: email,
        generated_at: Utc::now(),
        outcome,
        chain: match chain {
            Some(c) => ChainStatus {
                checked: true,
                ok: Some(c.ok()),
                records: c.records,
                problems: c.problems.clone(),
                head: Some(c.head.clone()),
            },
            None => ChainStatus {
                checked: false,
                ok: None,
                records: records.len(),
                problems: Vec::new(),
                head: None,
            },
        },
        accounts,
        before,
        grants,
        events: recs.into_iter().cloned().collect(),
    }
}

/// Text for a Markdown table cell: clean, then escaped.
pub fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in clean(s).chars() {
        match c {
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// One CSV field: clean, formula-neutralised, quoted.
pub fn csv_field(s: &str) -> String {
    let mut v = clean(s);
    // Spreadsheets evaluate a cell whose first non-blank character starts a
    // formula (and `clean` turns tabs and CRs into spaces).
    if v.trim_start().starts_with(['=', '+', '-', '@']) {
        v.insert(0, '\'');
    }
    format!("\"{}\"", v.replace('"', "\"\""))
}

fn ts(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn chain_line(c: &ChainStatus) -> String {
    match c.ok {
        None => format!("not checked ({} records)", c.records),
        Some(true) => format!(
            "OK ({} records, hash chain intact, head {})",
            c.records,
            c.head.as_deref().unwrap_or("-")
        ),
        Some(false) => format!(
            "BROKEN: {} problem(s) in {} records",
            c.problems.len(),
            c.records
        ),
    }
}

/// One line saying what an event records (for lists and live views).
pub fn event_detail(e: &LedgerEvent) -> String {
    match e {
        LedgerEvent::Discovered {
            connector,
            result,
            grants,
            error,
            failed_kinds,
            account,
            ..
        } => {
            let mut s = format!("{connector}: {}, {} grants", result.as_str(), grants.len());
            if let Some(alias) = account.as_ref().and_then(|a| a.matched_by.as_ref()) {
                s.push_str(&format!(", matched by alias {alias}"));
            }
            if let Some(e) = error {
                s.push_str(&format!(", error: {e}"));
            }
            for f in failed_kinds {
                s.push_str(&format!(", {} not readable: {}", f.kind, f.error));
            }
            s
        }
        LedgerEvent::Planned { steps } => format!("{} steps", steps.len()),
        LedgerEvent::RevokeRequested { phase, .. } => format!("phase {phase}"),
        LedgerEvent::ApiAnswer { outcome, error, .. } => match (outcome, error) {
            (Some(o), _) => serde_json::to_value(o)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            (None, Some(e)) => format!("error: {e}"),
            (None, None) => String::new(),
        },
        LedgerEvent::Verified { how, .. } => how.clone(),
        LedgerEvent::Escalated { reason, .. } => reason.clone(),
        LedgerEvent::ManualRequired { instructions, .. } => instructions.clone(),
        LedgerEvent::ManualDone { note, .. } => note.clone(),
        LedgerEvent::Reappeared { .. } => "listed again".into(),
        LedgerEvent::Vanished { how, read_at, .. } => {
            format!("gone without us ({how}, read at {})", read_at.to_rfc3339())
        }
        LedgerEvent::StillListed { note, .. } => note.clone(),
        LedgerEvent::AccountPicked {
            connector,
            account_id,
            candidates,
        } => format!(
            "{connector}: operator picked {account_id} of {} matching accounts",
            candidates.len()
        ),
        LedgerEvent::Resumed { pending } => format!("{} pending", pending.len()),
        LedgerEvent::Finished { summary } => format!(
            "verified {}, acknowledged {}, failed {}, unconfirmed {}, manual {}",
            summary.verified,
            summary.acknowledged,
            summary.failed,
            summary.unconfirmed,
            summary.manual
        ),
        LedgerEvent::TornLineSetAside { line, bytes, .. } => {
            format!("line {line} ({bytes} bytes) set aside")
        }
        LedgerEvent::LeaseTakenOver {
            from,
            held_since,
            by,
        } => format!(
            "{by} took the case over from {from} (held since {})",
            held_since.format("%Y-%m-%d %H:%M:%S UTC")
        ),
    }
}

fn markdown(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "# Offboarding evidence: {}\n", md(&r.case));
    let out = &r.outcome;
    let _ = writeln!(o, "## Outcome\n");
    let _ = writeln!(o, "- Leaver: {}", md(&out.leaver));
    let _ = writeln!(
        o,
        "- Exit time: {}",
        out.exit_at
            .map(|t| ts(Some(t)))
            .unwrap_or_else(|| "not known to the ledger".into())
    );
    let _ = writeln!(
        o,
        "- Status: {}",
        if out.still_open.is_empty() {
            "every grant closed (verified or acknowledged)".to_string()
        } else {
            format!("{} grant(s) still open", out.still_open.len())
        }
    );
    let _ = writeln!(
        o,
        "- Chain head: {}",
        out.chain_head
            .as_deref()
            .unwrap_or("not checked (run `offboard evidence verify`)")
    );
    let _ = writeln!(
        o,
        "\n| App | First removed | Last removed | Closed | Open |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|");
    for a in &out.apps {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} |",
            md(&a.app),
            ts(a.first_removed_at),
            ts(a.last_removed_at),
            a.closed,
            a.open
        );
    }
    if !out.still_open.is_empty() {
        let _ = writeln!(o, "\nStill open:\n");
        for g in &out.still_open {
            let _ = writeln!(
                o,
                "- {} ({}): {}{}",
                md(&g.label),
                md(&g.key),
                md(&g.outcome),
                g.reason
                    .as_deref()
                    .map(|r| format!(" - {}", md(r)))
                    .unwrap_or_default()
            );
        }
    }
    let _ = writeln!(o, "\n## Ledger\n");
    let _ = writeln!(o, "- Generated: {}", ts(Some(r.generated_at)));
    let _ = writeln!(o, "- Ledger chain: {}", chain_line(&r.chain));
    for p in &r.chain.problems {
        let _ = writeln!(o, "  - line {}: {}", p.line, md(&p.what));
    }
    let _ = writeln!(o, "- Records for this leaver: {}\n", r.events.len());

    let _ = writeln!(o, "## Accounts\n");
    let _ = writeln!(
        o,
        "| App | Result | Account id | Login | Name | Active before | Admin | Read at | Now | Since |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
    for a in &r.accounts {
        let (id, login, name, active, admin) = match &a.account {
            Some(x) => (
                x.id.clone(),
                x.login.clone(),
                x.display_name.clone(),
                x.active.to_string(),
                x.is_admin.to_string(),
            ),
            None => Default::default(),
        };
        let result = match &a.error {
            Some(e) => format!("{}: {e}", a.result.as_str()),
            None if !a.candidates.is_empty() => {
                format!("{} ({} candidates)", a.result.as_str(), a.candidates.len())
            }
            None => a.result.as_str().into(),
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            md(&a.app),
            md(&result),
            md(&id),
            md(&login),
            md(&name),
            active,
            admin,
            ts(Some(a.read_at)),
            md(&a.final_state),
            ts(a.final_at)
        );
    }

    let _ = writeln!(o, "\n## Access before revocation\n");
    let _ = writeln!(
        o,
        "| App | Kind | Id | Label | Details | Risk | Revocation |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|");
    for g in &r.before {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} |",
            md(&g.app),
            md(&g.kind),
            md(&g.id),
            md(&g.label),
            md(&g.details),
            md(&g.risk),
            md(&g.revocation)
        );
    }

    let _ = writeln!(o, "\n## Timeline per grant\n");
    let _ = writeln!(
        o,
        "| App | Kind | Label | Requested | By | Answer | Answered | Outcome | At | By | Reason |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|");
    for t in &r.grants {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            md(&t.app),
            md(&t.kind),
            md(&t.label),
            ts(t.requested_at),
            md(t.requested_by.as_deref().unwrap_or("")),
            md(t.answer.as_deref().unwrap_or("")),
            ts(t.answered_at),
            md(&t.outcome),
            ts(t.outcome_at),
            md(t.outcome_by.as_deref().unwrap_or("")),
            md(t.reason.as_deref().unwrap_or(""))
        );
    }

    let _ = writeln!(o, "\n## Ledger records\n");
    let _ = writeln!(o, "| Seq | Time | Operator | Event | Grant | Detail |");
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for e in &r.events {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} |",
            e.seq,
            ts(Some(e.ts)),
            md(&e.operator),
            e.event.name(),
            md(e.key().unwrap_or("")),
            md(&event_detail(&e.event))
        );
    }
    o
}

fn csv(r: &Report) -> String {
    let mut o = String::new();
    let header = [
        "case",
        "section",
        "app",
        "kind",
        "id",
        "label",
        "details",
        "risk",
        "revocation",
        "requested_at",
        "answer",
        "answered_at",
        "outcome",
        "outcome_at",
        "reason",
        "chain",
        "requested_by",
        "outcome_by",
    ];
    o.push_str(&header.join(","));
    o.push_str("\r\n");
    let chain = chain_line(&r.chain);
    let out = &r.outcome;
    let exit = ts(out.exit_at);
    let head = out.chain_head.clone().unwrap_or_default();
    let mut row = |cells: [&str; 18]| {
        let line: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
        o.push_str(&line.join(","));
        o.push_str("\r\n");
    };
    // The outcome first: the leaver, then per app, then what is open.
    row([
        &r.case,
        "outcome",
        "",
        "",
        "",
        out.status,
        &format!(
            "exit time: {}",
            if exit.is_empty() { "not known" } else { &exit }
        ),
        "",
        "",
        "",
        "",
        "",
        out.status,
        "",
        &format!("chain head {head}"),
        &chain,
        "",
        "",
    ]);
    for a in &out.apps {
        row([
            &r.case,
            "outcome_app",
            &a.app,
            "",
            "",
            "",
            &format!("closed {}, open {}", a.closed, a.open),
            "",
            "",
            &ts(a.first_removed_at),
            "",
            "",
            if a.open == 0 { "closed" } else { "open" },
            &ts(a.last_removed_at),
            "first removal in requested_at, last in outcome_at",
            &chain,
            "",
            "",
        ]);
    }
    for g in &out.still_open {
        let (_, id) = g.key.split_once('/').unwrap_or(("", &g.key));
        row([
            &r.case,
            "still_open",
            &g.app,
            "",
            id,
            &g.label,
            "",
            "",
            "",
            "",
            "",
            "",
            &g.outcome,
            "",
            g.reason.as_deref().unwrap_or(""),
            &chain,
            "",
            "",
        ]);
    }
    for g in &r.before {
        row([
            &r.case,
            "before",
            &g.app,
            &g.kind,
            &g.id,
            &g.label,
            &g.details,
            &g.risk,
            &g.revocation,
            "",
            "",
            "",
            "",
            "",
            "",
            &chain,
            "",
            "",
        ]);
    }
    for t in &r.grants {
        let before = r.before.iter().find(|g| g.app == t.app && g.id == t.id);
        row([
            &r.case,
            "timeline",
            &t.app,
            &t.kind,
            &t.id,
            &t.label,
            before.map(|g| g.details.as_str()).unwrap_or(""),
            before.map(|g| g.risk.as_str()).unwrap_or(""),
            before.map(|g| g.revocation.as_str()).unwrap_or(""),
            &ts(t.requested_at),
            t.answer.as_deref().unwrap_or(""),
            &ts(t.answered_at),
            &t.outcome,
            &ts(t.outcome_at),
            t.reason.as_deref().unwrap_or(""),
            &chain,
            t.requested_by.as_deref().unwrap_or(""),
            t.outcome_by.as_deref().unwrap_or(""),
        ]);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::{Ledger, verify_chain};
    use crate::model::{Grant, GrantKind, Risk};

    fn g(id: &str, label: &str) -> Grant {
        Grant {
            connector: "google".into(),
            id: id.into(),
            kind: GrantKind::OauthGrant,
            label: label.into(),
            details: "=HYPERLINK(\"http://evil\")".into(),
            risk: Risk::High,
            revocation: Revocation::Api,
            since: None,
            phase: None,
            after: Vec::new(),
        }
    }

    fn sample() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ledger.jsonl");
        let l = Ledger::open(&p, "op").unwrap();
        let c = "dana@example.com";
        l.append(
            c,
            LedgerEvent::Discovered {
                connector: "google".into(),
                result: LookupResult::Found,
                account: None,
                candidates: vec![],
                error: None,
                grants: vec![g("t1", "Evil | App\u{1b}[2J"), g("t2", "Other")],
                failed_kinds: vec![],
            },
        )
        .unwrap();
        for (id, outcome) in [("t1", Some(RevokeOutcome::Accepted)), ("t2", None)] {
            l.append(
                c,
                LedgerEvent::RevokeRequested {
                    key: format!("google/{id}"),
                    phase: 1,
                    grant: g(id, "x"),
                },
            )
            .unwrap();
            l.append(
                c,
                LedgerEvent::ApiAnswer {
                    key: format!("google/{id}"),
                    outcome,
                    error: outcome.is_none().then(|| "HTTP 403: denied".to_string()),
                    manual: None,
                },
            )
            .unwrap();
        }
        l.append(
            c,
            LedgerEvent::Verified {
                key: "google/t1".into(),
                how: "absent".into(),
            },
        )
        .unwrap();
        l.append(
            "someone@else.com",
            LedgerEvent::Reappeared { key: "x/y".into() },
        )
        .unwrap();
        (dir, p)
    }

    #[test]
    fn timeline_and_snapshot() {
        let (_d, p) = sample();
        let recs = Ledger::read(&p).unwrap();
        let chain = verify_chain(&p).unwrap();
        let r = build(&recs, "Dana@example.com", Some(&chain));
        assert_eq!(r.before.len(), 2);
        assert_eq!(r.events.len(), 6);
        let t1 = r.grants.iter().find(|t| t.id == "t1").unwrap();
        assert_eq!(t1.outcome, "verified");
        assert_eq!(t1.answer.as_deref(), Some("accepted"));
        assert!(t1.requested_at.is_some() && t1.outcome_at >= t1.answered_at);
        let t2 = r.grants.iter().find(|t| t.id == "t2").unwrap();
        assert_eq!(t2.outcome, "failed");
        assert_eq!(r.chain.ok, Some(true));
        let json: serde_json::Value = serde_json::from_str(&render_with_chain(
            &recs,
            "dana@example.com",
            Format::Json,
            Some(&chain),
        ))
        .unwrap();
        assert_eq!(json["schema"], SCHEMA);
        assert_eq!(json["grants"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn markdown_is_sanitised() {
        let (_d, p) = sample();
        let recs = Ledger::read(&p).unwrap();
        let out = render(&recs, "dana@example.com", Format::Markdown);
        assert!(!out.contains('\u{1b}'));
        assert!(out.contains("Evil \\| App^\\[\\[2J"), "{out}");
        // Every table row has the header's number of cells.
        for line in out.lines().filter(|l| l.starts_with("| App | Kind | Id")) {
            assert_eq!(line.matches(" | ").count(), 6);
        }
        for line in out.lines().filter(|l| l.starts_with("| google | oauth")) {
            let unescaped = line.replace("\\|", "");
            assert!(
                unescaped.matches('|').count() == 8 || unescaped.matches('|').count() == 12,
                "{line}"
            );
        }
    }

    #[test]
    fn csv_quotes_and_neutralises_formulas() {
        assert_eq!(csv_field("=1+1"), "\"'=1+1\"");
        assert_eq!(csv_field("-2"), "\"'-2\"");
        assert_eq!(csv_field("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(csv_field("+x"), "\"'+x\"");
        assert_eq!(csv_field(" \t=cmd"), "\"'  =cmd\"");
        assert_eq!(csv_field("a \"q\", b"), "\"a \"\"q\"\", b\"");
        assert_eq!(csv_field("line\nbreak"), "\"line break\"");
        let (_d, p) = sample();
        let recs = Ledger::read(&p).unwrap();
        let out = render(&recs, "dana@example.com", Format::Csv);
        assert!(out.contains("\"'=HYPERLINK(\"\"http://evil\"\")\""));
        assert!(out.lines().all(|l| !l.contains('\u{1b}')));
        // Header, outcome, one app, two open (t2 failed, t1 closed: one
        // open), two before, two timeline.
        assert_eq!(out.lines().count(), 1 + 1 + 1 + 1 + 2 + 2, "{out}");
    }

    #[test]
    fn the_report_opens_with_the_outcome() {
        let (_d, p) = sample();
        let recs = Ledger::read(&p).unwrap();
        let chain = verify_chain(&p).unwrap();
        let exit = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 3, 2, 17, 0, 0).unwrap();
        let md = render_full(
            &recs,
            "dana@example.com",
            Format::Markdown,
            Some(&chain),
            Some(exit),
        );
        let outcome = md.find("## Outcome").unwrap();
        assert!(outcome < md.find("## Accounts").unwrap());
        assert!(md.contains("- Leaver: dana@example.com"), "{md}");
        assert!(md.contains("- Exit time: 2026-03-02T17:00:00.000Z"), "{md}");
        assert!(
            md.contains(&format!("- Chain head: {}", chain.head)),
            "{md}"
        );
        assert!(md.contains("- Status: 1 grant(s) still open"), "{md}");
        let verified_at = recs
            .iter()
            .find(|r| matches!(r.event, LedgerEvent::Verified { .. }))
            .unwrap()
            .ts;
        let t = ts(Some(verified_at));
        assert!(
            md.contains(&format!("| google | {t} | {t} | 1 | 1 |")),
            "{md}"
        );
        assert!(
            md.contains("- x (google/t2): failed - HTTP 403: denied"),
            "{md}"
        );
        // The timeline names the operator of each step; the accounts table
        // has the state before and now.
        assert!(md.contains("| Requested | By | Answer |"), "{md}");
        let t1 = md
            .lines()
            .find(|l| l.starts_with("| google | oauth\\_grant | x |"))
            .unwrap();
        assert_eq!(t1.matches("| op |").count(), 2, "{t1}");
        assert!(
            md.contains("| Active before | Admin | Read at | Now | Since |"),
            "{md}"
        );

        let json: serde_json::Value = serde_json::from_str(&render_full(
            &recs,
            "dana@example.com",
            Format::Json,
            Some(&chain),
            Some(exit),
        ))
        .unwrap();
        assert_eq!(json["outcome"]["leaver"], "dana@example.com");
        assert_eq!(json["outcome"]["status"], "open");
        assert_eq!(json["outcome"]["still_open"][0]["key"], "google/t2");
        assert_eq!(json["outcome"]["chain_head"], chain.head.as_str());
        assert_eq!(json["grants"][0]["requested_by"], "op");
        assert_eq!(json["outcome"]["apps"][0]["closed"], 1);

        let csv = render_full(
            &recs,
            "dana@example.com",
            Format::Csv,
            Some(&chain),
            Some(exit),
        );
        let first = csv.lines().nth(1).unwrap();
        assert!(
            first.starts_with("\"dana@example.com\",\"outcome\""),
            "{first}"
        );
        assert!(
            csv.lines()
                .any(|l| l.contains("\"still_open\"") && l.contains("HTTP 403"))
        );
    }
}
