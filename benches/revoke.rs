//! `cargo bench --bench revoke [-- --only NAME]`
//!
//! Runs the real engine, ledger and drivers over HTTP against the
//! in-process sandbox (50 ms added to every request, the default 1.5 s
//! consistency delay). Scenarios (`--only` takes one name; all by default):
//!
//! - `real`: one benchmark leaver in Google, Slack, Salesforce and
//!   Microsoft 365 at the
//!   shipped manifests' quotas, the sandbox enforcing the vendors' limits
//!   (Google 2,400 requests a minute per user and per project, Slack's
//!   documented per-method tiers); beside it the same work sent one request
//!   at a time across all apps, and one app after another (what a script
//!   does);
//! - `urgent`: the demo's urgent termination (marcus.reyes) at real quotas:
//!   time to each app's account closure and to all verified;
//! - `scaling`: `real` with 1x, 2x and 4x the grants;
//! - `mass`: `--leavers N` (500 by default) ordinary employees offboarded
//!   in one batch at real quotas (Google, Salesforce, Okta and the SCIM
//!   apps): time against the quota floor, the share of the binding quota
//!   used and the share of rate-limit answers;
//! - `raised`: the old scenario, about 1,600 grants with every quota raised
//!   to 1,000 requests a second (a tenant that asked for more), the sandbox
//!   enforcing none.
//!
//! Every run's outcome is checked against the sandbox's own state (what the
//! leaver still holds, read from the twins directly), not the engine's
//! summary. Each figure is printed beside its floor: the minimum requests
//! the work needs (one write per grant, a re-read where the write depends
//! on it, and one confirming read of each listing), sent as fast as each
//! bucket's rate and burst allow, phase after phase within each app, then
//! the consistency delay and the confirming read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use offboard::config;
use offboard::connector::ResolvedConnector;
use offboard::engine::{Engine, EngineOptions, Event, Selection, connectors_from_config};
use offboard::evidence::{Ledger, verify_chain};
use offboard::model::{Grant, GrantKind, GrantState, Phase};
use offboard::sandbox::{self, Faults, Options, SandboxState, tenant::BenchShape};

const LATENCY_MS: u64 = 50;
const APPS: &[&str] = &[
    "google",
    "slack",
    "salesforce",
    "okta",
    "zoom",
    "miro",
    "microsoft-graph",
    "github",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quotas {
    /// The shipped manifests' limits; the sandbox enforces the vendors'.
    Real,
    /// Every connector at 1,000 requests a second; the sandbox enforces none.
    Raised,
}

/// How the work is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One engine, every app at once (the product).
    Together,
    /// One app after another, each at its own limits (a script).
    AppAfterApp,
    /// One app after another, one request at a time.
    OneAtATime,
}

/// The benchmark leaver at real quotas: sized so that the 4x run stays
/// within a minute at Slack's Tier 2 (20 a minute per method).
fn real_shape(k: usize) -> BenchShape {
    BenchShape {
        groups: 120 * k,
        tokens: 50 * k,
        app_passwords: 20 * k,
        slack_sessions: 4 * k,
        slack_groups: 4 * k,
        sf_sessions: 10 * k,
        sf_tokens: 10 * k,
        sf_permsets: 10 * k,
        sf_groups: 10 * k,
        gh_teams: 5 * k,
        gh_credentials: 10 * k,
        ..BenchShape::default()
    }
}

/// When things happened, from the engine's events.
#[derive(Default)]
struct Timeline {
    /// grant key → (when its removal was answered, when it was confirmed).
    answered: HashMap<String, Instant>,
    done: HashMap<String, Instant>,
}

/// One app's timings, in seconds since its revoke started.
#[derive(Debug, Default, Clone)]
struct AppTimes {
    verified: f64,
    /// The last account-closure answer.
    closed: Option<f64>,
    /// The last answer of its earlier phases.
    earlier: Option<f64>,
}

struct Run {
    grants: Vec<Grant>,
    discovery: f64,
    revoke: f64,
    discovery_log: Vec<Logged>,
    revoke_log: Vec<Logged>,
    apps: BTreeMap<String, AppTimes>,
    residual: Vec<String>,
    resolved: Vec<ResolvedConnector>,
    summary: offboard::engine::Summary,
}

/// One request from the sandbox's access log.
#[derive(Debug, Clone, serde::Deserialize)]
struct Logged {
    method: String,
    path: String,
    #[serde(default)]
    status: u16,
}

impl Logged {
    fn connector(&self) -> &'static str {
        let p = self.path.as_str();
        if offboard::apps::dialect(p).is_some_and(|d| d.name == "github") {
            "github"
        } else if p.starts_with("/api/v1/") || p.starts_with("/oauth2/v1/") {
            "okta"
        } else if p.starts_with("/scim2/zoom/") {
            "zoom"
        } else if p.starts_with("/scim2/miro/") {
            "miro"
        } else if p.starts_with("/admin/") || p.starts_with("/apps/licensing/") || p == "/token" {
            "google"
        } else if p.starts_with("/api/") || p.starts_with("/scim/") {
            "slack"
        } else if p.starts_with("/services/") {
            "salesforce"
        } else if p.starts_with("/v1.0/") || p.ends_with("/oauth2/v2.0/token") {
            "microsoft-graph"
        } else {
            "other"
        }
    }

    fn is_token_fetch(&self) -> bool {
        self.path == "/token"
            || self.path == "/services/oauth2/token"
            || self.path.ends_with("/oauth2/v2.0/token")
            || (self.path.starts_with("/app/installations/")
                && self.path.ends_with("/access_tokens"))
            || self.path == "/oauth2/v1/token"
    }

    /// A read only the lookup makes (GitHub's SCIM and SAML identities, the
    /// org's team list): confirming a removal never repeats it.
    fn is_lookup_only(&self) -> bool {
        self.connector() == "github"
            && (self.path.ends_with("/consumed-licenses")
                || self.path.ends_with("/Users")
                || self.path.ends_with("/teams"))
    }
}

