//! Vendor sign-ins against the sandbox, over HTTP: Slack OAuth v2 (the
//! browser played by the test, `ok:false` errors, token rotation, the
//! driver on the cached token, logout), the Salesforce device flow
//! (pending, slow_down, approval, denial, expiry), `offboard doctor` on the
//! demo config and with withheld scopes, and a search for issued tokens in
//! everything the binary printed or logged.

mod common;

use common::oauth::{ctx, decide_device, issued, settings};

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use offboard::apps::build;
use offboard::apps::salesforce::twin_oauth::{self as salesforce_oauth, CONSUMER_KEY};
use offboard::apps::slack::twin_oauth::{CLIENT_ID, CLIENT_SECRET, PUBLIC_CLIENT_ID};
use offboard::apps::token_source;
use offboard::auth::TokenSource;
use offboard::auth::login::{self, CodeLogin, DeviceLogin, LogoutOutcome};
use offboard::connector::http::shared_reqwest;
use offboard::connector::manifest::{self, ConnectorConfig};
use offboard::connector::{Lookup, ResolvedConnector};
use offboard::model::Person;
use offboard::sandbox::oauth::Settings;
use offboard::sandbox::{Faults, Running};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const SLACK_SCOPES: [&str; 9] = [
    "users:read",
    "users:read.email",
    "usergroups:read",
    "usergroups:write",
    "admin",
    "admin.users:read",
    "admin.users:write",
    "admin.roles:read",
    "admin.roles:write",
];

