//! The shared store on PostgreSQL: the ledger table, the queue of leavers,
//! leases and heartbeats. Every query runs on the store's own runtime (one
//! worker thread), so sync and async callers alike can use it.
//!
//! Chain serialisation: an append takes the transaction-level advisory lock
//! [`LEDGER_LOCK`], reads the last line, computes the next records' `prev`
//! and inserts them; the lock is released by COMMIT, so writers on any
//! number of hosts extend one chain, one transaction after another (and the
//! primary key on `seq` refuses a fork should the lock ever be bypassed).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, NoTls};

use super::StoreConfig;
use crate::evidence::{GENESIS, LedgerEvent, Record, sha256_hex};

/// Migrations, applied in order by [`PgStore::migrate`].
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "0001_team.sql",
    include_str!("../../migrations/0001_team.sql"),
)];

/// The advisory lock that serialises ledger appends (and migrations).
pub const LEDGER_LOCK: i64 = 0x6f66_6662_6c65_6467;
const MIGRATE_LOCK: i64 = 0x6f66_6662_6d69_6772;
/// How long one database round trip may take before the store counts the
/// database as gone.
const QUERY_TIMEOUT: Duration = Duration::from_secs(15);

/// A failure of the shared store, already phrased for the operator (never
/// with credentials).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("offboard-store")
            .enable_all()
            .build()
            .expect("the store's runtime starts")
    })
}

/// Runs `f` on the store's runtime and waits for it (from sync code, or
/// from async code that may block briefly).
pub fn block<F>(f: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    futures::executor::block_on(spawn(f))
}

/// Runs `f` on the store's runtime; the answer can be awaited anywhere.
pub async fn spawn<F>(f: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match rt().spawn(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Runs `f` on the store's runtime in the background.
pub fn detach<F>(f: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    drop(rt().spawn(f));
}

/// Where the database is and how to sign in (the password stays in here).
#[derive(Clone)]
pub struct Target {
    pg: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// `postgres://host:port/db`, without user or password.
    pub label: String,
    /// `[store] lease_secs`.
    pub lease: Duration,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("label", &self.label)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

fn is_loopback(h: &Host) -> bool {
    match h {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            let n = name.trim_start_matches('[').trim_end_matches(']');
            n.eq_ignore_ascii_case("localhost")
                || n.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    }
}

impl Target {
    /// From `[store]`: the URL, the password from `password_env` or
    /// `password_file` (relative to the config's folder), TLS whenever a
    /// host is not on this machine's loopback.
    pub fn new(cfg: &StoreConfig, config_dir: &Path) -> Result<Target, StoreError> {
        let url = cfg
            .url
            .as_deref()
            .ok_or_else(|| StoreError("[store] has no url".into()))?;
        let mut pg: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError(format!(
                "[store] url is not a PostgreSQL URL (postgres://USER@HOST:PORT/DATABASE): {e}"
            ))
        })?;
        if pg.get_password().is_some() {
            return Err(StoreError(
                "[store] url carries a password: remove it from the URL and set password_env (an environment variable) or password_file instead".into(),
            ));
        }
        if pg.get_user().is_none() {
            return Err(StoreError(
                "[store] url names no user (postgres://USER@HOST:PORT/DATABASE)".into(),
            ));
        }
        if let Some(var) = &cfg.password_env {
            let value = std::env::var(var).map_err(|_| {
                StoreError(format!(
                    "[store] password_env = \"{}\": that environment variable is not set",
                    crate::sanitize::clean_max(var, 60)
                ))
            })?;
            pg.password(value.trim_end_matches(['\r', '\n']));
        } else if let Some(file) = &cfg.password_file {
            let path = if file.is_relative() {
                config_dir.join(file)
            } else {
                file.clone()
            };
            let value = std::fs::read_to_string(&path).map_err(|e| {
                StoreError(format!(
                    "[store] password_file {}: {e}",
                    crate::sanitize::clean(&path.display().to_string())
                ))
            })?;
            pg.password(value.trim_end_matches(['\r', '\n']));
        }
        pg.application_name("offboard");
        pg.connect_timeout(Duration::from_secs(5));
        pg.keepalives(true);
        pg.keepalives_idle(Duration::from_secs(10));
        let remote = pg.get_hosts().iter().any(|h| !is_loopback(h));
        let wants_tls = matches!(pg.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        let tls = if remote || wants_tls {
            pg.ssl_mode(tokio_postgres::config::SslMode::Require);
            Some(tls_connector(cfg.ca_file.as_deref().map(|f| {
                if f.is_relative() {
                    config_dir.join(f)
                } else {
                    f.to_path_buf()
                }
            }))?)
        } else {
            None
        };
        let host = pg
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(n) => n.clone(),
                Host::Unix(p) => p.display().to_string(),
            })
            .collect::<Vec<_>>()
            .join(",");
        let port = pg.get_ports().first().copied().unwrap_or(5432);
        let label = format!(
            "postgres://{host}:{port}/{}",
            pg.get_dbname().unwrap_or_default()
        );
        Ok(Target {
            pg,
            tls,
            label: crate::sanitize::clean(&label),
            lease: cfg.lease(),
        })
    }

    /// Whether the connection is encrypted (off loopback it always is).
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    async fn connect(&self) -> Result<Client, StoreError> {
        let res = match &self.tls {
            Some(tls) => {
                let (client, conn) = self
                    .pg
                    .connect(tls.clone())
                    .await
                    .map_err(|e| self.err(&e))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                client
            }
            None => {
                let (client, conn) = self.pg.connect(NoTls).await.map_err(|e| self.err(&e))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                client
            }
        };
        Ok(res)
    }

    /// A database error for the operator: what failed and where, never the
    /// credentials.
    pub fn err(&self, e: &tokio_postgres::Error) -> StoreError {
        let what = match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => {
                let mut s = e.to_string();
                let mut src = std::error::Error::source(e);
                while let Some(inner) = src {
                    s.push_str(": ");
                    s.push_str(&inner.to_string());
                    src = inner.source();
                }
                s
            }
        };
        StoreError(format!(
            "shared store {}: {}",
            self.label,
            crate::sanitize::clean_max(&what, 400)
        ))
    }
}

