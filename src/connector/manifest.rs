//! Connector manifests (`connectors/*.toml`, embedded in the binary and
//! overridable by files of the same name in the config directory's
//! `connectors/` folder), merged with the user's `[connectors.NAME]` config.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::http::HttpSettings;
use crate::tomlfile::{ConfigError, parse_toml};

/// Manifests shipped in the binary: every file in `connectors/`.
pub const BUILTIN: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/manifests.rs"));

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub id: String,
    pub display_name: String,
    pub driver: String,
    /// Seconds between live refreshes (never below 2).
    #[serde(default = "default_refresh")]
    pub refresh_secs: u64,
    /// Named base URLs (`base_url`, `licensing_url`, ...).
    #[serde(default)]
    pub api: BTreeMap<String, String>,
    #[serde(default)]
    pub auth: AuthSpec,
    #[serde(default)]
    pub limits: Limits,
    /// Manual steps by name, shown to the operator as checklist items.
    #[serde(default)]
    pub manual_steps: BTreeMap<String, String>,
    /// Driver-specific settings (customer id, license SKUs, ...).
    #[serde(default)]
    pub settings: toml::Table,
}

fn default_refresh() -> u64 {
    5
}

/// How a connector authenticates. Every field can be overridden in the
/// config. Secrets are only ever referenced (`*_env`, `*_file`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    /// `jwt-bearer`, `client-credentials`, `authorization-code`,
    /// `device-code` or `static`.
    pub flow: Option<String>,
    pub token_url: Option<String>,
    pub authorize_url: Option<String>,
    pub device_url: Option<String>,
    pub revoke_url: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// JWT audience when it is not the token URL (Salesforce: login URL).
    pub audience: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_env: Option<String>,
    pub client_secret_file: Option<String>,
    /// Service-account JSON key (Google) or PEM private key (Salesforce).
    pub key_file: Option<String>,
    /// The X.509 certificate (PEM) of `key_file`, for client assertions
    /// that name their certificate by thumbprint (`x5t`, Microsoft).
    pub certificate_file: Option<String>,
    /// JWT issuer when it is not in the key file (Salesforce consumer key).
    pub issuer: Option<String>,
    /// The admin to impersonate / sign in as.
    pub subject: Option<String>,
    /// A static token from an environment variable or a file.
    pub token_env: Option<String>,
    pub token_file: Option<String>,
    /// A second static token (Slack SCIM).
    pub scim_token_env: Option<String>,
    pub scim_token_file: Option<String>,
}

impl AuthSpec {
    /// Fields set in `over` replace those here.
    pub fn merge(&mut self, over: &AuthSpec) {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f.clone(); } )* };
        }
        take!(
            flow,
            token_url,
            authorize_url,
            device_url,
            revoke_url,
            audience,
            client_id,
            client_secret_env,
            client_secret_file,
            key_file,
            certificate_file,
            issuer,
            subject,
            token_env,
            token_file,
            scim_token_env,
            scim_token_file
        );
        if !over.scopes.is_empty() {
            self.scopes = over.scopes.clone();
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_concurrency: usize,
    pub requests_per_second: f64,
    pub burst: u32,
    pub timeout_secs: f64,
    pub max_retries: u32,
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrency: 8,
            requests_per_second: 20.0,
            burst: 20,
            timeout_secs: 30.0,
            max_retries: 4,
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The user's `[connectors.NAME]` section: all optional, merged over the manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// Which manifest to use (default: the section name).
    pub manifest: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub display_name: Option<String>,
    pub refresh_secs: Option<u64>,
    #[serde(default)]
    pub api: BTreeMap<String, String>,
    #[serde(default)]
    pub auth: AuthSpec,
    pub limits: Option<Limits>,
    #[serde(default)]
    pub settings: toml::Table,
}

fn yes() -> bool {
    true
}

/// A manifest merged with the user's config, validated, for one connector.
#[derive(Debug, Clone)]
pub struct ResolvedConnector {
    /// The config's name for it (e.g. `google`).
    pub id: String,
    pub manifest: Manifest,
    /// Directory relative paths in the config are resolved against.
    pub config_dir: std::path::PathBuf,
}

