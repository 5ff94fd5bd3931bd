//! Helpers for the sign-in tests: a build context, and the sandbox
//! authorization server's test switches.

use std::path::Path;

use offboard::connector::BuildContext;
use offboard::connector::http::shared_reqwest;
use offboard::sandbox::Running;
use offboard::sandbox::oauth::Settings;

pub fn ctx(data: &Path) -> BuildContext {
    BuildContext {
        http: shared_reqwest(),
        notices: None,
        data_dir: data.to_path_buf(),
    }
}

pub async fn settings(sb: &Running, s: Settings) {
    let r = reqwest::Client::new()
        .put(format!("{}/_sandbox/oauth", sb.base_url))
        .json(&s)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

pub async fn issued(sb: &Running) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{}/_sandbox/oauth", sb.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Plays the person at a device verification page (`path` on the sandbox):
/// approves or denies `user_code`.
pub async fn decide_device(base: &str, path: &str, user_code: &str, approve: bool) {
    let r = shared_reqwest()
        .post(format!("{base}{path}"))
        .form(&[
            ("user_code", user_code),
            ("decision", if approve { "approve" } else { "deny" }),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Plays the browser at the sandbox's consent page: approves or denies,
/// and returns where the authorization server redirects to.
pub async fn consent(auth_url: &str, approve: bool) -> String {
    let http = shared_reqwest();
    let page = http.get(auth_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let marker = "name=\"request_id\" value=\"";
    let start = html.find(marker).expect("consent form") + marker.len();
    let request_id = &html[start..start + html[start..].find('"').unwrap()];
    let base = url::Url::parse(auth_url).unwrap();
    let post = http
        .post(base.join("/oauth2/authorize").unwrap())
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
