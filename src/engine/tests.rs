//! Engine tests on an in-memory connector: the engine's own logic (phases,
//! states, the verify loop, resume from the ledger). Drivers are tested over
//! HTTP against the sandbox elsewhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::*;
use crate::connector::{
    Connector, ConnectorError, Health, HealthState, Inventory, Lookup, RevokeOutcome,
};
use crate::evidence::{Ledger, LedgerEvent, verify_chain};
use crate::model::{Account, Grant, GrantKind, GrantState, Person, Revocation, Risk};

#[derive(Default)]
struct Fake {
    id: String,
    grants: Mutex<Vec<Grant>>,
    removed: Mutex<HashMap<String, Instant>>,
    consistency: Duration,
    lookup_fails: bool,
    ambiguous: bool,
    refuse: Vec<String>,
    acknowledge: Vec<String>,
    /// Kinds whose listing fails.
    failing_kinds: Mutex<Vec<GrantKind>>,
    /// Order of revoke calls with the time they started.
    calls: Mutex<Vec<(String, Instant)>>,
    /// Grant ids its confirming reads leave out of their answer.
    unanswered: Vec<String>,
    /// Confirming reads made.
    verifies: std::sync::atomic::AtomicUsize,
    /// Listings made (confirming reads and full reads).
    lists: std::sync::atomic::AtomicUsize,
    /// (held, holder): a grant that goes when its holder's removal does.
    held: Vec<(String, String)>,
    revoke_latency: Duration,
}

fn grant(conn: &str, id: &str, kind: GrantKind) -> Grant {
    Grant {
        connector: conn.into(),
        id: id.into(),
        kind,
        label: format!("label \u{1b}[31m{id}"),
        details: String::new(),
        risk: Risk::High,
        revocation: Revocation::Api,
        since: None,
        phase: None,
        after: Vec::new(),
    }
}

impl Fake {
    fn new(id: &str, grants: Vec<Grant>) -> Fake {
        Fake {
            id: id.into(),
            grants: Mutex::new(grants),
            consistency: Duration::from_millis(30),
            ..Fake::default()
        }
    }

    fn listed(&self) -> Vec<Grant> {
        let removed = self.removed.lock().unwrap();
        let gone = |id: &str| {
            removed
                .get(id)
                .is_some_and(|t| t.elapsed() >= self.consistency)
        };
        self.grants
            .lock()
            .unwrap()
            .iter()
            .filter(|g| {
                !gone(&g.id)
                    && !self
                        .held
                        .iter()
                        .any(|(held, holder)| *held == g.id && gone(holder))
            })
            .cloned()
            .collect()
    }
}

