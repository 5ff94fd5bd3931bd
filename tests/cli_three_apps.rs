//! The real binary against an in-process sandbox with the three-app demo
//! config (Google, Slack, Salesforce), over HTTP: the demo leavers end to
//! end, aliases across apps, an ambiguous Salesforce lookup picked by the
//! operator, ordering inside a phase, `verify` after a crash that left
//! grants `revoking`, and grants that vanish without us.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use offboard::apps::build;
use offboard::connector::http::shared_reqwest;
use offboard::connector::{BuildContext, Connector, Lookup};
use offboard::engine::{Engine, EngineOptions};
use offboard::evidence::{Ledger, LedgerEvent, Record};
use offboard::model::{GrantState, Person};
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

async fn run_json(e: &Env, args: &[&str]) -> (i32, Value) {
    let (code, out, err) = run(e, args).await;
    let v = serde_json::from_str(&out).unwrap_or_else(|_| panic!("json: {out}\n{err}"));
    (code, v)
}

fn app<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app"] == id)
        .unwrap_or_else(|| panic!("no app {id} in {v}"))
}

fn grants<'a>(v: &'a Value, id: &str) -> Vec<&'a Value> {
    v["grants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["app"] == id)
        .collect()
}

fn records(data: &Path) -> Vec<Record> {
    Ledger::read(&data.join("ledger.jsonl")).unwrap()
}

/// Builds the driver of one connector of the demo config (to act as
/// "someone else" behind the tool's back).
fn driver(config: &Path, id: &str, data: &Path) -> Arc<dyn Connector> {
    let loaded = offboard::config::load(config).expect("config loads");
    let resolved = loaded
        .connectors()
        .unwrap()
        .into_iter()
        .find(|r| r.id == id)
        .unwrap();
    let ctx = BuildContext {
        http: shared_reqwest(),
        notices: None,
        data_dir: data.to_path_buf(),
    };
    build(&resolved, &ctx).expect("driver builds")
}

