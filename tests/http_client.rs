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

/// Answers every POST to `/{status}` with that status, echoing the request
/// body inside the vendor's error shapes: in a Salesforce error array (code
/// and message), an OAuth error (`error`, `error_description`) and as plain
/// text, as servers that quote the request do.
async fn echo_server() -> Url {
    serve(Router::new().route(
        "/{status}",
        axum::routing::post(
            |axum::extract::Path(status): axum::extract::Path<u16>, body: String| async move {
                let status = StatusCode::from_u16(status).unwrap();
                let echoed = serde_json::json!([{
                    "errorCode": if status == StatusCode::FORBIDDEN {
                        "REQUEST_LIMIT_EXCEEDED".to_string()
                    } else {
                        body.clone()
                    },
                    "message": format!("could not process {body}"),
                    "error": body,
                    "error_description": format!("request was {body}"),
                }]);
                let text = if status.is_success() {
                    format!("not json: {body}")
                } else {
                    echoed.to_string()
                };
                (status, [("retry-after", "3600")], text).into_response()
            },
        ),
    ))
    .await
}

/// Turns each status into one kind of error, quoting the answer as a
/// careless vendor policy would: every kind the client can return.
struct EchoPolicy;

impl offboard::connector::http::VendorPolicy for EchoPolicy {
    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> offboard::connector::http::Verdict {
        use offboard::connector::http::Verdict;
        let text = String::from_utf8_lossy(body).into_owned();
        match status.as_u16() {
            409 => Verdict::Fail(ConnectorError::Refused {
                code: text.clone(),
                message: text,
                manual: "do it by hand".into(),
            }),
            403 => Verdict::Fail(ConnectorError::Auth(text)),
            422 => Verdict::Fail(ConnectorError::BadResponse(text)),
            418 => Verdict::Fail(ConnectorError::Network(text)),
            421 => Verdict::Fail(ConnectorError::ForeignLink(text)),
            423 => Verdict::Fail(ConnectorError::Config(text)),
            400 => Verdict::Fail(ConnectorError::Api {
                status: 400,
                code: text.clone(),
                message: text,
            }),
            _ => offboard::connector::http::default_classify(status, headers, body),
        }
    }
}

fn echo_client(base: &Url, policy: Arc<dyn offboard::connector::http::VendorPolicy>) -> ApiClient {
    let mut s = quick_settings();
    s.max_retries = 0;
    s.max_rate_limit_retries = 0;
    ApiClient::new(
        offboard::connector::http::shared_reqwest(),
        s,
        std::slice::from_ref(base),
        None,
        policy,
        None,
    )
}

/// The credential a request carries, as a Salesforce DeleteToken looks.
const CARRIED: &str = "00DDEMOxAQcAQH0dMHZfz972Szmpkb58urFRkgeBGsxL";

async fn error_for(
    c: &ApiClient,
    base: &Url,
    status: u16,
    secret: bool,
) -> (ConnectorError, String) {
    let mut req = ApiRequest::new(
        reqwest::Method::POST,
        base.join(&status.to_string()).unwrap(),
    )
    .form(vec![("token".into(), CARRIED.into())])
    .unauthenticated()
    .idempotent(true);
    if secret {
        req = req.secret_body();
    }
    let e = match c.send(req).await {
        Ok(r) => r
            .json::<serde_json::Value>()
            .expect_err("the 200 answer is not JSON"),
        Err(e) => e,
    };
    let stats = c.stats();
    let all = format!(
        "{e} | {e:?} | {:?} | {:?}",
        stats.last_error, stats.last_auth_error
    );
    (e, all)
}

