//! The console's fleet features on the real loop (a TestBackend, scripted
//! keys) against the real engine, drivers and sandbox over HTTP: `:auto on`
//! runs the exit-time policy while the console is open (once per leaver),
//! and leavers picked with Space run as one batch with `B`, after the dry
//! run and the exact count, with progress per app.

mod common;

use common::console::{Keys, SharedScreen, screen_until};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::KeyCode;
use futures::channel::mpsc;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use offboard::engine::{self, Engine, EngineOptions};
use offboard::evidence::Ledger;
use offboard::tui::app::{self, ConsoleOptions, EngineService};
use offboard::tui::fleet::{Fleet, FleetService, forward_events};
use offboard::tui::model::LeaverRow;
use offboard::tui::runtime::{self, Service};

const TOM: &str = "tom.becker@example.com";
const DANA: &str = "dana.whitfield@example.com";
const LENA: &str = "lena.kowalski@example.com";

struct Console {
    engine: Arc<Engine>,
    keys: Keys,
    screen: Arc<std::sync::Mutex<String>>,
    ledger: std::path::PathBuf,
    sandbox: offboard::sandbox::Running,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

async fn console(roster: &str, leavers: &[&str]) -> Console {
    let sandbox = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), &sandbox.base_url);
    let roster_path = dir.path().join("hr.csv");
    std::fs::write(&roster_path, roster).unwrap();
    let loaded = offboard::config::load(&cfg).unwrap();
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let resolved = loaded.connectors().unwrap();
    let connectors = engine::connectors_from_config(&resolved, dir.path(), &tx).unwrap();
    let opts = EngineOptions::from_config(&loaded);
    let ledger = Ledger::open_in(dir.path(), &opts.operator).unwrap();
    let engine = Engine::new(connectors, ledger, opts, tx);
    let console = ConsoleOptions {
        operator: "tester".into(),
        read_only: false,
        ascii: false,
        theme: "default".into(),
        config_dir: None,
        leavers: leavers.iter().map(|e| LeaverRow::new(e)).collect(),
        notes: vec![],
    };
    let mut model = app::initial_model(&engine, console);
    let fleet = Fleet {
        roster: Some(roster_path),
        roster_cfg: loaded.config.roster.clone(),
        policy: loaded.config.policy.clone(),
        limits: Some(offboard::fleet::batch::Limits::from_config(
            &loaded.config.batch,
        )),
        quotas: offboard::fleet::batch::quotas(&loaded),
    };
    let service = FleetService::new(
        EngineService {
            engine: engine.clone(),
            data_dir: dir.path().to_path_buf(),
            login: None,
        },
        fleet,
        HashMap::new(),
    );
    let events = forward_events(events, service.monitor.clone());
    let service: Arc<dyn Service> = Arc::new(service);
    let screen = Arc::new(std::sync::Mutex::new(String::new()));
    let mut terminal = Terminal::new(SharedScreen {
        inner: TestBackend::new(110, 32),
        text: screen.clone(),
    })
    .unwrap();
    let (keys, input) = mpsc::unbounded();
    let task = tokio::spawn(async move {
        let _ = runtime::run(&mut terminal, &mut model, service, input, events).await;
    });
    Console {
        ledger: engine.ledger_path(),
        engine,
        keys: Keys(keys),
        screen,
        sandbox,
        _dir: dir,
        task,
    }
}

fn requested(ledger: &std::path::Path, who: &str) -> usize {
    std::fs::read_to_string(ledger)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(who) && l.contains("\"revoke_requested\""))
        .count()
}

fn ago(h: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::hours(h))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_on_runs_the_exit_time_policy_while_the_console_is_open() {
    let boss = offboard::sandbox::tenant::people()
        .into_iter()
        .find(|p| p.scenario.is_none())
        .unwrap()
        .email;
    let roster = format!(
        "email,name,status,exit_time,manager\n\
         {TOM},Tom,left,{},{boss}\n\
         {DANA},Dana,leaving,{},{boss}\n",
        ago(14 * 24),
        ago(-48)
    );
    let c = console(&roster, &[TOM, DANA]).await;
    screen_until(&c.screen, "the console", |s| s.contains("Leavers (2)")).await;
    // Off by default: nothing is revoked while the console is open.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(requested(&c.ledger, TOM), 0);
    assert!(
        !c.screen
            .lock()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .contains("AUTO")
    );

    c.keys.command("auto on");
    screen_until(&c.screen, "AUTO in the header", |s| {
        s.lines().next().is_some_and(|l| l.contains("AUTO"))
    })
    .await;
    // Tom left two weeks ago: revoked; Dana is not due.
    common::wait_for(Duration::from_secs(60), "Tom revoked by the policy", || {
        let e = c.engine.clone();
        async move {
            e.case(TOM)
                .filter(|v| v.summary.live + v.summary.removing == 0 && v.summary.verified > 0)
                .map(|_| ())
        }
    })
    .await;
    screen_until(&c.screen, "the run in the activity pane", |s| {
        s.contains("auto: tom.becker@example.com")
    })
    .await;
    assert!(requested(&c.ledger, TOM) > 0);
    assert_eq!(requested(&c.ledger, DANA), 0, "Dana is not due");
    // His data went to his manager, through the Data Transfer API.
    assert_eq!(c.sandbox.state.google.lock().unwrap().transfers.len(), 1);
    c.keys.command("auto off");
    c.keys.command("quit");
    let _ = tokio::time::timeout(Duration::from_secs(10), c.task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn picked_leavers_run_as_one_batch_with_progress() {
    let c = console("email,status\n", &[DANA, LENA]).await;
    screen_until(&c.screen, "the console", |s| s.contains("Leavers (2)")).await;
    c.keys.key(KeyCode::Char(' '));
    c.keys.key(KeyCode::Char(' '));
    screen_until(&c.screen, "two picked", |s| s.contains("2 picked")).await;
    c.keys.key(KeyCode::Char('B'));
    let s = screen_until(&c.screen, "the dry run", |s| {
        s.contains("Type 2 (the number")
    })
    .await;
    assert!(s.contains("Dry run for 2 leaver(s)"), "{s}");
    assert!(s.contains("google account 2"), "{s}");
    assert_eq!(requested(&c.ledger, DANA), 0, "the dry run changes nothing");
    c.keys.text("2");
    c.keys.key(KeyCode::Enter);
    let s = screen_until(&c.screen, "the batch's progress", |s| {
        s.contains("Batch: 2 leaver(s)")
    })
    .await;
    assert!(s.contains("overall"), "{s}");
    let s = common::wait_for(Duration::from_secs(90), "the batch to end", || {
        let s = c.screen.lock().unwrap().clone();
        async move { s.contains("ended (Esc closes)").then_some(s) }
    })
    .await;
    let google = s
        .lines()
        .find(|l| l.contains("google") && l.contains('[') && l.contains("quota"))
        .unwrap_or_else(|| panic!("{s}"));
    assert!(google.contains("done"), "{s}");
    assert!(s.contains("2/2 leaver(s) finished"), "{s}");
    assert!(requested(&c.ledger, DANA) > 0);
    assert!(requested(&c.ledger, LENA) > 0);
    c.keys.command("quit");
    let _ = tokio::time::timeout(Duration::from_secs(10), c.task).await;
}
