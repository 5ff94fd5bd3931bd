//! Interactive sign-in, as values a caller drives (the command line prints
//! them; the console shows them in a dialog):
//!
//! - [`CodeLogin`]: authorization code with PKCE (S256) and a loopback
//!   redirect on 127.0.0.1 with an ephemeral port (RFC 8252 §7.3); the
//!   redirected URL can also be pasted back when the browser runs on another
//!   machine (SSH).
//! - [`DeviceLogin`]: device authorization grant (RFC 8628): a user code and
//!   verification URI to show, then a future that completes on approval.
//!
//! Both write the tokens to the token cache (0600) and return a
//! [`LoginOutcome`] that holds no secret.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

use super::authority::{Authority, DeviceGrant};
use super::cache::{StoredToken, TokenCache};
use super::oauth::{AuthRequest, Flow, TokenSet};
use crate::connector::ConnectorError;
use crate::sanitize;
use crate::secret::Secret;

/// The loopback listener's path.
pub const CALLBACK_PATH: &str = "/callback";

/// What a sign-in produced (no secrets).
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    pub connector: String,
    /// Granted scopes, when the server reported them.
    pub scopes: Option<Vec<String>>,
    pub expires_in: Option<Duration>,
    pub has_refresh_token: bool,
    pub cache_path: std::path::PathBuf,
    /// What became of the sign-in this one replaced (None: there was none).
    pub replaced: Option<Replaced>,
}

/// What signing in again did with the sign-in it replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replaced {
    /// Revoked at the server (RFC 7009) before the new tokens were stored.
    Revoked,
    /// The server gave the same refresh token again: nothing to revoke.
    SameGrant,
    /// The connector has no revocation endpoint: the old tokens stay valid
    /// until they expire.
    NotRevocable,
    /// The old tokens were for another authorization server or client:
    /// they are not sent to this one, and stay valid until they expire.
    OtherServer,
    /// The server refused or could not be reached (the reason, without
    /// secrets); the new sign-in was stored all the same.
    RevokeFailed(String),
}

/// Stores a new sign-in under the entry's lock. The sign-in it replaces is
/// revoked at the server first (RFC 7009): a refresh token left behind in
/// no cache would stay valid, and usable by whoever had copied it.
async fn store(
    oauth: &dyn Authority,
    cache: &TokenCache,
    tokens: TokenSet,
    flow: Flow,
) -> Result<LoginOutcome, ConnectorError> {
    let expires_in = tokens.expires_in;
    let mut stored: StoredToken = tokens.into_stored(oauth.settings(), None);
    stored.flow = flow.name().to_string();
    let _lock = cache.lock().await?;
    let previous = match cache.load_exposed() {
        Ok(p) => p.map(|l| l.token),
        Err(e) => {
            // Unreadable: nothing in it can be revoked; it is replaced.
            tracing::warn!(connector = %oauth.settings().connector, error = %e, "previous token cache unreadable; replaced");
            None
        }
    };
    let replaced = match previous {
        None => None,
        Some(old) => Some(replace(oauth, &old, &stored).await),
    };
    cache.save(&stored)?;
    tracing::info!(connector = %oauth.settings().connector, flow = flow.name(), ?replaced, "signed in; tokens cached");
    Ok(LoginOutcome {
        connector: oauth.settings().connector.clone(),
        scopes: stored.scopes.clone(),
        expires_in,
        has_refresh_token: stored.refresh_token.is_some(),
        cache_path: cache.path().to_path_buf(),
        replaced,
    })
}

/// Revokes the sign-in `old` that `new` replaces, when that is safe.
async fn replace(oauth: &dyn Authority, old: &StoredToken, new: &StoredToken) -> Replaced {
    let s = oauth.settings();
    if old.token_url != s.token_url.as_str() || old.client_id != s.client_id {
        return Replaced::OtherServer;
    }
    let same = match (&old.refresh_token, &new.refresh_token) {
        (Some(a), Some(b)) => a == b,
        (None, _) => old.access_token == new.access_token,
        (Some(_), None) => false,
    };
    if same {
        return Replaced::SameGrant;
    }
    if !oauth.can_revoke() {
        return Replaced::NotRevocable;
    }
    match oauth.revoke(old).await {
        Ok(()) => Replaced::Revoked,
        Err(e) => Replaced::RevokeFailed(e.to_string()),
    }
}

/// Whether a local browser can be opened: not over SSH without a display,
/// and on Linux/BSD only with a display.
pub fn browser_available() -> bool {
    let set = |v: &str| std::env::var_os(v).is_some_and(|x| !x.is_empty());
    let display = set("DISPLAY") || set("WAYLAND_DISPLAY");
    let ssh = set("SSH_CONNECTION") || set("SSH_TTY") || set("SSH_CLIENT");
    if cfg!(target_os = "macos") || cfg!(target_os = "windows") {
        !ssh || display
    } else {
        display
    }
}

