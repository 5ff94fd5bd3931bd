//! Team mode: the database stopped in the middle of a revoke and started
//! again. The engine stops taking steps with a clear message, keeps every
//! record it had confirmed, and the case resumes once the database is back.
//! Its own test binary: it stops the shared test cluster.

mod common;

use std::time::Duration;

use common::pg::{database, host, records, run};
use offboard::evidence::LedgerEvent;
use serde_json::Value;

const PRIYA: &str = "priya.natarajan@example.com";

fn cluster(action: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-test-cluster");
    let status = std::process::Command::new(script)
        .arg(action)
        .status()
        .expect("scripts/pg-test-cluster runs");
    assert!(status.success(), "pg-test-cluster {action}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_mid_revoke_stops_it_and_the_case_resumes() {
    let sb = common::sandbox(offboard::sandbox::Faults {
        latency_ms: 200,
        consistency_ms: 4000,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database(dir.path(), &sb.base_url).await else {
        return;
    };
    let alice = host(
        dir.path(),
        "alice",
        &sb.base_url,
        &db.store_toml(&db.app, 5),
    );
    let first = common::pg::command(&alice, &["revoke", PRIYA, "--yes"])
        .spawn()
        .unwrap();
    common::wait_for(Duration::from_secs(60), "the first removal request", || {
        let db = &db;
        async move {
            records(db)
                .await
                .iter()
                .any(|r| matches!(r.event, LedgerEvent::RevokeRequested { .. }))
                .then_some(())
        }
    })
    .await;
    let before = records(&db).await;
    tokio::task::spawn_blocking(|| cluster("stop-server"))
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(120), first.wait_with_output())
        .await
        .expect("the revoke stops")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("shared store postgres://"), "{err}");
    assert!(err.contains("no further step"), "{err}");
    assert!(!err.contains(&common::pg::password()), "{err}");

    // Back: nothing confirmed before the stop is lost, the chain is whole,
    // and the case resumes to the end.
    tokio::task::spawn_blocking(|| cluster("start-server"))
        .await
        .unwrap();
    let after = records(&db).await;
    assert!(after.len() >= before.len());
    assert_eq!(&after[..before.len()], &before[..]);
    // The stopped process could not give its lease back: it expires.
    let (code, out, err) = common::wait_for(Duration::from_secs(30), "the lease to expire", || {
        let alice = &alice;
        async move {
            let r = run(alice, &["revoke", PRIYA, "--yes", "--json"]).await;
            (r.0 != 1 || !r.2.contains("held by")).then_some(r)
        }
    })
    .await;
    assert!(code == 0 || code == 3, "{out}\n{err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}\n{err}"));
    assert!(v["summary"]["verified"].as_u64().unwrap() > 0, "{v}");
    let recs = records(&db).await;
    assert!(
        recs[after.len()..]
            .iter()
            .any(|r| matches!(r.event, LedgerEvent::Resumed { .. })),
        "the second run did not resume the case"
    );
    let mut verified = std::collections::BTreeMap::<String, usize>::new();
    for r in &recs {
        if let LedgerEvent::Verified { key, .. } = &r.event {
            *verified.entry(key.clone()).or_default() += 1;
        }
    }
    assert!(verified.values().all(|n| *n == 1), "{verified:?}");
    let (code, out, _) = run(&alice, &["evidence", "verify"]).await;
    assert_eq!(code, 0, "{out}");
}
