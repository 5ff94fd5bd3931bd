mod common;

use offboard::sandbox::Faults;

#[tokio::test]
async fn sandbox_serves_and_answers_unknown_paths_in_vendor_shape() {
    let sb = common::sandbox(Faults::default()).await;
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/admin/directory/v1/nope", sb.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], 404);
    assert_eq!(v["error"]["errors"][0]["reason"], "notFound");
    let f: Faults = client
        .get(format!("{}/_sandbox/faults", sb.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(f.consistency_ms, 1500);
    sb.stop().await;
}

/// Status, `Allow` header and JSON body of one request.
async fn answer(method: reqwest::Method, url: String) -> (u16, Option<String>, serde_json::Value) {
    let r = reqwest::Client::new()
        .request(method, url)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let allow = r
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    (status, allow, v)
}

#[tokio::test]
async fn wrong_methods_and_unknown_paths_get_each_vendors_error_body() {
    use reqwest::Method;
    let sb = common::sandbox(Faults::default()).await;
    let u = &sb.base_url;

    // Google: `{"error":{"code","message","errors":[…],"status"}}`.
    for (method, path, code, reason) in [
        (
            Method::PUT,
            "/admin/directory/v1/users/x%40example.com/tokens",
            405,
            "methodNotAllowed",
        ),
        (
            Method::POST,
            "/admin/directory/v1/groups",
            405,
            "methodNotAllowed",
        ),
        (
            Method::GET,
            "/apps/licensing/v1/product/p/sku/s/nothing",
            404,
            "notFound",
        ),
    ] {
        let (st, allow, v) = answer(method, format!("{u}{path}")).await;
        assert_eq!(st, code, "{path}: {v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        assert_eq!(v["error"]["errors"][0]["reason"], reason, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert!(v["error"]["status"].is_string(), "{v}");
        if code == 405 {
            assert!(allow.is_some_and(|a| a.contains("GET")), "{path}");
        }
    }

    // Slack's Web API: HTTP 200, `ok:false`, `unknown_method` naming it,
    // before any token is looked at.
    let (st, _, v) = answer(Method::POST, format!("{u}/api/foo.bar")).await;
    assert_eq!(st, 200);
    assert_eq!(
        v,
        serde_json::json!({"ok": false, "error": "unknown_method", "req_method": "foo.bar"})
    );
    let (st, _, v) = answer(Method::GET, format!("{u}/api/auth.test")).await;
    assert_eq!((st, &v["error"]), (200, &"not_authed".into()));
    let (st, _, v) = answer(Method::GET, format!("{u}/api/a/b")).await;
    assert_eq!((st, &v["error"]), (200, &"unknown_method".into()));
    // Slack SCIM: its own error body.
    let (st, _, v) = answer(Method::PUT, format!("{u}/scim/v2/Users")).await;
    assert_eq!(st, 405, "{v}");
    assert_eq!(v["Errors"]["code"], 405, "{v}");

    // Salesforce: the array of `{message, errorCode}`.
    let (st, _, v) = answer(
        Method::PUT,
        format!("{u}/services/data/v60.0/sobjects/User/005000000000001"),
    )
    .await;
    assert_eq!(st, 405, "{v}");
    assert_eq!(v[0]["errorCode"], "METHOD_NOT_ALLOWED", "{v}");
    let (st, _, v) = answer(Method::GET, format!("{u}/services/data/v60.0/nothing")).await;
    assert_eq!(st, 404, "{v}");
    assert_eq!(v[0]["errorCode"], "NOT_FOUND", "{v}");
    assert!(v[0]["message"].is_string());
    sb.stop().await;
}
