//! Pure domain types: a person, the accounts found for them, their grants,
//! grant states and the phased plan. No I/O here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The leaver as the operator names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// When the person leaves (from the operator or an HR feed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_at: Option<DateTime<Utc>>,
    /// Other addresses of the same person (lower case), learned from
    /// accounts found elsewhere; drivers try them after `email`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Who receives the leaver's data in a hand-over (Google Drive and
    /// Calendar): the manager from the roster, or a person the operator
    /// names. Lower case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hand_over_to: Option<String>,
}

impl Person {
    pub fn new(email: impl Into<String>) -> Self {
        Self {
            email: email.into().trim().to_ascii_lowercase(),
            display_name: None,
            exit_at: None,
            aliases: Vec::new(),
            hand_over_to: None,
        }
    }

    /// Adds an alias (normalised); false when it is the primary address,
    /// already known, or not an address.
    pub fn add_alias(&mut self, address: &str) -> bool {
        let a = address.trim().to_ascii_lowercase();
        if !a.contains('@') || a == self.email || self.aliases.contains(&a) {
            return false;
        }
        self.aliases.push(a);
        true
    }

    /// The primary address, then each alias.
    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.email.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

/// The person's account in one app, as the app reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Connector id (e.g. `google`).
    pub connector: String,
    /// The app's own id for the user.
    pub id: String,
    /// Login name (primary email, username).
    pub login: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub active: bool,
    #[serde(default)]
    pub is_admin: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_login: Option<String>,
    /// Free-form facts worth showing (profile, user type, suspension reason).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<(String, String)>,
    /// Every email address the app knows for the user (primary, aliases).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// The alias the account was found through, when not the leaver's
    /// primary address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_by: Option<String>,
}

/// Every kind of access a leaver can keep. Names as in DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantKind {
    Account,
    Session,
    OauthGrant,
    AppPassword,
    BackupCodes,
    ApiKey,
    License,
    Group,
    AdminRole,
    Device,
    Delegation,
    OwnedApp,
}

impl GrantKind {
    pub const ALL: [GrantKind; 12] = [
        GrantKind::Account,
        GrantKind::Session,
        GrantKind::OauthGrant,
        GrantKind::AppPassword,
        GrantKind::BackupCodes,
        GrantKind::ApiKey,
        GrantKind::License,
        GrantKind::Group,
        GrantKind::AdminRole,
        GrantKind::Device,
        GrantKind::Delegation,
        GrantKind::OwnedApp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::Account => "account",
            GrantKind::Session => "session",
            GrantKind::OauthGrant => "oauth_grant",
            GrantKind::AppPassword => "app_password",
            GrantKind::BackupCodes => "backup_codes",
            GrantKind::ApiKey => "api_key",
            GrantKind::License => "license",
            GrantKind::Group => "group",
            GrantKind::AdminRole => "admin_role",
            GrantKind::Device => "device",
            GrantKind::Delegation => "delegation",
            GrantKind::OwnedApp => "owned_app",
        }
    }

    pub fn parse(s: &str) -> Option<GrantKind> {
        let s = s.trim().to_ascii_lowercase().replace('-', "_");
        GrantKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The phase the default policy puts this kind in.
    pub fn default_phase(self) -> Phase {
        match self {
            GrantKind::Session
            | GrantKind::OauthGrant
            | GrantKind::AppPassword
            | GrantKind::BackupCodes
            | GrantKind::ApiKey
            | GrantKind::Device => Phase::CutAccess,
            GrantKind::AdminRole
            | GrantKind::Group
            | GrantKind::Delegation
            | GrantKind::License
            | GrantKind::OwnedApp => Phase::RemoveEntitlements,
            GrantKind::Account => Phase::CloseAccount,
        }
    }
}

impl fmt::Display for GrantKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    Medium,
    High,
    Critical,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Critical => "critical",
        }
    }
}

/// How a grant can be revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Revocation {
    /// The driver revokes it through the API.
    Api,
    /// A person must do it; the instructions say how.
    Manual { instructions: String },
}

/// One piece of residual access. Discovered facts only: the engine keeps the
/// state beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Connector id.
    pub connector: String,
    /// Unique within the connector and stable across reads, e.g.
    /// `token:123.apps.googleusercontent.com`. Never a secret.
    pub id: String,
    pub kind: GrantKind,
    pub label: String,
    #[serde(default)]
    pub details: String,
    pub risk: Risk,
    pub revocation: Revocation,
    /// When the access began or was last used, as the API reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The phase the vendor needs, when it differs from the kind's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Ids of grants of the same connector whose removal the vendor needs
    /// answered before this one is requested (when they are in the same
    /// phase of the plan). Everything else stays concurrent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
}

