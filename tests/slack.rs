//! The Slack driver against the Slack sandbox, over HTTP.

mod common;

use common::driver::{context, found, of_kind, presence, wait_absent};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use offboard::apps::build;
use offboard::apps::slack::driver::SlackDriver;
use offboard::apps::slack::twin as sb_slack;
use offboard::connector::manifest::{self, ConnectorConfig, ResolvedConnector};
use offboard::connector::{
    BuildContext, Connector, ConnectorError, Lookup, Presence, RevokeOutcome,
};
use offboard::model::{Account, Grant, GrantKind, Person};
use offboard::sandbox::Running;

/// `settings.tiers` with every tier at `per_minute`, `burst` at once.
fn tiers(per_minute: i64, burst: i64) -> toml::Value {
    let mut t = toml::Table::new();
    for name in [
        "tier1",
        "tier2",
        "tier3",
        "tier4",
        "special",
        "scim_read",
        "scim_write",
    ] {
        let mut rule = toml::Table::new();
        rule.insert("per_minute".into(), toml::Value::Integer(per_minute));
        rule.insert("burst".into(), toml::Value::Integer(burst));
        t.insert(name.into(), toml::Value::Table(rule));
    }
    toml::Value::Table(t)
}

/// A Slack connector for the sandbox, with these extra settings and tokens.
fn connector(
    sb: &Running,
    dir: &Path,
    settings: &[(&str, toml::Value)],
    user_token: Option<&str>,
) -> Arc<dyn Connector> {
    build(&resolved(sb, dir, settings, user_token), &context(dir)).expect("driver builds")
}

/// The Slack connector's config for the sandbox. Slack's real tier limits
/// would pace these tests to a crawl: they run far above them unless a
/// test sets `tiers` itself.
fn resolved(
    sb: &Running,
    dir: &Path,
    settings: &[(&str, toml::Value)],
    user_token: Option<&str>,
) -> ResolvedConnector {
    offboard::sandbox::write_demo_keys(dir).unwrap();
    let token_file = match user_token {
        Some(t) => {
            let p = dir.join("other-token");
            std::fs::write(&p, t).unwrap();
            p
        }
        None => dir.join("slack-user-token"),
    };
    let mut cfg = ConnectorConfig {
        manifest: Some("slack".into()),
        enabled: true,
        ..ConnectorConfig::default()
    };
    cfg.api
        .insert("base_url".into(), format!("{}/api/", sb.base_url));
    cfg.api
        .insert("scim_url".into(), format!("{}/scim/v2/", sb.base_url));
    cfg.auth.token_file = Some(token_file.display().to_string());
    cfg.auth.scim_token_file = Some(dir.join("slack-scim-token").display().to_string());
    // Tests must not pick up a real token from the environment.
    cfg.auth.token_env = Some("OFFBOARD_TEST_UNSET_SLACK_TOKEN".into());
    cfg.auth.scim_token_env = Some("OFFBOARD_TEST_UNSET_SLACK_SCIM".into());
    let limits = offboard::connector::manifest::Limits {
        requests_per_second: 500.0,
        burst: 500,
        ..Default::default()
    };
    cfg.limits = Some(limits);
    cfg.settings.insert("tiers".into(), tiers(30_000, 500));
    for (k, v) in settings {
        cfg.settings.insert((*k).to_string(), v.clone());
    }
    manifest::resolve("slack", &cfg, dir).expect("config resolves")
}

fn members(sb: &Running, group: &str) -> Vec<String> {
    let st = sb.state.slack.lock().unwrap();
    st.group(group).unwrap().users.clone()
}

#[tokio::test]
async fn finds_users_and_reads_their_state() {
    let sb = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let c = connector(&sb, dir.path(), &[], None);

    let marcus = found(&*c, "Marcus.Reyes@example.com").await;
    assert!(marcus.active);
    assert!(marcus.is_admin);
    assert!(
        marcus
            .facts
            .iter()
            .any(|(k, v)| k == "team_id" && v == sb_slack::TEAM_ID)
    );

    let sam = found(&*c, "sam.okafor@partner.example.net").await;
    assert!(
        sam.facts
            .iter()
            .any(|(k, v)| k == "user_type" && v == "multi-channel guest")
    );

    assert_eq!(
        c.find_person(&Person::new("nobody@example.com"))
            .await
            .unwrap(),
        Lookup::NotFound
    );
    sb.stop().await;
}