#[async_trait]
impl Connector for Fake {
    fn id(&self) -> &str {
        &self.id
    }
    fn display_name(&self) -> &str {
        "Fake"
    }
    async fn find_person(&self, person: &Person) -> Result<Lookup, ConnectorError> {
        if self.lookup_fails {
            return Err(ConnectorError::Timeout);
        }
        let account = Account {
            connector: self.id.clone(),
            id: "u1".into(),
            login: person.email.clone(),
            display_name: "Dana".into(),
            active: true,
            is_admin: false,
            last_login: None,
            facts: vec![],
            addresses: vec![],
            matched_by: None,
        };
        if self.ambiguous {
            return Ok(Lookup::Ambiguous {
                candidates: vec![account.clone(), account],
            });
        }
        Ok(Lookup::Found { account })
    }
    async fn verify(
        &self,
        account: &Account,
        grants: &[Grant],
    ) -> Vec<(String, Result<crate::connector::Presence, ConnectorError>)> {
        self.verifies
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let inv = self.list_grants(account).await;
        crate::connector::presence_from_inventory(&inv, grants)
            .into_iter()
            .filter(|(id, _)| !self.unanswered.contains(id))
            .collect()
    }
    async fn list_grants(&self, _account: &Account) -> Inventory {
        self.lists.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let failing = self.failing_kinds.lock().unwrap().clone();
        Inventory {
            grants: self
                .listed()
                .into_iter()
                .filter(|g| !failing.contains(&g.kind))
                .collect(),
            failed: failing
                .into_iter()
                .map(|k| (k, ConnectorError::Network("reset".into())))
                .collect(),
        }
    }
    async fn revoke(&self, _a: &Account, g: &Grant) -> Result<RevokeOutcome, ConnectorError> {
        self.calls
            .lock()
            .unwrap()
            .push((g.id.clone(), Instant::now()));
        tokio::time::sleep(self.revoke_latency).await;
        if self.refuse.contains(&g.id) {
            return Err(ConnectorError::Refused {
                code: "forbidden".into(),
                message: "not allowed".into(),
                manual: "ask a super admin".into(),
            });
        }
        if self.acknowledge.contains(&g.id) {
            return Ok(RevokeOutcome::Acknowledged);
        }
        let mut removed = self.removed.lock().unwrap();
        if removed.contains_key(&g.id) {
            return Ok(RevokeOutcome::AlreadyGone);
        }
        removed.insert(g.id.clone(), Instant::now());
        Ok(RevokeOutcome::Accepted)
    }
    fn health(&self) -> Health {
        Health {
            state: HealthState::Ok,
            detail: None,
            limit_info: None,
        }
    }
}

fn opts(deadline_ms: u64) -> EngineOptions {
    EngineOptions {
        operator: "tester".into(),
        verify_deadline: Duration::from_millis(deadline_ms),
        verify_initial_delay: Duration::from_millis(10),
    }
}

struct Setup {
    engine: Arc<Engine>,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    rx: mpsc::UnboundedReceiver<Event>,
}

fn setup(conns: Vec<Arc<dyn Connector>>, deadline_ms: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    let ledger = Ledger::open(&path, "tester").unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    Setup {
        engine: Engine::new(conns, ledger, opts(deadline_ms), tx),
        _dir: dir,
        path,
        rx,
    }
}

const DANA: &str = "Dana@Example.com";

fn standard() -> Vec<Grant> {
    vec![
        grant("g", "account", GrantKind::Account),
        grant("g", "group:a", GrantKind::Group),
        grant("g", "token:x", GrantKind::OauthGrant),
        grant("g", "asp:1", GrantKind::AppPassword),
    ]
}

#[tokio::test]
async fn discovery_sanitises_and_shows_failures_as_failures() {
    let ok = Arc::new(Fake::new("g", standard()));
    let mut bad = Fake::new("s", vec![]);
    bad.lookup_fails = true;
    let mut amb = Fake::new("sf", vec![]);
    amb.ambiguous = true;
    let s = setup(vec![ok, Arc::new(bad), Arc::new(amb)], 1000);
    let view = s.engine.discover(DANA).await.unwrap();
    assert_eq!(view.email, "dana@example.com");
    assert_eq!(view.grants.len(), 4);
    assert!(
        view.grants
            .iter()
            .all(|g| !g.grant.label.contains('\u{1b}'))
    );
    let st: Vec<_> = view.accounts.iter().map(|a| a.status.name()).collect();
    assert_eq!(st, ["found", "lookup_failed", "ambiguous"]);
    assert_eq!(view.summary.read_failures, 1);
    assert_eq!(view.summary.ambiguous, 1);
    assert_eq!(view.summary.exit_code(), 3);
    let recs = Ledger::read(&s.path).unwrap();
    assert_eq!(
        recs.iter()
            .filter(|r| r.event.name() == "discovered")
            .count(),
        3
    );
}

