//! The one HTTP client every driver uses.
//!
//! It owns: timeouts, retries with backoff and full jitter on 5xx, resets and
//! rate limits (honouring `Retry-After`, and whatever each vendor uses
//! instead, through [`VendorPolicy`]), a per-connector concurrency limit and
//! token bucket, a cap on response size, percent-encoded path segments, and a
//! pagination guard that refuses next-page links to another origin and stops
//! on a repeated page token. Bearer tokens are [`Secret`]s and never logged.
//!
//! A connector whose vendor limits calls per method or per class of method
//! (Slack's tiers) gives its client named buckets ([`ApiClient::with_buckets`])
//! and names one on each request ([`ApiRequest::bucket`]): such a request
//! takes its token from that bucket instead of the connector-wide one, and a
//! rate-limit answer to it pauses only that bucket. The connector-wide
//! concurrency limit applies to every request.
//!
//! One client per connector serves every leaver of the process: its slots
//! and tokens go to the most urgent request waiting ([`with_urgency`]),
//! removals before the reads that confirm them ([`background`]). A vendor's
//! report of its allocation paces the client by one rule ([`pacing`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::time::Instant;
use url::Url;

use super::TokenSource;
use crate::connector::ConnectorError;
use crate::sanitize;

/// Settings for one connector's client, from its manifest `[limits]`.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Connector id, for logs and notices.
    pub connector: String,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Retries after the first attempt, for transient failures.
    pub max_retries: u32,
    /// Retries after the first attempt, for rate-limit answers.
    pub max_rate_limit_retries: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// A Retry-After longer than this is returned as an error rather than waited.
    pub max_retry_after: Duration,
    pub max_concurrency: usize,
    pub requests_per_second: f64,
    pub burst: u32,
    pub max_body_bytes: usize,
}

impl HttpSettings {
    pub fn new(connector: impl Into<String>) -> Self {
        Self {
            connector: connector.into(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_retries: 4,
            max_rate_limit_retries: 8,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(120),
            max_concurrency: 8,
            requests_per_second: 20.0,
            burst: 20,
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

/// What a vendor's answer means for the client.
#[derive(Debug)]
pub enum Verdict {
    /// Hand the response to the driver.
    Ok,
    /// Rate limited: wait (the given time, or backoff) and try again.
    RateLimited(Option<Duration>),
    /// Transient failure (5xx and the like): back off and try again.
    Transient,
    /// The access token was refused: get a new one once, then try again.
    Unauthorized,
    /// A final error.
    Fail(ConnectorError),
}

/// Vendor-specific reading of answers: error bodies and rate-limit signals.
pub trait VendorPolicy: Send + Sync {
    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Verdict;

    /// A rate-limit headroom report, when the vendor sends one in headers
    /// (Salesforce `Sforce-Limit-Info`, Okta `X-Rate-Limit-*`): shown on
    /// the health line, and its usage paces the client (see [`pacing`]).
    fn limit_info(&self, _headers: &HeaderMap) -> Option<LimitInfo> {
        None
    }
}

/// What a vendor reported about an allocation its requests draw from.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitInfo {
    /// The health line's text (`API requests 25/15000 (24 h)`).
    pub text: String,
    /// Requests used of the allocation, and the allocation, when reported.
    pub usage: Option<(u64, u64)>,
    /// How long until the allocation's window starts afresh, when the
    /// vendor says (Okta's per-minute windows); `None` for a rolling
    /// allocation (Salesforce's 24 hours).
    pub resets_in: Option<Duration>,
}

/// What the client does on a vendor's report of its allocation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Run every bucket of the connector at this share of its configured
    /// rate (a rolling allocation: its last tenth is spent ever more slowly).
    Share(f64),
    /// Hold the bucket the answer came through for this long (a window:
    /// what is left of it is spread over the time to its reset, and a spent
    /// one waits for the reset).
    Hold(Duration),
}

/// The one pacing rule, for every vendor that reports its allocation
/// ([`VendorPolicy::limit_info`]): `None` when the report says nothing to
/// pace by.
pub fn pacing(info: &LimitInfo) -> Option<Pacing> {
    let (used, allowed) = info.usage?;
    match info.resets_in {
        None => Some(Pacing::Share(pace_share(used, allowed))),
        Some(reset) => {
            let left = allowed.saturating_sub(used);
            if left <= 1 {
                Some(Pacing::Hold(reset + Duration::from_millis(100)))
            } else if (left as f64) < allowed as f64 * PACE_BELOW_HEADROOM {
                Some(Pacing::Hold(reset / (left as u32).max(1)))
            } else {
                None
            }
        }
    }
}

/// Headroom (unused share of an allocation) below which the client slows
/// down: the last tenth of a vendor's allocation is spent ever more slowly.
pub const PACE_BELOW_HEADROOM: f64 = 0.10;
/// The slowest the client goes on a nearly spent allocation: this share of
/// its configured rate (never stopping: the vendor's own refusal is retried
/// as any rate limit is).
pub const MIN_PACE_SHARE: f64 = 0.02;

/// The share of its configured rate the client keeps when `used` of
/// `allowed` are spent: 1 while at least [`PACE_BELOW_HEADROOM`] is left,
/// then in proportion to what is left, down to [`MIN_PACE_SHARE`].
pub fn pace_share(used: u64, allowed: u64) -> f64 {
    if allowed == 0 {
        return 1.0;
    }
    let headroom = allowed.saturating_sub(used) as f64 / allowed as f64;
    (headroom / PACE_BELOW_HEADROOM).clamp(MIN_PACE_SHARE, 1.0)
}

/// A header holding a whole number.
pub fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The time from now until the epoch second in header `name` (never
/// negative, at most `cap`).
pub fn until_epoch(headers: &HeaderMap, name: &str, cap: Duration) -> Option<Duration> {
    let at: i64 = headers.get(name)?.to_str().ok()?.trim().parse().ok()?;
    let at = chrono::DateTime::from_timestamp(at, 0)?;
    Some(
        (at - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(cap),
    )
}

/// Status-code-only policy: 2xx ok, 429 rate limited, 401 unauthorized,
/// 408/5xx transient, other 4xx fail with the body's text.
pub struct DefaultPolicy;

impl VendorPolicy for DefaultPolicy {
    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Verdict {
        default_classify(status, headers, body)
    }
}

pub fn default_classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Verdict {
    if status.is_success() {
        return Verdict::Ok;
    }
    match status.as_u16() {
        429 => Verdict::RateLimited(retry_after(headers)),
        401 => Verdict::Unauthorized,
        408 | 500 | 502 | 503 | 504 => Verdict::Transient,
        s => Verdict::Fail(ConnectorError::Api {
            status: s,
            code: String::new(),
            message: body_excerpt(body),
        }),
    }
}

/// The first 300 characters of a body, sanitised.
pub fn body_excerpt(body: &[u8]) -> String {
    sanitize::clean_max(&String::from_utf8_lossy(body), 300)
}

/// Parses `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs.min(86_400.0)));
        }
        return None;
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// Something the client did that the operator should see (activity pane).
#[derive(Debug, Clone)]
pub enum HttpNotice {
    RateLimited {
        connector: String,
        wait: Duration,
        attempt: u32,
    },
    Retrying {
        connector: String,
        wait: Duration,
        attempt: u32,
        reason: String,
    },
    TokenRenewed {
        connector: String,
    },
}

/// Health counters of one connector's client.
#[derive(Debug, Clone, Default)]
pub struct ClientStats {
    pub requests: u64,
    pub rate_limited: u64,
    pub retries: u64,
    pub last_rate_limited: Option<chrono::DateTime<chrono::Utc>>,
    pub last_error: Option<String>,
    pub last_auth_error: Option<String>,
    pub last_success: Option<chrono::DateTime<chrono::Utc>>,
    pub limit_info: Option<String>,
}

/// A request body. Its Debug form shows only field names: form fields
/// may carry credentials (a token to revoke).
#[derive(Clone)]
pub enum Body {
    None,
    Json(serde_json::Value),
    Form(Vec<(String, String)>),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::None => f.write_str("None"),
            Body::Json(_) => f.write_str("Json(..)"),
            Body::Form(fields) => f
                .debug_list()
                .entries(fields.iter().map(|(k, _)| format!("{k}=***")))
                .finish(),
        }
    }
}

/// One request, before it is sent (and possibly re-sent).
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    pub url: Url,
    pub body: Body,
    pub headers: Vec<(&'static str, String)>,
    /// Safe to send again after a transient failure. Rate-limit answers are
    /// always retried: the vendor did not act on the request.
    pub idempotent: bool,
    /// Send the connector's bearer token.
    pub authenticated: bool,
    /// The named token bucket this request draws from (see
    /// [`ApiClient::with_buckets`]); `None`: the connector-wide one.
    pub bucket: Option<String>,
    /// The answer holds credentials (Salesforce DeleteTokens): an error about
    /// it never quotes the body.
    pub secret_answer: bool,
    /// Its first attempt's token was taken beforehand by
    /// [`ApiClient::reserve`] (a read and the write that depends on it go
    /// out back to back); a retry draws a new one.
    pub prepaid: bool,
    /// The request body holds a credential (a token to revoke): a server may
    /// echo it, so no error about any answer to it quotes that answer,
    /// whatever the kind of error.
    pub secret_body: bool,
}

impl ApiRequest {
    pub fn new(method: Method, url: Url) -> Self {
        let idempotent = method != Method::POST;
        Self {
            method,
            url,
            body: Body::None,
            headers: Vec::new(),
            idempotent,
            authenticated: true,
            bucket: None,
            secret_answer: false,
            prepaid: false,
            secret_body: false,
        }
    }