fn read_log(path: &Path, from: usize) -> Vec<Logged> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .skip(from)
        .map(|l| serde_json::from_str(l).expect("access log lines are JSON"))
        .collect()
}

/// Takes out the demo config's raised Slack tiers (its comment, the
/// table, through its last tier, `scim_write`), so that the shipped
/// manifest's apply.
fn shipped_slack_tiers(text: &mut String) {
    let start = text
        .find("# Slack's real tier limits")
        .expect("the demo config raises Slack's tiers");
    let last = start
        + text[start..]
            .find("\nscim_write = ")
            .expect("the raised tiers end with scim_write");
    let end = text[last + 1..]
        .find('\n')
        .map_or(text.len(), |e| last + 1 + e + 1);
    text.replace_range(start..end, "");
}

fn raised_limits(id: &str) -> String {
    format!(
        "\n[connectors.{id}.limits]\nmax_concurrency = 64\nrequests_per_second = 1000.0\nburst = 100\ntimeout_secs = 30.0\nmax_retries = 4\n"
    )
}

async fn run(
    quotas: Quotas,
    mode: Mode,
    shape: Option<&BenchShape>,
    email: &str,
) -> anyhow::Result<Run> {
    let tmp = tempfile::tempdir()?;
    let dir: PathBuf = tmp.path().to_path_buf();
    let log_path = dir.join("access.jsonl");
    let mut faults = Faults {
        latency_ms: LATENCY_MS,
        ..Faults::default()
    };
    if quotas == Quotas::Real {
        faults.google_user_quota_per_min = Some(sandbox::GOOGLE_USER_QUOTA_PER_MIN);
        faults.google_project_quota_per_min = Some(sandbox::GOOGLE_PROJECT_QUOTA_PER_MIN);
        // Every tier at Slack's documented rate.
        faults.slack_tiers = Some(BTreeMap::new());
    }
    let sb = sandbox::start(Options {
        faults,
        access_log: Some(log_path.clone()),
        bench_grants: shape.cloned(),
        ..Options::default()
    })
    .await?;
    sandbox::write_demo_keys(&dir)?;
    let mut text = sandbox::demo_config(&sb.base_url, &dir);
    match quotas {
        // The demo config raises Slack's tiers; the shipped ones apply.
        Quotas::Real => shipped_slack_tiers(&mut text),
        Quotas::Raised => {
            for id in APPS {
                text.push_str(&raised_limits(id));
            }
        }
    }
    let cfg_path = dir.join("config.toml");
    std::fs::write(&cfg_path, text)?;
    let loaded = config::load(&cfg_path)?;
    let mut resolved = loaded.connectors()?;
    if mode == Mode::OneAtATime {
        for r in &mut resolved {
            r.manifest.limits.max_concurrency = 1;
        }
    }
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let opts = EngineOptions::from_config(&loaded);

    let groups: Vec<Vec<ResolvedConnector>> = match mode {
        Mode::Together => vec![resolved.clone()],
        _ => resolved.iter().map(|r| vec![r.clone()]).collect(),
    };
    let mut grants = Vec::new();
    let mut discovery = 0.0;
    let mut revoke = 0.0;
    let mut discovery_log = Vec::new();
    let mut revoke_log = Vec::new();
    let mut apps = BTreeMap::new();
    let mut summary = None;
    let mut manual: BTreeSet<(String, GrantKind)> = BTreeSet::new();
    for group in groups {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let connectors = connectors_from_config(&group, &data, &tx)?;
        let ledger = Ledger::open_in(&data, &opts.operator)?;
        let engine = Engine::new(connectors, ledger, EngineOptions::from_config(&loaded), tx);
        let timeline = Arc::new(Mutex::new(Timeline::default()));
        let drain = {
            let timeline = timeline.clone();
            tokio::spawn(async move {
                while let Some(e) = rx.recv().await {
                    let now = Instant::now();
                    let mut t = timeline.lock().unwrap();
                    match e {
                        Event::ApiAnswer { key, .. } => {
                            t.answered.insert(key, now);
                        }
                        Event::State {
                            key,
                            state: GrantState::Verified { .. } | GrantState::Acknowledged { .. },
                            ..
                        } => {
                            t.done.insert(key, now);
                        }
                        _ => {}
                    }
                }
            })
        };
        let before = read_log(&log_path, 0).len();
        let t0 = Instant::now();
        let case = engine.discover(email).await?;
        discovery += t0.elapsed().as_secs_f64();
        let mid = read_log(&log_path, 0).len();
        discovery_log.extend(read_log(&log_path, before).into_iter().take(mid - before));
        let t1 = Instant::now();
        let s = engine.revoke(email, &Selection::default()).await?;
        revoke += t1.elapsed().as_secs_f64();
        revoke_log.extend(read_log(&log_path, mid));
        let chain = verify_chain(&engine.ledger_path())?;
        anyhow::ensure!(chain.ok(), "ledger chain broken: {:?}", chain.problems);
        drop(engine);
        // The engine's senders are gone: the drain ends with every event.
        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
        let t = timeline.lock().unwrap();
        for r in &group {
            let of_app: Vec<&Grant> = case
                .grants
                .iter()
                .map(|g| &g.grant)
                .filter(|g| g.connector == r.id)
                .collect();
            let since = |i: &Instant| i.saturating_duration_since(t1).as_secs_f64();
            let mut times = AppTimes::default();
            for g in &of_app {
                let key = g.key();
                if let Some(d) = t.done.get(&key) {
                    times.verified = times.verified.max(since(d));
                }
                if let Some(a) = t.answered.get(&key) {
                    let slot = if g.phase() == Phase::CloseAccount {
                        &mut times.closed
                    } else {
                        &mut times.earlier
                    };
                    *slot = Some(slot.unwrap_or(0.0).max(since(a)));
                }
                if g.is_manual() {
                    manual.insert((g.connector.clone(), g.kind));
                }
            }
            apps.insert(r.id.clone(), times);
        }
        grants.extend(case.grants.iter().map(|g| g.grant.clone()));
        summary = Some(match summary.take() {
            None => s,
            Some(mut acc) => {
                add_summary(&mut acc, &s);
                acc
            }
        });
    }
    let residual = residual(&sb.state, email, &manual);
    sb.stop().await;
    // OFFBOARD_BENCH_DIR keeps each run's access log (for a timeline).
    if let Some(keep) = std::env::var_os("OFFBOARD_BENCH_DIR").map(PathBuf::from) {
        std::fs::create_dir_all(&keep)?;
        let n = std::fs::read_dir(&keep)?.count();
        std::fs::copy(
            &log_path,
            keep.join(format!("{n:02}-{quotas:?}-{mode:?}.jsonl")),
        )?;
    }
    Ok(Run {
        grants,
        discovery,
        revoke,
        discovery_log,
        revoke_log,
        apps,
        residual,
        resolved,
        summary: summary.expect("at least one app"),
    })
}

