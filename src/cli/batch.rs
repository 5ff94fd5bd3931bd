//! `offboard sweep`: the orphan sweep from the command line. Progress and
//! roster problems go to stderr, the report to stdout; every text from an
//! API is sanitised before it is printed.
//!
//! `--json` output: `offboard.sweep/1`, see [`crate::fleet::sweep::SweepReport`].

use std::path::Path;

use futures::StreamExt;
use serde::Serialize;

use super::{CmdResult, Failure, Global, SweepArgs};
use crate::config;
use crate::connector::ConnectorError;
use crate::engine::connectors_from_config;
use crate::fleet::People;
use crate::fleet::sweep::{SweepReport, sweep};
use crate::sanitize::clean;

pub const SWEEP_SCHEMA: &str = "offboard.sweep/1";

#[derive(Serialize)]
struct SweepJson<'a> {
    schema: &'static str,
    #[serde(flatten)]
    report: &'a SweepReport,
    roster_problems: &'a [String],
    exit_code: u8,
}

/// Loads `--roster FILE`, printing its skipped lines on stderr.
pub fn load_roster(path: &Path) -> Result<People, Failure> {
    let roster = People::load(path).map_err(|e| Failure::usage(clean(&e)))?;
    for p in &roster.problems {
        eprintln!("offboard: warning: {}", clean(p));
    }
    Ok(roster)
}

