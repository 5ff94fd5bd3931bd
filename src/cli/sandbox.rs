//! `offboard sandbox`: the emulator alone, for scripts and tests.

use std::path::PathBuf;

use clap::Args;

use super::{CmdResult, Failure};
use crate::sandbox::{self, Faults, Options};

#[derive(Debug, Clone, Args)]
pub struct SandboxArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8700)]
    pub port: u16,
    /// Write every request as a JSON line to this file.
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<PathBuf>,
    #[command(flatten)]
    pub faults: FaultArgs,
    /// Where to write the demo credentials and the config that points at
    /// this sandbox (default: `sandbox/` in the data directory).
    #[arg(long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// Set a twin's switches once listening, as `PUT PATH` with the JSON
    /// body would, e.g. `/_sandbox/scim2/zoom={"case_exact_filter":true}`
    /// (repeatable; applied in order).
    #[arg(long = "control", value_name = "PATH=JSON")]
    pub controls: Vec<String>,
}

/// `PATH=JSON` of `--control`: a sandbox control path and a JSON body.
fn parse_control(raw: &str) -> Result<(String, serde_json::Value), Failure> {
    let bad = |why: &str| Failure::usage(format!("--control {raw}: {why}"));
    let (path, body) = raw
        .split_once('=')
        .ok_or_else(|| bad("expected PATH=JSON"))?;
    if !path.starts_with("/_sandbox/") {
        return Err(bad("the path must be a control path under /_sandbox/"));
    }
    let body = serde_json::from_str(body).map_err(|e| bad(&format!("not JSON: {e}")))?;
    Ok((path.to_string(), body))
}

/// PUTs each control body to the running sandbox; the first refusal stops
/// with the sandbox's own answer.
async fn apply_controls(base_url: &str, controls: &[(String, serde_json::Value)]) -> CmdResult {
    let http = reqwest::Client::new();
    for (path, body) in controls {
        let r = http
            .put(format!("{base_url}{path}"))
            .json(body)
            .send()
            .await
            .map_err(|e| Failure::other(format!("--control {path}: {e}")))?;
        if !r.status().is_success() {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            return Err(Failure::usage(format!(
                "--control {path}: the sandbox answered {status}: {}",
                crate::sanitize::clean_max(&text, 300)
            )));
        }
    }
    Ok(0)
}

#[derive(Debug, Clone, Args)]
pub struct FaultArgs {
    /// Latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// How long a removed item stays listed, in milliseconds.
    #[arg(long, default_value_t = 1500)]
    pub consistency_ms: u64,
    /// Share of requests answered with a 5xx error (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Share of requests answered with the vendor's rate-limit answer.
    #[arg(long = "rate-429", default_value_t = 0.0)]
    pub rate_429: f64,
    /// Share of requests whose connection is reset mid-body.
    #[arg(long, default_value_t = 0.0)]
    pub reset_rate: f64,
    /// Share of GET requests answered with a malformed body.
    #[arg(long, default_value_t = 0.0)]
    pub malformed_rate: f64,
}

impl FaultArgs {
    pub fn to_faults(&self) -> Result<Faults, Failure> {
        for (name, v) in [
            ("--error-rate", self.error_rate),
            ("--rate-429", self.rate_429),
            ("--reset-rate", self.reset_rate),
            ("--malformed-rate", self.malformed_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Failure::usage(format!(
                    "{name}: expected a share from 0.0 to 1.0, found {v}"
                )));
            }
        }
        Ok(Faults {
            latency_ms: self.latency_ms,
            consistency_ms: self.consistency_ms,
            error_rate: self.error_rate,
            rate_429: self.rate_429,
            reset_rate: self.reset_rate,
            malformed_rate: self.malformed_rate,
            ..Faults::default()
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub faults: FaultArgs,
    /// Port for the embedded sandbox on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

pub async fn run(args: SandboxArgs) -> CmdResult {
    let faults = args.faults.to_faults()?;
    let controls = args
        .controls
        .iter()
        .map(|c| parse_control(c))
        .collect::<Result<Vec<_>, _>>()?;
    let dir = match args.config_dir {
        Some(d) => d,
        None => crate::config::data_dir()
            .map_err(|e| Failure::other(format!("data directory: {e}")))?
            .join("sandbox"),
    };
    let running = sandbox::start(Options {
        port: args.port,
        faults,
        access_log: args.access_log,
        ..Options::default()
    })
    .await
    .map_err(|e| Failure::other(e.to_string()))?;
    if let Err(e) = apply_controls(&running.base_url, &controls).await {
        running.stop().await;
        return Err(e);
    }
    sandbox::write_demo_keys(&dir)
        .map_err(|e| Failure::other(format!("{}: {e}", dir.display())))?;
    let config = sandbox::demo_config(&running.base_url, &dir);
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, &config)
        .map_err(|e| Failure::other(format!("{}: {e}", config_path.display())))?;
    println!("offboard sandbox listening on {}", running.base_url);
    println!(
        "config written to {} (use: export OFFBOARD_CONFIG={})",
        config_path.display(),
        config_path.display()
    );
    println!();
    println!("{config}");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate() => {}
    }
    running.stop().await;
    Ok(0)
}

async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
