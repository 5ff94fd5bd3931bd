//! The Microsoft Graph driver against the sandbox's Graph twin, over HTTP:
//! lookup (UPN, `$filter`, the `proxyAddresses` advanced query and its
//! lagging index), every grant kind and its removal, what Graph refuses
//! (group licences, dynamic, synced and mail-enabled groups, synced users,
//! the password method), `$batch`, paging by absolute `@odata.nextLink`,
//! 429/503 with `Retry-After`, and both sign-ins (client secret,
//! certificate assertion with `x5t`) with AADSTS errors.

mod common;

use common::driver::{
    AccessLog, context, context_with_notices, demo_connector, found, logged_sandbox, of_kind,
};

use std::time::Duration;

use offboard::apps::graph::driver::Graph;
use offboard::connector::http::HttpNotice;
use offboard::connector::{
    Connector, ConnectorError, Lookup, Presence, ResolvedConnector, RevokeOutcome,
};
use offboard::model::{Account, Grant, GrantKind, Person, Phase};
use offboard::sandbox::{Options, Running};
use serde_json::{Value, json};

struct Env {
    sb: Running,
    graph: Graph,
    log: AccessLog,
    dir: tempfile::TempDir,
}

async fn env_with(
    consistency_ms: u64,
    extra: &str,
    tweak: impl FnOnce(&mut ResolvedConnector),
) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let (sb, log, mut resolved) =
        logged_sandbox(dir.path(), consistency_ms, "microsoft-graph", extra).await;
    tweak(&mut resolved);
    let graph = Graph::new(&resolved, &context(dir.path())).unwrap();
    Env {
        sb,
        graph,
        log,
        dir,
    }
}

async fn env(consistency_ms: u64) -> Env {
    env_with(consistency_ms, "", |_| {}).await
}

