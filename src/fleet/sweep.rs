//! The orphan sweep: every account of every connected app, each matched to
//! the roster by its addresses, and what outlived its person.
//!
//! Findings:
//! - `left`: an active account of someone the roster says has left;
//! - `not_in_roster`: an active member account that matches nobody in the
//!   roster (only with a roster);
//! - `suspended_identity`: an active account of a person whose account in
//!   the identity directory (the first connector, Google in the demo) is
//!   suspended;
//! - `guest_without_owner`: an active guest or external collaborator with
//!   no roster entry, no manager, or a manager who has left;
//! - `owner_left`: a non-human identity (bot, app, integration) whose owner
//!   has left, is suspended in the directory, or is not in the roster.
//!
//! An app whose listing failed is "not swept": nothing is concluded about
//! it, and it is never reported clean.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::join_all;
use serde::Serialize;

use super::{Roster, Status};
use crate::connector::{AccountClass, Connector, ListedAccount};
use crate::sanitize::{clean, clean_max};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    Left,
    NotInRoster,
    SuspendedIdentity,
    GuestWithoutOwner,
    OwnerLeft,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Left => "left",
            FindingKind::NotInRoster => "not_in_roster",
            FindingKind::SuspendedIdentity => "suspended_identity",
            FindingKind::GuestWithoutOwner => "guest_without_owner",
            FindingKind::OwnerLeft => "owner_left",
        }
    }
}

/// One account that outlived its person (or its owner).
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub app: String,
    pub account_id: String,
    pub login: String,
    pub display_name: String,
    /// `member`, `guest` or `non_human`.
    pub class: AccountClass,
    pub kind: FindingKind,
    /// Why, in plain words.
    pub why: String,
    /// Last sign-in or activity the app reports, when it does.
    pub last_activity: Option<String>,
    /// The command that offboards it.
    pub command: String,
}

/// How one app's sweep went.
#[derive(Debug, Clone, Serialize)]
pub struct AppSweep {
    pub app: String,
    pub name: String,
    /// `swept` or `not_swept`.
    pub status: &'static str,
    /// Accounts listed (0 when not swept).
    pub accounts: usize,
    /// Why it was not swept.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    /// The connector whose suspensions define a suspended identity.
    pub directory: Option<String>,
    pub roster: bool,
    pub apps: Vec<AppSweep>,
    pub findings: Vec<Finding>,
}

impl SweepReport {
    pub fn not_swept(&self) -> usize {
        self.apps.iter().filter(|a| a.status != "swept").count()
    }

    /// 0 clean, 3 findings or an app not swept.
    pub fn exit_code(&self) -> u8 {
        if self.findings.is_empty() && self.not_swept() == 0 {
            0
        } else {
            3
        }
    }
}

/// The addresses of an account, lower case, primary first.
fn addresses(a: &ListedAccount) -> Vec<String> {
    let mut v: Vec<String> = a
        .account
        .addresses
        .iter()
        .map(|x| x.to_ascii_lowercase())
        .collect();
    let login = a.account.login.to_ascii_lowercase();
    if login.contains('@') && !v.contains(&login) {
        v.push(login);
    }
    v
}

fn primary(a: &ListedAccount) -> String {
    addresses(a)
        .into_iter()
        .next()
        .unwrap_or_else(|| a.account.login.clone())
}

