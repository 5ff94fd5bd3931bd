//! The shared HTTP client against small local servers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use offboard::auth::StaticToken;
use offboard::connector::ConnectorError;
use offboard::connector::http::{ApiClient, ApiRequest, DefaultPolicy, HttpSettings};
use offboard::secret::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

#[derive(Default)]
struct Seen {
    hits: AtomicUsize,
    auth: Mutex<Vec<String>>,
}

async fn serve(app: Router) -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Url::parse(&format!("http://{addr}/")).unwrap()
}

fn client(bases: &[Url], settings: HttpSettings) -> ApiClient {
    ApiClient::new(
        offboard::connector::http::shared_reqwest(),
        settings,
        bases,
        Some(Arc::new(StaticToken::new(Secret::new("sekrit-token-123")))),
        Arc::new(DefaultPolicy),
        None,
    )
}

fn quick_settings() -> HttpSettings {
    let mut s = HttpSettings::new("test");
    s.base_backoff = Duration::from_millis(20);
    s.max_backoff = Duration::from_millis(200);
    s
}

#[tokio::test]
async fn a_next_page_link_to_another_host_is_refused_and_that_host_sees_nothing() {
    let other_seen = Arc::new(Seen::default());
    let other = serve(
        Router::new()
            .route(
                "/page2",
                get(|State(s): State<Arc<Seen>>, h: HeaderMap| async move {
                    s.hits.fetch_add(1, Ordering::SeqCst);
                    if let Some(a) = h.get("authorization") {
                        s.auth.lock().unwrap().push(a.to_str().unwrap_or("").into());
                    }
                    "{\"items\":[]}"
                }),
            )
            .with_state(other_seen.clone()),
    )
    .await;
    let next = format!("{other}page2");
    let home = serve(Router::new().route(
        "/page1",
        get(move || {
            let next = next.clone();
            async move { axum::Json(serde_json::json!({"items": [1], "next": next})) }
        }),
    ))
    .await;
    let c = client(std::slice::from_ref(&home), quick_settings());
    let first: serde_json::Value = c.get_json(home.join("page1").unwrap()).await.unwrap();
    let link = first["next"].as_str().unwrap();
    let r = c.resolve_link(&home, link);
    assert!(matches!(r, Err(ConnectorError::ForeignLink(_))), "{r:?}");
    // Even asked directly, the client does not send to the other host.
    let r = c.send(ApiRequest::get(Url::parse(link).unwrap())).await;
    assert!(matches!(r, Err(ConnectorError::ForeignLink(_))), "{r:?}");
    assert_eq!(other_seen.hits.load(Ordering::SeqCst), 0);
    assert!(other_seen.auth.lock().unwrap().is_empty());
    // The error text names the origin, never the token.
    let text = format!("{:?}", r.unwrap_err());
    assert!(!text.contains("sekrit"), "{text}");
}

#[tokio::test]
async fn responses_over_the_size_cap_are_refused() {
    let big = "x".repeat(300 * 1024);
    let b2 = big.clone();
    let home = serve(
        Router::new()
            .route(
                "/sized",
                get(move || {
                    let b = big.clone();
                    async move { b }
                }),
            )
            .route(
                "/streamed",
                get(move || {
                    let b = b2.clone();
                    async move {
                        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = b
                            .into_bytes()
                            .chunks(8192)
                            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                            .collect();
                        axum::body::Body::from_stream(futures::stream::iter(chunks))
                    }
                }),
            ),
    )
    .await;
    let mut s = quick_settings();
    s.max_body_bytes = 64 * 1024;
    let c = client(std::slice::from_ref(&home), s);
    for path in ["sized", "streamed"] {
        let r = c.send(ApiRequest::get(home.join(path).unwrap())).await;
        match r {
            Err(ConnectorError::BadResponse(m)) => assert!(m.contains("larger than"), "{m}"),
            other => panic!("{path}: {other:?}"),
        }
    }
}

/// A raw server: drops the first `drop_first` connections after reading the
/// request, then answers 200 with a small JSON body.
async fn flaky_raw(drop_first: usize) -> (Url, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let n = c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = sock.read(&mut buf).await;
                if n < drop_first {
                    drop(sock);
                    return;
                }
                let body = "{\"ok\":true}";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (Url::parse(&format!("http://{addr}/")).unwrap(), count)
}

#[tokio::test]
async fn a_reset_connection_is_retried() {
    let (home, count) = flaky_raw(2).await;
    let c = client(std::slice::from_ref(&home), quick_settings());
    let v: serde_json::Value = c.get_json(home.join("x").unwrap()).await.unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert!(c.stats().retries >= 2);
}

#[tokio::test]
async fn a_reset_post_that_is_not_idempotent_is_not_resent() {
    let (home, count) = flaky_raw(1).await;
    let c = client(std::slice::from_ref(&home), quick_settings());
    let r = c
        .send(ApiRequest::new(
            reqwest::Method::POST,
            home.join("x").unwrap(),
        ))
        .await;
    assert!(matches!(r, Err(ConnectorError::Network(_))), "{r:?}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let hits = Arc::new(AtomicUsize::new(0));
    let home = serve(
        Router::new()
            .route(
                "/limited",
                get(|State(h): State<Arc<AtomicUsize>>| async move {
                    if h.fetch_add(1, Ordering::SeqCst) == 0 {
                        (
                            StatusCode::TOO_MANY_REQUESTS,
                            [("retry-after", "1")],
                            "slow down",
                        )
                            .into_response()
                    } else {
                        "{\"ok\":true}".into_response()
                    }
                }),
            )
            .with_state(hits.clone()),
    )
    .await;
    let c = client(std::slice::from_ref(&home), quick_settings());
    let started = tokio::time::Instant::now();
    let v: serde_json::Value = c.get_json(home.join("limited").unwrap()).await.unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // The retry came after the server's Retry-After, not after the 20 ms backoff.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(c.stats().rate_limited, 1);
}

#[tokio::test]
async fn a_retry_after_beyond_the_limit_is_an_error_not_a_hang() {
    let home = serve(Router::new().route(
        "/limited",
        get(|| async {
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "3600")],
                "later",
            )
                .into_response()
        }),
    ))
    .await;
    let mut s = quick_settings();
    s.max_retry_after = Duration::from_secs(5);
    let c = client(std::slice::from_ref(&home), s);
    let r = c.send(ApiRequest::get(home.join("limited").unwrap())).await;
    match r {
        Err(ConnectorError::RateLimited { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(3600)))
        }
        other => panic!("{other:?}"),
    }
}
