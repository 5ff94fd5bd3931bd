//! `cargo bench --bench revoke [-- --quick] [-- --only google|all]`
//!
//! Runs the real engine and drivers over HTTP against the in-process
//! sandbox (50 ms added to every request, the default 1.5 s consistency
//! delay) for one benchmark leaver, and measures:
//!
//! - discovery: lookup and full inventory in every app;
//! - revoke-to-all-verified: plan, phased revocation, and the verify loop
//!   until every grant is verified by a fresh read (or acknowledged when no
//!   API can list it).
//!
//! Each figure is printed beside its bound: the critical path (dependent
//! round trips × latency: token fetch, lookup, the longest chain of pages,
//! one chain per phase since a phase starts after the previous phase's
//! requests are answered, plus the consistency delay and the confirming
//! read for revoke-to-verified) and the rate limit's floor (requests beyond
//! the burst / rate, and requests / max_concurrency × latency), with the
//! requests counted from the sandbox's access log. The same work is then run
//! one request at a time (max_concurrency = 1); `--quick` skips that run and
//! estimates it from the measured per-request time instead.
//!
//! Targets: discovery <= 1.5 × its bound; revoke-to-verified <= 2 × its
//! bound; the whole run >= 10 × faster than one request at a time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use offboard::config;
use offboard::engine::{Engine, EngineOptions, Event, Selection, connectors_from_config};
use offboard::evidence::{Ledger, verify_chain};
use offboard::model::{GrantKind, Phase};
use offboard::sandbox::{self, Faults, Options, tenant::BenchShape};

const LATENCY_MS: u64 = 50;

/// The raised API quota the benchmark tenant has (per connector).
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_concurrency: usize,
    requests_per_second: f64,
    burst: u32,
}

const RAISED: Limits = Limits {
    max_concurrency: 64,
    requests_per_second: 1000.0,
    burst: 100,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Google,
    All,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Google => "Google only",
            Scenario::All => "Google + Slack + Salesforce",
        }
    }

    fn connectors(self) -> &'static [&'static str] {
        match self {
            Scenario::Google => &["google"],
            Scenario::All => &["google", "slack", "salesforce"],
        }
    }
}

/// One request from the sandbox's access log.
#[derive(Debug, Clone, serde::Deserialize)]
struct Logged {
    ts: DateTime<Utc>,
    method: String,
    path: String,
    ms: u64,
}

impl Logged {
    /// Which connector sent it.
    fn connector(&self) -> &'static str {
        let p = self.path.as_str();
        if p.starts_with("/admin/") || p.starts_with("/apps/licensing/") || p == "/token" {
            "google"
        } else if p.starts_with("/api/") || p.starts_with("/scim/") {
            "slack"
        } else if p.starts_with("/services/") {
            "salesforce"
        } else {
            "other"
        }
    }

    fn is_token_fetch(&self) -> bool {
        self.path == "/token" || self.path == "/services/oauth2/token"
    }
}

/// A grant's part of the critical path: round trips of its removal, and of
/// the read that confirms it.
struct GrantChain {
    connector: String,
    phase: Phase,
    write_rtt: u32,
    verify_rtt: u32,
}

struct Run {
    grants: usize,
    by_app: BTreeMap<String, usize>,
    discovery: Duration,
    revoke: Duration,
    /// Since the start of revoke: when the last phase's last answer came.
    exec: Duration,
    discovery_log: Vec<Logged>,
    revoke_log: Vec<Logged>,
    exec_end: DateTime<Utc>,
    chains: Vec<GrantChain>,
    summary: offboard::engine::Summary,
    ledger_records: usize,
}

fn read_log(path: &Path, from: usize) -> Vec<Logged> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .skip(from)
        .map(|l| serde_json::from_str(l).expect("access log lines are JSON"))
        .collect()
}

fn limits_toml(id: &str, l: Limits) -> String {
    format!(
        "\n[connectors.{id}.limits]\nmax_concurrency = {}\nrequests_per_second = {:.1}\nburst = {}\ntimeout_secs = 30.0\nmax_retries = 4\n",
        l.max_concurrency, l.requests_per_second, l.burst
    )
}