    pub fn get(url: Url) -> Self {
        Self::new(Method::GET, url)
    }

    pub fn json(mut self, value: serde_json::Value) -> Self {
        self.body = Body::Json(value);
        self
    }

    pub fn form(mut self, fields: Vec<(String, String)>) -> Self {
        self.body = Body::Form(fields);
        self
    }

    pub fn query(mut self, pairs: &[(&str, &str)]) -> Self {
        {
            let mut q = self.url.query_pairs_mut();
            for (k, v) in pairs {
                q.append_pair(k, v);
            }
        }
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = yes;
        self
    }

    pub fn unauthenticated(mut self) -> Self {
        self.authenticated = false;
        self
    }

    /// Draws from the named bucket instead of the connector-wide one.
    pub fn bucket(mut self, name: impl Into<String>) -> Self {
        self.bucket = Some(name.into());
        self
    }

    /// Marks the answer as holding credentials: errors about it never quote
    /// it.
    pub fn secret_answer(mut self) -> Self {
        self.secret_answer = true;
        self
    }

    /// Its first attempt uses a token taken by [`ApiClient::reserve`].
    pub fn prepaid(mut self) -> Self {
        self.prepaid = true;
        self
    }
    /// Marks the body as holding a credential: no error about an answer to
    /// this request quotes that answer (servers echo requests in errors).
    pub fn secret_body(mut self) -> Self {
        self.secret_body = true;
        self
    }

    /// Whether answers to this request may be quoted in errors.
    fn quotable(&self) -> bool {
        !(self.secret_answer || self.secret_body)
    }

    /// The secret values this request carries in its body (form values and
    /// JSON strings), to keep them out of error codes.
    fn body_values(&self) -> Vec<String> {
        fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::String(s) => out.push(s.clone()),
                serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
                serde_json::Value::Object(o) => o.values().for_each(|x| strings(x, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        match &self.body {
            Body::None => {}
            Body::Json(v) => strings(v, &mut out),
            Body::Form(f) => out.extend(f.iter().map(|(_, v)| v.clone())),
        }
        out
    }
}

/// What replaces a quoted answer when the request carried a credential.
const NOT_QUOTED: &str = "answer not shown: the request carried a credential";

/// An error code taken from an answer is kept only when it looks like a
/// vendor's code (`invalid_token`, `REQUEST_LIMIT_EXCEEDED`) and shares
/// nothing with what the request carried.
fn safe_code(code: &str, carried: &[String]) -> String {
    let shaped = code.len() <= 64
        && code.starts_with(|c: char| c.is_ascii_alphabetic())
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    let overlaps = carried
        .iter()
        .filter(|v| v.len() >= 4)
        .any(|v| v.contains(code) || code.contains(v.as_str()));
    if shaped && !overlaps {
        code.to_string()
    } else {
        String::new()
    }
}

/// The error about an answer to a request whose body held a credential:
/// every text that could quote the answer is replaced; the kind, status,
/// retry time, a code that is only a code, and the operator's manual step
/// (which comes from the manifest) stay.
fn redact(e: ConnectorError, status: StatusCode, carried: &[String]) -> ConnectorError {
    match e {
        ConnectorError::Api { status, code, .. } => ConnectorError::Api {
            status,
            code: safe_code(&code, carried),
            message: NOT_QUOTED.into(),
        },
        ConnectorError::RateLimited { retry_after, .. } => ConnectorError::RateLimited {
            retry_after,
            message: NOT_QUOTED.into(),
        },
        ConnectorError::Auth(_) => {
            ConnectorError::Auth(format!("HTTP {}: {NOT_QUOTED}", status.as_u16()))
        }
        ConnectorError::Refused { code, manual, .. } => ConnectorError::Refused {
            code: safe_code(&code, carried),
            message: NOT_QUOTED.into(),
            manual,
        },
        ConnectorError::BadResponse(_) => {
            ConnectorError::BadResponse(format!("HTTP {}: {NOT_QUOTED}", status.as_u16()))
        }
        ConnectorError::Network(_) => {
            ConnectorError::Network(format!("HTTP {}: {NOT_QUOTED}", status.as_u16()))
        }
        ConnectorError::ForeignLink(_) => ConnectorError::ForeignLink(NOT_QUOTED.into()),
        ConnectorError::Config(_) => ConnectorError::Config(NOT_QUOTED.into()),
        ConnectorError::Timeout => ConnectorError::Timeout,
        ConnectorError::Deferred => ConnectorError::Deferred,
    }
}

/// A successful answer with its body read (within the size cap).
#[derive(Clone)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The request said the answer holds credentials, or carried one (an
    /// answer may echo it): the body is never quoted.
    pub secret_answer: bool,
}

impl std::fmt::Debug for ApiResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("ApiResponse");
        d.field("status", &self.status);
        if self.secret_answer {
            d.field(
                "body",
                &format_args!("<{} bytes, not shown>", self.body.len()),
            );
        } else {
            d.field("headers", &self.headers).field("body", &self.body);
        }
        d.finish()
    }
}

impl ApiResponse {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ConnectorError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            if self.secret_answer {
                // Neither the body nor serde's message (which can quote a
                // value) is shown: the answer holds credentials.
                return ConnectorError::BadResponse(format!(
                    "body is not the expected JSON ({:?} error at line {} column {}); not shown, as it holds credentials",
                    e.classify(),
                    e.line(),
                    e.column()
                ));
            }
            ConnectorError::BadResponse(format!(
                "body is not the expected JSON ({e}): {}",
                body_excerpt(&self.body)
            ))
        })
    }
}

tokio::task_local! {
    static BACKGROUND: bool;
    static PROBE: bool;
    static URGENCY: Urgency;
    static SENT: std::cell::Cell<Option<(Instant, Instant)>>;
}