#[tokio::test]
async fn ok_false_is_an_error_never_absence() {
    let sb = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let admin = connector(&sb, dir.path(), &[], None);
    let dana = found(&*admin, "dana.whitfield@example.com").await;

    // A token with only users:read / users:read.email: the admin reads answer
    // HTTP 200 ok:false missing_scope.
    let ro = connector(&sb, dir.path(), &[], Some(sb_slack::DEMO_READONLY_TOKEN));
    let inv = ro.list_grants(&dana).await;
    for kind in [
        GrantKind::Session,
        GrantKind::Group,
        GrantKind::AdminRole,
        GrantKind::OwnedApp,
    ] {
        let e = inv
            .kind_failed(kind)
            .unwrap_or_else(|| panic!("{kind} must be a failed read"));
        assert_eq!(e.code(), Some("missing_scope"), "{kind}: {e}");
        assert_eq!(e.status(), Some(200));
        assert!(e.to_string().contains("needed scope"), "{e}");
    }
    assert!(inv.grants.iter().all(|g| g.kind == GrantKind::Account));
    // And verification on a failed read is an error, not "gone".
    let session = Grant {
        connector: "slack".into(),
        id: "session:1".into(),
        kind: GrantKind::Session,
        label: String::new(),
        details: String::new(),
        risk: offboard::model::Risk::High,
        revocation: offboard::model::Revocation::Api,
        since: None,
        phase: None,
        after: Vec::new(),
    };
    let v = ro.verify(&dana, &[session]).await;
    assert!(v[0].1.is_err());
    sb.stop().await;
}

#[tokio::test]
async fn bad_token_is_an_auth_error_without_the_token() {
    let sb = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = "xoxp-9999-not-a-real-token-do-not-print";
    let c = connector(&sb, dir.path(), &[], Some(secret));
    let e = c
        .find_person(&Person::new("dana.whitfield@example.com"))
        .await
        .expect_err("a bad token must fail");
    assert!(matches!(e, ConnectorError::Auth(_)), "{e:?}");
    let shown = format!("{e} {e:?}");
    assert!(shown.contains("invalid_auth"), "{shown}");
    assert!(!shown.contains(secret), "token leaked: {shown}");
    let h = c.health();
    assert_eq!(h.state, offboard::connector::HealthState::AuthError);
    assert!(!format!("{h:?}").contains(secret));
    sb.stop().await;
}

#[tokio::test]
async fn inventory_of_the_scheduled_leaver() {
    let sb = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let c = connector(&sb, dir.path(), &[], None);
    let dana = found(&*c, "dana.whitfield@example.com").await;
    let inv = c.list_grants(&dana).await;
    assert!(inv.failed.is_empty(), "{:?}", inv.failed);
    assert_eq!(of_kind(&inv.grants, GrantKind::Session).len(), 5);
    assert_eq!(of_kind(&inv.grants, GrantKind::Account).len(), 1);
    let groups = of_kind(&inv.grants, GrantKind::Group);
    // finance dept, finance-approvers, expense-admins, managers; the
    // disabled legacy group is not listed.
    assert_eq!(groups.len(), 4, "{groups:#?}");
    let apps = of_kind(&inv.grants, GrantKind::OwnedApp);
    assert_eq!(
        apps.len(),
        1,
        "the removed Quick Poll is not listed: {apps:#?}"
    );
    assert_eq!(apps[0].id, "app:A0DEXPENSE");
    assert!(apps[0].is_manual());
    let roles = of_kind(&inv.grants, GrantKind::AdminRole);
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].id, format!("role:Rl0D:{}", sb_slack::TEAM_ID));
    sb.stop().await;
}

#[tokio::test]
async fn sessions_page_over_three_pages_and_end_with_eventual_consistency() {
    let sb = common::sandbox(common::quick(400)).await;
    let dir = tempfile::tempdir().unwrap();
    let c = connector(
        &sb,
        dir.path(),
        &[("page_size", toml::Value::Integer(2))],
        None,
    );
    let dana = found(&*c, "dana.whitfield@example.com").await;
    let before = sb
        .state
        .slack
        .lock()
        .unwrap()
        .calls
        .get("admin.users.session.list")
        .copied()
        .unwrap_or(0);
    let inv = c.list_grants(&dana).await;
    let after = sb.state.slack.lock().unwrap().calls["admin.users.session.list"];
    let sessions: Vec<Grant> = of_kind(&inv.grants, GrantKind::Session)
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(sessions.len(), 5);
    assert_eq!(after - before, 3, "5 sessions at limit=2 take three pages");
    let mut ids: Vec<_> = sessions.iter().map(|g| g.id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 5);

    let s = &sessions[0];
    assert_eq!(c.revoke(&dana, s).await.unwrap(), RevokeOutcome::Accepted);
    // Still listed right after (eventual consistency): not verified yet.
    assert_eq!(presence(&*c, &dana, s).await, Presence::Present);
    wait_absent(&*c, &dana, std::slice::from_ref(s)).await;
    // The others are untouched.
    assert_eq!(presence(&*c, &dana, &sessions[1]).await, Presence::Present);
    // Invalidating it again is success.
    let again = c.revoke(&dana, s).await.unwrap();
    assert!(matches!(
        again,
        RevokeOutcome::Accepted | RevokeOutcome::AlreadyGone
    ));
    sb.stop().await;
}

