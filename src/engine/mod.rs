//! The engine: a case per leaver; discovery across connectors concurrently;
//! the phased plan; execution with per-connector concurrency; the verify
//! loop; events on a channel for the command line and the console.
//!
//! The engine knows nothing of the console. It never counts a failed or
//! partial read as absence, and never reports a grant `verified` without a
//! fresh read that no longer lists it.

mod bulk;
mod case;
mod core;
mod discovery;
mod execution;
mod plan;
#[cfg(test)]
mod tests;
mod verification;

pub use bulk::BULK_MIN;
pub use case::{
    AccountStatus, AccountView, CaseView, GrantView, STILL_LISTED_NOTE, initial_state,
    interrupted_plans,
};
pub use core::{
    ConnectorInfo, Engine, EngineError, EngineOptions, Selection, connectors_from_config,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::connector::http::HttpNotice;
use crate::connector::{Health, Lookup};
use crate::model::{Grant, GrantKind, GrantState, Phase, Plan};

/// The hint for an address found in no app.
pub const NOT_FOUND_ANYWHERE: &str = "not found in any app: check the address";

/// What the engine tells its listeners. Every text in here is sanitised.
#[derive(Debug, Clone)]
pub enum Event {
    CaseOpened {
        email: String,
    },
    Discovering {
        email: String,
        connector: String,
    },
    Lookup {
        email: String,
        connector: String,
        lookup: Lookup,
    },
    LookupFailed {
        email: String,
        connector: String,
        error: String,
    },
    /// A complete read of one connector's grants for the leaver (discovery
    /// or refresh). Kinds in `failed` could not be read.
    Inventory {
        email: String,
        connector: String,
        grants: Vec<Grant>,
        failed: Vec<(GrantKind, String)>,
        at: DateTime<Utc>,
    },
    Planned {
        email: String,
        plan: Plan,
    },
    /// A grant changed state. `key` is `connector/id`.
    State {
        email: String,
        key: String,
        state: GrantState,
        at: DateTime<Utc>,
    },
    /// What the API answered to a revoke request.
    ApiAnswer {
        email: String,
        key: String,
        answer: String,
    },
    PhaseProgress {
        email: String,
        phase: Phase,
        done: usize,
        total: usize,
    },
    Finished {
        email: String,
        summary: Summary,
    },
    Http(HttpNotice),
    Health {
        connector: String,
        health: Health,
    },
    Error {
        email: Option<String>,
        message: String,
    },
    /// Team mode: who holds a leaver in the shared queue now (None: free);
    /// a leaver not in the console's queue joins it.
    Holder {
        email: String,
        holder: Option<String>,
        since: Option<DateTime<Utc>>,
    },
    /// Team mode: a step another operator recorded in the shared ledger.
    TeamStep {
        email: String,
        operator: String,
        text: String,
    },
}

/// Counts of grant states for one leaver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    pub live: usize,
    pub removing: usize,
    pub verified: usize,
    pub acknowledged: usize,
    /// Of the verified: gone without this tool (a fresh read no longer
    /// lists a grant that nobody here asked to remove).
    pub vanished: usize,
    pub unconfirmed: usize,
    pub failed: usize,
    pub manual: usize,
    /// Connectors whose lookup or listing failed.
    pub read_failures: usize,
    /// Connectors where several accounts match and the operator must pick.
    pub ambiguous: usize,
    /// 1 when the address was found in no app (every selected app that
    /// answered said "not found"): never "all clear", check the address.
    pub not_found_anywhere: usize,
}

impl Summary {
    pub fn add(&mut self, state: &GrantState) {
        match state {
            GrantState::Live => self.live += 1,
            GrantState::Revoking | GrantState::Removed => self.removing += 1,
            GrantState::Verified { .. } => self.verified += 1,
            GrantState::Acknowledged { .. } => self.acknowledged += 1,
            GrantState::Unconfirmed { .. } => self.unconfirmed += 1,
            GrantState::Failed { .. } => self.failed += 1,
            GrantState::Manual => self.manual += 1,
        }
    }

    /// Counts read failures and ambiguous lookups of the selected
    /// connectors (only failed kinds the selection covers count), and
    /// whether the address was found in none of them.
    pub fn add_accounts<'a>(
        &mut self,
        accounts: impl IntoIterator<Item = &'a AccountView>,
        sel: &Selection,
    ) {
        let (mut found, mut not_found) = (false, false);
        for a in accounts
            .into_iter()
            .filter(|a| sel.matches_app(&a.connector))
        {
            match &a.status {
                AccountStatus::LookupFailed { .. } => self.read_failures += 1,
                AccountStatus::Found { .. } => {
                    found = true;
                    if a.failed_kinds.iter().any(|f| sel.matches_kind(f.kind)) {
                        self.read_failures += 1
                    }
                }
                AccountStatus::Ambiguous { .. } => {
                    found = true;
                    self.ambiguous += 1
                }
                AccountStatus::NotFound => not_found = true,
                AccountStatus::Pending => {}
            }
        }
        if not_found && !found {
            self.not_found_anywhere = 1;
        }
    }

    /// Exit code per DESIGN.md: 0 all done and verified, 3 something left
    /// (including an address found in no app: never "all clear").
    pub fn exit_code(&self) -> u8 {
        if self.unconfirmed
            + self.failed
            + self.manual
            + self.live
            + self.removing
            + self.read_failures
            + self.ambiguous
            + self.not_found_anywhere
            > 0
        {
            3
        } else {
            0
        }
    }
}
