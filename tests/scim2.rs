//! The generic SCIM 2.0 driver against the SCIM twin, over HTTP: apps added
//! by manifest and config alone, each twin deviation switched on in its own
//! tenant of one shared sandbox.

mod common;

use common::driver::{AccessLog, context, found, of_kind, wait_absent};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use offboard::apps::build;
use offboard::apps::scim2::twin::{Quirks, Tenant, demo_token};
use offboard::connector::manifest::{self, ConnectorConfig};
use offboard::connector::{Connector, ConnectorError, Lookup, Presence, RevokeOutcome};
use offboard::model::{Account, Grant, GrantKind, Person};
use offboard::sandbox::{self, Options, Running};
use serde_json::{Value, json};
use std::sync::OnceLock;

struct Shared {
    sb: Running,
    log: AccessLog,
    _dir: tempfile::TempDir,
}

static SB: OnceLock<Shared> = OnceLock::new();

/// One sandbox for the whole binary (each test has its own tenant), on a
/// runtime of its own that outlives every test's.
async fn shared() -> &'static Shared {
    SB.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.jsonl");
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let sb = sandbox::start(Options {
                    port: 0,
                    faults: common::quick(0),
                    access_log: Some(log2),
                    ..Options::default()
                })
                .await
                .expect("sandbox starts");
                tx.send(sb).unwrap();
                std::future::pending::<()>().await;
            });
        });
        Shared {
            sb: rx.recv().unwrap(),
            log: AccessLog(log),
            _dir: dir,
        }
    })
}

/// A fresh tenant `app` with these quirks, filled by `fill`.
fn tenant(sb: &Running, app: &str, quirks: Quirks, fill: impl FnOnce(&mut Tenant)) {
    let mut t = Tenant::new(app);
    t.quirks = quirks;
    fill(&mut t);
    sb.state
        .scim2
        .lock()
        .unwrap()
        .apps
        .insert(app.to_string(), t);
}

fn with<R>(sb: &Running, app: &str, f: impl FnOnce(&mut Tenant) -> R) -> R {
    f(sb.state.scim2.lock().unwrap().apps.get_mut(app).unwrap())
}

/// A connector configured the way a user adds a SCIM app: `manifest =
/// "scim2-generic"`, a base URL and a token file, plus `settings`.
fn connector(sb: &Running, dir: &Path, app: &str, settings: &str) -> Arc<dyn Connector> {
    std::fs::write(dir.join("token"), demo_token(app)).unwrap();
    let text = format!(
        r#"
manifest = "scim2-generic"
display_name = "Test {app}"
[api]
base_url = "{}/scim2/{app}/v2"
[auth]
token_file = "token"
[settings]
{settings}
"#,
        sb.base_url
    );
    let cfg: ConnectorConfig = toml::from_str(&text).expect("config parses");
    let resolved = manifest::resolve(app, &cfg, dir).expect("config resolves");
    build(&resolved, &context(dir)).expect("driver builds")
}

fn ids(grants: &[Grant]) -> Vec<&str> {
    let mut v: Vec<&str> = grants.iter().map(|g| g.id.as_str()).collect();
    v.sort();
    v
}

/// Revokes every API grant (groups and roles first, the account last) and
/// waits for fresh reads to confirm.
async fn revoke_all(c: &dyn Connector, a: &Account, grants: &[Grant]) {
    let mut api: Vec<&Grant> = grants.iter().filter(|g| !g.is_manual()).collect();
    api.sort_by_key(|g| g.kind == GrantKind::Account);
    for g in &api {
        c.revoke(a, g).await.expect("revoke accepted");
    }
    let owned: Vec<Grant> = api.into_iter().cloned().collect();
    wait_absent(c, a, &owned).await;
}

fn standard(t: &mut Tenant) -> (String, String, String) {
    let u = t.add_user(
        "ada.lovelace@example.com",
        "ada.lovelace@example.com",
        "Ada",
        "Lovelace",
    );
    let other = t.add_user("bob@example.com", "bob@example.com", "Bob", "B");
    let g1 = t.add_group("Engineering", &[&u, &other]);
    let g2 = t.add_group("Admins \"core\"", &[&u]);
    t.add_group("Sales", &[&other]);
    t.set_values(&u, "roles", &["Owner"]);
    t.set_values(&u, "entitlements", &["Pro seat"]);
    (u, g1, g2)
}

#[tokio::test]
async fn a_generic_app_is_found_listed_revoked_and_verified() {
    let s = shared().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ids_ = None;
    tenant(&s.sb, "generic", Quirks::default(), |t| {
        ids_ = Some(standard(t))
    });
    let (u, g1, g2) = ids_.unwrap();
    let c = connector(&s.sb, dir.path(), "generic", "");
    assert_eq!(c.display_name(), "Test generic");
    let a = found(c.as_ref(), "ada.lovelace@example.com").await;
    assert_eq!(a.id, u);
    assert!(a.active);
    let inv = c.list_grants(&a).await;
    assert!(inv.failed.is_empty(), "{:?}", inv.failed);
    assert_eq!(
        ids(&inv.grants),
        vec![
            format!("account:{u}").as_str(),
            "entitlement:Pro seat",
            &format!("group:{g1}"),
            &format!("group:{g2}"),
            "manual:api_tokens",
            "manual:sessions",
            "role:Owner",
        ]
    );
    assert!(of_kind(&inv.grants, GrantKind::Session)[0].is_manual());
    // The groups came from User.groups: no /Groups listing.
    assert_eq!(s.log.count(&["/scim2/generic/v2/Groups\""]), 0);
    revoke_all(c.as_ref(), &a, &inv.grants).await;
    with(&s.sb, "generic", |t| {
        assert_eq!(t.user_active(&u), Some(false));
        assert!(!t.is_member(&g1, &u) && !t.is_member(&g2, &u));
        // The other member stays.
        assert!(t.is_member(&g1, &t.user_id("bob@example.com").unwrap()));
        let user = t.users.iter().find(|x| x.id == u).unwrap();
        assert!(
            user.attrs
                .get("roles")
                .unwrap()
                .as_array()
                .unwrap()
                .is_empty()
        );
    });
    // Removing again is idempotent.
    for g in inv.grants.iter().filter(|g| !g.is_manual()) {
        c.revoke(&a, g).await.expect("second revoke");
    }
    // The PATCHes went to the group and the user, never DELETE.
    assert!(
        s.log
            .count(&["PATCH", &format!("/scim2/generic/v2/Groups/{g1}")])
            >= 1
    );
    assert_eq!(s.log.count(&["DELETE", "/scim2/generic/"]), 0);
}

