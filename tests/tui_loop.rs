//! The real console loop on a TestBackend, driven by scripted keys, against
//! the real engine, drivers and sandbox over HTTP.

mod common;

use common::console::SharedScreen;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use futures::channel::mpsc;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use offboard::engine::{self, Engine, EngineOptions};
use offboard::evidence::Ledger;
use offboard::tui::app::{self, ConsoleOptions, EngineService};
use offboard::tui::model::LeaverRow;
use offboard::tui::runtime::{self, Service};

fn key(c: KeyCode) -> io::Result<TermEvent> {
    Ok(TermEvent::Key(KeyEvent::new(c, KeyModifiers::NONE)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_keys_drive_the_real_loop() {
    let sandbox = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), &sandbox.base_url);
    let loaded = offboard::config::load(&cfg).unwrap();
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let connectors =
        engine::connectors_from_config(&loaded.connectors().unwrap(), dir.path(), &tx).unwrap();
    let opts = EngineOptions::from_config(&loaded);
    let ledger = Ledger::open_in(dir.path(), &opts.operator).unwrap();
    let engine = Engine::new(connectors, ledger, opts, tx);

    let email = "marcus.reyes@example.com";
    let console = ConsoleOptions {
        operator: "tester".into(),
        read_only: false,
        ascii: false,
        theme: "default".into(),
        config_dir: None,
        leavers: vec![
            LeaverRow::new("lena.kowalski@example.com"),
            LeaverRow::new(email),
        ],
        notes: vec![],
    };
    let mut model = app::initial_model(&engine, console);
    let service: Arc<dyn Service> = Arc::new(EngineService {
        engine: engine.clone(),
        data_dir: dir.path().to_path_buf(),
        login: None,
    });
    let screen = Arc::new(std::sync::Mutex::new(String::new()));
    let mut terminal = Terminal::new(SharedScreen {
        inner: TestBackend::new(100, 30),
        text: screen.clone(),
    })
    .unwrap();
    let (keys, input) = mpsc::unbounded::<io::Result<TermEvent>>();

    let driver = {
        let engine = engine.clone();
        async move {
            common::wait_for(Duration::from_secs(20), "discovery", || {
                let e = engine.clone();
                async move { e.case(email).filter(|c| !c.grants.is_empty()).map(|_| ()) }
            })
            .await;
            keys.unbounded_send(key(KeyCode::Char('j'))).unwrap();
            keys.unbounded_send(key(KeyCode::Char('R'))).unwrap();
            for c in email.chars() {
                keys.unbounded_send(key(KeyCode::Char(c))).unwrap();
            }
            keys.unbounded_send(key(KeyCode::Enter)).unwrap();
            common::wait_for(Duration::from_secs(150), "every grant closed", || {
                let e = engine.clone();
                async move {
                    e.case(email)
                        .filter(|c| {
                            c.summary.live + c.summary.removing == 0 && c.summary.verified > 0
                        })
                        .map(|_| ())
                }
            })
            .await;
            // Then wait until the console shows it too: the matrix's counts
            // (its bottom border) hold verified grants and none live or removing.
            common::wait_for(Duration::from_secs(30), "the console to show it", || {
                let text = screen.lock().unwrap().clone();
                let shown = text.lines().any(|l| {
                    l.contains("verified")
                        && l.contains(" left")
                        && !l.contains(" live ")
                        && !l.contains("removing")
                });
                async move { shown.then_some(()) }
            })
            .await;
            keys.unbounded_send(key(KeyCode::Char('q'))).unwrap();
        }
    };
    let run = runtime::run(&mut terminal, &mut model, service, input, events);
    let (result, ()) = tokio::join!(run, driver);
    result.expect("the loop ends cleanly");
    assert!(model.quit);
    let l = model.leavers.iter().find(|l| l.email == email).unwrap();
    assert!(
        l.grants
            .iter()
            .all(|g| !g.state.is_removing() && g.state != offboard::model::GrantState::Live)
    );
    let buf = terminal.backend().inner.buffer().clone();
    let text: String = (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
                + "\n"
        })
        .collect();
    assert!(
        text.contains("Marcus Reyes <marcus.reyes@example.com>")
            || text.contains("<marcus.reyes@example.com>"),
        "{text}"
    );
    assert!(text.contains("verified"), "{text}");
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_account_is_picked_in_the_console() {
    let sandbox = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), &sandbox.base_url);
    let loaded = offboard::config::load(&cfg).unwrap();
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let connectors =
        engine::connectors_from_config(&loaded.connectors().unwrap(), dir.path(), &tx).unwrap();
    let opts = EngineOptions::from_config(&loaded);
    let ledger = Ledger::open_in(dir.path(), &opts.operator).unwrap();
    let engine = Engine::new(connectors, ledger, opts, tx);
    let email = "lena.kowalski@example.com";
    let console = ConsoleOptions {
        operator: "tester".into(),
        read_only: false,
        ascii: true,
        theme: "mono".into(),
        config_dir: None,
        leavers: vec![LeaverRow::new(email)],
        notes: vec![],
    };
    let mut model = app::initial_model(&engine, console);
    let service: Arc<dyn Service> = Arc::new(EngineService {
        engine: engine.clone(),
        data_dir: dir.path().to_path_buf(),
        login: None,
    });
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let (keys, input) = mpsc::unbounded::<io::Result<TermEvent>>();
    let ambiguous = |e: &Arc<Engine>| {
        e.case(email).and_then(|c| {
            c.accounts
                .iter()
                .find(|a| a.connector == "salesforce")
                .map(|a| a.status.clone())
        })
    };
    let driver = {
        let engine = engine.clone();
        async move {
            let candidates = common::wait_for(Duration::from_secs(20), "two matches", || {
                let s = ambiguous(&engine);
                async move {
                    match s {
                        Some(engine::AccountStatus::Ambiguous { candidates }) => Some(candidates),
                        _ => None,
                    }
                }
            })
            .await;
            // The discovery result reaches the console, then: matrix,
            // Salesforce (after Google Workspace and Miro), the list of
            // accounts, pick the second.
            tokio::time::sleep(Duration::from_millis(300)).await;
            for k in [
                KeyCode::Enter,
                KeyCode::Char('j'),
                KeyCode::Char('j'),
                KeyCode::Enter,
                KeyCode::Char('j'),
                KeyCode::Enter,
            ] {
                keys.unbounded_send(key(k)).unwrap();
            }
            let want = candidates[1].id.clone();
            common::wait_for(Duration::from_secs(20), "the pick applied", || {
                let s = ambiguous(&engine);
                let want = want.clone();
                async move {
                    match s {
                        Some(engine::AccountStatus::Found { account }) if account.id == want => {
                            Some(())
                        }
                        _ => None,
                    }
                }
            })
            .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            keys.unbounded_send(key(KeyCode::Char('q'))).unwrap();
        }
    };
    let run = runtime::run(&mut terminal, &mut model, service, input, events);
    let (result, ()) = tokio::join!(run, driver);
    result.expect("the loop ends cleanly");
    let l = &model.leavers[0];
    assert!(matches!(
        l.accounts.get("salesforce"),
        Some(offboard::tui::model::AccountStatus::Found { .. })
    ));
    assert!(l.grants.iter().any(|g| g.grant.connector == "salesforce"));
    assert!(
        model
            .activity
            .iter()
            .any(|a| a.text.contains("recorded in the ledger")),
    );
    sandbox.stop().await;
}
