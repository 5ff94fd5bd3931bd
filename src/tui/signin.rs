//! `:login APP` inside the console: the real sign-in flows of
//! [`crate::auth::login`], with what the operator must do shown in a dialog
//! (device code: user code and verification URI; authorization code: the URL,
//! and a field to paste the redirected URL back when the browser runs on
//! another machine). Nothing shown or returned holds a token.

use std::path::PathBuf;

use chrono::Utc;
use tokio_util::io::StreamReader;

use crate::apps::token_source;
use crate::auth::login::{self, CodeLogin, DeviceLogin, LoginOutcome};
use crate::auth::oauth::Flow;
use crate::connector::{BuildContext, ResolvedConnector};
use crate::sanitize::clean;

use super::model::LoginPrompt;
use super::runtime::LoginIo;

/// The connectors the console can sign in to, and where tokens are cached.
pub struct SignIn {
    pub connectors: Vec<ResolvedConnector>,
    pub data_dir: PathBuf,
    pub http: reqwest::Client,
    /// Whether a local browser may be opened for the authorization URL.
    pub open_browser: bool,
}

impl SignIn {
    pub async fn run(&self, app: &str, io: LoginIo) -> Result<String, String> {
        let r = self
            .connectors
            .iter()
            .find(|c| c.id == app)
            .ok_or_else(|| {
                let known: Vec<&str> = self.connectors.iter().map(|c| c.id.as_str()).collect();
                format!(
                    "no connector `{}` (configured: {})",
                    crate::sanitize::clean_max(app, 60),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )
            })?;
        let flow = Flow::of(r).map_err(|e| e.to_string())?;
        if !flow.is_interactive() {
            // Nothing to sign in to: check that a token can be obtained.
            let ctx = BuildContext {
                http: self.http.clone(),
                notices: None,
                data_dir: self.data_dir.clone(),
            };
            let ts = token_source(r, &ctx).map_err(|e| e.to_string())?;
            ts.token().await.map_err(|e| e.to_string())?;
            return Ok(format!(
                "uses the {} flow, which needs no sign-in; a token was obtained",
                flow.name()
            ));
        }
        let (oauth, cache) = crate::apps::sign_in(r, self.http.clone(), &self.data_dir)
            .map_err(|e| e.to_string())?;
        let outcome = if flow == Flow::DeviceCode {
            let device = DeviceLogin::start(oauth, cache)
                .await
                .map_err(|e| e.to_string())?;
            let p = device.prompt();
            (io.prompt)(LoginPrompt::Device {
                user_code: clean(&p.user_code),
                verification_uri: clean(&p.verification_uri),
                verification_uri_complete: p.verification_uri_complete.as_deref().map(clean),
                expires_at: Utc::now()
                    + chrono::Duration::from_std(p.expires_in)
                        .unwrap_or(chrono::Duration::minutes(10)),
            });
            device.finish().await.map_err(|e| e.to_string())?
        } else {
            // A fixed loopback port for apps whose registered redirect URL
            // names one (`settings.redirect_port`, Slack).
            let port = match r.manifest.settings.get("redirect_port") {
                None => 0,
                Some(v) => v
                    .as_integer()
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| {
                        format!(
                            "key `connectors.{}.settings.redirect_port`: expected a port (0 to 65535)",
                            r.id
                        )
                    })?,
            };
            let code = CodeLogin::start_on(oauth, cache, port)
                .await
                .map_err(|e| e.to_string())?;
            let opened =
                self.open_browser && login::browser_available() && login::open_browser(code.url());
            (io.prompt)(LoginPrompt::Code {
                url: clean(code.url().as_str()),
                redirect_uri: clean(code.redirect_uri()),
                browser_opened: opened,
            });
            let lines = futures::stream::unfold(io.pasted, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|line| (Ok::<_, std::io::Error>(bytes::Bytes::from(line + "\n")), rx))
            });
            code.complete(Some(StreamReader::new(Box::pin(lines))))
                .await
                .map_err(|e| e.to_string())?
        };
        Ok(describe(&outcome))
    }
}

/// What to tell the operator after a sign-in (no secret).
pub fn describe(o: &LoginOutcome) -> String {
    let mut text = "signed in; tokens cached".to_string();
    if let Some(d) = o.expires_in {
        let secs = d.as_secs();
        text.push_str(&format!(
            ", access valid {}{}",
            if secs < 120 {
                format!("{secs} s")
            } else {
                format!("{} min", secs / 60)
            },
            if o.has_refresh_token {
                " and renewed automatically"
            } else {
                ""
            }
        ));
    }
    use crate::auth::login::Replaced;
    match &o.replaced {
        Some(Replaced::Revoked) => text.push_str("; the previous sign-in was revoked"),
        Some(Replaced::RevokeFailed(why)) => text.push_str(&format!(
            "; the previous sign-in could not be revoked ({why}) and stays valid until it expires"
        )),
        Some(Replaced::OtherServer) | Some(Replaced::NotRevocable) => {
            text.push_str("; the previous sign-in was not revoked and stays valid until it expires")
        }
        Some(Replaced::SameGrant) | None => {}
    }
    text
}
