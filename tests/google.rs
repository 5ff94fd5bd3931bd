//! The Google Workspace driver against the sandbox, over HTTP.

mod common;

use common::driver::{self, found, of_kind};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use offboard::apps::build;
use offboard::apps::google::twin::ODD_EMAIL;
use offboard::connector::http::{HttpNotice, shared_reqwest};
use offboard::connector::{
    BuildContext, Connector, ConnectorError, Inventory, Lookup, Presence, RevokeOutcome,
};
use offboard::model::{Grant, GrantKind, Person, Plan, Revocation};
use offboard::sandbox::{self, Faults, Options, Running};
use tokio::sync::mpsc;

struct Env {
    sb: Running,
    google: Arc<dyn Connector>,
    notices: mpsc::UnboundedReceiver<HttpNotice>,
    dir: tempfile::TempDir,
}

/// A sandbox and a driver built from a config pointing at it; `extra` is
/// appended to the config (settings, limits).
async fn env_with(opts: Options, extra: &str) -> Env {
    let sb = sandbox::start(opts).await.expect("sandbox starts");
    let dir = tempfile::tempdir().unwrap();
    let google = connect(&sb, dir.path(), extra);
    let (google, notices) = google;
    Env {
        sb,
        google,
        notices,
        dir,
    }
}

fn connect(
    sb: &Running,
    dir: &Path,
    extra: &str,
) -> (Arc<dyn Connector>, mpsc::UnboundedReceiver<HttpNotice>) {
    let resolved = driver::demo_connector(sb, dir, "google", extra);
    let (ctx, rx) = driver::context_with_notices(dir);
    (driver::driver(&resolved, &ctx), rx)
}

async fn env(consistency_ms: u64) -> Env {
    env_with(
        Options {
            faults: common::quick(consistency_ms),
            ..Options::default()
        },
        "",
    )
    .await
}

fn assert_complete(inv: &Inventory) {
    assert!(inv.failed.is_empty(), "failed kinds: {:?}", inv.failed);
}

#[tokio::test]
async fn finds_by_primary_email_and_alias_and_reports_absence() {
    let e = env(200).await;
    let dana = found(&*e.google, "dana.whitfield@example.com").await;
    assert_eq!(dana.connector, "google");
    assert_eq!(dana.display_name, "Dana Whitfield");
    assert!(dana.active);
    assert!(dana.id.len() > 10);
    assert!(dana.facts.iter().any(|(k, _)| k == "org_unit"));

    let alex = found(&*e.google, "ACHEN@example.com").await;
    assert_eq!(alex.login, "alex.chen@example.com");

    let tom = found(&*e.google, "tom.becker@example.com").await;
    assert!(!tom.active);
    assert!(
        tom.facts
            .iter()
            .any(|(k, v)| k == "suspension_reason" && v == "ADMIN")
    );

    let marcus = found(&*e.google, "marcus.reyes@example.com").await;
    assert!(marcus.is_admin);

    for absent in ["sam.okafor@partner.example.net", "nobody@example.com"] {
        assert_eq!(
            e.google.find_person(&Person::new(absent)).await.unwrap(),
            Lookup::NotFound
        );
    }
    e.sb.stop().await;
}

#[tokio::test]
async fn a_failed_lookup_is_an_error_not_absence() {
    let e = env_with(
        Options {
            faults: common::quick(200),
            ..Options::default()
        },
        "\n[connectors.google.limits]\nmax_retries = 1\n",
    )
    .await;
    e.sb.set_faults(Faults {
        error_rate: 1.0,
        path_prefix: Some("/admin/".into()),
        ..common::quick(200)
    });
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        e.google
            .find_person(&Person::new("dana.whitfield@example.com")),
    )
    .await
    .expect("gives up in time");
    assert!(
        matches!(r, Err(ConnectorError::Api { status: 503, .. })),
        "{r:?}"
    );
    e.sb.stop().await;
}

#[tokio::test]
async fn inventory_of_the_scheduled_leaver() {
    let e = env(200).await;
    let dana = found(&*e.google, "dana.whitfield@example.com").await;
    let inv = e.google.list_grants(&dana).await;
    assert_complete(&inv);
    let count = |k| of_kind(&inv.grants, k).len();
    assert_eq!(count(GrantKind::OauthGrant), 6);
    assert_eq!(count(GrantKind::AppPassword), 2);
    assert_eq!(count(GrantKind::Group), 12);
    assert_eq!(count(GrantKind::AdminRole), 1);
    assert_eq!(count(GrantKind::License), 2);
    assert_eq!(count(GrantKind::Device), 2);
    assert_eq!(count(GrantKind::Session), 1);
    assert_eq!(count(GrantKind::BackupCodes), 1);
    assert_eq!(count(GrantKind::Account), 1);
    let ids: Vec<&str> = inv.grants.iter().map(|g| g.id.as_str()).collect();
    assert!(ids.contains(&"signout") && ids.contains(&"suspend") && ids.contains(&"backup_codes"));
    assert!(
        ids.iter()
            .any(|i| i.starts_with("token:") && i.ends_with(".apps.googleusercontent.com"))
    );
    assert!(ids.contains(&"license:Google-Apps/1010020020"));
    assert!(ids.contains(&"license:Google-Vault/Google-Vault"));
    // Backup codes are counted, never shown.
    let codes = of_kind(&inv.grants, GrantKind::BackupCodes)[0];
    assert!(
        codes.details.starts_with("10 unused codes"),
        "{}",
        codes.details
    );
    let mail_merge = inv
        .grants
        .iter()
        .find(|g| g.label.contains("Mail Merge Pro"))
        .unwrap();
    assert_eq!(mail_merge.risk, offboard::model::Risk::Critical);
    // Ids are stable across reads.
    let again = e.google.list_grants(&dana).await;
    let mut a: Vec<_> = inv.grants.iter().map(|g| g.id.clone()).collect();
    let mut b: Vec<_> = again.grants.iter().map(|g| g.id.clone()).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    e.sb.stop().await;
}

#[tokio::test]
async fn roles_held_through_a_group_are_manual_steps() {
    let e = env(200).await;
    let marcus = found(&*e.google, "marcus.reyes@example.com").await;
    let inv = e.google.list_grants(&marcus).await;
    assert_complete(&inv);
    let roles = of_kind(&inv.grants, GrantKind::AdminRole);
    assert_eq!(roles.len(), 3, "{roles:#?}");
    let direct: Vec<_> = roles.iter().filter(|g| !g.is_manual()).collect();
    assert_eq!(direct.len(), 2);
    assert!(
        direct
            .iter()
            .any(|g| g.label == "Admin role: User Management Admin")
    );
    let via_group = roles.iter().find(|g| g.is_manual()).unwrap();
    assert!(
        via_group.label.contains("it-admins@example.com"),
        "{}",
        via_group.label
    );
    match &via_group.revocation {
        Revocation::Manual { instructions } => {
            assert!(instructions.contains("it-admins@example.com"))
        }
        Revocation::Api => unreachable!(),
    }
    let r = e.google.revoke(&marcus, via_group).await;
    assert!(matches!(r, Err(ConnectorError::Refused { .. })), "{r:?}");

    // Leaving the group is what removes that role.
    let group = inv
        .grants
        .iter()
        .find(|g| g.kind == GrantKind::Group && g.label.contains("it-admins@"))
        .unwrap();
    assert_eq!(
        e.google.revoke(&marcus, group).await.unwrap(),
        RevokeOutcome::Accepted
    );
    let role = (*via_group).clone();
    common::wait_for(Duration::from_secs(10), "group-held role gone", || {
        let (g, m, r) = (e.google.clone(), marcus.clone(), role.clone());
        async move {
            let v = g.verify(&m, std::slice::from_ref(&r)).await;
            matches!(v[0].1, Ok(Presence::Absent)).then_some(())
        }
    })
    .await;
    e.sb.stop().await;
}

