//! `offboard login`, `logout` and `doctor`. Nothing printed here holds a
//! token, a code verifier or a client secret.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{CmdResult, Failure, Global, LoginArgs, LogoutArgs};
use crate::apps::token_source;
use crate::auth::TokenSource;
use crate::auth::login::{
    self, CodeLogin, DeviceLogin, LoginOutcome, LogoutOutcome, LogoutReport, Replaced,
};
use crate::auth::oauth::Flow;
use crate::config::{self, Loaded};
use crate::connector::http::shared_reqwest;
use crate::connector::{BuildContext, ConnectorError, ResolvedConnector};

fn load(global: &Global) -> Result<Loaded, Failure> {
    let path = config::config_path(global.config.as_deref());
    Ok(config::load(&path)?)
}

fn find(loaded: &Loaded, app: &str) -> Result<ResolvedConnector, Failure> {
    let all = loaded.connectors()?;
    let known: Vec<String> = all.iter().map(|c| c.id.clone()).collect();
    all.into_iter().find(|c| c.id == app).ok_or_else(|| {
        Failure::usage(format!(
            "no enabled connector `{}` in {} (configured: {})",
            crate::sanitize::clean_max(app, 60),
            loaded.path.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))
    })
}

fn auth_failure(e: ConnectorError) -> Failure {
    match e {
        ConnectorError::Config(m) => Failure::usage(m),
        other => Failure {
            code: 3,
            message: other.to_string(),
        },
    }
}

