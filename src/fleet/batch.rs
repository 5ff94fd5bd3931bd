//! Batches of leavers: the input file, the cap, and the circuit breaker.
//! The batch itself runs in one engine, so every leaver shares each
//! connector's client (and with it the vendor's quota).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::connector::http::{HttpNotice, Urgency};
use crate::engine::{Engine, Event, Selection, Summary};
use crate::model::GrantState;
use crate::sanitize::{clean, clean_max};

use super::roster::{self, RosterConfig};

/// The guardrails (config `[batch]`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_batch: usize,
    pub max_share: f64,
    pub concurrency: usize,
    pub breaker_failures: usize,
    pub breaker_window: usize,
}

impl Limits {
    pub fn from_config(c: &crate::config::BatchConfig) -> Limits {
        Limits {
            max_batch: c.max_batch,
            max_share: c.max_share,
            concurrency: c.concurrency.max(1),
            breaker_failures: c.breaker_failures.max(1),
            breaker_window: c.breaker_window.max(1),
        }
    }
}

/// One leaver of a batch, and whom their data goes to (the roster's
/// manager), when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaver {
    pub email: String,
    pub manager: Option<String>,
    /// Their place in each connector's queue (see [`Urgency`]).
    pub urgency: Urgency,
}

/// The leavers of a batch file: a roster (CSV with a header that has the
/// email and status columns, or JSON Lines; read as `[roster]` says: its
/// `leaving` and `left` people, with their managers), or one address per
/// line (blank lines and `#` comments skipped; `ADDRESS urgent` marks an
/// urgent termination). In a roster, people who have `left` are urgent.
/// Urgent leavers come first, each group in file order. Any line that does
/// not parse refuses the whole batch: nothing is revoked because of a line
/// that was misread.
pub fn leavers_from_file(path: &Path, cfg: &RosterConfig) -> Result<Vec<Leaver>, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let first = text
        .trim_start_matches('\u{feff}')
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_ascii_lowercase();
    let is_roster = first.trim_start().starts_with('{')
        || (first.contains(&cfg.columns.email.to_ascii_lowercase())
            && first.contains(&cfg.columns.status.to_ascii_lowercase()));
    let mut out: Vec<Leaver> = Vec::new();
    if is_roster {
        let r = roster::load(&roster::Source::File(path.to_path_buf()), cfg)
            .map_err(|e| e.to_string())?;
        if !r.errors.is_empty() {
            return Err(r
                .errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "));
        }
        for e in r.leavers() {
            if !out.iter().any(|l| l.email == e.email) {
                out.push(Leaver {
                    email: e.email.clone(),
                    manager: e.manager.clone(),
                    urgency: if e.status == roster::Status::Left {
                        Urgency::Urgent
                    } else {
                        Urgency::Scheduled
                    },
                });
            }
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let mut words = l.split_whitespace();
            let a = words.next().unwrap_or("").to_ascii_lowercase();
            let urgency = match words.next() {
                None => Urgency::Scheduled,
                Some(w) if w.eq_ignore_ascii_case("urgent") && words.next().is_none() => {
                    Urgency::Urgent
                }
                Some(_) => {
                    return Err(format!(
                        "{name} line {}: `{}` is not an email address, optionally followed by `urgent`",
                        i + 1,
                        clean_max(l, 80)
                    ));
                }
            };
            if !is_address(&a) {
                return Err(format!(
                    "{name} line {}: `{}` is not an email address",
                    i + 1,
                    clean_max(l, 80)
                ));
            }
            if !out.iter().any(|x| x.email == a) {
                out.push(Leaver {
                    email: a,
                    manager: None,
                    urgency,
                });
            }
        }
    }
    if out.is_empty() {
        return Err(format!("{name}: no leaver in it"));
    }
    out.sort_by_key(|l| l.urgency);
    Ok(out)
}