#[tokio::test]
async fn already_suspended_user_keeps_tokens_and_codes_need_a_person() {
    let e = env(200).await;
    let tom = found(&*e.google, "tom.becker@example.com").await;
    let inv = e.google.list_grants(&tom).await;
    assert_complete(&inv);
    assert_eq!(of_kind(&inv.grants, GrantKind::OauthGrant).len(), 3);
    assert_eq!(of_kind(&inv.grants, GrantKind::AppPassword).len(), 2);
    assert!(of_kind(&inv.grants, GrantKind::Account).is_empty());
    assert!(of_kind(&inv.grants, GrantKind::Session).is_empty());
    let codes = of_kind(&inv.grants, GrantKind::BackupCodes);
    assert_eq!(codes.len(), 1);
    assert!(codes[0].is_manual());
    // Google refuses invalidation on a suspended user; so does the sandbox.
    let mut forced = codes[0].clone();
    forced.revocation = Revocation::Api;
    let r = e.google.revoke(&tom, &forced).await;
    match r {
        Err(ConnectorError::Refused { code, manual, .. }) => {
            assert_eq!(code, "conditionNotMet");
            assert!(!manual.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // The contractor lives in /Contractors with a small footprint.
    let lena = found(&*e.google, "lena.kowalski@example.com").await;
    assert!(
        lena.facts
            .iter()
            .any(|(k, v)| k == "org_unit" && v == "/Contractors")
    );
    let inv = e.google.list_grants(&lena).await;
    assert_complete(&inv);
    assert_eq!(of_kind(&inv.grants, GrantKind::Group).len(), 2);
    assert_eq!(of_kind(&inv.grants, GrantKind::License).len(), 1);
    e.sb.stop().await;
}

/// Revokes every API grant in plan order, suspension last, and waits until a
/// fresh read confirms each one.
#[tokio::test]
async fn revokes_everything_in_order_and_verifies_by_fresh_reads() {
    let e = env(200).await;
    let dana = found(&*e.google, "dana.whitfield@example.com").await;
    let inv = e.google.list_grants(&dana).await;
    assert_complete(&inv);
    let plan = Plan::build(&inv.grants);
    let order: Vec<&Grant> = plan.phases.iter().flat_map(|p| p.steps.iter()).collect();
    assert_eq!(order.last().unwrap().id, "suspend", "suspension comes last");
    let codes_at = order.iter().position(|g| g.id == "backup_codes").unwrap();
    assert!(codes_at < order.len() - 1);

    let mut to_verify = Vec::new();
    for g in &order {
        if g.is_manual() {
            // A manifest step (Drive hand-over): the driver refuses it.
            let err = e.google.revoke(&dana, g).await.unwrap_err();
            assert!(matches!(err, ConnectorError::Refused { .. }), "{err}");
            continue;
        }
        let outcome = e
            .google
            .revoke(&dana, g)
            .await
            .unwrap_or_else(|err| panic!("{}: {err}", g.id));
        match g.kind {
            GrantKind::Session => assert_eq!(outcome, RevokeOutcome::Acknowledged),
            _ => {
                assert_eq!(outcome, RevokeOutcome::Accepted, "{}", g.id);
                to_verify.push((*g).clone());
            }
        }
    }
    {
        let st = e.sb.state.google.lock().unwrap();
        let u = st.user_index("dana.whitfield@example.com").unwrap();
        assert_eq!(st.users[u].sign_outs, 1);
        assert!(st.users[u].backup_codes.is_empty());
    }
    common::wait_for(Duration::from_secs(15), "every removal confirmed", || {
        let (g, a, v) = (e.google.clone(), dana.clone(), to_verify.clone());
        async move {
            let r = g.verify(&a, &v).await;
            r.iter()
                .all(|(_, p)| matches!(p, Ok(Presence::Absent)))
                .then_some(())
        }
    })
    .await;
    // Sign-out can never be confirmed by a read.
    let signout = order.iter().find(|g| g.id == "signout").unwrap();
    let v = e.google.verify(&dana, std::slice::from_ref(*signout)).await;
    assert!(matches!(v[0].1, Ok(Presence::Present)));
    // Revoking again is idempotent.
    let token = order
        .iter()
        .find(|g| g.kind == GrantKind::OauthGrant)
        .unwrap();
    assert_eq!(
        e.google.revoke(&dana, token).await.unwrap(),
        RevokeOutcome::AlreadyGone
    );
    let group = order.iter().find(|g| g.kind == GrantKind::Group).unwrap();
    assert_eq!(
        e.google.revoke(&dana, group).await.unwrap(),
        RevokeOutcome::AlreadyGone
    );
    // Suspended now: the account is inactive, and a fresh inventory offers
    // no sign-out, no suspension, keeps the licenses count at zero.
    let after = found(&*e.google, "dana.whitfield@example.com").await;
    assert!(!after.active);
    let inv = e.google.list_grants(&after).await;
    assert_complete(&inv);
    // Only the manual Drive/Calendar hand-over is left.
    assert!(
        inv.grants.iter().all(|g| g.id == "manual:data_transfer"),
        "{:#?}",
        inv.grants
    );
    e.sb.stop().await;
}

#[tokio::test]
async fn a_removal_is_not_verified_until_the_api_stops_listing_it() {
    let e = env(1200).await;
    let alex = found(&*e.google, "alex.chen@example.com").await;
    let inv = e.google.list_grants(&alex).await;
    let token = of_kind(&inv.grants, GrantKind::OauthGrant)[0].clone();
    let group = of_kind(&inv.grants, GrantKind::Group)[0].clone();
    let license = of_kind(&inv.grants, GrantKind::License)[0].clone();
    let grants = vec![token.clone(), group.clone(), license.clone()];
    for g in &grants {
        assert_eq!(
            e.google.revoke(&alex, g).await.unwrap(),
            RevokeOutcome::Accepted
        );
    }
    let v = e.google.verify(&alex, &grants).await;
    assert!(
        v.iter().all(|(_, p)| matches!(p, Ok(Presence::Present))),
        "still listed within the delay: {v:?}"
    );
    common::wait_for(Duration::from_secs(10), "removals confirmed", || {
        let (g, a, gr) = (e.google.clone(), alex.clone(), grants.clone());
        async move {
            let v = g.verify(&a, &gr).await;
            v.iter()
                .all(|(_, p)| matches!(p, Ok(Presence::Absent)))
                .then_some(())
        }
    })
    .await;
    e.sb.stop().await;
}

#[tokio::test]
async fn device_account_wipe_is_confirmed_by_the_device_status() {
    let e = env(200).await;
    let priya = found(&*e.google, "priya.natarajan@example.com").await;
    let inv = e.google.list_grants(&priya).await;
    assert_complete(&inv);
    let devices = of_kind(&inv.grants, GrantKind::Device);
    assert_eq!(devices.len(), 1);
    let d = devices[0].clone();
    assert_eq!(
        e.google.revoke(&priya, &d).await.unwrap(),
        RevokeOutcome::Accepted
    );
    common::wait_for(Duration::from_secs(10), "device wiped", || {
        let (g, a, d) = (e.google.clone(), priya.clone(), d.clone());
        async move {
            let v = g.verify(&a, std::slice::from_ref(&d)).await;
            matches!(v[0].1, Ok(Presence::Absent)).then_some(())
        }
    })
    .await;
    {
        let st = e.sb.state.google.lock().unwrap();
        let rid = d.id.strip_prefix("device:").unwrap();
        let dev = st.devices.iter().find(|x| x.resource_id == rid).unwrap();
        assert_eq!(dev.action.as_ref().unwrap().0, "admin_account_wipe");
    }
    e.sb.stop().await;
}

#[tokio::test]
async fn pages_through_long_listings_and_verifies_with_one_read_per_kind() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let e = env_with(
        Options {
            faults: common::quick(100),
            access_log: Some(log.path().to_path_buf()),
            ..Options::default()
        },
        "\n[connectors.google.settings]\npage_size = 5\n",
    )
    .await;
    let dana = found(&*e.google, "dana.whitfield@example.com").await;
    let inv = e.google.list_grants(&dana).await;
    assert_complete(&inv);
    let groups: Vec<Grant> = of_kind(&inv.grants, GrantKind::Group)
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(groups.len(), 12, "three pages of 5, 5 and 2");
    let group_reads = |text: &str| {
        text.lines()
            .filter(|l| l.contains("\"path\":\"/admin/directory/v1/groups\""))
            .count()
    };
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert_eq!(group_reads(&text), 3);
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("/groups\"") && l.contains("pageToken="))
            .count(),
        2
    );
    // Verify all 12 groups: again three paged reads, not twelve.
    let v = e.google.verify(&dana, &groups).await;
    assert!(v.iter().all(|(_, p)| matches!(p, Ok(Presence::Present))));
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert_eq!(group_reads(&text), 6);
    e.sb.stop().await;
}

