//! Everything that can happen to the console is an [`Action`]; everything
//! the console asks the outside world to do is an [`Effect`].

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use crossterm::event::KeyEvent;

use crate::connector::Health;
use crate::engine::{Event, Summary};

use super::model::{CaseSnapshot, RevokeScope};

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
    LoginFinished {
        app: String,
        result: Result<String, String>,
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
    },
    Login {
        app: String,
    },
}
