//! End to end: the real binary in tmux. `offboard demo`, select the urgent
//! termination, revoke everything, wait until every grant is verified or
//! acknowledged, export the report, quit, and check the terminal is back.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

struct Session {
    name: String,
}

impl Session {
    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").args(args).output().expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn capture(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", &self.name])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.name];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    fn literal(&self, text: &str) {
        self.tmux(&["send-keys", "-t", &self.name, "-l", text]);
    }

    /// Polls the screen until `pred` holds, or fails after `timeout`.
    fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.capture();
            if pred(&screen) {
                return screen;
            }
            if start.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for {what}; screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .output();
    }
}

fn tmux_available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn reports(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "md"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn demo_revoke_all_export_quit_in_tmux() {
    if !tmux_available() {
        eprintln!("SKIPPED: tmux is not installed; the console end-to-end test needs it");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_offboard");
    let name = format!("offboard-e2e-{}", std::process::id());
    let script = format!(
        "env OFFBOARD_DATA='{}' LANG=C.UTF-8 TERM=xterm-256color NO_COLOR= '{bin}' demo --consistency-ms 200; \
         echo \"EXIT=$?\"; stty -a; sleep 120",
        data.path().display()
    );
    let status = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-x",
            "100",
            "-y",
            "30",
            "-s",
            &name,
            "sh",
            "-c",
            &script,
        ])
        .status()
        .expect("tmux starts");
    assert!(status.success());
    let s = Session { name };

    s.wait_for("the queue", Duration::from_secs(20), |t| {
        t.contains("Leavers (7)") && t.contains("marcus.reyes@example.com")
    });
    // Select the urgent termination: it is discovered next.
    s.keys(&["j"]);
    s.wait_for("Marcus discovered", Duration::from_secs(30), |t| {
        let lines: Vec<&str> = t.lines().collect();
        t.contains("Marcus Reyes <marcus.reyes@example.com>")
            && lines
                .iter()
                .position(|l| {
                    l.contains("> marcus.reyes@example.com")
                        || l.contains("▶ marcus.reyes@example.com")
                })
                .is_some_and(|i| lines.get(i + 1).is_some_and(|n| n.contains(" live")))
    });
    s.keys(&["R"]);
    s.wait_for("the revoke-all dialog", Duration::from_secs(5), |t| {
        t.contains("Type the leaver's email")
    });
    s.literal("marcus.reyes@example.com");
    s.keys(&["Enter"]);
    s.wait_for("the revoke to finish", Duration::from_secs(90), |t| {
        t.contains("marcus.reyes@example.com: finished (")
    });
    // Manual steps (e.g. Slack apps the leaver owns) are ticked off with a
    // note for the ledger: Enter on the step, type the note, Enter.
    // Manifest steps (ids `manual:…`) stay matched by the filter once
    // ticked, so only a selection still in state manual is opened.
    let steps = [
        ("slack", "Slack", "manual"),
        ("salesforce", "Salesforce", "manual"),
        ("zoom", "Zoom", "manual:sessions"),
        ("zoom", "Zoom", "manual:license"),
        ("zoom", "Zoom", "manual:data_transfer"),
        ("miro", "Miro", "manual:owned_app"),
        ("miro", "Miro", "manual:owned_boards"),
        ("okta", "Okta", "manual"),
        ("microsoft-graph", "Microsoft 365", "manual"),
        ("github", "GitHub", "manual"),
        ("google", "Google Workspace", "hand-over"),
        ("google", "Google Workspace", "manual"),
    ];
    for _ in 0..48 {
        let screen = s.capture();
        if screen.contains("all verified") && screen.contains(" 0 left ") {
            break;
        }
        if !screen.contains(" manual ") {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        for (app, name, filter) in steps {
            s.keys(&[":"]);
            s.literal(&format!("app {app}"));
            s.keys(&["Enter", "/"]);
            s.literal(filter);
            s.keys(&["Enter"]);
            let t = s.wait_for("the drill-down", Duration::from_secs(5), |t| {
                t.lines().any(|l| {
                    l.contains(&format!("┌ {name} · ")) && l.contains(&format!("/{filter} "))
                })
            });
            // (Other apps' long labels cut the selection line short.)
            let selected_manual = filter == "manual"
                || t.lines()
                    .any(|l| l.contains("│▶") && l.contains("risk · manu"));
            if t.contains("no grant matches the filter")
                || t.contains(&format!("(0) /{filter}"))
                || !selected_manual
            {
                s.keys(&["Escape"]);
                s.keys(&["Escape"]);
                continue;
            }
            s.keys(&["Enter"]);
            s.wait_for("the manual-step dialog", Duration::from_secs(5), |t| {
                t.contains("Manual step done")
            });
            s.literal("done by the e2e test");
            s.keys(&["Enter"]);
            s.wait_for("the note recorded", Duration::from_secs(10), |t| {
                t.contains("marked done")
            });
            s.keys(&["Escape"]);
            s.keys(&["Escape"]);
            break;
        }
    }
    let screen = s.wait_for(
        "every grant verified or acknowledged",
        Duration::from_secs(30),
        |t| t.contains("all verified") && t.contains(" 0 left "),
    );
    assert!(screen.contains("verified"), "{screen}");

    // Export the evidence report.
    s.keys(&[":"]);
    s.literal("export");
    s.keys(&["Enter"]);
    let shown = s.wait_for("the export dialog", Duration::from_secs(10), |t| {
        t.contains("Evidence report written")
    });
    let found = reports(&data.path().join("reports"));
    assert_eq!(found.len(), 1, "{found:?}");
    // The whole path is on screen (wrapped inside the dialog).
    let inside: String = shown
        .lines()
        .filter_map(|l| {
            let a = l.find('│')?;
            let b = l.rfind('│')?;
            (b > a).then(|| l[a + '│'.len_utf8()..b].trim().to_string())
        })
        .collect();
    assert!(inside.contains(&found[0].display().to_string()), "{shown}");
    s.keys(&["Escape"]);
    let report = std::fs::read_to_string(&found[0]).unwrap();
    assert!(report.contains("marcus.reyes@example.com"));

    // Quit: the terminal is restored.
    s.keys(&["q"]);
    let screen = s.wait_for("the program to exit", Duration::from_secs(10), |t| {
        t.contains("EXIT=")
    });
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(
        !screen.contains("Leavers ("),
        "the console is gone:\n{screen}"
    );
    let alt = s.tmux(&["display-message", "-p", "-t", &s.name, "#{alternate_on}"]);
    assert_eq!(alt.trim(), "0", "alternate screen left");
    let screen = s.wait_for("stty output", Duration::from_secs(5), |t| {
        t.contains("icanon")
    });
    let flags: Vec<&str> = screen.split_whitespace().collect();
    assert!(
        flags.contains(&"icanon"),
        "canonical mode back on:\n{screen}"
    );
    assert!(flags.contains(&"echo"), "echo back on:\n{screen}");
    assert!(
        !flags.contains(&"-icanon") && !flags.contains(&"-echo"),
        "{screen}"
    );
    // Nothing but the log file received the console's logging.
    let log = std::fs::read_to_string(data.path().join("offboard.log")).unwrap_or_default();
    assert!(log.contains("console closed"), "{log}");
}

/// The pid of the console started with this data directory.
fn console_pid(bin: &str, data: &Path) -> Option<u32> {
    let want = format!("OFFBOARD_DATA={}", data.display());
    let bin = std::fs::canonicalize(bin).ok()?;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let exe = std::fs::read_link(e.path().join("exe")).ok();
        if exe.as_deref() != Some(bin.as_path()) {
            continue;
        }
        let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
        if env.split(|b| *b == 0).any(|v| v == want.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

#[test]
fn sigterm_restores_the_terminal_and_exits() {
    if !tmux_available() {
        eprintln!("SKIPPED: tmux is not installed; the console end-to-end test needs it");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_offboard");
    let name = format!("offboard-e2e-term-{}", std::process::id());
    let script = format!(
        "env OFFBOARD_DATA='{}' LANG=C TERM=xterm NO_COLOR=1 '{bin}' demo --consistency-ms 200; \
         echo \"EXIT=$?\"; stty -a; sleep 120",
        data.path().display()
    );
    let status = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-x",
            "80",
            "-y",
            "24",
            "-s",
            &name,
            "sh",
            "-c",
            &script,
        ])
        .status()
        .expect("tmux starts");
    assert!(status.success());
    let s = Session { name };
    let screen = s.wait_for("the console at 80x24", Duration::from_secs(20), |t| {
        t.contains("Leavers (7)")
    });
    assert!(screen.is_ascii(), "LANG=C draws ASCII only:\n{screen}");
    let alt = s.tmux(&["display-message", "-p", "-t", &s.name, "#{alternate_on}"]);
    assert_eq!(alt.trim(), "1", "the console runs on the alternate screen");
    let pid = console_pid(bin, data.path()).expect("the console's pid");
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let screen = s.wait_for("the program to exit", Duration::from_secs(10), |t| {
        t.contains("EXIT=")
    });
    assert!(
        !screen.contains("Leavers ("),
        "the console is gone:\n{screen}"
    );
    let alt = s.tmux(&["display-message", "-p", "-t", &s.name, "#{alternate_on}"]);
    assert_eq!(alt.trim(), "0", "alternate screen left");
    let screen = s.wait_for("stty output", Duration::from_secs(5), |t| {
        t.contains("icanon")
    });
    let flags: Vec<&str> = screen.split_whitespace().collect();
    assert!(
        flags.contains(&"icanon") && flags.contains(&"echo"),
        "{screen}"
    );
    assert!(
        !flags.contains(&"-icanon") && !flags.contains(&"-echo"),
        "{screen}"
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the process is gone"
    );
}

fn start_demo(name: &str, data: &Path, consistency_ms: u64) -> Session {
    let bin = env!("CARGO_BIN_EXE_offboard");
    let script = format!(
        "env OFFBOARD_DATA='{}' LANG=C.UTF-8 TERM=xterm-256color NO_COLOR=1 '{bin}' demo --consistency-ms {consistency_ms}; \
         echo \"EXIT=$?\"; sleep 120",
        data.display()
    );
    let status = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-x",
            "80",
            "-y",
            "24",
            "-s",
            name,
            "sh",
            "-c",
            &script,
        ])
        .status()
        .expect("tmux starts");
    assert!(status.success());
    Session {
        name: name.to_string(),
    }
}