#[tokio::test]
async fn a_leaver_with_hundreds_of_groups_is_listed_completely() {
    let shape = offboard::sandbox::tenant::BenchShape {
        email: "bench.leaver@example.com".into(),
        groups: 450,
        tokens: 40,
        app_passwords: 12,
        ..offboard::sandbox::tenant::BenchShape::default()
    };
    let e = env_with(
        Options {
            faults: common::quick(100),
            bench_grants: Some(shape),
            ..Options::default()
        },
        "",
    )
    .await;
    let b = found(&*e.google, "bench.leaver@example.com").await;
    let inv = e.google.list_grants(&b).await;
    assert_complete(&inv);
    assert_eq!(of_kind(&inv.grants, GrantKind::Group).len(), 450);
    assert_eq!(of_kind(&inv.grants, GrantKind::OauthGrant).len(), 40);
    assert_eq!(of_kind(&inv.grants, GrantKind::AppPassword).len(), 12);
    let v = e.google.verify(&b, &inv.grants).await;
    assert_eq!(v.len(), inv.grants.len());
    assert!(v.iter().all(|(_, p)| matches!(p, Ok(Presence::Present))));
    // What no read holds (a licence of a product no longer configured, an
    // account step this driver does not make) is never taken for gone.
    let mut licence = inv.grants[0].clone();
    licence.kind = GrantKind::License;
    licence.id = "license:Google-Apps/retired-sku".into();
    let mut account = inv.grants[0].clone();
    account.kind = GrantKind::Account;
    account.id = "delete".into();
    let v = e.google.verify(&b, &[licence, account]).await;
    assert!(v.iter().all(|(_, p)| p.is_err()), "{v:?}");
    e.sb.stop().await;
}

#[tokio::test]
async fn a_listing_that_fails_mid_pagination_is_failed_not_absent() {
    let e = env_with(
        Options {
            faults: common::quick(100),
            ..Options::default()
        },
        "\n[connectors.google.settings]\npage_size = 5\n\n[connectors.google.limits]\nmax_retries = 1\n",
    )
    .await;
    let dana = found(&*e.google, "dana.whitfield@example.com").await;
    let before = e.google.list_grants(&dana).await;
    let groups: Vec<Grant> = of_kind(&before.grants, GrantKind::Group)
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(groups.len(), 12);
    e.sb.state.google.lock().unwrap().fail_paged_requests = true;
    let inv = e.google.list_grants(&dana).await;
    let err = inv.kind_failed(GrantKind::Group).expect("groups failed");
    assert!(
        matches!(err, ConnectorError::Api { status: 503, .. }),
        "{err:?}"
    );
    assert!(
        of_kind(&inv.grants, GrantKind::Group).is_empty(),
        "a partial list is not shown"
    );
    // Other kinds still read fine.
    assert_eq!(of_kind(&inv.grants, GrantKind::OauthGrant).len(), 6);
    // And verification never turns the failure into absence.
    let v = e.google.verify(&dana, &groups).await;
    assert!(v.iter().all(|(_, p)| p.is_err()), "{v:?}");
    e.sb.stop().await;
}

#[tokio::test]
async fn per_user_quota_answers_are_retried_until_they_succeed() {
    let mut e = env_with(
        Options {
            faults: Faults {
                google_user_quota_per_min: Some(240),
                ..common::quick(100)
            },
            ..Options::default()
        },
        "",
    )
    .await;
    let dana = found(&*e.google, "dana.whitfield@example.com").await;
    let inv = tokio::time::timeout(Duration::from_secs(60), e.google.list_grants(&dana))
        .await
        .expect("finishes");
    assert_complete(&inv);
    assert_eq!(of_kind(&inv.grants, GrantKind::Group).len(), 12);
    let mut limited = 0;
    while let Ok(n) = e.notices.try_recv() {
        if matches!(n, HttpNotice::RateLimited { .. }) {
            limited += 1;
        }
    }
    assert!(limited > 0, "the quota was hit and waited out");
    e.sb.stop().await;
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_and_retried() {
    let mut e = env(100).await;
    let dana = found(&*e.google, "dana.whitfield@example.com").await;
    e.sb.set_faults(Faults {
        rate_429: 1.0,
        google_429: true,
        retry_after_secs: 1,
        path_prefix: Some("/admin/directory/v1/users/".into()),
        ..common::quick(100)
    });
    let google = e.google.clone();
    let a = dana.clone();
    let task = tokio::spawn(async move {
        google
            .verify(
                &a,
                &[Grant {
                    connector: "google".into(),
                    id: "suspend".into(),
                    kind: GrantKind::Account,
                    label: String::new(),
                    details: String::new(),
                    risk: offboard::model::Risk::High,
                    revocation: Revocation::Api,
                    since: None,
                    phase: None,
                    after: Vec::new(),
                }],
            )
            .await
    });
    let notice = tokio::time::timeout(Duration::from_secs(10), e.notices.recv())
        .await
        .expect("a notice comes")
        .unwrap();
    match notice {
        HttpNotice::RateLimited { wait, .. } => assert!(wait >= Duration::from_secs(1), "{wait:?}"),
        other => panic!("{other:?}"),
    }
    e.sb.set_faults(common::quick(100));
    let v = task.await.unwrap();
    assert!(matches!(v[0].1, Ok(Presence::Present)), "{v:?}");
    e.sb.stop().await;
}

#[tokio::test]
async fn addresses_that_need_percent_encoding_reach_the_right_user() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let e = env_with(
        Options {
            faults: common::quick(100),
            access_log: Some(log.path().to_path_buf()),
            ..Options::default()
        },
        "",
    )
    .await;
    let odd = found(&*e.google, ODD_EMAIL).await;
    assert_eq!(odd.login, ODD_EMAIL);
    let inv = e.google.list_grants(&odd).await;
    assert_complete(&inv);
    assert_eq!(of_kind(&inv.grants, GrantKind::OauthGrant).len(), 1);
    assert_eq!(of_kind(&inv.grants, GrantKind::AppPassword).len(), 1);
    assert_eq!(of_kind(&inv.grants, GrantKind::Group).len(), 1);
    assert_eq!(of_kind(&inv.grants, GrantKind::License).len(), 1);
    let token = of_kind(&inv.grants, GrantKind::OauthGrant)[0].clone();
    assert_eq!(
        e.google.revoke(&odd, &token).await.unwrap(),
        RevokeOutcome::Accepted
    );
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        text.contains("/admin/directory/v1/users/o'brien%2Fops%231%3Fx@example.com/tokens/"),
        "{text}"
    );
    e.sb.stop().await;
}

