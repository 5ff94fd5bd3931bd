//! GitHub Enterprise Cloud emulator: one organisation (`example-co`) of an
//! enterprise (`example`), at the REST paths of the GHEC description
//! (github-rest-ghec-offboarding-subset.json): org memberships and roles,
//! outside collaborators, repository collaborators, teams, SSO credential
//! authorizations, fine-grained PAT grants, invitations, codespaces,
//! Copilot seats, the audit log, app installations, the enterprise's
//! consumed licences (SAML identities), the org's and the enterprise's
//! SCIM, `/rate_limit`, and the GitHub App installation-token endpoint.
//!
//! Behaviour copied from GitHub (REFERENCE.md §6):
//! - `Authorization: Bearer` (or `token`) with an installation token, or
//!   the demo classic PAT; a GitHub App JWT (RS256, `iss` the app id, `exp`
//!   at most ten minutes after `iat`) only at `/app/…`. Bad credentials:
//!   401 `{"message":"Bad credentials"}`.
//! - Errors are `{message, documentation_url, status}`.
//! - Lists page with `per_page` (at most 100) and `page`, and say where the
//!   next page is in `Link` (`rel="next"`, `rel="last"`); SCIM pages with
//!   `startIndex`/`count`.
//! - Every answer carries `x-ratelimit-limit`, `-remaining`, `-used`,
//!   `-reset` (epoch seconds) and `-resource`; past the hour's limit the
//!   primary limit answers 403 (or 429, `settings.primary_status`) with
//!   `x-ratelimit-remaining: 0`; the secondary limit answers 403 with
//!   `retry-after`. `/rate_limit` is not counted.
//! - Fine-grained PAT grants are GitHub App only (403 for a PAT).
//! - A removed item stays listed for the consistency delay.
//! - Membership given through an enterprise team (`direct_membership:
//!   false`) cannot be removed in the org (422); neither can a Copilot seat
//!   given through a team (422). Removing a membership takes the user's
//!   teams, organisation roles and Copilot seat with it; the org's SCIM
//!   identity stays (a stale identity). SCIM `active: false` in the org
//!   removes the member and deletes the identity; at the enterprise (EMU)
//!   it suspends.
//!
//! Sandbox-only: `GET`/`PUT /_sandbox/github` (rate-limit window, forced
//! limits, token lifetime).

use std::collections::HashMap;

