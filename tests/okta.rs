//! The Okta driver against the sandbox's Okta twin, over HTTP: lookup,
//! every grant kind and its removal, refusals of what a group holds,
//! asynchronous deactivation, paging by `Link`, rate-limit pacing and 429
//! `E0000047`, and both sign-ins (SSWS API token, OAuth private_key_jwt).

mod common;

use common::driver::{
    AccessLog, context, context_with_notices, demo_connector, found, logged_sandbox, of_kind,
};

use std::time::{Duration, Instant};

use offboard::apps::okta::driver::Okta;
use offboard::connector::http::HttpNotice;
use offboard::connector::{
    Connector, ConnectorError, Lookup, Presence, ResolvedConnector, RevokeOutcome,
};
use offboard::model::{Account, Grant, GrantKind, Person};
use offboard::sandbox::Running;

struct Env {
    sb: Running,
    okta: Okta,
    log: AccessLog,
    dir: tempfile::TempDir,
}

async fn env_with(
    consistency_ms: u64,
    extra: &str,
    tweak: impl FnOnce(&mut ResolvedConnector),
) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let (sb, log, mut resolved) = logged_sandbox(dir.path(), consistency_ms, "okta", extra).await;
    tweak(&mut resolved);
    let okta = Okta::new(&resolved, &context(dir.path())).unwrap();
    Env { sb, okta, log, dir }
}

async fn env(consistency_ms: u64) -> Env {
    env_with(consistency_ms, "", |_| {}).await
}