fn add_summary(acc: &mut offboard::engine::Summary, s: &offboard::engine::Summary) {
    acc.live += s.live;
    acc.removing += s.removing;
    acc.verified += s.verified;
    acc.acknowledged += s.acknowledged;
    acc.unconfirmed += s.unconfirmed;
    acc.failed += s.failed;
    acc.manual += s.manual;
}

/// What the leaver still holds, read from each twin's own state (removed
/// items count as gone whatever the consistency delay still lists), except
/// kinds the engine reported as manual steps (no API removes them).
fn residual(s: &SandboxState, email: &str, manual: &BTreeSet<(String, GrantKind)>) -> Vec<String> {
    let mut out: Vec<(String, GrantKind, String)> = Vec::new();
    {
        let g = s.google.lock().unwrap();
        if let Some(u) = g.user_index(email) {
            let mut add = |kind, what: String| out.push(("google".into(), kind, what));
            if !g.users[u].suspended {
                add(GrantKind::Account, "account not suspended".into());
            }
            if g.users[u].sign_outs == 0 {
                add(GrantKind::Session, "never signed out".into());
            }
            if !g.users[u].backup_codes.is_empty() {
                add(GrantKind::BackupCodes, "backup codes valid".into());
            }
            for m in g
                .memberships
                .iter()
                .filter(|m| m.user == u && m.removed_at.is_none())
            {
                add(
                    GrantKind::Group,
                    format!("group {}", g.groups[m.group].email),
                );
            }
            for t in g
                .tokens
                .iter()
                .filter(|t| t.user == u && t.removed_at.is_none())
            {
                add(GrantKind::OauthGrant, format!("token {}", t.client_id));
            }
            for a in g
                .asps
                .iter()
                .filter(|a| a.user == u && a.removed_at.is_none())
            {
                add(
                    GrantKind::AppPassword,
                    format!("app password {}", a.code_id),
                );
            }
            for a in g.assignments.iter().filter(|a| {
                a.assignee == offboard::apps::google::twin::Assignee::User(u)
                    && a.removed_at.is_none()
            }) {
                add(GrantKind::AdminRole, format!("role assignment {}", a.id));
            }
            for l in g
                .licenses
                .iter()
                .filter(|l| l.user == u && l.removed_at.is_none())
            {
                add(GrantKind::License, format!("licence {}", l.sku_id));
            }
            for d in g
                .devices
                .iter()
                .filter(|d| d.user == u && d.action.is_none())
            {
                add(GrantKind::Device, format!("device {}", d.device_id));
            }
        }
    }
    {
        let sl = s.slack.lock().unwrap();
        if let Some(u) = sl.user_by_email(email) {
            let id = u.id.clone();
            let mut add = |kind, what: String| out.push(("slack".into(), kind, what));
            if !u.deleted {
                add(GrantKind::Account, "account active".into());
            }
            for x in sl
                .sessions
                .iter()
                .filter(|x| x.user_id == id && x.removed_at.is_none())
            {
                add(GrantKind::Session, format!("session {}", x.session_id));
            }
            for gr in sl
                .groups
                .iter()
                .filter(|gr| gr.disabled_at.is_none() && gr.users.contains(&id))
            {
                add(GrantKind::Group, format!("user group {}", gr.handle));
            }
            for r in sl
                .roles
                .iter()
                .filter(|r| r.user_id == id && r.removed_at.is_none())
            {
                add(GrantKind::AdminRole, format!("role {}", r.role_id));
            }
        }
    }
    {
        let gh = s.github.lock().unwrap();
        let login = offboard::apps::github::twin::login_of(email);
        let mut add = |kind, what: String| out.push(("github".into(), kind, what));
        if gh.member_idx(&login).is_some() {
            add(GrantKind::Account, "org member".into());
        }
        for t in &gh.teams {
            if t.members
                .iter()
                .any(|m| m.login == login && m.removed_at.is_none())
            {
                add(GrantKind::Group, format!("team {}", t.slug));
            }
        }
        for c in gh
            .credentials
            .iter()
            .filter(|c| c.login == login && c.removed_at.is_none())
        {
            add(GrantKind::ApiKey, format!("credential {}", c.id));
        }
        for p in gh
            .pats
            .iter()
            .filter(|p| p.login == login && p.removed_at.is_none())
        {
            add(GrantKind::ApiKey, format!("fine-grained PAT {}", p.id));
        }
        if gh.seats.iter().any(|x| x.login == login && !x.cancelled) {
            add(GrantKind::License, "Copilot seat".into());
        }
    }
    {
        let sf = s.salesforce.lock().unwrap();
        let str_of = |r: &BTreeMap<String, serde_json::Value>, f: &str| {
            r.get(f).and_then(|v| v.as_str()).unwrap_or("").to_string()
        };
        let user = sf
            .live_rows("User")
            .into_iter()
            .find(|r| str_of(r, "Email").eq_ignore_ascii_case(email));
        if let Some(user) = user {
            let id = str_of(&user, "Id");
            let mut add = |kind, what: String| out.push(("salesforce".into(), kind, what));
            if user.get("IsActive") != Some(&serde_json::Value::Bool(false)) {
                add(GrantKind::Account, "user active".into());
            }
            let held = |object: &str, field: &str| {
                sf.live_rows(object)
                    .into_iter()
                    .filter(|r| str_of(r, field) == id)
                    .collect::<Vec<_>>()
            };
            for r in held("AuthSession", "UsersId") {
                add(GrantKind::Session, format!("session {}", str_of(&r, "Id")));
            }
            for r in held("OauthToken", "UserId") {
                add(
                    GrantKind::OauthGrant,
                    format!("token of {}", str_of(&r, "AppName")),
                );
            }
            for r in held("PermissionSetAssignment", "AssigneeId") {
                if r.get("PermissionSet.IsOwnedByProfile") != Some(&serde_json::Value::Bool(true)) {
                    add(
                        GrantKind::AdminRole,
                        format!("permission set {}", str_of(&r, "Id")),
                    );
                }
            }
            for r in held("GroupMember", "UserOrGroupId") {
                add(
                    GrantKind::Group,
                    format!("group member {}", str_of(&r, "Id")),
                );
            }
        }
    }
    for (kind, what) in s.graph.lock().unwrap().residual(email) {
        out.push(("microsoft-graph".into(), kind, what));
    }
    for (kind, what) in s.okta.lock().unwrap().held_by(email) {
        out.push(("okta".into(), kind, what));
    }
    for (app, t) in &s.scim2.lock().unwrap().apps {
        let mine = |u: &&offboard::apps::scim2::twin::Resource| {
            u.attrs
                .get("userName")
                .and_then(|v| v.as_str())
                .is_some_and(|n| n.eq_ignore_ascii_case(email))
        };
        for u in t.users.iter().filter(mine) {
            if u.attrs.get("active") != Some(&serde_json::Value::Bool(false)) {
                out.push((app.clone(), GrantKind::Account, "user active".into()));
            }
            for g in t.groups.iter().filter(|g| t.is_member(&g.id, &u.id)) {
                out.push((app.clone(), GrantKind::Group, format!("group {}", g.id)));
            }
        }
    }
    out.into_iter()
        .filter(|(app, kind, _)| !manual.contains(&(app.clone(), *kind)))
        .map(|(app, _, what)| format!("{app}: {what}"))
        .collect()
}

