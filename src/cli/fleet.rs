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
use crate::fleet::Roster;
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
pub fn load_roster(path: &Path) -> Result<Roster, Failure> {
    let roster = Roster::load(path).map_err(|e| Failure::usage(clean(&e)))?;
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