impl Grant {
    /// A grant the driver revokes through the API, in its kind's default
    /// phase, with nothing to wait for.
    pub fn api(
        connector: impl Into<String>,
        id: String,
        kind: GrantKind,
        label: String,
        details: String,
        risk: Risk,
    ) -> Grant {
        Grant {
            connector: connector.into(),
            // Ids are built from API text: made inert here, where every
            // driver builds its grants, so that listing, verifying, the
            // grant key, the ledger and JSON all hold the same safe id.
            id: crate::sanitize::clean(&id),
            kind,
            label,
            details,
            risk,
            revocation: Revocation::Api,
            since: None,
            phase: None,
            after: Vec::new(),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase.unwrap_or_else(|| self.kind.default_phase())
    }

    /// `connector/id`: unique across a case.
    pub fn key(&self) -> String {
        format!("{}/{}", self.connector, self.id)
    }

    pub fn is_manual(&self) -> bool {
        matches!(self.revocation, Revocation::Manual { .. })
    }
}

/// `live` → `revoking` → `removed?` → `verified` | `unconfirmed` |
/// `failed(reason)`; `manual` for steps a person does and ticks off;
/// `acknowledged` for what no API can list (and for ticked manual steps);
/// `vanished` for what a fresh read showed gone although this tool did not
/// remove it (someone else did, or it expired).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum GrantState {
    Live,
    Revoking,
    /// The API accepted the removal; a fresh read has not yet confirmed it.
    #[serde(rename = "removed?")]
    Removed,
    Verified {
        at: DateTime<Utc>,
    },
    Unconfirmed {
        reason: String,
    },
    Failed {
        reason: String,
    },
    Manual,
    Acknowledged {
        at: DateTime<Utc>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
}

impl GrantState {
    pub fn name(&self) -> &'static str {
        match self {
            GrantState::Live => "live",
            GrantState::Revoking => "revoking",
            GrantState::Removed => "removed?",
            GrantState::Verified { .. } => "verified",
            GrantState::Unconfirmed { .. } => "unconfirmed",
            GrantState::Failed { .. } => "failed",
            GrantState::Manual => "manual",
            GrantState::Acknowledged { .. } => "acknowledged",
        }
    }

    /// Finished: nothing more will happen without the operator.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            GrantState::Verified { .. }
                | GrantState::Unconfirmed { .. }
                | GrantState::Failed { .. }
                | GrantState::Acknowledged { .. }
        )
    }

    /// Closed for good: verified by a fresh read, or acknowledged.
    pub fn is_closed(&self) -> bool {
        matches!(
            self,
            GrantState::Verified { .. } | GrantState::Acknowledged { .. }
        )
    }

    /// Something a person must still look at (exit code 3).
    pub fn needs_attention(&self) -> bool {
        matches!(
            self,
            GrantState::Unconfirmed { .. } | GrantState::Failed { .. } | GrantState::Manual
        )
    }

    /// Removal under way (styled as "removing").
    pub fn is_removing(&self) -> bool {
        matches!(self, GrantState::Revoking | GrantState::Removed)
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            GrantState::Unconfirmed { reason } | GrantState::Failed { reason } => Some(reason),
            GrantState::Acknowledged { note, .. } => note.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for GrantState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            Some(r) if !matches!(self, GrantState::Acknowledged { .. }) => {
                write!(f, "{}({})", self.name(), r)
            }
            _ => f.write_str(self.name()),
        }
    }
}

/// The default policy's phases, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Phase 1: sessions, OAuth grants, app passwords, backup codes, API keys,
    /// device account-wipe (and containment such as a Salesforce freeze).
    CutAccess,
    /// Phase 2: admin roles, groups, delegations, licenses, owned apps.
    RemoveEntitlements,
    /// Phase 3: suspend / deactivate (never delete).
    CloseAccount,
}

impl Phase {
    pub const ALL: [Phase; 3] = [
        Phase::CutAccess,
        Phase::RemoveEntitlements,
        Phase::CloseAccount,
    ];

    pub fn number(self) -> u8 {
        match self {
            Phase::CutAccess => 1,
            Phase::RemoveEntitlements => 2,
            Phase::CloseAccount => 3,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Phase::CutAccess => "cut live access",
            Phase::RemoveEntitlements => "remove entitlements",
            Phase::CloseAccount => "close the account",
        }
    }
}

/// The ordered plan for one leaver: each phase holds grant keys in the order
/// they will be requested. Manual steps are listed too, for the checklist.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub phases: Vec<PlanPhase>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanPhase {
    pub phase: Phase,
    pub steps: Vec<Grant>,
}

/// Stable reorder so that each step comes after the steps of the same phase
/// it must wait for ([`Grant::after`]). Steps caught in a cycle keep their
/// order (the engine ignores such constraints).
fn order_after(steps: Vec<Grant>) -> Vec<Grant> {
    let mut left = steps;
    let mut out: Vec<Grant> = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let ready = left.iter().position(|g| {
            !g.after.iter().any(|a| {
                left.iter()
                    .any(|o| o.connector == g.connector && &o.id == a && o.id != g.id)
            })
        });
        match ready {
            Some(i) => out.push(left.remove(i)),
            None => {
                out.append(&mut left);
            }
        }
    }
    out
}