/// Runs `f`, and says when the first and the last of its requests went out
/// (`None` if it sent none): what a read saw was true at some moment
/// between the two, however long its requests waited for quota.
pub async fn timed<F: std::future::Future>(f: F) -> (F::Output, Option<(Instant, Instant)>) {
    SENT.scope(std::cell::Cell::new(None), async {
        let out = f.await;
        (out, SENT.with(std::cell::Cell::get))
    })
    .await
}

/// Notes a request going out now, for [`timed`].
fn note_sent() {
    let now = Instant::now();
    let _ = SENT.try_with(|c| c.set(Some((c.get().map_or(now, |(first, _)| first), now))));
}

/// How soon a leaver's requests must go out, against other leavers'
/// requests to the same connector: each connector's client is one queue for
/// every leaver of the process (a batch, the console's queue), and serves
/// the urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Urgency {
    /// An urgent termination: its requests go before any scheduled leaver's.
    Urgent,
    /// A leaver on the usual schedule.
    #[default]
    Scheduled,
}

/// Runs `f` with its requests at this urgency (see [`Urgency`]).
pub async fn with_urgency<F: std::future::Future>(urgency: Urgency, f: F) -> F::Output {
    URGENCY.scope(urgency, f).await
}

/// Runs `f` with its requests at background priority: each takes a token
/// only while no other request of its bucket and urgency is waiting for
/// one, so reads that confirm removals (the engine's verification) never
/// delay the removals still being sent through the same bucket.
pub async fn background<F: std::future::Future>(f: F) -> F::Output {
    BACKGROUND.scope(true, f).await
}

fn is_background() -> bool {
    BACKGROUND.try_with(|b| *b).unwrap_or(false)
}

/// Runs `f` with its requests as speculative reads: at background
/// priority, and sent only with quota to spare. A request that would wait
/// for a token or a connection slot, or leave its bucket less than half
/// full, or that the vendor answers with a rate limit, is not sent (or not
/// retried) and fails with [`ConnectorError::Deferred`]. The engine's early
/// confirming reads go this way: as often as they are worth, and never at
/// the cost of a removal or of the confirming read that must follow.
pub async fn probe<F: std::future::Future>(f: F) -> F::Output {
    BACKGROUND.scope(true, PROBE.scope(true, f)).await
}

fn is_probe() -> bool {
    PROBE.try_with(|b| *b).unwrap_or(false)
}

/// How many places in a connector's queue: urgent removals, urgent
/// confirming reads, scheduled removals, scheduled confirming reads.
const RANKS: usize = 4;

/// The current task's place in the queue (0 goes first).
fn rank() -> usize {
    let urgency = URGENCY.try_with(|u| *u).unwrap_or_default();
    2 * urgency as usize + usize::from(is_background())
}

/// Counts a request waiting for a token, by rank, while it lives.
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a std::sync::atomic::AtomicUsize) -> Self {
        n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A connector's concurrency limit, handed out by rank: a freed slot goes
/// to the most urgent request waiting for one, first come first served
/// within a rank.
struct Slots {
    state: Mutex<SlotState>,
}

struct SlotState {
    free: usize,
    queues: [std::collections::VecDeque<tokio::sync::oneshot::Sender<()>>; RANKS],
}

/// A slot held; freed on drop.
struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A wait for a slot; a slot handed to it after it was given up is freed.
struct SlotWait<'a> {
    slots: &'a Slots,
    rx: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Drop for SlotWait<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                self.slots.release();
            }
        }
    }
}

impl Slots {
    fn new(n: usize) -> Self {
        Self {
            state: Mutex::new(SlotState {
                free: n.max(1),
                queues: Default::default(),
            }),
        }
    }

    async fn acquire(&self, rank: usize) -> Slot<'_> {
        let rx = {
            let mut s = self.state.lock().expect("slots lock");
            if s.free > 0 {
                s.free -= 1;
                return Slot(self);
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            s.queues[rank.min(RANKS - 1)].push_back(tx);
            rx
        };
        let mut wait = SlotWait {
            slots: self,
            rx: Some(rx),
        };
        let handed = wait.rx.as_mut().expect("set above").await;
        wait.rx = None;
        // The sender is dropped only after handing over a slot.
        debug_assert!(handed.is_ok());
        Slot(self)
    }

    /// A slot now, if one is free and nobody waits for one.
    fn try_acquire(&self) -> Option<Slot<'_>> {
        let mut s = self.state.lock().expect("slots lock");
        if s.free > 0 && s.queues.iter().all(|q| q.is_empty()) {
            s.free -= 1;
            Some(Slot(self))
        } else {
            None
        }
    }

    fn release(&self) {
        let mut s = self.state.lock().expect("slots lock");
        for q in s.queues.iter_mut() {
            while let Some(tx) = q.pop_front() {
                if tx.send(()).is_ok() {
                    return;
                }
            }
        }
        s.free += 1;
    }
}

/// Hosts working each connector's app at once (team mode, from their
/// heartbeats in the shared store): each takes 1 / hosts of the configured
/// rate and burst, so together they stay within the vendor's limit.
fn team_hosts(connector: &str) -> Arc<std::sync::atomic::AtomicU32> {
    static HOSTS: std::sync::OnceLock<Mutex<HashMap<String, Arc<std::sync::atomic::AtomicU32>>>> =
        std::sync::OnceLock::new();
    HOSTS
        .get_or_init(Default::default)
        .lock()
        .expect("team hosts lock")
        .entry(connector.to_string())
        .or_insert_with(|| Arc::new(std::sync::atomic::AtomicU32::new(1)))
        .clone()
}

/// Sets how many live hosts share `connector`'s quota (at least 1).
pub fn set_team_hosts(connector: &str, hosts: u32) {
    let cell = team_hosts(connector);
    let before = cell.swap(hosts.max(1), std::sync::atomic::Ordering::Relaxed);
    if before != hosts.max(1) {
        tracing::info!(
            connector,
            hosts = hosts.max(1),
            "quota shared with the other hosts working this app"
        );
    }
}

/// Token bucket shared by one connector's requests, with a pause that a
/// rate-limit answer sets for everyone ("slower when the API asks").
struct RateLimiter {
    rate: f64,
    burst: f64,
    /// Hosts sharing the quota ([`set_team_hosts`]).
    hosts: Arc<std::sync::atomic::AtomicU32>,
    state: Mutex<BucketState>,
    /// Requests waiting for a token, by rank: one takes a token only while
    /// no more urgent one waits.
    waiting: [std::sync::atomic::AtomicUsize; RANKS],
}

struct BucketState {
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
    /// Share of the rate (and burst) in force: below 1 while the vendor's
    /// allocation is nearly spent ([`pace_share`]).
    share: f64,
}

