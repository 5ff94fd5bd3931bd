//! Planning: the phased plan for the selected grants not yet closed.

use super::core::{Engine, EngineError, Selection};
use crate::model::Plan;

impl Engine {
    /// The phased plan for the selected grants that are not yet closed
    /// (live, failed, unconfirmed, manual, or a removal to re-request).
    pub fn plan(&self, email: &str, selection: &Selection) -> Result<Plan, EngineError> {
        let person = Self::normalise(email)?;
        self.check_apps(&selection.apps)?;
        let grants = self
            .with_case(&person.email, |c| {
                c.grants
                    .iter()
                    .filter(|e| selection.matches(&e.grant) && !e.state.is_closed())
                    .filter(|e| c.account(&e.grant.connector).is_some())
                    .map(|e| e.grant.clone())
                    .collect::<Vec<_>>()
            })
            .ok_or_else(|| EngineError::NoCase(person.email.clone()))?;
        Ok(Plan::build(&grants))
    }
}