use axum::extract::{Path, Query, Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::driver::emu_login;
use crate::sandbox::Shared;
use crate::sandbox::tenant::{self, BenchShape, Scenario};

pub const ORG: &str = "example-co";
pub const ENTERPRISE: &str = "example";
/// The short code GitHub appends to the enterprise's managed logins.
pub const SHORTCODE: &str = "exco";
/// The demo GitHub App's id and its installation on the org.
pub const DEMO_APP_ID: &str = "424242";
pub const DEMO_INSTALLATION_ID: u64 = 7001;
/// The demo classic PAT (an org owner's): a demo value only the sandbox
/// accepts.
pub const DEMO_TOKEN: &str = "ghp_offboardDemoClassicTokenSandboxOnly00";
const DOCS: &str = "https://docs.github.com/enterprise-cloud@latest/rest";

/// Twin switches (`PUT /_sandbox/github`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Requests allowed per window and credential (GitHub: 5,000 an hour
    /// for an installation, 15,000 on Enterprise Cloud).
    pub rate_limit: u32,
    pub window_secs: u64,
    /// The primary limit's status: 403 (GitHub's usual) or 429.
    pub primary_status: u16,
    /// The next this many requests hit the primary limit whatever the count.
    pub force_primary: u32,
    /// The next this many requests hit the secondary limit (403 with
    /// `retry-after`).
    pub force_secondary: u32,
    pub secondary_retry_after_secs: u64,
    /// Lifetime of installation tokens (GitHub: an hour).
    pub token_lifetime_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            rate_limit: 15_000,
            window_secs: 3600,
            primary_status: 403,
            force_primary: 0,
            force_secondary: 0,
            secondary_retry_after_secs: 1,
            token_lifetime_secs: 3600,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Person {
    pub id: u64,
    pub login: String,
    pub name: String,
    pub saml_name_id: Option<String>,
    pub verified_emails: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub login: String,
    pub role: String,
    pub direct: bool,
    pub enterprise_teams: Vec<String>,
    pub removed_at: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct Held {
    pub login: String,
    /// Team role, repository permission, role assignment; or a team slug.
    pub what: String,
    pub removed_at: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct Team {
    pub id: u64,
    pub slug: String,
    pub name: String,
    pub members: Vec<Held>,
}

#[derive(Debug, Clone)]
pub struct Role {
    pub id: u64,
    pub name: String,
    pub description: String,
    /// `what`: "direct", or the team slug it is inherited from.
    pub users: Vec<Held>,
}

#[derive(Debug, Clone)]
pub struct Item {
    pub id: u64,
    pub login: String,
    /// Credential type, token name, codespace name, invitation email.
    pub what: String,
    pub extra: String,
    pub removed_at: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct Seat {
    pub login: String,
    pub team: Option<String>,
    pub cancelled: bool,
}

#[derive(Debug, Clone)]
pub struct ScimUser {
    pub id: String,
    pub user_name: String,
    pub emails: Vec<String>,
    pub given: String,
    pub family: String,
    pub active: bool,
    pub removed_at: Option<Instant>,
}

pub struct State {
    pub settings: Settings,
    pub people: Vec<Person>,
    pub members: Vec<Member>,
    pub outside: Vec<Held>,
    /// (repository, collaborator).
    pub collaborators: Vec<(String, Held)>,
    pub repos: Vec<String>,
    pub teams: Vec<Team>,
    pub roles: Vec<Role>,
    pub credentials: Vec<Item>,
    pub pats: Vec<Item>,
    pub invitations: Vec<Item>,
    pub codespaces: Vec<Item>,
    pub seats: Vec<Seat>,
    pub audit: Vec<(String, String, String)>,
    pub installations: Vec<(u64, String)>,
    pub scim: Vec<ScimUser>,
    pub emu_scim: Vec<ScimUser>,
    /// Installation tokens issued: token → expiry.
    pub tokens: HashMap<String, Instant>,
    /// Requests counted in the current window: (window start, count) per credential.
    windows: HashMap<String, (u64, u32)>,
    next: u64,
}

/// The login a demo person has (the enterprise's managed-user form).
pub fn login_of(email: &str) -> String {
    emu_login(email, SHORTCODE)
}

impl State {
    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn item(&mut self, login: &str, what: &str, extra: &str) -> Item {
        Item {
            id: self.id(),
            login: login.into(),
            what: what.into(),
            extra: extra.into(),
            removed_at: None,
        }
    }

    fn team(&mut self, slug: &str, name: &str) -> usize {
        let id = self.id();
        self.teams.push(Team {
            id,
            slug: slug.into(),
            name: name.into(),
            members: Vec::new(),
        });
        self.teams.len() - 1
    }

    fn join(&mut self, team: &str, login: &str, role: &str) {
        if let Some(t) = self.teams.iter_mut().find(|t| t.slug == team) {
            t.members.push(Held {
                login: login.into(),
                what: role.into(),
                removed_at: None,
            });
        }
    }

    fn collaborate(&mut self, repo: &str, login: &str, permission: &str) {
        self.collaborators.push((
            repo.into(),
            Held {
                login: login.into(),
                what: permission.into(),
                removed_at: None,
            },
        ));
    }

    fn member(&mut self, login: &str, role: &str) {
        self.members.push(Member {
            login: login.into(),
            role: role.into(),
            direct: true,
            enterprise_teams: Vec::new(),
            removed_at: None,
        });
    }

    fn identity(&mut self, user_name: &str, emails: &[&str], given: &str, family: &str) {
        let n = self.id();
        let u = ScimUser {
            id: format!("5c1d{n:04x}-9baa-11e6-9eb6-a431576d590e"),
            user_name: user_name.into(),
            emails: emails.iter().map(|e| e.to_string()).collect(),
            given: given.into(),
            family: family.into(),
            active: true,
            removed_at: None,
        };
        self.emu_scim.push(ScimUser {
            id: format!("7fce{n:04x}-d52e-4f76-b727-3955bd72c939"),
            ..u.clone()
        });
        self.scim.push(u);
    }

    /// The demo organisation: the leavers who use GitHub, every third
    /// person of the company, and the benchmark leaver when asked for.
    pub fn seed(bench: Option<&BenchShape>) -> State {
        let mut s = State {
            settings: Settings::default(),
            people: Vec::new(),
            members: Vec::new(),
            outside: Vec::new(),
            collaborators: Vec::new(),
            repos: [
                "website",
                "docs",
                "payments-api",
                "platform",
                "deploy-scripts",
            ]
            .map(String::from)
            .to_vec(),
            teams: Vec::new(),
            roles: Vec::new(),
            credentials: Vec::new(),
            pats: Vec::new(),
            invitations: Vec::new(),
            codespaces: Vec::new(),
            seats: Vec::new(),
            audit: Vec::new(),
            installations: vec![
                (31001, "dependabot-preview".into()),
                (31002, "marcus-deploy-bot".into()),
                (31003, "offboard".into()),
            ],
            scim: Vec::new(),
            emu_scim: Vec::new(),
            tokens: HashMap::new(),
            windows: HashMap::new(),
            next: 5_000_000,
        };
        for (slug, name) in [
            ("platform", "Platform"),
            ("infra", "Infrastructure"),
            ("security", "Security"),
            ("finance-eng", "Finance Engineering"),
            ("sales-eng", "Sales Engineering"),
            ("marketing-web", "Marketing Web"),
            ("website", "Website"),
            ("docs", "Docs"),
        ] {
            s.team(slug, name);
        }
        let sec = s.id();
        let read = s.id();
        s.roles.push(Role {
            id: sec,
            name: "security_manager".into(),
            description: "Manages security alerts and settings across the organisation".into(),
            users: Vec::new(),
        });
        s.roles.push(Role {
            id: read,
            name: "all_repo_read".into(),
            description: "Read access to every repository".into(),
            users: Vec::new(),
        });
        // The org's other owner (GitHub refuses to demote the last one).
        s.people.push(Person {
            id: 9_000_000,
            login: "octo-admin".into(),
            name: "Org Admin".into(),
            saml_name_id: Some("admin@example.com".into()),
            verified_emails: vec!["admin@example.com".into()],
        });
        s.member("octo-admin", "admin");
        for p in tenant::people() {
            let login = match p.scenario {
                Some(Scenario::Contractor) => "lena-k-dev".to_string(),
                Some(Scenario::DifferentEmail) => login_of("achen@example.com"),
                _ => login_of(&p.email),
            };
            if p.scenario == Some(Scenario::SlackOnlyContractor) {
                continue;
            }
            let name_id = match p.scenario {
                Some(Scenario::Contractor) => None,
                Some(Scenario::DifferentEmail) => Some("achen@example.com".to_string()),
                _ => Some(p.email.clone()),
            };
            let id = 9_000_000 + u64::from(p.n);
            s.people.push(Person {
                id,
                login: login.clone(),
                name: p.full_name(),
                verified_emails: name_id.iter().cloned().collect(),
                saml_name_id: name_id,
            });
            let Some(scenario) = p.scenario else {
                if p.n % 3 == 0 {
                    s.member(&login, "member");
                    s.identity(&p.email, &[&p.email], &p.first, &p.last);
                    if p.n % 9 == 0 {
                        s.join("platform", &login, "member");
                    }
                }
                continue;
            };
            match scenario {
                Scenario::Scheduled => {
                    s.member(&login, "member");
                    s.identity(&p.email, &[&p.email], &p.first, &p.last);
                    s.join("finance-eng", &login, "maintainer");
                    s.join("docs", &login, "member");
                    s.collaborate("payments-api", &login, "admin");
                    let c = s.item(&login, "personal access token", "laptop cli");
                    s.credentials.push(c);
                    let c = s.item(&login, "SSH key", "work laptop");
                    s.credentials.push(c);
                    s.seats.push(Seat {
                        login: login.clone(),
                        team: None,
                        cancelled: false,
                    });
                    let c = s.item(&login, "dana-payments-api-x7q9", "payments-api");
                    s.codespaces.push(c);
                }
                Scenario::UrgentTermination => {
                    s.member(&login, "admin");
                    s.identity(&p.email, &[&p.email], &p.first, &p.last);
                    s.join("platform", &login, "maintainer");
                    s.join("infra", &login, "member");
                    s.roles[0].users.push(Held {
                        login: login.clone(),
                        what: "direct".into(),
                        removed_at: None,
                    });
                    let c = s.item(&login, "personal access token", "deploy laptop");
                    s.credentials.push(c);
                    let c = s.item(&login, "OAuth app token", "release-notes-oauth");
                    s.credentials.push(c);
                    let t = s.item(&login, "release automation", "all");
                    s.pats.push(t);
                    let t = s.item(&login, "terraform state reader", "subset");
                    s.pats.push(t);
                    s.seats.push(Seat {
                        login: login.clone(),
                        team: None,
                        cancelled: false,
                    });
                    let c = s.item(&login, "marcus-platform-9k2a", "platform");
                    s.codespaces.push(c);
                    for (action, what) in [
                        ("repo.create", "deploy-scripts"),
                        ("integration_installation.create", "marcus-deploy-bot"),
                        ("org.oauth_app_access_approved", "release-notes-oauth"),
                        ("repo.create", "scratch-2024"),
                        ("repo.destroy", "scratch-2024"),
                    ] {
                        s.audit.push((login.clone(), action.into(), what.into()));
                    }
                }
                Scenario::Contractor => {
                    s.outside.push(Held {
                        login: login.clone(),
                        what: "outside".into(),
                        removed_at: None,
                    });
                    s.collaborate("website", &login, "push");
                    s.collaborate("docs", &login, "pull");
                    let i = s.item("", &p.email, "direct_member");
                    s.invitations.push(i);
                }
                Scenario::Mover => {
                    s.member(&login, "member");
                    s.identity(&p.email, &[&p.email], &p.first, &p.last);
                    s.join("sales-eng", &login, "member");
                    s.join("marketing-web", &login, "member");
                }
                Scenario::AlreadySuspended => {
                    s.member(&login, "member");
                    s.identity(&p.email, &[&p.email], &p.first, &p.last);
                    s.join("platform", &login, "member");
                    s.join("security", &login, "member");
                    s.roles[1].users.push(Held {
                        login: login.clone(),
                        what: "security".into(),
                        removed_at: None,
                    });
                    let c = s.item(&login, "SSH key", "old desktop");
                    s.credentials.push(c);
                    s.seats.push(Seat {
                        login: login.clone(),
                        team: Some("platform".into()),
                        cancelled: false,
                    });
                }
                Scenario::DifferentEmail => {
                    s.members.push(Member {
                        login: login.clone(),
                        role: "member".into(),
                        direct: false,
                        enterprise_teams: vec!["ent:engineering-all".into()],
                        removed_at: None,
                    });
                    s.identity(
                        "achen@example.com",
                        &["achen@example.com"],
                        &p.first,
                        &p.last,
                    );
                }
                Scenario::SlackOnlyContractor => {}
            }
        }
        // Other people's credentials and PATs, so the org-wide lists page.
        for n in 0..120u64 {
            let login = format!("someone-{n}_{SHORTCODE}");
            let c = s.item(&login, "personal access token", "ci");
            s.credentials.push(c);
            let t = s.item(&login, &format!("automation {n}"), "subset");
            s.pats.push(t);
        }
        if let Some(b) = bench {
            let login = login_of(&b.email);
            s.people.push(Person {
                id: 9_000_000 + u64::from(BenchShape::PERSON_N),
                login: login.clone(),
                name: "Bench Leaver".into(),
                saml_name_id: Some(b.email.clone()),
                verified_emails: vec![b.email.clone()],
            });
            s.member(&login, "member");
            s.identity(&b.email, &[&b.email], "Bench", "Leaver");
            for i in 0..b.gh_teams {
                let slug = format!("bench-team-{i}");
                s.team(&slug, &format!("Bench team {i}"));
                s.join(&slug, &login, "member");
            }
            for i in 0..b.gh_credentials {
                let c = s.item(&login, "personal access token", &format!("bench {i}"));
                s.credentials.push(c);
            }
        }
        s
    }

    pub fn member_idx(&self, login: &str) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.login.eq_ignore_ascii_case(login) && m.removed_at.is_none())
    }

    fn person(&self, login: &str) -> Option<&Person> {
        self.people
            .iter()
            .find(|p| p.login.eq_ignore_ascii_case(login))
    }

    /// What a member's removal takes with it: teams, roles, the seat.
    fn cascade(&mut self, login: &str, now: Instant) {
        for t in &mut self.teams {
            for m in &mut t.members {
                if m.login.eq_ignore_ascii_case(login) && m.removed_at.is_none() {
                    m.removed_at = Some(now);
                }
            }
        }
        for r in &mut self.roles {
            for u in &mut r.users {
                if u.login.eq_ignore_ascii_case(login) && u.removed_at.is_none() {
                    u.removed_at = Some(now);
                }
            }
        }
        self.seats.retain(|x| !x.login.eq_ignore_ascii_case(login));
    }
}

// ----- answers -------------------------------------------------------------

/// GitHub's error body.
pub fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({
            "message": message,
            "documentation_url": DOCS,
            "status": status.as_u16().to_string(),
        })),
    )
        .into_response()
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found")
}