#[tokio::test]
async fn group_removal_keeps_a_member_added_concurrently() {
    let sb = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let c = connector(&sb, dir.path(), &[], None);
    let dana = found(&*c, "dana.whitfield@example.com").await;
    let inv = c.list_grants(&dana).await;
    let managers = inv
        .grants
        .iter()
        .find(|g| g.label.starts_with("@managers"))
        .expect("Dana is in @managers")
        .clone();
    let gid = managers.id.strip_prefix("usergroup:").unwrap().to_string();
    let newcomer = "U0D000200".to_string();
    assert!(!members(&sb, &gid).contains(&newcomer));
    // Another admin adds a member after offboard listed the group (and,
    // in a run, while the removal waited for its rate-limit tokens).
    {
        let mut st = sb.state.slack.lock().unwrap();
        st.hooks.reads.clear();
        let g = st.groups.iter_mut().find(|g| g.id == gid).unwrap();
        g.users.push(newcomer.clone());
    }

    assert_eq!(
        c.revoke(&dana, &managers).await.unwrap(),
        RevokeOutcome::Accepted
    );
    // The write is made from the one read taken right before it.
    assert_eq!(sb.state.slack.lock().unwrap().hooks.reads[&gid], 1);
    let now = members(&sb, &gid);
    assert!(
        now.contains(&newcomer),
        "the concurrent addition was lost: {now:?}"
    );
    assert!(!now.contains(&dana.id));
    assert_eq!(now.len(), 15 - 1 + 1);
    wait_absent(&*c, &dana, std::slice::from_ref(&managers)).await;
    // Removing again is already gone.
    assert_eq!(
        c.revoke(&dana, &managers).await.unwrap(),
        RevokeOutcome::AlreadyGone
    );
    sb.stop().await;
}

#[tokio::test]
async fn a_group_write_follows_its_re_read_at_once_even_when_its_bucket_is_empty() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let sb = offboard::sandbox::start(offboard::sandbox::Options {
        faults: common::quick(200),
        access_log: Some(log.path().to_path_buf()),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Writes are slow (one every 2 s); reads are not.
    let mut t = tiers(30_000, 500);
    let mut slow = toml::Table::new();
    slow.insert("per_minute".into(), toml::Value::Integer(30));
    slow.insert("burst".into(), toml::Value::Integer(1));
    t.as_table_mut()
        .unwrap()
        .insert("slow".into(), toml::Value::Table(slow));
    let mut m = toml::Table::new();
    m.insert(
        "usergroups.users.update".into(),
        toml::Value::String("slow".into()),
    );
    let c = connector(
        &sb,
        dir.path(),
        &[("tiers", t), ("method_tiers", toml::Value::Table(m))],
        None,
    );
    let dana = found(&*c, "dana.whitfield@example.com").await;
    let inv = c.list_grants(&dana).await;
    let groups: Vec<Grant> = of_kind(&inv.grants, GrantKind::Group)
        .into_iter()
        .filter(|g| members(&sb, g.id.strip_prefix("usergroup:").unwrap()).len() > 1)
        .take(2)
        .cloned()
        .collect();
    assert_eq!(groups.len(), 2);
    // Both removals at once: the second write must wait for its bucket, and
    // it waits before its re-read, not between the re-read and the write.
    let results = futures::future::join_all(groups.iter().map(|g| c.revoke(&dana, g))).await;
    for r in results {
        assert_eq!(r.unwrap(), RevokeOutcome::Accepted);
    }
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(log.path())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let at = |l: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(l["ts"].as_str().unwrap()).unwrap()
    };
    let writes: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i]["path"] == "/api/usergroups.users.update")
        .collect();
    assert_eq!(writes.len(), 2);
    let mut gaps = Vec::new();
    for &w in &writes {
        let read = (0..w)
            .rev()
            .find(|&i| lines[i]["path"] == "/api/usergroups.users.list")
            .expect("a re-read before the write");
        gaps.push((at(&lines[w]) - at(&lines[read])).num_milliseconds());
    }
    assert!(
        gaps.iter().all(|g| *g < 1000),
        "a write waited after its re-read: gaps {gaps:?} ms"
    );
    // The writes themselves are paced 2 s apart.
    assert!((at(&lines[writes[1]]) - at(&lines[writes[0]])).num_milliseconds() >= 1500);
    sb.stop().await;
}

