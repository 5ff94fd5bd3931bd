//! Wiring: the engine behind the console's [`Service`], and the two entry
//! points `offboard` (the user's config) and `offboard demo` (sandbox).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::config;
use crate::connector::{ConnectorError, Health, ResolvedConnector};
use crate::engine::{self, CaseView, Engine, EngineOptions, Event, Selection, Summary};
use crate::evidence::{self, report};
use crate::outcome::{CmdResult, Failure};

use super::model::{
    AccountStatus, Candidate, CaseSnapshot, ConnectorRow, GrantRow, LeaverRow, Level, Model,
    RevokeScope,
};
use super::runtime::{self, LoginIo, Service};
use super::signin::SignIn;
use super::terminal::{self, TerminalGuard};
use super::theme::{self, ThemeSet};

/// The engine as the console sees it.
pub struct EngineService {
    pub engine: Arc<Engine>,
    pub data_dir: PathBuf,
    /// Sign-in for `:login`; None: sign in from the command line instead.
    pub login: Option<SignIn>,
}

/// The engine's view of a case, in the console's terms.
pub fn snapshot(v: CaseView) -> CaseSnapshot {
    let mut display_name = None;
    let accounts = v
        .accounts
        .into_iter()
        .map(|a| {
            let status = match a.status {
                engine::AccountStatus::Pending => AccountStatus::Pending,
                engine::AccountStatus::Found { account } => {
                    if display_name.is_none() && !account.display_name.is_empty() {
                        display_name = Some(account.display_name.clone());
                    }
                    AccountStatus::Found {
                        login: account.login,
                        display_name: account.display_name,
                        active: account.active,
                    }
                }
                engine::AccountStatus::NotFound => AccountStatus::NotFound,
                engine::AccountStatus::Ambiguous { candidates } => AccountStatus::Ambiguous {
                    candidates: candidates.iter().map(Candidate::from_account).collect(),
                },
                engine::AccountStatus::LookupFailed { error } => AccountStatus::Failed { error },
            };
            (a.connector, status)
        })
        .collect();
    let grants = v
        .grants
        .into_iter()
        .map(|g| GrantRow {
            key: g.key,
            grant: g.grant,
            state: g.state,
            since_state: Some(g.since_state),
            answer: g.last_answer,
        })
        .collect();
    CaseSnapshot {
        email: v.email,
        display_name,
        accounts,
        grants,
    }
}

#[async_trait]
impl Service for EngineService {
    async fn take_over(&self, email: &str) -> Result<String, String> {
        let ledger = self.engine.ledger();
        let Some(pg) = ledger.store().shared().cloned() else {
            return Err(runtime::NO_TEAM.into());
        };
        let me = crate::store::me(ledger.operator());
        let email = crate::model::Person::new(email).email;
        match crate::store::Lease::claim(&pg, ledger, &email, &me, pg.target.lease, true)
            .await
            .map_err(|e| e.to_string())?
        {
            Ok(lease) => {
                taken_over().insert(email.clone(), lease);
                Ok(format!(
                    "{email}: yours now (a take-over from another host is recorded in the ledger); the next action on them goes ahead"
                ))
            }
            Err(held) => Err(held.to_string()),
        }
    }

    async fn discover(&self, email: &str) -> Result<CaseSnapshot, String> {
        // Team mode: a leaver read here (`:add`, the roster) joins the
        // shared queue.
        let ledger = self.engine.ledger();
        if let Some(pg) = ledger.store().shared().cloned() {
            let by = crate::store::me(ledger.operator()).label;
            let email = crate::model::Person::new(email).email;
            crate::store::pg::spawn(async move {
                pg.add_leavers(vec![(email, None)], "console".into(), by)
                    .await
            })
            .await
            .map_err(|e| e.to_string())?;
        }
        self.engine
            .discover(email)
            .await
            .map(snapshot)
            .map_err(|e| e.to_string())
    }

