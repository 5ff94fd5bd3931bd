//! Google Workspace emulator (Directory API, Licensing API, token endpoint).

use axum::Router;

use super::Shared;

/// The emulated Google tenant.
#[derive(Debug, Default)]
pub struct State {}

impl State {
    pub fn seed(_bench: Option<&super::tenant::BenchShape>) -> Self {
        Self {}
    }
}

pub fn routes() -> Router<Shared> {
    Router::new()
}
