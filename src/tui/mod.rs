//! The console: a full-screen terminal UI over the engine. One [`Action`]
//! enum, a pure [`update`], views as functions of the [`Model`], and a
//! runtime that performs effects in tasks and sends actions back.

pub mod action;
pub mod app;
pub mod fleet;
pub mod model;
pub mod runtime;
pub mod signin;
pub mod terminal;
pub mod theme;
pub mod update;
pub mod view;

pub use action::{Action, Effect};
pub use model::Model;
pub use update::update;
#[cfg(test)]
mod tests;