fn unprocessable(message: &str) -> Response {
    error(StatusCode::UNPROCESSABLE_ENTITY, message)
}

fn listed(s: &Shared, removed_at: Option<Instant>) -> bool {
    s.still_listed(removed_at)
}

fn wrong_org(org: &str) -> bool {
    !org.eq_ignore_ascii_case(ORG)
}

#[derive(Deserialize)]
struct JwtClaims {
    iss: Value,
    iat: u64,
    exp: u64,
}

/// Who a request is: `app` (a valid app JWT), `installation:{token}` or
/// `pat`; None when the credential is not valid for the path.
fn credential(s: &Shared, auth: &str, path: &str) -> Option<String> {
    let t = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
        .or_else(|| auth.strip_prefix("token "))?
        .trim();
    if path.starts_with("/app/") {
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(super::DEMO_PUBLIC_KEY.as_bytes())
            .expect("the demo public key parses");
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.validate_aud = false;
        v.leeway = 60;
        v.set_required_spec_claims(&["exp", "iss"]);
        let c = jsonwebtoken::decode::<JwtClaims>(t, &key, &v).ok()?.claims;
        let iss = match &c.iss {
            Value::String(x) => x.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        // GitHub refuses a JWT living more than ten minutes, or issued
        // in the future.
        if iss != DEMO_APP_ID || c.exp > c.iat + 600 || c.iat > now + 60 {
            return None;
        }
        return Some("app".into());
    }
    if t == DEMO_TOKEN {
        return Some("pat".into());
    }
    let st = s.github.lock().expect("github lock");
    st.tokens
        .get(t)
        .filter(|exp| **exp > Instant::now())
        .map(|_| format!("installation:{}", &t[..t.len().min(12)]))
}

/// Credentials, the rate-limit window and its headers on every answer.
async fn gate(AxState(s): AxState<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if crate::apps::dialect(&path).is_none_or(|d| d.name != "github") {
        return next.run(req).await;
    }
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let Some(who) = credential(&s, &auth, &path) else {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    };
    if who.starts_with("installation:")
        && (path.starts_with("/enterprises/") || path.starts_with("/scim/v2/enterprises/"))
    {
        // An app installed on an org cannot read its enterprise.
        return error(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
        );
    }
    if who == "pat" && path.ends_with("/personal-access-tokens") {
        return error(
            StatusCode::FORBIDDEN,
            "Resource not accessible by personal access token",
        );
    }
    let counted = path != "/rate_limit" && who != "app";
    let (limit, used, reset, primary, secondary, retry, primary_status) = {
        let mut st = s.github.lock().expect("github lock");
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let w = st.settings.window_secs.max(1);
        let start = now - now % w;
        let limit = st.settings.rate_limit;
        let forced_primary = counted && st.settings.force_primary > 0;
        if forced_primary {
            st.settings.force_primary -= 1;
        }
        let secondary = counted && !forced_primary && st.settings.force_secondary > 0;
        if secondary {
            st.settings.force_secondary -= 1;
        }
        let retry = st.settings.secondary_retry_after_secs;
        let primary_status = st.settings.primary_status;
        let entry = st.windows.entry(who.clone()).or_insert((start, 0));
        if entry.0 != start {
            *entry = (start, 0);
        }
        let primary = forced_primary || (counted && entry.1 >= limit);
        if counted && !primary && !secondary {
            entry.1 += 1;
        }
        let used = if forced_primary {
            limit
        } else {
            entry.1.min(limit)
        };
        (
            limit,
            used,
            start + w,
            primary,
            secondary,
            retry,
            primary_status,
        )
    };
    let mut resp = if primary {
        error(
            StatusCode::from_u16(primary_status).unwrap_or(StatusCode::FORBIDDEN),
            "API rate limit exceeded for installation. If you reach out to GitHub Support for help, please include the request ID.",
        )
    } else if secondary {
        crate::sandbox::with_retry_after(
            error(
                StatusCode::FORBIDDEN,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            ),
            retry,
        )
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    for (k, v) in [
        ("x-ratelimit-limit", limit.to_string()),
        ("x-ratelimit-remaining", (limit - used).to_string()),
        ("x-ratelimit-used", used.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
        ("x-ratelimit-resource", "core".to_string()),
        (
            "x-github-api-version-selected",
            super::driver::API_VERSION.to_string(),
        ),
    ] {
        h.insert(k, HeaderValue::from_str(&v).expect("ascii"));
    }
    resp
}

pub fn routes(state: &Shared) -> Router<Shared> {
    Router::new()
        .route("/app/installations/{id}/access_tokens", post(access_token))
        .route("/rate_limit", get(rate_limit))
        .route("/users/{user}", get(get_user))
        .route("/orgs/{org}", get(get_org))
        .route("/orgs/{org}/members", get(list_members))
        .route(
            "/orgs/{org}/members/{user}",
            get(check_member).delete(remove_member),
        )
        .route(
            "/orgs/{org}/memberships/{user}",
            get(get_membership)
                .put(set_membership)
                .delete(remove_member),
        )
        .route("/orgs/{org}/outside_collaborators", get(list_outside))
        .route(
            "/orgs/{org}/outside_collaborators/{user}",
            delete(remove_outside),
        )
        .route(
            "/repos/{owner}/{repo}/collaborators",
            get(list_collaborators),
        )
        .route(
            "/repos/{owner}/{repo}/collaborators/{user}",
            get(check_collaborator).delete(remove_collaborator),
        )
        .route("/orgs/{org}/teams", get(list_teams))
        .route("/orgs/{org}/teams/{team}/members", get(team_members))
        .route(
            "/orgs/{org}/teams/{team}/memberships/{user}",
            get(get_team_membership).delete(remove_team_membership),
        )
        .route("/orgs/{org}/organization-roles", get(list_roles))
        .route(
            "/orgs/{org}/organization-roles/{role}/users",
            get(role_users),
        )
        .route(
            "/orgs/{org}/organization-roles/users/{user}",
            delete(remove_all_roles),
        )
        .route(
            "/orgs/{org}/organization-roles/users/{user}/{role}",
            delete(remove_role),
        )
        .route(
            "/orgs/{org}/credential-authorizations",
            get(list_credentials),
        )
        .route(
            "/orgs/{org}/credential-authorizations/{id}",
            delete(remove_credential),
        )
        .route(
            "/orgs/{org}/personal-access-tokens",
            get(list_pats).post(update_pats),
        )
        .route("/orgs/{org}/invitations", get(list_invitations))
        .route("/orgs/{org}/invitations/{id}", delete(cancel_invitation))
        .route(
            "/orgs/{org}/members/{user}/codespaces",
            get(list_codespaces),
        )
        .route(
            "/orgs/{org}/members/{user}/codespaces/{name}",
            delete(delete_codespace),
        )
        .route("/orgs/{org}/members/{user}/copilot", get(get_seat))
        .route("/orgs/{org}/copilot/billing/seats", get(list_seats))
        .route(
            "/orgs/{org}/copilot/billing/selected_users",
            delete(cancel_seats),
        )
        .route("/orgs/{org}/audit-log", get(audit_log))
        .route("/orgs/{org}/installations", get(list_installations))
        .route(
            "/enterprises/{ent}/consumed-licenses",
            get(consumed_licenses),
        )
        .route("/scim/v2/organizations/{org}/Users", get(scim_list_org))
        .route(
            "/scim/v2/organizations/{org}/Users/{id}",
            get(scim_get_org)
                .patch(scim_patch_org)
                .delete(scim_delete_org),
        )
        .route("/scim/v2/enterprises/{ent}/Users", get(scim_list_ent))
        .route(
            "/scim/v2/enterprises/{ent}/Users/{id}",
            get(scim_get_ent)
                .patch(scim_patch_ent)
                .delete(scim_delete_ent),
        )
        .route("/_sandbox/github", get(get_settings).put(put_settings))
        .layer(middleware::from_fn_with_state(state.clone(), gate))
}

// ----- paging --------------------------------------------------------------

#[derive(Deserialize, Default)]
struct PageQuery {
    per_page: Option<usize>,
    page: Option<usize>,
    login: Option<String>,
    phrase: Option<String>,
}

/// The query pairs of a request, for the `Link` header's URLs.
fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .filter(|(k, _)| k != "page" && k != "per_page")
        .collect()
}

/// One page of `items`, with GitHub's `Link` (`next`, `last`, `prev`,
/// `first`). `field`: the array's name inside an object answer.
fn page(
    s: &Shared,
    uri: &axum::http::Uri,
    q: &PageQuery,
    items: Vec<Value>,
    field: Option<(&str, Value)>,
) -> Response {
    let per = q.per_page.unwrap_or(30).clamp(1, 100);
    let pageno = q.page.unwrap_or(1).max(1);
    let last = items.len().div_ceil(per).max(1);
    let chunk: Vec<Value> = items
        .iter()
        .skip((pageno - 1) * per)
        .take(per)
        .cloned()
        .collect();
    let extra = pairs(uri.query());
    let link = |n: usize| {
        let mut u = url::Url::parse(&format!("{}{}", s.base_url, uri.path())).expect("base url");
        {
            let mut qp = u.query_pairs_mut();
            for (k, v) in &extra {
                qp.append_pair(k, v);
            }
            qp.append_pair("per_page", &per.to_string());
            qp.append_pair("page", &n.to_string());
        }
        u.to_string()
    };
    let mut rels = Vec::new();
    if pageno < last {
        rels.push(format!("<{}>; rel=\"next\"", link(pageno + 1)));
        rels.push(format!("<{}>; rel=\"last\"", link(last)));
    }
    if pageno > 1 {
        rels.push(format!("<{}>; rel=\"prev\"", link(pageno - 1)));
        rels.push(format!("<{}>; rel=\"first\"", link(1)));
    }
    let body = match field {
        None => Value::Array(chunk),
        Some((name, Value::Object(mut o))) => {
            o.insert(name.into(), Value::Array(chunk));
            Value::Object(o)
        }
        Some((name, _)) => json!({ name: chunk }),
    };
    let mut resp = Json(body).into_response();
    if !rels.is_empty() {
        resp.headers_mut().insert(
            "link",
            HeaderValue::from_str(&rels.join(", ")).expect("ascii"),
        );
    }
    resp
}

fn simple_user(s: &Shared, st: &State, login: &str) -> Value {
    let id = st.person(login).map_or(1, |p| p.id);
    json!({
        "login": login,
        "id": id,
        "node_id": format!("MDQ6VXNlcj{id}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}"),
        "url": format!("{}/users/{login}", s.base_url),
        "html_url": format!("https://github.com/{login}"),
        "type": "User",
        "site_admin": false,
    })
}

// ----- sign-in and limits --------------------------------------------------

async fn access_token(AxState(s): AxState<Shared>, Path(id): Path<String>) -> Response {
    if id != DEMO_INSTALLATION_ID.to_string() {
        return not_found();
    }
    let token = format!("ghs_{}", hex::encode(rand::random::<[u8; 18]>()));
    let lifetime = {
        let mut st = s.github.lock().expect("github lock");
        let secs = st.settings.token_lifetime_secs.max(1);
        st.tokens.insert(
            token.clone(),
            Instant::now() + std::time::Duration::from_secs(secs),
        );
        secs
    };
    let expires = chrono::Utc::now() + chrono::Duration::seconds(lifetime as i64);
    (
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "expires_at": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "permissions": {
                "members": "write",
                "organization_administration": "write",
                "organization_personal_access_tokens": "write",
                "organization_copilot_seat_management": "write",
                "organization_codespaces": "write",
                "administration": "write",
            },
            "repository_selection": "all",
        })),
    )
        .into_response()
}