/// Asks the desktop to open `url`; false when no opener could be started.
pub fn open_browser(url: &Url) -> bool {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::process::Command::new(opener)
        .arg(url.as_str())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}

/// An authorization-code sign-in in progress.
pub struct CodeLogin {
    oauth: Arc<dyn Authority>,
    cache: TokenCache,
    request: AuthRequest,
    listener: TcpListener,
}

impl CodeLogin {
    /// Binds the loopback listener (127.0.0.1, ephemeral port) and builds
    /// the authorization URL with PKCE and state.
    pub async fn start(
        oauth: Arc<dyn Authority>,
        cache: TokenCache,
    ) -> Result<Self, ConnectorError> {
        Self::start_on(oauth, cache, 0).await
    }

    /// Like [`CodeLogin::start`] on a fixed loopback port (0: any), for
    /// vendors that match the registered redirect URL's port exactly.
    pub async fn start_on(
        oauth: Arc<dyn Authority>,
        cache: TokenCache,
        port: u16,
    ) -> Result<Self, ConnectorError> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
            ConnectorError::Network(format!(
                "cannot listen on 127.0.0.1 for the sign-in redirect: {e}"
            ))
        })?;
        let port = listener
            .local_addr()
            .map_err(|e| ConnectorError::Network(format!("loopback listener: {e}")))?
            .port();
        let redirect = format!("http://127.0.0.1:{port}{CALLBACK_PATH}");
        let request = oauth.authorize(&redirect)?;
        Ok(Self {
            oauth,
            cache,
            request,
            listener,
        })
    }

    /// The URL the operator opens (it holds no secret: PKCE sends only the
    /// challenge).
    pub fn url(&self) -> &Url {
        &self.request.url
    }

    pub fn redirect_uri(&self) -> &str {
        &self.request.redirect_uri
    }

    /// Waits for the browser's redirect on the loopback listener, or for a
    /// redirected URL read from `paste` (one line), whichever comes first;
    /// then exchanges the code. A state that does not match is refused.
    pub async fn complete<R: AsyncBufRead + Unpin>(
        self,
        paste: Option<R>,
    ) -> Result<LoginOutcome, ConnectorError> {
        let code = {
            let loopback = wait_loopback(&self.listener, &self.request);
            match paste {
                Some(mut reader) => {
                    let pasted = read_pasted(&mut reader);
                    tokio::select! {
                        r = loopback => r?,
                        r = pasted => {
                            let text = r?;
                            parse_redirect(&text, &self.request)?
                        }
                    }
                }
                None => loopback.await?,
            }
        };
        self.exchange(code).await
    }

    /// Finishes with a redirected URL the operator pasted.
    pub async fn complete_with_url(self, redirected: &str) -> Result<LoginOutcome, ConnectorError> {
        let code = parse_redirect(redirected, &self.request)?;
        self.exchange(code).await
    }

    async fn exchange(self, code: Secret) -> Result<LoginOutcome, ConnectorError> {
        let tokens = self.oauth.exchange_code(self.request, &code).await?;
        store(
            self.oauth.as_ref(),
            &self.cache,
            tokens,
            Flow::AuthorizationCode,
        )
        .await
    }
}

async fn read_pasted<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<String, ConnectorError> {
    loop {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .await
            .map_err(|e| ConnectorError::Config(format!("cannot read the pasted URL: {e}")))?;
        if n == 0 {
            return Err(ConnectorError::Auth(
                "no redirected URL was pasted (input ended)".into(),
            ));
        }
        if !line.trim().is_empty() {
            return Ok(line.trim().to_string());
        }
    }
}

/// Reads `code` and `state` from a redirected URL (or just its query), and
/// refuses it when the state is not the one sent or the server sent an error.
pub fn parse_redirect(text: &str, request: &AuthRequest) -> Result<Secret, ConnectorError> {
    let text = text.trim();
    let query = match Url::parse(text) {
        Ok(u) => u.query().unwrap_or("").to_string(),
        Err(_) => text
            .rsplit_once('?')
            .map(|(_, q)| q)
            .unwrap_or(text)
            .to_string(),
    };
    let mut code = None;
    let mut state = None;
    let mut error = None;
    let mut description = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "code" => code = Some(Secret::new(v.into_owned())),
            "state" => state = Some(v.into_owned()),
            "error" => error = Some(v.into_owned()),
            "error_description" => description = Some(v.into_owned()),
            _ => {}
        }
    }
    let state_ok = state.as_deref().is_some_and(|s| request.state_matches(s));
    // An error that names another sign-in's state is forged or stale; one
    // without a state (some servers omit it on errors) is reported.
    if error.is_some() && state.is_some() && !state_ok {
        return Err(ConnectorError::Auth(
            "the redirect's state does not match this sign-in (a stale or forged redirect); refused, start `offboard login` again".into(),
        ));
    }
    if let Some(e) = error {
        return Err(ConnectorError::Auth(format!(
            "sign-in refused: the authorization server said {}{}",
            sanitize::clean_max(&e, 80),
            description
                .map(|d| format!(" ({})", sanitize::clean_max(&d, 200)))
                .unwrap_or_default()
        )));
    }
    if !state_ok {
        return Err(ConnectorError::Auth(
            "the redirect's state does not match this sign-in (a stale or forged redirect); refused, start `offboard login` again".into(),
        ));
    }
    code.filter(|c| !c.is_empty())
        .ok_or_else(|| ConnectorError::Auth("the redirected URL has no authorization code".into()))
}

