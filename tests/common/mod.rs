//! Helpers shared by the integration tests: a sandbox on a free port and a
//! config pointing at it.
#![allow(dead_code)]

pub mod console;
pub mod driver;
pub mod oauth;
pub mod pg;

use std::path::{Path, PathBuf};
use std::time::Duration;

use offboard::sandbox::{self, Faults, Options, Running};

/// Starts a sandbox on a free loopback port with these faults.
pub async fn sandbox(faults: Faults) -> Running {
    sandbox::start(Options {
        port: 0,
        faults,
        ..Options::default()
    })
    .await
    .expect("sandbox starts")
}

/// Faults with no latency and the given consistency delay.
pub fn quick(consistency_ms: u64) -> Faults {
    Faults {
        consistency_ms,
        ..Faults::default()
    }
}

/// Writes the demo keys and a config for `base_url` into `dir`; returns the
/// config file's path.
pub fn write_config(dir: &Path, base_url: &str) -> PathBuf {
    sandbox::write_demo_keys(dir).expect("demo keys written");
    let path = dir.join("config.toml");
    std::fs::write(&path, sandbox::demo_config(base_url, dir)).expect("config written");
    path
}

/// Polls `f` until it returns Some, or panics after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
