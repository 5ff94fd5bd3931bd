//! The loop: `select!{biased; actions, engine events, input, tick}`, drain,
//! draw once when something changed. Effects run as tokio tasks that send
//! actions back; the loop itself never awaits the network.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use crossterm::event::{Event as TermEvent, KeyEventKind};
use futures::{Stream, StreamExt};
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio::sync::mpsc;

use crate::connector::Health;
use crate::engine::{Event, Summary};

use super::action::{Action, Effect};
use super::model::{BatchPlan, CaseSnapshot, LoginPrompt, Model, RevokeScope};
use super::{update, view};

/// Woken by the panic hook: a panic anywhere ends the console cleanly.
pub static PANICKED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Ticks for the clock and spinner: four a second at most.
pub const TICK: Duration = Duration::from_millis(250);

/// Why `:takeover` has nothing to do without a shared store.
pub const NO_TEAM: &str =
    "nothing to take over: leavers are shared between hosts only in team mode ([store] url)";

/// What the console needs from the engine. Errors are plain text (the
/// console shows them, sanitised).
#[async_trait]
pub trait Service: Send + Sync + 'static {
    async fn discover(&self, email: &str) -> Result<CaseSnapshot, String>;
    async fn refresh(&self, email: &str, connector: Option<&str>) -> Result<CaseSnapshot, String>;
    async fn revoke(&self, email: &str, scope: &RevokeScope) -> Result<Summary, String>;
    async fn manual_done(&self, email: &str, key: &str, note: &str) -> Result<(), String>;
    /// Picks one of several accounts that match the leaver in an app.
    async fn pick_account(
        &self,
        email: &str,
        app: &str,
        account_id: &str,
    ) -> Result<CaseSnapshot, String>;
    fn case(&self, email: &str) -> Option<CaseSnapshot>;
    fn health(&self) -> Vec<(String, Health)>;
    /// Writes the evidence report for a leaver; returns where.
    async fn export(
        &self,
        email: &str,
        exit_at: Option<chrono::DateTime<Utc>>,
    ) -> Result<PathBuf, String>;
    /// Signs in to an app (`:login APP`): tells the operator what to do
    /// through `io`, and returns what to tell them at the end. Dropping the
    /// future abandons the sign-in.
    async fn login(&self, app: &str, io: LoginIo) -> Result<String, String>;
    /// Runs the exit-time policy once (as `offboard run --due --yes`):
    /// one line per leaver acted on.
    async fn run_due(&self) -> Result<Vec<String>, String> {
        Err("no roster: set [roster] path in the config".into())
    }
    /// Team mode: takes the leaver over from the host that holds them
    /// (recorded in the ledger) and keeps them for the next action.
    async fn take_over(&self, email: &str) -> Result<String, String> {
        let _ = email;
        Err(NO_TEAM.into())
    }
    /// Names whom the leaver's data goes to, and reads the leaver again.
    async fn hand_over(&self, email: &str, to: &str) -> Result<CaseSnapshot, String> {
        let _ = (email, to);
        Err("hand-over is not available here".into())
    }
    /// Discovers and plans leavers as one batch; changes nothing.
    async fn batch_prepare(&self, emails: &[String]) -> Result<BatchPlan, String> {
        let _ = emails;
        Err("batches are not available here".into())
    }
    /// Runs leavers as one batch (`confirm`: the number the operator typed;
    /// refused unless it is exactly theirs when the batch is over the cap).
    async fn batch_run(
        &self,
        emails: &[String],
        confirm: usize,
    ) -> Result<crate::fleet::batch::Outcome, String> {
        let _ = (emails, confirm);
        Err("batches are not available here".into())
    }
}

/// The console's side of a sign-in in progress.
pub struct LoginIo {
    /// Shows what the operator must do (user code, URL).
    pub prompt: Box<dyn Fn(LoginPrompt) + Send + Sync>,
    /// Redirected URLs pasted back by the operator, one per item.
    pub pasted: mpsc::UnboundedReceiver<String>,
}

/// A sign-in task: cancelled by aborting it, fed pasted URLs.
struct LoginTask {
    id: u64,
    abort: tokio::task::AbortHandle,
    paste: mpsc::UnboundedSender<String>,
}

/// Runs effects as tasks whose results come back as actions.
pub struct Effects {
    service: Arc<dyn Service>,
    tx: mpsc::UnboundedSender<Action>,
    logins: Arc<Mutex<HashMap<String, LoginTask>>>,
    next_id: AtomicU64,
}

