//! Slack user groups that hold a deactivated member, over HTTP against the
//! Slack sandbox: Slack lists such members but refuses them in
//! `usergroups.users.update` (`invalid_users`), so the removal leaves them
//! out of the list it writes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use offboard::apps::build;
use offboard::connector::http::shared_reqwest;
use offboard::connector::{BuildContext, Connector, Lookup, Presence, RevokeOutcome};
use offboard::model::{GrantKind, Person};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_with_a_deactivated_member_loses_the_leaver() {
    let sb = common::sandbox(common::quick(0)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(&dir.path().join("cfg"), &sb.base_url);
    let resolved = offboard::config::load(&config)
        .unwrap()
        .connectors()
        .unwrap()
        .into_iter()
        .find(|r| r.id == "slack")
        .unwrap();
    let slack: Arc<dyn Connector> = build(
        &resolved,
        &BuildContext {
            http: shared_reqwest(),
            notices: None,
            data_dir: dir.path().to_path_buf(),
        },
    )
    .unwrap();
    let email = "marcus.reyes@example.com";
    let account = match slack.find_person(&Person::new(email)).await.unwrap() {
        Lookup::Found { account } => account,
        other => panic!("{other:?}"),
    };
    let inv = slack.list_grants(&account).await;
    assert!(inv.failed.is_empty(), "{:?}", inv.failed);
    let group = inv
        .grants
        .iter()
        .find(|g| g.kind == GrantKind::Group && !g.is_manual())
        .cloned()
        .expect("marcus is in a user group");
    let gid = group.id.strip_prefix("usergroup:").unwrap().to_string();
    // Someone deactivated long ago is still a member of the group.
    let (gone, others) = {
        let mut st = sb.state.slack.lock().unwrap();
        let gone = st
            .users
            .iter()
            .find(|u| u.deleted)
            .expect("the tenant has a deactivated user")
            .id
            .clone();
        let g = st.groups.iter_mut().find(|g| g.id == gid).unwrap();
        g.users.push(gone.clone());
        let others: Vec<String> = g
            .users
            .iter()
            .filter(|u| **u != account.id && **u != gone)
            .cloned()
            .collect();
        (gone, others)
    };
    assert!(!others.is_empty(), "the group has other active members");

    let outcome = slack.revoke(&account, &group).await;
    assert!(
        matches!(outcome, Ok(RevokeOutcome::Accepted)),
        "{outcome:?}"
    );
    {
        let st = sb.state.slack.lock().unwrap();
        let g = st.groups.iter().find(|g| g.id == gid).unwrap();
        assert!(!g.users.contains(&account.id), "{:?}", g.users);
        assert!(!g.users.contains(&gone), "{:?}", g.users);
        for o in &others {
            assert!(g.users.contains(o), "{o} was kept: {:?}", g.users);
        }
    }
    common::wait_for(Duration::from_secs(10), "the removal to be read", || {
        let (slack, account, group) = (slack.clone(), account.clone(), group.clone());
        async move {
            let r = slack.verify(&account, std::slice::from_ref(&group)).await;
            matches!(r[0].1, Ok(Presence::Absent)).then_some(())
        }
    })
    .await;
    sb.stop().await;
}