/// `/rate_limit` (not counted): the window of the caller, as the gate
/// counts it.
async fn rate_limit(AxState(s): AxState<Shared>, headers: HeaderMap) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let who = credential(&s, auth, "/rate_limit").unwrap_or_default();
    let st = s.github.lock().expect("github lock");
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let w = st.settings.window_secs.max(1);
    let start = now - now % w;
    let limit = st.settings.rate_limit;
    let used = st
        .windows
        .get(&who)
        .filter(|(ws, _)| *ws == start)
        .map_or(0, |(_, n)| (*n).min(limit));
    let window =
        json!({"limit": limit, "used": used, "remaining": limit - used, "reset": start + w});
    Json(json!({
        "resources": {"core": window, "search": window, "graphql": window, "scim": window},
        "rate": window,
    }))
    .into_response()
}

async fn get_user(AxState(s): AxState<Shared>, Path(user): Path<String>) -> Response {
    let st = s.github.lock().expect("github lock");
    match st.person(&user) {
        Some(p) => {
            let mut v = simple_user(&s, &st, &p.login);
            v["name"] = json!(p.name);
            // Public profile fields: offboard never maps people by them.
            v["email"] = Value::Null;
            v["company"] = Value::Null;
            v["created_at"] = json!("2021-04-01T09:00:00Z");
            Json(v).into_response()
        }
        None => not_found(),
    }
}

async fn get_org(AxState(s): AxState<Shared>, Path(org): Path<String>) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    let base = &s.base_url;
    Json(json!({
        "login": ORG,
        "id": 7_000_001,
        "node_id": "MDEyOk9yZ2FuaXphdGlvbjcwMDAwMDE=",
        "url": format!("{base}/orgs/{ORG}"),
        "members_url": format!("{base}/orgs/{ORG}/members{{/member}}"),
        "name": "Example Co",
        "type": "Organization",
        "plan": {"name": "enterprise", "seats": 500, "filled_seats": 120},
        "two_factor_requirement_enabled": true,
        "created_at": "2019-03-01T09:00:00Z",
        "updated_at": "2026-11-01T09:00:00Z",
    }))
    .into_response()
}

async fn get_settings(AxState(s): AxState<Shared>) -> Json<Settings> {
    Json(s.github.lock().expect("github lock").settings.clone())
}

async fn put_settings(AxState(s): AxState<Shared>, Json(v): Json<Settings>) -> Json<Settings> {
    s.github.lock().expect("github lock").settings = v.clone();
    Json(v)
}

// ----- members -------------------------------------------------------------

async fn list_members(
    AxState(s): AxState<Shared>,
    Path(org): Path<String>,
    uri: axum::http::Uri,
    Query(q): Query<PageQuery>,
) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    let role = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "role")
        .map(|(_, v)| v.into_owned());
    let st = s.github.lock().expect("github lock");
    let items = st
        .members
        .iter()
        .filter(|m| listed(&s, m.removed_at))
        .filter(|m| role.as_deref().is_none_or(|r| r == "all" || r == m.role))
        .map(|m| simple_user(&s, &st, &m.login))
        .collect();
    page(&s, &uri, &q, items, None)
}

async fn check_member(
    AxState(s): AxState<Shared>,
    Path((org, user)): Path<(String, String)>,
) -> Response {
    let st = s.github.lock().expect("github lock");
    if !wrong_org(&org)
        && st
            .members
            .iter()
            .any(|m| m.login.eq_ignore_ascii_case(&user) && listed(&s, m.removed_at))
    {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found()
    }
}

fn membership_json(s: &Shared, st: &State, m: &Member) -> Value {
    let base = &s.base_url;
    json!({
        "url": format!("{base}/orgs/{ORG}/memberships/{}", m.login),
        "state": "active",
        "role": m.role,
        "direct_membership": m.direct,
        "enterprise_teams_providing_indirect_membership": m.enterprise_teams,
        "organization_url": format!("{base}/orgs/{ORG}"),
        "organization": {"login": ORG, "id": 7_000_001, "url": format!("{base}/orgs/{ORG}")},
        "user": simple_user(s, st, &m.login),
        "permissions": {"can_create_repository": true},
    })
}

async fn get_membership(
    AxState(s): AxState<Shared>,
    Path((org, user)): Path<(String, String)>,
) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    let st = s.github.lock().expect("github lock");
    match st
        .members
        .iter()
        .rev()
        .find(|m| m.login.eq_ignore_ascii_case(&user) && listed(&s, m.removed_at))
    {
        Some(m) => Json(membership_json(&s, &st, m)).into_response(),
        None => not_found(),
    }
}

#[derive(Deserialize)]
struct SetMembership {
    role: Option<String>,
}

async fn set_membership(
    AxState(s): AxState<Shared>,
    Path((org, user)): Path<(String, String)>,
    Json(body): Json<SetMembership>,
) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    let role = body.role.unwrap_or_else(|| "member".into());
    if role != "admin" && role != "member" {
        return unprocessable("Validation Failed: role must be admin or member");
    }
    let mut st = s.github.lock().expect("github lock");
    let Some(i) = st.member_idx(&user) else {
        // GitHub invites a non-member; the sandbox does not.
        return unprocessable("Validation Failed: the sandbox invites nobody");
    };
    if role == "member"
        && st.members[i].role == "admin"
        && st
            .members
            .iter()
            .filter(|m| m.role == "admin" && m.removed_at.is_none())
            .count()
            <= 1
    {
        return unprocessable("You cannot demote the last owner of an organization.");
    }
    // A demotion is seen at once by the member's own reads; listings of
    // owners catch up after the delay (not modelled).
    st.members[i].role = role;
    let m = st.members[i].clone();
    Json(membership_json(&s, &st, &m)).into_response()
}

