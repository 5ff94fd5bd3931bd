//! Team mode tests: a fresh database per test on the cluster that
//! `scripts/pg-test-cluster run` started (`OFFBOARD_TEST_PG`), migrated by
//! the binary as the owner, and the application's role granted
//! `offboard_writer`.
//!
//! Without `OFFBOARD_TEST_PG` these tests fail, saying how to start the
//! cluster; `OFFBOARD_SKIP_PG=1` skips them explicitly instead.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use offboard::evidence::Record;

pub struct Db {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub owner: String,
    pub app: String,
}

/// The test cluster, or None when skipped explicitly.
pub fn cluster() -> Option<(String, u16, String, String)> {
    if std::env::var("OFFBOARD_SKIP_PG").is_ok_and(|v| v == "1") {
        eprintln!("OFFBOARD_SKIP_PG=1: team mode test skipped");
        return None;
    }
    let url = std::env::var("OFFBOARD_TEST_PG").unwrap_or_else(|_| {
        panic!(
            "OFFBOARD_TEST_PG is not set: team mode tests need PostgreSQL. Run the tests as \
             `scripts/pg-test-cluster run cargo test --locked` (it starts a throw-away cluster), \
             or set OFFBOARD_SKIP_PG=1 to skip them"
        )
    });
    assert!(
        std::env::var("OFFBOARD_TEST_PG_PASSWORD").is_ok(),
        "OFFBOARD_TEST_PG_PASSWORD is not set (see scripts/pg-test-cluster)"
    );
    let cfg: tokio_postgres::Config = url.parse().expect("OFFBOARD_TEST_PG is a postgres URL");
    let host = match &cfg.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("OFFBOARD_TEST_PG: a TCP host expected, not {other:?}"),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let owner = cfg
        .get_user()
        .expect("OFFBOARD_TEST_PG names a user")
        .to_string();
    let app = std::env::var("OFFBOARD_TEST_PG_APP").unwrap_or_else(|_| "offboard_app".into());
    Some((host, port, owner, app))
}

pub fn password() -> String {
    std::env::var("OFFBOARD_TEST_PG_PASSWORD").unwrap()
}

/// Connects as `user` to `db`.
pub async fn connect(db: &Db, user: &str, name: &str) -> tokio_postgres::Client {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&db.host)
        .port(db.port)
        .user(user)
        .password(password())
        .dbname(name);
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.expect("connects");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

impl Db {
    /// A new, empty database owned by the owner role (not migrated).
    pub async fn create() -> Option<Db> {
        let (host, port, owner, app) = cluster()?;
        let name = format!("t_{}", hex::encode(rand::random::<[u8; 6]>()));
        let db = Db {
            name,
            host,
            port,
            owner,
            app,
        };
        let c = connect(&db, &db.owner.clone(), "postgres").await;
        c.batch_execute(&format!("CREATE DATABASE {}", db.name))
            .await
            .expect("test database created");
        Some(db)
    }

    pub fn url(&self, user: &str) -> String {
        format!(
            "postgres://{user}@{}:{}/{}",
            self.host, self.port, self.name
        )
    }

    /// `[store]` for `user`, with a short lease.
    pub fn store_toml(&self, user: &str, lease_secs: u64) -> String {
        format!(
            "\n[store]\nurl = \"{}\"\npassword_env = \"OFFBOARD_TEST_PG_PASSWORD\"\nlease_secs = {lease_secs}\n",
            self.url(user)
        )
    }

    /// Grants the application's role `offboard_writer` (after migrating).
    pub async fn grant_app(&self) {
        let c = connect(self, &self.owner, &self.name).await;
        c.batch_execute(&format!("GRANT offboard_writer TO {}", self.app))
            .await
            .expect("grant");
    }

    pub async fn owner(&self) -> tokio_postgres::Client {
        connect(self, &self.owner, &self.name).await
    }

    pub async fn app(&self) -> tokio_postgres::Client {
        connect(self, &self.app, &self.name).await
    }
}

/// A config file: the demo's connectors for `base_url`, `operator`, and
/// `extra` (e.g. a `[store]` table).
pub fn config(dir: &Path, base_url: &str, operator: &str, extra: &str) -> PathBuf {
    let path = super::write_config(dir, base_url);
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace(
        "operator = \"demo-operator@example.com\"",
        &format!("operator = \"{operator}\""),
    );
    assert!(
        text.contains(operator),
        "the demo config names its operator"
    );
    std::fs::write(&path, format!("{text}{extra}")).unwrap();
    path
}

pub struct Host {
    pub config: PathBuf,
    pub data: PathBuf,
}

pub fn host(dir: &Path, name: &str, base_url: &str, store: &str) -> Host {
    let cfg_dir = dir.join(name).join("cfg");
    let config = config(&cfg_dir, base_url, name, store);
    Host {
        config,
        data: dir.join(name).join("data"),
    }
}

pub fn command(h: &Host, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"));
    c.args(args)
        .env("OFFBOARD_CONFIG", &h.config)
        .env("OFFBOARD_DATA", &h.data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

pub async fn run(h: &Host, args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(Duration::from_secs(180), command(h, args).output())
        .await
        .expect("the command finishes")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A migrated database (by the binary, as the owner) whose application
/// role is granted `offboard_writer`.
pub async fn database(dir: &Path, base_url: &str) -> Option<Db> {
    let db = Db::create().await?;
    let owner = host(dir, "owner", base_url, &db.store_toml(&db.owner, 30));
    let (code, out, err) = run(&owner, &["store", "migrate"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("applied 0001_team.sql"), "{out}");
    assert!(!out.contains(&password()), "{out}");
    db.grant_app().await;
    Some(db)
}

/// The ledger table's records, in order.
pub async fn records(db: &Db) -> Vec<Record> {
    let c = db.app().await;
    c.query("SELECT line FROM offboard_ledger ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(r.get::<_, &str>(0)).unwrap())
        .collect()
}