/// Round trips to remove a grant and to confirm it, per driver (what each
/// driver sends; page counts come from the discovery's access log).
fn chain_of(g: &offboard::model::Grant, pages: &Pages) -> GrantChain {
    let prefix = g.id.split(':').next().unwrap_or("");
    let (write_rtt, verify_rtt) = match g.connector.as_str() {
        "google" => match g.kind {
            GrantKind::Group => (1, pages.google_groups),
            GrantKind::AdminRole => (1, pages.google_roles),
            GrantKind::Device => (1, pages.google_devices),
            _ => (1, 1),
        },
        // A user group removal reads the members twice, then writes.
        "slack" => match prefix {
            "usergroup" => (3, 1),
            "session" => (1, pages.slack_sessions),
            _ => (1, 1),
        },
        // A token's DeleteToken is read again right before it is revoked;
        // the account (freeze, deactivate) is read as User then UserLogin.
        "salesforce" => match prefix {
            "oauth" => (2, 1),
            "freeze" | "deactivate" => (1, 2),
            _ => (1, 1),
        },
        _ => (1, 1),
    };
    GrantChain {
        connector: g.connector.clone(),
        phase: g.phase(),
        write_rtt,
        verify_rtt,
    }
}

/// Pages each paged listing took in discovery (from the access log).
#[derive(Default, Debug)]
struct Pages {
    google_groups: u32,
    google_roles: u32,
    google_devices: u32,
    slack_sessions: u32,
    slack_roles: u32,
    slack_logs: u32,
    /// Longest run of query pages (1 + continuation pages of one query).
    salesforce_query: u32,
}

impl Pages {
    fn from_log(log: &[Logged]) -> Pages {
        let count = |f: &dyn Fn(&Logged) -> bool| log.iter().filter(|l| f(l)).count() as u32;
        let slack = |m: &str| {
            let path = format!("/api/{m}");
            count(&|l: &Logged| l.path == path)
        };
        let locators = count(&|l: &Logged| {
            l.path.starts_with("/services/data/") && l.path.contains("/query/")
        });
        Pages {
            google_groups: count(&|l| l.path == "/admin/directory/v1/groups").max(1),
            google_roles: count(&|l| l.path.ends_with("/roleassignments") && l.method == "GET")
                .max(1),
            google_devices: count(&|l| l.path.ends_with("/devices/mobile")).max(1),
            slack_sessions: slack("admin.users.session.list").max(1),
            slack_roles: slack("admin.roles.listAssignments").max(1),
            slack_logs: slack("team.integrationLogs").max(1),
            salesforce_query: 1 + locators,
        }
    }

    /// Round trips of one connector's discovery: token, lookup, then the
    /// longest chain of reads of the inventory.
    fn discovery_rtt(&self, connector: &str, log: &[Logged]) -> u32 {
        let token = u32::from(
            log.iter()
                .any(|l| l.connector() == connector && l.is_token_fetch()),
        );
        let listing = match connector {
            "google" => self
                .google_groups
                .max(self.google_roles)
                .max(self.google_devices),
            // users.info first (the team), then the listings.
            "slack" => {
                1 + self
                    .slack_sessions
                    .max(self.slack_roles)
                    .max(self.slack_logs)
            }
            // User, then UserLogin.
            "salesforce" => 2.max(self.salesforce_query),
            _ => 1,
        };
        token + 1 + listing
    }
}

