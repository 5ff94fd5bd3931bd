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
                async move {
                    // Every app has answered (its grants are in the plan R makes).
                    e.case(email)
                        .filter(|c| {
                            !c.grants.is_empty()
                                && c.accounts
                                    .iter()
                                    .all(|a| !matches!(a.status, engine::AccountStatus::Pending))
                        })
                        .map(|_| ())
                }
            })
            .await;
            keys.unbounded_send(key(KeyCode::Char('j'))).unwrap();
            keys.unbounded_send(key(KeyCode::Char('R'))).unwrap();
            for c in email.chars() {
                keys.unbounded_send(key(KeyCode::Char(c))).unwrap();
            }
            // Enter starts it once the console has the whole inventory
            // (before, it says "press Enter again"): press until it starts.
            common::wait_for(Duration::from_secs(30), "revoke-all started", || {
                keys.unbounded_send(key(KeyCode::Enter)).unwrap();
                let e = engine.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    e.case(email)
                        .filter(|c| {
                            c.grants
                                .iter()
                                .any(|g| g.state.name() != "live" && g.state.name() != "manual")
                        })
                        .map(|_| ())
                }
            })
            .await;
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
    let apps_before_salesforce = loaded
        .connectors()
        .unwrap()
        .iter()
        .filter(|c| c.id.as_str() < "salesforce")
        .count();
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
            // Salesforce (the apps are listed by connector id: one `j` for
            // each that sorts before it), the list of accounts, pick the
            // second.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let down = vec![KeyCode::Char('j'); apps_before_salesforce];
            for k in [
                vec![KeyCode::Enter],
                down,
                vec![KeyCode::Enter, KeyCode::Char('j'), KeyCode::Enter],
            ]
            .concat()
            {
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

fn console_engine(
    cfg: &std::path::Path,
    data: &std::path::Path,
) -> (
    Arc<Engine>,
    tokio::sync::mpsc::UnboundedReceiver<offboard::engine::Event>,
) {
    let loaded = offboard::config::load(cfg).unwrap();
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let connectors =
        engine::connectors_from_config(&loaded.connectors().unwrap(), data, &tx).unwrap();
    let opts = EngineOptions::from_config(&loaded);
    let ledger = Ledger::open_in(data, &opts.operator).unwrap();
    (Engine::new(connectors, ledger, opts, tx), events)
}

/// `q` while a revoke runs asks (Stay is the default) and says the case
/// resumes; quitting anyway, the next start resumes it and finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_during_a_revoke_asks_and_the_next_start_resumes_it() {
    // Removals stay listed for 4 s: the revoke is still in flight when q
    // is pressed.
    let sandbox = common::sandbox(common::quick(4000)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), &sandbox.base_url);
    let email = "marcus.reyes@example.com";
    let data = dir.path().to_path_buf();
    let options = move || ConsoleOptions {
        operator: "tester".into(),
        read_only: false,
        ascii: false,
        theme: "mono".into(),
        config_dir: None,
        leavers: vec![LeaverRow::new(email)],
        notes: vec![],
    };

    // The first console runs on its own runtime, dropped when it quits: as
    // when the process exits, the revoke in flight stops there.
    let (cfg1, data1) = (cfg.clone(), data.clone());
    let first = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let out = rt.block_on(async move {
            let (engine, events) = console_engine(&cfg1, &data1);
            let mut model = app::initial_model(&engine, options());
            let service: Arc<dyn Service> = Arc::new(EngineService {
                engine: engine.clone(),
                data_dir: data1.clone(),
                login: None,
            });
            let screen = Arc::new(std::sync::Mutex::new(String::new()));
            let mut terminal = Terminal::new(SharedScreen {
                inner: TestBackend::new(80, 24),
                text: screen.clone(),
            })
            .unwrap();
            let (keys, input) = mpsc::unbounded::<io::Result<TermEvent>>();
            let k = common::console::Keys(keys);
            let driver = async {
                common::wait_for(Duration::from_secs(20), "discovery", || {
                    let e = engine.clone();
                    async move { e.case(email).filter(|c| !c.grants.is_empty()).map(|_| ()) }
                })
                .await;
                // The queue says so (the matrix counts show up while the
                // discovery is still running).
                common::console::screen_until(&screen, "Marcus discovered", |s| {
                    let lines: Vec<&str> = s.lines().collect();
                    lines
                        .iter()
                        .position(|l| l.contains("▶ marcus.reyes@example.com"))
                        .is_some_and(|i| lines.get(i + 1).is_some_and(|n| n.contains(" live")))
                })
                .await;
                k.key(KeyCode::Char('R'));
                k.text(email);
                k.key(KeyCode::Enter);
                let start = std::time::Instant::now();
                loop {
                    let s = screen.lock().unwrap().clone();
                    if s.contains("removing") || s.contains("revoking") {
                        break;
                    }
                    assert!(
                        start.elapsed() < Duration::from_secs(20),
                        "no revoke under way:\n{s}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                k.key(KeyCode::Char('q'));
                let asked = common::console::screen_until(&screen, "the quit dialog", |s| {
                    s.contains("Quit while a revoke runs?")
                })
                .await;
                // Enter on the default stays.
                k.key(KeyCode::Enter);
                common::console::screen_until(&screen, "the dialog closed", |s| {
                    !s.contains("Quit while a revoke runs?")
                })
                .await;
                k.key(KeyCode::Char('q'));
                common::console::screen_until(&screen, "the quit dialog again", |s| {
                    s.contains("Quit while a revoke runs?")
                })
                .await;
                k.key(KeyCode::Right);
                k.key(KeyCode::Enter);
                asked
            };
            let run = runtime::run(&mut terminal, &mut model, service, input, events);
            let (result, asked) = tokio::join!(run, driver);
            result.expect("the loop ends cleanly");
            assert!(model.quit);
            asked
        });
        rt.shutdown_background();
        out
    });
    let asked = tokio::task::spawn_blocking(move || first.join().unwrap())
        .await
        .unwrap();
    let joined = asked.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        joined.contains("the case resumes on the next start"),
        "{asked}"
    );
    assert!(
        asked.contains("[ Stay ]") && asked.contains("[ Quit ]"),
        "{asked}"
    );
    let records = Ledger::read(&data.join("ledger.jsonl")).unwrap();
    let open = engine::interrupted_plans(&records);
    assert_eq!(open.len(), 1, "the revoke was interrupted");
    assert_eq!(open[0].0, email);
    assert!(!records.iter().any(|r| r.event.name() == "finished"));

    // The next start: the revoke resumes once Marcus is read, and finishes.
    let (engine, events) = console_engine(&cfg, &data);
    let mut model = app::initial_model(&engine, options());
    assert_eq!(model.leavers[0].resume.len(), open[0].1.len());
    let service: Arc<dyn Service> = Arc::new(EngineService {
        engine: engine.clone(),
        data_dir: data.clone(),
        login: None,
    });
    let screen = Arc::new(std::sync::Mutex::new(String::new()));
    let mut terminal = Terminal::new(SharedScreen {
        inner: TestBackend::new(80, 24),
        text: screen.clone(),
    })
    .unwrap();
    let (keys, input) = mpsc::unbounded::<io::Result<TermEvent>>();
    let driver = {
        let data = data.clone();
        async move {
            common::wait_for(
                Duration::from_secs(120),
                "the resumed run to finish",
                || {
                    let records = Ledger::read(&data.join("ledger.jsonl")).unwrap_or_default();
                    let done = records.iter().any(|r| r.event.name() == "finished");
                    async move { done.then_some(()) }
                },
            )
            .await;
            common::wait_for(Duration::from_secs(20), "the console to settle", || {
                let s = screen.lock().unwrap().clone();
                async move { (!s.contains("removing")).then_some(()) }
            })
            .await;
            keys.unbounded_send(key(KeyCode::Char('q'))).unwrap();
        }
    };
    let run = runtime::run(&mut terminal, &mut model, service, input, events);
    let (result, ()) = tokio::join!(run, driver);
    result.expect("the loop ends cleanly");
    assert!(model.quit, "nothing in flight: q quits at once");
    assert!(
        model
            .activity
            .iter()
            .any(|a| a.text.contains("resuming the interrupted revoke")),
        "{:?}",
        model.activity
    );
    let records = Ledger::read(&data.join("ledger.jsonl")).unwrap();
    assert!(engine::interrupted_plans(&records).is_empty());
    let case = engine.case(email).unwrap();
    let live: Vec<String> = case
        .grants
        .iter()
        .filter(|g| g.state == offboard::model::GrantState::Live || g.state.is_removing())
        .map(|g| {
            let history: Vec<String> = records
                .iter()
                .filter(|r| r.key() == Some(g.key.as_str()))
                .map(|r| {
                    format!(
                        "{} {} {}",
                        r.seq,
                        r.ts.format("%H:%M:%S%.3f"),
                        r.event.name()
                    )
                })
                .collect();
            format!("{} {:?} {:?} {history:?}", g.key, g.state, g.last_answer)
        })
        .collect();
    assert_eq!(
        case.summary.live + case.summary.removing,
        0,
        "{:?} {live:?}",
        case.summary
    );
    assert!(records.iter().any(|r| r.event.name() == "resumed"));
    sandbox.stop().await;
}