/// A bucket's pace: tokens a second and at once.
#[derive(Debug, Clone, Copy)]
struct Pace {
    per_s: f64,
    burst: f64,
}

/// Each bucket's pace, from the connector's resolved manifest (what the
/// client is configured to, which at real quotas is each vendor's
/// documented rate: Google 40 a second, Slack's tiers).
fn paces(r: &ResolvedConnector) -> HashMap<String, Pace> {
    let l = &r.manifest.limits;
    let mut out = HashMap::new();
    out.insert(
        "*".to_string(),
        Pace {
            per_s: l.requests_per_second,
            burst: f64::from(l.burst.max(1)),
        },
    );
    if r.id == "slack" {
        let tiers = r.manifest.settings.get("tiers").and_then(|t| t.as_table());
        let tier = |name: &str| -> Pace {
            let t = tiers.and_then(|t| t.get(name)).and_then(|t| t.as_table());
            let num = |k: &str| {
                t.and_then(|t| t.get(k))
                    .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
            };
            let per_minute = num("per_minute").unwrap_or(20.0);
            Pace {
                per_s: per_minute / 60.0,
                burst: num("burst").unwrap_or(1.0).max(1.0),
            }
        };
        let methods = r
            .manifest
            .settings
            .get("method_tiers")
            .and_then(|t| t.as_table());
        for name in [
            "scim_read",
            "scim_write",
            "tier1",
            "tier2",
            "tier3",
            "tier4",
            "special",
        ] {
            out.insert(name.to_string(), tier(name));
        }
        if let Some(m) = methods {
            for (method, t) in m {
                let t = t.as_str().unwrap_or("tier2");
                out.insert(format!("method:{method}"), tier(t));
            }
        }
    }
    out
}

/// The bucket a logged request drew from.
fn bucket_of(l: &Logged, paces: &HashMap<String, Pace>) -> String {
    if let Some(m) = l.path.strip_prefix("/api/") {
        let b = format!("method:{m}");
        if paces.contains_key(&b) {
            b
        } else {
            "tier2".into()
        }
    } else if l.path.starts_with("/scim/") {
        if l.method == "GET" {
            "scim_read"
        } else {
            "scim_write"
        }
        .into()
    } else {
        "*".into()
    }
}

/// The requests a grant's removal needs at least, with its dependent round
/// trips: one write; a Slack user group's re-read then write; a Salesforce
/// token's re-read of its DeleteToken then the revocation; a SCIM
/// resource's read for its version, then the write.
fn needs(g: &Grant) -> (Vec<&'static str>, u32) {
    let prefix = g.id.split(':').next().unwrap_or("");
    match (g.connector.as_str(), prefix) {
        ("slack", "session") => (vec!["method:admin.users.session.invalidate"], 1),
        ("slack", "usergroup") => (
            vec![
                "method:usergroups.users.list",
                "method:usergroups.users.update",
            ],
            2,
        ),
        ("slack", "role") => (vec!["method:admin.roles.removeAssignments"], 1),
        ("slack", "workspace-role") => (vec!["method:admin.users.setRegular"], 1),
        ("slack", "account") => (vec!["scim_write"], 1),
        ("salesforce", "oauth") => (vec!["*", "*"], 2),
        // PIM: the schedule is re-read, then the adminRemove request.
        ("microsoft-graph", "eligible") => (vec!["*", "*"], 2),
        // The SCIM twins have ETags: each write carries `If-Match` with the
        // resource's current version, read first.
        ("zoom" | "miro", _) => (vec!["*", "*"], 2),
        _ => (vec!["*"], 1),
    }
}