impl Plan {
    /// Builds the default phased plan from the grants to revoke. Within a
    /// phase, the vendor's order is kept (drivers list in the order they need)
    /// and higher risks go first.
    pub fn build<'a>(grants: impl IntoIterator<Item = &'a Grant>) -> Plan {
        let mut phases: Vec<PlanPhase> = Phase::ALL
            .into_iter()
            .map(|phase| PlanPhase {
                phase,
                steps: Vec::new(),
            })
            .collect();
        for g in grants {
            let idx = Phase::ALL.iter().position(|p| *p == g.phase()).unwrap_or(0);
            phases[idx].steps.push(g.clone());
        }
        for p in &mut phases {
            // Stable: keeps the driver's order for equal risks.
            p.steps.sort_by_key(|s| std::cmp::Reverse(s.risk));
            p.steps = order_after(std::mem::take(&mut p.steps));
        }
        phases.retain(|p| !p.steps.is_empty());
        Plan { phases }
    }

    pub fn len(&self) -> usize {
        self.phases.iter().map(|p| p.steps.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A warning for an address with characters outside ASCII: a lookalike
/// (`d\u{430}na@…`, a Cyrillic a) reads like the real address and is found
/// nowhere. Names each such character by its code point. None for ASCII.
pub fn address_warning(email: &str) -> Option<String> {
    let odd: Vec<String> = email
        .chars()
        .enumerate()
        .filter(|(_, c)| !c.is_ascii())
        .take(8)
        .map(|(i, c)| {
            let script = match c as u32 {
                0x0370..=0x03ff => " Greek",
                0x0400..=0x052f => " Cyrillic",
                0xff00..=0xffef => " fullwidth",
                _ => "",
            };
            format!("U+{:04X}{script} at position {}", c as u32, i + 1)
        })
        .collect();
    (!odd.is_empty()).then(|| {
        format!(
            "the address has characters outside ASCII ({}): it may be a lookalike of the address you mean; check the address",
            odd.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(kind: GrantKind, risk: Risk, id: &str) -> Grant {
        Grant {
            connector: "google".into(),
            id: id.into(),
            kind,
            label: id.into(),
            details: String::new(),
            risk,
            revocation: Revocation::Api,
            since: None,
            phase: None,
            after: Vec::new(),
        }
    }

    #[test]
    fn plan_orders_phases_and_risk() {
        let grants = [
            g(GrantKind::Account, Risk::High, "suspend"),
            g(GrantKind::Group, Risk::Low, "group:a"),
            g(GrantKind::Session, Risk::High, "signout"),
            g(GrantKind::AdminRole, Risk::Critical, "role:1"),
            g(GrantKind::OauthGrant, Risk::Medium, "token:x"),
        ];
        let plan = Plan::build(&grants);
        let order: Vec<_> = plan
            .phases
            .iter()
            .flat_map(|p| p.steps.iter().map(|s| s.id.as_str()))
            .collect();
        assert_eq!(
            order,
            ["signout", "token:x", "role:1", "group:a", "suspend"]
        );
        assert_eq!(plan.phases.len(), 3);
    }

    #[test]
    fn vendor_phase_overrides_kind() {
        let mut freeze = g(GrantKind::Account, Risk::High, "freeze");
        freeze.phase = Some(Phase::CutAccess);
        let plan = Plan::build([&freeze]);
        assert_eq!(plan.phases[0].phase, Phase::CutAccess);
    }

    #[test]
    fn plan_puts_steps_after_what_they_wait_for() {
        let mut psl = g(GrantKind::License, Risk::Critical, "psl:1");
        psl.after = vec!["permset:1".into(), "permset:2".into()];
        let grants = [
            psl,
            g(GrantKind::AdminRole, Risk::Low, "permset:1"),
            g(GrantKind::Group, Risk::Medium, "group:x"),
            g(GrantKind::AdminRole, Risk::Low, "permset:2"),
        ];
        let plan = Plan::build(&grants);
        let order: Vec<_> = plan.phases[0].steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(order, ["group:x", "permset:1", "permset:2", "psl:1"]);
        // A cycle keeps the risk order instead of looping.
        let mut a = g(GrantKind::Group, Risk::High, "a");
        a.after = vec!["b".into()];
        let mut b = g(GrantKind::Group, Risk::Low, "b");
        b.after = vec!["a".into()];
        let plan = Plan::build([&a, &b]);
        assert_eq!(plan.len(), 2);
    }

    #[test]
    fn person_aliases_are_normalised_and_unique() {
        let mut p = Person::new("Alex.Chen@example.com");
        assert!(p.add_alias(" ACHEN@example.com"));
        assert!(!p.add_alias("achen@example.com"));
        assert!(!p.add_alias("alex.chen@example.com"));
        assert!(!p.add_alias("not-an-address"));
        assert_eq!(
            p.addresses().collect::<Vec<_>>(),
            ["alex.chen@example.com", "achen@example.com"]
        );
    }

    #[test]
    fn kinds_round_trip() {
        for k in GrantKind::ALL {
            assert_eq!(GrantKind::parse(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert_eq!(GrantKind::parse("admin-role"), Some(GrantKind::AdminRole));
    }

    #[test]
    fn state_names() {
        let s = GrantState::Removed;
        assert_eq!(serde_json::to_value(&s).unwrap()["state"], "removed?");
        assert_eq!(
            GrantState::Failed { reason: "x".into() }.to_string(),
            "failed(x)"
        );
    }
}