impl RateLimiter {
    fn new(rate: f64, burst: u32, hosts: Arc<std::sync::atomic::AtomicU32>) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: if rate > 0.0 { rate } else { f64::INFINITY },
            burst,
            hosts,
            state: Mutex::new(BucketState {
                tokens: burst,
                last: Instant::now(),
                paused_until: None,
                share: 1.0,
            }),
            waiting: Default::default(),
        }
    }

    /// Whether a request of a more urgent rank than `rank` waits for a token.
    fn outranked(&self, rank: usize) -> bool {
        self.waiting[..rank]
            .iter()
            .any(|n| n.load(std::sync::atomic::Ordering::SeqCst) > 0)
    }

    async fn acquire(&self) {
        let rank = rank();
        let _waiting = Waiting::new(&self.waiting[rank]);
        loop {
            let wait = {
                let mut s = self.state.lock().expect("rate limiter lock");
                let now = Instant::now();
                if let Some(until) = s.paused_until {
                    if until > now {
                        Some(until - now)
                    } else {
                        s.paused_until = None;
                        None
                    }
                } else {
                    None
                }
                .or_else(|| {
                    if self.outranked(rank) {
                        return Some(Duration::from_millis(10));
                    }
                    let (rate, _) = self.refill(&mut s, now);
                    if s.tokens >= 1.0 {
                        s.tokens -= 1.0;
                        None
                    } else {
                        Some(Duration::from_secs_f64((1.0 - s.tokens) / rate))
                    }
                })
            };
            match wait {
                None => return,
                Some(d) => tokio::time::sleep(d).await,
            }
        }
    }

    /// Adds the tokens earned since the last look; returns the rate and
    /// burst in force (the vendor's share, split between team hosts).
    fn refill(&self, s: &mut BucketState, now: Instant) -> (f64, f64) {
        let elapsed = now.duration_since(s.last).as_secs_f64();
        let team = f64::from(self.hosts.load(std::sync::atomic::Ordering::Relaxed).max(1));
        let rate = self.rate * s.share / team;
        let burst = (self.burst * s.share / team).max(1.0);
        s.tokens = (s.tokens + elapsed * rate).min(burst);
        s.last = now;
        (rate, burst)
    }

    /// A token for a speculative read ([`probe`]), taken only when nothing
    /// waits for one and the bucket stays at least half full after it.
    fn try_spare(&self) -> bool {
        let mut s = self.state.lock().expect("rate limiter lock");
        let now = Instant::now();
        if s.paused_until.is_some_and(|u| u > now)
            || self
                .waiting
                .iter()
                .any(|n| n.load(std::sync::atomic::Ordering::SeqCst) > 0)
        {
            return false;
        }
        let (_, burst) = self.refill(&mut s, now);
        if s.tokens >= 1.0 + burst / 2.0 {
            s.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Sets the share of the rate in force (see [`pace_share`]); returns
    /// the one it replaces.
    fn set_share(&self, share: f64) -> f64 {
        let mut s = self.state.lock().expect("rate limiter lock");
        let now = Instant::now();
        // Tokens earned so far at the old rate are kept, within the new burst.
        let elapsed = now.duration_since(s.last).as_secs_f64();
        let burst = (self.burst * share).max(1.0);
        s.tokens = (s.tokens + elapsed * self.rate * s.share).min(burst);
        s.last = now;
        std::mem::replace(&mut s.share, share)
    }

    fn pause(&self, d: Duration) {
        let mut s = self.state.lock().expect("rate limiter lock");
        let until = Instant::now() + d;
        if s.paused_until.is_none_or(|p| p < until) {
            s.paused_until = Some(until);
        }
    }

    /// How much longer a rate-limit answer keeps this bucket paused.
    fn paused_for(&self) -> Option<Duration> {
        let s = self.state.lock().expect("rate limiter lock");
        let now = Instant::now();
        s.paused_until.filter(|u| *u > now).map(|u| u - now)
    }
}

/// A named bucket's rate: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketRate {
    pub per_second: f64,
    pub burst: u32,
}

impl BucketRate {
    pub fn per_minute(per_minute: f64, burst: u32) -> Self {
        Self {
            per_second: per_minute / 60.0,
            burst,
        }
    }
}

/// One connector's view of the shared client.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    settings: Arc<HttpSettings>,
    /// Origins this connector may talk to (its configured base URLs).
    origins: Arc<Vec<url::Origin>>,
    auth: Option<Arc<dyn TokenSource>>,
    policy: Arc<dyn VendorPolicy>,
    limiter: Arc<RateLimiter>,
    /// Named buckets a request may draw from instead of `limiter`.
    buckets: Arc<HashMap<String, Arc<RateLimiter>>>,
    /// The connector's concurrency limit, served by urgency.
    permits: Arc<Slots>,
    notices: Option<mpsc::UnboundedSender<HttpNotice>>,
    stats: Arc<Mutex<ClientStats>>,
    /// The `Authorization` scheme the token goes in (`Bearer`; Okta API
    /// tokens: `SSWS`).
    scheme: &'static str,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("connector", &self.settings.connector)
            .finish_non_exhaustive()
    }
}

/// Builds the process-wide reqwest client: rustls, no redirects (a redirect
/// could carry the bearer token elsewhere), connection pooling.
pub fn shared_reqwest() -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .user_agent(concat!("offboard/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the TLS backend initialises")
}

impl ApiClient {
    pub fn new(
        http: reqwest::Client,
        settings: HttpSettings,
        bases: &[Url],
        auth: Option<Arc<dyn TokenSource>>,
        policy: Arc<dyn VendorPolicy>,
        notices: Option<mpsc::UnboundedSender<HttpNotice>>,
    ) -> Self {
        let origins = bases.iter().map(Url::origin).collect();
        Self {
            http,
            limiter: Arc::new(RateLimiter::new(
                settings.requests_per_second,
                settings.burst,
                team_hosts(&settings.connector),
            )),
            buckets: Arc::new(HashMap::new()),
            permits: Arc::new(Slots::new(settings.max_concurrency)),
            settings: Arc::new(settings),
            origins: Arc::new(origins),
            auth,
            policy,
            notices,
            stats: Arc::new(Mutex::new(ClientStats::default())),
            scheme: "Bearer",
        }
    }

    /// Sends the token under another `Authorization` scheme than `Bearer`
    /// (Okta API tokens: `SSWS`). The same host checks apply.
    pub fn with_auth_scheme(mut self, scheme: &'static str) -> Self {
        self.scheme = scheme;
        self
    }

    pub fn connector(&self) -> &str {
        &self.settings.connector
    }

    /// Adds named token buckets (e.g. one per vendor rate-limit tier). A
    /// request naming one draws from it instead of the connector-wide bucket,
    /// and a rate-limit answer to it pauses only that bucket.
    pub fn with_buckets(mut self, buckets: impl IntoIterator<Item = (String, BucketRate)>) -> Self {
        let mut map: HashMap<String, Arc<RateLimiter>> = (*self.buckets).clone();
        for (name, r) in buckets {
            map.insert(
                name,
                Arc::new(RateLimiter::new(
                    r.per_second,
                    r.burst,
                    team_hosts(&self.settings.connector),
                )),
            );
        }
        self.buckets = Arc::new(map);
        self
    }

    /// How much longer a rate-limit answer keeps a bucket paused (`None`
    /// names the connector-wide bucket). `None` when it is not paused or
    /// there is no such bucket.
    pub fn paused_for(&self, bucket: Option<&str>) -> Option<Duration> {
        match bucket {
            None => self.limiter.paused_for(),
            Some(b) => self.buckets.get(b)?.paused_for(),
        }
    }

    /// Takes one token from each named bucket (`None`: the connector's),
    /// waiting as each needs, for requests sent right after with
    /// [`ApiRequest::prepaid`]: a read-then-write pair reserves both, so the
    /// write follows its read at once instead of waiting for its bucket
    /// between them.
    pub async fn reserve(&self, buckets: &[Option<&str>]) {
        for b in buckets {
            self.limiter_named(*b).acquire().await;
        }
    }

    /// The bucket a request draws from: its named one, or the connector's.
    fn limiter_for(&self, req: &ApiRequest) -> &RateLimiter {
        self.limiter_named(req.bucket.as_deref())
    }

    fn limiter_named(&self, bucket: Option<&str>) -> &RateLimiter {
        match bucket {
            None => &self.limiter,
            Some(name) => match self.buckets.get(name) {
                Some(l) => l,
                None => {
                    tracing::warn!(connector = %self.settings.connector, bucket = name, "no such rate bucket; using the connector's");
                    &self.limiter
                }
            },
        }
    }

    pub fn stats(&self) -> ClientStats {
        self.stats.lock().expect("stats lock").clone()
    }