#[tokio::test]
async fn an_answer_to_a_request_carrying_a_credential_is_never_quoted_whatever_the_error() {
    let base = echo_server().await;
    let echo = echo_client(&base, Arc::new(EchoPolicy));
    let default = echo_client(&base, Arc::new(DefaultPolicy));
    let salesforce = echo_client(
        &base,
        Arc::new(offboard::apps::salesforce::driver::SalesforcePolicy),
    );
    // Every kind of error the client can build from an answer, through
    // each policy: (client, status, the kind expected).
    let cases: Vec<(&str, &ApiClient, u16, &str)> = vec![
        ("default", &default, 400, "Api"),
        ("default", &default, 404, "Api"),
        ("default", &default, 401, "Auth"),
        ("default", &default, 429, "RateLimited"),
        ("default", &default, 503, "Api"),
        ("default", &default, 200, "BadResponse"),
        ("salesforce", &salesforce, 400, "Api"),
        ("salesforce", &salesforce, 401, "Auth"),
        ("salesforce", &salesforce, 403, "RateLimited"),
        ("salesforce", &salesforce, 429, "RateLimited"),
        ("salesforce", &salesforce, 500, "Api"),
        ("echo", &echo, 400, "Api"),
        ("echo", &echo, 403, "Auth"),
        ("echo", &echo, 409, "Refused"),
        ("echo", &echo, 418, "Network"),
        ("echo", &echo, 421, "ForeignLink"),
        ("echo", &echo, 422, "BadResponse"),
        ("echo", &echo, 423, "Config"),
    ];
    for (policy, c, status, kind) in cases {
        // Unmarked, the echo is quoted: the server does echo, so the check
        // below can fail.
        let (_, quoted) = error_for(c, &base, status, false).await;
        assert!(
            quoted.contains(CARRIED),
            "{policy} {status}: the unmarked error should quote the echo: {quoted}"
        );
        let (e, all) = error_for(c, &base, status, true).await;
        let got = format!("{e:?}");
        assert!(
            got.starts_with(kind),
            "{policy} {status}: expected {kind}, got {got}"
        );
        for part in [CARRIED, "AQcAQH0dMHZfz972", "00DDEMO"] {
            assert!(
                !all.contains(part),
                "{policy} {status}: the credential is in the error: {all}"
            );
        }
        assert!(
            all.contains("not shown") || matches!(e, ConnectorError::Timeout),
            "{policy} {status}: the error says why it quotes nothing: {all}"
        );
    }
    // A code that is only a code is kept, so drivers can still act on it.
    let (e, _) = error_for(&salesforce, &base, 403, true).await;
    assert!(matches!(e, ConnectorError::RateLimited { .. }), "{e:?}");
}

/// A speculative read (`http::probe`) is sent only with quota to spare: it
/// never waits for a token, never leaves the bucket less than half full,
/// and gives up at the first rate-limit answer (which still pauses the
/// bucket for everyone). What it does not send reaches no server.
#[tokio::test]
async fn a_speculative_read_is_sent_only_with_quota_to_spare() {
    use offboard::connector::http::probe;
    let seen = Arc::new(Seen::default());
    let limited = Arc::new(AtomicUsize::new(0));
    let home = serve(
        Router::new()
            .route(
                "/read",
                get(|State(s): State<Arc<Seen>>| async move {
                    s.hits.fetch_add(1, Ordering::SeqCst);
                    "{\"ok\":true}"
                }),
            )
            .with_state(seen.clone())
            .route(
                "/limited",
                get(|State(h): State<Arc<AtomicUsize>>| async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", "1")],
                        "slow down",
                    )
                }),
            )
            .with_state(limited.clone()),
    )
    .await;
    let mut settings = quick_settings();
    // Four at once, then one every 10 s: refills play no part below.
    settings.burst = 4;
    settings.requests_per_second = 0.1;
    let c = client(std::slice::from_ref(&home), settings);
    let read = home.join("read").unwrap();
    // A full bucket of four: two speculative reads leave it half full.
    for _ in 0..2 {
        probe(c.get_json::<serde_json::Value>(read.clone()))
            .await
            .unwrap();
    }
    assert_eq!(seen.hits.load(Ordering::SeqCst), 2);
    // A third would leave it less than half full.
    let r = probe(c.get_json::<serde_json::Value>(read.clone())).await;
    assert!(matches!(r, Err(ConnectorError::Deferred)), "{r:?}");
    assert_eq!(seen.hits.load(Ordering::SeqCst), 2, "nothing was sent");
    // An ordinary read still gets its token at once.
    let started = tokio::time::Instant::now();
    c.get_json::<serde_json::Value>(read.clone()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(seen.hits.load(Ordering::SeqCst), 3);
    assert_eq!(c.stats().requests, 3, "a read not sent is not counted");

    // A rate-limit answer to a speculative read: given up, not retried,
    // and the bucket paused for everyone.
    let mut settings = quick_settings();
    settings.burst = 10;
    settings.requests_per_second = 10.0;
    let c = client(std::slice::from_ref(&home), settings);
    let r = probe(c.get_json::<serde_json::Value>(home.join("limited").unwrap())).await;
    assert!(matches!(r, Err(ConnectorError::Deferred)), "{r:?}");
    assert_eq!(limited.load(Ordering::SeqCst), 1, "not retried");
    assert!(c.paused_for(None).is_some(), "the pause holds for everyone");
    let r = probe(c.get_json::<serde_json::Value>(read.clone())).await;
    assert!(matches!(r, Err(ConnectorError::Deferred)), "{r:?}");
    assert_eq!(seen.hits.load(Ordering::SeqCst), 3, "not sent while paused");
}
