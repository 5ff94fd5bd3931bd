//! `offboard run --due` (every leaver whose exit time has passed, by
//! policy; for cron or a systemd timer) and `offboard evidence report
//! --since` (an audit period). Views of [`crate::fleet`]; the engine does
//! the work per leaver.
//!
//! `--json` of `run --due`: `offboard.run/1`, see [`RunJson`]. The period
//! report's JSON: `offboard.period/1`, see [`crate::fleet::period`].

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::case::{Claimed, claim, engine_failure, open, with_progress};
use super::{CmdResult, EvidenceArgs, Failure, Global, RunArgs};
use crate::config::{self, Loaded};
use crate::engine::{Selection, Summary};
use crate::evidence;
use crate::evidence::report::Format;
use crate::fleet::history::{self, CaseHistory};
use crate::fleet::policy::{self, Decision, Scope, due_text};
use crate::fleet::roster::{self, Roster, Source, Zone};
use crate::fleet::{PolicyConfig, RosterConfig, period};
use crate::sanitize::{clean, clean_max};

pub const RUN_SCHEMA: &str = "offboard.run/1";

#[derive(Debug, Serialize)]
pub struct RunJson {
    pub schema: &'static str,
    pub at: DateTime<Utc>,
    /// True without `--yes`: nothing was changed.
    pub dry_run: bool,
    pub mode: crate::fleet::Mode,
    pub roster: String,
    /// Lines that did not parse: nothing is done for them.
    pub roster_errors: Vec<String>,
    pub leavers: Vec<LeaverJson>,
    /// 0: every due leaver verified; 3: something is left.
    pub exit_code: u8,
}

#[derive(Debug, Serialize)]
pub struct LeaverJson {
    pub email: String,
    pub name: Option<String>,
    pub status: &'static str,
    pub exit_time: Option<DateTime<Utc>>,
    /// "due in 2h", "overdue 3d 4h".
    pub due: Option<String>,
    /// `not_due`, `run` (or `would_run` in a dry run), `skip`, or in team
    /// mode `held` (another host holds the leaver; `why` says who, since when).
    pub action: &'static str,
    pub scope: Option<Scope>,
    pub why: String,
    /// Left for a person (manual steps, refusals, unconfirmed removals).
    pub left: Vec<String>,
    /// Counts after the run (for `run`).
    pub summary: Option<Summary>,
    /// 0 or 3 for this leaver (None: not due).
    pub exit_code: Option<u8>,
}

fn load_config(global: &Global) -> Result<Loaded, Failure> {
    let path = config::config_path(global.config.as_deref());
    Ok(config::load(&path)?)
}

/// The config when there is one (the period report works without).
fn try_config(global: &Global) -> Result<Option<Loaded>, Failure> {
    let path = config::config_path(global.config.as_deref());
    if !path.exists() && global.config.is_none() {
        return Ok(None);
    }
    Ok(Some(config::load(&path)?))
}

/// The roster from `--roster` or `[roster] path` (relative to the config).
pub(super) fn load_roster(
    flag: Option<&Path>,
    cfg: &RosterConfig,
    config_dir: Option<&Path>,
) -> Result<Option<Roster>, Failure> {
    let source = match (flag, &cfg.path) {
        (Some(p), _) => Source::from_arg(p),
        (None, Some(p)) if p.as_os_str() == "-" => Source::Stdin,
        (None, Some(p)) => Source::File(match config_dir {
            Some(d) if p.is_relative() => d.join(p),
            _ => p.clone(),
        }),
        (None, None) => return Ok(None),
    };
    let r = roster::load(&source, cfg).map_err(|e| Failure::usage(clean(&e.to_string())))?;
    for e in &r.errors {
        eprintln!(
            "warning: {} (ignored: nothing is done for this line)",
            clean(&e.to_string())
        );
    }
    Ok(Some(r))
}

