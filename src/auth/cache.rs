//! The token cache: one JSON file per connector and account under
//! `tokens/` in the data directory, readable by its owner only (0600),
//! replaced atomically. A cache file that group or others can read is
//! refused, with the command that fixes it.
//!
//! Processes that share a sign-in (the console and a command, two
//! operators' commands on one host) take turns to read, renew and write an
//! entry: an exclusive `flock` on a `.lock` file beside it (0600, empty).
//! Whoever takes the lock re-reads the entry first, as another process may
//! have renewed it meanwhile; with refresh-token rotation, using the spent
//! refresh token again would make the server end the whole sign-in.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use crate::connector::ConnectorError;
use crate::secret::Secret;

/// What is kept for one connector and account.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredToken {
    #[serde(serialize_with = "expose")]
    pub access_token: Secret,
    #[serde(
        default,
        serialize_with = "expose_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub refresh_token: Option<Secret>,
    /// Unix seconds; None when the server gave no lifetime.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Scopes granted, from the token response's `scope` (None: not reported).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// The token endpoint and client these tokens belong to: a cache made for
    /// another server or client is not used.
    pub token_url: String,
    pub client_id: String,
    /// The flow that obtained them.
    pub flow: String,
    pub obtained_at: i64,
    /// Where the API lives when the token endpoint says so (Salesforce
    /// `instance_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_url: Option<String>,
}

impl std::fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredToken")
            .field("access_token", &self.access_token)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "***"))
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("flow", &self.flow)
            .field("instance_url", &self.instance_url)
            .finish()
    }
}

fn expose<S: Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose())
}

fn expose_opt<S: Serializer>(s: &Option<Secret>, ser: S) -> Result<S::Ok, S::Error> {
    match s {
        Some(v) => ser.serialize_str(v.expose()),
        None => ser.serialize_none(),
    }
}

/// Keeps a file name to letters, digits and `.@_-`.
fn file_part(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        "default".into()
    } else {
        cleaned
    }
}

/// The cache file of one connector and account.
#[derive(Debug, Clone)]
pub struct TokenCache {
    path: PathBuf,
}

/// How long to wait for another process to finish with an entry: longer
/// than a renewal takes (one token request, 30 s at most, and a revocation).
const LOCK_WAIT: Duration = Duration::from_secs(75);

/// An entry's lock, held until dropped (closing the file releases it).
#[derive(Debug)]
pub struct EntryLock {
    _file: std::fs::File,
}

/// What [`TokenCache::load_exposed`] found.
#[derive(Debug)]
pub struct Loaded {
    pub token: StoredToken,
    /// The file was readable by group or others: the tokens in it must be
    /// taken as seen by them.
    pub exposed: bool,
}