/// Serves the loopback listener until the callback arrives.
async fn wait_loopback(
    listener: &TcpListener,
    request: &AuthRequest,
) -> Result<Secret, ConnectorError> {
    loop {
        let (stream, _) = listener
            .accept()
            .await
            .map_err(|e| ConnectorError::Network(format!("loopback listener: {e}")))?;
        match handle_callback(stream, request).await {
            Some(result) => return result,
            None => continue,
        }
    }
}

/// One HTTP request on the loopback listener: None when it is not the
/// callback (favicon, probes).
async fn handle_callback(
    mut stream: TcpStream,
    request: &AuthRequest,
) -> Option<Result<Secret, ConnectorError>> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 1024];
    let read = async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()
        .flatten()?;
    let head = String::from_utf8_lossy(&buf);
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" || path != CALLBACK_PATH {
        let _ = respond(&mut stream, "404 Not Found", "Not found.").await;
        return None;
    }
    // Only the redirect of this sign-in (its state) ends the wait: any page
    // or local process can reach a loopback port, and a request without the
    // state must not abort the sign-in or choose its outcome.
    let state_ok =
        url::form_urlencoded::parse(target.split_once('?').map_or("", |(_, q)| q).as_bytes())
            .any(|(k, v)| k == "state" && request.state_matches(&v));
    if !state_ok {
        let _ = respond(
            &mut stream,
            "400 Bad Request",
            "This is not the redirect of the sign-in in progress.",
        )
        .await;
        return None;
    }
    let result = parse_redirect(target, request);
    let (status, text) = match &result {
        Ok(_) => (
            "200 OK",
            "Signed in to offboard. You can close this tab and return to the terminal.",
        ),
        Err(_) => (
            "400 Bad Request",
            "Sign-in failed; see the terminal for the reason.",
        ),
    };
    let _ = respond(&mut stream, status, text).await;
    Some(result)
}

async fn respond(stream: &mut TcpStream, status: &str, text: &str) -> std::io::Result<()> {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>offboard</title></head><body><p>{text}</p></body></html>"
    );
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(resp.as_bytes()).await?;
    stream.shutdown().await
}

/// What the operator must see to approve a device sign-in. The user code is
/// meant to be shown; it is not a token.
#[derive(Debug, Clone)]
pub struct DevicePrompt {
    pub connector: String,
    pub user_code: String,
    pub verification_uri: String,
    /// The URI with the code filled in (RFC 8628 §3.3.1), when offered.
    pub verification_uri_complete: Option<String>,
    pub expires_in: Duration,
    pub interval: Duration,
}

/// A device sign-in in progress: show [`DeviceLogin::prompt`], then await
/// [`DeviceLogin::finish`].
pub struct DeviceLogin {
    oauth: Arc<dyn Authority>,
    cache: TokenCache,
    grant: DeviceGrant,
    prompt: DevicePrompt,
}

impl DeviceLogin {
    /// Asks the device authorization endpoint for a code.
    pub async fn start(
        oauth: Arc<dyn Authority>,
        cache: TokenCache,
    ) -> Result<Self, ConnectorError> {
        let grant = oauth.device_start().await?;
        let prompt = DevicePrompt {
            connector: oauth.settings().connector.clone(),
            user_code: sanitize::clean_max(&grant.user_code, 64),
            verification_uri: sanitize::clean_max(&grant.verification_uri, 500),
            verification_uri_complete: grant
                .verification_uri_complete
                .as_deref()
                .map(|u| sanitize::clean_max(u, 600)),
            expires_in: grant.expires_in,
            interval: grant.interval,
        };
        Ok(Self {
            oauth,
            cache,
            grant,
            prompt,
        })
    }

    pub fn prompt(&self) -> &DevicePrompt {
        &self.prompt
    }

    /// Polls until the operator approves (tokens cached), denies
    /// (`access_denied`) or the code expires (`expired_token`).
    pub async fn finish(self) -> Result<LoginOutcome, ConnectorError> {
        let tokens = self.oauth.device_finish(self.grant).await?;
        store(self.oauth.as_ref(), &self.cache, tokens, Flow::DeviceCode).await
    }
}

