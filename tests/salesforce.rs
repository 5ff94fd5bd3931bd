//! The Salesforce driver against the sandbox's Salesforce emulator, over HTTP.

mod common;

use common::driver::{context, demo_connector, found, of_kind, wait_absent};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use offboard::apps::salesforce::driver::Salesforce;
use offboard::connector::{
    Connector, ConnectorError, Lookup, Presence, ResolvedConnector, RevokeOutcome,
};
use offboard::model::{Grant, GrantKind, Person, Phase, Plan};
use offboard::sandbox::{Faults, Running};

struct Env {
    sb: Running,
    sf: Salesforce,
    _dir: tempfile::TempDir,
}

async fn env_with(faults: Faults, tweak: impl FnOnce(&mut ResolvedConnector)) -> Env {
    let sb = common::sandbox(faults).await;
    let dir = tempfile::tempdir().unwrap();
    let mut resolved = demo_connector(&sb, dir.path(), "salesforce", "");
    // The manifest's request rate suits a shared org; tests go faster.
    resolved.manifest.limits.requests_per_second = 500.0;
    resolved.manifest.limits.burst = 100;
    tweak(&mut resolved);
    let sf = Salesforce::new(&resolved, &context(dir.path())).unwrap();
    Env { sb, sf, _dir: dir }
}

async fn env(consistency_ms: u64) -> Env {
    env_with(common::quick(consistency_ms), |_| {}).await
}