impl Effects {
    pub fn new(service: Arc<dyn Service>, tx: mpsc::UnboundedSender<Action>) -> Effects {
        Effects {
            service,
            tx,
            logins: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU64::new(1),
        }
    }

    pub fn spawn(&self, effect: Effect) {
        match effect {
            Effect::Login { app } => self.start_login(app),
            Effect::LoginPaste { app, url } => {
                let logins = self.logins.lock().expect("logins lock");
                match logins.get(&app) {
                    Some(t) => {
                        let _ = t.paste.send(url);
                    }
                    None => {
                        let _ = self.tx.send(Action::LoginFinished {
                            app,
                            result: Err("this sign-in has ended; start it again".into()),
                        });
                    }
                }
            }
            Effect::LoginCancel { app } => {
                if let Some(t) = self.logins.lock().expect("logins lock").remove(&app) {
                    t.abort.abort();
                }
            }
            other => spawn_effect(&self.service, &self.tx, other),
        }
    }

    fn start_login(&self, app: String) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (paste, pasted) = mpsc::unbounded_channel();
        let prompt_tx = self.tx.clone();
        let prompt_app = app.clone();
        let io = LoginIo {
            prompt: Box::new(move |prompt| {
                let _ = prompt_tx.send(Action::LoginPrompt {
                    app: prompt_app.clone(),
                    prompt,
                });
            }),
            pasted,
        };
        let (s, tx, logins) = (self.service.clone(), self.tx.clone(), self.logins.clone());
        let task_app = app.clone();
        // Hold the lock while spawning, so the task cannot finish (and
        // remove its entry) before the entry exists.
        let mut map = self.logins.lock().expect("logins lock");
        let handle = tokio::spawn(async move {
            let result = s.login(&task_app, io).await;
            {
                let mut map = logins.lock().expect("logins lock");
                if map.get(&task_app).is_some_and(|t| t.id == id) {
                    map.remove(&task_app);
                }
            }
            let _ = tx.send(Action::LoginFinished {
                app: task_app,
                result,
            });
        });
        if let Some(old) = map.insert(
            app,
            LoginTask {
                id,
                abort: handle.abort_handle(),
                paste,
            },
        ) {
            old.abort.abort();
        }
    }
}

impl Drop for Effects {
    fn drop(&mut self) {
        if let Ok(mut map) = self.logins.lock() {
            for (_, t) in map.drain() {
                t.abort.abort();
            }
        }
    }
}

/// Runs one effect in its own task; its result comes back as an action.
fn spawn_effect(service: &Arc<dyn Service>, tx: &mpsc::UnboundedSender<Action>, effect: Effect) {
    let s = service.clone();
    let tx = tx.clone();
    tokio::spawn(async move {
        let action = match effect {
            Effect::Discover { email } => {
                let result = s.discover(&email).await;
                Action::Discovered {
                    health: s.health(),
                    email,
                    result,
                }
            }
            Effect::Refresh { email, connector } => {
                let result = s.refresh(&email, connector.as_deref()).await;
                Action::Refreshed {
                    health: s.health(),
                    email,
                    connector,
                    result,
                    at: Utc::now(),
                }
            }
            Effect::Revoke { email, scope } => {
                let result = s.revoke(&email, &scope).await;
                Action::RevokeFinished {
                    case: s.case(&email),
                    email,
                    result,
                }
            }
            Effect::ManualDone { email, key, note } => {
                let result = s.manual_done(&email, &key, &note).await;
                Action::ManualDone {
                    case: s.case(&email),
                    email,
                    key,
                    result,
                }
            }
            Effect::PickAccount {
                email,
                app,
                account_id,
            } => {
                let result = s.pick_account(&email, &app, &account_id).await;
                Action::Picked {
                    health: s.health(),
                    email,
                    app,
                    account: account_id,
                    result,
                }
            }
            Effect::Export { email, exit_at } => {
                let result = s.export(&email, exit_at).await;
                Action::Exported { email, result }
            }
            Effect::AutoRun => {
                let result = s.run_due().await;
                let cases = cases_of(&s, result.as_ref().ok().map(Vec::as_slice).unwrap_or(&[]));
                Action::AutoRan { result, cases }
            }
            Effect::TakeOver { email } => {
                let result = s.take_over(&email).await;
                Action::TookOver { email, result }
            }
            Effect::HandOver { email, to } => {
                let result = s.hand_over(&email, &to).await;
                Action::Discovered {
                    health: s.health(),
                    email,
                    result,
                }
            }
            Effect::BatchPrepare { emails } => {
                let result = s.batch_prepare(&emails).await;
                Action::BatchPrepared { emails, result }
            }
            Effect::BatchRun { emails, confirm } => {
                let result = s.batch_run(&emails, confirm).await;
                let cases = emails.iter().filter_map(|e| s.case(e)).collect();
                Action::BatchFinished { result, cases }
            }
            Effect::Login { .. } | Effect::LoginPaste { .. } | Effect::LoginCancel { .. } => {
                // Sign-ins keep state between effects: see [`Effects`].
                return;
            }
        };
        let _ = tx.send(action);
    });
}