async fn settings(sb: &Running, v: Value) {
    let r = reqwest::Client::new()
        .put(format!("{}/_sandbox/graph", sb.base_url))
        .json(&v)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

async fn twin_state(sb: &Running) -> Value {
    reqwest::get(format!("{}/_sandbox/graph/state", sb.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A token for raw calls, from the demo app's secret.
async fn raw_token(sb: &Running) -> String {
    let r: Value = reqwest::Client::new()
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            sb.base_url,
            offboard::apps::graph::twin::DEMO_TENANT_ID
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", offboard::apps::graph::twin::DEMO_CLIENT_ID),
            (
                "client_secret",
                offboard::apps::graph::twin::DEMO_CLIENT_SECRET,
            ),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["token_type"], "Bearer");
    assert!(r["ext_expires_in"].as_u64().is_some());
    r["access_token"].as_str().unwrap().to_string()
}

fn by_prefix<'a>(grants: &'a [Grant], prefix: &str) -> Vec<&'a Grant> {
    grants.iter().filter(|g| g.id.starts_with(prefix)).collect()
}

async fn listed(c: &Graph, a: &Account) -> Vec<Grant> {
    let inv = c.list_grants(a).await;
    assert!(inv.failed.is_empty(), "{:?}", inv.failed);
    inv.grants
}

async fn wait_absent(c: &Graph, a: &Account, grants: &[Grant]) {
    common::wait_for(
        Duration::from_secs(10),
        "grants verified absent",
        || async {
            c.verify(a, grants)
                .await
                .iter()
                .all(|(_, p)| matches!(p, Ok(Presence::Absent)))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn lookup_by_upn_then_filter_then_proxy_addresses_with_eventual_consistency() {
    let e = env(400).await;
    let marcus = found(&e.graph, "marcus.reyes@example.com").await;
    assert_eq!(marcus.login, "marcus.reyes@example.com");
    assert!(marcus.active);
    assert!(
        e.log
            .count(&["/v1.0/users/marcus.reyes@example.com", "%24select"])
            >= 1
    );
    // Alex signs in as achen@; alex.chen@ is only a proxy address: the
    // advanced query finds it, with ConsistencyLevel and $count.
    let alex = found(&e.graph, "alex.chen@example.com").await;
    assert_eq!(alex.login, "achen@example.com");
    assert!(
        e.log
            .count(&["proxyAddresses", "%24count=true", "\"status\":200"])
            >= 1
    );
    // Nobody: NotFound after all three.
    let none = e
        .graph
        .find_person(&Person::new("nobody@example.com"))
        .await
        .unwrap();
    assert_eq!(none, Lookup::NotFound);
    // A user created just now is not in the advanced-query index yet.
    reqwest::Client::new()
        .post(format!("{}/_sandbox/graph/users", e.sb.base_url))
        .json(&json!({"upn": "j.doe@example.com", "proxy": ["smtp:jane.doe@example.com"]}))
        .send()
        .await
        .unwrap();
    let early = e
        .graph
        .find_person(&Person::new("jane.doe@example.com"))
        .await
        .unwrap();
    assert_eq!(early, Lookup::NotFound);
    common::wait_for(Duration::from_secs(5), "the index to catch up", || async {
        matches!(
            e.graph
                .find_person(&Person::new("jane.doe@example.com"))
                .await,
            Ok(Lookup::Found { .. })
        )
        .then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_twin_keeps_graphs_query_rules() {
    let e = env(0).await;
    let token = raw_token(&e.sb).await;
    let c = reqwest::Client::new();
    let get = |path: &str| {
        c.get(format!("{}/v1.0{path}", e.sb.base_url))
            .bearer_auth(&token)
    };
    // Default properties only without $select.
    let u: Value = get("/users/marcus.reyes@example.com")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(u.get("accountEnabled").is_none(), "{u}");
    assert_eq!(u["userPrincipalName"], "marcus.reyes@example.com");
    let u: Value =
        get("/users/marcus.reyes@example.com?$select=accountEnabled,onPremisesSyncEnabled")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(u["accountEnabled"], true);
    // Unknown property: 400 in Graph's error shape.
    let r = get("/users/marcus.reyes@example.com?$select=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let b: Value = r.json().await.unwrap();
    assert!(b["error"]["code"].is_string() && b["error"]["innerError"]["request-id"].is_string());
    // proxyAddresses/any without ConsistencyLevel: eventual is refused.
    let r = get("/users?$filter=proxyAddresses/any(p:p eq 'smtp:alex.chen@example.com')")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "Request_UnsupportedQuery");
    // No token: 401 InvalidAuthenticationToken.
    let r = c
        .get(format!("{}/v1.0/users", e.sb.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "InvalidAuthenticationToken");
    // $batch: at most 20 requests.
    let reqs: Vec<Value> = (0..21)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/subscribedSkus"}))
        .collect();
    let r = c
        .post(format!("{}/v1.0/$batch", e.sb.base_url))
        .bearer_auth(&token)
        .json(&json!({ "requests": reqs }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // The password method cannot be deleted.
    let uid = u["id"].as_str().unwrap();
    let r = c
        .delete(format!(
            "{}/v1.0/users/{uid}/authentication/passwordMethods/{}",
            e.sb.base_url,
            offboard::apps::graph::twin::PASSWORD_METHOD_ID
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A synced user's accountEnabled is mastered on-premises.
    let tom: Value = get("/users/tom.becker@example.com?$select=onPremisesSyncEnabled")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tom["onPremisesSyncEnabled"], true);
    let r = c
        .patch(format!(
            "{}/v1.0/users/{}",
            e.sb.base_url,
            tom["id"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .json(&json!({"accountEnabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn urgent_termination_every_operation_verified_by_fresh_reads() {
    let e = env(300).await;
    let marcus = found(&e.graph, "marcus.reyes@example.com").await;
    let grants = listed(&e.graph, &marcus).await;
    // One $batch read the user's lists.
    assert_eq!(e.log.count(&["\"POST\"", "/v1.0/$batch"]), 1);
    assert_eq!(e.log.count(&["/memberOf"]), 0, "read inside the batch");

    let sessions = by_prefix(&grants, "sessions:");
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].details.contains("up to about an hour"));
    // Delegated consents: his two, never the tenant-wide one.
    let consents = of_kind(&grants, GrantKind::OauthGrant);
    assert_eq!(consents.len(), 2, "{consents:?}");
    // Methods: authenticator, FIDO2, OATH, TAP; the password stays.
    let methods = by_prefix(&grants, "method:");
    assert_eq!(methods.len(), 4, "{methods:?}");
    assert!(methods.iter().any(|m| m.id.starts_with("method:fido2:")));
    assert!(!grants.iter().any(|g| g.label.contains("assword")));
    // Licences: two direct, E3 through a group (manual at the group).
    let direct: Vec<_> = by_prefix(&grants, "license:")
        .into_iter()
        .filter(|g| !g.is_manual())
        .collect();
    assert_eq!(direct.len(), 2, "{direct:?}");
    let inherited: Vec<_> = by_prefix(&grants, "inherited:")
        .into_iter()
        .filter(|g| g.is_manual())
        .collect();
    assert_eq!(inherited.len(), 1);
    assert!(
        inherited[0].label.contains("M365 E3 users"),
        "{}",
        inherited[0].label
    );
    // Groups: the dynamic one is manual; directory roles in memberOf are
    // not groups.
    let groups = of_kind(&grants, GrantKind::Group);
    assert_eq!(groups.len(), 4, "{groups:?}");
    assert!(
        groups
            .iter()
            .any(|g| g.is_manual() && g.label.contains("dynamic"))
    );
    // Roles: one active, one PIM-eligible.
    assert_eq!(by_prefix(&grants, "role:").len(), 1);
    assert_eq!(by_prefix(&grants, "eligible:").len(), 1);
    assert_eq!(by_prefix(&grants, "device:").len(), 2);
    assert_eq!(by_prefix(&grants, "approle:").len(), 1);
    // Owned: the app registration, its service principal, a group: all
    // hand-overs.
    let owned = of_kind(&grants, GrantKind::OwnedApp);
    assert_eq!(owned.len(), 3, "{owned:?}");
    assert!(owned.iter().all(|g| g.is_manual()));
    assert!(
        owned
            .iter()
            .any(|g| g.label.contains("app registration: Ops automation"))
    );
    // Closing is last.
    let close = by_prefix(&grants, "disable:");
    assert_eq!(close.len(), 1);
    assert_eq!(close[0].phase(), Phase::CloseAccount);
    assert!(!close[0].is_manual());

    // Revoke everything the API can.
    let mut removed = Vec::new();
    for g in grants.iter().filter(|g| !g.is_manual()) {
        let out = e
            .graph
            .revoke(&marcus, g)
            .await
            .unwrap_or_else(|err| panic!("{}: {err}", g.id));
        if g.id.starts_with("sessions:") {
            assert_eq!(out, RevokeOutcome::Acknowledged);
        } else {
            assert_eq!(out, RevokeOutcome::Accepted, "{}", g.id);
            removed.push(g.clone());
        }
    }
    // Just after the writes, replicas still show them.
    let early = e.graph.verify(&marcus, &removed).await;
    assert!(
        early
            .iter()
            .any(|(_, p)| matches!(p, Ok(Presence::Present)))
    );
    wait_absent(&e.graph, &marcus, &removed).await;
    // A grant no Graph list holds is never taken for gone.
    let mut stranger = removed[0].clone();
    stranger.id = "unknown:1".into();
    let r = e.graph.verify(&marcus, &[stranger]).await;
    assert!(r[0].1.is_err(), "{r:?}");
    let st = twin_state(&e.sb).await;
    assert_eq!(st["revocations"][&marcus.id], 1);
    // The tenant-wide consent is untouched.
    assert!(
        st["grants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["consentType"] == "AllPrincipals")
    );
    // Revoking again: already gone.
    let again = e
        .graph
        .revoke(&marcus, by_prefix(&removed, "grant:")[0])
        .await
        .unwrap();
    assert_eq!(again, RevokeOutcome::AlreadyGone);
    let again = e
        .graph
        .revoke(&marcus, by_prefix(&removed, "eligible:")[0])
        .await
        .unwrap();
    assert_eq!(again, RevokeOutcome::AlreadyGone);
    // The PIM removal went through an adminRemove request.
    assert_eq!(
        e.log.count(&[
            "\"POST\"",
            "roleEligibilityScheduleRequests",
            "\"status\":201"
        ]),
        1
    );
}

#[tokio::test]
async fn what_graph_cannot_change_is_refused_with_its_reason() {
    let e = env(0).await;
    let dana = found(&e.graph, "dana.whitfield@example.com").await;
    let grants = listed(&e.graph, &dana).await;
    // The distribution list and the dynamic group are manual steps.
    let manual: Vec<_> = of_kind(&grants, GrantKind::Group)
        .into_iter()
        .filter(|g| g.is_manual())
        .collect();
    assert_eq!(manual.len(), 2, "{manual:?}");
    // Asked anyway, Graph refuses, and the error says what to do.
    for g in manual {
        let mut g = g.clone();
        g.revocation = offboard::model::Revocation::Api;
        match e.graph.revoke(&dana, &g).await {
            Err(ConnectorError::Refused { code, manual, .. }) => {
                assert_eq!(code, "Request_BadRequest");
                assert!(manual.contains("Graph refused"));
            }
            other => panic!("{}: {other:?}", g.id),
        }
    }
    // A group licence refuses assignLicense.
    let inherited = by_prefix(&grants, "inherited:")
        .into_iter()
        .find(|g| g.is_manual())
        .unwrap()
        .clone();
    assert!(inherited.after.iter().any(|a| a.starts_with("group:")));
    let sku = inherited.id.split(':').nth(1).unwrap();
    let mut as_direct = inherited.clone();
    as_direct.id = format!("license:{sku}");
    match e.graph.revoke(&dana, &as_direct).await {
        Err(ConnectorError::Refused { message, .. }) => assert!(message.contains("inherited")),
        other => panic!("{other:?}"),
    }
    // Removing the group that assigns it takes the licence with it.
    let licensed = of_kind(&grants, GrantKind::Group)
        .into_iter()
        .find(|g| g.label.contains("M365 E3 users"))
        .unwrap()
        .clone();
    assert_eq!(
        e.graph.revoke(&dana, &licensed).await.unwrap(),
        RevokeOutcome::Accepted
    );
    let after = listed(&e.graph, &dana).await;
    assert!(!after.iter().any(|g| g.id == inherited.id));

    // Tom is synced from on-premises AD: closing is flagged, not written.
    let tom = found(&e.graph, "tom.becker@example.com").await;
    assert!(tom.facts.iter().any(|(_, v)| v.contains("on-premises")));
    let grants = listed(&e.graph, &tom).await;
    let close = by_prefix(&grants, "disable:");
    assert_eq!(close.len(), 1);
    assert!(close[0].is_manual());
    assert!(close[0].label.contains("on-premises"));
    // The synced group he is in is manual too.
    assert!(
        of_kind(&grants, GrantKind::Group)
            .iter()
            .any(|g| g.is_manual() && g.label.contains("on-premises"))
    );
}

#[tokio::test]
async fn closing_blocks_sign_in_and_is_confirmed_by_a_fresh_read() {
    let e = env(300).await;
    let lena = found(&e.graph, "lena.kowalski@example.com").await;
    let grants = listed(&e.graph, &lena).await;
    let close = by_prefix(&grants, "disable:")[0].clone();
    assert_eq!(
        e.graph.revoke(&lena, &close).await.unwrap(),
        RevokeOutcome::Accepted
    );
    assert_eq!(
        e.log
            .count(&["\"PATCH\"", "/v1.0/users/", "\"status\":204"]),
        1
    );
    wait_absent(&e.graph, &lena, std::slice::from_ref(&close)).await;
    let again = found(&e.graph, "lena.kowalski@example.com").await;
    assert!(!again.active);
}

#[tokio::test]
async fn lists_page_by_absolute_next_links() {
    let e = env_with(
        0,
        "\n[connectors.microsoft-graph.settings]\npage_size = 2\n",
        |_| {},
    )
    .await;
    settings(&e.sb, json!({"max_page": 2})).await;
    let marcus = found(&e.graph, "marcus.reyes@example.com").await;
    let grants = listed(&e.graph, &marcus).await;
    assert_eq!(of_kind(&grants, GrantKind::Group).len(), 4);
    assert_eq!(by_prefix(&grants, "method:").len(), 4);
    assert!(e.log.count(&["memberOf", "%24skiptoken"]) >= 1);
}

#[tokio::test]
async fn a_next_link_to_another_origin_is_refused_and_the_kind_fails() {
    // The connector is configured on `localhost`; the twin's links name
    // 127.0.0.1: another origin, so the token never goes there.
    let e = env_with(0, "", |r| {
        let url = r.manifest.api["base_url"].replace("127.0.0.1", "localhost");
        r.manifest.api.insert("base_url".into(), url);
    })
    .await;
    settings(&e.sb, json!({"max_page": 2})).await;
    let marcus = found(&e.graph, "marcus.reyes@example.com").await;
    let inv = e.graph.list_grants(&marcus).await;
    let err = inv.kind_failed(GrantKind::Group).expect("groups failed");
    assert!(matches!(err, ConnectorError::ForeignLink(_)), "{err:?}");
    assert!(of_kind(&inv.grants, GrantKind::Group).is_empty());
}

#[tokio::test]
async fn throttled_batch_items_are_read_again_after_retry_after() {
    let e = env(0).await;
    let marcus = found(&e.graph, "marcus.reyes@example.com").await;
    // The first three items of the next batch are throttled.
    settings(&e.sb, json!({"force_429": 3, "retry_after_secs": 1})).await;
    let grants = listed(&e.graph, &marcus).await;
    assert_eq!(of_kind(&grants, GrantKind::AdminRole).len(), 2);
    assert_eq!(by_prefix(&grants, "disable:").len(), 1);
    // Those three were read again on their own.
    assert!(e.log.count(&["\"GET\"", "/v1.0/users/", "%24select"]) >= 2);
}

#[tokio::test]
async fn rate_limits_429_and_503_wait_for_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let sb = offboard::sandbox::start(Options::default()).await.unwrap();
    let mut resolved = demo_connector(&sb, dir.path(), "microsoft-graph", "");
    resolved.manifest.limits.requests_per_second = 500.0;
    let (ctx, mut notices) = context_with_notices(dir.path());
    let graph = Graph::new(&resolved, &ctx).unwrap();
    for (field, code) in [("force_429", 429u16), ("force_503", 503)] {
        settings(&sb, json!({ field: 1, "retry_after_secs": 1 })).await;
        let started = std::time::Instant::now();
        found(&graph, "dana.whitfield@example.com").await;
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{code}: waited Retry-After"
        );
        let mut saw = false;
        while let Ok(n) = notices.try_recv() {
            saw |= matches!(n, HttpNotice::RateLimited { .. });
        }
        assert!(saw, "{code}: a rate-limit notice");
    }
}

#[tokio::test]
async fn a_wrong_client_secret_shows_the_aadsts_code_never_the_secret() {
    let e = env(0).await;
    std::fs::write(
        e.dir.path().join("graph-client-secret"),
        "wrong-secret-value-123456",
    )
    .unwrap();
    let resolved = demo_connector(&e.sb, e.dir.path(), "microsoft-graph", "");
    std::fs::write(
        e.dir.path().join("graph-client-secret"),
        "wrong-secret-value-123456",
    )
    .unwrap();
    let graph = Graph::new(&resolved, &context(e.dir.path())).unwrap();
    let err = graph
        .find_person(&Person::new("dana.whitfield@example.com"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("AADSTS7000215"), "{text}");
    assert!(!text.contains("wrong-secret-value"), "{text}");
    // An unknown tenant: AADSTS90002.
    let mut other = resolved.clone();
    other.manifest.auth.token_url = Some(format!(
        "{}/00000000-0000-0000-0000-000000000000/oauth2/v2.0/token",
        e.sb.base_url
    ));
    let graph = Graph::new(&other, &context(e.dir.path())).unwrap();
    let text = graph.probe().await.unwrap_err().to_string();
    assert!(text.contains("AADSTS90002"), "{text}");
}

#[tokio::test]
async fn the_certificate_signs_a_client_assertion_named_by_x5t() {
    let e = env_with(0, "", |r| {
        r.manifest.auth.client_secret_file = None;
        r.manifest.auth.key_file = Some("graph-demo.key.pem".into());
        r.manifest.auth.certificate_file = Some("graph-demo.cert.pem".into());
    })
    .await;
    found(&e.graph, "dana.whitfield@example.com").await;
    // Without the certificate, the assertion names none: AADSTS700027.
    let mut r = demo_connector(&e.sb, e.dir.path(), "microsoft-graph", "");
    r.manifest.auth.client_secret_file = None;
    r.manifest.auth.key_file = Some("graph-demo.key.pem".into());
    let graph = Graph::new(&r, &context(e.dir.path())).unwrap();
    let text = graph.probe().await.unwrap_err().to_string();
    assert!(text.contains("AADSTS700027"), "{text}");
}

/// Microsoft's own sign-in library (MSAL for Python, unmodified: client
/// secret, certificate with `x5t#S256`/PS256 and with `x5t`/RS256) and the
/// documented Graph calls made with `requests` run an offboarding against
/// the twin; only the transport is pointed at the sandbox.
/// `.ci/run` installs the package; see tests/clients/graph_client.py.
#[tokio::test]
async fn microsofts_own_python_sign_in_library_and_graph_calls_run_an_offboarding() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let probe = tokio::process::Command::new("python3")
        .args(["-c", "import msal, requests, cryptography"])
        .output()
        .await;
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs python3 with msal (pip install msal): {probe:?}"
    );
    let sb = offboard::sandbox::start(Options {
        faults: common::quick(200),
        ..Options::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    offboard::sandbox::write_demo_keys(dir.path()).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("python3")
            .arg(root.join("tests/clients/graph_client.py"))
            .args(["--base-url", &sb.base_url])
            .args(["--tenant", offboard::apps::graph::twin::DEMO_TENANT_ID])
            .args(["--client-id", offboard::apps::graph::twin::DEMO_CLIENT_ID])
            .arg("--secret-file")
            .arg(dir.path().join("graph-client-secret"))
            .arg("--key-file")
            .arg(dir.path().join("graph-demo.key.pem"))
            .arg("--cert-file")
            .arg(dir.path().join("graph-demo.cert.pem"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the client finishes")
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("every step confirmed"), "{text}");
    // The twin saw the leaver closed.
    let st = twin_state(&sb).await;
    let marcus = st["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["upn"] == "marcus.reyes@example.com")
        .unwrap();
    assert_eq!(marcus["enabled"], false);
}

#[tokio::test]
async fn every_account_is_listed_across_pages_for_the_sweep() {
    let e = env(0).await;
    settings(&e.sb, json!({"max_page": 40})).await;
    let all = e.graph.list_accounts().await.unwrap();
    // The demo company but the Slack-only guest.
    assert_eq!(all.len(), 299);
    assert!(all.iter().any(|a| a.account.login == "achen@example.com"));
    assert!(e.log.count(&["\"GET\"", "/v1.0/users", "%24skiptoken"]) >= 7);
}