async fn sandbox_put(sb: &Running, body: serde_json::Value) {
    let r = reqwest::Client::new()
        .put(format!("{}/_sandbox/salesforce", sb.base_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

async fn sandbox_stats(sb: &Running) -> serde_json::Value {
    reqwest::get(format!("{}/_sandbox/salesforce/stats", sb.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn scheduled_leaver_every_operation_and_refused_deactivation() {
    let e = env(150).await;
    let dana = found(&e.sf, "dana.whitfield@example.com").await;
    assert!(dana.active);
    assert_eq!(dana.login, "dana.whitfield@example.com");
    let inv = e.sf.list_grants(&dana).await;
    assert!(inv.failed.is_empty(), "{:?}", inv.failed);
    let g = &inv.grants;
    let account = of_kind(g, GrantKind::Account);
    assert_eq!(account.len(), 2, "freeze and deactivate");
    let freeze = account
        .iter()
        .find(|g| g.id.starts_with("freeze:"))
        .unwrap();
    assert_eq!(freeze.phase(), Phase::CutAccess);
    let deactivate = account
        .iter()
        .find(|g| g.id.starts_with("deactivate:"))
        .unwrap();
    assert_eq!(deactivate.phase(), Phase::CloseAccount);
    assert_eq!(of_kind(g, GrantKind::Session).len(), 1);
    assert_eq!(of_kind(g, GrantKind::OauthGrant).len(), 2);
    // The profile-owned permission set is not listed.
    assert_eq!(of_kind(g, GrantKind::AdminRole).len(), 2);
    assert_eq!(of_kind(g, GrantKind::Group).len(), 3);
    assert!(
        of_kind(g, GrantKind::Group)
            .iter()
            .any(|g| g.label == "Queue: Invoice Review Queue")
    );
    let licences = of_kind(g, GrantKind::License);
    assert_eq!(licences.len(), 3, "one PSL and two package licences");

    // Plan: permission sets before the permission set licence.
    let plan = Plan::build(g);
    let order: Vec<&str> = plan
        .phases
        .iter()
        .flat_map(|p| p.steps.iter().map(|s| s.id.as_str()))
        .collect();
    let last_permset = order
        .iter()
        .rposition(|i| i.starts_with("permset:"))
        .unwrap();
    let psl = order.iter().position(|i| i.starts_with("psl:")).unwrap();
    assert!(last_permset < psl, "{order:?}");
    assert!(order[0].starts_with("freeze:"), "{order:?}");
    assert!(order.last().unwrap().starts_with("deactivate:"));

    // Phases 1 and 2.
    let mut done = Vec::new();
    for phase in &plan.phases {
        if phase.phase == Phase::CloseAccount {
            continue;
        }
        for step in &phase.steps {
            let out = e.sf.revoke(&dana, step).await.unwrap();
            assert_eq!(out, RevokeOutcome::Accepted, "{}", step.id);
            done.push(step.clone());
        }
        wait_absent(&e.sf, &dana, &done).await;
    }
    // Revoking again: already gone (404 / invalid_token), still success;
    // freezing a frozen login is a plain (idempotent) update.
    for step in &done {
        let out = e.sf.revoke(&dana, step).await.unwrap();
        let expected = if step.id.starts_with("freeze:") {
            RevokeOutcome::Accepted
        } else {
            RevokeOutcome::AlreadyGone
        };
        assert_eq!(out, expected, "{}", step.id);
    }

    // Phase 3: Salesforce refuses, Dana is the Default Case Owner.
    let err = e.sf.revoke(&dana, deactivate).await.unwrap_err();
    match &err {
        ConnectorError::Refused {
            code,
            message,
            manual,
        } => {
            assert_eq!(code, "FIELD_INTEGRITY_EXCEPTION");
            assert!(message.contains("default owner of cases"), "{message}");
            assert!(manual.contains("frozen"), "{manual}");
        }
        other => panic!("{other:?}"),
    }
    // The freeze stays, the deactivation is still pending.
    let after = e.sf.list_grants(&dana).await;
    assert!(after.failed.is_empty());
    assert!(after.grants.iter().any(|g| g.id == deactivate.id));
    assert!(!after.grants.iter().any(|g| g.id == freeze.id));
    let frozen =
        e.sf.query(&format!(
            "SELECT Id,IsFrozen FROM UserLogin WHERE UserId='{}'",
            dana.id
        ))
        .await
        .unwrap();
    assert_eq!(frozen[0]["IsFrozen"], true);
    e.sb.stop().await;
}

#[tokio::test]
async fn urgent_termination_freeze_cut_and_deactivate() {
    let e = env(100).await;
    let marcus = found(&e.sf, "marcus.reyes@example.com").await;
    assert!(marcus.is_admin);
    let inv = e.sf.list_grants(&marcus).await;
    assert!(inv.failed.is_empty());
    let freeze = inv
        .grants
        .iter()
        .find(|g| g.id.starts_with("freeze:"))
        .unwrap()
        .clone();
    assert_eq!(
        e.sf.revoke(&marcus, &freeze).await.unwrap(),
        RevokeOutcome::Accepted
    );
    wait_absent(&e.sf, &marcus, std::slice::from_ref(&freeze)).await;

    let cut: Vec<Grant> = inv
        .grants
        .iter()
        .filter(|g| matches!(g.kind, GrantKind::Session | GrantKind::OauthGrant))
        .cloned()
        .collect();
    assert_eq!(cut.len(), 6, "3 sessions and 3 connected-app tokens");
    for g in &cut {
        e.sf.revoke(&marcus, g).await.unwrap();
    }
    wait_absent(&e.sf, &marcus, &cut).await;
    assert!(sandbox_stats(&e.sb).await["revocations"].as_u64().unwrap() >= 3);

    let deactivate = inv
        .grants
        .iter()
        .find(|g| g.id.starts_with("deactivate:"))
        .unwrap()
        .clone();
    assert_eq!(
        e.sf.revoke(&marcus, &deactivate).await.unwrap(),
        RevokeOutcome::Accepted
    );
    wait_absent(&e.sf, &marcus, std::slice::from_ref(&deactivate)).await;
    // Found, but inactive.
    let again = found(&e.sf, "marcus.reyes@example.com").await;
    assert!(!again.active);
    assert!(again.facts.iter().any(|(_, v)| v.contains("inactive")));
    e.sb.stop().await;
}

#[tokio::test]
async fn lookups_ambiguous_alias_orphan_missing_and_escaping() {
    let e = env(100).await;
    match e
        .sf
        .find_person(&Person::new("lena.kowalski@example.com"))
        .await
        .unwrap()
    {
        Lookup::Ambiguous { candidates } => {
            assert_eq!(candidates.len(), 2);
            assert!(candidates.iter().any(|c| c.login.ends_with(".portal")));
        }
        other => panic!("{other:?}"),
    }
    // Salesforce knows Alex by a Google alias only.
    assert_eq!(
        e.sf.find_person(&Person::new("alex.chen@example.com"))
            .await
            .unwrap(),
        Lookup::NotFound
    );
    let alex = found(&e.sf, "achen@example.com").await;
    assert_eq!(alex.login, "achen@example.com.prod");
    match e
        .sf
        .find_by_addresses(&["alex.chen@example.com".into(), "achen@example.com".into()])
        .await
        .unwrap()
    {
        Lookup::Found { account } => assert_eq!(account.id, alex.id),
        other => panic!("{other:?}"),
    }
    // Suspended in Google, still active here.
    let tom = found(&e.sf, "tom.becker@example.com").await;
    assert!(tom.active);
    assert!(!e.sf.list_grants(&tom).await.grants.is_empty());
    assert_eq!(
        e.sf.find_person(&Person::new("sam.okafor@partner.example.net"))
            .await
            .unwrap(),
        Lookup::NotFound
    );
    // Quotes and backslashes cannot change the query.
    for evil in ["x' OR Email != '", "o'hara@example.com", "a\\' OR Name='b"] {
        assert_eq!(
            e.sf.find_person(&Person::new(evil)).await.unwrap(),
            Lookup::NotFound,
            "{evil}"
        );
    }
    // What the emulator does not understand is refused as Salesforce does.
    let err = e.sf.query("SELECT Id FROM User LIMIT 1").await.unwrap_err();
    assert_eq!(err.code(), Some("MALFORMED_QUERY"), "{err}");
    e.sb.stop().await;
}

#[tokio::test]
async fn soql_paging_over_many_pages() {
    let e = env(100).await;
    let dana = found(&e.sf, "dana.whitfield@example.com").await;
    let full = e.sf.list_grants(&dana).await;
    sandbox_put(&e.sb, serde_json::json!({"batch_size": 1})).await;
    let paged = e.sf.list_grants(&dana).await;
    assert!(paged.failed.is_empty(), "{:?}", paged.failed);
    let ids = |g: &[Grant]| {
        let mut v: Vec<String> = g.iter().map(|g| g.id.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&full.grants), ids(&paged.grants));

    sandbox_put(&e.sb, serde_json::json!({"batch_size": 40})).await;
    let before = e.sf.client_stats().requests;
    let users =
        e.sf.query("SELECT Id,Username FROM User WHERE IsActive=true")
            .await
            .unwrap();
    let pages = e.sf.client_stats().requests - before;
    assert!(users.len() > 290, "{}", users.len());
    assert_eq!(pages as usize, users.len().div_ceil(40));
    e.sb.stop().await;
}

#[tokio::test]
async fn query_options_header_sets_the_batch_size() {
    let e = env_with(common::quick(100), |r| {
        r.manifest
            .settings
            .insert("query_batch_size".into(), toml::Value::Integer(200));
    })
    .await;
    let before = e.sf.client_stats().requests;
    let users =
        e.sf.query("SELECT Id FROM User WHERE IsActive=true")
            .await
            .unwrap();
    assert!(users.len() > 200);
    assert_eq!(e.sf.client_stats().requests - before, 2);
    e.sb.stop().await;
}

#[tokio::test]
async fn expired_session_gets_exactly_one_new_token() {
    let e = env(100).await;
    found(&e.sf, "tom.becker@example.com").await;
    let before = sandbox_stats(&e.sb).await["token_requests"]
        .as_u64()
        .unwrap();
    assert_eq!(before, 1);
    let r = reqwest::Client::new()
        .post(format!(
            "{}/_sandbox/salesforce/expire-tokens",
            e.sb.base_url
        ))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    found(&e.sf, "tom.becker@example.com").await;
    let after = sandbox_stats(&e.sb).await["token_requests"]
        .as_u64()
        .unwrap();
    assert_eq!(after, before + 1);
    e.sb.stop().await;
}

#[tokio::test]
async fn request_limit_exceeded_is_retried_and_limits_shown() {
    let faults = Faults {
        rate_429: 0.3,
        path_prefix: Some("/services/data/".into()),
        ..common::quick(100)
    };
    let e = env_with(faults, |_| {}).await;
    common::wait_for(
        Duration::from_secs(60),
        "a REQUEST_LIMIT_EXCEEDED answer",
        || async {
            found(&e.sf, "tom.becker@example.com").await;
            (e.sf.client_stats().rate_limited > 0).then_some(())
        },
    )
    .await;
    let h = e.sf.health();
    let info = h.limit_info.expect("Sforce-Limit-Info read");
    assert!(
        info.starts_with("API requests ") && info.ends_with("/15000 (24 h)"),
        "{info}"
    );
    e.sb.stop().await;
}

#[tokio::test]
async fn delete_tokens_never_leave_the_revoke_call() {
    let e = env_with(common::quick(100), |r| r.manifest.limits.max_retries = 1).await;
    let tokens = e.sb.state.salesforce.lock().unwrap().delete_tokens();
    assert!(tokens.len() >= 6);
    let leaks = |text: &str| tokens.iter().any(|t| text.contains(t.as_str()));
    let marcus = found(&e.sf, "marcus.reyes@example.com").await;
    let inv = e.sf.list_grants(&marcus).await;
    let oauth: Vec<Grant> = of_kind(&inv.grants, GrantKind::OauthGrant)
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(oauth.len(), 3);
    let dump = format!(
        "{:?} {}",
        inv.grants,
        serde_json::to_string(&inv.grants).unwrap()
    );
    assert!(!leaks(&dump));
    for g in &oauth {
        assert!(!leaks(&g.id) && !leaks(&g.label) && !leaks(&g.details));
    }
    // A failing revoke endpoint: the error names no token.
    let f = Faults {
        error_rate: 1.0,
        path_prefix: Some("/services/oauth2/revoke".into()),
        ..common::quick(100)
    };
    e.sb.set_faults(f);
    let err = e.sf.revoke(&marcus, &oauth[0]).await.unwrap_err();
    assert!(!leaks(&format!("{err} {err:?}")), "{err:?}");
    assert!(!leaks(&format!("{:?}", e.sf.health())));
    e.sb.set_faults(common::quick(100));
    assert_eq!(
        e.sf.revoke(&marcus, &oauth[0]).await.unwrap(),
        RevokeOutcome::Accepted
    );
    e.sb.stop().await;
}

#[tokio::test]
async fn a_broken_token_listing_quotes_no_delete_token() {
    let e = env_with(common::quick(100), |r| r.manifest.limits.max_retries = 0).await;
    let tokens = e.sb.state.salesforce.lock().unwrap().delete_tokens();
    let marcus = found(&e.sf, "marcus.reyes@example.com").await;
    // Every query answer arrives cut in half: the OauthToken listing's first
    // half holds DeleteTokens, and it does not parse.
    e.sb.set_faults(Faults {
        malformed_rate: 1.0,
        path_prefix: Some("/services/data/".into()),
        ..common::quick(100)
    });
    let inv = e.sf.list_grants(&marcus).await;
    assert!(
        !inv.failed.is_empty(),
        "the broken answers are read failures"
    );
    let dump = format!("{:?} {:?}", inv.failed, e.sf.health());
    assert!(
        !tokens.iter().any(|t| dump.contains(t.as_str())),
        "a DeleteToken reached an error: {dump}"
    );
    // The other listings still say what arrived, for diagnosis.
    assert!(
        dump.contains("the answer was cut off (its JSON body ends early): "),
        "{dump}"
    );
    e.sb.stop().await;
}

#[tokio::test]
async fn removed_rows_stay_listed_until_consistent() {
    let e = env(1500).await;
    let tom = found(&e.sf, "tom.becker@example.com").await;
    let inv = e.sf.list_grants(&tom).await;
    let session = of_kind(&inv.grants, GrantKind::Session)[0].clone();
    assert_eq!(
        e.sf.revoke(&tom, &session).await.unwrap(),
        RevokeOutcome::Accepted
    );
    let now = e.sf.verify(&tom, std::slice::from_ref(&session)).await;
    assert!(matches!(now[0].1, Ok(Presence::Present)), "{now:?}");
    wait_absent(&e.sf, &tom, std::slice::from_ref(&session)).await;

    // A revoked connected-app token is still listed for a moment; revoking
    // it again meets 400 invalid_token, which is success (already gone).
    let inv = e.sf.list_grants(&tom).await;
    let token = of_kind(&inv.grants, GrantKind::OauthGrant)[0].clone();
    assert_eq!(
        e.sf.revoke(&tom, &token).await.unwrap(),
        RevokeOutcome::Accepted
    );
    assert_eq!(
        e.sf.revoke(&tom, &token).await.unwrap(),
        RevokeOutcome::AlreadyGone
    );
    wait_absent(&e.sf, &tom, std::slice::from_ref(&token)).await;
    e.sb.stop().await;
}

#[tokio::test]
async fn next_records_url_on_another_host_is_refused_unsent() {
    let hits = Arc::new(AtomicUsize::new(0));
    let spy_hits = hits.clone();
    let spy = axum::Router::new().fallback(move || {
        let h = spy_hits.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            "{}"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let spy_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, spy).await;
    });

    let e = env(100).await;
    let dana = found(&e.sf, "dana.whitfield@example.com").await;
    let before = e.sf.list_grants(&dana).await;
    let groups: Vec<Grant> = of_kind(&before.grants, GrantKind::Group)
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(groups.len(), 3);
    sandbox_put(
        &e.sb,
        serde_json::json!({
            "batch_size": 1,
            "foreign_next_url": format!("http://{spy_addr}/services/data/v62.0/query/01gX-1"),
        }),
    )
    .await;
    let inv = e.sf.list_grants(&dana).await;
    let err = inv
        .kind_failed(GrantKind::Group)
        .expect("group listing failed");
    assert!(matches!(err, ConnectorError::ForeignLink(_)), "{err:?}");
    // A failed listing is never absence.
    for (id, p) in e.sf.verify(&dana, &groups).await {
        assert!(p.is_err(), "{id}: {p:?}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "nothing sent to the other host"
    );
    e.sb.stop().await;
}

#[tokio::test]
async fn verify_queries_only_the_objects_asked_about() {
    let e = env(60_000).await;
    let marcus = found(&e.sf, "marcus.reyes@example.com").await;
    let inv = e.sf.list_grants(&marcus).await;
    assert!(inv.failed.is_empty(), "{:?}", inv.failed);
    let session = inv
        .grants
        .iter()
        .find(|g| g.kind == GrantKind::Session)
        .unwrap()
        .clone();
    let freeze = inv
        .grants
        .iter()
        .find(|g| g.id.starts_with("freeze:"))
        .unwrap()
        .clone();
    let api = |v: serde_json::Value| v["api_requests"].as_u64().unwrap();

    let before = api(sandbox_stats(&e.sb).await);
    let r = e.sf.verify(&marcus, std::slice::from_ref(&session)).await;
    let after = api(sandbox_stats(&e.sb).await);
    assert_eq!(r, vec![(session.id.clone(), Ok(Presence::Present))]);
    assert_eq!(after - before, 1, "one AuthSession query, nothing else");

    // Removed, but still listed within the consistency delay.
    assert_eq!(
        e.sf.revoke(&marcus, &session).await.unwrap(),
        RevokeOutcome::Accepted
    );
    let before = api(sandbox_stats(&e.sb).await);
    let r =
        e.sf.verify(&marcus, &[session.clone(), freeze.clone()])
            .await;
    let after = api(sandbox_stats(&e.sb).await);
    assert!(r.iter().all(|(_, p)| *p == Ok(Presence::Present)), "{r:?}");
    assert_eq!(after - before, 3, "AuthSession, then User and UserLogin");
}

#[tokio::test]
async fn narrowed_verify_confirms_removals() {
    let e = env(200).await;
    let marcus = found(&e.sf, "marcus.reyes@example.com").await;
    let inv = e.sf.list_grants(&marcus).await;
    let picked: Vec<Grant> = ["session:", "permset:", "group:", "oauth:"]
        .iter()
        .map(|p| {
            inv.grants
                .iter()
                .find(|g| g.id.starts_with(p))
                .unwrap_or_else(|| panic!("marcus has a {p} grant"))
                .clone()
        })
        .collect();
    for g in &picked {
        assert_eq!(
            e.sf.revoke(&marcus, g).await.unwrap(),
            RevokeOutcome::Accepted,
            "{}",
            g.id
        );
    }
    wait_absent(&e.sf, &marcus, &picked).await;
    let r = e.sf.verify(&marcus, &picked).await;
    assert!(r.iter().all(|(_, p)| *p == Ok(Presence::Absent)), "{r:?}");
}

/// `Sforce-Limit-Info` paces the shared client: with the org's daily
/// allocation nearly spent, requests go out at a share of the configured
/// rate; once it has room again, at the full rate.
#[tokio::test]
async fn a_nearly_spent_daily_allocation_slows_requests_down() {
    let e = env_with(common::quick(0), |r| {
        r.manifest.limits.requests_per_second = 20.0;
        r.manifest.limits.burst = 20;
    })
    .await;
    let used = |e: &Env| e.sb.state.salesforce.lock().unwrap().stats.api_requests;
    // Sends lookups until `n` more requests reached the sandbox; how long.
    async fn send(e: &Env, n: u64, used: impl Fn(&Env) -> u64) -> Duration {
        let start = used(e);
        let t = std::time::Instant::now();
        while used(e) < start + n {
            found(&e.sf, "tom.becker@example.com").await;
        }
        t.elapsed()
    }
    // Plenty of room: ten requests within the burst.
    let fast = send(&e, 10, used).await;
    assert!(fast < Duration::from_secs(2), "{fast:?}");
    // 99% of the allocation used: the next answer says so, and the client
    // keeps a tenth of its rate (2 a second, a burst of 2).
    let limit = offboard::apps::salesforce::twin::DAILY_API_LIMIT;
    e.sb.state.salesforce.lock().unwrap().stats.api_requests = limit - limit / 100;
    send(&e, 1, used).await;
    let slow = send(&e, 8, used).await;
    assert!(slow >= Duration::from_millis(2500), "{slow:?}");
    let info = e.sf.health().limit_info.expect("Sforce-Limit-Info read");
    assert!(info.starts_with("API requests 14"), "{info}");
    // A fresh window: the first answer restores the full rate.
    e.sb.state.salesforce.lock().unwrap().stats.api_requests = 100;
    send(&e, 1, used).await;
    let again = send(&e, 10, used).await;
    assert!(again < Duration::from_secs(2), "{again:?}");
    e.sb.stop().await;
}
