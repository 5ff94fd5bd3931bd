//! The GitHub driver against the sandbox's GitHub twin, over HTTP: lookup
//! through SCIM and SAML identities (never public emails), every grant
//! kind and its removal confirmed by fresh reads, what an enterprise team
//! or a team holds refusing direct removal, the stale SCIM identity, EMU
//! suspension, paging by `Link`, the primary and secondary rate limits
//! (403 and 429 told apart from refusals), pacing from `x-ratelimit-*`,
//! and both sign-ins (GitHub App installation token, a token from the
//! config).

mod common;

use common::driver::{
    AccessLog, context, context_with_notices, demo_connector, found, logged_sandbox, of_kind,
    wait_absent,
};

use std::time::Duration;

use offboard::apps::github::driver::GitHub;
use offboard::connector::http::HttpNotice;
use offboard::connector::{
    Connector, ConnectorError, Lookup, Presence, ResolvedConnector, RevokeOutcome,
};
use offboard::model::{Account, Grant, GrantKind, Person};
use offboard::sandbox::Running;

struct Env {
    sb: Running,
    gh: GitHub,
    log: AccessLog,
    dir: tempfile::TempDir,
}

async fn env_with(consistency_ms: u64, tweak: impl FnOnce(&mut ResolvedConnector)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let (sb, log, mut resolved) = logged_sandbox(dir.path(), consistency_ms, "github", "").await;
    tweak(&mut resolved);
    let gh = GitHub::new(&resolved, &context(dir.path())).unwrap();
    Env { sb, gh, log, dir }
}

async fn env(consistency_ms: u64) -> Env {
    env_with(consistency_ms, |_| {}).await
}

fn set(r: &mut ResolvedConnector, key: &str, v: toml::Value) {
    r.manifest.settings.insert(key.into(), v);
}

fn by_prefix<'a>(grants: &'a [Grant], prefix: &str) -> Vec<&'a Grant> {
    grants
        .iter()
        .filter(|g| g.id.starts_with(&format!("{prefix}:")))
        .collect()
}

async fn listed(c: &GitHub, a: &Account) -> Vec<Grant> {
    let inv = c.list_grants(a).await;
    assert!(inv.failed.is_empty(), "{:?}", inv.failed);
    inv.grants
}

fn with_twin<T>(sb: &Running, f: impl FnOnce(&mut offboard::apps::github::twin::State) -> T) -> T {
    f(&mut sb.state.github.lock().unwrap())
}

#[tokio::test]
async fn lookup_through_scim_and_saml_identities_never_public_emails() {
    let e = env(300).await;
    let dana = found(&e.gh, "dana.whitfield@example.com").await;
    assert_eq!(dana.login, "dana-whitfield_exco");
    assert!(
        dana.facts
            .iter()
            .any(|(k, v)| k == "found by" && v == "SAML identity")
    );
    assert!(dana.facts.iter().any(|(k, _)| k == "SCIM identity"));
    // Marcus is an owner.
    let marcus = found(&e.gh, "MARCUS.REYES@example.com").await;
    assert!(marcus.is_admin);
    // Alex's identity is under the older address: the alias finds it.
    let mut person = Person::new("alex.chen@example.com");
    person.add_alias("achen@example.com");
    let alex = e.gh.find_person(&person).await.unwrap();
    match alex {
        Lookup::Found { account } => {
            assert_eq!(account.login, "achen_exco");
            assert_eq!(account.matched_by.as_deref(), Some("achen@example.com"));
        }
        other => panic!("{other:?}"),
    }
    // The contractor has a personal account no identity names: the
    // config's mapping finds her.
    let lena = found(&e.gh, "lena.kowalski@example.com").await;
    assert_eq!(lena.login, "lena-k-dev");
    assert!(lena.facts.iter().any(|(_, v)| v == "outside collaborator"));
    // In the enterprise, not in the org: no account.
    assert!(matches!(
        e.gh.find_person(&Person::new("ada.abbott@example.com"))
            .await
            .unwrap(),
        Lookup::NotFound
    ));
    let text = e.log.text();
    assert!(text.contains("/scim/v2/organizations/example-co/Users"));
    assert!(text.contains("/enterprises/example/consumed-licenses"));
    assert!(
        !text.contains("/search/users"),
        "never a public-email search"
    );
}

