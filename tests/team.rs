//! Team mode against a real PostgreSQL (`scripts/pg-test-cluster run`):
//! separate processes of the binary sharing one database: one queue (no
//! leaver worked by two at once), one valid hash chain, a lease left by a
//! host killed with SIGKILL taken over after it expires, the application's
//! role refused UPDATE and DELETE on the ledger, a ledger file imported
//! with its chain, and other operators' steps seen live.

mod common;

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use common::pg::{Db, Host, command, database, host, records, run};
use futures::FutureExt;
use offboard::evidence::{Ledger, LedgerEvent};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

const TOM: &str = "tom.becker@example.com";
const PRIYA: &str = "priya.natarajan@example.com";
const MARCUS: &str = "marcus.reyes@example.com";
const DANA: &str = "dana.whitfield@example.com";

fn ago(h: i64) -> String {
    (Utc::now() - chrono::Duration::hours(h)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_engines_work_one_queue_with_one_chain_and_no_leaver_twice() {
    let sb = common::sandbox(common::quick(100)).await;
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database(dir.path(), &sb.base_url).await else {
        return;
    };
    let roster = dir.path().join("roster.csv");
    std::fs::write(
        &roster,
        format!(
            "email,name,status,exit_time\n\
             {TOM},Tom Becker,left,{}\n\
             {PRIYA},Priya Natarajan,left,{}\n\
             {MARCUS},Marcus Reyes,left,{}\n\
             {DANA},Dana Whitfield,left,{}\n",
            ago(30),
            ago(29),
            ago(28),
            ago(27)
        ),
    )
    .unwrap();
    let roster = roster.to_str().unwrap().to_string();
    let store = db.store_toml(&db.app, 5);
    let hosts: Vec<Host> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| host(dir.path(), n, &sb.base_url, &store))
        .collect();

    // Two engines at once, then three.
    for engines in [&hosts[..2], &hosts[..]] {
        let runs = engines.iter().map(|h| {
            let roster = roster.clone();
            async move { run(h, &["run", "--due", "--roster", &roster, "--yes", "--json"]).await }
        });
        let outs = futures::future::join_all(runs).await;
        let mut ran = std::collections::BTreeMap::<String, usize>::new();
        for (code, out, err) in &outs {
            assert!(*code == 0 || *code == 3, "{out}\n{err}");
            assert!(!err.contains(&common::pg::password()), "{err}");
            let v: Value = serde_json::from_str(out).unwrap_or_else(|_| panic!("{out}\n{err}"));
            for l in v["leavers"].as_array().unwrap() {
                let action = l["action"].as_str().unwrap();
                assert!(["run", "held", "skip"].contains(&action), "{l}\n{err}");
                if action == "run" {
                    *ran.entry(l["email"].as_str().unwrap().to_string())
                        .or_default() += 1;
                }
                if action == "held" {
                    assert!(l["why"].as_str().unwrap().contains("held by "), "{l}");
                }
            }
        }
        assert!(
            ran.values().all(|n| *n == 1),
            "a leaver was run by two engines: {ran:?}"
        );
    }
    let recs = records(&db).await;
    // Every leaver was revoked, each by one operator only.
    for email in [TOM, PRIYA, MARCUS, DANA] {
        let ops: std::collections::BTreeSet<&str> = recs
            .iter()
            .filter(|r| r.case == email && matches!(r.event, LedgerEvent::RevokeRequested { .. }))
            .map(|r| r.operator.as_str())
            .collect();
        assert_eq!(ops.len(), 1, "{email}: requested by {ops:?}");
        let planned = recs
            .iter()
            .filter(|r| r.case == email && matches!(r.event, LedgerEvent::Planned { .. }))
            .count();
        assert_eq!(planned, 1, "{email} was planned {planned} times");
    }
    // One chain: consecutive seqs, each prev the hash of the line before.
    let (code, out, err) = run(&hosts[2], &["evidence", "verify"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.starts_with(&format!("OK: {} records, hash chain intact", recs.len())),
        "{out}"
    );
    assert!(out.contains(&format!("postgres://{}:{}/{}", db.host, db.port, db.name)));
    // The engines that acted shared each app's quota by live heartbeats
    // (the last round found nothing left to do).
    let n: i64 = db
        .app()
        .await
        .query_one("SELECT COUNT(DISTINCT host) FROM offboard_hosts", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n >= 2, "{n} hosts sent heartbeats");
    // Reports read the shared ledger as they read the file.
    let (code, out, err) = run(&hosts[0], &["evidence", TOM, "--format", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["chain"]["ok"], true, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_hosts_lease_expires_and_the_case_resumes_elsewhere_once() {
    let sb = common::sandbox(offboard::sandbox::Faults {
        latency_ms: 150,
        consistency_ms: 100,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database(dir.path(), &sb.base_url).await else {
        return;
    };
    let store = db.store_toml(&db.app, 3);
    let alice = host(dir.path(), "alice", &sb.base_url, &store);
    let bob = host(dir.path(), "bob", &sb.base_url, &store);

    let mut first = command(&alice, &["revoke", PRIYA, "--yes", "--json"])
        .spawn()
        .unwrap();
    // Alice holds Priya and has started removing.
    common::wait_for(
        Duration::from_secs(60),
        "alice's first removal request",
        || {
            let db = &db;
            async move {
                let recs = records(db).await;
                recs.iter()
                    .any(|r| {
                        r.case == PRIYA && matches!(r.event, LedgerEvent::RevokeRequested { .. })
                    })
                    .then_some(())
            }
        },
    )
    .await;
    let (code, out, _) = run(&bob, &["store", "queue", "--json"]).await;
    assert_eq!(code, 0);
    let q: Value = serde_json::from_str(&out).unwrap();
    let row = q["leavers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["email"] == PRIYA)
        .unwrap_or_else(|| panic!("{q}"));
    assert!(
        row["holder"].as_str().unwrap().starts_with("alice@"),
        "{row}"
    );
    assert!(row["since"].is_string(), "{row}");

    // Bob may watch but not act while the lease is live.
    let (code, out, err) = run(&bob, &["revoke", PRIYA, "--yes"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("held by alice@"), "{err}");
    assert!(err.contains("--take-over"), "{err}");

    // kill -9: nothing releases the lease; it expires.
    first.start_kill().unwrap();
    let _ = first.wait().await;
    let before = records(&db).await.len();
    let (code, out, err) = common::wait_for(Duration::from_secs(30), "the lease to expire", || {
        let bob = &bob;
        async move {
            let r = run(bob, &["revoke", PRIYA, "--yes", "--json"]).await;
            (r.0 != 1 || !r.2.contains("held by")).then_some(r)
        }
    })
    .await;
    assert!(code == 0 || code == 3, "{out}\n{err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}\n{err}"));
    let recs = records(&db).await;
    assert!(recs.len() > before);
    // Bob resumed the case from the shared ledger.
    assert!(
        recs[before..]
            .iter()
            .any(|r| r.operator == "bob" && matches!(r.event, LedgerEvent::Resumed { .. })),
        "no resume recorded"
    );
    // Nothing done twice that matters: no grant verified twice, and every
    // grant Alice had confirmed removed was not requested again by Bob.
    let mut verified = std::collections::BTreeMap::<String, usize>::new();
    for r in &recs {
        if let LedgerEvent::Verified { key, .. } = &r.event {
            *verified.entry(key.clone()).or_default() += 1;
        }
    }
    assert!(verified.values().all(|n| *n == 1), "{verified:?}");
    let alice_done: Vec<&String> = recs[..before]
        .iter()
        .filter_map(|r| match &r.event {
            LedgerEvent::Verified { key, .. } => Some(key),
            _ => None,
        })
        .collect();
    for r in &recs[before..] {
        if let LedgerEvent::RevokeRequested { key, .. } = &r.event {
            assert!(
                !alice_done.contains(&key),
                "{key} requested again after it was verified"
            );
        }
    }
    assert!(v["summary"]["verified"].as_u64().unwrap() > 0, "{v}");
    let (code, out, _) = run(&bob, &["evidence", "verify"]).await;
    assert_eq!(code, 0, "{out}");

    // An explicit take-over of a live lease is recorded.
    let mut again = command(&alice, &["revoke", TOM, "--yes"]).spawn().unwrap();
    common::wait_for(Duration::from_secs(60), "alice to hold tom", || {
        let db = &db;
        async move {
            let c = db.app().await;
            let n = c
                .query(
                    "SELECT 1 FROM offboard_leases WHERE email = $1 AND holder LIKE 'alice@%' AND expires > now()",
                    &[&TOM],
                )
                .await
                .unwrap()
                .len();
            (n == 1).then_some(())
        }
    })
    .await;
    again.start_kill().unwrap();
    let _ = again.wait().await;
    let (code, out, err) = run(&bob, &["revoke", TOM, "--yes", "--take-over"]).await;
    assert!(code == 0 || code == 3, "{out}\n{err}");
    let recs = records(&db).await;
    let took = recs
        .iter()
        .find_map(|r| match &r.event {
            LedgerEvent::LeaseTakenOver { from, by, .. } if r.case == TOM => Some((from, by)),
            _ => None,
        })
        .expect("the take-over is in the ledger");
    assert!(
        took.0.starts_with("alice@") && took.1.starts_with("bob@"),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_role_cannot_update_or_delete_the_ledger() {
    let sb = common::sandbox(common::quick(100)).await;
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
    let (code, _, err) = run(&alice, &["scan", TOM]).await;
    assert!(code == 0 || code == 3, "{err}");
    let app = db.app().await;
    let n: i64 = app
        .query_one("SELECT COUNT(*) FROM offboard_ledger", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n > 0);
    for sql in [
        "UPDATE offboard_ledger SET line = '{}' WHERE seq = 1",
        "DELETE FROM offboard_ledger WHERE seq = 1",
        "TRUNCATE offboard_ledger",
    ] {
        let e = app.batch_execute(sql).await.expect_err(sql);
        let db_err = e.as_db_error().expect("a database error");
        assert_eq!(db_err.code().code(), "42501", "{sql}: {db_err:?}");
        assert!(db_err.message().contains("permission denied"), "{db_err:?}");
    }
    // Not even the owner may rewrite it.
    let owner = db.owner().await;
    let e = owner
        .batch_execute("UPDATE offboard_ledger SET line = '{}' WHERE seq = 1")
        .await
        .unwrap_err();
    assert!(
        e.as_db_error().unwrap().message().contains("append-only"),
        "{e:?}"
    );
    // The application's role cannot migrate either: told what to do.
    let other = Db::create().await.unwrap();
    let bob = host(
        dir.path(),
        "bob",
        &sb.base_url,
        &other.store_toml(&other.app, 5),
    );
    let (code, _, err) = run(&bob, &["scan", TOM]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("offboard store migrate"), "{err}");
    assert!(!err.contains(&common::pg::password()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_file_is_imported_with_its_chain_and_reports_match() {
    let sb = common::sandbox(common::quick(100)).await;
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database(dir.path(), &sb.base_url).await else {
        return;
    };
    // One operator on the file: a revoke.
    let solo = host(dir.path(), "solo", &sb.base_url, "");
    let (code, out, err) = run(&solo, &["revoke", TOM, "--yes"]).await;
    assert!(code == 0 || code == 3, "{out}\n{err}");
    let file = solo.data.join("ledger.jsonl");
    let (code, file_verify, _) = run(&solo, &["evidence", "verify"]).await;
    assert_eq!(code, 0);
    let (_, file_report, _) = run(&solo, &["evidence", TOM, "--format", "json"]).await;

    let team = host(dir.path(), "team", &sb.base_url, &db.store_toml(&db.app, 5));
    let (code, out, err) = run(&team, &["store", "import", file.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let head = file_verify
        .lines()
        .find_map(|l| l.strip_prefix("head: "))
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    assert!(out.contains(&format!("head: {head}")), "{out}");
    let (code, shared_verify, _) = run(&team, &["evidence", "verify"]).await;
    assert_eq!(code, 0, "{shared_verify}");
    assert!(
        shared_verify.contains(&format!("head: {head}")),
        "{shared_verify}"
    );
    let n = Ledger::read(&file).unwrap().len();
    assert_eq!(records(&db).await.len(), n);
    // The same report from either store (but for where the ledger is).
    let (code, shared_report, _) = run(&team, &["evidence", TOM, "--format", "json"]).await;
    assert_eq!(code, 0);
    let strip = |s: &str| {
        let mut v: Value = serde_json::from_str(s).unwrap();
        v["chain"]["path"] = Value::Null;
        v["generated_at"] = Value::Null;
        v
    };
    let (a, b) = (strip(&file_report), strip(&shared_report));
    for (k, v) in a.as_object().unwrap() {
        assert_eq!(Some(v), b.get(k), "report field {k} differs");
    }
    assert_eq!(a, b);
    // A second import would fork the chain: refused.
    let (code, _, err) = run(&team, &["store", "import", file.to_str().unwrap()]).await;
    assert_eq!(code, 1);
    assert!(err.contains("already holds"), "{err}");
    // Appends continue the imported chain.
    let (code, _, err) = run(&team, &["scan", PRIYA]).await;
    assert!(code == 0 || code == 3, "{err}");
    let (code, out, _) = run(&team, &["evidence", "verify"]).await;
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_operators_steps_arrive_live() {
    let sb = common::sandbox(common::quick(100)).await;
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database(dir.path(), &sb.base_url).await else {
        return;
    };
    let store = db.store_toml(&db.app, 5);
    let alice = host(dir.path(), "alice", &sb.base_url, &store);
    let bob = host(dir.path(), "bob", &sb.base_url, &store);
    let mut watch = command(&bob, &["store", "watch", MARCUS, "--count", "1"])
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.as_deref(), Some("listening"));
    let (code, _, err) = run(&alice, &["scan", MARCUS]).await;
    assert!(code == 0 || code == 3, "{err}");
    let step = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(step.contains(" alice ") && step.contains(MARCUS), "{step}");
    let status = tokio::time::timeout(Duration::from_secs(10), watch.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_take_over_stops_the_host_that_held_the_leaver() {
    // Removals stay listed for two minutes: the first host waits in
    // verification while it is taken over.
    let sb = common::sandbox(common::quick(120_000)).await;
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database(dir.path(), &sb.base_url).await else {
        return;
    };
    let store = db.store_toml(&db.app, 3);
    let alice = host(dir.path(), "alice", &sb.base_url, &store);
    let bob = host(dir.path(), "bob", &sb.base_url, &store);
    let first = command(&alice, &["revoke", DANA, "--yes"]).spawn().unwrap();
    common::wait_for(
        Duration::from_secs(60),
        "alice's removals to be answered",
        || {
            let db = &db;
            async move {
                records(db)
                    .await
                    .iter()
                    .any(|r| matches!(r.event, LedgerEvent::ApiAnswer { .. }))
                    .then_some(())
            }
        },
    )
    .await;
    let mut second = command(&bob, &["revoke", DANA, "--yes", "--take-over"])
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), first.wait_with_output())
        .await
        .expect("alice stops once the leaver is taken over")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no longer holds the leaver"), "{err}");
    let _ = second.start_kill();
    let _ = second.wait().await;
    let recs = records(&db).await;
    assert!(recs.iter().any(|r| r.case == DANA
        && matches!(&r.event, LedgerEvent::LeaseTakenOver { from, .. } if from.starts_with("alice@"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_hears_of_other_hosts_steps_and_leases() {
    let sb = common::sandbox(common::quick(100)).await;
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database(dir.path(), &sb.base_url).await else {
        return;
    };
    let bob = host(dir.path(), "bob", &sb.base_url, &db.store_toml(&db.app, 5));
    let loaded = offboard::config::load(&bob.config).unwrap();
    let store = offboard::store::open(&loaded.config.store, &loaded.dir, &bob.data).unwrap();
    let pg = store.shared().unwrap().clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // The console of "carol": Bob's steps and leases reach it.
    offboard::store::bridge(&pg, "carol", tx);
    let bob_steps = async {
        let (code, _, err) = run(&bob, &["revoke", MARCUS, "--yes"]).await;
        assert!(code == 0 || code == 3, "{err}");
    };
    let heard = async {
        let (mut step, mut held) = (false, false);
        while !(step && held) {
            match rx.recv().await.unwrap() {
                offboard::engine::Event::TeamStep {
                    email, operator, ..
                } => {
                    step |= email == MARCUS && operator == "bob";
                }
                offboard::engine::Event::Holder {
                    email,
                    holder,
                    since,
                } => {
                    held |= email == MARCUS
                        && holder.is_some_and(|h| h.starts_with("bob@"))
                        && since.is_some();
                }
                _ => {}
            }
        }
    };
    let (_, ()) = tokio::join!(
        bob_steps,
        tokio::time::timeout(Duration::from_secs(60), heard).map(|r| r.expect("heard"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_speaks_tls_with_the_servers_certificate_checked() {
    let sb = common::sandbox(common::quick(100)).await;
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database(dir.path(), &sb.base_url).await else {
        return;
    };
    let ca = std::env::var("OFFBOARD_TEST_PG_CA")
        .expect("OFFBOARD_TEST_PG_CA: scripts/pg-test-cluster makes a CA when openssl is there");
    let tls = |host: &str, ca: &str| {
        format!(
            "\n[store]\nurl = \"postgres://{}@{host}:{}/{}?sslmode=require\"\npassword_env = \"OFFBOARD_TEST_PG_PASSWORD\"\nca_file = \"{ca}\"\n",
            db.app, db.port, db.name
        )
    };
    let alice = host(dir.path(), "alice", &sb.base_url, &tls("localhost", &ca));
    let (code, out, err) = run(&alice, &["store", "add", TOM]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    // While it watches, every connection offboard holds is encrypted.
    let mut watch = command(&alice, &["store", "watch"]).spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.as_deref(), Some("listening"));
    // (Seen by the same role: others' sessions are hidden from it.)
    let c = db.app().await;
    let rows = c
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'offboard' AND a.datname = $1",
            &[&db.name],
        )
        .await
        .unwrap();
    assert!(rows.len() >= 2, "{} connections", rows.len());
    assert!(
        rows.iter().all(|r| r.get::<_, bool>(0)),
        "a plain connection"
    );
    watch.start_kill().unwrap();
    let _ = watch.wait().await;
    // A server certificate no trusted CA signed is refused.
    let other_ca = dir.path().join("other-ca.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=someone-else", "-keyout"])
        .arg(dir.path().join("other.key"))
        .arg("-out")
        .arg(&other_ca)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let bob = host(
        dir.path(),
        "bob",
        &sb.base_url,
        &tls("localhost", other_ca.to_str().unwrap()),
    );
    let (code, _, err) = run(&bob, &["store", "add", TOM]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("shared store postgres://localhost"), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_acts_only_on_leavers_no_other_host_holds() {
    use offboard::tui::runtime::Service;
    let sb = common::sandbox(common::quick(100)).await;
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database(dir.path(), &sb.base_url).await else {
        return;
    };
    let carol = host(
        dir.path(),
        "carol",
        &sb.base_url,
        &db.store_toml(&db.app, 30),
    );
    let loaded = offboard::config::load(&carol.config).unwrap();
    let store = offboard::store::open(&loaded.config.store, &loaded.dir, &carol.data).unwrap();
    let pg = store.shared().unwrap().clone();
    let resolved = loaded.connectors().unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let connectors = offboard::engine::connectors_from_config(&resolved, &carol.data, &tx).unwrap();
    let engine = offboard::engine::Engine::new(
        connectors,
        store.open("carol").unwrap(),
        offboard::engine::EngineOptions::from_config(&loaded),
        tx,
    );
    let service = offboard::tui::app::EngineService {
        engine,
        data_dir: carol.data.clone(),
        login: None,
    };
    // Another host holds Dana.
    let p = pg.clone();
    let held = offboard::store::pg::spawn(async move {
        p.claim(
            DANA.into(),
            "bob@jump2".into(),
            "bob-token".into(),
            Duration::from_secs(30),
            false,
        )
        .await
    })
    .await
    .unwrap();
    assert!(matches!(held, offboard::store::Claim::Mine { .. }));
    // Carol reads her (and she joins the shared queue) but may not act.
    service.discover(DANA).await.unwrap();
    let e = service
        .revoke(DANA, &offboard::tui::model::RevokeScope::default())
        .await
        .unwrap_err();
    assert!(e.contains("held by bob@jump2"), "{e}");
    assert!(e.contains(":takeover"), "{e}");
    let e = service
        .manual_done(DANA, "google/manual:data_transfer", "done by hand")
        .await
        .unwrap_err();
    assert!(e.contains("held by bob@jump2"), "{e}");
    let recs = records(&db).await;
    assert!(
        !recs.iter().any(|r| r.case == DANA
            && matches!(
                r.event,
                LedgerEvent::RevokeRequested { .. } | LedgerEvent::ManualDone { .. }
            )),
        "carol acted on a held leaver"
    );
    let q = pg.clone();
    let queue = offboard::store::pg::spawn(async move { q.queue().await })
        .await
        .unwrap();
    let row = queue.iter().find(|r| r.email == DANA).unwrap();
    assert_eq!(row.holder.as_deref(), Some("bob@jump2"));
    // `:takeover`: carol takes Dana over, recorded, and her revoke goes
    // ahead on the lease she took.
    let said = service.take_over(DANA).await.unwrap();
    assert!(said.contains("recorded"), "{said}");
    let recs = records(&db).await;
    assert!(
        recs.iter().any(|r| r.case == DANA
            && matches!(&r.event, LedgerEvent::LeaseTakenOver { from, .. } if from.contains("bob@jump2"))),
        "the take-over is in the ledger"
    );
    let summary = service
        .revoke(DANA, &offboard::tui::model::RevokeScope::default())
        .await
        .unwrap();
    assert!(summary.verified > 0, "{summary:?}");
    // Bob's host lost the lease: its renewal is refused.
    let p = pg.clone();
    let renewed = offboard::store::pg::spawn(async move {
        p.renew(DANA.into(), "bob-token".into(), Duration::from_secs(30))
            .await
    })
    .await
    .unwrap();
    assert!(!renewed, "the former holder's lease was taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_without_team_mode_says_there_is_nothing_to_take() {
    use offboard::tui::runtime::Service;
    let sb = common::sandbox(common::quick(100)).await;
    let dir = tempfile::tempdir().unwrap();
    let solo = host(dir.path(), "solo", &sb.base_url, "");
    let loaded = offboard::config::load(&solo.config).unwrap();
    let store = offboard::store::open(&loaded.config.store, &loaded.dir, &solo.data).unwrap();
    let resolved = loaded.connectors().unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let connectors = offboard::engine::connectors_from_config(&resolved, &solo.data, &tx).unwrap();
    let engine = offboard::engine::Engine::new(
        connectors,
        store.open("solo").unwrap(),
        offboard::engine::EngineOptions::from_config(&loaded),
        tx,
    );
    let service = offboard::tui::app::EngineService {
        engine,
        data_dir: solo.data.clone(),
        login: None,
    };
    let e = service.take_over(DANA).await.unwrap_err();
    assert!(e.contains("team mode"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_leaves_a_leaver_another_host_holds_to_that_host() {
    let sb = common::sandbox(common::quick(100)).await;
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database(dir.path(), &sb.base_url).await else {
        return;
    };
    let extra = format!("{}\n[batch]\nmax_share = 1.0\n", db.store_toml(&db.app, 30));
    let carol = host(dir.path(), "carol", &sb.base_url, &extra);
    // Bob's host holds Dana.
    let owner = db.app().await;
    owner
        .execute(
            "INSERT INTO offboard_leases (email, holder, token, since, expires)
             VALUES ($1, 'bob@jump2', 'bob-token', now(), now() + interval '5 minutes')",
            &[&DANA],
        )
        .await
        .unwrap();
    let list = dir.path().join("leavers.txt");
    std::fs::write(&list, format!("{TOM}\n{DANA}\n")).unwrap();
    let (code, out, err) = run(
        &carol,
        &["revoke", "--from", list.to_str().unwrap(), "--yes"],
    )
    .await;
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(err.contains("held by bob@jump2"), "{out}\n{err}");
    let recs = records(&db).await;
    let requested = |email: &str| {
        recs.iter()
            .filter(|r| r.case == email && matches!(r.event, LedgerEvent::RevokeRequested { .. }))
            .count()
    };
    assert!(requested(TOM) > 0);
    assert_eq!(requested(DANA), 0, "carol acted on a leaver bob holds");
}