#[tokio::test]
async fn api_calls_without_a_valid_token_get_googles_401() {
    let sb = common::sandbox(common::quick(100)).await;
    let client = reqwest::Client::new();
    for auth in [None, Some("Bearer ya29.forged")] {
        let mut req = client.get(format!(
            "{}/admin/directory/v1/users/dana.whitfield@example.com",
            sb.base_url
        ));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], 401);
        assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
    }
    sb.stop().await;
}

#[tokio::test]
async fn the_token_endpoint_refuses_a_bad_signature_and_the_driver_says_so_safely() {
    let sb = common::sandbox(common::quick(100)).await;
    let dir = tempfile::tempdir().unwrap();
    // A service-account file whose key is not the one Google knows.
    sandbox::write_demo_keys(dir.path()).unwrap();
    let sa_path = dir.path().join("google-service-account.json");
    let mut sa: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sa_path).unwrap()).unwrap();
    sa["private_key"] = serde_json::json!(offboard::apps::salesforce::DEMO_PRIVATE_KEY);
    std::fs::write(&sa_path, sa.to_string()).unwrap();

    // The endpoint itself answers with Google's OAuth error body.
    let jwt = offboard::auth::jwt::JwtBearer::new(
        shared_reqwest(),
        offboard::auth::jwt::JwtBearerConfig {
            token_url: url::Url::parse(&format!("{}/token", sb.base_url)).unwrap(),
            issuer: offboard::apps::google::DEMO_CLIENT_EMAIL.into(),
            subject: Some(sandbox::DEMO_ADMIN.into()),
            scopes: vec!["https://www.googleapis.com/auth/admin.directory.user".into()],
            audience: None,
            private_key_pem: offboard::secret::Secret::new(
                offboard::apps::salesforce::DEMO_PRIVATE_KEY,
            ),
            key_id: None,
        },
    )
    .unwrap();
    let assertion = jwt.assertion().unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/token", sb.base_url))
        .form(&[
            ("grant_type", offboard::auth::jwt::GRANT_TYPE),
            ("assertion", assertion.expose()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_grant");
    assert_eq!(v["error_description"], "Invalid JWT Signature.");

    // The driver surfaces an Auth error that carries neither assertion nor token.
    let path = dir.path().join("config.toml");
    std::fs::write(&path, sandbox::demo_config(&sb.base_url, dir.path())).unwrap();
    let loaded = offboard::config::load(&path).unwrap();
    let resolved = loaded
        .connectors()
        .unwrap()
        .into_iter()
        .find(|c| c.id == "google")
        .unwrap();
    let ctx = BuildContext {
        http: shared_reqwest(),
        notices: None,
        data_dir: dir.path().to_path_buf(),
    };
    let google = build(&resolved, &ctx).unwrap();
    let err = google
        .find_person(&Person::new("dana.whitfield@example.com"))
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, ConnectorError::Auth(_)), "{text}");
    assert!(text.contains("invalid_grant"), "{text}");
    assert!(!text.contains("eyJ"), "no assertion in: {text}");
    assert!(!text.contains("ya29"), "no token in: {text}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    assert_eq!(
        google.health().state,
        offboard::connector::HealthState::AuthError
    );
    sb.stop().await;
}

#[tokio::test]
async fn the_token_endpoint_refuses_a_subject_that_is_not_an_admin() {
    let sb = common::sandbox(common::quick(100)).await;
    let dir = tempfile::tempdir().unwrap();
    let (google, _rx) = connect(&sb, dir.path(), "");
    drop(google);
    let path = dir.path().join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "subject = \"admin@example.com\"",
        "subject = \"ada.abbott@example.com\"",
    );
    std::fs::write(&path, text).unwrap();
    let loaded = offboard::config::load(&path).unwrap();
    let resolved = loaded
        .connectors()
        .unwrap()
        .into_iter()
        .find(|c| c.id == "google")
        .unwrap();
    let ctx = BuildContext {
        http: shared_reqwest(),
        notices: None,
        data_dir: dir.path().to_path_buf(),
    };
    let google = build(&resolved, &ctx).unwrap();
    let err = google
        .find_person(&Person::new("dana.whitfield@example.com"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ConnectorError::Auth(m) if m.contains("unauthorized_client")),
        "{err:?}"
    );
    sb.stop().await;
}

#[tokio::test]
async fn api_text_is_sanitised_before_it_reaches_labels() {
    let e = env(100).await;
    {
        let mut st = e.sb.state.google.lock().unwrap();
        let u = st.user_index("alex.chen@example.com").unwrap();
        let t = st.tokens.iter_mut().find(|t| t.user == u).unwrap();
        t.display_text = "Evil\u{1b}]0;pwned\u{7}\u{202e}App".into();
    }
    let alex = found(&*e.google, "alex.chen@example.com").await;
    let inv = e.google.list_grants(&alex).await;
    for g in &inv.grants {
        for s in [&g.label, &g.details, &g.id] {
            assert!(
                !s.chars().any(|c| c.is_control() || c == '\u{202e}'),
                "{s:?}"
            );
        }
    }
    assert!(
        inv.grants
            .iter()
            .any(|g| g.label.contains("Evil^[]0;pwned^G"))
    );
    let _ = &e.dir;
    e.sb.stop().await;
}