    async fn refresh(&self, email: &str, connector: Option<&str>) -> Result<CaseSnapshot, String> {
        self.engine
            .refresh(email, connector)
            .await
            .map(snapshot)
            .map_err(|e| e.to_string())
    }

    async fn revoke(&self, email: &str, scope: &RevokeScope) -> Result<Summary, String> {
        let selection = Selection {
            apps: scope.apps.clone(),
            kinds: scope.kinds.clone(),
            keys: scope.keys.clone(),
        };
        // The operator's revoke goes before the queue's background reads.
        self.engine
            .set_urgency(email, crate::connector::http::Urgency::Urgent);
        let lease = self.claim(email).await?;
        let r = self
            .engine
            .revoke(email, &selection)
            .await
            .map_err(|e| e.to_string());
        release(lease).await;
        r
    }

    async fn manual_done(&self, email: &str, key: &str, note: &str) -> Result<(), String> {
        let lease = self.claim(email).await?;
        let r = self
            .engine
            .manual_done(email, key, note)
            .await
            .map_err(|e| e.to_string());
        release(lease).await;
        r
    }

    async fn pick_account(
        &self,
        email: &str,
        app: &str,
        account_id: &str,
    ) -> Result<CaseSnapshot, String> {
        self.engine
            .pick_account(email, app, account_id)
            .await
            .map(snapshot)
            .map_err(|e| e.to_string())
    }

    fn case(&self, email: &str) -> Option<CaseSnapshot> {
        self.engine.case(email).map(snapshot)
    }

    fn health(&self) -> Vec<(String, Health)> {
        self.engine.health()
    }

