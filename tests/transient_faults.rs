//! Transient faults over HTTP against the sandbox: a read answered 200 with
//! a cut-off body is retried like a reset, and a rate-limited token
//! endpoint is waited out instead of skipping the whole app.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use offboard::apps::build;
use offboard::connector::http::shared_reqwest;
use offboard::connector::{BuildContext, Connector, Lookup, ResolvedConnector};
use offboard::model::Person;
use offboard::sandbox::{self, Faults, Running};

async fn sandbox_with_log(faults: Faults, log: &Path) -> Running {
    sandbox::start(sandbox::Options {
        port: 0,
        faults,
        access_log: Some(log.to_path_buf()),
        ..sandbox::Options::default()
    })
    .await
    .unwrap()
}

fn driver(
    config: &Path,
    id: &str,
    data: &Path,
    tweak: impl FnOnce(&mut ResolvedConnector),
) -> Arc<dyn Connector> {
    let mut resolved = offboard::config::load(config)
        .unwrap()
        .connectors()
        .unwrap()
        .into_iter()
        .find(|r| r.id == id)
        .unwrap();
    tweak(&mut resolved);
    let ctx = BuildContext {
        http: shared_reqwest(),
        notices: None,
        data_dir: data.to_path_buf(),
    };
    build(&resolved, &ctx).unwrap()
}

/// Access-log lines for `path_prefix` that carry `fault`.
fn faults_seen(log: &Path, path_prefix: &str, fault: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["path"]
                .as_str()
                .is_some_and(|p| p.starts_with(path_prefix))
                && v["fault"] == fault
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_salesforce_token_endpoint_is_waited_out() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.jsonl");
    let token_path = "/services/oauth2/token";
    let sb = sandbox_with_log(
        Faults {
            rate_429: 1.0,
            path_prefix: Some(token_path.into()),
            ..common::quick(0)
        },
        &log,
    )
    .await;
    let config = common::write_config(&dir.path().join("cfg"), &sb.base_url);
    let sf = driver(&config, "salesforce", dir.path(), |_| {});
    let lookup = tokio::spawn(async move {
        sf.find_person(&Person::new("dana.whitfield@example.com"))
            .await
    });
    // Salesforce answers 403 REQUEST_LIMIT_EXCEEDED to the sign-in, again
    // and again; then the limit lifts.
    common::wait_for(
        Duration::from_secs(20),
        "two rate-limited sign-ins",
        || async { (faults_seen(&log, token_path, "rate_limit") >= 2).then_some(()) },
    )
    .await;
    sb.set_faults(common::quick(0));
    let found = tokio::time::timeout(Duration::from_secs(30), lookup)
        .await
        .expect("the lookup ends")
        .unwrap();
    assert!(matches!(found, Ok(Lookup::Found { .. })), "{found:?}");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_answered_200_with_a_cut_off_body_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.jsonl");
    let sb = sandbox_with_log(common::quick(0), &log).await;
    let config = common::write_config(&dir.path().join("cfg"), &sb.base_url);
    let google = driver(&config, "google", dir.path(), |r| {
        r.manifest.limits.max_retries = 8;
    });
    let account = match google
        .find_person(&Person::new("dana.whitfield@example.com"))
        .await
        .unwrap()
    {
        Lookup::Found { account } => account,
        other => panic!("{other:?}"),
    };
    let clean = google.list_grants(&account).await;
    assert!(clean.failed.is_empty(), "{:?}", clean.failed);
    let mut ids: Vec<String> = clean.grants.iter().map(|g| g.id.clone()).collect();
    ids.sort();

    // A quarter of the directory's answers now arrive cut in half.
    let reads = "/admin/directory/v1";
    sb.set_faults(Faults {
        malformed_rate: 0.25,
        path_prefix: Some(reads.into()),
        ..common::quick(0)
    });
    common::wait_for(
        Duration::from_secs(60),
        "several cut-off answers, each retried",
        || {
            let (google, account, ids, log) = (google.clone(), account.clone(), ids.clone(), &log);
            async move {
                let inv = google.list_grants(&account).await;
                assert!(
                    inv.failed.is_empty(),
                    "a cut-off answer failed a read: {:?}",
                    inv.failed
                );
                let mut got: Vec<String> = inv.grants.iter().map(|g| g.id.clone()).collect();
                got.sort();
                assert_eq!(got, ids);
                (faults_seen(log, reads, "malformed") >= 3).then_some(())
            }
        },
    )
    .await;
    sb.stop().await;
}
