//! The embedded emulator of every vendor API offboard speaks, on 127.0.0.1.
//!
//! One axum server holds all vendors on their own path prefixes (Google
//! `/admin/…`, `/apps/licensing/…`, `/token`; Slack `/api/…`, `/scim/…`;
//! Salesforce `/services/…`). Faults (latency, error rate, 429 rate, resets,
//! malformed bodies) and the eventual-consistency delay can be set at start
//! and changed while running through `/_sandbox/faults`. The access log
//! records every request as one JSON line, never the Authorization header.

pub mod oauth;
pub mod tenant;

use crate::apps::slack::twin as slack;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Demo keys. These are not secrets: they exist so that the sandbox's token
/// endpoints can check real RS256 signatures.
pub const DEMO_ADMIN: &str = "admin@example.com";

/// Google's documented default per-user quota of the Admin SDK Directory
/// API: 2,400 queries per minute per user per Cloud project.
pub const GOOGLE_USER_QUOTA_PER_MIN: u32 = 2400;
/// The Admin SDK's per-project "Queries per minute" default. Google's
/// "Limits and quotas" page documents only the per-user figure (and a
/// per-account 429 that "can't be increased" with no number); this assumes
/// the project's default equals it, as the Cloud console's quota page lists
/// it, so one caller can use the whole project quota and two callers of one
/// project share it.
pub const GOOGLE_PROJECT_QUOTA_PER_MIN: u32 = 2400;

/// Fault switches. All can be changed while running.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Added to every request.
    pub latency_ms: u64,
    /// How long a removed item stays listed (eventual consistency).
    pub consistency_ms: u64,
    /// Share of requests answered with the vendor's 5xx error body.
    pub error_rate: f64,
    /// Share of requests answered with the vendor's rate-limit answer.
    pub rate_429: f64,
    /// Share of requests whose connection drops mid-body.
    pub reset_rate: f64,
    /// Share of GET requests answered 200 with the first half of the real body.
    pub malformed_rate: f64,
    /// Seconds sent in Retry-After on injected 429s.
    pub retry_after_secs: u64,
    /// Google Admin SDK per-user quota (requests per minute per caller: the
    /// user a token acts as), answered with 403 `userRateLimitExceeded`.
    /// Google's default is 2,400. None: no quota.
    pub google_user_quota_per_min: Option<u32>,
    /// Google Admin SDK per-project quota (requests per minute from every
    /// caller of the service account's project), answered with 429
    /// `rateLimitExceeded`. Google documents no figure for it; its Cloud
    /// console shows 2,400 a minute by default (see `GOOGLE_PROJECT_QUOTA_PER_MIN`).
    /// None: no quota.
    pub google_project_quota_per_min: Option<u32>,
    /// Google answers injected rate limits with 429 RESOURCE_EXHAUSTED and
    /// Retry-After (as some Google APIs do) instead of 403 rateLimitExceeded.
    pub google_429: bool,
    /// Only inject faults on paths starting with this (None: all vendor paths).
    pub path_prefix: Option<String>,
    /// Slack Web API tier limits, enforced per method as Slack does (429,
    /// Retry-After, `ratelimited`): tier name (`tier1`..`tier4`, `special`)
    /// to its rule; a tier left out keeps Slack's documented minimum. None:
    /// not enforced.
    pub slack_tiers: Option<std::collections::BTreeMap<String, slack::TierRule>>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            consistency_ms: 1500,
            error_rate: 0.0,
            rate_429: 0.0,
            reset_rate: 0.0,
            malformed_rate: 0.0,
            retry_after_secs: 1,
            google_user_quota_per_min: None,
            google_project_quota_per_min: None,
            google_429: false,
            path_prefix: None,
            slack_tiers: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// 0 picks a free port.
    pub port: u16,
    pub faults: Faults,
    pub access_log: Option<PathBuf>,
    /// Seed for the fault dice (the tenant itself is always the same).
    pub seed: u64,
    /// Extra people for benchmarks: a leaver with this many grants in
    /// Google, Slack and Salesforce.
    pub bench_grants: Option<tenant::BenchShape>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            port: 0,
            faults: Faults::default(),
            access_log: None,
            seed: 7,
            bench_grants: None,
        }
    }
}