/// What `logout` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutOutcome {
    /// Revoked at the server, then the cache was deleted.
    RevokedAndDeleted,
    /// The connector has no revocation endpoint; the cache was deleted.
    DeletedOnly,
    /// Nothing was cached.
    NotSignedIn,
}

/// What `logout` did, and whether the cache file had been readable by
/// others (its tokens must then be taken as seen by them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogoutReport {
    pub outcome: LogoutOutcome,
    pub exposed: bool,
}

/// Revokes the cached refresh token (or the access token when there is
/// none) at the revocation endpoint (RFC 7009), then deletes the cache. When
/// revocation fails the cache is kept, so that it can be retried. A cache
/// file that group or others could read is not refused here: its tokens are
/// ended at the server all the more, then the file is deleted, and the
/// report says it was exposed.
pub async fn logout(
    oauth: &dyn Authority,
    cache: &TokenCache,
) -> Result<LogoutReport, ConnectorError> {
    let _lock = cache.lock().await?;
    let Some(loaded) = cache.load_exposed()? else {
        return Ok(LogoutReport {
            outcome: LogoutOutcome::NotSignedIn,
            exposed: false,
        });
    };
    let s = oauth.settings();
    if loaded.token.token_url != s.token_url.as_str() || loaded.token.client_id != s.client_id {
        // Its tokens are not sent to this server: it is not theirs.
        return Err(ConnectorError::Config(format!(
            "the cached sign-in for `{}` was made with another authorization server or client ({}), so it is not sent to this one: revoke it in that app's admin console, then delete {}",
            s.connector,
            crate::sanitize::clean_max(&loaded.token.token_url, 200),
            cache.path().display()
        )));
    }
    let outcome = if oauth.can_revoke() {
        oauth.revoke(&loaded.token).await?;
        LogoutOutcome::RevokedAndDeleted
    } else {
        LogoutOutcome::DeletedOnly
    };
    cache.delete()?;
    tracing::info!(connector = %oauth.settings().connector, ?outcome, exposed = loaded.exposed, "signed out");
    Ok(LogoutReport {
        outcome,
        exposed: loaded.exposed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::oauth::{OAuth, OAuthSettings};

    fn request(redirect: &str) -> AuthRequest {
        let settings = OAuthSettings {
            connector: "app".into(),
            flow: Flow::AuthorizationCode,
            client_id: "client".into(),
            client_secret: None,
            client_key: None,
            client_cert_x5t: None,
            token_url: Url::parse("https://auth.example.com/token").unwrap(),
            authorize_url: Some(Url::parse("https://auth.example.com/authorize").unwrap()),
            device_url: None,
            revoke_url: None,
            scopes: vec![],
            account: "default".into(),
        };
        OAuth::new(settings, reqwest::Client::new())
            .unwrap()
            .authorize(redirect)
            .unwrap()
    }

    fn state_of(req: &AuthRequest) -> String {
        req.url
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into_owned()
    }

    async fn get(port: u16, target: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn loopback_ignores_redirects_without_this_sign_ins_state() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let req = request(&format!("http://127.0.0.1:{port}{CALLBACK_PATH}"));
        let state = state_of(&req);
        let wait = tokio::spawn(async move { wait_loopback(&listener, &req).await });
        // Forged: an error with no state, a code with a wrong state, a code
        // with no state. None of them ends or decides the sign-in.
        for forged in [
            "/callback?error=access_denied&error_description=forged",
            "/callback?code=attacker-code&state=wrong",
            "/callback?code=attacker-code",
            "/other?code=c&state=x",
        ] {
            let answer = get(port, forged).await;
            assert!(
                answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.1 404"),
                "{answer}"
            );
            assert!(!wait.is_finished(), "{forged} ended the sign-in");
        }
        let answer = get(port, &format!("/callback?code=real-code&state={state}")).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let code = wait.await.unwrap().unwrap();
        assert_eq!(code.expose(), "real-code");
    }

    #[test]
    fn pasted_redirect_checks_state_also_for_errors() {
        let req = request("http://127.0.0.1:1/callback");
        let state = state_of(&req);
        let e = parse_redirect(
            "http://127.0.0.1:1/callback?error=access_denied&state=other",
            &req,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("does not match"), "{e}");
        let e = parse_redirect(
            &format!("http://127.0.0.1:1/callback?error=access_denied&state={state}"),
            &req,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("access_denied"), "{e}");
        assert!(parse_redirect("https://elsewhere.example/?code=c&state=other", &req).is_err());
        let code = parse_redirect(&format!("/callback?code=c1&state={state}"), &req).unwrap();
        assert_eq!(code.expose(), "c1");
    }
}
