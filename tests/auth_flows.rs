//! Every OAuth flow end to end against the sandbox's authorization server,
//! over HTTP: authorization code + PKCE (loopback and paste-back), device
//! grant, client credentials, refresh (expiry and 401, with rotation),
//! revocation at logout, the 0600 cache rule, and a search for leaked tokens
//! after a full run of the real binary.

mod common;

use common::oauth::{consent, ctx, decide_device, issued, settings};

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use offboard::apps::token_source;
use offboard::auth::TokenSource;
use offboard::auth::login::{self, CodeLogin, DeviceLogin, LogoutOutcome};
use offboard::connector::http::{ApiClient, DefaultPolicy, HttpSettings, shared_reqwest};
use offboard::connector::manifest::parse_manifest;
use offboard::connector::{ConnectorError, ResolvedConnector};
use offboard::sandbox::Faults;
use offboard::sandbox::oauth::{CONFIDENTIAL_CLIENT, PUBLIC_CLIENT, Settings};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const SCOPES: &str = r#"["directory.read", "directory.write"]"#;

fn manifest_text(base: &str, flow: &str, client_id: &str, extra: &str) -> String {
    format!(
        r#"id = "oauth-test"
display_name = "OAuth test app"
driver = "oauth-test"

[api]
base_url = "{base}"

[auth]
flow = "{flow}"
token_url = "{base}/oauth2/token"
authorize_url = "{base}/oauth2/authorize"
device_url = "{base}/oauth2/device/authorize"
revoke_url = "{base}/oauth2/revoke"
client_id = "{client_id}"
scopes = {SCOPES}
{extra}
"#
    )
}

fn resolved(base: &str, flow: &str, client_id: &str, extra: &str, dir: &Path) -> ResolvedConnector {
    let manifest = parse_manifest(&manifest_text(base, flow, client_id, extra), "test").unwrap();
    ResolvedConnector {
        id: "app".into(),
        manifest,
        config_dir: dir.to_path_buf(),
    }
}

