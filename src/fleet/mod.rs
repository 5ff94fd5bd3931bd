//! The fleet level: every leaver, not one at a time. The roster from HR,
//! exit times and the policy that acts on them, what the ledger says about
//! each leaver, and the evidence for an audit period. The command line and
//! the console are views of it; the engine does the work per leaver.

pub mod history;
pub mod period;
pub mod policy;
pub mod roster;

pub use policy::{Decision, Mode, PolicyConfig, Scope};
pub use roster::{Entry, LineError, Roster, RosterConfig, Status};
