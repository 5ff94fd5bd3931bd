//! TOML files read with errors that name the wrong key: the user's config
//! and the connector manifests share them.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {error}")]
    Io { path: PathBuf, error: String },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("key `{key}`: expected {expected}, found {found}")]
    Key {
        key: String,
        expected: String,
        found: String,
    },
    #[error("unknown connector manifest `{name}` (built in: {known})")]
    UnknownManifest { name: String, known: String },
    #[error("{path}: {inner}")]
    InFile {
        path: PathBuf,
        inner: Box<ConfigError>,
    },
    #[error(
        "no config file at {path}; create one (see README: Configuration), or run `offboard demo`"
    )]
    Missing { path: PathBuf },
}

/// Parses TOML into `T`, naming the key that is wrong.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: &str,
) -> Result<T, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Parse {
        origin: origin.to_string(),
        message: one_line(&e.to_string()),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = one_line(&e.inner().to_string());
        ConfigError::Parse {
            origin: origin.to_string(),
            message: if path == "." || path.is_empty() {
                inner
            } else {
                format!("key `{path}`: {inner}")
            },
        }
    })
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
