//! A console killed (`kill -9`) during revoke-all, restarted: removals that
//! were requested but never answered, or accepted but never confirmed, are
//! decided by fresh reads over HTTP and escalated past the verify deadline;
//! nothing stays "removing" forever.

mod common;

use std::sync::Arc;
use std::time::Duration;

use offboard::apps::build;
use offboard::connector::http::shared_reqwest;
use offboard::connector::{BuildContext, Connector, Presence};
use offboard::engine::{Engine, EngineOptions};
use offboard::evidence::{Ledger, LedgerEvent};
use offboard::model::{GrantKind, GrantState};
use offboard::tui::app::EngineService;
use offboard::tui::runtime::Service;

fn engine(config: &std::path::Path, data: &std::path::Path, deadline: Duration) -> Arc<Engine> {
    let loaded = offboard::config::load(config).unwrap();
    let resolved = loaded.connectors().unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let connectors = offboard::engine::connectors_from_config(&resolved, data, &tx).unwrap();
    let opts = EngineOptions {
        operator: "test".into(),
        verify_deadline: deadline,
        verify_initial_delay: Duration::from_millis(50),
    };
    Engine::new(connectors, Ledger::open_in(data, "test").unwrap(), opts, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_console_decides_every_removal_left_open_by_a_crash() {
    let sb = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(&dir.path().join("cfg"), &sb.base_url);
    let data = dir.path().join("data");
    let email = "priya.natarajan@example.com";

    // The first console: discovery, then the crash after three requests
    // were recorded. One was sent and taken by the app, one never left,
    // and one was answered "accepted" but the app did not act on it.
    let first = engine(&config, &data, Duration::from_secs(60));
    let view = first
        .discover_apps(email, &["google".into()])
        .await
        .unwrap();
    let account = view
        .accounts
        .iter()
        .find(|a| a.connector == "google")
        .and_then(|a| a.status.account().cloned())
        .unwrap();
    let groups: Vec<_> = view
        .grants
        .iter()
        .filter(|g| g.grant.kind == GrantKind::Group)
        .map(|g| g.grant.clone())
        .collect();
    assert!(groups.len() >= 3, "{groups:?}");
    let (sent, unsent, accepted) = (&groups[0], &groups[1], &groups[2]);
    drop(first);
    let ledger = Ledger::open_in(&data, "test").unwrap();
    for g in [sent, unsent, accepted] {
        ledger
            .append(
                email,
                LedgerEvent::RevokeRequested {
                    key: g.key(),
                    phase: 2,
                    grant: g.clone(),
                },
            )
            .unwrap();
    }
    ledger
        .append(
            email,
            LedgerEvent::ApiAnswer {
                key: accepted.key(),
                outcome: Some(offboard::connector::RevokeOutcome::Accepted),
                error: None,
                manual: None,
            },
        )
        .unwrap();
    drop(ledger);
    let resolved = offboard::config::load(&config)
        .unwrap()
        .connectors()
        .unwrap()
        .into_iter()
        .find(|r| r.id == "google")
        .unwrap();
    let google: Arc<dyn Connector> = build(
        &resolved,
        &BuildContext {
            http: shared_reqwest(),
            notices: None,
            data_dir: data.clone(),
        },
    )
    .unwrap();
    google.revoke(&account, sent).await.unwrap();
    common::wait_for(Duration::from_secs(20), "the removal to settle", || {
        let (google, account, sent) = (google.clone(), account.clone(), sent.clone());
        async move {
            let r = google.verify(&account, std::slice::from_ref(&sent)).await;
            matches!(r[0].1, Ok(Presence::Absent)).then_some(())
        }
    })
    .await;

    // The restarted console: opens the case, then its live refresh runs.
    let service = EngineService {
        engine: engine(&config, &data, Duration::from_secs(2)),
        data_dir: data.clone(),
        login: None,
    };
    let snap = service.discover(email).await.unwrap();
    let state = |snap: &offboard::tui::model::CaseSnapshot, key: &str| {
        snap.grants
            .iter()
            .find(|g| g.key == key)
            .map(|g| (g.state.clone(), g.answer.clone()))
            .unwrap_or_else(|| panic!("no {key}"))
    };
    assert!(matches!(
        state(&snap, &sent.key()).0,
        GrantState::Verified { .. }
    ));
    let snap = common::wait_for(
        Duration::from_secs(30),
        "every resumed removal to be decided",
        || {
            let service = &service;
            async move {
                let snap = service.refresh(email, Some("google")).await.unwrap();
                snap.grants
                    .iter()
                    .all(|g| !matches!(g.state, GrantState::Revoking | GrantState::Removed))
                    .then_some(snap)
            }
        },
    )
    .await;
    match state(&snap, &unsent.key()).0 {
        GrantState::Unconfirmed { reason } => {
            assert!(
                reason.contains("requested before an interruption"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    match state(&snap, &accepted.key()).0 {
        GrantState::Unconfirmed { reason } => {
            assert!(reason.contains("accepted the removal"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // The escalations are in the evidence, and a third start keeps them.
    let records = Ledger::read(&data.join("ledger.jsonl")).unwrap();
    for key in [unsent.key(), accepted.key()] {
        assert!(
            records
                .iter()
                .any(|r| matches!(&r.event, LedgerEvent::Escalated { key: k, .. } if *k == key)),
            "{key}"
        );
    }
    let third = engine(&config, &data, Duration::from_secs(2));
    let view = third
        .discover_apps(email, &["google".into()])
        .await
        .unwrap();
    let unsent_state = &view.grant(&unsent.key()).unwrap().state;
    assert!(
        matches!(unsent_state, GrantState::Unconfirmed { .. }),
        "{unsent_state:?}"
    );
    sb.stop().await;
}