async fn run(
    scenario: Scenario,
    limits: Limits,
    shape: &BenchShape,
    keep: Option<&Path>,
) -> anyhow::Result<Run> {
    let tmp = tempfile::tempdir()?;
    let dir: PathBuf = match keep {
        Some(k) => {
            std::fs::create_dir_all(k)?;
            k.to_path_buf()
        }
        None => tmp.path().to_path_buf(),
    };
    let log_path = dir.join("access.jsonl");
    let _ = std::fs::remove_file(&log_path);
    let _ = std::fs::remove_file(dir.join("data").join("ledger.jsonl"));
    let sb = sandbox::start(Options {
        faults: Faults {
            latency_ms: LATENCY_MS,
            ..Faults::default()
        },
        access_log: Some(log_path.clone()),
        bench_grants: Some(shape.clone()),
        ..Options::default()
    })
    .await?;
    sandbox::write_demo_keys(&dir)?;
    let mut text = sandbox::demo_config(&sb.base_url, &dir);
    for id in ["google", "slack", "salesforce"] {
        text.push_str(&limits_toml(id, limits));
    }
    let cfg_path = dir.join("config.toml");
    std::fs::write(&cfg_path, text)?;
    let loaded = config::load(&cfg_path)?;
    let resolved: Vec<_> = loaded
        .connectors()?
        .into_iter()
        .filter(|r| scenario.connectors().contains(&r.id.as_str()))
        .collect();
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let connectors = connectors_from_config(&resolved, &data, &tx)?;
    let opts = EngineOptions::from_config(&loaded);
    let ledger = Ledger::open_in(&data, &opts.operator)?;
    let engine = Engine::new(connectors, ledger, opts, tx);

    // The moment the last phase's last request is answered.
    let exec_end = std::sync::Arc::new(std::sync::Mutex::new(None::<(Instant, DateTime<Utc>)>));
    let drain = {
        let exec_end = exec_end.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                if let Event::PhaseProgress { done, total, .. } = e
                    && done == total
                {
                    *exec_end.lock().unwrap() = Some((Instant::now(), Utc::now()));
                }
            }
        })
    };

    let email = shape.email.as_str();
    let t0 = Instant::now();
    let case = engine.discover(email).await?;
    let discovery = t0.elapsed();
    let discovery_log = read_log(&log_path, 0);
    let pages = Pages::from_log(&discovery_log);
    let mut by_app = BTreeMap::new();
    for g in &case.grants {
        *by_app.entry(g.grant.connector.clone()).or_insert(0) += 1;
    }
    let chains: Vec<GrantChain> = case
        .grants
        .iter()
        .filter(|g| !g.grant.is_manual())
        .map(|g| chain_of(&g.grant, &pages))
        .collect();

    let t1 = Instant::now();
    let summary = engine.revoke(email, &Selection::default()).await?;
    let revoke = t1.elapsed();
    let revoke_log = read_log(&log_path, discovery_log.len());
    let (exec_at, exec_wall) = exec_end.lock().unwrap().expect("phases ran");
    let ledger_path = engine.ledger_path();
    let chain = verify_chain(&ledger_path)?;
    anyhow::ensure!(chain.ok(), "ledger chain broken: {:?}", chain.problems);
    drop(engine);
    drain.abort();
    sb.stop().await;
    Ok(Run {
        grants: case.grants.len(),
        by_app,
        discovery,
        revoke,
        exec: exec_at.saturating_duration_since(t1),
        discovery_log,
        revoke_log,
        exec_end: exec_wall,
        chains,
        summary,
        ledger_records: chain.records,
    })
}

fn secs(d: f64) -> String {
    format!("{d:.2} s")
}

/// The rate limit's floor for `n` requests of one connector.
fn floor(n: usize, l: Limits) -> f64 {
    let beyond = (n as f64 - f64::from(l.burst)).max(0.0);
    let by_rate = beyond / l.requests_per_second;
    let by_slots = n as f64 / l.max_concurrency as f64 * LATENCY_MS as f64 / 1000.0;
    by_rate.max(by_slots)
}

struct Bounds {
    disc_rtt: u32,
    disc_chain: f64,
    disc_floor: f64,
    rev_chain: f64,
    rev_floor: f64,
    phase_rtts: Vec<u32>,
}