/// The cases of the leavers named at the start of policy lines
/// (`email: …`).
fn cases_of(s: &Arc<dyn Service>, lines: &[String]) -> Vec<CaseSnapshot> {
    lines
        .iter()
        .filter_map(|l| l.split_once(':').map(|(e, _)| e.trim()))
        .filter_map(|e| s.case(e))
        .collect()
}

async fn terminate_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(mut t), Ok(mut h)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = h.recv() => {}
            }
        }
        (Ok(mut t), Err(_)) => {
            t.recv().await;
        }
        _ => std::future::pending().await,
    }
}

/// The console loop, generic over the backend and the input stream so that
/// tests drive it with scripted keys on a `TestBackend`. Returns when the
/// operator quits, the input ends, or a signal or panic ends the program
/// (`Err` for the last).
pub async fn run<B, S>(
    terminal: &mut Terminal<B>,
    model: &mut Model,
    service: Arc<dyn Service>,
    mut input: S,
    mut events: mpsc::UnboundedReceiver<Event>,
) -> io::Result<()>
where
    B: Backend,
    B::Error: Send + Sync + 'static,
    S: Stream<Item = io::Result<TermEvent>> + Unpin,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Action>();
    if let Ok(size) = terminal.size() {
        model.size = (size.width, size.height);
    }
    let effects = Effects::new(service, tx);
    for fx in update::init(model) {
        effects.spawn(fx);
    }
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let term = terminate_signal();
    tokio::pin!(term);
    let mut events_open = true;
    let mut panicked = false;
    draw(terminal, model)?;
    loop {
        let action = tokio::select! {
            biased;
            _ = PANICKED.notified() => {
                panicked = true;
                Action::Terminate("internal error: a task panicked (see the log file)".into())
            }
            _ = &mut term => Action::Terminate("terminated by signal".into()),
            Some(a) = rx.recv() => a,
            ev = events.recv(), if events_open => match ev {
                Some(ev) => Action::Engine(ev),
                None => { events_open = false; continue; }
            },
            ev = input.next() => match ev {
                Some(Ok(TermEvent::Key(k))) if k.kind == KeyEventKind::Press => Action::Key(k),
                Some(Ok(TermEvent::Resize(w, h))) => Action::Resize(w, h),
                Some(Ok(TermEvent::Paste(text))) => Action::Paste(text),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e),
                None => Action::Terminate("input closed".into()),
            },
            _ = ticker.tick() => Action::Tick(Utc::now()),
        };
        handle(model, &effects, action);
        // Drain whatever else is queued before drawing once.
        loop {
            if let Ok(a) = rx.try_recv() {
                handle(model, &effects, a);
            } else if let Ok(ev) = events.try_recv() {
                handle(model, &effects, Action::Engine(ev));
            } else {
                break;
            }
        }
        if model.quit {
            break;
        }
        if model.dirty {
            draw(terminal, model)?;
        }
    }
    if panicked {
        return Err(io::Error::other(
            "a task panicked; the log file has the details",
        ));
    }
    Ok(())
}

fn handle(model: &mut Model, effects: &Effects, action: Action) {
    for fx in update::update(model, action) {
        effects.spawn(fx);
    }
}

fn draw<B: Backend>(terminal: &mut Terminal<B>, model: &mut Model) -> io::Result<()>
where
    B::Error: Send + Sync + 'static,
{
    terminal
        .draw(|f| view::draw(model, f.area(), f.buffer_mut()))
        .map_err(io::Error::other)?;
    model.dirty = false;
    Ok(())
}