/// An Okta app assignment or admin role held through an Okta group: the
/// plan's removal from that group settles it.
fn held_through(g: &serde_json::Value) -> bool {
    (g["app"] == "okta" || g["app"] == "microsoft-graph")
        && g["label"].as_str().is_some_and(|l| l.contains("(through"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dana_fails_only_where_salesforce_refuses() {
    let sb = common::sandbox(common::quick(200)).await;
    let e = env(&sb.base_url);
    let (code, v) = run_json(
        &e,
        &["revoke", "dana.whitfield@example.com", "--yes", "--json"],
    )
    .await;
    assert_eq!(code, 3, "{v}");
    assert_eq!(v["exit_code"], 3);
    for a in ["google", "slack", "salesforce"] {
        assert_eq!(app(&v, a)["status"], "found", "{a}");
    }
    let sf = grants(&v, "salesforce");
    let deactivate = sf
        .iter()
        .find(|g| g["id"].as_str().unwrap().starts_with("deactivate:"))
        .expect("deactivation step");
    assert_eq!(deactivate["state"], "failed", "{deactivate}");
    let reason = deactivate["reason"].as_str().unwrap();
    assert!(reason.contains("default owner of cases"), "{reason}");
    assert!(reason.contains("manual step:"), "{reason}");
    let freeze = sf
        .iter()
        .find(|g| g["id"].as_str().unwrap().starts_with("freeze:"))
        .expect("freeze step");
    assert_eq!(freeze["state"], "verified", "the freeze stays in place");
    for g in v["grants"].as_array().unwrap() {
        if g["key"] == deactivate["key"] {
            continue;
        }
        let s = g["state"].as_str().unwrap();
        if g["revocation"] == "manual" && held_through(g) {
            // Held through an Okta group this run removed her from: a
            // fresh read decided it, gone because of offboard.
            assert_eq!(s, "verified", "{g}");
            assert_eq!(g["vanished"], false, "{g}");
        } else if g["revocation"] == "manual" {
            assert_eq!(s, "manual", "{g}");
            assert!(g["instructions"].as_str().is_some_and(|i| !i.is_empty()));
        } else {
            assert!(s == "verified" || s == "acknowledged", "{g}");
        }
    }
    // The manifest's Drive/Calendar hand-over is on the checklist.
    let transfer = grants(&v, "google")
        .into_iter()
        .find(|g| g["id"] == "manual:data_transfer")
        .expect("data transfer step");
    assert_eq!(transfer["state"], "manual");
    assert!(
        transfer["instructions"]
            .as_str()
            .unwrap()
            .contains("Data transfer")
    );

    // Salesforce: every permission set assignment was answered before the
    // permission set licence was requested (Grant.after), over HTTP.
    let recs = records(&e.data);
    let pos = |pred: &dyn Fn(&LedgerEvent) -> bool| -> Vec<usize> {
        recs.iter()
            .enumerate()
            .filter(|(_, r)| pred(&r.event))
            .map(|(i, _)| i)
            .collect()
    };
    let permset_answers = pos(
        &|ev| matches!(ev, LedgerEvent::ApiAnswer { key, .. } if key.starts_with("salesforce/permset:")),
    );
    let psl_requests = pos(
        &|ev| matches!(ev, LedgerEvent::RevokeRequested { key, .. } if key.starts_with("salesforce/psl:")),
    );
    assert!(!permset_answers.is_empty() && !psl_requests.is_empty());
    assert!(
        permset_answers.iter().max() < psl_requests.iter().min(),
        "licence requested before the permission sets were answered"
    );
    let psl_failed = sf
        .iter()
        .any(|g| g["id"].as_str().unwrap().starts_with("psl:") && g["state"] != "verified");
    assert!(!psl_failed, "the licence removal succeeded: {v}");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marcus_is_cut_everywhere_with_only_manual_steps_left() {
    let sb = common::sandbox(common::quick(200)).await;
    let e = env(&sb.base_url);
    let (code, v) = run_json(
        &e,
        &["revoke", "marcus.reyes@example.com", "--yes", "--json"],
    )
    .await;
    for a in ["google", "slack", "salesforce"] {
        assert_eq!(app(&v, a)["status"], "found", "{a}");
        assert!(!grants(&v, a).is_empty(), "{a}");
    }
    let mut manual = 0;
    for g in v["grants"].as_array().unwrap() {
        let s = g["state"].as_str().unwrap();
        if g["revocation"] == "manual" && (g["kind"] == "admin_role" || held_through(g)) {
            // Held through a group this run removed him from: a fresh
            // read decided it, gone because of offboard.
            assert_eq!(s, "verified", "{g}");
            assert_eq!(g["vanished"], false, "{g}");
        } else if g["revocation"] == "manual" {
            manual += 1;
            assert_eq!(s, "manual", "{g}");
        } else {
            assert!(s == "verified" || s == "acknowledged", "{g}");
        }
    }
    // What stays is what a person must do (data hand-over, app
    // ownership): exit 3 until ticked off, never a silent 0.
    assert!(manual > 0);
    assert_eq!(code, 3);
    assert_eq!(v["summary"]["failed"], 0);
    assert_eq!(v["summary"]["unconfirmed"], 0);
    assert_eq!(v["summary"]["manual"], manual);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_contractor_and_alias_are_found_where_they_are() {
    let sb = common::sandbox(common::quick(200)).await;
    let e = env(&sb.base_url);

    let (code, v) = run_json(&e, &["scan", "tom.becker@example.com", "--json"]).await;
    assert_eq!(code, 3);
    assert_eq!(app(&v, "google")["account"]["active"], false, "suspended");
    assert_eq!(app(&v, "slack")["account"]["active"], true);
    assert_eq!(app(&v, "salesforce")["account"]["active"], true);

    let (code, v) = run_json(&e, &["scan", "sam.okafor@partner.example.net", "--json"]).await;
    assert_eq!(code, 3);
    assert_eq!(app(&v, "slack")["status"], "found");
    assert_eq!(app(&v, "google")["status"], "not_found");
    assert_eq!(app(&v, "salesforce")["status"], "not_found");

    let (code, v) = run_json(&e, &["scan", "alex.chen@example.com", "--json"]).await;
    assert_eq!(code, 3);
    let g = &app(&v, "google")["account"];
    let addresses: Vec<&str> = g["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(addresses.contains(&"achen@example.com"), "{addresses:?}");
    assert!(
        addresses.contains(&"alex.chen@legacy.example.org"),
        "nonEditableAliases: {addresses:?}"
    );
    let sf = app(&v, "salesforce");
    assert_eq!(sf["status"], "found", "{sf}");
    assert_eq!(sf["account"]["login"], "achen@example.com.prod");
    assert_eq!(sf["account"]["matched_by"], "achen@example.com");
    assert!(!grants(&v, "salesforce").is_empty());
    // The ledger keeps both rounds: not found by the primary address, then
    // found through the alias.
    let sf_discoveries: Vec<Record> = records(&e.data)
        .into_iter()
        .filter(|r| r.case == "alex.chen@example.com")
        .filter(|r| {
            matches!(&r.event, LedgerEvent::Discovered { connector, .. } if connector == "salesforce")
        })
        .collect();
    assert_eq!(sf_discoveries.len(), 2, "{sf_discoveries:?}");
    match &sf_discoveries[1].event {
        LedgerEvent::Discovered { account, .. } => assert_eq!(
            account.as_ref().unwrap().matched_by.as_deref(),
            Some("achen@example.com")
        ),
        _ => unreachable!(),
    }
    let (_, text, _) = run(
        &e,
        &["scan", "alex.chen@example.com", "--app", "salesforce"],
    )
    .await;
    assert!(
        text.contains("matched by alias achen@example.com"),
        "{text}"
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_salesforce_account_is_picked_never_guessed() {
    let sb = common::sandbox(common::quick(200)).await;
    let e = env(&sb.base_url);
    let lena = "lena.kowalski@example.com";
    let (code, v) = run_json(&e, &["scan", lena, "--json"]).await;
    assert_eq!(code, 3);
    let sf = app(&v, "salesforce");
    assert_eq!(sf["status"], "ambiguous");
    let candidates = sf["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 2);
    let hints = v["hints"].as_array().unwrap();
    assert!(
        hints
            .iter()
            .any(|h| h.as_str().unwrap().contains("--account salesforce=ID")),
        "{hints:?}"
    );
    let (_, text, _) = run(&e, &["scan", lena, "--app", "salesforce"]).await;
    for c in candidates {
        assert!(text.contains(c["id"].as_str().unwrap()), "{text}");
    }

    // Without a pick, nothing is revoked in Salesforce and the run exits 3.
    let (code, v) = run_json(
        &e,
        &["revoke", lena, "--app", "salesforce", "--yes", "--json"],
    )
    .await;
    assert_eq!(code, 3, "{v}");
    assert_eq!(v["summary"]["ambiguous"], 1);
    assert!(grants(&v, "salesforce").is_empty());

    // A pick that is not a candidate is refused.
    let (code, _, err) = run(
        &e,
        &["scan", lena, "--account", "salesforce=005000000000000AAA"],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not one of the accounts"), "{err}");

    let id = candidates
        .iter()
        .find(|c| c["login"] == "lena.kowalski@example.com.contractor")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pick = format!("salesforce={id}");
    let (code, v) = run_json(
        &e,
        &[
            "revoke",
            lena,
            "--app",
            "salesforce",
            "--account",
            &pick,
            "--yes",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(app(&v, "salesforce")["account"]["id"], id.as_str());
    assert!(!grants(&v, "salesforce").is_empty());
    assert!(records(&e.data).iter().any(|r| matches!(
        &r.event,
        LedgerEvent::AccountPicked { account_id, candidates, .. }
            if *account_id == id && candidates.len() == 2
    )));
    // The pick is in the ledger: verify needs no --account.
    let (code, v) = run_json(&e, &["verify", lena, "--app", "salesforce", "--json"]).await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(app(&v, "salesforce")["status"], "found");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_after_a_crash_rereads_what_was_left_revoking() {
    let sb = common::sandbox(common::quick(200)).await;
    let e = env(&sb.base_url);
    let email = "priya.natarajan@example.com";
    let (code, _) = run_json(&e, &["scan", email, "--app", "google", "--json"]).await;
    assert_eq!(code, 3);
    let listed = records(&e.data)
        .into_iter()
        .find_map(|r| match r.event {
            LedgerEvent::Discovered {
                connector,
                grants,
                account,
                ..
            } if connector == "google" => Some((grants, account.unwrap())),
            _ => None,
        })
        .unwrap();
    let (grants, account) = listed;
    let groups: Vec<_> = grants
        .iter()
        .filter(|g| g.kind == offboard::model::GrantKind::Group)
        .cloned()
        .collect();
    assert!(groups.len() >= 2, "{grants:?}");
    let (sent, unsent) = (&groups[0], &groups[1]);
    // A crash after the requests were recorded: one was sent and taken
    // by the app, the other never left.
    let ledger = Ledger::open_in(&e.data, "test").unwrap();
    for g in [sent, unsent] {
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
    drop(ledger);
    let google = driver(&e.config, "google", &e.data);
    google.revoke(&account, sent).await.unwrap();
    common::wait_for(Duration::from_secs(20), "the removal to settle", || {
        let google = google.clone();
        let (account, sent) = (account.clone(), sent.clone());
        async move {
            let r = google.verify(&account, std::slice::from_ref(&sent)).await;
            matches!(r[0].1, Ok(offboard::connector::Presence::Absent)).then_some(())
        }
    })
    .await;

    let sent_key = sent.key();
    let (_, v) = run_json(&e, &["verify", email, "--app", "google", "--json"]).await;
    let sent_g = v["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == sent_key.as_str())
        .unwrap();
    assert_eq!(sent_g["state"], "verified", "{sent_g}");
    let unsent_g = v["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == unsent.key().as_str())
        .unwrap();
    assert_eq!(unsent_g["state"], "live", "{unsent_g}");
    assert!(
        unsent_g["last_answer"]
            .as_str()
            .unwrap()
            .contains("run `offboard revoke` again")
    );
    assert_eq!(v["exit_code"], 3);
    assert!(
        v["hints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h.as_str().unwrap().contains("still listed by a fresh read")),
        "{v}"
    );
    // No grant is shown removed without a fresh read: nothing is left
    // `revoking` or `removed?` once the reads answered.
    for g in v["grants"].as_array().unwrap() {
        assert!(g["state"] != "revoking" && g["state"] != "removed?", "{g}");
    }
    // Revoke again picks up the one still listed.
    let (code, v) = run_json(
        &e,
        &[
            "revoke", email, "--app", "google", "--kind", "group", "--yes", "--json",
        ],
    )
    .await;
    let g = v["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == unsent.key().as_str())
        .unwrap();
    assert_eq!(g["state"], "verified", "{g} (exit {code})");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_removed_behind_our_back_is_verified_and_marked_vanished() {
    let sb = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(&dir.path().join("cfg"), &sb.base_url);
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let loaded = offboard::config::load(&config).unwrap();
    let resolved = loaded.connectors().unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let connectors = offboard::engine::connectors_from_config(&resolved, &data, &tx).unwrap();
    let opts = EngineOptions {
        operator: "test".into(),
        verify_deadline: Duration::from_secs(10),
        verify_initial_delay: Duration::from_millis(50),
    };
    let ledger = Ledger::open_in(&data, "test").unwrap();
    let engine = Engine::new(connectors, ledger, opts, tx);
    let email = "marcus.reyes@example.com";
    let view = engine
        .discover_apps(email, &["google".into()])
        .await
        .unwrap();
    let token = view
        .grants
        .iter()
        .find(|g| g.grant.kind == offboard::model::GrantKind::OauthGrant)
        .unwrap()
        .grant
        .clone();
    // Someone else (another admin, or the token's expiry) removes it.
    let google = driver(&config, "google", &data);
    let account = match google.find_person(&Person::new(email)).await.unwrap() {
        Lookup::Found { account } => account,
        other => panic!("{other:?}"),
    };
    google.revoke(&account, &token).await.unwrap();

    let key = token.key();
    let state = common::wait_for(Duration::from_secs(20), "a read without the token", || {
        let engine = engine.clone();
        let key = key.clone();
        async move {
            let v = engine.refresh(email, Some("google")).await.unwrap();
            let s = v.grant(&key)?.state.clone();
            (s != GrantState::Live).then_some(s)
        }
    })
    .await;
    // Confirmed gone by a fresh read, so verified; but marked as not removed
    // by this tool, in the view, the summary and the ledger.
    assert!(matches!(state, GrantState::Verified { .. }), "{state:?}");
    let v = engine.case(email).unwrap();
    let g = v.grant(&key).unwrap();
    assert!(g.vanished);
    assert!(
        g.last_answer
            .as_deref()
            .unwrap()
            .contains("gone without offboard")
    );
    assert_eq!(v.summary.vanished, 1);
    assert_eq!(v.summary.verified, 1);
    let recs = Ledger::read(&engine.ledger_path()).unwrap();
    assert!(recs.iter().any(|r| matches!(
        &r.event,
        LedgerEvent::Vanished { key: k, .. } if *k == key
    )));
    assert!(!recs.iter().any(|r| matches!(
        &r.event,
        LedgerEvent::RevokeRequested { key: k, .. } if *k == key
    )));
    let report = offboard::evidence::report::render_with_chain(
        &recs,
        email,
        offboard::evidence::report::Format::Markdown,
        None,
    );
    assert!(report.contains("vanished"), "{report}");
    sb.stop().await;
}

/// Stands in front of the sandbox: answers every Salesforce revoke with an
/// error that echoes the request (its body and the decoded token), cycling
/// 401, 429 (Retry-After beyond the client's limit) and 403
/// REQUEST_LIMIT_EXCEEDED; passes everything else through. Returns its URL
/// and the tokens it was sent.
async fn echoing_revoke_proxy(upstream: String) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::response::{IntoResponse, Response};
    type Seen = Arc<std::sync::Mutex<Vec<String>>>;
    async fn handle(
        State((upstream, seen, n)): State<(String, Seen, Arc<std::sync::atomic::AtomicUsize>)>,
        req: Request,
    ) -> Response {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 1 << 24).await.unwrap();
        let target = parts.uri.path_and_query().unwrap().as_str().to_string();
        if parts.uri.path() == "/services/oauth2/revoke" {
            let raw = String::from_utf8_lossy(&body).into_owned();
            let token = url::form_urlencoded::parse(&body)
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            seen.lock().unwrap().push(token.clone());
            let echo = format!("{raw} ({token})");
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return match i % 3 {
                0 => (
                    axum::http::StatusCode::UNAUTHORIZED,
                    axum::Json(serde_json::json!({"error": "invalid_client", "error_description": echo})),
                )
                    .into_response(),
                1 => (
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "3600")],
                    axum::Json(serde_json::json!({"error": "rate_limited", "error_description": echo})),
                )
                    .into_response(),
                _ => (
                    axum::http::StatusCode::FORBIDDEN,
                    axum::Json(serde_json::json!([{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": format!("TotalRequests Limit exceeded: {echo}")}])),
                )
                    .into_response(),
            };
        }
        let mut fwd = shared_reqwest().request(parts.method.clone(), format!("{upstream}{target}"));
        for (k, v) in &parts.headers {
            if k != "host" && k != "content-length" {
                fwd = fwd.header(k, v);
            }
        }
        let resp = fwd.body(body).send().await.unwrap();
        let mut out = Response::builder().status(resp.status().as_u16());
        for (k, v) in resp.headers() {
            if k != "content-length" && k != "transfer-encoding" {
                out = out.header(k.as_str(), v.as_bytes());
            }
        }
        out.body(Body::from(resp.bytes().await.unwrap())).unwrap()
    }
    let seen: Seen = Arc::default();
    let app =
        axum::Router::new()
            .fallback(handle)
            .with_state((upstream, seen.clone(), Arc::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), seen)
}

/// A Salesforce revoke answered 401, 429 or 403 REQUEST_LIMIT_EXCEEDED with
/// a body that echoes the request: the DeleteToken appears in nothing the
/// binary prints, logs or records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_delete_token_reaches_no_output_ledger_or_log() {
    let sb = common::sandbox(common::quick(200)).await;
    let (proxy, seen) = echoing_revoke_proxy(sb.base_url.clone()).await;
    let e = env(&sb.base_url);
    let text = std::fs::read_to_string(&e.config).unwrap();
    let api = format!(
        "[connectors.salesforce.api]\nbase_url = \"{}\"",
        sb.base_url
    );
    assert!(text.contains(&api), "{text}");
    std::fs::write(
        &e.config,
        text.replace(
            &api,
            &format!("[connectors.salesforce.api]\nbase_url = \"{proxy}\""),
        ),
    )
    .unwrap();
    let (code, out, err) = run(
        &e,
        &[
            "revoke",
            "marcus.reyes@example.com",
            "--app",
            "salesforce",
            "--kind",
            "oauth_grant",
            "--yes",
        ],
    )
    .await;
    assert_eq!(code, 3, "the revokes failed: {out}\n{err}");
    let tokens = seen.lock().unwrap().clone();
    assert!(tokens.len() >= 3, "every token was sent: {tokens:?}");
    let mut everything = format!("{out}\n{err}");
    let mut stack = vec![e.data.clone()];
    while let Some(d) = stack.pop() {
        for f in std::fs::read_dir(&d).unwrap() {
            let p = f.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                everything.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
            }
        }
    }
    assert!(
        everything.contains("answer not shown"),
        "the failures are reported: {everything}"
    );
    for t in &tokens {
        // The whole token, and the secret part after the org id (the
        // request's form encoding turns `!` into `%21`).
        let tail = t.split_once('!').map_or(t.as_str(), |(_, b)| b);
        assert!(tail.len() >= 16, "{t}");
        assert!(
            !everything.contains(t.as_str()) && !everything.contains(tail),
            "a DeleteToken leaked into the output, ledger or log:\n{everything}"
        );
    }
    sb.stop().await;
}

async fn run_80(e: &Env, args: &[&str]) -> (i32, String, String) {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"));
    c.args(args)
        .env("OFFBOARD_CONFIG", &e.config)
        .env("OFFBOARD_DATA", &e.data)
        .env("COLUMNS", "80")
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

fn fits_80(out: &str) {
    for l in out.lines() {
        assert!(
            l.chars().count() <= 80,
            "longer than 80 columns: {l:?}\n{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_says_what_to_do_next_at_80_columns() {
    let sb = common::sandbox(common::quick(200)).await;
    let e = env(&sb.base_url);
    let email = "marcus.reyes@example.com";
    // scan: manual steps are manual from the start, and counted.
    let (code, v) = run_json(&e, &["scan", email, "--json"]).await;
    assert_eq!(code, 3);
    let manual: Vec<&Value> = v["grants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["revocation"] == "manual")
        .collect();
    assert!(!manual.is_empty());
    for g in &manual {
        assert_eq!(g["state"], "manual", "{g}");
    }
    assert_eq!(v["summary"]["manual"], manual.len());
    let (_, out, _) = run_80(&e, &["scan", email]).await;
    assert!(out.contains(&format!("{} manual", manual.len())), "{out}");

    // The dry run wraps at word boundaries: every word of every manual
    // instruction is there, in order, within 80 columns.
    let (code, out, _) = run_80(&e, &["revoke", email, "--dry-run"]).await;
    assert_eq!(code, 0);
    fits_80(&out);
    let words: Vec<&str> = out.split_whitespace().collect();
    for g in &manual {
        let want: Vec<&str> = g["instructions"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .collect();
        assert!(
            words.windows(want.len()).any(|w| w == want.as_slice()),
            "instructions of {} cut:\n{out}",
            g["key"]
        );
    }

    // Exit 3 with manual steps: each key, and the command that ticks it off.
    let (code, revoked, _) = run_80(&e, &["revoke", email, "--yes"]).await;
    assert_eq!(code, 3, "{revoked}");
    fits_80(&revoked);
    let joined = revoked.replace(" \\\n        ", " ");
    let (code, v) = run_json(&e, &["verify", email, "--json"]).await;
    assert_eq!(code, 3);
    // (A role held through a group goes with the group: it is no longer
    // listed, so no longer a step.)
    let open: Vec<Value> = v["grants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["state"] == "manual")
        .cloned()
        .collect();
    assert!(!open.is_empty());
    let manual: Vec<&Value> = open.iter().collect();
    for g in &manual {
        let key = g["key"].as_str().unwrap();
        assert!(
            v["hints"].as_array().unwrap().iter().any(|h| h
                .as_str()
                .unwrap()
                .contains(&format!("offboard done {email} {key} --note"))),
            "{key}: {}",
            v["hints"]
        );
    }
    for g in &manual {
        let key = g["key"].as_str().unwrap();
        assert!(
            joined.contains(&format!("offboard done {email} {key} --note")),
            "{key}:\n{revoked}"
        );
    }
    // verify prints the keys `done` needs.
    let (_, out, _) = run_80(&e, &["verify", email]).await;
    for g in &manual {
        assert!(out.contains(g["key"].as_str().unwrap()), "{out}");
    }

    // done appends one record: the tick-off.
    let before = records(&e.data).len();
    let key = manual[0]["key"].as_str().unwrap();
    let (code, out, err) =
        run_80(&e, &["done", email, key, "--note", "handed over to J. Doe"]).await;
    assert!(code == 3 || code == 0, "{out}\n{err}");
    let after = records(&e.data);
    let new: Vec<&str> = after[before..].iter().map(|r| r.event.name()).collect();
    assert_eq!(new, vec!["manual_done"], "{new:?}");
    assert!(out.contains("ticked off"), "{out}");
    sb.stop().await;
}
