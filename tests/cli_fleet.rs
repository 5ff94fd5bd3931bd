//! The fleet level from the real binary against an in-process sandbox with
//! the three-app demo config, over HTTP: a roster with bad lines, a leaver
//! whose exit time passed two weeks ago caught by `run --due`, a second run
//! that does nothing new, the scheduled policy's grace, and the evidence
//! report for a period.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use offboard::evidence::{Ledger, LedgerEvent, Record};
use offboard::fleet::history::cuts_access;
use serde_json::Value;

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
    data: PathBuf,
}

fn env(base_url: &str, extra_config: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(&dir.path().join("cfg"), base_url);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(extra_config);
    std::fs::write(&config, text).unwrap();
    let data = dir.path().join("data");
    Env { dir, config, data }
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

fn records(data: &Path) -> Vec<Record> {
    let p = data.join("ledger.jsonl");
    if !p.exists() {
        return Vec::new();
    }
    Ledger::read(&p).unwrap()
}

fn ago(h: i64) -> String {
    (Utc::now() - chrono::Duration::hours(h)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn leaver<'a>(v: &'a Value, email: &str) -> &'a Value {
    v["leavers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["email"] == email)
        .unwrap_or_else(|| panic!("no {email} in {v}"))
}

fn requested(recs: &[Record], email: &str) -> Vec<offboard::model::Grant> {
    recs.iter()
        .filter(|r| r.case == email)
        .filter_map(|r| match &r.event {
            LedgerEvent::RevokeRequested { grant, .. } => Some(grant.clone()),
            _ => None,
        })
        .collect()
}

const TOM: &str = "tom.becker@example.com";
const DANA: &str = "dana.whitfield@example.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_due_catches_an_old_leaver_once_and_the_period_report_shows_it() {
    let sb = common::sandbox(common::quick(200)).await;
    let e = env(&sb.base_url, "");
    let roster = e.dir.path().join("roster.csv");
    std::fs::write(
        &roster,
        format!(
            "\u{feff}email,name,status,exit_time,manager\n\
             {TOM},\"Becker, Tom\",left,{},boss@example.com\n\
             {DANA},Dana Whitfield,leaving,{},\n\
             ,No Email,left,2026-01-01,\n\
             priya.natarajan@example.com,Priya,active,,\n\
             lena.kowalski@example.com,Lena,left,sometime,\n",
            ago(14 * 24),
            ago(-48)
        ),
    )
    .unwrap();
    let roster_arg = roster.to_str().unwrap();

    // Without --yes: a dry run that says so and changes nothing.
    let (code, out, err) = run(&e, &["run", "--due", "--roster", roster_arg]).await;
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(out.starts_with("DRY RUN: nothing was changed"), "{out}");
    assert!(out.contains(&format!("{TOM}  overdue 14d")), "{out}");
    assert!(err.contains("roster.csv line 4: no email"), "{err}");
    assert!(err.contains("roster.csv line 6: exit_time:"), "{err}");
    assert!(
        records(&e.data)
            .iter()
            .all(|r| !matches!(r.event, LedgerEvent::RevokeRequested { .. })),
        "a dry run requested a removal"
    );

    // With --yes: Tom (gone two weeks ago) is revoked; Dana is not due;
    // nothing is done for the lines that did not parse.
    let (code, v, err) = run_json(
        &e,
        &["run", "--due", "--roster", roster_arg, "--yes", "--json"],
    )
    .await;
    assert_eq!(v["schema"], "offboard.run/1");
    assert_eq!(v["dry_run"], false);
    let tom = leaver(&v, TOM);
    assert_eq!(tom["action"], "run", "{tom}");
    assert_eq!(tom["scope"], "all");
    assert!(
        tom["due"].as_str().unwrap().starts_with("overdue 14d"),
        "{tom}"
    );
    assert!(tom["summary"]["verified"].as_u64().unwrap() > 0, "{tom}");
    let dana = leaver(&v, DANA);
    assert_eq!(dana["action"], "not_due");
    assert!(
        dana["due"].as_str().unwrap().starts_with("due in 47h"),
        "{dana}"
    );
    let errors: Vec<&str> = v["roster_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0], "roster.csv line 4: no email");
    assert!(
        v["leavers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["email"] != "lena.kowalski@example.com")
    );
    // Something is left (manual steps, bad roster lines): exit 3.
    assert_eq!(code, 3, "{v}\n{err}");
    assert_eq!(v["exit_code"], 3);
    let recs = records(&e.data);
    let tom_requests = requested(&recs, TOM);
    assert!(!tom_requests.is_empty());
    assert!(requested(&recs, DANA).is_empty(), "Dana is not due");
    assert!(requested(&recs, "lena.kowalski@example.com").is_empty());
    // Every removal of Tom's is settled in the ledger: verified,
    // acknowledged, or left for a person with a reason.
    for x in tom["left"].as_array().unwrap() {
        let x = x.as_str().unwrap();
        assert!(
            x.starts_with("manual ") || x.starts_with("failed ") || x.starts_with("unconfirmed "),
            "{x}"
        );
    }

    // Again: nothing new. No record is added to the ledger.
    let before = recs.len();
    let (code, v, err) = run_json(
        &e,
        &["run", "--due", "--roster", roster_arg, "--yes", "--json"],
    )
    .await;
    let tom = leaver(&v, TOM);
    assert_eq!(tom["action"], "skip", "{tom}\n{err}");
    assert_eq!(
        records(&e.data).len(),
        before,
        "the second run wrote to the ledger"
    );
    assert_eq!(code, 3);
    let (_, out, _) = run(&e, &["run", "--due", "--roster", roster_arg, "--yes"]).await;
    assert!(out.contains(&format!("{TOM}  overdue 14d")), "{out}");
    assert!(out.contains("skipped:"), "{out}");
    assert_eq!(records(&e.data).len(), before);

    // The period report: Tom with his exit time and removals per app, past
    // the SLA (he left two weeks before anyone acted); a roster leaver the
    // ledger has nothing for is shown as never processed.
    let roster2 = e.dir.path().join("hr.jsonl");
    std::fs::write(
        &roster2,
        format!(
            "{{\"email\":\"{TOM}\",\"name\":\"Tom Becker\",\"status\":\"left\",\"exit_time\":\"{}\"}}\n\
             {{\"email\":\"ghost@example.com\",\"name\":\"Gus Ghost\",\"status\":\"left\",\"exit_time\":\"{}\"}}\n\
             {{\"email\":\"later@example.com\",\"status\":\"leaving\",\"exit_time\":\"{}\"}}\n\
             not json\n",
            ago(14 * 24),
            ago(72),
            ago(-72)
        ),
    )
    .unwrap();
    let since = (Utc::now() - chrono::Duration::days(20))
        .format("%Y-%m-%d")
        .to_string();
    let (code, v, err) = run_json(
        &e,
        &[
            "evidence",
            "report",
            "--since",
            &since,
            "--format",
            "json",
            "--roster",
            roster2.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{v}\n{err}");
    assert!(err.contains("hr.jsonl line 4: not JSON"), "{err}");
    assert_eq!(v["schema"], "offboard.period/1");
    assert_eq!(v["sla_hours"], 24);
    let chain = offboard::evidence::verify_chain(&e.data.join("ledger.jsonl")).unwrap();
    assert_eq!(v["ledger"]["head"], chain.head.as_str());
    assert_eq!(v["ledger"]["chain_ok"], true);
    let rows = v["leavers"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    let tom = rows.iter().find(|r| r["email"] == TOM).unwrap();
    assert_eq!(tom["name"], "Tom Becker");
    assert!(tom["exit_time"].as_str().is_some());
    assert_eq!(tom["sla"], "breached", "{tom}");
    assert!(tom["hours_to_closed"].as_f64().unwrap() > 14.0 * 24.0 - 1.0);
    let google = tom["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app"] == "google")
        .unwrap();
    assert!(google["first_removed"].as_str().is_some(), "{google}");
    assert!(google["first_removed"].as_str() <= google["last_removed"].as_str());
    // What is still open is the same as what `run` said was left, each
    // with its reason.
    for o in tom["open"].as_array().unwrap() {
        assert!(!o["why"].as_str().unwrap().is_empty(), "{o}");
        assert!(
            ["manual", "failed", "unconfirmed"].contains(&o["state"].as_str().unwrap()),
            "{o}"
        );
    }
    let ghost = rows
        .iter()
        .find(|r| r["email"] == "ghost@example.com")
        .unwrap();
    assert_eq!(ghost["sla"], "never_processed");
    assert_eq!(v["totals"]["never_processed"], 1);

    // Markdown and CSV carry the same rows and the head.
    let (code, md, _) = run(
        &e,
        &[
            "evidence",
            "report",
            "--since",
            &since,
            "--roster",
            roster2.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0);
    assert!(md.contains(&chain.head), "{md}");
    assert!(
        md.contains("| tom.becker@example.com | Tom Becker |"),
        "{md}"
    );
    assert!(md.contains("SOC 2 CC6.2"), "{md}");
    let (code, csv, _) = run(
        &e,
        &[
            "evidence",
            "report",
            "--since",
            &since,
            "--format",
            "csv",
            "--roster",
            roster2.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("\"email\",\"name\""), "{csv}");
    assert!(lines.iter().any(
        |l| l.starts_with("\"tom.becker@example.com\",\"Tom Becker\",\"left\"")
            && l.contains("\"google\"")
    ));
    assert!(lines.iter().any(|l| l.starts_with("\"ghost@example.com\"")));
    // A period before anything happened has no rows.
    let (code, v, _) = run_json(
        &e,
        &[
            "evidence",
            "report",
            "--since",
            "2020-01-01",
            "--until",
            "2020-12-31",
            "--format",
            "json",
        ],
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(v["leavers"].as_array().unwrap().len(), 0, "{v}");
    let (code, _, err) = run(&e, &["evidence", "report", "--format", "json"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--since"), "{err}");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_policy_cuts_sessions_first_and_the_rest_after_the_grace() {
    let sb = common::sandbox(common::quick(200)).await;
    let e = env(
        &sb.base_url,
        "\n[policy]\nmode = \"scheduled\"\ngrace_hours = 24\n\n[roster]\ntime_zone = \"Europe/Berlin\"\n",
    );
    let marcus = "marcus.reyes@example.com";
    let roster = e.dir.path().join("roster.jsonl");
    std::fs::write(
        &roster,
        format!(
            "{{\"email\":\"{marcus}\",\"status\":\"left\",\"exit_time\":\"{}\"}}\n",
            ago(2)
        ),
    )
    .unwrap();
    let roster_arg = roster.to_str().unwrap();
    let (_, v, err) = run_json(
        &e,
        &["run", "--due", "--roster", roster_arg, "--yes", "--json"],
    )
    .await;
    let m = leaver(&v, marcus);
    assert_eq!(m["action"], "run", "{m}\n{err}");
    assert_eq!(m["scope"], "cut_access");
    assert_eq!(v["mode"], "scheduled");
    let first = requested(&records(&e.data), marcus);
    assert!(!first.is_empty());
    assert!(
        first.iter().all(|g| cuts_access(g.kind)),
        "only sessions and tokens within the grace: {:?}",
        first.iter().map(|g| g.kind).collect::<Vec<_>>()
    );
    // Within the grace, again: nothing new.
    let n = records(&e.data).len();
    let (_, v, _) = run_json(
        &e,
        &["run", "--due", "--roster", roster_arg, "--yes", "--json"],
    )
    .await;
    let m = leaver(&v, marcus);
    assert_eq!(m["action"], "skip", "{m}");
    assert!(
        m["why"].as_str().unwrap().contains("end of the grace"),
        "{m}"
    );
    assert_eq!(records(&e.data).len(), n);

    // Past the grace (the roster says he left three days ago, as a date
    // in Berlin): the rest, account last.
    let date = (Utc::now() - chrono::Duration::days(3)).format("%Y-%m-%d");
    std::fs::write(
        &roster,
        format!("{{\"email\":\"{marcus}\",\"status\":\"left\",\"exit_time\":\"{date}\"}}\n"),
    )
    .unwrap();
    let (_, v, err) = run_json(
        &e,
        &["run", "--due", "--roster", roster_arg, "--yes", "--json"],
    )
    .await;
    let m = leaver(&v, marcus);
    assert_eq!(m["action"], "run", "{m}\n{err}");
    assert_eq!(m["scope"], "all");
    let all = requested(&records(&e.data), marcus);
    assert!(all.len() > first.len());
    assert!(all[first.len()..].iter().any(|g| !cuts_access(g.kind)));
    sb.stop().await;
}