fn bounds(r: &Run, scenario: Scenario, limits: Limits, consistency: f64) -> Bounds {
    let l = LATENCY_MS as f64 / 1000.0;
    let pages = Pages::from_log(&r.discovery_log);
    let mut disc_rtt = 0;
    let mut disc_floor: f64 = 0.0;
    for c in scenario.connectors() {
        disc_rtt = disc_rtt.max(pages.discovery_rtt(c, &r.discovery_log));
        let n = r
            .discovery_log
            .iter()
            .filter(|x| x.connector() == *c)
            .count();
        disc_floor = disc_floor.max(floor(n, limits));
    }
    // Phases run one after another; within one, every request at once.
    let mut phase_rtts = Vec::new();
    let mut end = 0u32;
    let mut chain_bound: f64 = 0.0;
    for p in Phase::ALL {
        let of_phase: Vec<&GrantChain> = r.chains.iter().filter(|c| c.phase == p).collect();
        if of_phase.is_empty() {
            phase_rtts.push(0);
            continue;
        }
        let w = of_phase.iter().map(|c| c.write_rtt).max().unwrap_or(0);
        end += w;
        phase_rtts.push(w);
        let read = of_phase.iter().map(|c| c.verify_rtt).max().unwrap_or(1);
        chain_bound = chain_bound.max(f64::from(end) * l + consistency + f64::from(read) * l);
    }
    // The writes (and whatever else was sent before the last phase ended)
    // cannot go faster than the limits allow; then the consistency delay
    // and one confirming read.
    let mut rev_floor: f64 = 0.0;
    for c in scenario.connectors() {
        let n = r
            .revoke_log
            .iter()
            .filter(|x| x.connector() == *c && x.ts <= r.exec_end)
            .count();
        let read = r
            .chains
            .iter()
            .filter(|g| g.connector == *c)
            .map(|g| g.verify_rtt)
            .max()
            .unwrap_or(1);
        rev_floor = rev_floor.max(floor(n, limits) + consistency + f64::from(read) * l);
    }
    Bounds {
        disc_rtt,
        disc_chain: f64::from(disc_rtt) * l,
        disc_floor,
        rev_chain: chain_bound,
        rev_floor,
        phase_rtts,
    }
}