fn tls_connector(
    ca_file: Option<PathBuf>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(&path)
            .map_err(|e| StoreError(format!("[store] ca_file {}: {e}", path.display())))?;
        for c in certs {
            let c =
                c.map_err(|e| StoreError(format!("[store] ca_file {}: {e}", path.display())))?;
            roots
                .add(c)
                .map_err(|e| StoreError(format!("[store] ca_file {}: {e}", path.display())))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// One row of the shared queue.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QueueRow {
    pub email: String,
    pub name: Option<String>,
    pub source: String,
    pub added_by: String,
    /// Who holds the leaver now (a live lease), and since when.
    pub holder: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This process holds the lease (since then).
    Mine {
        since: DateTime<Utc>,
        /// Someone else's lease this claim took over (explicitly).
        took_over: Option<(String, DateTime<Utc>)>,
    },
    /// Someone else holds it.
    Held {
        holder: String,
        since: DateTime<Utc>,
        expires: DateTime<Utc>,
    },
}

/// The shared store.
pub struct PgStore {
    pub target: Target,
    client: tokio::sync::Mutex<Option<Client>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target.label)
            .finish()
    }
}

/// Runs one database step with the store's timeout.
async fn timed<T>(
    t: &Target,
    f: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(QUERY_TIMEOUT, f).await {
        Ok(r) => r.map_err(|e| t.err(&e)),
        Err(_) => Err(StoreError(format!(
            "shared store {}: no answer within {}s",
            t.label,
            QUERY_TIMEOUT.as_secs()
        ))),
    }
}

impl PgStore {
    /// Connects and brings the schema up to date (see [`Self::migrate`]).
    pub fn open(target: Target) -> Result<Arc<PgStore>, StoreError> {
        let store = Self::new(target);
        let s = store.clone();
        block(async move { s.migrate().await })?;
        Ok(store)
    }