#[tokio::test]
async fn sole_member_group_is_disabled_or_manual() {
    let sb = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let c = connector(&sb, dir.path(), &[], None);
    let dana = found(&*c, "dana.whitfield@example.com").await;
    let inv = c.list_grants(&dana).await;
    let sole = inv
        .grants
        .iter()
        .find(|g| g.label.starts_with("@finance-approvers"))
        .unwrap()
        .clone();
    assert!(!sole.is_manual());
    assert_eq!(
        c.revoke(&dana, &sole).await.unwrap(),
        RevokeOutcome::Accepted
    );
    wait_absent(&*c, &dana, std::slice::from_ref(&sole)).await;

    let manual = connector(
        &sb,
        dir.path(),
        &[("sole_member_groups", toml::Value::String("manual".into()))],
        None,
    );
    let lena = found(&*manual, "lena.kowalski@example.com").await;
    // Make Lena the only member of a group through the API, then list.
    sb.state.slack.lock().unwrap().groups[0].users = vec![lena.id.clone()];
    let inv = manual.list_grants(&lena).await;
    let g = inv
        .grants
        .iter()
        .find(|g| g.id == "usergroup:S0D000001")
        .expect("Lena is listed in the group");
    assert!(g.is_manual(), "{g:?}");
    assert!(matches!(
        manual.revoke(&lena, g).await,
        Err(ConnectorError::Refused { .. })
    ));
    sb.stop().await;
}

#[tokio::test]
async fn admin_roles_and_workspace_admin_are_removed() {
    let sb = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let c = connector(
        &sb,
        dir.path(),
        &[("page_size", toml::Value::Integer(2))],
        None,
    );
    let marcus = found(&*c, "marcus.reyes@example.com").await;
    let inv = c.list_grants(&marcus).await;
    assert!(inv.failed.is_empty(), "{:?}", inv.failed);
    let roles: Vec<Grant> = of_kind(&inv.grants, GrantKind::AdminRole)
        .into_iter()
        .cloned()
        .collect();
    // Three role assignments (read over four pages of two) and the
    // workspace admin flag.
    assert_eq!(roles.len(), 4, "{roles:#?}");
    assert!(roles.iter().any(|g| g.id.starts_with("workspace-role:")));
    assert_eq!(of_kind(&inv.grants, GrantKind::Session).len(), 4);
    assert_eq!(of_kind(&inv.grants, GrantKind::OwnedApp).len(), 2);
    for g in &roles {
        assert_eq!(c.revoke(&marcus, g).await.unwrap(), RevokeOutcome::Accepted);
    }
    for g in &roles {
        wait_absent(&*c, &marcus, std::slice::from_ref(g)).await;
    }
    {
        let st = sb.state.slack.lock().unwrap();
        let u = st.user(&marcus.id).unwrap();
        assert!(!u.is_admin && !u.is_owner);
        // Others' assignments of the same role are untouched.
        assert!(
            st.roles
                .iter()
                .any(|r| r.role_id == "Rl0A" && r.user_id == "U0D000021" && r.removed_at.is_none())
        );
    }
    sb.stop().await;
}

#[tokio::test]
async fn scim_deactivation_is_verified_and_last() {
    let sb = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let c = connector(&sb, dir.path(), &[], None);
    let tom = found(&*c, "tom.becker@example.com").await;
    let inv = c.list_grants(&tom).await;
    let acc = of_kind(&inv.grants, GrantKind::Account)[0].clone();
    assert_eq!(acc.phase(), offboard::model::Phase::CloseAccount);
    assert_eq!(presence(&*c, &tom, &acc).await, Presence::Present);
    assert_eq!(c.revoke(&tom, &acc).await.unwrap(), RevokeOutcome::Accepted);
    assert_eq!(presence(&*c, &tom, &acc).await, Presence::Absent);
    // users.info now says deleted; the sessions Slack ended disappear.
    let again = found(&*c, "tom.becker@example.com").await;
    assert!(!again.active);
    common::wait_for(Duration::from_secs(10), "sessions to end", || {
        let c = c.clone();
        let a = again.clone();
        async move {
            let inv = c.list_grants(&a).await;
            (inv.failed.is_empty()
                && of_kind(&inv.grants, GrantKind::Session).is_empty()
                && of_kind(&inv.grants, GrantKind::Account).is_empty())
            .then_some(())
        }
    })
    .await;
    // Deactivating again is fine.
    assert_eq!(c.revoke(&tom, &acc).await.unwrap(), RevokeOutcome::Accepted);
    // The primary owner is a manual step.
    let owner = found(&*c, offboard::sandbox::DEMO_ADMIN).await;
    let inv = c.list_grants(&owner).await;
    assert!(of_kind(&inv.grants, GrantKind::Account)[0].is_manual());
    sb.stop().await;
}