impl ResolvedConnector {
    /// A named base URL, parsed.
    pub fn url(&self, name: &str) -> Result<Url, ConfigError> {
        let raw = self
            .manifest
            .api
            .get(name)
            .ok_or_else(|| ConfigError::Key {
                key: format!("connectors.{}.api.{name}", self.id),
                expected: "a base URL (https://, or http:// to a loopback address)".into(),
                found: "nothing".into(),
            })?;
        parse_base_url(raw).map_err(|why| ConfigError::Key {
            key: format!("connectors.{}.api.{name}", self.id),
            expected: "a base URL (https://, or http:// to a loopback address)".into(),
            found: why,
        })
    }

    /// Every configured base URL (the only origins the connector may reach).
    pub fn all_urls(&self) -> Result<Vec<Url>, ConfigError> {
        let mut v = Vec::new();
        for name in self.manifest.api.keys() {
            v.push(self.url(name)?);
        }
        Ok(v)
    }

    /// A path from the config, relative to the config file's directory.
    pub fn path(&self, p: &str) -> std::path::PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.config_dir.join(p)
        }
    }

    pub fn http_settings(&self) -> HttpSettings {
        let l = &self.manifest.limits;
        let mut s = HttpSettings::new(self.id.clone());
        s.max_concurrency = l.max_concurrency.max(1);
        s.requests_per_second = l.requests_per_second;
        s.burst = l.burst.max(1);
        s.timeout = Duration::from_secs_f64(l.timeout_secs.max(0.1));
        s.max_retries = l.max_retries;
        s.max_body_bytes = l.max_body_bytes.max(1024);
        s
    }

    /// Driver settings deserialised into the driver's own type.
    pub fn settings<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let value = toml::Value::Table(self.manifest.settings.clone());
        serde_path_to_error::deserialize(value).map_err(|e| ConfigError::Key {
            key: format!("connectors.{}.settings.{}", self.id, e.path()),
            expected: "a valid driver setting".into(),
            found: e.inner().to_string(),
        })
    }

    pub fn refresh_interval(&self) -> Duration {
        Duration::from_secs(self.manifest.refresh_secs.max(2))
    }
}

fn parse_base_url(raw: &str) -> Result<Url, String> {
    check_url(raw)
}

/// Parses a configured endpoint URL (base URL or auth endpoint): https, or
/// plain http to a loopback host only (the sandbox), so a bearer token or a
/// client secret never crosses a network in clear text; no credentials in
/// the URL itself. The error quotes the URL without its userinfo, query or
/// fragment, so a secret pasted into it is never echoed.
pub fn check_url(raw: &str) -> Result<Url, String> {
    let shown = redact_url(raw);
    let url = Url::parse(raw.trim()).map_err(|e| format!("`{shown}` ({e})"))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(format!("`{shown}` (scheme must be http or https)"));
    }
    if url.host().is_none() {
        return Err(format!("`{shown}` (no host)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "`{shown}` (credentials in a URL are refused; reference them in the connector's auth section with *_env or *_file)"
        ));
    }
    if url.scheme() == "http" && !is_loopback(&url) {
        return Err(format!(
            "`{shown}` (plain http is allowed only for a loopback host such as the sandbox; use https)"
        ));
    }
    Ok(url)
}

/// Whether a URL's host is this machine (127.0.0.0/8, ::1, localhost).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// A configured URL as it may be shown: userinfo replaced by `***`, query
/// and fragment dropped, control characters made inert, at most 120
/// characters.
pub fn redact_url(raw: &str) -> String {
    let raw = raw.trim();
    let (scheme, rest) = match raw.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), raw),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rfind('@') {
        Some(i) => format!("***@{}", &authority[i + 1..]),
        None => authority.to_string(),
    };
    let tail = tail.split(['?', '#']).next().unwrap_or("");
    crate::sanitize::clean_max(&format!("{scheme}{authority}{tail}"), 120)
}

/// Loads a manifest by name: the config directory's `connectors/NAME.toml`
/// first, then the built-in one.
pub fn load_manifest(name: &str, config_dir: Option<&Path>) -> Result<Manifest, ConfigError> {
    if let Some(dir) = config_dir {
        let path = dir.join("connectors").join(format!("{name}.toml"));
        if path.is_file() {
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Io {
                path: path.clone(),
                error: e.to_string(),
            })?;
            return parse_manifest(&text, &path.display().to_string());
        }
    }
    let (_, text) =
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| ConfigError::UnknownManifest {
                name: name.to_string(),
                known: BUILTIN
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
    parse_manifest(text, &format!("built-in connectors/{name}.toml"))
}