/// Lines typed on stdin, read on a plain thread (a blocked read must not
/// hold the runtime open at exit).
fn stdin_lines() -> impl tokio::io::AsyncBufRead + Unpin {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<std::io::Result<bytes::Bytes>>();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        loop {
            line.clear();
            match stdin.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if tx.send(Ok(bytes::Bytes::from(line.clone()))).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    break;
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    tokio_util::io::StreamReader::new(Box::pin(stream))
}

fn print_outcome(o: &LoginOutcome) {
    println!("Signed in to `{}`.", o.connector);
    match &o.scopes {
        Some(s) if !s.is_empty() => println!("Granted scopes: {}", s.join(" ")),
        Some(_) => println!("Granted scopes: none"),
        None => println!("Granted scopes: not reported by the server"),
    }
    if let Some(d) = o.expires_in {
        let secs = d.as_secs();
        println!(
            "Access token valid for {}{}.",
            if secs < 120 {
                format!("{secs} s")
            } else {
                format!("{} min", secs / 60)
            },
            if o.has_refresh_token {
                "; it is renewed automatically"
            } else {
                ""
            }
        );
    }
    println!("Tokens cached in {} (mode 0600).", o.cache_path.display());
    match &o.replaced {
        None => {}
        Some(Replaced::Revoked) => {
            println!("The previous sign-in was revoked at the server before it was replaced.")
        }
        Some(Replaced::SameGrant) => {
            println!("The server renewed the previous sign-in; nothing to revoke.")
        }
        Some(Replaced::NotRevocable) => println!(
            "The previous sign-in was replaced; this app has no revocation endpoint, so its tokens stay valid until they expire."
        ),
        Some(Replaced::OtherServer) => println!(
            "The previous sign-in was for another authorization server or client: it was not revoked (its tokens are not sent elsewhere) and stays valid until it expires; revoke it in that app's admin console."
        ),
        Some(Replaced::RevokeFailed(why)) => eprintln!(
            "warning: the previous sign-in could not be revoked ({why}); it stays valid until it expires or is revoked in the app's admin console. The new sign-in is stored."
        ),
    }
}

pub async fn login(global: &Global, args: LoginArgs, data_dir: PathBuf) -> CmdResult {
    let loaded = load(global)?;
    let r = find(&loaded, &args.app)?;
    let flow = Flow::of(&r).map_err(auth_failure)?;
    let http = shared_reqwest();
    if !flow.is_interactive() {
        // Nothing to sign in to: check that a token can be obtained.
        let ctx = context(&data_dir);
        let ts = token_source(&r, &ctx).map_err(auth_failure)?;
        ts.token().await.map_err(auth_failure)?;
        println!(
            "`{}` uses the {} flow, which needs no interactive sign-in; a token was obtained.",
            r.id,
            flow.name()
        );
        return Ok(0);
    }
    let (oauth, cache) = crate::apps::sign_in(&r, http, &data_dir).map_err(auth_failure)?;
    let use_device = args.device || flow == Flow::DeviceCode;
    let outcome = if use_device {
        let device = DeviceLogin::start(oauth, cache)
            .await
            .map_err(auth_failure)?;
        let p = device.prompt();
        println!("To sign in to `{}`, open", p.connector);
        println!();
        println!("    {}", p.verification_uri);
        println!();
        println!("on any device and enter the code:  {}", p.user_code);
        if let Some(c) = &p.verification_uri_complete {
            println!();
            println!("(or open {c} , which has the code filled in)");
        }
        println!();
        println!(
            "Waiting for approval; the code expires in {} min.",
            p.expires_in.as_secs().div_ceil(60)
        );
        let _ = std::io::stdout().flush();
        device.finish().await.map_err(auth_failure)?
    } else {
        // A fixed loopback port for apps whose registered redirect URL
        // names one (`settings.redirect_port`, Slack).
        let port = r
            .manifest
            .settings
            .get("redirect_port")
            .and_then(|v| v.as_integer())
            .map(|p| {
                u16::try_from(p).map_err(|_| {
                    Failure::usage(format!(
                        "key `connectors.{}.settings.redirect_port`: expected a port (0 to 65535), found {p}",
                        r.id
                    ))
                })
            })
            .transpose()?
            .unwrap_or(0);
        let code = CodeLogin::start_on(oauth, cache, port)
            .await
            .map_err(auth_failure)?;
        let browser =
            !args.no_browser && login::browser_available() && login::open_browser(code.url());
        if browser {
            println!(
                "Your browser was opened to sign in to `{}`. If it did not open, visit:",
                r.id
            );
            println!();
            println!("    {}", code.url());
            println!();
            println!(
                "Waiting for the browser to come back to {} ...",
                code.redirect_uri()
            );
        } else {
            println!(
                "Open this URL in a browser on any machine to sign in to `{}`:",
                r.id
            );
            println!();
            println!("    {}", code.url());
            println!();
            println!(
                "After you approve, the browser goes to {} . If that page does not load (the browser is on another machine), copy the full address from the address bar and paste it here, then press Enter:",
                code.redirect_uri()
            );
        }
        let _ = std::io::stdout().flush();
        code.complete(Some(stdin_lines()))
            .await
            .map_err(auth_failure)?
    };
    print_outcome(&outcome);
    Ok(0)
}

pub async fn logout(global: &Global, args: LogoutArgs, data_dir: PathBuf) -> CmdResult {
    let loaded = load(global)?;
    let r = find(&loaded, &args.app)?;
    let flow = Flow::of(&r).map_err(auth_failure)?;
    if !flow.is_interactive() {
        println!(
            "`{}` uses the {} flow: nothing is cached, nothing to sign out of.",
            r.id,
            flow.name()
        );
        return Ok(0);
    }
    let exposed_note = |exposed: bool, path: &Path| {
        if exposed {
            eprintln!(
                "warning: the token cache {} could be read by group or others: whoever could read it may have copied the tokens. They were ended at the server first where the app allows it; review the app's sign-in log.",
                path.display()
            );
        }
    };
    let cache_path = crate::apps::sign_in(&r, shared_reqwest(), &data_dir)
        .map(|(_, c)| c.path().to_path_buf())
        .unwrap_or_default();
    match crate::apps::sign_out(&r, shared_reqwest(), &data_dir).await {
        Ok(LogoutReport {
            outcome: LogoutOutcome::RevokedAndDeleted,
            exposed,
        }) => {
            println!(
                "Signed out of `{}`: the token was revoked at the server and the cache deleted.",
                r.id
            );
            exposed_note(exposed, &cache_path);
            Ok(0)
        }
        Ok(LogoutReport {
            outcome: LogoutOutcome::DeletedOnly,
            exposed,
        }) => {
            println!(
                "Signed out of `{}`: the cache was deleted (this app has no revocation endpoint; the token stays valid until it expires).",
                r.id
            );
            exposed_note(exposed, &cache_path);
            Ok(0)
        }
        Ok(LogoutReport {
            outcome: LogoutOutcome::NotSignedIn,
            ..
        }) => {
            println!("Not signed in to `{}`; nothing to do.", r.id);
            Ok(0)
        }
        Err(e) => Err(Failure::other(format!(
            "{e}; the cached sign-in was kept so that logout can be retried"
        ))),
    }
}

fn context(data_dir: &Path) -> BuildContext {
    BuildContext {
        http: shared_reqwest(),
        notices: None,
        data_dir: data_dir.to_path_buf(),
    }
}

struct Report {
    failed: bool,
}

impl Report {
    fn line(&mut self, ok: Option<bool>, what: &str, detail: &str) {
        let tag = match ok {
            Some(true) => "ok  ",
            Some(false) => {
                self.failed = true;
                "FAIL"
            }
            None => "--  ",
        };
        println!("  [{tag}] {what:<12} {detail}");
    }
}

/// Scopes that ask for a sign-in, not for API access.
const SIGN_IN_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

pub async fn doctor(global: &Global, data_dir: PathBuf) -> CmdResult {
    let loaded = load(global)?;
    let connectors = loaded.connectors()?;
    if connectors.is_empty() {
        return Err(Failure::usage(format!(
            "no enabled connectors in {}",
            loaded.path.display()
        )));
    }
    let ctx = context(&data_dir);
    let mut report = Report { failed: false };
    for r in &connectors {
        let flow = Flow::of(r).map(|f| f.name()).unwrap_or("?");
        println!("{} ({}, {})", r.id, r.manifest.display_name, flow);
        check(r, &ctx, &mut report).await;
    }
    let _ = std::io::stdout().flush();
    Ok(if report.failed { 3 } else { 0 })
}

async fn check(r: &ResolvedConnector, ctx: &BuildContext, report: &mut Report) {
    let ts: Arc<dyn TokenSource> = match token_source(r, ctx) {
        Ok(t) => {
            report.line(Some(true), "credentials", "found");
            t
        }
        Err(e) => {
            report.line(Some(false), "credentials", &e.to_string());
            return;
        }
    };
    match ts.token().await {
        Ok(_) => report.line(Some(true), "token", "obtained"),
        Err(e) => {
            report.line(Some(false), "token", &e.to_string());
            if let Some(refused) = refused_delegation(r, ctx, &e).await {
                report.line(
                    Some(false),
                    "scopes",
                    &format!(
                        "not authorised for domain-wide delegation: {}",
                        refused.join(" ")
                    ),
                );
            }
            return;
        }
    }
    // Sign-in scopes (OpenID Connect's, and `offline_access` for a refresh
    // token) are not API permissions, and servers often leave them out of
    // the token answer's `scope`.
    let needed: Vec<String> = r
        .manifest
        .auth
        .scopes
        .iter()
        .filter(|s| !SIGN_IN_SCOPES.contains(&s.as_str()))
        .cloned()
        .collect();
    match ts.granted_scopes() {
        _ if needed.is_empty() => report.line(None, "scopes", "none needed by the manifest"),
        Some(granted) => {
            let missing: Vec<&str> = needed
                .iter()
                .filter(|n| !granted.iter().any(|g| g == *n))
                .map(String::as_str)
                .collect();
            if missing.is_empty() {
                report.line(
                    Some(true),
                    "scopes",
                    &format!("all {} granted", needed.len()),
                );
            } else {
                report.line(
                    Some(false),
                    "scopes",
                    &format!("missing: {}", missing.join(" ")),
                );
            }
        }
        None => report.line(
            None,
            "scopes",
            "not reported by the token endpoint (checked by the API call below)",
        ),
    }
    let conn = match crate::apps::build(r, ctx) {
        Ok(c) => c,
        Err(e) => {
            report.line(Some(false), "api", &e.to_string());
            return;
        }
    };
    match conn.probe().await {
        Ok(()) => report.line(Some(true), "api", "reachable"),
        Err(e) => report.line(Some(false), "api", &e.to_string()),
    }
    match conn.health().limit_info {
        Some(info) => report.line(
            Some(true),
            "rate limit",
            &crate::sanitize::clean_max(&info, 120),
        ),
        None => report.line(None, "rate limit", "not reported by this API"),
    }
}

/// Google refuses a JWT-bearer token for all scopes when one of them is
/// not authorised for domain-wide delegation (`unauthorized_client`), and
/// does not say which: ask for each scope alone to name them. None when the
/// failure is something else or every scope alone is granted.
async fn refused_delegation(
    r: &ResolvedConnector,
    ctx: &BuildContext,
    e: &ConnectorError,
) -> Option<Vec<String>> {
    let scopes = &r.manifest.auth.scopes;
    if Flow::of(r).ok() != Some(Flow::JwtBearer)
        || scopes.len() < 2
        || !matches!(e, ConnectorError::Auth(m) if m.contains("unauthorized_client"))
    {
        return None;
    }
    let mut refused = Vec::new();
    for scope in scopes {
        let mut one = r.clone();
        one.manifest.auth.scopes = vec![scope.clone()];
        let Ok(ts) = token_source(&one, ctx) else {
            return None;
        };
        match ts.token().await {
            Ok(_) => {}
            Err(ConnectorError::Auth(m)) if m.contains("unauthorized_client") => {
                refused.push(crate::sanitize::clean_max(scope, 200));
            }
            // Another failure says nothing about this scope.
            Err(_) => return None,
        }
    }
    (!refused.is_empty() && refused.len() < scopes.len()).then_some(refused)
}