fn is_address(s: &str) -> bool {
    s.split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
        && s.len() <= 254
        && !s.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// Each enabled connector's quota (requests a second), for the progress's
/// estimate of the time left.
pub fn quotas(loaded: &crate::config::Loaded) -> BTreeMap<String, f64> {
    loaded
        .connectors()
        .map(|cs| {
            cs.iter()
                .map(|c| (c.id.clone(), c.http_settings().requests_per_second))
                .collect()
        })
        .unwrap_or_default()
}

/// One app's share of a batch.
#[derive(Debug, Clone)]
pub struct AppShare {
    pub app: String,
    /// Leavers with an active account in the app.
    pub leavers: usize,
    /// The app's active accounts, or why they could not be counted.
    pub active: Result<usize, String>,
}

/// Why the batch needs `--confirm-count N` (empty: it does not).
pub fn cap_reasons(leavers: usize, shares: &[AppShare], limits: &Limits) -> Vec<String> {
    let mut out = Vec::new();
    if leavers > limits.max_batch {
        out.push(format!(
            "{leavers} leavers is more than [batch] max_batch = {}",
            limits.max_batch
        ));
    }
    for s in shares.iter().filter(|s| s.leavers > 0) {
        match &s.active {
            Ok(total) => {
                let share = s.leavers as f64 / (*total).max(1) as f64;
                if share > limits.max_share {
                    out.push(format!(
                        "{}: {} of its {total} active accounts ({:.0}%) is more than [batch] max_share = {:.0}%",
                        s.app,
                        s.leavers,
                        share * 100.0,
                        limits.max_share * 100.0
                    ));
                }
            }
            Err(e) => out.push(format!(
                "{}: its active accounts could not be counted ({e}), so the share cannot be checked",
                s.app
            )),
        }
    }
    out
}

/// Pauses a batch when an app starts refusing or failing: at least
/// `failures` of its last `window` requests failed (an error answer, a
/// retry, a rate-limit answer).
#[derive(Debug)]
pub struct Breaker {
    failures: usize,
    window: usize,
    recent: HashMap<String, VecDeque<bool>>,
    tripped: Option<String>,
}

impl Breaker {
    pub fn new(limits: &Limits) -> Breaker {
        Breaker {
            failures: limits.breaker_failures,
            window: limits.breaker_window,
            recent: HashMap::new(),
            tripped: None,
        }
    }

    /// Why the batch is paused, once it is.
    pub fn tripped(&self) -> Option<&str> {
        self.tripped.as_deref()
    }

    fn push(&mut self, app: &str, failed: bool) {
        let w = self.recent.entry(app.to_string()).or_default();
        w.push_back(failed);
        while w.len() > self.window {
            w.pop_front();
        }
        let n = w.iter().filter(|f| **f).count();
        if self.tripped.is_none() && n >= self.failures {
            self.tripped = Some(format!(
                "{app}: {n} of its last {} requests failed or were refused (threshold {} of {})",
                w.len(),
                self.failures,
                self.window
            ));
        }
    }

    /// Feeds one engine event.
    pub fn observe(&mut self, e: &Event) {
        match e {
            Event::Http(HttpNotice::RateLimited { connector, .. })
            | Event::Http(HttpNotice::Retrying { connector, .. }) => {
                let c = connector.clone();
                self.push(&c, true);
            }
            Event::State { key, state, .. } => {
                let app = key.split('/').next().unwrap_or("").to_string();
                match state {
                    GrantState::Failed { .. } => self.push(&app, true),
                    GrantState::Removed | GrantState::Acknowledged { .. } => self.push(&app, false),
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// What a batch would do, from a discovery of every leaver: the steps per
/// app and kind, the requests per app, and why it needs confirming.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    pub leavers: Vec<String>,
    /// (app, kind) → planned steps (manual steps included).
    pub totals: BTreeMap<(String, String), usize>,
    /// App → removals to request (API steps).
    pub requests: BTreeMap<String, usize>,
    /// Why it needs `--confirm-count` with the exact number (empty: no).
    pub reasons: Vec<String>,
}

impl Prepared {
    /// Whether `confirm` (the count typed) lets the batch go ahead.
    pub fn confirmed_by(&self, confirm: Option<usize>) -> bool {
        self.reasons.is_empty() || confirm == Some(self.leavers.len())
    }
}

/// Discovers every leaver (a few at a time), names whom each one's data
/// goes to (their manager), counts each app's share with one bulk listing,
/// and plans: nothing is changed.
pub async fn prepare(
    engine: &Arc<Engine>,
    leavers: &[Leaver],
    sel: &Selection,
    limits: &Limits,
) -> Result<Prepared, String> {
    for l in leavers {
        if let Some(m) = &l.manager {
            engine
                .set_hand_over(&l.email, m)
                .await
                .map_err(|e| format!("{}: {e}", clean(&l.email)))?;
        }
    }
    for l in leavers {
        engine.set_urgency(&l.email, l.urgency);
    }
    let emails: Vec<String> = leavers.iter().map(|l| l.email.clone()).collect();
    // Their lookups from one bulk read per app where it offers one.
    engine.look_up_many(&emails, &sel.apps);
    let found = futures::stream::iter(emails)
        .map(|email| {
            let engine = engine.clone();
            let apps = sel.apps.clone();
            async move { (email.clone(), engine.discover_apps(&email, &apps).await) }
        })
        .buffer_unordered(limits.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut active_in: BTreeMap<String, usize> = BTreeMap::new();
    for (email, r) in &found {
        let view = r.as_ref().map_err(|e| format!("{}: {e}", clean(email)))?;
        for a in &view.accounts {
            if sel.matches_app(&a.connector) && a.status.account().is_some_and(|x| x.active) {
                *active_in.entry(a.connector.clone()).or_default() += 1;
            }
        }
    }
    let connectors = engine.connector_handles();
    let mut shares = Vec::new();
    for (app, count) in &active_in {
        let Some(c) = connectors.iter().find(|c| c.id() == app) else {
            continue;
        };
        let active = c
            .list_accounts()
            .await
            .map(|v| v.iter().filter(|a| a.account.active).count())
            .map_err(|e| clean(&e.to_string()));
        shares.push(AppShare {
            app: app.clone(),
            leavers: *count,
            active,
        });
    }
    let mut out = Prepared {
        leavers: leavers.iter().map(|l| l.email.clone()).collect(),
        reasons: cap_reasons(leavers.len(), &shares, limits),
        ..Prepared::default()
    };
    for l in leavers {
        let plan = engine.plan(&l.email, sel).map_err(|e| e.to_string())?;
        for g in plan.phases.iter().flat_map(|p| &p.steps) {
            *out.totals
                .entry((g.connector.clone(), g.kind.as_str().to_string()))
                .or_default() += 1;
            if !g.is_manual() {
                *out.requests.entry(g.connector.clone()).or_default() += 1;
            }
        }
    }
    Ok(out)
}

/// How a batch ended.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Each leaver run, with its summary or why it could not run.
    pub finished: Vec<(String, Result<Summary, String>)>,
    /// Leavers the circuit breaker kept from starting.
    pub not_started: Vec<String>,
    /// Why the batch paused.
    pub paused: Option<String>,
}

impl Outcome {
    /// 0 when every leaver ran and is closed; 3 otherwise.
    pub fn exit_code(&self) -> u8 {
        let left = self
            .finished
            .iter()
            .any(|(_, r)| r.as_ref().map_or(true, |s| s.exit_code() != 0));
        if left || !self.not_started.is_empty() {
            3
        } else {
            0
        }
    }
}

/// What watches a running batch: the circuit breaker and the progress,
/// both fed every engine event by whoever receives them
/// ([`Monitor::observe`]).
#[derive(Debug)]
pub struct Monitor {
    pub breaker: Breaker,
    pub progress: Progress,
}

impl Monitor {
    pub fn new(limits: &Limits, progress: Progress) -> Monitor {
        Monitor {
            breaker: Breaker::new(limits),
            progress,
        }
    }

    pub fn observe(&mut self, e: &Event) {
        self.breaker.observe(e);
        self.progress.observe(e);
    }
}

/// Runs the leavers in one engine, at most `concurrency` at once (each
/// app's quota is shared through its one client). Once the circuit
/// breaker trips, no new leaver starts; those under way finish.
pub async fn run(
    engine: Arc<Engine>,
    leavers: Vec<String>,
    sel: Selection,
    concurrency: usize,
    monitor: Arc<Mutex<Monitor>>,
) -> Outcome {
    let mut queue: VecDeque<String> = leavers.into();
    let mut running = tokio::task::JoinSet::new();
    let mut out = Outcome::default();
    let tripped = |m: &Arc<Mutex<Monitor>>| {
        m.lock()
            .expect("monitor lock")
            .breaker
            .tripped()
            .map(str::to_string)
    };
    loop {
        while tripped(&monitor).is_none() && running.len() < concurrency.max(1) {
            let Some(email) = queue.pop_front() else {
                break;
            };
            let (engine, sel) = (engine.clone(), sel.clone());
            running.spawn(async move {
                // Team mode: claimed first; a leaver another host holds is
                // left to it.
                let work = async { engine.revoke(&email, &sel).await.map_err(|e| e.to_string()) };
                let r = crate::store::while_holding(engine.ledger(), &email, "batch", work).await;
                (email, r)
            });
        }
        let Some(j) = running.join_next().await else {
            break;
        };
        let (email, r) = match j {
            Ok(x) => x,
            Err(e) => (String::new(), Err(format!("a leaver's task ended: {e}"))),
        };
        // Counted by its `Finished` event when that came first.
        monitor
            .lock()
            .expect("monitor lock")
            .progress
            .finish(&email, &r);
        out.finished.push((email, r));
    }
    out.paused = tripped(&monitor);
    out.not_started = queue.into_iter().collect();
    out
}

/// One app's progress in a batch.
#[derive(Debug, Clone, Default)]
pub struct AppProgress {
    /// Removals the plans ask of this app.
    pub total: usize,
    /// Answered so far (accepted, refused or failed).
    pub answered: usize,
    /// The connector's quota: requests a second it may send.
    pub quota_per_sec: Option<f64>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl AppProgress {
    /// Requests a second this app is going at: its quota, or the pace seen
    /// so far when that is slower (rate limits, a vendor's tiers).
    pub fn rate(&self) -> Option<f64> {
        let seen = match (self.first, self.last) {
            (Some(f), Some(l)) if self.answered >= 5 && l > f => {
                Some(self.answered as f64 / (l - f).as_secs_f64().max(0.001))
            }
            _ => None,
        };
        match (self.quota_per_sec.filter(|q| *q > 0.0), seen) {
            (Some(q), Some(s)) => Some(q.min(s)),
            (q, s) => q.or(s),
        }
    }

    /// Time left at that rate (None: unknown).
    pub fn eta(&self) -> Option<Duration> {
        let left = self.total.saturating_sub(self.answered);
        if left == 0 {
            return Some(Duration::ZERO);
        }
        self.rate()
            .map(|r| Duration::from_secs_f64(left as f64 / r.max(0.001)))
    }
}

/// A batch's progress: per app and overall, with the time left estimated
/// from each app's quota.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub apps: BTreeMap<String, AppProgress>,
    pub leavers: usize,
    pub done: usize,
    /// `email: outcome` of each leaver finished, in order.
    pub finished: Vec<String>,
    /// The batch's leavers (whose `Finished` events count).
    pub members: std::collections::BTreeSet<String>,
}

impl Progress {
    /// `requests`: removals per app (from [`Prepared::requests`]);
    /// `quotas`: each connector's requests a second.
    pub fn new(
        leavers: &[String],
        requests: &BTreeMap<String, usize>,
        quotas: &BTreeMap<String, f64>,
    ) -> Progress {
        let apps = requests
            .iter()
            .map(|(app, n)| {
                (
                    app.clone(),
                    AppProgress {
                        total: *n,
                        quota_per_sec: quotas.get(app).copied(),
                        ..AppProgress::default()
                    },
                )
            })
            .collect();
        Progress {
            apps,
            leavers: leavers.len(),
            members: leavers.iter().cloned().collect(),
            ..Progress::default()
        }
    }

    pub fn observe(&mut self, e: &Event) {
        if let Event::Finished { email, summary } = e {
            self.finish(email, &Ok(summary.clone()));
        }
        if let Event::ApiAnswer { key, .. } = e {
            let app = key.split('/').next().unwrap_or("");
            if let Some(a) = self.apps.get_mut(app) {
                let now = Instant::now();
                a.first.get_or_insert(now);
                a.last = Some(now);
                a.answered += 1;
                // A re-request (a retry from the console) can pass the plan.
                a.total = a.total.max(a.answered);
            }
        }
    }

    /// Counts a leaver of the batch as finished (once; others are not
    /// counted): from its `Finished` event, or from the batch's outcome.
    pub fn finish(&mut self, email: &str, r: &Result<Summary, String>) {
        if !self.members.remove(email) {
            return;
        }
        self.done += 1;
        self.finished.push(match r {
            Ok(s) if s.exit_code() == 0 => format!("{}: all closed", clean(email)),
            Ok(s) => format!(
                "{}: {} left for a person",
                clean(email),
                s.live + s.removing + s.unconfirmed + s.failed + s.manual + s.read_failures
            ),
            Err(e) => format!("{}: {}", clean(email), clean_max(e, 160)),
        });
    }

    /// The slowest app's time left: apps run side by side.
    pub fn eta(&self) -> Option<Duration> {
        let mut worst = Duration::ZERO;
        for a in self.apps.values() {
            worst = worst.max(a.eta()?);
        }
        Some(worst)
    }

    /// One line per app and one overall, each with a bar `width` wide:
    /// `google   [######------]  45/100  ~12s left (quota 40/s)`.
    pub fn lines(&self, width: usize) -> Vec<String> {
        let name_w = self.apps.keys().map(|a| a.len()).max().unwrap_or(0).max(7);
        let mut out = Vec::new();
        for (app, a) in &self.apps {
            let quota = a
                .quota_per_sec
                .map(|q| format!(" (quota {}/s)", trim_rate(q)))
                .unwrap_or_default();
            out.push(format!(
                "{app:<name_w$} {} {:>5}/{:<5} {}{quota}",
                bar(a.answered, a.total, width),
                a.answered,
                a.total,
                eta_text(a.eta()),
            ));
        }
        let (answered, total) = self
            .apps
            .values()
            .fold((0, 0), |(d, t), a| (d + a.answered, t + a.total));
        out.push(format!(
            "{:<name_w$} {} {:>5}/{:<5} {} ({}/{} leaver(s) finished)",
            "overall",
            bar(answered, total, width),
            answered,
            total,
            eta_text(self.eta()),
            self.done,
            self.leavers
        ));
        out
    }
}

fn trim_rate(q: f64) -> String {
    if q.fract() == 0.0 {
        format!("{q:.0}")
    } else {
        format!("{q:.1}")
    }
}

/// `[#####-----]`: done of total, ASCII (fine on any terminal).
pub fn bar(done: usize, total: usize, width: usize) -> String {
    let width = width.max(4);
    let filled = (done.min(total) * width)
        .checked_div(total)
        .unwrap_or(width);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

/// `~1m 05s left`, `done`, or `time left unknown`.
pub fn eta_text(eta: Option<Duration>) -> String {
    match eta {
        Some(d) if d.is_zero() => "done".into(),
        Some(d) => {
            let s = d.as_secs_f64().ceil() as u64;
            if s < 60 {
                format!("~{s}s left")
            } else if s < 3600 {
                format!("~{}m {:02}s left", s / 60, s % 60)
            } else {
                format!("~{}h {:02}m left", s / 3600, (s % 3600) / 60)
            }
        }
        None => "time left unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::from_config(&crate::config::BatchConfig::default())
    }

    #[test]
    fn urgent_leavers_come_first_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = RosterConfig::default();
        let got = |path: &Path| {
            leavers_from_file(path, &cfg).map(|v| {
                v.into_iter()
                    .map(|l| (l.email, l.urgency))
                    .collect::<Vec<_>>()
            })
        };
        let u = |e: &str, u| (e.to_string(), u);
        let list = dir.path().join("list.txt");
        std::fs::write(
            &list,
            "a@x.com\n# note\nb@x.com urgent\nc@x.com\nd@x.com URGENT\n",
        )
        .unwrap();
        assert_eq!(
            got(&list).unwrap(),
            [
                u("b@x.com", Urgency::Urgent),
                u("d@x.com", Urgency::Urgent),
                u("a@x.com", Urgency::Scheduled),
                u("c@x.com", Urgency::Scheduled),
            ]
        );
        std::fs::write(&list, "a@x.com soon\n").unwrap();
        let e = got(&list).unwrap_err();
        assert!(e.contains("line 1: `a@x.com soon`"), "{e}");
        let roster = dir.path().join("roster.csv");
        std::fs::write(
            &roster,
            "email,name,status\na@x.com,A,leaving\nb@x.com,B,left\nc@x.com,C,active\n",
        )
        .unwrap();
        assert_eq!(
            got(&roster).unwrap(),
            [
                u("b@x.com", Urgency::Urgent),
                u("a@x.com", Urgency::Scheduled)
            ]
        );
    }

    #[test]
    fn the_cap_names_each_reason() {
        let shares = vec![
            AppShare {
                app: "slack".into(),
                leavers: 30,
                active: Ok(100),
            },
            AppShare {
                app: "google".into(),
                leavers: 30,
                active: Ok(1000),
            },
            AppShare {
                app: "salesforce".into(),
                leavers: 2,
                active: Err("HTTP 500".into()),
            },
        ];
        let r = cap_reasons(30, &shares, &limits());
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(r[0].contains("more than [batch] max_batch = 25"));
        assert!(r[1].starts_with("slack: 30 of its 100 active accounts (30%)"));
        assert!(r[2].starts_with("salesforce: its active accounts could not be counted"));
        assert!(cap_reasons(3, &shares[1..2], &limits()).is_empty());
    }

    #[test]
    fn the_breaker_trips_on_failures_in_the_window_only() {
        let mut b = Breaker::new(&limits());
        let retry = |c: &str| {
            Event::Http(HttpNotice::Retrying {
                connector: c.into(),
                wait: std::time::Duration::from_millis(1),
                attempt: 1,
                reason: "HTTP 503".into(),
            })
        };
        let ok = |c: &str| Event::State {
            email: "a@x.y".into(),
            key: format!("{c}/g"),
            state: GrantState::Removed,
            at: chrono::Utc::now(),
        };
        // 4 failures, then 20 successes push them out of the window.
        for _ in 0..4 {
            b.observe(&retry("slack"));
        }
        for _ in 0..20 {
            b.observe(&ok("slack"));
        }
        b.observe(&retry("slack"));
        assert!(b.tripped().is_none());
        // Failures in another app do not add up with Slack's.
        for _ in 0..4 {
            b.observe(&retry("google"));
        }
        assert!(b.tripped().is_none());
        b.observe(&retry("google"));
        assert!(
            b.tripped()
                .unwrap()
                .starts_with("google: 5 of its last 5 requests")
        );
    }

    #[test]
    fn progress_estimates_the_time_left_from_each_quota() {
        let requests = BTreeMap::from([("google".to_string(), 120), ("slack".to_string(), 10)]);
        let quotas = BTreeMap::from([("google".to_string(), 40.0), ("slack".to_string(), 2.0)]);
        let three = ["a@x.y".to_string(), "b@x.y".into(), "c@x.y".into()];
        let mut p = Progress::new(&three, &requests, &quotas);
        // Nothing answered yet: from the quotas alone (120/40 = 3 s, 10/2 = 5 s).
        assert_eq!(p.apps["google"].eta(), Some(Duration::from_secs(3)));
        assert_eq!(p.eta(), Some(Duration::from_secs(5)));
        let answer = |key: &str| Event::ApiAnswer {
            email: "a@x.y".into(),
            key: key.into(),
            answer: "accepted".into(),
        };
        for _ in 0..60 {
            p.observe(&answer("google/token:1"));
        }
        p.observe(&answer("zoom/x"));
        assert_eq!(p.apps["google"].answered, 60);
        assert!(p.apps["google"].eta().unwrap() <= Duration::from_secs(2));
        let lines = p.lines(10);
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("google  [#####-----]    60/120"),
            "{}",
            lines[0]
        );
        assert!(lines[0].ends_with("(quota 40/s)"), "{}", lines[0]);
        assert!(lines[2].starts_with("overall [####"), "{}", lines[2]);
        assert!(
            lines[2].contains("(0/3 leaver(s) finished)"),
            "{}",
            lines[2]
        );
        // A leaver of the batch finishing counts; another's, or twice, not.
        let fin = |email: &str| Event::Finished {
            email: email.into(),
            summary: Summary::default(),
        };
        p.observe(&fin("b@x.y"));
        p.observe(&fin("b@x.y"));
        p.observe(&fin("z@x.y"));
        assert_eq!(p.done, 1);
        assert_eq!(p.finished, ["b@x.y: all closed"]);
        assert_eq!(eta_text(Some(Duration::from_secs(65))), "~1m 05s left");
        assert_eq!(eta_text(None), "time left unknown");
        // Unknown quota and no pace yet: unknown.
        let p = Progress::new(&three[..1], &requests, &BTreeMap::new());
        assert_eq!(p.eta(), None);
        assert_eq!(bar(0, 0, 4), "[####]");
    }
}
