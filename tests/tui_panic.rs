//! A panic in a spawned task ends the console loop (no hang) and is written
//! to the log file by the panic hook.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::Event as TermEvent;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use offboard::tui::app::{self, ConsoleOptions, EngineService};
use offboard::tui::runtime::{self, Service};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_task_ends_the_loop_and_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("offboard.log");
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let ledger = offboard::evidence::Ledger::open_in(dir.path(), "tester").unwrap();
    let engine = offboard::engine::Engine::new(
        vec![],
        ledger,
        offboard::engine::EngineOptions {
            operator: "tester".into(),
            verify_deadline: Duration::from_secs(5),
            verify_initial_delay: Duration::from_millis(50),
        },
        tx,
    );
    let opts = ConsoleOptions {
        operator: "tester".into(),
        read_only: false,
        ascii: true,
        theme: "mono".into(),
        config_dir: None,
        leavers: vec![],
        notes: vec![],
    };
    let mut model = app::initial_model(&engine, opts);
    let service: Arc<dyn Service> = Arc::new(EngineService {
        engine,
        data_dir: dir.path().to_path_buf(),
        login: None,
    });
    offboard::tui::terminal::install_panic_hook(&log);
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    // Input that never ends: only the panic can stop the loop.
    let input = futures::stream::pending::<io::Result<TermEvent>>();
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        panic!("boom in a background task");
    });
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        runtime::run(&mut terminal, &mut model, service, input, events),
    )
    .await
    .expect("the loop ends instead of hanging");
    assert!(result.is_err(), "a panic is an error exit");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("PANIC") && text.contains("boom in a background task"),
        "{text}"
    );
}