async fn remove_member(
    AxState(s): AxState<Shared>,
    Path((org, user)): Path<(String, String)>,
) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    let mut st = s.github.lock().expect("github lock");
    let Some(i) = st.member_idx(&user) else {
        return not_found();
    };
    if !st.members[i].direct {
        return unprocessable(&format!(
            "Cannot remove {user}: their membership is granted through enterprise teams ({}). Remove them from those teams in the enterprise.",
            st.members[i].enterprise_teams.join(", ")
        ));
    }
    let now = Instant::now();
    let login = st.members[i].login.clone();
    st.members[i].removed_at = Some(now);
    if !st.members[i].enterprise_teams.is_empty() {
        // The direct membership goes; the enterprise team's stays.
        let mut m = st.members[i].clone();
        m.direct = false;
        m.removed_at = None;
        st.members.push(m);
    } else {
        st.cascade(&login, now);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn list_outside(
    AxState(s): AxState<Shared>,
    Path(org): Path<String>,
    uri: axum::http::Uri,
    Query(q): Query<PageQuery>,
) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    let st = s.github.lock().expect("github lock");
    let items = st
        .outside
        .iter()
        .filter(|o| listed(&s, o.removed_at))
        .map(|o| simple_user(&s, &st, &o.login))
        .collect();
    page(&s, &uri, &q, items, None)
}

async fn remove_outside(
    AxState(s): AxState<Shared>,
    Path((org, user)): Path<(String, String)>,
) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    let mut st = s.github.lock().expect("github lock");
    let now = Instant::now();
    let Some(o) = st
        .outside
        .iter_mut()
        .find(|o| o.login.eq_ignore_ascii_case(&user) && o.removed_at.is_none())
    else {
        if st.member_idx(&user).is_some() {
            return unprocessable(
                "You cannot specify an organization member to remove as an outside collaborator.",
            );
        }
        return not_found();
    };
    o.removed_at = Some(now);
    for (_, c) in &mut st.collaborators {
        if c.login.eq_ignore_ascii_case(&user) && c.removed_at.is_none() {
            c.removed_at = Some(now);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

// ----- repositories ----------------------------------------------------------

fn repo_known(st: &State, owner: &str, repo: &str) -> bool {
    !wrong_org(owner) && st.repos.iter().any(|r| r.eq_ignore_ascii_case(repo))
}

async fn list_collaborators(
    AxState(s): AxState<Shared>,
    Path((owner, repo)): Path<(String, String)>,
    uri: axum::http::Uri,
    Query(q): Query<PageQuery>,
) -> Response {
    let st = s.github.lock().expect("github lock");
    if !repo_known(&st, &owner, &repo) {
        return not_found();
    }
    let items = st
        .collaborators
        .iter()
        .filter(|(r, c)| r.eq_ignore_ascii_case(&repo) && listed(&s, c.removed_at))
        .map(|(_, c)| {
            let mut u = simple_user(&s, &st, &c.login);
            u["role_name"] = json!(c.what);
            u["permissions"] =
                json!({"admin": c.what == "admin", "push": c.what != "pull", "pull": true});
            u
        })
        .collect();
    page(&s, &uri, &q, items, None)
}

async fn check_collaborator(
    AxState(s): AxState<Shared>,
    Path((owner, repo, user)): Path<(String, String, String)>,
) -> Response {
    let st = s.github.lock().expect("github lock");
    if !repo_known(&st, &owner, &repo) {
        return not_found();
    }
    if st.collaborators.iter().any(|(r, c)| {
        r.eq_ignore_ascii_case(&repo)
            && c.login.eq_ignore_ascii_case(&user)
            && listed(&s, c.removed_at)
    }) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found()
    }
}

async fn remove_collaborator(
    AxState(s): AxState<Shared>,
    Path((owner, repo, user)): Path<(String, String, String)>,
) -> Response {
    let mut st = s.github.lock().expect("github lock");
    if !repo_known(&st, &owner, &repo) {
        return not_found();
    }
    let now = Instant::now();
    for (r, c) in &mut st.collaborators {
        if r.eq_ignore_ascii_case(&repo)
            && c.login.eq_ignore_ascii_case(&user)
            && c.removed_at.is_none()
        {
            c.removed_at = Some(now);
        }
    }
    // GitHub answers 204 whether or not they were a collaborator.
    StatusCode::NO_CONTENT.into_response()
}

// ----- teams and roles -------------------------------------------------------

fn team_json(s: &Shared, t: &Team) -> Value {
    json!({
        "id": t.id,
        "node_id": format!("MDQ6VGVhbT{}", t.id),
        "url": format!("{}/orgs/{ORG}/teams/{}", s.base_url, t.slug),
        "html_url": format!("https://github.com/orgs/{ORG}/teams/{}", t.slug),
        "name": t.name,
        "slug": t.slug,
        "description": null,
        "privacy": "closed",
        "notification_setting": "notifications_enabled",
        "permission": "pull",
        "members_url": format!("{}/orgs/{ORG}/teams/{}/members{{/member}}", s.base_url, t.slug),
        "repositories_url": format!("{}/orgs/{ORG}/teams/{}/repos", s.base_url, t.slug),
        "parent": null,
    })
}

async fn list_teams(
    AxState(s): AxState<Shared>,
    Path(org): Path<String>,
    uri: axum::http::Uri,
    Query(q): Query<PageQuery>,
) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    let st = s.github.lock().expect("github lock");
    let items = st.teams.iter().map(|t| team_json(&s, t)).collect();
    page(&s, &uri, &q, items, None)
}

async fn team_members(
    AxState(s): AxState<Shared>,
    Path((org, team)): Path<(String, String)>,
    uri: axum::http::Uri,
    Query(q): Query<PageQuery>,
) -> Response {
    let st = s.github.lock().expect("github lock");
    let Some(t) = st.teams.iter().find(|t| !wrong_org(&org) && t.slug == team) else {
        return not_found();
    };
    let items = t
        .members
        .iter()
        .filter(|m| listed(&s, m.removed_at))
        .map(|m| simple_user(&s, &st, &m.login))
        .collect();
    page(&s, &uri, &q, items, None)
}

async fn get_team_membership(
    AxState(s): AxState<Shared>,
    Path((org, team, user)): Path<(String, String, String)>,
) -> Response {
    let st = s.github.lock().expect("github lock");
    let Some(t) = st.teams.iter().find(|t| !wrong_org(&org) && t.slug == team) else {
        return not_found();
    };
    match t
        .members
        .iter()
        .find(|m| m.login.eq_ignore_ascii_case(&user) && listed(&s, m.removed_at))
    {
        Some(m) => Json(json!({
            "url": format!("{}/organizations/7000001/team/{}/memberships/{user}", s.base_url, t.id),
            "role": m.what,
            "state": "active",
        }))
        .into_response(),
        None => not_found(),
    }
}

async fn remove_team_membership(
    AxState(s): AxState<Shared>,
    Path((org, team, user)): Path<(String, String, String)>,
) -> Response {
    let mut st = s.github.lock().expect("github lock");
    let Some(t) = st
        .teams
        .iter_mut()
        .find(|t| !wrong_org(&org) && t.slug == team)
    else {
        return not_found();
    };
    let now = Instant::now();
    let mut any = false;
    for m in &mut t.members {
        if m.login.eq_ignore_ascii_case(&user) && m.removed_at.is_none() {
            m.removed_at = Some(now);
            any = true;
        }
    }
    if !any {
        return not_found();
    }
    // What the team gave goes with it: inherited roles, its Copilot seats.
    for r in &mut st.roles {
        for u in &mut r.users {
            if u.login.eq_ignore_ascii_case(&user) && u.what == team && u.removed_at.is_none() {
                u.removed_at = Some(now);
            }
        }
    }
    st.seats
        .retain(|x| !(x.login.eq_ignore_ascii_case(&user) && x.team.as_deref() == Some(&team)));
    StatusCode::NO_CONTENT.into_response()
}

