//! What every vendor's driver tests share: a build context, the driver of
//! one connector of the demo config, lookups that must find someone, grants
//! by kind, waiting for a fresh read to confirm a removal, and the sandbox's
//! access log.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use offboard::connector::http::{HttpNotice, shared_reqwest};
use offboard::connector::{BuildContext, Connector, Lookup, Presence, ResolvedConnector};
use offboard::model::{Account, Grant, GrantKind, Person};
use offboard::sandbox::Running;
use tokio::sync::mpsc;

/// A build context on `dir`, without notices.
pub fn context(dir: &Path) -> BuildContext {
    BuildContext {
        http: shared_reqwest(),
        notices: None,
        data_dir: dir.to_path_buf(),
    }
}

/// A build context on `dir` whose client notices (retries, waits) arrive on
/// the receiver.
pub fn context_with_notices(dir: &Path) -> (BuildContext, mpsc::UnboundedReceiver<HttpNotice>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let ctx = BuildContext {
        notices: Some(tx),
        ..context(dir)
    };
    (ctx, rx)
}

/// Connector `id` of the demo config for `sb`, written into `dir` with
/// `extra` appended (settings, limits).
pub fn demo_connector(sb: &Running, dir: &Path, id: &str, extra: &str) -> ResolvedConnector {
    let path = super::write_config(dir, &sb.base_url);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(extra);
    std::fs::write(&path, text).unwrap();
    let loaded = offboard::config::load(&path).expect("config loads");
    loaded
        .connectors()
        .unwrap()
        .into_iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("demo config has {id}"))
}

/// Builds the driver of a resolved connector.
pub fn driver(resolved: &ResolvedConnector, ctx: &BuildContext) -> Arc<dyn Connector> {
    offboard::apps::build(resolved, ctx).expect("driver builds")
}

/// The one account `email` has in `c`; panics on anything else.
pub async fn found(c: &dyn Connector, email: &str) -> Account {
    match c
        .find_person(&Person::new(email))
        .await
        .expect("lookup works")
    {
        Lookup::Found { account } => account,
        other => panic!("expected {email} to be found, got {other:?}"),
    }
}

/// The grants of one kind.
pub fn of_kind(grants: &[Grant], kind: GrantKind) -> Vec<&Grant> {
    grants.iter().filter(|g| g.kind == kind).collect()
}

/// What a fresh read says of one grant (the read must succeed).
pub async fn presence(c: &dyn Connector, a: &Account, g: &Grant) -> Presence {
    let r = c.verify(a, std::slice::from_ref(g)).await;
    r[0].1.clone().expect("verification read succeeds")
}

/// Waits until a fresh read no longer lists any of `grants`.
pub async fn wait_absent(c: &dyn Connector, account: &Account, grants: &[Grant]) {
    super::wait_for(
        Duration::from_secs(10),
        "grants verified absent",
        || async {
            let r = c.verify(account, grants).await;
            r.iter()
                .all(|(_, p)| matches!(p, Ok(Presence::Absent)))
                .then_some(())
        },
    )
    .await;
}

/// A sandbox with `consistency_ms` of delay that logs every request into
/// `dir`, and a connector of its demo config (`id`, plus `extra` TOML) at a
/// quota that never paces the tests.
pub async fn logged_sandbox(
    dir: &Path,
    consistency_ms: u64,
    id: &str,
    extra: &str,
) -> (Running, AccessLog, ResolvedConnector) {
    let log = dir.join("access.jsonl");
    let sb = offboard::sandbox::start(offboard::sandbox::Options {
        port: 0,
        faults: offboard::sandbox::Faults {
            consistency_ms,
            ..offboard::sandbox::Faults::default()
        },
        access_log: Some(log.clone()),
        ..offboard::sandbox::Options::default()
    })
    .await
    .unwrap();
    let mut resolved = demo_connector(&sb, dir, id, extra);
    resolved.manifest.limits.requests_per_second = 500.0;
    resolved.manifest.limits.burst = 100;
    (sb, AccessLog(log), resolved)
}

/// The sandbox's access log (`Options::access_log`): one JSON line a request.
pub struct AccessLog(pub std::path::PathBuf);

impl AccessLog {
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.0).unwrap_or_default()
    }

    /// How many requests' lines contain every one of `parts`.
    pub fn count(&self, parts: &[&str]) -> usize {
        self.text()
            .lines()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    }
}