/// Plays the browser: opens the consent page, approves (or denies) by
/// POSTing its form, and returns the redirect's Location.
fn query_param(u: &str, key: &str) -> Option<String> {
    url::Url::parse(u)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

async fn userinfo(
    base: &str,
    ts: Arc<dyn TokenSource>,
) -> Result<serde_json::Value, ConnectorError> {
    let base_url = url::Url::parse(base).unwrap();
    let client = ApiClient::new(
        shared_reqwest(),
        HttpSettings::new("app"),
        std::slice::from_ref(&base_url),
        Some(ts),
        Arc::new(DefaultPolicy),
        None,
    );
    client
        .get_json(client.url(&base_url, &["oauth2", "userinfo"]).unwrap())
        .await
}

/// Signs in through the loopback redirect, the test playing the browser.
async fn login_loopback(r: &ResolvedConnector, data: &Path) -> login::LoginOutcome {
    let (oauth, cache) = offboard::apps::sign_in(r, shared_reqwest(), data).unwrap();
    let code_login = CodeLogin::start(oauth, cache).await.unwrap();
    let url = code_login.url().to_string();
    assert_eq!(
        query_param(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(query_param(&url, "state").is_some());
    let redirect = code_login.redirect_uri().to_string();
    assert!(redirect.starts_with("http://127.0.0.1:"), "{redirect}");
    let waiting = tokio::spawn(code_login.complete(None::<BufReader<tokio::io::Empty>>));
    let location = consent(&url, true).await;
    assert!(location.starts_with(&redirect), "{location}");
    let back = shared_reqwest().get(&location).send().await.unwrap();
    assert_eq!(back.status(), 200);
    waiting.await.unwrap().expect("login completes")
}

async fn refresh_with(base: &str, rt: &str) -> reqwest::StatusCode {
    shared_reqwest()
        .post(format!("{base}/oauth2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", PUBLIC_CLIENT),
        ])
        .send()
        .await
        .unwrap()
        .status()
}

fn cached(data: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(data.join("tokens/app--default.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn authorization_code_with_pkce_through_the_loopback_redirect() {
    let sb = common::sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let r = resolved(
        &sb.base_url,
        "authorization-code",
        PUBLIC_CLIENT,
        "",
        dir.path(),
    );
    let out = login_loopback(&r, dir.path()).await;
    assert_eq!(
        out.scopes,
        Some(vec![
            "directory.read".to_string(),
            "directory.write".to_string()
        ])
    );
    assert!(out.has_refresh_token);
    let mode = std::fs::metadata(&out.cache_path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let ts = token_source(&r, &ctx(dir.path())).unwrap();
    let me = userinfo(&sb.base_url, ts.clone()).await.unwrap();
    assert_eq!(me["client_id"], PUBLIC_CLIENT);
    assert_eq!(ts.granted_scopes().unwrap().len(), 2);
    sb.stop().await;
}

#[tokio::test]
async fn redirected_url_pasted_back_completes_the_sign_in() {
    let sb = common::sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let r = resolved(
        &sb.base_url,
        "authorization-code",
        PUBLIC_CLIENT,
        "",
        dir.path(),
    );
    let (oauth, cache) = offboard::apps::sign_in(&r, shared_reqwest(), dir.path()).unwrap();
    let code_login = CodeLogin::start(oauth, cache).await.unwrap();
    // The browser is elsewhere: the redirect never reaches the listener.
    let location = consent(code_login.url().as_str(), true).await;
    let pasted = format!("\n  {location}  \n");
    let out = code_login
        .complete(Some(BufReader::new(std::io::Cursor::new(
            pasted.into_bytes(),
        ))))
        .await
        .unwrap();
    assert!(out.cache_path.exists());
    let ts = token_source(&r, &ctx(dir.path())).unwrap();
    userinfo(&sb.base_url, ts).await.unwrap();
    sb.stop().await;
}

#[tokio::test]
async fn state_mismatch_and_denial_are_refused() {
    let sb = common::sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let r = resolved(
        &sb.base_url,
        "authorization-code",
        PUBLIC_CLIENT,
        "",
        dir.path(),
    );

    // Pasted URL with another state.
    let (oauth, cache) = offboard::apps::sign_in(&r, shared_reqwest(), dir.path()).unwrap();
    let code_login = CodeLogin::start(oauth, cache).await.unwrap();
    let location = consent(code_login.url().as_str(), true).await;
    let state = query_param(&location, "state").unwrap();
    let forged = location.replace(&format!("state={state}"), "state=forged");
    let e = code_login.complete_with_url(&forged).await.unwrap_err();
    assert!(e.to_string().contains("state does not match"), "{e}");

    // Redirect on the loopback listener with another state.
    let (oauth, cache) = offboard::apps::sign_in(&r, shared_reqwest(), dir.path()).unwrap();
    let code_login = CodeLogin::start(oauth, cache).await.unwrap();
    let url = code_login.url().to_string();
    let waiting = tokio::spawn(code_login.complete(None::<BufReader<tokio::io::Empty>>));
    let location = consent(&url, true).await;
    let state = query_param(&location, "state").unwrap();
    let forged = location.replace(&format!("state={state}"), "state=forged");
    let back = shared_reqwest().get(&forged).send().await.unwrap();
    assert_eq!(back.status(), 400);
    // A forged redirect neither ends nor decides the sign-in: the real one
    // still completes it.
    assert!(!waiting.is_finished());
    let back = shared_reqwest().get(&location).send().await.unwrap();
    assert_eq!(back.status(), 200);
    waiting.await.unwrap().unwrap();
    std::fs::remove_file(dir.path().join("tokens/app--default.json")).unwrap();

    // The operator denies consent.
    let (oauth, cache) = offboard::apps::sign_in(&r, shared_reqwest(), dir.path()).unwrap();
    let code_login = CodeLogin::start(oauth, cache).await.unwrap();
    let location = consent(code_login.url().as_str(), false).await;
    let e = code_login.complete_with_url(&location).await.unwrap_err();
    assert!(e.to_string().contains("access_denied"), "{e}");

    assert!(!dir.path().join("tokens/app--default.json").exists());
    sb.stop().await;
}

#[tokio::test]
async fn pkce_with_a_wrong_verifier_is_refused() {
    let sb = common::sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let r = resolved(
        &sb.base_url,
        "authorization-code",
        PUBLIC_CLIENT,
        "",
        dir.path(),
    );
    let (oauth, _) = offboard::apps::sign_in(&r, shared_reqwest(), dir.path()).unwrap();
    let redirect = "http://127.0.0.1:9/callback";
    let first = oauth.authorize(redirect).unwrap();
    let other = oauth.authorize(redirect).unwrap();
    let location = consent(first.url.as_str(), true).await;
    let code = login::parse_redirect(&location, &first).unwrap();
    // Exchanged with another request's verifier: the challenge does not match.
    let e = oauth.exchange_code(other, &code).await.unwrap_err();
    assert!(e.to_string().contains("invalid_grant"), "{e}");
    assert!(e.to_string().contains("PKCE"), "{e}");

    // And with no verifier at all, over raw HTTP.
    let second = oauth.authorize(redirect).unwrap();
    let location = consent(second.url.as_str(), true).await;
    let code = query_param(&location, "code").unwrap();
    let resp = shared_reqwest()
        .post(format!("{}/oauth2/token", sb.base_url))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("client_id", PUBLIC_CLIENT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    sb.stop().await;
}

#[tokio::test]
async fn device_flow_waits_through_pending_and_slow_down() {
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
    let r = resolved(&sb.base_url, "device-code", PUBLIC_CLIENT, "", dir.path());
    let (oauth, cache) = offboard::apps::sign_in(&r, shared_reqwest(), dir.path()).unwrap();
    let device = DeviceLogin::start(oauth, cache).await.unwrap();
    let p = device.prompt().clone();
    assert_eq!(p.user_code.len(), 9);
    assert_eq!(p.verification_uri, format!("{}/oauth2/device", sb.base_url));
    assert!(
        p.verification_uri_complete
            .as_deref()
            .unwrap()
            .ends_with(&p.user_code)
    );
    decide_device(&sb.base_url, "/oauth2/device", &p.user_code, true).await;
    let out = device.finish().await.unwrap();
    assert!(out.has_refresh_token);

    // Three polls: pending, slow_down, then success at least 5 s later.
    let info = issued(&sb).await;
    let polls: Vec<u64> = serde_json::from_value(info["polls"][&p.user_code].clone()).unwrap();
    assert_eq!(polls.len(), 3, "{polls:?}");
    assert!(polls[1] - polls[2] >= 4_900, "{polls:?}");
    let ts = token_source(&r, &ctx(dir.path())).unwrap();
    userinfo(&sb.base_url, ts).await.unwrap();
    sb.stop().await;
}

#[tokio::test]
async fn device_flow_denied_and_expired() {
    let sb = common::sandbox(Faults::default()).await;
    settings(
        &sb,
        Settings {
            device_interval_secs: 1,
            device_ttl_secs: 1,
            ..Settings::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let r = resolved(&sb.base_url, "device-code", PUBLIC_CLIENT, "", dir.path());
    let (oauth, cache) = offboard::apps::sign_in(&r, shared_reqwest(), dir.path()).unwrap();

    let denied = DeviceLogin::start(oauth.clone(), cache.clone())
        .await
        .unwrap();
    decide_device(
        &sb.base_url,
        "/oauth2/device",
        &denied.prompt().user_code,
        false,
    )
    .await;
    let e = denied.finish().await.unwrap_err();
    assert!(e.to_string().contains("access_denied"), "{e}");

    let expired = DeviceLogin::start(oauth, cache).await.unwrap();
    let e = expired.finish().await.unwrap_err();
    assert!(e.to_string().contains("expired_token"), "{e}");
    assert!(!dir.path().join("tokens/app--default.json").exists());
    sb.stop().await;
}

#[tokio::test]
async fn client_credentials_for_app_only_access() {
    let sb = common::sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    offboard::sandbox::write_demo_keys(dir.path()).unwrap();
    let r = resolved(
        &sb.base_url,
        "client-credentials",
        CONFIDENTIAL_CLIENT,
        r#"client_secret_file = "oauth-demo-client-secret""#,
        dir.path(),
    );
    let ts = token_source(&r, &ctx(dir.path())).unwrap();
    let me = userinfo(&sb.base_url, ts.clone()).await.unwrap();
    assert_eq!(me["client_id"], CONFIDENTIAL_CLIENT);
    assert_eq!(me["scope"], "directory.read directory.write");
    assert!(
        !dir.path().join("tokens").exists(),
        "app-only tokens are not cached on disk"
    );

    // A wrong secret is refused, and the message does not carry it.
    let wrong = dir.path().join("wrong-secret");
    std::fs::write(&wrong, "not-the-secret-xyz").unwrap();
    let r = resolved(
        &sb.base_url,
        "client-credentials",
        CONFIDENTIAL_CLIENT,
        &format!("client_secret_file = \"{}\"", wrong.display()),
        dir.path(),
    );
    let e = token_source(&r, &ctx(dir.path()))
        .unwrap()
        .token()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("invalid_client"), "{e}");
    assert!(!e.to_string().contains("not-the-secret-xyz"));
    assert!(!format!("{e:?}").contains("not-the-secret-xyz"));
    sb.stop().await;
}

#[tokio::test]
async fn refreshes_before_expiry_with_rotation() {
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
    let r = resolved(
        &sb.base_url,
        "authorization-code",
        PUBLIC_CLIENT,
        "",
        dir.path(),
    );
    login_loopback(&r, dir.path()).await;
    let first = cached(dir.path());
    let ts = token_source(&r, &ctx(dir.path())).unwrap();
    let t1 = ts.token().await.unwrap();
    assert_eq!(t1.expose(), first["access_token"].as_str().unwrap());
    // A second process holding the same sign-in.
    let other = token_source(&r, &ctx(dir.path())).unwrap();
    assert_eq!(other.token().await.unwrap(), t1);
    let t2 = common::wait_for(Duration::from_secs(5), "a refreshed token", || {
        let ts = ts.clone();
        let t1 = t1.clone();
        async move { ts.token().await.ok().filter(|t| *t != t1) }
    })
    .await;
    let second = cached(dir.path());
    assert_eq!(t2.expose(), second["access_token"].as_str().unwrap());
    assert_ne!(first["refresh_token"], second["refresh_token"], "rotated");
    // The other process picks up the renewed tokens instead of spending
    // the rotated-out refresh token.
    other
        .token()
        .await
        .expect("renewed tokens adopted from the cache");
    // The rotated-out refresh token no longer works, and its coming back
    // ends the whole sign-in (RFC 9700 §4.14.2): the current one too.
    let old_rt = first["refresh_token"].as_str().unwrap();
    assert_eq!(refresh_with(&sb.base_url, old_rt).await, 400);
    let current_rt = cached(dir.path())["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(refresh_with(&sb.base_url, &current_rt).await, 400);
    sb.stop().await;
}

#[tokio::test]
async fn refreshes_after_a_401() {
    let sb = common::sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let r = resolved(
        &sb.base_url,
        "authorization-code",
        PUBLIC_CLIENT,
        "",
        dir.path(),
    );
    login_loopback(&r, dir.path()).await;
    let ts = token_source(&r, &ctx(dir.path())).unwrap();
    let before = ts.token().await.unwrap();
    userinfo(&sb.base_url, ts.clone()).await.unwrap();
    // The server ends every access token early; the client still thinks
    // its token is good for an hour.
    let r2 = shared_reqwest()
        .post(format!("{}/_sandbox/oauth/expire", sb.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r2.status(), 204);
    userinfo(&sb.base_url, ts.clone())
        .await
        .expect("renewed after the 401");
    let after = ts.token().await.unwrap();
    assert_ne!(before, after);
    assert_eq!(
        after.expose(),
        cached(dir.path())["access_token"].as_str().unwrap()
    );
    sb.stop().await;
}

#[tokio::test]
async fn logout_revokes_at_the_server_then_deletes_the_cache() {
    let sb = common::sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let r = resolved(
        &sb.base_url,
        "authorization-code",
        PUBLIC_CLIENT,
        "",
        dir.path(),
    );
    login_loopback(&r, dir.path()).await;
    let c = cached(dir.path());
    let (at, rt) = (
        c["access_token"].as_str().unwrap().to_string(),
        c["refresh_token"].as_str().unwrap().to_string(),
    );
    let out = offboard::apps::sign_out(&r, shared_reqwest(), dir.path())
        .await
        .unwrap();
    assert_eq!(out.outcome, LogoutOutcome::RevokedAndDeleted);
    assert!(!out.exposed);
    assert!(!dir.path().join("tokens/app--default.json").exists());
    assert_eq!(refresh_with(&sb.base_url, &rt).await, 400);
    let resp = shared_reqwest()
        .get(format!("{}/oauth2/userinfo", sb.base_url))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "access tokens of a revoked refresh token end too"
    );
    let e = token_source(&r, &ctx(dir.path()))
        .unwrap()
        .token()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("offboard login app"), "{e}");
    assert_eq!(
        offboard::apps::sign_out(&r, shared_reqwest(), dir.path())
            .await
            .unwrap()
            .outcome,
        LogoutOutcome::NotSignedIn
    );
    sb.stop().await;
}

#[tokio::test]
async fn a_cache_file_others_can_read_is_refused() {
    let sb = common::sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let r = resolved(
        &sb.base_url,
        "authorization-code",
        PUBLIC_CLIENT,
        "",
        dir.path(),
    );
    let out = login_loopback(&r, dir.path()).await;
    std::fs::set_permissions(&out.cache_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = token_source(&r, &ctx(dir.path()))
        .unwrap()
        .token()
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("chmod 600 {}", out.cache_path.display())),
        "{msg}"
    );
    assert!(!msg.contains("sbx-"), "{msg}");
    std::fs::set_permissions(&out.cache_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    token_source(&r, &ctx(dir.path()))
        .unwrap()
        .token()
        .await
        .unwrap();
    sb.stop().await;
}

/// Runs the real binary: login (paste-back), doctor after expiry (refresh),
/// use with a 401 (refresh), logout; then looks for every token the
/// sandbox issued in the outputs, the log, and every file left in the data
/// directory.
#[tokio::test]
async fn no_token_leaks_after_a_full_run() {
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
    let data = dir.path().join("data");
    std::fs::create_dir_all(dir.path().join("connectors")).unwrap();
    std::fs::write(
        dir.path().join("connectors/oauth-test.toml"),
        manifest_text(&sb.base_url, "authorization-code", PUBLIC_CLIENT, ""),
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[connectors.app]\nmanifest = \"oauth-test\"\n").unwrap();
    let cmd = |args: &[&str]| {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"));
        c.args(args)
            .env("OFFBOARD_CONFIG", &config)
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

    // Login: read the URL from stdout, approve, paste the redirect back.
    let mut child = cmd(&["login", "app", "--no-browser"]).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut url = None;
    while url.is_none() {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).await.unwrap() > 0,
            "login ended early"
        );
        outputs.push_str(&line);
        if let Some(i) = line
            .find("http")
            .filter(|_| line.contains("/oauth2/authorize?"))
        {
            url = Some(line[i..].trim().to_string());
        }
    }
    let location = consent(url.as_deref().unwrap(), true).await;
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
    assert!(outputs.contains("Signed in to `app`"), "{outputs}");

    // Doctor once the access token has expired: it refreshes.
    let first = cached(&data);
    let expires_at = first["expires_at"].as_i64().unwrap();
    common::wait_for(
        Duration::from_secs(5),
        "the access token to expire",
        || async move { (chrono::Utc::now().timestamp() > expires_at).then_some(()) },
    )
    .await;
    let out = cmd(&["doctor"]).output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    outputs.push_str(&text);
    assert!(text.contains("[ok  ] token"), "{text}");
    assert!(text.contains("[ok  ] scopes"), "{text}");
    // No driver is named `oauth-test`: the API check fails, so exit 3.
    assert!(text.contains("[FAIL] api"), "{text}");
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert_ne!(first["refresh_token"], cached(&data)["refresh_token"]);

    // Use, with the server ending the token early: refresh on the 401.
    let r = resolved(
        &sb.base_url,
        "authorization-code",
        PUBLIC_CLIENT,
        "",
        dir.path(),
    );
    let ts = token_source(&r, &ctx(&data)).unwrap();
    shared_reqwest()
        .post(format!("{}/_sandbox/oauth/expire", sb.base_url))
        .send()
        .await
        .unwrap();
    let me = userinfo(&sb.base_url, ts.clone()).await;
    outputs.push_str(&format!("{me:?}"));
    me.unwrap();
    outputs.push_str(&format!("{:?}", ts.token().await));

    // Logout.
    let out = cmd(&["logout", "app"]).output().await.unwrap();
    outputs.push_str(&String::from_utf8_lossy(&out.stdout));
    outputs.push_str(&String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{outputs}");
    assert!(outputs.contains("revoked at the server"), "{outputs}");

    // Everything issued, searched everywhere.
    let info = issued(&sb).await;
    let tokens: Vec<String> = serde_json::from_value(info["issued"].clone()).unwrap();
    assert!(tokens.len() >= 7, "login code + 3 token pairs: {tokens:?}");
    let mut files = Vec::new();
    let mut stack = vec![data.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    let log = data.join("offboard.log");
    assert!(files.contains(&log), "{files:?}");
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("access token refreshed") && log_text.contains("signed out"),
        "the log records the auth events: {log_text}"
    );
    // Only the entry's lock file stays (empty: it holds nothing).
    assert!(
        !files.iter().any(|f| f.starts_with(data.join("tokens"))
            && !(f.extension().is_some_and(|e| e == "lock")
                && std::fs::metadata(f).unwrap().len() == 0)),
        "cache leftovers: {files:?}"
    );
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
        for t in &tokens {
            assert!(
                !text.contains(t.as_str()),
                "{} holds an issued token",
                f.display()
            );
        }
    }
    for t in &tokens {
        assert!(
            !outputs.contains(t.as_str()),
            "command output holds an issued token"
        );
    }
    sb.stop().await;
}

/// Three processes renew one expired sign-in at once (the console and two
/// commands), against a server that rotates refresh tokens and ends the
/// whole grant when a spent one comes back, with a slow token endpoint so
/// that they overlap: they take turns under the cache entry's lock, one
/// renews, the others adopt what it wrote, and the sign-in survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_renewing_one_sign_in_take_turns() {
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
    let data = dir.path().join("data");
    std::fs::create_dir_all(dir.path().join("connectors")).unwrap();
    std::fs::write(
        dir.path().join("connectors/oauth-test.toml"),
        manifest_text(&sb.base_url, "authorization-code", PUBLIC_CLIENT, ""),
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[connectors.app]\nmanifest = \"oauth-test\"\n").unwrap();
    let r = resolved(
        &sb.base_url,
        "authorization-code",
        PUBLIC_CLIENT,
        "",
        dir.path(),
    );
    login_loopback(&r, &data).await;
    let first = cached(&data);
    let expires_at = first["expires_at"].as_i64().unwrap();
    common::wait_for(
        Duration::from_secs(5),
        "the access token to expire",
        || async move { (chrono::Utc::now().timestamp() > expires_at).then_some(()) },
    )
    .await;
    // Renewed tokens last; each renewal takes 400 ms, so the three overlap.
    settings(&sb, Settings::default()).await;
    let faults = Faults {
        latency_ms: 400,
        path_prefix: Some("/oauth2/token".into()),
        ..Faults::default()
    };
    let put = shared_reqwest()
        .put(format!("{}/_sandbox/faults", sb.base_url))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    let issued_before = issued(&sb).await["issued"].as_array().unwrap().len();

    let runs = (0..3).map(|_| {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"));
        c.arg("doctor")
            .env("OFFBOARD_CONFIG", &config)
            .env("OFFBOARD_DATA", &data)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        async move { c.output().await.unwrap() }
    });
    let outs = futures::future::join_all(runs).await;
    for out in &outs {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("[ok  ] token"), "{text}");
    }
    // One renewal (an access and a refresh token), not three.
    let issued_after = issued(&sb).await["issued"].as_array().unwrap().len();
    assert_eq!(issued_after - issued_before, 2, "renewals");
    let now = cached(&data);
    assert_ne!(now["refresh_token"], first["refresh_token"], "rotated");
    // The sign-in survived: its refresh token still renews, and the lock
    // file beside the entry is the owner's alone and holds nothing.
    let rt = now["refresh_token"].as_str().unwrap();
    assert_eq!(refresh_with(&sb.base_url, rt).await, 200);
    let lock = data.join("tokens/app--default.json.lock");
    let meta = std::fs::metadata(&lock).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 0);
    sb.stop().await;
}

/// Signing in again revokes the sign-in it replaces (RFC 7009) before
/// storing the new one: the old refresh and access tokens end at the
/// server, the new ones work.
#[tokio::test]
async fn signing_in_again_revokes_the_sign_in_it_replaces() {
    let sb = common::sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let r = resolved(
        &sb.base_url,
        "authorization-code",
        PUBLIC_CLIENT,
        "",
        dir.path(),
    );
    let out = login_loopback(&r, dir.path()).await;
    assert_eq!(out.replaced, None, "nothing to replace at first");
    let old = cached(dir.path());
    let out = login_loopback(&r, dir.path()).await;
    assert_eq!(out.replaced, Some(login::Replaced::Revoked));
    let new = cached(dir.path());
    assert_ne!(old["refresh_token"], new["refresh_token"]);
    let old_rt = old["refresh_token"].as_str().unwrap();
    assert_eq!(
        refresh_with(&sb.base_url, old_rt).await,
        400,
        "old refresh token ended"
    );
    let resp = shared_reqwest()
        .get(format!("{}/oauth2/userinfo", sb.base_url))
        .bearer_auth(old["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "old access token ended");
    let ts = token_source(&r, &ctx(dir.path())).unwrap();
    userinfo(&sb.base_url, ts)
        .await
        .expect("the new sign-in works");
    sb.stop().await;
}

/// `logout` with a cache file that others can read: the tokens are ended
/// at the server first, then the file is deleted, and the command says it
/// was exposed.
#[tokio::test]
async fn logout_of_an_exposed_cache_revokes_deletes_and_says_so() {
    let sb = common::sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(dir.path().join("connectors")).unwrap();
    std::fs::write(
        dir.path().join("connectors/oauth-test.toml"),
        manifest_text(&sb.base_url, "authorization-code", PUBLIC_CLIENT, ""),
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[connectors.app]\nmanifest = \"oauth-test\"\n").unwrap();
    let r = resolved(
        &sb.base_url,
        "authorization-code",
        PUBLIC_CLIENT,
        "",
        dir.path(),
    );
    let out = login_loopback(&r, &data).await;
    let c = cached(&data);
    std::fs::set_permissions(&out.cache_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["logout", "app"])
        .env("OFFBOARD_CONFIG", &config)
        .env("OFFBOARD_DATA", &data)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert!(run.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("revoked at the server"), "{stdout}");
    assert!(
        stderr.contains("could be read by group or others")
            && stderr.contains(&out.cache_path.display().to_string()),
        "{stderr}"
    );
    assert!(!out.cache_path.exists(), "the exposed file is deleted");
    let rt = c["refresh_token"].as_str().unwrap();
    assert_eq!(
        refresh_with(&sb.base_url, rt).await,
        400,
        "ended at the server"
    );
    let all = format!("{stdout}{stderr}");
    assert!(!all.contains(rt) && !all.contains(c["access_token"].as_str().unwrap()));
    sb.stop().await;
}

/// `doctor` checks API scopes only: sign-in scopes (`openid`, `profile`,
/// `email`, `offline_access`), which servers often leave out of the token
/// answer's `scope`, are not reported missing.
#[tokio::test]
async fn doctor_does_not_count_sign_in_scopes_as_missing() {
    let sb = common::sandbox(Faults::default()).await;
    let sign_in = ["openid", "profile", "email", "offline_access"];
    settings(
        &sb,
        Settings {
            withhold_scopes: sign_in.iter().map(|s| s.to_string()).collect(),
            ..Settings::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let text = manifest_text(&sb.base_url, "authorization-code", PUBLIC_CLIENT, "").replace(
        SCOPES,
        r#"["directory.read", "openid", "profile", "email", "offline_access"]"#,
    );
    std::fs::create_dir_all(dir.path().join("connectors")).unwrap();
    std::fs::write(dir.path().join("connectors/oauth-test.toml"), &text).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[connectors.app]\nmanifest = \"oauth-test\"\n").unwrap();
    let manifest = parse_manifest(&text, "test").unwrap();
    let r = ResolvedConnector {
        id: "app".into(),
        manifest,
        config_dir: dir.path().to_path_buf(),
    };
    let out = login_loopback(&r, &data).await;
    assert_eq!(out.scopes, Some(vec!["directory.read".to_string()]));
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"))
        .arg("doctor")
        .env("OFFBOARD_CONFIG", &config)
        .env("OFFBOARD_DATA", &data)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(text.contains("[ok  ] scopes       all 1 granted"), "{text}");
    assert!(!text.contains("missing"), "{text}");

    // An API scope withheld is still named.
    settings(
        &sb,
        Settings {
            withhold_scopes: vec!["directory.read".into()],
            ..Settings::default()
        },
    )
    .await;
    login_loopback(&r, &data).await;
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"))
        .arg("doctor")
        .env("OFFBOARD_CONFIG", &config)
        .env("OFFBOARD_DATA", &data)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        text.contains("[FAIL] scopes       missing: directory.read"),
        "{text}"
    );
    sb.stop().await;
}

/// An authorization server that answers every token and revocation request
/// with an OAuth error whose description echoes the request (its form, and
/// the Basic credentials).
async fn echoing_authorization_server() -> String {
    use axum::http::HeaderMap;
    async fn echo(headers: HeaderMap, body: String) -> axum::response::Response {
        use axum::response::IntoResponse;
        let basic = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(b).ok()
            })
            .map(|raw| String::from_utf8_lossy(&raw).into_owned())
            .unwrap_or_default();
        let decoded: Vec<String> = url::form_urlencoded::parse(body.as_bytes())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({
                "error": "invalid_request",
                "error_description": format!("cannot use {} {} {basic}", body, decoded.join(" ")),
            })),
        )
            .into_response()
    }
    let app = axum::Router::new()
        .route("/token", axum::routing::post(echo))
        .route("/revoke", axum::routing::post(echo));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// Token endpoints that echo the request in their error descriptions: the
/// refresh token, the client secret and the token to revoke appear in no
/// error; the server's error code still does.
#[tokio::test]
async fn token_endpoint_errors_never_repeat_what_the_request_carried() {
    let base = echoing_authorization_server().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = "client_secret_file = \"secret\"";
    std::fs::write(dir.path().join("secret"), "cs-0123456789abcdefXYZ").unwrap();
    let manifest = parse_manifest(
        &manifest_text(&base, "authorization-code", CONFIDENTIAL_CLIENT, extra)
            .replace(&format!("{base}/oauth2/token"), &format!("{base}/token"))
            .replace(&format!("{base}/oauth2/revoke"), &format!("{base}/revoke")),
        "test",
    )
    .unwrap();
    let r = ResolvedConnector {
        id: "app".into(),
        manifest,
        config_dir: dir.path().to_path_buf(),
    };
    let (oauth, cache) = offboard::apps::sign_in(&r, shared_reqwest(), dir.path()).unwrap();
    let rt = "rt-echoed-0123456789abcdef";
    let at = "at-echoed-0123456789abcdef";
    cache
        .save(&offboard::auth::cache::StoredToken {
            access_token: offboard::secret::Secret::new(at),
            refresh_token: Some(offboard::secret::Secret::new(rt)),
            expires_at: Some(1),
            scopes: None,
            token_url: oauth.settings().token_url.to_string(),
            client_id: CONFIDENTIAL_CLIENT.into(),
            flow: "authorization-code".into(),
            obtained_at: 0,
            instance_url: None,
        })
        .unwrap();
    let secrets = [rt, at, "cs-0123456789abcdefXYZ", "0123456789abcdef"];
    let check = |what: &str, e: &ConnectorError| {
        let text = format!("{e} {e:?}");
        assert!(
            text.contains("invalid_request"),
            "{what}: the code is kept: {text}"
        );
        for s in secrets {
            assert!(!text.contains(s), "{what}: {s} in {text}");
        }
    };
    // Renewal (refresh token and client secret in the request).
    let e = token_source(&r, &ctx(dir.path()))
        .unwrap()
        .token()
        .await
        .unwrap_err();
    check("refresh", &e);
    // Revocation at logout (the token itself in the request).
    let e = offboard::apps::sign_out(&r, shared_reqwest(), dir.path())
        .await
        .unwrap_err();
    check("revoke", &e);
    // Client credentials (the client secret, sent with HTTP Basic).
    let r = ResolvedConnector {
        id: "app".into(),
        manifest: parse_manifest(
            &manifest_text(&base, "client-credentials", CONFIDENTIAL_CLIENT, extra)
                .replace(&format!("{base}/oauth2/token"), &format!("{base}/token")),
            "test",
        )
        .unwrap(),
        config_dir: dir.path().to_path_buf(),
    };
    let e = token_source(&r, &ctx(dir.path()))
        .unwrap()
        .token()
        .await
        .unwrap_err();
    check("client credentials", &e);
}

/// `logout` never sends a cached sign-in made with another authorization
/// server or client to this one's revocation endpoint: it says so and
/// keeps the file.
#[tokio::test]
async fn logout_does_not_send_another_servers_tokens() {
    let sb = common::sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let r = resolved(
        &sb.base_url,
        "authorization-code",
        PUBLIC_CLIENT,
        "",
        dir.path(),
    );
    let out = login_loopback(&r, dir.path()).await;
    let mut c = cached(dir.path());
    c["token_url"] = "https://login.elsewhere.example/token".into();
    std::fs::write(&out.cache_path, serde_json::to_vec(&c).unwrap()).unwrap();
    let e = offboard::apps::sign_out(&r, shared_reqwest(), dir.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("another authorization server"), "{e}");
    assert!(out.cache_path.exists(), "kept");
    // The refresh token was not revoked here: it was never sent.
    let rt = c["refresh_token"].as_str().unwrap();
    assert_eq!(refresh_with(&sb.base_url, rt).await, 200);
    sb.stop().await;
}