/// Pages of the longest listing each app read in discovery: the confirming
/// read's round trips.
fn verify_rtt(app: &str, log: &[Logged]) -> u32 {
    let count = |f: &dyn Fn(&Logged) -> bool| log.iter().filter(|l| f(l)).count() as u32;
    match app {
        "google" => count(&|l| l.path == "/admin/directory/v1/groups")
            .max(count(&|l| {
                l.path.ends_with("/roleassignments") && l.method == "GET"
            }))
            .max(count(&|l| l.path.ends_with("/devices/mobile")))
            .max(1),
        "slack" => count(&|l| l.path == "/api/admin.users.session.list")
            .max(count(&|l| l.path == "/api/admin.roles.listAssignments"))
            .max(1),
        // User, then UserLogin; or a query and its continuation pages.
        "salesforce" => 2.max(
            1 + count(&|l| l.path.starts_with("/services/data/") && l.path.contains("/query/")),
        ),
        // The $batch, then the pages of its longest list.
        "microsoft-graph" => 1 + count(&|l| l.method == "GET" && l.path.ends_with("/memberOf")),
        _ => 1,
    }
}

/// The fewest reads that confirm GitHub's removals: one per team or
/// repository (each its own membership), one per other listing
/// (organisation roles: their list and one role's users).
fn github_confirm_reads(grants: &[&Grant]) -> usize {
    let mut listings = BTreeSet::new();
    let mut each = 0;
    for g in grants {
        match g.id.split(':').next().unwrap_or("") {
            "team" | "repo" => each += 1,
            "membership" | "admin" | "outside" => {
                listings.insert("membership");
            }
            "orgrole" => {
                listings.insert("roles");
                listings.insert("role users");
            }
            p => {
                listings.insert(p);
            }
        }
    }
    each + listings.len()
}

/// Token buckets, simulated: the earliest moment `n` requests can all have
/// been sent from `t`.
struct Buckets<'a> {
    paces: &'a HashMap<String, Pace>,
    state: HashMap<String, (f64, f64)>,
}

impl Buckets<'_> {
    fn take(&mut self, bucket: &str, n: usize, t: f64) -> f64 {
        let p = self
            .paces
            .get(bucket)
            .or_else(|| self.paces.get("*"))
            .copied()
            .expect("pace");
        let (tokens, last) = self
            .state
            .entry(bucket.to_string())
            .or_insert((p.burst, 0.0));
        let now = t.max(*last);
        *tokens = (*tokens + (now - *last) * p.per_s).min(p.burst);
        let n = n as f64;
        let done = if n <= *tokens {
            *tokens -= n;
            now
        } else {
            let d = now + (n - *tokens) / p.per_s;
            *tokens = 0.0;
            d
        };
        *last = done;
        done
    }
}

/// One app's floor: (last account closure answered, all confirmed), in
/// seconds from the start of revoke. Each bucket starts with at most what
/// discovery (`discovery_secs` long) can have left in it.
fn floor(
    app: &str,
    grants: &[Grant],
    discovery_log: &[Logged],
    r: &ResolvedConnector,
    consistency: f64,
    discovery_secs: f64,
) -> (Option<f64>, f64) {
    let l = LATENCY_MS as f64 / 1000.0;
    let paces = paces(r);
    let conc = r.manifest.limits.max_concurrency.max(1) as f64;
    let mut b = Buckets {
        paces: &paces,
        state: HashMap::new(),
    };
    let mut drawn: BTreeMap<String, usize> = BTreeMap::new();
    for x in discovery_log
        .iter()
        .filter(|x| x.connector() == app && !x.is_token_fetch())
    {
        *drawn.entry(bucket_of(x, &paces)).or_insert(0) += 1;
    }
    for (bucket, n) in drawn {
        let p = paces
            .get(&bucket)
            .or_else(|| paces.get("*"))
            .copied()
            .expect("pace");
        let left = (p.burst - n as f64 + p.per_s * discovery_secs).clamp(0.0, p.burst);
        b.state.insert(bucket, (left, 0.0));
    }
    let mut t = 0.0;
    let mut closed = None;
    let mine: Vec<&Grant> = grants
        .iter()
        .filter(|g| g.connector == app && !g.is_manual())
        .collect();
    for phase in Phase::ALL {
        let of_phase: Vec<&&Grant> = mine.iter().filter(|g| g.phase() == phase).collect();
        if of_phase.is_empty() {
            continue;
        }
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        let mut rtt = 1;
        let mut total = 0;
        for g in &of_phase {
            let (bs, r) = needs(g);
            rtt = rtt.max(r);
            total += bs.len();
            for x in bs {
                *counts.entry(x).or_insert(0) += 1;
            }
        }
        let sent = counts
            .iter()
            .map(|(k, n)| b.take(k, *n, t))
            .fold(t, f64::max);
        // At least: the last token's request answered; the requests through
        // the connector's slots, `conc` at a time; the longest chain of
        // dependent requests (`rtt`), which overlaps the other requests.
        let waves = (total as f64 / conc).ceil().max(f64::from(rtt));
        t = (sent + l).max(t + waves * l);
        if phase == Phase::CloseAccount {
            closed = Some(t);
        }
    }
    // The last removal is listed for the consistency delay (the SCIM
    // twins have none) from when the sandbox handled it, at the end of its
    // round trip; then one confirming read of each listing discovery read,
    // handled (at the end of its own round trip) once the delay is over:
    // it may be sent one round trip before.
    let settled = if matches!(app, "zoom" | "miro") {
        t
    } else {
        t + consistency
    };
    t = (settled - l).max(t);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for x in discovery_log
        .iter()
        .filter(|x| x.connector() == app && !x.is_token_fetch() && !x.is_lookup_only())
    {
        *counts.entry(bucket_of(x, &paces)).or_insert(0) += 1;
    }
    if app == "github" {
        // GitHub's confirming reads: each team's or repository's membership
        // of the user, and one read of every other listing a removal is in.
        counts.clear();
        counts.insert("*".into(), github_confirm_reads(&mine));
    }
    if matches!(app, "zoom" | "miro") {
        // SCIM's: the user, and each group a removal was from (the
        // lookup's filtered listings are not read again).
        counts.clear();
        let groups = mine.iter().filter(|g| g.id.starts_with("group:")).count();
        counts.insert("*".into(), 1 + groups);
    }
    let sent = counts
        .iter()
        .map(|(k, n)| b.take(k, *n, t))
        .fold(t, f64::max);
    let pages = f64::from(verify_rtt(app, discovery_log));
    (closed, (sent + pages * l).max(settled + (pages - 1.0) * l))
}

