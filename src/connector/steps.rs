//! Manual steps from a connector manifest's `[manual_steps]` that apply to
//! every account the driver finds, listed as `manual` grants so that they
//! appear in the inventory, the plan and the checklist until a person ticks
//! them off. A step the manifest does not name (or names with empty text)
//! is not listed.

use std::collections::BTreeMap;

use crate::model::{Grant, GrantKind, Revocation, Risk};
use crate::sanitize::clean;

/// A step a driver lists for each account: the manifest key, and how it is
/// shown.
#[derive(Debug, Clone, Copy)]
pub struct AccountStep {
    /// Key in the manifest's `[manual_steps]`.
    pub step: &'static str,
    pub kind: GrantKind,
    pub label: &'static str,
    pub risk: Risk,
}

/// Grant id of a manifest step: `manual:{step}`.
pub fn step_id(step: &str) -> String {
    format!("manual:{step}")
}

/// The `manual` grants of `steps` that the manifest names.
pub fn account_step_grants(
    connector: &str,
    manual_steps: &BTreeMap<String, String>,
    steps: &[AccountStep],
) -> Vec<Grant> {
    steps
        .iter()
        .filter_map(|s| {
            let text = manual_steps.get(s.step).map(|t| clean(t.trim()))?;
            if text.is_empty() {
                return None;
            }
            Some(Grant {
                connector: connector.to_string(),
                id: step_id(s.step),
                kind: s.kind,
                label: s.label.to_string(),
                details: "manual step from the connector manifest".into(),
                risk: s.risk,
                revocation: Revocation::Manual { instructions: text },
                since: None,
                phase: None,
                after: Vec::new(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_only_the_steps_the_manifest_names() {
        let mut m = BTreeMap::new();
        m.insert(
            "data_transfer".to_string(),
            "Transfer \u{1b}[31mDrive".to_string(),
        );
        m.insert("empty".to_string(), "  ".to_string());
        let steps = [
            AccountStep {
                step: "data_transfer",
                kind: GrantKind::Delegation,
                label: "Drive hand-over",
                risk: Risk::Medium,
            },
            AccountStep {
                step: "empty",
                kind: GrantKind::OwnedApp,
                label: "x",
                risk: Risk::Low,
            },
            AccountStep {
                step: "absent",
                kind: GrantKind::OwnedApp,
                label: "y",
                risk: Risk::Low,
            },
        ];
        let g = account_step_grants("google", &m, &steps);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].id, "manual:data_transfer");
        assert!(g[0].is_manual());
        match &g[0].revocation {
            Revocation::Manual { instructions } => assert!(!instructions.contains('\u{1b}')),
            Revocation::Api => unreachable!(),
        }
    }
}