fn read_ledger(store: &evidence::Store) -> Result<Vec<evidence::Record>, Failure> {
    if !store.exists() {
        return Ok(Vec::new());
    }
    store
        .records()
        .map_err(|e| Failure::other(format!("{e} (run `offboard evidence verify`)")))
}

fn history_for<'a>(
    histories: &'a std::collections::BTreeMap<String, CaseHistory>,
    e: &roster::Entry,
) -> Option<&'a CaseHistory> {
    histories
        .get(&e.email)
        .or_else(|| e.aliases.iter().find_map(|a| histories.get(a)))
}

fn selection(scope: Scope) -> Selection {
    scope.selection()
}

pub async fn run(global: &Global, args: RunArgs, data_dir: PathBuf) -> CmdResult {
    if !args.due {
        return Err(Failure::usage(
            "`offboard run` needs --due: revoke every leaver whose exit time has passed (add --yes to act)",
        ));
    }
    let loaded = load_config(global)?;
    let policy: PolicyConfig = loaded.config.policy.clone();
    let roster = load_roster(
        args.roster.as_deref(),
        &loaded.config.roster,
        Some(&loaded.dir),
    )?
    .ok_or_else(|| {
        Failure::usage(format!(
            "no roster: pass --roster FILE (or - for stdin), or set [roster] path in {}",
            loaded.path.display()
        ))
    })?;
    let now = Utc::now();
    let store = crate::store::open(&loaded.config.store, &loaded.dir, &data_dir)
        .map_err(|e| Failure::other(e.to_string()))?;
    if let Some(pg) = store.shared() {
        // The roster's leavers join the shared queue.
        let (p, by) = (pg.clone(), crate::store::me(&loaded.operator()).label);
        let leavers = roster
            .leavers()
            .map(|e| (e.email.clone(), e.name.clone()))
            .collect();
        crate::store::pg::spawn(async move { p.add_leavers(leavers, "roster".into(), by).await })
            .await
            .map_err(|e| Failure::other(e.to_string()))?;
    }
    let records = read_ledger(&store)?;
    let histories = history::cases(&records);
    let mut out = RunJson {
        schema: RUN_SCHEMA,
        at: now,
        dry_run: !args.yes,
        mode: policy.mode,
        roster: clean(&roster.source),
        roster_errors: roster
            .errors
            .iter()
            .map(|e| clean(&e.to_string()))
            .collect(),
        leavers: Vec::new(),
        exit_code: 0,
    };
    let mut session = None;
    for e in roster.leavers() {
        let d = policy::decide(&policy, e, history_for(&histories, e), now);
        let mut row = LeaverJson {
            email: clean(&e.email),
            name: e.name.as_deref().map(clean),
            status: e.status.as_str(),
            exit_time: e.exit_time,
            due: e.exit_time.map(|x| due_text(x, now)),
            action: "not_due",
            scope: None,
            why: String::new(),
            left: Vec::new(),
            summary: None,
            exit_code: None,
        };
        match d {
            Decision::NotDue { why } => row.why = why,
            Decision::Skip { why, left } => {
                row.action = "skip";
                row.why = why;
                row.exit_code = Some(if left.is_empty() { 0 } else { 3 });
                row.left = left.iter().map(|l| clean(l)).collect();
            }
            Decision::Run { scope, why } if !args.yes => {
                row.action = "would_run";
                row.scope = Some(scope);
                row.why = why;
                row.exit_code = Some(3);
            }
            Decision::Run { scope, why } => {
                if session.is_none() {
                    session = Some(open(global, &data_dir)?);
                }
                let s = session.as_mut().expect("opened above");
                // Team mode: claim the leaver, then decide again on the
                // ledger as it is now (another host may have closed it
                // meanwhile).
                let claimed = claim(s, &e.email, "roster", false).await?;
                let (scope, why) = match &claimed {
                    Claimed::Held(h) => {
                        row.action = "held";
                        row.why = h.to_string();
                        row.exit_code = Some(3);
                        out.leavers.push(row);
                        continue;
                    }
                    Claimed::Solo => (scope, why),
                    Claimed::Lease(_) => {
                        let fresh = read_ledger(&s.store)?;
                        let histories = history::cases(&fresh);
                        match policy::decide(&policy, e, history_for(&histories, e), Utc::now()) {
                            Decision::Run { scope, why } => (scope, why),
                            Decision::NotDue { why } => {
                                claimed.release().await;
                                row.why = why;
                                out.leavers.push(row);
                                continue;
                            }
                            Decision::Skip { why, left } => {
                                claimed.release().await;
                                row.action = "skip";
                                row.why = why;
                                row.exit_code = Some(if left.is_empty() { 0 } else { 3 });
                                row.left = left.iter().map(|l| clean(l)).collect();
                                out.leavers.push(row);
                                continue;
                            }
                        }
                    }
                };
                row.action = "run";
                row.scope = Some(scope);
                row.why = why;
                if !args.json {
                    eprintln!(
                        "{}: {}: revoking {}",
                        clean(&e.email),
                        row.due.as_deref().unwrap_or("left"),
                        scope.describe()
                    );
                }
                if let Some(m) = &e.manager
                    && let Err(err) = s.engine.set_hand_over(&e.email, m).await
                {
                    eprintln!(
                        "warning: {}: manager {}: {err} (the hand-over stays a manual step)",
                        clean(&e.email),
                        clean(m)
                    );
                }
                let sel = selection(scope);
                let work =
                    with_progress(&mut s.events, !args.json, s.engine.revoke(&e.email, &sel));
                let summary = match &claimed {
                    Claimed::Lease(l) => tokio::select! {
                        r = work => r.map_err(engine_failure),
                        () = l.lost_wait() => Err(super::case::lease_lost(&e.email)),
                    },
                    _ => work.await.map_err(engine_failure),
                };
                claimed.release().await;
                let summary = summary?;
                row.exit_code = Some(summary.exit_code());
                if let Some(view) = s.engine.case(&e.email) {
                    row.left = view
                        .grants
                        .iter()
                        .filter(|g| sel.matches(&g.grant) && !g.state.is_closed())
                        .map(|g| {
                            format!(
                                "{} {} ({}){}",
                                g.state.name(),
                                clean(&g.key),
                                clean_max(&g.grant.label, 60),
                                g.state
                                    .reason()
                                    .map(|r| format!(": {}", clean_max(r, 160)))
                                    .unwrap_or_default()
                            )
                        })
                        .collect();
                    for w in super::case::warnings(&view, &sel) {
                        row.left.push(w);
                    }
                }
                row.summary = Some(summary);
            }
        }
        out.leavers.push(row);
    }
    let something_left = out.leavers.iter().any(|l| l.exit_code == Some(3));
    out.exit_code = if something_left || !roster.errors.is_empty() {
        3
    } else {
        0
    };
    if args.json {
        let text = serde_json::to_string_pretty(&out).map_err(|e| Failure::other(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", render_run(&out));
    }
    Ok(out.exit_code)
}

fn render_run(r: &RunJson) -> String {
    let mut o = String::new();
    if r.dry_run {
        o.push_str("DRY RUN: nothing was changed (add --yes to revoke)\n");
    }
    for l in &r.leavers {
        let when = match (&l.due, l.exit_time) {
            (Some(d), Some(x)) => format!("{d} ({})", policy::ts(x)),
            _ => l.status.to_string(),
        };
        let what = match l.action {
            "not_due" => format!("not due: {}", l.why),
            "skip" => format!("skipped: {}", l.why),
            "held" => format!("left to another host: {}", l.why),
            "would_run" => format!(
                "would revoke {} ({})",
                l.scope.map(Scope::describe).unwrap_or(""),
                l.why
            ),
            _ => match &l.summary {
                Some(s) => format!(
                    "revoked {}: {} verified, {} acknowledged, {} left",
                    l.scope.map(Scope::describe).unwrap_or(""),
                    s.verified,
                    s.acknowledged,
                    s.live + s.removing + s.unconfirmed + s.failed + s.manual
                ),
                None => "revoked".into(),
            },
        };
        o.push_str(&format!("{}  {}  {}\n", l.email, when, what));
        for x in &l.left {
            o.push_str(&format!("    left: {x}\n"));
        }
    }
    if r.leavers.iter().all(|l| l.action == "not_due") {
        o.push_str("nobody is due\n");
    }
    if !r.roster_errors.is_empty() {
        o.push_str(&format!(
            "{} roster line(s) did not parse (see the warnings): nothing was done for them\n",
            r.roster_errors.len()
        ));
    }
    o.push_str(&format!(
        "exit {}: {}\n",
        r.exit_code,
        if r.exit_code == 0 {
            "every due leaver is closed"
        } else {
            "something is left"
        }
    ));
    o
}

/// `offboard evidence report --since DATE [--until DATE] [--roster FILE]`.
pub async fn report(global: &Global, args: EvidenceArgs, data_dir: PathBuf) -> CmdResult {
    let format = Format::parse(&args.format).ok_or_else(|| {
        Failure::usage(format!(
            "--format {}: expected md, json or csv",
            clean_max(&args.format, 20)
        ))
    })?;
    let loaded = try_config(global)?;
    let roster_cfg = loaded
        .as_ref()
        .map(|l| l.config.roster.clone())
        .unwrap_or_default();
    let policy = loaded
        .as_ref()
        .map(|l| l.config.policy.clone())
        .unwrap_or_default();
    let zone = Zone::parse(roster_cfg.time_zone.as_deref())
        .map_err(|e| Failure::usage(format!("config: [roster] {e}")))?;
    let since_text = args.since.as_deref().ok_or_else(|| {
        Failure::usage("evidence report needs --since DATE (e.g. --since 2026-01-01)")
    })?;
    let since = zone
        .parse_time(since_text)
        .map_err(|e| Failure::usage(format!("--since {e}")))?;
    let now = Utc::now();
    let until = match args.until.as_deref() {
        None => now,
        Some(u) => {
            let t = zone
                .parse_time(u)
                .map_err(|e| Failure::usage(format!("--until {e}")))?;
            // A date covers the whole day.
            if chrono::NaiveDate::parse_from_str(u.trim(), "%Y-%m-%d").is_ok() {
                t + chrono::Duration::days(1)
            } else {
                t
            }
        }
    };
    if until <= since {
        return Err(Failure::usage("--until must be after --since"));
    }
    let roster = load_roster(
        args.roster.as_deref(),
        &roster_cfg,
        loaded.as_ref().map(|l| l.dir.as_path()),
    )?;
    let store = super::store::evidence_store(global, &data_dir, args.ledger.as_deref())?;
    let path = store.path();
    let records = if store.exists() {
        store
            .records()
            .map_err(|e| Failure::other(format!("{e} (run `offboard evidence verify`)")))?
    } else if roster.is_none() {
        return Err(Failure::other(format!("no ledger at {}", path.display())));
    } else {
        Vec::new()
    };
    let chain = if store.exists() {
        store.verify().map_err(|e| Failure::other(e.to_string()))?
    } else {
        evidence::ChainReport {
            path: path.clone(),
            records: 0,
            problems: Vec::new(),
            set_aside: 0,
            head: evidence::GENESIS.to_string(),
        }
    };
    let histories = history::cases(&records);
    let rep = period::build(
        &histories,
        roster.as_ref(),
        &chain,
        since,
        until,
        policy.sla_hours,
        now,
    );
    let text = period::render(&rep, format);
    match &args.output {
        Some(out) => std::fs::write(out, text)
            .map_err(|e| Failure::other(format!("{}: {e}", out.display())))?,
        None => print!("{text}"),
    }
    if !chain.ok() {
        eprintln!(
            "offboard: the ledger's hash chain is broken ({} problem(s)); run `offboard evidence verify`",
            chain.problems.len()
        );
        return Ok(super::case::EXIT_CHAIN_BROKEN);
    }
    Ok(0)
}
