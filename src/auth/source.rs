//! Token sources built from a connector's `[auth]`: cached interactive
//! tokens (refreshed before expiry and after a 401, refresh-token rotation
//! honoured), client credentials, JWT bearer and static tokens.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::authority::{self, Authority};
use super::cache::{StoredToken, TokenCache};
use super::jwt::{JwtBearer, JwtBearerConfig, ServiceAccountKey};
use super::oauth::{Flow, OAuth, OAuthSettings};
use super::{Cached, StaticToken, TokenSource};
use crate::connector::{BuildContext, ConnectorError, ResolvedConnector};
use crate::secret::Secret;

/// Renew at most this long before expiry (less for short-lived tokens).
const MARGIN: Duration = Duration::from_secs(60);

/// The token source a connector's `[auth]` asks for. Interactive flows
/// (`authorization-code`, `device-code`) read the token cache that
/// `offboard login` wrote; the others obtain tokens themselves.
///
/// `authority` gives the connector's authorization server (its vendor's
/// dialect): see `crate::apps::token_source`, which every driver calls.
pub fn token_source(
    resolved: &ResolvedConnector,
    ctx: &BuildContext,
    authority: authority::Dialect,
) -> Result<Arc<dyn TokenSource>, ConnectorError> {
    let a = &resolved.manifest.auth;
    match Flow::of(resolved)? {
        Flow::Static => {
            let file = a.token_file.as_deref().map(|p| resolved.path(p));
            Ok(Arc::new(StaticToken::from_env_or_file(
                &format!("connector `{}` token", resolved.id),
                a.token_env.as_deref(),
                file.as_deref(),
            )?))
        }
        Flow::JwtBearer => Ok(Arc::new(jwt_bearer(resolved, ctx.http.clone())?)),
        Flow::ClientCredentials => {
            let oauth = OAuth::new(OAuthSettings::from_resolved(resolved)?, ctx.http.clone())?;
            Ok(Arc::new(ClientCredentials::new(oauth)?))
        }
        Flow::AuthorizationCode | Flow::DeviceCode => {
            let oauth = authority(resolved, ctx.http.clone())?;
            let cache = cache_for(oauth.settings(), &ctx.data_dir);
            Ok(Arc::new(CachedToken::new(oauth, cache)))
        }
    }
}

/// The cache file of a connector's interactive tokens.
pub fn cache_for(settings: &OAuthSettings, data_dir: &std::path::Path) -> TokenCache {
    TokenCache::new(data_dir, &settings.connector, &settings.account)
}

/// JWT bearer from `key_file`: a Google service-account JSON key, or a PEM
/// private key with `issuer` (Salesforce consumer key).
fn jwt_bearer(r: &ResolvedConnector, http: reqwest::Client) -> Result<JwtBearer, ConnectorError> {
    let a = &r.manifest.auth;
    let key_path = a.key_file.as_deref().map(|p| r.path(p)).ok_or_else(|| {
        ConnectorError::Config(format!(
            "key `connectors.{}.auth.key_file`: expected the private key file, found nothing",
            r.id
        ))
    })?;
    let text = std::fs::read_to_string(&key_path).map_err(|e| {
        ConnectorError::Config(format!("key file {}: cannot read: {e}", key_path.display()))
    })?;
    let (issuer, pem, key_id, key_token_uri) = if text.trim_start().starts_with('{') {
        let sa = ServiceAccountKey::load(&key_path)?;
        (
            a.issuer.clone().unwrap_or(sa.client_email),
            sa.private_key,
            sa.private_key_id,
            sa.token_uri,
        )
    } else {
        let issuer = a.issuer.clone().ok_or_else(|| {
            ConnectorError::Config(format!(
                "key `connectors.{}.auth.issuer`: expected the JWT issuer (client id / consumer key), found nothing",
                r.id
            ))
        })?;
        (issuer, Secret::new(text), None, None)
    };
    let raw = a.token_url.clone().or(key_token_uri).ok_or_else(|| {
        ConnectorError::Config(format!(
            "key `connectors.{}.auth.token_url`: expected the token endpoint URL, found nothing",
            r.id
        ))
    })?;
    let token_url = crate::connector::manifest::check_url(&raw).map_err(|why| {
        ConnectorError::Config(format!(
            "key `connectors.{}.auth.token_url`: expected the token endpoint URL, found {why}",
            r.id
        ))
    })?;
    JwtBearer::new(
        http,
        JwtBearerConfig {
            token_url,
            issuer,
            subject: a.subject.clone(),
            scopes: a.scopes.clone(),
            audience: a.audience.clone(),
            private_key_pem: pem,
            key_id,
        },
    )
}

fn margin_for(lifetime: Duration) -> Duration {
    MARGIN.min(lifetime / 10)
}

/// Tokens obtained by a person signing in, read from and written back to
/// the token cache.
pub struct CachedToken {
    oauth: Arc<dyn Authority>,
    cache: TokenCache,
    current: Mutex<Option<StoredToken>>,
    scopes: std::sync::Mutex<Option<Vec<String>>>,
}

impl CachedToken {
    pub fn new(oauth: Arc<dyn Authority>, cache: TokenCache) -> Self {
        Self {
            oauth,
            cache,
            current: Mutex::new(None),
            scopes: std::sync::Mutex::new(None),
        }
    }

    fn login_hint(&self) -> String {
        format!("run `offboard login {}`", self.oauth.settings().connector)
    }