#[tokio::test]
async fn revoke_runs_phases_in_order_and_verifies_everything() {
    let fake = Arc::new(Fake::new("g", standard()));
    let mut s = setup(vec![fake.clone()], 5000);
    let summary = s.engine.revoke(DANA, &Selection::default()).await.unwrap();
    assert_eq!(summary.verified, 4, "{summary:?}");
    assert_eq!(summary.exit_code(), 0);
    let calls: Vec<String> = fake
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.0.clone())
        .collect();
    // Phase 1 (token, asp) before phase 2 (group) before phase 3 (account).
    assert_eq!(calls[2], "group:a");
    assert_eq!(calls[3], "account");
    let view = s.engine.case(DANA).unwrap();
    assert!(
        view.grants
            .iter()
            .all(|g| matches!(g.state, GrantState::Verified { .. }))
    );
    // The ledger holds the whole story, and its chain is intact.
    let names: Vec<&str> = Ledger::read(&s.path)
        .unwrap()
        .iter()
        .map(|r| r.event.name())
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    for n in [
        "discovered",
        "planned",
        "revoke_requested",
        "api_answer",
        "verified",
        "finished",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    assert!(verify_chain(&s.path).unwrap().ok());
    // Events: states pass through revoking and removed? before verified.
    let mut seen = Vec::new();
    while let Ok(e) = s.rx.try_recv() {
        if let Event::State { key, state, .. } = e
            && key == "g/token:x"
        {
            seen.push(state.name());
        }
    }
    assert_eq!(seen, ["revoking", "removed?", "verified"]);
}

#[tokio::test]
async fn a_phase_waits_for_the_previous_phase_answers() {
    let mut f = Fake::new("g", standard());
    f.revoke_latency = Duration::from_millis(40);
    let fake = Arc::new(f);
    let s = setup(vec![fake.clone()], 5000);
    s.engine.revoke(DANA, &Selection::default()).await.unwrap();
    let calls = fake.calls.lock().unwrap().clone();
    let t = |id: &str| calls.iter().find(|c| c.0 == id).unwrap().1;
    // Phase 1 requests ran concurrently; phase 2 began after both answered.
    assert!(t("asp:1").duration_since(t("token:x")) < Duration::from_millis(40));
    assert!(t("group:a").duration_since(t("token:x")) >= Duration::from_millis(40));
}

#[tokio::test]
async fn each_app_moves_through_its_own_phases() {
    // A slow app (each request takes 400 ms) and a quick one: the quick
    // app's account is closed while the slow one is still in phase 1.
    let of = |conn: &str| -> Vec<Grant> {
        standard()
            .into_iter()
            .map(|g| Grant {
                connector: conn.into(),
                ..g
            })
            .collect()
    };
    let mut slow = Fake::new("slow", of("slow"));
    slow.revoke_latency = Duration::from_millis(400);
    let slow = Arc::new(slow);
    let quick = Arc::new(Fake::new("quick", of("quick")));
    let s = setup(vec![slow.clone(), quick.clone()], 5000);
    let summary = s.engine.revoke(DANA, &Selection::default()).await.unwrap();
    assert_eq!(summary.verified, 8, "{summary:?}");
    let slow_calls = slow.calls.lock().unwrap().clone();
    let quick_calls = quick.calls.lock().unwrap().clone();
    let t = |calls: &[(String, Instant)], id: &str| calls.iter().find(|c| c.0 == id).unwrap().1;
    let slow_start = t(&slow_calls, "token:x");
    assert!(
        t(&quick_calls, "account").duration_since(slow_start) < Duration::from_millis(300),
        "the quick app's closure waited for the slow app's phase 1"
    );
    // Inside each app the order holds.
    assert!(t(&slow_calls, "group:a") >= slow_start + Duration::from_millis(400));
    assert!(t(&slow_calls, "account") >= t(&slow_calls, "group:a") + Duration::from_millis(400));
    assert!(t(&quick_calls, "account") >= t(&quick_calls, "group:a"));
}