#[tokio::test]
async fn filter_values_are_quoted_and_escaped() {
    let s = shared().await;
    let dir = tempfile::tempdir().unwrap();
    let odd = "o\"brien\\x@example.com";
    tenant(&s.sb, "quoting", Quirks::default(), |t| {
        t.add_user(odd, odd, "O", "Brien");
        t.add_user("obrien@example.com", "obrien@example.com", "O", "B");
    });
    let c = connector(&s.sb, dir.path(), "quoting", "");
    let a = found(c.as_ref(), odd).await;
    assert_eq!(a.login, odd);
    // An injection attempt stays one value: it finds nobody.
    let r = c
        .find_person(&Person::new("x\" or userName pr or userName eq \"y"))
        .await
        .unwrap();
    assert_eq!(r, Lookup::NotFound);
}

#[tokio::test]
async fn several_matches_are_ambiguous_and_emails_are_the_fallback() {
    let s = shared().await;
    let dir = tempfile::tempdir().unwrap();
    tenant(&s.sb, "ambiguous", Quirks::default(), |t| {
        t.add_user("jdoe", "jane.doe@example.com", "Jane", "Doe");
        t.add_user("jane", "jane.doe@example.com", "Jane", "Doe");
        t.add_user("kim", "kim.lee@example.com", "Kim", "Lee");
    });
    let c = connector(&s.sb, dir.path(), "ambiguous", "");
    match c
        .find_person(&Person::new("jane.doe@example.com"))
        .await
        .unwrap()
    {
        Lookup::Ambiguous { candidates } => {
            let mut logins: Vec<_> = candidates.iter().map(|a| a.login.clone()).collect();
            logins.sort();
            assert_eq!(logins, vec!["jane", "jdoe"]);
        }
        other => panic!("expected ambiguous, got {other:?}"),
    }
    // Found by emails[value eq ...] when userName is not the address.
    let a = found(c.as_ref(), "kim.lee@example.com").await;
    assert_eq!(a.login, "kim");
    assert!(
        s.log
            .count(&["/scim2/ambiguous/v2/Users", "emails%5Bvalue+eq"])
            >= 1
    );
}

#[tokio::test]
async fn case_sensitive_eq_is_met_with_the_cased_form() {
    let s = shared().await;
    let dir = tempfile::tempdir().unwrap();
    let q = Quirks {
        case_exact_filter: true,
        ..Quirks::default()
    };
    tenant(&s.sb, "cased", q, |t| {
        t.add_user(
            "Tom.Becker@example.com",
            "Tom.Becker@example.com",
            "Tom",
            "Becker",
        );
    });
    let c = connector(&s.sb, dir.path(), "cased", "");
    let a = found(c.as_ref(), "tom.becker@example.com").await;
    assert_eq!(a.login, "Tom.Becker@example.com");
    // Without the case variants, a case-sensitive server hides the account.
    let dir2 = tempfile::tempdir().unwrap();
    let c = connector(&s.sb, dir2.path(), "cased", "case_variants = false");
    let r = c
        .find_person(&Person::new("tom.becker@example.com"))
        .await
        .unwrap();
    assert_eq!(r, Lookup::NotFound);
}

#[tokio::test]
async fn a_no_op_patch_answered_204_without_body_is_accepted() {
    let s = shared().await;
    let dir = tempfile::tempdir().unwrap();
    let q = Quirks {
        no_content_on_noop_patch: true,
        ..Quirks::default()
    };
    let mut ids_ = None;
    tenant(&s.sb, "nocontent", q, |t| ids_ = Some(standard(t)));
    let (u, _, _) = ids_.unwrap();
    let c = connector(&s.sb, dir.path(), "nocontent", "");
    let a = found(c.as_ref(), "ada.lovelace@example.com").await;
    let inv = c.list_grants(&a).await;
    let account = of_kind(&inv.grants, GrantKind::Account)[0].clone();
    assert_eq!(
        c.revoke(&a, &account).await.unwrap(),
        RevokeOutcome::Accepted
    );
    let before = s.log.count(&[
        "PATCH",
        &format!("/scim2/nocontent/v2/Users/{u}"),
        "\"status\":204",
    ]);
    // Already inactive: the server answers 204 with no body.
    assert_eq!(
        c.revoke(&a, &account).await.unwrap(),
        RevokeOutcome::Accepted
    );
    assert_eq!(
        s.log.count(&[
            "PATCH",
            &format!("/scim2/nocontent/v2/Users/{u}"),
            "\"status\":204"
        ]),
        before + 1
    );
    wait_absent(c.as_ref(), &a, &[account]).await;
}

