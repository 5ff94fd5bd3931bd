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
