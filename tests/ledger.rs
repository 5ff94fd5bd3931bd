//! The ledger's hash chain detects every kind of edit, names the line, and
//! `offboard evidence verify` reports it with exit code 1 and the line at fault.

use std::path::Path;
use std::process::Command;

use offboard::evidence::{Ledger, LedgerEvent, verify_chain};
use offboard::model::{Grant, GrantKind, Revocation, Risk};

fn grant(id: &str) -> Grant {
    Grant {
        connector: "google".into(),
        id: id.into(),
        kind: GrantKind::OauthGrant,
        label: format!("App {id}"),
        details: String::new(),
        risk: Risk::High,
        revocation: Revocation::Api,
        since: None,
        phase: None,
        after: Vec::new(),
    }
}

/// A ledger of 5 records.
fn ledger(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("ledger.jsonl");
    let l = Ledger::open(&path, "op@example.com").unwrap();
    for i in 0..5 {
        l.append(
            "dana@example.com",
            LedgerEvent::RevokeRequested {
                key: format!("google/t{i}"),
                phase: 1,
                grant: grant(&format!("t{i}")),
            },
        )
        .unwrap();
    }
    path
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn evidence_verify(path: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["evidence", "verify", "--ledger"])
        .arg(path)
        .env("OFFBOARD_DATA", path.parent().unwrap())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn intact_chain_is_ok() {
    let dir = tempfile::tempdir().unwrap();
    let p = ledger(dir.path());
    let rep = verify_chain(&p).unwrap();
    assert!(rep.ok(), "{:?}", rep.problems);
    assert_eq!(rep.records, 5);
    let (code, out) = evidence_verify(&p);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("OK: 5 records"), "{out}");
    // The head is the SHA-256 of the last line, printed to be kept elsewhere.
    let text = std::fs::read_to_string(&p).unwrap();
    let last = text.lines().last().unwrap();
    let head = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(last.as_bytes()));
    assert_eq!(rep.head, head);
    assert!(out.contains(&format!("head: {head}")), "{out}");
}

#[test]
fn an_edited_last_line_changes_the_head() {
    // The chain cannot see an edit of its last line (no later `prev` covers
    // it); the head kept outside the ledger does.
    let dir = tempfile::tempdir().unwrap();
    let p = ledger(dir.path());
    let before = verify_chain(&p).unwrap().head;
    let mut lines: Vec<String> = std::fs::read_to_string(&p)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let last = lines.pop().unwrap();
    lines.push(last.replacen("\"operator\"", "\"operator\" ", 1));
    write(&p, &lines);
    let after = verify_chain(&p).unwrap();
    assert_ne!(after.head, before);
}

#[test]
fn edited_line_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let p = ledger(dir.path());
    let mut l = lines(&p);
    l[2] = l[2].replace("App t2", "App t9");
    write(&p, &l);
    let rep = verify_chain(&p).unwrap();
    assert_eq!(rep.problems.len(), 1, "{:?}", rep.problems);
    assert_eq!(rep.problems[0].line, 4);
    assert!(rep.problems[0].what.contains("line 3 was edited"));
    let (code, out) = evidence_verify(&p);
    assert_eq!(code, 1);
    assert!(out.contains("line 4:"), "{out}");
}

#[test]
fn edited_last_line_is_found_by_its_own_checks() {
    // The last line has no successor whose `prev` could catch an edit of
    // its content, but an edit of its own `seq` or `prev` is caught.
    let dir = tempfile::tempdir().unwrap();
    let p = ledger(dir.path());
    let mut l = lines(&p);
    l[4] = l[4].replace("\"seq\":5", "\"seq\":7");
    write(&p, &l);
    let rep = verify_chain(&p).unwrap();
    assert_eq!(rep.problems[0].line, 5);
}

#[test]
fn deleted_line_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let p = ledger(dir.path());
    let mut l = lines(&p);
    l.remove(1);
    write(&p, &l);
    let rep = verify_chain(&p).unwrap();
    assert!(!rep.ok());
    assert_eq!(rep.problems[0].line, 2);
    assert!(
        rep.problems
            .iter()
            .any(|x| x.what.contains("seq 3 where 2 was expected"))
    );
    assert!(
        rep.problems
            .iter()
            .any(|x| x.what.contains("`prev` does not match"))
    );
}

#[test]
fn inserted_line_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let p = ledger(dir.path());
    let mut l = lines(&p);
    let forged = l[1].replace("t1", "t7");
    l.insert(2, forged);
    write(&p, &l);
    let rep = verify_chain(&p).unwrap();
    assert!(!rep.ok());
    assert_eq!(rep.problems[0].line, 3);
}

#[test]
fn reordered_lines_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let p = ledger(dir.path());
    let mut l = lines(&p);
    l.swap(1, 3);
    write(&p, &l);
    let rep = verify_chain(&p).unwrap();
    assert!(!rep.ok());
    assert_eq!(rep.problems[0].line, 2);
    assert!(rep.problems.iter().any(|x| x.line == 4));
}

#[test]
fn first_line_replaced_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let p = ledger(dir.path());
    let mut l = lines(&p);
    l.remove(0);
    write(&p, &l);
    let rep = verify_chain(&p).unwrap();
    assert_eq!(rep.problems[0].line, 1);
}

#[test]
fn garbage_line_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let p = ledger(dir.path());
    let mut l = lines(&p);
    l[2] = "not json at all".into();
    write(&p, &l);
    let rep = verify_chain(&p).unwrap();
    assert!(
        rep.problems
            .iter()
            .any(|x| x.line == 3 && x.what.contains("not valid JSON"))
    );
    assert!(rep.problems.iter().any(|x| x.line == 4));
}

#[test]
fn torn_last_line_is_reported_then_set_aside_by_the_next_writer() {
    let dir = tempfile::tempdir().unwrap();
    let p = ledger(dir.path());
    let mut bytes = std::fs::read(&p).unwrap();
    bytes.extend_from_slice(b"{\"seq\":6,\"ts\":\"20");
    std::fs::write(&p, &bytes).unwrap();
    let rep = verify_chain(&p).unwrap();
    assert_eq!(rep.problems.len(), 1);
    assert_eq!(rep.problems[0].line, 6);
    assert!(rep.problems[0].what.contains("incomplete last line"));
    let (code, out) = evidence_verify(&p);
    assert_eq!(code, 1, "{out}");
    // The next writer cuts it and keeps its bytes in a record.
    let l = Ledger::open(&p, "op").unwrap();
    assert_eq!(l.torn_tails().len(), 1);
    drop(l);
    let (code, out) = evidence_verify(&p);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 torn line(s)"), "{out}");
}

#[test]
fn two_processes_appending_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ledger.jsonl");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                // Separate handles behave like separate processes: only the
                // file lock serialises them.
                let l = Ledger::open(&p, &format!("op{t}")).unwrap();
                for i in 0..10 {
                    l.append(
                        "x@example.com",
                        LedgerEvent::Reappeared {
                            key: format!("{t}/{i}"),
                        },
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let rep = verify_chain(&p).unwrap();
    assert!(rep.ok(), "{:?}", rep.problems);
    assert_eq!(rep.records, 40);
}

#[test]
fn the_data_directory_and_ledger_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh-data");
    // The binary creates the data directory (and its log) on first use.
    let out = Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["evidence", "verify"])
        .env("OFFBOARD_DATA", &data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "no ledger yet");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("offboard.log")), 0o600);
    let p = ledger(&data);
    assert_eq!(mode(&p), 0o600);
}
