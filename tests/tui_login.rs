//! `:login APP` inside the real console loop, against the sandbox's
//! authorization server over HTTP, driven by scripted keys; the screen is
//! read the way an operator reads it. Also: a connector whose token fails
//! shows "auth error" in the header after its first read.

mod common;

use common::console::{Keys, SharedScreen, screen_until};
use common::oauth::{consent, decide_device};

use std::io;
use std::sync::{Arc, Mutex};

use crossterm::event::{Event as TermEvent, KeyCode};
use futures::channel::mpsc;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use offboard::connector::ResolvedConnector;
use offboard::connector::http::shared_reqwest;
use offboard::connector::manifest::parse_manifest;
use offboard::engine::{self, Engine, EngineOptions};
use offboard::evidence::Ledger;
use offboard::sandbox::oauth::{PUBLIC_CLIENT, Settings};
use offboard::tui::app::{self, ConsoleOptions, EngineService};
use offboard::tui::model::LeaverRow;
use offboard::tui::runtime::{self, Service};
use offboard::tui::signin::SignIn;

fn oauth_app(id: &str, base: &str, flow: &str, dir: &std::path::Path) -> ResolvedConnector {
    let text = format!(
        r#"id = "{id}"
display_name = "OAuth app"
driver = "oauth-test"

[api]
base_url = "{base}"

[auth]
flow = "{flow}"
token_url = "{base}/oauth2/token"
authorize_url = "{base}/oauth2/authorize"
device_url = "{base}/oauth2/device/authorize"
revoke_url = "{base}/oauth2/revoke"
client_id = "{PUBLIC_CLIENT}"
scopes = ["directory.read"]
"#
    );
    ResolvedConnector {
        id: id.into(),
        manifest: parse_manifest(&text, "test").unwrap(),
        config_dir: dir.to_path_buf(),
    }
}

/// The text of the line after `marker` on screen, inside the dialog's
/// borders.
fn after(screen: &str, marker: &str) -> String {
    let line = screen.lines().find(|l| l.contains(marker)).unwrap();
    let rest = &line[line.find(marker).unwrap() + marker.len()..];
    rest.trim_start()
        .split(|c: char| c.is_whitespace() || c == '│')
        .next()
        .unwrap()
        .to_string()
}