    /// Paces the connector by what the vendor reports of its allocation
    /// ([`pacing`]), before the vendor has to refuse a request: a rolling
    /// allocation counts every request, whichever bucket it draws from, so
    /// its share applies to every bucket; a window's hold applies to the
    /// bucket the answer came through.
    fn pace(&self, limiter: &RateLimiter, info: &LimitInfo) {
        match pacing(info) {
            None => {}
            Some(Pacing::Hold(hold)) => {
                tracing::debug!(connector = %self.settings.connector, ?hold, "pacing to the vendor's rate-limit window");
                limiter.pause(hold);
            }
            Some(Pacing::Share(share)) => {
                let before = self.limiter.set_share(share);
                for b in self.buckets.values() {
                    b.set_share(share);
                }
                if (before - share).abs() > f64::EPSILON && (before == 1.0 || share == 1.0) {
                    tracing::info!(
                        connector = %self.settings.connector,
                        usage = ?info.usage,
                        share,
                        "allocation nearly spent: pacing at a share of the configured rate"
                    );
                }
            }
        }
    }

    /// The share of its configured rate the client keeps now (1 unless the
    /// vendor reported a nearly spent allocation).
    pub fn pace_share(&self) -> f64 {
        self.limiter.state.lock().expect("rate limiter lock").share
    }

    pub fn reqwest(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn token_source(&self) -> Option<&Arc<dyn TokenSource>> {
        self.auth.as_ref()
    }

    /// `base` with each segment appended, percent-encoded (so `/`, `?`, `#`,
    /// `%` and spaces in user values cannot change the path). A segment that
    /// is `.` or `..` is refused: URLs cannot carry it, it would move the path.
    pub fn url(&self, base: &Url, segments: &[&str]) -> Result<Url, ConnectorError> {
        join_segments(base, segments)
    }

    /// Resolves a next-page link (absolute or relative to `base`) and refuses
    /// it unless it stays on one of the connector's configured origins.
    pub fn resolve_link(&self, base: &Url, link: &str) -> Result<Url, ConnectorError> {
        let url = base
            .join(link)
            .map_err(|e| ConnectorError::BadResponse(format!("bad next-page link: {e}")))?;
        if !self.origins.contains(&url.origin()) {
            return Err(ConnectorError::ForeignLink(sanitize::clean_max(
                &url.origin().ascii_serialization(),
                120,
            )));
        }
        Ok(url)
    }

    /// GET and decode JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, url: Url) -> Result<T, ConnectorError> {
        self.send(ApiRequest::get(url)).await?.json()
    }

