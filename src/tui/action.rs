//! Everything that can happen to the console is an [`Action`]; everything
//! the console asks the outside world to do is an [`Effect`].

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use crossterm::event::KeyEvent;

use crate::connector::Health;
use crate::engine::{Event, Summary};

use super::model::{BatchPlan, CaseSnapshot, LoginPrompt, RevokeScope};

#[derive(Debug, Clone)]
pub enum Action {
    Key(KeyEvent),
    Resize(u16, u16),
    /// The clock (at most four a second).
    Tick(DateTime<Utc>),
    /// An engine event, as it happens.
    Engine(Event),
    Discovered {
        email: String,
        result: Result<CaseSnapshot, String>,
        health: Vec<(String, Health)>,
    },
    Refreshed {
        email: String,
        /// The connector refreshed; None: all of them.
        connector: Option<String>,
        result: Result<CaseSnapshot, String>,
        health: Vec<(String, Health)>,
        at: DateTime<Utc>,
    },
    RevokeFinished {
        email: String,
        result: Result<Summary, String>,
        case: Option<CaseSnapshot>,
    },
    ManualDone {
        email: String,
        key: String,
        result: Result<(), String>,
        case: Option<CaseSnapshot>,
    },
    Exported {
        email: String,
        result: Result<PathBuf, String>,
    },
    /// `:takeover` answered: what to tell the operator.
    TookOver {
        email: String,
        result: Result<String, String>,
    },
    /// A sign-in started: what to show the operator.
    LoginPrompt {
        app: String,
        prompt: LoginPrompt,
    },
    LoginFinished {
        app: String,
        result: Result<String, String>,
    },
    /// Text pasted into the terminal (bracketed paste).
    Paste(String),
    /// The operator's pick among several matching accounts was applied.
    Picked {
        email: String,
        app: String,
        account: String,
        result: Result<CaseSnapshot, String>,
        health: Vec<(String, Health)>,
    },
    /// The exit-time policy ran (`:auto on`): what it did, one line a
    /// leaver acted on, and the cases it changed.
    AutoRan {
        result: Result<Vec<String>, String>,
        cases: Vec<CaseSnapshot>,
    },
    /// The picked leavers were discovered and planned as a batch.
    BatchPrepared {
        emails: Vec<String>,
        result: Result<BatchPlan, String>,
    },
    /// The batch ended.
    BatchFinished {
        result: Result<crate::fleet::batch::Outcome, String>,
        cases: Vec<CaseSnapshot>,
    },
    /// SIGTERM, SIGINT, or a panic somewhere: leave now.
    Terminate(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Discover {
        email: String,
    },
    Refresh {
        email: String,
        connector: Option<String>,
    },
    Revoke {
        email: String,
        scope: RevokeScope,
    },
    ManualDone {
        email: String,
        key: String,
        note: String,
    },
    Export {
        email: String,
        /// The leaver's exit time, when the queue knows it (for the report).
        exit_at: Option<DateTime<Utc>>,
    },
    /// Use this account of the leaver in an app where several match
    /// (recorded in the ledger).
    PickAccount {
        email: String,
        app: String,
        account_id: String,
    },
    /// Start a sign-in (`:login APP`).
    Login {
        app: String,
    },
    /// The redirected URL pasted back for an authorization-code sign-in.
    LoginPaste {
        app: String,
        url: String,
    },
    /// Abandon the sign-in in progress (its task is dropped).
    LoginCancel {
        app: String,
    },
    /// Run the exit-time policy once (`:auto on`).
    AutoRun,
    /// Team mode: take the leaver over from the host that holds them
    /// (recorded in the ledger), for the next action on them.
    TakeOver {
        email: String,
    },
    /// Hand the leaver's data over to this person, then read them again.
    HandOver {
        email: String,
        to: String,
    },
    /// Discover and plan these leavers as a batch (its dry run).
    BatchPrepare {
        emails: Vec<String>,
    },
    /// Run them as one batch, with the cap confirmed.
    BatchRun {
        emails: Vec<String>,
        confirm: usize,
    },
}
