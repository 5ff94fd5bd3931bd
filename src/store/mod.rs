//! Where the queue and the evidence live: the ledger file in the data
//! directory (one operator, the default), or a shared PostgreSQL database
//! (team mode, `[store] url`), behind one interface ([`crate::evidence::Store`]).
//!
//! In team mode a host claims a leaver (a lease, renewed while it works)
//! before acting on them; a lease left by a host that died expires and the
//! case can be resumed elsewhere; a live lease is taken only explicitly
//! (`--take-over`), and the take-over is recorded in the ledger. Hosts
//! working the same app share its quota by their heartbeats.

pub mod pg;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use pg::{Claim, PgStore, QueueRow, StoreError};

use crate::evidence::{LedgerEvent, Store};

/// `[store]` in the config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `postgres://USER@HOST:PORT/DATABASE` (no password). None: the
    /// ledger file in the data directory.
    pub url: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (relative to the config's folder).
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA that signed the server's certificate (a private
    /// CA); the public web roots are trusted without it.
    pub ca_file: Option<PathBuf>,
    /// How long a lease lasts without renewal (a host that died frees its
    /// leavers after this long).
    pub lease_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            password_env: None,
            password_file: None,
            ca_file: None,
            lease_secs: 30,
        }
    }
}

impl StoreConfig {
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }
}

/// Opens the store `[store]` names: the shared database, or the ledger file
/// in `data_dir`.
pub fn open(cfg: &StoreConfig, config_dir: &Path, data_dir: &Path) -> Result<Store, StoreError> {
    match &cfg.url {
        None => Ok(Store::File(data_dir.join(crate::evidence::LEDGER_FILE))),
        Some(_) => {
            let target = pg::Target::new(cfg, config_dir)?;
            Ok(Store::Shared(PgStore::open(target)?))
        }
    }
}

/// This process in the team: `operator@host` for people, a token that
/// tells two processes of the same operator on one host apart.
#[derive(Debug, Clone)]
pub struct Me {
    pub label: String,
    pub token: String,
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        if let Ok(s) = std::str::from_utf8(&buf[..end])
            && !s.is_empty()
        {
            return s.to_string();
        }
    }
    "localhost".into()
}

/// This process's identity (the same for every call).
pub fn me(operator: &str) -> Me {
    static TOKEN: OnceLock<String> = OnceLock::new();
    let token = TOKEN.get_or_init(|| {
        format!(
            "{}-{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 8]>())
        )
    });
    Me {
        label: crate::sanitize::clean_max(&format!("{operator}@{}", hostname()), 120),
        token: token.clone(),
    }
}

/// A lease this process holds on a leaver: renewed in the background every
/// third of its length until released (or dropped). Lost when someone took
/// it over or it expired while the database was away: [`Lease::lost`].
pub struct Lease {
    store: Arc<PgStore>,
    pub email: String,
    pub since: DateTime<Utc>,
    token: String,
    lost: Arc<AtomicBool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Someone else holds the leaver.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub holder: String,
    pub since: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "held by {} since {} (lease until {} unless renewed)",
            self.holder,
            self.since.format("%Y-%m-%d %H:%M:%S UTC"),
            self.expires.format("%H:%M:%S UTC")
        )
    }
}

impl Lease {
    /// Claims `email` for this process. A take-over of a live lease is
    /// recorded in the ledger (`lease_taken_over`) before it is used.
    pub async fn claim(
        store: &Arc<PgStore>,
        ledger: &crate::evidence::Ledger,
        email: &str,
        me: &Me,
        ttl: Duration,
        take_over: bool,
    ) -> Result<Result<Lease, Held>, StoreError> {
        let s = store.clone();
        let (e, label, token) = (email.to_string(), me.label.clone(), me.token.clone());
        let claim =
            pg::spawn(async move { s.claim(e, label, token, ttl, take_over).await }).await?;
        let (since, took_over) = match claim {
            Claim::Held {
                holder,
                since,
                expires,
            } => {
                return Ok(Err(Held {
                    holder,
                    since,
                    expires,
                }));
            }
            Claim::Mine { since, took_over } => (since, took_over),
        };
        let lease = Lease::start(store.clone(), email, since, &me.token, ttl);
        if let Some((from, held_since)) = took_over {
            ledger
                .commit(
                    email,
                    vec![LedgerEvent::LeaseTakenOver {
                        from,
                        held_since,
                        by: me.label.clone(),
                    }],
                )
                .await
                .map_err(|e| StoreError(e.to_string()))?;
        }
        Ok(Ok(lease))
    }

