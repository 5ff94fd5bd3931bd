//! The fleet level: every leaver, not one at a time. The roster from HR
//! ([`roster`]), exit times and the policy that acts on them, what the
//! ledger says about each leaver, and the evidence for an audit period; the
//! orphan sweep and batches of leavers with their guardrails, which read
//! the same roster. The command line and the console are views of it; the
//! engine does the work per leaver.

pub mod batch;
pub mod history;
pub mod period;
pub mod policy;
pub mod roster;
pub mod sweep;

pub use policy::{Decision, Mode, PolicyConfig, Scope};
pub use roster::{Entry, LineError, Roster, RosterConfig, Status};