impl TokenCache {
    /// `DATA/tokens/{connector}--{account}.json`.
    pub fn new(data_dir: &Path, connector: &str, account: &str) -> Self {
        Self {
            path: data_dir.join("tokens").join(format!(
                "{}--{}.json",
                file_part(connector),
                file_part(account)
            )),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock file beside the entry: `{entry}.lock`.
    pub fn lock_path(&self) -> PathBuf {
        let mut name = self
            .path
            .file_name()
            .expect("cache path has a file name")
            .to_os_string();
        name.push(".lock");
        self.path.with_file_name(name)
    }

    /// Takes the entry's lock, waiting while another process holds it.
    pub async fn lock(&self) -> Result<EntryLock, ConnectorError> {
        let path = self.lock_path();
        let fail = |e: std::io::Error| {
            ConnectorError::Config(format!("token cache lock {}: {e}", path.display()))
        };
        let dir = self.path.parent().expect("cache path has a directory");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(fail)?;
        self.check_dir()?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(fail)?;
        if !file.metadata().map_err(fail)?.is_file() {
            return Err(ConnectorError::Config(format!(
                "token cache lock {} is not a regular file; remove it",
                path.display()
            )));
        }
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        loop {
            // SAFETY: the descriptor is open for as long as `file` lives.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r == 0 {
                return Ok(EntryLock { _file: file });
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => {}
                _ => return Err(fail(e)),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ConnectorError::Auth(format!(
                    "another offboard process has been renewing this sign-in for {} s and has not finished (lock {}); try again",
                    LOCK_WAIT.as_secs(),
                    path.display()
                )));
            }
            // flock cannot be awaited: look again shortly.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The cache directory must be a real directory of this user that no
    /// one else can write to: otherwise someone else could replace or
    /// remove the cache files in it.
    fn check_dir(&self) -> Result<(), ConnectorError> {
        use std::os::unix::fs::MetadataExt;
        let dir = self.path.parent().expect("cache path has a directory");
        let meta = match std::fs::symlink_metadata(dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(ConnectorError::Config(format!(
                    "token cache directory {}: {e}",
                    dir.display()
                )));
            }
        };
        if !meta.is_dir() {
            return Err(ConnectorError::Config(format!(
                "token cache directory {} is not a directory (a link?); remove it and sign in again",
                dir.display()
            )));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(ConnectorError::Config(format!(
                "token cache directory {} belongs to another user; it is not used",
                dir.display()
            )));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(ConnectorError::Config(format!(
                "token cache directory {d} has mode {mode:o}: others can write to it, so it is not used; fix with: chmod 700 {d}",
                d = dir.display()
            )));
        }
        Ok(())
    }

    /// The cached tokens, None when there is no cache file. Refuses a file
    /// that group or others can read or write.
    pub fn load(&self) -> Result<Option<StoredToken>, ConnectorError> {
        self.read(false).map(|l| l.map(|l| l.token))
    }

    /// Like [`TokenCache::load`], but reads a file that group or others
    /// can access too, saying so: to end such tokens at the server before
    /// the file is deleted (`logout`).
    pub fn load_exposed(&self) -> Result<Option<Loaded>, ConnectorError> {
        self.read(true)
    }

    fn read(&self, exposed_ok: bool) -> Result<Option<Loaded>, ConnectorError> {
        self.check_dir()?;
        let meta = match std::fs::symlink_metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ConnectorError::Config(format!(
                    "token cache {}: {e}",
                    self.path.display()
                )));
            }
        };
        if !meta.is_file() {
            return Err(ConnectorError::Config(format!(
                "token cache {} is not a regular file; remove it and sign in again",
                self.path.display()
            )));
        }
        let mode = meta.permissions().mode() & 0o777;
        let exposed = mode & 0o077 != 0;
        if exposed && !exposed_ok {
            return Err(ConnectorError::Config(format!(
                "token cache {p} has mode {mode:o}: group or others can access it, so it is not used; fix with: chmod 600 {p}",
                p = self.path.display()
            )));
        }
        let text = std::fs::read(&self.path).map_err(|e| {
            ConnectorError::Config(format!("token cache {}: {e}", self.path.display()))
        })?;
        // The parse error is not shown: it could quote part of a token.
        serde_json::from_slice(&text)
            .map(|token| Some(Loaded { token, exposed }))
            .map_err(|_| {
                ConnectorError::Config(format!(
                    "token cache {} is not a token cache file; delete it and sign in again",
                    self.path.display()
                ))
            })
    }

    /// Writes the tokens: a 0600 file next to the cache, then renamed over it.
    pub fn save(&self, token: &StoredToken) -> Result<(), ConnectorError> {
        let fail = |e: std::io::Error| {
            ConnectorError::Config(format!("token cache {}: {e}", self.path.display()))
        };
        let dir = self.path.parent().expect("cache path has a directory");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(fail)?;
        self.check_dir()?;
        let body = serde_json::to_vec_pretty(token).expect("a token serialises");
        let tmp = dir.join(format!(
            ".{}.{}.{:x}.tmp",
            self.path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("token"),
            std::process::id(),
            rand::random::<u64>()
        ));
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(fail(e));
        }
        Ok(())
    }

    /// Deletes the cache file; true when there was one.
    pub fn delete(&self) -> Result<bool, ConnectorError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(ConnectorError::Config(format!(
                "token cache {}: cannot delete: {e}",
                self.path.display()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredToken {
        StoredToken {
            access_token: Secret::new("at-123"),
            refresh_token: Some(Secret::new("rt-456")),
            expires_at: Some(1),
            scopes: Some(vec!["a".into()]),
            token_url: "http://x/token".into(),
            client_id: "c".into(),
            flow: "authorization-code".into(),
            obtained_at: 0,
            instance_url: None,
        }
    }

    #[test]
    fn saves_0600_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let c = TokenCache::new(dir.path(), "slack", "admin@example.com");
        assert!(c.load().unwrap().is_none());
        c.save(&sample()).unwrap();
        let mode = std::fs::metadata(c.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = c.load().unwrap().unwrap();
        assert_eq!(back.access_token.expose(), "at-123");
        assert_eq!(back.refresh_token.unwrap().expose(), "rt-456");
        // No temporary files left behind.
        let names: Vec<_> = std::fs::read_dir(c.path().parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn refuses_a_readable_file_and_says_how_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let c = TokenCache::new(dir.path(), "g", "a");
        c.save(&sample()).unwrap();
        std::fs::set_permissions(c.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = c.load().unwrap_err().to_string();
        assert!(
            e.contains(&format!("chmod 600 {}", c.path().display())),
            "{e}"
        );
        assert!(!e.contains("at-123"));
    }

    #[test]
    fn refuses_a_directory_others_can_write_to() {
        let dir = tempfile::tempdir().unwrap();
        let c = TokenCache::new(dir.path(), "g", "a");
        c.save(&sample()).unwrap();
        let tokens = c.path().parent().unwrap().to_path_buf();
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = c.load().unwrap_err().to_string();
        assert!(
            e.contains(&format!("chmod 700 {}", tokens.display())),
            "{e}"
        );
        assert!(c.save(&sample()).is_err(), "nor written into");
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(c.load().unwrap().is_some());
    }

    #[test]
    fn refuses_a_linked_directory() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("tokens")).unwrap();
        let c = TokenCache::new(dir.path(), "g", "a");
        assert!(
            c.load()
                .unwrap_err()
                .to_string()
                .contains("not a directory")
        );
        assert!(c.save(&sample()).is_err());
    }

    #[test]
    fn debug_hides_tokens_and_names_are_confined() {
        let s = format!("{:?}", sample());
        assert!(!s.contains("at-123") && !s.contains("rt-456"), "{s}");
        let c = TokenCache::new(Path::new("/d"), "../x", "a/b");
        assert_eq!(c.path(), Path::new("/d/tokens/_x--a_b.json"));
    }
}