#[tokio::test]
async fn refused_and_stuck_grants_end_failed_and_unconfirmed() {
    let mut f = Fake::new("g", standard());
    f.refuse = vec!["group:a".into()];
    f.consistency = Duration::from_secs(3600);
    let s = setup(vec![Arc::new(f)], 150);
    let summary = s.engine.revoke(DANA, &Selection::default()).await.unwrap();
    assert_eq!(summary.failed, 1);
    assert_eq!(summary.unconfirmed, 3);
    assert_eq!(summary.exit_code(), 3);
    let view = s.engine.case(DANA).unwrap();
    let group = view.grant("g/group:a").unwrap();
    assert!(group.state.reason().unwrap().contains("ask a super admin"));
    let recs = Ledger::read(&s.path).unwrap();
    assert_eq!(
        recs.iter()
            .filter(|r| r.event.name() == "escalated")
            .count(),
        3
    );
}

/// A read that gives no answer for a grant is a failed read: the grant is
/// read again on its schedule (not at once, over and over) and ends
/// unconfirmed, never verified.
#[tokio::test]
async fn a_grant_a_read_gives_no_answer_for_is_a_failed_read() {
    let mut f = Fake::new("g", standard());
    f.unanswered = vec!["group:a".into()];
    let f = Arc::new(f);
    let s = setup(vec![f.clone()], 400);
    let summary = s.engine.revoke(DANA, &Selection::default()).await.unwrap();
    assert_eq!(summary.unconfirmed, 1, "{summary:?}");
    let view = s.engine.case(DANA).unwrap();
    let group = view.grant("g/group:a").unwrap();
    assert!(
        group.state.reason().unwrap().contains("gave no answer"),
        "{:?}",
        group.state
    );
    // Spaced like any other read in 400 ms: a handful, not hundreds.
    let reads = f.verifies.load(std::sync::atomic::Ordering::SeqCst);
    assert!(reads < 40, "{reads} reads");
}

/// A Google-style admin role held through a group (manual, `after` the
/// group), and the group.
fn role_through_group() -> Vec<Grant> {
    let mut role = Grant {
        revocation: Revocation::Manual {
            instructions: "held through group:a".into(),
        },
        ..grant("g", "role:r", GrantKind::AdminRole)
    };
    role.after = vec!["group:a".into()];
    vec![grant("g", "group:a", GrantKind::Group), role]
}

#[tokio::test]
async fn a_role_held_through_a_removed_group_is_confirmed_by_reading_it_alone() {
    let mut f = Fake::new("g", role_through_group());
    f.held = vec![("role:r".into(), "group:a".into())];
    let f = Arc::new(f);
    let s = setup(vec![f.clone()], 2_000);
    let summary = s.engine.revoke(DANA, &Selection::default()).await.unwrap();
    assert_eq!(summary.unconfirmed, 0, "{summary:?}");
    let view = s.engine.case(DANA).unwrap();
    assert!(matches!(
        view.grant("g/role:r").unwrap().state,
        GrantState::Verified { .. }
    ));
    // Discovery's one listing; every other a confirming read.
    let lists = f.lists.load(std::sync::atomic::Ordering::SeqCst);
    let verifies = f.verifies.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        lists - verifies,
        1,
        "{lists} listings, {verifies} confirming"
    );
    let events = Ledger::read(&s.path).unwrap();
    assert!(events.iter().any(|r| matches!(
        &r.event,
        LedgerEvent::Verified { key, how } if key == "g/role:r" && how.contains("what held it")
    )));
}

#[tokio::test]
async fn a_role_that_outlives_what_held_it_brings_a_full_read() {
    // Nothing ends the role with the group: it is held some other way now.
    let f = Arc::new(Fake::new("g", role_through_group()));
    let s = setup(vec![f.clone()], 2_000);
    s.engine.revoke(DANA, &Selection::default()).await.unwrap();
    let view = s.engine.case(DANA).unwrap();
    assert_eq!(view.grant("g/role:r").unwrap().state, GrantState::Manual);
    let lists = f.lists.load(std::sync::atomic::Ordering::SeqCst);
    let verifies = f.verifies.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        lists - verifies,
        2,
        "{lists} listings, {verifies} confirming"
    );
}

