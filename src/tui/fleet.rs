//! The fleet level in the console: the exit-time policy while the console
//! is open (`:auto on`), the data hand-over to a leaver's manager, and
//! batches of picked leavers with the same guardrails as `revoke --from`
//! (dry-run totals, the cap with the exact count, the circuit breaker).
//! [`FleetService`] wraps the engine's [`EngineService`]; the batch's
//! monitor is fed every engine event on its way to the console
//! ([`forward_events`]).

use crate::connector::http::Urgency;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::connector::Health;
use crate::engine::{Event, Selection, Summary};
use crate::evidence::Ledger;
use crate::fleet::batch::{self, Leaver, Limits, Monitor, Outcome, Progress};
use crate::fleet::{PolicyConfig, RosterConfig, roster};

use super::app::EngineService;
use super::model::{BatchPlan, CaseSnapshot, RevokeScope};
use super::runtime::{LoginIo, Service};

/// The running batch's monitor, when one runs.
pub type MonitorSlot = Arc<Mutex<Option<Arc<Mutex<Monitor>>>>>;

/// What the console's fleet features need from the config.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    /// The roster file (`[roster] path`, resolved), for `:auto on`.
    pub roster: Option<PathBuf>,
    pub roster_cfg: RosterConfig,
    pub policy: PolicyConfig,
    pub limits: Option<Limits>,
    /// Each connector's quota, requests a second.
    pub quotas: BTreeMap<String, f64>,
}

pub struct FleetService {
    pub inner: EngineService,
    pub fleet: Fleet,
    /// Whom each leaver's data goes to (the roster's managers, `:handover`).
    pub managers: Mutex<HashMap<String, String>>,
    pub monitor: MonitorSlot,
}

impl FleetService {
    pub fn new(inner: EngineService, fleet: Fleet, managers: HashMap<String, String>) -> Self {
        FleetService {
            inner,
            fleet,
            managers: Mutex::new(managers),
            monitor: Arc::new(Mutex::new(None)),
        }
    }

    fn limits(&self) -> Limits {
        self.fleet
            .limits
            .clone()
            .unwrap_or_else(|| Limits::from_config(&crate::config::BatchConfig::default()))
    }

    fn manager_of(&self, email: &str) -> Option<String> {
        self.managers
            .lock()
            .expect("managers lock")
            .get(&email.trim().to_ascii_lowercase())
            .cloned()
    }

    async fn prepare(&self, emails: &[String]) -> Result<batch::Prepared, String> {
        let leavers: Vec<Leaver> = emails
            .iter()
            .map(|e| Leaver {
                email: e.clone(),
                manager: self.manager_of(e),
                urgency: Urgency::Scheduled,
            })
            .collect();
        batch::prepare(
            &self.inner.engine,
            &leavers,
            &Selection::default(),
            &self.limits(),
        )
        .await
    }
}

/// Passes every engine event on to the console, feeding the running
/// batch's monitor (its circuit breaker and progress) first.
pub fn forward_events(
    mut events: UnboundedReceiver<Event>,
    slot: MonitorSlot,
) -> UnboundedReceiver<Event> {
    let (tx, rx) = unbounded_channel();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            let m = slot.lock().expect("monitor slot lock").clone();
            if let Some(m) = m {
                m.lock().expect("monitor lock").observe(&e);
            }
            if tx.send(e).is_err() {
                break;
            }
        }
    });
    rx
}

#[async_trait]
impl Service for FleetService {
    async fn discover(&self, email: &str) -> Result<CaseSnapshot, String> {
        // A manager the engine refuses (the leaver themselves) leaves the
        // hand-over a manual step; the leaver is still read.
        if let Some(m) = self.manager_of(email)
            && let Err(e) = self.inner.engine.set_hand_over(email, &m).await
        {
            tracing::warn!(leaver = %crate::sanitize::clean(email), error = %e, "hand-over not named");
        }
        self.inner.discover(email).await
    }