#[tokio::test]
async fn without_user_groups_memberships_come_from_a_filter_then_from_paging() {
    let s = shared().await;
    let dir = tempfile::tempdir().unwrap();
    let q = Quirks {
        omit_user_groups: true,
        ..Quirks::default()
    };
    let mut ids_ = None;
    tenant(&s.sb, "nogroups", q.clone(), |t| ids_ = Some(standard(t)));
    let (_, g1, g2) = ids_.unwrap();
    let c = connector(&s.sb, dir.path(), "nogroups", "");
    let a = found(c.as_ref(), "ada.lovelace@example.com").await;
    let inv = c.list_grants(&a).await;
    let mut groups: Vec<String> = of_kind(&inv.grants, GrantKind::Group)
        .iter()
        .map(|g| g.id.clone())
        .collect();
    groups.sort();
    assert_eq!(groups, vec![format!("group:{g1}"), format!("group:{g2}")]);
    assert!(
        s.log
            .count(&["/scim2/nogroups/v2/Groups", "members%5Bvalue+eq"])
            >= 1
    );

    // No members filter either: every /Groups page is read, two at a time.
    let q2 = Quirks {
        no_member_filter: true,
        max_page: 2,
        ..q
    };
    let mut ids2 = None;
    tenant(&s.sb, "scan", q2, |t| {
        let ids = standard(t);
        for i in 0..5 {
            t.add_group(&format!("filler {i}"), &[]);
        }
        ids2 = Some(ids);
    });
    let (u, g1, g2) = ids2.unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let c = connector(&s.sb, dir2.path(), "scan", "");
    let a = found(c.as_ref(), "ada.lovelace@example.com").await;
    let inv = c.list_grants(&a).await;
    assert!(inv.failed.is_empty(), "{:?}", inv.failed);
    let got = ids(&inv.grants);
    assert!(
        got.contains(&format!("group:{g1}").as_str())
            && got.contains(&format!("group:{g2}").as_str())
    );
    assert_eq!(of_kind(&inv.grants, GrantKind::Group).len(), 2);
    assert!(s.log.count(&["/scim2/scan/v2/Groups", "startIndex=7"]) >= 1);
    revoke_all(c.as_ref(), &a, &inv.grants).await;
    with(&s.sb, "scan", |t| assert!(!t.is_member(&g1, &u)));

    // Forcing the filter on such a server shows the SCIM error, never "no groups".
    let dir3 = tempfile::tempdir().unwrap();
    let c = connector(&s.sb, dir3.path(), "scan", "group_source = \"filter\"");
    let inv = c.list_grants(&a).await;
    match inv.kind_failed(GrantKind::Group) {
        Some(ConnectorError::Api { status, code, .. }) => {
            assert_eq!(*status, 400);
            assert_eq!(code, "invalidFilter");
        }
        other => panic!("expected an invalidFilter error, got {other:?}"),
    }
}

#[tokio::test]
async fn paging_stops_safely_when_total_results_lies() {
    let s = shared().await;
    let dir = tempfile::tempdir().unwrap();
    // totalResults far too high: the empty page past the end stops it.
    let q = Quirks {
        omit_user_groups: true,
        no_member_filter: true,
        inflate_total_results: 1000,
        max_page: 3,
        ..Quirks::default()
    };
    let mut ids_ = None;
    tenant(&s.sb, "liar", q.clone(), |t| {
        let ids = standard(t);
        for i in 0..4 {
            t.add_group(&format!("filler {i}"), &[]);
        }
        ids_ = Some(ids);
    });
    let (_, g1, g2) = ids_.unwrap();
    let c = connector(&s.sb, dir.path(), "liar", "");
    let a = found(c.as_ref(), "ada.lovelace@example.com").await;
    let inv = tokio::time::timeout(Duration::from_secs(10), c.list_grants(&a))
        .await
        .expect("the listing ends");
    assert!(inv.failed.is_empty(), "{:?}", inv.failed);
    let got = ids(&inv.grants);
    assert!(
        got.contains(&format!("group:{g1}").as_str())
            && got.contains(&format!("group:{g2}").as_str())
    );
    // 7 groups, 3 a page: pages at 1, 4, 7 (one item: the total says
    // more) and the empty one at 8 that ends it.
    assert_eq!(s.log.count(&["/scim2/liar/v2/Groups", "startIndex=8&"]), 1);
    assert_eq!(s.log.count(&["/scim2/liar/v2/Groups", "startIndex=9&"]), 0);

    // A server that ignores startIndex repeats its first page: an error
    // (the listing is incomplete), never an endless loop or "no groups".
    let q2 = Quirks {
        ignore_start_index: true,
        inflate_total_results: 0,
        ..q
    };
    tenant(&s.sb, "repeater", q2, |t| {
        standard(t);
        for i in 0..4 {
            t.add_group(&format!("filler {i}"), &[]);
        }
    });
    let dir2 = tempfile::tempdir().unwrap();
    let c = connector(&s.sb, dir2.path(), "repeater", "");
    let a = found(c.as_ref(), "ada.lovelace@example.com").await;
    let inv = tokio::time::timeout(Duration::from_secs(10), c.list_grants(&a))
        .await
        .expect("the listing ends");
    assert!(
        inv.kind_failed(GrantKind::Group).is_some(),
        "{:?}",
        inv.grants
    );
}

