//! The Google data hand-over over HTTP against the sandbox: the Data
//! Transfer API's twin (applications, transfers, their states and delay)
//! and the driver and engine that use it: the hand-over to a named person
//! before the suspension, verified only once a fresh read shows the
//! transfer completed; a transfer that stays pending is reported pending,
//! never verified.

mod common;

use std::sync::Arc;
use std::time::Duration;

use offboard::auth::jwt::{JwtBearer, JwtBearerConfig};
use offboard::connector::http::shared_reqwest;
use offboard::connector::{Connector, Presence, RevokeOutcome, TokenSource};
use offboard::engine::{Engine, EngineOptions, Selection};
use offboard::evidence::Ledger;
use offboard::model::{GrantKind, GrantState, Person, Phase};
use offboard::sandbox::{self, Options, Running};
use serde_json::{Value, json};

const DANA: &str = "dana.whitfield@example.com";
const PRIYA: &str = "priya.natarajan@example.com";
const HAND_OVER: &str = "google/transfer:drive_calendar";
const T: &str = "/admin/datatransfer/v1";

/// Someone of the demo company who is not a leaver (the manager).
fn manager() -> String {
    sandbox::tenant::people()
        .into_iter()
        .find(|p| p.scenario.is_none())
        .expect("the demo company has people who stay")
        .email
}

struct Env {
    sb: Running,
    google: Arc<dyn Connector>,
    dir: tempfile::TempDir,
}

async fn env(transfer_ms: u64) -> Env {
    let sb = sandbox::start(Options {
        faults: common::quick(200),
        ..Options::default()
    })
    .await
    .expect("sandbox starts");
    sb.state.google.lock().unwrap().transfer_delay = Some(Duration::from_millis(transfer_ms));
    let dir = tempfile::tempdir().unwrap();
    let resolved = common::driver::demo_connector(&sb, dir.path(), "google", "");
    let google = common::driver::driver(&resolved, &common::driver::context(dir.path()));
    Env { sb, google, dir }
}

fn engine(e: &Env, deadline: Duration) -> Arc<Engine> {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = EngineOptions {
        operator: "test".into(),
        verify_deadline: deadline,
        verify_initial_delay: Duration::from_millis(50),
    };
    let data = e.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    Engine::new(
        vec![e.google.clone()],
        Ledger::open_in(&data, "test").unwrap(),
        opts,
        tx,
    )
}

/// A raw access token of the demo service account, for calls made by hand.
async fn token(sb: &Running, scopes: &[&str]) -> String {
    let jwt = JwtBearer::new(
        shared_reqwest(),
        JwtBearerConfig {
            token_url: url::Url::parse(&format!("{}/token", sb.base_url)).unwrap(),
            issuer: offboard::apps::google::DEMO_CLIENT_EMAIL.into(),
            subject: Some(sandbox::DEMO_ADMIN.into()),
            scopes: scopes
                .iter()
                .map(|s| format!("https://www.googleapis.com/auth/{s}"))
                .collect(),
            audience: None,
            private_key_pem: offboard::secret::Secret::new(
                offboard::apps::google::DEMO_PRIVATE_KEY,
            ),
            key_id: None,
        },
    )
    .unwrap();
    jwt.token().await.unwrap().expose().to_string()
}

fn user_id(sb: &Running, email: &str) -> String {
    let g = sb.state.google.lock().unwrap();
    let i = g.user_index(email).unwrap();
    g.users[i].id.clone()
}