pub fn parse_manifest(text: &str, origin: &str) -> Result<Manifest, ConfigError> {
    parse_toml(text, origin)
}

/// Merges a user's connector section over its manifest.
pub fn resolve(
    id: &str,
    cfg: &ConnectorConfig,
    config_dir: &Path,
) -> Result<ResolvedConnector, ConfigError> {
    let name = cfg.manifest.as_deref().unwrap_or(id);
    let mut manifest = load_manifest(name, Some(config_dir))?;
    if let Some(n) = &cfg.display_name {
        manifest.display_name = n.clone();
    }
    if let Some(r) = cfg.refresh_secs {
        manifest.refresh_secs = r;
    }
    for (k, v) in &cfg.api {
        if !manifest.api.contains_key(k) {
            return Err(ConfigError::Key {
                key: format!("connectors.{id}.api.{k}"),
                expected: format!(
                    "one of the manifest's base URLs: {}",
                    manifest.api.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
                found: format!("`{k}`"),
            });
        }
        manifest.api.insert(k.clone(), v.clone());
    }
    manifest.auth.merge(&cfg.auth);
    if let Some(l) = &cfg.limits {
        manifest.limits = l.clone();
    }
    for (k, v) in &cfg.settings {
        manifest.settings.insert(k.clone(), v.clone());
    }
    let resolved = ResolvedConnector {
        id: id.to_string(),
        manifest,
        config_dir: config_dir.to_path_buf(),
    };
    resolved.all_urls()?;
    if let Some(t) = &resolved.manifest.auth.token_url {
        parse_base_url(t).map_err(|why| ConfigError::Key {
            key: format!("connectors.{id}.auth.token_url"),
            expected: "a URL (http:// or https://)".into(),
            found: why,
        })?;
    }
    if resolved.manifest.refresh_secs < 2 {
        return Err(ConfigError::Key {
            key: format!("connectors.{id}.refresh_secs"),
            expected: "at least 2 seconds".into(),
            found: resolved.manifest.refresh_secs.to_string(),
        });
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifests_parse() {
        for (name, _) in BUILTIN {
            let m = load_manifest(name, None).unwrap();
            assert_eq!(&m.id, name);
            assert!(!m.api.is_empty());
        }
    }

    #[test]
    fn endpoint_urls_refuse_credentials_and_cleartext_without_echoing_secrets() {
        // Credentials in the URL: refused, and never quoted back.
        let e = check_url("https://admin:hunter2@api.example.com/v1?key=sekrit").unwrap_err();
        assert!(e.contains("credentials"), "{e}");
        assert!(!e.contains("hunter2") && !e.contains("admin:"), "{e}");
        assert!(!e.contains("sekrit"), "{e}");
        // A URL that does not parse is quoted without its userinfo either.
        let e = check_url("ftp://root:hunter2@[bad").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        let e = check_url("root:hunter2@host").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        // Non-http schemes.
        let e = check_url("file:///etc/passwd").unwrap_err();
        assert!(e.contains("scheme"), "{e}");
        assert!(check_url("javascript:alert(1)").is_err());
        // Plain http only to this machine.
        let e = check_url("http://api.example.com/").unwrap_err();
        assert!(e.contains("https"), "{e}");
        assert!(check_url("http://127.0.0.1:8700/").is_ok());
        assert!(check_url("http://[::1]:8700/").is_ok());
        assert!(check_url("http://localhost:8700/").is_ok());
        assert!(check_url("https://api.example.com/").is_ok());
        // A control sequence in a bad URL stays inert.
        let e = check_url("https://\u{1b}[2Jx@").unwrap_err();
        assert!(!e.contains('\u{1b}'), "{e:?}");
    }

    #[test]
    fn a_base_url_with_credentials_is_a_config_error_naming_the_key() {
        let mut m = load_manifest("slack", None).unwrap();
        m.api.insert(
            "base_url".into(),
            "https://bot:xoxp-123-secret@slack.example.com/api/".into(),
        );
        let r = ResolvedConnector {
            id: "slack".into(),
            manifest: m,
            config_dir: std::path::PathBuf::from("."),
        };
        let e = r.url("base_url").unwrap_err().to_string();
        assert!(e.contains("connectors.slack.api.base_url"), "{e}");
        assert!(!e.contains("xoxp-123-secret"), "{e}");
    }
}