    async fn export(&self, email: &str, exit_at: Option<DateTime<Utc>>) -> Result<PathBuf, String> {
        let ledger = self.engine.ledger().store();
        let dir = self.data_dir.join("reports");
        let email = email.to_string();
        tokio::task::spawn_blocking(move || {
            export_report(&ledger, &dir, &email, exit_at, Utc::now())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    async fn login(&self, app: &str, io: LoginIo) -> Result<String, String> {
        match &self.login {
            Some(signin) => signin.run(app, io).await,
            None => Err(format!(
                "sign-in needs the terminal: quit, run `offboard login {}`, then reopen the console (the token is cached)",
                crate::sanitize::clean_max(app, 40)
            )),
        }
    }
}

impl EngineService {
    /// Team mode: the lease on `email` before acting (None: one operator,
    /// nothing to claim). Another host's live lease: watch only.
    async fn claim(&self, email: &str) -> Result<Option<crate::store::Lease>, String> {
        let ledger = self.engine.ledger();
        let Some(pg) = ledger.store().shared().cloned() else {
            return Ok(None);
        };
        let me = crate::store::me(ledger.operator());
        let email = crate::model::Person::new(email).email;
        let taken = taken_over().remove(&email);
        if let Some(lease) = taken
            && !lease.lost()
        {
            return Ok(Some(lease));
        }
        let (p, e, by) = (pg.clone(), email.clone(), me.label.clone());
        crate::store::pg::spawn(
            async move { p.add_leavers(vec![(e, None)], ":add".into(), by).await },
        )
        .await
        .map_err(|e| e.to_string())?;
        match crate::store::Lease::claim(&pg, ledger, &email, &me, pg.target.lease, false)
            .await
            .map_err(|e| e.to_string())?
        {
            Ok(lease) => Ok(Some(lease)),
            Err(held) => Err(format!(
                "{held}: you can watch it here; to act on it, take it over with `:takeover` (recorded in the ledger)"
            )),
        }
    }
}

/// Leases `:takeover` took, each kept (and renewed) for the next action on
/// its leaver in this console.
fn taken_over() -> std::sync::MutexGuard<'static, HashMap<String, crate::store::Lease>> {
    static TAKEN: std::sync::OnceLock<std::sync::Mutex<HashMap<String, crate::store::Lease>>> =
        std::sync::OnceLock::new();
    TAKEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn release(lease: Option<crate::store::Lease>) {
    if let Some(l) = lease
        && let Err(e) = l.release().await
    {
        tracing::warn!(error = %e, "lease not released; it expires by itself");
    }
}

/// Writes the Markdown evidence report for `email` into `dir`.
pub fn export_report(
    ledger: &evidence::Store,
    dir: &Path,
    email: &str,
    exit_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<PathBuf, String> {
    let records = ledger.records().map_err(|e| e.to_string())?;
    if !records.iter().any(|r| r.case == email) {
        return Err(format!(
            "no evidence for {email} yet in {}",
            ledger.path().display()
        ));
    }
    let chain = ledger.verify().map_err(|e| e.to_string())?;
    let text = report::render_full(
        &records,
        email,
        report::Format::Markdown,
        Some(&chain),
        exit_at,
    );
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let safe: String = email
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "@.-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{safe}-{}.md", now.format("%Y%m%dT%H%M%S")));
    crate::sandbox::write_private(&path, text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Whether the locale announces UTF-8 (LC_ALL, then LC_CTYPE, then LANG).
pub fn locale_is_utf8(get: impl Fn(&str) -> Option<String>) -> bool {
    ["LC_ALL", "LC_CTYPE", "LANG"]
        .into_iter()
        .filter_map(|k| get(k).filter(|v| !v.is_empty()))
        .next()
        .is_some_and(|v| {
            let v = v.to_ascii_lowercase();
            v.contains("utf-8") || v.contains("utf8")
        })
}

/// What the command line chose for the console.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// Config file (else `$OFFBOARD_CONFIG`, else the platform config dir).
    pub config: Option<PathBuf>,
    pub ascii: bool,
    pub read_only: bool,
    pub theme: Option<String>,
}

/// What the console opens with.
pub struct ConsoleOptions {
    pub operator: String,
    pub read_only: bool,
    pub ascii: bool,
    pub theme: String,
    pub config_dir: Option<PathBuf>,
    pub leavers: Vec<LeaverRow>,
    pub notes: Vec<String>,
}

impl ConsoleOptions {
    pub fn from_global(
        global: &Flags,
        operator: String,
        config_theme: Option<&str>,
        config_dir: Option<PathBuf>,
    ) -> Self {
        let ascii = global.ascii || !locale_is_utf8(|k| std::env::var(k).ok());
        ConsoleOptions {
            operator,
            read_only: global.read_only,
            ascii,
            theme: theme::initial_name(
                global.theme.as_deref(),
                config_theme,
                theme::no_color_from_env(),
            ),
            config_dir,
            leavers: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// Builds the model the console starts with.
pub fn initial_model(engine: &Engine, opts: ConsoleOptions) -> Model {
    let themes = ThemeSet::load(opts.config_dir.as_deref(), theme::truecolor_from_env());
    let (mut model, msg) = Model::new(
        &opts.operator,
        opts.read_only,
        opts.ascii,
        themes,
        &opts.theme,
    );
    model.connectors = engine
        .connectors()
        .into_iter()
        .map(|c| ConnectorRow::new(&c.id, &c.display_name, c.refresh_interval))
        .collect();
    model.leavers = opts.leavers;
    // Revokes the ledger holds as interrupted resume once their leaver is
    // read (the leaver joins the queue when it is not in it).
    let records = engine.ledger().store().records().unwrap_or_default();
    for (email, keys) in engine::interrupted_plans(&records) {
        let i = match model.leavers.iter().position(|l| l.email == email) {
            Some(i) => i,
            None => {
                model.leavers.push(LeaverRow::new(&email));
                model.leavers.len() - 1
            }
        };
        model.log(
            Level::Warn,
            format!(
                "{}: a revoke of {} step(s) was interrupted; it resumes once the leaver is read",
                model.leavers[i].email,
                keys.len()
            ),
        );
        model.leavers[i].resume = keys;
    }
    if let Some(m) = msg {
        model.message = Some((Level::Warn, m));
    }
    for n in opts.notes {
        let n = crate::sanitize::clean(&n);
        if n.starts_with(evidence::BROKEN_CHAIN) {
            model.ledger_broken = true;
            model.log(Level::Error, n.clone());
            model.message = Some((Level::Error, n));
        } else {
            model.log(Level::Warn, n);
        }
    }
    model
}

/// Opens the full-screen console and runs it until the operator quits.
pub async fn open(
    engine: Arc<Engine>,
    events: UnboundedReceiver<Event>,
    opts: ConsoleOptions,
    data_dir: &Path,
    connectors: Vec<ResolvedConnector>,
    fleet: super::fleet::Fleet,
) -> CmdResult {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(Failure::usage(
            "the console needs a terminal; for scripts use `offboard scan|revoke|verify|evidence`",
        ));
    }
    let managers = opts
        .leavers
        .iter()
        .filter_map(|l| l.manager.clone().map(|m| (l.email.clone(), m)))
        .collect();
    let mut model = initial_model(&engine, opts);
    // The queue's lookups: one bulk read per app where it offers one.
    let queue: Vec<String> = model.leavers.iter().map(|l| l.email.clone()).collect();
    engine.look_up_many(&queue, &[]);
    let service = super::fleet::FleetService::new(
        EngineService {
            engine: engine.clone(),
            data_dir: data_dir.to_path_buf(),
            login: Some(SignIn {
                connectors,
                data_dir: data_dir.to_path_buf(),
                http: crate::connector::http::shared_reqwest(),
                open_browser: true,
            }),
        },
        fleet,
        managers,
    );
    let events = super::fleet::forward_events(events, service.monitor.clone());
    let service: Arc<dyn Service> = Arc::new(service);
    terminal::install_panic_hook(&data_dir.join("offboard.log"));
    let result = {
        let _guard =
            TerminalGuard::enter().map_err(|e| Failure::other(format!("terminal: {e}")))?;
        let backend = ratatui::backend::CrosstermBackend::new(std::io::stdout());
        let mut term = ratatui::Terminal::new(backend)
            .map_err(|e| Failure::other(format!("terminal: {e}")))?;
        let input = crossterm::event::EventStream::new();
        runtime::run(&mut term, &mut model, service, input, events).await
    };
    let _ = std::panic::take_hook();
    match result {
        Ok(()) => {
            tracing::info!("console closed");
            Ok(0)
        }
        Err(e) => {
            tracing::error!("console ended: {e}");
            Err(Failure::other(format!(
                "console: {e} ({})",
                data_dir.join("offboard.log").display()
            )))
        }
    }
}

type Built = (
    Arc<Engine>,
    UnboundedReceiver<Event>,
    Vec<String>,
    Vec<ResolvedConnector>,
);

fn engine_from(loaded: &config::Loaded, data_dir: &Path) -> Result<Built, Failure> {
    let resolved = loaded.connectors()?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let connectors =
        engine::connectors_from_config(&resolved, data_dir, &tx).map_err(|e| match e {
            ConnectorError::Config(m) => {
                Failure::usage(format!("config: {}: {m}", loaded.path.display()))
            }
            other => Failure::other(other.to_string()),
        })?;
    let opts = EngineOptions::from_config(loaded);
    let store = crate::store::open(&loaded.config.store, &loaded.dir, data_dir)
        .map_err(|e| Failure::other(e.to_string()))?;
    let ledger = store
        .open(&opts.operator)
        .map_err(|e| Failure::other(format!("evidence ledger: {e}")))?;
    let notes = ledger.startup_notes();
    if let Some(pg) = store.shared() {
        crate::store::share_quota(
            pg,
            &crate::store::me(&opts.operator),
            resolved.iter().map(|r| r.id.clone()).collect(),
        );
        crate::store::bridge(pg, &opts.operator, tx.clone());
    }
    Ok((
        Engine::new(connectors, ledger, opts, tx),
        rx,
        notes,
        resolved,
    ))
}

/// `offboard`: the console on the user's config.
pub async fn console(global: &Flags, data_dir: PathBuf) -> CmdResult {
    let path = config::config_path(global.config.as_deref());
    let loaded = config::load(&path)?;
    let (engine, events, notes, resolved) = engine_from(&loaded, &data_dir)?;
    let mut opts = ConsoleOptions::from_global(
        global,
        loaded.operator(),
        loaded.config.console.theme.as_deref(),
        Some(loaded.dir.clone()),
    );
    opts.leavers = loaded
        .config
        .console
        .leavers
        .iter()
        .map(|e| LeaverRow::new(e))
        .collect();
    opts.notes = notes;
    roster_leavers(&loaded, &mut opts);
    let fleet = fleet_of(&loaded);
    open(engine, events, opts, &data_dir, resolved, fleet).await
}

/// The config's roster, policy, batch limits and each connector's quota,
/// for `:auto on` and batches.
fn fleet_of(loaded: &config::Loaded) -> super::fleet::Fleet {
    let cfg = &loaded.config.roster;
    let roster = cfg.path.as_ref().filter(|p| p.as_os_str() != "-").map(|p| {
        if p.is_relative() {
            loaded.dir.join(p)
        } else {
            p.clone()
        }
    });
    super::fleet::Fleet {
        roster,
        roster_cfg: cfg.clone(),
        policy: loaded.config.policy.clone(),
        limits: Some(crate::fleet::batch::Limits::from_config(
            &loaded.config.batch,
        )),
        quotas: crate::fleet::batch::quotas(loaded),
    }
}

/// The queue from `[roster] path` when one is configured: its leavers
/// (soonest exit first) ahead of `[console] leavers`; bad lines and an
/// unreadable roster become notes.
fn roster_leavers(loaded: &config::Loaded, opts: &mut ConsoleOptions) {
    use crate::fleet::roster;
    let cfg = &loaded.config.roster;
    let Some(path) = cfg.path.as_ref().filter(|p| p.as_os_str() != "-") else {
        return;
    };
    let path = if path.is_relative() {
        loaded.dir.join(path)
    } else {
        path.clone()
    };
    match roster::load(&roster::Source::File(path), cfg) {
        Err(e) => opts.notes.push(e.to_string()),
        Ok(r) => {
            opts.notes.extend(
                r.errors
                    .iter()
                    .map(|e| format!("{e} (ignored: nothing is done for this line)")),
            );
            let mut rows: Vec<LeaverRow> = r
                .leavers()
                .map(|e| {
                    let mut row = LeaverRow::new(&e.email);
                    row.name = e.name.clone();
                    row.exit_at = e.exit_time;
                    row.manager = e.manager.clone();
                    row
                })
                .collect();
            rows.sort_by_key(|r| r.exit_at);
            let rest = std::mem::take(&mut opts.leavers);
            opts.leavers = rows;
            for l in rest {
                if !opts.leavers.iter().any(|r| r.email == l.email) {
                    opts.leavers.push(l);
                }
            }
        }
    }
}

/// `offboard demo`: the embedded sandbox on a free loopback port and the
/// console against it, with the demo leavers queued.
pub async fn demo(
    global: &Flags,
    sandbox: crate::sandbox::Options,
    data_dir: PathBuf,
) -> CmdResult {
    let running = crate::sandbox::start(sandbox)
        .await
        .map_err(|e| Failure::other(e.to_string()))?;
    let dir = data_dir.join("demo");
    crate::sandbox::write_demo_keys(&dir)
        .map_err(|e| Failure::other(format!("{}: {e}", dir.display())))?;
    let config_path = dir.join("config.toml");
    std::fs::write(
        &config_path,
        crate::sandbox::demo_config(&running.base_url, &dir),
    )
    .map_err(|e| Failure::other(format!("{}: {e}", config_path.display())))?;
    let loaded = config::load(&config_path)?;
    let (engine, events, notes, resolved) = engine_from(&loaded, &data_dir)?;
    let mut opts = ConsoleOptions::from_global(
        global,
        loaded.operator(),
        None,
        config::project_dirs().map(|d| d.config_dir().to_path_buf()),
    );
    let now = Utc::now();
    use crate::sandbox::tenant;
    let demo_manager = tenant::people()
        .into_iter()
        .find(|p| p.scenario.is_none())
        .map(|p| p.email);
    opts.leavers = crate::sandbox::tenant::LEAVERS
        .iter()
        .map(|l| {
            let mut row = LeaverRow::new(l.email);
            row.name = Some(l.name.to_string());
            row.exit_at = Some(now + chrono::Duration::days(l.exit_in_days));
            // Leavers with a manager hand their Drive and Calendar over
            // through the API; the others keep the manual step.
            if matches!(
                l.scenario,
                tenant::Scenario::Scheduled
                    | tenant::Scenario::Mover
                    | tenant::Scenario::DifferentEmail
            ) {
                row.manager = demo_manager.clone();
            }
            row
        })
        .collect();
    opts.notes = notes;
    let fleet = fleet_of(&loaded);
    let result = open(engine, events, opts, &data_dir, resolved, fleet).await;
    running.stop().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_detection() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(locale_is_utf8(env(&[("LANG", "en_US.UTF-8")])));
        assert!(locale_is_utf8(env(&[
            ("LC_CTYPE", "C.utf8"),
            ("LANG", "C")
        ])));
        assert!(!locale_is_utf8(env(&[
            ("LC_ALL", "C"),
            ("LANG", "en_US.UTF-8")
        ])));
        assert!(!locale_is_utf8(env(&[("LANG", "en_US.ISO-8859-1")])));
        assert!(!locale_is_utf8(env(&[])));
        assert!(locale_is_utf8(env(&[
            ("LC_ALL", ""),
            ("LANG", "de_DE.UTF-8")
        ])));
    }
}

#[cfg(test)]
mod roster_tests {
    use super::*;

    #[test]
    fn the_queue_comes_from_the_roster_soonest_exit_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("hr.csv"),
            "email,name,status,exit_time\n\
             late@example.com,Late,leaving,2026-12-20\n\
             gone@example.com,\"Gone, Long\",left,2026-10-01T09:00:00Z\n\
             here@example.com,Here,active,\n\
             ,Nobody,left,2026-10-01\n",
        )
        .unwrap();
        let mut config = config::Config::default();
        config.roster.path = Some("hr.csv".into());
        config.console.leavers = vec!["late@example.com".into(), "typed@example.com".into()];
        let loaded = config::Loaded {
            config,
            path: dir.path().join("config.toml"),
            dir: dir.path().to_path_buf(),
        };
        let mut opts = ConsoleOptions::from_global(&Flags::default(), "ops".into(), None, None);
        opts.leavers = loaded
            .config
            .console
            .leavers
            .iter()
            .map(|e| LeaverRow::new(e))
            .collect();
        roster_leavers(&loaded, &mut opts);
        let emails: Vec<&str> = opts.leavers.iter().map(|l| l.email.as_str()).collect();
        assert_eq!(
            emails,
            ["gone@example.com", "late@example.com", "typed@example.com"]
        );
        assert_eq!(opts.leavers[0].name.as_deref(), Some("Gone, Long"));
        assert!(opts.leavers[0].exit_at.is_some());
        assert_eq!(
            opts.notes,
            ["hr.csv line 5: no email (ignored: nothing is done for this line)"]
        );
    }
}