/// One app's share of a mass offboarding.
#[derive(Debug, Default)]
struct MassApp {
    leavers: usize,
    grants: usize,
    requests: usize,
    rate_limited: usize,
    /// Requests / the connector's rate (after its burst): the quota floor.
    floor: f64,
}

/// Mass offboarding: `n` crowd leavers (an ordinary employee's footprint
/// each) run as `offboard revoke --from` runs them: one engine, one bulk
/// lookup per app, then `[batch] concurrency` leavers at a time through
/// discovery and revocation, every leaver sharing each connector's queue.
/// Slack is left out (see the README: at its Tier 2, 20 calls a minute per
/// method, its floor alone is n / 20 minutes).
async fn mass(n: usize) -> anyhow::Result<(f64, BTreeMap<String, MassApp>, Vec<String>)> {
    let tmp = tempfile::tempdir()?;
    let dir: PathBuf = tmp.path().to_path_buf();
    let log_path = dir.join("access.jsonl");
    let faults = Faults {
        latency_ms: LATENCY_MS,
        google_user_quota_per_min: Some(sandbox::GOOGLE_USER_QUOTA_PER_MIN),
        google_project_quota_per_min: Some(sandbox::GOOGLE_PROJECT_QUOTA_PER_MIN),
        slack_tiers: Some(BTreeMap::new()),
        ..Faults::default()
    };
    let shape = BenchShape {
        groups: 0,
        tokens: 0,
        app_passwords: 0,
        slack_sessions: 0,
        slack_groups: 0,
        sf_sessions: 0,
        sf_tokens: 0,
        sf_permsets: 0,
        sf_groups: 0,
        crowd: n,
        ..BenchShape::default()
    };
    let sb = sandbox::start(Options {
        faults,
        access_log: Some(log_path.clone()),
        bench_grants: Some(shape),
        ..Options::default()
    })
    .await?;
    sandbox::write_demo_keys(&dir)?;
    let mut text = sandbox::demo_config(&sb.base_url, &dir);
    shipped_slack_tiers(&mut text);
    let cfg_path = dir.join("config.toml");
    std::fs::write(&cfg_path, text)?;
    let loaded = config::load(&cfg_path)?;
    let mut resolved = loaded.connectors()?;
    resolved.retain(|r| r.id != "slack");
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let opts = EngineOptions::from_config(&loaded);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let connectors = connectors_from_config(&resolved, &data, &tx)?;
    let ledger = Ledger::open_in(&data, &opts.operator)?;
    let engine = Engine::new(connectors, ledger, opts, tx);
    let leavers: Vec<String> = (0..n).map(offboard::sandbox::tenant::crowd_email).collect();
    let conc = loaded.config.batch.concurrency.max(1);

    use futures::StreamExt;
    let t0 = Instant::now();
    engine.look_up_many(&leavers, &[]);
    let found: Vec<_> = futures::stream::iter(leavers.iter().cloned())
        .map(|e| {
            let engine = engine.clone();
            async move { engine.discover(&e).await }
        })
        .buffer_unordered(conc)
        .collect()
        .await;
    let mut apps: BTreeMap<String, MassApp> = BTreeMap::new();
    let mut manual: BTreeSet<(String, GrantKind)> = BTreeSet::new();
    for v in found {
        let v = v?;
        for a in v.accounts.iter().filter(|a| a.status.account().is_some()) {
            apps.entry(a.connector.clone()).or_default().leavers += 1;
        }
        for g in &v.grants {
            apps.entry(g.grant.connector.clone()).or_default().grants += 1;
            if g.grant.is_manual() {
                manual.insert((g.grant.connector.clone(), g.grant.kind));
            }
        }
    }
    let summaries: Vec<_> = futures::stream::iter(leavers.iter().cloned())
        .map(|e| {
            let engine = engine.clone();
            async move { engine.revoke(&e, &Selection::default()).await }
        })
        .buffer_unordered(conc)
        .collect()
        .await;
    let total = t0.elapsed().as_secs_f64();
    let mut problems = Vec::new();
    for (e, s) in leavers.iter().zip(summaries) {
        let s = s?;
        if s.unconfirmed + s.failed + s.live + s.removing > 0 {
            problems.push(format!("{e}: not every grant confirmed: {s:?}"));
        }
    }
    let chain = verify_chain(&engine.ledger_path())?;
    anyhow::ensure!(chain.ok(), "ledger chain broken: {:?}", chain.problems);
    for e in &leavers {
        for r in residual(&sb.state, e, &manual) {
            problems.push(format!("{e}: still holds {r}"));
        }
    }
    drop(engine);
    sb.stop().await;
    for l in read_log(&log_path, 0)
        .iter()
        .filter(|l| !l.is_token_fetch())
    {
        let a = apps.entry(l.connector().to_string()).or_default();
        a.requests += 1;
        a.rate_limited += usize::from(l.status == 429);
    }
    for r in &resolved {
        if let Some(a) = apps.get_mut(&r.id) {
            let l = &r.manifest.limits;
            a.floor = (a.requests as f64 - f64::from(l.burst)).max(0.0) / l.requests_per_second;
        }
    }
    apps.retain(|_, a| a.requests > 0);
    Ok((total, apps, problems))
}

