//! The fleet level over HTTP against the sandbox, through the real binary:
//! the orphan sweep (orphans in each app, a failed read reported as not
//! swept).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use offboard::sandbox::Faults;
use offboard::sandbox::tenant;
use serde_json::Value;

struct Env {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    config: PathBuf,
    data: PathBuf,
}

fn env(base_url: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(&dir.path().join("cfg"), base_url);
    // These tests keep to Google, Slack and Salesforce (their findings are
    // what they check); the sweep of Okta and the SCIM apps has its own
    // test below.
    let mut text = std::fs::read_to_string(&config).unwrap();
    for app in ["okta", "zoom", "miro"] {
        let header = format!("[connectors.{app}]\n");
        assert!(text.contains(&header), "{app} in the demo config");
        text = text.replace(&header, &format!("{header}enabled = false\n"));
    }
    std::fs::write(&config, text).unwrap();
    let data = dir.path().join("data");
    Env {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        config,
        data,
    }
}

async fn run(e: &Env, args: &[&str]) -> (i32, String, String) {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"));
    c.args(args)
        .env("OFFBOARD_CONFIG", &e.config)
        .env("OFFBOARD_DATA", &e.data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), c.output())
        .await
        .expect("the command finishes")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn run_json(e: &Env, args: &[&str]) -> (i32, Value, String) {
    let (code, out, err) = run(e, args).await;
    let v = serde_json::from_str(&out).unwrap_or_else(|_| panic!("json: {out}\n{err}"));
    (code, v, err)
}

/// A roster of the demo company: everyone active, except those named
/// (`left`), those left out, and Sam Okafor (a guest with no manager).
fn roster(dir: &Path, left: &[&str], missing: &[&str]) -> PathBuf {
    let mut text = String::from("email,status,aliases,manager\n");
    for p in tenant::people() {
        if missing.contains(&p.email.as_str()) {
            continue;
        }
        let status = if left.contains(&p.email.as_str()) {
            "left"
        } else {
            "active"
        };
        let manager = if p.email.starts_with("sam.okafor") {
            ""
        } else {
            "ada.abbott@example.com"
        };
        text.push_str(&format!(
            "{},{status},{},{manager}\n",
            p.email,
            p.aliases.join(";")
        ));
    }
    // A bad line is reported and skipped; the rest loads.
    text.push_str(",active,,\n");
    let path = dir.join("roster.csv");
    std::fs::write(&path, text).unwrap();
    path
}