#[tokio::test]
async fn a_user_scim_does_not_know_is_never_verified_deactivated() {
    let sb = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let c = connector(&sb, dir.path(), &[], None);
    let tom = found(&*c, "tom.becker@example.com").await;
    let inv = c.list_grants(&tom).await;
    let acc = of_kind(&inv.grants, GrantKind::Account)[0].clone();
    // The account as a SCIM token for another org sees it: unknown (404).
    let elsewhere = Account {
        id: "U0NOTINTHISORG".into(),
        ..tom.clone()
    };
    let ghost = Grant {
        id: acc.id.replace(&tom.id, "U0NOTINTHISORG"),
        ..acc.clone()
    };
    let r = c.verify(&elsewhere, std::slice::from_ref(&ghost)).await;
    assert!(r[0].1.is_err(), "a SCIM 404 is not a deactivation: {r:?}");
    // And deactivating it fails at once, with what to check.
    match c.revoke(&elsewhere, &ghost).await {
        Err(ConnectorError::Refused { code, manual, .. }) => {
            assert_eq!(code, "scim_user_not_found");
            assert!(manual.contains("SCIM token"), "{manual}");
        }
        other => panic!("a SCIM 404 on deactivation must fail: {other:?}"),
    }
    sb.stop().await;
}

#[tokio::test]
async fn rate_limited_calls_wait_for_retry_after() {
    let sb = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let c = connector(&sb, dir.path(), &[], None);
    sb.state.slack.lock().unwrap().hooks.rate_limit_next = Some((2, 1));
    let started = tokio::time::Instant::now();
    let dana = found(&*c, "dana.whitfield@example.com").await;
    assert_eq!(dana.login, "dana.whitfield@example.com");
    // Two 429s with Retry-After: 1 were honoured before the answer.
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(
        sb.state
            .slack
            .lock()
            .unwrap()
            .hooks
            .rate_limit_next
            .is_none()
    );
    sb.stop().await;
}