fn check(r: &Run, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        r.residual.is_empty(),
        "{what}: the sandbox still grants {} item(s), e.g. {:?}",
        r.residual.len(),
        &r.residual[..r.residual.len().min(5)]
    );
    let s = &r.summary;
    anyhow::ensure!(
        s.unconfirmed + s.failed + s.live + s.removing == 0,
        "{what}: not every grant was confirmed: {s:?}"
    );
    Ok(())
}

fn per_app_counts(grants: &[Grant]) -> String {
    let mut m: BTreeMap<&str, usize> = BTreeMap::new();
    for g in grants {
        *m.entry(g.connector.as_str()).or_insert(0) += 1;
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn requests(log: &[Logged]) -> String {
    let mut m: BTreeMap<&str, usize> = BTreeMap::new();
    for l in log {
        *m.entry(l.connector()).or_insert(0) += 1;
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn yn(b: bool) -> &'static str {
    if b { "met" } else { "NOT MET" }
}

/// Prints each app's revoke-to-verified beside its floor; returns the
/// whole run's ratio to its floor and whether every app met `target`.
fn per_app_table(r: &Run, consistency: f64, target: Option<f64>) -> (f64, bool) {
    println!(
        "  {:<15} {:>7} {:>9} {:>9} {:>7}  {}",
        "app",
        "grants",
        "measured",
        "floor",
        "ratio",
        target.map_or("no target".into(), |t| format!("target <= {t}x"))
    );
    let mut all = true;
    let mut whole_floor: f64 = 0.0;
    for res in &r.resolved {
        let app = res.id.as_str();
        let Some(t) = r.apps.get(app) else { continue };
        let n = r.grants.iter().filter(|g| g.connector == app).count();
        let (_, f) = floor(
            app,
            &r.grants,
            &r.discovery_log,
            res,
            consistency,
            r.discovery,
        );
        whole_floor = whole_floor.max(f);
        let ratio = t.verified / f;
        let met = target.is_none_or(|t| ratio <= t);
        all &= met;
        println!(
            "  {:<15} {:>7} {:>7.2} s {:>7.2} s {:>6.2}x  {}",
            app,
            n,
            t.verified,
            f,
            ratio,
            if target.is_some() { yn(met) } else { "" }
        );
    }
    (r.revoke / whole_floor, all)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let wants = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let baselines = !args.iter().any(|a| a == "--no-baselines");
    let leavers: usize = args
        .iter()
        .position(|a| a == "--leavers")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(500);
    let rt = tokio::runtime::Runtime::new()?;
    let consistency = Faults::default().consistency_ms as f64 / 1000.0;
    let mut all_met = true;

    println!("offboard revoke benchmark");
    println!(
        "sandbox: {LATENCY_MS} ms added to every request, consistency delay {consistency:.1} s"
    );
    println!(
        "real quotas: the shipped manifests (Google 40/s burst 40; Slack per method at its tier, Tier 2 20/min burst 5; Salesforce 10/s burst 10; Okta 10/s burst 10; Zoom 10/s burst 20; Miro 4/s burst 8; GitHub 10/s burst 10, paced by x-ratelimit-*); \
         the sandbox enforcing Google's {}/min per user and {}/min per project and Slack's documented tiers",
        sandbox::GOOGLE_USER_QUOTA_PER_MIN,
        sandbox::GOOGLE_PROJECT_QUOTA_PER_MIN
    );
    println!(
        "outcomes: checked against the sandbox's own state (what the leaver still holds), and the ledger chain"
    );

    if wants("real") {
        let shape = real_shape(1);
        let email = shape.email.clone();
        let r = rt.block_on(run(Quotas::Real, Mode::Together, Some(&shape), &email))?;
        check(&r, "real quotas")?;
        println!();
        println!(
            "== real quotas, {} apps: {} grants ({})",
            r.apps.len(),
            r.grants.len(),
            per_app_counts(&r.grants)
        );
        println!(
            "requests: discovery {} ({}); revoke to verified {} ({})",
            r.discovery_log.len(),
            requests(&r.discovery_log),
            r.revoke_log.len(),
            requests(&r.revoke_log)
        );
        println!(
            "discovery {:.2} s; revoke to all verified {:.2} s",
            r.discovery, r.revoke
        );
        let (_, ok) = per_app_table(&r, consistency, Some(1.15));
        all_met &= ok;
        let whole = r.discovery + r.revoke;
        let modes = [
            (Mode::OneAtATime, "one request at a time, app after app"),
            (Mode::AppAfterApp, "one app after another (a script)"),
        ];
        for (mode, label) in modes.into_iter().filter(|_| baselines) {
            let b = rt.block_on(run(Quotas::Real, mode, Some(&shape), &email))?;
            check(&b, label)?;
            let total = b.discovery + b.revoke;
            println!(
                "  baseline: {label}: {total:.2} s (discovery {:.2} s, revoke {:.2} s), outcome checked: {:.1}x slower",
                b.discovery,
                b.revoke,
                total / whole
            );
        }
    }

    if wants("urgent") {
        let email = "marcus.reyes@example.com";
        let r = rt.block_on(run(Quotas::Real, Mode::Together, None, email))?;
        check(&r, "urgent termination")?;
        println!();
        println!(
            "== urgent termination at real quotas: {email}, {} grants ({})",
            r.grants.len(),
            per_app_counts(&r.grants)
        );
        println!(
            "  {:<15} {:>14} {:>9} {:>9} {:>11} {:>9}",
            "app", "earlier done", "closed", "floor", "verified", "floor"
        );
        let mut last_close: f64 = 0.0;
        let mut last_close_floor: f64 = 0.0;
        let mut verified: f64 = 0.0;
        let mut verified_floor: f64 = 0.0;
        for res in &r.resolved {
            let app = res.id.as_str();
            let Some(t) = r.apps.get(app) else { continue };
            let (cf, vf) = floor(
                app,
                &r.grants,
                &r.discovery_log,
                res,
                consistency,
                r.discovery,
            );
            let opt = |x: Option<f64>| x.map(|v| format!("{v:.2} s")).unwrap_or("-".into());
            println!(
                "  {:<15} {:>14} {:>9} {:>9} {:>9.2} s {:>7.2} s",
                app,
                opt(t.earlier),
                opt(t.closed),
                opt(cf),
                t.verified,
                vf
            );
            if let (Some(c), Some(e)) = (t.closed, t.earlier) {
                // Sent as soon as its own earlier phases were answered: the
                // closure's answer within one round trip (and what its
                // bucket makes it wait) of the last earlier answer.
                let gap = c - e;
                let ok = gap <= 0.5;
                all_met &= ok;
                println!(
                    "  {:<11} closure answered {gap:.2} s after its own earlier phases: {}",
                    "",
                    yn(ok)
                );
            }
            last_close = last_close.max(t.closed.unwrap_or(0.0));
            last_close_floor = last_close_floor.max(cf.unwrap_or(0.0));
            verified = verified.max(t.verified);
            verified_floor = verified_floor.max(vf);
        }
        println!(
            "  last account closure {last_close:.2} s (floor {last_close_floor:.2} s); all verified {verified:.2} s (floor {verified_floor:.2} s)"
        );
    }

    if wants("scaling") {
        println!();
        println!("== scaling at real quotas (ratio of revoke to verified to its floor)");
        println!(
            "  {:<5} {:>7} {:>9} {:>9} {:>7}",
            "size", "grants", "measured", "floor", "ratio"
        );
        let mut ratios = Vec::new();
        for k in [1, 2, 4] {
            let shape = real_shape(k);
            let email = shape.email.clone();
            let r = rt.block_on(run(Quotas::Real, Mode::Together, Some(&shape), &email))?;
            check(&r, &format!("scaling {k}x"))?;
            let f = r
                .resolved
                .iter()
                .map(|res| {
                    floor(
                        &res.id,
                        &r.grants,
                        &r.discovery_log,
                        res,
                        consistency,
                        r.discovery,
                    )
                    .1
                })
                .fold(0.0, f64::max);
            let ratio = r.revoke / f;
            ratios.push(ratio);
            println!(
                "  {:<5} {:>7} {:>7.2} s {:>7.2} s {:>6.2}x",
                format!("{k}x"),
                r.grants.len(),
                r.revoke,
                f,
                ratio
            );
        }
        // Flat: the largest run's ratio no more than 5% above the smallest's.
        let flat = ratios[2] <= ratios[0] * 1.05 + 0.02;
        all_met &= flat;
        println!("  ratio flat from 1x to 4x: {}", yn(flat));
    }

    if wants("mass") {
        let (total, apps, problems) = rt.block_on(mass(leavers))?;
        println!();
        println!(
            "== mass offboarding at real quotas: {leavers} leavers, {} at a time (Slack left out: one Tier 2 call per leaver alone needs {:.1} min)",
            config::BatchConfig::default().concurrency,
            leavers as f64 / 20.0
        );
        println!(
            "  {:<11} {:>7} {:>7} {:>9} {:>6} {:>9} {:>9}",
            "app", "leavers", "grants", "requests", "429s", "floor", "quota used"
        );
        let (mut all, mut limited, mut floor): (usize, usize, f64) = (0, 0, 0.0);
        let mut binding = String::new();
        for (app, a) in &apps {
            println!(
                "  {:<11} {:>7} {:>7} {:>9} {:>6} {:>7.1} s {:>8.0}%",
                app,
                a.leavers,
                a.grants,
                a.requests,
                a.rate_limited,
                a.floor,
                100.0 * a.floor / total
            );
            all += a.requests;
            limited += a.rate_limited;
            if a.floor > floor {
                floor = a.floor;
                binding = app.clone();
            }
        }
        let used = floor / total;
        let share_429 = limited as f64 / all.max(1) as f64;
        println!(
            "  all {leavers} offboarded and verified in {total:.1} s; quota floor {floor:.1} s ({binding}: requests / its rate)"
        );
        println!(
            "  share of the binding quota used {:.0}% (target >= 90%: {}); rate-limit answers {limited} of {all} requests, {:.2}% (target <= 1%: {})",
            100.0 * used,
            yn(used >= 0.9),
            100.0 * share_429,
            yn(share_429 <= 0.01)
        );
        all_met &= used >= 0.9 && share_429 <= 0.01;
        if !problems.is_empty() {
            anyhow::bail!(
                "mass offboarding: {} problem(s), e.g. {:?}",
                problems.len(),
                &problems[..problems.len().min(5)]
            );
        }
        println!("  outcome checked: every leaver's access gone in the sandbox's own state");
    }

    if wants("raised") {
        let shape = BenchShape::default();
        let email = shape.email.clone();
        let r = rt.block_on(run(Quotas::Raised, Mode::Together, Some(&shape), &email))?;
        check(&r, "raised quotas")?;
        println!();
        println!(
            "== RAISED QUOTAS (every connector 1,000/s burst 100, Slack tiers 6,000/min; the sandbox enforcing none): {} grants ({})",
            r.grants.len(),
            per_app_counts(&r.grants)
        );
        println!(
            "requests: discovery {}; revoke to verified {} ({})",
            r.discovery_log.len(),
            r.revoke_log.len(),
            requests(&r.revoke_log)
        );
        println!(
            "discovery {:.2} s; revoke to all verified {:.2} s",
            r.discovery, r.revoke
        );
        per_app_table(&r, consistency, None);
    }

    println!();
    println!(
        "{}",
        if all_met {
            "all targets met"
        } else {
            "SOME TARGETS NOT MET"
        }
    );
    Ok(())
}