/// Rebuilds a URL that the dialog wrapped over several lines: the lines
/// between `start` and `end`, inside the borders, joined.
fn wrapped(screen: &str, start: &str, end: &str) -> String {
    let lines: Vec<&str> = screen.lines().collect();
    let a = lines.iter().position(|l| l.contains(start)).unwrap();
    let b = lines.iter().position(|l| l.contains(end)).unwrap();
    lines[a + 1..b]
        .iter()
        .map(|l| {
            l.split('│')
                .map(str::trim)
                .max_by_key(|p| p.len())
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_dialogs_run_the_real_flows() {
    let sandbox = common::sandbox(common::quick(200)).await;
    let base = sandbox.base_url.clone();
    let r = reqwest::Client::new()
        .put(format!("{base}/_sandbox/oauth"))
        .json(&Settings {
            device_interval_secs: 1,
            ..Settings::default()
        })
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), &base);
    // Slack's token is refused: its health must say so in the header.
    std::fs::write(dir.path().join("slack-user-token"), "xoxp-revoked-0000").unwrap();
    let loaded = offboard::config::load(&cfg).unwrap();
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let resolved = loaded.connectors().unwrap();
    let connectors = engine::connectors_from_config(&resolved, dir.path(), &tx).unwrap();
    let opts = EngineOptions::from_config(&loaded);
    let ledger = Ledger::open_in(dir.path(), &opts.operator).unwrap();
    let engine = Engine::new(connectors, ledger, opts, tx);
    let mut sign_in = resolved.clone();
    sign_in.push(oauth_app("device-app", &base, "device-code", dir.path()));
    sign_in.push(oauth_app(
        "web-app",
        &base,
        "authorization-code",
        dir.path(),
    ));

    let console = ConsoleOptions {
        operator: "tester".into(),
        read_only: false,
        ascii: false,
        theme: "default".into(),
        config_dir: None,
        leavers: vec![LeaverRow::new("marcus.reyes@example.com")],
        notes: vec![],
    };
    let mut model = app::initial_model(&engine, console);
    let service: Arc<dyn Service> = Arc::new(EngineService {
        engine: engine.clone(),
        data_dir: dir.path().to_path_buf(),
        login: Some(SignIn {
            connectors: sign_in,
            data_dir: dir.path().to_path_buf(),
            http: shared_reqwest(),
            open_browser: false,
        }),
    });
    let screen = Arc::new(Mutex::new(String::new()));
    let mut terminal = Terminal::new(SharedScreen {
        inner: TestBackend::new(100, 30),
        text: screen.clone(),
    })
    .unwrap();
    let (tx_keys, input) = mpsc::unbounded::<io::Result<TermEvent>>();
    let keys = Keys(tx_keys);
    let data = dir.path().to_path_buf();

    let driver = async {
        // The failing token shows in the header once Slack was read.
        // (Names or, when the apps do not fit the width, ids.)
        screen_until(&screen, "Slack auth error in the header", |s| {
            s.lines()
                .nth(1)
                .is_some_and(|h| h.to_lowercase().contains("slack auth error"))
        })
        .await;

        // Device code: the dialog shows the code and both URIs while polling.
        keys.command("login device-app");
        let s = screen_until(&screen, "the device code", |s| {
            s.contains("and enter the code")
        })
        .await;
        assert!(s.contains(&format!("{base}/oauth2/device")), "{s}");
        assert!(s.contains("user_code="), "{s}");
        assert!(s.contains("waiting for approval"), "{s}");
        let code = after(&s, "and enter the code");
        assert_eq!(code.len(), 9, "{code:?}\n{s}");
        decide_device(&base, "/oauth2/device", &code, true).await;
        let s = screen_until(&screen, "the dialog closed on success", |s| {
            !s.contains("Sign in to device-app")
        })
        .await;
        assert!(s.contains("device-app: signed in"), "{s}");
        assert!(data.join("tokens/device-app--default.json").exists());

        // Refused: the error is shown in the dialog; Esc closes it.
        keys.command("login device-app");
        let s = screen_until(&screen, "a second code", |s| {
            s.contains("and enter the code")
        })
        .await;
        decide_device(
            &base,
            "/oauth2/device",
            &after(&s, "and enter the code"),
            false,
        )
        .await;
        let s = screen_until(&screen, "the refusal in the dialog", |s| {
            s.contains("Sign-in failed")
        })
        .await;
        assert!(s.contains("access_denied"), "{s}");
        keys.key(KeyCode::Esc);
        screen_until(&screen, "the dialog closed", |s| !s.contains("Sign in to")).await;

        // Esc while polling cancels: the dialog goes and nothing is signed in.
        keys.command("login device-app");
        screen_until(&screen, "a third code", |s| {
            s.contains("and enter the code")
        })
        .await;
        keys.key(KeyCode::Esc);
        screen_until(&screen, "the cancel", |s| {
            !s.contains("Sign in to") && s.contains("device-app: sign-in cancelled")
        })
        .await;

        // Authorization code, browser elsewhere: paste the redirect back.
        keys.command("login web-app");
        let s = screen_until(&screen, "the authorization URL", |s| {
            s.contains("Open this URL") && s.contains("paste it here")
        })
        .await;
        let url = wrapped(&s, "Open this URL", "Approve.");
        assert!(
            url.starts_with(&format!("{base}/oauth2/authorize?")),
            "{url}\n{s}"
        );
        let location = consent(&url, true).await;
        assert!(location.contains("code="), "{location}");
        keys.paste(&location);
        keys.key(KeyCode::Enter);
        let s = screen_until(&screen, "the paste-back sign-in", |s| {
            s.contains("web-app: signed in")
        })
        .await;
        assert!(!s.contains("Sign in to web-app"), "{s}");
        assert!(data.join("tokens/web-app--default.json").exists());

        keys.key(KeyCode::Char('q'));
    };
    let run = runtime::run(&mut terminal, &mut model, service, input, events);
    let (result, ()) = tokio::join!(run, driver);
    result.expect("the loop ends cleanly");
    // Nothing on screen or in the activity log holds a token.
    let issued: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/_sandbox/oauth"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shown = screen.lock().unwrap().clone();
    let log: String = model
        .activity
        .iter()
        .map(|l| l.text.clone() + "\n")
        .collect();
    for t in issued["issued"].as_array().unwrap() {
        let t = t.as_str().unwrap();
        assert!(!shown.contains(t) && !log.contains(t), "{t} leaked");
    }
    sandbox.stop().await;
}