async fn list_roles(AxState(s): AxState<Shared>, Path(org): Path<String>) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    let st = s.github.lock().expect("github lock");
    let roles: Vec<Value> = st
        .roles
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "name": r.name, "description": r.description,
                "permissions": [], "source": "Organization", "base_role": null,
                "organization": {"login": ORG},
                "created_at": "2025-01-10T10:00:00Z", "updated_at": "2025-01-10T10:00:00Z",
            })
        })
        .collect();
    Json(json!({"total_count": roles.len(), "roles": roles})).into_response()
}

async fn role_users(
    AxState(s): AxState<Shared>,
    Path((org, role)): Path<(String, String)>,
    uri: axum::http::Uri,
    Query(q): Query<PageQuery>,
) -> Response {
    let st = s.github.lock().expect("github lock");
    let Some(r) = st
        .roles
        .iter()
        .find(|r| !wrong_org(&org) && r.id.to_string() == role)
    else {
        return not_found();
    };
    let items = r
        .users
        .iter()
        .filter(|u| listed(&s, u.removed_at))
        .map(|u| {
            let mut v = simple_user(&s, &st, &u.login);
            if u.what == "direct" {
                v["assignment"] = json!("direct");
                v["inherited_from"] = json!([]);
            } else {
                v["assignment"] = json!("indirect");
                v["inherited_from"] = json!([{"slug": u.what, "name": u.what}]);
            }
            v
        })
        .collect();
    page(&s, &uri, &q, items, None)
}

fn revoke_roles(s: &Shared, user: &str, role: Option<&str>) -> Response {
    let mut st = s.github.lock().expect("github lock");
    let now = Instant::now();
    for r in &mut st.roles {
        if role.is_some_and(|x| r.id.to_string() != x) {
            continue;
        }
        for u in &mut r.users {
            // Only direct assignments: an inherited one stays with its team.
            if u.login.eq_ignore_ascii_case(user) && u.what == "direct" && u.removed_at.is_none() {
                u.removed_at = Some(now);
            }
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn remove_all_roles(
    AxState(s): AxState<Shared>,
    Path((org, user)): Path<(String, String)>,
) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    revoke_roles(&s, &user, None)
}

async fn remove_role(
    AxState(s): AxState<Shared>,
    Path((org, user, role)): Path<(String, String, String)>,
) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    revoke_roles(&s, &user, Some(&role))
}

// ----- credentials, PATs, invitations, codespaces, seats ---------------------

async fn list_credentials(
    AxState(s): AxState<Shared>,
    Path(org): Path<String>,
    uri: axum::http::Uri,
    Query(q): Query<PageQuery>,
) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    let st = s.github.lock().expect("github lock");
    let items = st
        .credentials
        .iter()
        .filter(|c| listed(&s, c.removed_at))
        .filter(|c| {
            q.login
                .as_deref()
                .is_none_or(|l| c.login.eq_ignore_ascii_case(l))
        })
        .map(|c| {
            let ssh = c.what == "SSH key";
            let mut v = json!({
                "login": c.login,
                "credential_id": c.id,
                "credential_type": c.what,
                "credential_authorized_at": "2026-03-02T09:00:00Z",
                "credential_accessed_at": "2026-11-29T17:40:00Z",
                "authorized_credential_id": c.id + 10_000_000,
                "authorized_credential_expires_at": null,
            });
            if ssh {
                v["fingerprint"] = json!(format!("SHA256:{:x}", c.id * 7919));
                v["authorized_credential_title"] = json!(c.extra);
            } else {
                v["token_last_eight"] = json!(
                    format!("{:08x}", c.id * 31)
                        .chars()
                        .rev()
                        .take(8)
                        .collect::<String>()
                );
                v["scopes"] = json!(["repo", "read:org"]);
                v["authorized_credential_note"] = json!(c.extra);
            }
            v
        })
        .collect();
    page(&s, &uri, &q, items, None)
}

async fn remove_credential(
    AxState(s): AxState<Shared>,
    Path((org, id)): Path<(String, String)>,
) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    let mut st = s.github.lock().expect("github lock");
    if mark_removed(&mut st.credentials, |c| c.id.to_string() == id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found()
    }
}

async fn list_pats(
    AxState(s): AxState<Shared>,
    Path(org): Path<String>,
    uri: axum::http::Uri,
    Query(q): Query<PageQuery>,
) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    let owners: Vec<String> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .filter(|(k, _)| k == "owner[]" || k == "owner")
        .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
        .collect();
    let st = s.github.lock().expect("github lock");
    let items = st
        .pats
        .iter()
        .filter(|p| listed(&s, p.removed_at))
        .filter(|p| owners.is_empty() || owners.iter().any(|o| o.eq_ignore_ascii_case(&p.login)))
        .map(|p| {
            json!({
                "id": p.id,
                "owner": simple_user(&s, &st, &p.login),
                "repository_selection": p.extra,
                "repositories_url": format!("{}/organizations/7000001/personal-access-tokens/{}/repositories", s.base_url, p.id),
                "permissions": {"organization": {"members": "read"}, "repository": {"contents": "write", "metadata": "read"}},
                "access_granted_at": "2026-05-04T08:00:00Z",
                "token_id": p.id + 20_000_000,
                "token_name": p.what,
                "token_expired": false,
                "token_expires_at": "2027-05-04T08:00:00Z",
                "token_last_used_at": "2026-11-30T07:55:00Z",
            })
        })
        .collect();
    page(&s, &uri, &q, items, None)
}

#[derive(Deserialize)]
struct PatUpdate {
    action: String,
    pat_ids: Vec<u64>,
}

async fn update_pats(
    AxState(s): AxState<Shared>,
    Path(org): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    let Ok(u) = serde_json::from_slice::<PatUpdate>(&body) else {
        return unprocessable("Invalid request. Both \"action\" and \"pat_ids\" are required.");
    };
    if u.action != "revoke" || u.pat_ids.is_empty() || u.pat_ids.len() > 100 {
        return unprocessable("Invalid request: action must be revoke, with 1 to 100 pat_ids.");
    }
    let mut st = s.github.lock().expect("github lock");
    let now = Instant::now();
    for id in &u.pat_ids {
        if !st.pats.iter().any(|p| p.id == *id) {
            return not_found();
        }
    }
    for p in &mut st.pats {
        if u.pat_ids.contains(&p.id) && p.removed_at.is_none() {
            p.removed_at = Some(now);
        }
    }
    (StatusCode::ACCEPTED, Json(json!({}))).into_response()
}

async fn list_invitations(
    AxState(s): AxState<Shared>,
    Path(org): Path<String>,
    uri: axum::http::Uri,
    Query(q): Query<PageQuery>,
) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    let st = s.github.lock().expect("github lock");
    let items = st
        .invitations
        .iter()
        .filter(|i| listed(&s, i.removed_at))
        .map(|i| {
            json!({
                "id": i.id,
                "login": if i.login.is_empty() { Value::Null } else { json!(i.login) },
                "email": i.what,
                "role": i.extra,
                "created_at": "2026-11-20T10:00:00Z",
                "failed_at": null,
                "failed_reason": null,
                "inviter": simple_user(&s, &st, "octo-admin"),
                "team_count": 1,
                "node_id": format!("MDIyOk9yZ2FuaXphdGlvbkludml0YXRpb24{}", i.id),
                "invitation_teams_url": format!("{}/organizations/7000001/invitations/{}/teams", s.base_url, i.id),
                "invitation_source": "member",
            })
        })
        .collect();
    page(&s, &uri, &q, items, None)
}

async fn cancel_invitation(
    AxState(s): AxState<Shared>,
    Path((org, id)): Path<(String, String)>,
) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    let mut st = s.github.lock().expect("github lock");
    if mark_removed(&mut st.invitations, |i| i.id.to_string() == id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found()
    }
}

async fn list_codespaces(
    AxState(s): AxState<Shared>,
    Path((org, user)): Path<(String, String)>,
    uri: axum::http::Uri,
    Query(q): Query<PageQuery>,
) -> Response {
    let st = s.github.lock().expect("github lock");
    if wrong_org(&org) || st.member_idx(&user).is_none() {
        return not_found();
    }
    let items: Vec<Value> = st
        .codespaces
        .iter()
        .filter(|c| c.login.eq_ignore_ascii_case(&user) && listed(&s, c.removed_at))
        .map(|c| {
            json!({
                "id": c.id,
                "name": c.what,
                "display_name": format!("{} space", c.extra),
                "environment_id": null,
                "owner": simple_user(&s, &st, &c.login),
                "billable_owner": {"login": ORG},
                "repository": {"id": 1, "name": c.extra, "full_name": format!("{ORG}/{}", c.extra)},
                "state": "Available",
                "created_at": "2026-10-01T09:00:00Z",
                "updated_at": "2026-11-29T09:00:00Z",
                "last_used_at": "2026-11-29T09:00:00Z",
                "url": format!("{}/user/codespaces/{}", s.base_url, c.what),
            })
        })
        .collect();
    let n = items.len();
    page(
        &s,
        &uri,
        &q,
        items,
        Some(("codespaces", json!({"total_count": n}))),
    )
}