    /// The store, not yet connected nor migrated.
    pub fn new(target: Target) -> Arc<PgStore> {
        Arc::new(PgStore {
            target,
            client: tokio::sync::Mutex::new(None),
        })
    }

    pub fn label(&self) -> &str {
        &self.target.label
    }

    /// Runs `f` with a connected client, reconnecting when the last one
    /// was lost; a failed step drops a closed connection so the next call
    /// reconnects (the database coming back is picked up by itself).
    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: AsyncFnOnce(&mut Client, &Target) -> Result<T, StoreError>,
    {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = None;
            let c = self.target.connect().await.map_err(|e| {
                StoreError(format!(
                    "{e}; offboard takes no further step until the database answers again (every record it confirmed is kept)"
                ))
            })?;
            *guard = Some(c);
        }
        let client = guard.as_mut().expect("connected above");
        let r = f(client, &self.target).await;
        if r.is_err() && client.is_closed() {
            *guard = None;
            return r.map_err(|e| {
                StoreError(format!(
                    "{e}: the connection to the database was lost; offboard takes no further step until it answers again (every record it confirmed is kept; what this step was writing was not confirmed)"
                ))
            });
        }
        r
    }

    /// Applies the migrations this binary carries that the database lacks,
    /// under an advisory lock, each in its transaction. Needs the schema
    /// owner's rights when one is pending (the application's role, granted
    /// `offboard_writer`, has none: it is told to run `offboard store
    /// migrate` as the owner).
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        self.with(async |c, t| {
            let latest = MIGRATIONS.last().map_or(0, |m| m.0);
            let have = schema_version(c, t).await?;
            if have >= latest {
                return Ok(Vec::new());
            }
            let tx = timed(t, c.transaction()).await?;
            let prep = async {
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
                    .await?;
                tx.batch_execute(
                    "CREATE TABLE IF NOT EXISTS offboard_schema (
                       version    integer     PRIMARY KEY,
                       name       text        NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())",
                )
                .await
            };
            if let Err(e) = timed(t, prep).await {
                return Err(StoreError(format!(
                    "{e}: the database needs offboard's tables (schema version {latest}, it has {have}); run `offboard store migrate` with the schema owner's credentials (README, Team mode)"
                )));
            }
            let row = timed(
                t,
                tx.query_one("SELECT COALESCE(MAX(version), 0) FROM offboard_schema", &[]),
            )
            .await?;
            let have: i32 = row.get(0);
            let mut applied = Vec::new();
            for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > have) {
                timed(t, tx.batch_execute(sql)).await.map_err(|e| {
                    StoreError(format!("migration {name}: {e}"))
                })?;
                timed(
                    t,
                    tx.execute(
                        "INSERT INTO offboard_schema (version, name) VALUES ($1, $2)",
                        &[version, name],
                    ),
                )
                .await?;
                applied.push(name.to_string());
            }
            timed(t, tx.commit()).await?;
            Ok(applied)
        })
        .await
    }

    /// Appends `batch` (events per case, in order) in one transaction,
    /// continuing the chain from the table's last line. Returns once the
    /// transaction has committed: an error means none of them may be taken
    /// as recorded.
    pub async fn append(
        &self,
        operator: &str,
        batch: Vec<(String, Vec<LedgerEvent>)>,
    ) -> Result<Vec<Record>, StoreError> {
        let operator = operator.to_string();
        self.with(async move |c, t| {
            let tx = timed(t, c.transaction()).await?;
            timed(
                t,
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LEDGER_LOCK]),
            )
            .await?;
            let head = timed(
                t,
                tx.query_opt(
                    "SELECT seq, line FROM offboard_ledger ORDER BY seq DESC LIMIT 1",
                    &[],
                ),
            )
            .await?;
            let (mut seq, mut hash) = match head {
                Some(row) => {
                    let seq: i64 = row.get(0);
                    let line: &str = row.get(1);
                    (seq as u64, sha256_hex(line.as_bytes()))
                }
                None => (0, GENESIS.to_string()),
            };
            let insert = timed(
                t,
                tx.prepare(
                    "INSERT INTO offboard_ledger (seq, case_email, line) VALUES ($1, $2, $3)",
                ),
            )
            .await?;
            let mut out = Vec::new();
            for (case, events) in batch {
                for event in events {
                    let record = Record {
                        seq: seq + 1,
                        ts: Utc::now(),
                        operator: operator.clone(),
                        case: case.clone(),
                        event,
                        prev: hash.clone(),
                    };
                    let line = serde_json::to_string(&record)
                        .map_err(|e| StoreError(format!("cannot encode a record: {e}")))?;
                    timed(
                        t,
                        tx.execute(&insert, &[&(record.seq as i64), &record.case, &line]),
                    )
                    .await?;
                    hash = sha256_hex(line.as_bytes());
                    seq = record.seq;
                    out.push(record);
                }
            }
            timed(t, tx.commit()).await?;
            Ok(out)
        })
        .await
    }

    /// Every line of the ledger table, in `seq` order (optionally one
    /// case's).
    pub async fn lines(&self, case: Option<String>) -> Result<Vec<String>, StoreError> {
        self.with(async move |c, t| {
            let rows =
                match &case {
                    None => {
                        timed(
                            t,
                            c.query("SELECT line FROM offboard_ledger ORDER BY seq", &[]),
                        )
                        .await?
                    }
                    Some(email) => timed(
                        t,
                        c.query(
                            "SELECT line FROM offboard_ledger WHERE case_email = $1 ORDER BY seq",
                            &[email],
                        ),
                    )
                    .await?,
                };
            Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
        })
        .await
    }

    /// The ledger's lines after `seq`.
    pub async fn lines_after(&self, seq: u64) -> Result<Vec<String>, StoreError> {
        self.with(async move |c, t| {
            let rows = timed(
                t,
                c.query(
                    "SELECT line FROM offboard_ledger WHERE seq > $1 ORDER BY seq",
                    &[&(seq as i64)],
                ),
            )
            .await?;
            Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
        })
        .await
    }

    /// How many records the table holds.
    pub async fn count(&self) -> Result<u64, StoreError> {
        self.with(async |c, t| {
            let row = timed(t, c.query_one("SELECT COUNT(*) FROM offboard_ledger", &[])).await?;
            Ok(row.get::<_, i64>(0) as u64)
        })
        .await
    }

    /// Copies ledger lines in verbatim (same `seq`, same `prev`), in one
    /// transaction, into an empty table.
    pub async fn import(&self, lines: Vec<(u64, String, String)>) -> Result<(), StoreError> {
        self.with(async move |c, t| {
            let tx = timed(t, c.transaction()).await?;
            timed(
                t,
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LEDGER_LOCK]),
            )
            .await?;
            let n: i64 = timed(t, tx.query_one("SELECT COUNT(*) FROM offboard_ledger", &[]))
                .await?
                .get(0);
            if n > 0 {
                return Err(StoreError(format!(
                    "shared store {}: the ledger table already holds {n} record(s); a file can only be imported into an empty one (its chain starts at the genesis value)",
                    t.label
                )));
            }
            let insert = timed(
                t,
                tx.prepare("INSERT INTO offboard_ledger (seq, case_email, line) VALUES ($1, $2, $3)"),
            )
            .await?;
            for (seq, case, line) in &lines {
                timed(t, tx.execute(&insert, &[&(*seq as i64), case, line])).await?;
            }
            timed(t, tx.commit()).await?;
            Ok(())
        })
        .await
    }

    /// Adds leavers to the queue (kept as they are when already there).
    pub async fn add_leavers(
        &self,
        leavers: Vec<(String, Option<String>)>,
        source: String,
        by: String,
    ) -> Result<(), StoreError> {
        self.with(async move |c, t| {
            let stmt = timed(
                t,
                c.prepare(
                    "INSERT INTO offboard_leavers (email, name, source, added_by) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (email) DO UPDATE SET name = COALESCE(offboard_leavers.name, EXCLUDED.name)
                     WHERE offboard_leavers.name IS NULL AND EXCLUDED.name IS NOT NULL",
                ),
            )
            .await?;
            for (email, name) in &leavers {
                timed(t, c.execute(&stmt, &[email, name, &source, &by])).await?;
            }
            Ok(())
        })
        .await
    }

    /// The queue with each leaver's live lease.
    pub async fn queue(&self) -> Result<Vec<QueueRow>, StoreError> {
        self.with(async |c, t| {
            let rows = timed(
                t,
                c.query(
                    "SELECT l.email, l.name, l.source, l.added_by, s.holder, s.since, s.expires
                     FROM offboard_leavers l
                     LEFT JOIN offboard_leases s ON s.email = l.email AND s.expires > now()
                     ORDER BY l.added_at, l.email",
                    &[],
                ),
            )
            .await?;
            Ok(rows
                .iter()
                .map(|r| QueueRow {
                    email: r.get(0),
                    name: r.get(1),
                    source: r.get(2),
                    added_by: r.get(3),
                    holder: r.get(4),
                    since: r.get(5),
                    expires: r.get(6),
                })
                .collect())
        })
        .await
    }

    /// Claims `email` for `me` (token `token`) for `ttl`: the lease row is
    /// locked with `FOR UPDATE SKIP LOCKED`, so of two hosts claiming at
    /// once one gets it and the other is told who holds it. A live lease
    /// of someone else is taken only with `take_over`.
    pub async fn claim(
        &self,
        email: String,
        me: String,
        token: String,
        ttl: Duration,
        take_over: bool,
    ) -> Result<Claim, StoreError> {
        self.with(async move |c, t| {
            let tx = timed(t, c.transaction()).await?;
            timed(
                t,
                tx.execute(
                    "INSERT INTO offboard_leases (email, holder, token, since, expires)
                     VALUES ($1, '', '', now(), 'epoch') ON CONFLICT (email) DO NOTHING",
                    &[&email],
                ),
            )
            .await?;
            let row = timed(
                t,
                tx.query_opt(
                    "SELECT holder, token, since, expires, expires > now()
                     FROM offboard_leases WHERE email = $1 FOR UPDATE SKIP LOCKED",
                    &[&email],
                ),
            )
            .await?;
            let Some(row) = row else {
                // Another host is claiming it at this very moment.
                let now = Utc::now();
                return Ok(Claim::Held {
                    holder: "another host (claiming it now)".into(),
                    since: now,
                    expires: now,
                });
            };
            let holder: String = row.get(0);
            let held_token: String = row.get(1);
            let since: DateTime<Utc> = row.get(2);
            let expires: DateTime<Utc> = row.get(3);
            let live: bool = row.get(4);
            let mine = held_token == token;
            if live && !mine && !take_over {
                return Ok(Claim::Held {
                    holder,
                    since,
                    expires,
                });
            }
            let secs = ttl.as_secs_f64();
            let row = timed(
                t,
                tx.query_one(
                    "UPDATE offboard_leases SET holder = $2, token = $3,
                       since = CASE WHEN token = $3 THEN since ELSE now() END,
                       expires = now() + make_interval(secs => $4)
                     WHERE email = $1 RETURNING since",
                    &[&email, &me, &token, &secs],
                ),
            )
            .await?;
            timed(t, tx.commit()).await?;
            Ok(Claim::Mine {
                since: row.get(0),
                took_over: (live && !mine).then_some((holder, since)),
            })
        })
        .await
    }

    /// Extends a lease this process holds; false when it is no longer its.
    pub async fn renew(
        &self,
        email: String,
        token: String,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.with(async move |c, t| {
            let secs = ttl.as_secs_f64();
            let n = timed(
                t,
                c.execute(
                    "UPDATE offboard_leases SET expires = now() + make_interval(secs => $3)
                     WHERE email = $1 AND token = $2",
                    &[&email, &token, &secs],
                ),
            )
            .await?;
            Ok(n == 1)
        })
        .await
    }

    /// Gives a lease back.
    pub async fn release(&self, email: String, token: String) -> Result<(), StoreError> {
        self.with(async move |c, t| {
            timed(
                t,
                c.execute(
                    "DELETE FROM offboard_leases WHERE email = $1 AND token = $2",
                    &[&email, &token],
                ),
            )
            .await?;
            Ok(())
        })
        .await
    }

    /// Records that `host` is at work on `apps` and answers how many live
    /// hosts (heartbeats within `ttl`) work each of them.
    pub async fn heartbeat(
        &self,
        host: String,
        apps: Vec<String>,
        ttl: Duration,
    ) -> Result<Vec<(String, u32)>, StoreError> {
        self.with(async move |c, t| {
            let stmt = timed(
                t,
                c.prepare(
                    "INSERT INTO offboard_hosts (host, app, seen) VALUES ($1, $2, now())
                     ON CONFLICT (host, app) DO UPDATE SET seen = now()",
                ),
            )
            .await?;
            for app in &apps {
                timed(t, c.execute(&stmt, &[&host, app])).await?;
            }
            let secs = ttl.as_secs_f64();
            let rows = timed(
                t,
                c.query(
                    "SELECT app, COUNT(*) FROM offboard_hosts
                     WHERE seen > now() - make_interval(secs => $1) AND app = ANY($2)
                     GROUP BY app",
                    &[&secs, &apps],
                ),
            )
            .await?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1).max(1) as u32))
                .collect())
        })
        .await
    }

    /// Stops counting `host` among the live ones.
    pub async fn leave(&self, host: String) -> Result<(), StoreError> {
        self.with(async move |c, t| {
            timed(
                t,
                c.execute("DELETE FROM offboard_hosts WHERE host = $1", &[&host]),
            )
            .await?;
            Ok(())
        })
        .await
    }

    /// Notifications on `offboard_ledger` (payload `<seq> <case>`) and
    /// `offboard_queue` (payload: the leaver's email), on a connection of
    /// their own that reconnects by itself. Runs until the receiver is
    /// dropped.
    pub fn listen(&self) -> tokio::sync::mpsc::UnboundedReceiver<(String, String)> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let target = self.target.clone();
        rt().spawn(async move {
            loop {
                if tx.is_closed() {
                    return;
                }
                let _ = listen_once(&target, &tx).await;
                // The database went away: tell the listener, then retry.
                let _ = tx.send(("offboard_reconnect".into(), String::new()));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        rx
    }
}

async fn listen_once(
    target: &Target,
    tx: &tokio::sync::mpsc::UnboundedSender<(String, String)>,
) -> Result<(), StoreError> {
    use futures::StreamExt;
    use tokio_postgres::AsyncMessage;
    let (client, mut stream): (Client, futures::stream::BoxStream<'static, _>) = match &target.tls {
        Some(tls) => {
            let (c, mut conn) = target
                .pg
                .connect(tls.clone())
                .await
                .map_err(|e| target.err(&e))?;
            (
                c,
                futures::stream::poll_fn(move |cx| conn.poll_message(cx)).boxed(),
            )
        }
        None => {
            let (c, mut conn) = target.pg.connect(NoTls).await.map_err(|e| target.err(&e))?;
            (
                c,
                futures::stream::poll_fn(move |cx| conn.poll_message(cx)).boxed(),
            )
        }
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let listen = async {
        client
            .batch_execute("LISTEN offboard_ledger; LISTEN offboard_queue")
            .await
            .map_err(|e| target.err(&e))?;
        let _ = ready_tx.send(());
        Ok::<(), StoreError>(())
    };
    let pump = async {
        while let Some(m) = stream.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx
                        .send((n.channel().to_string(), n.payload().to_string()))
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    };
    let watch = async {
        if ready_rx.await.is_ok() {
            let _ = tx.send(("offboard_listening".into(), String::new()));
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        r = async { listen.await?; std::future::pending::<Result<(), StoreError>>().await } => r,
        () = pump => Ok(()),
        () = watch => Ok(()),
    }
}

async fn schema_version(c: &mut Client, t: &Target) -> Result<i32, StoreError> {
    let exists = timed(
        t,
        c.query_one("SELECT to_regclass('offboard_schema') IS NOT NULL", &[]),
    )
    .await?;
    if !exists.get::<_, bool>(0) {
        return Ok(0);
    }
    let row = timed(
        t,
        c.query_one("SELECT COALESCE(MAX(version), 0) FROM offboard_schema", &[]),
    )
    .await?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> StoreConfig {
        StoreConfig {
            url: Some(url.into()),
            ..StoreConfig::default()
        }
    }

    #[test]
    fn tls_is_required_off_loopback_and_optional_on_it() {
        let dir = Path::new("/");
        let remote = Target::new(&cfg("postgres://app@db.example.com:5432/offboard"), dir).unwrap();
        assert!(remote.tls());
        assert_eq!(remote.label, "postgres://db.example.com:5432/offboard");
        // Asking for less does not turn it off.
        let remote = Target::new(
            &cfg("postgres://app@10.0.0.5/offboard?sslmode=disable"),
            dir,
        )
        .unwrap();
        assert!(remote.tls());
        for local in [
            "postgres://app@127.0.0.1:55432/offboard",
            "postgres://app@localhost/offboard",
            "postgres://app@[::1]:5432/offboard",
            "postgres://app@%2Frun%2Fpostgresql/offboard",
        ] {
            assert!(!Target::new(&cfg(local), dir).unwrap().tls(), "{local}");
        }
        let asked = Target::new(
            &cfg("postgres://app@127.0.0.1/offboard?sslmode=require"),
            dir,
        );
        assert!(asked.unwrap().tls());
    }

    #[test]
    fn credentials_come_from_the_environment_or_a_file_never_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let e = Target::new(
            &cfg("postgres://app:hunter2@127.0.0.1/offboard"),
            dir.path(),
        )
        .unwrap_err();
        assert!(e.0.contains("carries a password"), "{e}");
        assert!(!e.0.contains("hunter2"), "{e}");
        let mut c = cfg("postgres://app@127.0.0.1/offboard");
        c.password_env = Some("OFFBOARD_TEST_UNSET_PASSWORD_VAR".into());
        let e = Target::new(&c, dir.path()).unwrap_err();
        assert!(e.0.contains("OFFBOARD_TEST_UNSET_PASSWORD_VAR"), "{e}");
        std::fs::write(dir.path().join("pw"), "s3cret-value\n").unwrap();
        let mut c = cfg("postgres://app@127.0.0.1/offboard");
        c.password_file = Some("pw".into());
        let t = Target::new(&c, dir.path()).unwrap();
        assert_eq!(t.pg.get_password(), Some(&b"s3cret-value"[..]));
        assert!(!format!("{t:?}").contains("s3cret"));
        let e = Target::new(&cfg("postgres://127.0.0.1/offboard"), dir.path()).unwrap_err();
        assert!(e.0.contains("names no user"), "{e}");
        let e = Target::new(&cfg("mysql://x"), dir.path()).unwrap_err();
        assert!(e.0.contains("not a PostgreSQL URL"), "{e}");
    }

    #[tokio::test]
    async fn an_unreachable_database_is_a_clear_error() {
        // A closed loopback port.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let t = Target::new(
            &cfg(&format!("postgres://app@127.0.0.1:{port}/offboard")),
            Path::new("/"),
        )
        .unwrap();
        let store = PgStore::new(t);
        let s = store.clone();
        let e = spawn(async move { s.count().await }).await.unwrap_err();
        assert!(
            e.0.starts_with(&format!(
                "shared store postgres://127.0.0.1:{port}/offboard"
            )),
            "{e}"
        );
        assert!(e.0.contains("no further step"), "{e}");
    }
}