#[tokio::test]
async fn without_a_login_the_lookup_fails_and_never_guesses() {
    // No enterprise (no SAML identities): Dana's SCIM identity names no login.
    let e = env_with(300, |r| {
        r.manifest.settings.remove("enterprise");
        r.manifest.settings.remove("logins");
    })
    .await;
    let err =
        e.gh.find_person(&Person::new("dana.whitfield@example.com"))
            .await
            .unwrap_err();
    assert!(err.to_string().contains("settings.logins"), "{err}");
    // Lena has no identity at all: without the mapping she is not found,
    // even though a public profile could name her.
    assert!(matches!(
        e.gh.find_person(&Person::new("lena.kowalski@example.com"))
            .await
            .unwrap(),
        Lookup::NotFound
    ));
}

#[tokio::test]
async fn urgent_termination_every_operation_verified_by_fresh_reads() {
    let e = env(200).await;
    let marcus = found(&e.gh, "marcus.reyes@example.com").await;
    let grants = listed(&e.gh, &marcus).await;
    for (prefix, n) in [
        ("admin", 1),
        ("orgrole", 1),
        ("team", 2),
        ("credential", 2),
        ("pat", 2),
        ("copilot", 1),
        ("codespace", 1),
        ("membership", 1),
    ] {
        assert_eq!(by_prefix(&grants, prefix).len(), n, "{prefix}: {grants:#?}");
    }
    // Repositories, apps and OAuth apps he created or approved: for
    // hand-over (the deleted scratch repository is not listed).
    let owned = of_kind(&grants, GrantKind::OwnedApp);
    assert_eq!(owned.len(), 3, "{owned:#?}");
    assert!(owned.iter().all(|g| g.is_manual()));
    assert!(owned.iter().any(|g| g.id == "owned-app:marcus-deploy-bot"));
    assert!(!owned.iter().any(|g| g.id.contains("scratch")));
    let cred = &by_prefix(&grants, "credential")[0];
    assert!(
        cred.details.contains("stays valid elsewhere"),
        "{}",
        cred.details
    );

    // Phase by phase, each confirmed by a fresh read.
    let mut order: Vec<&Grant> = grants.iter().filter(|g| !g.is_manual()).collect();
    order.sort_by_key(|g| (g.phase(), g.id.starts_with("membership")));
    for g in &order {
        let out =
            e.gh.revoke(&marcus, g)
                .await
                .unwrap_or_else(|err| panic!("{}: {err}", g.id));
        assert_eq!(out, RevokeOutcome::Accepted, "{}", g.id);
        if g.id.starts_with("admin:") {
            // Demoted, still a member until the membership goes.
            with_twin(&e.sb, |st| {
                let i = st.member_idx("marcus-reyes_exco").unwrap();
                assert_eq!(st.members[i].role, "member");
            });
        }
    }
    let owned_api: Vec<Grant> = order.into_iter().cloned().collect();
    // Removed items stay listed for a while: not yet confirmed at once.
    assert!(
        e.gh.verify(&marcus, &owned_api)
            .await
            .iter()
            .any(|(_, p)| matches!(p, Ok(Presence::Present))),
        "eventual consistency"
    );
    wait_absent(&e.gh, &marcus, &owned_api).await;
    with_twin(&e.sb, |st| {
        assert!(st.member_idx("marcus-reyes_exco").is_none());
        assert!(
            st.pats
                .iter()
                .filter(|p| p.login == "marcus-reyes_exco")
                .all(|p| p.removed_at.is_some())
        );
        assert!(
            st.credentials
                .iter()
                .filter(|p| p.login == "marcus-reyes_exco")
                .all(|p| p.removed_at.is_some())
        );
        assert!(
            st.codespaces
                .iter()
                .filter(|p| p.login == "marcus-reyes_exco")
                .all(|p| p.removed_at.is_some())
        );
    });
    let text = e.log.text();
    assert!(text.contains(r#""method":"POST","path":"/orgs/example-co/personal-access-tokens""#));
    assert!(
        text.contains(
            r#""method":"DELETE","path":"/orgs/example-co/memberships/marcus-reyes_exco""#
        )
    );
    assert!(
        text.contains(r#""method":"PUT","path":"/orgs/example-co/memberships/marcus-reyes_exco""#)
    );
    assert!(
        text.contains(
            r#""method":"DELETE","path":"/orgs/example-co/copilot/billing/selected_users""#
        )
    );
    // A second removal is already gone.
    let m = by_prefix(&grants, "membership")[0];
    assert_eq!(
        e.gh.revoke(&marcus, m).await.unwrap(),
        RevokeOutcome::AlreadyGone
    );
}

#[tokio::test]
async fn outside_collaborator_repositories_and_invitation_removed() {
    let e = env(100).await;
    let lena = found(&e.gh, "lena.kowalski@example.com").await;
    let grants = listed(&e.gh, &lena).await;
    assert_eq!(by_prefix(&grants, "repo").len(), 2, "{grants:#?}");
    assert_eq!(by_prefix(&grants, "invitation").len(), 1);
    assert_eq!(by_prefix(&grants, "outside").len(), 1);
    assert!(by_prefix(&grants, "membership").is_empty());
    for g in &grants {
        assert_eq!(
            e.gh.revoke(&lena, g).await.unwrap(),
            RevokeOutcome::Accepted,
            "{}",
            g.id
        );
    }
    wait_absent(&e.gh, &lena, &grants).await;
    with_twin(&e.sb, |st| {
        assert!(st.outside.iter().all(|o| o.removed_at.is_some()));
        assert!(st.invitations.iter().all(|i| i.removed_at.is_some()));
    });
}

#[tokio::test]
async fn enterprise_team_membership_refuses_direct_removal() {
    let e = env(100).await;
    let alex = found(&e.gh, "achen@example.com").await;
    let grants = listed(&e.gh, &alex).await;
    assert!(by_prefix(&grants, "membership").is_empty(), "{grants:#?}");
    let held = by_prefix(&grants, "enterprise-teams");
    assert_eq!(held.len(), 1);
    assert!(held[0].is_manual());
    assert!(held[0].label.contains("ent:engineering-all"));
    // Asked anyway, GitHub refuses: a step for a person, with the reason.
    let mut direct = held[0].clone();
    direct.id = "membership:achen_exco".into();
    match e.gh.revoke(&alex, &direct).await {
        Err(ConnectorError::Refused {
            message, manual, ..
        }) => {
            assert!(message.contains("enterprise teams"), "{message}");
            assert!(manual.contains("enterprise"), "{manual}");
        }
        other => panic!("{other:?}"),
    }
    with_twin(&e.sb, |st| assert!(st.member_idx("achen_exco").is_some()));
}

#[tokio::test]
async fn what_a_team_gives_goes_with_the_team() {
    let e = env(100).await;
    let tom = found(&e.gh, "tom.becker@example.com").await;
    let grants = listed(&e.gh, &tom).await;
    let seat = by_prefix(&grants, "copilot");
    assert_eq!(seat.len(), 1);
    assert!(seat[0].is_manual());
    assert_eq!(seat[0].after, vec!["team:platform".to_string()]);
    let role = by_prefix(&grants, "orgrole");
    assert_eq!(role.len(), 1);
    assert!(role[0].is_manual());
    assert_eq!(role[0].after, vec!["team:security".to_string()]);
    // GitHub refuses to cancel a seat a team gives.
    let mut api_seat = seat[0].clone();
    api_seat.revocation = offboard::model::Revocation::Api;
    assert!(matches!(
        e.gh.revoke(&tom, &api_seat).await,
        Err(ConnectorError::Refused { .. })
    ));
    let teams: Vec<Grant> = grants
        .iter()
        .filter(|g| g.id == "team:platform" || g.id == "team:security")
        .cloned()
        .collect();
    assert_eq!(teams.len(), 2);
    for t in &teams {
        e.gh.revoke(&tom, t).await.unwrap();
    }
    wait_absent(&e.gh, &tom, &teams).await;
    // A fresh read no longer lists the seat or the role.
    let after = vec![seat[0].clone(), role[0].clone()];
    wait_absent(&e.gh, &tom, &after).await;
}

#[tokio::test]
async fn the_scim_identity_outlives_a_removal_made_in_github() {
    let e = env(100).await;
    let dana = found(&e.gh, "dana.whitfield@example.com").await;
    let grants = listed(&e.gh, &dana).await;
    let scim = by_prefix(&grants, "scim");
    assert_eq!(scim.len(), 1);
    assert!(scim[0].is_manual());
    let m = by_prefix(&grants, "membership")[0].clone();
    e.gh.revoke(&dana, &m).await.unwrap();
    wait_absent(&e.gh, &dana, std::slice::from_ref(&m)).await;
    // Still there: the identity provider must deprovision it.
    let r = e.gh.verify(&dana, &[scim[0].clone()]).await;
    assert!(matches!(r[0].1, Ok(Presence::Present)), "{r:?}");
    // A grant no GitHub listing holds is never taken for gone.
    let mut stranger = m.clone();
    stranger.id = "unknown:1".into();
    let r = e.gh.verify(&dana, &[stranger]).await;
    assert!(r[0].1.is_err(), "{r:?}");
    // Her teams and seat went with the membership.
    let rest: Vec<Grant> = grants
        .iter()
        .filter(|g| g.id.starts_with("team:") || g.id.starts_with("copilot:"))
        .cloned()
        .collect();
    assert_eq!(rest.len(), 3);
    wait_absent(&e.gh, &dana, &rest).await;
}

#[tokio::test]
async fn emu_suspends_through_scim_and_deletes_only_when_told() {
    let emu = |r: &mut ResolvedConnector| {
        set(r, "emu", toml::Value::Boolean(true));
        set(r, "emu_shortcode", toml::Value::String("exco".into()));
    };
    let e = env_with(100, emu).await;
    let dana = found(&e.gh, "dana.whitfield@example.com").await;
    assert_eq!(dana.login, "dana-whitfield_exco");
    let grants = listed(&e.gh, &dana).await;
    assert!(by_prefix(&grants, "membership").is_empty(), "{grants:#?}");
    let suspend = by_prefix(&grants, "suspend");
    assert_eq!(suspend.len(), 1);
    e.gh.revoke(&dana, suspend[0]).await.unwrap();
    wait_absent(&e.gh, &dana, &[suspend[0].clone()]).await;
    with_twin(&e.sb, |st| {
        let u = st
            .emu_scim
            .iter()
            .find(|u| u.user_name == "dana.whitfield@example.com")
            .unwrap();
        assert!(!u.active);
        assert!(u.removed_at.is_none(), "suspended, never deleted");
    });
    assert_eq!(e.log.count(&["\"method\":\"DELETE\"", "/scim/v2/"]), 0);

    let e = env_with(100, |r| {
        emu(r);
        set(r, "emu_close", toml::Value::String("delete".into()));
    })
    .await;
    let priya = found(&e.gh, "priya.natarajan@example.com").await;
    let grants = listed(&e.gh, &priya).await;
    let del = by_prefix(&grants, "delete");
    assert_eq!(del.len(), 1);
    e.gh.revoke(&priya, del[0]).await.unwrap();
    wait_absent(&e.gh, &priya, &[del[0].clone()]).await;
    assert_eq!(
        e.log
            .count(&["\"method\":\"DELETE\"", "/scim/v2/enterprises/"]),
        1
    );
}

#[tokio::test]
async fn paging_follows_link_headers() {
    let e = env_with(100, |r| set(r, "page_size", toml::Value::Integer(10))).await;
    // 300-odd enterprise seats, ten a page.
    let dana = found(&e.gh, "dana.whitfield@example.com").await;
    assert!(
        e.log.count(&["consumed-licenses", "page=30"]) >= 1,
        "{}",
        e.log.text()
    );
    let grants = listed(&e.gh, &dana).await;
    assert_eq!(by_prefix(&grants, "credential").len(), 2);
    assert!(e.log.text().contains("per_page=10"));
}

#[tokio::test]
async fn the_primary_limit_waits_for_its_reset_on_403_and_on_429() {
    for status in [403u16, 429] {
        let dir = tempfile::tempdir().unwrap();
        let e = env(100).await;
        with_twin(&e.sb, |st| {
            st.settings.window_secs = 2;
            st.settings.force_primary = 2;
            st.settings.primary_status = status;
        });
        let resolved = demo_connector(&e.sb, dir.path(), "github", "");
        let (ctx, mut notices) = context_with_notices(dir.path());
        let gh = GitHub::new(&resolved, &ctx).unwrap();
        let a = found(&gh, "dana.whitfield@example.com").await;
        assert_eq!(a.login, "dana-whitfield_exco");
        assert_eq!(
            e.log.count(&[&format!("\"status\":{status}")]),
            2,
            "{}",
            e.log.text()
        );
        let mut waits = Vec::new();
        while let Ok(n) = notices.try_recv() {
            if let HttpNotice::RateLimited { wait, .. } = n {
                waits.push(wait);
            }
        }
        assert_eq!(waits.len(), 2, "{status}: {waits:?}");
        // To the window's reset (at most its 2 s and the margin), not a blind backoff.
        assert!(
            waits.iter().all(|w| *w <= Duration::from_millis(2600)),
            "{waits:?}"
        );
    }
}

#[tokio::test]
async fn the_secondary_limit_waits_for_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(100).await;
    with_twin(&e.sb, |st| {
        st.settings.force_secondary = 1;
        st.settings.secondary_retry_after_secs = 1;
    });
    let resolved = demo_connector(&e.sb, dir.path(), "github", "");
    let (ctx, mut notices) = context_with_notices(dir.path());
    let gh = GitHub::new(&resolved, &ctx).unwrap();
    found(&gh, "dana.whitfield@example.com").await;
    let mut waits = Vec::new();
    while let Ok(n) = notices.try_recv() {
        if let HttpNotice::RateLimited { wait, .. } = n {
            waits.push(wait);
        }
    }
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert!(
        waits[0] >= Duration::from_secs(1) && waits[0] < Duration::from_secs(2),
        "{waits:?}"
    );
    assert!(e.log.text().contains("\"status\":403"));
}

#[tokio::test]
async fn a_refusal_is_not_a_rate_limit_and_a_pat_cannot_list_fine_grained_pats() {
    // A classic PAT from the config instead of the app.
    let e = env_with(100, |r| {
        r.manifest.auth.flow = Some("static".into());
        r.manifest.auth.token_file = Some(r.path("github-token").display().to_string());
    })
    .await;
    let marcus = found(&e.gh, "marcus.reyes@example.com").await;
    let inv = e.gh.list_grants(&marcus).await;
    let err = inv
        .kind_failed(GrantKind::ApiKey)
        .expect("PAT listing refused");
    assert!(err.to_string().contains("only a GitHub App"), "{err}");
    // The rest was read; the refusal was asked once, never retried.
    assert!(!of_kind(&inv.grants, GrantKind::Group).is_empty());
    assert_eq!(e.log.count(&["/orgs/example-co/personal-access-tokens"]), 1);
    assert_eq!(e.gh.client_stats().rate_limited, 0);
}

#[tokio::test]
async fn rate_limit_headers_pace_the_client_before_github_refuses() {
    let e = env_with(100, |r| set(r, "page_size", toml::Value::Integer(20))).await;
    with_twin(&e.sb, |st| {
        st.settings.rate_limit = 6;
        st.settings.window_secs = 1;
    });
    // Sixteen pages of enterprise seats and the org's reads, six a second.
    let dana = found(&e.gh, "dana.whitfield@example.com").await;
    assert_eq!(dana.login, "dana-whitfield_exco");
    assert!(e.log.count(&["consumed-licenses"]) >= 15);
    assert_eq!(
        e.log.count(&["\"status\":403"]),
        0,
        "paced before any refusal: {}",
        e.log.text()
    );
    assert_eq!(e.log.count(&["\"status\":429"]), 0);
    let info = e.gh.client_stats().limit_info.unwrap();
    assert!(info.contains("left (core"), "{info}");
}

#[tokio::test]
async fn the_installation_token_is_renewed_before_it_expires() {
    let e = env(100).await;
    with_twin(&e.sb, |st| st.settings.token_lifetime_secs = 2);
    found(&e.gh, "dana.whitfield@example.com").await;
    assert_eq!(e.log.count(&["/app/installations/7001/access_tokens"]), 1);
    common::wait_for(Duration::from_secs(20), "a renewed token", || async {
        found(&e.gh, "dana.whitfield@example.com").await;
        (e.log.count(&["/app/installations/7001/access_tokens"]) >= 2).then_some(())
    })
    .await;
    assert_eq!(e.log.count(&["\"status\":401"]), 0, "renewed before expiry");
}

#[tokio::test]
async fn a_wrong_app_is_an_auth_error_that_shows_no_credential() {
    let e = env_with(100, |r| r.manifest.auth.client_id = Some("999".into())).await;
    let err =
        e.gh.find_person(&Person::new("dana.whitfield@example.com"))
            .await
            .unwrap_err();
    assert!(matches!(err, ConnectorError::Auth(_)), "{err:?}");
    assert!(err.to_string().contains("installation token"), "{err}");
    assert!(
        !err.to_string().contains("eyJ"),
        "no JWT in the error: {err}"
    );
    let _ = &e.dir;
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_in_githubs_shape() {
    let e = env(100).await;
    let c = reqwest::Client::new();
    let r = c
        .get(format!("{}/orgs/example-co/no-such-thing", e.sb.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["message"], "Not Found");
    assert!(v["documentation_url"].is_string());
    let r = c
        .get(format!("{}/orgs/example-co/members", e.sb.base_url))
        .bearer_auth("ghp_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["message"], "Bad credentials");
}

#[tokio::test]
async fn saml_identities_need_the_enterprise_token_and_say_so() {
    // The app alone cannot read its enterprise: the lookup fails (never
    // "no account"), naming GitHub's refusal.
    let e = env_with(100, |r| r.manifest.auth.scim_token_file = None).await;
    let err =
        e.gh.find_person(&Person::new("dana.whitfield@example.com"))
            .await
            .unwrap_err();
    assert!(
        err.to_string().contains("not accessible by integration"),
        "{err}"
    );
    assert_eq!(e.gh.client_stats().rate_limited, 0);
}

#[tokio::test]
async fn the_sweep_lists_members_outside_collaborators_and_installed_apps() {
    let e = env_with(100, |r| set(r, "page_size", toml::Value::Integer(25))).await;
    let all = e.gh.list_accounts().await.unwrap();
    use offboard::connector::AccountClass;
    let of = |c: AccountClass| all.iter().filter(|a| a.class == c).count();
    let members = with_twin(&e.sb, |st| st.members.len());
    assert_eq!(of(AccountClass::Member), members);
    assert!(members > 25, "paged: {members}");
    assert!(
        all.iter()
            .any(|a| a.class == AccountClass::Guest && a.account.login == "lena-k-dev")
    );
    assert_eq!(of(AccountClass::NonHuman), 3);
}

/// PyGithub, unmodified (its base_url pointed here), signs in as the app
/// and offboards Marcus through the calls GitHub documents; `.ci/run`
/// installs it. See tests/clients/github_client.py.
#[tokio::test]
async fn pygithub_offboards_through_the_documented_calls() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let probe = tokio::process::Command::new("python3")
        .args(["-c", "import github, jwt"])
        .output()
        .await;
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs python3 with PyGithub (pip install PyGithub): {probe:?}"
    );
    let e = env(200).await;
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("python3")
            .arg(root.join("tests/clients/github_client.py"))
            .arg("--base-url")
            .arg(&e.sb.base_url)
            .arg("--key-file")
            .arg(e.dir.path().join("github-app.key.pem"))
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
    assert!(stdout.contains("offboarded marcus-reyes_exco"), "{stdout}");
    let text = e.log.text();
    for needle in [
        r#""method":"POST","path":"/app/installations/7001/access_tokens""#,
        r#""method":"DELETE","path":"/orgs/example-co/memberships/marcus-reyes_exco""#,
        r#""method":"DELETE","path":"/orgs/example-co/copilot/billing/selected_users""#,
        r#""method":"DELETE","path":"/orgs/example-co/outside_collaborators/lena-k-dev""#,
        "page=2",
    ] {
        assert!(text.contains(needle), "{needle} not in:\n{text}");
    }
    with_twin(&e.sb, |st| {
        assert!(st.member_idx("marcus-reyes_exco").is_none())
    });
}

/// The CLI end to end: `revoke --app github --yes --json` on the urgent
/// termination removes what the API can and confirms it with fresh reads;
/// the hand-overs and the stale SCIM identity stay as next steps (exit 3)
/// until `done` ticks them off.
#[tokio::test]
async fn the_cli_revokes_github_and_leaves_the_hand_overs() {
    let e = env(200).await;
    let cfg = e.dir.path().join("config.toml");
    let data = e.dir.path().join("data");
    let run = |args: Vec<String>| {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"));
        c.args(&args)
            .env("OFFBOARD_CONFIG", &cfg)
            .env("OFFBOARD_DATA", &data)
            .env("COLUMNS", "120")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        async move {
            let out = tokio::time::timeout(Duration::from_secs(120), c.output())
                .await
                .expect("in time")
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).to_string(),
                String::from_utf8_lossy(&out.stderr).to_string(),
            )
        }
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let email = "marcus.reyes@example.com";
    let (code, out, err) = run(s(&["revoke", email, "--app", "github", "--yes", "--json"])).await;
    assert_eq!(code, Some(3), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let grants = v["grants"].as_array().unwrap();
    let state = |id: &str| {
        grants
            .iter()
            .find(|g| g["id"] == id)
            .map(|g| g["state"].as_str().unwrap().to_string())
    };
    assert_eq!(
        state("membership:marcus-reyes_exco").as_deref(),
        Some("verified")
    );
    assert_eq!(
        state("admin:marcus-reyes_exco").as_deref(),
        Some("verified")
    );
    assert_eq!(
        state("owned-app:marcus-deploy-bot").as_deref(),
        Some("manual")
    );
    assert!(
        grants
            .iter()
            .filter(|g| g["revocation"] == "api")
            .all(|g| g["state"] == "verified"),
        "{out}"
    );
    let manual: Vec<String> = grants
        .iter()
        .filter(|g| g["state"] == "manual")
        .map(|g| g["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(manual.len(), 4, "{manual:?}");
    assert!(!out.contains(offboard::apps::github::twin::DEMO_TOKEN));
    for key in &manual {
        let (code, out, err) = run(s(&[
            "done",
            email,
            key,
            "--note",
            "handed over to platform team",
        ]))
        .await;
        assert!(matches!(code, Some(0) | Some(3)), "{out}\n{err}");
    }
    // Removed from the org, GitHub no longer knows him (exit 3 says so for
    // a verify of GitHub alone), and every grant is closed.
    let (code, out, err) = run(s(&["verify", email, "--app", "github", "--json"])).await;
    assert_eq!(code, Some(3), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let sum = &v["summary"];
    for k in ["live", "removing", "unconfirmed", "failed", "manual"] {
        assert_eq!(sum[k], 0, "{k}: {out}");
    }
    assert!(
        v["grants"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["state"] == "verified" || g["state"] == "acknowledged"),
        "{out}"
    );
}