fn findings<'a>(v: &'a Value, app: &str, login_prefix: &str) -> Vec<&'a Value> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["app"] == app
                && f["login"]
                    .as_str()
                    .unwrap()
                    .to_ascii_lowercase()
                    .starts_with(login_prefix)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_finds_orphans_in_each_app() {
    let sb = common::sandbox(common::quick(200)).await;
    let e = env(&sb.base_url);
    let roster = roster(
        &e.dir,
        &["lena.kowalski@example.com"],
        &["priya.natarajan@example.com"],
    );
    let (code, v, err) = run_json(
        &e,
        &["sweep", "--roster", roster.to_str().unwrap(), "--json"],
    )
    .await;
    assert_eq!(code, 3, "{v}\n{err}");
    assert_eq!(v["schema"], "offboard.sweep/1");
    assert_eq!(v["exit_code"], 3);
    assert!(
        err.contains("roster.csv line ") && err.contains(": no email"),
        "{err}"
    );
    for a in v["apps"].as_array().unwrap() {
        assert_eq!(a["status"], "swept", "{a}");
        assert!(a["accounts"].as_u64().unwrap() > 5, "{a}");
    }
    // Tom Becker: suspended in Google, still active in Slack and Salesforce.
    for app in ["slack", "salesforce"] {
        let f = findings(&v, app, "tom.becker");
        assert_eq!(f.len(), 1, "{app}: {v}");
        assert_eq!(f[0]["kind"], "suspended_identity");
        assert!(
            f[0]["why"]
                .as_str()
                .unwrap()
                .contains("suspended in google")
        );
        assert_eq!(
            f[0]["command"],
            format!("offboard revoke tom.becker@example.com --app {app} --yes")
        );
    }
    assert!(findings(&v, "google", "tom.becker").is_empty(), "{v}");
    // Lena has left: her active accounts are orphans wherever they are.
    let lena = findings(&v, "google", "lena.kowalski");
    assert_eq!(lena.len(), 1, "{v}");
    assert_eq!(lena[0]["kind"], "left");
    assert_eq!(
        lena[0]["command"],
        "offboard revoke lena.kowalski@example.com --app google --yes"
    );
    // Priya is not in the roster at all.
    let priya = findings(&v, "google", "priya.natarajan");
    assert_eq!(priya.len(), 1, "{v}");
    assert_eq!(priya[0]["kind"], "not_in_roster");
    // Sam, a Slack guest with nobody who owns the guest account.
    let sam = findings(&v, "slack", "sam.okafor");
    assert_eq!(sam.len(), 1, "{v}");
    assert_eq!(sam[0]["kind"], "guest_without_owner");
    assert_eq!(sam[0]["class"], "guest");
    // Someone active everywhere is not a finding.
    assert!(
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| !f["login"].as_str().unwrap().starts_with("dana.whitfield")),
        "{v}"
    );
    // The text form names why, the last activity, and the command.
    let (code, out, _) = run(&e, &["sweep", "--roster", roster.to_str().unwrap()]).await;
    assert_eq!(code, 3);
    assert!(
        out.contains("slack  suspended_identity  tom.becker@example.com"),
        "{out}"
    );
    assert!(
        out.contains("offboard: offboard revoke tom.becker@example.com --app slack --yes"),
        "{out}"
    );
    assert!(out.contains("last activity: "), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_apps_of_a_leaver_are_findings() {
    let sb = common::sandbox(common::quick(200)).await;
    let e = env(&sb.base_url);
    // Marcus installed Slack apps; once he has left, they are orphans.
    let roster = roster(&e.dir, &["marcus.reyes@example.com"], &[]);
    let (code, v, err) = run_json(
        &e,
        &["sweep", "--roster", roster.to_str().unwrap(), "--json"],
    )
    .await;
    assert_eq!(code, 3, "{v}\n{err}");
    let owned: Vec<&Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "owner_left")
        .collect();
    let marcus: Vec<&&Value> = owned
        .iter()
        .filter(|f| {
            f["why"]
                .as_str()
                .unwrap()
                .contains("marcus.reyes@example.com")
        })
        .collect();
    let names: Vec<&str> = marcus
        .iter()
        .map(|f| f["login"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Deploy Notifier", "Pager Bridge"], "{v}");
    for f in &marcus {
        assert_eq!(f["app"], "slack");
        assert_eq!(f["class"], "non_human");
        assert_eq!(
            f["command"],
            "offboard revoke marcus.reyes@example.com --app slack --kind owned_app --yes"
        );
    }
    // Tom's app: its owner is suspended in Google.
    let tom: Vec<&&Value> = owned
        .iter()
        .filter(|f| f["login"] == "Calendar Sync")
        .collect();
    assert_eq!(tom.len(), 1, "{v}");
    assert!(
        tom[0]["why"]
            .as_str()
            .unwrap()
            .contains("suspended in google")
    );
    // Dana is active: her Expense Bot is not a finding, nor is an app
    // that was removed.
    assert!(
        owned
            .iter()
            .all(|f| f["login"] != "Expense Bot" && f["login"] != "Quick Poll"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_listing_is_not_swept_never_clean() {
    let sb = common::sandbox(Faults {
        error_rate: 1.0,
        path_prefix: Some("/api/users.list".into()),
        ..common::quick(200)
    })
    .await;
    let e = env(&sb.base_url);
    // No roster and nothing else to find in Slack: only the failure decides.
    let (code, v, err) = run_json(&e, &["sweep", "--json"]).await;
    assert_eq!(code, 3, "{v}\n{err}");
    let slack = v["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app"] == "slack")
        .unwrap();
    assert_eq!(slack["status"], "not_swept", "{v}");
    assert!(
        slack["error"].as_str().unwrap().contains("HTTP 5"),
        "{slack}"
    );
    assert!(
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["app"] != "slack")
    );
    let (code, out, _) = run(&e, &["sweep"]).await;
    assert_eq!(code, 3);
    assert!(out.contains("slack: NOT SWEPT"), "{out}");
    assert!(!out.contains("\nno findings\n"), "{out}");
}

/// The demo config with `[batch]` guardrails and a short verify deadline.
fn batch_env(base_url: &str, batch: &str) -> Env {
    let e = env(base_url);
    let text = std::fs::read_to_string(&e.config).unwrap();
    let text = text.replace("verify_deadline_secs = 60", "verify_deadline_secs = 8");
    std::fs::write(&e.config, format!("{text}\n[batch]\n{batch}\n")).unwrap();
    e
}

fn ledger_text(e: &Env) -> String {
    std::fs::read_to_string(e.data.join("ledger.jsonl")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_cap_is_refused_and_a_dry_run_counts_it() {
    let sb = common::sandbox(common::quick(200)).await;
    let e = batch_env(&sb.base_url, "max_batch = 2");
    let file = e.dir.join("leavers.txt");
    std::fs::write(
        &file,
        "# layoff\ndana.whitfield@example.com\nlena.kowalski@example.com\n\npriya.natarajan@example.com\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let (code, _, err) = run(&e, &["revoke", "--from", f, "--yes"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("batch over the cap: 3 leavers is more than [batch] max_batch = 2"),
        "{err}"
    );
    assert!(err.contains("--confirm-count 3"), "{err}");
    assert!(!ledger_text(&e).contains("revoke_requested"));
    // A wrong count is refused too.
    let (code, _, err) = run(
        &e,
        &["revoke", "--from", f, "--yes", "--confirm-count", "2"],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--confirm-count 2 does not match"), "{err}");
    assert!(!ledger_text(&e).contains("revoke_requested"));
    // The dry run: totals per app and kind, and the reason for the cap.
    let (code, out, err) = run(&e, &["revoke", "--from", f, "--dry-run"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("dry run: 3 leaver(s)"), "{out}");
    assert!(out.contains("google       account"), "{out}");
    assert!(out.contains("slack        session"), "{out}");
    assert!(out.contains("needs --confirm-count 3: 3 leavers"), "{out}");
    assert!(!ledger_text(&e).contains("revoke_requested"));
    // A line that is not an address refuses the whole batch.
    std::fs::write(&file, "dana.whitfield@example.com\nnot an address\n").unwrap();
    let (code, _, err) = run(&e, &["revoke", "--from", f, "--yes"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("line 2: `not an address` is not an email address"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_pauses_a_batch_when_an_app_fails() {
    let sb = common::sandbox(Faults {
        error_rate: 1.0,
        path_prefix: Some("/api/usergroups.users.update".into()),
        ..common::quick(200)
    })
    .await;
    let e = batch_env(
        &sb.base_url,
        "concurrency = 1\nbreaker_failures = 3\nbreaker_window = 20",
    );
    let file = e.dir.join("leavers.txt");
    std::fs::write(
        &file,
        "marcus.reyes@example.com\ndana.whitfield@example.com\nlena.kowalski@example.com\n",
    )
    .unwrap();
    let (code, out, err) = run(&e, &["revoke", "--from", file.to_str().unwrap(), "--yes"]).await;
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains("batch PAUSED: circuit breaker: slack: "),
        "{err}"
    );
    assert!(
        out.contains("paused by the circuit breaker: slack: "),
        "{out}"
    );
    assert!(
        out.contains("not started: dana.whitfield@example.com"),
        "{out}"
    );
    assert!(
        out.contains("not started: lena.kowalski@example.com"),
        "{out}"
    );
    assert!(out.contains("1 of 3 leaver(s) run"), "{out}");
    assert!(err.contains("overall: 1/3 leaver(s) finished"), "{err}");
    let ledger = ledger_text(&e);
    let requested = |who: &str| {
        ledger
            .lines()
            .any(|l| l.contains(who) && l.contains("revoke_requested"))
    };
    assert!(requested("marcus.reyes@example.com"));
    // Discovered for the dry-run totals and the cap, never revoked.
    assert!(!requested("dana.whitfield@example.com"));
    assert!(!requested("lena.kowalski@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roster_batch_hands_data_over_to_managers_and_shows_progress_with_the_time_left() {
    let sb = common::sandbox(common::quick(200)).await;
    let e = batch_env(&sb.base_url, "max_batch = 5");
    let boss = tenant::people()
        .into_iter()
        .find(|p| p.scenario.is_none())
        .unwrap()
        .email;
    let file = e.dir.join("leavers.csv");
    std::fs::write(
        &file,
        format!(
            "email,status,aliases,manager\n\
             dana.whitfield@example.com,left,,{boss}\n\
             lena.kowalski@example.com,leaving,,\n\
             {boss},active,,\n"
        ),
    )
    .unwrap();
    let (code, out, err) = run(&e, &["revoke", "--from", file.to_str().unwrap(), "--yes"]).await;
    assert!(code == 0 || code == 3, "{out}\n{err}");
    assert!(out.contains("2 of 2 leaver(s) run"), "{out}");
    // A bar per app and overall, with the time left from the quota.
    let bar_line = |app: &str| {
        err.lines()
            .rfind(|l| l.starts_with(app) && l.contains('[') && l.contains(']'))
            .unwrap_or_else(|| panic!("no {app} bar in {err}"))
            .to_string()
    };
    assert!(bar_line("google").contains("(quota 40/s)"), "{err}");
    assert!(
        bar_line("overall").contains("2/2 leaver(s) finished"),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("overall") && l.contains("done")),
        "{err}"
    );
    // Dana's Drive and Calendar went to her manager through the Data
    // Transfer API, verified by a fresh read; Lena (no manager) keeps the
    // manual step.
    let ledger = ledger_text(&e);
    assert!(
        ledger.lines().any(|l| l.contains("\"verified\"")
            && l.contains("google/transfer:drive_calendar")
            && l.contains("dana.whitfield@example.com")),
        "{ledger}"
    );
    assert!(
        !ledger
            .lines()
            .any(|l| l.contains("lena.kowalski") && l.contains("transfer:drive_calendar")),
        "{ledger}"
    );
    let g = sb.state.google.lock().unwrap();
    assert_eq!(g.transfers.len(), 1);
    let boss_i = g.user_index(&boss).unwrap();
    assert_eq!(g.transfers[0].new_owner, g.users[boss_i].id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_covers_okta_and_the_scim_apps_too() {
    let sb = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(&dir.path().join("cfg"), &sb.base_url);
    let e = Env {
        dir: dir.path().to_path_buf(),
        config,
        data: dir.path().join("data"),
        _dir: dir,
    };
    let roster = roster(&e.dir, &["lena.kowalski@example.com"], &[]);
    let (code, v, err) = run_json(
        &e,
        &["sweep", "--roster", roster.to_str().unwrap(), "--json"],
    )
    .await;
    assert_eq!(code, 3, "{v}\n{err}");
    let apps: Vec<&str> = v["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["app"].as_str().unwrap())
        .collect();
    for app in ["okta", "zoom", "miro"] {
        assert!(apps.contains(&app), "{app} in {apps:?}");
    }
    for a in v["apps"].as_array().unwrap() {
        assert_eq!(a["status"], "swept", "{a}");
        assert!(a["accounts"].as_u64().unwrap() > 0, "{a}");
    }
    // Lena has left: her Okta account is an orphan too.
    let lena = findings(&v, "okta", "lena.kowalski");
    assert_eq!(lena.len(), 1, "{v}");
    assert_eq!(lena[0]["kind"], "left");
}
