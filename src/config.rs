//! The user's config file and the data directory.
//!
//! Config: `$OFFBOARD_CONFIG` (a file), else `--config`, else
//! `config.toml` in the platform config directory. Data: `$OFFBOARD_DATA`,
//! else the platform data directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::connector::manifest::{self, ConnectorConfig, ResolvedConnector};

pub use crate::tomlfile::{ConfigError, parse_toml};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who runs the tool (recorded in the ledger). Default: $USER.
    pub operator: Option<String>,
    #[serde(default)]
    pub engine: EngineConfig,
    /// Batches of leavers (`revoke --from`) and their guardrails.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Console options.
    #[serde(default)]
    pub console: ConsoleConfig,
    #[serde(default)]
    pub connectors: BTreeMap<String, ConnectorConfig>,
    /// HR's roster of people, status and exit time.
    #[serde(default)]
    pub roster: crate::fleet::RosterConfig,
    /// What `run --due` does at an exit time, and the SLA.
    #[serde(default)]
    pub policy: crate::fleet::PolicyConfig,
    /// Where the queue and the ledger live: the data directory (default) or
    /// a shared PostgreSQL database (team mode).
    #[serde(default)]
    pub store: crate::store::StoreConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// How long verification keeps re-reading before escalating `unconfirmed`.
    pub verify_deadline_secs: u64,
    /// First wait between verification reads (doubles, up to 10 s).
    pub verify_initial_delay_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            verify_deadline_secs: 120,
            verify_initial_delay_ms: 250,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// More leavers than this needs `--confirm-count N`.
    pub max_batch: usize,
    /// More than this share (0..1) of an app's active accounts needs
    /// `--confirm-count N`.
    pub max_share: f64,
    /// Leavers run at the same time (they share each vendor's quota).
    pub concurrency: usize,
    /// The circuit breaker trips when an app has this many failures or
    /// refusals ...
    pub breaker_failures: usize,
    /// ... among its last this many requests.
    pub breaker_window: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch: 25,
            max_share: 0.1,
            concurrency: 8,
            breaker_failures: 5,
            breaker_window: 20,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    pub theme: Option<String>,
    /// Leavers to open the console with.
    pub leavers: Vec<String>,
}

/// A loaded config with where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub path: PathBuf,
    pub dir: PathBuf,
}

impl Loaded {
    /// Every enabled connector, resolved against its manifest.
    pub fn connectors(&self) -> Result<Vec<ResolvedConnector>, ConfigError> {
        let mut out = Vec::new();
        for (id, c) in &self.config.connectors {
            if !c.enabled {
                continue;
            }
            let r = manifest::resolve(id, c, &self.dir)
                .and_then(|r| crate::apps::check_flow(&r).map(|()| r))
                .map_err(|e| ConfigError::InFile {
                    path: self.path.clone(),
                    inner: Box::new(e),
                })?;
            out.push(r);
        }
        Ok(out)
    }

    pub fn operator(&self) -> String {
        self.config
            .operator
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "operator".into())
    }
}

pub fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "offboard")
}

/// The config file to use.
pub fn config_path(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("OFFBOARD_CONFIG") {
        return PathBuf::from(p);
    }
    project_dirs()
        .map(|d| d.config_dir().join("config.toml"))
        .unwrap_or_else(|| PathBuf::from("offboard.toml"))
}

/// The data directory (ledger, logs, token cache), created if missing.
pub fn data_dir() -> std::io::Result<PathBuf> {
    let dir = std::env::var_os("OFFBOARD_DATA")
        .map(PathBuf::from)
        .or_else(|| project_dirs().map(|d| d.data_dir().to_path_buf()))
        .unwrap_or_else(|| PathBuf::from(".offboard"));
    if !dir.exists() {
        // The ledger, the log and the reports name leavers and their access:
        // only the operator reads them.
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
    }
    Ok(dir)
}

pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    if !path.exists() {
        return Err(ConfigError::Missing {
            path: path.to_path_buf(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        path: path.to_path_buf(),
        error: e.to_string(),
    })?;
    let config: Config = parse_toml(&text, &path.display().to_string())?;
    if let Err(e) = crate::fleet::roster::Zone::parse(config.roster.time_zone.as_deref()) {
        return Err(ConfigError::Parse {
            origin: path.display().to_string(),
            message: format!("[roster] {e}"),
        });
    }
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let loaded = Loaded {
        config,
        path: path.to_path_buf(),
        dir,
    };
    // Resolve now so that every error shows at start, with the file named.
    loaded.connectors()?;
    Ok(loaded)
}