fn per_connector(log: &[Logged]) -> String {
    let mut m: BTreeMap<&str, usize> = BTreeMap::new();
    for l in log {
        *m.entry(l.connector()).or_insert(0) += 1;
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One request at a time, estimated from the concurrent run: each
/// connector's requests back to back at the measured time per request
/// (connectors still run side by side), plus the consistency delay.
fn estimate_sequential(r: &Run, scenario: Scenario, consistency: f64) -> (f64, f64, f64) {
    let all: Vec<&Logged> = r.discovery_log.iter().chain(r.revoke_log.iter()).collect();
    let per_req = all.iter().map(|l| l.ms as f64).sum::<f64>() / all.len().max(1) as f64 / 1000.0;
    let mut disc: f64 = 0.0;
    let mut rev: f64 = 0.0;
    for c in scenario.connectors() {
        let n = r
            .discovery_log
            .iter()
            .filter(|x| x.connector() == *c)
            .count();
        disc = disc.max(n as f64 * per_req);
        // Writes and the reads they need; the verify loop's reads overlap.
        let w = r
            .revoke_log
            .iter()
            .filter(|x| x.connector() == *c && x.ts <= r.exec_end)
            .count();
        rev = rev.max(w as f64 * per_req + consistency);
    }
    (disc, rev, per_req)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let keep = std::env::var_os("OFFBOARD_BENCH_DIR").map(PathBuf::from);
    let scenarios: Vec<Scenario> = [Scenario::Google, Scenario::All]
        .into_iter()
        .filter(|s| match only.as_deref() {
            Some("google") => *s == Scenario::Google,
            Some("all") => *s == Scenario::All,
            _ => true,
        })
        .collect();
    let rt = tokio::runtime::Runtime::new()?;
    let shape = BenchShape::default();
    let consistency = Faults::default().consistency_ms as f64 / 1000.0;
    let one = Limits {
        max_concurrency: 1,
        ..RAISED
    };

    println!("offboard revoke benchmark");
    println!(
        "sandbox: {LATENCY_MS} ms added to every request, consistency delay {:.1} s; leaver {}",
        consistency, shape.email
    );
    println!(
        "limits used (every connector, [connectors.NAME.limits]): max_concurrency = {}, requests_per_second = {}, burst = {}",
        RAISED.max_concurrency, RAISED.requests_per_second, RAISED.burst
    );
    println!(
        "one at a time: the same limits with max_concurrency = 1{}",
        if quick {
            " (--quick: estimated from the measured time per request, not run)"
        } else {
            " (run)"
        }
    );
    let mut all_met = true;
    for sc in scenarios {
        let keep_dir = keep
            .as_ref()
            .map(|k| k.join(format!("{sc:?}").to_lowercase()));
        let r = rt.block_on(run(sc, RAISED, &shape, keep_dir.as_deref()))?;
        let b = bounds(&r, sc, RAISED, consistency);
        let (seq_disc, seq_rev, seq_note) = if quick {
            let (d, v, per) = estimate_sequential(&r, sc, consistency);
            (
                d,
                v,
                format!("estimated at {:.1} ms per request", per * 1000.0),
            )
        } else {
            let s = rt.block_on(run(sc, one, &shape, None))?;
            (
                s.discovery.as_secs_f64(),
                s.revoke.as_secs_f64(),
                "measured".to_string(),
            )
        };
        let disc = r.discovery.as_secs_f64();
        let rev = r.revoke.as_secs_f64();
        let disc_bound = b.disc_chain.max(b.disc_floor);
        let rev_bound = b.rev_chain.max(b.rev_floor);
        let disc_ratio = disc / disc_bound;
        let rev_ratio = rev / rev_bound;
        let speedup = (seq_disc + seq_rev) / (disc + rev);
        let ok = [disc_ratio <= 1.5, rev_ratio <= 2.0, speedup >= 10.0];
        all_met &= ok.iter().all(|x| *x);
        let yn = |b: bool| if b { "met" } else { "NOT MET" };
        let apps = r
            .by_app
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!();
        println!("== {}: {} grants ({apps})", sc.name(), r.grants);
        println!(
            "requests: discovery {} ({}); revoke to verified {} ({})",
            r.discovery_log.len(),
            per_connector(&r.discovery_log),
            r.revoke_log.len(),
            per_connector(&r.revoke_log)
        );
        println!(
            "critical path: discovery {} round trips; revoke phases {:?} round trips, then {:.1} s consistency and the confirming read",
            b.disc_rtt, b.phase_rtts, consistency
        );
        println!(
            "{:<24} {:>9} {:>10} {:>10} {:>9} {:>7} {:>8}  result",
            "", "measured", "crit.path", "rate floor", "bound", "ratio", "target"
        );
        println!(
            "{:<24} {:>9} {:>10} {:>10} {:>9} {:>6.2}x {:>8}  {}",
            "discovery",
            secs(disc),
            secs(b.disc_chain),
            secs(b.disc_floor),
            secs(disc_bound),
            disc_ratio,
            "<= 1.5x",
            yn(ok[0])
        );
        println!(
            "{:<24} {:>9} {:>10} {:>10} {:>9} {:>6.2}x {:>8}  {}",
            "revoke to all verified",
            secs(rev),
            secs(b.rev_chain),
            secs(b.rev_floor),
            secs(rev_bound),
            rev_ratio,
            "<= 2x",
            yn(ok[1])
        );
        println!(
            "{:<24} {:>9}   (phases done after {}; discovery {}, revoke {}; {seq_note})",
            "one at a time",
            secs(seq_disc + seq_rev),
            secs(r.exec.as_secs_f64()),
            secs(seq_disc),
            secs(seq_rev),
        );
        println!(
            "{:<24} {:>8.1}x {:>51}  {}",
            "speedup (whole run)",
            speedup,
            ">= 10x",
            yn(ok[2])
        );
        let s = &r.summary;
        println!(
            "outcome: {} verified, {} acknowledged, {} unconfirmed, {} failed, {} manual, {} live; ledger {} records, chain intact",
            s.verified, s.acknowledged, s.unconfirmed, s.failed, s.manual, s.live, r.ledger_records
        );
        anyhow::ensure!(
            s.unconfirmed + s.failed + s.live + s.removing == 0,
            "not every grant was confirmed: {s:?}"
        );
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
