//! Evidence for an audit period: one row per leaver (from the ledger, and
//! roster leavers whose exit time falls in the period even when the ledger
//! has nothing for them): name, exit time, when access was first and last
//! removed per app, time from exit to all closed against the SLA, what is
//! still open and why, and the ledger's head hash. The shape auditors
//! sample for SOC 2 CC6.2/CC6.3 and ISO 27001 A.5.18.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::history::CaseHistory;
use super::roster::Roster;
use crate::evidence::ChainReport;
use crate::evidence::report::{Format, csv_field, md};

pub const SCHEMA: &str = "offboard.period/1";

#[derive(Debug, Clone, Serialize)]
pub struct PeriodReport {
    pub schema: &'static str,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub generated_at: DateTime<Utc>,
    pub sla_hours: u32,
    /// The roster the exit times come from (None: no roster given).
    pub roster: Option<String>,
    pub ledger: LedgerHead,
    pub totals: Totals,
    pub leavers: Vec<Row>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LedgerHead {
    pub records: usize,
    pub chain_ok: bool,
    pub problems: usize,
    /// SHA-256 of the ledger's last line.
    pub head: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub leavers: usize,
    pub all_closed: usize,
    pub within_sla: usize,
    pub sla_breached: usize,
    pub open: usize,
    pub never_processed: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppRow {
    pub app: String,
    pub lookup: String,
    pub first_removed: Option<DateTime<Utc>>,
    pub last_removed: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpenRow {
    pub app: String,
    pub key: String,
    pub kind: String,
    pub label: String,
    pub state: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub email: String,
    pub name: Option<String>,
    /// `leaving`/`left` from the roster; None when not in the roster.
    pub status: Option<String>,
    pub exit_time: Option<DateTime<Utc>>,
    pub first_request: Option<DateTime<Utc>>,
    pub apps: Vec<AppRow>,
    /// When the last access was closed (None: something is open).
    pub all_closed_at: Option<DateTime<Utc>>,
    /// Hours from the exit time to all closed (to now when still open).
    pub hours_to_closed: Option<f64>,
    /// `met`, `breached`, `open` (within the SLA so far), `unknown` (no
    /// exit time) or `never_processed`.
    pub sla: &'static str,
    pub open: Vec<OpenRow>,
}

/// Builds the report for `[since, until)`.
pub fn build(
    histories: &std::collections::BTreeMap<String, CaseHistory>,
    roster: Option<&Roster>,
    chain: &ChainReport,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    sla_hours: u32,
    now: DateTime<Utc>,
) -> PeriodReport {
    let in_period = |t: DateTime<Utc>| t >= since && t < until;
    let mut emails: BTreeSet<String> = BTreeSet::new();
    for (email, h) in histories {
        // Any record of the case in the period (its first or last, or a
        // span that covers it).
        if h.first_record < until && h.last_record >= since {
            emails.insert(email.clone());
        }
    }
    if let Some(r) = roster {
        for e in r.leavers() {
            if e.exit_time.is_some_and(in_period) {
                emails.insert(e.email.clone());
            }
        }
    }
    let sla = chrono::Duration::hours(i64::from(sla_hours));
    let mut totals = Totals::default();
    let mut rows = Vec::new();
    for email in emails {
        let entry = roster.and_then(|r| r.get(&email));
        let h = histories
            .get(&email)
            .or_else(|| entry.and_then(|e| e.aliases.iter().find_map(|a| histories.get(a))));
        let exit = entry.and_then(|e| e.exit_time);
        let Some(h) = h else {
            totals.never_processed += 1;
            rows.push(Row {
                email: email.clone(),
                name: entry.and_then(|e| e.name.clone()),
                status: entry.map(|e| e.status.as_str().to_string()),
                exit_time: exit,
                first_request: None,
                apps: Vec::new(),
                all_closed_at: None,
                hours_to_closed: exit.map(|x| hours(now - x)),
                sla: "never_processed",
                open: vec![OpenRow {
                    app: String::new(),
                    key: String::new(),
                    kind: String::new(),
                    label: String::new(),
                    state: "never_processed".into(),
                    why: "no record in the ledger: this leaver was never scanned or revoked".into(),
                }],
            });
            continue;
        };
        let closed_at = h.all_closed_at();
        let mut open: Vec<OpenRow> = h
            .open
            .iter()
            .map(|g| OpenRow {
                app: g.app.clone(),
                key: g.key.clone(),
                kind: g.kind.as_str().to_string(),
                label: g.label.clone(),
                state: g.state.as_str().to_string(),
                why: g.reason.clone().unwrap_or_else(|| match g.state {
                    super::history::OpenState::Live => {
                        "listed by the last read, not removed".into()
                    }
                    super::history::OpenState::Removing => {
                        "requested, no read has confirmed it yet".into()
                    }
                    _ => String::new(),
                }),
            })
            .collect();
        for u in h.unsettled_reads() {
            open.push(OpenRow {
                app: u
                    .split_once(": ")
                    .map(|(a, _)| a.to_string())
                    .unwrap_or_default(),
                key: String::new(),
                kind: String::new(),
                label: String::new(),
                state: "unknown".into(),
                why: u,
            });
        }
        let (hours_to_closed, sla_state) = match (exit, closed_at) {
            (Some(x), Some(c)) => {
                let d = c - x;
                (Some(hours(d)), if d <= sla { "met" } else { "breached" })
            }
            (Some(x), None) => {
                let d = now - x;
                (Some(hours(d)), if d <= sla { "open" } else { "breached" })
            }
            (None, _) => (None, "unknown"),
        };
        totals.leavers += 1;
        if closed_at.is_some() {
            totals.all_closed += 1;
        } else {
            totals.open += 1;
        }
        match sla_state {
            "met" => totals.within_sla += 1,
            "breached" => totals.sla_breached += 1,
            _ => {}
        }
        rows.push(Row {
            email: email.clone(),
            name: entry
                .and_then(|e| e.name.clone())
                .or_else(|| h.name.clone()),
            status: entry.map(|e| e.status.as_str().to_string()),
            exit_time: exit,
            first_request: h.first_request,
            apps: h
                .apps
                .iter()
                .map(|a| AppRow {
                    app: a.app.clone(),
                    lookup: a.lookup.as_str().to_string(),
                    first_removed: a.first_removed,
                    last_removed: a.last_removed,
                })
                .collect(),
            all_closed_at: closed_at,
            hours_to_closed,
            sla: sla_state,
            open,
        });
    }
    totals.leavers += totals.never_processed;
    PeriodReport {
        schema: SCHEMA,
        since,
        until,
        generated_at: now,
        sla_hours,
        roster: roster.map(|r| r.source.clone()),
        ledger: LedgerHead {
            records: chain.records,
            chain_ok: chain.ok(),
            problems: chain.problems.len(),
            head: chain.head.clone(),
        },
        totals,
        leavers: rows,
    }
}

fn hours(d: chrono::Duration) -> f64 {
    (d.num_minutes() as f64 / 60.0 * 10.0).round() / 10.0
}

fn t(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

pub fn render(r: &PeriodReport, format: Format) -> String {
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(r).unwrap_or_else(|_| "{}".into());
            s.push('\n');
            s
        }
        Format::Markdown => markdown(r),
        Format::Csv => csv(r),
    }
}

fn markdown(r: &PeriodReport) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "# Offboarding evidence, {} to {}\n\n",
        t(Some(r.since)),
        t(Some(r.until))
    ));
    o.push_str(&format!(
        "- controls: SOC 2 CC6.2/CC6.3 (access removed on termination), ISO 27001 A.5.18 (access rights)\n- generated: {}\n- SLA: all access closed within {} h of the exit time\n- exit times: {}\n- ledger: {} records, chain {}, head `{}`\n- leavers: {}; all closed: {}; within SLA: {}; SLA breached: {}; open: {}; never processed: {}\n\n",
        t(Some(r.generated_at)),
        r.sla_hours,
        match &r.roster {
            Some(s) => format!("from the roster {}", md(s)),
            None => "no roster given (unknown)".into(),
        },
        r.ledger.records,
        if r.ledger.chain_ok {
            "intact".to_string()
        } else {
            format!("BROKEN ({} problem(s))", r.ledger.problems)
        },
        r.ledger.head,
        r.totals.leavers,
        r.totals.all_closed,
        r.totals.within_sla,
        r.totals.sla_breached,
        r.totals.open,
        r.totals.never_processed,
    ));
    o.push_str("| leaver | name | exit time | first removal requested | all closed | hours | SLA | still open |\n");
    o.push_str("|---|---|---|---|---|---|---|---|\n");
    for row in &r.leavers {
        o.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            md(&row.email),
            md(row.name.as_deref().unwrap_or("")),
            t(row.exit_time),
            t(row.first_request),
            t(row.all_closed_at),
            row.hours_to_closed
                .map(|h| format!("{h:.1}"))
                .unwrap_or_default(),
            row.sla,
            row.open.len()
        ));
    }
    for row in &r.leavers {
        o.push_str(&format!("\n## {}\n\n", md(&row.email)));
        if !row.apps.is_empty() {
            o.push_str("| app | lookup | first removed | last removed |\n|---|---|---|---|\n");
            for a in &row.apps {
                o.push_str(&format!(
                    "| {} | {} | {} | {} |\n",
                    md(&a.app),
                    md(&a.lookup),
                    t(a.first_removed),
                    t(a.last_removed)
                ));
            }
        }
        if row.open.is_empty() {
            o.push_str("\nNothing open.\n");
        } else {
            o.push_str("\nStill open:\n\n");
            for x in &row.open {
                o.push_str(&format!(
                    "- {} {} {}: {}\n",
                    md(&x.state),
                    md(&x.key),
                    md(&x.label),
                    md(&x.why)
                ));
            }
        }
    }
    o
}