async fn delete_codespace(
    AxState(s): AxState<Shared>,
    Path((org, user, name)): Path<(String, String, String)>,
) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    let mut st = s.github.lock().expect("github lock");
    if mark_removed(&mut st.codespaces, |c| {
        c.login.eq_ignore_ascii_case(&user) && c.what == name
    }) {
        (StatusCode::ACCEPTED, Json(json!({}))).into_response()
    } else {
        not_found()
    }
}

/// Marks the first item `pick` chooses among those not yet removed as
/// removed now (it disappears from reads after the consistency delay);
/// false when there is none.
fn mark_removed(items: &mut [Item], pick: impl Fn(&Item) -> bool) -> bool {
    match items.iter_mut().find(|i| i.removed_at.is_none() && pick(i)) {
        Some(i) => {
            i.removed_at = Some(Instant::now());
            true
        }
        None => false,
    }
}

fn seat_json(s: &Shared, st: &State, x: &Seat) -> Value {
    json!({
        "assignee": simple_user(s, st, &x.login),
        "organization": {"login": ORG},
        "assigning_team": x.team.as_ref().map(|t| json!({"slug": t, "name": t})),
        "pending_cancellation_date": if x.cancelled { json!("2027-01-01") } else { Value::Null },
        "last_activity_at": "2026-11-30T08:00:00Z",
        "last_activity_editor": "vscode/1.95.0",
        "created_at": "2026-02-01T09:00:00Z",
        "plan_type": "business",
    })
}

async fn get_seat(
    AxState(s): AxState<Shared>,
    Path((org, user)): Path<(String, String)>,
) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    let st = s.github.lock().expect("github lock");
    match st
        .seats
        .iter()
        .find(|x| x.login.eq_ignore_ascii_case(&user))
    {
        Some(x) => Json(seat_json(&s, &st, x)).into_response(),
        None => not_found(),
    }
}

async fn list_seats(
    AxState(s): AxState<Shared>,
    Path(org): Path<String>,
    uri: axum::http::Uri,
    Query(q): Query<PageQuery>,
) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    let st = s.github.lock().expect("github lock");
    let items: Vec<Value> = st.seats.iter().map(|x| seat_json(&s, &st, x)).collect();
    let n = items.len();
    page(
        &s,
        &uri,
        &q,
        items,
        Some(("seats", json!({"total_seats": n}))),
    )
}

#[derive(Deserialize)]
struct SeatCancel {
    selected_usernames: Vec<String>,
}

async fn cancel_seats(
    AxState(s): AxState<Shared>,
    Path(org): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    let Ok(c) = serde_json::from_slice::<SeatCancel>(&body) else {
        return unprocessable("Invalid request: selected_usernames is required.");
    };
    if c.selected_usernames.is_empty() {
        return unprocessable("Invalid request: selected_usernames is required.");
    }
    let mut st = s.github.lock().expect("github lock");
    for u in &c.selected_usernames {
        if st
            .seats
            .iter()
            .any(|x| x.login.eq_ignore_ascii_case(u) && x.team.is_some())
        {
            return unprocessable(&format!(
                "The seat of {u} cannot be cancelled because it was assigned to them via a team."
            ));
        }
    }
    let mut n = 0;
    for x in &mut st.seats {
        if c.selected_usernames
            .iter()
            .any(|u| x.login.eq_ignore_ascii_case(u))
            && !x.cancelled
        {
            x.cancelled = true;
            n += 1;
        }
    }
    Json(json!({"seats_cancelled": n})).into_response()
}

// ----- audit log, installations, licences ------------------------------------

async fn audit_log(
    AxState(s): AxState<Shared>,
    Path(org): Path<String>,
    uri: axum::http::Uri,
    Query(q): Query<PageQuery>,
) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    let actor = q
        .phrase
        .as_deref()
        .and_then(|p| p.split_whitespace().find_map(|t| t.strip_prefix("actor:")))
        .map(str::to_string);
    let st = s.github.lock().expect("github lock");
    // Newest first, as GitHub lists it.
    let items = st
        .audit
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, (who, _, _))| actor.as_deref().is_none_or(|a| a.eq_ignore_ascii_case(who)))
        .map(|(i, (who, action, what))| {
            let mut v = json!({
                "@timestamp": 1_760_000_000_000u64 + i as u64 * 60_000,
                "_document_id": format!("doc{i:06}"),
                "action": action,
                "actor": who,
                "org": ORG,
                "created_at": 1_760_000_000_000u64 + i as u64 * 60_000,
            });
            if action.starts_with("repo.") {
                v["repo"] = json!(format!("{ORG}/{what}"));
            } else {
                v["name"] = json!(what);
            }
            v
        })
        .collect();
    page(&s, &uri, &q, items, None)
}

async fn list_installations(
    AxState(s): AxState<Shared>,
    Path(org): Path<String>,
    uri: axum::http::Uri,
    Query(q): Query<PageQuery>,
) -> Response {
    if wrong_org(&org) {
        return not_found();
    }
    let st = s.github.lock().expect("github lock");
    let items: Vec<Value> = st
        .installations
        .iter()
        .map(|(id, slug)| {
            json!({
                "id": id, "app_id": id + 1000, "app_slug": slug, "client_id": format!("Iv1.{id:016x}"),
                "target_id": 7_000_001, "target_type": "Organization",
                "account": {"login": ORG, "id": 7_000_001, "type": "Organization"},
                "single_file_name": null, "repository_selection": "all",
                "access_tokens_url": format!("{}/app/installations/{id}/access_tokens", s.base_url),
                "html_url": format!("https://github.com/organizations/{ORG}/settings/installations/{id}"),
                "repositories_url": format!("{}/installation/repositories", s.base_url),
                "events": ["push"], "permissions": {"contents": "read"},
                "created_at": "2025-06-01T10:00:00Z", "updated_at": "2025-06-01T10:00:00Z",
                "suspended_by": null, "suspended_at": null,
            })
        })
        .collect();
    let n = items.len();
    page(
        &s,
        &uri,
        &q,
        items,
        Some(("installations", json!({"total_count": n}))),
    )
}

async fn consumed_licenses(
    AxState(s): AxState<Shared>,
    Path(ent): Path<String>,
    uri: axum::http::Uri,
    Query(q): Query<PageQuery>,
) -> Response {
    if !ent.eq_ignore_ascii_case(ENTERPRISE) {
        return not_found();
    }
    let st = s.github.lock().expect("github lock");
    let items: Vec<Value> = st
        .people
        .iter()
        .map(|p| {
            let member = st.member_idx(&p.login).is_some();
            json!({
                "github_com_login": p.login,
                "github_com_name": p.name,
                "enterprise_server_user_ids": [],
                "github_com_user": true,
                "enterprise_server_user": false,
                "visual_studio_subscription_user": false,
                "license_type": "Enterprise",
                "github_com_profile": format!("https://github.com/{}", p.login),
                "github_com_member_roles": if member { json!([format!("{ORG}:Member")]) } else { json!([]) },
                "github_com_enterprise_roles": ["Member"],
                "github_com_verified_domain_emails": p.verified_emails,
                "github_com_saml_name_id": p.saml_name_id,
                "github_com_orgs_with_pending_invites": [],
                "github_com_two_factor_auth": true,
                "enterprise_server_emails": [],
                "visual_studio_license_status": null,
                "visual_studio_subscription_email": null,
                "total_user_accounts": 1,
            })
        })
        .collect();
    let n = items.len();
    page(
        &s,
        &uri,
        &q,
        items,
        Some((
            "users",
            json!({"total_seats_consumed": n, "total_seats_purchased": 500}),
        )),
    )
}

// ----- SCIM --------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ScimQuery {
    start_index: Option<usize>,
    count: Option<usize>,
    filter: Option<String>,
}

fn scim_error(status: StatusCode, detail: &str, scim_type: Option<&str>) -> Response {
    let mut r = (
        status,
        Json(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": status.as_u16(),
            "scimType": scim_type,
            "detail": detail,
            "message": detail,
            "documentation_url": DOCS,
        })),
    )
        .into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/scim+json"),
    );
    r
}