#[tokio::test]
async fn a_failed_read_never_counts_as_absence() {
    let f = Arc::new(Fake::new(
        "g",
        vec![grant("g", "token:x", GrantKind::OauthGrant)],
    ));
    let s = setup(vec![f.clone()], 200);
    s.engine.discover(DANA).await.unwrap();
    // From now on the token listing fails: the removal cannot be confirmed.
    f.failing_kinds.lock().unwrap().push(GrantKind::OauthGrant);
    let summary = s.engine.revoke(DANA, &Selection::default()).await.unwrap();
    assert_eq!(summary.unconfirmed, 1, "{summary:?}");
    let view = s.engine.case(DANA).unwrap();
    let reason = view
        .grant("g/token:x")
        .unwrap()
        .state
        .reason()
        .unwrap()
        .to_string();
    assert!(reason.contains("last read failed"), "{reason}");
}

#[tokio::test]
async fn acknowledged_and_manual_grants() {
    let mut grants = standard();
    grants.push(Grant {
        revocation: Revocation::Manual {
            instructions: "transfer Drive files".into(),
        },
        ..grant("g", "drive", GrantKind::OwnedApp)
    });
    grants.push(grant("g", "signout", GrantKind::Session));
    let mut f = Fake::new("g", grants);
    f.acknowledge = vec!["signout".into()];
    let s = setup(vec![Arc::new(f)], 2000);
    let summary = s.engine.revoke(DANA, &Selection::default()).await.unwrap();
    assert_eq!(summary.acknowledged, 1);
    assert_eq!(summary.manual, 1);
    assert_eq!(summary.exit_code(), 3);
    s.engine
        .manual_done(DANA, "g/drive", "moved to manager")
        .await
        .unwrap();
    let view = s.engine.case(DANA).unwrap();
    assert_eq!(view.summary.acknowledged, 2);
    assert!(s.engine.manual_done(DANA, "g/token:x", "x").await.is_err());
}

#[tokio::test]
async fn selection_limits_the_plan() {
    let f = Arc::new(Fake::new("g", standard()));
    let s = setup(vec![f.clone()], 2000);
    s.engine.discover(DANA).await.unwrap();
    let sel = Selection {
        kinds: vec![GrantKind::OauthGrant],
        ..Selection::default()
    };
    let plan = s.engine.plan(DANA, &sel).unwrap();
    assert_eq!(plan.len(), 1);
    let summary = s.engine.revoke(DANA, &sel).await.unwrap();
    assert_eq!(summary.verified, 1);
    assert_eq!(summary.exit_code(), 0);
    assert_eq!(f.calls.lock().unwrap().len(), 1);
    let bad = Selection {
        apps: vec!["nope".into()],
        ..Selection::default()
    };
    assert!(matches!(
        s.engine.plan(DANA, &bad),
        Err(EngineError::Invalid(_))
    ));
}