#[tokio::test]
async fn attributes_without_schemas_are_read() {
    let s = shared().await;
    let dir = tempfile::tempdir().unwrap();
    let q = Quirks {
        attributes_drop_schemas: true,
        omit_user_groups: true,
        ..Quirks::default()
    };
    let mut ids_ = None;
    tenant(&s.sb, "noschemas", q, |t| ids_ = Some(standard(t)));
    let (_, g1, _) = ids_.unwrap();
    let c = connector(&s.sb, dir.path(), "noschemas", "");
    let a = found(c.as_ref(), "ada.lovelace@example.com").await;
    let inv = c.list_grants(&a).await;
    assert!(inv.failed.is_empty(), "{:?}", inv.failed);
    assert!(ids(&inv.grants).contains(&format!("group:{g1}").as_str()));
    let g = inv
        .grants
        .iter()
        .find(|g| g.id == format!("group:{g1}"))
        .unwrap();
    assert_eq!(g.label, "Group Engineering");
}

#[tokio::test]
async fn a_stale_etag_gets_412_and_the_write_is_retried_with_a_fresh_version() {
    let s = shared().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ids_ = None;
    tenant(&s.sb, "etag", Quirks::default(), |t| {
        ids_ = Some(standard(t))
    });
    let (u, g1, _) = ids_.unwrap();
    let c = connector(&s.sb, dir.path(), "etag", "");
    let a = found(c.as_ref(), "ada.lovelace@example.com").await;
    let inv = c.list_grants(&a).await;
    let group = inv
        .grants
        .iter()
        .find(|g| g.id == format!("group:{g1}"))
        .unwrap()
        .clone();
    // Another client writes the group just before each of our next two writes.
    with(&s.sb, "etag", |t| t.quirks.concurrent_writes = 2);
    assert_eq!(c.revoke(&a, &group).await.unwrap(), RevokeOutcome::Accepted);
    assert_eq!(
        s.log.count(&[
            "PATCH",
            &format!("/scim2/etag/v2/Groups/{g1}"),
            "\"status\":412"
        ]),
        2
    );
    wait_absent(c.as_ref(), &a, &[group]).await;
    // More conflicts than attempts: the 412 is reported, nothing changed.
    with(&s.sb, "etag", |t| t.quirks.concurrent_writes = 10);
    let account = of_kind(&inv.grants, GrantKind::Account)[0].clone();
    match c.revoke(&a, &account).await {
        Err(ConnectorError::Api { status: 412, .. }) => {}
        other => panic!("expected 412, got {other:?}"),
    }
    with(&s.sb, "etag", |t| {
        assert_eq!(t.user_active(&u), Some(true));
        t.quirks.concurrent_writes = 0;
    });
}

#[tokio::test]
async fn what_the_service_provider_config_says_is_used_and_can_be_overridden() {
    let s = shared().await;
    // No PATCH at all: the driver PUTs whole resources.
    let q = Quirks {
        no_patch: true,
        etags: false,
        ..Quirks::default()
    };
    let mut ids_ = None;
    tenant(&s.sb, "putonly", q, |t| ids_ = Some(standard(t)));
    let (u, g1, _) = ids_.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = connector(&s.sb, dir.path(), "putonly", "");
    let a = found(c.as_ref(), "ada.lovelace@example.com").await;
    let inv = c.list_grants(&a).await;
    revoke_all(c.as_ref(), &a, &inv.grants).await;
    assert_eq!(s.log.count(&["PATCH", "/scim2/putonly/"]), 0);
    assert!(
        s.log
            .count(&["PUT", &format!("/scim2/putonly/v2/Groups/{g1}")])
            >= 1
    );
    with(&s.sb, "putonly", |t| {
        assert_eq!(t.user_active(&u), Some(false));
        // The PUT kept the rest of the group.
        assert!(t.is_member(&g1, &t.user_id("bob@example.com").unwrap()));
    });

    // A server that says "no PATCH" while it has it: the manifest's
    // override makes the driver PATCH.
    let q = Quirks {
        misreport_patch: true,
        ..Quirks::default()
    };
    tenant(&s.sb, "misreport", q, |t| {
        standard(t);
    });
    let dir = tempfile::tempdir().unwrap();
    let c = connector(
        &s.sb,
        dir.path(),
        "misreport",
        "[settings.service_provider]\npatch = true",
    );
    let a = found(c.as_ref(), "ada.lovelace@example.com").await;
    let inv = c.list_grants(&a).await;
    revoke_all(c.as_ref(), &a, &inv.grants).await;
    assert!(s.log.count(&["PATCH", "/scim2/misreport/"]) >= 1);
    assert_eq!(s.log.count(&["PUT", "/scim2/misreport/"]), 0);
}

#[tokio::test]
async fn delete_only_when_the_manifest_says_so() {
    let s = shared().await;
    let mut ids_ = None;
    tenant(&s.sb, "deleter", Quirks::default(), |t| {
        ids_ = Some(standard(t))
    });
    let (u, g1, _) = ids_.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = connector(&s.sb, dir.path(), "deleter", "close = \"delete\"");
    let a = found(c.as_ref(), "ada.lovelace@example.com").await;
    let inv = c.list_grants(&a).await;
    let account = of_kind(&inv.grants, GrantKind::Account)[0].clone();
    assert!(account.details.contains("DELETE"));
    assert_eq!(
        c.revoke(&a, &account).await.unwrap(),
        RevokeOutcome::Accepted
    );
    wait_absent(c.as_ref(), &a, std::slice::from_ref(&account)).await;
    with(&s.sb, "deleter", |t| {
        assert!(t.user_active(&u).is_none());
        assert!(!t.is_member(&g1, &u));
    });
    assert_eq!(
        c.revoke(&a, &account).await.unwrap(),
        RevokeOutcome::AlreadyGone
    );
}