async fn put(sb: &Running, path: &str, body: serde_json::Value) -> serde_json::Value {
    let r = reqwest::Client::new()
        .request(
            if path.ends_with("/users") {
                reqwest::Method::POST
            } else {
                reqwest::Method::PUT
            },
            format!("{}{path}", sb.base_url),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

async fn twin_state(sb: &Running) -> serde_json::Value {
    reqwest::get(format!("{}/_sandbox/okta/state", sb.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn by_prefix<'a>(grants: &'a [Grant], prefix: &str) -> Vec<&'a Grant> {
    grants.iter().filter(|g| g.id.starts_with(prefix)).collect()
}

async fn listed(c: &Okta, a: &Account) -> Vec<Grant> {
    let inv = c.list_grants(a).await;
    assert!(inv.failed.is_empty(), "{:?}", inv.failed);
    inv.grants
}

async fn wait_absent(c: &Okta, a: &Account, grants: &[Grant]) {
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
async fn lookup_by_login_then_case_insensitive_search_never_filter() {
    let e = env(300).await;
    let dana = found(&e.okta, "dana.whitfield@example.com").await;
    assert_eq!(dana.login, "dana.whitfield@example.com");
    assert!(dana.active);
    // Alex signs in as achen@; the profile email is Alex.Chen@Example.com.
    let alex = found(&e.okta, "alex.chen@example.com").await;
    assert_eq!(alex.login, "achen@example.com");
    assert_eq!(alex.addresses, vec!["alex.chen@example.com".to_string()]);
    let text = e.log.text();
    assert!(text.contains("search=profile.email+eq"), "{text}");
    assert!(!text.contains("filter="), "never filter for email: {text}");
    // The guest exists only in Slack.
    assert_eq!(
        e.okta
            .find_person(&Person::new("sam.okafor@partner.example.net"))
            .await
            .unwrap(),
        Lookup::NotFound
    );
    // A login with path characters is one percent-encoded segment.
    let _ = e
        .okta
        .find_person(&Person::new("a/b?c@example.com"))
        .await
        .unwrap();
    assert!(e.log.text().contains("/api/v1/users/a%2Fb%3Fc@example.com"));
    // `search` lags behind changes: a user created now is found by it only
    // after the twin's consistency delay.
    put(
        &e.sb,
        "/_sandbox/okta/users",
        serde_json::json!({"login": "jdoe", "email": "jane.doe@example.com", "first": "Jane", "last": "Doe"}),
    )
    .await;
    assert_eq!(
        e.okta
            .find_person(&Person::new("jane.doe@example.com"))
            .await
            .unwrap(),
        Lookup::NotFound
    );
    common::wait_for(
        Duration::from_secs(5),
        "search index catches up",
        || async {
            matches!(
                e.okta
                    .find_person(&Person::new("Jane.Doe@example.com"))
                    .await,
                Ok(Lookup::Found { .. })
            )
            .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn urgent_termination_every_operation_verified_by_fresh_reads() {
    let e = env(300).await;
    let marcus = found(&e.okta, "marcus.reyes@example.com").await;
    let grants = listed(&e.okta, &marcus).await;
    let sessions = by_prefix(&grants, "sessions:");
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].kind, GrantKind::Session);
    assert_eq!(by_prefix(&grants, "grant:").len(), 1, "consent grant");
    assert_eq!(
        by_prefix(&grants, "tokens:").len(),
        2,
        "tokens of two clients"
    );
    assert_eq!(of_kind(&grants, GrantKind::Device).len(), 2, "two factors");
    let roles = of_kind(&grants, GrantKind::AdminRole);
    assert_eq!(roles.len(), 2);
    let direct_role = roles.iter().find(|g| !g.is_manual()).expect("USER role");
    let group_role = roles.iter().find(|g| g.is_manual()).expect("GROUP role");
    assert!(direct_role.label.contains("Organization Administrator"));
    assert!(group_role.label.contains("Help Desk"));
    let groups = of_kind(&grants, GrantKind::Group);
    let everyone = groups
        .iter()
        .find(|g| g.label.contains("Everyone"))
        .unwrap();
    assert!(everyone.is_manual(), "BUILT_IN is manual");
    let it = groups
        .iter()
        .find(|g| g.label.contains("IT Helpdesk"))
        .unwrap();
    assert!(!it.is_manual(), "OKTA_GROUP is removed");
    assert_eq!(group_role.after, vec![it.id.clone()]);
    let apps = of_kind(&grants, GrantKind::License);
    let direct_apps: Vec<_> = apps.iter().filter(|g| !g.is_manual()).collect();
    let group_apps: Vec<_> = apps.iter().filter(|g| g.is_manual()).collect();
    assert_eq!(direct_apps.len(), 2, "Salesforce and GitHub directly");
    assert_eq!(
        group_apps.len(),
        3,
        "Google, Slack (All Staff), AWS (IT Helpdesk)"
    );
    let suspend = by_prefix(&grants, "suspend:");
    assert_eq!(suspend.len(), 1);

    // Revoke everything the API can, phase by phase.
    let mut removed = Vec::new();
    for phase in offboard::model::Phase::ALL {
        for g in grants
            .iter()
            .filter(|g| !g.is_manual() && g.phase() == phase)
        {
            let out = e
                .okta
                .revoke(&marcus, g)
                .await
                .unwrap_or_else(|err| panic!("{}: {err}", g.id));
            if g.kind == GrantKind::Session {
                assert_eq!(out, RevokeOutcome::Acknowledged);
            } else {
                assert_eq!(out, RevokeOutcome::Accepted, "{}", g.id);
                removed.push(g.clone());
            }
        }
    }
    assert!(e.log.text().contains("oauthTokens=true"));
    // No session or refresh token is left (nothing lists sessions).
    let st = twin_state(&e.sb).await;
    assert!(st.get("marcus.reyes@example.com").is_none(), "{st}");
    wait_absent(&e.okta, &marcus, &removed).await;
    // A grant no Okta listing holds is never taken for gone.
    let mut stranger = removed[0].clone();
    stranger.id = "unknown:1".into();
    let r = e.okta.verify(&marcus, &[stranger]).await;
    assert!(r[0].1.is_err(), "{r:?}");
    // The role held through IT Helpdesk went with that membership.
    let gr = (*group_role).clone();
    wait_absent(&e.okta, &marcus, std::slice::from_ref(&gr)).await;
    let u: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/v1/users/{}", e.sb.base_url, marcus.id))
        .header(
            "Authorization",
            format!("SSWS {}", offboard::apps::okta::twin::DEMO_API_TOKEN),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(u["status"], "SUSPENDED");
    // The apps held through the Okta groups went with those memberships.
    let held: Vec<Grant> = group_apps.iter().map(|g| (**g).clone()).collect();
    wait_absent(&e.okta, &marcus, &held).await;
    // Revoking again is idempotent.
    assert_eq!(
        e.okta.revoke(&marcus, suspend[0]).await.unwrap(),
        RevokeOutcome::AlreadyGone
    );
    let consent = removed.iter().find(|g| g.id.starts_with("grant:")).unwrap();
    assert_eq!(
        e.okta.revoke(&marcus, consent).await.unwrap(),
        RevokeOutcome::AlreadyGone
    );
}

#[tokio::test]
async fn what_a_group_holds_refuses_direct_removal_with_oktas_error() {
    let e = env(200).await;
    let marcus = found(&e.okta, "marcus.reyes@example.com").await;
    let grants = listed(&e.okta, &marcus).await;
    let role = of_kind(&grants, GrantKind::AdminRole)
        .into_iter()
        .find(|g| g.is_manual())
        .unwrap()
        .clone();
    match e.okta.revoke(&marcus, &role).await {
        Err(ConnectorError::Refused { code, message, .. }) => {
            assert_eq!(code, "E0000006");
            assert!(message.contains("group"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let app = of_kind(&grants, GrantKind::License)
        .into_iter()
        .find(|g| g.is_manual())
        .unwrap()
        .clone();
    match e.okta.revoke(&marcus, &app).await {
        Err(ConnectorError::Refused { code, manual, .. }) => {
            assert_eq!(code, "E0000090");
            assert!(manual.contains("group"), "{manual}");
        }
        other => panic!("{other:?}"),
    }
    // An Active Directory group and the built-in one cannot be edited.
    let priya = found(&e.okta, "priya.natarajan@example.com").await;
    let pg = listed(&e.okta, &priya).await;
    let ad = of_kind(&pg, GrantKind::Group)
        .into_iter()
        .find(|g| g.label.contains("Active Directory"))
        .unwrap()
        .clone();
    assert!(ad.is_manual());
    match e.okta.revoke(&priya, &ad).await {
        Err(ConnectorError::Refused { code, .. }) => assert_eq!(code, "E0000006"),
        other => panic!("{other:?}"),
    }
    // Still listed: a refusal is never a removal.
    assert_eq!(
        common::driver::presence(&e.okta, &priya, &ad).await,
        Presence::Present
    );
}

#[tokio::test]
async fn contractor_api_token_found_across_link_pages_and_revoked() {
    let e = env_with(200, "\n[connectors.okta.settings]\npage_size = 2\n", |_| {}).await;
    let lena = found(&e.okta, "lena.kowalski@example.com").await;
    let grants = listed(&e.okta, &lena).await;
    let keys = of_kind(&grants, GrantKind::ApiKey);
    assert_eq!(keys.len(), 1, "only her own token among 26");
    assert!(keys[0].label.contains("CI deploy pipeline"));
    // 26 tokens, two a page: every page was read through rel="next".
    assert!(e.log.count(&["/api/v1/api-tokens", "after="]) >= 12);
    let key = keys[0].clone();
    assert_eq!(
        e.okta.revoke(&lena, &key).await.unwrap(),
        RevokeOutcome::Accepted
    );
    assert_eq!(
        common::driver::presence(&e.okta, &lena, &key).await,
        Presence::Present,
        "still listed during the consistency delay"
    );
    wait_absent(&e.okta, &lena, std::slice::from_ref(&key)).await;
}

#[tokio::test]
async fn deactivation_is_asynchronous_and_confirmed_by_status() {
    let e = env_with(
        600,
        "\n[connectors.okta.settings]\nclose = \"deactivate\"\n",
        |_| {},
    )
    .await;
    let dana = found(&e.okta, "dana.whitfield@example.com").await;
    let grants = listed(&e.okta, &dana).await;
    assert!(by_prefix(&grants, "suspend:").is_empty());
    let deact = by_prefix(&grants, "deactivate:")[0].clone();
    assert_eq!(
        e.okta.revoke(&dana, &deact).await.unwrap(),
        RevokeOutcome::Accepted
    );
    assert!(e.log.text().contains("sendEmail=false"));
    // transitioningToStatus: still there until Okta finishes.
    assert_eq!(
        common::driver::presence(&e.okta, &dana, &deact).await,
        Presence::Present
    );
    wait_absent(&e.okta, &dana, std::slice::from_ref(&deact)).await;
    // Okta answers a second deactivation with 404 E0000007: already done.
    assert_eq!(
        e.okta.revoke(&dana, &deact).await.unwrap(),
        RevokeOutcome::AlreadyGone
    );
    // Deactivation deprovisioned every app, the group-held ones too.
    let apps: Vec<Grant> = of_kind(&grants, GrantKind::License)
        .into_iter()
        .cloned()
        .collect();
    assert!(apps.len() >= 3, "{apps:?}");
    wait_absent(&e.okta, &dana, &apps).await;
    let after = listed(&e.okta, &dana).await;
    assert!(of_kind(&after, GrantKind::Session).is_empty());
    // Tom is already suspended: in suspend mode nothing closes him again.
    let e2 = env(100).await;
    let tom = found(&e2.okta, "tom.becker@example.com").await;
    assert!(!tom.active);
    let tg = listed(&e2.okta, &tom).await;
    assert!(of_kind(&tg, GrantKind::Account).is_empty());
    assert!(
        !of_kind(&tg, GrantKind::License).is_empty(),
        "suspension kept his apps"
    );
}

#[tokio::test]
async fn rate_limit_headers_pace_the_client_before_okta_refuses() {
    let e = env_with(100, "\n[connectors.okta.settings]\npage_size = 1\n", |_| {}).await;
    put(
        &e.sb,
        "/_sandbox/okta",
        serde_json::json!({"rate_limit": 8, "window_secs": 1, "force_429": 0}),
    )
    .await;
    let lena = found(&e.okta, "lena.kowalski@example.com").await;
    let started = Instant::now();
    // 26 pages of API tokens, 8 requests a second allowed.
    let inv = e.okta.list_grants(&lena).await;
    assert!(inv.failed.is_empty(), "{:?}", inv.failed);
    assert_eq!(of_kind(&inv.grants, GrantKind::ApiKey).len(), 1);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "paced across windows"
    );
    assert_eq!(
        e.log.count(&["\"status\":429"]),
        0,
        "paced before any refusal: {}",
        e.log.text()
    );
    let stats = e.okta.client_stats();
    assert!(stats.limit_info.unwrap().contains("left this window"));
}

#[tokio::test]
async fn a_429_waits_until_the_windows_reset() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(100).await;
    put(
        &e.sb,
        "/_sandbox/okta",
        serde_json::json!({"rate_limit": 6000, "window_secs": 2, "force_429": 2}),
    )
    .await;
    let resolved = demo_connector(&e.sb, dir.path(), "okta", "");
    let (ctx, mut notices) = context_with_notices(dir.path());
    let okta = Okta::new(&resolved, &ctx).unwrap();
    let a = found(&okta, "dana.whitfield@example.com").await;
    assert_eq!(a.login, "dana.whitfield@example.com");
    assert_eq!(e.log.count(&["\"status\":429"]), 2);
    let mut waits = Vec::new();
    while let Ok(n) = notices.try_recv() {
        if let HttpNotice::RateLimited { wait, .. } = n {
            waits.push(wait);
        }
    }
    assert_eq!(waits.len(), 2, "{waits:?}");
    // Each wait runs to the window's reset (at most its 2 s), not a blind backoff.
    assert!(
        waits.iter().all(|w| *w <= Duration::from_millis(2300)),
        "{waits:?}"
    );
}

#[tokio::test]
async fn a_bad_api_token_is_an_auth_error_in_oktas_words() {
    let e = env(100).await;
    let resolved = demo_connector(&e.sb, e.dir.path(), "okta", "");
    let wrong = e.dir.path().join("wrong-token");
    std::fs::write(&wrong, "00wrong-token-value").unwrap();
    let mut resolved = resolved;
    resolved.manifest.auth.token_file = Some(wrong.display().to_string());
    let okta = Okta::new(&resolved, &context(e.dir.path())).unwrap();
    let err = okta
        .find_person(&Person::new("dana.whitfield@example.com"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ConnectorError::Auth(_)), "{text}");
    assert!(text.contains("E0000011"), "{text}");
    assert!(!text.contains("00wrong-token-value"));
}

fn use_oauth(r: &mut ResolvedConnector, base: &str, key: &std::path::Path, scopes: &[&str]) {
    let a = &mut r.manifest.auth;
    a.flow = Some("client-credentials".into());
    a.token_file = None;
    a.client_id = Some(offboard::apps::okta::twin::DEMO_CLIENT_ID.into());
    a.key_file = Some(key.display().to_string());
    a.token_url = Some(format!("{base}/oauth2/v1/token"));
    if !scopes.is_empty() {
        a.scopes = scopes.iter().map(|s| s.to_string()).collect();
    }
}

#[tokio::test]
async fn oauth_service_app_signs_in_with_private_key_jwt() {
    let e = env(200).await;
    let key = e.dir.path().join("okta-demo.key.pem");
    let mut resolved = demo_connector(&e.sb, e.dir.path(), "okta", "");
    use_oauth(&mut resolved, &e.sb.base_url, &key, &[]);
    let okta = Okta::new(&resolved, &context(e.dir.path())).unwrap();
    let lena = found(&okta, "lena.kowalski@example.com").await;
    let grants = listed(&okta, &lena).await;
    assert_eq!(of_kind(&grants, GrantKind::ApiKey).len(), 1);
    assert!(e.log.count(&["/oauth2/v1/token"]) >= 1);

    // A token without the scope a call needs gets Okta's 403.
    let mut narrow = demo_connector(&e.sb, e.dir.path(), "okta", "");
    use_oauth(&mut narrow, &e.sb.base_url, &key, &["okta.users.read"]);
    let okta = Okta::new(&narrow, &context(e.dir.path())).unwrap();
    let lena = found(&okta, "lena.kowalski@example.com").await;
    let inv = okta.list_grants(&lena).await;
    let err = inv
        .kind_failed(GrantKind::ApiKey)
        .expect("api tokens unreadable");
    assert_eq!(err.code(), Some("E0000006"), "{err}");

    // A key the app does not know is refused at the token endpoint.
    let other = e.dir.path().join("other.key.pem");
    std::fs::write(&other, offboard::apps::salesforce::DEMO_PRIVATE_KEY).unwrap();
    let mut bad = demo_connector(&e.sb, e.dir.path(), "okta", "");
    use_oauth(&mut bad, &e.sb.base_url, &other, &[]);
    let okta = Okta::new(&bad, &context(e.dir.path())).unwrap();
    let err = okta
        .find_person(&Person::new("lena.kowalski@example.com"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid_client"), "{err}");
}

/// Okta's own Python SDK (okta-sdk-python, unmodified) runs an offboarding
/// against the twin, once with an API token (it sends `SSWS{token}`, no
/// space) and once as the OAuth service app (private_key_jwt): lookups by
/// login and `search`, sessions, grants, refresh tokens per client,
/// factors, apps, roles, groups, paging by `Link`, the contractor's API
/// token, suspend and deactivate, and Okta's refusals. The sandbox's own
/// state is checked afterwards. `.ci/run` installs the package; see
/// tests/clients/okta_client.py.
#[tokio::test]
async fn oktas_own_python_sdk_runs_an_offboarding() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let probe = tokio::process::Command::new("python3")
        .args(["-c", "import okta.client, okta.pagination"])
        .output()
        .await;
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs python3 with Okta's SDK (pip install okta): {probe:?}"
    );
    for oauth in [false, true] {
        let e = env(200).await;
        offboard::sandbox::write_demo_keys(e.dir.path()).unwrap();
        let lena = {
            let st = e.sb.state.okta.lock().unwrap();
            let lena = st
                .users
                .iter()
                .find(|u| u.login == "lena.kowalski@example.com");
            lena.unwrap().id.clone()
        };
        let mut cmd = tokio::process::Command::new("python3");
        cmd.arg(root.join("tests/clients/okta_client.py"))
            .arg("--org-url")
            .arg(&e.sb.base_url)
            .kill_on_drop(true);
        if oauth {
            cmd.arg("--private-key")
                .arg(e.dir.path().join("okta-demo.key.pem"))
                .arg("--client-id")
                .arg(offboard::apps::okta::twin::DEMO_CLIENT_ID);
        } else {
            cmd.arg("--token-file")
                .arg(e.dir.path().join("okta-api-token"));
        }
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .expect("the SDK finishes in time")
            .expect("python3 runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "the SDK run failed (oauth: {oauth}):\n{stdout}\n{stderr}"
        );
        assert!(
            stdout.contains("offboarded marcus.reyes@example.com and lena.kowalski@example.com"),
            "{stdout}"
        );
        let text = e.log.text();
        assert_eq!(
            e.log.count(&["/oauth2/v1/token", "\"status\":200"]),
            usize::from(oauth),
            "{text}"
        );
        assert_eq!(e.log.count(&["\"status\":401"]), 0, "{text}");
        for needle in [
            "oauthTokens=true",
            "search=profile.email",
            "after=",
            r#""method":"POST","path":"/api/v1/users/00u00000000000000002/lifecycle/suspend""#,
            "sendEmail=false",
            "/lifecycle/reset_factors",
            r#""method":"DELETE","path":"/api/v1/users/00u00000000000000002/clients/0oaclient0cli/grants""#,
            "/api/v1/groups/",
        ] {
            assert!(text.contains(needle), "{needle} not in the access log");
        }
        let state = twin_state(&e.sb).await;
        let st = e.sb.state.okta.lock().unwrap();
        let marcus = st
            .users
            .iter()
            .find(|u| u.login == "marcus.reyes@example.com")
            .unwrap();
        assert_eq!(marcus.status, "SUSPENDED");
        // Lena: deactivated, then deleted.
        assert!(st.users.iter().all(|u| u.id != lena));
        // Only the BUILT_IN membership stays (Okta refuses to edit it); the
        // group-held role and app went with the OKTA_GROUP memberships.
        assert_eq!(st.held(&marcus.id), vec!["group:Everyone".to_string()]);
        assert!(state.get("marcus.reyes@example.com").is_none(), "{state}");
        let lena_held = st.held(&lena);
        assert!(
            !lena_held.iter().any(|h| h.starts_with("api-token:")
                || h.starts_with("app:")
                || h.starts_with("group:")
                || h.starts_with("factor:")),
            "{lena_held:?}"
        );
    }
}

/// The `Authorization` scheme is matched without regard to case and the
/// space after it is optional (Okta's Python SDK sends none); a wrong
/// token is refused either way.
#[tokio::test]
async fn the_api_token_scheme_is_read_as_okta_sdks_send_it() {
    let e = env(100).await;
    let token = offboard::apps::okta::twin::DEMO_API_TOKEN;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/users/dana.whitfield@example.com", e.sb.base_url);
    for (value, status) in [
        (format!("SSWS {token}"), 200),
        (format!("SSWS{token}"), 200),
        (format!("ssws  {token}"), 200),
        ("SSWS00wrong".to_string(), 401),
        (format!("Basic {token}"), 401),
        ("SSWS".to_string(), 401),
    ] {
        let r = http
            .get(&url)
            .header("authorization", &value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{value}");
        if status == 401 {
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["errorCode"], "E0000011");
        }
    }
}

/// The search index's lag is set on a running sandbox through
/// `PUT /_sandbox/okta` (`search_lag_ms`), apart from the other vendors'
/// consistency delay.
#[tokio::test]
async fn the_search_lag_is_switched_on_the_running_sandbox() {
    let e = env(100).await;
    let settings = put(
        &e.sb,
        "/_sandbox/okta",
        serde_json::json!({"search_lag_ms": 600_000}),
    )
    .await;
    assert_eq!(settings["search_lag_ms"], 600_000);
    put(
        &e.sb,
        "/_sandbox/okta/users",
        serde_json::json!({"login": "kim.lee@example.com", "email": "kim@example.com"}),
    )
    .await;
    // By login it is there at once; by search it is not, long past the
    // sandbox's 100 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kim = e
        .okta
        .find_person(&Person::new("kim@example.com"))
        .await
        .unwrap();
    assert_eq!(kim, Lookup::NotFound);
    put(
        &e.sb,
        "/_sandbox/okta",
        serde_json::json!({"search_lag_ms": 0}),
    )
    .await;
    assert!(matches!(
        e.okta
            .find_person(&Person::new("kim@example.com"))
            .await
            .unwrap(),
        Lookup::Found { .. }
    ));
}