/// At 80x24 in tmux: a window shrunk to 8 rows says it is too small and
/// keeps running, growing it brings the console back; `q` during a revoke
/// asks, and the next start resumes the revoke.
#[test]
fn small_window_quit_during_revoke_and_resume_in_tmux() {
    if !tmux_available() {
        eprintln!("SKIPPED: tmux is not installed; the console end-to-end test needs it");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let name = format!("offboard-e2e-small-{}", std::process::id());
    let s = start_demo(&name, data.path(), 6000);
    s.wait_for("the queue", Duration::from_secs(20), |t| {
        t.contains("Leavers (7)")
    });
    for (w, h) in [("30", "8"), ("80", "6"), ("12", "3")] {
        s.tmux(&["resize-window", "-t", &s.name, "-x", w, "-y", h]);
        let want = format!("terminal too small ({w} x {h},");
        s.wait_for("the too-small message", Duration::from_secs(10), |t| {
            t.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .contains(&want)
        });
    }
    s.tmux(&["resize-window", "-t", &s.name, "-x", "80", "-y", "24"]);
    s.wait_for("the console back", Duration::from_secs(10), |t| {
        t.contains("Leavers (7)") && !t.contains("too small")
    });
    s.keys(&["j"]);
    let shown = s.wait_for("Marcus discovered", Duration::from_secs(30), |t| {
        let lines: Vec<&str> = t.lines().collect();
        t.contains("Marcus Reyes <marcus.reyes@example.com>")
            && lines
                .iter()
                .position(|l| l.contains("▶ marcus.reyes@example.com"))
                .is_some_and(|i| lines.get(i + 1).is_some_and(|n| n.contains(" live")))
    });
    // NO_COLOR at 80 columns: every kind Marcus has is on screen, each
    // count with its state letter.
    for cell in [
        "sess ", "oauth ", "apppw ", "admin ", "acct ", "codes ", "deleg ", "group ", "lic ",
        "device ", "owned ",
    ] {
        let at = shown
            .find(cell)
            .unwrap_or_else(|| panic!("{cell:?} missing:\n{shown}"));
        let count: String = shown[at + cell.len()..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        assert!(
            count.len() >= 2
                && count[..count.len() - 1].chars().all(|c| c.is_ascii_digit())
                && "LRVUFMA".contains(&count[count.len() - 1..]),
            "{cell}{count}:\n{shown}"
        );
    }
    s.keys(&["R"]);
    s.wait_for("the revoke-all dialog", Duration::from_secs(5), |t| {
        t.contains("Type the leaver's email")
    });
    s.literal("marcus.reyes@example.com");
    s.keys(&["Enter"]);
    s.wait_for("removals under way", Duration::from_secs(30), |t| {
        t.contains("removing")
    });
    s.keys(&["q"]);
    let asked = s.wait_for("the quit dialog", Duration::from_secs(5), |t| {
        t.contains("Quit while a revoke runs?")
    });
    let words = asked.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("resumes on the next start"), "{asked}");
    s.keys(&["Enter"]);
    s.wait_for("still running after Stay", Duration::from_secs(5), |t| {
        !t.contains("Quit while") && t.contains("Leavers (7)")
    });
    s.keys(&["q"]);
    s.wait_for("the quit dialog again", Duration::from_secs(5), |t| {
        t.contains("Quit while a revoke runs?")
    });
    s.keys(&["Right", "Enter"]);
    s.wait_for("the program to exit", Duration::from_secs(10), |t| {
        t.contains("EXIT=0")
    });
    drop(s);

    // The next start resumes Marcus's revoke.
    let s = start_demo(&format!("{name}-2"), data.path(), 200);
    s.wait_for(
        "the resumed revoke to finish",
        Duration::from_secs(90),
        |t| t.contains("marcus.reyes@example.com: finished ("),
    );
    let records = offboard::evidence::Ledger::read(&data.path().join("ledger.jsonl")).unwrap();
    assert!(offboard::engine::interrupted_plans(&records).is_empty());
    let last_plan = records
        .iter()
        .rposition(|r| r.event.name() == "planned")
        .unwrap();
    let names: Vec<&str> = records[last_plan..]
        .iter()
        .map(|r| r.event.name())
        .collect();
    assert_eq!(names.last(), Some(&"finished"), "{names:?}");
    assert!(
        records[..last_plan]
            .iter()
            .any(|r| r.event.name() == "resumed"),
        "the second start resumed the case"
    );
}