    /// Sends with retries, backoff, rate limiting and token renewal.
    pub async fn send(&self, req: ApiRequest) -> Result<ApiResponse, ConnectorError> {
        if !self.origins.contains(&req.url.origin()) {
            // Never send a request, and so never a token, off the configured hosts.
            return Err(ConnectorError::ForeignLink(sanitize::clean_max(
                &req.url.origin().ascii_serialization(),
                120,
            )));
        }
        let span = tracing::debug_span!(
            "http",
            connector = %self.settings.connector,
            method = %req.method,
            path = %req.url.path()
        );
        let _enter = span.enter();
        drop(_enter);

        let mut transient_tries = 0u32;
        let mut limit_tries = 0u32;
        let mut renewed = false;
        let limiter = self.limiter_for(&req);
        // An error about an answer, as it may be shown: never quoting the
        // answer when the request carried a credential (servers echo
        // requests in their error bodies, whatever the status).
        let carried = if req.quotable() {
            Vec::new()
        } else {
            req.body_values()
        };
        let about_answer = |e: ConnectorError, status: StatusCode| {
            if req.quotable() {
                e
            } else {
                redact(e, status, &carried)
            }
        };
        loop {
            let attempt = transient_tries + limit_tries;
            let token = match (&self.auth, req.authenticated) {
                (Some(a), true) => Some(a.token().await.inspect_err(|e| {
                    self.stats.lock().expect("stats").last_auth_error = Some(e.to_string());
                })?),
                _ => None,
            };
            let outcome = if is_probe() {
                // Only with quota and a slot to spare, never waiting.
                let prepaid = req.prepaid && attempt == 0;
                if !prepaid && !limiter.try_spare() {
                    return Err(ConnectorError::Deferred);
                }
                let Some(_permit) = self.permits.try_acquire() else {
                    return Err(ConnectorError::Deferred);
                };
                self.attempt(&req, token.as_ref().map(|t| t.expose())).await
            } else if is_background() {
                // A background request takes its token before a slot, so
                // while it yields to waiting removals it holds no slot.
                if !(req.prepaid && attempt == 0) {
                    limiter.acquire().await;
                }
                let _permit = self.permits.acquire(rank()).await;
                self.attempt(&req, token.as_ref().map(|t| t.expose())).await
            } else {
                let _permit = self.permits.acquire(rank()).await;
                if !(req.prepaid && attempt == 0) {
                    limiter.acquire().await;
                }
                self.attempt(&req, token.as_ref().map(|t| t.expose())).await
            };
            self.stats.lock().expect("stats").requests += 1;
            let (status, headers, body) = match outcome {
                Ok(r) => r,
                Err(AttemptError::Final(e)) => {
                    self.record_error(&e);
                    return Err(e);
                }
                Err(AttemptError::Transient(e)) => {
                    if req.idempotent && !is_probe() && transient_tries < self.settings.max_retries
                    {
                        transient_tries += 1;
                        let wait = self.backoff(transient_tries);
                        self.notice_retry(attempt + 1, wait, &e.to_string());
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    self.record_error(&e);
                    return Err(e);
                }
            };
            if let Some(info) = self.policy.limit_info(&headers) {
                self.pace(limiter, &info);
                self.stats.lock().expect("stats").limit_info = Some(info.text);
            }
            match self.policy.classify(status, &headers, &body) {
                Verdict::Ok if is_cut_off(&req, &headers, &body) => {
                    // A read answered 200 whose JSON ends early (a proxy or
                    // a dropped connection cut it): transient, like a reset.
                    let e = ConnectorError::BadResponse(if !req.quotable() {
                        "the answer was cut off (its JSON body ends early); not shown, as it may hold credentials".into()
                    } else {
                        format!(
                            "the answer was cut off (its JSON body ends early): {}",
                            body_excerpt(&body)
                        )
                    });
                    if !is_probe() && transient_tries < self.settings.max_retries {
                        transient_tries += 1;
                        let wait = self.backoff(transient_tries);
                        self.notice_retry(attempt + 1, wait, "answer cut off");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    self.record_error(&e);
                    return Err(e);
                }
                Verdict::Ok => {
                    self.stats.lock().expect("stats").last_success = Some(chrono::Utc::now());
                    return Ok(ApiResponse {
                        status,
                        headers,
                        body,
                        secret_answer: !req.quotable(),
                    });
                }
                Verdict::RateLimited(after) => {
                    {
                        let mut s = self.stats.lock().expect("stats");
                        s.rate_limited += 1;
                        s.last_rate_limited = Some(chrono::Utc::now());
                    }
                    let wait = match after {
                        Some(d) => d + jitter(Duration::from_millis(50)),
                        None => self.backoff(limit_tries + 1),
                    };
                    if is_probe() {
                        // Everyone waits the pause; the speculative read
                        // itself is given up.
                        limiter.pause(wait);
                        return Err(ConnectorError::Deferred);
                    }
                    if limit_tries >= self.settings.max_rate_limit_retries
                        || wait > self.settings.max_retry_after
                    {
                        let e = about_answer(
                            ConnectorError::RateLimited {
                                retry_after: after,
                                message: body_excerpt(&body),
                            },
                            status,
                        );
                        self.record_error(&e);
                        return Err(e);
                    }
                    limit_tries += 1;
                    limiter.pause(wait);
                    if let Some(tx) = &self.notices {
                        let _ = tx.send(HttpNotice::RateLimited {
                            connector: self.settings.connector.clone(),
                            wait,
                            attempt: limit_tries,
                        });
                    }
                    tracing::info!(connector = %self.settings.connector, ?wait, "rate limited; waiting");
                    tokio::time::sleep(wait).await;
                }
                Verdict::Transient => {
                    let e = about_answer(
                        ConnectorError::Api {
                            status: status.as_u16(),
                            code: String::new(),
                            message: body_excerpt(&body),
                        },
                        status,
                    );
                    if req.idempotent && !is_probe() && transient_tries < self.settings.max_retries
                    {
                        transient_tries += 1;
                        let wait = retry_after(&headers)
                            .filter(|d| *d <= self.settings.max_retry_after)
                            .unwrap_or_else(|| self.backoff(transient_tries));
                        self.notice_retry(attempt + 1, wait, &format!("HTTP {status}"));
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    self.record_error(&e);
                    return Err(e);
                }
                Verdict::Unauthorized => {
                    if let (Some(a), Some(t), false) = (&self.auth, token, renewed) {
                        renewed = true;
                        a.invalidate(&t).await;
                        if let Some(tx) = &self.notices {
                            let _ = tx.send(HttpNotice::TokenRenewed {
                                connector: self.settings.connector.clone(),
                            });
                        }
                        continue;
                    }
                    let e = about_answer(
                        ConnectorError::Auth(format!(
                            "HTTP {}: {}",
                            status.as_u16(),
                            body_excerpt(&body)
                        )),
                        status,
                    );
                    self.stats.lock().expect("stats").last_auth_error = Some(e.to_string());
                    return Err(e);
                }
                Verdict::Fail(e) => {
                    let e = about_answer(e, status);
                    if matches!(e, ConnectorError::Auth(_)) {
                        self.stats.lock().expect("stats").last_auth_error = Some(e.to_string());
                    }
                    return Err(e);
                }
            }
        }
    }

    fn record_error(&self, e: &ConnectorError) {
        self.stats.lock().expect("stats").last_error = Some(e.to_string());
    }

    fn notice_retry(&self, attempt: u32, wait: Duration, reason: &str) {
        self.stats.lock().expect("stats").retries += 1;
        tracing::info!(connector = %self.settings.connector, attempt, ?wait, reason, "retrying");
        if let Some(tx) = &self.notices {
            let _ = tx.send(HttpNotice::Retrying {
                connector: self.settings.connector.clone(),
                wait,
                attempt,
                reason: reason.to_string(),
            });
        }
    }

    /// Exponential backoff with full jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .settings
            .base_backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.settings.max_backoff);
        // Full jitter, but never less than half the base, so that a server
        // that is still recovering is not hammered.
        self.settings.base_backoff / 2 + jitter(cap)
    }

    async fn attempt(
        &self,
        req: &ApiRequest,
        token: Option<&str>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), AttemptError> {
        let mut builder = self
            .http
            .request(req.method.clone(), req.url.clone())
            .timeout(self.settings.timeout);
        if let Some(t) = token {
            let mut v = HeaderValue::from_str(&format!("{} {t}", self.scheme)).map_err(|_| {
                AttemptError::Final(ConnectorError::Auth(
                    "token is not a valid header value".into(),
                ))
            })?;
            v.set_sensitive(true);
            builder = builder.header(AUTHORIZATION, v);
        }
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        builder = match &req.body {
            Body::None => builder,
            Body::Json(v) => builder.json(v),
            Body::Form(f) => builder.form(f),
        };
        note_sent();
        let resp = builder.send().await.map_err(classify_send_error)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let cap = self.settings.max_body_bytes;
        if resp.content_length().is_some_and(|n| n as usize > cap) {
            return Err(AttemptError::Final(ConnectorError::BadResponse(format!(
                "response larger than {cap} bytes"
            ))));
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(classify_send_error)?;
            if body.len() + chunk.len() > cap {
                return Err(AttemptError::Final(ConnectorError::BadResponse(format!(
                    "response larger than {cap} bytes"
                ))));
            }
            body.extend_from_slice(&chunk);
        }
        tracing::debug!(connector = %self.settings.connector, status = status.as_u16(), bytes = body.len(), "answer");
        Ok((status, headers, Bytes::from(body)))
    }
}

/// Whether a successful answer to a read is JSON that ends early: a
/// truncated body (never a merely unexpected one, which is not retried).
fn is_cut_off(req: &ApiRequest, headers: &HeaderMap, body: &[u8]) -> bool {
    if req.method != Method::GET || body.is_empty() {
        return false;
    }
    let json = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
    json && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err_and(|e| e.is_eof())
}

enum AttemptError {
    Transient(ConnectorError),
    Final(ConnectorError),
}

fn classify_send_error(e: reqwest::Error) -> AttemptError {
    // reqwest errors may carry the URL (never headers); the URL holds no secret
    // in any driver, but keep only the kind of failure to be safe.
    if e.is_timeout() {
        AttemptError::Transient(ConnectorError::Timeout)
    } else if e.is_connect() || e.is_request() || e.is_body() {
        AttemptError::Transient(ConnectorError::Network(describe(&e)))
    } else if e.is_decode() {
        AttemptError::Final(ConnectorError::BadResponse(describe(&e)))
    } else {
        AttemptError::Transient(ConnectorError::Network(describe(&e)))
    }
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut parts = Vec::new();
    let mut src: Option<&dyn Error> = e.source();
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    let kind = if e.is_connect() {
        "connection failed"
    } else if e.is_body() {
        "connection dropped while reading"
    } else {
        "request failed"
    };
    if parts.is_empty() {
        kind.to_string()
    } else {
        sanitize::clean_max(&format!("{kind}: {}", parts.join(": ")), 200)
    }
}

fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return max;
    }
    let nanos = rand::random_range(0..=max.as_nanos().min(u128::from(u64::MAX)) as u64);
    Duration::from_nanos(nanos)
}

/// Appends percent-encoded segments to a base URL's path. A `.` or `..`
/// segment (in any spelling a URL parser reads as one, such as `%2e`) is
/// refused: a URL cannot carry it, the parser would drop it or climb a level,
/// and a request meant for one object would go to another.
pub fn join_segments(base: &Url, segments: &[&str]) -> Result<Url, ConnectorError> {
    if let Some(bad) = segments.iter().find(|s| {
        let lower = s.to_ascii_lowercase().replace("%2e", ".");
        lower == "." || lower == ".."
    }) {
        return Err(ConnectorError::BadResponse(format!(
            "refusing a URL path segment `{}`: it would change which object the request is for",
            sanitize::clean_max(bad, 20)
        )));
    }
    let mut url = base.clone();
    {
        let mut path = url
            .path_segments_mut()
            .expect("base URLs are http(s) URLs, which have paths");
        path.pop_if_empty();
        path.extend(segments);
    }
    Ok(url)
}

/// The target of an RFC 8288 `Link` header's `rel="next"` entry (Okta,
/// GitHub), unresolved: give it to [`ApiClient::resolve_link`], which
/// refuses another origin. Several `Link` headers and several entries in
/// one header are both read; `rel` may hold several space-separated types.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(text) = value.to_str() else { continue };
        let mut rest = text;
        while let Some(start) = rest.find('<') {
            let Some(end) = rest[start..].find('>') else {
                break;
            };
            let target = &rest[start + 1..start + end];
            let after = &rest[start + end + 1..];
            // An entry's parameters run to the next entry's `<`.
            let params_end = after.find('<').unwrap_or(after.len());
            // Entries in one header are separated by commas (GitHub).
            let params = after[..params_end].trim_end().trim_end_matches(',');
            let is_next = params.split(';').any(|p| {
                let Some((k, v)) = p.trim().split_once('=') else {
                    return false;
                };
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
            });
            if is_next {
                return Some(target.to_string());
            }
            rest = &after[params_end..];
        }
    }
    None
}