/// Google's own Python client (google-api-python-client and google-auth,
/// unmodified: discovery-built services with `rootUrl` pointed here, a
/// service-account JWT signed for Google's token URL) runs an offboarding
/// against the sandbox: partial responses, its own paging, a batch of
/// membership removals, `users.update`, licence listings and 2-Step
/// Verification turn-off, each confirmed by a fresh read.
/// `.ci/run` installs the packages; see tests/clients/google_client.py.
#[tokio::test]
async fn googles_own_python_client_runs_an_offboarding() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let probe = tokio::process::Command::new("python3")
        .args([
            "-c",
            "import googleapiclient.discovery, google.oauth2.service_account, google_auth_httplib2",
        ])
        .output()
        .await;
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs python3 with google-api-python-client and google-auth \
         (pip install google-api-python-client google-auth): {probe:?}"
    );
    let log = tempfile::NamedTempFile::new().unwrap();
    let sb = sandbox::start(Options {
        faults: common::quick(200),
        access_log: Some(log.path().to_path_buf()),
        ..Options::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    sandbox::write_demo_keys(dir.path()).unwrap();
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(root.join("tests/clients/google_client.py"))
        .arg("--base-url")
        .arg(&sb.base_url)
        .arg("--key-file")
        .arg(dir.path().join("google-service-account.json"))
        .kill_on_drop(true);
    // The project's copies of the discovery documents when they are there
    // (else the client's own copies of the same documents).
    let specs = root.join("../shared/specs");
    for (flag, file) in [
        ("--directory-doc", "google-admin-directory-v1.json"),
        ("--licensing-doc", "google-licensing-v1.json"),
        ("--datatransfer-doc", "google-admin-datatransfer-v1.json"),
    ] {
        if specs.join(file).is_file() {
            cmd.arg(flag).arg(specs.join(file));
        }
    }
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .expect("the client finishes in time")
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the client failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("offboarded dana.whitfield@example.com"),
        "{stdout}"
    );
    // It used what it was meant to, and the sandbox answered each.
    let text = std::fs::read_to_string(log.path()).unwrap();
    for needle in [
        r#""method":"PUT","path":"/admin/directory/v1/users/dana.whitfield%40example.com""#,
        r#""method":"POST","path":"/batch","query":null,"status":200"#,
        "fields=items%28clientId%2CdisplayText%29",
        "/twoStepVerification/turnOff",
        "/apps/licensing/v1/product/Google-Apps/users",
        "/customers/my_customer",
        r#""method":"POST","path":"/admin/datatransfer/v1/transfers""#,
    ] {
        assert!(text.contains(needle), "{needle} not in the access log");
    }
    {
        let st = sb.state.google.lock().unwrap();
        let u = st.user_index("dana.whitfield@example.com").unwrap();
        assert!(st.users[u].suspended && !st.users[u].two_sv);
        assert!(
            st.memberships
                .iter()
                .filter(|m| m.user == u)
                .all(|m| m.removed_at.is_some())
        );
    }
    sb.stop().await;
}

// ---- the API as any Google client calls it ---------------------------------

const DIR: &str = "/admin/directory/v1";

/// A signed service-account assertion for the demo admin with this audience
/// (None: the token URL it is posted to).
fn assertion(sb: &Running, audience: Option<&str>, scopes: &[&str]) -> String {
    assertion_as(sb, sandbox::DEMO_ADMIN, audience, scopes)
}

fn assertion_as(sb: &Running, subject: &str, audience: Option<&str>, scopes: &[&str]) -> String {
    let jwt = offboard::auth::jwt::JwtBearer::new(
        shared_reqwest(),
        offboard::auth::jwt::JwtBearerConfig {
            token_url: url::Url::parse(&format!("{}/token", sb.base_url)).unwrap(),
            issuer: offboard::apps::google::DEMO_CLIENT_EMAIL.into(),
            subject: Some(subject.into()),
            scopes: scopes
                .iter()
                .map(|s| format!("https://www.googleapis.com/auth/{s}"))
                .collect(),
            audience: audience.map(str::to_string),
            private_key_pem: offboard::secret::Secret::new(
                offboard::apps::google::DEMO_PRIVATE_KEY,
            ),
            key_id: None,
        },
    )
    .unwrap();
    jwt.assertion().unwrap().expose().to_string()
}

async fn post_assertion(sb: &Running, assertion: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/token", sb.base_url))
        .form(&[
            ("grant_type", offboard::auth::jwt::GRANT_TYPE),
            ("assertion", assertion),
        ])
        .send()
        .await
        .unwrap()
}

const ALL_SCOPES: &[&str] = &[
    "admin.directory.user",
    "admin.directory.user.security",
    "admin.directory.group",
    "admin.directory.customer.readonly",
    "apps.licensing",
];

/// A client holding an access token with every scope the calls need.
struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn new(sb: &Running) -> Api {
        Api::as_admin(sb, sandbox::DEMO_ADMIN).await
    }

    async fn as_admin(sb: &Running, subject: &str) -> Api {
        let r = post_assertion(sb, &assertion_as(sb, subject, None, ALL_SCOPES)).await;
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        Api {
            base: sb.base_url.clone(),
            token: v["access_token"].as_str().unwrap().to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"))
        };
        (status, v)
    }

    async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
}

