//! `offboard store …`: team mode's shared store on PostgreSQL (schema,
//! import of a ledger file, the queue, a live view of everyone's steps).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::{CmdResult, Failure, Global};
use crate::config;
use crate::evidence::{self, Ledger, Store};
use crate::sanitize::{clean, clean_max};
use crate::store::{PgStore, pg};

#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub action: StoreAction,
}

#[derive(Debug, Subcommand)]
pub enum StoreAction {
    /// Create or update offboard's tables (as the schema owner).
    Migrate,
    /// Copy a ledger file into the shared store's empty ledger table, chain
    /// preserved and verified (default: the data directory's ledger).
    Import {
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// The shared queue: every leaver, who holds each and since when.
    Queue {
        #[arg(long)]
        json: bool,
    },
    /// Add leavers to the shared queue.
    Add {
        #[arg(required = true)]
        emails: Vec<String>,
    },
    /// Watch everyone's steps live (changes nothing); Ctrl-C ends it.
    Watch {
        /// Only this leaver's steps.
        email: Option<String>,
        /// End after this many new records.
        #[arg(long, value_name = "N")]
        count: Option<usize>,
    },
}

fn loaded(global: &Global) -> Result<config::Loaded, Failure> {
    let path = config::config_path(global.config.as_deref());
    Ok(config::load(&path)?)
}

/// The shared store `[store] url` names, or a usage error.
fn shared(global: &Global) -> Result<(std::sync::Arc<PgStore>, config::Loaded), Failure> {
    let (store, loaded) = unmigrated(global)?;
    let s = store.clone();
    pg::block(async move { s.migrate().await }).map_err(|e| Failure::other(e.to_string()))?;
    Ok((store, loaded))
}

fn unmigrated(global: &Global) -> Result<(std::sync::Arc<PgStore>, config::Loaded), Failure> {
    let loaded = loaded(global)?;
    if loaded.config.store.url.is_none() {
        return Err(Failure::usage(format!(
            "config: {}: no [store] url: team mode needs a PostgreSQL database (README, Team mode)",
            loaded.path.display()
        )));
    }
    let target = pg::Target::new(&loaded.config.store, &loaded.dir)
        .map_err(|e| Failure::usage(format!("config: {}: {e}", loaded.path.display())))?;
    Ok((PgStore::new(target), loaded))
}

/// Where `evidence` reads: `--ledger FILE`, else the store the config
/// names (the data directory's file without a config).
pub(crate) fn evidence_store(
    global: &Global,
    data_dir: &Path,
    ledger: Option<&Path>,
) -> Result<Store, Failure> {
    if let Some(p) = ledger {
        return Ok(Store::File(p.to_path_buf()));
    }
    let path = config::config_path(global.config.as_deref());
    if !path.exists() && global.config.is_none() {
        return Ok(Store::File(data_dir.join(evidence::LEDGER_FILE)));
    }
    let loaded = config::load(&path)?;
    crate::store::open(&loaded.config.store, &loaded.dir, data_dir)
        .map_err(|e| Failure::other(e.to_string()))
}

pub async fn run(global: &Global, args: StoreArgs, data_dir: PathBuf) -> CmdResult {
    match args.action {
        StoreAction::Migrate => {
            let (store, _) = unmigrated(global)?;
            let s = store.clone();
            let applied = pg::spawn(async move { s.migrate().await })
                .await
                .map_err(|e| Failure::other(e.to_string()))?;
            println!(
                "{}: schema up to date (version {}){}",
                store.label(),
                pg::MIGRATIONS.last().map_or(0, |m| m.0),
                if applied.is_empty() {
                    String::new()
                } else {
                    format!("; applied {}", applied.join(", "))
                }
            );
            Ok(0)
        }
        StoreAction::Import { file } => {
            let (store, _) = shared(global)?;
            import(
                &store,
                &file.unwrap_or_else(|| data_dir.join(evidence::LEDGER_FILE)),
            )
            .await
        }
        StoreAction::Queue { json } => {
            let (store, _) = shared(global)?;
            let s = store.clone();
            let rows = pg::spawn(async move { s.queue().await })
                .await
                .map_err(|e| Failure::other(e.to_string()))?;
            if json {
                let text = serde_json::to_string_pretty(&serde_json::json!({
                    "schema": "offboard.queue/1",
                    "store": store.label(),
                    "leavers": rows,
                }))
                .map_err(|e| Failure::other(e.to_string()))?;
                println!("{text}");
                return Ok(0);
            }
            if rows.is_empty() {
                println!("the queue is empty");
            }
            for r in rows {
                let held = match (&r.holder, r.since) {
                    (Some(h), Some(t)) => format!(
                        "held by {} since {}",
                        clean_max(h, 60),
                        t.format("%Y-%m-%d %H:%M:%S UTC")
                    ),
                    _ => "free".into(),
                };
                println!(
                    "{}  {}  {}  (added by {} from {})",
                    clean(&r.email),
                    r.name
                        .as_deref()
                        .map(|n| clean_max(n, 40))
                        .unwrap_or_default(),
                    held,
                    clean_max(&r.added_by, 60),
                    clean_max(&r.source, 20)
                );
            }
            Ok(0)
        }
        StoreAction::Add { emails } => {
            let (store, loaded) = shared(global)?;
            let mut leavers = Vec::new();
            for e in &emails {
                let email = crate::model::Person::new(e).email;
                if !email.contains('@') {
                    return Err(Failure::usage(format!(
                        "`{}` is not an email address",
                        clean_max(e, 60)
                    )));
                }
                leavers.push((email, None));
            }
            let by = crate::store::me(&loaded.operator()).label;
            let n = leavers.len();
            let s = store.clone();
            pg::spawn(async move { s.add_leavers(leavers, ":add".into(), by).await })
                .await
                .map_err(|e| Failure::other(e.to_string()))?;
            println!("{n} leaver(s) in the shared queue");
            Ok(0)
        }
        StoreAction::Watch { email, count } => {
            let (store, _) = shared(global)?;
            watch(
                &store,
                email.map(|e| crate::model::Person::new(&e).email),
                count,
            )
            .await
        }
    }
}

/// Copies a ledger file in, verbatim, after checking its chain; then checks
/// the table's chain and that both end on the same head.
async fn import(store: &std::sync::Arc<PgStore>, file: &Path) -> CmdResult {
    if !file.exists() {
        return Err(Failure::other(format!("no ledger at {}", file.display())));
    }
    let before = evidence::verify_chain(file).map_err(|e| Failure::other(e.to_string()))?;
    if !before.ok() {
        return Err(Failure::other(format!(
            "{}: the hash chain is broken ({} problem(s)); nothing was imported (run `offboard evidence verify --ledger {}`)",
            file.display(),
            before.problems.len(),
            file.display()
        )));
    }
    let bytes =
        std::fs::read(file).map_err(|e| Failure::other(format!("{}: {e}", file.display())))?;
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if complete < bytes.len() {
        return Err(Failure::other(format!(
            "{}: the last line is incomplete (a crash while writing); open the ledger once with offboard to set it aside, then import",
            file.display()
        )));
    }
    let records = Ledger::read(file).map_err(|e| Failure::other(e.to_string()))?;
    let mut lines = Vec::new();
    for (line, r) in bytes[..complete]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .zip(&records)
    {
        let text = String::from_utf8(line.to_vec())
            .map_err(|_| Failure::other(format!("{}: a line is not UTF-8", file.display())))?;
        lines.push((r.seq, r.case.clone(), text));
    }
    let n = lines.len();
    let s = store.clone();
    pg::spawn(async move { s.import(lines).await })
        .await
        .map_err(|e| Failure::other(e.to_string()))?;
    let shared = Store::Shared(store.clone());
    let after = tokio::task::spawn_blocking(move || shared.verify())
        .await
        .map_err(|e| Failure::other(e.to_string()))?
        .map_err(|e| Failure::other(e.to_string()))?;
    if !after.ok() || after.head != before.head || after.records != before.records {
        return Err(Failure::other(format!(
            "{}: after the import the chain does not match the file ({} records, head {}; the file: {} records, head {})",
            store.label(),
            after.records,
            after.head,
            before.records,
            before.head
        )));
    }
    println!(
        "imported {n} records from {} into {}: hash chain intact, same head\nhead: {}",
        file.display(),
        store.label(),
        after.head
    );
    Ok(0)
}

/// Prints every new ledger record as it is committed (LISTEN/NOTIFY), from
/// any host, until `count` records or Ctrl-C.
async fn watch(
    store: &std::sync::Arc<PgStore>,
    email: Option<String>,
    count: Option<usize>,
) -> CmdResult {
    let mut notes = store.listen();
    let mut seen = {
        let s = store.clone();
        pg::spawn(async move { s.count().await })
            .await
            .map_err(|e| Failure::other(e.to_string()))?
    };
    let mut shown = 0usize;
    let (mut listening, mut away) = (false, false);
    eprintln!(
        "watching {} from record {} (Ctrl-C ends; nothing is changed)",
        store.label(),
        seen + 1
    );
    loop {
        let note = tokio::select! {
            n = notes.recv() => n,
            _ = tokio::signal::ctrl_c() => return Ok(0),
        };
        let Some((channel, _payload)) = note else {
            return Ok(0);
        };
        match channel.as_str() {
            "offboard_listening" => {
                if !listening {
                    println!("listening");
                    listening = true;
                } else if away {
                    eprintln!("offboard: the database is back");
                }
                away = false;
                // Records committed while away are caught up below.
            }
            "offboard_reconnect" => {
                if !away {
                    eprintln!("offboard: the database is away; reconnecting…");
                    away = true;
                }
                continue;
            }
            "offboard_ledger" => {}
            _ => continue,
        }
        let s = store.clone();
        let lines = match pg::spawn(async move { s.lines_after(seen).await }).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("offboard: {e}");
                continue;
            }
        };
        for line in lines {
            let Ok(r) = serde_json::from_str::<evidence::Record>(&line) else {
                continue;
            };
            seen = seen.max(r.seq);
            if email.as_deref().is_some_and(|e| e != r.case) {
                continue;
            }
            println!(
                "{} {} {} {} {}",
                r.seq,
                r.ts.format("%H:%M:%S"),
                clean_max(&r.operator, 40),
                clean(&r.case),
                clean_max(&evidence::report::event_detail(&r.event), 160)
            );
            shown += 1;
            if count.is_some_and(|c| shown >= c) {
                return Ok(0);
            }
        }
    }
}