/// Everything the handlers share.
pub struct SandboxState {
    pub faults: RwLock<Faults>,
    /// Each vendor twin's state (`s.google`, `s.slack`, ... through Deref).
    pub twins: crate::apps::Twins,
    pub oauth: Mutex<oauth::State>,
    pub base_url: String,
    rng: Mutex<rand::rngs::StdRng>,
    access_log: Option<Mutex<std::fs::File>>,
}

pub type Shared = Arc<SandboxState>;

impl std::ops::Deref for SandboxState {
    type Target = crate::apps::Twins;
    fn deref(&self) -> &crate::apps::Twins {
        &self.twins
    }
}

impl SandboxState {
    pub fn faults(&self) -> Faults {
        self.faults.read().expect("faults lock").clone()
    }

    /// The eventual-consistency delay now in force.
    pub fn consistency(&self) -> Duration {
        Duration::from_millis(self.faults().consistency_ms)
    }

    /// Whether an item removed at `removed_at` is still listed.
    pub fn still_listed(&self, removed_at: Option<Instant>) -> bool {
        match removed_at {
            None => true,
            Some(t) => t.elapsed() < self.consistency(),
        }
    }

    fn roll(&self, p: f64) -> bool {
        p > 0.0 && self.rng.lock().expect("rng lock").random_bool(p.min(1.0))
    }
}

/// A running sandbox.
pub struct Running {
    pub addr: SocketAddr,
    pub base_url: String,
    pub state: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Waits until the server ends (Ctrl-C for `offboard sandbox`).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    pub fn set_faults(&self, f: Faults) {
        *self.state.faults.write().expect("faults lock") = f;
    }
}

/// Binds 127.0.0.1 and serves until stopped.
pub async fn start(opts: Options) -> anyhow::Result<Running> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{}: {e}", opts.port))?;
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    let access_log = match &opts.access_log {
        Some(p) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| anyhow::anyhow!("access log {}: {e}", p.display()))?,
        )),
        None => None,
    };
    let state: Shared = Arc::new(SandboxState {
        faults: RwLock::new(opts.faults.clone()),
        twins: crate::apps::Twins::seed(opts.bench_grants.as_ref()),
        oauth: Mutex::new(oauth::State::default()),
        base_url: base_url.clone(),
        rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(opts.seed)),
        access_log,
    });
    let app = router(state.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok(Running {
        addr,
        base_url,
        state,
        shutdown: Some(tx),
        task,
    })
}

pub fn router(state: Shared) -> Router {
    Router::new()
        .merge(crate::apps::twins(&state))
        .merge(oauth::routes())
        .route("/_sandbox/faults", get(get_faults).put(put_faults))
        .route("/_sandbox/config", get(get_config))
        .fallback(not_found)
        // After every route: a known path asked with a method it does not
        // serve gets the vendor's error body too, never axum's empty 405.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            faults_and_log,
        ))
        .with_state(state)
}

async fn get_faults(State(s): State<Shared>) -> Json<Faults> {
    Json(s.faults())
}

async fn put_faults(State(s): State<Shared>, Json(f): Json<Faults>) -> Json<Faults> {
    *s.faults.write().expect("faults lock") = f.clone();
    Json(f)
}

async fn get_config(State(s): State<Shared>) -> String {
    demo_config(&s.base_url, std::path::Path::new("."))
}

async fn not_found(req: Request) -> Response {
    let path = req.uri().path();
    match crate::apps::dialect(path) {
        Some(d) => (d.not_found)(req.method().as_str(), path),
        None => vendor_error(path, StatusCode::NOT_FOUND, "not found"),
    }
}

/// A known path asked with a method it does not serve: 405 in the vendor's
/// shape (axum adds the `Allow` header).
async fn method_not_allowed(req: Request) -> Response {
    let path = req.uri().path();
    let method = req.method().as_str();
    match crate::apps::dialect(path) {
        Some(d) => (d.method_not_allowed)(method, path),
        None => vendor_error(
            path,
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("HTTP method {method} is not allowed on {path}"),
        ),
    }
}

