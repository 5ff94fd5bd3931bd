//! The real binary against the sandbox, over HTTP: what must never read as
//! "all clear". An address found in no app (a lookalike with a Cyrillic
//! letter, or a typo) and a broken evidence chain are said loudly, and the
//! work goes on.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

struct Env {
    _dir: tempfile::TempDir,
    config: PathBuf,
    data: PathBuf,
}

fn env(base_url: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(&dir.path().join("cfg"), base_url);
    let data = dir.path().join("data");
    Env {
        _dir: dir,
        config,
        data,
    }
}

async fn run(e: &Env, args: &[&str]) -> (i32, String, String) {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"));
    c.args(args)
        .env("OFFBOARD_CONFIG", &e.config)
        .env("OFFBOARD_DATA", &e.data)
        .env("COLUMNS", "200")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), c.output())
        .await
        .expect("the command finishes")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_found_in_no_app_is_never_all_clear() {
    let sb = common::sandbox(common::quick(0)).await;
    let e = env(&sb.base_url);
    // Dana with a Cyrillic a: looks like her, is nobody.
    let lookalike = "d\u{430}na.whitfield@example.com";
    let (code, out, err) = run(&e, &["scan", lookalike]).await;
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains("not found in any app: check the address"),
        "{err}"
    );
    assert!(err.contains("U+0430 Cyrillic at position 2"), "{err}");
    assert!(
        out.contains("not found in any app: check the address"),
        "{out}"
    );

    let (code, out, err) = run(&e, &["scan", lookalike, "--json"]).await;
    assert_eq!(code, 3, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["summary"]["not_found_anywhere"], 1);
    assert!(
        v["hints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h.as_str().unwrap().contains("not found in any app")),
        "{v}"
    );

    // A plain typo: the same, for revoke too (there is nothing to revoke,
    // and that is not success).
    let (code, out, err) = run(
        &e,
        &["revoke", "dana.whitfeld@example.com", "--yes", "--json"],
    )
    .await;
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains("not found in any app: check the address"),
        "{err}"
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["exit_code"], 3);

    // Found in one app only is not "not found anywhere".
    let (_, out, err) = run(&e, &["scan", "sam.okafor@partner.example.net", "--json"]).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["summary"]["not_found_anywhere"], 0, "{v}");
    assert!(!err.contains("not found in any app"), "{err}");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_chain_is_said_loudly_and_work_goes_on() {
    let sb = common::sandbox(common::quick(200)).await;
    let e = env(&sb.base_url);
    let email = "marcus.reyes@example.com";
    for app in ["google", "slack"] {
        let (_, _, err) = run(&e, &["scan", email, "--app", app]).await;
        assert!(!err.contains("BROKEN"), "{err}");
    }
    // Someone edits a record of the evidence.
    let path = e.data.join("ledger.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replacen("\"operator\":\"", "\"operator\":\"x", 1);
    assert_ne!(edited, text, "{text}");
    std::fs::write(&path, edited).unwrap();

    let (code, out, err) = run(&e, &["scan", email, "--app", "google", "--json"]).await;
    assert!(err.contains("chain is BROKEN"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    assert_eq!(code, 3, "the scan still ran: {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["apps"][0]["status"], "found", "{v}");

    // An urgent termination is not blocked.
    let (code, out, err) = run(
        &e,
        &[
            "revoke", email, "--app", "google", "--kind", "session", "--yes", "--json",
        ],
    )
    .await;
    assert!(err.contains("chain is BROKEN"), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}\n{err}"));
    assert!(
        v["grants"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["state"] != "live"),
        "{v} (exit {code})"
    );
    sb.stop().await;
}
