//! offboard: a terminal console that closes every access path a leaver still
//! has across SaaS apps, and proves that each one is closed.

pub mod auth;
pub mod config;
pub mod connector;
pub mod model;
pub mod sanitize;
pub mod secret;
pub mod sandbox;
pub mod cli;
pub mod engine;
pub mod tui;