#[tokio::test]
async fn sandbox_speaks_slack_on_the_wire() {
    let sb = common::sandbox(common::quick(200)).await;
    let http = reqwest::Client::new();
    let api = |m: &str| format!("{}/api/{m}", sb.base_url);
    // No token: HTTP 200 ok:false not_authed.
    let r = http.get(api("users.info")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v, serde_json::json!({"ok": false, "error": "not_authed"}));
    // JSON body and token as a form argument both work.
    let v: serde_json::Value = http
        .post(api("usergroups.users.list"))
        .bearer_auth(sb_slack::DEMO_USER_TOKEN)
        .json(&serde_json::json!({"usergroup": "S0D000001"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["ok"], true);
    let v: serde_json::Value = http
        .post(api("users.lookupByEmail"))
        .form(&[
            ("token", sb_slack::DEMO_USER_TOKEN),
            ("email", "nobody@example.com"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v,
        serde_json::json!({"ok": false, "error": "users_not_found"})
    );
    // Empty list: invalid_users.
    let v: serde_json::Value = http
        .post(api("usergroups.users.update"))
        .bearer_auth(sb_slack::DEMO_USER_TOKEN)
        .form(&[("usergroup", "S0D000001"), ("users", "")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["error"], "invalid_users");
    // Rate limit: 429, Retry-After, ratelimited.
    sb.state.slack.lock().unwrap().hooks.rate_limit_next = Some((1, 3));
    let r = http.get(api("users.info")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "ratelimited");
    // SCIM v2 error body.
    let r = http
        .get(format!("{}/scim/v2/Users/UNOPE", sb.base_url))
        .bearer_auth(sb_slack::DEMO_SCIM_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], "404");
    assert_eq!(
        v["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    // admin.apps.uninstall shows in team.integrationLogs.
    let v: serde_json::Value = http
        .post(api("admin.apps.uninstall"))
        .bearer_auth(sb_slack::DEMO_USER_TOKEN)
        .form(&[("app_id", "A0DSTANDUP"), ("team_ids", sb_slack::TEAM_ID)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["ok"], true);
    let v: serde_json::Value = http
        .get(api("team.integrationLogs"))
        .query(&[("app_id", "A0DSTANDUP")])
        .bearer_auth(sb_slack::DEMO_USER_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["logs"][0]["change_type"], "removed");
    assert_eq!(v["paging"]["total"], 2);
    // Opaque cursors: a forged one is refused.
    let v: serde_json::Value = http
        .post(api("admin.users.session.list"))
        .bearer_auth(sb_slack::DEMO_USER_TOKEN)
        .form(&[("cursor", "not-a-cursor")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["error"], "invalid_cursor");
    sb.stop().await;
}

#[tokio::test]
async fn demo_config_builds_the_slack_connector() {
    let sb = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_config(dir.path(), &sb.base_url);
    let loaded = offboard::config::load(&path).expect("demo config loads");
    let slack = loaded
        .connectors()
        .unwrap()
        .into_iter()
        .find(|r| r.id == "slack")
        .expect("demo config has [connectors.slack]");
    let ctx = BuildContext {
        http: offboard::connector::http::shared_reqwest(),
        notices: None,
        data_dir: dir.path().to_path_buf(),
    };
    let c = build(&slack, &ctx).unwrap();
    let sam = found(&*c, "sam.okafor@partner.example.net").await;
    let inv = c.list_grants(&sam).await;
    assert!(inv.failed.is_empty(), "{:?}", inv.failed);
    assert_eq!(of_kind(&inv.grants, GrantKind::Session).len(), 1);
    assert_eq!(of_kind(&inv.grants, GrantKind::Group).len(), 2);
    sb.stop().await;
}

/// Web API and SCIM calls served so far, by method.
fn calls(sb: &Running) -> std::collections::BTreeMap<String, u32> {
    sb.state.slack.lock().unwrap().calls.clone()
}

#[tokio::test]
async fn verify_reads_only_the_kinds_asked_about() {
    let sb = common::sandbox(common::quick(60_000)).await;
    let dir = tempfile::tempdir().unwrap();
    let c = connector(&sb, dir.path(), &[], None);
    let dana = found(&*c, "dana.whitfield@example.com").await;
    let inv = c.list_grants(&dana).await;
    let session = of_kind(&inv.grants, GrantKind::Session)[0].clone();
    let group = of_kind(&inv.grants, GrantKind::Group)[0].clone();

    let before = calls(&sb);
    let r = c.verify(&dana, std::slice::from_ref(&session)).await;
    let after = calls(&sb);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, session.id);
    assert_eq!(r[0].1, Ok(Presence::Present));
    let delta: Vec<(String, u32)> = after
        .iter()
        .map(|(m, n)| (m.clone(), n - before.get(m).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(delta, vec![("admin.users.session.list".to_string(), 1)]);

    // A removed session stays listed for the consistency delay: present.
    assert_eq!(
        c.revoke(&dana, &session).await.unwrap(),
        RevokeOutcome::Accepted
    );
    let before = calls(&sb);
    let r = c.verify(&dana, &[session.clone(), group.clone()]).await;
    let after = calls(&sb);
    assert!(r.iter().all(|(_, p)| *p == Ok(Presence::Present)), "{r:?}");
    let methods: Vec<&String> = after
        .iter()
        .filter(|(m, n)| before.get(*m).copied().unwrap_or(0) < **n)
        .map(|(m, _)| m)
        .collect();
    assert_eq!(
        methods,
        vec!["admin.users.session.list", "usergroups.list"],
        "only the two listings asked about are read"
    );
}

#[tokio::test]
async fn narrowed_verify_confirms_a_removal_and_never_counts_a_failed_read() {
    let sb = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let c = connector(&sb, dir.path(), &[], None);
    let dana = found(&*c, "dana.whitfield@example.com").await;
    let inv = c.list_grants(&dana).await;
    let session = of_kind(&inv.grants, GrantKind::Session)[0].clone();
    assert_eq!(
        c.revoke(&dana, &session).await.unwrap(),
        RevokeOutcome::Accepted
    );
    // A failing listing is an error, never absence.
    sb.state.slack.lock().unwrap().hooks.rate_limit_next = Some((1000, 600));
    let r = c.verify(&dana, std::slice::from_ref(&session)).await;
    assert!(r[0].1.is_err(), "{r:?}");
    sb.state.slack.lock().unwrap().hooks.rate_limit_next = None;
    common::wait_for(Duration::from_secs(10), "session absent", || {
        let c = c.clone();
        let dana = dana.clone();
        let session = session.clone();
        async move {
            let r = c.verify(&dana, std::slice::from_ref(&session)).await;
            (r[0].1 == Ok(Presence::Absent)).then_some(())
        }
    })
    .await;
}

/// Faults with Slack's tier limits enforced: these tiers, the rest at
/// Slack's documented minimums.
fn tiered(rules: &[(&str, f64, u32)]) -> offboard::sandbox::Faults {
    let mut f = common::quick(200);
    f.slack_tiers = Some(
        rules
            .iter()
            .map(|(t, per_minute, burst)| {
                (
                    t.to_string(),
                    sb_slack::TierRule {
                        per_minute: *per_minute,
                        burst: Some(*burst),
                    },
                )
            })
            .collect(),
    );
    f
}

fn served(sb: &Running) -> Vec<(String, u16)> {
    sb.state
        .slack
        .lock()
        .unwrap()
        .served
        .iter()
        .cloned()
        .collect()
}

#[tokio::test]
async fn sandbox_limits_each_method_by_its_tier_when_asked() {
    let sb = common::sandbox(common::quick(200)).await;
    let http = reqwest::Client::new();
    let call = |m: &str| {
        http.post(format!("{}/api/{m}", sb.base_url))
            .bearer_auth(sb_slack::DEMO_USER_TOKEN)
            .form(&[("user", "U0D000001"), ("include_users", "true")])
            .send()
    };
    // Off by default: a run of Tier 2 calls all answer.
    for _ in 0..10 {
        assert_eq!(call("usergroups.list").await.unwrap().status(), 200);
    }

    sb.set_faults(tiered(&[("tier2", 60.0, 2)]));
    assert_eq!(call("usergroups.list").await.unwrap().status(), 200);
    assert_eq!(call("usergroups.list").await.unwrap().status(), 200);
    let r = call("usergroups.list").await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v, serde_json::json!({"ok": false, "error": "ratelimited"}));
    // Limits are per method: another Tier 2 method still has its own.
    assert_eq!(
        call("admin.roles.listAssignments").await.unwrap().status(),
        200
    );
    // Tier 4 (users.info) keeps answering meanwhile (Slack's 100/min).
    for _ in 0..30 {
        let r = call("users.info").await.unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["ok"], true, "{v}");
    }
    // The limited method answers again once Retry-After has passed.
    let call = &call;
    common::wait_for(
        Duration::from_secs(5),
        "usergroups.list to answer again",
        || async move { (call("usergroups.list").await.unwrap().status() == 200).then_some(()) },
    )
    .await;
    sb.stop().await;
}

#[tokio::test]
async fn a_limited_tier_waits_alone_while_other_tiers_answer() {
    let sb = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let driver =
        SlackDriver::build(&resolved(&sb, dir.path(), &[], None), &context(dir.path())).unwrap();
    let web = driver.web_client().clone();
    let c: Arc<dyn Connector> = Arc::new(driver);
    let dana = found(&*c, "dana.whitfield@example.com").await;
    let inv = c.list_grants(&dana).await;
    assert!(inv.failed.is_empty(), "{:?}", inv.failed);
    let sessions: Vec<Grant> = of_kind(&inv.grants, GrantKind::Session)
        .into_iter()
        .cloned()
        .collect();
    assert!(sessions.len() >= 2);
    // A workspace-role grant is verified with users.info (Tier 4).
    let mut role = of_kind(&inv.grants, GrantKind::Account)[0].clone();
    role.id = format!("workspace-role:{}", sb_slack::TEAM_ID);
    role.kind = GrantKind::AdminRole;

    // Slack now allows one invalidation per 2 s: the second gets 429 with
    // Retry-After: 2.
    sb.set_faults(tiered(&[("tier2", 30.0, 1)]));
    let revoking = {
        let (c, dana, s) = (c.clone(), dana.clone(), sessions[..2].to_vec());
        tokio::spawn(async move {
            let mut out = Vec::new();
            for g in &s {
                out.push(c.revoke(&dana, g).await);
            }
            out
        })
    };
    let is_429 = |(m, st): &(String, u16)| m == "admin.users.session.invalidate" && *st == 429;
    let (sbr, webr) = (&sb, &web);
    common::wait_for(
        Duration::from_secs(5),
        "an invalidation to be rate limited",
        || async move { served(sbr).iter().any(is_429).then_some(()) },
    )
    .await;
    // The 429 paused that method only, not even the other Tier 2 methods.
    common::wait_for(
        Duration::from_secs(5),
        "the method to pause",
        || async move {
            webr.paused_for(Some("method:admin.users.session.invalidate"))
                .map(|_| ())
        },
    )
    .await;
    for other in [
        "method:usergroups.list",
        "method:admin.users.session.list",
        "method:users.lookupByEmail",
        "method:users.info",
    ] {
        assert_eq!(web.paused_for(Some(other)), None, "{other}");
    }
    assert_eq!(web.paused_for(None), None);

    // Lookups (Tier 3) and users.info (Tier 4) answer while Tier 2 waits.
    for _ in 0..3 {
        found(&*c, "dana.whitfield@example.com").await;
    }
    let r = c.verify(&dana, std::slice::from_ref(&role)).await;
    assert!(r[0].1.is_ok(), "{r:?}");
    assert!(
        !revoking.is_finished(),
        "Tier 2 is still waiting for Retry-After"
    );

    for r in revoking.await.unwrap() {
        assert_eq!(r.unwrap(), RevokeOutcome::Accepted);
    }
    // The driver waited instead of hammering: one 429, then the retry went
    // through after the other tiers had been answered.
    let log = served(&sb);
    let first_429 = log.iter().position(is_429).unwrap();
    assert_eq!(log.iter().filter(|x| is_429(x)).count(), 1, "{log:?}");
    let retried = log
        .iter()
        .rposition(|(m, st)| m == "admin.users.session.invalidate" && *st == 200)
        .unwrap();
    assert!(retried > first_429);
    let answered_between = |method: &str| {
        log[first_429..retried]
            .iter()
            .filter(|(m, st)| m == method && *st == 200)
            .count()
    };
    assert_eq!(answered_between("users.lookupByEmail"), 3, "{log:?}");
    assert_eq!(answered_between("users.info"), 1, "{log:?}");
    sb.stop().await;
}

#[tokio::test]
async fn the_driver_paces_each_method_by_its_own_bucket() {
    let sb = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut t = tiers(30_000, 500);
    // Each Tier 2 method's own bucket: one call at once, then one a minute.
    let mut slow = toml::Table::new();
    slow.insert("per_minute".into(), toml::Value::Integer(1));
    slow.insert("burst".into(), toml::Value::Integer(1));
    t.as_table_mut()
        .unwrap()
        .insert("tier2".into(), toml::Value::Table(slow));
    let c = connector(&sb, dir.path(), &[("tiers", t)], None);
    let dana = found(&*c, "dana.whitfield@example.com").await;
    let calls = |m: &str| {
        sb.state
            .slack
            .lock()
            .unwrap()
            .calls
            .get(m)
            .copied()
            .unwrap_or(0)
    };
    let tier2 = [
        "admin.users.session.list",
        "usergroups.list",
        "admin.roles.listAssignments",
        "team.integrationLogs",
    ];
    // Slack counts each method separately: the four Tier 2 listings go out
    // at once, each from its own bucket.
    let first = c.list_grants(&dana).await;
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    for m in tier2 {
        assert_eq!(calls(m), 1, "{m}");
    }
    // A second listing finds each of those buckets empty and waits, while
    // Tier 3 lookups still go through.
    let listing = {
        let (c, dana) = (c.clone(), dana.clone());
        tokio::spawn(async move { c.list_grants(&dana).await })
    };
    for _ in 0..5 {
        found(&*c, "dana.whitfield@example.com").await;
    }
    assert!(!listing.is_finished());
    assert_eq!(tier2.iter().map(|m| calls(m)).sum::<u32>(), 4);
    assert_eq!(calls("users.info"), 2);
    listing.abort();
    sb.stop().await;
}

#[tokio::test]
async fn tier_settings_are_checked() {
    let sb = common::sandbox(common::quick(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path());
    let mut m = toml::Table::new();
    m.insert("users.info".into(), toml::Value::String("tier9".into()));
    let r = SlackDriver::build(
        &resolved(
            &sb,
            dir.path(),
            &[("method_tiers", toml::Value::Table(m))],
            None,
        ),
        &ctx,
    );
    let e = r.err().expect("an unknown tier is refused").to_string();
    assert!(
        e.contains("method_tiers") && e.contains("users.info") && e.contains("tier9"),
        "{e}"
    );

    let mut bad = toml::Table::new();
    bad.insert("per_minute".into(), toml::Value::Integer(0));
    let mut t = toml::Table::new();
    t.insert("tier3".into(), toml::Value::Table(bad));
    let r = SlackDriver::build(
        &resolved(&sb, dir.path(), &[("tiers", toml::Value::Table(t))], None),
        &ctx,
    );
    let e = r.err().expect("a zero rate is refused").to_string();
    assert!(e.contains("settings.tiers.tier3"), "{e}");

    // A partial `tiers` keeps the built-in rates of the tiers it leaves out.
    let mut only = toml::Table::new();
    only.insert("per_minute".into(), toml::Value::Integer(600));
    let mut t = toml::Table::new();
    t.insert("tier2".into(), toml::Value::Table(only));
    let c = SlackDriver::build(
        &resolved(&sb, dir.path(), &[("tiers", toml::Value::Table(t))], None),
        &ctx,
    )
    .expect("a partial tiers table builds");
    let c: Arc<dyn Connector> = Arc::new(c);
    found(&*c, "dana.whitfield@example.com").await;
    sb.stop().await;
}