fn scim_json(s: &Shared, u: &ScimUser, enterprise: bool) -> Value {
    let location = if enterprise {
        format!(
            "{}/scim/v2/enterprises/{ENTERPRISE}/Users/{}",
            s.base_url, u.id
        )
    } else {
        format!("{}/scim/v2/organizations/{ORG}/Users/{}", s.base_url, u.id)
    };
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": u.id,
        "externalId": format!("00u{}", &u.id[..8]),
        "userName": u.user_name,
        "displayName": format!("{} {}", u.given, u.family),
        "name": {"givenName": u.given, "familyName": u.family, "formatted": format!("{} {}", u.given, u.family)},
        "emails": u.emails.iter().enumerate().map(|(i, e)| json!({"value": e, "primary": i == 0, "type": "work"})).collect::<Vec<_>>(),
        "active": u.active,
        "roles": if enterprise { json!([{"value": "user", "primary": true}]) } else { Value::Null },
        "groups": [],
        "meta": {
            "resourceType": "User",
            "created": "2025-01-24T22:45:36.000Z",
            "lastModified": "2026-11-01T09:00:00.000Z",
            "location": location,
        },
    })
}

/// `ATTR eq "VALUE"` (GitHub supports `eq` on a few attributes only).
fn parse_eq(expr: &str) -> Option<(String, String)> {
    let (attr, rest) = expr.trim().split_once(' ')?;
    let rest = rest.trim_start().strip_prefix("eq ")?.trim();
    let inner = rest.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some((attr.to_ascii_lowercase(), out))
}

fn scim_list(s: &Shared, q: &ScimQuery, enterprise: bool) -> Response {
    let filter = match q.filter.as_deref() {
        None => None,
        Some(f) => match parse_eq(f) {
            Some((a, v))
                if ["username", "emails", "externalid", "id", "displayname"]
                    .contains(&a.as_str()) =>
            {
                Some((a, v))
            }
            _ => {
                return scim_error(
                    StatusCode::BAD_REQUEST,
                    "Filter is not supported: GitHub supports `eq` on userName, emails, externalId, id and displayName.",
                    Some("invalidFilter"),
                );
            }
        },
    };
    let st = s.github.lock().expect("github lock");
    let list = if enterprise { &st.emu_scim } else { &st.scim };
    let all: Vec<Value> = list
        .iter()
        .filter(|u| listed(s, u.removed_at))
        .filter(|u| match &filter {
            None => true,
            Some((a, v)) => match a.as_str() {
                "username" => u.user_name.eq_ignore_ascii_case(v),
                "emails" => u.emails.iter().any(|e| e.eq_ignore_ascii_case(v)),
                "id" => u.id == *v,
                "externalid" => format!("00u{}", &u.id[..8]) == *v,
                _ => format!("{} {}", u.given, u.family) == *v,
            },
        })
        .map(|u| scim_json(s, u, enterprise))
        .collect();
    let start = q.start_index.unwrap_or(1).max(1);
    let count = q.count.unwrap_or(100).min(100);
    let chunk: Vec<Value> = all.iter().skip(start - 1).take(count).cloned().collect();
    let mut r = Json(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": all.len(),
        "itemsPerPage": chunk.len(),
        "startIndex": start,
        "Resources": chunk,
    }))
    .into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/scim+json"),
    );
    r
}

async fn scim_list_org(
    AxState(s): AxState<Shared>,
    Path(org): Path<String>,
    Query(q): Query<ScimQuery>,
) -> Response {
    if wrong_org(&org) {
        return scim_error(StatusCode::NOT_FOUND, "Resource not found", None);
    }
    scim_list(&s, &q, false)
}

async fn scim_list_ent(
    AxState(s): AxState<Shared>,
    Path(ent): Path<String>,
    Query(q): Query<ScimQuery>,
) -> Response {
    if !ent.eq_ignore_ascii_case(ENTERPRISE) {
        return scim_error(StatusCode::NOT_FOUND, "Resource not found", None);
    }
    scim_list(&s, &q, true)
}

fn scim_get(s: &Shared, id: &str, enterprise: bool) -> Response {
    let st = s.github.lock().expect("github lock");
    let list = if enterprise { &st.emu_scim } else { &st.scim };
    match list.iter().find(|u| u.id == id && listed(s, u.removed_at)) {
        Some(u) => Json(scim_json(s, u, enterprise)).into_response(),
        None => scim_error(StatusCode::NOT_FOUND, "Resource not found", None),
    }
}

async fn scim_get_org(
    AxState(s): AxState<Shared>,
    Path((org, id)): Path<(String, String)>,
) -> Response {
    if wrong_org(&org) {
        return scim_error(StatusCode::NOT_FOUND, "Resource not found", None);
    }
    scim_get(&s, &id, false)
}

async fn scim_get_ent(
    AxState(s): AxState<Shared>,
    Path((ent, id)): Path<(String, String)>,
) -> Response {
    if !ent.eq_ignore_ascii_case(ENTERPRISE) {
        return scim_error(StatusCode::NOT_FOUND, "Resource not found", None);
    }
    scim_get(&s, &id, true)
}

/// The `active` value a PATCH sets, if it sets one (`op` in any case; a
/// `path` of `active`, or a value object holding it).
fn patched_active(body: &Value) -> Option<bool> {
    let ops = body.get("Operations")?.as_array()?;
    let mut out = None;
    for op in ops {
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        if kind != "replace" && kind != "add" {
            continue;
        }
        match op.get("path").and_then(Value::as_str) {
            Some(p) if p.eq_ignore_ascii_case("active") => {
                out = op.get("value").and_then(Value::as_bool).or(out);
            }
            None => {
                out = op
                    .get("value")
                    .and_then(|v| v.get("active"))
                    .and_then(Value::as_bool)
                    .or(out);
            }
            _ => {}
        }
    }
    out
}

fn scim_patch(s: &Shared, id: &str, body: &Value, enterprise: bool) -> Response {
    if body
        .get("Operations")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return scim_error(
            StatusCode::BAD_REQUEST,
            "Operations are required",
            Some("invalidSyntax"),
        );
    }
    let active = patched_active(body);
    let mut st = s.github.lock().expect("github lock");
    let now = Instant::now();
    let list = if enterprise {
        &mut st.emu_scim
    } else {
        &mut st.scim
    };
    let Some(u) = list
        .iter_mut()
        .find(|u| u.id == id && u.removed_at.is_none())
    else {
        return scim_error(StatusCode::NOT_FOUND, "Resource not found", None);
    };
    if let Some(a) = active {
        u.active = a;
    }
    let user = u.clone();
    if !enterprise && active == Some(false) {
        // In an org, `active: false` removes the member and deletes the
        // identity.
        if let Some(x) = st.scim.iter_mut().find(|x| x.id == id) {
            x.removed_at = Some(now);
        }
        let login = st
            .people
            .iter()
            .find(|p| {
                p.saml_name_id
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&user.user_name))
            })
            .map(|p| p.login.clone());
        if let Some(login) = login
            && let Some(i) = st.member_idx(&login)
        {
            st.members[i].removed_at = Some(now);
            st.cascade(&login, now);
        }
    }
    Json(scim_json(s, &user, enterprise)).into_response()
}

async fn scim_patch_org(
    AxState(s): AxState<Shared>,
    Path((org, id)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    if wrong_org(&org) {
        return scim_error(StatusCode::NOT_FOUND, "Resource not found", None);
    }
    scim_patch(&s, &id, &body, false)
}

async fn scim_patch_ent(
    AxState(s): AxState<Shared>,
    Path((ent, id)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    if !ent.eq_ignore_ascii_case(ENTERPRISE) {
        return scim_error(StatusCode::NOT_FOUND, "Resource not found", None);
    }
    scim_patch(&s, &id, &body, true)
}

fn scim_delete(s: &Shared, id: &str, enterprise: bool) -> Response {
    let mut st = s.github.lock().expect("github lock");
    let list = if enterprise {
        &mut st.emu_scim
    } else {
        &mut st.scim
    };
    match list
        .iter_mut()
        .find(|u| u.id == id && u.removed_at.is_none())
    {
        Some(u) => {
            u.removed_at = Some(Instant::now());
            StatusCode::NO_CONTENT.into_response()
        }
        None => scim_error(StatusCode::NOT_FOUND, "Resource not found", None),
    }
}

async fn scim_delete_org(
    AxState(s): AxState<Shared>,
    Path((org, id)): Path<(String, String)>,
) -> Response {
    if wrong_org(&org) {
        return scim_error(StatusCode::NOT_FOUND, "Resource not found", None);
    }
    scim_delete(&s, &id, false)
}

async fn scim_delete_ent(
    AxState(s): AxState<Shared>,
    Path((ent, id)): Path<(String, String)>,
) -> Response {
    if !ent.eq_ignore_ascii_case(ENTERPRISE) {
        return scim_error(StatusCode::NOT_FOUND, "Resource not found", None);
    }
    scim_delete(&s, &id, true)
}