fn keys(v: &serde_json::Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

fn emails(v: &serde_json::Value) -> Vec<String> {
    v["groups"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|g| g["email"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

const DANA: &str = "dana.whitfield%40example.com";

#[tokio::test]
async fn the_token_endpoint_accepts_googles_token_url_as_audience() {
    let sb = common::sandbox(common::quick(100)).await;
    // What Google's client libraries sign, whatever URL they post to.
    let r = post_assertion(
        &sb,
        &assertion(&sb, Some("https://oauth2.googleapis.com/token"), ALL_SCOPES),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["access_token"].as_str().unwrap().starts_with("ya29."));
    // Its own URL still works; any other audience does not.
    assert_eq!(
        post_assertion(&sb, &assertion(&sb, None, ALL_SCOPES))
            .await
            .status(),
        200
    );
    let r = post_assertion(
        &sb,
        &assertion(&sb, Some("https://elsewhere.example/token"), ALL_SCOPES),
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v["error_description"],
        "Invalid JWT: Failed audience check."
    );
    sb.stop().await;
}

#[tokio::test]
async fn users_update_is_put_with_the_same_suspension_as_patch() {
    let sb = common::sandbox(common::quick(100)).await;
    let api = Api::new(&sb).await;
    let path = format!("{DIR}/users/{DANA}");
    let (st, v) = api
        .call(
            reqwest::Method::PUT,
            &path,
            Some(serde_json::json!({"suspended": true})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["suspended"], true);
    assert_eq!(v["suspensionReason"], "ADMIN");
    common::wait_for(Duration::from_secs(10), "suspension shows", || async {
        (api.get(&path).await.1["suspended"] == true).then_some(())
    })
    .await;
    let (st, v) = api
        .call(
            reqwest::Method::PUT,
            &path,
            Some(serde_json::json!({"suspended": false})),
        )
        .await;
    assert_eq!((st, &v["suspended"]), (200, &serde_json::json!(false)));
    assert_eq!(api.get(&path).await.1["suspended"], false);
    let (st, v) = api
        .call(
            reqwest::Method::PUT,
            &path,
            Some(serde_json::json!({"suspended": "yes"})),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    sb.stop().await;
}

#[tokio::test]
async fn groups_list_honours_search_customer_domain_user_and_order() {
    let sb = common::sandbox(common::quick(100)).await;
    let api = Api::new(&sb).await;
    let g = |q: String| {
        let api = &api;
        async move { api.get(&format!("{DIR}/groups?{q}")).await }
    };
    let (st, by_user) = g(format!("userKey={DANA}")).await;
    assert_eq!(st, 200);
    let mut mine = emails(&by_user);
    assert_eq!(mine.len(), 12, "{mine:?}");
    // A member search finds the same groups, and only those.
    let (st, searched) = g(format!(
        "customer=my_customer&query=memberKey%3D{DANA}&orderBy=email"
    ))
    .await;
    assert_eq!(st, 200, "{searched}");
    mine.sort();
    assert_eq!(emails(&searched), mine);
    let (_, desc) = g(format!(
        "customer=my_customer&query=memberKey%3D{DANA}&orderBy=email&sortOrder=DESCENDING"
    ))
    .await;
    let mut rev = mine.clone();
    rev.reverse();
    assert_eq!(emails(&desc), rev);
    let (_, nobody) = g("customer=my_customer&query=memberKey%3Dnobody%40example.com".into()).await;
    assert!(emails(&nobody).is_empty());
    // Email and name clauses.
    let (_, sales) = g("domain=example.com&query=email%3Asales*".into()).await;
    assert_eq!(
        emails(&sales),
        [
            "sales@example.com",
            "sales-emea@example.com",
            "sales-na@example.com"
        ]
    );
    let (_, exact) = g("customer=my_customer&query=name%3D%27payroll%27".into()).await;
    assert_eq!(emails(&exact), ["payroll@example.com"]);
    // The whole customer or domain, paged.
    let (_, page) = g("customer=my_customer&maxResults=25".into()).await;
    assert_eq!(emails(&page).len(), 25);
    assert!(page["nextPageToken"].is_string());
    let (_, all) = g("domain=example.com".into()).await;
    assert_eq!(emails(&all).len(), 40);
    // What Google refuses.
    for (q, want) in [
        ("maxResults=10".to_string(), 400),
        (format!("customer=my_customer&userKey={DANA}"), 400),
        ("customer=C0nobody".into(), 400),
        ("customer=my_customer&orderBy=name".into(), 400),
        ("customer=my_customer&query=owner%3Dx".into(), 400),
        ("domain=elsewhere.example".into(), 403),
    ] {
        let (st, v) = g(q.clone()).await;
        assert_eq!(st, want, "{q}: {v}");
        assert_eq!(v["error"]["code"], want, "{q}: {v}");
    }
    sb.stop().await;
}

#[tokio::test]
async fn groups_and_members_can_be_read_one_by_one() {
    let sb = common::sandbox(common::quick(300)).await;
    let api = Api::new(&sb).await;
    let (st, by_email) = api
        .get(&format!("{DIR}/groups/payroll%40example.com"))
        .await;
    assert_eq!(st, 200);
    assert_eq!(by_email["kind"], "admin#directory#group");
    let id = by_email["id"].as_str().unwrap();
    let (st, by_id) = api.get(&format!("{DIR}/groups/{id}")).await;
    assert_eq!((st, &by_id), (200, &by_email));
    assert_eq!(
        api.get(&format!("{DIR}/groups/nope%40example.com")).await.0,
        404
    );

    let member = format!("{DIR}/groups/payroll%40example.com/members/{DANA}");
    let (st, m) = api.get(&member).await;
    assert_eq!(st, 200, "{m}");
    assert_eq!(m["kind"], "admin#directory#member");
    assert_eq!(m["email"], "dana.whitfield@example.com");
    assert_eq!((&m["type"], &m["role"]), (&"USER".into(), &"MEMBER".into()));
    let has = format!("{DIR}/groups/payroll%40example.com/hasMember/{DANA}");
    assert_eq!(api.get(&has).await.1, serde_json::json!({"isMember": true}));
    let (st, v) = api
        .get(&format!(
            "{DIR}/groups/payroll%40example.com/members/admin%40example.com"
        ))
        .await;
    assert_eq!(
        (st, &v["error"]["errors"][0]["reason"]),
        (404, &"notFound".into())
    );

    // A removal shows in both once the consistency delay has passed.
    assert_eq!(
        api.call(reqwest::Method::DELETE, &member, None).await.0,
        204
    );
    common::wait_for(Duration::from_secs(10), "membership gone", || async {
        (api.get(&member).await.0 == 404).then_some(())
    })
    .await;
    assert_eq!(
        api.get(&has).await.1,
        serde_json::json!({"isMember": false})
    );
    sb.stop().await;
}

#[tokio::test]
async fn customers_get_answers_my_customer() {
    let sb = common::sandbox(common::quick(100)).await;
    let api = Api::new(&sb).await;
    let (st, c) = api.get(&format!("{DIR}/customers/my_customer")).await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["kind"], "admin#directory#customer");
    assert_eq!(c["customerDomain"], "example.com");
    let id = c["id"].as_str().unwrap();
    assert_eq!(api.get(&format!("{DIR}/customers/{id}")).await.1, c);
    assert_eq!(api.get(&format!("{DIR}/customers/C0other")).await.0, 404);
    sb.stop().await;
}

#[tokio::test]
async fn licence_assignments_list_for_a_product_and_for_a_sku() {
    let sb = common::sandbox(common::quick(100)).await;
    let api = Api::new(&sb).await;
    let c = offboard::apps::google::twin::CUSTOMER_ID;
    let l = "/apps/licensing/v1/product/Google-Apps";
    let mut all = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let tok = next
            .as_deref()
            .map(|t| format!("&pageToken={t}"))
            .unwrap_or_default();
        let (st, v) = api
            .get(&format!("{l}/users?customerId={c}&maxResults=100{tok}"))
            .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["kind"], "licensing#licenseAssignmentList");
        all.extend(v["items"].as_array().unwrap().iter().cloned());
        match v["nextPageToken"].as_str() {
            Some(t) => next = Some(t.to_string()),
            None => break,
        }
    }
    assert!(all.len() > 100, "{}", all.len());
    let dana: Vec<_> = all
        .iter()
        .filter(|x| x["userId"] == "dana.whitfield@example.com")
        .collect();
    assert_eq!(dana.len(), 1);
    assert_eq!(dana[0]["skuId"], "1010020020");
    let (st, sku) = api
        .get(&format!(
            "{l}/sku/1010020020/users?customerId=example.com&maxResults=1000"
        ))
        .await;
    assert_eq!(st, 200);
    let sku = sku["items"].as_array().unwrap();
    assert!(sku.len() < all.len() && sku.iter().all(|x| x["skuId"] == "1010020020"));
    assert!(
        sku.iter()
            .any(|x| x["userId"] == "dana.whitfield@example.com")
    );
    // Never an empty, all-clear list for a question asked wrong.
    for q in [
        format!("{l}/users"),
        format!("{l}/users?customerId=C0other"),
        format!("/apps/licensing/v1/product/No-Such/users?customerId={c}"),
        format!("{l}/sku/0000/users?customerId={c}"),
        format!("{l}/users?customerId={c}&maxResults=1001"),
    ] {
        assert_eq!(api.get(&q).await.0, 400, "{q}");
    }
    sb.stop().await;
}

#[tokio::test]
async fn two_step_verification_can_be_turned_off() {
    let sb = common::sandbox(common::quick(100)).await;
    let api = Api::new(&sb).await;
    let user = format!("{DIR}/users/{DANA}");
    assert_eq!(api.get(&user).await.1["isEnrolledIn2Sv"], true);
    let (st, _) = api
        .call(
            reqwest::Method::POST,
            &format!("{user}/twoStepVerification/turnOff"),
            None,
        )
        .await;
    assert_eq!(st, 204);
    assert_eq!(api.get(&user).await.1["isEnrolledIn2Sv"], false);
    let (_, codes) = api.get(&format!("{user}/verificationCodes")).await;
    assert!(codes.get("items").is_none(), "{codes}");
    let (st, _) = api
        .call(
            reqwest::Method::POST,
            &format!("{DIR}/users/nobody%40example.com/twoStepVerification/turnOff"),
            None,
        )
        .await;
    assert_eq!(st, 404);
    sb.stop().await;
}

#[tokio::test]
async fn fields_gives_a_partial_response_on_every_get() {
    let sb = common::sandbox(common::quick(100)).await;
    let api = Api::new(&sb).await;
    let (st, v) = api
        .get(&format!(
            "{DIR}/users/{DANA}/tokens?fields=items(clientId%2CdisplayText)"
        ))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(keys(&v), ["items"]);
    for t in v["items"].as_array().unwrap() {
        assert_eq!(keys(t), ["clientId", "displayText"]);
    }
    let (_, v) = api
        .get(&format!(
            "{DIR}/groups?customer=my_customer&maxResults=5&fields=nextPageToken,groups/email"
        ))
        .await;
    assert_eq!(keys(&v), ["groups", "nextPageToken"]);
    assert!(
        v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| keys(g) == ["email"])
    );
    let (_, v) = api.get(&format!("{DIR}/users/{DANA}?fields=id")).await;
    assert_eq!(keys(&v), ["id"]);
    let (_, v) = api
        .get(&format!(
            "{DIR}/users/{DANA}?fields=name/givenName,primaryEmail"
        ))
        .await;
    assert_eq!(
        v,
        serde_json::json!({"name": {"givenName": "Dana"}, "primaryEmail": "dana.whitfield@example.com"})
    );
    let (_, v) = api
        .get(&format!(
            "/apps/licensing/v1/product/Google-Apps/sku/1010020020/user/{DANA}?fields=skuId"
        ))
        .await;
    assert_eq!(v, serde_json::json!({"skuId": "1010020020"}));
    // A malformed selection is Google's 400; errors are never filtered.
    let (st, v) = api.get(&format!("{DIR}/users/{DANA}?fields=items(")).await;
    assert_eq!(st, 400);
    assert_eq!(v["error"]["errors"][0]["reason"], "invalidParameter");
    let (st, v) = api
        .get(&format!("{DIR}/users/nobody%40example.com?fields=id"))
        .await;
    assert_eq!((st, &v["error"]["code"]), (404, &404.into()));
    sb.stop().await;
}

/// A multipart/mixed batch body of `(content id, request text)` parts.
fn batch_body(boundary: &str, parts: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (id, req) in parts {
        out.push_str(&format!(
            "--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <{id}>\r\n\r\n{req}\r\n"
        ));
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    out
}

/// The parts of a batch answer: (Content-ID, status, JSON body or Null).
fn batch_answers(content_type: &str, body: &str) -> Vec<(String, u16, serde_json::Value)> {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .unwrap()
        .trim_matches('"');
    body.split(&format!("--{boundary}"))
        .skip(1)
        .filter(|p| !p.starts_with("--"))
        .map(|p| {
            let (mime, http) = p.split_once("\r\n\r\n").unwrap();
            let id = mime
                .lines()
                .find_map(|l| l.strip_prefix("Content-ID: "))
                .unwrap_or("")
                .to_string();
            let (head, body) = http.split_once("\r\n\r\n").unwrap();
            let status = head.split(' ').nth(1).unwrap().parse().unwrap();
            let body = body.trim_end_matches("\r\n");
            let v = if body.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::from_str(body).unwrap()
            };
            (id, status, v)
        })
        .collect()
}

#[tokio::test]
async fn batch_answers_each_part_as_the_single_call_would() {
    let sb = common::sandbox(common::quick(100)).await;
    let api = Api::new(&sb).await;
    let auth = format!("Authorization: Bearer {}", api.token);
    let b = "batch_test_1";
    let body = batch_body(
        b,
        &[
            // Inherits the outer Authorization header.
            (
                "a+1",
                format!("GET {DIR}/users/{DANA}?fields=primaryEmail HTTP/1.1\r\n"),
            ),
            (
                "a+2",
                format!(
                    "DELETE {DIR}/groups/payroll%40example.com/members/{DANA} HTTP/1.1\r\n{auth}\r\n"
                ),
            ),
            (
                "a+3",
                format!(
                    "DELETE {DIR}/groups/payroll%40example.com/members/admin%40example.com HTTP/1.1\r\n"
                ),
            ),
            (
                "a+4",
                format!(
                    "PUT {DIR}/users/{DANA} HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{{\"suspended\":true}}"
                ),
            ),
            (
                "a+5",
                format!(
                    "GET /apps/licensing/v1/product/Google-Apps/sku/1010020020/user/{DANA} HTTP/1.1\r\nAuthorization: Bearer ya29.forged\r\n"
                ),
            ),
            ("a+6", "GET /api/auth.test HTTP/1.1\r\n".to_string()),
        ],
    );
    let r = reqwest::Client::new()
        .post(format!("{}/batch", sb.base_url))
        .bearer_auth(&api.token)
        .header("content-type", format!("multipart/mixed; boundary=\"{b}\""))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("multipart/mixed; boundary="), "{ct}");
    let answers = batch_answers(&ct, &r.text().await.unwrap());
    let got: Vec<(&str, u16)> = answers.iter().map(|(i, s, _)| (i.as_str(), *s)).collect();
    assert_eq!(
        got,
        [
            ("<response-a+1>", 200),
            ("<response-a+2>", 204),
            ("<response-a+3>", 404),
            ("<response-a+4>", 200),
            ("<response-a+5>", 401),
            ("<response-a+6>", 400),
        ]
    );
    assert_eq!(
        answers[0].2,
        serde_json::json!({"primaryEmail": "dana.whitfield@example.com"})
    );
    assert_eq!(answers[2].2["error"]["errors"][0]["reason"], "notFound");
    assert_eq!(answers[3].2["suspended"], true);
    assert_eq!(answers[4].2["error"]["status"], "UNAUTHENTICATED");
    {
        let st = sb.state.google.lock().unwrap();
        let u = st.user_index("dana.whitfield@example.com").unwrap();
        assert!(st.users[u].suspended);
    }
    // Not a batch: Google's 400.
    let r = reqwest::Client::new()
        .post(format!("{}/batch", sb.base_url))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], 400);
    sb.stop().await;
}

