//! What listings send that they should not, over HTTP against the sandbox:
//! an item shown on two pages, and ids carrying terminal and bidi control
//! characters.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use offboard::engine::{Engine, EngineOptions, Selection};
use offboard::evidence::Ledger;
use offboard::model::{GrantKind, GrantState};
use offboard::sandbox::{self, Running};

async fn sandbox_with_log(log: &Path) -> Running {
    sandbox::start(sandbox::Options {
        port: 0,
        faults: common::quick(200),
        access_log: Some(log.to_path_buf()),
        ..sandbox::Options::default()
    })
    .await
    .unwrap()
}

fn engine(config: &Path, data: &Path) -> Arc<Engine> {
    let loaded = offboard::config::load(config).unwrap();
    let resolved = loaded.connectors().unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let connectors = offboard::engine::connectors_from_config(&resolved, data, &tx).unwrap();
    let opts = EngineOptions {
        operator: "test".into(),
        verify_deadline: Duration::from_secs(20),
        verify_initial_delay: Duration::from_millis(50),
    };
    Engine::new(connectors, Ledger::open_in(data, "test").unwrap(), opts, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_listed_on_two_pages_is_one_grant_revoked_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.jsonl");
    let sb = sandbox_with_log(&log).await;
    let config = common::write_config(&dir.path().join("cfg"), &sb.base_url);
    let email = "priya.natarajan@example.com";

    // The number of groups, read without the fault.
    let clean = engine(&config, &dir.path().join("clean"));
    let view = clean
        .discover_apps(email, &["google".into()])
        .await
        .unwrap();
    let groups = view
        .grants
        .iter()
        .filter(|g| g.grant.kind == GrantKind::Group)
        .count();
    assert!(groups >= 3, "{view:?}");

    // Pages of two, each starting again with the last item of the one before.
    sb.state.google.lock().unwrap().page_overlap = Some(2);
    let e = engine(&config, &dir.path().join("data"));
    let view = e.discover_apps(email, &["google".into()]).await.unwrap();
    let keys: Vec<&str> = view
        .grants
        .iter()
        .filter(|g| g.grant.kind == GrantKind::Group)
        .map(|g| g.key.as_str())
        .collect();
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(keys.len(), unique.len(), "one grant per group: {keys:?}");
    assert_eq!(keys.len(), groups);

    let plan = e
        .plan(
            email,
            &Selection {
                kinds: vec![GrantKind::Group],
                ..Selection::default()
            },
        )
        .unwrap();
    assert_eq!(plan.len(), groups);
    let summary = e
        .revoke(
            email,
            &Selection {
                kinds: vec![GrantKind::Group],
                ..Selection::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(summary.verified, groups, "{summary:?}");
    // Each membership was removed with one request.
    let deletes = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["method"] == "DELETE"
                && v["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("/admin/directory/v1/groups/"))
        })
        .count();
    assert_eq!(deletes, groups);
    sb.stop().await;
}

/// C1 CSI, RIGHT-TO-LEFT OVERRIDE and the four bidi isolates.
const HOSTILE: [char; 6] = [
    '\u{9b}', '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_from_an_api_are_inert_in_keys_the_ledger_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.jsonl");
    let sb = sandbox_with_log(&log).await;
    let config = common::write_config(&dir.path().join("cfg"), &sb.base_url);
    let data = dir.path().join("data");
    let email = "marcus.reyes@example.com";
    {
        let mut slack = sb.state.slack.lock().unwrap();
        let u = slack.users.iter_mut().find(|u| u.email == email).unwrap();
        u.team_id = "T0\u{9b}31m\u{202e}DEMO\u{2066}\u{2067}\u{2068}\u{2069}".into();
    }
    let e = engine(&config, &data);
    let view = e.discover_apps(email, &["slack".into()]).await.unwrap();
    let role = view
        .grants
        .iter()
        .find(|g| g.grant.id.starts_with("workspace-role:"))
        .unwrap_or_else(|| panic!("marcus is a workspace admin: {view:?}"));
    assert!(role.key.contains("\\u{202e}"), "{}", role.key);
    for g in &view.grants {
        for text in [&g.key, &g.grant.id, &g.grant.label] {
            assert!(
                !text.chars().any(|c| HOSTILE.contains(&c) || c.is_control()),
                "{text:?}"
            );
        }
    }
    let ledger = std::fs::read_to_string(data.join("ledger.jsonl")).unwrap();
    assert!(ledger.contains("workspace-role:"), "{ledger}");
    assert!(
        !ledger.chars().any(|c| HOSTILE.contains(&c)),
        "the ledger holds raw control characters"
    );
    // The same through the command line's JSON.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["scan", email, "--app", "slack", "--json"])
        .env("OFFBOARD_CONFIG", &config)
        .env("OFFBOARD_DATA", dir.path().join("cli"))
        .output()
        .await
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        v["grants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["key"].as_str().unwrap().contains("\\u{202e}")),
        "{v}"
    );
    assert!(!text.chars().any(|c| HOSTILE.contains(&c)), "{text}");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_role_held_through_a_group_is_decided_once_the_group_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.jsonl");
    let sb = sandbox_with_log(&log).await;
    let config = common::write_config(&dir.path().join("cfg"), &sb.base_url);
    let data = dir.path().join("data");
    let email = "marcus.reyes@example.com";
    let e = engine(&config, &data);
    let view = e.discover_apps(email, &["google".into()]).await.unwrap();
    let role = view
        .grants
        .iter()
        .find(|g| g.grant.kind == GrantKind::AdminRole && g.grant.is_manual())
        .unwrap_or_else(|| panic!("marcus holds a role through a group: {view:?}"))
        .clone();
    let group = role.grant.after.first().cloned().expect("names its group");
    assert!(
        view.grants.iter().any(|g| g.grant.id == group),
        "{group} is one of marcus's groups"
    );
    // Cutting live access only leaves the role as it is: still open.
    e.revoke(
        email,
        &Selection {
            kinds: vec![GrantKind::Session, GrantKind::OauthGrant],
            ..Selection::default()
        },
    )
    .await
    .unwrap();
    let view = e.refresh(email, Some("google")).await.unwrap();
    let state = &view.grant(&role.key).unwrap().state;
    assert!(
        matches!(state, GrantState::Live | GrantState::Manual),
        "{state:?}"
    );

    // Removing the group: a fresh read decides the role, which went with
    // it because of offboard, not "without offboard".
    e.revoke(email, &Selection::default()).await.unwrap();
    let after = e.case(email).unwrap();
    let g = after.grant(&role.key).unwrap();
    assert!(
        matches!(g.state, GrantState::Verified { .. }),
        "{:?} {:?}",
        g.state,
        g.last_answer
    );
    assert!(!g.vanished);
    let view = e.refresh(email, Some("google")).await.unwrap();
    let g = view.grant(&role.key).unwrap();
    assert!(matches!(g.state, GrantState::Verified { .. }) && !g.vanished);
    let records = Ledger::read(&data.join("ledger.jsonl")).unwrap();
    assert!(!records.iter().any(|r| matches!(
        &r.event,
        offboard::evidence::LedgerEvent::Vanished { key, .. } if *key == role.key
    )));
    assert!(records.iter().any(|r| matches!(
        &r.event,
        offboard::evidence::LedgerEvent::Verified { key, .. } if *key == role.key
    )));
    sb.stop().await;
}