    fn load(&self) -> Result<StoredToken, ConnectorError> {
        let stored = self.cache.load()?.ok_or_else(|| {
            ConnectorError::Auth(format!(
                "not signed in to `{}`: {}",
                self.oauth.settings().connector,
                self.login_hint()
            ))
        })?;
        if stored.token_url != self.oauth.settings().token_url.as_str()
            || stored.client_id != self.oauth.settings().client_id
        {
            return Err(ConnectorError::Auth(format!(
                "the cached sign-in for `{}` is for another authorization server or client: {}",
                self.oauth.settings().connector,
                self.login_hint()
            )));
        }
        Ok(stored)
    }

    fn note_scopes(&self, t: &StoredToken) {
        *self.scopes.lock().expect("scopes lock") = t.scopes.clone();
    }

    fn fresh(t: &StoredToken) -> bool {
        match t.expires_at {
            None => true,
            Some(exp) => {
                let now = chrono::Utc::now().timestamp();
                let lifetime = Duration::from_secs((exp - t.obtained_at).max(0) as u64);
                exp - now > margin_for(lifetime).as_secs() as i64
            }
        }
    }
}

#[async_trait]
impl TokenSource for CachedToken {
    async fn token(&self) -> Result<Secret, ConnectorError> {
        let mut current = self.current.lock().await;
        if current.is_none() {
            *current = Some(self.load()?);
        }
        let held = current.as_ref().expect("loaded above");
        self.note_scopes(held);
        if Self::fresh(held) {
            return Ok(held.access_token.clone());
        }
        // Renewal is read-refresh-write under the entry's lock, so that
        // processes sharing this sign-in take turns. Re-read once it is
        // held: another process may have renewed already, and with rotation
        // the refresh token held here would then be spent (servers end the
        // whole sign-in when a spent one comes back, RFC 9700 §4.14.2).
        let _lock = self.cache.lock().await?;
        let disk = self.load()?;
        if disk.access_token != held.access_token && Self::fresh(&disk) {
            self.note_scopes(&disk);
            let token = disk.access_token.clone();
            *current = Some(disk);
            return Ok(token);
        }
        // The entry on disk holds the newest refresh token: renew with it.
        let Some(rt) = disk.refresh_token.clone() else {
            return Err(ConnectorError::Auth(format!(
                "the sign-in for `{}` has expired and cannot be renewed: {}",
                self.oauth.settings().connector,
                self.login_hint()
            )));
        };
        let fresh = match self.oauth.refresh(&rt).await {
            Ok(t) => t,
            Err(e) if self.oauth.sign_in_ended(&e) => {
                return Err(ConnectorError::Auth(format!(
                    "the sign-in for `{}` was revoked or has expired: {}",
                    self.oauth.settings().connector,
                    self.login_hint()
                )));
            }
            Err(e) => return Err(e),
        };
        let stored = fresh.into_stored(self.oauth.settings(), Some(&disk));
        self.cache.save(&stored)?;
        tracing::info!(connector = %self.oauth.settings().connector, "access token refreshed");
        let token = stored.access_token.clone();
        self.note_scopes(&stored);
        *current = Some(stored);
        Ok(token)
    }

    async fn invalidate(&self, rejected: &Secret) {
        let mut current = self.current.lock().await;
        if let Some(t) = current.as_mut().filter(|t| &t.access_token == rejected) {
            t.expires_at = Some(0);
        }
    }

    fn granted_scopes(&self) -> Option<Vec<String>> {
        self.scopes.lock().expect("scopes lock").clone()
    }
}

/// Client credentials grant, kept in memory until shortly before expiry.
pub struct ClientCredentials {
    oauth: OAuth,
    cache: Mutex<Option<Cached>>,
    scopes: std::sync::Mutex<Option<Vec<String>>>,
}

impl ClientCredentials {
    pub fn new(oauth: OAuth) -> Result<Self, ConnectorError> {
        if oauth.settings.client_secret.is_none() && oauth.settings.client_key.is_none() {
            return Err(ConnectorError::Config(format!(
                "connector `{}`: client credentials need a client secret (set auth.client_secret_env or auth.client_secret_file) or a private key for private_key_jwt (auth.key_file)",
                oauth.settings.connector
            )));
        }
        Ok(Self {
            oauth,
            cache: Mutex::new(None),
            scopes: std::sync::Mutex::new(None),
        })
    }
}

#[async_trait]
impl TokenSource for ClientCredentials {
    async fn token(&self) -> Result<Secret, ConnectorError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref().filter(|c| c.fresh(margin_for(c.lifetime))) {
            return Ok(c.token.clone());
        }
        let t = self.oauth.client_credentials().await?;
        let lifetime = t.expires_in.unwrap_or(Duration::from_secs(3600));
        *self.scopes.lock().expect("scopes lock") = t
            .scopes
            .or_else(|| Some(self.oauth.settings().scopes.clone()));
        tracing::info!(connector = %self.oauth.settings().connector, ttl_secs = lifetime.as_secs(), "access token obtained");
        let token = t.access_token.clone();
        *cache = Some(Cached {
            token: t.access_token,
            expires: Instant::now() + lifetime,
            lifetime,
        });
        Ok(token)
    }

    async fn invalidate(&self, rejected: &Secret) {
        let mut cache = self.cache.lock().await;
        if cache.as_ref().is_some_and(|c| &c.token == rejected) {
            *cache = None;
        }
    }

    fn granted_scopes(&self) -> Option<Vec<String>> {
        self.scopes.lock().expect("scopes lock").clone()
    }
}
