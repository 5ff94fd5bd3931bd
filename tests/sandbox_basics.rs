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