/// Sweeps every connector (concurrently, each through its own shared
/// client). `directory` names the identity directory (default: the first
/// connector).
pub async fn sweep(
    connectors: &[Arc<dyn Connector>],
    roster: Option<&Roster>,
    directory: Option<&str>,
) -> SweepReport {
    let listings = join_all(connectors.iter().map(|c| c.list_accounts())).await;
    let directory = directory
        .map(str::to_string)
        .or_else(|| connectors.first().map(|c| c.id().to_string()));
    let mut apps = Vec::new();
    let mut swept: Vec<(String, Vec<ListedAccount>)> = Vec::new();
    for (c, l) in connectors.iter().zip(listings) {
        match l {
            Ok(accounts) => {
                apps.push(AppSweep {
                    app: c.id().to_string(),
                    name: clean(c.display_name()),
                    status: "swept",
                    accounts: accounts.len(),
                    error: None,
                });
                swept.push((c.id().to_string(), accounts));
            }
            Err(e) => apps.push(AppSweep {
                app: c.id().to_string(),
                name: clean(c.display_name()),
                status: "not_swept",
                accounts: 0,
                error: Some(clean_max(&e.to_string(), 300)),
            }),
        }
    }
    // Suspended identities: addresses of the directory's inactive members.
    let mut suspended: HashMap<String, String> = HashMap::new();
    if let Some(dir) = &directory
        && let Some((_, accounts)) = swept.iter().find(|(id, _)| id == dir)
    {
        for a in accounts
            .iter()
            .filter(|a| a.class == AccountClass::Member && !a.account.active)
        {
            let p = primary(a);
            for x in addresses(a) {
                suspended.insert(x, p.clone());
            }
        }
    }
    let index = roster.map(Roster::index);
    let index = index.as_ref();
    let mut findings = Vec::new();
    for (app, accounts) in &swept {
        let in_directory = directory.as_deref() == Some(app.as_str());
        for a in accounts.iter().filter(|a| a.account.active) {
            let addrs = addresses(a);
            let person = index.and_then(|r| r.find_any(addrs.iter().map(String::as_str)));
            let email = person
                .map(|p| p.email.clone())
                .unwrap_or_else(|| primary(a));
            let revoke = format!("offboard revoke {} --app {app} --yes", clean(&email));
            let mut found = |kind: FindingKind, why: String, command: String| {
                findings.push(Finding {
                    app: app.clone(),
                    account_id: clean(&a.account.id),
                    login: clean(&a.account.login),
                    display_name: clean(&a.account.display_name),
                    class: a.class,
                    kind,
                    why,
                    last_activity: a.account.last_login.as_deref().map(clean),
                    command,
                });
            };
            match a.class {
                AccountClass::NonHuman => {
                    let Some(owner) = a.owner.as_deref() else {
                        continue;
                    };
                    let owner_l = owner.to_ascii_lowercase();
                    let owner_entry = index.and_then(|r| r.find(&owner_l));
                    let who = owner_entry
                        .map(|e| e.email.clone())
                        .unwrap_or_else(|| clean(owner));
                    let command =
                        format!("offboard revoke {who} --app {app} --kind owned_app --yes");
                    if owner_entry.is_some_and(|e| e.status == Status::Left) {
                        found(
                            FindingKind::OwnerLeft,
                            format!("owned by {who}, who has left"),
                            command,
                        );
                    } else if let Some(d) = suspended.get(&owner_l) {
                        found(
                            FindingKind::OwnerLeft,
                            format!(
                                "owned by {who}, suspended in {}",
                                directory.as_deref().unwrap_or("the directory")
                            ),
                            format!("offboard revoke {d} --app {app} --kind owned_app --yes"),
                        );
                    } else if roster.is_some() && owner_entry.is_none() {
                        found(
                            FindingKind::OwnerLeft,
                            format!("owned by {who}, who is not in the roster"),
                            command,
                        );
                    }
                }
                class => {
                    if let Some(p) = person
                        && p.status == Status::Left
                    {
                        found(
                            FindingKind::Left,
                            format!("{} has left (roster) and the account is active", p.email),
                            revoke,
                        );
                        continue;
                    }
                    if !in_directory && let Some(d) = addrs.iter().find_map(|x| suspended.get(x)) {
                        found(
                            FindingKind::SuspendedIdentity,
                            format!(
                                "{d} is suspended in {} and this account is active",
                                directory.as_deref().unwrap_or("the directory")
                            ),
                            revoke,
                        );
                        continue;
                    }
                    if class == AccountClass::Guest {
                        let owner = person.and_then(|p| p.manager.as_deref());
                        let owner_left = owner
                            .and_then(|m| index.and_then(|r| r.find(m)))
                            .is_some_and(|m| m.status == Status::Left)
                            || owner.is_some_and(|m| suspended.contains_key(m));
                        if roster.is_some() && (owner.is_none() || owner_left) {
                            let why = match owner {
                                None if person.is_none() => {
                                    "guest or external collaborator, not in the roster: no owner"
                                        .to_string()
                                }
                                None => "guest or external collaborator with no owner (no manager in the roster)".to_string(),
                                Some(m) => format!("guest or external collaborator whose owner {m} has left"),
                            };
                            found(FindingKind::GuestWithoutOwner, why, revoke);
                        }
                        continue;
                    }
                    if roster.is_some() && person.is_none() {
                        found(
                            FindingKind::NotInRoster,
                            "active account that matches nobody in the roster".to_string(),
                            revoke,
                        );
                    }
                }
            }
        }
    }
    SweepReport {
        directory,
        roster: roster.is_some(),
        apps,
        findings,
    }
}