fn csv(r: &PeriodReport) -> String {
    let mut o = String::new();
    let head = [
        "email",
        "name",
        "status",
        "exit_time",
        "first_request",
        "app",
        "lookup",
        "first_removed",
        "last_removed",
        "all_closed_at",
        "hours_to_closed",
        "sla_hours",
        "sla",
        "still_open",
        "ledger_head",
    ];
    o.push_str(
        &head
            .iter()
            .map(|h| csv_field(h))
            .collect::<Vec<_>>()
            .join(","),
    );
    o.push('\n');
    for row in &r.leavers {
        let open = row
            .open
            .iter()
            .map(|x| format!("{} {} {}: {}", x.state, x.key, x.label, x.why))
            .collect::<Vec<_>>()
            .join("; ");
        let apps: Vec<Option<&AppRow>> = if row.apps.is_empty() {
            vec![None]
        } else {
            row.apps.iter().map(Some).collect()
        };
        // One line per leaver and app: a spreadsheet filters on either.
        for a in apps {
            let cells = [
                row.email.clone(),
                row.name.clone().unwrap_or_default(),
                row.status.clone().unwrap_or_default(),
                t(row.exit_time),
                t(row.first_request),
                a.map(|a| a.app.clone()).unwrap_or_default(),
                a.map(|a| a.lookup.clone()).unwrap_or_default(),
                t(a.and_then(|a| a.first_removed)),
                t(a.and_then(|a| a.last_removed)),
                t(row.all_closed_at),
                row.hours_to_closed
                    .map(|h| format!("{h:.1}"))
                    .unwrap_or_default(),
                r.sla_hours.to_string(),
                row.sla.to_string(),
                open.clone(),
                r.ledger.head.clone(),
            ];
            o.push_str(
                &cells
                    .iter()
                    .map(|c| csv_field(c))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            o.push('\n');
        }
    }
    o
}