/// An error answer in the shape of the vendor whose twin serves `path`; the
/// OAuth shape (RFC 6749 section 5.2) for the shared token endpoints and the
/// sandbox's own paths.
pub fn vendor_error(path: &str, status: StatusCode, message: &str) -> Response {
    match crate::apps::dialect(path) {
        Some(d) => (d.error)(path, status, message),
        None => oauth_error(status, message),
    }
}

/// `{"error", "error_description"}`, as an authorization server answers.
pub fn oauth_error(status: StatusCode, message: &str) -> Response {
    let code = if status.as_u16() >= 500 {
        "server_error"
    } else {
        "invalid_request"
    };
    (
        status,
        Json(serde_json::json!({"error": code, "error_description": message})),
    )
        .into_response()
}

/// The rate-limit answer of the vendor whose twin serves `path`.
pub fn rate_limited(path: &str, retry_after_secs: u64, faults: &Faults) -> Response {
    match crate::apps::dialect(path) {
        Some(d) => (d.rate_limited)(path, retry_after_secs, faults),
        None => with_retry_after(
            (
                StatusCode::TOO_MANY_REQUESTS,
                Json(serde_json::json!({"error": "rate_limited"})),
            )
                .into_response(),
            retry_after_secs,
        ),
    }
}

/// Adds `Retry-After: secs` to an answer.
pub fn with_retry_after(mut resp: Response, secs: u64) -> Response {
    resp.headers_mut().insert(
        "retry-after",
        HeaderValue::from_str(&secs.to_string()).expect("digits"),
    );
    resp
}

#[derive(Serialize)]
struct LogLine<'a> {
    ts: String,
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    status: u16,
    ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    fault: Option<&'static str>,
}

async fn faults_and_log(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let f = s.faults();
    let applies = !path.starts_with("/_sandbox")
        && f.path_prefix.as_deref().is_none_or(|p| path.starts_with(p));

    let mut fault = None;
    let resp = if applies {
        if f.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(f.latency_ms)).await;
        }
        if s.roll(f.rate_429) {
            fault = Some("rate_limit");
            rate_limited(&path, f.retry_after_secs, &f)
        } else if s.roll(f.error_rate) {
            fault = Some("error");
            vendor_error(
                &path,
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is currently unavailable.",
            )
        } else if s.roll(f.reset_rate) {
            fault = Some("reset");
            let stream = futures::stream::iter(vec![
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"partial\":")),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "reset",
                )),
            ]);
            Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Body::from_stream(stream))
                .expect("static response")
        } else if method == "GET" && s.roll(f.malformed_rate) {
            fault = Some("malformed");
            // The real answer cut in half, as a proxy that drops the end of a
            // body would deliver it: the part that arrives is genuine.
            let (mut parts, body) = next.run(req).await.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            parts.status = StatusCode::OK;
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(bytes.slice(..bytes.len() / 2)))
        } else {
            next.run(req).await
        }
    } else {
        next.run(req).await
    };

    if let Some(log) = &s.access_log {
        let line = LogLine {
            ts: chrono::Utc::now().to_rfc3339(),
            method: &method,
            path: &path,
            query: query.as_deref(),
            status: resp.status().as_u16(),
            ms: started.elapsed().as_millis() as u64,
            fault,
        };
        if let Ok(mut text) = serde_json::to_string(&line) {
            text.push('\n');
            let mut f = log.lock().expect("log lock");
            let _ = f.write_all(text.as_bytes());
        }
    }
    resp
}

/// The config that points offboard at a sandbox on `base_url`, with the
/// demo key files written into `keys_dir` by [`write_demo_keys`].
pub fn demo_config(base_url: &str, keys_dir: &std::path::Path) -> String {
    format!(
        r#"# offboard config for the sandbox at {base_url}
operator = "demo-operator@example.com"

[engine]
verify_deadline_secs = 60
"#
    ) + &crate::apps::demo_config(base_url, keys_dir)
}

/// Writes the demo credentials (not secrets: demo values only the sandbox
/// accepts) into `dir`.
pub fn write_demo_keys(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    crate::apps::write_demo_keys(dir)?;
    write_private(
        &dir.join("oauth-demo-client-secret"),
        oauth::CONFIDENTIAL_SECRET.as_bytes(),
    )
}

/// Creates or replaces a file readable only by its owner (0600).
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