#[tokio::test]
async fn the_twin_serves_applications_and_transfers_as_google_documents_them() {
    let e = env(400).await;
    let sb = &e.sb;
    let tok = token(sb, &["admin.datatransfer"]).await;
    let http = reqwest::Client::new();
    let get = |path: String| {
        http.get(format!("{}{path}", sb.base_url))
            .bearer_auth(&tok)
            .send()
    };
    // Applications, paged.
    let r = get(format!("{T}/applications?maxResults=2")).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["kind"], "admin#datatransfer#applicationsList");
    assert_eq!(v["applications"].as_array().unwrap().len(), 2);
    assert_eq!(v["applications"][0]["name"], "Drive and Docs");
    assert_eq!(
        v["applications"][0]["transferParams"][0]["key"],
        "PRIVACY_LEVEL"
    );
    let next = v["nextPageToken"].as_str().unwrap();
    let v: Value = get(format!("{T}/applications?maxResults=2&pageToken={next}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["applications"].as_array().unwrap().len(), 1);
    assert!(v.get("nextPageToken").is_none());
    let r = get(format!("{T}/applications/435070579839")).await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["name"], "Calendar");
    assert_eq!(
        get(format!("{T}/applications/1")).await.unwrap().status(),
        404
    );
    assert_eq!(
        get(format!("{T}/applications?maxResults=501"))
            .await
            .unwrap()
            .status(),
        400
    );

    // Inserts are checked: owners by id, known applications and parameters.
    let (dana, boss) = (user_id(sb, DANA), user_id(sb, &manager()));
    let post = |body: Value| {
        http.post(format!("{}{T}/transfers", sb.base_url))
            .bearer_auth(&tok)
            .json(&body)
            .send()
    };
    let drive = json!({"applicationId": "55656082996", "applicationTransferParams": [{"key": "PRIVACY_LEVEL", "value": ["PRIVATE", "SHARED"]}]});
    for bad in [
        json!({"oldOwnerUserId": dana, "applicationDataTransfers": [drive]}),
        json!({"oldOwnerUserId": DANA, "newOwnerUserId": boss, "applicationDataTransfers": [drive]}),
        json!({"oldOwnerUserId": dana, "newOwnerUserId": dana, "applicationDataTransfers": [drive]}),
        json!({"oldOwnerUserId": dana, "newOwnerUserId": boss, "applicationDataTransfers": []}),
        json!({"oldOwnerUserId": dana, "newOwnerUserId": boss, "applicationDataTransfers": [{"applicationId": "42"}]}),
        json!({"oldOwnerUserId": dana, "newOwnerUserId": boss, "applicationDataTransfers": [{"applicationId": "55656082996", "applicationTransferParams": [{"key": "PRIVACY_LEVEL", "value": ["PUBLIC"]}]}]}),
    ] {
        let r = post(bad.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], 400, "Google's error body: {v}");
    }
    assert!(sb.state.google.lock().unwrap().transfers.is_empty());

    // A transfer: inProgress, then completed after its delay.
    let r = post(json!({"oldOwnerUserId": dana, "newOwnerUserId": boss, "applicationDataTransfers": [drive]}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["kind"], "admin#datatransfer#DataTransfer");
    assert_eq!(t["overallTransferStatusCode"], "inProgress");
    assert_eq!(t["oldOwnerUserId"], dana.as_str());
    assert!(t["requestTime"].as_str().unwrap().ends_with('Z'));
    let id = t["id"].as_str().unwrap().to_string();
    let listed: Value = get(format!(
        "{T}/transfers?oldOwnerUserId={dana}&status=inProgress"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(listed["dataTransfers"][0]["id"], id.as_str());
    let none: Value = get(format!("{T}/transfers?newOwnerUserId={dana}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(none.get("dataTransfers").is_none(), "{none}");
    common::wait_for(Duration::from_secs(5), "the transfer completes", || async {
        let v: Value = get(format!("{T}/transfers/{id}"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (v["overallTransferStatusCode"] == "completed").then_some(())
    })
    .await;
    let v: Value = get(format!("{T}/transfers/{id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["applicationDataTransfers"][0]["applicationTransferStatus"],
        "completed"
    );
    assert_eq!(
        get(format!("{T}/transfers/nope")).await.unwrap().status(),
        404
    );

    // Without the scope: Google's 403.
    let other = token(sb, &["admin.directory.user"]).await;
    let r = http
        .get(format!("{}{T}/transfers", sb.base_url))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn the_hand_over_goes_to_the_named_person_before_the_suspension_and_is_verified_once_completed()
 {
    let e = env(600).await;
    let boss = manager();
    let engine = engine(&e, Duration::from_secs(30));
    engine.set_hand_over(DANA, &boss).await.unwrap();
    let view = engine.discover(DANA).await.unwrap();
    let g = view
        .grant(HAND_OVER)
        .expect("the hand-over through the API");
    assert!(!g.grant.is_manual());
    assert!(g.grant.label.contains(&boss), "{}", g.grant.label);
    assert_eq!(g.state, GrantState::Live);
    assert!(
        view.grant("google/manual:data_transfer").is_none(),
        "replaces the manual step"
    );
    let account = view
        .accounts
        .iter()
        .find_map(|a| a.status.account())
        .unwrap();
    assert!(
        account
            .facts
            .iter()
            .any(|(k, v)| k == "hand_over_to" && v == &boss)
    );
    // Before the suspension in the plan.
    let plan = engine.plan(DANA, &Selection::default()).unwrap();
    let phase_of = |id: &str| {
        plan.phases
            .iter()
            .find(|p| p.steps.iter().any(|s| s.key() == id))
            .map(|p| p.phase)
    };
    assert_eq!(phase_of(HAND_OVER), Some(Phase::RemoveEntitlements));
    assert_eq!(phase_of("google/suspend"), Some(Phase::CloseAccount));

    let summary = engine.revoke(DANA, &Selection::default()).await.unwrap();
    let view = engine.case(DANA).unwrap();
    assert!(
        matches!(
            view.grant(HAND_OVER).unwrap().state,
            GrantState::Verified { .. }
        ),
        "{:?}",
        view.grant(HAND_OVER).unwrap().state
    );
    assert_eq!(summary.unconfirmed, 0);
    // Exactly one transfer, of Drive and Calendar, to the manager.
    let (dana_id, boss_id) = (user_id(&e.sb, DANA), user_id(&e.sb, &boss));
    {
        let g = e.sb.state.google.lock().unwrap();
        assert_eq!(g.transfers.len(), 1);
        let t = &g.transfers[0];
        assert_eq!(
            (t.old_owner.as_str(), t.new_owner.as_str()),
            (dana_id.as_str(), boss_id.as_str())
        );
        let apps: Vec<&str> = t.apps.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(apps, ["55656082996", "435070579839"]);
        assert_eq!(
            t.apps[0].1,
            vec![(
                "PRIVACY_LEVEL".to_string(),
                vec!["PRIVATE".to_string(), "SHARED".to_string()]
            )]
        );
    }
    // The evidence: the hand-over was verified by a fresh read.
    let records = Ledger::read_case(engine.ledger_path().as_path(), DANA).unwrap();
    let text = serde_json::to_string(&records).unwrap();
    assert!(text.contains("transfer:drive_calendar"), "{text}");

    // A new engine (a later run) knows whom from the ledger, and a fresh
    // read finds the completed transfer: nothing is asked again.
    let again = engine_from_same_ledger(&e);
    assert_eq!(again.hand_over_of(DANA), None);
    let view = again.discover(DANA).await.unwrap();
    assert_eq!(again.hand_over_of(DANA).as_deref(), Some(boss.as_str()));
    assert!(view.grant("google/manual:data_transfer").is_none());
    assert_eq!(e.sb.state.google.lock().unwrap().transfers.len(), 1);
}

fn engine_from_same_ledger(e: &Env) -> Arc<Engine> {
    engine(e, Duration::from_secs(30))
}

#[tokio::test]
async fn a_transfer_that_stays_pending_is_reported_pending_and_never_verified() {
    let e = env(100).await;
    let boss = manager();
    e.sb.state.google.lock().unwrap().hold_transfers = true;
    let engine = engine(&e, Duration::from_secs(2));
    engine.set_hand_over(PRIYA, &boss).await.unwrap();
    engine.discover(PRIYA).await.unwrap();
    let only = Selection {
        kinds: vec![GrantKind::Delegation],
        ..Selection::default()
    };
    let summary = engine.revoke(PRIYA, &only).await.unwrap();
    assert_eq!(summary.unconfirmed, 1, "{summary:?}");
    assert_eq!(summary.verified, 0);
    assert_eq!(summary.exit_code(), 3);
    let view = engine.case(PRIYA).unwrap();
    match &view.grant(HAND_OVER).unwrap().state {
        GrantState::Unconfirmed { reason } => {
            assert!(reason.starts_with("pending"), "{reason}")
        }
        other => panic!("never verified while pending: {other:?}"),
    }
    // The driver's own fresh read says so too.
    let account = view
        .accounts
        .iter()
        .find_map(|a| a.status.account())
        .unwrap()
        .clone();
    let grant = view.grant(HAND_OVER).unwrap().grant.clone();
    let r = e
        .google
        .verify(&account, std::slice::from_ref(&grant))
        .await;
    assert_eq!(r[0].1, Ok(Presence::InProgress));
    // Asking again does not start a second transfer.
    assert_eq!(
        e.google.revoke(&account, &grant).await.unwrap(),
        RevokeOutcome::Accepted
    );
    // A refresh shows what is under way.
    let view = engine.refresh(PRIYA, Some("google")).await.unwrap();
    let g = view.grant(HAND_OVER).unwrap();
    assert!(
        g.grant.details.contains("inProgress"),
        "{}",
        g.grant.details
    );
    assert!(!g.state.is_closed());
    assert_eq!(e.sb.state.google.lock().unwrap().transfers.len(), 1);

    // Once Google completes it, the next verify confirms it.
    e.sb.state.google.lock().unwrap().hold_transfers = false;
    let summary = engine.verify(PRIYA, &only).await.unwrap();
    assert_eq!(summary.unconfirmed, 0, "{summary:?}");
    assert!(matches!(
        engine.case(PRIYA).unwrap().grant(HAND_OVER).unwrap().state,
        GrantState::Verified { .. }
    ));
}

#[tokio::test]
async fn without_anyone_named_it_stays_manual_and_an_unknown_person_is_refused() {
    let e = env(100).await;
    let lena = common::driver::found(&*e.google, "lena.kowalski@example.com").await;
    let inv = e.google.list_grants(&lena).await;
    assert!(
        inv.grants
            .iter()
            .any(|g| g.id == "manual:data_transfer" && g.is_manual())
    );
    assert!(!inv.grants.iter().any(|g| g.id == "transfer:drive_calendar"));

    // Named, but without a Google account: the step fails with the fix.
    let mut p = Person::new("lena.kowalski@example.com");
    p.hand_over_to = Some("nobody.here@example.com".into());
    let lena = match e.google.find_person(&p).await.unwrap() {
        offboard::connector::Lookup::Found { account } => account,
        other => panic!("{other:?}"),
    };
    let inv = e.google.list_grants(&lena).await;
    assert!(inv.failed.is_empty(), "{:?}", inv.failed);
    let g = inv
        .grants
        .iter()
        .find(|g| g.id == "transfer:drive_calendar")
        .unwrap();
    match e.google.revoke(&lena, g).await {
        Err(offboard::connector::ConnectorError::Refused {
            message, manual, ..
        }) => {
            assert!(message.contains("no Google account"), "{message}");
            assert!(manual.contains("Admin console"), "{manual}");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.sb.state.google.lock().unwrap().transfers.is_empty());
}