#[tokio::test]
async fn each_app_has_its_own_path_and_token() {
    let s = shared().await;
    let dir = tempfile::tempdir().unwrap();
    // Miro's token against Zoom's path is refused with the SCIM envelope.
    std::fs::write(dir.path().join("token"), demo_token("miro")).unwrap();
    let text = format!(
        "manifest = \"scim2-generic\"\n[api]\nbase_url = \"{}/scim2/zoom/v2\"\n[auth]\ntoken_file = \"token\"\n",
        s.sb.base_url
    );
    let cfg: ConnectorConfig = toml::from_str(&text).unwrap();
    let r = manifest::resolve("wrong", &cfg, dir.path()).unwrap();
    let c = build(&r, &context(dir.path())).unwrap();
    let e = c
        .find_person(&Person::new("tom.becker@example.com"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ConnectorError::Auth(_) | ConnectorError::Api { status: 401, .. }
        ),
        "{e:?}"
    );
    let body = reqwest::Client::new()
        .get(format!("{}/scim2/zoom/v2/Users", s.sb.base_url))
        .bearer_auth(demo_token("miro"))
        .send()
        .await
        .unwrap();
    assert_eq!(body.status(), 401);
    let v: Value = body.json().await.unwrap();
    assert_eq!(v["status"], "401");
    assert_eq!(
        v["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
}

#[tokio::test]
async fn the_demo_orphan_is_still_active_in_both_scim_apps() {
    let s = shared().await;
    let dir = tempfile::tempdir().unwrap();
    for app in ["zoom", "miro"] {
        let r = common::driver::demo_connector(&s.sb, dir.path(), app, "");
        assert_eq!(r.manifest.driver, "scim2");
        let c = build(&r, &context(dir.path())).unwrap();
        let a = found(c.as_ref(), "tom.becker@example.com").await;
        assert!(a.active, "{app}");
        let inv = c.list_grants(&a).await;
        assert!(inv.failed.is_empty(), "{app}: {:?}", inv.failed);
        assert_eq!(of_kind(&inv.grants, GrantKind::Account).len(), 1, "{app}");
        assert!(!of_kind(&inv.grants, GrantKind::Group).is_empty(), "{app}");
        assert!(inv.grants.iter().any(|g| g.is_manual()), "{app}");
        if app == "miro" {
            // Miro keeps HR's case and compares it exactly.
            assert_eq!(a.login, "Tom.Becker@example.com");
        }
    }
}

/// The twin speaks RFC 7644 to any client: filters, PatchOp with any `op`
/// case, JSON booleans, the error envelope.
#[tokio::test]
async fn the_twin_answers_a_plain_http_client_by_the_rfc() {
    let s = shared().await;
    let mut ids_ = None;
    tenant(&s.sb, "raw", Quirks::default(), |t| {
        ids_ = Some(standard(t))
    });
    let (u, g1, _) = ids_.unwrap();
    let http = reqwest::Client::new();
    let root = format!("{}/scim2/raw/v2", s.sb.base_url);
    let tok = demo_token("raw");
    let list = |f: &str| {
        let http = http.clone();
        let url = format!("{root}/Users");
        let tok = tok.clone();
        let f = f.to_string();
        async move {
            let v: Value = http
                .get(url)
                .query(&[("filter", f.as_str())])
                .bearer_auth(tok)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["totalResults"].as_u64().unwrap_or(u64::MAX)
        }
    };
    assert_eq!(list("userName eq \"ADA.lovelace@example.com\"").await, 1);
    assert_eq!(list("userName co \"love\" and active eq true").await, 1);
    assert_eq!(
        list("userName sw \"bob\" or userName ew \"lace@example.com\"").await,
        2
    );
    assert_eq!(list("not (userName eq \"bob@example.com\")").await, 1);
    assert_eq!(list("roles pr").await, 1);
    assert_eq!(list("userName ne \"bob@example.com\"").await, 1);
    assert_eq!(
        list("meta.lastModified gt \"2020-01-01T00:00:00Z\"").await,
        2
    );
    assert_eq!(
        list("meta.lastModified lt \"2020-01-01T00:00:00Z\"").await,
        0
    );
    assert_eq!(
        list("meta.lastModified ge \"2026-11-02T09:00:00Z\"").await,
        2
    );
    assert_eq!(
        list("meta.lastModified le \"2026-11-02T09:00:00Z\"").await,
        2
    );
    assert_eq!(
        list("emails[type eq \"work\" and value co \"ada\"]").await,
        1
    );
    // A bad filter: 400 invalidFilter, status as a string.
    let r = http
        .get(format!("{root}/Users"))
        .query(&[("filter", "userName eq")])
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["scimType"], "invalidFilter");
    assert_eq!(v["status"], "400");

    let patch = |path: String, body: Value, if_match: Option<String>| {
        let http = http.clone();
        let tok = tok.clone();
        async move {
            let mut r = http.patch(path).bearer_auth(tok).json(&body);
            if let Some(m) = if_match {
                r = r.header("if-match", m);
            }
            r.send().await.unwrap()
        }
    };
    // A string for a boolean is refused.
    let r = patch(
        format!("{root}/Users/{u}"),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}),
        None,
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["scimType"], "invalidValue");
    // `Remove` (capitalised, as Entra sends it) with a value path.
    let r = patch(
        format!("{root}/Groups/{g1}"),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "Remove", "path": format!("members[value eq \"{u}\"]")}]}),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    with(&s.sb, "raw", |t| assert!(!t.is_member(&g1, &u)));
    // A stale If-Match: 412.
    let r = patch(
        format!("{root}/Users/{u}"),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "REPLACE", "value": {"active": false}}]}),
        Some("W/\"999\"".into()),
    )
    .await;
    assert_eq!(r.status(), 412);
    // The current one: accepted, and the ETag moves on.
    let cur = http
        .get(format!("{root}/Users/{u}"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    let etag = cur.headers()["etag"].to_str().unwrap().to_string();
    let r = patch(
        format!("{root}/Users/{u}"),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "replace", "value": {"active": false}}]}),
        Some(etag.clone()),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(r.json::<Value>().await.unwrap()["active"], false);
    // User.groups is read-only.
    let r = patch(
        format!("{root}/Users/{u}"),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "remove", "path": "groups"}]}),
        None,
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["scimType"], "mutability");
    // ListResponse paging.
    let v: Value = http
        .get(format!("{root}/Groups?startIndex=2&count=1"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:ListResponse"
    );
    assert_eq!(v["totalResults"], 3);
    assert_eq!(v["startIndex"], 2);
    assert_eq!(v["itemsPerPage"], 1);
    assert_eq!(v["Resources"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_grant_is_present_until_a_fresh_read_says_otherwise() {
    let s = shared().await;
    let mut ids_ = None;
    tenant(&s.sb, "fresh", Quirks::default(), |t| {
        ids_ = Some(standard(t))
    });
    let (u, g1, _) = ids_.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = connector(&s.sb, dir.path(), "fresh", "");
    let a = found(c.as_ref(), "ada.lovelace@example.com").await;
    let inv = c.list_grants(&a).await;
    let group = inv
        .grants
        .iter()
        .find(|g| g.id == format!("group:{g1}"))
        .unwrap()
        .clone();
    assert_eq!(
        common::driver::presence(c.as_ref(), &a, &group).await,
        Presence::Present
    );
    // Removed behind our back: the fresh read of the group says so.
    with(&s.sb, "fresh", |t| {
        let g = t.groups.iter_mut().find(|g| g.id == g1).unwrap();
        g.attrs["members"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["value"] != u.as_str());
    });
    assert_eq!(
        common::driver::presence(c.as_ref(), &a, &group).await,
        Presence::Absent
    );
    // A grant no SCIM read holds is never taken for gone.
    let mut stranger = group.clone();
    stranger.kind = offboard::model::GrantKind::AdminRole;
    stranger.id = "nickname:x".into();
    let r = c.verify(&a, std::slice::from_ref(&stranger)).await;
    assert!(r[0].1.is_err(), "{:?}", r[0].1);
    // A failed read is never absence.
    with(&s.sb, "fresh", |t| t.token = "rotated".into());
    let r = c.verify(&a, std::slice::from_ref(&group)).await;
    assert!(r[0].1.is_err(), "{:?}", r[0].1);
}

/// `offboard scan` and `offboard revoke` on the demo's Zoom, through the
/// binary: found, revoked in order, verified, manual steps left (exit 3).
#[tokio::test]
async fn the_cli_scans_and_revokes_a_scim_app() {
    let s = shared().await;
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(&dir.path().join("cfg"), &s.sb.base_url);
    let data = dir.path().join("data");
    let run = |args: &'static [&'static str]| {
        let config = config.clone();
        let data = data.clone();
        async move {
            let out = tokio::time::timeout(
                Duration::from_secs(90),
                tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"))
                    .args(args)
                    .env("OFFBOARD_CONFIG", &config)
                    .env("OFFBOARD_DATA", &data)
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .output(),
            )
            .await
            .expect("the command finishes")
            .unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (code, out, err) = run(&["scan", "dana.whitfield@example.com", "--json"]).await;
    // Live access left: exit 3.
    assert_eq!(code, 3, "{out}\n{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let zoom: Vec<&Value> = v["grants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["app"] == "zoom")
        .collect();
    assert!(zoom.iter().any(|g| g["kind"] == "account"), "{out}");
    assert_eq!(
        zoom.iter().filter(|g| g["kind"] == "group").count(),
        3,
        "{out}"
    );
    let (code, out, err) = run(&[
        "revoke",
        "dana.whitfield@example.com",
        "--app",
        "zoom",
        "--yes",
    ])
    .await;
    assert_eq!(code, 3, "manual steps are left: {out}\n{err}");
    assert!(out.contains("verified"), "{out}");
    with(&s.sb, "zoom", |t| {
        let dana = t.user_id("dana.whitfield@example.com").unwrap();
        assert_eq!(t.user_active(&dana), Some(false));
        let finance = t.group_id("Finance").unwrap();
        assert!(!t.is_member(&finance, &dana));
    });
    assert!(!out.contains(&demo_token("zoom")) && !err.contains(&demo_token("zoom")));
}

/// scim2-client and scim2-models (python-scim, unmodified) against a copy
/// of the demo's Zoom tenant: discovery from the server's own /Schemas and
/// /ResourceTypes, a filter, paging with startIndex/count, a membership
/// removal with If-Match and a stale If-Match refused with 412,
/// deactivation, a bulk job with bulkId references, /Me 501. The tenant's
/// state is checked afterwards. `.ci/run` installs the packages; see
/// tests/clients/scim_twin_client.py.
#[tokio::test]
async fn an_independent_scim_client_discovers_filters_pages_patches_and_bulks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let probe = tokio::process::Command::new("python3")
        .args([
            "-c",
            "import scim2_client.engines.httpx2, scim2_models, httpx2",
        ])
        .output()
        .await;
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs python3 with scim2-client, scim2-models and httpx2 \
         (pip install scim2-client httpx2): {probe:?}"
    );
    let s = shared().await;
    let mut zoom = offboard::apps::scim2::twin::State::seed()
        .apps
        .remove("zoom")
        .unwrap();
    zoom.token = demo_token("pyclient");
    s.sb.state
        .scim2
        .lock()
        .unwrap()
        .apps
        .insert("pyclient".into(), zoom);
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("python3")
            .arg(root.join("tests/clients/scim_twin_client.py"))
            .arg(&s.sb.base_url)
            .arg("pyclient")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the client finishes in time")
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.starts_with("ok: "), "{stdout}");
    for (path, status) in [
        ("/scim2/pyclient/v2/ResourceTypes\"", 200),
        ("/scim2/pyclient/v2/Schemas\"", 200),
        ("/scim2/pyclient/v2/ServiceProviderConfig\"", 200),
        ("/scim2/pyclient/v2/Bulk\"", 200),
        ("/scim2/pyclient/v2/Me\"", 501),
    ] {
        assert!(
            s.log.count(&[path, &format!("\"status\":{status}")]) >= 1,
            "{path} {status} not in the access log"
        );
    }
    assert!(
        s.log
            .count(&["/scim2/pyclient/v2/Groups/", "\"status\":412"])
            >= 1
    );
    with(&s.sb, "pyclient", |t| {
        let lena = t.user_id("lena.kowalski@example.com").unwrap();
        assert_eq!(t.user_active(&lena), Some(false));
        let staff = t.group_id("All staff").unwrap();
        assert!(!t.is_member(&staff, &lena));
        assert!(t.user_id("bulk.tester@example.com").is_none());
        assert!(t.group_id("Bulk testers").is_none());
    });
}

/// The deviation modes are switched on a running sandbox through
/// `PUT /_sandbox/scim2/{app}` (a field at a time; an unknown one is
/// refused), the twin then deviates as asked, and the driver still
/// offboards through every one of them.
#[tokio::test]
async fn deviation_modes_are_switched_on_the_running_sandbox_and_coped_with() {
    let s = shared().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ids_ = None;
    tenant(&s.sb, "switched", Quirks::default(), |t| {
        ids_ = Some(standard(t))
    });
    let (u, g1, g2) = ids_.unwrap();
    let http = reqwest::Client::new();
    let control = format!("{}/_sandbox/scim2/switched", s.sb.base_url);
    let r = http
        .put(&control)
        .json(&json!({"no_such_quirk": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    for (k, v) in [
        ("case_exact_filter", json!(true)),
        ("no_content_on_noop_patch", json!(true)),
        ("omit_user_groups", json!(true)),
        ("inflate_total_results", json!(3)),
        ("attributes_drop_schemas", json!(true)),
    ] {
        let r = http
            .put(&control)
            .json(&json!({ k: v }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{k}");
    }
    let now: Value = http
        .get(&control)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(now["case_exact_filter"], true);
    assert_eq!(now["inflate_total_results"], 3);
    assert_eq!(now["etags"], true, "fields left out keep their value");

    // The twin deviates as switched.
    let api = format!("{}/scim2/switched/v2", s.sb.base_url);
    let get = |q: String| {
        let http = http.clone();
        async move {
            http.get(q)
                .bearer_auth(demo_token("switched"))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let upper = get(format!(
        "{api}/Users?filter=userName%20eq%20%22ADA.LOVELACE@example.com%22"
    ))
    .await;
    assert_eq!(upper["Resources"].as_array().unwrap().len(), 0, "{upper}");
    let listed = get(format!("{api}/Users?attributes=userName")).await;
    assert_eq!(listed["totalResults"], 5, "{listed}");
    let first = &listed["Resources"][0];
    assert!(first.get("schemas").is_none() && first.get("userName").is_some());
    let user = get(format!("{api}/Users/{u}")).await;
    assert!(user.get("groups").is_none(), "{user}");

    // The driver offboards through all of it.
    let c = connector(&s.sb, dir.path(), "switched", "");
    let a = found(c.as_ref(), "ada.lovelace@example.com").await;
    assert_eq!(a.id, u);
    let inv = c.list_grants(&a).await;
    assert!(inv.failed.is_empty(), "{:?}", inv.failed);
    let groups: Vec<&str> = of_kind(&inv.grants, GrantKind::Group)
        .iter()
        .map(|g| g.id.as_str())
        .collect();
    assert_eq!(groups.len(), 2, "{groups:?}");
    revoke_all(c.as_ref(), &a, &inv.grants).await;
    // Once more: every PATCH is now a no-op, answered 204 with no body.
    for g in inv.grants.iter().filter(|g| !g.is_manual()) {
        c.revoke(&a, g).await.expect("second revoke");
    }
    assert!(
        s.log
            .count(&["PATCH", "/scim2/switched/v2/", "\"status\":204"])
            >= 1
    );
    with(&s.sb, "switched", |t| {
        assert_eq!(t.user_active(&u), Some(false));
        assert!(!t.is_member(&g1, &u) && !t.is_member(&g2, &u));
    });
}

/// `/Bulk` by RFC 7644 §3.7 within what the ServiceProviderConfig
/// advertises: limits from the control endpoint, 413 past
/// `maxOperations` or `maxPayloadSize`, `bulkId` references (a whole
/// value, a path segment, inside a value path), 409 for one that names
/// nothing created before, `failOnErrors`, 501 when bulk is off.
#[tokio::test]
async fn bulk_follows_the_advertised_limits_and_bulk_ids() {
    let s = shared().await;
    tenant(&s.sb, "bulky", Quirks::default(), |t| {
        standard(t);
    });
    let http = reqwest::Client::new();
    let api = format!("{}/scim2/bulky/v2", s.sb.base_url);
    let control = format!("{}/_sandbox/scim2/bulky", s.sb.base_url);
    let set = |v: Value| {
        let (http, control) = (http.clone(), control.clone());
        async move {
            let r = http.put(control).json(&v).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    let bulk = |ops: Value, fail_on_errors: Option<u64>| {
        let (http, api) = (http.clone(), api.clone());
        async move {
            let mut body = json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                "Operations": ops,
            });
            if let Some(n) = fail_on_errors {
                body["failOnErrors"] = json!(n);
            }
            let r = http
                .post(format!("{api}/Bulk"))
                .bearer_auth(demo_token("bulky"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    set(json!({"bulk_max_operations": 3, "bulk_max_payload_size": 2000})).await;
    let spc: Value = http
        .get(format!("{api}/ServiceProviderConfig"))
        .bearer_auth(demo_token("bulky"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        spc["bulk"],
        json!({"supported": true, "maxOperations": 3, "maxPayloadSize": 2000})
    );
    let del = json!({"method": "DELETE", "path": "/Users/nobody"});
    let (st, body) = bulk(json!([del, del, del, del]), None).await;
    assert_eq!(st, 413, "{body}");
    assert_eq!(body["status"], "413");
    let big = "x".repeat(2100);
    let (st, _) = bulk(
        json!([{"method": "POST", "path": "/Users", "bulkId": "a", "data": {"userName": big}}]),
        None,
    )
    .await;
    assert_eq!(st, 413);

    // bulkId references, then a reference to nothing created: 409.
    let (st, body) = bulk(
        json!([
            {"method": "POST", "path": "/Users", "bulkId": "u",
             "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "new@example.com"}},
            {"method": "POST", "path": "/Groups", "bulkId": "g",
             "data": {"displayName": "New", "members": [{"value": "bulkId:u"}]}},
            {"method": "PATCH", "path": "/Groups/bulkId:g",
             "data": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                      "Operations": [{"op": "remove", "path": "members[value eq \"bulkId:u\"]"}]}},
        ]),
        None,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let ops = body["Operations"].as_array().unwrap();
    let statuses: Vec<&str> = ops.iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["201", "201", "200"], "{body}");
    assert_eq!(ops[0]["version"], "W/\"1\"");
    let group = ops[1]["location"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    let user = ops[0]["location"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    with(&s.sb, "bulky", |t| {
        assert!(t.user_id("new@example.com").is_some());
        assert!(!t.is_member(group, user));
    });
    // failOnErrors 1: the first error ends the job; what came before stays.
    let (st, body) = bulk(
        json!([
            {"method": "DELETE", "path": "/Users/bulkId:ghost"},
            {"method": "DELETE", "path": format!("/Users/{user}")},
        ]),
        Some(1),
    )
    .await;
    assert_eq!(st, 200);
    let ops = body["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 1, "{body}");
    assert_eq!(ops[0]["status"], "409");
    assert_eq!(ops[0]["response"]["status"], "409");
    with(&s.sb, "bulky", |t| {
        assert!(t.user_id("new@example.com").is_some())
    });
    // Without failOnErrors every operation runs.
    let (_, body) = bulk(
        json!([
            {"method": "DELETE", "path": "/Users/bulkId:ghost"},
            {"method": "DELETE", "path": format!("/Users/{user}")},
        ]),
        None,
    )
    .await;
    assert_eq!(body["Operations"][1]["status"], "204", "{body}");
    with(&s.sb, "bulky", |t| {
        assert!(t.user_id("new@example.com").is_none())
    });

    // Bulk off: the config says so and /Bulk answers 501.
    set(json!({"bulk_max_operations": 0})).await;
    let (st, _) = bulk(json!([del]), None).await;
    assert_eq!(st, 501);
}

/// `offboard sandbox --control PATH=JSON` sets a twin's switches on the
/// sandbox it starts (the same `PUT` as the control endpoint); a refused
/// switch stops it with the sandbox's answer.
#[tokio::test]
async fn the_sandbox_command_sets_quirks_at_start() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_offboard");
    let bad = tokio::process::Command::new(bin)
        .args(["sandbox", "--port", "0", "--config-dir"])
        .arg(dir.path())
        .args(["--control", r#"/_sandbox/scim2/miro={"no_such":1}"#])
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown quirk `no_such`"));
    let mut child = tokio::process::Command::new(bin)
        .args(["sandbox", "--port", "0", "--config-dir"])
        .arg(dir.path())
        .args([
            "--control",
            r#"/_sandbox/scim2/miro={"case_exact_filter":false,"inflate_total_results":2}"#,
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the sandbox starts")
        .unwrap()
        .unwrap();
    let base = first.rsplit(' ').next().unwrap().to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{first}");
    let q: Value = reqwest::get(format!("{base}/_sandbox/scim2/miro"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(q["case_exact_filter"], false);
    assert_eq!(q["inflate_total_results"], 2);
    assert_eq!(
        q["omit_user_groups"], true,
        "the demo's Miro keeps the rest"
    );
    child.kill().await.unwrap();
}