#[tokio::test]
async fn batch_parts_meet_the_same_quota_as_single_calls() {
    let sb = common::sandbox(Faults {
        google_user_quota_per_min: Some(2),
        ..common::quick(100)
    })
    .await;
    let api = Api::new(&sb).await;
    let b = "q";
    let parts: Vec<(String, String)> = (0..4)
        .map(|i| {
            (
                format!("q{i}"),
                format!("GET {DIR}/users/{DANA}/tokens HTTP/1.1\r\n"),
            )
        })
        .collect();
    let parts: Vec<(&str, String)> = parts.iter().map(|(i, r)| (i.as_str(), r.clone())).collect();
    let r = reqwest::Client::new()
        .post(format!("{}/batch", sb.base_url))
        .bearer_auth(&api.token)
        .header("content-type", format!("multipart/mixed; boundary={b}"))
        .body(batch_body(b, &parts))
        .send()
        .await
        .unwrap();
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    let answers = batch_answers(&ct, &r.text().await.unwrap());
    let statuses: Vec<u16> = answers.iter().map(|a| a.1).collect();
    // A bucket of one, refilled twice a minute: the first part passes.
    assert_eq!(statuses, [200, 403, 403, 403]);
    assert!(
        answers
            .iter()
            .filter(|a| a.1 == 403)
            .all(|a| a.2["error"]["errors"][0]["reason"] == "userRateLimitExceeded")
    );
    sb.stop().await;
}