/// Stops pagination on a repeated page token, an endless run of pages, or
/// (with [`ApiClient::resolve_link`]) a link to another origin.
#[derive(Debug, Default)]
pub struct PageGuard {
    seen: HashSet<String>,
    pages: usize,
}

impl PageGuard {
    /// At most this many pages for one listing.
    pub const MAX_PAGES: usize = 10_000;

    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the token or link the API gave for the next page. `None` or an
    /// empty string ends the listing. A token seen before is an error: the
    /// listing would never end, and what was read is not the whole list.
    pub fn next(&mut self, token: Option<&str>) -> Result<Option<String>, ConnectorError> {
        self.pages += 1;
        let Some(t) = token.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        if self.pages >= Self::MAX_PAGES {
            return Err(ConnectorError::BadResponse(format!(
                "more than {} pages; stopping",
                Self::MAX_PAGES
            )));
        }
        if !self.seen.insert(t.to_string()) {
            return Err(ConnectorError::BadResponse(
                "the API repeated a page token; the listing is incomplete".into(),
            ));
        }
        Ok(Some(t.to_string()))
    }

    pub fn pages(&self) -> usize {
        self.pages
    }
}

/// Index paging (SCIM `startIndex`/`count`/`totalResults`) that ends
/// safely on servers whose `totalResults` is wrong: an empty page ends the
/// listing; a page reaching the reported total ends it only when it is
/// short (a total reported too low cannot cut a listing off while pages
/// stay full); a page of nothing but items already seen (a server that
/// ignores `startIndex`) is an error, not an endless loop; and at most
/// [`PageGuard::MAX_PAGES`] pages.
#[derive(Debug)]
pub struct IndexPager {
    next: usize,
    count: usize,
    seen: HashSet<String>,
    pages: usize,
}

impl IndexPager {
    /// Pages of `count` items, from index 1.
    pub fn new(count: usize) -> Self {
        Self {
            next: 1,
            count: count.max(1),
            seen: HashSet::new(),
            pages: 0,
        }
    }

    /// The `startIndex` of the next page (1-based).
    pub fn start_index(&self) -> usize {
        self.next
    }

    /// The `count` to ask for.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Takes one page (the ids of its items and the reported total): true
    /// when another page must be read.
    pub fn page(&mut self, ids: &[String], total: Option<u64>) -> Result<bool, ConnectorError> {
        self.pages += 1;
        if ids.is_empty() {
            return Ok(false);
        }
        let fresh = ids
            .iter()
            .filter(|id| self.seen.insert((*id).clone()))
            .count();
        if fresh == 0 {
            return Err(ConnectorError::BadResponse(
                "the API answered a page of items already listed (startIndex ignored?); the listing is incomplete".into(),
            ));
        }
        self.next += ids.len();
        let reached = total.is_some_and(|t| self.seen.len() as u64 >= t);
        if reached && ids.len() < self.count {
            return Ok(false);
        }
        if self.pages >= PageGuard::MAX_PAGES {
            return Err(ConnectorError::BadResponse(format!(
                "more than {} pages; stopping",
                PageGuard::MAX_PAGES
            )));
        }
        Ok(true)
    }

    /// Items seen so far.
    pub fn seen(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_background_request_yields_its_bucket_to_waiting_ones() {
        let l = Arc::new(RateLimiter::new(
            20.0,
            1,
            Arc::new(std::sync::atomic::AtomicU32::new(1)),
        ));
        l.acquire().await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let run = |name: &'static str, bg: bool| {
            let (l, order) = (l.clone(), order.clone());
            tokio::spawn(async move {
                let take = async {
                    l.acquire().await;
                    order.lock().unwrap().push(name);
                };
                if bg {
                    background(take).await
                } else {
                    take.await
                }
            })
        };
        // The background read asks first; the two removals still go first.
        let b = run("read", true);
        tokio::task::yield_now().await;
        let f1 = run("write 1", false);
        let f2 = run("write 2", false);
        for t in [b, f1, f2] {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["write 1", "write 2", "read"]);
    }