fn query_param(u: &str, key: &str) -> Option<String> {
    url::Url::parse(u)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// A Slack connector signing in with OAuth v2 against the sandbox.
fn slack(sb: &Running, dir: &Path, client_id: &str, secret: Option<&str>) -> ResolvedConnector {
    offboard::sandbox::write_demo_keys(dir).unwrap();
    let mut cfg = ConnectorConfig {
        manifest: Some("slack".into()),
        enabled: true,
        ..ConnectorConfig::default()
    };
    cfg.api
        .insert("base_url".into(), format!("{}/api/", sb.base_url));
    cfg.api
        .insert("scim_url".into(), format!("{}/scim/v2/", sb.base_url));
    cfg.auth.flow = Some("authorization-code".into());
    cfg.auth.client_id = Some(client_id.into());
    cfg.auth.authorize_url = Some(format!("{}/oauth/v2/authorize", sb.base_url));
    cfg.auth.token_url = Some(format!("{}/api/oauth.v2.access", sb.base_url));
    cfg.auth.revoke_url = Some(format!("{}/api/auth.revoke", sb.base_url));
    if let Some(s) = secret {
        let p = dir.join("slack-client-secret");
        std::fs::write(&p, s).unwrap();
        cfg.auth.client_secret_file = Some(p.display().to_string());
    }
    cfg.auth.scim_token_file = Some(dir.join("slack-scim-token").display().to_string());
    cfg.auth.scim_token_env = Some("OFFBOARD_TEST_UNSET_SLACK_SCIM".into());
    cfg.limits = Some(manifest::Limits {
        requests_per_second: 500.0,
        burst: 500,
        ..Default::default()
    });
    manifest::resolve("slack", &cfg, dir).expect("config resolves")
}

/// Plays the browser on Slack's consent page; returns the redirect.
async fn slack_consent(auth_url: &str, approve: bool) -> String {
    let http = shared_reqwest();
    let page = http.get(auth_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let marker = "name=\"request_id\" value=\"";
    let start = html.find(marker).expect("consent form") + marker.len();
    let request_id = &html[start..start + html[start..].find('"').unwrap()];
    let post = http
        .post(
            url::Url::parse(auth_url)
                .unwrap()
                .join("/oauth/v2/authorize")
                .unwrap(),
        )
        .form(&[
            ("request_id", request_id),
            ("decision", if approve { "approve" } else { "deny" }),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 302);
    post.headers()["location"].to_str().unwrap().to_string()
}

/// Signs in through the loopback redirect, the test playing the browser.
async fn slack_login(r: &ResolvedConnector, data: &Path) -> login::LoginOutcome {
    let (oauth, cache) = offboard::apps::sign_in(r, shared_reqwest(), data).unwrap();
    let code_login = CodeLogin::start(oauth, cache).await.unwrap();
    let url = code_login.url().to_string();
    let redirect = code_login.redirect_uri().to_string();
    let waiting = tokio::spawn(code_login.complete(None::<BufReader<tokio::io::Empty>>));
    let location = slack_consent(&url, true).await;
    assert!(location.starts_with(&redirect), "{location}");
    let back = shared_reqwest().get(&location).send().await.unwrap();
    assert_eq!(back.status(), 200);
    waiting.await.unwrap().expect("login completes")
}

fn cached(data: &Path, file: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(data.join("tokens").join(file)).unwrap();
    serde_json::from_str(&text).unwrap()
}

async fn slack_call(base: &str, method: &str, token: &str) -> serde_json::Value {
    shared_reqwest()
        .get(format!("{base}/api/{method}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn access(base: &str, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let r = shared_reqwest()
        .post(format!("{base}/api/oauth.v2.access"))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn slack_v2_sign_in_and_the_driver_on_the_cached_token() {
    let sb = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let r = slack(&sb, dir.path(), CLIENT_ID, Some(CLIENT_SECRET));

    // The authorization URL asks for user scopes, no bot scope, no PKCE
    // for a confidential app.
    let (oauth, cache) = offboard::apps::sign_in(&r, shared_reqwest(), dir.path()).unwrap();
    let code_login = CodeLogin::start(oauth, cache).await.unwrap();
    let url = code_login.url().to_string();
    assert!(url.starts_with(&format!("{}/oauth/v2/authorize?", sb.base_url)));
    assert_eq!(
        query_param(&url, "user_scope").as_deref(),
        Some(SLACK_SCOPES.join(",").as_str())
    );
    assert_eq!(query_param(&url, "scope"), None);
    assert_eq!(query_param(&url, "client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(query_param(&url, "code_challenge"), None);
    drop(code_login);

    let out = slack_login(&r, dir.path()).await;
    assert_eq!(
        out.scopes,
        Some(SLACK_SCOPES.iter().map(|s| s.to_string()).collect())
    );
    assert!(out.has_refresh_token, "rotation gives a refresh token");
    let mode = std::fs::metadata(&out.cache_path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let c = cached(dir.path(), "slack--default.json");
    let token = c["access_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("xoxe.xoxp-"), "the user token is cached");
    assert_eq!(c["flow"], "authorization-code");

    // The Slack Web API twin accepts it, with the scopes granted.
    let t = slack_call(&sb.base_url, "auth.test", &token).await;
    assert_eq!(t["ok"], true, "{t}");

    // The driver reads through the cached token.
    let conn = build(&r, &ctx(dir.path())).expect("driver builds");
    conn.probe().await.expect("auth.test passes");
    let leaver = offboard::sandbox::tenant::LEAVERS[0].email;
    match conn.find_person(&Person::new(leaver)).await.unwrap() {
        Lookup::Found { .. } => {}
        other => panic!("expected {leaver}, got {other:?}"),
    }
    sb.stop().await;
}

#[tokio::test]
async fn slack_v2_errors_are_refused_by_name() {
    let sb = common::sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let r = slack(&sb, dir.path(), CLIENT_ID, Some(CLIENT_SECRET));

    // A forged code: Slack says invalid_code.
    let (oauth, cache) = offboard::apps::sign_in(&r, shared_reqwest(), dir.path()).unwrap();
    let l = CodeLogin::start(oauth, cache).await.unwrap();
    let state = query_param(l.url().as_str(), "state").unwrap();
    let e = l
        .complete_with_url(&format!(
            "{}?code=forged-code&state={state}",
            "http://127.0.0.1:1/callback"
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("invalid_code"), "{e}");

    // A code obtained for one redirect URI, exchanged with another.
    let (oauth, cache) = offboard::apps::sign_in(&r, shared_reqwest(), dir.path()).unwrap();
    let first = CodeLogin::start(oauth, cache).await.unwrap();
    let location = slack_consent(first.url().as_str(), true).await;
    let code = query_param(&location, "code").unwrap();
    let (oauth, cache) = offboard::apps::sign_in(&r, shared_reqwest(), dir.path()).unwrap();
    let second = CodeLogin::start(oauth, cache).await.unwrap();
    let state = query_param(second.url().as_str(), "state").unwrap();
    let e = second
        .complete_with_url(&format!("/callback?code={code}&state={state}"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad_redirect_uri"), "{e}");
    assert!(!e.contains(&code), "no code in the error: {e}");
    drop(first);

    // The operator cancels on Slack's page.
    let (oauth, cache) = offboard::apps::sign_in(&r, shared_reqwest(), dir.path()).unwrap();
    let l = CodeLogin::start(oauth, cache).await.unwrap();
    let location = slack_consent(l.url().as_str(), false).await;
    let e = l
        .complete_with_url(&location)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("access_denied"), "{e}");

    // A wrong client secret.
    let wrong = slack(&sb, dir.path(), CLIENT_ID, Some("not-the-secret"));
    let (oauth, cache) = offboard::apps::sign_in(&wrong, shared_reqwest(), dir.path()).unwrap();
    let l = CodeLogin::start(oauth, cache).await.unwrap();
    let location = slack_consent(l.url().as_str(), true).await;
    let e = l
        .complete_with_url(&location)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad_client_secret"), "{e}");
    assert!(!e.contains("not-the-secret"), "{e}");
    assert!(
        !dir.path().join("tokens/slack--default.json").exists(),
        "nothing cached after failures"
    );

    // The endpoint's own shapes: HTTP 200 with ok:false.
    let (status, body) = access(&sb.base_url, &[("client_id", "999.999"), ("code", "x")]).await;
    assert_eq!((status, body["ok"].clone()), (200, false.into()));
    assert_eq!(body["error"], "invalid_client_id");
    let (status, body) = access(
        &sb.base_url,
        &[
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("grant_type", "password"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].clone()),
        (200, "invalid_grant_type".into())
    );
    sb.stop().await;
}

#[tokio::test]
async fn slack_v2_token_rotation_renews_and_spends_the_old_refresh_token() {
    let sb = common::sandbox(Faults::default()).await;
    settings(
        &sb,
        Settings {
            access_ttl_secs: 1,
            ..Settings::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let r = slack(&sb, dir.path(), CLIENT_ID, Some(CLIENT_SECRET));
    slack_login(&r, dir.path()).await;
    let first = cached(dir.path(), "slack--default.json");
    let expires_at = first["expires_at"].as_i64().unwrap();
    common::wait_for(
        Duration::from_secs(5),
        "the token to expire",
        || async move { (chrono::Utc::now().timestamp() > expires_at).then_some(()) },
    )
    .await;
    let old = first["access_token"].as_str().unwrap().to_string();
    let t = slack_call(&sb.base_url, "auth.test", &old).await;
    assert_eq!(t["error"], "token_expired", "{t}");

    // The driver renews through oauth.v2.access grant_type=refresh_token.
    let conn = build(&r, &ctx(dir.path())).unwrap();
    conn.probe().await.expect("renewed and accepted");
    let second = cached(dir.path(), "slack--default.json");
    assert_ne!(second["access_token"], first["access_token"]);
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let (_, body) = access(
        &sb.base_url,
        &[
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("grant_type", "refresh_token"),
            ("refresh_token", first["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(body["error"], "invalid_refresh_token", "rotation spent it");

    // A token the API refuses mid-life (token_expired) is renewed once.
    settings(&sb, Settings::default()).await;
    let ts: Arc<dyn TokenSource> = token_source(&r, &ctx(dir.path())).unwrap();
    let before = ts.token().await.unwrap();
    let expire = shared_reqwest()
        .post(format!("{}/_sandbox/oauth/expire", sb.base_url))
        .send()
        .await
        .unwrap();
    assert!(expire.status().is_success());
    let conn = build(&r, &ctx(dir.path())).unwrap();
    conn.probe().await.expect("renewed after token_expired");
    let third = cached(dir.path(), "slack--default.json");
    assert_ne!(third["access_token"].as_str(), Some(before.expose()));
    sb.stop().await;
}

#[tokio::test]
async fn slack_v2_public_app_uses_pkce_and_logout_revokes() {
    let sb = common::sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let r = slack(&sb, dir.path(), PUBLIC_CLIENT_ID, None);
    let (oauth, cache) = offboard::apps::sign_in(&r, shared_reqwest(), dir.path()).unwrap();
    let l = CodeLogin::start(oauth, cache).await.unwrap();
    assert_eq!(
        query_param(l.url().as_str(), "code_challenge_method").as_deref(),
        Some("S256")
    );
    drop(l);
    slack_login(&r, dir.path()).await;
    let token = cached(dir.path(), "slack--default.json")["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        slack_call(&sb.base_url, "auth.test", &token).await["ok"],
        true
    );

    // Slack has no device grant: the message says what to do instead.
    let (oauth, cache) = offboard::apps::sign_in(&r, shared_reqwest(), dir.path()).unwrap();
    let e = DeviceLogin::start(oauth, cache)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("no device sign-in") && e.contains("paste"),
        "{e}"
    );

    let out = offboard::apps::sign_out(&r, shared_reqwest(), dir.path())
        .await
        .unwrap();
    assert_eq!(out.outcome, LogoutOutcome::RevokedAndDeleted);
    assert!(!out.exposed);
    assert!(!dir.path().join("tokens/slack--default.json").exists());
    let t = slack_call(&sb.base_url, "auth.test", &token).await;
    assert_eq!(t["error"], "token_revoked", "{t}");
    sb.stop().await;
}

/// The built-in Salesforce connector signing in with the device flow at
/// the sandbox's login host (token endpoint left to its default).
fn salesforce(sb: &Running, dir: &Path, client_id: &str) -> ResolvedConnector {
    let mut cfg = ConnectorConfig {
        manifest: Some("salesforce".into()),
        enabled: true,
        ..ConnectorConfig::default()
    };
    cfg.api.insert("base_url".into(), sb.base_url.clone());
    cfg.api.insert("login_url".into(), sb.base_url.clone());
    cfg.auth.flow = Some("device-code".into());
    cfg.auth.client_id = Some(client_id.into());
    cfg.auth.scopes = vec!["api".into(), "refresh_token".into()];
    manifest::resolve("salesforce", &cfg, dir).expect("config resolves")
}

#[tokio::test]
async fn salesforce_device_flow_waits_through_pending_and_slow_down() {
    let sb = common::sandbox(Faults::default()).await;
    settings(
        &sb,
        Settings {
            device_interval_secs: 0,
            device_script: vec!["authorization_pending".into(), "slow_down".into()],
            ..Settings::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let r = salesforce(&sb, dir.path(), CONSUMER_KEY);
    let (oauth, cache) = offboard::apps::sign_in(&r, shared_reqwest(), dir.path()).unwrap();
    let device = DeviceLogin::start(oauth, cache).await.unwrap();
    let p = device.prompt().clone();
    assert_eq!(p.verification_uri, format!("{}/setup/connect", sb.base_url));
    assert_eq!(
        p.expires_in,
        Duration::from_secs(600),
        "Salesforce sends no expires_in"
    );
    decide_device(&sb.base_url, "/setup/connect", &p.user_code, true).await;
    let out = device.finish().await.expect("approved");
    assert_eq!(
        out.scopes,
        Some(vec!["api".to_string(), "refresh_token".to_string()])
    );
    assert!(out.has_refresh_token);

    // Two scripted answers, then the approval; slow_down added 5 s.
    let polls = issued(&sb).await["polls"][&p.user_code].clone();
    let ago: Vec<u64> = polls
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(ago.len(), 3, "{ago:?}");
    assert!(ago[1] - ago[2] >= 4_900, "waited after slow_down: {ago:?}");

    let c = cached(dir.path(), "salesforce--default.json");
    assert_eq!(c["instance_url"], sb.base_url.as_str());
    assert_eq!(c["flow"], "device-code");
    let token = c["access_token"].as_str().unwrap().to_string();
    assert!(salesforce_oauth::check_access(&sb.state, &token).is_some());

    // The driver works on the device sign-in: /limits answers.
    let conn = build(&r, &ctx(dir.path())).expect("driver builds");
    conn.probe()
        .await
        .expect("limits read with the device token");
    let info = conn.health().limit_info.expect("Sforce-Limit-Info read");
    assert!(info.contains("/15000"), "{info}");

    // A refused token is renewed with the refresh token (no rotation at
    // Salesforce: the refresh token and instance_url are kept).
    let ts = token_source(&r, &ctx(dir.path())).unwrap();
    let t = ts.token().await.unwrap();
    ts.invalidate(&t).await;
    let renewed = ts.token().await.unwrap();
    assert_ne!(renewed.expose(), token);
    let c2 = cached(dir.path(), "salesforce--default.json");
    assert_eq!(c2["refresh_token"], c["refresh_token"]);
    assert_eq!(c2["instance_url"], sb.base_url.as_str());
    sb.stop().await;
}

#[tokio::test]
async fn salesforce_device_flow_denied_expired_and_unknown_client() {
    let sb = common::sandbox(Faults::default()).await;
    settings(
        &sb,
        Settings {
            device_interval_secs: 0,
            ..Settings::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let r = salesforce(&sb, dir.path(), CONSUMER_KEY);
    let (oauth, cache) = offboard::apps::sign_in(&r, shared_reqwest(), dir.path()).unwrap();
    let device = DeviceLogin::start(oauth, cache).await.unwrap();
    let code = device.prompt().user_code.clone();
    decide_device(&sb.base_url, "/setup/connect", &code, false).await;
    let e = device.finish().await.unwrap_err().to_string();
    assert!(e.contains("access_denied"), "{e}");

    settings(
        &sb,
        Settings {
            device_interval_secs: 1,
            device_ttl_secs: 1,
            ..Settings::default()
        },
    )
    .await;
    let (oauth, cache) = offboard::apps::sign_in(&r, shared_reqwest(), dir.path()).unwrap();
    let device = DeviceLogin::start(oauth, cache).await.unwrap();
    let e = device.finish().await.unwrap_err().to_string();
    assert!(e.contains("expired_token"), "{e}");

    let other = salesforce(&sb, dir.path(), "3MVG9unknown");
    let (oauth, cache) = offboard::apps::sign_in(&other, shared_reqwest(), dir.path()).unwrap();
    let e = DeviceLogin::start(oauth, cache)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("invalid_client_id"), "{e}");
    assert!(!dir.path().join("tokens/salesforce--default.json").exists());
    sb.stop().await;
}

/// Runs the real binary against the demo config: doctor passes; a Slack
/// sign-in (paste-back) with a withheld scope and a Google scope without
/// delegation make it fail, naming the scope; no token the sandbox issued
/// appears in any output or the log.
#[tokio::test]
async fn doctor_on_the_demo_config_and_with_withheld_scopes() {
    let sb = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let demo = common::write_config(dir.path(), &sb.base_url);
    let demo_text = std::fs::read_to_string(&demo).unwrap();
    let secret = dir.path().join("slack-client-secret");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    let static_line = format!(
        "token_file = \"{}\"\n",
        dir.path().join("slack-user-token").display()
    );
    assert!(demo_text.contains(&static_line));
    let oauth_text = demo_text.replace(
        &static_line,
        &format!(
            "flow = \"authorization-code\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret_file = \"{}\"\nauthorize_url = \"{b}/oauth/v2/authorize\"\ntoken_url = \"{b}/api/oauth.v2.access\"\nrevoke_url = \"{b}/api/auth.revoke\"\n",
            secret.display(),
            b = sb.base_url
        ),
    );
    // A fixed redirect port, as a registered Slack redirect URL needs.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let oauth_text = format!("{oauth_text}\n[connectors.slack.settings]\nredirect_port = {port}\n");
    let oauth_cfg = dir.path().join("oauth.toml");
    std::fs::write(&oauth_cfg, oauth_text).unwrap();
    let cmd = |config: &Path, args: &[&str]| {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"));
        c.args(args)
            .env("OFFBOARD_CONFIG", config)
            .env("OFFBOARD_DATA", &data)
            .env("OFFBOARD_LOG", "trace")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    };
    let mut outputs = String::new();
    let run = |config: std::path::PathBuf, args: Vec<&'static str>| {
        let mut c = cmd(&config, &args);
        async move {
            let out = c.output().await.unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.code(), text)
        }
    };

    // The demo config as `offboard sandbox` writes it: every check passes.
    let (code, text) = run(demo.clone(), vec!["doctor"]).await;
    outputs.push_str(&text);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(text.matches("[ok  ] api").count(), 8, "{text}");
    assert!(text.contains("[ok  ] rate limit   API requests "), "{text}");
    assert!(!text.contains("FAIL"), "{text}");

    // Slack signed in with OAuth v2, one admin scope withheld.
    settings(
        &sb,
        Settings {
            withhold_scopes: vec!["admin.users:write".into()],
            ..Settings::default()
        },
    )
    .await;
    let mut child = cmd(&oauth_cfg, &["login", "slack", "--no-browser"])
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut url = None;
    while url.is_none() {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).await.unwrap() > 0,
            "login ended early: {outputs}"
        );
        outputs.push_str(&line);
        if let Some(i) = line
            .find("http")
            .filter(|_| line.contains("/oauth/v2/authorize?"))
        {
            url = Some(line[i..].trim().to_string());
        }
    }
    let url = url.unwrap();
    assert_eq!(
        query_param(&url, "redirect_uri"),
        Some(format!("http://127.0.0.1:{port}/callback"))
    );
    let location = slack_consent(&url, true).await;
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{location}\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let mut rest = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut rest)
        .await
        .unwrap();
    outputs.push_str(&rest);
    let out = child.wait_with_output().await.unwrap();
    outputs.push_str(&String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{outputs}");
    assert!(rest.contains("Signed in to `slack`"), "{rest}");

    let (code, text) = run(oauth_cfg.clone(), vec!["doctor"]).await;
    outputs.push_str(&text);
    assert_eq!(code, Some(3), "{text}");
    let slack_part = &text[text.find("slack (Slack, authorization-code)").expect(&text)..];
    assert!(
        slack_part.contains("[FAIL] scopes       missing: admin.users:write"),
        "{text}"
    );
    assert!(
        slack_part.contains("lacks scopes: admin.users:write"),
        "{text}"
    );

    // Google: a scope without domain-wide delegation is named.
    let licensing = "https://www.googleapis.com/auth/apps.licensing";
    settings(
        &sb,
        Settings {
            withhold_scopes: vec![licensing.into()],
            ..Settings::default()
        },
    )
    .await;
    let (code, text) = run(demo.clone(), vec!["doctor"]).await;
    outputs.push_str(&text);
    assert_eq!(code, Some(3), "{text}");
    assert!(
        text.contains(&format!(
            "not authorised for domain-wide delegation: {licensing}"
        )),
        "{text}"
    );

    // Signed out, doctor names the missing sign-in.
    settings(&sb, Settings::default()).await;
    let (code, text) = run(oauth_cfg.clone(), vec!["logout", "slack"]).await;
    outputs.push_str(&text);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = run(oauth_cfg.clone(), vec!["doctor"]).await;
    outputs.push_str(&text);
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("not signed in to `slack`"), "{text}");

    // A credential file gone: named.
    std::fs::remove_file(dir.path().join("slack-user-token")).unwrap();
    let (code, text) = run(demo.clone(), vec!["doctor"]).await;
    outputs.push_str(&text);
    assert_eq!(code, Some(3), "{text}");
    let slack_part = &text[text.find("slack (Slack, static)").expect(&text)..];
    assert!(
        slack_part.contains("[FAIL] credentials") && slack_part.contains("slack-user-token"),
        "{text}"
    );

    // No token, code or secret in anything printed or logged.
    let log = std::fs::read_to_string(data.join("offboard.log")).unwrap_or_default();
    assert!(
        log.contains("signed in"),
        "the log records the sign-in: {log}"
    );
    let all = format!("{outputs}\n{log}");
    let mut secrets: Vec<String> = issued(&sb).await["issued"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(secrets.iter().any(|s| s.starts_with("xoxe.xoxp-")));
    secrets.extend([
        CLIENT_SECRET.to_string(),
        offboard::apps::slack::twin::DEMO_USER_TOKEN.to_string(),
        offboard::apps::slack::twin::DEMO_SCIM_TOKEN.to_string(),
    ]);
    for s in &secrets {
        assert!(!all.contains(s.as_str()), "leaked {s} in:\n{all}");
    }
    assert!(!all.contains("ya29."), "a Google token leaked:\n{all}");
    sb.stop().await;
}

/// The Google twin grants what the assertion asked for and refuses calls
/// whose scope was not asked for (403 insufficientPermissions).
#[tokio::test]
async fn google_calls_need_their_scopes() {
    let sb = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    offboard::sandbox::write_demo_keys(dir.path()).unwrap();
    let mut cfg = ConnectorConfig {
        manifest: Some("google-workspace".into()),
        enabled: true,
        ..ConnectorConfig::default()
    };
    cfg.api.insert("base_url".into(), sb.base_url.clone());
    cfg.api.insert("licensing_url".into(), sb.base_url.clone());
    cfg.auth.token_url = Some(format!("{}/token", sb.base_url));
    cfg.auth.key_file = Some(
        dir.path()
            .join("google-service-account.json")
            .display()
            .to_string(),
    );
    cfg.auth.subject = Some(offboard::sandbox::DEMO_ADMIN.into());
    cfg.auth.scopes = vec!["https://www.googleapis.com/auth/admin.directory.user".into()];
    let r = manifest::resolve("google", &cfg, dir.path()).unwrap();
    let conn = build(&r, &ctx(dir.path())).unwrap();
    conn.probe()
        .await
        .expect("users.get needs only admin.directory.user");
    let leaver = offboard::sandbox::tenant::LEAVERS[0].email;
    let Lookup::Found { account } = conn.find_person(&Person::new(leaver)).await.unwrap() else {
        panic!("{leaver} not found");
    };
    let inv = conn.list_grants(&account).await;
    assert!(!inv.failed.is_empty(), "security listings need more scopes");
    for (kind, e) in &inv.failed {
        assert!(
            e.to_string().contains("insufficient"),
            "{kind:?} failed for another reason: {e}"
        );
    }
    sb.stop().await;
}

/// Salesforce `device-code` with a standard device authorization endpoint
/// (`device_url`) uses the standard RFC 8628 request there, and polls the
/// token endpoint the standard way.
#[tokio::test]
async fn salesforce_device_flow_with_a_standard_device_url_is_rfc_8628() {
    let sb = common::sandbox(Faults::default()).await;
    settings(
        &sb,
        Settings {
            device_interval_secs: 0,
            ..Settings::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ConnectorConfig {
        manifest: Some("salesforce".into()),
        enabled: true,
        ..ConnectorConfig::default()
    };
    cfg.api.insert("base_url".into(), sb.base_url.clone());
    cfg.api.insert("login_url".into(), sb.base_url.clone());
    cfg.auth.flow = Some("device-code".into());
    cfg.auth.client_id = Some(offboard::sandbox::oauth::PUBLIC_CLIENT.into());
    cfg.auth.device_url = Some(format!("{}/oauth2/device/authorize", sb.base_url));
    cfg.auth.token_url = Some(format!("{}/oauth2/token", sb.base_url));
    cfg.auth.scopes = vec!["api".into(), "refresh_token".into()];
    let r = manifest::resolve("salesforce", &cfg, dir.path()).expect("config resolves");
    let (oauth, cache) = offboard::apps::sign_in(&r, shared_reqwest(), dir.path()).unwrap();
    let device = DeviceLogin::start(oauth, cache)
        .await
        .expect("the standard device request is accepted");
    let p = device.prompt().clone();
    assert_eq!(p.verification_uri, format!("{}/oauth2/device", sb.base_url));
    assert!(p.verification_uri_complete.is_some(), "RFC 8628 §3.3.1");
    decide_device(&sb.base_url, "/oauth2/device", &p.user_code, true).await;
    let out = device.finish().await.expect("approved");
    assert!(out.has_refresh_token);
    let c = cached(dir.path(), "salesforce--default.json");
    let token = c["access_token"].as_str().unwrap();
    let me = shared_reqwest()
        .get(format!("{}/oauth2/userinfo", sb.base_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200, "a token of the standard server");
    sb.stop().await;
}

/// A sign-in method the driver does not use is a config error naming the
/// key, before anything is sent: not a sign-in that "succeeds" and is
/// then never used.
#[tokio::test]
async fn login_with_a_flow_the_driver_does_not_use_is_a_config_error() {
    let sb = common::sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let demo = common::write_config(dir.path(), &sb.base_url);
    let text = std::fs::read_to_string(&demo).unwrap();
    let google_auth = "[connectors.google.auth]\n";
    assert!(text.contains(google_auth));
    std::fs::write(
        &demo,
        text.replace(
            google_auth,
            &format!(
                "{google_auth}flow = \"authorization-code\"\nclient_id = \"{}\"\nauthorize_url = \"{b}/oauth2/authorize\"\n",
                offboard::sandbox::oauth::PUBLIC_CLIENT,
                b = sb.base_url
            ),
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["login", "google", "--no-browser"])
        .env("OFFBOARD_CONFIG", &demo)
        .env("OFFBOARD_DATA", dir.path().join("data"))
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("connectors.google.auth.flow")
            && stderr.contains("jwt-bearer")
            && stderr.contains("authorization-code"),
        "{stderr}"
    );
    assert!(
        !stdout.contains("/oauth2/authorize"),
        "no sign-in started: {stdout}"
    );
    assert!(!dir.path().join("data/tokens").exists());
    sb.stop().await;
}

/// Three `offboard scan` processes start on one expired Slack sign-in with
/// token rotation (each refresh spends the refresh token it used), the
/// token endpoint slow enough that they overlap: they take turns renewing
/// under the cache entry's lock, so none sends a spent refresh token and
/// all three read Slack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_scans_on_one_expired_slack_sign_in_all_read_slack() {
    let sb = common::sandbox(common::quick(200)).await;
    settings(
        &sb,
        Settings {
            access_ttl_secs: 1,
            ..Settings::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let demo = common::write_config(dir.path(), &sb.base_url);
    let text = std::fs::read_to_string(&demo).unwrap();
    let secret = dir.path().join("slack-client-secret");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    let static_line = format!(
        "token_file = \"{}\"\n",
        dir.path().join("slack-user-token").display()
    );
    assert!(text.contains(&static_line));
    std::fs::write(
        &demo,
        text.replace(
            &static_line,
            &format!(
                "flow = \"authorization-code\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret_file = \"{}\"\nauthorize_url = \"{b}/oauth/v2/authorize\"\ntoken_url = \"{b}/api/oauth.v2.access\"\nrevoke_url = \"{b}/api/auth.revoke\"\n",
                secret.display(),
                b = sb.base_url
            ),
        ),
    )
    .unwrap();
    let r = offboard::config::load(&demo)
        .unwrap()
        .connectors()
        .unwrap()
        .into_iter()
        .find(|c| c.id == "slack")
        .unwrap();
    slack_login(&r, &data).await;
    let first = cached(&data, "slack--default.json");
    let expires_at = first["expires_at"].as_i64().unwrap();
    common::wait_for(
        Duration::from_secs(5),
        "the access token to expire",
        || async move { (chrono::Utc::now().timestamp() > expires_at).then_some(()) },
    )
    .await;
    settings(&sb, Settings::default()).await;
    let faults = Faults {
        consistency_ms: 200,
        latency_ms: 400,
        path_prefix: Some("/api/oauth.v2.access".into()),
        ..Faults::default()
    };
    let put = shared_reqwest()
        .put(format!("{}/_sandbox/faults", sb.base_url))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());

    let runs = (0..3).map(|_| {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"));
        c.args([
            "scan",
            "dana.whitfield@example.com",
            "--app",
            "slack",
            "--json",
        ])
        .env("OFFBOARD_CONFIG", &demo)
        .env("OFFBOARD_DATA", &data)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
        async move { c.output().await.unwrap() }
    });
    for out in futures::future::join_all(runs).await {
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        let v: serde_json::Value =
            serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("json: {stdout}\n{stderr}"));
        let slack = v["apps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["app"] == "slack")
            .unwrap();
        assert_eq!(slack["status"], "found", "{slack}\n{stderr}");
    }
    let now = cached(&data, "slack--default.json");
    assert_ne!(now["refresh_token"], first["refresh_token"], "renewed");
    // The renewed sign-in still renews: nothing was spent twice.
    let (_, body) = access(
        &sb.base_url,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", now["refresh_token"].as_str().unwrap()),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ],
    )
    .await;
    assert_eq!(body["ok"], true, "{body}");
    sb.stop().await;
}
