//! offboard: a terminal console that closes every access path a leaver still
//! has across SaaS apps, and proves that each one is closed.

pub mod apps;
pub mod auth;
pub mod cli;
pub mod config;
pub mod connector;
pub mod engine;
pub mod evidence;
pub mod fleet;
pub mod model;
pub mod outcome;
pub mod sandbox;
pub mod sanitize;
pub mod secret;
pub mod store;
pub mod tomlfile;
pub mod tui;