#[tokio::test]
async fn users_list_searches_and_one_token_or_app_password_can_be_read() {
    let sb = common::sandbox(common::quick(200)).await;
    let api = Api::new(&sb).await;
    let users = |q: &str| {
        let api = &api;
        let q = q.to_string();
        async move { api.get(&format!("{DIR}/users?{q}")).await }
    };
    let primary = |v: &serde_json::Value| -> Vec<String> {
        v["users"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|u| u["primaryEmail"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    // The lookup REFERENCE.md documents, by primary address and by alias.
    let (st, v) = users("customer=my_customer&query=email%3Adana.whitfield%40example.com").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["kind"], "admin#directory#users");
    assert_eq!(primary(&v), ["dana.whitfield@example.com"]);
    let (_, v) = users("customer=my_customer&query=email%3Ddana.w%40example.com").await;
    assert_eq!(primary(&v), ["dana.whitfield@example.com"]);
    let (_, v) = users("domain=example.com&query=isSuspended%3Dtrue").await;
    assert!(primary(&v).contains(&"tom.becker@example.com".to_string()));
    let (_, v) = users("customer=my_customer&query=email%3Anobody%40example.com").await;
    assert!(v.get("users").is_none(), "{v}");
    let (_, v) = users("customer=my_customer&orderBy=email&maxResults=500").await;
    let all = primary(&v);
    assert!(all.len() >= 300 && v.get("nextPageToken").is_none());
    let mut sorted = all.clone();
    sorted.sort_by_key(|e| e.to_lowercase());
    assert_eq!(all, sorted);
    for q in [
        "maxResults=10",
        "customer=my_customer&maxResults=501",
        "customer=my_customer&query=shoeSize%3D9",
    ] {
        assert_eq!(users(q).await.0, 400, "{q}");
    }

    // tokens.get and asps.get.
    let (_, list) = api.get(&format!("{DIR}/users/{DANA}/tokens")).await;
    let client = list["items"][0]["clientId"].as_str().unwrap().to_string();
    let one = format!("{DIR}/users/{DANA}/tokens/{client}");
    let (st, t) = api.get(&one).await;
    assert_eq!((st, &t), (200, &list["items"][0]));
    let (_, asps) = api.get(&format!("{DIR}/users/{DANA}/asps")).await;
    let code = asps["items"][0]["codeId"].as_i64().unwrap();
    let (st, a) = api.get(&format!("{DIR}/users/{DANA}/asps/{code}")).await;
    assert_eq!((st, &a), (200, &asps["items"][0]));
    assert_eq!(api.get(&format!("{DIR}/users/{DANA}/asps/1")).await.0, 404);
    assert_eq!(api.call(reqwest::Method::DELETE, &one, None).await.0, 204);
    common::wait_for(Duration::from_secs(10), "token gone", || async {
        (api.get(&one).await.0 == 404).then_some(())
    })
    .await;

    // makeAdmin.
    let make = format!("{DIR}/users/{DANA}/makeAdmin");
    let (st, _) = api
        .call(
            reqwest::Method::POST,
            &make,
            Some(serde_json::json!({"status": true})),
        )
        .await;
    assert_eq!(st, 204);
    assert_eq!(
        api.get(&format!("{DIR}/users/{DANA}")).await.1["isAdmin"],
        true
    );
    let (st, _) = api
        .call(
            reqwest::Method::POST,
            &make,
            Some(serde_json::json!({"status": "no"})),
        )
        .await;
    assert_eq!(st, 400);
    sb.stop().await;
}

/// Google counts the per-user quota against the caller (the admin a token
/// acts as), whatever user a request is about, and the per-project quota
/// against every caller of the project together; each with its own answer.
#[tokio::test]
async fn quotas_count_per_caller_and_per_project_with_googles_answers() {
    let sb = common::sandbox(common::quick(0)).await;
    let admin = Api::new(&sb).await;
    let (st, _) = admin
        .call(
            reqwest::Method::POST,
            &format!("{DIR}/users/lena.kowalski%40example.com/makeAdmin"),
            Some(serde_json::json!({"status": true})),
        )
        .await;
    assert_eq!(st, 204);
    let lena = Api::as_admin(&sb, "lena.kowalski@example.com").await;
    let tokens = |u: &str| format!("{DIR}/users/{u}/tokens");
    // One request a second per caller, a bucket of one.
    sb.set_faults(Faults {
        google_user_quota_per_min: Some(60),
        ..common::quick(0)
    });
    assert_eq!(admin.get(&tokens(DANA)).await.0, 200);
    // Another user, the same caller: refused, in Google's words.
    let (st, v) = admin.get(&tokens("priya.natarajan%40example.com")).await;
    assert_eq!(st, 403, "{v}");
    assert_eq!(v["error"]["errors"][0]["reason"], "userRateLimitExceeded");
    assert_eq!(v["error"]["errors"][0]["domain"], "usageLimits");
    assert_eq!(v["error"]["status"], "PERMISSION_DENIED");
    // Another caller has its own bucket.
    assert_eq!(lena.get(&tokens(DANA)).await.0, 200);

    // The project's quota is shared by both callers.
    sb.set_faults(Faults {
        google_project_quota_per_min: Some(60),
        ..common::quick(0)
    });
    assert_eq!(admin.get(&tokens(DANA)).await.0, 200);
    let (st, v) = lena.get(&tokens(DANA)).await;
    assert_eq!(st, 429, "{v}");
    assert_eq!(v["error"]["errors"][0]["reason"], "rateLimitExceeded");
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'Queries per minute'"),
        "{v}"
    );
    // It refills at its rate: within a few seconds the next one passes.
    let passed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if lena.get(&tokens(DANA)).await.0 == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(passed.is_ok(), "the project bucket refills");
    sb.stop().await;
}

#[tokio::test]
async fn per_project_quota_answers_are_retried_until_they_succeed() {
    let mut e = env_with(
        Options {
            faults: Faults {
                google_project_quota_per_min: Some(240),
                ..common::quick(100)
            },
            ..Options::default()
        },
        "",
    )
    .await;
    let dana = found(&*e.google, "dana.whitfield@example.com").await;
    let inv = tokio::time::timeout(Duration::from_secs(60), e.google.list_grants(&dana))
        .await
        .expect("finishes");
    assert_complete(&inv);
    assert_eq!(of_kind(&inv.grants, GrantKind::Group).len(), 12);
    let mut limited = 0;
    while let Ok(n) = e.notices.try_recv() {
        if matches!(n, HttpNotice::RateLimited { .. }) {
            limited += 1;
        }
    }
    assert!(limited > 0, "the quota was hit and waited out");
    e.sb.stop().await;
}