    async fn refresh(&self, email: &str, connector: Option<&str>) -> Result<CaseSnapshot, String> {
        self.inner.refresh(email, connector).await
    }

    async fn revoke(&self, email: &str, scope: &RevokeScope) -> Result<Summary, String> {
        self.inner.revoke(email, scope).await
    }

    async fn manual_done(&self, email: &str, key: &str, note: &str) -> Result<(), String> {
        self.inner.manual_done(email, key, note).await
    }

    async fn pick_account(
        &self,
        email: &str,
        app: &str,
        account_id: &str,
    ) -> Result<CaseSnapshot, String> {
        self.inner.pick_account(email, app, account_id).await
    }

    fn case(&self, email: &str) -> Option<CaseSnapshot> {
        self.inner.case(email)
    }

    fn health(&self) -> Vec<(String, Health)> {
        self.inner.health()
    }

    async fn export(&self, email: &str, exit_at: Option<DateTime<Utc>>) -> Result<PathBuf, String> {
        self.inner.export(email, exit_at).await
    }

    async fn login(&self, app: &str, io: LoginIo) -> Result<String, String> {
        self.inner.login(app, io).await
    }

    async fn run_due(&self) -> Result<Vec<String>, String> {
        let Some(path) = &self.fleet.roster else {
            return Err("no roster: set [roster] path in the config (a file)".into());
        };
        let r = roster::load(&roster::Source::File(path.clone()), &self.fleet.roster_cfg)
            .map_err(|e| e.to_string())?;
        {
            let mut managers = self.managers.lock().expect("managers lock");
            for e in r.leavers() {
                if let Some(m) = &e.manager {
                    managers.insert(e.email.clone(), m.clone());
                }
            }
        }
        let engine = self.inner.engine.clone();
        let ledger = engine.ledger_path();
        let records = if ledger.exists() {
            Ledger::read(&ledger).map_err(|e| e.to_string())?
        } else {
            Vec::new()
        };
        Ok(
            crate::fleet::policy::run_due(&engine, &r, &self.fleet.policy, &records, Utc::now())
                .await,
        )
    }

    async fn hand_over(&self, email: &str, to: &str) -> Result<CaseSnapshot, String> {
        self.inner
            .engine
            .set_hand_over(email, to)
            .await
            .map_err(|e| e.to_string())?;
        self.managers
            .lock()
            .expect("managers lock")
            .insert(email.trim().to_ascii_lowercase(), to.to_ascii_lowercase());
        self.inner.discover(email).await
    }

    async fn batch_prepare(&self, emails: &[String]) -> Result<BatchPlan, String> {
        let p = self.prepare(emails).await?;
        Ok(BatchPlan {
            totals: p
                .totals
                .iter()
                .map(|((app, kind), n)| (app.clone(), kind.clone(), *n))
                .collect(),
            requests: p.requests.clone(),
            reasons: p.reasons.clone(),
            quotas: self.fleet.quotas.clone(),
        })
    }

    async fn batch_run(&self, emails: &[String], confirm: usize) -> Result<Outcome, String> {
        // Planned again: what is live may have changed since the dry run.
        let p = self.prepare(emails).await?;
        if !p.confirmed_by(Some(confirm)) {
            return Err(format!(
                "over the cap ({}) and {confirm} is not the number of leavers ({}): nothing was changed",
                p.reasons.join("; "),
                p.leavers.len()
            ));
        }
        let limits = self.limits();
        let progress = Progress::new(&p.leavers, &p.requests, &self.fleet.quotas);
        let monitor = Arc::new(Mutex::new(Monitor::new(&limits, progress)));
        *self.monitor.lock().expect("monitor slot lock") = Some(monitor.clone());
        let out = batch::run(
            self.inner.engine.clone(),
            p.leavers.clone(),
            Selection::default(),
            limits.concurrency,
            monitor,
        )
        .await;
        *self.monitor.lock().expect("monitor slot lock") = None;
        Ok(out)
    }
}