    #[tokio::test]
    async fn an_urgent_request_takes_the_next_slot_and_token() {
        let slots = Arc::new(Slots::new(1));
        let l = Arc::new(RateLimiter::new(
            50.0,
            1,
            Arc::new(std::sync::atomic::AtomicU32::new(1)),
        ));
        let held = slots.acquire(2).await;
        l.acquire().await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let run = |name: &'static str, urgency: Urgency| {
            let (slots, l, order) = (slots.clone(), l.clone(), order.clone());
            tokio::spawn(with_urgency(urgency, async move {
                let _slot = slots.acquire(rank()).await;
                l.acquire().await;
                order.lock().unwrap().push(name);
            }))
        };
        // Two scheduled leavers queue first; the urgent one still goes first.
        let s1 = run("scheduled 1", Urgency::Scheduled);
        let s2 = run("scheduled 2", Urgency::Scheduled);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let u = run("urgent", Urgency::Urgent);
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(held);
        for t in [s1, s2, u] {
            t.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["urgent", "scheduled 1", "scheduled 2"]
        );
        // A wait given up hands its slot on rather than losing it.
        let held = slots.acquire(0).await;
        let gave_up = tokio::time::timeout(Duration::from_millis(5), slots.acquire(0)).await;
        assert!(gave_up.is_err());
        drop(held);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), slots.acquire(3))
                .await
                .is_ok()
        );
    }

    #[test]
    fn the_last_tenth_of_an_allocation_is_spent_ever_more_slowly() {
        assert_eq!(pace_share(0, 15000), 1.0);
        assert_eq!(pace_share(13500, 15000), 1.0);
        assert!((pace_share(14250, 15000) - 0.5).abs() < 1e-9);
        assert!((pace_share(14850, 15000) - 0.1).abs() < 1e-9);
        assert_eq!(pace_share(15000, 15000), MIN_PACE_SHARE);
        assert_eq!(pace_share(20000, 15000), MIN_PACE_SHARE);
        assert_eq!(pace_share(5, 0), 1.0);
    }

    #[test]
    fn index_paging_ends_on_an_empty_page_whatever_the_total_says() {
        let ids = |r: std::ops::Range<u32>| r.map(|i| i.to_string()).collect::<Vec<_>>();
        // Honest: a short page reaching the total ends it.
        let mut p = IndexPager::new(2);
        assert!(p.page(&ids(0..2), Some(3)).unwrap());
        assert_eq!(p.start_index(), 3);
        assert!(!p.page(&ids(2..3), Some(3)).unwrap());
        // Too high: only the empty page ends it.
        let mut p = IndexPager::new(2);
        assert!(p.page(&ids(0..2), Some(99)).unwrap());
        assert!(p.page(&ids(2..3), Some(99)).unwrap());
        assert!(!p.page(&[], Some(99)).unwrap());
        // Too low: full pages keep it going.
        let mut p = IndexPager::new(2);
        assert!(p.page(&ids(0..2), Some(1)).unwrap());
        assert!(p.page(&ids(2..4), Some(1)).unwrap());
        assert!(!p.page(&ids(4..5), Some(1)).unwrap());
        assert_eq!(p.seen(), 5);
        // The same page again: an error, not a loop.
        let mut p = IndexPager::new(2);
        assert!(p.page(&ids(0..2), Some(9)).unwrap());
        assert!(p.page(&ids(0..2), Some(9)).is_err());
    }

    #[test]
    fn segments_are_percent_encoded() {
        let base = Url::parse("http://127.0.0.1:1/admin/directory/v1/").unwrap();
        let u =
            join_segments(&base, &["users", "o'hara/x?y#z%20 w@example.com", "tokens"]).unwrap();
        assert_eq!(
            u.path(),
            "/admin/directory/v1/users/o'hara%2Fx%3Fy%23z%2520%20w@example.com/tokens"
        );
        assert!(u.query().is_none());
    }

    #[test]
    fn dot_segments_are_refused_not_dropped() {
        let base = Url::parse("http://127.0.0.1:1/admin/directory/v1/").unwrap();
        for id in ["..", ".", "%2e%2E", ".%2e", "%2E"] {
            assert!(
                join_segments(&base, &["users", "dana", "tokens", id]).is_err(),
                "{id}"
            );
            assert!(join_segments(&base, &["users", id, "tokens", "x"]).is_err());
        }
        let u = join_segments(&base, &["users", "...", "a.b", ".x"]).unwrap();
        assert_eq!(u.path(), "/admin/directory/v1/users/.../a.b/.x");
    }

    #[test]
    fn request_debug_hides_form_values() {
        let req = ApiRequest::new(
            Method::POST,
            Url::parse("http://127.0.0.1:1/revoke").unwrap(),
        )
        .form(vec![("token".into(), "00D!delete-token-value".into())]);
        let dbg = format!("{req:?}");
        assert!(!dbg.contains("delete-token-value"), "{dbg}");
        assert!(dbg.contains("token=***"), "{dbg}");
    }

    #[test]
    fn next_link_is_read_from_link_headers() {
        let mut h = HeaderMap::new();
        h.append(
            reqwest::header::LINK,
            HeaderValue::from_static(r#"<https://x.okta.com/api/v1/users?limit=2>; rel="self""#),
        );
        assert_eq!(next_link(&h), None);
        h.append(
            reqwest::header::LINK,
            HeaderValue::from_static(
                r#"<https://x.okta.com/api/v1/users?after=00u2&limit=2>; rel="next""#,
            ),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://x.okta.com/api/v1/users?after=00u2&limit=2")
        );
        let mut one = HeaderMap::new();
        one.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(r#"</a?page=1>; rel="prev first", </a?page=3>; rel=next"#),
        );
        assert_eq!(next_link(&one).as_deref(), Some("/a?page=3"));
    }

    #[test]
    fn next_link_reads_comma_separated_entries_of_one_header() {
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(
                r#"<https://api.github.com/orgs/o/teams?per_page=10&page=2>; rel="next", <https://api.github.com/orgs/o/teams?per_page=10&page=30>; rel="last""#,
            ),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/orgs/o/teams?per_page=10&page=2")
        );
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(
                r#"<https://api.github.com/x?page=1>; rel="prev", <https://api.github.com/x?page=1>; rel="first""#,
            ),
        );
        assert_eq!(next_link(&h), None);
    }

    #[test]
    fn page_guard_stops_on_repeat() {
        let mut g = PageGuard::new();
        assert_eq!(g.next(Some("a")).unwrap().as_deref(), Some("a"));
        assert_eq!(g.next(Some("b")).unwrap().as_deref(), Some("b"));
        assert!(g.next(Some("a")).is_err());
        let mut g = PageGuard::new();
        assert_eq!(g.next(Some("")).unwrap(), None);
        assert_eq!(g.next(None).unwrap(), None);
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
    }

    fn client_with_tiers() -> ApiClient {
        ApiClient::new(
            reqwest::Client::new(),
            HttpSettings::new("t"),
            &[Url::parse("http://127.0.0.1:1/").unwrap()],
            None,
            Arc::new(DefaultPolicy),
            None,
        )
        .with_buckets([
            ("slow".to_string(), BucketRate::per_minute(1.0, 2)),
            ("fast".to_string(), BucketRate::per_minute(6000.0, 50)),
        ])
    }

    fn req(bucket: Option<&str>) -> ApiRequest {
        let r = ApiRequest::get(Url::parse("http://127.0.0.1:1/x").unwrap());
        match bucket {
            Some(b) => r.bucket(b),
            None => r,
        }
    }

    #[tokio::test]
    async fn a_drained_bucket_does_not_hold_up_the_others() {
        use futures::FutureExt;
        let c = client_with_tiers();
        let slow = req(Some("slow"));
        // The burst of two is taken at once; the third must wait a minute.
        for _ in 0..2 {
            assert!(c.limiter_for(&slow).acquire().now_or_never().is_some());
        }
        assert!(c.limiter_for(&slow).acquire().now_or_never().is_none());
        // Another named bucket and the connector-wide one still answer at once.
        let fast = req(Some("fast"));
        for _ in 0..20 {
            assert!(c.limiter_for(&fast).acquire().now_or_never().is_some());
            assert!(c.limiter_for(&req(None)).acquire().now_or_never().is_some());
        }
    }

    #[tokio::test]
    async fn hosts_working_the_same_app_split_its_quota() {
        use futures::FutureExt;
        let hosts = team_hosts("quota-split-test");
        let l = RateLimiter::new(0.001, 6, hosts);
        // Three live hosts: this one takes a third of the burst of six.
        set_team_hosts("quota-split-test", 3);
        for _ in 0..2 {
            assert!(l.acquire().now_or_never().is_some());
        }
        assert!(l.acquire().now_or_never().is_none());
        // Alone again: the whole quota (what is left of the burst).
        set_team_hosts("quota-split-test", 1);
        let l = RateLimiter::new(0.001, 6, team_hosts("quota-split-test"));
        for _ in 0..6 {
            assert!(l.acquire().now_or_never().is_some());
        }
        assert!(l.acquire().now_or_never().is_none());
    }

    #[tokio::test]
    async fn a_reservation_takes_its_tokens_up_front() {
        use futures::FutureExt;
        let c = client_with_tiers();
        c.reserve(&[Some("slow"), Some("slow")])
            .now_or_never()
            .expect("the burst of two is reserved at once");
        assert!(
            c.limiter_for(&req(Some("slow")))
                .acquire()
                .now_or_never()
                .is_none()
        );
        assert!(c.reserve(&[Some("fast"), None]).now_or_never().is_some());
    }

    #[tokio::test]
    async fn a_pause_holds_only_its_bucket() {
        use futures::FutureExt;
        let c = client_with_tiers();
        c.limiter_for(&req(Some("slow")))
            .pause(Duration::from_secs(30));
        assert!(c.paused_for(Some("slow")).unwrap() > Duration::from_secs(29));
        assert_eq!(c.paused_for(Some("fast")), None);
        assert_eq!(c.paused_for(None), None);
        assert!(
            c.limiter_for(&req(Some("slow")))
                .acquire()
                .now_or_never()
                .is_none()
        );
        assert!(
            c.limiter_for(&req(Some("fast")))
                .acquire()
                .now_or_never()
                .is_some()
        );
        // A bucket nobody configured falls back to the connector-wide one.
        assert!(std::ptr::eq(
            c.limiter_for(&req(Some("nonesuch"))),
            c.limiter_for(&req(None))
        ));
    }

    #[test]
    fn foreign_links_refused() {
        let base = Url::parse("http://127.0.0.1:8700/services/data/v62.0/query").unwrap();
        let c = ApiClient::new(
            reqwest::Client::new(),
            HttpSettings::new("t"),
            &[Url::parse("http://127.0.0.1:8700/").unwrap()],
            None,
            Arc::new(DefaultPolicy),
            None,
        );
        assert!(
            c.resolve_link(&base, "/services/data/v62.0/query/01g-2000")
                .is_ok()
        );
        assert!(matches!(
            c.resolve_link(&base, "http://evil.example:8700/x"),
            Err(ConnectorError::ForeignLink(_))
        ));
        assert!(c.resolve_link(&base, "http://127.0.0.1:8701/x").is_err());
    }
}
