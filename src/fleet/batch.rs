//! Batches of leavers: the input file, the cap, and the circuit breaker.
//! The batch itself runs in one engine, so every leaver shares each
//! connector's client (and with it the vendor's quota).

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use crate::connector::http::{HttpNotice, Urgency};
use crate::engine::Event;
use crate::model::GrantState;
use crate::sanitize::clean_max;

use super::{People, RosterStatus};

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

/// The leavers of a batch file: a roster CSV (header with `email` and
/// `status`: its `leaving` and `left` people), or one address per line
/// (blank lines and `#` comments skipped). Any line that does not parse
/// refuses the whole batch: nothing is revoked because of a line that was
/// misread.
pub fn leavers_from_file(path: &Path) -> Result<Vec<String>, String> {
    Ok(batch_from_file(path)?.into_iter().map(|(e, _)| e).collect())
}

/// [`leavers_from_file`] with each leaver's urgency: in a roster, people
/// who have `left` are urgent, people `leaving` on the usual schedule; in
/// a list, a line `ADDRESS urgent` marks an urgent termination. Urgent
/// leavers come first, each group in file order.
pub fn batch_from_file(path: &Path) -> Result<Vec<(String, Urgency)>, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let first = text.lines().next().unwrap_or("").to_ascii_lowercase();
    let mut out: Vec<(String, Urgency)> = Vec::new();
    let mut add = |email: String, urgency: Urgency| {
        if !out.iter().any(|(e, _)| *e == email) {
            out.push((email, urgency));
        }
    };
    if first.contains("email") && first.contains("status") {
        let r = People::from_csv(&name, &text)?;
        if !r.problems.is_empty() {
            return Err(r.problems.join("; "));
        }
        for e in r
            .entries
            .into_iter()
            .filter(|e| e.status != RosterStatus::Active)
        {
            let urgency = if e.status == RosterStatus::Left {
                Urgency::Urgent
            } else {
                Urgency::Scheduled
            };
            add(e.email, urgency);
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
            if !super::is_address(&a) {
                return Err(format!(
                    "{name} line {}: `{}` is not an email address",
                    i + 1,
                    clean_max(l, 80)
                ));
            }
            add(a, urgency);
        }
    }
    if out.is_empty() {
        return Err(format!("{name}: no leaver in it"));
    }
    out.sort_by_key(|(_, u)| *u);
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::from_config(&crate::config::BatchConfig::default())
    }

    #[test]
    fn urgent_leavers_come_first_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(
            &list,
            "a@x.com\n# note\nb@x.com urgent\nc@x.com\nd@x.com URGENT\n",
        )
        .unwrap();
        let got = batch_from_file(&list).unwrap();
        let u = |e: &str, u| (e.to_string(), u);
        assert_eq!(
            got,
            [
                u("b@x.com", Urgency::Urgent),
                u("d@x.com", Urgency::Urgent),
                u("a@x.com", Urgency::Scheduled),
                u("c@x.com", Urgency::Scheduled),
            ]
        );
        std::fs::write(&list, "a@x.com soon\n").unwrap();
        let e = batch_from_file(&list).unwrap_err();
        assert!(e.contains("line 1: `a@x.com soon`"), "{e}");
        let roster = dir.path().join("roster.csv");
        std::fs::write(
            &roster,
            "email,name,status\na@x.com,A,leaving\nb@x.com,B,left\nc@x.com,C,active\n",
        )
        .unwrap();
        assert_eq!(
            batch_from_file(&roster).unwrap(),
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
}