#[tokio::test]
async fn resume_rebuilds_the_case_from_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    let f = Arc::new(Fake::new("g", standard()));
    {
        // A run that stops right after two requests were recorded and one sent.
        let ledger = Ledger::open(&path, "tester").unwrap();
        for id in ["token:x", "asp:1"] {
            ledger
                .append(
                    "dana@example.com",
                    LedgerEvent::RevokeRequested {
                        key: format!("g/{id}"),
                        phase: 1,
                        grant: grant("g", id, GrantKind::OauthGrant),
                    },
                )
                .unwrap();
        }
        f.removed
            .lock()
            .unwrap()
            .insert("token:x".into(), Instant::now() - Duration::from_secs(60));
        // A torn line from the crash.
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"{\"seq\":3,\"ts\"").unwrap();
    }
    let ledger = Ledger::open(&path, "tester").unwrap();
    assert_eq!(ledger.torn_tails().len(), 1);
    let (tx, _rx) = mpsc::unbounded_channel();
    let engine = Engine::new(vec![f.clone()], ledger, opts(3000), tx);
    let view = engine.discover(DANA).await.unwrap();
    // Gone already: verified by this fresh read. Still there: pending.
    assert!(matches!(
        view.grant("g/token:x").unwrap().state,
        GrantState::Verified { .. }
    ));
    assert_eq!(view.grant("g/asp:1").unwrap().state, GrantState::Revoking);
    let summary = engine.revoke(DANA, &Selection::default()).await.unwrap();
    assert_eq!(summary.exit_code(), 0, "{summary:?}");
    assert_eq!(summary.verified, 4);
    // The token was not requested again.
    assert!(f.calls.lock().unwrap().iter().all(|c| c.0 != "token:x"));
    let rep = verify_chain(&path).unwrap();
    assert!(rep.ok(), "{:?}", rep.problems);
    let names: Vec<String> = Ledger::read(&path)
        .unwrap()
        .iter()
        .map(|r| r.event.name().to_string())
        .collect();
    assert!(names.contains(&"resumed".to_string()));
    assert!(names.contains(&"torn_line_set_aside".to_string()));
}

#[tokio::test]
async fn refresh_confirms_removals_and_shows_new_grants() {
    let f = Arc::new(Fake::new(
        "g",
        vec![grant("g", "token:x", GrantKind::OauthGrant)],
    ));
    let s = setup(vec![f.clone()], 2000);
    s.engine.discover(DANA).await.unwrap();
    f.grants
        .lock()
        .unwrap()
        .push(grant("g", "token:y", GrantKind::OauthGrant));
    let v = s.engine.refresh(DANA, Some("g")).await.unwrap();
    assert_eq!(v.grants.len(), 2);
    assert!(v.grants.iter().all(|g| g.state == GrantState::Live));
    assert!(s.engine.refresh(DANA, Some("zz")).await.is_err());
}

#[tokio::test]
async fn nothing_is_shown_closed_that_the_ledger_did_not_record() {
    let f = Arc::new(Fake::new(
        "g",
        vec![grant("g", "token:x", GrantKind::OauthGrant)],
    ));
    let s = setup(vec![f.clone()], 2000);
    s.engine.discover(DANA).await.unwrap();
    // The token goes away, but the ledger can no longer be written.
    f.grants.lock().unwrap().clear();
    std::fs::write(&s.path, "").unwrap();
    assert!(s.engine.refresh(DANA, Some("g")).await.is_err());
    let v = s.engine.case(DANA).unwrap();
    assert_eq!(
        v.grants[0].state,
        GrantState::Live,
        "a closure that is not in the evidence is not shown"
    );
    assert!(!v.grants[0].vanished);
}

#[test]
fn a_read_older_than_a_confirmation_does_not_bring_the_grant_back() {
    use super::case::Case;
    let t = |s: i64| chrono::DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap();
    let g = grant("g", "token:x", GrantKind::OauthGrant);
    let mut case = Case::new(Person::new(DANA));
    case.apply_read("g", vec![g.clone()], &[], t(0), t(0));
    let e = case.entry_mut("g/token:x").unwrap();
    e.state = GrantState::Verified { at: t(10) };
    e.since = t(10);
    // Started at 9, answered at 11, still listing it: older than the
    // confirmation at 10.
    let changes = case.apply_read("g", vec![g.clone()], &[], t(9), t(11));
    assert!(changes.is_empty());
    assert!(matches!(
        case.entry("g/token:x").unwrap().state,
        GrantState::Verified { .. }
    ));
    // A read that started after it and lists it again: live again.
    let changes = case.apply_read("g", vec![g], &[], t(12), t(13));
    assert_eq!(changes.len(), 1);
    assert_eq!(case.entry("g/token:x").unwrap().state, GrantState::Live);
}