pub async fn sweep_cmd(global: &Global, args: SweepArgs, data_dir: &Path) -> CmdResult {
    let roster = match &args.roster {
        Some(p) => Some(load_roster(p)?),
        None => None,
    };
    let path = config::config_path(global.config.as_deref());
    let loaded = config::load(&path)?;
    let resolved = loaded.connectors()?;
    if resolved.is_empty() {
        return Err(Failure::usage(format!(
            "config: {}: no enabled connector in [connectors]",
            loaded.path.display()
        )));
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let connectors = connectors_from_config(&resolved, data_dir, &tx).map_err(|e| match e {
        ConnectorError::Config(m) => {
            Failure::usage(format!("config: {}: {m}", loaded.path.display()))
        }
        other => Failure::other(other.to_string()),
    })?;
    if let Some(d) = &args.directory
        && !connectors.iter().any(|c| c.id() == d)
    {
        return Err(Failure::usage(format!(
            "--directory `{}`: not a configured app",
            clean(d)
        )));
    }
    eprintln!(
        "sweeping {} app(s): {}",
        connectors.len(),
        connectors
            .iter()
            .map(|c| c.id().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let fut = sweep(&connectors, roster.as_ref(), args.directory.as_deref());
    tokio::pin!(fut);
    let report = loop {
        tokio::select! {
            r = &mut fut => break r,
            Some(e) = rx.recv() => {
                if let crate::engine::Event::Http(n) = e {
                    match n {
                        crate::connector::http::HttpNotice::RateLimited { connector, wait, .. } => {
                            eprintln!("[{connector}] rate limited, waiting {:.1}s", wait.as_secs_f64());
                        }
                        crate::connector::http::HttpNotice::Retrying { connector, wait, reason, .. } => {
                            eprintln!("[{connector}] retrying in {:.1}s: {}", wait.as_secs_f64(), clean(&reason));
                        }
                        _ => {}
                    }
                }
            }
        }
    };
    let code = report.exit_code();
    let problems = roster
        .as_ref()
        .map(|r| r.problems.clone())
        .unwrap_or_default();
    if args.json {
        let j = SweepJson {
            schema: SWEEP_SCHEMA,
            report: &report,
            roster_problems: &problems,
            exit_code: code,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&j).map_err(|e| Failure::other(e.to_string()))?
        );
    } else {
        print!("{}", sweep_text(&report));
    }
    Ok(code)
}

/// The report as text: one block per app, then the findings.
pub fn sweep_text(r: &SweepReport) -> String {
    let mut out = String::new();
    for a in &r.apps {
        match &a.error {
            None => out.push_str(&format!("{}: swept, {} account(s)\n", a.app, a.accounts)),
            Some(e) => out.push_str(&format!(
                "{}: NOT SWEPT (nothing is known about it): {e}\n",
                a.app
            )),
        }
    }
    if !r.roster {
        out.push_str("no roster given: accounts are not matched to people (use --roster FILE)\n");
    }
    out.push('\n');
    if r.findings.is_empty() {
        out.push_str(if r.not_swept() == 0 {
            "no findings\n"
        } else {
            "no findings in the apps swept\n"
        });
    }
    for f in &r.findings {
        out.push_str(&format!(
            "{app}  {kind}  {login} ({id})\n    why: {why}\n    last activity: {last}\n    offboard: {cmd}\n",
            app = f.app,
            kind = f.kind.as_str(),
            login = f.login,
            id = f.account_id,
            why = f.why,
            last = f.last_activity.as_deref().unwrap_or("unknown"),
            cmd = f.command,
        ));
    }
    out.push_str(&format!(
        "\n{} finding(s), {} app(s) not swept\n",
        r.findings.len(),
        r.not_swept()
    ));
    out
}

/// `offboard revoke --from FILE`: many leavers in one engine, with a dry
/// run, a cap and a circuit breaker. Progress lines go to stderr.
pub async fn revoke_batch(global: &Global, args: super::RevokeArgs, data_dir: &Path) -> CmdResult {
    use crate::fleet::batch::{self, AppShare, Breaker, Limits};
    use std::collections::{BTreeMap, HashSet};
    use std::io::IsTerminal;

    let from = args.from.clone().expect("--from");
    let sel = super::case::selection(&args.apps, &args.kinds)?;
    let batch = batch::batch_from_file(&from)
        .map_err(|e| Failure::usage(format!("{} (nothing was changed)", clean(&e))))?;
    let leavers: Vec<String> = batch.iter().map(|(e, _)| e.clone()).collect();
    if !args.dry_run && !args.yes && !std::io::stdin().is_terminal() {
        return Err(Failure::usage(
            "refusing to revoke a batch without --yes: stdin is not a terminal (nothing was changed)",
        ));
    }
    let loaded = config::load(&config::config_path(global.config.as_deref()))?;
    let limits = Limits::from_config(&loaded.config.batch);
    let mut s = super::case::open(global, data_dir)?;
    let engine = s.engine.clone();
    let n = leavers.len();
    let urgent = batch
        .iter()
        .filter(|(_, u)| *u == crate::connector::http::Urgency::Urgent)
        .count();
    eprintln!(
        "batch: {n} leaver(s) from {} ({urgent} urgent, served first)",
        from.display()
    );
    for (email, urgency) in &batch {
        engine.set_urgency(email, *urgency);
    }
    // Discovery, a few leavers at a time, their lookups from one bulk read
    // per app where it offers one.
    engine.look_up_many(&leavers, &args.apps);
    let discover = futures::stream::iter(leavers.iter().cloned())
        .map(|email| {
            let engine = engine.clone();
            let apps = args.apps.clone();
            async move { (email.clone(), engine.discover_apps(&email, &apps).await) }
        })
        .buffer_unordered(limits.concurrency)
        .collect::<Vec<_>>();
    let found = super::case::with_progress(&mut s.events, true, discover).await;
    let mut active_in: BTreeMap<String, usize> = BTreeMap::new();
    for (email, r) in &found {
        let view = r
            .as_ref()
            .map_err(|e| Failure::usage(format!("{}: {e} (nothing was changed)", clean(email))))?;
        for a in &view.accounts {
            if sel.matches_app(&a.connector) && a.status.account().is_some_and(|x| x.active) {
                *active_in.entry(a.connector.clone()).or_default() += 1;
            }
        }
    }
    // The share of each app's active accounts: one bulk listing per app.
    let connectors = engine.connector_handles();
    let mut shares = Vec::new();
    for (app, count) in &active_in {
        let Some(c) = connectors.iter().find(|c| c.id() == app) else {
            continue;
        };
        let active = c
            .list_accounts()
            .await
            .map(|v| v.iter().filter(|a| a.account.active).count())
            .map_err(|e| clean(&e.to_string()));
        shares.push(AppShare {
            app: app.clone(),
            leavers: *count,
            active,
        });
    }
    let reasons = batch::cap_reasons(n, &shares, &limits);
    if args.dry_run {
        let mut totals: BTreeMap<(String, String), usize> = BTreeMap::new();
        for email in &leavers {
            let plan = engine
                .plan(email, &sel)
                .map_err(super::case::engine_failure)?;
            for g in plan.phases.iter().flat_map(|p| &p.steps) {
                *totals
                    .entry((g.connector.clone(), g.kind.as_str().to_string()))
                    .or_default() += 1;
            }
        }
        println!("dry run: {n} leaver(s); nothing was changed");
        let mut total = 0;
        for ((app, kind), k) in &totals {
            println!("  {app:<12} {kind:<14} {k}");
            total += k;
        }
        println!("  {:<27} {total}", "total");
        for r in &reasons {
            println!("needs --confirm-count {n}: {r}");
        }
        return Ok(0);
    }
    if !reasons.is_empty() && args.confirm_count != Some(n) {
        let got = match args.confirm_count {
            Some(c) => format!(" (--confirm-count {c} does not match)"),
            None => String::new(),
        };
        return Err(Failure::usage(format!(
            "batch over the cap{got}: {}; run with --confirm-count {n} to go ahead (nothing was changed)",
            reasons.join("; ")
        )));
    }
    // Run: at most `concurrency` leavers at once; the breaker stops new
    // ones from starting, those under way finish.
    let mut breaker = Breaker::new(&limits);
    let mut queue: std::collections::VecDeque<String> = leavers.iter().cloned().collect();
    let mut running = tokio::task::JoinSet::new();
    let mut done = 0usize;
    let mut left_over = false;
    let mut per_app: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut said_paused = false;
    loop {
        while breaker.tripped().is_none() && running.len() < limits.concurrency {
            let Some(email) = queue.pop_front() else {
                break;
            };
            let engine = engine.clone();
            let sel = sel.clone();
            running.spawn(async move {
                let r = engine.revoke(&email, &sel).await;
                (email, r)
            });
        }
        if let Some(why) = breaker.tripped()
            && !said_paused
            && !queue.is_empty()
        {
            eprintln!(
                "batch PAUSED: circuit breaker: {}; {} leaver(s) not started",
                clean(why),
                queue.len()
            );
            said_paused = true;
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            Some(j) = running.join_next() => {
                done += 1;
                match j {
                    Ok((email, Ok(summary))) => {
                        left_over |= summary.exit_code() != 0;
                        eprintln!("overall: {done}/{n} leaver(s) finished ({}: exit {})", clean(&email), summary.exit_code());
                    }
                    Ok((email, Err(e))) => {
                        left_over = true;
                        eprintln!("overall: {done}/{n} leaver(s) finished ({}: {})", clean(&email), clean(&e.to_string()));
                    }
                    Err(e) => {
                        left_over = true;
                        eprintln!("overall: a leaver's task ended: {e}");
                    }
                }
                for (app, (ok, failed)) in &per_app {
                    eprintln!("[{app}] {ok} removal(s) accepted, {failed} failed");
                }
            }
            Some(e) = s.events.recv() => {
                breaker.observe(&e);
                if let crate::engine::Event::State { key, state, .. } = &e {
                    let app = key.split('/').next().unwrap_or("").to_string();
                    let entry = per_app.entry(app).or_default();
                    match state {
                        crate::model::GrantState::Removed => entry.0 += 1,
                        crate::model::GrantState::Failed { .. } => entry.1 += 1,
                        _ => {}
                    }
                }
                if let Some(line) = super::case::progress_line(&e) && !matches!(e, crate::engine::Event::State { .. }) {
                    eprintln!("{line}");
                }
            }
        }
    }
    let not_started: HashSet<&String> = queue.iter().collect();
    if !not_started.is_empty() {
        println!(
            "paused by the circuit breaker: {}",
            clean(breaker.tripped().unwrap_or(""))
        );
        for e in &queue {
            println!("  not started: {}", clean(e));
        }
    }
    println!("{done} of {n} leaver(s) run");
    Ok(if left_over || !not_started.is_empty() {
        3
    } else {
        0
    })
}