    fn start(
        store: Arc<PgStore>,
        email: &str,
        since: DateTime<Utc>,
        token: &str,
        ttl: Duration,
    ) -> Lease {
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (s, e, t, l) = (
            store.clone(),
            email.to_string(),
            token.to_string(),
            lost.clone(),
        );
        let every = ttl / 3;
        let task = async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(every) => {}
                }
                match s.renew(e.clone(), t.clone(), ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        if !l.swap(true, Ordering::SeqCst) {
                            tracing::warn!(leaver = %e, "lease lost: another host took it over or it expired");
                        }
                    }
                    Err(err) => tracing::warn!(leaver = %e, error = %err, "lease not renewed"),
                }
            }
        };
        spawn_detached(task);
        Lease {
            store,
            email: email.to_string(),
            since,
            token: token.to_string(),
            lost,
            stop: Some(stop),
        }
    }

    /// True once the lease was found taken over or expired.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Resolves once the lease is lost (see [`Lease::lost`]).
    pub async fn lost_wait(&self) {
        while !self.lost() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Gives the lease back (others may claim the leaver at once).
    pub async fn release(mut self) -> Result<(), StoreError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let (s, e, t) = (self.store.clone(), self.email.clone(), self.token.clone());
        pg::spawn(async move { s.release(e, t).await }).await
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Team mode: runs `work` on `email` while holding the leaver's lease
/// (claimed first, given back after; the work stops if the lease is lost).
/// A leaver another host holds is left to it (an error saying who).
/// One operator (the ledger file): just runs `work`.
pub async fn while_holding<T>(
    ledger: &crate::evidence::Ledger,
    email: &str,
    source: &str,
    work: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let Some(pg) = ledger.store().shared().cloned() else {
        return work.await;
    };
    let me = me(ledger.operator());
    let email = crate::model::Person::new(email).email;
    let (p, e, src, by) = (
        pg.clone(),
        email.clone(),
        source.to_string(),
        me.label.clone(),
    );
    pg::spawn(async move { p.add_leavers(vec![(e, None)], src, by).await })
        .await
        .map_err(|e| e.to_string())?;
    let lease = match Lease::claim(&pg, ledger, &email, &me, pg.target.lease, false)
        .await
        .map_err(|e| e.to_string())?
    {
        Ok(l) => l,
        Err(held) => return Err(format!("{held}; left to that host")),
    };
    let r = tokio::select! {
        r = work => r,
        () = lease.lost_wait() => Err(LEASE_LOST.to_string()),
    };
    if let Err(e) = lease.release().await {
        tracing::warn!(error = %e, "lease not released; it expires by itself");
    }
    r
}

/// Why work on a leaver stopped half-way in team mode.
pub const LEASE_LOST: &str = "this host no longer holds the leaver (taken over by another host, or the lease expired while the database was away); stopped here, the host that holds it now goes on from the ledger";

fn spawn_detached<F>(f: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    pg::detach(f);
}

/// Team mode in the console: turns notifications into engine events for
/// the console: other operators' steps (records not written by
/// `operator`) and who holds which leaver. Runs until the receiver closes.
pub fn bridge(
    store: &Arc<PgStore>,
    operator: &str,
    tx: tokio::sync::mpsc::UnboundedSender<crate::engine::Event>,
) {
    use crate::engine::Event;
    let (s, me, label) = (
        store.clone(),
        operator.to_string(),
        self::me(operator).label,
    );
    let mut notes = store.listen();
    spawn_detached(async move {
        let mut seen = s.count().await.unwrap_or(0);
        let mut queue_changed = true;
        loop {
            if queue_changed {
                queue_changed = false;
                if let Ok(rows) = s.queue().await {
                    for r in rows {
                        let _ = tx.send(Event::Holder {
                            email: r.email,
                            holder: r.holder.filter(|h| *h != label),
                            since: r.since,
                        });
                    }
                }
            }
            let Some((channel, _)) = notes.recv().await else {
                return;
            };
            match channel.as_str() {
                "offboard_queue" | "offboard_listening" => queue_changed = true,
                "offboard_ledger" => {
                    let Ok(lines) = s.lines_after(seen).await else {
                        continue;
                    };
                    for line in lines {
                        let Ok(r) = serde_json::from_str::<crate::evidence::Record>(&line) else {
                            continue;
                        };
                        seen = seen.max(r.seq);
                        if r.operator == me {
                            continue;
                        }
                        let _ = tx.send(Event::TeamStep {
                            text: crate::evidence::report::event_detail(&r.event),
                            email: r.case,
                            operator: r.operator,
                        });
                    }
                }
                _ => {}
            }
            if tx.is_closed() {
                return;
            }
        }
    });
}

/// Keeps this host's heartbeat for `apps` and sets each app's share of its
/// quota to 1 / (live hosts working it), until the process ends.
pub fn share_quota(store: &Arc<PgStore>, me: &Me, apps: Vec<String>) {
    const EVERY: Duration = Duration::from_secs(2);
    let (s, host) = (store.clone(), me.token.clone());
    spawn_detached(async move {
        loop {
            match s.heartbeat(host.clone(), apps.clone(), EVERY * 3).await {
                Ok(counts) => {
                    for app in &apps {
                        let n = counts.iter().find(|(a, _)| a == app).map_or(1, |(_, n)| *n);
                        crate::connector::http::set_team_hosts(app, n);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat not recorded"),
            }
            tokio::time::sleep(EVERY).await;
        }
    });
}
