//! `offboard sweep`: the orphan sweep from the command line. Progress and
//! roster problems go to stderr, the report to stdout; every text from an
//! API is sanitised before it is printed.
//!
//! `--json` output: `offboard.sweep/1`, see [`crate::fleet::sweep::SweepReport`].

use std::path::Path;

use serde::Serialize;

use super::{CmdResult, Failure, Global, SweepArgs};
use crate::config;
use crate::connector::ConnectorError;
use crate::engine::connectors_from_config;
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

pub async fn sweep_cmd(global: &Global, args: SweepArgs, data_dir: &Path) -> CmdResult {
    let path = config::config_path(global.config.as_deref());
    let loaded = config::load(&path)?;
    // `--roster FILE`, else `[roster] path`; skipped lines go to stderr.
    let roster = super::fleet::load_roster(
        args.roster.as_deref(),
        &loaded.config.roster,
        Some(&loaded.dir),
    )?;
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
    let problems: Vec<String> = roster
        .as_ref()
        .map(|r| r.errors.iter().map(|e| clean(&e.to_string())).collect())
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
/// run, a cap and a circuit breaker (see [`crate::fleet::batch`]). Progress
/// lines (a bar per app and overall, with the time left) go to stderr.
pub async fn revoke_batch(global: &Global, args: super::RevokeArgs, data_dir: &Path) -> CmdResult {
    use crate::fleet::batch::{self, Limits, Monitor, Progress};
    use std::io::IsTerminal;
    use std::sync::{Arc, Mutex};

    let from = args.from.clone().expect("--from");
    let sel = super::case::selection(&args.apps, &args.kinds)?;
    let loaded = config::load(&config::config_path(global.config.as_deref()))?;
    let leavers = batch::leavers_from_file(&from, &loaded.config.roster)
        .map_err(|e| Failure::usage(format!("{} (nothing was changed)", clean(&e))))?;
    if !args.dry_run && !args.yes && !std::io::stdin().is_terminal() {
        return Err(Failure::usage(
            "refusing to revoke a batch without --yes: stdin is not a terminal (nothing was changed)",
        ));
    }
    let limits = Limits::from_config(&loaded.config.batch);
    let mut s = super::case::open(global, data_dir)?;
    let engine = s.engine.clone();
    let n = leavers.len();
    eprintln!("batch: {n} leaver(s) from {}", from.display());
    let prepared = super::case::with_progress(
        &mut s.events,
        true,
        batch::prepare(&engine, &leavers, &sel, &limits),
    )
    .await
    .map_err(|e| Failure::usage(format!("{} (nothing was changed)", clean(&e))))?;
    if args.dry_run {
        println!("dry run: {n} leaver(s); nothing was changed");
        let mut total = 0;
        for ((app, kind), k) in &prepared.totals {
            println!("  {app:<12} {kind:<14} {k}");
            total += k;
        }
        println!("  {:<27} {total}", "total");
        for r in &prepared.reasons {
            println!("needs --confirm-count {n}: {r}");
        }
        return Ok(0);
    }
    if !prepared.confirmed_by(args.confirm_count) {
        let got = match args.confirm_count {
            Some(c) => format!(" (--confirm-count {c} does not match)"),
            None => String::new(),
        };
        return Err(Failure::usage(format!(
            "batch over the cap{got}: {}; run with --confirm-count {n} to go ahead (nothing was changed)",
            prepared.reasons.join("; ")
        )));
    }
    let progress = Progress::new(
        &prepared.leavers,
        &prepared.requests,
        &batch::quotas(&loaded),
    );
    let monitor = Arc::new(Mutex::new(Monitor::new(&limits, progress)));
    let run = batch::run(
        engine.clone(),
        prepared.leavers.clone(),
        sel,
        limits.concurrency,
        monitor.clone(),
    );
    tokio::pin!(run);
    let mut said_paused = false;
    let mut printed = 0usize;
    let mut last_bars = std::time::Instant::now();
    let bars = |m: &Monitor| {
        for l in m.progress.lines(20) {
            eprintln!("{l}");
        }
    };
    let outcome = loop {
        tokio::select! {
            out = &mut run => break out,
            Some(e) = s.events.recv() => {
                let m = &mut *monitor.lock().expect("monitor lock");
                m.observe(&e);
                if let Some(line) = super::case::progress_line(&e)
                    && !matches!(e, crate::engine::Event::State { .. })
                {
                    eprintln!("{line}");
                }
                if let Some(why) = m.breaker.tripped() && !said_paused {
                    eprintln!("batch PAUSED: circuit breaker: {}; no new leaver starts", clean(why));
                    said_paused = true;
                }
                let finished = m.progress.finished.len();
                if finished > printed {
                    for f in &m.progress.finished[printed..] {
                        eprintln!("overall: {}/{n} leaver(s) finished ({f})", m.progress.done);
                    }
                    printed = finished;
                    bars(m);
                    last_bars = std::time::Instant::now();
                } else if last_bars.elapsed() >= std::time::Duration::from_secs(2) {
                    bars(m);
                    last_bars = std::time::Instant::now();
                }
            }
        }
    };
    {
        let mut m = monitor.lock().expect("monitor lock");
        // What the engine said before the last leaver's revoke returned.
        while let Ok(e) = s.events.try_recv() {
            m.observe(&e);
        }
        for f in &m.progress.finished[printed..] {
            eprintln!("overall: {}/{n} leaver(s) finished ({f})", m.progress.done);
        }
        bars(&m);
    }
    if !outcome.not_started.is_empty() {
        println!(
            "paused by the circuit breaker: {}",
            clean(outcome.paused.as_deref().unwrap_or(""))
        );
        eprintln!(
            "batch PAUSED: circuit breaker: {}; {} leaver(s) not started",
            clean(outcome.paused.as_deref().unwrap_or("")),
            outcome.not_started.len()
        );
        for e in &outcome.not_started {
            println!("  not started: {}", clean(e));
        }
    }
    println!("{} of {n} leaver(s) run", outcome.finished.len());
    Ok(outcome.exit_code())
}
